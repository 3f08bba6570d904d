"""Discrete latents summed out of the density: exact against brute force and the forward algorithm,
and NUTS on posteriordb references (slow)."""
import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.algorithms import hmm
from ppl.ir.discrete import analyze
from ppl.lower.validation import validate_marginal
from ppl.passes import passes

ROOT = Path(__file__).resolve().parents[2]

ONE_LOOP = (ROOT / "examples" / "mixture.ppl").read_text()
TWO_LOOPS = """
data N: int
data y: real[N]
mu: ordered[2] ~ normal(0, 2)
sigma: real<lower=0>[2] ~ normal(0, 2)
theta ~ beta(5, 5)
z: int[N]
for n in 1:N {
  z[n] ~ categorical([theta, 1 - theta])
}
for n in 1:N {
  y[n] ~ normal(mu[z[n]], sigma[z[n]])
}
"""
MIX_DATA = {"N": 6, "y": [-2.1, 0.3, 2.5, 3.1, -1.7, 0.9]}


@pytest.fixture(scope="module")
def mixture():
    lw = ppl.compile(ONE_LOOP).lower(MIX_DATA)
    return lw, jax.jit(lw.log_density), jax.jit(lw.log_density_given)


def _brute(given, lw, u, name, T, values):
    lps = [float(given(u, lw.data_arrays, {name: jnp.asarray(c, dtype=jnp.int32)}))
           for c in itertools.product(values, repeat=T)]
    return float(jax.nn.logsumexp(jnp.asarray(lps))), lps


def test_mixture_marginal_equals_brute_force(mixture):
    lw, f, given = mixture
    assert analyze(lw.graph).plans["z"].kind == "independent"
    u = jax.random.normal(jax.random.PRNGKey(0), (lw.dim,))
    brute, lps = _brute(given, lw, u, "z", 6, [1, 2])
    assert abs(float(f(u, lw.data_arrays)) - brute) < 1e-9
    # the per-element posterior probabilities are the brute-force conditional marginals
    post = lw.discrete_posterior(jax.random.PRNGKey(1), u, lw.data_arrays)
    w = np.exp(np.asarray(lps) - brute)
    configs = np.asarray(list(itertools.product([1, 2], repeat=6)))
    np.testing.assert_allclose(post["z_prob"][:, 1], (w[:, None] * (configs == 2)).sum(0), atol=1e-9)
    assert post["z"].shape == (6,) and set(np.asarray(post["z"]).tolist()) <= {1, 2}


def test_separate_loops_give_the_same_density(mixture):
    lw, f, _ = mixture
    lw2 = ppl.compile(TWO_LOOPS).lower(MIX_DATA)
    u = jax.random.normal(jax.random.PRNGKey(2), (lw.dim,))
    assert abs(float(f(u, lw.data_arrays)) - float(jax.jit(lw2.log_density)(u, lw2.data_arrays))) < 1e-9


HMM = (ROOT / "examples" / "hmm.ppl").read_text()
HMM_DATA = {"N": 5, "K": 2, "y": [3.2, 2.5, 9.7, 10.4, 3.3]}


def test_hmm_marginal_equals_forward_algorithm_and_brute_force():
    lw = ppl.compile(HMM).lower(HMM_DATA)
    assert analyze(lw.graph).plans["z"].kind == "chain"
    u = jax.random.normal(jax.random.PRNGKey(3), (lw.dim,))
    v = lw.evaluate(u, lw.data_arrays)
    y = np.asarray(HMM_DATA["y"])
    log_obs = -0.5 * (y[:, None] - np.asarray(v["mu"])[None]) ** 2 - 0.5 * np.log(2 * np.pi)
    fw = hmm.forward(jnp.log(jnp.full(2, 0.5)), jnp.log(v["theta"]), jnp.asarray(log_obs))
    prior_mu = float(jnp.sum(jax.scipy.stats.norm.logpdf(v["mu"], jnp.asarray([3.0, 10.0]), 1.0)))
    # the rest of the density: mu's prior and the log-Jacobians of the transforms
    rest = float(lw.log_density_given(u, lw.data_arrays, {"z": jnp.ones(5, jnp.int32)})) - \
        float(jnp.sum(jax.scipy.stats.norm.logpdf(jnp.asarray(y), v["mu"][0], 1.0))) - \
        float(np.log(0.5) + np.sum(np.log(np.asarray(v["theta"])[0, 0]) * 4))
    marginal = float(jax.jit(lw.log_density)(u, lw.data_arrays))
    assert abs(marginal - (rest + float(fw.log_evidence))) < 1e-8
    brute, _ = _brute(jax.jit(lw.log_density_given), lw, u, "z", 5, [1, 2])
    assert abs(marginal - brute) < 1e-9
    assert prior_mu < 0  # sanity: the priors on mu are part of `rest`
    res = validate_marginal(lw, jax.random.PRNGKey(0))
    assert res["checked"] and res["brute_force"]
    post = lw.discrete_posterior(jax.random.PRNGKey(4), u, lw.data_arrays)
    sm = hmm.backward_smoothing(jnp.zeros(2), jnp.log(v["theta"]), jnp.asarray(log_obs))
    np.testing.assert_allclose(post["z_prob"], sm.marginals, atol=1e-9)


