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
from collections import Counter, defaultdict, deque

from .nodes import AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero
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


def relabelled(sig: Signature, mapping: dict) -> Signature:
    """The signature of a node renamed by ``mapping``: the same structure, its ports under the new names."""
    return Signature(sig.shape, {mapping.get(e, e): c for e, c in sig.ports.items()})


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
    shape = combine(stable_hash("var"), stable_hash(t.name), stable_hash(t.decl), stable_hash(t.symmetric))
    # edges that can be swapped (a symmetric variable) are one role
    return Signature(shape, {n: combine(stable_hash("port"), stable_hash(t.symmetric_class(e))) for (e, _), n in zip(t.decl, t.edges)})


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
    _flatten_into(p, {}, out)
    return out


def _flatten_into(p: Product, names: dict, out: list):
    """Append the leaf factors of ``p`` to ``out``, its edges renamed by ``names`` (default: kept).

    Nested products get fresh inner names, and the renamings compose on the way
    down, so each leaf is renamed once: a chain built as ``((a @ b) @ c) @ ...``
    flattens in linear time, not once per level.
    """
    for f in p.factors:
        if isinstance(f, Sum):
            inner = _transparent(f)
            f = f if inner is None else inner
        if isinstance(f, Product):
            sub = {e: names.get(e, e) for e in f.edges}
            sub.update({e: fresh_edge() for e in f.inner_edges})
            _flatten_into(f, sub, out)
        else:
            moved = {e: names[e] for e in f.edges if names.get(e, e) != e}
            out.append(rename(f, moved) if moved else f)


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
    if t.renamed_from is not None:
        origin, mapping = t.renamed_from
        return relabelled(signature(origin), mapping)
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
    new = {n: combine(stable_hash("new-port"), stable_hash(t.x.symmetric_class(e))) for e, n in t.new_names.items()}
    ports = {e: combine(stable_hash("d-port"), sub.ports[e]) for e in t.expr.edges}
    return Signature(combine(stable_hash("d"), sub.shape, stable_hash(t.x.key)), {**ports, **new})


@_signature.register
def _(t: Expectation):
    sub = signature(t.expr)
    moments = (named_hash(t.mu), named_hash(t.covar), tuple(t.covar_names.items()))
    ports = {e: combine(stable_hash("e-port"), sub.ports[e]) for e in t.expr.edges}
    return Signature(combine(stable_hash("E"), sub.shape, stable_hash(t.wrt.key), stable_hash(moments)), ports)


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
#
# The check runs in stages, cheapest first; each settles most of what reaches it.
#
# 1. ``tree_key``: equal pairs built the same way (most ties in simplify).
# 2. Colour refinement of the labelled graph to its coarsest equitable
#    partition, cached per expression. Port roles are node labels and
#    multi-edges count with multiplicity. Different colour counts decide
#    "not equal"; a discrete partition (every node its own colour) decides by
#    comparing the two colour-sorted graphs, with no search.
# 3. Individualisation-refinement for the classes left tied: give one node of
#    the smallest tied class a colour of its own and refine again, on both
#    sides; candidates on the second side whose refinement matches the first
#    side's are tried depth-first. Symmetric isomorphic networks (repeated
#    factors, Delta ports) usually succeed on the first candidate at each
#    level; once a branch fails, the levels above it are compared as
#    multisets of refinements (``_Search.check_path``), which rejects most
#    non-isomorphic pairs at the root.
#
# Stage 3 is exponential on adversarial graphs, so it runs under a budget of
# refinement work. An exhausted budget answers "not equal": the simplifier then
# keeps two terms it could have merged, a longer result and some lost speed but
# never a wrong value, instead of stalling. "Equal" is only ever answered for a
# bijection that has been checked edge by edge.

# Refinement work (neighbour visits) one comparison may spend in stage 3, plus
# an allowance per graph node so that large networks get a proportional share,
# and a cap on the search depth. The test suites spend at most about a thousand
# units; a unit costs a few microseconds, so an exhausted budget has cost a
# fraction of a second (0.2-0.5 s for a few hundred nodes).
_SEARCH_BUDGET = 100_000
_SEARCH_BUDGET_PER_NODE = 100
_SEARCH_DEPTH = 300


def isomorphic(a: Expr, b: Expr) -> bool:
    """Exact test: same network up to inner edge names, same free edge names.

    Sound: ``True`` only for isomorphic networks. Complete unless the bounded
    search of stage 3 runs out, which answers ``False`` (see above).
    """
    if set(a.edges) != set(b.edges):
        return False
    if tree_key(a) == tree_key(b):
        return True
    ga, gb = graph(a), graph(b)
    if ga.trace != gb.trace:
        return False
    budget = _Budget(_SEARCH_BUDGET + _SEARCH_BUDGET_PER_NODE * len(ga))
    try:
        return _Search(ga, gb, budget).match(ga.partition, gb.partition)
    except _OutOfBudget:
        return False


