"""The abstract syntax tree: small frozen dataclasses, each with the source span it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Union


from .span import NO_SPAN, Span  # noqa: F401  (re-exported: the AST's nodes carry spans)


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Expr:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Num(Expr):
    value: Union[int, float]
    is_int: bool


@dataclass(frozen=True)
class Bool(Expr):
    value: bool


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Ternary(Expr):
    """`cond ? then : orelse`"""
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True)
class UnOp(Expr):
    op: str
    operand: Expr


@dataclass(frozen=True)
class NamedArg:
    """`name = value` in a call: `sde(drift = -x, diffusion = 1)`."""
    name: str
    value: Expr
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: Tuple[Expr, ...]
    # `normal_lpdf(y | mu, sigma)`: the value before the bar
    given: Optional[Expr] = None
    func_span: Span = field(default=None, compare=False, repr=False)
    named: Tuple[NamedArg, ...] = ()  # named arguments, after the positional ones

    def arg(self, name: str) -> Optional[Expr]:
        for a in self.named:
            if a.name == name:
                return a.value
        return None


@dataclass(frozen=True)
class Slice(Expr):
    lo: Optional[Expr]
    hi: Optional[Expr]


@dataclass(frozen=True)
class Index(Expr):
    base: Expr
    indices: Tuple[Expr, ...]  # each an Expr or a Slice


@dataclass(frozen=True)
class Transpose(Expr):
    operand: Expr


@dataclass(frozen=True)
class ArrayLit(Expr):
    items: Tuple[Expr, ...]


# ---------------------------------------------------------------- types
@dataclass(frozen=True)
class Bound:
    name: str  # "lower" | "upper"
    value: Expr
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class TypeExpr:
    base: str  # real | int | bool | simplex | ordered | ...
    bounds: Tuple[Bound, ...]
    dims: Tuple[Tuple[Expr, ...], ...]  # one tuple per bracket group
    span: Span = field(compare=False, repr=False)

    def bound(self, name: str) -> Optional[Expr]:
        for b in self.bounds:
            if b.name == name:
                return b.value
        return None


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Stmt:
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class LValue:
    name: str
    indices: Tuple[Expr, ...]  # empty for a whole variable
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class DataDecl(Stmt):
    name: str
    type: TypeExpr
    name_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ParamDecl(Stmt):
    name: str
    type: TypeExpr
    name_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class VarDecl(Stmt):
    """`x: real[T]`, optionally with `~ dist(...)` or `= expr` on the same line."""
    name: str
    type: TypeExpr
    dist: Optional[Call] = None
    value: Optional[Expr] = None
    name_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sample(Stmt):
    target: LValue
    dist: Call


@dataclass(frozen=True)
class Assign(Stmt):
    target: LValue
    value: Expr


@dataclass(frozen=True)
class TargetIncrement(Stmt):
    value: Expr


@dataclass(frozen=True)
class For(Stmt):
    var: str
    lo: Expr
    hi: Expr
    body: Tuple[Stmt, ...]
    var_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: Tuple[Stmt, ...]
    orelse: Tuple[Stmt, ...]


@dataclass(frozen=True)
class FunParam:
    name: str
    type: Optional[TypeExpr]
    span: Span = field(compare=False, repr=False)


@dataclass(frozen=True)
class FunDef(Stmt):
    name: str
    params: Tuple[FunParam, ...]
    returns: Optional[TypeExpr]
    body: Tuple[Stmt, ...]
    name_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr


@dataclass(frozen=True)
class Import(Stmt):
    module: str


@dataclass(frozen=True)
class Generated(Stmt):
    body: Tuple[Stmt, ...]


@dataclass(frozen=True)
class MoveDef(Stmt):
    """`move NAME(args) { propose { … } involution { … } }`: a user-written involutive MCMC
    move (docs/mhg.md). `args`: positional names (the formal parameters of a module's move, or
    the actual names at a use) and named options (`weight = 0.5`). `propose`: draws of the
    auxiliary variables given the state; `involution`: assignments mapping (state, aux) to
    (state′, aux′). `has_body` is False for a use of a module's move (`move NAME(k, w, …)`)."""
    name: str
    args: Tuple[Expr, ...]
    named: Tuple[NamedArg, ...]
    propose: Tuple[Stmt, ...] = ()
    involution: Tuple[Stmt, ...] = ()
    has_body: bool = True
    name_span: Span = field(default=None, compare=False, repr=False)
    propose_span: Span = field(default=None, compare=False, repr=False)
    involution_span: Span = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Program:
    body: Tuple[Stmt, ...]
    source: str = field(compare=False, repr=False)
    filename: str = field(compare=False, repr=False)
