"""posteriordb worker for ppl: one posterior per process, spoken to over JSON lines by
``run_posteriordb.py`` with the same commands as the Stan worker (``anchors/stan_posteriordb.py``).

    python benchmarks/workers/posteriordb.py                # serve requests on stdin/stdout

* ``{"cmd": "build", "name": "arK-arK"}`` → ``ppl.load`` of ``examples/posteriordb/<name>.ppl``;
  answers ``build_s``. A model ppl cannot compile yet answers ``{"unsupported": message}``
  (the message is ppl's own error, file:line:col and all), not an error.
* ``{"cmd": "sample", "seed": s, "chains": 4, "draws": 1000, "warmup": 1000}`` → NUTS with
  ppl's defaults; answers ``sample_s``, ``t_done_wall``, ``divergences`` and the draws of the
  variables the reference reports (``posterior.json``'s ``dimensions``), each as a nested list
  (chains, draws, *shape). A run that fails answers ``{"unsupported": message}`` when ppl
  raised one of its own errors (a construct it cannot lower yet) and an error otherwise.

ppl's whole side is ``ppl_build`` and ``ppl_sample``: adapt them if the public API moves.
"""
from __future__ import annotations

import time

T_START_WALL = time.time()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import ROOT, SHARED_DATA, serve  # noqa: E402

PORTS = ROOT / "examples" / "posteriordb"
POSTERIORDB = SHARED_DATA / "posteriordb"

_state: dict = {}


def ppl_build(path: Path):
    import ppl  # noqa: PLC0415

    return ppl.load(str(path))


def ppl_sample(model, data_path: Path, names: list[str], seed: int, chains: int, draws: int,
               warmup: int) -> tuple[dict, int]:
    """Returns ({name: array (chains, draws, *shape)}, number of divergences)."""
    idata = model.sample(str(data_path), method="nuts", chains=chains, draws=draws,
                         warmup=warmup, seed=seed)
    post = idata.posterior
    missing = [n for n in names if n not in post]
    if missing:
        raise KeyError(f"ppl's posterior lacks {missing} (has {sorted(post.data_vars)})")
    stats = idata.sample_stats
    div = int(stats["diverging"].values.sum()) if "diverging" in stats else -1
    return {n: post[n].values for n in names}, div


def _is_ppl_error(exc: BaseException) -> bool:
    return any(c.__name__ == "PPLError" for c in type(exc).__mro__)


def handle(req: dict) -> dict:
    if req["cmd"] == "build":
        name = req["name"]
        _state["name"] = name
        _state["data"] = POSTERIORDB / name / "data.json"
        info = json.loads((POSTERIORDB / name / "posterior.json").read_text())
        _state["names"] = list(info["dimensions"])
        t = time.perf_counter()
        try:
            _state["model"] = ppl_build(PORTS / f"{name}.ppl")
        except Exception as exc:  # noqa: BLE001 — reported to the orchestrator
            if _is_ppl_error(exc):
                return {"unsupported": str(exc)}
            raise
        return {"build_s": time.perf_counter() - t, "t_done_wall": time.time(),
                "since_start_s": time.time() - T_START_WALL}
    if req["cmd"] == "sample":
        t = time.perf_counter()
        try:
            draws, div = ppl_sample(_state["model"], _state["data"], _state["names"],
                                    int(req["seed"]), req.get("chains", 4),
                                    req.get("draws", 1000), req.get("warmup", 1000))
        except Exception as exc:  # noqa: BLE001
            if _is_ppl_error(exc):
                return {"unsupported": str(exc)}
            raise
        sample_s = time.perf_counter() - t
        return {"sample_s": sample_s, "t_done_wall": time.time(), "divergences": div,
                "draws": {k: v.tolist() for k, v in draws.items()}}
    raise ValueError(f"unknown command {req['cmd']!r}")


if __name__ == "__main__":
    serve(handle)
