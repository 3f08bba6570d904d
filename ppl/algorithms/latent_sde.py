"""Variational inference for latent SDEs driven by Brownian or MA-fBM noise.

The method of Daems, Opper, Crevecoeur, Birdal (ICLR 2024), written up in ``shared/SDE.md``:
the prior

    dX = b(t, X, θ) dt + σ(t, X, θ) dB,     B = W (Brownian) or B̂_H (MA-fBM, Markov in (X, Y)),

with X observed through log p(y_i | X(t_i), θ) at times t_i, and a posterior that shifts the
driving Brownian motion, dW → dW + u dt, u = u_φ(t, X, Y, context) a small network whose last
layer starts at zero (so training starts from the prior). The same u enters every OU channel of
MA-fBM and the diffusion σ is the prior's, so the path KL is ∫ ½|u|² dt.

**The discrete family.** Time runs on a grid that lands on every observation (and requested)
time, steps ≤ ``dt``. On each step u is frozen at its left-point value; Y takes the exact OU
step (so the stiff rates γ ≤ γ_max cost nothing, no γ_max·dt < ½ restriction) and X a Heun
(default) or Euler step driven by the increment dB̂ = Σ_k ω_k ΔY_k (Brownian: dB = ΔW).
Given the noise increments the chain is deterministic, so the ELBO is an exact lower bound on
the evidence of *that chain*; with exact OU steps and b = 0 the chain is exact, and Heun's
chain is within O(Δ²) of the continuous evidence (OU example, Δ = 0.01: 1e-3 nats; Euler 0.2).

A control frozen over a step cannot respond to the noise inside it. Where the posterior is much
narrower than the prior's one-step spread — near precise observations — that costs dearly:
on the OU example (obs sd 0.05, σ = 0.5, so σ²Δ = obs variance at Δ = 0.01) the best ELBO
reachable with a frozen shift is −16.87 at Δ = 0.01 and −12.50 at Δ = 0.001 against
log p(y) = −12.02 (computed exactly by an LQ-control recursion). So each step's Brownian
increment gets, besides the shift uΔ, a variance factor v = 1/(1 + κΔ) (κ from the same network,
κ = e^s − 1, s = 0 at initialisation): ΔW ~ N(uΔ, vΔ) under q, with KL per step and channel
½(u²Δ + v − 1 − log v). That family contains the exact posterior of a linear-Gaussian chain
(the step posterior is Gaussian with state-affine mean and state-independent variance), so the
ELBO can reach the chain's evidence at any Δ; as Δ → 0, v → 1 for any fixed κ and the family
becomes the paper's (same diffusion, KL ∫ ½|u|² dt). ``Options(step_variance=False)`` gives
the paper's frozen-shift family. For MA-fBM, each channel's OU increments ξ ~ N(0, C) are
split as ξ = c ΔW + η with η independent of ΔW (c_k = Cov(ξ_k, ΔW)/Δ); q changes only ΔW's
law, so the conditional law of η is the prior's and the KL is the same scalar formula.

**Entry points** (BlackJAX style)::

    algo = build(problem, options)      # checks, grid, constants, jitted functions
    state = algo.init(key)
    state, metrics = algo.step(state, key)          # one Adam step on a fresh batch of paths
    est = algo.elbo(state, key, paths=4096)          # ELBO ± Monte Carlo se (β = 1)
    draws = algo.sample_paths(state, key, paths=1000)  # X at the save/observation times, θ, H
    result = fit(key, algo, max_steps=3000)          # steps + convergence check + final ELBO

The problem description (:class:`LatentSDEProblem`) is plain callables and arrays, so a
compiler can produce it from a model file.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax

from . import linear_sde, mafbm

__all__ = [
    "BrownianNoise",
    "MAFBMNoise",
    "GaussianInit",
    "PointInit",
    "StaticParam",
    "LatentSDEProblem",
    "Options",
    "TrainState",
    "LatentSDE",
    "build",
    "fit",
    "FitResult",
    "validate",
]


# ------------------------------------------------------------------ problem description
@dataclass(frozen=True)
class BrownianNoise:
    """dB = dW."""


@dataclass(frozen=True)
class MAFBMNoise:
    """MA-fBM noise (``shared/SDE.md`` §1): K OU processes per noise channel, rates on
    [1/gamma_max, gamma_max], weights ω(H) optimised on [0, T_omega] (default: the horizon).

    ``hurst`` is a number or the name of a :class:`StaticParam` (learned H). Type I draws
    Y(0) ~ N(0, Σ0) per channel; type II starts at Y(0) = 0. ``normalize`` rescales ω so the
    target is standard fBM (Var B_t = t^{2H}) instead of the type's natural process.
    """

    hurst: Union[float, str] = 0.5
    K: int = 5
    gamma_max: float = 20.0
    kind: str = "I"
    T_omega: Optional[float] = None
    normalize: bool = False


@dataclass(frozen=True)
class GaussianInit:
    """X(0) ~ N(mean, diag(sd²)); ``mean``/``sd`` arrays (d,) or callables θ -> array."""

    mean: Any
    sd: Any


@dataclass(frozen=True)
class PointInit:
    """X(0) = value (array (d,) or callable θ -> array)."""

    value: Any


@dataclass(frozen=True)
class StaticParam:
    """A static (time-constant) parameter θ_name.

    ``prior``: a ``numpyro.distributions.Distribution`` or None (flat: only a point estimate,
    maximum likelihood). ``estimate``: "variational" (Gaussian in the unconstrained space
    ``biject_to(support)``, KL to the prior, reparameterised) or "point" (maximises the ELBO
    plus the log prior density, when there is one). ``init``: constrained starting value
    (default: the transform of 0).
    """

    name: str
    prior: Any = None
    estimate: str = "variational"
    support: Any = None
    init: Any = None
    shape: tuple = ()


@dataclass(frozen=True, eq=False)
class LatentSDEProblem:
    """Everything the engine needs, as callables of plain arrays.

    * ``drift(t, x, theta) -> (d,)`` and ``diffusion(t, x, theta) -> (d,)`` (diagonal: one
      noise channel per coordinate, ``noise_dim == state_dim``) or ``(d, m)`` (``diagonal=False``).
      ``theta`` is a dict name -> value of the static parameters (constrained).
    * ``x0``: :class:`GaussianInit` or :class:`PointInit`.
    * ``obs_times`` (n,) in (0, t_end]; ``log_likelihood(xs, theta) -> scalar`` with ``xs``
      (n, d) the state at the observation times: Σ_i log p(y_i | X(t_i), θ).
    * ``noise``: :class:`BrownianNoise` or :class:`MAFBMNoise`.
    * ``params``: the static parameters.
    * ``context`` (n, c), optional: numbers describing the observations (usually y itself),
      offered to the network as "the next observation" features.
    """

    state_dim: int
    drift: Callable
    diffusion: Callable
    x0: Any
    obs_times: Any
    log_likelihood: Callable
    t_end: float
    noise_dim: Optional[int] = None
    diagonal: bool = True
    noise: Any = field(default_factory=BrownianNoise)
    params: tuple = ()
    context: Any = None


@dataclass(frozen=True)
class Options:
    """Engine settings. Defaults: Heun steps of ≤ 0.01, 64 paths, a 2×64 tanh network fed
    with time features, the state (X and, for MA-fBM, Y) and next-observation context,
    step-variance factor on, Adam 1e-2 with cosine decay to 5% over ``steps``."""

    dt: float = 0.01
    scheme: str = "heun"
    paths: int = 64
    hidden: tuple = (64, 64)
    activation: str = "tanh"
    fourier: int = 2  # time features t/T, sin/cos(2πk t/T), k = 1..fourier
    obs_context: bool = True  # time to / value of the next observation
    y_input: bool = True  # feed the OU states Y to the network (MA-fBM)
    step_variance: bool = True
    learning_rate: float = 1e-2
    steps: int = 4000  # length of the learning-rate schedule
    final_lr_fraction: float = 0.05
    kl_anneal_steps: int = 0  # β rises linearly from 0 to 1 over this many steps
    y0: str = "prior"  # type I MA-fBM: "prior" (as the paper) or "variational" (Gaussian q(Y0))
    block: int = 32  # steps per jax.checkpoint block
    save_times: tuple = ()  # extra times at which sample_paths reports X
    grad_clip: float = 100.0


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: Any


# ---------------------------------------------------------------------------- network
_ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "silu": jax.nn.silu,
                "gelu": jax.nn.gelu}


def _mlp_init(key, sizes):
    """Dense layers; the last one starts at zero (the posterior starts at the prior)."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        W = jnp.zeros((n_in, n_out)) if last else jax.random.normal(k, (n_in, n_out)) * jnp.sqrt(1.0 / n_in)
        layers.append((W, jnp.zeros(n_out)))
    return layers


