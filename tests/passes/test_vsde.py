"""The vsde pass: model files with a process → the latent-SDE engine, against independent
answers (the hand-written problem, Kalman on the engine's own chain, the reference files in
../shared/data/sde).

Fast tests compile each model once (module fixtures) and fit with small grids, networks and
step counts; the acceptance checks of issue 14 at default settings are ``@pytest.mark.slow``."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import ppl
from oracles import sde as sde_data
from ppl.algorithms import latent_sde as L
from ppl.algorithms import linear_sde as LS
from ppl.lower.process import ProcessModel
from ppl.passes import choose
from ppl.syntax.errors import PPLCheckError, PPLDataError

ROOT = Path(__file__).resolve().parents[2]
OU_KEYS = ["N", "t", "y", "theta", "mu", "sigma", "x0_mean", "x0_sd", "obs_sd", "t_end"]
HURST_KEYS = ["N", "t", "y", "sigma", "x0", "obs_sd", "t_end", "K", "gamma_max", "T_omega"]
SMALL = dict(dt=0.05, paths=16, hidden=16, max_steps=150, steps=150, eval_paths=1024)


def _subset(d, keys):
    return {k: d[k] for k in keys}


def ou_chain_evidence(d, grid, scheme="heun"):
    """Exact log evidence of the chain the engine simulates (Kalman on its transitions)."""
    m0, P0 = LS.initial_moments(d["x0_mean"], d["x0_sd"] ** 2)
    tr = LS.chain_transitions(-d["theta"], d["theta"] * d["mu"], d["sigma"], np.diff(grid), scheme)
    return float(LS.log_evidence(tr, grid, m0, P0, d["t"], d["y"], [[1.0]], [[d["obs_sd"] ** 2]]))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ou():
    d = sde_data.load("ou_gaussian")
    model = ppl.load(ROOT / "examples" / "sde_ou.ppl")
    return model, d


@pytest.fixture(scope="module")
def ou_fit(ou):
    model, d = ou
    idata = model.sample(_subset(d, OU_KEYS), draws=400, seed=1, **SMALL)
    return idata


@pytest.fixture(scope="module")
def ou_problem(ou):
    model, d = ou
    lowered = model.lower(_subset(d, OU_KEYS), "vsde")
    return ProcessModel(lowered), d


THETA_OU = """
data N: int
data t: real[N]
data y: real[N]
theta ~ lognormal(0, 0.5)
s ~ lognormal(log(0.5), 0.1)
rate = 2 * theta
x: process<start=0.1, end=2.1> ~ sde(drift = -rate * x + 0.5 * time, diffusion = s,
                                     init = normal(0, s / sqrt(rate)))
