"""``tg.explain``: how ``.simplify()`` reached its result, one named rule per step.

Simplification works bottom-up, so the derivation does too: the nodes of the
input are normalised children first, and each node whose normal form took a
named rule is one step, the whole expression with that node (and every node
before it) in normal form. Every step is therefore numerically equal to the
input, and the last is ``expr.simplify()``. A step is named after the rule
that gave the node its final form (``_simplify.core.recording`` reports them);
the evaluation of a derivative is named after the rule its outermost node
needs (product rule, chain rule, ...).
"""

from __future__ import annotations

from .._diff import derivative_step
from .._expectation import closed_form
from .._ir import along, elementwise
from .._ir.nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero, rebuilt,
)
from .._ir.walk import parents_first
from .._simplify import functions, products, sums
from .._simplify.core import recording, simplified, with_order


def explain(expr: Expr) -> list:
    """The derivation of ``expr.simplify()`` as ``(rule name, expression)`` pairs.

    Args:
        expr: any expression.

    Returns:
        A list whose first pair is ``("input", expr)`` and whose last
        expression equals ``expr.simplify()``; each step rewrites one node
        of the previous expression by the named rule (``"product rule"``,
        ``"chain rule: derivative of tanh"``, ``"merge deltas"``, ``"combine
        powers"``, ...), and every step has the value of the input. A
        derivative (a ``.grad`` result) is derived one rule at a time from its
        outermost node in, then simplified; a Hessian's gradient first.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> for name, step in tg.explain(F.log(F.exp(x)) * x):
        ...     print(f"{name:15} {step}")
        input           log(exp(x[a])) x[b] δ[a,b,i]
        log of exp      x[a] x[b] δ[a,b,i]
        combine powers  x[i]^2
    """
    if not isinstance(expr, Expr):
        raise TypeError(f"tg.explain: expected a tensor expression; got {type(expr).__name__}.")
    target = expr if expr.stands_for is None else expr.stands_for
    if isinstance(target, Derivative) and not target.x.symmetric:
        return _finished(expr, _derivation(target))
    return _finished(expr, _simplification(expr))


def _finished(expr: Expr, steps: list) -> list:
    """``steps`` from ``("input", expr)``, their last expression ``expr.simplify()`` (a step of its
    own where a finishing rule gave it, or the steps did not reach it)."""
    steps = [("input", expr)] + steps[1:]
    with recording() as applied:
        final = expr.simplify()
    finishing = {r.__name__ for r in products.FINISHING_RULES}
    finished = [_spoken(name) for name, _, _ in applied if name in finishing]
    if len(steps) == 1 or not (steps[-1][1].edges == final.edges and steps[-1][1] == final):
        # a finishing rule (a hand-written softmax recognised), or the input was normal already
        # or its root took no named rule
        steps.append((finished[0] if finished else "normal form", final))
    else:
        steps[-1] = (steps[-1][0], final)
    return steps


def _derivation(d: Derivative) -> list:
    """The steps of a derivative as a reader derives it: the expression it differentiates
    first where that holds derivatives itself (a Hessian's gradient, then simplified), then
    one rule at a time from the outermost node in (product, sum, power and chain rules),
    then the simplification of the result."""
    steps = [("input", d)]
    inner = d.expr
    # a .grad result (a Hessian's gradient) stands for the derivative it evaluates
    derived = inner.stands_for if inner.stands_for is not None else inner
    if derived is not inner or any(isinstance(node, Derivative) for node in parents_first([inner])):
        stepwise = isinstance(derived, Derivative) and not derived.x.symmetric  # a symmetrised one is one step
        inner_steps = _finished(inner, _derivation(derived) if stepwise else _simplification(inner))
        steps += [(name, Derivative(step, d.x, d.new_names)) for name, step in inner_steps[1:]]
        inner = inner_steps[-1][1]
    current = Derivative(inner, d.x, d.new_names)
    while True:
        node = next((n for n in parents_first([current]) if isinstance(n, Derivative)), None)
        if node is None:
            break
        expanded = derivative_step(node.expr, node.x, node.new_names)
        current = _with_replaced(current, {id(node): with_order(expanded, node.edges)})
        steps.append((_rule_of(node.expr), current))
    return steps + _simplification(current)[1:]


