"""Exact discretisation of linear SDEs, and the Kalman answers built on it.

A linear (affine) SDE with constant coefficients

    dZ = (F Z + c) dt + L dW,      Z ∈ R^n, W ∈ R^m,

has Gaussian transitions Z(t+Δ) | Z(t) ~ N(Φ Z(t) + b, Q) with Φ = e^{FΔ}, b = ∫_0^Δ e^{Fs} c ds,
Q = ∫_0^Δ e^{Fs} L Lᵀ e^{Fᵀs} ds. Van Loan's block exponential gives (Φ, b, Q) in one `expm`, but
its −F block grows like e^{γΔ} for a fast rate γ and the product that forms Q cancels
catastrophically (``shared/SDE.md`` §2). So (Φ, b, Q) are computed on a sub-step h = Δ/2^s with
γh ≤ 1/4 and doubled s times: Φ₂ = Φ², b₂ = Φb + b, Q₂ = ΦQΦᵀ + Q (never forming e^{+γΔ}).

On top of that:

* :func:`mafbm_sde` — the MA-fBM augmented prior on Z = (X, Y) for linear drift A X + a and
  constant diffusion S (d×m): one OU bank Y_j ∈ R^K per noise channel j,
  dY_{j,k} = −γ_k Y_{j,k} dt + dW_j,  dX = (A X + a − S Σ_k ω_k γ_k Y_{·,k}) dt + S ω̄ dW;
  with no MA-fBM (``omega=None``) plain Brownian noise, dX = (A X + a) dt + S dW.
* :func:`initial_moments` — the law of Z(0) (Y(0) ~ N(0, Σ0) per channel for type I, 0 for II).
* :func:`chain_transitions` — the transitions of a *discretised chain* (Euler or Heun for X,
  exact OU steps for Y), so an ELBO computed on that chain can be compared with that chain's
  own exact evidence (an Euler chain's evidence differs from the continuous one by O(Δ)).
* :func:`kalman_ssm` / :func:`log_evidence` / :func:`smooth` — the Kalman filter and RTS
  smoother of :mod:`ppl.algorithms.kalman` on a time grid that contains the observation times
  (and any requested times): exact log p(y) and posterior marginals.
* :func:`time_grid` — steps of size ≤ dt landing on every given time.

Everything is float64 (importing ``ppl`` switches JAX to x64).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import kalman

__all__ = [
    "LinearSDE",
    "Transitions",
    "time_grid",
    "transitions",
    "mafbm_sde",
    "initial_moments",
    "ou_step_moments",
    "chain_transitions",
    "kalman_ssm",
    "log_evidence",
    "smooth",
]

_MAX_SUBSTEP_RATE = 0.25  # h · (largest rate) after halving; e^{0.25} loses nothing


class LinearSDE(NamedTuple):
    """dZ = (F Z + c) dt + L dW with constant F (n, n), c (n,), L (n, m)."""

    F: Any
    c: Any
    L: Any


class Transitions(NamedTuple):
    """Per-step Gaussian transitions Z_{i+1} = Phi[i] Z_i + b[i] + N(0, Q[i]), i = 0..N−1."""

    Phi: Any  # (N, n, n)
    b: Any  # (N, n)
    Q: Any  # (N, n, n)


# ----------------------------------------------------------------------------- time grids
def time_grid(t_end: float, dt: float, times: Sequence[float] = (), t0: float = 0.0,
              decimals: int = 12) -> np.ndarray:
    """Grid from t0 to t_end through every time in ``times``: each gap between consecutive
    required times is split into ceil(gap/dt) equal steps (so no step exceeds dt and no step
    is a sliver). Times are rounded to ``decimals`` to merge float duplicates.
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    req = np.asarray(list(times), dtype=np.float64).ravel()
    if req.size and (req.min() < t0 - 1e-12 or req.max() > t_end + 1e-12):
        raise ValueError(f"times must lie in [{t0}, {t_end}]; got [{req.min()}, {req.max()}]")
    knots = np.unique(np.round(np.concatenate([[t0, t_end], req]), decimals))
    pieces = [knots[:1]]
    for lo, hi in zip(knots[:-1], knots[1:]):
        n = max(1, int(math.ceil((hi - lo) / dt - 1e-9)))
        pieces.append(np.linspace(lo, hi, n + 1)[1:])
    return np.concatenate(pieces)


