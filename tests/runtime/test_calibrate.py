"""Simulation-based calibration: passes a correct sampler, catches one that drops a log-Jacobian."""
from pathlib import Path

import pytest

import ppl
from ppl.cli import main
from ppl.lower import handlers
from ppl.runtime.calibrate import calibrate

ROOT = Path(__file__).resolve().parents[2]

SCALE = """
data N: int
data y: real[N]
sigma ~ lognormal(0, 1)
y ~ normal(0, sigma)
"""
SCALE_DATA = {"N": 3, "y": [0.5, -1.0, 2.0]}


def _drop_log_jacobian(monkeypatch):
    """The injected bug: the unconstraining handler keeps its transforms but forgets their
    log-Jacobians."""
    init = handlers.Unconstrain.__init__

    def init_without_jacobian(self, layout, u, jacobian=True):
        init(self, layout, u, jacobian=False)

    monkeypatch.setattr(handlers.Unconstrain, "__init__", init_without_jacobian)


@pytest.mark.slow
def test_scale_model_correct_sampler_passes():
    cal = calibrate(ppl.compile(SCALE), SCALE_DATA, replicates=100, chains=1, draws=300, warmup=200,
                    keep=49, seed=1)
    assert cal.passed(0.01), cal.table()


@pytest.mark.slow
def test_scale_model_missing_jacobian_fails(monkeypatch):
    _drop_log_jacobian(monkeypatch)
    cal = calibrate(ppl.compile(SCALE), SCALE_DATA, replicates=100, chains=1, draws=300, warmup=200,
                    keep=49, seed=1)
    assert not cal.passed(0.01), cal.table()
    assert min(cal.min_p_value(), cal.min_ks_p_value()) < 1e-3


@pytest.mark.slow
def test_eight_schools_nuts_passes_and_bug_fails(monkeypatch, tmp_path, capsys):
    png = tmp_path / "ranks.png"
    code = main(["calibrate", str(ROOT / "examples" / "eight_schools.ppl"), "--data",
                 str(ROOT / "examples" / "eight_schools.json"), "--replicates", "100",
                 "--output", str(png), "--quiet"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0 and "calibration passed" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _drop_log_jacobian(monkeypatch)
    code = main(["calibrate", str(ROOT / "examples" / "eight_schools.ppl"), "--data",
                 str(ROOT / "examples" / "eight_schools.json"), "--replicates", "100", "--quiet"])
    out = capsys.readouterr().out
    print(out)
    assert code == 3 and "calibration FAILED" in out
