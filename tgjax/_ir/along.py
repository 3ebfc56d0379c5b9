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

from collections.abc import Callable

import sympy

from .nodes import (
    AlongEdge,
    Delta,
    Expr,
    Product,
    Sum,
    Zero,
    broadcast_to,
    elementwise_product,
    ones,
    scale,
    summed,
)
from .rename import hadamard, rename, view
from .util import fresh_edge


class AlongFunction:
    """A function applied along ``n_axes`` edges of its input, independently for
    every value of the other edges.

    Args:
        name: the printed name.
        keeps_edge: whether the result keeps the axes (softmax, inverse) or
            consumes them (logsumexp, det).
        n_axes: how many axes it takes (2 for a matrix function), or None for
            one or more (softmax, logsumexp, max and min act jointly on all).
        source: ``source(x, positions)`` -> JAX source applying it to the array
            source ``x`` along the axis positions.
        differential: ``differential(node, du)`` -> the forward derivative of
            ``node`` given the derivative ``du`` of its input (``du`` has the
            input's edges plus the new ones), any edge order.
        pullback: ``pullback(node, g)`` -> the cotangent of the input given the
            cotangent ``g`` of ``node`` (backpropagation's rule), never forming
            the Jacobian.
        identities: named rewrite rules ``rule(node) -> Expr | None`` for a node
            of this function whose input is in normal form.
        latex: its LaTeX with ``{axes}`` and ``{inner}`` (default: the name as an
            operator, subscripted with the axes).
    """

    def __init__(
        self, name: str, keeps_edge: bool, n_axes: int, source: Callable, differential: Callable, pullback: Callable,
        identities=(), latex: str | None = None,
    ):
        self._latex = latex if latex is not None else rf"\operatorname{{{{{name}}}}}_{{{{{{axes}}}}}}\left({{inner}}\right)"
        self.name = name
        self.keeps_edge = keeps_edge
        self.n_axes = n_axes
        self._source = source
        self.differential = differential
        self.pullback = pullback
        self.identities = tuple(identities)
        self.key = (name,)

    def __call__(self, t: Expr, *axes: str) -> AlongEdge:
        assert axes and (self.n_axes is None or len(axes) == self.n_axes), (
            f"internal error: {self.name} takes {self.n_axes or 'one or more'} axes; got {axes}"
        )
        if self.n_axes is None:  # acting on all of them jointly: their order means nothing
            axes = tuple(e for e in t.edges if e in axes)
        return AlongEdge(self, t, axes)

    def source(self, x: str, positions: tuple) -> str:
        return self._source(x, positions)

    def text(self, node: AlongEdge, axes: list, inner: str) -> str:
        return f"{self.name}[{','.join(axes)}]({inner})"

    def latex(self, node: AlongEdge, axes: list, inner: str) -> str:
        """The LaTeX of ``node``: the axes it acts along as a subscript."""
        return self._latex.format(axes=" ".join(axes), inner=inner)

    def __repr__(self):
        return f"<function {self.name} along {self.n_axes or 'one or more'} edge(s)>"


def axis_argument(positions: tuple) -> str:
    """JAX's ``axis=`` argument for the axis positions: an int for one, a tuple for several."""
    return str(positions[0]) if len(positions) == 1 else str(tuple(positions))


def _size_along(t: AlongEdge):
    """The number of entries each result entry is computed from."""
    return sympy.Mul(*(t.input._shape[a] for a in t.axes))


# -- identities (named rewrite rules) -------------------------------------------


def constant_at_zero(t: AlongEdge):
    """softmax(0) = 1/n (uniform) and logsumexp(0) = log(n), n the size of the edge."""
    if not isinstance(t.input, Zero):
        return None
    n = _size_along(t)
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


def constant_along(term: Expr, axes) -> Expr | None:
    """``term`` without ``axes`` when it is the same for every value of them (broadcast along
    them by ones Deltas, as ``z + c`` broadcasts ``c``), else None."""
    factors = term.factors if isinstance(term, Product) else (term,)
    ones_on = {f.edges[0]: k for k, f in enumerate(factors) if isinstance(f, Delta) and len(f.edges) == 1}
    if not all(a in ones_on for a in axes):
        return None
    rest = [f for k, f in enumerate(factors) if k not in {ones_on[a] for a in axes}]
    return Product(rest, edges=tuple(e for e in term.edges if e not in axes))


