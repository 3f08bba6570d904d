"""Involutive moves for Metropolis–Hastings–Green over padded models (Gen-style).

A move draws auxiliary variables a ~ q(·|x) and applies a deterministic involution
h(x, a) = (x′, a′), h∘h = id. It is accepted with probability

    min(1, π(x′) q(a′|x′) / (π(x) q(a|x)) · |det ∂h/∂(x, a)|)

where the determinant is over the continuous coordinates (the active entries of the continuous
variables and the active auxiliary reals). `Involution` holds the pieces as plain JAX functions;
`Aux(choice, u, n_u)` is the auxiliary draw: `choice` discrete (any int pytree: a direction, a
position), `u` a fixed-length real vector of which the first `n_u` entries are active.

Jacobians. `log_jacobian` may be given in closed form (the derived moves do); otherwise, and in
the validations always, it is computed automatically (`auto_log_jacobian`): `jax.jacfwd` of the
map on the padded continuous coordinates, masked to the active ones, then every column with a
single nonzero entry (copies, shifts, scalings — most of a padded map) is removed by Laplace
expansion and the rest (at most `max_local_dim` columns: the coordinates the move really mixes)
goes to `slogdet`. A simplex of n active entries is measured in the chart of n − 1 of them
(`reduced_log_det` says how, exactly, whatever the map does off the simplex).

Derived moves (no user code): `birth_death(model, size)` for every size variable — births draw
each array's new element from its `ElementProposal` (simplex weights by the standard split
w* ~ Beta(1, n), the others scaled by 1 − w*, Jacobian (1 − w*)^(n−1)) and insert it at a
uniformly chosen position, at the end, or at its sorted position for `Ordered`; deaths remove a
uniformly chosen element; arrays sized `k + o` insert and delete at position + o.
`normal_mixture_split_merge` is Richardson & Green's (1997) split/merge for normal mixtures.

`check_involution` is the cheap validation the pass runs by default: round trip h∘h = id at
random points, the Jacobian against finite differences and the closed form against the
automatic one, and log r(x→x′) = −log r(x′→x).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import beta as _beta

from .padded import (Layout, Ordered, PaddedModel, Simplex, active, clean, insert_at, remove_at)

__all__ = ["Aux", "Involution", "InvolutionError", "auto_log_jacobian", "log_ratio",
           "birth_death", "normal_mixture_split_merge", "check_involution", "JACOBIAN_STATUS"]

UP, DOWN = 0, 1  # birth/split, death/merge

# why an automatic Jacobian is not usable at a point (the move is then rejected and counted)
JACOBIAN_STATUS = {0: "ok", 1: "dimension mismatch", 2: "singular", 3: "more mixed coordinates "
                   "than max_local_dim"}


class Aux(NamedTuple):
    choice: Any  # int pytree
    u: Any  # (aux_dim,) float; the first n_u entries are active
    n_u: Any  # int32


@dataclass(frozen=True)
class Involution:
    """An involutive MHG move: `propose(key, x, data) -> Aux`, `log_q(aux, x, data)` (log
    density of the active u times the pmf of the choice), `apply(x, aux, data) -> (x′, aux′)`,
    optional closed-form `log_jacobian(x, aux, data)`. `blocks` names the continuous variables
    the map may change (None: all); `max_local_dim` bounds how many coordinates it mixes."""
    name: str
    propose: Callable
    log_q: Callable
    apply: Callable
    log_jacobian: Optional[Callable] = None
    blocks: Optional[Tuple[str, ...]] = None
    max_local_dim: int = 8


class InvolutionError(ValueError):
    """A move failed a validation check (names the move and the check)."""

    def __init__(self, move: str, check: str, detail: str):
        self.move, self.check, self.detail = move, check, detail
        super().__init__(f'move "{move}" failed the {check} check: {detail}')


# ------------------------------------------------------------------------- automatic Jacobian
def _coordinates(model: PaddedModel, names, state):
    """Flattened padded values of the named continuous variables, their active mask and, per
    coordinate, the index of its simplex block (−1 if none)."""
    layout = Layout(model)
    vals, masks, sid = [], [], []
    simplex_blocks = []
    for b in layout.blocks:
        if b.name not in names:
            continue
        x = jnp.reshape(state[b.name], (-1,))
        if b.size is None:
            m = jnp.ones(x.shape, bool)
        else:
            m = active(state[b.size] + b.offset, b.shape[0], b.shape[1:]).reshape(-1)
        vals.append(x)
        masks.append(m)
        if isinstance(b.kind, Simplex):
            sid.append(jnp.full(x.shape, len(simplex_blocks), jnp.int32))
            simplex_blocks.append(b.name)
        else:
            sid.append(jnp.full(x.shape, -1, jnp.int32))
    return jnp.concatenate(vals), jnp.concatenate(masks), jnp.concatenate(sid), len(simplex_blocks)


def _set_coordinates(model, names, state, c):
    out, pos = dict(state), 0
    for b in Layout(model).blocks:
        if b.name not in names:
            continue
        n = int(np.prod(b.shape, dtype=int)) if b.shape else 1
        out[b.name] = jnp.reshape(c[pos:pos + n], jnp.shape(state[b.name]))
        pos += n
    return out


def _block_names(model, inv):
    layout = Layout(model)
    return tuple(b.name for b in layout.blocks if inv.blocks is None or b.name in inv.blocks)


def jacobian_matrix(model, inv, state, aux, data):
    """(J, active inputs, active outputs, simplex ids in, simplex ids out, #simplex blocks, x′, aux′):
    J = ∂(continuous x′, u′)/∂(continuous x, u) on the padded coordinates."""
    names = _block_names(model, inv)
    cx, mx, sx, nsb = _coordinates(model, names, state)
    px = cx.shape[0]
    c = jnp.concatenate([cx, aux.u])

    def f(c):
        x = _set_coordinates(model, names, state, c[:px])
        x2, a2 = inv.apply(x, aux._replace(u=c[px:]), data)
        cx2, _, _, _ = _coordinates(model, names, x2)
        return jnp.concatenate([cx2, a2.u])

    J = jax.jacfwd(f)(c)
    x2, a2 = inv.apply(state, aux, data)
    _, mx2, sx2, _ = _coordinates(model, names, x2)
    pu = aux.u.shape[0]
    mu_in = jnp.arange(pu) < aux.n_u
    mu_out = jnp.arange(pu) < a2.n_u
    none = jnp.full((pu,), -1, jnp.int32)
    return (J, jnp.concatenate([mx, mu_in]), jnp.concatenate([mx2, mu_out]),
            jnp.concatenate([sx, none]), jnp.concatenate([sx2, none]), nsb, x2, a2)


def reduced_log_det(J, a_in, a_out, s_in, s_out, num_simplex: int, max_local_dim: int):
    """log|det| of J restricted to active outputs × active inputs, in simplex charts, and a
    status (JACOBIAN_STATUS).

    Simplex charts: a simplex of n active entries has n − 1 coordinates. Per simplex block, one
    input entry q is made dependent (x_q = 1 − Σ others) and one output entry r dropped; the
    chart map's Jacobian is then J minus row r and column q, with column q subtracted from the
    block's other columns (chain rule) — exact whatever the map does off the simplex. q is a
    column whose only nonzero lies in the same output simplex (then the subtraction changes
    nothing and the sparsity survives), else the block's last active entry.
    Then every column with one nonzero is expanded away (Laplace) and the rest, at most
    `max_local_dim` columns, goes to `slogdet`."""
    P = J.shape[0]
    cols = jnp.arange(P)
    for b in range(num_simplex):
        A0 = jnp.where(a_out[:, None] & a_in[None, :], J, 0.0)
        nz0 = A0 != 0
        simple0 = a_in & (jnp.sum(nz0, axis=0) == 1)
        row0 = jnp.argmax(nz0, axis=0)
        in_b, out_b = a_in & (s_in == b), a_out & (s_out == b)
        cand = simple0 & in_b & out_b[row0]
        has = jnp.any(cand)
        q = jnp.where(has, jnp.argmax(cand), jnp.max(jnp.where(in_b, cols, -1)))
        r = jnp.where(has, row0[q], jnp.max(jnp.where(out_b, cols, -1)))
        present = jnp.any(in_b) & jnp.any(out_b)
        sub = in_b & (cols != q) & present
        J = J - jnp.where(sub[None, :], J[:, q][:, None], 0.0)
        a_in = a_in & ~((cols == q) & present)
        a_out = a_out & ~((cols == r) & present)
    A = jnp.where(a_out[:, None] & a_in[None, :], J, 0.0)
    nz = A != 0
    nnz = jnp.sum(nz, axis=0)
    simple = a_in & (nnz == 1)
    row_of = jnp.argmax(nz, axis=0)
    val = jnp.abs(A[row_of, cols])
    hits = jnp.zeros(P, jnp.int32).at[row_of].add(simple.astype(jnp.int32))
    mismatch = jnp.sum(a_in) != jnp.sum(a_out)
    singular = jnp.any(hits > 1) | jnp.any(a_in & (nnz == 0))
    log_simple = jnp.sum(jnp.where(simple, jnp.log(jnp.where(simple, val, 1.0)), 0.0))
    S = a_in & ~simple
    R = a_out & (hits == 0)
    n_s = jnp.sum(S)
    overflow = n_s > max_local_dim
    idx_s = jnp.nonzero(S, size=max_local_dim, fill_value=P)[0]
    idx_r = jnp.nonzero(R, size=max_local_dim, fill_value=P)[0]
    Ap = jnp.pad(A, ((0, 1), (0, 1)))
    B = Ap[idx_r][:, idx_s]
    valid = jnp.arange(max_local_dim) < n_s
    B = jnp.where(valid[:, None] & valid[None, :], B, jnp.eye(max_local_dim, dtype=A.dtype))
    _, ld = jnp.linalg.slogdet(B)
    status = jnp.where(mismatch, 1, jnp.where(singular, 2, jnp.where(overflow, 3, 0)))
    log_det = jnp.where(status == 0, log_simple + ld, jnp.nan)
    return log_det, status


def auto_log_jacobian(model, inv, state, aux, data):
    """(log|det ∂h/∂(x, u)| on the active continuous coordinates, status)."""
    J, a_in, a_out, s_in, s_out, nsb, _, _ = jacobian_matrix(model, inv, state, aux, data)
    return reduced_log_det(J, a_in, a_out, s_in, s_out, nsb, inv.max_local_dim)


def log_ratio(model, inv, state, lp, aux, data, automatic: bool = False):
    """(x′, aux′, π(x′), log acceptance ratio, Jacobian status) of one involutive proposal."""
    x2, a2 = inv.apply(state, aux, data)
    x2 = clean(model, x2)
    lp2 = model.log_density(x2, data)
    if inv.log_jacobian is not None and not automatic:
        ld, status = inv.log_jacobian(state, aux, data), jnp.int32(0)
    else:
        ld, status = auto_log_jacobian(model, inv, state, aux, data)
    r = lp2 - lp + inv.log_q(a2, x2, data) - inv.log_q(aux, state, data) + ld
    return x2, a2, lp2, r, status


# ----------------------------------------------------------------------------- derived moves
def _move_probs(k, lower, upper):
    """(P(up), P(down)) at size k: 1/2 each inside, forced at the bounds."""
    up = jnp.where(k >= upper, 0.0, jnp.where(k <= lower, 1.0, 0.5))
    down = jnp.where(k <= lower, 0.0, 1.0 - up)
    return up, down


def _log(p):
    return jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)


def birth_death(model: PaddedModel, size: str, name: Optional[str] = None) -> Involution:
    """The derived birth/death involution for every array sized by `size`."""
    sv = model.size(size)
    arrays = model.arrays_of(size)
    if not arrays:
        raise ValueError(f"size {size} sizes no array")
    if sv.lower == sv.upper:
        raise ValueError(f"size {size} is fixed ({sv.lower}): no birth/death move")
    modes = {a.insertion for a in arrays}
    if "sorted" in modes and "end" in modes:
        raise ValueError(f"arrays sized by {size} mix sorted and end insertion")
    mode = "sorted" if "sorted" in modes else ("end" if "end" in modes else "uniform")
    key_array = next((a for a in arrays if isinstance(a.kind, Ordered)), None)
    # u holds, array by array, the new element (a simplex contributes its new weight)
    widths = [1 if isinstance(a.kind, Simplex) else int(np.prod(a.event_shape, dtype=int)) for a in arrays]
    starts = np.cumsum([0] + widths)
    aux_dim = int(starts[-1])
    lower, upper = sv.lower, sv.upper

    def element(a, i, u):
        return u[starts[i]:starts[i + 1]].reshape(() if isinstance(a.kind, Simplex) else a.event_shape)

    def sorted_position(state, u):
        e = element(key_array, arrays.index(key_array), u)
        x = state[key_array.name]
        n = state[size] + key_array.offset
        return jnp.sum(active(n, x.shape[0]) & (x < e)).astype(jnp.int32)

    def propose(key, state, data):
        k = state[size]
        up, _ = _move_probs(k, lower, upper)
        keys = jax.random.split(key, len(arrays) + 2)
        is_up = jax.random.uniform(keys[0]) < up
        parts = []
        for a, kk in zip(arrays, keys[2:]):
            if isinstance(a.kind, Simplex):
                # w* ~ Beta(1, n) by inversion: 1 − U^(1/n) (no rejection loop)
                n = (k + a.offset).astype(jnp.result_type(float))
                u = jax.random.uniform(kk, dtype=n.dtype)
                parts.append((-jnp.expm1(jnp.log(u) / jnp.maximum(n, 1.0))).reshape(1))
            else:
                parts.append(jnp.reshape(a.proposal.sample(kk, state, data), (-1,)))
        u = jnp.concatenate(parts)
        if mode == "sorted":
            p_up = sorted_position(state, u)
        elif mode == "end":
            p_up = k
        else:
            p_up = jax.random.randint(keys[1], (), 0, k + 1)
        p_down = k - 1 if mode == "end" else jax.random.randint(keys[1], (), 0, jnp.maximum(k, 1))
        choice = jnp.stack([jnp.where(is_up, UP, DOWN), jnp.where(is_up, p_up, p_down)]).astype(jnp.int32)
        return Aux(choice, jnp.where(is_up, u, 0.0), jnp.where(is_up, aux_dim, 0).astype(jnp.int32))

    def apply(state, aux, data):
        direction, p = aux.choice[0], aux.choice[1]
        k = state[size]
        born, died = dict(state), dict(state)
        removed = []
        for i, a in enumerate(arrays):
            x = state[a.name]
            n = k + a.offset
            pos = p + a.offset
            e = element(a, i, aux.u)
            fill = jnp.asarray(a.kind.filler, x.dtype)
            if isinstance(a.kind, Simplex):
                m = active(n, x.shape[0])
                born[a.name] = insert_at(jnp.where(m, x * (1.0 - e), x), pos, e, n, fill)
                w_p = x[pos]
                kept = remove_at(x, pos, n, fill)
                died[a.name] = jnp.where(active(n - 1, x.shape[0]), kept / (1.0 - w_p), fill)
                removed.append(w_p.reshape(1))
            else:
                born[a.name] = insert_at(x, pos, e, n, fill)
                died[a.name] = remove_at(x, pos, n, fill)
                removed.append(jnp.reshape(x[pos], (-1,)))
        born[size] = k + 1
        died[size] = k - 1
        is_up = direction == UP
        new = jax.tree.map(lambda b, d: jnp.where(is_up, b, d), born, died)
        u_back = jnp.concatenate(removed)
        aux2 = Aux(jnp.stack([jnp.where(is_up, DOWN, UP), p]).astype(jnp.int32),
                   jnp.where(is_up, 0.0, u_back), jnp.where(is_up, 0, aux_dim).astype(jnp.int32))
        return new, aux2

    def log_q(aux, state, data):
        direction, p = aux.choice[0], aux.choice[1]
        k = state[size]
        up, down = _move_probs(k, lower, upper)
        lq_up = _log(up)
        for i, a in enumerate(arrays):
            e = element(a, i, aux.u)
            if isinstance(a.kind, Simplex):
                n = (k + a.offset).astype(aux.u.dtype)
                lq_up = lq_up + _beta.logpdf(e, 1.0, jnp.maximum(n, 1.0))
            else:
                lq_up = lq_up + a.proposal.log_prob(e, state, data)
        if mode == "sorted":
            lq_up = lq_up + jnp.where(p == sorted_position(state, aux.u), 0.0, -jnp.inf)
            lq_down = _log(down) - jnp.log(jnp.maximum(k, 1).astype(aux.u.dtype))
        elif mode == "end":
            lq_up = lq_up + jnp.where(p == k, 0.0, -jnp.inf)
            lq_down = _log(down) + jnp.where(p == k - 1, 0.0, -jnp.inf)
        else:
            lq_up = lq_up - jnp.log((k + 1).astype(aux.u.dtype))
            lq_down = _log(down) - jnp.log(jnp.maximum(k, 1).astype(aux.u.dtype))
        in_range = (p >= 0) & (p <= jnp.where(direction == UP, k, k - 1))
        return jnp.where(in_range, jnp.where(direction == UP, lq_up, lq_down), -jnp.inf)

    def log_jacobian(state, aux, data):
        direction, p = aux.choice[0], aux.choice[1]
        k = state[size]
        ld = 0.0
        for i, a in enumerate(arrays):
            if not isinstance(a.kind, Simplex):
                continue
            n = (k + a.offset).astype(aux.u.dtype)
            w_new = element(a, i, aux.u)
            w_p = state[a.name][p + a.offset]
            up = (n - 1.0) * jnp.log1p(-w_new)
            down = -(n - 2.0) * jnp.log1p(-jnp.where(direction == UP, 0.0, w_p))
            ld = ld + jnp.where(direction == UP, up, down)
        return ld

    return Involution(name or f"birth_death[{size}]", propose, log_q, apply, log_jacobian,
                      blocks=tuple(a.name for a in arrays), max_local_dim=max(2 * len(arrays), 2))


# ------------------------------------------------------------ Richardson & Green split/merge
def normal_mixture_split_merge(model: PaddedModel, size: str, weights: str, means: str,
                               precisions: Optional[str] = None, variances: Optional[str] = None,
                               closed_form_jacobian: bool = True,
                               name: Optional[str] = None) -> Involution:
    """Richardson & Green (1997) split/merge for a normal mixture (weights a simplex, means
    ordered, and precisions or variances), as an involution. Split: component j (uniform of k)
    becomes the adjacent pair (j, j+1) with u1, u2 ~ Beta(2, 2), u3 ~ Beta(1, 1) (0th, 1st and
    2nd moments kept); merge: an adjacent pair (uniform of k − 1) becomes one. A split whose
    means are not adjacent lands outside the ordered support and is rejected (π = 0)."""
    sv = model.size(size)
    scale = precisions or variances
    if (precisions is None) == (variances is None):
        raise ValueError("give exactly one of precisions= and variances=")
    names = {a.name for a in model.arrays_of(size)}
    if names != {weights, means, scale}:
        raise ValueError(f"split/merge needs {size} to size exactly {weights}, {means}, {scale}; "
                         f"it sizes {sorted(names)}")
    lower, upper = sv.lower, sv.upper

    def to_var(s):
        return 1.0 / s if precisions else s

    def probs(k):
        can_split = (k >= 1) & (k < upper)
        can_merge = (k >= 2) & (k > lower)
        up = jnp.where(can_split & can_merge, 0.5, jnp.where(can_split, 1.0, 0.0))
        return up, jnp.where(can_merge, 1.0 - up, 0.0)

    def propose(key, state, data):
        k = state[size]
        up, _ = probs(k)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        is_up = jax.random.uniform(k1) < up
        u = jnp.stack([jax.random.beta(k2, 2.0, 2.0), jax.random.beta(k3, 2.0, 2.0),
                       jax.random.uniform(k4)])
        j_split = jax.random.randint(k4, (), 0, jnp.maximum(k, 1))
        j_merge = jax.random.randint(k4, (), 0, jnp.maximum(k - 1, 1))
        choice = jnp.stack([jnp.where(is_up, UP, DOWN), jnp.where(is_up, j_split, j_merge)]).astype(jnp.int32)
        return Aux(choice, jnp.where(is_up, u, 0.0), jnp.where(is_up, 3, 0).astype(jnp.int32))

    def split_values(w, mu, v, u):
        u1, u2, u3 = u[0], u[1], u[2]
        w1, w2 = w * u1, w * (1.0 - u1)
        sd = jnp.sqrt(v)
        mu1 = mu - u2 * sd * jnp.sqrt(w2 / w1)
        mu2 = mu + u2 * sd * jnp.sqrt(w1 / w2)
        v1 = u3 * (1.0 - u2 ** 2) * v * w / w1
        v2 = (1.0 - u3) * (1.0 - u2 ** 2) * v * w / w2
        return w1, w2, mu1, mu2, v1, v2

    def merge_values(w1, w2, mu1, mu2, v1, v2):
        w = w1 + w2
        mu = (w1 * mu1 + w2 * mu2) / w
        v = (w1 * (mu1 ** 2 + v1) + w2 * (mu2 ** 2 + v2)) / w - mu ** 2
        u1 = w1 / w
        u2 = (mu2 - mu1) * jnp.sqrt(w1 * w2) / (w * jnp.sqrt(v))
        u3 = v1 * w1 / ((1.0 - u2 ** 2) * v * w)
        return w, mu, v, jnp.stack([u1, u2, u3])

    def apply(state, aux, data):
        direction, j = aux.choice[0], aux.choice[1]
        k = state[size]
        W, M, S = state[weights], state[means], state[scale]
        fw, fm, fs = (jnp.asarray(a.kind.filler, W.dtype) for a in
                      (next(a for a in model.arrays if a.name == nm) for nm in (weights, means, scale)))
        # split j -> (j, j+1)
        w1, w2, mu1, mu2, v1, v2 = split_values(W[j], M[j], to_var(S[j]), aux.u)
        sW = insert_at(W.at[j].set(w1), j + 1, w2, k, fw)
        sM = insert_at(M.at[j].set(mu1), j + 1, mu2, k, fm)
        sS = insert_at(S.at[j].set(to_var(v1)), j + 1, to_var(v2), k, fs)
        # merge (j, j+1) -> j
        w, mu, v, u_back = merge_values(W[j], W[j + 1], M[j], M[j + 1], to_var(S[j]), to_var(S[j + 1]))
        mW = remove_at(W.at[j].set(w), j + 1, k, fw)
        mM = remove_at(M.at[j].set(mu), j + 1, k, fm)
        mS = remove_at(S.at[j].set(to_var(v)), j + 1, k, fs)
        is_up = direction == UP
        new = dict(state)
        new[weights] = jnp.where(is_up, sW, mW)
        new[means] = jnp.where(is_up, sM, mM)
        new[scale] = jnp.where(is_up, sS, mS)
        new[size] = jnp.where(is_up, k + 1, k - 1)
        aux2 = Aux(jnp.stack([jnp.where(is_up, DOWN, UP), j]).astype(jnp.int32),
                   jnp.where(is_up, 0.0, u_back), jnp.where(is_up, 0, 3).astype(jnp.int32))
        return new, aux2

    def log_q(aux, state, data):
        direction, j = aux.choice[0], aux.choice[1]
        k = state[size]
        up, down = probs(k)
        kf = k.astype(aux.u.dtype)
        u = aux.u
        lq_up = (_log(up) - jnp.log(jnp.maximum(kf, 1.0)) + _beta.logpdf(u[0], 2.0, 2.0)
                 + _beta.logpdf(u[1], 2.0, 2.0) + _beta.logpdf(u[2], 1.0, 1.0))
        lq_down = _log(down) - jnp.log(jnp.maximum(kf - 1.0, 1.0))
        in_range = (j >= 0) & (j <= jnp.where(direction == UP, k - 1, k - 2))
        return jnp.where(in_range, jnp.where(direction == UP, lq_up, lq_down), -jnp.inf)

    def split_log_jacobian(w, v, u, mu1, mu2, v1, v2):
        # RG (1997) eq. (12) in (w, mu, sigma^2); with precisions, d sigma^2/d tau = -sigma^4
        # on the way in and d tau/d sigma^2 = -1/sigma^4 for both outputs.
        u2, u3 = u[1], u[2]
        ld = (jnp.log(w) + jnp.log(jnp.abs(mu2 - mu1)) + jnp.log(v1) + jnp.log(v2)
              - jnp.log(u2) - jnp.log1p(-u2 ** 2) - jnp.log(u3) - jnp.log1p(-u3) - jnp.log(v))
        if precisions:
            ld = ld + 2.0 * jnp.log(v) - 2.0 * jnp.log(v1) - 2.0 * jnp.log(v2)
        return ld

    def log_jacobian(state, aux, data):
        direction, j = aux.choice[0], aux.choice[1]
        W, M, S = state[weights], state[means], state[scale]
        w1, w2, mu1, mu2, v1, v2 = split_values(W[j], M[j], to_var(S[j]), aux.u)
        up = split_log_jacobian(W[j], to_var(S[j]), aux.u, mu1, mu2, v1, v2)
        w, mu, v, u_back = merge_values(W[j], W[j + 1], M[j], M[j + 1], to_var(S[j]), to_var(S[j + 1]))
        down = -split_log_jacobian(w, v, u_back, M[j], M[j + 1], to_var(S[j]), to_var(S[j + 1]))
        return jnp.where(direction == UP, up, down)

    return Involution(name or f"split_merge[{size}]", propose, log_q, apply,
                      log_jacobian if closed_form_jacobian else None,
                      blocks=(weights, means, scale), max_local_dim=6)


# ------------------------------------------------------------------------------- validation
def _active_equal(model, x, y, rtol, atol):
    """Largest mismatch between two states over sizes, params, discrete and active entries."""
    err = 0.0
    for s in model.sizes:
        err = jnp.maximum(err, jnp.abs(x[s.name] - y[s.name]).astype(float) * 1e12)
    for a in model.arrays:
        m = active(model.length(a, x), x[a.name].shape[0], x[a.name].shape[1:])
        d = jnp.abs(x[a.name] - y[a.name]) / (atol + rtol * jnp.abs(x[a.name]))
        err = jnp.maximum(err, jnp.max(jnp.where(m, d, 0.0)))
    for p in model.params:
        err = jnp.maximum(err, jnp.max(jnp.abs(x[p.name] - y[p.name]) / (atol + rtol * jnp.abs(x[p.name]))))
    for d in model.discrete:
        err = jnp.maximum(err, jnp.max(jnp.abs(x[d.name] - y[d.name])).astype(float) * 1e12)
    return err


def check_involution(model: PaddedModel, inv: Involution, states, data, key, *,
                     rtol: float = 1e-7, atol: float = 1e-10, fd_step: float = 1e-6,
                     fd_tol: float = 1e-4, raise_on_failure: bool = True):
    """Validate `inv` at the given states (a batch: leading axis) with fresh auxiliary draws.

    Checks: (1) round trip h(h(x, a)) = (x, a) on active entries; (2) the automatic Jacobian
    against central finite differences of the map (active coordinates, where π(x′) > 0);
    (3) the closed-form log-Jacobian, if any, against the automatic one; (4) log r(x→x′) =
    −log r(x′→x). Returns a dict of the largest errors; raises `InvolutionError` on failure."""
    n = jax.tree.leaves(states)[0].shape[0]
    keys = jax.random.split(key, n)
    names = _block_names(model, inv)

    def one(k, x):
        x = clean(model, x)
        lp = model.log_density(x, data)
        aux = inv.propose(k, x, data)
        x2, a2 = inv.apply(x, aux, data)
        x2 = clean(model, x2)
        x3, a3 = inv.apply(x2, a2, data)
        err_state = _active_equal(model, x, clean(model, x3), rtol, atol)
        ua = jnp.arange(aux.u.shape[0]) < aux.n_u
        err_aux = jnp.max(jnp.where(ua, jnp.abs(a3.u - aux.u) / (atol + rtol * jnp.abs(aux.u)), 0.0))
        err_aux = jnp.maximum(err_aux, jnp.max(jnp.abs(jnp.asarray(jax.tree.leaves(a3.choice)[0]) -
                                                      jnp.asarray(jax.tree.leaves(aux.choice)[0]))) * 1e12)
        err_aux = jnp.maximum(err_aux, jnp.abs(a3.n_u - aux.n_u) * 1e12)
        J, a_in, a_out, s_in, s_out, nsb, _, _ = jacobian_matrix(model, inv, x, aux, data)
        ld_auto, status = reduced_log_det(J, a_in, a_out, s_in, s_out, nsb, inv.max_local_dim)
        # finite differences of the same padded map
        cx, _, _, _ = _coordinates(model, names, x)
        px = cx.shape[0]
        c0 = jnp.concatenate([cx, aux.u])

        def f(c):
            xx = _set_coordinates(model, names, x, c[:px])
            y, b = inv.apply(xx, aux._replace(u=c[px:]), data)
            cy, _, _, _ = _coordinates(model, names, y)
            return jnp.concatenate([cy, b.u])

        h = fd_step * jnp.maximum(1.0, jnp.abs(c0))
        eye = jnp.eye(c0.shape[0], dtype=c0.dtype) * h[None, :]
        fd = jax.vmap(lambda e: (f(c0 + e) - f(c0 - e)))(eye).T / (2.0 * h[None, :])
        sel = a_out[:, None] & a_in[None, :]
        scale = 1.0 + jnp.abs(J)
        err_fd = jnp.max(jnp.where(sel, jnp.abs(fd - J) / scale, 0.0))
        lp2 = model.log_density(x2, data)
        ok = jnp.isfinite(lp) & jnp.isfinite(lp2)
        if inv.log_jacobian is not None:
            ld_closed = inv.log_jacobian(x, aux, data)
            err_closed = jnp.where(status == 0, jnp.abs(ld_closed - ld_auto), 0.0)
            ld = ld_closed
        else:
            err_closed, ld = jnp.asarray(0.0), ld_auto
        r_fwd = lp2 - lp + inv.log_q(a2, x2, data) - inv.log_q(aux, x, data) + ld
        if inv.log_jacobian is not None:
            ld_back = inv.log_jacobian(x2, a2, data)
        else:
            ld_back = auto_log_jacobian(model, inv, x2, a2, data)[0]
        r_back = lp - lp2 + inv.log_q(aux, x, data) - inv.log_q(a2, x2, data) + ld_back
        err_r = jnp.where(ok & jnp.isfinite(r_fwd), jnp.abs(r_fwd + r_back), 0.0)
        return dict(round_trip=jnp.maximum(err_state, err_aux), finite_differences=jnp.where(ok, err_fd, 0.0),
                    closed_form=err_closed, reversal=err_r, status=status, finite=ok)

    res = jax.jit(jax.vmap(one))(keys, states)
    res = jax.tree.map(np.asarray, res)
    report = {"move": inv.name, "points": int(n), "finite_points": int(res["finite"].sum()),
              "round_trip": float(res["round_trip"].max()),
              "finite_differences": float(res["finite_differences"].max()),
              "closed_form": float(np.nanmax(res["closed_form"])),
              "reversal": float(np.nanmax(res["reversal"])),
              "jacobian_status": sorted({JACOBIAN_STATUS[int(s)] for s in res["status"]})}
    if raise_on_failure:
        if not np.all(res["round_trip"] <= 1.0):
            i = int(np.argmax(res["round_trip"]))
            raise InvolutionError(inv.name, "round-trip (h∘h = id)",
                                  f"applying the move twice does not return its input "
                                  f"(point {i}: relative error {res['round_trip'][i]:.3g})")
        bad = [JACOBIAN_STATUS[int(s)] for s in res["status"] if s != 0]
        if bad:
            raise InvolutionError(inv.name, "Jacobian", f"the Jacobian is not usable: {bad[0]}")
        if not np.all(res["finite_differences"] <= fd_tol):
            raise InvolutionError(inv.name, "finite-difference Jacobian",
                                  f"largest error {res['finite_differences'].max():.3g}")
        if not np.all(np.nan_to_num(res["closed_form"], nan=np.inf) <= 1e-6):
            raise InvolutionError(inv.name, "closed-form Jacobian",
                                  f"differs from the automatic one by {np.nanmax(res['closed_form']):.3g}")
        if not np.all(np.nan_to_num(res["reversal"], nan=np.inf) <= 1e-6):
            raise InvolutionError(inv.name, "reversal (log r(x→x′) = −log r(x′→x))",
                                  f"largest |log r + log r′| {np.nanmax(res['reversal']):.3g}")
    return report
