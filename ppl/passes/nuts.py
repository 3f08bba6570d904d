"""The `nuts` pass: static continuous models → NUTS chains on the flat unconstrained vector."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms.nuts import NutsSampler
from ..lower.random import rng_key, split, split_keys
from ..ir.graph import ModelGraph
from ..lower.model import LoweredModel
from ..syntax.errors import PPLRuntimeError
from .base import Diagnosis, Draws, InferencePass, register


class NutsProgram:
    contract = "target-invariant"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, warmup=1000,
                 target_accept=0.8, max_tree_depth=10, dense_mass=False, chunks=10):
        self.lowered = lowered
        self.chains, self.draws, self.warmup = chains, draws, warmup
        self.max_tree_depth = max_tree_depth
        potential = lambda u, data: -lowered.log_density(u, data)  # noqa: E731
        self.potential = potential
        total = warmup + draws
        self.sampler = NutsSampler(potential, warmup, draws, target_accept, max_tree_depth,
                                   dense_mass, chunk=max(1, -(-total // chunks)), num_chains=chains)
        self._precompiling = None
        self._evaluate = jax.jit(jax.vmap(lowered.evaluate, in_axes=(0, None)))
        self._generated = jax.jit(jax.vmap(lowered.generated, in_axes=(0, 0, None)))

    def precompile_in_background(self):
        """Start compiling now, on two threads (XLA compiles outside the GIL): the sampling
        kernel on one, initialisation and the output transform on the other. `run` waits."""
        import threading
        k = rng_key(0)
        keys = split(k, self.chains)
        data, dim = self.lowered.data_arrays, self.lowered.dim
        flat = jax.ShapeDtypeStruct((self.chains * self.draws, dim), jnp.result_type(float))

        def kernel():
            self.sampler.precompile(k, keys, data, dim)

        def rest():
            self.sampler.precompile_start(k, keys, data, dim)
            self._evaluate_compiled = self._evaluate.lower(flat, data).compile()

        def guarded(f):
            def run():
                try:
                    f()
                except Exception:  # run() then compiles the ordinary way
                    pass
            return run

        self._precompiling = [threading.Thread(target=guarded(f), daemon=True) for f in (kernel, rest)]
        for t in self._precompiling:
            t.start()

    _evaluate_compiled = None

    def run(self, seed: int = 0, progress: Optional[Callable[[int, int], None]] = None) -> Draws:
        key = rng_key(seed)
        k_init, k_run, k_gen, k_disc = split_keys(key, 4)
        keys = split(k_run, self.chains)
        tries = 20
        if self._precompiling is not None:
            for t in self._precompiling:
                t.join()
            self._precompiling = None
        state, ok = self.sampler.start(k_init, keys, self.lowered.data_arrays, self.lowered.dim, tries)
        if not bool(ok):
            raise PPLRuntimeError(
                f"no finite starting point: the log density or its gradient is -inf or NaN at all "
                f"{tries} random points tried per chain (uniform in [-2, 2] on the unconstrained scale)",
                None, "check that the data lie in the support of the likelihood and that every scale "
                "is positive")
        trace, warm = self.sampler.run(state, self.lowered.data_arrays, progress)
        flat = trace.z.reshape(-1, self.lowered.dim)
        evaluate = self._evaluate_compiled or self._evaluate
        values = evaluate(flat, self.lowered.data_arrays)
        shape = (self.chains, self.draws)
        if self.lowered.marginal is not None:  # summed-out discrete latents: p(z | θ, data) per draw
            dkeys = split(k_disc, flat.shape[0])
            values = dict(values, **jax.jit(jax.vmap(self.lowered.discrete_posterior, (0, 0, None)))(
                dkeys, flat, self.lowered.data_arrays))
        posterior = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in values.items()}
        predictive = {}
        if self.lowered.generated_names:
            gkeys = split(k_gen, flat.shape[0])
            gen = self._generated(gkeys, values, self.lowered.data_arrays)
            predictive = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in gen.items()}
        stats = {
            "lp": -np.asarray(trace.potential_energy),
            "diverging": np.asarray(trace.diverging),
            "n_steps": np.asarray(trace.num_steps),
            "acceptance_rate": np.asarray(trace.accept_prob),
            "step_size": np.asarray(trace.step_size),
            "tree_depth": np.asarray(trace.tree_depth),
        }
        out = Draws(posterior, stats, predictive, attrs={"inference_method": "nuts"})
        n_div = int(stats["diverging"].sum())
        if n_div:
            out.warnings.append(
                f"{n_div} of {self.chains * self.draws} transitions after warm-up diverged: the "
                "posterior may be biased there; try a higher target acceptance (--target-accept 0.95) "
                "or a non-centred parameterisation")
        hit = int((stats["tree_depth"] > self.max_tree_depth).sum())
        if hit:
            out.warnings.append(f"{hit} transitions hit the maximum tree depth {self.max_tree_depth}")
        if not np.isfinite(stats["lp"]).all():
            out.warnings.append("non-finite log density in some draws")
        return out


class NutsPass(InferencePass):
    name = "nuts"
    contract = "target-invariant"
    summary = "No-U-Turn sampler on all continuous latents (NumPyro's kernel, chains vmapped)"

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        for v in graph.variables("latent"):
            if v.stochastic_size:
                return Diagnosis(False, f'"{v.name}" (line {v.span.line}) has a size that is random',
                                 v.span)
        # finite discrete latents are summed out when the IR finds the structure (ir/discrete.py)
        from ..ir.discrete import analyze
        analysis = analyze(graph) if graph.discrete_latents() else None
        for v in graph.variables("latent"):
            if v.discrete and v.name not in analysis.plans:
                why = analysis.reasons.get(v.name, ("it is discrete", None))[0]
                return Diagnosis(False, f'nuts needs continuous latents or discrete ones it can sum '
                                 f'out: "{v.name}" (line {v.span.line}) cannot be: {why}', v.span)
        n = len([v for v in graph.variables("latent", "param") if not v.discrete])
        if n == 0:
            return Diagnosis(False, "the model has no continuous random variables to infer")
        if analysis is not None:
            summed = ", ".join(f"{k} ({p.kind})" for k, p in analysis.plans.items())
            return Diagnosis(True, f"{n} continuous random variable(s); discrete latents summed "
                             f"out of the density: {summed}")
        return Diagnosis(True, f"{n} continuous random variable(s), no discrete ones")

    def transform(self, lowered: LoweredModel, options: Dict[str, Any]) -> NutsProgram:
        keys = ("chains", "draws", "warmup", "target_accept", "max_tree_depth", "dense_mass")
        program = NutsProgram(lowered, **{k: options[k] for k in keys if k in options})
        program.precompile_in_background()
        return program

    def validate(self, program: NutsProgram, key) -> Dict[str, Any]:
        if program.lowered.marginal is not None:
            from ..lower.marginalize import validate_marginal
            return validate_marginal(program.lowered, key)
        return program.lowered.validate(key)


register(NutsPass())
