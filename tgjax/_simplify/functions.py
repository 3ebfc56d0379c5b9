"""Functions of tensors: simplify the inputs, then apply the function's own identities.

The identities are named rules carried by each function object
(``tgjax._ir.elementwise`` and ``tgjax._ir.along``): log(exp(u)) = u,
the stable logs, powers of powers, inverse(inverse(X)) = X, .... Here only
the rules every function shares: f(0) folded where the function knows f(0),
and a broadcast moved out of the function.
"""

from __future__ import annotations

from .._ir.along import constant_along
from .._ir.nodes import AlongEdge, Delta, Function, Product, Sum, Zero, ones, scale
from .._ir.rename import rename
from .._ir.util import as_weight
from .core import renamed_normal_form, rewritten, simplified, simplify_node


def fold_at_zero(t: Function):
    """f(0) = its value, where f knows it exactly (exp(0) = 1, tanh(0) = 0, ...)."""
    fn = t.spec
    if fn.at_zero is None or not all(isinstance(u, Zero) for u in t.inputs):
        return None
    value = as_weight(fn.at_zero, fn.name)
    return scale(ones(t.shape), value) if value != 0 else Zero._make(t.shape)


def ones_out_of_function(t: Function):
    """An elementwise function of inputs broadcast along an edge is the function, broadcast:
    ``exp(u ⊗ 1_a) = exp(u) ⊗ 1_a``, so that a broadcast has one normal form wherever it
    was written (``(s ⊗ 1_a)^2`` and ``s^2 ⊗ 1_a``)."""
    for e in t.edges:
        stripped = [_without_ones(u, e) for u in t.inputs]
        if all(u is not None for u in stripped):
            inner = Function(t.spec, stripped, edges=tuple(f for f in t.edges if f != e))
            return Product([inner, Delta._make(t._shape[e], (e,))], edges=t.edges)
    return None


def _without_ones(u, e: str):
    """``u`` without edge ``e`` when it is broadcast along it (each term, for a sum), else None."""
    if isinstance(u, Sum):
        terms = [constant_along(term, (e,)) for term in u.terms]
        if any(term is None for term in terms):
            return None
        return Sum(terms, u.weights, edges=tuple(f for f in u.edges if f != e))
    return constant_along(u, (e,))


# The rules every elementwise function has, tried before its own identities.
SHARED_RULES = (fold_at_zero, ones_out_of_function)


@simplify_node.register
def _(t: Function):
    if t.renamed_from is not None:
        # the normal form of a renamed copy is the renamed normal form: each function is simplified once
        return renamed_normal_form(t)
    node = Function(t.spec, [simplified(u) for u in t.inputs], edges=t.edges)
    return rewritten(node, (*SHARED_RULES, *t.spec.identities))


@simplify_node.register
def _(t: AlongEdge):
    node = AlongEdge(t.spec, simplified(t.input), t.axes, edges=t.edges)
    return rewritten(node, t.spec.identities)
