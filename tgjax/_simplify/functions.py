"""Functions of tensors: simplify the inputs, then apply the function's own identities.

The identities are named rules carried by each function object
(``tgjax._ir.elementwise`` and ``tgjax._ir.along``): log(exp(u)) = u,
the stable logs, powers of powers, inverse(inverse(X)) = X, .... Here only
the rule every function shares: f(0) folded where the function knows f(0).
"""

from __future__ import annotations

from .._ir.nodes import AlongEdge, Function, Zero, ones, scale
from .._ir.rename import rename
from .._ir.util import as_weight
from .core import rewritten, simplified, simplify_node


def fold_at_zero(t: Function):
    """f(0) = its value, where f knows it exactly (exp(0) = 1, tanh(0) = 0, ...)."""
    fn = t.spec
    if fn.at_zero is None or not all(isinstance(u, Zero) for u in t.inputs):
        return None
    value = as_weight(fn.at_zero, fn.name)
    return scale(ones(t.shape), value) if value != 0 else Zero._make(t.shape)


@simplify_node.register
def _(t: Function):
    if t.renamed_from is not None:
        # the normal form of a renamed copy is the renamed normal form: each function is simplified once
        origin, mapping = t.renamed_from
        normal = simplified(origin)
        return t if normal is origin else rename(normal, mapping)
    node = Function(t.spec, [simplified(u) for u in t.inputs], edges=t.edges)
    return rewritten(node, (fold_at_zero, *t.spec.identities))


@simplify_node.register
def _(t: AlongEdge):
    node = AlongEdge(t.spec, simplified(t.input), t.axes, edges=t.edges)
    return rewritten(node, t.spec.identities)
