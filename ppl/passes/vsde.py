"""The `vsde` pass: a latent process `x: process<end=T> ~ sde(…)` with Brownian or fractional
(MA-fBM) noise, fitted by variational inference.

Rewrite: none. Lowering: `ppl.lower.process.ProcessModel` reads the problem off the IR (drift,
diffusion, initial law, noise, static latents with their priors, observation times, the
likelihood of the observed sites given the path). Program: `ppl.algorithms.latent_sde` — a
posterior SDE with the prior's diffusion and a learned control (network, zero at the start),
Gaussian variational posteriors for the static latents (drift parameters, diffusion scale, H),
the ELBO maximised by Adam (optax) on Monte Carlo paths. Output: posterior draws of the static
latents and of the path on the time grid (the `<name>_time` coordinate), the per-draw ELBO term,
and the ELBO history (group `vi`); the final ELBO ± its Monte Carlo se in the run's attributes.
Contract: elbo-bound (the ELBO is a lower bound on log p(y) of the discretised model).
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Dict, List, Optional

import jax
import numpy as np

from ..algorithms import latent_sde as L
from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..lower import process as _process  # registers the process statements with the interpreter
from ..lower.model import LoweredModel
from ..lower.random import rng_key
from ..syntax.errors import PPLInternalError, PPLRuntimeError
from ..syntax.visit import walk
from .base import Diagnosis, Draws, InferencePass

# option -> (engine option, type)
_ENGINE = {"dt": float, "paths": int, "scheme": str, "learning_rate": float, "steps": int,
           "kl_anneal_steps": int, "step_variance": bool, "y0": str}


def process_draws(graph: ModelGraph):
    return [s for s in graph.ir.body if isinstance(s, N.ProcessDraw)]


def has_process(graph: ModelGraph) -> bool:
    return any(v.kind == "process" for v in graph.ir.variables.values())


def data_fingerprint(data_arrays) -> str:
    """A digest of the data's values (the program bakes them into its problem)."""
    h = hashlib.sha1()
    for k in sorted(data_arrays):
        h.update(k.encode() + np.ascontiguousarray(np.asarray(data_arrays[k])).tobytes())
    return h.hexdigest()


