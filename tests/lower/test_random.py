"""Host-derived keys: reproducible, distinct, and the same whether split as an array or a tuple."""
import jax
import numpy as np

from ppl.lower.random import WORDS, rng_key, split, split_keys


def _data(k):
    return np.asarray(jax.random.key_data(k))


def test_key_layout_matches_the_generator():
    assert jax.random.key_data(jax.random.key(0, impl="rbg")).shape == (WORDS,)
    assert _data(rng_key(3)).shape == (WORDS,)


def test_seeds_and_splits_are_reproducible_and_distinct():
    assert np.array_equal(_data(rng_key(7)), _data(rng_key(7)))
    assert not np.array_equal(_data(rng_key(7)), _data(rng_key(8)))
    keys = _data(split(rng_key(1), 50))
    assert keys.shape == (50, WORDS)
    assert len({tuple(r) for r in keys}) == 50
    assert not any(np.array_equal(r, _data(rng_key(1))) for r in keys)
    tup = split_keys(rng_key(1), 50)
    assert all(np.array_equal(_data(a), b) for a, b in zip(tup, keys))


def test_draws_from_split_keys_are_independent_normals():
    z = np.asarray(jax.vmap(lambda k: jax.random.normal(k))(split(rng_key(0), 4000)))
    assert abs(z.mean()) < 4 / np.sqrt(4000) and abs(z.std() - 1) < 0.05
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(4000)
