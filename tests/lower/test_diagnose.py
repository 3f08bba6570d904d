"""The model's problems reported as the model's: run-time index checks, argument domains, and
translation validation that takes NaN against NaN for agreement."""
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.lower.validation import check_agreement, validate_density
from ppl.syntax.errors import PPLInternalError, PPLRuntimeError

COMPUTED_INDEX = """
data N: int
data y: real[N]
mu: real[N] ~ normal(0, 1)
k ~ normal(0, 1)
j = 1 + (k > 0)
y ~ normal(mu[j], 0.1)
"""


def test_a_computed_index_out_of_range_makes_the_density_minus_infinity():
    src = COMPUTED_INDEX.replace("j = 1 + (k > 0)", "j = 1 + 4 * (k > 0)")
    lw = ppl.compile(src, "j.ppl").lower({"N": 3, "y": [0.1, 0.2, 0.3]})
    inside = np.zeros(lw.dim)
    inside[3] = -1.0  # k < 0: j = 1
    outside = inside.copy()
    outside[3] = 1.0  # k > 0: j = 5 > N
    assert np.isfinite(float(lw.log_density(jnp.asarray(inside), lw.data_arrays)))
    assert float(lw.log_density(jnp.asarray(outside), lw.data_arrays)) == -np.inf
    problems = lw.diagnose_point(jnp.asarray(outside))
    assert [p.message for p in problems] == ["an index is out of range here"]
    assert (problems[0].span.line, problems[0].span.col) == (7, 15)
    assert lw.diagnose_point(jnp.asarray(inside)) == []


def test_nan_against_nan_is_agreement_but_finite_against_nan_is_not():
    assert check_agreement(float("nan"), float("nan"), "x") == 0.0
    assert check_agreement(-np.inf, float("nan"), "x") == 0.0
    with pytest.raises(PPLInternalError):
        check_agreement(1.0, float("nan"), "x")


def test_a_negative_scale_is_the_models_error_with_its_line():
    m = ppl.compile("data N: int\ndata y: real[N]\nsigma ~ half_normal(1)\ny ~ normal(0, -sigma)\n",
                    "neg.ppl")
    data = {"N": 3, "y": [0.1, 0.2, -0.3]}
    res = validate_density(m.lower(data), 0)  # NaN against NaN: not a bug in ppl
    assert res["checked"] and "scale of normal must be positive" in res["nonfinite"][0]
    with pytest.raises(PPLRuntimeError) as e:
        m.sample(data, chains=1, draws=10, warmup=10)
    text = e.value.format()
    assert "neg.ppl:4:5: error: no finite starting point" in text
    assert "note: line 4: the scale of normal must be positive" in text
    assert "bug in ppl" not in text


def test_loops_in_functions_are_planned_not_unrolled():
    m = ppl.compile("""
def total(n: int) -> real {
  s = 0.0
  for i in 1:n { s = s + 1.0 / i }
  return s
}
data n: int
mu ~ normal(total(n), 1)
""")
    lw = m.lower({"n": 10 ** 7})  # unrolled in Python this would not finish
    v = float(lw.log_density(jnp.zeros(1), lw.data_arrays))
    h = float(np.sum(1.0 / np.arange(1, 10 ** 7 + 1)))
    assert v == pytest.approx(-0.5 * h ** 2 - 0.5 * np.log(2 * np.pi), rel=1e-9)
