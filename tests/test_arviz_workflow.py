"""The ArviZ workflow on ppl's InferenceData (issue 12): az.loo, az.compare, az.bfmi,
az.plot_ppc (without data_pairs), az.plot_energy, and the prior predictive groups, on the
examples eight_schools and linear_regression. One small run per model (module fixtures)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import ppl

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

az = pytest.importorskip("arviz")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN = dict(chains=2, draws=150, warmup=150, seed=1)


def _run(name, **kw):
    model = ppl.load(EXAMPLES / f"{name}.ppl")
    data = json.loads((EXAMPLES / f"{name}.json").read_text())
    return model, data, model.sample(data, **dict(RUN, **kw))


@pytest.fixture(scope="module")
def eight_schools():
    return _run("eight_schools", prior=True)


@pytest.fixture(scope="module")
def linear_regression():
    return _run("linear_regression")


@pytest.fixture(params=["eight_schools", "linear_regression"])
def fit(request):
    return request.getfixturevalue(request.param)


def _close():
    plt.close("all")


def test_log_likelihood_is_pointwise_and_matches_the_density(fit):
    model, data, idata = fit
    ll = idata.log_likelihood["y"]
    assert ll.shape == (RUN["chains"], RUN["draws"], len(data["y"]))
    # independent check: the normal log density of each observation at each draw
    post = idata.posterior
    if "theta" in post:
        mean, sd = post["theta"].values, np.asarray(data["sigma"])
    else:
        X = np.asarray(data["X"])
        mean = post["alpha"].values[..., None] + np.einsum("cdk,nk->cdn", post["beta"].values, X)
        sd = post["sigma"].values[..., None]
    y = np.asarray(data["y"])
    expect = -0.5 * ((y - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ll.values, expect, rtol=1e-8, atol=1e-8)


def test_loo_and_compare(eight_schools, linear_regression):
    for _, data, idata in (eight_schools, linear_regression):
        loo = az.loo(idata, pointwise=True)
        assert np.isfinite(loo.elpd_loo) and loo.loo_i.shape == (len(data["y"]),)
    # two models of the same data: the eight schools run against the same run with fewer draws
    _, _, es = eight_schools
    half = es.sel(draw=slice(0, RUN["draws"] // 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings on 75 draws are ArviZ's business
        table = az.compare({"full": es, "half": half})
    assert set(table.index) == {"full", "half"} and np.isfinite(table["elpd_loo"]).all()


def test_sample_stats_carry_energy_lp_tree_depth_and_step_size(fit):
    _, _, idata = fit
    stats = idata.sample_stats
    for name in ("energy", "lp", "tree_depth", "step_size", "diverging", "acceptance_rate"):
        assert name in stats, name
        assert stats[name].shape == (RUN["chains"], RUN["draws"])
    assert (stats["tree_depth"] >= 1).all() and (stats["step_size"] > 0).all()
    # the Hamiltonian is the potential energy (-lp) plus a kinetic energy, which is >= 0
    assert (stats["energy"] >= -stats["lp"] - 1e-9).all()
    bfmi = az.bfmi(idata)
    assert bfmi.shape == (RUN["chains"],) and np.all(bfmi > 0)


def test_plot_energy_and_plot_ppc_without_data_pairs(fit):
    _, data, idata = fit
    try:
        az.plot_energy(idata)
        assert idata.posterior_predictive["y"].shape[2:] == (len(data["y"]),)
        az.plot_ppc(idata, num_pp_samples=20)
    finally:
        _close()


def test_prior_and_prior_predictive_groups(eight_schools):
    _, data, idata = eight_schools
    assert idata.prior["mu"].shape == (RUN["chains"], RUN["draws"])
    assert idata.prior_predictive["y"].shape == (RUN["chains"], RUN["draws"], len(data["y"]))
    # mu ~ normal(0, 5) a priori: 300 draws, sd within a generous Monte Carlo band
    mu = idata.prior["mu"].values.ravel()
    assert abs(mu.mean()) < 5 * 5 / np.sqrt(mu.size) and 4.0 < mu.std() < 6.0
    try:
        az.plot_ppc(idata, group="prior", num_pp_samples=20)
    finally:
        _close()
