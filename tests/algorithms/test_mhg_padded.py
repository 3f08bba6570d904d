"""The padded-model protocol: masked transforms against numpyro's bijectors on the active slice,
padded densities against unpadded numpyro densities, insertion/removal, the masking check."""
import math

import numpy as np
import pytest

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import (AffineTransform, ComposeTransform, OrderedTransform,
                                              SigmoidTransform, biject_to)

from ppl.algorithms import mhg
from ppl.algorithms.padded import (Interval, Layout, Ordered, PaddedModel, Positive, Real, Simplex,
                                   SizedArray, SizeVar, ElementProposal, Continuous, active, constrain,
                                   dirichlet_log_prob, insert_at, iid_log_prob, ordered_iid_log_prob,
                                   log_jacobian_at, remove_at, to_nan, truncated_log_pmf, unconstrain)

CAP = 7


def reference_bijector(kind):
    if isinstance(kind, Real):
        return biject_to(constraints.real)
    if isinstance(kind, Positive):
        return biject_to(constraints.positive)
    if isinstance(kind, Interval):
        return biject_to(constraints.interval(kind.lo, kind.hi))
    if isinstance(kind, Simplex):
        return biject_to(constraints.simplex)
    if isinstance(kind, Ordered):
        parts = [OrderedTransform()]
        if math.isfinite(kind.lo) and math.isfinite(kind.hi):
            parts += [SigmoidTransform(), AffineTransform(kind.lo, kind.hi - kind.lo)]
        elif math.isfinite(kind.lo):
            parts += [biject_to(constraints.positive), AffineTransform(kind.lo, 1.0)]
        return ComposeTransform(parts)
    raise TypeError(kind)


