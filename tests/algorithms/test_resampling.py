"""Resampling schemes: offspring counts have mean N w_i (exact law checks per scheme)."""
import numpy as np
import pytest

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp

from ppl.algorithms import resampling

WEIGHTS = np.array([0.05, 0.3, 0.0, 0.125, 0.4, 0.125])
N = WEIGHTS.shape[0]
NUM_DRAWS = 20000


@pytest.fixture(scope="module")
def all_counts():
    # One compiled program for all schemes: compilation dominates the cost here.
    def one(k):
        w = jnp.asarray(WEIGHTS)
        return {
            name: jnp.bincount(fn(k, w, N), length=N) for name, fn in resampling.SCHEMES.items()
        }

    draws = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), NUM_DRAWS))
    return {name: np.asarray(c) for name, c in draws.items()}


@pytest.fixture(params=sorted(resampling.SCHEMES))
def counts(request, all_counts):
    return request.param, all_counts[request.param]


def test_offspring_mean_is_n_times_weight(counts):
    name, c = counts
    assert np.all(c.sum(1) == N)
    expected = N * WEIGHTS
    # Multinomial variance bounds the variance of every scheme's counts.
    se = np.sqrt(N * WEIGHTS * (1 - WEIGHTS) / NUM_DRAWS)
    err = c.mean(0) - expected
    assert np.all(np.abs(err) <= 4.5 * se + 1e-12), (name, err, se)
    assert np.all(c[:, WEIGHTS == 0] == 0)


def test_scheme_specific_count_laws(counts):
    name, c = counts
    nw = N * WEIGHTS
    if name in ("systematic", "residual"):
        # Both give at least floor(N w_i) copies of i; systematic at most ceil(N w_i).
        assert np.all(c >= np.floor(nw))
    if name == "systematic":
        assert np.all(c <= np.ceil(nw))
    if name == "multinomial":
        # Full law: counts are Multinomial(N, w); check the variance too.
        var_se = np.sqrt(2.0 / NUM_DRAWS) * nw * (1 - WEIGHTS) + 1e-12
        assert np.all(np.abs(c.var(0) - nw * (1 - WEIGHTS)) < 5 * var_se)
    if name == "stratified":
        assert np.all(c.var(0) <= nw * (1 - WEIGHTS) + 0.05)


def test_normalize_handles_nan_and_all_minus_inf():
    norm = jax.jit(resampling.normalize_log_weights)
    lw, lse = norm(jnp.array([0.0, jnp.nan, -jnp.inf, np.log(3.0)]))
    np.testing.assert_allclose(np.exp(lw), [0.25, 0.0, 0.0, 0.75], atol=1e-12)
    np.testing.assert_allclose(lse, np.log(4.0))
    lw, lse = norm(jnp.array([-jnp.inf, jnp.nan]))
    assert lse == -np.inf and np.allclose(np.exp(lw), 0.5)
    np.testing.assert_allclose(resampling.ess(jnp.log(jnp.array([0.5, 0.5, 0.0]))), 2.0)


def test_unknown_scheme_message():
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        resampling.get("bogus")


def test_systematic_by_counting_is_the_search():
    # the O(N) counting form gives the ancestors of the inverse-CDF search, on weights with
    # zeros, ties and a dominant particle, for draws to as many and to other numbers of slots
    rng = np.random.default_rng(0)
    cases = [rng.exponential(size=50), rng.exponential(size=50) ** 6,
             np.where(rng.random(50) < 0.5, 0.0, 1.0), np.r_[np.zeros(49), 1.0]]
    f = jax.jit(lambda k, w, m: (resampling.systematic(k, w, m),
                                 resampling.systematic_search(k, w, m)), static_argnums=2)
    for w in cases:
        w = jnp.asarray(w / w.sum())
        for m in (50, 17, 64):
            for k in jax.random.split(jax.random.key(1), 20):
                a, b = f(k, w, m)
                assert np.array_equal(np.asarray(a), np.asarray(b)), (m, np.asarray(a), np.asarray(b))
