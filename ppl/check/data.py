"""Data against declarations: presence, type, shape, finiteness, bounds.

Every problem is reported at the declaration it violates, naming the data file.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from numpyro.distributions import constraints

from ..builtins.distributions import DISTRIBUTIONS, static_support
from ..syntax import ast as A
from ..syntax.errors import (
    PPLDataError,
    Warning_,
    did_you_mean,
    source_line,
    source_lines,
)
from ..syntax.parser import decode_source, recursion_headroom
from .checker import CheckedProgram
from .indices import check_indices


@dataclass
class BoundData:
    static: Dict[str, int]  # integer scalars: sizes known at compile time
    arrays: Dict[str, np.ndarray]  # everything else, passed to compiled code as arguments
    fixed: Dict[str, np.ndarray] = field(default_factory=dict)  # random variables held fixed
    warnings: List[Warning_] = field(default_factory=list)
    # the shape of every variable the data fixes it for: data, and typed random and computed
    # variables whose sizes are data (for memory estimates and index checks)
    shapes: Dict[str, tuple] = field(default_factory=dict)

    def values(self) -> Dict[str, Any]:
        out: Dict[str, Any] = dict(self.arrays)
        out.update(self.static)
        return out


# Data arrays have a few dimensions; deeper nesting is a broken or hostile file, and the JSON
# parser would recurse once per level.
MAX_JSON_DEPTH = 64
INT64_MAX = 2**63 - 1
_LAYOUT = "data files use CmdStan's JSON layout: {\"N\": 3, \"y\": [1.0, 2.5, 0.3]}"


class HugeInt(str):
    """A JSON integer too long for Python's int() (over 4,300 digits): kept as its text."""


def _parse_int(text: str):
    return int(text) if len(text) <= 4000 else HugeInt(text)


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _find_duplicate(text: str):
    """(key, position of its second occurrence, position of the first) in the same object."""
    stack = []
    tokens = re.finditer(r'"(?:[^"\\]|\\.)*"\s*:?|[{}\[\]]', text)
    for m in tokens:
        tok = m.group()
        if tok == "{":
            stack.append({})
        elif tok == "[":
            stack.append(None)
        elif tok in "}]":
            if stack:
                stack.pop()
        elif tok.endswith(":") and stack and stack[-1] is not None:
            try:
                key = json.loads(tok[:-1].rstrip())
            except ValueError:
                continue
            if key in stack[-1]:
                return key, m.start(), stack[-1][key]
            stack[-1][key] = m.start()
    return None


