"""NUTS chains: NumPyro's functional kernel inside `lax.scan`, chains spread over devices.

Warm-up adapts the step size (dual averaging) and a diagonal mass matrix (windowed, Stan's
schedule), all inside NumPyro's `sample_kernel`. The scan is cut into chunks so a caller can
report progress between chunks; each chunk is one compiled call.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc

from ..config import cores
from .devices import local_devices, on_each_device, shape_on


class NutsTrace(NamedTuple):
    z: jax.Array  # (chains, draws, dim)
    potential_energy: jax.Array
    diverging: jax.Array
    num_steps: jax.Array
    accept_prob: jax.Array
    step_size: jax.Array
    tree_depth: jax.Array
    energy: jax.Array  # Hamiltonian at the end of each transition (az.bfmi, az.plot_energy)


class NutsSampler:
    """Compiled once per (potential, chains, warmup, draws); call `run` with keys and data."""

    def __init__(self, potential: Callable, num_warmup: int, num_samples: int,
                 target_accept_prob: float = 0.8, max_tree_depth: int = 10,
                 dense_mass: bool = False, chunk: Optional[int] = None, num_chains: int = 1,
                 devices: Optional[int] = None):
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
                       s.adapt_state.step_size, s.energy)
                return s, out
            return jax.lax.scan(body, state, None, length=length)

        def start(init_keys, keys, data, dim, tries):
            # Initial points (Stan's rule: uniform(-2, 2) on the unconstrained scale, the first
            # with finite potential and gradient per chain, each chain from its own key) and
            # kernel init in one compilation.
            chains = keys.shape[0]
            # chain by chain (lax.map), not vmapped: vmapped over a batch of rbg keys, jax.random
            # draws bits that depend on the key's position in the batch (measured, JAX 0.10.2:
            # the second of 4 keys draws 0.40 vmapped, 0.53 alone), so a chain's start would
            # depend on the chains before it (those of another process, say)
            cand = jax.lax.map(
                lambda k: jax.random.uniform(k, (tries, dim), minval=-2.0, maxval=2.0), init_keys)
            pe, g = jax.vmap(jax.value_and_grad(potential), in_axes=(0, None))(
                cand.reshape(-1, dim), data)
            ok = (jnp.isfinite(pe) & jnp.all(jnp.isfinite(g), axis=-1)).reshape(chains, tries)
            z0 = cand[jnp.arange(chains), jnp.argmax(ok, axis=1)]
            state = jax.lax.map(lambda a: init(a[0], a[1], data), (keys, z0))
            return state, jnp.all(jnp.any(ok, axis=1)), cand

        self._start_fn = start
        self._start = jax.jit(start, static_argnums=(3, 4))
        # Chain c's draws must depend on (seed, c) alone: not on how many chains run beside it,
        # on the device layout nor on the processes. Chains run in `vmap` groups of LANES: XLA's
        # batched program rounds differently in each lane (vectorised math), but a lane's values
        # do not depend on what the other lanes hold, so chain c always sits in lane c mod
        # LANES. Every group runs the same single-device program, compiled for each device
        # (`on_each_device`); group g goes to device g mod D and the groups of a device run one
        # after another, devices in parallel (JAX dispatches asynchronously). Not a `pmap` of
        # the groups: a pmap (JAX 0.10.2: jit of a shard_map) over 1 device and one over 2 or
        # more compile to programs that round differently (measured, eight schools, 4 chains:
        # each chain's draws differ between 1 device and 2 or 4, while 2 and 4 agree, as do
        # a pmap, a jit and a lax.map over 1 or 2 groups on one device), so the draws changed
        # with the device count, and between a one-device process and one of a multi-host run.
        self.lanes = _lanes_for(num_chains)
        self.devices = _devices_for(devices)
        self._group = jax.jit(jax.vmap(advance, in_axes=(0, None, None)), static_argnums=2)
        self._compiled = {}  # chunk length -> one compiled group program per device

    def _executables(self, n, state, data):
        """The group program for chunks of n steps, on every device (compiled once per device)."""
        exes = self._compiled.get(n)
        if exes is None:
            home = self.devices[0]

            def compile_for(dev):
                put = shape_on(dev)
                return self._group.lower(jax.tree.map(put, state), jax.tree.map(put, data),
                                         n).compile()

            exes = self._compiled[n] = on_each_device(compile_for(home), home, self.devices,
                                                      compile_for)
        return exes

    def precompile(self, key, keys, data, dim, tries=20):
        """Compile the sampling kernel ahead of time (ppl runs this in a background thread, so
        the kernel compiles while validation and initialisation compile on the main thread)."""
        state = jax.eval_shape(lambda k, ks, d: self._start_fn(k, ks, d, dim, tries)[0], key, keys, data)
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((LANES,) + x.shape[1:], x.dtype), state)
        self._executables(self.chunk, state, data)

    def precompile_start(self, key, keys, data, dim, tries=20):
        key, keys = _at_least_two(key), _at_least_two(keys)
        self._start_compiled = (dim, tries, self._start.lower(key, keys, data, dim, tries).compile())

    _start_compiled = None

    def start(self, key, keys, data, dim, tries=20):
        """(initial state, whether every chain found a finite starting point, the candidate
        points tried (chains, tries, dim))."""
        chains = keys.shape[0]
        key, keys = _at_least_two(key), _at_least_two(keys)
        if self._start_compiled is not None and self._start_compiled[:2] == (dim, tries):
            out = self._start_compiled[2](key, keys, data)
        else:
            out = self._start(key, keys, data, dim, tries)
        state, ok, cand = out
        return jax.tree.map(lambda x: x[:chains], state), ok, cand[:chains]

    def run(self, state, data, progress: Optional[Callable[..., None]] = None) -> NutsTrace:
        """(draws, warm-up), each a NutsTrace (chains, iterations, …). `progress(done, total,
        phase=, divergences=)` is called after every chunk: the phase ("warm-up" or
        "sampling") and, once sampling, each chain's divergent transitions so far."""
        total = self.num_warmup + self.num_samples
        outs, done = [], 0
        divergent = None
        lanes, devs = self.lanes, self.devices
        chains = int(lanes.max()) + 1
        # each group's state on its device: one gather for all groups, then transfers
        groups = _split_groups(state, lanes)
        where = [devs[g % len(devs)] for g in range(len(groups))]
        states = [jax.device_put(s, d) for s, d in zip(groups, where)]
        data_on = {d: jax.device_put(data, d) for d in set(where)}
        while done < total:
            n = min(self.chunk, total - done)
            exes = self._executables(n, states[0], data)
            parts = []
            for g, dev in enumerate(where):  # dispatched without waiting: devices in parallel
                states[g], out = exes[devs.index(dev)](states[g], data_on[dev])
                parts.append(out)
            # host-side from here: slicing device arrays op by op would cost more than sampling
            parts = jax.device_get(parts)
            out = tuple(np.concatenate([p[i] for p in parts])[:chains] for i in range(len(parts[0])))
            outs.append(out)
            kept = max(self.num_warmup - done, 0)  # the chunk's first draw after warm-up
            if kept < n:
                div = np.asarray(out[2])[:, kept:].sum(axis=1)
                divergent = div if divergent is None else divergent + div
            done += n
            if progress is not None:
                sampling = done > self.num_warmup
                progress(done, total, phase="sampling" if sampling else "warm-up",
                         divergences=None if divergent is None else divergent.tolist())
        z, pe, div, steps, acc, eps, energy = (np.concatenate(parts, axis=1) for parts in zip(*outs))
        depth = np.floor(np.log2(np.maximum(steps, 1))).astype(np.int32) + 1
        w = self.num_warmup
        fields = (z, pe, div, steps, acc, eps, depth, energy)
        return NutsTrace(*(f[:, w:] for f in fields)), NutsTrace(*(f[:, :w] for f in fields))


