"""State-space structure of a model: the form a particle filter runs on.

A model is a state-space model when its sequential latents ("state variables") are 1-D arrays
defined element by element along one index t = 1..T:

    x: real[T]
    x[1] ~ init(...)                      # top level, literal index 1
    for t in 2:T { x[t] ~ f(x[t-1], ...) } # lag-1 recurrence
    for t in 1:T { y[t] ~ g(x[t], ...) }   # observations along the same index

Several state variables may share the loops (a statement may read another state variable at
t-1, or at t when that one is drawn earlier in the same step); transition and observation
statements may sit in one fused loop or separate ones; observation loops may cover part of
1..T (steps outside get no observation), and an observation of step 1 may be written at top
level (`y[1] ~ g(x[1])`). Every other latent is a static parameter: its statements are top-level
and read no state.

`analyze(graph)` returns a frozen `StateSpaceForm` or raises `NotStateSpace` naming the variable
and line that break the form. The form also records which statements are linear-Gaussian
(normal, mean affine in the state, scale free of it), so lowering can marginalise the state
exactly (Kalman) or use the locally optimal proposal. The rewrite
`ppl.ir.rewrites.extract_state_space` puts the form into the program as a `StateSpace` node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..syntax.span import NO_SPAN, Span
from ..syntax.visit import walk
from . import nodes as N
from .graph import ModelGraph


class NotStateSpace(Exception):
    def __init__(self, reason: str, span: Optional[Span] = None):
        super().__init__(reason)
        self.reason = reason
        self.span = span


@dataclass(frozen=True)
class StepStmt:
    """One statement run per time step.

    role: "state" (draws a state variable's element) or "observe" (scores a data element).
    var: the loop variable (None for a top-level statement at literal index 1).
    lo, hi: the step range the statement covers (1-based, inclusive; expressions of data).
    lags: state variables read, with their lag (0: x[t], 1: x[t-1]).
    gaussian: normal distribution, scale free of the state.
    affine: the mean (first argument) is affine in the state variables read.
    """
    stmt: N.Draw
    role: str
    target: str
    var: Optional[str]
    lo: N.Expr
    hi: N.Expr
    lags: Tuple[Tuple[str, int], ...]
    gaussian: bool
    affine: bool

    @property
    def line(self) -> int:
        return self.stmt.span.line


@dataclass(frozen=True)
class StateSpaceForm:
    state_vars: Tuple[str, ...]
    init: Tuple[StepStmt, ...]  # state statements of step 1, in order
    transition: Tuple[StepStmt, ...]  # state statements of steps 2..T, in order
    observations: Tuple[StepStmt, ...]  # observation statements (any step range)
    T: N.Expr  # number of steps (the hi of the transition loops)
    params: Tuple[str, ...]  # static latents (and params) — everything else that is random
    static: Tuple[N.Stmt, ...]  # top-level statements not involving the state, in order
    discrete: bool  # some state variable is discrete
    linear_gaussian: bool  # the whole state chain and its observations are linear-Gaussian
    guided: bool  # Gaussian transitions and linear-Gaussian observations (locally optimal q)
    declarations: Tuple[int, ...] = ()  # sids of the state variables' declarations
    loops: Tuple[int, ...] = ()  # sids of the time loops
    program: Tuple[N.Stmt, ...] = ()  # the statements the form was read from, in order
    span: Span = field(default=NO_SPAN, compare=False)

    def describe(self) -> str:
        kind = "linear-Gaussian " if self.linear_gaussian else ""
        return (f"{kind}state-space model: state {', '.join(self.state_vars)} over "
                f"{len(self.observations)} observation statement(s)"
                + (f", static {', '.join(self.params)}" if self.params else ""))


@dataclass(frozen=True)
class StateSpace(N.Stmt):
    """The state-space part of a program (made by `extract_state_space`): run as a program it
    draws or scores the initial states, then the transitions and observations step by step."""
    form: StateSpaceForm = field(default=None, compare=False, metadata={"leaf": True})


def _names(e) -> set:
    return {x.name for x in walk(e) if isinstance(x, N.Ref)}


def _state_reads(e, state: set, loop_var: Optional[str], where: N.Stmt):
    """(name, lag) for each read of a state variable in e; raises on any other access."""
    out = []
    indexed = 0
    for x in walk(e):
        if isinstance(x, N.Index) and isinstance(x.base, N.Ref) and x.base.name in state:
            out.append((x.base.name, _lag(x, loop_var, where)))
            indexed += 1
    bare = [x for x in walk(e) if isinstance(x, N.Ref) and x.name in state]
    if len(bare) > indexed:
        n = bare[0].name
        raise NotStateSpace(f'"{n}" (line {where.span.line}) is read as a whole array; a particle '
                            f"filter reads a state variable one step at a time ({n}[t] or {n}[t-1])",
                            where.span)
    return out


def _lag(ix: N.Index, loop_var: Optional[str], where: N.Stmt) -> int:
    name = ix.base.name
    if len(ix.indices) != 1:
        raise NotStateSpace(f'"{name}" (line {where.span.line}) must be indexed by the time index only',
                            where.span)
    i = ix.indices[0]
    if loop_var is None:
        if isinstance(i, N.Const) and i.type == "int" and i.value == 1:
            return 0
    else:
        if isinstance(i, N.Ref) and i.name == loop_var:
            return 0
        if isinstance(i, N.Binary) and i.op == "-" and isinstance(i.left, N.Ref) and \
                i.left.name == loop_var and isinstance(i.right, N.Const) and i.right.value == 1:
            return 1
    raise NotStateSpace(f'"{name}" (line {where.span.line}) is read at an index other than '
                        f"{'1' if loop_var is None else loop_var + ' or ' + loop_var + '-1'}: a particle "
                        "filter keeps only the current and previous state", where.span)


def _affine(e, state: set) -> bool:
    if not (_names(e) & state):
        return True
    if isinstance(e, N.Index) and isinstance(e.base, N.Ref) and e.base.name in state:
        return not any(_names(i) & state for i in e.indices)
    if isinstance(e, N.Binary):
        if e.op in ("+", "-"):
            return _affine(e.left, state) and _affine(e.right, state)
        if e.op == "*":
            lc, rc = not (_names(e.left) & state), not (_names(e.right) & state)
            return (lc and _affine(e.right, state)) or (rc and _affine(e.left, state))
        if e.op == "/":
            return not (_names(e.right) & state) and _affine(e.left, state)
        return False
    if isinstance(e, N.Unary) and e.op in ("-", "+"):
        return _affine(e.operand, state)
    return False


def _gaussian_affine(s: N.Draw, state: set) -> Tuple[bool, bool]:
    if s.dist.name != "normal" or len(s.dist.args) != 2:
        return False, False
    mean, sd = s.dist.args
    gaussian = not (_names(sd) & state)
    return gaussian, gaussian and _affine(mean, state)


def _stmt_names(s) -> set:
    return {x.name for x in walk(s) if isinstance(x, N.Ref)} | (
        {s.target.name} if isinstance(s, (N.Draw, N.Let)) else set()) | (
        {s.name} if isinstance(s, N.Declare) else set()) | {
        x.target.name for x in walk(s) if isinstance(x, (N.Draw, N.Let))}


def analyze(graph: ModelGraph) -> StateSpaceForm:
    ir = graph.ir
    variables = ir.variables
    state = [v.name for v in graph.latents() if v.elementwise]
    if not state:
        raise NotStateSpace("no latent is defined element by element along a time index "
                            "(x: real[T]; x[1] ~ …; for t in 2:T { x[t] ~ f(x[t-1]) })")
    state_set = set(state)
    for n in state:
        v = graph.var(n)
        if v.type is None or len(v.type.dims) != 1:
            raise NotStateSpace(f'state variable "{n}" (line {v.span.line}) must be a 1-D array '
                                f"(one element per time step)", v.span)
        if v.type.base not in ("real", "int", "bool") or v.type.lower is not None or \
                v.type.upper is not None:
            raise NotStateSpace(f'state variable "{n}" (line {v.span.line}) must be an unbounded real '
                                "or an int array", v.span)

    init: Dict[str, StepStmt] = {}
    trans: Dict[str, StepStmt] = {}
    init_order: List[StepStmt] = []
    trans_order: List[StepStmt] = []
    obs: List[StepStmt] = []
    static: List[N.Stmt] = []
    declarations: List[int] = []
    loops: List[int] = []
    taken: List[N.Stmt] = []
    one = N.Const(NO_SPAN, 1, "int")

    def is_observed(name):
        return variables.get(name) is not None and variables[name].kind == "data"

    def step_stmt(s, role, var, lo, hi, drawn_now):
        lags = tuple(_state_reads_all(s, state_set, var))
        for n, lag in lags:
            if lag == 0 and n not in drawn_now:
                raise NotStateSpace(f'line {s.span.line} reads "{n}" of the current step before it '
                                    "is drawn in that step", s.span)
            if lag == 1 and role == "observe":
                raise NotStateSpace(f'the observation on line {s.span.line} reads "{n}" of the '
                                    "previous step; observations may read only the current state",
                                    s.span)
        g, a = _gaussian_affine(s, state_set)
        if role == "state" and any(lag == 0 for _, lag in lags):
            a = False  # within-step dependence: not handled by the Kalman form
        return StepStmt(s, role, s.target.name, var, lo, hi, lags, g, a)

    drawn_init: List[str] = []
    for s in ir.body:
        if isinstance(s, N.Declare) and s.name in state_set:
            declarations.append(s.sid)
            taken.append(s)
            continue
        if isinstance(s, (N.Draw, N.Let)) and s.target.name in state_set and not s.target.indices:
            raise NotStateSpace(f'"{s.target.name}" (line {s.span.line}) is drawn as a whole array',
                                s.span)
        if isinstance(s, N.Generated):
            continue
        if isinstance(s, N.Draw) and (s.target.name in state_set or
                                      (is_observed(s.target.name) and s.target.indices and
                                       _names(s.dist) & state_set)):
            name = s.target.name
            idx = s.target.indices
            if not (len(idx) == 1 and isinstance(idx[0], N.Const) and idx[0].value == 1):
                raise NotStateSpace(f'line {s.span.line}: at top level, "{name}" may be set only at '
                                    "index 1 (the first step)", s.span)
            taken.append(s)
            if name in state_set:
                if name in init:
                    raise NotStateSpace(f'"{name}[1]" is drawn twice (line {s.span.line})', s.span)
                st = step_stmt(s, "state", None, one, one, set(drawn_init))
                init[name] = st
                init_order.append(st)
                drawn_init.append(name)
            else:
                obs.append(step_stmt(s, "observe", None, one, one, set(state)))
            continue
        if isinstance(s, N.Loop) and _stmt_names(s) & state_set:
            _loop(s, state_set, variables, trans, trans_order, obs, step_stmt)
            loops.append(s.sid)
            taken.append(s)
            continue
        touched = _stmt_names(s) & state_set
        if touched:
            n = sorted(touched)[0]
            raise NotStateSpace(f'line {s.span.line} uses the state variable "{n}" outside the '
                                "state-space pattern (x[1] ~ …; for t in 2:T { x[t] ~ … }; "
                                "for t in 1:T { y[t] ~ …(x[t]) })", s.span)
        static.append(s)

    for n in state:
        v = graph.var(n)
        if n not in init:
            raise NotStateSpace(f'state variable "{n}" (line {v.span.line}) has no initial statement '
                                f"{n}[1] ~ …", v.span)
        if n not in trans:
            raise NotStateSpace(f'"{n}" (line {v.span.line}) has no transition '
                                f"for t in 2:T {{ {n}[t] ~ … }}", v.span)
    his = {st.hi for st in trans.values()}
    if len(his) != 1:
        st = trans_order[-1]
        raise NotStateSpace(f"the transition loops end at different steps (line {st.line})",
                            st.stmt.span)
    T = trans_order[0].hi
    if not obs:
        raise NotStateSpace("no observation reads the state (y[t] ~ g(x[t]))")
    order = {n: i for i, n in enumerate(drawn_init)}
    trans_sorted = tuple(trans_order)
    init_sorted = tuple(sorted(init_order, key=lambda st: order[st.target]))
    params = tuple(v.name for v in graph.variables("latent", "param") if v.name not in state_set)
    discrete = any(graph.var(n).discrete for n in state)
    all_stmts = init_sorted + trans_sorted + tuple(obs)
    lg = (not discrete) and all(st.gaussian and st.affine for st in all_stmts) and \
        all(not any(lag == 0 for _, lag in st.lags) for st in init_sorted + trans_sorted)
    guided = (not discrete) and len(state) == 1 and \
        all(st.gaussian for st in init_sorted + trans_sorted) and \
        all(st.gaussian and st.affine for st in obs)
    return StateSpaceForm(tuple(state), init_sorted, trans_sorted, tuple(obs), T, params,
                          tuple(static), discrete, lg, guided, tuple(declarations), tuple(loops),
                          tuple(taken), graph.var(state[0]).span)


def _state_reads_all(s: N.Draw, state: set, var):
    out = []
    for a in s.dist.args:
        out += _state_reads(a, state, var, s)
    for i in s.target.indices:
        if _names(i) & state:
            raise NotStateSpace(f"line {s.span.line}: a state variable is used inside an index",
                                s.span)
    seen = []
    for r in out:
        if r not in seen:
            seen.append(r)
    return seen


def _loop(s: N.Loop, state: set, variables, trans, trans_order, obs, step_stmt):
    drawn: List[str] = []
    for b in s.body:
        if not isinstance(b, N.Draw):
            raise NotStateSpace(f"line {b.span.line}: inside a time loop a particle filter supports "
                                "only `~` statements (a state draw or an observation)", b.span)
        name = b.target.name
        idx = b.target.indices
        if not (len(idx) == 1 and isinstance(idx[0], N.Ref) and idx[0].name == s.var):
            raise NotStateSpace(f'line {b.span.line}: "{name}" must be indexed by the loop index '
                                f"{s.var} alone", b.span)
        if name in state:
            if not (isinstance(s.lo, N.Const) and s.lo.value == 2):
                raise NotStateSpace(f'the transition of "{name}" (line {b.span.line}) must run over '
                                    f"{s.var} in 2:T (its first element is drawn at top level)",
                                    b.span)
            if name in trans:
                raise NotStateSpace(f'"{name}" has two transitions (line {b.span.line})', b.span)
            st = step_stmt(b, "state", s.var, s.lo, s.hi, set(drawn))
            trans[name] = st
            trans_order.append(st)
            drawn.append(name)
        elif variables.get(name) is not None and variables[name].kind == "data":
            obs.append(step_stmt(b, "observe", s.var, s.lo, s.hi, set(state)))
        else:
            raise NotStateSpace(f'line {b.span.line}: "{name}" is drawn in a time loop but is neither '
                                "a state variable nor observed data", b.span)
    # a fused loop must also be consistent: an observation reading x[t] where x's transition
    # comes later in the same loop body reads the previous value in program order — reject
    for b in s.body:
        if b.target.name not in state:
            reads = {n for n, lag in _state_reads_all(b, state, s.var) if lag == 0}
            later = [n for n in reads if n in trans and n not in _drawn_before(s.body, b, state)
                     and trans[n].stmt in s.body]
            if later:
                raise NotStateSpace(f'line {b.span.line} reads "{later[0]}[{s.var}]" before it is drawn '
                                    "in the loop body", b.span)


def _drawn_before(body, stmt, state):
    out = set()
    for b in body:
        if b is stmt:
            return out
        if b.target.name in state:
            out.add(b.target.name)
    return out


def find(graph: ModelGraph):
    """(form, None) or (None, NotStateSpace)."""
    try:
        return analyze(graph), None
    except NotStateSpace as e:
        return None, e
