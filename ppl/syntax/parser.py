"""Source text → AST, with syntax errors in the common frame."""
from __future__ import annotations

import codecs
import contextlib
import functools
import math
import re
import sys
from pathlib import Path

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from . import ast as A
from .errors import PPLSyntaxError, source_lines
from .tables import BracketNewlines, load_parser


def grammar_path() -> Path:
    """The grammar from a checkout (top-level grammar/) or from the installed wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "grammar" / "ppl.lark", here / "_grammar" / "ppl.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("ppl.lark not found: the installation is incomplete")


# the post-lexer lives with the tables (setup.py builds them without importing ppl)
_BracketNewlines = BracketNewlines


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # never Lark's cache=True: it unpickles a file from the shared temporary directory
    return load_parser(grammar_path())


def _span(meta) -> A.Span:
    if getattr(meta, "empty", False):
        return A.NO_SPAN
    return A.Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> A.Span:
    return A.Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _block(items):
    return tuple(i for i in items if isinstance(i, A.Stmt))


@v_args(meta=True)
class _ToAST(Transformer_NonRecursive):
    # not recursive: a 500-term sum or 300 nested calls must not hit Python's recursion limit
    # ---- statements
    def start(self, meta, items):
        return _block(items)

    def block(self, meta, items):
        return _block(items)

    def data_decl(self, meta, c):
        return A.DataDecl(_span(meta), str(c[0]), c[1], name_span=_tok_span(c[0]))

    def param_decl(self, meta, c):
        return A.ParamDecl(_span(meta), str(c[0]), c[1], name_span=_tok_span(c[0]))

    def var_decl(self, meta, c):
        name, typ = c[0], c[1]
        dist = value = None
        if len(c) > 2:
            if c[2].type == "TILDE":
                dist = c[3]
            else:
                value = c[3]
        return A.VarDecl(_span(meta), str(name), typ, dist, value, name_span=_tok_span(name))

    def sample(self, meta, c):
        return A.Sample(_span(meta), c[0], c[2])

    def assign(self, meta, c):
        return A.Assign(_span(meta), c[0], c[2])

    def target(self, meta, c):
        return A.TargetIncrement(_span(meta), c[1])

    def compound_assign(self, meta, c):
        # `x op= e` is `x = x op (e)`: the checker and everything after see a plain assignment
        lv, op, value = c[0], str(c[1])[0], c[2]
        current = A.Name(lv.span, lv.name) if not lv.indices else A.Index(lv.span, A.Name(lv.span, lv.name), lv.indices)
        return A.Assign(_span(meta), lv, A.BinOp(_span(meta), op, current, value))

    def for_stmt(self, meta, c):
        return A.For(_span(meta), str(c[0]), c[1], c[2], c[3], var_span=_tok_span(c[0]))

    def if_stmt(self, meta, c):
        orelse = c[2] if len(c) > 2 else None
        if orelse is None:
            orelse = ()
        elif isinstance(orelse, A.If):
            orelse = (orelse,)
        return A.If(_span(meta), c[0], c[1], orelse)

    def fun_param(self, meta, c):
        return A.FunParam(str(c[0]), c[1], _span(meta))

    def fun_def(self, meta, c):
        name, *rest = c
        body = rest[-1]
        returns = rest[-2]
        params = tuple(p for p in rest[:-2] if p is not None)
        return A.FunDef(_span(meta), str(name), params, returns, body, name_span=_tok_span(name))

    def return_stmt(self, meta, c):
        return A.Return(_span(meta), c[0])

    def import_stmt(self, meta, c):
        return A.Import(_span(meta), str(c[0]))

    def generated(self, meta, c):
        return A.Generated(_span(meta), c[0])

    def move_def(self, meta, c):
        name, *rest = c
        body = rest[-1] if rest and isinstance(rest[-1], _MoveBody) else None
        items = [x for x in (rest[:-1] if body is not None else rest) if x is not None]
        args = tuple(x for x in items if not isinstance(x, A.NamedArg))
        named = tuple(x for x in items if isinstance(x, A.NamedArg))
        if named:
            _check_named(items)
        if body is None:
            return A.MoveDef(_span(meta), str(name), args, named, (), (), False, name_span=_tok_span(name))
        return A.MoveDef(_span(meta), str(name), args, named, body.propose, body.involution, True,
                         name_span=_tok_span(name), propose_span=body.propose_span,
                         involution_span=body.involution_span)

    def move_body(self, meta, c):
        blocks = [x for x in c if isinstance(x, tuple)]
        return _MoveBody(blocks[0], blocks[1], _span(meta), _span(meta))

    def lvalue(self, meta, c):
        return A.LValue(str(c[0]), tuple(c[1]) if len(c) > 1 and c[1] is not None else (), _span(meta))

    # ---- types
    def type(self, meta, c):
        base = str(c[0])
        bounds = ()
        dims = []
        for item in c[1:]:
            if isinstance(item, tuple) and item and isinstance(item[0], A.Bound):
                bounds = item
            elif item is not None:
                dims.append(item)
        return A.TypeExpr(base, bounds, tuple(dims), _span(meta))

    def bounds(self, meta, c):
        close = c[-1]
        if str(close) != ">":
            raise PPLSyntaxError(f'syntax error: unexpected "{close}" in the bounds', _tok_span(close),
                                 'bounds end with ">", as in real<lower=0, upper=1>')
        return tuple(x for x in c if isinstance(x, A.Bound))

    def bound(self, meta, c):
        return A.Bound(str(c[0]), c[-1], _span(meta))

    def dims(self, meta, c):
        return tuple(c)

    # ---- expressions
    def binop(self, meta, c):
        op = str(c[1])
        op = {".*": "*", "./": "/"}.get(op, op)
        return A.BinOp(_span(meta), op, c[0], c[2])

    def ternary(self, meta, c):
        return A.Ternary(_span(meta), c[0], c[1], c[2])

    def unop(self, meta, c):
        return A.UnOp(_span(meta), str(c[0]), c[1])

    def index(self, meta, c):
        return A.Index(_span(meta), c[0], tuple(c[1]))

    def transpose(self, meta, c):
        return A.Transpose(_span(meta), c[0])

    def int_lit(self, meta, c):
        text = str(c[0])
        # int() of more than 4,300 digits raises ValueError (Python's guard against slow
        # conversions); anything past 19 digits is beyond int64 anyway
        value = int(text) if len(text) <= 20 else None
        if value is None or value > INT_MAX:
            shown = text if len(text) <= 30 else f"{text[:12]}…{text[-6:]} ({len(text)} digits)"
            hint = f"integers are 64-bit, at most {INT_MAX}"
            if len(text) <= 308:
                hint += f"; for a real number write it with an exponent: {_as_real(text)}"
            raise PPLSyntaxError(f"integer literal {shown} is too large", _span(meta), hint)
        return A.Num(_span(meta), value, True)

    def real_lit(self, meta, c):
        value = float(c[0])
        if math.isinf(value):
            raise PPLSyntaxError(f"number {_short(str(c[0]))} is too large for a real", _span(meta),
                                 "reals are 64-bit floating point, at most about 1.8e308")
        return A.Num(_span(meta), value, False)

    def true_lit(self, meta, c):
        return A.Bool(_span(meta), True)

    def false_lit(self, meta, c):
        return A.Bool(_span(meta), False)

    def name(self, meta, c):
        return A.Name(_span(meta), str(c[0]))

    def array_lit(self, meta, c):
        return A.ArrayLit(_span(meta), tuple(x for x in c if x is not None))

    def call(self, meta, c):
        items = [x for x in c[1:] if x is not None]
        args = tuple(x for x in items if not isinstance(x, A.NamedArg))
        named = tuple(x for x in items if isinstance(x, A.NamedArg))
        if named:
            _check_named(items)
        return A.Call(_span(meta), str(c[0]), args, None, func_span=_tok_span(c[0]), named=named)

    def named_arg(self, meta, c):
        return A.NamedArg(str(c[0]), c[1], _span(meta))

    def cond_call(self, meta, c):
        args = tuple(x for x in c[3:] if x is not None)
        return A.Call(_span(meta), str(c[0]), args, c[1], func_span=_tok_span(c[0]))

    def indices(self, meta, c):
        return tuple(c)

    def single(self, meta, c):
        return c[0]

    def slice(self, meta, c):
        return A.Slice(_span(meta), c[0], c[1])


class _MoveBody:
    """The two blocks of a move, on their way into `A.MoveDef`."""

    def __init__(self, propose, involution, propose_span, involution_span):
        self.propose, self.involution = propose, involution
        self.propose_span, self.involution_span = propose_span, involution_span


def _check_named(items):
    """Named arguments come after the positional ones, each name once."""
    seen = {}
    for i, x in enumerate(items):
        if isinstance(x, A.NamedArg):
            if x.name in seen:
                raise PPLSyntaxError(f'the argument "{x.name}" is given twice', x.span,
                                     f"it is first given at column {seen[x.name].col}")
            seen[x.name] = x.span
        elif seen:
            raise PPLSyntaxError("a positional argument follows a named one", x.span,
                                 "put the positional arguments first, or name this one too")


_TOKEN_WORDS = {
    "_NL": "end of line", "NAME": "a name", "INT": "an integer", "FLOAT": "a number",
    "LPAR": '"("', "RPAR": '")"', "LSQB": '"["', "RSQB": '"]"', "LBRACE": '"{"',
    "RBRACE": '"}"', "COLON": '":"', "COMMA": '","', "TILDE": '"~"', "EQUALS": '"="',
    "PLUSEQ": '"+="', "COMPOUND": '"+=", "-=", "*=" or "/="', "BAR": '"|"', "ADDOP": '"+" or "-"', "MULOP": "an operator (* / @ %)",
    "POWOP": '"^"', "RELOP": "a comparison", "EQOP": '"==" or "!="', "LESSTHAN": '"<"',
    "MORETHAN": '">"', "EQUAL": '"="', "$END": "end of file", "TRANSPOSE": "'",
    "NOTOP": '"!"', "OROP": '"||"', "ANDOP": '"&&"', "__ANON_0": '"->"', "QMARK": '"?"',
}
# tokens that continue an expression (binary and postfix operators)
_OPERATORS = {"ADDOP", "MULOP", "POWOP", "RELOP", "EQOP", "ANDOP", "OROP", "TRANSPOSE",
              "LESSTHAN", "MORETHAN"}
# tokens that start an expression
_EXPR_START = {"NAME", "INT", "FLOAT", "LPAR", "LSQB", "NOTOP", "TRUE", "FALSE"}
# the order in which expected tokens are listed: closers first, end of line last
_ORDER = ["RPAR", "RSQB", "RBRACE", "COMMA", "COLON", "BAR", "TILDE", "EQUALS", "PLUSEQ",
          "LBRACE", "LSQB", "LPAR", "NAME", "INT", "FLOAT"]
_KEYWORD_TOKENS = {"DATA", "DEF", "ELSE", "FOR", "GENERATED", "IF", "IMPORT", "IN", "PARAM",
                   "RETURN", "TARGET", "TRUE", "FALSE", "MOVE"}
_STAN_TYPES = {"real", "int", "vector", "row_vector", "matrix", "simplex", "ordered",
               "positive_ordered", "unit_vector", "cov_matrix", "corr_matrix",
               "cholesky_factor_corr", "cholesky_factor_cov", "array", "bool"}
_STAN_BLOCKS = {
    "model": "write its statements at the top level, without the braces and the \";\"",
    "parameters": "declare each parameter at the top level, e.g. `param sigma: real<lower=0>`, "
                  "or give it a distribution directly: `sigma ~ half_normal(1)`",
    "transformed parameters": "write `name = expr` at the top level: such variables are "
                              "deterministic and reported with the draws",
    "data": "declare each data variable at the top level, e.g. `data N: int`",
    "transformed data": "write `name = expr` at the top level",
    "functions": "define each function at the top level: `def f(x: real) -> real { … }`",
    "generated quantities": "write `generated { … }`",
}


def _describe_expected(expected) -> str:
    """The tokens the parser would accept, in words, closers first, operators grouped."""
    exp = {t for t in expected if not (t.startswith("__IGNORE") or t == "COMMENT")}
    words = []
    if {"NAME", "INT", "FLOAT"} <= exp:
        exp -= _EXPR_START | {"ADDOP"}
        words_expr = ["an expression"]
    else:
        words_expr = []
    ops = exp & _OPERATORS
    if len(ops) > 2:
        exp -= _OPERATORS
        words_ops = ["an operator"]
    else:
        words_ops = []
    keyed = sorted(exp, key=lambda t: (_ORDER.index(t) if t in _ORDER else len(_ORDER),
                                       t in ("_NL", "$END"), t))
    for t in keyed:
        if t in ("_NL", "$END"):
            continue
        w = _TOKEN_WORDS.get(t)
        if w is None:
            w = f'"{t.lower()}"' if t.isupper() and t.isalpha() else t
        if w not in words:
            words.append(w)
    words = words_expr + words + words_ops
    for t in ("_NL", "$END"):
        if t in exp:
            words.append(_TOKEN_WORDS[t])
    if not words:
        return ""
    if len(words) > 6:
        words = words[:6] + ["…"]
    if len(words) == 1:
        return "expected " + words[0]
    return "expected " + ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(tok) -> str:
    if tok.type == "_NL":
        return "end of line"
    if tok.type == "$END":
        return "end of file"
    return f'"{tok}"'


INT_MAX = 2**63 - 1
# How deeply expressions and blocks may nest. The later stages walk the program recursively;
# the parser itself does not, and past this depth a program is machine-made and wrong.
MAX_DEPTH = 1000
# Python frames the recursive stages may need for a program MAX_DEPTH deep (a few per level).
RECURSION_NEEDED = 10 * MAX_DEPTH


@contextlib.contextmanager
def recursion_headroom(frames: int = RECURSION_NEEDED):
    """Raise Python's recursion limit (1000 by default) to `frames` for the duration, never
    lower it: the checker and the data checks recurse a few frames per level of nesting.
    Python 3.11 runs Python-to-Python calls without growing the C stack, so this is safe."""
    before = sys.getrecursionlimit()
    if before < frames:
        sys.setrecursionlimit(frames)
    try:
        yield
    finally:
        if before < frames and sys.getrecursionlimit() == frames:
            sys.setrecursionlimit(before)


def _as_real(digits: str) -> str:
    return f"{digits[0]}.{digits[1:4] or '0'}e{len(digits) - 1}"


def _short(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:12]}…{text[-6:]}"


def decode_source(data: bytes, filename: str, error=PPLSyntaxError, what: str = "model") -> str:
    """The text of a model (or data) file: UTF-8 (a byte order mark is dropped), or UTF-16/32
    when the file starts with their byte order mark. Anything else is a framed `error` at the
    first byte that is not UTF-8."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                break
    binary = error("this is not a text file: it holds binary data", None,
                   f"give the path to the {what} file, UTF-8 text", None, filename)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if b"\0" in data[:4096]:
            raise binary from None
        shown = data.decode("utf-8", errors="replace")
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        col = len(data[start:e.start].decode("utf-8", errors="replace")) + 1
        raise error(f"the file is not valid UTF-8: byte 0x{data[e.start]:02x} cannot be decoded",
                    A.Span(line, col, line, col + 1),
                    f"save the {what} as UTF-8 text (ppl reads UTF-8, or UTF-16 with a byte "
                    "order mark)", shown, filename) from None
    if "\0" in text:
        raise binary
    return text


