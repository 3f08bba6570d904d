"""Checker: what each name is (data, param, latent, deterministic, generated), observed data,
element-wise latents, and warnings."""
from __future__ import annotations

import pytest

from ppl.check.checker import check
from ppl.syntax.errors import PPLCheckError
from ppl.syntax.parser import parse


def checked(src: str):
    return check(parse(src, "m.ppl"))


def kinds(c):
    return {n: v.kind for n, v in c.variables.items()}


EIGHT_SCHOOLS = """\
data J: int<lower=1>
data y: real[J]
data sigma: real<lower=0>[J]
mu ~ normal(0, 5)
tau ~ half_cauchy(5)
theta_raw: real[J] ~ normal(0, 1)
theta = mu + tau * theta_raw
y ~ normal(theta, sigma)
"""


def test_variable_kinds_eight_schools():
    c = checked(EIGHT_SCHOOLS)
    assert kinds(c) == {"J": "data", "y": "data", "sigma": "data", "mu": "latent", "tau": "latent",
                        "theta_raw": "latent", "theta": "deterministic"}
    assert c.variables["y"].observed
    assert not c.variables["sigma"].observed and not c.variables["J"].observed
    assert c.variables["theta_raw"].ty.rank == 1
    assert c.variables["J"].ty.base == "int"
    assert c.warnings == []


def test_params_and_generated():
    c = checked("data N: int\ndata y: real[N]\nparam beta: real\nparam sigma: real<lower=0>\n"
                "target += normal_lpdf(y | beta, sigma)\n"
                "generated {\n  y_rep ~ normal(beta, sigma)\n  m = 2 * beta\n}\n")
    k = kinds(c)
    assert k["beta"] == k["sigma"] == "param"
    assert k["y_rep"] == k["m"] == "generated"
    assert not c.variables["y"].observed  # used in target +=, not drawn with ~


def test_elementwise_latent_sv():
    c = checked("data T: int\ndata y: real[T]\nmu ~ normal(0, 5)\ns ~ half_normal(1)\nx: real[T]\n"
                "x[1] ~ normal(mu, s)\nfor t in 2:T {\n  x[t] ~ normal(x[t-1], s)\n}\n"
                "for t in 1:T {\n  y[t] ~ normal(0, exp(x[t] / 2))\n}\n")
    x = c.variables["x"]
    assert x.kind == "latent" and x.elementwise and len(x.defined_by) == 2
    assert c.variables["y"].observed and c.variables["y"].elementwise is False


def test_typed_deterministic_array():
    c = checked("data N: int\nmu ~ normal(0, 1)\nz: real[N]\nfor n in 1:N {\n  z[n] = mu * n\n}\n")
    assert c.variables["z"].kind == "deterministic" and c.variables["z"].elementwise


def test_warning_unused_data():
    c = checked("data N: int\ndata unused: real\nmu ~ normal(0, 1)\ny: real[N] ~ normal(mu, 1)\n")
    msgs = [w.message for w in c.warnings]
    assert msgs == ['data "unused" is declared but never used']
    text = c.warnings[0].format(c.program.source, "m.ppl")
    assert text.startswith("m.ppl:2:6: warning:")


def test_warning_latent_without_distribution():
    c = checked("x: real\ny ~ normal(x, 1)\n")
    assert any('latent "x" is declared but never given a distribution' in w.message for w in c.warnings)
    assert c.variables["x"].kind == "param"  # an improper flat prior, like a param


def test_function_and_local_values():
    c = checked("def sq(x: real) -> real {\n  y = x * x\n  return y\n}\nmu ~ normal(0, 1)\nz = sq(mu)\n")
    assert "sq" in c.functions and kinds(c)["z"] == "deterministic"


@pytest.mark.parametrize("src, words", [
    ("mu ~ normal(0, 1)\nmu ~ normal(0, 2)\n", "already has a distribution"),
    ("data y: real\ny = 1\n", 'cannot assign to "y"'),
    ("z = w + 1\nw ~ normal(0, 1)\n", "used before it is defined"),
    ("mu ~ normall(0, 1)\n", 'unknown distribution "normall"'),
    ("generated {\n  g ~ normal(0, 1)\n}\nz ~ normal(g, 1)\n", "generated quantity"),
    ("data y: real\ny ~ poisson(1)\n", "distribution over integers"),
    ("data y: real<lower=0, lower=1>\n", "given twice"),
    ("data N: int\nfor n in 1:N {\n  n ~ normal(0, 1)\n}\n", "loop variable"),
])
def test_check_errors(src, words):
    with pytest.raises(PPLCheckError) as info:
        checked(src)
    assert words in info.value.message
    assert info.value.span is not None and info.value.span.line > 0
