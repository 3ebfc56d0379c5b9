"""Products: flatten nested networks, merge Deltas into edges, combine powers.

After flattening, a product is a set of atoms joined by edge names. Every
Delta says "these indices are equal", so the edges it touches form one class
(union-find). A class that joins exactly two ends (two ports of different
atoms, or a port and a free edge) becomes a plain edge; any other class keeps
one Delta (a diagonal, a broadcast, a sum or a trace), and a class with no
ends at all is a closed loop worth its size. Two atoms that are powers of the
same base with every port in the same classes are one elementwise power.
"""

from __future__ import annotations

from collections import defaultdict

import sympy

from .._ir.along import inverse
from .._ir.elementwise import exponent, power
from .._ir.identity import signature
from .._ir.nodes import AlongEdge, Delta, Function, Product, Sum, Zero
from .._ir.rename import rename
from .._ir.util import UnionFind, fresh_edge
from .core import make_sum, simplified, simplify_node, terms_of


@simplify_node.register
def _(t: Product):
    weight = sympy.Integer(1)
    atoms = []
    pending = list(t.factors)
    while pending:
        f = simplified(pending.pop(0))
        if isinstance(f, Zero):
            return Zero._make(t.shape)
        pairs = terms_of(f)
        if len(pairs) == 1:
            w, f = pairs[0]
            weight *= w
        if isinstance(f, Product):
            pending[:0] = _fresh_inner(f).factors
        elif isinstance(f, Sum):
            # a sum factor: scale it so its first (canonical) term has weight 1
            lead = f.weights[0]
            weight *= lead
            atoms.append(Sum(f.terms, [w / lead for w in f.weights], edges=f.edges))
        elif isinstance(f, Delta) and not f.edges:
            weight *= f.size
        else:
            atoms.append(f)
    atoms, weight = _merge(atoms, t.edges, weight)
    cancelled = _cancel_inverses(atoms)
    if cancelled is not None:
        rest = simplified(Product(cancelled, edges=t.edges))
        return make_sum([(weight * w, c) for w, c in terms_of(rest)], t.shape)
    sums = [a for a in atoms if isinstance(a, Sum)]
    if (
        len(sums) == 1
        and all(isinstance(a, (Delta, Sum)) for a in atoms)
        and not any(isinstance(a, Delta) and set(a.edges) & set(t.edges) for a in atoms)
    ):
        # Only contracting Deltas around one sum (a sum over edges, a trace):
        # push them into each term, where they join that term's network. A
        # Delta with a free edge stays outside: inside it would become a
        # materialised diagonal in every term.
        return _distribute(sums[0], [a for a in atoms if isinstance(a, Delta)], t, weight)
    atoms, weight = _scale_sum_factors(atoms, t, weight)
    core = _assemble(atoms, t)
    if weight == 0:
        return Zero._make(t.shape)
    if isinstance(core, Sum):
        return make_sum([(weight * w, c) for w, c in terms_of(core)], t.shape)
    return make_sum([(weight, core)], t.shape)


def _distribute(total: Sum, deltas, t: Product, weight):
    pairs = []
    for w, term in zip(total.weights, total.terms):
        pairs.extend((weight * w * v, c) for v, c in terms_of(simplified(Product([term, *deltas], edges=t.edges))))
    return make_sum(pairs, t.shape)


def _fresh_inner(p: Product) -> Product:
    fresh = {e: fresh_edge() for e in p.inner_edges}
    return Product([rename(f, {e: fresh[e] for e in f.edges if e in fresh}) for f in p.factors], edges=p.edges)


def _merge(atoms, free_edges, weight):
    """Merge Deltas into edge classes and combine powers; return the new atom list and weight."""
    classes = UnionFind()
    sizes = {}
    others = []
    for a in atoms:
        for e in a.edges:
            classes.find(e)
            sizes[e] = a._shape[e]
        if isinstance(a, Delta):
            for e in a.edges[1:]:
                classes.union(a.edges[0], e)
        else:
            others.append(a)
    for e in free_edges:
        classes.find(e)

    others = _combine_powers(others, classes)

    ends = defaultdict(list)  # class -> [(atom index, edge)] ; free edges as (None, edge)
    order = []
    for k, a in enumerate(others):
        for e in a.edges:
            r = classes.find(e)
            ends[r].append((k, e))
            order.append(r)
    for e in free_edges:
        r = classes.find(e)
        ends[r].append((None, e))
        order.append(r)
    for e in classes:
        order.append(classes.find(e))

    renames = [dict() for _ in others]
    deltas = []
    for r in dict.fromkeys(order):
        here = ends.get(r, [])
        size = sizes.get(r) if r in sizes else _free_size(r, classes, sizes)
        ports = [(k, e) for k, e in here if k is not None]
        free = [e for k, e in here if k is None]
        if not here:
            weight *= size  # a closed loop of Deltas: the trace of an identity
        elif len(here) == 2 and len(free) == 1:
            (k, e), = ports
            renames[k][e] = free[0]
        elif len(here) == 2 and len(ports) == 2 and ports[0][0] != ports[1][0]:
            name = fresh_edge()
            for k, e in ports:
                renames[k][e] = name
        else:
            names = []
            for k, e in ports:
                renames[k][e] = fresh_edge()
                names.append(renames[k][e])
            deltas.append(Delta._make(size, tuple(names) + tuple(free)))
    renamed = [rename(a, {e: n for e, n in m.items() if e != n}) for a, m in zip(others, renames)]
    return renamed + deltas, weight


