"""Renaming free edges: one singledispatch pass over the node types.

``rename(t, mapping)`` assumes the mapping was validated (keys are free edges
of ``t``, the result has unique names). Inner edges that would clash with a
new name are given fresh names first, so nothing is ever captured.
"""

from __future__ import annotations

import functools
import threading

import sympy

from .nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero, rebuilt,
    renamed_origin,
)
from .util import fresh_edge
from .walk import parents_first


_calls = threading.local()


def rename(t: Expr, mapping: dict) -> Expr:
    """``t`` with free edges renamed by ``mapping``: a new node, rebuilt down to the leaves and
    functions that carry them (a function's copy renames its inputs only when they are read).

    A node shared by several parents is rebuilt once per mapping within one
    call: a DAG (a residual network's ``h`` used twice per layer) would
    otherwise be rebuilt once per path, exponentially in depth.
    """
    memo = getattr(_calls, "memo", None)
    if memo is None:
        return rename_in(t, mapping, {})
    key = (id(t), tuple(sorted(mapping.items())))
    entry = memo.get(key)
    if entry is None:
        result = _rename(t, mapping)
        if result is not t:
            _carry_caches(t, result, mapping)
        # the node is kept with its result, so that its id is not reused while the memo lives
        entry = memo[key] = (t, result)
    return entry[1]


def rename_in(t: Expr, mapping: dict, memo: dict) -> Expr:
    """``rename(t, mapping)`` within ``memo``, the memo of the call that began it.

    A renamed function renames its inputs only when they are read (see
    ``Function._renamed``), after that call has returned; it keeps the call's
    memo, so that what the call shared (a DAG's node reached by two paths)
    stays shared when it is finished later.
    """
    outer = getattr(_calls, "memo", None)
    _calls.memo = memo
    try:
        return rename(t, mapping)
    finally:
        _calls.memo = outer


def _carry_caches(t: Expr, result: Expr, mapping: dict):
    """What a rename cannot change: the structure's signature (its ports relabelled) and the
    variables.

    Without this every renamed copy, and every copy inside it, is hashed again
    from scratch: quadratic in depth for the chains a derivative renames.
    """
    from .identity import relabelled

    if t._sig is not None and result._sig is None:
        result._sig = relabelled(t._sig, mapping)
    if t._vars is not None and result._vars is None:
        result._vars = t._vars


@functools.singledispatch
def _rename(t: Expr, mapping: dict) -> Expr:
    raise NotImplementedError(f"rename: no rule for node type {type(t).__name__}")


def _new_order(t: Expr, mapping: dict):
    return tuple(mapping.get(e, e) for e in t.edges)


@_rename.register
def _(t: Variable, mapping):
    if not mapping:
        return t
    return Variable._renamed(t, _new_order(t, mapping))


@_rename.register
def _(t: Delta, mapping):
    if not mapping:
        return t
    return Delta._make(t.size, _new_order(t, mapping))


@_rename.register
def _(t: Convolution, mapping):
    if not mapping:
        return t
    return Convolution._make(_new_order(t, mapping), {mapping.get(e, e): s for e, s in t._shape.items()})


@_rename.register
def _(t: Zero, mapping):
    if not mapping:
        return t
    return Zero._make({mapping.get(e, e): s for e, s in t.shape.items()})


def freshen_inner(t: Product, avoid: set) -> Product:
    """The same product with every inner edge that is in ``avoid`` renamed to a fresh name."""
    avoid = set(avoid)
    inner = t.inner_edges
    # in factor order, so the fresh names (and the letters printed for them) never depend on hashing
    clash = [e for e in dict.fromkeys(e for f in t.factors for e in f.edges) if e in inner and e in avoid]
    if not clash:
        return t
    fresh = {e: fresh_edge() for e in clash}
    factors = [rename(f, {e: fresh[e] for e in f.edges if e in fresh}) for f in t.factors]
    return Product(factors, edges=t.edges, stands_for=t.stands_for)


@_rename.register
def _(t: Product, mapping):
    if not mapping:
        return t
    t = freshen_inner(t, set(mapping.values()))
    free = set(t.edges)
    factors = [rename(f, {e: mapping[e] for e in f.edges if e in mapping and e in free}) for f in t.factors]
    # a derivative's normal form follows it through renaming, so == implies equal normal forms
    stands_for = None if t.stands_for is None else rename(t.stands_for, mapping)
    return Product(factors, edges=_new_order(t, mapping), stands_for=stands_for)


@_rename.register
def _(t: Sum, mapping):
    if not mapping:
        return t
    return Sum._renamed(t, mapping, _calls.memo)


@_rename.register
def _(t: Function, mapping):
    if not mapping:
        return t
    return Function._renamed(t, mapping, _calls.memo)


@_rename.register
def _(t: Derivative, mapping):
    if not mapping:
        return t
    inner = {e: n for e, n in mapping.items() if e in t.expr._shape}
    new_names = {e: mapping.get(n, n) for e, n in t.new_names.items()}
    # The inner expression's free edges may need to pass through names that
    # the new edges give up, so rename it through temporary fresh names.
    temp = {e: fresh_edge() for e in inner}
    expr = rename(rename(t.expr, temp), {temp[e]: n for e, n in inner.items()})
    return Derivative._make(expr, t.x, new_names)


@_rename.register
def _(t: Expectation, mapping):
    if not mapping:
        return t
    # mu and covar carry the variable's own edge names, bound inside the node
    return Expectation._make(rename(t.expr, mapping), t.wrt, t.mu, t.covar, t.covar_names)


