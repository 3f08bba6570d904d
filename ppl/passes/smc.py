"""The `smc` pass: particle methods with unbiased evidence.

- State-space models (ppl/ir/statespace.py) with every static parameter fixed (given with the
  data): `chains` independent particle filters in one `vmap` (bootstrap, or the locally
  optimal proposal for linear-Gaussian observations), or — when the whole chain is
  linear-Gaussian — exact marginalisation by a Kalman filter. Log evidence with a standard
  error, smoothed trajectories (genealogy; forward-filtering backward-sampling for Kalman),
  per-step ESS, resampling events and filtering means.
- State-space models with free static parameters: particle Gibbs (conditional SMC with
  ancestor sampling) alternating with random-walk Metropolis moves on the parameters (centred
  and, for normal states, non-centred), and log evidence by importance sampling over them.
- Static models with proper priors: adaptive tempered SMC, with log evidence.
- A model with a linear process (`x: process<…> ~ sde(drift = a + A*x, diffusion = σ, …)` read
  as x(t[i])): the rewrite `discretise_process` (ppl/ir/process.py) makes it the state-space
  model of the SDE's exact Gaussian transitions between the read times, run as above (Kalman:
  the exact log p(y)); `ProcessProgram` adds the check of those steps against the linear SDE.

Contract: "unbiased-evidence" (Ẑ, not log Ẑ, is unbiased; Kalman is exact).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms import devices as _devices
from ..algorithms import kalman as _kalman
from ..algorithms import paris as _paris
from ..algorithms import particle_filter as _pf
from ..algorithms import particle_gibbs as _pg
from ..algorithms import tempered_smc as _tsmc
from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..ir.process import (
    NotLinearProcess,
    discretise_linear,
    has_process,
    linear_process,
)
from ..ir.rewrites import extract_state_space
from ..ir.statespace import StateSpace, StateSpaceForm, find
from ..lower import additive as _additive
from ..lower import process as _process
from ..lower.model import LoweredModel
from ..lower.random import chain_keys, rng_key, split_keys
from ..lower.statespace import SSMLowering
from ..lower.validation import check_agreement
from ..runtime.progress import reporting, tick
from ..syntax.errors import PPLInternalError, PPLRuntimeError
from .base import Diagnosis, Draws, Finalize, InferencePass

MAX_GENEALOGY = 5e7  # particle-history elements kept for smoothed trajectories
MAX_DRAW_ELEMENTS = 2e7


def _log_mean_exp(v):
    v = np.asarray(v, dtype=float)
    m = np.max(v)
    if not np.isfinite(m):
        return float(m)
    return float(m + np.log(np.mean(np.exp(v - m))))


def evidence_estimate(log_z):
    """(log of the mean of Ẑ over independent runs, its delta-method standard error)."""
    log_z = np.asarray(log_z, dtype=float).ravel()
    est = _log_mean_exp(log_z)
    n = log_z.size
    if n < 2 or not np.isfinite(est):
        return est, float("nan")
    r = np.exp(log_z - est)  # Ẑ_i / mean Ẑ
    return est, float(np.std(r, ddof=1) / math.sqrt(n))


def _check_failed(failed, ssm: SSMLowering, ir):
    failed = np.asarray(failed).ravel()
    bad = failed[failed >= 0]
    if bad.size == 0:
        return
    k = int(bad.min())
    t = k + 1
    stmt = None
    for st, (lo, hi) in zip(ssm.form.observations, ssm.obs_ranges):
        if lo <= t <= hi:
            stmt = st
            break
    where = f"the observation on line {stmt.line}" if stmt else "the state transition"
    raise PPLRuntimeError(
        f"every particle has zero weight at time step {t}: {where} has zero (or NaN) density for "
        "all particles", stmt.stmt.span if stmt else None,
        "more particles, a guided proposal (proposal=\"guided\"), or check the data at this step",
        ir.source, ir.filename)


# ============================================================================ additive functionals
class AdditiveSmoothing:
    """PaRIS estimates of the additive functionals in the generated block
    (ppl/lower/additive.py): E[S | θ, y] for S = Σ_t h_t(x_{t-1}, x_t).

    Bootstrap PaRIS with O(N·Ñ) backward draws (ancestor + Metropolis moves, Ñ = 2), so the
    cost per run is a small multiple of a filter's. Without a reference, one run per chain
    (fixed parameters); with one, conditional PaRIS given a particle Gibbs draw (θ_i, x_i),
    which is unbiased for E[S | θ_i, y] when x_i is a draw from p(x | θ_i, y): averaged over
    the chain's draws, the estimates give E[S | y] (Cardoso, Janati, Le Corff, Moulines &
    Olsson 2023) with less Monte Carlo error than the plain draws of S.
    """

    def __init__(self, ssm: SSMLowering, enabled=True, num_backward=2):
        self.ssm = ssm
        self.functionals, self.not_additive = _additive.find(ssm) if enabled else ([], {})
        self.names = [f.name for f in self.functionals]
        self.num_backward = int(num_backward)
        self.model = ssm.model(None)
        if self.functionals:
            self.h0, self.h = _additive.step_functions(ssm, self.functionals)

    def __bool__(self):
        return bool(self.functionals)

    def estimate(self, key, params, num_particles, reference=None):
        """(m,) estimates, one per functional."""
        return _paris.run(key, self.model, params, num_particles, self.h, self.h0,
                          self.num_backward, reference, "mcmc").estimate

    def attrs(self, estimates, ses, method):
        """Run-level results: `smoothed_NAME` and `smoothed_NAME_se`."""
        out = {"smoothing_method": method}
        for i, n in enumerate(self.names):
            out[f"smoothed_{n}"] = float(estimates[i])
            if np.isfinite(ses[i]):
                out[f"smoothed_{n}_se"] = float(ses[i])
        return out

    def validate(self, key, lowered: LoweredModel):
        """Σ_t h_t along a prior trace equals the generated quantity computed the ordinary way."""
        if not self:
            return {}
        theta, traj, vals = _random_trace(self.ssm, key, lowered)

        @jax.jit
        def both(theta, traj, vals, data):
            params, _ = self.ssm.prepare(theta, data)
            return (_additive.along(self.ssm, self.functionals, traj, params),
                    lowered.generated(key, vals, data))

        mine, gen = both(theta, traj, vals, lowered.data_arrays)
        for i, f in enumerate(self.functionals):
            check_agreement(mine[i], gen[f.name], f'smc: the additive form of "{f.name}" summed '
                            "along a trace, against the generated block's value", rtol=1e-8)
        return {"additive_checked": self.names}


# ============================================================================ particle filters
class FilterProgram:
    """Independent particle filters (all static parameters fixed), one per chain.

    Chain c's filter runs from the key of (seed, c) alone and its draws do not depend on the
    chains, devices or processes beside it (ppl/algorithms/devices.py): one filter per device,
    one after another on a device, each process its share of the chains. Devices left over
    split each filter's particles (`shard`), the weights and resampling staying global.
    `dtype="float32"`: states, noise and likelihoods in single precision (log weights, their
    sums and log Ẑ in float64)."""
    contract = "unbiased-evidence"

    def __init__(self, lowered: LoweredModel, form: StateSpaceForm, chains=4, draws=1000,
                 particles=1000, resampling="systematic", ess_threshold=0.5, proposal="auto",
                 smoothing="auto", paris=True, dtype="float64", devices=None, shard="auto", **_):
        self.lowered, self.form = lowered, form
        self.ssm = SSMLowering(lowered, form)
        self.additive = AdditiveSmoothing(self.ssm, bool(paris))
        self.chains, self.draws, self.n = int(chains), int(draws), int(particles)
        self.resampling, self.ess_threshold = resampling, float(ess_threshold)
        if proposal not in ("auto", "bootstrap", "guided"):
            raise ValueError('proposal must be "auto", "bootstrap" or "guided"')
        if proposal == "guided" and not form.guided:
            raise PPLRuntimeError("the guided proposal needs one Gaussian state with a "
                                  "linear-Gaussian observation", None)
        self.proposal = "guided" if proposal == "guided" or (proposal == "auto" and form.guided) \
            else "bootstrap"
        self.dtype = _filter_dtype(dtype)
        size = self.chains * self.n * self.ssm.T * len(form.state_vars)
        self.keep = smoothing == "genealogy" or (smoothing == "auto" and size <= MAX_GENEALOGY
                                                 and self.draws > 0)
        first, count, _ = _devices.process_share(self.chains)
        self.first, self.count = first, count
        self.layout = _devices.layout(count, devices, self.n, shard)
        filter_ssm = self.ssm
        if self.dtype == jnp.float32:
            # the filter's own lowering computes its states in single precision
            filter_ssm = SSMLowering(lowered, form)
            filter_ssm.dtypes = {k: (jnp.float32 if jnp.issubdtype(v, jnp.floating) else v)
                                 for k, v in filter_ssm.dtypes.items()}
        self.model = filter_ssm.model(self.proposal if self.proposal == "guided" else None)
        self._run = self._run_impl  # compiled by _run_reporting

    def _run_impl(self, keys, traj_keys, paris_keys, data_arrays):
        params, static_lp = self.ssm.prepare({}, data_arrays)
        lo, hi = self.first, self.first + self.count  # this process's chains
        kw = dict(resampling=self.resampling, ess_threshold=self.ess_threshold,
                  record="genealogy" if self.keep else "summary",
                  dtype=self.dtype if self.dtype != jnp.float64 else None)
        res = _pf.run_chains(keys[lo:hi], self.model, params, self.n, self.layout, **kw)
        _tick(self, res.log_evidence)  # the chains' filters are done (progress)
        out = {"log_z": res.log_evidence + static_lp, "ess": res.ess, "resampled": res.resampled,
               "means": res.filtering_means, "failed": res.failed_step}
        if self.keep:
            def draw(k, r):
                idx = jax.random.categorical(k, r.log_weights, shape=(self.draws,))
                return _pf.trace_genealogy(r, idx)
            out["traj"] = jax.vmap(draw)(traj_keys[lo:hi], res)
        if self.additive:
            out["paris"] = jax.lax.map(lambda k: self.additive.estimate(k, params, self.n),
                                       paris_keys[lo:hi])
        return out

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        keys = (chain_keys(seed, self.chains, "run"), chain_keys(seed, self.chains, "smoothing"),
                chain_keys(seed, self.chains, "evidence"))
        out = _run_reporting(self, self._run, (*keys, data_arrays), progress,
                             self.chains, phase=f"particle filter ({self.n} particles)",
                             unit="chains", chains=self.chains)
        out = _devices.gather_chains(jax.device_get(out), self.chains)
        _check_failed(out["failed"], self.ssm, self.lowered.ir)
        log_z = np.asarray(out["log_z"])
        est, se = evidence_estimate(log_z)
        posterior = {}
        if self.keep:
            for n in self.form.state_vars:
                posterior[n] = np.moveaxis(np.asarray(out["traj"][n]), 1, 2)  # (chains, draws, T)
        stats = {"log_evidence": log_z[:, None], "ess": np.asarray(out["ess"])[:, None],
                 "resampled": np.asarray(out["resampled"])[:, None]}
        for n in self.form.state_vars:
            stats[f"{n}_filtering_mean"] = np.asarray(out["means"][n])[:, None]
        attrs = {"inference_method": "smc", "smc_algorithm": f"particle filter ({self.proposal})",
                 "particles": self.n, "log_evidence": est, "markov_chain": 0,
                 "filter_precision": np.dtype(self.dtype).name,
                 "layout": self.layout.describe() + (
                     f", {jax.process_count()} processes" if jax.process_count() > 1 else "")}
        if np.isfinite(se):
            attrs["log_evidence_se"] = se
        if self.additive:
            est = np.asarray(out["paris"])  # (chains, m)
            for i, n in enumerate(self.additive.names):
                stats[f"{n}_paris"] = est[:, None, i]
            se = est.std(0, ddof=1) / math.sqrt(est.shape[0]) if est.shape[0] > 1 else \
                np.full(est.shape[1], np.nan)
            attrs.update(self.additive.attrs(est.mean(0), se, f"PaRIS, {self.chains} independent "
                                              f"runs of {self.n} particles"))
        d = Draws(posterior, stats, attrs=attrs)
        if not self.keep:
            d.warnings.append("smoothed trajectories not kept (chains × particles × T too large); "
                              "pass smoothing=\"genealogy\" to force")
        return d

    def validate(self, key):
        r = validate_ssm(self.ssm, key, self.lowered)
        r.update(self.additive.validate(key, self.lowered))
        return r


def _filter_dtype(dtype):
    """The `dtype` option of a filter: float64 (default) or float32."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in ("float64", "float32"):
        raise PPLRuntimeError(f'dtype must be "float64" or "float32", not {dtype!r}', None,
                              "float32 computes the particles in single precision, with log "
                              "weights and the evidence in double precision")
    return jnp.dtype(name)


