"""The interpreter: IR statements → JAX operations, under a stack of effect handlers.

One interpreter serves every lowering: what happens at the random sites (values from a layout,
draws with a key, given values, masks, numpyro sites …) is decided by the handlers
(ppl/lower/handlers.py), not by modes. Loops follow their IR plans: independent iterations run
as one `vmap`, recurrences as a `lax.scan` carrying what they write (an array the loop fills
row by row, `gamma[t, k]` from `gamma[t - 1, j]`, as a window of its last rows, the rows handed
out as the scan's outputs: a step then costs a row, not the array); which plan applies depends
on whether the values the loop's `~` statements write are given (a density) or drawn. `if` on a
traced condition evaluates both branches under masks and selects.

Indices computed at run time (from data or latents) are checked: an index out of range makes
the log density −inf and is recorded (`valid`, `records`) so the runtime can say where.

Under a `Pointwise` handler, observed `~` sites also report their log density element by
element (`pointwise`: the observed variable's name, the flat positions of the elements in it,
the terms). Vectorised loops and scans pass their iterations' terms out as outputs, the way
vectorised loops pass element writes out, and `pointwise_terms` scatters them into arrays of
the observed variables' shapes.
"""
from __future__ import annotations

import abc
import dataclasses
import itertools
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ..builtins.distributions import DISTRIBUTIONS, static_support
from ..builtins.functions import ELEMENTWISE, FUNCTIONS
from ..ir import nodes as N
from ..ir.loops import events
from ..ir.loops import plan as plan_loop
from ..syntax.errors import PPLError
from ..syntax.visit import transform, walk
from . import ode
from . import padded as P
from .handlers import Mask, Site, apply
from .padded import Padded


class LoweringError(PPLError):
    kind = "error"


def _is_static(x):
    return isinstance(x, (int, float, bool, np.integer, np.floating, np.bool_)) and not isinstance(x, jax.Array)


