"""The public ``simplify``: the normal form, then the finishing rules.

A finishing rule rewrites a product of the normal form into a clearer and
more stable one that other rules must not see while simplifying: a softmax
written by hand (``exp(z) / sum exp(z)``) becomes ``softmax(z)``, but only
after ``(exp(z) / Z) * Z`` has had its chance to cancel to ``exp(z)``. The
result is simplified again (``log(softmax)`` then becomes log-softmax), until
no finishing rule applies.
"""

from __future__ import annotations

from .._ir.nodes import Expr, Product, rebuilt
from .._ir.walk import parents_first
from .core import recording_now, report, simplified, with_order
from .products import FINISHING_RULES, Flat


def simplify(t: Expr) -> Expr:
    """An equal-valued expression in normal form, with ``t.edges`` kept exactly."""
    result = simplified(t)
    for _ in range(8):  # each round removes a pattern; a few rounds reach the fixpoint
        finished = _finished(result)
        if finished is result:
            break
        result = simplified(finished)
    return with_order(result, t.edges)


def _finished(t: Expr) -> Expr:
    """``t`` with the finishing rules applied to every product, bottom-up; ``t`` itself if none applied."""
    memo: dict = {}
    for node in reversed(parents_first([t])):
        args = [memo[id(a)] for a in node.args]
        new = rebuilt(node, args) if any(a is not b for a, b in zip(args, node.args)) else node
        if isinstance(new, Product):
            new = _finished_product(new)
        memo[id(node)] = new
    return memo[id(t)]


def _finished_product(t: Product) -> Expr:
    flat = Flat(tuple(t.factors), 1, t.edges, t.shape)
    changed = False
    while True:
        for rule in FINISHING_RULES:
            result = rule(flat)
            if result is not None:
                break
        else:
            break
        if recording_now():
            report(rule, flat.expr(), result.expr())
        flat, changed = result, True
    return flat.expr() if changed else t
