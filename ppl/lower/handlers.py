"""Effect handlers: what happens at the random sites of a program, composed instead of modes.

The interpreter (ppl/lower/interpreter.py) runs the IR and, at every site — a variable coming
into being, a `~` statement, a `target +=`, a loop, the generated block — builds a `Site`
message and passes it through the stack of handlers, innermost first (NumPyro's `Messenger`
design): a handler may supply a value, a random key, a mask, or stop a site from counting.
Whatever no handler supplies, the interpreter does by default (draw with the key, score with
the distribution, plan the loop).

    log density at u        Fix(fixed) · Unconstrain(layout, u)
    prior draws             Fix(fixed) · Seed(key)
    posterior predictive    Fix(fixed) · Substitute(values) · Seed(key) · Generate()
    log prior / likelihood  … · Block(observed sites) / Block(everything else)
    pointwise likelihood    Fix(fixed) · Unconstrain(layout, u) · Pointwise()
    numpyro's reference     … · Unroll() · NumpyroSites()
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions.transforms import biject_to


@dataclass
class Site:
    """One effect. `kind`: "value" (a latent or param gets its value: a declaration, or a `~`
    on the whole variable), "draw" (a `~` on data, a param's prior, an element of a latent or a
    generated quantity), "factor" (`target +=`), "loop" (choose how to run a loop) or
    "generated" (whether to run the generated block)."""
    kind: str
    name: Optional[str] = None
    stmt: Any = None  # the IR statement
    role: str = ""  # latent | param | observed | prior | generated
    indices: Tuple[Any, ...] = ()  # values of the enclosing loop variables
    dist: Any = None  # numpyro distribution (None: a declaration without one)
    value: Any = None
    shape: Tuple[int, ...] = ()
    constraint: Any = None  # support of a value site
    discrete: bool = False
    given: bool = False  # a handler supplied the value
    score: bool = True  # whether the log density counts
    mask: Any = None  # boolean multiplying the log density
    log_jacobian: Any = 0.0
    # log P(lower ≤ X ≤ upper): a discrete latent truncated by its declared bounds, subtracted
    # from its log density where it is scored
    log_normalizer: Any = 0.0
    key: Any = None
    strategy: Optional[str] = None  # loop: vectorize | scan | unroll
    run: bool = False  # generated block
    records: Dict[Any, Any] = field(default_factory=dict)  # checks a handler wants kept
    pointwise: bool = False  # report the elementwise log density (observed `~` sites)
    stop: bool = False


class Handler:
    """Base handler: leaves every site alone."""

    def process(self, site: Site) -> None:
        pass

    def postprocess(self, site: Site) -> None:
        pass


def apply(handlers, site: Site, default: Optional[Callable[[Site], None]] = None) -> Site:
    """Run `site` through `handlers` (outermost first in the sequence): `process` innermost
    first, stopping at a handler that sets `stop`; then the interpreter's `default` (e.g. draw
    the value with the key a handler gave); then `postprocess` in the same order."""
    done = []
    for h in reversed(handlers):
        h.process(site)
        done.append(h)
        if site.stop:
            break
    if default is not None:
        default(site)
    for h in done:
        h.postprocess(site)
    return site


# ------------------------------------------------------------------------ values
class Substitute(Handler):
    """Values of latents given by name (constrained), e.g. posterior draws."""

    def __init__(self, values: Dict[str, Any]):
        self.values = values

    def process(self, site):
        if site.kind == "value" and site.name in self.values and not site.given:
            site.value = jnp.asarray(self.values[site.name])
            site.given = True


class Replay(Substitute):
    """Values recorded by a `Trace` of another run."""

    def __init__(self, trace: "Trace"):
        super().__init__(trace.values)


class Fix(Handler):
    """Random variables held at values given with the data: their value is given and their
    statements do not count in the density (the model is conditioned on them)."""

    def __init__(self, values: Dict[str, Any]):
        self.values = values

    def process(self, site):
        if site.name in self.values and site.kind in ("value", "draw"):
            if site.kind == "value":
                site.value = jnp.asarray(self.values[site.name])
                site.given = True
            site.score = False


class Unconstrain(Handler):
    """Continuous latents from one flat unconstrained vector `u` laid out by `layout`; each
    transform's log-Jacobian joins the density."""

    def __init__(self, layout, u, jacobian: bool = True):
        self.layout, self.u, self.jacobian = layout, u, jacobian

    def process(self, site):
        if site.kind != "value" or site.given or not self.layout.has(site.name):
            return
        x, log_j = self.layout.constrain(site.name, self.u, site.constraint,
                                         None if site.mask is None or not jnp.ndim(site.mask) else site.mask)
        site.value = x
        site.given = True
        if self.jacobian:
            site.log_jacobian = log_j


class Discover(Handler):
    """Records every continuous latent's shape and support (the layout), giving the value at
    u = 0 so the rest of the program traces."""

    def __init__(self):
        self.slots = []

    def process(self, site):
        if site.discrete and site.kind in ("value", "draw") and site.value is None:
            site.key = jax.random.PRNGKey(0)  # discrete values only shape the trace here
            return
        if site.kind != "value" or site.given:
            return
        t = biject_to(site.constraint)
        ushape = tuple(t.inverse_shape(tuple(site.shape)))
        padded = site.mask is not None and jnp.ndim(site.mask) > 0
        self.slots.append((site.name, tuple(site.shape), ushape, site.constraint, padded))
        u = jnp.zeros(ushape)
        site.value = t(u)
        site.log_jacobian = jnp.sum(t.log_abs_det_jacobian(u, site.value))
        site.given = True


