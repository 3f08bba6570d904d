"""Additive functionals of the generated block under the smc pass — PaRIS with fixed parameters
and inside particle Gibbs, exact smoothing draws under Kalman — against the Kalman smoother
(and quadrature over the free parameter)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.algorithms import kalman
from ppl.cli import main as cli_main

MODEL = """
data T: int
data y: real[T]
{prior}
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T {{ x[t] ~ normal(a * x[t-1], 1) }}
for t in 1:T {{ y[t] ~ normal(x[t], 2) }}
generated {{
  total = sum(x)
  cross = sum(x[2:T] .* x[1:T-1])
  innovations = 0
  for t in 2:T {{ innovations = innovations + (x[t] - a * x[t-1])^2 }}
}}
"""
T = 30
A_TRUE = 0.9


@pytest.fixture(scope="module")
def y():
    # weak observations (sd 2): smoothing moves the states well away from the data
    rng = np.random.default_rng(3)
    x = np.zeros(T)
    x[0] = rng.normal()
    for t in range(1, T):
        x[t] = A_TRUE * x[t - 1] + rng.normal()
    return x + 2.0 * rng.normal(size=T)


def smoothed(y, a):
    """(E[Σ x_t | y, a], E[Σ x_{t-1} x_t | y, a], E[Σ (x_t - a x_{t-1})² | y, a], log p(y | a))
    from the Kalman smoother."""
    one = jnp.eye(1)
    m = kalman.LinearGaussianSSM(m0=jnp.zeros(1), P0=one, F=a * one, Q=one, H=one, R=4.0 * one)
    sm = kalman.smoother(m, jnp.asarray(y))
    mu = np.asarray(sm.smoothed_means[:, 0])
    sq = np.asarray(sm.smoothed_covs[:, 0, 0]) + mu**2  # E[x_t²]
    cross = np.asarray(sm.smoothed_cross_covs[:, 0, 0]) + mu[:-1] * mu[1:]  # E[x_t x_{t+1}]
    innovations = (sq[1:] - 2 * a * cross + a * a * sq[:-1]).sum()
    return (mu.sum(), cross.sum(), innovations,
            float(kalman.filter(m, jnp.asarray(y)).log_evidence))


def _within(attrs, name, exact, k=4.0):
    est, se = attrs[f"smoothed_{name}"], attrs[f"smoothed_{name}_se"]
    assert abs(est - exact) < k * se, (name, est, se, exact)


@pytest.fixture(scope="module")
def fixed_model():
    return ppl.compile(MODEL.format(prior="data a: real"), "lg_functionals.ppl")


def test_kalman_draws(fixed_model, y):
    idata = fixed_model.sample({"T": T, "y": y.tolist(), "a": A_TRUE}, method="smc", seed=1)
    a = idata.posterior.attrs
    assert a["smoothing_method"].startswith("exact smoothing draws")
    total, cross, innovations, _ = smoothed(y, A_TRUE)
    _within(a, "total", total)
    _within(a, "cross", cross)
    _within(a, "innovations", innovations)
    assert idata.posterior_predictive["cross"].shape == (4, 1000)


def test_paris_with_fixed_parameters(fixed_model, y):
    idata = fixed_model.sample({"T": T, "y": y.tolist(), "a": A_TRUE}, method="smc", seed=2,
                               proposal="bootstrap", particles=200, chains=20, draws=10)
    a = idata.posterior.attrs
    assert a["smoothing_method"] == "PaRIS, 20 independent runs of 200 particles"
    assert idata.sample_stats["total_paris"].shape == (20, 1)
    total, cross, innovations, _ = smoothed(y, A_TRUE)
    _within(a, "total", total)
    _within(a, "cross", cross)
    _within(a, "innovations", innovations)


def test_paris_inside_particle_gibbs(y):
    m = ppl.compile(MODEL.format(prior="a ~ uniform(0, 1)"), "lg_functionals_free.ppl")
    idata = m.sample({"T": T, "y": y.tolist()}, method="smc", seed=3, draws=500, warmup=300,
                     particles=50)
    # exact: the smoother's expectations averaged over p(a | y), by quadrature on a grid
    grid = (np.arange(400) + 0.5) / 400
    vals = np.array([smoothed(y, g) for g in grid])
    w = np.exp(vals[:, 3] - vals[:, 3].max())
    w /= w.sum()
    exact = w @ vals[:, :3]
    attrs = idata.posterior.attrs
    assert attrs["smoothing_method"].startswith("conditional PaRIS")
    for name, value in zip(("total", "cross", "innovations"), exact):
        _within(attrs, name, value)
    # 2000 draws, paris_draws=1000 by default: PaRIS at every other draw, NaN in between
    assert attrs["smoothing_method"].endswith("at one particle Gibbs draw in 2")
    paris = idata.sample_stats["cross_paris"].values
    assert paris.shape == (4, 500)
    assert np.all(np.isfinite(paris[:, ::2])) and np.all(np.isnan(paris[:, 1::2]))
    # the plain draws of the generated quantity estimate the same expectation, less precisely
    plain = idata.posterior_predictive["cross"].values
    assert plain.shape == (4, 500)
    assert np.var(paris[:, ::2]) < np.var(plain)


def test_cli_prints_the_functionals(tmp_path, y, capsys):
    src = tmp_path / "lg.ppl"
    src.write_text(MODEL.format(prior="data a: real"))
    data = tmp_path / "lg.json"
    data.write_text(json.dumps({"T": T, "y": y.tolist(), "a": A_TRUE}))
    assert cli_main(["sample", str(src), "--data", str(data), "--method", "smc", "--draws", "50"]) == 0
    out = capsys.readouterr().out
    assert "additive functionals, E[· | data] (exact smoothing draws (Kalman, backward sampling)):" in out
    assert "  total = " in out and "  cross = " in out
    assert cli_main(["sample", str(src), "--data", str(data), "--method", "smc", "--draws", "50",
                     "--option", "paris=false"]) == 0
    assert "additive functionals" not in capsys.readouterr().out
    # `ppl check` says which generated quantities are additive, and why the others are not
    src.write_text(MODEL.format(prior="data a: real").rstrip().removesuffix("}")
                   + "  peak = max(x)\n}\n")
    assert cli_main(["check", str(src), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "generated quantities under smc:\n  total            additive over steps 1..30: " \
           "E[· | data] by PaRIS\n" in out
    assert "  innovations      additive over steps 2..30" in out
    assert "  peak             not additive: not a sum or mean over the time index" in out
