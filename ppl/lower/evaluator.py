"""Statements → JAX operations.

One evaluator serves every lowering mode:
- "density": latent values come from a `LatentSource` (a flat unconstrained vector, with
  log-Jacobians); every `~` adds its log density. This is the potential NUTS differentiates.
- "sample": `~` draws (prior sampling, data simulation, generated quantities); values already
  known (posterior draws) are kept.
- "reference": like "density" but loops are unrolled in Python and every `~` is a
  `numpyro.sample` site, so numpyro sums the log density: the independent evaluation that
  translation validation compares against.

Loops follow the plan of the IR: independent iterations run as one `vmap`, recurrences as a
`lax.scan` carrying the arrays they write. `if` on a traced condition evaluates both branches and
selects, so it works inside `vmap` and `scan`.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import constraints

from ..builtins.distributions import DISTRIBUTIONS, density_function
from ..builtins.functions import FUNCTIONS
from ..ir.graph import ModelGraph
from ..syntax import ast as A
from ..syntax.errors import PPLError


class LoweringError(PPLError):
    kind = "error"


def _is_static(x):
    return isinstance(x, (int, float, bool)) and not isinstance(x, jax.Array)


def static_int(x, span, what="a size"):
    if isinstance(x, bool) or not isinstance(x, int):
        try:
            return int(_concrete(x))
        except Exception:
            raise LoweringError(f"{what} must be known before inference (integer data or a literal)",
                                span) from None
    return x


def stmt_key(stmt) -> int:
    # A statement's identity for random keys: stable across runs and processes.
    return stmt.span.line * 1000 + stmt.span.col


class Evaluator:
    def __init__(self, graph: ModelGraph, mode: str, env: Dict[str, Any], source=None, key=None,
                 given: Optional[Dict[str, Any]] = None, simulate_data: bool = False,
                 run_generated: bool = False, fixed=frozenset()):
        self.graph = graph
        self.mode = mode
        self.env = env
        self.source = source  # LatentSource in density/reference modes
        self.key = key
        self.given = given or {}
        self.simulate_data = simulate_data
        self.run_generated = run_generated
        self.fixed = fixed  # random variables held at values given with the data
        self.lp = jnp.zeros(())
        self.checks: Dict[int, Any] = {}  # observed-value support checks, by statement key
        # vectorised loop bodies: element writes and the overrides that let later statements
        # of the same iteration read them
        self.elem_writes: Optional[Dict[str, Any]] = None
        self.overrides: Dict[Any, Any] = {}
        self.depth = 0

    # ------------------------------------------------------------ helpers
    def child(self, env, key=None):
        c = Evaluator(self.graph, self.mode, env, self.source, key, self.given, self.simulate_data,
                      self.run_generated, self.fixed)
        c.depth = self.depth + 1
        return c

    def err(self, msg, span, hint=None):
        return LoweringError(msg, span, hint, self.graph.program.source, self.graph.program.filename)

    def var_kind(self, name):
        info = self.graph.checked.variables.get(name)
        return info.kind if info is not None else "local"

    def _key_for(self, stmt):
        return jax.random.fold_in(self.key, stmt_key(stmt))

    # ------------------------------------------------------------ statements
    def exec(self, body):
        for s in body:
            self.stmt(s)

    def stmt(self, s):
        try:
            self._stmt(s)
        except PPLError:
            raise
        except (TypeError, ValueError, IndexError) as e:
            raise self.err(_explain(e), s.span, _shape_hint(e)) from None

    def _stmt(self, s):
        if isinstance(s, (A.DataDecl,)):
            return
        if isinstance(s, A.ParamDecl):
            self._materialize(s.name, s.type, None, s)
        elif isinstance(s, A.VarDecl):
            self._vardecl(s)
        elif isinstance(s, A.Sample):
            self._sample(s)
        elif isinstance(s, A.Assign):
            self._assign(s.target, self.expr(s.value), s)
        elif isinstance(s, A.TargetIncrement):
            if self.mode != "sample":
                v = jnp.sum(self.expr(s.value))
                if self.mode == "reference":
                    numpyro.factor(f"target@{s.span.line}:{s.span.col}:{self._site_suffix()}", v)
                else:
                    self.lp = self.lp + v
        elif isinstance(s, A.For):
            self._for(s)
        elif isinstance(s, A.If):
            self._if(s)
        elif isinstance(s, A.Generated):
            if self.mode == "sample" and self.run_generated:
                self.exec(s.body)
        else:
            raise self.err(f"cannot lower {type(s).__name__}", s.span)

    def _site_suffix(self):
        return ",".join(str(self.env[v]) for v in self._loop_vars)

    @property
    def _loop_vars(self):
        return getattr(self, "_lv", ())

    # ------------------------------------------------------------ declarations and latents
    def declared_shape(self, t: A.TypeExpr):
        dims = [tuple(static_int(self.expr(d), d.span) for d in g) for g in t.dims]
        if t.base in ("simplex", "ordered", "positive_ordered", "unit_vector"):
            core = (dims[0][0],)
            outer = tuple(x for g in dims[1:] for x in g)
            return outer + core
        if t.base in ("cov_matrix", "corr_matrix", "corr_cholesky", "cholesky_factor_corr",
                      "cholesky_cov", "cholesky_factor_cov"):
            k = dims[0][0]
            core = (k, dims[0][1] if len(dims[0]) > 1 else k)
            outer = tuple(x for g in dims[1:] for x in g)
            return outer + core
        return tuple(x for g in dims for x in g)

    def type_constraint(self, t: A.TypeExpr, shape):
        base = t.base
        table = {
            "simplex": constraints.simplex, "ordered": constraints.ordered_vector,
            "positive_ordered": constraints.positive_ordered_vector,
            "cov_matrix": constraints.positive_definite, "corr_matrix": constraints.corr_matrix,
            "corr_cholesky": constraints.corr_cholesky, "cholesky_factor_corr": constraints.corr_cholesky,
            "cholesky_cov": constraints.lower_cholesky, "cholesky_factor_cov": constraints.lower_cholesky,
        }
        if base in table:
            return table[base]
        lo, hi = t.bound("lower"), t.bound("upper")
        lo = None if lo is None else self.expr(lo)
        hi = None if hi is None else self.expr(hi)
        if lo is not None and hi is not None:
            return constraints.interval(jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape)) \
                if jnp.ndim(lo) or jnp.ndim(hi) else constraints.interval(lo, hi)
        if lo is not None:
            if _is_static(lo) and lo == 0:
                return constraints.positive
            return constraints.greater_than(lo)
        if hi is not None:
            return constraints.less_than(hi)
        return None

    def _materialize(self, name, t: Optional[A.TypeExpr], dist, s):
        """Bring a continuous latent or param into the environment (density modes)."""
        if name in self.fixed:
            return
        if self.mode == "sample":
            if name in self.given:
                self.env[name] = self.given[name]
            elif self.var_kind(name) == "param" and dist is None:
                raise self.err(f'"{name}" has a flat prior and cannot be drawn from its prior', s.span,
                               "give it a proper distribution to simulate from the prior")
            return
        shape = self.declared_shape(t) if t is not None else tuple(dist.shape())
        c = self.type_constraint(t, shape) if t is not None else None
        if c is None:
            c = dist.support if dist is not None else self.graph_support(name, s)
        value = self.source.take(name, shape, c, self)
        self.env[name] = value

    def graph_support(self, name, s):
        from ..builtins.distributions import static_support
        node = self.graph.var(name)
        supports = []
        for d in node.dists:
            spec = DISTRIBUTIONS.get(d)
            sup = static_support(spec) if spec is not None else constraints.real
            if sup is None:
                raise self.err(f'"{name}" needs declared bounds: the support of {d} depends on its '
                               "arguments", s.span,
                               f"declare them, e.g. `{name}: real<lower=a, upper=b>[…]`")
            if not any(sup is x for x in supports):
                supports.append(sup)
        if len(supports) > 1:
            raise self.err(f'the elements of "{name}" have different supports', s.span,
                           "declare bounds on its type")
        return supports[0] if supports else constraints.real

    def _vardecl(self, s: A.VarDecl):
        kind = self.var_kind(s.name)
        if s.value is not None:
            v = self.expr(s.value)
            if self.depth == 0 or kind != "local":
                shape = self.declared_shape(s.type)
                v = jnp.broadcast_to(jnp.asarray(v, dtype=_dtype(s.type)), shape)
            self.env[s.name] = v
            return
        if kind in ("deterministic", "generated") or (kind == "latent" and self.graph.var(s.name).discrete):
            if kind == "generated" and not (self.mode == "sample" and self.run_generated):
                return
            if kind == "latent" and s.name in self.fixed:
                return
            if kind == "latent" and self.mode != "sample":
                # discrete latent in a density: given values or summed out (lower/marginalize.py)
                from .marginalize import discrete_latent
                return discrete_latent(self, s, decl=s)
            shape = self.declared_shape(s.type)
            if s.dist is None:
                self.env[s.name] = jnp.zeros(shape, dtype=_dtype(s.type))
            else:
                self._sample(A.Sample(s.span, A.LValue(s.name, (), s.name_span), s.dist), decl=s)
            return
        if s.dist is None:  # element-wise latent: materialised now, its elements scored later
            if self.mode == "sample":
                if s.name in self.given or s.name in self.fixed:
                    if s.name in self.given:
                        self.env[s.name] = self.given[s.name]
                    return
                self.env[s.name] = jnp.zeros(self.declared_shape(s.type), dtype=_dtype(s.type))
                return
            self._materialize(s.name, s.type, None, s)
            return
        self._sample(A.Sample(s.span, A.LValue(s.name, (), s.name_span), s.dist), decl=s)

    # ------------------------------------------------------------ ~
    def build_dist(self, call: A.Call, value_shape=None):
        spec = DISTRIBUTIONS.get(call.func)
        args = [self.expr(a) for a in call.args]
        if spec is None:  # a user-defined NAME_lpdf: density only
            return _UserDensity(self, call, args)
        try:
            return spec.build(*args, value_shape=value_shape)
        except (ValueError, TypeError) as e:
            raise self.err(f"cannot build {call.func}: {_explain(e)}", call.span, _shape_hint(e)) from None

    def _sample(self, s: A.Sample, decl: Optional[A.VarDecl] = None):
        name = s.target.name
        kind = self.var_kind(name)
        if kind == "generated" and not (self.mode == "sample" and self.run_generated):
            return
        if name in self.fixed:
            return
        if self.mode == "sample":
            return self._sample_draw(s, decl, kind)
        # density / reference
        if kind == "latent" and not s.target.indices and name not in self.env:
            if self.graph.var(name).discrete:
                # discrete latent in a density: given values or summed out (lower/marginalize.py)
                from .marginalize import discrete_latent
                return discrete_latent(self, s, decl=decl)
            t = decl.type if decl is not None else None
            shape = self.declared_shape(t) if t is not None else None
            d = self.build_dist(s.dist, value_shape=shape)
            if t is not None:
                c = self.type_constraint(t, shape)
                if c is None:
                    c = d.support
                value = self.source.take(name, shape, c, self)
            else:
                value = self.source.take(name, tuple(d.batch_shape + d.event_shape), d.support, self)
            self.env[name] = value
            self._score(d, value, s, name)
            return
        # numpyro's constraints take the numpy path for non-JAX values, which fails under jit
        value = jnp.asarray(self.read_lvalue(s.target))
        shape = jnp.shape(value)
        d = self.build_dist(s.dist, value_shape=shape)
        if kind == "data" and self.mode == "density":
            self.checks[stmt_key(s)] = jnp.all(d.support(value)) if not isinstance(d, _UserDensity) \
                else jnp.bool_(True)
        self._score(d, value, s, name)

    def _score(self, d, value, s, name):
        if self.mode == "reference":
            site = f"{name}@{s.span.line}:{s.span.col}:{self._site_suffix()}"
            if isinstance(d, _UserDensity):
                numpyro.factor(site, jnp.sum(d.log_prob(value)))
            else:
                numpyro.sample(site, _expand_to(d, jnp.shape(value)), obs=value)
        else:
            self.lp = self.lp + jnp.sum(d.log_prob(value))

    def _sample_draw(self, s, decl, kind):
        name = s.target.name
        if kind == "data" and not self.simulate_data:
            return
        if kind in ("latent", "param") and name in self.given:
            if not s.target.indices:
                self.env[name] = self.given[name]
            return
        if kind == "param":
            return  # a prior statement on a param: only the density needs it
        shape = None
        if s.target.indices:
            shape = jnp.shape(self.read_lvalue(s.target))
        elif decl is not None:
            shape = self.declared_shape(decl.type)
        elif kind == "data":
            shape = jnp.shape(self.env[name])
        d = self.build_dist(s.dist, value_shape=shape)
        if isinstance(d, _UserDensity):
            raise self.err(f"{s.dist.func} has no sampler (it is defined by a _lpdf function)", s.span)
        if shape is not None and d.event_shape:
            batch = shape[: len(shape) - len(d.event_shape)]
            d = d.expand(jnp.broadcast_shapes(tuple(batch), d.batch_shape)) if batch else d
        elif shape is not None:
            d = d.expand(jnp.broadcast_shapes(tuple(shape), d.batch_shape)) if shape else d
        value = d.sample(self._key_for(s))
        if shape is not None and jnp.shape(value) != tuple(shape):
            value = jnp.broadcast_to(value, shape)
        if kind == "data":
            value = value.astype(jnp.asarray(self.env[name]).dtype)
        self._assign(s.target, value, s)

    # ------------------------------------------------------------ = and element writes
    def read_lvalue(self, lv: A.LValue):
        if not lv.indices:
            return self.env[lv.name]
        return self.expr(A.Index(lv.span, A.Name(lv.span, lv.name), lv.indices))

    def _assign(self, lv: A.LValue, value, s):
        name = lv.name
        if not lv.indices:
            self.env[name] = value
            return
        base = self.env.get(name)
        if base is None:
            raise self.err(f'"{name}" must be declared before its elements are set', lv.span)
        idx = tuple(self._index_value(i, base, k) for k, i in enumerate(lv.indices))
        if self.elem_writes is not None and name in self._outer_names:
            # inside a vectorised loop: remember the element, scatter after the vmap
            self.elem_writes[name] = (value, idx)
            self.overrides[(name, lv.indices)] = value
            return
        base = jnp.asarray(base)
        value = jnp.asarray(value, dtype=base.dtype) if jnp.issubdtype(base.dtype, jnp.integer) \
            else jnp.asarray(value)
        self.env[name] = base.at[idx].set(value)
        self.overrides.pop((name, lv.indices), None)

    # ------------------------------------------------------------ loops
    def _for(self, s: A.For):
        lo = static_int(self.expr(s.lo), s.lo.span, "a loop bound")
        hi = static_int(self.expr(s.hi), s.hi.span, "a loop bound")
        if hi < lo:
            return
        plan = self.graph.loop_plan(s)
        strategy = plan.sample if self.mode == "sample" else plan.density
        if self.mode == "reference":
            strategy = "unroll"
        if strategy == "vectorize" and self._writes_outer_whole(s):
            strategy = "scan"
        if strategy == "unroll":
            lv_before = self._loop_vars
            for t in range(lo, hi + 1):
                self.env[s.var] = t
                self._lv = lv_before + (s.var,)
                self.exec(s.body)
            self._lv = lv_before
            self.env.pop(s.var, None)
        elif strategy == "vectorize":
            self._for_vectorized(s, lo, hi)
        else:
            self._for_scan(s, lo, hi)

    def _writes_outer_whole(self, s):
        from ..ir.graph import _collect_events
        events = []
        _collect_events(s.body, events, self.graph.checked.variables)
        return any(op == "write" and not idx and name in self.env for op, name, idx, _ in events)

    @property
    def _outer_names(self):
        return getattr(self, "_outer", ())

    def _for_vectorized(self, s, lo, hi):
        ts = jnp.arange(lo, hi + 1)
        outer_env = self.env
        key = self.key
        outer = set(outer_env)

        def body(t):
            env = dict(outer_env)
            env[s.var] = t
            c = self.child(env, None if key is None else jax.random.fold_in(key, t))
            c.elem_writes = {}
            c._outer = outer
            c.overrides = dict(self.overrides)
            c.exec(s.body)
            return c.lp, c.elem_writes, c.checks

        lps, writes, checks = jax.vmap(body)(ts)
        self.lp = self.lp + jnp.sum(lps)
        for k, v in checks.items():
            self.checks[k] = jnp.all(v) & self.checks.get(k, True)
        for name, (vals, idx) in writes.items():
            base = jnp.asarray(self.env[name])
            if self.elem_writes is not None and name in self._outer_names:
                # nested vectorised loops: pass the stacked writes further out
                self.elem_writes[name] = (vals, idx)
                continue
            vals = vals.astype(base.dtype) if jnp.issubdtype(base.dtype, jnp.integer) else vals
            self.env[name] = base.at[idx].set(vals)

    def _for_scan(self, s, lo, hi):
        from ..ir.graph import _collect_events
        events = []
        _collect_events(s.body, events, self.graph.checked.variables)
        carried = sorted({n for op, n, _, _ in events if op == "write" and n in self.env})
        outer_env = self.env
        key = self.key
        overrides = self.overrides

        def step(carry, t):
            env = dict(outer_env)
            env.update(carry)
            env[s.var] = t
            c = self.child(env, None if key is None else jax.random.fold_in(key, t))
            c.overrides = dict(overrides)
            c.exec(s.body)
            return {n: jnp.asarray(c.env[n]) for n in carried}, (c.lp, c.checks)

        init = {n: jnp.asarray(self.env[n]) for n in carried}
        ts = jnp.arange(lo, hi + 1)
        out_shapes = jax.eval_shape(lambda c, t: step(c, t)[0], init, ts[0])
        init = {n: jnp.broadcast_to(init[n], out_shapes[n].shape).astype(out_shapes[n].dtype)
                for n in carried}
        final, (lps, checks) = jax.lax.scan(step, init, ts)
        self.env.update(final)
        self.lp = self.lp + jnp.sum(lps)
        for k, v in checks.items():
            self.checks[k] = jnp.all(v) & self.checks.get(k, True)

    # ------------------------------------------------------------ if / else
    def _if(self, s: A.If):
        cond = self.expr(s.cond)
        if _is_static(cond) or _is_concrete(cond):
            self.exec(s.then if bool(cond) else s.orelse)
            return
        cond = jnp.asarray(cond)
        if cond.ndim:
            raise self.err("an if condition must be a single value", s.cond.span,
                           "use if_else(cond, a, b) for elementwise choices")
        branches = []
        for body in (s.then, s.orelse):
            c = self.child(dict(self.env), self.key)
            c._lv = self._loop_vars
            c.elem_writes = None if self.elem_writes is None else {}
            c._outer = self._outer_names
            c.overrides = dict(self.overrides)
            c.exec(body)
            branches.append(c)
        a, b = branches
        self.lp = self.lp + jnp.where(cond, a.lp, b.lp)
        for name in set(a.env) | set(b.env):
            if name in a.env and name in b.env:
                va, vb = a.env[name], b.env[name]
                if va is vb:
                    self.env[name] = va
                else:
                    self.env[name] = jnp.where(cond, va, vb)
        for k in set(a.checks) | set(b.checks):
            self.checks[k] = jnp.where(cond, a.checks.get(k, True), b.checks.get(k, True))
        if self.elem_writes is not None:
            for name in set(a.elem_writes) | set(b.elem_writes):
                wa = a.elem_writes.get(name) or b.elem_writes.get(name)
                old = jnp.asarray(self.env[name])[wa[1]]
                va = a.elem_writes[name][0] if name in a.elem_writes else old
                vb = b.elem_writes[name][0] if name in b.elem_writes else old
                self.elem_writes[name] = (jnp.where(cond, va, vb), wa[1])
            for k in set(a.overrides) | set(b.overrides):
                if k in a.overrides and k in b.overrides:
                    self.overrides[k] = jnp.where(cond, a.overrides[k], b.overrides[k])

    # ------------------------------------------------------------ expressions
    def expr(self, e: A.Expr):
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Bool):
            return e.value
        if isinstance(e, A.Name):
            try:
                return self.env[e.id]
            except KeyError:
                raise self.err(f'"{e.id}" has no value here', e.span,
                               "it is defined later, or only inside a branch or loop") from None
        if isinstance(e, A.BinOp):
            return self._binop(e)
        if isinstance(e, A.UnOp):
            v = self.expr(e.operand)
            if e.op == "-":
                return -v
            if e.op == "+":
                return v
            return jnp.logical_not(v) if not _is_static(v) else (not v)
        if isinstance(e, A.Transpose):
            v = jnp.asarray(self.expr(e.operand))
            return jnp.swapaxes(v, -1, -2) if v.ndim >= 2 else v
        if isinstance(e, A.ArrayLit):
            items = [self.expr(i) for i in e.items]
            if all(_is_static(i) for i in items):
                return jnp.asarray(items)
            items = jnp.broadcast_arrays(*[jnp.asarray(i) for i in items])
            return jnp.stack(items)
        if isinstance(e, A.Index):
            if isinstance(e.base, A.Name) and (e.base.id, e.indices) in self.overrides:
                return self.overrides[(e.base.id, e.indices)]
            base = self.expr(e.base)
            return self._index(base, e)
        if isinstance(e, A.Call):
            return self._call(e)
        raise self.err(f"cannot evaluate {type(e).__name__}", e.span)

    def _binop(self, e):
        a, b = self.expr(e.left), self.expr(e.right)
        try:
            return self._apply_binop(e, a, b)
        except (TypeError, ValueError) as exc:
            sa, sb = _fmt_shape(jnp.shape(a)), _fmt_shape(jnp.shape(b))
            hint = ('for "@" the inner dimensions must agree' if e.op == "@" else
                    "elementwise operations need equal shapes, or shapes that broadcast")
            raise self.err(f'"{e.op}" cannot combine {_describe(e.left, self)} of shape {sa} with '
                           f"{_describe(e.right, self)} of shape {sb}", e.span, hint) from exc

    def _apply_binop(self, e, a, b):
        op = e.op
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if _is_static(a) and _is_static(b):
                return a / b
            return jnp.true_divide(a, b)
        if op == "%":
            return a % b
        if op == "^":
            if _is_static(a) and _is_static(b):
                return a ** b
            return jnp.power(jnp.asarray(a, dtype=jnp.result_type(float)) if _is_int(a) else a, b)
        if op == "@":
            return jnp.matmul(a, b)
        if op in ("<", "<=", ">", ">=", "==", "!="):
            if _is_static(a) and _is_static(b):
                return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b,
                        "!=": a != b}[op]
            f = {"<": jnp.less, "<=": jnp.less_equal, ">": jnp.greater, ">=": jnp.greater_equal,
                 "==": jnp.equal, "!=": jnp.not_equal}[op]
            return f(a, b)
        if op == "&&":
            return (a and b) if _is_static(a) and _is_static(b) else jnp.logical_and(a, b)
        if op == "||":
            return (a or b) if _is_static(a) and _is_static(b) else jnp.logical_or(a, b)
        raise self.err(f"unknown operator {op}", e.span)

    def _index_value(self, i, base, axis):
        if isinstance(i, A.Slice):
            lo = 1 if i.lo is None else self.expr(i.lo)
            hi = None if i.hi is None else self.expr(i.hi)
            lo = static_int(lo, i.span, "a slice bound")
            hi = jnp.shape(base)[axis] if hi is None else static_int(hi, i.span, "a slice bound")
            return slice(lo - 1, hi)
        v = self.expr(i)
        if _is_static(v):
            n = jnp.shape(base)[axis] if axis < jnp.ndim(base) else 0
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.err("an index must be an integer", i.span)
            if not 1 <= v <= n:
                raise self.err(f"index {v} is out of range: the dimension has size {n}", i.span,
                               "indices run from 1 to the size")
            return v - 1
        v = jnp.asarray(v)
        if not jnp.issubdtype(v.dtype, jnp.integer):
            raise self.err("an index must be an integer", i.span)
        return v - 1

    def _index(self, base, e: A.Index):
        base = jnp.asarray(base) if not isinstance(base, _Indexable) else base
        if isinstance(base, _Indexable):
            return base.index(self, e)
        if len(e.indices) > jnp.ndim(base):
            raise self.err(f"too many indices: the value has {jnp.ndim(base)} dimension(s)", e.span)
        idx = tuple(self._index_value(i, base, k) for k, i in enumerate(e.indices))
        return base[idx]

    def _call(self, e: A.Call):
        spec = density_function(e.func)
        if spec is not None:
            value = self.expr(e.given)
            d = self.build_dist(A.Call(e.span, spec.name, e.args, None, e.func_span),
                                value_shape=jnp.shape(value))
            return jnp.sum(d.log_prob(value))
        if e.func in self.graph.functions:
            args = ([self.expr(e.given)] if e.given is not None else []) + [self.expr(a) for a in e.args]
            return self.call_user(self.graph.functions[e.func], args, e)
        fs = FUNCTIONS[e.func]
        args = [self.expr(a) for a in e.args]
        for k in fs.static:
            if k < len(args):
                args[k] = static_int(args[k], e.args[k].span)
        try:
            return fs.fn(*args)
        except (TypeError, ValueError) as exc:
            shapes = ", ".join(_fmt_shape(jnp.shape(a)) for a in args)
            raise self.err(f"{e.func} cannot take arguments of shapes {shapes}", e.span,
                           _shape_hint(exc) or f"check the arguments of {e.func}") from exc

    def call_user(self, f: A.FunDef, args, call):
        if self.depth > 64:
            raise self.err(f"{f.name} calls itself too deeply (recursion is not supported)", call.span)
        env = {p.name: a for p, a in zip(f.params, args)}
        c = _FunctionEvaluator(self.graph, env, self)
        return c.run(f, call)


class _FunctionEvaluator(Evaluator):
    """Functions are deterministic: assignments, loops (unrolled or scanned), if, return."""

    def __init__(self, graph, env, parent):
        super().__init__(graph, "density", env)
        self.depth = parent.depth + 1
        self.result = None

    def var_kind(self, name):
        return "local"

    def run(self, f, call):
        value, done = self._body(f.body)
        if not done:
            raise self.err(f"{f.name} ended without returning a value", call.span)
        return value

    def _body(self, body):
        for s in body:
            if isinstance(s, A.Return):
                return self.expr(s.value), True
            if isinstance(s, A.If):
                cond = self.expr(s.cond)
                if _is_static(cond) or _is_concrete(cond):
                    v, done = self._body(s.then if bool(cond) else s.orelse)
                    if done:
                        return v, True
                    continue
                a = _FunctionEvaluator(self.graph, dict(self.env), self)
                b = _FunctionEvaluator(self.graph, dict(self.env), self)
                va, da = a._body(s.then)
                vb, db = b._body(s.orelse)
                if da and db:
                    return jnp.where(cond, va, vb), True
                if da or db:
                    raise self.err("when an if returns on a value not known before inference, both "
                                   "branches must return", s.span)
                for n in set(a.env) & set(b.env):
                    if a.env[n] is not b.env[n]:
                        self.env[n] = jnp.where(cond, a.env[n], b.env[n])
                continue
            if isinstance(s, A.For):
                lo = static_int(self.expr(s.lo), s.lo.span, "a loop bound")
                hi = static_int(self.expr(s.hi), s.hi.span, "a loop bound")
                for t in range(lo, hi + 1):
                    self.env[s.var] = t
                    v, done = self._body(s.body)
                    if done:
                        return v, True
                continue
            self.stmt(s)
        return None, False

    def _assign(self, lv, value, s):
        if not lv.indices:
            self.env[lv.name] = value
            return
        base = jnp.asarray(self.env[lv.name])
        idx = tuple(self._index_value(i, base, k) for k, i in enumerate(lv.indices))
        self.env[lv.name] = base.at[idx].set(value)

    def _vardecl(self, s):
        self.env[s.name] = jnp.broadcast_to(jnp.asarray(self.expr(s.value), dtype=_dtype(s.type)),
                                            self.declared_shape(s.type))


class _UserDensity:
    """`y ~ foo(a, b)` where the program defines `foo_lpdf(y, a, b)`."""

    def __init__(self, ev, call, args):
        self.ev, self.call, self.args = ev, call, args
        self.f = ev.graph.functions.get(call.func + "_lpdf") or ev.graph.functions[call.func + "_lpmf"]
        self.support = constraints.real
        self.batch_shape, self.event_shape = (), ()

    def log_prob(self, value):
        return self.ev.call_user(self.f, [value] + list(self.args), self.call)

    def shape(self):
        return ()


class _Indexable(abc.ABC):
    """Values with their own indexing (e.g. the lag window of a particle filter)."""

    @abc.abstractmethod
    def index(self, ev, e):
        """The value of `e` (an Index expression whose base is this value)."""


def _expand_to(d, shape):
    full = tuple(d.batch_shape) + tuple(d.event_shape)
    if tuple(shape) == full:
        return d
    batch = tuple(shape)[: len(shape) - len(d.event_shape)]
    return d.expand(batch)


def _dtype(t: A.TypeExpr):
    return {"int": jnp.int32, "bool": jnp.bool_}.get(t.base, jnp.result_type(float)) if t else \
        jnp.result_type(float)


def _is_int(x):
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer)


def _concrete(x):
    """The concrete value of x, or an error when it is only known at run time."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError("a traced value")
    return np.asarray(x)


def _is_concrete(x):
    try:
        _concrete(x)
        return not isinstance(x, jax.core.Tracer)
    except Exception:
        return False


def _fmt_shape(shape) -> str:
    return "()" if not shape else "(" + ", ".join(str(d) for d in shape) + ")"


def _describe(e: A.Expr, ev) -> str:
    if isinstance(e, A.Name):
        return f'"{e.id}"'
    src = ev.graph.program.source.splitlines()
    s = e.span
    if s is not None and s.line == s.end_line and 0 < s.line <= len(src):
        return f'"{src[s.line - 1][s.col - 1:s.end_col - 1]}"'
    return "a value"


def _explain(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "Incompatible shapes" in msg or "broadcast" in msg.lower():
        return "the shapes do not match: " + msg
    return msg


def _shape_hint(e: Exception):
    msg = str(e)
    if "Incompatible shapes" in msg or "broadcast" in msg.lower():
        return "check the sizes of the arrays in this statement (elementwise operations need equal or broadcastable shapes)"
    if "matmul" in msg or "dot_general" in msg:
        return 'for "@" the inner dimensions must agree'
    return None