def _concrete(x):
    """The concrete value of x, or an error when it is only known at run time."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError("a traced value")
    return np.asarray(x)


def _is_concrete(x):
    if isinstance(x, jax.core.Tracer):
        return False
    try:
        np.asarray(x)
        return True
    except Exception:  # noqa: BLE001
        return False


def static_int(x, span, what="a size", source=None, filename=None):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        try:
            v = _concrete(x)
            if v.ndim or not np.issubdtype(v.dtype, np.integer):
                raise TypeError("not an integer")
            return int(v)
        except Exception:  # noqa: BLE001
            raise LoweringError(f"{what} must be known before inference (integer data or a literal)",
                                span, None, source, filename) from None
    return int(x)


def declared_shape(t: N.VarType, ev: Callable) -> Tuple[int, ...]:
    """The shape of a declared type, its size expressions evaluated by `ev`."""
    return tuple(static_int(ev(d), d.span, "a size") for d in t.dims)


def dtype_of(t: Optional[N.VarType]):
    if t is None:
        return jnp.result_type(float)
    return {"int": jnp.int32, "bool": jnp.bool_}.get(t.base, jnp.result_type(float))


_TYPE_SUPPORT = {
    "simplex": constraints.simplex, "ordered": constraints.ordered_vector,
    "positive_ordered": constraints.positive_ordered_vector,
    "cov_matrix": constraints.positive_definite, "corr_matrix": constraints.corr_matrix,
    "corr_cholesky": constraints.corr_cholesky, "cholesky_factor_corr": constraints.corr_cholesky,
    "cholesky_cov": constraints.lower_cholesky, "cholesky_factor_cov": constraints.lower_cholesky,
}


class Indexable(abc.ABC):
    """Values with their own indexing (e.g. the lag window of a particle filter)."""

    @abc.abstractmethod
    def index(self, interp: "Interpreter", e: N.Index):
        """The value of `e` (an Index whose base is this value)."""


class PointwiseInfo:
    """What the frames of one run learn about the pointwise terms: each observed variable's
    pointwise shape (its shape less the event dimensions of its distribution), and the
    variables whose terms cannot be split element by element, with why."""

    def __init__(self):
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.undefined: Dict[str, str] = {}


class Interpreter:
    """Runs IR statements in an environment (name → value), under `handlers`.

    Results: `env` (values), `lp` (log density: every scored site and factor, masks applied),
    `valid` (every run-time index check held), `records` (named checks: observed supports,
    index ranges, argument domains — booleans that must hold)."""

    # Statement kinds made by rewrites run through executors registered here
    # (e.g. ppl/lower/marginal.py for `Marginal`).
    executors: Dict[type, Callable] = {}
    # … and expression kinds the core does not know (e.g. `x(t)`, ppl/lower/process.py)
    expr_executors: Dict[type, Callable] = {}

    def __init__(self, ir: N.ModelIR, env: Dict[str, Any], handlers=(), depth: int = 0):
        self.ir = ir
        self.env = env
        self.handlers = tuple(handlers)
        self.depth = depth
        self.lp = jnp.zeros(())
        self.valid = jnp.bool_(True)
        self.records: Dict[Any, Any] = {}
        self.given: set = set()  # names whose values were given (not drawn here)
        self.indices: Tuple[Any, ...] = ()  # values of the enclosing loop variables
        # vectorised loop bodies: element writes and the overrides that let later statements of
        # the same iteration read them
        self.elem_writes: Optional[Dict[str, Any]] = None
        self.overrides: Dict[Any, Any] = {}
        self.outer: frozenset = frozenset()
        self.locals: Dict[str, Any] = {}  # types of typed locals
        # pointwise log-likelihood terms (name, flat positions, values), see `Pointwise`
        self.pointwise: List[Tuple[str, Any, Any]] = []
        self.pointwise_info = PointwiseInfo()

    # ------------------------------------------------------------ frames
    def child(self, env, handlers=None) -> "Interpreter":
        c = Interpreter(self.ir, env, self.handlers if handlers is None else handlers, self.depth + 1)
        c.given = set(self.given)
        c.indices = self.indices
        c.pointwise_info = self.pointwise_info
        return c

    def err(self, msg, span, hint=None):
        return LoweringError(msg, span, hint, self.ir.source, self.ir.filename)

    def kind_of(self, name: str) -> str:
        v = self.ir.variables.get(name)
        return v.kind if v is not None else "local"

    def site(self, default=None, **kw) -> Site:
        s = apply(self.handlers, Site(indices=self.indices, **kw), default)
        for k, v in s.records.items():
            self._record(k, v)
        return s

    def _record(self, key, ok):
        prev = self.records.get(key)
        self.records[key] = ok if prev is None else (prev & ok)

    def _merge(self, other: "Interpreter", reduce=None, where=None):
        """Take a sub-frame's density, validity and records (reduced over a batch axis, or
        selected by a branch condition)."""
        lp, valid = other.lp, other.valid
        if reduce is not None:
            lp, valid = jnp.sum(lp), jnp.all(valid)
        self.lp = self.lp + lp
        self.valid = self.valid & (valid if where is None else jnp.where(where, valid, True))
        for k, v in other.records.items():
            v = jnp.all(v) if reduce is not None else v
            self._record(k, v if where is None else jnp.where(where, v, True))

    # ------------------------------------------------------------ statements
    def run(self, body) -> "Interpreter":
        for s in body:
            self.stmt(s)
        return self

    def stmt(self, s):
        try:
            self._stmt(s)
        except PPLError:
            raise
        except (TypeError, ValueError, IndexError) as e:
            raise self.err(_explain(e), s.span, _shape_hint(e)) from None

    def _stmt(self, s):
        if type(s) in self.executors:  # first: some are subclasses of core statements
            self.executors[type(s)](self, s)
        elif isinstance(s, N.Draw):
            self._draw(s)
        elif isinstance(s, N.Let):
            self._let(s)
        elif isinstance(s, N.Declare):
            self._declare(s)
        elif isinstance(s, N.Factor):
            site = self.site(kind="factor", stmt=s, value=jnp.sum(self.expr(s.value)))
            if site.score:
                self._add(site.value, site.mask)
        elif isinstance(s, N.Loop):
            self._loop(s)
        elif isinstance(s, N.Branch):
            self._branch(s)
        elif isinstance(s, N.Generated):
            if self.site(kind="generated", stmt=s).run:
                self.run(s.body)
        elif type(s) in self.executors:
            self.executors[type(s)](self, s)
        else:
            raise self.err(f"cannot lower {type(s).__name__}", s.span)

    def _add(self, lp, mask=None):
        lp = jnp.sum(lp) if mask is None else jnp.sum(jnp.where(mask, lp, 0.0))
        self.lp = self.lp + lp

    # ------------------------------------------------------------ declarations
    def declared_shape(self, t: N.VarType) -> Tuple[int, ...]:
        shape, axis, _ = self.shape_of(t)
        return shape

    def shape_of(self, t: N.VarType):
        """(largest shape, padded axis or None, its active length or None): one dimension may
        be sized by a bounded discrete latent (a stochastic size)."""
        dims, axis, length = [], None, None
        for i, d in enumerate(t.dims):
            v = self.expr(d)
            if not _random_size(d):
                dims.append(static_int(v, d.span, "a size", self.ir.source, self.ir.filename))
                continue
            if axis is not None:
                raise self.err("only one dimension of an array may have a random size", d.span)
            axis, length = i, v
            dims.append(self.largest(d))
        return tuple(dims), axis, length

    def size_range(self, name: str, span) -> range:
        """The values a size variable can take (its declared bounds)."""
        v = self.ir.variables.get(name)
        t = v.type if v is not None else None
        if t is None or t.lower is None or t.upper is None:
            raise self.err(f'"{name}" sizes an array, so it needs declared bounds', span,
                           f"declare them, e.g. `{name}: int<lower=0, upper=20>`")
        static = Interpreter(self.ir, {k: x for k, x in self.env.items() if _is_static(x)})
        lo = static_int(static.expr(t.lower), t.lower.span, "a bound of a size", self.ir.source,
                        self.ir.filename)
        hi = static_int(static.expr(t.upper), t.upper.span, "a bound of a size", self.ir.source,
                        self.ir.filename)
        return range(lo, hi + 1)

    def largest(self, e: N.Expr) -> int:
        """The largest value of an integer expression over the values of the size variables
        (bounded discrete latents) it reads."""
        names = sorted({x.name for x in walk(e) if isinstance(x, N.Ref) and x.role == "latent"})
        if not names:
            raise self.err("this size must be known before inference", e.span,
                           "sizes are integer data, literals, or bounded discrete latents")
        ranges = [self.size_range(n, e.span) for n in names]
        best = None
        for combo in itertools.product(*ranges):
            c = Interpreter(self.ir, dict(self.env))
            c.env.update(dict(zip(names, combo)))
            v = static_int(c.expr(e), e.span, "a size", self.ir.source, self.ir.filename)
            best = v if best is None else max(best, v)
        return best

    def type_support(self, t: Optional[N.VarType], shape, dist=None):
        """The support of a declared type (bounds evaluated here), else the distribution's."""
        if t is not None and t.base in _TYPE_SUPPORT:
            return _TYPE_SUPPORT[t.base]
        if t is not None and (t.lower is not None or t.upper is not None):
            lo = None if t.lower is None else self.expr(t.lower)
            hi = None if t.upper is None else self.expr(t.upper)
            if t.scalar == "int":
                lo = -(2 ** 31) if lo is None else lo
                hi = 2 ** 31 - 1 if hi is None else hi
                return constraints.integer_interval(lo, hi)
            if lo is not None and hi is not None:
                if jnp.ndim(lo) or jnp.ndim(hi):
                    return constraints.interval(jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape))
                return constraints.interval(lo, hi)
            if lo is not None:
                return constraints.positive if _is_static(lo) and lo == 0 else constraints.greater_than(lo)
            return constraints.less_than(hi)
        if dist is not None:
            return dist.support
        return None

    def variable_support(self, name, span):
        """The common support of the distributions of an element-wise latent."""
        v = self.ir.variables[name]
        supports = []
        for d in v.dists:
            spec = DISTRIBUTIONS.get(d)
            sup = static_support(spec) if spec is not None else constraints.real
            if sup is None:
                raise self.err(f'"{name}" needs declared bounds: the support of {d} depends on its '
                               "arguments", span, f"declare them, e.g. `{name}: real<lower=a, upper=b>[…]`")
            if not any(sup is x for x in supports):
                supports.append(sup)
        if len(supports) > 1:
            raise self.err(f'the elements of "{name}" have different supports', span,
                           "declare bounds on its type")
        return supports[0] if supports else constraints.real

    def _declare(self, s: N.Declare):
        kind = self.kind_of(s.name)
        shape, axis, length = self.shape_of(s.type)
        if kind in ("latent", "param"):
            v = self.ir.variables[s.name]
            if v.discrete:
                c = self.type_support(s.type, shape)
            else:
                c = self.type_support(s.type, shape) or self.variable_support(s.name, s.span)
            site = self.site(kind="value", name=s.name, stmt=s, role=kind, shape=shape,
                             constraint=c, discrete=v.discrete, mask=self._active(shape, axis, length))
            if site.given:
                self.env[s.name] = _pad(site.value, axis, length)
                self.given.add(s.name)
                if site.score:
                    self._add(site.log_jacobian)
                return
            if kind == "param" and not v.dists:
                raise self.err(f'"{s.name}" has a flat prior and cannot be drawn from its prior', s.span,
                               "give it a proper distribution to simulate from the prior")
            # drawn element by element later; until then a placeholder
            fill = _lowest(c) if v.discrete else 0
            self.env[s.name] = _pad(jnp.full(shape, fill, dtype=dtype_of(s.type)), axis, length)
            return
        # storage for a deterministic or generated array filled later, or a typed local: real
        # elements never assigned read as NaN, as in Stan (integers have no NaN: 0)
        dtype = dtype_of(s.type)
        fill = jnp.nan if jnp.issubdtype(dtype, jnp.floating) else 0
        self.env[s.name] = _pad(jnp.full(shape, fill, dtype=dtype), axis, length)
        if kind == "local":
            self.locals[s.name] = s.type

    # ------------------------------------------------------------ ~
    def build_dist(self, d: N.Dist, value_shape=None):
        raw = [self.expr(a) for a in d.args]
        if d.user:  # a function of the program: it sees arrays whose size is random as such
            return UserDensity(self, d, raw)
        args = [a.safe(1.0) if isinstance(a, Padded) else a for a in raw]
        spec = DISTRIBUTIONS[d.name]
        try:
            return spec.build(*args, value_shape=value_shape)
        except (ValueError, TypeError) as e:
            raise self.err(f"cannot build {d.name}: {_explain(e)}", d.span, _shape_hint(e)) from None

    def _draw(self, s: N.Draw):
        name, role = s.target.name, s.role
        whole = not s.target.indices
        v = self.ir.variables.get(name)
        decl = v.type if v is not None else None
        if role == "latent" and whole and name not in self.given:
            # the variable comes into being here: a value site
            shape, axis, length = self.shape_of(decl) if decl is not None else (None, None, None)
            self._check_bounded_ordered(decl, axis, s)
            d = self.build_dist(s.dist, value_shape=shape)
            if shape is None:
                shape = tuple(d.batch_shape) + tuple(d.event_shape)
            c = self.type_support(decl, shape, d)
            dtype = dtype_of(decl) if decl is not None else None
            trunc = self._truncation(d, decl, s) if self._truncated(v, decl, d) else 0.0

            def draw(st):
                if not st.given:
                    st.value = self._sample(d, st, shape, dtype)
                    if axis is not None:
                        st.value = _padded_prior_draw(d, decl, st.value, axis, length, st.key)

            site = self.site(draw, kind="value", name=name, stmt=s, role=role, dist=d, shape=shape,
                             constraint=c, discrete=bool(v is not None and v.discrete),
                             mask=self._active(shape, axis, length), log_normalizer=trunc)
            if site.given:
                self.given.add(name)
            value = _pad(site.value, axis, length)
            self.env[name] = value
            if site.score:
                self._add(site.log_jacobian)
                if isinstance(value, Padded) and not isinstance(d, UserDensity):
                    bounds = (None, None)
                    if decl is not None and decl.base not in _TYPE_SUPPORT:
                        bounds = tuple(None if b is None else self.expr(b) for b in (decl.lower, decl.upper))
                    self._add(_padded_exact_log_prob(d, decl, value, site.mask, bounds))
                else:
                    self._score(d, value, site)
                self._add(-site.log_normalizer, site.mask)
            return
        known = role == "observed" or (role in ("prior", "latent") and name in self.given)
        value = jnp.asarray(self.read_lvalue(s.target)) if known else None
        shape = jnp.shape(value) if value is not None else self._target_shape(s.target, decl)
        d = self.build_dist(s.dist, value_shape=shape)

        def draw(st):
            if st.value is None:
                dtype = jnp.asarray(self.env[name]).dtype if role == "observed" else None
                st.value = self._sample(d, st, shape, dtype)
                st.given = False

        # a whole latent given here (summed out by a Marginal) is truncated by its bounds as where
        # it takes its value
        trunc = self._truncation(d, decl, s) if role == "latent" and not s.target.indices and \
            self._truncated(v, decl, d) else 0.0
        site = self.site(draw, kind="draw", name=name, stmt=s, role=role, dist=d, value=value,
                         shape=shape, given=value is not None,
                         discrete=bool(v is not None and v.discrete), log_normalizer=trunc)
        if not site.given:
            value = site.value
            self._assign(s.target, value)
        else:
            value = site.value
            if role == "observed" and not isinstance(d, UserDensity):
                self._record(("support", s.sid), jnp.all(d.support(value)))
        if site.score:
            self._score(d, value, site)
            if site.pointwise:
                self._pointwise(s, d, value, site)
            self._add(-site.log_normalizer)

    def _target_shape(self, lv: N.LValue, decl):
        if lv.indices:
            return jnp.shape(self.read_lvalue(lv))
        if decl is not None:
            return self.declared_shape(decl)
        if lv.name in self.env:
            return jnp.shape(self.env[lv.name])
        return None

    def _sample(self, d, site: Site, shape, dtype=None):
        if site.key is None:
            raise self.err(f'"{site.name}" would have to be drawn here, but no random key was given',
                           site.stmt.span)
        if isinstance(d, UserDensity):
            raise self.err(f"{site.stmt.dist.name} has no sampler (it is defined by a _lpdf "
                           "function)", site.stmt.span)
        if shape is not None:
            d = _expand(d, shape)
        value = d.sample(sampling_key(site.key))
        if shape is not None and jnp.shape(value) != tuple(shape):
            value = jnp.broadcast_to(value, shape)
        if dtype is not None:
            value = value.astype(dtype)
        return value

    def _terms(self, d, value, site: Site):
        """(elementwise log density, mask or None) of `value` under `d`."""
        if isinstance(value, Padded):
            # inactive entries: a point of the support (bijection of 0), so neither the density
            # nor its gradient sees a value outside it
            fill = jax.lax.stop_gradient(_support_point(d, value.values.shape))
            lp = d.log_prob(jnp.where(value.mask(), value.values, fill))
            m = value.mask()
            if d.event_shape:  # one value per row: the event dimensions are summed already
                m = jnp.reshape(m, m.shape[:max(0, m.ndim - len(d.event_shape))])
            mask = m if site.mask is None else (m & site.mask)
            shape = jnp.broadcast_shapes(jnp.shape(lp), jnp.shape(mask))
            return jnp.broadcast_to(lp, shape), jnp.broadcast_to(mask, shape)
        return d.log_prob(value), site.mask

    def _score(self, d, value, site: Site):
        self._add(*self._terms(d, value, site))

    def _pointwise(self, s: N.Draw, d, value, site: Site):
        """Record an observation's elementwise log density at its elements' positions in the
        observed variable (flattened), for `pointwise_terms`."""
        name, info = s.target.name, self.pointwise_info
        if name in info.undefined:
            return
        lp, mask = self._terms(d, value, site)
        if mask is not None:
            lp = jnp.where(mask, lp, 0.0)
        full = jnp.shape(P.values(self.env[name]))
        event = len(getattr(d, "event_shape", ()) or ())
        shape = tuple(full[:len(full) - event])
        if info.shapes.setdefault(name, shape) != shape:
            info.undefined[name] = "its statements use distributions of different dimensions"
            return
        positions = jnp.arange(int(np.prod(shape, dtype=int))).reshape(shape)
        indices = s.target.indices[:len(shape)]
        if indices:
            ix = tuple(self._index_value(i, positions, k) for k, i in enumerate(indices))
            if any(isinstance(x, _RandomSlice) for x in ix):
                info.undefined[name] = "it is observed over a slice whose length is random"
                return
            positions = positions[ix]
        if jnp.shape(lp) != jnp.shape(positions):
            info.undefined[name] = (f"line {s.span.line} gives one log density for "
                                    f"{int(np.prod(jnp.shape(positions), dtype=int))} elements "
                                    "(a density defined by a function)")
            return
        self.pointwise.append((name, positions, lp))

    def _check_bounded_ordered(self, decl, axis, s):
        if decl is not None and decl.base == "ordered" and axis is None and \
                (decl.lower is not None or decl.upper is not None):
            raise self.err("bounds on an ordered array are supported when its size is random "
                           "(the mhg pass) only", s.span,
                           "drop the bounds, or transform an unbounded ordered array")

    @staticmethod
    def _truncated(v, decl, d) -> bool:
        return bool(v is not None and v.discrete and decl is not None and decl.lower is not None
                    and decl.upper is not None and not isinstance(d, UserDensity))

    def _truncation(self, d, decl: N.VarType, s):
        """log P(lower ≤ X ≤ upper) under d: the normaliser of a discrete latent whose declared
        bounds truncate its distribution (`k: int<lower=0, upper=30> ~ poisson(3)`)."""
        lo = static_int(self.expr(decl.lower), decl.lower.span, "a bound of a discrete latent",
                        self.ir.source, self.ir.filename)
        hi = static_int(self.expr(decl.upper), decl.upper.span, "a bound of a discrete latent",
                        self.ir.source, self.ir.filename)
        if d.batch_shape or d.event_shape:
            return 0.0  # elementwise bounds on an array: each element's own; not handled here
        ks = jnp.arange(lo, hi + 1)
        return jax.scipy.special.logsumexp(d.log_prob(ks))

    def _active(self, shape, axis, length):
        """The mask of a value site's active entries (None when its size is fixed)."""
        if axis is None:
            return None
        n = shape[axis]
        return (jnp.arange(n) < length).reshape((n,) + (1,) * (len(shape) - axis - 1))

    # ------------------------------------------------------------ = and element writes
    def read_lvalue(self, lv: N.LValue):
        if not lv.indices:
            return self.env[lv.name]
        return self.expr(N.Index(lv.span, N.Ref(lv.span, lv.name, self.kind_of(lv.name)), lv.indices))

    def _let(self, s: N.Let):
        value = self.expr(s.value)
        if s.type is not None:
            shape = self.declared_shape(s.type)
            value = jnp.broadcast_to(jnp.asarray(value, dtype=dtype_of(s.type)), shape)
            if s.role == "local":
                self.locals[s.target.name] = s.type
        self._assign(s.target, value)

    def _assign(self, lv: N.LValue, value):
        name = lv.name
        if not lv.indices:
            self.env[name] = value
            return
        base = self.env.get(name)
        if base is None:
            raise self.err(f'"{name}" must be declared before its elements are set', lv.span)
        idx = tuple(self._index_value(i, base, k) for k, i in enumerate(lv.indices))
        if self.elem_writes is not None and name in self.outer:
            # inside a vectorised loop: remember the element, scatter after the vmap (slices as
            # index arrays: a vmapped function returns arrays only)
            self.elem_writes[name] = (value, _slices_as_arrays(idx, jnp.shape(base)))
            self.overrides[(name, lv.indices)] = value
            return
        base = jnp.asarray(base)
        value = jnp.asarray(value, dtype=base.dtype) if jnp.issubdtype(base.dtype, jnp.integer) \
            else jnp.asarray(value)
        self.env[name] = base.at[idx].set(value)
        self.overrides.pop((name, lv.indices), None)

    # ------------------------------------------------------------ loops
    def loop_bounds(self, s: N.Loop):
        lo = static_int(self.expr(s.lo), s.lo.span, "a loop bound", self.ir.source, self.ir.filename)
        hi = static_int(self.expr(s.hi), s.hi.span, "a loop bound", self.ir.source, self.ir.filename)
        return lo, hi

    def _loop(self, s: N.Loop):
        limit = None
        if _random_size(s.hi):
            # `for j in 1:k` with k a size variable: run to k's largest value, masked beyond k
            lo = static_int(self.expr(s.lo), s.lo.span, "a loop bound", self.ir.source, self.ir.filename)
            hi, limit = self.largest(s.hi), self.expr(s.hi)
        else:
            lo, hi = self.loop_bounds(s)
        if hi < lo:
            return
        plan = s.plan
        default = plan.density if all(n in self.given for n in plan.drawn) else plan.sample
        strategy = self.site(kind="loop", stmt=s, strategy=default).strategy
        if plan.density == "unroll":
            strategy = "unroll"
        if limit is not None:
            if strategy == "unroll":
                raise self.err("a loop that runs to a random size cannot return from inside", s.span)
            (self._loop_vectorized if strategy == "vectorize" else self._loop_scan)(s, lo, hi, limit)
            return
        if strategy == "unroll":
            for t in range(lo, hi + 1):
                self.env[s.var] = t
                outer_indices = self.indices
                self.indices = outer_indices + (t,)
                self.run(s.body)
                self.indices = outer_indices
            self.env.pop(s.var, None)
        elif strategy == "vectorize":
            self._loop_vectorized(s, lo, hi)
        else:
            self._loop_scan(s, lo, hi)

    def _loop_vectorized(self, s: N.Loop, lo, hi, limit=None):
        ts = jnp.arange(lo, hi + 1)
        outer_env = self.env
        outer = frozenset(outer_env)

        def body(t):
            env = dict(outer_env)
            env[s.var] = t
            active = None if limit is None else t <= limit
            c = self.child(env, None if active is None else self.handlers + (Mask(active),))
            c.indices = self.indices + (t,)
            c.elem_writes = {}
            c.outer = outer
            c.overrides = dict(self.overrides)
            c.locals = dict(self.locals)
            c.run(s.body)
            writes, valid, records = c.elem_writes, c.valid, c.records
            if active is not None:  # iterations beyond the size change nothing
                writes = {n: (jnp.where(active, v, P.values(outer_env[n])[idx]), idx)
                          for n, (v, idx) in writes.items()}
                valid = jnp.where(active, valid, True)
                records = {k: jnp.where(active, v, True) for k, v in records.items()}
            pointwise[:] = [n for n, _, _ in c.pointwise]
            return c.lp, valid, records, writes, [(p, v) for _, p, v in c.pointwise]

        pointwise: List[str] = []  # the observed names of the iterations' pointwise terms
        lps, valid, records, writes, terms = jax.vmap(body)(ts)
        self.pointwise += [(n, p, v) for n, (p, v) in zip(pointwise, terms)]
        self.lp = self.lp + jnp.sum(lps)
        self.valid = self.valid & jnp.all(valid)
        for k, v in records.items():
            self._record(k, jnp.all(v))
        for name, (vals, idx) in writes.items():
            idx = _align_batched(idx)
            base = jnp.asarray(self.env[name])
            if self.elem_writes is not None and name in self.outer:
                self.elem_writes[name] = (vals, idx)  # nested vectorised loops: pass them out
                continue
            vals = vals.astype(base.dtype) if jnp.issubdtype(base.dtype, jnp.integer) else vals
            self.env[name] = base.at[idx].set(vals)

    def _loop_scan(self, s: N.Loop, lo, hi, limit=None):
        # arrays the loop fills row by row (x[t, …] written, x[t - c, …] read) are carried as a
        # window of their last rows and handed out row by row, not carried whole: carrying the
        # whole array makes every step (and its gradient) cost the array's size
        lags = self._row_windows(s, lo, hi) if limit is None else {}
        body = _windowed_body(s, lags) if lags else s.body
        carried = sorted({n for op, n, _, _ in events(s.body)
                          if op == "write" and n in self.env and n not in lags})
        outer_env = self.env
        overrides = self.overrides
        whole = {n: jnp.asarray(self.env[n]) for n in lags}

        def step(carry, xs):
            state, windows = carry
            t, current = xs
            env = dict(outer_env)
            env.update(state)
            for n, lag in lags.items():  # rows t - lag … t - 1, then row t as it stands
                env[_window_name(n)] = jnp.concatenate([windows[n], current[n][None]], axis=0)
            env[s.var] = t
            active = None if limit is None else t <= limit
            c = self.child(env, None if active is None else self.handlers + (Mask(active),))
            c.indices = self.indices + (t,)
            c.overrides = dict(overrides)
            c.locals = dict(self.locals)
            c.run(body)
            new = {n: c.env[n] for n in carried}
            filled = {n: jnp.asarray(c.env[_window_name(n)], dtype=whole[n].dtype) for n in lags}
            valid, records = c.valid, c.records
            if active is not None:  # iterations beyond the size change nothing
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new,
                                             {n: state[n] for n in carried})
                valid = jnp.where(active, valid, True)
                records = {k: jnp.where(active, v, True) for k, v in records.items()}
            pointwise[:] = [n for n, _, _ in c.pointwise]
            return ((new, {n: w[1:] for n, w in filled.items()}),
                    (c.lp, valid, records, [(p, v) for _, p, v in c.pointwise],
                     {n: w[-1] for n, w in filled.items()}))

        pointwise: List[str] = []  # the observed names of the iterations' pointwise terms

        init = {n: self.env[n] if isinstance(self.env[n], Padded) else jnp.asarray(self.env[n])
                for n in carried}
        windows = {n: whole[n][lo - 1 - lag:lo - 1] for n, lag in lags.items()}
        ts = jnp.arange(lo, hi + 1)
        current = {n: whole[n][lo - 1:hi] for n in lags}
        out_shapes = jax.eval_shape(lambda c, x: step(c, x)[0][0], (init, windows),
                                    (ts[0], {n: v[0] for n, v in current.items()}))
        init = {n: init[n] if isinstance(init[n], Padded) else
                jnp.broadcast_to(init[n], out_shapes[n].shape).astype(out_shapes[n].dtype)
                for n in carried}
        (final, _), (lps, valid, records, terms, rows) = jax.lax.scan(step, (init, windows),
                                                                     (ts, current))
        self.pointwise += [(n, p, v) for n, (p, v) in zip(pointwise, terms)]
        self.env.update(final)
        for n in lags:
            self.env[n] = whole[n].at[lo - 1:hi].set(rows[n])
        self.lp = self.lp + jnp.sum(lps)
        self.valid = self.valid & jnp.all(valid)
        for k, v in records.items():
            self._record(k, jnp.all(v))

    def _row_windows(self, s: N.Loop, lo, hi) -> Dict[str, int]:
        """The arrays `for t in lo:hi` fills row by row, with the furthest lag each is read at:
        every write `x[t, …] = …` (by `=`, not `~`), every read `x[t, …]` or `x[t - c, …]`
        (c a constant ≥ 1, rows lo - c … hi existing), no whole read or write of x."""
        if self.elem_writes is not None or any(
                not isinstance(x, (N.Let, N.Draw, N.Factor, N.Loop, N.Branch, N.Declare))
                for st in s.body for x in walk(st) if isinstance(x, N.Stmt)):
            return {}
        evs = events(s.body)
        # a `~` target keeps its name: its value is drawn, given or observed there
        drawn = {x.target.name for st in s.body for x in walk(st) if isinstance(x, N.Draw)}
        overridden = {k[0] for k in self.overrides}
        out = {}
        for name in sorted({n for op, n, _, _ in evs if op == "write"} - drawn - overridden):
            base = self.env.get(name)
            if base is None or isinstance(base, (Padded, Indexable)) or not hasattr(base, "shape") \
                    or jnp.ndim(base) == 0:
                continue
            lag, ok = 0, True
            for op, n, idx, _ in evs:
                if n != name:
                    continue
                first = idx[0] if idx else None
                if isinstance(first, N.Ref) and first.name == s.var:
                    continue
                c = _lag_of(first, s.var)
                if op == "read" and c:
                    lag = max(lag, c)
                    continue
                ok = False
                break
            if ok and lo - lag >= 1 and hi <= jnp.shape(base)[0]:
                out[name] = lag
        return out

    # ------------------------------------------------------------ if / else
    def _branch(self, s: N.Branch):
        cond = self.expr(s.cond)
        if _is_static(cond) or _is_concrete(cond):
            self.run(s.then if bool(cond) else s.orelse)
            return
        cond = jnp.asarray(cond)
        if cond.ndim:
            raise self.err("an if condition must be a single value", s.cond.span,
                           "use if_else(cond, a, b) for elementwise choices")
        branches = []
        for body, m in ((s.then, cond), (s.orelse, ~cond)):
            c = self.child(dict(self.env), self.handlers + (Mask(m),))
            c.elem_writes = None if self.elem_writes is None else {}
            c.outer = self.outer
            c.overrides = dict(self.overrides)
            c.locals = dict(self.locals)
            c.run(body)
            branches.append(c)
        a, b = branches
        self.lp = self.lp + a.lp + b.lp  # each masked by its condition
        self.pointwise += a.pointwise + b.pointwise  # masked too
        self.valid = self.valid & jnp.where(cond, a.valid, b.valid)
        for k in set(a.records) | set(b.records):
            self._record(k, jnp.where(cond, a.records.get(k, True), b.records.get(k, True)))
        for name in set(a.env) | set(b.env):
            if name in a.env and name in b.env:
                va, vb = a.env[name], b.env[name]
                self.env[name] = va if va is vb else jnp.where(cond, va, vb)
        self.given |= a.given & b.given
        if self.elem_writes is not None:
            for name in set(a.elem_writes) | set(b.elem_writes):
                wa = a.elem_writes.get(name) or b.elem_writes.get(name)
                old = jnp.asarray(self.env[name])[wa[1]]
                va = a.elem_writes[name][0] if name in a.elem_writes else old
                vb = b.elem_writes[name][0] if name in b.elem_writes else old
                self.elem_writes[name] = (jnp.where(cond, va, vb), wa[1])
            for k in set(a.overrides) | set(b.overrides):
                if k in a.overrides and k in b.overrides:
                    self.overrides[k] = jnp.where(cond, a.overrides[k], b.overrides[k])

    # ------------------------------------------------------------ expressions
    def expr(self, e: N.Expr):
        if isinstance(e, N.Const):
            return e.value
        if isinstance(e, N.Ref):
            try:
                return self.env[e.name]
            except KeyError:
                raise self.err(f'"{e.name}" has no value here', e.span,
                               "it is defined later, or only inside a branch or loop") from None
        if isinstance(e, N.Binary):
            return self._binary(e)
        if isinstance(e, N.Unary):
            v = self.expr(e.operand)
            if isinstance(v, Padded):
                return v.rebuild(-v.values) if e.op == "-" else v
            if e.op == "-":
                return -v
            if e.op == "+":
                return v
            return jnp.logical_not(v) if not _is_static(v) else (not v)
        if isinstance(e, N.Index):
            if isinstance(e.base, N.Ref) and (e.base.name, e.indices) in self.overrides:
                return self.overrides[(e.base.name, e.indices)]
            return self._index(self.expr(e.base), e)
        if isinstance(e, N.Builtin):
            return self._builtin(e)
        if isinstance(e, N.CallUser):
            return self.call_user(self.ir.functions[e.name], [self.expr(a) for a in e.args], e)
        if isinstance(e, N.LogDensity):
            value = self.expr(e.value)
            d = self.build_dist(e.dist, value_shape=jnp.shape(value))
            return jnp.sum(d.log_prob(value))
        if isinstance(e, N.OdeSolve):
            return ode.solve(self, e)
        if isinstance(e, N.Cond):
            c, a, b = self.expr(e.cond), self.expr(e.then), self.expr(e.orelse)
            if _is_static(c):
                return a if c else b
            return jnp.where(c, a, b)
        if isinstance(e, N.Transpose):
            v = jnp.asarray(self.expr(e.operand))
            return jnp.swapaxes(v, -1, -2) if v.ndim >= 2 else v
        if isinstance(e, N.Array):
            items = [self.expr(i) for i in e.items]
            if all(_is_static(i) for i in items):
                return jnp.asarray(items)
            return jnp.stack(jnp.broadcast_arrays(*[jnp.asarray(i) for i in items]))
        if type(e) in self.expr_executors:
            return self.expr_executors[type(e)](self, e)
        raise self.err(f"cannot evaluate {type(e).__name__}", e.span)

    def _binary(self, e: N.Binary):
        a, b = self.expr(e.left), self.expr(e.right)
        try:
            if isinstance(a, Padded) or isinstance(b, Padded):
                return _padded_binary(e.op, a, b)
            return _apply_binary(e.op, a, b)
        except (TypeError, ValueError) as exc:
            sa, sb = _fmt_shape(jnp.shape(a)), _fmt_shape(jnp.shape(b))
            hint = ('for "@" the inner dimensions must agree' if e.op == "@" else
                    "elementwise operations need equal shapes, or shapes that broadcast")
            raise self.err(f'"{e.op}" cannot combine {self._describe(e.left)} of shape {sa} with '
                           f"{self._describe(e.right)} of shape {sb}", e.span, hint) from exc

    def _index_value(self, i, base, axis):
        n = jnp.shape(base)[axis] if axis < jnp.ndim(base) else 0
        if isinstance(i, N.Slice):
            lo = 1 if i.lo is None else static_int(self.expr(i.lo), i.span, "a slice bound",
                                                   self.ir.source, self.ir.filename)
            if i.hi is not None and _random_size(i.hi):  # a random upper bound: padded
                hi = self.largest(i.hi)
                if lo < 1 or hi > n:
                    raise self.err(f"the slice {lo}:{hi} (at its largest) is out of range: the "
                                   f"dimension has size {n}", i.span)
                return _RandomSlice(lo - 1, hi, self.expr(i.hi) - lo + 1)
            hi = n if i.hi is None else static_int(self.expr(i.hi), i.span, "a slice bound",
                                                   self.ir.source, self.ir.filename)
            if lo < 1 or hi > n or hi < lo - 1:
                raise self.err(f"the slice {lo}:{hi} is out of range: the dimension has size {n}",
                               i.span, "slices run within 1 to the size, lo ≤ hi + 1")
            return slice(lo - 1, hi)
        v = self.expr(i)
        if _is_static(v):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise self.err("an index must be an integer", i.span)
            if not 1 <= v <= n:
                raise self.err(f"index {v} is out of range: the dimension has size {n}", i.span,
                               "indices run from 1 to the size")
            return int(v) - 1
        v = jnp.asarray(v)
        if not jnp.issubdtype(v.dtype, jnp.integer):
            raise self.err("an index must be an integer", i.span)
        # checked at run time: an index out of range makes the density -inf and is recorded
        ok = jnp.all((v >= 1) & (v <= n))
        self.valid = self.valid & ok
        self._record(("index",) + _span_key(i.span), ok)
        return jnp.clip(v - 1, 0, max(n - 1, 0))

    def _index(self, base, e: N.Index):
        if isinstance(base, Indexable):
            return base.index(self, e)
        if isinstance(base, Padded):
            if len(e.indices) <= base.axis or isinstance(e.indices[base.axis], N.Slice):
                raise self.err("an array whose size is random can be indexed element by element "
                               "along that dimension, not sliced", e.span)
            i = e.indices[base.axis]
            v = self.expr(i)
            ok = jnp.all((jnp.asarray(v) >= 1) & (jnp.asarray(v) <= base.length))
            self.valid = self.valid & ok
            self._record(("index",) + _span_key(i.span), ok)
            base = base.values
        if len(e.indices) > jnp.ndim(base):
            raise self.err(f"too many indices: the value has {jnp.ndim(base)} dimension(s)", e.span)
        idx = tuple(self._index_value(i, base, k) for k, i in enumerate(e.indices))
        rs = [(k, x) for k, x in enumerate(idx) if isinstance(x, _RandomSlice)]
        if rs:
            plain = tuple(slice(x.start, x.stop) if isinstance(x, _RandomSlice) else x for x in idx)
            out = base[plain]
            # the padded axis of the result: dimensions before it indexed by a scalar drop out
            axis = rs[0][0] - sum(1 for x in idx[:rs[0][0]] if not isinstance(x, (slice, _RandomSlice)))
            return Padded(out, rs[0][1].length, axis).rebuild(out)
        return base[idx]

    def _builtin(self, e: N.Builtin):
        fs = FUNCTIONS[e.name]
        args = [self.expr(a) for a in e.args]
        if e.name in _REAL_VALUED:  # lgamma(2 * k + 2) of an int32 latent: float64, not float32
            args = [_as_real(a) for a in args]
        random_size = None
        for k in fs.static:
            if k < len(args):
                if _random_size(e.args[k]) and random_size is None:
                    random_size = (k, args[k])  # a size that is a bounded discrete latent
                    args[k] = self.largest(e.args[k])
                    continue
                args[k] = static_int(args[k], e.args[k].span, "a size", self.ir.source, self.ir.filename)
        if any(isinstance(a, Padded) for a in args):
            return self._padded_builtin(e, fs, args)
        try:
            if random_size is not None:
                out = jnp.asarray(fs.fn(*args))
                return Padded(out, random_size[1], 0).rebuild(out)
            return fs.fn(*args)
        except (TypeError, ValueError) as exc:
            shapes = ", ".join(_fmt_shape(jnp.shape(a)) for a in args)
            raise self.err(f"{e.name} cannot take arguments of shapes {shapes}", e.span,
                           _shape_hint(exc) or f"check the arguments of {e.name}") from exc

    def _padded_builtin(self, e: N.Builtin, fs, args):
        """A builtin applied to an array whose length is random."""
        name = e.name
        if name in P.REDUCTIONS and len(args) == 1:
            out = P.reduce(name, args[0])
            if out is not None:
                return out
        if name in ELEMENTWISE:
            return P.lift(fs.fn, *args)
        if name in ("dot", "dot_product"):
            return jnp.dot(P.values(args[0]), P.values(args[1]))
        if name in ("cumsum", "cumulative_sum"):
            return args[0].rebuild(jnp.cumsum(args[0].values, axis=args[0].axis))
        if name == "spacings" and isinstance(args[0], Padded) and not any(isinstance(a, Padded) for a in args[1:]):
            # k active points give k + 1 gaps; the padding reads as points at hi (gaps of 0)
            x, lo, hi = args
            if x.ndim != 1:
                raise self.err("spacings takes a vector of sorted points", e.span)
            dt = jnp.result_type(x.dtype, float)
            hi_ = jnp.asarray(hi, dt)
            v = jnp.where(x.mask(), x.values.astype(dt), hi_)
            gaps = jnp.diff(jnp.concatenate([jnp.reshape(jnp.asarray(lo, dt), (1,)), v, jnp.reshape(hi_, (1,))]))
            return Padded(gaps, x.length + 1, 0).rebuild(gaps)
        if name == "piecewise_constant" and not isinstance(args[0], Padded):
            # only the active breaks count; values are read at 1 + (active breaks <= x)
            x, breaks, vals = args
            x = jnp.asarray(x)
            b = P.values(breaks)
            below = b <= x[..., None]
            if isinstance(breaks, Padded):
                below = below & breaks.mask()
            return jnp.asarray(P.values(vals))[jnp.sum(below, axis=-1)]
        if name in ("softmax", "log_softmax"):
            x = args[0]
            z = jnp.where(x.mask(), x.values, -jnp.inf)
            return x.rebuild(jax.nn.softmax(z) if name == "softmax" else jax.nn.log_softmax(z))
        raise self.err(f"{name} cannot take an array whose size is random", e.span,
                       "reductions (sum, mean, log_sum_exp …), elementwise functions, dot, "
                       "matrix products, spacings and piecewise_constant work on such arrays")

    def call_user(self, f: N.Function, args, call):
        if self.depth > 64:
            raise self.err(f"{f.name} calls itself too deeply (recursion is not supported)", call.span)
        env = {p.name: a for p, a in zip(f.params, args)}
        c = FunctionInterpreter(self.ir, env, self.depth + 1)
        value, done = c.body(f.body)
        if not done:
            raise self.err(f"{f.name} ended without returning a value", call.span)
        return value

    def _describe(self, e: N.Expr) -> str:
        if isinstance(e, N.Ref):
            return f'"{e.name}"'
        src = self.ir.source.splitlines()
        s = e.span
        if s is not None and s.line == s.end_line and 0 < s.line <= len(src):
            return f'"{src[s.line - 1][s.col - 1:s.end_col - 1]}"'
        return "a value"


