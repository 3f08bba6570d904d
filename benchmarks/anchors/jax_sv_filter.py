"""Hand-written bootstrap particle filter for stochastic volatility, in JAX: the reference that
ppl's generated filter must come within 1.2× of (DESIGN §5).

Model (DESIGN §2 ``sv.ppl`` with its parameters fixed):
    x[1] ~ N(mu, s / sqrt(1 - phi²)),   x[t] ~ N(mu + phi (x[t-1] - mu), s),
    y[t] ~ N(0, exp(x[t] / 2)).

Filter: bootstrap proposal (the transition), systematic resampling, either adaptive (when
ESS < N/2, the default) or at every step; log Ẑ accumulated as the log of the mean incremental
weight (weights exponentiated once per step, max-shifted). One ``lax.scan`` over time; the per-particle transition and likelihood are written for
one particle and ``vmap``ped; the resampling decision is a ``lax.cond`` so steps that do not
resample do not pay for it. Double precision (as ppl, Stan and ``particles``).

    python benchmarks/anchors/jax_sv_filter.py          # quick self-check against −492.403
"""
from __future__ import annotations

import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

jax.config.update("jax_enable_x64", True)

LOG_2PI = math.log(2.0 * math.pi)


def systematic_resample(key: jax.Array, w: jax.Array) -> jax.Array:
    """Ancestor indices by systematic resampling from normalised weights ``w``."""
    n = w.shape[0]
    u = (jax.random.uniform(key, dtype=w.dtype) + jnp.arange(n, dtype=w.dtype)) / n
    cdf = jnp.cumsum(w)
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="left")  # scale: guards round-off in cdf[-1]
    return jnp.minimum(idx, n - 1)


def make_filter(y, n_particles: int, mu: float, phi: float, s: float,
                resampling: str = "adaptive", ess_frac: float = 0.5) -> Callable[[jax.Array], jax.Array]:
    """A jitted ``key -> log Ẑ`` for the SV model with fixed (mu, phi, s) on returns ``y``."""
    if resampling not in ("adaptive", "every"):
        raise ValueError("resampling must be 'adaptive' or 'every'")
    y = jnp.asarray(y, dtype=jnp.float64)
    n = int(n_particles)
    log_n = math.log(n)
    sd0 = s / math.sqrt(1.0 - phi * phi)

    def transition(x_prev, eps):  # one particle
        return mu + phi * (x_prev - mu) + s * eps

    def log_lik(x, y_t):  # one particle: log N(y_t; 0, exp(x/2))
        return -0.5 * LOG_2PI - 0.5 * x - 0.5 * y_t * y_t * jnp.exp(-x)

    v_transition = jax.vmap(transition)
    v_log_lik = jax.vmap(log_lik, in_axes=(0, None))

    def reweight(log_w, x, y_t):
        """Weights after observing y_t: (normalised log w, normalised w, log mean increment)."""
        lw = log_w + v_log_lik(x, y_t)
        m = jnp.max(lw)
        w = jnp.exp(lw - m)  # the only exp of the weights per step
        total = jnp.sum(w)
        return lw - m - jnp.log(total), w / total, m + jnp.log(total)

    def resample(key, x, log_w, w):
        idx = systematic_resample(key, w)
        return x[idx], jnp.full_like(log_w, -log_n), jnp.full_like(w, 1.0 / n)

    def step(carry, inp):
        x, log_w, w, log_z = carry
        key, y_t = inp
        k_res, k_move = jax.random.split(key)
        if resampling == "every":
            x, log_w, w = resample(k_res, x, log_w, w)
        else:
            ess = 1.0 / jnp.sum(w * w)
            x, log_w, w = lax.cond(ess < ess_frac * n, lambda a: resample(k_res, *a),
                                   lambda a: a, (x, log_w, w))
        x = v_transition(x, jax.random.normal(k_move, (n,), dtype=x.dtype))
        log_w, w, inc = reweight(log_w, x, y_t)
        return (x, log_w, w, log_z + inc), None

    @jax.jit
    def run(key: jax.Array) -> jax.Array:
        k0, k_rest = jax.random.split(key)
        x = mu + sd0 * jax.random.normal(k0, (n,), dtype=jnp.float64)
        log_w, w, log_z = reweight(jnp.full((n,), -log_n), x, y[0])
        keys = jax.random.split(k_rest, y.shape[0] - 1)
        (x, log_w, w, log_z), _ = lax.scan(step, (x, log_w, w, log_z), (keys, y[1:]))
        return log_z

    return run


if __name__ == "__main__":
    import json
    import statistics
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from _common import SHARED_DATA

    d = json.loads((SHARED_DATA / "ssm" / "gbp_usd_1997_1999_returns.json").read_text())
    for n in (100, 1000, 10000):
        f = make_filter(d["y"], n, -1.02432, 0.9702, 0.178)
        t = time.perf_counter()
        f(jax.random.PRNGKey(0)).block_until_ready()
        compile_s = time.perf_counter() - t
        zs, ts = [], []
        for i in range(1, 11):
            t = time.perf_counter()
            zs.append(float(f(jax.random.PRNGKey(i)).block_until_ready()))
            ts.append(time.perf_counter() - t)
        tm = statistics.median(ts)
        print(f"N={n:>6}: compile {compile_s:.2f}s, median {tm * 1e3:.2f} ms "
              f"({tm / (n * len(d['y'])) * 1e9:.1f} ns/particle-step), "
              f"log Z mean {statistics.fmean(zs):.3f} sd {statistics.stdev(zs):.3f} (ref -492.403)")
