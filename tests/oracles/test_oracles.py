"""The oracles themselves are checked against independent computations."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from oracles import conjugate, posteriordb

EIGHT_SCHOOLS = "eight_schools-eight_schools_noncentered"


# ---------------------------------------------------------------- posteriordb


@pytest.fixture(scope="module")
def eight_schools_draws(shared_data):
    return posteriordb.load_reference_draws(EIGHT_SCHOOLS)


def test_reference_draws_layout(eight_schools_draws):
    assert list(eight_schools_draws) == [f"theta[{i}]" for i in range(1, 9)] + ["mu", "tau"]
    for draws in eight_schools_draws.values():
        assert draws.shape == (10, 1000)
    info = posteriordb.load_posterior_info(EIGHT_SCHOOLS)
    assert info["dimensions"] == {"theta": 8, "mu": 1, "tau": 1}
    data = posteriordb.load_data(EIGHT_SCHOOLS)
    assert data["J"] == 8 and data["y"].shape == (8,)


def test_eight_schools_summary_is_plausible(eight_schools_draws):
    summary = posteriordb.reference_summary(EIGHT_SCHOOLS)
    mu, tau = summary["mu"], summary["tau"]
    # Published eight-schools posterior (non-centred, half-Cauchy(5) on tau): mu ≈ 4.4, sd ≈ 3.3,
    # tau mean ≈ 3.6 with a long right tail.
    assert abs(mu["mean"] - 4.4) < 0.2
    assert 3.0 < mu["sd"] < 3.6
    assert 3.0 < tau["mean"] < 4.2 and tau["q05"] < 0.5 < 7.0 < tau["q95"]
    # 10 000 draws of a well-mixed chain: MCSE of the mean ≈ sd / sqrt(ESS) with ESS in (1e3, 2e4).
    for stats_ in summary.values():
        assert stats_["sd"] / math.sqrt(20_000) < stats_["mcse_mean"] < stats_["sd"] / math.sqrt(1_000)
    # Our numbers agree with plain numpy on the flattened draws.
    flat = eight_schools_draws["mu"].ravel()
    assert mu["mean"] == pytest.approx(flat.mean(), abs=1e-12)
    assert mu["q95"] == pytest.approx(np.quantile(flat, 0.95), abs=1e-12)


def test_compare_passes_on_reference_subset(eight_schools_draws):
    subset = {name: draws[:4] for name, draws in eight_schools_draws.items()}
    assert posteriordb.compare_to_reference(subset, EIGHT_SCHOOLS, check_convergence=True) == []
    # The same draws as array-valued variables, the way a ppl result reports them.
    as_arrays = {
        "mu": eight_schools_draws["mu"][4:],
        "tau": eight_schools_draws["tau"][4:],
        "theta": np.stack([eight_schools_draws[f"theta[{i}]"][4:] for i in range(1, 9)], axis=-1),
    }
    assert posteriordb.compare_to_reference(as_arrays, EIGHT_SCHOOLS) == []


def test_compare_flags_shifted_and_narrowed_draws(eight_schools_draws):
    subset = {name: draws[:4] for name, draws in eight_schools_draws.items()}
    # Shift mu by a third of its posterior sd: ~25 combined MCSEs, far outside the rule.
    shifted = dict(subset, mu=subset["mu"] + 1.1)
    failures = posteriordb.compare_to_reference(shifted, EIGHT_SCHOOLS)
    assert any(f.startswith("mu: mean") for f in failures), failures
    assert all(f.startswith("mu:") for f in failures), failures
    # Same mean, sd 20% too small: the sd check catches it.
    tau = subset["tau"]
    narrowed = dict(subset, tau=tau.mean() + 0.8 * (tau - tau.mean()))
    failures = posteriordb.compare_to_reference(narrowed, EIGHT_SCHOOLS)
    assert any(f.startswith("tau: sd") for f in failures), failures
    # A missing variable is reported by name, and `variables` restricts the check.
    missing = {k: v for k, v in subset.items() if k != "tau"}
    assert posteriordb.compare_to_reference(missing, EIGHT_SCHOOLS) == [
        f"tau: missing from our draws (reference {EIGHT_SCHOOLS} reports it)"
    ]
    assert posteriordb.compare_to_reference(shifted, EIGHT_SCHOOLS, variables=["tau", "theta"]) == []


# ---------------------------------------------------------------- conjugate


def _quad_moments(log_unnormalised, lower, upper, points=None):
    """Evidence, mean and sd of a 1-D posterior by adaptive quadrature (independent of the formulas)."""
    shift = max(log_unnormalised(x) for x in np.linspace(lower if np.isfinite(lower) else -50, upper if np.isfinite(upper) else 50, 2001)[1:-1])
    density = lambda x: math.exp(log_unnormalised(x) - shift)
    opts = dict(limit=200, epsabs=0, epsrel=1e-12, points=points)
    if not (np.isfinite(lower) and np.isfinite(upper)):
        opts.pop("points")
    z = integrate.quad(density, lower, upper, **opts)[0]
    m = integrate.quad(lambda x: x * density(x), lower, upper, **opts)[0] / z
    v = integrate.quad(lambda x: (x - m) ** 2 * density(x), lower, upper, **opts)[0] / z
    return math.log(z) + shift, m, math.sqrt(v)


def test_normal_normal_against_quadrature():
    y = np.array([1.3, -0.4, 2.2, 0.9])
    noise_sd = np.array([1.0, 0.5, 2.0, 1.5])
    post = conjugate.normal_normal(y, noise_sd, prior_mean=0.5, prior_sd=2.0)
    log_joint = lambda t: stats.norm.logpdf(t, 0.5, 2.0) + stats.norm.logpdf(y, t, noise_sd).sum()
    log_z, mean, sd = _quad_moments(log_joint, -30, 30, points=[post.mean])
    assert post.log_evidence == pytest.approx(log_z, abs=1e-9)
    assert post.mean == pytest.approx(mean, abs=1e-9)
    assert post.sd == pytest.approx(sd, abs=1e-9)


def test_beta_binomial_against_quadrature():
    k, n = np.array([3, 7, 0]), np.array([10, 12, 4])
    post = conjugate.beta_binomial(k, n, prior_alpha=2.0, prior_beta=3.0)
    assert (post.alpha, post.beta) == (12.0, 19.0)
    log_joint = lambda p: stats.beta.logpdf(p, 2.0, 3.0) + stats.binom.logpmf(k, n, p).sum()
    log_z, mean, sd = _quad_moments(log_joint, 0.0, 1.0, points=[0.4])
    assert post.log_evidence == pytest.approx(log_z, abs=1e-9)
    assert stats.beta.mean(post.alpha, post.beta) == pytest.approx(mean, abs=1e-9)
    assert stats.beta.std(post.alpha, post.beta) == pytest.approx(sd, abs=1e-9)


def test_gamma_poisson_against_quadrature():
    counts, exposure = np.array([4, 0, 7, 2]), np.array([1.0, 0.5, 2.0, 1.5])
    post = conjugate.gamma_poisson(counts, prior_shape=2.0, prior_rate=0.5, exposure=exposure)
    assert (post.shape, post.rate) == (15.0, 5.5)
    log_joint = lambda lam: stats.gamma.logpdf(lam, 2.0, scale=1 / 0.5) + stats.poisson.logpmf(counts, exposure * lam).sum()
    log_z, mean, sd = _quad_moments(log_joint, 0.0, 60.0, points=[post.shape / post.rate])
    assert post.log_evidence == pytest.approx(log_z, abs=1e-9)
    assert post.shape / post.rate == pytest.approx(mean, abs=1e-9)
    assert math.sqrt(post.shape) / post.rate == pytest.approx(sd, abs=1e-9)


def test_linear_regression_against_grid_integration():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(6), rng.normal(size=6)])
    y = X @ np.array([0.5, -1.0]) + 0.7 * rng.normal(size=6)
    prior_mean, prior_cov = np.array([0.0, 1.0]), np.array([[2.0, 0.3], [0.3, 1.0]])
    post = conjugate.linear_regression(X, y, 0.7, prior_mean, prior_cov)
    # 2-D grid over ±9 posterior sd: the trapezoid rule on a Gaussian is spectrally accurate.
    sds = np.sqrt(np.diag(post.cov))
    axes = [np.linspace(m - 9 * s, m + 9 * s, 801) for m, s in zip(post.mean, sds)]
    b0, b1 = np.meshgrid(*axes, indexing="ij")
    beta = np.stack([b0, b1], axis=-1)
    log_joint = stats.multivariate_normal.logpdf(beta, prior_mean, prior_cov) + stats.norm.logpdf(
        y, beta @ X.T, 0.7
    ).sum(-1)
    shift = log_joint.max()
    weights = np.exp(log_joint - shift)
    cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    z = np.trapezoid(np.trapezoid(weights, axes[1], axis=1), axes[0])
    assert post.log_evidence == pytest.approx(math.log(z) + shift, abs=1e-8)
    p = weights * cell / (weights.sum() * cell)
    mean = np.einsum("ij,ijd->d", p, beta)
    centred = beta - mean
    cov = np.einsum("ij,ijd,ije->de", p, centred, centred)
    np.testing.assert_allclose(post.mean, mean, atol=1e-8)
    np.testing.assert_allclose(post.cov, cov, atol=1e-8)
