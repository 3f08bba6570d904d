"""Reversible-jump MCMC for Richardson & Green's galaxy mixture, in plain NumPy, written as a
user would: one chain at a time, a Python loop over iterations, the likelihood over the k
components that exist.

Model (RG 1997, constants from ../shared/data/rjmcmc/galaxy.json): k uniform on 1..k_max;
w ~ Dirichlet(1, …, 1); μ_1 < … < μ_k the sorted values of k iid N(ξ, 1/κ) (density k!·Π);
τ_j = σ_j⁻² ~ Gamma(α, rate β); β ~ Gamma(g, rate h); y_i ~ Σ_j w_j N(μ_j, 1/τ_j).

Moves — the same mix as ppl's sampler in benchmarks/run_galaxy_rj.py: each iteration picks
birth/death or the within-k move with probability 1/2 each.
* birth (prob 1/2 inside, forced at the bounds): w* ~ Beta(1, k), μ* ~ N(ξ, 1/κ), τ* ~ Gamma(α, β),
  inserted at μ*'s sorted position, the other weights scaled by 1 − w* (Jacobian (1 − w*)^(k−1));
  death: a uniformly chosen component removed, the weights renormalised.
* within-k: a Gaussian random walk on all unconstrained coordinates at once (μ by the ordered
  transform, w by stick-breaking, log τ, log β), its scale adapted during warm-up towards an
  acceptance rate of 0.234.

    python benchmarks/anchors/galaxy_rj_numpy.py --iterations 20000   # standalone, 4 chains

As a benchmark worker (``--serve``) it answers {"cmd": "run", "seed", "chains", "warmup",
"draws"} with the draws of k, the sampling time and acceptance rates.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LOG_2PI = math.log(2 * math.pi)


def load(path=None):
    if path is None:
        sys.path.insert(0, str(HERE.parent))
        from _common import SHARED_DATA  # noqa: PLC0415
        path = SHARED_DATA / "rjmcmc" / "galaxy.json"
    return json.loads(Path(path).read_text())


class GalaxyRJ:
    def __init__(self, d: dict):
        self.y = np.asarray(d["y"], float)
        self.k_max = int(d["k_max"])
        self.xi, self.kappa, self.alpha, self.g, self.h = d["xi"], d["kappa"], d["alpha"], d["g"], d["h"]
        self.sd = 1.0 / math.sqrt(self.kappa)

    # ------------------------------------------------------------------ log posterior density
    def log_post(self, w, mu, tau, beta):
        k = len(w)
        if k < 1 or k > self.k_max or beta <= 0 or np.any(tau <= 0) or np.any(w <= 0):
            return -np.inf
        if k > 1 and np.any(np.diff(mu) <= 0):
            return -np.inf
        a, g, h = self.alpha, self.g, self.h
        lp = -math.log(self.k_max) + math.lgamma(k) + math.lgamma(k + 1)  # p(k), Dirichlet(1), k!
        lp += np.sum(-0.5 * ((mu - self.xi) / self.sd) ** 2) - k * (math.log(self.sd) + 0.5 * LOG_2PI)
        lp += k * (a * math.log(beta) - math.lgamma(a)) + np.sum((a - 1) * np.log(tau) - beta * tau)
        lp += g * math.log(h) - math.lgamma(g) + (g - 1) * math.log(beta) - h * beta
        comp = np.log(w) + 0.5 * np.log(tau) - 0.5 * LOG_2PI - 0.5 * tau * (self.y[:, None] - mu) ** 2
        m = comp.max(axis=1)
        return lp + np.sum(m + np.log(np.exp(comp - m[:, None]).sum(axis=1)))

    # ----------------------------------------------------------------- unconstrained coordinates
    @staticmethod
    def unconstrain(w, mu, tau, beta):
        k = len(w)
        z_mu = np.concatenate([mu[:1], np.log(np.diff(mu))])
        rem = 1.0 - np.concatenate([[0.0], np.cumsum(w)[:-1]])
        v = w[:-1] / rem[:-1]
        z_w = np.log(v) - np.log1p(-v) + np.log(k - 1 - np.arange(k - 1))
        return np.concatenate([z_mu, z_w, np.log(tau), [math.log(beta)]])

    @staticmethod
    def constrain(z, k):
        """(w, mu, tau, beta, log|Jacobian|)."""
        z_mu, z_w, z_tau, z_b = z[:k], z[k:2 * k - 1], z[2 * k - 1:3 * k - 1], z[3 * k - 1]
        mu = np.cumsum(np.concatenate([z_mu[:1], np.exp(z_mu[1:])]))
        lj = np.sum(z_mu[1:])
        zt = z_w - np.log(k - 1 - np.arange(k - 1))
        v = 1.0 / (1.0 + np.exp(-zt))
        log_rem = np.concatenate([[0.0], np.cumsum(np.log1p(-v))])
        w = np.concatenate([v * np.exp(log_rem[:-1]), [np.exp(log_rem[-1])]])
        lj += np.sum(np.log(v) + np.log1p(-v) + log_rem[:-1])
        tau = np.exp(z_tau)
        lj += np.sum(z_tau) + z_b
        return w, mu, tau, math.exp(z_b), lj

    # -------------------------------------------------------------------------------- moves
    def birth_death(self, rng, s):
        w, mu, tau, beta, lp = s
        k = len(w)
        b_k = 1.0 if k == 1 else (0.0 if k == self.k_max else 0.5)
        if rng.random() < b_k:
            w_new = 1.0 - rng.random() ** (1.0 / k)
            mu_new = rng.normal(self.xi, self.sd)
            tau_new = rng.gamma(self.alpha, 1.0 / beta)
            j = int(np.searchsorted(mu, mu_new))
            w2 = np.insert(w * (1.0 - w_new), j, w_new)
            mu2, tau2 = np.insert(mu, j, mu_new), np.insert(tau, j, tau_new)
            lp2 = self.log_post(w2, mu2, tau2, beta)
            d_k1 = 1.0 if k + 1 == self.k_max else 0.5
            log_q_new = (math.log(k) + (k - 1) * math.log1p(-w_new)  # Beta(1, k) density
                         - 0.5 * ((mu_new - self.xi) / self.sd) ** 2 - math.log(self.sd) - 0.5 * LOG_2PI
                         + self.alpha * math.log(beta) - math.lgamma(self.alpha)
                         + (self.alpha - 1) * math.log(tau_new) - beta * tau_new)
            log_r = (lp2 - lp + math.log(d_k1) - math.log(k + 1) - math.log(b_k) - log_q_new
                     + (k - 1) * math.log1p(-w_new))
            if math.log(rng.random()) < log_r:
                return (w2, mu2, tau2, beta, lp2), True
            return s, False
        # death
        d_k = 1.0 - b_k
        j = int(rng.integers(k))
        w_old, mu_old, tau_old = w[j], mu[j], tau[j]
        w2 = np.delete(w, j) / (1.0 - w_old)
        mu2, tau2 = np.delete(mu, j), np.delete(tau, j)
        lp2 = self.log_post(w2, mu2, tau2, beta)
        b_k1 = 1.0 if k - 1 == 1 else 0.5
        km = k - 1
        log_q_old = (math.log(km) + (km - 1) * math.log1p(-w_old)
                     - 0.5 * ((mu_old - self.xi) / self.sd) ** 2 - math.log(self.sd) - 0.5 * LOG_2PI
                     + self.alpha * math.log(beta) - math.lgamma(self.alpha)
                     + (self.alpha - 1) * math.log(tau_old) - beta * tau_old)
        # the reverse birth puts μ_old at its sorted position (no choice); the death chose 1 of k
        log_r = (lp2 - lp + math.log(b_k1) + log_q_old - math.log(d_k) + math.log(k)
                 - (km - 1) * math.log1p(-w_old))
        if math.log(rng.random()) < log_r:
            return (w2, mu2, tau2, beta, lp2), True
        return s, False

    def random_walk(self, rng, s, scale):
        w, mu, tau, beta, lp = s
        k = len(w)
        z = self.unconstrain(w, mu, tau, beta)
        _, _, _, _, lj = self.constrain(z, k)
        z2 = z + scale * rng.normal(size=z.size)
        w2, mu2, tau2, beta2, lj2 = self.constrain(z2, k)
        lp2 = self.log_post(w2, mu2, tau2, beta2)
        log_r = lp2 + lj2 - lp - lj
        acc = math.exp(min(0.0, log_r)) if np.isfinite(log_r) else 0.0
        if rng.random() < acc:
            return (w2, mu2, tau2, beta2, lp2), True, acc
        return s, False, acc

    # -------------------------------------------------------------------------------- chain
    def init(self, rng):
        k = int(rng.integers(1, self.k_max + 1))
        beta = rng.gamma(self.g, 1.0 / self.h)
        w = rng.dirichlet(np.ones(k))
        mu = np.sort(rng.normal(self.xi, self.sd, k))
        tau = rng.gamma(self.alpha, 1.0 / beta, k)
        return (w, mu, tau, beta, self.log_post(w, mu, tau, beta))

    def run_chain(self, rng, warmup, draws, init_scale=0.1, target=0.234):
        s = self.init(rng)
        log_scale = math.log(init_scale)
        t = 0
        ks = np.empty(draws, np.int64)
        att = np.zeros(2, np.int64)
        acc = np.zeros(2, np.int64)
        t0 = None
        for it in range(warmup + draws):
            if it == warmup:
                t0 = time.perf_counter()
                att[:] = 0
                acc[:] = 0
            if rng.random() < 0.5:
                s, ok = self.birth_death(rng, s)
                att[0] += 1
                acc[0] += ok
            else:
                s, ok, a = self.random_walk(rng, s, math.exp(log_scale))
                att[1] += 1
                acc[1] += ok
                if it < warmup:
                    t += 1
                    log_scale += (t + 1.0) ** -0.6 * (a - target)
            if it >= warmup:
                ks[it - warmup] = len(s[0])
        seconds = time.perf_counter() - t0 if t0 is not None else 0.0
        return ks, seconds, att, acc


def run(seed: int, chains: int, warmup: int, draws: int, data_path=None):
    sampler = GalaxyRJ(load(data_path))
    rng = np.random.default_rng(seed)
    out, secs, att, acc = [], 0.0, np.zeros(2, np.int64), np.zeros(2, np.int64)
    for _ in range(chains):
        ks, s, a, c = sampler.run_chain(rng, warmup, draws)
        out.append(ks)
        secs += s
        att += a
        acc += c
    return {"k": np.stack(out).tolist(), "seconds": secs,
            "acceptance": {"birth_death": float(acc[0] / max(att[0], 1)),
                           "random_walk": float(acc[1] / max(att[1], 1))}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--iterations", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=5_000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.serve:
        sys.path.insert(0, str(HERE.parent))
        from _common import serve  # noqa: PLC0415
        serve(lambda req: run(req["seed"], req["chains"], req["warmup"], req["draws"]))
        return
    res = run(args.seed, args.chains, args.warmup, args.iterations)
    k = np.asarray(res["k"])
    its = args.chains * args.iterations / res["seconds"]
    print(f"{args.chains} chains x {args.iterations}: {res['seconds']:.1f} s, {its:,.0f} iterations/s, "
          f"acceptance {res['acceptance']}")
    vals, counts = np.unique(k, return_counts=True)
    print("p(k | y):", {int(v): round(c / k.size, 4) for v, c in zip(vals, counts)})


if __name__ == "__main__":
    main()
