"""PaRIS: online smoothing of additive functionals (Olsson & Westerborn 2017), and its
conditional version inside particle Gibbs (Cardoso, Janati, Le Corff, Moulines & Olsson 2023).

Target: E[ S | y ] with S = h_0(x_0) + sum_{t>=1} h_t(x_{t-1}, x_t). Each particle i at step t
carries a statistic τ_t^i ≈ E[S_t | x_t^i, y_{0:t}], updated by `num_backward` (Ñ) draws J
from the backward kernel on the particle set, B_t(i, j) ∝ W_{t-1}^j p(x_t^i | x_{t-1}^j):

    τ_t^i = (1/Ñ) Σ_k [ τ_{t-1}^{J_k} + h_t(x_{t-1}^{J_k}, x_t^i) ],     estimate Σ_i W_T^i τ_T^i.

Two ways to draw J (`backward=`):
- "exact": from an N×N matrix of log weights per step, O(N²) per step — for small N.
- "mcmc": O(N Ñ) per step (Dau & Chopin 2022, "On backward smoothing algorithms"). With the
  bootstrap proposal and multinomial resampling at every step, particle i's ancestor A^i is
  itself an exact draw from B_t(i, ·) given x_t^i (the pair (A^i, x_t^i) has density
  W_{t-1}^a p(x_t | x_{t-1}^a)); so is the reference's ancestor under ancestor sampling. The
  first draw is the ancestor, each further one an independent Metropolis–Hastings move from
  the previous (proposal j' ~ W_{t-1}, acceptance p(x_t^i | x_{t-1}^{j'}) / p(x_t^i | x_{t-1}^j)),
  which leaves B_t(i, ·) invariant: every draw is exact marginally, so the τ recursion keeps
  its expectation. Needs the bootstrap proposal.
The forward pass always resamples multinomially.

Conditional PaRIS keeps a reference trajectory in slot N-1 (conditional SMC); the backward
draws may pick it like any particle. A new reference is then drawn by choosing x_T by W_T and
going back through one uniformly chosen backward index per step: since each backward index is
an exact draw from B_t, this is backward simulation in conditional SMC, a Markov kernel that
leaves p(x_{0:T-1} | y) invariant. Iterating it (`paris_particle_gibbs`) gives the PPG
estimator: the average of the conditional PaRIS estimates over iterations (after burn-in),
whose bias vanishes with the number of iterations. Parameter learning (the stochastic
approximation on the score in that paper) is not implemented here.
"""
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from . import particle_filter as _pf
from . import particle_gibbs as _pg
from . import resampling as _resampling
from .particle_filter import StateSpaceModel

__all__ = ["ParisResult", "run", "paris_particle_gibbs"]


class ParisResult(NamedTuple):
    estimate: Any  # Σ_i W_T^i τ_T^i (same structure as h's output)
    log_evidence: Any  # log Ẑ (unbiased only without a reference)
    statistics: Any  # τ_T, leaves (N, ...)
    log_weights: Any  # (N,) final normalised weights
    trajectory: Any  # a trajectory drawn through the backward indices, leaves (T, ...)


def _tree_mean_over_draws(tree):
    return jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), tree)


