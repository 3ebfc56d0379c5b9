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

from .nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero, renamed_origin,
)
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


def named_hash(t: Expr, renamed: dict | None = None) -> int:
    """The structure's hash with each free edge's name; with ``renamed`` (edge -> new name),
    that of ``rename(t, renamed)``, without the renamed copy."""
    sig = signature(t)
    renamed = renamed or {}
    return combine(sig.shape, tuple(sorted((stable_hash(renamed.get(e, e)), c) for e, c in sig.ports.items())))


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


def network(p: Product) -> list:
    """The atoms of a product with nested products opened, as ``(atom, own edge -> network edge)``.

    Nested products' inner edges get fresh network names; nothing is renamed
    (an atom shared by several products stays one node, so comparisons of it
    are remembered).
    """
    out = []
    _network_into(p, {}, out)
    return out


def _network_into(p: Product, names: dict, out: list):
    for f in p.factors:
        if isinstance(f, Sum):
            inner = _transparent(f)
            f = f if inner is None else inner[0]
        if isinstance(f, Product):
            sub = {e: names.get(e, e) for e in f.edges}
            sub.update({e: fresh_edge() for e in f.inner_edges})
            _network_into(f, sub, out)
        else:
            out.append((f, {e: names.get(e, e) for e in f.edges}))


def flat_terms(s: Sum) -> list:
    """(weight, term) pairs of a sum with nested sums expanded: ``a + (b + c)`` is ``(a + b) + c``."""
    out = []
    for w, u in zip(s.weights, s.terms):
        if isinstance(u, Sum):
            out.extend((w * v, x) for v, x in flat_terms(u))
        else:
            out.append((w, u))
    return out


def _transparent(t: Expr, atoms=None):
    """``(node, names)`` when ``t`` is only a wrapper around ``node``: the same network, with
    ``node``'s edge ``e`` named ``names[e]`` in ``t``; None otherwise.

    ``atoms``: ``network(t)`` for a product, when the caller has them already.
    """
    if isinstance(t, Product):
        atoms = network(t) if atoms is None else atoms
        if len(atoms) == 1 and set(atoms[0][1].values()) == set(t.edges):
            return atoms[0]
    if isinstance(t, Sum):
        pairs = flat_terms(t)
        if len(pairs) == 1 and pairs[0][0] == 1:
            return pairs[0][1], {e: e for e in t.edges}
    return None


@_signature.register
def _(t: Sum):
    if t.renamed_from is not None:
        origin, mapping = t.renamed_from
        return relabelled(signature(origin), mapping)
    inner = _transparent(t)
    if inner is not None:
        return signature(inner[0])
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
    atoms = network(t)
    inner = _transparent(t, atoms)
    if inner is not None:
        return relabelled(signature(inner[0]), inner[1])
    sigs = [signature(f) for f, _ in atoms]
    where = defaultdict(list)  # network edge -> [(atom index, port colour)]
    for k, ((f, names), s) in enumerate(zip(atoms, sigs)):
        for e in f.edges:
            where[names[e]].append((k, s.ports[e]))
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
# The check follows the expression's own structure, one node pair at a time,
# so it costs the size of the two DAGs, never of the trees they unfold to (a
# layer-norm network reads each block's input three times: its tree doubles
# with every block). ``_Matcher.same(x, y, m)`` decides whether ``x`` is the
# same network as ``y`` with ``y``'s free edges renamed by ``m``, without
# building that renamed copy, and remembers each answer by node identity and
# mapping, so a node shared by many parents is compared once.
#
# - A leaf (variable, Delta, convolution, zero) is settled by its signature:
#   the structure and the role of each edge.
# - An elementwise function, a sum, a function along edges, a derivative and
#   an expectation compare their children under the same mapping (the inner
#   axes of a function along edges extend it); a sum's terms are matched as a
#   multiset, by named hash first.
# - A product is a network of atoms (the non-product factors, nested products
#   opened). Its graph has a node per atom, labelled by the atom's structure,
#   a node per atom edge labelled by that edge's role, and wires. An
#   isomorphism of the two graphs is searched in stages, cheapest first:
#   1. Colour refinement to the coarsest equitable partition, cached per
#      product. Different colour counts decide "not equal"; a discrete
#      partition (every node its own colour) gives the one candidate bijection.
#   2. Individualisation-refinement for the classes left tied: give one node
#      of the smallest tied class a colour of its own and refine again, on
#      both sides; candidates on the second side whose refinement matches the
#      first side's are tried depth-first. Symmetric isomorphic networks
#      (repeated factors, Delta ports) usually succeed on the first candidate
#      at each level; once a branch fails, the levels above it are compared
#      as multisets of refinements (``_Search.check_path``), which rejects
#      most non-isomorphic pairs at the root.
#   A candidate bijection is accepted only when every wire maps onto a wire
#   and every pair of atoms it matches is the same atom under the edge
#   mapping it implies (``same`` again, one level down).
#
# Stage 2 is exponential on adversarial graphs, so it runs under a budget of
# refinement work. An exhausted budget answers "not equal": the simplifier then
# keeps two terms it could have merged, a longer result and some lost speed but
# never a wrong value, instead of stalling. "Equal" is only ever answered for a
# bijection that has been checked edge by edge.

