"""The wheel carries the grammar, its parse tables and the standard library (an installed copy
needs no checkout and builds nothing at run time)."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_grammar_and_stdlib(tmp_path):
    # the build backend comes with the test extras: no isolated environment to fetch it into
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("ppl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ppl/_grammar/ppl.lark" in names
    stdlib = {p.name for p in (ROOT / "stdlib").glob("*.ppl")}
    assert stdlib and {f"ppl/_stdlib/{n}" for n in stdlib} <= names
    # the parse tables, built at build time: an installed copy loads them and builds nothing
    assert "ppl/_grammar/ppl.tables.json" in names
    from ppl.syntax import tables
    wheel_zip = zipfile.ZipFile(wheel)
    grammar = wheel_zip.read("ppl/_grammar/ppl.lark").decode()
    parser = tables.loads(wheel_zip.read("ppl/_grammar/ppl.tables.json").decode(), grammar)
    assert parser is not None, "the packaged tables do not match the packaged grammar"
    source = (ROOT / "examples" / "eight_schools.ppl").read_text()
    assert parser.parse(source) == tables.build(grammar).parse(source)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = wheel_zip.read(entry_points).decode()
    assert "[pygments.lexers]\nppl = ppl.syntax.highlight:PPLLexer" in text
    assert "ppl = ppl.__main__:entry" in text
