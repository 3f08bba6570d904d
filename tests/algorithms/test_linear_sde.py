"""Exact discretisation of linear SDEs against closed forms and the exact answers in
../shared/data/sde (OU evidence and posterior table, Euler-chain evidences, the fBM bridge, the
Hurst log-likelihood grid and its continuous maximum)."""
import numpy as np
import pytest
from scipy import integrate, linalg, optimize

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp

from oracles import sde as sde_data
from ppl.algorithms import linear_sde as LS
from ppl.algorithms import mafbm


def test_time_grid_lands_on_times_and_bounds_steps():
    g = LS.time_grid(2.0, 0.1, [0.33, 0.35, 1.0, 1.0 + 1e-14])
    assert g[0] == 0.0 and g[-1] == 2.0
    assert np.all(np.diff(g) > 0) and np.max(np.diff(g)) <= 0.1 + 1e-12
    np.testing.assert_array_equal(g[LS.grid_index(g, [0.33, 0.35, 1.0])], [0.33, 0.35, 1.0])
    assert np.min(np.diff(g)) >= 0.02 - 1e-12  # the gap 0.33..0.35 is one step, no slivers
    with pytest.raises(ValueError, match="must lie in"):
        LS.time_grid(1.0, 0.1, [1.5])
    with pytest.raises(ValueError, match="not on the grid"):
        LS.grid_index(g, [0.123])


def test_ou_transition_closed_form():
    theta, mu, sigma = 1.7, 0.4, 0.6
    dts = jnp.array([1e-3, 0.1, 2.0, 30.0])
    tr = LS.transitions(LS.mafbm_sde(-theta, theta * mu, sigma), dts)
    e = np.exp(-theta * np.asarray(dts))
    np.testing.assert_allclose(tr.Phi[:, 0, 0], e, rtol=1e-13)
    np.testing.assert_allclose(tr.b[:, 0], mu * (1 - e), rtol=1e-12)
    np.testing.assert_allclose(tr.Q[:, 0, 0], sigma ** 2 * (1 - e ** 2) / (2 * theta), rtol=1e-12)


def test_mafbm_transitions_keep_the_stationary_law_for_large_rate_steps():
    """The OU bank started in its stationary law N(0, Σ0) stays there: Φ Σ0 Φᵀ + Q = Σ0, also
    for γΔ = 20·5 where a one-shot Van Loan exponential loses everything; and the X-row's
    transition matches direct quadrature of ∫ e^{Fs} L Lᵀ e^{Fᵀs} ds."""
    bas = mafbm.basis(5, 20.0, 2.0, "I")
    w = mafbm.omega(bas, 0.3)
    sde = LS.mafbm_sde(-0.5, 0.1, 0.8, w, bas.gamma)
    tr = LS.transitions(sde, jnp.array([0.01, 0.5, 5.0]))
    S0 = mafbm.stationary_cov(bas.gamma)
    for i in range(3):
        P, Q = np.asarray(tr.Phi[i, 1:, 1:]), np.asarray(tr.Q[i, 1:, 1:])
        np.testing.assert_allclose(P @ S0 @ P.T + Q, S0, atol=1e-13 * np.max(S0))
    # quadrature reference for the whole (X, Y) block at Δ = 0.5
    F, L = np.asarray(sde.F), np.asarray(sde.L)
    s = np.linspace(0.0, 0.5, 1001)
    integrand = np.stack([linalg.expm(F * si) @ L @ L.T @ linalg.expm(F * si).T for si in s])
    Q_ref = integrate.simpson(integrand, x=s, axis=0)  # O(h⁴): ~1e-10 here
    np.testing.assert_allclose(tr.Q[1], Q_ref, atol=1e-9 * np.max(np.abs(Q_ref)))
    np.testing.assert_allclose(tr.Phi[1], linalg.expm(F * 0.5), rtol=1e-10, atol=1e-13)


def _ou_setup(d, dt=None):
    ref = d["reference"]["posterior"]
    grid = LS.time_grid(d["t_end"], dt or 10.0, list(d["t"]) + ([] if dt else ref["times"]))
    m0, P0 = LS.initial_moments(d["x0_mean"], d["x0_sd"] ** 2)
    obs = dict(obs_times=d["t"], ys=d["y"], obs_matrix=[[1.0]], obs_cov=[[d["obs_sd"] ** 2]])
    return grid, m0, P0, obs


def test_ou_exact_evidence_and_posterior_table():
    d = sde_data.load("ou_gaussian")
    grid, m0, P0, obs = _ou_setup(d)
    tr = LS.transitions(LS.mafbm_sde(-d["theta"], d["theta"] * d["mu"], d["sigma"]), np.diff(grid))
    post = d["reference"]["posterior"]
    ms, Ps, le = LS.smooth(tr, grid, m0, P0, times=post["times"], **obs)
    np.testing.assert_allclose(le, d["reference"]["log_evidence"], atol=1e-8)
    np.testing.assert_allclose(ms[:, 0], post["mean"], atol=1e-8)
    np.testing.assert_allclose(np.sqrt(Ps[:, 0, 0]), post["sd"], atol=1e-8)