def _line_col(text: str, pos: int):
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _too_deep(text: str):
    """The position where arrays or objects nest deeper than MAX_JSON_DEPTH, or None."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return None
    blank = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: " " * len(m.group()), text).encode("utf-8")
    depth, chunk = 0, 1 << 20
    for at in range(0, len(blank), chunk):  # in pieces: a large file needs no large temporaries
        b = np.frombuffer(blank, dtype=np.uint8, count=min(chunk, len(blank) - at), offset=at)
        step = ((b == ord("[")) | (b == ord("{"))).astype(np.int32) \
            - ((b == ord("]")) | (b == ord("}"))).astype(np.int32)
        level = depth + np.cumsum(step)
        deep = np.flatnonzero(level > MAX_JSON_DEPTH)
        if deep.size:
            return len(blank[:at + int(deep[0])].decode("utf-8", errors="replace"))
        depth = int(level[-1]) if level.size else depth
    return None


def load_json(path: str) -> Dict[str, Any]:
    """The data file as a dict, or a framed PPLDataError: missing, unreadable, empty, not
    UTF-8, not JSON, nested absurdly deep, not an object, or with a name given twice."""
    p = Path(path)
    if p.is_dir() or not p.exists():
        what = "is a directory, not a data file" if p.is_dir() else "not found"
        hint = "check the path given to --data"
        if not p.is_dir() and p.parent.is_dir():
            near = did_you_mean(p.name, [q.name for q in p.parent.glob("*.json")])
            if near:
                hint = near
        raise PPLDataError(f"data file {what}", None, hint, None, str(path))
    try:
        raw = p.read_bytes()  # not only regular files: /dev/stdin and pipes are data too
    except OSError as e:
        raise PPLDataError(f"cannot read the data file: {e.strerror or e}", None,
                           "check the path given to --data and its permissions", None,
                           str(path)) from None
    text = decode_source(raw, str(path), PPLDataError, "data")
    if not text.strip():
        raise PPLDataError("the data file is empty", None, _LAYOUT, None, str(path))
    deep = _too_deep(text)
    if deep is not None:
        line, col = _line_col(text, deep)
        raise PPLDataError(f"the data file nests arrays or objects more than {MAX_JSON_DEPTH} "
                           "levels deep", A.Span(line, col, line, col + 1),
                           "data values are numbers and rectangular arrays of numbers", text,
                           str(path))
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_parse_int)
    except _Duplicate as d:
        found = _find_duplicate(text)
        key = str(d)
        span, hint = None, "each name appears once in a data file (CmdStan rejects repeats too)"
        if found is not None:
            key, pos, first = found
            line, col = _line_col(text, pos)
            span = A.Span(line, col, line, col + len(json.dumps(key)))
            hint = (f'the first "{key}" is at line {_line_col(text, first)[0]}; each name appears '
                    "once in a data file (CmdStan rejects repeats too)")
        raise PPLDataError(f'"{key}" is given twice in the data file', span, hint, text,
                           str(path)) from None
    except json.JSONDecodeError as e:
        span = A.Span(e.lineno, e.colno, e.lineno, e.colno + 1)
        hint = _LAYOUT
        lines = source_lines(text)
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
    except RecursionError:  # pragma: no cover - _too_deep comes first
        raise PPLDataError("the data file nests arrays or objects too deeply", None,
                           "data values are numbers and rectangular arrays of numbers", None,
                           str(path)) from None
    if not isinstance(data, dict):
        raise PPLDataError("the data file must hold a JSON object of named values", A.Span(1, 1, 1, 2),
                           'e.g. {"N": 3, "y": [1, 2, 3]}', text, str(path))
    return data


class NotFromData(PPLDataError):
    """A size or bound that needs more than the data (a random variable, a later datum)."""


class _ConstEval:
    """Evaluates size and bound expressions from data alone."""

    def __init__(self, values, err):
        self.values, self.err = values, err

    def __call__(self, e):
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Name):
            if e.id not in self.values:
                error = self.err(f'"{e.id}" is not known from the data here', e.span,
                                 "sizes and data bounds may only use data declared above")
                raise NotFromData(error.message, error.span, error.hint, error.source,
                                  error.filename)
            return self.values[e.id]
        if isinstance(e, A.UnOp):
            v = self(e.operand)
            return -v if e.op == "-" else v
        if isinstance(e, A.BinOp):
            a, b = self(e.left), self(e.right)
            ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
                   "^": np.power, "%": np.mod}
            if e.op in ops:
                with np.errstate(all="ignore"):
                    r = ops[e.op](a, b)
                if e.op == "/" and isinstance(a, int) and isinstance(b, int) and a % b == 0:
                    r = a // b
                return r.item() if isinstance(r, np.generic) else r
        if isinstance(e, A.Index):
            base = np.asarray(self(e.base))
            idx = []
            for k, i in enumerate(e.indices):
                n = base.shape[k] if k < base.ndim else 0
                if isinstance(i, A.Slice):
                    lo = 1 if i.lo is None else self(i.lo)
                    hi = n if i.hi is None else self(i.hi)
                    if lo <= hi and not (1 <= lo and hi <= n):
                        raise self.err(f"slice {lo}:{hi} out of range: the dimension has indices "
                                       f"1 to {n}", i.span, "indices start at 1")
                    idx.append(slice(lo - 1, hi))
                else:
                    v = int(self(i))
                    if not 1 <= v <= n:
                        raise self.err(f"index out of range: {v}, but the dimension has indices "
                                       f"1 to {n}", i.span, "indices start at 1")
                    idx.append(v - 1)
            return base[tuple(idx)]
        if isinstance(e, A.Call) and e.func in ("max", "min", "sum", "size", "num_elements",
                                                 "sqrt", "exp", "log", "rows", "cols", "dims"):
            args = [np.asarray(self(a)) for a in e.args]
            f = {"max": np.max, "min": np.min, "sum": np.sum, "size": lambda x: len(x),
                 "num_elements": np.size, "sqrt": np.sqrt, "exp": np.exp, "log": np.log,
                 "rows": lambda x: x.shape[0], "cols": lambda x: x.shape[1] if x.ndim > 1 else 1,
                 "dims": lambda x: np.asarray(x.shape, dtype=np.int64)}[e.func]
            with np.errstate(all="ignore"):  # exp(1000) is inf: then a bound check says so
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
    s = t.span
    line = source_line(source, s.line)
    if s.line == s.end_line and line is not None:
        return line[s.col - 1:s.end_col - 1]
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


def _first_leaf(raw, test, where=()):
    """The 1-based index path and value of the first leaf of nested lists passing `test`."""
    stack = [(raw, where)]
    while stack:
        x, at = stack.pop()
        if isinstance(x, (list, tuple)):
            stack.extend((y, at + (i + 1,)) for i, y in reversed(list(enumerate(x))))
        elif test(x):
            return at, x
    return None


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_))


def _first_non_number(raw, where=()):
    """The index path and value of the first element that is not a number (JSON string, null,
    object, true/false, an integer too long to read), or None when the nesting is the problem
    (a ragged array)."""
    return _first_leaf(raw, lambda x: not _is_number(x), where)


def _leaf_types(raw) -> set:
    """The types of the leaves of nested lists (a rectangular array: numpy accepted it)."""
    level = raw
    while level and isinstance(level, (list, tuple)) and isinstance(level[0], (list, tuple)):
        level = [x for row in level for x in row]
    return set(map(type, level)) if isinstance(level, (list, tuple)) else {type(level)}


def _json_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, HugeInt):
        return f"an integer of {len(v.lstrip('-'))} digits"
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


def _big_text(v) -> str:
    """An integer-valued number as written, without float rounding noise where possible."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        text = str(int(v))
        return text if len(text) <= 30 else f"{text[:6]}…{text[-3:]} ({len(text)} digits)"
    return _value_text(v)