def read_source(path) -> str:
    """A model file's text, or a PPLError saying why it cannot be read."""
    p = Path(path)
    if p.is_dir():
        raise PPLSyntaxError("this is a directory, not a model file", None,
                             "give the path to a .ppl file", None, str(path))
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PPLSyntaxError("model file not found", None, "give the path to a .ppl file", None,
                             str(path)) from None
    except OSError as e:
        raise PPLSyntaxError(f"cannot read the model file: {e.strerror or e}", None,
                             "check the path and its permissions", None, str(path)) from None
    return decode_source(data, str(path))


def parse(source: str, filename: str = "<input>") -> A.Program:
    if source.startswith("\ufeff"):  # a UTF-8 byte order mark, as some editors write
        source = source[1:]
    try:
        tree = _parser().parse(source + ("\n" if not source.endswith("\n") else ""))
    except UnexpectedInput as e:
        raise _syntax_error(e, source, filename) from None
    try:
        body = _ToAST().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, PPLSyntaxError):
            raise e.orig_exc.attach(source, filename) from None
        raise
    _check_depth(body, source, filename)
    return A.Program(body, source, filename)


def _children(node):
    """The statements and expressions directly inside a node."""
    if isinstance(node, A.Expr):
        if isinstance(node, A.BinOp):
            return (node.left, node.right)
        if isinstance(node, (A.UnOp, A.Transpose)):
            return (node.operand,)
        if isinstance(node, A.Call):
            return ((node.given,) if node.given is not None else ()) + node.args
        if isinstance(node, A.Index):
            return (node.base,) + node.indices
        if isinstance(node, A.Slice):
            return tuple(x for x in (node.lo, node.hi) if x is not None)
        if isinstance(node, A.ArrayLit):
            return node.items
        return ()
    out = []
    for name in ("type", "dist", "value", "target", "lo", "hi", "cond", "body", "then", "orelse",
                 "returns", "propose", "involution"):
        v = getattr(node, name, None)
        if v is None:
            continue
        if isinstance(v, tuple):
            out.extend(v)
        elif isinstance(v, A.TypeExpr):
            out.extend(b.value for b in v.bounds)
            out.extend(d for g in v.dims for d in g)
        elif isinstance(v, A.LValue):
            out.extend(v.indices)
        else:
            out.append(v)
    for p in getattr(node, "params", ()) or ():
        if p.type is not None:
            out.extend(d for g in p.type.dims for d in g)
    return tuple(out)


