"""Prior recovery through the language, with its negative controls.

examples/coal_mining.ppl and examples/galaxy.ppl run by the `mhg` pass with their observations
removed (N = 0; for coal mining also the process's −∫ rate term) must return the prior of their size variable (chi-square on effective counts,
p > 0.001) and prior marginals given k (KS). The same test must reject (p < 0.001) when the
sampler is broken on purpose in the three classic ways:

* "jacobian": the weight split's Jacobian (1 − w*)^(k−1) dropped from the birth/death ratio
  (galaxy: the only derived move with a Jacobian ≠ 1 is the simplex split);
* "reverse": the reverse move's probability swapped — a death at k points priced as if it
  chose among the k − 1 points of the state its reverse birth starts from (coal mining);
* "order_statistics": the k! of `ordered[k]` dropped from the program's density (coal mining:
  the lowering's `_padded_exact_log_prob` patched).

Within moves are the random walk (cheap; the size's prior does not depend on them), the same
for the intact and the broken runs."""
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln
from scipy import stats

import ppl
import ppl.lower.interpreter as interpreter
from ppl.algorithms import mhg as M
from ppl.algorithms.involutions import UP
from ppl.lower.random import rng_key
from ppl.passes.mhg import MHGPass

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "algorithms"))
from mhg_stats import chi_square, ks_given  # noqa: E402

FILES = {"coal_mining.ppl": ("coal_mining_disasters.json", "times"), "galaxy.ppl": ("galaxy.json", "y")}
CHAINS = 4


def without_observations(shared_data, example):
    name, obs = FILES[example]
    data = json.loads((shared_data / "rjmcmc" / name).read_text())
    data.update({"N": 0, obs: []})
    return data


def load_without_likelihood(example):
    """The example with its observations removed: for galaxy N = 0 is enough; coal mining's
    Poisson process has a term without events, −∫ rate (no events is an observation too), so
    its likelihood statement (the last `target +=`, which reads `times`) is left out."""
    src = (ROOT / "examples" / example).read_text()
    if example == "coal_mining.ppl":
        lines = src.splitlines()
        like = [i for i, x in enumerate(lines) if x.startswith("target +=") and "times" in x]
        assert len(like) == 1
        src = "\n".join(lines[:like[0]] + lines[like[0] + 1:]) + "\n"
    return ppl.compile(src, str(ROOT / "examples" / example))


# ------------------------------------------------------------------------------- breakages
def drop_jacobian(inv):
    return replace(inv, log_jacobian=lambda x, aux, data: jnp.zeros(()))


def swap_reverse_probability(inv):
    def log_q(aux, x, data):
        k = x["k"].astype(jnp.result_type(float))
        death = aux.choice[0] != UP
        return inv.log_q(aux, x, data) + jnp.where(death & (k > 1), jnp.log(k) - jnp.log(k - 1.0), 0.0)
    return replace(inv, log_q=log_q)


def patch_out_order_statistics(monkeypatch):
    original = interpreter._padded_exact_log_prob

    def without_k_factorial(d, decl, value, site_mask=None, bounds=(None, None)):
        lp = original(d, decl, value, site_mask, bounds)
        if decl is not None and decl.base == "ordered":
            m = value.mask() if site_mask is None else value.mask() & site_mask
            lp = lp - gammaln(jnp.sum(jnp.broadcast_to(m, value.values.shape)) + 1.0)
        return lp
    monkeypatch.setattr(interpreter, "_padded_exact_log_prob", without_k_factorial)


def run(shared_data, example, breakage, iterations, seed, monkeypatch):
    if breakage == "order_statistics":
        patch_out_order_statistics(monkeypatch)
    model = load_without_likelihood(example)
    lowered = model.lower(without_observations(shared_data, example), "mhg")
    program = MHGPass().build(lowered, {"chains": CHAINS, "draws": iterations, "warmup": 1000,
                                        "within": "random_walk"})
    moves = program.moves
    if breakage in ("jacobian", "reverse"):
        broken = drop_jacobian if breakage == "jacobian" else swap_reverse_probability
        moves = [(M.InvolutiveMove(program.model, broken(m.involution)), w)
                 if isinstance(m, M.InvolutiveMove) else (m, w) for m, w in moves]
    sampler = M.MHG(program.model, moves)
    res = sampler.run(rng_key(seed), lowered.data_arrays, chains=CHAINS, draws=iterations, warmup=1000)
    return program.model, res


