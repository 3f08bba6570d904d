"""Per-step functions built from the model's statements: they add up to the joint density, and
the Kalman coefficients give the exact evidence of a small linear-Gaussian model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.ir.statespace import analyze
from ppl.lower.statespace import SSMLowering
from ppl.passes.smc import validate_kalman, validate_ssm

TWO_STATES = """
data T: int
data y: real[T]
data z: real[T]
a ~ normal(0.5, 0.1)
x: real[T]
v: real[T]
x[1] ~ normal(0, 1)
v[1] ~ normal(x[1], 1)
y[1] ~ normal(x[1] + v[1], 1)
for t in 2:T {
  x[t] ~ normal(a * x[t-1] + 0.1 * v[t-1], 1)
  v[t] ~ normal(v[t-1], exp(x[t] / 4))
  y[t] ~ normal(x[t], 1)
}
for t in 3:T { z[t] ~ normal(2 * v[t], 0.5) }
"""

LG = """
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0.3, 1.5)
for t in 2:T { x[t] ~ normal(0.8 * x[t-1] + 0.1, 0.7) }
for t in 2:T { y[t] ~ normal(2 * x[t] - 1, 0.5) }
"""


def _lowered(src, data):
    m = ppl.compile(src)
    low = m.lower(data)
    return low, SSMLowering(low, analyze(m.graph))


def test_step_densities_sum_to_joint_density():
    T = 6
    rng = np.random.default_rng(0)
    low, ssm = _lowered(TWO_STATES, {"T": T, "y": rng.normal(size=T), "z": rng.normal(size=T)})
    assert ssm.free_params == ("a",)
    r = validate_ssm(ssm, jax.random.PRNGKey(1), low, points=3)
    assert r["checked"] and r["max_abs_diff"] < 1e-8


def test_lag_window_sampling_follows_the_recurrence():
    T = 5
    low, ssm = _lowered(LG, {"T": T, "y": np.zeros(T)})
    params, _ = ssm.prepare({}, low.data_arrays)
    m = ssm.model()
    xs = jax.vmap(lambda k: m.transition_sample(k, {"x": jnp.asarray(2.0)}, 1, params)["x"])(
        jax.random.split(jax.random.PRNGKey(0), 20000))
    assert abs(float(xs.mean()) - (0.8 * 2 + 0.1)) < 0.03
    assert abs(float(xs.std()) - 0.7) < 0.02


def test_kalman_evidence_matches_the_multivariate_normal():
    T = 5
    y = np.array([0.0, 0.4, -1.2, 2.0, 0.7])  # y[1] is not observed (the loop starts at 2)
    low, ssm = _lowered(LG, {"T": T, "y": y})
    assert validate_kalman(ssm, jax.random.PRNGKey(0), low)["kalman_checked"]
    params, _ = ssm.prepare({}, low.data_arrays)
    _, log_z = jax.jit(ssm.kalman_filter)(params)
    # independent: x is Gaussian with known mean and covariance, y[2:] = 2 x[2:] - 1 + noise
    mean = np.empty(T)
    cov = np.empty((T, T))
    mean[0], var = 0.3, 1.5 ** 2
    vars_ = [var]
    for t in range(1, T):
        mean[t] = 0.8 * mean[t - 1] + 0.1
        vars_.append(0.64 * vars_[-1] + 0.49)
    for i in range(T):
        for j in range(T):
            lo, hi = min(i, j), max(i, j)
            cov[i, j] = 0.8 ** (hi - lo) * vars_[lo]
    ym = 2 * mean[1:] - 1
    ycov = 4 * cov[1:, 1:] + 0.25 * np.eye(T - 1)
    r = y[1:] - ym
    expect = -0.5 * (r @ np.linalg.solve(ycov, r) + np.linalg.slogdet(2 * np.pi * ycov)[1])
    assert float(log_z) == pytest.approx(expect, abs=1e-10)
