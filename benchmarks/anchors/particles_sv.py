"""``particles`` anchor for the SV bootstrap filter: a worker run with the ``particles`` venv's
python (particles 0.4, numpy < 2).

The model is written out here (rather than taken from ``particles``' own examples) so that it is
visibly the DESIGN §2 ``sv.ppl`` model with fixed parameters:
    x[1] ~ N(mu, s / sqrt(1 - phi²)),  x[t] ~ N(mu + phi (x[t-1] - mu), s),  y[t] ~ N(0, exp(x[t]/2)).

Commands (JSON lines, see ``_common.serve``):
* ``{"cmd": "run", "N": n, "seed": s, "resampling": "adaptive"|"every"}`` → one bootstrap
  filter with systematic resampling (``ESSrmin`` 0.5 for adaptive, 1.0 for every step);
  answers ``log_z``, ``run_s`` (``time.perf_counter`` around ``SMC.run``) and ``cpu_s``
  (``time.process_time``: the work itself on a shared machine).

Standalone check:  benchmarks/.venvs/particles/bin/python benchmarks/anchors/particles_sv.py --once
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import SHARED_DATA, serve  # noqa: E402

import particles  # noqa: E402
from particles import distributions as dists  # noqa: E402
from particles import state_space_models as ssm  # noqa: E402

MU, PHI, S = -1.02432, 0.9702, 0.178


class SV(ssm.StateSpaceModel):
    """Stochastic volatility, DESIGN §2 parameterisation."""

    default_params = {"mu": MU, "phi": PHI, "s": S}

    def PX0(self):  # noqa: N802 — particles' naming
        return dists.Normal(loc=self.mu, scale=self.s / np.sqrt(1.0 - self.phi ** 2))

    def PX(self, t, xp):  # noqa: N802
        return dists.Normal(loc=self.mu + self.phi * (xp - self.mu), scale=self.s)

    def PY(self, t, xp, x):  # noqa: N802
        return dists.Normal(loc=0.0, scale=np.exp(0.5 * x))


Y = np.asarray(json.loads((SHARED_DATA / "ssm" / "gbp_usd_1997_1999_returns.json").read_text())["y"],
               dtype=float)


def run_filter(n: int, seed: int, resampling: str = "adaptive",
               mu: float = MU, phi: float = PHI, s: float = S) -> tuple[float, float]:
    fk = ssm.Bootstrap(ssm=SV(mu=mu, phi=phi, s=s), data=Y)
    np.random.seed(seed)  # particles draws from numpy's global generator
    pf = particles.SMC(fk=fk, N=int(n), resampling="systematic",
                       ESSrmin=1.0 if resampling == "every" else 0.5,
                       store_history=False, collect=None, verbose=False)
    t, c = time.perf_counter(), time.process_time()
    pf.run()
    dt = time.perf_counter() - t
    return float(pf.logLt), dt, time.process_time() - c


def handle(req: dict) -> dict:
    if req["cmd"] == "run":
        log_z, dt, cpu = run_filter(req["N"], req["seed"], req.get("resampling", "adaptive"))
        return {"log_z": log_z, "run_s": dt, "cpu_s": cpu}
    if req["cmd"] == "versions":
        return {"particles": getattr(particles, "__version__", "?"), "numpy": np.__version__}
    raise ValueError(f"unknown command {req['cmd']!r}")


if __name__ == "__main__":
    if "--once" in sys.argv:
        for n in (100, 1000):
            zs = [run_filter(n, i) for i in range(10)]
            lz = [z for z, _, _ in zs]
            print(f"N={n}: log Z mean {np.mean(lz):.3f} sd {np.std(lz, ddof=1):.3f}, "
                  f"median {np.median([t for _, t, _ in zs]) * 1e3:.1f} ms")
    else:
        serve(handle)
