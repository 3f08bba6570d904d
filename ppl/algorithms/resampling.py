"""Resampling schemes for particle methods.

Each scheme maps normalised weights to ancestor indices with the same law of the
offspring counts in expectation: E[#{j : a_j = i}] = num_samples * w_i. They differ only
in the variance of those counts (multinomial > residual, stratified > systematic in
practice). All are pure functions of a PRNG key and a weight vector, jit/vmap friendly.

`weights` are probabilities summing to one (normalise in log space first; see
`normalize_log_weights`). Returned indices are int32 arrays of length `num_samples`.
"""
from typing import Callable, Optional

import jax
import jax.numpy as jnp

__all__ = [
    "multinomial",
    "stratified",
    "systematic",
    "residual",
    "get",
    "normalize_log_weights",
    "normalize",
    "ess",
    "ess_from_weights",
    "SCHEMES",
]


def normalize_log_weights(log_weights):
    """Return (normalised log weights, log of their sum); NaN counts as -inf.

    If every weight is -inf the normalised weights are uniform (so nothing downstream turns
    into NaN) and the log sum is -inf: callers detect the failure from the latter.
    """
    normalised, _, log_sum = normalize(log_weights)
    return normalised, log_sum


def normalize(log_weights):
    """(normalised log weights, normalised weights, log of their sum) with one `exp` per weight.

    NaN counts as -inf, and if every weight is -inf (or the sum is not finite) the weights are
    uniform and the log sum is -inf / +inf.
    """
    log_weights = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    n = log_weights.shape[0]
    m = jnp.max(log_weights)
    shift = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(log_weights - shift)
    total = jnp.sum(e)
    log_sum = jnp.log(total) + shift
    ok = jnp.isfinite(log_sum)
    safe_total = jnp.where(ok, total, 1.0)
    normalised = jnp.where(ok, log_weights - log_sum, -jnp.log(n) * jnp.ones_like(log_weights))
    w = jnp.where(ok, e / safe_total, jnp.full_like(e, 1.0 / n))
    return normalised, w, log_sum


def ess_from_weights(weights):
    """Effective sample size 1 / sum w_i^2 of normalised weights."""
    return 1.0 / jnp.sum(weights * weights)


def ess(log_weights_normalised):
    """Effective sample size 1 / sum w_i^2 of normalised log weights."""
    return jnp.exp(-jax.scipy.special.logsumexp(2.0 * log_weights_normalised))


def _inverse_cdf(uniforms, weights):
    # Searching sorted (or any) uniforms in the cumulative weights; the clip guards against
    # the last cumulative sum landing just below one by rounding.
    cdf = jnp.cumsum(weights)
    idx = jnp.searchsorted(cdf, uniforms * cdf[-1], side="right")
    return jnp.clip(idx, 0, weights.shape[0] - 1).astype(jnp.int32)


def multinomial(key, weights, num_samples: Optional[int] = None):
    """i.i.d. draws from Categorical(weights)."""
    n = weights.shape[0] if num_samples is None else num_samples
    u = jax.random.uniform(key, (n,), dtype=weights.dtype)
    return _inverse_cdf(u, weights)


def stratified(key, weights, num_samples: Optional[int] = None):
    """One uniform per stratum [k/n, (k+1)/n)."""
    n = weights.shape[0] if num_samples is None else num_samples
    u = (jnp.arange(n, dtype=weights.dtype) + jax.random.uniform(key, (n,), dtype=weights.dtype)) / n
    return _inverse_cdf(u, weights)


def systematic(key, weights, num_samples: Optional[int] = None):
    """A single uniform shared by all strata: the points (k + u) / n, k = 0 … n-1.

    O(N), without a search: particle i takes the points below its cumulative weight C_i, so
    it ends the run of slots ⌈n C_i / C_N − u⌉ (its count is the difference with the previous
    one's). Each particle with offspring marks the slot where its run starts and a running
    maximum fills the run: the ancestors `_inverse_cdf` finds by searching the points in the
    cumulative weights, up to rounding at a tie."""
    n = weights.shape[0] if num_samples is None else num_samples
    u = jax.random.uniform(key, (), dtype=weights.dtype)
    cdf = jnp.cumsum(weights)
    ends = jnp.clip(jnp.ceil(cdf * (n / cdf[-1]) - u), 0, n).astype(jnp.int32)
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
    # particles without offspring mark nothing (index n is dropped)
    at = jnp.where(ends > starts, starts, n)
    marks = jnp.zeros((n,), jnp.int32).at[at].max(jnp.arange(weights.shape[0], dtype=jnp.int32),
                                                 mode="drop")
    return jax.lax.cummax(marks)


def systematic_search(key, weights, num_samples: Optional[int] = None):
    """`systematic` by searching the points in the cumulative weights (O(N log N)): the
    reference the counting form is checked against."""
    n = weights.shape[0] if num_samples is None else num_samples
    u = (jnp.arange(n, dtype=weights.dtype) + jax.random.uniform(key, (), dtype=weights.dtype)) / n
    return _inverse_cdf(u, weights)


def residual(key, weights, num_samples: Optional[int] = None):
    """floor(n w_i) deterministic copies of i, the rest multinomial on the residuals."""
    n = weights.shape[0] if num_samples is None else num_samples
    scaled = n * weights
    counts = jnp.floor(scaled)
    num_det = jnp.sum(counts).astype(jnp.int32)
    # Slot k < num_det takes the particle whose cumulative deterministic count passes k.
    det_cdf = jnp.cumsum(counts)
    slots = jnp.arange(n)
    det_idx = jnp.searchsorted(det_cdf, slots.astype(det_cdf.dtype), side="right")
    res = scaled - counts
    res_sum = jnp.sum(res)
    # When num_det == n the residuals are all ~0 and unused; keep them finite anyway.
    res = jnp.where(res_sum > 0, res / jnp.where(res_sum > 0, res_sum, 1.0), weights)
    rand_idx = multinomial(key, res, n)
    idx = jnp.where(slots < num_det, det_idx, rand_idx)
    return jnp.clip(idx, 0, weights.shape[0] - 1).astype(jnp.int32)


SCHEMES = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get(name_or_fn) -> Callable:
    """A scheme by name, or a user function `(key, weights, num_samples) -> indices` as is."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return SCHEMES[name_or_fn]
    except KeyError:
        raise ValueError(
            f"unknown resampling scheme {name_or_fn!r}; choose one of {sorted(SCHEMES)}"
        ) from None
