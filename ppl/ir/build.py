"""The IR builder: the checked AST → `ModelIR`, once. Nothing after this module reads the AST.

Names are resolved against the checker's symbol table and the scopes the builder keeps (loop
variables, values local to a loop, branch or function); calls are resolved to builtins, user
functions or densities; statements get their role and identity; loops get their plans.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from ..builtins.distributions import DISTRIBUTIONS, density_function
from ..builtins.ode import ODE_SOLVERS
from ..check.checker import CheckedProgram
from ..check.types import CONSTRAINED_TYPES, Scope
from ..syntax import ast as A
from ..syntax.parser import recursion_headroom
from ..syntax.visit import walk
from . import moves as MV
from . import nodes as N
from .loops import plan as plan_loop

_CORE_RANK = CONSTRAINED_TYPES  # rank of one value of a constrained type


class Builder:
    def __init__(self, checked: CheckedProgram):
        self.ck = checked
        self.variables = checked.variables
        self._sid = 0
        self.in_function = False

    def sid(self) -> int:
        self._sid += 1
        return self._sid

    # ------------------------------------------------------------ entry
    def build(self) -> N.ModelIR:
        functions = {name: self._function(f) for name, f in self.ck.functions.items()}
        top = Scope()
        body = self._block(self.ck.body, top, generated=False)
        variables = {name: self._variable(name) for name in self.variables}
        moves = tuple(self._move(m) for m in self.ck.moves)
        prog = self.ck.program
        return N.ModelIR(variables, functions, body, prog.source, prog.filename, moves=moves)

    # ------------------------------------------------------------ user-written moves
    def _move(self, m) -> MV.Move:
        """A checked move (ppl/check/moves.py) → `ppl.ir.moves.Move`."""
        scope = Scope()
        for name in m.aux:
            scope.names[name] = "aux"
        propose = self._move_block(m.decl.propose, Scope(scope))
        involution = self._move_block(m.decl.involution, Scope(scope))
        aux = tuple(MV.AuxVar(n, d) for n, d in m.aux.items())
        return MV.Move(m.name, m.weight, propose, involution, aux, m.writes, m.span, m.name_span,
                       m.module)

    def _move_block(self, body, scope) -> Tuple[N.Stmt, ...]:
        out = []
        for s in body:
            if isinstance(s, A.Sample):
                out.append(N.Draw(self.sid(), s.span, self._lvalue(s.target, scope),
                                  self._dist(s.dist, scope), "aux"))
            elif isinstance(s, (A.Assign, A.VarDecl)):
                target = s.target if isinstance(s, A.Assign) else A.LValue(s.name, (), s.name_span)
                value = self._move_value(s.value, scope)
                name = target.name
                role = scope.lookup(name) or (self.variables[name].kind if name in self.variables
                                              else "local")
                if role == "local" and not target.indices and scope.lookup(name) is None:
                    scope.names[name] = "local"
                out.append(N.Let(self.sid(), s.span, self._lvalue(target, scope), value, role))
            elif isinstance(s, A.If):
                out.append(N.Branch(self.sid(), s.span, self._expr(s.cond, scope),
                                    self._move_block(s.then, Scope(scope)),
                                    self._move_block(s.orelse, Scope(scope))))
            elif isinstance(s, A.For):
                inner = Scope(scope)
                inner.names[s.var] = "index"
                out.append(N.Loop(self.sid(), s.span, s.var, self._expr(s.lo, scope),
                                  self._expr(s.hi, scope), self._move_block(s.body, inner),
                                  var_span=s.var_span))
        return tuple(out)

    def _move_value(self, e, scope):
        if isinstance(e, A.Call) and e.func in ("insert", "remove") and e.func not in self.ck.functions:
            args = [self._expr(a, scope) for a in e.args]
            return MV.ArrayEdit(e.span, e.func, args[0], args[1], args[2] if len(args) > 2 else None)
        return self._expr(e, scope)

    # ------------------------------------------------------------ variables and types
    def _variable(self, name) -> N.Variable:
        info = self.variables[name]
        dists = tuple(s.dist.func for s in info.defined_by
                      if isinstance(s, (A.Sample, A.VarDecl)) and getattr(s, "dist", None) is not None)
        specs = [DISTRIBUTIONS.get(d) for d in dists]
        discrete = any(s is not None and s.discrete for s in specs) or (
            info.type is not None and info.type.base in ("int", "bool") and info.kind == "latent")
        finite = bool(specs) and all(s is not None and s.finite for s in specs)
        if info.type is not None and info.type.bound("lower") is not None and \
                info.type.bound("upper") is not None and discrete:
            finite = True
        vtype = self._type(info.type, Scope()) if info.type is not None else None
        size_vars = ()
        if vtype is not None:
            size_vars = tuple(sorted({x.name for d in vtype.dims for x in walk(d)
                                      if isinstance(x, N.Ref) and x.role == "latent"}))
        return N.Variable(name, info.kind, vtype, info.ty.base, info.ty.rank, info.span,
                          observed=info.observed, elementwise=info.elementwise, discrete=discrete,
                          finite=finite, dists=dists, size_vars=size_vars,
                          data_only=info.data_only)

    def _type(self, t: Optional[A.TypeExpr], scope) -> Optional[N.VarType]:
        if t is None:
            return None
        groups = [tuple(self._expr(d, scope) for d in g) for g in t.dims]
        core = _CORE_RANK.get(t.base, 0)
        if core == 1:
            dims = tuple(x for g in groups[1:] for x in g) + (groups[0][0],)
        elif core == 2:
            k = groups[0][0]
            dims = tuple(x for g in groups[1:] for x in g) + (k, groups[0][1] if len(groups[0]) > 1 else k)
        else:
            dims = tuple(x for g in groups for x in g)
        lo, hi = t.bound("lower"), t.bound("upper")
        return N.VarType(t.base, dims, None if lo is None else self._expr(lo, scope),
                         None if hi is None else self._expr(hi, scope), core, t.span)

    # ------------------------------------------------------------ functions
    def _function(self, f: A.FunDef) -> N.Function:
        scope = Scope()
        params = []
        for p in f.params:
            scope.names[p.name] = "local"
            params.append(N.Param(p.name, self._type(p.type, scope), p.span))
        self.in_function = True
        try:
            body = self._block(f.body, scope, generated=False)
        finally:
            self.in_function = False
        return N.Function(f.name, tuple(params), self._type(f.returns, scope), body, f.span,
                          f.name_span)

    # ------------------------------------------------------------ statements
    def _block(self, body, scope, generated) -> Tuple[N.Stmt, ...]:
        out: List[N.Stmt] = []
        for s in body:
            n = self._stmt(s, scope, generated)
            if n is not None:
                out.append(n)
        return tuple(out)

    def _role_of_target(self, name, scope) -> str:
        if scope.lookup(name) is not None or name not in self.variables or self.in_function:
            return "local"
        return self.variables[name].kind

    def _lvalue(self, lv: A.LValue, scope) -> N.LValue:
        return N.LValue(lv.name, tuple(self._expr(i, scope) for i in lv.indices), lv.span)

    def _stmt(self, s, scope: Scope, generated: bool) -> Optional[N.Stmt]:
        if isinstance(s, (A.DataDecl, A.Import, A.FunDef)):
            return None
        if isinstance(s, A.ParamDecl):
            return N.Declare(self.sid(), s.span, s.name, self._type(s.type, scope), s.name_span)
        if isinstance(s, A.VarDecl) and s.type is not None and s.type.base == "process":
            return self._process_draw(s, scope)
        if isinstance(s, A.VarDecl):
            role = self._role_of_target(s.name, scope)
            if s.dist is not None:
                target = N.LValue(s.name, (), s.name_span)
                return N.Draw(self.sid(), s.span, target, self._dist(s.dist, scope),
                              self._draw_role(s.name))
            vtype = self._type(s.type, scope)
            if s.value is not None:
                value = self._expr(s.value, scope)
                if role == "local":
                    scope.names[s.name] = "local"
                return N.Let(self.sid(), s.span, N.LValue(s.name, (), s.name_span), value, role, vtype)
            if role == "local":
                scope.names[s.name] = "local"
            return N.Declare(self.sid(), s.span, s.name, vtype, s.name_span)
        if isinstance(s, A.Sample):
            return N.Draw(self.sid(), s.span, self._lvalue(s.target, scope),
                          self._dist(s.dist, scope), self._draw_role(s.target.name))
        if isinstance(s, A.Assign):
            role = self._role_of_target(s.target.name, scope)
            value = self._expr(s.value, scope)
            target = self._lvalue(s.target, scope)
            if role == "local" and not s.target.indices and scope.lookup(s.target.name) is None:
                scope.names[s.target.name] = "local"
            return N.Let(self.sid(), s.span, target, value, role)
        if isinstance(s, A.TargetIncrement):
            return N.Factor(self.sid(), s.span, self._expr(s.value, scope))
        if isinstance(s, A.For):
            lo, hi = self._expr(s.lo, scope), self._expr(s.hi, scope)
            outer = (set(self.variables) if not self.in_function else set()) | scope.all_names()
            inner = Scope(scope)
            inner.names[s.var] = "index"
            body = self._block(s.body, inner, generated)
            return N.Loop(self.sid(), s.span, s.var, lo, hi, body, plan_loop(s.var, body, outer),
                          s.var_span)
        if isinstance(s, A.If):
            cond = self._expr(s.cond, scope)
            then = self._block(s.then, Scope(scope), generated)
            orelse = self._block(s.orelse, Scope(scope), generated)
            return N.Branch(self.sid(), s.span, cond, then, orelse)
        if isinstance(s, A.Generated):
            return N.Generated(self.sid(), s.span, self._block(s.body, Scope(scope), True))
        if isinstance(s, A.Return):
            return N.Return(self.sid(), s.span, self._expr(s.value, scope))
        raise TypeError(f"the IR builder does not know {type(s).__name__}")  # pragma: no cover

    def _draw_role(self, name) -> str:
        kind = self.variables[name].kind
        if kind == "deterministic" and self.variables[name].observed:
            return "observed"  # transformed data (the checker allows only a function of data)
        return {"data": "observed", "param": "prior", "generated": "generated"}.get(kind, "latent")

    def _dist(self, call: A.Call, scope) -> N.Dist:
        args = tuple(self._expr(a, scope) for a in call.args)
        user = call.func not in DISTRIBUTIONS
        return N.Dist(call.span, call.func, args, user)

    # ------------------------------------------------------------ expressions
    def _expr(self, e, scope):
        if isinstance(e, A.Num):
            return N.Const(e.span, e.value, "int" if e.is_int else "real")
        if isinstance(e, A.Bool):
            return N.Const(e.span, e.value, "bool")
        if isinstance(e, A.Name):
            role = scope.lookup(e.id)
            if role is None:
                role = self.variables[e.id].kind if (e.id in self.variables and not self.in_function) \
                    else "local"
            return N.Ref(e.span, e.id, role)
        if isinstance(e, A.BinOp):
            return N.Binary(e.span, e.op, self._expr(e.left, scope), self._expr(e.right, scope))
        if isinstance(e, A.UnOp):
            return N.Unary(e.span, e.op, self._expr(e.operand, scope))
        if isinstance(e, A.Ternary):
            return N.Cond(e.span, self._expr(e.cond, scope), self._expr(e.then, scope),
                          self._expr(e.orelse, scope))
        if isinstance(e, A.Transpose):
            return N.Transpose(e.span, self._expr(e.operand, scope))
        if isinstance(e, A.ArrayLit):
            return N.Array(e.span, tuple(self._expr(i, scope) for i in e.items))
        if isinstance(e, A.Slice):
            return N.Slice(e.span, None if e.lo is None else self._expr(e.lo, scope),
                           None if e.hi is None else self._expr(e.hi, scope))
        if isinstance(e, A.Index):
            return N.Index(e.span, self._expr(e.base, scope),
                           tuple(self._expr(i, scope) for i in e.indices))
        if isinstance(e, A.Call):
            return self._call(e, scope)
        raise TypeError(f"the IR builder does not know {type(e).__name__}")  # pragma: no cover

    def _call(self, e: A.Call, scope):
        if e.func in self.variables and self.variables[e.func].kind == "process":
            return N.PathAt(e.span, N.Ref(e.func_span or e.span, e.func, "process"),
                            self._expr(e.args[0], scope))  # x(t): the path at a time
        if e.func in ODE_SOLVERS and e.func not in self.ck.functions:
            return self._ode(e, scope)
        args = tuple(self._expr(a, scope) for a in e.args)
        spec = density_function(e.func)
        if spec is not None and e.func not in self.ck.functions:
            dist = N.Dist(e.span, spec.name, args, False)
            return N.LogDensity(e.span, dist, self._expr(e.given, scope))
        if e.func in self.ck.functions:
            given = (self._expr(e.given, scope),) if e.given is not None else ()
            return N.CallUser(e.span, e.func, given + args)
        if e.given is not None:  # a cumulative distribution function: `normal_lcdf(y | …)`
            args = (self._expr(e.given, scope),) + args
        return N.Builtin(e.span, e.func, args)

    def _ode(self, e: A.Call, scope):
        spec = ODE_SOLVERS[e.func]
        rest = [self._expr(a, scope) for a in e.args[1:]]
        y0, t0, ts = rest[:3]
        tol, args = (rest[3:6], rest[6:]) if spec.tol else ((None, None, None), rest[3:])
        return N.OdeSolve(e.span, spec.method, e.args[0].id, y0, t0, ts, *tol, tuple(args))

    def _process_draw(self, s: A.VarDecl, scope) -> N.ProcessDraw:
        """`x: process<start=0, end=T>[d] ~ sde(drift=…, diffusion=…, init=…, noise=fbm(H, …))`
        → ProcessDraw(x, SDE((drift, diffusion, init, Noise), start, end, dim))."""
        call, t = s.dist, s.type
        inner = Scope(scope)  # the state and the time, read inside sde(…) only
        inner.names[s.name] = "local"
        inner.names["time"] = "local"
        drift = self._expr(call.arg("drift"), inner)
        diffusion = self._expr(call.arg("diffusion"), inner)
        init = call.arg("init")
        init = self._dist(init, scope) if isinstance(init, A.Call) and \
            init.func in DISTRIBUTIONS else self._expr(init, scope)
        noise = self._noise(call.arg("noise"), scope, call.span)
        start = t.bound("start")
        start = N.Const(t.span, 0.0, "real") if start is None else self._expr(start, scope)
        end = self._expr(t.bound("end"), scope)
        dim = self._expr(t.dims[0][0], scope) if t.dims else None
        sde = N.SDE(call.span, "sde", (drift, diffusion, init, noise), False, start, end, dim)
        return N.ProcessDraw(self.sid(), s.span, N.LValue(s.name, (), s.name_span), sde, "latent")

    def _noise(self, e, scope, span) -> N.Noise:
        if e is None or e.func == "brownian":
            return N.Noise(span if e is None else e.span, "brownian")
        hurst = e.args[0] if e.args else e.arg("H")
        settings = tuple((a.name, self._expr(a.value, scope)) for a in e.named if a.name != "H")
        return N.Noise(e.span, "fbm", self._expr(hurst, scope), settings)


def build(checked: CheckedProgram) -> N.ModelIR:
    """The IR of a checked program."""
    with recursion_headroom():  # the builder recurses a few frames per level of nesting
        return Builder(checked).build()
