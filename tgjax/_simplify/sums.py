"""Sums: flatten nested sums, drop zeros, merge isomorphic terms."""

from __future__ import annotations

from .._ir.nodes import Sum
from .core import make_sum, simplified, simplify_node, terms_of


@simplify_node.register
def _(t: Sum):
    pairs = []
    for w, u in zip(t.weights, t.terms):
        pairs.extend((w * v, core) for v, core in terms_of(simplified(u)))
    return make_sum(pairs, t.shape)
