"""Program output → arviz.InferenceData; the summary table; atomic NetCDF output."""
from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import warnings
from typing import Dict, List, Optional

import numpy as np

from ..passes.base import Draws
from ..syntax.errors import PPLError, did_you_mean
from .files import atomic_path


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def to_inference_data(draws: Draws, observed: Dict[str, np.ndarray], constant: Dict[str, np.ndarray],
                      pairs: Optional[Dict[str, str]] = None, prior: Optional[Dict[str, np.ndarray]] = None,
                      prior_predictive: Optional[Dict[str, np.ndarray]] = None):
    """The InferenceData, built group by group straight as xarray Datasets.

    `pairs` ({observed name: generated name}, see `replicates`): each replicate is also
    entered in `posterior_predictive` (and `prior_predictive`) under the observed variable's
    name, so ``az.plot_ppc(idata)`` finds it; the pairs are recorded in the groups' attribute
    ``data_pairs`` (JSON, ArviZ's ``data_pairs`` convention). `prior`, `prior_predictive`:
    draws from the prior and data simulated from them (``ppl sample --prior``).

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
    pairs = dict(pairs or {})
    predictive = _with_pairs(draws.posterior_predictive, pairs)
    prior_pred = _with_pairs(prior_predictive or {}, pairs)
    for group, values, lead in (("posterior", draws.posterior, 2),
                                ("posterior_predictive", predictive, 2),
                                ("log_likelihood", draws.log_likelihood, 2),
                                ("sample_stats", draws.sample_stats, 2),
                                ("prior", prior or {}, 2), ("prior_predictive", prior_pred, 2),
                                ("observed_data", observed, 0), ("constant_data", constant, 0)):
        if values:
            groups[group] = _dataset(xr, values, lead, dict(stamp))
    for group, values in getattr(draws, "groups", {}).items():
        if values:
            groups[group] = _dataset(xr, values, 0, dict(stamp))
    for group, values in (("posterior_predictive", draws.posterior_predictive),
                          ("prior_predictive", prior_predictive or {})):
        used = {k: v for k, v in pairs.items() if v in values}
        if group in groups and used:
            groups[group].attrs["data_pairs"] = json.dumps(used)
    # run-level results (method, log evidence …) on the posterior group when there is one,
    # else on whichever group the run produced
    if groups:
        holder = groups.get("posterior", next(iter(groups.values())))
        for k, v in draws.attrs.items():
            holder.attrs[k] = v if isinstance(v, (int, float, str)) else str(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.InferenceData(**groups)


def _with_pairs(values: Dict[str, np.ndarray], pairs: Dict[str, str]) -> Dict[str, np.ndarray]:
    out = dict(values)
    for observed, generated in pairs.items():
        if generated in values and observed not in values:
            out[observed] = values[generated]
    return out


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


def summary_source(idata):
    """The draws a summary covers: the posterior and the generated quantities.

    Generated quantities sit in ``posterior_predictive`` (they are drawn once per posterior
    draw); replicated observations, named after a variable of ``observed_data``, stay out.
    """
    import xarray as xr
    groups = idata.groups()
    parts = [idata.posterior] if "posterior" in groups else []
    if "posterior_predictive" in groups:
        observed = set(idata.observed_data.data_vars) if "observed_data" in groups else set()
        taken = set(parts[0].data_vars) if parts else set()
        pp = idata.posterior_predictive
        lead = (parts[0].sizes["chain"], parts[0].sizes["draw"]) if parts else None
        # only draws that pair with the posterior's (merging others would pad them with NaN)
        generated = [n for n in pp.data_vars if n not in observed and n not in taken
                     and (lead is None or pp[n].shape[:2] == lead)]
        if generated:
            parts.append(idata.posterior_predictive[generated])
    if not parts:
        return None
    ds = xr.merge(parts, compat="override", combine_attrs="override") if len(parts) > 1 else parts[0]
    return ds


class _QuietArviz:
    """arviz logs "Shape validation failed" for a single chain (it wants two for R-hat): the
    summary says so itself (R-hat nan), so the log line is noise."""

    def __enter__(self):
        # arviz's logger is a Logger built directly, not the one logging.getLogger returns
        self.log = getattr(_arviz(), "_log", None) or logging.getLogger("arviz")
        self.level = self.log.level
        self.log.setLevel(logging.ERROR)
        self.warn = warnings.catch_warnings()
        self.warn.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self.warn.__exit__(*exc)
        self.log.setLevel(self.level)


def summarize(idata, var_names=None, hdi_prob=0.94):
    """arviz's summary of the posterior and generated quantities, unrounded, with the median.

    ``az.summary`` rounds to two decimals unless told ``round_to="none"``: R-hat 1.014 would
    read 1.01 and pass the 1.01 test. One call: it is not cheap.
    """
    az = _arviz()
    source = summary_source(idata) if hasattr(idata, "groups") else idata
    with _QuietArviz():
        return az.summary(source, var_names=var_names, hdi_prob=hdi_prob, round_to="none",
                          stat_funcs={"median": np.median}, extend=True)


def summary_variables(idata, max_elements: int, wanted: Optional[List[str]] = None):
    """(shown, hidden): the variables to summarise; arrays with more than `max_elements`
    elements are hidden unless asked for by name."""
    source = summary_source(idata)
    names = list(source.data_vars) if source is not None else []
    if wanted:
        for n in wanted:
            if n not in names:
                raise PPLError(f'no variable "{n}" in the posterior or the generated quantities',
                               None, did_you_mean(n, names) or "variables: " + ", ".join(names))
        return list(wanted), []
    shown, hidden = [], []
    for n in names:
        size = int(np.prod(source[n].shape[2:], dtype=int))
        (shown if size <= max_elements else hidden).append(n)
    return shown, hidden


def is_markov_chain(idata) -> bool:
    """Whether the run's draws are Markov chains (so R-hat and ESS judge convergence).

    The program that made the draws says so in the attribute ``markov_chain`` (1 for NUTS,
    particle Gibbs and PMMH; 0 for independent particle filters, Kalman draws and tempered SMC
    populations). Draws without it (exact enumeration, a file written before the attribute or
    elsewhere) are judged by `inference_method` and `smc_algorithm`: NUTS, particle Gibbs and
    PMMH are chains, anything else is not.
    """
    groups = idata.groups()
    if not groups:
        return False
    attrs = (idata.posterior if "posterior" in groups else getattr(idata, groups[0])).attrs
    if "markov_chain" in attrs:
        return str(attrs["markov_chain"]).lower() in ("1", "true")
    # a file written before the attribute: judged by the method that made it
    algorithm = str(attrs.get("smc_algorithm", ""))
    return attrs.get("inference_method") == "nuts" or \
        algorithm.startswith(("particle Gibbs", "particle marginal Metropolis"))


def convergence_warnings(df, max_rhat=1.01, min_ess=100) -> list:
    """Stan's rule of thumb: R-hat below 1.01 and bulk ESS above 100 for every quantity.

    `df` must hold unrounded values (``summarize`` gives them)."""
    out = []
    high = [str(i) for i, r in df.iterrows() if np.isfinite(r["r_hat"]) and r["r_hat"] > max_rhat]
    low = [str(i) for i, r in df.iterrows() if np.isfinite(r["ess_bulk"]) and r["ess_bulk"] < min_ess]
    if high:
        worst = float(df["r_hat"].max())
        out.append(f"R-hat above {max_rhat} for {_some(high)} (largest {worst:.3f}): the chains "
                   "disagree; run longer or reparameterise")
    if low:
        least = float(df["ess_bulk"].min())
        out.append(f"bulk ESS below {min_ess} for {_some(low)} (smallest {least:.0f}): estimates "
                   "of these are unreliable; run longer")
    return out


def _some(names, k=6):
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def format_number(x: float, digits: int = 3) -> str:
    """`digits` significant figures, in fixed notation while that stays short: 4.38, 0.0123,
    0.000100, 1234, and 1.23e-05 or 1.23e+08 beyond."""
    if not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0:
        return "0"
    magnitude = int(np.floor(np.log10(abs(x))))
    decimals = digits - 1 - magnitude
    if decimals > 6 or magnitude >= 7:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{max(decimals, 0)}f}"


def summary_table(idata_or_df, var_names=None, hdi_prob=0.94) -> str:
    """The summary as text: mean, MCSE, sd, median, HDI, ESS bulk/tail, R-hat; rows of
    `var_names` only. Values to three significant figures, R-hat to three decimals."""
    df = summarize(idata_or_df, var_names, hdi_prob) if hasattr(idata_or_df, "groups") else idata_or_df
    if var_names is not None:
        keep = set(var_names)
        df = df[[str(i).split("[")[0] in keep for i in df.index]]
    lo = f"hdi_{(1 - hdi_prob) / 2 * 100:g}%"
    hi = f"hdi_{(1 + hdi_prob) / 2 * 100:g}%"
    sig = format_number
    whole = lambda x: f"{x:.0f}"  # noqa: E731
    rhat = lambda x: f"{x:.3f}"  # noqa: E731
    cols = [("mean", "mean", sig), ("mcse", "mcse_mean", sig), ("sd", "sd", sig),
            ("median", "median", sig), (lo, lo, sig), (hi, hi, sig),
            ("ess_bulk", "ess_bulk", whole), ("ess_tail", "ess_tail", whole), ("r_hat", "r_hat", rhat)]
    cols = [c for c in cols if c[1] in df.columns]
    rows = [[str(i)] + [fmt(float(r[c])) if np.isfinite(r[c]) else "nan" for _, c, fmt in cols]
            for i, r in df.iterrows()]
    head = [""] + [c[0] for c in cols]
    widths = [max(len(x[i]) for x in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i])  # noqa: E731
                               for i, v in enumerate(r))
    return "\n".join([line(head)] + [line(r) for r in rows])


def report(model, idata, elapsed: float, var_names=None, max_elements: int = 20, out=None,
           err=None):
    """What `ppl sample` (and the REPL's :sample) prints after a run: the method, the evidence
    and smoothed functionals, exact marginals, the summary, divergences; warnings on `err`."""
    out, err = out or sys.stdout, err or sys.stderr
    say = lambda text="": out.write(text + "\n")  # noqa: E731
    plan = model.last_plan
    say(f"method: {plan.method} — {plan.reason}")
    has_posterior = "posterior" in idata.groups()
    attrs = (idata.posterior if has_posterior else getattr(idata, idata.groups()[0])).attrs
    ev = attrs.get("log_evidence")
    if ev is not None:
        se = attrs.get("log_evidence_se")
        say(f"log evidence: {float(ev):.4f}" + (f" ± {float(se):.4f}" if se is not None else ""))
    if attrs.get("elbo") is not None:  # variational runs (vsde)
        say(f"ELBO: {float(attrs['elbo']):.4f} ± {float(attrs.get('elbo_se', float('nan'))):.4f} "
            f"(Monte Carlo se, {attrs.get('elbo_paths', '?')} paths; E log p(y | path) "
            f"{float(attrs.get('elbo_loglik', float('nan'))):.4f}, KL "
            f"{float(attrs.get('elbo_kl', float('nan'))):.4f}; {attrs.get('vi_steps', '?')} steps)")
    smoothed = [k[len("smoothed_"):] for k in attrs if k.startswith("smoothed_") and not k.endswith("_se")]
    if smoothed:
        say(f"additive functionals, E[· | data] ({attrs.get('smoothing_method', '')}):")
        for n in smoothed:
            se = attrs.get(f"smoothed_{n}_se")
            say(f"  {n} = {float(attrs[f'smoothed_{n}']):.6g}" + (f" ± {float(se):.2g}" if se is not None else ""))
    if attrs.get("marginals"):
        say(exact_marginals_text(attrs["marginals"], max_elements))
    if attrs.get("size_posteriors"):
        say(size_posteriors_text(attrs["size_posteriors"], attrs.get("acceptance"),
                                 attrs.get("given_size"), max_elements))
    shown, hidden = summary_variables(idata, max_elements, var_names)
    df = summarize(idata, var_names=shown) if shown else None
    if shown:
        say(summary_table(df, var_names=shown))
    if hidden:
        say(f"(not shown, more than {max_elements} elements each: {', '.join(hidden)}; "
            "use --vars NAME to show them)")
    if "prior" in idata.groups():
        prior = idata.prior
        names = [n for n in shown if n in prior.data_vars]
        say(f"prior ({prior.sizes['chain']} chains × {prior.sizes['draw']} draws; data simulated "
            "in prior_predictive):")
        if names:
            az = _arviz()
            say(summary_table(summarize(az.InferenceData(posterior=prior[names])), var_names=names))
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    if stats is not None and "diverging" in stats and has_posterior:
        n_div = int(stats["diverging"].sum())
        say(f"{idata.posterior.sizes['chain']} chains × {idata.posterior.sizes['draw']} draws, "
            f"{n_div} divergent transitions, {elapsed:.2f} s")
    # R-hat and ESS judge Markov chains; independent filters or exact draws are not chains
    checks = convergence_warnings(df) if df is not None and is_markov_chain(idata) else []
    for w in list(getattr(model, "last_warnings", [])) + checks:
        err.write(f"warning: {w}\n")
    return df


def exact_marginals_text(text: str, max_elements: int) -> str:
    """Exact posterior probabilities (from enumeration), shown before the Monte Carlo summary."""
    marginals = json.loads(text)
    lines = ["exact posterior marginals:"]
    for name, m in marginals.items():
        probs = np.asarray(m["probabilities"])
        values = m["values"]
        if probs.ndim == 1:
            lines.append("  " + ", ".join(f"P({name}={v}) = {p:.6f}" for v, p in zip(values, probs)))
        else:
            flat = probs.reshape(-1, probs.shape[-1])
            for k, row in enumerate(flat[:max_elements]):
                idx = ", ".join(str(i + 1) for i in np.unravel_index(k, probs.shape[:-1]))
                lines.append("  " + ", ".join(f"P({name}[{idx}]={v}) = {p:.6f}"
                                              for v, p in zip(values, row)))
    return "\n".join(lines) + "\n"


def size_posteriors_text(text: str, acceptance: str = None, given: str = None,
                         max_elements: int = 20) -> str:
    """The posterior of each size variable (mhg): p(k | data) ± Monte Carlo standard error, the
    acceptance rate of each move, and posterior means given the most probable sizes."""
    lines = []
    for name, t in json.loads(text).items():
        lines.append(f"posterior of {name} (± Monte Carlo se):")
        for v, p, se in zip(t["values"], t["probabilities"], t["se"]):
            if p > 0:
                lines.append(f"  P({name}={v}) = {p:.4f} ± {se:.4f}")
    if acceptance:
        acc = json.loads(acceptance)
        lines.append("acceptance: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    for name, rows in (json.loads(given) if given else {}).items():
        if rows:
            lines.append(f"posterior means given {name} (its most probable values):")
        for r in rows:
            parts = []
            for var, m in r["means"].items():
                if isinstance(m, list):
                    flat = np.ravel(np.asarray(m, float))
                    shown = ", ".join(format_number(x, 5) for x in flat[:max_elements])
                    parts.append(f"{var} = [{shown}{' …' if flat.size > max_elements else ''}]")
                else:
                    parts.append(f"{var} = {format_number(float(m), 5)}")
            lines.append(f"  {name} = {r['value']} (p {r['probability']:.3f}): " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def write_netcdf(idata, path: str) -> None:
    """Write the InferenceData as NetCDF, atomically."""
    with atomic_path(path, suffix=".nc") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata.to_netcdf(tmp)


# --output formats by file extension
OUTPUT_FORMATS = {".nc": "NetCDF (the whole InferenceData)", ".csv": "CSV in Stan's layout"}


def check_output_path(path: str) -> str:
    """The output format for `path` (its extension), or a PPLError before any sampling."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        known = ", ".join(f"{e} ({what})" for e, what in OUTPUT_FORMATS.items())
        said = f'"{ext}"' if ext else "no extension"
        raise PPLError(f'cannot write "{path}": {said} is not an output format', None,
                       f"name the file with {known}", filename="--output")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PPLError(f'cannot write "{path}": the directory {directory} does not exist', None,
                       "create it first, or write somewhere else", filename="--output")
    return ext


def write_output(idata, path: str) -> None:
    """Write the run to `path`, atomically, in the format its extension names."""
    ext = check_output_path(path)
    if ext == ".csv":
        write_csv(idata, path)
    else:
        write_netcdf(idata, path)


# sample_stats names -> CmdStan's column names
_STAN_STATS = (("lp", "lp__"), ("acceptance_rate", "accept_stat__"), ("step_size", "stepsize__"),
               ("tree_depth", "treedepth__"), ("n_steps", "n_leapfrog__"),
               ("diverging", "divergent__"), ("energy", "energy__"))


def stan_columns(name: str, values: np.ndarray, lead: int = 2):
    """(column names, 2-D block) of one variable in Stan's CSV layout: one column per scalar
    element, ``theta.1``, ``Sigma.2.1``, indices from 1 and the first index varying fastest
    (Stan's column-major order)."""
    values = np.asarray(values)
    shape = values.shape[lead:]
    rows = int(np.prod(values.shape[:lead], dtype=int))
    if not shape:
        return [name], values.reshape(rows, 1)
    # column-major: reverse the element axes, flatten in C order
    block = values.reshape((rows,) + shape)
    block = np.transpose(block, (0,) + tuple(range(len(shape), 0, -1))).reshape(rows, -1)
    index = np.indices(shape).reshape(len(shape), -1).T  # C order over the element axes
    order = np.lexsort(index.T)  # sort by the first axis fastest: lexsort's last key is primary
    names = [name + "".join(f".{i + 1}" for i in index[k]) for k in order]
    return names, block


def write_csv(idata, path: str) -> None:
    """Write the draws as CSV in Stan's layout, atomically.

    Columns: ``chain__`` and ``draw__`` (one file holds every chain, as CmdStanPy's
    ``draws_pd`` does), then the sampler's diagnostics under CmdStan's names where the run has
    them (``lp__``, ``accept_stat__``, ``stepsize__``, ``treedepth__``, ``n_leapfrog__``,
    ``divergent__``, ``energy__``), then one column per scalar element of every posterior
    variable and generated quantity (``theta.1`` …, column-major as Stan orders them). One row
    per draw. Leading ``#`` lines carry the run's attributes; read it back with
    ``pandas.read_csv(path, comment="#")``.
    """
    import pandas as pd
    source = summary_source(idata)
    if source is None:
        raise PPLError("the run has no draws to write as CSV", None,
                       "write NetCDF instead (--output fit.nc)", filename="--output")
    chains, draws = source.sizes["chain"], source.sizes["draw"]
    names = ["chain__", "draw__"]
    blocks = [np.repeat(np.arange(1, chains + 1), draws)[:, None],
              np.tile(np.arange(1, draws + 1), chains)[:, None]]
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    for ours, stan in _STAN_STATS:
        if stats is not None and ours in stats and stats[ours].shape == (chains, draws):
            v = np.asarray(stats[ours].values)
            names.append(stan)
            blocks.append((v.astype(int) if v.dtype == bool else v).reshape(-1, 1))
    for n in source.data_vars:
        v = np.asarray(source[n].values)
        cols, block = stan_columns(n, v.astype(int) if v.dtype == bool else v)
        names += cols
        blocks.append(block)
    # one DataFrame per block keeps each block's dtype (integers stay integers)
    frames, at = [], 0
    for b in blocks:
        frames.append(pd.DataFrame(b, columns=names[at:at + b.shape[1]]))
        at += b.shape[1]
    frame = pd.concat(frames, axis=1)
    attrs = dict(source.attrs)
    header = "".join(f"# {k} = {v}\n" for k, v in attrs.items()
                     if k not in ("created_at", "arviz_version"))
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w") as f:
            f.write("# written by ppl: Stan's CSV layout, one row per draw\n" + header)
            frame.to_csv(f, index=False)
