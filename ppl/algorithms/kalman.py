"""Kalman filter and Rauch–Tung–Striebel smoother for linear-Gaussian state-space models.

    x_0 ~ N(m0, P0)
    x_t = F_t x_{t-1} + c_t + N(0, Q_t)          t = 1 .. T-1
    y_t = H_t x_t + d_t + N(0, R_t)              t = 0 .. T-1

Each of F, c, Q, H, d, R may be a fixed array, an array stacked over time (one extra leading
axis of length T; entry t is used at step t, entry 0 of F, c, Q is ignored), or a function
`t -> array` of the traced int step. Observations `ys` are (T, k); a row containing NaN is a
missing observation (no update, no evidence term). Everything runs in one `lax.scan`, so
T = 10^4 is cheap; the log evidence is exact up to float rounding (use float64).

`filter` and `smoother` are jitted: array coefficients are traced, callable ones are static
(hashed by identity, so reuse the same function objects to reuse the compiled program).
"""
from functools import partial
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "LinearGaussianSSM",
    "KalmanResult",
    "SmootherResult",
    "filter",
    "smoother",
    "log_evidence",
]

Matrix = Union[Any, Callable]


class LinearGaussianSSM(NamedTuple):
    m0: Any  # (d,)
    P0: Any  # (d, d)
    F: Matrix  # (d, d) | (T, d, d) | t -> (d, d)
    Q: Matrix  # (d, d) | (T, d, d) | t -> (d, d)
    H: Matrix  # (k, d) | (T, k, d) | t -> (k, d)
    R: Matrix  # (k, k) | (T, k, k) | t -> (k, k)
    c: Optional[Matrix] = None  # (d,) | (T, d) | t -> (d,); None = 0
    d: Optional[Matrix] = None  # (k,) | (T, k) | t -> (k,); None = 0


class KalmanResult(NamedTuple):
    log_evidence: Any  # scalar log p(y_{0:T-1})
    log_evidence_increments: Any  # (T,) log p(y_t | y_{0:t-1})
    filtered_means: Any  # (T, d)
    filtered_covs: Any  # (T, d, d)
    predicted_means: Any  # (T, d): mean of x_t | y_{0:t-1} (t = 0: m0)
    predicted_covs: Any  # (T, d, d)


class SmootherResult(NamedTuple):
    smoothed_means: Any  # (T, d)
    smoothed_covs: Any  # (T, d, d)
    smoothed_cross_covs: Any  # (T-1, d, d): Cov(x_t, x_{t+1} | y), row index t
    filter: KalmanResult


def _getter(x, matrix_ndim: int, default_shape=None):
    """Turn a fixed / stacked / callable coefficient into a function of t."""
    if x is None:
        return lambda t: jnp.zeros(default_shape)
    if callable(x):
        return x
    x = jnp.asarray(x)
    if x.ndim == matrix_ndim + 1:
        return lambda t: x[t]
    if x.ndim == matrix_ndim:
        return lambda t: x
    raise ValueError(f"expected an array with {matrix_ndim} or {matrix_ndim + 1} dims, got {x.shape}")


def _coefficients(model: LinearGaussianSSM, dim_x: int, dim_y: int):
    return (
        _getter(model.F, 2),
        _getter(model.c, 1, (dim_x,)),
        _getter(model.Q, 2),
        _getter(model.H, 2),
        _getter(model.d, 1, (dim_y,)),
        _getter(model.R, 2),
    )


def _update(m, P, y, H, d, R):
    """Condition N(m, P) on y ~ N(H x + d, R); a NaN in y skips the update."""
    observed = jnp.all(jnp.isfinite(y))
    y = jnp.where(observed, y, 0.0)
    S = H @ P @ H.T + R
    S = 0.5 * (S + S.T)
    L = jnp.linalg.cholesky(S)
    resid = y - (H @ m + d)
    PHt = P @ H.T
    # K = P H' S^{-1} via two triangular solves, not an explicit inverse.
    K = jax.scipy.linalg.cho_solve((L, True), PHt.T).T
    m_new = m + K @ resid
    # Joseph form keeps P symmetric positive definite when R is tiny relative to H P H'.
    IKH = jnp.eye(m.shape[0]) - K @ H
    P_new = IKH @ P @ IKH.T + K @ R @ K.T
    P_new = 0.5 * (P_new + P_new.T)
    z = jax.scipy.linalg.solve_triangular(L, resid, lower=True)
    log_lik = -0.5 * (y.shape[0] * jnp.log(2 * jnp.pi) + z @ z) - jnp.sum(jnp.log(jnp.diag(L)))
    return (
        jnp.where(observed, m_new, m),
        jnp.where(observed, P_new, P),
        jnp.where(observed, log_lik, 0.0),
    )


