"""Stochastic sizes under the padded layout: one compiled density for every size, equal to the
density of the model with that size fixed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl.lower.layout import PaddedLayout

D_MAX, N = 5, 12
PADDED = """
data N: int
data d_max: int
data X: real[N, d_max + 1]
data y: real[N]
d: int<lower=0, upper=d_max> ~ poisson(2)
beta: real[d + 1] ~ normal(0, 2)
sigma ~ half_normal(1)
mu = rep_vector(0.0, N)
for j in 1:(d + 1) {
  mu = mu + beta[j] * X[:, j]
}
y ~ normal(mu, sigma)
target += normal_lpdf(y | X[:, 1:(d + 1)] @ beta, 2 * sigma)
generated {
  total = sum(beta)
}
"""
FIXED = PADDED.replace("d: int<lower=0, upper=d_max> ~ poisson(2)", "data d: int")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, N)
    X = np.stack([x ** j for j in range(D_MAX + 1)], axis=1)
    y = 1 - 2 * x + 1.5 * x ** 3 + rng.normal(0, 0.3, N)
    return {"N": N, "d_max": D_MAX, "X": X.tolist(), "y": y.tolist()}


@pytest.fixture(scope="module")
def padded(data):
    lw = ppl.compile(PADDED, "padded.ppl").lower(data)
    return lw, jax.jit(lw.log_density_padded)


def test_layout_is_padded_to_the_largest_size(padded):
    lw, _ = padded
    assert isinstance(lw.layout, PaddedLayout)
    assert lw.layout.by_name["beta"].shape == (D_MAX + 1,) and lw.dim == D_MAX + 2
    assert lw.layout.padded() == ["beta"]


def test_padded_density_equals_the_unpadded_one_for_every_size(padded, data):
    lw, f = padded
    rng = np.random.default_rng(0)
    log_norm = np.log(stats.poisson(2).cdf(D_MAX))
    for d in range(D_MAX + 1):
        fixed = ppl.compile(FIXED, "fixed.ppl").lower(dict(data, d=d))
        g = jax.jit(fixed.log_density)
        for _ in range(3):
            u = rng.normal(size=lw.dim)
            u_fixed = np.concatenate([u[:d + 1], u[D_MAX + 1:]])
            expected = float(g(jnp.asarray(u_fixed), fixed.data_arrays)) + \
                stats.poisson(2).logpmf(d) - log_norm
            got = float(f(jnp.asarray(u), {"d": jnp.int32(d)}, lw.data_arrays))
            assert got == pytest.approx(expected, rel=1e-10, abs=1e-10), d


def test_inactive_entries_do_not_matter_and_gradients_stay_finite(padded):
    lw, f = padded
    u = np.random.default_rng(1).normal(size=lw.dim)
    v = u.copy()
    v[3:D_MAX + 1] = 100.0  # beyond d + 1 = 3 entries
    a = f(jnp.asarray(u), {"d": jnp.int32(2)}, lw.data_arrays)
    b = f(jnp.asarray(v), {"d": jnp.int32(2)}, lw.data_arrays)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    grad = jax.grad(lambda w: lw.log_density_padded(w, {"d": jnp.int32(0)}, lw.data_arrays))(jnp.asarray(u))
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.asarray(grad)[1:D_MAX + 1] == 0)


def test_prior_draws_report_absent_entries_as_nan(padded):
    lw, _ = padded
    draws = jax.jit(jax.vmap(lambda k: lw.prior_sample(k, lw.data_arrays)))(
        jax.random.split(jax.random.PRNGKey(0), 200))
    d, beta = np.asarray(draws["d"]), np.asarray(draws["beta"])
    assert beta.shape == (200, D_MAX + 1)
    np.testing.assert_array_equal(np.isfinite(beta), np.arange(D_MAX + 1)[None] <= d[:, None])
    assert 1.5 < d.mean() < 2.5  # Poisson(2) truncated at 5: mean 1.92
