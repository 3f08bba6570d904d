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
- `check_data(lowered)`: what `ppl check --data` reports for the pass on the model with its data
  (default: the lowered log density against the reference lowering at random points).

Programs run as `program.run(data_arrays, seed, progress)` and return `Draws`. Each declares the
contract its correctness test checks: "exact" (the distribution is unchanged),
"unbiased-evidence" (particle populations), "target-invariant" (MCMC kernels) or "elbo-bound"
(variational).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..lower.random import chain_keys
from ..lower.validation import validate_density
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
    # pointwise log-likelihood per observed variable: (chains, draws, *observed shape)
    log_likelihood: Dict[str, np.ndarray] = field(default_factory=dict)
    attrs: Dict[str, Any] = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    # further groups, arrays without chain/draw axes (e.g. vsde's ELBO history, group "vi")
    groups: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)


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

    def check_data(self, lowered) -> List[str]:
        """What `ppl check --data` prints: the model with its data lowered, and the pass's
        checks at random points."""
        return [f"data: ok ({lowered.dim} unconstrained dimensions)"] + \
            validation_lines(validate_density(lowered, 0))


def validation_lines(res: Dict[str, Any]) -> List[str]:
    """A validator's result (ppl/lower/validation.py) as `ppl check` prints it."""
    lines = []
    if res.get("checked"):
        ref = res.get("reference", "numpyro reference")
        lines.append(f"validation: lowered log density = {ref} at {res['points']} random points "
                     f"(max |difference| {res['max_abs_diff']:.2g})")
    for note in res.get("nonfinite", []):
        lines.append(f"warning: the log density is not finite at the random points: {note}")
    return lines


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


MAX_POINTWISE = 2e7  # draws × elements kept in a run's log_likelihood group and replicated data


class Finalize:
    """Draws of the flat unconstrained vector → what a run reports: the constrained latents and
    deterministic variables (`posterior`), the summed-out discrete latents drawn from their
    conditional posterior, the generated quantities and replicated data (`posterior_predictive`),
    each keyed per chain from (seed, chain) alone; and the pointwise log-likelihood of every
    draw (`log_likelihood`, for `az.loo` and `az.compare`). One compiled transform per lowered
    model, shared by every program that produces flat draws (NUTS, particle Gibbs, PMMH,
    tempered SMC).

    Replicated data: an observed variable the generated block replicates (`y_rep ~ …`, see
    `LoweredModel.replicates`) is reported under its own name as well (`ppl.runtime.results`);
    one it does not is simulated from the model at each draw (a posterior predictive draw of
    the data), so `az.plot_ppc` finds every observed variable."""

    def __init__(self, lowered, log_likelihood="auto", simulate_data="auto"):
        """`log_likelihood`, `simulate_data`: "auto" (computed unless draws × elements exceed
        MAX_POINTWISE), True (always) or False (never)."""
        self.lowered = lowered
        self.evaluate = jax.jit(jax.vmap(lowered.evaluate, in_axes=(0, None)))
        self.generated = jax.jit(jax.vmap(lowered.generated, in_axes=(0, 0, None)))
        self.discrete = jax.jit(jax.vmap(lowered.discrete_posterior, (0, 0, None)))
        self.want = {"log_likelihood": _want(log_likelihood), "simulate_data": _want(simulate_data)}
        self.pointwise = jax.jit(lambda flat, data: jax.lax.map(
            lambda u: lowered.log_likelihood_pointwise(u, data), flat, batch_size=256))
        self.simulated = [n for n in lowered.observed_names if n not in lowered.replicates] \
            if self.want["simulate_data"] else []
        self.simulate = jax.jit(jax.vmap(
            lambda k, v, d: lowered.simulate_observed(k, v, d, self.simulated), in_axes=(0, 0, None)))
        self.compiled = None  # evaluate, compiled ahead of time (NUTS does it in the background)
        self.compiled_pointwise = None
        self.notes: List[str] = []

    def precompile(self, n, data_arrays):
        flat = jax.ShapeDtypeStruct((n, self.lowered.dim), jnp.result_type(float))
        self.compiled = self.evaluate.lower(flat, data_arrays).compile()
        if self._keep("log_likelihood", n, self._pointwise_shapes()):
            self.compiled_pointwise = self.pointwise.lower(flat, data_arrays).compile()

    def _pointwise_shapes(self):
        if not self.want["log_likelihood"] or not self.lowered.observed_names:
            return {}
        u = jax.ShapeDtypeStruct((self.lowered.dim,), jnp.result_type(float))
        return jax.eval_shape(self.lowered.log_likelihood_pointwise, u, self.lowered.data_arrays)

    def _keep(self, what, n, shapes, note=False) -> bool:
        """Whether to compute `what` for n draws of arrays of these shapes."""
        if not shapes or not self.want[what]:
            return False
        size = n * sum(int(np.prod(s.shape, dtype=int)) for s in shapes.values())
        if size > MAX_POINTWISE and self.want[what] == "auto":
            if note:
                self.notes.append(f"no {what.replace('_', ' ')}: {size:.3g} values (draws × "
                                  f"elements) exceed {MAX_POINTWISE:.0e}; the option {what}=true "
                                  "keeps them")
            return False
        return True

    def __call__(self, flat, chains: int, draws: int, data_arrays, seed: int):
        """(posterior, posterior_predictive), arrays (chains, draws, *shape)."""
        shape = (chains, draws)
        self.notes = []
        evaluate = self.compiled if self.compiled is not None else self.evaluate
        values = evaluate(jnp.asarray(flat), data_arrays)
        if self.lowered.marginal is not None:  # summed-out discrete latents: p(z | θ, data) per draw
            keys = _per_draw(chain_keys(seed, chains, "discrete"), draws)
            values = dict(values, **self.discrete(keys, flat, data_arrays))
        posterior = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in values.items()}
        predictive = {}
        if self.lowered.generated_names:
            keys = _per_draw(chain_keys(seed, chains, "generated"), draws)
            gen = self.generated(keys, values, data_arrays)
            predictive = {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in gen.items()}
        observed = {n: jax.ShapeDtypeStruct(jnp.shape(data_arrays[n]), jnp.result_type(float))
                    for n in self.simulated if n in data_arrays}
        if self._keep("simulate_data", chains * draws, observed, note=True):
            keys = _per_draw(chain_keys(seed, chains, "replicate"), draws)
            sim = self.simulate(keys, values, data_arrays)
            predictive.update({k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in sim.items()})
        return posterior, predictive

    def log_likelihood(self, flat, chains: int, draws: int, data_arrays):
        """({observed name: (chains, draws, *shape)}, notes): the pointwise log-likelihood of
        every draw; the notes say what a run leaves out of its groups and why."""
        notes = [f'no pointwise log-likelihood for "{n}": {why}'
                 for n, why in self.lowered.pointwise_undefined.items()] if self.want["log_likelihood"] else []
        if not self._keep("log_likelihood", chains * draws, self._pointwise_shapes(), note=True):
            return {}, notes + self.notes
        f = self.compiled_pointwise if self.compiled_pointwise is not None else self.pointwise
        values = f(jnp.asarray(flat), data_arrays)
        shape = (chains, draws)
        return ({k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in values.items()},
                notes + self.notes)


def _want(option):
    return "auto" if option == "auto" else bool(option)


def _per_draw(keys, draws):
    """(chains · draws) keys, row c·draws + d from chain c's key."""
    return jax.vmap(lambda k: jax.random.split(k, draws))(keys).reshape((-1,))
