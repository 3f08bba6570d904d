"""Structure of the discrete latent variables: which can be summed out of the density, and how.

A finite discrete latent ``z`` (one dimension, defined element by element) can be summed out of
the log density when every statement that touches it — its own ``z[i] ~ …`` statements and
every statement reading it — is a *term* of one of two shapes:

- unary: the statement reads only ``z[v]`` (or only ``z[v - 1]``) inside a top-level loop over
  ``v``, or ``z[c]`` with a literal ``c`` at top level: a factor ``f_p(z_p)`` at one position;
- pairwise: it reads ``z[v - 1]`` and ``z[v]`` (a Markov chain step): ``f_p(z_{p-1}, z_p)``.

A scalar finite latent ``s`` (a change point, a model index) is one position: every statement
reading it — at top level or inside a top-level loop — is a factor ``f(s)``, and the sum is over
its K values (kind "single", O(K) evaluations of those statements, vmapped).

With unary terms only the elements are conditionally independent given the continuous
variables, and the sum over K^N configurations factorises into N sums over K values (O(N·K)).
With pairwise terms the elements form a chain and the forward algorithm sums them in O(T·K²).
`analyze` returns these facts; the rewrite `ppl.ir.rewrites.marginalize` takes the terms out of
the program and puts a `Marginal` node in their place. What stops marginalisation is reported
with the line that stops it (`reasons`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..syntax.span import Span
from ..syntax.visit import walk
from . import nodes as N
from .graph import ModelGraph


@dataclass(frozen=True)
class DiscretePlan:
    name: str
    kind: str  # "independent" | "chain" | "single"
    declare: N.Declare
    terms: Tuple[N.Term, ...]

    def describe(self) -> str:
        lines = sorted({t.stmt.span.line for t in self.terms})
        where = ", ".join(str(x) for x in lines)
        if self.kind == "single":
            return (f"summed out over its values (the statements reading it evaluated at each); "
                    f"terms on line(s) {where}; posterior from its conditional probabilities")
        if self.kind == "chain":
            return (f"summed out by the forward algorithm (a Markov chain: O(T·K²)); "
                    f"terms on line(s) {where}; posterior by forward filtering, backward sampling")
        return (f"summed out element by element (independent given the rest: O(N·K)); "
                f"terms on line(s) {where}; posterior from per-element probabilities")


@dataclass
class DiscreteAnalysis:
    plans: Dict[str, DiscretePlan] = field(default_factory=dict)
    reasons: Dict[str, Tuple[str, Span]] = field(default_factory=dict)  # not marginalisable

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
    for v in discrete:
        plan, why = _plan_for(graph.ir, v, names)
        if plan is None:
            out.reasons[v.name] = why
        else:
            out.plans[v.name] = plan
    return out


def _line(span):
    return f"line {span.line}"


def _declaration(ir: N.ModelIR, name) -> Optional[N.Declare]:
    for s in ir.body:
        if isinstance(s, N.Declare) and s.name == name:
            return s
    return None


def _plan_for(ir: N.ModelIR, v: N.Variable, discrete_names):
    name = v.name
    if not v.finite:
        return None, (f'"{name}" ({_line(v.span)}) has an unbounded support '
                      f"({', '.join(v.dists) or 'no distribution'})", v.span)
    decl = _declaration(ir, name)
    single = decl is None and v.rank == 0 and not v.elementwise
    if single:  # a scalar drawn whole: its type (bounds) stands for a declaration
        decl = next((N.Declare(s.sid, s.span, name, v.type or N.VarType(v.base),
                               s.target.span)
                     for s in ir.body if isinstance(s, N.Draw) and s.target.name == name), None)
    if single:
        sized = [w.name for w in ir.variables.values() if name in w.size_vars]
        if sized:
            return None, (f'"{name}" ({_line(v.span)}) is the size of {", ".join(sized)}: a random '
                          "size is not summed out (the mhg pass moves between sizes)", v.span)
        types = [w.type for w in ir.variables.values() if w.type is not None and w.name != name]
        if any(_reads_in_bounds(x, name) for x in types + [x for st in ir.body for x in walk(st)]):
            return None, (f'"{name}" ({_line(v.span)}) sets a loop range or an array size: only '
                          "values read by `~` and `target +=` statements can be summed out", v.span)
    if decl is None or len(decl.type.dims) != (0 if single else 1):
        return None, (f'"{name}" ({_line(v.span)}) must be a one-dimensional array declared on its '
                      f"own (`{name}: int[N]`) and drawn element by element in loops to be summed "
                      "out", v.span)
    terms: List[N.Term] = []
    for stmt, loop, nested in _statements(ir.body):
        reads = _accesses_of(stmt, name)
        if not reads:
            continue
        where = _line(stmt.span)
        if nested:
            return None, (f'"{name}" is used inside a nested loop or an if ({where}): only '
                          "top-level statements and statements directly inside a top-level loop "
                          "can be summed over", stmt.span)
        if not isinstance(stmt, (N.Draw, N.Factor)):
            return None, (f'"{name}" is read by a deterministic statement ({where}): summing it '
                          "out needs every use to be a `~` or `target +=` statement", stmt.span)
        target = stmt.target.name if isinstance(stmt, N.Draw) else None
        others = {n for n in _names_read(stmt) if n in discrete_names and n != name}
        if target in discrete_names and target != name:
            others.add(target)
        if others:
            return None, (f"{where} couples \"{name}\" with the discrete latent(s) "
                          f"{', '.join(sorted(others))}", stmt.span)
        if target is not None and target != name and \
                ir.variables[target].kind not in ("data", "latent"):
            return None, (f'"{name}" feeds "{target}" ({where})', stmt.span)
        if target == name and not stmt.target.indices and not single:
            return None, (f'"{name}" must be drawn element by element ({where})', stmt.span)
        accs = []
        for idx in reads if not single else ():
            a = _classify(idx, loop)
            if a is None:
                return None, (f'"{name}" is indexed in a way that cannot be summed over ({where}): '
                              f"use {name}[{loop.var if loop else 'c'}]"
                              + (f" or {name}[{loop.var}-1] with the loop variable" if loop else
                                 " with a literal c at top level"), stmt.span)
            if a not in accs:
                accs.append(a)
        if single:
            if any(idx for idx in reads):
                return None, (f'"{name}" is a scalar and is indexed ({where})', stmt.span)
            accs = [N.Access((), 0, 1)]
        positions = sorted({(a.literal if loop is None else -a.offset) for a in accs})
        if len(positions) > 2 or (len(positions) == 2 and positions[1] - positions[0] != 1):
            return None, (f"{where} reads \"{name}\" at positions that are not neighbours "
                          "(only chains z[t-1] → z[t] are supported)", stmt.span)
        helpers = () if loop is None else tuple(
            s for s in loop.body if isinstance(s, (N.Let, N.Declare)) and _is_local(ir, s))
        terms.append(N.Term(stmt, loop, helpers, tuple(accs), len(positions) == 2, target == name))
    if not any(t.defines for t in terms):
        return None, (f'"{name}" ({_line(v.span)}) has no `{name}[i] ~ …` statement', v.span)
    for t in terms:
        if t.loop is not None and any(_accesses_of(h, name) for h in t.loop.body
                                      if isinstance(h, (N.Let, N.Declare))):
            return None, (f'"{name}" is read by an assignment inside a loop', v.span)
    kind = "single" if single else "chain" if any(t.pairwise for t in terms) else "independent"
    return DiscretePlan(name, kind, decl, tuple(terms)), None


def _reads_in_bounds(x, name) -> bool:
    """Whether a loop's range or a type's sizes and bounds read `name`."""
    if isinstance(x, N.Loop):
        parts = (x.lo, x.hi)
    elif isinstance(x, N.VarType):
        parts = tuple(x.dims) + (x.lower, x.upper)
    else:
        return False
    return any(isinstance(r, N.Ref) and r.name == name for e in parts if e is not None for r in walk(e))


def _is_local(ir, s) -> bool:
    name = s.target.name if isinstance(s, N.Let) else s.name
    return name not in ir.variables


def _statements(body, loop=None, nested=False):
    """(statement, top-level loop, nested?) for every simple statement, generated blocks skipped."""
    for s in body:
        if isinstance(s, N.Loop):
            if loop is None and not nested:
                yield from _statements(s.body, s, False)
            else:
                yield from _statements(s.body, loop, True)
        elif isinstance(s, N.Branch):
            yield from _statements(s.then, loop, True)
            yield from _statements(s.orelse, loop, True)
        elif isinstance(s, N.Generated):
            continue
        else:
            yield s, loop, nested


def _stmt_exprs(s):
    if isinstance(s, N.Draw):
        out = list(s.dist.args)
        if s.target.indices:
            out.append(N.Index(s.target.span, N.Ref(s.target.span, s.target.name), s.target.indices))
        return out
    if isinstance(s, N.Let):
        return [s.value] + list(s.target.indices)
    if isinstance(s, N.Factor):
        return [s.value]
    return []


def _names_read(s):
    out = {x.name for e in _stmt_exprs(s) for x in walk(e) if isinstance(x, N.Ref)}
    if isinstance(s, N.Draw):
        out.add(s.target.name)
    return out


def _accesses_of(s, name):
    """Index tuples with which statement s reads (or, for `~`, writes) `name`; () for bare reads."""
    found, bare = [], False
    for e in _stmt_exprs(s):
        for x in walk(e, prune=lambda n: isinstance(n, N.Index) and isinstance(n.base, N.Ref)
                      and n.base.name == name):
            if isinstance(x, N.Index) and isinstance(x.base, N.Ref) and x.base.name == name:
                found.append(tuple(x.indices))
                for i in x.indices:  # z[z[i]]: a read of z inside the index
                    if any(isinstance(y, N.Ref) and y.name == name for y in walk(i)):
                        bare = True
            elif isinstance(x, N.Ref) and x.name == name:
                bare = True
    if isinstance(s, N.Draw) and s.target.name == name and not s.target.indices:
        bare = True
    if bare:
        found.append(())
    return found


def _classify(indices, loop) -> Optional[N.Access]:
    if len(indices) != 1:
        return None
    i = indices[0]
    if loop is None:
        if isinstance(i, N.Const) and i.type == "int":
            return N.Access(indices, 0, int(i.value))
        return None
    if isinstance(i, N.Ref) and i.name == loop.var:
        return N.Access(indices, 0)
    if isinstance(i, N.Binary) and i.op == "-" and isinstance(i.left, N.Ref) and \
            i.left.name == loop.var and isinstance(i.right, N.Const) and i.right.type == "int" and \
            i.right.value == 1:
        return N.Access(indices, 1)
    return None
