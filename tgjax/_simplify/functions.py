"""Identities of elementwise functions, applied where they are exact for real inputs.

- f(0) folded when f(0) is known and finite;
- log(exp(u)) = u;
- pow(pow(u, a), b) = pow(u, a b) for integers a and b (sqrt(x)^2 is nan for
  x < 0, not x); pow(u, 1) = u; pow(u, 0) = 1;
- pow(c u, k) = c^k pow(u, k) for integer k;
- log(softmax(v)) = v - logsumexp(v), log(sum_c exp(v)) = logsumexp(v) and
  log(det(X)) = logdet(X), which lower to stable code (logdet through slogdet).
"""

from __future__ import annotations

from .._ir.along import det, logdet, logsumexp, softmax
from .._ir.elementwise import exp, exponent, log, power
from .._ir.util import as_weight
from .._ir.nodes import AlongEdge, Delta, Function, Product, Sum, Zero, broadcast_to, ones
from .core import scaled, simplified, simplify_node, with_order


@simplify_node.register
def _(t: Function):
    inputs = [simplified(u) for u in t.inputs]
    spec = t.spec
    if all(isinstance(u, Zero) for u in inputs) and spec.at_zero is not None:
        value = as_weight(spec.at_zero, spec.name)
        return scaled(simplified(ones(t.shape)), value) if value != 0 else Zero._make(t.shape)
    if len(inputs) == 1:
        (u,) = inputs
        if spec is log and isinstance(u, Function) and u.spec is exp:
            return u.inputs[0]
        if spec is log:
            stable = _stable_log(u, t)
            if stable is not None:
                return stable
        k = exponent(spec)
        if k is not None:
            return _power(u, k, t)
    return Function(spec, inputs, edges=t.edges)


def _stable_log(u, t):
    """The normal form of ``stable_log``, or None."""
    stable = stable_log(u, t.edges)
    return None if stable is None else with_order(simplified(stable), t.edges)


def stable_log(u, edges):
    """log(u) in a stable form, or None: log(softmax(v)) = v - logsumexp(v),
    log(sum_c exp(v)) = logsumexp(v) and log(det(X)) = logdet(X) (through slogdet).

    ``edges``: the order of log(u)'s edges. Applied by the simplifier and to
    the evaluation form that lowering builds, so both lower to stable code.
    """
    if isinstance(u, AlongEdge) and u.spec is det:
        return AlongEdge(logdet, u.input, u.axes, edges=edges)
    if isinstance(u, AlongEdge) and u.spec is softmax:
        v, c = u.input, u.edge
        return Sum([v, broadcast_to(logsumexp(v, c), v._shape)], [1, -1], edges=edges)
    if isinstance(u, Product) and len(u.factors) == 2:
        fn = [f for f in u.factors if isinstance(f, Function) and f.spec is exp]
        ones = [f for f in u.factors if isinstance(f, Delta) and len(f.edges) == 1]
        if len(fn) == 1 and len(ones) == 1 and ones[0].edges[0] in fn[0]._shape and ones[0].edges[0] not in u._shape:
            lse = logsumexp(fn[0].inputs[0], ones[0].edges[0])
            return lse if lse.edges == tuple(edges) else Product([lse], edges=edges)
    return None


def _power(u, k, t):
    if k == 1:
        return u
    if k == 0:
        return simplified(ones(t.shape))
    inner = exponent(u.spec) if isinstance(u, Function) else None
    if inner is not None and k.is_Integer and inner.is_Integer:
        return _power(u.inputs[0], inner * k, t)
    if isinstance(u, Sum) and len(u.terms) == 1 and k.is_Integer:
        (w,), (core,) = u.weights, u.terms
        return scaled(_power(core, k, t), w**k)
    return Function(power(k), [u], edges=t.edges)
