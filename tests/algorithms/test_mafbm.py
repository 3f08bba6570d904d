"""MA-fBM weights against the reference weights, the approximation-error table of SDE.md §1,
closed-form limits of the incomplete-gamma product, and finite differences for dω/dH."""
import numpy as np
import pytest
from scipy import special

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp

from oracles import sde as sde_data
from ppl.algorithms import mafbm

HS = (0.3, 0.5, 0.7, 0.9)


def test_rate_grid():
    np.testing.assert_allclose(mafbm.rate_grid(5, 20.0), [0.05, 0.2236068, 1.0, 4.472136, 20.0],
                               rtol=1e-6)
    g = mafbm.rate_grid(8, 50.0)
    np.testing.assert_allclose(g[0] * g[-1], 1.0)  # symmetric in log scale
    with pytest.raises(ValueError, match="K >= 2"):
        mafbm.rate_grid(1, 20.0)


def test_reference_weights_type_I_H07_T6():
    w = mafbm.omega(mafbm.basis(5, 20.0, 6.0, "I"), 0.7)
    np.testing.assert_allclose(w, [2.298, -1.698, 0.377, -0.694, 0.077], atol=5e-4)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_weights_match_the_bridge_file(kind):
    ref = sde_data.load("fbm_bridge")
    bas = mafbm.basis(ref["K"], ref["gamma_max"], ref["T_omega"], kind)
    table = ref["reference"][f"type_{kind}"]
    for H, entry in table.items():
        np.testing.assert_allclose(mafbm.omega(bas, float(H)), entry["omega"], rtol=1e-9,
                                   atol=1e-9, err_msg=f"type {kind}, H={H}")


# SDE.md §1: relative MSE ∫E(B−B̂)² / ∫E B², K=5, γmax=20, in percent; (T=2, T=6).
ERROR_TABLE = {
    "I": {0.3: (1.3, 1.8), 0.5: (2.5, 7.3), 0.7: (15, 27), 0.9: (58, 71)},
    "II": {0.3: (0.55, 0.3), 0.5: (0.0, 0.0), 0.7: (0.01, 0.01), 0.9: (0.0, 0.0)},
}


@pytest.mark.parametrize("kind", ["I", "II"])
def test_approximation_error_table(kind):
    for ti, T in enumerate((2.0, 6.0)):
        bas = mafbm.basis(5, 20.0, T, kind)
        for H, row in ERROR_TABLE[kind].items():
            got = 100 * float(mafbm.relative_mse(bas, H))
            want = row[ti]
            # the table is rounded to its last printed digit; "≈0" entries mean below 0.02%
            tol = 0.02 if want < 0.05 else (0.05 if want < 10 else 0.5)
            assert abs(got - want) <= tol, (kind, T, H, got, want)
            assert got >= -1e-9


@pytest.mark.parametrize("kind", ["I", "II"])
@pytest.mark.parametrize("normalize", [False, True])
def test_variance_within_the_approximation_error(kind, normalize):
    """‖B̂_t‖ − ‖B_t‖ ≤ ‖B_t − B̂_t‖ (L2 norms), so ∫(sd B̂_t − sd B_t)² dt ≤ ∫E(B−B̂)² dt: the
    variance of the approximation (from the OU covariances alone) is checked against the
    relative MSE (from b(H) and c)."""
    T = 2.0
    bas = mafbm.basis(5, 20.0, T, kind)
    t = np.linspace(0.0, T, 4001)
    for H in HS:
        w = mafbm.omega(bas, H, normalize=normalize)
        sd_hat = np.sqrt(np.asarray(mafbm.variance(bas, w, t)))
        sd = np.sqrt(np.asarray(mafbm.target_variance(H, t, kind, normalize)))
        lhs = np.trapezoid((sd_hat - sd) ** 2, t)
        total = np.trapezoid(sd ** 2, t)
        rhs = float(mafbm.relative_mse(bas, H)) * total
        assert lhs <= rhs * (1 + 1e-6) + 1e-12, (H, lhs, rhs)
        if normalize:  # the normalised target is standard fBM: Var B_1 = 1
            np.testing.assert_allclose(mafbm.target_variance(H, 1.0, kind, True), 1.0)


