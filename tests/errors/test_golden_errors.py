"""Golden tests for user-facing error messages.

Every case in tests/errors/cases/ is a malformed program (NAME.ppl), with bad data (NAME.json)
where data is involved. The CLI runs in-process on each; it must exit with code 1, print no
traceback, and print exactly the text in NAME.expected. The command is
`ppl check NAME.ppl [--data NAME.json]`, or the argument list in NAME.args.

When a message is improved on purpose, regenerate the golden files and review the diff:

    PPL_UPDATE_GOLDEN=1 python -m pytest tests/errors -q
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from ppl.cli import main
from ppl.syntax.errors import display_line, source_lines

CASES = Path(__file__).resolve().parent / "cases"
ROOT = CASES.parents[2]
UPDATE = os.environ.get("PPL_UPDATE_GOLDEN") == "1"

# Cases whose message has no source line to show (the file is missing, empty or not text).
NO_FRAME = {"data_file_not_found", "data_empty", "syntax_binary_file"}
# Cases where the message says everything and a hint would only repeat it.
NO_HINT = set()


def case_names():
    return sorted(p.stem for p in CASES.glob("*.ppl"))


def argv_for(name: str):
    args = CASES / f"{name}.args"
    if args.exists():
        return shlex.split(args.read_text())
    argv = ["check", f"{name}.ppl"]
    if (CASES / f"{name}.json").exists():
        argv += ["--data", f"{name}.json"]
    return argv


def normalise(text: str) -> str:
    for base in (CASES, ROOT):
        text = text.replace(str(base) + os.sep, "")
    return text


def run_case(name, capsys, monkeypatch):
    monkeypatch.chdir(CASES)
    monkeypatch.delenv("PPL_DEBUG", raising=False)
    capsys.readouterr()
    rc = main(argv_for(name))
    out, err = capsys.readouterr()
    return rc, normalise(out), normalise(err)


def test_enough_cases():
    assert len(case_names()) >= 30


@pytest.mark.parametrize("name", case_names())
def test_golden(name, capsys, monkeypatch):
    rc, out, err = run_case(name, capsys, monkeypatch)
    assert "Traceback" not in out + err
    assert "internal error" not in err, f"{name}: an internal error is a bug in ppl:\n{err}"
    assert rc == 1, f"{name}: exit code {rc}, expected 1\nstderr:\n{err}"
    expected_path = CASES / f"{name}.expected"
    if UPDATE:
        expected_path.write_text(err)
    assert expected_path.exists(), f"no golden file for {name}: run with PPL_UPDATE_GOLDEN=1"
    assert err == expected_path.read_text(), f"{name}: the message changed (PPL_UPDATE_GOLDEN=1 to accept)"


HEADER = re.compile(r"^(?P<file>[\w./-]+):(?P<line>\d+):(?P<col>\d+): error: \S.*$")
SOURCE = re.compile(r"^  (?P<num>\d+) \| (?P<text>.*)$")
CARET = re.compile(r"^  (?P<pad> +)\| (?P<lead> *)(?P<carets>\^+)$")


@pytest.mark.parametrize("name", case_names())
def test_frame(name):
    """file:LINE:COL: error: …, the numbered source line, a caret under the column, a hint."""
    path = CASES / f"{name}.expected"
    # a case without its golden file is an error, not a skip: the frame would go unchecked
    assert path.exists(), f"{path.name} missing: run PPL_UPDATE_GOLDEN=1 python -m pytest tests/errors"
    lines = path.read_text().splitlines()
    if name in NO_FRAME:
        assert re.match(r"^[\w./-]+: error: \S", lines[0]), lines[0]
    else:
        assert len(lines) >= 3, lines
        head = HEADER.match(lines[0])
        assert head, f"{name}: first line is not `file:line:col: error: …`: {lines[0]!r}"
        src = SOURCE.match(lines[1])
        assert src and src.group("num") == head.group("line"), lines[1]
        caret = CARET.match(lines[2])
        assert caret, f"{name}: no caret line: {lines[2]!r}"
        assert len(caret.group("pad")) == len(src.group("num")) + 1
        assert len(caret.group("lead")) + 1 == int(head.group("col")), "caret not under the column"
        # the file named is the program or its data file, and the line shown is the real one,
        # counted as the parser counts lines (at "\n" only: not at \v, \f, U+0085, U+2028 …)
        text = (CASES / head.group("file")).read_bytes().decode("utf-8", errors="replace")
        shown = source_lines(text)[int(head.group("line")) - 1]
        assert display_line(shown).rstrip() == src.group("text").rstrip()
    if name not in NO_HINT:
        assert any(line.startswith("hint: ") for line in lines), f"{name}: no hint"
    assert not any(line.startswith("hint: ") and len(line) < 12 for line in lines)


def test_update_mechanism_documented():
    assert "PPL_UPDATE_GOLDEN" in (Path(__file__).read_text())


def test_mutated_examples_never_crash(tmp_path, capsys, monkeypatch):
    """Programs with a character deleted, doubled or replaced get exit 0 or a framed error
    (exit 1), never an internal error. Parse and check only: no data, so nothing compiles."""
    import random

    rng = random.Random(7)
    sources = [p.read_text() for p in sorted((ROOT / "examples").glob("*.ppl"))]
    assert sources
    path = tmp_path / "m.ppl"
    monkeypatch.delenv("PPL_DEBUG", raising=False)
    for k in range(150):
        src = rng.choice(sources)
        i = rng.randrange(len(src))
        op = k % 3
        if op == 0:
            bad = src[:i] + src[i + 1:]
        elif op == 1:
            bad = src[:i] + src[i] + src[i:]
        else:
            bad = src[:i] + rng.choice("(){}[];=~|:,<>+-*^.0xN#\"") + src[i + 1:]
        path.write_text(bad)
        capsys.readouterr()
        rc = main(["graph", str(path)])
        out, err = capsys.readouterr()
        assert rc in (0, 1) and "Traceback" not in err, f"exit {rc} for:\n{bad}\n{err}"
        if rc == 1:
            assert re.match(r"^\S+?(:\d+:\d+)?: error: ", err), err
