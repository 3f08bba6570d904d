"""Exact inference by enumerating every configuration of finitely many discrete variables.

Variables take integer values 0..K-1 in every element (the caller maps codes to real values).
Configurations are numbered in mixed radix: all elements of all variables, in the order of
``supports`` and row-major within a variable, with the *last* element varying fastest (the
order of ``itertools.product``). The joint is evaluated in chunks — ``vmap`` inside a chunk,
``lax.map`` over chunks — so peak memory is one chunk of configurations, not all of them.

`marginalize_independent` is the factored O(N·K) special case for N independent latents, the
path used to sum mixture indicators out of a density that NUTS then samples.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# Chunks of this many configurations are evaluated at once; one chunk's decoded values and
# log-joint are what stays in memory besides the (size,) vector of log-joint values.
_DEFAULT_CHUNK = 4096


class SupportTooLarge(ValueError):
    """The joint support has more configurations than enumeration is allowed to visit."""

    def __init__(self, size: int, max_size: int, sizes: Mapping[str, int]):
        self.size = size
        self.max_size = max_size
        self.sizes = dict(sizes)
        parts = ", ".join(f"{name}: {n:,}" for name, n in self.sizes.items())
        super().__init__(
            f"exact enumeration needs {size:,} joint configurations, more than the limit of "
            f"{max_size:,} (configurations per variable: {parts})"
        )


class EnumerationResult(NamedTuple):
    log_evidence: Array  # log of the sum of exp(log_joint) over all configurations
    marginals: dict  # name -> (*shape, K) posterior probability of each value, per element
    mode: dict  # name -> (*shape,) int: a most probable joint configuration
    log_joint_values: Array  # (size,) log_joint of every configuration, mixed-radix order
    supports: dict  # name -> (shape, K), normalised

    @property
    def size(self) -> int:
        return int(self.log_joint_values.shape[0])

    def decode(self, index: Array) -> dict:
        """Configuration number(s) -> dict name -> int values of shape (*index.shape, *shape)."""
        return _decode(jnp.asarray(index), self.supports)

    def sample(self, key: Array, n: int) -> dict:
        """n independent draws of the joint configuration from the posterior."""
        return _sample(key, self.log_joint_values, self.log_evidence, int(n), tuple(self.supports.items()))


def _normalise_supports(supports: Mapping) -> dict:
    out = {}
    for name, spec in supports.items():
        shape, num_values = spec
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        num_values = int(num_values)
        if num_values < 1:
            raise ValueError(f"{name}: a discrete support needs at least one value, got K={num_values}")
        out[name] = (shape, num_values)
    return out


def support_sizes(supports: Mapping) -> dict[str, int]:
    """Number of configurations of each variable, K ** (number of elements), as Python ints."""
    return {name: num_values ** math.prod(shape) for name, (shape, num_values) in _normalise_supports(supports).items()}


def _radices(supports: dict) -> list[int]:
    return [num_values for shape, num_values in supports.values() for _ in range(math.prod(shape))]


def _decode(index: Array, supports: dict) -> dict:
    radices = _radices(supports)
    # Place value of each element; the last element varies fastest.
    strides, place = [], 1
    for radix in reversed(radices):
        strides.append(place)
        place *= radix
    strides = jnp.asarray(strides[::-1], dtype=jax.dtypes.canonicalize_dtype(jnp.int64))
    radix_array = jnp.asarray(radices, dtype=strides.dtype)
    digits = (index[..., None] // strides) % radix_array if radices else jnp.zeros(index.shape + (0,), strides.dtype)
    digits = digits.astype(jnp.int32)
    values, start = {}, 0
    for name, (shape, _) in supports.items():
        count = math.prod(shape)
        values[name] = digits[..., start : start + count].reshape(index.shape + shape)
        start += count
    return values


def enumerate_joint(
    log_joint: Callable[[dict], Array],
    supports: Mapping,
    max_size: int = 10**7,
    chunk_size: int = _DEFAULT_CHUNK,
) -> EnumerationResult:
    """Evaluate ``log_joint`` on every configuration and return evidence, marginals, mode.

    ``supports``: ordered mapping name -> (shape, K); each element takes values 0..K-1.
    ``log_joint(values)`` gets ``{name: int32 array of shape}`` and returns a scalar; it must be
    a pure JAX function (it is vmapped and traced once). Raises `SupportTooLarge` before any
    work when the number of configurations exceeds ``max_size``.
    """
    supports = _normalise_supports(supports)
    sizes = support_sizes(supports)
    size = math.prod(sizes.values())
    if size > max_size:
        raise SupportTooLarge(size, max_size, sizes)

    chunk = max(1, min(chunk_size, size))
    num_chunks = -(-size // chunk)
    radices = _radices(supports)
    max_values = max(radices, default=1)
    num_elements = len(radices)

    def evaluate_chunk(chunk_index):
        index = chunk_index * chunk + jnp.arange(chunk)
        values = _decode(index, supports)
        log_p = jax.vmap(log_joint)(values)
        # Padding past the last configuration wraps to valid values; it must not count.
        return jnp.where(index < size, log_p, -jnp.inf)

    def accumulate_marginals(log_evidence, log_p_chunks):
        def add_chunk(totals, chunk_and_log_p):
            chunk_index, log_p = chunk_and_log_p
            index = chunk_index * chunk + jnp.arange(chunk)
            digits = jnp.concatenate(
                [v.reshape(chunk, -1) for v in _decode(index, supports).values()], axis=1
            ) if num_elements else jnp.zeros((chunk, 0), jnp.int32)
            probability = jnp.exp(log_p - log_evidence)
            one_hot = jax.nn.one_hot(digits, max_values, dtype=probability.dtype)
            return totals + jnp.einsum("c,cek->ek", probability, one_hot), None

        totals = jnp.zeros((num_elements, max_values), dtype=log_p_chunks.dtype)
        if num_chunks == 1:
            return add_chunk(totals, (0, log_p_chunks[0]))[0]
        totals, _ = lax.scan(add_chunk, totals, (jnp.arange(num_chunks), log_p_chunks))
        return totals

    @jax.jit
    def run():
        if num_chunks == 1:
            # Small supports (the common case) skip the chunk loops: simpler, faster to compile.
            log_p_chunks = evaluate_chunk(0)[None]
        else:
            log_p_chunks = lax.map(evaluate_chunk, jnp.arange(num_chunks))
        log_p_flat = log_p_chunks.reshape(-1)[:size]
        log_evidence = jax.nn.logsumexp(log_p_flat)
        totals = accumulate_marginals(log_evidence, log_p_chunks)
        return log_evidence, totals, _decode(jnp.argmax(log_p_flat), supports), log_p_flat

    log_evidence, totals, mode, log_p_flat = run()

    marginals, start = {}, 0
    for name, (shape, num_values) in supports.items():
        count = math.prod(shape)
        marginals[name] = totals[start : start + count, :num_values].reshape(shape + (num_values,))
        start += count
    return EnumerationResult(log_evidence, marginals, mode, log_p_flat, supports)


@partial(jax.jit, static_argnames=("num_samples", "supports_items"))
def _sample(key, log_joint_values, log_evidence, num_samples, supports_items):
    # Inverse-CDF sampling keeps memory at O(size + n), unlike Gumbel-max over (n, size).
    cdf = jnp.cumsum(jnp.exp(log_joint_values - log_evidence))
    u = jax.random.uniform(key, (num_samples,), dtype=cdf.dtype) * cdf[-1]
    index = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, log_joint_values.shape[0] - 1)
    return _decode(index, dict(supports_items))


class IndependentMarginal(NamedTuple):
    log_marginal: Array  # scalar: sum_i logsumexp_k log_lik_per_value[i, k]
    posterior: Array  # (N, K): p(z_i = k | y_i, θ)


@jax.jit
def marginalize_independent(log_lik_per_value: Array) -> IndependentMarginal:
    """Sum N independent discrete latents out of a joint, in O(N·K).

    ``log_lik_per_value[i, k] = log p(z_i = k, y_i | θ)`` (prior of the value plus the
    likelihood of its observations). Differentiable in the input, so a mixture's indicators
    can be marginalised inside a NUTS potential. Extra leading axes are treated as more
    independent latents (everything but the last axis is summed).
    """
    log_lik_per_value = jnp.asarray(log_lik_per_value)
    per_latent = jax.nn.logsumexp(log_lik_per_value, axis=-1)
    posterior = jnp.exp(log_lik_per_value - per_latent[..., None])
    return IndependentMarginal(jnp.sum(per_latent), posterior)
