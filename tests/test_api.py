"""The Python embedding API."""
import numpy as np
import pytest

import ppl

SOURCE = """
data N: int
data x: real[N]
data y: real[N]
a ~ normal(0, 10)
b ~ normal(0, 10)
sigma ~ half_normal(1)
mu = a + b * x
y ~ normal(mu, sigma)
generated {
  y_new ~ normal(a + b * x, sigma)
}
"""


@pytest.fixture(scope="module")
def fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 1.0 + 2.0 * x + rng.normal(0, 0.3, 40)
    model = ppl.compile(SOURCE, "line.ppl")
    return model, x, y, model.sample({"N": 40, "x": x, "y": y}, chains=2, draws=500, warmup=500, seed=1)


def test_inference_data_groups_and_names(fit):
    model, x, y, idata = fit
    assert set(idata.groups()) >= {"posterior", "sample_stats", "observed_data",
                                   "posterior_predictive", "constant_data"}
    assert idata.posterior["mu"].shape == (2, 500, 40)  # top-level deterministic, source name
    assert idata.posterior_predictive["y_new"].shape == (2, 500, 40)
    np.testing.assert_allclose(idata.observed_data["y"].values, y)
    assert list(idata.posterior["mu"].coords["mu_dim_1"].values[:2]) == [1, 2]  # 1-based


def test_posterior_is_sensible(fit):
    _, x, y, idata = fit
    X = np.column_stack([np.ones_like(x), x])
    ols = np.linalg.lstsq(X, y, rcond=None)[0]
    assert abs(float(idata.posterior["a"].mean()) - ols[0]) < 0.05
    assert abs(float(idata.posterior["b"].mean()) - ols[1]) < 0.05
    # the deterministic variable is computed from the same draw
    mu = idata.posterior["mu"].values
    a, b = idata.posterior["a"].values, idata.posterior["b"].values
    np.testing.assert_allclose(mu, a[..., None] + b[..., None] * x, rtol=1e-10)


def test_same_shapes_reuse_the_compiled_program(fit):
    model, x, y, _ = fit
    before = len(model._programs)
    idata = model.sample({"N": 40, "x": x, "y": y + 1.0}, chains=2, draws=500, warmup=500, seed=2)
    assert len(model._programs) == before
    assert float(idata.posterior["a"].mean()) > 1.5  # the new data were used


def test_graph_and_plan(fit):
    model, *_ = fit
    kinds = {v.name: v.kind for v in model.graph.variables()}
    assert kinds == {"N": "data", "x": "data", "y": "data", "a": "latent", "b": "latent",
                     "sigma": "latent", "mu": "deterministic", "y_new": "generated"}
    assert model.graph.var("y").observed
    assert set(model.graph.parents("y")) == {"mu", "sigma"}
    assert model.plan().method == "nuts"


def test_data_errors_are_framed():
    model = ppl.compile(SOURCE, "line.ppl")
    with pytest.raises(ppl.PPLError) as e:
        model.sample({"N": 3, "x": [1.0, 2.0], "y": [1.0, 2.0, 3.0]})
    msg = e.value.format()
    assert msg.startswith("line.ppl:3:6: error: data \"x\" has shape (2)")
