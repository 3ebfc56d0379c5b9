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

from .._ir.nodes import AlongEdge, Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero, rebuilt
from .._ir.numbering import Numbering
from .._ir.rename import view
from .._ir.util import fresh_edge
from .._ir.walk import parents_first


def factor_all(outputs, size) -> list:
    """Each output with common factors pulled out of its sums. ``size(edge size) -> int``
    ranks equally common factors: the largest is pulled out first, so that it
    is applied once, last, as in backpropagation. One walk for all outputs: a
    node they share (a loss's forward pass, read by each of its gradients) is
    factored once, not once per output."""
    ctx = _Context(size)
    # Children first, each shared node once: a rebuilt node keeps sharing its
    # rebuilt children (a derivative shares the forward pass it is built on).
    for node in reversed(parents_first(list(outputs))):
        ctx.memo[id(node)] = _factor(node, ctx)
    return [ctx.memo[id(t)] for t in outputs]


class _Context:
    """The size function and the nodes factored so far (id -> result)."""

    def __init__(self, size):
        self.size = size
        self.memo: dict = {}
        self.numbering = Numbering()

    def __call__(self, u: Expr) -> Expr:
        return self.memo[id(u)]


@functools.singledispatch
def _factor(t: Expr, ctx) -> Expr:
    raise NotImplementedError(f"factor: no rule for node type {type(t).__name__}")


@_factor.register(Variable)
@_factor.register(Delta)
@_factor.register(Convolution)
@_factor.register(Zero)
def _(t, ctx):
    return t


@_factor.register(Function)
@_factor.register(AlongEdge)
@_factor.register(Product)
def _(t, ctx):
    return rebuilt(t, [ctx(u) for u in t.args])


@_factor.register
def _(t: Derivative, ctx):
    raise AssertionError("internal error: derivatives are evaluated before lowering")


@_factor.register
def _(t: Sum, ctx):
    terms = [(w, ctx(u)) for w, u in zip(t.weights, t.terms)]
    return _factored_sum(terms, t.edges, ctx)


def _remainder_elements(atom: "_Atom", shape, size) -> int:
    """The size of the sum left after pulling the factor out.

    Factoring pays when that sum is no larger than the factor (backprop's
    ``X^T (...)``); a larger one (an outer product that the terms contracted
    away early) would cost more than it saves.
    """
    port_sizes = {p: atom.node._shape[e] for e, p in atom.ports.items()}
    n = 1
    for e in atom.rest_free:
        n *= size(port_sizes[e] if e in port_sizes else shape[e])
    return n


def _elements(t: Expr, size) -> int:
    n = 1
    for s in t._shape.values():
        n *= size(s)
    return n


class _Atom:
    """One factor of a term: the node, its edges' ports, and the free edges of the rest."""

    def __init__(self, node: Expr, ports: dict, rest_free: frozenset):
        self.node = node
        self.ports = ports
        self.rest_free = rest_free

    def key(self, numbering) -> tuple:
        """Equal for atoms that compute the same array wired the same way (value numbers, not ``==``:
        hashing a deep subexpression costs time proportional to it, at every sum)."""
        number, order = numbering(self.node)
        return number, tuple(self.ports.get(e, e) for e in order), self.rest_free


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
    """(atom, index) for each non-Delta factor of a term."""
    factors = term.factors if isinstance(term, Product) else (term,)
    deltas = [f for f in factors if isinstance(f, Delta)]
    free = set(term.edges)
    for k, f in enumerate(factors):
        if isinstance(f, Delta):
            continue
        ports = _ports(f, term, deltas)
        if ports is None:
            continue
        new = {p for p in ports.values() if p.startswith("@p")}
        rest_free = frozenset((free - set(f.edges) - set(ports.values())) | new)
        yield _Atom(f, ports, rest_free), k


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
        rest.append(view(g, {e: inner[e] for e in g.edges if e in inner}))
    taken = set(f._shape) | {ports[e] for e in carried}
    rest_edges = [e for e in term.edges if e not in taken] + list(inner.values())
    if len(rest) == 1 and set(rest[0].edges) == set(rest_edges):
        return rest[0]
    return Product(rest, edges=tuple(rest_edges))


def _views_opened(term: Expr) -> Expr:
    """``term`` with the products it only relabels opened: ``δ[s,a] (W h)`` as ``δ[s,a] W h``,
    and a factor ``g[a,f] δ[a,s]`` as its two factors.

    The reverse sweep hands a cotangent on under its class representative's
    names, so one contribution to a sum can arrive behind a view while another
    carries the same factor at top level (a post-layer-norm block's
    ``W2 c1 + δ (W2 c2)``); opened, both show ``W2``, and it is pulled out once.
    What is opened: the term itself where it is Deltas around one product, and
    each factor that is a view (two-legged Deltas around one operand). A
    product shared as a whole is not a view, and keeps its value.
    """
    if not isinstance(term, Product):
        return term
    cores = [f for f in term.factors if not isinstance(f, Delta)]
    factors = list(term.factors)
    if len(cores) == 1 and isinstance(cores[0], Product):
        factors = _spliced(factors, cores[0], term)
    for f in [f for f in factors if _is_view(f)]:
        factors = _spliced(factors, f, term)
    if factors == list(term.factors):
        return term
    return Product(factors, edges=term.edges)


