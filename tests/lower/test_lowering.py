"""Lowering: the JAX log density against independent evaluations."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import pytest
from numpyro.infer.util import log_density

import ppl
from ppl.ir.nodes import Loop
from ppl.lower.validation import validate_density

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def lowered(source, data):
    return ppl.compile(source, "test.ppl").lower(data)


@pytest.mark.parametrize("name", ["eight_schools", "sv", "regression", "linear_regression",
                                  "logistic_regression", "varying_intercepts"])
def test_examples_match_numpyro_reference(name):
    model = ppl.load(EXAMPLES / f"{name}.ppl")
    low = model.lower(EXAMPLES / f"{name}.json")
    res = validate_density(low, jax.random.PRNGKey(1), num_points=2)
    assert res["checked"] and res["max_abs_diff"] < 1e-8


def test_eight_schools_against_hand_written_numpyro():
    data = json.loads((EXAMPLES / "eight_schools.json").read_text())
    low = ppl.load(EXAMPLES / "eight_schools.ppl").lower(data)
    y, sigma = np.array(data["y"], float), np.array(data["sigma"], float)

    def model():
        mu = numpyro.sample("mu", nd.Normal(0, 5))
        tau = numpyro.sample("tau", nd.HalfCauchy(5))
        theta_raw = numpyro.sample("theta_raw", nd.Normal(0, 1).expand([8]))
        numpyro.sample("y", nd.Normal(mu + tau * theta_raw, sigma), obs=y)

    for i in range(3):
        u = jax.random.normal(jax.random.PRNGKey(i), (low.dim,))
        # layout: mu, tau (log scale), theta_raw
        mu, log_tau, raw = u[0], u[1], u[2:]
        expected, _ = log_density(model, (), {}, {"mu": mu, "tau": jnp.exp(log_tau), "theta_raw": raw})
        expected = expected + log_tau  # log-Jacobian of tau = exp(u)
        assert float(low.log_density(u, low.data_arrays)) == pytest.approx(float(expected), rel=1e-10)


RECURRENCE = """
data N: int
data y: real[N]
sigma ~ half_normal(1)
z: real[N] ~ normal(0, 1)
s: real[N]
s[1] = z[1]
for n in 2:N {
  s[n] = s[n-1] + z[n]
}
y ~ normal(s, sigma)
"""

CUMSUM = """
data N: int
data y: real[N]
sigma ~ half_normal(1)
z: real[N] ~ normal(0, 1)
s = cumsum(z)
y ~ normal(s, sigma)
"""


def test_deterministic_recurrence_is_scanned_and_correct():
    data = {"N": 6, "y": [0.1, 0.5, -0.2, 1.0, 0.3, 0.0]}
    a, b = lowered(RECURRENCE, data), lowered(CUMSUM, data)
    plans = [s.plan for s in a.ir.body if isinstance(s, Loop)]
    assert plans[0].density == "scan" and plans[0].carried == ("s",)
    u = jax.random.normal(jax.random.PRNGKey(0), (a.dim,))
    assert float(a.log_density(u, a.data_arrays)) == pytest.approx(float(b.log_density(u, b.data_arrays)))
    np.testing.assert_allclose(a.evaluate(u, a.data_arrays)["s"], jnp.cumsum(u[1:]), rtol=1e-12)


BRANCHES = """
data N: int
data x: real[N]
data y: real[N]
mu ~ normal(0, 1)
for i in 1:N {
  if x[i] > 0 {
    y[i] ~ normal(mu, 1)
  } else {
    y[i] ~ normal(-mu, 2)
  }
}
"""


def test_if_on_data_inside_a_vectorised_loop():
    x = np.array([1.0, -1.0, 2.0, -0.5])
    y = np.array([0.3, 0.1, -0.4, 1.2])
    low = lowered(BRANCHES, {"N": 4, "x": x, "y": y})
    plans = [s.plan for s in low.ir.body if isinstance(s, Loop)]
    assert plans and plans[0].density == "vectorize"
    mu = 0.7
    expected = (nd.Normal(0, 1).log_prob(mu)
                + np.where(x > 0, nd.Normal(mu, 1).log_prob(y), nd.Normal(-mu, 2).log_prob(y)).sum())
    assert float(low.log_density(jnp.array([mu]), low.data_arrays)) == pytest.approx(float(expected))


CONSTRAINED = """
data K: int
data alpha: real<lower=0>[K]
lo ~ normal(0, 1)
x: real<lower=lo> ~ normal(lo, 2)        # a bound that depends on another variable
w: simplex[K] ~ dirichlet(alpha)
L: corr_cholesky[K] ~ lkj_corr_cholesky(2)
v: positive_ordered[K] ~ exponential(1)
"""


@pytest.fixture(scope="module")
def constrained():
    return lowered(CONSTRAINED, {"K": 3, "alpha": [1.0, 2.0, 3.0]})


def test_constrained_types_layout_and_reference(constrained):
    dims = {s.name: s.size for s in constrained.slots}
    assert dims == {"lo": 1, "x": 1, "w": 2, "L": 3, "v": 3}
    assert validate_density(constrained, jax.random.PRNGKey(3))["checked"]


def test_constrained_values_respect_their_supports(constrained):
    us = jax.random.normal(jax.random.PRNGKey(4), (50, constrained.dim)) * 2
    vals = jax.jit(jax.vmap(constrained.evaluate, in_axes=(0, None)))(us, constrained.data_arrays)
    assert (vals["x"] > vals["lo"]).all()
    np.testing.assert_allclose(vals["w"].sum(-1), 1.0, rtol=1e-12)
    L = vals["L"]
    np.testing.assert_allclose(jnp.einsum("nij,nkj->nik", L, L)[:, [0, 1, 2], [0, 1, 2]], 1.0, rtol=1e-10)
    assert (jnp.diff(vals["v"], axis=-1) > 0).all() and (vals["v"] > 0).all()


def test_jacobian_against_autodiff_for_square_transforms():
    src = "a ~ normal(0, 1)\nb ~ gamma(2, 3)\nc ~ beta(2, 2)\nd: real<lower=a, upper=a + 2> ~ normal(a, 1)\n"
    low = lowered(src, {})
    f = jax.jit(lambda u: low.log_density(u, low.data_arrays))
    values = jax.jit(lambda u: jnp.stack([low.evaluate(u, {})[k] for k in ("a", "b", "c", "d")]))
    jacobian = jax.jit(jax.jacfwd(values))
    for i in range(3):
        u = jax.random.normal(jax.random.PRNGKey(i), (low.dim,))
        x, jac = values(u), jacobian(u)
        a = x[0]
        dens = (nd.Normal(0, 1).log_prob(a) + nd.Gamma(2, 3).log_prob(x[1]) + nd.Beta(2, 2).log_prob(x[2])
                + nd.Normal(a, 1).log_prob(x[3]))
        expected = dens + jnp.linalg.slogdet(jac)[1]
        assert float(f(u)) == pytest.approx(float(expected), rel=1e-10)


def test_prior_sampler_moments():
    low = lowered("mu ~ normal(1, 2)\ns ~ exponential(4)\nx: real[3] ~ normal(mu, s)\n", {})
    draws = jax.jit(jax.vmap(lambda k: low.prior_sample(k, {})))(jax.random.split(jax.random.PRNGKey(0), 4000))
    assert abs(float(draws["mu"].mean()) - 1) < 4 * 2 / np.sqrt(4000)
    assert abs(float(draws["mu"].std()) - 2) < 0.1
    assert abs(float(draws["s"].mean()) - 0.25) < 4 * 0.25 / np.sqrt(4000)
    assert draws["x"].shape == (4000, 3)


def test_fixed_values_are_held_and_leave_the_density():
    src = "mu ~ normal(0, 1)\ns ~ half_normal(1)\ndata y: real[2]\ny ~ normal(mu, s)\n"
    low = lowered(src, {"y": [0.5, 1.5], "s": 2.0})
    assert [s.name for s in low.slots] == ["mu"]
    expected = nd.Normal(0, 1).log_prob(0.3) + nd.Normal(0.3, 2.0).log_prob(jnp.array([0.5, 1.5])).sum()
    assert float(low.log_density(jnp.array([0.3]), low.data_arrays)) == pytest.approx(float(expected))


TERNARY = """
data N: int
data x: real[N]
data y: real[N]
mu ~ normal(0, 1)
s = mu > 0 ? 1.0 : 2.0
for n in 1:N {
  y[n] ~ normal(x[n] > 0 ? mu : -mu, s)
}
"""


def test_conditional_expression():
    x, y = np.array([1.0, -1.0, 0.5]), np.array([0.2, 0.1, -0.3])
    low = lowered(TERNARY, {"N": 3, "x": x, "y": y})
    for mu in (0.4, -0.7):
        s = 1.0 if mu > 0 else 2.0
        expected = nd.Normal(0, 1).log_prob(mu) + nd.Normal(np.where(x > 0, mu, -mu), s).log_prob(y).sum()
        assert float(low.log_density(jnp.array([mu]), low.data_arrays)) == pytest.approx(float(expected))
    with pytest.raises(ppl.PPLError, match="condition of `\\? :`"):
        ppl.compile("mu ~ normal(0, 1)\ns = 2.5 ? 1 : 2\n")
