"""Galaxy (Richardson & Green 1997): the MHG sampler's p(k | y) against per-k evidence from
ppl's tempered SMC (p(k | y) ∝ p(k)·Z_k, benchmarks/galaxy_evidence.py, numbers stored in
benchmarks/galaxy_evidence.json), and the tempered SMC itself against the exact anchor
log p(y | k = 1) = −247.542698 (../shared/data/README.md). RG's split/merge, as an Involution,
must raise the ESS of k over birth/death alone."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import ppl  # noqa: F401  (float64)

from ppl.algorithms import mhg
from ppl.algorithms.involutions import normal_mixture_split_merge
from ppl.lower.random import rng_key

HERE = Path(__file__).parent
BENCH = HERE.parents[1] / "benchmarks"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(BENCH))
import mhg_models  # noqa: E402

ANCHOR_K1 = -247.542698


def _evidence():
    import galaxy_evidence  # noqa: PLC0415
    return galaxy_evidence


@pytest.mark.slow
def test_tempered_smc_pass_matches_the_exact_evidence_at_k1(shared_data):
    """ppl.load(galaxy_fixed_k.ppl).sample(method="smc") at K = 1."""
    ge = _evidence()
    log_z, _, _, _ = ge.run_k(1, runs=4, particles=2000, mcmc_steps=10, target_ess=0.5, seed=1)
    est = ge.log_mean_exp(log_z)
    se = np.std(np.exp(log_z - est), ddof=1) / math.sqrt(log_z.size)
    assert abs(est - ANCHOR_K1) < 4 * se + 0.02, (est, se, log_z)


@pytest.mark.slow
def test_tempered_smc_on_the_ordered_model_matches_the_exact_evidence_at_k1(shared_data):
    """The route the reference uses (ordered means, ppl.algorithms.tempered_smc) at K = 1."""
    ge = _evidence()
    log_z, _, _, _ = ge.run_k_algorithm(1, runs=4, particles=2000, mcmc_steps=10, target_ess=0.9, seed=2)
    est = ge.log_mean_exp(log_z)
    se = np.std(np.exp(log_z - est), ddof=1) / math.sqrt(log_z.size)
    assert abs(est - ANCHOR_K1) < 4 * se + 0.02, (est, se, log_z)


def reference():
    """(k values, p(k | y), its covariance) from the stored tempered-SMC runs."""
    ge = _evidence()
    store = json.loads((BENCH / "galaxy_evidence.json").read_text())
    table = ge.evidence_table(store, {"via": "algorithm"})
    if len(table) < 5:
        pytest.skip("benchmarks/galaxy_evidence.json holds too few K (run benchmarks/galaxy_evidence.py)")
    ks, p, se, cov = ge.posterior_k(table)
    return ks, p, se, cov


def galaxy_sampler(split_merge: bool):
    model, data = mhg_models.galaxy()
    moves = mhg.default_moves(model)
    if split_merge:
        moves.append((mhg.InvolutiveMove(model, normal_mixture_split_merge(
            model, "k", "w", "mu", precisions="tau")), 1.0))
    return mhg.MHG(model, moves), data


@pytest.mark.slow
def test_galaxy_posterior_of_k_agrees_with_tempered_smc_evidence(shared_data):
    ks, p_ref, se_ref, _ = reference()
    sampler, data = galaxy_sampler(split_merge=True)
    res = sampler.run(rng_key(3), data, chains=4, draws=40_000, warmup=5_000)
    k = res.sizes["k"]
    # the reference covers K = ks[0]..ks[-1]; the chain's mass beyond it must be negligible
    assert np.isin(k, ks).mean() > 0.99
    from mhg_stats import z_scores  # noqa: PLC0415
    p_hat, se_hat, _ = z_scores(k, ks, p_ref)
    z = (p_hat - p_ref) / np.sqrt(se_hat ** 2 + se_ref ** 2)
    assert np.all(np.abs(z) < 3), dict(zip(ks.tolist(), np.round(z, 2)))
    assert res.trouble.sum() == 0


@pytest.mark.slow
def test_split_merge_raises_the_ess_of_k(shared_data):
    """Same iterations with and without RG's split/merge (timing is the benchmark's business:
    benchmarks/run_galaxy_rj.py reports ESS/s)."""
    import arviz as az  # noqa: PLC0415
    ess = {}
    for sm in (False, True):
        sampler, data = galaxy_sampler(sm)
        res = sampler.run(rng_key(4), data, chains=4, draws=20_000, warmup=5_000)
        ess[sm] = float(az.ess(res.sizes["k"].astype(float)))
        if sm:
            acc = res.acceptance()["split_merge[k]"]
            assert 0.01 < acc < 0.9, acc
    assert ess[True] > 1.5 * ess[False], ess
