"""The derivative pass: product rule over networks, linearity over sums, chain rule through functions.

``derivative(t, x, new_names)`` returns an expression with edges
``t.edges + (new_names[e] for e in x's declared edges)``. It is not
simplified; ``simplify`` cleans up the Deltas and Zeros it introduces.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import sympy

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
    elementwise_product,
    renamed_origin,
)
from .._ir.rename import freshen_inner, mean_over_renamings, rename
from .._ir.util import fresh_edge


def _zero(t: Expr, x: Variable, new_names: dict) -> Zero:
    return Zero._make({**t.shape, **{new_names[e]: s for e, s in x.decl}})


def _order(t: Expr, x: Variable, new_names: dict):
    return t.edges + tuple(new_names[e] for e, _ in x.decl)


def derivative(t: Expr, x: Variable, new_names: dict) -> Expr:
    """d t / d x, with x's declared edge ``e`` becoming the new free edge ``new_names[e]``;
    for a symmetric ``x``, the symmetrised derivative (``symmetrised``)."""
    if not isinstance(x, Variable):
        raise TypeError(f"grad: can only differentiate with respect to a Variable; got {type(x).__name__}.")
    x = x.declared
    # within an enclosing call (a Derivative node's rule), its memo is shared
    outer = getattr(_calls, "memo", None)
    with _calling({} if outer is None else outer, deferred=False):
        return symmetrised(_unconstrained(t, x, new_names), x, new_names)


_calls = threading.local()


@contextlib.contextmanager
def _calling(memo: dict, deferred: bool):
    """``_calls`` set for one call of ``derivative`` or ``derivative_step``, and restored after."""
    outer = getattr(_calls, "memo", None), getattr(_calls, "deferred", False)
    _calls.memo, _calls.deferred = memo, deferred
    try:
        yield
    finally:
        _calls.memo, _calls.deferred = outer


def derivative_step(t: Expr, x: Variable, new_names: dict) -> Expr:
    """One rule of d t / d x applied to ``t``'s outermost node, the derivatives of its children
    left as ``Derivative`` nodes (a Variable's evaluated: ``x``'s is Deltas, another's zero):
    ``tg.explain`` shows a derivation step by step. Not for a symmetric ``x``, whose
    derivative is symmetrised as a whole."""
    with _calling({}, deferred=True):
        return _derivative(t, x.declared, new_names)


def _unconstrained(t: Expr, x: Variable, new_names: dict) -> Expr:
    """d t / d x as if every entry of x were free (the rules recurse through this).

    A node reached by several paths (a DAG: a layer norm reads its input three
    times, a residual block twice) is differentiated once per call of
    ``derivative``: as a tree, the derivative of n such blocks has 3^n copies.
    Inside ``derivative_step`` a child's derivative stays a ``Derivative`` node.
    """
    if getattr(_calls, "deferred", False) and not isinstance(t, Variable) and t.depends_on(x):
        return Derivative(t, x, new_names)
    key = (id(t), x.key, tuple(new_names.items()))
    entry = _calls.memo.get(key)
    if entry is None:
        renamed = renamed_origin(t)
        if not t.depends_on(x):
            result = _zero(t, x, new_names)
        elif renamed is not None:
            result = _renamed_derivative(*renamed, x, new_names)
        else:
            result = _derivative(t, x, new_names)
        # the node is kept with its result, so that its id is not reused while the memo lives
        entry = _calls.memo[key] = (t, result)
    return entry[1]


def _renamed_derivative(origin: Expr, mapping: dict, x: Variable, new_names: dict) -> Expr:
    """The derivative of ``rename(origin, mapping)`` (a lazily renamed copy) as the renamed
    derivative of ``origin``, so that each origin is differentiated once; through fresh new
    names where the new names are edges of ``origin`` (a scalar's gradient takes x's own names)."""
    if not set(new_names.values()) & set(origin.edges):
        return rename(_unconstrained(origin, x, new_names), mapping)
    key = ("fresh names", x.key, tuple(new_names.items()))
    fresh = _calls.memo.setdefault(key, {e: fresh_edge() for e in new_names})
    back = {fresh[e]: n for e, n in new_names.items()}
    return rename(_unconstrained(origin, x, fresh), {**mapping, **back})


def symmetrised(d: Expr, x: Variable, new_names: dict) -> Expr:
    """The derivative ``d`` with respect to a symmetric ``x`` made symmetric in its new edges:
    the mean over the swaps of x's symmetric edges, ``(G + G^T) / 2`` for a pair; ``d`` itself
    when x has no symmetry (or ``d`` is zero)."""
    if not x.symmetric or isinstance(d, Zero):
        return d
    return mean_over_renamings(d, [{new_names[e]: new_names[f] for e, f in m.items()} for m in x.symmetries()])


@functools.singledispatch
def _derivative(t: Expr, x, new_names) -> Expr:
    raise NotImplementedError(f"derivative: no rule for node type {type(t).__name__}")


@_derivative.register
def _(t: Variable, x, new_names):
    if t.key != x.key:
        return _zero(t, x, new_names)
    # d x[a, b] / d x[a', b'] = delta(a, a') delta(b, b'): one identity per edge.
    deltas = [Delta._make(s, (t.edge_of(e), new_names[e])) for e, s in x.decl]
    return Product(deltas, edges=_order(t, x, new_names))


@_derivative.register(Delta)
@_derivative.register(Convolution)
@_derivative.register(Zero)
def _(t, x, new_names):
    return _zero(t, x, new_names)


@_derivative.register
def _(t: Sum, x, new_names):
    return Sum([_unconstrained(u, x, new_names) for u in t.terms], t.weights, edges=_order(t, x, new_names))


@_derivative.register
def _(t: Product, x, new_names):
    # The new edges must not meet an inner edge of the same name.
    t = freshen_inner(t, set(new_names.values()))
    terms = []
    for k, f in enumerate(t.factors):
        if not f.depends_on(x):
            continue
        factors = list(t.factors)
        factors[k] = _unconstrained(f, x, new_names)
        terms.append(Product(factors, edges=_order(t, x, new_names)))
    if not terms:
        return _zero(t, x, new_names)
    return Sum(terms, [1] * len(terms), edges=_order(t, x, new_names))


@_derivative.register
def _(t: Function, x, new_names):
    partials = t.spec.partials(*t.inputs)
    terms = []
    for u, partial in zip(t.inputs, partials):
        if not u.depends_on(x) or isinstance(partial, Zero):
            continue
        # chain rule: f'(u) multiplied elementwise on u's edges with du/dx
        terms.append(elementwise_product(partial, _unconstrained(u, x, new_names), where="chain rule"))
    if not terms:
        return _zero(t, x, new_names)
    order = _order(t, x, new_names)
    return Sum([_reorder(term, order) for term in terms], [1] * len(terms), edges=order)


def _reorder(t: Expr, order) -> Expr:
    if t.edges == tuple(order):
        return t
    if isinstance(t, Sum):
        return Sum(t.terms, t.weights, edges=order)
    return Product([t], edges=order)


@_derivative.register
def _(t: Derivative, x, new_names):
    inner = derivative(t.expr, t.x, t.new_names)
    return _unconstrained(inner, x, new_names)


@_derivative.register
def _(t: Expectation, x, new_names):
    """d/dθ E_x[f] = E_x[df/dθ] + E_x[grad_x f] · dmu/dθ + 1/2 E_x[grad_x^2 f] : dC/dθ (Price's theorem)."""
    if x.key == t.wrt.key:
        raise ValueError(
            f"grad: this Expectation averages over {t.wrt.name}, so it does not depend on {t.wrt.name}; "
            f"differentiate with respect to its mean or covariance (the Variables given as mu= and covar=) instead."
        )
    order = _order(t, x, new_names)
    wrt, names = t.wrt, t.covar_names
    a = {e: fresh_edge() for e, _ in wrt.decl}
    b = {e: fresh_edge() for e, _ in wrt.decl}
    terms = []
    if t.expr.depends_on(x):
        terms.append(Expectation._make(_unconstrained(t.expr, x, new_names), wrt, t.mu, t.covar, names))
    if t.mu.depends_on(x):
        slope = Expectation._make(_unconstrained(t.expr, wrt, a), wrt, t.mu, t.covar, names)
        terms.append(Product([slope, _unconstrained(rename(t.mu, a), x, new_names)]))
    if t.covar.depends_on(x):
        curvature = _unconstrained(_unconstrained(t.expr, wrt, a), wrt, b)
        covar = rename(t.covar, {**a, **{names[e]: b[e] for e in a}})
        half = Sum([Expectation._make(curvature, wrt, t.mu, t.covar, names)], [sympy.Rational(1, 2)])
        terms.append(Product([half, _unconstrained(covar, x, new_names)]))
    if not terms:
        return _zero(t, x, new_names)
    return Sum([_reorder(term, order) for term in terms], [1] * len(terms), edges=order)


@_derivative.register
def _(t: AlongEdge, x, new_names):
    clash = [a for a in t.axes if a in new_names.values()] if not t.spec.keeps_edge else []
    if clash:
        # consumed axes are inner; keep them apart from the new edges
        fresh = {a: fresh_edge() for a in clash}
        t = AlongEdge(t.spec, rename(t.input, fresh), tuple(fresh.get(a, a) for a in t.axes), edges=t.edges)
    du = _unconstrained(t.input, x, new_names)
    return _reorder(t.spec.differential(t, du), _order(t, x, new_names))
