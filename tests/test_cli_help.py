"""`ppl sample --help` for the daily-tool options (issue 12): the output formats by extension,
--prior and --heartbeat with their defaults."""
import pytest

from ppl.cli import main


def test_sample_help_names_output_formats_prior_and_heartbeat(capsys):
    assert main(["sample", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ".nc NetCDF (the whole InferenceData), .csv Stan CSV" in text
    assert "--prior" in text and "prior_predictive groups" in text
    assert "--heartbeat SECONDS" in text and "(default: 5.0)" in text


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "x"])
def test_heartbeat_must_be_a_finite_number_of_seconds(value, capsys):
    assert main(["sample", "m.ppl", "--heartbeat", value]) == 1  # before the model is read
    assert "argument --heartbeat" in capsys.readouterr().err
