"""Functions along an edge: simplify the input, fold constants.

softmax of a zero input is uniform, 1/n; logsumexp of zero is log(n).
"""

from __future__ import annotations

import sympy

from .._ir.nodes import AlongEdge, Delta, Zero, ones
from .core import scaled, simplified, simplify_node


@simplify_node.register
def _(t: AlongEdge):
    u = simplified(t.input)
    if isinstance(u, Zero) and t.spec.name in ("softmax", "logsumexp"):
        n = t.input._shape[t.edge]
        value = 1 / n if t.spec.keeps_edge else sympy.log(n)
        return scaled(simplified(ones(t.shape)), value)
    if t.spec.name in ("inverse", "det", "logdet") and _is_identity(u, t.axes):
        # inverse(I) = I, det(I) = 1, log det(I) = 0
        if t.spec.name == "inverse":
            return u
        return scaled(simplified(ones(t.shape)), 1) if t.spec.name == "det" else Zero._make(t.shape)
    if t.spec.name == "inverse" and isinstance(u, AlongEdge) and u.spec.name == "inverse" and u.axes == t.axes:
        return u.input  # inverse(inverse(X)) = X
    return AlongEdge(t.spec, u, t.axes, edges=t.edges)


def _is_identity(u, axes) -> bool:
    return isinstance(u, Delta) and len(u.edges) == 2 and set(u.edges) == set(axes)
