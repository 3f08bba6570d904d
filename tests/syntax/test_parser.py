"""Parser: the design's core programs and the examples parse; precedence, indexing, slices,
density calls, line continuation inside brackets, comments; syntax errors are framed."""
from __future__ import annotations

from pathlib import Path

import pytest

from ppl.syntax import ast as A
from ppl.syntax.errors import PPLSyntaxError
from ppl.syntax.parser import _describe_expected, parse

ROOT = Path(__file__).resolve().parents[2]

EIGHT_SCHOOLS = """\
# eight_schools.ppl — non-centred hierarchical model
data J: int<lower=1>
data y: real[J]
data sigma: real<lower=0>[J]

mu ~ normal(0, 5)
tau ~ half_cauchy(5)
theta_raw: real[J] ~ normal(0, 1)   # typed latent: shape J, iid
theta = mu + tau * theta_raw        # deterministic, reported in the output
y ~ normal(theta, sigma)            # y is data, so this observes it
"""

SV = """\
# sv.ppl — stochastic volatility (a state-space model)
data T: int
data y: real[T]

mu ~ normal(0, 5)
phi ~ uniform(-1, 1)
s ~ half_normal(1)
x: real[T]
x[1] ~ normal(mu, s / sqrt(1 - phi^2))
for t in 2:T {
  x[t] ~ normal(mu + phi * (x[t-1] - mu), s)
}
for t in 1:T {
  y[t] ~ normal(0, exp(x[t] / 2))
}
"""

REGRESSION = """\
# regression with flat priors, Stan style
data N: int
data D: int
data X: real[N, D]
data y: real[N]
param beta: real[D]                 # no distribution: improper flat prior
param sigma: real<lower=0>
target += normal_lpdf(y | X @ beta, sigma)
generated {
  y_rep ~ normal(X @ beta, sigma)   # posterior predictive, drawn once per draw
}
"""


def expr(text: str) -> A.Expr:
    """Parse `z = TEXT` and return the expression."""
    (stmt,) = parse(f"z = {text}\n").body
    assert isinstance(stmt, A.Assign)
    return stmt.value


def N(x):
    return A.Name(None, x)


def I(v):
    return A.Num(None, v, True)


def test_eight_schools_parses():
    body = parse(EIGHT_SCHOOLS).body
    kinds = [type(s).__name__ for s in body]
    assert kinds == ["DataDecl"] * 3 + ["Sample", "Sample", "VarDecl", "Assign", "Sample"]
    j = body[0]
    assert j.name == "J" and j.type.base == "int" and j.type.bounds[0].name == "lower"
    sigma = body[2]
    assert sigma.type.base == "real" and sigma.type.dims == ((N("J"),),)
    theta_raw = body[5]
    assert theta_raw.name == "theta_raw" and theta_raw.dist.func == "normal"


def test_sv_parses_with_lags_and_loops():
    body = parse(SV).body
    loops = [s for s in body if isinstance(s, A.For)]
    assert [l.var for l in loops] == ["t", "t"]
    assert loops[0].lo == I(2) and loops[0].hi == N("T")
    inner = loops[0].body[0]
    assert inner.target.indices == (N("t"),)
    # x[t-1] inside the mean
    lag = inner.dist.args[0].right.right.left
    assert lag == A.Index(None, N("x"), (A.BinOp(None, "-", N("t"), I(1)),))


def test_regression_parses():
    body = parse(REGRESSION).body
    assert isinstance(body[4], A.ParamDecl) and body[4].name == "beta"
    target = body[6]
    assert isinstance(target, A.TargetIncrement)
    call = target.value
    assert call.func == "normal_lpdf" and call.given == N("y")
    assert call.args == (A.BinOp(None, "@", N("X"), N("beta")), N("sigma"))
    gen = body[7]
    assert isinstance(gen, A.Generated) and gen.body[0].target.name == "y_rep"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.ppl")), ids=lambda p: p.name)
def test_examples_parse(path):
    prog = parse(path.read_text(), str(path))
    assert prog.body


def test_unary_minus_binds_looser_than_power():
    assert expr("-x^2") == A.UnOp(None, "-", A.BinOp(None, "^", N("x"), I(2)))


def test_power_is_right_associative():
    assert expr("a^b^c") == A.BinOp(None, "^", N("a"), A.BinOp(None, "^", N("b"), N("c")))


def test_product_binds_tighter_than_sum():
    assert expr("a + b * c") == A.BinOp(None, "+", N("a"), A.BinOp(None, "*", N("b"), N("c")))
    assert expr("a * b + c") == A.BinOp(None, "+", A.BinOp(None, "*", N("a"), N("b")), N("c"))