def _to_array(raw, name: str, base: str, tt: str, span, err, data_name: str, what: str = "data",
              note: Optional[str] = None):
    """The value as a numpy array (int64 for int and bool, float64 for real), or a located
    error: not a number (strings, null, objects), true/false for a non-bool, a ragged array,
    an integer beyond 64 bits."""
    label = f'{what} "{name}' if what == "data" else f'the value given for "{name}'

    def not_number(at, value):
        where = "[" + ", ".join(map(str, at)) + "]" if at else ""
        if isinstance(value, HugeInt):
            return err(f'{label}{where}" is {_json_text(value)} in {data_name}: far too large',
                       span, f'"{name}" is declared {tt}; integers are 64-bit, reals at most '
                       "about 1.8e308")
        if isinstance(value, (bool, np.bool_)):
            return err(f'{label}{where}" is {_json_text(value)} in {data_name}, but "{name}" is '
                       f"declared {tt}", span,
                       "true and false are values of bool data only; write 1 or 0 for numbers")
        return err(f'{label}{where}" is {_json_text(value)} in {data_name}: data must be numbers',
                   span, note or f'"{name}" is declared {tt}; JSON strings, null and objects are '
                   "not data")

    if isinstance(raw, np.ndarray):
        arr = raw
    elif raw is None or isinstance(raw, (str, dict)):
        raise not_number((), raw)
    else:
        try:
            arr = np.asarray(raw)
        except (ValueError, TypeError, OverflowError):
            bad = _first_non_number(raw)
            if bad is not None:
                raise not_number(*bad) from None
            raise err(f'{label}" is a ragged array in {data_name}: its rows have different lengths',
                      span, f'"{name}" is declared {tt}, a rectangular array') from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        bad = _first_leaf(raw if not isinstance(raw, np.ndarray) else raw.tolist(),
                          lambda x: not _is_number(x) or (isinstance(x, int) and
                                                          (x > INT64_MAX or x < -INT64_MAX - 1)))
        if bad is not None and not _is_number(bad[1]):
            raise not_number(*bad)
        if bad is not None:  # a Python int beyond 64 bits
            at, value = bad
            where = "[" + ", ".join(map(str, at)) + "]" if at else ""
            if base in ("int", "bool"):
                raise err(f'{label}{where}" is {_big_text(value)} in {data_name}, beyond the 64-bit '
                          f'integers of "{name}" (declared {tt})', span,
                          f"integers are at most {INT64_MAX}; declare it real if it is a measurement")
            try:
                arr = np.asarray(raw, dtype=float)
            except OverflowError:
                raise err(f'{label}{where}" is {_big_text(value)} in {data_name}: too large for a '
                          "real", span, "reals are at most about 1.8e308") from None
            kind = "f"
        else:
            raise err(f'{label}" is not an array of numbers in {data_name}', span,
                      f'"{name}" is declared {tt}')
    # true/false: for bool data only (numpy folds them into numbers when mixed)
    has_bool = kind == "b" or (not isinstance(raw, np.ndarray) and isinstance(raw, (list, tuple))
                               and bool in _leaf_types(raw)) or isinstance(raw, bool)
    if has_bool and base != "bool":
        bad = _first_leaf(raw if not isinstance(raw, np.ndarray) else raw.tolist(),
                          lambda x: isinstance(x, (bool, np.bool_)))
        raise not_number(*(bad if bad is not None else ((), True)))
    if base in ("int", "bool"):
        if kind == "u":
            over = arr > INT64_MAX
            if over.any():
                pos = tuple(np.argwhere(over)[0])
                raise err(f'{label}{_first_bad(~over)}" is {int(arr[pos])} in {data_name}, beyond '
                          f'the 64-bit integers of "{name}" (declared {tt})', span,
                          f"integers are at most {INT64_MAX}; declare it real if it is a measurement")
        elif kind == "f":
            with np.errstate(invalid="ignore"):
                over = np.isfinite(arr) & ((arr >= 2.0**63) | (arr < -2.0**63))
            if over.any():
                pos = tuple(np.argwhere(over)[0])
                shown = _value_text(arr[pos])
                exact = _first_leaf(raw, lambda x: isinstance(x, int) and not isinstance(x, bool)
                                    and not -INT64_MAX - 1 <= x <= INT64_MAX) \
                    if isinstance(raw, (list, tuple)) else None
                if exact is not None and exact[0] == tuple(i + 1 for i in pos):
                    shown = _big_text(exact[1])  # as written: 2^63, not 9.223372036854776e+18
                raise err(f'{label}{_first_bad(~over)}" is {shown} in {data_name}, '
                          f'beyond the 64-bit integers of "{name}" (declared {tt})', span,
                          f"integers are at most {INT64_MAX}; declare it real if it is a measurement")
    if kind in "iub" and base in ("int", "bool"):
        return arr.astype(np.int64)
    return arr.astype(float)


