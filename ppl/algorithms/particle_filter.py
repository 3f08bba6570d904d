"""Particle filter (sequential importance resampling) for state-space models.

The model is given per particle as pure JAX functions (`StateSpaceModel`); the filter vmaps
them over particles and runs one `lax.scan` over time. Conventions:

* steps are 0-based, t = 0 .. num_steps-1; x_0 ~ init, x_t ~ transition(x_{t-1}) for t >= 1,
  and every step carries an observation factor `observation_logpdf(x_t, t)` (0 where none).
* with a proposal q, the incremental weight is p(x_t | x_{t-1}) g(y_t | x_t) / q(x_t); without
  one (bootstrap) it is g(y_t | x_t).
* resampling is adaptive: before propagating to step t >= 1, the step t-1 particles are
  resampled when ESS < ess_threshold * N (ess_threshold >= 1 means always).
* NaN log weights count as -inf. If all weights are -inf at some step the filter keeps going
  with uniform weights (so the arrays stay finite) but `log_evidence` is -inf and
  `failed_step` names the first such step; raising is left to the (non-jitted) caller.

The evidence estimate Ẑ is unbiased for p(y_{0:T-1}) (not log Ẑ for log p).
"""
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from . import resampling as _resampling

__all__ = [
    "Proposal",
    "StateSpaceModel",
    "FilterResult",
    "run",
    "run_many",
    "trace_genealogy",
    "sample_trajectory",
    "locally_optimal_gaussian_proposal",
]


class Proposal(NamedTuple):
    """A proposal q for a particle filter; `step` is called for t >= 1.

    `init_logpdf` / `step_logpdf` evaluate q at a given state; only conditional SMC (particle
    Gibbs) needs them, to weight the reference trajectory.
    """

    init: Callable  # (key, params) -> (state, log_q)
    step: Callable  # (key, prev_state, t, params) -> (state, log_q)
    init_logpdf: Optional[Callable] = None  # (state, params) -> log_q
    step_logpdf: Optional[Callable] = None  # (state, prev_state, t, params) -> log_q


class StateSpaceModel(NamedTuple):
    num_steps: int
    init_sample: Callable  # (key, params) -> state
    init_logpdf: Callable  # (state, params) -> scalar
    transition_sample: Callable  # (key, prev_state, t, params) -> state  (t >= 1)
    transition_logpdf: Callable  # (state, prev_state, t, params) -> scalar
    observation_logpdf: Callable  # (state, t, params) -> scalar
    proposal: Optional[Proposal] = None  # None: bootstrap
    # Optional batched samplers with the same law as vmapping the per-particle ones over
    # independent keys, but drawing for all particles at once (e.g. one batch of standard
    # normals for a location-scale state): much cheaper than N keys and N draws per step.
    init_sample_batch: Optional[Callable] = None  # (key, params, num_particles) -> states (N, ...)
    transition_sample_batch: Optional[Callable] = None  # (key, prev (N, ...), t, params) -> (N, ...)
    # Optional split of `transition_sample_batch` into its noise and a deterministic map, with
    # the same law: transition_from_noise(transition_noise(key, 1, N)[0], prev, t, params).
    # The filter then draws the noise of many steps in one call (see NOISE_BLOCK).
    transition_noise: Optional[Callable] = None  # (key, num_steps, N) -> leaves (num_steps, N, ...)
    transition_from_noise: Optional[Callable] = None  # (noise (N, ...), prev (N, ...), t, params) -> (N, ...)
    noise_size: int = 0  # noise scalars per particle and step


class FilterResult(NamedTuple):
    log_evidence: Any  # scalar log Ẑ (-inf if the filter failed)
    log_evidence_increments: Any  # (T,) log Ẑ_t / Ẑ_{t-1}
    ess: Any  # (T,) ESS of the step-t weights (before any resampling at t+1)
    resampled: Any  # (T,) bool: step-t ancestors come from resampling step t-1; [0] False
    particles: Any  # final particles, leaves (N, ...)
    log_weights: Any  # (N,) final normalised log weights
    filtering_means: Any  # leaves (T, ...): sum_i W_t^i x_t^i
    failed_step: Any  # int32: first step with all weights -inf, or -1
    ancestors: Any = None  # (T, N) int32, record="genealogy" only; ancestors[0] = arange(N)
    particle_history: Any = None  # leaves (T, N, ...), record="genealogy" only
    log_weight_history: Any = None  # (T, N), record="genealogy" only


