"""Derivatives: evaluate, then simplify the result."""

from __future__ import annotations

from .._diff import derivative
from .._ir.nodes import Derivative
from .core import simplified, simplify_node


@simplify_node.register
def _(t: Derivative):
    return simplified(derivative(simplified(t.expr), t.x, t.new_names))