def _mlp(layers, x, act):
    for W, b in layers[:-1]:
        x = act(x @ W + b)
    W, b = layers[-1]
    return x @ W + b


# ------------------------------------------------------------------------- the engine
class ELBOEstimate(NamedTuple):
    elbo: float
    se: float
    log_likelihood: float
    kl: float
    paths: int


@dataclass(frozen=True, eq=False)
class LatentSDE:
    """What :func:`build` returns: the compiled pieces of one problem + options."""

    problem: LatentSDEProblem
    options: Options
    grid: np.ndarray
    obs_index: np.ndarray
    save_index: np.ndarray
    init: Callable
    step: Callable
    run: Callable  # run(state, keys) -> state, metrics: many steps in one lax.scan
    elbo: Callable
    sample_paths: Callable
    omega: Callable  # omega(H) for the noise (None for Brownian)
    terms: Callable  # terms(state, key, paths) -> per-path ELBO terms
    basis: Any  # the MA-fBM basis (None for Brownian)


def build(problem: LatentSDEProblem, options: Options = Options()) -> LatentSDE:

    p, o = problem, options
    d = int(p.state_dim)
    m = int(p.noise_dim if p.noise_dim is not None else d)
    if p.diagonal and m != d:
        raise ValueError(f"diagonal diffusion needs noise_dim == state_dim, got {m} and {d}")
    if o.scheme not in ("heun", "euler"):
        raise ValueError(f"scheme must be 'heun' or 'euler', got {o.scheme!r}")
    T = float(p.t_end)
    obs_times = np.asarray(p.obs_times, dtype=np.float64).ravel()
    if obs_times.size == 0:
        raise ValueError("no observation times")
    if obs_times.min() <= 0.0 or obs_times.max() > T + 1e-12:
        raise ValueError(f"observation times must lie in (0, t_end = {T}]; got "
                         f"[{obs_times.min()}, {obs_times.max()}]")
    if np.any(np.diff(obs_times) < 0):
        raise ValueError("observation times must be sorted")
    save_times = np.asarray(o.save_times, dtype=np.float64).ravel()
    grid = linear_sde.time_grid(T, o.dt, np.concatenate([obs_times, save_times]))
    obs_index = linear_sde.grid_index(grid, obs_times)
    save_index = np.arange(len(grid))  # sample_paths reports the whole grid (it holds save_times)
    N = len(grid) - 1
    n_blocks = -(-N // o.block)
    N_pad = n_blocks * o.block
    dts = np.zeros(N_pad)
    dts[:N] = np.diff(grid)
    ts = np.concatenate([grid[:-1], np.full(N_pad - N, T)])
    active = (np.arange(N_pad) < N).astype(np.float64)

    # ---- noise constants
    noise = p.noise
    if isinstance(noise, MAFBMNoise):
        bas = mafbm.basis(noise.K, noise.gamma_max, noise.T_omega or T, noise.kind)
        K = bas.K
        g = bas.gamma
        decay = np.exp(-np.outer(dts, g))
        gain = -np.expm1(-np.outer(dts, g)) / g
        c = np.where(dts[:, None] > 0, gain / np.where(dts[:, None] > 0, dts[:, None], 1.0), 0.0)
        L_rest = np.zeros((N_pad, K, K))
        for i in range(N):
            dt_i = dts[i]
            C = -np.expm1(-(g[:, None] + g[None, :]) * dt_i) / (g[:, None] + g[None, :])
            Cr = C - dt_i * np.outer(c[i], c[i])  # Cov(ξ | ΔW)
            lam, U = np.linalg.eigh(0.5 * (Cr + Cr.T))
            L_rest[i] = U * np.sqrt(np.clip(lam, 0.0, None))
        L0 = np.linalg.cholesky(mafbm.stationary_cov(g)) if bas.kind == "I" else np.zeros((K, K))
        fixed_H = None if isinstance(noise.hurst, str) else float(noise.hurst)
        if fixed_H is not None and not 0.0 < fixed_H < 1.0:
            raise ValueError(f"Hurst index must lie in (0, 1), got {fixed_H}")
        omega_fn = lambda H: mafbm.omega(bas, H, noise.normalize)  # noqa: E731
    elif isinstance(noise, BrownianNoise):
        K = 0
        omega_fn = None
    else:
        raise TypeError(f"noise must be BrownianNoise or MAFBMNoise, got {type(noise).__name__}")
    use_y0_q = K > 0 and o.y0 == "variational" and noise.kind == "I"
    if o.y0 not in ("prior", "variational"):
        raise ValueError(f"y0 must be 'prior' or 'variational', got {o.y0!r}")

    # ---- network inputs that do not depend on the path: time and next-observation features
    tt = ts / T
    feats = [tt[:, None]]
    for k in range(1, o.fourier + 1):
        feats += [np.sin(2 * np.pi * k * tt)[:, None], np.cos(2 * np.pi * k * tt)[:, None]]
    if o.obs_context:
        nxt = np.searchsorted(obs_times, ts + 1e-12, side="right")  # first obs strictly after t
        has = nxt < len(obs_times)
        tau = np.where(has, obs_times[np.minimum(nxt, len(obs_times) - 1)] - ts, np.inf)
        scales = o.dt * 4.0 ** np.arange(0, max(1, int(math.ceil(math.log(max(T / o.dt, 4.0), 4)))))
        feats.append(np.where(has[:, None], np.exp(-tau[:, None] / scales[None, :]), 0.0))
        feats.append(has[:, None].astype(np.float64))
        if p.context is not None:
            ctx = np.asarray(p.context, dtype=np.float64).reshape(len(obs_times), -1)
            feats.append(np.where(has[:, None], ctx[np.minimum(nxt, len(obs_times) - 1)], 0.0))
    step_feats = np.concatenate(feats, axis=1)
    n_in = step_feats.shape[1] + d + (m * K if (K and o.y_input) else 0)
    n_out = 2 * m if o.step_variance else m
    act = _ACTIVATIONS[o.activation]

    consts = dict(t=jnp.asarray(ts), dt=jnp.asarray(dts), sqrt_dt=jnp.asarray(np.sqrt(dts)),
                  active=jnp.asarray(active),
                  feats=jnp.asarray(step_feats))
    if K:
        consts.update(decay=jnp.asarray(decay), c=jnp.asarray(c), L_rest=jnp.asarray(L_rest))

    # ---- static parameters
    params_spec = tuple(p.params)
    names = [sp.name for sp in params_spec]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate static parameter names: {names}")
    if isinstance(noise, MAFBMNoise) and isinstance(noise.hurst, str) and noise.hurst not in names:
        raise ValueError(f"hurst refers to {noise.hurst!r}, which is not a static parameter")
    transforms = {}
    for sp in params_spec:
        support = sp.support if sp.support is not None else (
            sp.prior.support if sp.prior is not None else dist.constraints.real)
        transforms[sp.name] = dist.transforms.biject_to(support)
        if sp.estimate not in ("variational", "point"):
            raise ValueError(f"{sp.name}: estimate must be 'variational' or 'point'")
        if sp.estimate == "variational" and sp.prior is None:
            raise ValueError(f"{sp.name}: a variational posterior needs a prior (or estimate='point')")

    def theta_of(z):
        return {n: transforms[n](z[n]) for n in names}

    def log_prior_unconstrained(z):
        lp = 0.0
        for sp in params_spec:
            if sp.prior is None:
                continue
            tr = transforms[sp.name]
            x = tr(z[sp.name])
            lp = lp + jnp.sum(sp.prior.log_prob(x))
            if sp.estimate == "variational":
                lp = lp + jnp.sum(tr.log_abs_det_jacobian(z[sp.name], x))
        return lp

    def value_of(v, theta):
        return jnp.asarray(v(theta) if callable(v) else v, dtype=jnp.float64).reshape(d)

    # ------------------------------------------------------------------- init
    def init_params(key):
        k_net, _ = jax.random.split(key)
        sizes = (n_in,) + tuple(o.hidden) + (n_out,)
        params = {"net": _mlp_init(k_net, sizes), "theta": {}}
        for sp in params_spec:
            tr = transforms[sp.name]
            z0 = jnp.zeros(sp.shape) if sp.init is None else tr.inv(jnp.asarray(sp.init, dtype=jnp.float64))
            z0 = jnp.broadcast_to(z0, sp.shape)
            if sp.estimate == "variational":
                params["theta"][sp.name] = {"loc": z0, "log_scale": jnp.full(sp.shape, -2.0)}
            else:
                params["theta"][sp.name] = {"loc": z0}
        if isinstance(p.x0, GaussianInit):
            theta0 = theta_of({n: params["theta"][n]["loc"] for n in names})
            params["x0"] = {"mean": value_of(p.x0.mean, theta0),
                            "log_sd": jnp.log(value_of(p.x0.sd, theta0))}
        if use_y0_q:
            params["y0"] = {"mean": jnp.zeros((m, K)), "chol": jnp.tile(jnp.asarray(L0), (m, 1, 1))}
        return params

    # ------------------------------------------------------------- one path
    def one_path(params, key, beta):
        k_th, k_x0, k_y0, k_w = jax.random.split(key, 4)
        # θ
        z, entropy = {}, 0.0
        kth = jax.random.split(k_th, max(1, len(names)))
        for i, sp in enumerate(params_spec):
            q = params["theta"][sp.name]
            if sp.estimate == "variational":
                eps = jax.random.normal(kth[i], sp.shape)
                z[sp.name] = q["loc"] + jnp.exp(q["log_scale"]) * eps
                entropy = entropy + jnp.sum(q["log_scale"] + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
            else:
                z[sp.name] = q["loc"]
        theta = theta_of(z)
        theta_term = (log_prior_unconstrained(z) + entropy) if names else 0.0
        # X(0)
        if isinstance(p.x0, GaussianInit):
            mq, sq = params["x0"]["mean"], jnp.exp(params["x0"]["log_sd"])
            mp, sdp = value_of(p.x0.mean, theta), value_of(p.x0.sd, theta)
            x0 = mq + sq * jax.random.normal(k_x0, (d,))
            kl_x0 = jnp.sum(jnp.log(sdp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sdp ** 2) - 0.5)
        else:
            x0 = value_of(p.x0.value, theta)
            kl_x0 = 0.0
        # Y(0) and ω
        kl_y0 = 0.0
        if K:
            H = theta[noise.hurst] if fixed_H is None else fixed_H
            w = omega_fn(H)
            e0 = jax.random.normal(k_y0, (m, K))
            if use_y0_q:
                Lq = jnp.tril(params["y0"]["chol"])
                y0 = params["y0"]["mean"] + jnp.einsum("jkl,jl->jk", Lq, e0)
                kl_y0 = _kl_mvn_to_prior(params["y0"]["mean"], Lq, jnp.asarray(L0))
            else:
                y0 = e0 @ jnp.asarray(L0).T
        else:
            w, y0 = None, jnp.zeros((m, 0))

        noise_shape = (N_pad, m, 1 + K)
        zs = jax.random.normal(k_w, noise_shape)

        def step(carry, xs):
            x, y, kl_u, kl_v, log_ratio = carry
            t, dt = xs["t"], xs["dt"]
            inp = [xs["feats"], x]
            if K and o.y_input:
                inp.append(y.reshape(-1))
            out = _mlp(params["net"], jnp.concatenate(inp), act)
            u = out[:m]
            z0 = xs["z"][:, 0]
            if o.step_variance:
                log_v = -jnp.log1p(dt * jnp.expm1(out[m:]))
                v = jnp.exp(log_v)
                kl_v = kl_v + 0.5 * jnp.sum(v - 1.0 - log_v) * xs["active"]
            else:
                log_v = jnp.zeros(m)
            dW = u * dt + jnp.exp(0.5 * log_v) * xs["sqrt_dt"] * z0
            # log q(ΔW)/p(ΔW) of the drawn increment: a Monte Carlo estimate of the step's KL,
            # kept to validate the closed form (its mean must match kl_u + kl_v)
            log_ratio = log_ratio + 0.5 * jnp.sum(
                dW * dW / jnp.where(dt > 0, dt, 1.0) - z0 * z0 - log_v) * xs["active"]
            if K:
                xi = xs["c"][None, :] * dW[:, None] + jnp.einsum("kl,jl->jk", xs["L_rest"], xs["z"][:, 1:])
                y_new = xs["decay"][None, :] * y + xi
                dB = (y_new - y) @ w
            else:
                y_new, dB = y, dW
            sig = p.diffusion(t, x, theta)
            noise_term = sig * dB if p.diagonal else sig @ dB
            b0 = p.drift(t, x, theta)
            if o.scheme == "heun":
                x_pred = x + b0 * dt + noise_term
                b1 = p.drift(t + dt, x_pred, theta)
                x_new = x + 0.5 * (b0 + b1) * dt + noise_term
            else:
                x_new = x + b0 * dt + noise_term
            kl_u = kl_u + 0.5 * jnp.sum(u * u) * dt
            return (x_new, y_new, kl_u, kl_v, log_ratio), x_new

        xs_all = dict(consts, z=zs)
        xs_blocks = jax.tree.map(lambda a: a.reshape((n_blocks, o.block) + a.shape[1:]), xs_all)

        @jax.checkpoint
        def block(carry, xs_b):
            return jax.lax.scan(step, carry, xs_b)

        carry0 = (x0, y0, jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))
        (_, _, kl_u, kl_v, log_ratio), path = jax.lax.scan(block, carry0, xs_blocks)
        path = jnp.concatenate([x0[None], path.reshape(N_pad, d)[:N]], axis=0)
        loglik = p.log_likelihood(path[obs_index], theta)
        kl = kl_x0 + kl_y0 + kl_u + kl_v - theta_term
        terms = dict(elbo=loglik - kl, objective=loglik - beta * kl, loglik=loglik, kl=kl,
                     kl_path=kl_u + kl_v, kl_v=kl_v, kl_x0=kl_x0, kl_path_mc=log_ratio)
        return terms, path, theta

    def batch_terms(params, key, n, beta):
        keys = jax.random.split(key, n)
        terms, paths, theta = jax.vmap(one_path, (None, 0, None))(params, keys, beta)
        return terms, paths, theta

    # ------------------------------------------------------------- optimiser
    schedule = optax.cosine_decay_schedule(o.learning_rate, max(1, o.steps), o.final_lr_fraction)
    optimizer = optax.chain(optax.clip_by_global_norm(o.grad_clip), optax.adam(schedule))

    def init(key):
        params = init_params(key)
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def beta_at(step):
        if o.kl_anneal_steps <= 0:
            return jnp.ones(())
        return jnp.minimum(1.0, (step + 1.0) / o.kl_anneal_steps)

    def loss(params, key, beta):
        terms, _, _ = batch_terms(params, key, o.paths, beta)
        return -jnp.mean(terms["objective"]), terms

    def step_fn(state, key):
        beta = beta_at(state.step)
        (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.params, key, beta)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        n = terms["elbo"].shape[0]
        metrics = dict(elbo=jnp.mean(terms["elbo"]), elbo_se=jnp.std(terms["elbo"]) / jnp.sqrt(n),
                       loglik=jnp.mean(terms["loglik"]), kl=jnp.mean(terms["kl"]),
                       kl_path=jnp.mean(terms["kl_path"]), kl_v=jnp.mean(terms["kl_v"]),
                       kl_x0=jnp.mean(terms["kl_x0"]), beta=beta,
                       grad_norm=optax.tree.norm(grads))
        return TrainState(params, opt_state, state.step + 1), metrics

    step_jit = jax.jit(step_fn)

    @jax.jit
    def run(state, keys):
        return jax.lax.scan(step_fn, state, keys)

    @jax.jit
    def _batch(params, key, n_dummy):
        """One batch of fresh paths at β = 1: per-path terms, the grid path, θ (and H).
        Every caller uses full batches of one size, so this compiles once per build."""
        terms, paths, theta = batch_terms(params, key, n_dummy.shape[0], jnp.ones(()))
        out = {"terms": terms, "x": paths, "theta": theta}
        if K:
            out["hurst"] = theta[noise.hurst] if fixed_H is None else jnp.full(n_dummy.shape, fixed_H)
        return out

    def batches(state, key, paths, batch, pick):
        params = state.params if isinstance(state, TrainState) else state
        outs, done = [], 0
        while done < paths:
            key, sub = jax.random.split(key)
            outs.append(jax.tree.map(np.asarray, pick(_batch(params, sub, jnp.zeros(batch)))))
            done += batch
        return jax.tree.map(lambda *a: np.concatenate(a)[:paths], *outs)

    def terms(state, key, paths: int = 4096, batch: int = 512) -> dict:
        """Per-path ELBO terms (numpy, β = 1): elbo, loglik, kl, kl_path, kl_v, kl_x0, and
        kl_path_mc (log q/p of the drawn increments: an MC estimate of kl_path)."""
        return batches(state, key, paths, batch, lambda out: out["terms"])

    def elbo(state, key, paths: int = 4096, batch: int = 512) -> ELBOEstimate:
        t = terms(state, key, paths, batch)
        v = t["elbo"]
        if not np.all(np.isfinite(v)):
            raise FloatingPointError(f"{np.sum(~np.isfinite(v))} of {v.size} ELBO samples are not finite")
        return ELBOEstimate(float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)),
                            float(t["loglik"].mean()), float(t["kl"].mean()), int(v.size))

    def sample_paths(state, key, paths: int = 1000, batch: int = 512) -> dict:
        """Posterior draws (numpy, draw axis first): ``x`` (paths, grid points, d) at
        ``times`` (the grid: observation, save and regular times), ``theta`` (constrained),
        ``hurst`` (MA-fBM), and each draw's ELBO term ``elbo``."""
        res = batches(state, key, paths, batch, lambda out: {
            "x": out["x"], "theta": out["theta"], "elbo": out["terms"]["elbo"],
            **({"hurst": out["hurst"]} if "hurst" in out else {})})
        res["times"] = grid.copy()
        return res

    return LatentSDE(p, o, grid, obs_index, save_index, init, step_jit, run, elbo, sample_paths,
                     omega_fn, terms, (bas if K else None))


