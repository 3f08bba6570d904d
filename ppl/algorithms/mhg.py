"""Metropolis–Hastings–Green over padded models whose dimension is random.

The model is a `ppl.algorithms.padded.PaddedModel` (the protocol is documented there: size
variables, the arrays they size, an exact padded log density, element proposals for births).
The sampler mixes moves by weights; each move is a pure `init`/`step` pair over one chain:

* `InvolutiveMove(model, involution)` — any `Involution` (derived birth/death, split/merge, a
  user's own): auxiliary draw, deterministic involution, MHG acceptance with the Jacobian
  (closed form if the involution has one, else `jax.jacfwd` + `slogdet` on the active
  coordinates, see `involutions.auto_log_jacobian`).
* `HMCMove`, `NUTSMove` — Hamiltonian moves on the unconstrained continuous coordinates at
  fixed sizes (`padded.Layout`), masked: inactive coordinates get zero inverse mass, so they
  neither move nor enter the kinetic energy, and the target is unchanged by the padding. NUTS
  is NumPyro's tree builder (`numpyro.infer.hmc_util.build_tree`) with that masked metric; the
  step size is adapted by dual averaging during warm-up.
* `RandomWalkMove` — masked Gaussian random-walk Metropolis on the same coordinates (adapted
  scale), the cheap within-dimension move.
* `GibbsMove` — a discrete latent that is not a size: one element, drawn from its full
  conditional by enumerating its (static) range.

`MHG(model, moves)` runs chains `vmap`ped and iterations in `lax.scan`, one compiled program for
every size (and for warm-up and sampling alike). Each iteration picks one move by weight; the pick is shared by the chains (so the
switch runs one branch, not all of them under `vmap`), each chain accepts or rejects on its
own. `default_moves(model)` = NUTS (or HMC) + birth/death for every size + Gibbs for discrete
latents. `validate(model, moves, data, key)` runs the cheap checks (involution round trip,
Jacobians against finite differences and closed forms, reversal identity, padding does not
change the density).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.infer.hmc_util import (build_tree, dual_averaging,
                                    euclidean_kinetic_energy, velocity_verlet)

from .involutions import (Involution, birth_death, check_involution, log_ratio)
from .padded import PaddedModel, Layout, active, clean, to_nan

__all__ = ["InvolutiveMove", "HMCMove", "NUTSMove", "RandomWalkMove", "GibbsMove", "MHG",
           "MHGResult", "default_moves", "validate", "check_masking", "size_posterior",
           "conditional_means"]


def _nan_to_neg_inf(x):
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def _accept(key, log_r):
    """(accepted, numerical trouble): a NaN ratio is a rejection, counted as trouble."""
    trouble = jnp.isnan(log_r)
    return (jnp.log(jax.random.uniform(key)) < _nan_to_neg_inf(log_r)), trouble


def _select(flag, a, b):
    return jax.tree.map(lambda u, v: jnp.where(flag, u, v), a, b)


# ---------------------------------------------------------------------------------- moves
@dataclass(frozen=True)
class InvolutiveMove:
    model: PaddedModel
    involution: Involution
    automatic_jacobian: bool = False  # ignore a closed form and use jacfwd + slogdet

    @property
    def name(self):
        return self.involution.name

    def init(self, state, data):
        return ()

    def step(self, key, state, lp, params, data, adapt):
        k_prop, k_acc = jax.random.split(key)
        aux = self.involution.propose(k_prop, state, data)
        x2, _, lp2, r, status = log_ratio(self.model, self.involution, state, lp, aux, data,
                                          automatic=self.automatic_jacobian)
        r = jnp.where(status == 0, r, jnp.nan)
        ok, trouble = _accept(k_acc, r)
        return _select(ok, x2, state), jnp.where(ok, lp2, lp), ok, params, trouble

    def finish_warmup(self, params):
        return params


class _HParams(NamedTuple):
    log_step: Any
    da: Any  # dual-averaging state
    inv_mass: Any  # diagonal, per padded coordinate
    calls: Any  # adaptation calls so far
    count: Any  # Welford accumulators of the current window, per coordinate (active only)
    mean: Any
    m2: Any


def _momentum(key, mask, inv_mass):
    r = jax.random.normal(key, mask.shape, dtype=inv_mass.dtype)
    return jnp.where(mask, r / jnp.sqrt(jnp.where(mask, inv_mass, 1.0)), 0.0)


@dataclass(frozen=True)
class _Hamiltonian:
    model: PaddedModel
    target_accept: float = 0.8
    init_step_size: float = 0.1

    @property
    def layout(self) -> Layout:
        return Layout(self.model)

    adapt_mass: bool = True
    first_window: int = 25

    def init(self, state, data):
        da_init, _ = dual_averaging()
        log_eps = jnp.log(jnp.asarray(self.init_step_size, dtype=jnp.result_type(float)))
        d = self.layout.dim
        zeros = jnp.zeros(d, dtype=log_eps.dtype)
        return _HParams(log_eps, da_init(jnp.log(10.0) + log_eps), jnp.ones(d, dtype=log_eps.dtype),
                        jnp.zeros((), jnp.int32), zeros, zeros, zeros)

    def _adapt(self, params, accept_prob, z, mask, adapt):
        """Dual averaging of the step size; a diagonal mass from the variance of each active
        coordinate over windows of 25, 50, 100, … calls (Stan's doubling windows), the step
        size restarting after each."""
        da_init, da_update = dual_averaging()
        da = da_update(self.target_accept - jnp.where(jnp.isnan(accept_prob), 0.0, accept_prob), params.da)
        new = params._replace(log_step=da[0], da=da, calls=params.calls + 1)
        if self.adapt_mass:
            m = mask.astype(z.dtype)
            count = params.count + m
            delta = z - params.mean
            mean = params.mean + m * delta / jnp.maximum(count, 1.0)
            m2 = params.m2 + m * delta * (z - mean)
            q, r = jnp.divmod(new.calls, self.first_window)
            end = (r == 0) & (q >= 1) & ((q & (q - 1)) == 0)  # calls = 25·2^j
            var = m2 / jnp.maximum(count - 1.0, 1.0)
            reg = (count / (count + 5.0)) * var + 1e-3 * (5.0 / (count + 5.0))
            inv_mass = jnp.where(end & (count >= 5), reg, params.inv_mass)
            restart = da_init(jnp.log(10.0) + da[0])
            new = new._replace(inv_mass=inv_mass,
                               da=_select(end, restart, da),
                               count=jnp.where(end, 0.0, count), mean=jnp.where(end, 0.0, mean),
                               m2=jnp.where(end, 0.0, m2))
        return _select(adapt, new, params)

    def finish_warmup(self, params):
        return params._replace(log_step=params.da[1])

    def _start(self, key, state, params, data):
        """HMC's and NUTS's start: the inverse mass on the active coordinates, the leapfrog
        update, the unconstrained point and fresh momentum, and the integrator's state."""
        layout = self.layout
        mask = layout.mask(state)
        inv_mass = jnp.where(mask, params.inv_mass, 0.0)
        potential = lambda z: -layout.log_density_z(z, state, data)  # noqa: E731
        init_fn, update_fn = velocity_verlet(potential, euclidean_kinetic_energy)
        z0 = layout.unconstrain(state)
        r0 = _momentum(key, mask, params.inv_mass)
        return mask, inv_mass, update_fn, z0, r0, init_fn(z0, r0)


@dataclass(frozen=True)
class HMCMove(_Hamiltonian):
    """Masked HMC with `num_steps` leapfrog steps (jittered ±20%)."""
    num_steps: int = 10
    name: str = "hmc"

    def step(self, key, state, lp, params, data, adapt):
        layout = self.layout
        k_r, k_l, k_acc = jax.random.split(key, 3)
        mask, inv_mass, update_fn, z0, r0, s0 = self._start(k_r, state, params, data)
        eps = jnp.exp(params.log_step) * jax.random.uniform(k_l, minval=0.8, maxval=1.2)
        s1 = lax.fori_loop(0, self.num_steps, lambda _, s: update_fn(eps, inv_mass, s), s0)
        h0 = s0.potential_energy + euclidean_kinetic_energy(inv_mass, r0)
        h1 = s1.potential_energy + euclidean_kinetic_energy(inv_mass, s1.r)
        log_r = h0 - h1
        accept_prob = jnp.exp(jnp.minimum(0.0, _nan_to_neg_inf(log_r)))
        ok, trouble = _accept(k_acc, log_r)
        new_state, _ = layout.constrain(s1.z, state)
        lp_new = self.model.log_density(new_state, data)
        ok = ok & jnp.isfinite(lp_new)
        return (_select(ok, new_state, state), jnp.where(ok, lp_new, lp), ok,
                self._adapt(params, accept_prob, jnp.where(ok, s1.z, z0), mask, adapt), trouble)


@dataclass(frozen=True)
class NUTSMove(_Hamiltonian):
    """Masked NUTS (NumPyro's multinomial tree builder)."""
    max_tree_depth: int = 8
    name: str = "nuts"

    def step(self, key, state, lp, params, data, adapt):
        layout = self.layout
        k_r, k_t = jax.random.split(key)
        mask, inv_mass, update_fn, z0, r0, s0 = self._start(k_r, state, params, data)
        eps = jnp.exp(params.log_step)
        tree = build_tree(update_fn, euclidean_kinetic_energy, s0, inv_mass, eps, k_t,
                          max_tree_depth=self.max_tree_depth)
        accept_prob = tree.sum_accept_probs / tree.num_proposals
        new_state, _ = layout.constrain(tree.z_proposal, state)
        lp_new = self.model.log_density(new_state, data)
        moved = jnp.any(tree.z_proposal != z0) & jnp.isfinite(lp_new)
        trouble = jnp.isnan(tree.z_proposal_pe)
        return (_select(moved, new_state, state), jnp.where(moved, lp_new, lp), moved,
                self._adapt(params, accept_prob, jnp.where(moved, tree.z_proposal, z0), mask, adapt), trouble)


class _RWParams(NamedTuple):
    log_scale: Any
    t: Any


@dataclass(frozen=True)
class RandomWalkMove:
    """Masked Gaussian random walk on all active unconstrained coordinates at once; the scale
    is adapted during warm-up (Robbins–Monro towards `target_accept`)."""
    model: PaddedModel
    target_accept: float = 0.234
    init_scale: float = 0.1
    name: str = "random_walk"

    def init(self, state, data):
        return _RWParams(jnp.log(jnp.asarray(self.init_scale, dtype=jnp.result_type(float))), jnp.zeros((), jnp.int32))

    def step(self, key, state, lp, params, data, adapt):
        layout = Layout(self.model)
        mask = layout.mask(state)
        k_e, k_acc = jax.random.split(key)
        z0 = layout.unconstrain(state)
        eps = jax.random.normal(k_e, z0.shape, dtype=z0.dtype)
        z1 = z0 + jnp.where(mask, jnp.exp(params.log_scale) * eps, 0.0)
        x1, lj1 = layout.constrain(z1, state)
        lj0 = layout.log_jacobian(state)
        lp1 = self.model.log_density(x1, data)
        log_r = lp1 + lj1 - lp - lj0
        ok, trouble = _accept(k_acc, log_r)
        a = jnp.exp(jnp.minimum(0.0, _nan_to_neg_inf(log_r)))
        step = (params.t + 1.0) ** -0.6
        params = _select(adapt, _RWParams(params.log_scale + step * (a - self.target_accept), params.t + 1), params)
        return _select(ok, x1, state), jnp.where(ok, lp1, lp), ok, params, trouble

    def finish_warmup(self, params):
        return params


@dataclass(frozen=True)
class GibbsMove:
    """One element of a discrete latent (uniformly chosen) from its full conditional."""
    model: PaddedModel
    variable: str

    @property
    def name(self):
        return f"gibbs[{self.variable}]"

    def init(self, state, data):
        return ()

    def step(self, key, state, lp, params, data, adapt):
        d = next(v for v in self.model.discrete if v.name == self.variable)
        k_i, k_v = jax.random.split(key)
        x = jnp.reshape(state[d.name], (-1,))
        i = jax.random.randint(k_i, (), 0, x.shape[0])
        values = jnp.arange(d.lower, d.upper + 1, dtype=x.dtype)

        def at(v):
            s = dict(state)
            s[d.name] = x.at[i].set(v).reshape(jnp.shape(state[d.name]))
            return self.model.log_density(s, data)
        lps = jax.vmap(at)(values)
        trouble = jnp.any(jnp.isnan(lps))
        j = jax.random.categorical(k_v, _nan_to_neg_inf(lps))
        s = dict(state)
        s[d.name] = x.at[i].set(values[j]).reshape(jnp.shape(state[d.name]))
        changed = values[j] != x[i]
        return s, lps[j], changed, params, trouble

    def finish_warmup(self, params):
        return params


def default_moves(model: PaddedModel, within: str = "nuts", within_weight: float = 1.0,
                  jump_weight: float = 1.0, **within_options):
    """Derived moves: a within-dimension move (NUTS, HMC or random walk) on the continuous
    coordinates, birth/death for every size variable, Gibbs for every other discrete latent.
    Weights: `within_weight` for the within move, `jump_weight` for each size's birth/death."""
    moves = []
    if Layout(model).dim:
        cls = {"nuts": NUTSMove, "hmc": HMCMove, "random_walk": RandomWalkMove}[within]
        moves.append((cls(model, **within_options), within_weight))
    for s in model.sizes:
        if s.lower < s.upper and model.arrays_of(s.name):
            moves.append((InvolutiveMove(model, birth_death(model, s.name)), jump_weight))
    for d in model.discrete:
        moves.append((GibbsMove(model, d.name), within_weight))
    return moves


# --------------------------------------------------------------------------------- sampler
@dataclass
class MHGResult:
    """Draws per chain: sizes (chains, draws), padded arrays with NaN in inactive entries
    (chains, draws, cap, ...), params, discrete latents, log density; per move kind the
    attempts, acceptances and numerical-trouble counts during sampling (chains, moves)."""
    model: PaddedModel
    sizes: Dict[str, np.ndarray]
    arrays: Dict[str, np.ndarray]
    params: Dict[str, np.ndarray]
    discrete: Dict[str, np.ndarray]
    log_density: np.ndarray
    move_names: Tuple[str, ...]
    attempts: np.ndarray
    accepts: np.ndarray
    trouble: np.ndarray
    warmup_accepts: np.ndarray = None
    warmup_attempts: np.ndarray = None
    final_params: Any = None
    seconds: Dict[str, float] = None  # wall time of "warmup" and "sampling" (compilation included)
    # per draw (chains, draws): the index of the move made just before it and whether it was accepted
    move: np.ndarray = None
    accepted: np.ndarray = None

    def acceptance(self) -> Dict[str, float]:
        a = self.attempts.sum(0)
        return {n: float(self.accepts.sum(0)[i] / a[i]) if a[i] else float("nan")
                for i, n in enumerate(self.move_names)}

    def size_posterior(self, name: str):
        """(values, p(k | y), Monte Carlo se) for size `name` (se from ESS of indicators)."""
        s = self.model.size(name)
        return size_posterior(self.sizes[name], s.lower, s.upper)


def conditional_means(result: "MHGResult", size: str, min_probability: float = 0.05, most: int = 4):
    """Posterior means given the size, for its most probable values (p ≥ `min_probability`,
    at most `most`): [{"value": k, "probability": p, "draws": n, "means": {name: list}}], the
    arrays it sizes over their active entries and the fixed-size continuous latents."""
    model = result.model
    k = np.asarray(result.sizes[size])
    values, counts = np.unique(k, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    out = []
    for i in order[:most]:
        v, n = int(values[i]), int(counts[i])
        if n / k.size < min_probability:
            break
        sel = k == v
        means = {}
        for a in model.arrays_of(size):
            x = np.asarray(result.arrays[a.name])[sel][:, :v + a.offset]
            means[a.name] = np.mean(x, axis=0).tolist()
        for p in model.params:
            means[p.name] = np.mean(np.asarray(result.params[p.name])[sel], axis=0).tolist()
        out.append({"value": v, "probability": n / k.size, "draws": n, "means": means})
    return out


def size_posterior(draws: np.ndarray, lower: int, upper: int):
    """p(k) ± MC se from (chains, draws) integer draws: each indicator's mean and its se from
    arviz's ESS (method "mean"); an indicator never or always seen gets se 0."""
    import arviz as az  # noqa: PLC0415

    values = np.arange(lower, upper + 1)
    p, se = np.zeros(values.size), np.zeros(values.size)
    for i, v in enumerate(values):
        ind = (np.asarray(draws) == v).astype(float)
        p[i] = ind.mean()
        if 0 < p[i] < 1:
            ess = float(az.ess(ind, method="mean"))
            se[i] = ind.std() / np.sqrt(max(ess, 1.0)) if np.isfinite(ess) else np.nan
    return values, p, se


class MHG:
    """Chains `vmap`ped, iterations in `lax.scan`; `run` compiles once per (chains, lengths)."""

    def __init__(self, model: PaddedModel, moves: Optional[Sequence[Tuple[Any, float]]] = None):
        self.model = model
        moves = list(moves) if moves is not None else default_moves(model)
        if not moves:
            raise ValueError("no moves")
        self.moves = tuple(m for m, _ in moves)
        w = np.asarray([w for _, w in moves], dtype=float)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError("move weights must be >= 0 with a positive sum")
        self.log_weights = np.log(w / w.sum())
        self.move_names = tuple(m.name for m in self.moves)
        self._compiled = {}

    # one iteration for all chains
    def _iteration(self, key, carry, data, adapt, device=None):
        states, lps, params, counts = carry
        k_sel, k_chain = jax.random.split(key)
        m = jax.random.categorical(k_sel, jnp.asarray(self.log_weights))  # shared by all chains
        chains = lps.shape[0]
        if device is not None:  # chains split over devices: each its own chain keys
            k_chain = jax.random.fold_in(k_chain, device)
        keys = jax.random.split(k_chain, chains)

        def branch(i):
            move = self.moves[i]

            def f(operand):
                st, lp, ps = operand
                s2, lp2, ok, p2, tr = jax.vmap(
                    lambda k, s, l, p: move.step(k, s, l, p, data, adapt))(keys, st, lp, ps[i])
                ps = ps[:i] + (p2,) + ps[i + 1:]
                return s2, lp2, ps, ok, tr
            return f

        states, lps, params, ok, tr = lax.switch(m, [branch(i) for i in range(len(self.moves))],
                                                 (states, lps, params))
        attempts, accepts, trouble = counts
        onehot = jax.nn.one_hot(m, len(self.moves), dtype=jnp.int32)[None, :]
        counts = (attempts + onehot, accepts + onehot * ok[:, None].astype(jnp.int32),
                  trouble + onehot * tr[:, None].astype(jnp.int32))
        return (states, lps, params, counts), (m.astype(jnp.int32), ok.astype(bool))

    def _init(self, key, data, chains, init_states=None):
        model = self.model
        if init_states is None:
            init_states = jax.vmap(lambda k: model.init(k, data))(jax.random.split(key, chains))
        states = jax.vmap(lambda s: clean(model, s))(init_states)
        lps = jax.vmap(lambda s: model.log_density(s, data))(states)
        params = tuple(jax.vmap(lambda s, m=m: m.init(s, data))(states) for m in self.moves)
        zeros = jnp.zeros((chains, len(self.moves)), jnp.int32)
        return states, lps, params, (zeros, zeros, zeros)

    def _advance(self, key, carry, data, adapt, length, thin, device=None):
        """`length` draws, `thin` iterations each; `adapt` (traced) switches warm-up adaptation
        on, so warm-up and sampling share one compiled program."""
        def body(c, k):
            if thin == 1:
                c, (m, ok) = self._iteration(k, c, data, adapt, device)
            else:  # the move of the last iteration before the draw
                def one(i, cm):
                    return self._iteration(jax.random.fold_in(k, i), cm[0], data, adapt, device)
                c, (m, ok) = lax.fori_loop(0, thin, one, (c, (jnp.zeros((), jnp.int32),
                                                              jnp.zeros(c[1].shape, bool))))
            return c, (c[0], c[1], jnp.broadcast_to(m, ok.shape).astype(jnp.int32), ok)
        return lax.scan(body, carry, jax.random.split(key, length))

    def _finish_warmup(self, carry):
        states, lps, params, counts = carry
        params = tuple(m.finish_warmup(p) for m, p in zip(self.moves, params))  # elementwise in the chains
        zeros = jnp.zeros_like(counts[0])
        return states, lps, params, (zeros, zeros, zeros)

    def _chunk(self, chains: int, length: int, thin: int, phase: int, devices: int):
        """Compiled: `length` draws (every `thin` iterations) from a carry; the key of chunk i
        of a phase is derived inside (no eager random ops on the host). With devices > 1 the
        chains are split over host devices (one per core), each running its own program."""
        sig = ("chunk", chains, length, thin, devices)
        if sig not in self._compiled:
            def f(key, ph, i, c, d, adapt, device=None):
                k = jax.random.fold_in(jax.random.fold_in(key, ph), i)
                return self._advance(k, c, d, adapt, length, thin, device)
            if devices == 1:
                self._compiled[sig] = jax.jit(f)
            else:
                self._compiled[sig] = jax.pmap(
                    lambda key, ph, i, c, d, adapt: f(key, ph, i, c, d, adapt, lax.axis_index("chains")),
                    axis_name="chains", in_axes=(None, None, None, 0, None, None),
                    devices=jax.local_devices()[:devices])
        g = self._compiled[sig]
        return lambda key, i, c, d, adapt: g(key, phase, i, c, d, adapt)

    def _init_fn(self, chains: int):
        sig = ("init", chains)
        if sig not in self._compiled:
            self._compiled[sig] = (
                jax.jit(lambda key, d, s: self._init(jax.random.fold_in(key, 0), d, chains, s)),
                jax.jit(self._finish_warmup))
        return self._compiled[sig]

    def run(self, key, data, chains: int = 4, draws: int = 1000, warmup: int = 1000,
            thin: int = 1, init_states=None, chunk: Optional[int] = None, progress=None,
            devices: Optional[int] = None) -> MHGResult:
        """Warm-up (`warmup` iterations, adaptation on), then `draws` draws every `thin`
        iterations, in chunks of one compiled scan of `chunk` draws (by default the largest
        common divisor of the two lengths, so one compilation serves both phases; adaptation
        is a traced switch). `progress(done, total)` is called between chunks. `devices`: how
        many host devices to split the chains over (default: as many as divide the chains)."""
        if chunk is None:
            chunk = int(np.gcd(draws, warmup)) if warmup else draws
            if chunk < min(draws, 100):
                chunk = draws
        if devices is None:
            devices = _devices_for(chains)
        init, finish = self._init_fn(chains)
        t0 = time.perf_counter()
        carry = init(key, data, init_states)
        if devices > 1:  # host round trip: pmap takes uncommitted inputs
            carry = jax.tree.map(lambda x: np.asarray(x).reshape((devices, x.shape[0] // devices) + x.shape[1:]), carry)
        done, total = 0, warmup + draws * thin

        def advance(carry, n_iter, every, phase, adapt, record):
            nonlocal done
            out = []
            full, rest = divmod(n_iter, chunk)
            for i in range(full + (1 if rest else 0)):
                length = chunk if i < full else rest
                f = self._chunk(chains, length, every, phase, devices)
                carry, rec = f(key, i, carry, data, adapt)
                if record:  # (states, log density, move, accepted) per draw
                    rec = jax.device_get(rec)
                    if devices > 1:  # (devices, draws, chains/devices, ...) -> (draws, chains, ...)
                        rec = jax.tree.map(lambda x: np.concatenate(list(x), axis=1), rec)
                    out.append(rec)
                done += length * every
                if progress:
                    progress(done, total)
            return carry, out

        def merged(c):
            return c if devices == 1 else jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), c)

        carry, _ = advance(carry, warmup, 1, 1, True, False)
        watt, wacc = (np.asarray(merged(carry)[3][0]), np.asarray(merged(carry)[3][1])) if warmup else (None, None)
        carry = finish(carry)  # elementwise: works on the split carry too
        if devices > 1:
            carry = jax.device_get(carry)
        jax.block_until_ready(carry)
        t1 = time.perf_counter()
        carry, out = advance(carry, draws, thin, 2, False, True)
        carry = merged(carry)
        trace, lp, moves, accepted = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *out)
        res = self._result(carry, trace, np.asarray(lp), watt, wacc)
        res.move = np.swapaxes(np.asarray(moves), 0, 1)
        res.accepted = np.swapaxes(np.asarray(accepted), 0, 1)
        res.seconds = {"warmup": t1 - t0, "sampling": time.perf_counter() - t1}
        return res

    def _result(self, carry, trace, lp, watt, wacc):
        model = self.model
        trace = jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1), trace)  # (chains, draws, ...)
        sizes = {s.name: trace[s.name] for s in model.sizes}
        arrays = to_nan(model, sizes, {a.name: trace[a.name] for a in model.arrays})
        attempts, accepts, trouble = (np.asarray(c) for c in carry[3])
        return MHGResult(model, sizes, arrays, {p.name: trace[p.name] for p in model.params},
                         {d.name: trace[d.name] for d in model.discrete},
                         np.swapaxes(np.asarray(lp), 0, 1), self.move_names, attempts, accepts,
                         trouble, wacc, watt, carry[2])


