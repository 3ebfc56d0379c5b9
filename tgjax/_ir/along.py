"""Functions applied along some edges, as objects (see ``elementwise.py`` for the design).

Primitive along one edge: ``softmax`` (keeps the edge) and ``logsumexp``
(consumes it); ``log_softmax`` and ``cross_entropy`` are built from them, so
that every derivative stays in these stable forms. Along two edges of equal
size (a matrix, other edges batched): ``inverse`` (keeps them), ``det`` and
``logdet`` (consume them).

The JAX emission is source text: ``matrix_inverse`` and friends are helpers
of the generated programs' runtime (``tgjax._lower.runtime``).
"""

from __future__ import annotations

from typing import Callable

import sympy

from .nodes import AlongEdge, Delta, Expr, Zero, ones, scale


class AlongFunction:
    """A function applied along ``n_axes`` edges of its input, independently for
    every value of the other edges.

    Args:
        name: the printed name.
        keeps_edge: whether the result keeps the axes (softmax, inverse) or
            consumes them (logsumexp, det).
        n_axes: how many axes it takes (1, or 2 for a matrix function).
        source: ``source(x, positions)`` -> JAX source applying it to the array
            source ``x`` along the axis positions.
        identities: named rewrite rules ``rule(node) -> Expr | None`` for a node
            of this function whose input is in normal form.
    """

    def __init__(self, name: str, keeps_edge: bool, n_axes: int, source: Callable, identities=()):
        self.name = name
        self.keeps_edge = keeps_edge
        self.n_axes = n_axes
        self._source = source
        self.identities = tuple(identities)
        self.key = (name,)

    def __call__(self, t: Expr, *axes: str) -> AlongEdge:
        assert len(axes) == self.n_axes, f"internal error: {self.name} takes {self.n_axes} axes; got {axes}"
        return AlongEdge(self, t, axes)

    def source(self, x: str, positions: tuple) -> str:
        return self._source(x, positions)

    def text(self, node: AlongEdge, axes: list, inner: str) -> str:
        return f"{self.name}[{','.join(axes)}]({inner})"

    def __repr__(self):
        return f"<function {self.name} along {self.n_axes} edge(s)>"


# -- identities (named rewrite rules) -------------------------------------------


def constant_at_zero(t: AlongEdge):
    """softmax(0) = 1/n (uniform) and logsumexp(0) = log(n), n the size of the edge."""
    if not isinstance(t.input, Zero):
        return None
    n = t.input._shape[t.edge]
    return scale(ones(t.shape), 1 / n if t.spec.keeps_edge else sympy.log(n))


def _is_identity(u: Expr, axes) -> bool:
    return isinstance(u, Delta) and len(u.edges) == 2 and set(u.edges) == set(axes)


def inverse_of_identity(t: AlongEdge):
    """inverse(I) = I."""
    return t.input if _is_identity(t.input, t.axes) else None


def det_of_identity(t: AlongEdge):
    """det(I) = 1."""
    return ones(t.shape) if _is_identity(t.input, t.axes) else None


def logdet_of_identity(t: AlongEdge):
    """log det(I) = 0."""
    return Zero._make(t.shape) if _is_identity(t.input, t.axes) else None


def inverse_of_inverse(t: AlongEdge):
    """inverse(inverse(X)) = X, over the same axes."""
    u = t.input
    if isinstance(u, AlongEdge) and u.spec is inverse and u.axes == t.axes:
        return u.input
    return None


# -- the built-ins --------------------------------------------------------------

softmax = AlongFunction(
    "softmax", True, 1, lambda x, p: f"jax.nn.softmax({x}, axis={p[0]})", identities=(constant_at_zero,)
)
logsumexp = AlongFunction(
    "logsumexp", False, 1, lambda x, p: f"jax.nn.logsumexp({x}, axis={p[0]})", identities=(constant_at_zero,)
)
inverse = AlongFunction(
    "inverse", True, 2, lambda x, p: f"matrix_inverse({x}, {p[0]}, {p[1]})",
    identities=(inverse_of_identity, inverse_of_inverse),
)
det = AlongFunction("det", False, 2, lambda x, p: f"matrix_det({x}, {p[0]}, {p[1]})", identities=(det_of_identity,))
logdet = AlongFunction(
    "logdet", False, 2, lambda x, p: f"matrix_logdet({x}, {p[0]}, {p[1]})", identities=(logdet_of_identity,)
)

BUILTINS = (softmax, logsumexp, inverse, det, logdet)