# --------------------------------------------------------------------------- weighting
def _clean(log_w):
    return jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)


def init_particles(key, model: StateSpaceModel, params, num_particles: int):
    """Draw step-0 particles and their (unnormalised) log weights."""
    if model.proposal is None:
        if model.init_sample_batch is not None:
            x = model.init_sample_batch(key, params, num_particles)
        else:
            keys = jax.random.split(key, num_particles)
            x = jax.vmap(model.init_sample, (0, None))(keys, params)
        log_w = jax.vmap(model.observation_logpdf, (0, None, None))(x, 0, params)
    else:
        keys = jax.random.split(key, num_particles)
        x, log_q = jax.vmap(model.proposal.init, (0, None))(keys, params)
        log_w = (
            jax.vmap(model.init_logpdf, (0, None))(x, params)
            + jax.vmap(model.observation_logpdf, (0, None, None))(x, 0, params)
            - log_q
        )
    return x, _clean(log_w)


def propagate(key, model: StateSpaceModel, params, prev, t, noise=None):
    """Move each particle of `prev` (leaves (N, ...)) to step t; returns (x, incremental log w).
    With `noise` (bootstrap, `model.transition_noise`'s draws for this step) no key is used."""
    n = jax.tree_util.tree_leaves(prev)[0].shape[0]
    if model.proposal is None:
        if noise is not None:
            x = model.transition_from_noise(noise, prev, t, params)
        elif model.transition_sample_batch is not None:
            x = model.transition_sample_batch(key, prev, t, params)
        else:
            keys = jax.random.split(key, n)
            x = jax.vmap(model.transition_sample, (0, 0, None, None))(keys, prev, t, params)
        log_w = jax.vmap(model.observation_logpdf, (0, None, None))(x, t, params)
    else:
        keys = jax.random.split(key, n)
        x, log_q = jax.vmap(model.proposal.step, (0, 0, None, None))(keys, prev, t, params)
        log_w = (
            jax.vmap(model.transition_logpdf, (0, 0, None, None))(x, prev, t, params)
            + jax.vmap(model.observation_logpdf, (0, None, None))(x, t, params)
            - log_q
        )
    return x, _clean(log_w)


def _weighted_mean(x, w):
    """sum_i w_i x_i per leaf, for normalised weights `w` (not log weights)."""

    def leaf_mean(leaf):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            leaf = leaf.astype(w.dtype)
        return jnp.tensordot(w, leaf, axes=(0, 0))

    return jax.tree_util.tree_map(leaf_mean, x)


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda leaf: leaf[idx], tree)