@partial(
    jax.jit,
    static_argnames=("model", "num_particles", "additive_fn", "initial_fn", "num_backward",
                     "backward"),
)
def run(
    key,
    model: StateSpaceModel,
    params,
    num_particles: int,
    additive_fn: Callable,
    initial_fn: Optional[Callable] = None,
    num_backward: int = 2,
    reference=None,
    backward: str = "exact",
) -> ParisResult:
    """PaRIS forward pass; with `reference` (leaves (T, ...)) the conditional version.

    `additive_fn(prev_state, state, t, params)` is h_t for t >= 1 and `initial_fn(state, params)`
    is h_0 (default: h_0 = 0 with the shape of h_1). Both return a pytree of arrays.
    """
    if backward not in ("exact", "mcmc"):
        raise ValueError(f'backward must be "exact" or "mcmc", not {backward!r}')
    if backward == "mcmc" and model.proposal is not None:
        raise ValueError('backward="mcmc" needs the bootstrap proposal (the ancestors are then '
                         "draws from the backward kernel)")
    n = num_particles
    k0, k_scan, k_out = jax.random.split(key, 3)
    x0, lw0 = _pg.conditional_init(k0, model, params, n, reference)
    lw0, lz0 = _resampling.normalize_log_weights(lw0)
    if initial_fn is None:
        h_shape = jax.eval_shape(
            lambda a, b: additive_fn(a, b, jnp.int32(1), params),
            _pg._at(x0, 0), _pg._at(x0, 0),
        )
        tau0 = jax.tree_util.tree_map(lambda s: jnp.zeros((n,) + s.shape, s.dtype), h_shape)
    else:
        tau0 = jax.vmap(initial_fn, (0, None))(x0, params)

    def step(carry, inp):
        x_prev, lw_prev, tau_prev, lz = carry
        t, k = inp
        k_fwd, k_bwd = jax.random.split(k)
        x, lw, anc = _pg.conditional_step(k_fwd, model, params, x_prev, lw_prev, t, reference, True)
        lw, inc = _resampling.normalize_log_weights(lw)
        if backward == "mcmc":
            J = _mcmc_backward(k_bwd, model, params, x, x_prev, lw_prev, anc, t, num_backward)
        else:
            # log B_t(i, j) up to a per-row constant: rows index x_t^i, columns x_{t-1}^j.
            trans = jax.vmap(
                lambda xi: jax.vmap(model.transition_logpdf, (None, 0, None, None))(xi, x_prev, t, params)
            )(x)
            logits = lw_prev[None, :] + _pf._clean(trans)
            J = jax.random.categorical(k_bwd, logits, axis=-1, shape=(num_backward, n))  # (Ñ, N)
        prev_J = _pg._take(x_prev, J)
        h = jax.vmap(jax.vmap(additive_fn, (0, 0, None, None)), (0, None, None, None))(prev_J, x, t, params)
        tau = jax.tree_util.tree_map(lambda tp, hh: jnp.mean(tp[J] + hh, axis=0), tau_prev, h)
        return (x, lw, tau, lz + inc), (J, x)

    ts = jnp.arange(1, model.num_steps, dtype=jnp.int32)
    keys = jax.random.split(k_scan, model.num_steps - 1)
    (x_T, lw_T, tau_T, lz), (Js, xs) = lax.scan(step, (x0, lw0, tau0, lz0), (ts, keys))
    w = jnp.exp(lw_T)
    estimate = jax.tree_util.tree_map(lambda a: jnp.tensordot(w, a, axes=(0, 0)), tau_T)

    # New trajectory: x_T ~ W_T, then one uniformly chosen backward index per step.
    k_last, k_pick = jax.random.split(k_out)
    b_last = jax.random.categorical(k_last, lw_T).astype(jnp.int32)
    picks = jax.random.randint(k_pick, (model.num_steps - 1,), 0, num_backward)

    def back(b, inp):
        J_t, u = inp
        return J_t[u, b].astype(jnp.int32), b

    b0, path = lax.scan(back, b_last, (Js, picks), reverse=True)
    particles = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], 0), x0, xs)
    path = jnp.concatenate([b0[None], path])
    trajectory = jax.tree_util.tree_map(lambda h: h[jnp.arange(h.shape[0]), path], particles)
    return ParisResult(estimate, lz - model.num_steps * jnp.log(n), tau_T, lw_T, trajectory)


def _mcmc_backward(key, model, params, x, x_prev, lw_prev, anc, t, num_backward):
    """(Ñ, N) backward indices: the ancestors, then independent-proposal MH moves on B_t."""
    n = lw_prev.shape[0]
    w_prev = jnp.exp(lw_prev)

    def logp(j):
        return _pf._clean(jax.vmap(model.transition_logpdf, (0, 0, None, None))(
            x, _pg._take(x_prev, j), t, params))

    J, lp = anc.astype(jnp.int32), logp(anc)
    draws = [J]
    for k in jax.random.split(key, num_backward - 1) if num_backward > 1 else ():
        k_prop, k_acc = jax.random.split(k)
        prop = jnp.asarray(_resampling.multinomial(k_prop, w_prev, n), jnp.int32)
        lp_prop = logp(prop)
        ok = jnp.log(jax.random.uniform(k_acc, (n,), dtype=lp.dtype)) < lp_prop - lp
        J, lp = jnp.where(ok, prop, J), jnp.where(ok, lp_prop, lp)
        draws.append(J)
    return jnp.stack(draws)


@partial(
    jax.jit,
    static_argnames=(
        "model", "num_particles", "num_iterations", "additive_fn", "initial_fn", "num_backward",
        "backward",
    ),
)
def paris_particle_gibbs(
    key,
    model: StateSpaceModel,
    params,
    num_particles: int,
    num_iterations: int,
    additive_fn: Callable,
    initial_fn: Optional[Callable] = None,
    num_backward: int = 2,
    init_reference=None,
    backward: str = "exact",
):
    """PaRIS particle Gibbs: iterate conditional PaRIS, each sweep's trajectory the next
    reference. Returns (estimates per iteration, trajectories per iteration); average the
    estimates after burn-in for the PPG estimator of E[S | y].
    """
    k_init, k_iter = jax.random.split(key)
    if init_reference is None:
        init_reference = run(
            k_init, model, params, num_particles, additive_fn, initial_fn, num_backward,
            backward=backward).trajectory

    def step(ref, k):
        res = run(k, model, params, num_particles, additive_fn, initial_fn, num_backward, ref,
                  backward)
        return res.trajectory, (res.estimate, res.trajectory)

    _, (estimates, trajs) = lax.scan(step, init_reference, jax.random.split(k_iter, num_iterations))
    return estimates, trajs
