"""Involutions and their validation: derived birth/death and RG split/merge pass the checks
(round trip, Jacobian against finite differences, closed form against jacfwd + slogdet,
reversal); broken moves are refused with the move named."""
import sys
from pathlib import Path

import numpy as np
import pytest

import ppl  # noqa: F401  (float64)
import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from dataclasses import replace

from ppl.algorithms import mhg
from ppl.algorithms.involutions import (Aux, Involution, InvolutionError, auto_log_jacobian,
                                        birth_death, check_involution, normal_mixture_split_merge)
from ppl.algorithms.padded import Continuous, PaddedModel, Positive

sys.path.insert(0, str(Path(__file__).parent))
import mhg_models  # noqa: E402

POINTS = 8


def prior_states(model, data, n=POINTS, seed=0):
    return jax.jit(jax.vmap(lambda k: model.init(k, data)))(jax.random.split(jax.random.key(seed), n))


@pytest.fixture(scope="module", params=["polynomial", "coal_mining", "galaxy"])
def example(request, shared_data):
    model, data = getattr(mhg_models, request.param)()
    return model, data, prior_states(model, data)


def test_derived_birth_death_passes_every_check(example):
    model, data, states = example
    inv = birth_death(model, model.sizes[0].name)
    rep = check_involution(model, inv, states, data, jax.random.key(1))
    assert rep["round_trip"] <= 1.0 and rep["jacobian_status"] == ["ok"]
    assert rep["finite_differences"] < 1e-5
    assert rep["closed_form"] < 1e-8  # (1 − w*)^(n−1) for galaxy's weights, 0 for the others
    assert rep["reversal"] < 1e-8
    assert rep["finite_points"] >= POINTS // 2


@pytest.fixture(scope="module")
def galaxy(shared_data):
    model, data = mhg_models.galaxy()
    # states with 2..6 components spread over the data, where splits and merges are plausible
    rng = np.random.default_rng(3)
    rows = []
    for i in range(16):
        k = 2 + i % 5
        mu = np.zeros(30)
        mu[:k] = np.sort(np.linspace(10.0, 33.0, k) + 0.5 * rng.normal(size=k))
        w = np.zeros(30)
        w[:k] = rng.dirichlet(np.ones(k))
        rows.append({"k": np.int32(k), "w": w, "mu": mu, "tau": rng.gamma(2.0, 1.0, 30), "beta": rng.gamma(2.0)})
    states = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *rows)
    return model, data, states


@pytest.mark.parametrize("closed_form", [True, False])
def test_split_merge_passes_the_checks(galaxy, closed_form):
    model, data, states = galaxy
    inv = normal_mixture_split_merge(model, "k", "w", "mu", precisions="tau", closed_form_jacobian=closed_form)
    rep = check_involution(model, inv, states, data, jax.random.key(5))
    assert rep["jacobian_status"] == ["ok"] and rep["round_trip"] <= 1.0
    assert rep["finite_differences"] < 1e-5 and rep["reversal"] < 1e-8
    if closed_form:  # RG's eq. (12), carried to precisions, equals jacfwd + slogdet
        assert rep["closed_form"] < 1e-8


def test_a_map_that_is_not_an_involution_is_refused(galaxy):
    """A split whose "merge" forgets to undo the weight split (u1 read back as 1/2)."""
    model, data, states = galaxy
    good = normal_mixture_split_merge(model, "k", "w", "mu", precisions="tau")

    def apply(x, aux, data):
        x2, a2 = good.apply(x, aux, data)
        return x2, a2._replace(u=a2.u.at[0].set(jnp.where(a2.n_u > 0, 0.5, a2.u[0])))

    broken = replace(good, name="my_split_merge", apply=apply)
    with pytest.raises(InvolutionError, match='"my_split_merge".*round-trip') as e:
        check_involution(model, broken, states, data, jax.random.key(6))
    assert e.value.move == "my_split_merge"
    with pytest.raises(InvolutionError, match="my_split_merge"):
        mhg.validate(model, [(mhg.InvolutiveMove(model, broken), 1.0)], data, jax.random.key(7), states=states)


def test_a_wrong_closed_form_jacobian_is_refused(galaxy):
    model, data, states = galaxy
    bd = birth_death(model, "k")
    dropped = replace(bd, name="birth_death_without_jacobian", log_jacobian=lambda x, a, d: 0.0)
    with pytest.raises(InvolutionError, match="closed-form Jacobian"):
        check_involution(model, dropped, states, data, jax.random.key(8))


def _reciprocal_model():
    """One positive parameter x with a Gamma prior; the involution x -> c/x."""
    prior = dist.Gamma(3.0, 2.0)

    def log_density(s, data):
        return prior.log_prob(s["x"])
    return PaddedModel((), (), log_density, lambda k, d: {"x": prior.sample(k)},
                       params=(Continuous("x", Positive()),), name="reciprocal")


def _reciprocal(c=2.0, log_jacobian=None, max_local_dim=8):
    def propose(key, x, data):
        return Aux(jnp.zeros((), jnp.int32), jnp.zeros(1), jnp.int32(0))

    def apply(x, aux, data):
        return dict(x, x=c / x["x"]), aux
    return Involution("reciprocal", propose, lambda a, x, d: 0.0, apply, log_jacobian,
                      max_local_dim=max_local_dim)


def test_automatic_jacobian_and_the_reversal_check_on_a_dense_map():
    model = _reciprocal_model()
    states = prior_states(model, {}, 8)
    x = states["x"]
    inv = _reciprocal()
    ld, status = jax.vmap(lambda s: auto_log_jacobian(model, inv, s, inv.propose(None, s, {}), {}))(states)
    np.testing.assert_allclose(ld, np.log(2.0) - 2 * np.log(x), rtol=1e-12)
    assert np.all(np.asarray(status) == 0)
    good = _reciprocal(log_jacobian=lambda s, a, d: jnp.log(2.0) - 2 * jnp.log(s["x"]))
    assert check_involution(model, good, states, {}, jax.random.key(0))["closed_form"] < 1e-10
    # a closed form that is not antisymmetric under the involution: the reversal check sees it
    bad = _reciprocal(log_jacobian=lambda s, a, d: jnp.log(s["x"]))
    rep = check_involution(model, bad, states, {}, jax.random.key(0), raise_on_failure=False)
    assert rep["reversal"] == pytest.approx(np.log(2.0))
    with pytest.raises(InvolutionError, match="closed-form"):
        check_involution(model, bad, states, {}, jax.random.key(0))


def test_a_move_mixing_more_coordinates_than_declared_is_refused(galaxy):
    model, data, states = galaxy
    inv = normal_mixture_split_merge(model, "k", "w", "mu", precisions="tau", closed_form_jacobian=False)
    with pytest.raises(InvolutionError, match="max_local_dim"):
        check_involution(model, replace(inv, max_local_dim=4), states, data, jax.random.key(9))
