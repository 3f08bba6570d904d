"""The MHG sampler on a small model with an exact joint answer: a size k, an array sized by it,
a positive hyperparameter and a discrete latent z whose law depends on k (Gibbs). Every
within-dimension move kind (random walk, HMC, NUTS — masked) is checked against the exact joint
p(k, z) and the exact conditionals of the continuous coordinates."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ppl.algorithms import mhg
from ppl.algorithms.padded import (Continuous, Discrete, ElementProposal, PaddedModel, Positive, Real,
                                   SizedArray, SizeVar, iid_log_prob, truncated_log_pmf)
from ppl.lower.random import rng_key

sys.path.insert(0, str(Path(__file__).parent))
from mhg_stats import chi_square, ks_given  # noqa: E402

K_MAX, Z_MAX = 5, 4
SIZE = SizeVar("k", 0, K_MAX, truncated_log_pmf(dist.Poisson(1.5), 0, K_MAX))


def toy():
    """k ~ Poisson(1.5) on 0..5; x_1..x_k iid N(m, 1) with m ~ N(0, 1) (so x_j ~ N(0, 2) given k,
    exchangeable); s ~ Gamma(2, 1); z on 0..4 with p(z | k) ∝ exp(−(z − k)²/2)."""
    prop = ElementProposal.from_distribution(lambda s, d: dist.Normal(s["m"], 1.0))
    arr = SizedArray("x", "k", kind=Real(), proposal=prop)

    def log_density(s, data):
        k = s["k"]
        return (SIZE.log_prior(k) + iid_log_prob(dist.Normal(s["m"], 1.0), s["x"], k)
                + dist.Normal(0.0, 1.0).log_prob(s["m"]) + dist.Gamma(2.0, 1.0).log_prob(s["s"])
                - 0.5 * (s["z"] - k) ** 2)

    def init(key, data):
        k1, k2 = jax.random.split(key)
        return {"k": jax.random.randint(k1, (), 0, K_MAX + 1), "x": jax.random.normal(k2, (K_MAX,)),
                "m": jnp.zeros(()), "s": jnp.ones(()), "z": jnp.int32(0)}

    return PaddedModel((SIZE,), (arr,), log_density, init,
                       params=(Continuous("m", Real()), Continuous("s", Positive())),
                       discrete=(Discrete("z", (), 0, Z_MAX),), name="toy")


def exact_joint():
    pk = SIZE.prior_pmf()
    w = np.array([[pk[k] * math.exp(-0.5 * (z - k) ** 2) for z in range(Z_MAX + 1)] for k in range(K_MAX + 1)])
    return w / w.sum()


@pytest.fixture(scope="module", params=["random_walk", "hmc", "nuts"])
def run(request):
    model = toy()
    moves = mhg.default_moves(model, within=request.param)
    sampler = mhg.MHG(model, moves)
    res = sampler.run(rng_key(0), {}, chains=4, draws=20_000, warmup=2_000)
    return request.param, sampler, res


def test_joint_of_size_and_discrete_latent_is_exact(run):
    name, _, res = run
    cell = res.sizes["k"] * (Z_MAX + 1) + res.discrete["z"]
    stat, dof, p, n_eff = chi_square(cell, range((K_MAX + 1) * (Z_MAX + 1)), exact_joint().ravel())
    assert p > 1e-3, (name, stat, dof, n_eff)


def test_continuous_coordinates_given_k_are_exact(run):
    name, _, res = run
    for k in (1, 2, 3):
        sel = res.sizes["k"] == k
        for j in range(k):
            x = [v[m] for v, m in zip(res.arrays["x"][..., j], sel)]
            d, p, n = ks_given(x, stats.norm(0, math.sqrt(2)).cdf)
            assert p > 1e-3, (name, k, j, d, p, n)
    d, p, n = ks_given(list(res.params["s"]), stats.gamma(2.0).cdf)
    assert p > 1e-3, (name, "s", d, p, n)


def test_outputs_and_one_compilation_for_every_size(run):
    name, sampler, res = run
    k = res.sizes["k"]
    assert set(np.unique(k)) == set(range(K_MAX + 1))  # every size visited ...
    chunks = [s for s in sampler._compiled if s[0] == "chunk"]
    assert len(chunks) == 1  # ... by one compiled program (warm-up and sampling share it)
    x = res.arrays["x"]
    assert x.shape == (4, 20_000, K_MAX)
    idx = np.arange(K_MAX)
    assert np.array_equal(np.isnan(x), idx[None, None, :] >= k[..., None])  # padding is NaN
    acc = res.acceptance()
    assert set(acc) == {name, "birth_death[k]", "gibbs[z]"}
    assert all(0 < a <= 1 for a in acc.values()), acc
    assert res.trouble.sum() == 0
    assert res.log_density.shape == (4, 20_000) and np.all(np.isfinite(res.log_density))
