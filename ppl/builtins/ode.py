"""ODE solvers of the language (Stan's names): `ode_rk45(f, y0, t0, ts, …)` and friends.

`f` is a function of the program passed by name, `f(t, y, …) -> dy/dt`; the arguments after
`ts` are passed on to it. The `_tol` forms take the relative tolerance, the absolute tolerance
and the largest number of steps after `ts`, as in Stan. Lowering: ppl/lower/ode.py (diffrax).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OdeSpec:
    name: str
    method: str  # rk45 (Dormand–Prince 5(4)) | bdf (stiff: implicit Kvaerno 5) | adams | ckrk
    tol: bool  # rtol, atol, max_num_steps follow ts


# Stan's defaults for the forms without tolerances
DEFAULT_RTOL, DEFAULT_ATOL, DEFAULT_MAX_STEPS = 1e-6, 1e-6, 10 ** 6

ODE_SOLVERS = {s.name: s for m in ("rk45", "bdf", "adams", "ckrk")
               for s in (OdeSpec(f"ode_{m}", m, False), OdeSpec(f"ode_{m}_tol", m, True))}
