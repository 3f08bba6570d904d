"""Several processes (hosts) as one run, through `jax.distributed`.

Every process runs the same `ppl sample` command. `initialize` starts JAX's distributed
runtime (before anything else touches JAX's backend); the chains are then shared out by
process (`ppl.algorithms.devices.process_share`: process p runs chains p·⌈C/P⌉ onwards,
each from the key of (seed, chain) alone), spread over the process's own devices, and
gathered onto every process at the end (`gather_chains`, JAX's collectives over the
distributed runtime: gloo on CPU). Process 0 prints the summary and writes the output.

With no flags, JAX's own cluster detection is not attempted: a plain `ppl sample` stays one
process. `--num-processes P` without `--coordinator` lets JAX find the coordinator and the
process id from the cluster environment (Slurm, Open MPI, Kubernetes / GKE TPU); see
docs/scaling.md.
"""
from __future__ import annotations

from typing import Optional

import jax

from ..syntax.errors import PPLError

__all__ = ["initialize", "finish"]


def initialize(coordinator: Optional[str], num_processes: Optional[int],
               process_id: Optional[int], chains: Optional[int] = None) -> bool:
    """Start `jax.distributed` when asked to; True for the process that reports (process 0,
    or the only one)."""
    if coordinator is None and num_processes is None and process_id is None:
        return True
    if num_processes is None:
        raise PPLError("--coordinator / --process-id need --num-processes", None,
                       "give every process the same --coordinator HOST:PORT and "
                       "--num-processes P, and its own --process-id 0 … P-1")
    if coordinator is not None and process_id is None:
        raise PPLError("--coordinator needs --process-id", None,
                       "process 0 … P-1: each process its own index")
    if process_id is not None and process_id >= num_processes:
        raise PPLError(f"--process-id {process_id} is not below --num-processes {num_processes}",
                       None, f"process ids run from 0 to {num_processes - 1}")
    if chains is not None and chains < num_processes:
        raise PPLError(f"--chains {chains} cannot be shared by {num_processes} processes", None,
                       f"run at least {num_processes} chains")
    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise PPLError(f"--coordinator {coordinator!r} is not HOST:PORT", None,
                           "for example --coordinator node0:12345 or 127.0.0.1:12345")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PPLError(f"jax.distributed could not start: {first}", None,
                       "check that every process got the same --coordinator and "
                       "--num-processes and that process 0 is reachable there") from None
    return jax.process_index() == 0


def finish() -> None:
    """Leave `jax.distributed` together: every process waits here for the others (JAX's
    shutdown barrier), so process 0, which hosts the coordination service, does not exit
    while another process still finishes its run (`ppl` ends with os._exit, which skips
    JAX's own shutdown at exit; measured on a loaded machine: process 1 aborted, exit 134,
    when process 0 left first). Nothing to do in a single process."""

    if jax.process_count() > 1:
        jax.distributed.shutdown()
