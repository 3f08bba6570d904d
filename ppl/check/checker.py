"""Static checks: names, ranks (array dimensions), what each statement means, imports.

The result, `CheckedProgram`, says for every top-level name what it is (data, param, latent,
deterministic, generated) and how it is defined; the IR is built from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..builtins.distributions import (
    DISTRIBUTIONS,
    cdf_function,
    density_function,
    rng_function,
)
from ..builtins.functions import CDF_FUNCTIONS, FUNCTIONS
from ..builtins.ode import ODE_SOLVERS
from ..syntax import ast as A
from ..syntax.errors import PPLCheckError, Warning_, did_you_mean, source_line
from ..syntax.parser import parse, recursion_headroom
from ..syntax.visit import walk
from .moves import CheckedMove, MoveChecks
from .process import ProcessChecks
from .types import (
    BASE_TYPES,
    CONSTRAINED_TYPES,
    INT,
    REAL,
    Scope,
    Ty,
    type_base,
    type_rank,
)

KEYWORDS = {"data", "param", "for", "in", "if", "else", "def", "return", "import", "generated",
            "target", "true", "false", "move"}


@dataclass
class VarInfo:
    name: str
    kind: str  # data | param | latent | deterministic | generated
    decl: Optional[A.Stmt]
    type: Optional[A.TypeExpr]
    ty: Ty
    span: A.Span
    observed: bool = False  # data that appears on the left of `~`
    defined_by: List[A.Stmt] = field(default_factory=list)
    elementwise: bool = False
    used: bool = False
    data_only: bool = False  # defined by "=" from data alone (Stan's transformed data)


@dataclass
class CheckedProgram:
    program: A.Program
    body: Tuple[A.Stmt, ...]  # top-level statements, imports removed, generated kept
    variables: Dict[str, VarInfo]
    functions: Dict[str, A.FunDef]
    warnings: List[Warning_]
    imports: List[str]
    moves: List[CheckedMove] = field(default_factory=list)  # user-written moves (check/moves.py)

    def names(self, kind: str) -> List[str]:
        return [n for n, v in self.variables.items() if v.kind == kind]


def stdlib_path() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "stdlib", here / "_stdlib"):
        if candidate.is_dir():
            return candidate
    return here.parent / "stdlib"


class Checker(ProcessChecks, MoveChecks):
    def __init__(self, program: A.Program):
        self.program = program
        self.vars: Dict[str, VarInfo] = {}
        self.funs: Dict[str, A.FunDef] = {}
        self.warnings: List[Warning_] = []
        self.imports: List[str] = []
        self.globals = Scope()
        # generated quantities live in their own scope: the model cannot see them
        self.gen_scope = Scope(self.globals)
        self.loop_vars: Dict[str, int] = {}  # loop variable -> line of its loop
        self.later: Dict[str, A.Span] = {}  # top-level names -> where they are first defined

    def err(self, msg, span, hint=None):
        return PPLCheckError(msg, span, hint, self.program.source, self.program.filename)

    def _text(self, e) -> Optional[str]:
        """The source text of a one-line expression."""
        sp = getattr(e, "span", None)
        if sp is None or sp.line <= 0 or sp.line != sp.end_line:
            return None
        line = source_line(self.program.source, sp.line)  # numbered as the parser numbers them
        return line[sp.col - 1:sp.end_col - 1] if line is not None else None

    def _declared_hint(self, v: Optional[VarInfo]) -> Optional[str]:
        if v is None or v.type is None:
            return None
        t = self._text(v.type)
        return f'"{v.name}" is declared {t} (line {v.span.line})' if t else None

    # ------------------------------------------------------------ entry
    def run(self) -> CheckedProgram:
        body, moves = [], []
        for s in self.program.body:
            if isinstance(s, A.Import):
                self._import(s)
            elif isinstance(s, A.FunDef):
                self._fundef(s)
            elif isinstance(s, A.MoveDef):
                moves.append(s)  # checked after the model: a move reads all of it
            else:
                body.append(s)
        self._collect_definitions(body)
        self.data_only = DataOnly(body)
        for s in body:
            self._stmt(s, self.globals, loop_depth=0, in_generated=False)
        checked_moves = self._check_moves(moves)  # ppl/check/moves.py
        self._finish()
        for v in self.vars.values():
            v.data_only = v.kind == "deterministic" and self.data_only(v.name)
        return CheckedProgram(self.program, tuple(body), self.vars, self.funs, self.warnings,
                              self.imports, checked_moves)

    def _finish(self):
        self._process_finish()  # ppl/check/process.py
        for v in self.vars.values():
            if v.kind == "latent" and not v.defined_by:
                self.warnings.append(Warning_(
                    f'latent "{v.name}" is declared but never given a distribution: it gets an '
                    "improper flat prior", v.span,
                    f'give it one (`{v.name} ~ normal(0, 1)`) or declare it `param {v.name}: …`'))
                v.kind = "param"
            if v.kind == "data" and not v.used:
                self.warnings.append(Warning_(f'data "{v.name}" is declared but never used', v.span))

    def _collect_definitions(self, body):
        """Where each name is first defined, so a use before it can point there."""
        for s in (x for b in body for x in walk(b)):
            if isinstance(s, (A.DataDecl, A.ParamDecl, A.VarDecl)):
                self.later.setdefault(s.name, s.name_span)
            elif isinstance(s, (A.Sample, A.Assign)):
                self.later.setdefault(s.target.name, s.target.span)

    # ------------------------------------------------------------ imports / functions
    def _import(self, s: A.Import):
        path = stdlib_path() / f"{s.module}.ppl"
        if not path.is_file():
            avail = sorted(p.stem for p in stdlib_path().glob("*.ppl"))
            hint = did_you_mean(s.module, avail) or (
                "`import NAME` loads the standard-library module stdlib/NAME.ppl; check the name")
            span = s.span
            if span.line == span.end_line and span.end_col - len(s.module) > span.col:
                span = A.Span(span.line, span.end_col - len(s.module), span.line, span.end_col)
            raise self.err(f'no module "{s.module}" in the standard library', span, hint)
        mod = parse(path.read_text(), str(path))
        for ms in mod.body:
            if isinstance(ms, A.FunDef):
                sub = Checker(mod)
                sub.funs = self.funs
                sub._fundef(ms)
            elif isinstance(ms, A.Import):
                self._import(ms)
            elif isinstance(ms, A.MoveDef):
                self._move_template(ms, Checker(mod))  # ppl/check/moves.py
            else:
                raise PPLCheckError("a standard-library module may only define functions and moves",
                                    ms.span, None, mod.source, mod.filename)
        self.imports.append(s.module)

    def _fundef(self, f: A.FunDef):
        if f.name in self.funs or f.name in FUNCTIONS or f.name in DISTRIBUTIONS:
            raise self.err(f'function "{f.name}" is already defined', f.name_span,
                           "choose another name")
        self.funs[f.name] = f  # before the body: recursion is rejected below, but names resolve
        scope = Scope(None)
        for p in f.params:
            scope.names[p.name] = Ty(type_base(p.type), type_rank(p.type)) if p.type else Ty("real", None)
        returns = [False]
        self._fun_body(f.body, scope, returns, f)
        if not returns[0]:
            raise self.err(f'function "{f.name}" never returns a value', f.name_span,
                           "end its body with `return expr`")

    def _fun_body(self, body, scope, returns, f):
        for s in body:
            if isinstance(s, A.Return):
                self._expr(s.value, scope)
                returns[0] = True
            elif isinstance(s, A.Assign):
                t = self._expr(s.value, scope)
                if s.target.indices:
                    if scope.lookup(s.target.name) is None:
                        raise self.err(f'"{s.target.name}" is not defined', s.target.span)
                    for i in s.target.indices:
                        self._expr(i, scope)
                else:
                    scope.names[s.target.name] = t
            elif isinstance(s, A.VarDecl) and s.value is not None:
                scope.names[s.name] = Ty(type_base(s.type), type_rank(s.type))
                self._expr(s.value, scope)
            elif isinstance(s, A.VarDecl) and s.dist is None:  # a typed local, filled later
                self._check_type(s.type, scope)
                scope.names[s.name] = Ty(type_base(s.type), type_rank(s.type))
            elif isinstance(s, A.For):
                self._expr(s.lo, scope)
                self._expr(s.hi, scope)
                inner = Scope(scope)
                inner.names[s.var] = INT
                self._fun_body(s.body, inner, returns, f)
            elif isinstance(s, A.If):
                self._expr(s.cond, scope)
                self._fun_body(s.then, Scope(scope), returns, f)
                self._fun_body(s.orelse, Scope(scope), returns, f)
            else:
                raise self.err("only assignments, loops, if/else and return are allowed in a function",
                               s.span, "functions are deterministic: draw random variables in the model")

    # ------------------------------------------------------------ statements
    def _declare(self, name, kind, decl, typ, span, scope):
        if name in KEYWORDS:
            raise self.err(f'"{name}" is a keyword and cannot name a variable', span,
                           f'choose another name, e.g. "{name}_"')
        if name in self.vars:
            prev = self.vars[name]
            raise self.err(f'"{name}" is already declared (line {prev.span.line})', span,
                           "each variable is declared once")
        ty = Ty(type_base(typ), type_rank(typ)) if typ is not None else Ty("real", None)
        v = VarInfo(name, kind, decl, typ, ty, span)
        self.vars[name] = v
        scope.names[name] = ty
        return v

    def _check_type(self, t: A.TypeExpr, scope):
        known = set(BASE_TYPES) | set(CONSTRAINED_TYPES)
        if t.base not in known:
            raise self.err(f'unknown type "{t.base}"',
                           A.Span(t.span.line, t.span.col, t.span.line, t.span.col + len(t.base)),
                           did_you_mean(t.base, known) or "types: " + ", ".join(sorted(known)))
        seen = set()
        for b in t.bounds:
            if b.name in seen:
                raise self.err(f'the {b.name} bound is given twice', b.span,
                               "give each of lower and upper at most once")
            seen.add(b.name)
            if b.name not in ("lower", "upper"):
                raise self.err(f'unknown bound "{b.name}"', b.span,
                               did_you_mean(b.name, ["lower", "upper"]) or 'bounds are "lower" and "upper"')
            if t.base in CONSTRAINED_TYPES and not _takes_bounds(t.base):
                raise self.err(f"{t.base} takes no bounds", b.span)
            self._expr(b.value, scope)
        if t.base in CONSTRAINED_TYPES and not t.dims:
            raise self.err(f"{t.base} needs a size, e.g. {t.base}[K]", t.span)
        for group in t.dims:
            for d in group:
                dt = self._expr(d, scope)
                if dt.base != "int":
                    v = self.vars.get(d.id) if isinstance(d, A.Name) else None
                    hint = "sizes are integer data or literals"
                    if v is not None and v.type is not None:
                        hint = (f'"{d.id}" is declared {self._text(v.type) or v.type.base} '
                                f"(line {v.span.line}); declare it int")
                    raise self.err("an array size must be an integer", d.span, hint)

    def _stmt(self, s: A.Stmt, scope: Scope, loop_depth: int, in_generated: bool):
        if isinstance(s, A.DataDecl):
            if loop_depth or in_generated:
                raise self.err("data must be declared at the top level", s.span,
                               "move the declaration above the loop, if or generated block")
            self._check_type(s.type, scope)
            self._declare(s.name, "data", s, s.type, s.name_span, scope)
        elif isinstance(s, A.ParamDecl):
            if loop_depth or in_generated:
                raise self.err("a param must be declared at the top level", s.span,
                               "move the declaration above the loop, if or generated block")
            self._check_type(s.type, scope)
            if s.type.base in ("int", "bool"):
                raise self.err(f'param "{s.name}" cannot be {s.type.base}', s.type.span,
                               "params are continuous; give a discrete latent a distribution instead")
            self._declare(s.name, "param", s, s.type, s.name_span, scope)
        elif isinstance(s, A.VarDecl) and s.type.base == "process":
            self._process_decl(s, scope, loop_depth, in_generated)  # ppl/check/process.py
        elif isinstance(s, A.VarDecl):
            self._check_type(s.type, scope)
            if loop_depth and s.value is None and s.dist is None:
                self._typed_local(s, scope)
                return
            if loop_depth and s.value is None:
                raise self.err("a random variable must be declared at the top level", s.span,
                               "declare it before the loop and define its elements inside")
            if s.value is not None:
                self._expr(s.value, scope)
                if loop_depth:
                    scope.names[s.name] = Ty(type_base(s.type), type_rank(s.type))
                    return
                kind = "generated" if in_generated else "deterministic"
                v = self._declare(s.name, kind, s, s.type, s.name_span, scope)
                v.defined_by.append(s)
            else:
                kind = "generated" if in_generated else "latent"
                v = self._declare(s.name, kind, s, s.type, s.name_span, scope)
                if s.dist is not None:
                    self._dist(s.dist, scope, s.name, v.ty)
                    v.defined_by.append(s)
        elif isinstance(s, A.Sample):
            self._sample(s, scope, loop_depth, in_generated)
        elif isinstance(s, A.Assign):
            self._assign(s, scope, loop_depth, in_generated)
        elif isinstance(s, A.TargetIncrement):
            if in_generated:
                raise self.err("target += is not allowed in generated { }", s.span,
                               "generated quantities do not change the posterior")
            self._expr(s.value, scope)
        elif isinstance(s, A.For):
            lo, hi = self._expr(s.lo, scope), self._expr(s.hi, scope)
            for e, t in ((s.lo, lo), (s.hi, hi)):
                if t.base != "int" or (t.rank or 0) != 0:
                    raise self.err("a loop bound must be an integer", e.span)
            inner = Scope(scope)
            if s.var in self.vars:
                raise self.err(f'loop variable "{s.var}" hides the variable declared at line '
                               f"{self.vars[s.var].span.line}", s.var_span, "rename the loop variable")
            inner.names[s.var] = INT
            inner.loop_vars = {s.var}
            self.loop_vars.setdefault(s.var, s.span.line)
            for b in s.body:
                self._stmt(b, inner, loop_depth + 1, in_generated)
        elif isinstance(s, A.If):
            self._expr(s.cond, scope)
            for b in s.then:
                self._stmt(b, Scope(scope), loop_depth + 1, in_generated)
            for b in s.orelse:
                self._stmt(b, Scope(scope), loop_depth + 1, in_generated)
        elif isinstance(s, A.Generated):
            if loop_depth or in_generated:
                raise self.err("generated { } must be at the top level", s.span)
            for b in s.body:
                self._stmt(b, self.gen_scope, loop_depth, True)
        elif isinstance(s, A.Return):
            raise self.err("return outside a function", s.span,
                           "`return` belongs in the body of `def f(…) { … }`; a model statement "
                           "defines variables with `~` or `=`")
        elif isinstance(s, A.FunDef):
            raise self.err("functions must be defined at the top level", s.span)
        elif isinstance(s, A.Import):
            raise self.err("import must be at the top level", s.span)
        elif isinstance(s, A.MoveDef):
            raise self.err("a move must be defined at the top level", s.span)
        else:  # pragma: no cover
            raise self.err(f"unsupported statement {type(s).__name__}", s.span)

    def _typed_local(self, s: A.VarDecl, scope):
        """`acc: real[K]` inside a loop or branch: storage local to one iteration (Stan's local
        declarations), filled by "=" later in the block; elements never set read as NaN."""
        if s.name in self.vars:
            raise self.err(f'"{s.name}" is already declared (line {self.vars[s.name].span.line})',
                           s.name_span, "a local value inside a loop needs a name of its own")
        if s.name in KEYWORDS:
            raise self.err(f'"{s.name}" is a keyword and cannot name a variable', s.name_span,
                           f'choose another name, e.g. "{s.name}_"')
        scope.names[s.name] = Ty(type_base(s.type), type_rank(s.type))

    def _index_target(self, lv: A.LValue, scope, v: VarInfo):
        for i in lv.indices:
            t = self._expr(i, scope)
            if t.base not in ("int", "bool") and not isinstance(i, A.Slice):
                raise self.err("an index must be an integer", i.span,
                               "indices are 1-based integers; real values cannot index")
        if v.ty.rank == 0 and lv.indices:
            raise self.err(f'cannot index "{lv.name}": it is a single value', lv.span,
                           self._declared_hint(v) or
                           f'"{lv.name}" is defined at line {v.span.line} as a single value, not an array')
        if v.ty.rank is not None and len(lv.indices) > v.ty.rank:
            raise self.err(f'too many indices: "{lv.name}" has {_dims(v.ty.rank)} but '
                           f"{_indices(len(lv.indices))} given", lv.span, self._declared_hint(v))

    def _sample(self, s: A.Sample, scope, loop_depth, in_generated):
        name = s.target.name
        local = scope.lookup(name) if name not in self.vars else None
        if local is not None:
            if _is_loop_var(scope, name):
                raise self.err(f'"{name}" is a loop variable and cannot be drawn', s.target.span,
                               "the loop sets it to 1, 2, …; draw an element of an array instead, "
                               f"e.g. `x[{name}] ~ normal(0, 1)`")
            raise self.err(f'"{name}" is a local value and cannot be drawn', s.target.span,
                           "a value declared or defined with \"=\" inside a loop or branch is "
                           "deterministic; declare a random variable at the top level")
        v = self.vars.get(name)
        if v is not None and v.kind == "process":
            self._process_target(s.target)
        if v is None:
            if s.target.indices:
                raise self.err(f'"{name}" must be declared before its elements are drawn',
                               s.target.span, f"declare it first, e.g. `{name}: real[N]`")
            if loop_depth:
                raise self.err(f'"{name}" is drawn inside a loop or if without a declaration',
                               s.target.span, f"declare it at the top level first, e.g. `{name}: real[N]`")
            kind = "generated" if in_generated else "latent"
            v = self._declare(name, kind, None, None, s.target.span, scope)
            v.ty = self._dist(s.dist, scope, name, None)
            scope.names[name] = v.ty
            v.defined_by.append(s)
            return
        v.used = True
        self._index_target(s.target, scope, v)
        if v.kind == "data":
            v.observed = True
            spec = DISTRIBUTIONS.get(s.dist.func)
            if spec is not None and spec.discrete and v.ty.base == "real":
                tt = self._text(v.type) if v.type is not None else None
                fix = (f"declare it `data {name}: int{tt[4:]}`" if tt and tt.startswith("real")
                       else "declare it int")
                raise self.err(f'{s.dist.func} is a distribution over integers but "{name}" is '
                               "declared real", s.dist.func_span,
                               f"{fix} (line {v.span.line}), or use a continuous distribution")
            self._dist(s.dist, scope, name, v.ty)
            v.defined_by.append(s)
            return
        if v.kind == "param":
            self._dist(s.dist, scope, name, v.ty)  # a prior on a param: adds to the density
            v.defined_by.append(s)
            return
        if v.kind in ("deterministic",):
            self._observe_transformed(s, scope, v)
            return
        if in_generated and v.kind != "generated":
            raise self.err(f'"{name}" belongs to the model; generated {{ }} cannot redefine it',
                           s.target.span, "give the generated quantity a new name")
        if not s.target.indices and v.defined_by:
            raise self.err(f'"{name}" already has a distribution (line {v.defined_by[0].span.line})',
                           s.target.span,
                           "a random variable is drawn once; to add another factor to the density "
                           f"write `target += {s.dist.func}_{_suffix(s.dist.func)}({name} | …)`")
        if s.target.indices and v.defined_by and not v.elementwise:
            raise self.err(f'"{name}" already has a distribution (line {v.defined_by[0].span.line})',
                           s.target.span, "its elements cannot be drawn again")
        v.elementwise = bool(s.target.indices)
        self._dist(s.dist, scope, name, v.ty)
        v.defined_by.append(s)

    def _observe_transformed(self, s: A.Sample, scope, v: VarInfo):
        """`log_w ~ normal(…)` where `log_w = log(w)`: a function of data only is data (Stan's
        transformed data), so observing it scores the data. A function of random variables
        cannot be observed: its density would need the Jacobian of the transformation."""
        name = s.target.name
        if not self.data_only(name):
            random = self.data_only.random_root(name)
            via = f' (through "{random}")' if random and random != name else ""
            raise self.err(f'"{name}" is defined by "=" (line {v.span.line}) from random '
                           f"variables{via} and cannot also be drawn", s.target.span,
                           "only a function of data alone can be observed; a density on a function "
                           "of random variables needs the Jacobian of that function: write "
                           "`target += …` with the log-Jacobian added, or draw the variable itself")
        v.observed = True
        self._index_target(s.target, scope, v)
        self._dist(s.dist, scope, name, v.ty)
        v.defined_by.append(s)

    def _assign(self, s: A.Assign, scope, loop_depth, in_generated):
        name = s.target.name
        t = self._expr(s.value, scope)
        v = self.vars.get(name)
        if v is not None and v.kind == "process":
            self._process_target(s.target)
        if v is None:
            if s.target.indices:
                if scope.lookup(name) is not None:
                    for i in s.target.indices:
                        self._expr(i, scope)
                    return
                raise self.err(f'"{name}" must be declared before its elements are assigned',
                               s.target.span, f"declare it first, e.g. `{name}: real[N]`")
            if loop_depth:
                # a value local to the loop or branch
                if scope.lookup(name) is None:
                    scope.names[name] = t
                return
            kind = "generated" if in_generated else "deterministic"
            v = self._declare(name, kind, None, None, s.target.span, scope)
            v.ty = t
            scope.names[name] = t
            v.defined_by.append(s)
            return
        if v.kind in ("data", "param") or (v.kind == "latent" and v.defined_by):
            what = {"data": "data", "param": "a param", "latent": "a random variable"}[v.kind]
            raise self.err(f'cannot assign to "{name}": it is {what} (line {v.span.line})',
                           s.target.span,
                           f'"{name}" cannot be redefined; give the new value its own name, '
                           f"e.g. `{name}_new = …`")
        if v.kind == "latent":  # declared with a type, defined by "=": a deterministic array
            v.kind = "generated" if in_generated else "deterministic"
        if in_generated and v.kind != "generated":
            raise self.err(f'"{name}" belongs to the model; generated {{ }} cannot redefine it',
                           s.target.span, "give the generated quantity a new name")
        self._index_target(s.target, scope, v)
        v.elementwise = v.elementwise or bool(s.target.indices)
        v.defined_by.append(s)

    # ------------------------------------------------------------ distributions
    def _dist(self, call: A.Call, scope, target_name, target_ty) -> Ty:
        self._named_call(call)
        spec = DISTRIBUTIONS.get(call.func)
        if spec is None:
            lpdf = f"{call.func}_lpdf"
            if lpdf in self.funs or f"{call.func}_lpmf" in self.funs:
                f = self.funs.get(lpdf) or self.funs[f"{call.func}_lpmf"]
                if len(f.params) != len(call.args) + 1:
                    raise self.err(f"{call.func} takes {_args(len(f.params) - 1)}, but "
                                   f"{len(call.args)} {_were(len(call.args))} given", call.span,
                                   f"{f.name} is defined at line {f.span.line}")
                for a in call.args:
                    self._expr(a, scope)
                return target_ty or Ty("real", None)
            candidates = list(DISTRIBUTIONS) + [n[:-5] for n in self.funs if n.endswith(("_lpdf", "_lpmf"))]
            hint = did_you_mean(call.func, candidates)
            if hint is None and call.func in FUNCTIONS:
                hint = f'"{call.func}" is a function, not a distribution'
            raise self.err(f'unknown distribution "{call.func}"', call.func_span, hint)
        if call.given is not None:
            raise self.err('"|" belongs in a density call like normal_lpdf(y | mu, sigma)', call.span,
                           f"write `~ {call.func}(…)` with the arguments only")
        n = len(spec.params)
        if len(call.args) != n:
            sig = f"{spec.name}({', '.join(spec.params)})"
            raise self.err(f"{spec.name} takes {_args(n)}, but {len(call.args)} "
                           f"{'was' if len(call.args) == 1 else 'were'} given", call.span,
                           f"the signature is {sig}")
        ranks = []
        for a in call.args:
            ranks.append(self._expr(a, scope).rank)
        if any(r is None for r in ranks):
            rank = None
        elif spec.name in ("lkj_corr_cholesky", "lkj_corr"):
            rank = 2
        elif spec.name in ("categorical", "categorical_logit"):
            rank = max(0, ranks[0] - 1)
        else:
            rank = max(ranks, default=0)
        return Ty("int" if spec.discrete else "real", rank)

    # ------------------------------------------------------------ expressions
    def _expr(self, e: A.Expr, scope: Scope) -> Ty:
        if isinstance(e, A.Num):
            return INT if e.is_int else REAL
        if isinstance(e, A.Bool):
            return Ty("bool", 0)
        if isinstance(e, A.Name):
            t = scope.lookup(e.id)
            if t is None:
                if e.id in self.processes:
                    self._process_as_value(e)
                if e.id in self.vars:
                    v = self.vars[e.id]
                    if v.kind == "generated":
                        raise self.err(f'"{e.id}" is a generated quantity (line {v.span.line}) and '
                                       "cannot be used in the model", e.span,
                                       "generated { } runs after inference: the model cannot depend "
                                       "on it; move the definition out of generated { } if it must")
                    raise self.err(f'"{e.id}" is used before it is defined (line {v.span.line})', e.span)
                if e.id in FUNCTIONS or e.id in self.funs:
                    raise self.err(f'"{e.id}" is a function', e.span, f"call it: {e.id}(…)")
                later = self.later.get(e.id)
                if later is not None and (later.line, later.col) > (e.span.line, e.span.col):
                    raise self.err(f'"{e.id}" is used before it is defined', e.span,
                                   f'"{e.id}" is defined at line {later.line}: statements run in order, '
                                   "so move that definition above this line")
                if e.id in self.loop_vars:
                    raise self.err(f'"{e.id}" is not defined here', e.span,
                                   f'"{e.id}" is the variable of the loop at line '
                                   f"{self.loop_vars[e.id]} and exists only inside that loop")
                hint = did_you_mean(e.id, scope.all_names())
                raise self.err(f'"{e.id}" is not defined', e.span, hint)
            if e.id in self.vars:
                self.vars[e.id].used = True
            return t
        if isinstance(e, A.BinOp):
            lt, rt = self._expr(e.left, scope), self._expr(e.right, scope)
            if e.op == "@":
                if lt.rank is not None and rt.rank is not None:
                    if lt.rank == 0 or rt.rank == 0:
                        raise self.err('"@" needs vectors or matrices on both sides', e.span,
                                       'use "*" to multiply by a scalar')
                    r = lt.rank + rt.rank - 2
                else:
                    r = None
                return Ty("real", r)
            rank = None if lt.rank is None or rt.rank is None else max(lt.rank, rt.rank)
            if e.op in ("<", "<=", ">", ">=", "==", "!=", "&&", "||"):
                return Ty("bool", rank)
            if e.op == "/" or e.op == "^":
                base = "real" if e.op == "^" or lt.base == "real" or rt.base == "real" else "int"
                if e.op == "/" and lt.base == "int" and rt.base == "int":
                    base = "real"  # true division, like Python (Stan truncates: a common trap)
                return Ty(base, rank)
            base = "int" if lt.base in ("int", "bool") and rt.base in ("int", "bool") else "real"
            return Ty(base, rank)
        if isinstance(e, A.UnOp):
            t = self._expr(e.operand, scope)
            return Ty("bool", t.rank) if e.op == "!" else t
        if isinstance(e, A.Ternary):
            c, a, b = (self._expr(x, scope) for x in (e.cond, e.then, e.orelse))
            if c.base == "real":
                raise self.err("the condition of `? :` must be a comparison or a bool", e.cond.span,
                               "e.g. `x > 0 ? a : b`")
            ranks = [t.rank for t in (c, a, b)]
            base = "int" if a.base == b.base == "int" else ("bool" if a.base == b.base == "bool" else "real")
            return Ty(base, None if None in ranks else max(ranks))
        if isinstance(e, A.Transpose):
            return self._expr(e.operand, scope)
        if isinstance(e, A.ArrayLit):
            ts = [self._expr(i, scope) for i in e.items]
            base = "int" if all(t.base == "int" for t in ts) else "real"
            r = None if any(t.rank is None for t in ts) else 1 + max((t.rank for t in ts), default=0)
            return Ty(base, r)
        if isinstance(e, A.Index):
            bt = self._expr(e.base, scope)
            dropped = 0
            for i in e.indices:
                if isinstance(i, A.Slice):
                    for part in (i.lo, i.hi):
                        if part is not None:
                            self._expr(part, scope)
                    continue
                it = self._expr(i, scope)
                if it.base == "real":
                    raise self.err("an index must be an integer", i.span,
                                   "indices are 1-based integers; real values cannot index")
                dropped += 1 if it.rank == 0 else 0
            if bt.rank is not None:
                if bt.rank == 0:
                    v = self.vars.get(e.base.id) if isinstance(e.base, A.Name) else None
                    where = f" (line {v.span.line})" if v is not None else ""
                    raise self.err("cannot index a scalar", e.span,
                                   f"{_describe(e.base)}{where} is a single value, not an array")
                if len(e.indices) > bt.rank:
                    v = self.vars.get(e.base.id) if isinstance(e.base, A.Name) else None
                    raise self.err(f"too many indices: {_describe(e.base)} has {_dims(bt.rank)} "
                                   f"but {_indices(len(e.indices))} given", e.span,
                                   self._declared_hint(v) if v is not None else None)
                return Ty(bt.base, bt.rank - dropped)
            return Ty(bt.base, None)
        if isinstance(e, A.Slice):
            for part in (e.lo, e.hi):
                if part is not None:
                    self._expr(part, scope)
            return Ty("int", 1)
        if isinstance(e, A.Call):
            return self._call(e, scope)
        raise self.err(f"unsupported expression {type(e).__name__}", e.span)  # pragma: no cover

    def _cdf_call(self, e: A.Call) -> Ty:
        """`normal_lcdf(y | mu, sigma)`: the value before "|", the parameters after it."""
        params = cdf_function(e.func)[0].params
        sig = f"{e.func}(y | {', '.join(params)})"
        if e.given is None:
            raise self.err(f'{e.func} needs a "|" between the value and the parameters', e.span,
                           f"write {sig}")
        if len(e.args) != len(params):
            raise self.err(f'{e.func} takes {_args(len(params))} after "|", but '
                           f"{len(e.args)} {_were(len(e.args))} given", e.span,
                           f"the signature is {sig}")
        return REAL

    def _ode_call(self, e: A.Call, scope) -> Ty:
        """`ode_rk45(f, y0, t0, ts, …)`: f a function of the program named, `f(t, y, …)`."""
        spec = ODE_SOLVERS[e.func]
        fixed = 7 if spec.tol else 4
        sig = (f"{e.func}(f, y0, t0, ts" + (", rtol, atol, max_num_steps" if spec.tol else "")
               + ", …)")
        if e.given is not None or len(e.args) < fixed:
            raise self.err(f"{e.func} takes at least {fixed} arguments, {len(e.args)} "
                           f"{_were(len(e.args))} given", e.span, f"the signature is {sig}")
        f = e.args[0]
        if not isinstance(f, A.Name) or f.id not in self.funs:
            hint = did_you_mean(f.id, list(self.funs)) if isinstance(f, A.Name) else None
            raise self.err(f"the first argument of {e.func} must name a function of the program",
                           f.span, hint or "define the right-hand side as `def f(t: real, y: "
                           "real[N], …) -> real[N] { … }` and pass its name")
        fun = self.funs[f.id]
        extra = len(e.args) - fixed
        if len(fun.params) != 2 + extra:
            raise self.err(f'{f.id} takes {_args(len(fun.params))}, but {e.func} passes it '
                           f"{2 + extra} (t, y and the {extra} after "
                           f"{'max_num_steps' if spec.tol else 'ts'})", f.span,
                           f"{f.id} is defined at line {fun.span.line}")
        tys = [self._expr(a, scope) for a in e.args[1:]]
        if spec.tol and tys[5].base != "int":
            raise self.err("max_num_steps must be an integer", e.args[6].span)
        return Ty("real", 2)

    def _call(self, e: A.Call, scope) -> Ty:
        self._named_call(e)
        if e.func in self.processes:
            return self._process_read(e, scope)
        if e.func in ODE_SOLVERS and e.func not in self.funs:
            return self._ode_call(e, scope)
        arg_tys = [self._expr(a, scope) for a in e.args]
        if e.given is not None and e.func in CDF_FUNCTIONS:
            self._expr(e.given, scope)
        spec = density_function(e.func)
        if spec is not None:
            if e.given is None:
                texts = [self._text(a) for a in e.args]
                if len(e.args) == len(spec.params) + 1 and all(texts):
                    fix = f"{e.func}({texts[0]} | {', '.join(texts[1:])})"
                else:
                    fix = f"{e.func}(y | {', '.join(spec.params)})"
                raise self.err(f'{e.func} needs a "|" between the value and the parameters', e.span,
                               f"write {fix}")
            self._expr(e.given, scope)
            if len(e.args) != len(spec.params):
                raise self.err(f"{e.func} takes {_args(len(spec.params))} after \"|\", but "
                               f"{len(e.args)} {_were(len(e.args))} given", e.span,
                               f"the signature is {e.func}(y | {', '.join(spec.params)})")
            return REAL
        if e.func in CDF_FUNCTIONS and e.func not in self.funs:
            return self._cdf_call(e)
        if e.given is not None and e.func not in self.funs and e.func.endswith(("_lpdf", "_lpmf")):
            stem = e.func[:-5]
            candidates = [n + e.func[-5:] for n in DISTRIBUTIONS] + [
                n for n in self.funs if n.endswith(("_lpdf", "_lpmf"))]
            raise self.err(f'unknown density "{e.func}"', e.func_span,
                           did_you_mean(e.func, candidates) or f'there is no distribution "{stem}"')
        if e.given is not None and e.func not in self.funs:
            raise self.err(f'"|" is only used in density calls, not in {e.func}(…)', e.span)
        if e.func in self.funs:
            f = self.funs[e.func]
            nargs = len(e.args) + (1 if e.given is not None else 0)
            if nargs != len(f.params):
                sig = f"{f.name}({', '.join(p.name for p in f.params)})"
                raise self.err(f"{e.func} takes {_args(len(f.params))}, but {nargs} {_were(nargs)} given",
                               e.span, f"it is defined as {sig} at line {f.span.line}")
            if e.given is not None:
                self._expr(e.given, scope)
            if f.returns is not None:
                return Ty(type_base(f.returns), type_rank(f.returns))
            return Ty("real", None)
        spec_rng = rng_function(e.func)
        if spec_rng is not None:
            raise self.err(f"{e.func} is not available: draw with `~` instead", e.span,
                           f"e.g. `x ~ {spec_rng.name}(…)` inside generated {{ }}")
        fs = FUNCTIONS.get(e.func)
        if fs is None:
            if e.func in DISTRIBUTIONS:
                raise self.err(f'{e.func} is a distribution, not a function', e.func_span,
                               f"draw with `x ~ {e.func}(…)` or use {e.func}_lpdf(x | …)")
            candidates = list(FUNCTIONS) + list(self.funs) + [n + "_lpdf" for n in DISTRIBUTIONS]
            raise self.err(f'unknown function "{e.func}"', e.func_span,
                           did_you_mean(e.func, candidates) or
                           f"define it with `def {e.func}(…) -> real {{ … }}` before its use, or import "
                           "the module that defines it")
        lo, hi = fs.arity
        if not lo <= len(e.args) <= hi:
            n = str(lo) if lo == hi else f"{lo} to {hi}"
            many = "argument" if n == "1" else "arguments"
            raise self.err(f"{e.func} takes {n} {many}, but {len(e.args)} "
                           f"{'was' if len(e.args) == 1 else 'were'} given", e.span)
        for i in fs.static:
            if i < len(e.args) and arg_tys[i].base != "int":
                raise self.err(f"argument {i + 1} of {e.func} is a size and must be an integer",
                               e.args[i].span)
        ranks = [t.rank for t in arg_tys]
        if fs.result_rank is not None:
            rank = fs.result_rank
        elif e.func in ("rep", "rep_array", "zeros", "ones"):
            extra = len(e.args) - (1 if e.func in ("rep", "rep_array") else 0)
            rank = None if ranks and ranks[0] is None else (ranks[0] if e.func in ("rep", "rep_array") else 0) + extra
        elif e.func in ("min", "max") and len(e.args) == 1:
            rank = 0
        else:
            rank = None if any(r is None for r in ranks) else max(ranks, default=0)
        base = "int" if fs.integer and all(t.base == "int" for t in arg_tys) else "real"
        if e.func in ("size", "num_elements", "rows", "cols", "dims"):
            base = "int"
        if e.func in ("is_inf", "is_nan"):
            base = "bool"
        return Ty(base, rank)


class DataOnly:
    """Which names are functions of data alone: the names each definition reads, the loop
    bounds and if conditions around it included, followed back to data. A name drawn with "~"
    (unless it is data) or declared `param` is random; so is anything that reads one. Names are
    matched without scopes (a local of one loop and of another are one name here), which can
    only make a name look less data-only than it is."""

    def __init__(self, body):
        self.data, self.random, self.sampled = set(), set(), set()
        self.reads: Dict[str, set] = {}
        self._stmts(body, frozenset())
        # `~` on a name defined by "=" observes it; on any other name it draws it
        self.random |= self.sampled - set(self.reads)
        self.random -= self.data

    def _names(self, e) -> set:
        return {x.id for x in walk(e) if isinstance(x, A.Name)} if e is not None else set()

    def _define(self, name, reads):
        self.reads.setdefault(name, set()).update(reads)

    def _stmts(self, body, control):
        for s in body:
            if isinstance(s, A.DataDecl):
                self.data.add(s.name)
            elif isinstance(s, A.ParamDecl):
                self.random.add(s.name)
            elif isinstance(s, A.VarDecl):
                if s.dist is not None:
                    self.random.add(s.name)
                elif s.value is not None:
                    self._define(s.name, self._names(s.value) | control)
            elif isinstance(s, A.Sample):
                self.sampled.add(s.target.name)
            elif isinstance(s, A.Assign):
                idx = set().union(*(self._names(i) for i in s.target.indices)) if s.target.indices \
                    else set()
                self._define(s.target.name, self._names(s.value) | idx | control)
            elif isinstance(s, A.For):
                bounds = self._names(s.lo) | self._names(s.hi)
                self._define(s.var, bounds | control)
                self._stmts(s.body, control | bounds | {s.var})
            elif isinstance(s, A.If):
                inner = control | self._names(s.cond)
                self._stmts(s.then, inner)
                self._stmts(s.orelse, inner)
            elif isinstance(s, A.Generated):
                self._stmts(s.body, control)

    def __call__(self, name) -> bool:
        return self.random_root(name) is None

    def random_root(self, name, seen=None) -> Optional[str]:
        """A random name `name` depends on, or None when it is a function of data alone."""
        if name in self.data:
            return None
        if name in self.random:
            return name
        seen = set() if seen is None else seen
        if name in seen:
            return None  # a recurrence (`mu = mu + …`): decided by its other reads
        seen.add(name)
        for r in sorted(self.reads.get(name, ())):
            found = self.random_root(r, seen)
            if found is not None:
                return found
        return None


def _dims(n: int) -> str:
    return f"{n} dimension" + ("" if n == 1 else "s")


def _args(n: int) -> str:
    return f"{n} argument" + ("" if n == 1 else "s")


def _suffix(dist: str) -> str:
    spec = DISTRIBUTIONS.get(dist)
    return "lpmf" if spec is not None and spec.discrete else "lpdf"


def _indices(n: int) -> str:
    return "1 index is" if n == 1 else f"{n} indices are"


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


def _is_loop_var(scope: Scope, name: str) -> bool:
    s = scope
    while s is not None:
        if name in s.names:
            return name in getattr(s, "loop_vars", ())
        s = s.parent
    return False


def _describe(e: A.Expr) -> str:
    return f'"{e.id}"' if isinstance(e, A.Name) else "this expression"


def check(program: A.Program) -> CheckedProgram:
    with recursion_headroom():  # the checks recurse a few frames per level of nesting
        return Checker(program).run()


def _takes_bounds(base: str) -> bool:
    """Constrained types whose elements may also be bounded: `ordered<lower=a, upper=b>[k]`
    (increasing values in (a, b), e.g. change points; the mhg pass)."""
    return base == "ordered"
