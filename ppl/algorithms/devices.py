"""Independent chains (and the particles of each) laid out over devices and processes.

JAX does the distribution (`jax.shard_map` over a `Mesh` of this process's devices,
`jax.distributed` across processes); this module only decides the layout:

* **Processes.** With `jax.process_count()` = P > 1, process p runs chains
  p·⌈C/P⌉ … (p+1)·⌈C/P⌉ − 1 and `gather_chains` collects every process's chains (JAX's
  collectives over the distributed runtime) so that each process ends with all C.
* **Devices.** A process's chains are spread over a mesh with axes ("chains", "particles"):
  one chain per device where there are devices enough; the chains of one device run one
  after another (`lax.map`), never batched together. Devices left over once every chain has
  its own can split each chain's particles (filters; the weights stay global).

Reproducibility: a chain's stream comes from (seed, chain) alone (`ppl.lower.random.
chain_keys`) and a chain's program does not depend on the chains beside it (no batching
across chains), so **chain c's draws are bitwise the same whatever the number of devices
or processes** while its particles are not split. Splitting a filter's particles over
devices keeps its noise and resampling draws (they follow the particles' global indices:
counter-based normals, per-particle threefry keys, ancestors drawn from the gathered weights)
but sums weights in another order: equal to rounding, the same in distribution. A model's own
batched sampler (`transition_sample_batch`, no noise split) draws from a key per shard: the
same law, other draws.

Why no `vmap` over chains anywhere: XLA rounds a batched program differently per lane, and
JAX's `rbg` keys (ppl's default, ppl/lower/random.py) vmapped as a batch draw bits that depend
on each key's position in the batch.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src import distributed
from jax.experimental import multihost_utils
from jax.sharding import Mesh, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

__all__ = ["local_devices", "Layout", "layout", "process_share", "gather_chains", "map_chains",
           "on_each_device", "shape_on", "chains_on_devices"]

# A filter's particles are split over devices only from this many per device: below it the
# collectives of every step (a rendezvous of the device threads) cost more than the work
MIN_PARTICLES_PER_DEVICE = 1 << 15


def local_devices(devices: Optional[int] = None) -> list:
    """The first `devices` of this process's devices (all by default)."""
    avail = jax.local_devices()
    if devices is None:
        return list(avail)
    n = int(devices)
    if n < 1:
        raise ValueError(f"devices must be at least 1, not {n}")
    if n > len(avail):
        raise ValueError(f"devices={n}, but this process has {len(avail)} "
                         f"{avail[0].platform.upper()} device(s); on CPU, XLA_FLAGS="
                         f"--xla_force_host_platform_device_count=N before JAX starts gives N")
    return list(avail[:n])