for i in 1:N {
  y[i] ~ normal(x(t[i] + 0.1), 0.05)
}
"""


@pytest.fixture(scope="module")
def theta_model(ou):
    _, d = ou
    model = ppl.compile(THETA_OU)
    data = {"N": d["N"], "t": d["t"], "y": d["y"]}
    return model, data


# ----------------------------------------------------------------------------- fast
def test_auto_chooses_vsde_and_other_passes_decline(ou):
    model, _ = ou
    assert choose(model.graph).method == "vsde"
    for m in ("nuts", "enumerate"):  # smc: exact steps of the linear SDE (test_smc_process.py)
        with pytest.raises(PPLCheckError, match="continuous-time process"):
            choose(model.graph, m)


def test_compiled_problem_is_the_written_one(ou_problem):
    """Drift, diffusion, initial law, observation times and the likelihood the pass reads off
    the file equal the hand-written OU problem (exactly: the same arithmetic)."""
    pm, d = ou_problem
    prob = pm.problem()
    assert prob.state_dim == 1 and prob.diagonal and isinstance(prob.noise, L.BrownianNoise)
    np.testing.assert_array_equal(prob.obs_times, np.asarray(d["t"]))
    assert prob.t_end == d["t_end"]
    x = jnp.array([0.37])
    np.testing.assert_allclose(prob.drift(0.3, x, {}), d["theta"] * (d["mu"] - x), rtol=1e-15)
    np.testing.assert_allclose(prob.diffusion(0.3, x, {}), [d["sigma"]], rtol=1e-15)
    np.testing.assert_allclose(prob.x0.mean({}), [d["x0_mean"]])
    np.testing.assert_allclose(prob.x0.sd({}), [d["x0_sd"]])
    xs = jax.random.normal(jax.random.key(0), (d["N"], 1))
    want = jnp.sum(norm.logpdf(jnp.asarray(d["y"]), xs[:, 0], d["obs_sd"]))
    np.testing.assert_allclose(prob.log_likelihood(xs, {}), want, rtol=1e-12)
    # the network's context is the observation at each time
    np.testing.assert_array_equal(prob.context[:, 0], np.asarray(d["y"]))


def test_ou_fit_output_and_elbo_bound(ou, ou_fit):
    """The InferenceData has the path on the grid, its times, the ELBO history; the ELBO is a
    lower bound on the exact evidence of the chain at the pass's own grid (Kalman), within
    Monte Carlo error."""
    _, d = ou
    idata = ou_fit
    assert {"posterior", "sample_stats", "vi"} <= set(idata.groups())
    times = idata.vi["x_time"].values
    x = idata.posterior["x"].values
    assert x.shape == (1, 400, times.size)
    gap = np.min(np.abs(np.asarray(d["t"])[:, None] - times[None, :]), axis=1)
    assert gap.max() < 1e-9 and times[0] == 0 and times[-1] == d["t_end"]
    a = idata.posterior.attrs
    assert a["inference_method"] == "vsde" and np.isfinite(a["elbo"]) and a["elbo_se"] > 0
    assert idata.vi["elbo"].size == a["vi_steps"]
    chain = ou_chain_evidence(d, times)
    assert a["elbo"] <= chain + 2 * a["elbo_se"], (a["elbo"], a["elbo_se"], chain)
    # training improved the bound from the prior's
    e = idata.vi["elbo"].values
    assert e[-30:].mean() > e[:10].mean() + 5


def test_static_latents_deterministic_values_and_shifted_horizon(theta_model, capsys):
    """Static latents get priors and variational posteriors; deterministic values and `time`
    reach the drift; a horizon that starts at 0.1 shifts the engine's clock."""
    model, data = theta_model
    lowered = model.lower(data, "vsde")
    pm = ProcessModel(lowered)
    prob = pm.problem()
    assert [p.name for p in prob.params] == ["theta", "s"]
    assert pm.start == pytest.approx(0.1) and prob.t_end == pytest.approx(2.0)
    np.testing.assert_allclose(prob.obs_times, np.asarray(data["t"]), atol=1e-12)
    th = {"theta": jnp.asarray(1.5), "s": jnp.asarray(0.4)}
    # the engine's clock starts at 0, the model's `time` at the horizon's start
    np.testing.assert_allclose(prob.drift(0.3, jnp.array([2.0]), th), [-6.0 + 0.5 * 0.4])
    np.testing.assert_allclose(prob.diffusion(0.0, jnp.array([2.0]), th), [0.4])
    np.testing.assert_allclose(prob.x0.sd(th), [0.4 / np.sqrt(3.0)])
    idata = model.sample(data, draws=200, seed=2, progress=True, **SMALL)
    assert "vsde ELBO" in capsys.readouterr().err  # the progress line shows the running ELBO
    for n in ("theta", "s"):
        v = idata.posterior[n].values
        assert v.shape == (1, 200) and np.all(v > 0)


def test_observation_times_outside_the_horizon_are_a_located_data_error(ou):
    model, d = ou
    data = _subset(d, OU_KEYS)
    data["t"] = list(data["t"][:-1]) + [2.5]
    with pytest.raises(PPLDataError, match=r"read at time 2.5 at i = 20, outside its horizon") as e:
        ProcessModel(model.lower(data, "vsde"))
    assert e.value.span.line == 17


def test_learned_hurst_model_compiles_to_mafbm():
    d = sde_data.load("hurst_recovery_H03")
    model = ppl.load(ROOT / "examples" / "fbm_hurst.ppl")
    prob = ProcessModel(model.lower(_subset(d, HURST_KEYS), "vsde")).problem("point")
    n = prob.noise
    assert isinstance(n, L.MAFBMNoise) and n.hurst == "H" and n.K == 5 and n.kind == "I"
    assert n.gamma_max == d["gamma_max"] and n.T_omega == d["T_omega"]
    assert isinstance(prob.x0, L.PointInit) and prob.params[0].estimate == "point"


