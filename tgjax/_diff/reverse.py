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
    variables_in,
)
from .._ir.numbering import Numbering, view_origin
from .._ir.rename import hadamard, is_one, sharing_args, view
from .._ir.util import IdentityCache, fresh_edge
from .._ir.walk import parents_first
from .derivative import derivative, symmetrised


def gradient(t: Expr, x: Variable, new_names: dict) -> Expr:
    """d t / d x by reverse accumulation; edges ``t.edges`` then ``new_names[e]`` per declared edge of ``x``."""
    return gradients(t, [x], [new_names])[0]


def gradients(t: Expr, xs, names: list) -> list:
    """``[gradient(t, x, n) for x, n in zip(xs, names)]``, from one reverse sweep over ``t``.

    The sweep accumulates the cotangent of every node of ``t`` that depends on
    any Variable, once, and is remembered for the last few expressions swept,
    so that gradients asked for one at a time (``[loss.grad(W) for W in
    params]``) share it too: the work is linear in ``t``, not in ``t`` times the
    number of parameters.
    """
    out = []
    for x, new_names in zip(xs, names):
        x = x.declared
        order = t.edges + tuple(new_names[e] for e, _ in x.decl)
        swept = _sweep(t) if t.depends_on(x) else None
        if swept is not None and x.key in swept.averaged:
            # An expectation without a closed form has no cotangent to pass into
            # its average: differentiate it by the forward rule (Price's theorem).
            out.append(derivative(t, x, new_names))
            continue
        if swept is None or x.key not in swept.reached:
            # t does not depend on x, or every path went through a zero partial (a step, a sign)
            shape = {**t.shape, **{new_names[e]: s for e, s in x.decl}}
            out.append(Zero._make({e: shape[e] for e in order}))
            continue
        node, g = swept.reached[x.key]
        # Every occurrence of x is one class, so g is the whole derivative.
        back = {node.edge_of(e): new_names[e] for e, _ in x.decl}
        back.update({o: e for e, o in swept.out.items()})
        result = view(g, back)
        result = result if result.edges == order else Product([result], edges=order)
        out.append(symmetrised(result, x, new_names))
    return out


class _Swept:
    """One reverse sweep: ``reached``: variable key -> (its class's node, its cotangent);
    ``out``: ``t``'s edge -> the fresh name it rides under; ``averaged``: the keys of
    variables an expectation depends on (differentiated by the forward rule instead)."""

    __slots__ = ("reached", "out", "averaged")


# The last few sweeps, by expression: gradients asked for one at a time share one.
_SWEEPS = IdentityCache(8)


def _sweep(t: Expr) -> _Swept:
    return _SWEEPS.get(t, lambda: _swept(t))


def _swept(t: Expr) -> _Swept:
    swept = _Swept()
    swept.averaged = {v.key for node in parents_first([t], children=sharing_args) if isinstance(node, Expectation)
                      for v in node.variables()}
    keys = {v.key for v in variables_in([t])} - swept.averaged
    # t's own edges ride along every cotangent under fresh names.
    swept.out = {e: fresh_edge() for e in t.edges}
    seed = Product([Delta._make(t._shape[e], (e, swept.out[e])) for e in t.edges], edges=t.edges + tuple(swept.out.values()))
    classes = _Classes(keys)
    top, relabel = classes.representative(t)  # t itself, unless t is a view
    pending = {id(top): [view(seed, relabel)]}
    swept.reached = {}
    for node in classes.parents_first(t):
        parts = pending.pop(id(node), None)
        if not parts:  # reached only through zero partials (a step, a sign)
            continue
        g = _accumulate(parts)
        if isinstance(node, Variable):
            swept.reached[node.key] = (node, g)
            continue
        for child, contribution in _pullback(node, g, classes):
            representative, relabel = classes.representative(child)
            pending.setdefault(id(representative), []).append(view(contribution, relabel))
    return swept


def _accumulate(parts: list) -> Expr:
    if len(parts) == 1:
        return parts[0]
    return Sum(parts, [1] * len(parts), edges=parts[0].edges)


class _Classes:
    """Nodes that compute the same array up to free-edge names (a node and its
    renamed copy: ``a * b`` renames both operands) share one cotangent, so that
    the work below them is done once, as backpropagation does it."""

    def __init__(self, keys: set):
        self.keys = keys  # the variables differentiated with respect to
        self.depending: dict = {}  # id -> (node, whether it depends on one of them)
        self.numbering = Numbering()
        self.first: dict = {}  # value number -> the first node seen with it

    def representative(self, t: Expr):
        """The node standing for ``t``'s class, and the map of ``t``'s edges onto its edges."""
        number, ports = self.numbering(t)
        node = t
        while (seen := view_origin(node)) is not None:
            node = seen[0]  # a view is in its node's class, and never stands for it
        first = self.first.setdefault(number, node)
        if first is t:
            return t, {}
        return first, dict(zip(ports, self.numbering(first)[1]))

    def parents_first(self, t: Expr) -> list:
        """One node per class that depends on a variable swept for, every class before the classes below it."""
        def children(node):
            return [self.representative(c)[0] for c in node.args if self.depends(c)]

        return parents_first([self.representative(t)[0]], children=children)


    def depends(self, t: Expr) -> bool:
        """Whether ``t`` depends on a variable swept for, read off its children's answers
        (constant time a node; a node's list of variables grows with a wide sum's terms)."""
        known = self.depending.get(id(t))
        if known is None:
            pending = parents_first([t], follow=lambda u: id(u) not in self.depending, children=sharing_args)
            for node in reversed(pending):
                if id(node) in self.depending:
                    continue
                if isinstance(node, Variable):
                    answer = node.key in self.keys
                elif isinstance(node, (Delta, Zero, Convolution)):
                    answer = False
                else:
                    answer = any(self.depending[id(a)][1] for a in sharing_args(node))
                # the node is kept with its answer, so that its id is not reused
                self.depending[id(node)] = (node, answer)
            known = self.depending[id(t)]
        return known[1]


# -- pullbacks: the cotangent of each child from the cotangent g of its parent -------


@functools.singledispatch
def _pullback(t: Expr, g: Expr, classes: _Classes):
    raise NotImplementedError(f"gradient: no reverse rule for node type {type(t).__name__}")


@_pullback.register
def _(t: Sum, g, classes):
    for w, u in zip(t.weights, t.terms):
        if classes.depends(u):
            yield u, (g if w == 1 else Sum([g], [w], edges=g.edges))


@_pullback.register
def _(t: Product, g, classes):
    # Contract the cotangent with every other factor: the edges left free are
    # exactly the factor's own (its free edges in t, and those it shares
    # with the others) plus the output edges g carries.
    for k, f in enumerate(t.factors):
        if not classes.depends(f):
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
def _(t: Function, g, classes):
    partials = t.spec.partials(*t.inputs)
    for u, partial in zip(t.inputs, partials):
        if classes.depends(u) and not isinstance(partial, Zero):
            yield u, hadamard(g, partial)


@_pullback.register
def _(t: Derivative, g, classes):
    raise AssertionError("internal error: evaluate Derivative nodes before reverse accumulation (simplify does)")


@_pullback.register
def _(t: AlongEdge, g, classes):
    yield t.input, t.spec.pullback(t, g)
