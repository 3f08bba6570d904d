"""`auto` (ppl/passes/__init__.py): the first pass that can run a model, except that a model with
a continuous latent state chain goes to smc before nuts; NUTS divergences on such a model point
to --method smc (issue 12, defect 3)."""
import json
from pathlib import Path

import pytest

import ppl
from ppl.cli import main
from ppl.passes import choose

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

AR_LATENT = """
data T: int
data y: real[T]
a ~ normal(0, 1)
x: real[T]
x[1] ~ normal(0, 1)
for t in 2:T { x[t] ~ normal(a * x[t-1], 1) }
for t in 1:T { y[t] ~ normal(x[t], 1) }
"""


@pytest.mark.parametrize("name, method", [
    ("sv", "smc"),  # continuous state chain: smc
    ("hmm", "nuts"),  # discrete chain: summed out exactly for NUTS (forward algorithm)
    ("eight_schools", "nuts"), ("mixture", "nuts"), ("sprinkler", "enumerate"),
])
def test_auto_prefers_smc_for_continuous_state_chains(name, method):
    plan = choose(ppl.load(EXAMPLES / f"{name}.ppl").graph)
    assert plan.method == method, plan.describe()
    if method == "smc":
        assert "state-space model" in plan.reason and "--method nuts" in plan.describe()


def test_a_linear_state_chain_also_goes_to_smc_and_nuts_can_still_be_asked_for():
    model = ppl.compile(AR_LATENT, "ar.ppl")
    assert model.plan().method == "smc"
    assert model.plan("nuts").method == "nuts"


def test_nuts_divergences_on_a_state_space_model_point_to_smc(capsys, tmp_path):
    """A short warm-up on stochastic volatility: NUTS diverges in the funnel, and the warning
    names --method smc rather than a higher target acceptance."""
    full = json.loads((EXAMPLES / "sv.json").read_text())
    data = tmp_path / "sv20.json"
    data.write_text(json.dumps({"T": 20, "y": full["y"][:20]}))
    code = main(["sample", str(EXAMPLES / "sv.ppl"), "--data", str(data), "--method", "nuts",
                 "--chains", "2", "--draws", "100", "--warmup", "20", "--seed", "3", "--quiet",
                 "--no-validate"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("method: nuts")
    assert "diverged" in err, err
    assert "--method smc" in err and "--target-accept" not in err
