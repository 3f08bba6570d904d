"""Rewrites are IR → IR: the discrete latents of an HMM become a forward-algorithm factor; the
state-space pattern becomes one node; the rewritten programs keep the model's density."""
from pathlib import Path

import jax
import pytest

import ppl
from ppl.cli import main
from ppl.ir import nodes as N
from ppl.ir.printer import program
from ppl.ir.rewrites import extract_state_space, marginalize
from ppl.ir.statespace import StateSpace
from ppl.lower.model import LoweredModel
from ppl.syntax.visit import walk

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_marginalize_replaces_the_chain_by_a_forward_factor():
    model = ppl.load(EXAMPLES / "hmm.ppl")
    out = marginalize(model.ir)
    assert out.rewrites == ("marginalize",) and model.ir.rewrites == ()
    nodes = [s for s in out.body if isinstance(s, N.Marginal)]
    assert len(nodes) == 1 and nodes[0].name == "z" and nodes[0].kind == "chain"
    left = {x.target.name for s in out.body if not isinstance(s, N.Marginal)
            for x in walk(s) if isinstance(x, N.Draw)}
    assert "z" not in left and "mu" in left
    assert {t.stmt.target.name for t in nodes[0].terms} == {"z", "y"}  # y's terms read z
    text = program(out)
    assert "marginal z: int[N]" in text and "forward algorithm" in text


def test_marginalize_leaves_a_model_it_cannot_rewrite_alone():
    ir = ppl.compile("data N: int\nk ~ poisson(3)\n").ir
    assert marginalize(ir) is ir


def test_extracted_state_space_keeps_the_density():
    model = ppl.load(EXAMPLES / "sv.ppl")
    data = EXAMPLES / "sv.json"
    out = extract_state_space(model.ir)
    node = [s for s in out.body if isinstance(s, StateSpace)]
    assert len(node) == 1 and node[0].form.state_vars == ("x",)
    lw = model.lower(data)
    lw2 = LoweredModel(out, model.bind(data), source_ir=model.ir)
    u = jax.random.normal(jax.random.PRNGKey(0), (lw.dim,))
    assert float(lw2.log_density(u, lw2.data_arrays)) == pytest.approx(
        float(lw.log_density(u, lw.data_arrays)), rel=1e-12)


def test_check_ir_prints_each_rewrite(capsys):
    assert main(["check", str(EXAMPLES / "hmm.ppl"), "--ir"]) == 0
    out = capsys.readouterr().out
    assert "IR as built:" in out and "IR after nuts's rewrites:" in out
    assert "after marginalize" in out and "marginal z" in out

