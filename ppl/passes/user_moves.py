"""User-written moves (`move NAME(weight = w) { propose { … } involution { … } }`) as MHG
involutions of the padded model, checked before they run.

A move of the language (ppl/ir/moves.py, lowered by ppl/lower/moves.py) becomes an
`ppl.algorithms.involutions.Involution`:

- `propose(key, x)` runs the propose block and packs the auxiliary variables into the
  protocol's `Aux`: `choice` = the discrete auxiliaries (0 when not drawn), which discrete and
  which real coordinates were drawn; `u` = the real auxiliaries that were drawn, first (a
  permutation that depends on the discrete choices only, so the Jacobian is unchanged);
- `log_q(aux, x)` runs the propose block at the given values: log q(aux | x), and −inf unless
  exactly the auxiliaries present were drawn (so a reverse move that needs other draws than
  the involution wrote has probability 0);
- `apply(x, aux)` runs the involution block from the state and the auxiliaries and reads the
  new state and aux′; which of aux′ are present is what the propose block would draw at x′
  with the discrete aux′.

The acceptance ratio is the general MHG one, π(x′) q(u′|x′) / (π(x) q(u|x)) · |det ∂h/∂(x,u)|,
with the Jacobian from `jax.jacfwd` and `slogdet` on the active continuous coordinates
(`involutions.auto_log_jacobian`). Before a run, at random points of the prior (cheap, on by
default, `--option move_checks=off` to skip): h∘h = id, the Jacobian square (as many
continuous coordinates in (x, u) as in (x′, u′)) with a finite log-determinant, log|det| at
h(x, u) = −log|det| at (x, u), and log r(x→x′) = −log r(x′→x); `move_checks=full` adds the
Jacobian against finite differences (tolerance 1e-2: prior draws reach extreme scales). A move that fails is refused with an error at
its name in the model file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms import mhg as M
from ..algorithms.involutions import (JACOBIAN_STATUS, Aux, Involution, InvolutionError,
                                      _active_equal, auto_log_jacobian, check_involution)
from ..algorithms.padded import Layout, clean
from ..ir import moves as MV
from ..lower.moves import MoveLowering
from ..syntax.errors import PPLError

_HINTS = {
    "round-trip (h∘h = id)": (
        "applying the involution twice must give back the state and the auxiliary variables: "
        "each branch must undo the other (e.g. a split writes what the merge reads back) and set "
        "the auxiliary variables of the reverse move (aux′)"),
    "Jacobian": (
        "a move must keep the count of continuous coordinates: the state's reals it adds must "
        "equal the auxiliary reals it consumes (and those it removes become auxiliary reals "
        "of the reverse move), and the map must be invertible"),
    "finite-difference Jacobian": (
        "the map is not differentiable at these points: avoid steps, rounding or branches on "
        "real values inside the involution"),
    "reversal (log r(x→x′) = −log r(x′→x))": (
        "the reverse move's probability does not match: the propose block at the new state must "
        "be able to draw the auxiliary variables the involution writes"),
    "log-determinant": (
        "the Jacobian of the involution is singular at these points: every coordinate must "
        "depend on the inputs invertibly"),
}


class UserMove:
    """One move of the language and its involution over a padded model."""

    def __init__(self, padded, move: MV.Move):
        self.padded, self.move = padded, move
        lowered, model = padded.lowered, padded.model
        self.lowered, self.model = lowered, model
        self.lowering = MoveLowering(lowered.ir, move)
        data = lowered.data_arrays
        key = jax.random.PRNGKey(0)
        example = jax.eval_shape(lambda k, d: model.init(k, d), key, data)
        shapes = jax.eval_shape(lambda k, s, d: self.lowering.propose(k, self._env(s, d))[0],
                                key, example, data)
        self.real = [(a, tuple(shapes[a].shape)) for a in move.real_aux]
        self.discrete = [(a, tuple(shapes[a].shape)) for a in move.discrete_aux]
        self.real_dtypes = {a: shapes[a].dtype for a in move.real_aux}
        self.n_real = sum(int(np.prod(s, dtype=int)) for _, s in self.real)
        self.n_disc = sum(int(np.prod(s, dtype=int)) for _, s in self.discrete)
        self.width = max(self.n_real, 1)  # at least one (inactive) entry: reductions over u
        layout = Layout(model)
        continuous = [b.name for b in layout.blocks]
        # the map's continuous coordinates: the variables it writes and the arrays sized by a
        # size it writes (their active entries come and go with the size)
        resized = {a.name for a in model.arrays if a.size in move.writes}
        blocks = tuple(n for n in continuous if n in move.writes or n in resized)
        if not blocks and continuous:  # the map leaves the state's reals alone: still measured
            blocks = (continuous[0],)
        coords = sum(b.stop - b.start for b in layout.blocks if b.name in blocks)
        self.involution = Involution(move.name, self.propose, self.log_q, self.apply, None,
                                     blocks=blocks,
                                     max_local_dim=int(min(coords + self.width,
                                                           max(16, 2 * self.n_real + 8))))

    # ------------------------------------------------------------------ packing
    def _env(self, state, data) -> Dict[str, Any]:
        env = dict(self.lowered.base_env(data))
        env.update(state)
        return env

    def _encode(self, values, active) -> Aux:
        f = jnp.result_type(float)
        if self.real:
            r = jnp.concatenate([jnp.reshape(values[a], (-1,)).astype(f) for a, _ in self.real])
            rm = jnp.concatenate([jnp.broadcast_to(active[a], (int(np.prod(s, dtype=int)),))
                                  for a, s in self.real])
        else:
            r, rm = jnp.zeros((0,), f), jnp.zeros((0,), bool)
        pad = self.width - self.n_real
        r = jnp.concatenate([jnp.where(rm, r, 0.0), jnp.zeros((pad,), f)])
        rm = jnp.concatenate([rm, jnp.zeros((pad,), bool)])
        perm = jnp.argsort(~rm, stable=True)  # drawn coordinates first
        parts = []
        for a, s in self.discrete:
            n = int(np.prod(s, dtype=int))
            v = jnp.reshape(values[a], (-1,)).astype(jnp.int32)
            act = jnp.broadcast_to(active[a], (n,))
            parts.append(jnp.where(act, v, 0))
        dmask = [jnp.broadcast_to(active[a], (int(np.prod(s, dtype=int)),)).astype(jnp.int32)
                 for a, s in self.discrete]
        choice = jnp.concatenate(parts + dmask + [rm.astype(jnp.int32)])
        return Aux(choice, r[perm], jnp.sum(rm).astype(jnp.int32))

    def _decode(self, aux: Aux):
        """(values by name, discrete drawn mask, real drawn mask)."""
        q = self.n_disc
        dvals, dmask, rm = aux.choice[:q], aux.choice[q:2 * q] != 0, aux.choice[2 * q:] != 0
        perm = jnp.argsort(~rm, stable=True)
        r = jnp.zeros((self.width,), aux.u.dtype).at[perm].set(aux.u)
        r = jnp.where(rm, r, 0.0)
        values, pos = {}, 0
        for a, s in self.real:
            n = int(np.prod(s, dtype=int))
            values[a] = jnp.reshape(r[pos:pos + n], s).astype(self.real_dtypes[a])
            pos += n
        pos = 0
        for a, s in self.discrete:
            n = int(np.prod(s, dtype=int))
            values[a] = jnp.reshape(dvals[pos:pos + n], s)
            pos += n
        return values, dmask, rm[:self.n_real]

    # ------------------------------------------------------------------ the protocol
    def propose(self, key, state, data) -> Aux:
        values, active, _ = self.lowering.propose(key, self._env(state, data))
        return self._encode(values, active)

    def log_q(self, aux: Aux, state, data):
        values, _, _ = self._decode(aux)
        active, lq = self.lowering.score(self._env(state, data), values)
        again = self._encode(values, active)
        same = jnp.all(again.choice == aux.choice)
        return jnp.where(same, lq, -jnp.inf)

    def apply(self, state, aux: Aux, data):
        values, _, _ = self._decode(aux)
        env = self._env(state, data)
        env.update(values)
        out = self.lowering.involution(env)
        new = {}
        for name, old in state.items():
            if name in self.move.writes:
                v = jnp.asarray(out[name])
                new[name] = jnp.broadcast_to(v, jnp.shape(old)).astype(jnp.asarray(old).dtype)
            else:
                new[name] = old
        values2 = {a.name: jnp.broadcast_to(jnp.asarray(out[a.name]), jnp.shape(values[a.name]))
                   .astype(jnp.asarray(values[a.name]).dtype) for a in self.move.aux}
        active, _ = self.lowering.score(self._env(clean(self.model, new), data), values2)
        return new, self._encode(values2, active)


@dataclass(frozen=True)
class UserMoveKernel:
    """The MHG kernel of a user's move: an `InvolutiveMove` (automatic Jacobian) that keeps its
    `UserMove` and the report of its checks. Not an `InvolutiveMove` itself, so the pass's
    generic validation does not check it a second time (it was checked, located, at build)."""
    inner: M.InvolutiveMove
    user: Any = None
    report: Any = None

    @property
    def name(self):
        return self.inner.name

    def init(self, state, data):
        return self.inner.init(state, data)

    def step(self, key, state, lp, params, data, adapt):
        return self.inner.step(key, state, lp, params, data, adapt)

    def finish_warmup(self, params):
        return params


def user_moves(padded, options: Dict[str, Any]) -> List[Tuple[Any, float]]:
    """The model's moves as (kernel, weight), checked at random points unless `move_checks`
    is off (`full` adds the finite-difference Jacobian check); none with `moves=off`."""
    ir = padded.lowered.ir
    moves = getattr(ir, "moves", ())
    if not moves:
        return []
    flag = str(options.get("moves", "on")).lower()
    if flag in ("off", "false", "0", "none"):
        return []
    if flag not in ("on", "true", "1"):
        raise PPLError(f'unknown value "{options["moves"]}" of the option moves', None,
                       "moves=on (the model's moves with the derived ones) or moves=off")
    checks = str(options.get("move_checks", "on")).lower()
    if checks not in ("on", "off", "full", "true", "false", "0", "1"):
        raise PPLError(f'unknown value "{options["move_checks"]}" of the option move_checks', None,
                       "move_checks=on (default), full (also finite differences) or off")
    built = [(UserMove(padded, mv), mv) for mv in moves]
    reports = {}
    if checks not in ("off", "false", "0"):
        reports = check_user_moves(padded, built, jax.random.PRNGKey(0), full=checks == "full")
    return [(UserMoveKernel(M.InvolutiveMove(padded.model, um.involution), um, reports.get(mv.name)),
             mv.weight) for um, mv in built]


def check_user_moves(padded, built, key, points: int = 8, full: bool = False) -> Dict[str, Any]:
    """The involution checks at `points` prior draws (`involution_checks`; with `full` also
    `involutions.check_involution`: Jacobian against finite differences); a failure is an
    error at the move's name."""
    model, data = padded.model, padded.lowered.data_arrays
    k_states, k_moves = jax.random.split(key)
    states = jax.jit(jax.vmap(lambda k: model.init(k, data)))(jax.random.split(k_states, points))
    reports = {}
    for i, (um, mv) in enumerate(built):
        k = jax.random.fold_in(k_moves, i)
        try:
            reports[mv.name] = involution_checks(model, um.involution, states, data, k)
            if full:
                reports[mv.name]["finite_differences"] = check_involution(
                    model, um.involution, states, data, k, fd_tol=1e-2)["finite_differences"]
        except InvolutionError as e:
            raise refused(padded.lowered.ir, mv, e.check, e.detail) from None
    return reports


