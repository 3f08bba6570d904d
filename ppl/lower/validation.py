"""Translation validation: one validator per contract, comparing the lowering of the (possibly
rewritten) IR with a reference lowering of the IR as written, at random points.

- `validate_density` (contract "exact" for the density a pass uses, and the density under every
  MCMC kernel): the lowered log density against numpyro's reference — loops unrolled, one
  `numpyro.sample` site per statement — for programs up to `max_unrolled` statements, and for
  larger ones against the sequential reference (every loop a scan, whatever its plan), so every
  model is covered. With discrete latents summed out, the summed-out factors at random discrete
  values must equal the program as written at those values, and, when the joint support is
  small, the marginal must equal a brute-force log-sum-exp over it.
- NaN against NaN (or −inf against −inf) is agreement: the model's own trouble at that point,
  which the runtime reports as the model's (`point_problems`), not a bug in ppl.
"""
from __future__ import annotations

import itertools
import math
from typing import List

import jax
import jax.numpy as jnp
import numpy as np

from ..syntax.errors import PPLInternalError
from .handlers import Sequential, Substitute, Unconstrain
from .marginal import layouts
from .model import LoweredModel, seed_of


def check_agreement(ours: float, reference: float, what: str, rtol: float = 1e-6,
                    atol: float = 1e-8) -> float:
    """|ours - reference| (0 when neither is finite); a PPLInternalError when they disagree.

    `what` names the two quantities, e.g. "the lowered log density against numpyro's"."""
    ours, reference = float(ours), float(reference)
    if not (np.isfinite(ours) and np.isfinite(reference)):
        if np.isfinite(ours) != np.isfinite(reference):
            raise PPLInternalError(f"translation validation failed: {what}: {ours!r} against "
                                   f"{reference!r} at a random point")
        return 0.0
    diff = abs(ours - reference)
    if diff > rtol * max(1.0, abs(reference)) + atol:
        raise PPLInternalError(f"translation validation failed: {what}: {ours!r} against {reference!r} "
                               f"at a random point (difference {ours - reference:.3g})")
    return diff


def point_problems(lowered: LoweredModel, u, data_arrays) -> List[str]:
    """The model's problems at u (distribution arguments out of their domain, indices out of
    range), as notes for an error message."""
    return [text for text, _ in located_problems(lowered, u, data_arrays)]


def located_problems(lowered: LoweredModel, u, data_arrays):
    """(note, span) for each of the model's problems at u."""
    lines = lowered.ir.source.splitlines()
    out = []
    for p in lowered.diagnose_point(jnp.asarray(u), data_arrays):
        where = f"line {p.span.line}" if p.span is not None and p.span.line > 0 else "the model"
        text = lines[p.span.line - 1].strip() if p.span is not None and 0 < p.span.line <= len(lines) else ""
        out.append((f"{where}: {p.message}" + (f": `{text}`" if text else ""), p.span))
    return out


def _points(lowered, key, num_points):
    # from numpy: drawing them with JAX would compile a generator just for this
    rng = np.random.default_rng(seed_of(key))
    return rng, jnp.asarray(rng.uniform(-2.0, 2.0, (num_points, lowered.dim)))


def validate_density(lowered: LoweredModel, key=0, num_points: int = 3, max_unrolled: int = 2000,
                     rtol: float = 1e-6):
    """The density a pass uses against the reference evaluation of the program as written."""
    if lowered.marginal is not None:
        return validate_marginal(lowered, key, num_points, rtol=rtol)
    rng, us = _points(lowered, key, num_points)
    data = lowered.data_arrays
    ours = np.asarray(jax.jit(jax.vmap(lowered.log_density, in_axes=(0, None)))(us, data))
    size = lowered.unrolled_size(limit=max_unrolled)
    if size <= max_unrolled:
        what, ref = "numpyro reference", lowered.reference_log_density
        if size <= 200:  # a small reference compiles quickly; a large unrolled one runs eagerly
            reference = np.asarray(jax.jit(jax.vmap(ref, in_axes=(0, None)))(us, data))
        else:
            reference = np.array([float(ref(u, data)) for u in us])
    else:
        what = "sequential reference (every loop a scan)"

        def sequential(u, d):
            it = lowered.run([Unconstrain(lowered.layout, u), Sequential()], d, source=True)
            return jnp.where(it.valid, it.lp, -jnp.inf)

        reference = np.asarray(jax.jit(jax.vmap(sequential, in_axes=(0, None)))(us, data))
    diffs = [check_agreement(a, b, f"the lowered log density against the {what}", rtol)
             for a, b in zip(ours.tolist(), reference.tolist())]
    out = {"checked": True, "points": num_points, "max_abs_diff": max(diffs) if diffs else 0.0,
           "reference": what}
    if not np.isfinite(ours).any():
        out["nonfinite"] = point_problems(lowered, us[0], data)
    return out


def validate_marginal(lowered: LoweredModel, key=0, num_points: int = 3, rtol: float = 1e-6,
                      max_brute_force: int = 4096):
    """Discrete latents summed out, checked at random continuous and discrete values:
    1. the summed-out factors at given discrete values equal the program as written there;
    2. that equals numpyro's reference, when the program is small;
    3. when the joint support is small, the marginal equals a brute-force log-sum-exp."""
    data = lowered.data_arrays
    rng, us = _points(lowered, key, num_points)
    lay = layouts(lowered)
    complete = jax.jit(lowered.log_density_given)
    direct = jax.jit(lambda u, d, v: lowered.log_density_given(u, d, v, source=True))
    marginal = jax.jit(lowered.log_density)
    small = lowered.unrolled_size(limit=1000) <= 1000
    worst = 0.0

    def close(a, b, what):
        nonlocal worst
        worst = max(worst, check_agreement(a, b, what, rtol))

    def shaped(n, codes):  # a scalar latent summed out ("single") is one position
        v = jnp.asarray(codes, dtype=jnp.int32) + lay[n][1]
        return v.reshape(()) if lowered.ir.variables[n].rank == 0 else v

    for i, u in enumerate(us):
        values = {n: shaped(n, rng.integers(0, K, T)) for n, (T, lo, K) in lay.items()}
        b = float(direct(u, data, values))
        close(complete(u, data, values), b,
              "the summed-out factors at given discrete values against the model's density")
        if small and i == 0:
            ref = lowered.reference_log_density(u, data, handlers=[Substitute(values)])
            close(b, float(ref), "the density with discrete values given against numpyro")
    brute = math.prod(K ** T for (T, lo, K) in lay.values()) <= max_brute_force
    if brute:
        u = us[0]
        names = list(lay)
        grids = [list(itertools.product(range(K), repeat=T)) for (T, lo, K) in lay.values()]
        lps = [float(direct(u, data, {n: shaped(n, c) for n, c in zip(names, combo)}))
               for combo in itertools.product(*grids)]
        close(float(marginal(u, data)), float(jax.nn.logsumexp(jnp.asarray(lps))),
              "the marginal density against a brute-force sum over the discrete values")
    return {"checked": True, "points": num_points, "max_abs_diff": worst, "brute_force": brute}
