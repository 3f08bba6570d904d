"""The pass contract.

A pass turns a model into an inference program in four steps:
- `diagnose(graph)`: can it run on this model? If not, a message naming the variable and line.
- `rewrite(ir, options)`: the IR → IR transformation the pass needs (ppl/ir/rewrites.py; often
  none). The runtime lowers the rewritten IR with the data (ppl/lower/model.py).
- `build(lowered, options)`: the program — kernels from ppl/algorithms composed; a pass holds no
  algorithm of its own.
- `validate(program, key)`: cheap numeric identities that must hold if the transformation
  preserves the model's distribution (ppl/lower/validation.py, one validator per contract); a
  failure is a bug in ppl (PPLInternalError).

Programs run as `program.run(data_arrays, seed, progress)` and return `Draws`. Each declares the
contract its correctness test checks: "exact" (the distribution is unchanged),
"unbiased-evidence" (particle populations), "target-invariant" (MCMC kernels) or "elbo-bound"
(variational).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..syntax.span import Span


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
    options: Dict[str, str] = {}  # the method options it accepts, with what each does

    @abc.abstractmethod
    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        """Whether this pass can run the model, and why (not)."""

    def rewrite(self, ir: N.ModelIR, options: Dict[str, Any]) -> N.ModelIR:
        """The IR this pass lowers (default: the program as written)."""
        return ir

    @abc.abstractmethod
    def build(self, lowered, options: Dict[str, Any]):
        """The inference program for this lowered model."""

    @abc.abstractmethod
    def validate(self, program, key) -> Dict[str, Any]:
        """Numeric identities that hold if the transformation preserved the distribution."""

    def describe(self, graph: ModelGraph) -> List[str]:
        """What `ppl check` prints about this pass for the model (beyond the diagnosis)."""
        return []


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