def _is_view(f: Expr) -> bool:
    if not isinstance(f, Product):
        return False
    deltas = [g for g in f.factors if isinstance(g, Delta)]
    return len(f.factors) - len(deltas) == 1 and all(len(d.edges) == 2 for d in deltas)


def _spliced(factors: list, nested: Product, term: Product) -> list:
    """``factors`` with ``nested`` replaced by its own factors, its inner edges renamed apart
    from every other edge of the term."""
    taken = {e for f in factors if f is not nested for e in f.edges} | set(term.edges)
    apart = {e: fresh_edge() for e in nested.inner_edges if e in taken}
    inner = [view(g, {e: apart[e] for e in g.edges if e in apart}) for g in nested.factors]
    k = next(k for k, f in enumerate(factors) if f is nested)
    return factors[:k] + inner + factors[k + 1:]


def _factored_sum(terms, order, ctx) -> Expr:
    size = ctx.size
    terms = [(w, _views_opened(u)) for w, u in terms]
    while True:
        groups = defaultdict(dict)  # key -> {term index: factor index}
        atoms = {}                  # key -> the first atom with it
        for j, (_, u) in enumerate(terms):
            for atom, k in _occurrences(u):
                key = atom.key(ctx.numbering)
                atoms.setdefault(key, atom)
                groups[key].setdefault(j, k)
        shape = {e: s for _, u in terms for e, s in u._shape.items()}
        worth = [
            (atoms[key], members) for key, members in groups.items()
            if len(members) >= 2 and _remainder_elements(atoms[key], shape, size) <= _elements(atoms[key].node, size)
        ]
        best = max(worth, key=lambda am: (len(am[1]), _elements(am[0].node, size)), default=None)
        if best is None:
            break
        atom, members = best
        names = {p: fresh_edge() for p in atom.ports.values() if p.startswith("@")}
        rest_order = tuple(names.get(e, e) for e in sorted(atom.rest_free))
        rests = [(terms[j][0], _split(terms[j][1], k, names)) for j, k in members.items()]
        inner = _factored_sum(rests, rest_order, ctx)
        # An @s port rejoins its free edge g through a three-legged Delta.
        joins, relabel = [], {}
        for e, p in atom.ports.items():
            if p.startswith("@s"):
                g = p.split(":", 1)[1]
                relabel[g] = fresh_edge()
                joins.append(Delta._make(atom.node._shape[e], (names[p], relabel[g], g)))
        inner = view(inner, relabel) if relabel else inner
        common = view(atom.node, {e: names.get(p, p) for e, p in atom.ports.items()})
        merged = Product([common, inner, *joins], edges=tuple(order))
        terms = [(1, merged)] + [wt for j, wt in enumerate(terms) if j not in members]
    if len(terms) == 1 and terms[0][0] == 1:
        u = terms[0][1]
        return u if tuple(u.edges) == tuple(order) else Product([u], edges=tuple(order))
    return _scaled_out(terms, order, ctx)


def _scaled_out(terms, order, ctx) -> Expr:
    """The sum of weighted ``terms`` as a scale times a sum in which one term, the same
    whatever the terms' order (the least value number), has weight 1.

    Two sums that differ by a scale then share one value (``W - 1/h rowsum(W)`` and
    ``-h W + rowsum(W)`` in a layer norm's forward pass and gradient), and so does
    every product that contains them: the scale becomes a weight on the product,
    and the contraction (``X`` times that sum) is computed once (the layer norm of
    ``tests/test_cost.py``: 1.5x JAX's FLOPs before, one matrix product fewer now).
    A pivot weight of -1 is left alone: ``-y + t`` as ``-(y - t)`` rearranged the
    tensor-train gradient's program, which then ran 1.4x slower.
    """
    pivot = min(range(len(terms)), key=lambda j: ctx.numbering(terms[j][1])[0])
    scale = terms[pivot][0]
    if len(terms) == 1 or scale in (1, -1, 0):
        return Sum([u for _, u in terms], [w for w, _ in terms], edges=tuple(order))
    inner = Sum([u for _, u in terms], [w / scale for w, _ in terms], edges=tuple(order))
    return Sum([inner], [scale], edges=tuple(order))
