"""Checker rules of user-written moves (ppl/check/moves.py): what a move may draw and assign,
its options, the use of a module's move; each error located at the offending text."""
import pytest

from ppl.check.checker import check
from ppl.syntax import ast as A
from ppl.syntax.errors import PPLCheckError
from ppl.syntax.parser import parse

MODEL = """\
data N: int
data y: real[N]
data k_max: int
k: int<lower=1, upper=k_max> ~ categorical(rep(1.0 / k_max, k_max))
mu: real[k] ~ normal(0, 1)
m = 2 * mu[1]
sigma ~ gamma(2, 2)
for n in 1:N {
  y[n] ~ normal(mu[1], sigma)
}
"""


def checked(src):
    return check(parse(src, "m.ppl"))


def error(src):
    with pytest.raises(PPLCheckError) as e:
        checked(src)
    err = e.value
    line = src.splitlines()[err.span.line - 1]
    return err, line[err.span.col - 1:err.span.end_col - 1]


def test_parse_a_move():
    src = MODEL + "move shift(weight = 0.5) {\n  propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    sigma = sigma * exp(u)\n    u = -u\n  }\n}\n"
    prog = parse(src, "m.ppl")
    (m,) = [s for s in prog.body if isinstance(s, A.MoveDef)]
    assert m.name == "shift" and m.has_body and m.named[0].name == "weight"
    assert isinstance(m.propose[0], A.Sample) and len(m.involution) == 2
    c = checked(src)
    (cm,) = c.moves
    assert cm.weight == 0.5 and cm.aux == {"u": False} and cm.writes == ("sigma",)


def test_module_move_is_used_with_the_models_names():
    src = ("import mixtures\ndata N: int\ndata y: real[N]\ndata k_max: int\n"
           "k: int<lower=1, upper=k_max> ~ categorical(rep(1.0 / k_max, k_max))\n"
           "w: simplex[k] ~ dirichlet(rep(1.0, k))\nm: ordered[k] ~ normal(0, 10)\n"
           "t: real<lower=0>[k] ~ gamma(2, 1)\n"
           "for n in 1:N {\n  y[n] ~ normal_mixture_precision(w, m, t)\n}\n"
           "move split_merge_precision(k, w, m, t, k_max, weight = 0.25)\n")
    (cm,) = checked(src).moves
    assert cm.name == "split_merge_precision" and cm.weight == 0.25
    assert set(cm.writes) == {"k", "w", "m", "t"} and cm.module.endswith("mixtures.ppl")
    assert cm.aux == {"split": True, "j": True, "u1": False, "u2": False, "u3": False}


@pytest.mark.parametrize("body, message, at", [
    ("propose {\n    mu ~ normal(0, 1)\n  }\n  involution {\n    sigma = 1\n  }",
     'the proposal cannot draw "mu"', "mu"),
    ("propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    y = y + u\n  }",
     'a move cannot change "y": it is data', "y"),
    ("propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    m = u\n  }",
     'a move cannot change "m": it is deterministic', "m"),
    ("propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    v ~ normal(0, 1)\n    sigma = u\n  }",
     "the involution is deterministic", "v ~ normal(0, 1)"),
    ("propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    u = -u\n  }",
     'changes no variable of the model', "bad"),
    ("propose {\n    u ~ normal(0, 1)\n  }\n  involution {\n    mu = 1 + insert(mu, 1, u)\n  }",
     "insert(…) is the whole right-hand side", "insert(mu, 1, u)"),
    ("propose {\n    u ~ nrmal(0, 1)\n  }\n  involution {\n    sigma = u\n  }",
     'unknown distribution "nrmal"', "nrmal"),
])
def test_move_errors_are_located(body, message, at):
    err, text = error(MODEL + "move bad() {\n  " + body + "\n}\n")
    assert message in err.message, err.message
    assert text == at
    assert err.hint or "unknown distribution" in err.message


def test_move_options_and_uses():
    err, text = error(MODEL + "move bad(weight = -1) {\n  propose {\n    u ~ normal(0, 1)\n  }\n"
                      "  involution {\n    sigma = u\n  }\n}\n")
    assert "positive number" in err.message and text == "-1"
    err, text = error(MODEL + "move bad(wieght = 1) {\n  propose {\n  }\n  involution {\n    sigma = 1\n  }\n}\n")
    assert 'unknown option "wieght"' in err.message and "weight" in err.hint
    err, text = error(MODEL + "move split_merge(k, mu)\n")
    assert 'unknown move "split_merge"' in err.message and text == "split_merge"
    err, text = error("import mixtures\n" + MODEL + "move split_merge_precision(k, mu)\n")
    assert "takes 5 names, but 2 were given" in err.message
    err, _ = error(MODEL + "move own(k) {\n  propose {\n  }\n  involution {\n    sigma = 1\n  }\n}\n")
    assert "takes no parameters" in err.message


def test_move_is_a_keyword():
    from ppl.syntax.errors import PPLSyntaxError
    with pytest.raises(PPLSyntaxError) as e:
        parse("move ~ normal(0, 1)\n", "m.ppl")
    assert "keyword" in e.value.message
