"""What one product contracts: its network of operands and Deltas, shaped for cost.

A product's factors may be other nodes of the DAG, each lowered to one array.
Three of them are better not materialised on their own (reverse accumulation
makes all three):

- a thin product (Deltas around one factor: a view, an identity seed, a
  broadcast) or an expanding one (an outer product, a diagonal) is dissolved
  into the network that consumes it, where its Deltas are free hyperedges;
- a scaled term (a sum of one term) becomes a weight on the result;
- a small sum factor is distributed over (``distributed``) where
  materialising it would write edges the rest contracts away, or would
  turn structured terms into one dense operand.
"""

from __future__ import annotations

import sympy

from .._ir.nodes import Convolution, Delta, Expr, Product, Sum
from .._ir.rename import rename
from .._ir.structural import window_of
from .._ir.util import UnionFind, fresh_edge
from .lookup import Lookup, gathered, scattered_lookups, selector


def _is_thin(t: Expr, program) -> bool:
    """A product that is Deltas around at most one operand, once its thin factors are
    dissolved too: a seed, a view, a broadcast. (Memoised per program: views nest.)"""
    if not isinstance(t, Product):
        return False
    thin = program.thin.get(id(t))
    if thin is None:
        operands = 0
        for f in t.factors:
            if isinstance(f, Delta):
                continue
            operands += 1 if not _is_thin(f, program) else sum(not isinstance(g, Delta) for g in _dissolved(f, program))
            if operands > 1:
                break
        thin = operands <= 1
        program.thin[id(t)] = thin
    return thin


def _dissolved(t: Product, program) -> list:
    """The factors of ``t`` with its thin factors dissolved (for a thin ``t``: Deltas and at most one operand)."""
    out = []
    for f in t.factors:
        out.extend(_dissolved(f, program) if _is_thin(f, program) else [f])
    return out


def network(t: Product, program):
    """The operands, Deltas, convolutions and edge sizes of the network ``t`` contracts,
    the scalar weight it carries, and the one-hots to add the rest into (``lookup.py``), if any.

    Nested products that are thin or expanding (``_dissolves``) are dissolved
    into it, their inner edges renamed apart, and so are scaled terms (a sum
    of one term) as a weight: their Deltas are then free hyperedges of this
    network, where on their own they would be materialised (an identity seed
    as a dense matrix, an outer product the consumer sums over at once).
    """
    operands, deltas, convolutions, sizes, lookups = [], [], [], {}, []
    weight = sympy.Integer(1)
    pending = [(f, {}) for f in t.factors]
    while pending:
        f, names = pending.pop()
        for e, s in f._shape.items():
            sizes[names.get(e, e)] = program.size(s)
        if isinstance(f, Delta):
            deltas.append(tuple(names.get(e, e) for e in f.edges))
        elif isinstance(f, Convolution):
            convolutions.append(rename(f, {e: n for e, n in names.items() if e in f._shape}))
        elif isinstance(f, Sum) and len(f.terms) == 1:
            weight *= f.weights[0]
            pending.append((f.terms[0], names))
        elif _dissolves(f, program):
            scoped = {**{e: fresh_edge() for e in f.inner_edges}, **{e: names.get(e, e) for e in f.edges}}
            pending.extend((g, scoped) for g in f.factors)
        elif (found := selector(f)) is not None:
            index, edge = found
            value = program.value(index)
            lookups.append(Lookup(f, names, value, tuple(names.get(e, e) for e in value.edges), names.get(edge, edge), {},
                                  window_of(getattr(index, "name", ""))))
        else:
            v = program.value(f)
            operands.append((v.name, tuple(names.get(e, e) for e in v.edges)))
    if lookups:
        # a lookup meets its table and the rest through the views' renaming Deltas: joined first
        operands, deltas, convolutions, lookups = _joined_with_lookups(operands, deltas, convolutions, lookups, t)
    operands, lookups = gathered(operands, deltas, set(t.edges), lookups, sizes, program)
    scatters = scattered_lookups(operands, deltas, set(t.edges), lookups) if not convolutions else ()
    if not scatters:
        for lookup in lookups:  # the dense one-hot, same value
            v = program.value(lookup.node)
            named = (lookup.names.get(e, e) for e in v.edges)
            operands.append((v.name, tuple(lookup.joined.get(e, e) for e in named)))
    operands, deltas, convolutions = _joined(operands, deltas, convolutions, set(t.edges))
    return operands, deltas, convolutions, sizes, weight, scatters


def _joined_with_lookups(operands, deltas, convolutions, lookups, t: Product):
    """``_joined``, the lookups' edges taken as ends too and renamed with the rest; each lookup
    gains the renaming of its own edges (for the dense one-hot, where it stays one)."""
    ends = [(None, (*lookup.index_edges, lookup.edge)) for lookup in lookups]
    joined, deltas, convolutions = _joined(operands + ends, deltas, convolutions, set(t.edges))
    renamed = []
    for lookup, (_, edges) in zip(lookups, joined[len(operands):]):
        before = (*lookup.index_edges, lookup.edge)
        renamed.append(lookup._replace(index_edges=edges[:-1], edge=edges[-1], joined=dict(zip(before, edges))))
    return joined[:len(operands)], deltas, convolutions, renamed


