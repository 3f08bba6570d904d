"""Eight-schools worker for the systems that live in the main environment: ppl and NumPyro.

    python benchmarks/workers/eight_schools.py ppl
    python benchmarks/workers/eight_schools.py numpyro-vectorized
    python benchmarks/workers/eight_schools.py numpyro-sequential

Spoken to over JSON lines by ``run_eight_schools.py`` with the same commands as the Stan worker
(``build``, ``sample``); see ``anchors/stan_eight_schools.py``. Compile caches come from the
environment the orchestrator gives: ``PPL_CACHE_DIR`` for ppl, ``JAX_COMPILATION_CACHE_DIR``
for NumPyro (JAX's persistent cache, so NumPyro gets the same warm-start help ppl has).

Everything runs in double precision (ppl enables ``jax_enable_x64``; Stan is double; NumPyro is
switched to x64 here to match).
"""
from __future__ import annotations

import time

T_START_WALL = time.time()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import ROOT, SHARED_DATA, serve  # noqa: E402

DATA_PATH = SHARED_DATA / "posteriordb" / "eight_schools-eight_schools_noncentered" / "data.json"
PPL_MODEL = ROOT / "examples" / "eight_schools.ppl"

SYSTEM = sys.argv[1] if len(sys.argv) > 1 else "ppl"
_state: dict = {}


# ------------------------------------------------------------------------------------ ppl
# ppl's whole side is these two functions: adapt here if the public API moves.
def ppl_build(data: dict):
    import ppl  # noqa: PLC0415

    return ppl.load(str(PPL_MODEL))


def ppl_sample(model, data: dict, seed: int, chains: int, draws: int, warmup: int):
    """Returns (mu[chain, draw], tau[chain, draw], number of divergences)."""
    idata = model.sample(data, method="nuts", chains=chains, draws=draws, warmup=warmup,
                         seed=seed)
    post = idata.posterior
    div = int(idata.sample_stats["diverging"].values.sum()) if "diverging" in idata.sample_stats \
        else -1
    return post["mu"].values, post["tau"].values, div


# -------------------------------------------------------------------------------- numpyro
def numpyro_build(data: dict, chain_method: str, chains: int, draws: int, warmup: int):
    import jax.numpy as jnp  # noqa: PLC0415
    import numpyro  # noqa: PLC0415
    import numpyro.distributions as dist  # noqa: PLC0415
    from numpyro.infer import MCMC, NUTS  # noqa: PLC0415

    numpyro.enable_x64()

    def model(J, sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", J):
            theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
            theta = numpyro.deterministic("theta", mu + tau * theta_raw)
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    mcmc = MCMC(NUTS(model), num_warmup=warmup, num_samples=draws, num_chains=chains,
                chain_method=chain_method, progress_bar=False)
    args = (int(data["J"]), jnp.asarray(data["sigma"], dtype=jnp.float64),
            jnp.asarray(data["y"], dtype=jnp.float64))
    return mcmc, args


def numpyro_sample(mcmc_args, seed: int):
    import jax  # noqa: PLC0415

    mcmc, args = mcmc_args
    mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=("diverging",))
    s = mcmc.get_samples(group_by_chain=True)
    mu, tau = jax.device_get((s["mu"], s["tau"]))
    div = int(mcmc.get_extra_fields()["diverging"].sum())
    return mu, tau, div


# ------------------------------------------------------------------------------- protocol
def handle(req: dict) -> dict:
    data = json.loads(DATA_PATH.read_text())
    chains, draws, warmup = req.get("chains", 4), req.get("draws", 1000), req.get("warmup", 1000)
    if req["cmd"] == "build":
        t = time.perf_counter()
        if SYSTEM == "ppl":
            _state["model"] = ppl_build(data)
        elif SYSTEM.startswith("numpyro-"):
            _state["model"] = numpyro_build(data, SYSTEM.split("-", 1)[1], chains, draws, warmup)
        else:
            raise ValueError(f"unknown system {SYSTEM!r}")
        return {"build_s": time.perf_counter() - t, "t_done_wall": time.time(),
                "since_start_s": time.time() - T_START_WALL}
    if req["cmd"] == "sample":
        seed = int(req["seed"])
        t = time.perf_counter()
        if SYSTEM == "ppl":
            mu, tau, div = ppl_sample(_state["model"], data, seed, chains, draws, warmup)
        else:
            mu, tau, div = numpyro_sample(_state["model"], seed)
        sample_s = time.perf_counter() - t
        return {"sample_s": sample_s, "t_done_wall": time.time(), "divergences": div,
                "draws": {"mu": mu.tolist(), "tau": tau.tolist()}}
    raise ValueError(f"unknown command {req['cmd']!r}")


if __name__ == "__main__":
    serve(handle)