# Real-valued elementwise functions: integer arguments are converted to the default real type
# first (JAX computes log, lgamma … of an int32 array in float32, and the size variables and
# other discrete latents are int32).
_REAL_VALUED = frozenset(n for n in ELEMENTWISE if not FUNCTIONS[n].integer) - {"abs", "fabs"}


def _as_real(a):
    if isinstance(a, Padded):
        return Padded(_as_real(a.values), a.length, a.axis) if _is_int(a.values) else a
    if isinstance(a, (bool, np.bool_)) or not _is_int(a):
        return a
    return float(a) if _is_static(a) else jnp.asarray(a, jnp.result_type(float))


class _RandomSlice:
    """`a:b` with b a random size: the largest slice, and the active length."""

    def __init__(self, start, stop, length):
        self.start, self.stop, self.length = start, stop, length


class FunctionInterpreter(Interpreter):
    """A function body: deterministic (no sites), returns a value. Loops follow their plans;
    a loop that returns from inside is unrolled."""

    def __init__(self, ir, env, depth):
        super().__init__(ir, env, (), depth)

    def child(self, env, handlers=None):
        c = FunctionInterpreter(self.ir, env, self.depth + 1)
        c.indices = self.indices
        return c

    def body(self, body):
        for s in body:
            if isinstance(s, N.Return):
                return self.expr(s.value), True
            if isinstance(s, N.Branch) and _returns(s):
                cond = self.expr(s.cond)
                if _is_static(cond) or _is_concrete(cond):
                    v, done = self.body(s.then if bool(cond) else s.orelse)
                    if done:
                        return v, True
                    continue
                a = FunctionInterpreter(self.ir, dict(self.env), self.depth + 1)
                b = FunctionInterpreter(self.ir, dict(self.env), self.depth + 1)
                va, da = a.body(s.then)
                vb, db = b.body(s.orelse)
                if da and db:
                    return jnp.where(cond, va, vb), True
                if da or db:
                    raise self.err("when an if returns on a value not known before inference, both "
                                   "branches must return", s.span)
                for n in set(a.env) & set(b.env):
                    if a.env[n] is not b.env[n]:
                        self.env[n] = jnp.where(cond, a.env[n], b.env[n])
                continue
            if isinstance(s, N.Loop) and s.plan.density == "unroll":
                lo, hi = self.loop_bounds(s)
                for t in range(lo, hi + 1):
                    self.env[s.var] = t
                    v, done = self.body(s.body)
                    if done:
                        return v, True
                continue
            self.stmt(s)
        return None, False