def grid_index(grid: np.ndarray, times: Sequence[float], decimals: int = 12) -> np.ndarray:
    """Index of each time in ``grid`` (which must contain it)."""
    g = np.round(np.asarray(grid, dtype=np.float64), decimals)
    t = np.round(np.asarray(times, dtype=np.float64).ravel(), decimals)
    idx = np.searchsorted(g, t)
    bad = (idx >= g.size) | (g[np.minimum(idx, g.size - 1)] != t)
    if np.any(bad):
        raise ValueError(f"times not on the grid: {t[bad][:5]}")
    return idx


# ------------------------------------------------------------------- exact transitions
def _n_doublings(max_dt: float, rate: float) -> int:
    x = max_dt * rate / _MAX_SUBSTEP_RATE
    return 0 if x <= 1.0 else int(math.ceil(math.log2(x)))


def _rate_bound(F) -> float:
    try:
        F = np.asarray(F, dtype=np.float64)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as exc:
        raise ValueError("F is traced: pass n_doublings (or rate) explicitly") from exc
    return float(np.max(np.abs(np.linalg.eigvals(F)))) if F.size else 0.0


def _van_loan(F, c, LLt, h):
    """(Φ, b, Q) over a step h small enough that e^{|F| h} is harmless."""
    n = F.shape[0]
    Fa = jnp.zeros((n + 1, n + 1), F.dtype).at[:n, :n].set(F).at[:n, n].set(c)
    Ga = jnp.zeros((n + 1, n + 1), F.dtype).at[:n, :n].set(LLt)
    M = jnp.block([[-Fa, Ga], [jnp.zeros_like(Fa), Fa.T]]) * h
    E = jax.scipy.linalg.expm(M)
    Phi_a = E[n + 1:, n + 1:].T
    Q = (Phi_a @ E[:n + 1, n + 1:])[:n, :n]
    return Phi_a[:n, :n], Phi_a[:n, n], 0.5 * (Q + Q.T)


def transitions(sde: LinearSDE, dts, n_doublings: Optional[int] = None,
                rate: Optional[float] = None) -> Transitions:
    """Exact (Φ, b, Q) of ``sde`` over each step length in ``dts`` (N,).

    Computed on sub-steps dt/2^s and doubled s times; s is ``n_doublings`` or chosen from the
    largest |eigenvalue| of F (or ``rate``) and the largest step, so that every sub-step has
    rate·h ≤ 1/4. Pass ``n_doublings`` (or ``rate``) when F is traced.
    """
    F = jnp.asarray(sde.F, dtype=jnp.float64)
    c = jnp.asarray(sde.c, dtype=jnp.float64)
    L = jnp.asarray(sde.L, dtype=jnp.float64)
    dts = jnp.asarray(dts, dtype=jnp.float64)
    if n_doublings is None:
        r = _rate_bound(sde.F) if rate is None else float(rate)
        n_doublings = _n_doublings(float(np.max(np.asarray(dts))), r)
    LLt = L @ L.T

    def one(dt):
        Phi, b, Q = _van_loan(F, c, LLt, dt / 2.0 ** n_doublings)

        def double(_, pbq):
            Phi, b, Q = pbq
            Q = Phi @ Q @ Phi.T + Q
            return Phi @ Phi, Phi @ b + b, 0.5 * (Q + Q.T)

        return jax.lax.fori_loop(0, n_doublings, double, (Phi, b, Q))

    return Transitions(*jax.vmap(one)(dts))


# --------------------------------------------------------------- MA-fBM augmented system
def _coefficients(A, a, S):
    """(A (d, d), a (d,), S (d, m)) from scalars or arrays."""
    A = jnp.atleast_2d(jnp.asarray(A, dtype=jnp.float64))
    d = A.shape[0]
    if A.shape != (d, d):
        raise ValueError(f"drift matrix A must be square, got shape {A.shape}")
    a = jnp.broadcast_to(jnp.asarray(a, dtype=jnp.float64), (d,))
    S = jnp.asarray(S, dtype=jnp.float64)
    S = S * jnp.eye(d) if S.ndim == 0 else (S[:, None] if S.ndim == 1 else S)
    if S.shape[0] != d:
        raise ValueError(f"diffusion S must have {d} rows, got shape {S.shape}")
    return A, a, S


