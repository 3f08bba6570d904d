"""Program output → arviz.InferenceData; the summary table; atomic NetCDF output."""
from __future__ import annotations

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
    az = _arviz()
    groups = dict(posterior=draws.posterior or None, sample_stats=draws.sample_stats or None,
                  observed_data=observed or None, constant_data=constant or None,
                  posterior_predictive=draws.posterior_predictive or None)
    # The language indexes from 1, so do the coordinates of every array dimension.
    dims, coords = {}, {}
    for group, lead in (("posterior", 2), ("posterior_predictive", 2), ("observed_data", 0),
                        ("constant_data", 0)):
        for name, value in (groups[group] or {}).items():
            shape = np.shape(value)[lead:]
            names = [f"{name}_dim_{k + 1}" for k in range(len(shape))]
            dims[name] = names
            for n, size in zip(names, shape):
                coords[n] = np.arange(1, size + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(**{k: v for k, v in groups.items() if v is not None}, dims=dims,
                             coords=coords)
    # run-level results (method, log evidence …) on the posterior group when there is one,
    # else on whichever group the run produced
    holder = idata.posterior if "posterior" in idata.groups() else getattr(idata, idata.groups()[0])
    for k, v in draws.attrs.items():
        holder.attrs[k] = v if isinstance(v, (int, float, str)) else str(v)
    return idata


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
