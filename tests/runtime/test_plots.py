"""`ppl plot` (ppl/runtime/plots.py): PNGs through ArviZ, clear errors for what a file lacks."""
import numpy as np
import pytest

from ppl.cli import main
from ppl.passes.base import Draws
from ppl.runtime.plots import plot
from ppl.runtime.results import to_inference_data, write_output
from ppl.syntax.errors import PPLError

PNG = b"\x89PNG\r\n\x1a\n"


def _idata(energy=False, replicated=False):
    rng = np.random.default_rng(0)
    stats = {"lp": rng.normal(size=(2, 50)), "diverging": np.zeros((2, 50), bool)}
    if energy:
        stats["energy"] = rng.normal(size=(2, 50))
    predictive = {"twice": rng.normal(size=(2, 50))}
    if replicated:
        predictive["y"] = rng.normal(size=(2, 50, 4))
    return to_inference_data(Draws({"mu": rng.normal(size=(2, 50)), "theta": rng.normal(size=(2, 50, 3))},
                                   stats, predictive, attrs={"inference_method": "nuts"}),
                             {"y": np.arange(4.0)}, {})


@pytest.fixture(scope="module")
def fit(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "fit.nc"
    write_output(_idata(), str(path))
    return path


@pytest.mark.parametrize("kind", ["trace", "rank", "pair", "forest"])
def test_cli_writes_each_plot_as_png(kind, fit, tmp_path, capsys):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(fit), kind, "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.read_bytes()[:8] == PNG
    assert f"wrote {out}" in capsys.readouterr().out
    assert not list(tmp_path.glob(".ppl-*"))


def test_missing_energy_and_replicated_data_are_explained(fit, tmp_path, capsys):
    assert main(["plot", str(fit), "energy", "-o", str(tmp_path / "e.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{fit}: error: energy plots need the Hamiltonian energy of every "
                          "transition (sample_stats.energy), and this run has none")
    assert "Traceback" not in err and not (tmp_path / "e.png").exists()
    assert main(["plot", str(fit), "ppc", "-o", str(tmp_path / "p.png")]) == 1
    assert "posterior predictive plots need replicated data named after the observed" in \
        capsys.readouterr().err


def test_energy_and_ppc_plot_when_the_run_has_them(tmp_path):
    idata = _idata(energy=True, replicated=True)
    for kind in ("energy", "ppc"):
        plot(idata, kind, str(tmp_path / f"{kind}.png"))
        assert (tmp_path / f"{kind}.png").read_bytes()[:8] == PNG


def test_bad_requests_are_errors(fit, tmp_path, capsys):
    with pytest.raises(PPLError, match='no variable "mux"'):
        plot(_idata(), "trace", str(tmp_path / "t.png"), ["mux"])
    with pytest.raises(PPLError, match="plots are written as PNG"):
        plot(_idata(), "trace", str(tmp_path / "t.pdf"))
    assert main(["plot", str(tmp_path / "none.nc")]) == 1
    assert "none.nc: error: file not found" in capsys.readouterr().err
    (tmp_path / "bad.nc").write_text("not netcdf")
    assert main(["plot", str(tmp_path / "bad.nc")]) == 1
    assert "cannot read the file as NetCDF" in capsys.readouterr().err
