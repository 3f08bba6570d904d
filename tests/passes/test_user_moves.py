"""User-written moves (`move NAME(…) { propose { … } involution { … } }`, docs/mhg.md) in the
mhg pass: the stdlib split/merge written in the language maps states exactly as the
hand-written Richardson & Green involution (ppl/algorithms/involutions.py) and its automatic
Jacobian equals RG's closed form; it passes the involution checks; broken moves are refused
with an error at their name; a fixed-dimension move with a non-unit Jacobian leaves the prior
invariant (exact answer); (slow) p(k | y) on a small mixture is the same with split/merge as
the only trans-dimensional move and with birth/death alone."""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.algorithms.involutions import Aux, UP, auto_log_jacobian, normal_mixture_split_merge
from ppl.algorithms.padded import clean
from ppl.passes.mhg import MHGPass
from ppl.passes.user_moves import UserMoveKernel
from ppl.syntax.errors import PPLError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "algorithms"))
from mhg_stats import z_scores  # noqa: E402

GALAXY = (ROOT / "examples" / "galaxy.ppl").read_text()
SPLIT_MERGE = "move split_merge_precision(k, w, mu, tau, k_max)\n"


def _build(source, data, filename="m.ppl", **options):
    model = ppl.compile(source, filename)
    lowered = model.lower(data, "mhg")
    opts = dict({"chains": 4, "draws": 100, "warmup": 100}, **options)
    return MHGPass().build(lowered, opts), lowered


