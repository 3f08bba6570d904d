"""IR of user-written moves (docs/mhg.md): what the IR builder makes of
`move NAME(weight = w) { propose { … } involution { … } }`.

The statements are ordinary IR statements: in `propose`, `Draw`s with role "aux" (an auxiliary
variable drawn given the state), `Let`s of locals and `Branch`es; in `involution`, `Let`s (a
model variable, an auxiliary variable or a local), `Branch`es and `Loop`s, with `ArrayEdit` as
the right-hand side for `insert`/`remove`. A move is not part of the model's body: the analyses
and the density never see it; the mhg pass lowers it (ppl/lower/moves.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..syntax.span import NO_SPAN, Span
from . import nodes as N


@dataclass(frozen=True)
class ArrayEdit(N.Expr):
    """`insert(x, i, v)`: x with v at position i (1-based), the entries from i on shifted up by
    one, the last dropped (the padding of an array whose size is random); `remove(x, i)`: the
    entries after i shifted down by one, the last repeated."""
    op: str = "insert"
    array: N.Expr = None
    position: N.Expr = None
    value: Optional[N.Expr] = None


@dataclass(frozen=True)
class AuxVar:
    name: str
    discrete: bool


@dataclass(frozen=True)
class Move:
    """A user-written involutive move. `aux`: its auxiliary variables in order of first draw;
    `writes`: the model variables the involution assigns; `span`/`name_span`: where the model
    uses it; `module`: the file of its body when a module defines it (None: the model file)."""
    name: str
    weight: float
    propose: Tuple[N.Stmt, ...]
    involution: Tuple[N.Stmt, ...]
    aux: Tuple[AuxVar, ...]
    writes: Tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)
    module: Optional[str] = None

    @property
    def real_aux(self) -> Tuple[str, ...]:
        return tuple(a.name for a in self.aux if not a.discrete)

    @property
    def discrete_aux(self) -> Tuple[str, ...]:
        return tuple(a.name for a in self.aux if a.discrete)
