"""Kalman filter / RTS smoother against brute-force joint Gaussian computations and references."""
import json

import numpy as np
from scipy import stats

import ppl  # noqa: F401  (float64)
import jax.numpy as jnp

from ppl.algorithms import kalman

RNG = np.random.default_rng(0)
T, DX, DY = 5, 2, 2


def random_model():
    F = RNG.normal(size=(T, DX, DX)) * 0.6
    c = RNG.normal(size=(T, DX))
    Q = np.stack([a @ a.T + 0.1 * np.eye(DX) for a in RNG.normal(size=(T, DX, DX))])
    H = RNG.normal(size=(T, DY, DX))
    d = RNG.normal(size=DY)  # fixed, not stacked
    R = np.array([[0.5, 0.1], [0.1, 0.3]])  # fixed
    m0 = RNG.normal(size=DX)
    P0 = np.array([[1.0, 0.3], [0.3, 2.0]])
    return m0, P0, F, c, Q, H, d, R


def joint_moments(m0, P0, F, c, Q, H, d, R):
    """Mean and covariance of (x_0..x_{T-1}, y_0..y_{T-1}) by direct linear algebra."""
    # x = M e + b with e the stacked independent noises (x_0 noise included).
    nx, ny = T * DX, T * DY
    L = np.zeros((nx, nx))  # x = L eps + mx
    mx = np.zeros(nx)
    cov_eps = np.zeros((nx, nx))
    for t in range(T):
        s = slice(t * DX, (t + 1) * DX)
        cov_eps[s, s] = P0 if t == 0 else Q[t]
        if t == 0:
            L[s, s] = np.eye(DX)
            mx[s] = m0
        else:
            p = slice((t - 1) * DX, t * DX)
            L[s] = F[t] @ L[p]
            L[s, s] += np.eye(DX)
            mx[s] = F[t] @ mx[p] + c[t]
    Sx = L @ cov_eps @ L.T
    Hb = np.zeros((ny, nx))
    for t in range(T):
        Hb[t * DY:(t + 1) * DY, t * DX:(t + 1) * DX] = H[t]
    my = Hb @ mx + np.tile(d, T)
    Sy = Hb @ Sx @ Hb.T + np.kron(np.eye(T), R)
    Sxy = Sx @ Hb.T
    return mx, Sx, my, Sy, Sxy


def test_against_brute_force_joint_gaussian():
    params = random_model()
    m0, P0, F, c, Q, H, d, R = params
    mx, Sx, my, Sy, Sxy = joint_moments(*params)
    y = RNG.multivariate_normal(my, Sy)
    model = kalman.LinearGaussianSSM(m0=m0, P0=P0, F=F, Q=Q, H=H, R=R, c=c, d=d)
    sm = kalman.smoother(model, y.reshape(T, DY))
    np.testing.assert_allclose(sm.filter.log_evidence, stats.multivariate_normal(my, Sy).logpdf(y), rtol=1e-10)
    # Smoothing: x | y by Gaussian conditioning.
    K = Sxy @ np.linalg.inv(Sy)
    post_mean = mx + K @ (y - my)
    post_cov = Sx - K @ Sxy.T
    np.testing.assert_allclose(np.asarray(sm.smoothed_means).ravel(), post_mean, atol=1e-9)
    for t in range(T):
        s = slice(t * DX, (t + 1) * DX)
        np.testing.assert_allclose(sm.smoothed_covs[t], post_cov[s, s], atol=1e-9)
        if t < T - 1:
            s1 = slice((t + 1) * DX, (t + 2) * DX)
            np.testing.assert_allclose(sm.smoothed_cross_covs[t], post_cov[s, s1], atol=1e-9)
    # Filtering at the last step equals smoothing at the last step.
    np.testing.assert_allclose(sm.filter.filtered_means[-1], post_mean[-DX:], atol=1e-9)
    # Filtering at t=2: condition x_2 on y_0..y_2 only.
    k = 3 * DY
    Kf = Sxy[:, :k] @ np.linalg.inv(Sy[:k, :k])
    np.testing.assert_allclose(sm.filter.filtered_means[2], (mx + Kf @ (y[:k] - my[:k]))[2 * DX:3 * DX], atol=1e-9)


def test_missing_observation_and_callable_coefficients():
    params = random_model()
    m0, P0, F, c, Q, H, d, R = params
    mx, Sx, my, Sy, Sxy = joint_moments(*params)
    y = RNG.multivariate_normal(my, Sy).reshape(T, DY)
    y[1] = np.nan
    keep = np.isfinite(y.ravel())
    ref = stats.multivariate_normal(my[keep], Sy[np.ix_(keep, keep)]).logpdf(y.ravel()[keep])
    Fj, Hj = jnp.asarray(F), jnp.asarray(H)
    model = kalman.LinearGaussianSSM(
        m0=m0, P0=P0, F=lambda t: Fj[t], Q=Q, H=lambda t: Hj[t], R=R, c=c, d=d
    )
    np.testing.assert_allclose(kalman.log_evidence(model, y), ref, rtol=1e-10)


def lg(phi, h, r):
    one = jnp.eye(1)
    return kalman.LinearGaussianSSM(m0=jnp.zeros(1), P0=one, F=phi * one, Q=one, H=h * one, R=r**2 * one)


def test_reference_linear_gaussian_T100(shared_data):
    y = np.array(json.loads((shared_data / "ssm" / "linear_gaussian_T100.json").read_text())["y"])
    np.testing.assert_allclose(kalman.log_evidence(lg(0.9, 1.0, 0.2), y), -149.1159051, atol=1e-6)


def test_reference_linear_gaussian_T10000(shared_data):
    y = np.array(json.loads((shared_data / "ssm" / "linear_gaussian_T10000.json").read_text())["y"])
    m = lg(0.8, 10.0, 0.1)
    assert abs(float(kalman.log_evidence(m, y)) - (-37264.2543444)) < 1e-3
    assert abs(float(kalman.log_evidence(m, y[:1000])) - (-3729.7888003)) < 1e-4
