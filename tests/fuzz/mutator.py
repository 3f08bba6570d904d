"""A seeded, grammar-aware mutator of ppl programs and their data (issue 13: keep it that way).

Programs are cut into the grammar's tokens (names, numbers, operators, brackets, newlines,
comments) and mutated a few tokens or lines at a time: tokens deleted, doubled, swapped or
replaced by other terminals of the grammar (keywords, operators, distribution, function and
type names), names swapped for others of the same program, numbers for edge values,
statements spliced in from other programs, expressions nested deeply, characters the lexer
and the line counter may disagree about inserted, types and bounds changed. Data files are
mutated as JSON values (sizes, wrong types, wrong shapes, huge and non-finite numbers, index
arrays pushed out of range, keys dropped, added and repeated) and as text (truncated, deeply
nested, not UTF-8).

Everything is a function of the seed: `Mutator(seed).program(k)` is the k-th program.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]

TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<nl>\r?\n)
  | (?P<ws>[ \t\f]+)
  | (?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>\d+)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\|\||&&|==|!=|<=|>=|\+=|->|\.\*|\./|[-+*/%@^<>!~=,:|'])
  | (?P<bracket>[()\[\]{}])
  | (?P<other>.)
""", re.X | re.S)

KEYWORDS = ["data", "param", "for", "in", "if", "else", "def", "return", "import", "generated",
            "target", "true", "false"]
TYPES = ["real", "int", "bool", "vector", "matrix", "simplex", "ordered", "positive_ordered",
         "unit_vector", "cov_matrix", "corr_matrix", "corr_cholesky", "cholesky_cov"]
DISTS = ["normal", "half_normal", "cauchy", "half_cauchy", "student_t", "exponential", "gamma",
         "inv_gamma", "beta", "uniform", "bernoulli", "bernoulli_logit", "binomial", "poisson",
         "poisson_log", "neg_binomial_2", "categorical", "dirichlet", "lognormal", "normall",
         "multi_normal", "lkj_corr_cholesky", "normal_lpdf", "poisson_lpmf", "normal_rng"]
FUNCS = ["exp", "log", "sqrt", "sum", "mean", "size", "rep", "zeros", "inv_logit", "softmax",
         "log_sum_exp", "min", "max", "abs", "cumsum", "to_vector", "dot", "if_else", "pow",
         "num_elements", "cholesky", "diag_matrix", "nonsense_fn"]
OPS = ["+", "-", "*", "/", "^", "%", "@", ".*", "./", "<", ">", "<=", ">=", "==", "!=", "&&", "||",
       "!", "~", "=", "+=", ",", ":", "|", "'", "->", "(", ")", "[", "]", "{", "}", ";", '"']
EDGE_NUMBERS = ["0", "1", "-1", "0.0", "1e308", "1e400", "1e-320", "9223372036854775807",
                "9223372036854775808", "123456789012345678901234567890", "7" * 4400, ".5", "1.",
                "1e", "2.5.3", "0x10", "1_000"]
ODD_CHARS = ["\v", "\f", "\u2028", "\u2029", "\x85", "\ufeff", "\t", "\r", "é", "λ", "🙂", "\x00",
             "\\", "$", "`", "\u00a0"]
SIZES = [0, 1, 2, -1, 10**6, 10**9, 2**63, 1.5, True, "3", None]


def tokens(source: str) -> List[Tuple[str, str]]:
    return [(m.lastgroup, m.group()) for m in TOKEN.finditer(source)]


def join(toks) -> str:
    return "".join(t for _, t in toks)


def corpus_programs() -> List[Tuple[str, str, Optional[Path]]]:
    """(name, source, data file or None): the examples, the docs' snippets, the golden cases."""
    out = []
    for p in sorted((ROOT / "examples").glob("*.ppl")):
        data = p.with_suffix(".json")
        out.append((p.name, p.read_text(), data if data.exists() else None))
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for i, m in enumerate(re.finditer(r"```ppl\n(.*?)```", doc.read_text(), re.S)):
            out.append((f"{doc.name}#{i}", m.group(1), None))
    for p in sorted((ROOT / "tests" / "errors" / "cases").glob("*.ppl")):
        text = p.read_bytes().decode("utf-8", errors="replace")
        data = p.with_suffix(".json")
        out.append((p.name, text, data if data.exists() else None))
    return out


@dataclass
class Program:
    index: int
    origin: str
    source: str
    data: Optional[Path]  # the data file of the program it came from
    mutations: List[str]


