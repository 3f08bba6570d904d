"""The particles of one filter, held by one device or split over the devices of a mesh axis.

A filter sees its particles through a `ParticleGroup`: reductions over all particles (max,
sums), gathers for resampling, and each particle's global index. Without an axis name these
are the plain array operations; inside `jax.shard_map` with an axis name they become the
collectives over that axis (`pmax`, `psum`, `all_gather`), so one filter body runs on one
device or on many, with global weights.

Resampling across shards is the one-device scheme on the global weights: every shard gathers
the (normalised) weights, draws the same ancestor indices from the same key, keeps the slots
it holds and gathers their ancestors' states. The ancestors, hence the filter, are the ones a
single device would draw (up to the order in which weights are summed); the cost is a gather
of N weights and N states per resampling event on every shard.

Noise is counter based: particle i's standard normal at counter c is a function of (key, c,
i) alone — JAX's threefry-2x32 hash of the counter pair (c, i), turned into a normal exactly
as `jax.random.normal` turns bits into one (bitwise the same as `jax.random.normal(key, (n,))`
at counter 0, see the tests). No per-step key, no separate draw call: XLA fuses the hash,
the inverse-CDF transform and the model's transition and likelihood into one loop over the
particles, and a particle draws the same noise whichever device or chunk holds it. JAX's own
threefry lowering on CPU is a rolled loop that writes its state to memory five times per
draw; this unrolled form is the same function (a fixed 20-round hash) that XLA can fuse.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["ParticleGroup", "threefry2x32", "counter_normals", "key_words"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, r):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), as JAX computes it, unrolled."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ _rotl(x2, r)
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def key_words(key):
    """Two uint32 words of a typed key (any implementation) or of raw uint32 key data."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = jnp.ravel(data).astype(jnp.uint32)
    return data[0], data[1]


def counter_normals(words, hi, lo, dtype):
    """Standard normals at counters (hi, lo) (uint32 arrays, broadcast together): the values of
    `jax.random.normal(threefry_key(words), shape, dtype)` at flat positions hi · 2³² + lo."""
    k1, k2 = words
    b1, b2 = threefry2x32(k1, k2, jnp.asarray(hi, jnp.uint32), jnp.asarray(lo, jnp.uint32))
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32:
        bits, uint, nbits, nmant = b1 ^ b2, jnp.uint32, 32, 23
    elif dtype == jnp.float64:
        bits = (b1.astype(jnp.uint64) << np.uint64(32)) | b2.astype(jnp.uint64)
        uint, nbits, nmant = jnp.uint64, 64, 52
    else:
        raise ValueError(f"counter_normals draws float32 or float64, not {dtype}")
    # jax.random.uniform's map from bits to [0, 1), then to (-1, 1) and sqrt(2) erfinv
    one = np.array(1.0, dtype)
    f = lax.bitcast_convert_type((bits >> uint(nbits - nmant)) | uint(one.view(uint)), dtype) - one
    lo_ = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))
    u = lax.max(lo_, f * (one - lo_) + lo_)
    return np.array(np.sqrt(2), dtype) * lax.erf_inv(u)


class ParticleGroup:
    """The N particles of one filter: all here (`axis_name=None`), or split evenly over the
    devices of the shard_map axis `axis_name` (this device holds `local` of them, global
    indices `offset` … `offset + local - 1`)."""

    def __init__(self, num_particles: int, axis_name: Optional[str] = None):
        self.total = int(num_particles)
        self.axis = axis_name
        self.shards = 1 if axis_name is None else int(lax.axis_size(axis_name))
        if self.total % self.shards:
            raise ValueError(f"{self.total} particles do not split evenly over {self.shards} devices")
        self.local = self.total // self.shards
        self.offset = 0 if axis_name is None else lax.axis_index(axis_name) * self.local

    # ------------------------------------------------------------ reductions
    def max(self, v):
        m = jnp.max(v)
        return m if self.axis is None else lax.pmax(m, self.axis)

    def sum(self, v, dtype=None):
        s = jnp.sum(v, axis=0, dtype=dtype)
        return s if self.axis is None else lax.psum(s, self.axis)

    # ------------------------------------------------------------ indices and gathers
    def ids(self, dtype=jnp.int32):
        """Global indices of the particles held here."""
        return (self.offset + jnp.arange(self.local)).astype(dtype)

    def gather(self, tree):
        """All N particles' values (every shard gets the whole array)."""
        if self.axis is None:
            return tree
        return jax.tree_util.tree_map(lambda a: lax.all_gather(a, self.axis, tiled=True), tree)

    def mine(self, tree):
        """The rows of global arrays (leaves (N, ...)) this shard holds."""
        if self.axis is None:
            return tree
        return jax.tree_util.tree_map(
            lambda a: lax.dynamic_slice_in_dim(a, self.offset, self.local, axis=0), tree)

    def resample(self, scheme: Callable, key, weights):
        """Global ancestor indices of the slots held here, drawn by `scheme(key, w, N)` from
        the normalised weights (`weights` holds this shard's part)."""
        if self.axis is None:
            return jnp.asarray(scheme(key, weights, self.total), jnp.int32)
        idx = jnp.asarray(scheme(key, self.gather(weights), self.total), jnp.int32)
        return self.mine(idx)

    def take(self, tree, idx):
        """The particles at global indices `idx`."""
        src = self.gather(tree)
        return jax.tree_util.tree_map(lambda a: a[idx], src)

    # ------------------------------------------------------------ noise
    def normals(self, words, counter, width: int, dtype):
        """(local, width) standard normals for the particles held here at step `counter`:
        particle i, scalar j draws at counters (counter · width + j, i)."""
        hi = (jnp.asarray(counter, jnp.uint32) * np.uint32(width)
              + jnp.arange(width, dtype=jnp.uint32))[None, :]
        return counter_normals(words, hi, self.ids(jnp.uint32)[:, None], dtype)

    def keys(self, key):
        """One threefry key per particle held here: the rows of `jax.random.split(key, N)`
        this shard holds (the same keys a single device uses). Threefry, whatever `key`'s
        implementation: vmapped over a batch of rbg keys, jax.random's draws depend on each
        key's position in the batch, so a shard's draws would not be the single device's."""
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and \
                "threefry" not in str(jax.random.key_impl(key)):
            w1, w2 = key_words(key)
            key = jax.random.wrap_key_data(jnp.stack([w1, w2]), impl="threefry2x32")
        return self.mine(jax.random.split(key, self.total))

    def fold(self, key):
        """A key of this shard's own (for batched draws that cannot be split by particle)."""
        return key if self.axis is None else jax.random.fold_in(key, lax.axis_index(self.axis))