def test_euler_and_heun_chain_evidence():
    """Euler chains reproduce the file's Euler evidences; the Heun chain the engine uses is
    within 1e-3 nats of the continuous answer at dt = 0.01 (Euler: 0.2 nats)."""
    d = sde_data.load("ou_gaussian")
    exact = d["reference"]["log_evidence"]
    for dt, want in d["reference"]["euler_chain_log_evidence"]["by_dt"].items():
        if float(dt) not in (0.01, 0.005):  # the two steps; the others add compiles only
            continue
        grid, m0, P0, obs = _ou_setup(d, float(dt))
        args = (-d["theta"], d["theta"] * d["mu"], d["sigma"], np.diff(grid))
        euler = LS.log_evidence(LS.chain_transitions(*args, scheme="euler"), grid, m0, P0, **obs)
        np.testing.assert_allclose(euler, want, atol=1e-7, err_msg=f"dt={dt}")
        heun = LS.log_evidence(LS.chain_transitions(*args, scheme="heun"), grid, m0, P0, **obs)
        if float(dt) <= 0.01:
            assert abs(heun - exact) < 1e-3, (dt, heun)
        exact_chain = LS.log_evidence(LS.chain_transitions(*args, scheme="exact"), grid, m0, P0, **obs)
        np.testing.assert_allclose(exact_chain, exact, atol=1e-9)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_fbm_bridge_evidence_and_posterior_sds(kind):
    d = sde_data.load("fbm_bridge")
    bas = mafbm.basis(d["K"], d["gamma_max"], d["T_omega"], kind)
    times = d["reference"]["times"]
    grid = LS.time_grid(d["t_end"], 10.0, times)
    m0, P0 = LS.initial_moments(d["x0"], 0.0, 1, bas.gamma, kind)
    H_obs = np.eye(1, 1 + bas.K)
    for H in ("0.3", "0.5", "0.7"):
        ref = d["reference"][f"type_{kind}"][H]
        w = mafbm.omega(bas, float(H))
        tr = LS.transitions(LS.mafbm_sde(0.0, 0.0, d["sigma"], w, bas.gamma), np.diff(grid))
        ms, Ps, le = LS.smooth(tr, grid, m0, P0, d["t"], d["y"], H_obs, [[d["obs_sd"] ** 2]], times)
        np.testing.assert_allclose(le, ref["log_evidence"], atol=1e-9)
        np.testing.assert_allclose(np.sqrt(np.maximum(Ps[:, 0, 0], 0)), ref["posterior_sd"], atol=1e-8)
        np.testing.assert_allclose(ms[:, 0], 0.0, atol=1e-10)
        if kind == "I":
            # with no drift the exact-OU chain the engine steps is exact (Euler is not)
            g2 = LS.time_grid(d["t_end"], 0.01, d["t"])
            chain = LS.chain_transitions(0.0, 0.0, d["sigma"], np.diff(g2), "euler", w, bas.gamma)
            le2 = LS.log_evidence(chain, g2, m0, P0, d["t"], d["y"], H_obs, [[d["obs_sd"] ** 2]])
            np.testing.assert_allclose(le2, ref["log_evidence"], atol=1e-9)


@pytest.fixture(scope="module")
def hurst_loglik():
    """log p(y | H) of the Hurst-recovery data, type I, jitted once (H is traced)."""
    cache = {}

    def get(name):
        if name in cache:
            return cache[name]
        d = sde_data.load(name)
        bas = mafbm.basis(d["K"], d["gamma_max"], d["T_omega"], "I")
        grid = LS.time_grid(d["t_end"], 10.0, d["t"])
        m0, P0 = LS.initial_moments(d["x0"], 0.0, 1, bas.gamma, "I")
        H_obs = np.eye(1, 1 + bas.K)
        dts = jnp.asarray(np.diff(grid))
        # rate bound: γ_max; ω enters only the X row (no exponential growth from it)
        nd = LS._n_doublings(float(np.max(np.diff(grid))), d["gamma_max"])

        @jax.jit
        def ll(H):
            w = mafbm.omega(bas, H)
            tr = LS.transitions(LS.mafbm_sde(0.0, 0.0, d["sigma"], w, bas.gamma), dts, n_doublings=nd)
            return LS.log_evidence(tr, grid, m0, P0, d["t"], d["y"], H_obs, [[d["obs_sd"] ** 2]])

        cache[name] = (d, ll)
        return cache[name]

    return get


def test_hurst_log_likelihood_grid(hurst_loglik):
    d, ll = hurst_loglik("hurst_recovery_H03")
    ref = d["reference"]["type_I"]
    for i in (1, 5, 9, 13, 17):
        np.testing.assert_allclose(ll(ref["H_grid"][i]), ref["log_likelihood"][i], rtol=1e-8,
                                   atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hurst_recovery_H03", "hurst_recovery_H07"])
def test_hurst_continuous_mle(name, hurst_loglik):
    d, ll = hurst_loglik(name)
    ref = d["reference"]["type_I"]
    res = optimize.minimize_scalar(lambda H: -float(ll(H)), bounds=(0.05, 0.95), method="bounded",
                                   options={"xatol": 1e-6})
    assert abs(res.x - ref["mle_continuous"]) < 2e-4, res.x
    np.testing.assert_allclose(-res.fun, ref["log_likelihood_at_mle"], atol=1e-4)
    # the derivative of the exact log-likelihood in H vanishes there (dω/dH through Kalman)
    assert abs(float(jax.grad(ll)(res.x))) < 1.0
