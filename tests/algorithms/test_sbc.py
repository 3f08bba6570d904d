"""Simulation-based calibration: exact samplers pass, wrong ones are flagged."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (enables float64)
from ppl.algorithms import sbc

PRIOR_SD, NOISE_SD, NUM_OBS = 2.0, 1.0, 5
POSTERIOR_SD = 1.0 / math.sqrt(1 / PRIOR_SD**2 + NUM_OBS / NOISE_SD**2)
NUM_DRAWS = 99  # ranks 0..99: 100 values, 20 bins of 5 values
REPLICATES = 1000


def simulate(key):
    """theta ~ N(0, 2); y[i] ~ N(theta, 1), i = 1..5 (one normal call: each random call site
    is a threefry kernel that XLA compiles separately, the bulk of this file's time)."""
    standard_normals = jax.random.normal(key, (1 + NUM_OBS,))
    theta = PRIOR_SD * standard_normals[0]
    return {"theta": theta}, theta + NOISE_SD * standard_normals[1:]


def exact_posterior_draws(key, y):
    """Exact conjugate posterior draws of theta given y."""
    mean = POSTERIOR_SD**2 * jnp.sum(y) / NOISE_SD**2
    return {"theta": mean + POSTERIOR_SD * jax.random.normal(key, (NUM_DRAWS,))}


# One compiled run checks three samplers at once (compiling is most of this file's time):
# the same simulated truth is ranked among exact draws and among two deliberately wrong ones.
WRONG_SAMPLERS = {"theta_narrow": (0.7, 0.0), "theta_shifted": (1.0, 0.5)}  # (sd factor, shift in sds)


def simulate_three(key):
    theta, y = simulate(key)
    return {"theta": theta["theta"], **{name: theta["theta"] for name in WRONG_SAMPLERS}}, y


def infer_three(key, y):
    posterior_mean = POSTERIOR_SD**2 * jnp.sum(y) / NOISE_SD**2
    standard_normals = jax.random.normal(key, (NUM_DRAWS,))
    out = {"theta": posterior_mean + POSTERIOR_SD * standard_normals}
    for name, (sd_factor, shift) in WRONG_SAMPLERS.items():
        out[name] = posterior_mean + POSTERIOR_SD * (sd_factor * standard_normals + shift)
    return out


@pytest.fixture(scope="module")
def sbc_run():
    return sbc.run_sbc(jax.random.PRNGKey(0), simulate_three, infer_three, REPLICATES, vmappable=True)


def test_ranks_count_draws_below_and_split_ties():
    prior = jnp.array([0.5, 2.0])
    posterior = jnp.array([[0.1, 0.7, 0.3], [3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(sbc.ranks(prior, posterior), [2, 0])
    # Discrete quantity whose posterior equals the truth: every rank 0..S is equally likely.
    num_replicates, num_draws = 4000, 9
    prior = jnp.ones((num_replicates, 2), dtype=jnp.int32)
    posterior = jnp.ones((num_replicates, num_draws, 2), dtype=jnp.int32)
    assert int(sbc.ranks(prior, posterior).max()) == 0
    tied = sbc.ranks(prior, posterior, jax.random.PRNGKey(3))
    assert tied.shape == (num_replicates, 2) and int(tied.min()) == 0 and int(tied.max()) == num_draws
    test = sbc.uniformity_test(tied, num_draws, bins=10)
    assert np.all(np.asarray(test.p_value) > 1e-3), test.p_value


def test_chi_square_tail_matches_scipy():
    x = np.array([0.5, 3.0, 19.0, 45.0, 80.0])
    for df in (1, 4, 19):
        np.testing.assert_allclose(sbc.chi2_sf(x, df), stats.chi2.sf(x, df), rtol=1e-10, atol=1e-300)


def test_thinning_helpers():
    draws = jnp.arange(2 * 10).reshape(2, 10)
    np.testing.assert_array_equal(sbc.thin(draws, 3), [[0, 3, 6, 9], [10, 13, 16, 19]])
    np.testing.assert_array_equal(sbc.thin_to(draws, 5)[0], [0, 2, 4, 6, 8])
    assert sbc.thinning_factor(1000, 240.0) == 5 and sbc.thinning_factor(100, 500.0) == 1


def test_exact_sampler_gives_uniform_ranks(sbc_run):
    ranks = sbc_run.ranks["theta"]
    assert ranks.shape == (REPLICATES,) and sbc_run.num_draws == NUM_DRAWS
    test = sbc_run.tests["theta"]
    assert test.bins == 20 and float(test.expected.sum()) == REPLICATES
    ks = sbc.ks_uniformity_test(ranks, NUM_DRAWS)
    print(f"exact sampler: chi2 {float(test.statistic):.1f} p {float(test.p_value):.3f}; KS p {float(ks.p_value):.3f}")
    assert float(test.p_value) > 1e-3
    assert float(ks.p_value) > 1e-3
    # The rank mean (L/2 in expectation) within 4 standard errors of a discrete uniform.
    standard_error = math.sqrt(((NUM_DRAWS + 1) ** 2 - 1) / 12 / REPLICATES)
    assert abs(float(ranks.mean()) - NUM_DRAWS / 2) < 4 * standard_error


@pytest.mark.parametrize("name", list(WRONG_SAMPLERS))
def test_wrong_sampler_is_flagged(sbc_run, name):
    test = sbc_run.tests[name]
    ks = sbc.ks_uniformity_test(sbc_run.ranks[name], NUM_DRAWS)
    print(f"{name} {WRONG_SAMPLERS[name]}: chi2 {float(test.statistic):.1f} p {float(test.p_value):.2e}; KS p {float(ks.p_value):.2e}")
    assert float(test.p_value) < 1e-3
    if name == "theta_shifted":
        assert float(ks.p_value) < 1e-3  # a shift moves the ECDF; KS is weak on a ∪ shape


def test_loop_path_agrees_with_vmapped_run(sbc_run):
    # Replicate i is seeded by fold_in(key, i) on both paths, so the first 12 replicates of the
    # vmapped module run are reproduced one at a time by the loop.
    looped = sbc.run_sbc(jax.random.PRNGKey(0), jax.jit(simulate_three), jax.jit(infer_three), 12)
    for name in sbc_run.ranks:
        np.testing.assert_allclose(looped.prior_draws[name], sbc_run.prior_draws[name][:12], rtol=1e-12)
        np.testing.assert_array_equal(looped.ranks[name], sbc_run.ranks[name][:12])


def test_rank_histogram_png_is_written_atomically(sbc_run, tmp_path):
    ranks = {"theta": sbc_run.ranks["theta"], "beta": np.stack([sbc_run.ranks["theta"]] * 3, axis=1)}
    path = sbc.plot_rank_histograms(ranks, NUM_DRAWS, tmp_path / "plots" / "ranks.png", title="SBC")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 100
    assert [p.name for p in path.parent.iterdir()] == ["ranks.png"]  # no temporary left behind
