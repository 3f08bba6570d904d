"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman, 2018).

Draw θ from the prior, data from θ, then L posterior draws given the data: if inference is
correct, the rank of θ among the L draws is uniform on 0..L. Ranks are pooled over R
replicates and tested for uniformity (chi-square over bins, and a Kolmogorov–Smirnov bound
on the rank ECDF); rank histograms show *how* a sampler is wrong (∪ shape: too narrow,
∩ shape: too wide, slope: biased).

No scipy at runtime: the chi-square tail is the regularised incomplete gamma (series /
continued fraction in plain Python), the KS tail its asymptotic series. The statistics run
on the host in numpy: they are tiny, and op-by-op JAX dispatch would compile every op.
"""
from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# ---------------------------------------------------------------- ranks and thinning


def ranks(prior_draws: Array, posterior_draws: Array, key: Array | None = None) -> Array:
    """Number of posterior draws below the prior draw, per replicate and element.

    ``prior_draws`` (R, ...), ``posterior_draws`` (R, S, ...) -> int32 ranks (R, ...) in 0..S.
    With ``key``, draws equal to the prior draw are split at random — the rank becomes
    ``less + U{0..ties}`` — which keeps ranks uniform for discrete quantities. Without a key
    ties count as not below, which is right only when ties have probability zero.
    """
    prior_draws = jnp.asarray(prior_draws)
    posterior_draws = jnp.asarray(posterior_draws)
    if posterior_draws.shape[:1] + posterior_draws.shape[2:] != prior_draws.shape:
        raise ValueError(
            f"posterior draws {posterior_draws.shape} do not match prior draws {prior_draws.shape}: "
            "need (R, ...) and (R, S, ...)"
        )
    if key is None:
        return _ranks_below(prior_draws, posterior_draws)
    return _ranks_random_ties(prior_draws, posterior_draws, key)


@jax.jit
def _ranks_below(prior_draws, posterior_draws):
    return jnp.sum(posterior_draws < prior_draws[:, None], axis=1).astype(jnp.int32)


@jax.jit
def _ranks_random_ties(prior_draws, posterior_draws, key):
    uniforms = jax.random.uniform(key, prior_draws.shape, dtype=jnp.float32)
    return _ranks_with_uniforms(prior_draws, posterior_draws, uniforms)


def _ranks_with_uniforms(prior_draws, posterior_draws, uniforms):
    below = jnp.sum(posterior_draws < prior_draws[:, None], axis=1)
    ties = jnp.sum(posterior_draws == prior_draws[:, None], axis=1)
    # floor(U·(ties+1)) is uniform on 0..ties; cheaper to compile than randint.
    extra = jnp.minimum(jnp.floor(uniforms * (ties + 1)).astype(below.dtype), ties)
    return (below + extra).astype(jnp.int32)


def thinning_factor(num_draws: int, ess: float) -> int:
    """Keep every k-th draw so the L kept draws are roughly independent (k = ceil(S / ESS)).

    Autocorrelated draws make SBC ranks non-uniform even for a correct sampler.
    """
    if not ess > 0:
        raise ValueError(f"effective sample size must be positive, got {ess}")
    return max(1, math.ceil(num_draws / ess))


def thin(draws: Array, factor: int, axis: int = 1) -> Array:
    """Every ``factor``-th draw along ``axis`` (default: the draw axis of (R, S, ...))."""
    if factor < 1:
        raise ValueError(f"thinning factor must be >= 1, got {factor}")
    index = [slice(None)] * jnp.ndim(draws)
    index[axis] = slice(None, None, factor)
    return jnp.asarray(draws)[tuple(index)]


def thin_to(draws: Array, num_keep: int, axis: int = 1) -> Array:
    """``num_keep`` evenly spaced draws along ``axis``."""
    size = jnp.shape(draws)[axis]
    if not 1 <= num_keep <= size:
        raise ValueError(f"cannot keep {num_keep} of {size} draws")
    index = (np.arange(num_keep) * size) // num_keep
    return jnp.take(jnp.asarray(draws), jnp.asarray(index), axis=axis)


# ---------------------------------------------------------------- uniformity tests


class UniformityTest(NamedTuple):
    statistic: np.ndarray  # (...) chi-square statistic per quantity
    p_value: np.ndarray  # (...) upper tail probability under uniform ranks
    counts: np.ndarray  # (bins, ...) observed rank counts per bin
    expected: np.ndarray  # (bins,) expected counts per bin under uniformity
    bins: int


def default_bins(num_replicates: int, num_draws: int) -> int:
    """Up to 20 bins, at least ~5 expected ranks in each, never more bins than rank values."""
    return int(max(2, min(20, num_draws + 1, num_replicates // 5)))


def _bin_of(ranks_, num_draws: int, bins: int) -> np.ndarray:
    # Bin b holds ranks r with floor(r·B / (L+1)) = b: contiguous, widths differ by at most one.
    return (np.asarray(ranks_, dtype=np.int64) * bins) // (num_draws + 1)


def _expected_fractions(num_draws: int, bins: int) -> np.ndarray:
    values = np.arange(num_draws + 1)
    return np.bincount((values * bins) // (num_draws + 1), minlength=bins) / (num_draws + 1)


def _log_gamma_prefactor(a: float, x: float) -> float:
    return -x + a * math.log(x) - math.lgamma(a)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x): series below a+1, continued fraction above."""
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        term = total = 1.0 / a
        n = 0
        while abs(term) > abs(total) * 1e-17 and n < 10_000:
            n += 1
            term *= x / (a + n)
            total += term
        return max(0.0, 1.0 - total * math.exp(_log_gamma_prefactor(a, x)))
    # Modified Lentz evaluation of the continued fraction for Q.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(_log_gamma_prefactor(a, x)) * h


