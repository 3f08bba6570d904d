"""ppl — a probabilistic programming language compiled to JAX.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample("examples/eight_schools.json")
"""
import os

# XLA's most expensive LLVM passes buy nothing measurable for sampler kernels but cost about a
# third of their compile time, which dominates a cold run. Must be set before JAX starts its
# backend; PPL_FAST_COMPILE=0 leaves XLA_FLAGS alone.
if os.environ.get("PPL_FAST_COMPILE", "1") != "0" and \
        "xla_llvm_disable_expensive_passes" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_llvm_disable_expensive_passes=true").strip()

# Host devices for chains: up to 8 chains each run alone on their own device (a thread), so
# chain c's draws are the same whether 2 or 8 chains run (no batching changes its arithmetic)
# and no chain waits for another's tree building; more cores, more devices (up to 64).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count="
                               f"{max(8, min(os.cpu_count() or 1, 64))}").strip()

import jax  # noqa: E402

# Stan users expect double precision; exact evidence checks need it too.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from .api import Model, compile, load  # noqa: E402
from .syntax.errors import PPLError  # noqa: E402

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]