def test_subtraction_is_left_associative():
    assert expr("a - b - c") == A.BinOp(None, "-", A.BinOp(None, "-", N("a"), N("b")), N("c"))


def test_comparison_and_logic():
    e = expr("x > 0 && y <= 1")
    assert e.op == "&&" and e.left.op == ">" and e.right.op == "<="
    assert expr("(y > 1)") == A.BinOp(None, ">", N("y"), I(1))


def test_index_with_lag():
    assert expr("x[t-1]") == A.Index(None, N("x"), (A.BinOp(None, "-", N("t"), I(1)),))


def test_slices():
    assert expr("x[2:N]") == A.Index(None, N("x"), (A.Slice(None, I(2), N("N")),))
    assert expr("X[:, j]") == A.Index(None, N("X"), (A.Slice(None, None, None), N("j")))
    assert expr("X[i, j]") == A.Index(None, N("X"), (N("i"), N("j")))


def test_density_call_with_bar():
    e = expr("normal_lpdf(y | mu, s)")
    assert e == A.Call(None, "normal_lpdf", (N("mu"), N("s")), N("y"))


def test_newlines_inside_parentheses_continue_the_expression():
    (s,) = parse("z = f(a,\n      b +\n      c)\n").body
    assert s.value == A.Call(None, "f", (N("a"), A.BinOp(None, "+", N("b"), N("c"))))
    (s,) = parse("z = (a\n  + b)\n").body
    assert s.value == A.BinOp(None, "+", N("a"), N("b"))
    (s,) = parse("z = [1,\n 2]\n").body
    assert s.value == A.ArrayLit(None, (I(1), I(2)))


def test_comments_and_blank_lines():
    prog = parse("# header\n\nmu ~ normal(0, 1)  # prior\n\n# trailing\n")
    assert len(prog.body) == 1


def test_no_trailing_newline():
    assert len(parse("mu ~ normal(0, 1)").body) == 1


def test_numbers():
    assert expr("2.5") == A.Num(None, 2.5, False)
    assert expr("1e-3") == A.Num(None, 1e-3, False)
    assert expr("3") == I(3)


def test_if_else_and_functions():
    prog = parse("def f(x: real) -> real {\n  return 2 * x\n}\n"
                 "if a > 0 {\n  z = 1\n} else if a < 0 {\n  z = 2\n} else {\n  z = 3\n}\n")
    f, i = prog.body
    assert isinstance(f, A.FunDef) and f.name == "f" and f.params[0].name == "x"
    assert isinstance(i, A.If) and isinstance(i.orelse[0], A.If)


def test_spans_point_at_source():
    prog = parse("data y: real\nmu ~ normal(0, 1)\n")
    s = prog.body[1]
    assert (s.span.line, s.span.col) == (2, 1)
    assert (s.dist.func_span.line, s.dist.func_span.col, s.dist.func_span.end_col) == (2, 6, 12)


@pytest.mark.parametrize("src, line, col, words", [
    ("mu ~ normal(0, 1\nnu ~ normal(0, 1)\n", 1, 12, '"(" is not closed'),
    ("for i in 1:3 {\n  z = 1\n", 1, 14, '"{" is not closed'),
    ("mu ~ normal(0, 1))\n", 1, 18, 'unmatched ")"'),
    ("mu ~ normal(0, 1);\n", 1, 18, 'unexpected ";"'),
    ("model {\n}\n", 1, 1, 'Stan-style "model" block'),
    ("x = 1.2.3\n", 1, 5, 'malformed number "1.2.3"'),
    ("x = a +\n", 1, 8, "not finished"),
])
def test_syntax_errors_are_framed(src, line, col, words):
    with pytest.raises(PPLSyntaxError) as info:
        parse(src, "m.ppl")
    e = info.value
    assert words in e.message
    assert (e.span.line, e.span.col) == (line, col)
    text = e.format()
    assert text.startswith(f"m.ppl:{line}:{col}: error: syntax error:")
    assert "\nhint: " in text


def test_describe_expected_in_words():
    assert _describe_expected({"RBRACE", "_NL"}) == 'expected "}" or end of line'
    words = _describe_expected({"NAME", "INT", "FLOAT", "LPAR", "LSQB", "ADDOP", "NOTOP"})
    assert words == "expected an expression"
    assert _describe_expected({"RPAR", "COMMA"}) == 'expected ")" or ","'