def _joined(operands, deltas, convolutions, free: set):
    """The network with every Delta class that has exactly two ends made a plain edge.

    A view's identity Deltas chain two edges that mean one index; named as one
    edge, the operands meet directly, which is what the convolution pairing
    (and a reader of the generated code) looks for. Other classes keep their
    Deltas: the planner makes them hyperedges.
    """
    classes = UnionFind()
    find = classes.find
    for edges in deltas:
        classes.join(edges)
    ends: dict = {}
    for edges in [e for _, e in operands] + [c.edges for c in convolutions] + [tuple(free)]:
        for e in edges:
            if e in classes:
                ends.setdefault(find(e), []).append(e)
    renames, kept = {}, []
    for edges in deltas:
        # a free edge that an operand carries is one end, not two
        members = list(dict.fromkeys(ends.get(find(edges[0]), [])))
        if len(members) == 2 and not set(members) <= free:
            keep = next((e for e in members if e in free), members[0])
            renames.update({e: keep for e in members if e != keep})
        else:
            kept.append(edges)
    if not renames:
        return operands, deltas, convolutions
    operands = [(name, tuple(renames.get(e, e) for e in edges)) for name, edges in operands]
    convolutions = [rename(c, {e: renames[e] for e in c.edges if e in renames}) for c in convolutions]
    return operands, kept, convolutions


def _dissolves(f: Expr, program) -> bool:
    """A nested product that is better contracted inside its consumer's network than
    materialised: a thin one, or one larger than every array it is made of (an
    outer product, a broadcast, a diagonal). Memoised per program."""
    if not isinstance(f, Product):
        return False
    dissolves = program.dissolves.get(id(f))
    if dissolves is None:
        dissolves = _is_thin(f, program) or all(program.elements(g) < program.elements(f) for g in _arrays(f, program))
        program.dissolves[id(f)] = dissolves
    return dissolves


def _arrays(f: Product, program) -> list:
    """The operands ``f`` contracts once every factor that dissolves is dissolved."""
    out = []
    for g in f.factors:
        if not isinstance(g, Delta):
            out.extend(_arrays(g, program) if _dissolves(g, program) else [g])
    return out


# A sum factor of at most this many terms may be distributed over.
_MAX_DISTRIBUTED_TERMS = 4


def distributed(t: Product, program) -> Sum | None:
    """``t`` distributed over a small sum factor, where that is cheaper, or None.

    It is when the sum is larger than ``t`` and than the other factors, and
    some term is structured (``_structured``): materialising it writes edges
    that the rest of the network is about to contract away (a cotangent
    accumulated from two consumers, each term carrying an edge of its own).
    Where every term is dense at the sum's size, materialising it costs an
    addition per entry and term, and each term contracted apart costs the
    whole contraction again (a GELU written from primitives: its cotangent's
    three dense terms each met ``X`` in a matrix product of their own, 1.38x
    JAX's FLOPs for a one-layer MLP). And it is when every term is structured:
    materialised, the sum is a dense operand, contracted at full cost.
    """
    if any(isinstance(f, Convolution) for f in t.factors):
        # a convolution meets its cotangent whole, as one lax convolution;
        # term by term, a constant term becomes a sum over windows (im2col)
        return None
    for k, f in enumerate(t.factors):
        inner = _sum_inside(f, program)
        if inner is None or len(inner.terms) > _MAX_DISTRIBUTED_TERMS:
            continue
        rest = t.factors[:k] + t.factors[k + 1:]
        # Larger than the result and than anything it meets: the sum is what
        # blows up. (Backpropagation's X^T (s - y) keeps its sum: X is larger.)
        size = program.elements(inner)
        larger = size > program.elements(t) and all(size > program.elements(g) for g in rest if not isinstance(g, Delta))
        structured = [_structured(u, program) for u in inner.terms]
        if (larger and any(structured)) or all(structured):
            terms = [Product(rest + (_with_core(f, u, program),), edges=t.edges) for u in inner.terms]
            return Sum(terms, inner.weights, edges=t.edges)
    return None


def _structured(t: Expr, program) -> bool:
    """Whether ``t`` is made of arrays smaller than itself: a broadcast, a diagonal,
    an outer product (or a sum of such). A dense sum of such terms (a centring
    matrix ``I - 1 1^T / n``) is cheaper contracted term by term than materialised."""
    if isinstance(t, Sum):
        return all(_structured(u, program) for u in t.terms)
    parts = _arrays(t, program) if isinstance(t, Product) else [t]
    return max((program.elements(g) for g in parts), default=1) < program.elements(t)


def _sum_inside(f: Expr, program) -> Sum | None:
    """The sum that ``f`` is, or that a thin product ``f`` (a view of it) wraps."""
    if _is_thin(f, program):
        cores = [g for g in _dissolved(f, program) if not isinstance(g, Delta)]
        f = cores[0] if len(cores) == 1 else None
    return f if isinstance(f, Sum) else None


def _with_core(f: Expr, term: Expr, program) -> Expr:
    """``f`` with the sum inside it (``_sum_inside``) replaced by one of its terms."""
    if isinstance(f, Sum):
        return term
    factors = [g if isinstance(g, Delta) else _with_core(g, term, program) if _is_thin(g, program) else term
               for g in f.factors]
    return Product(factors, edges=f.edges)