def test_hurst_variance_values():
    # SDE.md: V_H = 3.52, 1.38, 1.00, 0.995, 1.93 at H = 0.1, 0.3, 0.5, 0.7, 0.9
    np.testing.assert_allclose(mafbm.hurst_variance(jnp.array([0.1, 0.3, 0.5, 0.7, 0.9])),
                               [3.5244807, 1.3833763, 1.0, 0.9950881, 1.9302629], rtol=1e-6)


def test_incomplete_gamma_against_scipy_and_asymptotics():
    a = np.linspace(0.5, 2.5, 9)[:, None]  # H + ½ and H + 3/2 for H ∈ (0, 1)
    z = np.array([1e-3, 0.05, 0.5, 1.0, 2.4, 2.5, 2.6, 5.0, 9.99, 10.0, 30.0, 120.0, 300.0])[None, :]
    np.testing.assert_allclose(mafbm.gammaincc_ez(a, z), special.gammaincc(a, z) * np.exp(z),
                               rtol=1e-13)
    np.testing.assert_allclose(mafbm.gammainc(a, z), special.gammainc(a, z), rtol=1e-13,
                               atol=1e-300)
    # Far beyond where e^z overflows: Q e^z ~ z^{a-1}/Γ(a) (1 + (a−1)/z + (a−1)(a−2)/z²)
    a, z = a.ravel(), 1e4
    series = z ** (a - 1) / special.gamma(a) * (1 + (a - 1) / z + (a - 1) * (a - 2) / z ** 2)
    np.testing.assert_allclose(mafbm.gammaincc_ez(a, z), series, rtol=1e-11)
    assert np.all(np.isfinite(mafbm.gammaincc_ez(a, 1e6)))


def test_gammaincc_ez_gradients_match_differences():
    f = lambda a, z: mafbm.gammaincc_ez(a, z)
    z = jnp.array([0.7, 2.5, 10.0, 40.0])  # both branches and the switch point
    h = 1e-6

    @jax.jit
    def both(a, z):
        ga, gz = jax.vmap(jax.grad(f, argnums=(0, 1)), (None, 0))(a, z)
        return ga, gz, (f(a + h, z) - f(a - h, z)) / (2 * h), (f(a, z + h) - f(a, z - h)) / (2 * h)

    ga, gz, fa, fz = both(1.2, z)
    np.testing.assert_allclose(ga, fa, rtol=1e-6)
    np.testing.assert_allclose(gz, fz, rtol=1e-6)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_domega_dH_against_finite_differences(kind):
    bas = mafbm.basis(5, 20.0, 6.0, kind)  # γT from 0.3 to 120: both branches of Q e^z
    Hs = jnp.array([0.2, 0.5, 0.75])
    h = 1e-5

    @jax.jit
    def derivatives(Hs):
        out = []
        for normalize in (False, True):
            f = lambda H: mafbm.omega(bas, H, normalize)
            fwd = jax.vmap(jax.jacfwd(f))(Hs)
            rev = jax.vmap(jax.jacrev(f))(Hs)  # reverse mode: what the engine's gradient uses
            fd = (jax.vmap(f)(Hs + h) - jax.vmap(f)(Hs - h)) / (2 * h)
            out.append((fwd, rev, fd))
        return out

    for fwd, rev, fd in derivatives(Hs):
        scale = float(jnp.max(jnp.abs(fd)))
        np.testing.assert_allclose(fwd, fd, atol=1e-6 * scale, rtol=1e-6)
        np.testing.assert_allclose(rev, fwd, rtol=1e-10, atol=1e-12 * scale)


def test_bad_arguments():
    with pytest.raises(ValueError, match="type must be"):
        mafbm.basis(5, 20.0, 1.0, "III")
    with pytest.raises(ValueError, match="gamma_max"):
        mafbm.basis(5, 0.5, 1.0)
