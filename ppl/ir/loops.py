"""Loop plans: which loops are independent iterations (one vectorised array operation) and which
are recurrences (a `lax.scan` carrying what the next iteration reads).

A loop can be vectorised when no iteration reads what another one wrote: every element an
iteration writes is indexed by the loop variable, every read of a variable the loop writes is
of the element this iteration wrote before (same index), and nothing defined outside the loop is
replaced whole. Writes by `~` on latents count only when they are drawn: when their values are
given (a density), `x[t] ~ normal(x[t-1], 1)` only reads x, and the loop vectorises.
"""
from __future__ import annotations

from typing import Iterable, List, Set, Tuple

from ..syntax.visit import walk
from . import nodes as N


def _reads(e) -> List[Tuple[str, tuple]]:
    """(name, indices) for each variable read in e, outermost first; whole reads have ()."""
    out = []
    for x in walk(e, prune=lambda n: isinstance(n, N.Index) and isinstance(n.base, N.Ref)):
        if isinstance(x, N.Index) and isinstance(x.base, N.Ref):
            out.append((x.base.name, tuple(x.indices)))
            for i in x.indices:
                out.extend(_reads(i))
        elif isinstance(x, N.Ref) and x.role != "index":
            out.append((x.name, ()))
    return out


def events(body: Iterable[N.Stmt]):
    """Reads and writes in body order: (op, name, indices, when) with `when` "both", or "draw"
    for writes that happen only when a `~` draws its value."""
    out = []

    def reads(e):
        if e is not None:
            out.extend(("read", n, idx, "both") for n, idx in _reads(e))

    for s in body:
        if isinstance(s, N.Draw):
            for a in s.dist.args:
                reads(a)
            for i in s.target.indices:
                reads(i)
            if s.role in ("latent", "generated"):
                out.append(("write", s.target.name, tuple(s.target.indices), "draw"))
        elif isinstance(s, N.Let):
            reads(s.value)
            for i in s.target.indices:
                reads(i)
            out.append(("write", s.target.name, tuple(s.target.indices), "both"))
        elif isinstance(s, N.Declare):
            out.append(("write", s.name, (), "both"))
        elif isinstance(s, N.Factor):
            reads(s.value)
        elif isinstance(s, N.Loop):
            reads(s.lo)
            reads(s.hi)
            out.extend(events(s.body))
        elif isinstance(s, N.Branch):
            reads(s.cond)
            out.extend(events(s.then))
            out.extend(events(s.orelse))
        elif isinstance(s, N.Return):
            reads(s.value)
    return out


def _mentions(e, name) -> bool:
    return any(isinstance(x, N.Ref) and x.name == name for x in walk(e))


def _lag(read_index, write_index, var) -> int:
    if len(read_index) != len(write_index):
        return 0
    for r, w in zip(read_index, write_index):
        if r == w:
            continue
        if isinstance(w, N.Ref) and w.name == var and isinstance(r, N.Binary) and r.op == "-" and \
                r.left == w and isinstance(r.right, N.Const):
            return int(r.right.value)
        return 0
    return 0


def _disjoint(a: tuple, b: tuple) -> bool:
    """Whether two index tuples can never name the same element: distinct integer constants
    at some position (x[1, j] against x[2, k])."""
    return len(a) == len(b) and any(
        isinstance(i, N.Const) and isinstance(j, N.Const) and i.type == j.type == "int"
        and i.value != j.value for i, j in zip(a, b))


def plan(var: str, body: Tuple[N.Stmt, ...], outer: Set[str], fresh: bool = False) -> N.LoopPlan:
    """The plan of `for var in …: body`; `outer`: names defined before the loop (top-level
    variables and enclosing locals), which a vectorised loop must not replace whole.

    `fresh`: also let iterations be independent when they only share (a) arrays declared at the
    top of the body (`acc: real[K]`: a new one each iteration) and (b) elements read at
    constant indices no write of the loop can reach (x[1, j] read, x[2, k] written) — used for
    the loops inside a body whose rows were windowed (ppl/lower/interpreter.py)."""
    if any(isinstance(x, N.Return) for s in body for x in walk(s)):
        return N.LoopPlan("unroll", "unroll")
    evs = events(body)
    if fresh:
        declared = {s.name for s in body if isinstance(s, N.Declare)}
        first = {}
        for op, name, index, when in evs:
            first.setdefault(name, (op, index))
        local = {n for n in declared if first.get(n) == ("write", ())}
        evs = [e for e in evs if e[1] not in local]
    carried = {"density": set(), "sample": set()}
    lags = set()
    for mode in ("density", "sample"):
        c = carried[mode]
        write_index = {}
        for op, name, index, when in evs:
            if op != "write" or (when == "draw" and mode == "density"):
                continue
            if name in write_index and write_index[name] != index:
                c.add(name)
            write_index[name] = index
            if not index and name in outer:
                c.add(name)  # replaced whole: the next iteration reads the new value
            if index and not any(_mentions(i, var) for i in index):
                c.add(name)
        seen = set()
        for op, name, index, when in evs:
            if op == "write":
                if not (when == "draw" and mode == "density"):
                    seen.add(name)
                continue
            if name not in write_index:
                continue
            if name not in seen or write_index[name] != index:
                if fresh and _disjoint(index, write_index[name]):
                    continue
                c.add(name)
                lag = _lag(index, write_index[name], var)
                if lag:
                    lags.add((name, lag))
    drawn = tuple(sorted({name for op, name, _, when in evs if op == "write" and when == "draw"}))
    return N.LoopPlan("scan" if carried["density"] else "vectorize",
                      "scan" if carried["sample"] else "vectorize",
                      tuple(sorted(carried["density"] | carried["sample"])), tuple(sorted(lags)),
                      drawn)
