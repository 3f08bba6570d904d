"""The distributions of the language: Stan's names and parameterisations on numpyro.distributions.

Each entry says what the checker needs (arity, discrete or continuous, whether its support
depends on its arguments, how many values a finite discrete one takes) and how lowering builds
the numpyro distribution. Densities are never re-implemented here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from jax.scipy.stats import norm
from numpyro.distributions import constraints


class OneBased(nd.Distribution):
    """A discrete distribution on {0..K-1} seen on {1..K}: the language indexes from 1."""

    def __init__(self, base: nd.Distribution, validate_args=None):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=validate_args)

    @property
    def support(self):
        return constraints.integer_interval(1, self.num_values)

    @property
    def num_values(self):
        b = self.base
        if isinstance(b, nd.OrderedLogistic):
            return b.cutpoints.shape[-1] + 1
        if isinstance(b, nd.CategoricalProbs):
            return b.probs.shape[-1]
        return b.logits.shape[-1]

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape) + 1

    def log_prob(self, value):
        return self.base.log_prob(value - 1)

    def enumerate_support(self, expand=True):
        return self.base.enumerate_support(expand) + 1

    @property
    def has_enumerate_support(self):
        return True

    @property
    def mean(self):
        return self.base.mean + 1


class _Density(nd.Distribution):
    """A distribution numpyro lacks, from its log density and a sampler (both elementwise)."""

    def __init__(self, log_prob, sample, support, *args, validate_args=None):
        self._log_prob, self._sample, self._support = log_prob, sample, support
        self.args = jnp.broadcast_arrays(*args)
        super().__init__(jnp.shape(self.args[0]), (), validate_args=validate_args)

    @property
    def support(self):
        return self._support

    def sample(self, key, sample_shape=()):
        return self._sample(key, tuple(sample_shape) + self.batch_shape, *self.args)

    def log_prob(self, value):
        return self._log_prob(value, *self.args)


def _skew_normal(xi, omega, alpha):
    def log_prob(y, xi, omega, alpha):
        z = (y - xi) / omega
        return jnp.log(2.0) - jnp.log(omega) + norm.logpdf(z) + norm.logcdf(alpha * z)

    def sample(key, shape, xi, omega, alpha):
        delta = alpha / jnp.sqrt(1 + alpha ** 2)
        u0, u1 = jax.random.normal(key, (2,) + shape)
        return xi + omega * (delta * jnp.abs(u0) + jnp.sqrt(1 - delta ** 2) * u1)
    return _Density(log_prob, sample, constraints.real, _f(xi), _f(omega), _f(alpha))


def _exp_mod_normal(mu, sigma, lam):
    def log_prob(y, mu, sigma, lam):
        # log erfc(x) = log 2 + log Φ(−x√2), finite far into the tail
        return (jnp.log(lam) + lam * (mu + 0.5 * lam * sigma ** 2 - y)
                + norm.logcdf((y - mu - lam * sigma ** 2) / sigma))

    def sample(key, shape, mu, sigma, lam):
        k1, k2 = jax.random.split(key)
        return mu + sigma * jax.random.normal(k1, shape) + jax.random.exponential(k2, shape) / lam
    return _Density(log_prob, sample, constraints.real, _f(mu), _f(sigma), _f(lam))


def _ordered_probit(eta, c):
    eta, c = _f(eta), _f(c)
    cdf = norm.cdf(c - eta[..., None])  # P(Y <= k) for k = 1..K-1
    zeros = jnp.zeros(cdf.shape[:-1] + (1,), cdf.dtype)
    probs = jnp.diff(jnp.concatenate([zeros, cdf, zeros + 1.0], axis=-1), axis=-1)
    return OneBased(nd.CategoricalProbs(jnp.clip(probs, 1e-300, 1.0)))


def _wishart(nu, S, inverse=False):
    cls = nd.InverseWishart if inverse else nd.Wishart
    return cls(_f(nu), scale_matrix=_f(S))


@dataclass(frozen=True)
class DistSpec:
    name: str
    params: Tuple[str, ...]
    build: Callable  # (*args, value_shape) -> numpyro Distribution
    discrete: bool = False
    # The support depends on the arguments (uniform(a, b), binomial(N, p) …): an element-wise
    # defined latent then needs declared bounds.
    support_from_args: bool = False
    event_dim: int = 0
    # For finite discrete distributions: number of values given the args (None: infinite).
    finite: bool = False


def _f(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _cat_probs(theta, value_shape=None):
    return OneBased(nd.CategoricalProbs(_f(theta)))


def _cat_logits(beta, value_shape=None):
    return OneBased(nd.CategoricalLogits(_f(beta)))


def _lkj_chol(eta, value_shape=None):
    if value_shape is None or len(value_shape) < 2:
        raise ValueError("lkj_corr_cholesky needs a declared size, e.g. L: corr_cholesky[K]")
    return nd.LKJCholesky(value_shape[-1], _f(eta))


def _lkj(eta, value_shape=None):
    if value_shape is None or len(value_shape) < 2:
        raise ValueError("lkj_corr needs a declared size, e.g. Omega: corr_matrix[K]")
    return nd.LKJ(value_shape[-1], _f(eta))


def _spec(name, params, build, **kw):
    return DistSpec(name, tuple(params.split()) if params else (), build, **kw)


def _nv(f):
    """Wrap a builder that does not need the value shape."""
    return lambda *args, value_shape=None: f(*args)


DISTRIBUTIONS = {d.name: d for d in [
    _spec("normal", "mu sigma", _nv(lambda m, s: nd.Normal(_f(m), _f(s)))),
    _spec("std_normal", "", _nv(lambda: nd.Normal(0.0, 1.0))),
    _spec("lognormal", "mu sigma", _nv(lambda m, s: nd.LogNormal(_f(m), _f(s)))),
    _spec("half_normal", "sigma", _nv(lambda s: nd.HalfNormal(_f(s)))),
    _spec("cauchy", "mu sigma", _nv(lambda m, s: nd.Cauchy(_f(m), _f(s)))),
    _spec("half_cauchy", "sigma", _nv(lambda s: nd.HalfCauchy(_f(s)))),
    _spec("student_t", "nu mu sigma", _nv(lambda n, m, s: nd.StudentT(_f(n), _f(m), _f(s)))),
    _spec("double_exponential", "mu sigma", _nv(lambda m, s: nd.Laplace(_f(m), _f(s)))),
    _spec("logistic", "mu sigma", _nv(lambda m, s: nd.Logistic(_f(m), _f(s)))),
    _spec("exponential", "beta", _nv(lambda r: nd.Exponential(_f(r)))),
    _spec("gamma", "alpha beta", _nv(lambda a, b: nd.Gamma(_f(a), _f(b)))),
    _spec("inv_gamma", "alpha beta", _nv(lambda a, b: nd.InverseGamma(_f(a), _f(b)))),
    _spec("weibull", "alpha sigma", _nv(lambda a, s: nd.Weibull(_f(s), _f(a)))),
    _spec("chi_square", "nu", _nv(lambda n: nd.Chi2(_f(n)))),
    _spec("pareto", "y_min alpha", _nv(lambda m, a: nd.Pareto(_f(m), _f(a))), support_from_args=True),
    _spec("beta", "alpha beta", _nv(lambda a, b: nd.Beta(_f(a), _f(b)))),
    _spec("uniform", "alpha beta", _nv(lambda a, b: nd.Uniform(_f(a), _f(b))), support_from_args=True),
    _spec("bernoulli", "theta", _nv(lambda p: nd.BernoulliProbs(_f(p))), discrete=True, finite=True),
    _spec("bernoulli_logit", "alpha", _nv(lambda a: nd.BernoulliLogits(_f(a))), discrete=True, finite=True),
    _spec("binomial", "N theta", _nv(lambda n, p: nd.BinomialProbs(_f(p), jnp.asarray(n))),
          discrete=True, finite=True, support_from_args=True),
    _spec("binomial_logit", "N alpha", _nv(lambda n, a: nd.BinomialLogits(_f(a), jnp.asarray(n))),
          discrete=True, finite=True, support_from_args=True),
    _spec("beta_binomial", "N alpha beta",
          _nv(lambda n, a, b: nd.BetaBinomial(_f(a), _f(b), jnp.asarray(n))),
          discrete=True, finite=True, support_from_args=True),
    _spec("poisson", "lambda", _nv(lambda r: nd.Poisson(_f(r))), discrete=True),
    _spec("poisson_log", "alpha", _nv(lambda a: nd.Poisson(jnp.exp(_f(a)))), discrete=True),
    _spec("neg_binomial", "alpha beta", _nv(lambda a, b: nd.GammaPoisson(_f(a), _f(b))), discrete=True),
    _spec("neg_binomial_2", "mu phi", _nv(lambda m, p: nd.NegativeBinomial2(_f(m), _f(p))), discrete=True),
    _spec("neg_binomial_2_log", "eta phi",
          _nv(lambda e, p: nd.NegativeBinomial2(jnp.exp(_f(e)), _f(p))), discrete=True),
    _spec("categorical", "theta", _cat_probs, discrete=True, finite=True, support_from_args=True),
    _spec("categorical_logit", "beta", _cat_logits, discrete=True, finite=True, support_from_args=True),
    _spec("ordered_logistic", "eta c",
          _nv(lambda e, c: OneBased(nd.OrderedLogistic(_f(e), _f(c)))),
          discrete=True, finite=True, support_from_args=True),
    # Stan's normal_id_glm(x, alpha, beta, sigma): y ~ normal(alpha + x * beta, sigma)
    _spec("normal_id_glm", "x alpha beta sigma",
          _nv(lambda x, a, b, s: nd.Normal(_f(a) + jnp.dot(_f(x), _f(b)), _f(s)))),
    _spec("dirichlet", "alpha", _nv(lambda a: nd.Dirichlet(_f(a))), event_dim=1),
    _spec("multi_normal", "mu Sigma",
          _nv(lambda m, S: nd.MultivariateNormal(_f(m), covariance_matrix=_f(S))), event_dim=1),
    _spec("multi_normal_cholesky", "mu L",
          _nv(lambda m, L: nd.MultivariateNormal(_f(m), scale_tril=_f(L))), event_dim=1),
    _spec("lkj_corr_cholesky", "eta", _lkj_chol, event_dim=2),
    _spec("lkj_corr", "eta", _lkj, event_dim=2),
    # more of Stan's families, in Stan's parameterisations
    _spec("discrete_range", "lower upper",
          _nv(lambda lo, hi: nd.DiscreteUniform(jnp.asarray(lo), jnp.asarray(hi))),
          discrete=True, finite=True, support_from_args=True),
    _spec("von_mises", "mu kappa", _nv(lambda m, k: nd.VonMises(_f(m), _f(k)))),
    _spec("gumbel", "mu beta", _nv(lambda m, b: nd.Gumbel(_f(m), _f(b)))),
    _spec("skew_normal", "xi omega alpha", _nv(_skew_normal)),
    _spec("exp_mod_normal", "mu sigma lambda", _nv(_exp_mod_normal)),
    # Rayleigh(σ) is Weibull(shape 2, scale σ√2)
    _spec("rayleigh", "sigma", _nv(lambda s: nd.Weibull(_f(s) * jnp.sqrt(2.0), 2.0))),
    # Fréchet(α, σ): 1/Y for Y ~ Weibull(shape α, scale 1/σ)
    _spec("frechet", "alpha sigma", _nv(lambda a, s: nd.TransformedDistribution(
        nd.Weibull(1.0 / _f(s), _f(a)), nd.transforms.PowerTransform(-1.0)))),
    # log-logistic(α scale, β shape): log Y ~ logistic(log α, 1/β)
    _spec("loglogistic", "alpha beta", _nv(lambda a, b: nd.TransformedDistribution(
        nd.Logistic(jnp.log(_f(a)), 1.0 / _f(b)), nd.transforms.ExpTransform()))),
    # Pareto type II(μ, λ, α): a Pareto(λ, α) shifted by μ − λ
    _spec("pareto_type_2", "mu lambda alpha", _nv(lambda m, lam, a: nd.TransformedDistribution(
        nd.Pareto(_f(lam), _f(a)), nd.transforms.AffineTransform(_f(m) - _f(lam), 1.0))),
          support_from_args=True),
    _spec("inv_chi_square", "nu", _nv(lambda n: nd.InverseGamma(_f(n) / 2, 0.5))),
    _spec("scaled_inv_chi_square", "nu s",
          _nv(lambda n, s: nd.InverseGamma(_f(n) / 2, _f(n) * _f(s) ** 2 / 2))),
    _spec("beta_proportion", "mu kappa", _nv(lambda m, k: nd.BetaProportion(_f(m), _f(k)))),
    _spec("ordered_probit", "eta c", _nv(_ordered_probit),
          discrete=True, finite=True, support_from_args=True),
    _spec("poisson_log_glm", "x alpha beta",
          _nv(lambda x, a, b: nd.Poisson(jnp.exp(_f(a) + jnp.dot(_f(x), _f(b))))), discrete=True),
    _spec("bernoulli_logit_glm", "x alpha beta",
          _nv(lambda x, a, b: nd.BernoulliLogits(_f(a) + jnp.dot(_f(x), _f(b)))),
          discrete=True, finite=True),
    _spec("neg_binomial_2_log_glm", "x alpha beta phi",
          _nv(lambda x, a, b, p: nd.NegativeBinomial2(jnp.exp(_f(a) + jnp.dot(_f(x), _f(b))), _f(p))),
          discrete=True),
    _spec("multi_normal_prec", "mu Omega",
          _nv(lambda m, P: nd.MultivariateNormal(_f(m), precision_matrix=_f(P))), event_dim=1),
    _spec("multi_student_t", "nu mu Sigma", _nv(lambda n, m, S: nd.MultivariateStudentT(
        _f(n), _f(m), scale_tril=jnp.linalg.cholesky(_f(S)))), event_dim=1),
    _spec("multi_student_t_cholesky", "nu mu L",
          _nv(lambda n, m, L: nd.MultivariateStudentT(_f(n), _f(m), scale_tril=_f(L))), event_dim=1),
    _spec("wishart", "nu Sigma", _nv(_wishart), event_dim=2),
    _spec("inv_wishart", "nu Sigma", _nv(lambda n, S: _wishart(n, S, inverse=True)), event_dim=2),
]}

# `NAME_lpdf` for continuous, `NAME_lpmf` for discrete distributions.
DENSITY_SUFFIXES = ("_lpdf", "_lpmf", "_lupdf", "_lupmf")


def density_function(name: str) -> Optional[DistSpec]:
    for suffix in DENSITY_SUFFIXES:
        if name.endswith(suffix):
            return DISTRIBUTIONS.get(name[: -len(suffix)])
    return None


def rng_function(name: str) -> Optional[DistSpec]:
    if name.endswith("_rng"):
        return DISTRIBUTIONS.get(name[:-4])
    return None


_SPECIAL_SUPPORT = {
    "dirichlet": constraints.simplex, "multi_normal": constraints.real_vector,
    "multi_normal_cholesky": constraints.real_vector, "lkj_corr_cholesky": constraints.corr_cholesky,
    "lkj_corr": constraints.corr_matrix, "multi_normal_prec": constraints.real_vector,
    "multi_student_t": constraints.real_vector, "multi_student_t_cholesky": constraints.real_vector,
    "wishart": constraints.positive_definite, "inv_wishart": constraints.positive_definite,
}


@functools.lru_cache(maxsize=None)
def static_support(spec: DistSpec):
    """The support when it does not depend on the arguments (None when it does)."""
    if spec.support_from_args:
        return None
    if spec.name in _SPECIAL_SUPPORT:
        return _SPECIAL_SUPPORT[spec.name]
    # Built while tracing: constructing it eagerly would compile a handful of tiny programs.
    found = []
    jax.make_jaxpr(lambda: found.append(spec.build(*([1.0] * len(spec.params))).support))()
    return found[0]


# ---------------------------------------------------------------- cumulative distributions
# `NAME_cdf(y | …)` (the product over elements, as Stan), `NAME_lcdf(y | …)` and
# `NAME_lccdf(y | …)` (sums of log P(Y ≤ y) and log P(Y > y)), from numpyro's `cdf`; the
# normal family in closed log form so that far tails stay finite.
CDF_SUFFIXES = ("_cdf", "_lcdf", "_lccdf")
CDF_DISTRIBUTIONS = frozenset({
    "normal", "std_normal", "lognormal", "half_normal", "cauchy", "half_cauchy", "student_t",
    "double_exponential", "logistic", "exponential", "gamma", "inv_gamma", "weibull",
    "chi_square", "pareto", "beta", "uniform", "poisson", "neg_binomial", "neg_binomial_2",
})


def cdf_function(name: str) -> Optional[Tuple[DistSpec, str]]:
    """(distribution, "cdf" | "lcdf" | "lccdf") for a cumulative-distribution function name."""
    for suffix in CDF_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in CDF_DISTRIBUTIONS:
            return DISTRIBUTIONS[name[: -len(suffix)]], suffix[1:]
    return None


def _log_cdfs(spec: DistSpec, y, args):
    """(log P(Y ≤ y), log P(Y > y)) elementwise."""
    y = _f(y)
    if spec.name in ("normal", "std_normal", "lognormal"):
        mu, sigma = (args if args else (0.0, 1.0))
        z = ((jnp.log(y) if spec.name == "lognormal" else y) - _f(mu)) / _f(sigma)
        return norm.logcdf(z), norm.logcdf(-z)
    p = jnp.clip(spec.build(*args).cdf(y), 0.0, 1.0)
    return jnp.log(p), jnp.log1p(-p)


def cdf_value(spec: DistSpec, kind: str, y, *args):
    lower, upper = _log_cdfs(spec, y, args)
    if kind == "cdf":
        return jnp.exp(jnp.sum(lower))
    return jnp.sum(lower if kind == "lcdf" else upper)