# --------------------------------------------------------------------------- filter
@partial(
    jax.jit,
    static_argnames=("model", "num_particles", "resampling", "ess_threshold", "record"),
)
def run(
    key,
    model: StateSpaceModel,
    params,
    num_particles: int,
    resampling="systematic",
    ess_threshold: float = 0.5,
    record: str = "summary",
) -> FilterResult:
    """Run a particle filter over `model.num_steps` steps with `num_particles` particles.

    `resampling` is a scheme name from `ppl.algorithms.resampling` or a function
    `(key, weights, num_samples) -> indices`. `record="genealogy"` also keeps the ancestor
    indices, all particles and their weights, for `trace_genealogy` / `sample_trajectory`.
    """
    if record not in ("summary", "genealogy"):
        raise ValueError(f"record must be 'summary' or 'genealogy', not {record!r}")
    resample_fn = _resampling.get(resampling)
    n = num_particles
    always = ess_threshold >= 1.0
    keep = record == "genealogy"

    key0, key_scan = jax.random.split(key)
    x0, log_w0 = init_particles(key0, model, params, n)
    log_w0_norm, w0, log_z0 = _resampling.normalize(log_w0)
    ess0 = _resampling.ess_from_weights(w0)
    # A log mean of weights: the incremental evidence of step 0.
    inc0 = log_z0 - jnp.log(n)
    failed0 = jnp.where(jnp.isfinite(log_z0), -1, 0).astype(jnp.int32)
    identity = jnp.arange(n, dtype=jnp.int32)

    def resample(k_res, x_prev, log_w_prev, w_prev):
        idx = jnp.asarray(resample_fn(k_res, w_prev, n), jnp.int32)
        # After resampling the weights are uniform.
        return _take(x_prev, idx), jnp.full_like(log_w_prev, -jnp.log(n)), idx

    def step(carry, inp):
        x_prev, log_w_prev, w_prev, ess_prev, failed = carry
        t, k_res, k_prop, noise = inp
        if always:
            do_res = jnp.array(True)
            x_anc, log_w_base, anc = resample(k_res, x_prev, log_w_prev, w_prev)
        else:
            do_res = ess_prev < ess_threshold * n
            # Steps that do not resample skip the resampling work entirely; without resampling
            # the ancestors are the identity and the weights carry over (aligned with x).
            x_anc, log_w_base, anc = lax.cond(
                do_res,
                lambda a: resample(k_res, *a),
                lambda a: (a[0], a[1], identity),
                (x_prev, log_w_prev, w_prev),
            )
        x, log_inc = propagate(k_prop, model, params, x_anc, t, noise)
        log_w_norm, w, log_inc_z = _resampling.normalize(log_w_base + log_inc)
        ess_t = _resampling.ess_from_weights(w)
        failed = jnp.where((failed < 0) & ~jnp.isfinite(log_inc_z), t, failed).astype(jnp.int32)
        out = {
            "inc": log_inc_z,
            "ess": ess_t,
            "resampled": do_res,
            "mean": _weighted_mean(x, w),
        }
        if keep:
            out.update(anc=anc, x=x, log_w=log_w_norm)
        return (x, log_w_norm, w, ess_t, failed), out

    ts = jnp.arange(1, model.num_steps, dtype=jnp.int32)
    keys = jax.random.split(key_scan, model.num_steps - 1)
    # Each step's (resampling, propagation) keys, split for all steps at once: the same keys
    # as splitting inside the step, without a small hash per step in the loop.
    step_keys = jax.vmap(jax.random.split)(keys)
    carry0 = (x0, log_w0_norm, w0, ess0, failed0)
    block = noise_block(model, n)
    if block:
        (x_T, log_w_T, _, _, failed), outs = scan_with_noise(
            step, carry0, (ts, step_keys[:, 0], step_keys[:, 1]), model, n, block)
    else:
        (x_T, log_w_T, _, _, failed), outs = lax.scan(
            step, carry0, (ts, step_keys[:, 0], step_keys[:, 1], None))

    def cat(first, rest):
        return jnp.concatenate([jnp.asarray(first)[None], rest], axis=0)

    increments = cat(inc0, outs["inc"])
    means = jax.tree_util.tree_map(cat, _weighted_mean(x0, w0), outs["mean"])
    log_evidence = jnp.where(failed >= 0, -jnp.inf, jnp.sum(increments))
    result = FilterResult(
        log_evidence=log_evidence,
        log_evidence_increments=increments,
        ess=cat(ess0, outs["ess"]),
        resampled=cat(jnp.array(False), outs["resampled"]),
        particles=x_T,
        log_weights=log_w_T,
        filtering_means=means,
        failed_step=failed,
    )
    if keep:
        result = result._replace(
            ancestors=cat(jnp.arange(n, dtype=jnp.int32), outs["anc"]),
            particle_history=jax.tree_util.tree_map(cat, x0, outs["x"]),
            log_weight_history=cat(log_w0_norm, outs["log_w"]),
        )
    return result


# Noise for this many scalars (1 MB of doubles: cache-resident) is drawn in one call. One call
# per step costs more for small N (SV, N = 10³: 28% of the filter's time) because a small
# draw does not fill the vector units or the cores; for large N a separate noise array costs
# memory traffic that drawing inside the fused step avoids, so below 4 steps per block the
# filter draws step by step.
NOISE_BLOCK = 1 << 17


def noise_block(model: StateSpaceModel, n: int) -> int:
    """Steps per noise block, or 0 to draw step by step."""
    if model.proposal is not None or model.transition_from_noise is None or model.noise_size < 1:
        return 0
    k = NOISE_BLOCK // (n * model.noise_size)
    return k if k >= 4 else 0


