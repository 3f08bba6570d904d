"""The `mhg` pass: Metropolis–Hastings–Green over models whose dimension is random.

A model with a stochastic size (`k: int<lower=1, upper=k_max> ~ …` sizing `w: simplex[k]`,
`mu: ordered[k]`, `tau: real<lower=0>[k]`, `beta: real[d + 1]`) is lowered with every such
array padded to its largest size (PaddedLayout); this module reads the IR and the lowering into
the padded-model protocol of `ppl.algorithms.padded` — sizes, sized arrays with their element
kinds and birth proposals, fixed-size continuous latents, other discrete latents, the exact log
density (every normaliser that depends on a size: the truncated size prior, k! of ordered
arrays, the Dirichlet normaliser, truncation of bounded elements; ppl/lower/interpreter.py) and
a prior draw — and samples it with `ppl.algorithms.mhg`: derived moves (masked NUTS on the
continuous coordinates, birth/death for every size, Gibbs for other discrete latents), one
compiled program for every size, chains vmapped. Contract: "target-invariant".

Validation (cheap, on by default): the density does not read the padding, and every derived
involution is one (round trip, Jacobian against finite differences, log r(x→x′) = −log r(x′→x)).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from ..algorithms import mhg as M
from ..algorithms import padded as P
from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..lower.handlers import Handler, Substitute
from ..lower.interpreter import Interpreter, UserDensity, static_int
from ..lower.model import LoweredModel, seed_of
from ..syntax.errors import PPLError, PPLRuntimeError
from ..syntax.visit import walk
from .base import Diagnosis, Draws, InferencePass
from .user_moves import describe as describe_user_moves
from .user_moves import user_moves


class _SiteDists(Handler):
    """Records the distribution built at each latent's value site."""

    def __init__(self):
        self.found: Dict[str, Any] = {}

    def process(self, site):
        if site.kind == "value" and site.dist is not None:
            self.found[site.name] = site.dist


def _static(value, what, span, ir):
    try:
        v = float(np.asarray(value))
    except Exception:  # noqa: BLE001 - traced: depends on a latent
        raise PPLError(f"{what} must be known before inference (data or a literal)", span, None,
                       ir.source, ir.filename) from None
    return v


def _statement_index(ir: N.ModelIR, name: str) -> int:
    """Position in the top-level body of the statement that brings `name` into being."""
    for i, s in enumerate(ir.body):
        if isinstance(s, N.Draw) and s.target.name == name and not s.target.indices:
            return i
        if isinstance(s, N.Declare) and s.name == name:
            return i
    raise KeyError(name)


