"""ModelGraph → Graphviz DOT in plate notation."""
from __future__ import annotations

import shutil
import subprocess
from typing import Dict, List, Optional

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


def to_dot(graph, name: str = "model") -> str:
    """The DOT text of a `ModelGraph`."""
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


class GraphView:
    """DOT text that draws itself in Jupyter: SVG through Graphviz's `dot` when it is installed,
    the DOT text otherwise."""

    def __init__(self, dot: str):
        self.dot = dot

    def svg(self, timeout: float = 30.0) -> Optional[str]:
        """The SVG, or None without a working `dot`."""
        exe = shutil.which("dot")
        if exe is None:
            return None
        try:
            done = subprocess.run([exe, "-Tsvg"], input=self.dot, capture_output=True, text=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 and "<svg" in done.stdout else None

    def _repr_svg_(self) -> Optional[str]:
        return self.svg()  # None: Jupyter shows the text form instead

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """For objects that delegate their display here (ModelGraph): SVG, else the DOT text."""
        svg = self.svg()
        return {"image/svg+xml": svg} if svg is not None else {"text/plain": self.dot}

    def __repr__(self) -> str:
        return self.dot

    __str__ = __repr__
