"""Stochastic-volatility bootstrap particle filter on the 750 GBP/USD returns, fixed
(mu, phi, s) = (−1.02432, 0.9702, 0.178): ppl's SMC vs ``particles`` vs a hand-written JAX filter,
for N ∈ {100, 10³, 10⁴, 10⁵} — in one run, reported as ratios.

    python benchmarks/run_sv_filter.py                  # all N (several minutes)
    python benchmarks/run_sv_filter.py --quick          # N = 100, 1000 only, fewer runs
    python benchmarks/run_sv_filter.py --N 1000 10000 --runs 20 --resampling every
    python benchmarks/run_sv_filter.py --jax-prng rbg   # the JAX anchor with a cheaper PRNG

All three use the bootstrap proposal and systematic resampling, adaptive at ESS < N/2 by
default (``--resampling every`` for every step; ppl's column uses whatever ppl's SMC does —
check that it matches before quoting ppl's figures).

Per system and N: the first call is a warm-up (JAX compile, numba JIT) and is reported as
"first call"; then ``runs`` filters with distinct seeds, interleaved across systems in a fresh
random order each round. Reported: median time per filter, mean and sd of log Ẑ over the runs, the mean's
distance from the reference −492.403 (±0.02), and time × variance (median time × sd², the
cost of a given accuracy: lower is better). Ratios are ppl / anchor and JAX / particles.
Note the sd over few runs is itself uncertain: relative sd ≈ 1/sqrt(2 (runs − 1)).

Results: a table on stdout and ``benchmarks/results/sv_filter.json`` (written atomically).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (HERE, anchor_python, RESULTS, ROOT, SHARED_DATA, Worker, WorkerError,  # noqa: E402
                     machine_info, median, ppl_available, ratio, table, write_json_atomic)

DATA_PATH = SHARED_DATA / "ssm" / "gbp_usd_1997_1999_returns.json"
PPL_MODEL = ROOT / "examples" / "sv.ppl"
PARAMS = {"mu": -1.02432, "phi": 0.9702, "s": 0.178}
REFERENCE_LOG_Z = -492.403
DEFAULT_RUNS = {100: 50, 1000: 30, 10_000: 12, 100_000: 6}
QUICK_RUNS = {100: 20, 1000: 10}
ALL_SYSTEMS = ["ppl", "ppl-run", "ppl-run32", "jax", "particles"]

# A filter factory takes (N, y, resampling) and returns ``run(seed) -> (log_z, seconds, CPU seconds of the process)``.
Filter = Callable[[int], tuple[float, float, float]]


# ------------------------------------------------------------------------------ ppl's column
# ppl's SMC timing API is not settled: this is the one place to adapt.
def ppl_filter(n: int, y: list[float], resampling: str) -> Filter:
    import ppl  # noqa: PLC0415

    model = ppl.load(str(PPL_MODEL))
    data = {"T": len(y), "y": y, **PARAMS}  # fixing mu, phi, s by giving them as data

    # One filter per call (ppl's default runs `chains`=4 filters in a vmap), no smoothed
    # trajectories (ppl keeps a genealogy by default), same proposal and resampling rule.
    opts = dict(chains=1, smoothing="none", proposal="bootstrap", resampling="systematic",
                ess_threshold=1.0 if resampling == "every" else 0.5)

    def run(seed: int) -> tuple[float, float, float]:
        t, c = time.perf_counter(), time.process_time()
        idata = model.sample(data, method="smc", particles=n, seed=seed, **opts)
        dt = time.perf_counter() - t  # includes binding data and building the InferenceData
        return _log_evidence(idata), dt, time.process_time() - c

    return run


def ppl_run_filter(n: int, y: list[float], resampling: str, dtype: str = "float64") -> Filter:
    """ppl's generated filter without the API's per-call work (binding data, InferenceData):
    the smc pass's compiled program, built once through the pass registry (DESIGN §4's pass
    contract: ``build(lowered, options)`` then ``program.run(data_arrays, seed=...)``)."""
    import ppl  # noqa: PLC0415
    from ppl.passes import PASSES  # noqa: PLC0415

    model = ppl.load(str(PPL_MODEL))
    lowered = model.lower({"T": len(y), "y": y, **PARAMS}, "smc")
    program = PASSES["smc"].build(lowered, dict(
        chains=1, draws=0, warmup=0, particles=n, smoothing="none", proposal="bootstrap",
        resampling="systematic", ess_threshold=1.0 if resampling == "every" else 0.5,
        # one device, like the anchors (ppl would split N >= 2^16 particles over the cores)
        dtype=dtype, shard="chains"))

    def run(seed: int) -> tuple[float, float, float]:
        t, c = time.perf_counter(), time.process_time()
        draws = program.run(lowered.data_arrays, seed=seed)
        dt = time.perf_counter() - t
        return float(np.asarray(draws.sample_stats["log_evidence"]).ravel()[-1]), dt, time.process_time() - c

    return run


def _log_evidence(idata) -> float:
    """The final log evidence from whatever name ppl settles on."""
    for group in ("sample_stats", "posterior", "log_likelihood"):
        if group not in idata.groups():
            continue
        ds = idata[group]
        for name in ("log_evidence", "log_marginal_likelihood", "log_Z", "logZ", "log_z",
                     "log_normalizer"):
            if name in ds:
                v = np.asarray(ds[name].values, dtype=float).ravel()
                return float(v[-1])
    attrs = getattr(idata, "attrs", {}) or {}
    for name in ("log_evidence", "log_marginal_likelihood"):
        if name in attrs:
            return float(attrs[name])
    raise KeyError("no log-evidence variable found in ppl's InferenceData "
                   f"(sample_stats has {list(idata.sample_stats.data_vars) if 'sample_stats' in idata.groups() else '—'})")


# ---------------------------------------------------------------------------- the anchors
JAX_PRNG = {"impl": "threefry2x32"}  # set from --jax-prng


def jax_filter(n: int, y: list[float], resampling: str) -> Filter:
    import jax  # noqa: PLC0415

    sys.path.insert(0, str(HERE / "anchors"))
    from jax_sv_filter import make_filter  # noqa: PLC0415

    f = make_filter(y, n, PARAMS["mu"], PARAMS["phi"], PARAMS["s"], resampling=resampling)

    def run(seed: int) -> tuple[float, float, float]:
        key = jax.random.key(seed, impl=JAX_PRNG["impl"])
        jax.block_until_ready(key)
        t, c = time.perf_counter(), time.process_time()
        z = f(key).block_until_ready()
        dt = time.perf_counter() - t
        return float(z), dt, time.process_time() - c

    return run


class ParticlesAnchor:
    """The ``particles`` worker (its own venv), shared across N."""

    def __init__(self, logs: Path):
        self.w = Worker([anchor_python("particles"), str(HERE / "anchors" / "particles_sv.py")],
                        name="particles", stderr_path=logs / "particles.log")
        self.versions = self.w.call(cmd="versions")

    def factory(self, n: int, y: list[float], resampling: str) -> Filter:
        def run(seed: int) -> tuple[float, float, float]:
            r = self.w.call(cmd="run", N=n, seed=seed, resampling=resampling)
            return r["log_z"], r["run_s"], r.get("cpu_s", float("nan"))
        return run

    def close(self) -> None:
        self.w.close()


# ----------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, nargs="+", default=None)
    ap.add_argument("--runs", type=int, default=None, help="filters per system and N")
    ap.add_argument("--quick", action="store_true", help="N = 100 and 1000 only, fewer runs")
    ap.add_argument("--systems", nargs="+", default=ALL_SYSTEMS, choices=ALL_SYSTEMS)
    ap.add_argument("--resampling", choices=["adaptive", "every"], default="adaptive")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jax-prng", choices=["threefry2x32", "rbg", "unsafe_rbg"],
                    default="threefry2x32",
                    help="PRNG of the hand-written JAX filter (JAX's default is threefry2x32; "
                         "rbg is about 2x faster on CPU here)")
    ap.add_argument("--out", type=Path, default=RESULTS / "sv_filter.json")
    a = ap.parse_args(argv)
    runs_for = QUICK_RUNS if a.quick else DEFAULT_RUNS
    JAX_PRNG["impl"] = a.jax_prng
    ns = a.N or list(runs_for)
    y = json.loads(DATA_PATH.read_text())["y"]

    notes: list[str] = []
    systems = list(a.systems)
    if "ppl" in systems or "ppl-run" in systems:
        ok, why = ppl_available()
        if not ok or not PPL_MODEL.exists():
            systems = [s for s in systems if not s.startswith("ppl")]
            notes.append(f"ppl skipped: {'import ppl.api failed: ' + why if not ok else str(PPL_MODEL) + ' missing'}")
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(f"SV bootstrap filter, T={len(y)}, {a.resampling} systematic resampling; "
          f"N {ns}; systems {systems}", flush=True)
    for n_ in notes:
        print("  note:", n_)

    pa = ParticlesAnchor(logs) if "particles" in systems else None
    factories: dict[str, Callable[[int, list[float], str], Filter]] = {
        "ppl": ppl_filter, "ppl-run": ppl_run_filter, "jax": jax_filter,
        "ppl-run32": lambda n, y, r: ppl_run_filter(n, y, r, "float32")}
    if pa is not None:
        factories["particles"] = pa.factory
        info["particles_venv"] = pa.versions

    results: dict[str, dict] = {}
    seed = a.seed
    try:
        for n in ns:
            runs = a.runs or runs_for.get(n, 5)
            print(f"N={n}: {runs} runs per system", flush=True)
            filters: dict[str, Filter] = {}
            first: dict[str, float] = {}
            live = []
            for s in systems:
                try:
                    t = time.perf_counter()
                    filters[s] = factories[s](n, y, a.resampling)
                    filters[s](10**6 + seed)  # warm-up: compile / JIT
                    first[s] = time.perf_counter() - t
                    live.append(s)
                except (WorkerError, Exception) as e:  # noqa: BLE001 — keep the anchors going
                    msg = f"{s} failed at N={n}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    print("  " + msg, file=sys.stderr)
                    notes.append(msg)
            out: dict[str, dict] = {s: {"log_z": [], "time_s": [], "cpu_s": []} for s in live}
            # A fresh random order every round: a system run right after the particles worker
            # (another process) or after an idle gap starts with cold caches and parked
            # threads and is slower; a fixed rotation would hand that penalty to one system.
            rng = np.random.default_rng(seed)
            for r in range(runs):
                order = list(rng.permutation(live)) if live else []
                for s in order:
                    if s not in filters:
                        continue
                    try:
                        z, dt, cpu = filters[s](seed + r)
                    except Exception as e:  # noqa: BLE001 — drop this system for this N
                        msg = f"{s} failed at N={n}, run {r + 1}: {type(e).__name__}: {e}"
                        print("  " + msg.splitlines()[0], file=sys.stderr)
                        notes.append(msg.splitlines()[0])
                        del filters[s]
                        continue
                    out[s]["log_z"].append(z)
                    out[s]["time_s"].append(dt)
                    out[s]["cpu_s"].append(cpu)
            seed += runs
            live = [s for s in live if s in filters and out[s]["log_z"]]
            for s in live:
                zs, ts = np.asarray(out[s]["log_z"]), out[s]["time_s"]
                sd = float(np.std(zs, ddof=1)) if len(zs) > 1 else float("nan")
                tm = median(ts)
                out[s].update({
                    "first_call_s": first[s], "median_s": tm,
                    "median_cpu_s": median(out[s]["cpu_s"]),
                    "ns_per_particle_step_cpu": median(out[s]["cpu_s"]) / (n * len(y)) * 1e9,
                    "ns_per_particle_step": tm / (n * len(y)) * 1e9,
                    "mean_log_z": float(np.mean(zs)), "sd_log_z": sd,
                    "bias_vs_reference": float(np.mean(zs)) - REFERENCE_LOG_Z,
                    "se_of_mean": sd / math.sqrt(len(zs)),
                    "time_x_var": tm * sd * sd, "runs": runs,
                })
            results[str(n)] = out
            print("  " + ", ".join(f"{s} {out[s]['median_s'] * 1e3:.1f} ms sd {out[s]['sd_log_z']:.3f}"
                                   for s in live), flush=True)
    finally:
        if pa is not None:
            pa.close()

    ratios: dict[str, dict] = {}
    pairs = [("ppl", "jax"), ("ppl", "particles"), ("ppl-run", "jax"), ("ppl-run", "particles"),
             ("ppl-run32", "jax"), ("ppl-run32", "particles"), ("ppl-run32", "ppl-run"),
             ("jax", "particles")]
    for n, out in results.items():
        for num, den in pairs:
            if num in out and den in out:
                ratios.setdefault(f"{num}/{den}", {})[n] = {
                    k: ratio(out[num][k], out[den][k]) for k in ("median_s", "median_cpu_s", "sd_log_z", "time_x_var")}

    headers = ["N", "system", "median ms", "ns/p·step", "CPU ns/p·step", "1st call s", "mean log Z", "bias",
               "sd log Z", "time×var", "runs"]
    rows = []
    for n, out in results.items():
        for s, o in out.items():
            rows.append([int(n), s, o["median_s"] * 1e3, o["ns_per_particle_step"],
                         o["ns_per_particle_step_cpu"], o["first_call_s"],
                         f"{o['mean_log_z']:.3f}", f"{o['bias_vs_reference']:+.3f}", o["sd_log_z"], o["time_x_var"],
                         o["runs"]])
    print()
    print(table(headers, rows))
    print(f"(bias = mean log Z − reference {REFERENCE_LOG_Z}; ± ~2 se of the mean is noise)")
    if ratios:
        rrows = [[k, int(n), v["median_s"], v["median_cpu_s"], v["sd_log_z"], v["time_x_var"]]
                 for k, per in ratios.items() for n, v in per.items()]
        print()
        print(table(["ratio", "N", "time", "CPU time", "sd log Z", "time×var"], rrows))
        print("(< 1 ⇒ the first system is cheaper; DESIGN target: ppl/jax time ≤ 1.2)")
    for n_ in notes:
        print("note:", n_)

    try:  # the machine is shared: how loaded it was at the end as well as at the start
        info["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    print(f"load average at start {info.get('loadavg_at_start')}, at end {info.get('loadavg_at_end')}")
    write_json_atomic(a.out, {
        "workload": "sv_bootstrap_filter_gbp_usd", "T": len(y), "params": PARAMS,
        "reference_log_z": REFERENCE_LOG_Z, "resampling": f"systematic, {a.resampling}"
        + (" (ESS < N/2)" if a.resampling == "adaptive" else ""),
        "machine": info, "results": results, "ratios": ratios, "notes": notes,
        "definitions": {
            "jax": "benchmarks/anchors/jax_sv_filter.py: lax.scan over time, vmapped particles, x64, "
                   f"PRNG {a.jax_prng}",
            "particles": "particles.SMC(Bootstrap, resampling='systematic'), numpy<2 venv",
            "time_x_var": "median seconds per filter × variance of log Z over runs",
            "ppl": "model.sample(data, method='smc', particles=N, chains=1, smoothing='none', "
                   "proposal='bootstrap', ...): one filter through the public API",
            "ppl-run": "the smc pass's compiled program.run(seed) (no data binding / InferenceData)",
            "ppl-run32": "ppl-run with dtype='float32' (states, noise and likelihoods in float32; "
                         "log weights, their sums and log Z in float64)",
            "ratios": "first / second system",
        },
    })
    print(f"\nwrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