def size_test(model, res):
    s = model.sizes[0]
    return chi_square(res.sizes[s.name], np.arange(s.lower, s.upper + 1), s.prior_pmf())


def ks(res, k, values, cdf):
    sel = res.sizes["k"] == k
    return ks_given([v[m] for v, m in zip(values, sel)], cdf)


def marginals_given_k(shared_data, example, res):
    """[(what, KS p-value, n)] for prior marginals of continuous coordinates given k."""
    name, _ = FILES[example]
    f = json.loads((shared_data / "rjmcmc" / name).read_text())
    out = []
    if example == "coal_mining.ppl":
        L = f["end"] - f["start"]
        for k in (1, 2, 3):
            # s_1 − start is the 2nd order statistic of 2k + 1 uniforms on [0, L]: Beta(2, 2k)·L
            _, p, n = ks(res, k, res.arrays["s"][..., 0] - f["start"], stats.beta(2, 2 * k, scale=L).cdf)
            out.append((f"s_1 | k={k}", p, n))
            _, p, n = ks(res, k, res.arrays["h"][..., k], stats.gamma(f["alpha"], scale=1 / f["beta"]).cdf)
            out.append((f"h_{k + 1} | k={k}", p, n))
    else:
        xi, sd = f["xi"], 1 / math.sqrt(f["kappa"])
        for k in (2, 4):
            _, p, n = ks(res, k, res.arrays["w"][..., 0], stats.beta(1, k - 1).cdf)
            out.append((f"w_1 | k={k}", p, n))
            _, p, n = ks(res, k, res.arrays["mu"][..., 0], lambda x, k=k: 1 - stats.norm.sf(x, xi, sd) ** k)
            out.append((f"mu_1 | k={k}", p, n))
    return out


# Open (2026-11-30): galaxy's intact run through the language fails — chi-square 133 on 29 dof
# at 4 × 5 000 with random-walk within moves (mixing or a bug: not yet known). strict: an XPASS
# says it is fixed. (Coal mining failed too, chi-square 16 225, until its −∫ rate term was left
# out with the observations: N = 0 had conditioned on "no disasters".)
LANGUAGE_PRIOR_BUG = pytest.mark.xfail(strict=True, reason="galaxy prior recovery through the "
                                       "language fails (open, see the comment above CASES)")
CASES = [
    pytest.param("coal_mining.ppl", None, 5_000, id="coal-intact"),
    pytest.param("coal_mining.ppl", "reverse", 5_000, id="coal-reverse"),
    pytest.param("coal_mining.ppl", "order_statistics", 5_000, id="coal-order_statistics"),
    pytest.param("galaxy.ppl", None, 5_000, id="galaxy-intact", marks=LANGUAGE_PRIOR_BUG),
    pytest.param("galaxy.ppl", "jacobian", 5_000, id="galaxy-jacobian"),
]


@pytest.mark.slow  # each case compiles a program and runs 4 × 6 000 iterations: 1–6 min here
@pytest.mark.parametrize("example,breakage,iterations", CASES)
def test_prior_recovery_and_its_negative_controls(shared_data, monkeypatch, example, breakage, iterations):
    model, res = run(shared_data, example, breakage, iterations, 21, monkeypatch)
    stat, dof, p, n_eff = size_test(model, res)
    if breakage is None:
        assert p > 1e-3, (stat, dof, p, n_eff)
        for what, p_ks, n in marginals_given_k(shared_data, example, res):
            assert n >= 20 and p_ks > 1e-3, (what, p_ks, n)
    else:
        assert p < 1e-3, f"{breakage}: the prior of k was not rejected (chi2 {stat:.1f}, dof {dof}, p {p:.3g})"


@pytest.mark.slow
@pytest.mark.parametrize("example,breakage", [("coal_mining.ppl", None),
                                              pytest.param("galaxy.ppl", None, marks=LANGUAGE_PRIOR_BUG)])
def test_prior_recovery_at_the_issue_size(shared_data, monkeypatch, example, breakage):
    """Issue 10's size: 4 × 20 000 iterations."""
    model, res = run(shared_data, example, breakage, 20_000, 22, monkeypatch)
    stat, dof, p, n_eff = size_test(model, res)
    assert p > 1e-3, (stat, dof, p, n_eff)
    for what, p_ks, n in marginals_given_k(shared_data, example, res):
        assert n >= 20 and p_ks > 1e-3, (what, p_ks, n)
