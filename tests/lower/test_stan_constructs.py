"""Constructs the posteriordb ports need (issue 11), each against an independent evaluation:
observed transformed data, typed locals in loops, compound assignment, rows/cols/dims, the
cumulative distribution functions, normal_id_glm, NaN for unassigned elements, slices written
in a vectorised loop, transformed data computed once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl


def lowered(source, data):
    return ppl.compile(source, "test.ppl").lower(data)


def at(low, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (low.dim,))


W = np.array([0.5, 1.7, 2.2, 3.9, 0.8])

TRANSFORMED = """
data N: int<lower=1>
data w: real<lower=0>[N]
log_w = log(w)
scaled: real[N]
for i in 1:N {
  scaled[i] = log_w[i] / 2
}
mu ~ normal(0, 1)
log_w ~ normal(mu, 1)
scaled[2:N] ~ normal(mu, 3)
"""


@pytest.fixture(scope="module")
def transformed():
    return lowered(TRANSFORMED, {"N": len(W), "w": W.tolist()})


def test_observing_transformed_data_scores_the_data(transformed):
    low = transformed
    for seed in range(2):
        u = at(low, seed)
        mu = float(u[0])
        expected = (stats.norm.logpdf(mu, 0, 1) + stats.norm.logpdf(np.log(W), mu, 1).sum()
                    + stats.norm.logpdf(np.log(W[1:]) / 2, mu, 3).sum())
        assert float(low.log_density(u, low.data_arrays)) == pytest.approx(expected, rel=1e-10)


def test_transformed_data_reported_once_not_per_draw(transformed):
    low = transformed
    assert set(low.transformed_names) == {"log_w", "scaled"}
    assert not set(low.deterministic_names) & {"log_w", "scaled"}
    assert {"log_w", "scaled"} <= set(low.observed_names)
    values = low.transformed_data()
    np.testing.assert_allclose(values["log_w"], np.log(W), rtol=1e-12)
    np.testing.assert_allclose(values["scaled"], np.log(W) / 2, rtol=1e-12)


def test_transformed_data_in_inference_data_groups():
    model = ppl.compile("""
data N: int<lower=1>
data w: real<lower=0>[N]
log_w = log(w)
twice = 2 * log_w
mu ~ normal(0, 1)
log_w ~ normal(mu, 1)
""", "t.ppl")
    idata = model.sample({"N": len(W), "w": W.tolist()}, method="nuts", chains=1, draws=20,
                         warmup=20, seed=0)
    assert "log_w" not in idata.posterior and "twice" not in idata.posterior
    np.testing.assert_allclose(idata.observed_data["log_w"].values, np.log(W), rtol=1e-12)
    np.testing.assert_allclose(idata.constant_data["twice"].values, 2 * np.log(W), rtol=1e-12)


def test_observing_a_function_of_a_latent_is_refused():
    with pytest.raises(ppl.PPLError, match="Jacobian"):
        ppl.compile("mu ~ normal(0, 1)\nm2 = 2 * mu\nm2 ~ normal(0, 1)\n", "t.ppl")


Y = np.array([0.3, -0.2, 0.9, 1.4, 0.1, -0.7, 0.5])


def test_typed_local_and_compound_assignment_in_loops():
    """The arK recursion written as in Stan: `mu: real`, `mu += beta[k] * y[t - k]`."""
    K = 2
    low = lowered("""
data K: int<lower=0>
data T: int<lower=0>
data y: real[T]
alpha ~ normal(0, 10)
beta: real[K] ~ normal(0, 10)
sigma: real<lower=0> ~ cauchy(0, 2.5)
for t in (K + 1):T {
  mu: real
  mu = alpha
  for k in 1:K {
    mu += beta[k] *
          y[t - k]
  }
  mu -= 0.5
  mu *= 2
  mu /= 2
  y[t] ~ normal(mu + 0.5, sigma)
}
""", {"K": K, "T": len(Y), "y": Y.tolist()})
    u = at(low, 3)
    # layout order: alpha, beta, sigma
    alpha, beta, log_sigma = float(u[0]), np.asarray(u[1:1 + K]), float(u[1 + K])
    sigma = np.exp(log_sigma)
    mus = [alpha + sum(beta[k] * Y[t - k - 1] for k in range(K)) for t in range(K, len(Y))]
    expected = (stats.norm.logpdf(alpha, 0, 10) + stats.norm.logpdf(beta, 0, 10).sum()
                + stats.cauchy.logpdf(sigma, 0, 2.5) + log_sigma  # no truncation term, as Stan
                + stats.norm.logpdf(Y[K:], mus, sigma).sum())
    assert float(low.log_density(u, low.data_arrays)) == pytest.approx(expected, rel=1e-9)


def test_typed_local_array_in_a_forward_algorithm():
    """hmm_example's forward algorithm, `acc: real[K]` filled element by element, against the
    forward algorithm in NumPy."""
    y = np.array([1.2, 3.1, 2.9, 0.4, 2.2])
    low = lowered("""
