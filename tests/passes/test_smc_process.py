"""The smc pass on a process model: a linear SDE read at data times is rewritten into the
state-space model of its exact Gaussian steps (ppl/ir/process.py, `discretise_linear`), then
filtered — Kalman (exact log p(y)) or, with the Kalman step turned off (`proposal=bootstrap`),
a particle filter. Checked against the exact answers of ../shared/data/sde/ou_gaussian.json and
direct Gaussian conditioning (`ppl.algorithms.linear_sde.smooth`)."""
from pathlib import Path

import numpy as np
import pytest

import ppl
from oracles import sde as sde_data
from ppl.algorithms import linear_sde as LS
from ppl.ir.process import NotLinearProcess, discretise_linear, linear_process
from ppl.ir.statespace import analyze
from ppl.ir import nodes as N
from ppl.ir.graph import ModelGraph
from ppl.syntax.visit import walk
from ppl.lower.random import rng_key
from ppl.passes import choose
from ppl.syntax.errors import PPLCheckError, PPLDataError

ROOT = Path(__file__).resolve().parents[2]
OU_KEYS = ["N", "t", "y", "theta", "mu", "sigma", "x0_mean", "x0_sd", "obs_sd", "t_end"]


@pytest.fixture(scope="module")
def ou():
    d = sde_data.load("ou_gaussian")
    model = ppl.load(ROOT / "examples" / "sde_ou.ppl")
    return model, d, {k: d[k] for k in OU_KEYS}


@pytest.fixture(scope="module")
def kalman(ou):
    model, _, data = ou
    return model.sample(data, method="smc", chains=2, draws=1000, seed=0)


def test_the_rewrite_is_a_linear_gaussian_state_space_model(ou):
    model, _, _ = ou
    assert choose(model.graph, "smc").method == "smc"
    assert choose(model.graph).method == "vsde"  # auto keeps the variational pass
    ir = discretise_linear(model.ir)
    assert ir.rewrites[-1] == "discretise_process"
    assert ir.variables["x"].kind == "latent" and ir.variables["x"].elementwise
    form = analyze(ModelGraph(ir))
    assert form.state_vars == ("x",) and form.linear_gaussian
    assert not any(isinstance(x, N.PathAt) for s in ir.body for x in walk(s))


def test_kalman_gives_the_exact_evidence_and_posterior(ou, kalman):
    """log p(y) to 1e-6 of the reference (−12.0165629); the smoothing draws at the read times
    agree with direct Gaussian conditioning within Monte Carlo error."""
    _, d, _ = ou
    a = kalman.posterior.attrs
    assert a["smc_algorithm"].startswith("Kalman")
    assert abs(a["log_evidence"] - d["reference"]["log_evidence"]) < 1e-6, a["log_evidence"]
    times = kalman.process["x_time"].values
    np.testing.assert_array_equal(times, np.asarray(d["t"]))
    m0, P0 = LS.initial_moments(d["x0_mean"], d["x0_sd"] ** 2)
    grid = np.concatenate([[0.0], times])
    tr = LS.transitions(LS.mafbm_sde(-d["theta"], d["theta"] * d["mu"], d["sigma"]), np.diff(grid))
    means, covs, log_ev = LS.smooth(tr, grid, m0, P0, d["t"], d["y"], [[1.0]],
                                    [[d["obs_sd"] ** 2]], times=times)
    assert abs(float(log_ev) - d["reference"]["log_evidence"]) < 1e-6
    x = kalman.posterior["x"].values.reshape(-1, times.size)
    sd = np.sqrt(covs[:, 0, 0])
    n = x.shape[0]
    assert np.all(np.abs(x.mean(0) - means[:, 0]) < 4.5 * sd / np.sqrt(n))
    assert np.all(np.abs(x.std(0) / sd - 1) < 4.5 / np.sqrt(2 * n))


def test_particle_filter_without_the_kalman_step_is_within_its_se(ou):
    """`proposal=bootstrap` turns the Kalman step off: a bootstrap particle filter on the same
    exact transitions; its evidence estimate within 3 of its standard errors of the exact one."""
    model, d, data = ou
    idata = model.sample(data, method="smc", proposal="bootstrap", particles=2000, chains=8,
                         draws=100, seed=1)
    a = idata.posterior.attrs
    assert "particle filter (bootstrap)" in a["smc_algorithm"]
    exact = d["reference"]["log_evidence"]
    assert 0 < a["log_evidence_se"] < 0.2
    assert abs(a["log_evidence"] - exact) < 3 * a["log_evidence_se"], \
        (a["log_evidence"], a["log_evidence_se"], exact)


def test_parameters_with_priors_run_by_particle_gibbs():
    """A drift rate with a prior: the same exact steps with θ free (particle Gibbs); the
    discretisation check runs at a prior draw of θ."""
    src = """
data N: int
data t: real[N]
data y: real[N]
theta ~ lognormal(0, 0.5)
x: process<end=2> ~ sde(drift = -theta * x, diffusion = 0.5, init = normal(0, 0.3))
for i in 1:N {
  y[i] ~ normal(x(t[i]), 0.1)
}
"""
    model = ppl.compile(src)
    data = {"N": 4, "t": [0.2, 0.7, 1.1, 1.9], "y": [0.1, -0.2, 0.3, 0.0]}
    lowered = model.lower(data, "smc")
    from ppl.passes import PASSES
    program = PASSES["smc"].build(lowered, {"chains": 1, "draws": 10, "warmup": 10})
    r = PASSES["smc"].validate(program, rng_key(7))
    assert r["discretisation_checked"] and r["discretisation_max_rel_diff"] < 1e-8
    assert r["drift_slope"] < 0 and r["diffusion"] == 0.5


@pytest.mark.parametrize("drift,noise,match", [
    ("x - x * x * x", "", "not linear"),
    ("-x", ", noise = fbm(0.3)", "MA-fBM"),
    ("-x + time", "", "reads `time`"),
])
def test_nonlinear_or_fractional_processes_are_declined_with_the_reason(drift, noise, match):
    src = f"""
data N: int
data t: real[N]
data y: real[N]
x: process<end=2> ~ sde(drift = {drift}, diffusion = 0.5, init = 0{noise})
for i in 1:N {{
  y[i] ~ normal(x(t[i]), 0.1)
}}
"""
    model = ppl.compile(src)
    with pytest.raises(NotLinearProcess, match=match):
        linear_process(model.ir)
    with pytest.raises(PPLCheckError, match=match) as e:
        choose(model.graph, "smc")
    assert e.value.span is not None and e.value.span.line == 5


def test_unsorted_read_times_are_a_located_data_error(ou):
    model, _, data = ou
    bad = dict(data, t=[data["t"][1], data["t"][0]] + list(data["t"][2:]))
    with pytest.raises(PPLDataError, match=r"read at t\[2\] = .* not after t\[1\]") as e:
        model.sample(bad, method="smc", chains=1, draws=10)
    assert e.value.span.line == 17
