"""The IR as text (`ppl check --ir`): the program as the passes see it, close to the language,
with what the builder and the rewrites added — roles, loop plans, statement identities,
`marginal` and `state-space` nodes in place of the statements they replaced."""
from __future__ import annotations

from typing import List

from . import nodes as N

_PREC = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5,
         "*": 6, "/": 6, "%": 6, "@": 6, "^": 8}


def expr(e, prec: int = 0) -> str:
    if e is None:
        return ""
    if isinstance(e, N.Const):
        return str(e.value).lower() if e.type == "bool" else repr(e.value)
    if isinstance(e, N.Ref):
        return e.name
    if isinstance(e, N.Binary):
        p = _PREC.get(e.op, 5)
        text = f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
        return f"({text})" if p < prec else text
    if isinstance(e, N.Unary):
        return f"{e.op}{expr(e.operand, 7)}"
    if isinstance(e, N.Cond):
        text = f"{expr(e.cond, 1)} ? {expr(e.then)} : {expr(e.orelse)}"
        return f"({text})" if prec else text
    if isinstance(e, N.Index):
        return f"{expr(e.base, 9)}[{', '.join(expr(i) for i in e.indices)}]"
    if isinstance(e, N.Slice):
        return f"{expr(e.lo)}:{expr(e.hi)}"
    if isinstance(e, N.Transpose):
        return f"{expr(e.operand, 9)}'"
    if isinstance(e, N.Array):
        return "[" + ", ".join(expr(i) for i in e.items) + "]"
    if isinstance(e, (N.Builtin, N.CallUser)):
        return f"{e.name}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, N.LogDensity):
        return f"{e.dist.name}_lpdf({expr(e.value)} | {', '.join(expr(a) for a in e.dist.args)})"
    if isinstance(e, N.Dist):
        return f"{e.name}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, N.OdeSolve):
        tol = [x for x in (e.rtol, e.atol, e.max_steps) if x is not None]
        parts = [e.function] + [expr(x) for x in (e.y0, e.t0, e.ts, *tol, *e.args)]
        return f"ode_{e.method}{'_tol' if tol else ''}({', '.join(parts)})"
    return f"<{type(e).__name__}>"


def vartype(t) -> str:
    if t is None:
        return "?"
    bounds = []
    if t.lower is not None:
        bounds.append(f"lower={expr(t.lower)}")
    if t.upper is not None:
        bounds.append(f"upper={expr(t.upper)}")
    b = f"<{', '.join(bounds)}>" if bounds else ""
    dims = f"[{', '.join(expr(d) for d in t.dims)}]" if t.dims else ""
    return f"{t.base}{b}{dims}"


def _lvalue(lv) -> str:
    return lv.name + (f"[{', '.join(expr(i) for i in lv.indices)}]" if lv.indices else "")


def statements(body, indent: int = 0) -> List[str]:
    pad = "  " * indent
    out: List[str] = []
    for s in body:
        tag = f"  # s{s.sid}"
        if isinstance(s, N.Declare):
            out.append(f"{pad}{s.name}: {vartype(s.type)}{tag}")
        elif isinstance(s, N.Draw):
            out.append(f"{pad}{_lvalue(s.target)} ~ {expr(s.dist)}{tag} {s.role}")
        elif isinstance(s, N.Let):
            t = f": {vartype(s.type)}" if s.type is not None else ""
            out.append(f"{pad}{_lvalue(s.target)}{t} = {expr(s.value)}{tag} {s.role}")
        elif isinstance(s, N.Factor):
            out.append(f"{pad}target += {expr(s.value)}{tag}")
        elif isinstance(s, N.Loop):
            p = s.plan
            plan = f"density: {p.density}, sampling: {p.sample}"
            if p.carried:
                plan += f", carries {', '.join(p.carried)}"
            out.append(f"{pad}for {s.var} in {expr(s.lo)}:{expr(s.hi)} {{{tag} ({plan})")
            out += statements(s.body, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(s, N.Branch):
            out.append(f"{pad}if {expr(s.cond)} {{{tag}")
            out += statements(s.then, indent + 1)
            if s.orelse:
                out.append(f"{pad}}} else {{")
                out += statements(s.orelse, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(s, N.Generated):
            out.append(f"{pad}generated {{{tag}")
            out += statements(s.body, indent + 1)
            out.append(f"{pad}}}")
        elif isinstance(s, N.Marginal):
            how = "forward algorithm" if s.kind == "chain" else "element by element"
            out.append(f"{pad}marginal {s.name}: {vartype(s.declare.type)} {{{tag} (summed out "
                       f"{how}: {s.kind})")
            for t in s.terms:
                where = f"for {t.loop.var} in {expr(t.loop.lo)}:{expr(t.loop.hi)}: " if t.loop else ""
                out += [f"{pad}  {where}{line.strip()}" for line in statements(t.helpers + (t.stmt,))]
            out.append(f"{pad}}}")
        elif isinstance(s, N.Return):
            out.append(f"{pad}return {expr(s.value)}")
        else:
            form = getattr(s, "form", None)
            if form is not None:
                out.append(f"{pad}state-space {', '.join(form.state_vars)} over 1:{expr(form.T)} {{"
                           f"{tag} ({form.describe()})")
                for label, stmts in (("init", form.init), ("transition", form.transition),
                                     ("observe", form.observations)):
                    for st in stmts:
                        rng = "" if st.var is None else f" for {st.var} in {expr(st.lo)}:{expr(st.hi)}"
                        out.append(f"{pad}  {label}{rng}: {statements((st.stmt,))[0].strip()}")
                out.append(f"{pad}}}")
            else:
                out.append(f"{pad}<{type(s).__name__}>{tag}")
    return out


def program(ir: N.ModelIR) -> str:
    lines = [f"# {ir.filename}" + (f" — after {', '.join(ir.rewrites)}" if ir.rewrites else "")]
    for name, f in ir.functions.items():
        params = ", ".join(f"{p.name}: {vartype(p.type)}" if p.type else p.name for p in f.params)
        lines.append(f"def {name}({params}) {{")
        lines += statements(f.body, 1)
        lines.append("}")
    data = [v for v in ir.variables.values() if v.kind == "data"]
    for v in data:
        lines.append(f"data {v.name}: {vartype(v.type)}" + ("  # observed" if v.observed else ""))
    lines += statements(ir.body)
    return "\n".join(lines)
