"""Create and cache the anchor virtual environments under ``benchmarks/.venvs/``.

Each anchor that cannot live in the main environment gets its own venv:

* ``stan``      — ``pystan`` 3 (and so ``httpstan``); builds models with the machine's C++ compiler.
* ``particles`` — Nicolas Chopin's ``particles`` package, which needs ``numpy < 2``.
* ``torchsde``  — CPU PyTorch (``torch==2.13.0``: pip takes the CPU build that lies on this
  machine's disk; a looser pin pulls a multi-GB CUDA build) and ``torchsde``.

A venv is (re)built only when its requirement list changes: the list is written to a stamp
file inside the venv once ``pip install`` has succeeded. Uses the machine's ``pip``
(whatever index it is configured for).

    python benchmarks/venv.py            # build both (no-op when up to date)
    python benchmarks/venv.py stan       # just one
    python benchmarks/venv.py --force    # rebuild

From the benchmark scripts: ``_common.anchor_python("stan")`` (loads this file by path — its
name shadows the standard library's ``venv`` — and returns the venv's interpreter, building the
venv first when needed).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"

REQUIREMENTS: dict[str, list[str]] = {
    # pystan 3.10 still imports pkg_resources, which setuptools 81 removed.
    "stan": ["pystan>=3.10,<4", "setuptools<81"],
    "particles": ["particles==0.4", "numpy<2", "scipy"],
    "torchsde": ["torch==2.13.0", "torchsde==0.2.6"],
}

STAMP = "ppl-bench-requirements.json"


def venv_dir(name: str) -> Path:
    return VENVS / name


def venv_python(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def _stamp_ok(name: str) -> bool:
    stamp = venv_dir(name) / STAMP
    if not stamp.exists() or not venv_python(name).exists():
        return False
    try:
        return json.loads(stamp.read_text()) == REQUIREMENTS[name]
    except (OSError, ValueError):
        return False


def ensure(name: str, force: bool = False, quiet: bool = False) -> Path:
    """Build venv ``name`` if missing or stale; return its python."""
    if name not in REQUIREMENTS:
        raise KeyError(f"unknown anchor venv {name!r}; known: {sorted(REQUIREMENTS)}")
    if not force and _stamp_ok(name):
        return venv_python(name)
    d = venv_dir(name)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    log(f"[venv] building {d} with {REQUIREMENTS[name]} (one-off; cached afterwards)")
    VENVS.mkdir(parents=True, exist_ok=True)
    stamp = d / STAMP
    if stamp.exists():
        stamp.unlink()
    # --clear so a half-built venv from an interrupted run does not linger.
    # -I: isolated mode, so "-m venv" is the standard library's, never this file (which shares
    # its name) when run from inside benchmarks/.
    subprocess.run([sys.executable, "-I", "-m", "venv", "--clear", str(d)], check=True)
    py = str(venv_python(name))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run(pip + ["--upgrade", "pip", "wheel"], check=True)
    subprocess.run(pip + REQUIREMENTS[name], check=True)
    stamp.write_text(json.dumps(REQUIREMENTS[name]))
    log(f"[venv] {name} ready")
    return venv_python(name)


def python_for(name: str) -> str:
    return str(ensure(name))


def main(argv: list[str]) -> int:
    force = "--force" in argv
    names = [a for a in argv if not a.startswith("-")] or sorted(REQUIREMENTS)
    for n in names:
        py = ensure(n, force=force)
        out = subprocess.run(
            [str(py), "-m", "pip", "freeze", "--disable-pip-version-check"],
            capture_output=True, text=True, check=True,
        ).stdout
        keep = [ln for ln in out.splitlines()
                if ln.split("==")[0].lower() in {"pystan", "httpstan", "particles", "numpy", "scipy", "numba",
                                                   "torch", "torchsde"}]
        print(f"{n}: {py}\n  " + "\n  ".join(keep))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
