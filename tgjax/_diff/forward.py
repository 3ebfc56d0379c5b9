"""Forward accumulation: a derivative contracted with a direction, in the shape of ``jax.jvp``.

``directional(t, x, direction, ports, extra)`` has the value of
``derivative(t, x, n) @ direction`` contracted over the new edges ``n``, but
is built the way forward-mode differentiation computes it: every node of ``t``
that depends on ``x`` gets one tangent, an expression with the node's edges
plus the direction's ``extra`` edges, from its children's tangents (linearity
over sums, the product rule over networks, an elementwise partial or a
function's differential). So ``H v`` of a Hessian ``H = d/dx (d f/dx)`` is the
tangent of the gradient, what ``jax.jvp(jax.grad(f))`` computes, and a
Jacobian contracted with a direction is never formed.
"""

from __future__ import annotations

import functools

from .._ir.nodes import AlongEdge, Convolution, Delta, Expr, Function, Product, Sum, Variable, Zero
from .._ir.rename import hadamard, view
from .._ir.walk import parents_first


class Unsupported(Exception):
    """A node with no forward rule here (an open expectation, an unevaluated derivative)."""


def directional(t: Expr, x: Variable, direction: Expr, ports: dict, extra: tuple):
    """The tangent of ``t`` along ``direction``; edges ``t.edges + extra``. None where ``t`` does
    not depend on ``x``.

    ``direction`` carries edge ``ports[e]`` for each declared edge ``e`` of ``x``, and the
    ``extra`` edges, which ride along every tangent (a batch of directions); they must
    be fresh names. Raises ``Unsupported`` for a node it has no rule for.
    """
    ctx = _Context(x.declared, direction, ports, tuple(extra))
    for node in reversed(parents_first([t])):
        ctx.memo[id(node)] = (node, _tangent(node, ctx))
    return ctx.memo[id(t)][1]


class _Context:
    def __init__(self, x: Variable, direction: Expr, ports: dict, extra: tuple):
        self.x, self.direction, self.ports, self.extra = x, direction, ports, extra
        self.memo: dict = {}  # id -> (node, tangent or None); the node keeps its id alive

    def __call__(self, u: Expr):
        return self.memo[id(u)][1]

    def order(self, t: Expr) -> tuple:
        return t.edges + self.extra


def _ordered(t: Expr, order: tuple) -> Expr:
    return t if t.edges == order else Product([t], edges=order)


def _summed(terms: list, order: tuple):
    if not terms:
        return None
    if len(terms) == 1:
        return _ordered(terms[0], order)
    return Sum([_ordered(u, order) for u in terms], [1] * len(terms), edges=order)


@functools.singledispatch
def _tangent(t: Expr, ctx: _Context):
    raise Unsupported(type(t).__name__)


@_tangent.register(Delta)
@_tangent.register(Convolution)
@_tangent.register(Zero)
def _(t, ctx):
    return None


@_tangent.register
def _(t: Variable, ctx):
    if t.key != ctx.x.key:
        return None
    # the direction, its ports renamed onto this occurrence's edges
    return _ordered(view(ctx.direction, {ctx.ports[e]: t.edge_of(e) for e, _ in ctx.x.decl}), ctx.order(t))


@_tangent.register
def _(t: Sum, ctx):
    pairs = [(w, ctx(u)) for w, u in zip(t.weights, t.terms) if ctx(u) is not None]
    if not pairs:
        return None
    order = ctx.order(t)
    return Sum([_ordered(u, order) for _, u in pairs], [w for w, _ in pairs], edges=order)


@_tangent.register
def _(t: Product, ctx):
    # the product rule: one term per factor that moves, the others as they are
    order = ctx.order(t)
    terms = []
    for k, f in enumerate(t.factors):
        moved = ctx(f)
        if moved is not None:
            terms.append(Product(t.factors[:k] + (moved,) + t.factors[k + 1:], edges=order))
    return _summed(terms, order)


@_tangent.register
def _(t: Function, ctx):
    moved = [(u, ctx(u)) for u in t.inputs]
    if all(m is None for _, m in moved):
        return None
    partials = t.spec.partials(*t.inputs)
    terms = [hadamard(partial, m) for (u, m), partial in zip(moved, partials)
             if m is not None and not isinstance(partial, Zero)]
    return _summed(terms, ctx.order(t))


@_tangent.register
def _(t: AlongEdge, ctx):
    moved = ctx(t.input)
    if moved is None:
        return None
    return _ordered(t.spec.differential(t, moved), ctx.order(t))
