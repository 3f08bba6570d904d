"""A Pygments lexer for the language, for the REPL, docs and notebooks.

Registered as a Pygments entry point (pyproject.toml), so once ppl is installed

    pygmentize -l ppl examples/eight_schools.ppl

and Sphinx/MkDocs code blocks marked ``ppl`` are highlighted. Distribution and function names
come from the builtin tables, so the lexer knows exactly what the checker accepts.
"""
from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Name, Number, Operator, Punctuation, Text,
                            Whitespace)

from ..builtins.distributions import DENSITY_SUFFIXES, DISTRIBUTIONS
from ..builtins.functions import FUNCTIONS

KEYWORDS = ("data", "param", "target", "for", "in", "if", "else", "def", "return", "import",
            "generated")
CONSTANTS = ("true", "false")
TYPES = ("real", "int", "bool", "vector", "matrix", "simplex", "ordered", "positive_ordered",
         "unit_vector", "cov_matrix", "corr_matrix", "corr_cholesky", "cholesky_cov",
         "cholesky_factor_cov", "cholesky_factor_corr")
BOUNDS = ("lower", "upper")


def distribution_names():
    return sorted(DISTRIBUTIONS)


def function_names():
    """Math functions and the `NAME_lpdf` / `NAME_lpmf` densities."""
    densities = [d + s for d in DISTRIBUTIONS for s in DENSITY_SUFFIXES
                 if s.endswith("pdf") != bool(getattr(DISTRIBUTIONS[d], "discrete", False))]
    return sorted(set(FUNCTIONS) | set(densities))


class PPLLexer(RegexLexer):
    """Lexer for ppl model files (`.ppl`)."""

    name = "ppl"
    aliases = ["ppl"]
    filenames = ["*.ppl"]
    mimetypes = ["text/x-ppl"]

    tokens = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\\?\r?\n", Whitespace),
            (r"#.*?$", Comment.Single),
            (r"(def)(\s+)([A-Za-z_]\w*)", bygroups(Keyword, Whitespace, Name.Function)),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(TYPES, suffix=r"\b"), Keyword.Type),
            (r"(lower|upper)(\s*)(=)(?!=)", bygroups(Name.Attribute, Whitespace, Operator)),
            (words(tuple(distribution_names()), suffix=r"\b(?=\s*\()"), Name.Builtin),
            (words(tuple(function_names()), suffix=r"\b(?=\s*\()"), Name.Function.Magic),
            (r"([0-9]+\.[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+", Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"[A-Za-z_]\w*", Name),
            (r"\+=|==|!=|<=|>=|&&|\|\||\.\*|\./|[~=<>+\-*/%@^!'|]", Operator),
            (r"[{}()\[\],:]", Punctuation),
            (r".", Text),
        ],
    }