def _check_depth(body, source, filename):
    """A framed error, not a RecursionError in a later stage, for absurdly deep nesting."""
    stack = [(s, 1) for s in body]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PPLSyntaxError(f"the program nests more than {MAX_DEPTH} levels deep here",
                                 getattr(node, "span", None),
                                 "split the expression or the blocks, e.g. name partial results "
                                 "with `=`", source, filename)
        stack.extend((c, depth + 1) for c in _children(node))


def _eof_pos(source: str):
    lines = source_lines(source) or [""]
    return len(lines), len(lines[-1]) + 1


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


def _brackets_before(source: str, line: int, col: int):
    """Scan the source up to (line, col): the brackets still open there (innermost last), and
    the first closing bracket that matched nothing, if any."""
    stack, stray = [], None
    for ln, text in enumerate(source_lines(source), start=1):
        if ln > line:
            break
        for c, ch in enumerate(text, start=1):
            if ln == line and c >= col:
                break
            if ch == "#":
                break
            if ch in _OPENERS:
                stack.append((ch, ln, c))
            elif ch in _CLOSERS:
                if stack and stack[-1][0] == _CLOSERS[ch]:
                    stack.pop()
                elif stray is None:
                    stray = (ch, ln, c)
    return stack, stray


def _code(text: str) -> str:
    """A source line without its comment."""
    i = text.find("#")
    return text if i < 0 else text[:i]


