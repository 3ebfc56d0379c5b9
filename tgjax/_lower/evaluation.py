"""What gets lowered: an evaluation form built for cost, or a form built on normal forms where that is cheaper.

The normal form (``simplify``) is made for equality and display. It finds
structure (the Hessian of ``x^T A x`` is ``A + A^T``), but it writes a
derivative as a sum of products, and a sum whose terms carry a node's edges
and ``x``'s together is a dense Jacobian (``diag(p) - p p^T``) once it is
evaluated. The evaluation form keeps a derivative in backpropagation's shape
(``_diff.reverse``), so it costs what backpropagation costs.

The evaluation form is the expression as written (``written_form``): every
Derivative node evaluated by reverse accumulation, a softmax written by hand
recognised and every logarithm put in its stable form, in one walk linear in
the expression; ``.grad`` builds on it
too, so a loss and its gradients lowered together share its nodes. Nothing
on that path computes a normal form: a model of any depth reaches its program
in time linear in its size.

For expressions small enough that simplifying is worth its time (under
``NORMAL_FORM_NODE_LIMIT`` nodes), lowering also builds two candidates from
normal forms: each expression's normal form (``normal_forms``), and the
derivatives taken by reverse accumulation from the normal form of what they
differentiate (``on_normal_forms``), which has merged what the expression
as written repeats. It keeps the program with the lowest estimated cost
(``cost.program_cost``).
"""

from __future__ import annotations

from .._diff import Unsupported, directional, gradients
from .._ir.elementwise import log, stable_log
from .._ir.nodes import Delta, Derivative, Expectation, Expr, Function, Product, Zero, rebuilt, register_pass
from .._ir.rename import rename, sharing_args, view, with_views
from .._ir.util import IdentityCache, fresh_edge
from .._ir.walk import parents_first
from .._logging import logger, stage
from .._simplify import OverBudget, budget, share_normal_form, simplify
from .._simplify.finish import finished_product

# Beyond this many distinct nodes, simplifying costs more than it can save. The budget
# below cannot replace it (measured, session 17, benchmarks/README.md): a unit of simplifier
# work takes 20-40 us on the benchmark models but 50-230 us on large ones, so even a flat
# 3,000 units spends 0.3-0.7 s on a 12-block transformer before it is given up, and 2,000
# + 5 per node lets the derivatives-on-normal-forms candidate run 1.4-3 s.
NORMAL_FORM_NODE_LIMIT = 600
# Work (``_simplify.budget`` units: nodes built and normalised, atoms and terms read) the
# simplifier may spend on each normal-form candidate, in all and per node of the
# expressions. The gradient and Hessian benchmarks' normal forms take at most 1,165 units
# (the conv net's, of 2,485 allowed); the pre-norm transformer block's take 19,133, and
# that program loses by 400x in estimated cost; a post-layer-norm block's gradients by the
# forward rules grow without bound (minutes for one block; given up after 0.1 s).
NORMAL_FORM_BUDGET_PER_NODE = 5
NORMAL_FORM_BUDGET = 2_000


def evaluation_forms(exprs) -> tuple:
    """What to lower for each expression: its written form, checked to need no expectation
    without a closed form."""
    return _closed(tuple(written_form(t) for t in exprs))


# The written forms of the last few expressions asked for: a loss lowered beside its
# gradients is the very node they were built on, so its forward pass is computed once.
_WRITTEN = IdentityCache(16)


def written_form(t: Expr) -> Expr:
    """``t`` as written, every Derivative node evaluated by reverse accumulation, a softmax
    written by hand recognised (``_softmax_recognised``) and every logarithm in its stable
    form; a ``.grad`` result is one already."""
    if t.stands_for is not None:
        return t
    return _WRITTEN.get(t, lambda: _written(t))


class _Walk:
    """One walk building a written form: the nodes rebuilt so far (id -> result), and whether a
    Hessian times a vector is built by symmetry (``_hessian_by_symmetry``) rather than as a
    tangent, and whether that happened."""

    def __init__(self, by_symmetry: bool = False):
        self.memo: dict = {}
        self.by_symmetry = by_symmetry
        self.used_symmetry = False


