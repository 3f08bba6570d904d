"""A state-space form (ppl/ir/statespace.py) lowered to the functions a particle filter runs.

The per-step functions run the model's own statements through the interpreter: the state
variables are put in the environment as `LagWindow` values, so `x[t]` reads the particle's
current state and `x[t-1]` its previous one — a particle carries one step, never a
trajectory. Static parameters, data and top-level deterministic variables travel as one
environment dict (`params`), computed once per filter run by `SSMLowering.prepare`.

Steps are 0-based in `ppl.algorithms.particle_filter` (k = 0..T-1); the model's index is
t = k + 1.

For linear-Gaussian forms, `kalman_model` reads the coefficients of the Gaussian conditionals
(means affine in the state: value at 0 and Jacobian) so `ppl.algorithms.kalman.filter`
marginalises the state exactly.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpyro.distributions as nd

from ..algorithms import kalman as _kalman
from ..algorithms import particle_filter as _pf
from ..ir import nodes as N
from ..ir.statespace import StateSpace, StateSpaceForm
from ..syntax.errors import PPLInternalError
from .handlers import Substitute, Unconstrain
from .interpreter import Indexable, Interpreter, LoweringError, static_int
from .model import LoweredModel

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_prob(d, value):
    """`d.log_prob(value)`; for a normal written as -z²/2 - log(scale) - log √(2π) (the same
    density as numpyro's -z²/2 - log(√(2π) scale)) so XLA can simplify log(exp(·)) when the
    scale is an exponential, as in stochastic volatility: per particle and step this saves a
    log and an exp."""
    if type(d) is nd.Normal:
        z = (value - d.loc) / d.scale
        return -0.5 * z * z - jnp.log(d.scale) - LOG_SQRT_2PI
    return d.log_prob(value)


class LagWindow(Indexable):
    """A state variable seen from one step: `x[t]` is `cur`, `x[t-1]` is `prev`."""

    def __init__(self, name, cur, prev):
        self.name, self.cur, self.prev = name, cur, prev

    def index(self, interp, e: N.Index):
        i = e.indices[0]
        if isinstance(i, N.Binary) and i.op == "-":
            if self.prev is None:
                raise interp.err(f'"{self.name}" has no previous step here', e.span)
            return self.prev
        return self.cur


class SSMLowering:
    def __init__(self, lowered: LoweredModel, form: Optional[StateSpaceForm] = None):
        self.lowered = lowered
        self.form = form if form is not None else state_space_form(lowered.ir)
        form = self.form
        self.graph = lowered.graph
        ev = self.static_evaluator()
        self.T = static_int(ev.expr(form.T), form.T.span, "the number of time steps")
        if self.T < 2:
            raise LoweringError("a particle filter needs at least 2 time steps", form.T.span)
        for n in form.state_vars:
            v = self.graph.var(n)
            size = static_int(ev.expr(v.type.dims[0]), v.type.span, "a size")
            if size != self.T:
                raise LoweringError(f'"{n}" has {size} elements but the transitions run to {self.T}',
                                    v.span)
        self.obs_ranges = []
        for st in form.observations:
            lo = static_int(ev.expr(st.lo), st.stmt.span, "a loop bound")
            hi = static_int(ev.expr(st.hi), st.stmt.span, "a loop bound")
            if lo < 1 or hi > self.T:
                raise LoweringError(f"the observation loop runs over {lo}:{hi}, outside the "
                                    f"{self.T} time steps", st.stmt.span)
            self.obs_ranges.append((lo, hi))
        self.free_params = tuple(n for n in form.params if n not in lowered.fixed_names)
        self.dtypes = {}
        for n in form.state_vars:
            self.dtypes[n] = jnp.int32 if self.graph.var(n).discrete else jnp.result_type(float)

    # ------------------------------------------------------------ environment
    def static_evaluator(self) -> Interpreter:
        """An interpreter of expressions the data fix (sizes, loop bounds)."""
        return Interpreter(self.lowered.ir, dict(self.lowered.static))

    @functools.cached_property
    def step_names(self) -> frozenset:
        """Names a step's environment holds besides the states: data, the static parameters
        and the top-level values computed from them (not, say, a deterministic built from the
        states)."""
        names = set(self.lowered.static) | set(self.lowered.data_arrays) | set(self.lowered.fixed)
        names |= set(self.form.params)
        for st in self.form.static:
            if isinstance(st, (N.Let, N.Draw)):
                names.add(st.target.name)
            elif isinstance(st, N.Declare):
                names.add(st.name)
        return frozenset(names)

    def prepare(self, theta: Dict[str, Any], data_arrays):
        """(params, static log density): the environment of every step, from the static
        parameter values `theta` (constrained; the fixed ones come from the data)."""
        return self._prepare(Substitute(theta), data_arrays)

    def prepare_unconstrained(self, u, data_arrays):
        """`prepare` from the model's flat unconstrained vector `u` (only the static
        parameters' slots are read). The static log density then includes the transforms'
        log-Jacobians: it is the prior density of the unconstrained parameters."""
        return self._prepare(Unconstrain(self.lowered.layout, u), data_arrays)

    def _prepare(self, values, data_arrays):
        it = self.lowered.run([values], data_arrays, body=self.form.static)
        params = {k: v for k, v in it.env.items() if k not in self.lowered.static}
        return params, it.lp

    def _ev(self, params, windows, t):
        env = dict(self.lowered.static)
        env.update(params)
        env.update(windows)
        return Interpreter(self.lowered.ir, env)

    def _run_state(self, stmts, key, state, prev, t, params, eps=None):
        """Draw (key given) or score (state given) the state statements of one step.

        With `eps` (one standard normal per statement; `_location_scale` statements only) the
        draw is loc + eps * scale, exactly how `Normal.sample(key)` draws from its key, and the
        second result is Σ log scale (the log-Jacobian of eps ↦ state)."""
        cur = {} if state is None else dict(state)
        windows = {n: LagWindow(n, cur.get(n, None if prev is None else prev[n]),
                                None if prev is None else prev[n]) for n in self.form.state_vars}
        ev = self._ev(params, windows, t)
        lp = jnp.zeros(())
        for i, st in enumerate(stmts):
            if st.var is not None:
                ev.env[st.var] = t
            d = ev.build_dist(st.stmt.dist)
            if eps is not None:
                if type(d) is not nd.Normal:
                    raise PPLInternalError(f"batched state draw from a {type(d).__name__}")
                v = d.loc + eps[i] * d.scale
                v = jnp.asarray(v).astype(self.dtypes[st.target]).reshape(())
                lp = lp + jnp.sum(jnp.log(d.scale))
            elif state is None:
                v = d.sample(key if len(stmts) == 1 else jax.random.fold_in(key, i))
                v = jnp.asarray(v).astype(self.dtypes[st.target]).reshape(())
            else:
                v = state[st.target]
                lp = lp + jnp.sum(_log_prob(d, v))
            cur[st.target] = v
            windows[st.target].cur = v
        return cur, lp

    # ------------------------------------------------------------ non-centred coordinates
    def location_scale(self) -> bool:
        """Whether every state statement is a normal draw, x = loc + scale · ε."""
        return self._location_scale(self.form.init) and self._location_scale(self.form.transition)

    def from_noise(self, eps, params):
        """(trajectory with leaves (T,), Σ log scale) built from standard normal draws
        `eps` = (ε_init (len(init),), ε_trans (T-1, len(transition))) under `params`."""
        eps_init, eps_trans = eps
        x0, ls0 = self._run_state(self.form.init, None, None, None, jnp.int32(1), params, eps=eps_init)

        def step(carry, inp):
            prev, ls = carry
            k, e = inp
            x, ls_t = self._run_state(self.form.transition, None, None, prev, k + 1, params, eps=e)
            return (x, ls + ls_t), x

        ks = jnp.arange(1, self.T, dtype=jnp.int32)
        (_, ls), xs = jax.lax.scan(step, (x0, ls0), (ks, eps_trans))
        traj = {n: jnp.concatenate([jnp.reshape(x0[n], (1,)), xs[n]]) for n in self.form.state_vars}
        return traj, ls

    def noise(self, traj, params):
        """The inverse of `from_noise`: the standard normal draws that give `traj`."""
        first = {n: traj[n][0] for n in self.form.state_vars}
        e0 = self._noise(self.form.init, first, None, jnp.int32(1), params)

        def one(k):
            cur = {n: traj[n][k] for n in self.form.state_vars}
            prev = {n: traj[n][k - 1] for n in self.form.state_vars}
            return self._noise(self.form.transition, cur, prev, k + 1, params)

        return e0, jax.vmap(one)(jnp.arange(1, self.T, dtype=jnp.int32))

    def _noise(self, stmts, state, prev, t, params):
        """The standard normal draw (one per statement) that gives a location-scale step's state."""
        windows = {n: LagWindow(n, state[n], None if prev is None else prev[n])
                   for n in self.form.state_vars}
        ev = self._ev(params, windows, t)
        eps = []
        for st in stmts:
            if st.var is not None:
                ev.env[st.var] = t
            d = ev.build_dist(st.stmt.dist)
            if type(d) is not nd.Normal:
                raise PPLInternalError(f"non-centred state from a {type(d).__name__}")
            eps.append(jnp.reshape((state[st.target] - d.loc) / d.scale, ()))
        return jnp.stack(eps)

    def _obs(self, state, t, params, k_step):
        windows = {n: LagWindow(n, state[n], None) for n in self.form.state_vars}
        ev = self._ev(params, windows, t)
        lp = jnp.zeros(())
        for st, (lo, hi) in zip(self.form.observations, self.obs_ranges):
            if st.var is not None:
                ev.env[st.var] = t
            d = ev.build_dist(st.stmt.dist)
            y = ev.read_lvalue(st.stmt.target)
            term = jnp.sum(_log_prob(d, y))
            if not (lo == 1 and hi == self.T):
                term = jnp.where((k_step + 1 >= lo) & (k_step + 1 <= hi), term, 0.0)
            lp = lp + term
        return lp

    # ------------------------------------------------------------ the model for the filter
    def model(self, proposal: Optional[str] = None) -> _pf.StateSpaceModel:
        def t_of(k):
            return jnp.asarray(k, jnp.int32) + 1

        def init_sample(key, params):
            return self._run_state(self.form.init, key, None, None, jnp.int32(1), params)[0]

        def init_logpdf(x, params):
            return self._run_state(self.form.init, None, x, None, jnp.int32(1), params)[1]

        def transition_sample(key, prev, k, params):
            return self._run_state(self.form.transition, key, None, prev, t_of(k), params)[0]

        def transition_logpdf(x, prev, k, params):
            return self._run_state(self.form.transition, None, x, prev, t_of(k), params)[1]

        def observation_logpdf(x, k, params):
            return self._obs(x, t_of(k), params, jnp.asarray(k, jnp.int32))

        def batch(stmts, key, prev, t, params, n):
            # One batch of standard normals for all particles (and statements), then the
            # statements run per particle with their draws: the law of vmapping the
            # per-particle sampler over independent keys, without N keys per step.
            eps = jax.random.normal(key, (n, len(stmts)), dtype=jnp.result_type(float))
            if prev is None:
                return jax.vmap(lambda e: self._run_state(stmts, None, None, None, t, params,
                                                          eps=e)[0])(eps)
            return jax.vmap(lambda e, p: self._run_state(stmts, None, None, p, t, params,
                                                         eps=e)[0])(eps, prev)

        init_sample_batch = transition_sample_batch = noise = from_noise = None
        if self._location_scale(self.form.init):
            def init_sample_batch(key, params, n):
                return batch(self.form.init, key, None, jnp.int32(1), params, n)

        width = len(self.form.transition)
        if self._location_scale(self.form.transition):
            def transition_sample_batch(key, prev, k, params):
                n = jax.tree_util.tree_leaves(prev)[0].shape[0]
                return batch(self.form.transition, key, prev, t_of(k), params, n)

            def noise(key, steps, n):
                # a threefry key derived from the step's key: for blocks of ~10⁵ normals
                # threefry draws about twice as fast as rbg on CPU (rbg compiles faster, which
                # matters for NUTS kernels, not for this one draw site)
                key = jax.random.wrap_key_data(jax.random.key_data(key)[:2], impl="threefry2x32")
                return jax.random.normal(key, (steps, n, width), dtype=jnp.result_type(float))

            def from_noise(eps, prev, k, params):
                t = t_of(k)
                return jax.vmap(lambda e, p: self._run_state(self.form.transition, None, None, p, t,
                                                             params, eps=e)[0])(eps, prev)

        q = self.guided_proposal() if proposal == "guided" else None
        return _pf.StateSpaceModel(self.T, init_sample, init_logpdf, transition_sample,
                                   transition_logpdf, observation_logpdf, q,
                                   init_sample_batch=init_sample_batch,
                                   transition_sample_batch=transition_sample_batch,
                                   transition_noise=noise, transition_from_noise=from_noise,
                                   noise_size=width if noise is not None else 0)

    def _location_scale(self, stmts):
        """Whether every statement draws a continuous state from `normal` / `std_normal`, so
        the particles can share one batch of standard normal draws."""
        return all(st.stmt.dist.name in ("normal", "std_normal")
                   and jnp.issubdtype(self.dtypes[st.target], jnp.floating) for st in stmts)

    # ------------------------------------------------------------ Gaussian coefficients
    def _gauss(self, stmts, vec, prev_vec, t, params, is_obs=False, k_step=None):
        """loc(state), scale for each statement as functions of the state vector."""
        names = self.form.state_vars

        def locs(cur_vec, prev_vec_):
            cur = {n: cur_vec[i] for i, n in enumerate(names)}
            prev = None if prev_vec_ is None else {n: prev_vec_[i] for i, n in enumerate(names)}
            windows = {n: LagWindow(n, cur[n], None if prev is None else prev[n]) for n in names}
            ev = self._ev(params, windows, t)
            out_loc, out_scale, out_y = [], [], []
            for st in stmts:
                if st.var is not None:
                    ev.env[st.var] = t
                loc = ev.expr(st.stmt.dist.args[0])
                scale = ev.expr(st.stmt.dist.args[1])
                out_loc.append(jnp.asarray(loc, jnp.result_type(float)).reshape(()))
                out_scale.append(jnp.asarray(scale, jnp.result_type(float)).reshape(()))
                if is_obs:
                    out_y.append(jnp.asarray(ev.read_lvalue(st.stmt.target),
                                             jnp.result_type(float)).reshape(()))
            return jnp.stack(out_loc), (jnp.stack(out_scale), jnp.stack(out_y) if is_obs else None)

        return locs

    def _coefficients(self, stmts, t, params, wrt_prev, is_obs=False):
        d = len(self.form.state_vars)
        z = jnp.zeros(d)
        f = self._gauss(stmts, None, None, t, params, is_obs)
        if wrt_prev:
            g = lambda p: f(z, p)  # noqa: E731
        else:
            g = lambda c: f(c, None)  # noqa: E731
        (loc0, (scale, y)) = g(z)
        J = jax.jacfwd(lambda v: g(v)[0])(z)
        return loc0, J, scale, y

    def kalman_model(self, params):
        """(LinearGaussianSSM, ys, log-evidence correction) for a linear-Gaussian form."""
        T = self.T
        m0, _, s0, _ = self._coefficients(self.form.init, jnp.int32(1), params, wrt_prev=False)
        P0 = jnp.diag(s0 ** 2)

        def trans(k):
            c, F, s, _ = self._coefficients(self.form.transition, k + 1, params, wrt_prev=True)
            return F, c, jnp.diag(s ** 2)

        def obs(k):
            dd, H, s, y = self._coefficients(self.form.observations, k + 1, params, wrt_prev=False,
                                             is_obs=True)
            active = jnp.stack([(k + 1 >= lo) & (k + 1 <= hi) for lo, hi in self.obs_ranges])
            H = jnp.where(active[:, None], H, 0.0)
            dd = jnp.where(active, dd, 0.0)
            y = jnp.where(active, y, 0.0)
            s = jnp.where(active, s, 1.0)
            return H, dd, jnp.diag(s ** 2), y, active

        ks = jnp.arange(T, dtype=jnp.int32)
        F, c, Q = jax.vmap(trans)(jnp.maximum(ks, 1))
        H, dd, R, ys, active = jax.vmap(obs)(ks)
        inactive = jnp.sum(~active)
        model = _kalman.LinearGaussianSSM(m0, P0, F, Q, H, R, c, dd)
        # an inactive observation is y = 0 ~ N(0, 1): its log density -log sqrt(2π) is removed
        return model, ys, inactive * LOG_SQRT_2PI

    def kalman_filter(self, params):
        model, ys, correction = self.kalman_model(params)
        res = _kalman._filter(model, ys)
        return res, res.log_evidence + correction

    # ------------------------------------------------------------ guided proposal
    def guided_proposal(self) -> _pf.Proposal:
        """Locally optimal proposal: one scalar Gaussian state, linear-Gaussian observations."""
        (name,) = self.form.state_vars
        obs = self.form.observations
        if len(obs) != 1:
            raise LoweringError("the guided proposal needs exactly one observation statement",
                                obs[0].stmt.span)

        def trans_moments(prev, k, params):
            if prev is None:
                loc, _, s, _ = self._coefficients(self.form.init, jnp.int32(1), params, False)
            else:
                p = jnp.reshape(prev[name] if isinstance(prev, dict) else prev, (1,))
                f = self._gauss(self.form.transition, None, None, jnp.asarray(k, jnp.int32) + 1, params)
                loc, (s, _) = f(jnp.zeros(1), p)
            return loc[0], s[0]

        def obs_coefs(k, params):
            dd, H, s, y = self._coefficients(obs, jnp.asarray(k, jnp.int32) + 1, params, False,
                                             is_obs=True)
            lo, hi = self.obs_ranges[0]
            active = (k + 1 >= lo) & (k + 1 <= hi)
            # no observation: y = offset with scale 1/sqrt(2π) has log density exactly 0
            return (jnp.where(active, H[0, 0], 0.0), dd[0],
                    jnp.where(active, s[0], 1.0 / math.sqrt(2 * math.pi)),
                    jnp.where(active, y[0], dd[0]))

        base = _pf.locally_optimal_gaussian_proposal(
            mean=lambda prev, k, p: trans_moments(prev, k, p)[0],
            scale=lambda prev, k, p: trans_moments(prev, k, p)[1],
            obs_coef=lambda prev, k, p: obs_coefs(k, p)[0],
            obs_offset=lambda prev, k, p: obs_coefs(k, p)[1],
            obs_scale=lambda prev, k, p: obs_coefs(k, p)[2],
            obs=lambda prev, k, p: obs_coefs(k, p)[3],
            init_mean=lambda p: trans_moments(None, 0, p)[0],
            init_scale=lambda p: trans_moments(None, 0, p)[1],
        )

        def wrap(fn):
            def f(*a):
                x, lq = fn(*a)
                return {name: x}, lq
            return f

        return _pf.Proposal(
            init=wrap(base.init),
            step=wrap(base.step),
            init_logpdf=lambda x, p: base.init_logpdf(x[name], p),
            step_logpdf=lambda x, prev, k, p: base.step_logpdf(x[name], prev, k, p),
        )

    # ------------------------------------------------------------ trajectories and validation
    def trajectory_log_density(self, traj, params):
        """init + transitions + observations along one trajectory (leaves (T,))."""
        m = self.model()
        x0 = {n: traj[n][0] for n in self.form.state_vars}
        lp = m.init_logpdf(x0, params) + m.observation_logpdf(x0, 0, params)

        def step(acc, k):
            x = {n: traj[n][k] for n in self.form.state_vars}
            prev = {n: traj[n][k - 1] for n in self.form.state_vars}
            return acc + m.transition_logpdf(x, prev, k, params) + \
                m.observation_logpdf(x, k, params), None

        lp, _ = jax.lax.scan(step, lp, jnp.arange(1, self.T, dtype=jnp.int32))
        return lp

    def joint_reference(self, values, data_arrays):
        """The model's joint log density (no Jacobians) at constrained `values`, from the
        program as written."""
        it = self.lowered.run([Substitute(values)], data_arrays, source=True)
        return it.lp


def state_space_form(ir: N.ModelIR) -> StateSpaceForm:
    """The form held by the program's `StateSpace` node (ppl/ir/rewrites.py)."""
    for s in ir.body:
        if isinstance(s, StateSpace):
            return s.form
    raise LoweringError("the program has no state-space part (extract_state_space was not applied)",
                        None)


def _run_state_space(interp: Interpreter, node: StateSpace):
    """Run as a program, the node is the statements it was read from."""
    interp.run(node.form.program)


Interpreter.executors[StateSpace] = _run_state_space
