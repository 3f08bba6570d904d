"""Particle Gibbs: conditional SMC with ancestor sampling or backward sampling, and PMMH.

Conditional SMC (Andrieu, Doucet & Holenstein 2010) keeps a reference trajectory as the last
particle (slot N-1) at every step and resamples the other N-1 particles multinomially; the
Markov kernel reference -> new trajectory leaves the smoothing distribution p(x_{0:T-1} | y)
invariant. Ancestor sampling (Lindsten, Jordan & Schön 2014) redraws the reference's ancestor
with probability ∝ W_{t-1}^j p(x*_t | x_{t-1}^j); backward simulation (Whiteley 2010) instead
draws the output trajectory backwards with the same kernel. Both fight path degeneracy.

Trajectories are pytrees with leaves (T, ...), the per-step state of `StateSpaceModel`.
With a guided proposal, conditional SMC needs `Proposal.init_logpdf` and `step_logpdf` to
weight the reference.
"""
from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from . import mh as _mh
from . import particle_filter as _pf
from . import resampling as _resampling
from .particle_filter import StateSpaceModel

__all__ = [
    "CSMCResult",
    "csmc",
    "particle_gibbs",
    "parameter_chain",
    "PMMHResult",
    "pmmh",
    "pmmh_chain",
    "backward_sample",
]


class CSMCResult(NamedTuple):
    trajectory: Any  # the new reference, leaves (T, ...)
    log_evidence: Any  # log Ẑ of the conditional filter (not unbiased; diagnostic only)
    particles: Any  # leaves (T, N, ...)
    ancestors: Any  # (T, N) int32; ancestors[0] = arange
    log_weights: Any  # (T, N) normalised


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda leaf: leaf[idx], tree)


def _set_last(tree, value):
    return jax.tree_util.tree_map(lambda leaf, v: leaf.at[-1].set(v), tree, value)


def _at(tree, t):
    return jax.tree_util.tree_map(lambda leaf: leaf[t], tree)


def log_weight_init(model: StateSpaceModel, params, x):
    """Step-0 log weight of given particles (leaves (N, ...))."""
    g = jax.vmap(model.observation_logpdf, (0, None, None))(x, 0, params)
    if model.proposal is None:
        return _pf._clean(g)
    lp = jax.vmap(model.init_logpdf, (0, None))(x, params)
    lq = jax.vmap(model.proposal.init_logpdf, (0, None))(x, params)
    return _pf._clean(lp + g - lq)


def log_weight_step(model: StateSpaceModel, params, x, prev, t):
    """Step-t log weight of given particles x with parents prev (leaves (N, ...))."""
    g = jax.vmap(model.observation_logpdf, (0, None, None))(x, t, params)
    if model.proposal is None:
        return _pf._clean(g)
    lp = jax.vmap(model.transition_logpdf, (0, 0, None, None))(x, prev, t, params)
    lq = jax.vmap(model.proposal.step_logpdf, (0, 0, None, None))(x, prev, t, params)
    return _pf._clean(lp + g - lq)


def conditional_init(key, model: StateSpaceModel, params, num_particles, reference):
    """Step 0: fresh particles, with slot N-1 set to reference[0] when a reference is given."""
    x, _ = _pf.init_particles(key, model, params, num_particles)
    if reference is not None:
        x = _set_last(x, _at(reference, 0))
    return x, log_weight_init(model, params, x)