def _written(t: Expr, walk: _Walk | None = None) -> Expr:
    # renamed copies become views of the function they copy: every pass below is then
    # linear in the expression (a deep derivative's normal form copies the chain below
    # each partial)
    walk = walk or _Walk()
    viewed, = with_views([t], same_value=share_normal_form)
    for node in reversed(parents_first([viewed])):
        walk.memo[id(node)] = _rebuilt(node, walk)
    return walk.memo[id(viewed)]


def by_symmetry_forms(exprs, nodes: list):
    """The written forms with every Hessian times a vector built as the gradient of the gradient
    times the vector (reverse over reverse: for attention, 1.10x the FLOPs of
    ``jax.jvp(jax.grad)`` where the tangent takes 1.20x; for other models the tangent is
    cheaper), or None where no output has one. Lowering keeps the cheaper program.
    ``nodes``: the expressions' shared DAG (``parents_first(exprs, children=sharing_args)``)."""
    if not any(_second_derivative_factor(node) for node in nodes):
        return None  # most expressions have no such product
    walk = _Walk(by_symmetry=True)
    forms = tuple(t if t.stands_for is not None else _written(t, walk) for t in exprs)
    return _closed(forms) if walk.used_symmetry else None


def _second_derivative_factor(node: Expr) -> bool:
    """Whether ``node`` is a product with a second derivative among its factors."""
    return isinstance(node, Product) and any(second_derivative(f) is not None for f in node.factors)


def grads(t: Expr, xs, names: list) -> list:
    """``t.grad(x, n)`` for each ``x`` and ``n``: one reverse sweep over ``t``'s written form.

    Each result stands for its unevaluated derivative, whose normal form (the
    forward rules') keeps the structure they show (the Hessian of ``x^T A x``
    is ``A + A^T``) whatever the evaluation form.
    """
    wanted = [Derivative(t, x, n) for x, n in zip(xs, names)]
    base = written_form(t)
    with stage("derivative", f"{len(wanted)} variable(s) of an expression of {t._depth} levels"):
        swept = gradients(base, [d.x for d in wanted], [d.new_names for d in wanted])
    return [Product([g], edges=d.edges, stands_for=d) for d, g in zip(wanted, swept)]


register_pass("grad", grads)


def _closed(exprs: tuple) -> tuple:
    """``exprs``, checked to have no expectation left without a closed form (one walk for all)."""
    for node in parents_first(list(exprs)):
        if isinstance(node, Expectation):
            raise ValueError(
                f"tg.lower: no closed form for {node!r}. Closed forms exist for polynomials of "
                f"{node.wrt.name} and for a polynomial times exp of an affine function of it; "
                f"rewrite that part, or take it out of the expectation."
            )
    return exprs


def node_count(exprs) -> int:
    """Distinct nodes of the DAGs of ``exprs`` (shared nodes counted once)."""
    return len(parents_first(exprs))


def _within_budget(exprs, nodes: list, make):
    """``make()`` where the expressions (whose shared DAG is ``nodes``) are small and it stays
    within the simplifier's budget, else None."""
    n = len(nodes)
    if n > NORMAL_FORM_NODE_LIMIT:
        return None
    try:
        with budget(NORMAL_FORM_BUDGET + NORMAL_FORM_BUDGET_PER_NODE * n):
            return make()
    except OverBudget:
        logger.info("lowering: the normal forms of %d expression(s) of %d nodes are over the simplifier's "
                    "budget; lowering the evaluation form alone", len(exprs), n)
        return None


def normal_forms(exprs, nodes: list):
    """``simplify`` of each expression, or None when they are too large or too costly to be worth it.
    ``nodes``: the expressions' shared DAG, as for ``by_symmetry_forms``."""
    return _within_budget(exprs, nodes, lambda: tuple(simplify(t) for t in exprs))


def on_normal_forms(exprs, nodes: list):
    """Each expression with its derivatives taken from normal forms, or None when too large.

    A plain expression is its normal form; a ``.grad`` result is the gradient,
    by reverse accumulation, of this form of what it differentiates (the
    normal form of a loss, the same form of a gradient for a Hessian). So a
    loss and its gradients share the loss's normal form.
    """
    if not any(t.stands_for is not None for t in exprs):
        return None  # every output is plain: this candidate would be the normal forms again
    memo: dict = {}

    def form(t: Expr) -> Expr:
        if id(t) not in memo:
            d = t.stands_for
            if isinstance(d, Derivative):
                g, = gradients(form(d.expr), [d.x], [d.new_names])
                memo[id(t)] = (t, Product([g], edges=d.edges))
            elif any(isinstance(node, Derivative) for node in parents_first([t], children=sharing_args)):
                memo[id(t)] = (t, written_form(t))
            else:
                memo[id(t)] = (t, simplify(t))
        return memo[id(t)][1]

    return _within_budget(exprs, nodes, lambda: _closed(tuple(form(t) for t in exprs)))


