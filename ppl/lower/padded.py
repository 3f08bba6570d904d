"""Arrays whose length is random: `beta: real[k + 1]` with `k` a bounded discrete latent.

Under the padded layout such an array is stored at its largest length with its active length
beside it (`Padded`); one compiled program then serves every k. The interpreter keeps two
invariants so that ordinary array code stays right: entries beyond the active length are 0
(sums, dot and matrix products need no mask), and functions see a harmless 1 there (so that
log, division and their gradients stay finite) before the result is masked again.

One axis may be padded (the array's first, or the last of a slice such as `X[:, 1:(k+1)]`).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


@jax.tree_util.register_pytree_node_class
class Padded:
    """`values` at the largest shape, `length` (an int, possibly traced) active entries along
    `axis`; the rest is 0."""

    def __init__(self, values, length, axis: int = 0):
        self.values = jnp.asarray(values)
        self.length = length
        self.axis = axis if axis >= 0 else self.values.ndim + axis

    def tree_flatten(self):
        return (self.values, self.length), self.axis

    @classmethod
    def tree_unflatten(cls, axis, children):
        obj = cls.__new__(cls)
        obj.values, obj.length = children
        obj.axis = axis
        return obj

    @property
    def shape(self):
        return self.values.shape

    @property
    def ndim(self):
        return self.values.ndim

    @property
    def dtype(self):
        return self.values.dtype

    def mask(self):
        """Boolean, broadcastable against `values`: the active entries."""
        n = self.values.shape[self.axis]
        m = jnp.arange(n) < self.length
        return m.reshape((n,) + (1,) * (self.values.ndim - self.axis - 1))

    def safe(self, fill=1.0):
        """The values with `fill` in the inactive entries (for functions that must not see 0)."""
        return jnp.where(self.mask(), self.values, jnp.asarray(fill, self.values.dtype))

    def rebuild(self, values) -> "Padded":
        """New values on the same active part, zero beyond it (broadcast to the padded shape)."""
        values = jnp.asarray(values)
        axis = self.axis + (values.ndim - self.values.ndim)
        n = values.shape[axis] if 0 <= axis < values.ndim else 0
        if n != self.values.shape[self.axis]:
            return Padded(values, self.length, axis) if axis >= 0 else values
        m = (jnp.arange(n) < self.length).reshape((n,) + (1,) * (values.ndim - axis - 1))
        return Padded(jnp.where(m, values, jnp.zeros((), values.dtype)), self.length, axis)

    def __repr__(self):
        return f"Padded(shape={self.values.shape}, axis={self.axis})"


def is_padded(x) -> bool:
    return isinstance(x, Padded)


def lift(fn, *args, fill=1.0):
    """Apply an elementwise function to arguments some of which are `Padded`: the result is
    padded like the first padded argument (inactive entries 0)."""
    first = next(a for a in args if isinstance(a, Padded))
    plain = [a.safe(fill) if isinstance(a, Padded) else a for a in args]
    return first.rebuild(fn(*plain))


def values(x) -> Any:
    """The padded values (zeros beyond the active part), or x itself."""
    return x.values if isinstance(x, Padded) else x


def masked_sum(x):
    return jnp.sum(x.values) if isinstance(x, Padded) else jnp.sum(x)


def reduce(name: str, x):
    """Reductions over an array whose length is random."""
    v, m = x.values, x.mask()
    if name == "sum":
        return jnp.sum(v)
    if name == "mean":
        return jnp.sum(v) / jnp.maximum(x.length, 1) / (v.size // v.shape[x.axis])
    if name in ("log_sum_exp",):
        return jax.scipy.special.logsumexp(jnp.where(m, v, -jnp.inf))
    if name in ("max",):
        return jnp.max(jnp.where(m, v, -jnp.inf))
    if name in ("min",):
        return jnp.min(jnp.where(m, v, jnp.inf))
    if name in ("size", "num_elements"):
        return x.length
    if name in ("prod",):
        return jnp.prod(jnp.where(m, v, 1.0))
    if name in ("dot_self",):
        return jnp.sum(v * v)
    return None  # not a reduction this module knows: the caller reports it


REDUCTIONS = frozenset({"sum", "mean", "log_sum_exp", "max", "min", "size", "num_elements",
                        "prod", "dot_self"})
