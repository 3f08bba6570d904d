"""The IR of continuous-time processes (the IR builder's part for `x: process<…> ~ sde(…)`).

    x: process<start=0, end=T>[d] ~ sde(drift = …, diffusion = …, init = …, noise = fbm(H, …))
      → ProcessDraw(target x, dist SDE(args (drift, diffusion, init, Noise), start, end, dim))
    x(t[i]) → PathAt(Ref x, t[i])

Kept out of ppl/ir/build.py so the process rules live in one place; the builder calls
`process_draw` and `path_at`.
"""
from __future__ import annotations

from ..check.checker import Scope
from ..syntax import ast as A
from . import nodes as N


def is_process_decl(s) -> bool:
    return isinstance(s, A.VarDecl) and s.type is not None and s.type.base == "process"


def process_draw(builder, s: A.VarDecl, scope) -> N.ProcessDraw:
    call = s.dist
    t = s.type
    inner = Scope(scope)  # the state and the time, read inside sde(…) only
    inner.names[s.name] = "local"
    inner.names["time"] = "local"
    drift = builder._expr(call.arg("drift"), inner)
    diffusion = builder._expr(call.arg("diffusion"), inner)
    init = call.arg("init")
    init = builder._dist(init, scope) if isinstance(init, A.Call) and \
        _is_distribution(init.func) else builder._expr(init, scope)
    noise = _noise(builder, call.arg("noise"), scope, call.span)
    start = t.bound("start")
    start = N.Const(t.span, 0.0, "real") if start is None else builder._expr(start, scope)
    end = builder._expr(t.bound("end"), scope)
    dim = builder._expr(t.dims[0][0], scope) if t.dims else None
    sde = N.SDE(call.span, "sde", (drift, diffusion, init, noise), False, start, end, dim)
    return N.ProcessDraw(builder.sid(), s.span, N.LValue(s.name, (), s.name_span), sde, "latent")


def path_at(builder, e: A.Call, scope) -> N.PathAt:
    return N.PathAt(e.span, N.Ref(e.func_span or e.span, e.func, "process"),
                    builder._expr(e.args[0], scope))


def _is_distribution(name) -> bool:
    from ..builtins.distributions import DISTRIBUTIONS  # noqa: PLC0415
    return name in DISTRIBUTIONS


def _noise(builder, e, scope, span) -> N.Noise:
    if e is None or e.func == "brownian":
        return N.Noise(span if e is None else e.span, "brownian")
    hurst = e.args[0] if e.args else e.arg("H")
    settings = tuple((a.name, builder._expr(a.value, scope)) for a in e.named if a.name != "H")
    return N.Noise(e.span, "fbm", builder._expr(hurst, scope), settings)