class VSDEProgram:
    contract = "elbo-bound"

    def __init__(self, lowered: LoweredModel, options: Dict[str, Any]):
        self.lowered = lowered
        self.options = dict(options)
        self.fingerprint = data_fingerprint(lowered.data_arrays)
        self.model = _process.ProcessModel(lowered)
        engine = {k: t(options[k]) for k, t in _ENGINE.items() if k in options}
        if "hidden" in options:
            engine["hidden"] = (int(options["hidden"]),) * 2
        self.draws = int(options.get("draws", 1000))
        self.eval_paths = int(options.get("eval_paths", 4096))
        self.max_steps = options.get("max_steps")
        estimate = str(options.get("estimate", "variational"))
        if estimate not in ("variational", "point"):
            raise PPLRuntimeError(f'--option estimate={estimate}: it is "variational" or "point"',
                                  None, None)
        try:
            self.problem = self.model.problem(estimate)
            self.algo = L.build(self.problem, L.Options(**engine))
        except ValueError as e:
            raise PPLRuntimeError(f"vsde cannot set up this model: {e}", self.model.stmt.span, None,
                                  lowered.ir.source, lowered.ir.filename) from None

    def run(self, data_arrays, seed: int = 0,
            progress: Optional[Callable[[int, int], None]] = None) -> Draws:
        if data_fingerprint(data_arrays) != self.fingerprint:
            # the problem holds the data's values (observations, times, constants such as H):
            # other values of the same shapes (a program reused by Model.sample) rebuild it
            lowered = copy.copy(self.lowered)
            lowered.data_arrays = dict(data_arrays)
            self.__init__(lowered, self.options)
        algo = self.algo
        steps = int(self.max_steps or algo.options.steps)
        label = getattr(progress, "label", None)

        def report(done, metrics):
            if progress is None:
                return
            if label is not None:  # the running ELBO leads the bar (or the line without one)
                progress.label = f"vsde ELBO {metrics['elbo']:.3f}"
            try:
                progress(done, steps, phase="maximising the ELBO", unit="steps")
            except TypeError:  # a plain (done, total) callable
                progress(done, steps)

        key = rng_key(seed)
        k_fit, k_draw = jax.random.split(key)
        try:
            res = L.fit(k_fit, algo, max_steps=steps, progress=report, eval_paths=self.eval_paths)
        except FloatingPointError as e:
            raise PPLRuntimeError(f"vsde: {e}", self.model.stmt.span,
                                  "try a smaller step (--option dt=0.005) or a smaller learning "
                                  "rate (--option learning_rate=0.003)", self.lowered.ir.source,
                                  self.lowered.ir.filename) from None
        if progress is not None and res.steps < steps:
            report(steps, {"elbo": float(res.history["elbo"][-1])})  # converged early
        dr = algo.sample_paths(res.state, k_draw, self.draws)
        m = self.model
        path = dr["x"] if m.shape else dr["x"][..., 0]
        posterior = {name: np.asarray(v)[None] for name, v in dr["theta"].items()}
        posterior[m.name] = np.asarray(path)[None]
        stats = {"elbo": np.asarray(dr["elbo"])[None]}
        hist = res.history
        vi = {k: np.asarray(hist[k]) for k in ("elbo", "elbo_se", "loglik", "kl", "beta") if k in hist}
        vi[f"{m.name}_time"] = np.asarray(dr["times"]) + m.start
        attrs = {"inference_method": "vsde", "elbo": res.elbo.elbo, "elbo_se": res.elbo.se,
                 "elbo_paths": res.elbo.paths, "elbo_loglik": res.elbo.log_likelihood,
                 "elbo_kl": res.elbo.kl, "vi_steps": res.steps, "vi_converged": int(res.converged),
                 "vi_seconds": res.seconds, "dt": algo.options.dt, "scheme": algo.options.scheme,
                 "noise": type(self.problem.noise).__name__}
        out = Draws(posterior, stats, attrs=attrs)
        out.groups = {"vi": vi}
        if not res.converged:
            out.warnings.append(f"vsde: the ELBO was still improving after {res.steps} steps "
                                f"(--option max_steps=… for more)")
        return out

    def validate(self, key):
        state = self.algo.init(key)
        checks = L.validate(self.algo, state, key, paths=256)
        bad = [k for k, v in checks.items() if not v.get("ok", True)]
        if bad:
            raise PPLInternalError(f"vsde translation validation failed: {bad}: {checks}")
        return checks


