"""Walking an expression DAG without recursion.

Expressions share subexpressions (a forward pass and the derivative built
on it), so passes visit nodes by identity, each once; and they are walked
with an explicit stack, so depth is never limited by Python's recursion limit.
"""

from __future__ import annotations

from typing import Callable, Iterable


def parents_first(roots: Iterable, follow: Callable | None = None, children: Callable | None = None) -> list:
    """The nodes reachable from ``roots``, each once, every node before its children.

    ``follow(child)`` says whether to descend into a child (default: always);
    ``children(node)`` lists a node's children (default: its ``args``).
    """
    postorder, seen = [], set()
    stack = [(t, False) for t in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            postorder.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in (node.args if children is None else children(node)):
            if id(child) not in seen and (follow is None or follow(child)):
                stack.append((child, False))
    return postorder[::-1]