class KalmanProgram:
    """Linear-Gaussian state chains marginalised exactly (fixed static parameters)."""
    contract = "unbiased-evidence"

    def __init__(self, lowered: LoweredModel, form: StateSpaceForm, chains=4, draws=1000,
                 paris=True, **_):
        self.lowered, self.form = lowered, form
        self.ssm = SSMLowering(lowered, form)
        self.chains, self.draws = int(chains), int(draws)
        # exact smoothing draws are at hand: the functionals are evaluated along them
        self.additive = AdditiveSmoothing(self.ssm, bool(paris))
        d = len(form.state_vars)
        self.sample_draws = self.chains * self.draws * self.ssm.T * d <= MAX_DRAW_ELEMENTS
        self._run = self._run_impl  # compiled by _run_reporting

    def _run_impl(self, chain_keys_, data_arrays):
        params, static_lp = self.ssm.prepare({}, data_arrays)
        model, ys, corr = self.ssm.kalman_model(params)
        res = _kalman._filter(model, ys)
        out = {"log_z": res.log_evidence + corr + static_lp, "means": res.filtered_means}
        if self.sample_draws and self.draws > 0:
            # chain c's draws from the key of (seed, c) alone
            keys = jax.vmap(lambda k: jax.random.split(k, self.draws))(chain_keys_).reshape(-1)
            out["traj"] = jax.vmap(lambda k: _ffbs(k, res, model.F))(keys)
            if self.additive:
                names = self.form.state_vars
                out["functionals"] = jax.vmap(lambda tr: _additive.along(
                    self.ssm, self.additive.functionals,
                    {n: tr[:, i] for i, n in enumerate(names)}, params))(out["traj"])
        return out

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        out = _run_reporting(self, self._run, (chain_keys(seed, self.chains, "smoothing"),
                                               data_arrays), progress, 1,
                             phase="Kalman filter and smoothing draws", unit="runs")
        lz = float(out["log_z"])
        posterior = {}
        if "traj" in out:
            tr = np.asarray(out["traj"]).reshape(self.chains, self.draws, self.ssm.T, -1)
            for i, n in enumerate(self.form.state_vars):
                posterior[n] = tr[..., i]
        means = np.asarray(out["means"])
        stats = {"log_evidence": np.full((self.chains, 1), lz)}
        for i, n in enumerate(self.form.state_vars):
            stats[f"{n}_filtering_mean"] = np.broadcast_to(means[:, i], (self.chains, 1, self.ssm.T))
        attrs = {"inference_method": "smc", "log_evidence": lz, "log_evidence_se": 0.0,
                 "smc_algorithm": "Kalman filter (state marginalised)", "markov_chain": 0}
        predictive = {}
        if "functionals" in out:
            v = np.asarray(out["functionals"])  # (chains · draws, m), exact independent draws
            for i, n in enumerate(self.additive.names):
                predictive[n] = v[:, i].reshape(self.chains, self.draws)
            attrs.update(self.additive.attrs(v.mean(0), v.std(0, ddof=1) / math.sqrt(v.shape[0]),
                                              "exact smoothing draws (Kalman, backward sampling)"))
        d = Draws(posterior, stats, predictive, attrs=attrs)
        if "traj" not in out:
            d.warnings.append("smoothed trajectories not drawn (chains × draws × T too large)")
        return d

    def validate(self, key):
        r = validate_ssm(self.ssm, key, self.lowered)
        r.update(validate_kalman(self.ssm, key, self.lowered))
        r.update(self.additive.validate(key, self.lowered))
        return r


