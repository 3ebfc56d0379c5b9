"""The simplify pass: dispatch, caching, and the normal form of sums.

Normal form:
- a Sum has at least two terms or a weight other than 1; its terms are
  cores, pairwise non-isomorphic, in canonical order, none of them a Sum;
- a core is an atom or a Product of atoms with every Delta merged away
  where an edge can carry it;
- an atom is a Variable, a Delta, a Function of simplified inputs, or a Sum
  factor (a sum inside a product, scaled so its first term has weight 1).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading

import sympy

from .._ir.identity import canonical_names, sort_key
from .._ir import nodes
from .._ir.nodes import Convolution, Delta, Expr, Product, Sum, Variable, Zero, renamed_origin
from .._ir.rename import rename
from .._ir.util import NodeTable, exact_number


class OverBudget(Exception):
    """Raised inside ``budget()`` when simplifying has done more work than it allows."""


_budget = threading.local()


@contextlib.contextmanager
def budget(units: int):
    """Simplify within this block does at most ``units`` units of work, or raises ``OverBudget``:
    a node built (by any pass: a forward derivative builds its terms before they are
    normalised), a node normalised, a product's atom or a sum's term read (``spend``).

    Lowering tries normal forms beside the evaluation form only where they
    are cheap: a derivative's normal form by the forward rules can grow
    without bound (a layer norm's derivative repeats its input's), and a
    candidate program is not worth that.
    """
    outer = getattr(_budget, "left", None)
    start = _budget.left = units if outer is None else min(outer, units)  # within an enclosing budget
    watching = nodes.on_build
    nodes.on_build = _count_one
    try:
        yield
    finally:
        # what the block spent is spent from the enclosing budget too
        _budget.left = None if outer is None else outer - (start - _budget.left)
        nodes.on_build = watching


def _count_one():
    spend(1)


def spend(units: int):
    """Count ``units`` of work against an open ``budget()`` (of this thread)."""
    left = getattr(_budget, "left", None)
    if left is not None:
        if left < units:
            raise OverBudget
        _budget.left = left - units


# The normal form of every node simplified (a normal form is its own), while both live:
# this pass's memo across calls, so that a subexpression shared by several expressions
# is normalised once. The outermost call holds every normal form it computes, and the
# last _KEPT_NORMAL_FORMS computed stay held (a value can refer back to its key, through
# a lazily renamed copy's rename memo, so holding every one for as long as its key lives
# would keep both alive for good).
_NORMAL_FORMS = NodeTable(weak_values=True)
_KEPT_NORMAL_FORMS = 4096
_recent = collections.deque(maxlen=_KEPT_NORMAL_FORMS)


def simplified(t: Expr) -> Expr:
    """Normal form of ``t`` with the same edge set (the order may differ); remembered for ``t``."""
    known = _NORMAL_FORMS.get(t)
    if known is not None:
        return known
    if getattr(_alike, "table", None) is None:
        # the outermost call owns the table of simplified_alike, and holds its normal forms
        _alike.table, _alike.held = {}, []
        try:
            return simplified(t)
        finally:
            _alike.table = _alike.held = None
    spend(1)
    result = simplify_node(t if t.stands_for is None else t.stands_for)
    assert set(result.edges) == set(t.edges), (
        f"internal error: simplify changed the edges {t.edges} into {result.edges} for {type(t).__name__}"
    )
    _NORMAL_FORMS.set(result, result)
    _NORMAL_FORMS.set(t, result)
    _alike.held.append(result)
    _recent.append(result)
    return result


def has_normal_form(t: Expr) -> bool:
    """Whether ``t``'s normal form has been computed (and is remembered)."""
    return t in _NORMAL_FORMS


def share_normal_form(node: Expr, copy: Expr):
    """Let ``copy``, a new node with ``node``'s value and edges, have ``node``'s normal form
    where that is known (a lowering pass that rebuilds a DAG keeps what was simplified)."""
    known = _NORMAL_FORMS.get(node)
    if known is not None and copy not in _NORMAL_FORMS:
        _NORMAL_FORMS.set(copy, known)


def not_simplified(t: Expr) -> bool:
    """Whether ``t`` has no normal form yet and stands for nothing else (a ``.grad`` result
    stands for its derivative). A lazily renamed copy asks its origin: once the origin
    is simplified, the copy's normal form is the renamed one (``renamed_normal_form``);
    until then the copy is opened in place like any node (each level of a chain's
    derivative renames the level below: simplified on its own, every level would be a
    normal form of growing size)."""
    renamed = renamed_origin(t)
    if renamed is not None:
        t = renamed[0]
    return t not in _NORMAL_FORMS and t.stands_for is None


def renamed_normal_form(t: Expr) -> Expr:
    """The normal form of a lazily renamed copy (``renamed_origin``): its origin's, renamed."""
    origin, mapping = t.renamed_from
    normal = simplified(origin)
    return t if normal is origin else rename(normal, mapping)


_alike = threading.local()


def simplified_alike(t: Expr) -> Expr:
    """``simplified(t)``, shared with every expression built during the same outermost
    ``simplified`` call that equals ``t`` up to the names of its free edges.

    For a node a rule builds afresh (a sum over an edge pushed into a sum
    factor's terms), the memo by node (``_NORMAL_FORMS``) never hits: in a layer-norm stack
    the mean of each block's input pushes the sum into the block below, and
    that into the one below it, each time anew (quadratic in depth)."""
    table = getattr(_alike, "table", None)
    if table is None:
        return simplified(t)
    names = canonical_names(t)
    key = rename(t, names)
    normal = table.get(key)
    if normal is None:
        normal = table[key] = simplified(key)
    return rename(normal, {n: e for e, n in names.items()})