def test_nuts_diagnose_and_check_say_what_is_summed_out(capsys):
    d = passes()["nuts"].diagnose(ppl.compile(HMM).graph)
    assert d and "z (chain)" in d.reason
    bad = ppl.compile(ONE_LOOP.replace("  y[n] ~ normal(mu[z[n]], sigma[z[n]])",
                                       "  m = mu[z[n]]\n  y[n] ~ normal(m, sigma[1])"))
    d = passes()["nuts"].diagnose(bad.graph)
    assert not d and "deterministic statement" in d.reason and "line" in d.reason
    from ppl.cli import main
    assert main(["check", str(ROOT / "examples" / "mixture.ppl")]) == 0
    out = capsys.readouterr().out
    assert "z: summed out element by element" in out and "plan: nuts" in out


def test_nuts_reports_discrete_posterior():
    model = ppl.compile(ONE_LOOP)
    idata = model.sample(MIX_DATA, chains=2, draws=150, warmup=150, seed=0, validate=False)
    assert idata.posterior["z"].shape == (2, 150, 6)
    assert idata.posterior["z_prob"].shape == (2, 150, 6, 2)
    np.testing.assert_allclose(idata.posterior["z_prob"].values.sum(-1), 1.0, atol=1e-12)


# ---------------------------------------------------------------- posteriordb references (slow)
GAUSS_MIX = """
data N: int
data y: real[N]
mu: ordered[2] ~ normal(0, 2)
sigma: real<lower=0>[2] ~ normal(0, 2)
theta ~ beta(5, 5)
z: int<lower=1, upper=2>[N]
for n in 1:N {
  z[n] ~ categorical([theta, 1 - theta])
  y[n] ~ normal(mu[z[n]], sigma[z[n]])
}
"""


@pytest.mark.slow
def test_low_dim_gauss_mix_matches_posteriordb(shared_data):
    from oracles.posteriordb import compare_to_reference, load_data
    name = "low_dim_gauss_mix-low_dim_gauss_mix"
    idata = ppl.compile(GAUSS_MIX).sample(load_data(name), method="nuts", chains=4, draws=1000,
                                          warmup=1000, seed=11)
    ours = {k: idata.posterior[k].values for k in ("mu", "sigma", "theta")}
    failures = compare_to_reference(ours, name, check_convergence=True)
    assert not failures, "\n".join(failures)
    assert idata.posterior["z"].shape[-1] == 1000


@pytest.mark.slow
def test_hmm_example_matches_posteriordb(shared_data):
    from oracles.posteriordb import compare_to_reference, load_data
    name = "hmm_example-hmm_example"
    idata = ppl.compile(HMM).sample(load_data(name), method="nuts", chains=4, draws=1000,
                                    warmup=1000, seed=12)
    th = idata.posterior["theta"].values
    ours = {"mu": idata.posterior["mu"].values, "theta1": th[..., 0, :], "theta2": th[..., 1, :]}
    failures = compare_to_reference(ours, name, check_convergence=True)
    assert not failures, "\n".join(failures)


CHANGE_POINT = """
data N: int
data y: int[N]
data a: real
data b: real
e ~ gamma(a, b)
l ~ gamma(a, b)
s: int<lower=1, upper=N> ~ discrete_range(1, N)
for t in 1:N {
  y[t] ~ poisson(t < s ? e : l)
}
"""


