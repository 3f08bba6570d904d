"""The Python embedding API.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample({"J": 8, "y": [...], "sigma": [...]}, chains=4, draws=1000)

The pipeline, one direction: source → parse → check → IR (built once) → the chosen pass
rewrites the IR and lowers it with the data → the pass builds its program → validation →
`program.run(data, seed)` → InferenceData.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Union

import jax
import numpy as np

from .check.checker import check
from .check.data import BoundData, bind_data, load_json
from .ir.build import build
from .ir.graph import ModelGraph
from .ir.rewrites import marginalize
from .lower.model import LoweredModel, data_signature
from .lower.random import rng_key
from .passes import PASSES, choose
from .passes.base import Draws, Plan
from .runtime.cache import enable_compilation_cache
from .runtime.prior import sample_prior
from .runtime.progress import Progress, running
from .runtime.results import _arviz, to_inference_data
from .syntax.parser import parse

DataLike = Union[str, Path, Dict[str, Any], None]


class Model:
    """A compiled model: parsed, checked and turned into its IR; lowered per data shapes."""

    def __init__(self, source: str, filename: str = "<model>"):
        self.source = source
        self.filename = filename
        self.checked = check(parse(source, filename))
        self.ir = build(self.checked)
        self.graph = ModelGraph(self.ir)
        self.warnings = list(self.checked.warnings)
        self._lowered: Dict[tuple, LoweredModel] = {}
        self._programs: Dict[tuple, Any] = {}
        self._validated: Dict[tuple, Dict[str, Any]] = {}
        self._plans: Dict[str, Plan] = {}
        self.last_warnings: list = []
        self.last_plan: Optional[Plan] = None

    def __repr__(self):
        return f"<ppl.Model {self.filename}: {len(self.graph.latents())} latent(s)>"

    # ------------------------------------------------------------ data and lowering
    def bind(self, data: DataLike) -> BoundData:
        if isinstance(data, BoundData):
            return data
        name = "the data"
        if isinstance(data, (str, Path)):
            name = Path(data).name
            data = load_json(str(data))
        return bind_data(self.checked, dict(data or {}), name)

    def lower(self, data: DataLike, method: Optional[str] = None, defer_checks: bool = False,
              options: Optional[dict] = None) -> LoweredModel:
        """The model lowered with `data`: its IR as the pass `method` rewrites it (by default
        with the discrete latents summed out where they can be), cached per data shapes."""
        bound = data if isinstance(data, BoundData) else self.bind(data)
        sig = data_signature(bound)
        key = (sig, method)
        lowered = self._lowered.get(key)
        if lowered is None:
            ir = PASSES[method].rewrite(self.ir, dict(options or {})) if method else \
                marginalize(self.ir)
            lowered = LoweredModel(ir, bound, defer_checks=defer_checks, source_ir=self.ir)
            self._lowered[key] = lowered
        else:
            lowered = lowered.with_data(bound, check=not defer_checks)
        lowered.signature = sig
        return lowered

    def plan(self, method: str = "auto") -> Plan:
        # the choice depends on the IR alone, and diagnosing every pass costs ~1 ms a call
        plan = self._plans.get(method)
        if plan is None:
            plan = self._plans[method] = choose(self.graph, method)
        return plan

    def log_density(self, data: DataLike):
        """(f, dim): f(u) is the log density at the flat unconstrained vector u."""
        lowered = self.lower(data)
        f = jax.jit(lambda u: lowered.log_density(u, lowered.data_arrays))
        return f, lowered.dim

    # ------------------------------------------------------------ inference
    def sample(self, data: DataLike = None, method: str = "auto", chains: int = 4, draws: int = 1000,
               warmup: int = 1000, seed: int = 0, progress: Union[bool, Progress] = False,
               validate: bool = True, prior: bool = False, **options):
        """Run inference; returns arviz.InferenceData: `posterior`, `posterior_predictive`
        (generated quantities; a replicate of observed data also under the observed name),
        `log_likelihood` (pointwise, per observed element; the option log_likelihood=False
        leaves it out), `sample_stats`, `observed_data`, `constant_data`, and with `prior`
        `prior` and `prior_predictive` (chains × draws from the prior, observed data
        simulated).

        `progress`: True reports on stderr (a bar on a terminal, a line every few seconds
        elsewhere: ppl/runtime/progress.py), or pass a `Progress`."""
        enable_compilation_cache()
        if "arviz" not in sys.modules:  # a second or two to import: overlap it with compiling
            threading.Thread(target=_arviz, daemon=True).start()
        plan = self.plan(method)
        p = PASSES[plan.method]
        bar = progress if isinstance(progress, Progress) else \
            Progress(plan.method, min_seconds=1.0) if progress else None
        with running(bar):
            opts = dict(options, chains=chains, draws=draws, warmup=warmup)
            bound = self.bind(data)
            key = (data_signature(bound), plan.method,
                   tuple(sorted((k, repr(v)) for k, v in opts.items())))
            if bar is not None:  # the program may compile a variant of its own at its first run
                bar.compiling()
            lowered = self.lower(bound, plan.method, defer_checks=True, options=opts)
            program = self._programs.get(key)
            if program is None:
                program = self._programs[key] = p.build(lowered, opts)
            lowered.check_data()  # compiles while the program's own compilation runs in background
            if validate and key[:2] not in self._validated:
                self._validated[key[:2]] = p.validate(program, rng_key(seed))
            out = program.run(lowered.data_arrays, seed=seed, progress=bar)
            out.attrs.setdefault("inference_method", plan.method)
            if prior and bar is not None:
                bar(0, 0, phase="prior and prior predictive draws")
            prior_groups = self._prior(lowered, chains, draws, seed) if prior else ({}, {})
            idata = self._inference_data(lowered, out, *prior_groups)
        self.last_warnings = list(out.warnings)
        self.last_plan = plan
        return idata

    def sample_prior(self, data: DataLike = None, chains: int = 1, draws: int = 1000, seed: int = 0):
        """Draws from the prior with data simulated from them: arviz.InferenceData with the
        groups `prior`, `prior_predictive` (observed variables simulated, generated quantities
        at each prior draw), `observed_data` and `constant_data` (for prior predictive checks:
        ``az.plot_ppc(idata, group="prior")``)."""
        enable_compilation_cache()
        lowered = self.lower(data)
        return self._inference_data(lowered, Draws({}), *self._prior(lowered, chains, draws, seed))

    def _prior(self, lowered: LoweredModel, chains: int, draws: int, seed: int):
        return sample_prior(lowered, int(chains), int(draws), seed)

    def _inference_data(self, lowered: LoweredModel, out: Draws, prior=None, prior_predictive=None):
        # transformed data (computed from data alone) once, in observed_data when observed
        transformed = lowered.transformed_data()
        observed = {n: transformed[n] if n in transformed else
                    np.asarray(lowered.data.arrays.get(n, lowered.data.static.get(n)))
                    for n in lowered.observed_names}
        constant = {n: v for n, v in lowered.data.arrays.items() if n not in observed}
        constant.update({n: v for n, v in transformed.items() if n not in observed})
        return to_inference_data(out, observed, constant, lowered.replicates, prior, prior_predictive)


def compile(source: str, filename: str = "<model>") -> Model:  # noqa: A001 - the public name
    """Compile model source text."""
    return Model(source, filename)


def load(path: Union[str, Path]) -> Model:
    """Compile a .ppl file."""
    p = Path(path)
    return Model(p.read_text(), str(path))
