"""Per-K evidence Z_K = p(y | K) for Richardson & Green's galaxy mixture by ppl's adaptive
tempered SMC, and the reference p(K | y) ∝ p(K)·Z_K it gives (RG's prior: K uniform on 1..k_max).

    python benchmarks/galaxy_evidence.py --check                 # K = 1 against the exact anchor
    python benchmarks/galaxy_evidence.py --K 2 3 4 --runs 10 --particles 10000
    python benchmarks/galaxy_evidence.py --table                 # p(K | y) from the stored runs

Two routes to the same Z_K:

* ``--via pass``: `ppl.load("benchmarks/galaxy_fixed_k.ppl").sample(..., method="smc")` — the smc
  pass on the fixed-K model file, means unordered. It matches the exact anchor at K = 1, but for
  K >= 2 its random-walk kernel (proposal covariance from the whole particle population)
  stalls: the population holds all K! relabellings of each mode, the covariance spans them,
  and the acceptance rate falls to 0 over the second half of the temperatures (K = 3, 2000
  particles: 0.24 at the start, 0.00–0.01 from step 23 of 32), so log Ẑ comes out low and
  scattered (K = 3, 10 runs of 10⁴ particles: sd 0.81 between runs). The model cannot order
  its means instead: ppl's prior sampler draws `ordered[K] ~ normal(…)` unsorted (0 of 20 draws
  sorted at K = 4) and its density has no K! — reported to the lead.
* ``--via algorithm`` (default): the same algorithm, `ppl.algorithms.tempered_smc.run`, on the
  fixed-K model with RG's identifiability constraint μ_1 < … < μ_K (density K!·Π N(μ_j), prior
  draws sorted), lowered by hand onto a flat unconstrained vector with the masked transforms of
  `ppl.algorithms.padded` (ordered, stick-breaking, log). Breaking the label symmetry keeps the
  population covariance within one labelling and the kernel moving.

Each call appends its runs (one log Ẑ per independent SMC run, with seed and settings) to
``benchmarks/galaxy_evidence.json`` (committed: the numbers the galaxy test compares with, and
how to reproduce them). Per K, Ẑ_K is the mean of the runs' Ẑ (unbiased), its standard error
the delta-method one (ppl.passes.smc.evidence_estimate). The exact anchor for K = 1 (μ and β
integrated in closed form, τ by quadrature; ../shared/data/README.md): −247.542698.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import SHARED_DATA, write_json_atomic  # noqa: E402

MODEL = HERE / "galaxy_fixed_k.ppl"
DATA = SHARED_DATA / "rjmcmc" / "galaxy.json"
STORE = HERE / "galaxy_evidence.json"
ANCHOR_K1 = -247.542698


def galaxy_data(K: int) -> dict:
    d = json.loads(DATA.read_text())
    return {"N": d["N"], "y": d["y"], "K": int(K), "xi": d["xi"], "kappa": d["kappa"],
            "alpha": d["alpha"], "g": d["g"], "h": d["h"]}


def fixed_k_model(K: int):
    """(log_prior, log_likelihood, prior_sample) on z ∈ R^(3K): K ordered means, K − 1
    stick-breaking weights, K log precisions, log β — RG's prior with ordered means."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    import numpyro.distributions as dist  # noqa: PLC0415
    from jax.scipy.special import gammaln, logsumexp  # noqa: PLC0415

    from ppl.algorithms.padded import Ordered, Simplex, constrain, unconstrain  # noqa: PLC0415

    d = galaxy_data(K)
    y = jnp.asarray(d["y"])
    mean_prior = dist.Normal(d["xi"], 1.0 / math.sqrt(d["kappa"]))
    beta_prior = dist.Gamma(d["g"], d["h"])
    alpha = d["alpha"]

    def values(z):
        mu, lj_mu = constrain(Ordered(), z[:K], K)
        w, lj_w = constrain(Simplex(), jnp.concatenate([z[K:2 * K - 1], jnp.zeros(1)]), K)
        zt, zb = z[2 * K - 1:3 * K - 1], z[3 * K - 1]
        return mu, w, jnp.exp(zt), jnp.exp(zb), lj_mu + lj_w + jnp.sum(zt) + zb

    def log_prior(z):
        mu, w, tau, beta, lj = values(z)
        return (gammaln(K + 1.0) + jnp.sum(mean_prior.log_prob(mu))  # K! Π N(μ_j) on μ_1 < … < μ_K
                + gammaln(float(K))  # Dirichlet(1, …, 1)
                + jnp.sum(dist.Gamma(alpha, beta).log_prob(tau)) + beta_prior.log_prob(beta) + lj)

    def log_likelihood(z):
        mu, w, tau, _, _ = values(z)
        comp = jnp.log(w) + 0.5 * jnp.log(tau) - 0.5 * math.log(2 * math.pi) - 0.5 * tau * (y[:, None] - mu) ** 2
        return jnp.sum(logsumexp(comp, axis=1))

    def prior_sample(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        mu = jnp.sort(mean_prior.sample(k1, (K,)))
        e = jax.random.exponential(k2, (K,))
        beta = beta_prior.sample(k3)
        tau = dist.Gamma(alpha, beta).sample(k4, (K,))
        return jnp.concatenate([unconstrain(Ordered(), mu, K), unconstrain(Simplex(), e / e.sum(), K)[:K - 1],
                                jnp.log(tau), jnp.log(beta)[None]])

    return log_prior, log_likelihood, prior_sample


def run_k_algorithm(K: int, runs: int, particles: int, mcmc_steps: int, target_ess: float, seed: int):
    """`runs` independent runs of ppl.algorithms.tempered_smc on the ordered fixed-K model."""
    import jax  # noqa: PLC0415
    import ppl  # noqa: F401,PLC0415  (float64)
    from ppl.algorithms import tempered_smc  # noqa: PLC0415

    log_prior, log_likelihood, prior_sample = fixed_k_model(K)
    f = jax.jit(jax.vmap(lambda k: tempered_smc.run(
        k, log_prior, log_likelihood, prior_sample, particles, target_ess=target_ess,
        num_mcmc_steps=mcmc_steps, max_steps=500)))
    f = f.lower(jax.random.split(jax.random.key(seed), runs)).compile()
    t = time.perf_counter()
    res = f(jax.random.split(jax.random.key(seed), runs))
    log_z = np.asarray(res.log_evidence, dtype=float)
    seconds = time.perf_counter() - t
    acc = np.asarray(res.acceptance_rates)
    return log_z, np.asarray(res.num_steps), seconds, float(np.nanmin(acc))


def run_k(K: int, runs: int, particles: int, mcmc_steps: int, target_ess: float, seed: int):
    """`runs` independent tempered-SMC runs (vmapped as ppl's chains) of the smc pass at K."""
    import ppl  # noqa: PLC0415
    from ppl.passes.base import passes  # noqa: PLC0415

    model = ppl.load(str(MODEL))
    lowered = model.lower(galaxy_data(K))
    program = passes()["smc"].transform(lowered, dict(
        chains=runs, draws=particles, warmup=0, particles=particles,
        num_mcmc_steps=mcmc_steps, target_ess=target_ess, max_steps=500))
    t = time.perf_counter()
    draws = program.run(seed=seed)
    seconds = time.perf_counter() - t
    log_z = np.asarray(draws.sample_stats["log_evidence"], dtype=float).ravel()
    temps = np.asarray(draws.sample_stats["num_temperatures"]).ravel()
    return log_z, temps, seconds, float("nan")


def load_store() -> dict:
    if STORE.exists():
        return json.loads(STORE.read_text())
    return {"model": MODEL.name, "data": "rjmcmc/galaxy.json", "anchor_log_z_k1": ANCHOR_K1,
            "runs": []}


def log_mean_exp(x):
    x = np.asarray(x, float)
    m = x.max()
    return m + math.log(np.mean(np.exp(x - m)))


def evidence_table(store: dict, settings: dict | None = None) -> dict:
    """Per K: log Ẑ_K (mean of Ẑ over runs), its se on the log scale, number of runs."""
    by_k: dict[int, list[float]] = {}
    for r in store["runs"]:
        if settings and any(r.get(k) != v for k, v in settings.items()):
            continue
        by_k.setdefault(int(r["K"]), []).extend(r["log_z"])
    out = {}
    for K, lz in sorted(by_k.items()):
        lz = np.asarray(lz)
        est = log_mean_exp(lz)
        rel = np.exp(lz - est)
        se = float(np.std(rel, ddof=1) / math.sqrt(lz.size)) if lz.size > 1 else float("nan")
        out[K] = {"log_z": est, "se_log_z": se, "runs": int(lz.size), "sd_log_z": float(lz.std())}
    return out


def posterior_k(table: dict, k_max: int = 30):
    """p(K | y) ∝ Z_K over the K with runs (K uniform a priori), with delta-method se.

    The K without runs are left out: their mass must be negligible for the comparison to hold
    (the table prints the last K's share so one can see it is)."""
    ks = np.array(sorted(table))
    lz = np.array([table[k]["log_z"] for k in ks])
    se = np.array([table[k]["se_log_z"] for k in ks])
    p = np.exp(lz - lz.max())
    p /= p.sum()
    # p_k = Z_k / Σ Z_j: ∂p_k/∂log Z_j = p_k (δ_kj − p_j), log Z_j independent across j
    jac = np.diag(p) - np.outer(p, p)
    cov = jac @ np.diag(se ** 2) @ jac.T
    return ks, p, np.sqrt(np.diag(cov)), cov


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--K", type=int, nargs="*", default=[])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--particles", type=int, default=10_000)
    ap.add_argument("--mcmc-steps", type=int, default=20)
    ap.add_argument("--target-ess", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="K = 1 against the exact anchor")
    ap.add_argument("--via", choices=["algorithm", "pass"], default="algorithm")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--store", type=Path, default=None, help="results file (default benchmarks/galaxy_evidence.json)")
    args = ap.parse_args(argv)
    global STORE
    if args.store is not None:
        STORE = args.store
    store = load_store()
    ks = list(args.K) + ([1] if args.check else [])
    run = run_k_algorithm if args.via == "algorithm" else run_k
    for K in ks:
        seed = args.seed + 1000 * K
        used = {r["seed"] for r in store["runs"] if r["K"] == K and r.get("via", "pass") == args.via}
        while seed in used:
            seed += 1
        load = os.getloadavg()
        log_z, temps, seconds, min_acc = run(K, args.runs, args.particles, args.mcmc_steps,
                                             args.target_ess, seed)
        rec = {"K": K, "via": args.via, "seed": seed, "runs": args.runs, "particles": args.particles,
               "mcmc_steps": args.mcmc_steps, "target_ess": args.target_ess,
               "log_z": log_z.tolist(), "num_temperatures": temps.tolist(),
               "seconds": round(seconds, 1), "loadavg": [round(x, 2) for x in load],
               "min_acceptance": min_acc}
        store = load_store()  # another invocation may have written meanwhile
        store["runs"].append(rec)
        write_json_atomic(STORE, store)
        lz = log_mean_exp(log_z)
        print(f"K={K:2d}  log Z = {lz:.3f}  (runs: mean {log_z.mean():.3f}, sd {log_z.std():.3f}, "
              f"min {log_z.min():.3f}, max {log_z.max():.3f})  temperatures {int(np.median(temps))}  "
              f"min acceptance {min_acc:.3f}  {seconds:.0f} s  load {load[0]:.1f}", flush=True)
        if K == 1:
            print(f"      exact anchor {ANCHOR_K1}: difference {lz - ANCHOR_K1:+.4f}", flush=True)
    if args.table or not ks:
        table = evidence_table(store, {"via": "algorithm"})
        ks_, p, se, _ = posterior_k(table)
        print(" K   log Z_K      se    runs  sd(log Ẑ)   p(K|y)     se")
        for k, pk, sk in zip(ks_, p, se):
            t = table[int(k)]
            print(f"{k:2d}  {t['log_z']:9.3f}  {t['se_log_z']:6.3f}  {t['runs']:5d}  {t['sd_log_z']:8.3f}"
                  f"  {pk:8.5f}  {sk:7.5f}")


if __name__ == "__main__":
    main()
