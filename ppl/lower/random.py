"""Random keys for compiled programs.

XLA on CPU compiles the threefry generator slowly (several seconds for a NUTS kernel that
draws in every tree doubling); the `rbg` generator compiles about five times faster with
statistically sound streams. Keys are typed, so the choice stays local to ppl and does not
change the user's global JAX configuration.

Keys made outside compiled code (from the seed; one per chain, per draw …) are derived on the
host with numpy's `SeedSequence` hashing and wrapped, rather than made by `jax.random.key` and
`jax.random.split`: done eagerly on `rbg` keys those compile small threefry kernels, 0.1–0.7 s
each, on every cold start.
"""
from typing import Tuple

import jax
import numpy as np

IMPL = "rbg"
WORDS = 4  # uint32 words of key data per rbg key


def _wrap(words: np.ndarray):
    return jax.random.wrap_key_data(np.asarray(words, dtype=np.uint32), impl=IMPL)


def _state(entropy, num: int) -> np.ndarray:
    return np.random.SeedSequence(entropy).generate_state(num * WORDS, dtype=np.uint32)


def rng_key(seed: int):
    """The key of a run's seed (any integer)."""
    return _wrap(_state(int(seed) % 2**64, 1))


def _entropy(key):
    return np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel().tolist()


def split(key, num: int):
    """`num` independent keys from the single key `key`, as one key array of shape (num,)."""
    return _wrap(_state(_entropy(key), num).reshape(num, WORDS))


def split_keys(key, num: int) -> Tuple:
    """The same keys as `split(key, num)`, as a tuple of single keys (indexing a key array
    outside compiled code compiles a slice)."""
    rows = _state(_entropy(key), num).reshape(num, WORDS)
    return tuple(_wrap(r) for r in rows)


_STREAMS = {"init": 1, "run": 2, "generated": 3, "discrete": 4, "evidence": 5, "smoothing": 6,
            "prior": 7, "replicate": 8}


def chain_keys(seed: int, chains: int, stream: str):
    """One key per chain for one use (`stream`), each from (seed, stream, chain index) alone:
    chain c's draws do not depend on how many chains run beside it."""
    s = _STREAMS[stream]
    rows = np.stack([_state([int(seed) % 2**64, s, c], 1) for c in range(chains)])
    return _wrap(rows.reshape(chains, WORDS))
