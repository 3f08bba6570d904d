"""Markov approximation of fractional Brownian motion (MA-fBM) by a weighted sum of OU processes.

Daems, Opper, Crevecoeur, Birdal (ICLR 2024); formulas and traps in ``shared/SDE.md`` §1.
K Ornstein–Uhlenbeck processes share one Brownian motion W,

    dY_k = -gamma_k Y_k dt + dW,        k = 1..K,

and fBM with Hurst index H is approximated by

    type I  (Mandelbrot–van Ness):   B̂_t = Σ_k ω_k (Y_k(t) − Y_k(0)),  Y(0) ~ N(0, Σ0),
                                      Σ0[i, j] = 1 / (γ_i + γ_j)  (the stationary law);
    type II (Riemann–Liouville):     B̂_t = Σ_k ω_k Y_k(t),             Y(0) = 0.

The weights ω(H) minimise ∫_0^T E(B_t − B̂_t)² dt = ωᵀAω − 2bᵀω + c, so A ω = b. A does not
depend on H: it is factored once (Cholesky, float64) when the basis is built, and each ω(H)
is one triangular solve, differentiable in H through JAX (b(H) uses the regularised incomplete
gamma functions, whose derivative in the shape parameter JAX provides).

Targets: type I approximates the MvN integral with factor 1/Γ(H+½), Var B_t = V_H t^{2H},
V_H = 1/(Γ(2H+1) sin πH); type II the RL integral, Var B_t = t^{2H}/(2H Γ(H+½)²).
``normalize=True`` rescales ω so the target is standard fBM, Var B_t = t^{2H}.

Everything here needs float64 (cond(A) ≈ 1.4e5 for type II at K=5, γ ∈ [0.05, 20], T=2);
importing ``ppl`` switches JAX to x64.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

__all__ = [
    "MAFBMBasis",
    "rate_grid",
    "basis",
    "gammaincc_ez",
    "gammainc",
    "hurst_variance",
    "target_variance",
    "b_vector",
    "cost_constant",
    "omega",
    "relative_mse",
    "stationary_cov",
    "variance",
]

Kind = Literal["I", "II"]


def rate_grid(K: int, gamma_max: float) -> np.ndarray:
    """γ_k = r^(k − n), r = γ_max^(2/(K−1)), n = (K+1)/2: symmetric in log scale, γ_min = 1/γ_max."""
    if K < 2:
        raise ValueError(f"MA-fBM needs K >= 2 OU processes, got K={K}")
    if not gamma_max > 1.0:
        raise ValueError(f"gamma_max must be > 1 (the grid is [1/gamma_max, gamma_max]), got {gamma_max}")
    r = gamma_max ** (2.0 / (K - 1))
    n = (K + 1) / 2.0
    return r ** (np.arange(1, K + 1, dtype=np.float64) - n)


def stationary_cov(gamma) -> np.ndarray:
    """Σ0[i, j] = 1/(γ_i + γ_j): the stationary covariance of Y (type I's Y(0))."""
    g = np.asarray(gamma, dtype=np.float64)
    return 1.0 / (g[:, None] + g[None, :])


def _a_matrix(gamma: np.ndarray, T: float, kind: Kind) -> np.ndarray:
    g = gamma
    s = g[:, None] + g[None, :]
    if kind == "I":
        e = np.expm1(-g * T) / g  # (e^{-γT} − 1)/γ
        return (2.0 * T + e[:, None] + e[None, :]) / s
    return (T + np.expm1(-s * T) / s) / s


@dataclass(frozen=True, eq=False)
class MAFBMBasis:
    """Rates γ (K,), horizon T of the weight optimisation, type, and the Cholesky factor of A.

    Built by :func:`basis`; a constant of the computation (numpy float64), not a pytree.
    """

    gamma: np.ndarray
    T: float
    kind: Kind
    A: np.ndarray
    chol_A: np.ndarray

    @property
    def K(self) -> int:
        return int(self.gamma.shape[0])


def basis(K: int = 5, gamma_max: float = 20.0, T: float = 1.0, kind: Kind = "I") -> MAFBMBasis:
    """Rate grid and the factored H-independent matrix A of the weight equations A ω = b(H)."""
    if kind not in ("I", "II"):
        raise ValueError(f"MA-fBM type must be 'I' or 'II', got {kind!r}")
    if not T > 0:
        raise ValueError(f"the weight horizon T must be > 0, got {T}")
    gamma = rate_grid(K, gamma_max)
    A = _a_matrix(gamma, float(T), kind)
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError as exc:  # pragma: no cover - A is SPD for distinct rates
        raise np.linalg.LinAlgError(
            f"MA-fBM weight matrix A (K={K}, gamma_max={gamma_max}, T={T}, type {kind}) is not "
            f"positive definite (cond {np.linalg.cond(A):.3g}); lower K or gamma_max") from exc
    return MAFBMBasis(gamma, float(T), kind, A, L)


# Incomplete gamma functions for shape a ∈ (0, 3] (a = H + ½ or H + 3/2): the lower series
# below z = 2.5, Legendre's continued fraction above (both accurate to ~1e-14 there with the term
# counts below). Written as short `lax.scan`s rather than with jax.scipy's gammainc/gammaincc:
# their XLA expansion (and that of the derivative in a) is large and took 5-25 s to compile,
# once per distinct use, which the engine's training step would pay on every build.
_CF_SWITCH = 2.5
_SERIES_TERMS = 30
_CF_TERMS = 36


def _lower_series(a, z):
    """S with P(a, z) = z^a e^{−z} / Γ(a+1) · S,  S = Σ_n z^n / ((a+1)…(a+n))."""
    def term(carry, k):
        s, t = carry
        t = t * z / (a + k)
        return (s + t, t), None

    one = jnp.ones_like(z)
    (s, _), _ = jax.lax.scan(term, (one, one), jnp.arange(1.0, _SERIES_TERMS))
    return s


def _upper_cf(a, z):
    """Q(a, z) e^z = z^a / Γ(a) · 1/(z+1−a − 1(1−a)/(z+3−a − 2(2−a)/(z+5−a − …))), modified Lentz."""
    tiny = 1e-300

    def term(carry, i):
        b, c, d, h = carry
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = jnp.where(jnp.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = jnp.where(jnp.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        return (b, c, d, h * d * c), None

    b = z + 1.0 - a
    d = 1.0 / b
    (_, _, _, h), _ = jax.lax.scan(term, (b, jnp.full_like(z, 1.0 / tiny), d, d),
                                   jnp.arange(1.0, _CF_TERMS))
    return jnp.exp(a * jnp.log(z) - gammaln(a)) * h


def _split(a, z):
    a = jnp.asarray(a, dtype=jnp.float64)
    z = jnp.asarray(z, dtype=jnp.float64)
    a, z = jnp.broadcast_arrays(a, z)
    big = z >= _CF_SWITCH
    # Each branch sees only inputs where it is valid, so neither values nor gradients are nan.
    return a, big, jnp.where(big, 1.0, z), jnp.where(big, z, _CF_SWITCH)


def gammaincc_ez(a, z):
    """Q(a, z)·e^z, Q the regularised upper incomplete gamma function, for shape a ∈ (0, 3]
    and any z > 0: no overflow where e^z does (e.g. γT = 20·6 = 120). Differentiable in a and z."""
    a, big, zs, zb = _split(a, z)
    small = jnp.exp(zs) - jnp.exp(a * jnp.log(zs) - gammaln(a + 1.0)) * _lower_series(a, zs)
    return jnp.where(big, _upper_cf(a, zb), small)


def gammainc(a, z):
    """P(a, z), the regularised lower incomplete gamma function, for shape a ∈ (0, 3]."""
    a, big, zs, zb = _split(a, z)
    small = jnp.exp(a * jnp.log(zs) - zs - gammaln(a + 1.0)) * _lower_series(a, zs)
    return jnp.where(big, 1.0 - jnp.exp(-zb) * _upper_cf(a, zb), small)


def hurst_variance(H):
    """V_H = 1/(Γ(2H+1) sin πH): Var B_t / t^{2H} of the MvN integral with factor 1/Γ(H+½)."""
    H = jnp.asarray(H, dtype=jnp.float64)
    return jnp.exp(-gammaln(2.0 * H + 1.0)) / jnp.sin(jnp.pi * H)


def _natural_scale(H, kind: Kind):
    """Var B_t / t^{2H} of the (unnormalised) target process of this type."""
    H = jnp.asarray(H, dtype=jnp.float64)
    if kind == "I":
        return hurst_variance(H)
    return jnp.exp(-2.0 * gammaln(H + 0.5)) / (2.0 * H)


def target_variance(H, t, kind: Kind = "I", normalize: bool = False):
    """Var B_t of the process the weights approximate: t^{2H} when normalised."""
    t = jnp.asarray(t, dtype=jnp.float64)
    scale = 1.0 if normalize else _natural_scale(H, kind)
    return scale * t ** (2.0 * jnp.asarray(H, dtype=jnp.float64))


def b_vector(bas: MAFBMBasis, H):
    """b(H): b_k = ∫_0^T E[B_t · (k-th basis process)] dt for the unnormalised target."""
    return _b(jnp.asarray(bas.gamma), bas.T, jnp.asarray(H, dtype=jnp.float64), bas.kind)


def _b(g, T, H, kind: Kind):
    a = H + 0.5
    gT = g * T
    if kind == "I":
        return (2.0 * T * g ** (-a)
                - T ** a / (g * jnp.exp(gammaln(H + 1.5)))
                + (jnp.exp(-gT) - gammaincc_ez(a, gT)) / g ** (H + 1.5))
    return T * g ** (-a) * gammainc(a, gT) - a * g ** (-(H + 1.5)) * gammainc(H + 1.5, gT)


def cost_constant(bas: MAFBMBasis, H):
    """c = ∫_0^T E B_t² dt for the unnormalised target (c_I or c_II)."""
    return _c(bas.T, jnp.asarray(H, dtype=jnp.float64), bas.kind)


def _c(T, H, kind: Kind):
    return _natural_scale(H, kind) * T ** (2.0 * H + 1.0) / (2.0 * H + 1.0)


def omega(bas: MAFBMBasis, H, normalize: bool = False):
    """Optimal weights ω(H) (K,), by one Cholesky solve with the pre-factored A.

    ``normalize=True`` rescales them so Var B̂_t ≈ t^{2H} (standard fBM). Compiled once per
    type and K (the basis arrays are arguments, not constants).
    """
    return _omega(jnp.asarray(bas.gamma), jnp.asarray(bas.chol_A), bas.T,
                  jnp.asarray(H, dtype=jnp.float64), bas.kind, bool(normalize))


@partial(jax.jit, static_argnums=(4, 5))
def _omega(g, chol, T, H, kind: Kind, normalize: bool):
    w = jax.scipy.linalg.cho_solve((chol, True), _b(g, T, H, kind))
    if normalize:
        w = w / jnp.sqrt(_natural_scale(H, kind))
    return w


def relative_mse(bas: MAFBMBasis, H):
    """∫E(B − B̂)² / ∫E B² over [0, T] at the optimal weights: 1 − bᵀω/c (the same for the
    normalised weights)."""
    return _relative_mse(jnp.asarray(bas.gamma), jnp.asarray(bas.chol_A), bas.T,
                         jnp.asarray(H, dtype=jnp.float64), bas.kind)


@partial(jax.jit, static_argnums=4)
def _relative_mse(g, chol, T, H, kind: Kind):
    b = _b(g, T, H, kind)
    w = jax.scipy.linalg.cho_solve((chol, True), b)
    return 1.0 - jnp.dot(b, w) / _c(T, H, kind)


def variance(bas: MAFBMBasis, w, t):
    """Var B̂_t = ωᵀ M(t) ω of the approximation at time(s) t (any shape)."""
    g = jnp.asarray(bas.gamma)
    t = jnp.asarray(t, dtype=jnp.float64)[..., None, None]
    s = g[:, None] + g[None, :]
    if bas.kind == "I":
        # Cov(Y_i(t) − Y_i(0), Y_j(t) − Y_j(0)) = Σ0_ij (2 − e^{−γ_i t} − e^{−γ_j t})
        M = (-jnp.expm1(-g[:, None] * t) - jnp.expm1(-g[None, :] * t)) / s
    else:
        M = -jnp.expm1(-s * t) / s
    return jnp.einsum("i,...ij,j->...", w, M, w)
