"""ModelGraph: a `ModelIR` indexed as a networkx DiGraph for the analyses.

Variable nodes are whole arrays (`x`, not `x[3]`), so the graph is as small as the source.
Statement nodes (`~`, `=`, `target +=`, declarations) sit between the variables they read and
the variable they define; read edges carry the index expressions and, for reads like `x[t-1]`
inside a loop over `t`, the lag. Each statement node records its plates (the loops around it,
innermost last). The program itself is the IR's statement list; the graph answers questions
about it: parents, children, topological order, Markov blankets, recurrences.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import networkx as nx

from ..syntax.visit import walk
from . import nodes as N
from .dot import GraphView, to_dot


@dataclass(frozen=True)
class Plate:
    """One loop around a statement: `for var in lo:hi`."""
    var: str
    lo: N.Expr
    hi: N.Expr
    sid: int  # the loop statement


@dataclass(frozen=True)
class StmtNode:
    sid: int
    kind: str  # sample | observe | prior | assign | factor | declare | marginal
    stmt: N.Stmt
    target: Optional[str]
    dist: Optional[str]
    plates: Tuple[Plate, ...]
    generated: bool = False


def stmt_kind(s: N.Stmt) -> str:
    if isinstance(s, N.Draw):
        return {"observed": "observe", "prior": "prior"}.get(s.role, "sample")
    if isinstance(s, N.Let):
        return "assign"
    if isinstance(s, N.Factor):
        return "factor"
    if isinstance(s, N.Marginal):
        return "marginal"
    return "declare"


class ModelGraph:
    def __init__(self, ir: N.ModelIR):
        self.ir = ir
        self.g = nx.DiGraph()
        for name, v in ir.variables.items():
            self.g.add_node(name, type="var", node=v)
        self._walk(ir.body, (), False)

    # ------------------------------------------------------------ the program
    @property
    def body(self):
        return self.ir.body

    @property
    def functions(self):
        return self.ir.functions

    @property
    def source(self) -> str:
        return self.ir.source

    @property
    def filename(self) -> str:
        return self.ir.filename

    # ------------------------------------------------------------ queries
    def var(self, name: str) -> N.Variable:
        return self.ir.variables[name]

    def variables(self, *kinds: str) -> List[N.Variable]:
        return [v for v in self.ir.variables.values() if not kinds or v.kind in kinds]

    def latents(self) -> List[N.Variable]:
        return self.variables("latent")

    def discrete_latents(self) -> List[N.Variable]:
        return [v for v in self.latents() if v.discrete]

    def statements(self) -> List[StmtNode]:
        return [d["node"] for _, d in self.g.nodes(data=True) if d.get("type") == "stmt"]

    def parents(self, name: str) -> List[str]:
        """Variables that feed the definition of `name` (through its statements)."""
        out = []
        for s in self.g.predecessors(name):
            for p in self.g.predecessors(s):
                if p not in out and p != name:
                    out.append(p)
        return out

    def children(self, name: str) -> List[str]:
        out = []
        for s in self.g.successors(name):
            for c in self.g.successors(s):
                if c not in out and c != name:
                    out.append(c)
        return out

    def markov_blanket(self, name: str) -> set:
        mb = set(self.parents(name))
        for child in self.children(name):
            mb.add(child)
            mb |= set(self.parents(child))
        mb.discard(name)
        return mb

    def plates_of(self, name: str) -> Tuple[Plate, ...]:
        """The plates of the first statement that defines `name` (() at top level)."""
        for sid in self.g.predecessors(name):
            node = self.g.nodes[sid].get("node")
            if isinstance(node, StmtNode):
                return node.plates
        return ()

    def lag_edges(self):
        return [(u, v, d) for u, v, d in self.g.edges(data=True) if d.get("lag")]

    def variable_order(self) -> List[str]:
        """Variables in an order where every variable comes after the ones it depends on
        (self-loops of recurrences ignored)."""
        dep = nx.DiGraph()
        dep.add_nodes_from(self.ir.variables)
        for name in self.ir.variables:
            for p in self.parents(name):
                dep.add_edge(p, name)
        try:
            return list(nx.topological_sort(dep))
        except nx.NetworkXUnfeasible:  # mutual recursion through element writes
            return list(self.ir.variables)

    # ------------------------------------------------------------ display
    def view(self, name: str = "model") -> GraphView:
        """The graph in plate notation: SVG in Jupyter when Graphviz is installed, DOT text
        otherwise."""
        return GraphView(to_dot(self, name))

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return self.view()._repr_mimebundle_(include, exclude)

    # ------------------------------------------------------------ construction
    def _add_stmt(self, s: N.Stmt, plates, generated, target=None):
        dist = s.dist.name if isinstance(s, N.Draw) else None
        node = StmtNode(s.sid, stmt_kind(s), s, target, dist, plates, generated)
        self.g.add_node(s.sid, type="stmt", node=node)
        if target is not None and target in self.ir.variables:
            self.g.add_edge(s.sid, target, index=None, lag=0)
        loop_vars = {p.var for p in plates}
        for e in _read_exprs(s):
            for x in walk(e, prune=lambda n: isinstance(n, N.Index) and isinstance(n.base, N.Ref)):
                if isinstance(x, N.Index) and isinstance(x.base, N.Ref):
                    self._read(x.base.name, s.sid, x.indices, loop_vars)
                    for i in x.indices:
                        for y in walk(i):
                            if isinstance(y, N.Ref):
                                self._read(y.name, s.sid, None, loop_vars)
                elif isinstance(x, N.Ref):
                    self._read(x.name, s.sid, None, loop_vars)

    def _read(self, name, sid, indices, loop_vars):
        if name not in self.ir.variables:
            return
        lag = 0
        for i in indices or ():
            if isinstance(i, N.Binary) and i.op == "-" and isinstance(i.left, N.Ref) and \
                    i.left.name in loop_vars and isinstance(i.right, N.Const):
                lag = max(lag, int(i.right.value))
        prev = self.g.get_edge_data(name, sid)
        if prev is None or lag > prev.get("lag", 0):
            self.g.add_edge(name, sid, index=None if indices is None else tuple(indices), lag=lag)

    def _walk(self, body, plates, generated):
        for s in body:
            if isinstance(s, N.Draw):
                self._add_stmt(s, plates, generated, s.target.name)
            elif isinstance(s, N.Let):
                self._add_stmt(s, plates, generated, s.target.name)
            elif isinstance(s, N.Declare):
                self._add_stmt(s, plates, generated, s.name)
            elif isinstance(s, N.Factor):
                self._add_stmt(s, plates, generated)
            elif isinstance(s, N.Marginal):
                self._add_stmt(s, plates, generated, s.name)
            elif isinstance(s, N.Loop):
                self._walk(s.body, plates + (Plate(s.var, s.lo, s.hi, s.sid),), generated)
            elif isinstance(s, N.Branch):
                self._walk(s.then, plates, generated)
                self._walk(s.orelse, plates, generated)
            elif isinstance(s, N.Generated):
                self._walk(s.body, plates, True)
            else:  # nodes made by rewrites hold the statements they replaced
                self._walk(_substatements(s), plates, generated)


def _read_exprs(s):
    """The expressions a simple statement reads (an indexed target's indices included)."""
    if isinstance(s, N.Draw):
        out = list(s.dist.args) + list(s.target.indices)
        if s.role in ("observed", "prior"):
            out.append(N.Index(s.target.span, N.Ref(s.target.span, s.target.name), s.target.indices)
                       if s.target.indices else N.Ref(s.target.span, s.target.name))
        return out
    if isinstance(s, N.Let):
        return [s.value] + list(s.target.indices)
    if isinstance(s, N.Factor):
        return [s.value]
    if isinstance(s, N.Declare):
        return list(s.type.dims) if s.type is not None else []
    if isinstance(s, N.Marginal):
        return [e for t in s.terms for e in _read_exprs(t.stmt)]
    return []


def _substatements(s):
    form = getattr(s, "form", None)
    if form is not None:
        return tuple(form.program)
    return tuple(c for c in getattr(s, "body", ()) if isinstance(c, N.Stmt))


def build_graph(ir: N.ModelIR) -> ModelGraph:
    return ModelGraph(ir)
