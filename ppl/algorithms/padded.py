"""The padded-model protocol: a model whose dimension is random, as plain JAX callables.

This is what the IR lowering generates for the `mhg` pass (PaddedLayout) and what
`ppl.algorithms.mhg` samples. Every stochastic-size array is stored padded to its upper bound,
with the size alongside, so one compiled program serves every size.

A `PaddedModel` is built from

* `sizes` — `SizeVar(name, lower, upper, log_prior)`: a bounded discrete latent that sizes
  arrays (`k: int<lower=0, upper=30> ~ poisson(3)`). `log_prior(k)` is its prior log pmf,
  **normalised over lower..upper** (the truncation normaliser included; `truncated_log_pmf`
  builds it from a numpyro distribution). `log_density` contains the same term; the sampler
  reports it and the prior-recovery checks compare with it.
* `arrays` — `SizedArray(name, size, offset, kind, event_shape, proposal, insertion)`: an array
  with `size + offset` active elements (offset ≥ 0: change-point heights are `real[k + 1]`),
  each of shape `event_shape`, stored as `(upper + offset, *event_shape)`. `kind` is the
  element type: `Real()`, `Positive()`, `Interval(lo, hi)`, `Ordered(lo, hi)` (strictly
  increasing along the array, each in (lo, hi); bounds may be infinite) or `Simplex()`
  (non-negative, summing to 1 over the active entries). `proposal` is an
  `ElementProposal(sample, log_prob)`: draw and log density of one new element given the
  current state (typically the element's prior statement evaluated at the current
  hyperparameters: `ElementProposal.from_distribution`); simplex arrays need none (their
  births use the standard weight split). `insertion` says where a birth puts the new element:
  `"uniform"` (a uniformly chosen position — exchangeable elements, the default), `"end"`
  (appended — elements whose role depends on their index, e.g. polynomial coefficients) or
  `"sorted"` (implied by `Ordered`: the new element goes to its sorted position). All arrays
  sized by one size variable are inserted into and deleted from at the same position (an
  offset-o array at position + o).
* `params` — `Continuous(name, kind, shape)`: fixed-size continuous latents (hyperparameters).
* `discrete` — `Discrete(name, shape, lower, upper)`: other discrete latents (not sizes), with
  static bounds; they get Gibbs moves.
* `log_density(state, data)` — the **exact** log density π of the state with respect to
  Lebesgue × counting measure: sizes, active array entries (a simplex of n active entries in
  the chart of its first n − 1), params, discrete latents. Every normalising constant that
  depends on a size is included: the size prior's truncation normaliser, order statistics
  (an `ordered[k]` array with an iid prior has density k!·Πf on the ordered set), the
  Dirichlet normaliser Γ(Σα)/ΠΓ(α_j) over the active entries, truncation normalisers of
  bounded elements. It returns −inf outside the support (an ordered array out of order, a
  bound violated, a discrete value out of range) and **must not depend on inactive entries**
  (the sampler checks this: `check_masking`). The helpers below (`active`, `iid_log_prob`,
  `ordered_iid_log_prob`, `dirichlet_log_prob`, `truncated_log_pmf`) compute masked pieces
  with gradients that stay finite in the padding.
* `init(key, data)` — a starting state (e.g. a prior draw), same pytree as below.

The state is a dict: each size an int32 scalar, each array `(upper + offset, *event_shape)`
float, each param its shape, each discrete latent an int32 array. Inactive entries hold the
kind's filler (`Kind.filler`, always inside the support) while the sampler runs; outputs show
them as NaN.

Within-dimension moves work on unconstrained coordinates: `Layout(model)` flattens every
continuous variable (params and sized arrays) into one padded vector z with a mask of the
active coordinates, and maps z to the constrained state with the log-Jacobian of the masked
transforms (identity, exp, scaled logistic, ordered = cumulative exp then the bound map,
stick-breaking over the active entries of a simplex). Inactive coordinates do not enter the
transformed density, so a masked Hamiltonian (zero inverse mass there) leaves them fixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = [
    "Real", "Positive", "Interval", "Ordered", "Simplex", "ElementProposal", "SizeVar",
    "SizedArray", "Continuous", "Discrete", "PaddedModel", "Layout", "active", "iid_log_prob",
    "ordered_iid_log_prob", "dirichlet_log_prob", "truncated_log_pmf", "insert_at", "remove_at",
    "clean", "to_nan",
]

State = Dict[str, Any]


# ------------------------------------------------------------------------------ element kinds
@dataclass(frozen=True)
class Real:
    """Unconstrained reals."""
    filler: float = 0.0


@dataclass(frozen=True)
class Positive:
    filler: float = 1.0


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    @property
    def filler(self):
        return 0.5 * (self.lo + self.hi)


@dataclass(frozen=True)
class Ordered:
    """Strictly increasing along the array, each element in (lo, hi) (bounds may be ±inf)."""
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def filler(self):
        # padding sits at the upper end, so a sorted search over the whole padded array works
        if math.isfinite(self.hi):
            return float(self.hi)
        return float(self.lo) + 1.0 if math.isfinite(self.lo) else 0.0


@dataclass(frozen=True)
class Simplex:
    """Non-negative, summing to one over the active entries; padding holds 0."""
    filler: float = 0.0


Kind = Any


# ---------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class ElementProposal:
    """Draw and log density of one new element (shape `event_shape`) given the current state."""
    sample: Callable  # (key, state, data) -> element
    log_prob: Callable  # (element, state, data) -> scalar

    @staticmethod
    def from_distribution(dist_fn: Callable) -> "ElementProposal":
        """From `dist_fn(state, data) -> numpyro distribution` of one element (e.g. the
        element's prior statement at the current hyperparameters)."""
        def sample(key, state, data):
            return dist_fn(state, data).sample(key)

        def log_prob(x, state, data):
            return jnp.sum(dist_fn(state, data).log_prob(x))
        return ElementProposal(sample, log_prob)


@dataclass(frozen=True)
class SizeVar:
    name: str
    lower: int
    upper: int
    log_prior: Callable  # k -> log pmf, normalised over lower..upper

    def __post_init__(self):
        if not 0 <= self.lower <= self.upper:
            raise ValueError(f"size {self.name}: need 0 <= lower <= upper, got {self.lower}..{self.upper}")

    def prior_pmf(self) -> np.ndarray:
        """p(k) for k = lower..upper."""
        ks = jnp.arange(self.lower, self.upper + 1)
        return np.exp(np.asarray(jax.vmap(self.log_prior)(ks), dtype=float))


@dataclass(frozen=True)
class SizedArray:
    name: str
    size: str
    offset: int = 0
    kind: Kind = field(default_factory=Real)
    event_shape: Tuple[int, ...] = ()
    proposal: Optional[ElementProposal] = None
    insertion: str = "uniform"  # "uniform" | "end" | "sorted" (forced for Ordered)

    def __post_init__(self):
        if self.offset < 0:
            raise ValueError(f"array {self.name}: offset must be >= 0")
        if isinstance(self.kind, (Ordered, Simplex)) and self.event_shape != ():
            raise ValueError(f"array {self.name}: ordered and simplex arrays have scalar elements")
        if isinstance(self.kind, Ordered):
            object.__setattr__(self, "insertion", "sorted")
        if self.insertion not in ("uniform", "end", "sorted"):
            raise ValueError(f"array {self.name}: unknown insertion {self.insertion!r}")


@dataclass(frozen=True)
class Continuous:
    """A fixed-size continuous latent (ordered/simplex along its last and only axis)."""
    name: str
    kind: Kind = field(default_factory=Real)
    shape: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Discrete:
    name: str
    shape: Tuple[int, ...]
    lower: int
    upper: int


@dataclass(frozen=True)
class PaddedModel:
    sizes: Tuple[SizeVar, ...]
    arrays: Tuple[SizedArray, ...]
    log_density: Callable  # (state, data) -> scalar
    init: Callable  # (key, data) -> state
    params: Tuple[Continuous, ...] = ()
    discrete: Tuple[Discrete, ...] = ()
    name: str = "model"

    def __post_init__(self):
        names = [s.name for s in self.sizes] + [a.name for a in self.arrays] + \
                [p.name for p in self.params] + [d.name for d in self.discrete]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate names in padded model: {sorted(dup)}")
        sizes = {s.name: s for s in self.sizes}
        for a in self.arrays:
            if a.size not in sizes:
                raise ValueError(f"array {a.name} is sized by unknown size {a.size!r}")
            if isinstance(a.kind, Simplex) and sizes[a.size].lower + a.offset < 1:
                raise ValueError(f"simplex {a.name} may be empty: its size's lower bound + offset must be >= 1")
            if a.proposal is None and not isinstance(a.kind, Simplex):
                raise ValueError(f"array {a.name} has no element proposal for births")

    def size(self, name) -> SizeVar:
        return next(s for s in self.sizes if s.name == name)

    def capacity(self, a: SizedArray) -> int:
        return self.size(a.size).upper + a.offset

    def arrays_of(self, size_name) -> Tuple[SizedArray, ...]:
        return tuple(a for a in self.arrays if a.size == size_name)

    def length(self, a: SizedArray, state) -> Any:
        return state[a.size] + a.offset


# ------------------------------------------------------------------------------ padded helpers
def active(n, cap: int, event_shape=()):
    """Boolean mask (cap, *event_shape): the first n entries along axis 0."""
    m = jnp.arange(cap) < n
    return jnp.broadcast_to(m.reshape((cap,) + (1,) * len(event_shape)), (cap,) + tuple(event_shape))


def insert_at(x, pos, value, n, filler):
    """x with `value` inserted at index `pos` (entries pos.. shift up); entries >= n + 1 = filler."""
    cap = x.shape[0]
    idx = jnp.arange(cap).reshape((cap,) + (1,) * (x.ndim - 1))
    shifted = jnp.concatenate([x[:1], x[:-1]], axis=0)  # shifted[i] = x[i - 1]
    out = jnp.where(idx < pos, x, jnp.where(idx == pos, jnp.broadcast_to(value, x.shape), shifted))
    return jnp.where(idx < n + 1, out, filler)


def remove_at(x, pos, n, filler):
    """x without entry `pos` (entries pos+1.. shift down); entries >= n - 1 = filler."""
    cap = x.shape[0]
    idx = jnp.arange(cap).reshape((cap,) + (1,) * (x.ndim - 1))
    shifted = jnp.concatenate([x[1:], x[-1:]], axis=0)  # shifted[i] = x[i + 1]
    out = jnp.where(idx < pos, x, shifted)
    return jnp.where(idx < n - 1, out, filler)


def clean(model: PaddedModel, state: State) -> State:
    """Inactive entries set to their kind's filler."""
    out = dict(state)
    for a in model.arrays:
        x = state[a.name]
        out[a.name] = jnp.where(active(model.length(a, state), x.shape[0], x.shape[1:]), x,
                                jnp.asarray(a.kind.filler, x.dtype))
    return out


def to_nan(model: PaddedModel, sizes: Dict[str, np.ndarray], arrays: Dict[str, np.ndarray]):
    """Host-side: inactive entries of recorded arrays (..., cap, *event) -> NaN."""
    out = {}
    for a in model.arrays:
        x = np.array(arrays[a.name], dtype=float)
        n = np.asarray(sizes[a.size]) + a.offset
        cap = x.shape[n.ndim]
        idx = np.arange(cap).reshape((1,) * n.ndim + (cap,) + (1,) * len(a.event_shape))
        mask = idx < n.reshape(n.shape + (1,) * (1 + len(a.event_shape)))
        out[a.name] = np.where(mask, x, np.nan)
    return out


def _cumsum(x):
    """Cumulative sum along axis 0 as one small matrix product (XLA's CPU cumsum, a
    reduce-window, costs several times more at these sizes). x must be finite: 0·inf would
    leak into earlier entries."""
    n = x.shape[0]
    return jnp.tril(jnp.ones((n, n), x.dtype)) @ x


def iid_log_prob(dist, x, n, safe_value=None):
    """Σ over the first n elements of `dist.log_prob(x_j)` (dist's batch shape: one element).
    Inactive entries are replaced by a point of the support before evaluation (finite gradients)."""
    cap = x.shape[0]
    ev = x.shape[1:]
    m = active(n, cap, ev)
    if safe_value is None:
        safe_value = dist.support.feasible_like(jnp.zeros(ev, x.dtype))
    xs = jnp.where(m, x, safe_value)
    lp = dist.log_prob(xs)
    lp = jnp.broadcast_to(lp, x.shape[: x.ndim - len(dist.event_shape)])
    mm = m if lp.ndim == m.ndim else m.reshape(m.shape[: lp.ndim])
    return jnp.sum(jnp.where(mm, lp, 0.0))


def ordered_iid_log_prob(dist, x, n, safe_value=None):
    """Density of the sorted values of n iid draws: n!·Π f(x_j) on {x_1 < … < x_n}, −inf off it."""
    lp = iid_log_prob(dist, x, n, safe_value)
    cap = x.shape[0]
    idx = jnp.arange(1, cap)
    ok = jnp.all(jnp.where(idx < n, x[1:] > x[:-1], True))
    return jnp.where(ok, lp + gammaln(n + 1.0), -jnp.inf)


def dirichlet_log_prob(alpha, w, n):
    """Dirichlet(alpha_1..alpha_n) density of the first n entries of w (a scalar alpha is
    repeated), in the chart of the first n − 1 coordinates; −inf unless they form a simplex."""
    cap = w.shape[0]
    m = active(n, cap)
    a = jnp.broadcast_to(jnp.asarray(alpha, w.dtype), (cap,))
    ws = jnp.where(m, w, 1.0)
    norm = gammaln(jnp.sum(jnp.where(m, a, 0.0))) - jnp.sum(jnp.where(m, gammaln(a), 0.0))
    lp = norm + jnp.sum(jnp.where(m, (a - 1.0) * jnp.log(ws), 0.0))
    ok = (jnp.abs(jnp.sum(jnp.where(m, w, 0.0)) - 1.0) < 1e-9 * jnp.maximum(n, 1)) & jnp.all(jnp.where(m, w >= 0, True))
    return jnp.where(ok, lp, -jnp.inf)


def truncated_log_pmf(dist, lower: int, upper: int):
    """k -> log p(k) of a discrete numpyro distribution truncated to lower..upper."""
    ks = jnp.arange(lower, upper + 1)
    log_z = jax.scipy.special.logsumexp(dist.log_prob(ks))

    def log_pmf(k):
        inside = (k >= lower) & (k <= upper)
        return jnp.where(inside, dist.log_prob(jnp.clip(k, lower, upper)) - log_z, -jnp.inf)
    return log_pmf


# ------------------------------------------------------------------ masked transforms (layout)
def _bound_map(kind_lo, kind_hi, u):
    """Increasing map R -> (lo, hi) and log of its derivative."""
    lo, hi = kind_lo, kind_hi
    if math.isfinite(lo) and math.isfinite(hi):
        s = jax.nn.sigmoid(u)
        return lo + (hi - lo) * s, math.log(hi - lo) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u)
    if math.isfinite(lo):
        return lo + jnp.exp(u), u
    if math.isfinite(hi):
        return hi - jnp.exp(-u), -u
    return u, jnp.zeros_like(u)


