"""What `import ppl` does to JAX (ppl/config.py): documented, and optional."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, os, sys
if "--jax-first" in sys.argv:
    import jax; jax.devices()  # the user's JAX is already running
import jax
import ppl
print(json.dumps({"x64": bool(jax.config.jax_enable_x64), "flags": os.environ.get("XLA_FLAGS", ""),
                  "changes": ppl.config.changes}))
"""


def probe(*argv, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("XLA_FLAGS", "JAX_ENABLE_X64") and not k.startswith("PPL_")}
    environ.update(env, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], env=environ, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_enables_float64_and_says_so():
    r = probe()
    assert r["x64"]
    assert "--xla_force_host_platform_device_count=" in r["flags"]
    assert "jax_enable_x64 = True" in r["changes"]


def test_opting_out_leaves_jax_alone():
    r = probe(PPL_X64="0", PPL_XLA_FLAGS="0")
    assert r == {"x64": False, "flags": "", "changes": []}


def test_no_flags_once_jax_is_running():
    r = probe("--jax-first")
    assert r["flags"] == "" and r["changes"] == ["jax_enable_x64 = True"]