def _kl_mvn_to_prior(mean, Lq, Lp):
    """Σ_j KL(N(mean_j, Lq_j Lq_jᵀ) || N(0, Lp Lpᵀ)) over channels j."""
    K = Lp.shape[0]
    A = jax.vmap(lambda L: jax.scipy.linalg.solve_triangular(Lp, L, lower=True))(Lq)
    mu = jax.vmap(lambda mm: jax.scipy.linalg.solve_triangular(Lp, mm, lower=True))(mean)
    logdet_q = jnp.sum(jnp.log(jnp.abs(jax.vmap(jnp.diag)(Lq))), axis=1)
    logdet_p = jnp.sum(jnp.log(jnp.diag(Lp)))
    return jnp.sum(0.5 * (jnp.sum(A ** 2, axis=(1, 2)) + jnp.sum(mu ** 2, axis=1) - K)
                   + logdet_p - logdet_q)


# ------------------------------------------------------------------------ driver
class FitResult(NamedTuple):
    state: TrainState
    history: dict  # metric name -> (steps,) numpy array
    converged: bool
    steps: int
    elbo: ELBOEstimate
    seconds: float


def fit(key, algo: LatentSDE, max_steps: Optional[int] = None, chunk: int = 100,
        window: int = 200, patience: int = 3, tol: float = 0.02, min_fraction: float = 0.75,
        eval_paths: int = 4096,
        progress: Optional[Callable[[int, dict], None]] = None, state: Optional[TrainState] = None
        ) -> FitResult:
    """Train until ``max_steps`` (default: the options' ``steps``) or convergence.

    Convergence: the mean ELBO over the last ``window`` steps improves on the previous window's
    by less than max(tol, 2 se of the difference), ``patience`` times in a row (checked every
    ``chunk`` steps, which run as one ``lax.scan``), once ``min_fraction`` of ``max_steps`` is
    done: the per-step ELBO is noisy (sd ≈ 1 nat at 64 paths on the OU example), so a stall
    test alone stopped runs at −12.4 that go on to −12.16 while the learning rate decays. Then the ELBO is estimated on
    ``eval_paths`` fresh paths (± its Monte Carlo se). Numerical trouble (a non-finite ELBO)
    raises ``FloatingPointError`` with the step where it appeared.
    """
    max_steps = int(max_steps or algo.options.steps)
    t0 = time.perf_counter()
    key, k_init = jax.random.split(key)
    if state is None:
        state = algo.init(k_init)
    hist: dict[str, list] = {}
    done, calm, converged = 0, 0, False
    while done < max_steps:
        n = min(chunk, max_steps - done)
        key, sub = jax.random.split(key)
        state, metrics = algo.run(state, jax.random.split(sub, n))
        metrics = jax.tree.map(np.asarray, metrics)
        bad = ~np.isfinite(metrics["elbo"])
        if np.any(bad):
            raise FloatingPointError(f"the ELBO became non-finite at step {done + int(np.argmax(bad))}")
        for k, v in metrics.items():
            hist.setdefault(k, []).append(v)
        done += n
        if progress is not None:
            progress(done, {k: float(v[-1]) for k, v in metrics.items()})
        e = np.concatenate(hist["elbo"])
        if (e.size >= 2 * window and done >= min_fraction * max_steps
                and float(np.mean(hist["beta"][-1])) >= 1.0):
            a, b = e[-2 * window:-window], e[-window:]
            se = math.sqrt(a.var() / window + b.var() / window)
            calm = calm + 1 if (b.mean() - a.mean()) < max(tol, 2 * se) else 0
            if calm >= patience:
                converged = True
                break
    history = {k: np.concatenate(v) for k, v in hist.items()}
    key, sub = jax.random.split(key)
    est = algo.elbo(state, sub, paths=eval_paths)
    return FitResult(state, history, converged, done, est, time.perf_counter() - t0)


