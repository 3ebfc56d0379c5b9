"""Identity of expressions: a canonical hash and an exact isomorphism check.

Two expressions are equal when they are the same tensor network up to the
names of inner edges (API.md). ``signature`` computes, bottom-up and cached,
a hash of the structure that ignores all edge names plus a colour per free
edge (its role); products refine colours over the network (Weisfeiler-Lehman
style). The named hash combines both with the free edge names. Colour
refinement cannot tell some networks apart (a 6-cycle and two 3-cycles), so
equal hashes are confirmed by an exact isomorphism test on a labelled graph.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict

import networkx as nx

from .nodes import AlongEdge, Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero
from .rename import rename
from .util import combine, fresh_edge, stable_hash


class Signature:
    """``shape``: hash of the structure ignoring edge names; ``ports``: edge -> colour."""

    __slots__ = ("shape", "ports")

    def __init__(self, shape: int, ports: dict):
        self.shape = shape
        self.ports = ports


def signature(t: Expr) -> Signature:
    if t._sig is None:
        t._sig = _signature(t)
    return t._sig


def named_hash(t: Expr) -> int:
    sig = signature(t)
    return combine(sig.shape, tuple(sorted((stable_hash(e), c) for e, c in sig.ports.items())))


def sort_key(t: Expr) -> tuple:
    """A deterministic order for canonical term order.

    The structure comes first, so that the same terms embedded with other
    free edge names (inside different products) still sort the same way.
    """
    return (signature(t).shape, hash(t))


def canonical_names(t: Expr) -> dict:
    """Free edge -> a name that depends only on the edge's role in ``t``.

    Edges with equal roles (symmetric ports) are told apart by their names;
    this only matters for how often equal work is found, never for correctness.
    """
    ports = signature(t).ports
    ordered = sorted(t.edges, key=lambda e: (ports[e], e))
    return {e: f"@{k}" for k, e in enumerate(ordered)}


@functools.singledispatch
def _signature(t: Expr) -> Signature:
    raise NotImplementedError(f"signature: no rule for node type {type(t).__name__}")


@_signature.register
def _(t: Variable):
    shape = combine(stable_hash("var"), stable_hash(t.name), stable_hash(t.decl))
    return Signature(shape, {n: combine(stable_hash("port"), stable_hash(e)) for (e, _), n in zip(t.decl, t.edges)})


@_signature.register
def _(t: Delta):
    shape = combine(stable_hash("delta"), stable_hash(t.size), len(t.edges))
    colour = stable_hash("delta-port")
    return Signature(shape, {e: colour for e in t.edges})


@_signature.register
def _(t: Convolution):
    # The kernel and output legs are interchangeable (in = out + k), so they
    # share a colour up to their sizes.
    w_in, *parts = (t._shape[e] for e in t.edges)
    shape = combine(stable_hash("conv"), stable_hash(w_in), tuple(sorted(stable_hash(s) for s in parts)))
    colours = {t.edges[0]: stable_hash("conv-in")}
    colours.update({e: combine(stable_hash("conv-part"), stable_hash(s)) for e, s in zip(t.edges[1:], parts)})
    return Signature(shape, colours)


@_signature.register
def _(t: Zero):
    sizes = tuple(sorted(stable_hash(s) for s in t._shape.values()))
    return Signature(combine(stable_hash("zero"), sizes), {e: combine(stable_hash("zero-port"), stable_hash(s)) for e, s in t._shape.items()})


def flat_factors(p: Product) -> list:
    """The factors of a product with nested products expanded: ``(a @ b) @ c`` is one network."""
    out = []
    for f in p.factors:
        inner = _transparent(f)
        f = f if inner is None else inner
        if isinstance(f, Product):
            fresh = {e: fresh_edge() for e in f.inner_edges}
            out.extend(flat_factors(Product([rename(g, {e: fresh[e] for e in g.edges if e in fresh}) for g in f.factors], edges=f.edges)))
        else:
            out.append(f)
    return out


def flat_terms(s: Sum) -> list:
    """(weight, term) pairs of a sum with nested sums expanded: ``a + (b + c)`` is ``(a + b) + c``."""
    out = []
    for w, u in zip(s.weights, s.terms):
        if isinstance(u, Sum):
            out.extend((w * v, x) for v, x in flat_terms(u))
        else:
            out.append((w, u))
    return out


def _transparent(t: Expr, factors=None):
    """The node that ``t`` is the same network as, when ``t`` is only a wrapper around it.

    ``factors``: ``flat_factors(t)`` for a product, when the caller has them already.
    """
    if isinstance(t, Product):
        factors = flat_factors(t) if factors is None else factors
        if len(factors) == 1 and set(factors[0].edges) == set(t.edges):
            return factors[0]
    if isinstance(t, Sum):
        pairs = flat_terms(t)
        if len(pairs) == 1 and pairs[0][0] == 1:
            return pairs[0][1]
    return None


@_signature.register
def _(t: Sum):
    inner = _transparent(t)
    if inner is not None:
        return signature(inner)
    subs = [(stable_hash(w), signature(u)) for w, u in flat_terms(t)]
    ports = {
        e: combine(stable_hash("sum-port"), tuple(sorted(combine(w, s.shape, s.ports[e]) for w, s in subs)))
        for e in t.edges
    }
    terms = tuple(sorted(combine(w, s.shape, tuple(sorted(s.ports.values()))) for w, s in subs))
    return Signature(combine(stable_hash("sum"), terms), ports)


@_signature.register
def _(t: Function):
    subs = [signature(u) for u in t.inputs]
    shape = combine(stable_hash("fn"), stable_hash(t.spec.key), tuple(s.shape for s in subs))
    ports = {e: combine(stable_hash("fn-port"), tuple(s.ports[e] for s in subs)) for e in t.edges}
    return Signature(shape, ports)


@_signature.register
def _(t: AlongEdge):
    sub = signature(t.input)
    shape = combine(stable_hash("along"), stable_hash(t.spec.key), sub.shape, tuple(sub.ports[a] for a in t.axes))
    ports = {e: combine(stable_hash("along-port"), sub.ports[e], t.axes.index(e) if e in t.axes else -1) for e in t.edges}
    return Signature(shape, ports)


@_signature.register
def _(t: Derivative):
    sub = signature(t.expr)
    new = {n: combine(stable_hash("new-port"), stable_hash(e)) for e, n in t.new_names.items()}
    ports = {e: combine(stable_hash("d-port"), sub.ports[e]) for e in t.expr.edges}
    return Signature(combine(stable_hash("d"), sub.shape, stable_hash(t.x.key)), {**ports, **new})


@_signature.register
def _(t: Product):
    factors = flat_factors(t)
    inner = _transparent(t, factors)
    if inner is not None:
        return signature(inner)
    sigs = [signature(f) for f in factors]
    where = defaultdict(list)  # edge -> [(factor index, port colour)]
    for k, (f, s) in enumerate(zip(factors, sigs)):
        for e in f.edges:
            where[e].append((k, s.ports[e]))
    colours = [s.shape for s in sigs]
    free_mark = stable_hash("free")
    n_classes = len(set(colours))
    for _ in range(len(colours)):
        neighbourhoods = [[] for _ in colours]
        for e, ends in where.items():
            if len(ends) == 2:
                (a, pa), (b, pb) = ends
                neighbourhoods[a].append(combine(pa, colours[b], pb))
                neighbourhoods[b].append(combine(pb, colours[a], pa))
            else:
                (a, pa), = ends
                neighbourhoods[a].append(combine(pa, free_mark))
        colours = [combine(c, tuple(sorted(nb))) for c, nb in zip(colours, neighbourhoods)]
        refined = len(set(colours))
        if refined == n_classes:
            break
        n_classes = refined
    ports = {e: combine(colours[where[e][0][0]], where[e][0][1]) for e in t.edges}
    return Signature(combine(stable_hash("prod"), tuple(sorted(colours))), ports)


# -- exact check --------------------------------------------------------------


def isomorphic(a: Expr, b: Expr) -> bool:
    """Exact test: same network up to inner edge names, same free edge names."""
    if set(a.edges) != set(b.edges):
        return False
    if tree_key(a) == tree_key(b):
        return True
    ga, gb = graph(a), graph(b)
    if len(ga) != len(gb) or sorted(ga.graph["colours"]) != sorted(gb.graph["colours"]):
        return False
    return nx.is_isomorphic(ga, gb, node_match=_colour_match)


def _colour_match(x, y):
    return x["colour"] == y["colour"]


def _refine(g: nx.Graph):
    """Label every node with its colour after refinement on the graph itself.

    Colours are invariant under isomorphism, so matching them is exact; they
    tell apart most nodes that share a label (the ports of a Delta, say), which
    keeps the isomorphism search from trying every permutation of them.
    """
    for n, data in g.nodes(data=True):
        data["text"] = repr(data["label"])
    hashes = nx.weisfeiler_lehman_subgraph_hashes(g, node_attr="text", iterations=4, digest_size=16)
    for n, data in g.nodes(data=True):
        data["colour"] = (data["text"], hashes[n][-1] if hashes[n] else "")
    g.graph["colours"] = [data["colour"] for _, data in g.nodes(data=True)]


def tree_key(t: Expr):
    """A cheap sufficient test for equality: the tree with inner edge names
    replaced by numbers in order of first appearance.

    Most equal pairs met during simplification were built the same way; a
    match here is a bijective renaming of non-free names, which preserves the
    meaning, so it avoids a graph isomorphism search for them.
    """
    free = set(t.edges)
    numbers: dict = {}

    def edge(e):
        if e in free:
            return e
        return numbers.setdefault(e, len(numbers))

    def walk(p: Expr):
        if isinstance(p, Variable):
            head = ("v", p.name, p.decl)
        elif isinstance(p, Delta):
            head = ("δ", str(p.size))
        elif isinstance(p, Convolution):
            head = ("conv", tuple(str(p._shape[e]) for e in p.edges))
        elif isinstance(p, Zero):
            head = ("0", tuple(str(p._shape[e]) for e in p.edges))
        elif isinstance(p, Sum):
            head = ("+", tuple(map(str, p.weights)))
        elif isinstance(p, Function):
            head = ("f", p.spec.key)
        elif isinstance(p, Derivative):
            head = ("d", p.x.key, tuple(p.new_names))
        elif isinstance(p, AlongEdge):
            head = ("a", p.spec.key, tuple(edge(a) for a in p.axes))
        elif isinstance(p, Product):
            head = ("*",)
        else:
            raise NotImplementedError(f"tree_key: no rule for node type {type(p).__name__}")
        children = tuple(walk(c) for c in p.args if not (isinstance(p, Derivative) and c is p.x))
        return head, tuple(edge(e) for e in p.edges), children

    return walk(t)


def graph(t: Expr) -> nx.Graph:
    """A labelled graph whose isomorphism class is exactly the expression's equality class."""
    if t._graph is None:
        g = nx.Graph()
        ids = itertools.count()
        _, ports = _build(t, g, ids)
        for e, p in ports.items():
            node = _node(g, ids, ("free", e))
            g.add_edge(node, p)
        _refine(g)
        t._graph = g
    return t._graph


