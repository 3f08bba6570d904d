"""Source text → AST, with syntax errors in the common frame."""
from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ast as A
from .errors import PPLSyntaxError


def grammar_path() -> Path:
    """The grammar from a checkout (top-level grammar/) or from the installed wheel."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "grammar" / "ppl.lark", here / "_grammar" / "ppl.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("ppl.lark not found: the installation is incomplete")


class _BracketNewlines:
    """Post-lexer: inside ( ) and [ ] a newline does not end a statement."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_path().read_text(), parser="lalr", lexer="contextual",
                postlex=_BracketNewlines(), propagate_positions=True, maybe_placeholders=True)


def _span(meta) -> A.Span:
    if getattr(meta, "empty", False):
        return A.NO_SPAN
    return A.Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(tok: Token) -> A.Span:
    return A.Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _block(items):
    return tuple(i for i in items if isinstance(i, A.Stmt))


@v_args(meta=True)
class _ToAST(Transformer):
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

    def for_stmt(self, meta, c):
        return A.For(_span(meta), str(c[0]), c[1], c[2], c[3], var_span=_tok_span(c[0]))

    def if_stmt(self, meta, c):
        orelse = c[2]
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
        return tuple(c)

    def bound(self, meta, c):
        return A.Bound(str(c[0]), c[-1], _span(meta))

    def dims(self, meta, c):
        return tuple(c)

    # ---- expressions
    def binop(self, meta, c):
        op = str(c[1])
        op = {".*": "*", "./": "/"}.get(op, op)
        return A.BinOp(_span(meta), op, c[0], c[2])

    def unop(self, meta, c):
        return A.UnOp(_span(meta), str(c[0]), c[1])

    def index(self, meta, c):
        return A.Index(_span(meta), c[0], tuple(c[1]))

    def transpose(self, meta, c):
        return A.Transpose(_span(meta), c[0])

    def int_lit(self, meta, c):
        return A.Num(_span(meta), int(c[0]), True)

    def real_lit(self, meta, c):
        return A.Num(_span(meta), float(c[0]), False)

    def true_lit(self, meta, c):
        return A.Bool(_span(meta), True)

    def false_lit(self, meta, c):
        return A.Bool(_span(meta), False)

    def name(self, meta, c):
        return A.Name(_span(meta), str(c[0]))

    def array_lit(self, meta, c):
        return A.ArrayLit(_span(meta), tuple(x for x in c if x is not None))

    def call(self, meta, c):
        args = tuple(x for x in c[1:] if x is not None)
        return A.Call(_span(meta), str(c[0]), args, None, func_span=_tok_span(c[0]))

    def cond_call(self, meta, c):
        args = tuple(x for x in c[3:] if x is not None)
        return A.Call(_span(meta), str(c[0]), args, c[1], func_span=_tok_span(c[0]))

    def indices(self, meta, c):
        return tuple(c)

    def single(self, meta, c):
        return c[0]

    def slice(self, meta, c):
        return A.Slice(_span(meta), c[0], c[1])


_TOKEN_WORDS = {
    "_NL": "end of line", "NAME": "a name", "INT": "an integer", "FLOAT": "a number",
    "LPAR": '"("', "RPAR": '")"', "LSQB": '"["', "RSQB": '"]"', "LBRACE": '"{"',
    "RBRACE": '"}"', "COLON": '":"', "COMMA": '","', "TILDE": '"~"', "EQUALS": '"="',
    "PLUSEQ": '"+="', "BAR": '"|"', "ADDOP": '"+" or "-"', "MULOP": "an operator (* / @ %)",
    "POWOP": '"^"', "RELOP": "a comparison", "EQOP": '"==" or "!="', "LESSTHAN": '"<"',
    "MORETHAN": '">"', "EQUAL": '"="', "$END": "end of file", "TRANSPOSE": "'",
    "NOTOP": '"!"', "OROP": '"||"', "ANDOP": '"&&"',
}


def _describe_expected(expected) -> str:
    words = []
    for t in sorted(expected):
        if t.startswith("__") or t == "COMMENT":
            continue
        w = _TOKEN_WORDS.get(t)
        if w is None:
            w = f'"{t.lower()}"' if t.isupper() and t.isalpha() else t
        if w not in words:
            words.append(w)
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["…"]
    return "expected " + ", ".join(words)


def _describe_token(tok) -> str:
    if tok.type == "_NL":
        return "end of line"
    if tok.type == "$END":
        return "end of file"
    return f'"{tok}"'


def parse(source: str, filename: str = "<input>") -> A.Program:
    try:
        tree = _parser().parse(source + ("\n" if not source.endswith("\n") else ""))
    except UnexpectedToken as e:
        tok = e.token
        line, col = (tok.line, tok.column) if tok.line is not None else _eof_pos(source)
        width = max(1, len(str(tok))) if tok.type not in ("_NL", "$END") else 1
        span = A.Span(line, col, line, col + width)
        what = f"unexpected {_describe_token(tok)}"
        hint = _syntax_hint(tok, e.expected, source, line)
        raise PPLSyntaxError(f"syntax error: {what}", span, hint or _describe_expected(e.expected),
                             source, filename) from None
    except UnexpectedCharacters as e:
        span = A.Span(e.line, e.column, e.line, e.column + 1)
        ch = source.splitlines()[e.line - 1][e.column - 1] if e.line > 0 else "?"
        hint = 'strings are not part of the language' if ch in "\"'" else None
        if ch == "=" and source.splitlines()[e.line - 1][e.column - 2:e.column] in ("<=", ">="):
            hint = None
        raise PPLSyntaxError(f'syntax error: unexpected character "{ch}"', span,
                             hint or _describe_expected(e.allowed), source, filename) from None
    except UnexpectedEOF as e:
        line, col = _eof_pos(source)
        raise PPLSyntaxError("syntax error: unexpected end of file", A.Span(line, col, line, col + 1),
                             _describe_expected(e.expected) or 'a "{" or "(" is not closed',
                             source, filename) from None
    except UnexpectedInput as e:  # pragma: no cover - other lark failures
        raise PPLSyntaxError(f"syntax error: {e}", None, None, source, filename) from None
    body = _ToAST().transform(tree)
    return A.Program(body, source, filename)


def _eof_pos(source: str):
    lines = source.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _syntax_hint(tok, expected, source, line):
    text = source.splitlines()[line - 1] if 0 < line <= len(source.splitlines()) else ""
    if tok.type == "$END" or (tok.type == "_NL" and "RBRACE" in expected and "RPAR" not in expected
                              and "RSQB" not in expected and text.strip() == ""):
        return 'a "{" is not closed with "}"'
    if tok.type == "EQUALS" and "TILDE" in expected:
        return None
    if str(tok) == "==" or (tok.type == "EQUALS" and "RPAR" in expected):
        return 'to compare use "==", to define a variable write `name = expr` on its own line'
    if tok.type == "_NL" and ("RPAR" in expected or "RSQB" in expected):
        return 'a "(" or "[" is not closed'
    if tok.type == "NAME" and str(tok) in ("model", "parameters", "transformed", "functions"):
        return "ppl has no Stan-style blocks: write declarations and statements at the top level"
    if tok.type == "TILDE" and ("RPAR" in expected):
        return None
    if str(tok) == ";":
        return "statements end at the end of the line; drop the \";\""
    return None
