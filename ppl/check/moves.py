"""Checks of user-written moves: `move NAME(weight = w) { propose { … } involution { … } }`.

A move is Gen's involutive MCMC written in the language (docs/mhg.md): the `propose` block draws
auxiliary variables with `~` given the current state, the `involution` block maps (state, aux)
to (state′, aux′) by assignments. What is checked here, before any data is seen:

- the proposal draws new names only (the auxiliary variables), from distributions with a
  sampler, whole (no elements); it may compute locals with "=" and branch with `if`;
- the involution is deterministic (no `~`, no `target +=`) and changes only latents, params and
  auxiliary variables: data stay untouched (observations are never moved), deterministic
  quantities are recomputed by the model;
- `insert(x, i, v)` / `remove(x, i)` (arrays whose size is random) are the whole right-hand
  side of an assignment;
- options: `weight = w`, a positive number.

A module of the standard library may define a move with formal parameters (the names it works
on); a model uses it with `move NAME(actual, names, weight = w)`, its body read with the formal
names replaced. Whether the involution is one (h∘h = id, Jacobian square with a finite
determinant) needs values and is checked when the mhg pass builds it (ppl/passes/user_moves.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..builtins.distributions import DISTRIBUTIONS
from ..syntax import ast as A
from ..syntax.errors import PPLCheckError, did_you_mean
from ..syntax.visit import transform, walk

# array edits a move may write as the right-hand side of an assignment: name -> arity
ARRAY_EDITS = {"insert": 3, "remove": 2}
OPTIONS = ("weight",)


@dataclass
class CheckedMove:
    """A move ready for the IR builder: its body (formal names replaced at a use of a module's
    move), its weight, its auxiliary variables (name -> discrete?) in order of first draw, the
    model variables the involution writes, where it was written and where it is used."""
    name: str
    decl: A.MoveDef  # the body
    weight: float
    aux: Dict[str, bool]
    writes: Tuple[str, ...]
    span: A.Span  # the use (the definition for a move of the model file)
    name_span: A.Span
    module: Optional[str] = None  # the module that defines the body, if not the model file
    locals_: Dict[str, str] = field(default_factory=dict)


def _as_number(e) -> Optional[float]:
    if isinstance(e, A.Num):
        return float(e.value)
    if isinstance(e, A.UnOp) and e.op == "-" and isinstance(e.operand, A.Num):
        return -float(e.operand.value)
    return None


class MoveChecks:
    """Mixed into the checker: the move statements of the model and of imported modules."""

    def _move_template(self, m: A.MoveDef, module_checker):
        """A move defined by a module: positional arguments are its formal parameters."""
        if not m.has_body:
            raise module_checker.err(f'move "{m.name}" needs a body in a module', m.name_span,
                                     "write `move NAME(params) { propose { … } involution { … } }`")
        for a in m.args:
            if not isinstance(a, A.Name):
                raise module_checker.err("the parameters of a move are names", a.span,
                                         "e.g. `move split_merge(k, w, mu, tau) { … }`")
        templates = self.__dict__.setdefault("move_templates", {})
        if m.name in templates:
            raise module_checker.err(f'move "{m.name}" is already defined', m.name_span)
        templates[m.name] = (m, module_checker.program)

    def _check_moves(self, moves: List[A.MoveDef]) -> List[CheckedMove]:
        out: List[CheckedMove] = []
        seen: Dict[str, A.Span] = {}
        templates = self.__dict__.get("move_templates", {})
        for m in moves:
            weight = 1.0
            for na in m.named:
                if na.name not in OPTIONS:
                    raise self.err(f'unknown option "{na.name}" of a move', na.span,
                                   did_you_mean(na.name, OPTIONS) or "a move takes `weight = w`")
                w = _as_number(na.value)
                if w is None or not w > 0:
                    raise self.err("the weight of a move must be a positive number", na.value.span,
                                   "e.g. `weight = 0.5`: moves are picked in proportion to their weights")
                weight = w
            if m.name in seen:
                raise self.err(f'move "{m.name}" is already used (line {seen[m.name].line})',
                               m.name_span, "give each move its own name")
            seen[m.name] = m.span
            if m.has_body:
                if m.args:
                    raise self.err(f'move "{m.name}" of the model takes no parameters', m.args[0].span,
                                   "a move written in the model uses the model's names directly; "
                                   "parameters belong to moves defined in modules")
                out.append(self._check_move_body(m, m, weight, None, {}))
                continue
            if m.name not in templates:
                hint = did_you_mean(m.name, list(templates)) or (
                    "define it here with a body, `move NAME() { propose { … } involution { … } }`, "
                    "or import the module that defines it (e.g. `import mixtures`)")
                raise self.err(f'unknown move "{m.name}"', m.name_span, hint)
            t, module = templates[m.name]
            if len(m.args) != len(t.args):
                formals = ", ".join(a.id for a in t.args)
                raise self.err(f'move "{m.name}" takes {len(t.args)} names, but {len(m.args)} '
                               f"{'was' if len(m.args) == 1 else 'were'} given", m.span,
                               f"it is defined as {m.name}({formals}) in {module.filename}")
            rename = {}
            for formal, actual in zip(t.args, m.args):
                if not isinstance(actual, A.Name) or actual.id not in self.vars:
                    raise self.err(f'the arguments of move "{m.name}" are names of the model',
                                   actual.span, f'"{formal.id}" of {m.name} stands for a variable '
                                   "of the model: pass its name")
                self.vars[actual.id].used = True
                rename[formal.id] = actual.id
            if not any(na.name == "weight" for na in m.named):
                for na in t.named:
                    if na.name == "weight" and _as_number(na.value) is not None:
                        weight = _as_number(na.value)
            body = _renamed(t, rename)
            out.append(self._check_move_body(body, m, weight, module.filename, rename))
        return out

    # ------------------------------------------------------------ one move
    def _check_move_body(self, m: A.MoveDef, use: A.MoveDef, weight, module, rename) -> CheckedMove:
        """Check the body `m` (at a use `use` of a module's move, errors inside its body name
        the module's file)."""
        try:
            return self._check_move_blocks(m, use, weight, module)
        except PPLCheckError as e:
            if module is None:
                raise
            # the body is a module's: its spans are the module's text (unless the error points
            # at the use); say where it is used too
            prog = next((p for (_, p) in self.__dict__.get("move_templates", {}).values()
                         if p.filename == module), None)
            if prog is not None and e.span is not use.name_span and e.span is not use.span:
                e.source, e.filename = prog.source, prog.filename
            e.notes.append(f'in move "{use.name}" of {module}, used at line {use.span.line} of '
                           f"{self.program.filename}")
            raise

    def _check_move_blocks(self, m: A.MoveDef, use: A.MoveDef, weight, module) -> CheckedMove:
        err = self._move_err(module)
        scope = self._move_scope()
        aux: Dict[str, bool] = {}
        self._propose_block(m.propose, scope, aux, err)
        writes: List[str] = []
        self._involution_block(m.involution, scope, aux, writes, err, m)
        if not writes:
            raise err(f'move "{m.name}" changes no variable of the model', use.name_span,
                      "assign the new state in the involution block, e.g. `mu = mu + u`")
        return CheckedMove(m.name, m, weight, aux, tuple(writes), use.span, use.name_span, module)

    def _move_err(self, module):
        if module is None:
            return self.err
        src = self.__dict__.get("move_templates", {})
        prog = next((p for (_, p) in src.values() if p.filename == module), None)

        def err(msg, span, hint=None):
            if prog is None:
                return self.err(msg, span, hint)
            return PPLCheckError(msg, span, hint, prog.source, prog.filename)
        return err

    def _move_scope(self):
        scope = type(self.globals)(self.globals)  # the checker's Scope
        scope.loop_vars = set()
        return scope

    def _propose_block(self, body, scope, aux, err):
        for s in body:
            if isinstance(s, A.Sample):
                name = s.target.name
                if s.target.indices:
                    raise err("auxiliary variables are drawn whole", s.target.span,
                              f"draw `{name} ~ …` and index it in the involution block")
                if name in self.vars:
                    v = self.vars[name]
                    raise err(f'the proposal cannot draw "{name}": it is a variable of the model '
                              f"(line {v.span.line})", s.target.span,
                              "the proposal draws auxiliary variables with new names; the "
                              "involution block sets the new state from them")
                ty = self._dist(s.dist, scope, name, None)
                spec = DISTRIBUTIONS.get(s.dist.func)
                if spec is None:
                    raise err(f'{s.dist.func} has no sampler: an auxiliary variable needs one',
                              s.dist.func_span, "draw it from a built-in distribution")
                if name in aux and aux[name] != spec.discrete:
                    raise err(f'"{name}" is drawn both as an integer and as a real', s.target.span,
                              "give the two auxiliary variables different names")
                aux[name] = bool(spec.discrete)
                scope.names[name] = ty
            elif isinstance(s, A.Assign) and not s.target.indices:
                if s.target.name in self.vars:
                    raise err(f'the proposal cannot change "{s.target.name}", a variable of the model',
                              s.target.span, "the state changes in the involution block")
                scope.names[s.target.name] = self._expr(s.value, scope)
            elif isinstance(s, A.VarDecl) and s.value is not None and s.name not in self.vars:
                scope.names[s.name] = self._expr(s.value, scope)
            elif isinstance(s, A.If):
                c = self._expr(s.cond, scope)
                if c.base == "real":
                    raise err("the condition of an if must be a comparison or a bool", s.cond.span)
                self._propose_block(s.then, scope, aux, err)
                self._propose_block(s.orelse, scope, aux, err)
            else:
                raise err("a proposal draws auxiliary variables (`u ~ …`), computes values "
                          "(`a = …`) and branches (`if`)", s.span,
                          "the new state is set in the involution block")

    def _involution_block(self, body, scope, aux, writes, err, m):
        for s in body:
            if isinstance(s, A.Assign):
                self._involution_assign(s, scope, aux, writes, err)
            elif isinstance(s, A.VarDecl) and s.value is not None and s.dist is None:
                self._involution_assign(A.Assign(s.span, A.LValue(s.name, (), s.name_span), s.value),
                                        scope, aux, writes, err)
            elif isinstance(s, A.If):
                c = self._expr(s.cond, scope)
                if c.base == "real":
                    raise err("the condition of an if must be a comparison or a bool", s.cond.span)
                self._involution_block(s.then, scope, aux, writes, err, m)
                self._involution_block(s.orelse, scope, aux, writes, err, m)
            elif isinstance(s, A.For):
                for e in (s.lo, s.hi):
                    if self._expr(e, scope).base != "int":
                        raise err("a loop bound must be an integer", e.span)
                inner = type(scope)(scope)
                inner.names[s.var] = self._expr(A.Num(s.span, 1, True), scope)  # an int
                self._involution_block(s.body, inner, aux, writes, err, m)
            elif isinstance(s, (A.Sample, A.VarDecl)) and getattr(s, "dist", True) is not None:
                raise err("the involution is deterministic: it cannot draw", s.span,
                          "draw auxiliary variables in the propose block")
            elif isinstance(s, A.TargetIncrement):
                raise err("target += does not belong in a move", s.span,
                          "the acceptance ratio comes from the model's density and the proposal")
            else:
                raise err("an involution assigns values (`x = …`), loops and branches", s.span)

    def _involution_assign(self, s: A.Assign, scope, aux, writes, err):
        name = s.target.name
        self._move_rhs(s.value, scope, err)
        v = self.vars.get(name)
        if v is not None:
            if v.kind == "data":
                raise err(f'a move cannot change "{name}": it is data (line {v.span.line})',
                          s.target.span, "observations and data stay as they are; a move changes "
                          "latent variables, params and its auxiliary variables")
            if v.kind not in ("latent", "param"):
                raise err(f'a move cannot change "{name}": it is {v.kind} (line {v.span.line})',
                          s.target.span, f'"{name}" is recomputed from the new state by the model; '
                          "change the variables it is computed from")
            if name not in writes:
                writes.append(name)
            for i in s.target.indices:
                self._expr(i, scope)
            return
        if s.target.indices:
            if scope.lookup(name) is None:
                raise err(f'"{name}" must have a value before its elements are set', s.target.span)
            for i in s.target.indices:
                self._expr(i, scope)
            return
        if name not in aux and scope.lookup(name) is None:
            scope.names[name] = self._move_value_ty(s.value, scope)

    def _move_value_ty(self, e, scope):
        if isinstance(e, A.Call) and e.func in ARRAY_EDITS:
            return self._expr(e.args[0], scope)
        return self._expr(e, scope)

    def _move_rhs(self, e, scope, err):
        """`insert`/`remove` only as the whole right-hand side; everything else is an
        expression of the language."""
        if isinstance(e, A.Call) and e.func in ARRAY_EDITS and e.func not in self.funs:
            n = ARRAY_EDITS[e.func]
            sig = "insert(x, i, value)" if e.func == "insert" else "remove(x, i)"
            if len(e.args) != n or e.given is not None or e.named:
                raise err(f"{e.func} takes {n} arguments", e.span, f"the signature is {sig}")
            base = self._expr(e.args[0], scope)
            if base.rank == 0:
                raise err(f"{e.func} edits an array, not a single value", e.args[0].span)
            if self._expr(e.args[1], scope).base != "int":
                raise err("a position must be an integer", e.args[1].span, "positions are 1-based")
            for a in e.args[2:]:
                self._expr(a, scope)
            return
        for x in walk(e):
            if isinstance(x, A.Call) and x.func in ARRAY_EDITS and x.func not in self.funs:
                raise err(f"{x.func}(…) is the whole right-hand side of an assignment", x.span,
                          f"name the edited array first: `x = {x.func}(…)`")
        self._expr(e, scope)


def _renamed(m: A.MoveDef, rename: Dict[str, str]) -> A.MoveDef:
    """A module's move with its formal parameters replaced by the model's names."""
    def fn(node):
        if isinstance(node, A.Name) and node.id in rename:
            return A.Name(node.span, rename[node.id])
        if isinstance(node, A.LValue) and node.name in rename:
            return A.LValue(rename[node.name], node.indices, node.span)
        return node
    return A.MoveDef(m.span, m.name, (), m.named, tuple(transform(s, fn) for s in m.propose),
                     tuple(transform(s, fn) for s in m.involution), True, name_span=m.name_span)
