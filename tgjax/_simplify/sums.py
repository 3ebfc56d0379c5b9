"""Sums: one named rule, ``collect_terms``, that brings a sum to its normal form."""

from __future__ import annotations

from collections import Counter

import sympy

from .._ir.identity import network, signature
from .._ir.nodes import Delta, Expr, Product, Sum
from .._ir.util import combine
from .core import make_sum, not_simplified, renamed_normal_form, report, simplified, simplify_node, spend, terms_of


@simplify_node.register
def _(t: Sum):
    if t.renamed_from is not None:
        # the normal form of a renamed copy is the renamed normal form: each sum is simplified once
        return renamed_normal_form(t)
    return collect_terms(t)


def collect_terms(t: Sum):
    """Nested sums flattened, isomorphic terms merged by adding their weights,
    zero terms dropped, the rest in canonical order: ``x + (y - x) = y``,
    ``A[i,j] + A[i,k] δ[k,j] = 2 A[i,j]``. A term that is a sum broadcast
    along new edges is split into its terms where one of them then merges with
    another term, so that a shift cancels: ``z + c - (c + lse) ⊗ 1 = z - lse ⊗ 1``;
    likewise a product is distributed over one of its sum factors where a term
    of the result merges with another term: ``(x + y) w - x w - y w = 0``
    (``distribute_where_terms_merge``).

    It always applies (it is the normal form of a sum), and is reported when
    it merged or dropped a term.
    """
    pairs = []
    _open_into(t, sympy.Integer(1), pairs, set())
    spend(len(pairs))
    pairs = distribute_where_terms_merge(split_where_terms_merge(pairs))
    result = make_sum(pairs, t.shape)
    if len(terms_of(result)) < len(pairs):
        report(collect_terms, t, result)
    return result


def _open_into(t: Sum, weight, pairs: list, opened: set):
    """Append the (weight, core) pairs of ``weight * t`` to ``pairs``, opening in place the sums
    nested in ``t`` that are not simplified yet.

    A sum built by repeated ``+`` nests n sums; simplifying each level on its own
    would build n normal forms of growing size, quadratic work for one sum of n
    terms. A sum met twice (a DAG) is opened once; again, it is simplified as a whole.
    """
    for w, u in zip(t.weights, t.terms):
        if isinstance(u, Sum) and not_simplified(u) and id(u) not in opened:
            opened.add(id(u))
            _open_into(u, weight * w, pairs, opened)
        else:
            pairs.extend((weight * w * v, core) for v, core in terms_of(simplified(u)))


def split_where_terms_merge(pairs: list) -> list:
    """``pairs`` with each broadcast sum among them split into its broadcast terms, where one
    of those is isomorphic to another term (elsewhere the sum stays factored: smaller, and
    what lowering computes best)."""
    out = list(pairs)
    for k, (w, core) in enumerate(pairs):
        split = _broadcast_terms(core)
        if split is None:
            continue
        others = [c for j, (_, c) in enumerate(out) if j != k and c is not None]
        if any(c.edges and any(c == o for o in others) for _, c in split):
            out[k] = (w, None)
            out.extend((w * v, c) for v, c in split)
    return [(w, c) for w, c in out if c is not None]


def distribute_where_terms_merge(pairs: list) -> list:
    """``pairs`` with each product that has a sum factor distributed over it, where a term of
    the result is isomorphic to another term, or to a term of another product distributed
    likewise (elsewhere the product stays factored): ``(x + y) w - x w - y w = 0`` and
    ``(x + y) w - (x + z) w = y w - z w``.

    Only a factor with a term whose atoms, with the product's other atoms, are
    those of another term, or of another product's distributed term (the same
    structures, Deltas aside), is tried: so a sum of n terms costs about n
    lookups, not n^2 comparisons, and a product whose distribution would need
    further rules to meet another term (a layer norm's gradient has many) stays
    factored. Two distributed terms are simplified and compared only where their
    networks are also wired alike (``_wiring_key``).
    """
    if len(pairs) < 2:
        return pairs
    keys = [_atom_key(_atoms(core)) for _, core in pairs]
    counted = Counter(keys)
    options = {k: _distribution_keys(core) for k, (_, core) in enumerate(pairs) if isinstance(core, Product)}
    options = {k: found for k, found in options.items() if found}

    def another_term_has(wanted: tuple, k: int) -> bool:
        return counted[wanted] - (keys[k] == wanted) > 0

    out = list(pairs)
    by_hash: dict = {}
    for j, (_, c) in enumerate(pairs):
        by_hash.setdefault(hash(c), []).append(j)

    def merges_with_a_term(split: list, k: int) -> bool:
        return any(j != k and out[j][1] is not None and c == out[j][1] for _, c in split for j in by_hash.get(hash(c), ()))

    pending = {}  # the products no term merged with: their options, to be tried together
    for k, found in options.items():
        w, core = pairs[k]
        for s, term_keys in found:
            if any(another_term_has(key, k) for key in term_keys):
                split = _distributed(w, core, s)
                if merges_with_a_term(split, k):
                    out[k] = (w, None)
                    out.extend(split)
                    break
        else:
            pending[k] = found
    if len(pending) > 1:
        _distribute_together_where_terms_merge(out, pending)
    return [(w, c) for w, c in out if c is not None]


