"""Program output → arviz.InferenceData; the summary table; atomic NetCDF output."""
from __future__ import annotations

import datetime
import warnings
from typing import Dict

import numpy as np

from ..passes.base import Draws


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def to_inference_data(draws: Draws, observed: Dict[str, np.ndarray], constant: Dict[str, np.ndarray]):
    """The InferenceData, built group by group straight as xarray Datasets.

    ``az.from_dict`` does the same through per-variable DataArrays, alignment and deep copies
    of attributes: about 10 ms a call, as much as a whole N=1000 particle filter. The layout is
    arviz's (``chain``, ``draw`` leading, one named dimension per array axis), except that the
    array dimensions count from 1, as the language's indices do.
    """
    az = _arviz()
    import xarray as xr
    stamp = {"created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
             "arviz_version": az.__version__, "inference_library": "ppl"}
    groups = {}
    for group, values, lead in (("posterior", draws.posterior, 2),
                                ("posterior_predictive", draws.posterior_predictive, 2),
                                ("sample_stats", draws.sample_stats, 2),
                                ("observed_data", observed, 0), ("constant_data", constant, 0)):
        if values:
            groups[group] = _dataset(xr, values, lead, dict(stamp))
    # run-level results (method, log evidence …) on the posterior group when there is one,
    # else on whichever group the run produced
    if groups:
        holder = groups.get("posterior", next(iter(groups.values())))
        for k, v in draws.attrs.items():
            holder.attrs[k] = v if isinstance(v, (int, float, str)) else str(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups)


def _dataset(xr, values: Dict[str, np.ndarray], lead: int, attrs: dict):
    data_vars, coords = {}, {}
    for name, value in values.items():
        value = np.asarray(value)
        shape = value.shape[lead:]
        dims = ["chain", "draw"][:lead] + [f"{name}_dim_{k + 1}" for k in range(len(shape))]
        data_vars[name] = (dims, value)
        for d, size in zip(dims[lead:], shape):
            coords[d] = np.arange(1, size + 1)
        if lead:
            coords.setdefault("chain", np.arange(value.shape[0]))
            coords.setdefault("draw", np.arange(value.shape[1]))
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def summarize(idata, var_names=None, hdi_prob=0.94):
    """arviz's summary of the posterior variables (one call: it is not cheap)."""
    az = _arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(idata, var_names=var_names, hdi_prob=hdi_prob, round_to=None)


def convergence_warnings(df, max_rhat=1.01, min_ess=100) -> list:
    """Stan's rule of thumb: R-hat below 1.01 and bulk ESS above 100 for every quantity."""
    out = []
    high = [str(i) for i, r in df.iterrows() if np.isfinite(r["r_hat"]) and r["r_hat"] > max_rhat]
    low = [str(i) for i, r in df.iterrows() if np.isfinite(r["ess_bulk"]) and r["ess_bulk"] < min_ess]
    if high:
        out.append(f"R-hat above {max_rhat} for {_some(high)}: the chains disagree; run longer or "
                   "reparameterise")
    if low:
        out.append(f"bulk ESS below {min_ess} for {_some(low)}: estimates of these are unreliable")
    return out


def _some(names, k=6):
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def summary_table(idata_or_df, var_names=None, hdi_prob=0.94) -> str:
    """The summary as text: mean, sd, HDI, ESS bulk/tail, R-hat; rows of `var_names` only."""
    df = summarize(idata_or_df, var_names, hdi_prob) if hasattr(idata_or_df, "posterior") else idata_or_df
    if var_names is not None:
        keep = set(var_names)
        df = df[[str(i).split("[")[0] in keep for i in df.index]]
    lo = f"hdi_{(1 - hdi_prob) / 2 * 100:g}%"
    hi = f"hdi_{(1 + hdi_prob) / 2 * 100:g}%"
    cols = [("mean", "mean", "{:.3f}"), ("sd", "sd", "{:.3f}"), (lo, lo, "{:.3f}"), (hi, hi, "{:.3f}"),
            ("ess_bulk", "ess_bulk", "{:.0f}"), ("ess_tail", "ess_tail", "{:.0f}"),
            ("r_hat", "r_hat", "{:.3f}")]
    cols = [c for c in cols if c[1] in df.columns]
    rows = [[str(i)] + [fmt.format(r[c]) if np.isfinite(r[c]) else "nan" for _, c, fmt in cols]
            for i, r in df.iterrows()]
    head = [""] + [c[0] for c in cols]
    widths = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])  # noqa: E731
                               for i, v in enumerate(r))
    return "\n".join([line(head)] + [line(r) for r in rows])


def write_netcdf(idata, path: str) -> None:
    """Write the InferenceData as NetCDF, atomically."""
    from .files import atomic_path
    with atomic_path(path, suffix=".nc") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata.to_netcdf(tmp)