class VSDEPass(InferencePass):
    name = "vsde"
    contract = "elbo-bound"
    summary = ("variational inference for a latent SDE (Brownian or fractional noise): posterior "
               "SDE with a learned control, ELBO by Adam on Monte Carlo paths")
    options = {
        "dt": "largest time step (0.01)",
        "paths": "Monte Carlo paths per gradient step (64)",
        "steps": "length of the learning-rate schedule (4000)",
        "max_steps": "gradient steps at most (the schedule's length)",
        "learning_rate": "Adam's initial learning rate (0.01, cosine decay)",
        "scheme": "heun or euler for the state (heun)",
        "hidden": "width of the control network's two hidden layers (64)",
        "kl_anneal_steps": "steps over which the KL weight rises from 0 to 1 (0)",
        "step_variance": "let the posterior scale each step's noise (true)",
        "y0": "MA-fBM type I: prior or variational initial OU states (prior)",
        "estimate": "static variables: variational (Gaussian) or point (variational)",
        "eval_paths": "paths for the final ELBO estimate (4096)",
    }

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        procs = process_draws(graph)
        if not procs:
            return Diagnosis(False, "the model has no process (x: process<end=T> ~ sde(…))")
        if len(procs) > 1:
            s = procs[1]
            return Diagnosis(False, f'vsde runs one process; "{s.target.name}" (line {s.span.line}) '
                             "is a second one", s.span)
        for v in graph.ir.variables.values():
            if v.kind == "param":
                return Diagnosis(False, f'vsde needs a prior on every static variable: "{v.name}" '
                                 f"(line {v.span.line}) is a param", v.span)
            if v.kind == "latent" and v.discrete:
                return Diagnosis(False, f'vsde needs continuous static variables: "{v.name}" '
                                 f"(line {v.span.line}) is discrete", v.span)
        for s in graph.statements():
            st = s.stmt
            if isinstance(st, N.Draw) and st.role == "latent" and not isinstance(st, N.ProcessDraw) \
                    and (s.plates or st.target.indices):
                return Diagnosis(False, f'vsde needs static variables drawn whole at the top level: '
                                 f'"{st.target.name}" (line {st.span.line}) is drawn element by '
                                 "element", st.span)
        for s in graph.ir.body:
            if type(s) is N.Draw and s.role == "latent":
                for x in walk(s.dist):
                    if isinstance(x, N.Ref) and x.role in ("latent", "deterministic"):
                        return Diagnosis(False, f'vsde needs priors from numbers and data: the prior '
                                         f'of "{s.target.name}" (line {s.span.line}) reads '
                                         f'"{x.name}"', x.span)
        p = procs[0]
        n_static = len([s for s in graph.ir.body if type(s) is N.Draw and s.role == "latent"])
        noise = "MA-fBM noise" if p.dist.noise.kind == "fbm" else "Brownian noise"
        return Diagnosis(True, f'process "{p.target.name}" with {noise}, {n_static} static random '
                         "variable(s): variational inference (ELBO)")

    def build(self, lowered: LoweredModel, options: Dict[str, Any]) -> VSDEProgram:
        return VSDEProgram(lowered, options)

    def validate(self, program: VSDEProgram, key) -> Dict[str, Any]:
        return program.validate(key)

    def check_data(self, lowered: LoweredModel) -> List[str]:
        pm = _process.ProcessModel(lowered)  # the process's data checks (ppl/lower/process.py)
        return [f'data: ok (process "{pm.name}": {len(pm.obs_times)} observation time(s) in '
                f"({pm.start:g}, {pm.end:g}]; {len(pm.statics)} static random variable(s))"]

    def describe(self, graph: ModelGraph):
        out = []
        for p in process_draws(graph):
            sde = p.dist
            src = graph.ir.source.splitlines() if graph.ir.source else []
            line = src[p.span.line - 1].strip() if 0 < p.span.line <= len(src) else ""
            out.append(f'process "{p.target.name}" (line {p.span.line}): {line}')
            n = sde.noise
            if n.kind == "fbm":
                settings = ", ".join(f"{k}" for k, _ in n.settings)
                learned = isinstance(n.hurst, N.Ref) and n.hurst.role == "latent"
                out.append("  noise: MA-fBM (Markov approximation by K OU processes"
                           + (f"; settings: {settings}" if settings else "; K = 5, gamma_max = 20, "
                              "type I") + ")" + ("; H learned (variational posterior)" if learned else ""))
            else:
                out.append("  noise: Brownian")
            statics = [s.target.name for s in graph.ir.body if type(s) is N.Draw and s.role == "latent"]
            out.append("  static variables (Gaussian variational posteriors): "
                       + (", ".join(statics) or "none"))
            out.append("  vsde: posterior SDE = prior drift + diffusion × learned control, same "
                       "diffusion; ELBO = E log p(y | x) − KL(x0) − E ∫ ½|u|² dt; Adam on 64 "
                       "paths, Heun steps ≤ 0.01 (exact OU steps for MA-fBM)")
        return out
