"""The `ppl` command, run in-process."""
from pathlib import Path

import arviz as az
import pytest

from ppl.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_prints_summary_and_writes_netcdf(capsys, tmp_path):
    out_file = tmp_path / "fit.nc"
    code, out, err = run(capsys, "sample", EXAMPLES / "eight_schools.ppl", "--data",
                         EXAMPLES / "eight_schools.json", "--seed", 2, "--output", out_file)
    assert code == 0, err
    assert "method: nuts" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert {"mu", "tau", "theta[1]", "theta[8]"} <= set(lines)
    mu_mean = float(lines["mu"][1])
    assert 3.0 < mu_mean < 6.0
    assert "Traceback" not in err
    idata = az.from_netcdf(out_file)
    assert idata.posterior["theta"].shape == (4, 1000, 8)
    assert not list(tmp_path.glob(".ppl-*")), "temporary file left behind"


def test_check_prints_plan_and_validation(capsys):
    code, out, err = run(capsys, "check", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv.json")
    assert code == 0, err
    assert "plan: " in out
    assert "line 10: for t — density: vectorize, sampling: scan (carries x, lag x[t-1])" in out
    assert "validation: lowered log density = numpyro reference" in out


def test_graph_writes_plate_notation(capsys, tmp_path):
    dot = tmp_path / "sv.dot"
    code, out, err = run(capsys, "graph", EXAMPLES / "sv.ppl", "-o", dot)
    assert code == 0, err
    text = dot.read_text()
    assert text.startswith('digraph "sv"')
    assert 'label="t in 1:T"' in text
    assert '"x" -> "x" [label="lag 1", style=dashed];' in text


def test_design_regression_runs_verbatim_with_generated_quantities(capsys):
    code, out, err = run(capsys, "sample", EXAMPLES / "regression.ppl", "--data",
                         EXAMPLES / "regression.json", "--chains", 2, "--draws", 300, "--warmup", 300)
    assert code == 0, err
    assert "beta[1]" in out and "sigma" in out


def test_user_errors_exit_1_without_traceback(capsys, tmp_path):
    bad = tmp_path / "bad.ppl"
    bad.write_text("mu ~ normal(0, 1)\ny ~ normall(mu, 1)\n")
    code, out, err = run(capsys, "sample", bad)
    assert code == 1
    assert err.startswith(f"{bad}:2:5: error: unknown distribution \"normall\"")
    assert 'hint: did you mean "normal"?' in err
    assert "Traceback" not in err


def test_method_options_reach_the_pass(capsys, tmp_path):
    out_file = tmp_path / "sv.nc"
    code, out, err = run(capsys, "sample", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv_fixed.json",
                         "--method", "smc", "--particles", 64, "--option", "resampling=multinomial",
                         "--option", "ess-threshold=1.0", "--draws", 5, "--quiet", "--output", out_file)
    assert code == 0, err
    stats = az.from_netcdf(out_file)
    assert stats.posterior.attrs["particles"] == 64
    assert bool(stats.sample_stats["resampled"].values[..., 1:].all())  # resampled at every step
    code, out, err = run(capsys, "sample", EXAMPLES / "sv.ppl", "--data", EXAMPLES / "sv_fixed.json",
                         "--option", "particles")
    assert code == 1 and 'is not KEY=VALUE' in err and "Traceback" not in err
