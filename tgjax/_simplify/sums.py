"""Sums: one named rule, ``collect_terms``, that brings a sum to its normal form."""

from __future__ import annotations

from .._ir.nodes import Delta, Expr, Product, Sum
from .core import make_sum, report, simplified, simplify_node, terms_of


@simplify_node.register
def _(t: Sum):
    return collect_terms(t)


def collect_terms(t: Sum):
    """Nested sums flattened (also a sum broadcast along new edges, so that
    ``z + c - (c + lse) ⊗ 1 = z - lse ⊗ 1``), isomorphic terms merged by adding
    their weights, zero terms dropped, the rest in canonical order:
    ``x + (y - x) = y``, ``A[i,j] + A[i,k] δ[k,j] = 2 A[i,j]``.

    It always applies (it is the normal form of a sum), and is reported when
    it merged or dropped a term.
    """
    pairs = []
    for w, u in zip(t.weights, t.terms):
        for v, core in terms_of(simplified(u)):
            pairs.extend((w * v * x, c) for x, c in _broadcast_terms(core))
    result = make_sum(pairs, t.shape)
    if len(terms_of(result)) < len(pairs):
        report(collect_terms, t, result)
    return result


def _broadcast_terms(core: Expr) -> list:
    """A core that is one sum factor times ones on free edges (a broadcast sum) as the
    weighted broadcasts of its terms; any other core as itself."""
    if not isinstance(core, Product):
        return [(1, core)]
    sums = [f for f in core.factors if isinstance(f, Sum)]
    ones = [f for f in core.factors if isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in core.shape]
    if len(sums) != 1 or not ones or len(ones) + 1 != len(core.factors):
        return [(1, core)]
    (total,) = sums
    return [
        (w * v, c)
        for w, term in zip(total.weights, total.terms)
        for v, c in terms_of(simplified(Product([term, *ones], edges=core.edges)))
    ]
