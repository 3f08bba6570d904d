"""Prior recovery: each example with its observations removed must return the prior of its size
variable (chi-square with effective counts, p > 0.001, 4 × 20 000 iterations) and the prior
marginals of continuous coordinates given the size (KS on ESS-thinned draws). Negative
controls: dropping the Jacobian, swapping the reverse-move probability and dropping the
order-statistics normaliser must each make the size's test fail (p < 0.001)."""
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (float64)
import jax.numpy as jnp

from ppl.algorithms import mhg
from ppl.lower.random import rng_key
from ppl.algorithms.involutions import UP, birth_death

sys.path.insert(0, str(Path(__file__).parent))
import mhg_models  # noqa: E402
from mhg_stats import chi_square, ks_given  # noqa: E402

ITERATIONS = 20_000
CHAINS = 4


def run_prior(model, data, seed, moves=None, iterations=ITERATIONS, warmup=2_000):
    sampler = mhg.MHG(model, moves if moves is not None else mhg.default_moves(model))
    return sampler.run(rng_key(seed), data, chains=CHAINS, draws=iterations, warmup=warmup)


def size_test(res, model):
    s = model.sizes[0]
    values = np.arange(s.lower, s.upper + 1)
    return chi_square(res.sizes[s.name], values, s.prior_pmf())


def given(res, size, k, values):
    """Per chain, the draws of `values` (chains, draws) at iterations where size == k."""
    sel = res.sizes[size] == k
    return [v[m] for v, m in zip(values, sel)]


def assert_ks(res, size, k, values, cdf, what):
    d, p, n = ks_given(given(res, size, k, values), cdf)
    assert n >= 20, f"{what} | {size}={k}: too few effective draws ({n})"
    assert p > 1e-3, f"{what} | {size}={k}: KS D={d:.3f}, p={p:.2g}, n={n}"


# ----------------------------------------------------------------------------- the examples
@pytest.fixture(scope="module")
def polynomial_prior(shared_data):
    model, data = mhg_models.polynomial(observed=False)
    return model, run_prior(model, data, 10)


def test_polynomial_prior_recovery(polynomial_prior):
    model, res = polynomial_prior
    stat, dof, p, n_eff = size_test(res, model)
    assert p > 1e-3, (stat, dof, n_eff)
    b = res.arrays["beta"]
    prior = stats.norm(0.0, 2.0).cdf
    for d in (1, 2, 3):
        assert_ks(res, "d", d, b[..., 0], prior, "beta_0")
        assert_ks(res, "d", d, b[..., d], prior, f"beta_{d}")


@pytest.mark.slow
def test_coal_mining_prior_recovery(shared_data):
    model, data = mhg_models.coal_mining(observed=False)
    res = run_prior(model, data, 11)
    stat, dof, p, n_eff = size_test(res, model)
    assert p > 1e-3, (stat, dof, n_eff)
    f = mhg_models._load("coal_mining_disasters.json")
    L, beta = f["end"] - f["start"], f["beta"]
    for k in (1, 2, 3, 4):
        # s_1 is the 2nd order statistic of 2k+1 uniforms on [0, L]
        assert_ks(res, "k", k, res.arrays["s"][..., 0], stats.beta(2, 2 * k, scale=L).cdf, "s_1")
        assert_ks(res, "k", k, res.arrays["h"][..., 0], stats.gamma(f["alpha"], scale=1 / beta).cdf, "h_0")


@pytest.mark.slow
def test_galaxy_prior_recovery(shared_data):
    model, data = mhg_models.galaxy(observed=False)
    res = run_prior(model, data, 12)
    stat, dof, p, n_eff = size_test(res, model)
    assert p > 1e-3, (stat, dof, n_eff)
    f = mhg_models._load("galaxy.json")
    xi, sd = f["xi"], 1 / math.sqrt(f["kappa"])
    for k in (2, 5):
        assert_ks(res, "k", k, res.arrays["w"][..., 0], stats.beta(1, k - 1).cdf, "w_1")
        assert_ks(res, "k", k, res.arrays["mu"][..., 0],
                  lambda x, k=k: 1 - stats.norm.sf(x, xi, sd) ** k, "mu_1 (the smallest of k)")
    assert_ks(res, "k", 3, res.params["beta"], stats.gamma(f["g"], scale=1 / f["h"]).cdf, "beta")


# -------------------------------------------------------------------------- negative controls
def broken_moves(model, inv):
    """Default moves with the birth/death replaced by `inv`."""
    return [(m, w) if not isinstance(m, mhg.InvolutiveMove) else (mhg.InvolutiveMove(model, inv), w)
            for m, w in mhg.default_moves(model)]


@pytest.mark.slow
def test_dropping_the_jacobian_fails_prior_recovery(shared_data):
    """Galaxy's weight split has Jacobian (1 − w*)^(k−1); without it the prior of k is lost."""
    model, data = mhg_models.galaxy(observed=False)
    bd = birth_death(model, "k")
    res = run_prior(model, data, 13, broken_moves(model, replace(bd, log_jacobian=lambda x, a, d: 0.0)))
    stat, dof, p, _ = size_test(res, model)
    assert p < 1e-3, (stat, dof, p)


@pytest.mark.slow
def test_swapping_the_reverse_move_probability_fails_prior_recovery(shared_data):
    """Coal mining: the death picks one of k+1 change points after a birth; using 1/k (the
    count before the birth, the classic slip) instead breaks the balance."""
    model, data = mhg_models.coal_mining(observed=False)
    bd = birth_death(model, "k")

    def log_q(aux, x, d):
        k = x["k"].astype(jnp.float64)
        down = aux.choice[0] != UP  # a death at x: its reverse birth came from k - 1
        return bd.log_q(aux, x, d) + jnp.where(down & (k > 1), jnp.log(k) - jnp.log(k - 1), 0.0)

    res = run_prior(model, data, 14, broken_moves(model, replace(bd, log_q=log_q)))
    stat, dof, p, _ = size_test(res, model)
    assert p < 1e-3, (stat, dof, p)


@pytest.mark.slow
def test_dropping_the_order_statistics_normaliser_fails_prior_recovery(shared_data):
    model, data = mhg_models.coal_mining(observed=False, order_statistics=False)
    res = run_prior(model, data, 15)
    stat, dof, p, _ = size_test(res, mhg_models.coal_mining(observed=False)[0])
    assert p < 1e-3, (stat, dof, p)