def _declared_shapes(checked: CheckedProgram, ev) -> Dict[str, tuple]:
    """Shapes of the typed random and computed variables, where the data fixes them."""
    shapes = {}
    for info in checked.variables.values():
        if info.kind == "data" or info.type is None:
            continue
        try:
            shapes[info.name] = _shape_of_type(info.type, ev)
        except NotFromData:  # a size given by a random variable
            pass
    return shapes


def bind_data(checked: CheckedProgram, data: Dict[str, Any], data_name: str = "the data") -> BoundData:
    """The data checked against the declarations and made arrays; the values given for random
    variables (held fixed); warnings for data the model does not declare. Raises a located
    PPLDataError for the first problem."""
    with recursion_headroom():  # sizes and bounds are evaluated recursively
        return _bind_data(checked, data, data_name)


def _bind_data(checked: CheckedProgram, data: Dict[str, Any], data_name: str) -> BoundData:
    src, fname = checked.program.source, checked.program.filename

    def err(msg, span, hint=None):
        return PPLDataError(msg, span, hint, src, fname)

    values: Dict[str, Any] = {}
    static: Dict[str, int] = {}
    arrays: Dict[str, np.ndarray] = {}
    ev = _ConstEval(values, err)
    declared = [s for s in checked.body if isinstance(s, A.DataDecl)]
    for d in declared:
        tt = _type_text(d.type, src)
        if d.name not in data:
            raise err(f'data "{d.name}" is missing from {data_name}', d.name_span,
                      f'add "{d.name}" ({tt}) to {data_name}')
        raw = data[d.name]
        shape = _shape_of_type(d.type, ev)
        arr = _to_array(raw, d.name, d.type.base, tt, d.name_span, err, data_name)
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
        _check_values(arr, d.name, d.type, tt, d.name_span, ev, err, data_name, src, "data")
        if d.type.base in ("int", "bool"):
            arr = arr.astype(np.int64)  # [1.0, 2.0] for int data: integral, checked above
        if d.type.base == "int" and arr.ndim == 0:
            static[d.name] = int(arr)
            values[d.name] = int(arr)
        else:
            arrays[d.name] = arr
            values[d.name] = arr
    shapes = {k: np.shape(v) for k, v in values.items()}
    shapes.update(_declared_shapes(checked, ev))
    fixed, warnings = {}, []
    for k, v in data.items():
        if k in values:
            continue
        info = checked.variables.get(k)
        if info is not None and info.kind in ("latent", "param"):
            fixed[k] = _fixed_value(checked, info, v, shapes.get(k), ev, err, data_name)
        elif info is not None and info.kind in ("deterministic", "generated"):
            what = "computed by the model" if info.kind == "deterministic" else \
                "a generated quantity, computed after inference"
            raise err(f'{data_name} gives a value for "{k}", but "{k}" is {what}', info.span,
                      f'remove "{k}" from {data_name}, or declare it `data {k}: …` and drop its '
                      "definition")
        elif info is None:
            warnings.append(Warning_(f'{data_name} has "{k}", which the model does not declare: ignored',
                                     None, _undeclared_hint(k, checked)))
    _check_observed_support(checked, values, err, data_name)
    check_memory(checked, shapes, fixed, err)
    check_indices(checked, {k: np.asarray(v) for k, v in {**values, **fixed}.items()}, shapes, err,
                  data_name)
    return BoundData(static, arrays, fixed, warnings, shapes)


