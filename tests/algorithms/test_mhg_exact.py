"""The MHG sampler against exact posteriors of a size variable: the polynomial degree p(d | y)
(conjugate Gaussian, in polynomial_degree.json) and the coal-mining change points p(k | y)
(Green 1995; exact values in ../shared/data/README.md), each within 3 Monte Carlo standard
errors (se from the indicator's effective sample size under the exact value)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import ppl  # noqa: F401  (float64)

from ppl.algorithms import mhg
from ppl.lower.random import rng_key

sys.path.insert(0, str(Path(__file__).parent))
import mhg_models  # noqa: E402
from mhg_stats import z_scores  # noqa: E402

# ../shared/data/README.md, rjmcmc/coal_mining_disasters.json: exact p(k | y), k = 0..12
COAL_P_K = [0.00000, 0.05668, 0.24535, 0.29022, 0.22909, 0.11569, 0.04410, 0.01389, 0.00380,
            0.00093, 0.00021, 0.00004, 0.00001]
COAL_MEAN_K = 3.3161


def run(model, data, seed, draws, warmup, **kw):
    sampler = mhg.MHG(model, mhg.default_moves(model, **kw))
    return sampler.run(rng_key(seed), data, chains=4, draws=draws, warmup=warmup)


def test_polynomial_degree_posterior_is_exact(shared_data):
    model, data = mhg_models.polynomial()
    ref = json.loads((shared_data / "rjmcmc" / "polynomial_degree.json").read_text())["reference"]
    res = run(model, data, 0, draws=10_000, warmup=1_000)
    d = res.sizes["d"]
    p_hat, se, z = z_scores(d, range(0, 9), ref["p_d"])
    assert np.all(np.abs(z) < 3), (np.round(p_hat, 5), np.round(se, 5), np.round(z, 2))
    # the posterior mean of beta given d = 3 (conjugate), within 4 se of the draws' mean
    b = res.arrays["beta"][d == 3][:, :4]
    assert np.all(np.isnan(res.arrays["beta"][d == 3][:, 4:]))  # padding shows as NaN
    m_ref = np.asarray(ref["posterior_mean_beta_given_d"]["3"])
    sd_ref = np.asarray(ref["posterior_sd_beta_at_map_d"])
    n_eff = b.shape[0] / 20  # conservative: NUTS draws of beta are nearly independent
    assert np.all(np.abs(b.mean(0) - m_ref) < 4 * sd_ref / np.sqrt(n_eff)), (b.mean(0), m_ref)
    acc = res.acceptance()
    assert 0 < acc["birth_death[d]"] < 1 and acc["nuts"] > 0.5
    assert res.trouble.sum() == 0


@pytest.mark.slow
def test_coal_mining_change_points_posterior_is_exact(shared_data):
    model, data = mhg_models.coal_mining()
    res = run(model, data, 1, draws=25_000, warmup=2_000)
    k = res.sizes["k"]
    p_ref = COAL_P_K + [0.0] * (31 - len(COAL_P_K))
    p_hat, se, z = z_scores(k, range(0, 31), p_ref)
    assert np.all(np.abs(z[:13]) < 3), (np.round(p_hat[:13], 5), np.round(se[:13], 5), np.round(z[:13], 2))
    assert p_hat[13:].sum() < 1e-3
    tau = k.size / float(__import__("arviz").ess(k.astype(float), method="mean"))
    assert abs(k.mean() - COAL_MEAN_K) < 3 * k.std() * np.sqrt(tau / k.size)
    assert res.trouble.sum() == 0
