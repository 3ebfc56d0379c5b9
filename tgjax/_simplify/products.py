"""Products: named rules over a flat product, applied in order to a fixpoint.

A product in the making is ``Flat``: a weight times atoms (variables,
Deltas, functions, sum factors) joined by edge names; a name held by two
atoms is contracted, by one atom free. Every Delta says "these indices are
equal", so the edges it touches form one class. The rules in
``PRODUCT_RULES`` each rewrite a ``Flat`` into an equal one (or into a
finished expression); the first that applies is taken, then the table is
tried again from the top, until none applies. Because every rule looks at the
whole flat network, not at how the user grouped it, ``(d * A) * A`` and
``d * (A * A)`` reach the same fixpoint. Last, each sum factor is scaled to a
canonical term weight and the atoms are assembled into one node.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter, defaultdict
from collections.abc import Mapping

import sympy

from .._ir.along import constant_along, inverse, softmax
from .._ir.elementwise import exp, exponent, power, sum_of_exp
from .._ir.identity import signature
from .._ir.nodes import AlongEdge, Delta, Expr, Function, Product, Sum, Zero
from .._ir.rename import freshen_inner, rename
from .._ir.util import UnionFind, fresh_edge, is_fresh
from .core import (
    make_sum, not_simplified, recording_now, report, simplified, simplified_alike, simplify_node, spend, terms_of, tidy_weight,
)
from .sums import split_where_terms_merge


@dataclasses.dataclass(frozen=True)
class Flat:
    """``weight`` times the network of ``atoms``, whose free edges are ``edges`` (in this order)."""

    atoms: tuple
    weight: sympy.Expr
    edges: tuple
    shape: Mapping

    @classmethod
    def of(cls, t: Product) -> Flat:
        """The flat form of ``t``: products nested in it that are not yet simplified are opened
        in place, and every other factor is simplified (not yet inlined).

        Simplifying each nested product first would, for a chain of them (the
        derivative of an n-deep chain nests n products), build n normal forms of
        growing size: quadratic work for what is one product of n atoms.
        """
        opening = _Opening(set(t.edges))
        opening.visit(t, {})
        return cls(tuple(opening.atoms), opening.weight, t.edges, t.shape)

    def but(self, atoms, weight=None) -> Flat:
        return Flat(tuple(atoms), self.weight if weight is None else weight, self.edges, self.shape)

    def expr(self) -> Expr:
        """The product as an expression, sum factors as they are."""
        core = _assemble(self.atoms, self.edges)
        return make_sum([(self.weight * w, c) for w, c in terms_of(core)], self.shape)


class _Opening:
    """Collects the atoms of products nested inside one another, renaming the inner edges of
    each opened product apart from every name already in use (as ``inline_nested`` does)."""

    def __init__(self, taken: set):
        self.taken = taken
        self.atoms: list = []
        self.weight = sympy.Integer(1)
        self.opened: set = set()

    def visit(self, f: Expr, names: dict):
        """Add ``f``, whose edge ``e`` is called ``names.get(e, e)`` in the flat product."""
        if isinstance(f, Sum) and len(f.terms) == 1 and not_simplified(f):
            self.weight *= f.weights[0]
            self.visit(f.terms[0], names)
        elif isinstance(f, Product) and not_simplified(f) and id(f) not in self.opened:
            # a node met twice (a DAG) is opened once; again, it is simplified as a whole
            self.opened.add(id(f))
            scope = {e: names.get(e, e) for e in f.edges}
            inner = f.inner_edges
            # in factor order, so the fresh names never depend on hashing
            for e in dict.fromkeys(e for g in f.factors for e in g.edges if e in inner):
                scope[e] = fresh_edge() if e in self.taken else e
                self.taken.add(scope[e])
            for g in f.factors:
                self.visit(g, scope)
        else:
            # simplified before it is renamed: a node met again keeps its cached normal form
            # (renamed first, a product shared at every level would be simplified anew each time)
            mapping = {e: names[e] for e in f.edges if names.get(e, e) != e}
            atom = simplified(f)
            self.atoms.append(rename(atom, mapping) if mapping else atom)


@simplify_node.register
def _(t: Product):
    result = _fixpoint(Flat.of(t))
    if isinstance(result, Expr):
        return result
    if result.weight == 0:
        return Zero._make(t.shape)
    return _scale_sum_factors(_fresh_inner_names(result)).expr()


def _fixpoint(p: Flat):
    while True:
        spend(len(p.atoms))
        for rule in PRODUCT_RULES:
            result = rule(p)
            if result is not None:
                break
        else:
            return p
        if recording_now():
            report(rule, p.expr(), result if isinstance(result, Expr) else result.expr())
        if isinstance(result, Expr):
            return result
        p = result


# -- the rules -----------------------------------------------------------------------------


def zero_factor(p: Flat):
    """A zero factor makes the product zero: ``x * 0 = 0``."""
    if p.weight == 0 or any(isinstance(a, Zero) for a in p.atoms):
        return Zero._make(p.shape)
    return None


def inline_nested(p: Flat):
    """A factor that is a product joins the network (its inner edges renamed
    apart), a constant joins the weight, and a sum factor is scaled so that its
    first term has weight 1: ``(x y) z = x y z``, ``(2 x) y = 2 (x y)``,
    ``(2 a + 4 b) c = 2 (a + 2 b) c``.
    """
    if not any(_nested(a) for a in p.atoms):
        return None
    weight, atoms = p.weight, []
    # names a nested product's inner edges must not take: any other edge of this network,
    # free or inner to a product inlined before it (only those are renamed apart, so a
    # nested normal form keeps its atoms as they are)
    taken = {e for a in p.atoms for e in a.edges} | set(p.edges)
    for a in p.atoms:
        if isinstance(a, Sum) and len(a.terms) == 1:
            weight *= a.weights[0]
            a = a.terms[0]
        if isinstance(a, Product):
            a = freshen_inner(a, taken)
            taken |= a.inner_edges
            atoms.extend(a.factors)
        elif isinstance(a, Sum):
            lead = a.weights[0]
            weight *= lead
            atoms.append(a if lead == 1 else Sum(a.terms, [w / lead for w in a.weights], edges=a.edges))
        elif isinstance(a, Delta) and not a.edges:
            weight *= a.size
        else:
            atoms.append(a)
    return p.but(atoms, weight)


def _nested(a: Expr) -> bool:
    return (
        isinstance(a, Product)
        or (isinstance(a, Sum) and (len(a.terms) == 1 or a.weights[0] != 1))
        or (isinstance(a, Delta) and not a.edges)
    )


def merge_deltas(p: Flat):
    """Deltas merge into the edges they join: ``X[i,j] δ[j,k] Y[k,l] = X[i,j] Y[j,l]``.

    The edges a Delta touches are one class. A class that joins exactly two
    ends (ports of two atoms, or a port and a free edge) becomes a plain edge;
    any other class keeps one Delta (a diagonal, a broadcast, a sum or a
    trace), and a class with no ends at all is a closed loop worth its size.
    Applies when that changes the Deltas or the weight.
    """
    classes, sizes = _classes(p.atoms)
    others = [a for a in p.atoms if not isinstance(a, Delta)]
    for e in p.edges:
        classes.find(e)
    ends = defaultdict(list)  # class -> [(atom index, edge)]; a free edge as (None, edge)
    order = []
    for k, a in enumerate(others):
        for e in a.edges:
            ends[classes.find(e)].append((k, e))
            order.append(classes.find(e))
    for e in p.edges:
        ends[classes.find(e)].append((None, e))
        order.append(classes.find(e))
    order.extend(classes.find(e) for e in classes)

    weight = p.weight
    renames = [{} for _ in others]
    deltas = []
    for r in dict.fromkeys(order):
        here = ends.get(r, [])
        ports = [(k, e) for k, e in here if k is not None]
        free = [e for k, e in here if k is None]
        size = sizes[r] if r in sizes else p.shape[free[0]]
        if not here:
            weight *= size
        elif len(here) == 2 and len(free) == 1:
            (k, e), = ports
            renames[k][e] = free[0]
        elif len(here) == 2 and len(ports) == 2 and ports[0][0] != ports[1][0]:
            (_, e0), (k1, e1) = ports
            renames[k1][e1] = e0
        else:
            names = _port_names(ports, free)
            for (k, e), name in zip(ports, names):
                renames[k][e] = name
            deltas.append(Delta._make(size, tuple(names) + tuple(free)))
    before = (weight == p.weight, sorted(len(a.edges) for a in p.atoms if isinstance(a, Delta)))
    if before == (True, sorted(len(d.edges) for d in deltas)):
        return None  # already merged: each class with more than two ends has its one Delta
    renamed = [rename(a, {e: n for e, n in m.items() if e != n}) for a, m in zip(others, renames)]
    return p.but(renamed + deltas, weight)


def _port_names(ports, free) -> list:
    """A name for each port of a class that keeps a Delta: its own, unless another end
    of the class has it too (then a fresh one). Keeping names keeps atoms as they are,
    rather than renaming every factor of a deep derivative's product at every step."""
    counts = Counter(e for _, e in ports)
    counts.update(free)
    return [e if counts[e] == 1 else fresh_edge() for _, e in ports]


