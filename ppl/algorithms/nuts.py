"""NUTS chains: NumPyro's functional kernel inside `lax.scan`, chains `vmap`ped.

Warm-up adapts the step size (dual averaging) and a diagonal mass matrix (windowed, Stan's
schedule), all inside NumPyro's `sample_kernel`. The scan is cut into chunks so a caller can
report progress between chunks; each chunk is one compiled call.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc


class NutsTrace(NamedTuple):
    z: jax.Array  # (chains, draws, dim)
    potential_energy: jax.Array
    diverging: jax.Array
    num_steps: jax.Array
    accept_prob: jax.Array
    step_size: jax.Array
    tree_depth: jax.Array


class NutsSampler:
    """Compiled once per (potential, chains, warmup, draws); call `run` with keys and data."""

    def __init__(self, potential: Callable, num_warmup: int, num_samples: int,
                 target_accept_prob: float = 0.8, max_tree_depth: int = 10,
                 dense_mass: bool = False, chunk: Optional[int] = None):
        self.num_warmup, self.num_samples = num_warmup, num_samples
        total = num_warmup + num_samples
        self.chunk = chunk or total
        init_kernel, sample_kernel = hmc(potential_fn_gen=lambda data: (lambda z: potential(z, data)),
                                         algo="NUTS")

        def init(key, z0, data):
            return init_kernel(z0, num_warmup, target_accept_prob=target_accept_prob,
                               max_tree_depth=max_tree_depth, dense_mass=dense_mass,
                               model_kwargs={"data": data}, rng_key=key)

        def advance(state, data, length):
            def body(s, _):
                s = sample_kernel(s, model_kwargs={"data": data})
                out = (s.z, s.potential_energy, s.diverging, s.num_steps, s.accept_prob,
                       s.adapt_state.step_size)
                return s, out
            return jax.lax.scan(body, state, None, length=length)

        def start(key, keys, data, dim, tries):
            # Initial points (Stan's rule: uniform(-2, 2) on the unconstrained scale, the first
            # with finite potential and gradient per chain) and kernel init in one compilation.
            chains = keys.shape[0]
            cand = jax.random.uniform(key, (chains, tries, dim), minval=-2.0, maxval=2.0)
            pe, g = jax.vmap(jax.value_and_grad(potential), in_axes=(0, None))(
                cand.reshape(-1, dim), data)
            ok = (jnp.isfinite(pe) & jnp.all(jnp.isfinite(g), axis=-1)).reshape(chains, tries)
            z0 = cand[jnp.arange(chains), jnp.argmax(ok, axis=1)]
            state = jax.vmap(init, in_axes=(0, 0, None))(keys, z0, data)
            return state, jnp.all(jnp.any(ok, axis=1))

        self._start = jax.jit(start, static_argnums=(3, 4))
        self._advance = jax.jit(jax.vmap(advance, in_axes=(0, None, None)), static_argnums=2)

    def start(self, key, keys, data, dim, tries=20):
        """(initial state, whether every chain found a finite starting point)."""
        return self._start(key, keys, data, dim, tries)

    def run(self, state, data, progress: Optional[Callable[[int, int], None]] = None) -> NutsTrace:
        total = self.num_warmup + self.num_samples
        outs, done = [], 0
        while done < total:
            n = min(self.chunk, total - done)
            state, out = self._advance(state, data, n)
            outs.append(out)
            done += n
            if progress is not None:
                jax.block_until_ready(out[0])
                progress(done, total)
        z, pe, div, steps, acc, eps = (jnp.concatenate(parts, axis=1) for parts in zip(*outs))
        w = self.num_warmup
        depth = jnp.floor(jnp.log2(jnp.maximum(steps, 1))).astype(jnp.int32) + 1
        return NutsTrace(z[:, w:], pe[:, w:], div[:, w:], steps[:, w:], acc[:, w:], eps[:, w:],
                         depth[:, w:]), NutsTrace(z[:, :w], pe[:, :w], div[:, :w], steps[:, :w],
                                                  acc[:, :w], eps[:, :w], depth[:, :w])