def _at_least_two(keys):
    # a batch of one compiles to unbatched code that rounds differently from any larger batch
    return jnp.concatenate([keys, keys]) if keys.shape[0] == 1 else keys


LANES = 2  # cheap models run 2 chains vmapped in about the time of one


def _lanes_for(num_chains: int) -> np.ndarray:
    """Chain index per (group, lane): chain c in lane c mod LANES of group c // LANES; a last
    group short of chains repeats one in its empty lanes (dropped after)."""
    lanes = np.arange(-(-num_chains // LANES) * LANES)
    lanes = np.where(lanes < num_chains, lanes, lanes % LANES if num_chains >= LANES else 0)
    return lanes.reshape(-1, LANES).astype(np.int32)


def _devices_for(devices: Optional[int]) -> list:
    """The devices the groups go to: `devices` of this process's, by default one per core."""
    if devices is None:
        devices = max(1, min(jax.local_device_count(), cores()))
    return local_devices(devices)


def _split_groups(state, lanes):
    """Each group's state (leaves (LANES, ...)) from the chains' state (leaves (chains, ...)),
    in one compiled call."""
    return _split(state, tuple(map(tuple, lanes.tolist())))


@partial(jax.jit, static_argnums=1)
def _split(state, lanes):
    return [jax.tree.map(lambda x, g=g: x[np.asarray(g)], state) for g in lanes]
