"""ModelGraph → Graphviz DOT in plate notation."""
from __future__ import annotations

from typing import Dict, List

from .graph import ModelGraph
from .printer import expr

_STYLE = {
    "data": 'shape=box, style="filled", fillcolor="#dddddd"',
    "observed": 'shape=ellipse, style="filled", fillcolor="#bbbbbb"',
    "latent": "shape=ellipse",
    "param": "shape=ellipse, peripheries=2",
    "deterministic": 'shape=diamond, style="dashed"',
    "generated": 'shape=ellipse, style="dotted"',
}


def _q(s: str) -> str:
    return '"' + s.replace('"', '\\"') + '"'


def to_dot(graph: ModelGraph, name: str = "model") -> str:
    out: List[str] = [f"digraph {_q(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica"];']
    by_plate: Dict[tuple, List] = {}
    for v in graph.variables():
        by_plate.setdefault(graph.plates_of(v.name), []).append(v)

    def node_line(v, indent):
        kind = "observed" if v.observed else v.kind
        label = v.name
        if v.dists:
            label += f"\\n~ {v.dists[0]}"
        return f"{indent}{_q(v.name)} [label={_q(label)}, {_STYLE.get(kind, '')}];"

    cluster = 0
    for plates, vs in by_plate.items():
        if not plates:
            out.extend(node_line(v, "  ") for v in vs)
            continue
        # nested plates become nested clusters
        indent = "  "
        for p in plates:
            cluster += 1
            label = f"{p.var} in {expr(p.lo)}:{expr(p.hi)}"
            out.append(f"{indent}subgraph cluster_{cluster} {{")
            out.append(f"{indent}  label={_q(label)}; style=rounded;")
            indent += "  "
        out.extend(node_line(v, indent) for v in vs)
        for _ in plates:
            indent = indent[:-2]
            out.append(f"{indent}}}")
    seen = set()
    for s in graph.statements():
        child = s.target
        if child is None:
            continue
        for parent in graph.g.predecessors(s.sid):
            data = graph.g.get_edge_data(parent, s.sid)
            key = (parent, child, data.get("lag", 0))
            if key in seen or parent == child and not data.get("lag"):
                continue
            seen.add(key)
            attrs = f' [label="lag {data["lag"]}", style=dashed]' if data.get("lag") else ""
            out.append(f"  {_q(parent)} -> {_q(child)}{attrs};")
    factors = [s for s in graph.statements() if s.kind == "factor"]
    for i, s in enumerate(factors):
        fid = f"target_{i + 1}"
        out.append(f'  {fid} [label="target +=", shape=box, style="rounded,filled", fillcolor="#ffeecc"];')
        for parent in graph.g.predecessors(s.sid):
            out.append(f"  {_q(parent)} -> {fid};")
    out.append("}")
    return "\n".join(out) + "\n"