def _simplification(expr: Expr) -> list:
    """The steps of ``simplified(expr)``, one per node that took a named rule, children first."""
    steps = [("input", expr)]
    done: dict = {}
    # Normal forms are remembered per node (core._NORMAL_FORMS): a fresh copy is simplified from
    # scratch, so every rule shows.
    # A result of .grad stands for its unevaluated derivative, whose evaluation is what simplify shows.
    copy = _fresh_copy(expr if expr.stands_for is None else expr.stands_for)
    for node in reversed(parents_first([copy])):
        if isinstance(node, (Variable, Delta, Zero, Convolution)):
            continue
        with recording() as applied:
            normal = simplified(node)
        # the rules applied to this node itself come first; the others tidied what they made
        own = [_spoken(name) for name, before, _ in applied if type(before) is type(node)]
        names = own or [_spoken(name) for name, _, _ in applied]
        if isinstance(node, Derivative):
            names.insert(0, _derivative_rule(node))
        if not names:
            continue
        done[id(node)] = with_order(normal, node.edges)
        steps.append((_name_of_step(node, names), _with_replaced(copy, done)))
    return steps


# Rules that only tidy up after another rule: a step is named after the other one.
_TIDYING = ("inline nested", "merge deltas")


def _name_of_step(node: Expr, names: list) -> str:
    """A derivative is named by how it starts; any other node by the last rule that did more than tidy up."""
    if isinstance(node, Derivative):
        return names[0]
    substantive = [name for name in names if name not in _TIDYING]
    return (substantive or names)[-1]


def _spoken(rule_name: str) -> str:
    return rule_name.replace("_", " ")


def rule_names() -> set:
    """Every name a step of ``explain`` can carry."""
    rules = {r for fn in (*elementwise.BUILTINS, *along.BUILTINS, elementwise.power(2)) for r in fn.identities}
    rules |= {*functions.SHARED_RULES, sums.collect_terms, *products.PRODUCT_RULES, *products.FINISHING_RULES}
    rules |= {closed_form.independent_of_the_variable, closed_form.gaussian_polynomial, closed_form.gaussian_exponential}
    derivative = {"product rule", "sum rule", "chain rule", "power rule", "price theorem", "derivative of a variable"}
    functions_ = {fn.name for fn in (*elementwise.BUILTINS, *along.BUILTINS)}
    derivative |= {f"chain rule: derivative of {name}" for name in functions_}
    return {_spoken(r.__name__) for r in rules} | derivative | {"input", "normal form"}


def _rule_of(t: Expr) -> str:
    """The name of the rule that differentiates ``t``'s outermost node (``derivative_step``)."""
    if isinstance(t, Product):
        return "product rule"
    if isinstance(t, Sum):
        return "sum rule"
    if isinstance(t, Function) and elementwise.exponent(t.spec) is not None:
        return "power rule"
    if isinstance(t, (Function, AlongEdge)):
        return f"chain rule: derivative of {t.spec.name}"
    if isinstance(t, Expectation):
        return "price theorem"
    return "derivative of a variable"


def _derivative_rule(t: Derivative) -> str:
    """The rule that differentiating ``t.expr`` starts with, by the outermost node of its normal form."""
    return _rule_of(simplified(t.expr))


def _fresh_copy(t: Expr) -> Expr:
    """``t`` rebuilt node by node (leaves shared), so that no node carries a cached normal form."""
    memo: dict = {}
    for node in reversed(parents_first([t])):
        memo[id(node)] = node.func(*(memo[id(a)] for a in node.args)) if node.args else node
    return memo[id(t)]


def _with_replaced(t: Expr, done: dict) -> Expr:
    """``t`` with the nodes in ``done`` (by id) replaced by their normal forms."""
    memo: dict = {}
    for node in reversed(parents_first([t])):
        if id(node) in done:
            memo[id(node)] = done[id(node)]
        else:
            memo[id(node)] = rebuilt(node, [memo[id(a)] for a in node.args])
    return memo[id(t)]
