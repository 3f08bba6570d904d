"""Why a log density is not finite at a point, said in the model's terms.

Run-time checks (indices out of range) and the domains of distribution arguments
(numpyro's `arg_constraints`: a scale must be positive, a probability within [0, 1] …) are
evaluated at the point; each that fails becomes a `Problem` naming the statement's line, the
distribution and the argument. Used when inference cannot start or goes numerically wrong,
and by translation validation to tell the model's problems from ppl's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import jax
import numpy as np

from ..builtins.distributions import DISTRIBUTIONS
from ..syntax.span import Span
from .handlers import CheckArgs, Unconstrain

# numpyro's argument names → the language's (Stan's) parameter names, per position
_WORDS = {
    "positive": "positive", "nonnegative": "non-negative", "unit_interval": "between 0 and 1",
    "simplex": "a simplex (non-negative, summing to 1)", "positive_definite": "positive definite",
    "lower_cholesky": "a lower-triangular Cholesky factor", "real": "finite",
    "corr_cholesky": "a correlation Cholesky factor", "nonnegative_integer": "a non-negative integer",
    "ordered_vector": "ordered", "positive_integer": "a positive integer",
}


@dataclass(frozen=True)
class Problem:
    message: str
    span: Optional[Span]


def _constraint_words(c) -> str:
    name = type(c).__name__.lstrip("_").replace("Constraint", "")
    snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")
    return _WORDS.get(snake, snake.replace("_", " "))


def explain(lowered, u, data_arrays) -> List[Problem]:
    # compiled, as inference runs it: built eagerly, numpyro itself would refuse the arguments
    records = jax.jit(lambda u, d: lowered.run([Unconstrain(lowered.layout, u), CheckArgs()],
                                               d).records)(u, data_arrays)
    problems = []
    stmts = {s.sid: s for s in lowered.graph.statements()}
    for key, ok in records.items():
        if bool(np.all(np.asarray(ok))):
            continue
        if key[0] == "index":
            problems.append(Problem("an index is out of range here", Span(*key[1:])))
        elif key[0] == "ode":
            problems.append(Problem("the ODE solve fails here: more steps than max_num_steps, "
                                    "a non-finite derivative, or times not increasing from t0",
                                    Span(*key[1:])))
        elif key[0] == "arg":
            _, sid, arg = key
            node = stmts.get(sid)
            if node is None or node.dist is None:
                continue
            spec = DISTRIBUTIONS.get(node.dist)
            d = spec.build(*([1.0] * len(spec.params))) if spec is not None else None
            c = getattr(getattr(d, "base", d), "arg_constraints", {}).get(arg) if d is not None else None
            words = _constraint_words(c) if c is not None else "in its domain"
            problems.append(Problem(f"the {arg} of {node.dist} must be {words}, but is not at this "
                                    "point", node.stmt.dist.span))
    return problems
