"""Exact enumeration against answers computed by hand and by brute force."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl  # noqa: F401  (enables float64)
from ppl.algorithms.enumeration import (
    SupportTooLarge,
    enumerate_joint,
    marginalize_independent,
    support_sizes,
)

# Sprinkler network: rain -> sprinkler, (rain, sprinkler) -> wet grass; wet grass observed.
P_RAIN = 0.2
P_SPRINKLER_GIVEN_RAIN = {0: 0.4, 1: 0.01}
P_WET_GIVEN = {(0, 0): 0.0, (0, 1): 0.8, (1, 0): 0.9, (1, 1): 0.99}  # key: (sprinkler, rain)


def sprinkler_log_joint(values):
    rain, sprinkler = values["rain"], values["sprinkler"]
    p_rain = jnp.where(rain == 1, P_RAIN, 1 - P_RAIN)
    p_s1 = jnp.where(rain == 1, P_SPRINKLER_GIVEN_RAIN[1], P_SPRINKLER_GIVEN_RAIN[0])
    p_sprinkler = jnp.where(sprinkler == 1, p_s1, 1 - p_s1)
    table = jnp.array([[P_WET_GIVEN[(0, 0)], P_WET_GIVEN[(0, 1)]], [P_WET_GIVEN[(1, 0)], P_WET_GIVEN[(1, 1)]]])
    p_wet = table[sprinkler, rain]  # grass observed wet
    return jnp.log(p_rain) + jnp.log(p_sprinkler) + jnp.log(p_wet)


def test_sprinkler_network_matches_hand_computation():
    # By hand: P(W=1, R=r, S=s) = P(r) P(s|r) P(W=1|s,r).
    joint = {
        (r, s): (P_RAIN if r else 1 - P_RAIN)
        * (P_SPRINKLER_GIVEN_RAIN[r] if s else 1 - P_SPRINKLER_GIVEN_RAIN[r])
        * P_WET_GIVEN[(s, r)]
        for r in (0, 1)
        for s in (0, 1)
    }
    # = 0.8·0.6·0 + 0.8·0.4·0.9 + 0.2·0.99·0.8 + 0.2·0.01·0.99 = 0.288 + 0.1584 + 0.00198
    p_wet = sum(joint.values())
    assert p_wet == pytest.approx(0.44838, abs=1e-15)
    p_rain_given_wet = (joint[1, 0] + joint[1, 1]) / p_wet  # ≈ 0.3577
    p_sprinkler_given_wet = (joint[0, 1] + joint[1, 1]) / p_wet  # ≈ 0.6467

    result = enumerate_joint(sprinkler_log_joint, {"rain": ((), 2), "sprinkler": ((), 2)})
    assert abs(float(result.log_evidence) - math.log(p_wet)) < 1e-10
    np.testing.assert_allclose(result.marginals["rain"], [1 - p_rain_given_wet, p_rain_given_wet], atol=1e-10, rtol=0)
    np.testing.assert_allclose(
        result.marginals["sprinkler"], [1 - p_sprinkler_given_wet, p_sprinkler_given_wet], atol=1e-10, rtol=0
    )
    # Most probable explanation of wet grass: no rain, sprinkler on (0.288 of 0.448).
    assert int(result.mode["rain"]) == 0 and int(result.mode["sprinkler"]) == 1
    # The impossible configuration (no rain, no sprinkler, wet) has log probability -inf.
    assert result.log_joint_values[0] == -jnp.inf


@pytest.fixture(scope="module")
def random_table_problem():
    """z: 3 elements with 3 values, c: one element with 4 values -> 108 configurations."""
    table = np.random.default_rng(1).normal(scale=1.5, size=(3, 3, 3, 4))
    supports = {"z": ((3,), 3), "c": ((), 4)}
    log_joint = lambda v: jnp.asarray(table)[v["z"][0], v["z"][1], v["z"][2], v["c"]]
    # A chunk size that does not divide 108 exercises the padded last chunk.
    result = enumerate_joint(log_joint, supports, chunk_size=10)
    return table, result


def test_vector_variables_match_brute_force(random_table_problem):
    table, result = random_table_problem
    configs = list(itertools.product(range(3), range(3), range(3), range(4)))
    brute = np.array([table[c] for c in configs])
    assert result.size == 108
    # Mixed-radix order is itertools.product order (last element fastest).
    np.testing.assert_allclose(result.log_joint_values, brute, atol=1e-12, rtol=0)
    log_z = np.logaddexp.reduce(brute)
    assert abs(float(result.log_evidence) - log_z) < 1e-10
    posterior = np.exp(table - log_z)
    np.testing.assert_allclose(result.marginals["z"][0], posterior.sum(axis=(1, 2, 3)), atol=1e-10, rtol=0)
    np.testing.assert_allclose(result.marginals["z"][2], posterior.sum(axis=(0, 1, 3)), atol=1e-10, rtol=0)
    np.testing.assert_allclose(result.marginals["c"], posterior.sum(axis=(0, 1, 2)), atol=1e-10, rtol=0)
    best = configs[int(np.argmax(brute))]
    assert tuple(np.asarray(result.mode["z"])) == best[:3] and int(result.mode["c"]) == best[3]


def test_samples_follow_the_exact_posterior(random_table_problem):
    table, result = random_table_problem
    n = 40_000
    draws = result.sample(jax.random.PRNGKey(7), n)
    assert draws["z"].shape == (n, 3) and draws["c"].shape == (n,)
    index = ((np.asarray(draws["z"][:, 0]) * 3 + np.asarray(draws["z"][:, 1])) * 3 + np.asarray(draws["z"][:, 2])) * 4 + np.asarray(draws["c"])
    observed = np.bincount(index, minlength=108)
    expected = n * np.exp(np.asarray(result.log_joint_values) - float(result.log_evidence))
    # Pool configurations with tiny expected counts so the chi-square approximation holds.
    keep = expected >= 5
    if not keep.all():
        observed = np.append(observed[keep], observed[~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
    p_value = stats.chisquare(observed, expected).pvalue
    print(f"chi-square p-value {p_value:.3f} over {len(observed)} cells")
    assert p_value > 1e-3, p_value


def test_support_too_large_reports_sizes():
    supports = {"x": ((30,), 2), "y": ((), 5)}
    assert support_sizes(supports) == {"x": 2**30, "y": 5}
    with pytest.raises(SupportTooLarge) as info:
        enumerate_joint(lambda v: 0.0, supports)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.size == 5 * 2**30 and error.max_size == 10**7
    assert error.sizes == {"x": 1_073_741_824, "y": 5}
    assert str(error) == (
        "exact enumeration needs 5,368,709,120 joint configurations, more than the limit of "
        "10,000,000 (configurations per variable: x: 1,073,741,824, y: 5)"
    )
    # A custom limit applies too.
    with pytest.raises(SupportTooLarge, match="more than the limit of 100"):
        enumerate_joint(lambda v: 0.0, {"x": ((7,), 2)}, max_size=100)


def test_marginalize_independent_matches_enumeration():
    n, k = 4, 3
    table = np.random.default_rng(2).normal(size=(n, k))
    factored = marginalize_independent(jnp.asarray(table))
    brute = enumerate_joint(
        lambda v: jnp.sum(jnp.asarray(table)[jnp.arange(n), v["z"]]), {"z": ((n,), k)}
    )
    assert brute.size == k**n
    assert abs(float(factored.log_marginal) - float(brute.log_evidence)) < 1e-10
    np.testing.assert_allclose(factored.posterior, brute.marginals["z"], atol=1e-10, rtol=0)
    # d/d(table) of the log marginal is the posterior: what NUTS differentiates through.
    gradient = jax.grad(lambda t: marginalize_independent(t).log_marginal)(jnp.asarray(table))
    np.testing.assert_allclose(gradient, factored.posterior, atol=1e-12, rtol=0)
