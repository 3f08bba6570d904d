"""The Pygments lexer (ppl/syntax/highlight.py)."""
from pathlib import Path

from pygments import highlight, lex
from pygments.formatters import HtmlFormatter
from pygments.token import Comment, Keyword, Name, Number, Operator, Text

from ppl.builtins.distributions import DISTRIBUTIONS
from ppl.syntax.highlight import PPLLexer, function_names

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tokens(text):
    return [(t, v) for t, v in lex(text, PPLLexer()) if v.strip()]


def test_statements_are_split_into_the_right_kinds():
    toks = tokens("data J: int<lower=1>\ntheta: real[J] ~ normal(mu, tau)  # iid\n"
                  "target += normal_lpdf(y | theta, 1.5e-2)\n")
    assert (Keyword, "data") in toks and (Keyword.Type, "int") in toks
    assert (Name.Attribute, "lower") in toks
    assert (Name.Builtin, "normal") in toks
    assert (Name.Function.Magic, "normal_lpdf") in toks
    assert (Keyword, "target") in toks and (Operator, "+=") in toks
    assert (Number.Float, "1.5e-2") in toks and (Comment.Single, "# iid") in toks
    assert (Name, "theta") in toks  # a variable, not a keyword


def test_a_distribution_name_used_as_a_variable_is_a_name():
    assert (Name, "normal") in tokens("normal = 3\n")


def test_every_example_lexes_without_error_tokens():
    from pygments.token import Error
    for path in EXAMPLES.glob("*.ppl"):
        bad = [v for t, v in lex(path.read_text(), PPLLexer()) if t in Error]
        assert not bad, (path.name, bad)
        assert "<span" in highlight(path.read_text(), PPLLexer(), HtmlFormatter())


def test_names_come_from_the_builtin_tables():
    names = function_names()
    assert "log_sum_exp" in names and "poisson_lpmf" in names and "normal_lpdf" in names
    assert "poisson_lpdf" not in names  # a discrete distribution has a mass function
    assert all((Name.Builtin, d) in tokens(f"x ~ {d}(1)\n") for d in DISTRIBUTIONS)
    assert Text not in {t for t, _ in tokens("x ~ normal(0, 1)\n")}