class Layout:
    """`chains` chains on `mesh` (axes "chains" × "particles"): `per_device` chains per row of
    devices, run one after another; padded to `padded` chains (the extra ones repeat the last
    chain's key and are dropped)."""

    def __init__(self, chains: int, devices: Sequence, particle_split: int = 1):
        self.chains = int(chains)
        self.particle_split = int(particle_split)
        rows = max(1, len(devices) // self.particle_split)
        rows = min(rows, self.chains)
        self.per_device = -(-self.chains // rows)
        self.rows = -(-self.chains // self.per_device)  # no row of padding only
        self.padded = self.rows * self.per_device
        grid = np.array(devices[: self.rows * self.particle_split]).reshape(self.rows,
                                                                           self.particle_split)
        self.mesh = Mesh(grid, ("chains", "particles"))

    @property
    def axis_name(self) -> Optional[str]:
        """The particle axis for a filter's `axis_name`, or None when particles are not split."""
        return "particles" if self.particle_split > 1 else None

    def describe(self) -> str:
        d = self.rows * self.particle_split
        s = f"{self.chains} chain(s) on {d} device(s)"
        if self.particle_split > 1:
            s += f", each chain's particles split over {self.particle_split}"
        return s


def layout(chains: int, devices: Optional[int] = None, particles: Optional[int] = None,
           shard: str = "auto") -> Layout:
    """The layout of `chains` chains on this process's devices (`devices` of them, default all).

    `particles` (filters): N, whose particles may be split over devices. `shard`: "auto"
    (chains first; leftover devices split the particles of large filters, at least
    MIN_PARTICLES_PER_DEVICE per device), "chains" (never split particles) or "particles"
    (every device on each filter's particles, the chains one after another)."""
    if shard not in ("auto", "chains", "particles"):
        raise ValueError(f'shard must be "auto", "chains" or "particles", not {shard!r}')
    devs = local_devices(devices)
    split = 1
    if particles is not None and shard != "chains":
        room = len(devs) if shard == "particles" else len(devs) // min(len(devs), chains)
        least = 1 if shard == "particles" else MIN_PARTICLES_PER_DEVICE
        split = max((k for k in range(1, room + 1) if particles % k == 0 and
                     (k == 1 or particles // k >= least)), default=1)
    return Layout(chains, devs, split)


def map_chains(fn: Callable, keys, shared, lay: Layout, out_specs=P("chains")):
    """`fn(key, shared)` for each chain's key (`keys` (C, ...)), laid out by `lay`; outputs
    stacked over chains. `fn` may use the particle axis `lay.axis_name` (collectives over the
    devices splitting a chain's particles). `out_specs`: a pytree prefix of the outputs' specs
    (the chain axis first; leaves indexed by particle say where their particle axis is; the
    default is replicated over "particles")."""
    c = keys.shape[0]
    if c != lay.chains:
        raise ValueError(f"{c} keys for a layout of {lay.chains} chains")
    if lay.padded > c:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], lay.padded - c, 0)])

    def per_device(ks, sh):
        return lax.map(lambda k: fn(k, sh), ks)

    out = jax.shard_map(per_device, mesh=lay.mesh, in_specs=(P("chains"), P()),
                        out_specs=out_specs, check_vma=False)(keys, shared)
    if lay.padded > c:
        out = jax.tree_util.tree_map(lambda a: a[:c], out)
    return out


# ----------------------------------------------------------------------------- processes
def process_share(chains: int, multiple: int = 1):
    """(first chain, number of chains, chains per process) this process runs: a whole number
    of `multiple`s of chains per process (NUTS's vmap groups) but the last."""
    p, count = jax.process_index(), jax.process_count()
    per = -(-chains // count)
    per = -(-per // multiple) * multiple
    if count > 1 and (count - 1) * per >= chains:
        raise ValueError(f"{chains} chain(s) cannot be shared by {count} processes: run at least "
                         f"{(count - 1) * multiple + 1} chains")
    first = min(p * per, chains)
    return first, max(0, min(chains, first + per) - first), per


_BARRIERS = [0]
BARRIER_TIMEOUT_S = 24 * 3600


def _barrier():
    """Wait for every process at the coordination service (a long timeout: processes finish
    their chains at different times) before the collective, whose CPU (gloo) set-up gives up
    within about a minute when one process comes late."""
    client = getattr(distributed.global_state, "client", None)
    if client is None:
        return
    _BARRIERS[0] += 1
    client.wait_at_barrier(f"ppl_gather_chains_{_BARRIERS[0]}", BARRIER_TIMEOUT_S * 1000)


def gather_chains(tree, chains: int, multiple: int = 1):
    """Every process's chains (leaves with a leading chain axis of this process's share),
    concatenated in chain order on every process; the identity in a single process."""
    if jax.process_count() == 1:
        return tree
    _, mine, per = process_share(chains, multiple)

    def pad(a):
        a = np.asarray(a)
        if a.shape[0] < per:  # the last process may run fewer: pad to the common shape
            fill = np.repeat(a[-1:] if a.shape[0] else np.zeros((1,) + a.shape[1:], a.dtype),
                             per - a.shape[0], 0)
            a = np.concatenate([a, fill])
        return a

    _barrier()
    stacked = multihost_utils.process_allgather(jax.tree_util.tree_map(pad, tree), tiled=False)
    return jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape((-1,) + a.shape[2:])[:chains], stacked)


# ----------------------------------------------------------------------------- one program
def on_each_device(compiled, home, devices: Sequence, compile_for: Callable):
    """The single-device program `compiled` (compiled for device `home`) and the same program
    compiled for each other device of `devices` (`compile_for(device)`; on threads, XLA
    compiles outside the GIL): one executable per device, the same HLO and options, so the
    same machine code and the same rounding on every device.

    Not JAX's executable serialisation (compile once, load on every device): measured with
    JAX 0.10.2, a particle Gibbs chain program loaded that way on a second CPU device failed
    when run ("NOT_FOUND: Function add_select_fusion.4 not found"), though a NUTS kernel ran."""

    others = [d for d in devices if d != home]
    with ThreadPoolExecutor(max(1, len(others))) as pool:
        done = dict(zip(others, pool.map(compile_for, others)))
    return [compiled if d == home else done[d] for d in devices]


def shape_on(dev):
    """Shape of an array (or a struct) as an argument placed on `dev`."""
    return lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=SingleDeviceSharding(dev),
                                          weak_type=getattr(x, "weak_type", False))


def chains_on_devices(fn: Callable, keys, shared, devices: Sequence, cache: Optional[dict] = None):
    """`fn(key, shared)` for each chain's key (`keys` (C,)), chain c on device c mod D, every
    chain by the one compiled single-device program (`on_each_device`), the devices in
    parallel (asynchronous dispatch); the outputs stacked over chains, on the host.
    `cache`: a dict keeping the executables between calls (keyed by the devices and the
    shapes of `shared`).

    Unlike `map_chains` (one SPMD program over a mesh) the program a chain runs is the same
    whatever the number of devices, chains or processes, so its draws are too: an SPMD
    program over one device and one over several compile differently and round
    differently."""
    devices = list(devices)
    impl = jax.random.key_impl(keys)
    data = np.asarray(jax.random.key_data(keys))
    home = devices[0]
    one = jax.random.wrap_key_data(data[0], impl=impl)
    sig = (tuple(d.id for d in devices),
           str(jax.tree_util.tree_map(lambda x: (jnp.shape(x), jnp.result_type(x)), shared)))
    exes = None if cache is None else cache.get(sig)
    if exes is None:
        jitted = jax.jit(fn)

        def compile_for(dev):
            return jitted.lower(jax.tree_util.tree_map(shape_on(dev), one),
                                jax.tree_util.tree_map(shape_on(dev), shared)).compile()

        exes = on_each_device(compile_for(home), home, devices, compile_for)
        if cache is not None:
            cache[sig] = exes
    shared_on = {d: jax.device_put(shared, d) for d in devices[:len(data)]}
    outs = []
    for c in range(len(data)):
        dev = devices[c % len(devices)]
        key = jax.device_put(jax.random.wrap_key_data(data[c], impl=impl), dev)
        outs.append(exes[c % len(devices)](key, shared_on[dev]))
    outs = jax.device_get(outs)
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *outs)