def _classes(atoms):
    """Union-find of the edges of ``atoms``, joined by their Deltas, and each class's size."""
    classes, sizes = UnionFind(), {}
    for a in atoms:
        for e in a.edges:
            classes.find(e)
        if isinstance(a, Delta):
            classes.join(a.edges)
    for a in atoms:
        for e in a.edges:
            sizes[classes.find(e)] = a._shape[e]
    return classes, sizes


def combine_powers(p: Flat):
    """Atoms, or contractions of atoms, that are powers of one base, joined
    elementwise on every port, are one power: ``x[i] x[j] δ[i,j,k] = x^2[k]``,
    ``A^2 A^-1 = A`` (elementwise), ``(S @ T) * (S @ T) = (S @ T)^2`` and
    ``(S @ T) * (S @ T)^-1 = 1``.

    A contraction is a set of atoms joined by edges that two of them share
    (not through a Delta); it stands for the product of its atoms. A merged
    base leaves ones (a Delta per port) in its place, which ``merge_deltas``
    then folds into the edge classes; a base whose exponents add up to 0
    leaves only ones.
    """
    classes, _ = _classes(p.atoms)
    sizes = {e: a._shape[e] for a in p.atoms for e in a.edges}
    candidates = defaultdict(list)
    for members, ports in _contractions(p.atoms):
        if len(members) == 1:
            a = p.atoms[members[0]]
            k_exp = exponent(a.spec) if isinstance(a, Function) else None
            base, k_exp = (a.inputs[0], k_exp) if k_exp is not None else (a, sympy.Integer(1))
        else:
            base, k_exp = Product([p.atoms[k] for k in members], edges=ports), sympy.Integer(1)
        candidates[_power_hint(base, ports, classes)].append((members, ports, k_exp, base))
    groups = defaultdict(list)
    for alike in candidates.values():
        if len(alike) > 1:
            for members, ports, k_exp, base in alike:
                groups[_power_key(base, ports, classes)].append((members, ports, k_exp, base))
    merged = [g for g in groups.values() if len(g) > 1]
    if not merged:
        return None
    atoms = list(p.atoms)
    for group in merged:
        for members, ports, _, _ in group:
            for k in members:
                atoms[k] = []
            atoms[members[0]] = [Delta._make(sizes[e], (e,)) for e in ports]
        first, ports, _, base = group[0]
        total = sum(e for _, _, e, _ in group)
        if total != 0:
            atoms[first[0]] = [simplified(base) if total == 1 else simplified(Function(power(total), [base], edges=ports))]
    return p.but([a for item in atoms for a in (item if isinstance(item, list) else [item])])


