"""The inference passes, registered here and nowhere else (an import error is an error).

`method="auto"` asks them in the order of `PREFERENCE` and takes the first that can run.
"""
from __future__ import annotations

from typing import Dict

from ..ir.graph import ModelGraph
from ..syntax.errors import PPLCheckError
from .base import InferencePass, Plan
from .enumerate import EnumeratePass
from .nuts import NutsPass
from .smc import SMCPass
from .vsde import VSDEPass, has_process

PASSES: Dict[str, InferencePass] = {p.name: p for p in (EnumeratePass(), NutsPass(), SMCPass(),
                                                      VSDEPass())}
PREFERENCE = ["enumerate", "nuts", "smc"]
# a model with a continuous-time process runs by the passes that know processes, only
PROCESS_PASSES = ["vsde"]


def passes() -> Dict[str, InferencePass]:
    return dict(PASSES)


def choose(graph: ModelGraph, method: str = "auto") -> Plan:
    """The pass that runs the model: `method`, or the first of `PREFERENCE` that can."""
    process = has_process(graph)
    if method != "auto":
        if method not in PASSES:
            raise PPLCheckError(f'unknown method "{method}"', None,
                                "methods: auto, " + ", ".join(sorted(PASSES)))
        if process and method not in PROCESS_PASSES:
            raise PPLCheckError(f"{method} cannot run this model: it has a continuous-time process",
                                None, "methods for processes: " + ", ".join(PROCESS_PASSES),
                                graph.source, graph.filename)
        d = PASSES[method].diagnose(graph)
        if not d:
            raise PPLCheckError(f"{method} cannot run this model: {d.reason}", d.span, None,
                                graph.source, graph.filename)
        return Plan(method, d.reason, [])
    rejected = []
    for name in (PROCESS_PASSES if process else PREFERENCE):
        d = PASSES[name].diagnose(graph)
        if d:
            return Plan(name, d.reason, rejected)
        rejected.append(f"{name}: {d.reason}")
    raise PPLCheckError("no inference method can run this model", None,
                        "; ".join(rejected), graph.source, graph.filename)
