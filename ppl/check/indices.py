"""Indices known from the data, checked against what they index when the data is bound.

JAX clamps an index that is out of range (and numpy wraps a negative one), so `mu[idx]` with a
0 or N+1 in the data would silently read the wrong element. Stan checks every index at run
time; here every index and slice bound that can be computed from the data alone, literals and
loop variables included, is computed when the data is bound and checked against the extent of
the dimension it indexes. The error names the datum and its first bad element, and points at
the index expression.

The walk is static and conservative: it follows loops (the loop variable over its whole range,
one "point" per iteration, nested loops multiplying the points) and if/else (the points where
the condition holds, when the condition is known from the data), binds values computed from
the data alone (`k = idx[i]`), and gives up quietly on anything it cannot compute: an index
that depends on a random variable is checked at run time, not here. Extents come from the
declared types (with the data's sizes) and from the data's own shapes.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..syntax import ast as A
from ..syntax.errors import source_line
from ..syntax.parser import recursion_headroom
from ..syntax.visit import walk

# More loop points than this (nested loops over large data) and the body is left to the
# run-time check: the static check must stay cheap.
MAX_POINTS = 2_000_000


class _Unknown(Exception):
    """Not computable from the data."""


class _Env:
    """The iteration points of the enclosing loops and the values known at each.

    Every value is an array whose first axis runs over the points (length `size`) or has
    length 1 (the same at every point: data, literals)."""

    def __init__(self, size: int, values: Dict[str, np.ndarray], loop_vars: Tuple[str, ...] = ()):
        self.size, self.values, self.loop_vars = size, values, loop_vars

    def select(self, rows: np.ndarray, extra: Optional[Dict[str, np.ndarray]] = None,
               loop_var: Optional[str] = None) -> "_Env":
        """The environment at the points `rows` (indices into the current points)."""
        values = {k: (v if v.shape[0] == 1 else v[rows]) for k, v in self.values.items()}
        values.update(extra or {})
        loops = self.loop_vars + ((loop_var,) if loop_var else ())
        return _Env(len(rows), values, loops)


def check_indices(checked, data_values: Dict[str, np.ndarray], shapes: Dict[str, tuple],
                  err: Callable, data_name: str) -> None:
    """Raise err(...) for the first index or slice bound, computable from the data, that is
    outside the extent it indexes."""
    with recursion_headroom():
        _Walker(checked, data_values, shapes, err, data_name).run()


class _Walker:
    def __init__(self, checked, data_values, shapes, err, data_name):
        self.checked, self.shapes, self.err, self.data_name = checked, dict(shapes), err, data_name
        self.source = checked.program.source
        self.data = {k: np.asarray(v) for k, v in data_values.items()}

    # ------------------------------------------------------------ statements
    def run(self):
        env = _Env(1, {k: v[None] for k, v in self.data.items()})
        self.block(self.checked.body, env, top=True)

    def block(self, body, env: _Env, top: bool = False):
        for s in body:
            if env.size == 0:
                return
            self.stmt(s, env, top)

    def stmt(self, s, env: _Env, top: bool):
        if isinstance(s, (A.DataDecl, A.ParamDecl, A.VarDecl)):
            self.type_exprs(s.type, env)
        if isinstance(s, A.VarDecl):
            if s.dist is not None:
                self.visit(s.dist, env)
            if s.value is not None:
                self.bind(s.name, s.value, env)
        elif isinstance(s, A.Sample):
            self.lvalue(s.target, env)
            self.visit(s.dist, env)
        elif isinstance(s, A.Assign):
            self.lvalue(s.target, env)
            if s.target.indices:
                self.visit(s.value, env)
                env.values.pop(s.target.name, None)  # changed element by element: not known
            else:
                self.bind(s.target.name, s.value, env)
        elif isinstance(s, A.TargetIncrement):
            self.visit(s.value, env)
        elif isinstance(s, A.For):
            self.loop(s, env)
        elif isinstance(s, A.If):
            self.branch(s, env)
        elif isinstance(s, A.Generated):
            self.block(s.body, env)

    def type_exprs(self, t: A.TypeExpr, env):
        for b in t.bounds:
            self.visit(b.value, env)
        for group in t.dims:
            for d in group:
                self.visit(d, env)

    def bind(self, name: str, value: A.Expr, env: _Env):
        v = self.visit(value, env)
        if v is None:
            env.values.pop(name, None)
        else:
            env.values[name] = v

    def lvalue(self, lv: A.LValue, env: _Env):
        if lv.indices:
            self.visit(A.Index(lv.span, A.Name(lv.span, lv.name), lv.indices), env)

    def loop(self, s: A.For, env: _Env):
        lo, hi = self.visit(s.lo, env), self.visit(s.hi, env)
        if lo is None or hi is None or lo.ndim != 1 or hi.ndim != 1:
            return  # bounds not known from the data: the body may not even run
        lo = np.broadcast_to(lo, (env.size,)).astype(np.int64)
        hi = np.broadcast_to(hi, (env.size,)).astype(np.int64)
        counts = np.clip(hi - lo + 1, 0, None)
        total = int(counts.sum())
        if total == 0 or total * max(1, len(env.values)) > MAX_POINTS:
            return
        rows = np.repeat(np.arange(env.size), counts)
        starts = np.cumsum(counts) - counts
        var = lo[rows] + (np.arange(total) - starts[rows])
        inner = env.select(rows, {s.var: var}, s.var)
        self.block(s.body, inner)

    def branch(self, s: A.If, env: _Env):
        cond = self.visit(s.cond, env)
        if cond is None or cond.ndim != 1:
            return  # which branch runs is not known from the data
        cond = np.broadcast_to(cond.astype(bool), (env.size,))
        for mask, body in ((cond, s.then), (~cond, s.orelse)):
            if body and mask.any():
                self.block(body, env.select(np.flatnonzero(mask)))

    # ------------------------------------------------------------ expressions
    def visit(self, e, env: _Env) -> Optional[np.ndarray]:
        """The value of e at every point, or None when it is not known from the data; every
        index inside e is checked either way."""
        try:
            return self.value(e, env)
        except _Unknown:
            return None
        except (ArithmeticError, ValueError, TypeError, IndexError, RuntimeError, MemoryError):
            # numpy refusing a value (more than 32 dimensions, a shape that does not fit …):
            # not computable here, as far as this check is concerned
            return None

    def value(self, e, env: _Env) -> np.ndarray:
        if isinstance(e, A.Num):
            return np.asarray([e.value])
        if isinstance(e, A.Bool):
            return np.asarray([e.value])
        if isinstance(e, A.Name):
            if e.id in env.values:
                return env.values[e.id]
            raise _Unknown
        if isinstance(e, A.UnOp):
            v = self.value(e.operand, env)
            if e.op == "-":
                return -v
            if e.op == "!":
                return np.logical_not(v)
            return v
        if isinstance(e, A.BinOp):
            a, b = self.visit(e.left, env), self.visit(e.right, env)
            if a is None or b is None:
                raise _Unknown
            return self.binop(e.op, a, b)
        if isinstance(e, A.Index):
            return self.index(e, env)
        if isinstance(e, A.ArrayLit):
            items = [self.visit(i, env) for i in e.items]
            if any(i is None for i in items) or not items:
                raise _Unknown
            try:
                items = np.broadcast_arrays(*items)
                return np.stack(items, axis=1)
            except ValueError:
                raise _Unknown from None
        if isinstance(e, A.Call):
            return self.call(e, env)
        if isinstance(e, A.Transpose):
            self.visit(e.operand, env)
        raise _Unknown

    @staticmethod
    def binop(op, a, b):
        with np.errstate(all="ignore"):
            try:
                if op in ("+", "-", "*", "%", "<", "<=", ">", ">=", "==", "!="):
                    if op == "%" and np.any(b == 0):
                        raise _Unknown
                    return {"+": np.add, "-": np.subtract, "*": np.multiply, "%": np.mod,
                            "<": np.less, "<=": np.less_equal, ">": np.greater,
                            ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}[op](a, b)
                if op == "/":
                    return np.true_divide(a, b)
                if op == "&&":
                    return np.logical_and(a, b)
                if op == "||":
                    return np.logical_or(a, b)
                if op == "^":
                    return np.power(np.asarray(a, dtype=float), b)
            except (ValueError, TypeError, OverflowError):
                pass
        raise _Unknown

    def call(self, e: A.Call, env: _Env) -> np.ndarray:
        args = [self.visit(a, env) for a in e.args]
        if e.given is not None:
            self.visit(e.given, env)
        if any(a is None for a in args) or e.func in self.checked.functions:
            raise _Unknown
        f, n = e.func, len(args)
        try:
            if f in ("min", "max") and n == 2:
                return (np.minimum if f == "min" else np.maximum)(*args)
            if f in ("min", "max", "sum", "prod") and n == 1 and args[0].ndim >= 1:
                red = {"min": np.min, "max": np.max, "sum": np.sum, "prod": np.prod}[f]
                if args[0].size == 0 and f in ("min", "max"):
                    raise _Unknown
                return red(args[0].reshape(args[0].shape[0], -1), axis=1)
            if f == "abs" and n == 1:
                return np.abs(args[0])
            if f == "size" and n == 1 and args[0].ndim >= 2:
                return np.asarray([args[0].shape[1]])
            if f == "num_elements" and n == 1:
                return np.asarray([int(np.prod(args[0].shape[1:]))])
            if f == "if_else" and n == 3:
                return np.where(*np.broadcast_arrays(*args))
        except ValueError:
            pass
        raise _Unknown

    # ------------------------------------------------------------ indexing
    def shape_of(self, e, env: _Env) -> Optional[tuple]:
        """The shape of e's value at one point, as far as it is known."""
        if isinstance(e, A.Name):
            if e.id in env.values:
                return env.values[e.id].shape[1:]
            return self.shapes.get(e.id)
        if isinstance(e, A.Index):
            base = self.shape_of(e.base, env)
            if base is None or len(e.indices) > len(base):
                return None
            out = []
            for k, i in enumerate(e.indices):
                if isinstance(i, A.Slice):
                    lo = self.same(i.lo, env, 1)
                    hi = self.same(i.hi, env, base[k])
                    if lo is None or hi is None:
                        return None
                    out.append(max(0, hi - lo + 1))
                else:
                    try:
                        v = self.value(i, env)
                    except _Unknown:
                        return None
                    out.extend(v.shape[1:])
            return tuple(out) + tuple(base[len(e.indices):])
        return None

    def same(self, e, env, default):
        """A slice bound that is one integer at every point, or None."""
        if e is None:
            return default
        try:
            v = self.value(e, env)
        except _Unknown:
            return None
        if v.ndim != 1 or v.size == 0 or not np.all(v == v[0]):
            return None
        return int(v[0])

    def index(self, e: A.Index, env: _Env) -> np.ndarray:
        base_value = self.visit(e.base, env)
        shape = self.shape_of(e.base, env)
        picks = []  # per index: ("one", array) | ("slice", lo, hi) | None when unknown
        for k, i in enumerate(e.indices):
            extent = shape[k] if shape is not None and k < len(shape) else None
            if isinstance(i, A.Slice):
                lo = self.visit(i.lo, env) if i.lo is not None else None
                hi = self.visit(i.hi, env) if i.hi is not None else None
                if extent is not None:
                    self.check_slice(e, k, i, lo, hi, extent, env)
                known = (i.lo is None or lo is not None) and (i.hi is None or hi is not None)
                picks.append(("slice", lo, hi) if known and extent is not None else None)
            else:
                v = self.visit(i, env)
                if v is not None and v.dtype.kind not in "iub":
                    v = None
                if v is not None and extent is not None:
                    self.check_one(e, k, i, v, extent, env)
                picks.append(("one", v) if v is not None and extent is not None else None)
        if base_value is None or any(p is None for p in picks):
            raise _Unknown
        return self.take(base_value, picks, shape, env)

    def take(self, base, picks, shape, env: _Env) -> np.ndarray:
        """base[picks] at every point (checked indices only): at most one array-valued index
        or slice, the others one integer per point."""
        size = env.size
        arrays, wide = [], 0
        for p in picks:
            if p[0] == "slice":
                lo = 1 if p[1] is None else p[1]
                hi = None if p[2] is None else p[2]
                lo_s = self.single(lo)
                hi_s = shape[len(arrays)] if hi is None else self.single(hi)
                if lo_s is None or hi_s is None:
                    raise _Unknown
                arrays.append(np.arange(lo_s - 1, max(lo_s - 1, hi_s))[None, :])
                wide += 1
            else:
                v = p[1].astype(np.int64) - 1
                wide += v.ndim > 1
                arrays.append(v)
        if wide > 1:
            raise _Unknown
        n_extra = max(a.ndim - 1 for a in arrays)
        idx = [a.reshape(a.shape + (1,) * (n_extra - (a.ndim - 1))) if a.ndim - 1 < n_extra else a
               for a in arrays]
        # each index keeps its point axis (1 or size) in front: the result's leading axis is
        # their broadcast, as the values' convention wants
        if base.shape[0] == 1:
            return base[0][tuple(idx)]
        points = np.arange(size).reshape((size,) + (1,) * n_extra)
        return base[(points,) + tuple(idx)]

    @staticmethod
    def single(v):
        v = np.asarray(v)
        if v.ndim == 0:
            return int(v)
        if v.ndim != 1 or v.size == 0 or not np.all(v == v[0]):
            return None
        return int(v[0])

    # ------------------------------------------------------------ the checks
    def check_one(self, e: A.Index, k: int, i, v: np.ndarray, extent: int, env: _Env):
        v = np.broadcast_to(v, (env.size,) + v.shape[1:]) if v.shape[0] == 1 else v
        bad = (v < 1) | (v > extent)
        if not bad.any():
            return
        pos = tuple(int(x) for x in np.argwhere(bad)[0])
        value = int(v[pos])
        self.report(e, k, i, pos, value, extent, env, "index")

    def check_slice(self, e, k, i: A.Slice, lo, hi, extent, env: _Env):
        n = env.size
        lo_v = np.ones(n, dtype=np.int64) if i.lo is None else lo
        hi_v = np.full(n, extent, dtype=np.int64) if i.hi is None else hi
        if lo_v is None or hi_v is None or lo_v.ndim != 1 or hi_v.ndim != 1:
            return
        lo_v, hi_v = np.broadcast_to(lo_v, (n,)), np.broadcast_to(hi_v, (n,))
        live = lo_v <= hi_v  # an empty slice (lo > hi) reads nothing
        for part, vals, bad in ((i.lo, lo_v, live & (lo_v < 1)), (i.hi, hi_v, live & (hi_v > extent)),
                                (i.lo, lo_v, live & (lo_v > extent)), (i.hi, hi_v, live & (hi_v < 1))):
            if part is not None and bad.any():
                p = int(np.flatnonzero(bad)[0])
                self.report(e, k, part, (p,), int(vals[p]), extent, env,
                            "slice start" if part is i.lo else "slice end")

    def report(self, e: A.Index, k: int, i, pos, value, extent, env: _Env, what: str):
        point = pos[0]
        element = pos[1:]
        subject, from_data = self.describe(i, point, element, env)
        where = ""
        if not from_data:
            at = [f"{name} = {int(env.values[name][point])}" for name in env.loop_vars
                  if not (isinstance(i, A.Name) and i.id == name)]
            where = f" (at {', '.join(at)})" if at else ""
        base = f'"{e.base.id}"' if isinstance(e.base, A.Name) else "the indexed value"
        dim = f"dimension {k + 1} of " if len(e.indices) > 1 or k > 0 else ""
        runs = f"has indices 1 to {extent}" if extent > 0 else "is empty"
        in_data = f" in {self.data_name}" if from_data else ""
        said = f"{value}" if subject is None else f"{subject} is {value}{in_data}"
        message = f"{what} out of range: {said}{where}, but {dim}{base} {runs}"
        raise self.err(message, i.span, self.hint(e, k, value, extent))

    def describe(self, i, point: int, element: tuple, env: _Env):
        """(how to name the index, whether that name is a datum)."""
        if isinstance(i, A.Name) and i.id in self.data and i.id not in env.loop_vars:
            sub = "[" + ", ".join(str(x + 1) for x in element) + "]" if element else ""
            return f'"{i.id}{sub}"', True
        if isinstance(i, A.Index) and isinstance(i.base, A.Name) and i.base.id in self.data \
                and all(not isinstance(j, A.Slice) for j in i.indices):
            at = []
            for j in i.indices:
                v = self.visit(j, env)
                if v is None or v.ndim != 1:
                    at = None
                    break
                at.append(int(v[point if v.shape[0] > 1 else 0]))
            if at is not None:
                return f'"{i.base.id}[{", ".join(map(str, at))}]"', True
        if isinstance(i, (A.Num, A.UnOp)) and not any(isinstance(x, A.Name) for x in walk(i)):
            return None, False  # a literal: its value says it all
        if isinstance(i, A.Name) and element:  # an array computed from the data: its element
            return f'"{i.id}[' + ", ".join(str(x + 1) for x in element) + ']"', False
        text = _text(i, self.source)
        return (f'"{text}"' if text else "the index"), False

    @staticmethod
    def mentions(e, name: str) -> bool:
        return any(isinstance(x, A.Name) and x.id == name for x in walk(e))

    def hint(self, e: A.Index, k: int, value: int, extent: int) -> str:
        start = "indices start at 1" if value < 1 else f"the last index is {extent}"
        if isinstance(e.base, A.Name):
            info = self.checked.variables.get(e.base.id)
            if info is not None and info.type is not None:
                t = _text(info.type, self.source)
                sizes = _sizes(info.type, self.data)
                declared = f'"{e.base.id}" is declared {t}{sizes} (line {info.span.line})' if t else ""
                if declared:
                    return f"{declared}; {start}"
            if e.base.id in self.data:
                return f'"{e.base.id}" has shape {tuple(self.data[e.base.id].shape)} in ' \
                       f"{self.data_name}; {start}"
        return start


def _text(e, source: str) -> Optional[str]:
    sp = getattr(e, "span", None)
    if sp is None or sp.line <= 0 or sp.line != sp.end_line:
        return None
    line = source_line(source, sp.line)
    return line[sp.col - 1:sp.end_col - 1] if line is not None else None


def _sizes(t: A.TypeExpr, data) -> str:
    names = []
    for g in t.dims:
        for d in g:
            for x in walk(d):
                if isinstance(x, A.Name) and x.id in data and data[x.id].ndim == 0 \
                        and f"{x.id} = {int(data[x.id])}" not in names:
                    names.append(f"{x.id} = {int(data[x.id])}")
    return f" with {', '.join(names)}" if names else ""