def chi2_sf(statistic, df) -> np.ndarray:
    """P(X > statistic) for X ~ chi-square(df), as the regularised upper incomplete gamma."""
    q = np.vectorize(lambda x, k: _gamma_q(k / 2.0, x / 2.0), otypes=[np.float64])
    return q(np.asarray(statistic, dtype=np.float64), np.asarray(df, dtype=np.float64))


def uniformity_test(ranks_, num_draws: int, bins: int | None = None) -> UniformityTest:
    """Pearson chi-square test that ranks in 0..num_draws are uniform, per quantity.

    ``ranks_`` has replicates on axis 0; every other axis is a separate quantity. Bins need not
    divide num_draws + 1: expected counts follow each bin's number of rank values.
    """
    ranks_ = np.asarray(ranks_)
    num_replicates = ranks_.shape[0]
    if bins is None:
        bins = default_bins(num_replicates, num_draws)
    bins = int(min(bins, num_draws + 1))
    if bins < 2:
        raise ValueError("a uniformity test needs at least two bins (num_draws >= 1)")
    which = _bin_of(ranks_, num_draws, bins)
    counts = np.sum(which[None] == np.arange(bins).reshape((bins,) + (1,) * ranks_.ndim), axis=1)
    expected = num_replicates * _expected_fractions(num_draws, bins)
    expected_b = expected.reshape((bins,) + (1,) * (ranks_.ndim - 1))
    statistic = np.sum((counts - expected_b) ** 2 / expected_b, axis=0)
    return UniformityTest(statistic, chi2_sf(statistic, bins - 1), counts, expected, bins)


class KSTest(NamedTuple):
    statistic: np.ndarray  # (...) sup |ECDF - CDF| over rank values
    p_value: np.ndarray  # (...) asymptotic Kolmogorov tail (conservative for discrete ranks)


def _kolmogorov_sf(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    k = np.arange(1, 101, dtype=np.float64)
    series = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * x[..., None] ** 2), axis=-1)
    # The series converges badly near 0, where the tail is 1 anyway.
    return np.clip(np.where(x < 0.2, 1.0, series), 0.0, 1.0)