def _devices_for(chains: int) -> int:
    """How many host devices to spread the chains over (a divisor of the number of chains)."""
    n = min(jax.local_device_count(), chains)
    while n > 1 and chains % n:
        n -= 1
    return max(n, 1)


# ------------------------------------------------------------------------------- validation
def check_masking(model: PaddedModel, states, data, key, tol: float = 1e-9):
    """π must not depend on inactive entries: re-evaluate with random values in the padding."""
    n = jax.tree.leaves(states)[0].shape[0]

    def one(k, s):
        s = clean(model, s)
        lp = model.log_density(s, data)
        s2 = dict(s)
        for i, a in enumerate(model.arrays):
            x = s[a.name]
            m = active(model.length(a, s), x.shape[0], x.shape[1:])
            noise = jax.random.uniform(jax.random.fold_in(k, i), x.shape, dtype=x.dtype, minval=-3, maxval=3)
            s2[a.name] = jnp.where(m, x, x + noise)
        return lp, model.log_density(s2, data)

    lp, lp2 = jax.jit(jax.vmap(one))(jax.random.split(key, n), states)
    lp, lp2 = np.asarray(lp), np.asarray(lp2)
    same = (lp == lp2) | (np.abs(lp - lp2) <= tol * (1 + np.abs(lp)))
    return {"points": int(n), "max_abs_difference": float(np.nanmax(np.abs(np.where(same, 0, lp - lp2)), initial=0.0)),
            "ok": bool(np.all(same))}


def validate(model: PaddedModel, moves, data, key, points: int = 16, states=None):
    """The cheap checks the pass runs by default, at `points` prior draws (or given states):
    padding does not change π, and every involutive move passes `check_involution`.
    Raises `InvolutionError` (naming the move) or `ValueError` (masking)."""
    k_init, k_mask, k_inv = jax.random.split(key, 3)
    if states is None:
        states = jax.jit(jax.vmap(lambda k: model.init(k, data)))(jax.random.split(k_init, points))
    report = {"masking": check_masking(model, states, data, k_mask)}
    if not report["masking"]["ok"]:
        raise ValueError("the padded log density depends on inactive entries "
                         f"(largest change {report['masking']['max_abs_difference']:.3g})")
    for i, (m, _) in enumerate(moves if moves and isinstance(moves[0], tuple) else [(m, 1) for m in moves]):
        if isinstance(m, InvolutiveMove):
            report[m.name] = check_involution(model, m.involution, states, data, jax.random.fold_in(k_inv, i))
    return report
