"""Finite discrete latents summed out of the log density (and their posterior recovered).

The structure comes from the IR (`ppl.ir.discrete.analyze`): for each marginalisable latent
``z`` (T elements, K values) the statements that touch it are *terms*, unary ``f_p(z_p)`` or
pairwise ``f_p(z_{p-1}, z_p)``. Here each term is evaluated for every value — the loop it sits
in is vmapped over its index and over the K (or K²) values, with the evaluator's element
overrides standing for ``z[i]`` — and scattered into

    U[p, k]    = Σ unary terms at position p with z_p = k            (T, K)
    P[p, j, k] = Σ pairwise terms with z_{p-1} = j, z_p = k          (T-1, K, K)

The rest of the program (``analysis.body``) runs as usual. Then
- independent (no P): log Σ_z exp(…) = Σ_p logsumexp_k U[p, k]  (`marginalize_independent`);
- chain: the forward algorithm over (0, P, U)  (`hmm.forward`).
The discrete posterior given the continuous values is softmax(U) per element, or forward–
backward marginals and an FFBS path for a chain.

`discrete_latent` is the evaluator's hook for a discrete latent met in a density mode: it puts
given values in place (enumeration, validation) or a placeholder the filtered program never
reads.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints

from ..algorithms import hmm
from ..algorithms.enumeration import marginalize_independent
from ..ir.discrete import DiscreteAnalysis, analyze
from ..syntax import ast as A
from ..syntax.errors import PPLError
from .evaluator import Evaluator, LoweringError, static_int


# ------------------------------------------------------------ evaluator hook
def discrete_latent(ev: Evaluator, s, decl=None):
    """A discrete latent declared or drawn as a whole in density/reference mode.

    With values supplied by the latent source (``source.discrete_values``) they are used and the
    statement's distribution, if any, is scored; otherwise a placeholder (the lowest value) is
    put in place: the marginalised program never reads it, and layout discovery or support
    checks do not depend on it.
    """
    name = s.name if isinstance(s, A.VarDecl) else s.target.name
    dist = s.dist
    shape = ev.declared_shape(decl.type) if decl is not None and decl.type is not None else None
    d = None
    if dist is not None:
        d = ev.build_dist(dist, value_shape=shape)
        if shape is None:
            shape = tuple(d.batch_shape) + tuple(d.event_shape)
    if shape is None:
        shape = ()
    values = getattr(ev.source, "discrete_values", None)
    seen = getattr(ev.source, "discrete_seen", None)
    if seen is not None:
        seen[name] = (tuple(shape), d.support if d is not None else None)
    if values is not None and name in values:
        v = jnp.broadcast_to(jnp.asarray(values[name]), shape)
    else:
        lo = 1
        if decl is not None and decl.type is not None and decl.type.bound("lower") is not None:
            lo = ev.expr(decl.type.bound("lower"))
        elif d is not None:
            lo = support_range(d.support, name)[0] if _finite(d.support) else 0
        v = jnp.full(shape, lo, dtype=jnp.int32)
    ev.env[name] = v
    if d is not None:
        ev._score(d, v, s if isinstance(s, A.Sample) else A.Sample(s.span, A.LValue(name, (), s.name_span), dist),
                  name)


def _finite(c):
    return isinstance(c, type(constraints.boolean)) or hasattr(c, "upper_bound") and hasattr(c, "lower_bound")


def support_range(c, name) -> Tuple[int, int]:
    """(lowest value, number of values) of a finite integer support with known bounds."""
    if isinstance(c, type(constraints.boolean)):
        return 0, 2
    try:
        lo = jnp.min(jnp.asarray(c.lower_bound))
        hi = jnp.max(jnp.asarray(c.upper_bound))
        lo, hi = int(lo), int(hi)
    except Exception:
        raise PPLError(f'the values "{name}" can take are not known before inference', None,
                       f"declare bounds, e.g. `{name}: int<lower=0, upper=10>[N]`") from None
    return lo, hi - lo + 1


class ValuesSource:
    """Continuous latents from a flat vector (as `_FlatSource`), discrete ones from a dict."""

    def __init__(self, flat_source, discrete_values: Dict[str, Any]):
        self.flat = flat_source
        self.discrete_values = discrete_values

    def take(self, name, shape, constraint, ev):
        return self.flat.take(name, shape, constraint, ev)


class ProbeSource(ValuesSource):
    """Records the shape and support of every discrete latent drawn as a whole."""

    def __init__(self, flat_source):
        super().__init__(flat_source, {})
        self.discrete_seen: Dict[str, Any] = {}


# ------------------------------------------------------------ the marginaliser
class Marginalizer:
    def __init__(self, lowered, analysis: DiscreteAnalysis):
        from .model import _FlatSource
        self.lowered = lowered
        self.graph = lowered.graph
        self.analysis = analysis
        self.plans = analysis.plans
        self._flat = _FlatSource
        # static facts (sizes, values), read while tracing the rest of the program once
        layout = {}

        def probe(u, data_arrays):
            env = self._rest(u, data_arrays)[1]
            layout.update({n: self._layout(p, env) for n, p in self.plans.items()})
            return 0.0

        jax.eval_shape(probe, jnp.zeros((lowered.dim,)), lowered.data_arrays)
        self.layout = layout

    # ---- pieces
    def _evaluator(self, env, source):
        return Evaluator(self.graph, "density", env, source, fixed=self.lowered.fixed_names)

    def _rest(self, u, data_arrays):
        src = self._flat(u, self.lowered.slot_by_name)
        ev = self._evaluator(self.lowered.base_env(data_arrays), src)
        ev.exec(self.analysis.body)
        return ev.lp, ev.env

    def _layout(self, plan, env) -> Tuple[int, int, int]:
        """(T, lowest value, K) of a marginalised latent."""
        ev = self._evaluator(dict(env), None)
        t = plan.decl.type
        (T,) = ev.declared_shape(t)
        lo_e, hi_e = t.bound("lower"), t.bound("upper")
        if lo_e is not None and hi_e is not None:
            lo = static_int(ev.expr(lo_e), lo_e.span, "a bound of a discrete latent")
            hi = static_int(ev.expr(hi_e), hi_e.span, "a bound of a discrete latent")
            return T, lo, hi - lo + 1
        los, his = [], []
        for term in plan.terms:
            if not term.defines:
                continue
            lb, ub = self._support_bounds(plan.name, term, env)
            los.append(lb)
            his.append(ub)
        lo, hi = min(los), max(his)
        return T, lo, hi - lo + 1

    def _support_bounds(self, name, term, env):
        def bounds(t):
            e = dict(env)
            if term.loop is not None:
                e[term.loop.var] = t
            c = self._evaluator(e, None)
            c.overrides = {(name, a.indices): jnp.int32(1) for a in term.accesses}
            d = c.build_dist(term.stmt.dist)
            if isinstance(d.support, type(constraints.boolean)):
                return 0, 1
            if not _finite(d.support):
                raise LoweringError(f'"{name}" has no finite set of values here', term.stmt.span)
            return d.support.lower_bound, d.support.upper_bound

        # the bounds must not depend on the loop index or on data values: read them at the
        # first index, as constants (a support that varies needs declared bounds)
        lb, ub = bounds(0 if term.loop is None else self._loop_range(term.loop, env)[0])
        try:
            return int(lb), int(ub)
        except Exception:
            raise LoweringError(f'the values "{name}" can take are not known before inference',
                                term.stmt.span,
                                f"declare bounds, e.g. `{name}: int<lower=0, upper=10>[N]`") from None

    def _loop_range(self, loop, env):
        ev = self._evaluator(env, None)
        lo = static_int(ev.expr(loop.lo), loop.lo.span, "a loop bound")
        hi = static_int(ev.expr(loop.hi), loop.hi.span, "a loop bound")
        return lo, hi

    def factors(self, env) -> Dict[str, Tuple[Any, Any]]:
        """name -> (U (T, K), P (T-1, K, K) or None) at the continuous values in env."""
        out = {}
        for name, plan in self.plans.items():
            T, lo, K = self.layout[name]
            vals = (lo + jnp.arange(K)).astype(jnp.int32)
            U = jnp.zeros((T, K))
            P = jnp.zeros((max(T - 1, 0), K, K)) if plan.kind == "chain" else None
            groups: Dict[tuple, list] = {}
            for term in plan.terms:
                offs = tuple(sorted({a.offset for a in term.accesses}))
                key = (id(term.loop), term.pairwise, offs if term.loop is not None else
                       tuple(sorted({a.literal for a in term.accesses})))
                groups.setdefault(key, []).append(term)
            for (_, pairwise, where), terms in groups.items():
                loop = terms[0].loop
                stmts = self._body_for(loop, terms)

                def lp_at(t, j, k, terms=terms, stmts=stmts, loop=loop):
                    e = dict(env)
                    if loop is not None:
                        e[loop.var] = t
                    c = self._evaluator(e, None)
                    ov = {}
                    for term in terms:
                        for a in term.accesses:
                            if loop is None:
                                first = min(x.literal for x in term.accesses)
                                ov[(name, a.indices)] = vals[j] if (pairwise and a.literal == first) else vals[k]
                            else:
                                ov[(name, a.indices)] = vals[j] if a.offset == 1 and pairwise else vals[k]
                    c.overrides = ov
                    c.exec(stmts)
                    return c.lp

                ks = jnp.arange(K)
                if pairwise:
                    f = jax.vmap(jax.vmap(lp_at, (None, None, 0)), (None, 0, None))  # (j, k)
                else:
                    f = jax.vmap(lambda t, k: lp_at(t, 0, k), (None, 0))
                    f = (lambda g: (lambda t, j, k: g(t, k)))(f)
                if loop is None:
                    lps = f(0, ks, ks)
                    p = max(where) if pairwise else where[0]
                    if pairwise:
                        P = P.at[p - 2].add(lps)
                    else:
                        U = U.at[p - 1].add(lps)
                    continue
                lo_t, hi_t = self._loop_range(loop, env)
                ts = jnp.arange(lo_t, hi_t + 1)
                lps = jax.vmap(lambda t: f(t, ks, ks))(ts)
                if pairwise:
                    P = P.at[ts - 2].add(lps)
                else:
                    U = U.at[ts - where[0] - 1].add(lps)
            out[name] = (U, P)
        return out

    def _body_for(self, loop, terms):
        ids = {id(t.stmt) for t in terms}
        if loop is None:
            return [t.stmt for t in terms]
        variables = self.graph.checked.variables
        return [s for s in loop.body if id(s) in ids or (
            isinstance(s, (A.Assign, A.VarDecl)) and
            (s.target.name if isinstance(s, A.Assign) else s.name) not in variables)]

    # ---- densities
    def log_density(self, u, data_arrays):
        lp, env = self._rest(u, data_arrays)
        for name, (U, P) in self.factors(env).items():
            if P is None:
                lp = lp + marginalize_independent(U).log_marginal
            else:
                lp = lp + hmm.forward(jnp.zeros(U.shape[1]), P, U).log_evidence
        return lp

    def complete_log_density(self, u, data_arrays, discrete_values):
        """The density with the discrete latents at given values, from the same factors."""
        lp, env = self._rest(u, data_arrays)
        for name, (U, P) in self.factors(env).items():
            T, lo, K = self.layout[name]
            code = jnp.asarray(discrete_values[name]) - lo
            lp = lp + jnp.sum(U[jnp.arange(T), code])
            if P is not None and T > 1:
                lp = lp + jnp.sum(P[jnp.arange(T - 1), code[:-1], code[1:]])
        return lp

    def posterior(self, key, u, data_arrays):
        """Per draw: a value of every marginalised latent from p(z | θ, y) and its marginals."""
        _, env = self._rest(u, data_arrays)
        out = {}
        for i, (name, (U, P)) in enumerate(self.factors(env).items()):
            T, lo, K = self.layout[name]
            k = jax.random.fold_in(key, i)
            if P is None:
                probs = jax.nn.softmax(U, axis=-1)
                code = jax.random.categorical(k, U, axis=-1)
            else:
                init = jnp.zeros(K)
                probs = hmm.backward_smoothing(init, P, U).marginals
                code = hmm.ffbs_sample(k, init, P, U)
            out[name] = (lo + code).astype(jnp.int32)
            out[prob_name(name)] = probs
        return out


def prob_name(name: str) -> str:
    """Name of the per-element posterior probabilities reported next to a marginalised latent."""
    return f"{name}_prob"


def marginalizer_for(lowered):
    """A `Marginalizer` when the model has discrete latents and all can be summed out."""
    analysis = analyze(lowered.graph)
    if not analysis.plans or not analysis.all_marginalisable:
        return None
    return Marginalizer(lowered, analysis)


def validate_marginal(lowered, key, num_points=3, rtol=1e-6, max_brute_force=4096):
    """Translation validation of a marginalised density, at random continuous and discrete values.

    1. The factors reproduce the model: rest + Σ U[p, z_p] + Σ P[p, z_{p-1}, z_p] equals the
       density evaluated directly with the discrete latents given.
    2. That direct density equals numpyro's (reference mode, loops unrolled), when small enough.
    3. When the joint support is small, the marginal equals a brute-force log-sum-exp over it.
    """
    import itertools
    import math

    import numpy as np
    from .model import _FlatSource
    from .validation import check_agreement

    m = lowered.marginal
    data = lowered.data_arrays
    if isinstance(key, (int, np.integer)):  # a seed rather than a key
        key = jax.random.PRNGKey(int(key))
    complete = jax.jit(m.complete_log_density)
    direct = jax.jit(lowered.log_density_given)
    marginal = jax.jit(lowered.log_density)
    small = lowered._unrolled_size() <= 1000  # numpyro's reference runs unrolled, op by op
    worst = 0.0

    def close(a, b, what):
        nonlocal worst
        worst = max(worst, check_agreement(a, b, what, rtol))

    def reference(u, values):
        import numpyro
        from numpyro.infer.util import log_density

        def model():
            src = ValuesSource(_FlatSource(u, lowered.slot_by_name), values)
            ev = Evaluator(lowered.graph, "reference", lowered.base_env(data), src,
                           fixed=lowered.fixed_names)
            ev.exec(lowered.graph.body)

        with numpyro.handlers.seed(rng_seed=0):
            return log_density(model, (), {}, {})[0]

    for i in range(num_points):
        k = jax.random.fold_in(key, i)
        u = jax.random.uniform(k, (lowered.dim,), minval=-2, maxval=2)
        values = {}
        for j, (name, (T, lo, K)) in enumerate(m.layout.items()):
            values[name] = (lo + jax.random.randint(jax.random.fold_in(k, j + 1), (T,), 0, K)).astype(jnp.int32)
        a = float(complete(u, data, values))
        b = float(direct(u, data, values))
        close(a, b, "the summed-out factors at given discrete values against the model's density")
        if small and i == 0:
            close(b, float(reference(u, values)), "the density with discrete values given against numpyro")
    sizes = [K ** T for (T, lo, K) in m.layout.values()]
    brute = math.prod(sizes) <= max_brute_force
    if brute:
        u = jax.random.uniform(jax.random.fold_in(key, 99), (lowered.dim,), minval=-2, maxval=2)
        names = list(m.layout)
        grids = [list(itertools.product(range(K), repeat=T)) for (T, lo, K) in m.layout.values()]
        lps = []
        for combo in itertools.product(*grids):
            vals = {n: jnp.asarray(c, dtype=jnp.int32) + m.layout[n][1] for n, c in zip(names, combo)}
            lps.append(float(direct(u, data, vals)))
        close(float(marginal(u, data)), float(jax.nn.logsumexp(jnp.asarray(lps))),
              "the marginal density against a brute-force sum over the discrete values")
    return {"checked": True, "points": num_points, "max_abs_diff": worst,
            "brute_force": brute}
