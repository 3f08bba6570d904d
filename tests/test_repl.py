"""The REPL, driven by scripted input."""
import io

from ppl.repl import Repl, run


def test_statements_are_checked_as_typed():
    out, err = io.StringIO(), io.StringIO()
    r = Repl(out, err)
    assert r.add("data N: int")
    assert not r.add("mu ~ normall(0, 1)")
    assert 'did you mean "normal"?' in err.getvalue()
    assert r.add("mu ~ normal(0, 1)")
    assert r.add("for i in 1:N {\n  z = mu\n}")
    r.command(":undo")
    r.command(":show")
    assert out.getvalue() == "data N: int\nmu ~ normal(0, 1)\n"


def test_scripted_session_reaches_quit(capsys):
    lines = iter(["data y: real", "mu ~ normal(0, 1)", "y ~ normal(mu, 1)", ":show", ":quit"])
    assert run(lambda prompt: next(lines)) == 0
    assert "y ~ normal(mu, 1)" in capsys.readouterr().out
