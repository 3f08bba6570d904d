"""Adaptive tempered SMC for a static model on a flat unconstrained vector.

Targets pi_b(x) ∝ p(x) L(x)^b along 0 = b_0 < b_1 < ... < b_K = 1. Each step:

1. choose b_{k+1} by bisection so that the ESS of the incremental weights L(x)^(b_{k+1}-b_k)
   is `target_ess`·N (after resampling the weights are uniform, so this is the conditional
   ESS of Zhou, Johansen & Aston 2016); jump straight to 1 when that keeps the ESS above it;
2. add log mean of the incremental weights to log Ẑ (unbiased for Z = ∫ p L);
3. resample;
4. rejuvenate with `num_mcmc_steps` random-walk Metropolis–Hastings steps targeting pi_{b_{k+1}},
   proposal N(x, (2.38² / d) Σ̂) with Σ̂ the weighted particle covariance before resampling
   (plus a small jitter). Adapting the proposal from the particle population is the usual
   SMC practice: each kernel still leaves pi_{b_{k+1}} invariant given the population.

Contract: `log_prior(x)` and `log_likelihood(x)` take one particle x of shape (d,) and return a
scalar (NaN counts as -inf); `prior_sample(key)` returns one x of shape (d,) from the prior,
which must be proper. The loop is a `lax.while_loop` capped at `max_steps`; if the cap is hit
before b = 1, `log_evidence` is NaN and `temperatures` ends below 1.
"""
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from . import mh as _mh
from . import resampling as _resampling

__all__ = ["TemperedSMCResult", "run", "next_temperature", "rwmh_kernel"]


class TemperedSMCResult(NamedTuple):
    particles: Any  # (N, d), equally weighted draws from the posterior
    log_evidence: Any  # scalar log Ẑ
    temperatures: Any  # (max_steps + 1,): b_0 = 0 .. b_K = 1, then padded with 1
    num_steps: Any  # K
    acceptance_rates: Any  # (max_steps,) mean MH acceptance per step, NaN padding
    ess: Any  # (max_steps,) ESS of the incremental weights per step, NaN padding
    log_likelihoods: Any  # (N,) at the final particles


def _clean(v):
    return jnp.where(jnp.isnan(v), -jnp.inf, v)


def _tilt(log_lik, delta):
    # 0 * -inf would be NaN; a zero increment leaves every weight unchanged.
    return jnp.where(delta > 0, jnp.where(jnp.isneginf(log_lik), -jnp.inf, delta * log_lik), 0.0)


def next_temperature(log_lik, beta, target_ess: float, num_iters: int = 50):
    """Largest increment δ <= 1 - beta with ESS(exp(δ·log_lik)) >= target_ess · N (bisection)."""
    n = log_lik.shape[0]

    def ess_frac(delta):
        lw, _ = _resampling.normalize_log_weights(_tilt(log_lik, delta))
        return _resampling.ess(lw) / n

    hi0 = 1.0 - beta

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        ok = ess_frac(mid) >= target_ess
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = lax.fori_loop(0, num_iters, body, (jnp.zeros_like(hi0), hi0))
    delta = jnp.where(ess_frac(hi0) >= target_ess, hi0, lo)
    # A zero increment would repeat the same step forever; creep instead (max_steps caps it).
    return jnp.maximum(delta, jnp.minimum(hi0, 1e-12))


def rwmh_kernel(log_target: Callable, chol, num_steps: int):
    """`num_steps` random-walk MH moves x' = x + chol @ ε for one particle (ppl.algorithms.mh);
    returns (x, lp, mean acceptance probability)."""

    def kernel(key, x, lp):
        x, lp, _, acc = _mh.metropolis(key, x, lp, (), lambda p, _k: (log_target(p), ()),
                                       jnp.zeros((), x.dtype), chol, num_steps)
        return x, lp, acc

    return kernel


@partial(
    jax.jit,
    static_argnames=(
        "log_prior",
        "log_likelihood",
        "prior_sample",
        "num_particles",
        "target_ess",
        "num_mcmc_steps",
        "max_steps",
        "resampling",
    ),
)
def run(
    key,
    log_prior: Callable,
    log_likelihood: Callable,
    prior_sample: Callable,
    num_particles: int,
    target_ess: float = 0.5,
    num_mcmc_steps: int = 5,
    max_steps: int = 100,
    resampling="systematic",
) -> TemperedSMCResult:
    """Adaptive tempered SMC from the prior (b = 0) to the posterior (b = 1)."""
    n = num_particles
    resample_fn = _resampling.get(resampling)
    key_init, key_loop = jax.random.split(key)
    x0 = jax.vmap(prior_sample)(jax.random.split(key_init, n))
    d = x0.shape[1]
    lp0 = _clean(jax.vmap(log_prior)(x0))
    ll0 = _clean(jax.vmap(log_likelihood)(x0))
    scale = 2.38 / jnp.sqrt(d)
    dtype = x0.dtype

    def log_target_at(beta):
        return lambda x: log_prior(x) + _tilt(log_likelihood(x), beta)

    def body(state):
        k, key, x, lp, ll, beta, log_z, temps, accs, esss = state
        key, k_res, k_mv = jax.random.split(key, 3)
        delta = next_temperature(ll, beta, target_ess)
        new_beta = jnp.where(beta + delta >= 1.0 - 1e-12, 1.0, beta + delta)
        log_w = _tilt(ll, new_beta - beta)
        log_w_norm, log_sum = _resampling.normalize_log_weights(log_w)
        log_z = log_z + log_sum - jnp.log(n)
        w = jnp.exp(log_w_norm)
        mean = w @ x
        cov = (x - mean).T @ ((x - mean) * w[:, None])
        chol = scale * jnp.linalg.cholesky(cov + 1e-9 * jnp.eye(d, dtype=dtype))
        idx = resample_fn(k_res, w, n)
        x, ll = x[idx], ll[idx]
        # The MH target's log density at the current points, after the temperature change.
        lt = lp[idx] + _tilt(ll, new_beta)
        kernel = rwmh_kernel(log_target_at(new_beta), chol, num_mcmc_steps)
        x, _, acc = jax.vmap(kernel)(jax.random.split(k_mv, n), x, lt)
        lp = _clean(jax.vmap(log_prior)(x))
        ll = _clean(jax.vmap(log_likelihood)(x))
        return (
            k + 1,
            key,
            x,
            lp,
            ll,
            new_beta,
            log_z,
            temps.at[k + 1].set(new_beta),
            accs.at[k].set(jnp.mean(acc)),
            esss.at[k].set(_resampling.ess(log_w_norm)),
        )

    def cond(state):
        k, beta = state[0], state[5]
        return (beta < 1.0) & (k < max_steps)

    init = (
        jnp.int32(0),
        key_loop,
        x0,
        lp0,
        ll0,
        jnp.zeros((), dtype),
        jnp.zeros((), dtype),
        jnp.zeros(max_steps + 1, dtype),
        jnp.full(max_steps, jnp.nan, dtype),
        jnp.full(max_steps, jnp.nan, dtype),
    )
    k, _, x, lp, ll, beta, log_z, temps, accs, esss = lax.while_loop(cond, body, init)
    temps = jnp.where(jnp.arange(max_steps + 1) > k, beta, temps)
    log_z = jnp.where(beta >= 1.0, log_z, jnp.nan)
    return TemperedSMCResult(x, log_z, temps, k, accs, esss, ll)
