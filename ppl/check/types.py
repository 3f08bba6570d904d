"""The checker's types and scopes: what a name is bound to while a program is checked (shared by
the checker's rule modules)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from ..syntax import ast as A

BASE_TYPES = {"real": 0, "int": 0, "bool": 0, "vector": 1, "matrix": 2}
# constrained types: rank of one value
CONSTRAINED_TYPES = {
    "simplex": 1, "ordered": 1, "positive_ordered": 1, "unit_vector": 1,
    "cov_matrix": 2, "corr_matrix": 2, "corr_cholesky": 2, "cholesky_factor_corr": 2,
    "cholesky_cov": 2, "cholesky_factor_cov": 2,
}


@dataclass(frozen=True)
class Ty:
    base: str  # "int" | "real" | "bool"
    rank: Optional[int]  # None when unknown


REAL = Ty("real", 0)
INT = Ty("int", 0)


def type_rank(t: A.TypeExpr) -> int:
    if t.base in CONSTRAINED_TYPES:
        core = CONSTRAINED_TYPES[t.base]
        return core + sum(len(d) for d in t.dims[1:])
    return BASE_TYPES.get(t.base, 0) + sum(len(d) for d in t.dims)


def type_base(t: A.TypeExpr) -> str:
    return t.base if t.base in ("int", "bool") else "real"


class Scope:
    """Names visible in a block, chained to the enclosing blocks (the checker maps them to
    types, the IR builder to roles)."""

    def __init__(self, parent: Optional["Scope"] = None, barrier: bool = False):
        self.parent, self.barrier = parent, barrier
        self.names: Dict[str, Ty] = {}

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.names:
                return s.names[name]
            s = s.parent
        return None

    def all_names(self):
        s, out = self, set()
        while s is not None:
            out |= set(s.names)
            s = s.parent
        return out