@functools.singledispatch
def simplify_node(t: Expr) -> Expr:
    raise NotImplementedError(f"simplify: no rule for node type {type(t).__name__}")


@simplify_node.register(Variable)
@simplify_node.register(Convolution)
@simplify_node.register(Zero)
def _(t):
    return t


@simplify_node.register
def _(t: Delta):
    if not t.edges:
        return Sum([Product(())], [t.size]) if t.size != 1 else Product(())
    return t


def rewritten(node: Expr, rules) -> Expr:
    """The normal form of ``node`` (whose children are in normal form) after the
    first of ``rules`` that applies, or ``node`` itself when none does.

    A rule is a named function ``rule(node) -> Expr | None`` returning an equal
    expression with the same edge set; each application is recorded (``trace``).
    """
    for rule in rules:
        result = rule(node)
        if result is not None:
            report(rule, node, result)
            return simplified(result)
    return node


# Callables told of every rule applied: ``record(rule, before, after)``.
_RECORDERS: list = []


def recording_now() -> bool:
    """Whether a ``recording()`` block is open (so a pass can skip building what it would report)."""
    return bool(_RECORDERS)


def report(rule, before: Expr, after: Expr):
    """Tell every open ``recording()`` that ``rule`` rewrote ``before`` into ``after``."""
    for record in _RECORDERS:
        record(rule, before, after)


@contextlib.contextmanager
def recording():
    """Record the named rules that simplification applies, in order.

    Yields a list that fills with ``(rule name, before, after)``: the node the
    rule matched (its children already in normal form) and what it became.
    Normal forms are remembered per node (``_NORMAL_FORMS``), so only work done
    inside the block is recorded.

    Examples:
        >>> with recording() as steps:
        ...     F.log(F.exp(x)).simplify()
        >>> [name for name, _, _ in steps]
        ['log_of_exp']
    """
    steps: list = []

    def record(rule, before, after):
        steps.append((rule.__name__, before, after))

    _RECORDERS.append(record)
    try:
        yield steps
    finally:
        _RECORDERS.remove(record)


def with_order(t: Expr, order) -> Expr:
    """``t`` with its free edges listed in ``order`` (a permutation of them)."""
    order = tuple(order)
    if t.edges == order:
        return t
    if isinstance(t, Product):
        return Product(t.factors, edges=order)
    if isinstance(t, Sum):
        return Sum(t.terms, t.weights, edges=order)
    if isinstance(t, Zero):
        return Zero._make({e: t._shape[e] for e in order})
    return Product([t], edges=order)


def terms_of(t: Expr) -> list:
    """A simplified expression as a list of (weight, core)."""
    if isinstance(t, Zero):
        return []
    if isinstance(t, Sum):
        return list(zip(t.weights, t.terms))
    return [(sympy.Integer(1), t)]


@functools.lru_cache(maxsize=4096)
def tidy_weight(w):
    """A weight in one form per value: a whole float as an integer, a polynomial in sizes
    expanded (``i (j + 1)`` is ``i j + i``), and a ratio of them cancelled
    (``2 i (-2 i - 2) / (2 i + 2)`` is ``-2 i``), so equal sums compare equal."""
    if isinstance(w, sympy.Float):
        return exact_number(w)
    if isinstance(w, sympy.Expr) and w.free_symbols:
        monomial = _tidy_monomial(w)
        if monomial is not None:
            return monomial
        return sympy.expand(w) if w.is_polynomial(*w.free_symbols) else sympy.cancel(w)
    return w


def _tidy_monomial(w: sympy.Expr):
    """``w`` in its one form where it is a number times whole powers of sizes (``-1.0 / d`` as
    ``-1 / d``), else None. SymPy already writes such a product one way; ``cancel`` would
    only build a polynomial ring for it (with a float coefficient, a real field: 3 ms a call,
    a third of a two-block transformer's normal form)."""
    coefficient, rest = w.as_coeff_Mul()
    if not all(f.is_Symbol or (f.is_Pow and f.base.is_Symbol and f.exp.is_Integer)
               for f in sympy.Mul.make_args(rest)):
        return None
    if isinstance(coefficient, sympy.Float):
        return exact_number(coefficient) * rest
    return w


def make_sum(pairs, shape: dict) -> Expr:
    """Merge isomorphic cores (adding weights), drop zeros, order canonically."""
    merged: dict = {}
    for w, core in pairs:
        merged[core] = merged.get(core, 0) + w
    kept = [(w, c) for c, w in ((c, tidy_weight(w)) for c, w in merged.items()) if w != 0]
    if not kept:
        return Zero._make(shape)
    if len(kept) == 1 and kept[0][0] == 1:
        return kept[0][1]
    kept.sort(key=lambda wc: sort_key(wc[1]))
    return Sum([c for _, c in kept], [w for w, _ in kept], edges=kept[0][1].edges)


def scaled(t: Expr, w) -> Expr:
    """``w * t`` for simplified ``t``, staying in normal form."""
    if w == 0:
        return Zero._make(t.shape)
    if w == 1:
        return t
    return make_sum([(w * v, c) for v, c in terms_of(t)], t.shape)