def _undeclared_hint(name: str, checked: CheckedProgram):
    near = did_you_mean(name, checked.variables)
    return near or "a misspelt name leaves the model without its data; remove it if it is not meant"


def _check_values(arr, name, t: A.TypeExpr, tt, span, ev, err, data_name, src, what):
    """Finite, integer where declared so, within the bounds and the constrained type."""
    label = f'{what} "{name}' if what == "data" else f'the value given for "{name}'
    finite = np.isfinite(arr)
    if not finite.all():
        where = _first_bad(finite)
        bad = arr[tuple(np.argwhere(~finite)[0])] if arr.ndim else arr
        hint = ("ppl has no missing values: remove or impute them before sampling"
                if math.isnan(float(bad)) else f'every value of "{name}" must be a finite number')
        raise err(f'{label}{where}" is {_value_text(bad)} in {data_name}: data must be '
                  "finite", span, hint)
    if t.base in ("int", "bool"):
        if arr.dtype.kind == "f" and not (arr == np.round(arr)).all():
            where = _first_bad(arr == np.round(arr))
            val = arr[tuple(np.argwhere(arr != np.round(arr))[0])] if arr.ndim else arr
            raise err(f'{label}{where}" is {_value_text(val)} in {data_name}, but "{name}" '
                      f"is declared {tt}", span,
                      "give integer values, or declare it real if it is not a count or a size")
        if t.base == "bool" and not np.isin(arr, (0, 1)).all():
            where = _first_bad(np.isin(arr, (0, 1)))
            raise err(f'{label}{where}" must be 0 or 1: it is declared {tt}', span,
                      "write true/false or 0/1")
    for b in t.bounds:
        try:
            lim = np.asarray(ev(b.value), dtype=float)
        except NotFromData:
            if what == "data":
                raise
            continue  # a bound given by a random variable: checked when it is known
        try:
            ok = np.broadcast_to(arr >= lim if b.name == "lower" else arr <= lim, arr.shape)
        except ValueError:
            raise err(f'the {b.name} bound of "{name}" has shape {_fmt_shape(lim.shape)}, which does '
                      f"not fit its shape {_fmt_shape(arr.shape)}", b.span) from None
        if not np.all(ok):
            where = _first_bad(ok)
            idx = tuple(np.argwhere(~ok)[0]) if arr.ndim else ()
            val = arr[idx] if arr.ndim else arr
            limv = np.broadcast_to(lim, arr.shape)[idx] if arr.ndim else lim
            side = "below its lower" if b.name == "lower" else "above its upper"
            btxt = _expr_text(b.value, src)
            bound = _num(limv) if btxt is None or btxt == _num(limv) else f"{btxt} = {_num(limv)}"
            raise err(f'{label}{where}" is {_num(val)} in {data_name}, {side} bound {bound}',
                      b.span, f'"{name}" is declared {tt}; fix the data or the bound')
    problem = _constraint_problem(t.base, arr)
    if problem is not None:
        raise err(f'{label}" is not a {t.base} in {data_name}: {problem}', span,
                  f'"{name}" is declared {tt}')