def _shifts(u: Expr, axes) -> tuple:
    """``u`` split as ``z + c``: the weighted terms that vary along ``axes``, and those that do not
    (each without the axes). A product whose sum factor carries the axes is split through
    that factor: ``q[s,d] (k[t,d] + bk[d] ⊗ 1_t)`` is ``q k + (q bk) ⊗ 1_t``, a key bias
    being a shift of the scores (``_shifts_of_product``)."""
    split = _shifts_of_product(u, axes) if isinstance(u, Product) else None
    if split is not None:
        return split
    terms = zip(u.weights, u.terms) if isinstance(u, Sum) else [(1, u)]
    varying, constant = [], []
    for w, term in terms:
        c = constant_along(term, axes)
        (varying if c is None else constant).append((w, term if c is None else c))
    return varying, constant


def _shifts_of_product(u: Product, axes):
    """``_shifts`` of a product through the one sum factor that holds every axis (a free edge
    of the product is held by one factor, so the others do not vary along it); None when
    there is no such factor or none of its terms is constant along the axes."""
    holders = [f for f in u.factors if isinstance(f, Sum) and all(a in f._shape for a in axes)]
    if len(holders) != 1:
        return None
    (total,) = holders
    others = [f for f in u.factors if f is not total]
    varying, constant = _shifts(total, axes)
    if not constant:
        return None
    kept = tuple(e for e in u.edges if e not in axes)
    return ([(w, Product([*others, term], edges=u.edges)) for w, term in varying],
            [(w, Product([*others, c], edges=kept)) for w, c in constant])


def _rebuilt_sum(pairs, edges) -> Expr:
    if len(pairs) == 1 and pairs[0][0] == 1:
        return pairs[0][1]
    return Sum([t for _, t in pairs], [w for w, _ in pairs], edges=edges)


def softmax_of_shift(t: AlongEdge):
    """softmax(z + c) = softmax(z) when c is constant along the axes; softmax(c) is uniform."""
    varying, constant = _shifts(t.input, t.axes)
    if not constant:
        return None
    if not varying:
        return scale(ones(t.shape), 1 / _size_along(t))
    return AlongEdge(t.spec, _rebuilt_sum(varying, t.input.edges), t.axes, edges=t.edges)


def logsumexp_of_shift(t: AlongEdge):
    """logsumexp(z + c) = logsumexp(z) + c when c is constant along the axes (logsumexp(c) = c + log n)."""
    varying, constant = _shifts(t.input, t.axes)
    if not constant:
        return None
    if varying:
        first = (1, AlongEdge(t.spec, _rebuilt_sum(varying, t.input.edges), t.axes, edges=t.edges))
    else:
        first = (sympy.log(_size_along(t)), ones(t.shape))
    return Sum([first[1], *(c for _, c in constant)], [first[0], *(w for w, _ in constant)], edges=t.edges)


# -- derivatives: forward (differential) and reverse (pullback) ----------------------------


def _softmax_differential(t: AlongEdge, du: Expr) -> Expr:
    """d p_c = p_c du_c - p_c sum_c' p_c' du_c'."""
    p = softmax(t.input, *t.axes)
    first = elementwise_product(p, du, where="chain rule")
    second = elementwise_product(p, summed(first, list(t.axes)), where="chain rule")
    return Sum([first, second], [1, -1], edges=first.edges)


def _softmax_pullback(t: AlongEdge, g: Expr) -> Expr:
    """p = softmax(u): du = p (g - sum_c p g), the Jacobian never formed."""
    inner = summed(hadamard(g, t), list(t.axes))
    centred = Sum([g, broadcast_to(inner, g._shape, order=g.edges)], [1, -1], edges=g.edges)
    return hadamard(centred, t)


def _logsumexp_differential(t: AlongEdge, du: Expr) -> Expr:
    """d lse(u) = sum_c softmax(u)_c du_c."""
    return summed(elementwise_product(softmax(t.input, *t.axes), du, where="chain rule"), list(t.axes))


def _logsumexp_pullback(t: AlongEdge, g: Expr) -> Expr:
    """l = logsumexp(u): du = softmax(u) g, broadcast along the consumed edge.

    Lowering computes this softmax and the forward pass's l from the same
    exponentials (``softmax_logsumexp``), as backpropagation does.
    """
    u = t.input
    return hadamard(broadcast_to(g, {c: u._shape[c] for c in t.axes}), softmax(u, *t.axes))