def _ffbs(key, res, F):
    """One trajectory (T, d) from the Kalman smoothing distribution (backward sampling)."""
    T, d = res.filtered_means.shape
    keys = jax.random.split(key, T)

    def draw(k, m, P):
        L = jnp.linalg.cholesky(P + 1e-12 * jnp.eye(d))
        return m + L @ jax.random.normal(k, (d,))

    x_last = draw(keys[-1], res.filtered_means[-1], res.filtered_covs[-1])

    def back(x_next, inp):
        k, m, P, m_pred, P_pred, F_next = inp
        J = jnp.linalg.solve(P_pred, F_next @ P).T  # P F' P_pred^{-1}
        mean = m + J @ (x_next - m_pred)
        cov = P - J @ P_pred @ J.T
        x = draw(k, mean, 0.5 * (cov + cov.T))
        return x, x

    inputs = (keys[:-1], res.filtered_means[:-1], res.filtered_covs[:-1],
              res.predicted_means[1:], res.predicted_covs[1:], F[1:])
    _, xs = jax.lax.scan(back, x_last, inputs, reverse=True)
    return jnp.concatenate([xs, x_last[None]], axis=0)


# ============================================================================ validation
def _random_trace(ssm: SSMLowering, key, lowered: LoweredModel):
    """A trace from the prior: static parameters and one state trajectory."""
    vals = lowered.prior_sample(key, lowered.data_arrays)
    theta = {n: vals[n] for n in ssm.free_params}
    traj = {n: jnp.asarray(vals[n]) for n in ssm.form.state_vars}
    return theta, traj, vals


def validate_ssm(ssm: SSMLowering, key, lowered: LoweredModel, points=2, rtol=1e-6):
    """Along random traces, the per-step log weights (init, transitions, observations, and the
    static part) sum to the graph's joint log density."""
    diffs = []

    @jax.jit
    def both(theta, traj, vals, data):
        params, static_lp = ssm.prepare(theta, data)
        a = static_lp + ssm.trajectory_log_density(traj, params)
        b = ssm.joint_reference(vals, data)
        return a, b

    for k in split_keys(key, points):
        theta, traj, vals = _random_trace(ssm, k, lowered)
        a, b = both(theta, traj, vals, lowered.data_arrays)
        diffs.append(check_agreement(a, b, "smc: the incremental log weights of a trace summed, "
                                     "against the model's joint log density", rtol))
    return {"checked": True, "points": points, "max_abs_diff": max(diffs) if diffs else 0.0}