def mafbm_sde(A, a, S, omega=None, gamma=None) -> LinearSDE:
    """Linear SDE on Z = (X (d), Y (m·K, channel-major)) for dX = (A X + a) dt + S dB̂.

    ``A`` (d, d) or scalar, ``a`` (d,) or scalar, ``S`` (d, m), (d,) (one noise channel) or a
    scalar (S·I). ``omega``/``gamma`` (K,) give MA-fBM noise B̂ (types I and II share the
    dynamics; they differ in Y(0), see :func:`initial_moments`); ``omega=None`` means Brownian
    noise, Z = X.
    """
    A, a, S = _coefficients(A, a, S)
    d, m = S.shape
    if omega is None:
        return LinearSDE(A, a, S)
    w = jnp.asarray(omega, dtype=jnp.float64)
    g = jnp.asarray(gamma, dtype=jnp.float64)
    K = g.shape[0]
    n = d + m * K
    F = jnp.zeros((n, n))
    F = F.at[:d, :d].set(A)
    # X row: −S Σ_k ω_k γ_k Y_{j,k}; Y_{j,k} sits at d + j K + k.
    F = F.at[:d, d:].set(-jnp.kron(S, (w * g)[None, :]))
    F = F.at[d:, d:].set(jnp.kron(jnp.eye(m), jnp.diag(-g)))
    L = jnp.concatenate([S * jnp.sum(w), jnp.kron(jnp.eye(m), jnp.ones((K, 1)))], axis=0)
    c = jnp.concatenate([a, jnp.zeros(m * K)])
    return LinearSDE(F, c, L)


def initial_moments(x0_mean, x0_cov, m: int = 1, gamma=None, kind: str = "I"):
    """Mean and covariance of Z(0) = (X(0), Y(0)): X(0) ~ N(x0_mean, x0_cov) (a zero covariance
    is a point), independent of Y(0) ~ N(0, Σ0) per channel (type I) or Y(0) = 0 (type II)."""
    mx = jnp.atleast_1d(jnp.asarray(x0_mean, dtype=jnp.float64))
    d = mx.shape[0]
    Px = jnp.asarray(x0_cov, dtype=jnp.float64)
    Px = Px * jnp.eye(d) if Px.ndim == 0 else (jnp.diag(Px) if Px.ndim == 1 else Px)
    if gamma is None:
        return mx, Px
    g = jnp.asarray(gamma, dtype=jnp.float64)
    K = g.shape[0]
    Sy = 1.0 / (g[:, None] + g[None, :]) if kind == "I" else jnp.zeros((K, K))
    m0 = jnp.concatenate([mx, jnp.zeros(m * K)])
    P0 = jax.scipy.linalg.block_diag(Px, jnp.kron(jnp.eye(m), Sy))
    return m0, P0


# ------------------------------------------------------------ discretised chains (engine)
def ou_step_moments(gamma, dt):
    """Exact OU step constants for rates γ (K,) over dt: decay e^{−γΔ}, gain (1−e^{−γΔ})/γ
    (the response to a constant control), and the joint covariance of
    (ξ_k = ∫ e^{−γ_k(Δ−s)} dW_s, ΔW): C_ij = (1−e^{−(γ_i+γ_j)Δ})/(γ_i+γ_j), Cov(ξ_k, ΔW) = gain_k."""
    g = jnp.asarray(gamma, dtype=jnp.float64)
    dt = jnp.asarray(dt, dtype=jnp.float64)
    s = g[:, None] + g[None, :]
    decay = jnp.exp(-g * dt)
    gain = -jnp.expm1(-g * dt) / g
    C = -jnp.expm1(-s * dt) / s
    return decay, gain, C