class Seed(Handler):
    """A random key for every site that draws: from the base key, the statement and the loop
    indices around it, so a site's stream does not depend on anything else in the program."""

    def __init__(self, key):
        self.key = key

    def process(self, site):
        if site.kind in ("value", "draw") and site.key is None:
            k = jax.random.fold_in(self.key, site.stmt.sid if site.stmt is not None else 0)
            for i in site.indices:
                k = jax.random.fold_in(k, i)
            site.key = k


class Simulate(Handler):
    """Observed data are drawn from the model instead of read (prior predictive simulation)."""

    def __init__(self, names=None):
        self.names = names

    def process(self, site):
        if site.kind == "draw" and site.role == "observed" and \
                (self.names is None or site.name in self.names):
            site.value = None
            site.given = False


class Generate(Handler):
    """Run the generated block (posterior predictive quantities)."""

    def process(self, site):
        if site.kind == "generated":
            site.run = True


# ------------------------------------------------------------------------ densities
class Block(Handler):
    """Sites for which `hide(site)` holds do not count in the density (e.g. the likelihood, to
    get the prior; or the prior, to get the likelihood)."""

    def __init__(self, hide: Callable[[Site], bool]):
        self.hide = hide

    def process(self, site):
        if site.kind in ("value", "draw", "factor") and self.hide(site):
            site.score = False


class Pointwise(Handler):
    """Observed `~` sites report their log density element by element: the interpreter scatters
    each observation's terms into an array of the observed variable's shape (what
    `LoweredModel.log_likelihood_pointwise` returns, and ArviZ's `log_likelihood` group)."""

    def process(self, site):
        if site.kind == "draw" and site.role == "observed":
            site.pointwise = True


class Mask(Handler):
    """Multiply the log density of every site by a boolean (a branch not taken, an element
    beyond a random size)."""

    def __init__(self, mask):
        self.mask = mask

    def process(self, site):
        if site.kind in ("value", "draw", "factor"):
            site.mask = self.mask if site.mask is None else (site.mask & self.mask)


class Trace(Handler):
    """Records the value of every top-level value site (name → value)."""

    def __init__(self):
        self.values: Dict[str, Any] = {}

    def postprocess(self, site):
        if site.kind == "value" and not site.indices and site.value is not None:
            self.values[site.name] = site.value


# ------------------------------------------------------------------------ loops
class Unroll(Handler):
    """Every loop unrolled in Python (the independent reference evaluation)."""

    def process(self, site):
        if site.kind == "loop":
            site.strategy = "unroll"


class Sequential(Handler):
    """Every loop a `lax.scan`, one iteration after another, whatever its plan: a reference
    that does not depend on the loop planner and compiles for any size."""

    def process(self, site):
        if site.kind == "loop" and site.strategy != "unroll":
            site.strategy = "scan"


# ------------------------------------------------------------------------ numpyro bridge
class NumpyroSites(Handler):
    """Every scored site becomes a numpyro site (`numpyro.sample(..., obs=value)`, or
    `numpyro.factor`), so numpyro sums the density: the reference translation validation
    compares against. Run with `Unroll()` so every site has concrete loop indices."""

    def postprocess(self, site):
        if site.kind not in ("value", "draw", "factor"):
            return
        where = "" if site.stmt is None else f"{site.stmt.span.line}:{site.stmt.span.col}"
        suffix = ",".join(str(int(np.asarray(i))) for i in site.indices)
        name = f"{site.name or 'target'}@{where}:{suffix}"
        if site.kind in ("value", "draw") and not _zero(site.log_jacobian):
            numpyro.factor(f"jacobian:{name}", jnp.sum(site.log_jacobian))
            site.log_jacobian = 0.0
        if not site.score or (site.kind != "factor" and site.dist is None):
            return
        ctx = numpyro.handlers.mask(mask=site.mask) if site.mask is not None else _null()
        with ctx:
            if site.kind == "factor" or site.dist is None or getattr(site.dist, "user", False):
                numpyro.factor(name, jnp.sum(site.value if site.kind == "factor" else
                                             site.dist.log_prob(site.value)))
            else:
                d = site.dist
                shape = jnp.shape(site.value)
                full = tuple(d.batch_shape) + tuple(d.event_shape)
                if tuple(shape) != full:
                    d = d.expand(tuple(shape)[: len(shape) - len(d.event_shape)])
                numpyro.sample(name, d, obs=site.value)
            if not _zero(site.log_normalizer):
                numpyro.factor(f"normalizer:{name}", -jnp.sum(site.log_normalizer))
        site.score = False


def _zero(x) -> bool:
    return isinstance(x, (int, float)) and x == 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class CheckArgs(Handler):
    """Records, for every site, whether each argument of its distribution lies in the domain
    the distribution needs (numpyro's `arg_constraints`): what a NaN density is blamed on."""

    def postprocess(self, site):
        d = site.dist
        if d is None or site.kind not in ("value", "draw") or getattr(d, "user", False):
            return
        base = getattr(d, "base", d)  # one-based wrappers
        for arg, c in getattr(base, "arg_constraints", {}).items():
            v = getattr(base, arg, None)
            if v is None:
                continue
            try:
                ok = jnp.all(c(v))
            except Exception:  # noqa: BLE001 - a constraint that cannot be evaluated here
                continue
            site.records[("arg", site.stmt.sid, arg)] = ok
