"""Prior draws of a model with a process (`ppl sample --prior`, `Model.sample_prior`): the path
comes from the prior SDE on a grid through the read times (ppl/lower/process.py,
`prior_sampler`), and the observed data are simulated from it. Checked against closed forms:
the OU prior is stationary (variance σ²/2θ = 0.125, which the Heun chain at Δ = 0.01 keeps to
1e-5), and the MA-fBM prior sd of the bridge file."""
from pathlib import Path

import numpy as np

import ppl
from oracles import sde as sde_data

ROOT = Path(__file__).resolve().parents[2]
OU_KEYS = ["N", "t", "y", "theta", "mu", "sigma", "x0_mean", "x0_sd", "obs_sd", "t_end"]
BRIDGE_KEYS = ["N", "t", "y", "sigma", "x0", "obs_sd", "t_end", "K", "gamma_max", "T_omega"]


def _grid_index(n_grid, t_end, times):
    grid = np.linspace(0.0, t_end, n_grid)  # both files: a uniform grid of 0.01 through them
    idx = np.array([int(np.argmin(np.abs(grid - t))) for t in times])
    return grid, idx


def test_ou_prior_paths_and_simulated_data():
    d = sde_data.load("ou_gaussian")
    model = ppl.load(ROOT / "examples" / "sde_ou.ppl")
    n = 4000
    idata = model.sample_prior({k: d[k] for k in OU_KEYS}, chains=1, draws=n, seed=0)
    x = idata.prior["x"].values[0]
    y = idata.prior_predictive["y"].values[0]
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    var = d["sigma"] ** 2 / (2 * d["theta"])
    grid_n = x.shape[1]
    # the grid: steps ≤ 0.01 landing on the read times, from 0 to t_end
    assert grid_n >= 201
    for j in (0, grid_n // 2, grid_n - 1):
        v = x[:, j].var()
        assert abs(v - var) < 4.5 * var * np.sqrt(2 / n), (j, v, var)
        assert abs(x[:, j].mean()) < 4.5 * np.sqrt(var / n)
    # the data are read off the path at their times: y − x(t_i) ~ N(0, obs_sd²)
    ts = np.asarray(d["t"])
    from ppl.algorithms.linear_sde import time_grid
    grid = time_grid(d["t_end"], 0.01, ts)
    assert grid.size == grid_n
    idx = np.searchsorted(grid, ts - 1e-12)
    r = y - x[:, idx]
    assert abs(r.std() / d["obs_sd"] - 1) < 0.03 and abs(r.mean()) < 4.5 * d["obs_sd"] / np.sqrt(r.size)


def test_mafbm_prior_sd_matches_the_bridge_file():
    d = sde_data.load("fbm_bridge")
    model = ppl.load(ROOT / "examples" / "fbm_bridge.ppl")
    n = 8000
    idata = model.sample_prior(dict({k: d[k] for k in BRIDGE_KEYS}, H=0.3), chains=1, draws=n,
                               seed=1)
    x = idata.prior["x"].values[0]
    grid, _ = _grid_index(x.shape[1], d["t_end"], [])
    ref = d["reference"]
    want = np.asarray(ref["type_I"]["0.3"]["prior_sd"])
    times = np.asarray(ref["times"])
    idx = np.array([int(np.argmin(np.abs(grid - t))) for t in times])
    assert np.max(np.abs(grid[idx] - times)) < 1e-9
    got = x[:, idx].std(0)
    assert np.all(np.abs(got / want - 1) < 4.5 / np.sqrt(2 * n)), np.c_[times, got, want]
    assert np.all(x[:, 0] == d["x0"])
