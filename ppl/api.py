"""The Python embedding API.

    import ppl
    model = ppl.load("examples/eight_schools.ppl")
    idata = model.sample({"J": 8, "y": [...], "sigma": [...]}, chains=4, draws=1000)
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Union

import jax
import numpy as np

from .check.checker import check
from .check.data import BoundData, bind_data, load_json
from .ir.graph import ModelGraph, build_graph
from .lower.model import LoweredModel
from .lower.random import rng_key
from .passes.base import Plan, choose, passes
from .runtime.cache import enable_compilation_cache
from .runtime.progress import Progress
from .runtime.results import to_inference_data
from .syntax.parser import parse

DataLike = Union[str, Path, Dict[str, Any], None]


class Model:
    """A compiled model: parsed, checked and turned into a graph; lowered per data shapes."""

    def __init__(self, source: str, filename: str = "<model>"):
        self.source = source
        self.filename = filename
        self.program = parse(source, filename)
        self.checked = check(self.program)
        self.graph: ModelGraph = build_graph(self.checked)
        self.warnings = list(self.checked.warnings)
        self._lowered: Dict[str, LoweredModel] = {}
        self._programs: Dict[tuple, Any] = {}
        self._validated: Dict[tuple, Dict[str, Any]] = {}
        self._plans: Dict[str, Plan] = {}

    def __repr__(self):
        return f"<ppl.Model {self.filename}: {len(self.graph.latents())} latent(s)>"

    # ------------------------------------------------------------ data and lowering
    def bind(self, data: DataLike) -> BoundData:
        name = "the data"
        if isinstance(data, (str, Path)):
            name = Path(data).name
            data = load_json(str(data))
        return bind_data(self.checked, dict(data or {}), name)

    def lower(self, data: DataLike, defer_checks: bool = False) -> LoweredModel:
        bound = self.bind(data)
        sig = _signature(bound)
        lowered = self._lowered.get(sig)
        if lowered is None:
            lowered = LoweredModel(self.graph, bound, defer_checks=defer_checks)
            self._lowered[sig] = lowered
        else:
            lowered = lowered.with_data(bound)
        lowered.signature = sig
        return lowered

    def plan(self, method: str = "auto") -> Plan:
        # the choice depends on the graph alone, and diagnosing every pass costs ~1 ms a call
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
               warmup: int = 1000, seed: int = 0, progress: bool = False, validate: bool = True,
               **options):
        """Run inference; returns arviz.InferenceData."""
        enable_compilation_cache()
        _import_arviz_in_background()
        lowered = self.lower(data, defer_checks=True)
        plan = self.plan(method)
        p = passes()[plan.method]
        opts = dict(options, chains=chains, draws=draws, warmup=warmup)
        key = (lowered.signature, plan.method, tuple(sorted((k, repr(v)) for k, v in opts.items())))
        program = self._programs.get(key)
        if program is None:
            program = p.transform(lowered, opts)
            self._programs[key] = program
        program.lowered.data_arrays = lowered.data_arrays
        lowered.check_data()  # compiles while the program's own compilation runs in background
        if validate and (lowered.signature, plan.method) not in self._validated:
            self._validated[(lowered.signature, plan.method)] = p.validate(program, rng_key(seed))
        bar = Progress(f"{plan.method}", min_seconds=1.0) if progress else None
        draws_out = program.run(seed=seed, progress=bar)
        draws_out.attrs.setdefault("inference_method", plan.method)
        observed = {n: lowered.data.arrays.get(n, lowered.data.static.get(n))
                    for n in lowered.observed_names}
        constant = {n: v for n, v in lowered.data.arrays.items() if n not in observed}
        idata = to_inference_data(draws_out, {k: np.asarray(v) for k, v in observed.items()}, constant)
        idata.attrs = getattr(idata, "attrs", {})
        self.last_warnings = list(draws_out.warnings)
        self.last_plan = plan
        return idata


def _import_arviz_in_background():
    """arviz takes a second or two to import; overlap it with compilation."""
    import sys
    import threading
    if "arviz" not in sys.modules:
        from .runtime.results import _arviz
        threading.Thread(target=_arviz, daemon=True).start()


def _signature(b: BoundData) -> str:
    h = hashlib.sha1()
    h.update(repr(sorted(b.static.items())).encode())
    for k in sorted(b.arrays):
        h.update(f"{k}:{b.arrays[k].shape}:{b.arrays[k].dtype}".encode())
    for k in sorted(b.fixed):
        h.update(k.encode() + np.ascontiguousarray(b.fixed[k]).tobytes())
    return h.hexdigest()


def compile(source: str, filename: str = "<model>") -> Model:  # noqa: A001 - the public name
    """Compile model source text."""
    return Model(source, filename)


def load(path: Union[str, Path]) -> Model:
    """Compile a .ppl file."""
    p = Path(path)
    return Model(p.read_text(), str(path))
