"""Jupyter: the `%%ppl` cell magic and the model graph drawn inline.

    %load_ext ppl

    %%ppl eight
    data J: int
    ...

compiles the cell into a `ppl.Model` named `eight` in the notebook's namespace; an error in the
cell shows the framed message (file:line:col, the line, a caret, a hint) and no traceback.
IPython is imported only when the extension is loaded.
"""
from __future__ import annotations

import sys

from .api import Model
from .ir.dot import GraphView, to_dot
from .syntax.errors import PPLError


def graph_view(graph, name: str = "model") -> GraphView:
    """The model graph (a ModelGraph) in plate notation, ready to display."""
    return GraphView(to_dot(graph, name))


def compile_cell(name: str, source: str, namespace: dict, err=None) -> bool:
    """`%%ppl NAME`: compile `source` into namespace[NAME]; on an error in the program, write the
    framed message to `err` and leave the namespace alone."""
    err = err or sys.stderr
    if not name.isidentifier():
        err.write(f'%%ppl: "{name}" is not a Python name\nhint: write %%ppl NAME, e.g. %%ppl model\n')
        return False
    try:
        namespace[name] = Model(source, f"<{name}>")
    except PPLError as e:
        err.write(e.format() + "\n")
        return False
    return True


def load_ipython_extension(ipython) -> None:
    """`%load_ext ppl`: registers the `%%ppl NAME` cell magic."""
    def ppl(line, cell):
        args = line.split()
        if len(args) != 1:
            sys.stderr.write("%%ppl: give the model a name: %%ppl NAME\n")
            return
        compile_cell(args[0], cell, ipython.user_ns)

    ipython.register_magic_function(ppl, magic_kind="cell", magic_name="ppl")
