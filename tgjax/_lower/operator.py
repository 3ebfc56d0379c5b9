"""Curvature for solvers: an expression as a ``lineax`` linear operator that is never formed.

``tg.linear_operator(H, in_edges)`` reads ``H`` as a matrix from the edges
``in_edges`` to its other edges. Its ``mv(v)`` is the lowered contraction
``H @ v``, which lowering builds as the gradient of a contraction wherever ``H``
is a derivative (``evaluation._derivative_contracted``): a Hessian-vector
product costs what ``jax.jvp(jax.grad(f))`` costs, and an 800,000-parameter
Hessian (2.6 TB dense) is never built. lineax solves with it (``CG``,
``GMRES``, ...), under ``jax.jit`` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import sympy

from .._ir.nodes import Expr, Product, Variable, variables_in
from .._simplify import OverBudget, budget, simplify
from .api import lower
from .evaluation import second_derivative

# Work (``_simplify.budget`` units) spent on proving a non-derivative symmetric by comparing
# normal forms; past it the operator is left untagged (lineax then treats it as general).
SYMMETRY_PROOF_BUDGET = 20_000


def linear_operator(expr: Expr, in_edges, sizes: Mapping | None = None, tags=()):
    """``expr`` as a linear map from its edges ``in_edges`` to its other edges, for lineax.

    Returns ``make``: ``make(**values)`` (or ``make(values)``) is a
    ``lineax.FunctionLinearOperator`` at those values of ``expr``'s variables.
    Its input is an array whose axes are ``in_edges`` in that order, its output
    one whose axes are the other edges in ``expr.edges`` order. ``mv`` runs the
    lowered ``expr @ v`` (a Hessian-vector product at forward-over-reverse's
    cost; ``expr`` itself is never formed); ``as_matrix()`` is the dense
    ``(prod(out), prod(in))`` matrix, built by lineax from ``mv`` on each basis
    vector. The operator carries ``lineax.symmetric_tag`` where ``expr`` is
    proven symmetric, pairing ``in_edges[k]`` with the k-th other edge: every
    Hessian ``f.grad(x).grad(x)`` with ``in_edges`` one of its two sets of edges,
    and any other expression whose normal form says so; ``tags`` are added.

    Examples:
        >>> import jax.numpy as jnp, lineax as lx
        >>> x, A = tg.Variable("x", i=3), tg.Variable("A", i=3, j=3)
        >>> H = (x @ A @ x.rename(i="j")).grad(x).grad(x, {"i": "k"})
        >>> make = tg.linear_operator(H, ["k"])
        >>> op = make(A=jnp.eye(3) * 2, x=jnp.ones(3))
        >>> op.mv(jnp.ones(3)).tolist(), lx.is_symmetric(op)
        ([4.0, 4.0, 4.0], True)
    """
    import lineax  # here, not when tgjax is imported: with equinox it takes a quarter of a second to load

    if not isinstance(expr, Expr):
        raise TypeError(f"tg.linear_operator: expected a tgjax expression, got {type(expr).__name__}.")
    in_edges = _checked_in_edges(expr, in_edges)
    out_edges = tuple(e for e in expr.edges if e not in in_edges)
    direction = Variable(_fresh_variable_name(expr), **{e: expr.shape[e] for e in in_edges})
    applied = Product([expr, direction], edges=out_edges)
    program = lower(applied, sizes=sizes)
    proven = _symmetric(expr, in_edges, out_edges)
    all_tags = frozenset(_as_tags(tags)) | ({lineax.symmetric_tag} if proven else frozenset())

    def make(values=None, /, **kwargs):
        given = _given(values, kwargs)
        if direction.name in given:
            raise ValueError(
                f"tg.linear_operator: {direction.name!r} is the operator's own input; pass the "
                f"values of the expression's variables only."
            )
        arrays, env = program._bind(given, {}, unbound={direction.name})
        dtype = jnp.result_type(float, *arrays)
        shape = tuple(int(sympy.sympify(size).subs(env)) for _, size in direction.decl)

        def mv(v):
            return program({**given, direction.name: v})

        return lineax.FunctionLinearOperator(mv, jax.ShapeDtypeStruct(shape, dtype), all_tags)

    make.symmetric = proven
    make.in_edges, make.out_edges = in_edges, out_edges
    return make


def _checked_in_edges(expr: Expr, in_edges) -> tuple:
    if isinstance(in_edges, str):
        in_edges = (in_edges,)
    in_edges = tuple(in_edges)
    unknown = [e for e in in_edges if e not in expr.shape]
    if unknown:
        raise ValueError(
            f"tg.linear_operator: in_edges {unknown} are not free edges of the expression; "
            f"its edges are {list(expr.edges)}."
        )
    if len(set(in_edges)) != len(in_edges):
        raise ValueError(f"tg.linear_operator: in_edges {list(in_edges)} name an edge twice; name each once.")
    if not in_edges:
        raise ValueError(
            f"tg.linear_operator: in_edges is empty; name the edges the operator takes in "
            f"(of {list(expr.edges)}), e.g. a Hessian's second set of edges."
        )
    return in_edges


def _fresh_variable_name(expr: Expr) -> str:
    taken = {v.name for v in variables_in([expr])}
    name = "v"
    while name in taken:
        name += "_"
    return name


def _as_tags(tags) -> Iterable:
    if isinstance(tags, (list, tuple, set, frozenset)):
        return tags
    return (tags,)


def _given(values, kwargs) -> dict:
    if values is not None and not isinstance(values, Mapping):
        raise TypeError(
            f"tg.linear_operator: pass the values as keywords make(x=...) or as one dict make({{x: ...}}); "
            f"got {type(values).__name__}."
        )
    given = {(k.name if isinstance(k, Variable) else k): v for k, v in (values or {}).items()}
    return {**given, **kwargs}


def _symmetric(expr: Expr, in_edges: tuple, out_edges: tuple) -> bool:
    """Whether ``expr`` is proven equal to itself with ``in_edges[k]`` and ``out_edges[k]`` swapped."""
    if len(in_edges) != len(out_edges):
        return False
    if any(sympy.sympify(expr.shape[a] - expr.shape[b]) != 0 for a, b in zip(in_edges, out_edges)):
        return False
    if _hessian_pairing(expr, in_edges, out_edges):
        return True
    swap = {**dict(zip(in_edges, out_edges)), **dict(zip(out_edges, in_edges))}
    try:
        with budget(SYMMETRY_PROOF_BUDGET):
            return simplify(expr) == simplify(expr.rename(swap))
    except OverBudget:
        return False


def _hessian_pairing(expr: Expr, in_edges: tuple, out_edges: tuple) -> bool:
    """``expr`` is ``d/dx (d f/dx)`` of a scalar ``f``, and the edges pair its two sets of new
    edges, declared edge by declared edge: symmetric by the symmetry of second derivatives."""
    found = second_derivative(expr)
    if found is None or found[1].expr.edges:
        return False
    outer, inner = found
    first = tuple(inner.new_names[e] for e, _ in outer.x.decl)
    second = tuple(outer.new_names[e] for e, _ in outer.x.decl)
    return (in_edges, out_edges) in ((second, first), (first, second))
