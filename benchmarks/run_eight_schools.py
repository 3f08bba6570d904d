"""Eight schools (non-centred), 4 chains × 1000 warm-up + 1000 draws: ppl NUTS vs Stan (pystan 3)
vs numpyro.infer.MCMC — in one run, reported as ratios.

    python benchmarks/run_eight_schools.py                 # everything, fresh caches (cold)
    python benchmarks/run_eight_schools.py --reps 3 --systems stan numpyro-vectorized
    python benchmarks/run_eight_schools.py --reuse-caches  # keep compile caches between runs
                                                            # (no cold figures; much faster)

What is measured, per system
* cold end-to-end: a fresh process with a fresh compile cache (ppl: ``PPL_CACHE_DIR``; Stan:
  httpstan's cache via ``XDG_CACHE_HOME``; NumPyro: JAX's persistent cache via
  ``JAX_COMPILATION_CACHE_DIR``), from process spawn to draws in hand — interpreter start,
  imports, build / compile, sampling.
* warm end-to-end: a second process with the caches the first one left.
* build: Stan's ``stan.build`` (C++ compile when cold; a cache lookup when warm); ppl's
  ``ppl.load``; NumPyro's model/MCMC construction. JAX compilation happens inside the first
  ``sample`` call for ppl and NumPyro, so it is in "first sample", not in "build".
* sampling (warm): median over ``--reps`` further calls in the warm process, each with a new seed,
  repetitions interleaved round-robin across systems so load drift hits all of them alike.
* ESS bulk per second: min over ``mu`` and ``tau`` of arviz's bulk ESS, divided by that call's
  sampling time; median over reps.
Ratios are ppl / anchor: for times < 1 means ppl is faster; for ESS/s > 1 means ppl is better.

Results: a table on stdout and ``benchmarks/results/eight_schools.json`` (written atomically).
Worker stderr (Stan's progress, compiler chatter) goes to ``benchmarks/results/logs/``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (HERE, anchor_python, RESULTS, ROOT, SHARED_DATA, Worker, WorkerError,  # noqa: E402
                     machine_info, median, ppl_available, ratio, table, write_json_atomic)

ALL_SYSTEMS = ["ppl", "stan", "numpyro-vectorized", "numpyro-sequential"]
ANCHORS = ["stan", "numpyro-vectorized", "numpyro-sequential"]
DATA_PATH = SHARED_DATA / "posteriordb" / "eight_schools-eight_schools_noncentered" / "data.json"
PPL_MODEL = ROOT / "examples" / "eight_schools.ppl"
CACHE_ENV_VARS = ("PPL_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")


def worker_argv(system: str) -> list[str]:
    if system == "stan":
        return [anchor_python("stan"), str(HERE / "anchors" / "stan_eight_schools.py")]
    return [sys.executable, str(HERE / "workers" / "eight_schools.py"), system]


def cache_env(system: str, cache_dir: Path) -> dict[str, str]:
    env = {k: "" for k in CACHE_ENV_VARS}  # blank out anything inherited
    env["JAX_PLATFORMS"] = "cpu"
    if system == "ppl":
        env["PPL_CACHE_DIR"] = str(cache_dir)
    elif system == "stan":
        env["XDG_CACHE_HOME"] = str(cache_dir)
    else:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    # empty strings would be read as "a cache dir called ''": drop them instead
    return {k: v for k, v in env.items() if v}


def spawn(system: str, cache_dir: Path, logs: Path) -> Worker:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV_VARS}
    env.update(cache_env(system, cache_dir))
    return Worker(worker_argv(system), env=env, name=system, stderr_path=logs / f"{system}.log",
                  inherit_env=False)


def ess_bulk_min(draws: dict) -> tuple[float, dict]:
    import arviz as az  # noqa: PLC0415

    ds = az.convert_to_inference_data({k: np.asarray(v) for k, v in draws.items()})
    ess = az.ess(ds, method="bulk")
    per = {k: float(ess[k].values) for k in draws}
    return min(per.values()), per


def one_process(system: str, cache_dir: Path, logs: Path, seed: int, cfg: dict,
                keep: bool = False) -> tuple[dict, Worker | None]:
    """Spawn, build, sample once; return the figures (and the worker if ``keep``)."""
    w = spawn(system, cache_dir, logs)
    b = w.call(cmd="build", seed=seed, **cfg)
    s = w.call(cmd="sample", seed=seed, **cfg)
    out = {
        "startup_s": w.startup_s,
        "build_s": b["build_s"],
        "first_sample_s": s["sample_s"],
        "end_to_end_s": s["t_done_wall"] - w.t_spawn_wall,
    }
    if "import_s" in b:
        out["import_s"] = b["import_s"]
    if not keep:
        w.close()
        return out, None
    return out, w


def ppl_cli_end_to_end(cache_dir: Path, cfg: dict, seed: int, logs: Path) -> float | None:
    exe = shutil.which("ppl")
    if exe is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="ppl-cli-")) / "fit.nc"
    env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV_VARS}
    env["PPL_CACHE_DIR"] = str(cache_dir)
    argv = [exe, "sample", str(PPL_MODEL), "--data", str(DATA_PATH),
            "--chains", str(cfg["chains"]), "--draws", str(cfg["draws"]),
            "--warmup", str(cfg["warmup"]), "--seed", str(seed), "--output", str(out)]
    t = time.perf_counter()
    with open(logs / "ppl-cli.log", "ab") as log:
        r = subprocess.run(argv, env=env, cwd=str(ROOT), stdout=log, stderr=log)
    dt = time.perf_counter() - t
    shutil.rmtree(out.parent, ignore_errors=True)
    return dt if r.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", nargs="+", default=ALL_SYSTEMS, choices=ALL_SYSTEMS)
    ap.add_argument("--reps", type=int, default=5, help="warm sampling repetitions per system")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--reuse-caches", action="store_true",
                    help="keep compile caches under benchmarks/.venvs/cache (no cold figures)")
    ap.add_argument("--no-cli", action="store_true", help="skip the ppl CLI end-to-end rows")
    ap.add_argument("--out", type=Path, default=RESULTS / "eight_schools.json")
    a = ap.parse_args(argv)
    cfg = {"chains": a.chains, "draws": a.draws, "warmup": a.warmup}

    notes: list[str] = []
    systems = list(a.systems)
    if "ppl" in systems:
        ok, why = ppl_available()
        if not ok or not PPL_MODEL.exists():
            systems.remove("ppl")
            notes.append(f"ppl skipped: {'import ppl.api failed: ' + why if not ok else str(PPL_MODEL) + ' missing'}")
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for f in logs.glob("*.log"):
        f.unlink()

    if a.reuse_caches:
        cache_root = HERE / ".venvs" / "cache"
        cache_root.mkdir(parents=True, exist_ok=True)
    else:
        cache_root = Path(tempfile.mkdtemp(prefix="ppl-bench-es-"))
    caches = {s: cache_root / s for s in systems}
    info = machine_info()
    print(f"eight schools: {a.chains} chains × {a.warmup} warm-up + {a.draws} draws; "
          f"systems {systems}; reps {a.reps}; caches {'reused' if a.reuse_caches else 'fresh'}",
          flush=True)
    for n in notes:
        print("  note:", n)

    res: dict[str, dict] = {s: {} for s in systems}
    seed = a.seed
    try:
        # 1) cold (or cache-priming) process per system
        for s in systems:
            print(f"[{'prime' if a.reuse_caches else 'cold'}] {s} …", flush=True)
            try:
                out, _ = one_process(s, caches[s], logs, seed, cfg)
            except WorkerError as e:
                print(f"  {s} failed: {e}", file=sys.stderr)
                notes.append(f"{s} failed in the cold run: {str(e).splitlines()[0]}")
                res[s]["failed"] = True
                continue
            res[s]["cold" if not a.reuse_caches else "prime"] = out
            seed += 1
        systems = [s for s in systems if not res[s].get("failed")]

        # 2) warm process per system, kept alive for the repetitions
        workers: dict[str, Worker] = {}
        for s in systems:
            print(f"[warm] {s} …", flush=True)
            try:
                out, w = one_process(s, caches[s], logs, seed, cfg, keep=True)
            except WorkerError as e:
                print(f"  {s} failed: {e}", file=sys.stderr)
                notes.append(f"{s} failed in the warm run: {str(e).splitlines()[0]}")
                res[s]["failed"] = True
                continue
            res[s]["warm"] = out
            workers[s] = w
            seed += 1
        systems = [s for s in systems if not res[s].get("failed")]

        # 3) repetitions, round-robin, rotating the order each round
        reps: dict[str, list[dict]] = {s: [] for s in systems}
        for r in range(a.reps):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for s in order:
                try:
                    resp = workers[s].call(cmd="sample", seed=seed, **cfg)
                except WorkerError as e:
                    print(f"  {s} failed: {e}", file=sys.stderr)
                    notes.append(f"{s} failed in repetition {r + 1}: {str(e).splitlines()[0]}")
                    continue
                finally:
                    seed += 1
                ess, per = ess_bulk_min(resp["draws"])
                reps[s].append({
                    "round": r, "sample_s": resp["sample_s"], "ess_bulk_min": ess, "ess_per_s": ess / resp["sample_s"],
                    "ess_bulk": per, "divergences": resp["divergences"],
                    "mean_mu": float(np.mean(resp["draws"]["mu"])),
                    "mean_tau": float(np.mean(resp["draws"]["tau"])),
                })
            print(f"  rep {r + 1}/{a.reps}: " + ", ".join(
                f"{s} {reps[s][-1]['sample_s']:.3f}s" for s in systems if reps[s]), flush=True)
        for s, w in workers.items():
            w.close()

        # 4) ppl's CLI, end to end (cold then warm), when it exists
        if "ppl" in systems and not a.no_cli:
            cli_cache = cache_root / "ppl-cli"
            if a.reuse_caches:
                ppl_cli_end_to_end(cli_cache, cfg, seed, logs)
            c = ppl_cli_end_to_end(cli_cache, cfg, seed, logs)
            w_ = ppl_cli_end_to_end(cli_cache, cfg, seed + 1, logs)
            res["ppl"]["cli"] = {"cold_end_to_end_s": None if a.reuse_caches else c,
                                 "warm_end_to_end_s": w_}
            if c is None and w_ is None:
                notes.append("ppl CLI: not on PATH or it failed (see benchmarks/results/logs/ppl-cli.log)")
    finally:
        if not a.reuse_caches:
            shutil.rmtree(cache_root, ignore_errors=True)

    # 5) summaries
    for s in systems:
        rr = reps[s]
        res[s]["reps"] = rr
        res[s]["summary"] = {
            "sampling_s": median([x["sample_s"] for x in rr]),
            "ess_bulk_min": median([x["ess_bulk_min"] for x in rr]),
            "ess_per_s": median([x["ess_per_s"] for x in rr]),
            "cold_end_to_end_s": res[s].get("cold", {}).get("end_to_end_s"),
            "warm_end_to_end_s": res[s]["warm"]["end_to_end_s"],
            "build_cold_s": res[s].get("cold", {}).get("build_s"),
            "build_warm_s": res[s]["warm"]["build_s"],
            "first_sample_cold_s": res[s].get("cold", {}).get("first_sample_s"),
            "mean_mu": float(np.mean([x["mean_mu"] for x in rr])) if rr else None,
            "mean_tau": float(np.mean([x["mean_tau"] for x in rr])) if rr else None,
            "divergences_per_run": float(np.mean([x["divergences"] for x in rr])) if rr else None,
        }
    ratios: dict[str, dict] = {}
    if "ppl" in systems:
        p = res["ppl"]["summary"]
        for s in systems:
            if s == "ppl":
                continue
            q = res[s]["summary"]
            ratios[f"ppl/{s}"] = {k: ratio(p[k], q[k]) for k in
                                  ("sampling_s", "cold_end_to_end_s", "warm_end_to_end_s",
                                   "ess_per_s")}
            # paired: ratio within each round (same load), then the median over rounds
            mine = {x["round"]: x for x in reps["ppl"]}
            paired = [(mine[x["round"]]["sample_s"] / x["sample_s"],
                       mine[x["round"]]["ess_per_s"] / x["ess_per_s"])
                      for x in reps[s] if x["round"] in mine]
            ratios[f"ppl/{s}"]["sampling_s_paired"] = median([a_ for a_, _ in paired])
            ratios[f"ppl/{s}"]["ess_per_s_paired"] = median([b_ for _, b_ in paired])

    headers = ["system", "sampling s", "ESS/s", "min ESS", "cold e2e s", "warm e2e s",
               "build cold s", "build warm s", "1st sample cold s", "mean mu", "mean tau", "div"]
    rows = [[s, *(res[s]["summary"][k] for k in (
        "sampling_s", "ess_per_s", "ess_bulk_min", "cold_end_to_end_s", "warm_end_to_end_s",
        "build_cold_s", "build_warm_s", "first_sample_cold_s", "mean_mu", "mean_tau",
        "divergences_per_run"))] for s in systems]
    if "ppl" in systems and "cli" in res["ppl"]:
        c = res["ppl"]["cli"]
        rows.append(["ppl (CLI)", None, None, None, c["cold_end_to_end_s"],
                     c["warm_end_to_end_s"], None, None, None, None, None, None])
    print()
    print(table(headers, rows))
    print("\n(reference posterior means: mu ≈ 4.4, tau ≈ 3.6)")
    if ratios:
        print()
        print(table(["ratio", "sampling", "sampling (paired)", "cold e2e", "warm e2e", "ESS/s",
                     "ESS/s (paired)"],
                    [[k, v["sampling_s"], v["sampling_s_paired"], v["cold_end_to_end_s"],
                      v["warm_end_to_end_s"], v["ess_per_s"], v["ess_per_s_paired"]]
                     for k, v in ratios.items()]))
        print("(times: < 1 ⇒ ppl faster; ESS/s: > 1 ⇒ ppl better; paired = median over rounds "
              "of the within-round ratio)")
    for n in notes:
        print("note:", n)

    write_json_atomic(a.out, {
        "workload": "eight_schools_noncentered", "config": {**cfg, "reps": a.reps,
                                                            "reuse_caches": a.reuse_caches},
        "machine": info, "systems": res, "ratios": ratios, "notes": notes,
        "definitions": {
            "numpyro-vectorized": "numpyro.infer.MCMC(NUTS, chain_method='vectorized'), x64",
            "numpyro-sequential": "numpyro.infer.MCMC(NUTS, chain_method='sequential'), x64",
            "stan": "pystan 3 (httpstan), 4 chains run by httpstan in parallel processes",
            "ratios": "ppl / anchor",
        },
    })
    print(f"\nwrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
