"""Model files the front end must take or refuse with a framed error (issue 13, defect 5):
encodings, deep nesting, huge literals, line counting."""
import codecs
import sys

import pytest

from ppl.check.checker import check
from ppl.cli import main
from ppl.syntax.errors import PPLError, source_lines
from ppl.syntax.parser import MAX_DEPTH, parse, read_source

MODEL = "mu ~ normal(0, 1)\ny ~ normal(mu, 1)\n"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err, err
    return code, out, err


@pytest.mark.parametrize("encoding, bom", [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
                                           ("utf-16-be", codecs.BOM_UTF16_BE),
                                           ("utf-32-le", codecs.BOM_UTF32_LE)])
def test_byte_order_marks_are_read(tmp_path, capsys, encoding, bom):
    path = tmp_path / "m.ppl"
    path.write_bytes(bom + MODEL.encode(encoding))
    assert read_source(path) == MODEL
    code, out, err = run(capsys, "graph", path)
    assert code == 0, err


def test_a_bom_in_the_source_text_is_dropped():
    prog = parse("\ufeff" + MODEL)
    assert prog.source == MODEL and prog.body[0].span.col == 1


def test_latin1_file_is_a_framed_error_at_the_byte(tmp_path, capsys):
    path = tmp_path / "m.ppl"
    path.write_bytes("mu ~ normal(0, 1)\n# café\n".encode("latin-1"))
    code, out, err = run(capsys, "check", path)
    assert code == 1
    assert err.startswith(f"{path}:2:6: error: the file is not valid UTF-8: byte 0xe9")
    assert "  2 | # caf\ufffd" in err and "hint: save the model as UTF-8" in err


def test_binary_file_is_refused(tmp_path, capsys):
    path = tmp_path / "m.ppl"
    path.write_bytes(bytes(range(256)) * 4)
    code, out, err = run(capsys, "check", path)
    assert code == 1 and "not a text file" in err


def test_nul_in_utf8_text_is_refused(tmp_path, capsys):
    path = tmp_path / "m.ppl"
    path.write_bytes(b"mu ~ normal(0, 1)\x00\n")
    code, out, err = run(capsys, "check", path)
    assert code == 1 and "not a text file" in err


def test_directory_and_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "check", tmp_path)
    assert code == 1 and "is a directory" in err
    code, _, err = run(capsys, "check", tmp_path / "nope.ppl")
    assert code == 1 and "model file not found" in err


# ---------------------------------------------------------------- depth
def deep_blocks(n):
    return "data N: int\n" + "if N > 0 {\n" * n + "x = 1\n" + "}\n" * n + "mu ~ normal(0, 1)\n"


def deep_calls(n):
    return "mu ~ normal(" + "exp(" * n + "0" + ")" * n + ", 1)\n"


def long_sum(n):
    return "mu ~ normal(" + " + ".join(["1"] * n) + ", 1)\n"


@pytest.mark.parametrize("source", [deep_blocks(250), deep_calls(330), long_sum(490)],
                         ids=["250 nested blocks", "330 nested calls", "490-term sum"])
def test_deep_programs_work(tmp_path, capsys, source):
    """These hit Python's recursion limit in the parser and the checker before."""
    path = tmp_path / "m.ppl"
    path.write_text(source)
    code, out, err = run(capsys, "check", path)
    assert code == 0, err


def test_deep_sum_checks_in_process_at_the_default_recursion_limit():
    """The API, without the command's raised recursion limit: parse and check still work."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        check(parse(long_sum(490)))
        check(parse(deep_blocks(250)))
    finally:
        sys.setrecursionlimit(before)


def test_nesting_past_the_limit_is_a_framed_error(tmp_path, capsys):
    path = tmp_path / "m.ppl"
    path.write_text(deep_calls(MAX_DEPTH + 5))
    code, out, err = run(capsys, "check", path)
    assert code == 1 and f"nests more than {MAX_DEPTH} levels deep" in err


def test_parenthesised_depth_costs_nothing():
    parse("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n")


# ---------------------------------------------------------------- literals
def test_integer_literal_over_4300_digits(tmp_path, capsys):
    """int() refuses more than 4,300 digits (Python's guard); that was an internal error."""
    path = tmp_path / "m.ppl"
    path.write_text("mu ~ normal(" + "7" * 5000 + ", 1)\n")
    code, out, err = run(capsys, "check", path)
    assert code == 1 and "integer literal 777777777777…777777 (5000 digits) is too large" in err


@pytest.mark.parametrize("literal, ok", [("9223372036854775807", True), ("9223372036854775808", False),
                                         ("1.7e308", True), ("1e309", False)])
def test_literal_limits(literal, ok):
    src = f"mu ~ normal(0, 1)\nx = mu + {literal}\n"
    if ok:
        parse(src)
    else:
        with pytest.raises(PPLError, match="too large"):
            parse(src)


# ---------------------------------------------------------------- line numbers
@pytest.mark.parametrize("char", ["\v", "\f", "\x1c", "\x85", "\u2028", "\u2029"])
def test_line_numbers_ignore_characters_splitlines_breaks_at(char):
    src = f"# comment {char} more\nmu ~ normal(0, 1)\ny ~ normall(mu, 1)\n"
    with pytest.raises(PPLError) as e:
        check(parse(src, "m.ppl"))
    text = e.value.format()
    assert text.startswith("m.ppl:3:5: error: unknown distribution")
    assert "  3 | y ~ normall(mu, 1)" in text


def test_source_lines_matches_the_parser():
    assert source_lines("a\x0bb\nc\r\nd\u2028e\n") == ["a\x0bb", "c", "d\u2028e"]
    assert source_lines("x") == ["x"] and source_lines("") == []


def test_syntax_error_after_a_form_feed_comment_shows_its_line():
    src = "# \f\nmu ~ normal(0, 1\n"
    with pytest.raises(PPLError) as e:
        parse(src, "m.ppl")
    assert "  2 | mu ~ normal(0, 1" in e.value.format()