def validate_kalman(ssm: SSMLowering, key, lowered: LoweredModel, rtol=1e-8):
    """The Kalman coefficients reproduce the Gaussian conditionals of the model at random states."""
    theta, traj, vals = _random_trace(ssm, key, lowered)

    @jax.jit
    def check(theta, traj, data):
        params, _ = ssm.prepare(theta, data)
        model, ys, _ = ssm.kalman_model(params)
        m = ssm.model()
        X = jnp.stack([traj[n] for n in ssm.form.state_vars], -1)  # (T, d)

        def mvn(x, mean, cov):
            L = jnp.linalg.cholesky(cov)
            z = jax.scipy.linalg.solve_triangular(L, x - mean, lower=True)
            return -0.5 * (x.shape[0] * math.log(2 * math.pi) + z @ z) - jnp.sum(jnp.log(jnp.diag(L)))

        def dict_at(k):
            return {n: traj[n][k] for n in ssm.form.state_vars}

        a0 = mvn(X[0], model.m0, model.P0)
        b0 = m.init_logpdf(dict_at(0), params)
        ks = jnp.arange(1, ssm.T)
        a1 = jax.vmap(lambda k: mvn(X[k], model.F[k] @ X[k - 1] + model.c[k], model.Q[k]))(ks)
        b1 = jax.vmap(lambda k: m.transition_logpdf(dict_at(k), dict_at(k - 1), k, params))(ks)
        ka = jnp.arange(ssm.T)
        # observations: the Kalman terms, minus the y = 0 ~ N(0, 1) placeholders
        a2 = jax.vmap(lambda k: mvn(ys[k], model.H[k] @ X[k] + model.d[k], model.R[k]))(ka)
        b2 = jax.vmap(lambda k: m.observation_logpdf(dict_at(k), k, params))(ka)
        return a0 - b0, jnp.max(jnp.abs(a1 - b1)), jnp.sum(a2) - jnp.sum(b2)

    r0, r1, r2 = (float(v) for v in check(theta, traj, lowered.data_arrays))
    _, _, corr = ssm.kalman_model(ssm.prepare(theta, lowered.data_arrays)[0])
    r2 = r2 + float(corr)
    if max(abs(r0), abs(r1), abs(r2)) > 1e-6 * (1 + ssm.T):
        raise PPLInternalError(
            "smc translation validation failed: the Kalman coefficients do not reproduce the "
            f"model's Gaussian conditionals (init {r0:.3g}, transition {r1:.3g}, observations {r2:.3g})")
    return {"kalman_checked": True, "kalman_max_abs_diff": max(abs(r0), abs(r1), abs(r2))}


# ============================================================================ processes
class ProcessProgram:
    """A model with a linear process (`x: process<…> ~ sde(drift = a + A*x, diffusion = σ)`,
    read as x(t[i])), run as the state-space model of its exact Gaussian steps between the read
    times (the rewrite `discretise_process`, ppl/ir/process.py): the program for that model
    (Kalman, particle filter or particle Gibbs), its validation with the discretised program as
    the reference, and the discretisation itself checked against the linear SDE's transitions
    computed independently (`check_discretisation`). The path's draws are at the read times,
    given as the `process` group's `<name>_time`."""

    def __init__(self, smc: "SMCPass", lowered: LoweredModel, options: Dict[str, Any]):
        self._process = _process
        self.lp = linear_process(lowered.source_ir)
        self.name = self.lp.draw.target.name
        # the process as written (its drift, diffusion and initial law, for the check) and the
        # discretised program (the reference of the state-space validation)
        self.written = _process.ProcessModel(LoweredModel(lowered.source_ir, lowered.data))
        self.lowered = LoweredModel(lowered.ir, lowered.data,
                                    source_ir=discretise_linear(lowered.source_ir))
        self.times = _process.read_times(self.lowered, self.lp)
        self.inner = smc._build(self.lowered, options)
        self.contract = self.inner.contract

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        times = self._process.read_times(self.lowered, self.lp, data_arrays)
        out = self.inner.run(data_arrays, seed, progress)
        out.groups = dict(out.groups, process={f"{self.name}_time": times})
        out.attrs["process_discretisation"] = ("exact: Gaussian transitions of the linear SDE "
                                               f"between the {times.size} read times")
        return out

    def validate(self, key):
        r = dict(self.inner.validate(key))
        ssm = self.inner.ssm
        vals = self.lowered.prior_sample(key, self.lowered.data_arrays)
        theta = {n: vals[n] for n in ssm.form.params if n in vals}
        theta.update({n: self.lowered.fixed[n] for n in ssm.form.params if n in self.lowered.fixed})
        r.update(self._process.check_discretisation(self.written, ssm, theta,
                                                    self.lowered.data_arrays, self.times))
        return r


# ============================================================================ the pass
def _improper(graph: ModelGraph):
    priors = {s.target for s in graph.statements() if s.kind == "prior"}
    for v in graph.variables("param"):
        if v.name not in priors:
            return v
    return None


