"""The `enumerate` pass: exact posteriors of models whose latents are all finite and discrete.

The program evaluates the model's log density with the discrete latents given (the evaluator's
discrete-latent hook, `ppl.lower.marginalize.discrete_latent`) on every joint configuration —
vectorised, in chunks (`ppl.algorithms.enumeration.enumerate_joint`) — and returns the exact
log evidence, the exact marginal probabilities of every element, and draws sampled from the
exact posterior (chains × draws, so the usual summaries work). Contract: "exact".
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms.enumeration import SupportTooLarge, enumerate_joint
from ..ir.discrete import analyze
from ..ir.graph import ModelGraph
from ..lower.evaluator import Evaluator
from ..lower.marginalize import Marginalizer, ProbeSource, ValuesSource, support_range
from ..lower.validation import check_agreement
from ..lower.model import LoweredModel, _FlatSource, _seed_of
from ..lower.random import rng_key, split, split_keys
from ..syntax.errors import PPLError, PPLRuntimeError
from .base import Diagnosis, Draws, InferencePass, register

DEFAULT_MAX_SIZE = 10 ** 7


class EnumerateProgram:
    contract = "exact"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, max_size=DEFAULT_MAX_SIZE):
        self.lowered = lowered
        self.chains, self.draws = chains, draws
        self.max_size = max_size
        self.supports = discrete_supports(lowered)  # name -> (shape, lowest value, K)
        sizes = {n: K ** math.prod(shape) for n, (shape, lo, K) in self.supports.items()}
        total = math.prod(sizes.values())
        if total > max_size:
            e = SupportTooLarge(total, max_size, sizes)
            raise PPLRuntimeError(str(e), None,
                                  "use --method nuts (discrete latents are summed out when they "
                                  "are independent or form a chain), or a smaller model")
        self.result = None
        self._deterministic = jax.jit(jax.vmap(self._deterministic_at, in_axes=(0, None)))
        self._generated = jax.jit(jax.vmap(lowered.generated, in_axes=(0, 0, None)))

    def values_of(self, codes):
        return {n: (codes[n] + lo).astype(jnp.int32) for n, (shape, lo, K) in self.supports.items()}

    def log_joint(self, data_arrays) -> Callable:
        lowered = self.lowered
        return lambda codes: lowered.log_density_given(jnp.zeros((0,)), data_arrays, self.values_of(codes))

    def _deterministic_at(self, values, data_arrays):
        lw = self.lowered
        src = ValuesSource(_FlatSource(jnp.zeros((0,)), lw.slot_by_name), values)
        ev = Evaluator(lw.graph, "density", lw.base_env(data_arrays), src, fixed=lw.fixed_names)
        ev.exec(lw.graph.body)
        return {n: ev.env[n] for n in lw.deterministic_names if n in ev.env}

    def solve(self, data_arrays=None):
        data_arrays = self.lowered.data_arrays if data_arrays is None else data_arrays
        spec = {n: (shape, K) for n, (shape, lo, K) in self.supports.items()}
        self.result = enumerate_joint(self.log_joint(data_arrays), spec, self.max_size)
        if not np.isfinite(float(self.result.log_evidence)):
            raise PPLRuntimeError("every configuration of the discrete latents has probability zero "
                                  "given the data", None, "check the data against the model")
        return self.result

    def marginals(self) -> Dict[str, np.ndarray]:
        """name -> (*shape, K) exact posterior probabilities of the values lo, lo+1, …"""
        return {n: np.asarray(p) for n, p in self.result.marginals.items()}

    def run(self, seed: int = 0, progress: Optional[Callable[[int, int], None]] = None) -> Draws:
        data = self.lowered.data_arrays
        res = self.solve(data)
        k_draw, k_gen = split_keys(rng_key(seed), 2)
        n = self.chains * self.draws
        values = self.values_of(res.sample(k_draw, n))
        shape = (self.chains, self.draws)
        posterior = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in values.items()}
        det = self._deterministic(values, data)
        posterior.update({k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in det.items()})
        predictive = {}
        if self.lowered.generated_names:
            gen = self._generated(split(k_gen, n), values, data)
            predictive = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in gen.items()}
        marg = {name: {"values": list(range(lo, lo + K)),
                       "probabilities": np.round(self.marginals()[name], 15).tolist()}
                for name, (shape, lo, K) in self.supports.items()}
        attrs = {"inference_method": "enumerate", "log_evidence": float(res.log_evidence),
                 "configurations": int(res.size), "marginals": json.dumps(marg)}
        return Draws(posterior, {}, predictive, attrs=attrs)


def discrete_supports(lowered: LoweredModel) -> Dict[str, tuple]:
    """name -> (shape, lowest value, number of values) for every discrete latent.

    Read while tracing the program once (shapes and supports are static there).
    """
    graph = lowered.graph
    analysis = analyze(graph)
    out: Dict[str, tuple] = {}

    def probe_fn(u, data_arrays):
        probe = ProbeSource(_FlatSource(u, lowered.slot_by_name))
        ev = Evaluator(graph, "density", lowered.base_env(data_arrays), probe, fixed=lowered.fixed_names)
        ev.exec(graph.body)
        for v in graph.discrete_latents():
            if v.name in lowered.fixed_names:
                continue
            shape, support = probe.discrete_seen.get(v.name, ((), None))
            t = v.type
            if t is not None and t.bound("lower") is not None and t.bound("upper") is not None:
                try:
                    lo, hi = int(ev.expr(t.bound("lower"))), int(ev.expr(t.bound("upper")))
                except Exception:
                    raise PPLError(f'the bounds of "{v.name}" must be known before inference', v.span,
                                   None, graph.program.source, graph.program.filename) from None
                lo, K = lo, hi - lo + 1
            elif support is not None:
                lo, K = support_range(support, v.name)
            elif v.name in analysis.plans:
                _, lo, K = Marginalizer(lowered, analysis).layout[v.name]
            else:
                raise PPLError(f'enumerate needs to know the values of "{v.name}" before inference',
                               v.span, f"declare bounds, e.g. `{v.name}: int<lower=1, upper=K>[N]`",
                               graph.program.source, graph.program.filename)
            out[v.name] = (tuple(shape), lo, K)
        return 0.0

    jax.eval_shape(probe_fn, jnp.zeros((lowered.dim,)), lowered.data_arrays)
    return out


class EnumeratePass(InferencePass):
    name = "enumerate"
    contract = "exact"
    summary = "exact posterior by enumerating every configuration of finite discrete latents"

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        latents = graph.variables("latent")
        for v in graph.variables("param"):
            return Diagnosis(False, f'enumerate needs every random variable discrete with finite '
                             f'support: "{v.name}" (line {v.span.line}) is a param', v.span)
        if not latents:
            return Diagnosis(False, "the model has no random variables to infer")
        for v in latents:
            if v.stochastic_size:
                return Diagnosis(False, f'"{v.name}" (line {v.span.line}) has a size that is random',
                                 v.span)
            if not v.discrete:
                return Diagnosis(False, f'enumerate needs every latent discrete: "{v.name}" '
                                 f"(line {v.span.line}) is continuous", v.span)
            if not v.finite:
                return Diagnosis(False, f'"{v.name}" (line {v.span.line}) is drawn from '
                                 f"{', '.join(v.dists)}, whose support is unbounded: declare bounds "
                                 f"(`{v.name}: int<lower=0, upper=20>`) to enumerate it", v.span)
        return Diagnosis(True, f"{len(latents)} discrete latent(s) with finite support: exact "
                         "enumeration of the joint configurations")

    def transform(self, lowered: LoweredModel, options: Dict[str, Any]) -> EnumerateProgram:
        keys = ("chains", "draws", "max_size")
        return EnumerateProgram(lowered, **{k: options[k] for k in keys if k in options})

    def validate(self, program: EnumerateProgram, key) -> Dict[str, Any]:
        """The enumerated log joint at random configurations = numpyro's density there."""
        lw = program.lowered
        f = jax.jit(program.log_joint(lw.data_arrays))
        # configurations from numpy: drawing them with JAX would compile a generator for this
        rng = np.random.default_rng(_seed_of(key))
        worst = 0.0
        for i in range(3):
            codes = {n: jnp.asarray(rng.integers(0, K, shape))
                     for n, (shape, lo, K) in program.supports.items()}
            a = float(f(codes))
            b = float(_reference_log_joint(lw, program.values_of(codes)))
            worst = max(worst, check_agreement(
                a, b, "the enumerated log joint against numpyro's reference", rtol=1e-8, atol=0.0))
        return {"checked": True, "points": 3, "max_abs_diff": worst}


def _reference_log_joint(lowered, values):
    import numpyro
    from numpyro.infer.util import log_density

    def model():
        src = ValuesSource(_FlatSource(jnp.zeros((0,)), lowered.slot_by_name), values)
        ev = Evaluator(lowered.graph, "reference", lowered.base_env(lowered.data_arrays), src,
                       fixed=lowered.fixed_names)
        ev.exec(lowered.graph.body)

    with numpyro.handlers.seed(rng_seed=0):
        lp, _ = log_density(model, (), {}, {})
    return lp


register(EnumeratePass())
