"""Sums: one named rule, ``collect_terms``, that brings a sum to its normal form."""

from __future__ import annotations

import sympy

from .._ir.nodes import Delta, Expr, Product, Sum
from .core import make_sum, not_simplified, renamed_normal_form, report, simplified, simplify_node, spend, terms_of


@simplify_node.register
def _(t: Sum):
    if t.renamed_from is not None:
        # the normal form of a renamed copy is the renamed normal form: each sum is simplified once
        return renamed_normal_form(t)
    return collect_terms(t)


def collect_terms(t: Sum):
    """Nested sums flattened, isomorphic terms merged by adding their weights,
    zero terms dropped, the rest in canonical order: ``x + (y - x) = y``,
    ``A[i,j] + A[i,k] δ[k,j] = 2 A[i,j]``. A term that is a sum broadcast
    along new edges is split into its terms where one of them then merges with
    another term, so that a shift cancels: ``z + c - (c + lse) ⊗ 1 = z - lse ⊗ 1``.

    It always applies (it is the normal form of a sum), and is reported when
    it merged or dropped a term.
    """
    pairs = []
    _open_into(t, sympy.Integer(1), pairs, set())
    spend(len(pairs))
    pairs = split_where_terms_merge(pairs)
    result = make_sum(pairs, t.shape)
    if len(terms_of(result)) < len(pairs):
        report(collect_terms, t, result)
    return result


def _open_into(t: Sum, weight, pairs: list, opened: set):
    """Append the (weight, core) pairs of ``weight * t`` to ``pairs``, opening in place the sums
    nested in ``t`` that are not simplified yet.

    A sum built by repeated ``+`` nests n sums; simplifying each level on its own
    would build n normal forms of growing size, quadratic work for one sum of n
    terms. A sum met twice (a DAG) is opened once; again, it is simplified as a whole.
    """
    for w, u in zip(t.weights, t.terms):
        if isinstance(u, Sum) and u._simplified is None and not_simplified(u) and id(u) not in opened:
            opened.add(id(u))
            _open_into(u, weight * w, pairs, opened)
        else:
            pairs.extend((weight * w * v, core) for v, core in terms_of(simplified(u)))


def split_where_terms_merge(pairs: list) -> list:
    """``pairs`` with each broadcast sum among them split into its broadcast terms, where one
    of those is isomorphic to another term (elsewhere the sum stays factored: smaller, and
    what lowering computes best)."""
    out = list(pairs)
    for k, (w, core) in enumerate(pairs):
        split = _broadcast_terms(core)
        if split is None:
            continue
        others = [c for j, (_, c) in enumerate(out) if j != k and c is not None]
        if any(c.edges and any(c == o for o in others) for _, c in split):
            out[k] = (w, None)
            out.extend((w * v, c) for v, c in split)
    return [(w, c) for w, c in out if c is not None]


def _broadcast_terms(core: Expr):
    """A core that is one sum factor times ones on free edges as the weighted broadcasts of
    its terms; None for any other core."""
    if not isinstance(core, Product):
        return None
    sums = [f for f in core.factors if isinstance(f, Sum)]
    ones = [f for f in core.factors if isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in core.shape]
    if len(sums) != 1 or not ones or len(ones) + 1 != len(core.factors):
        return None
    (total,) = sums
    return [
        (w * v, c)
        for w, term in zip(total.weights, total.terms)
        for v, c in terms_of(simplified(Product([term, *ones], edges=core.edges)))
    ]
