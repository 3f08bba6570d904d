"""The distribution table (ppl/builtins/distributions.py) in Stan's parameterisations, against
scipy's densities (an independent implementation) and, through the language, one model that
draws from them."""
import numpy as np
import pytest
from scipy import special, stats

import ppl
from ppl.builtins.distributions import DISTRIBUTIONS, static_support

Y = np.array([0.3, 1.1, 2.7])


def _exp_mod_normal_logpdf(y, mu, sigma, lam):
    # Stan's functions reference, with erfc as it is written there
    return (np.log(lam / 2) + lam / 2 * (2 * mu + lam * sigma ** 2 - 2 * y)
            + np.log(special.erfc((mu + lam * sigma ** 2 - y) / (np.sqrt(2) * sigma))))


# (name, Stan arguments, values, scipy log density)
CASES = [
    ("von_mises", (0.5, 2.0), Y - 1, lambda y: stats.vonmises.logpdf(y, 2.0, loc=0.5)),
    ("gumbel", (1.0, 2.0), Y, lambda y: stats.gumbel_r.logpdf(y, 1.0, 2.0)),
    ("skew_normal", (0.5, 1.5, -2.0), Y, lambda y: stats.skewnorm.logpdf(y, -2.0, 0.5, 1.5)),
    ("exp_mod_normal", (0.5, 0.7, 1.3), Y, lambda y: _exp_mod_normal_logpdf(y, 0.5, 0.7, 1.3)),
    ("rayleigh", (1.4,), Y, lambda y: stats.rayleigh.logpdf(y, scale=1.4)),
    ("frechet", (2.5, 1.2), Y, lambda y: stats.invweibull.logpdf(y, 2.5, scale=1.2)),
    ("loglogistic", (1.5, 3.0), Y, lambda y: stats.fisk.logpdf(y, 3.0, scale=1.5)),
    ("pareto_type_2", (0.1, 2.0, 3.0), Y, lambda y: stats.lomax.logpdf(y, 3.0, loc=0.1, scale=2.0)),
    ("inv_chi_square", (4.0,), Y, lambda y: stats.invgamma.logpdf(y, 2.0, scale=0.5)),
    ("scaled_inv_chi_square", (4.0, 0.8), Y,
     lambda y: stats.invgamma.logpdf(y, 2.0, scale=4.0 * 0.64 / 2)),
    ("beta_proportion", (0.3, 5.0), np.array([0.1, 0.4, 0.9]),
     lambda y: stats.beta.logpdf(y, 1.5, 3.5)),
    ("discrete_range", (2, 6), np.array([2, 4, 6]), lambda y: stats.randint.logpmf(y, 2, 7)),
]


@pytest.mark.parametrize("name,args,y,reference", CASES, ids=[c[0] for c in CASES])
def test_density_matches_scipy(name, args, y, reference):
    d = DISTRIBUTIONS[name].build(*args)
    np.testing.assert_allclose(np.asarray(d.log_prob(y)), reference(y), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name,args,y,reference", CASES[:10], ids=[c[0] for c in CASES[:10]])
def test_sampler_draws_the_density(name, args, y, reference):
    """4,000 draws against the density's own cdf (KS test at p > 1e-3)."""
    import jax
    draws = np.asarray(DISTRIBUTIONS[name].build(*args).sample(jax.random.key(3), (4000,)))
    grid = np.linspace(np.quantile(draws, 0.001), np.quantile(draws, 0.999), 4001)
    cdf = np.cumsum(np.exp(reference(grid)))
    cdf /= cdf[-1]
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


def test_ordered_probit_probabilities():
    eta, c = 0.4, np.array([-1.0, 0.5, 2.0])
    d = DISTRIBUTIONS["ordered_probit"].build(eta, c)
    cdf = np.r_[0, stats.norm.cdf(c - eta), 1]
    np.testing.assert_allclose(np.exp(np.asarray(d.log_prob(np.arange(1, 5)))), np.diff(cdf),
                               rtol=1e-6)


def test_glm_families_are_their_linear_predictors():
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    a, b = 0.3, np.array([0.2, -0.4])
    eta = a + x @ b
    y = np.array([1, 0])
    lp = DISTRIBUTIONS["poisson_log_glm"].build(x, a, b).log_prob(y)
    np.testing.assert_allclose(lp, stats.poisson.logpmf(y, np.exp(eta)), rtol=1e-6)
    lp = DISTRIBUTIONS["bernoulli_logit_glm"].build(x, a, b).log_prob(y)
    np.testing.assert_allclose(lp, stats.bernoulli.logpmf(y, special.expit(eta)), rtol=1e-6)
    phi = 3.0
    lp = DISTRIBUTIONS["neg_binomial_2_log_glm"].build(x, a, b, phi).log_prob(y)
    mu = np.exp(eta)
    np.testing.assert_allclose(lp, stats.nbinom.logpmf(y, phi, phi / (phi + mu)), rtol=1e-6)


def test_multivariate_families():
    S = np.array([[2.0, 0.3], [0.3, 1.0]])
    mu, y = np.array([0.5, -1.0]), np.array([1.0, 0.2])
    lp = DISTRIBUTIONS["multi_student_t"].build(5.0, mu, S).log_prob(y)
    np.testing.assert_allclose(lp, stats.multivariate_t.logpdf(y, mu, S, df=5.0), rtol=1e-6)
    lp = DISTRIBUTIONS["multi_normal_prec"].build(mu, np.linalg.inv(S)).log_prob(y)
    np.testing.assert_allclose(lp, stats.multivariate_normal.logpdf(y, mu, S), rtol=1e-6)
    W = np.array([[3.0, 0.5], [0.5, 2.0]])
    lp = DISTRIBUTIONS["wishart"].build(4.0, S).log_prob(W)
    np.testing.assert_allclose(lp, stats.wishart.logpdf(W, df=4.0, scale=S), rtol=1e-6)
    lp = DISTRIBUTIONS["inv_wishart"].build(4.0, S).log_prob(W)
    np.testing.assert_allclose(lp, stats.invwishart.logpdf(W, df=4.0, scale=S), rtol=1e-6)


def test_every_distribution_has_a_support():
    for spec in DISTRIBUTIONS.values():
        if not spec.support_from_args:
            assert static_support(spec) is not None, spec.name


@pytest.mark.slow  # a NUTS compile, 23 s; densities are checked directly
def test_a_model_draws_from_the_new_families():
    """Latents under the new families sample through the language (their supports map to
    unconstrained coordinates) and data under them are observed."""
    m = ppl.compile("""
data N: int
data y: real[N]
a ~ skew_normal(0, 1, 2)
s ~ rayleigh(1)
v ~ inv_chi_square(3)
y ~ gumbel(a, s)
""")
    idata = m.sample({"N": 3, "y": [0.2, 1.5, -0.3]}, chains=2, draws=100, warmup=100, seed=1)
    assert float(idata.posterior["s"].min()) > 0 and float(idata.posterior["v"].min()) > 0
    assert idata.posterior["a"].shape == (2, 100)