class _Graph:
    """A labelled undirected graph as adjacency lists, with its equitable partition."""

    __slots__ = ("labels", "adj", "partition", "trace")

    def __init__(self):
        self.labels = []
        self.adj = []

    def add_node(self, label) -> int:
        # Labels hold sympy sizes; their text is what identifies them.
        self.labels.append(repr(label))
        self.adj.append([])
        return len(self.labels) - 1

    def add_edge(self, u: int, v: int):
        self.adj[u].append(v)
        self.adj[v].append(u)

    def __len__(self):
        return len(self.labels)

    def finish(self):
        colours = [_LABEL_IDS.setdefault(label, len(_LABEL_IDS)) for label in self.labels]
        self.partition = _Partition(colours, _cells(colours), -1)
        labels = tuple(sorted((c, len(vs)) for c, vs in self.partition.cells.items()))
        self.trace = (labels, self.partition.refine(sorted(self.partition.cells), self.adj, None))


# Node label -> initial colour, shared by every graph of the process so that
# colours of two graphs can be compared. Refinement numbers the colours it
# creates -1, -2, ... in the order it creates them, which isomorphic graphs
# share; so created colours never meet label colours, nor each other.
_LABEL_IDS: dict = {}


class _OutOfBudget(Exception):
    pass


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int):
        self.left = left

    def spend(self, amount: int):
        self.left -= amount
        if self.left < 0:
            raise _OutOfBudget


def _cells(colours: list) -> dict:
    cells = defaultdict(set)
    for v, c in enumerate(colours):
        cells[c].add(v)
    return dict(cells)


