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

One step reads and writes each particle once or twice: the transition (its standard normal
noise drawn counter-based inside the same loop), the likelihood and the weight update in one
fused pass that also yields the maximum log weight, then one pass of exponentials feeding the
three sums (normalising constant, ESS, filtering mean). `dtype=jnp.float32` halves the bytes
and the random bits per particle; log weights and every sum stay in float64.

The particles of one filter may be split over devices (`axis_name`, `run_chains` with a
layout from `ppl.algorithms.devices`); the weights and the resampling are global
(`ppl.algorithms.particle_shards`), so the filter is the same as on one device.
"""
import math
from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from . import resampling as _resampling
from . import devices as _devices
from .particle_shards import ParticleGroup, key_words

__all__ = [
    "Proposal",
    "StateSpaceModel",
    "FilterResult",
    "run",
    "run_many",
    "run_chains",
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
    # Optional split of `transition_sample_batch` into its noise, `noise_size` i.i.d. standard
    # normals per particle and step, and a deterministic map, with the same law:
    # transition_from_noise(transition_noise(key, 1, N)[0], prev, t, params). The bootstrap
    # filter then draws the normals itself, counter-based and fused with the step
    # (ppl.algorithms.particle_shards); `transition_noise` is the reference draw.
    transition_noise: Optional[Callable] = None  # (key, num_steps, N) -> (num_steps, N, noise_size)
    transition_from_noise: Optional[Callable] = None  # (noise (N, noise_size), prev (N, ...), t, params) -> (N, ...)
    noise_size: int = 0  # standard normals per particle and step


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


def _cast(tree, dtype):
    """Floating leaves of `tree` in `dtype` (integer leaves as they are)."""
    if dtype is None:
        return tree

    def leaf(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(leaf, tree)


def _noise_width(model: StateSpaceModel) -> int:
    """Standard normals per particle and step when the filter draws the transition noise
    itself (bootstrap, location-scale transitions), else 0."""
    if model.proposal is None and model.transition_from_noise is not None and model.noise_size > 0:
        return int(model.noise_size)
    return 0


def init_particles(key, model: StateSpaceModel, params, num_particles: int,
                   group: Optional[ParticleGroup] = None):
    """Draw step-0 particles and their (unnormalised) log weights.

    With a `group` split over devices, the particles held here are the group's rows of the
    N particles one device would draw (the batched sampler draws all N on every shard, once)."""
    group = group or ParticleGroup(num_particles)
    if model.proposal is None:
        if model.init_sample_batch is not None:
            x = group.mine(model.init_sample_batch(key, params, group.total))
        else:
            x = jax.vmap(model.init_sample, (0, None))(group.keys(key), params)
        log_w = jax.vmap(model.observation_logpdf, (0, None, None))(x, 0, params)
    else:
        x, log_q = jax.vmap(model.proposal.init, (0, None))(group.keys(key), params)
        log_w = (
            jax.vmap(model.init_logpdf, (0, None))(x, params)
            + jax.vmap(model.observation_logpdf, (0, None, None))(x, 0, params)
            - log_q
        )
    return x, _clean(log_w)


def propagate(key, model: StateSpaceModel, params, prev, t, noise=None,
              group: Optional[ParticleGroup] = None):
    """Move each particle of `prev` (leaves (n, ...)) to step t; returns (x, incremental log w).
    With `noise` (bootstrap: the standard normals `model.transition_from_noise` maps) no key
    is used."""
    n = jax.tree_util.tree_leaves(prev)[0].shape[0]
    group = group or ParticleGroup(n)
    if model.proposal is None:
        if noise is not None:
            x = model.transition_from_noise(noise, prev, t, params)
        elif model.transition_sample_batch is not None:
            # one batch per shard: a shard's own key (the law of independent draws; not the
            # draws one device would make)
            x = model.transition_sample_batch(group.fold(key), prev, t, params)
        else:
            keys = group.keys(key)
            x = jax.vmap(model.transition_sample, (0, 0, None, None))(keys, prev, t, params)
        log_w = jax.vmap(model.observation_logpdf, (0, None, None))(x, t, params)
    else:
        keys = group.keys(key)
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


class _Weighed(NamedTuple):
    log_w: Any  # (n,) normalised log weights (float64); uniform if no weight is positive
    log_sum: Any  # log of the sum of the weights over all particles (-inf if none is positive)
    ess: Any
    means: Any  # Σ W_i x_i per leaf (float64)


def _weigh(log_w, x, group: ParticleGroup, dtype) -> _Weighed:
    """Normalise the weights exp(`log_w`) over all particles: two passes, their maximum, then
    one pass of exp (in `dtype`) feeding three sums accumulated in float64 (Σ e, Σ e², Σ e x),
    which XLA fuses into one loop; with the likelihood fused into the first pass, a step reads
    and writes each particle's state and log weight once.

    If no weight is positive (or a sum overflows) the weights become uniform, so everything
    downstream stays finite, and `log_sum` is -inf / +inf: the caller records the failure."""
    acc = jnp.result_type(float)  # float64 under ppl
    m = group.max(log_w)
    shift = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp((log_w - shift).astype(dtype))
    total = group.sum(e, acc)
    total2 = group.sum(e * e, acc)

    def weighted_sum(leaf, w):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            leaf = leaf.astype(w.dtype)
        return group.sum(w.reshape(w.shape + (1,) * (leaf.ndim - 1)) * leaf, acc)

    sums = jax.tree_util.tree_map(lambda leaf: weighted_sum(leaf, e), x)
    log_sum = jnp.log(total) + shift
    ok = jnp.isfinite(log_sum)
    n = group.total
    means = lax.cond(
        ok,
        lambda: jax.tree_util.tree_map(lambda s: s / total, sums),
        lambda: jax.tree_util.tree_map(
            lambda leaf: weighted_sum(leaf, jnp.full(e.shape, 1.0 / n, dtype)), x),
    )
    return _Weighed(jnp.where(ok, log_w - log_sum, -math.log(n)), log_sum,
                    jnp.where(ok, total * total / total2, float(n)), means)


# --------------------------------------------------------------------------- filter
@partial(
    jax.jit,
    static_argnames=("model", "num_particles", "resampling", "ess_threshold", "record", "dtype",
                     "axis_name"),
)
def run(
    key,
    model: StateSpaceModel,
    params,
    num_particles: int,
    resampling="systematic",
    ess_threshold: float = 0.5,
    record: str = "summary",
    dtype=None,
    axis_name: Optional[str] = None,
) -> FilterResult:
    """Run a particle filter over `model.num_steps` steps with `num_particles` particles.

    `resampling` is a scheme name from `ppl.algorithms.resampling` or a function
    `(key, weights, num_samples) -> indices`. `record="genealogy"` also keeps the ancestor
    indices, all particles and their weights, for `trace_genealogy` / `sample_trajectory`.

    `dtype` (e.g. `jnp.float32`): the states, the parameters' floating leaves, the noise and
    the exponentials of the weights in that precision; log weights, their sums, the ESS, the
    filtering means and log Ẑ stay in float64. Default: the model's own precision.

    `axis_name`: called inside `jax.shard_map` with the particles split over that mesh axis
    (`num_particles` is the total; each device holds its share, `particle_filter.sharded`
    builds the map). The weights are global: one filter, as on one device (see
    `ppl.algorithms.particle_shards`). Particle-indexed results hold this device's rows.
    """
    if record not in ("summary", "genealogy"):
        raise ValueError(f"record must be 'summary' or 'genealogy', not {record!r}")
    resample_fn = _resampling.get(resampling)
    group = ParticleGroup(num_particles, axis_name)
    n = group.total
    log_n = math.log(n)
    always = ess_threshold >= 1.0
    keep = record == "genealogy"
    dtype = jnp.dtype(dtype) if dtype is not None else None
    params = _cast(params, dtype)
    state_dtype = dtype

    key0, key_scan, key_noise = jax.random.split(key, 3)
    x0, log_w0 = init_particles(key0, model, params, n, group)
    x0 = _cast(x0, state_dtype)
    calc = dtype or jnp.result_type(float)
    first = _weigh(log_w0.astype(jnp.result_type(float)) - log_n, x0, group, calc)
    failed0 = jnp.where(jnp.isfinite(first.log_sum), -1, 0).astype(jnp.int32)
    width = _noise_width(model)
    words = key_words(key_noise)

    def resample(k_res, x_prev, log_w_prev):
        # log_w_prev is normalised: exp gives the weights
        idx = group.resample(resample_fn, k_res, jnp.exp(log_w_prev))
        return group.take(x_prev, idx), jnp.full_like(log_w_prev, -log_n), idx

    def step(carry, inp):
        x_prev, log_w_prev, ess_prev, failed = carry
        t, k_res, k_prop = inp
        if always:
            do_res = jnp.array(True)
            x_anc, log_w_base, anc = resample(k_res, x_prev, log_w_prev)
        else:
            do_res = ess_prev < ess_threshold * n
            # Steps that do not resample skip the resampling work entirely; without resampling
            # the ancestors are the identity and the weights carry over (aligned with x).
            x_anc, log_w_base, anc = lax.cond(
                do_res,
                lambda a: resample(k_res, *a),
                lambda a: (a[0], a[1], group.ids()),
                (x_prev, log_w_prev),
            )
        noise = group.normals(words, t, width, calc) if width else None
        x, log_inc = propagate(k_prop, model, params, x_anc, t, noise, group)
        x = _cast(x, state_dtype)
        wt = _weigh(log_w_base + log_inc.astype(log_w_base.dtype), x, group, calc)
        failed = jnp.where((failed < 0) & ~jnp.isfinite(wt.log_sum), t, failed).astype(jnp.int32)
        out = {"inc": wt.log_sum, "ess": wt.ess, "resampled": do_res, "mean": wt.means}
        if keep:
            out.update(anc=anc, x=x, log_w=wt.log_w)
        return (x, wt.log_w, wt.ess, failed), out

    ts = jnp.arange(1, model.num_steps, dtype=jnp.int32)
    keys = jax.random.split(key_scan, model.num_steps - 1)
    # Each step's (resampling, propagation) keys, split for all steps at once: the same keys
    # as splitting inside the step, without a small hash per step in the loop.
    step_keys = jax.vmap(jax.random.split)(keys)
    carry0 = (x0, first.log_w, first.ess, failed0)
    (x_T, log_w_T, _, failed), outs = lax.scan(step, carry0, (ts, step_keys[:, 0], step_keys[:, 1]))

    def cat(first, rest):
        return jnp.concatenate([jnp.asarray(first)[None], rest], axis=0)

    increments = cat(first.log_sum, outs["inc"])
    means = jax.tree_util.tree_map(cat, first.means, outs["mean"])
    log_evidence = jnp.where(failed >= 0, -jnp.inf, jnp.sum(increments))
    result = FilterResult(
        log_evidence=log_evidence,
        log_evidence_increments=increments,
        ess=cat(first.ess, outs["ess"]),
        resampled=cat(jnp.array(False), outs["resampled"]),
        particles=x_T,
        log_weights=log_w_T,
        filtering_means=means,
        failed_step=failed,
    )
    if keep:
        result = result._replace(
            ancestors=cat(group.ids(), outs["anc"]),
            particle_history=jax.tree_util.tree_map(cat, x0, outs["x"]),
            log_weight_history=cat(first.log_w, outs["log_w"]),
        )
    return result


def run_many(keys, model: StateSpaceModel, params, num_particles: int, **kwargs) -> FilterResult:
    """Independent filters, one per key (vmapped); e.g. for the spread of log Ẑ."""
    return jax.vmap(lambda k: run(k, model, params, num_particles, **kwargs))(keys)


def run_chains(keys, model: StateSpaceModel, params, num_particles: int,
               lay: Optional[_devices.Layout] = None, **kwargs) -> FilterResult:
    """Independent filters, one per key (leading axis of every result), laid out over devices
    by `lay` (`ppl.algorithms.devices.layout`): a filter per device, one after another on a
    device, or each filter's particles split over several devices. Without a layout they run
    one after another here. Not vmapped: under vmap the resampling `cond` would become a
    select that resamples at every step."""
    if lay is None:
        return lax.map(lambda k: run(k, model, params, num_particles, **kwargs), keys)
    part = P("chains", "particles")
    hist = P("chains", None, "particles")
    genealogy = kwargs.get("record", "summary") == "genealogy"
    specs = FilterResult(P("chains"), P("chains"), P("chains"), P("chains"), part, part,
                         P("chains"), P("chains"), *((hist,) * 3 if genealogy else (None,) * 3))
    return _devices.map_chains(
        lambda k, prm: run(k, model, prm, num_particles, axis_name=lay.axis_name, **kwargs),
        keys, params, lay, specs)


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