def _constraint_problem(base: str, arr: np.ndarray):
    """What is wrong with a value of a constrained type, or None."""
    if base == "simplex":
        if (arr < 0).any():
            return "it has a negative element"
        if arr.shape[-1:] != (0,) and not np.allclose(arr.sum(-1), 1.0, atol=1e-8):
            return "its elements do not sum to 1"
    elif base in ("ordered", "positive_ordered"):
        if (np.diff(arr, axis=-1) <= 0).any():
            return "its elements are not strictly increasing"
        if base == "positive_ordered" and (arr <= 0).any():
            return "it has an element that is not positive"
    elif base == "unit_vector":
        if not np.allclose(np.linalg.norm(arr, axis=-1), 1.0, atol=1e-8):
            return "its length is not 1"
    elif base in ("cov_matrix", "corr_matrix", "cholesky_factor_corr", "corr_cholesky",
                  "cholesky_factor_cov", "cholesky_cov") and (arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]):
        return "it is not square"
    elif base in ("cov_matrix", "corr_matrix"):
        if not np.allclose(arr, np.swapaxes(arr, -1, -2), atol=1e-8):
            return "it is not symmetric"
        if base == "corr_matrix" and not np.allclose(np.diagonal(arr, axis1=-2, axis2=-1), 1.0, atol=1e-8):
            return "its diagonal is not all 1"
        try:
            np.linalg.cholesky(arr)
        except np.linalg.LinAlgError:
            return "it is not positive definite"
    elif base in ("cholesky_factor_corr", "corr_cholesky", "cholesky_factor_cov", "cholesky_cov"):
        if not np.allclose(np.triu(arr, 1), 0.0):
            return "it is not lower triangular"
        if (np.diagonal(arr, axis1=-2, axis2=-1) <= 0).any():
            return "its diagonal is not all positive"
        if base in ("cholesky_factor_corr", "corr_cholesky") and \
                not np.allclose(np.linalg.norm(arr, axis=-1), 1.0, atol=1e-8):
            return "its rows do not have length 1"
    return None


