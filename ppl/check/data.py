"""Data against declarations: presence, type, shape, finiteness, bounds.

Every problem is reported at the declaration it violates, naming the data file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..syntax import ast as A
from ..syntax.errors import PPLDataError, Warning_
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
        raise PPLDataError(f'data file "{path}" not found', None, "check the path given to --data")
    text = p.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        span = A.Span(e.lineno, e.colno, e.lineno, e.colno + 1)
        raise PPLDataError(f"the data file is not valid JSON: {e.msg}", span,
                           "data files use CmdStan's JSON layout: {\"N\": 3, \"y\": [1.0, 2.5, 0.3]}",
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


def _first_bad(mask: np.ndarray):
    bad = np.argwhere(~mask)
    if bad.size == 0:
        return None
    return "[" + ", ".join(str(i + 1) for i in bad[0]) + "]" if mask.ndim else ""


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
            arr = np.asarray(raw, dtype=float) if not isinstance(raw, np.ndarray) else raw.astype(float)
        except (TypeError, ValueError):
            raise err(f'data "{d.name}" is not numeric or is a ragged array', d.name_span,
                      f"it is declared {tt}") from None
        if arr.shape != shape:
            if arr.size == 1 and shape == () and arr.ndim <= 1:
                arr = arr.reshape(())
            elif arr.size == 0 and 0 in shape:
                arr = arr.reshape(shape)
            else:
                sizes = _size_note(d.type, values)
                raise err(f'data "{d.name}" has shape {_fmt_shape(arr.shape)} in {data_name}, but it is '
                          f"declared {tt}{sizes}, shape {_fmt_shape(shape)}", d.name_span,
                          "fix the data or the declared size")
        finite = np.isfinite(arr)
        if not finite.all():
            where = _first_bad(finite)
            bad = arr[tuple(np.argwhere(~finite)[0])] if arr.ndim else arr
            raise err(f'data "{d.name}{where}" is {bad} in {data_name}: data must be finite', d.name_span,
                      "remove or impute missing values before sampling")
        if d.type.base in ("int", "bool"):
            if not (arr == np.round(arr)).all():
                where = _first_bad(arr == np.round(arr))
                val = arr[tuple(np.argwhere(arr != np.round(arr))[0])] if arr.ndim else arr
                raise err(f'data "{d.name}{where}" is {val}, but "{d.name}" is declared {tt}',
                          d.name_span, "declare it real, or give integer values")
            arr = arr.astype(np.int64)
            if d.type.base == "bool" and not np.isin(arr, (0, 1)).all():
                raise err(f'data "{d.name}" must be 0 or 1 (declared bool)', d.name_span)
        for b in d.type.bounds:
            lim = np.asarray(ev(b.value), dtype=float)
            ok = arr >= lim if b.name == "lower" else arr <= lim
            if not np.all(ok):
                ok = np.broadcast_to(ok, arr.shape)
                where = _first_bad(ok)
                idx = tuple(np.argwhere(~ok)[0]) if arr.ndim else ()
                val = arr[idx] if arr.ndim else arr
                limv = np.broadcast_to(lim, arr.shape)[idx] if arr.ndim else lim
                rel = ">=" if b.name == "lower" else "<="
                raise err(f'data "{d.name}{where}" is {_num(val)}, outside its bounds: must be {rel} '
                          f"{_num(limv)}", b.span, f"it is declared {tt}")
        if d.type.base == "simplex":
            if not np.allclose(arr.sum(-1), 1.0, atol=1e-8) or (arr < 0).any():
                raise err(f'data "{d.name}" is not a simplex (non-negative, summing to 1)', d.name_span)
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
            arr = np.asarray(v, dtype=float)
            if not np.isfinite(arr).all():
                raise err(f'the value given for "{k}" is not finite', info.span)
            if info.ty.base == "int":
                arr = arr.astype(np.int64)
            fixed[k] = arr
        elif info is None:
            warnings.append(Warning_(f'{data_name} has "{k}", which the model does not declare: ignored'))
    return BoundData(static, arrays, fixed, warnings)


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