KINDS = [Real(), Positive(), Interval(-1.0, 3.0), Ordered(), Ordered(0.0, 112.0), Ordered(2.0), Simplex()]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: type(k).__name__ + str(getattr(k, "lo", "")))
def test_masked_transform_matches_numpyro_on_the_active_slice(kind):
    @jax.jit
    def f(z, n):  # n traced: one compilation serves every size
        x, log_j = constrain(kind, z, n)
        g = jax.grad(lambda zz: constrain(kind, zz, n)[1] + jnp.sum(jnp.where(active(n, CAP), constrain(kind, zz, n)[0], 0.0)))(z)
        return x, log_j, unconstrain(kind, x, n), g, log_jacobian_at(kind, x, n)

    t = reference_bijector(kind)
    for n in (1, 2, 5, CAP):
        z = jnp.asarray(np.random.default_rng(n).normal(size=CAP))
        x, log_j, z_back, g, log_j_at = f(z, n)
        free = n - 1 if isinstance(kind, Simplex) else n
        x_ref = t(z[:free])
        np.testing.assert_allclose(x[:n], x_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(log_j, jnp.sum(t.log_abs_det_jacobian(z[:free], x_ref)), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(log_j_at, log_j, rtol=1e-9, atol=1e-9)  # from x alone
        assert np.all(np.asarray(x[n:]) == kind.filler)
        # inverse on the active entries, zeros elsewhere
        np.testing.assert_allclose(z_back[:free], z[:free], rtol=1e-8, atol=1e-8)
        assert np.all(np.asarray(z_back[free:]) == 0.0)
        # padding coordinates reach neither the values nor the Jacobian; gradients stay finite
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.all(np.asarray(g[free:]) == 0.0)


def test_insert_and_remove_are_inverse():
    x = jnp.arange(1.0, CAP + 1.0).at[4:].set(-1.0)  # 4 active
    y = insert_at(x, 2, 9.0, 4, -1.0)
    np.testing.assert_array_equal(y, [1, 2, 9, 3, 4, -1, -1])
    np.testing.assert_array_equal(remove_at(y, 2, 5, -1.0), x)
    np.testing.assert_array_equal(insert_at(x, 4, 9.0, 4, -1.0), [1, 2, 3, 4, 9, -1, -1])
    np.testing.assert_array_equal(remove_at(x, 0, 4, -1.0), [2, 3, 4, -1, -1, -1, -1])


def test_padded_densities_match_unpadded_numpyro_densities():
    rng = np.random.default_rng(0)
    d = dist.Normal(1.0, 2.0)
    x = jnp.asarray(np.sort(rng.normal(size=CAP)))
    for n in (0, 1, 3, CAP):
        assert np.isclose(iid_log_prob(d, x, n), np.sum(d.log_prob(x[:n])))
        # order statistics: n! Π f, and -inf when out of order
        assert np.isclose(ordered_iid_log_prob(d, x, n), np.sum(d.log_prob(x[:n])) + math.lgamma(n + 1))
    assert ordered_iid_log_prob(d, x[::-1], 3) == -np.inf
    assert np.isfinite(ordered_iid_log_prob(d, x.at[5].set(-9.0), 3))  # padding is ignored
    for n in (1, 2, 4):
        w = jnp.zeros(CAP).at[:n].set(jnp.asarray(rng.dirichlet(np.full(n, 1.5))))
        ref = dist.Dirichlet(jnp.full(n, 1.5)).log_prob(w[:n]) if n > 1 else 0.0
        assert np.isclose(dirichlet_log_prob(1.5, w, n), ref)
    assert dirichlet_log_prob(1.0, jnp.zeros(CAP).at[:2].set(0.7), 2) == -np.inf


def test_truncated_size_prior_is_normalised():
    lp = truncated_log_pmf(dist.Poisson(3.0), 0, 30)
    p = np.exp(np.asarray(jax.vmap(lp)(jnp.arange(0, 31))))
    assert np.isclose(p.sum(), 1.0)
    assert np.isclose(p[2] / p[1], 1.5)  # Poisson ratio unchanged by truncation
    assert lp(31) == -np.inf
    sv = SizeVar("k", 0, 8, truncated_log_pmf(dist.Poisson(2.0), 0, 8))
    assert np.isclose(sv.prior_pmf().sum(), 1.0)


def _toy(reads_padding=False):
    size = SizeVar("k", 0, 5, truncated_log_pmf(dist.Poisson(2.0), 0, 5))
    prop = ElementProposal.from_distribution(lambda s, d: dist.Normal(0.0, 1.0))
    arr = SizedArray("x", "k", kind=Real(), proposal=prop)

    def log_density(s, data):
        lp = size.log_prior(s["k"]) + iid_log_prob(dist.Normal(0.0, 1.0), s["x"], s["k"])
        if reads_padding:  # the bug the masking check exists for
            lp = lp + 1e-3 * jnp.sum(s["x"])
        return lp + dist.Normal(0.0, 1.0).log_prob(s["m"])

    def init(key, data):
        k1, k2 = jax.random.split(key)
        return {"k": jax.random.randint(k1, (), 0, 6), "x": jax.random.normal(k2, (5,)), "m": jnp.zeros(())}
    return PaddedModel((size,), (arr,), log_density, init, params=(Continuous("m"),))


def test_masking_check_catches_a_density_that_reads_the_padding():
    states = jax.vmap(lambda k: _toy().init(k, {}))(jax.random.split(jax.random.key(0), 16))
    assert mhg.check_masking(_toy(), states, {}, jax.random.key(1))["ok"]
    assert not mhg.check_masking(_toy(True), states, {}, jax.random.key(1))["ok"]
    with pytest.raises(ValueError, match="inactive entries"):
        mhg.validate(_toy(True), mhg.default_moves(_toy(True)), {}, jax.random.key(2), points=8)


def test_layout_masks_padding_and_outputs_show_it_as_nan():
    model = _toy()
    layout = Layout(model)
    state = {"k": jnp.int32(2), "x": jnp.arange(5.0), "m": jnp.asarray(0.5)}
    np.testing.assert_array_equal(layout.mask(state), [True, True, True, False, False, False])
    z = layout.unconstrain(state)
    g = jax.grad(lambda zz: layout.log_density_z(zz, state, {}))(z)
    assert np.all(np.asarray(g)[3:] == 0.0)
    out = to_nan(model, {"k": np.array([[2, 0]])}, {"x": np.ones((1, 2, 5))})["x"]
    assert np.isnan(out[0, 0, 2:]).all() and not np.isnan(out[0, 0, :2]).any() and np.isnan(out[0, 1]).all()


def test_protocol_rejects_inconsistent_models():
    size = SizeVar("k", 0, 3, lambda k: 0.0)
    with pytest.raises(ValueError, match="may be empty"):
        PaddedModel((size,), (SizedArray("w", "k", kind=Simplex()),), lambda s, d: 0.0, lambda k, d: {})
    with pytest.raises(ValueError, match="no element proposal"):
        PaddedModel((size,), (SizedArray("x", "k"),), lambda s, d: 0.0, lambda k, d: {})
    with pytest.raises(ValueError, match="unknown size"):
        PaddedModel((size,), (SizedArray("x", "j", proposal=ElementProposal(None, None)),),
                    lambda s, d: 0.0, lambda k, d: {})
    assert SizedArray("s", "k", kind=Ordered(), proposal=None).insertion == "sorted"
    assert active(2, 4).tolist() == [True, True, False, False]
