"""The hmm_example posterior (posteriordb) two ways in ppl: Stan's forward algorithm written
element by element (``examples/posteriordb/hmm_example-hmm_example.ppl``: nested loops filling
``gamma[t, k]``) against the same model with its discrete states written out and summed out by
ppl itself (``examples/hmm.ppl``: the marginalising rewrite's forward algorithm). Issue 11's
target: the element-by-element form within 2x of the summed-out one.

    python benchmarks/run_hmm_forward.py                 # gradient timing + one NUTS run each
    python benchmarks/run_hmm_forward.py --no-sample     # gradient timing only

Per form: time of one jitted log-density gradient (median of --reps batches of --calls calls,
after compilation), the first call (trace + compile), and with sampling one
``model.sample`` of 4 x 1000 + 1000 (after a first, compiling call of the same shape) with its
min bulk ESS over mu and theta. Both densities are checked equal up to the constant log K
(the summed-out form starts from a uniform categorical; Stan's from no initial distribution)
at random points before anything is timed. The load average is printed at start and end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, SHARED_DATA, write_json_atomic  # noqa: E402

FORMS = {
    "element-by-element": ROOT / "examples" / "posteriordb" / "hmm_example-hmm_example.ppl",
    "summed-out": ROOT / "examples" / "hmm.ppl",
}
DATA = SHARED_DATA / "posteriordb" / "hmm_example-hmm_example" / "data.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)

    import jax
    import numpy as np

    import ppl

    data = json.loads(DATA.read_text())
    print(f"hmm forward: N = {data['N']}, K = {data['K']}; load {os.getloadavg()}", flush=True)
    out: dict = {"load_at_start": os.getloadavg(), "forms": {}}
    models, lowered, grads = {}, {}, {}
    for form, path in FORMS.items():
        models[form] = ppl.load(path)
        low = lowered[form] = models[form].lower(data, "nuts")
        grads[form] = jax.jit(jax.value_and_grad(lambda u, d, low=low: low.log_density(u, d)))
    dims = {f: low.dim for f, low in lowered.items()}
    assert len(set(dims.values())) == 1, dims
    # the same density up to log K (see the docstring)
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = rng.uniform(-2, 2, size=dims["summed-out"])
        a_, b_ = (float(lowered[f].log_density(u, lowered[f].data_arrays)) for f in FORMS)
        assert abs((a_ - np.log(data["K"])) - b_) < 1e-8 * max(1.0, abs(b_)), (a_, b_)
    for form in FORMS:
        g, d = grads[form], lowered[form].data_arrays
        u = jax.numpy.asarray(rng.uniform(-2, 2, size=dims[form]))
        t = time.perf_counter()
        jax.block_until_ready(g(u, d))
        first = time.perf_counter() - t
        per = []
        for _ in range(a.reps):
            t = time.perf_counter()
            for _ in range(a.calls):
                r = g(u, d)
            jax.block_until_ready(r)
            per.append((time.perf_counter() - t) / a.calls)
        out["forms"][form] = {"gradient_ms": 1e3 * statistics.median(per),
                              "first_gradient_s": first}
        print(f"  {form}: {1e3 * statistics.median(per):.4f} ms per gradient "
              f"(first call {first:.2f} s)", flush=True)
    r = out["forms"]["element-by-element"]["gradient_ms"] / out["forms"]["summed-out"]["gradient_ms"]
    out["gradient_ratio"] = r
    print(f"  gradient time element-by-element / summed-out: {r:.2f}", flush=True)

    if not a.no_sample:
        import arviz as az

        for form, model in models.items():
            t = time.perf_counter()
            model.sample(data, method="nuts", chains=4, draws=1000, warmup=1000, seed=a.seed)
            first = time.perf_counter() - t
            t = time.perf_counter()
            idata = model.sample(data, method="nuts", chains=4, draws=1000, warmup=1000,
                                 seed=a.seed + 1)
            s = time.perf_counter() - t
            post = idata.posterior
            ess = min(float(np.min(az.ess(post[v], method="bulk").to_array().values))
                      for v in ("mu", "theta") if v in post)
            out["forms"][form].update(sample_s=s, first_sample_s=first, ess_bulk_min=ess,
                                      ess_per_s=ess / s)
            print(f"  {form}: sampling {s:.2f} s (first call {first:.1f} s), min bulk ESS "
                  f"{ess:.0f}, ESS/s {ess / s:.1f}", flush=True)
        e, m = (out["forms"][f] for f in FORMS)
        out["sampling_ratio"] = e["sample_s"] / m["sample_s"]
        print(f"  sampling time element-by-element / summed-out: {out['sampling_ratio']:.2f}")
    out["load_at_end"] = os.getloadavg()
    print(f"load at the end {out['load_at_end']}")
    write_json_atomic(RESULTS / "hmm_forward.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
