"""Stan-style layout (issue 11): a statement continues after a trailing operator; compound
assignment; typed locals in loops reach the checker as declarations."""
import pytest

from ppl.syntax import ast as A
from ppl.syntax.errors import PPLSyntaxError
from ppl.syntax.parser import parse


def body(src):
    return parse(src, "t.ppl").body


@pytest.mark.parametrize("op", ["+", "-", "*", "/", ".*", "./", "^", "&&", "||", "==", "<=", "<"])
def test_a_trailing_binary_operator_continues_the_statement(op):
    (s,) = body(f"x = a {op}\n\n  # a comment between\n  b\n")
    assert isinstance(s, A.Assign) and isinstance(s.value, A.BinOp) and s.value.op == op.lstrip(".")


def test_continuation_after_assignment_tilde_and_target():
    s1, s2, s3 = body("x =\n  1\ny ~\n  normal(0, 1)\ntarget +=\n  2\n")
    assert isinstance(s1, A.Assign) and isinstance(s2, A.Sample) and isinstance(s3, A.TargetIncrement)


def test_the_closing_bound_does_not_continue():
    d1, d2 = body("data N: int<lower=0>\ndata y: real[N]\n")
    assert d1.name == "N" and d2.name == "y"


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_compound_assignment_is_an_assignment(op):
    (s,) = body(f"acc[i, 2] {op}= y[i]\n")
    assert isinstance(s, A.Assign) and s.target.name == "acc"
    assert isinstance(s.value, A.BinOp) and s.value.op == op
    assert isinstance(s.value.left, A.Index) and s.value.left.base.id == "acc"
    assert len(s.value.left.indices) == 2


def test_unfinished_line_is_located_at_its_operator():
    with pytest.raises(PPLSyntaxError) as info:
        parse("mu ~ normal(0, 1)\nnu = mu +\ny ~ normal(nu, 1)\n", "t.ppl")
    assert (info.value.span.line, info.value.span.col) == (2, 10)
    assert "not finished" in info.value.message and "line 3" in info.value.hint


def test_leading_operator_says_where_the_operator_goes():
    with pytest.raises(PPLSyntaxError) as info:
        parse("x = a\n  + b\n", "t.ppl")
    assert info.value.span.line == 2 and "move the" in info.value.hint


def test_typed_local_in_loop_parses_as_declaration():
    (loop,) = body("for t in 1:T {\n  acc: real[K]\n  acc[1] = 0\n}\n")
    assert isinstance(loop.body[0], A.VarDecl) and loop.body[0].value is None
