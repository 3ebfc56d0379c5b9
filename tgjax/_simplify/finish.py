"""The public ``simplify``: the normal form, then the finishing rules.

A finishing rule rewrites a product of the normal form into a clearer and
more stable one that other rules must not see while simplifying: a softmax
written by hand (``exp(z) / sum exp(z)``) becomes ``softmax(z)``, but only
after ``(exp(z) / Z) * Z`` has had its chance to cancel to ``exp(z)``. The
result is simplified again (``log(softmax)`` then becomes log-softmax), until
no finishing rule applies.
"""

from __future__ import annotations

from .._ir.nodes import Expr, Product, rebuilt, variables_in
from .._ir.rename import rebuilt_sharing, rename
from .._ir.util import NodeTable
from .._logging import stage
from .._ir.walk import parents_first
from .core import recording_now, report, simplified, with_order
from .products import FINISHING_RULES, Flat


def simplify(t: Expr) -> Expr:
    """An equal-valued expression in normal form, with ``t.edges`` kept exactly."""
    with stage("simplify", f"an expression of {t._depth} levels"):
        result = simplified(t)
        for _ in range(8):  # each round removes a pattern; a few rounds reach the fixpoint
            finished = _finished(result)
            if finished is result:
                break
            result = simplified(finished)
    return remember_origins(with_order(result, t.edges), t)


# For a result of ``simplify`` or ``expand``: the Variables of its input that it no longer
# mentions (lowering still reads their sizes from the arrays given for them).
_ORIGINS = NodeTable()


def remember_origins(result: Expr, t: Expr) -> Expr:
    """``result`` (derived from ``t``) remembering the Variables of ``t`` it no longer mentions,
    so that lowering still reads their sizes from the arrays given for them (the Hessian of
    ``sum(x^2)`` is ``2 I``, sized by ``x``). A node that ``t`` itself contains is shared
    with other expressions and is left alone."""
    before = {v.key: v for v in (*variables_in([t]), *origins(t))}
    if t.stands_for is not None:
        before.update({v.key: v for v in variables_in([t.stands_for])})
    kept = {u.key for u in variables_in([result])}
    lost = tuple(v for key, v in before.items() if key not in kept)
    if lost and result not in _ORIGINS and all(result is not node for node in parents_first([t])):
        _ORIGINS.set(result, lost)
    return result


def origins(t: Expr) -> tuple:
    """The Variables ``t`` was simplified from but no longer mentions (``remember_origins``)."""
    return _ORIGINS.get(t, ())


def _finished(t: Expr) -> Expr:
    """``t`` with the finishing rules applied to every product, bottom-up; ``t`` itself if none applied."""

    def finish(node, args):
        new = rebuilt(node, args)
        return finished_product(new) if isinstance(new, Product) else new

    def copy(node, finished_origin):
        origin, mapping = node.renamed_from
        return node if finished_origin is origin else rename(finished_origin, mapping)

    return rebuilt_sharing([t], finish, copy)[0]


def finished_product(t: Product) -> Expr:
    """``t`` with the finishing rules applied (a softmax written by hand recognised); ``t`` itself if none applies."""
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
