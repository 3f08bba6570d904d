"""Random-walk Metropolis–Hastings, with the adaptations every user of it shares.

Used by particle Gibbs (parameter moves given a trajectory), PMMH (moves accepted on a
particle filter's likelihood estimate) and tempered SMC (rejuvenation): one kernel, one
step-size adaptation, one proposal-shape adaptation.

- `metropolis(key, x, lp, aux, target, log_eps, shape, num_steps)`: `num_steps` moves
  x' = x + exp(log_eps) · shape @ ε, accepted with min(1, exp(lp' − lp)); `target(x, key)`
  returns (log density, aux) — the key for targets that are themselves random, such as a
  particle filter's estimate — and aux follows the accepted point (e.g. a trajectory, a
  likelihood estimate). The current point's log density is carried, never recomputed (which
  keeps PMMH exact). NaN counts as −∞.
- `adapt_step_size`: Robbins–Monro on log ε towards a target acceptance during warm-up.
- `shape_stats` / `update_shape` / `shape_of`: the proposal's shape from the chain's covariance
  (Haario, Saksman & Tamminen 2001), estimated over part of warm-up and frozen after it, scaled
  to mean variance 1 so the step size keeps adapting the overall scale.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
from jax import lax


def _clean(v):
    return jnp.where(jnp.isnan(v), -jnp.inf, v)


def metropolis(key, x, lp, aux, target: Callable, log_eps, shape, num_steps: int
               ) -> Tuple[Any, Any, Any, Any]:
    """(x, lp, aux, mean acceptance probability) after `num_steps` random-walk moves."""
    d = x.shape[0]

    def move(carry, k):
        x, lp, aux, acc = carry
        ka, kb, kt = jax.random.split(k, 3)
        prop = x + jnp.exp(log_eps) * (shape @ jax.random.normal(ka, (d,), dtype=x.dtype))
        lp_prop, aux_prop = target(prop, kt)
        lp_prop = _clean(lp_prop)
        a = jnp.minimum(1.0, jnp.exp(jnp.nan_to_num(lp_prop - lp, nan=-jnp.inf)))
        ok = jax.random.uniform(kb, dtype=x.dtype) < a
        pick = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
        return (pick(prop, x), pick(lp_prop, lp), jax.tree_util.tree_map(pick, aux_prop, aux),
                acc + a), None

    (x, lp, aux, acc), _ = lax.scan(move, (x, lp, aux, jnp.zeros((), x.dtype)),
                                    jax.random.split(key, num_steps))
    return x, lp, aux, acc / num_steps


def adapt_step_size(log_eps, acc, i, warmup: int, target: float):
    """One Robbins–Monro step towards acceptance `target` at iteration i < warmup."""
    rate = 1.0 / (1.0 + i) ** 0.6
    return jnp.where(i < warmup, log_eps + rate * (acc - target), log_eps)


def shape_stats(d: int, dtype=None):
    """Running (count, mean, sum of squared deviations) of d-dimensional points (Welford)."""
    dtype = dtype or jnp.result_type(float)
    return jnp.zeros((), dtype), jnp.zeros(d, dtype), jnp.zeros((d, d), dtype)


def update_shape(stats, x, collect):
    """Add x to the running statistics when `collect` holds."""
    n, mean, m2 = stats
    n1 = n + 1.0
    delta = x - mean
    mean1 = mean + delta / n1
    m21 = m2 + jnp.outer(delta, x - mean1)
    return jax.tree_util.tree_map(lambda new, old: jnp.where(collect, new, old),
                                  (n1, mean1, m21), stats)


def shape_of(stats):
    """Cholesky factor of the covariance estimate scaled to mean variance 1 (identity until
    there are enough points)."""
    n, _, m2 = stats
    d = m2.shape[0]
    cov = m2 / jnp.maximum(n - 1.0, 1.0)
    cov = cov / jnp.maximum(jnp.trace(cov) / d, 1e-12) + 1e-6 * jnp.eye(d)
    chol = jnp.linalg.cholesky(cov)
    ok = (n > max(10, 2 * d)) & jnp.all(jnp.isfinite(chol))
    return jnp.where(ok, chol, jnp.eye(d))
