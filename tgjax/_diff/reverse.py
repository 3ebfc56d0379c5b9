"""Reverse accumulation: derivatives in the shape of backpropagation.

``gradient(t, x, new_names)`` has the value of ``derivative(t, x, new_names)``
but is built the way backpropagation computes it. Every node of ``t`` that
depends on ``x`` gets one cotangent: the derivative of ``t`` with respect to
that node, an expression with the node's edges plus ``t``'s own edges (under
fresh names, so that they cannot meet the node's). Cotangents are
accumulated over a node's consumers and contracted into each local Jacobian
first, so no intermediate ever carries ``x``'s edges and the node's together
(the forward rules of ``derivative.py`` build exactly those: a softmax
Jacobian ``diag(p) - p p^T`` as a dense tensor, a chain rule through an
elementwise function as a dense diagonal).

The forward nodes are never copied: where a rule needs one of them under other
edge names it uses a *view*, a product of the node with identity Deltas,
which lowering turns into a relabelling of the same array. So the result is a
DAG that shares the forward pass, and its size grows linearly with ``t``.

For a scalar ``t`` the seed is the scalar 1 and every cotangent has the size
of its node, as in backpropagation; for a tensor ``t`` the seed is the
identity on ``t``'s edges (a Jacobian, as ``jax.jacrev`` computes it).
"""

from __future__ import annotations

import functools

from .._ir.nodes import (
    AlongEdge,
    Convolution,
    Delta,
    Derivative,
    Expectation,
    Expr,
    Function,
    Product,
    Sum,
    Variable,
    Zero,
)
from .._ir.numbering import Numbering
from .._ir.rename import hadamard, is_one, view
from .._ir.util import fresh_edge
from .._ir.walk import parents_first
from .derivative import derivative, symmetrised


def gradient(t: Expr, x: Variable, new_names: dict) -> Expr:
    """d t / d x by reverse accumulation; edges ``t.edges`` then ``new_names[e]`` per declared edge of ``x``."""
    x = x.declared
    order = t.edges + tuple(new_names[e] for e, _ in x.decl)
    shape = {**t.shape, **{new_names[e]: s for e, s in x.decl}}
    if not t.depends_on(x):
        return Zero._make({e: shape[e] for e in order})
    if any(isinstance(node, Expectation) and node.depends_on(x) for node in parents_first([t])):
        # An expectation without a closed form has no cotangent to pass into
        # its average: differentiate it by the forward rule (Price's theorem).
        return derivative(t, x, new_names)
    # t's own edges ride along every cotangent under fresh names.
    out = {e: fresh_edge() for e in t.edges}
    seed = Product([Delta._make(t._shape[e], (e, out[e])) for e in t.edges], edges=t.edges + tuple(out.values()))
    pending = {id(t): [seed]}
    classes = _Classes(x)
    for node in classes.parents_first(t):
        parts = pending.pop(id(node), None)
        if not parts:  # reached only through zero partials (a step, a sign)
            continue
        g = _accumulate(parts)
        if isinstance(node, Variable):
            # Every occurrence of x is one class, so this is the whole derivative.
            back = {node.edge_of(e): new_names[e] for e, _ in x.decl}
            back.update({o: e for e, o in out.items()})
            result = view(g, back)
            result = result if result.edges == order else Product([result], edges=order)
            return symmetrised(result, x, new_names)
        for child, contribution in _pullback(node, g, x):
            representative, relabel = classes.representative(child)
            pending.setdefault(id(representative), []).append(view(contribution, relabel))
    # every path went through a zero partial (a step, a sign)
    return Zero._make({e: shape[e] for e in order})


def _accumulate(parts: list) -> Expr:
    if len(parts) == 1:
        return parts[0]
    return Sum(parts, [1] * len(parts), edges=parts[0].edges)


class _Classes:
    """Nodes that compute the same array up to free-edge names (a node and its
    renamed copy: ``a * b`` renames both operands) share one cotangent, so that
    the work below them is done once, as backpropagation does it."""

    def __init__(self, x: Variable):
        self.x = x
        self.numbering = Numbering()
        self.first: dict = {}  # value number -> the first node seen with it

    def representative(self, t: Expr):
        """The node standing for ``t``'s class, and the map of ``t``'s edges onto its edges."""
        number, ports = self.numbering(t)
        first = self.first.setdefault(number, t)
        if first is t:
            return t, {}
        return first, dict(zip(ports, self.numbering(first)[1]))

    def parents_first(self, t: Expr) -> list:
        """One node per class that depends on ``x``, every class before the classes below it."""
        def children(node):
            return [self.representative(c)[0] for c in node.args if _depends(c, self.x)]

        return parents_first([self.representative(t)[0]], children=children)


def _depends(t: Expr, x: Variable) -> bool:
    return not isinstance(t, (Delta, Zero, Convolution)) and t.depends_on(x)


# -- pullbacks: the cotangent of each child from the cotangent g of its parent -------


@functools.singledispatch
def _pullback(t: Expr, g: Expr, x: Variable):
    raise NotImplementedError(f"gradient: no reverse rule for node type {type(t).__name__}")


@_pullback.register
def _(t: Sum, g, x):
    for w, u in zip(t.weights, t.terms):
        if _depends(u, x):
            yield u, (g if w == 1 else Sum([g], [w], edges=g.edges))


@_pullback.register
def _(t: Product, g, x):
    # Contract the cotangent with every other factor: the edges left free are
    # exactly the factor's own (its free edges in t, and those it shares
    # with the others) plus the output edges g carries.
    for k, f in enumerate(t.factors):
        if not _depends(f, x):
            continue
        others = t.factors[:k] + t.factors[k + 1:]
        # In the factor's own axis order (then the output edges g carries), as
        # backpropagation lays out a cotangent: lowering then computes it in the
        # layout its consumers read (an elementwise partial, the factor itself).
        carried = tuple(e for e in g.edges if e not in t._shape and e not in f._shape)
        contribution = Product(others + ((g,) if not is_one(g) else ()), edges=f.edges + carried)
        assert set(contribution.edges) == set(f.edges) | (set(g.edges) - set(t.edges)), (
            f"internal error: pullback through a product gave edges {contribution.edges} for a factor with {f.edges}"
        )
        yield f, contribution


@_pullback.register
def _(t: Function, g, x):
    partials = t.spec.partials(*t.inputs)
    for u, partial in zip(t.inputs, partials):
        if _depends(u, x) and not isinstance(partial, Zero):
            yield u, hadamard(g, partial)


@_pullback.register
def _(t: Derivative, g, x):
    raise AssertionError("internal error: evaluate Derivative nodes before reverse accumulation (simplify does)")


@_pullback.register
def _(t: AlongEdge, g, x):
    yield t.input, t.spec.pullback(t, g)