def square_of_a_full_contraction(p: Flat):
    """Two copies of one tensor contracted with each other over all their edges are
    its square, summed: ``x[i] x[i] = x^2[i] δ[i]``, so ``x @ x`` and
    ``F.sum(x ** 2)`` (and ``Y @ Y`` over both edges and ``F.sum(Y * Y)``) have one
    normal form. Copies joined port to other port (``Y[a,b] Y[b,a]``, a trace of
    ``Y Y``) are not equal as tensors and stay a contraction.
    """
    holders = Counter(e for a in p.atoms for e in a.edges)
    seen: dict = {}
    for k, a in enumerate(p.atoms):
        if isinstance(a, Delta) or not a.edges or any(e in p.edges or holders[e] != 2 for e in a.edges):
            continue
        key = frozenset(a.edges)
        j = seen.get(key)
        if j is None:
            seen[key] = k
            continue
        b = p.atoms[j]
        if not (type(b) is type(a) and b == a):
            continue
        square = simplified(Function(power(2), [a], edges=a.edges))
        ones = [Delta._make(a._shape[e], (e,)) for e in a.edges]
        return p.but([g for m, g in enumerate(p.atoms) if m not in (j, k)] + [square, *ones])
    return None


def _contractions(atoms) -> list:
    """The atoms other than Deltas, grouped into sets joined by edges that two of them share,
    as ``(atom indices, ports)``: the ports are the edges that leave the set, in order."""
    joined = UnionFind()
    holders = defaultdict(list)
    for k, a in enumerate(atoms):
        if isinstance(a, Delta):
            continue
        joined.find(k)
        for e in a.edges:
            holders[e].append(k)
    for e, ks in holders.items():
        if len(ks) == 2:
            joined.union(*ks)
    members = defaultdict(list)
    for k, a in enumerate(atoms):
        if not isinstance(a, Delta):
            members[joined.find(k)].append(k)
    out = []
    for ks in members.values():
        inside = {e for k in ks for e in atoms[k].edges if len(holders[e]) == 2 and all(h in ks for h in holders[e])}
        ports = tuple(e for k in ks for e in atoms[k].edges if e not in inside)
        out.append((ks, ports))
    return out


