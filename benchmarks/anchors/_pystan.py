"""What the pystan 3 anchors share (imported inside the ``stan`` venv): one NUTS run with a
given seed, never answered from httpstan's cache, and the draws by chain."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import httpstan.cache


def sample(posterior, seed: int, chains: int, draws: int, warmup: int
           ) -> tuple[float, float, Callable[[str], list[list[float]]], int]:
    """Run Stan's NUTS (its defaults: diag_e metric, adapt_delta 0.8, max_treedepth 10).

    httpstan caches fits keyed by seed: they are deleted first so a repeated seed is sampled
    again. Returns (sampling seconds, ``time.time()`` when the draws are in hand,
    ``by_chain(element)`` giving an element's draws as [chain][draw] — elements are named as
    pystan names them, ``"theta.2"`` — and the number of divergent transitions).
    """
    posterior = dataclasses.replace(posterior, random_seed=int(seed))
    for cached in httpstan.cache.model_directory(posterior.model_name).glob("*.jsonlines.gz"):
        cached.unlink()
    t = time.perf_counter()
    fit = posterior.sample(num_chains=chains, num_samples=draws, num_warmup=warmup)
    sample_s = time.perf_counter() - t
    t_done = time.time()
    # fit._draws: (sampler params + constrained params, draws, chains)
    names = list(fit.sample_and_sampler_param_names) + list(fit.constrained_param_names)
    arr = fit._draws  # noqa: SLF001 — the only way to get draws by chain in pystan 3

    def by_chain(element: str) -> list[list[float]]:
        return arr[names.index(element)].T.tolist()

    return sample_s, t_done, by_chain, int(arr[names.index("divergent__")].sum())