class Mutator:
    def __init__(self, seed: int):
        self.seed = seed
        self.corpus = corpus_programs()
        self.valid = [c for c in self.corpus if not c[0].endswith(".ppl") or
                      not (ROOT / "tests" / "errors" / "cases" / c[0]).exists()]
        self.lines = [ln for _, src, _ in self.corpus for ln in src.split("\n") if ln.strip()]

    # ------------------------------------------------------------ programs
    def program(self, k: int) -> Program:
        rng = random.Random(f"{self.seed}:program:{k}")
        # mostly the valid programs (examples, docs), whose mutants reach past the parser
        pool = self.valid if rng.random() < 0.8 else self.corpus
        origin, source, data = rng.choice(pool)
        done = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            # half the time a mutation that keeps the program parseable more often than not
            kinds = self.SEMANTIC if rng.random() < 0.5 else self.MUTATIONS
            name = rng.choice(kinds)
            source = getattr(self, name)(rng, source)
            done.append(name)
        return Program(k, origin, source, data, done)

    MUTATIONS = ["delete_token", "double_token", "swap_tokens", "replace_token", "rename",
                 "edge_number", "splice_line", "nest", "odd_char", "delete_line", "double_line",
                 "swap_lines", "unbalance", "retype", "rebound"]
    SEMANTIC = ["rename", "edge_number", "splice_line", "nest", "delete_line", "double_line",
                "retype", "rebound", "swap_lines"]

    @staticmethod
    def _pick(rng, toks, kinds=None):
        idx = [i for i, (k, _) in enumerate(toks) if (kinds is None or k in kinds) and k != "ws"]
        return rng.choice(idx) if idx else None

    def delete_token(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t)
        return src if i is None else join(t[:i] + t[i + 1:])

    def double_token(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t)
        return src if i is None else join(t[:i + 1] + [t[i]] + t[i + 1:])

    def swap_tokens(self, rng, src):
        t = [x for x in tokens(src)]
        idx = [i for i, (k, _) in enumerate(t) if k not in ("ws", "nl")]
        if len(idx) < 2:
            return src
        j = rng.randrange(len(idx) - 1)
        a, b = idx[j], idx[j + 1]
        t[a], t[b] = t[b], t[a]
        return join(t)

    def replace_token(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t)
        if i is None:
            return src
        pool = rng.choice([KEYWORDS, TYPES, DISTS, FUNCS, OPS, EDGE_NUMBERS])
        t[i] = ("x", rng.choice(pool))
        return join(t)

    def rename(self, rng, src):
        t = tokens(src)
        names = sorted({v for k, v in t if k == "name"})
        i = self._pick(rng, t, {"name"})
        if i is None or not names:
            return src
        t[i] = ("name", rng.choice(names + ["_", "x__", "N", "y", "mu"]))
        return join(t)

    def edge_number(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t, {"int", "float"})
        if i is None:
            return src
        t[i] = ("x", rng.choice(EDGE_NUMBERS))
        return join(t)

    def splice_line(self, rng, src):
        lines = src.split("\n")
        at = rng.randrange(len(lines) + 1)
        return "\n".join(lines[:at] + [rng.choice(self.lines)] + lines[at:])

    def nest(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t, {"name", "int", "float"})
        if i is None:
            return src
        depth = rng.choice((5, 50, 400, 1200))
        wrap = rng.choice(("exp(", "-", "(", "["))
        close = {"exp(": ")", "(": ")", "[": "]", "-": ""}[wrap]
        t[i] = ("x", wrap * depth + t[i][1] + close * depth)
        return join(t)

    def odd_char(self, rng, src):
        at = rng.randrange(len(src) + 1)
        return src[:at] + rng.choice(ODD_CHARS) + src[at:]

    def delete_line(self, rng, src):
        lines = src.split("\n")
        if len(lines) < 2:
            return src
        del lines[rng.randrange(len(lines))]
        return "\n".join(lines)

    def double_line(self, rng, src):
        lines = src.split("\n")
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])

    def swap_lines(self, rng, src):
        lines = src.split("\n")
        if len(lines) < 2:
            return src
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)

    def unbalance(self, rng, src):
        t = tokens(src)
        i = self._pick(rng, t, {"bracket"})
        if i is None:
            return src
        t[i] = ("bracket", rng.choice("()[]{}"))
        return join(t)

    def retype(self, rng, src):
        t = tokens(src)
        idx = [i for i, (k, v) in enumerate(t) if k == "name" and v in TYPES]
        if not idx:
            return src
        t[rng.choice(idx)] = ("name", rng.choice(TYPES))
        return join(t)

    def rebound(self, rng, src):
        m = list(re.finditer(r"\b(real|int|vector)\b(<[^>\n]*>)?", src))
        if not m:
            return src
        x = rng.choice(m)
        bound = rng.choice(["<lower=0>", "<upper=0>", "<lower=1, upper=0>", "<lower=N>",
                            "<lower=0, lower=1>", "<lower=mu>", "<lower=y[1]>", "<upper=-1e400>",
                            "<lower=", ""])
        return src[:x.start()] + x.group(1) + bound + src[x.end():]

    # ------------------------------------------------------------ data
    def data(self, k: int, base: Dict[str, Any]) -> Tuple[str, List[str]]:
        """The k-th mutation of a data dict, as JSON text, and what was done."""
        rng = random.Random(f"{self.seed}:data:{k}")
        data = json.loads(json.dumps(base))
        done = []
        for _ in range(rng.choice((1, 1, 2))):
            name = rng.choice(self.DATA_MUTATIONS)
            data = getattr(self, name)(rng, data)
            done.append(name)
        text = json.dumps(data)
        if rng.random() < 0.25:
            name = rng.choice(self.TEXT_MUTATIONS)
            text = getattr(self, name)(rng, text)
            done.append(name)
        return text, done

    DATA_MUTATIONS = ["drop_key", "add_key", "bad_size", "bad_value", "bad_shape", "shift_index",
                      "nonfinite", "wrong_type"]
    TEXT_MUTATIONS = ["repeat_key", "truncate", "deep_json", "not_utf8", "empty", "bom"]

    @staticmethod
    def _key(rng, data):
        return rng.choice(sorted(data)) if data else None

    def drop_key(self, rng, data):
        k = self._key(rng, data)
        if k is not None:
            del data[k]
        return data

    def add_key(self, rng, data):
        data[rng.choice(["extra", "mu", "sigma", "theta", "tau", "y_rep", "x", "N2"])] = \
            rng.choice([1, -1.5, [1, 2, 3], "a", True, None, {"a": 1}])
        return data

    def bad_size(self, rng, data):
        ints = [k for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)]
        if ints:
            data[rng.choice(ints)] = rng.choice(SIZES)
        return data

    def bad_value(self, rng, data):
        k = self._key(rng, data)
        if k is None:
            return data
        v = data[k]
        edge = rng.choice([True, False, None, "1", "", 2**63, 10**400, 1e30, -0.0, 1e-320,
                           [], [[]], {"x": 1}, [1, [2]]])
        if isinstance(v, list) and v:
            v[rng.randrange(len(v))] = edge
        else:
            data[k] = edge
        return data

    def bad_shape(self, rng, data):
        arrays = [k for k, v in data.items() if isinstance(v, list)]
        if not arrays:
            return data
        k = rng.choice(arrays)
        v = data[k]
        op = rng.randrange(4)
        if op == 0 and v:
            v.pop()
        elif op == 1:
            v.append(v[-1] if v else 0)
        elif op == 2:
            data[k] = [v, v]
        else:
            data[k] = v[0] if v else 0
        return data

    def shift_index(self, rng, data):
        ints = [k for k, v in data.items() if isinstance(v, list) and v
                and all(isinstance(x, int) and not isinstance(x, bool) for x in v)]
        if ints:
            k = rng.choice(ints)
            shift = rng.choice((-1, 1, 100, -100))
            i = rng.randrange(len(data[k]))
            data[k][i] += shift
        return data

    def nonfinite(self, rng, data):
        k = self._key(rng, data)
        if k is not None:
            v = data[k]
            bad = rng.choice([float("nan"), float("inf"), float("-inf")])
            if isinstance(v, list) and v:
                v[rng.randrange(len(v))] = bad
            else:
                data[k] = bad
        return data

    def wrong_type(self, rng, data):
        k = self._key(rng, data)
        if k is not None:
            data[k] = rng.choice(["text", True, None, {"nested": [1]}, [[1, 2], [3]], [True, False]])
        return data

    def repeat_key(self, rng, text):
        m = re.search(r'"(\w+)":\s*([^,}]+)', text)
        if not m or not text.rstrip().endswith("}"):
            return text
        return text.rstrip()[:-1] + f', "{m.group(1)}": {m.group(2)}}}'

    def truncate(self, rng, text):
        return text[:rng.randrange(len(text) + 1)]

    def deep_json(self, rng, text):
        depth = rng.choice((70, 1000, 100_000))
        return '{"deep": ' + "[" * depth + "]" * depth + "}"

    def not_utf8(self, rng, text):
        at = rng.randrange(len(text) + 1)
        return text[:at] + "\udcff" + text[at:]  # written with surrogateescape: byte 0xff

    def empty(self, rng, text):
        return ""

    def bom(self, rng, text):
        return "\ufeff" + text
