"""Galaxy mixture with an unknown number of components (Richardson & Green 1997): ppl's MHG
sampler against a straightforward NumPy reversible-jump sampler (anchors/galaxy_rj_numpy.py),
4 chains each, in one run: iterations per second and ESS per second of k.

    python benchmarks/run_galaxy_rj.py                        # 3 rounds, 5000 + 20000 iterations
    python benchmarks/run_galaxy_rj.py --reps 1 --draws 5000  # quick look
    python benchmarks/run_galaxy_rj.py --systems numpy ppl-rw

Systems (same model, same data, same constants):
* ``numpy`` — the anchor: birth/death + a random-walk within-k move, one move per iteration
  chosen with probability 1/2 each; one chain after another.
* ``ppl-rw`` — ppl's MHG with exactly that move mix: derived birth/death + masked random walk on
  the unconstrained coordinates (weights 1:1), 4 chains vmapped.
* ``ppl-nuts`` — ppl's default mix: birth/death + masked NUTS (1:1).
* ``ppl-sm`` — birth/death + RG's split/merge (an `Involution`) + NUTS (1:1:1).
* ``ppl-rw-sm`` — birth/death + split/merge + random walk (1:1:1).
* ``ppl-lang-rw``, ``ppl-lang-nuts`` — the `mhg` pass on examples/galaxy.ppl (the padded model
  read from the language's IR) with the random-walk / NUTS mix.
* ``ppl-lang-sm-rw``, ``ppl-lang-sm-nuts`` — the same with the stdlib split/merge written in the
  language (`move split_merge_precision(k, w, mu, tau, k_max)` added to galaxy.ppl; weights
  1:1:1 with birth/death and the within move).

ppl's padded model is the hand-written one of the tests (tests/algorithms/mhg_models.py) until
the language lowers `examples/galaxy.ppl` to it: `ppl_sampler` is the one place to adapt.

Per system and round: sampling time (after warm-up; ppl's first round also reports warm-up with
compilation), iterations per second (chains × draws / time), bulk ESS of k (arviz, 4 chains),
ESS of k per second, acceptance per move. Rounds are interleaved in a random order; medians
over rounds. `uptime` (load average) is recorded before and after every round: other agents
share this 2-core machine. Results: a table and ``benchmarks/results/galaxy_rj.json``.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import (RESULTS, ROOT, Worker, machine_info, median, table,  # noqa: E402
                     write_json_atomic)

ALL_SYSTEMS = ["numpy", "ppl-rw", "ppl-nuts", "ppl-sm", "ppl-rw-sm", "ppl-lang-rw", "ppl-lang-nuts",
               "ppl-lang-sm-rw", "ppl-lang-sm-nuts"]
# the line that adds Richardson & Green's split/merge (stdlib/mixtures.ppl) to examples/galaxy.ppl
SPLIT_MERGE_LINE = "move split_merge_precision(k, w, mu, tau, k_max)\n"


def load_avg():
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------ ppl's columns
def ppl_sampler(system: str):
    """(sampler, data) for one of ppl's configurations."""
    import ppl  # noqa: F401,PLC0415
    from ppl.algorithms import mhg  # noqa: PLC0415
    from ppl.algorithms.involutions import normal_mixture_split_merge  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "tests" / "algorithms"))
    import mhg_models  # noqa: PLC0415

    within = "random_walk" if system.startswith("ppl-rw") or system.endswith("-rw") else "nuts"
    if system.startswith("ppl-lang"):  # the model as the user writes it: examples/galaxy.ppl
        from ppl.passes.mhg import MHGPass  # noqa: PLC0415
        path = ROOT / "examples" / "galaxy.ppl"
        source = path.read_text() + (SPLIT_MERGE_LINE if "-sm-" in system else "")
        lowered = ppl.compile(source, str(path)).lower(
            str(ROOT.parent / "shared" / "data" / "rjmcmc" / "galaxy.json"), "mhg")
        program = MHGPass().build(lowered, {"within": within})
        return program.sampler, lowered.data_arrays
    model, data = mhg_models.galaxy()
    moves = mhg.default_moves(model, within=within)
    if system.endswith("-sm"):
        moves.append((mhg.InvolutiveMove(model, normal_mixture_split_merge(
            model, "k", "w", "mu", precisions="tau")), 1.0))
    return mhg.MHG(model, moves), data


def ess_k(k: np.ndarray) -> float:
    import arviz as az  # noqa: PLC0415
    return float(az.ess(np.asarray(k, float)))


class PPLSystem:
    def __init__(self, name, chains, warmup, draws):
        self.name, self.chains, self.warmup, self.draws = name, chains, warmup, draws
        self.sampler, self.data = ppl_sampler(name)
        self.first = None

    def run(self, seed):
        from ppl.lower.random import rng_key  # noqa: PLC0415
        res = self.sampler.run(rng_key(seed), self.data, chains=self.chains, draws=self.draws,
                               warmup=self.warmup)
        if self.first is None:
            self.first = dict(res.seconds)
        k = res.sizes["k"]
        return {"seconds": res.seconds["sampling"], "warmup_seconds": res.seconds["warmup"],
                "k": k, "acceptance": res.acceptance(),
                "trouble": int(res.trouble.sum())}


