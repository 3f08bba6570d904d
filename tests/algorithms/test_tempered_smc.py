"""Tempered SMC on a conjugate Normal–Normal model: exact log evidence and posterior moments."""
import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from ppl.algorithms import tempered_smc

# x ∈ R^2, x_j ~ N(0, S0²) i.i.d., y_ij ~ N(x_j, SIG²), i = 1..M.
S0, SIG, M = 3.0, 1.0, 10
RNG = np.random.default_rng(1)
X_TRUE = np.array([1.5, -2.0])
Y = X_TRUE + SIG * RNG.normal(size=(M, 2))
NUM_RUNS, N = 8, 400


def exact():
    cov = SIG**2 * np.eye(M) + S0**2 * np.ones((M, M))
    log_z = sum(stats.multivariate_normal(np.zeros(M), cov).logpdf(Y[:, j]) for j in range(2))
    prec = 1 / S0**2 + M / SIG**2
    return log_z, Y.sum(0) / SIG**2 / prec, np.sqrt(1 / prec) * np.ones(2)


def log_prior(x):
    return jnp.sum(norm.logpdf(x, 0.0, S0))


def log_likelihood(x):
    return jnp.sum(norm.logpdf(jnp.asarray(Y), x, SIG))


def prior_sample(key):
    return S0 * jax.random.normal(key, (2,))


@pytest.fixture(scope="module")
def runs():
    f = jax.jit(
        jax.vmap(
            lambda k: tempered_smc.run(k, log_prior, log_likelihood, prior_sample, N, num_mcmc_steps=5)
        )
    )
    return f(jax.random.split(jax.random.key(0), NUM_RUNS))


def test_log_evidence(runs):
    log_z, _, _ = exact()
    lz = np.asarray(runs.log_evidence)
    c = lz.max()
    r = np.exp(lz - c)
    est = np.log(r.mean()) + c
    se = r.std(ddof=1) / r.mean() / np.sqrt(NUM_RUNS)
    assert abs(est - log_z) < 4 * se + 0.02, (est, log_z, se, lz.std())
    assert lz.std() < 0.5


def test_posterior_moments(runs):
    _, mean, sd = exact()
    x = np.asarray(runs.particles)  # (runs, N, 2)
    run_means = x.mean(1)
    # Run-to-run spread gives the MC error, including that of correlated particles.
    se = run_means.std(0, ddof=1) / np.sqrt(NUM_RUNS)
    assert np.all(np.abs(run_means.mean(0) - mean) < 4 * se + 0.01 * sd), (run_means.mean(0), mean, se)
    run_sds = x.std(1)
    se_sd = run_sds.std(0, ddof=1) / np.sqrt(NUM_RUNS)
    assert np.all(np.abs(run_sds.mean(0) - sd) < 4 * se_sd + 0.03 * sd), (run_sds.mean(0), sd)


def test_schedule_and_acceptance(runs):
    k = np.asarray(runs.num_steps)
    temps = np.asarray(runs.temperatures)
    for i in range(NUM_RUNS):
        t = temps[i, : k[i] + 1]
        assert t[0] == 0 and t[-1] == 1 and np.all(np.diff(t) > 0)
        acc = np.asarray(runs.acceptance_rates)[i, : k[i]]
        assert np.all((acc > 0.05) & (acc < 0.95)), acc
        ess = np.asarray(runs.ess)[i, : k[i] - 1]  # all but the last step hit the target
        np.testing.assert_allclose(ess, 0.5 * N, rtol=1e-3)