def chain_transitions(A, a, S, dts, scheme: str = "heun", omega=None, gamma=None) -> Transitions:
    """Transitions of the chain the variational engine simulates, for linear drift A X + a and
    constant diffusion S: Y takes exact OU steps (Y' = e^{−γΔ}Y + ξ), X an Euler or Heun step
    driven by the noise increment dB̂ = Σ_k ω_k (Y'_k − Y_k) (Brownian: dB̂ = ΔW):

        Euler: X' = X + (A X + a)Δ + S dB̂
        Heun:  X̃ = X + (A X + a)Δ + S dB̂,  X' = X + ½(A X + a + A X̃ + a)Δ + S dB̂
               = (I + AΔ + ½A²Δ²) X + (I + ½AΔ)(aΔ + S dB̂).

    With Brownian noise and ``scheme="exact"`` this is :func:`transitions` of the SDE.
    """
    dts = jnp.asarray(dts, dtype=jnp.float64)
    if scheme == "exact":
        if omega is not None:
            raise ValueError("scheme='exact' here is for Brownian noise; use transitions(mafbm_sde(...))")
        return transitions(mafbm_sde(A, a, S), dts)
    A, a, S = _coefficients(A, a, S)
    d, m = S.shape
    if scheme not in ("euler", "heun"):
        raise ValueError(f"scheme must be 'euler', 'heun' or 'exact', got {scheme!r}")
    I = jnp.eye(d)

    def one(dt):
        if scheme == "euler":
            M, G = I + A * dt, I
        else:
            M, G = I + A * dt + 0.5 * (A @ A) * dt * dt, I + 0.5 * A * dt
        if omega is None:
            return M, G @ a * dt, (G @ S) @ (G @ S).T * dt
        w = jnp.asarray(omega, dtype=jnp.float64)
        g = jnp.asarray(gamma, dtype=jnp.float64)
        K = g.shape[0]
        decay, _, C = ou_step_moments(g, dt)
        n = d + m * K
        Phi = jnp.zeros((n, n))
        Phi = Phi.at[:d, :d].set(M)
        # dB̂_j = Σ_k ω_k (decay_k − 1) Y_{j,k} + ωᵀ ξ_j
        Phi = Phi.at[:d, d:].set(G @ jnp.kron(S, (w * (decay - 1.0))[None, :]))
        Phi = Phi.at[d:, d:].set(jnp.kron(jnp.eye(m), jnp.diag(decay)))
        # noise: ξ (m·K) ~ N(0, I_m ⊗ C); X picks up G S (I_m ⊗ ωᵀ) ξ
        Bx = G @ jnp.kron(S, w[None, :])
        B = jnp.concatenate([Bx, jnp.eye(m * K)], axis=0)
        Q = B @ jnp.kron(jnp.eye(m), C) @ B.T
        b = jnp.concatenate([G @ a * dt, jnp.zeros(m * K)])
        return Phi, b, 0.5 * (Q + Q.T)

    return Transitions(*jax.vmap(one)(dts))


# ----------------------------------------------------------------------------- Kalman
def kalman_ssm(trans: Transitions, m0, P0, obs_matrix, obs_cov) -> kalman.LinearGaussianSSM:
    """A :class:`kalman.LinearGaussianSSM` on the grid t_0..t_N whose step i → i+1 is
    ``trans[i]``; observation rows y_i = obs_matrix Z_i + N(0, obs_cov) (NaN rows unobserved)."""
    n = jnp.asarray(m0).shape[0]
    pad = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x], axis=0)  # entry 0 unused
    return kalman.LinearGaussianSSM(
        m0=jnp.asarray(m0, dtype=jnp.float64), P0=jnp.asarray(P0, dtype=jnp.float64),
        F=pad(trans.Phi), c=pad(trans.b), Q=pad(trans.Q),
        H=jnp.atleast_2d(jnp.asarray(obs_matrix, dtype=jnp.float64)).reshape(-1, n),
        R=jnp.atleast_2d(jnp.asarray(obs_cov, dtype=jnp.float64)),
    )


def _grid_observations(grid, obs_times, ys):
    ys = np.asarray(ys, dtype=np.float64)
    ys = ys.reshape(len(np.ravel(obs_times)), -1)
    out = np.full((len(grid), ys.shape[1]), np.nan)
    out[grid_index(grid, obs_times)] = ys
    return out


