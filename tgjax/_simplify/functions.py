"""Identities of elementwise functions, applied where they are exact for real inputs.

- f(0) folded when f(0) is known and finite;
- log(exp(u)) = u;
- pow(pow(u, a), b) = pow(u, a b) for integer b; pow(u, 1) = u; pow(u, 0) = 1;
- pow(c u, k) = c^k pow(u, k) for integer k.
"""

from __future__ import annotations

from .._ir.elementwise import exponent, power
from .._ir.nodes import Function, Sum, Zero, ones
from .core import scaled, simplified, simplify_node


@simplify_node.register
def _(t: Function):
    inputs = [simplified(u) for u in t.inputs]
    spec = t.spec
    if all(isinstance(u, Zero) for u in inputs) and spec.at_zero is not None:
        return scaled(ones(t.shape), spec.at_zero) if spec.at_zero != 0 else Zero(t.shape)
    if len(inputs) == 1:
        (u,) = inputs
        if spec.name == "log" and isinstance(u, Function) and u.spec.name == "exp":
            return u.inputs[0]
        k = exponent(spec)
        if k is not None:
            return _power(u, k, t)
    return Function(spec, inputs, edges=t.edges)


def _power(u, k, t):
    if k == 1:
        return u
    if k == 0:
        return simplified(ones(t.shape))
    inner = exponent(u.spec) if isinstance(u, Function) else None
    if inner is not None and k.is_Integer:
        return _power(u.inputs[0], inner * k, t)
    if isinstance(u, Sum) and len(u.terms) == 1 and k.is_Integer:
        (w,), (core,) = u.weights, u.terms
        return scaled(_power(core, k, t), w**k)
    return Function(power(k), [u], edges=t.edges)