def _port_places(ports, classes) -> dict:
    """Port -> (its edge class, its place among the ports of that class, in port order)."""
    seen = Counter()
    places = {}
    for e in ports:
        c = classes.find(e)
        places[e] = (c, seen[c])
        seen[c] += 1
    return places


def _power_hint(base: Expr, ports, classes) -> tuple:
    """What ``_power_key`` tells apart, without renaming anything: the base's structure and,
    for each port, its place (``_port_places``) and its role. Equal keys have equal hints,
    so only bases whose hints meet need their keys built."""
    sig = signature(base)
    return sig.shape, tuple(sorted((*place, sig.ports[e]) for e, place in _port_places(ports, classes).items()))


def _power_key(base: Expr, ports, classes) -> Expr:
    """``base`` with each port renamed after its edge class: equal keys are one base on the same indices.

    Two ports in one class (a diagonal) are told apart by their order, which
    cannot change the value: the indices are equal.
    """
    return rename(base, {e: f"@{c}#{k}" for e, (c, k) in _port_places(ports, classes).items()})


def combine_scalar_factors(p: Flat):
    """Parts of the network that are scalars on their own (connected components
    with no free edge) and equal are one power: ``(x·y) (x·y) = (x·y)^2``,
    ``(x·y)^2 (x·y)^-1 = x·y``.
    """
    components = _scalar_components(p)
    groups: dict = {}
    for members in components:
        part = p.atoms[members[0]] if len(members) == 1 else Product([p.atoms[k] for k in members])
        k_exp = exponent(part.spec) if isinstance(part, Function) else None
        base, k_exp = (part.inputs[0], k_exp) if k_exp is not None else (part, sympy.Integer(1))
        groups.setdefault(base, []).append((members, k_exp))
    merged = [(base, g) for base, g in groups.items() if len(g) > 1]
    if not merged:
        return None
    dropped = {k for _, g in merged for members, _ in g for k in members}
    atoms = [a for k, a in enumerate(p.atoms) if k not in dropped]
    for base, g in merged:
        total = sum(e for _, e in g)
        if total != 0:
            atoms.append(simplified(base) if total == 1 else simplified(Function(power(total), [base], edges=())))
    return p.but(atoms)


