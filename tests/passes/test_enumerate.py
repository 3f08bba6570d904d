"""The enumerate pass against posteriors computed by hand and by the forward algorithm."""
import itertools
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.algorithms import hmm
from ppl.passes import passes
from ppl.syntax.errors import PPLError

ROOT = Path(__file__).resolve().parents[2]


def _exact(idata):
    attrs = idata.posterior.attrs
    marg = {k: np.asarray(v["probabilities"]) for k, v in json.loads(attrs["marginals"]).items()}
    return float(attrs["log_evidence"]), marg


@pytest.fixture(scope="module")
def sprinkler():
    model = ppl.load(ROOT / "examples" / "sprinkler.ppl")
    return model, model.sample(ROOT / "examples" / "sprinkler.json", method="enumerate",
                               chains=2, draws=2000, seed=1)


def test_sprinkler_matches_hand_computation(sprinkler):
    model, idata = sprinkler
    # p(c, s, r, wet=1) = p(c) p(s|c) p(r|c) p(wet=1|s,r), p(c = 1) = 0.5
    p_s = {1: 0.1, 0: 0.5}
    p_r = {1: 0.8, 0: 0.2}
    p_w = {(1, 1): 0.99, (1, 0): 0.9, (0, 1): 0.9, (0, 0): 0.0}
    joint = {}
    for c, s, r in itertools.product([0, 1], repeat=3):
        joint[c, s, r] = 0.5 * (p_s[c] if s else 1 - p_s[c]) * (p_r[c] if r else 1 - p_r[c]) * p_w[s, r]
    evidence = sum(joint.values())  # 0.6471
    log_ev, marg = _exact(idata)
    assert abs(log_ev - np.log(evidence)) < 1e-9
    for i, name in enumerate(["cloudy", "sprinkler", "rain"]):
        p1 = sum(v for k, v in joint.items() if k[i] == 1) / evidence
        assert abs(marg[name][1] - p1) < 1e-9, name
        assert abs(marg[name][0] + marg[name][1] - 1) < 1e-12
        # the draws come from the exact posterior: their mean is within 5 Monte Carlo sd
        draws = idata.posterior[name].values
        assert abs(draws.mean() - p1) < 5 * np.sqrt(p1 * (1 - p1) / draws.size)
    # deterministic variables are reported per draw
    assert set(np.unique(idata.posterior["p_wet"].values)) <= {0.99, 0.9}


def test_auto_chooses_enumerate(sprinkler):
    model, _ = sprinkler
    assert model.plan().method == "enumerate"


HMM = """
data T: int
data K: int
data init: simplex[K]
data P: simplex[K][K]
data mu: real[K]
data y: real[T]
z: int[T]
z[1] ~ categorical(init)
for t in 2:T {
  z[t] ~ categorical(P[z[t-1]])
}
for t in 1:T {
  y[t] ~ normal(mu[z[t]], 1.5)
}
"""


def test_small_hmm_matches_forward_algorithm():
    model = ppl.compile(HMM)
    data = {"T": 6, "K": 3, "init": [0.5, 0.3, 0.2],
            "P": [[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]],
            "mu": [-2.0, 0.0, 3.0], "y": [-1.0, -2.5, 0.3, 2.8, 3.5, 0.1]}
    idata = model.sample(data, method="enumerate", chains=1, draws=100)
    log_ev, marg = _exact(idata)
    mu, y = np.asarray(data["mu"]), np.asarray(data["y"])
    log_obs = -0.5 * ((y[:, None] - mu[None]) / 1.5) ** 2 - np.log(1.5 * np.sqrt(2 * np.pi))
    ref = hmm.backward_smoothing(jnp.log(jnp.asarray(data["init"])), jnp.log(jnp.asarray(data["P"])),
                                 jnp.asarray(log_obs))
    assert abs(log_ev - float(ref.log_evidence)) < 1e-9
    np.testing.assert_allclose(marg["z"], np.asarray(ref.marginals), atol=1e-9)
    assert idata.posterior["z"].shape == (1, 100, 6)
    assert set(np.unique(idata.posterior["z"].values)) <= {1, 2, 3}  # 1-based categories


def test_support_too_large_says_how_large():
    model = ppl.compile(HMM)
    data = {"T": 30, "K": 3, "init": [0.5, 0.3, 0.2],
            "P": [[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]],
            "mu": [-2.0, 0.0, 3.0], "y": [0.0] * 30}
    with pytest.raises(PPLError) as e:
        model.sample(data, method="enumerate")
    assert "205,891,132,094,649" in str(e.value)  # 3^30


def test_diagnose_explains_refusals():
    p = passes()["enumerate"]
    d = p.diagnose(ppl.compile("mu ~ normal(0, 1)\ndata y: real\ny ~ normal(mu, 1)").graph)
    assert not d and '"mu" (line 1) is continuous' in d.reason
    d = p.diagnose(ppl.compile("k ~ poisson(3)\ndata y: real\ny ~ normal(k, 1)").graph)
    assert not d and "unbounded" in d.reason and "declare bounds" in d.reason
    bounded = ppl.compile("k: int<lower=0, upper=30> ~ poisson(3)\ndata y: real\ny ~ normal(k, 1)")
    assert p.diagnose(bounded.graph)
    idata = bounded.sample({"y": 4.0}, method="enumerate", chains=1, draws=10)
    log_ev, marg = _exact(idata)
    from math import exp, factorial, log, pi, sqrt
    terms = [exp(-3) * 3 ** k / factorial(k) * exp(-0.5 * (4 - k) ** 2) / sqrt(2 * pi) for k in range(31)]
    assert abs(log_ev - log(sum(terms))) < 1e-9
    np.testing.assert_allclose(marg["k"], np.asarray(terms) / sum(terms), atol=1e-9)


def test_validation_compares_with_numpyro(sprinkler):
    model, _ = sprinkler
    lowered = model.lower(ROOT / "examples" / "sprinkler.json")
    p = passes()["enumerate"]
    import jax
    res = p.validate(p.build(lowered, {"chains": 1, "draws": 10}), jax.random.PRNGKey(3))
    assert res["checked"] and res["max_abs_diff"] < 1e-10