class PaddedFromIR:
    """The padded model of a lowered program (`model`), and what `ppl check` says about it."""

    def __init__(self, lowered: LoweredModel, insertion: Optional[str] = None):
        self.lowered = lowered
        ir, graph = lowered.ir, lowered.graph
        self.ir = ir
        latents = graph.variables("latent", "param")
        env = lowered.base_env(lowered.data_arrays)
        interp = Interpreter(ir, dict(env))
        size_names = sorted({s for v in latents for s in v.size_vars})
        self.size_names = size_names
        sizes, arrays, params, discrete = [], [], [], []
        ranges = {}
        for name in size_names:
            v = ir.variables[name]
            r = interp.size_range(name, v.span)
            ranges[name] = r
            sizes.append(P.SizeVar(name, r.start, r.stop - 1, self._size_log_prior(name, r, env)))
        by_size: Dict[str, List[str]] = {}
        for v in latents:
            if v.stochastic_size:
                by_size.setdefault(v.size_vars[0], []).append(v.name)
        self.moves_described = []
        slots = {s.name: s for s in lowered.layout.slots}
        for v in latents:
            if v.name in size_names:
                continue
            if v.stochastic_size:
                arrays.append(self._sized_array(v, interp, ranges, by_size, insertion))
            elif v.discrete:
                lo_hi = self._discrete_bounds(v, interp)
                shape = tuple(interp.declared_shape(v.type)) if v.type is not None else ()
                discrete.append(P.Discrete(v.name, shape, *lo_hi))
            elif v.name in slots:
                params.append(P.Continuous(v.name, self._kind(v, slots[v.name]), tuple(slots[v.name].shape)))
        # an ordered array fixes where a birth goes (its sorted position): the others follow
        sorted_sizes = {a.size for a in arrays if isinstance(a.kind, P.Ordered)}
        arrays = [dataclasses.replace(a, insertion="uniform")
                  if a.size in sorted_sizes and not isinstance(a.kind, P.Ordered) else a for a in arrays]
        self.arrays = arrays
        self.model = P.PaddedModel(tuple(sizes), tuple(arrays), self.log_density, self.init,
                                   tuple(params), tuple(discrete), name=ir.filename or "model")
        self.by_size = by_size

    # ------------------------------------------------------------------ pieces of the model
    def _size_log_prior(self, name, r, env):
        """k -> log p(k), the size's prior truncated to its bounds (for reports and checks:
        the density itself comes from the program), when its arguments are known before
        inference; else None."""
        lowered = self.lowered
        found = _SiteDists()
        i = _statement_index(self.ir, name)
        try:
            lowered.run([Substitute({name: jnp.asarray(r.start, jnp.int32)}), found],
                       lowered.data_arrays, body=self.ir.body[:i + 1])
            d = found.found[name]
            pmf = P.truncated_log_pmf(d, r.start, r.stop - 1)
            pmf(jnp.asarray(r.start))  # arguments known now: fails when they are traced
            return pmf
        except Exception:  # noqa: BLE001 - a hierarchical size prior: no closed form here
            return lambda k: jnp.nan * k

    def _discrete_bounds(self, v, interp):
        t = v.type
        if t is None or t.lower is None or t.upper is None:
            raise PPLError(f'mhg moves the discrete latent "{v.name}" by Gibbs steps and needs its '
                           "bounds", v.span, f"declare them, e.g. `{v.name}: int<lower=1, upper=K>`",
                           self.ir.source, self.ir.filename)
        lo = static_int(interp.expr(t.lower), t.lower.span, "a bound", self.ir.source, self.ir.filename)
        hi = static_int(interp.expr(t.upper), t.upper.span, "a bound", self.ir.source, self.ir.filename)
        return lo, hi

    def _kind(self, v, slot):
        c = slot.constraint_name
        t = v.type
        if t is not None and t.base == "ordered":
            lo, hi = self._bounds(v)
            return P.Ordered(lo, hi)
        if t is not None and t.base == "simplex":
            return P.Simplex()
        if t is None or (t.lower is None and t.upper is None):
            if c in ("real", "realvector", "independent"):
                return P.Real()
            if c == "positive":
                return P.Positive()
            if c == "unitinterval":
                return P.Interval(0.0, 1.0)
            raise PPLError(f'mhg cannot move "{v.name}" yet: its support ({c}) has no masked transform',
                           v.span, "declare its bounds", self.ir.source, self.ir.filename)
        lo, hi = self._bounds(v)
        if lo == 0.0 and hi == math.inf:
            return P.Positive()
        if math.isfinite(lo) and math.isfinite(hi):
            return P.Interval(lo, hi)
        if lo == -math.inf and hi == math.inf:
            return P.Real()
        raise PPLError(f'mhg supports bounds <lower=0> or <lower=a, upper=b> on "{v.name}" for now',
                       v.span, None, self.ir.source, self.ir.filename)

    def _bounds(self, v):
        t = v.type
        interp = Interpreter(self.ir, dict(self.lowered.base_env(self.lowered.data_arrays)))
        lo = -math.inf if t.lower is None else _static(interp.expr(t.lower), "a bound", v.span, self.ir)
        hi = math.inf if t.upper is None else _static(interp.expr(t.upper), "a bound", v.span, self.ir)
        return lo, hi

    def _sized_array(self, v, interp, ranges, by_size, insertion):
        ir = self.ir
        if len(v.size_vars) != 1:
            raise PPLError(f'"{v.name}" is sized by several random sizes ({", ".join(v.size_vars)})',
                           v.span, "one size variable per array", ir.source, ir.filename)
        size = v.size_vars[0]
        t = v.type
        axis = next(i for i, d in enumerate(t.dims)
                    if any(isinstance(x, N.Ref) and x.name == size for x in walk(d)))
        if axis != 0:
            raise PPLError(f'"{v.name}": only the first dimension may have a random size', v.span,
                           None, ir.source, ir.filename)
        r = ranges[size]
        offs = set()
        for k in (r.start, r.start + 1):
            c = Interpreter(ir, dict(interp.env))
            c.env[size] = k
            offs.add(static_int(c.expr(t.dims[0]), t.dims[0].span, "a size", ir.source, ir.filename) - k)
        if len(offs) != 1 or min(offs) < 0:
            raise PPLError(f'the size of "{v.name}" must be {size} + a non-negative constant', t.dims[0].span,
                           None, ir.source, ir.filename)
        offset = offs.pop()
        event_shape = tuple(static_int(interp.expr(d), d.span, "a size", ir.source, ir.filename)
                            for d in t.dims[1:])
        slot = self.lowered.layout.by_name[v.name]
        kind = self._kind(v, slot)
        proposal = None
        if not isinstance(kind, P.Simplex):
            proposal = self._element_proposal(v, kind, event_shape)
        if insertion is None:
            # appending is right for every model (a birth/death pair at the end); inserting at a
            # uniform position suits exchangeable elements only, which the IR does not show
            # (`dot(beta, powers)` gives each element a role): it is an option
            insertion = "end"
        return P.SizedArray(v.name, size, offset, kind, event_shape, proposal,
                            "sorted" if isinstance(kind, P.Ordered) else insertion)

    def _element_proposal(self, v, kind, event_shape):
        """Births draw the new element from its prior statement at the current values of the
        other variables: the statement's distribution must be that of one element (iid)."""
        lowered, ir = self.lowered, self.ir
        i = _statement_index(ir, v.name)
        stmt = ir.body[i]
        if not isinstance(stmt, N.Draw):
            raise PPLError(f'derived birth moves draw new elements of "{v.name}" from its prior: '
                           "write it as one statement, e.g. `x: real[k] ~ normal(0, 1)`", v.span, None,
                           ir.source, ir.filename)

        def dist_fn(state, data):  # the statement's distribution at the current values
            it = lowered.run([Substitute(self._values(state))], data, body=ir.body[:i])
            return it.build_dist(stmt.dist)

        example = jax.eval_shape(lambda d: self.init(jax.random.PRNGKey(0), d), lowered.data_arrays)
        seen = []

        def probe(s, dd):
            d = dist_fn(s, dd)
            seen.append(isinstance(d, UserDensity))
            return jnp.zeros(()) if seen[-1] else jnp.zeros(tuple(d.batch_shape) + tuple(d.event_shape))
        batch = jax.eval_shape(probe, example, lowered.data_arrays)
        user = seen[-1]
        if user:
            if isinstance(kind, (P.Interval, P.Ordered)) and math.isfinite(kind.lo) and math.isfinite(kind.hi):
                lo, hi = kind.lo, kind.hi
                return P.ElementProposal.from_distribution(
                    lambda s, dd: _uniform(lo, hi, event_shape))
            raise PPLError(f'"{v.name}" is drawn from a density without a sampler: derived births '
                           "need to draw its elements", v.span,
                           "declare bounds (births then draw uniformly between them)", ir.source, ir.filename)
        if tuple(batch.shape) != tuple(event_shape):
            raise PPLError(f'derived birth moves draw one new element of "{v.name}" from its prior, '
                           "which must be the same for every element (iid given the other variables)",
                           v.span, None, ir.source, ir.filename)
        return P.ElementProposal.from_distribution(dist_fn)

    # ------------------------------------------------------------------ the protocol's functions
    def _values(self, state):
        """The state as the program's constrained values (the same names and shapes)."""
        return dict(state)

    def log_density(self, state, data):
        lw = self.lowered
        it = lw.run([Substitute(self._values(state))], data)
        lp = jnp.where(it.valid, it.lp, -jnp.inf)
        for a in self.arrays:  # declared bounds the element's distribution does not enforce
            x = state[a.name]
            if isinstance(a.kind, (P.Interval, P.Positive, P.Ordered)):
                lo = 0.0 if isinstance(a.kind, P.Positive) else a.kind.lo
                hi = math.inf if isinstance(a.kind, P.Positive) else a.kind.hi
                m = P.active(state[a.size] + a.offset, x.shape[0], x.shape[1:])
                ok = jnp.all(jnp.where(m, (x > lo) & (x < hi), True))
                if isinstance(a.kind, P.Ordered):  # off the support: −inf, even where the
                    # program's own terms are NaN there (log of a negative spacing)
                    ok = ok & jnp.all(jnp.where(m[1:], x[1:] > x[:-1], True))
                lp = jnp.where(ok, lp, -jnp.inf)
        return lp

    def _prior(self, key, data):
        return self.lowered.prior_sample(key, data)

    def init(self, key, data):
        """A prior draw, padding at each kind's filler."""
        v = self._prior(key, data)
        fillers = {a.name: a.kind.filler for a in getattr(self, "arrays", ())}
        state = {}
        for s in self.lowered.layout.slots:
            x = jnp.asarray(v[s.name], jnp.result_type(float))
            state[s.name] = jnp.where(jnp.isnan(x), jnp.asarray(fillers.get(s.name, 0.0), x.dtype), x)
        for var in self.lowered.graph.discrete_latents():
            if var.name in v:
                state[var.name] = jnp.asarray(v[var.name], jnp.int32)
        return state

    # ------------------------------------------------------------------ what check prints
    def describe(self) -> List[str]:
        lines = ["trans-dimensional variables:"]
        for s in self.model.sizes:
            arrs = self.model.arrays_of(s.name)
            parts = []
            for a in arrs:
                kind = type(a.kind).__name__.lower()
                size = s.name + (f" + {a.offset}" if a.offset else "")
                parts.append(f"{a.name} ({kind}[{size}], births {a.insertion}"
                             + (", weight split" if isinstance(a.kind, P.Simplex) else ", from its prior") + ")")
            lines.append(f"  {s.name} in {s.lower}..{s.upper} sizes " + ", ".join(parts))
        return lines


