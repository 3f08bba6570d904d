"""The IR builder: names resolved, roles given, loops planned, nothing of the AST left."""
from pathlib import Path

import ppl
from ppl.ir import nodes as N
from ppl.syntax import ast as A
from ppl.syntax.visit import walk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SOURCE = """
data N: int
data y: real[N]
def sq(v: real) -> real {
  s = 0.0
  for i in 1:3 { s = s + v }
  return s * v / 3
}
param sigma: real<lower=0>
sigma ~ half_normal(1)
mu ~ normal(0, 1)
x: real[N]
x[1] ~ normal(mu, 1)
for t in 2:N {
  m = 0.5 * x[t-1]
  x[t] ~ normal(m, sigma)
}
y ~ normal(x, 1)
target += -sq(mu)
generated {
  y_rep: real[N]
  for t in 1:N { y_rep[t] ~ normal(x[t], 1) }
}
"""


def ir():
    return ppl.compile(SOURCE, "t.ppl").ir


def test_every_node_is_ir_and_statements_have_identities():
    prog = ir()
    nodes = [x for s in prog.body for x in walk(s)] + [x for f in prog.functions.values()
                                                       for s in f.body for x in walk(s)]
    assert not [x for x in nodes if type(x).__module__ == A.__name__]
    sids = [x.sid for x in nodes if isinstance(x, N.Stmt)]
    assert len(sids) == len(set(sids))


def test_names_and_statements_get_their_roles():
    prog = ir()
    refs = {(x.name, x.role) for s in prog.body for x in walk(s) if isinstance(x, N.Ref)}
    assert {("mu", "latent"), ("sigma", "param"), ("x", "latent"), ("m", "local"),
            ("t", "index"), ("N", "data")} <= refs
    draws = {(x.target.name, x.role) for s in prog.body for x in walk(s) if isinstance(x, N.Draw)}
    assert draws == {("sigma", "prior"), ("mu", "latent"), ("x", "latent"), ("y", "observed"),
                     ("y_rep", "generated")}
    lets = {(x.target.name, x.role) for s in prog.body for x in walk(s) if isinstance(x, N.Let)}
    assert lets == {("m", "local")}
    assert any(isinstance(x, N.CallUser) and x.name == "sq" for s in prog.body for x in walk(s))
    assert isinstance(prog.functions["sq"].body[-1], N.Return)


def test_loops_carry_their_plans():
    prog = ir()
    loops = {x.sid: x for s in prog.body for x in walk(s) if isinstance(x, N.Loop)}
    chain = next(lp for lp in loops.values() if lp.var == "t" and lp.lo.value == 2)
    assert chain.plan.density == "vectorize" and chain.plan.sample == "scan"
    assert chain.plan.carried == ("x",) and chain.plan.lags == (("x", 1),) and chain.plan.drawn == ("x",)
    fn_loop = prog.functions["sq"].body[1]
    assert isinstance(fn_loop, N.Loop) and fn_loop.plan.density == "scan" and fn_loop.plan.carried == ("s",)


def test_variables_record_what_the_program_makes_of_them():
    prog = ppl.compile("""
data K: int
k: int<lower=0, upper=K> ~ poisson(3)
w: real[k + 1] ~ normal(0, 1)
z: int<lower=1, upper=3>[K]
for i in 1:K { z[i] ~ categorical(rep(1.0 / 3, 3)) }
""").ir
    k, w, z = prog.var("k"), prog.var("w"), prog.var("z")
    assert k.discrete and k.finite and not k.stochastic_size
    assert w.size_vars == ("k",) and w.stochastic_size and not w.discrete
    assert z.discrete and z.finite and z.elementwise


def test_graph_queries_read_the_ir():
    g = ppl.compile(SOURCE, "t.ppl").graph
    assert set(g.parents("x")) == {"mu", "sigma", "N"}
    assert {"mu", "sigma", "y"} <= g.markov_blanket("x")
    assert "x" in g.parents("y") and "y" in g.children("x")
    assert any(u == "x" for u, _, d in g.lag_edges())
    order = g.variable_order()
    assert order.index("mu") < order.index("x") < order.index("y")


def test_deeply_nested_expressions_inside_a_process_build():
    """The builder recurses a few frames per level of nesting, as the checker does: a process
    whose drift nests 1,200 unary minuses builds (found by the slow fuzz run: RecursionError)."""
    src = ("data T: real\ndata mu: real\n"
           "x: process<end=T> ~ sde(drift = 2 * (" + "-" * 1200 + "mu - x), diffusion = 1, "
           "init = normal(0, 1))\n")
    ir = ppl.compile(src).ir
    (draw,) = [s for s in ir.body if isinstance(s, N.ProcessDraw)]
    depth, e = 0, draw.dist.args[0].right.left  # 2 * ((-…-mu) - x)
    while isinstance(e, N.Unary):
        depth, e = depth + 1, e.operand
    assert depth == 1200