class SMCPass(InferencePass):
    name = "smc"
    contract = "unbiased-evidence"
    summary = ("particle filters for state-space models (Kalman when linear-Gaussian), particle "
               "Gibbs for their static parameters, tempered SMC for static models")

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        if has_process(graph.ir):
            # a linear SDE read at data times is exactly a Gaussian state-space model on them
            try:
                lp = linear_process(graph.ir)
                d = self._diagnose(ModelGraph(discretise_linear(graph.ir)))
            except NotLinearProcess as e:
                return Diagnosis(False, "smc runs a process as an exact state-space model on its "
                                 f"read times only when the SDE is linear: {e.reason}", e.span)
            if not d:
                return d
            name = lp.draw.target.name
            return Diagnosis(True, f'process "{name}" (linear drift, constant diffusion, Brownian '
                             f"noise) read at {lp.times.name}[i]: exact Gaussian steps between "
                             f"the read times; {d.reason}")
        return self._diagnose(graph)

    def _diagnose(self, graph: ModelGraph) -> Diagnosis:
        v = _improper(graph)
        if v is not None:
            return Diagnosis(False, f'smc needs a proper prior on every random variable: "{v.name}" '
                             f"(line {v.span.line}) is a param with a flat prior", v.span)
        for v in graph.latents():
            if v.stochastic_size:
                return Diagnosis(False, f'"{v.name}" (line {v.span.line}) has a random size', v.span)
        form, why = find(graph)
        if form is not None:
            return Diagnosis(True, form.describe())
        recurrent = {u for u, _, d in graph.lag_edges() if graph.var(u).kind == "latent"}
        if recurrent:
            return Diagnosis(False, f"not a state-space model smc can filter: {why.reason}", why.span)
        for v in graph.latents():
            if v.discrete:
                return Diagnosis(False, f'tempered SMC needs continuous latents: "{v.name}" '
                                 f"(line {v.span.line}) is discrete", v.span)
        for s in graph.statements():
            if s.kind == "factor" and not s.generated:
                return Diagnosis(False, f"tempered SMC needs a proper prior and a likelihood of `~` "
                                 f"statements: `target +=` on line {s.stmt.span.line}", s.stmt.span)
        if not graph.latents():
            return Diagnosis(False, "the model has no latent variables")
        return Diagnosis(True, "static model with proper priors: adaptive tempered SMC")

    def prefer(self, graph: ModelGraph) -> Optional[str]:
        """Why `auto` should take smc before NUTS, or None. A latent continuous state chain
        couples each state to its neighbours and to the chain's scale: the posterior of
        (trajectory, scale) is a funnel NUTS crosses with divergences (examples/sv.ppl: 130
        divergences, R-hat 1.10), while a particle filter integrates the state step by step.
        Discrete chains are summed out exactly for NUTS (forward algorithm): no funnel."""
        if _improper(graph) is not None:
            return None
        form, _ = find(graph)
        if form is None or form.discrete:
            return None
        return (f"{form.describe()}: a particle filter integrates the latent state step by "
                "step (NUTS would have to cross the funnel between the trajectory and its scale)")

    options = {
        "particles": "particles per filter (1000; particle Gibbs 100, PMMH 500)",
        "resampling": "systematic, stratified or multinomial (systematic)",
        "ess_threshold": "resample when the ESS falls below this fraction of N (0.5)",
        "proposal": "auto, bootstrap or guided (auto)",
        "smoothing": "auto or genealogy: whether to keep trajectories (auto)",
        "paris": "estimate additive functionals of the generated block by PaRIS (true)",
        "paris_draws": "particle Gibbs draws PaRIS runs at (1000)",
        "parameters": "gibbs (particle Gibbs) or pmmh, when static parameters are free (gibbs)",
        "mh_steps": "parameter moves per particle Gibbs sweep (5)",
        "target_accept": "target acceptance of the parameter moves (0.3; PMMH 0.15)",
        "evidence_draws": "parameter draws for the log evidence by importance sampling (200)",
        "evidence_particles": "particles per filter in that estimate (1000)",
        "num_mcmc_steps": "tempered SMC: MH moves per temperature (10)",
        "target_ess": "tempered SMC: ESS fraction kept per temperature step (0.5)",
        "max_steps": "tempered SMC: most temperature steps (200)",
        "dtype": "particle filters: float64 or float32 states and likelihoods (float64; log "
                 "weights and the evidence always in float64)",
        "devices": "devices of this process to spread chains (and particles) over (all)",
        "shard": "particle filters: auto, chains or particles — what the devices split (auto)",
    }

    def rewrite(self, ir: N.ModelIR, options: Dict[str, Any]) -> N.ModelIR:
        if has_process(ir):
            ir = discretise_linear(ir)  # ppl/ir/process.py: exact Gaussian steps
        form, _ = find(ModelGraph(ir))
        return extract_state_space(ir) if form is not None else ir

    def build(self, lowered: LoweredModel, options: Dict[str, Any]):
        if "discretise_process" in lowered.ir.rewrites:
            return ProcessProgram(self, lowered, options)
        return self._build(lowered, options)

    def _build(self, lowered: LoweredModel, options: Dict[str, Any]):
        form = next((s.form for s in lowered.ir.body if isinstance(s, StateSpace)), None)
        opts = dict(options)
        if form is not None:
            free = [n for n in form.params if n not in lowered.fixed_names]
            if not free:
                if form.linear_gaussian and opts.get("proposal", "auto") == "auto":
                    return KalmanProgram(lowered, form, **opts)
                return FilterProgram(lowered, form, **opts)
            if opts.get("parameters", "gibbs") == "pmmh":
                return ParticleMarginalProgram(lowered, form, **opts)
            if opts.get("parameters", "gibbs") != "gibbs":
                raise PPLRuntimeError(f'unknown parameters={opts["parameters"]!r}', None,
                                      'use "gibbs" (particle Gibbs, the default) or "pmmh"')
            return ParticleGibbsProgram(lowered, form, **opts)
        return TemperedProgram(lowered, **opts)

    def validate(self, program, key) -> Dict[str, Any]:
        return program.validate(key)

    def check_data(self, lowered: LoweredModel) -> List[str]:
        if "discretise_process" not in lowered.ir.rewrites:
            return super().check_data(lowered)
        program = self.build(lowered, {"chains": 1, "draws": 10})  # exact Gaussian steps
        res = self.validate(program, rng_key(0))
        return [f'data: ok (process "{program.name}" read at {program.times.size} increasing '
                "times: exact Gaussian steps between them)",
                "validation: the discretised steps against the linear SDE's exact transitions "
                f"(max relative difference {res['discretisation_max_rel_diff']:.2g})"]


