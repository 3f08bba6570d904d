"""NUTS posteriors against closed forms and the posteriordb reference (tolerances from MCSE)."""
from pathlib import Path

import arviz as az
import numpy as np
import pytest

import ppl
from oracles import conjugate
from oracles.posteriordb import compare_to_reference

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Four independent conjugate problems in one program: the joint posterior factorises, so one
# compiled sampler checks all four closed forms.
CONJUGATE = """
data N: int
data y_nn: real[N]
data k: int
data n: int
data M: int
data counts: int<lower=0>[M]
data P: int
data D: int
data X: real[P, D]
data y_lr: real[P]

mu ~ normal(1, 2)
y_nn ~ normal(mu, 1.5)

theta ~ beta(2, 3)
k ~ binomial(n, theta)

lambda ~ gamma(3, 2)
counts ~ poisson(lambda)

beta: real[D] ~ normal(0, 2)
y_lr ~ normal(X @ beta, 0.5)
"""


@pytest.fixture(scope="module")
def conjugate_fit():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 2))
    data = {
        "N": 10, "y_nn": rng.normal(2.0, 1.5, 10), "k": 7, "n": 20, "M": 12,
        "counts": rng.poisson(3.0, 12), "P": 30, "D": 2, "X": X,
        "y_lr": X @ np.array([1.0, -0.5]) + rng.normal(0, 0.5, 30),
    }
    idata = ppl.compile(CONJUGATE, "conjugate.ppl").sample(data, chains=4, draws=1000, warmup=500, seed=3)
    return data, idata


def _check(idata, name, mean, sd, index=None):
    post = idata.posterior[name]
    if index is not None:
        post = post.isel({post.dims[-1]: index})
    s = az.summary(post.to_dataset(name="v"), kind="all")
    m_hat, sd_hat = float(s["mean"].iloc[0]), float(s["sd"].iloc[0])
    mcse_mean, mcse_sd = float(s["mcse_mean"].iloc[0]), float(s["mcse_sd"].iloc[0])
    assert abs(m_hat - mean) < 4 * mcse_mean + 1e-3 * sd, (name, m_hat, mean, mcse_mean)
    assert abs(sd_hat - sd) < 4 * mcse_sd + 1e-3 * sd, (name, sd_hat, sd, mcse_sd)
    assert float(s["r_hat"].iloc[0]) < 1.01 and float(s["ess_bulk"].iloc[0]) > 400


def test_normal_normal(conjugate_fit):
    data, idata = conjugate_fit
    exact = conjugate.normal_normal(data["y_nn"], 1.5, 1.0, 2.0)
    _check(idata, "mu", exact.mean, exact.sd)


def test_beta_binomial(conjugate_fit):
    data, idata = conjugate_fit
    exact = conjugate.beta_binomial(data["k"], data["n"], 2.0, 3.0)
    a, b = exact.alpha, exact.beta
    _check(idata, "theta", a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))


def test_gamma_poisson(conjugate_fit):
    data, idata = conjugate_fit
    exact = conjugate.gamma_poisson(data["counts"], 3.0, 2.0)
    _check(idata, "lambda", exact.shape / exact.rate, np.sqrt(exact.shape) / exact.rate)


def test_linear_regression_known_noise(conjugate_fit):
    data, idata = conjugate_fit
    exact = conjugate.linear_regression(data["X"], data["y_lr"], 0.5, np.zeros(2), 4.0 * np.eye(2))
    for j in range(2):
        _check(idata, "beta", exact.mean[j], np.sqrt(exact.cov[j, j]), index=j)


def test_sample_stats_are_reported(conjugate_fit):
    _, idata = conjugate_fit
    stats = idata.sample_stats
    for name in ("lp", "diverging", "acceptance_rate", "step_size", "tree_depth", "n_steps"):
        assert name in stats
    assert stats["diverging"].shape == (4, 1000)
    assert 0.6 < float(stats["acceptance_rate"].mean()) < 0.99


def test_eight_schools_matches_posteriordb(shared_data):
    name = "eight_schools-eight_schools_noncentered"
    model = ppl.load(EXAMPLES / "eight_schools.ppl")
    idata = model.sample(shared_data / "posteriordb" / name / "data.json", chains=4, draws=1000,
                         warmup=1000, seed=11)
    ours = {v: idata.posterior[v].values for v in ("mu", "tau", "theta")}
    failures = compare_to_reference(ours, name, check_convergence=True)
    assert not failures, "\n".join(failures)
    assert int(idata.sample_stats["diverging"].sum()) < 40


def test_a_chain_does_not_depend_on_how_many_run_beside_it():
    m = ppl.load(EXAMPLES / "eight_schools.ppl")
    runs = {k: m.sample(EXAMPLES / "eight_schools.json", chains=k, draws=60, warmup=60, seed=3,
                        validate=False) for k in (1, 2, 3, 5)}
    five = runs[5]
    for k, run in runs.items():
        for name in ("mu", "tau", "theta_raw"):
            np.testing.assert_array_equal(run.posterior[name].values, five.posterior[name].values[:k])
    four = five
    assert not np.array_equal(four.posterior["mu"].values[0], four.posterior["mu"].values[1])


def test_posterior_predictive_draws_from_counting_distributions():
    # numpyro's Poisson and negative-binomial samplers need threefry keys; the chains run on rbg
    m = ppl.compile("""
data N: int
data y: int[N]
lam ~ gamma(2, 1)
y ~ poisson(lam)
generated {
  y_rep ~ poisson(rep(lam, N))
  z ~ neg_binomial_2(lam, 2.0)
}
""")
    idata = m.sample({"N": 4, "y": [1, 3, 2, 0]}, chains=1, draws=100, warmup=100, seed=0)
    rep = idata.posterior_predictive["y_rep"].values
    assert rep.shape == (1, 100, 4) and (rep >= 0).all() and rep.mean() == pytest.approx(1.6, abs=0.6)