def scan_with_noise(step, carry, xs, model, n, block):
    """`lax.scan(step, carry, xs + (noise,))` with each step's transition noise drawn `block`
    steps at a time; xs[2] holds per-step keys the step does not otherwise use, and the first
    key of each block draws that block's noise."""
    ts, k_res, k_prop = xs
    steps = ts.shape[0]
    nb, rem = divmod(steps, block)

    def run_block(c, inp):
        ts_b, kr_b, kp_b = inp
        noise = model.transition_noise(kp_b[0], ts_b.shape[0], n)
        return lax.scan(step, c, (ts_b, kr_b, kp_b, noise))

    outs = []
    if nb:
        cut = nb * block
        shaped = jax.tree_util.tree_map(lambda a: a[:cut].reshape((nb, block) + a.shape[1:]),
                                        (ts, k_res, k_prop))
        carry, o = lax.scan(run_block, carry, shaped)
        outs.append(jax.tree_util.tree_map(lambda a: a.reshape((cut,) + a.shape[2:]), o))
    if rem:
        carry, o = run_block(carry, jax.tree_util.tree_map(lambda a: a[nb * block:], (ts, k_res, k_prop)))
        outs.append(o)
    if len(outs) == 1:
        return carry, outs[0]
    return carry, jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *outs)


def run_many(keys, model: StateSpaceModel, params, num_particles: int, **kwargs) -> FilterResult:
    """Independent filters, one per key (vmapped); e.g. for the spread of log Ẑ."""
    return jax.vmap(lambda k: run(k, model, params, num_particles, **kwargs))(keys)


# --------------------------------------------------------------------------- genealogy
def trace_genealogy(result: FilterResult, indices=None):
    """Trajectories of the final particles `indices` (default all), traced through ancestors.

    Returns a pytree with leaves (T, len(indices), ...): time-major like `particle_history`.
    Needs a result from `run(..., record="genealogy")`.
    """
    if result.ancestors is None:
        raise ValueError("trace_genealogy needs run(..., record='genealogy')")
    n = result.ancestors.shape[1]
    idx = jnp.arange(n, dtype=jnp.int32) if indices is None else jnp.asarray(indices, jnp.int32)

    def back(b, anc_t):
        # b indexes particles at step t; their parents at t-1 are anc_t[b].
        return anc_t[b], b

    _, paths = lax.scan(back, idx, result.ancestors, reverse=True)
    return jax.tree_util.tree_map(
        lambda h: jnp.take_along_axis(h, paths.reshape(paths.shape + (1,) * (h.ndim - 2)), axis=1),
        result.particle_history,
    )


def sample_trajectory(key, result: FilterResult):
    """One trajectory (leaves (T, ...)) drawn from the filter's smoothing approximation."""
    k = jax.random.categorical(key, result.log_weights)
    traj = trace_genealogy(result, jnp.reshape(k, (1,)))
    return jax.tree_util.tree_map(lambda leaf: leaf[:, 0], traj)


# --------------------------------------------------------------------------- proposals
def _gaussian_posterior(m, chol_s, a, b, chol_r, y):
    """Moments of x | y for x ~ N(m, S), y ~ N(a x + b, R), and log N(y; a m + b, a S a' + R).

    Scalar case: all arguments scalars (chol_s, chol_r are standard deviations). Vector case:
    m (d,), chol_s (d, d), a (k, d), b (k,), chol_r (k, k), y (k,): lower Cholesky factors.
    Returns (mean, lower Cholesky factor of the posterior covariance, log predictive).
    """
    if jnp.ndim(m) == 0:
        s2, r2 = chol_s**2, chol_r**2
        pred_var = a * a * s2 + r2
        gain = s2 * a / pred_var
        resid = y - (a * m + b)
        mean = m + gain * resid
        var = s2 * r2 / pred_var  # (1 - gain a) s2 without cancellation
        log_pred = -0.5 * (jnp.log(2 * jnp.pi * pred_var) + resid**2 / pred_var)
        return mean, jnp.sqrt(var), log_pred
    S = chol_s @ chol_s.T
    R = chol_r @ chol_r.T
    pred = a @ S @ a.T + R
    chol_pred = jnp.linalg.cholesky(pred)
    resid = y - (a @ m + b)
    sol = jax.scipy.linalg.cho_solve((chol_pred, True), jnp.stack([resid, *(a @ S).T], -1))
    alpha, kt = sol[:, 0], sol[:, 1:]  # pred^{-1} resid, pred^{-1} a S
    mean = m + (S @ a.T) @ alpha
    cov = S - (S @ a.T) @ kt
    cov = 0.5 * (cov + cov.T)
    z = jax.scipy.linalg.solve_triangular(chol_pred, resid, lower=True)
    log_pred = -0.5 * (
        resid.shape[0] * jnp.log(2 * jnp.pi) + 2 * jnp.sum(jnp.log(jnp.diag(chol_pred))) + z @ z
    )
    return mean, jnp.linalg.cholesky(cov), log_pred


