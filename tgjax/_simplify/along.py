"""Functions along an edge: simplify the input, fold constants.

softmax of a zero input is uniform, 1/n; logsumexp of zero is log(n).
"""

from __future__ import annotations

import sympy

from .._ir.nodes import AlongEdge, Zero, ones
from .core import scaled, simplified, simplify_node


@simplify_node.register
def _(t: AlongEdge):
    u = simplified(t.input)
    if isinstance(u, Zero):
        n = t.input._shape[t.edge]
        value = 1 / n if t.spec.keeps_edge else sympy.log(n)
        return scaled(simplified(ones(t.shape)), value)
    return AlongEdge(t.spec, u, t.edge, edges=t.edges)
