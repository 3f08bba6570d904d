"""Continuous-time processes in the interpreter, and a model with one process as a latent-SDE
problem (`ppl.algorithms.latent_sde.LatentSDEProblem`) for the vsde pass.

In the interpreter a process is a value that can be read at a time, `x(t)`:
- `PathStub` where no path is given (shape discovery, data checks): reads are NaN of the right
  shape, so a run that does not use the path's values (the layout of the static latents) goes
  through;
- `PathValue` in the vsde pass's likelihood: the path at the observation times, read at the
  nearest of them (the times are the data's, so the nearest is the one).

`ProcessModel(lowered)` reads the rest off the IR: drift and diffusion as functions of
(t, x, θ) evaluated by the interpreter, the initial law, the noise, the static latents with
their priors, the observation times (evaluated from the data, checked to lie in the horizon)
and the log-likelihood of the observed sites given the path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms import latent_sde as L
from ..algorithms import linear_sde as LS
from ..ir import nodes as N
from ..syntax.errors import PPLDataError, PPLInternalError
from ..syntax.visit import walk
from .handlers import Block, Seed, Simulate, Substitute
from .interpreter import Interpreter, static_int
from .model import LoweredModel, _likelihood_site, reported


# ------------------------------------------------------------------ values of a process
class PathStub:
    """A process with no path given: reads are NaN of the right shape (only shapes are used;
    a value computed from it by mistake shows as NaN, not as a plausible number)."""

    def __init__(self, shape: Tuple[int, ...]):
        self.shape = tuple(shape)

    def at(self, t):
        return jnp.full(jnp.shape(t) + self.shape, jnp.nan)


class PathValue:
    """The path at `times` (n,): `values` (n, *shape); read at the nearest time."""

    def __init__(self, times, values):
        self.times = jnp.asarray(times)
        self.values = values

    def at(self, t):
        t = jnp.asarray(t)
        idx = jnp.argmin(jnp.abs(t[..., None] - self.times), axis=-1)
        return self.values[idx]


def process_shape(interp: Interpreter, sde: N.SDE) -> Tuple[int, ...]:
    if sde.dim is None:
        return ()
    return (static_int(interp.expr(sde.dim), sde.dim.span, "the dimension of a process",
                       interp.ir.source, interp.ir.filename),)


def _run_process(interp: Interpreter, s: N.ProcessDraw):
    if s.target.name not in interp.env:
        interp.env[s.target.name] = PathStub(process_shape(interp, s.dist))


def _path_at(interp: Interpreter, e: N.PathAt):
    path = interp.env.get(e.path.name)
    if path is None:  # pragma: no cover - the checker orders declarations before reads
        raise interp.err(f'"{e.path.name}" has no value here', e.span)
    return path.at(interp.expr(e.time))


Interpreter.executors[N.ProcessDraw] = _run_process
Interpreter.expr_executors[N.PathAt] = _path_at


# ------------------------------------------------------------------ the problem
@dataclass
class StaticLatent:
    name: str
    stmt: N.Draw
    prior: Any
    support: Any
    shape: Tuple[int, ...]


class ProcessModel:
    """One process, static latents with priors from the data, observations of the path."""

    def __init__(self, lowered):
        self.lowered = lowered
        ir = self.ir = lowered.ir
        self.data_arrays = lowered.data_arrays
        self.env0 = lowered.base_env(lowered.data_arrays)
        draws = [s for s in ir.body if isinstance(s, N.ProcessDraw)]
        if len(draws) != 1:  # the pass's diagnosis says so first
            raise self._err("the vsde pass runs models with exactly one process",
                            draws[1].span if draws else None)
        self.stmt = draws[0]
        self.sde: N.SDE = self.stmt.dist
        self.name = self.stmt.target.name
        it = Interpreter(ir, dict(self.env0))
        self.shape = process_shape(it, self.sde)
        self.d = self.shape[0] if self.shape else 1
        self.start = float(it.expr(self.sde.start))
        self.end = float(it.expr(self.sde.end))
        if not self.end > self.start:
            raise self._err(f'the horizon of "{self.name}" is empty: it ends at {self.end:g}, not '
                            f"after its start {self.start:g}", self.sde.end.span,
                            "the end of the horizon must be later than its start")
        self.statics = self._static_latents()
        self.lets = [s for s in ir.body if isinstance(s, N.Let) and s.role == "deterministic"
                     and not any(isinstance(x, N.PathAt) for x in walk(s.value))]
        self.obs_times, self.context = self._observation_times()
        self._check_diffusion()

    def _err(self, msg, span, hint=None):
        return PPLDataError(msg, span, hint, self.ir.source, self.ir.filename)

    # ---------------------------------------------------------------- static latents
    def _static_latents(self) -> List[StaticLatent]:
        out = []
        it = Interpreter(self.ir, dict(self.env0))
        for s in self.ir.body:
            if type(s) is not N.Draw or s.role != "latent" or s.target.indices:
                continue
            name = s.target.name
            for x in walk(s.dist):
                if isinstance(x, (N.Ref,)) and x.role in ("latent", "deterministic", "process"):
                    raise self._err(f'the prior of "{name}" depends on "{x.name}": the vsde pass '
                                    "needs priors of static variables from numbers and data",
                                    x.span, "give it a prior with fixed arguments")
            v = self.ir.variables[name]
            shape, _, _ = it.shape_of(v.type) if v.type is not None else (None, None, None)
            d = it.build_dist(s.dist, value_shape=shape)
            if shape is None:
                shape = tuple(d.batch_shape) + tuple(d.event_shape)
            support = it.type_support(v.type, shape, d)
            if shape and tuple(d.batch_shape) + tuple(d.event_shape) != tuple(shape):
                d = d.expand(tuple(shape)[:len(shape) - len(d.event_shape)])
            out.append(StaticLatent(name, s, d, support, tuple(shape)))
        return out

    def static_env(self, theta: Dict[str, Any]) -> Dict[str, Any]:
        """Data, static latents and the top-level deterministic values computed from them."""
        env = dict(self.env0)
        env.update(theta)
        if self.lets:
            it = Interpreter(self.ir, env)
            it.run(self.lets)
            env = it.env
        return env

    # ---------------------------------------------------------------- dynamics
    def _state_env(self, t, x, theta):
        env = self.static_env(theta)
        env[self.name] = x if self.shape else x[0]
        env["time"] = t + self.start
        return env

    def drift(self, t, x, theta):
        v = Interpreter(self.ir, self._state_env(t, x, theta)).expr(self.sde.drift)
        return jnp.broadcast_to(jnp.asarray(v, dtype=jnp.result_type(float)), (self.d,))

    def _diffusion_raw(self, t, x, theta):
        return jnp.asarray(Interpreter(self.ir, self._state_env(t, x, theta)).expr(self.sde.diffusion),
                           dtype=jnp.result_type(float))

    def _check_diffusion(self):
        theta = {s.name: jax.ShapeDtypeStruct(s.shape, jnp.result_type(float)) for s in self.statics}
        out = jax.eval_shape(lambda th: self._diffusion_raw(0.0, jnp.zeros(self.d), th), theta)
        self.diagonal = len(out.shape) < 2
        self.noise_dim = self.d if self.diagonal else int(out.shape[-1])
        if not self.diagonal and out.shape[0] != self.d:
            raise self._err(f'the diffusion of "{self.name}" is {out.shape[0]}×{out.shape[1]}; a '
                            f"matrix diffusion has one row per coordinate ({self.d})",
                            self.sde.diffusion.span)
        refs = {x.name for x in walk(self.sde.diffusion) if isinstance(x, N.Ref)}
        if not refs & ({self.name, "time"} | {s.name for s in self.statics} |
                       {s.target.name for s in self.lets}):
            # a constant diffusion: positive (diagonal) where the data say so
            v = np.asarray(self._diffusion_raw(0.0, jnp.zeros(self.d), {}))
            if self.diagonal and not np.all(v > 0):
                raise self._err(f'the diffusion of "{self.name}" is {_fmt(v)} with these data; it '
                                "must be positive", self.sde.diffusion.span,
                                "a zero diffusion is an ODE and a negative one the same process as "
                                "its absolute value: give a positive scale in the data")

    def diffusion(self, t, x, theta):
        v = self._diffusion_raw(t, x, theta)
        return jnp.broadcast_to(v, (self.d,)) if self.diagonal else v

    def init(self):
        e = self.sde.init
        if isinstance(e, N.Dist) and e.name == "normal":
            mean, sd = e.args

            def value(a):
                return lambda th: jnp.broadcast_to(
                    Interpreter(self.ir, self.static_env(th)).expr(a), (self.d,))
            return L.GaussianInit(value(mean), value(sd))
        if isinstance(e, N.Dist):
            raise self._err(f"the initial law of a process is normal(mean, sd) or a value, not "
                            f"{e.name}(…)", e.span, "e.g. init = normal(0, 1), or init = 0")
        return L.PointInit(lambda th: jnp.broadcast_to(
            Interpreter(self.ir, self.static_env(th)).expr(e), (self.d,)))

    def noise(self):
        n = self.sde.noise
        if n.kind == "brownian":
            return L.BrownianNoise()
        it = Interpreter(self.ir, dict(self.env0))
        h = n.hurst
        if isinstance(h, N.Ref) and h.name in {s.name for s in self.statics}:
            hurst = h.name
        else:
            if any(isinstance(x, N.Ref) and x.role in ("latent", "deterministic") for x in walk(h)):
                raise self._err("the Hurst index is a number, data or a random variable with a "
                                "prior, not an expression of random variables", h.span,
                                "write fbm(H) with H ~ beta(…) declared at the top level")
            hurst = float(it.expr(h))
            if not 0.0 < hurst < 1.0:
                raise self._err(f"the Hurst index must lie in (0, 1); it is {hurst:g} with these "
                                "data", h.span, "H = 0.5 is Brownian motion")
        kw = {}
        for k, e in n.settings:
            v = it.expr(e)
            if k == "K":
                kw["K"] = int(v)
            elif k == "gamma_max":
                kw["gamma_max"] = float(v)
            elif k == "type":
                kw["kind"] = {1: "I", 2: "II"}[int(v)]
            elif k == "T":
                kw["T_omega"] = float(v)
            elif k == "normalize":
                kw["normalize"] = bool(v)
        return L.MAFBMNoise(hurst=hurst, **kw)

    # ---------------------------------------------------------------- observations
    def _observation_times(self):
        """Every time at which the program reads the path (evaluated from the data, loop by
        loop), sorted and unique; and per time the observed value read there (the network's
        context), 0 where none."""
        found: Dict[float, Optional[float]] = {}
        base = dict(self.env0)

        def visit(body, loops):
            for s in body:
                if isinstance(s, N.Loop):
                    it = Interpreter(self.ir, dict(base, **dict(loops)))
                    lo, hi = it.loop_bounds(s)
                    for v in range(lo, hi + 1):
                        visit(s.body, loops + ((s.var, v),))
                elif isinstance(s, N.Branch):
                    visit(s.then, loops)
                    visit(s.orelse, loops)
                elif isinstance(s, N.Generated):
                    continue
                elif isinstance(s, N.ProcessDraw):
                    continue
                else:
                    reads = [x for x in walk(s) if isinstance(x, N.PathAt)]
                    if not reads:
                        continue
                    it = Interpreter(self.ir, dict(base, **dict(loops)))
                    obs = None
                    if isinstance(s, N.Draw) and s.role == "observed":
                        try:
                            obs = float(np.mean(np.asarray(it.read_lvalue(s.target))))
                        except Exception:  # noqa: BLE001 - a context is optional
                            obs = None
                    for r in reads:
                        try:
                            t = np.asarray(it.expr(r.time), dtype=np.float64)
                        except PPLDataError:
                            raise
                        except Exception as exc:  # noqa: BLE001
                            raise self._err(f"cannot evaluate the time at which \"{self.name}\" is "
                                            f"read from the data: {exc}", r.time.span,
                                            "write the time as data, e.g. x(t[i])") from None
                        for tv in np.ravel(t):
                            self._check_time(float(tv), r, loops)
                            if float(tv) not in found or found[float(tv)] is None:
                                found[float(tv)] = obs

        visit(self.ir.body, ())
        if not found:
            raise self._err(f'the model never reads "{self.name}": observe it at data times, e.g. '
                            f"y[i] ~ normal({self.name}(t[i]), sd)", self.stmt.span)
        times = np.array(sorted(found))
        ctx = np.array([0.0 if found[t] is None else found[t] for t in times])[:, None]
        return times, ctx

    def _check_time(self, t, r: N.PathAt, loops):
        where = "".join(f" at {k} = {v}" for k, v in loops)
        if not np.isfinite(t) or t < self.start or t > self.end:
            raise self._err(f'"{self.name}" is read at time {t:g}{where}, outside its horizon '
                            f"[{self.start:g}, {self.end:g}]", r.time.span,
                            "observation times lie within the process's horizon: check the data "
                            "or the horizon's end")
        if t == self.start:
            raise self._err(f'"{self.name}" is read at time {t:g}{where}, the start of its '
                            "horizon: the vsde pass observes paths after their start", r.time.span,
                            "observe the initial value through the init law instead, or start "
                            "the horizon earlier (process<start=…>)")

    def log_likelihood(self, xs, theta):
        """Σ log p(observed | path at the observation times, θ), `xs` (n, d)."""
        values = xs if self.shape else xs[:, 0]
        env = dict(self.env0)
        env[self.name] = PathValue(self.obs_times, values)
        it = self.lowered.run([Substitute(theta), Block(lambda s: not _likelihood_site(s))],
                              self.data_arrays, env=env)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    # ---------------------------------------------------------------- the problem
    def problem(self, estimate: str = "variational"):
        params = tuple(L.StaticParam(s.name, prior=s.prior, estimate=estimate, support=s.support,
                                     shape=s.shape) for s in self.statics)
        return L.LatentSDEProblem(
            state_dim=self.d, drift=self.drift, diffusion=self.diffusion, x0=self.init(),
            obs_times=self.obs_times - self.start, log_likelihood=self.log_likelihood,
            t_end=self.end - self.start, noise_dim=self.noise_dim, diagonal=self.diagonal,
            noise=self.noise(), params=params, context=self.context)


def _fmt(v) -> str:
    v = np.asarray(v)
    return f"{float(v):g}" if v.ndim == 0 or v.size == 1 else np.array2string(v, precision=4)


# ------------------------------------------------------------------ exact discretisation
def read_times(lowered, lp, data_arrays=None) -> np.ndarray:
    """The times t[1..N] at which a linear process is read (`ppl.ir.process.linear_process`),
    from the data: strictly increasing, after the horizon's start and not after its end (the
    exact state-space form steps forward from the start through them), else a located
    PPLDataError."""
    ir = lowered.source_ir
    env = lowered.base_env(lowered.data_arrays if data_arrays is None else data_arrays)
    it = Interpreter(ir, env)
    sde = lp.draw.dist
    name = lp.draw.target.name
    n = static_int(it.expr(lp.size), lp.size.span, "the number of reads", ir.source, ir.filename)
    start, end = float(it.expr(sde.start)), float(it.expr(sde.end))
    t = np.asarray(it.expr(lp.times), dtype=np.float64).ravel()
    span = lp.reads[0].time.span

    def err(msg, hint):
        return PPLDataError(msg, span, hint, ir.source, ir.filename)

    if t.size < n:
        raise err(f'"{name}" is read at {lp.times.name}[1..{n}], but {lp.times.name} has {t.size} '
                  "values", "the loop over the reads runs past the data")
    t = t[:n]
    tn = lp.times.name
    bad = np.flatnonzero(~np.isfinite(t) | (t > end))
    if bad.size:
        k = int(bad[0])
        raise err(f'"{name}" is read at time {t[k]:g} at {tn}[{k + 1}], outside its horizon '
                  f"[{start:g}, {end:g}]", "observation times lie within the process's horizon")
    if not t[0] > start:
        raise err(f'"{name}" is read at time {t[0]:g} at {tn}[1], not after the start of its '
                  f"horizon ({start:g})", "observe the initial value through the init law, or "
                  "start the horizon earlier (process<start=…>)")
    back = np.flatnonzero(np.diff(t) <= 0)
    if back.size:
        k = int(back[0]) + 1
        raise err(f'"{name}" is read at {tn}[{k + 1}] = {t[k]:g}, not after {tn}[{k}] = '
                  f"{t[k - 1]:g}: the exact discretisation steps forward through increasing times",
                  "sort the observations by time (merge repeated times into one read)")
    return t


def check_discretisation(pm: "ProcessModel", ssm, theta, data_arrays, times, rtol=1e-8) -> dict:
    """Translation validation of the exact discretisation: the Gaussian steps the state-space
    form takes (its own statements, read by the smc lowering) against the transitions of the
    linear SDE computed independently — drift slope and offset by differentiating the drift as
    written, and (Φ, b, Q) by Van Loan's matrix exponential on sub-steps
    (`ppl.algorithms.linear_sde.transitions`) — and the law at the first read against the
    initial law carried forward. Raises PPLInternalError on a mismatch."""
    theta = {k: jnp.asarray(v, jnp.result_type(float)) for k, v in theta.items()}
    x0 = jnp.zeros(1)
    a = float(pm.drift(0.0, x0, theta)[0])
    A = float(jax.jacfwd(lambda x: pm.drift(0.0, x, theta))(x0)[0, 0])
    probe = float(pm.drift(0.0, jnp.full(1, 0.7), theta)[0])
    if abs(probe - (a + 0.7 * A)) > 1e-9 * (1 + abs(probe)):
        raise PPLInternalError(f"smc: the drift of \"{pm.name}\" is not affine at θ = {theta}")
    sigma = float(pm.diffusion(0.0, x0, theta)[0])
    dts = np.diff(np.concatenate([[pm.start], times]))
    tr = LS.transitions(LS.LinearSDE(np.array([[A]]), np.array([a]), np.array([[sigma]])), dts)
    init = pm.init()
    if isinstance(init, L.GaussianInit):
        m0 = float(np.asarray(init.mean(theta))[0])
        v0 = float(np.asarray(init.sd(theta))[0]) ** 2
    else:
        m0, v0 = float(np.asarray(init.value(theta))[0]), 0.0
    Phi, b, Q = (np.asarray(x)[:, 0, ...] for x in tr)
    want_m = np.concatenate([[Phi[0, 0] * m0 + b[0]], b[1:]])
    want_F = np.concatenate([[0.0], Phi[1:, 0]])
    want_v = np.concatenate([[Phi[0, 0] ** 2 * v0 + Q[0, 0]], Q[1:, 0]])

    params, _ = ssm.prepare(theta, data_arrays)
    form = ssm.form
    m1, _, s1, _ = ssm._coefficients(form.init, jnp.int32(1), params, wrt_prev=False)
    coef = jax.vmap(lambda k: ssm._coefficients(form.transition, k, params, wrt_prev=True))(
        jnp.arange(2, ssm.T + 1, dtype=jnp.int32))
    got_m = np.concatenate([np.asarray(m1).ravel(), np.asarray(coef[0]).ravel()])
    got_F = np.concatenate([[0.0], np.asarray(coef[1]).ravel()])
    got_v = np.concatenate([np.asarray(s1).ravel() ** 2, np.asarray(coef[2]).ravel() ** 2])
    worst = 0.0
    for what, got, want in (("mean", got_m, want_m), ("slope", got_F, want_F),
                            ("variance", got_v, want_v)):
        err = np.abs(got - want) / (np.abs(want) + 1e-12)
        worst = max(worst, float(np.max(err)))
        if not np.all(err <= rtol):
            k = int(np.argmax(err))
            raise PPLInternalError(
                f"smc translation validation failed: step {k + 1} of the discretised \"{pm.name}\" "
                f"has {what} {got[k]!r}, the linear SDE's exact transition {want[k]!r}")
    return {"discretisation_checked": True, "discretisation_max_rel_diff": worst,
            "drift_slope": A, "drift_offset": a, "diffusion": sigma}


# ------------------------------------------------------------------ prior draws
PRIOR_DT = 0.01  # the prior path's grid step (the vsde pass's default)


def prior_sampler(lowered, dt: float = PRIOR_DT):
    """`sample(key, data_arrays) -> values` for a model with a process: the static variables
    from their priors, the path from the prior SDE given them (`latent_sde.simulate_prior`, on
    the grid of steps ≤ dt through every read time, so each read x(t) is a grid value), then the
    rest of the program with the path in place: observed data simulated, deterministic values
    computed from it. `values[name]` is the path on the grid (`prior_times(...)` gives the
    times). Without the path, reads are NaN (`PathStub`) and so would be the simulated data."""
    src = lowered
    if not any(isinstance(s, N.ProcessDraw) for s in lowered.ir.body):
        src = LoweredModel(lowered.source_ir, lowered.data)
    pm = ProcessModel(src)
    prob = pm.problem()
    grid = LS.time_grid(pm.end - pm.start, dt, pm.obs_times - pm.start)
    statics = [s.name for s in pm.statics]

    def sample(key, data_arrays):
        k_static, k_path, k_rest = jax.random.split(key, 3)
        first = src.prior_sample(k_static, data_arrays)
        theta = {n: first[n] for n in statics}
        path = L.simulate_prior(prob, k_path, theta, grid)
        env = src.base_env(data_arrays)
        env[pm.name] = PathValue(jnp.asarray(grid + pm.start), path if pm.shape else path[:, 0])
        it = src.run([Substitute(theta), Seed(k_rest), Simulate()], data_arrays, env=env,
                     source=True)
        out = {n: it.env[n] for n, v in src.source_ir.variables.items()
               if v.kind in ("latent", "deterministic") and n in it.env}
        out.update({n: it.env[n] for n in src.observed_names})
        out = reported(out)
        out[pm.name] = path if pm.shape else path[:, 0]
        return out

    sample.times = grid + pm.start
    return sample