def _scalar_components(p: Flat) -> list:
    """The connected components of the network that touch no free edge, as lists of atom indices."""
    classes = UnionFind()
    for k, a in enumerate(p.atoms):
        classes.find(("atom", k))
        for e in a.edges:
            classes.union(("atom", k), ("edge", e))
    free = {classes.find(("edge", e)) for e in p.edges if ("edge", e) in classes}
    components: dict = {}
    for k in range(len(p.atoms)):
        root = classes.find(("atom", k))
        if root not in free:
            components.setdefault(root, []).append(k)
    return list(components.values())


def cancel_inverse(p: Flat):
    """``X @ inverse(X) = I`` and ``inverse(X) @ X = I``, and their trace is the size.

    Only for a plain matrix (an inverse over both edges of its input); a batch
    of matrices would leave a diagonal Delta over the batch edges.
    """
    for a in p.atoms:
        if not (isinstance(a, AlongEdge) and a.spec is inverse and set(a.input.edges) == set(a.axes)):
            continue
        row, col = a.axes
        for f in p.atoms:
            if f is a or len(f.edges) != 2:
                continue
            for u, v in (f.edges, f.edges[::-1]):
                # f is X with u in the row role and v in the column role
                if rename(f, {u: row, v: col}) != a.input:
                    continue
                if v == row:
                    ends = (u, col)        # X[u, j] X^-1[j, col]; a trace when u is col
                elif u == col:
                    ends = (row, v)        # X^-1[row, i] X[i, v]
                else:
                    continue
                rest = [g for g in p.atoms if g is not a and g is not f]
                size = a._shape[row]
                identity = Delta._make(size, ends) if ends[0] != ends[1] else Delta._make(size, ())
                return p.but(rest + [identity])
    return None


def sum_into_sum_factor(p: Flat):
    """Deltas that only sum over edges of a sum factor (a sum over an edge, a
    trace) go into each of its terms, where they join that term's network:
    ``Σ_i (a + b)[i] = Σ_i a[i] + Σ_i b[i]``.

    A Delta with a free edge stays outside: inside, it would become a
    materialised diagonal in every term.
    """
    holders = defaultdict(list)
    for k, a in enumerate(p.atoms):
        for e in a.edges:
            holders[e].append(k)
    for s, total in enumerate(p.atoms):
        if not isinstance(total, Sum):
            continue
        summing = [
            k for k, a in enumerate(p.atoms)
            if isinstance(a, Delta) and a.edges and all(e not in p.edges and s in holders[e] for e in a.edges)
        ]
        if not summing:
            continue
        group = {s, *summing}
        inner = Product([p.atoms[k] for k in sorted(group)])
        pairs = [
            (w * v, c)
            for w, term in zip(total.weights, total.terms)
            for v, c in terms_of(simplified_alike(Product([term, *(p.atoms[k] for k in summing)], edges=inner.edges)))
        ]
        result = make_sum(pairs, inner.shape)
        if len(group) == len(p.atoms):
            # the product became a sum: in the normal form of one, as collect_terms leaves it
            return make_sum(split_where_terms_merge([(p.weight * w, c) for w, c in terms_of(result)]), p.shape)
        return p.but([a for k, a in enumerate(p.atoms) if k not in group] + [result])
    return None


