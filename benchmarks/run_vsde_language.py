"""The vsde pass's compiled problem against the hand-written one: time per ELBO gradient step.

The pass evaluates the model file's drift, diffusion and likelihood through the interpreter
while tracing; after `jit` the step should cost what the hand-written JAX problem costs. Same
engine, same options (64 paths, Heun, dt = 0.01), same seed; steps timed in blocks of 50 in one
`lax.scan`, alternating the two so machine load affects both alike.

    PYTHONPATH=. python benchmarks/run_vsde_language.py  [--repeats 5]
"""
import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.algorithms import latent_sde as L
from ppl.lower.process import ProcessModel

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PPL_SHARED_DATA", ROOT.parent.parent / "shared" / "data"))


def hand_written(d):
    y, sd = jnp.asarray(d["y"]), d["obs_sd"]
    th, mu, sig = d["theta"], d["mu"], d["sigma"]

    def loglik(xs, _):
        return jnp.sum(-0.5 * ((y - xs[:, 0]) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi))

    return L.LatentSDEProblem(
        state_dim=1, drift=lambda t, x, _: th * (mu - x), diffusion=lambda t, x, _: jnp.full((1,), sig),
        x0=L.GaussianInit(jnp.array([d["x0_mean"]]), jnp.array([d["x0_sd"]])), obs_times=d["t"],
        log_likelihood=loglik, t_end=d["t_end"], context=np.asarray(d["y"])[:, None])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--block", type=int, default=50)
    args = ap.parse_args()
    d = json.loads((SHARED / "sde" / "ou_gaussian.json").read_text())
    keys = ["N", "t", "y", "theta", "mu", "sigma", "x0_mean", "x0_sd", "obs_sd", "t_end"]
    model = ppl.load(ROOT / "examples" / "sde_ou.ppl")
    lang = ProcessModel(model.lower({k: d[k] for k in keys}, "vsde")).problem()
    opts = L.Options()
    algos = {"hand-written": L.build(hand_written(d), opts), "model file": L.build(lang, opts)}
    states, times = {}, {k: [] for k in algos}
    ks = jax.random.split(jax.random.key(0), args.block)
    for name, algo in algos.items():
        t0 = time.perf_counter()
        st, m = algo.run(algo.init(jax.random.key(1)), ks)
        jax.block_until_ready(m["elbo"])
        states[name] = st
        print(f"{name}: compile + first {args.block} steps {time.perf_counter() - t0:.1f} s")
    for _ in range(args.repeats):
        for name, algo in algos.items():
            t0 = time.perf_counter()
            st, m = algo.run(states[name], ks)
            jax.block_until_ready(m["elbo"])
            times[name].append((time.perf_counter() - t0) / args.block)
    for name, v in times.items():
        print(f"{name}: {1e3 * np.median(v):.2f} ms per step (median of {len(v)} blocks; "
              f"min {1e3 * np.min(v):.2f})")
    r = np.median(times["model file"]) / np.median(times["hand-written"])
    print(f"ratio model file / hand-written: {r:.2f}")
    print("load:", os.getloadavg())


if __name__ == "__main__":
    main()
