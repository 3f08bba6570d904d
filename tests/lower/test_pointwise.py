"""Pointwise log-likelihood (ppl/lower: the `Pointwise` handler and the interpreter's channel)
against numpyro's `log_likelihood` on hand-written numpyro models, and against direct sums."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from numpyro.infer import log_likelihood as numpyro_log_likelihood
from scipy import stats

import ppl
from ppl.lower.handlers import Sequential, Substitute, Unroll

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _draws(low, n=5, seed=1):
    """n points of the unconstrained space and their constrained values."""
    us = jax.random.normal(jax.random.PRNGKey(seed), (n, low.dim)) * 0.5
    values = jax.vmap(low.evaluate, in_axes=(0, None))(us, low.data_arrays)
    return us, values


def _ours(low, us, handlers=()):
    f = jax.jit(jax.vmap(lambda u, d: low.log_likelihood_pointwise(u, d, handlers), in_axes=(0, None)))
    return {k: np.asarray(v) for k, v in f(us, low.data_arrays).items()}


def test_eight_schools_against_numpyro():
    data = json.loads((EXAMPLES / "eight_schools.json").read_text())
    low = ppl.load(EXAMPLES / "eight_schools.ppl").lower(data)
    y, sigma = np.array(data["y"], float), np.array(data["sigma"], float)

    def model(y=None):
        mu = numpyro.sample("mu", nd.Normal(0, 5))
        tau = numpyro.sample("tau", nd.HalfCauchy(5))
        with numpyro.plate("J", 8):
            theta_raw = numpyro.sample("theta_raw", nd.Normal(0, 1))
            numpyro.sample("y", nd.Normal(mu + tau * theta_raw, sigma), obs=y)

    us, values = _draws(low)
    ref = numpyro_log_likelihood(model, {k: values[k] for k in ("mu", "tau", "theta_raw")}, y=y)
    ours = _ours(low, us)
    assert set(ours) == {"y"} and ours["y"].shape == (5, 8)
    np.testing.assert_allclose(ours["y"], np.asarray(ref["y"]), rtol=1e-10, atol=1e-12)
    # the terms add up to the log-likelihood
    total = jax.vmap(low.log_likelihood, in_axes=(0, None))(us, low.data_arrays)
    np.testing.assert_allclose(ours["y"].sum(1), np.asarray(total), rtol=1e-10)


LOOP = """
data N: int
data x: real[N]
data y: int[N]
data w: real[N]
alpha ~ normal(0, 2)
beta ~ normal(0, 2)
s ~ half_normal(1)
z: real[N]
for n in 1:N {
  z[n] ~ normal(alpha + beta * x[n], s)
  y[n] ~ bernoulli_logit(z[n])
}
for n in 2:N {
  w[n] ~ normal(0.5 * w[n-1] + z[n], 1)
}
"""


def test_loop_model_against_numpyro_and_across_loop_strategies():
    rng = np.random.default_rng(3)
    N = 12
    data = {"N": N, "x": rng.normal(size=N), "y": rng.integers(0, 2, N), "w": rng.normal(size=N)}
    low = ppl.compile(LOOP, "loop.ppl").lower(data)

    def model(y=None, w=None):
        alpha = numpyro.sample("alpha", nd.Normal(0, 2))
        beta = numpyro.sample("beta", nd.Normal(0, 2))
        s = numpyro.sample("s", nd.HalfNormal(1))
        with numpyro.plate("n", N):
            z = numpyro.sample("z", nd.Normal(alpha + beta * data["x"], s))
            numpyro.sample("y", nd.BernoulliLogits(z), obs=y)
        with numpyro.plate("m", N - 1):
            numpyro.sample("w", nd.Normal(0.5 * w[:-1] + z[1:], 1), obs=w[1:])

    us, values = _draws(low)
    ref = numpyro_log_likelihood(model, {k: values[k] for k in ("alpha", "beta", "s", "z")},
                                 y=data["y"], w=data["w"])
    ours = _ours(low, us)
    assert ours["y"].shape == (5, N) and ours["w"].shape == (5, N)
    np.testing.assert_allclose(ours["y"], np.asarray(ref["y"]), rtol=1e-10, atol=1e-12)
    # w[1] is not observed by any statement (it only conditions w[2]): its term is 0
    assert np.all(ours["w"][:, 0] == 0)
    np.testing.assert_allclose(ours["w"][:, 1:], np.asarray(ref["w"]), rtol=1e-10, atol=1e-12)
    # the same terms with every loop a scan, and with every loop unrolled
    for handlers in ((Sequential(),), (Unroll(),)):
        other = _ours(low, us, handlers)
        for k in ours:
            np.testing.assert_allclose(other[k], ours[k], rtol=1e-12, atol=1e-12)


def test_masked_branches_multivariate_rows_and_a_whole_vector():
    source = """