@_rename.register
def _(t: AlongEdge, mapping):
    if not mapping:
        return t
    u, axes = t.input, t.axes
    clash = [a for a in axes if a in mapping.values()] if not t.spec.keeps_edge else []
    if clash:
        # consumed axes are inner: move them out of the way of the new names
        fresh = {a: fresh_edge() for a in clash}
        u, axes = rename(u, fresh), tuple(fresh.get(a, a) for a in axes)
    inner = {e: n for e, n in mapping.items() if e in u._shape}
    return AlongEdge(t.spec, rename(u, inner), tuple(inner.get(a, a) for a in axes), edges=_new_order(t, mapping))


def view(t: Expr, mapping: dict) -> Expr:
    """``t`` with free edges renamed by ``mapping``, sharing ``t`` itself.

    ``rename`` rebuilds a node and the products and sums below it, down to
    the leaves and functions. A view does not: leaves are renamed
    outright, any other node is wrapped in a product with one identity Delta
    per renamed edge, which lowering turns into a relabelling of one array.
    Passes over large DAGs use views, so that renaming costs constant time.
    """
    mapping = {e: n for e, n in mapping.items() if e != n}
    if not mapping:
        return t
    if isinstance(t, (Variable, Delta, Zero)):
        return rename(t, mapping)
    if set(mapping.values()) & set(t.edges):
        # A permutation of t's own names: pass through fresh names first.
        temp = {e: fresh_edge() for e in mapping}
        t = view(t, temp)
        mapping = {temp[e]: n for e, n in mapping.items()}
    # t's mapped edges meet their Deltas inside the product; the rest pass through.
    order = tuple(mapping.get(e, e) for e in t.edges)
    return Product([t, *(Delta._make(t._shape[e], (e, n)) for e, n in mapping.items())], edges=order)


def is_one(t: Expr) -> bool:
    """The scalar 1 as an empty product (a gradient's seed), which contracts into nothing."""
    return isinstance(t, Product) and not t.factors


def hadamard(a: Expr, b: Expr) -> Expr:
    """Elementwise on the edges ``a`` and ``b`` share, outer on the rest; neither is copied (views)."""
    shared = [e for e in a.edges if e in b._shape]
    if not shared:
        if is_one(a):
            return b
        return Product([a, b], edges=a.edges + tuple(e for e in b.edges if e not in a._shape))
    left = {e: fresh_edge() for e in shared}
    right = {e: fresh_edge() for e in shared}
    joins = [Delta._make(a._shape[e], (left[e], right[e], e)) for e in shared]
    order = a.edges + tuple(e for e in b.edges if e not in a._shape)
    return Product([view(a, left), view(b, right), *joins], edges=order)


def mean_over_renamings(t: Expr, mappings) -> Expr:
    """The mean of ``t`` with its free edges renamed by each mapping (each a permutation of
    some of its edges): a symmetrisation, ``(A + A^T) / 2`` for the identity and one swap."""
    views = [view(t, {a: b for a, b in m.items() if a != b}) for m in mappings]
    if len(views) == 1:
        return views[0]
    return Sum(views, [sympy.Rational(1, len(views))] * len(views), edges=t.edges)


def sharing_args(node: Expr) -> tuple:
    """A node's children for a pass that shares renamed copies: a renamed function's or sum's
    is the node it was renamed from. Reading the copy's children would build them: every copy
    of the chain below each partial of a deep derivative's normal form (quadratic in depth)."""
    if renamed_origin(node) is not None:
        return (node.renamed_from[0],)
    return node.args


def rebuilt_sharing(roots, rebuild, copy, lazy=(Function, Sum)) -> list:
    """Each of ``roots`` rebuilt bottom-up, each node once: ``rebuild(node, new_args)`` for a
    node, ``copy(node, new_origin)`` for a renamed copy of one of the ``lazy`` types, which
    is never read below its origin (``sharing_args``); a renamed copy of another type is
    rebuilt from its children, renamed as it reads them."""

    def is_copy(node) -> bool:
        return isinstance(node, lazy) and renamed_origin(node) is not None

    def children(node):
        return (node.renamed_from[0],) if is_copy(node) else node.args

    memo: dict = {}
    for node in reversed(parents_first(roots, children=children)):
        if is_copy(node):
            memo[id(node)] = copy(node, memo[id(node.renamed_from[0])])
        else:
            memo[id(node)] = rebuild(node, [memo[id(a)] for a in node.args])
    return [memo[id(t)] for t in roots]


def with_views(exprs, same_value=None) -> tuple:
    """``exprs`` with every renamed copy of a function replaced by a view of the function it
    was renamed from: the same values, as a DAG that shares each function once, which the
    passes of lowering walk in time linear in the expression.

    ``same_value(node, new)`` is called for each node rebuilt, so that a later
    pass can carry over what it knows of ``node`` (its normal form) to ``new``,
    which has the same value and edges."""

    def keeping_meaning(node, args):
        new = rebuilt(node, args)
        if new is not node:
            if node.stands_for is not None:
                # a nested .grad result keeps its derivative
                new = Product(new.factors, edges=new.edges, stands_for=node.stands_for)
            if same_value is not None:
                same_value(node, new)
        return new

    # A renamed sum stays a sum of renamed terms: lowering's factoring finds the work its
    # terms share with other nodes through them, not through a view of the whole sum (a
    # post-layer-norm block's loss and gradients: 1.062x JAX's FLOPs so, 1.075x as views).
    return tuple(rebuilt_sharing(exprs, keeping_meaning, lambda node, origin: view(origin, node.renamed_from[1]),
                                 lazy=(Function,)))
