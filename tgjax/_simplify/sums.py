"""Sums: one named rule, ``collect_terms``, that brings a sum to its normal form."""

from __future__ import annotations

from collections import Counter

import sympy

from .._ir.identity import signature
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
    another term, so that a shift cancels: ``z + c - (c + lse) ⊗ 1 = z - lse ⊗ 1``;
    likewise a product is distributed over one of its sum factors where a term
    of the result merges with another term: ``(x + y) w - x w - y w = 0``
    (``distribute_where_terms_merge``).

    It always applies (it is the normal form of a sum), and is reported when
    it merged or dropped a term.
    """
    pairs = []
    _open_into(t, sympy.Integer(1), pairs, set())
    spend(len(pairs))
    pairs = distribute_where_terms_merge(split_where_terms_merge(pairs))
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
        if isinstance(u, Sum) and not_simplified(u) and id(u) not in opened:
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


def distribute_where_terms_merge(pairs: list) -> list:
    """``pairs`` with each product that has a sum factor distributed over it, where a term of
    the result is isomorphic to another term (elsewhere the product stays factored).

    Only a factor with a term whose atoms, with the product's other atoms, are
    those of another term (the same structures, Deltas aside) is tried: so a sum
    of n terms costs about n lookups, not n^2 comparisons, and a product whose
    distribution would need further rules to meet another term (a layer norm's
    gradient has many) stays factored.
    """
    if len(pairs) < 2:
        return pairs
    keys = [_atom_key(_atoms(core)) for _, core in pairs]
    counted = Counter(keys)

    def another_term_has(wanted: tuple, k: int) -> bool:
        return counted[wanted] - (keys[k] == wanted) > 0

    out = list(pairs)
    hashes = None
    for k, (w, core) in enumerate(pairs):
        if not isinstance(core, Product):
            continue
        for s in (f for f in core.factors if isinstance(f, Sum)):
            others = [f for f in core.factors if f is not s]
            if not any(another_term_has(_atom_key(others + _atoms(u)), k) for u in s.terms):
                continue
            split = [
                (w * v * x, c)
                for v, u in zip(s.weights, s.terms)
                for x, c in terms_of(simplified(Product([*others, u], edges=core.edges)))
            ]
            if hashes is None:
                hashes = {}
                for j, (_, c) in enumerate(pairs):
                    hashes.setdefault(hash(c), []).append(j)
            if any(j != k and out[j][1] is not None and c == out[j][1] for _, c in split for j in hashes.get(hash(c), ())):
                out[k] = (w, None)
                out.extend(split)
                break
    return [(w, c) for w, c in out if c is not None]


def _atoms(t: Expr) -> list:
    return list(t.factors) if isinstance(t, Product) else [t]


def _atom_key(atoms) -> tuple:
    """The structures of ``atoms`` other than Deltas, as a multiset (edge names ignored)."""
    return tuple(sorted(signature(a).shape for a in atoms if not isinstance(a, Delta)))


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