def conditional_step(key, model, params, x_prev, log_w_prev, t, reference, ancestor_sampling):
    """Resample (multinomially) and propagate to step t, keeping reference[t] in slot N-1.

    Returns (x, unnormalised log weights, ancestors). `log_w_prev` is normalised. Without a
    reference this is a plain always-resampling bootstrap/guided step.
    """
    n = log_w_prev.shape[0]
    k_res, k_prop, k_as = jax.random.split(key, 3)
    anc = _resampling.multinomial(k_res, jnp.exp(log_w_prev), n)
    if reference is not None:
        ref_t = _at(reference, t)
        if ancestor_sampling:
            lt = jax.vmap(model.transition_logpdf, (None, 0, None, None))(ref_t, x_prev, t, params)
            a_ref = jax.random.categorical(k_as, log_w_prev + _pf._clean(lt)).astype(jnp.int32)
        else:
            a_ref = jnp.int32(n - 1)
        anc = anc.at[-1].set(a_ref)
    prev = _take(x_prev, anc)
    x, _ = _pf.propagate(k_prop, model, params, prev, t)
    if reference is not None:
        x = _set_last(x, ref_t)
    return x, log_weight_step(model, params, x, prev, t), anc


def _forward(key, model, params, num_particles, reference, ancestor_sampling):
    k0, k_scan = jax.random.split(key)
    x0, lw0 = conditional_init(k0, model, params, num_particles, reference)
    lw0, lz0 = _resampling.normalize_log_weights(lw0)

    def step(carry, inp):
        x_prev, lw_prev, lz = carry
        t, k = inp
        x, lw, anc = conditional_step(k, model, params, x_prev, lw_prev, t, reference, ancestor_sampling)
        lw, inc = _resampling.normalize_log_weights(lw)
        return (x, lw, lz + inc), (x, lw, anc)

    ts = jnp.arange(1, model.num_steps, dtype=jnp.int32)
    keys = jax.random.split(k_scan, model.num_steps - 1)
    (_, _, lz), (xs, lws, ancs) = lax.scan(step, (x0, lw0, lz0), (ts, keys))
    cat = lambda a, b: jnp.concatenate([a[None], b], 0)  # noqa: E731
    particles = jax.tree_util.tree_map(cat, x0, xs)
    log_w = cat(lw0, lws)
    ancestors = cat(jnp.arange(num_particles, dtype=jnp.int32), ancs)
    return particles, log_w, ancestors, lz - model.num_steps * jnp.log(num_particles)


def backward_sample(key, model: StateSpaceModel, params, particles, log_weights):
    """One trajectory by backward simulation from stored particles (T, N, ...) and weights."""
    T = log_weights.shape[0]
    k_last, k_scan = jax.random.split(key)
    b_last = jax.random.categorical(k_last, log_weights[-1]).astype(jnp.int32)

    def back(x_next, inp):
        t, k = inp
        x_t = _at(particles, t)
        lt = jax.vmap(model.transition_logpdf, (None, 0, None, None))(x_next, x_t, t + 1, params)
        b = jax.random.categorical(k, log_weights[t] + _pf._clean(lt))
        x_b = _at(x_t, b)
        return x_b, x_b

    x_last = _at(_at(particles, T - 1), b_last)
    ts = jnp.arange(T - 1, dtype=jnp.int32)
    _, xs = lax.scan(back, x_last, (ts, jax.random.split(k_scan, T - 1)), reverse=True)
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]], 0), xs, x_last)


def _trace(key, particles, log_weights, ancestors):
    k = jax.random.categorical(key, log_weights[-1]).astype(jnp.int32)

    def back(b, anc_t):
        return anc_t[b], b

    _, path = lax.scan(back, k, ancestors, reverse=True)
    return jax.tree_util.tree_map(lambda h: h[jnp.arange(h.shape[0]), path], particles)


@partial(
    jax.jit,
    static_argnames=("model", "num_particles", "ancestor_sampling", "backward_sampling"),
)
def csmc(
    key,
    model: StateSpaceModel,
    params,
    reference,
    num_particles: int,
    ancestor_sampling: bool = True,
    backward_sampling: bool = False,
) -> CSMCResult:
    """One conditional SMC sweep given `reference` (leaves (T, ...)); returns a new trajectory.

    `reference=None` runs an unconditional always-resampling filter (useful to initialise).
    """
    k_fwd, k_out = jax.random.split(key)
    particles, log_w, ancestors, lz = _forward(
        k_fwd, model, params, num_particles, reference, ancestor_sampling
    )
    if backward_sampling:
        traj = backward_sample(k_out, model, params, particles, log_w)
    else:
        traj = _trace(k_out, particles, log_w, ancestors)
    return CSMCResult(traj, lz, particles, ancestors, log_w)


