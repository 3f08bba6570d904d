"""One generic visitor for every tree of the language: the AST and the IR.

Both are small frozen dataclasses whose fields hold child nodes, tuples of child nodes, or
plain data. A field is a child slot unless it is a span (`span`, `*_span`) or its metadata
says `leaf=True` (e.g. an IR loop's plan). Checker rules, the IR builder and the analyses walk
and rewrite trees with these three functions instead of one hand-written recursion each.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

from .span import Span


def _child_fields(node):
    for f in dataclasses.fields(node):
        if f.name == "span" or f.name.endswith("_span") or f.metadata.get("leaf"):
            continue
        yield f


def _is_node(x) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, (type, Span))


def children(node) -> Iterator[Any]:
    """The direct child nodes of `node`, in field order."""
    if not _is_node(node):
        return
    for f in _child_fields(node):
        v = getattr(node, f.name)
        if _is_node(v):
            yield v
        elif isinstance(v, tuple):
            for x in v:
                if _is_node(x):
                    yield x
                elif isinstance(x, tuple):  # tuples of tuples (type dims)
                    yield from (y for y in x if _is_node(y))


def walk(node, prune: Callable[[Any], bool] = None) -> Iterator[Any]:
    """`node` and every node below it, parents first. Below a node for which `prune` is true
    the walk does not descend (the node itself is still yielded)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if prune is not None and prune(n):
            continue
        stack.extend(reversed(list(children(n))))


def transform(node, fn: Callable[[Any], Any]):
    """Rebuild the tree bottom-up: every child is transformed first, then `fn` is applied to the
    node rebuilt with its new children. `fn` returns the node itself to keep it."""
    if not _is_node(node):
        return node
    changes = {}
    for f in _child_fields(node):
        v = getattr(node, f.name)
        if _is_node(v):
            nv = transform(v, fn)
        elif isinstance(v, tuple):
            nv = tuple(transform(x, fn) if _is_node(x) else
                       (tuple(transform(y, fn) for y in x) if isinstance(x, tuple) else x)
                       for x in v)
        else:
            continue
        if not _same(nv, v):
            changes[f.name] = nv
    if changes:
        node = dataclasses.replace(node, **changes)
    return fn(node)


def _same(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b
