"""ModelGraph: the model as a networkx DiGraph of array-level variables and statements.

Variable nodes are whole arrays (`x`, not `x[3]`), so the graph is as small as the source.
Statement nodes (`~`, `=`, `target +=`) sit between the variables they read and the variable
they define; edges carry the index expression and, for reads like `x[t-1]` inside a loop over
`t` that defines `x[t]`, the lag. Loops are plates; each plate records whether its iterations
are independent (one vectorised array operation) or a recurrence (a `lax.scan`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import networkx as nx

from ..builtins.distributions import DISTRIBUTIONS
from ..check.checker import CheckedProgram, VarInfo
from ..syntax import ast as A


@dataclass(frozen=True)
class Plate:
    """One loop: `for var in lo:hi`."""
    var: str
    lo: A.Expr
    hi: A.Expr
    span: A.Span = field(compare=False)


@dataclass(frozen=True)
class VarNode:
    name: str
    kind: str  # data | param | latent | deterministic | generated
    observed: bool
    type: Optional[A.TypeExpr]  # declared type (None: inferred from the definition)
    span: A.Span
    elementwise: bool  # defined element by element (inside loops)
    discrete: bool  # drawn from a discrete distribution
    finite: bool  # … with a finite support (enumerable)
    dists: Tuple[str, ...]  # distributions used to define it
    plates: Tuple[Plate, ...]  # the plates of its defining statements (innermost last)
    stochastic_size: bool = False  # a shape depends on a random variable (trans-dimensional)


@dataclass(frozen=True)
class StmtNode:
    id: str
    kind: str  # sample | observe | factor | assign | prior (a `~` on a param)
    stmt: A.Stmt
    target: Optional[str]
    dist: Optional[str]
    plates: Tuple[Plate, ...]
    generated: bool = False


@dataclass(frozen=True)
class LoopPlan:
    """How lowering runs a loop, per mode ('density' evaluates given values; 'sample' draws)."""
    density: str  # "vectorize" | "scan"
    sample: str
    carried: Tuple[str, ...]  # variables read across iterations (why a scan is needed)
    lags: Tuple[Tuple[str, int], ...]  # (variable, lag) pairs found


class ModelGraph:
    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        self.program = checked.program
        self.g = nx.DiGraph()
        self.loop_plans: Dict[int, LoopPlan] = {}  # keyed by id() of the For statement
        self._stmt_count = 0
        self._build()

    # ------------------------------------------------------------ queries
    @property
    def body(self):
        return self.checked.body

    @property
    def functions(self):
        return self.checked.functions

    def var(self, name: str) -> VarNode:
        return self.g.nodes[name]["node"]

    def variables(self, *kinds: str) -> List[VarNode]:
        out = [d["node"] for _, d in self.g.nodes(data=True) if d.get("type") == "var"]
        return [v for v in out if not kinds or v.kind in kinds]

    def statements(self) -> List[StmtNode]:
        return [d["node"] for _, d in self.g.nodes(data=True) if d.get("type") == "stmt"]

    def latents(self) -> List[VarNode]:
        return self.variables("latent")

    def parents(self, name: str) -> List[str]:
        """Variables that feed the definition of `name` (through its statements)."""
        out = []
        for s in self.g.predecessors(name):
            for p in self.g.predecessors(s):
                if p not in out:
                    out.append(p)
        return out

    def markov_blanket(self, name: str) -> set:
        mb = set(self.parents(name))
        for s in self.g.successors(name):
            for child in self.g.successors(s):
                mb.add(child)
                mb |= set(self.parents(child))
        mb.discard(name)
        return mb

    def lag_edges(self):
        return [(u, v, d) for u, v, d in self.g.edges(data=True) if d.get("lag")]

    def loop_plan(self, stmt: A.For) -> LoopPlan:
        return self.loop_plans[id(stmt)]

    def discrete_latents(self) -> List[VarNode]:
        return [v for v in self.latents() if v.discrete]

    # ------------------------------------------------------------ construction
    def _build(self):
        ck = self.checked
        plates_of: Dict[str, Tuple[Plate, ...]] = {}
        for name, info in ck.variables.items():
            self.g.add_node(name, type="var", node=None)
        self._walk(ck.body, (), False, plates_of)
        for name, info in ck.variables.items():
            dists = tuple(s.dist.func for s in info.defined_by
                          if isinstance(s, (A.Sample, A.VarDecl)) and getattr(s, "dist", None) is not None)
            specs = [DISTRIBUTIONS.get(d) for d in dists]
            discrete = any(s is not None and s.discrete for s in specs) or (
                info.type is not None and info.type.base in ("int", "bool") and info.kind == "latent")
            finite = bool(specs) and all(s is not None and s.finite for s in specs)
            if info.type is not None and info.type.bound("lower") is not None and \
                    info.type.bound("upper") is not None and discrete:
                finite = True
            self.g.nodes[name]["node"] = VarNode(
                name, info.kind, info.observed, info.type, info.span, info.elementwise,
                discrete, finite, dists, plates_of.get(name, ()),
                stochastic_size=self._size_is_stochastic(info))
        self._plan_loops(ck.body)

    def _size_is_stochastic(self, info: VarInfo) -> bool:
        if info.type is None:
            return False
        for group in info.type.dims:
            for d in group:
                for e in A.walk_expr(d):
                    if isinstance(e, A.Name) and e.id in self.checked.variables and \
                            self.checked.variables[e.id].kind == "latent":
                        return True
        return False

    def _new_stmt(self, kind, stmt, target, dist, plates, generated):
        self._stmt_count += 1
        sid = f"s{self._stmt_count}:{kind}"
        node = StmtNode(sid, kind, stmt, target, dist, plates, generated)
        self.g.add_node(sid, type="stmt", node=node)
        return sid

    def _reads(self, sid, exprs, plates):
        loop_vars = {p.var for p in plates}
        for e in exprs:
            for sub in A.walk_expr(e):
                if isinstance(sub, A.Index) and isinstance(sub.base, A.Name):
                    self._edge_in(sub.base.id, sid, sub.indices, loop_vars)
                elif isinstance(sub, A.Name):
                    if sub.id in self.checked.variables and not self.g.has_edge(sub.id, sid):
                        self.g.add_edge(sub.id, sid, index=None, lag=0)

    def _edge_in(self, name, sid, indices, loop_vars):
        if name not in self.checked.variables:
            return
        lag = 0
        for i in indices:
            if isinstance(i, A.BinOp) and i.op == "-" and isinstance(i.left, A.Name) and \
                    i.left.id in loop_vars and isinstance(i.right, A.Num) and i.right.is_int:
                lag = max(lag, i.right.value)
        prev = self.g.get_edge_data(name, sid)
        if prev is None or lag > prev.get("lag", 0):
            self.g.add_edge(name, sid, index=tuple(indices), lag=lag)

    def _walk(self, body, plates, generated, plates_of):
        for s in body:
            if isinstance(s, (A.Sample, A.VarDecl)) and (not isinstance(s, A.VarDecl) or s.dist is not None):
                name = s.target.name if isinstance(s, A.Sample) else s.name
                info = self.checked.variables.get(name)
                kind = {"data": "observe", "param": "prior"}.get(info.kind if info else "", "sample")
                sid = self._new_stmt(kind, s, name, s.dist.func, plates, generated)
                idx = s.target.indices if isinstance(s, A.Sample) else ()
                self._reads(sid, list(s.dist.args) + list(idx), plates)
                self.g.add_edge(sid, name, index=tuple(idx), lag=0)
                plates_of.setdefault(name, plates)
            elif isinstance(s, (A.Assign, A.VarDecl)):
                name = s.target.name if isinstance(s, A.Assign) else s.name
                value = s.value
                if value is None:
                    continue
                sid = self._new_stmt("assign", s, name, None, plates, generated)
                idx = s.target.indices if isinstance(s, A.Assign) else ()
                self._reads(sid, [value] + list(idx), plates)
                if name in self.checked.variables:
                    self.g.add_edge(sid, name, index=tuple(idx), lag=0)
                    plates_of.setdefault(name, plates)
            elif isinstance(s, A.TargetIncrement):
                sid = self._new_stmt("factor", s, None, None, plates, generated)
                self._reads(sid, [s.value], plates)
            elif isinstance(s, A.For):
                plate = Plate(s.var, s.lo, s.hi, s.span)
                self._walk(s.body, plates + (plate,), generated, plates_of)
            elif isinstance(s, A.If):
                self._walk(s.then, plates, generated, plates_of)
                self._walk(s.orelse, plates, generated, plates_of)
            elif isinstance(s, A.Generated):
                self._walk(s.body, plates, True, plates_of)

    # ------------------------------------------------------------ loop analysis
    def _plan_loops(self, body):
        for s in body:
            if isinstance(s, A.For):
                self.loop_plans[id(s)] = self._plan(s)
                self._plan_loops(s.body)
            elif isinstance(s, A.If):
                self._plan_loops(s.then)
                self._plan_loops(s.orelse)
            elif isinstance(s, A.Generated):
                self._plan_loops(s.body)

    def _plan(self, loop: A.For) -> LoopPlan:
        """A loop can be one array operation when no iteration reads what another one wrote."""
        events: List[Tuple[str, str, tuple, str]] = []  # (op, name, index, mode) in body order
        _collect_events(loop.body, events, self.checked.variables)
        carried_density, carried_sample, lags = set(), set(), set()
        for mode, carried in (("density", carried_density), ("sample", carried_sample)):
            write_index: Dict[str, tuple] = {}
            written_before: set = set()
            for op, name, index, emode in events:
                if op == "write":
                    if emode == "sample" and mode == "density":
                        continue
                    if name in write_index and write_index[name] != index:
                        carried.add(name)
                    write_index[name] = index
                    written_before.add(name)
                    if index and not any(_mentions(i, loop.var) for i in index):
                        carried.add(name)
            # second pass: every read of a loop-written variable must be the same element,
            # after it was written in this iteration
            seen = set()
            for op, name, index, emode in events:
                if op == "write":
                    if not (emode == "sample" and mode == "density"):
                        seen.add(name)
                    continue
                if name not in write_index:
                    continue
                if name not in seen or write_index[name] != index:
                    carried.add(name)
                    lag = _lag_of(index, write_index[name], loop.var)
                    if lag:
                        lags.add((name, lag))
        return LoopPlan("scan" if carried_density else "vectorize",
                        "scan" if carried_sample else "vectorize",
                        tuple(sorted(carried_density | carried_sample)), tuple(sorted(lags)))


def _mentions(e, name):
    return any(isinstance(x, A.Name) and x.id == name for x in A.walk_expr(e))


def _lag_of(read_index, write_index, var):
    if len(read_index) != len(write_index):
        return 0
    for r, w in zip(read_index, write_index):
        if r == w:
            continue
        if isinstance(w, A.Name) and w.id == var and isinstance(r, A.BinOp) and r.op == "-" and \
                r.left == w and isinstance(r.right, A.Num):
            return r.right.value
        return 0
    return 0


def _collect_events(body, events, variables):
    """Reads and writes in body order. Writes by `~` on random variables only count when sampling."""
    def reads(e):
        for sub in _reads_of(e):
            events.append(("read",) + sub + ("both",))

    for s in body:
        if isinstance(s, A.Sample):
            for a in s.dist.args:
                reads(a)
            for i in s.target.indices:
                reads(i)
            info = variables.get(s.target.name)
            if info is not None and info.kind in ("latent", "generated"):
                events.append(("write", s.target.name, tuple(s.target.indices), "sample"))
        elif isinstance(s, A.Assign):
            reads(s.value)
            for i in s.target.indices:
                reads(i)
            events.append(("write", s.target.name, tuple(s.target.indices), "both"))
        elif isinstance(s, A.VarDecl) and s.value is not None:
            reads(s.value)
            events.append(("write", s.name, (), "both"))
        elif isinstance(s, A.TargetIncrement):
            reads(s.value)
        elif isinstance(s, A.For):
            reads(s.lo)
            reads(s.hi)
            _collect_events(s.body, events, variables)
        elif isinstance(s, A.If):
            reads(s.cond)
            _collect_events(s.then, events, variables)
            _collect_events(s.orelse, events, variables)


def _reads_of(e):
    """(name, index) for each variable read in e; whole-array reads have index ()."""
    out = []

    def go(x):
        if isinstance(x, A.Index) and isinstance(x.base, A.Name):
            out.append((x.base.id, tuple(x.indices)))
            for i in x.indices:
                go(i)
        elif isinstance(x, A.Name):
            out.append((x.id, ()))
        else:
            for child in expr_children(x):
                go(child)

    go(e)
    return out


def expr_children(x):
    """The direct subexpressions of an expression (slice bounds included)."""
    if isinstance(x, A.BinOp):
        return [x.left, x.right]
    if isinstance(x, (A.UnOp, A.Transpose)):
        return [x.operand]
    if isinstance(x, A.Call):
        return ([x.given] if x.given is not None else []) + list(x.args)
    if isinstance(x, A.Index):
        return [x.base] + list(x.indices)
    if isinstance(x, A.Slice):
        return [p for p in (x.lo, x.hi) if p is not None]
    if isinstance(x, A.ArrayLit):
        return list(x.items)
    return []


def build_graph(checked: CheckedProgram) -> ModelGraph:
    return ModelGraph(checked)