# ============================================================================ particle Gibbs
class ParticleGibbsProgram:
    """Free static parameters: conditional SMC with ancestor sampling for the state trajectory,
    alternating with random-walk Metropolis on the parameters (unconstrained; during warm-up
    the step sizes adapt towards acceptance 0.3 and the proposal's shape to the parameters'
    covariance), then an importance-sampling estimate of the log evidence.

    Two parameter moves per sweep when the states are normal draws (x = loc + scale · ε):
    given the trajectory x (centred), and given the standardised noise ε with x rebuilt from
    it (non-centred). Given x alone, a scale parameter such as the volatility of volatility
    is pinned by the trajectory and the chain barely moves; given ε it moves with the whole
    path. Alternating the two is the ancillarity–sufficiency interweaving of Yu & Meng (2011),
    as Kastner & Frühwirth-Schnatter (2014) use for stochastic volatility; each move leaves
    the posterior invariant on its own.

    Log evidence by importance sampling squared (Tran, Scharth, Pitt & Kohn 2014): parameters
    θ_i from a Student-t fitted to the chains' draws, each weighted by a particle filter's
    unbiased likelihood estimate (the Kalman filter's exact one when linear-Gaussian)
    times the prior over the proposal density; the mean weight is unbiased for p(y).
    """
    contract = "target-invariant"

    def __init__(self, lowered: LoweredModel, form: StateSpaceForm, chains=4, draws=1000,
                 warmup=1000, particles=100, mh_steps=5, target_accept=0.3, proposal="auto",
                 evidence_draws=200, evidence_particles=1000, paris=True, paris_draws=1000,
                 log_likelihood="auto", devices=None, **_):
        self.lowered, self.form = lowered, form
        self.ssm = SSMLowering(lowered, form)
        self.additive = AdditiveSmoothing(self.ssm, bool(paris))
        if form.discrete:
            raise PPLRuntimeError("particle Gibbs with free parameters needs continuous states; "
                                  "fix the static parameters (give them with the data)", None)
        self.chains, self.draws, self.warmup = int(chains), int(draws), int(warmup)
        self.n, self.mh_steps, self.target = int(particles), int(mh_steps), float(target_accept)
        self.evidence_draws, self.evidence_particles = int(evidence_draws), int(evidence_particles)
        self.non_centred = self.ssm.location_scale()
        self.theta_idx = lowered.layout.indices(self.ssm.free_params)
        self.state_slots = [lowered.layout.by_name[n] for n in form.state_vars]
        self.model = self.ssm.model(None)
        self.kalman = form.linear_gaussian and proposal == "auto"
        guided = proposal == "guided" or (proposal == "auto" and form.guided)
        self.evidence_model = self.ssm.model("guided" if guided else None)
        self.evidence_method = ("Kalman filter" if self.kalman else
                                f"{'guided' if guided else 'bootstrap'} particle filter")
        # chain c from the key of (seed, c) alone, unbatched, chain c on device c mod D, every
        # chain by one compiled single-device program (ppl/algorithms/devices.py,
        # `chains_on_devices`): its draws are the same on any number of devices or processes
        self.first, self.count, _ = _devices.process_share(self.chains)
        self.devices = _devices.local_devices(devices)
        self.finalize = Finalize(lowered, log_likelihood)
        self._evidence = jax.jit(self._evidence_impl)
        # conditional PaRIS costs about a particle Gibbs sweep: run it at no more than
        # `paris_draws` draws in all, every `paris_every`-th draw of each chain
        self.paris_every = max(1, math.ceil(self.chains * self.draws / max(int(paris_draws), 1)))
        self._paris = jax.jit(self._paris_impl)

    def assemble(self, u_theta, traj):
        u = jnp.zeros(self.lowered.dim).at[self.theta_idx].set(u_theta)
        return self.lowered.layout.pack({n: traj[n] for n in self.form.state_vars}, u)

    def params_at(self, u_theta, data):
        """(step environment, log prior density of the unconstrained parameters)."""
        u = jnp.zeros(self.lowered.dim).at[self.theta_idx].set(u_theta)
        return self.ssm.prepare_unconstrained(u, data)

    def _chain(self, key, data):
        k0, k1, k2 = jax.random.split(key, 3)
        d = self.theta_idx.shape[0]
        # Stan's initialisation, uniform in [-2, 2] on the unconstrained scale: a prior draw
        # can start a chain in a corner (an autoregression coefficient near 1, say) that local
        # moves leave only very slowly
        u_theta = jax.random.uniform(k0, (d,), minval=-2.0, maxval=2.0)
        ref = _pg.csmc(k1, self.model, self.params_at(u_theta, data)[0], None, self.n,
                       False).trajectory
        ref = {n: ref[n] for n in self.form.state_vars}

        def sweep(k, ut, ref):
            new = _pg.csmc(k, self.model, self.params_at(ut, data)[0], ref, self.n, True).trajectory
            _tick(self, ut)  # one sweep of this chain (progress)
            return {n: new[n] for n in self.form.state_vars}

        def log_joint(ut, traj):
            return _pf._clean(self.lowered.log_density(self.assemble(ut, traj), data))

        noise = from_noise = None
        if self.non_centred:
            def noise(traj, ut):
                return self.ssm.noise(traj, self.params_at(ut, data)[0])

            def from_noise(eps, ut):
                return self.ssm.from_noise(eps, self.params_at(ut, data)[0])

        return _pg.parameter_chain(k2, u_theta, ref, sweep, log_joint, self.warmup, self.draws,
                                   self.mh_steps, self.target, self.assemble, noise, from_noise)

    def _paris_impl(self, key, us, data):
        """Conditional PaRIS at each draw (rows of `us`): (draws, m) estimates of E[S | θ, y].
        Batches of 16 vmapped runs (PaRIS resamples at every step, so nothing under vmap turns
        a branch into a select) spread the per-step overhead of small operations."""
        def one(inp):
            u, k = inp
            params, _ = self.params_at(u[self.theta_idx], data)
            ref = {s.name: u[s.offset:s.offset + s.size] for s in self.state_slots}
            return self.additive.estimate(k, params, self.n, ref)

        return jax.lax.map(one, (us, jax.random.split(key, us.shape[0])), batch_size=16)

    def _evidence_impl(self, key, mean, chol, dof, data):
        """log weights p̂(y | θ_i) p(θ_i) / q(θ_i) for θ_i ~ q = multivariate t(mean, chol, dof)."""
        d = mean.shape[0]
        kz, kc, kf = jax.random.split(key, 3)
        m = self.evidence_draws
        z = jax.random.normal(kz, (m, d))
        w = jax.random.chisquare(kc, dof, (m,)) / dof
        u = mean + (z @ chol.T) / jnp.sqrt(w)[:, None]
        maha = jnp.sum(z * z, axis=1) / w  # (u - mean)' Σ^{-1} (u - mean)
        log_q = (jax.scipy.special.gammaln((dof + d) / 2) - jax.scipy.special.gammaln(dof / 2)
                 - 0.5 * d * jnp.log(dof * jnp.pi) - jnp.sum(jnp.log(jnp.diag(chol)))
                 - 0.5 * (dof + d) * jnp.log1p(maha / dof))

        def one(inp):
            ut, k = inp
            params, log_prior = self.params_at(ut, data)
            if self.kalman:
                _, log_lik = self.ssm.kalman_filter(params)
            else:
                log_lik = _pf.run(k, self.evidence_model, params, self.evidence_particles,
                                  resampling="systematic").log_evidence
            return _pf._clean(log_lik + log_prior)

        # one filter at a time (lax.map): vmapped, the filters' resampling cond would become
        # a select that resamples at every step
        return jax.lax.map(one, (u, jax.random.split(kf, m))) - log_q

    def evidence(self, seed, u_theta_draws, data_arrays):
        """(log evidence, its standard error) from the parameter draws (rows, unconstrained)."""
        x = np.asarray(u_theta_draws, dtype=float).reshape(-1, self.theta_idx.shape[0])
        x = x[np.all(np.isfinite(x), axis=1)]
        if self.evidence_draws < 2 or x.shape[0] < 2 * x.shape[1] + 2:
            return float("nan"), float("nan")
        cov = np.atleast_2d(np.cov(x, rowvar=False))
        # a little wider than the posterior, and never singular: the proposal's tails must
        # cover the posterior's for the weights to have finite variance
        cov = 1.5 * cov + 1e-8 * np.eye(cov.shape[0]) * max(1.0, float(np.max(np.diag(cov))))
        chol = np.linalg.cholesky(cov)
        log_w = np.asarray(self._evidence(split_keys(rng_key(seed), 2)[1], x.mean(0), chol,
                                          5.0, data_arrays))
        return evidence_estimate(log_w)

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        pmmh = isinstance(self, ParticleMarginalProgram)
        keys = chain_keys(seed, self.chains, "run")[self.first:self.first + self.count]
        us, acc = _run_chains_reporting(
            self, self._chain, keys, data_arrays, self.devices, progress,
            self.chains * (self.warmup + self.draws + (1 if pmmh else 0)),
            phase="PMMH" if pmmh else "particle Gibbs", unit="iterations (all chains)",
            chains=self.chains)
        us, acc = _devices.gather_chains(jax.device_get((us, acc)), self.chains)
        _phase(progress, "generated quantities and log-likelihood")
        flat = np.asarray(us).reshape(-1, self.lowered.dim)
        shape = (self.chains, self.draws)
        posterior, predictive = self.finalize(flat, self.chains, self.draws, data_arrays, seed)
        log_lik, notes = self.finalize.log_likelihood(flat, self.chains, self.draws, data_arrays)
        stats = {"acceptance_rate": np.asarray(acc)}
        moves = "random-walk MH (centred and non-centred)" if self.non_centred else "random-walk MH"
        attrs = {"inference_method": "smc", "particles": self.n, "markov_chain": 1,
                 "smc_algorithm": f"particle Gibbs (conditional SMC with ancestor sampling) + {moves}"}
        if notes:
            attrs["log_likelihood_omitted"] = "; ".join(notes)
        _phase(progress, "log evidence (importance sampling over the parameters)")
        est, se = self.evidence(seed, flat[:, self.theta_idx], data_arrays)
        if np.isfinite(est):
            attrs.update(log_evidence=est, log_evidence_se=se,
                         log_evidence_method=f"importance sampling over the parameters, "
                         f"{self.evidence_draws} draws, {self.evidence_method}")
        k_paris = split_keys(rng_key(seed), 4)[3]
        if self.additive:
            _phase(progress, "smoothed functionals (conditional PaRIS)")
            every = self.paris_every
            picked = np.asarray(us)[:, ::every].reshape(-1, self.lowered.dim)
            v = np.asarray(self._paris(k_paris, jnp.asarray(picked), data_arrays))
            v = v.reshape((self.chains, -1) + v.shape[1:])  # (chains, picked draws, m)
            ses = []
            for i, n in enumerate(self.additive.names):
                full = np.full(shape, np.nan)  # NaN at the draws PaRIS skipped
                full[:, ::every] = v[..., i]
                stats[f"{n}_paris"] = full
                ses.append(_mcse(v[..., i]))
            where = "each particle Gibbs draw" if every == 1 else \
                f"one particle Gibbs draw in {every}"
            attrs.update(self.additive.attrs(v.mean((0, 1)), np.asarray(ses),
                                              f"conditional PaRIS ({self.n} particles) at {where}"))
        d = Draws(posterior, stats, predictive, attrs=attrs, log_likelihood=log_lik)
        if not np.isfinite(est) and self.evidence_draws >= 2:
            d.warnings.append("log evidence not estimated: too few finite parameter draws")
        return d

    def validate(self, key):
        r = validate_ssm(self.ssm, key, self.lowered)
        if self.non_centred:
            r.update(self._validate_noise(key))
        r.update(self.additive.validate(key, self.lowered))
        return r

    def _validate_noise(self, key, rtol=1e-8):
        """from_noise inverts noise, and log p(x | θ) = Σ log φ(ε) − Σ log scale."""
        def check(k):
            vals = self.lowered.prior_sample(k, self.lowered.data_arrays)
            u = self.lowered.unconstrain(vals, self.lowered.data_arrays)
            params, _ = self.params_at(u[self.theta_idx], self.lowered.data_arrays)
            traj = {n: jnp.asarray(vals[n], jnp.result_type(float)) for n in self.form.state_vars}
            eps = self.ssm.noise(traj, params)
            back, log_scale = self.ssm.from_noise(eps, params)
            m = self.model
            lp = m.init_logpdf({n: traj[n][0] for n in traj}, params) + jnp.sum(jax.vmap(
                lambda kk: m.transition_logpdf({n: traj[n][kk] for n in traj},
                                               {n: traj[n][kk - 1] for n in traj}, kk, params))(
                jnp.arange(1, self.ssm.T)))
            z = jnp.concatenate([eps[0], jnp.ravel(eps[1])])
            lp_noise = jnp.sum(-0.5 * z * z) - z.size * 0.5 * math.log(2 * math.pi) - log_scale
            err = max(float(jnp.max(jnp.abs(back[n] - traj[n]))) for n in traj)
            return err, float(lp), float(lp_noise)

        err, lp, lp_noise = check(split_keys(key, 1)[0])
        scale = max(1.0, abs(lp))
        if not (err <= rtol * 1e3 and abs(lp - lp_noise) <= rtol * scale):
            raise PPLInternalError("smc translation validation failed: the non-centred "
                                   f"coordinates do not reproduce the states (max error {err:.3g}, "
                                   f"log density {lp:.6g} vs {lp_noise:.6g})")
        return {"non_centred_checked": True}