def recognise_softmax(p: Flat):
    """``exp(z) / sum_e exp(z)`` written by hand is ``softmax(z)`` along ``e``, which is
    stable at large logits: an ``exp`` atom times the inverse of the sum of the same
    ``exp`` over one edge, on the same indices otherwise.

    A finishing rule (``FINISHING_RULES``): applied once the normal form is reached, since
    a softmax would hide the ``exp`` and the sum that may cancel against other factors.
    """
    classes, _ = _classes(p.atoms)
    for k, a in enumerate(p.atoms):
        summed = sum_of_exp(a.inputs[0]) if isinstance(a, Function) and exponent(a.spec) == -1 else None
        if summed is None:
            continue
        u, gone = summed
        ports = {classes.find(e) for e in a.edges}
        for j, b in enumerate(p.atoms):
            if not (isinstance(b, Function) and b.spec is exp):
                continue
            w = b.inputs[0]
            for e in b.edges:
                candidate = rename(u, {gone: e})
                if classes.find(e) in ports or _power_key(candidate, candidate.edges, classes) != _power_key(w, w.edges, classes):
                    continue
                atoms = list(p.atoms)
                atoms[j] = AlongEdge(softmax, w, (e,), edges=b.edges)
                atoms[k] = None
                ones = [Delta._make(a._shape[f], (f,)) for f in a.edges]
                return p.but([x for x in atoms if x is not None] + ones)
    return None


def ones_out_of_sum_factor(p: Flat):
    """Ones that every term of a sum factor carries on one of its edges (a broadcast)
    move out of it: ``(s ⊗ 1_a - t ⊗ 1_a) y[a] = (s - t) 1_a y[a]``, so that the
    product's normal form does not depend on where the broadcast was written.
    """
    for k, a in enumerate(p.atoms):
        if not isinstance(a, Sum):
            continue
        for e in a.edges:
            stripped = [constant_along(term, (e,)) for term in a.terms]
            if all(term is not None for term in stripped):
                inner = Sum(stripped, a.weights, edges=tuple(f for f in a.edges if f != e))
                atoms = [simplified(inner) if j == k else b for j, b in enumerate(p.atoms)]
                return p.but(atoms + [Delta._make(a._shape[e], (e,))])
    return None


def broadcast_sum_distributed(p: Flat):
    """A product of one sum factor and ones on free edges, and nothing else, is the sum of the
    factor's terms, each broadcast: ``(x[a] δ[a] + 1) δ[l] = x[a] δ[a] δ[l] + δ[l]``. A sum
    over an edge of a sum factor leaves that sum (``sum_into_sum_factor``), so the tensor has
    one normal form whether the broadcast sum stands alone or in a product whose other
    factors merge away (``δ[i] (δ[i,l] + x[i] δ[l])`` times a size).
    """
    sums = [a for a in p.atoms if isinstance(a, Sum)]
    if len(sums) != 1 or len(p.atoms) < 2:
        return None
    (total,) = sums
    ones = [a for a in p.atoms if a is not total]
    if not all(isinstance(a, Delta) and len(a.edges) == 1 and a.edges[0] in p.edges for a in ones):
        return None
    pairs = [
        (p.weight * w * v, c)
        for w, term in zip(total.weights, total.terms)
        for v, c in terms_of(simplified_alike(Product([term, *ones], edges=p.edges)))
    ]
    return make_sum(pairs, p.shape)


# Applied to each product of a finished normal form (see ``finish.py``).
FINISHING_RULES = (recognise_softmax,)

PRODUCT_RULES = (
    zero_factor, inline_nested, merge_deltas, combine_powers, square_of_a_full_contraction, combine_scalar_factors,
    cancel_inverse, sum_into_sum_factor,
    ones_out_of_sum_factor, broadcast_sum_distributed,
)


# -- the canonical names and scale ------------------------------------------------------------