data N: int
data K: int
data x: real[N]
data y: real[N]
data Y: real[N, K]
data v: real[K]
a ~ normal(0, 1)
b ~ normal(0, 1)
m: real[K] ~ normal(0, 1)
for n in 1:N {
  if (x[n] > 0) {
    y[n] ~ normal(a, 1)
  } else {
    y[n] ~ student_t(4, b, 2)
  }
  Y[n] ~ multi_normal(m, diag_matrix(rep(1.0, K)))
}
v ~ normal(m, 0.5)
"""
    rng = np.random.default_rng(5)
    N, K = 6, 3
    data = {"N": N, "K": K, "x": rng.normal(size=N), "y": rng.normal(size=N),
            "Y": rng.normal(size=(N, K)), "v": rng.normal(size=K)}
    low = ppl.compile(source, "branch.ppl").lower(data)
    us, values = _draws(low, n=3)
    ours = _ours(low, us)
    a, b, m = (np.asarray(values[k]) for k in ("a", "b", "m"))
    x, y = data["x"], data["y"]
    expect_y = np.where(x > 0, stats.norm.logpdf(y, a[:, None], 1),
                        stats.t.logpdf(y, 4, b[:, None], 2))
    np.testing.assert_allclose(ours["y"], expect_y, rtol=1e-10)
    assert ours["Y"].shape == (3, N)  # one term per row of a multivariate observation
    expect_Y = np.stack([stats.multivariate_normal.logpdf(data["Y"], m[i], np.eye(K)) for i in range(3)])
    np.testing.assert_allclose(ours["Y"], expect_Y, rtol=1e-10)
    np.testing.assert_allclose(ours["v"], stats.norm.logpdf(data["v"], m, 0.5), rtol=1e-10)


def test_summed_out_mixture_indicators_give_marginal_terms():
    data = json.loads((EXAMPLES / "mixture.json").read_text())
    low = ppl.load(EXAMPLES / "mixture.ppl").lower(data)
    assert low.marginal is not None and low.pointwise_undefined == {}
    y = np.asarray(data["y"], float)

    def model(y=None):
        mu = numpyro.sample("mu", nd.Normal(0, 2).expand([2]).to_event(1))
        sigma = numpyro.sample("sigma", nd.HalfNormal(2).expand([2]).to_event(1))
        theta = numpyro.sample("theta", nd.Beta(5, 5))
        mix = nd.MixtureSameFamily(nd.Categorical(probs=jnp.stack([theta, 1 - theta])),
                                   nd.Normal(mu, sigma))
        with numpyro.plate("N", y.shape[0]):
            numpyro.sample("y", mix, obs=y)

    us, values = _draws(low, n=3)
    ref = numpyro_log_likelihood(model, {k: values[k] for k in ("mu", "sigma", "theta")}, y=y)
    ours = _ours(low, us)
    np.testing.assert_allclose(ours["y"], np.asarray(ref["y"]), rtol=1e-9)
    # with the indicators given, the terms are the conditional densities at them
    z = np.random.default_rng(0).integers(1, 3, y.size)
    given = _ours(low, us, (Substitute({"z": z}),))
    mu, sigma = np.asarray(values["mu"]), np.asarray(values["sigma"])
    expect = stats.norm.logpdf(y, mu[:, z - 1], sigma[:, z - 1])
    np.testing.assert_allclose(given["y"], expect, rtol=1e-9)


def test_a_summed_out_markov_chain_has_no_pointwise_terms_and_says_why():
    low = ppl.load(EXAMPLES / "hmm.ppl").lower(EXAMPLES / "hmm.json")
    assert "Markov chain" in low.pointwise_undefined["y"]
    assert low.log_likelihood_pointwise(jnp.zeros(low.dim), low.data_arrays) == {}