# Refinement work (neighbour visits) one comparison may spend in stage 2, plus
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
    search of stage 2 runs out, which answers ``False`` (see above).
    """
    if set(a.edges) != set(b.edges):
        return False
    return _Matcher().same(a, b, {})


def _opened(t: Expr, m: dict) -> tuple:
    """``(node, mapping)`` standing for ``rename(t, m)`` with wrappers removed: a product of one
    factor with all its edges, a sum of one term of weight 1, a lazily renamed function."""
    while True:
        if renamed_origin(t) is not None:
            origin, first = t.renamed_from
            m = {e: m.get(first.get(e, e), first.get(e, e)) for e in origin.edges}
            t = origin
            continue
        inner = _transparent(t) if isinstance(t, (Product, Sum)) else None
        if inner is None:
            return t, {e: n for e, n in m.items() if e != n and e in t._shape}
        t, names = inner
        m = {e: m.get(names[e], names[e]) for e in t.edges}


class _Matcher:
    """One equality question: its answers for node pairs, remembered by identity and mapping."""

    def __init__(self):
        self.memo: dict = {}

    def same(self, x: Expr, y: Expr, m: dict) -> bool:
        """Is ``x`` the same network as ``rename(y, m)``? (``m``: some free edges of ``y`` -> edges of ``x``)"""
        if set(x.edges) != {m.get(e, e) for e in y.edges}:
            return False
        x, mx = _opened(x, {})
        y, m = _opened(y, m)
        if mx:
            # x itself stood for a renamed copy: carry its renaming over to y's side
            back = {n: e for e, n in mx.items()}
            m = {e: back.get(n, n) for e in y.edges for n in (m.get(e, e),)}
            m = {e: n for e, n in m.items() if e != n}
        if x is y and not m:
            return True
        if type(x) is not type(y) or named_hash(y, m) != named_hash(x):
            return False
        key = (id(x), id(y), tuple(sorted(m.items())))
        entry = self.memo.get(key)
        if entry is None:
            # the nodes are kept with the answer, so that their ids are not reused while the memo lives
            entry = self.memo[key] = (x, y, _same(x, y, m, self))
        return entry[2]


@functools.singledispatch
def _same(x: Expr, y: Expr, m: dict, matcher: _Matcher) -> bool:
    raise NotImplementedError(f"isomorphic: no rule for node type {type(x).__name__}")


@_same.register(Variable)
@_same.register(Delta)
@_same.register(Convolution)
@_same.register(Zero)
def _(x, y, m, matcher):
    # a leaf's signature is its whole structure, and ports of one role are interchangeable
    sx, sy = signature(x), signature(y)
    return sx.shape == sy.shape and sx.ports == {m.get(e, e): c for e, c in sy.ports.items()}


@_same.register
def _(x: Function, y, m, matcher):
    return (x.spec.key == y.spec.key and len(x.inputs) == len(y.inputs)
            and all(matcher.same(u, v, m) for u, v in zip(x.inputs, y.inputs)))


@_same.register
def _(x: Sum, y, m, matcher):
    xs, ys = flat_terms(x), flat_terms(y)
    if len(xs) != len(ys):
        return False
    unmatched = defaultdict(list)
    for w, u in xs:
        unmatched[(w, named_hash(u))].append(u)
    for w, v in ys:
        candidates = unmatched.get((w, named_hash(v, m)))
        if not candidates:
            return False
        # isomorphism is an equivalence, so the first match can be taken
        k = next((k for k, u in enumerate(candidates) if matcher.same(u, v, m)), None)
        if k is None:
            return False
        candidates.pop(k)
    return True


@_same.register
def _(x: AlongEdge, y, m, matcher):
    if x.spec.key != y.spec.key or len(x.axes) != len(y.axes):
        return False
    if x.spec.keeps_edge:
        if any(a != m.get(b, b) for a, b in zip(x.axes, y.axes)):
            return False
        return matcher.same(x.input, y.input, m)
    # consumed axes are inner edges: pair them by position
    return matcher.same(x.input, y.input, {**m, **{b: a for a, b in zip(x.axes, y.axes) if a != b}})


@_same.register
def _(x: Derivative, y, m, matcher):
    # new edges are compared by name (a symmetric variable's swapped new edges compare unequal: sound)
    return (x.x.key == y.x.key
            and all(x.new_names[e] == m.get(y.new_names[e], y.new_names[e]) for e in x.new_names)
            and matcher.same(x.expr, y.expr, m))


@_same.register
def _(x: Expectation, y, m, matcher):
    # the moments carry the variable's own edge names: fixed roles
    return (x.wrt.key == y.wrt.key and x.covar_names == y.covar_names
            and matcher.same(x.mu, y.mu, {}) and matcher.same(x.covar, y.covar, {})
            and matcher.same(x.expr, y.expr, m))


@_same.register
def _(x: Product, y, m, matcher):
    ga, gb = graph(x), graph(y)
    if len(ga) != len(gb) or len(ga.atoms) != len(gb.atoms):
        return False
    la, pa, ta = ga.refined({})
    lb, pb, tb = gb.refined(m)
    if ta != tb:
        return False
    budget = _Budget(_SEARCH_BUDGET + _SEARCH_BUDGET_PER_NODE * len(ga))

    def accept(to_b: dict) -> bool:
        if not _verify(la, ga.adj, lb, gb.adj, to_b):
            return False
        for atom, root, ports in ga.atoms:
            other = gb.atoms[gb.atom_at[to_b[root]]][0]
            if not matcher.same(atom, other, {gb.port_edge[to_b[p]]: e for e, p in ports.items()}):
                return False
        return True

    try:
        return _Search(ga, gb, budget, accept).match(pa, pb)
    except _OutOfBudget:
        return False


class _Graph:
    """A product's network as a labelled undirected graph (adjacency lists).

    ``atoms``: (atom, root node, own edge -> port node) per atom; ``atom_at``:
    root node -> atom index; ``port_edge``: port node -> the atom's own edge
    name; ``free``: free edge -> its node, labelled by the name a comparison
    gives it (``refined``).
    """

    __slots__ = ("labels", "adj", "atoms", "atom_at", "port_edge", "free", "_refined")

    def __init__(self):
        self.labels = []
        self.adj = []
        self.atoms = []
        self.atom_at = {}
        self.port_edge = {}
        self.free = {}
        self._refined = {}

    def add_node(self, label) -> int:
        self.labels.append(label)
        self.adj.append([])
        return len(self.labels) - 1

    def add_edge(self, u: int, v: int):
        self.adj[u].append(v)
        self.adj[v].append(u)

    def __len__(self):
        return len(self.labels)

    def refined(self, m: dict) -> tuple:
        """The node labels with free edge ``e`` named ``m.get(e, e)``, their equitable partition, and its trace."""
        key = tuple(sorted(m.items()))
        if key not in self._refined:
            labels = list(self.labels)
            for e, v in self.free.items():
                labels[v] = ("free", m.get(e, e))
            colours = [_LABEL_IDS.setdefault(label, len(_LABEL_IDS)) for label in labels]
            partition = _Partition(colours, _cells(colours), -1)
            counts = tuple(sorted((c, len(vs)) for c, vs in partition.cells.items()))
            self._refined[key] = (labels, partition, (counts, partition.refine(sorted(partition.cells), self.adj, None)))
        labels, partition, trace = self._refined[key]
        return labels, partition.copy(), trace


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

    def __init__(self, ga: _Graph, gb: _Graph, budget: _Budget, accept):
        self.ga, self.gb, self.budget = ga, gb, budget
        self.accept = accept  # node bijection (a's node -> b's) -> is it an isomorphism?
        self.path: list = []

    def match(self, a: _Partition, b: _Partition) -> bool:
        """Is there an isomorphism mapping each class of ``a`` onto the same-coloured class of ``b``?

        ``a`` and ``b`` are equitable, with equal colour counts.
        """
        if a.discrete():
            return self.accept({min(vs): min(b.cells[c]) for c, vs in a.cells.items()})
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


def _verify(labels_a: list, adj_a: list, labels_b: list, adj_b: list, to_b: dict) -> bool:
    """Is the node bijection ``to_b`` an isomorphism of the labelled graphs?

    Colours already agree; checking every edge anyway makes a "yes" rest on
    this check alone, not on the argument that equal traces force it.
    """
    for u, v in to_b.items():
        if labels_a[u] != labels_b[v]:
            return False
        if sorted([to_b[x] for x in adj_a[u]]) != sorted(adj_b[v]):
            return False
    return True


def graph(p: Product) -> _Graph:
    """The labelled graph of a product's network: atoms by structure, their edges by role, wires."""
    if p._graph is None:
        g = _Graph()
        open_ends = {}
        for k, (atom, names) in enumerate(network(p)):
            sig = signature(atom)
            root = g.add_node(("atom", sig.shape))
            ports = {}
            for e in atom.edges:
                v = ports[e] = g.add_node(("port", sig.ports[e]))
                g.add_edge(root, v)
                g.port_edge[v] = e
                n = names[e]
                if n in open_ends:
                    wire = g.add_node(("wire",))
                    g.add_edge(open_ends.pop(n), wire)
                    g.add_edge(wire, v)
                else:
                    open_ends[n] = v
            g.atoms.append((atom, root, ports))
            g.atom_at[root] = k
        assert set(open_ends) == set(p.edges), "internal error: a product edge is neither free nor contracted"
        for n, v in open_ends.items():
            g.free[n] = g.add_node(("free", n))
            g.add_edge(g.free[n], v)
        p._graph = g
    return p._graph
