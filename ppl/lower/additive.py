"""Additive functionals of a state-space model's states, found in its `generated` block.

A generated quantity written as a sum (or mean) over the time index of an elementwise
expression of the states,

    generated {
      mean_vol = mean(exp(x / 2))                 # (1/T) Σ_t exp(x[t] / 2)
      persistence = sum(x[2:T] .* x[1:T-1])       # Σ_{t≥2} x[t] x[t-1]
    }

is S = Σ_t h_t(x_{t-1}, x_t), what PaRIS estimates E[S | y] of (ppl/algorithms/paris.py). Its
operands are whole state vectors or slices of them (lag 0 or 1 once aligned), data vectors or
slices (any offset), and scalars; its operations are arithmetic and the elementwise builtins.
`find` rewrites the expression into the per-step term h_t — each vector operand becomes its
element at step t, read through `LagWindow`s like the model's own `x[t]` / `x[t-1]`.

The same functional written as a loop, as in Stan, is found too:

    generated {
      ssq = 0
      for t in 2:T { ssq = ssq + (x[t] - x[t-1])^2 }
      ssq = ssq / (T - 1)                         # optional: a division by a fixed number
    }

(a constant start, accumulation loops whose summands read states only as x[t] and x[t-1],
and at most a final division by a number the data fix). `find` says, for every other
generated quantity, why it is not additive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp

from ..builtins.functions import ELEMENTWISE
from ..ir import nodes as N
from ..syntax.span import Span
from ..syntax.visit import children, walk
from .interpreter import LoweringError, static_int
from .statespace import LagWindow, SSMLowering

STEP = "__step"  # the time index in rewritten terms; not a legal identifier in the language
_ARITH = {"+", "-", "*", "/", "^", ".*", "./", ".^"}


@dataclass(frozen=True)
class Term:
    """scale · Σ_{t=lo..hi} expr, with the step index named `var` in expr."""
    expr: N.Expr
    var: str
    lo: int
    hi: int
    scale: float
    lag: bool  # reads some state at t-1


@dataclass(frozen=True)
class AdditiveFunctional:
    """S = offset + Σ over its terms."""
    name: str
    terms: Tuple[Term, ...]
    offset: float
    span: Span


class NotAdditive(Exception):
    pass


@dataclass
class _Operand:
    name: str
    state: bool
    start: int  # 1-based index of the operand's first element
    length: int
    node: N.Expr  # the Ref or slice it was read by


def _definitions(ir: N.ModelIR):
    """({generated name: [(statement, enclosing top-level loop or None)]} in order,
    {generated name: number of statements assigning it anywhere in the block})."""
    defs: Dict[str, list] = {}
    counts: Dict[str, int] = {}
    for s in ir.body:
        if not isinstance(s, N.Generated):
            continue
        for x in walk(s):
            if isinstance(x, (N.Let, N.Draw)):
                counts[x.target.name] = counts.get(x.target.name, 0) + 1
        for g in s.body:
            if isinstance(g, N.Let):
                defs.setdefault(g.target.name, []).append((g, None))
            elif isinstance(g, N.Loop):
                for b in g.body:
                    if isinstance(b, N.Let):
                        defs.setdefault(b.target.name, []).append((b, g))
    return defs, counts


def find(ssm: SSMLowering) -> Tuple[List[AdditiveFunctional], Dict[str, str]]:
    """(additive functionals, {other generated name: why not additive})."""
    found, other = [], {}
    defs, counts = _definitions(ssm.lowered.source_ir)
    for name, stmts in defs.items():
        v = ssm.lowered.ir.variables.get(name)
        if v is None or v.kind != "generated":  # values local to a loop, model variables
            continue
        try:
            if len(stmts) != counts.get(name, 0):
                raise NotAdditive("it is assigned inside a nested block")
            if len(stmts) == 1 and stmts[0][1] is None:
                s = stmts[0][0]
                value = s.value
                found.append(_vectorised(ssm, name, value, s.span))
            else:
                found.append(_accumulated(ssm, name, stmts))
        except NotAdditive as e:
            other[name] = str(e)
    return found, other


def _static_number(ssm, e) -> float:
    ev = ssm.static_evaluator()
    try:
        v = ev.expr(e)
        return float(v)
    except Exception:  # noqa: BLE001 — anything not fixed by the data
        raise NotAdditive("its start or final divisor is not a number fixed by the data") from None


def _accumulated(ssm, name, stmts) -> AdditiveFunctional:
    """`name = c`, then loops of `name = name + summand`, then optionally `name = name / d`."""
    first, loop = stmts[0]
    whole = not first.target.indices
    if loop is not None or not whole:
        raise NotAdditive("not a sum: it does not start from a constant before its loops")
    offset = _static_number(ssm, first.value)
    rest, divisor = list(stmts[1:]), 1.0
    last, last_loop = rest[-1] if rest else (None, None)
    if last is not None and last_loop is None and isinstance(last.value, N.Binary) and \
            last.value.op == "/" and _is_name(last.value.left, name):
        divisor = _static_number(ssm, last.value.right)
        rest = rest[:-1]
    if not rest:
        raise NotAdditive("not a sum over the time index")
    ev = ssm.static_evaluator()
    terms = []
    for s, loop in rest:
        v = s.value
        if loop is None or s.target.indices or not (isinstance(v, N.Binary) and v.op == "+"
                                                    and _is_name(v.left, name)):
            raise NotAdditive(f'line {s.span.line} is not an accumulation `{name} = {name} + …` '
                              "directly inside a loop over the time index")
        lag = _check_summand(ssm, v.right, loop.var, name)
        try:
            lo, hi = ev.loop_bounds(loop)
        except LoweringError:
            raise NotAdditive("its loop bounds are not fixed by the data") from None
        if lo < 1 or hi > ssm.T or (lag and lo < 2):
            raise NotAdditive("its loop runs outside the time steps")
        terms.append(Term(v.right, loop.var, lo, hi, 1.0 / divisor, lag))
    return AdditiveFunctional(name, tuple(terms), offset / divisor, stmts[0][0].span)


def _is_name(e, name):
    return isinstance(e, N.Ref) and e.name == name


def _check_summand(ssm, e, var, name) -> bool:
    """Whether the summand reads a state at t-1; NotAdditive if it reads states other than as
    x[t] / x[t-1], the quantity itself, or a name that is not data, a parameter or the index."""
    lag = False

    def visit(e):
        nonlocal lag
        if isinstance(e, N.Index) and isinstance(e.base, N.Ref) and e.base.name in ssm.form.state_vars:
            (i,) = e.indices if len(e.indices) == 1 else (None,)
            if _is_name(i, var):
                return
            if isinstance(i, N.Binary) and i.op == "-" and _is_name(i.left, var) and \
                    isinstance(i.right, N.Const) and i.right.value == 1:
                lag = True
                return
            raise NotAdditive(f'it reads "{e.base.name}" other than at the step or the step before')
        if isinstance(e, N.Ref):
            if e.name in ssm.form.state_vars:
                raise NotAdditive(f'its summand reads all of "{e.name}"')
            if e.name != var and e.name not in ssm.step_names:
                raise NotAdditive(f'its summand reads "{e.name}", which is not data, a static '
                                  "parameter or the loop index")
            return
        for child in children(e):
            visit(child)

    visit(e)
    return lag


def _vectorised(ssm: SSMLowering, name, value, span) -> AdditiveFunctional:
    if not (isinstance(value, N.Builtin) and value.name in ("sum", "mean") and len(value.args) == 1):
        raise NotAdditive("not a sum or mean over the time index")
    ev = ssm.static_evaluator()
    operands: List[_Operand] = []
    _collect(ssm, ev, value.args[0], operands)
    states = [o for o in operands if o.state]
    if not states:
        raise NotAdditive("reads no state variable")
    lengths = {o.length for o in operands}
    if len(lengths) != 1:
        raise NotAdditive("its vectors have different lengths")
    (length,) = lengths
    first = max(o.start for o in states)  # the step of the operands' first elements
    if any(first - o.start > 1 for o in states):
        raise NotAdditive("it pairs states more than one step apart")
    term = _rewrite(value.args[0], first, {id(o.node): o.start for o in operands})
    lo, hi = first, first + length - 1
    if lo < 1 or hi > ssm.T:
        raise NotAdditive("its steps fall outside 1..T")
    scale = 1.0 / length if value.name == "mean" else 1.0
    lag = any(first - o.start == 1 for o in states)
    return AdditiveFunctional(name, (Term(term, STEP, lo, hi, scale, lag),), 0.0, span)


def _rank(ssm, name) -> Optional[int]:
    v = ssm.lowered.ir.variables.get(name)
    return None if v is None else v.rank


def _vector(ssm, name) -> Optional[Tuple[bool, int]]:
    """(is a state, length) of a 1-D operand; None for a scalar."""
    if name in ssm.form.state_vars:
        return True, ssm.T
    if name in ssm.lowered.data_arrays:
        shape = ssm.lowered.data_arrays[name].shape
        if len(shape) == 0:
            return None
        if len(shape) == 1:
            return False, int(shape[0])
        raise NotAdditive(f'"{name}" has more than one dimension')
    for given in (ssm.lowered.static, ssm.lowered.fixed):
        if name in given and jnp.ndim(given[name]) == 0:
            return None
    if name not in ssm.lowered.static and name not in ssm.lowered.fixed and _rank(ssm, name) == 0 \
            and name in ssm.step_names:
        return None
    raise NotAdditive(f'"{name}" is neither a state, a data vector nor a scalar parameter')


def _collect(ssm, ev, e, out):
    if isinstance(e, N.Const):
        return
    if isinstance(e, N.Ref):
        v = _vector(ssm, e.name)
        if v is not None:
            out.append(_Operand(e.name, v[0], 1, v[1], e))
        return
    if isinstance(e, N.Index) and isinstance(e.base, N.Ref) and len(e.indices) == 1 \
            and isinstance(e.indices[0], N.Slice):
        v = _vector(ssm, e.base.name)
        if v is None:
            raise NotAdditive(f'"{e.base.name}" is a scalar')
        sl = e.indices[0]
        try:
            lo = 1 if sl.lo is None else static_int(ev.expr(sl.lo), sl.span, "a slice bound")
            hi = v[1] if sl.hi is None else static_int(ev.expr(sl.hi), sl.span, "a slice bound")
        except LoweringError:
            raise NotAdditive("a slice bound is not fixed by the data") from None
        out.append(_Operand(e.base.name, v[0], lo, hi - lo + 1, e))
        return
    if isinstance(e, N.Binary) and e.op in _ARITH:
        _collect(ssm, ev, e.left, out)
        _collect(ssm, ev, e.right, out)
        return
    if isinstance(e, N.Unary) and e.op == "-":
        _collect(ssm, ev, e.operand, out)
        return
    if isinstance(e, N.Builtin) and e.name in ELEMENTWISE:
        for a in e.args:
            _collect(ssm, ev, a, out)
        return
    raise NotAdditive("its summand is not elementwise in time (only arithmetic, elementwise "
                      "functions, vectors and their slices)")


def _at_step(name, offset, span):
    """`name[__step - offset]`."""
    step = N.Ref(span, STEP, "index")
    idx = step if offset == 0 else \
        N.Binary(span, "-" if offset > 0 else "+", step, N.Const(span, abs(offset), "int"))
    return N.Index(span, N.Ref(span, name), (idx,))


def _rewrite(e, first, starts):
    """The summand at step `__step`: element k of a vector operand (`starts`: its first
    element's index, by the node that reads it) is its element at step first - 1 + k."""
    if id(e) in starts:
        name = e.name if isinstance(e, N.Ref) else e.base.name
        return _at_step(name, first - starts[id(e)], e.span)
    if isinstance(e, N.Binary):
        op = {".*": "*", "./": "/", ".^": "^"}.get(e.op, e.op)
        return N.Binary(e.span, op, _rewrite(e.left, first, starts), _rewrite(e.right, first, starts))
    if isinstance(e, N.Unary):
        return N.Unary(e.span, e.op, _rewrite(e.operand, first, starts))
    if isinstance(e, N.Builtin):
        return N.Builtin(e.span, e.name, tuple(_rewrite(a, first, starts) for a in e.args))
    return e  # numbers and scalars


# ------------------------------------------------------------------------ per-step functions
def step_functions(ssm: SSMLowering, functionals: List[AdditiveFunctional]):
    """(initial_fn(x0, params), additive_fn(prev, x, k, params)) for ppl.algorithms.paris:
    each returns the vector of the functionals' terms at 0-based step k (model step k + 1)."""

    real = jnp.result_type(float)

    def terms(cur, prev, t, params):
        windows = {n: LagWindow(n, cur[n], None if prev is None else prev[n])
                   for n in ssm.form.state_vars}
        ev = ssm._ev(params, windows, t)
        out = []
        for f in functionals:
            total = jnp.asarray(f.offset if prev is None else 0.0, real)
            for term in f.terms:
                if prev is None and (term.lo > 1 or term.lag):
                    continue  # step 1 (only terms whose range starts there)
                ev.env[term.var] = t
                v = term.scale * jnp.asarray(ev.expr(term.expr), real)
                total = total + (v if prev is None else
                                 jnp.where((t >= term.lo) & (t <= term.hi), v, 0.0))
            out.append(total)
        return jnp.stack(out)

    def initial_fn(x0, params):
        return terms(x0, None, jnp.int32(1), params)

    def additive_fn(prev, x, k, params):
        return terms(x, prev, k + 1, params)

    return initial_fn, additive_fn


def along(ssm: SSMLowering, functionals, traj, params):
    """The functionals summed along one trajectory (leaves (T,)) — for validation."""
    initial_fn, additive_fn = step_functions(ssm, functionals)
    first = initial_fn({n: traj[n][0] for n in ssm.form.state_vars}, params)
    rest = jax.vmap(lambda k: additive_fn({n: traj[n][k - 1] for n in ssm.form.state_vars},
                                          {n: traj[n][k] for n in ssm.form.state_vars}, k, params))(
        jnp.arange(1, ssm.T, dtype=jnp.int32))
    return first + jnp.sum(rest, axis=0)