def _window_name(name: str) -> str:
    return name + "\x00rows"  # no program name can contain NUL


def _lag_of(e, var: str) -> int:
    """c for an index written `var - c` (c a constant ≥ 1), else 0."""
    if isinstance(e, N.Binary) and e.op == "-" and isinstance(e.left, N.Ref) and \
            e.left.name == var and isinstance(e.right, N.Const) and \
            isinstance(e.right.value, (int, np.integer)) and not isinstance(e.right.value, bool) \
            and e.right.value >= 1:
        return int(e.right.value)
    return 0


def _windowed_body(s: N.Loop, lags: Dict[str, int]):
    """The body of `s` reading and writing the windows of `lags`' arrays: `x[t, …]` becomes
    row lag + 1 of the window, `x[t - c, …]` row lag + 1 - c."""
    def slot(first):
        return N.Const(first.span, lags_of[0] + 1 - _lag_of(first, s.var), "int")

    def fn(node):
        if isinstance(node, N.Index) and isinstance(node.base, N.Ref) and node.base.name in lags:
            lags_of[0] = lags[node.base.name]
            return dataclasses.replace(
                node, base=dataclasses.replace(node.base, name=_window_name(node.base.name)),
                indices=(slot(node.indices[0]),) + tuple(node.indices[1:]))
        if isinstance(node, N.LValue) and node.name in lags and node.indices:
            lags_of[0] = lags[node.name]
            return dataclasses.replace(node, name=_window_name(node.name),
                                       indices=(slot(node.indices[0]),) + tuple(node.indices[1:]))
        if isinstance(node, N.Loop) and node.plan.density != "unroll":
            # planned again (inner loops first: transform goes bottom up): an inner loop that
            # fills row t from row t - 1 (`gamma[t, k]` from `gamma[t - 1, j]`) now reads and
            # writes distinct window rows, so its iterations may be independent. A loop whose
            # body holds a scan stays as planned (a vectorised body passes out its own element
            # writes only).
            nested = [x for st in node.body for x in walk(st) if isinstance(x, N.Loop)]
            if all(x.plan.density == x.plan.sample == "vectorize" for x in nested):
                new = plan_loop(node.var, node.body, names, fresh=True)
                return dataclasses.replace(node, plan=dataclasses.replace(
                    node.plan, density="vectorize" if new.density == "vectorize" else node.plan.density,
                    sample="vectorize" if new.sample == "vectorize" else node.plan.sample))
        return node

    lags_of = [0]
    names = {n for _, n, _, _ in events(s.body)} | {_window_name(n) for n in lags}
    return tuple(transform(x, fn) for x in s.body)


