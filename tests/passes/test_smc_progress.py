"""Progress from smc programs compiled as one call (ppl/passes/smc.py, issue 12): with a live
bar the particle Gibbs iterations are counted from inside the compiled run; without one the
stages are named. Tiny sizes: the point is the report, not the posterior."""
import io

import numpy as np
import pytest

import ppl
from ppl.runtime.progress import Progress

AR = """
data T: int
data y: real[T]
a ~ normal(0, 1)
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(a * x[t-1], 1) }
for t in 1:T { y[t] ~ normal(x[t], 1) }
"""
RUN = dict(method="smc", chains=2, draws=30, warmup=30, particles=16, seed=0, validate=False)


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


@pytest.fixture(scope="module")
def model():
    return ppl.compile(AR, "ar.ppl"), {"T": 12, "y": np.sin(np.arange(12.0)).tolist()}


@pytest.mark.slow  # the variant with host callbacks is never in JAX's persistent cache
def test_live_bar_counts_particle_gibbs_iterations(model):
    m, data = model
    err = Stream(tty=True)
    m.sample(data, progress=Progress("smc", stream=err, min_seconds=0.0), **RUN)
    counts = [int(c) for c in __import__("re").findall(r"\] +\d+% (\d+)/120 particle Gibbs",
                                                       err.getvalue())]
    assert counts and counts == sorted(counts) and counts[-1] == 120  # 2 chains × 60 iterations
    assert "generated quantities and log-likelihood" in err.getvalue()


def test_without_a_terminal_the_stages_are_named(model):
    m, data = model
    err = Stream(tty=False)
    m.sample(data, progress=Progress("smc", stream=err, every=3600), **RUN)
    lines = err.getvalue().splitlines()
    assert lines[0] == "smc: compiling…" and lines[1].startswith("smc: compiled in ")
    assert lines[2].startswith("smc: particle Gibbs, 120 iterations (all chains), ")
    assert any(ln.startswith("smc: log evidence (importance sampling") for ln in lines)
    assert lines[-1].startswith("smc: done, ")