def _rebuilt(node: Expr, walk: _Walk) -> Expr:
    """``node`` over its rebuilt children, or ``node`` itself when none changed."""
    memo = walk.memo
    if isinstance(node, Derivative):
        g, = gradients(memo[id(node.expr)], [node.x], [node.new_names])
        return g
    args = [memo[id(a)] for a in node.args]
    if isinstance(node, Expectation):
        return simplify(rebuilt(node, args))
    if isinstance(node, Function) and node.spec is log:
        stable = stable_log(Function(log, args, edges=node.edges))
        if stable is not None:
            return stable
    if isinstance(node, Product):
        contracted = _derivative_contracted(node, walk)
        if contracted is not None:
            return contracted
        return _softmax_recognised(rebuilt(node, args))
    return rebuilt(node, args)


def as_derivative(t: Expr):
    """The derivative ``t`` is (a Derivative node) or stands for (a ``.grad`` result), else None."""
    if isinstance(t, Derivative):
        return t
    return t.stands_for


def second_derivative(t: Expr):
    """``(outer, inner)`` where ``t`` is (or stands for) ``outer = d/dx inner`` and ``inner`` is
    itself a derivative with respect to the same ``x`` (a Hessian), else None."""
    outer = as_derivative(t)
    inner = as_derivative(outer.expr) if outer is not None else None
    if inner is None or inner.x.key != outer.x.key:
        return None
    return outer, inner


def _derivative_contracted(node: Product, walk: _Walk):
    """A derivative contracted with tensors that do not depend on its variable, built the way
    JAX's transforms compute it, never the derivative itself.

    - ``J[a,n] D[n,b]`` for a derivative ``J = d e/dx`` (new edges ``n``) and factors ``D``
      that meet ``J`` on ``n`` only is the tangent of ``e`` along ``D``
      (``_diff.forward.directional``): ``H v`` of a Hessian is the tangent of the gradient,
      as ``jax.jvp(jax.grad(f))``; the other factors (``u`` of ``u^T H v``) are contracted
      afterwards.
    - ``R[a,...] J[a,n]`` with ``R`` on ``e``'s edges only is ``d/dx (R e)``: one reverse
      sweep from the contraction, as ``jax.vjp``.

    None where neither applies (a factor depends on ``x``, an edge is both free and
    contracted, the variable is symmetric, a node has no forward rule). With
    ``walk.by_symmetry``, a Hessian times a vector is built by ``_hessian_by_symmetry``.
    """
    memo = walk.memo
    for k, f in enumerate(node.factors):
        d = as_derivative(f)
        if d is None or d.x.symmetric or set(f.edges) != set(d.edges):
            continue
        others = node.factors[:k] + node.factors[k + 1:]
        if not others or any(g.depends_on(d.x) for g in others):
            continue
        met = {e for g in others for e in g.edges}
        free = set(node.edges)
        n2 = [d.new_names[e] for e, _ in d.x.decl]
        of = memo[id(d.expr)] if id(d.expr) in memo else written_form(d.expr)
        if all(n in met and n not in free for n in n2):
            if walk.by_symmetry:
                product = _hessian_by_symmetry(node, d, others, n2, of, memo)
                if product is not None:
                    walk.used_symmetry = True
                    return product
            tangent = _along_direction(node, f, d, others, n2, of, memo)
            if tangent is not None:
                return tangent
            continue
        if not any(n in met for n in n2) and set(d.expr.edges) & met:
            q = Product([of, *(memo[id(g)] for g in others)], edges=tuple(x for x in node.edges if x not in n2))
            grad, = gradients(q, [d.x], [d.new_names])
            return Product([grad], edges=node.edges)
    return None


