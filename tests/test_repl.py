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


def _session(lines, **kw):
    out, err = io.StringIO(), io.StringIO()
    feed = iter(lines)
    assert run(lambda prompt: next(feed), out=out, err=err, **kw) == 0
    return out.getvalue(), err.getvalue()


def test_inline_data_and_commands_without_a_run(tmp_path):
    out, err = _session(["data N: int", "data y: real[N]", ":data N = 3", ":data y = [1, 2.5, -1]",
                         ":data", ":data y = [1, 2", ":data 2x = 1", ":summary", ":draws mu", ":shw",
                         f":save {tmp_path / 'm.ppl'}", ":quit"])
    assert "data:\n  N = 3\n  y = [1, 2.5, -1]\n" in out
    assert '<repl>: error: ":data y = [1, 2": the value is not a number, true/false or a list' in err
    assert '"2x" is not a name' in err
    assert "<repl>: error: no run yet\nhint: :sample runs inference on the model" in err
    assert '<repl>: error: unknown command ":shw"\nhint: did you mean ":show"?' in err
    assert (tmp_path / "m.ppl").read_text() == "data N: int\ndata y: real[N]\n"
    assert "Traceback" not in err


def test_a_file_starts_the_session_and_blocks_span_lines(tmp_path):
    model = tmp_path / "m.ppl"
    model.write_text("data N: int\nmu ~ normal(0, 1)\n")
    out, err = _session(["for i in 1:N {", "  z = mu", "}", ":show", ":quit"], model_path=str(model))
    assert f"loaded {model}" in out
    assert "data N: int\nmu ~ normal(0, 1)\nfor i in 1:N {\n  z = mu\n}\n" in out, out
    assert err == ""


def test_completion_offers_commands_names_distributions_and_functions():
    from prompt_toolkit.document import Document
    from ppl.repl import Completer
    r = Repl(io.StringIO(), io.StringIO())
    r.add("data y: real")
    r.add("sigma ~ half_normal(1)")
    r.add("def twice(x: real) -> real {\n  return 2 * x\n}")
    complete = lambda text: [c.text for c in Completer(r).get_completions(Document(text), None)]  # noqa: E731
    assert complete(":sa") == [":sample", ":save"]
    assert complete("mu ~ half_c") == ["half_cauchy"]
    assert "sigma" in complete("y ~ normal(0, sig")
    assert complete("z = log_su") == ["log_sum_exp"]
    assert complete("z = twi") == ["twice"]
    assert complete("y ~ si") == []  # after "~" only distributions


def test_input_is_complete_when_braces_balance():
    from ppl.repl import balanced
    assert balanced("mu ~ normal(0, 1)") and balanced(":data y = [1,")
    assert not balanced("for t in 1:T {") and not balanced("x = f(1,")
    assert balanced("for t in 1:T {  # a comment with }\n}") and not balanced("if a { # }")


def test_history_lives_under_the_data_dir(monkeypatch, tmp_path):
    from ppl.repl import history_path
    monkeypatch.delenv("PPL_HISTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert history_path() == tmp_path / "ppl" / "repl_history"