def _cancel_inverses(atoms):
    """``X @ inverse(X) = I`` and ``inverse(X) @ X = I``: the atoms with one such
    pair replaced by the identity, or None when there is none.

    Only for a plain matrix (an inverse over both edges of its input); a batch
    of matrices would leave a diagonal Delta over the batch edges.
    """
    for a in atoms:
        if not (isinstance(a, AlongEdge) and a.spec is inverse and set(a.input.edges) == set(a.axes)):
            continue
        row, col = a.axes
        for f in atoms:
            if f is a or len(f.edges) != 2:
                continue
            for p, q in (f.edges, f.edges[::-1]):
                # f is X with p in the row role and q in the column role
                if rename(f, {p: row, q: col}) != a.input:
                    continue
                if q == row and p != col:
                    ends = (p, col)        # X[p, j] X^-1[j, col]
                elif p == col and q != row:
                    ends = (row, q)        # X^-1[row, i] X[i, q]
                else:
                    continue
                rest = [g for g in atoms if g is not a and g is not f]
                identity = Delta._make(a._shape[row], ends) if ends[0] != ends[1] else Delta._make(a._shape[row], ())
                return rest + [identity]
    return None


def _free_size(r, classes, sizes):
    for e, s in sizes.items():
        if classes.find(e) == r:
            return s
    raise AssertionError("internal error: an edge class with no size")


def _combine_powers(atoms, classes):
    """Atoms that are powers of one base, joined elementwise on every port, become one power."""
    groups = defaultdict(list)
    keys = []
    for k, a in enumerate(atoms):
        port_classes = [classes.find(e) for e in a.edges]
        if len(set(port_classes)) != len(port_classes):
            keys.append(None)
            continue
        k_exp = exponent(a.spec) if isinstance(a, Function) else None
        base, k_exp = (a.inputs[0], k_exp) if k_exp is not None else (a, sympy.Integer(1))
        key = rename(base, {e: f"@{c}" for e, c in zip(a.edges, port_classes)})
        keys.append(key)
        groups[key].append((k, k_exp))
    if all(len(g) < 2 for g in groups.values()):
        return atoms
    result = []
    for k, a in enumerate(atoms):
        key = keys[k]
        if key is None or len(groups[key]) < 2:
            result.append(a)
            continue
        members = groups[key]
        if members[0][0] != k:
            continue  # merged into the group's first member
        total = sum(e for _, e in members)
        if total == 0:
            continue  # x^a x^-a = 1: the atom disappears and its classes stay as broadcasts
        base = a.inputs[0] if isinstance(a, Function) and exponent(a.spec) is not None else a
        result.append(simplified(base) if total == 1 else simplified(Function(power(total), [base], edges=a.edges)))
    return result


def _scale_sum_factors(atoms, t: Product, weight):
    """Each sum factor keeps one term at weight 1, its scale moved into ``weight``.

    Which term: the choice for which the whole product's structure hashes
    least, edge names ignored. The sum's own term order depends on the names
    of edges it shares with the rest of the product, which are arbitrary
    inner names, so "the first term" would make ``(a - b) c`` and
    ``-(b - a) c`` two normal forms; the free names must not decide either,
    or renaming would change the normal form.
    """
    for k, a in enumerate(atoms):
        if not isinstance(a, Sum):
            continue
        options = []
        for lead in dict.fromkeys(a.weights):
            trial = atoms[:k] + [Sum(a.terms, [w / lead for w in a.weights], edges=a.edges)] + atoms[k + 1:]
            options.append((_structure_key(_assemble(trial, t)), lead, trial))
        _, lead, atoms = min(options, key=lambda option: option[0])
        weight *= lead
    return atoms, weight


def _structure_key(t):
    sig = signature(t)
    return sig.shape, tuple(sorted(sig.ports.values()))


def _assemble(atoms, t: Product):
    if not atoms:
        return Product(())
    if len(atoms) == 1 and set(atoms[0].edges) == set(t.edges):
        return atoms[0]
    return Product(atoms, edges=t.edges)
