"""Rewrites: pure IR → IR functions, in the order the passes apply them.

- `marginalize`: every finite discrete latent the discrete analysis can sum out leaves the
  program; its terms move into a `Marginal` node at the end of the model (after everything they
  read), which adds log Σ_z Π terms(z) to the density (ppl/lower/marginal.py).
- `extract_state_space`: the state-space pattern of a model (ppl/ir/statespace.py) becomes one
  `StateSpace` node holding the initial, transition and observation statements, so particle
  filters (ppl/lower/statespace.py) take their step functions from it; run as a program, the
  node is the same model.

Each rewrite records its name in `ModelIR.rewrites` (shown by `ppl check --ir`).
"""
from __future__ import annotations

from typing import Set

from ..syntax.visit import walk
from . import nodes as N
from .discrete import analyze as analyze_discrete
from .graph import ModelGraph
from .statespace import StateSpace, analyze as analyze_state_space


def marginalize(ir: N.ModelIR) -> N.ModelIR:
    """Sum out the discrete latents the analysis can sum out (all or nothing: a model whose
    discrete latents cannot all be summed out is returned unchanged)."""
    analysis = analyze_discrete(ModelGraph(ir))
    if not analysis.plans or not analysis.all_marginalisable:
        return ir
    removed: Set[int] = set()
    nodes = []
    for name, plan in analysis.plans.items():
        removed.add(plan.declare.sid)
        removed |= {t.stmt.sid for t in plan.terms}
        nodes.append(N.Marginal(_next_sid(ir) + len(nodes), plan.declare.span, name, plan.kind,
                                plan.declare, plan.terms))
    body = list(_without(ir, ir.body, removed))
    at = next((i for i, s in enumerate(body) if isinstance(s, N.Generated)), len(body))
    body[at:at] = nodes
    return ir.replace(body=tuple(body), rewrites=ir.rewrites + ("marginalize",))


def _without(ir, body, removed):
    for s in body:
        if s.sid in removed:
            continue
        if isinstance(s, N.Loop) and any(x.sid in removed for x in s.body):
            inner = tuple(x for x in s.body if x.sid not in removed)
            if all(isinstance(x, (N.Let, N.Declare)) and _target(x) not in ir.variables for x in inner):
                continue  # only loop-local helpers were left
            yield N.Loop(s.sid, s.span, s.var, s.lo, s.hi, inner, s.plan, s.var_span)
            continue
        yield s


def _target(s):
    return s.target.name if isinstance(s, N.Let) else s.name


def _next_sid(ir: N.ModelIR) -> int:
    return 1 + max((x.sid for s in ir.body for x in walk(s) if isinstance(x, N.Stmt)), default=0)


def extract_state_space(ir: N.ModelIR) -> N.ModelIR:
    """The state-space pattern as one `StateSpace` node (raises `NotStateSpace` otherwise)."""
    form = analyze_state_space(ModelGraph(ir))
    taken = {st.stmt.sid for st in form.init + form.transition + form.observations}
    taken |= set(form.declarations) | set(form.loops)
    # the node goes after every static statement (none of them reads a state)
    body = [s for s in ir.body if s.sid not in taken and not isinstance(s, N.Generated)]
    body.append(StateSpace(_next_sid(ir), form.span, form))
    body += [s for s in ir.body if isinstance(s, N.Generated)]
    return ir.replace(body=tuple(body), rewrites=ir.rewrites + ("extract_state_space",))