def _fixed_value(checked, info, raw, shape, ev, err, data_name):
    """A random variable's value given in the data (it is then held fixed): a number array of
    its declared shape, in its type's bounds and its distribution's support."""
    base = info.type.base if info.type is not None else ("int" if info.ty.base == "int" else "real")
    tt = _type_text(info.type, checked.program.source) if info.type is not None else info.ty.base
    arr = _to_array(raw, info.name, base, tt, info.span, err, data_name, what="fixed",
                    note=f'"{info.name}" is a {info.kind}; a value given in the data holds it fixed')
    if shape is not None and arr.shape != shape:
        if arr.size == 1 and shape == () and arr.ndim <= 1:
            arr = arr.reshape(())
        else:
            raise err(f'the value given for "{info.name}" in {data_name} has shape '
                      f"{_fmt_shape(arr.shape)}, but \"{info.name}\" is declared {tt}: shape "
                      f"{_fmt_shape(shape)}", info.span,
                      f'"{info.name}" is a {info.kind}; a value given in the data holds it fixed')
    if info.type is not None:
        _check_values(arr, info.name, info.type, tt, info.span, ev, err, data_name,
                      checked.program.source, "fixed")
    elif not np.isfinite(arr).all():
        raise err(f'the value given for "{info.name}" in {data_name} is not finite', info.span)
    _check_fixed_support(checked, info, arr, err, data_name)
    if base in ("int", "bool"):
        arr = arr.astype(np.int64)
    return arr
# Supports that do not depend on the arguments, in words, with a numpy test.
_SUPPORTS = [
    ("nonnegative_integer", "non-negative integers (0, 1, 2, …)", lambda x: (x >= 0) & (x == np.round(x))),
    ("positive_integer", "positive integers (1, 2, …)", lambda x: (x >= 1) & (x == np.round(x))),
    ("boolean", "0 or 1", lambda x: (x == 0) | (x == 1)),
    ("positive", "positive numbers", lambda x: x > 0),
    ("nonnegative", "non-negative numbers", lambda x: x >= 0),
    ("unit_interval", "numbers between 0 and 1", lambda x: (x >= 0) & (x <= 1)),
]


def _support_problem(dist: A.Call, arr):
    """(distribution name, first bad element, its value, the support in words) when `arr` is
    outside the support of `dist` and that support does not depend on the arguments."""
    spec = DISTRIBUTIONS.get(dist.func)
    if spec is None:
        return None
    try:
        sup = static_support(spec)
    except Exception:  # a distribution that cannot be built with placeholder arguments
        return None
    for cname, words, test in _SUPPORTS:
        if sup is getattr(constraints, cname, None):
            arr = np.asarray(arr, dtype=float)
            ok = test(arr)
            if np.all(ok):
                return None
            val = arr[tuple(np.argwhere(~np.asarray(ok))[0])] if arr.ndim else arr
            return spec.name, _first_bad(ok), val, words
    return None


def _check_observed_support(checked: CheckedProgram, values, err, data_name):
    """Whole data arrays observed at the top level (`k ~ poisson(lambda)`) must lie in the support
    of their distribution when it is fixed: found here, before any compilation, with the index
    and value of the first offending element. (Element-wise observations in loops are checked
    after lowering.)"""
    for s in checked.body:
        if not isinstance(s, A.Sample) or s.target.indices or s.target.name not in values:
            continue
        problem = _support_problem(s.dist, values[s.target.name])
        if problem is not None:
            dist, where, val, words = problem
            name = s.target.name
            raise err(f'observed "{name}{where}" is {_num(val)} in {data_name}, outside the '
                      f"support of {dist}", s.dist.func_span,
                      f"{dist} is a distribution over {words}; check the data for "
                      f'"{name}" or the choice of distribution')


