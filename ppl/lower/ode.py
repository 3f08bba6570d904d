"""ODE solves inside a model (`ode_rk45(f, y0, t0, ts, …)`), on diffrax.

The right-hand side is the program's function `f(t, y, …)`, run by the interpreter inside
diffrax's vector field; gradients for NUTS come from differentiating through the solver
(diffrax's recursive checkpointing: memory grows with the log of the number of steps). A solve
that fails (more than max_num_steps steps, a non-finite derivative) makes the density −inf and
is recorded under the call's span, so a point where it fails is reported at the line of the call.

Solvers: rk45 is Dormand–Prince 5(4) (`Dopri5`), as Stan's; bdf, Stan's stiff solver, is the
L-stable implicit Runge–Kutta `Kvaerno5` (diffrax has no BDF); adams and ckrk (non-stiff) run
`Tsit5`, a 5(4) pair of the same family as Cash–Karp.
"""
from __future__ import annotations

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from ..builtins.ode import DEFAULT_ATOL, DEFAULT_MAX_STEPS, DEFAULT_RTOL
from ..ir import nodes as N


def _diffrax():
    # diffrax takes about a second to import: only models that solve an ODE pay for it
    return importlib.import_module("diffrax")


def _solver(method: str):
    diffrax = _diffrax()
    return {"rk45": diffrax.Dopri5, "bdf": diffrax.Kvaerno5, "adams": diffrax.Tsit5,
            "ckrk": diffrax.Tsit5}[method]()


def _static_float(interp, e, default, what):
    if e is None:
        return default
    v = interp.expr(e)
    try:
        return float(np.asarray(v))
    except Exception:  # noqa: BLE001 - a traced value
        raise interp.err(f"{what} must be known before inference (a literal or data)",
                         e.span) from None


def _static_int(interp, e, default, what):
    if e is None:
        return default
    v = interp.expr(e)
    if isinstance(v, jax.core.Tracer) or np.ndim(v) or \
            not np.issubdtype(np.asarray(v).dtype, np.integer):
        raise interp.err(f"{what} must be known before inference (integer data or a literal)",
                         e.span)
    return int(v)


def _adjoint(max_steps):
    diffrax = _diffrax()
    if os.environ.get("PPL_ODE_ADJOINT") == "direct":
        return {"adjoint": diffrax.DirectAdjoint()}
    return {}


def solve(interp, e: N.OdeSolve):
    diffrax = _diffrax()
    f = interp.ir.functions[e.function]
    y0 = jnp.asarray(interp.expr(e.y0), dtype=jnp.result_type(float))
    t0 = jnp.asarray(interp.expr(e.t0), dtype=y0.dtype)
    ts = jnp.asarray(interp.expr(e.ts), dtype=y0.dtype)
    args = tuple(interp.expr(a) for a in e.args)
    if y0.ndim != 1 or ts.ndim != 1:
        raise interp.err(f"the initial state and the times of the ODE must be 1-dimensional arrays "
                         f"(here of shapes {y0.shape} and {ts.shape})", e.span)
    rtol = _static_float(interp, e.rtol, DEFAULT_RTOL, "the relative tolerance")
    atol = _static_float(interp, e.atol, DEFAULT_ATOL, "the absolute tolerance")
    max_steps = _static_int(interp, e.max_steps, DEFAULT_MAX_STEPS, "max_num_steps")

    def field(t, y, a):
        dy = jnp.asarray(interp.call_user(f, [t, y, *a], e), dtype=y.dtype)
        if dy.shape != y.shape:
            raise interp.err(f"{e.function} returns a value of shape {dy.shape} for a state of "
                             f"shape {y.shape}: dy/dt must have the shape of y", e.span)
        return dy

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), _solver(e.method), t0=t0, t1=ts[-1], dt0=None, y0=y0, args=args,
        saveat=diffrax.SaveAt(ts=ts), max_steps=max_steps, throw=False,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), **_adjoint(max_steps))
    ok = (sol.result == diffrax.RESULTS.successful) & (t0 <= ts[0]) & jnp.all(jnp.diff(ts) >= 0)
    interp.valid = interp.valid & ok
    interp._record(("ode", e.span.line, e.span.col, e.span.end_line, e.span.end_col), ok)
    # a failed solve: the density is -inf; finite values keep the gradient finite
    return jnp.where(ok, sol.ys, jnp.broadcast_to(y0, sol.ys.shape))
