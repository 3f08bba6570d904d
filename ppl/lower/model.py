"""The model lowered to pure JAX functions of one flat unconstrained vector.

`LoweredModel` is built once per (model, data shapes). Its functions take the data arrays as an
argument (not as baked-in constants), so compiled code is reused across data values and the
persistent compilation cache hits on a second run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

from ..check.data import BoundData
from ..ir.graph import ModelGraph
from ..syntax import ast as A
from ..syntax.errors import PPLDataError
from .evaluator import Evaluator, stmt_key
from .validation import check_agreement


@dataclass(frozen=True)
class LatentSlot:
    name: str
    shape: Tuple[int, ...]  # constrained shape
    unconstrained_shape: Tuple[int, ...]
    offset: int
    size: int
    constraint_name: str


class _Discover:
    """First pass: record every continuous latent's shape and support; values at u = 0."""

    def __init__(self):
        self.slots: List[LatentSlot] = []
        self.offset = 0

    def take(self, name, shape, constraint, ev):
        t = biject_to(constraint)
        ushape = tuple(t.inverse_shape(tuple(shape)))
        size = int(np.prod(ushape)) if ushape else 1
        self.slots.append(LatentSlot(name, tuple(shape), ushape, self.offset, size, _cname(constraint)))
        self.offset += size
        u = jnp.zeros(ushape)
        x = t(u)
        ev.lp = ev.lp + jnp.sum(t.log_abs_det_jacobian(u, x))
        return x


class _FlatSource:
    """Slices the flat vector; adds each transform's log-Jacobian to the density."""

    def __init__(self, u, slots: Dict[str, LatentSlot], jacobian=True):
        self.u, self.slots, self.jacobian = u, slots, jacobian
        self.values: Dict[str, Any] = {}

    def take(self, name, shape, constraint, ev):
        s = self.slots[name]
        u = self.u[s.offset:s.offset + s.size].reshape(s.unconstrained_shape)
        t = biject_to(constraint)
        x = t(u)
        if self.jacobian:
            if ev.mode == "reference":
                import numpyro
                numpyro.factor(f"jacobian:{name}", jnp.sum(t.log_abs_det_jacobian(u, x)))
            else:
                ev.lp = ev.lp + jnp.sum(t.log_abs_det_jacobian(u, x))
        self.values[name] = x
        return x


def _cname(c) -> str:
    return type(c).__name__.lstrip("_").replace("Constraint", "").lower() or "real"