# ---------------------------------------------------------------------- validations
def validate(algo: LatentSDE, state, key, paths: int = 2048, hurst: Optional[float] = None) -> dict:
    """The cheap checks the vsde pass runs by default; each entry has ``ok`` and its figures.

    * ``kl_mc``: the closed-form path KL (Σ ½u²Δ + ½(v − 1 − log v)) against the Monte Carlo
      mean of log q/p of the drawn increments: agree within 4 se.
    * ``same_diffusion``: posterior and prior share σ by construction (one callable); checked
      numerically: with the network's last layer at zero the path KL is exactly 0.
    * ``omega`` (MA-fBM): at H (``hurst`` or the posterior mean), the weights' relative MSE
      ∫E(B−B̂)²/∫E B² and the bound ∫(sd B̂_t − sd B_t)² dt ≤ ∫E(B−B̂)² dt that ω(H) must satisfy
      (Var B̂_t ≈ V_H t^{2H} within the approximation error).
    * ``step``: γ_max·dt (informational: exact OU steps remove the γ_max·dt < ½ restriction).
    """
    k1, k2 = jax.random.split(key)
    out = {}
    t = algo.terms(state, k1, paths)
    diff = t["kl_path_mc"] - t["kl_path"]
    se = float(np.std(diff, ddof=1) / np.sqrt(diff.size))
    out["kl_mc"] = {"closed_form": float(t["kl_path"].mean()), "monte_carlo": float(t["kl_path_mc"].mean()),
                    "se": se, "ok": bool(abs(diff.mean()) <= 4 * se + 1e-12)}
    params = state.params if isinstance(state, TrainState) else state
    W, b = params["net"][-1]
    zero = dict(params, net=list(params["net"][:-1]) + [(jnp.zeros_like(W), jnp.zeros_like(b))])
    t0 = algo.terms(zero, k2, min(paths, 256))
    out["same_diffusion"] = {"kl_path_at_zero_control": float(np.max(np.abs(t0["kl_path"]))),
                             "ok": bool(np.max(np.abs(t0["kl_path"])) == 0.0)}
    if algo.basis is not None:
        noise = algo.problem.noise
        if hurst is None:
            hurst = (float(np.mean(algo.sample_paths(state, k2, 256)["hurst"]))
                     if isinstance(noise.hurst, str) else float(noise.hurst))
        bas = algo.basis
        w = np.asarray(algo.omega(hurst))
        tt = np.linspace(0.0, bas.T, 2001)
        sd_hat = np.sqrt(np.asarray(mafbm.variance(bas, w, tt)))
        sd = np.sqrt(np.asarray(mafbm.target_variance(hurst, tt, bas.kind, noise.normalize)))
        rel = float(mafbm.relative_mse(bas, hurst))
        lhs = float(np.trapezoid((sd_hat - sd) ** 2, tt))
        rhs = rel * float(np.trapezoid(sd ** 2, tt))
        out["omega"] = {"H": hurst, "relative_mse": rel, "sd_gap": lhs, "bound": rhs,
                        "ok": bool(lhs <= rhs * (1 + 1e-6) + 1e-12)}
        out["step"] = {"gamma_max_dt": float(bas.gamma.max() * algo.options.dt), "ok": True}
    return out