def _slices_as_arrays(idx, shape):
    """An index with slices as broadcasting index arrays (`x[:, i]` → `x[arange(n)[:], i]`),
    which selects the same elements in the same order when every other index is a scalar."""
    if not any(isinstance(i, slice) for i in idx):
        return idx
    slices = [k for k, i in enumerate(idx) if isinstance(i, slice)]
    out = []
    for k, i in enumerate(idx):
        if isinstance(i, slice):
            j = slices.index(k)
            r = jnp.arange(*i.indices(shape[k]))
            out.append(r.reshape((1,) * j + (r.shape[0],) + (1,) * (len(slices) - 1 - j)))
        else:
            out.append(jnp.asarray(i))
    return tuple(out)


def _align_batched(idx):
    """Index arrays stacked by a vmap (leading axis: the iterations) re-aligned so that each
    iteration's indices broadcast as they did within the iteration."""
    arrays = [jnp.asarray(i) for i in idx]
    rank = max(a.ndim - 1 for a in arrays)
    return tuple(a.reshape(a.shape[:1] + (1,) * (rank - (a.ndim - 1)) + a.shape[1:]) for a in arrays)


def _returns(s) -> bool:
    return any(isinstance(x, N.Return) for x in walk(s))


class UserDensity:
    """`y ~ foo(a, b)` where the program defines `foo_lpdf(y, a, b)`: density only."""
    user = True

    def __init__(self, interp: Interpreter, d: N.Dist, args):
        self.interp, self.node, self.args = interp, d, args
        fs = interp.ir.functions
        self.f = fs.get(d.name + "_lpdf") or fs[d.name + "_lpmf"]
        self.support = constraints.real
        self.batch_shape, self.event_shape = (), ()

    def log_prob(self, value):
        return self.interp.call_user(self.f, [value] + list(self.args), self.node)

    def shape(self):
        return ()


