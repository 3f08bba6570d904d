"""Structure of the discrete latent variables: which can be summed out of the density, and how.

A finite discrete latent ``z`` (one dimension, defined element by element) can be summed out of
the log density when every statement that touches it — its own ``z[i] ~ …`` statements and
every statement reading it — is a *term* of one of two shapes:

- unary: the statement reads only ``z[v]`` (or only ``z[v - 1]``) inside a top-level loop over
  ``v``, or ``z[c]`` with a literal ``c`` at top level: a factor ``f_p(z_p)`` at one position;
- pairwise: it reads ``z[v - 1]`` and ``z[v]`` (a Markov chain step): ``f_p(z_{p-1}, z_p)``.

With unary terms only the elements are conditionally independent given the continuous
variables, and the sum over K^N configurations factorises into N sums over K values (O(N·K)).
With pairwise terms the elements form a chain and the forward algorithm sums them in O(T·K²).
The terms a latent needs are taken out of the program (`DiscreteAnalysis.body`, the body the
rest of the density runs), and lowering (`ppl/lower/marginalize.py`) evaluates them for every
value and sums.

What stops marginalisation is reported with the line that stops it (`reasons`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..syntax import ast as A
from .graph import ModelGraph


@dataclass(frozen=True)
class Access:
    """One way a term reads z: its index expressions and the position they denote.

    In a loop over v: ``offset`` 0 for ``z[v]``, 1 for ``z[v - 1]``. At top level: ``literal``
    is the (1-based) position of ``z[c]``.
    """
    indices: Tuple[A.Expr, ...]
    offset: int = 0
    literal: Optional[int] = None


@dataclass(frozen=True)
class Term:
    stmt: A.Stmt  # a `~` or `target +=` statement
    loop: Optional[A.For]  # the top-level loop it sits in (None: top level)
    accesses: Tuple[Access, ...]
    pairwise: bool  # reads z at two consecutive positions
    defines: bool  # a `z[…] ~ …` statement (the latent's own prior)


@dataclass(frozen=True)
class DiscretePlan:
    name: str
    kind: str  # "independent" | "chain"
    decl: A.VarDecl
    terms: Tuple[Term, ...]

    def describe(self) -> str:
        lines = sorted({t.stmt.span.line for t in self.terms})
        where = ", ".join(str(x) for x in lines)
        if self.kind == "chain":
            return (f"summed out by the forward algorithm (a Markov chain: O(T·K²)); "
                    f"terms on line(s) {where}; posterior by forward filtering, backward sampling")
        return (f"summed out element by element (independent given the rest: O(N·K)); "
                f"terms on line(s) {where}; posterior from per-element probabilities")


@dataclass
class DiscreteAnalysis:
    plans: Dict[str, DiscretePlan] = field(default_factory=dict)
    reasons: Dict[str, Tuple[str, A.Span]] = field(default_factory=dict)  # not marginalisable
    body: Tuple[A.Stmt, ...] = ()  # the program without the terms of marginalised latents
    _keep: list = field(default_factory=list)  # new loop nodes (their plans are keyed by id)

    @property
    def all_marginalisable(self) -> bool:
        return not self.reasons

    def describe(self) -> List[str]:
        out = [f"{n}: {p.describe()}" for n, p in self.plans.items()]
        out += [f"{n}: not marginalised — {r}" for n, (r, _) in self.reasons.items()]
        return out


def analyze(graph: ModelGraph) -> DiscreteAnalysis:
    """The discrete-latent analysis of a graph (computed once, cached on the graph)."""
    cached = getattr(graph, "_discrete_analysis", None)
    if cached is None:
        cached = _analyze(graph)
        graph._discrete_analysis = cached
    return cached


def _analyze(graph: ModelGraph) -> DiscreteAnalysis:
    out = DiscreteAnalysis()
    discrete = [v for v in graph.latents() if v.discrete]
    names = {v.name for v in discrete}
    removed: set = set()
    for v in discrete:
        plan, why = _plan_for(graph, v, names)
        if plan is None:
            out.reasons[v.name] = why
        else:
            out.plans[v.name] = plan
            removed |= {id(t.stmt) for t in plan.terms}
    out.body = _filter(graph, graph.body, removed, out._keep, top=True)
    return out


def _line(span):
    return f"line {span.line}"


def _plan_for(graph: ModelGraph, v, discrete_names):
    name = v.name
    if not v.finite:
        return None, (f'"{name}" ({_line(v.span)}) has an unbounded support '
                      f"({', '.join(v.dists) or 'no distribution'})", v.span)
    info = graph.checked.variables[name]
    decl = info.decl
    if not isinstance(decl, A.VarDecl) or decl.dist is not None or decl.value is not None or \
            len(decl.type.dims) != 1 or len(decl.type.dims[0]) != 1:
        return None, (f'"{name}" ({_line(v.span)}) must be a one-dimensional array declared on its '
                      f"own (`{name}: int[N]`) and drawn element by element in loops to be summed "
                      "out", v.span)
    terms: List[Term] = []
    for stmt, loop, nested in _statements(graph.body):
        reads = _accesses_of(stmt, name)
        if not reads:
            continue
        where = _line(stmt.span)
        if nested:
            return None, (f'"{name}" is used inside a nested loop or an if ({where}): only '
                          "top-level statements and statements directly inside a top-level loop "
                          "can be summed over", stmt.span)
        if not isinstance(stmt, (A.Sample, A.TargetIncrement)):
            return None, (f'"{name}" is read by a deterministic statement ({where}): summing it '
                          "out needs every use to be a `~` or `target +=` statement", stmt.span)
        target = stmt.target.name if isinstance(stmt, A.Sample) else None
        others = {n for n in _names_read(stmt) if n in discrete_names and n != name}
        if target in discrete_names and target != name:
            others.add(target)
        if others:
            return None, (f"{where} couples \"{name}\" with the discrete latent(s) "
                          f"{', '.join(sorted(others))}", stmt.span)
        if target is not None and target != name and \
                graph.checked.variables[target].kind not in ("data", "latent"):
            return None, (f'"{name}" feeds "{target}" ({where})', stmt.span)
        if target == name and stmt.target.indices == ():
            return None, (f'"{name}" must be drawn element by element ({where})', stmt.span)
        accs = []
        for idx in reads:
            a = _classify(idx, loop)
            if a is None:
                return None, (f'"{name}" is indexed in a way that cannot be summed over ({where}): '
                              f"use {name}[{loop.var if loop else 'c'}]"
                              + (f" or {name}[{loop.var}-1] with the loop variable" if loop else
                                 " with a literal c at top level"), stmt.span)
            if a not in accs:
                accs.append(a)
        positions = sorted({(a.literal if loop is None else -a.offset) for a in accs})
        if len(positions) > 2 or (len(positions) == 2 and positions[1] - positions[0] != 1):
            return None, (f"{where} reads \"{name}\" at positions that are not neighbours "
                          "(only chains z[t-1] → z[t] are supported)", stmt.span)
        terms.append(Term(stmt, loop, tuple(accs), len(positions) == 2, target == name))
    if not any(t.defines for t in terms):
        return None, (f'"{name}" ({_line(v.span)}) has no `{name}[i] ~ …` statement', v.span)
    if _local_assigns_read(graph, terms, name):
        return None, (f'"{name}" is read by an assignment inside a loop', v.span)
    kind = "chain" if any(t.pairwise for t in terms) else "independent"
    return DiscretePlan(name, kind, decl, tuple(terms)), None


def _statements(body, loop=None, nested=False):
    """(statement, top-level loop, nested?) for every simple statement, generated blocks skipped."""
    for s in body:
        if isinstance(s, A.For):
            if loop is None and not nested:
                yield from _statements(s.body, s, False)
            else:
                yield from _statements(s.body, loop, True)
        elif isinstance(s, A.If):
            yield from _statements(s.then, loop, True)
            yield from _statements(s.orelse, loop, True)
        elif isinstance(s, A.Generated):
            continue
        else:
            yield s, loop, nested


def _stmt_exprs(s):
    if isinstance(s, A.Sample):
        return list(s.dist.args) + [A.Index(s.target.span, A.Name(s.target.span, s.target.name),
                                            s.target.indices)] if s.target.indices else list(s.dist.args)
    if isinstance(s, A.Assign):
        return [s.value] + list(s.target.indices)
    if isinstance(s, A.VarDecl):
        return ([s.value] if s.value is not None else []) + (list(s.dist.args) if s.dist else [])
    if isinstance(s, A.TargetIncrement):
        return [s.value]
    return []


def _names_read(s):
    out = set()
    for e in _stmt_exprs(s):
        for sub in A.walk_expr(e):
            if isinstance(sub, A.Name):
                out.add(sub.id)
    if isinstance(s, A.Sample):
        out.add(s.target.name)
    return out


class _Bare(Exception):
    pass


def _accesses_of(s, name):
    """Index tuples with which statement s reads (or, for `~`, writes) `name`; None for bare reads."""
    found = []
    bare = False
    for e in _stmt_exprs(s):
        stack = [e]
        while stack:
            x = stack.pop()
            if isinstance(x, A.Index) and isinstance(x.base, A.Name) and x.base.id == name:
                found.append(tuple(x.indices))
                for i in x.indices:
                    stack.extend(list(A.walk_expr(i))[:1])
                continue
            if isinstance(x, A.Name) and x.id == name:
                bare = True
                continue
            stack.extend(_kids(x))
    if isinstance(s, A.Sample) and s.target.name == name and not s.target.indices:
        bare = True
    if bare:
        found.append(())
    return found


def _kids(x):
    from .graph import expr_children
    return expr_children(x)


def _classify(indices, loop) -> Optional[Access]:
    if len(indices) != 1:
        return None
    i = indices[0]
    if loop is None:
        if isinstance(i, A.Num) and i.is_int:
            return Access(indices, 0, int(i.value))
        return None
    if isinstance(i, A.Name) and i.id == loop.var:
        return Access(indices, 0)
    if isinstance(i, A.BinOp) and i.op == "-" and isinstance(i.left, A.Name) and \
            i.left.id == loop.var and isinstance(i.right, A.Num) and i.right.is_int and i.right.value == 1:
        return Access(indices, 1)
    return None


def _local_assigns_read(graph, terms, name):
    loops = {id(t.loop): t.loop for t in terms if t.loop is not None}
    for loop in loops.values():
        for s in loop.body:
            if isinstance(s, (A.Assign, A.VarDecl)) and _accesses_of(s, name):
                return True
    return False


def _filter(graph, body, removed, keep, top=False):
    out = []
    for s in body:
        if id(s) in removed:
            continue
        if isinstance(s, A.For) and any(id(x) in removed for x in s.body):
            inner = tuple(x for x in s.body if id(x) not in removed)
            if not any(not isinstance(x, (A.Assign, A.VarDecl)) or
                       x_target(x) in graph.checked.variables for x in inner):
                continue  # only loop-local helpers were left
            new = A.For(s.span, s.var, s.lo, s.hi, inner, s.var_span)
            graph.loop_plans[id(new)] = graph.loop_plans[id(s)]
            keep.append(new)
            out.append(new)
            continue
        out.append(s)
    return tuple(out)


def x_target(s):
    return s.target.name if isinstance(s, A.Assign) else s.name