_TRAILING_OP = re.compile(r"(\|\||&&|==|!=|<=|>=|\.\*|\./|\+=|-=|\*=|/=|[-+*/%@^<~=|?])$")


def _continued_from(lines, line: int, col: int):
    """(line, column just after it, operator) of the operator ending the last code line before
    `line` when the statement at the error was continued from there, else None."""
    if line <= 1:
        return None
    prev = min(line - 1, len(lines))
    ln, text = _last_code_line(lines, prev, len(lines[prev - 1]) + 1)
    if not text.strip():
        return None
    m = _TRAILING_OP.search(text.rstrip())
    if m is None:
        return None
    return ln, len(text.rstrip()) + 1, m.group(1)


def _last_code_line(lines, before_line: int, before_col: int):
    """The line number and text of the last code before the given position."""
    ln = before_line
    text = _code(lines[ln - 1][:before_col - 1]) if 0 < ln <= len(lines) else ""
    while ln > 1 and not text.strip():
        ln -= 1
        text = _code(lines[ln - 1])
    return ln, text


def _accepted(e) -> set:
    """The tokens really acceptable at the error. LALR's own list for a state includes the
    look-aheads of pending reductions from every context, so simulate them instead."""
    try:
        ip = e.interactive_parser
        if ip is not None:
            acc = set(ip.accepts())
            if acc:
                return acc
    except Exception:  # pragma: no cover - fall back to lark's list
        pass
    return set(e.expected)