def _bound_inverse(lo, hi, x):
    if math.isfinite(lo) and math.isfinite(hi):
        s = (x - lo) / (hi - lo)
        return jnp.log(s) - jnp.log1p(-s)
    if math.isfinite(lo):
        return jnp.log(x - lo)
    if math.isfinite(hi):
        return -jnp.log(hi - x)
    return x


def constrain(kind, z, n):
    """Masked transform of z (cap, *event) with n active entries -> (x, log|det|)."""
    cap = z.shape[0]
    m = active(n, cap, z.shape[1:])
    if isinstance(kind, Real):
        x, lj = z, jnp.zeros_like(z)
    elif isinstance(kind, Positive):
        x, lj = jnp.exp(z), z
    elif isinstance(kind, Interval):
        x, lj = _bound_map(kind.lo, kind.hi, z)
    elif isinstance(kind, Ordered):
        idx = jnp.arange(cap)
        steps = jnp.where(idx == 0, z, jnp.exp(jnp.minimum(jnp.where(m & (idx > 0), z, 0.0), 700.0)))
        u = _cumsum(jnp.where(m, steps, 0.0))
        x, lj_b = _bound_map(kind.lo, kind.hi, u)
        lj = lj_b + jnp.where(idx > 0, z, 0.0)
    elif isinstance(kind, Simplex):
        idx = jnp.arange(cap)
        free = idx < n - 1
        zt = z - jnp.log(jnp.where(free, n - 1 - idx, 1).astype(z.dtype))
        lv, l1v = jax.nn.log_sigmoid(zt), jax.nn.log_sigmoid(-zt)
        l1v = jnp.where(free, jnp.maximum(l1v, -1e300), 0.0)
        log_rem = _cumsum(l1v) - l1v  # exclusive: Σ_{j<i} log(1 − v_j)
        x = jnp.where(free, jnp.exp(lv + log_rem), jnp.where(idx == n - 1, jnp.exp(log_rem), 0.0))
        lj = jnp.where(free, lv + l1v + log_rem, 0.0)
        return jnp.where(m, x, kind.filler), jnp.sum(lj)
    else:
        raise TypeError(f"unknown kind {kind!r}")
    return jnp.where(m, x, jnp.asarray(kind.filler, z.dtype)), jnp.sum(jnp.where(m, lj, 0.0))


