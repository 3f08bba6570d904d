"""The grammar's LALR tables, stored as JSON and never unpickled.

Building the tables takes a quarter to half a second; loading them takes about 20 ms. Lark's own
cache (`cache=True`) pickles them into the shared temporary directory and unpickles whatever it
finds there on the next start, so anyone who can write to /tmp runs code in the next ppl process.
ppl keeps the tables instead
- in the wheel, as ppl/_grammar/ppl.tables.json, written when the wheel is built (setup.py), and
- for a checkout, in a private per-user directory ($XDG_CACHE_HOME/ppl/grammar or
  ~/.cache/ppl/grammar), created with mode 0700; the directory and the file must belong to the
  user and be writable by nobody else, or they are not read.
The format is JSON, so even a forged file cannot run code; each file carries a key (the grammar,
lark's version and the parser options, hashed) and is ignored when the key differs.

This module imports nothing from ppl, so that setup.py can load it by path at build time.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

import lark
from lark import Lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

# bump when the layout of the stored tables changes
FORMAT = 1
OPTIONS = dict(parser="lalr", lexer="contextual", propagate_positions=True, maybe_placeholders=True)
# options that are given again when the tables are loaded, not stored with them
_LOAD_OPTIONS = ("postlex", "propagate_positions")
TABLES_NAME = "ppl.tables.json"
_MAX_BYTES = 16 * 2**20


# Tokens after which a statement is visibly unfinished: a newline there continues it (Stan's
# free-form layout, `a +` at the end of a line). Not ">": it also closes `real<lower=0>`.
CONTINUING = frozenset({"ADDOP", "MULOP", "POWOP", "OROP", "ANDOP", "EQOP", "EQUALS", "TILDE",
                        "PLUSEQ", "COMPOUND", "BAR", "QMARK"})


class BracketNewlines:
    """Post-lexer: inside ( ) and [ ], and after a token in CONTINUING (or a relational
    operator other than ">"), a newline does not end a statement."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        last = None
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and (depth > 0 or _continues(last)):
                continue
            last = tok
            yield tok


def _continues(tok) -> bool:
    if tok is None:
        return False
    return tok.type in CONTINUING or (tok.type == "RELOP" and str(tok) != ">")


def key(grammar: str) -> str:
    h = hashlib.sha256()
    for part in (str(FORMAT), lark.__version__, repr(sorted(OPTIONS.items())), grammar):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def build(grammar: str) -> Lark:
    """The parser, tables built from the grammar text (no cache of any kind)."""
    return Lark(grammar, postlex=BracketNewlines(), cache=False, **OPTIONS)


# ---------------------------------------------------------------- JSON form
def _encode(x):
    # JSON has string keys only: the memo and the parse table are keyed by integers
    if isinstance(x, dict):
        if all(isinstance(k, str) for k in x):
            return {k: _encode(v) for k, v in x.items()}
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in x):
            raise TypeError("unexpected keys in the parser tables")
        return {"#int": [[k, _encode(v)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise TypeError(f"unexpected {type(x).__name__} in the parser tables")


def _ints(obj: dict) -> dict:
    if not obj:  # an empty dict was written as {}
        return {}
    return {k: v for k, v in obj["#int"]}


def _restore_int_keys(stored: dict) -> None:
    """Lark's serialised parser has integer keys in four places (the memo, the parse table's
    tokens, its states and each state's actions): restored there, not by a hook on every
    object (a third of the loading time). Another layout fails to load and is rebuilt."""
    stored["memo"] = _ints(stored["memo"])
    table = stored["data"]["parser"]["parser"]
    table["tokens"] = _ints(table["tokens"])
    table["states"] = {k: _ints(v) for k, v in _ints(table["states"]).items()}


def dumps(parser: Lark, grammar: str) -> str:
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k not in _LOAD_OPTIONS}
    return json.dumps({"key": key(grammar), "data": _encode(data), "memo": _encode(memo)},
                      separators=(",", ":"))


def loads(text: str, grammar: str) -> Optional[Lark]:
    """The parser from stored tables, or None when they are for another grammar, another
    version of lark, or malformed."""
    try:
        stored = json.loads(text)
        if not isinstance(stored, dict) or stored.get("key") != key(grammar):
            return None
        _restore_int_keys(stored)
        return Lark._load_from_dict(stored["data"], stored["memo"],
                                    postlex=BracketNewlines(),
                                    propagate_positions=OPTIONS["propagate_positions"])
    except Exception:  # a damaged file costs a rebuild, nothing more
        return None


def write_tables(grammar: str, path) -> None:
    """Build time (setup.py): the tables beside the packaged grammar."""
    Path(path).write_text(dumps(build(grammar), grammar), encoding="utf-8")


# ---------------------------------------------------------------- the private cache
def cache_dir() -> Optional[Path]:
    """The user's private directory for the tables, created 0700; None when there is no safe
    one (no home, a directory owned by someone else or open to others, no POSIX owners)."""
    if not hasattr(os, "getuid"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    path = Path(base) / "ppl" / "grammar"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return None
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o700)
            if stat.S_IMODE(os.lstat(path).st_mode) & 0o077:
                return None
    except OSError:
        return None
    return path


def _read_private(path: Path) -> Optional[str]:
    """The file's text if it is a regular file of ours that nobody else can write."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid()
                or st.st_mode & 0o022 or st.st_size > _MAX_BYTES):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _write_private(directory: Path, name: str, text: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tables-", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:  # a read-only home: build the tables at every start instead
        pass


def load_parser(grammar_file: Path) -> Lark:
    """The parser for the grammar file: packaged tables beside it, else the private cache,
    else built (and then stored in the private cache)."""
    grammar = grammar_file.read_text(encoding="utf-8")
    packaged = grammar_file.with_name(TABLES_NAME)
    if packaged.is_file():
        parser = loads(packaged.read_text(encoding="utf-8"), grammar)
        if parser is not None:
            return parser
    directory = cache_dir()
    name = f"tables-{key(grammar)[:16]}.json"
    if directory is not None:
        text = _read_private(directory / name)
        if text is not None:
            parser = loads(text, grammar)
            if parser is not None:
                return parser
    parser = build(grammar)
    if directory is not None:
        _write_private(directory, name, dumps(parser, grammar))
    return parser
