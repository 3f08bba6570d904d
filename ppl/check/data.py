"""Data against declarations: presence, type, shape, finiteness, bounds.

Every problem is reported at the declaration it violates, naming the data file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ..syntax import ast as A
from ..syntax.errors import PPLDataError, Warning_, did_you_mean
from .checker import CheckedProgram


@dataclass
class BoundData:
    static: Dict[str, int]  # integer scalars: sizes known at compile time
    arrays: Dict[str, np.ndarray]  # everything else, passed to compiled code as arguments
    fixed: Dict[str, np.ndarray] = field(default_factory=dict)  # random variables held fixed
    warnings: List[Warning_] = field(default_factory=list)

    def values(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(self.arrays)
        out.update(self.static)
        return out


def load_json(path: str) -> Dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a data file" if p.is_dir() else "not found"
        hint = "check the path given to --data"
        if not p.is_dir() and p.parent.is_dir():
            near = did_you_mean(p.name, [q.name for q in p.parent.glob("*.json")])
            if near:
                hint = near
        raise PPLDataError(f"data file {what}", None, hint, None, str(path))
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PPLDataError(f"cannot read the data file: {e}", None, None, None, str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        span = A.Span(e.lineno, e.colno, e.lineno, e.colno + 1)
        hint = "data files use CmdStan's JSON layout: {\"N\": 3, \"y\": [1.0, 2.5, 0.3]}"
        lines = text.splitlines()
        if e.msg == "Expecting ',' delimiter" and 0 < e.lineno <= len(lines) \
                and not lines[e.lineno - 1][:e.colno - 1].strip() and e.lineno > 1:
            prev = e.lineno - 1
            while prev > 1 and not lines[prev - 1].strip():
                prev -= 1
            hint = f'is a "," missing at the end of line {prev}?'
        elif e.msg.startswith("Expecting property name") and text[:e.pos].rstrip().endswith(","):
            hint = 'JSON allows no "," after the last entry of an object or array'
        elif "'" in text and e.msg.startswith("Expecting property name"):
            hint = "JSON names and strings use double quotes"
        raise PPLDataError(f"the data file is not valid JSON: {e.msg}", span, hint,
                           text, str(path)) from None
    if not isinstance(data, dict):
        raise PPLDataError("the data file must hold a JSON object of named values", A.Span(1, 1, 1, 2),
                           'e.g. {"N": 3, "y": [1, 2, 3]}', text, str(path))
    return data


class _ConstEval:
    """Evaluates size and bound expressions from data alone."""

    def __init__(self, values, err):
        self.values, self.err = values, err

    def __call__(self, e):
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Name):
            if e.id not in self.values:
                raise self.err(f'"{e.id}" is not known from the data here', e.span,
                               "sizes and data bounds may only use data declared above")
            return self.values[e.id]
        if isinstance(e, A.UnOp):
            v = self(e.operand)
            return -v if e.op == "-" else v
        if isinstance(e, A.BinOp):
            a, b = self(e.left), self(e.right)
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                   "^": np.power, "%": np.mod}
            if e.op in ops:
                r = ops[e.op](a, b)
                if e.op == "/" and isinstance(a, int) and isinstance(b, int) and a % b == 0:
                    r = a // b
                return r.item() if isinstance(r, np.generic) else r
        if isinstance(e, A.Index):
            base = np.asarray(self(e.base))
            idx = []
            for i in e.indices:
                if isinstance(i, A.Slice):
                    lo = 1 if i.lo is None else self(i.lo)
                    hi = None if i.hi is None else self(i.hi)
                    idx.append(slice(lo - 1, hi))
                else:
                    idx.append(int(self(i)) - 1)
            return base[tuple(idx)]
        if isinstance(e, A.Call) and e.func in ("max", "min", "sum", "size", "num_elements",
                                                 "sqrt", "exp", "log"):
            args = [np.asarray(self(a)) for a in e.args]
            f = {"max": np.max, "min": np.min, "sum": np.sum, "size": lambda x: len(x),
                 "num_elements": np.size, "sqrt": np.sqrt, "exp": np.exp, "log": np.log}[e.func]
            r = f(*args) if e.func not in ("max", "min") or len(args) == 1 else \
                (np.maximum if e.func == "max" else np.minimum)(*args)
            return r.item() if isinstance(r, np.generic) else r
        raise self.err("this expression cannot be computed from the data", e.span,
                       "sizes use integer data, literals and + - * /")


def _shape_of_type(t: A.TypeExpr, ev) -> tuple:
    dims = [tuple(ev(d) for d in g) for g in t.dims]
    for g, group in zip(dims, t.dims):
        for v, d in zip(g, group):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ev.err("an array size must be an integer", d.span)
            if v < 0:
                raise ev.err(f"an array size must not be negative (it is {v})", d.span)
    if t.base in ("simplex", "ordered", "positive_ordered", "unit_vector"):
        return tuple(x for g in dims[1:] for x in g) + (dims[0][0],)
    if t.base in ("cov_matrix", "corr_matrix", "corr_cholesky", "cholesky_factor_corr",
                  "cholesky_cov", "cholesky_factor_cov"):
        k = dims[0][0]
        return tuple(x for g in dims[1:] for x in g) + (k, dims[0][1] if len(dims[0]) > 1 else k)
    return tuple(int(x) for g in dims for x in g)


def _type_text(t: A.TypeExpr, source: str) -> str:
    lines = source.splitlines()
    s = t.span
    if s.line == s.end_line and 0 < s.line <= len(lines):
        return lines[s.line - 1][s.col - 1:s.end_col - 1]
    return t.base


def _first_bad(mask: np.ndarray) -> str:
    """The 1-based index of the first False element, as text ("" for a scalar)."""
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return ""
    bad = np.argwhere(~mask)
    if bad.size == 0:
        return ""
    return "[" + ", ".join(str(i + 1) for i in bad[0]) + "]"


def _first_non_number(raw, where=()):
    """The index path and value of the first element that is not a number (JSON string, null,
    object), or None when the nesting is the problem (a ragged array)."""
    if isinstance(raw, (list, tuple)):
        for i, x in enumerate(raw):
            r = _first_non_number(x, where + (i + 1,))
            if r is not None:
                return r
        return None
    if isinstance(raw, bool) or isinstance(raw, (int, float, np.number)):
        return None
    return where, raw


def _json_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "an object"
    return repr(v)


def _value_text(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return _num(v)


def bind_data(checked: CheckedProgram, data: Dict[str, Any], data_name: str = "the data") -> BoundData:
    src, fname = checked.program.source, checked.program.filename

    def err(msg, span, hint=None):
        return PPLDataError(msg, span, hint, src, fname)

    values: Dict[str, Any] = {}
    static: Dict[str, int] = {}
    arrays: Dict[str, np.ndarray] = {}
    ev = _ConstEval(values, err)
    ev.err = err
    declared = [s for s in checked.body if isinstance(s, A.DataDecl)]
    for d in declared:
        tt = _type_text(d.type, src)
        if d.name not in data:
            raise err(f'data "{d.name}" is missing from {data_name}', d.name_span,
                      f'add "{d.name}" ({tt}) to {data_name}')
        raw = data[d.name]
        shape = _shape_of_type(d.type, ev)
        try:
            if raw is None or isinstance(raw, (str, dict)):
                raise TypeError
            arr = np.asarray(raw, dtype=float) if not isinstance(raw, np.ndarray) else raw.astype(float)
        except (TypeError, ValueError):
            bad = _first_non_number(raw)
            if bad is not None:
                where = "[" + ", ".join(map(str, bad[0])) + "]" if bad[0] else ""
                raise err(f'data "{d.name}{where}" is {_json_text(bad[1])} in {data_name}: data must be '
                          "numbers", d.name_span,
                          f'"{d.name}" is declared {tt}; JSON strings, null and objects are not data') \
                    from None
            raise err(f'data "{d.name}" is a ragged array in {data_name}: its rows have different '
                      "lengths", d.name_span, f'"{d.name}" is declared {tt}, a rectangular array') \
                from None
        if arr.shape != shape:
            if arr.size == 1 and shape == () and arr.ndim <= 1:
                arr = arr.reshape(())
            elif arr.size == 0 and 0 in shape:
                arr = arr.reshape(shape)
            else:
                sizes = _size_note(d.type, values)
                raise err(f'data "{d.name}" has shape {_fmt_shape(arr.shape)} in {data_name}, but it is '
                          f"declared {tt}{sizes}: shape {_fmt_shape(shape)}", d.name_span,
                          _shape_hint(d, arr.shape, shape, values, checked, data_name))
        finite = np.isfinite(arr)
        if not finite.all():
            where = _first_bad(finite)
            bad = arr[tuple(np.argwhere(~finite)[0])] if arr.ndim else arr
            hint = ("ppl has no missing values: remove or impute them before sampling"
                    if math.isnan(float(bad)) else f'every value of "{d.name}" must be a finite number')
            raise err(f'data "{d.name}{where}" is {_value_text(bad)} in {data_name}: data must be '
                      "finite", d.name_span, hint)
        if d.type.base in ("int", "bool"):
            if not (arr == np.round(arr)).all():
                where = _first_bad(arr == np.round(arr))
                val = arr[tuple(np.argwhere(arr != np.round(arr))[0])] if arr.ndim else arr
                raise err(f'data "{d.name}{where}" is {_value_text(val)} in {data_name}, but "{d.name}" '
                          f"is declared {tt}", d.name_span,
                          "give integer values, or declare it real if it is not a count or a size")
            arr = arr.astype(np.int64)
            if d.type.base == "bool" and not np.isin(arr, (0, 1)).all():
                where = _first_bad(np.isin(arr, (0, 1)))
                raise err(f'data "{d.name}{where}" must be 0 or 1: it is declared {tt}', d.name_span,
                          "write true/false or 0/1")
        for b in d.type.bounds:
            lim = np.asarray(ev(b.value), dtype=float)
            try:
                ok = np.broadcast_to(arr >= lim if b.name == "lower" else arr <= lim, arr.shape)
            except ValueError:
                raise err(f'the {b.name} bound of "{d.name}" has shape {_fmt_shape(lim.shape)}, which does '
                          f"not fit its shape {_fmt_shape(arr.shape)}", b.span) from None
            if not np.all(ok):
                where = _first_bad(ok)
                idx = tuple(np.argwhere(~ok)[0]) if arr.ndim else ()
                val = arr[idx] if arr.ndim else arr
                limv = np.broadcast_to(lim, arr.shape)[idx] if arr.ndim else lim
                side = "below its lower" if b.name == "lower" else "above its upper"
                btxt = _expr_text(b.value, src)
                bound = _num(limv) if btxt is None or btxt == _num(limv) else f"{btxt} = {_num(limv)}"
                raise err(f'data "{d.name}{where}" is {_num(val)} in {data_name}, {side} bound {bound}',
                          b.span, f'"{d.name}" is declared {tt}; fix the data or the bound')
        if d.type.base == "simplex":
            if not np.allclose(arr.sum(-1), 1.0, atol=1e-8) or (arr < 0).any():
                raise err(f'data "{d.name}" is not a simplex (non-negative, summing to 1)', d.name_span,
                          f'"{d.name}" is declared {tt}')
        if d.type.base == "int" and arr.ndim == 0:
            static[d.name] = int(arr)
            values[d.name] = int(arr)
        else:
            arrays[d.name] = arr
            values[d.name] = arr
    fixed, warnings = {}, []
    for k, v in data.items():
        if k in values:
            continue
        info = checked.variables.get(k)
        if info is not None and info.kind in ("latent", "param"):
            try:
                if v is None or isinstance(v, (str, dict)):
                    raise TypeError
                arr = np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise err(f'the value given for "{k}" in {data_name} is not a number or an array of '
                          "numbers", info.span, f'"{k}" is a {info.kind}; a value given in the data '
                          "holds it fixed") from None
            if not np.isfinite(arr).all():
                raise err(f'the value given for "{k}" in {data_name} is not finite', info.span)
            if info.ty.base == "int":
                arr = arr.astype(np.int64)
            fixed[k] = arr
        elif info is None:
            warnings.append(Warning_(f'{data_name} has "{k}", which the model does not declare: ignored'))
    _check_observed_support(checked, values, err, data_name)
    return BoundData(static, arrays, fixed, warnings)


# Supports that do not depend on the arguments, in words, with a numpy test.
_SUPPORTS = [
    ("nonnegative_integer", "non-negative integers (0, 1, 2, …)", lambda x: (x >= 0) & (x == np.round(x))),
    ("positive_integer", "positive integers (1, 2, …)", lambda x: (x >= 1) & (x == np.round(x))),
    ("boolean", "0 or 1", lambda x: (x == 0) | (x == 1)),
    ("positive", "positive numbers", lambda x: x > 0),
    ("nonnegative", "non-negative numbers", lambda x: x >= 0),
    ("unit_interval", "numbers between 0 and 1", lambda x: (x >= 0) & (x <= 1)),
]


def _check_observed_support(checked: CheckedProgram, values, err, data_name):
    """Whole data arrays observed at the top level (`k ~ poisson(lambda)`) must lie in the support
    of their distribution when it is fixed: found here, before any compilation, with the index
    and value of the first offending element. (Element-wise observations in loops are checked
    after lowering.)"""
    try:
        from numpyro.distributions import constraints
        from ..builtins.distributions import DISTRIBUTIONS, static_support
    except ImportError:  # pragma: no cover
        return
    for s in checked.body:
        if not isinstance(s, A.Sample) or s.target.indices or s.target.name not in values:
            continue
        spec = DISTRIBUTIONS.get(s.dist.func)
        if spec is None:
            continue
        try:
            sup = static_support(spec)
        except Exception:  # a distribution that cannot be built with placeholder arguments
            continue
        for cname, words, test in _SUPPORTS:
            if sup is getattr(constraints, cname, None):
                arr = np.asarray(values[s.target.name], dtype=float)
                ok = test(arr)
                if not np.all(ok):
                    where = _first_bad(ok)
                    val = arr[tuple(np.argwhere(~np.asarray(ok))[0])] if arr.ndim else arr
                    name = s.target.name
                    raise err(f'observed "{name}{where}" is {_num(val)} in {data_name}, outside the '
                              f"support of {spec.name}", s.dist.func_span,
                              f"{spec.name} is a distribution over {words}; check the data for "
                              f'"{name}" or the choice of distribution')
                break


def _expr_text(e, source: str):
    sp = getattr(e, "span", None)
    if sp is None or sp.line <= 0 or sp.line != sp.end_line:
        return None
    lines = source.splitlines()
    return lines[sp.line - 1][sp.col - 1:sp.end_col - 1] if sp.line <= len(lines) else None


def _shape_hint(d: A.DataDecl, got, want, values, checked: CheckedProgram, data_name):
    if len(got) != len(want):
        n = len(want)
        return (f'"{d.name}" is declared with {n} dimension{"" if n == 1 else "s"}, but the data has '
                f"{len(got)}")
    sizes = [x for g in d.type.dims for x in g]
    for k, (g, w) in enumerate(zip(got, want)):
        if g != w and k < len(sizes) and len(sizes) == len(want) and isinstance(sizes[k], A.Name):
            size = sizes[k].id
            info = checked.variables.get(size)
            line = f" (line {info.span.line})" if info is not None else ""
            where = "" if len(want) == 1 else f" along dimension {k + 1}"
            return (f'"{size}" is {w} in {data_name}{line.replace(" (line", " (declared at line")}, '
                    f'but "{d.name}" has {g} values{where}: make them agree')
    return "fix the data or the declared size"


def _num(v):
    v = float(v)
    return str(int(v)) if v == int(v) else repr(v)


def _fmt_shape(shape):
    if shape == ():
        return "() (a single value)"
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _size_note(t: A.TypeExpr, values):
    names = []
    for g in t.dims:
        for d in g:
            if isinstance(d, A.Name) and d.id in values:
                names.append(f"{d.id} = {values[d.id]}")
    return f" with {', '.join(names)}" if names else ""
