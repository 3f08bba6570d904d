"""Hidden Markov chains over K discrete states, in log space, with `lax.scan` over time.

Conventions shared by every function:
- ``log_init`` (K,): log p(z_1 = k).
- ``log_trans`` (K, K) for a homogeneous chain or (T-1, K, K) for a time-varying one;
  ``log_trans[t, i, j] = log p(z_{t+2} = j | z_{t+1} = i)`` in 1-based time, i.e. entry t
  (0-based) moves the chain from step t to step t+1. Rows need not be normalised: the
  functions then compute the corresponding unnormalised sums, which is what a model with
  extra factors wants.
- ``log_obs`` (T, K): log p(y_t | z_t = k).

Everything is differentiable in all three inputs (the forward pass is how an HMM's states
are summed out of a NUTS potential). Costs are O(T·K²) time and O(T·K) memory.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


class ForwardResult(NamedTuple):
    log_evidence: Array  # scalar log p(y_1:T)
    log_alpha: Array  # (T, K): log p(y_1:t, z_t = k)


class SmoothingResult(NamedTuple):
    log_evidence: Array  # scalar log p(y_1:T)
    marginals: Array  # (T, K): p(z_t = k | y_1:T)
    log_beta: Array  # (T, K): log p(y_t+1:T | z_t = k)


class ViterbiResult(NamedTuple):
    path: Array  # (T,) int: a most probable state path
    log_joint: Array  # scalar log p(path, y_1:T)


def _time_varying(log_trans: Array, num_steps: int) -> Array:
    log_trans = jnp.asarray(log_trans)
    if log_trans.ndim == 2:
        return jnp.broadcast_to(log_trans, (num_steps - 1,) + log_trans.shape)
    if log_trans.shape[0] != num_steps - 1:
        raise ValueError(f"log_trans has {log_trans.shape[0]} transitions; {num_steps} steps need {num_steps - 1}")
    return log_trans


def _check(log_init, log_obs):
    log_init, log_obs = jnp.asarray(log_init), jnp.asarray(log_obs)
    if log_obs.ndim != 2 or log_init.shape != log_obs.shape[1:]:
        raise ValueError(f"need log_init (K,) and log_obs (T, K); got {log_init.shape} and {log_obs.shape}")
    return log_init, log_obs


@jax.jit
def forward(log_init: Array, log_trans: Array, log_obs: Array) -> ForwardResult:
    """Forward algorithm: log evidence and the unnormalised filtering log-probabilities."""
    log_init, log_obs = _check(log_init, log_obs)
    log_trans = _time_varying(log_trans, log_obs.shape[0])
    first = log_init + log_obs[0]

    def step(log_alpha_prev, inputs):
        log_trans_t, log_obs_t = inputs
        # logsumexp over the previous state i of alpha(i) + trans(i, j)
        log_alpha = jax.nn.logsumexp(log_alpha_prev[:, None] + log_trans_t, axis=0) + log_obs_t
        return log_alpha, log_alpha

    last, rest = lax.scan(step, first, (log_trans, log_obs[1:]))
    log_alpha = jnp.concatenate([first[None], rest], axis=0)
    return ForwardResult(jax.nn.logsumexp(last), log_alpha)


def log_evidence(log_init: Array, log_trans: Array, log_obs: Array) -> Array:
    """log p(y_1:T) with the states summed out; the quantity to add to a NUTS potential."""
    return forward(log_init, log_trans, log_obs).log_evidence


@jax.jit
def backward_smoothing(log_init: Array, log_trans: Array, log_obs: Array) -> SmoothingResult:
    """Forward–backward: posterior marginals p(z_t = k | y_1:T) for every t."""
    log_init, log_obs = _check(log_init, log_obs)
    log_trans = _time_varying(log_trans, log_obs.shape[0])
    evidence, log_alpha = forward(log_init, log_trans, log_obs)

    def step(log_beta_next, inputs):
        log_trans_t, log_obs_next = inputs
        log_beta = jax.nn.logsumexp(log_trans_t + (log_obs_next + log_beta_next)[None, :], axis=1)
        return log_beta, log_beta

    last = jnp.zeros_like(log_init)
    _, earlier = lax.scan(step, last, (log_trans, log_obs[1:]), reverse=True)
    log_beta = jnp.concatenate([earlier, last[None]], axis=0)
    marginals = jnp.exp(log_alpha + log_beta - evidence)
    return SmoothingResult(evidence, marginals, log_beta)


@partial(jax.jit, static_argnames="num_samples")
def ffbs_sample(key: Array, log_init: Array, log_trans: Array, log_obs: Array, num_samples: int | None = None) -> Array:
    """Forward filtering, backward sampling: exact draw(s) of z_1:T from p(z | y).

    Returns int paths of shape (T,), or (num_samples, T) when ``num_samples`` is given.
    """
    if num_samples is not None:
        keys = jax.random.split(key, num_samples)
        return jax.vmap(lambda k: ffbs_sample(k, log_init, log_trans, log_obs))(keys)
    log_init, log_obs = _check(log_init, log_obs)
    log_trans = _time_varying(log_trans, log_obs.shape[0])
    _, log_alpha = forward(log_init, log_trans, log_obs)
    num_steps = log_obs.shape[0]
    keys = jax.random.split(key, num_steps)
    last_state = jax.random.categorical(keys[-1], log_alpha[-1])

    def step(state_next, inputs):
        key_t, log_alpha_t, log_trans_t = inputs
        # p(z_t = i | z_t+1, y_1:t) ∝ alpha_t(i) trans_t(i, z_t+1)
        state = jax.random.categorical(key_t, log_alpha_t + log_trans_t[:, state_next])
        return state, state

    _, earlier = lax.scan(step, last_state, (keys[:-1], log_alpha[:-1], log_trans), reverse=True)
    return jnp.concatenate([earlier, last_state[None]]).astype(jnp.int32)


@jax.jit
def viterbi(log_init: Array, log_trans: Array, log_obs: Array) -> ViterbiResult:
    """Most probable state path (max-product forward pass, then backtracking)."""
    log_init, log_obs = _check(log_init, log_obs)
    log_trans = _time_varying(log_trans, log_obs.shape[0])
    first = log_init + log_obs[0]

    def step(best_prev, inputs):
        log_trans_t, log_obs_t = inputs
        scores = best_prev[:, None] + log_trans_t
        return jnp.max(scores, axis=0) + log_obs_t, jnp.argmax(scores, axis=0)

    last, back_pointers = lax.scan(step, first, (log_trans, log_obs[1:]))
    last_state = jnp.argmax(last)

    def backtrack(state_next, pointers_t):
        state = pointers_t[state_next]
        return state, state

    _, earlier = lax.scan(backtrack, last_state, back_pointers, reverse=True)
    path = jnp.concatenate([earlier, last_state[None]]).astype(jnp.int32)
    return ViterbiResult(path, jnp.max(last))
