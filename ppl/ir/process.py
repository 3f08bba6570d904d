"""Linear SDEs as state-space models: the rewrite `discretise_linear` (the smc pass's route for a
process).

A scalar process with Brownian noise whose drift is affine in the state (a + A·x) and whose
diffusion does not read the state, read as x(t[i]), becomes `x: real[N]` with exact Gaussian
transitions between the read times, so the state-space analyses (Kalman, particle filters)
apply. The IR of processes itself is built in ppl/ir/build.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..syntax.visit import transform, walk
from . import nodes as N
from .loops import plan as plan_loop
from .printer import expr


class NotLinearProcess(Exception):
    """Why a process model has no exact state-space form (reason and the span to point at)."""

    def __init__(self, reason: str, span=None):
        super().__init__(reason)
        self.reason = reason
        self.span = span


@dataclass(frozen=True)
class LinearProcess:
    """What `linear_process` found: the process statement, the data array of read times and
    the number of reads (the state-space form's steps), the loops that read it."""
    draw: N.ProcessDraw
    times: N.Ref  # the data array t of the reads x(t[i])
    size: N.Expr  # N: the reads' loops run over 1:N
    loops: Tuple[int, ...]  # sids of the loops that read the path
    reads: Tuple[N.PathAt, ...]
    slope: Optional[N.Expr]  # A (None: the drift does not read the state)
    offset: N.Expr  # a


def has_process(ir: N.ModelIR) -> bool:
    return any(v.kind == "process" for v in ir.variables.values())


def _refs(e, name) -> bool:
    return any(isinstance(x, N.Ref) and x.name == name for x in walk(e))


def _affine_in(e, name) -> bool:
    """Whether e is affine in the bare name (the process's state inside sde(…))."""
    if not _refs(e, name):
        return True
    if isinstance(e, N.Ref):
        return True
    if isinstance(e, N.Binary):
        if e.op in ("+", "-"):
            return _affine_in(e.left, name) and _affine_in(e.right, name)
        if e.op == "*":
            return (not _refs(e.left, name) and _affine_in(e.right, name)) or \
                (not _refs(e.right, name) and _affine_in(e.left, name))
        if e.op == "/":
            return not _refs(e.right, name) and _affine_in(e.left, name)
        return False
    if isinstance(e, N.Unary) and e.op in ("-", "+"):
        return _affine_in(e.operand, name)
    return False


def _substitute(e, name, value: float):
    span = e.span
    return transform(e, lambda x: N.Const(span, value, "real")
                     if isinstance(x, N.Ref) and x.name == name and x.role == "local" else x)


def linear_process(ir: N.ModelIR) -> LinearProcess:
    """The process of `ir` as a linear SDE read at sorted data times, or `NotLinearProcess`."""
    draws = [s for s in ir.body if isinstance(s, N.ProcessDraw)]
    if len(draws) != 1:
        raise NotLinearProcess("the model has more than one process" if draws else
                               "the model has no process", draws[1].span if draws else None)
    p = draws[0]
    sde, name = p.dist, p.target.name
    if sde.dim is not None:
        raise NotLinearProcess(f'"{name}" is a vector process; the exact discretisation here is '
                               "for a scalar one", p.span)
    if sde.noise.kind != "brownian":
        raise NotLinearProcess(f'"{name}" is driven by MA-fBM noise; the exact discretisation here '
                               "is for Brownian noise (fractional noise: --method vsde)",
                               sde.noise.span)
    for what, e in (("drift", sde.drift), ("diffusion", sde.diffusion)):
        if _refs(e, "time"):
            raise NotLinearProcess(f"the {what} of \"{name}\" reads `time`: exact Gaussian steps "
                                   "need time-constant coefficients", e.span)
    if not _affine_in(sde.drift, name):
        raise NotLinearProcess(f'the drift of "{name}" is not linear in "{name}": exact Gaussian '
                               "steps need a drift a + A·x (nonlinear drifts: --method vsde)",
                               sde.drift.span)
    if _refs(sde.diffusion, name):
        raise NotLinearProcess(f'the diffusion of "{name}" reads "{name}": exact Gaussian steps '
                               "need a constant diffusion", sde.diffusion.span)
    init = sde.init
    if isinstance(init, N.Dist) and init.name != "normal":
        raise NotLinearProcess(f'the initial law of "{name}" is {init.name}(…): exact Gaussian '
                               "steps need normal(mean, sd) or a value", init.span)
    reads, loops, times, size = [], [], None, None
    for s in ir.body:
        found = [x for x in walk(s) if isinstance(x, N.PathAt)]
        if not found:
            continue
        if not (isinstance(s, N.Loop) and isinstance(s.lo, N.Const) and s.lo.value == 1):
            raise NotLinearProcess(f'line {s.span.line} reads "{name}" outside a loop `for i in 1:N` '
                                   f"over its read times ({name}(t[i]))", found[0].span)
        for r in found:
            t = r.time
            ok = isinstance(t, N.Index) and isinstance(t.base, N.Ref) and t.base.role == "data" \
                and len(t.indices) == 1 and isinstance(t.indices[0], N.Ref) and \
                t.indices[0].name == s.var
            if not ok or (times is not None and (t.base.name != times.name or s.hi != size)):
                raise NotLinearProcess(f'"{name}" is read at {_show(t)} (line {r.span.line}): the '
                                       "exact discretisation needs every read in the form "
                                       f"{name}(t[i]) over one data array t, in loops over 1:N",
                                       t.span)
            times, size = t.base, s.hi
            reads.append(r)
        if any(isinstance(x, N.Loop) for x in walk(s) if x is not s):
            raise NotLinearProcess(f'line {s.span.line}: "{name}" is read inside nested loops',
                                   found[0].span)
        loops.append(s.sid)
    if not reads:
        raise NotLinearProcess(f'the model never reads "{name}"', p.span)
    drift = sde.drift
    slope = None
    offset = _substitute(drift, name, 0.0)
    if _refs(drift, name):
        slope = N.Binary(drift.span, "-", _substitute(drift, name, 1.0), offset)
    return LinearProcess(p, times, size, tuple(loops), tuple(reads), slope, offset)


def _show(e) -> str:
    try:
        return expr(e)
    except Exception:  # noqa: BLE001 - only for a message
        return "a time"


def _c(span, v):
    return N.Const(span, float(v), "real")


def _call(span, f, *args):
    return N.Builtin(span, f, tuple(args))


def _bin(span, op, a, b):
    return N.Binary(span, op, a, b)


def _step(lp: LinearProcess, prev: Optional[N.Expr], prev_sd: Optional[N.Expr], dt: N.Expr, span):
    """(mean, sd) of X after a step dt from X = prev (an expression) whose own sd is prev_sd
    (None: a known value)."""
    sigma = lp.draw.dist.diffusion
    A, a = lp.slope, lp.offset
    if A is None:
        mean = _bin(span, "+", prev, _bin(span, "*", a, dt))
        var = _bin(span, "*", _bin(span, "*", sigma, sigma), dt)
        decay = None
    else:
        Adt = _bin(span, "*", A, dt)
        decay = _call(span, "exp", Adt)
        gain = _bin(span, "/", _call(span, "expm1", Adt), A)
        mean = _bin(span, "+", _bin(span, "*", decay, prev), _bin(span, "*", a, gain))
        var = _bin(span, "*", _bin(span, "*", sigma, sigma),
                   _bin(span, "/", _call(span, "expm1", _bin(span, "*", _c(span, 2.0), Adt)),
                        _bin(span, "*", _c(span, 2.0), A)))
    if prev_sd is not None:
        spread = prev_sd if decay is None else _bin(span, "*", decay, prev_sd)
        var = _bin(span, "+", _bin(span, "*", spread, spread), var)
    return mean, _call(span, "sqrt", var)


def discretise_linear(ir: N.ModelIR) -> N.ModelIR:
    """The process as a state-space model on its read times (raises `NotLinearProcess`):

        x: process<start=s, end=T> ~ sde(drift = a + A*x, diffusion = σ, init = normal(m0, s0))
        for i in 1:N { y[i] ~ normal(x(t[i]), τ) }
      →
        x: real[N]
        x[1] ~ normal(exact mean and sd of X(t[1]) from the initial law at s)
        for i in 2:N { x[i] ~ normal(exact step of length t[i] − t[i-1] from x[i-1]) }
        for i in 1:N { y[i] ~ normal(x[i], τ) }

    The same distribution of (static variables, X(t[1..N]), data): nothing is approximated.
    That the times are sorted and after the start is a property of the data, checked when the
    model is lowered (ppl/lower/process.py)."""
    lp = linear_process(ir)
    p = lp.draw
    name, span = p.target.name, p.span
    sid = 1 + max((x.sid for s in ir.body for x in walk(s) if isinstance(x, N.Stmt)), default=0)
    loop_var = next(s.var for s in ir.body if isinstance(s, N.Loop) and s.sid in lp.loops)
    i = N.Ref(span, loop_var, "index")
    one = N.Const(span, 1, "int")
    t_at = lambda k: N.Index(span, lp.times, (k,))  # noqa: E731
    x_at = lambda k: N.Index(span, N.Ref(span, name, "latent"), (k,))  # noqa: E731
    init = p.dist.init
    if isinstance(init, N.Dist):
        m0, s0 = init.args
    else:
        m0, s0 = init, None
    dt1 = _bin(span, "-", t_at(one), p.dist.start)
    mean1, sd1 = _step(lp, m0, s0, dt1, span)
    prev = _bin(span, "-", i, one)
    mean, sd = _step(lp, x_at(prev), None, _bin(span, "-", t_at(i), t_at(prev)), span)
    vtype = N.VarType("real", (lp.size,), span=p.span)
    declare = N.Declare(sid, span, name, vtype, p.target.span)
    first = N.Draw(sid + 1, span, N.LValue(name, (one,), p.target.span),
                   N.Dist(span, "normal", (mean1, sd1)), "latent")
    body = (N.Draw(sid + 2, span, N.LValue(name, (i,), p.target.span),
                   N.Dist(span, "normal", (mean, sd)), "latent"),)
    outer = set(ir.variables)
    steps = N.Loop(sid + 3, span, loop_var, N.Const(span, 2, "int"), lp.size, body,
                   plan_loop(loop_var, body, outer))

    def read(x):
        if isinstance(x, N.PathAt) and x.path.name == name:
            return N.Index(x.span, N.Ref(x.path.span, name, "latent"), (x.time.indices[0],))
        return x

    out = []
    for s in ir.body:
        if s is p:
            out += [declare, first, steps]
        elif isinstance(s, N.Loop) and s.sid in lp.loops:
            new_body = tuple(transform(b, read) for b in s.body)
            out.append(N.Loop(s.sid, s.span, s.var, s.lo, s.hi, new_body,
                              plan_loop(s.var, new_body, outer), s.var_span))
        else:
            out.append(s)
    variables = dict(ir.variables)
    old = variables[name]
    variables[name] = N.Variable(name, "latent", vtype, "real", 1, old.span, elementwise=True,
                                 dists=("normal",))
    return ir.replace(variables=variables, body=tuple(out),
                      rewrites=ir.rewrites + ("discretise_process",))