def _syntax_error(e, source: str, filename: str) -> PPLSyntaxError:
    lines = source_lines(source)

    def err(msg, line, col, width=1, hint=None):
        return PPLSyntaxError(f"syntax error: {msg}", A.Span(line, col, line, col + max(1, width)),
                              hint, source, filename)

    def unfinished_err(op_line, op_col, op, next_line):
        nxt = f"line {next_line}" if next_line is not None else "the end of the file"
        return err("the expression is not finished", op_line, op_col, 1,
                   f'a value is missing after "{op}": a line that ends with an operator continues '
                   f"on the next line, and {nxt} does not continue it")

    if isinstance(e, UnexpectedCharacters):
        line, col = e.line, e.column
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        ch = text[col - 1] if 0 < col <= len(text) else "?"
        if ch == ";":
            return err('unexpected ";"', line, col, 1,
                       'statements end at the end of the line in ppl: drop the ";"')
        if ch in "\"'":
            quoted = "'\"'" if ch == '"' else '"\'"'
            return err(f"unexpected quote {quoted}", line, col, 1,
                       "ppl has no strings: values are numbers, arrays and names")
        return err(f'unexpected character "{ch}"', line, col, 1, _describe_expected(e.allowed))

    if isinstance(e, UnexpectedToken) and e.token.type != "$END" and e.token.line is not None:
        tok, expected = e.token, _accepted(e)
        line, col = tok.line, tok.column
        width = len(str(tok)) if tok.type != "_NL" else 1
    else:  # end of file
        tok, expected = None, set(getattr(e, "expected", ()) or ())
        line, col = _eof_pos(source)
        width = 1
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    before = _code(text[:col - 1])
    stack, stray = _brackets_before(source, line, col)
    ttype = tok.type if tok is not None else "$END"
    tstr = str(tok) if tok is not None else ""

    # a closing bracket that closes nothing
    if ttype in ("RPAR", "RSQB", "RBRACE"):
        opener = _CLOSERS[tstr]
        if not stack:
            return err(f'unmatched "{tstr}"', line, col, 1, f'there is no "{opener}" before it to close')
        if stack[-1][0] != opener:
            ch, ol, oc = stack[-1]
            return err(f'unexpected "{tstr}"', line, col, 1,
                       f'the innermost open bracket is the "{ch}" at line {ol}, column {oc}: '
                       f'close it with "{_OPENERS[ch]}" first')

    # Stan-style blocks: `model {`, `parameters {`, `generated quantities {`
    head = " ".join(before.split())
    if ttype == "NAME" and tstr == "quantities" and head == "generated":
        head, ttype = "generated quantities", "LBRACE"
    if ttype == "LBRACE" and head in _STAN_BLOCKS:
        start = len(text) - len(text.lstrip()) + 1
        return err(f'ppl has no Stan-style "{head}" block', line, start, col - start + 1,
                   _STAN_BLOCKS[head])

    # `else` that follows no if block
    if head == "else" and ttype in ("LBRACE", "NAME", "IF", "_NL"):
        start = len(text) - len(text.lstrip()) + 1
        return err('"else" without an "if"', line, start, 4,
                   'write "else" on the same line as the "}" that closes the if block: `} else {`')

    # a keyword where a name belongs
    if ttype in _KEYWORD_TOKENS and "NAME" in expected and ttype not in ("TRUE", "FALSE"):
        return err(f'"{tstr}" is a keyword and cannot be used as a name', line, col, width,
                   f'choose another name, e.g. "{tstr}_"')
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*", before)
    if m and m.group(1) in _KEYWORD_NAMES and ttype in ("TILDE", "EQUALS", "COLON", "PLUSEQ"):
        kw = m.group(1)
        return err(f'"{kw}" is a keyword and cannot be used as a name', line, m.start(1) + 1, len(kw),
                   f'choose another name, e.g. "{kw}_"')

    # Stan-style declarations: `real mu;`, `vector[N] y;`
    first = re.match(r"\s*([A-Za-z_]\w*)", text)
    if first and first.group(1) in _STAN_TYPES and tok is not None and ":" not in before \
            and ttype in ("NAME", "LESSTHAN", "RELOP"):
        m = re.fullmatch(r"\s*([A-Za-z_]\w*(?:<[^>]*>)?(?:\[[^\]]*\])*)\s+([A-Za-z_]\w*)\s*;?\s*",
                         _code(text))
        if m:
            hint = (f"ppl declares a variable as `name: type`: write `{m.group(2)}: {m.group(1)}` "
                    f"(`data {m.group(2)}: …` for data, `param {m.group(2)}: …` for a parameter)")
        else:
            hint = "ppl declares a variable as `name: type`, e.g. `mu: real` or `data y: real[N]`"
        return err(f"unexpected {_describe_token(tok)}", line, col, width, hint)

    # a missing ":" between a name and its type: `data N int`
    if "COLON" in expected and ttype == "NAME" and re.fullmatch(r"\s*(data|param)?\s*[A-Za-z_]\w*\s*", before):
        fixed = before.rstrip() + ": " + _code(text[col - 1:]).strip()
        return err(f"unexpected {_describe_token(tok)}", line, col, width,
                   f'a ":" goes between the name and its type: `{fixed.strip()}`')

    # bounds left open: `data N: int<lower=0`
    m = re.search(r":\s*[A-Za-z_]\w*\s*(<)[^>]*$", before)
    if m and ttype in ("_NL", "$END", "LSQB", "TILDE", "EQUALS") and not stack:
        return err('the "<" of the bounds is not closed', line, m.start(1) + 1, 1,
                   'bounds end with ">", as in real<lower=0, upper=1>')

    # a block that does not start on the line of its `for`/`if`
    if ttype == "_NL" and "LBRACE" in expected and re.match(r"(for|if|else|generated|def)\b", head):
        return err('expected "{" at the end of the line', line, col, 1,
                   f'a block starts on the same line: `{_code(text).strip()} {{`')

    # a statement token inside an open bracket: `x[1 ~ normal(0, 1)`
    if stack and stack[-1][0] in "([" and ttype in ("TILDE", "PLUSEQ", "LBRACE"):
        ch, ol, oc = stack[-1]
        return err(f'"{ch}" is not closed', ol, oc, 1,
                   f'add "{_OPENERS[ch]}" to close it before the "{tstr}" at column {col}')

    # a bracket left open on an earlier line
    if stack and stack[-1][0] in "([" and (tok is None or (stack[-1][1] < line and not before.strip())):
        ch, ol, oc = stack[-1]
        last, _ = _last_code_line(lines, line, col)
        return err(f'"{ch}" is not closed', ol, oc, 1,
                   f'add "{_OPENERS[ch]}" to close it before the end of line {last}')
    if tok is None:
        if stack:
            ch, ol, oc = stack[-1]
            return err(f'"{ch}" is not closed', ol, oc, 1,
                       f'the file ends before the "{_OPENERS[ch]}" that closes it')
        m = _TRAILING_OP.search(before.rstrip())
        if m is not None:
            return unfinished_err(line, len(before.rstrip()) + 1, m.group(1), None)
        unfinished = _continued_from(lines, line, col)
        if unfinished is not None:
            return unfinished_err(*unfinished, None)
        return err("unexpected end of file", line, col, 1, _describe_expected(expected) or None)

    # a line ending with an operator continues on the next; the error is on that next line
    unfinished = _continued_from(lines, line, col) if not before.strip() or ttype not in expected \
        else None
    if unfinished is not None and not stack:
        return unfinished_err(*unfinished, line)

    # `==` where a statement needs `=`, and `=` where an expression needs `==`
    if ttype == "EQUALS" and col > 1 and text[col - 2] == "=":
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=", before)
        name = m.group(1) if m else "name"
        return err('"==" compares two values; it cannot start a statement', line, col - 1, 2,
                   f'to define "{name}" use one "=": `{name} = …`' if m else
                   'to define a variable use one "=": `name = expr`')
    if ttype == "EQUALS" and (head.startswith(("if ", "else if ")) or (stack and stack[-1][0] == "(")):
        return err('"=" cannot be used inside an expression', line, col, 1,
                   'to compare two values use "=="; to define a variable write `name = expr` '
                   "on its own line")
    if ttype == "BAR":
        return err('unexpected "|"', line, col, 1,
                   '"|" only appears in density calls such as normal_lpdf(y | mu, sigma); '
                   "with \"~\" write the arguments only: `y ~ normal(mu, sigma)`")

    # a number with two decimal points, `1.2.3`
    if ttype in ("FLOAT", "INT", "NAME") and col > 1 and (text[col - 2].isdigit() or text[col - 2] == "."):
        lo = col - 1
        while lo > 0 and (text[lo - 1].isalnum() or text[lo - 1] in "._"):
            lo -= 1
        hi = col - 1
        while hi < len(text) and (text[hi].isalnum() or text[hi] in "._"):
            hi += 1
        if text[lo:lo + 1].isdigit() or text[lo:lo + 1] == ".":
            return err(f'malformed number "{text[lo:hi]}"', line, lo + 1, hi - lo,
                       "write numbers like 3, 2.5, .5 or 1e-3")

    # an expression cut short at the end of the line
    if ttype == "_NL" and {"NAME", "INT"} <= expected:
        last = before.rstrip()
        m = re.search(r"(\|\||&&|==|!=|<=|>=|\.\*|\./|[-+*/%@^<>!~=,])$", last)
        op = m.group(1) if m else None
        what = f'after "{op}"' if op else "here"
        return err("the expression is not finished", line, col, 1,
                   f"a value is missing {what}; to continue an expression on the next line, "
                   "wrap it in parentheses")

    # an operator starting a line: the previous line was a complete statement
    if not before.strip() and ttype in ("ADDOP", "MULOP", "POWOP", "OROP", "ANDOP", "EQOP") and \
            line > 1:
        return err(f'unexpected "{tstr}" at the start of a line', line, col, width,
                   "a statement ends at the end of its line unless the line ends with an operator: "
                   f'to continue the previous line, move the "{tstr}" to its end')

    # something after a complete statement: `mu ~ normal(0, 1) 2`
    if "_NL" in expected and ttype not in ("_NL",) and ttype not in expected:
        return err(f"unexpected {_describe_token(tok)} after the end of the statement", line, col, width,
                   "a statement ends at the end of its line: put each statement on its own line"
                   + ("" if not (expected - {"_NL", "$END"}) else
                      f" ({_describe_expected(expected - {'_NL', '$END'})})"))

    return err(f"unexpected {_describe_token(tok)}", line, col, width,
               _describe_expected(expected) or None)


_KEYWORD_NAMES = {"data", "param", "for", "in", "if", "else", "def", "return", "import",
                  "generated", "target", "true", "false", "move"}