def _inverse_differential(t: AlongEdge, du: Expr) -> Expr:
    """d inverse(u) = -Y du Y with Y = inverse(u) (as matrices on axes (r, c); other edges batched)."""
    r, c = t.axes
    a, b = fresh_edge(), fresh_edge()
    left = summed(elementwise_product(rename(t, {c: a}), rename(du, {r: a, c: b}), where="chain rule"), [a])
    return -summed(elementwise_product(left, rename(t, {r: b}), where="chain rule"), [b])


def _logdet_differential(t: AlongEdge, du: Expr) -> Expr:
    """d logdet(u) = sum_ab Y[b,a] du[a,b] with Y = inverse(u) on axes (r, c); other edges batched."""
    r, c = t.axes
    a, b = fresh_edge(), fresh_edge()
    y = inverse(t.input, r, c)
    return summed(elementwise_product(rename(y, {r: b, c: a}), rename(du, {r: a, c: b}), where="chain rule"), [a, b])


def _det_differential(t: AlongEdge, du: Expr) -> Expr:
    """d det(u) = det(u) d logdet(u)."""
    return elementwise_product(t, _logdet_differential(t, du), where="chain rule")


def _transposed_inverse(t: AlongEdge) -> Expr:
    """inverse(u) with its two matrix edges swapped, as a view."""
    r, c = t.axes
    y = t if t.spec is inverse else inverse(t.input, r, c)
    return view(y, {r: c, c: r})


def _inverse_pullback(t: AlongEdge, g: Expr) -> Expr:
    """Y = inverse(u) on (r, c): du = -Y^T g Y^T, batched over the other edges."""
    r, c = t.axes
    a, b = fresh_edge(), fresh_edge()
    y_t = _transposed_inverse(t)
    # (Y^T g)[r, b] = sum_a Y^T[r, a] g[a, b]; then (Y^T g Y^T)[r, c] = sum_b (Y^T g)[r, b] Y^T[b, c]
    left = summed(hadamard(view(y_t, {c: a}), view(g, {r: a, c: b})), [a])
    both = summed(hadamard(left, view(y_t, {r: b})), [b])
    return Sum([both], [-1], edges=both.edges)


def _logdet_pullback(t: AlongEdge, g: Expr) -> Expr:
    """l = logdet(u): du = g Y^T."""
    return hadamard(g, _transposed_inverse(t))


def _det_pullback(t: AlongEdge, g: Expr) -> Expr:
    """d = det(u): du = g d Y^T."""
    return hadamard(hadamard(g, t), _transposed_inverse(t))


# -- the built-ins --------------------------------------------------------------

softmax = AlongFunction(
    "softmax", True, None, lambda x, p: f"jax.nn.softmax({x}, axis={axis_argument(p)})",
    _softmax_differential, _softmax_pullback, identities=(constant_at_zero, softmax_of_shift),
)
logsumexp = AlongFunction(
    "logsumexp", False, None, lambda x, p: f"jax.nn.logsumexp({x}, axis={axis_argument(p)})",
    _logsumexp_differential, _logsumexp_pullback, identities=(constant_at_zero, logsumexp_of_shift),
)
inverse = AlongFunction(
    "inverse", True, 2, lambda x, p: f"matrix_inverse({x}, {p[0]}, {p[1]})",
    _inverse_differential, _inverse_pullback, identities=(inverse_of_identity, inverse_of_inverse),
    latex=r"\left({inner}\right)^{{-1}}_{{{axes}}}",
)
det = AlongFunction(
    "det", False, 2, lambda x, p: f"matrix_det({x}, {p[0]}, {p[1]})",
    _det_differential, _det_pullback, identities=(det_of_identity,), latex=r"\det_{{{axes}}}\left({inner}\right)",
)
logdet = AlongFunction(
    "logdet", False, 2, lambda x, p: f"matrix_logdet({x}, {p[0]}, {p[1]})",
    _logdet_differential, _logdet_pullback, identities=(logdet_of_identity,),
    latex=r"\log\det_{{{axes}}}\left({inner}\right)",
)

BUILTINS = (softmax, logsumexp, inverse, det, logdet)
