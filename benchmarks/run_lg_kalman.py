"""ppl's marginalised filter on the linear-Gaussian T = 10⁴ model (../shared/data/ssm/
linear_gaussian_T10000.json): the smc pass finds the chain linear-Gaussian and runs a Kalman
filter inside it, so the log evidence is exact. Prints the median time per run — through
`model.sample` (binding data, InferenceData) and through the compiled program alone — and the
log evidence against the data README's −37264.2543.

    python benchmarks/run_lg_kalman.py [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import SHARED_DATA  # noqa: E402

REFERENCE = -37264.2543444
MODEL = """
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(0.8 * x[t-1], 1) }
for t in 1:T { y[t] ~ normal(10 * x[t], 0.1) }
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args(argv)
    path = SHARED_DATA / "ssm" / "linear_gaussian_T10000.json"
    if not path.exists():
        print(f"skipped: {path} not found (the shared data sets live in ../shared)")
        return 0
    d = json.loads(path.read_text())
    import ppl
    from ppl.passes import PASSES

    model = ppl.compile(MODEL)
    data = {"T": d["T"], "y": d["y"]}
    opts = dict(method="smc", chains=1, draws=0, validate=False)
    t = time.perf_counter()
    idata = model.sample(data, **opts)
    first = time.perf_counter() - t
    log_z = float(idata.sample_stats["log_evidence"].values.ravel()[0])
    sample_s = []
    for seed in range(a.runs):
        t = time.perf_counter()
        model.sample(data, seed=seed, **opts)
        sample_s.append(time.perf_counter() - t)
    lowered = model.lower(data, "smc")
    program = PASSES["smc"].build(lowered, dict(chains=1, draws=0, warmup=0))
    program.run(lowered.data_arrays, seed=0)
    run_s = []
    for seed in range(a.runs):
        t = time.perf_counter()
        program.run(lowered.data_arrays, seed=seed)
        run_s.append(time.perf_counter() - t)
    print(f"linear-Gaussian T={d['T']}: {type(program).__name__}")
    print(f"  first call (compile + run)   {first:8.3f} s")
    print(f"  model.sample, median of {a.runs}  {statistics.median(sample_s) * 1e3:8.2f} ms")
    print(f"  program.run,  median of {a.runs}  {statistics.median(run_s) * 1e3:8.2f} ms")
    print(f"  log evidence {float(log_z):.6f} (reference {REFERENCE}; difference "
          f"{float(log_z) - REFERENCE:+.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
