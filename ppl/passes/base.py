"""The pass contract.

A pass turns a model into an inference program in three steps:
- `diagnose(graph)`: can it run on this model? If not, a message naming the variable and line.
- `transform(lowered, options)`: build the program.
- `validate(program, key)`: cheap numeric identities that must hold if the transformation
  preserves the model's distribution; a failure is a bug in ppl (PPLInternalError).

Each program declares the contract its correctness test checks: "exact" (the distribution is
unchanged), "unbiased-evidence" (particle populations) or "target-invariant" (MCMC kernels).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..ir.graph import ModelGraph
from ..syntax.ast import Span


@dataclass(frozen=True)
class Diagnosis:
    ok: bool
    reason: str  # why it can run ("12 continuous latents, no discrete ones") or why not
    span: Optional[Span] = None

    def __bool__(self):
        return self.ok


@dataclass
class Draws:
    """What a program returns; the runtime turns it into InferenceData."""
    posterior: Dict[str, np.ndarray]  # name -> (chains, draws, *shape)
    sample_stats: Dict[str, np.ndarray] = field(default_factory=dict)
    posterior_predictive: Dict[str, np.ndarray] = field(default_factory=dict)
    warmup_stats: Dict[str, np.ndarray] = field(default_factory=dict)
    attrs: Dict[str, Any] = field(default_factory=dict)
    warnings: list = field(default_factory=list)


class InferencePass(abc.ABC):
    name: str = ""
    contract: str = ""
    summary: str = ""

    @abc.abstractmethod
    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        """Whether this pass can run the model, and why (not)."""

    @abc.abstractmethod
    def transform(self, lowered, options: Dict[str, Any]):
        """The inference program for this lowered model."""

    @abc.abstractmethod
    def validate(self, program, key) -> Dict[str, Any]:
        """Numeric identities that hold if the transformation preserved the distribution."""


_REGISTRY: Dict[str, InferencePass] = {}
# method="auto" asks the passes in this order and takes the first that can run
PREFERENCE: List[str] = ["enumerate", "nuts", "smc", "mhg", "vsde"]


def register(p: InferencePass) -> InferencePass:
    _REGISTRY[p.name] = p
    return p


def passes() -> Dict[str, InferencePass]:
    from . import nuts  # noqa: F401  (registers itself)
    for mod in ("enumerate", "smc", "mhg", "vsde"):
        try:
            __import__(f"{__package__}.{mod}")
        except ImportError:
            pass
    return dict(_REGISTRY)


@dataclass(frozen=True)
class Plan:
    method: str
    reason: str
    rejected: List[str]

    def describe(self) -> str:
        lines = [f"method: {self.method} — {self.reason}"]
        for r in self.rejected:
            lines.append(f"  not {r}")
        return "\n".join(lines)


def choose(graph: ModelGraph, method: str = "auto") -> Plan:
    from ..syntax.errors import PPLCheckError
    available = passes()
    if method != "auto":
        if method not in available:
            raise PPLCheckError(f'unknown method "{method}"', None,
                                "methods: auto, " + ", ".join(sorted(available)))
        d = available[method].diagnose(graph)
        if not d:
            raise PPLCheckError(f"{method} cannot run this model: {d.reason}", d.span, None,
                                graph.program.source, graph.program.filename)
        return Plan(method, d.reason, [])
    rejected = []
    for name in PREFERENCE:
        if name not in available:
            continue
        d = available[name].diagnose(graph)
        if d:
            return Plan(name, d.reason, rejected)
        rejected.append(f"{name}: {d.reason}")
    raise PPLCheckError("no inference method can run this model", None,
                        "; ".join(rejected), graph.program.source, graph.program.filename)
