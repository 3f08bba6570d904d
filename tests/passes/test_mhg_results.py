"""What an mhg run reports: `ppl sample` prints p(k | data) ± Monte Carlo se for each size
variable, the acceptance rate per move kind and posterior means given the most probable sizes;
the InferenceData (written with --output) carries the draws of k, the padded arrays (NaN beyond
the size), per draw the move made and whether it was accepted (sample_stats), and the same
tables as attributes. The printed figures are checked against the written draws."""
import json
import re
from pathlib import Path

import arviz as az
import numpy as np
import pytest

from ppl.cli import main

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^  P\(d=(\d+)\) = ([0-9.]+) ± ([0-9.]+)$")


@pytest.fixture(scope="module")
def polynomial_run(shared_data, tmp_path_factory):
    import contextlib
    import io
    fit = tmp_path_factory.mktemp("mhg") / "fit.nc"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sample", str(ROOT / "examples" / "polynomial_degree.ppl"), "--data",
                     str(shared_data / "rjmcmc" / "polynomial_degree.json"), "--method", "mhg",
                     "--chains", "2", "--draws", "400", "--warmup", "300", "--seed", "4",
                     "--output", str(fit)])
    assert code == 0 and fit.exists(), (out.getvalue()[-2000:], err.getvalue()[-2000:])
    return code, out.getvalue(), err.getvalue(), az.from_netcdf(fit)


@pytest.mark.slow  # an mhg run through the CLI, 45 s
def test_the_printed_posterior_of_d_is_that_of_the_written_draws(polynomial_run):
    code, out, err, idata = polynomial_run
    assert code == 0, err
    lines = out.splitlines()
    assert "posterior of d (± Monte Carlo se):" in lines
    rows = [ROW.match(x) for x in lines]
    rows = {int(m[1]): (float(m[2]), float(m[3])) for m in rows if m}
    d = idata.posterior["d"].values
    assert d.shape == (2, 400)
    # every value drawn is printed, with its frequency among the draws
    assert set(rows) == set(np.unique(d).tolist())
    for v, (p, se) in rows.items():
        assert p == pytest.approx(np.mean(d == v), abs=6e-5)
        assert 0 <= se < 0.5
        if 0.01 < p < 0.99:  # se from the ESS of the indicator: ESS ≤ 4N puts it above half the iid se
            assert se >= 0.5 * np.sqrt(p * (1 - p) / d.size)
    assert sum(p for p, _ in rows.values()) == pytest.approx(1.0, abs=1e-3)
    table = json.loads(idata.posterior.attrs["size_posteriors"])["d"]
    for v, p in zip(table["values"], table["probabilities"]):
        assert p == pytest.approx(rows.get(v, (0.0, 0.0))[0], abs=6e-5)


@pytest.mark.slow  # an mhg run through the CLI, 45 s
def test_acceptance_per_move_kind_is_printed_and_stored(polynomial_run):
    code, out, err, idata = polynomial_run
    line = next(x for x in out.splitlines() if x.startswith("acceptance: "))
    printed = dict(re.findall(r"(\S+) ([0-9.]+)(?:,|$)", line[len("acceptance: "):]))
    assert set(printed) == {"nuts", "birth_death[d]"}
    stored = json.loads(idata.posterior.attrs["acceptance"])
    moves = json.loads(idata.posterior.attrs["moves"])
    stats = idata.sample_stats
    assert stats["move"].shape == (2, 400) and stats["accepted"].dtype == bool
    for name, rate in printed.items():
        assert float(rate) == pytest.approx(stored[name], abs=5e-4)
        # with thin = 1 each draw follows one move: the per-draw record gives the same rate
        i = moves.index(name)
        made = stats["move"].values == i
        assert made.sum() > 0
        assert stats["accepted"].values[made].mean() == pytest.approx(stored[name], abs=1e-9)
    assert 0 < stored["birth_death[d]"] < 1


@pytest.mark.slow  # an mhg run through the CLI, 45 s
def test_means_given_the_most_probable_size(polynomial_run):
    code, out, err, idata = polynomial_run
    lines = out.splitlines()
    i = lines.index("posterior means given d (its most probable values):")
    d = idata.posterior["d"].values
    beta = idata.posterior["beta"].values
    top = int(np.bincount(d.ravel()).argmax())
    m = re.match(rf"^  d = {top} \(p ([0-9.]+)\): beta = \[(.*)\]$", lines[i + 1])
    assert m, lines[i + 1]
    assert float(m[1]) == pytest.approx(np.mean(d == top), abs=5e-4)
    printed = np.array([float(x) for x in m[2].split(", ")])
    assert printed.shape == (top + 1,)
    expected = beta[d == top][:, :top + 1].mean(0)
    np.testing.assert_allclose(printed, expected, rtol=1e-4, atol=1e-4)
    # padding is NaN in the draws, the size alongside
    assert np.all(np.isnan(beta[d == top][:, top + 1:]))
