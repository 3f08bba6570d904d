"""Checker rules for continuous-time latent processes (mixed into `ppl.check.checker.Checker`).

    x: process<end=t_end> ~ sde(drift = theta * (mu - x), diffusion = sigma,
                                init = normal(x0_mean, x0_sd))
    x: process<start=0, end=2>[2] ~ sde(drift = A @ x, diffusion = L, init = multi_normal(m0, S0),
                                        noise = fbm(H, K = 5, gamma_max = 20, type = 1))
    y[i] ~ normal(x(t[i]), obs_sd)

Inside `sde(...)` the process's own name is its current state (a number, or a vector for
`process<…>[d]`) and `time` is the current time; elsewhere a process is read at a time, `x(t)`,
with times known from the data. The rules here say what may depend on what:

* the horizon (`start`, `end`) and the noise's settings (K, gamma_max, type, T, normalize) are
  numbers known from the data; H is a number in (0, 1), data or a random variable;
* drift and diffusion read the state, `time`, data and static random variables, never a path at
  a time (`x(s)`: a process has no memory here);
* a constant diffusion must be positive (a literal here; data when the model is lowered with
  its data, ppl/lower/process.py, which `ppl check --data` and the vsde pass run);
* the law (drift, diffusion, init, noise) cannot read observed data (`_process_finish`);
* observation times are data: they cannot depend on random variables.

A diffusion may read static random variables (`sigma ~ lognormal(…)`): the variational
posterior draws them first and then the path with the prior's diffusion *at those values*, so the
path KL stays finite (Girsanov, conditionally on the static variables); the vsde pass tests this
against the exact evidence (tests/passes/test_vsde.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Set

from ..builtins.distributions import DISTRIBUTIONS
from ..syntax import ast as A
from ..syntax.errors import did_you_mean
from ..syntax.visit import walk
from .types import REAL, Scope, Ty

SDE_ARGS = ("drift", "diffusion", "init", "noise")
FBM_ARGS = ("H", "K", "gamma_max", "type", "T", "normalize")
HORIZON = ("start", "end")
NAMED_CALLS = {"sde": SDE_ARGS, "fbm": FBM_ARGS}
TIME = "time"  # the process's time, inside sde(...) only


@dataclass
class ProcessDecl:
    """What the checker knows of a process: its declaration and its rank (0 or 1)."""
    name: str
    decl: A.VarDecl
    rank: int


class ProcessChecks:
    """The process rules; `self` is the Checker (err, vars, _expr, _dist, _declare …)."""

    @property
    def processes(self) -> Dict[str, ProcessDecl]:
        if not hasattr(self, "_processes"):
            self._processes = {}
        return self._processes

    # ------------------------------------------------------------ the declaration
    def _process_decl(self, s: A.VarDecl, scope, loop_depth: int, in_generated: bool):
        name = s.name
        if loop_depth or in_generated:
            raise self.err("a process must be declared at the top level", s.span,
                           "declare it before any loop, if or generated block")
        if s.dist is None:
            raise self.err(f'process "{name}" needs a law: `{name}: process<end=T> ~ sde(drift = …, '
                           "diffusion = …, init = …)`", s.span,
                           "a process is defined by its drift, diffusion and initial value")
        if s.dist.func != "sde":
            raise self.err(f'a process is drawn from sde(…), not {s.dist.func}(…)', s.dist.func_span,
                           f"write `{name}: process<end=T> ~ sde(drift = …, diffusion = …, init = …)`")
        t = s.type
        for b in t.bounds:
            if b.name not in HORIZON:
                raise self.err(f'unknown setting "{b.name}" of a process', b.span,
                               did_you_mean(b.name, HORIZON) or
                               "a process has a horizon: process<start=0, end=T> (start 0 by default)")
            self._data_only(b.value, scope, f"the {b.name} of the horizon of \"{name}\"")
        if t.bound("end") is None:
            raise self.err(f'process "{name}" needs the end of its horizon', t.span,
                           f"e.g. `{name}: process<end=2>` or `{name}: process<end=t_end>` with "
                           "t_end data")
        rank = 0
        if t.dims:
            if len(t.dims) > 1 or len(t.dims[0]) > 1:
                raise self.err("a process is a number or a vector: process<…>[d]", t.span,
                               "a matrix-valued process is not supported; use a vector")
            d = t.dims[0][0]
            dt = self._expr(d, scope)
            if dt.base != "int" or dt.rank:
                raise self.err("the dimension of a process must be an integer", d.span)
            rank = 1
        call = s.dist
        if call.args:
            raise self.err("sde takes named arguments", call.args[0].span,
                           "write sde(drift = …, diffusion = …, init = …, noise = fbm(H))")
        for a in call.named:
            if a.name not in SDE_ARGS:
                raise self.err(f'sde has no argument "{a.name}"', a.span,
                               did_you_mean(a.name, SDE_ARGS) or
                               "its arguments are drift, diffusion, init and noise")
        for need in ("drift", "diffusion", "init"):
            if call.arg(need) is None:
                example = {"drift": "drift = -x", "diffusion": "diffusion = 1",
                           "init": "init = normal(0, 1)"}[need]
                raise self.err(f'sde needs its {need}', call.span, f"add `{example}`")
        if name in self.vars:
            prev = self.vars[name]
            raise self.err(f'"{name}" is already declared (line {prev.span.line})', s.name_span,
                           "each variable is declared once")
        # the state and the time, visible inside sde(...) only
        inner = Scope(scope)
        inner.names[name] = Ty("real", rank)
        inner.names[TIME] = REAL
        for part in ("drift", "diffusion"):
            e = call.arg(part)
            self._no_path_reads(e, f"the {part} of \"{name}\"")
            self._time_not_shadowed(e)
            ty = self._expr(e, inner)
            limit = rank if part == "drift" else 2 * rank
            if ty.rank is not None and ty.rank > limit:
                what = "a number" if rank == 0 else ("a vector" if part == "drift" else
                                                     "a number, a vector or a matrix")
                raise self.err(f"the {part} of \"{name}\" has {ty.rank} dimension(s); it must be {what}",
                               e.span, f'"{name}" is declared {self._text(t) or "a process"}')
        self._positive_constant(call.arg("diffusion"), name)
        init = call.arg("init")
        self._no_path_reads(init, f"the initial value of \"{name}\"")
        if isinstance(init, A.Call) and init.func in DISTRIBUTIONS:
            spec = DISTRIBUTIONS[init.func]
            if spec.discrete:
                raise self.err(f"the initial value of a process is continuous, not {init.func}(…)",
                               init.span)
            self._dist(init, scope, name, Ty("real", rank))
        else:
            self._expr(init, scope)
        noise = call.arg("noise")
        if noise is not None:
            self._noise(noise, scope, name)
        self._declare(name, "process", s, t, s.name_span, scope)
        del scope.names[name]  # outside sde(...) a process is read at a time: x(t)
        self.vars[name].ty = Ty("real", rank)
        self.vars[name].defined_by.append(s)
        self.processes[name] = ProcessDecl(name, s, rank)

    def _noise(self, e, scope, name):
        if not isinstance(e, A.Call) or e.func not in ("fbm", "brownian"):
            raise self.err("the noise of a process is brownian() or fbm(H, …)", e.span,
                           "e.g. noise = fbm(0.3) or noise = fbm(H, K = 5, gamma_max = 20, type = 1)")
        if e.func == "brownian":
            if e.args or e.named:
                raise self.err("brownian() takes no arguments", e.span)
            return
        if len(e.args) > 1:
            raise self.err("fbm takes one positional argument, H", e.args[1].span,
                           "name the others: fbm(H, K = 5, gamma_max = 20, type = 1, T = 6, "
                           "normalize = false)")
        for a in e.named:
            if a.name not in FBM_ARGS:
                raise self.err(f'fbm has no argument "{a.name}"', a.span,
                               did_you_mean(a.name, FBM_ARGS) or
                               "its arguments are H, K, gamma_max, type, T and normalize")
        if e.args and e.arg("H") is not None:
            raise self.err("H is given twice", e.arg("H").span)
        hurst = e.args[0] if e.args else e.arg("H")
        if hurst is None:
            raise self.err("fbm needs the Hurst index H", e.span, "e.g. fbm(0.3), or fbm(H) with "
                           "H ~ beta(2, 2)")
        self._no_path_reads(hurst, "the Hurst index")
        ty = self._expr(hurst, scope)
        if ty.rank:
            raise self.err("the Hurst index is a number", hurst.span)
        v = _literal(hurst)
        if v is not None and not 0.0 < v < 1.0:
            raise self.err(f"the Hurst index must lie in (0, 1); it is {v:g}", hurst.span,
                           "H = 0.5 is Brownian motion; H < 0.5 rough, H > 0.5 smooth paths")
        for a in e.named:
            if a.name == "H":
                continue
            self._data_only(a.value, scope, f"fbm's {a.name}")
            v = _literal(a.value)
            if v is None:
                continue
            if a.name == "K" and (v != int(v) or v < 2):
                raise self.err(f"K is the number of OU processes, an integer ≥ 2; it is {v:g}",
                               a.value.span)
            if a.name == "gamma_max" and not v > 1:
                raise self.err(f"gamma_max must be > 1 (the rates run from 1/gamma_max to "
                               f"gamma_max); it is {v:g}", a.value.span)
            if a.name == "type" and v not in (1, 2):
                raise self.err(f"type is 1 (Mandelbrot–van Ness) or 2 (Riemann–Liouville); it is "
                               f"{v:g}", a.value.span)
            if a.name == "T" and not v > 0:
                raise self.err(f"T (the interval the weights are fitted on) must be positive; it "
                               f"is {v:g}", a.value.span)

    def _process_finish(self):
        """After the whole program: a process's law cannot depend on what is observed (the
        observations come after it). The diffusion most of all: the posterior SDE keeps the
        prior's diffusion (Girsanov: only the drift changes, so the path KL is finite), which
        cannot then depend on quantities only the posterior knows."""
        for p in self.processes.values():
            call = p.decl.dist
            for part in ("diffusion", "drift", "init", "noise"):
                e = call.arg(part)
                if e is None:
                    continue
                hit = self._observed_reads(e, {p.name, TIME})
                if hit is None:
                    continue
                n, span = hit
                v = self.vars[n]
                where = "the posterior's diffusion is the prior's, " if part == "diffusion" else ""
                raise self.err(f'the {part} of "{p.name}" depends on "{n}", which is observed '
                               f"(line {v.span.line}): the law of the process cannot depend on the "
                               "observations", span,
                               f"{where}so it may read data, numbers and random variables with "
                               "priors, not the data the model conditions on")

    def _observed_reads(self, e, skip, seen: Optional[Set[str]] = None):
        seen = set() if seen is None else seen
        for x in walk(e):
            if not isinstance(x, A.Name) or x.id in seen or x.id in skip:
                continue
            seen.add(x.id)
            v = self.vars.get(x.id)
            if v is None:
                continue
            if v.observed:
                return x.id, x.span
            if v.kind == "deterministic":
                for d in v.defined_by:
                    value = getattr(d, "value", None)
                    r = self._observed_reads(value, skip, seen) if value is not None else None
                    if r:
                        return r[0], x.span
        return None

    # ------------------------------------------------------------ reading a path
    def _process_read(self, e: A.Call, scope):
        p = self.processes[e.func]
        if e.named or e.given is not None or len(e.args) != 1:
            raise self.err(f'a process is read at one time: {e.func}(t)', e.span,
                           f'e.g. `y[i] ~ normal({e.func}(t[i]), 0.1)` with t data')
        time = e.args[0]
        ty = self._expr(time, scope)
        random = self._random_reads(time)
        if random:
            n, v = random
            raise self.err(f'the time at which "{e.func}" is read depends on "{n}", a {v}', time.span,
                           "observation times are data (or numbers): the path is observed at "
                           "known times")
        self.vars[e.func].used = True
        return Ty("real", None if ty.rank is None else ty.rank + p.rank)

    def _process_as_value(self, e: A.Name):
        raise self.err(f'"{e.id}" is a process: read its value at a time, {e.id}(t)', e.span,
                       f"e.g. `{e.id}(t[i])` with t data; inside sde(…), \"{e.id}\" is the current "
                       "state")

    def _process_target(self, lv: A.LValue):
        v = self.vars[lv.name]
        raise self.err(f'"{lv.name}" is a process (line {v.span.line}); it cannot be drawn or '
                       "assigned again", lv.span, "its law is the sde(…) of its declaration")

    def _named_call(self, call: A.Call):
        """Only sde(...) and fbm(...) take named arguments; sde(...) only defines a process."""
        if call.named and call.func not in NAMED_CALLS:
            raise self.err(f"{call.func} takes no named arguments", call.named[0].span,
                           "only sde(…) and fbm(…) do; pass the arguments in order")
        if call.func in ("sde", "fbm", "brownian"):
            what = {"sde": "defines a process: declare it `x: process<end=T> ~ sde(…)`",
                    "fbm": "is a noise: it goes in sde(…, noise = fbm(H))",
                    "brownian": "is a noise: it goes in sde(…, noise = brownian())"}[call.func]
            raise self.err(f"{call.func}(…) {what}", call.func_span or call.span)

    # ------------------------------------------------------------ helpers
    def _no_path_reads(self, e, what):
        for x in walk(e):
            if isinstance(x, A.Call) and x.func in self.processes:
                raise self.err(f"{what} cannot read a path at a time, {x.func}(…)", x.span,
                               "a process here has no memory: drift and diffusion depend on the "
                               "current state and time only")

    def _time_not_shadowed(self, e):
        if TIME in self.vars and any(isinstance(x, A.Name) and x.id == TIME for x in walk(e)):
            v = self.vars[TIME]
            raise self.err(f'inside sde(…) "time" is the process\'s time, but the model also has a '
                           f'variable "time" (line {v.span.line})', v.span,
                           'rename that variable, e.g. "time_"')

    def _positive_constant(self, e, name):
        v = _literal(e)
        if v is not None and not v > 0:
            raise self.err(f'the diffusion of "{name}" is {v:g}; it must be positive', e.span,
                           "a zero diffusion is an ODE (no noise) and a negative one the same "
                           "process as its absolute value: write a positive number")

    def _data_only(self, e, scope, what):
        self._expr(e, scope)
        random = self._random_reads(e)
        if random:
            n, v = random
            raise self.err(f'{what} depends on "{n}", a {v}', e.span,
                           "it must be known from the data: a number or data")

    def _random_reads(self, e, seen: Optional[Set[str]] = None):
        """(name, kind) of the first random variable `e` depends on (through deterministic
        values too), or None."""
        seen = set() if seen is None else seen
        for x in walk(e):
            if not isinstance(x, A.Name) or x.id in seen:
                continue
            seen.add(x.id)
            v = self.vars.get(x.id)
            if v is None:
                continue
            if v.kind in ("latent", "param", "process", "generated"):
                kind = {"latent": "random variable", "param": "param", "process": "process",
                        "generated": "generated quantity"}[v.kind]
                return x.id, kind
            if v.kind == "deterministic":
                for d in v.defined_by:
                    value = getattr(d, "value", None)
                    r = self._random_reads(value, seen) if value is not None else None
                    if r:
                        return r
        return None


def _literal(e) -> Optional[float]:
    """The value of a numeric literal (possibly negated), else None."""
    if isinstance(e, A.Num):
        return float(e.value)
    if isinstance(e, A.UnOp) and e.op in "+-" and isinstance(e.operand, A.Num):
        return -float(e.operand.value) if e.op == "-" else float(e.operand.value)
    return None
