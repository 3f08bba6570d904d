"""Hand-written padded models (ppl.algorithms.padded protocol) of the three trans-dimensional
examples, every constant read from ../shared/data/rjmcmc/: what the IR lowering will generate
from examples/{polynomial_degree,galaxy,coal_mining}.ppl.

Each builder returns (model, data) with `data` a dict of arrays; `observed=False` drops the
likelihood (prior recovery). Switches that break the model on purpose exist only for the
negative controls of the tests (`order_statistics=False`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import gammaln, logsumexp

from ppl.algorithms.padded import (Continuous, ElementProposal, Interval, Ordered, PaddedModel,  # noqa: F401
                                   Positive, Real, Simplex, SizedArray, SizeVar, active,
                                   dirichlet_log_prob, iid_log_prob, ordered_iid_log_prob,
                                   truncated_log_pmf)

RJ = Path(__file__).resolve().parents[3] / "shared" / "data" / "rjmcmc"
if not RJ.exists():
    RJ = Path("/work/shared/data/rjmcmc")


def _load(name):
    return json.loads((RJ / name).read_text())


def _draw_size(key, sv: SizeVar):
    ks = jnp.arange(sv.lower, sv.upper + 1)
    return (sv.lower + jax.random.categorical(key, jax.vmap(sv.log_prior)(ks))).astype(jnp.int32)


# ------------------------------------------------------------------------ polynomial degree
def polynomial(observed: bool = True):
    """d ~ Poisson(lam) truncated to 0..d_max; beta_0..beta_d iid N(0, coef_sd²);
    y ~ N(Σ beta_j x^j, sigma²) with sigma known."""
    f = _load("polynomial_degree.json")
    lam, d_max, sd, sigma = f["lam"], int(f["d_max"]), f["coef_sd"], f["sigma"]
    cap = d_max + 1
    x = jnp.asarray(f["x"])
    data = {"X": x[:, None] ** jnp.arange(cap), "y": jnp.asarray(f["y"])}
    size = SizeVar("d", 0, d_max, truncated_log_pmf(dist.Poisson(lam), 0, d_max))
    prior = dist.Normal(0.0, sd)
    beta = SizedArray("beta", "d", offset=1, kind=Real(), insertion="end",
                      proposal=ElementProposal.from_distribution(lambda s, d: prior))

    def log_density(state, data):
        n = state["d"] + 1
        lp = size.log_prior(state["d"]) + iid_log_prob(prior, state["beta"], n)
        if observed:
            b = jnp.where(active(n, cap), state["beta"], 0.0)
            lp = lp + jnp.sum(dist.Normal(data["X"] @ b, sigma).log_prob(data["y"]))
        return lp

    def init(key, data):
        k1, k2 = jax.random.split(key)
        return {"d": _draw_size(k1, size), "beta": sd * jax.random.normal(k2, (cap,))}

    return PaddedModel((size,), (beta,), log_density, init, name="polynomial_degree"), data


# ------------------------------------------------------------------------------ coal mining
def coal_mining(observed: bool = True, order_statistics: bool = True):
    """Green (1995): k ~ Poisson(lam) truncated to 0..k_max; change points s_1 < … < s_k the
    even order statistics of 2k+1 uniforms on [0, L]; heights h_0..h_k iid Gamma(alpha, rate
    beta); events a Poisson process with rate h_j on [s_j, s_{j+1})."""
    f = _load("coal_mining_disasters.json")
    lam, k_max, a, b = f["lam"], int(f["k_max"]), f["alpha"], f["beta"]
    L = float(f["end"] - f["start"])
    data = {"t": jnp.asarray(f["times"]) - f["start"]}
    size = SizeVar("k", 0, k_max, truncated_log_pmf(dist.Poisson(lam), 0, k_max))
    height_prior = dist.Gamma(a, b)
    s_arr = SizedArray("s", "k", kind=Ordered(0.0, L),
                       proposal=ElementProposal.from_distribution(lambda s, d: dist.Uniform(0.0, L)))
    h_arr = SizedArray("h", "k", offset=1, kind=Positive(),
                       proposal=ElementProposal.from_distribution(lambda s, d: height_prior))

    def log_density(state, data):
        k, s, h = state["k"], state["s"], state["h"]
        act_s = active(k, k_max)
        edges = jnp.concatenate([jnp.zeros(1), jnp.where(act_s, s, L), jnp.full(1, L)])
        gaps = jnp.diff(edges)  # k + 1 active gaps, then zeros
        act_g = active(k + 1, k_max + 1)
        ok = jnp.all(jnp.where(act_g, gaps > 0, True))
        log_gaps = jnp.sum(jnp.where(act_g, jnp.log(jnp.where(act_g & (gaps > 0), gaps, 1.0)), 0.0))
        # positions: (2k+1)!/L^(2k+1) Π_{j=0}^{k} (s_{j+1} − s_j), the even order statistics
        lp_s = log_gaps - (2 * k + 1) * math.log(L)
        if order_statistics:
            lp_s = lp_s + gammaln(2.0 * k + 2.0)
        lp = size.log_prior(k) + lp_s + iid_log_prob(height_prior, h, k + 1)
        if observed:
            j = jnp.sum(act_s[None, :] & (s[None, :] <= data["t"][:, None]), axis=1)
            hs = jnp.where(act_g, h, 1.0)
            lp = lp + jnp.sum(jnp.log(hs[j])) - jnp.sum(jnp.where(act_g, hs * gaps, 0.0))
        return jnp.where(ok, lp, -jnp.inf)

    def init(key, data):
        k1, k2, k3 = jax.random.split(key, 3)
        k = _draw_size(k1, size)
        u = jnp.sort(jax.random.uniform(k2, (2 * k_max + 1,)) * L
                     + jnp.where(jnp.arange(2 * k_max + 1) < 2 * k + 1, 0.0, 2 * L))
        s = u[1::2][:k_max]  # even order statistics of the first 2k+1
        return {"k": k, "s": s, "h": height_prior.sample(k3, (k_max + 1,))}

    return PaddedModel((size,), (s_arr, h_arr), log_density, init, name="coal_mining"), data


# ----------------------------------------------------------------------------------- galaxy
def galaxy(observed: bool = True):
    """Richardson & Green (1997): k uniform on 1..k_max; w ~ Dirichlet(1, …, 1); mu ordered, the
    sorted values of k iid N(xi, 1/kappa) (density k!·Π); precisions tau_j ~ Gamma(alpha, rate
    beta); beta ~ Gamma(g, rate h); y_i ~ Σ_j w_j N(mu_j, 1/tau_j)."""
    f = _load("galaxy.json")
    k_max, xi, kappa, alpha, g, h = (int(f["k_max"]), f["xi"], f["kappa"], f["alpha"], f["g"], f["h"])
    data = {"y": jnp.asarray(f["y"])}
    size = SizeVar("k", 1, k_max, lambda k: jnp.where((k >= 1) & (k <= k_max), -math.log(k_max), -jnp.inf))
    mean_prior = dist.Normal(xi, 1.0 / math.sqrt(kappa))
    beta_prior = dist.Gamma(g, h)
    w_arr = SizedArray("w", "k", kind=Simplex())
    mu_arr = SizedArray("mu", "k", kind=Ordered(),
                        proposal=ElementProposal.from_distribution(lambda s, d: mean_prior))
    tau_arr = SizedArray("tau", "k", kind=Positive(),
                         proposal=ElementProposal.from_distribution(lambda s, d: dist.Gamma(alpha, s["beta"])))
    beta_par = Continuous("beta", Positive())

    def log_density(state, data):
        k, w, mu, tau, beta = state["k"], state["w"], state["mu"], state["tau"], state["beta"]
        lp = (size.log_prior(k) + dirichlet_log_prob(1.0, w, k) + ordered_iid_log_prob(mean_prior, mu, k)
              + iid_log_prob(dist.Gamma(alpha, beta), tau, k) + beta_prior.log_prob(beta))
        if observed:
            m = active(k, k_max)
            ws, ts = jnp.where(m, w, 1.0), jnp.where(m, tau, 1.0)
            comp = (jnp.log(ws) + 0.5 * jnp.log(ts) - 0.5 * math.log(2 * math.pi)
                    - 0.5 * ts * (data["y"][:, None] - mu) ** 2)
            lp = lp + jnp.sum(logsumexp(jnp.where(m, comp, -jnp.inf), axis=1))
        return lp

    def init(key, data):
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        k = _draw_size(k1, size)
        m = active(k, k_max)
        e = jnp.where(m, jax.random.exponential(k2, (k_max,)), 0.0)
        beta = beta_prior.sample(k3)
        mu = jnp.sort(jnp.where(m, mean_prior.sample(k4, (k_max,)), jnp.inf))
        return {"k": k, "w": e / e.sum(), "mu": jnp.where(m, mu, 0.0),
                "tau": dist.Gamma(alpha, beta).sample(k5, (k_max,)), "beta": beta}

    return PaddedModel((size,), (w_arr, mu_arr, tau_arr), log_density, init, params=(beta_par,),
                       name="galaxy"), data
