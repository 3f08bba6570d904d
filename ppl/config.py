"""What `import ppl` changes in JAX for the whole process, and how to opt out.

ppl's compiled programs compute in double precision (Stan users expect it; the exact evidence
and translation-validation checks need it), so `import ppl` turns on ``jax_enable_x64``. That
setting is process-wide: the user's other JAX code then gets float64 arrays too. It cannot be
scoped to ppl's own calls with ``jax.enable_x64(True)``: that context is thread-local (ppl
compiles on background threads) and a compiled function called outside it traces again in
float32. Measured on examples/eight_schools.ppl (seed 1, 4 × 300 draws): x64 only inside
``Model.sample`` gave float32 draws and a different posterior (mean tau 3.54 against 3.86), so
the setting stays global, and is documented and optional:

- ``PPL_X64=0``: leave ``jax_enable_x64`` as it is. Enable it yourself before using ppl
  (``jax.config.update("jax_enable_x64", True)``); ppl's results in float32 are not checked.
- ``PPL_XLA_FLAGS=0``: leave ``XLA_FLAGS`` alone. By default ppl adds
  ``--xla_force_host_platform_device_count=<cores, at most 64>`` (chains run in parallel, one
  host device per core; without the flag they run one after another on one device, with the
  same draws) and ``--xla_llvm_disable_expensive_passes=true`` (a third off compile
  time; ``PPL_FAST_COMPILE=0`` drops just this one). Flags only act before JAX starts its
  backend, so ppl adds none when JAX is already running.

``ppl.config.changes`` lists what this import changed.
"""
import os
import sys
from typing import List

changes: List[str] = []


def _enabled(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def _backend_running() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a JAX without the private helper: assume the worst, touch nothing
        return True


def cores() -> int:
    # more host devices than cores only adds thread contention (eight schools, 4 chains on
    # 2 cores: 0.37 s on 2 devices, 0.43 s on 8)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _add_xla_flag(flag: str) -> None:
    name = flag.split("=")[0]
    current = os.environ.get("XLA_FLAGS", "")
    if name not in current:
        os.environ["XLA_FLAGS"] = f"{current} {flag}".strip()
        changes.append(f"XLA_FLAGS += {flag}")


def configure_jax() -> None:
    """Called once by ``import ppl``; imports JAX only if it is imported already."""
    if _enabled("PPL_XLA_FLAGS") and not _backend_running():
        if _enabled("PPL_FAST_COMPILE"):
            _add_xla_flag("--xla_llvm_disable_expensive_passes=true")
        _add_xla_flag(f"--xla_force_host_platform_device_count={min(cores(), 64)}")
    if not _enabled("PPL_X64"):
        return
    if "jax" in sys.modules:
        import jax
        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)
            changes.append("jax_enable_x64 = True")
    elif os.environ.get("JAX_ENABLE_X64", "").strip().lower() not in ("1", "true", "yes", "on"):
        # JAX reads this when it is first imported: `import ppl` itself does not import JAX
        # (the `ppl` command takes over its signals first; ppl/runtime/signals.py)
        os.environ["JAX_ENABLE_X64"] = "1"
        changes.append("jax_enable_x64 = True")
