"""The parse tables: never unpickled, never read from a shared directory (issue 13, defect 2)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ppl.syntax import tables
from ppl.syntax.parser import grammar_path

ROOT = Path(__file__).resolve().parents[2]
GRAMMAR = grammar_path().read_text()


def _run_parser(tmp_path, env_extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    code = ("from ppl.syntax.parser import parse\n"
            "parse(open(%r).read())\n" % str(ROOT / "examples" / "eight_schools.ppl"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_nothing_is_cached_in_the_shared_temporary_directory(tmp_path):
    """Lark's cache=True pickles the tables into $TMPDIR and unpickles what it finds there on
    the next start: anyone who can write to /tmp would run code in the next ppl process."""
    shared, home = tmp_path / "tmp", tmp_path / "cache"
    shared.mkdir()
    for _ in range(2):  # the second start is where a planted cache file would be loaded
        r = _run_parser(tmp_path, {"TMPDIR": str(shared), "XDG_CACHE_HOME": str(home)})
        assert r.returncode == 0, r.stderr
    assert list(shared.iterdir()) == [], "ppl wrote into the shared temporary directory"
    private = home / "ppl" / "grammar"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    files = list(private.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    assert stat.S_IMODE(files[0].stat().st_mode) & 0o077 == 0


def test_tables_round_trip_through_json():
    parser = tables.loads(tables.dumps(tables.build(GRAMMAR), GRAMMAR), GRAMMAR)
    assert parser is not None
    reference = tables.build(GRAMMAR)
    for path in sorted((ROOT / "examples").glob("*.ppl")):
        text = path.read_text()
        assert parser.parse(text) == reference.parse(text), path.name


def test_tables_for_another_grammar_or_damaged_are_ignored():
    text = tables.dumps(tables.build(GRAMMAR), GRAMMAR)
    assert tables.loads(text, GRAMMAR + "\n// changed\n") is None
    assert tables.loads(text[: len(text) // 2], GRAMMAR) is None
    assert tables.loads('{"key": "x"}', GRAMMAR) is None
    # JSON can hold no code: a file crafted to look like a pickle is just not JSON
    assert tables.loads("cos\nsystem\n(S'touch /tmp/pwned'\ntR.", GRAMMAR) is None


def test_cache_dir_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tables.cache_dir()
    assert d == tmp_path / "ppl" / "grammar"
    st = d.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()


def test_cache_dir_open_to_others_is_closed_or_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "ppl" / "grammar"
    d.mkdir(parents=True)
    d.chmod(0o777)
    assert tables.cache_dir() == d and stat.S_IMODE(d.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown needs root")
def test_cache_dir_owned_by_someone_else_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "ppl" / "grammar"
    d.mkdir(parents=True, mode=0o700)
    os.chown(d, 65534, 65534)
    assert tables.cache_dir() is None


def test_cached_file_writable_by_others_or_a_symlink_is_not_read(tmp_path):
    good = tmp_path / "t.json"
    good.write_text("{}")
    good.chmod(0o600)
    assert tables._read_private(good) == "{}"
    good.chmod(0o666)
    assert tables._read_private(good) is None
    good.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert tables._read_private(link) is None


def test_a_damaged_cache_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parser = tables.load_parser(grammar_path())  # builds and stores
    stored = next((tmp_path / "ppl" / "grammar").glob("tables-*.json"))
    stored.write_text("not json")
    again = tables.load_parser(grammar_path())
    text = (ROOT / "examples" / "sv.ppl").read_text()
    assert again.parse(text) == parser.parse(text)
    assert tables.loads(stored.read_text(), GRAMMAR) is not None  # rewritten
