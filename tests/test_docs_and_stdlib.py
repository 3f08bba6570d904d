"""Every ppl snippet in the docs compiles; the standard library computes what it says."""
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import ppl

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
SNIPPETS = [(p.name, i, m.group(1)) for p in DOCS
            for i, m in enumerate(re.finditer(r"```ppl\n(.*?)```", p.read_text(), re.S))]


@pytest.mark.parametrize("doc,index,source", SNIPPETS, ids=[f"{d}#{i}" for d, i, _ in SNIPPETS])
def test_doc_snippet_compiles(doc, index, source):
    model = ppl.compile(source, f"{doc}#{index}")
    assert model.graph.variables()


def test_there_are_snippets():
    assert len(SNIPPETS) >= 3


def test_stdlib_modules():
    src = """
import gp
import timeseries
data N: int
data x: real[N]
alpha ~ half_normal(1)
K = add_diag(exp_quad(x, 1.5, 0.7), 0.1)
M = matern32(x, 1.0, 2.0)
s = ar1_stationary_sd(0.5, 1.0)
d = difference(x)
w = random_walk(x, 2.0)
"""
    x = np.array([0.0, 1.0, 2.5, 3.0])
    low = ppl.compile(src, "stdlib.ppl").lower({"N": 4, "x": x})
    # values computed from data alone are transformed data, reported once
    v = {**low.evaluate(jnp.zeros(low.dim), low.data_arrays), **low.transformed_data()}
    d2 = (x[:, None] - x[None, :]) ** 2
    np.testing.assert_allclose(v["K"], 2.25 * np.exp(-0.5 * d2 / 0.49) + 0.1 * np.eye(4), rtol=1e-12)
    r = np.sqrt(3 * d2 + 1e-12) / 2.0
    np.testing.assert_allclose(v["M"], (1 + r) * np.exp(-r), rtol=1e-9)
    assert float(v["s"]) == pytest.approx(1 / np.sqrt(0.75))
    np.testing.assert_allclose(v["d"], np.diff(x))
    np.testing.assert_allclose(v["w"], np.cumsum(2.0 * x))


def test_unknown_module_is_a_framed_error():
    with pytest.raises(ppl.PPLError) as e:
        ppl.compile("import gpp\n", "m.ppl")
    assert 'did you mean "gp"?' in e.value.format()
