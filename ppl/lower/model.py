"""A model IR with its data, lowered to pure JAX functions.

`LoweredModel` is built once per (IR, data shapes). Every function runs the one interpreter
over the IR under a different stack of handlers (ppl/lower/handlers.py); they take the data
arrays as an argument (not baked-in constants), so compiled code is reused across data values
and the persistent compilation cache hits on a second run.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import log_density as numpyro_log_density

from ..check.data import BoundData
from ..ir import nodes as N
from ..ir.graph import ModelGraph
from ..syntax.errors import PPLDataError
from .handlers import (Block, Discover, Fix, Generate, Handler, NumpyroSites, Pointwise, Seed,
                       Simulate, Substitute, Unconstrain, Unroll)
from .diagnose import Problem, explain
from .interpreter import Interpreter, pointwise_terms
from .layout import FlatLayout
from .marginal import DrawMarginal, prob_name
from .padded import Padded


class _Constraints(Handler):
    """Records the support of every value site (bounds may depend on other variables)."""

    def __init__(self):
        self.found: Dict[str, Any] = {}

    def postprocess(self, site):
        if site.kind == "value" and site.constraint is not None:
            self.found[site.name] = site.constraint


class LoweredModel:
    def __init__(self, ir: N.ModelIR, data: BoundData, defer_checks: bool = False,
                 source_ir: Optional[N.ModelIR] = None):
        """`ir`: the program whose density the passes use (possibly rewritten: discrete latents
        summed out …); `source_ir`: the program as written (default `ir`), which draws from the
        prior, simulates data, generates quantities and is the reference for validation.
        `defer_checks`: the caller runs `check_data()` itself, later (so compiling the checks
        can overlap with compiling the sampler)."""
        self.ir = ir
        self.source_ir = ir if source_ir is None else source_ir
        self.graph = ModelGraph(self.source_ir)  # the model as written: what messages refer to
        self.data = data
        self.static = dict(data.static)
        self.data_arrays = {k: jnp.asarray(v) for k, v in data.arrays.items()}
        self.fixed = {k: jnp.asarray(v) for k, v in data.fixed.items()}
        self.fixed_names = frozenset(self.fixed)
        self._shared: Dict[str, Any] = {}  # compiled helpers, shared by with_data copies
        self._discover()
        if not defer_checks:
            self.check_data()

    # ------------------------------------------------------------ running the program
    def base_env(self, data_arrays) -> Dict[str, Any]:
        env: Dict[str, Any] = dict(self.static)
        env.update(data_arrays)
        env.update(self.fixed)
        return env

    def run(self, handlers, data_arrays, body=None, env=None, source=False) -> Interpreter:
        """The interpreter after running `body` (by default the whole program: the rewritten
        one, or with `source` the program as written) under the fixed values and `handlers`
        (outermost first)."""
        ir = self.source_ir if source else self.ir
        interp = Interpreter(ir, self.base_env(data_arrays) if env is None else env,
                             (Fix(self.fixed),) + tuple(handlers))
        interp.given |= set(self.fixed)
        return interp.run(ir.body if body is None else body)

    def _discover(self):
        # Traced, not run: the layout is recorded while tracing.
        found = Discover()
        jax.eval_shape(lambda d: self.run([found], d).lp, self.data_arrays)
        self.layout = FlatLayout.from_discovered(found.slots)
        self.slots = self.layout.slots
        self.slot_by_name = self.layout.by_name
        self.dim = self.layout.dim
        self.latent_names = list(self.layout.names)
        variables = self.ir.variables
        # transformed data (deterministic from data alone) are reported once, not per draw
        self.transformed_names = [n for n, v in variables.items()
                                  if v.kind == "deterministic" and v.data_only]
        self.deterministic_names = [n for n, v in variables.items()
                                    if v.kind == "deterministic" and not v.data_only]
        self.generated_names = [n for n, v in variables.items() if v.kind == "generated"]
        self.observed_names = [n for n, v in variables.items() if v.observed]

    def transformed_data(self, data_arrays=None) -> Dict[str, np.ndarray]:
        """The values computed from data alone (Stan's transformed data), once: they do not
        depend on the latents, so the program runs at any point (the origin) to give them."""
        if not self.transformed_names:
            return {}
        data_arrays = self.data_arrays if data_arrays is None else data_arrays
        # discrete latents (a random size before `powers = …`) need a value too: any will do
        it = self.run([Unconstrain(self.layout, jnp.zeros(self.dim), jacobian=False),
                       Seed(jax.random.PRNGKey(0))], data_arrays, source=True)
        return {n: np.asarray(v) for n, v in reported(
            {n: it.env[n] for n in self.transformed_names if n in it.env}).items()}

    # ------------------------------------------------------------ data checks
    def check_data(self):
        """Observed values must lie in the support of their distributions (a PPLDataError)."""
        if "checks" not in self._shared:
            def checks(data_arrays):
                # discrete latents (not summed out) take arbitrary values: the supports of the
                # observations must hold whatever they are
                it = self.run([Unconstrain(self.layout, jnp.zeros(self.dim)),
                               Seed(jax.random.PRNGKey(0))], data_arrays)
                return {k: v for k, v in it.records.items() if k[0] == "support"}
            self._shared["checks"] = jax.jit(checks)
        bad = [k[1] for k, ok in self._shared["checks"](self.data_arrays).items() if not bool(ok)]
        if not bad:
            return
        for s in self.graph.statements():
            if s.kind == "observe" and s.sid in bad:
                raise PPLDataError(
                    f'observed "{s.target}" has values outside the support of {s.dist}', s.stmt.span,
                    f"check the data for {s.target}: e.g. counts must be non-negative integers, "
                    "probabilities within [0, 1]", self.ir.source, self.ir.filename)

    def with_data(self, data: BoundData, check: bool = True) -> "LoweredModel":
        """The same lowering (same shapes) with other data values; support checks rerun."""
        new = copy.copy(self)
        new.data = data
        new.data_arrays = {k: jnp.asarray(v) for k, v in data.arrays.items()}
        if check:
            new.check_data()
        return new

    # ------------------------------------------------------------ pure functions
    def log_density(self, u, data_arrays):
        """Log joint density (up to a constant) at unconstrained u, log-Jacobians included; −inf
        where a run-time index check fails."""
        it = self.run([Unconstrain(self.layout, u)], data_arrays)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    def log_density_padded(self, u, sizes, data_arrays):
        """The log density with the size variables (bounded discrete latents that size arrays)
        at `sizes` and the padded arrays' active entries from u (`PaddedLayout`): one compiled
        function for every size."""
        it = self.run([Substitute(sizes), Unconstrain(self.layout, u)], data_arrays)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    def log_prior(self, u, data_arrays):
        """The prior part: every site but the observed ones (log-Jacobians included)."""
        it = self.run([Unconstrain(self.layout, u), Block(_likelihood_site)], data_arrays)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    def log_likelihood(self, u, data_arrays):
        """The observed sites and `target +=` factors."""
        it = self.run([Unconstrain(self.layout, u, jacobian=False),
                       Block(lambda s: not _likelihood_site(s))], data_arrays)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    def log_likelihood_pointwise(self, u, data_arrays, handlers=()):
        """{observed name: its log density element by element} at unconstrained u: the terms
        of ArviZ's `log_likelihood` group (`az.loo`, `az.compare`). Shape: the observed
        variable's, less its distribution's event dimensions (one term per row of a
        multivariate observation). `target +=` terms belong to no observation and are left
        out; so are variables whose terms do not split (`pointwise_undefined`)."""
        it = self.run([Unconstrain(self.layout, u, jacobian=False)] + list(handlers) + [Pointwise()],
                      data_arrays)
        return pointwise_terms(it)

    @property
    def pointwise_undefined(self) -> Dict[str, str]:
        """Observed variables without pointwise terms, and why (read while tracing)."""
        if "pointwise_undefined" not in self._shared:
            def probe(u, data):
                it = self.run([Unconstrain(self.layout, u, jacobian=False), Pointwise()], data)
                self._shared["pointwise_undefined"] = dict(it.pointwise_info.undefined)
                return it.lp
            jax.eval_shape(probe, jnp.zeros((self.dim,)), self.data_arrays)
        return self._shared["pointwise_undefined"]

    def log_density_given(self, u, data_arrays, discrete_values, source=False):
        """The density with discrete latents at given values (nothing summed out: for the
        rewritten program, the summed-out factors at those values)."""
        it = self.run([Substitute(discrete_values), Unconstrain(self.layout, u)], data_arrays,
                      source=source)
        return jnp.where(it.valid, it.lp, -jnp.inf)

    # ------------------------------------------------------------ summed-out discrete latents
    @property
    def marginal(self):
        """The latents summed out of the density (name → Marginal node), or None."""
        nodes = {s.name: s for s in self.ir.body if isinstance(s, N.Marginal)}
        return nodes or None

    def discrete_posterior(self, key, u, data_arrays):
        """Summed-out latents at u: a draw from p(z | θ, data) and per-element probabilities."""
        if self.marginal is None:
            return {}
        it = self.run([Unconstrain(self.layout, u), DrawMarginal(key)], data_arrays)
        out = {}
        for name in self.marginal:
            out[name] = it.env[name]
            out[prob_name(name)] = it.env[prob_name(name)]
        return out

    def evaluate(self, u, data_arrays):
        """Constrained values of latents and top-level deterministic variables at u."""
        it = self.run([Unconstrain(self.layout, u, jacobian=False)], data_arrays)
        out = {n: it.env[n] for n in self.latent_names}
        out.update({n: it.env[n] for n in self.deterministic_names if n in it.env})
        return reported(out)

    def generated(self, key, values, data_arrays):
        """Generated quantities given the values of the latents (one posterior draw)."""
        it = self.run([Substitute(values), Seed(key), Generate()], data_arrays, source=True)
        return reported({n: it.env[n] for n in self.generated_names if n in it.env})

    def simulate_observed(self, key, values, data_arrays, names):
        """The observed variables `names` simulated from the model at the latents' `values`
        (one posterior predictive draw of the data, when `values` is a posterior draw)."""
        it = self.run([Substitute(values), Seed(key), Simulate(names)], data_arrays, source=True)
        return reported({n: it.env[n] for n in names})

    @property
    def replicates(self) -> Dict[str, str]:
        """{observed name: generated name}: the generated quantities that replicate observed
        data (`replicate_pairs`)."""
        if "replicates" not in self._shared:
            pairs = {}
            if self.generated_names and self.observed_names:
                def shapes(key, data):
                    it = self.run([Seed(key), Generate()], data, source=True)
                    return {n: it.env[n] for n in self.generated_names if n in it.env}
                gen = jax.eval_shape(shapes, jax.random.PRNGKey(0), self.data_arrays)
                observed = {n: jnp.shape(self.data_arrays[n]) for n in self.observed_names
                            if n in self.data_arrays}
                pairs = replicate_pairs(self.source_ir.variables, observed,
                                        {n: v.shape for n, v in gen.items()})
            self._shared["replicates"] = pairs
        return self._shared["replicates"]

    def prior_sample(self, key, data_arrays, simulate_data=False):
        """Draw every random variable from the prior (and the observed data, if asked)."""
        handlers = [Seed(key)] + ([Simulate()] if simulate_data else [])
        it = self.run(handlers, data_arrays, source=True)
        out = {n: it.env[n] for n, v in self.ir.variables.items()
               if v.kind in ("latent", "deterministic") and n in it.env}
        if simulate_data:
            out.update({n: it.env[n] for n in self.observed_names})
        return reported(out)

    def constraints_at(self, values, data_arrays=None) -> Dict[str, Any]:
        """The support of every continuous latent with the others at `values`."""
        data_arrays = self.data_arrays if data_arrays is None else data_arrays
        found = _Constraints()
        self.run([Substitute(values), found], data_arrays)
        return found.found

    def unconstrain(self, values: Dict[str, Any], data_arrays=None):
        """Inverse of the constraining transforms (for initial values and tests)."""
        cs = self.constraints_at(values, data_arrays)
        parts = [jnp.ravel(biject_to(cs[s.name]).inv(jnp.asarray(values[s.name]))) for s in self.slots]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    def diagnose_point(self, u, data_arrays=None) -> List[Problem]:
        """Why the density is not finite at u: run-time checks that fail (indices out of
        range) and distribution arguments outside their domain, with their lines."""
        return explain(self, u, self.data_arrays if data_arrays is None else data_arrays)

    # ------------------------------------------------------------ the independent reference
    def reference_log_density(self, u, data_arrays, handlers=()):
        """The same density through numpyro: loops unrolled, one numpyro.sample site each."""
        def model():
            it = self.run([Unconstrain(self.layout, u)] + list(handlers) + [Unroll(), NumpyroSites()],
                          data_arrays, source=True)
            # run-time checks (indices in range) hold or the density is -inf, as in the lowering
            numpyro.factor("__checks", jnp.where(it.valid, 0.0, -jnp.inf))

        with numpyro.handlers.seed(rng_seed=0):
            lp, _ = numpyro_log_density(model, (), {}, {})
        return lp

    def unrolled_size(self, limit: int = 10 ** 7) -> int:
        """How many simple statements run when every loop is unrolled."""
        def count(body, mult):
            total = 0
            for s in body:
                if isinstance(s, N.Loop):
                    try:
                        it = Interpreter(self.ir, dict(self.static))
                        lo, hi = it.loop_bounds(s)
                        n = max(0, hi - lo + 1)
                    except Exception:  # noqa: BLE001 - bounds known only at run time
                        n = 1000
                    total += count(s.body, mult * n)
                elif isinstance(s, N.Branch):
                    total += count(s.then, mult) + count(s.orelse, mult)
                elif isinstance(s, N.Generated):
                    continue
                else:
                    total += mult
                if total > limit:
                    return total
            return total

        return count(self.ir.body, 1)


def replicate_pairs(variables, observed_shapes: Dict[str, tuple], generated_shapes: Dict[str, tuple]):
    """{observed name: generated name}: which generated quantity replicates which observed
    variable (for posterior and prior predictive checks).

    A generated quantity G replicates observed data Y when G is drawn with `~` in the generated
    block from the same distributions as Y and has Y's shape. If several qualify for Y, the one
    whose name begins with Y's name (`y_rep` for `y`) is taken when it is the only such one;
    otherwise Y gets none (ambiguous). A G replicates at most one Y. `variables`: the IR's
    variables (name → Variable)."""
    claims: Dict[str, list] = {}
    for y, shape in observed_shapes.items():
        vy = variables.get(y)
        if vy is None or not vy.dists:
            continue
        found = [g for g, gshape in generated_shapes.items()
                 if g in variables and variables[g].kind == "generated" and variables[g].dists
                 and set(variables[g].dists) == set(vy.dists) and tuple(gshape) == tuple(shape)]
        if len(found) > 1:
            found = [g for g in found if g.startswith(y)]
        if len(found) == 1:
            claims.setdefault(found[0], []).append(y)
    return {ys[0]: g for g, ys in claims.items() if len(ys) == 1}


def reported(values: Dict[str, Any]) -> Dict[str, Any]:
    """Values as reported: arrays whose size is random at their largest size, NaN beyond the
    active entries."""
    return {n: jnp.where(v.mask(), v.values, jnp.nan) if isinstance(v, Padded) else v
            for n, v in values.items()}


def _likelihood_site(site) -> bool:
    return site.kind == "factor" or (site.kind == "draw" and site.role == "observed")


def seed_of(key) -> int:
    """An integer seed from an int or a JAX key (raw or typed)."""
    if isinstance(key, (int, np.integer)):
        return int(key)
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return int(np.asarray(key).ravel()[-1])


def data_signature(b: BoundData) -> str:
    """What a lowering depends on besides the program: the integer sizes, the shapes and types
    of the data arrays, and the values held fixed."""
    h = hashlib.sha1()
    h.update(repr(sorted(b.static.items())).encode())
    for k in sorted(b.arrays):
        h.update(f"{k}:{b.arrays[k].shape}:{b.arrays[k].dtype}".encode())
    for k in sorted(b.fixed):
        h.update(k.encode() + np.ascontiguousarray(b.fixed[k]).tobytes())
    return h.hexdigest()
