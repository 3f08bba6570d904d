"""Stan anchor for the posteriordb posteriors: a worker run with the ``stan`` venv's python
(pystan 3), one posterior per process, spoken to over JSON lines by ``run_posteriordb.py``.

* ``{"cmd": "build", "name": "arK-arK", "seed": s}`` → ``stan.build`` of
  ``anchors/posteriordb/<name>.stan`` with the posterior's data; answers ``build_s`` (a cold
  httpstan cache compiles C++, ~35 s+ per model).
* ``{"cmd": "sample", "seed": s, "chains": 4, "draws": 1000, "warmup": 1000}`` → NUTS with
  Stan's defaults (diag_e metric, adapt_delta 0.8, max_treedepth 10); answers ``sample_s``,
  ``t_done_wall``, ``divergences`` and the draws of the variables the reference reports
  (``posterior.json``'s ``dimensions``), each as a nested list (chains, draws, *shape).

The .stan files are this project's own translations of the posteriordb models, written to
mirror ``examples/posteriordb/<name>.ppl`` (the posteriordb repository is not available
offline). Cached fits are deleted before every ``sample`` so a repeated seed is never answered
from httpstan's cache (``_pystan.sample``).
"""
from __future__ import annotations

import time

T_START_WALL = time.time()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import SHARED_DATA, serve  # noqa: E402

t0 = time.perf_counter()
import stan  # noqa: E402
import httpstan  # noqa: E402

import _pystan  # noqa: E402
import aiohttp.client  # noqa: E402

# pystan talks to its in-process httpstan server through an aiohttp session with aiohttp's
# default 5-minute total timeout: on a loaded 2-core machine one C++ build takes longer, and
# stan.build then fails with TimeoutError. The build is what is being waited for: no limit.
aiohttp.client.DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60)

IMPORT_S = time.perf_counter() - t0

PROGRAMS = HERE / "posteriordb"
POSTERIORDB = SHARED_DATA / "posteriordb"

_state: dict = {}


def _build(name: str, seed: int) -> dict:
    program = (PROGRAMS / f"{name}.stan").read_text()
    data = json.loads((POSTERIORDB / name / "data.json").read_text())
    info = json.loads((POSTERIORDB / name / "posterior.json").read_text())
    t = time.perf_counter()
    posterior = stan.build(program, data=data, random_seed=int(seed))
    build_s = time.perf_counter() - t
    _state.update(posterior=posterior, dims=info["dimensions"])
    return {"build_s": build_s, "import_s": IMPORT_S, "t_done_wall": time.time(),
            "httpstan": httpstan.__version__}


def _sample(seed: int, chains: int, draws: int, warmup: int) -> dict:
    sample_s, t_done, by_chain, divergent = _pystan.sample(_state["posterior"], seed, chains,
                                                           draws, warmup)
    out = {}
    for base, size in _state["dims"].items():
        try:
            out[base] = by_chain(base)
        except ValueError:  # a vector: elements "base.1" … → (chains, draws, size)
            cols = [by_chain(f"{base}.{i}") for i in range(1, size + 1)]
            out[base] = [[list(row) for row in zip(*(c[ch] for c in cols))]
                         for ch in range(chains)]
    return {"sample_s": sample_s, "t_done_wall": t_done, "divergences": divergent, "draws": out}


def handle(req: dict) -> dict:
    if req["cmd"] == "build":
        return _build(req["name"], req.get("seed", 1))
    if req["cmd"] == "sample":
        return _sample(req["seed"], req.get("chains", 4), req.get("draws", 1000),
                       req.get("warmup", 1000))
    raise ValueError(f"unknown command {req['cmd']!r}")


if __name__ == "__main__":
    serve(handle)