def _node(g, ids, label):
    n = next(ids)
    g.add_node(n, label=label)
    return n


def _leaf(g, ids, label, port_labels):
    root = _node(g, ids, label)
    ports = {}
    for e, plabel in port_labels:
        ports[e] = _node(g, ids, plabel)
        g.add_edge(root, ports[e])
    return root, ports


@functools.singledispatch
def _build(t: Expr, g, ids):
    """Add ``t`` to ``g``; return its root node and its free edge -> port node."""
    raise NotImplementedError(f"graph: no rule for node type {type(t).__name__}")


@_build.register
def _(t: Variable, g, ids):
    return _leaf(g, ids, ("var", t.name, t.decl), [(n, ("port", e)) for (e, _), n in zip(t.decl, t.edges)])


@_build.register
def _(t: Delta, g, ids):
    return _leaf(g, ids, ("delta", str(t.size)), [(e, ("delta-port",)) for e in t.edges])


@_build.register
def _(t: Convolution, g, ids):
    in_edge, *parts = t.edges
    ports = [(in_edge, ("conv-in",))] + [(e, ("conv-part", str(t._shape[e]))) for e in parts]
    return _leaf(g, ids, ("conv", str(t._shape[in_edge])), ports)


@_build.register
def _(t: Zero, g, ids):
    return _leaf(g, ids, ("zero",), [(e, ("zero-port", str(s))) for e, s in t._shape.items()])