def test_cli_prints_the_elbo(ou, tmp_path, capsys):
    from ppl.cli import main
    import json
    _, d = ou
    data = tmp_path / "ou.json"
    data.write_text(json.dumps(_subset(d, OU_KEYS)))
    out = tmp_path / "ou.nc"
    rc = main(["sample", str(ROOT / "examples" / "sde_ou.ppl"), "--data", str(data), "--draws",
               "50", "--output", str(out), "--quiet"] +
              [x for k, v in SMALL.items() for x in ("--option", f"{k}={v}")])
    text = capsys.readouterr().out
    assert rc == 0 and "ELBO: -" in text and "method: vsde" in text
    import arviz as az
    back = az.from_netcdf(out)
    assert "vi" in back.groups() and back.posterior["x"].shape[:2] == (1, 50)


# ----------------------------------------------------------------------------- slow
@pytest.mark.slow
def test_ou_default_settings_against_exact_answers(ou):
    """Acceptance (issue 14) through the language: final ELBO within 0.15 nats of the exact
    log p(y) and never above the chain's evidence (+2 se); posterior means within 0.05 and sds
    within 5% at the listed times."""
    model, d = ou
    idata = model.sample(_subset(d, OU_KEYS), draws=4000, seed=3, eval_paths=32768)
    a = idata.posterior.attrs
    times = idata.vi["x_time"].values
    chain = ou_chain_evidence(d, times)
    exact = d["reference"]["log_evidence"]
    assert a["elbo"] <= chain + 2 * a["elbo_se"]
    assert abs(a["elbo"] - exact) < 0.15, (a["elbo"], exact)
    post = d["reference"]["posterior"]
    x = idata.posterior["x"].values[0]
    for tq, mean, sd in zip(post["times"], post["mean"], post["sd"]):
        if tq not in (0.55, 1.0, 1.35, 2.0):
            continue
        j = int(np.argmin(np.abs(times - tq)))
        assert abs(x[:, j].mean() - mean) < 0.05, (tq, x[:, j].mean(), mean)
        assert abs(x[:, j].std() / sd - 1) < 0.05, (tq, x[:, j].std(), sd)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hurst_recovery_H03", "hurst_recovery_H07"])
def test_hurst_recovery_through_the_language(name):
    d = sde_data.load(name)
    model = ppl.load(ROOT / "examples" / "fbm_hurst.ppl")
    idata = model.sample(_subset(d, HURST_KEYS), draws=10, seed=4, estimate="point", dt=0.0025)
    H = float(idata.posterior["H"].values.mean())
    a = idata.posterior.attrs
    print(f"{name}: H = {H:.4f} (MLE {d['reference']['type_I']['mle_continuous']}); steps "
          f"{a['vi_steps']}, converged {a['vi_converged']}, ELBO {a['elbo']:.3f}")
    assert abs(H - d["reference"]["type_I"]["mle_continuous"]) < 0.05, H
    assert a["vi_converged"] == 1, (H, a["vi_steps"])  # the ELBO had stopped improving


TWO_D = """
data N: int
data t: real[N]
data y: real[N, 2]
data L: real[2, 2]
a ~ normal(1, 0.1)
x: process<end=2>[2] ~ sde(drift = -a * x, diffusion = L, init = normal(0, 1))
for i in 1:N {
  y[i, 1] ~ normal(x(t[i])[1], 0.1)
  y[i, 2] ~ normal(x(t[i])[2], 0.2)
}
"""


def test_vector_process_with_a_matrix_diffusion():
    model = ppl.compile(TWO_D)
    data = {"N": 3, "t": [0.5, 1.0, 1.5], "y": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
            "L": [[1.0, 0.0], [0.5, 0.3]]}
    prob = ProcessModel(model.lower(data, "vsde")).problem()
    assert (prob.state_dim, prob.noise_dim, prob.diagonal) == (2, 2, False)
    th = {"a": jnp.asarray(2.0)}
    x = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(prob.drift(0.1, x, th), [-2.0, -4.0])
    np.testing.assert_allclose(prob.diffusion(0.1, x, th), data["L"])
    xs = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    y = np.asarray(data["y"])
    want = norm.logpdf(y[:, 0], xs[:, 0], 0.1).sum() + norm.logpdf(y[:, 1], xs[:, 1], 0.2).sum()
    np.testing.assert_allclose(prob.log_likelihood(xs, th), want, rtol=1e-12)