def _uniform(lo, hi, shape):
    d = nd.Uniform(lo, hi)
    return d.expand(shape) if shape else d


def moves_for(model: P.PaddedModel, options: Dict[str, Any]):
    within = options.get("within", "nuts")
    if within not in ("nuts", "hmc", "random_walk"):
        raise PPLError(f'unknown within-dimension move "{within}"', None, "nuts, hmc or random_walk")
    return M.default_moves(model, within=within, within_weight=float(options.get("within_weight", 1.0)),
                           jump_weight=float(options.get("jump_weight", 1.0)))


def describe_moves(model: P.PaddedModel, moves) -> List[str]:
    lines = ["moves (derived):"]
    total = sum(w for _, w in moves)
    for m, w in moves:
        lines.append(f"  {m.name:<24} weight {w / total:.2f}")
    return lines


def _summary(r) -> str:
    """One line of a validation report."""
    if not isinstance(r, dict):
        return str(r)
    keep = {k: v for k, v in r.items() if k not in ("move",)}
    return ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in keep.items())


class MHGProgram:
    contract = "target-invariant"

    def __init__(self, lowered: LoweredModel, chains=4, draws=1000, warmup=1000, thin=1, **options):
        self.lowered = lowered
        self.chains, self.draws, self.warmup, self.thin = int(chains), int(draws), int(warmup), int(thin)
        self.padded = PaddedFromIR(lowered, options.get("insertion"))
        self.model = self.padded.model
        self.moves = moves_for(self.model, options)
        self.moves += user_moves(self.padded, options)  # the model's own moves: passes/user_moves.py
        self.sampler = M.MHG(self.model, self.moves)
        self.result = None

    def describe_moves(self) -> List[str]:
        return describe_moves(self.model, self.moves)

    def run(self, data_arrays, seed: int = 0, progress=None) -> Draws:
        key = jax.random.PRNGKey(seed_of(seed))
        res = self.sampler.run(key, data_arrays, chains=self.chains, draws=self.draws,
                               warmup=self.warmup, thin=self.thin, progress=progress)
        self.result = res
        posterior = {}
        posterior.update({k: np.asarray(v) for k, v in res.sizes.items()})
        posterior.update({k: np.asarray(v) for k, v in res.arrays.items()})
        posterior.update({k: np.asarray(v) for k, v in res.params.items()})
        posterior.update({k: np.asarray(v) for k, v in res.discrete.items()})
        table = {}
        for s in self.model.sizes:
            values, p, se = res.size_posterior(s.name)
            table[s.name] = {"values": values.tolist(), "probabilities": p.tolist(), "se": se.tolist()}
        acc = res.acceptance()
        given = {s.name: M.conditional_means(res, s.name) for s in self.model.sizes}
        attrs = {"inference_method": "mhg", "markov_chain": 1, "size_posteriors": json.dumps(table),
                 "acceptance": json.dumps(acc), "moves": json.dumps(list(res.move_names)),
                 "given_size": json.dumps(given)}
        # per draw: which move ran last (an index into the attribute "moves") and whether it was accepted
        stats = {"lp": np.asarray(res.log_density), "move": np.asarray(res.move, np.int32),
                 "accepted": np.asarray(res.accepted, bool)}
        out = Draws(posterior, stats, {}, attrs=attrs)
        trouble = int(np.asarray(res.trouble).sum())
        if trouble:
            out.warnings.append(f"{trouble} proposals met a non-finite density or acceptance ratio "
                                "(rejected)")
        if not np.isfinite(res.log_density).all():
            out.warnings.append("non-finite log density in some draws")
        return out

    def validate(self, key):
        try:
            rep = M.validate(self.model, self.moves, self.lowered.data_arrays,
                             jax.random.PRNGKey(seed_of(key)), points=8)
        except ValueError as e:
            raise PPLRuntimeError(f"mhg validation failed: {e}", None, None) from None
        return {"checked": True, "points": 8, "report": {k: _summary(v) for k, v in rep.items()}}


