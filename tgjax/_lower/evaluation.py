"""What gets lowered: an evaluation form built for cost, or the normal form where that is cheaper.

The normal form (``simplify``) is made for equality and display. It finds
structure (the Hessian of ``x^T A x`` is ``A + A^T``), but it writes a
derivative as a sum of products, and a sum whose terms carry a node's edges
and ``x``'s together is a dense Jacobian (``diag(p) - p p^T``) once it is
evaluated. The evaluation form keeps a derivative in backpropagation's shape
(``_diff.reverse``), so it costs what backpropagation costs.

Lowering builds the program of both and keeps the one with the lower
estimated cost (``Program.cost``; on a tie the normal form). The normal form
is skipped for expressions too large for the simplifier to be worth its time.
"""

from __future__ import annotations

from .._diff import gradient
from .._ir.elementwise import log, stable_log
from .._ir.nodes import Derivative, Expectation, Expr, Function, rebuilt
from .._ir.rename import sharing_args, with_views
from .._ir.walk import parents_first
from .._simplify import simplify

# Beyond this many distinct nodes, simplifying costs more than it can save.
NORMAL_FORM_NODE_LIMIT = 600


def evaluation_form(t: Expr) -> Expr:
    """What to lower for ``t``.

    A derivative from ``.grad`` is one already. An expression with no
    derivative in it is its normal form while that is cheap to find: the
    derivatives lowered beside it (a loss and its gradients) are built on
    that normal form, so the forward pass is then computed once, for both.
    Otherwise every Derivative node is evaluated by reverse accumulation and
    every logarithm put in its stable form.
    """
    if t._stands_for is not None:
        return t
    shared = parents_first([t], children=sharing_args)
    plain = not any(isinstance(node, Derivative) or node._stands_for is not None for node in shared)
    if plain and len(shared) <= NORMAL_FORM_NODE_LIMIT:
        return _closed(simplify(t))
    # renamed copies become views of the function they copy: every pass below is then
    # linear in the expression (a deep derivative's normal form copies the chain below
    # each partial)
    t, = with_views([t])
    order = parents_first([t])
    memo: dict = {}
    for node in reversed(order):
        memo[id(node)] = _rebuilt(node, memo)
    return _closed(memo[id(t)])


def _closed(t: Expr) -> Expr:
    """``t``, checked to have no expectation left without a closed form."""
    for node in parents_first([t]):
        if isinstance(node, Expectation):
            raise ValueError(
                f"tg.lower: no closed form for {node!r}. Closed forms exist for polynomials of "
                f"{node.wrt.name} and for a polynomial times exp of an affine function of it; "
                f"rewrite that part, or take it out of the expectation."
            )
    return t


def node_count(exprs) -> int:
    """Distinct nodes of the DAGs of ``exprs`` (shared nodes counted once)."""
    return len(parents_first(exprs))


def normal_forms(exprs):
    """``simplify`` of each expression, or None when they are too large to be worth it."""
    if len(parents_first(exprs, children=sharing_args)) > NORMAL_FORM_NODE_LIMIT:
        return None
    return tuple(simplify(t) for t in exprs)


def _rebuilt(node: Expr, memo: dict) -> Expr:
    """``node`` over its rebuilt children, or ``node`` itself when none changed."""
    if isinstance(node, Derivative):
        inner = memo[id(node.expr)]
        # As Expr.grad: the normal form carries the stable rewrites
        # (log(softmax) -> log_softmax); a .grad result has them already.
        base = inner if inner._stands_for is not None else simplify(inner)
        return gradient(base, node.x, node.new_names)
    args = [memo[id(a)] for a in node.args]
    if isinstance(node, Expectation):
        return simplify(rebuilt(node, args))
    if isinstance(node, Function) and node.spec is log:
        stable = stable_log(Function(log, args, edges=node.edges))
        if stable is not None:
            return stable
    return rebuilt(node, args)
