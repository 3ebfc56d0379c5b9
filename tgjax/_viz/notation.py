"""Einstein-style text notation: ``2 X[b,i] (X[b,j] W[j,k] - Y[b,k])``.

Factors written side by side are multiplied, and an index that appears twice
is summed over. Inner edges, which have machine names, are shown as short
letters that are not free edges of the expression.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import string

import sympy


from .._ir.nodes import AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero, register_pass
from .._ir.rename import freshen_inner, rename
from .._ir.util import fresh_edge, is_fresh


def to_string(t: Expr, depth: int | None = None) -> str:
    """The text notation of ``t``; with ``depth``, nodes deeper than that are shown as ``…``
    (a short description of a large expression, as in generated code's comments)."""
    t = shown(t)
    mapping, letters = short_names_and_letters(t, depth)
    names = _Names(mapping)
    names.depth, names.letters = depth, letters
    return _str(t, names)


def shown(t: Expr) -> Expr:
    """What the notation shows for ``t``: the derivative a ``.grad`` result stands for (its
    evaluation form is backpropagation's network of Deltas, which says little to a reader
    until ``.simplify()`` gives the normal form), else ``t``."""
    return t.stands_for if t.stands_for is not None else t


def short_names(t: Expr, depth: int | None = None) -> dict:
    """Each machine-named inner edge of ``t`` -> a short letter that names nothing else in ``t``
    (no edge, and no size symbol shown in a weight), shared by the text notation, LaTeX and
    diagrams so that all three read alike."""
    return short_names_and_letters(t, depth)[0]


def short_names_and_letters(t: Expr, depth: int | None = None):
    """``short_names``, and the generator of the letters still free (for names made later)."""
    used, fresh = set(), []
    _collect_edges(t, used, fresh, depth)
    letters = (c for c in itertools.chain(string.ascii_lowercase, (f"e{k}" for k in itertools.count())) if c not in used)
    return {e: next(letters) for e in dict.fromkeys(fresh)}, letters


class _Names(dict):
    """Inner edge -> short letter; how many more levels to print (None: all); the letters still
    free; and the edge names visible around the node being printed (``outer``)."""

    depth: int | None = None
    letters = None
    outer: frozenset = frozenset()

    @contextlib.contextmanager
    def seeing(self, visible: frozenset):
        """Print the children inside with ``visible`` as the names around them."""
        saved, self.outer = self.outer, visible
        try:
            yield
        finally:
            self.outer = saved


def _sub(t: Expr, names: _Names) -> str:
    """A child's text, one level deeper."""
    t = shown(t)
    if names.depth is None:
        return _str(t, names)
    if names.depth <= 0:
        return "…"
    names.depth -= 1
    try:
        return _str(t, names)
    finally:
        names.depth += 1


def _collect_edges(t: Expr, used: set, fresh: list, depth: int | None = None):
    t = shown(t)
    for e in t.edges + (t.axes if isinstance(t, AlongEdge) else ()):
        (fresh.append if is_fresh(e) else used.add)(e)
    # size symbols printed in weights (1/b) and as scalars (a closed loop's n): no letter may look like one
    sizes = list(t.weights) if isinstance(t, Sum) else ([t.size] if isinstance(t, Delta) and not t.edges else [])
    for w in sizes:
        used.update(str(s) for s in sympy.sympify(w).free_symbols)
    if depth is not None and depth <= 0:
        return
    for a in t.args:
        _collect_edges(a, used, fresh, None if depth is None else depth - 1)


def _idx(edges, names) -> str:
    return "[" + ",".join(names.get(e, e) for e in edges) + "]" if edges else ""


@functools.singledispatch
def _str(t: Expr, names) -> str:
    return f"<{type(t).__name__}>"


@_str.register
def _(t: Variable, names):
    labels = t.printed([names.get(e, e) for e in t.edges])
    return t.name + ("[" + ",".join(labels) + "]" if labels else "")


@_str.register
def _(t: Delta, names):
    if not t.edges:
        return str(t.size)
    return "δ" + _idx(t.edges, names)


@_str.register
def _(t: Convolution, names):
    return "conv" + _idx(t.edges, names)


@_str.register
def _(t: Zero, names):
    return "0" + _idx(t.edges, names)


def _weight(w, body: str, first: bool) -> str:
    if w == 1:
        return body if first else f" + {body}"
    if w == -1:
        return f"-{body}" if first else f" - {body}"
    if (w.is_number and w.is_real and w < 0):
        return f"{w} {body}" if first else f" - {-w} {body}"
    shown = str(w) if (w.is_Integer or w.is_Float or w.is_Symbol) else f"({w})"
    return f"{shown} {body}" if first else f" + {shown} {body}"


@_str.register
def _(t: Sum, names):
    parts = []
    for k, (w, u) in enumerate(zip(t.weights, t.terms)):
        if isinstance(u, Product) and not u.factors:
            parts.append(str(w) if k == 0 else (f" + {w}" if not (w.is_number and w < 0) else f" - {-w}"))
            continue
        body = _sub(u, names)
        if isinstance(u, Sum) and (w != 1 or len(u.terms) > 1):
            body = f"({body})"
        parts.append(_weight(w, body, k == 0))
    return "".join(parts)


@_str.register
def _(t: Product, names):
    if not t.factors:
        return "1"
    # A nested product is its own scope: an inner edge named like an edge around it would
    # read as one three-way edge ((x[i] x[i]) x[i]), so it is shown under a fresh letter.
    # (A summary cut at a depth, as in generated code's comments, skips this: renaming
    # rebuilds the factors whole, far below what the summary shows; planning a 1,000-layer
    # MLP's gradients spent 1.7 of its 6.8 s there.)
    clash = {e for e in t.inner_edges if not is_fresh(e) and e in names.outer} if names.depth is None else ()
    if clash:
        t = freshen_inner(t, clash)
        for e in dict.fromkeys(e for f in t.factors for e in f.edges):
            if is_fresh(e) and e not in names:
                names[e] = next(names.letters)
    parts = []
    for k, f in enumerate(t.factors):
        visible = names.outer | set(t.edges) | {e for j, g in enumerate(t.factors) if j != k for e in g.edges}
        with names.seeing(frozenset(visible)):
            s = _sub(f, names)
        if isinstance(f, (Sum, Product)):
            s = f"({s})"
        parts.append(s)
    return " ".join(parts)


@_str.register
def _(t: Function, names):
    return t.spec.text(t, [_sub(u, names) for u in t.inputs])


@_str.register
def _(t: Derivative, names):
    new = ",".join(names.get(t.new_names[e], t.new_names[e]) for e, _ in t.x.decl)
    return f"D[{t.x.name}[{new}]]({_sub(t.expr, names)})"


@_str.register
def _(t: Expectation, names):
    x = t.wrt
    variable = f"{x.name}[{','.join(e for e, _ in x.decl)}]" if x.decl else x.name
    law = "" if t.has_default_law() else f" ~ N({_sub(t.mu, names)}, {_sub(t.covar, names)})"
    return f"E[{variable}{law}]({_sub(t.expr, names)})"


@_str.register
def _(t: AlongEdge, names):
    # an axis it consumes is bound inside (logsumexp[c], max[c]): named like an edge around it,
    # it is shown under a fresh letter, as a nested product's inner edges are
    clash = [a for a in t.axes if not t.spec.keeps_edge and a in names.outer]
    if clash:
        fresh = {a: fresh_edge() for a in clash}
        t = AlongEdge(t.spec, rename(t.input, fresh), tuple(fresh.get(a, a) for a in t.axes), edges=t.edges)
        for a in fresh.values():
            names[a] = next(names.letters)
    return t.spec.text(t, [names.get(a, a) for a in t.axes], _sub(t.input, names))


register_pass("to_string", to_string)
