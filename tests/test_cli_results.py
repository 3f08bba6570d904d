"""What `ppl sample` prints and writes: convergence warnings, one-chain runs, output formats."""
import stat
from pathlib import Path

import numpy as np
import pandas as pd

import ppl.api
from ppl.cli import main
from ppl.passes.base import Draws, Plan
from ppl.runtime.results import to_inference_data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pmmh_runs_get_convergence_warnings(capsys, monkeypatch):
    """PMMH chains are Markov chains: R-hat 1.08 and bulk ESS 36 must be reported. The run is
    replaced by draws of that kind (what the pass returns), so the test exercises the CLI's
    decision, not the sampler."""
    rng = np.random.default_rng(0)
    mu = np.cumsum(rng.normal(size=(2, 80)), axis=1) * 0.1 + np.array([[0.0], [0.4]])
    # markov_chain=1: what ParticleGibbsProgram.run (and so PMMH) sets on its draws
    attrs = {"inference_method": "smc", "markov_chain": 1, "log_evidence": -85.1, "log_evidence_se": 0.13,
             "smc_algorithm": "particle marginal Metropolis-Hastings (bootstrap filter, "
                              "random-walk proposals)"}

    def fake_sample(self, *a, **k):
        self.last_plan, self.last_warnings = Plan("smc", "state-space model", []), []
        return to_inference_data(Draws({"mu": mu}, attrs=attrs), {}, {})

    monkeypatch.setattr(ppl.api.Model, "sample", fake_sample)
    code, out, err = run(capsys, "sample", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv.json",
                         "--method", "smc", "--option", "parameters=pmmh")
    assert code == 0, err
    assert "warning: R-hat above 1.01 for mu" in err
    assert "warning: bulk ESS below 100 for mu" in err


def test_one_chain_csv_output(capsys, tmp_path):
    fit = tmp_path / "fit.csv"
    code, out, err = run(capsys, "sample", EXAMPLES / "eight_schools.ppl", "--data",
                         EXAMPLES / "eight_schools.json", "--chains", 1, "--draws", 200,
                         "--warmup", 200, "--seed", 3, "--output", fit)
    assert code == 0, err
    assert "Shape validation failed" not in out + err
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["mu"][-1] == "nan"  # R-hat needs two chains
    frame = pd.read_csv(fit, comment="#")
    assert list(frame.columns[:8]) == ["chain__", "draw__", "lp__", "accept_stat__", "stepsize__",
                                       "treedepth__", "n_leapfrog__", "divergent__"]
    assert {"mu", "tau", "theta_raw.1", "theta.8"} <= set(frame.columns)
    assert len(frame) == 200
    assert abs(frame["mu"].mean() - float(lines["mu"][1])) < 0.01
    assert stat.S_IMODE(fit.stat().st_mode) & 0o044, "output file is private (mode 0600)"
    assert not list(tmp_path.glob(".ppl-*"))


def test_unknown_output_format_is_refused_before_sampling(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(ppl.api.Model, "sample", lambda *a, **k: 1 / 0)  # must not be reached
    code, out, err = run(capsys, "sample", EXAMPLES / "eight_schools.ppl", "--data",
                         EXAMPLES / "eight_schools.json", "--output", tmp_path / "fit.h5")
    assert code == 1
    assert err.startswith(f'--output: error: cannot write "{tmp_path / "fit.h5"}": ".h5" is not '
                          "an output format\nhint: name the file with .nc")
    assert not (tmp_path / "fit.h5").exists()
