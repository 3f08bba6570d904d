"""Closed-form posteriors and exact log evidence for conjugate models (numpy, float64).

Every function returns the posterior's parameters and ``log_evidence`` = log p(y), the
marginal likelihood of *all* observations including normalising constants (binomial
coefficients, 1/y!, Gaussian constants), so it can be compared with an evidence estimate
(SMC, enumeration) of the same model written out in full.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


def _lgamma(x) -> np.ndarray:
    return np.vectorize(math.lgamma, otypes=[np.float64])(np.asarray(x, dtype=np.float64))


def _log_beta_fn(a, b) -> np.ndarray:
    return _lgamma(a) + _lgamma(b) - _lgamma(np.asarray(a) + np.asarray(b))


class NormalPosterior(NamedTuple):
    mean: float
    sd: float
    log_evidence: float


def normal_normal(y, noise_sd, prior_mean: float, prior_sd: float) -> NormalPosterior:
    """theta ~ N(prior_mean, prior_sd); y[i] ~ N(theta, noise_sd[i]) with noise_sd known.

    ``noise_sd`` may be a scalar or one standard deviation per observation.
    """
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    noise_var = np.broadcast_to(np.asarray(noise_sd, dtype=np.float64) ** 2, y.shape)
    precision = 1.0 / prior_sd**2 + np.sum(1.0 / noise_var)
    mean = (prior_mean / prior_sd**2 + np.sum(y / noise_var)) / precision
    # y ~ N(prior_mean·1, diag(noise_var) + prior_sd²·11ᵀ): evaluated directly, not through the
    # posterior, so the evidence is an independent formula from the posterior update above.
    cov = np.diag(noise_var) + prior_sd**2
    log_evidence = _mvn_logpdf(y, np.full_like(y, prior_mean), cov)
    return NormalPosterior(float(mean), float(1.0 / math.sqrt(precision)), float(log_evidence))


class BetaPosterior(NamedTuple):
    alpha: float
    beta: float
    log_evidence: float


def beta_binomial(successes, trials, prior_alpha: float, prior_beta: float) -> BetaPosterior:
    """p ~ Beta(prior_alpha, prior_beta); successes[i] ~ Binomial(trials[i], p).

    Bernoulli data is ``trials = 1``. The evidence includes the binomial coefficients.
    """
    k = np.atleast_1d(np.asarray(successes, dtype=np.float64))
    n = np.broadcast_to(np.asarray(trials, dtype=np.float64), k.shape)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= trials")
    alpha = prior_alpha + k.sum()
    beta = prior_beta + (n - k).sum()
    log_binomial_coefficients = np.sum(_lgamma(n + 1) - _lgamma(k + 1) - _lgamma(n - k + 1))
    log_evidence = log_binomial_coefficients + _log_beta_fn(alpha, beta) - _log_beta_fn(prior_alpha, prior_beta)
    return BetaPosterior(float(alpha), float(beta), float(log_evidence))


class GammaPosterior(NamedTuple):
    shape: float
    rate: float
    log_evidence: float


def gamma_poisson(counts, prior_shape: float, prior_rate: float, exposure=1.0) -> GammaPosterior:
    """lam ~ Gamma(prior_shape, prior_rate) (rate parameterisation); counts[i] ~ Poisson(exposure[i]·lam)."""
    y = np.atleast_1d(np.asarray(counts, dtype=np.float64))
    e = np.broadcast_to(np.asarray(exposure, dtype=np.float64), y.shape)
    shape = prior_shape + y.sum()
    rate = prior_rate + e.sum()
    log_evidence = (
        np.sum(y * np.log(e) - _lgamma(y + 1))
        + prior_shape * math.log(prior_rate)
        - math.lgamma(prior_shape)
        + math.lgamma(shape)
        - shape * math.log(rate)
    )
    return GammaPosterior(float(shape), float(rate), float(log_evidence))


class LinearRegressionPosterior(NamedTuple):
    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D)
    log_evidence: float


def linear_regression(X, y, noise_sd: float, prior_mean, prior_cov) -> LinearRegressionPosterior:
    """beta ~ N(prior_mean, prior_cov); y ~ N(X @ beta, noise_sd² I) with noise_sd known.

    ``prior_mean`` may be a scalar (broadcast to D) and ``prior_cov`` a scalar variance
    (times the identity), a (D,) vector of variances or a (D, D) matrix.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    m0 = np.broadcast_to(np.asarray(prior_mean, dtype=np.float64), (d,))
    S0 = np.asarray(prior_cov, dtype=np.float64)
    if S0.ndim == 0:
        S0 = S0 * np.eye(d)
    elif S0.ndim == 1:
        S0 = np.diag(S0)
    noise_var = float(noise_sd) ** 2
    precision = np.linalg.inv(S0) + X.T @ X / noise_var
    cov = np.linalg.inv(precision)
    cov = 0.5 * (cov + cov.T)
    mean = cov @ (np.linalg.solve(S0, m0) + X.T @ y / noise_var)
    log_evidence = _mvn_logpdf(y, X @ m0, noise_var * np.eye(n) + X @ S0 @ X.T)
    return LinearRegressionPosterior(mean, cov, float(log_evidence))


def _mvn_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, x - mean)
    return float(-0.5 * z @ z - np.sum(np.log(np.diag(chol))) - 0.5 * x.size * _LOG_2PI)