def pointwise_terms(it: Interpreter) -> Dict[str, Any]:
    """The pointwise terms of a run under `Pointwise`, scattered into one array per observed
    variable (its shape less its distribution's event dimensions): element i holds the log
    density of the observation of element i (0 where no statement observes it; −inf where a
    run-time index check failed). Variables whose terms cannot be split are left out."""
    info, out = it.pointwise_info, {}
    for name, positions, values in it.pointwise:
        if name in info.undefined:
            continue
        acc = out.get(name)
        if acc is None:
            acc = jnp.zeros(int(np.prod(info.shapes[name], dtype=int)), jnp.result_type(float))
        out[name] = acc.at[jnp.ravel(positions)].add(jnp.ravel(values))
    return {n: jnp.where(it.valid, a.reshape(info.shapes[n]), -jnp.inf) for n, a in out.items()}


def sampling_key(key):
    """A key numpyro's samplers accept: some (Poisson, Gamma-Poisson …) work only with the
    threefry generator, so an rbg key becomes a threefry one with the same entropy."""
    impl = str(jax.random.key_impl(key)) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else ""
    if "rbg" in impl:
        return jax.random.wrap_key_data(jax.random.key_data(key)[..., :2], impl="threefry2x32")
    return key


def _expand(d, shape):
    shape = tuple(shape)
    if d.event_shape:
        batch = shape[: len(shape) - len(d.event_shape)]
        return d.expand(jnp.broadcast_shapes(tuple(batch), d.batch_shape)) if batch else d
    return d.expand(jnp.broadcast_shapes(shape, d.batch_shape)) if shape else d


