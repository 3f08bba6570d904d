"""Math functions of the language (Stan's names), as jax.numpy callables.

`arity` is (min, max) number of arguments; `static` lists argument positions that must be known
at compile time (sizes), so the checker can require data or literals there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np
from jax.scipy.stats import norm

from .distributions import CDF_DISTRIBUTIONS, CDF_SUFFIXES, cdf_function, cdf_value


@dataclass(frozen=True)
class FunSpec:
    name: str
    fn: Callable
    arity: Tuple[int, int]
    static: Tuple[int, ...] = ()
    # rank of the result: None = same as (broadcast of) the arguments; an int = fixed
    result_rank: object = None
    integer: bool = False  # result is an integer when the arguments are


def _sd(x):
    x = jnp.ravel(x)
    return jnp.std(x, ddof=1)


def _variance(x):
    return jnp.var(jnp.ravel(x), ddof=1)


def _log_sum_exp(*xs):
    if len(xs) == 1:
        return jss.logsumexp(xs[0])
    return jnp.logaddexp(xs[0], xs[1])


def _rep(x, *dims):
    return jnp.broadcast_to(jnp.asarray(x), tuple(int(d) for d in dims) + jnp.shape(x))


def _fill(value):
    def f(*dims):
        return jnp.full(tuple(int(d) for d in dims), value, dtype=jnp.result_type(float))
    return f


def _linspaced(n, lo, hi):
    return jnp.linspace(lo, hi, int(n))


def _gp_exp_quad_cov(x, alpha, rho):
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    d2 = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return alpha**2 * jnp.exp(-0.5 * d2 / rho**2)


def _log_mix(theta, a, b):
    return jnp.logaddexp(jnp.log(theta) + a, jnp.log1p(-theta) + b)


def _spacings(x, lo, hi):
    """The K + 1 gaps of sorted points x_1 < … < x_K in (lo, hi): x_1 − lo, x_2 − x_1, …, hi − x_K."""
    x = jnp.asarray(x)
    dt = jnp.result_type(x.dtype, float)
    edges = jnp.concatenate([jnp.reshape(jnp.asarray(lo, dt), (1,)), x.astype(dt),
                             jnp.reshape(jnp.asarray(hi, dt), (1,))])
    return jnp.diff(edges)


def _piecewise_constant(x, breaks, values):
    """values[j] where breaks[j − 1] <= x < breaks[j] (K sorted breaks, K + 1 values), elementwise in x."""
    x = jnp.asarray(x)
    j = jnp.sum(jnp.asarray(breaks) <= x[..., None], axis=-1)
    return jnp.asarray(values)[j]


def _spec(name, fn, lo, hi=None, **kw):
    return FunSpec(name, fn, (lo, lo if hi is None else hi), **kw)


_EL = [  # elementwise, one argument
    ("exp", jnp.exp), ("log", jnp.log), ("log1p", jnp.log1p), ("expm1", jnp.expm1),
    ("log2", jnp.log2), ("log10", jnp.log10), ("exp2", jnp.exp2),
    ("sqrt", jnp.sqrt), ("cbrt", jnp.cbrt), ("square", jnp.square), ("abs", jnp.abs),
    ("fabs", jnp.abs), ("inv", lambda x: 1.0 / x), ("inv_sqrt", jax.lax.rsqrt),
    ("inv_square", lambda x: 1.0 / x**2),
    ("inv_logit", jax.nn.sigmoid), ("logistic", jax.nn.sigmoid), ("logit", jss.logit),
    ("log_inv_logit", jax.nn.log_sigmoid), ("log1m_inv_logit", lambda x: jax.nn.log_sigmoid(-x)),
    ("log1m", lambda x: jnp.log1p(-x)), ("log1m_exp", lambda x: jnp.log(-jnp.expm1(x))),
    ("log1p_exp", jax.nn.softplus), ("softplus", jax.nn.softplus),
    ("sin", jnp.sin), ("cos", jnp.cos), ("tan", jnp.tan), ("asin", jnp.arcsin),
    ("acos", jnp.arccos), ("atan", jnp.arctan), ("sinh", jnp.sinh), ("cosh", jnp.cosh),
    ("tanh", jnp.tanh), ("asinh", jnp.arcsinh), ("acosh", jnp.arccosh), ("atanh", jnp.arctanh),
    ("lgamma", jss.gammaln), ("tgamma", lambda x: jnp.exp(jss.gammaln(x))),
    ("digamma", jss.digamma), ("erf", jss.erf), ("erfc", jss.erfc), ("Phi", norm.cdf),
    ("Phi_approx", lambda x: jax.nn.sigmoid(0.07056 * x**3 + 1.5976 * x)),
    ("inv_Phi", jss.ndtri), ("step", lambda x: jnp.where(x < 0, 0.0, 1.0)),
    ("is_inf", jnp.isinf), ("is_nan", jnp.isnan),
]
_EL_INT = [("floor", jnp.floor), ("ceil", jnp.ceil), ("round", jnp.round), ("trunc", jnp.trunc),
           ("int_step", lambda x: (x > 0).astype(jnp.int32))]
_EL2 = [
    ("pow", jnp.power), ("fmin", jnp.minimum), ("fmax", jnp.maximum), ("fmod", jnp.fmod),
    ("hypot", jnp.hypot), ("atan2", jnp.arctan2), ("lbeta", jss.betaln),
    ("lchoose", lambda n, k: jss.gammaln(n + 1) - jss.gammaln(k + 1) - jss.gammaln(n - k + 1)),
    ("binomial_coefficient_log", lambda n, k: jss.gammaln(n + 1) - jss.gammaln(k + 1) - jss.gammaln(n - k + 1)),
    ("log_diff_exp", lambda a, b: a + jnp.log(-jnp.expm1(b - a))),
    ("fdim", lambda a, b: jnp.maximum(a - b, 0.0)),
]
_RED = [  # reductions to a scalar
    ("sum", jnp.sum), ("prod", jnp.prod), ("mean", jnp.mean), ("sd", _sd), ("variance", _variance),
    ("norm2", jnp.linalg.norm), ("squared_norm", lambda x: jnp.sum(jnp.square(x))),
    ("log_determinant", lambda m: jnp.linalg.slogdet(m)[1]), ("determinant", jnp.linalg.det),
]

ELEMENTWISE = frozenset(n for n, _ in _EL + _EL_INT + _EL2)  # applied element by element

FUNCTIONS = {}
for _n, _fn in _EL:
    FUNCTIONS[_n] = _spec(_n, _fn, 1)
for _n, _fn in _EL_INT:
    FUNCTIONS[_n] = _spec(_n, _fn, 1, integer=True)
for _n, _fn in _EL2:
    FUNCTIONS[_n] = _spec(_n, _fn, 2)
for _n, _fn in _RED:
    FUNCTIONS[_n] = _spec(_n, _fn, 1, result_rank=0)

for _s in [
    _spec("min", lambda *a: jnp.min(a[0]) if len(a) == 1 else jnp.minimum(*a), 1, 2, result_rank=None, integer=True),
    _spec("max", lambda *a: jnp.max(a[0]) if len(a) == 1 else jnp.maximum(*a), 1, 2, result_rank=None, integer=True),
    _spec("log_sum_exp", _log_sum_exp, 1, 2, result_rank=0),
    _spec("log_mix", _log_mix, 3),
    _spec("softmax", jax.nn.softmax, 1),
    _spec("log_softmax", jax.nn.log_softmax, 1),
    _spec("cumsum", jnp.cumsum, 1), _spec("cumulative_sum", jnp.cumsum, 1),
    _spec("dot", jnp.dot, 2, result_rank=0), _spec("dot_product", jnp.dot, 2, result_rank=0),
    _spec("dot_self", lambda x: jnp.dot(x, x), 1, result_rank=0),
    _spec("rep", _rep, 2, 4, static=(1, 2, 3)),
    _spec("rep_vector", _rep, 2, static=(1,), result_rank=1),
    _spec("rep_array", _rep, 2, 4, static=(1, 2, 3)),
    _spec("rep_matrix", _rep, 3, static=(1, 2), result_rank=2),
    _spec("zeros", _fill(0.0), 1, 3, static=(0, 1, 2)),
    _spec("ones", _fill(1.0), 1, 3, static=(0, 1, 2)),
    _spec("linspaced_vector", _linspaced, 3, static=(0,), result_rank=1),
    _spec("cholesky", jnp.linalg.cholesky, 1, result_rank=2),
    _spec("cholesky_decompose", jnp.linalg.cholesky, 1, result_rank=2),
    _spec("inverse", jnp.linalg.inv, 1, result_rank=2),
    _spec("transpose", jnp.transpose, 1),
    _spec("diag_matrix", jnp.diag, 1, result_rank=2),
    _spec("diagonal", jnp.diagonal, 1, result_rank=1),
    _spec("diag_pre_multiply", lambda v, m: v[..., :, None] * m, 2, result_rank=2),
    _spec("diag_post_multiply", lambda m, v: m * v[..., None, :], 2, result_rank=2),
    _spec("multiply_lower_tri_self_transpose", lambda L: L @ jnp.swapaxes(L, -1, -2), 1, result_rank=2),
    _spec("tcrossprod", lambda m: m @ jnp.swapaxes(m, -1, -2), 1, result_rank=2),
    _spec("crossprod", lambda m: jnp.swapaxes(m, -1, -2) @ m, 1, result_rank=2),
    _spec("quad_form", lambda m, v: v @ m @ v, 2, result_rank=0),
    _spec("mdivide_left_tri_low", lambda L, b: jax.scipy.linalg.solve_triangular(L, b, lower=True), 2),
    _spec("to_vector", jnp.ravel, 1, result_rank=1),
    _spec("flatten", jnp.ravel, 1, result_rank=1),
    _spec("sort", jnp.sort, 1), _spec("sort_asc", jnp.sort, 1),
    # change points (an ordered array, also one whose size is random): gaps and step functions
    _spec("spacings", _spacings, 3, result_rank=1),
    _spec("piecewise_constant", _piecewise_constant, 3),
    _spec("reverse", lambda x: x[::-1], 1),
    _spec("if_else", jnp.where, 3),
    _spec("size", lambda x: jnp.shape(x)[0], 1, result_rank=0, integer=True),
    _spec("num_elements", jnp.size, 1, result_rank=0, integer=True),
    # shapes are known before inference: Python / NumPy integers, usable as sizes
    _spec("rows", lambda x: int(jnp.shape(x)[0]), 1, result_rank=0, integer=True),
    _spec("cols", lambda x: int(jnp.shape(x)[1]) if jnp.ndim(x) >= 2 else 1, 1, result_rank=0,
          integer=True),
    _spec("dims", lambda x: np.asarray(jnp.shape(x), dtype=np.int64), 1, result_rank=1,
          integer=True),
    _spec("gp_exp_quad_cov", _gp_exp_quad_cov, 3, result_rank=2),
    _spec("pi", lambda: jnp.pi, 0, result_rank=0),
    _spec("e", lambda: jnp.e, 0, result_rank=0),
    _spec("sqrt2", lambda: jnp.sqrt(2.0), 0, result_rank=0),
    _spec("positive_infinity", lambda: jnp.inf, 0, result_rank=0),
    _spec("negative_infinity", lambda: -jnp.inf, 0, result_rank=0),
    _spec("not_a_number", lambda: jnp.nan, 0, result_rank=0),
    _spec("machine_precision", lambda: jnp.finfo(jnp.result_type(float)).eps, 0, result_rank=0),
]:
    FUNCTIONS[_s.name] = _s


def _cdf_spec(name):
    spec, kind = cdf_function(name)
    n = len(spec.params) + 1
    return FunSpec(name, lambda y, *a: cdf_value(spec, kind, y, *a), (n, n), result_rank=0)


def _cdf_functions():
    return {d + s: _cdf_spec(d + s) for d in sorted(CDF_DISTRIBUTIONS) for s in CDF_SUFFIXES}


# `normal_lcdf(y | mu, sigma)` …: called with "|" like the densities (ppl/check/checker.py)
CDF_FUNCTIONS = _cdf_functions()
FUNCTIONS.update(CDF_FUNCTIONS)
