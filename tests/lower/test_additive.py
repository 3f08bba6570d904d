"""Additive functionals found in the generated block (vectorised sums and means, accumulation
loops): which are, their per-step terms summed along a trajectory against numpy, and the
translation check that catches a wrong term."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.ir.statespace import find as find_form
from ppl.lower import additive
from ppl.lower.statespace import SSMLowering
from ppl.passes.smc import AdditiveSmoothing
from ppl.syntax.errors import PPLInternalError

SOURCE = """
data T: int
data y: real[T]
data mu: real
x: real[T]
x[1] ~ normal(mu, 1)
for t in 2:T { x[t] ~ normal(mu + 0.9 * (x[t-1] - mu), 0.5) }
for t in 1:T { y[t] ~ normal(0, exp(x[t] / 2)) }
generated {
  mean_vol = mean(exp(x / 2))
  persistence = sum(x[2:T] .* x[1:T-1])
  lagged = sum((x[2:T] - mu) * y[1:T-1])
  ahead = sum(square(x[1:T-1]) + y[2:T])
  total = sum(x) + 1
  peak = max(x)
  far = sum(x[3:T] - x[1:T-2])
  dotted = sum(x @ y)
  ssq = 0
  for t in 2:T { ssq = ssq + (x[t] - x[t-1])^2 }
  ssq = ssq / (T - 1)
  weighted = 1
  for t in 1:T { weighted = weighted + exp(x[t] / 2) * y[t] }
  far_loop = 0
  for t in 3:T { far_loop = far_loop + x[t] * x[t-2] }
  whole = 0
  for t in 1:T { whole = whole + sum(x) }
  nested = sum(x)
  for t in 1:T {
    if (y[t] > 0) { nested = nested + 1 }
  }
}
"""
T = 12


@pytest.fixture(scope="module")
def ssm():
    y = np.linspace(-1.0, 1.0, T)
    lowered = ppl.compile(SOURCE, "additive.ppl").lower({"T": T, "y": y.tolist(), "mu": -0.5})
    form, _ = find_form(lowered.graph)
    return SSMLowering(lowered, form)


@pytest.fixture(scope="module")
def found(ssm):
    return additive.find(ssm)


def test_which_generated_quantities_are_additive(found):
    fs, other = found
    assert [(f.name, [(u.lo, u.hi) for u in f.terms]) for f in fs] == [
        ("mean_vol", [(1, T)]), ("persistence", [(2, T)]), ("lagged", [(2, T)]),
        ("ahead", [(1, T - 1)]), ("ssq", [(2, T)]), ("weighted", [(1, T)])]
    assert fs[0].terms[0].scale == pytest.approx(1 / T)
    assert fs[4].terms[0].scale == pytest.approx(1 / (T - 1)) and fs[5].offset == 1.0
    assert other == {
        "total": "not a sum or mean over the time index",
        "peak": "not a sum or mean over the time index",
        "far": "it pairs states more than one step apart",
        "dotted": "its summand is not elementwise in time (only arithmetic, elementwise "
                  "functions, vectors and their slices)",
        "far_loop": 'it reads "x" other than at the step or the step before',
        "whole": 'its summand reads all of "x"',
        "nested": "it is assigned inside a nested block",
    }


def test_terms_sum_to_the_expression_along_a_trajectory(ssm, found):
    fs, _ = found
    x = np.sin(np.arange(T) * 0.7) - 0.3
    y = np.linspace(-1.0, 1.0, T)
    params, _ = ssm.prepare({}, ssm.lowered.data_arrays)
    got = np.asarray(additive.along(ssm, fs, {"x": jnp.asarray(x)}, params))
    want = [np.mean(np.exp(x / 2)), np.sum(x[1:] * x[:-1]), np.sum((x[1:] + 0.5) * y[:-1]),
            np.sum(x[:-1] ** 2 + y[1:]), np.sum(np.diff(x) ** 2) / (T - 1),
            1 + np.sum(np.exp(x / 2) * y)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_validation_catches_a_wrong_term(ssm, found):
    smoothing = AdditiveSmoothing(ssm)
    key = jax.random.key(0)
    assert smoothing.validate(key, ssm.lowered)["additive_checked"] == [f.name for f in found[0]]
    # a mean that forgot to divide by its length
    first = smoothing.functionals[0]
    wrong = dataclasses.replace(first, terms=(dataclasses.replace(first.terms[0], scale=1.0),))
    smoothing.functionals = [wrong] + smoothing.functionals[1:]
    with pytest.raises(PPLInternalError, match='additive form of "mean_vol"'):
        smoothing.validate(key, ssm.lowered)