class LoweredModel:
    def __init__(self, graph: ModelGraph, data: BoundData, defer_checks: bool = False):
        """`defer_checks`: the caller runs `check_data()` itself, later (so that compiling the
        checks can overlap with compiling the sampler)."""
        self.graph = graph
        self.data = data
        self.static = dict(data.static)
        self.data_arrays = {k: jnp.asarray(v) for k, v in data.arrays.items()}
        self.fixed = {k: jnp.asarray(v) for k, v in data.fixed.items()}
        self.fixed_names = frozenset(self.fixed)
        self._shared: Dict[str, Any] = {}  # compiled helpers, shared by with_data copies
        self._discover()
        if not defer_checks:
            self.check_data()

    # ------------------------------------------------------------ environment
    def base_env(self, data_arrays) -> Dict[str, Any]:
        env: Dict[str, Any] = dict(self.static)
        env.update(data_arrays)
        env.update(self.fixed)
        return env

    def _discover(self):
        # Traced, not run: the layout is recorded while tracing. The support checks of the
        # observed data are compiled and run by `check_data`.
        src = _Discover()

        def run(data_arrays):
            ev = Evaluator(self.graph, "density", self.base_env(data_arrays), src,
                           fixed=self.fixed_names)
            ev.exec(self.graph.body)
            return ev.checks

        jax.eval_shape(run, self.data_arrays)
        self.slots = src.slots
        self.slot_by_name = {s.name: s for s in self.slots}
        self.dim = src.offset
        names = [s.name for s in self.slots]
        self.latent_names = names
        ck = self.graph.checked
        self.deterministic_names = [n for n, v in ck.variables.items() if v.kind == "deterministic"]
        self.generated_names = [n for n, v in ck.variables.items() if v.kind == "generated"]
        self.observed_names = [n for n, v in ck.variables.items() if v.observed]

    def check_data(self):
        """Observed values must lie in the support of their distributions (a PPLDataError)."""
        if "checks" not in self._shared:
            def checks(data_arrays):
                ev = Evaluator(self.graph, "density", self.base_env(data_arrays),
                               _FlatSource(jnp.zeros(self.dim), self.slot_by_name),
                               fixed=self.fixed_names)
                ev.exec(self.graph.body)
                return ev.checks
            self._shared["checks"] = jax.jit(checks)
        self._check_observed_support(self._shared["checks"](self.data_arrays))

    def with_data(self, data: BoundData) -> "LoweredModel":
        """The same lowering (same shapes) with other data values; support checks rerun."""
        import copy
        new = copy.copy(self)
        new.data = data
        new.data_arrays = {k: jnp.asarray(v) for k, v in data.arrays.items()}
        new.check_data()
        return new

    def _check_observed_support(self, checks):
        bad = [k for k, ok in checks.items() if not bool(ok)]
        if not bad:
            return
        for s in self.graph.statements():
            if s.kind == "observe" and stmt_key(s.stmt) in bad:
                raise PPLDataError(
                    f'observed "{s.target}" has values outside the support of {s.dist}', s.stmt.span,
                    f"check the data for {s.target}: e.g. counts must be non-negative integers, "
                    "probabilities within [0, 1]", self.graph.program.source, self.graph.program.filename)

    # ------------------------------------------------------------ discrete latents
    @property
    def marginal(self):
        """The `Marginalizer` summing finite discrete latents out of `log_density` (or None)."""
        if "_marginal" not in self.__dict__:
            from .marginalize import marginalizer_for
            self._marginal = marginalizer_for(self) if self.graph.discrete_latents() else None
        return self._marginal

    def discrete_posterior(self, key, u, data_arrays):
        """Marginalised latents at u: a draw from p(z | θ, data) and per-element probabilities."""
        return self.marginal.posterior(key, u, data_arrays) if self.marginal is not None else {}

    def log_density_given(self, u, data_arrays, discrete_values):
        """The density with discrete latents at given values (nothing summed out)."""
        from .marginalize import ValuesSource
        src = ValuesSource(_FlatSource(u, self.slot_by_name), discrete_values)
        ev = Evaluator(self.graph, "density", self.base_env(data_arrays), src, fixed=self.fixed_names)
        ev.exec(self.graph.body)
        return ev.lp

    # ------------------------------------------------------------ pure functions
    def log_density(self, u, data_arrays):
        """Log joint density (up to a constant) at unconstrained u, log-Jacobians included."""
        if self.marginal is not None:  # finite discrete latents summed out (lower/marginalize.py)
            return self.marginal.log_density(u, data_arrays)
        src = _FlatSource(u, self.slot_by_name)
        ev = Evaluator(self.graph, "density", self.base_env(data_arrays), src, fixed=self.fixed_names)
        ev.exec(self.graph.body)
        return ev.lp

    def evaluate(self, u, data_arrays):
        """Constrained values of latents and top-level deterministic variables at u."""
        src = _FlatSource(u, self.slot_by_name, jacobian=False)
        env = self.base_env(data_arrays)
        ev = Evaluator(self.graph, "density", env, src, fixed=self.fixed_names)
        ev.exec(self.graph.body)
        out = {n: ev.env[n] for n in self.latent_names}
        for n in self.deterministic_names:
            if n in ev.env:
                out[n] = ev.env[n]
        return out

    def generated(self, key, values, data_arrays):
        env = self.base_env(data_arrays)
        env.update(values)
        ev = Evaluator(self.graph, "sample", env, key=key, given=values, run_generated=True,
                       fixed=self.fixed_names)
        ev.exec(self.graph.body)
        return {n: ev.env[n] for n in self.generated_names if n in ev.env}

    def prior_sample(self, key, data_arrays, simulate_data=False):
        """Draw every random variable from the prior (and the observed data, if asked)."""
        env = self.base_env(data_arrays)
        ev = Evaluator(self.graph, "sample", env, key=key, simulate_data=simulate_data,
                       fixed=self.fixed_names)
        ev.exec(self.graph.body)
        ck = self.graph.checked
        out = {n: ev.env[n] for n, v in ck.variables.items()
               if v.kind in ("latent", "deterministic") and n in ev.env}
        if simulate_data:
            out.update({n: ev.env[n] for n in self.observed_names})
        return out

    def unconstrain(self, values: Dict[str, Any], data_arrays=None):
        """Inverse of the constraining transforms (for initial values and tests)."""
        data_arrays = self.data_arrays if data_arrays is None else data_arrays
        parts = []
        # supports may depend on other variables: evaluate them at the given values
        for s in self.slots:
            c = self._constraint_at(s.name, values, data_arrays)
            parts.append(jnp.ravel(biject_to(c).inv(jnp.asarray(values[s.name]))))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def _constraint_at(self, name, values, data_arrays):
        class _Grab:
            def __init__(self):
                self.c = {}

            def take(self, n, shape, constraint, ev):
                self.c[n] = constraint
                return jnp.asarray(values[n])

        g = _Grab()
        ev = Evaluator(self.graph, "density", self.base_env(data_arrays), g, fixed=self.fixed_names)
        ev.exec(self.graph.body)
        return g.c[name]

    # ------------------------------------------------------------ translation validation
    def reference_log_density(self, u, data_arrays):
        """The same density through numpyro: loops unrolled, one numpyro.sample site each."""
        import numpyro
        from numpyro.infer.util import log_density

        def model():
            src = _FlatSource(u, self.slot_by_name)
            ev = Evaluator(self.graph, "reference", self.base_env(data_arrays), src,
                           fixed=self.fixed_names)
            ev.exec(self.graph.body)

        with numpyro.handlers.seed(rng_seed=0):
            lp, _ = log_density(model, (), {}, {})
        return lp

    def validate(self, key=0, num_points=3, max_unrolled=2000, rtol=1e-6):
        """Lowered log density = numpyro reference at random points; returns what was compared."""
        size = self._unrolled_size()
        if size > max_unrolled:
            return {"checked": False, "reason": f"more than {max_unrolled} unrolled statements"}
        # Points from numpy: drawing them with JAX would compile a generator just for this.
        rng = np.random.default_rng(_seed_of(key))
        us = jnp.asarray(rng.uniform(-2.0, 2.0, (num_points, self.dim)))
        lowered = np.asarray(jax.jit(jax.vmap(self.log_density, in_axes=(0, None)))(us, self.data_arrays))
        # A small reference compiles quickly; a large unrolled one is cheaper to run eagerly.
        ref = self.reference_log_density
        if size <= 200:
            ref = jax.jit(jax.vmap(ref, in_axes=(0, None)))
            reference = np.asarray(ref(us, self.data_arrays))
        else:
            reference = np.array([float(ref(u, self.data_arrays)) for u in us])
        diffs = [check_agreement(a, b, "the lowered log density against numpyro's reference", rtol)
                 for a, b in zip(lowered.tolist(), reference.tolist())]
        return {"checked": True, "points": num_points, "max_abs_diff": max(diffs) if diffs else 0.0}

    def _unrolled_size(self):
        total = 0

        def count(body, mult):
            nonlocal total
            for s in body:
                if isinstance(s, A.For):
                    try:
                        lo = _const(s.lo, self.static)
                        hi = _const(s.hi, self.static)
                        n = max(0, hi - lo + 1)
                    except Exception:
                        n = 1000
                    count(s.body, mult * n)
                elif isinstance(s, A.If):
                    count(s.then, mult)
                    count(s.orelse, mult)
                else:
                    total += mult

        count(self.graph.body, 1)
        return total


def _const(e, static):
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Name):
        return static[e.id]
    if isinstance(e, A.BinOp) and e.op in "+-*":
        a, b = _const(e.left, static), _const(e.right, static)
        return {"+": a + b, "-": a - b, "*": a * b}[e.op]
    raise ValueError


def _seed_of(key) -> int:
    """An integer seed from an int or a JAX key (raw or typed)."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return int(np.asarray(key).ravel()[-1])