def ks_uniformity_test(ranks_, num_draws: int) -> KSTest:
    """Kolmogorov–Smirnov distance between the rank ECDF and the discrete uniform on 0..L.

    Comparing at the rank values only makes the continuous-case p-value conservative: a small
    p-value still means non-uniform ranks. Uses Stephens' finite-sample scaling.
    """
    ranks_ = np.asarray(ranks_)
    n = ranks_.shape[0]
    values = np.arange(num_draws + 1)
    ecdf = np.mean(ranks_[None] <= values.reshape((-1,) + (1,) * ranks_.ndim), axis=1)
    cdf = ((values + 1) / (num_draws + 1)).reshape((-1,) + (1,) * (ranks_.ndim - 1))
    statistic = np.max(np.abs(ecdf - cdf), axis=0)
    root_n = math.sqrt(n)
    return KSTest(statistic, _kolmogorov_sf((root_n + 0.12 + 0.11 / root_n) * statistic))


# ---------------------------------------------------------------- plots


def _binomial_interval(n: int, p: float, coverage: float) -> tuple[int, int]:
    k = np.arange(n + 1)
    log_pmf = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k]
    ) + (k * math.log(p) if p > 0 else np.where(k == 0, 0.0, -np.inf)) + (
        (n - k) * math.log1p(-p) if p < 1 else np.where(k == n, 0.0, -np.inf)
    )
    cdf = np.cumsum(np.exp(log_pmf - np.logaddexp.reduce(log_pmf)))
    tail = (1 - coverage) / 2
    return int(np.searchsorted(cdf, tail)), int(np.searchsorted(cdf, 1 - tail))


def _element_labels(name: str, shape: tuple) -> list[tuple[str, tuple]]:
    if not shape:
        return [(name, ())]
    return [(f"{name}[{','.join(str(i + 1) for i in index)}]", index) for index in np.ndindex(*shape)]


