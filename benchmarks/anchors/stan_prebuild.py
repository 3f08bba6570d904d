"""Build the posteriordb Stan programs into httpstan's cache ahead of a benchmark run
(``run_posteriordb.py --stan-cache DIR``), one after another, in the ``stan`` venv:

    XDG_CACHE_HOME=DIR benchmarks/.venvs/stan/bin/python benchmarks/anchors/stan_prebuild.py NAME…

httpstan keys a built model by its program text, so the benchmark's ``stan.build`` of the same
program then loads it instead of compiling C++. Start the benchmark on a posterior only once
its build here is done: two processes building one model into one cache collide (httpstan
reads a half-written model directory).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import SHARED_DATA  # noqa: E402

import aiohttp.client  # noqa: E402
import stan  # noqa: E402

# no 5-minute limit on a build (see stan_posteriordb.py)
aiohttp.client.DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60)

for name in sys.argv[1:]:
    t = time.perf_counter()
    data = json.loads((SHARED_DATA / "posteriordb" / name / "data.json").read_text())
    stan.build((HERE / "posteriordb" / f"{name}.stan").read_text(), data=data, random_seed=1)
    print(f"{name}: built in {time.perf_counter() - t:.1f} s", flush=True)