def involution_checks(model, inv: Involution, states, data, key, rtol=1e-7, atol=1e-10):
    """At each state with fresh auxiliaries: h(h(x, a)) = (x, a) on the active entries; the
    Jacobian square and non-singular (`reduced_log_det` status) with a finite log-determinant
    wherever both densities are finite; log|det| at (x′, a′) = −log|det| at (x, a) (the
    Jacobian of an involution); log r(x→x′) = −log r(x′→x). Raises `InvolutionError`."""
    def one(k, x):
        x = clean(model, x)
        lp = model.log_density(x, data)
        aux = inv.propose(k, x, data)
        x2, a2 = inv.apply(x, aux, data)
        x2 = clean(model, x2)
        x3, a3 = inv.apply(x2, a2, data)
        err = _active_equal(model, x, clean(model, x3), rtol, atol)
        used = jnp.arange(aux.u.shape[0]) < aux.n_u
        err = jnp.maximum(err, jnp.max(jnp.where(used, jnp.abs(a3.u - aux.u) / (atol + rtol * jnp.abs(aux.u)), 0.0)))
        err = jnp.maximum(err, jnp.any(a3.choice != aux.choice) * 1e12)
        lp2 = model.log_density(x2, data)
        # both directions in one traced function each (a vmap over the pair): half the program
        pair = jax.tree.map(lambda a, b: jnp.stack([a, b]), (x, aux), (x2, a2))
        (ld, ld2), (status, status2) = jax.vmap(
            lambda s, a: auto_log_jacobian(model, inv, s, a, data))(*pair)
        lq, lq2 = jax.vmap(lambda s, a: inv.log_q(a, s, data))(*pair)
        finite = jnp.isfinite(lp) & jnp.isfinite(lp2)
        r_fwd = lp2 - lp + lq2 - lq + ld
        r_back = lp - lp2 + lq - lq2 + ld2
        err_r = jnp.where(finite & jnp.isfinite(r_fwd), jnp.abs(r_fwd + r_back), 0.0)
        err_ld = jnp.where(finite, jnp.abs(ld + ld2), 0.0)
        return dict(round_trip=err, status=jnp.maximum(status, status2), log_det=ld,
                    log_det_error=err_ld, reversal=err_r, finite=finite)
    n = jax.tree.leaves(states)[0].shape[0]
    res = jax.jit(jax.vmap(one))(jax.random.split(key, n), states)
    res = jax.tree.map(np.asarray, res)
    if not np.all(res["round_trip"] <= 1.0):
        i = int(np.argmax(res["round_trip"]))
        raise InvolutionError(inv.name, "round-trip (h∘h = id)",
                              "applying the move twice does not return its input (at "
                              f"{np.sum(res['round_trip'] > 1.0)} of {n} random points; relative "
                              f"error {res['round_trip'][i]:.3g})")
    bad = [int(s) for s in res["status"] if s != 0]
    if bad:
        raise InvolutionError(inv.name, "Jacobian", f"the Jacobian is not usable: {JACOBIAN_STATUS[bad[0]]}")
    if np.any(res["finite"] & ~np.isfinite(res["log_det"])):
        raise InvolutionError(inv.name, "log-determinant",
                              "log|det ∂h/∂(x, u)| is not finite at a point where both densities are")
    if not np.all(np.nan_to_num(res["log_det_error"], nan=np.inf) <= 1e-6):
        raise InvolutionError(inv.name, "log-determinant",
                              "log|det| at h(x, u) is not −log|det| at (x, u) (largest difference "
                              f"{np.nanmax(res['log_det_error']):.3g})")
    if not np.all(np.nan_to_num(res["reversal"], nan=np.inf) <= 1e-6):
        raise InvolutionError(inv.name, "reversal (log r(x→x′) = −log r(x′→x))",
                              f"largest |log r + log r′| {np.nanmax(res['reversal']):.3g}")
    return {"points": int(n), "finite_points": int(res["finite"].sum()),
            "round_trip": float(res["round_trip"].max()),
            "log_det_error": float(np.max(res["log_det_error"])),
            "reversal": float(np.max(res["reversal"]))}


def refused(ir, mv: MV.Move, check: str, detail: str) -> PPLError:
    where = f" (defined in {mv.module})" if mv.module else ""
    return PPLError(f'move "{mv.name}"{where} is not a valid involution: it fails the {check} '
                    f"check: {detail}", mv.name_span, _HINTS.get(check), ir.source, ir.filename)


def describe(moves) -> List[str]:
    """What `ppl check` says about the user's moves."""
    return [f"  {m.name:<24} (user-written{', ' + m.module if m.module else ''}) weight {m.weight:g}"
            for m in moves]