class ParticleMarginalProgram(ParticleGibbsProgram):
    """Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein 2010): random-walk
    moves on the unconstrained parameters accepted on a particle filter's unbiased likelihood
    estimate, so the parameters never wait for the trajectory (no θ–x coupling); each
    accepted filter also supplies a trajectory drawn from its genealogy. Slower per iteration
    than particle Gibbs, and it needs enough particles for the log-likelihood estimate's
    spread to stay near 1 (`particles=`; the guided proposal helps).
    Step size adapts during warm-up towards acceptance 0.15."""

    def __init__(self, lowered: LoweredModel, form: StateSpaceForm, target_accept=0.15,
                 proposal="auto", particles=500, **opts):
        super().__init__(lowered, form, target_accept=target_accept, proposal=proposal,
                         particles=particles, **opts)
        self.filter_model = self.evidence_model  # guided when the model allows it

    def _chain(self, key, data):
        k0, k1 = jax.random.split(key)
        d = self.theta_idx.shape[0]

        def estimate(k, ut):
            params, log_prior = self.params_at(ut, data)
            kf, kt = jax.random.split(k)
            res = _pf.run(kf, self.filter_model, params, self.n, record="genealogy")
            traj = _pf.sample_trajectory(kt, res)
            _tick(self, ut)  # one iteration of this chain (progress)
            return _pf._clean(res.log_evidence + log_prior), {n: traj[n] for n in self.form.state_vars}

        u_theta = jax.random.uniform(k0, (d,), minval=-2.0, maxval=2.0)  # Stan's initialisation
        return _pg.pmmh_chain(k1, u_theta, estimate, self.warmup, self.draws, self.target,
                              self.assemble)

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        d = super().run(data_arrays, seed, progress)
        d.attrs["smc_algorithm"] = (f"particle marginal Metropolis-Hastings ({self.evidence_method}, "
                                    "random-walk proposals)")
        return d