# ------------------------------------------------------------------------ prior paths
def simulate_prior(problem: LatentSDEProblem, key, theta: dict, grid, scheme: str = "heun"):
    """One path of the *prior* SDE on ``grid`` (0 = grid[0] < … ; numpy, the problem's clock)
    given the static parameters ``theta`` (constrained): X(0) from the initial law, Y(0) from
    its prior (MA-fBM type I), exact OU steps for Y, a Heun (or Euler) step for X driven by
    dB̂ = Σ_k ω_k ΔY_k (Brownian: ΔW). Returns X on the grid, (len(grid), d). This is the
    chain the engine runs with the control at zero, so prior predictive draws (`ppl sample
    --prior`) and the fitted posterior live on the same discretisation."""
    p = problem
    d = int(p.state_dim)
    m = int(p.noise_dim if p.noise_dim is not None else d)
    grid = np.asarray(grid, dtype=np.float64)
    dts = np.diff(grid)
    n = dts.size
    k_x0, k_y0, k_w = jax.random.split(key, 3)

    def value(v):
        return jnp.asarray(v(theta) if callable(v) else v, dtype=jnp.float64).reshape(d)

    if isinstance(p.x0, GaussianInit):
        x0 = value(p.x0.mean) + value(p.x0.sd) * jax.random.normal(k_x0, (d,))
    else:
        x0 = value(p.x0.value)
    noise = p.noise
    if isinstance(noise, MAFBMNoise):
        bas = mafbm.basis(noise.K, noise.gamma_max, noise.T_omega or float(p.t_end), noise.kind)
        g, K = bas.gamma, bas.K
        H = theta[noise.hurst] if isinstance(noise.hurst, str) else float(noise.hurst)
        w = mafbm.omega(bas, H, noise.normalize)
        decay = np.exp(-np.outer(dts, g))
        roots = np.zeros((n, K, K))
        for i, dt in enumerate(dts):  # C is numerically singular on short steps: eigh, not Cholesky
            s = g[:, None] + g[None, :]
            lam, U = np.linalg.eigh(-np.expm1(-s * dt) / s)
            roots[i] = U * np.sqrt(np.clip(lam, 0.0, None))
        L0 = np.linalg.cholesky(mafbm.stationary_cov(g)) if bas.kind == "I" else np.zeros((K, K))
        y0 = jax.random.normal(k_y0, (m, K)) @ jnp.asarray(L0).T
        z = jax.random.normal(k_w, (n, m, K))
        xs = dict(decay=jnp.asarray(decay), root=jnp.asarray(roots), z=z)
    else:
        w, y0 = None, jnp.zeros((m, 0))
        xs = dict(z=jax.random.normal(k_w, (n, m)))
    xs.update(t=jnp.asarray(grid[:-1]), dt=jnp.asarray(dts))

    def step(carry, s):
        x, y = carry
        t, dt = s["t"], s["dt"]
        if w is not None:
            y_new = s["decay"][None, :] * y + jnp.einsum("kl,jl->jk", s["root"], s["z"])
            dB = (y_new - y) @ w
        else:
            y_new, dB = y, jnp.sqrt(dt) * s["z"]
        sig = p.diffusion(t, x, theta)
        noise_term = sig * dB if p.diagonal else sig @ dB
        b0 = p.drift(t, x, theta)
        x_new = x + b0 * dt + noise_term
        if scheme == "heun":
            x_new = x + 0.5 * (b0 + p.drift(t + dt, x_new, theta)) * dt + noise_term
        return (x_new, y_new), x_new

    _, path = jax.lax.scan(step, (x0, y0), xs)
    return jnp.concatenate([x0[None], path], axis=0)