class MHGPass(InferencePass):
    name = "mhg"
    contract = "target-invariant"
    summary = ("Metropolis–Hastings–Green: models whose dimension is random (birth/death across "
               "sizes, masked NUTS within)")
    options = {"within": "within-dimension move: nuts (default), hmc or random_walk",
               "within_weight": "relative frequency of the within move (1)",
               "jump_weight": "relative frequency of each size's birth/death move (1)",
               "insertion": "where births put a new element: end (default) or uniform (for "
                            "exchangeable elements); ordered arrays keep their order",
               "thin": "iterations per recorded draw (1)",
               "moves": "on (default): the model's `move` blocks join the derived moves; off: derived only",
               "move_checks": "on (default): check the model's moves at random points before running; off"}

    def diagnose(self, graph: ModelGraph) -> Diagnosis:
        sized = [v for v in graph.variables("latent") if v.stochastic_size]
        if not sized:
            return Diagnosis(False, "no array has a random size (mhg is for trans-dimensional models)")
        sizes = sorted({s for v in sized for s in v.size_vars})
        return Diagnosis(True, f"random size(s) {', '.join(sizes)} of "
                         f"{', '.join(v.name for v in sized)}: birth/death moves across sizes")

    def build(self, lowered: LoweredModel, options: Dict[str, Any]) -> MHGProgram:
        keys = ("chains", "draws", "warmup", "thin", "within", "within_weight", "jump_weight", "insertion",
                "moves", "move_checks")
        return MHGProgram(lowered, **{k: options[k] for k in keys if k in options})

    def validate(self, program: MHGProgram, key) -> Dict[str, Any]:
        return program.validate(key)

    def check_data(self, lowered: LoweredModel) -> List[str]:
        """The padded model derived, its moves, and the involution checks at random points."""
        program = self.build(lowered, {"chains": 1})
        res = self.validate(program, 0)
        return [f"data: ok (padded: {lowered.dim} unconstrained coordinates at the largest sizes)"] \
            + program.padded.describe() + program.describe_moves() \
            + [f"validation: {name}: {r}" for name, r in res["report"].items()]

    def describe(self, graph: ModelGraph) -> List[str]:
        sized = [v for v in graph.variables("latent") if v.stochastic_size]
        lines = ["trans-dimensional variables:"]
        for v in sized:
            lines.append(f"  {v.name:<10} sized by {', '.join(v.size_vars)}")
        lines.append("moves (derived): masked NUTS on the continuous coordinates; birth/death of "
                     + ", ".join(sorted({s for v in sized for s in v.size_vars}))
                     + " (ordered arrays: sorted insertion; simplex arrays: weight split)")
        if graph.ir.moves:
            lines += ["moves (user-written):"] + describe_user_moves(graph.ir.moves)
        return lines