def _change_point_posterior(y, a, b):
    """p(s | y) with both rates integrated out (gamma–Poisson conjugacy): independent of ppl."""
    from scipy.special import gammaln
    N = len(y)

    def seg(ys):  # log ∫ Π poisson(y | r) gamma(r | a, b) dr, up to the y! terms
        n, s = len(ys), float(np.sum(ys))
        return a * np.log(b) - gammaln(a) + gammaln(a + s) - (a + s) * np.log(b + n)
    lp = np.array([seg(y[:s - 1]) + seg(y[s - 1:]) for s in range(1, N + 1)])
    return np.exp(lp - np.logaddexp.reduce(lp))


def _change_point_data():
    rng = np.random.default_rng(4)
    y = np.r_[rng.poisson(3.0, 12), rng.poisson(0.8, 18)]
    return y, {"N": 30, "y": y.tolist(), "a": 2.0, "b": 1.0}


def test_a_scalar_discrete_latent_is_summed_out_exactly():
    """The summed-out density against the program at given values of s and against the
    brute-force sum over its 30 values, at random points."""
    y, data = _change_point_data()
    m = ppl.compile(CHANGE_POINT)
    assert analyze(m.graph).plans["s"].kind == "single"
    res = validate_marginal(m.lower(data, "nuts"), 0)
    assert res["checked"] and res["brute_force"] and res["max_abs_diff"] < 1e-6, res


@pytest.mark.slow
def test_a_scalar_discrete_latent_is_summed_out_and_its_posterior_is_exact():
    """The change point of Stan's manual, written as a draw (`s ~ discrete_range(1, N)`) instead
    of the hand-written log_sum_exp: NUTS on the rates, s summed out, p(s | y) (the mean of the
    conditional probabilities s_prob over the draws) against the closed form."""
    y, data = _change_point_data()
    m = ppl.compile(CHANGE_POINT)
    idata = m.sample(data, chains=4, draws=300, warmup=300, seed=3)
    est = idata.posterior["s_prob"].mean(("chain", "draw")).values
    exact = _change_point_posterior(y, 2.0, 1.0)
    # s_prob per draw varies with the rates; its mean over ~1000 effective draws has a Monte
    # Carlo sd below 0.5/sqrt(1000) ≈ 0.016 for every value
    assert np.max(np.abs(est - exact)) < 0.05, (est.round(3), exact.round(3))
    assert abs(float(idata.posterior["s"].mean()) - float(np.sum(np.arange(1, 31) * exact))) < 1.0


def test_a_summed_out_scalar_keeps_the_truncation_of_its_bounds():
    """`s: int<lower=0, upper=5> ~ poisson(lam)` is a Poisson truncated to 0..5: its normaliser
    depends on lam and stays in the summed-out density, in the program as written, and in the
    numpyro reference (validate_marginal compares all three, and the brute-force sum)."""
    m = ppl.compile("""
data N: int
data y: real[N]
lam ~ gamma(2, 1)
s: int<lower=0, upper=5> ~ poisson(lam)
for t in 1:N {
  y[t] ~ normal(s, 1)
}
""")
    lowered = m.lower({"N": 5, "y": [1.0, 2.0, 1.5, 0.5, 2.2]}, "nuts")
    res = validate_marginal(lowered, 0)
    assert res["brute_force"] and res["max_abs_diff"] < 1e-6, res
    # the density at lam = 1 (u = log 1): gamma(2, 1) prior, its log-Jacobian, and the sum over
    # s of the truncated Poisson times the likelihood
    from scipy import stats
    y = np.array([1.0, 2.0, 1.5, 0.5, 2.2])
    ks = np.arange(6)
    trunc = stats.poisson.logpmf(ks, 1.0) - np.log(stats.poisson.cdf(5, 1.0))
    lik = np.array([stats.norm.logpdf(y, k, 1).sum() for k in ks])
    exact = stats.gamma.logpdf(1.0, 2) + 0.0 + np.logaddexp.reduce(trunc + lik)
    np.testing.assert_allclose(float(lowered.log_density(jnp.zeros(1), lowered.data_arrays)), exact,
                               rtol=1e-6)
