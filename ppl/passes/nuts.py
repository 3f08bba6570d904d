"""The `nuts` pass: static continuous models → NUTS chains on the flat unconstrained vector.

Rewrite: finite discrete latents are summed out of the density where the discrete analysis
finds the structure (`ppl.ir.rewrites.marginalize`); their posterior comes back per draw.
Program: NumPyro's NUTS kernel driven by `ppl.algorithms.nuts.NutsSampler`.
Contract: target-invariant.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

import numpy as np

from ..algorithms.devices import gather_chains, process_share
from ..algorithms.nuts import LANES, NutsSampler, NutsTrace
from ..ir import nodes as N
from ..ir.discrete import analyze
from ..ir.graph import ModelGraph
from ..ir.rewrites import marginalize
from ..lower.model import LoweredModel
from ..lower.random import chain_keys
from ..lower.validation import located_problems, validate_density
from ..syntax.errors import PPLRuntimeError
from .base import Diagnosis, Draws, Finalize, InferencePass
from .smc import SMCPass


class NutsProgram:
    contract = "target-invariant"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, warmup=1000,
                 target_accept=0.8, max_tree_depth=10, dense_mass=False, chunks=10,
                 log_likelihood="auto", devices=None):
        self.lowered = lowered
        self.chains, self.draws, self.warmup = int(chains), int(draws), int(warmup)
        self.max_tree_depth = max_tree_depth
        self.state_space = False  # a state-space model smc can run (NutsPass.build says)
        potential = lambda u, data: -lowered.log_density(u, data)  # noqa: E731
        total = self.warmup + self.draws
        # with several processes (jax.distributed) each runs its share of the chains, from the
        # same per-chain keys (a whole number of vmap groups, so chain c keeps its lane), and
        # `run` gathers them all
        self.first, self.count, _ = process_share(self.chains, LANES)
        self.sampler = NutsSampler(potential, self.warmup, self.draws, target_accept, max_tree_depth,
                                   dense_mass, chunk=max(1, -(-total // chunks)),
                                   num_chains=self.count, devices=devices)
        self._precompiling = None
        self.finalize = Finalize(lowered, log_likelihood)

    def _keys(self, seed):
        """This process's chains' (init, run) keys, each from (seed, chain) alone."""
        lo, hi = self.first, self.first + self.count
        return chain_keys(seed, self.chains, "init")[lo:hi], chain_keys(seed, self.chains, "run")[lo:hi]

    def precompile_in_background(self, data_arrays):
        """Start compiling now, on two threads (XLA compiles outside the GIL): the sampling
        kernel on one, initialisation and the output transform on the other. `run` waits."""
        init_keys, keys = self._keys(0)
        dim = self.lowered.dim

        def kernel():
            self.sampler.precompile(init_keys, keys, data_arrays, dim)

        def rest():
            self.sampler.precompile_start(init_keys, keys, data_arrays, dim)
            self.finalize.precompile(self.chains * self.draws, data_arrays)

        def guarded(f):
            def run():
                try:
                    f()
                except Exception:  # noqa: BLE001 - run() then compiles the ordinary way
                    pass
            return run

        self._precompiling = [threading.Thread(target=guarded(f), daemon=True) for f in (kernel, rest)]
        for t in self._precompiling:
            t.start()

    def wait(self):
        if self._precompiling is not None:
            for t in self._precompiling:
                t.join()
            self._precompiling = None

    def run(self, data_arrays, seed: int = 0, progress: Optional[Callable[..., None]] = None) -> Draws:
        init_keys, keys = self._keys(seed)
        tries = 20
        self.wait()
        dim = self.lowered.dim
        state, ok, cand = self.sampler.start(init_keys, keys, data_arrays, dim, tries)
        if not bool(ok):
            problems = located_problems(self.lowered, np.asarray(cand)[0, 0], data_arrays)
            raise PPLRuntimeError(
                f"no finite starting point: the log density or its gradient is -inf or NaN at all "
                f"{tries} random points tried per chain (uniform in [-2, 2] on the unconstrained scale)",
                problems[0][1] if problems else None,
                "check that the data lie in the support of the likelihood and that every scale "
                "is positive", self.lowered.ir.source, self.lowered.ir.filename,
                notes=[text for text, _ in problems])
        if progress is not None:  # compiled: warm-up starts
            progress(0, self.warmup + self.draws, phase="warm-up" if self.warmup else "sampling",
                     chains=self.chains)
        trace, warm = self.sampler.run(state, data_arrays, progress)
        trace = NutsTrace(*gather_chains(tuple(trace), self.chains, LANES))
        if progress is not None:  # compiling and computing these can take a while
            progress(0, 0, phase="generated quantities and log-likelihood")
        flat = trace.z.reshape(-1, dim)
        posterior, predictive = self.finalize(flat, self.chains, self.draws, data_arrays, seed)
        log_lik, notes = self.finalize.log_likelihood(flat, self.chains, self.draws, data_arrays)
        # ArviZ's names (az.bfmi and az.plot_energy read `energy`)
        stats = {
            "lp": -np.asarray(trace.potential_energy),
            "energy": np.asarray(trace.energy),
            "diverging": np.asarray(trace.diverging),
            "n_steps": np.asarray(trace.num_steps),
            "acceptance_rate": np.asarray(trace.accept_prob),
            "step_size": np.asarray(trace.step_size),
            "tree_depth": np.asarray(trace.tree_depth),
        }
        out = Draws(posterior, stats, predictive, log_likelihood=log_lik,
                    attrs={"inference_method": "nuts", "markov_chain": 1})
        if notes:
            out.attrs["log_likelihood_omitted"] = "; ".join(notes)
        n_div = int(stats["diverging"].sum())
        if n_div and self.state_space:
            out.warnings.append(
                f"{n_div} of {self.chains * self.draws} transitions after warm-up diverged: the "
                "posterior may be biased there. This is a state-space model: --method smc filters "
                "the latent state instead of crossing the funnel between the trajectory and its "
                "scale (particle Gibbs for the static parameters)")
        elif n_div:
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

    def validate(self, key):
        return validate_density(self.lowered, key)


class NutsPass(InferencePass):
    name = "nuts"
    contract = "target-invariant"
    summary = "No-U-Turn sampler on all continuous latents (NumPyro's kernel, chains vmapped)"
    options = {"target_accept": "target acceptance probability of warm-up's step size (0.8)",
               "max_tree_depth": "largest tree depth (10)",
               "dense_mass": "adapt a dense mass matrix (false)",
               "devices": "devices of this process the chains are spread over (one per core)"}

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        for v in graph.variables("latent"):
            if v.stochastic_size:
                return Diagnosis(False, f'"{v.name}" (line {v.span.line}) has a size that is random',
                                 v.span)
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

    def rewrite(self, ir: N.ModelIR, options: Dict[str, Any]) -> N.ModelIR:
        return marginalize(ir)

    def build(self, lowered: LoweredModel, options: Dict[str, Any]) -> NutsProgram:
        keys = ("chains", "draws", "warmup", "target_accept", "max_tree_depth", "dense_mass",
                "log_likelihood", "devices")
        program = NutsProgram(lowered, **{k: options[k] for k in keys if k in options})
        graph, smc = ModelGraph(lowered.source_ir), SMCPass()
        program.state_space = bool(smc.prefer(graph) and smc.diagnose(graph))
        program.precompile_in_background(lowered.data_arrays)
        return program

    def validate(self, program: NutsProgram, key) -> Dict[str, Any]:
        return program.validate(key)

    def describe(self, graph: ModelGraph):
        if not graph.discrete_latents():
            return []
        return ["discrete latents:"] + ["  " + line for line in analyze(graph).describe()]

