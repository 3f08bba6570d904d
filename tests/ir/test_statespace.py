"""The state-space analysis: what it finds, and why it refuses other models."""
from pathlib import Path

import pytest

import ppl
from ppl.ir.statespace import NotStateSpace, analyze

ROOT = Path(__file__).resolve().parents[2]

LG = """
data T: int
data y: real[T]
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(0.9 * x[t-1], 1) }
for t in 1:T { y[t] ~ normal(x[t], 0.2) }
"""


def form(src):
    return analyze(ppl.compile(src).graph)


def reason(src):
    with pytest.raises(NotStateSpace) as e:
        form(src)
    return e.value.reason


def test_sv_is_a_state_space_model():
    f = analyze(ppl.load(ROOT / "examples" / "sv.ppl").graph)
    assert f.state_vars == ("x",)
    assert [s.line for s in f.init] == [9]
    assert [s.line for s in f.transition] == [11]
    assert [s.line for s in f.observations] == [14]
    assert set(f.params) == {"mu", "phi", "s"}
    assert not f.linear_gaussian and not f.guided  # y's scale depends on the state


def test_linear_gaussian_detected():
    f = form(LG)
    assert f.linear_gaussian and f.guided
    assert f.transition[0].lags == (("x", 1),)


def test_fused_loop_two_states_and_partial_observations():
    f = form("""
data T: int
data y: real[T]
data z: real[T]
x: real[T]
v: real[T]
x[1] ~ normal(0, 1)
v[1] ~ normal(x[1], 1)
y[1] ~ normal(x[1] + v[1], 1)
for t in 2:T {
  x[t] ~ normal(0.5 * x[t-1] + 0.1 * v[t-1], 1)
  v[t] ~ normal(v[t-1], exp(x[t]))
  y[t] ~ normal(x[t], 1)
}
for t in 3:T { z[t] ~ normal(2 * v[t], 0.5) }
""")
    assert f.state_vars == ("x", "v")
    assert [s.target for s in f.init] == ["x", "v"]
    assert [s.target for s in f.observations] == ["y", "y", "z"]
    assert not f.linear_gaussian  # v's scale depends on x


def test_linear_gaussian_with_two_states():
    f = form("""
data T: int
data y: real[T]
x: real[T]
v: real[T]
x[1] ~ normal(0, 1)
v[1] ~ normal(0, 1)
for t in 2:T {
  x[t] ~ normal(x[t-1] + 0.1 * v[t-1], 0.1)
  v[t] ~ normal(0.9 * v[t-1], 0.3)
}
for t in 1:T { y[t] ~ normal(x[t] - v[t] / 2, 0.5) }
""")
    assert f.linear_gaussian and not f.guided  # guided: one scalar state only


def test_not_state_space_reasons_name_variable_and_line():
    assert "no latent is defined element by element" in reason(
        (ROOT / "examples" / "eight_schools.ppl").read_text())
    r = reason(LG.replace("x[t-1]", "x[t-2]"))
    assert '"x" (line 6)' in r and "index other than" in r
    r = reason(LG.replace("for t in 1:T { y[t] ~ normal(x[t], 0.2) }",
                          "y ~ normal(x, 0.2)"))
    assert 'line 7 uses the state variable "x"' in r
    r = reason(LG.replace("x[1] ~ normal(0, 1)\n", ""))
    assert 'state variable "x" (line 4) has no initial statement' in r
    r = reason(LG.replace("for t in 1:T { y[t] ~ normal(x[t], 0.2) }",
                          "for t in 2:T { y[t] ~ normal(x[t-1], 0.2) }"))
    assert "line 7" in r and "previous step" in r


def test_improper_param_stops_smc():
    m = ppl.compile(LG.replace("x: real[T]", "param a: real\nx: real[T]")
                    .replace("0.9 * x", "a * x"))
    d = ppl.passes.passes()["smc"].diagnose(m.graph)
    assert not d and '"a" (line 4)' in d.reason and "flat prior" in d.reason