def _predict(m, P, F, c, Q):
    P_pred = F @ P @ F.T + Q
    return F @ m + c, 0.5 * (P_pred + P_pred.T)


def _split(model: LinearGaussianSSM):
    arrays = {k: v for k, v in model._asdict().items() if v is not None and not callable(v)}
    funcs = tuple((k, v) for k, v in model._asdict().items() if callable(v))
    return arrays, funcs


def _join(arrays, funcs) -> LinearGaussianSSM:
    fields = {k: None for k in LinearGaussianSSM._fields}
    fields.update(arrays)
    fields.update(dict(funcs))
    return LinearGaussianSSM(**fields)


def filter(model: LinearGaussianSSM, ys) -> KalmanResult:
    """Kalman filter over observations `ys` (T, k); exact log evidence and filtering moments."""
    arrays, funcs = _split(model)
    return _filter_jit(arrays, funcs, ys)


@partial(jax.jit, static_argnums=1)
def _filter_jit(arrays, funcs, ys) -> KalmanResult:
    return _filter(_join(arrays, funcs), ys)


def _filter(model: LinearGaussianSSM, ys) -> KalmanResult:
    ys = jnp.atleast_2d(jnp.asarray(ys).T).T  # (T,) -> (T, 1)
    m0 = jnp.atleast_1d(jnp.asarray(model.m0))
    P0 = jnp.atleast_2d(jnp.asarray(model.P0))
    F, c, Q, H, d, R = _coefficients(model, m0.shape[0], ys.shape[1])
    T = ys.shape[0]

    def step(carry, t):
        m, P = carry
        m_pred, P_pred = _predict(m, P, F(t), c(t), Q(t))
        first = t == 0
        m_pred = jnp.where(first, m0, m_pred)
        P_pred = jnp.where(first, P0, P_pred)
        m_f, P_f, ll = _update(m_pred, P_pred, ys[t], H(t), d(t), R(t))
        return (m_f, P_f), (ll, m_f, P_f, m_pred, P_pred)

    _, (lls, mf, Pf, mp, Pp) = lax.scan(step, (m0, P0), jnp.arange(T))
    return KalmanResult(jnp.sum(lls), lls, mf, Pf, mp, Pp)


def log_evidence(model: LinearGaussianSSM, ys):
    return filter(model, ys).log_evidence


def smoother(model: LinearGaussianSSM, ys) -> SmootherResult:
    """RTS smoother: moments of x_t | y_{0:T-1} and lag-one cross covariances."""
    arrays, funcs = _split(model)
    return _smoother_jit(arrays, funcs, ys)


@partial(jax.jit, static_argnums=1)
def _smoother_jit(arrays, funcs, ys) -> SmootherResult:
    model = _join(arrays, funcs)
    kf = _filter(model, ys)
    d = kf.filtered_means.shape[1]
    F = _getter(model.F, 2)
    T = kf.filtered_means.shape[0]

    def back(carry, t):
        m_next, P_next = carry  # smoothed at t+1
        m_f, P_f = kf.filtered_means[t], kf.filtered_covs[t]
        m_p, P_p = kf.predicted_means[t + 1], kf.predicted_covs[t + 1]
        # Smoother gain G = P_f F' P_p^{-1}, solved rather than inverted.
        G = jnp.linalg.solve(P_p, F(t + 1) @ P_f).T
        m_s = m_f + G @ (m_next - m_p)
        P_s = P_f + G @ (P_next - P_p) @ G.T
        P_s = 0.5 * (P_s + P_s.T)
        cross = G @ P_next  # Cov(x_t, x_{t+1} | y)
        return (m_s, P_s), (m_s, P_s, cross)

    init = (kf.filtered_means[-1], kf.filtered_covs[-1])
    _, (ms, Ps, cross) = lax.scan(back, init, jnp.arange(T - 1), reverse=True)
    ms = jnp.concatenate([ms, init[0][None]], 0)
    Ps = jnp.concatenate([Ps, init[1][None]], 0)
    return SmootherResult(ms, Ps, cross.reshape(T - 1, d, d), kf)