@_build.register
def _(t: Product, g, ids):
    factors = flat_factors(t)
    inner = _transparent(t, factors)
    if inner is not None:
        return _build(inner, g, ids)
    root, ports = _leaf(g, ids, ("prod",), [(e, ("prod-port",)) for e in t.edges])
    open_ends = {}
    for f in factors:
        sub_root, sub_ports = _build(f, g, ids)
        g.add_edge(root, sub_root)
        for e, p in sub_ports.items():
            if e in ports:
                g.add_edge(ports[e], p)
            elif e in open_ends:
                wire = _node(g, ids, ("wire",))
                g.add_edge(open_ends.pop(e), wire)
                g.add_edge(wire, p)
            else:
                open_ends[e] = p
    assert not open_ends, "internal error: a product edge is neither free nor contracted"
    return root, ports


@_build.register
def _(t: Sum, g, ids):
    inner = _transparent(t)
    if inner is not None:
        return _build(inner, g, ids)
    root, ports = _leaf(g, ids, ("sum",), [(e, ("sum-port",)) for e in t.edges])
    for w, u in flat_terms(t):
        weight = _node(g, ids, ("weight", str(w)))
        g.add_edge(root, weight)
        sub_root, sub_ports = _build(u, g, ids)
        g.add_edge(weight, sub_root)
        for e, p in sub_ports.items():
            g.add_edge(ports[e], p)
    return root, ports


