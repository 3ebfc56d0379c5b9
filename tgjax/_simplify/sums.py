"""Sums: one named rule, ``collect_terms``, that brings a sum to its normal form."""

from __future__ import annotations

from .._ir.nodes import Sum
from .core import make_sum, report, simplified, simplify_node, terms_of


@simplify_node.register
def _(t: Sum):
    return collect_terms(t)


def collect_terms(t: Sum):
    """Nested sums flattened, isomorphic terms merged by adding their weights,
    zero terms dropped, the rest in canonical order: ``x + (y - x) = y``,
    ``A[i,j] + A[i,k] δ[k,j] = 2 A[i,j]``.

    It always applies (it is the normal form of a sum), and is reported when
    it merged or dropped a term.
    """
    pairs = []
    for w, u in zip(t.weights, t.terms):
        pairs.extend((w * v, core) for v, core in terms_of(simplified(u)))
    result = make_sum(pairs, t.shape)
    if len(terms_of(result)) < len(pairs):
        report(collect_terms, t, result)
    return result
