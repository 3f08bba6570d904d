"""`Marginal` nodes (ppl/ir/rewrites.py): finite discrete latents summed out of the density.

For a marginalised latent ``z`` (T elements, K values) every term is evaluated for every value
— its loop vmapped over the loop index and over the K (or K²) values, the interpreter's element
overrides standing for ``z[i]`` — and scattered into

    U[p, k]    = Σ unary terms at position p with z_p = k            (T, K)
    P[p, j, k] = Σ pairwise terms with z_{p-1} = j, z_p = k          (T-1, K, K)

Then the node adds
- independent (no P): Σ_p logsumexp_k U[p, k] (`marginalize_independent`); a scalar latent
  ("single") is one position: U is (1, K), each term summed over its loop;
- chain: the forward algorithm over (0, P, U) (`hmm.forward`);
- with the latent's values given by a handler (`Substitute`): Σ U[p, z_p] + Σ P[p, z_{p-1}, z_p],
  the complete density, which translation validation compares with the original program;
- under `DrawMarginal(key)`: nothing, but a draw of z from p(z | rest) and its per-element
  probabilities go into the environment (softmax of U, or forward–backward and FFBS).

Pointwise log-likelihood (a `Pointwise` handler): an observation that reads z contributes its
marginal term. For independent elements, when element p of z is read by one observed element
y_i alone, that term is log p(y_i | θ) = logsumexp_k U[p, k] − logsumexp_k (U[p, k] − O[p, k]),
O the observation's own log density at z_p = k (the rest of U is z_p's prior); the terms of the
elements then add up to the marginal likelihood. Where several observed elements read the same
z_p, or z is a Markov chain, the likelihood does not split into per-element terms (the sum over
z couples them): those variables get none, and the reason is recorded. With z given, the terms
are the observations' conditional densities at z.
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from ..algorithms import hmm
from ..algorithms.enumeration import marginalize_independent
from ..ir import nodes as N
from ..syntax.errors import PPLError
from .handlers import Handler, Unconstrain
from .interpreter import Interpreter, LoweringError, static_int


def prob_name(name: str) -> str:
    """Name of the per-element posterior probabilities reported next to a marginalised latent."""
    return f"{name}_prob"


class DrawMarginal(Handler):
    """Marginal nodes draw their latent from its conditional posterior instead of scoring."""

    def __init__(self, key):
        self.key = key

    def process(self, site):
        if site.kind == "marginal":
            site.key = jax.random.fold_in(self.key, site.stmt.sid)


def layout_of(interp: Interpreter, node: N.Marginal) -> Tuple[int, int, int]:
    """(T, lowest value, K) of a marginalised latent."""
    t = node.declare.type
    T = interp.declared_shape(t)[0] if t.dims else 1  # a scalar ("single"): one position
    if t.lower is not None and t.upper is not None:
        lo = static_int(interp.expr(t.lower), t.lower.span, "a bound of a discrete latent")
        hi = static_int(interp.expr(t.upper), t.upper.span, "a bound of a discrete latent")
        return T, lo, hi - lo + 1
    los, his = [], []
    for term in node.terms:
        if term.defines:
            lb, ub = _support_bounds(interp, node.name, term)
            los.append(lb)
            his.append(ub)
    lo, hi = min(los), max(his)
    return T, lo, hi - lo + 1


def _finite(c):
    return isinstance(c, type(constraints.boolean)) or hasattr(c, "upper_bound") and hasattr(c, "lower_bound")


def support_range(c, name) -> Tuple[int, int]:
    """(lowest value, number of values) of a finite integer support with known bounds."""
    if isinstance(c, type(constraints.boolean)):
        return 0, 2
    try:
        lo = int(jnp.min(jnp.asarray(c.lower_bound)))
        hi = int(jnp.max(jnp.asarray(c.upper_bound)))
    except Exception:  # noqa: BLE001 - bounds known only at run time
        raise PPLError(f'the values "{name}" can take are not known before inference', None,
                       f"declare bounds, e.g. `{name}: int<lower=0, upper=10>[N]`") from None
    return lo, hi - lo + 1


def _loop_range(interp, loop):
    return interp.loop_bounds(loop)


def _support_bounds(interp, name, term):
    # the bounds must not depend on the loop index or on data values: read them at the first
    # index, as constants (a support that varies needs declared bounds)
    c = interp.child(dict(interp.env))
    if term.loop is not None:
        c.env[term.loop.var] = _loop_range(interp, term.loop)[0]
    c.overrides = {(name, a.indices): jnp.int32(1) for a in term.accesses}
    if any(not a.indices for a in term.accesses):  # a scalar, read by name
        c.env[name] = jnp.int32(1)
    d = c.build_dist(term.stmt.dist)
    if isinstance(d.support, type(constraints.boolean)):
        return 0, 1
    if not _finite(d.support):
        raise LoweringError(f'"{name}" has no finite set of values here', term.stmt.span)
    try:
        return int(d.support.lower_bound), int(d.support.upper_bound)
    except Exception:  # noqa: BLE001
        raise LoweringError(f'the values "{name}" can take are not known before inference',
                            term.stmt.span,
                            f"declare bounds, e.g. `{name}: int<lower=0, upper=10>[N]`") from None


def factors(interp: Interpreter, node: N.Marginal, observed=None):
    """(U (T, K), P (T-1, K, K) or None, (T, lo, K)) at the values in the interpreter.

    `observed`: a list that receives, for pointwise log-likelihoods, each observation's terms
    at every value: (name, rows of z (static), positions, values (rows, K[, K], *elements),
    pairwise)."""
    name = node.name
    T, lo, K = layout_of(interp, node)
    vals = (lo + jnp.arange(K)).astype(jnp.int32)
    U = jnp.zeros((T, K))
    P = jnp.zeros((max(T - 1, 0), K, K)) if node.kind == "chain" else None
    groups: Dict[tuple, list] = {}
    for term in node.terms:
        offs = tuple(sorted({a.offset for a in term.accesses}))
        key = (None if term.loop is None else term.loop.sid, term.pairwise,
               offs if term.loop is not None else tuple(sorted({a.literal for a in term.accesses})))
        groups.setdefault(key, []).append(term)
    for (_, pairwise, where), terms in groups.items():
        loop = terms[0].loop
        stmts = _statements(terms)

        def lp_at(t, j, k, terms=terms, stmts=stmts, loop=loop):
            c = interp.child(dict(interp.env))
            if loop is not None:
                c.env[loop.var] = t
                c.indices = interp.indices + (t,)
            c.given.add(name)
            ov = {}
            for term in terms:
                first = min((x.literal for x in term.accesses), default=None) if loop is None else None
                for a in term.accesses:
                    if loop is None:
                        ov[(name, a.indices)] = vals[j] if (pairwise and a.literal == first) else vals[k]
                    else:
                        ov[(name, a.indices)] = vals[j] if a.offset == 1 and pairwise else vals[k]
            c.overrides = ov
            if node.kind == "single":  # the scalar is read by name, not through an index
                c.env[name] = vals[k]
            c.run(stmts)
            names[:] = [n for n, _, _ in c.pointwise]
            return c.lp, c.records, [(p, v) for _, p, v in c.pointwise]

        ks = jnp.arange(K)
        names = []  # the observed variables of the group's pointwise terms
        if pairwise:
            f = jax.vmap(jax.vmap(lp_at, (None, None, 0)), (None, 0, None))  # (j, k)
        else:
            g = jax.vmap(lambda t, k: lp_at(t, 0, k), (None, 0))
            f = (lambda g: (lambda t, j, k: g(t, k)))(g)
        if loop is None:
            lps, recs, terms = f(0, ks, ks)
            p = max(where) if pairwise else where[0]
            if pairwise:
                P = P.at[p - 2].add(lps)
            else:
                U = U.at[p - 1].add(lps)
            rows = np.asarray([p - 2 if pairwise else p - 1])
            terms = [(pos[None], v[None]) for pos, v in terms]
        else:
            lo_t, hi_t = _loop_range(interp, loop)
            ts = jnp.arange(lo_t, hi_t + 1)
            lps, recs, terms = jax.vmap(lambda t: f(t, ks, ks))(ts)
            if node.kind == "single":  # every iteration is a factor of the one value
                U = U.at[0].add(jnp.sum(lps, axis=0))
                rows = np.zeros(len(ts), dtype=int)
            elif pairwise:
                P = P.at[ts - 2].add(lps)
                rows = np.arange(lo_t, hi_t + 1) - 2
            else:
                U = U.at[ts - where[0] - 1].add(lps)
                rows = np.arange(lo_t, hi_t + 1) - (where[0] + 1)
        if observed is not None:
            for n, (pos, v) in zip(names, terms):
                # positions do not depend on z's values: those of the first value
                first = pos[:, 0, 0] if pairwise else pos[:, 0]
                observed.append((n, rows, first, v, pairwise))
        for k, v in recs.items():
            interp._record(k, jnp.all(v))
    return U, P, (T, lo, K)


def _statements(terms):
    """The statements of a group of terms, with the loop-local values they need, in order."""
    seen, out = set(), []
    for term in terms:
        for s in term.helpers + (term.stmt,):
            if s.sid not in seen:
                seen.add(s.sid)
                out.append(s)
    order = {}
    if terms[0].loop is not None:
        order = {s.sid: i for i, s in enumerate(terms[0].loop.body)}
    return sorted(out, key=lambda s: order.get(s.sid, 0))


def execute(interp: Interpreter, node: N.Marginal):
    name = node.name
    site = interp.site(kind="marginal", name=name, stmt=node, role="latent", discrete=True)
    given = interp.site(kind="value", name=name, stmt=node.declare, role="latent", discrete=True,
                        shape=None, constraint=None)
    observed = []
    U, P, (T, lo, K) = factors(interp, node, observed)
    if given.given:
        value = jnp.broadcast_to(jnp.asarray(given.value), (T,))
        code = value - lo
        lp = jnp.sum(U[jnp.arange(T), code])
        if P is not None and T > 1:
            lp = lp + jnp.sum(P[jnp.arange(T - 1), code[:-1], code[1:]])
        interp.env[name] = value[0] if node.kind == "single" else value
        interp.given.add(name)
        interp.lp = interp.lp + lp
        for n, rows, pos, v, pairwise in observed:  # conditional densities at the given z
            at = jnp.arange(len(rows))
            vals = v[at, code[rows], code[rows + 1]] if pairwise else v[at, code[rows]]
            interp.pointwise.append((n, pos, vals))
        return
    if site.key is not None:  # DrawMarginal: a draw from p(z | rest) and its marginals
        if P is None:
            probs = jax.nn.softmax(U, axis=-1)
            code = jax.random.categorical(site.key, U, axis=-1)
        else:
            init = jnp.zeros(K)
            probs = hmm.backward_smoothing(init, P, U).marginals
            code = hmm.ffbs_sample(site.key, init, P, U)
        value = (lo + code).astype(jnp.int32)
        single = node.kind == "single"
        interp.env[name] = value[0] if single else value
        interp.env[prob_name(name)] = probs[0] if single else probs
        return
    if P is None:
        interp.lp = interp.lp + marginalize_independent(U).log_marginal
    else:
        interp.lp = interp.lp + hmm.forward(jnp.zeros(U.shape[1]), P, U).log_evidence
    if observed:
        _marginal_pointwise(interp, node, U, P, observed)


def _marginal_pointwise(interp: Interpreter, node: N.Marginal, U, P, observed):
    """Each observation's marginal term, where the likelihood splits into such terms (see the
    module's docstring)."""
    info = interp.pointwise_info
    names = sorted({n for n, *_ in observed})
    if P is not None or any(pw for *_, pw in observed):
        for n in names:
            info.undefined.setdefault(n, f'it depends on "{node.name}", a Markov chain summed out of '
                                      "the density: the likelihood does not split into terms per element")
        return
    readers = np.zeros(U.shape[0], dtype=int)  # observed elements reading each element of z
    O = jnp.zeros_like(U)
    for n, rows, pos, v, _ in observed:
        per_row = int(np.prod(v.shape[2:], dtype=int))
        np.add.at(readers, rows, per_row)
        O = O.at[rows].add(v.reshape(v.shape[:2] + (-1,)).sum(-1))
    if readers.max(initial=0) > 1:
        for n in names:
            info.undefined.setdefault(n, f'several observed elements read the same element of "{node.name}", '
                                      "which is summed out: their likelihood does not split into terms "
                                      "per element")
        return
    term = jax.nn.logsumexp(U, axis=-1) - jax.nn.logsumexp(U - O, axis=-1)
    for n, rows, pos, v, _ in observed:
        interp.pointwise.append((n, pos, term[rows].reshape(jnp.shape(pos))))


Interpreter.executors[N.Marginal] = execute


def marginal_nodes(ir: N.ModelIR):
    return [s for s in ir.body if isinstance(s, N.Marginal)]


def layouts(lowered) -> Dict[str, Tuple[int, int, int]]:
    """(T, lowest value, K) of every marginalised latent of a lowered model (read while
    tracing the rest of the program once)."""
    out = {}
    rest = [s for s in lowered.ir.body if not isinstance(s, N.Marginal)]

    def probe(u, data):
        it = lowered.run([Unconstrain(lowered.layout, u)], data, body=rest)
        for node in marginal_nodes(lowered.ir):
            out[node.name] = layout_of(it, node)
        return 0.0

    jax.eval_shape(probe, jnp.zeros((lowered.dim,)), lowered.data_arrays)
    return out