data N: int
data y: real[N]
param mu: real[2]
theta = [[0.9, 0.1], [0.2, 0.8]]
gamma: real[N, 2]
for k in 1:2 {
  gamma[1, k] = normal_lpdf(y[1] | mu[k], 1)
}
for t in 2:N {
  for k in 1:2 {
    acc: real[2]
    for j in 1:2 {
      acc[j] = gamma[t - 1, j] + log(theta[j, k]) + normal_lpdf(y[t] | mu[k], 1)
    }
    gamma[t, k] = log_sum_exp(acc)
  }
}
target += log_sum_exp(gamma[N])
""", {"N": len(y), "y": y.tolist()})
    u = at(low, 1)
    mu = np.asarray(u)
    T = np.array([[0.9, 0.1], [0.2, 0.8]])
    g = stats.norm.logpdf(y[0], mu, 1)
    for t in range(1, len(y)):
        g = np.array([np.logaddexp.reduce(g + np.log(T[:, k]) + stats.norm.logpdf(y[t], mu[k], 1))
                      for k in range(2)])
    assert float(low.log_density(u, low.data_arrays)) == pytest.approx(np.logaddexp.reduce(g), rel=1e-10)
    # one scan over t carrying gamma's last row; the loops over k and j vectorised inside it
    carries = _scan_carries(jax.make_jaxpr(lambda v: low.log_density(v, low.data_arrays))(u).jaxpr)
    assert carries and all(int(np.prod(c)) <= 2 for c in carries), carries


def _scan_carries(jaxpr):
    """Shapes of every lax.scan carry in a jaxpr, nested ones included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            p = eqn.params
            out += [v.aval.shape for v in
                    eqn.invars[p["num_consts"]:p["num_consts"] + p["num_carry"]]]
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, "eqns"):
                    out += _scan_carries(sub)
    return out


ROWS = """
data N: int
data y: real[N]
param a: real
x: real[N, 2]
x[1, 1] = y[1]
x[1, 2] = 0.5
x[2, 1] = y[2]
x[2, 2] = a
for t in 3:N {                         # set before the recursion, which reads row t as it
  x[t, 2] = 0.1 * t                    # stands before overwriting it
}
best: int[N]
for t in 3:N {
  x[t, 1] = a * x[t - 1, 1] - 0.3 * x[t - 2, 2] + x[t, 2]
  for k in 2:2 {
    x[t, k] = x[t, 1] + x[t - 2, 1]
  }
  best[t] = x[t, 1] > x[t - 1, 1] ? t : 1
}
target += normal_lpdf(y | x[:, 1] + x[:, 2], 1) + best[N]
"""


def test_rows_filled_by_a_recursion_are_carried_as_a_window():
    """A loop that fills x row by row (x[t] from x[t-1] and x[t-2], and row t as it stood
    before the loop) against NumPy, value and gradient; the scans carry a window of at most
    the last three rows (lag 2 and the current row), not the whole x."""
    y = np.array([0.3, -1.2, 0.8, 2.0, 1.1, -0.4])
    low = lowered(ROWS, {"N": len(y), "y": y.tolist()})
    u = at(low, 2)
    a = float(u[0])
    x = np.full((len(y), 2), np.nan)
    x[0] = y[0], 0.5
    x[1] = y[1], a
    x[2:, 1] = 0.1 * np.arange(3, len(y) + 1)
    best = np.zeros(len(y), int)
    for t in range(2, len(y)):
        x[t, 0] = a * x[t - 1, 0] - 0.3 * x[t - 2, 1] + x[t, 1]
        x[t, 1] = x[t, 0] + x[t - 2, 0]
        best[t] = t + 1 if x[t, 0] > x[t - 1, 0] else 1
    expected = stats.norm.logpdf(y, x[:, 0] + x[:, 1], 1).sum() + best[-1]
    density = lambda v: low.log_density(v, low.data_arrays)  # noqa: E731
    assert float(density(u)) == pytest.approx(expected, rel=1e-10)
    eps = 1e-6
    numeric = (float(density(u + eps)) - float(density(u - eps))) / (2 * eps)
    assert float(jax.grad(density)(u)[0]) == pytest.approx(numeric, rel=1e-5)
    carries = _scan_carries(jax.make_jaxpr(density)(u).jaxpr)
    assert carries, "the loop over t should run as a scan"
    assert all(int(np.prod(c)) <= 3 * 2 for c in carries), carries