def _hessian_by_symmetry(node: Product, d: Derivative, others: tuple, n2: list, g: Expr, memo: dict):
    """``H[a,n1,n2] R[n2,...]`` for a second derivative ``H = d/dx g`` of ``g = d f/dx`` (new
    edges ``n1``) as ``d/dx (g[a,n2] R[n2,...])`` with new edges ``n1``: a Hessian is symmetric
    in its two variable edges. ``R`` may contract ``n1`` too (``u^T H v``): that edge is
    traced afterwards. None where ``H`` is not such a second derivative."""
    found = second_derivative(d)
    if found is None:
        return None
    inner = found[1]
    n1 = [inner.new_names[e] for e, _ in d.x.decl]
    met = {e for f in others for e in f.edges}
    if any((e in met) == (e in node.edges) for e in n1):
        return None
    traced = {e: fresh_edge() for e in n1 if e in met}
    rest = [view(memo[id(f)], {e: traced[e] for e in f.edges if e in traced}) for f in others]
    q_edges = tuple(e for e in node.edges if e not in n1) + tuple(traced.values())
    q = Product([view(g, dict(zip(n1, n2))), *rest], edges=q_edges)
    grad, = gradients(q, [d.x], [inner.new_names])
    ties = [Delta._make(size, (n, traced[n])) for (_, size), n in zip(d.x.decl, n1) if n in traced]
    return Product([grad, *ties], edges=node.edges)


def _along_direction(node: Product, f: Expr, d: Derivative, others: tuple, n2: list, of: Expr, memo: dict):
    """``node`` with its factor ``f`` (the derivative ``d`` of ``of``) contracted on its new edges
    ``n2`` by the factors of ``others`` that carry them, as the tangent of ``of`` along them;
    None where those factors also meet ``f`` elsewhere or a node has no forward rule."""
    steering = [g for g in others if set(g.edges) & set(n2)]
    if any((set(g.edges) & set(f.edges)) - set(n2) for g in steering):
        return None
    rest = [g for g in others if not any(g is h for h in steering)]
    # the direction keeps the edges its factors share with the rest of the product
    outside = set(node.edges) | {x for g in rest for x in g.edges}
    kept = tuple(dict.fromkeys(x for g in steering for x in g.edges if x in outside and x not in n2))
    direction = Product([memo[id(g)] for g in steering], edges=tuple(n2) + kept)
    ports = {n: fresh_edge() for n in n2}
    riding = {x: fresh_edge() for x in kept}
    try:
        tangent = directional(of, d.x, view(direction, {**ports, **riding}),
                              {x: ports[n] for (x, _), n in zip(d.x.decl, n2)}, tuple(riding.values()))
    except Unsupported:
        return None
    if tangent is None:
        return Zero._make({x: node._shape[x] for x in node.edges})
    back = view(tangent, {v: x for x, v in riding.items()})
    return Product([back, *(memo[id(g)] for g in rest)], edges=node.edges)


def _softmax_recognised(t: Product) -> Expr:
    """``t`` with a softmax written by hand (``exp(z) / sum exp(z)``) made the stable one,
    whose log (``_rebuilt``) is then the log-softmax: what the normal form gives, found
    locally. The rule reads functions, so factors that are views of one (an elementwise
    product wraps its operands in them) are read as the function renamed; where the rule
    does not apply, ``t`` is kept as it is."""
    viewed = [_view_of_function(f) for f in t.factors]
    factors = [f if v is None else v for f, v in zip(t.factors, viewed)]
    if not any(isinstance(f, Function) for f in factors):
        return t
    candidate = Product(factors, edges=t.edges)
    found = finished_product(candidate)
    return t if found is candidate else found


def _view_of_function(f: Expr):
    """A function renamed, where ``f`` is a view of it (the function times two-legged Deltas,
    each taking one of its edges to a free edge of ``f``); None otherwise."""
    if not isinstance(f, Product):
        return None
    cores = [g for g in f.factors if not isinstance(g, Delta)]
    if len(cores) != 1 or not isinstance(cores[0], Function):
        return None
    core, mapping = cores[0], {}
    for d in f.factors:
        if d is core:
            continue
        if len(d.edges) != 2:
            return None
        a, b = d.edges if d.edges[0] in core._shape else d.edges[::-1]
        if a not in core._shape or b in core._shape or b not in f._shape or a in mapping:
            return None
        mapping[a] = b
    if {mapping.get(e, e) for e in core.edges} != set(f.edges):
        return None
    return rename(core, mapping)