def _gaussian_sample_logpdf(key, mean, chol):
    eps = jax.random.normal(key, jnp.shape(mean), dtype=jnp.result_type(mean, float))
    x = mean + (chol * eps if jnp.ndim(mean) == 0 else chol @ eps)
    return x, _gaussian_logpdf(x, mean, chol)


def _gaussian_logpdf(x, mean, chol):
    if jnp.ndim(mean) == 0:
        z = (x - mean) / chol
        return -0.5 * (jnp.log(2 * jnp.pi) + z * z) - jnp.log(chol)
    z = jax.scipy.linalg.solve_triangular(chol, x - mean, lower=True)
    return -0.5 * (mean.shape[0] * jnp.log(2 * jnp.pi) + z @ z) - jnp.sum(jnp.log(jnp.diag(chol)))


def locally_optimal_gaussian_proposal(
    mean: Callable,
    scale: Callable,
    obs_coef: Callable,
    obs_offset: Callable,
    obs_scale: Callable,
    obs: Callable,
    init_mean: Callable,
    init_scale: Callable,
) -> Proposal:
    """The locally optimal proposal p(x_t | x_{t-1}, y_t) for a Gaussian transition and a
    Gaussian observation linear in the state.

    Model: x_t ~ N(m, S) with m = mean(prev, t, params), S = scale(...) scale(...)';
    x_0 ~ N(init_mean(params), init_scale(params) init_scale(params)');
    y_t ~ N(obs_coef · x_t + obs_offset, obs_scale obs_scale') with y_t = obs(prev, t, params)
    (at t = 0 the obs functions get prev = None).

    Scalar state: every function returns a scalar (scales are standard deviations). Vector
    state (d,) with k-dim observations: mean (d,), scale a lower Cholesky factor (d, d),
    obs_coef (k, d), obs_offset (k,), obs_scale lower Cholesky (k, k), obs (k,).
    Where a step has no observation, return obs_coef = 0.

    The state must be the bare array (not a dict). The filter's weight p g / q then equals the
    predictive density N(y_t; a m + b, a S a' + R) exactly, independent of x_t.
    """

    def moments(prev, t, params, m, chol):
        return _gaussian_posterior(
            m,
            chol,
            obs_coef(prev, t, params),
            obs_offset(prev, t, params),
            obs_scale(prev, t, params),
            obs(prev, t, params),
        )

    def init(key, params):
        mu, chol, _ = moments(None, 0, params, init_mean(params), init_scale(params))
        return _gaussian_sample_logpdf(key, mu, chol)

    def step(key, prev, t, params):
        mu, chol, _ = moments(prev, t, params, mean(prev, t, params), scale(prev, t, params))
        return _gaussian_sample_logpdf(key, mu, chol)

    def init_logpdf(x, params):
        mu, chol, _ = moments(None, 0, params, init_mean(params), init_scale(params))
        return _gaussian_logpdf(x, mu, chol)

    def step_logpdf(x, prev, t, params):
        mu, chol, _ = moments(prev, t, params, mean(prev, t, params), scale(prev, t, params))
        return _gaussian_logpdf(x, mu, chol)

    return Proposal(init=init, step=step, init_logpdf=init_logpdf, step_logpdf=step_logpdf)