def unconstrain(kind, x, n):
    """Inverse of `constrain` on the active entries; inactive coordinates are 0."""
    cap = x.shape[0]
    m = active(n, cap, x.shape[1:])
    if isinstance(kind, Real):
        z = x
    elif isinstance(kind, Positive):
        z = jnp.log(jnp.where(m, x, 1.0))
    elif isinstance(kind, Interval):
        z = _bound_inverse(kind.lo, kind.hi, jnp.where(m, x, kind.filler))
    elif isinstance(kind, Ordered):
        idx = jnp.arange(cap)
        u = _bound_inverse(kind.lo, kind.hi, jnp.where(m, x, kind.filler))
        prev = jnp.concatenate([u[:1], u[:-1]])
        d = jnp.where(m & (idx > 0), u - prev, 1.0)
        z = jnp.where(idx == 0, u, jnp.log(d))
    elif isinstance(kind, Simplex):
        idx = jnp.arange(cap)
        free = idx < n - 1
        xs = jnp.where(m, x, 0.0)
        rem = 1.0 - (_cumsum(xs) - xs)
        v = jnp.where(free, xs / jnp.where(free, rem, 1.0), 0.5)
        z = jnp.log(v) - jnp.log1p(-v) + jnp.log(jnp.where(free, n - 1 - idx, 1).astype(x.dtype))
        return jnp.where(free, z, 0.0)
    else:
        raise TypeError(f"unknown kind {kind!r}")
    return jnp.where(m, z, 0.0)


