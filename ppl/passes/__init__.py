"""The inference passes, registered here and nowhere else (an import error is an error).

`method="auto"` asks them in the order of `PREFERENCE` and takes the first that can run, except
that a model with a continuous latent state chain goes to smc before nuts (`SMCPass.prefer`).
"""
from __future__ import annotations

from typing import Dict

from ..ir.graph import ModelGraph
from ..syntax.errors import PPLCheckError
from .base import InferencePass, Plan
from .enumerate import EnumeratePass
from .nuts import NutsPass
from .smc import SMCPass

PASSES: Dict[str, InferencePass] = {p.name: p for p in (EnumeratePass(), NutsPass(), SMCPass())}
PREFERENCE = ["enumerate", "nuts", "smc"]


def passes() -> Dict[str, InferencePass]:
    return dict(PASSES)


def choose(graph: ModelGraph, method: str = "auto") -> Plan:
    """The pass that runs the model: `method`, or the first of `PREFERENCE` that can."""
    if method != "auto":
        if method not in PASSES:
            raise PPLCheckError(f'unknown method "{method}"', None,
                                "methods: auto, " + ", ".join(sorted(PASSES)))
        d = PASSES[method].diagnose(graph)
        if not d:
            raise PPLCheckError(f"{method} cannot run this model: {d.reason}", d.span, None,
                                graph.source, graph.filename)
        return Plan(method, d.reason, [])
    rejected = []
    for name in PREFERENCE:
        if name == "nuts":
            why = PASSES["smc"].prefer(graph)
            if why and PASSES["smc"].diagnose(graph):
                return Plan("smc", why, rejected + ["nuts: possible, but smc suits a state-space "
                                                    "model better (--method nuts to insist)"])
        d = PASSES[name].diagnose(graph)
        if d:
            return Plan(name, d.reason, rejected)
        rejected.append(f"{name}: {d.reason}")
    raise PPLCheckError("no inference method can run this model", None,
                        "; ".join(rejected), graph.source, graph.filename)