def log_evidence(trans: Transitions, grid, m0, P0, obs_times, ys, obs_matrix, obs_cov):
    """Exact log p(y) of the chain on ``grid`` (transitions ``trans``) observed at ``obs_times``."""
    model = kalman_ssm(trans, m0, P0, obs_matrix, obs_cov)
    return kalman.filter(model, jnp.asarray(_grid_observations(grid, obs_times, ys))).log_evidence


def smooth(trans: Transitions, grid, m0, P0, obs_times, ys, obs_matrix, obs_cov, times=None):
    """Posterior means (T, n) and covariances (T, n, n) of Z at ``times`` (default: the whole
    grid), and the log evidence (Kalman filter).

    The marginals come from direct Gaussian conditioning of Z(τ) on all observations (numpy,
    float64, O(grid · observations)), not from an RTS backward pass: the augmented MA-fBM state
    has K+1 coordinates driven by one Brownian motion, so over a short step its transition
    covariance is numerically singular (cond ≈ 1e16 at Δ = 0.05), and with a point X(0) and
    Y(0) = 0 (type II) so is the predicted covariance the RTS gain inverts: ``kalman.smoother``
    gave sd 0.80 for 0.66 at t = 0.2 on the type-II fBM bridge, a pseudo-inverse gain still
    1e-3 off. Conditioning needs only the covariance of the observations, which is well posed.
    """
    log_ev = log_evidence(trans, grid, m0, P0, obs_times, ys, obs_matrix, obs_cov)
    Phi, b, Q = (np.asarray(x, dtype=np.float64) for x in trans)
    N, n = Phi.shape[0], Phi.shape[1]
    H = np.asarray(obs_matrix, dtype=np.float64).reshape(-1, n)
    R = np.atleast_2d(np.asarray(obs_cov, dtype=np.float64))
    k = H.shape[0]
    obs_idx = grid_index(grid, obs_times)
    y = np.asarray(ys, dtype=np.float64).reshape(len(obs_idx), k)
    tgt_idx = np.arange(N + 1) if times is None else grid_index(grid, times)
    # prior moments on the grid
    m = np.empty((N + 1, n))
    P = np.empty((N + 1, n, n))
    m[0], P[0] = np.asarray(m0, dtype=np.float64), np.asarray(P0, dtype=np.float64)
    for i in range(N):
        m[i + 1] = Phi[i] @ m[i] + b[i]
        P[i + 1] = Phi[i] @ P[i] @ Phi[i].T + Q[i]

    def cross(a_idx, o_idx):
        """C[i, j] = Cov(Z_{a_i}, Z_{o_j}): P_a Φ_{o←a}ᵀ if a ≤ o, else Φ_{a←o} P_o."""
        C = np.empty((len(a_idx), len(o_idx), n, n))
        for i, a in enumerate(a_idx):
            prop = np.eye(n)  # Φ_{j←a} for j walking forward from a
            j = a
            for jj in np.argsort(o_idx):
                o = o_idx[jj]
                if o >= a:
                    while j < o:
                        prop = Phi[j] @ prop
                        j += 1
                    C[i, jj] = P[a] @ prop.T
                else:
                    back = np.eye(n)
                    for t in range(o, a):
                        back = Phi[t] @ back
                    C[i, jj] = back @ P[o]
        return C

    C_oo = cross(obs_idx, obs_idx)  # (n_obs, n_obs, n, n)
    S = np.einsum("kn,ijnm,lm->ikjl", H, C_oo, H).reshape(len(obs_idx) * k, -1)
    S = S + np.kron(np.eye(len(obs_idx)), R)
    S = 0.5 * (S + S.T)
    resid = (y - m[obs_idx] @ H.T).reshape(-1)
    C_ao = cross(tgt_idx, obs_idx)  # (n_tgt, n_obs, n, n)
    G = np.einsum("ijnm,km->injk", C_ao, H).reshape(len(tgt_idx), n, -1)  # Cov(Z_a, y)
    means = m[tgt_idx] + np.einsum("anj,j->an", G, np.linalg.solve(S, resid))
    covs = P[tgt_idx] - np.einsum("anj,ajm->anm", G,
                                  np.stack([np.linalg.solve(S, g.T) for g in G]))
    return means, 0.5 * (covs + np.swapaxes(covs, 1, 2)), log_ev
