"""The effect handlers, one by one, on small programs run eagerly."""
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer.util import log_density
from scipy import stats

import ppl
from ppl.lower.handlers import (Block, CheckArgs, Fix, Generate, Mask, NumpyroSites, Replay, Seed,
                                Sequential, Simulate, Substitute, Trace, Unconstrain, Unroll)

SOURCE = """
data N: int
data y: real[N]
mu ~ normal(0, 1)
sigma ~ lognormal(0, 0.5)
x: real[N]
for n in 1:N { x[n] ~ normal(mu, sigma) }
for n in 1:N {
  if y[n] > 0 { y[n] ~ normal(x[n], 1) } else { y[n] ~ normal(x[n], 2) }
}
generated { y_rep ~ normal(x, 1) }
"""
DATA = {"N": 3, "y": [0.5, -1.0, 2.0]}


@pytest.fixture(scope="module")
def lw():
    return ppl.compile(SOURCE, "h.ppl").lower(DATA)


def _by_hand(mu, sigma, x, jacobian=True):
    y = np.asarray(DATA["y"])
    lp = stats.norm(0, 1).logpdf(mu) + stats.lognorm(0.5).logpdf(sigma) + stats.norm(mu, sigma).logpdf(x).sum()
    lp += np.where(y > 0, stats.norm(x, 1).logpdf(y), stats.norm(x, 2).logpdf(y)).sum()
    return lp + (np.log(sigma) if jacobian else 0.0)


def test_unconstrain_and_substitute_give_the_same_density(lw):
    u = jnp.asarray([0.3, -0.2, 0.1, 0.4, -0.5])
    mu, sigma, x = 0.3, np.exp(-0.2), np.asarray([0.1, 0.4, -0.5])
    a = lw.run([Unconstrain(lw.layout, u)], lw.data_arrays)
    assert float(a.lp) == pytest.approx(_by_hand(mu, sigma, x), rel=1e-12)
    b = lw.run([Substitute({"mu": mu, "sigma": sigma, "x": x})], lw.data_arrays)
    assert float(b.lp) == pytest.approx(_by_hand(mu, sigma, x, jacobian=False), rel=1e-12)


def test_block_splits_prior_and_likelihood(lw):
    u = jnp.asarray([0.3, -0.2, 0.1, 0.4, -0.5])
    full = float(lw.log_density(u, lw.data_arrays))
    prior = float(lw.log_prior(u, lw.data_arrays))
    lik = float(lw.log_likelihood(u, lw.data_arrays))
    assert prior + lik == pytest.approx(full, rel=1e-12)
    only_mu = lw.run([Unconstrain(lw.layout, u, jacobian=False), Block(lambda s: s.name != "mu")],
                     lw.data_arrays)
    assert float(only_mu.lp) == pytest.approx(stats.norm(0, 1).logpdf(0.3), rel=1e-12)


def test_fix_holds_values_and_removes_their_terms(lw):
    it = lw.run([Fix({"mu": 0.7}), Substitute({"sigma": 1.0, "x": np.zeros(3)})], lw.data_arrays)
    assert float(it.env["mu"]) == 0.7
    expected = _by_hand(0.7, 1.0, np.zeros(3), jacobian=False) - stats.norm(0, 1).logpdf(0.7)
    assert float(it.lp) == pytest.approx(expected, rel=1e-12)


def test_seed_draws_per_site_and_trace_replays(lw):
    key = jax.random.PRNGKey(5)
    tr = Trace()
    a = lw.run([Seed(key), tr], lw.data_arrays)
    b = lw.run([Seed(key)], lw.data_arrays)
    np.testing.assert_array_equal(a.env["x"], b.env["x"])  # a site's stream: key, statement, index
    assert set(tr.values) >= {"mu", "sigma"}
    c = lw.run([Replay(tr), Seed(jax.random.PRNGKey(6))], lw.data_arrays)
    assert float(c.env["mu"]) == float(a.env["mu"])
    assert "y_rep" not in a.env
    d = lw.run([Substitute({"mu": 0.0, "sigma": 1.0, "x": np.zeros(3)}), Seed(key), Generate()],
               lw.data_arrays)
    assert d.env["y_rep"].shape == (3,)


def test_simulate_draws_the_observations(lw):
    it = lw.run([Seed(jax.random.PRNGKey(1)), Simulate()], lw.data_arrays)
    assert it.env["y"].shape == (3,) and not np.allclose(it.env["y"], DATA["y"])


def test_mask_scales_sites_out():
    lw = ppl.compile("mu ~ normal(0, 1)\n").lower({})
    on = lw.run([Substitute({"mu": 0.2}), Mask(jnp.bool_(True))], {})
    off = lw.run([Substitute({"mu": 0.2}), Mask(jnp.bool_(False))], {})
    assert float(on.lp) == pytest.approx(stats.norm.logpdf(0.2)) and float(off.lp) == 0.0


def test_loop_strategies_agree_and_numpyro_sites_match(lw):
    u = jnp.asarray([0.3, -0.2, 0.1, 0.4, -0.5])
    planned = float(lw.log_density(u, lw.data_arrays))
    unrolled = lw.run([Unconstrain(lw.layout, u), Unroll()], lw.data_arrays)
    sequential = lw.run([Unconstrain(lw.layout, u), Sequential()], lw.data_arrays)
    assert float(unrolled.lp) == pytest.approx(planned, rel=1e-12)
    assert float(sequential.lp) == pytest.approx(planned, rel=1e-12)

    def model():
        lw.run([Unconstrain(lw.layout, u), Unroll(), NumpyroSites()], lw.data_arrays)

    with numpyro.handlers.seed(rng_seed=0):
        ref, trace = log_density(model, (), {}, {})
    assert float(ref) == pytest.approx(planned, rel=1e-12)
    # mu, sigma, x[1..3], and y[n] in both branches of the if (each masked by its condition)
    assert sum(1 for s in trace.values() if s["type"] == "sample") == 2 + 3 + 2 * 3


def test_check_args_blames_the_distribution_argument():
    lw = ppl.compile("data s: real\ndata y: real\nmu ~ normal(0, 1)\ny ~ normal(mu, s)\n",
                     "b.ppl").lower({"s": -1.0, "y": 0.5})
    # compiled, as inference runs it (built eagerly, numpyro itself refuses the scale)
    records = jax.jit(lambda d: lw.run([Substitute({"mu": 0.0}), CheckArgs()], d).records)(lw.data_arrays)
    bad = [k for k, ok in records.items() if k[0] == "arg" and not bool(ok)]
    assert bad == [("arg", 2, "scale")]  # statement 2: y ~ normal(mu, s)
    assert "the scale of normal must be positive" in lw.diagnose_point(jnp.zeros(1))[0].message
