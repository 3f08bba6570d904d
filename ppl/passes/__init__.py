"""The inference passes, registered here and nowhere else (an import error is an error).

`method="auto"` asks them in the order of `PREFERENCE` and takes the first that can run, except
that a model with a continuous latent state chain goes to smc before nuts (`SMCPass.prefer`).
"""
from __future__ import annotations

from typing import Dict

from ..ir.graph import ModelGraph
from ..syntax.errors import PPLCheckError
from .base import Diagnosis, InferencePass, Plan
from .enumerate import EnumeratePass
from .mhg import MHGPass
from .nuts import NutsPass
from .smc import SMCPass
from .vsde import VSDEPass, has_process



def _without_processes(p: InferencePass) -> InferencePass:
    """The passes that do not know processes say so for a model with one (the model's other
    variables alone would otherwise look like a model they can run)."""
    inner = p.diagnose

    def diagnose(graph: ModelGraph) -> Diagnosis:
        if has_process(graph):
            v = next(v for v in graph.ir.variables.values() if v.kind == "process")
            return Diagnosis(False, f'{p.name} does not run continuous-time processes: "{v.name}" '
                             f"(line {v.span.line}) is one", v.span)
        return inner(graph)

    p.diagnose = diagnose
    return p


PASSES: Dict[str, InferencePass] = {p.name: p for p in (_without_processes(EnumeratePass()),
                                                      _without_processes(NutsPass()),
                                                      SMCPass(),  # linear processes: exact steps
                                                      _without_processes(MHGPass()), VSDEPass())}
PREFERENCE = ["enumerate", "nuts", "smc", "mhg"]
# a model with a continuous-time process runs by the passes that know processes, only
PROCESS_PASSES = ["vsde", "smc"]


def passes() -> Dict[str, InferencePass]:
    return dict(PASSES)


def choose(graph: ModelGraph, method: str = "auto") -> Plan:
    """The pass that runs the model: `method`, or the first of `PREFERENCE` that can."""
    process = has_process(graph)
    if method != "auto":
        if method not in PASSES:
            raise PPLCheckError(f'unknown method "{method}"', None,
                                "methods: auto, " + ", ".join(sorted(PASSES)))
        d = PASSES[method].diagnose(graph)
        if not d:
            hint = ("a model with a process runs by " + " or ".join(PROCESS_PASSES) +
                    " (--method auto chooses it)") if process else None
            raise PPLCheckError(f"{method} cannot run this model: {d.reason}", d.span, hint,
                                graph.source, graph.filename)
        return Plan(method, d.reason, [])
    rejected = []
    for name in (PROCESS_PASSES if process else PREFERENCE):
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