def _fresh_inner_names(p: Flat) -> Flat:
    """Inner edges under fresh names, so that no user's edge name is printed for an inner one."""
    free = set(p.edges)
    stale = {e for a in p.atoms for e in a.edges if e not in free and not is_fresh(e)}
    if not stale:
        return p
    fresh = {e: fresh_edge() for e in stale}
    return p.but([rename(a, {e: fresh[e] for e in a.edges if e in fresh}) for a in p.atoms])


# -- the canonical scale of sum factors ------------------------------------------------------


def _scale_sum_factors(p: Flat) -> Flat:
    """Each sum factor keeps one term at weight 1, its scale moved into the weight.

    Which term: the one whose rescaled sum's own structure hashes least, edge
    names ignored; between choices that tie there, the one for which the
    whole product's structure hashes least. The sum's own term order depends
    on the names of edges it shares with the rest of the product, which are
    arbitrary inner names, so "the first term" would make ``(a - b) c`` and
    ``-(b - a) c`` two normal forms. Each sum breaks its ties with every other
    sum at its own scale (the least of its own structure), never at the scale
    it arrived with or chose already: the choices then do not depend on the
    order of the factors, and the work is linear in the number of sum
    factors (a deep chain's derivative has one per layer). What structure
    cannot tell apart, an
    antisymmetric sum ``y[j] δ[m] - y[m] δ[j]`` and its negative (the same
    network with two free edges swapped), the free edge names settle; inner
    names never do. No rule can settle that tie so that the normal form is
    both the same for ``-(-s) x`` as for ``s x`` and renamed along with its
    expression (swapping ``j`` and ``m`` turns each choice into the other):
    this one keeps the first, so renaming such a product's free edges can
    give a normal form that is not the renamed one.

    The choice is for canonicity only: lowering does not depend on it (the
    contraction it plans, and the operand order of each step, are its own).
    """
    sums = [k for k, a in enumerate(p.atoms) if isinstance(a, Sum)]
    options = {k: [(lead, _rescaled(p.atoms[k], lead)) for lead in dict.fromkeys(p.atoms[k].weights)] for k in sums}
    own = {k: _least(options[k], lambda o: _structure_key(o[1])) for k in sums}
    context = [own[k][0][1] if k in own else a for k, a in enumerate(p.atoms)]
    atoms, weight = list(p.atoms), p.weight
    for k in sums:
        lead, atoms[k] = _least(own[k], _placed(_placed_key, context, k, p.edges))[0]
        weight *= lead
    return p.but(atoms, weight)


def _least(options: list, key) -> list:
    """The options whose key is least (all of them where they tie)."""
    if len(options) < 2:
        return options
    keys = [key(o) for o in options]
    best = min(keys)
    return [o for o, k in zip(options, keys) if k == best]


def _placed(key, atoms, k: int, edges):
    """``key`` of the product with its ``k``-th atom replaced by an option's rescaled sum."""
    return lambda option: key(_assemble(atoms[:k] + [option[1]] + atoms[k + 1:], edges))


def _rescaled(s: Sum, lead) -> Sum:
    """``s`` divided by ``lead`` (one of its weights), its weights tidied."""
    weights = [_ratio(w, lead) for w in s.weights]
    return s if weights == list(s.weights) else Sum(s.terms, weights, edges=s.edges)


@functools.lru_cache(maxsize=4096)
def _ratio(w, lead):
    """``w / lead`` tidied; cached, as every scale of every sum factor is tried again in
    each product the sum appears in (SymPy divides in tens of microseconds)."""
    return sympy.Integer(1) if w == lead else tidy_weight(w / lead)


def _structure_key(t):
    sig = signature(t)
    return sig.shape, tuple(sorted(sig.ports.values()))


def _placed_key(t):
    """``_structure_key``, then the named hash: which free edge plays which role."""
    return _structure_key(t), hash(t)


def _assemble(atoms, edges) -> Expr:
    if not atoms:
        return Product(())
    if len(atoms) == 1 and set(atoms[0].edges) == set(edges):
        return atoms[0]
    return Product(atoms, edges=edges)
