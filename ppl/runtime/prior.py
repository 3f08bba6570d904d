"""Draws from the prior and data simulated from them: ArviZ's `prior` and `prior_predictive`
groups (`ppl sample --prior`, `Model.sample(..., prior=True)`, `Model.sample_prior`).

The lowering's prior sampler (`LoweredModel.prior_sample(key, data, simulate_data=True)`)
draws every random variable of the program as written, observed data included; the generated
block then runs at each prior draw. Keys come per chain from (seed, chain) alone, as the
posterior's do.
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax
import numpy as np

from ..lower.process import prior_sampler
from ..lower.random import chain_keys
from ..passes.base import _per_draw
from ..passes.vsde import data_fingerprint


def sample_prior(lowered, chains: int, draws: int, seed: int = 0
                 ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(prior, prior_predictive), arrays (chains, draws, *shape): the latents and
    deterministic variables; the simulated observed data and the generated quantities."""
    process = any(v.kind == "process" for v in lowered.source_ir.variables.values())
    cache = "prior_sampler"
    if process:  # the path's grid and constants come from the data's values: one per values
        cache = ("prior_sampler", data_fingerprint(lowered.data_arrays))
    f = lowered._shared.get(cache)
    if f is None:
        draw = lambda k, d: lowered.prior_sample(k, d, simulate_data=True)  # noqa: E731
        if process:
            # the path from the prior SDE on a grid through the read times (ppl/lower/process.py)
            draw = prior_sampler(lowered)

        def one(key, data):
            k_prior, k_gen = jax.random.split(key)
            values = draw(k_prior, data)
            gen = lowered.generated(k_gen, values, data) if lowered.generated_names else {}
            return values, gen
        f = lowered._shared[cache] = jax.jit(jax.vmap(one, in_axes=(0, None)))
    keys = _per_draw(chain_keys(seed, chains, "prior"), draws)
    values, gen = f(keys, lowered.data_arrays)
    shape = (chains, draws)
    reshape = lambda v: np.asarray(v).reshape(shape + v.shape[1:])  # noqa: E731
    observed = set(lowered.observed_names)
    prior = {k: reshape(v) for k, v in values.items() if k not in observed}
    predictive = {k: reshape(v) for k, v in values.items() if k in observed}
    predictive.update({k: reshape(v) for k, v in gen.items()})
    return prior, predictive
