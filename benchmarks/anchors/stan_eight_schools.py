"""Stan anchor for eight schools: a worker run with the ``stan`` venv's python (pystan 3).

Spoken to over JSON lines by ``run_eight_schools.py`` (see ``_common.serve``):

* ``{"cmd": "build", "seed": s}`` → ``stan.build`` of ``eight_schools_noncentered.stan``;
  answers ``build_s`` (a cache hit is fast; a cold httpstan cache compiles C++, ~35 s+).
* ``{"cmd": "sample", "seed": s, "chains": 4, "draws": 1000, "warmup": 1000}`` → NUTS with
  Stan's defaults (diag_e metric, adapt_delta 0.8, max_treedepth 10); answers ``sample_s``,
  ``t_done_wall`` (``time.time()`` when the draws are in hand), draws of ``mu`` and ``tau``
  (chains × draws) and the number of divergences.

httpstan's cache (built models *and* fits with a seed) lives under
``$XDG_CACHE_HOME/httpstan/<version>``; the orchestrator points ``XDG_CACHE_HOME`` at a fresh
temporary directory for a cold run. Cached fits are deleted before every ``sample`` so a repeated
seed can never be answered from the cache.

Standalone check:  benchmarks/.venvs/stan/bin/python benchmarks/anchors/stan_eight_schools.py --once
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
import httpstan.cache  # noqa: E402

import _pystan  # noqa: E402

IMPORT_S = time.perf_counter() - t0

PROGRAM = (HERE / "eight_schools_noncentered.stan").read_text()
DATA_PATH = SHARED_DATA / "posteriordb" / "eight_schools-eight_schools_noncentered" / "data.json"

_state: dict = {}


def _build(seed: int) -> dict:
    data = json.loads(DATA_PATH.read_text())
    t = time.perf_counter()
    posterior = stan.build(PROGRAM, data=data, random_seed=int(seed))
    build_s = time.perf_counter() - t
    _state["posterior"] = posterior
    return {"build_s": build_s, "import_s": IMPORT_S, "t_done_wall": time.time(),
            "cache_dir": str(httpstan.cache.cache_directory()),
            "pystan": stan.__version__ if hasattr(stan, "__version__") else "3",
            "httpstan": httpstan.__version__}


def _sample(seed: int, chains: int, draws: int, warmup: int) -> dict:
    sample_s, t_done, by_chain, divergent = _pystan.sample(_state["posterior"], seed, chains,
                                                           draws, warmup)
    return {"sample_s": sample_s, "t_done_wall": t_done, "divergences": divergent,
            "draws": {"mu": by_chain("mu"), "tau": by_chain("tau")}}


def handle(req: dict) -> dict:
    if req["cmd"] == "build":
        return _build(req.get("seed", 1))
    if req["cmd"] == "sample":
        return _sample(req["seed"], req.get("chains", 4), req.get("draws", 1000),
                       req.get("warmup", 1000))
    raise ValueError(f"unknown command {req['cmd']!r}")


if __name__ == "__main__":
    if "--once" in sys.argv:
        b = _build(1)
        s = _sample(1, 4, 1000, 1000)
        import statistics
        mu = [x for c in s["draws"]["mu"] for x in c]
        tau = [x for c in s["draws"]["tau"] for x in c]
        print(json.dumps({"build_s": b["build_s"], "sample_s": s["sample_s"],
                          "divergences": s["divergences"], "mean_mu": statistics.fmean(mu),
                          "mean_tau": statistics.fmean(tau)}))
    else:
        serve(handle)
