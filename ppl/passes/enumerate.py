"""The `enumerate` pass: exact posteriors of models whose latents are all finite and discrete.

The program evaluates the model's log density with the discrete latents given (`Substitute`)
on every joint configuration — vectorised, in chunks (`ppl.algorithms.enumeration.enumerate_joint`)
— and returns the exact log evidence, the exact marginal probabilities of every element, and
draws sampled from the exact posterior (chains × draws, so the usual summaries work).
Contract: "exact".
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms.enumeration import SupportTooLarge, enumerate_joint
from ..ir.graph import ModelGraph
from ..lower.handlers import Handler, Substitute, Unconstrain
from ..lower.marginal import support_range
from ..lower.model import LoweredModel, seed_of
from ..lower.random import rng_key, split, split_keys
from ..lower.validation import check_agreement
from ..syntax.errors import PPLError, PPLRuntimeError
from .base import Diagnosis, Draws, InferencePass, validation_lines

DEFAULT_MAX_SIZE = 10 ** 7


class EnumerateProgram:
    contract = "exact"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, max_size=DEFAULT_MAX_SIZE):
        self.lowered = lowered
        self.chains, self.draws = int(chains), int(draws)
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
        it = lw.run([Substitute(values), Unconstrain(lw.layout, jnp.zeros((0,)))], data_arrays)
        return {n: it.env[n] for n in lw.deterministic_names if n in it.env}

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

    def run(self, data_arrays, seed: int = 0,
            progress: Optional[Callable[[int, int], None]] = None) -> Draws:
        res = self.solve(data_arrays)
        k_draw, k_gen = split_keys(rng_key(seed), 2)
        n = self.chains * self.draws
        values = self.values_of(res.sample(k_draw, n))
        shape = (self.chains, self.draws)
        posterior = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in values.items()}
        det = self._deterministic(values, data_arrays)
        posterior.update({k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in det.items()})
        predictive = {}
        if self.lowered.generated_names:
            gen = self._generated(split(k_gen, n), values, data_arrays)
            predictive = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in gen.items()}
        marg = {name: {"values": list(range(lo, lo + K)),
                       "probabilities": np.round(self.marginals()[name], 15).tolist()}
                for name, (shape, lo, K) in self.supports.items()}
        attrs = {"inference_method": "enumerate", "log_evidence": float(res.log_evidence),
                 "configurations": int(res.size), "marginals": json.dumps(marg)}
        return Draws(posterior, {}, predictive, attrs=attrs)

    def validate(self, key):
        """The enumerated log joint at random configurations = numpyro's density there."""
        lw = self.lowered
        f = jax.jit(self.log_joint(lw.data_arrays))
        # configurations from numpy: drawing them with JAX would compile a generator for this
        rng = np.random.default_rng(seed_of(key))
        worst = 0.0
        for _ in range(3):
            codes = {n: jnp.asarray(rng.integers(0, K, shape))
                     for n, (shape, lo, K) in self.supports.items()}
            a = float(f(codes))
            b = float(lw.reference_log_density(jnp.zeros((0,)), lw.data_arrays,
                                               handlers=[Substitute(self.values_of(codes))]))
            worst = max(worst, check_agreement(
                a, b, "the enumerated log joint against numpyro's reference", rtol=1e-8, atol=0.0))
        return {"checked": True, "points": 3, "max_abs_diff": worst}


class _DiscreteProbe(Handler):
    """Records the shape and support of every discrete latent, and the supports of the
    distributions its elements are drawn from."""

    def __init__(self):
        self.declared: Dict[str, Any] = {}
        self.drawn: Dict[str, list] = {}

    def process(self, site):
        if not site.discrete:
            return
        if site.kind == "value" and site.shape is not None:
            self.declared[site.name] = (tuple(site.shape), site.constraint)
        if site.kind in ("value", "draw") and site.dist is not None:
            self.drawn.setdefault(site.name, []).append(site.dist.support)
        if site.value is None:
            site.key = jax.random.PRNGKey(0)  # values only shape the trace here


def discrete_supports(lowered: LoweredModel) -> Dict[str, tuple]:
    """name -> (shape, lowest value, number of values) for every discrete latent.

    Read while tracing the program once (shapes and supports are static there)."""
    probe = _DiscreteProbe()
    out: Dict[str, tuple] = {}
    jax.eval_shape(lambda d: lowered.run([probe], d).lp, lowered.data_arrays)
    for v in lowered.graph.discrete_latents():
        if v.name in lowered.fixed_names:
            continue
        shape, c = probe.declared.get(v.name, ((), None))
        try:
            if c is not None and hasattr(c, "upper_bound"):
                lo, K = support_range(c, v.name)
            else:
                ranges = [support_range(s, v.name) for s in probe.drawn.get(v.name, [])]
                if not ranges:
                    raise PPLError("no support", None)
                lo = min(r[0] for r in ranges)
                K = max(r[0] + r[1] for r in ranges) - lo
        except PPLError:
            raise PPLError(f'enumerate needs to know the values of "{v.name}" before inference',
                           v.span, f"declare bounds, e.g. `{v.name}: int<lower=1, upper=K>[N]`",
                           lowered.ir.source, lowered.ir.filename) from None
        out[v.name] = (tuple(shape), lo, K)
    return out


class EnumeratePass(InferencePass):
    name = "enumerate"
    contract = "exact"
    summary = "exact posterior by enumerating every configuration of finite discrete latents"
    options = {"max_size": f"largest number of joint configurations ({DEFAULT_MAX_SIZE:,})"}

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

    def build(self, lowered: LoweredModel, options: Dict[str, Any]) -> EnumerateProgram:
        keys = ("chains", "draws", "max_size")
        return EnumerateProgram(lowered, **{k: options[k] for k in keys if k in options})

    def validate(self, program: EnumerateProgram, key) -> Dict[str, Any]:
        return program.validate(key)

    def check_data(self, lowered: LoweredModel) -> List[str]:
        res = self.validate(self.build(lowered, {"chains": 1}), 0)
        return [f"data: ok ({lowered.dim} unconstrained dimensions)"] + validation_lines(res)
