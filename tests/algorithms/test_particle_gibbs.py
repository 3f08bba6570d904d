"""Particle Gibbs: smoothing marginals of sampled trajectories vs the RTS smoother; PMMH vs a
Kalman-likelihood grid posterior."""
import json

import numpy as np
import pytest

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from ppl.algorithms import kalman
from ppl.algorithms import particle_filter as pf
from ppl.algorithms import particle_gibbs as pg

T = 20
# y[17] is a ~3.4 sd outlier for the bootstrap predictive: with few particles a chain started
# from a filter trajectory needs ~100+ sweeps to reach the posterior there, hence the burn-in.
NUM_CHAINS, NUM_ITERS, BURN, NUM_PARTICLES = 4, 1500, 300, 20


def lg_model(y):
    y = jnp.asarray(y)
    return pf.StateSpaceModel(
        num_steps=y.shape[0],
        init_sample=lambda k, p: jax.random.normal(k),
        init_logpdf=lambda x, p: norm.logpdf(x),
        transition_sample=lambda k, xp, t, p: p * xp + jax.random.normal(k),
        transition_logpdf=lambda x, xp, t, p: norm.logpdf(x, p * xp, 1.0),
        observation_logpdf=lambda x, t, p: norm.logpdf(y[t], x, 0.2),
    )


def rts(y, phi=0.9):
    one = jnp.eye(1)
    m = kalman.LinearGaussianSSM(m0=jnp.zeros(1), P0=one, F=phi * one, Q=one, H=one, R=0.04 * one)
    return kalman.smoother(m, y)


@pytest.fixture(scope="module")
def y(shared_data):
    return np.array(json.loads((shared_data / "ssm" / "linear_gaussian_T100.json").read_text())["y"])[:T]


def batch_mean_se(draws, num_batches=5):
    """draws (chains, iters, ...) -> MC standard error of the overall mean by batch means."""
    c, n = draws.shape[:2]
    b = draws[:, : n - n % num_batches].reshape((c, num_batches, -1) + draws.shape[2:]).mean(2)
    b = b.reshape((c * num_batches,) + draws.shape[2:])
    return b.std(0, ddof=1) / np.sqrt(b.shape[0])


@pytest.mark.parametrize(
    "ancestor_sampling,backward_sampling",
    # Compilation dominates (~20 s on a loaded 2-core box), so one variant is slow-only.
    [(True, False), pytest.param(False, True, marks=pytest.mark.slow)],
)
def test_smoothing_means_match_rts(y, ancestor_sampling, backward_sampling):
    model = lg_model(y)
    run = jax.jit(
        jax.vmap(
            lambda k: pg.particle_gibbs(
                k, model, 0.9, NUM_PARTICLES, NUM_ITERS,
                ancestor_sampling=ancestor_sampling, backward_sampling=backward_sampling,
            )
        )
    )
    trajs = np.asarray(run(jax.random.split(jax.random.key(0), NUM_CHAINS)))[:, BURN:]  # (C, I, T)
    sm = rts(y)
    exact_mean = np.asarray(sm.smoothed_means[:, 0])
    exact_sd = np.sqrt(np.asarray(sm.smoothed_covs[:, 0, 0]))
    se = batch_mean_se(trajs)
    err = trajs.mean((0, 1)) - exact_mean
    # 4.5 se per step over T = 20 steps (family-wise); small floor for se estimation noise.
    assert np.all(np.abs(err) < 4.5 * se + 0.02 * exact_sd), (err, se)
    sd = trajs.reshape(-1, T).std(0)
    assert np.all(np.abs(sd / exact_sd - 1) < 0.15), sd / exact_sd


@pytest.mark.slow
def test_pmmh_phi_posterior(y):
    # Flat prior on phi in (-1, 1); exact posterior on a grid via the Kalman likelihood.
    grid = np.linspace(-0.99, 0.99, 397)
    model_k = lambda phi: kalman.LinearGaussianSSM(  # noqa: E731
        m0=jnp.zeros(1), P0=jnp.eye(1), F=phi * jnp.eye(1), Q=jnp.eye(1), H=jnp.eye(1), R=0.04 * jnp.eye(1)
    )
    ll = np.array([float(kalman.log_evidence(model_k(g), y)) for g in grid])
    post = np.exp(ll - ll.max())
    post /= post.sum()
    exact_mean = (grid * post).sum()
    model = lg_model(y)
    model = model._replace(
        transition_sample=lambda k, xp, t, p: p[0] * xp + jax.random.normal(k),
        transition_logpdf=lambda x, xp, t, p: norm.logpdf(x, p[0] * xp, 1.0),
    )
    log_prior = lambda p: jnp.where(jnp.abs(p[0]) < 1, 0.0, -jnp.inf)  # noqa: E731
    run = jax.jit(jax.vmap(lambda k: pg.pmmh(k, model, log_prior, jnp.array([0.5]), 3000, 100, step_size=0.3)))
    res = run(jax.random.split(jax.random.key(1), 4))
    draws = np.asarray(res.samples)[:, 500:, 0]
    se = batch_mean_se(draws, 10)
    assert abs(draws.mean() - exact_mean) < 4 * se, (draws.mean(), exact_mean, se)
    assert np.all((np.asarray(res.acceptance_rate) > 0.05))
