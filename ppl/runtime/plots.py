"""`ppl plot` and the REPL's :plot: ArviZ's diagnostic plots of a run, written as PNG files.

Each kind says what it needs from the InferenceData; a file without it gets an error saying
what is missing and why, rather than ArviZ's traceback.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import List, Optional

import numpy as np

from ..syntax.errors import PPLError, did_you_mean
from .files import atomic_path
from .results import _arviz, summary_source

KINDS = ("trace", "rank", "pair", "ppc", "forest", "energy")

# variables drawn by default: plots of a hundred panels help nobody
DEFAULT_ELEMENTS = {"trace": 10, "rank": 10, "pair": 6, "forest": 60}


def _pyplot():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:  # a notebook's chosen backend stays as it is
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _source(idata, what: str):
    source = summary_source(idata)
    if source is None:
        raise PPLError(f"{what} plots need posterior draws, and the file has none", None,
                       f"groups in the file: {', '.join(idata.groups()) or 'none'}")
    return source


def _variables(source, kind: str, wanted: Optional[List[str]]) -> List[str]:
    names = list(source.data_vars)
    if wanted:
        for n in wanted:
            if n not in names:
                raise PPLError(f'no variable "{n}" in the posterior or the generated quantities',
                               None, did_you_mean(n, names) or "variables: " + ", ".join(names))
        return list(wanted)
    limit, picked, total = DEFAULT_ELEMENTS[kind], [], 0
    for n in names:
        size = int(np.prod(source[n].shape[2:], dtype=int))
        if total + size <= limit:
            picked.append(n)
            total += size
    if not picked:
        raise PPLError(f"every variable has more than {limit} elements", None,
                       "name the ones to plot: --vars NAME")
    return picked


def figure(idata, kind: str, var_names: Optional[List[str]] = None):
    """The matplotlib Figure of one kind of plot."""
    az = _arviz()
    plt = _pyplot()
    if kind not in KINDS:
        raise PPLError(f'unknown plot "{kind}"', None, "plots: " + ", ".join(KINDS))
    groups = idata.groups()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "energy":
            if "sample_stats" not in groups or "energy" not in idata.sample_stats:
                raise PPLError("energy plots need the Hamiltonian energy of every transition "
                               "(sample_stats.energy), and this run has none", None,
                               "ppl does not record it yet (its NUTS back end will); trace and "
                               "rank plots judge mixing meanwhile")
            axes = az.plot_energy(idata)
        elif kind == "ppc":
            observed = set(idata.observed_data.data_vars) if "observed_data" in groups else set()
            predicted = set(idata.posterior_predictive.data_vars) \
                if "posterior_predictive" in groups else set()
            if not observed & predicted:
                raise PPLError("posterior predictive plots need replicated data named after the "
                               "observed variables, and this run has none", None,
                               "ppl does not draw replicated observations yet (its back end will); "
                               "meanwhile draw them in a generated block and plot those")
            axes = az.plot_ppc(idata, var_names=sorted(observed & predicted))
        else:
            source = _source(idata, kind)
            names = _variables(source, kind, var_names)
            data = az.InferenceData(posterior=source)
            if kind == "trace":
                axes = az.plot_trace(data, var_names=names, compact=True)
            elif kind == "rank":
                axes = az.plot_rank(data, var_names=names)
            elif kind == "forest":
                axes = az.plot_forest(data, var_names=names, combined=True, r_hat=True, ess=True)
            else:
                scalars = sum(int(source[n].size // (source.sizes["chain"] * source.sizes["draw"]))
                              for n in names)
                if scalars < 2:
                    raise PPLError("a pair plot needs at least two scalar quantities", None,
                                   "name more variables: --vars a b")
                axes = az.plot_pair(data, var_names=names, kind="kde" if scalars <= 3 else "scatter",
                                    marginals=True)
    first = np.ravel(np.asarray(axes, dtype=object))[0]
    return first.figure if hasattr(first, "figure") else plt.gcf()


def plot(idata, kind: str, path: str, var_names: Optional[List[str]] = None,
         name: Optional[str] = None) -> None:
    """Write one kind of plot of the run to `path` as PNG, atomically; `name` (the file the run
    came from) heads error messages."""
    if os.path.splitext(path)[1].lower() != ".png":
        raise PPLError(f'cannot write "{path}": plots are written as PNG', None,
                       f"name the file {os.path.splitext(path)[0]}.png", filename="--output")
    try:
        fig = figure(idata, kind, var_names)
    except PPLError as e:
        e.filename = e.filename or name
        raise
    plt = _pyplot()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def load(path: str):
    """An InferenceData from a NetCDF file written by `ppl sample --output`."""
    if not os.path.isfile(path):
        raise PPLError("file not found", None, "give a .nc file written by ppl sample --output",
                       filename=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _arviz().from_netcdf(path)
    except Exception as e:  # h5netcdf/xarray say why in their own words
        raise PPLError(f"cannot read the file as NetCDF ({type(e).__name__}: {e})", None,
                       "plots are drawn from the .nc files ppl sample --output writes",
                       filename=path) from None
