"""Factoring before lowering: pull a common factor out of the terms of a sum.

The normal form is a sum of products (``-X^T y + X^T sigmoid(X w)``); computing
it as written reads ``X`` once per term. When several terms contain the same
atom wired the same way (its free ports free, its other ports feeding the rest
of the term), ``A R1 + A R2 = A (R1 + R2)``, greedily and recursively:
``X^T (sigmoid(X w) - y)``, which is what backpropagation computes.
"""

from __future__ import annotations

import functools
from collections import defaultdict

from .._ir.nodes import AlongEdge, Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero
from .._ir.rename import rename
from .._ir.util import fresh_edge


def factor(t: Expr, size) -> Expr:
    """``t`` with common factors pulled out of its sums. ``size(edge size) -> int``
    ranks equally common factors: the largest is pulled out first, so that it
    is applied once, last, as in backpropagation."""
    return _factor(t, size)


@functools.singledispatch
def _factor(t: Expr, size) -> Expr:
    raise NotImplementedError(f"factor: no rule for node type {type(t).__name__}")


@_factor.register(Variable)
@_factor.register(Delta)
@_factor.register(Convolution)
@_factor.register(Zero)
def _(t, size):
    return t


@_factor.register
def _(t: Function, size):
    return Function(t.spec, [_factor(u, size) for u in t.inputs], edges=t.edges)


@_factor.register
def _(t: AlongEdge, size):
    return AlongEdge(t.spec, _factor(t.input, size), t.axes, edges=t.edges)


@_factor.register
def _(t: Product, size):
    return Product([_factor(f, size) for f in t.factors], edges=t.edges)


@_factor.register
def _(t: Derivative, size):
    raise AssertionError("internal error: derivatives are evaluated before lowering")


@_factor.register
def _(t: Sum, size):
    terms = [(w, _factor(u, size)) for w, u in zip(t.weights, t.terms)]
    return _factored_sum(terms, t.edges, size)


def _remainder_elements(key, shape, size) -> int:
    """The size of the sum left after pulling the factor out.

    Factoring pays when that sum is no larger than the factor (backprop's
    ``X^T (...)``); a larger one (an outer product that the terms contracted
    away early) would cost more than it saves.
    """
    canonical, rest_free = key
    n = 1
    for e in rest_free:
        n *= size(canonical._shape[e] if e in canonical._shape else shape[e])
    return n


def _elements(t: Expr, size) -> int:
    n = 1
    for s in t._shape.values():
        n *= size(s)
    return n


def _ports(f: Expr, term: Expr, deltas: list):
    """Port names for the inner edges of atom ``f`` in ``term``.

    ``@p{i}``: edge i feeds the rest of the term and becomes a new free edge of
    the remainder. A free edge name ``g``: a two-legged Delta ties edge i to
    the free edge ``g`` and nothing else, so the factor carries ``g`` itself. ``@s{i}:{g}``: edge i sits on a hyperedge (a Delta) that
    also carries the free edge ``g``; the remainder already carries that class
    through ``g``, so no new edge is needed (and none must be: a second free
    edge in one class would be a materialised diagonal).
    """
    free = set(term.edges)
    ports = {}
    shared = set()
    for i, e in enumerate(f.edges):
        if e in free:
            continue
        hyper = next((d for d in deltas if e in d._shape), None)
        g = [x for x in hyper.edges if x in free] if hyper is not None else []
        if g and len(hyper.edges) == 2:
            # the Delta only ties this port to a free edge: the port is that edge
            if g[0] in shared:
                return None
            shared.add(g[0])
            ports[e] = g[0]
        elif g:
            if g[0] in shared:
                return None
            shared.add(g[0])
            ports[e] = f"@s{i}:{g[0]}"
        else:
            ports[e] = f"@p{i}"
    return ports


def _occurrences(term: Expr):
    """(key, index) for each non-Delta atom of a term; the key says what the atom is and how it is wired."""
    factors = term.factors if isinstance(term, Product) else (term,)
    deltas = [f for f in factors if isinstance(f, Delta)]
    free = set(term.edges)
    for k, f in enumerate(factors):
        if isinstance(f, Delta):
            continue
        ports = _ports(f, term, deltas)
        if ports is None:
            continue
        canonical = rename(f, ports)
        new = {p for p in ports.values() if p.startswith("@p")}
        rest_free = frozenset((free - set(f.edges) - set(ports.values())) | new)
        yield (canonical, rest_free), k


def _split(term: Expr, k: int, names: dict):
    """The term without its k-th factor. That factor's ``@p`` edges are renamed
    by ``names``; its ``@s`` edges are taken off the Delta they share."""
    factors = list(term.factors) if isinstance(term, Product) else [term]
    f = factors.pop(k)
    deltas = [g for g in factors if isinstance(g, Delta)]
    ports = _ports(f, term, deltas)
    inner = {e: names[p] for e, p in ports.items() if p.startswith("@p")}
    detached = {e for e, p in ports.items() if p.startswith("@s")}
    carried = {e for e, p in ports.items() if not p.startswith("@")}
    rest = []
    for g in factors:
        if isinstance(g, Delta) and carried & set(g.edges):
            continue  # the factor now carries this free edge itself
        if isinstance(g, Delta) and detached & set(g.edges):
            g = Delta._make(g.size, tuple(e for e in g.edges if e not in detached))
        rest.append(rename(g, {e: inner[e] for e in g.edges if e in inner}))
    taken = set(f._shape) | {ports[e] for e in carried}
    rest_edges = [e for e in term.edges if e not in taken] + list(inner.values())
    if len(rest) == 1 and set(rest[0].edges) == set(rest_edges):
        return rest[0]
    return Product(rest, edges=tuple(rest_edges))


def _factored_sum(terms, order, size) -> Expr:
    while True:
        groups = defaultdict(dict)  # key -> {term index: factor index}
        for j, (_, u) in enumerate(terms):
            for key, k in _occurrences(u):
                groups[key].setdefault(j, k)
        shape = {e: s for _, u in terms for e, s in u._shape.items()}
        worth = [
            kv for kv in groups.items()
            if len(kv[1]) >= 2 and _remainder_elements(kv[0], shape, size) <= _elements(kv[0][0], size)
        ]
        best = max(worth, key=lambda kv: (len(kv[1]), _elements(kv[0][0], size)), default=None)
        if best is None:
            break
        (canonical, rest_free), members = best
        names = {p: fresh_edge() for p in canonical.edges if p.startswith("@")}
        rest_order = tuple(names.get(e, e) for e in sorted(rest_free))
        rests = [(terms[j][0], _split(terms[j][1], k, names)) for j, k in members.items()]
        inner = _factored_sum(rests, rest_order, size)
        # An @s port rejoins its free edge g through a three-legged Delta.
        joins, relabel = [], {}
        for p in canonical.edges:
            if p.startswith("@s"):
                g = p.split(":", 1)[1]
                relabel[g] = fresh_edge()
                joins.append(Delta._make(canonical._shape[p], (names[p], relabel[g], g)))
        inner = rename(inner, relabel) if relabel else inner
        merged = Product([rename(canonical, names), inner, *joins], edges=tuple(order))
        terms = [(1, merged)] + [wt for j, wt in enumerate(terms) if j not in members]
    if len(terms) == 1 and terms[0][0] == 1:
        u = terms[0][1]
        return u if tuple(u.edges) == tuple(order) else Product([u], edges=tuple(order))
    return Sum([u for _, u in terms], [w for w, _ in terms], edges=tuple(order))
