"""Value numbering: the same computation up to the names of free edges, decided locally.

``==`` decides isomorphism of whole networks (grouping, factor order and
inner names ignored); it must flatten nested products, so on the deeply
nested DAGs of reverse accumulation it costs time proportional to the whole
subexpression at every node. Passes that only need to recognise repeated
work (a node and its renamed copy, the same partial built twice) use a value
number instead: a node's number is read off its own fields and its
children's numbers, in constant time per child, as a compiler's value
numbering does. Equal numbers mean the same array up to relabelling free
edges; ``ports`` gives that relabelling (the k-th port of one node is the
k-th of the other). Unequal numbers say nothing.

A view (a node wrapped in identity Deltas that only relabel its edges,
``rename.view``) has its node's number: a renamed copy of a product whose
functions became views is then recognised as the product, and the reverse
sweep gives the two one cotangent (a GPT block's attention output was
backpropagated twice, once per name of its sequence edge).
"""

from __future__ import annotations

from .nodes import AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero
from .walk import parents_first


class Numbering:
    """Value numbers of the nodes seen so far; call it on a node for ``(number, ports)``."""

    def __init__(self):
        self._table: dict = {}   # structural key -> number
        self._nodes: dict = {}   # id -> (node, number, ports); the node keeps its id alive

    def __call__(self, t: Expr) -> tuple[int, tuple]:
        entry = self._nodes.get(id(t))
        if entry is None:
            pending = parents_first([t], follow=lambda u: id(u) not in self._nodes)
            for node in reversed(pending):
                if id(node) not in self._nodes:
                    seen = view_origin(node)
                    if seen is not None:
                        origin, mapping = seen
                        number, ports = self._nodes[id(origin)][1:]
                        ports = tuple(mapping.get(e, e) for e in ports)
                    else:
                        key, ports = _key(node, self)
                        number = self._table.setdefault(key, len(self._table))
                    self._nodes[id(node)] = (node, number, ports)
            entry = self._nodes[id(t)]
        return entry[1], entry[2]


def view_origin(t: Expr):
    """``(node, mapping)`` where ``t`` is ``node`` with its free edges renamed by ``mapping``
    through identity Deltas (a view), else None."""
    if not isinstance(t, Product) or len(t.factors) < 2:
        return None
    inner = [f for f in t.factors if not isinstance(f, Delta)]
    if len(inner) != 1:
        return None
    (origin,) = inner
    own, free = set(origin.edges), set(t.edges)
    mapping = {}
    for f in t.factors:
        if f is origin:
            continue
        if len(f.edges) != 2:
            return None
        a, b = f.edges
        if a in free:
            a, b = b, a
        if a not in own or a in free or b in own or b not in free or a in mapping:
            return None
        mapping[a] = b
    if len(mapping) + len(own & free) != len(own) or len(t.edges) != len(own):
        return None
    return origin, mapping


def _wiring(children, numbering) -> tuple[tuple, dict]:
    """Children as (number, labels of their ports), labels by first appearance."""
    labels: dict = {}
    entries = []
    for u in children:
        number, ports = numbering(u)
        entries.append((number, tuple(labels.setdefault(e, len(labels)) for e in ports)))
    return tuple(entries), labels


def _ports(t: Expr, labels: dict) -> tuple:
    return tuple(sorted(t.edges, key=labels.__getitem__))


def _key(t: Expr, numbering: Numbering):
    if isinstance(t, Variable):
        return ("var", t.name, t.decl, t.symmetric), tuple(t.edge_of(e) for e, _ in t.decl)
    if isinstance(t, Delta):
        return ("delta", t.size, len(t.edges)), t.edges
    if isinstance(t, (Zero, Convolution)):
        return (type(t).__name__, tuple(t._shape[e] for e in t.edges)), t.edges
    if isinstance(t, Product):
        entries, labels = _wiring(t.factors, numbering)
        free = tuple(sorted(labels[e] for e in t.edges))
        return ("product", entries, free), _ports(t, labels)
    if isinstance(t, Sum):
        entries, labels = _wiring(t.terms, numbering)
        return ("sum", t.weights, entries), _ports(t, labels)
    if isinstance(t, Function):
        entries, labels = _wiring(t.inputs, numbering)
        return ("function", t.spec, entries), _ports(t, labels)
    if isinstance(t, AlongEdge):
        entries, labels = _wiring([t.input], numbering)
        return ("along", t.spec, entries, tuple(labels[a] for a in t.axes)), _ports(t, labels)
    if isinstance(t, Derivative):
        entries, labels = _wiring([t.expr], numbering)
        new = tuple(t.new_names[e] for e, _ in t.x.decl)
        for e in new:
            labels.setdefault(e, len(labels))
        return ("derivative", t.x.key, entries, tuple(labels[e] for e in new)), _ports(t, labels)
    if isinstance(t, Expectation):
        entries, labels = _wiring([t.expr], numbering)
        moments = (numbering(t.mu), numbering(t.covar), tuple(t.covar_names.items()))
        return ("expectation", t.wrt.key, entries, moments), _ports(t, labels)
    raise NotImplementedError(f"value numbering: no rule for node type {type(t).__name__}")