def test_rows_cols_dims_are_sizes():
    X = np.arange(12.0).reshape(4, 3)
    low = lowered("""
data X: real[4, 3]
n = rows(X)
k = cols(X)
d = dims(X)
b: real[cols(X)] ~ normal(0, 1)
c: real[dims(X)[1]] ~ normal(0, 1)
""", {"X": X.tolist()})
    assert low.dim == 3 + 4
    values = low.transformed_data()
    assert int(values["n"]) == 4 and int(values["k"]) == 3
    assert values["d"].tolist() == [4, 3]


@pytest.mark.parametrize("dist, args, scipy_dist", [
    ("normal", (0.3, 1.7), stats.norm(0.3, 1.7)),
    ("student_t", (3.0, 0.0, 10.0), stats.t(3.0, 0.0, 10.0)),
    ("exponential", (2.0,), stats.expon(scale=0.5)),
    ("gamma", (2.0, 3.0), stats.gamma(2.0, scale=1 / 3.0)),
    ("lognormal", (0.2, 0.5), stats.lognorm(0.5, scale=np.exp(0.2))),
    ("cauchy", (1.0, 2.0), stats.cauchy(1.0, 2.0)),
])
def test_cumulative_distribution_functions_match_scipy(dist, args, scipy_dist):
    from ppl.builtins.functions import FUNCTIONS
    y = np.array([0.2, 0.9, 2.5])
    cdf, lcdf, lccdf = (FUNCTIONS[f"{dist}_{k}"].fn for k in ("cdf", "lcdf", "lccdf"))
    # Stan's vector semantics: _cdf multiplies over elements, _lcdf / _lccdf add
    assert float(cdf(y, *args)) == pytest.approx(np.prod(scipy_dist.cdf(y)), rel=1e-6)
    assert float(lcdf(y, *args)) == pytest.approx(scipy_dist.logcdf(y).sum(), rel=1e-6)
    assert float(lccdf(y, *args)) == pytest.approx(scipy_dist.logsf(y).sum(), rel=1e-6)


def test_normal_lccdf_stays_finite_in_the_far_tail():
    from ppl.builtins.functions import FUNCTIONS
    assert float(FUNCTIONS["normal_lccdf"].fn(40.0, 0.0, 1.0)) == pytest.approx(
        stats.norm.logsf(40.0), rel=1e-8)


def test_cdf_calls_in_a_model_and_normal_id_glm():
    X = np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.3]])
    y = np.array([0.4, -0.3, 1.1])
    low = lowered("""
data X: real[3, 2]
data y: real[3]
param b: real[2]
param a: real
sigma: real<lower=0> ~ student_t(3, 0, 10)
target += -student_t_lccdf(0 | 3, 0, 10)
target += normal_id_glm_lpdf(y | X, a, b, sigma)
""", {"X": X.tolist(), "y": y.tolist()})
    u = at(low, 2)
    b, a, log_sigma = np.asarray(u[:2]), float(u[2]), float(u[3])
    sigma = np.exp(log_sigma)
    expected = (stats.t.logpdf(sigma, 3, 0, 10) + log_sigma - stats.t.logsf(0, 3, 0, 10)
                + stats.norm.logpdf(y, a + X @ b, sigma).sum())
    assert float(low.log_density(u, low.data_arrays)) == pytest.approx(expected, rel=1e-9)


def test_unassigned_elements_read_as_nan():
    low = lowered("""
mu ~ normal(0, 1)
a: real[3]
a[2] = mu
k: int[2]
k[1] = 3
""", {})
    values = low.evaluate(jnp.array([0.7]), low.data_arrays)
    a = np.asarray(values["a"])
    assert np.isnan(a[0]) and np.isnan(a[2]) and a[1] == pytest.approx(0.7)
    # integers have no NaN: 0, as before (k is from data alone: transformed data)
    assert low.transformed_data()["k"].tolist() == [3, 0]


def test_vectorised_loop_writes_columns():
    """diamonds' centring: `Xc[:, i - 1] = X[:, i] - mean(X[:, i])` in a loop over columns."""
    X = np.random.default_rng(0).normal(size=(6, 4))
    low = lowered("""
data N: int
data K: int
data X: real[N, K]
Xc: real[N, K - 1]
for i in 2:K {
  Xc[:, i - 1] = X[:, i] - mean(X[:, i])
}
mu ~ normal(0, 1)
""", {"N": 6, "K": 4, "X": X.tolist()})
    xc = low.transformed_data()["Xc"]
    np.testing.assert_allclose(xc, X[:, 1:] - X[:, 1:].mean(axis=0), rtol=1e-12)
