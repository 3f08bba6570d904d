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

# One host device per core (up to 8): NUTS chains are split across them and run in parallel.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={min(os.cpu_count() or 1, 8)}").strip()

import jax  # noqa: E402

# Stan users expect double precision; exact evidence checks need it too.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from .api import Model, compile, load  # noqa: E402
from .syntax.errors import PPLError  # noqa: E402

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]
