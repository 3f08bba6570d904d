"""The model IR: what the program means, as small immutable nodes.

The IR builder (ppl/ir/build.py) turns the checked AST into these nodes once; nothing after it
reads the AST. Compared with the AST, every name is resolved (a `Ref` knows whether it reads
data, a latent, a loop index …), every call is resolved (`Builtin`, `CallUser`, `LogDensity`),
every random statement knows its role (a latent drawn, data observed, a prior on a param, a
generated quantity), every statement has an identity (`sid`) and every loop carries its plan.

Expressions, statements and variables are frozen dataclasses; rewrites (ppl/ir/rewrites/)
build new trees with `ppl.syntax.visit.transform`. The `ModelGraph` (ppl/ir/graph.py) indexes
a `ModelIR` as a networkx graph for the analyses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from ..syntax.span import NO_SPAN, Span


def _leaf(default=None):
    """A field the generic visitor does not descend into."""
    return field(default=default, compare=False, metadata={"leaf": True})


# ============================================================================ expressions
@dataclass(frozen=True)
class Expr:
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Const(Expr):
    value: Union[int, float, bool] = 0
    type: str = "int"  # int | real | bool


@dataclass(frozen=True)
class Ref(Expr):
    """A name read by an expression. `role`: data, param, latent, deterministic, generated
    (top-level variables), local (a value defined inside a loop, branch or function, or a
    function parameter) or index (a loop variable)."""
    name: str = ""
    role: str = "local"


@dataclass(frozen=True)
class Slice(Expr):
    lo: Optional[Expr] = None
    hi: Optional[Expr] = None


@dataclass(frozen=True)
class Index(Expr):
    base: Expr = None
    indices: Tuple[Expr, ...] = ()  # each an expression or a Slice


@dataclass(frozen=True)
class Binary(Expr):
    op: str = "+"
    left: Expr = None
    right: Expr = None


@dataclass(frozen=True)
class Unary(Expr):
    op: str = "-"
    operand: Expr = None


@dataclass(frozen=True)
class Cond(Expr):
    """`cond ? a : b`: elementwise choice."""
    cond: Expr = None
    then: Expr = None
    orelse: Expr = None


@dataclass(frozen=True)
class Transpose(Expr):
    operand: Expr = None


@dataclass(frozen=True)
class Array(Expr):
    items: Tuple[Expr, ...] = ()


@dataclass(frozen=True)
class Builtin(Expr):
    """A math function of the language (ppl/builtins/functions.py)."""
    name: str = ""
    args: Tuple[Expr, ...] = ()


@dataclass(frozen=True)
class CallUser(Expr):
    """A call of a function the program (or an imported module) defines."""
    name: str = ""
    args: Tuple[Expr, ...] = ()


@dataclass(frozen=True)
class LogDensity(Expr):
    """`normal_lpdf(y | mu, sigma)`: the log density of a distribution at a value, summed."""
    dist: "Dist" = None
    value: Expr = None


@dataclass(frozen=True)
class OdeSolve(Expr):
    """`ode_rk45(f, y0, t0, ts, …)`: the solution of dy/dt = f(t, y, …) from y(t0) = y0 at the
    times ts, one row per time (ppl/builtins/ode.py names the solvers). `rtol`, `atol`,
    `max_steps`: given by the `_tol` forms, else None (Stan's defaults)."""
    method: str = "rk45"
    function: str = ""
    y0: Expr = None
    t0: Expr = None
    ts: Expr = None
    rtol: Optional[Expr] = None
    atol: Optional[Expr] = None
    max_steps: Optional[Expr] = None
    args: Tuple[Expr, ...] = ()


# ============================================================================ types
@dataclass(frozen=True)
class VarType:
    """A declared type. `dims` is the whole array shape, outer dimensions first and, for the
    constrained types, one value's dimensions (`core_rank` of them) last: `simplex[K][N]` has
    dims (N, K) and core_rank 1."""
    base: str = "real"  # real | int | bool | simplex | ordered | ... (ppl/check/checker.py)
    dims: Tuple[Expr, ...] = ()
    lower: Optional[Expr] = None
    upper: Optional[Expr] = None
    core_rank: int = 0
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def scalar(self) -> str:
        """The element type: int, bool or real."""
        return self.base if self.base in ("int", "bool") else "real"


# ============================================================================ statements
@dataclass(frozen=True)
class Dist(Expr):
    """A distribution with its arguments: `normal(mu, sigma)`; `user`: defined by a
    `NAME_lpdf` / `NAME_lpmf` function of the program (density only, no sampler)."""
    name: str = ""
    args: Tuple[Expr, ...] = ()
    user: bool = False


@dataclass(frozen=True)
class LValue:
    name: str = ""
    indices: Tuple[Expr, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Stmt:
    sid: int = 0  # the statement's identity: unique in a program, stable across rewrites
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Declare(Stmt):
    """`x: real[T]` — storage for a variable defined later (element by element, or a param's
    value), or a typed local. A declared latent or param takes its value here."""
    name: str = ""
    type: VarType = None
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Draw(Stmt):
    """`target ~ dist`. role: latent (draws a latent), observed (scores data), prior (scores a
    param's value), generated (draws a generated quantity)."""
    target: LValue = None
    dist: Dist = None
    role: str = "latent"


@dataclass(frozen=True)
class Let(Stmt):
    """`target = value` (with `type` when written `x: real[N] = …`). role: deterministic,
    generated or local."""
    target: LValue = None
    value: Expr = None
    role: str = "deterministic"
    type: Optional[VarType] = None


@dataclass(frozen=True)
class Factor(Stmt):
    """`target += value`."""
    value: Expr = None


@dataclass(frozen=True)
class LoopPlan:
    """How a loop runs: as one array operation ("vectorize"), a `lax.scan` ("scan") or
    unrolled ("unroll": a function's loop that returns from inside), when the values its `~`
    statements write are given (`density`) and when they are drawn (`sample`). `carried`:
    variables read across iterations (why a scan is needed); `lags`: (variable, lag) reads
    such as x[t-1]; `drawn`: the variables its `~` statements write."""
    density: str = "vectorize"
    sample: str = "vectorize"
    carried: Tuple[str, ...] = ()
    lags: Tuple[Tuple[str, int], ...] = ()
    drawn: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Loop(Stmt):
    var: str = ""
    lo: Expr = None
    hi: Expr = None
    body: Tuple[Stmt, ...] = ()
    plan: LoopPlan = _leaf(LoopPlan())
    var_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Branch(Stmt):
    cond: Expr = None
    then: Tuple[Stmt, ...] = ()
    orelse: Tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Generated(Stmt):
    """`generated { … }`: drawn once per posterior draw, after inference."""
    body: Tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr = None


# ------------------------------------------------------------ continuous-time processes
@dataclass(frozen=True)
class Noise(Expr):
    """The driving noise of a process: `kind` "brownian" or "fbm" (MA-fBM, ppl/algorithms/
    mafbm.py) with its Hurst index and settings (K, gamma_max, type, T, normalize)."""
    kind: str = "brownian"
    hurst: Optional[Expr] = None
    settings: Tuple[Tuple[str, Expr], ...] = ()

    def setting(self, name: str) -> Optional[Expr]:
        for k, v in self.settings:
            if k == name:
                return v
        return None


@dataclass(frozen=True)
class SDE(Dist):
    """`sde(drift = …, diffusion = …, init = …, noise = …)` on the horizon [start, end].
    `args` are (drift, diffusion, init, noise), so every analysis that reads a distribution's
    arguments sees what the process depends on. Inside drift and diffusion the process's own
    name is its current state and `time` the current time."""
    start: Expr = None
    end: Expr = None
    dim: Optional[Expr] = None  # process<…>[d]: a vector of d coordinates

    @property
    def drift(self) -> Expr:
        return self.args[0]

    @property
    def diffusion(self) -> Expr:
        return self.args[1]

    @property
    def init(self) -> Expr:
        return self.args[2]

    @property
    def noise(self) -> Noise:
        return self.args[3]


@dataclass(frozen=True)
class ProcessDraw(Draw):
    """`x: process<end=T> ~ sde(…)`: a path-valued latent (role "latent", `dist` an SDE)."""


@dataclass(frozen=True)
class PathAt(Expr):
    """`x(t)`: the value of the process `path` at the time `time` (data)."""
    path: Ref = None
    time: Expr = None


# ---------------------------------------------------------------- nodes made by rewrites
@dataclass(frozen=True)
class Marginal(Stmt):
    """A finite discrete latent summed out of the density (ppl/ir/rewrites/marginalize.py).

    The statements that touch it (`terms`) left the program; this node adds
    log Σ_z Π terms(z) in their place. `kind`: "independent" (elements independent given the
    rest, O(N·K)) or "chain" (a Markov chain, the forward algorithm, O(T·K²)). `declare` is the
    latent's declaration (its type gives the shape and the bounds of its values)."""
    name: str = ""
    kind: str = "independent"
    declare: Declare = None
    terms: Tuple["Term", ...] = ()


@dataclass(frozen=True)
class Access:
    """How a term reads the latent z: `offset` 0 for z[v], 1 for z[v-1] in a loop over v;
    `literal` the position of z[c] at top level."""
    indices: Tuple[Expr, ...] = ()
    offset: int = 0
    literal: Optional[int] = None


@dataclass(frozen=True)
class Term:
    """One statement of a marginalised latent: its loop (None at top level), the statement,
    the loop-local assignments it needs, and how it reads the latent."""
    stmt: Stmt = None
    loop: Optional[Loop] = _leaf(None)
    helpers: Tuple[Stmt, ...] = ()
    accesses: Tuple[Access, ...] = ()
    pairwise: bool = False
    defines: bool = False


# ============================================================================ variables
@dataclass(frozen=True)
class Variable:
    """A top-level name of the model and what the program makes of it."""
    name: str
    kind: str  # data | param | latent | deterministic | generated
    type: Optional[VarType]  # declared type (None: inferred from the definition)
    base: str  # int | real | bool: the element type
    rank: Optional[int]  # number of dimensions (None when unknown)
    span: Span = field(compare=False, repr=False)
    observed: bool = False  # data on the left of `~`
    elementwise: bool = False  # defined element by element (inside loops)
    discrete: bool = False  # drawn from a discrete distribution
    finite: bool = False  # … with a finite set of values (enumerable)
    dists: Tuple[str, ...] = ()  # distributions used to define it
    size_vars: Tuple[str, ...] = ()  # latents its shape depends on: a stochastic size
    time_grid: Optional[str] = None  # path-valued: the data variable holding its time grid
    data_only: bool = False  # deterministic from data alone: transformed data, computed once

    @property
    def stochastic_size(self) -> bool:
        return bool(self.size_vars)


@dataclass(frozen=True)
class Param:
    name: str
    type: Optional[VarType]
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Function:
    name: str
    params: Tuple[Param, ...]
    returns: Optional[VarType]
    body: Tuple[Stmt, ...]
    span: Span = field(compare=False, repr=False)
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ModelIR:
    """The program: top-level variables, functions, and the statements in order."""
    variables: Dict[str, Variable]
    functions: Dict[str, Function]
    body: Tuple[Stmt, ...]
    source: str = field(default="", compare=False, repr=False)
    filename: str = field(default="<model>", compare=False, repr=False)
    rewrites: Tuple[str, ...] = ()  # the rewrites applied, in order (ppl check --ir)
    moves: Tuple[Any, ...] = ()  # user-written moves, ppl/ir/moves.py `Move` (not in the body)

    def var(self, name: str) -> Variable:
        return self.variables[name]

    def names(self, *kinds: str):
        return [n for n, v in self.variables.items() if not kinds or v.kind in kinds]

    def replace(self, **changes: Any) -> "ModelIR":
        return dataclasses.replace(self, **changes)