def _lowest(c):
    if c is None:
        return 0
    if isinstance(c, type(constraints.boolean)):
        return 0
    lo = getattr(c, "lower_bound", 0)
    try:
        return int(np.min(np.asarray(lo)))
    except Exception:  # noqa: BLE001
        return 0


def _span_key(span):
    return (span.line, span.col, span.end_line, span.end_col)


def _random_size(e) -> bool:
    """Whether a size expression reads a latent (a stochastic size)."""
    return any(isinstance(x, N.Ref) and x.role == "latent" for x in walk(e))


def _pad(value, axis, length):
    """A value site's value as a `Padded` array when its size is random."""
    if axis is None or isinstance(value, Padded):
        return value
    return Padded(value, length, axis).rebuild(value)


def _support_point(d, shape):
    """A point of the distribution's support, broadcast to `shape` (the bijection onto the
    support at 0)."""
    try:
        x = biject_to(d.support)(jnp.zeros(shape[len(shape) - len(d.event_shape) - 1:] if d.event_shape else ()))
        return jnp.broadcast_to(x, shape)
    except Exception:  # noqa: BLE001 - a support without a bijection (discrete): its lowest value
        return jnp.full(shape, _lowest(d.support))


def _padded_binary(op, a, b):
    if op == "@":
        va, vb = P.values(a), P.values(b)
        out = jnp.matmul(va, vb)
        contracted = (isinstance(a, Padded) and a.axis == a.ndim - 1) or \
            (isinstance(b, Padded) and b.axis == max(b.ndim - 2, 0))
        if contracted:
            return out  # zeros beyond the active part contribute nothing
        raise ValueError("a matrix product with an array whose size is random must sum over "
                         "that dimension")
    return P.lift(lambda x, y: _apply_binary(op, x, y), a, b)