def _distribute_together_where_terms_merge(out: list, options: dict):
    """Distribute the products ``out[k]`` (for ``k`` in ``options``: its sum factors and
    their terms' atom keys), each over one of its sum factors, where a term of its
    distribution is isomorphic to a term of another's; in place.

    Candidate terms are found by atom key, then by ``_wiring_key``, in one lookup
    each; only those are simplified and compared. Every product with a term equal
    to another product's is distributed: ``(x + y) w + (z + y) w + (u + y) w`` is
    ``x w + z w + u w + 3 y w``.
    """
    products_with = Counter()  # atom key -> how many products have a distributed term with it
    for found in options.values():
        products_with.update({key for _, term_keys in found for key in term_keys})
    alike: dict = {}  # wiring key -> [(product, sum factor, term)]
    for k, found in options.items():
        for i, (s, term_keys) in enumerate(found):
            for a, key in enumerate(term_keys):
                if products_with[key] > 1:
                    others = [f for f in out[k][1].factors if f is not s]
                    alike.setdefault(_wiring_key(others, s.terms[a], out[k][1].edges), []).append((k, i, a))
    terms: dict = {}  # (product, sum factor, term) -> the cores of that one term distributed

    def cores(k: int, i: int, a: int) -> list:
        if (k, i, a) not in terms:
            core, s = out[k][1], options[k][i][0]
            others = [f for f in core.factors if f is not s]
            terms[k, i, a] = [c for _, c in terms_of(simplified(Product([*others, s.terms[a]], edges=core.edges)))]
        return terms[k, i, a]

    done = set()
    for group in alike.values():
        if len({k for k, _, _ in group}) < 2:
            continue
        classes: list = []  # [(a representative's cores, {product: sum factor})]: terms equal up to names
        for k, i, a in group:
            if k in done:
                continue
            mine = cores(k, i, a)
            same = next((members for rep, members in classes if any(c == d for c in mine for d in rep)), None)
            if same is None:
                classes.append((mine, {k: i}))
            else:
                same.setdefault(k, i)
        for _, members in classes:
            if len(members) < 2:
                continue
            for k, i in members.items():
                if k not in done:
                    out.extend(_distributed(*out[k], options[k][i][0]))
                    out[k] = (out[k][0], None)
                    done.add(k)


def _distribution_keys(core: Product) -> list:
    """For each sum factor of ``core``: the factor, and the atom keys of the terms that
    distributing ``core`` over it gives."""
    found = []
    for s in (f for f in core.factors if isinstance(f, Sum)):
        others = [f for f in core.factors if f is not s]
        found.append((s, [_atom_key(others + _atoms(u)) for u in s.terms]))
    return found


def _wiring_key(others: list, u: Expr, edges) -> int:
    """A hash of the network ``others`` times ``u`` with Deltas read as the hyperedges they are:
    equal for two products that simplify to isomorphic ones, save where a product rule
    (a power, a function's rule) changes their atoms. Colour refinement on the atoms, each
    coloured by its structure and, round by round, by what each of its edges meets."""
    atoms = network(Product([*others, u], edges=edges))
    parent: dict = {}

    def root(e):
        while parent.get(e, e) != e:
            e = parent[e]
        return e

    for a, names in atoms:
        if isinstance(a, Delta) and a.edges:
            first, *rest = (root(names[e]) for e in a.edges)
            for r in rest:
                parent[r] = first
    free = {root(e) for e in edges}
    real = [(signature(a), names) for a, names in atoms if not isinstance(a, Delta)]
    ends: dict = {}  # hyperedge -> [(atom, port colour)]
    for k, (sig, names) in enumerate(real):
        for e, n in names.items():
            ends.setdefault(root(n), []).append((k, sig.ports[e]))
    colours = [sig.shape for sig, _ in real]
    for _ in range(len(colours)):
        seen = [[] for _ in colours]
        for h, on in ends.items():
            mark = h in free
            for k, port in on:
                others_on = tuple(sorted(combine(colours[j], p) for j, p in on if j != k))
                seen[k].append(combine(port, mark, others_on))
        refined = [combine(c, tuple(sorted(nb))) for c, nb in zip(colours, seen)]
        settled = len(set(refined)) == len(set(colours))
        colours = refined
        if settled:
            break
    return combine(tuple(sorted(colours)), len(free))


def _distributed(w, core: Product, s: Sum) -> list:
    """The (weight, core) pairs of ``w * core`` distributed over its sum factor ``s``."""
    others = [f for f in core.factors if f is not s]
    return [
        (w * v * x, c)
        for v, u in zip(s.weights, s.terms)
        for x, c in terms_of(simplified(Product([*others, u], edges=core.edges)))
    ]


def _atoms(t: Expr) -> list:
    return list(t.factors) if isinstance(t, Product) else [t]


def _atom_key(atoms) -> tuple:
    """The structures of ``atoms`` other than Deltas, as a multiset (edge names ignored)."""
    return tuple(sorted(signature(a).shape for a in atoms if not isinstance(a, Delta)))


def _broadcast_terms(core: Expr):
    """A core that is one sum factor times ones on free edges as the weighted broadcasts of
    its terms; None for any other core."""
    if not isinstance(core, Product):
        return None
    sums = [f for f in core.factors if isinstance(f, Sum)]
    ones = [f for f in core.factors if isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in core.shape]
    if len(sums) != 1 or not ones or len(ones) + 1 != len(core.factors):
        return None
    (total,) = sums
    return [
        (w * v, c)
        for w, term in zip(total.weights, total.terms)
        for v, c in terms_of(simplified(Product([term, *ones], edges=core.edges)))
    ]