def log_jacobian_at(kind, x, n):
    """log|det ∂constrain/∂z| at the constrained value x (n active), without building z."""
    cap = x.shape[0]
    m = active(n, cap, x.shape[1:])

    def total(v):
        return jnp.sum(jnp.where(m, v, 0.0))

    def log_dbound(lo, hi, xs):  # log of the bound map's derivative, at its output xs
        if math.isfinite(lo) and math.isfinite(hi):
            t = (xs - lo) / (hi - lo)
            return math.log(hi - lo) + jnp.log(t) + jnp.log1p(-t)
        if math.isfinite(lo):
            return jnp.log(xs - lo)
        if math.isfinite(hi):
            return jnp.log(hi - xs)
        return jnp.zeros_like(xs)

    if isinstance(kind, Real):
        return jnp.zeros((), x.dtype)
    if isinstance(kind, Positive):
        return total(jnp.log(jnp.where(m, x, 1.0)))
    if isinstance(kind, Interval):
        return total(log_dbound(kind.lo, kind.hi, jnp.where(m, x, kind.filler)))
    if isinstance(kind, Ordered):
        idx = jnp.arange(cap)
        xs = jnp.where(m, x, kind.filler)
        u = _bound_inverse(kind.lo, kind.hi, xs)
        prev = jnp.concatenate([u[:1], u[:-1]])
        steps = jnp.log(jnp.where(m & (idx > 0), u - prev, 1.0))
        return total(log_dbound(kind.lo, kind.hi, xs) + steps)
    if isinstance(kind, Simplex):
        idx = jnp.arange(cap)
        free = idx < n - 1
        xs = jnp.where(m, x, 0.0)
        rem = jnp.where(free, 1.0 - (_cumsum(xs) - xs), 1.0)
        v = jnp.where(free, xs / rem, 0.5)
        return jnp.sum(jnp.where(free, jnp.log(v) + jnp.log1p(-v) + jnp.log(rem), 0.0))
    raise TypeError(f"unknown kind {kind!r}")