def _apply_binary(op, a, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if _is_static(a) and _is_static(b):
            return a / b
        return jnp.true_divide(a, b)
    if op == "%":
        return a % b
    if op == "^":
        if _is_static(a) and _is_static(b):
            return a ** b
        return jnp.power(jnp.asarray(a, dtype=jnp.result_type(float)) if _is_int(a) else a, b)
    if op == "@":
        return jnp.matmul(a, b)
    if op in ("<", "<=", ">", ">=", "==", "!="):
        if _is_static(a) and _is_static(b):
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op]
        f = {"<": jnp.less, "<=": jnp.less_equal, ">": jnp.greater, ">=": jnp.greater_equal,
             "==": jnp.equal, "!=": jnp.not_equal}[op]
        return f(a, b)
    if op == "&&":
        return (a and b) if _is_static(a) and _is_static(b) else jnp.logical_and(a, b)
    if op == "||":
        return (a or b) if _is_static(a) and _is_static(b) else jnp.logical_or(a, b)
    raise ValueError(f"unknown operator {op}")


def _is_int(x):
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)


def _fmt_shape(shape) -> str:
    return "()" if not shape else "(" + ", ".join(str(d) for d in shape) + ")"


def _explain(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "Incompatible shapes" in msg or "broadcast" in msg.lower():
        return "the shapes do not match: " + msg
    return msg


def _shape_hint(e: Exception):
    msg = str(e)
    if "Incompatible shapes" in msg or "broadcast" in msg.lower():
        return ("check the sizes of the arrays in this statement (elementwise operations need equal "
                "or broadcastable shapes)")
    if "matmul" in msg or "dot_general" in msg:
        return 'for "@" the inner dimensions must agree'
    return None


# ---------------------------------------------------------------- arrays whose size is random
# When an array's length is a random variable every normalising constant that depends on the
# length is part of the density (the `mhg` pass compares densities across lengths):
# - `x: T[k] ~ f(...)`, f a distribution of one element: Π over the k active elements of f;
#   with bounds narrower than f's support each element's truncation normaliser
#   1 / P(lower < X < upper) (`real<lower=a, upper=b>[k] ~ normal(m, s)`);
# - `x: ordered[k] ~ f(...)`: the sorted values of k iid draws of f, density k!·Π f(x_j) on
#   x_1 < … < x_k (−inf off it);
# - `w: simplex[k] ~ dirichlet(alpha)`: the Dirichlet of the k active entries with its
#   normaliser Γ(Σα_j)/Π Γ(α_j), in the chart of the first k − 1 coordinates.
def _padded_exact_log_prob(d, decl, value: Padded, site_mask=None, bounds=(None, None)):
    n = value.length
    m = value.mask()
    if site_mask is not None:
        m = m & site_mask
    base = decl.base if decl is not None else "real"
    if type(d).__name__ == "Dirichlet":
        if value.axis != value.ndim - 1 or value.ndim != 1:
            raise ValueError("a simplex whose size is random must be a vector")
        mv = jnp.reshape(m, (-1,))
        a = jnp.broadcast_to(d.concentration, value.values.shape)
        w = jnp.where(mv, value.values, 1.0)
        ok = (jnp.abs(jnp.sum(jnp.where(mv, value.values, 0.0)) - 1.0) < 1e-6) & \
            jnp.all(jnp.where(mv, value.values >= 0, True))
        lp = gammaln(jnp.sum(jnp.where(mv, a, 0.0))) - jnp.sum(jnp.where(mv, gammaln(a), 0.0)) + \
            jnp.sum(jnp.where(mv, (a - 1.0) * jnp.log(w), 0.0))
        return jnp.where(ok, lp, -jnp.inf)
    if d.event_shape:
        raise ValueError(f"{type(d).__name__} on an array whose size is random: only "
                         "distributions of one element (iid) and dirichlet are supported")
    fill = jax.lax.stop_gradient(_support_point(d, value.values.shape))
    xs = jnp.where(m, value.values, fill)
    lp = jnp.broadcast_to(d.log_prob(xs), xs.shape)
    inside = d.support(xs)
    lp = jnp.where(inside, lp, -jnp.inf)
    total = jnp.sum(jnp.where(m, lp, 0.0))
    count = jnp.sum(jnp.broadcast_to(m, xs.shape))
    if (bounds[0] is not None or bounds[1] is not None) and not jnp.issubdtype(value.dtype, jnp.integer):
        total = total - _element_truncation(d, bounds, xs, m)
    if base == "ordered":
        v = value.values
        cap = v.shape[0]
        idx = jnp.arange(1, cap)
        ok = jnp.all(jnp.where(idx < n, v[1:] > v[:-1], True))
        total = jnp.where(ok, total + gammaln(count + 1.0), -jnp.inf)
    return total


def _element_truncation(d, bounds, xs, m):
    """Σ over active elements of log P(lower < X < upper) under their distribution (nothing
    where a declared bound is the distribution's own: `real<lower=0>[k] ~ gamma(a, b)`)."""
    lo, hi = bounds
    sup_lo = getattr(d.support, "lower_bound", None)
    sup_hi = getattr(d.support, "upper_bound", None)

    def same(b, s):
        return b is None or (s is not None and _is_static(b) and _is_static(s) and
                             np.all(np.asarray(b) == np.asarray(s)))
    if same(lo, sup_lo) and same(hi, sup_hi):
        return 0.0
    try:
        upper = 1.0 if same(hi, sup_hi) else d.cdf(jnp.broadcast_to(hi, xs.shape))
        lower = 0.0 if same(lo, sup_lo) else d.cdf(jnp.broadcast_to(lo, xs.shape))
    except NotImplementedError:
        raise ValueError(f"{type(d).__name__} has no CDF: its truncation by declared bounds "
                         "cannot be normalised for an array whose size is random") from None
    return jnp.sum(jnp.where(m, jnp.log(upper - lower), 0.0))


def _padded_prior_draw(d, decl, value, axis, length, key):
    """A prior draw of an array whose size is random, from `_sample`'s draw at the largest
    size: a Dirichlet over the active entries only; an ordered array sorted over them."""
    base = decl.base if decl is not None else "real"
    n = value.shape[axis]
    m = (jnp.arange(n) < length).reshape((n,) + (1,) * (value.ndim - axis - 1))
    if type(d).__name__ == "Dirichlet":
        g = jax.random.gamma(sampling_key(key), jnp.broadcast_to(d.concentration, value.shape))
        g = jnp.where(m, g, 0.0)
        return g / jnp.sum(g)
    if base == "ordered":
        return jnp.where(m, jnp.sort(jnp.where(m, value, jnp.inf)), 0.0)
    return value