def _small_galaxy(shared_data, n=20, k_max=6):
    d = json.loads((shared_data / "rjmcmc" / "galaxy.json").read_text())
    y = np.sort(np.asarray(d["y"]))[:: max(1, len(d["y"]) // n)][:n]
    d.update(N=int(len(y)), y=y.tolist(), k_max=k_max)
    d.pop("R", None)
    return d


# the galaxy model (examples/galaxy.ppl) on six velocities, k ≤ 4: small programs, quick checks
SMALL = {"N": 6, "y": [9.2, 10.2, 19.5, 20.8, 22.7, 33.0], "k_max": 4, "xi": 21.7,
         "kappa": 0.0016, "alpha": 2.0, "g": 0.2, "h": 0.016}


@pytest.fixture(scope="module")
def small_sm():
    return _build(GALAXY + SPLIT_MERGE, SMALL, "galaxy.ppl")


def _user(program):
    (kernel,) = [m for m, _ in program.moves if isinstance(m, UserMoveKernel)]
    return kernel


@pytest.mark.slow  # the galaxy split/merge program compiles for ~40 s
def test_split_merge_from_stdlib_joins_the_moves_and_passes_the_checks(small_sm):
    program, lowered = small_sm
    kernel = _user(program)
    assert kernel.name == "split_merge_precision"
    (move,) = lowered.ir.moves
    assert move.real_aux == ("u1", "u2", "u3") and move.discrete_aux == ("split", "j")
    assert set(move.writes) == {"k", "w", "mu", "tau"}
    r = kernel.report
    assert r["points"] == 8 and r["finite_points"] > 0
    assert r["round_trip"] <= 1.0 and r["log_det_error"] <= 1e-6 and r["reversal"] <= 1e-6
    assert any("split_merge_precision" in line for line in program.describe_moves())


@pytest.mark.slow  # the galaxy split/merge program compiles for ~40 s
def test_language_split_equals_the_hand_written_involution_and_rg_jacobian(small_sm):
    """Same state and auxiliaries: the same new state, and the automatic log-Jacobian of the
    language's map equals Richardson & Green's closed form (eq. 12, in precisions)."""
    program, lowered = small_sm
    model, data = program.model, lowered.data_arrays
    um = _user(program).user
    ref = normal_mixture_split_merge(model, "k", "w", "mu", precisions="tau")
    k_max = SMALL["k_max"]

    def one(key):
        x = clean(model, model.init(key, data))
        k = x["k"]
        j = jax.random.randint(jax.random.fold_in(key, 1), (), 0, jnp.maximum(k, 1))
        u = jax.random.uniform(jax.random.fold_in(key, 2), (3,), minval=0.05, maxval=0.95)
        values = {"split": jnp.int32(1), "j": (j + 1).astype(jnp.int32), "u1": u[0], "u2": u[1], "u3": u[2]}
        aux = um._encode(values, {n: jnp.bool_(True) for n in values})
        x2, a2 = um.apply(x, aux, data)
        ref_aux = Aux(jnp.stack([UP, j]).astype(jnp.int32), u, jnp.int32(3))
        y2, _ = ref.apply(x, ref_aux, data)
        x2, y2 = clean(model, x2), clean(model, y2)
        ld, status = auto_log_jacobian(model, um.involution, x, aux, data)
        back = Aux(jnp.stack([1, j]).astype(jnp.int32), jnp.zeros(3), jnp.int32(0))
        return dict(k=k, k2=x2["k"], ky=y2["k"], x2={n: x2[n] for n in ("w", "mu", "tau")},
                    y2={n: y2[n] for n in ("w", "mu", "tau")}, n_u=a2.n_u, ld=ld, status=status,
                    ld_ref=ref.log_jacobian(x, ref_aux, data),
                    lq=um.log_q(aux, x, data), lq_ref=ref.log_q(ref_aux, x, data),
                    lq_back=um.log_q(a2, x2, data), lq_back_ref=ref.log_q(back, y2, data))
    r = jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(11), 16)))
    keep = r["k"] < k_max
    assert keep.sum() >= 5
    assert np.all(r["k2"][keep] == r["k"][keep] + 1) and np.all(r["ky"][keep] == r["k"][keep] + 1)
    for i in np.flatnonzero(keep):
        n = int(r["k"][i]) + 1
        for name in ("w", "mu", "tau"):
            np.testing.assert_allclose(r["x2"][name][i][:n], r["y2"][name][i][:n], rtol=1e-10, atol=1e-12)
    assert np.all(r["n_u"][keep] == 0) and np.all(r["status"][keep] == 0)
    # the automatic Jacobian of the language's map = RG's closed form
    np.testing.assert_allclose(r["ld"][keep], r["ld_ref"][keep], rtol=1e-8, atol=1e-8)
    # log q: split probability, 1/k for j, Beta(2,2)² Beta(1,1) for u; merge: 1/k at k + 1
    np.testing.assert_allclose(r["lq"][keep], r["lq_ref"][keep], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(r["lq_back"][keep], r["lq_back_ref"][keep], rtol=1e-10, atol=1e-10)


NOT_AN_INVOLUTION = """
move broken_split(weight = 0.5) {
  propose {
    split ~ bernoulli(k == 1 ? 1.0 : (k == k_max ? 0.0 : 0.5))
    if split == 1 {
      j ~ categorical(rep(1.0 / k, k))
      u ~ normal(0, 1)
    } else {
      j ~ categorical(rep(1.0 / (k - 1), k - 1))
    }
  }
  involution {
    if split == 1 {
      mu = insert(mu, j + 1, mu[j] + exp(u))
      w[j] = w[j] / 2
      w = insert(w, j + 1, w[j])
      tau = insert(tau, j + 1, tau[j])
      k = k + 1
    } else {
      u = log(mu[j + 1] - mu[j])
      w[j] = w[j] + w[j + 1]
      w = remove(w, j + 1)
      mu = remove(mu, j + 1)
      tau = remove(tau, j + 1)
      k = k - 1
      split = 1
    }
  }
}
"""


def test_a_move_that_is_not_an_involution_is_refused_at_its_name():
    """The split forgets to set `split = 0` for the reverse move (and its Jacobian would be
    rank-deficient too): h∘h ≠ id. Refused with an error at the move's name."""
    src = GALAXY + NOT_AN_INVOLUTION
    with pytest.raises(PPLError) as e:
        _build(src, SMALL, "galaxy.ppl")
    err = e.value
    assert 'move "broken_split"' in err.message and "round-trip" in err.message
    line = src.splitlines()[err.span.line - 1]
    assert line[err.span.col - 1:err.span.end_col - 1] == "broken_split"
    assert err.hint and "twice" in err.hint
    assert "galaxy.ppl" in err.format()


GROWS_FROM_NOTHING = """
move grow(weight = 0.5) {
  propose {
    up ~ bernoulli(1.0)
  }
  involution {
    if up == 1 {
      k = k + 1
      up = 0
    } else {
      k = k - 1
      up = 1
    }
  }
}
"""


def test_a_move_whose_jacobian_is_not_square_is_refused():
    """k → k + 1 with nothing to fill the new coordinates (always proposed upwards, so h∘h = id
    holds at the points it is tried; a move that also shrank would lose the removed values and
    fail the round trip first): (x, u) and (x′, u′) have different counts of continuous
    coordinates, so the Jacobian is not square."""
    with pytest.raises(PPLError) as e:
        _build(GALAXY + GROWS_FROM_NOTHING, SMALL, "galaxy.ppl")
    assert 'move "grow"' in e.value.message and "Jacobian" in e.value.message
    assert "dimension mismatch" in e.value.message
    assert e.value.span.line == len(GALAXY.splitlines()) + 2


SCALE = """\
data k_max: int
k: int<lower=1, upper=k_max> ~ categorical(rep(1.0 / k_max, k_max))
s ~ gamma(3, 2)
x: real[k] ~ normal(0, s)
move scale(weight = 2) {
  propose {
    u ~ normal(0, 0.4)
  }
  involution {
    s = s * exp(u)
    x = x * exp(u)
    u = -u
  }
}
"""


@pytest.fixture(scope="module")
def scale_run():
    """Only birth/death and the user's scale move (no within move): s moves by the move alone,
    whose Jacobian exp(u)^(1 + k) depends on the active size."""
    program, lowered = _build(SCALE, {"k_max": 4}, chains=4, draws=4000, warmup=500, within_weight=0)
    program.run(lowered.data_arrays, seed=3)
    return program


@pytest.mark.slow  # a chain: 4 × 4500 iterations, and its compilation
def test_fixed_dimension_move_with_a_jacobian_keeps_the_prior(scale_run):
    res = scale_run.result
    assert res.acceptance()["scale"] > 0.3
    s = np.asarray(res.params["s"])
    import arviz as az
    for f, exact in ((lambda v: v, 1.5), (np.log, float(jax.scipy.special.digamma(3.0)) - np.log(2.0))):
        v = f(s)
        se = v.std() / np.sqrt(float(az.ess(v)))
        assert abs(v.mean() - exact) < 4 * se, (v.mean(), exact, se)
    k = np.asarray(res.sizes["k"])
    _, _, z = z_scores(k, [1, 2, 3, 4], [0.25] * 4)
    assert np.all(np.abs(z) < 4), z


@pytest.mark.slow
def test_small_mixture_p_k_same_with_split_merge_alone_and_birth_death_alone(shared_data):
    """p(k | y) on 20 galaxy velocities, k ≤ 6: split/merge as the only trans-dimensional move
    (birth/death weight 0) against birth/death alone (the language's moves off)."""
    data = _small_galaxy(shared_data)
    runs = {}
    for label, opts in (("split_merge", {"jump_weight": 0}), ("birth_death", {"moves": "off"})):
        program, lowered = _build(GALAXY + SPLIT_MERGE, data, "galaxy.ppl", chains=4, draws=6000,
                                  warmup=1000, **opts)
        program.run(lowered.data_arrays, seed=5)
        runs[label] = program.result
    assert runs["split_merge"].acceptance()["split_merge_precision"] > 0.01
    values = list(range(1, 7))
    p = {}
    for label, res in runs.items():
        _, pk, se = res.size_posterior("k")
        p[label] = (pk, se)
    (p1, s1), (p2, s2) = p["split_merge"], p["birth_death"]
    se = np.sqrt(s1 ** 2 + s2 ** 2)
    z = np.where(se > 0, (p1 - p2) / np.where(se > 0, se, 1), 0.0)
    assert np.all(np.abs(z) < 4), (values, p1, p2, se)