@_build.register
def _(t: Function, g, ids):
    root, ports = _leaf(g, ids, ("fn", t.spec.key), [(e, ("fn-port",)) for e in t.edges])
    for k, u in enumerate(t.inputs):
        arg = _node(g, ids, ("arg", k))
        g.add_edge(root, arg)
        sub_root, sub_ports = _build(u, g, ids)
        g.add_edge(arg, sub_root)
        for e, p in sub_ports.items():
            g.add_edge(ports[e], p)
    return root, ports


@_build.register
def _(t: AlongEdge, g, ids):
    role = {a: k for k, a in enumerate(t.axes)}
    root, ports = _leaf(g, ids, ("along", t.spec.key), [(e, ("along-port", role.get(e, -1))) for e in t.edges])
    arg = _node(g, ids, ("arg", 0))
    g.add_edge(root, arg)
    sub_root, sub_ports = _build(t.input, g, ids)
    g.add_edge(arg, sub_root)
    for e, p in sub_ports.items():
        if e in ports:
            g.add_edge(ports[e], p)
        else:
            axis = _node(g, ids, ("axis", role[e]))
            g.add_edge(axis, p)
            g.add_edge(axis, root)
    return root, ports


@_build.register
def _(t: Derivative, g, ids):
    new = [(n, ("new-port", e)) for e, n in t.new_names.items()]
    root, ports = _leaf(g, ids, ("d", t.x.name, t.x.decl), new)
    sub_root, sub_ports = _build(t.expr, g, ids)
    g.add_edge(root, sub_root)
    for e, p in sub_ports.items():
        ports[e] = _node(g, ids, ("d-port",))
        g.add_edge(ports[e], p)
    return root, ports
