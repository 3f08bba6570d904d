"""Every open posteriordb posterior through ppl NUTS and Stan (pystan 3), 4 chains × 1000
warm-up + 1000 draws, one posterior after another, reported per posterior and as ratios.

    python benchmarks/run_posteriordb.py                          # all 14, ppl and Stan
    python benchmarks/run_posteriordb.py --systems ppl --reps 0   # ppl alone: the survey
    python benchmarks/run_posteriordb.py --posteriors arK-arK garch-garch11 --reps 3
    python benchmarks/run_posteriordb.py --markdown               # also print a README table

Ports: ``examples/posteriordb/<name>.ppl``; Stan programs: ``anchors/posteriordb/<name>.stan``
(this project's own Stan translations, mirroring the ports); data and reference draws:
``../shared/data/posteriordb/<name>/``. A posterior ppl cannot compile or run yet is skipped for
ppl with ppl's own error message printed (its Stan column still runs), so the table fills in
as the language grows without touching this script.

Per posterior and system
* cold end-to-end: a fresh process with a fresh compile cache (ppl: ``PPL_CACHE_DIR``; Stan:
  httpstan's cache through ``XDG_CACHE_HOME``), from spawn to draws in hand: interpreter start,
  imports, build / compile, sampling.
* warm end-to-end: a second process with the caches the first one left.
* sampling: median over ``--reps`` further ``sample`` calls in the warm process (new seed each,
  repetitions interleaved across systems, the order rotating). ``--reps 0`` uses the warm
  process's first sample instead (for ppl that includes tracing the NUTS kernel: flagged ``*``).
* min bulk ESS over the reference's variables (every element posteriordb reports, e.g.
  ``theta[1..8]``, ``mu``, ``tau``), ESS/s = that over the sampling time; ratios ppl / Stan
  (ESS/s > 1: ppl better; times < 1: ppl faster).
* max R-hat, divergences, and the posteriordb comparison rule
  (``tests/oracles/posteriordb.py``: mean within 4·sqrt(mcse² + mcse_ref²), sd and 5%/95%
  quantiles likewise, R-hat < 1.01, bulk ESS > 400) for both systems — for Stan this checks
  the anchor programs themselves.

Results: tables on stdout, ``benchmarks/results/posteriordb.json`` (atomically), worker logs in
``benchmarks/results/logs/posteriordb/``. The load average is recorded at the start and at each
posterior: these 2-core machines are shared.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (HERE, RESULTS, ROOT, SHARED_DATA, Worker, WorkerError,  # noqa: E402
                     WorkerTimeout, anchor_python, fmt, machine_info, median, ratio, table,
                     write_json_atomic)

POSTERIORDB = SHARED_DATA / "posteriordb"
os.environ.setdefault("PPL_POSTERIORDB", str(POSTERIORDB))
sys.path.insert(0, str(ROOT / "tests"))
from oracles.posteriordb import (available_posteriors, compare_to_reference,  # noqa: E402
                                 split_elements, worst_z)

PORTS = ROOT / "examples" / "posteriordb"
STAN_PROGRAMS = HERE / "anchors" / "posteriordb"
SYSTEMS = ["ppl", "stan"]
CACHE_ENV_VARS = ("PPL_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")


def worker_argv(system: str) -> list[str]:
    if system == "stan":
        return [anchor_python("stan"), str(HERE / "anchors" / "stan_posteriordb.py")]
    return [sys.executable, str(HERE / "workers" / "posteriordb.py")]


STAN_CACHE: Path | None = None  # --stan-cache: httpstan's models kept (built ahead) there


def spawn(system: str, name: str, cache_dir: Path, logs: Path) -> Worker:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV_VARS}
    env["JAX_PLATFORMS"] = "cpu"
    if system == "stan" and STAN_CACHE is not None:
        cache_dir = STAN_CACHE
    env["PPL_CACHE_DIR" if system == "ppl" else "XDG_CACHE_HOME"] = str(cache_dir)
    return Worker(worker_argv(system), env=env, name=f"{system}:{name}",
                  stderr_path=logs / f"{name}.{system}.log", inherit_env=False)


class Unsupported(Exception):
    """ppl answered that it cannot compile or run this port yet (message: its error)."""


def checked(resp: dict) -> dict:
    if "unsupported" in resp:
        raise Unsupported(resp["unsupported"])
    return resp


def one_process(system: str, name: str, cache_dir: Path, logs: Path, seed: int, cfg: dict,
                timeout: float, keep: bool = False) -> tuple[dict, Worker | None, dict]:
    """Spawn, build, sample once; return (figures, worker if ``keep``, the sample's answer)."""
    w = spawn(system, name, cache_dir, logs)
    try:
        b = checked(w.call(cmd="build", name=name, seed=seed, timeout=timeout))
        s = checked(w.call(cmd="sample", seed=seed, timeout=timeout, **cfg))
    except BaseException:
        w.kill()
        raise
    out = {"startup_s": w.startup_s, "build_s": b["build_s"], "first_sample_s": s["sample_s"],
           "end_to_end_s": s["t_done_wall"] - w.t_spawn_wall}
    if not keep:
        w.close()
        return out, None, s
    return out, w, s


def assess(resp: dict, name: str) -> dict:
    """Figures of one sample call: min bulk ESS and max R-hat over the reference's elements,
    divergences, and the posteriordb comparison (failures as sentences)."""
    import arviz as az  # noqa: PLC0415

    draws = {k: np.asarray(v, dtype=np.float64) for k, v in resp["draws"].items()}
    elements = split_elements(draws)
    ess = {e: float(az.ess(d, method="bulk")) for e, d in elements.items()}
    rhat = {e: float(az.rhat(d)) for e, d in elements.items()}
    failures = compare_to_reference(draws, name, check_convergence=True)
    worst = min(ess, key=ess.get)
    z, z_at = worst_z(draws, name)
    return {"sample_s": resp["sample_s"], "divergences": resp["divergences"],
            "worst_z": z, "worst_z_at": z_at,
            "ess_bulk_min": ess[worst], "ess_bulk_min_at": worst,
            "ess_per_s": ess[worst] / resp["sample_s"], "rhat_max": max(rhat.values()),
            "failures": failures}


def run_posterior(name: str, systems: list[str], a, cfg: dict, logs: Path, seed: int) -> dict:
    res: dict = {"load_at_start": os.getloadavg(), "systems": {}}
    cache_root = Path(tempfile.mkdtemp(prefix=f"ppl-bench-pdb-{name[:20]}-"))
    workers: dict[str, Worker] = {}
    try:
        for s in systems:
            r = res["systems"][s] = {}
            try:
                if a.single_process:  # the cold process stays for the repetitions
                    print(f"  [cold, kept] {s} …", flush=True)
                    r["cold"], workers[s], first = one_process(s, name, cache_root / s, logs,
                                                               seed, cfg, a.timeout, keep=True)
                else:
                    print(f"  [cold] {s} …", flush=True)
                    r["cold"], _, _ = one_process(s, name, cache_root / s, logs, seed, cfg,
                                                  a.timeout)
                    print(f"  [warm] {s} …", flush=True)
                    r["warm"], workers[s], first = one_process(s, name, cache_root / s, logs,
                                                               seed + 1, cfg, a.timeout,
                                                               keep=True)
                if a.reps == 0:
                    r["reps"] = [dict(assess(first, name), round=0, warm_first_sample=True)]
            except Unsupported as e:
                r["unsupported"] = str(e)
                print(f"  {s}: skipped — cannot run this port yet:\n"
                      + "\n".join("    " + ln for ln in str(e).splitlines()), flush=True)
            except WorkerTimeout as e:
                r["failed"] = str(e)
                print(f"  {s}: {e}", flush=True)
            except WorkerError as e:
                r["failed"] = str(e).splitlines()[0]
                print(f"  {s} failed: {e}", file=sys.stderr, flush=True)
        live = [s for s in systems if s in workers]
        for rep in range(a.reps if live else 0):
            order = live[rep % len(live):] + live[:rep % len(live)] if live else []
            for s in list(order):
                try:
                    resp = checked(workers[s].call(cmd="sample", seed=seed + 2 + rep,
                                                   timeout=a.timeout, **cfg))
                except (WorkerError, Unsupported) as e:
                    res["systems"][s]["failed"] = f"repetition {rep + 1}: {str(e).splitlines()[0]}"
                    print(f"  {s} failed in repetition {rep + 1}: {e}", flush=True)
                    workers.pop(s).kill()
                    live.remove(s)
                    continue
                res["systems"][s].setdefault("reps", []).append(dict(assess(resp, name), round=rep))
            if not live:
                break
            print(f"  rep {rep + 1}/{a.reps}: " + ", ".join(
                f"{s} {res['systems'][s]['reps'][-1]['sample_s']:.2f}s" for s in live), flush=True)
            if a.rep_budget and rep + 1 < a.reps and any(
                    sum(x["sample_s"] for x in res["systems"][s].get("reps", [])) > a.rep_budget
                    for s in live):
                print(f"  (repetitions stopped: over the {a.rep_budget:g} s budget)", flush=True)
                break
    finally:
        for w in workers.values():
            w.close()
        shutil.rmtree(cache_root, ignore_errors=True)
    for s, r in res["systems"].items():
        reps = r.get("reps", [])
        if not reps:
            continue
        r["summary"] = {
            "sampling_s": median([x["sample_s"] for x in reps]),
            "ess_bulk_min": median([x["ess_bulk_min"] for x in reps]),
            "ess_per_s": median([x["ess_per_s"] for x in reps]),
            "rhat_max": max(x["rhat_max"] for x in reps),
            "worst_z": max(x["worst_z"] for x in reps),
            "divergences": float(np.mean([x["divergences"] for x in reps])),
            "matches": sum(not x["failures"] for x in reps),
            "runs": len(reps),
            "failures": reps[0]["failures"],
            "cold_end_to_end_s": r.get("cold", {}).get("end_to_end_s"),
            "warm_end_to_end_s": r.get("warm", {}).get("end_to_end_s"),
            "warm_first_sample": a.reps == 0,
        }
    p, q = (res["systems"].get(s, {}).get("summary") for s in ("ppl", "stan"))
    if p and q:
        res["ratios"] = {k: ratio(p[k], q[k]) for k in
                         ("sampling_s", "ess_per_s", "cold_end_to_end_s", "warm_end_to_end_s")}
    return res


def status(r: dict) -> str:
    if "unsupported" in r:
        first = next((ln for ln in r["unsupported"].splitlines() if "error:" in ln),
                     r["unsupported"].splitlines()[0])
        return "cannot run: " + first.split("error:", 1)[-1].strip()
    if "summary" not in r:
        return "failed: " + r.get("failed", "no draws")
    s = r["summary"]
    if s["matches"] == s["runs"]:
        return "matches"
    bad = sorted({f.split(":")[0] for f in s["failures"]})
    return f"mismatch ({s['matches']}/{s['runs']} runs pass; {', '.join(bad)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posteriors", nargs="+", default=None, help="default: every posterior")
    ap.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    ap.add_argument("--reps", type=int, default=1,
                    help="sampling repetitions in the warm process (0: use its first sample)")
    ap.add_argument("--rep-budget", type=float, default=600.0,
                    help="stop a posterior's repetitions once a system has sampled this long (s)")
    ap.add_argument("--timeout", type=float, default=2400.0,
                    help="seconds a build or sample call may take before its worker is killed")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    ap.add_argument("--single-process", action="store_true",
                    help="one process per system and posterior: the cold one, kept for the "
                         "repetitions (no warm end-to-end figure; half the compilations)")
    ap.add_argument("--stan-cache", type=Path, default=None,
                    help="keep httpstan's built models in this folder (XDG_CACHE_HOME), e.g. "
                         "built ahead by anchors/stan_prebuild.py: Stan's cold figures are then "
                         "not cold (a loaded machine takes minutes per C++ build)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other posteriors already in --out (runs one at a time)")
    ap.add_argument("--out", type=Path, default=RESULTS / "posteriordb.json")
    a = ap.parse_args(argv)
    global STAN_CACHE
    STAN_CACHE = a.stan_cache
    cfg = {"chains": a.chains, "draws": a.draws, "warmup": a.warmup}
    names = a.posteriors or available_posteriors()
    unknown = [n for n in names if n not in available_posteriors()]
    if unknown:
        ap.error(f"unknown posterior(s) {unknown}; have {available_posteriors()}")
    logs = RESULTS / "logs" / "posteriordb"
    logs.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(f"posteriordb: {len(names)} posterior(s); {a.chains} chains × {a.warmup} warm-up + "
          f"{a.draws} draws; systems {a.systems}; reps {a.reps}; load {os.getloadavg()}",
          flush=True)

    results: dict[str, dict] = {}
    if a.merge and a.out.exists():
        import json  # noqa: PLC0415

        results = {k: v for k, v in json.loads(a.out.read_text()).get("posteriors", {}).items()
                   if k not in names}
    for i, name in enumerate(names):
        print(f"[{i + 1}/{len(names)}] {name} (load {os.getloadavg()[0]:.2f})", flush=True)
        systems = [s for s in a.systems
                   if (PORTS if s == "ppl" else STAN_PROGRAMS).joinpath(
                       f"{name}.{'ppl' if s == 'ppl' else 'stan'}").exists()]
        for s in set(a.systems) - set(systems):
            print(f"  {s}: skipped — no program for {name}", flush=True)
        results[name] = run_posterior(name, systems, a, cfg, logs, a.seed + 100 * i)
        results[name]["stan_build_cached"] = a.stan_cache is not None
        write_json_atomic(a.out, {"config": {**cfg, "reps": a.reps}, "machine": info,
                                  "load_at_end": None, "posteriors": results})

    headers = ["posterior", "system", "status", "sampling s", "min bulk ESS", "ESS/s",
               "max R-hat", "worst z", "div", "cold e2e s", "warm e2e s"]
    rows = []
    for name, res in results.items():
        for s, r in res["systems"].items():
            sm = r.get("summary", {})
            star = "*" if sm.get("warm_first_sample") and s == "ppl" else ""
            rows.append([name, s, status(r),
                         (fmt(sm["sampling_s"]) + star) if sm else None,
                         sm.get("ess_bulk_min"), sm.get("ess_per_s"), sm.get("rhat_max"),
                         sm.get("worst_z"), sm.get("divergences"), sm.get("cold_end_to_end_s"),
                         sm.get("warm_end_to_end_s")])
    print()
    print(table(headers, rows))
    ratio_rows = [[name, *(res["ratios"][k] for k in ("sampling_s", "ess_per_s",
                                                       "cold_end_to_end_s", "warm_end_to_end_s"))]
                  for name, res in results.items() if res.get("ratios")]
    if ratio_rows:
        print()
        print(table(["posterior", "sampling ppl/Stan", "ESS/s ppl/Stan", "cold e2e ppl/Stan",
                     "warm e2e ppl/Stan"], ratio_rows))
        print(f"median ESS/s ratio over {len(ratio_rows)} posterior(s): "
              f"{fmt(median([r[2] for r in ratio_rows]))}")
    for name, res in results.items():
        for s, r in res["systems"].items():
            for f in r.get("summary", {}).get("failures", [])[:8]:
                print(f"  {name} [{s}] {f}")
    if a.markdown:
        print()
        print("| " + " | ".join(headers) + " |")
        print("|" + " --- |" * len(headers))
        for row in rows:
            print("| " + " | ".join(fmt(c) for c in row) + " |")
    load_end = os.getloadavg()
    print(f"\nload average at the end: {load_end}")
    write_json_atomic(a.out, {"config": {**cfg, "reps": a.reps}, "machine": info,
                              "load_at_end": load_end, "posteriors": results})
    print(f"wrote {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
