"""posteriordb reference posteriors (../shared/data/posteriordb/<name>/) and the comparison rule.

Each folder holds `posterior.json`, `data.json` (CmdStan JSON layout), `model_info.json` and
`reference_draws.json.zip`: a list of 10 chains, each mapping element names such as
``"theta[1]"`` (1-based, Stan style) to 1000 draws.

Everything here speaks *element names* ("theta[1]", "mu"). `compare_to_reference` also accepts
array-valued variables ("theta" with draws of shape (chains, draws, 8)) and splits them into
element names, so a ppl result can be passed as it comes.

Usage from a test (the `shared_data` fixture skips when ../shared is absent)::

    def test_eight_schools(shared_data):
        failures = compare_to_reference(our_draws, "eight_schools-eight_schools_noncentered")
        assert not failures, "\\n".join(failures)
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

_DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "posteriordb"

# Quantiles the comparison rule checks besides mean and sd.
QUANTILE_PROBS = (0.05, 0.95)


def posteriordb_root() -> Path:
    """Folder holding the posteriordb posteriors; PPL_POSTERIORDB overrides the default."""
    return Path(os.environ.get("PPL_POSTERIORDB", _DEFAULT_ROOT))


def _folder(name: str) -> Path:
    folder = posteriordb_root() / name
    if not folder.is_dir():
        available = sorted(p.name for p in posteriordb_root().glob("*")) if posteriordb_root().is_dir() else []
        raise FileNotFoundError(
            f"posteriordb posterior {name!r} not found under {posteriordb_root()}"
            + (f"; available: {', '.join(available)}" if available else " (folder missing)")
        )
    return folder


def available_posteriors() -> list[str]:
    root = posteriordb_root()
    return sorted(p.name for p in root.iterdir() if (p / "posterior.json").is_file()) if root.is_dir() else []


def load_posterior_info(name: str) -> dict:
    """Contents of posterior.json (model_name, data_name, dimensions, ...)."""
    return json.loads((_folder(name) / "posterior.json").read_text())


def load_data(name: str) -> dict:
    """The data set in CmdStan JSON layout; lists become numpy arrays, scalars stay scalars."""
    raw = json.loads((_folder(name) / "data.json").read_text())
    return {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in raw.items()}


@functools.lru_cache(maxsize=None)
def _reference_draws_cached(name: str) -> tuple[tuple[str, np.ndarray], ...]:
    path = _folder(name) / "reference_draws.json.zip"
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if m.endswith(".json")]
        if len(members) != 1:
            raise ValueError(f"{path}: expected one .json member, found {members}")
        chains = json.loads(archive.read(members[0]))
    names = list(chains[0].keys())
    out = []
    for element in names:
        draws = np.asarray([chain[element] for chain in chains], dtype=np.float64)
        draws.setflags(write=False)  # shared through the cache: nobody may mutate it
        out.append((element, draws))
    return tuple(out)


def load_reference_draws(name: str) -> dict[str, np.ndarray]:
    """Element name -> reference draws of shape (chains, draws) (10 × 1000), in file order."""
    return dict(_reference_draws_cached(name))


def _mcse(draws: np.ndarray, method: str, prob: float | None = None) -> float:
    import arviz as az

    kwargs = {"method": method}
    if prob is not None:
        kwargs["prob"] = prob
    return float(az.mcse(np.asarray(draws, dtype=np.float64), **kwargs))


def summarize_draws(draws: np.ndarray) -> dict[str, float]:
    """mean, sd, q05, q95 and their Monte Carlo standard errors for (chains, draws) samples.

    MCSEs come from arviz (ESS-based, so autocorrelation within chains is accounted for).
    """
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 2:
        raise ValueError(f"expected draws of shape (chains, draws), got {draws.shape}")
    flat = draws.reshape(-1)
    q05, q95 = np.quantile(flat, QUANTILE_PROBS)
    return {
        "mean": float(flat.mean()),
        "sd": float(flat.std(ddof=1)),
        "q05": float(q05),
        "q95": float(q95),
        "mcse_mean": _mcse(draws, "mean"),
        "mcse_sd": _mcse(draws, "sd"),
        "mcse_q05": _mcse(draws, "quantile", QUANTILE_PROBS[0]),
        "mcse_q95": _mcse(draws, "quantile", QUANTILE_PROBS[1]),
    }


@functools.lru_cache(maxsize=None)
def _reference_summary_cached(name: str) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
    return tuple(
        (element, tuple(summarize_draws(draws).items())) for element, draws in _reference_draws_cached(name)
    )


def reference_summary(name: str) -> dict[str, dict[str, float]]:
    """Element name -> {mean, sd, q05, q95, mcse_mean, mcse_sd, mcse_q05, mcse_q95}."""
    return {element: dict(stats) for element, stats in _reference_summary_cached(name)}


_ELEMENT = re.compile(r"^(?P<base>[^\[\]]+)(\[(?P<index>[0-9, ]+)\])?$")


def split_elements(draws_by_name: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn array-valued draws into Stan element names with 1-based indices.

    ``{"theta": (chains, draws, 8)}`` becomes ``{"theta[1]": (chains, draws), ...}``; entries
    that are already (chains, draws) keep their name. Multi-dimensional variables use
    ``"name[i,j]"`` as posteriordb does.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in draws_by_name.items():
        value = np.asarray(value, dtype=np.float64)
        if value.ndim < 2:
            raise ValueError(f"{name}: draws must have shape (chains, draws, ...), got {value.shape}")
        if value.ndim == 2:
            out[name] = value
            continue
        for index in np.ndindex(*value.shape[2:]):
            label = ",".join(str(i + 1) for i in index)
            out[f"{name}[{label}]"] = value[(slice(None), slice(None)) + index]
    return out


def compare_to_reference(
    ours: Mapping[str, np.ndarray],
    ref_name: str,
    *,
    num_mcse: float = 4.0,
    variables: list[str] | None = None,
    check_sd: bool = True,
    check_quantiles: bool = True,
    check_convergence: bool = False,
    min_ess: float = 400.0,
    max_rhat: float = 1.01,
) -> list[str]:
    """Compare our draws with a posteriordb reference posterior; return failures as sentences.

    The rule posteriordb suggests: for each reported variable, |mean_ours - mean_ref| must be
    within ``num_mcse * sqrt(mcse_ours² + mcse_ref²)``. The same rule, with the MCSE of the sd
    and of the 5%/95% quantiles, bounds the sd and quantiles — a tolerance made from Monte
    Carlo error on both sides rather than a fixed relative one. With ``check_convergence``
    our run must also have R-hat < ``max_rhat`` and bulk ESS > ``min_ess`` per element.

    ``ours`` maps names to draws of shape (chains, draws) or (chains, draws, *shape); array
    variables are split into Stan element names ("theta[1]"). ``variables`` restricts the
    check to these element or base names; by default every reference element must be present
    in ``ours`` (a missing one is a failure).
    """
    import arviz as az

    ours_elements = split_elements(ours)
    reference = reference_summary(ref_name)
    if variables is None:
        wanted = list(reference)
    else:
        wanted = [
            element
            for element in reference
            if element in variables or _ELEMENT.match(element).group("base") in variables
        ]
        unknown = [
            v for v in variables if v not in reference and not any(e.startswith(v + "[") for e in reference)
        ]
        if unknown:
            return [f"{ref_name}: no reference variable named {v!r} (have {', '.join(reference)})" for v in unknown]

    failures: list[str] = []
    for element in wanted:
        ref = reference[element]
        if element not in ours_elements:
            failures.append(f"{element}: missing from our draws (reference {ref_name} reports it)")
            continue
        draws = ours_elements[element]
        mine = summarize_draws(draws)

        checks = [("mean", "mcse_mean")]
        if check_sd:
            checks.append(("sd", "mcse_sd"))
        if check_quantiles:
            checks += [("q05", "mcse_q05"), ("q95", "mcse_q95")]
        for stat, mcse_key in checks:
            tolerance = num_mcse * math.hypot(mine[mcse_key], ref[mcse_key])
            difference = mine[stat] - ref[stat]
            if not abs(difference) <= tolerance:  # `not <=` also catches NaN
                failures.append(
                    f"{element}: {stat} {mine[stat]:.4g} vs reference {ref[stat]:.4g} "
                    f"(difference {difference:+.3g}, allowed ±{tolerance:.3g} = "
                    f"{num_mcse:g}·sqrt(mcse_ours² + mcse_ref²))"
                )

        if check_convergence:
            rhat = float(az.rhat(draws))
            ess = float(az.ess(draws, method="bulk"))
            if not rhat < max_rhat:
                failures.append(f"{element}: R-hat {rhat:.4f} ≥ {max_rhat}")
            if not ess > min_ess:
                failures.append(f"{element}: bulk ESS {ess:.0f} ≤ {min_ess:g}")
    return failures


def worst_z(ours: Mapping[str, np.ndarray], ref_name: str) -> tuple[float, str]:
    """The largest |ours − reference| / sqrt(mcse_ours² + mcse_ref²) over every reference
    element and the four statistics `compare_to_reference` checks (mean, sd, q05, q95), and
    where ("theta[3] sd"); `compare_to_reference` passes these when it is ≤ 4."""
    ours_elements = split_elements(ours)
    worst, at = 0.0, ""
    for element, ref in reference_summary(ref_name).items():
        if element not in ours_elements:
            return math.inf, f"{element} missing"
        mine = summarize_draws(ours_elements[element])
        for stat in ("mean", "sd", "q05", "q95"):
            scale = math.hypot(mine["mcse_" + stat], ref["mcse_" + stat])
            difference = abs(mine[stat] - ref[stat])
            z = difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)
            z = math.inf if math.isnan(z) else z
            if z > worst or not at:
                worst, at = z, f"{element} {stat}"
    return worst, at