def plot_rank_histograms(
    ranks_by_name: Mapping[str, Array],
    num_draws: int,
    path: str | os.PathLike,
    bins: int | None = None,
    coverage: float = 0.99,
    title: str | None = None,
) -> Path:
    """Write a PNG of rank histograms, one panel per scalar quantity, written atomically.

    Each panel shades the central ``coverage`` interval of every bin's count under uniform
    ranks (binomial), so bars outside the band stand out. The file appears complete or not at
    all: the figure is written to a temporary file in the same folder and `os.replace`d.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg via the .png writer

    panels = []
    for name, value in ranks_by_name.items():
        value = np.asarray(value)
        for label, index in _element_labels(name, value.shape[1:]):
            panels.append((label, value[(slice(None),) + index]))
    if not panels:
        raise ValueError("no ranks to plot")

    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows + (0.4 if title else 0)), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    for ax, (label, values) in zip(axes.ravel(), panels):
        num_replicates = values.shape[0]
        num_bins = min(bins or default_bins(num_replicates, num_draws), num_draws + 1)
        counts = np.bincount(np.asarray(_bin_of(values, num_draws, num_bins)), minlength=num_bins)
        fractions = _expected_fractions(num_draws, num_bins)
        # Bin edges in rank units, so unequal bins are drawn at their true widths.
        starts = np.concatenate([[0], np.cumsum(fractions * (num_draws + 1))])
        band = np.array([_binomial_interval(num_replicates, f, coverage) for f in fractions], dtype=float)
        ax.fill_between(starts, np.append(band[:, 0], band[-1, 0]), np.append(band[:, 1], band[-1, 1]), step="post", color="0.85", linewidth=0)
        ax.stairs(counts, starts, fill=True, color="tab:blue", alpha=0.8)
        ax.plot(starts, np.append(num_replicates * fractions, num_replicates * fractions[-1]), drawstyle="steps-post", color="0.3", linewidth=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(0, num_draws + 1)
        ax.set_xlabel("rank", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            figure.savefig(handle, format="png", dpi=100)
        # mkstemp makes 0600 files: give the PNG the mode an ordinary write would
        os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- driver


class SBCResult(NamedTuple):
    ranks: dict  # name -> (R, ...) int ranks in 0..num_draws (numpy)
    prior_draws: dict  # name -> (R, ...) the simulated true values (numpy)
    num_draws: int  # L: posterior draws per replicate after thinning
    tests: dict  # name -> UniformityTest


def run_sbc(
    key: Array,
    simulate: Callable[[Array], tuple[dict, object]],
    infer: Callable[[Array, object], dict],
    replicates: int,
    *,
    vmappable: bool = False,
    thin_by: int = 1,
    batch_size: int | None = None,
    bins: int | None = None,
) -> SBCResult:
    """Run SBC over user-supplied pure functions.

    ``simulate(key) -> (theta, data)``: theta a dict of prior draws, data any pytree.
    ``infer(key, data) -> draws``: a dict with the same names as theta, each (S, *shape).
    With ``vmappable`` everything — simulation, inference, ranking — is one compiled `vmap`
    over replicates (in batches of ``batch_size`` through `lax.map` when given, to bound
    memory); otherwise a Python loop over replicates calls the functions as given (jit them
    yourself if they can be). Replicate i uses ``fold_in(key, i)`` on both paths, so its
    result does not depend on ``replicates`` or on the path taken. Posterior draws are
    thinned by ``thin_by`` before ranking; ties are broken at random, so discrete parameters
    are handled. Ranks and prior draws come back as numpy arrays.
    """
    def rank_one(theta, draws, tie_key):
        missing = sorted(set(theta) - set(draws))
        if missing:
            raise ValueError(f"infer returned no draws for {', '.join(missing)} (it returned {', '.join(sorted(draws))})")
        # One batch of tie-breaking uniforms for all quantities: each random call site is a
        # separate threefry kernel for XLA to compile.
        counts = [math.prod(jnp.shape(truth)) for truth in theta.values()]
        uniforms = jax.random.uniform(tie_key, (sum(counts),), dtype=jnp.float32)
        rank_by_name, start = {}, 0
        for count, (name, truth) in zip(counts, theta.items()):
            truth = jnp.asarray(truth)
            posterior = thin(jnp.asarray(draws[name])[None], thin_by, axis=1)
            if posterior.shape[2:] != truth.shape:
                raise ValueError(f"{name}: draws of shape {posterior.shape[1:]} for a quantity of shape {truth.shape}")
            u = uniforms[start : start + count].reshape((1,) + truth.shape)
            rank_by_name[name] = _ranks_with_uniforms(truth[None], posterior, u)[0]
            start += count
        return rank_by_name

    # Draw counts are static shapes: recorded while tracing, as Python ints.
    sizes: dict[str, int] = {}

    def one_replicate(replicate_key):
        simulate_key, infer_key, tie_key = jax.random.split(replicate_key, 3)  # one kernel, not three fold_ins
        theta, data = simulate(simulate_key)
        draws = infer(infer_key, data)
        sizes.update({name: int(jnp.shape(d)[0]) for name, d in draws.items()})
        return theta, rank_one(theta, draws, tie_key)

    if vmappable:
        # One compiled program: key splitting, simulation, inference and ranking together.
        def all_replicates(key):
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(replicates))
            if batch_size is None:
                theta, rank_by_name = jax.vmap(one_replicate)(keys)
            else:
                theta, rank_by_name = jax.lax.map(one_replicate, keys, batch_size=batch_size)
            return theta, rank_by_name

        theta, rank_by_name = jax.jit(all_replicates)(key)
    else:
        rank_jitted = jax.jit(rank_one)
        outputs = []
        for index in range(replicates):
            replicate_key = jax.random.fold_in(key, index)
            simulate_key, infer_key, tie_key = jax.random.split(replicate_key, 3)
            theta_r, data = simulate(simulate_key)
            draws = infer(infer_key, data)
            outputs.append((theta_r, rank_jitted(theta_r, draws, tie_key)))
            sizes.update({name: int(jnp.shape(d)[0]) for name, d in draws.items()})
        theta = jax.tree.map(lambda *xs: jnp.stack(xs), *[o[0] for o in outputs])
        rank_by_name = jax.tree.map(lambda *xs: jnp.stack(xs), *[o[1] for o in outputs])

    thinned = {name: -(-sizes[name] // thin_by) for name in theta}
    if len(set(thinned.values())) != 1:
        raise ValueError(f"quantities have different numbers of posterior draws after thinning: {thinned}")
    num_draws = next(iter(thinned.values()))
    rank_by_name = {name: np.asarray(r) for name, r in rank_by_name.items()}
    tests = {name: uniformity_test(r, num_draws, bins) for name, r in rank_by_name.items()}
    return SBCResult(rank_by_name, {name: np.asarray(t) for name, t in theta.items()}, num_draws, tests)
