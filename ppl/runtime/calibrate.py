"""Simulation-based calibration of an inference method on a model (Talts et al. 2018).

Per replicate: draw every latent from the prior and the observed data from the model
(`LoweredModel.prior_sample(..., simulate_data=True)`), put the simulated data in place of the
observed data, run the method, and rank each true value among L thinned posterior draws. With
correct inference the ranks are uniform on 0..L; the statistics and the rank-histogram PNG
come from `ppl.algorithms.sbc`.

Replicates share data shapes, so the `Model` reuses one compiled program for all of them (only
the data arrays change), and the prior simulator is compiled once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..algorithms import sbc


@dataclass
class Calibration:
    method: str
    replicates: int
    num_draws: int  # L: posterior draws each rank is taken among
    ranks: Dict[str, np.ndarray]  # name -> (R, *shape)
    tests: Dict[str, Any]  # name -> sbc.UniformityTest (chi-square over rank bins)
    ks: Dict[str, Any]  # name -> sbc.KSTest
    seconds: float
    warnings: List[str]

    def rows(self):
        """(element, chi-square, df, p-value, KS p-value) per scalar quantity."""
        out = []
        for name, t in self.tests.items():
            stat, p = np.asarray(t.statistic), np.asarray(t.p_value)
            ks = np.asarray(self.ks[name].p_value)
            for index in np.ndindex(*stat.shape):
                label = name + (f"[{','.join(str(i + 1) for i in index)}]" if index else "")
                out.append((label, float(stat[index]), t.bins - 1, float(p[index]), float(ks[index])))
        return out

    def min_p_value(self) -> float:
        return min(r[3] for r in self.rows())

    def min_ks_p_value(self) -> float:
        return min(r[4] for r in self.rows())

    def passed(self, alpha: float = 0.01) -> bool:
        """No chi-square or KS p-value below alpha / (2 × number of quantities) (Bonferroni)."""
        rows = self.rows()
        level = alpha / (2 * len(rows))
        return all(r[3] >= level and r[4] >= level for r in rows)

    def table(self) -> str:
        rows = self.rows()
        w = max(len("variable"), max(len(r[0]) for r in rows))
        lines = [f"{'variable':<{w}}  {'chi2':>8}  {'df':>3}  {'p-value':>8}  {'KS p':>8}"]
        for label, stat, df, p, ks in rows:
            lines.append(f"{label:<{w}}  {stat:8.2f}  {df:3d}  {p:8.4f}  {ks:8.4f}")
        return "\n".join(lines)


def calibrate(model, data, method: str = "nuts", replicates: int = 100, chains: int = 2,
              draws: int = 500, warmup: int = 500, keep: int = 99, seed: int = 0,
              variables: Optional[List[str]] = None, output: Optional[str] = None,
              progress: Optional[Callable[[int, int], None]] = None, **options) -> Calibration:
    """Run SBC for `method` on `model` with the data shapes (and covariates) of `data`.

    Each replicate's posterior draws (chains × draws) are thinned to `keep` evenly spaced draws;
    ranks are in 0..keep. `variables` restricts the ranked quantities (default: every latent
    the method reports). `output` names a PNG of rank histograms (written atomically).
    """
    t0 = time.perf_counter()
    lowered = model.lower(data)
    base = {k: np.asarray(v) for k, v in lowered.data.arrays.items()}
    base.update(lowered.data.static)
    base.update({k: np.asarray(v) for k, v in lowered.data.fixed.items()})
    observed = list(lowered.observed_names)
    if not observed:
        raise ValueError("the model observes no data: nothing to simulate")
    simulate_jit = jax.jit(lambda key, arrays: lowered.prior_sample(key, arrays, simulate_data=True))
    latents = [v.name for v in model.graph.latents() if v.name not in lowered.fixed_names]
    wanted = variables or latents
    L = int(keep)
    if L > chains * draws:
        raise ValueError(f"cannot keep {L} of {chains * draws} posterior draws")
    warnings: List[str] = []
    count = [0]

    def simulate(key):
        sim = simulate_jit(key, lowered.data_arrays)
        theta = {n: sim[n] for n in wanted}
        new = dict(base)
        for n in observed:
            new[n] = np.asarray(sim[n])
        return theta, new

    def infer(key, new_data):
        seed_r = int(jax.random.randint(key, (), 0, 2 ** 30))
        idata = model.sample(new_data, method=method, chains=chains, draws=draws, warmup=warmup,
                             seed=seed_r, validate=(count[0] == 0), **options)
        warnings.extend(getattr(model, "last_warnings", []))
        count[0] += 1
        if progress is not None:
            progress(count[0], replicates)
        out = {}
        for n in wanted:
            if n not in idata.posterior:
                raise ValueError(f'{method} reports no draws of "{n}"')
            v = np.asarray(idata.posterior[n].values)
            flat = v.reshape((-1,) + v.shape[2:])
            index = (np.arange(L) * flat.shape[0]) // L
            out[n] = jnp.asarray(flat[index])
        return out

    bins = max(2, min(10, replicates // 10, L + 1))  # ≥ 10 expected ranks per bin
    res = sbc.run_sbc(jax.random.PRNGKey(seed), simulate, infer, replicates, bins=bins)
    ks = {n: sbc.ks_uniformity_test(r, res.num_draws) for n, r in res.ranks.items()}
    cal = Calibration(method, replicates, res.num_draws, res.ranks, res.tests, ks,
                      time.perf_counter() - t0, warnings)
    if output:
        sbc.plot_rank_histograms(res.ranks, res.num_draws, output,
                                 title=f"SBC: {method}, {replicates} replicates, ranks among {L} draws")
    return cal