def coordinate_mask(kind, n, cap, event_shape=()):
    """Which unconstrained coordinates are free: simplex has n − 1, the others n."""
    if isinstance(kind, Simplex):
        return jnp.arange(cap) < n - 1
    return active(n, cap, event_shape)


@dataclass(frozen=True)
class _Block:
    name: str
    kind: Kind
    shape: Tuple[int, ...]  # padded shape
    size: Optional[str]
    offset: int
    start: int
    stop: int


class Layout:
    """All continuous variables (params and sized arrays) as one padded unconstrained vector."""

    def __init__(self, model: PaddedModel):
        self.model = model
        blocks, pos = [], 0
        for p in model.params:
            n = int(np.prod(p.shape, dtype=int))
            blocks.append(_Block(p.name, p.kind, tuple(p.shape), None, 0, pos, pos + n))
            pos += n
        for a in model.arrays:
            shape = (model.capacity(a),) + tuple(a.event_shape)
            n = int(np.prod(shape, dtype=int))
            blocks.append(_Block(a.name, a.kind, shape, a.size, a.offset, pos, pos + n))
            pos += n
        self.blocks = tuple(blocks)
        self.dim = pos

    def _n(self, b: _Block, state):
        if b.size is None:
            return b.shape[0] if b.shape else 1
        return state[b.size] + b.offset

    def _as_array(self, b, v):
        return jnp.reshape(v, (1,) if not b.shape else b.shape)

    def mask(self, state):
        parts = []
        for b in self.blocks:
            shp = (1,) if not b.shape else b.shape
            parts.append(coordinate_mask(b.kind, self._n(b, state), shp[0], shp[1:]).reshape(-1))
        return jnp.concatenate(parts)

    def unconstrain(self, state):
        parts = []
        for b in self.blocks:
            x = self._as_array(b, state[b.name])
            parts.append(unconstrain(b.kind, x, self._n(b, state)).reshape(-1))
        return jnp.concatenate(parts)

    def log_jacobian(self, state):
        """log|det ∂T/∂z| at the state's continuous values."""
        lj = 0.0
        for b in self.blocks:
            lj = lj + log_jacobian_at(b.kind, self._as_array(b, state[b.name]), self._n(b, state))
        return lj

    def constrain(self, z, state):
        """New state with the continuous variables from z, and the log-Jacobian."""
        out, lj = dict(state), 0.0
        for b in self.blocks:
            shp = (1,) if not b.shape else b.shape
            x, l = constrain(b.kind, z[b.start:b.stop].reshape(shp), self._n(b, state))
            out[b.name] = x.reshape(b.shape)
            lj = lj + l
        return out, lj

    def log_density_z(self, z, state, data):
        """log π(T(z)) + log|det ∂T/∂z| at fixed sizes and discrete latents."""
        new, lj = self.constrain(z, state)
        return self.model.log_density(new, data) + lj