class NumpySystem:
    def __init__(self, chains, warmup, draws):
        self.chains, self.warmup, self.draws = chains, warmup, draws
        (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
        self.worker = Worker([sys.executable, str(HERE / "anchors" / "galaxy_rj_numpy.py"), "--serve"],
                             name="numpy", stderr_path=RESULTS / "logs" / "galaxy_rj_numpy.log")

    def run(self, seed):
        r = self.worker.call(cmd="run", seed=seed, chains=self.chains, warmup=self.warmup, draws=self.draws)
        return {"seconds": r["seconds"], "k": np.asarray(r["k"]), "acceptance": r["acceptance"]}

    def close(self):
        self.worker.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", nargs="*", default=["numpy", "ppl-rw", "ppl-nuts", "ppl-sm"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=5_000)
    ap.add_argument("--draws", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=RESULTS / "galaxy_rj.json")
    args = ap.parse_args(argv)
    info = machine_info()
    systems = {}
    for name in args.systems:
        if name == "numpy":
            systems[name] = NumpySystem(args.chains, args.warmup, args.draws)
        else:
            t = time.perf_counter()
            systems[name] = PPLSystem(name, args.chains, args.warmup, args.draws)
            print(f"{name}: built in {time.perf_counter() - t:.1f} s", flush=True)
    rounds = []
    rng = random.Random(0)
    try:
        for rep in range(args.reps):
            order = list(systems)
            rng.shuffle(order)
            for name in order:
                before = load_avg()
                r = systems[name].run(seed=1000 * rep + 7)
                after = load_avg()
                ess = ess_k(r["k"])
                row = {"system": name, "round": rep, "seconds": r["seconds"],
                       "iterations_per_s": args.chains * args.draws / r["seconds"],
                       "ess_k": ess, "ess_k_per_s": ess / r["seconds"], "mean_k": float(np.mean(r["k"])),
                       "p_k": {int(v): float(np.mean(r["k"] == v)) for v in np.unique(r["k"])},
                       "acceptance": r["acceptance"], "load_before": before, "load_after": after}
                if "warmup_seconds" in r:
                    row["warmup_seconds"] = r["warmup_seconds"]
                    row["trouble"] = r["trouble"]
                rounds.append(row)
                print(f"round {rep} {name:9s} {r['seconds']:8.2f} s  {row['iterations_per_s']:10,.0f} it/s  "
                      f"ESS(k) {ess:7.1f}  ESS/s {row['ess_k_per_s']:8.2f}  E[k] {row['mean_k']:.2f}  "
                      f"acc {', '.join(f'{k} {v:.3f}' for k, v in r['acceptance'].items())}  "
                      f"load {before[0]:.1f}→{after[0]:.1f}", flush=True)
    finally:
        for s in systems.values():
            if isinstance(s, NumpySystem):
                s.close()
    summary = {}
    for name in systems:
        rs = [r for r in rounds if r["system"] == name]
        summary[name] = {"seconds": median([r["seconds"] for r in rs]),
                         "iterations_per_s": median([r["iterations_per_s"] for r in rs]),
                         "ess_k": median([r["ess_k"] for r in rs]),
                         "ess_k_per_s": median([r["ess_k_per_s"] for r in rs]),
                         "mean_k": median([r["mean_k"] for r in rs])}
        if isinstance(systems[name], PPLSystem):
            summary[name]["first_call"] = systems[name].first
    base = summary.get("numpy")
    rows = []
    for name, s in summary.items():
        paired_it, paired_ess = [], []
        if base and name != "numpy":
            for rep in range(args.reps):
                a = next((r for r in rounds if r["system"] == name and r["round"] == rep), None)
                b = next((r for r in rounds if r["system"] == "numpy" and r["round"] == rep), None)
                if a and b:
                    paired_it.append(a["iterations_per_s"] / b["iterations_per_s"])
                    paired_ess.append(a["ess_k_per_s"] / b["ess_k_per_s"])
        s["ratio_iterations_per_s"] = median(paired_it) if paired_it else None
        s["ratio_ess_k_per_s"] = median(paired_ess) if paired_ess else None
        rows.append([name, s["seconds"], s["iterations_per_s"], s["ess_k"], s["ess_k_per_s"], s["mean_k"],
                     s["ratio_iterations_per_s"], s["ratio_ess_k_per_s"]])
    print()
    print(f"{args.chains} chains × ({args.warmup} warm-up + {args.draws} draws), {args.reps} rounds; "
          f"load average at start {info.get('loadavg_at_start')}, at end {load_avg()}")
    print(table(["system", "sampling s", "it/s", "ESS(k)", "ESS(k)/s", "E[k]", "it/s ÷ numpy",
                 "ESS/s ÷ numpy"], rows))
    write_json_atomic(args.out, {"machine": info, "args": vars(args), "rounds": rounds, "summary": summary,
                                 "load_at_end": load_avg()})


if __name__ == "__main__":
    main()