class _Partition:
    """Node colours and their classes; ``fresh``: the next colour to create.

    Class sets are replaced, never mutated, so ``copy`` is shallow.
    """

    __slots__ = ("colours", "cells", "fresh")

    def __init__(self, colours: list, cells: dict, fresh: int):
        self.colours = colours
        self.cells = cells
        self.fresh = fresh

    def copy(self) -> "_Partition":
        return _Partition(list(self.colours), dict(self.cells), self.fresh)

    def discrete(self) -> bool:
        return len(self.cells) == len(self.colours)

    def refine(self, queue, adj: list, budget: _Budget | None) -> tuple:
        """Split classes by neighbour counts until the partition is equitable.

        ``queue``: the colours whose classes may still split others. Counting
        neighbours in one class at a time, and keeping the largest piece of a
        split under the old colour and off the queue (Hopcroft), makes a
        refinement after individualising one node cost about the size of the
        part of the graph that changes, not of the whole graph.

        Every choice depends only on colours and counts, so isomorphic inputs
        split alike. Returns the trace of counts; equal traces from equal
        starting partitions leave equal colour counts, so traces are what two
        graphs compare.
        """
        colours, cells = self.colours, self.cells
        queue = deque(queue)
        trace = []
        while queue:
            w = queue.popleft()
            count = defaultdict(int)
            for v in cells[w]:
                for u in adj[v]:
                    count[u] += 1
            touched = defaultdict(list)
            for u in count:
                touched[colours[u]].append(u)
            if budget is not None:
                budget.spend(1 + len(count))
            for c in sorted(touched):
                cell, hit = cells[c], touched[c]
                groups = defaultdict(list)
                for u in hit:
                    groups[count[u]].append(u)
                sizes = sorted((k, len(vs)) for k, vs in groups.items())
                if len(hit) < len(cell):
                    sizes.insert(0, (0, len(cell) - len(hit)))
                # Recorded even when nothing splits: the uniform count is part
                # of what two graphs must share (one vs two neighbours in w).
                trace.append((c, w, tuple(sizes)))
                if len(sizes) == 1:
                    continue
                keep = max(sizes, key=lambda kn: (kn[1], kn[0]))[0]
                if keep == 0:
                    # The untouched rest stays as it is: only the touched
                    # nodes move, so a small splitter costs little in a big class.
                    cells[c] = cell - set(hit)
                else:
                    cells[c] = set(groups.pop(keep))
                    if len(hit) < len(cell):
                        groups[0] = cell - set(hit) - cells[c]
                for k in sorted(groups):
                    new = self.fresh
                    self.fresh -= 1
                    cells[new] = set(groups[k])
                    for u in groups[k]:
                        colours[u] = new
                    queue.append(new)
        return tuple(trace)

    def individualised(self, v: int, adj: list, budget: _Budget) -> tuple:
        """``v`` given a colour of its own, then refined: (trace, partition)."""
        out = self.copy()
        budget.spend(1 + len(out.colours) // 32)  # the copies, which run at C speed
        c = out.colours[v]
        new = out.fresh
        out.fresh -= 1
        out.colours[v] = new
        out.cells[c] = out.cells[c] - {v}
        out.cells[new] = {v}
        return out.refine([new], adj, budget), out


class _Dead(Exception):
    """The classes at search level ``level`` refine differently on the two sides."""

    def __init__(self, level: int):
        self.level = level


class _Level:
    """One level of the search: the partitions and the tied class branched on."""

    __slots__ = ("a", "b", "colour", "checked")

    def __init__(self, a: _Partition, b: _Partition, colour: int):
        self.a, self.b, self.colour = a, b, colour
        self.checked = False


class _Search:
    """Depth-first individualisation-refinement between two graphs, under a budget."""

    def __init__(self, ga: _Graph, gb: _Graph, budget: _Budget):
        self.ga, self.gb, self.budget = ga, gb, budget
        self.path: list = []

    def match(self, a: _Partition, b: _Partition) -> bool:
        """Is there an isomorphism mapping each class of ``a`` onto the same-coloured class of ``b``?

        ``a`` and ``b`` are equitable, with equal colour counts.
        """
        if a.discrete():
            return _verify(self.ga, self.gb, {min(vs): min(b.cells[c]) for c, vs in a.cells.items()})
        # The smallest tied class branches least; its colour names the same
        # class on both sides, so both choose alike.
        _, colour = min((len(vs), c) for c, vs in a.cells.items() if len(vs) > 1)
        level = len(self.path)
        if level >= _SEARCH_DEPTH:
            raise _OutOfBudget  # a budget too: Python's stack must not run out first
        self.path.append(_Level(a, b, colour))
        try:
            trace, fixed = a.individualised(min(a.cells[colour]), self.ga.adj, self.budget)
            for w in sorted(b.cells[colour]):
                t, p = b.individualised(w, self.gb.adj, self.budget)
                if t == trace:
                    if self.match(fixed, p):
                        return True
                    self.check_path()
            return False
        except _Dead as dead:
            if dead.level != level:
                raise
            return False
        finally:
            self.path.pop()

    def check_path(self):
        """After a failed branch, find the shallowest level whose two sides differ.

        A branch that refined alike and still failed means the pair may differ
        only deeper down (six 6-cycles against five and two 3-cycles), and
        retrying equivalent candidates one by one would be exponential. The
        classes of a level are compared as multisets of refinements, one per
        node, top-down, each level once: a difference at the root ends the
        search, and the check is paid for only when something failed.
        """
        for i, level in enumerate(self.path):
            if level.checked:
                continue
            level.checked = True
            if self._refinements(self.ga, level.a, level.colour) != self._refinements(self.gb, level.b, level.colour):
                raise _Dead(i)

    def _refinements(self, g: _Graph, part: _Partition, colour: int) -> Counter:
        return Counter(part.individualised(v, g.adj, self.budget)[0] for v in part.cells[colour])


def _verify(ga: _Graph, gb: _Graph, to_b: dict) -> bool:
    """Is the node bijection ``to_b`` an isomorphism of the labelled graphs?

    Colours already agree; checking every edge anyway makes a "yes" rest on
    this check alone, not on the argument that equal traces force it.
    """
    for u, v in to_b.items():
        if ga.labels[u] != gb.labels[v]:
            return False
        if sorted([to_b[x] for x in ga.adj[u]]) != sorted(gb.adj[v]):
            return False
    return True


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
            head = ("v", p.name, p.decl, p.symmetric)
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
        elif isinstance(p, Expectation):
            head = ("E", p.wrt.key, tuple(p.covar_names.items()))
        elif isinstance(p, AlongEdge):
            head = ("a", p.spec.key, tuple(edge(a) for a in p.axes))
        elif isinstance(p, Product):
            head = ("*",)
        else:
            raise NotImplementedError(f"tree_key: no rule for node type {type(p).__name__}")
        children = tuple(walk(c) for c in p.args if not (isinstance(p, Derivative) and c is p.x) and c is not getattr(p, "wrt", None))
        return head, tuple(edge(e) for e in p.edges), children

    return walk(t)


def graph(t: Expr) -> _Graph:
    """A labelled graph whose isomorphism class is exactly the expression's equality class."""
    if t._graph is None:
        g = _Graph()
        _, ports = _build(t, g)
        for e, p in ports.items():
            g.add_edge(g.add_node(("free", e)), p)
        g.finish()
        t._graph = g
    return t._graph


def _leaf(g, label, port_labels):
    root = g.add_node(label)
    ports = {}
    for e, plabel in port_labels:
        ports[e] = g.add_node(plabel)
        g.add_edge(root, ports[e])
    return root, ports


@functools.singledispatch
def _build(t: Expr, g):
    """Add ``t`` to ``g``; return its root node and its free edge -> port node."""
    raise NotImplementedError(f"graph: no rule for node type {type(t).__name__}")


@_build.register
def _(t: Variable, g):
    ports = [(n, ("port", t.symmetric_class(e))) for (e, _), n in zip(t.decl, t.edges)]
    return _leaf(g, ("var", t.name, t.decl, t.symmetric), ports)


@_build.register
def _(t: Delta, g):
    return _leaf(g, ("delta", str(t.size)), [(e, ("delta-port",)) for e in t.edges])


@_build.register
def _(t: Convolution, g):
    in_edge, *parts = t.edges
    ports = [(in_edge, ("conv-in",))] + [(e, ("conv-part", str(t._shape[e]))) for e in parts]
    return _leaf(g, ("conv", str(t._shape[in_edge])), ports)


@_build.register
def _(t: Zero, g):
    return _leaf(g, ("zero",), [(e, ("zero-port", str(s))) for e, s in t._shape.items()])


@_build.register
def _(t: Product, g):
    factors = flat_factors(t)
    inner = _transparent(t, factors)
    if inner is not None:
        return _build(inner, g)
    root, ports = _leaf(g, ("prod",), [(e, ("prod-port",)) for e in t.edges])
    open_ends = {}
    for f in factors:
        sub_root, sub_ports = _build(f, g)
        g.add_edge(root, sub_root)
        for e, p in sub_ports.items():
            if e in ports:
                g.add_edge(ports[e], p)
            elif e in open_ends:
                wire = g.add_node(("wire",))
                g.add_edge(open_ends.pop(e), wire)
                g.add_edge(wire, p)
            else:
                open_ends[e] = p
    assert not open_ends, "internal error: a product edge is neither free nor contracted"
    return root, ports


@_build.register
def _(t: Sum, g):
    inner = _transparent(t)
    if inner is not None:
        return _build(inner, g)
    root, ports = _leaf(g, ("sum",), [(e, ("sum-port",)) for e in t.edges])
    for w, u in flat_terms(t):
        weight = g.add_node(("weight", str(w)))
        g.add_edge(root, weight)
        sub_root, sub_ports = _build(u, g)
        g.add_edge(weight, sub_root)
        for e, p in sub_ports.items():
            g.add_edge(ports[e], p)
    return root, ports


@_build.register
def _(t: Function, g):
    root, ports = _leaf(g, ("fn", t.spec.key), [(e, ("fn-port",)) for e in t.edges])
    for k, u in enumerate(t.inputs):
        arg = g.add_node(("arg", k))
        g.add_edge(root, arg)
        sub_root, sub_ports = _build(u, g)
        g.add_edge(arg, sub_root)
        for e, p in sub_ports.items():
            g.add_edge(ports[e], p)
    return root, ports


@_build.register
def _(t: AlongEdge, g):
    role = {a: k for k, a in enumerate(t.axes)}
    root, ports = _leaf(g, ("along", t.spec.key), [(e, ("along-port", role.get(e, -1))) for e in t.edges])
    arg = g.add_node(("arg", 0))
    g.add_edge(root, arg)
    sub_root, sub_ports = _build(t.input, g)
    g.add_edge(arg, sub_root)
    for e, p in sub_ports.items():
        if e in ports:
            g.add_edge(ports[e], p)
        else:
            axis = g.add_node(("axis", role[e]))
            g.add_edge(axis, p)
            g.add_edge(axis, root)
    return root, ports


@_build.register
def _(t: Derivative, g):
    new = [(n, ("new-port", t.x.symmetric_class(e))) for e, n in t.new_names.items()]
    root, ports = _leaf(g, ("d", t.x.name, t.x.decl, t.x.symmetric), new)
    sub_root, sub_ports = _build(t.expr, g)
    g.add_edge(root, sub_root)
    for e, p in sub_ports.items():
        ports[e] = g.add_node(("d-port",))
        g.add_edge(ports[e], p)
    return root, ports


@_build.register
def _(t: Expectation, g):
    root, ports = _leaf(g, ("E", t.wrt.name, t.wrt.decl, tuple(t.covar_names.items())), [])
    sub_root, sub_ports = _build(t.expr, g)
    g.add_edge(root, sub_root)
    for e, p in sub_ports.items():
        ports[e] = g.add_node(("e-port",))
        g.add_edge(ports[e], p)
    for role, moment in (("mu", t.mu), ("covar", t.covar)):
        moment_root, moment_ports = _build(moment, g)
        tag = g.add_node((role,))
        g.add_edge(root, tag)
        g.add_edge(tag, moment_root)
        for e, p in moment_ports.items():
            # the moments' edges are the variable's own names: each a fixed role
            label = g.add_node((role + "-port", e))
            g.add_edge(label, p)
            g.add_edge(label, tag)
    return root, ports
