"""Jupyter: the %%ppl cell magic and the graph's inline drawing (ppl/jupyter.py)."""
import stat

import pytest

import ppl
from ppl.jupyter import GraphView, graph_view

SOURCE = "data y: real\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)\n"


@pytest.fixture(scope="module")
def shell():
    pytest.importorskip("IPython", reason="IPython is in the test extras")
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ppl")
    return ip


def test_cell_magic_compiles_into_the_namespace(shell):
    shell.run_cell_magic("ppl", "simple", SOURCE)
    model = shell.user_ns["simple"]
    assert isinstance(model, ppl.Model) and model.filename == "<simple>"
    assert [v.name for v in model.graph.latents()] == ["mu"]


def test_errors_show_the_framed_message_only(shell, capsys):
    shell.run_cell_magic("ppl", "broken", "mu ~ normall(0, 1)\n")
    out, err = capsys.readouterr()
    assert err.startswith('<broken>:1:6: error: unknown distribution "normall"\n'
                          "  1 | mu ~ normall(0, 1)\n")
    assert 'hint: did you mean "normal"?' in err
    assert "Traceback" not in out + err and "broken" not in shell.user_ns
    shell.run_cell_magic("ppl", "", SOURCE)
    assert "give the model a name" in capsys.readouterr().err


def test_graph_is_svg_with_graphviz_and_dot_text_without(tmp_path, monkeypatch):
    view = graph_view(ppl.compile(SOURCE).graph, "simple")
    assert repr(view).startswith('digraph "simple"')
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    assert view._repr_svg_() is None  # Jupyter falls back to the DOT text
    assert view._repr_mimebundle_() == {"text/plain": view.dot}
    fake = tmp_path / "dot"  # a stand-in for Graphviz: reads DOT on stdin, writes SVG
    fake.write_text('#!/bin/sh\n[ "$1" = "-Tsvg" ] || exit 2\nread first\n'
                    'echo "<svg><!-- $first --></svg>"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert view._repr_svg_() == '<svg><!-- digraph "simple" { --></svg>\n'
    assert view._repr_mimebundle_() == {"image/svg+xml": view._repr_svg_()}
    fake.write_text("#!/bin/sh\nexit 1\n")
    assert GraphView("digraph {}")._repr_svg_() is None
