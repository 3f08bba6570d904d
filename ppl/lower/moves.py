"""Lowering of user-written moves (ppl/ir/moves.py) to JAX functions of the state.

A move's blocks run on an environment of the data and the current state (each variable by its
name, an array whose size is random at its largest size, the padding holding filler values).
Both blocks run as straight-line code under a mask: an `if` whose condition is only known at
run time runs both branches, each assignment and draw taking effect where its branch is taken
(`jnp.where`), so one compiled program serves every branch and every size.

- `MoveLowering.propose(key, env)` draws the auxiliary variables: their values (an inactive one,
  drawn in a branch not taken, holds 0), which are active, and log q(aux | state).
- `MoveLowering.score(env, values)` is log q(aux | state) at given values, and which are active:
  the branches are taken by the given discrete values and the state.
- `MoveLowering.involution(env)` runs the involution block: the environment after it.

In a proposal, a distribution's argument that is an array of random size (`rep(1.0 / k, k)`)
has its padding replaced by 0, so `categorical(rep(1.0 / k, k))` draws uniformly from 1..k.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
from numpyro import validation_enabled

from ..builtins.distributions import DISTRIBUTIONS
from ..ir import moves as MV
from ..ir import nodes as N
from ..syntax.errors import PPLError
from .interpreter import Interpreter, sampling_key
from .padded import Padded


def _edit(interp: Interpreter, e: MV.ArrayEdit):
    """`insert(x, i, v)` / `remove(x, i)` on the first axis (1-based i)."""
    x = interp.expr(e.array)
    if isinstance(x, Padded):
        x = x.values
    x = jnp.asarray(x)
    cap = x.shape[0]
    i = jnp.asarray(interp.expr(e.position)) - 1
    idx = jnp.arange(cap).reshape((cap,) + (1,) * (x.ndim - 1))
    if e.op == "insert":
        v = jnp.broadcast_to(jnp.asarray(interp.expr(e.value), x.dtype), x.shape[1:])
        shifted = jnp.concatenate([x[:1], x[:-1]], axis=0)  # shifted[t] = x[t - 1]
        return jnp.where(idx < i, x, jnp.where(idx == i, v, shifted))
    shifted = jnp.concatenate([x[1:], x[-1:]], axis=0)  # shifted[t] = x[t + 1]
    return jnp.where(idx < i, x, shifted)


Interpreter.expr_executors[MV.ArrayEdit] = _edit


def _as_bool(c):
    c = jnp.asarray(c)
    return c if c.dtype == jnp.bool_ else c != 0


def _and(m, c):
    return c if m is True else (m & c)


class _Run:
    """One run of a move block under a mask (True, or a traced boolean)."""

    def __init__(self, ir: N.ModelIR, env: Dict[str, Any], key=None, given=None):
        self.it = Interpreter(ir, env)
        self.key, self.given = key, given
        self.values: Dict[str, Any] = {}
        self.active: Dict[str, Any] = {}
        self.logq = jnp.zeros(())

    @property
    def env(self):
        return self.it.env

    def block(self, body, m):
        for s in body:
            self.stmt(s, m)

    def _set(self, name, value, m, old=None):
        if old is None or m is True:
            self.env[name] = value
            return
        old = jnp.asarray(old)
        value = jnp.asarray(value)
        if jnp.shape(value) != jnp.shape(old):
            value, old = jnp.broadcast_arrays(value, old)
        dtype = jnp.result_type(value, old) if jnp.issubdtype(old.dtype, jnp.floating) else old.dtype
        self.env[name] = jnp.where(m, value.astype(dtype), old.astype(dtype))

    def _dist(self, d: N.Dist):
        args = []
        for a in d.args:
            v = self.it.expr(a)
            if isinstance(v, Padded):  # the padding of a random-size argument: probability 0
                v = jnp.where(v.mask(), v.values, 0.0)
            args.append(v)
        # no argument validation: a branch not taken may hold invalid arguments (1 / 0 …),
        # which under jit are traced and masked anyway
        with validation_enabled(False):
            return DISTRIBUTIONS[d.name].build(*args)

    def stmt(self, s, m):
        if isinstance(s, N.Draw):  # an auxiliary variable
            name = s.target.name
            d = self._dist(s.dist)
            if self.given is None:
                value = d.sample(sampling_key(jax.random.fold_in(self.key, s.sid)))
            else:
                value = self.given[name]
            lp = jnp.sum(d.log_prob(value))
            self.logq = self.logq + jnp.where(m, lp, 0.0)
            old = self.values.get(name)
            self._set(name, value, m, jnp.zeros_like(value) if old is None else old)
            self.values[name] = self.env[name]
            self.active[name] = self.active.get(name, jnp.bool_(False)) | (jnp.bool_(True) if m is True else m)
        elif isinstance(s, N.Let):
            value = self.it.expr(s.value)
            if isinstance(value, Padded):
                value = value.values
            name = s.target.name
            old = self.env.get(name)
            self.it._assign(s.target, value)
            if old is not None:
                self._set(name, self.env[name], m, old.values if isinstance(old, Padded) else old)
        elif isinstance(s, N.Branch):
            c = self.it.expr(s.cond)
            if isinstance(c, (bool, int)):
                self.block(s.then if c else s.orelse, m)
                return
            c = _as_bool(c)
            self.block(s.then, _and(m, c))
            self.block(s.orelse, _and(m, ~c))
        elif isinstance(s, N.Loop):
            lo, hi = self.it.loop_bounds(s)
            for i in range(lo, hi + 1):
                self.env[s.var] = i
                self.block(s.body, m)
            self.env.pop(s.var, None)
        else:  # pragma: no cover - the checker admits no other statement
            raise PPLError(f"a move cannot run {type(s).__name__}", s.span)


class MoveLowering:
    """A move's blocks as functions of an environment (data and state by name)."""

    def __init__(self, ir: N.ModelIR, move: MV.Move):
        self.ir, self.move = ir, move

    def propose(self, key, env) -> Tuple[Dict[str, Any], Dict[str, Any], Any]:
        r = _Run(self.ir, dict(env), key=key)
        r.block(self.move.propose, True)
        return self._complete(r)

    def score(self, env, values) -> Tuple[Dict[str, Any], Any]:
        """(active, log q) of the given auxiliary values."""
        r = _Run(self.ir, dict(env), given=values)
        r.block(self.move.propose, True)
        _, active, logq = self._complete(r)
        return active, logq

    def _complete(self, r: _Run):
        values = {a.name: r.values[a.name] for a in self.move.aux}
        active = {a.name: jnp.asarray(r.active[a.name], bool) for a in self.move.aux}
        return values, active, r.logq

    def involution(self, env) -> Dict[str, Any]:
        r = _Run(self.ir, dict(env))
        r.block(self.move.involution, True)
        return r.env