def _check_fixed_support(checked: CheckedProgram, info, arr, err, data_name):
    """A random variable held fixed by the data must lie in the support of its distribution."""
    for s in info.defined_by:
        dist = s.dist if isinstance(s, A.VarDecl) else s.dist if isinstance(s, A.Sample) and \
            not s.target.indices else None
        if dist is None:
            continue
        problem = _support_problem(dist, arr)
        if problem is not None:
            name, where, val, words = problem
            raise err(f'the value given for "{info.name}{where}" in {data_name} is {_num(val)}, '
                      f"outside the support of {name}", dist.func_span,
                      f'"{info.name}" is held fixed at the value in {data_name}; {name} is a '
                      f"distribution over {words}")


# ---------------------------------------------------------------- memory
# A random variable lives in several copies during inference (position, gradient, momentum,
# a proposal): refusing below this many would only move the failure into the run.
STATE_COPIES = 4
_BYTES = 8  # float64 and int64


def machine_memory():
    """Bytes of memory this process may use: physical memory, or the cgroup's limit when lower,
    or PPL_MEMORY_LIMIT when set. None when unknown."""
    env = os.environ.get("PPL_MEMORY_LIMIT")
    if env:
        try:
            return int(float(env))
        except ValueError:
            pass
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            limits.append(int(text))
    return min(limits) if limits else None


def _bytes_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def _elements(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def memory_needed(checked: CheckedProgram, shapes: Dict[str, tuple], fixed=(), chains: int = 1,
                  draws: int = 0):
    """(bytes, the variable that needs the most, its elements, its share in bytes): the data,
    STATE_COPIES copies per chain of every random variable, and `draws` stored values per chain
    of every variable reported with the draws."""
    total, biggest = 0, (None, 0, 0)
    for name, shape in shapes.items():
        info = checked.variables.get(name)
        n = _elements(shape)
        if info is None or info.kind == "data":
            share = n * _BYTES
        elif name in fixed:
            continue
        else:
            state = STATE_COPIES if info.kind in ("latent", "param") else 1
            share = n * _BYTES * chains * (state + draws)
        total += share
        if share > biggest[2]:
            biggest = (name, n, share)
    return total, biggest[0], biggest[1], biggest[2]


def check_memory(checked: CheckedProgram, shapes: Dict[str, tuple], fixed, err, chains: int = 1,
                 draws: int = 0, run: str = "") -> None:
    """Refuse, before anything is allocated, a model (or a run: `chains` × `draws`) that needs
    more memory than the machine has."""
    limit = machine_memory()
    if limit is None:
        return
    need, name, n, share = memory_needed(checked, shapes, fixed, chains, draws)
    if need <= limit or name is None:
        return
    info = checked.variables[name]
    tt = _type_text(info.type, checked.program.source) if info.type is not None else ""
    what = run or "the model"
    raise err(f"{what} needs about {_bytes_text(need)} of memory, more than the "
              f"{_bytes_text(limit)} this machine has", info.span,
              f'"{name}"{" (" + tt + ")" if tt else ""} has {n} elements and alone takes '
              f"{_bytes_text(share)}; make it smaller" + (", or ask for fewer chains or draws"
                                                          if draws else ""))


def _expr_text(e, source: str):
    sp = getattr(e, "span", None)
    if sp is None or sp.line <= 0 or sp.line != sp.end_line:
        return None
    line = source_line(source, sp.line)
    return line[sp.col - 1:sp.end_col - 1] if line is not None else None


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
    if math.isinf(v) or math.isnan(v):
        return _value_text(v)
    # past 2^53 a float's integer digits are rounding noise: 1e30, not 1000000000000000019884624838656
    return str(int(v)) if v == int(v) and abs(v) < 2.0**53 else repr(v)


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
