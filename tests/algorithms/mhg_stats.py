"""Monte Carlo error for the mhg tests: z-scores of p(k) against exact values, a chi-square test
of a size's distribution, KS tests of continuous coordinates given k — all with the effective
sample sizes of the chains (arviz), since MCMC draws are autocorrelated."""
from __future__ import annotations

import numpy as np
from scipy import stats


def _ess(x: np.ndarray) -> float:
    import arviz as az

    x = np.asarray(x, dtype=float)
    if x.std() == 0:
        return float("nan")
    return float(az.ess(x, method="mean"))


def inflation(draws: np.ndarray, values) -> dict:
    """Per value v: τ_v = N / ESS of the indicator 1[k = v] (NaN if it is never or always seen)."""
    n = draws.size
    return {int(v): n / _ess(draws == v) for v in values}


def z_scores(draws: np.ndarray, values, p_ref, min_visits: int = 20):
    """(p̂, se, z) per value: se² = p_ref (1 − p_ref) τ / N under the exact answer, with τ from
    the indicator's ESS when it is visited ≥ min_visits times, else the largest τ seen (a value
    rarely visited has no usable autocorrelation estimate of its own)."""
    draws = np.asarray(draws)
    n = draws.size
    values = list(values)
    tau = inflation(draws, values)
    counts = {v: int(np.sum(draws == v)) for v in values}
    seen = [tau[v] for v in values if counts[v] >= min_visits and np.isfinite(tau[v])]
    tau_max = max(seen) if seen else float(n)
    p_hat, se = [], []
    for v, p in zip(values, p_ref):
        t = tau[v] if counts[v] >= min_visits and np.isfinite(tau[v]) else tau_max
        p_hat.append(counts[v] / n)
        se.append(np.sqrt(max(p * (1 - p), 1e-300) * max(t, 1.0) / n))
    p_hat, se = np.array(p_hat), np.array(se)
    return p_hat, se, (p_hat - np.asarray(p_ref)) / se


def chi_square(draws: np.ndarray, values, p_ref, min_expected: float = 5.0):
    """Chi-square test of draws against p_ref with counts deflated by each cell's τ = N/ESS
    (pooled over cells: the median τ of the well-visited cells); cells whose effective expected
    count is below `min_expected` are merged from the tail. Returns (statistic, dof, p-value)."""
    draws = np.asarray(draws)
    n = draws.size
    values = np.asarray(list(values))
    p_ref = np.asarray(p_ref, float)
    tau = inflation(draws, values)
    taus = [tau[int(v)] for v, p in zip(values, p_ref) if n * p > 50 and np.isfinite(tau[int(v)])]
    t = float(np.median(taus)) if taus else 1.0
    n_eff = n / max(t, 1.0)
    counts = np.array([np.sum(draws == v) for v in values], float) / max(t, 1.0)
    expected = n_eff * p_ref
    # merge cells from both ends until each has the minimum expected count
    cells_o, cells_e, acc_o, acc_e = [], [], 0.0, 0.0
    order = np.argsort(-expected, kind="stable")
    big = [i for i in order if expected[i] >= min_expected]
    small = [i for i in range(len(values)) if expected[i] < min_expected]
    for i in sorted(big):
        cells_o.append(counts[i])
        cells_e.append(expected[i])
    for i in small:
        acc_o += counts[i]
        acc_e += expected[i]
    if acc_e > 0:
        cells_o.append(acc_o)
        cells_e.append(acc_e)
    cells_o, cells_e = np.array(cells_o), np.array(cells_e)
    stat = float(np.sum((cells_o - cells_e) ** 2 / cells_e))
    dof = len(cells_o) - 1
    return stat, dof, float(stats.chi2.sf(stat, dof)), n_eff


def ks_given(values_by_chain, cdf) -> tuple:
    """KS test of draws (a list of per-chain 1-d arrays, in chain order) against `cdf`, each
    chain thinned to roughly independent draws (every ⌈N/ESS⌉-th). Returns (D, p, n used)."""
    kept = []
    for x in values_by_chain:
        x = np.asarray(x, float)
        if x.size < 10:
            continue
        ess = _ess(x[None, :])
        step = int(np.ceil(x.size / ess)) if np.isfinite(ess) and ess > 0 else x.size
        kept.append(x[::max(step, 1)])
    sample = np.concatenate(kept) if kept else np.zeros(0)
    if sample.size < 20:
        return float("nan"), float("nan"), int(sample.size)
    res = stats.kstest(sample, cdf)
    return float(res.statistic), float(res.pvalue), int(sample.size)