@partial(
    jax.jit,
    static_argnames=(
        "model", "num_particles", "num_iterations", "ancestor_sampling", "backward_sampling",
    ),
)
def particle_gibbs(
    key,
    model: StateSpaceModel,
    params,
    num_particles: int,
    num_iterations: int,
    init_reference=None,
    ancestor_sampling: bool = True,
    backward_sampling: bool = False,
):
    """Iterate conditional SMC; returns trajectories with leaves (num_iterations, T, ...).

    Without `init_reference` the chain starts from a trajectory of an unconditional filter.
    """
    k_init, k_iter = jax.random.split(key)
    if init_reference is None:
        init_reference = csmc(k_init, model, params, None, num_particles, False, backward_sampling).trajectory

    def step(ref, k):
        new = csmc(k, model, params, ref, num_particles, ancestor_sampling, backward_sampling).trajectory
        return new, new

    _, trajs = lax.scan(step, init_reference, jax.random.split(k_iter, num_iterations))
    return trajs


# --------------------------------------------------------------------------- PMMH
class PMMHResult(NamedTuple):
    samples: Any  # (num_iterations, d) parameter draws
    log_evidence: Any  # (num_iterations,) log Ẑ at the current draw
    acceptance_rate: Any  # scalar


@partial(
    jax.jit,
    static_argnames=("model", "log_prior", "num_iterations", "num_particles", "resampling", "ess_threshold"),
)
def pmmh(
    key,
    model: StateSpaceModel,
    log_prior: Callable,
    init_params,
    num_iterations: int,
    num_particles: int,
    step_size=0.1,
    resampling="systematic",
    ess_threshold: float = 0.5,
) -> PMMHResult:
    """Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010).

    `init_params` is a flat vector (d,) passed as `params` to the model's functions;
    `log_prior(params)` its log prior density (-inf outside the support: the proposal is then
    rejected). Proposal: params + step_size * N(0, I) (ppl.algorithms.mh). The estimated
    log Ẑ of the current point is kept (not recomputed), which makes the chain exact.
    """
    theta0 = jnp.asarray(init_params)
    d = theta0.shape[0]

    def log_z(k, theta):
        return _pf.run(k, model, theta, num_particles, resampling, ess_threshold).log_evidence

    def target(theta, k):
        lp = _pf._clean(log_prior(theta))
        lz = jnp.where(jnp.isfinite(lp), log_z(k, theta), -jnp.inf)
        return lp + lz, lz

    k0, k_iter = jax.random.split(key)
    lz0 = log_z(k0, theta0)
    log_eps = jnp.log(jnp.asarray(step_size, theta0.dtype))

    def step(carry, k):
        theta, lp, lz = carry
        theta, lp, lz, acc = _mh.metropolis(k, theta, lp, lz, target, log_eps, jnp.eye(d), 1)
        return (theta, lp, lz), (theta, lz, acc)

    init = (theta0, _pf._clean(log_prior(theta0)) + lz0, lz0)
    _, (thetas, lzs, accs) = lax.scan(step, init, jax.random.split(k_iter, num_iterations))
    return PMMHResult(thetas, lzs, jnp.mean(accs))


