"""``expr.expand()``: every product distributed over its sums, as a sum of monomials.

``simplify`` keeps a product with a sum factor as it is (``X (a + b)``),
which is smaller and shows structure, but then equal expressions that differ
by distributivity have different normal forms. ``expand`` first simplifies
(so derivatives and expectations are evaluated), then multiplies every
product out over the sums among its factors, and every positive integer
power of a sum out as a product of copies, also inside the arguments of
functions, and simplifies the resulting sum of monomials: isomorphic
monomials merge, so ``X (a + b)`` and ``X a + X b`` expand to one form.
"""

from __future__ import annotations

import functools
import itertools

import sympy

from .._ir.deep import deep
from .._ir.elementwise import Power
from .._ir.nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero,
    elementwise_product, rebuilt, register_pass,
)
from .core import simplified, with_order
from .finish import remember_origins, simplify

# A product of sums multiplies their numbers of terms; past this many monomials
# the expansion is refused rather than left to run for minutes.
MAX_MONOMIALS = 20_000


def expand(t: Expr) -> Expr:
    """``t`` as a sum of monomials in normal form, with ``t.edges`` kept exactly."""
    return remember_origins(with_order(_expanded_normal_form(t), t.edges), t)


@deep
def _expanded_normal_form(t: Expr) -> Expr:
    normal = simplify(t)
    return simplified(_as_sum(_monomials(normal, {}), normal))


def _as_sum(pairs: list, like: Expr) -> Expr:
    """The expression for ``[(weight, monomial)]`` with ``like``'s edges."""
    pairs = [(w, m) for w, m in pairs if w != 0]
    if not pairs:
        return Zero._make(like.shape)
    if len(pairs) == 1 and pairs[0][0] == 1:
        return pairs[0][1]
    return Sum([m for _, m in pairs], [w for w, _ in pairs], edges=like.edges)


def _monomials(t: Expr, memo: dict) -> list:
    """``[(weight, monomial)]`` whose sum is ``t``; a monomial has no sum among its factors."""
    if id(t) not in memo:
        memo[id(t)] = _split(t, memo)
    return memo[id(t)]


def _checked(count: int) -> None:
    if count > MAX_MONOMIALS:
        raise ValueError(
            f"expand: multiplying out this expression gives {count} terms (more than {MAX_MONOMIALS}); "
            f"compare or inspect it with .simplify() instead, which keeps products of sums factored."
        )


@functools.singledispatch
def _split(t: Expr, memo: dict) -> list:
    raise NotImplementedError(f"expand: no rule for node type {type(t).__name__}")


@_split.register(Variable)
@_split.register(Delta)
@_split.register(Convolution)
def _(t, memo):
    return [(sympy.Integer(1), t)]


@_split.register
def _(t: Zero, memo):
    return []


@_split.register
def _(t: Sum, memo):
    return [(w * v, m) for w, term in zip(t.weights, t.terms) for v, m in _monomials(term, memo)]


@_split.register
def _(t: Product, memo):
    parts = [_monomials(f, memo) for f in t.factors]
    _checked(functools.reduce(lambda n, p: n * len(p), parts, 1))
    out = []
    for choice in itertools.product(*parts):
        weight = sympy.Mul(*(w for w, _ in choice))
        out.append((weight, Product([m for _, m in choice], edges=t.edges)))
    return out


@_split.register
def _(t: Function, memo):
    inputs = [_as_sum(_monomials(u, memo), u) for u in t.inputs]
    k = t.spec.k if isinstance(t.spec, Power) else None
    if k is not None and k.is_Integer and k > 1 and isinstance(inputs[0], Sum):
        # (a + b)^k as the elementwise product of k copies, multiplied out
        (u,) = t.inputs
        terms = _monomials(u, memo)
        _checked(len(terms) ** int(k))
        out = []
        for choice in itertools.product(terms, repeat=int(k)):
            monomial = functools.reduce(lambda a, b: elementwise_product(a, b, where="expand"), [m for _, m in choice])
            out.append((sympy.Mul(*(w for w, _ in choice)), Product([monomial], edges=t.edges)))
        return out
    return [(sympy.Integer(1), rebuilt(t, inputs))]


@_split.register(AlongEdge)
@_split.register(Derivative)
@_split.register(Expectation)
def _(t, memo):
    # a function along edges, or what the normal form left unevaluated: expanded inside, whole outside
    return [(sympy.Integer(1), rebuilt(t, [_as_sum(_monomials(a, memo), a) for a in t.args]))]


register_pass("expand", expand)
