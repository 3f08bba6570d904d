"""Layouts: where the values of a model's continuous latents live in the state a kernel moves.

- `FlatLayout`: one flat unconstrained vector; each latent a slot (offset, size) with the
  bijection onto its support (numpyro's `biject_to`) and its log-Jacobian. What NUTS, tempered
  SMC and particle Gibbs move.
- `PaddedLayout`: the same, with every array whose size is a bounded discrete latent
  (`beta: real[k + 1]`) padded to its largest size: one compiled program serves every k. The
  size variables travel beside the vector; `mask(name, sizes)` says which entries are active.
- `PathLayout`: values of a process on a time grid, (steps, dims) per path, flattened.

Passes ask the layout for values and offsets; they never compute offsets themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

# the mhg kernels' masked transforms (ordered, stick-breaking): one implementation
from ..algorithms import padded as pm


@dataclass(frozen=True)
class Slot:
    name: str
    shape: Tuple[int, ...]  # constrained shape (padded: the largest)
    unconstrained_shape: Tuple[int, ...]
    offset: int
    size: int
    constraint_name: str
    size_var: Optional[str] = None  # padded: set when a dimension's size is random


def constraint_name(c) -> str:
    return type(c).__name__.lstrip("_").replace("Constraint", "").lower() or "real"


class FlatLayout:
    """Continuous latents in one flat unconstrained vector."""

    def __init__(self, slots: Sequence[Slot]):
        self.slots: List[Slot] = list(slots)
        self.by_name: Dict[str, Slot] = {s.name: s for s in self.slots}
        self.dim = sum(s.size for s in self.slots)
        self.names = [s.name for s in self.slots]

    @staticmethod
    def from_discovered(discovered) -> "FlatLayout":
        """From (name, shape, unconstrained shape, constraint, padded) records, in program
        order: a `PaddedLayout` when some array has a random size."""
        slots, offset, padded = [], 0, False
        for name, shape, ushape, c, pad in discovered:
            size = int(np.prod(ushape)) if ushape else 1
            slots.append(Slot(name, tuple(shape), tuple(ushape), offset, size, constraint_name(c),
                              size_var="random" if pad else None))
            offset += size
            padded |= bool(pad)
        return (PaddedLayout if padded else FlatLayout)(slots)

    def has(self, name: str) -> bool:
        return name in self.by_name

    def unconstrained(self, name: str, u):
        """The slot's part of `u`, in its unconstrained shape."""
        s = self.by_name[name]
        return u[s.offset:s.offset + s.size].reshape(s.unconstrained_shape)

    def constrain(self, name: str, u, constraint, mask=None):
        """(value on the support, log-Jacobian of the transform summed — over the active
        entries only when `mask` says which they are)."""
        v = self.unconstrained(name, u)
        t = biject_to(constraint)
        x = t(v)
        log_j = t.log_abs_det_jacobian(v, x)
        if mask is not None:
            if t.domain.event_dim or t.codomain.event_dim:
                return _masked_vector_transform(name, v, constraint, mask)
            log_j = jnp.where(mask, log_j, 0.0)
        return x, jnp.sum(log_j)

    def indices(self, names: Sequence[str]) -> np.ndarray:
        """Positions in u of the given latents' slots, concatenated."""
        parts = [np.arange(self.by_name[n].offset, self.by_name[n].offset + self.by_name[n].size)
                 for n in names]
        return np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)

    def pack(self, parts: Dict[str, Any], base=None):
        """u with the given slots set from unconstrained values (the rest from `base`, or 0)."""
        u = jnp.zeros(self.dim) if base is None else base
        for name, v in parts.items():
            s = self.by_name[name]
            u = u.at[s.offset:s.offset + s.size].set(jnp.ravel(v))
        return u

    def unconstrain_value(self, name: str, value, constraint):
        """The unconstrained coordinates of one latent's value, flat."""
        return jnp.ravel(biject_to(constraint).inv(jnp.asarray(value)))


def _masked_vector_transform(name, v, constraint, mask):
    """Ordered and simplex vectors whose length is random: the masked transforms of the `mhg`
    pass (cumulative exponentials; stick-breaking over the active entries), whose log-Jacobian
    counts the active coordinates only."""
    n = jnp.sum(jnp.reshape(mask, (-1,)).astype(jnp.int32))
    if isinstance(constraint, type(constraints.ordered_vector)):
        return pm.constrain(pm.Ordered(), v, n)
    if isinstance(constraint, type(constraints.simplex)):
        z = jnp.concatenate([v, jnp.zeros((1,), v.dtype)])  # cap − 1 coordinates, padded to cap
        return pm.constrain(pm.Simplex(), z, n)
    raise ValueError(f'"{name}" has a random size and a constrained type whose transform is not '
                     "elementwise (only ordered and simplex are supported)")


class PaddedLayout(FlatLayout):
    """A flat layout whose stochastic-size arrays are padded to their largest size; their
    entries beyond the current size are inactive: the interpreter masks them out of the density
    and the log-Jacobians, and reports them as NaN."""

    def padded(self) -> List[str]:
        return [s.name for s in self.slots if s.size_var is not None]


class PathLayout:
    """Paths of processes on a fixed time grid: each path a (steps, dims) array, all flattened
    into one vector in declaration order."""

    def __init__(self, grid, paths: Dict[str, int]):
        self.grid = np.asarray(grid, dtype=float)
        if self.grid.ndim != 1 or self.grid.size < 2 or np.any(np.diff(self.grid) <= 0):
            raise ValueError("a time grid is an increasing vector of at least two times")
        self.paths = dict(paths)  # name -> number of dimensions
        self.steps = self.grid.size
        self.offsets, off = {}, 0
        for name, d in self.paths.items():
            self.offsets[name] = off
            off += self.steps * d
        self.dim = off

    def flatten(self, values: Dict[str, Any]):
        return jnp.concatenate([jnp.reshape(jnp.asarray(values[n]), (-1,)) for n in self.paths])

    def unflatten(self, u) -> Dict[str, Any]:
        out = {}
        for name, d in self.paths.items():
            o = self.offsets[name]
            out[name] = jnp.reshape(u[o:o + self.steps * d], (self.steps, d))
        return out

    def index_of(self, times) -> np.ndarray:
        """Grid positions of the given times (each must lie on the grid)."""
        times = np.asarray(times, dtype=float)
        pos = np.searchsorted(self.grid, times)
        pos = np.clip(pos, 0, self.steps - 1)
        near = np.where(np.abs(self.grid[pos] - times) <= 1e-9 * max(1.0, float(np.max(np.abs(self.grid)))),
                        pos, -1)
        if np.any(near < 0):
            bad = times[near < 0][0]
            raise ValueError(f"time {bad} is not on the grid")
        return near

    def at(self, values: Dict[str, Any], name: str, times):
        """The path `name` at the given grid times: (len(times), dims)."""
        return jnp.asarray(values[name])[self.index_of(times)]