# --------------------------------------------------------------------------- with parameters
def parameter_chain(key, u_theta, ref, sweep: Callable, log_joint: Callable, num_warmup: int,
                    num_draws: int, mh_steps: int, target_accept: float, record: Callable,
                    noise: Callable = None, from_noise: Callable = None):
    """Particle Gibbs for a state trajectory and static parameters (unconstrained, flat).

    Per sweep: `sweep(key, u_theta, ref)` draws a new trajectory by conditional SMC; then
    `mh_steps` random-walk moves on the parameters given the trajectory (centred); with
    `noise(traj, u_theta)` / `from_noise(eps, u_theta) -> (traj, Σ log scale)` also moves given
    the standardised noise, the trajectory rebuilt from it (non-centred; target
    p(θ, x(θ, ε), y) · Π scale_t). Alternating the two is the ancillarity–sufficiency
    interweaving of Yu & Meng (2011); each move leaves the posterior invariant on its own.
    During warm-up the step sizes adapt towards `target_accept` and the proposal's shape to the
    parameters' covariance (over its last three quarters; frozen after). Returns
    (`record(u_theta, ref)` per draw after warm-up, centred acceptance per draw).
    """
    d = u_theta.shape[0]
    total = num_warmup + num_draws
    collect_from = num_warmup // 4
    non_centred = noise is not None

    def step(carry, inp):
        u_theta, ref, log_eps, stats = carry
        i, k = inp
        shape = _mh.shape_of(stats)
        kc, km, kn = jax.random.split(k, 3)
        ref = sweep(kc, u_theta, ref)
        u_theta, _, ref, acc_c = _mh.metropolis(
            km, u_theta, log_joint(u_theta, ref), ref,
            lambda ut, _k: (log_joint(ut, ref), ref), log_eps[0], shape, mh_steps)
        accs = [acc_c]
        if non_centred:
            eps = noise(ref, u_theta)

            def nc(ut, _k):
                traj, log_scale = from_noise(eps, ut)
                return log_joint(ut, traj) + log_scale, traj

            u_theta, _, ref, acc_n = _mh.metropolis(kn, u_theta, nc(u_theta, kn)[0], ref, nc,
                                                    log_eps[1], shape, mh_steps)
            accs.append(acc_n)
        acc = jnp.stack(accs)
        log_eps = log_eps.at[:acc.shape[0]].set(
            _mh.adapt_step_size(log_eps[:acc.shape[0]], acc, i, num_warmup, target_accept))
        stats = _mh.update_shape(stats, u_theta, (i >= collect_from) & (i < num_warmup))
        return (u_theta, ref, log_eps, stats), (record(u_theta, ref), acc[0])

    init = (u_theta, ref, jnp.full((2,), jnp.log(0.1 / jnp.sqrt(max(d, 1)))), _mh.shape_stats(d))
    _, (out, acc) = lax.scan(step, init, (jnp.arange(total), jax.random.split(key, total)))
    return jax.tree_util.tree_map(lambda a: a[num_warmup:], out), acc[num_warmup:]


def pmmh_chain(key, u_theta, estimate: Callable, num_warmup: int, num_draws: int,
               target_accept: float, record: Callable):
    """PMMH on flat unconstrained parameters: `estimate(key, u_theta) -> (log p̂(y | θ) + log
    prior, trajectory)`; one random-walk move per iteration (ppl.algorithms.mh), the step size
    adapting towards `target_accept` during warm-up. Returns (`record(u_theta, traj)` per draw
    after warm-up, acceptance probability per draw)."""
    d = u_theta.shape[0]
    total = num_warmup + num_draws
    k0, k1 = jax.random.split(key)
    lp, traj = estimate(k0, u_theta)

    def step(carry, inp):
        u_theta, lp, traj, log_eps = carry
        i, k = inp
        u_theta, lp, traj, a = _mh.metropolis(k, u_theta, lp, traj, lambda ut, kk: estimate(kk, ut),
                                              log_eps, jnp.eye(d), 1)
        log_eps = _mh.adapt_step_size(log_eps, a, i, num_warmup, target_accept)
        return (u_theta, lp, traj, log_eps), (record(u_theta, traj), a)

    init = (u_theta, lp, traj, jnp.log(0.5 / jnp.sqrt(max(d, 1))))
    _, (out, acc) = lax.scan(step, init, (jnp.arange(total), jax.random.split(k1, total)))
    return jax.tree_util.tree_map(lambda a: a[num_warmup:], out), acc[num_warmup:]
