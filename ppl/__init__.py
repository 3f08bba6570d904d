"""ppl — a probabilistic programming language compiled to JAX.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample("examples/eight_schools.json")
"""
import os
import sys

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

# Stan users expect double precision; exact evidence checks need it too. Through the
# environment, which JAX reads when it is first imported, so that `import ppl` stays light:
# the `ppl` command installs its signal handlers and checks its arguments before the second
# or so that importing JAX takes. When JAX is already imported, through its configuration.
os.environ["JAX_ENABLE_X64"] = "1"
if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_enable_x64", True)

__version__ = "0.1.0"

__all__ = ["Model", "compile", "load", "PPLError", "__version__"]


def __getattr__(name):
    # loaded on first use: the API imports JAX, and even the error classes cost a tenth of a
    # second that the `ppl` command spends before its signal handlers are in place
    if name in ("Model", "compile", "load"):
        from . import api
        return getattr(api, name)
    if name == "PPLError":
        from .syntax.errors import PPLError
        return PPLError
    raise AttributeError(f"module 'ppl' has no attribute {name!r}")
