"""ODE solves inside models (issue 11): values and gradients against closed forms, both
solvers, failure handling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl

DECAY = """
def decay(t: real, y: real[2], k: real[2]) -> real[2] {
  return [-k[1] * y[1], -k[2] * y[2]]
}
data ts: real[4]
data y0: real[2]
k: real<lower=0>[2] ~ lognormal(0, 1)
z = SOLVER
generated {
  z_gen = z
}
"""
TS = np.array([0.5, 1.0, 2.0, 3.5])
Y0 = np.array([2.0, 1.0])


def solution(k):
    return Y0[None, :] * np.exp(-np.outer(TS, k))


# the stiff solver compiles an implicit method (a minute on a loaded machine): slow suite
@pytest.fixture(scope="module", params=[
    "ode_rk45(decay, y0, 0, ts, k)",
    pytest.param("ode_bdf_tol(decay, y0, 0.0, ts, 1e-8, 1e-8, 5000, k)", marks=pytest.mark.slow)])
def decay(request):
    model = ppl.compile(DECAY.replace("SOLVER", request.param), "decay.ppl")
    return model.lower({"ts": TS.tolist(), "y0": Y0.tolist()})


def test_ode_solution_matches_closed_form(decay):
    low = decay
    u = jnp.array([0.3, -0.4])
    z = np.asarray(low.evaluate(u, low.data_arrays)["z"])
    np.testing.assert_allclose(z, solution(np.exp(np.asarray(u))), rtol=2e-5, atol=1e-6)


def test_ode_gradient_matches_closed_form(decay):
    """d/dk of sum(z) through the solver against the derivative of the closed form."""
    low = decay

    def total(logk):
        u = logk
        return jnp.sum(low.evaluate(u, low.data_arrays)["z"])

    logk = jnp.array([0.3, -0.4])
    k = np.exp(np.asarray(logk))
    expected = -(Y0[None, :] * TS[:, None] * np.exp(-np.outer(TS, k))).sum(axis=0) * k
    np.testing.assert_allclose(np.asarray(jax.grad(total)(logk)), expected, rtol=1e-4)


def test_a_failed_solve_rejects_the_point_and_names_the_line():
    model = ppl.compile(DECAY.replace("SOLVER", "ode_rk45_tol(decay, y0, 0, ts, 1e-10, 1e-10, 3, k)"),
                        "decay.ppl")
    low = model.lower({"ts": TS.tolist(), "y0": Y0.tolist()})
    u = jnp.array([0.3, -0.4])
    assert float(low.log_density(u, low.data_arrays)) == -np.inf
    problems = low.diagnose_point(u)
    assert any("ODE solve fails" in p.message and p.span.line == 8 for p in problems)


@pytest.mark.parametrize("call, words", [
    ("ode_rk45(y0, y0, 0, ts, k)", "must name a function"),
    ("ode_rk45(decay, y0, 0, ts)", "decay takes 3 arguments"),
    ("ode_rk45_tol(decay, y0, 0, ts, k)", "at least 7 arguments"),
])
def test_ode_call_errors(call, words):
    with pytest.raises(ppl.PPLError, match=words):
        ppl.compile(DECAY.replace("SOLVER", call), "decay.ppl")