def _run_reporting(program, fn, args, progress, total, **info):
    """fn(*args) compiled ahead of time (once per program: its data shapes are fixed), so the
    report says when compiling ends; then run and waited for, so the report ends when the work
    does. Its steps `tick` only in the variant compiled for a live bar (`progress.live`): JAX
    does not keep executables with host callbacks in the persistent compilation cache, so
    runs without a bar (pipes, scripts, tests) keep the cached, callback-free program and report
    their stages and a heartbeat instead."""
    live = bool(progress is not None and getattr(progress, "live", False))
    cache = program.__dict__.setdefault("_compiled_calls", {})
    compiled = cache.get((fn, live))
    if compiled is None:
        def traced(*a):
            program._ticking = live
            try:
                return fn(*a)
            finally:
                program._ticking = False
        compiled = cache[(fn, live)] = jax.jit(traced).lower(*args).compile()
    if not live:  # no count to show: say what runs, and how much of it
        info = dict(phase=f"{info['phase']}, {total} {info.get('unit', 'steps')}")
        total = 0
    with reporting(progress, total, **info):
        return jax.block_until_ready(compiled(*args))


def _run_chains_reporting(program, fn, keys, shared, devices, progress, total, **info):
    """`fn(key, shared)` for each chain's key, chain c on device c mod D by one compiled
    single-device program (`devices.chains_on_devices`: the draws do not depend on the
    devices), reported as `_run_reporting` reports; the executables are kept per variant."""
    live = bool(progress is not None and getattr(progress, "live", False))
    cache = program.__dict__.setdefault("_chain_programs", {})
    traced = cache.get(("fn", fn, live))
    if traced is None:
        def traced(k, s):
            program._ticking = live
            try:
                return fn(k, s)
            finally:
                program._ticking = False
        cache[("fn", fn, live)] = traced
    if not live:  # no count to show: say what runs, and how much of it
        info = dict(phase=f"{info['phase']}, {total} {info.get('unit', 'steps')}")
        total = 0
    with reporting(progress, total, **info):
        return _devices.chains_on_devices(traced, keys, shared, devices,
                                          cache.setdefault(("exes", live), {}))


def _tick(program, x):
    """One step done, in the variant that reports steps (see `_run_reporting`)."""
    if getattr(program, "_ticking", False):
        tick(x)


def _phase(progress, phase):
    """The run moves on to `phase` (after its main loop): the report says so."""
    if progress is not None:
        progress(0, 0, phase=phase)


def _mcse(x):
    """Monte Carlo standard error of the mean of chains (chains, draws), from arviz's ESS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az  # noqa: PLC0415 (imported in the background by the API)
    x = np.asarray(x, dtype=float)
    if x.shape[1] < 4 or not np.all(np.isfinite(x)):
        return float("nan")
    ess = float(az.ess(x, method="mean"))
    return float(np.std(x, ddof=1) / math.sqrt(max(ess, 1.0)))


# ============================================================================ tempered SMC
class TemperedProgram:
    """Adaptive tempered SMC from the prior to the posterior (static models, proper priors)."""
    contract = "unbiased-evidence"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, particles=None,
                 num_mcmc_steps=10, target_ess=0.5, resampling="systematic", max_steps=200,
                 log_likelihood="auto", **_):
        self.lowered = lowered
        self.chains = int(chains)
        self.n = int(particles or draws or 1000)
        self.draws = self.n
        self.mcmc, self.target_ess, self.resampling = int(num_mcmc_steps), float(target_ess), resampling
        self.max_steps = int(max_steps)
        self._run = self._run_impl  # compiled by _run_reporting
        self.finalize = Finalize(lowered, log_likelihood)

    def log_prior(self, u, data):
        return self.lowered.log_prior(u, data)

    def log_likelihood(self, u, data):
        return self.lowered.log_likelihood(u, data)

    def prior_sample(self, key, data):
        vals = self.lowered.prior_sample(key, data)
        return self.lowered.unconstrain(vals, data)

    def _run_impl(self, key, data):
        def one(k):
            return _tsmc.run(k, lambda u: self.log_prior(u, data),
                             lambda u: self.log_likelihood(u, data),
                             lambda kk: self.prior_sample(kk, data), self.n,
                             target_ess=self.target_ess, num_mcmc_steps=self.mcmc,
                             max_steps=self.max_steps, resampling=self.resampling)
        return jax.vmap(one)(jax.random.split(key, self.chains))

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        res = _run_reporting(self, self._run, (rng_key(seed), data_arrays), progress, self.chains,
                             phase=f"tempered SMC ({self.n} particles)", unit="populations",
                             chains=self.chains)
        _phase(progress, "generated quantities and log-likelihood")
        log_z = np.asarray(res.log_evidence)
        if not np.all(np.isfinite(log_z)):
            raise PPLRuntimeError(f"tempered SMC did not reach the posterior within {self.max_steps} "
                                  "temperature steps (or the likelihood is zero for every particle)",
                                  None, "raise max_steps or the number of particles")
        flat = np.asarray(res.particles).reshape(-1, self.lowered.dim)
        posterior, predictive = self.finalize(flat, self.chains, self.n, data_arrays, seed)
        log_lik, notes = self.finalize.log_likelihood(flat, self.chains, self.n, data_arrays)
        est, se = evidence_estimate(log_z)
        stats = {"log_evidence": log_z[:, None],
                 "num_temperatures": np.asarray(res.num_steps)[:, None]}
        # the particles of a population are not Markov chains: R-hat and ESS do not apply
        attrs = {"inference_method": "smc", "smc_algorithm": "adaptive tempered SMC",
                 "particles": self.n, "log_evidence": est, "markov_chain": 0}
        if np.isfinite(se):
            attrs["log_evidence_se"] = se
        if notes:
            attrs["log_likelihood_omitted"] = "; ".join(notes)
        return Draws(posterior, stats, predictive, attrs=attrs, log_likelihood=log_lik)

    def validate(self, key):
        """log prior + log likelihood = the lowered density, and the prior sampler lands where
        the prior density is finite."""
        f = jax.jit(lambda k, d: (self.prior_sample(k, d),))
        g = jax.jit(lambda u, d: (self.log_prior(u, d), self.log_likelihood(u, d),
                                  self.lowered.log_density(u, d)))
        for k in split_keys(key, 2):
            (u,) = f(k, self.lowered.data_arrays)
            lp, ll, full = (float(v) for v in g(u, self.lowered.data_arrays))
            if not np.isfinite(lp):
                raise PPLInternalError("smc translation validation failed: a prior draw has "
                                       f"log prior density {lp}")
        return {"checked": True, "points": 2}

