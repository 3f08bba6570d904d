"""The summary, the convergence checks and the output files (ppl/runtime/results.py, files.py)."""
import os
import stat

import numpy as np
import pandas as pd
import pytest

from ppl.passes.base import Draws
from ppl.runtime.files import atomic_path, write_text_atomic
from ppl.runtime.results import (check_output_path, convergence_warnings, format_number,
                                 is_markov_chain, stan_columns, summarize, summary_table,
                                 summary_variables, to_inference_data, write_csv, write_output)
from ppl.syntax.errors import PPLError


def _idata(posterior, predictive=None, stats=None, observed=None, attrs=None):
    return to_inference_data(Draws(posterior, stats or {}, predictive or {}, attrs=attrs or {}),
                             observed or {}, {})


def _shifted_chains(offset, seed=3):
    """Four chains of N(0, 1) whose means are 0, offset, 2 offset, 3 offset."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 1000)) + offset * np.arange(4)[:, None]


def test_rhat_is_tested_unrounded():
    # R-hat 1.0138: rounded to two decimals (arviz's default) it would read 1.01 and pass
    df = summarize(_idata({"mu": _shifted_chains(0.16)}))
    r = float(df.loc["mu", "r_hat"])
    assert 1.01 < r < 1.015, r
    warnings = convergence_warnings(df)
    assert any(w.startswith("R-hat above 1.01 for mu (largest 1.014)") for w in warnings), warnings


def test_numbers_keep_three_significant_figures():
    assert format_number(1e-4) == "0.000100"
    assert format_number(1.234e-5) == "1.23e-05"
    assert format_number(4.3812) == "4.38"
    assert format_number(-0.012345) == "-0.0123"
    assert format_number(1234.5) == "1234"
    assert format_number(0.0) == "0"
    rng = np.random.default_rng(0)
    table = summary_table(_idata({"tiny": 1e-4 * rng.normal(size=(2, 500))}))
    head, row = table.splitlines()
    cols = dict(zip(head.split(), row.split()[1:]))
    assert cols["sd"] != "0.000" and 0.8e-4 < float(cols["sd"]) < 1.2e-4, table


def test_summary_has_mcse_and_median_columns():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=(4, 1000))
    df = summarize(_idata({"x": x}))
    assert abs(df.loc["x", "median"] - np.median(x)) < 1e-12
    assert 0 < df.loc["x", "mcse_mean"] < 0.05
    head = summary_table(df).splitlines()[0].split()
    assert head[:4] == ["mean", "mcse", "sd", "median"] and head[-1] == "r_hat"


def test_generated_quantities_are_summarised_but_replicated_data_is_not():
    rng = np.random.default_rng(2)
    idata = _idata({"mu": rng.normal(size=(2, 100))},
                   predictive={"mean_y": rng.normal(size=(2, 100)), "y": rng.normal(size=(2, 100, 3))},
                   observed={"y": np.zeros(3)})
    assert "mean_y" in summarize(idata).index and "y[1]" not in summarize(idata).index
    shown, hidden = summary_variables(idata, 20)
    assert shown == ["mu", "mean_y"] and hidden == []
    with pytest.raises(PPLError, match='no variable "mean_z"') as e:
        summary_variables(idata, 20, ["mean_z"])
    assert e.value.hint == 'did you mean "mean_y"?'


@pytest.mark.parametrize("attrs, chains", [
    # the program says so itself (markov_chain), whatever its name
    ({"inference_method": "nuts", "markov_chain": 1}, True),
    ({"inference_method": "smc", "smc_algorithm": "particle marginal Metropolis-Hastings (bootstrap "
      "filter, random-walk proposals)", "markov_chain": 1}, True),
    ({"inference_method": "smc", "smc_algorithm": "particle Gibbs (conditional SMC) + NUTS",
      "markov_chain": 1}, True),
    ({"inference_method": "nuts"}, False),  # a file from elsewhere is not judged as chains
    ({"inference_method": "smc", "smc_algorithm": "particle filter (bootstrap)"}, False),
    ({"inference_method": "smc", "smc_algorithm": "adaptive tempered SMC"}, False),
    ({"inference_method": "enumerate"}, False),
    ({"inference_method": "smc", "markov_chain": "true"}, True),
])
def test_which_runs_are_markov_chains(attrs, chains):
    assert is_markov_chain(_idata({"mu": np.zeros((2, 10))}, attrs=attrs)) is chains


def test_single_chain_summary_is_quiet(capfd, caplog):
    rng = np.random.default_rng(4)
    df = summarize(_idata({"mu": rng.normal(size=(1, 300))}))
    assert np.isnan(df.loc["mu", "r_hat"]) and df.loc["mu", "ess_bulk"] > 100
    out, err = capfd.readouterr()
    assert "Shape validation failed" not in out + err + caplog.text


def test_stan_columns_are_column_major_from_one():
    values = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3)  # (chain, draw, 2, 3)
    names, block = stan_columns("S", values)
    assert names == ["S.1.1", "S.2.1", "S.1.2", "S.2.2", "S.1.3", "S.2.3"]
    assert block.shape == (6, 6)
    for k, name in enumerate(names):
        i, j = (int(t) - 1 for t in name.split(".")[1:])
        np.testing.assert_array_equal(block[:, k], values[:, :, i, j].reshape(-1))


def test_csv_output_in_stan_layout(tmp_path):
    rng = np.random.default_rng(5)
    theta = rng.normal(size=(2, 5, 3))
    idata = _idata({"mu": rng.normal(size=(2, 5)), "theta": theta},
                   predictive={"g": rng.normal(size=(2, 5))},
                   stats={"lp": rng.normal(size=(2, 5)), "diverging": np.zeros((2, 5), bool),
                          "tree_depth": np.full((2, 5), 3)},
                   attrs={"inference_method": "nuts"})
    path = tmp_path / "fit.csv"
    write_output(idata, str(path))
    text = path.read_text()
    assert text.startswith("# written by ppl: Stan's CSV layout")
    assert "# inference_method = nuts" in text
    frame = pd.read_csv(path, comment="#")
    assert list(frame.columns) == ["chain__", "draw__", "lp__", "treedepth__", "divergent__", "mu",
                                   "theta.1", "theta.2", "theta.3", "g"]
    assert len(frame) == 10 and list(frame["chain__"]) == [1] * 5 + [2] * 5
    np.testing.assert_array_equal(frame["theta.2"], theta[:, :, 1].reshape(-1))  # full precision
    assert set(frame["divergent__"]) == {0}


def test_unknown_output_extensions_are_refused(tmp_path):
    with pytest.raises(PPLError, match='"fit.h5": ".h5" is not an output format') as e:
        check_output_path("fit.h5")
    assert ".nc (NetCDF" in e.value.hint and ".csv (CSV in Stan's layout)" in e.value.hint
    with pytest.raises(PPLError, match="does not exist"):
        check_output_path(str(tmp_path / "nowhere" / "fit.nc"))
    assert check_output_path("FIT.NC") == ".nc"


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_outputs_honour_the_umask(tmp_path, umask_027):
    path = tmp_path / "model.dot"
    write_text_atomic(str(path), "digraph {}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 less 027, not mkstemp's 0600
    os.chmod(path, 0o664)  # an existing file keeps its mode, as with open(path, "w")
    with atomic_path(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write("digraph { a }\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert path.read_text() == "digraph { a }\n"
    fit = tmp_path / "fit.nc"
    write_output(_idata({"mu": np.zeros((2, 5))}), str(fit))
    assert stat.S_IMODE(fit.stat().st_mode) == 0o640
    write_csv(_idata({"mu": np.zeros((2, 5))}), str(tmp_path / "fit.csv"))
    assert stat.S_IMODE((tmp_path / "fit.csv").stat().st_mode) == 0o640


def test_exact_marginals_text():
    from ppl.runtime.results import exact_marginals_text
    text = exact_marginals_text('{"z": {"values": [1, 2], "probabilities": [0.25, 0.75]}, '
                                '"w": {"values": [0, 1], "probabilities": [[0.5, 0.5], [0.1, 0.9]]}}', 20)
    assert text == ("exact posterior marginals:\n  P(z=1) = 0.250000, P(z=2) = 0.750000\n"
                    "  P(w[1]=0) = 0.500000, P(w[1]=1) = 0.500000\n"
                    "  P(w[2]=0) = 0.100000, P(w[2]=1) = 0.900000\n")
