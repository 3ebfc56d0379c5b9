"""``tg.to_latex``: index notation, with explicit sums or Einstein's convention.

Each factor is written with its indices as subscripts (``X_{b j}``), the
functions by their usual symbols (each function object carries its LaTeX),
and inner edges by the same short letters as the text notation. With explicit
sums every product shows the indices it contracts as ``\\sum_{j}``, and an
all-ones Delta that only sums an index is left out (the sum says it); with
``einstein=True`` repeated indices are summed silently.
"""

from __future__ import annotations

import functools
from collections import Counter

import sympy

from .._ir.nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero,
    register_pass,
)
from .._ir.rename import rename
from .notation import short_names


def to_latex(expr: Expr, einstein: bool = False) -> str:
    """The index notation of ``expr`` as LaTeX (math mode, without the ``$``).

    Args:
        expr: any expression.
        einstein: write repeated indices without ``\\sum`` (Einstein's convention).

    Returns:
        A LaTeX string: ``X @ W`` is ``\\sum_{j} X_{b j} W_{j k}`` (or ``X_{b j} W_{j k}``).

    Examples:
        >>> b, j, k = tg.symbols("b j k")
        >>> X, W = tg.Variable("X", b, j), tg.Variable("W", j, k)
        >>> tg.to_latex(X @ W)
        '\\\\sum_{j} X_{b j} W_{j k}'
        >>> tg.to_latex(F.tanh(X @ W), einstein=True)
        '\\\\tanh\\\\left(X_{b j} W_{j k}\\\\right)'
    """
    if not isinstance(expr, Expr):
        raise TypeError(f"tg.to_latex: expected a tensor expression; got {type(expr).__name__}.")
    return _tex(expr, _Context(short_names(expr), einstein))


class _Context:
    def __init__(self, names: dict, einstein: bool):
        self.names = names
        self.einstein = einstein

    def index(self, e: str) -> str:
        name = self.names.get(e, e)
        return name.replace("_", "'")

    def indices(self, edges) -> str:
        return " ".join(self.index(e) for e in edges)


def _symbol(name: str) -> str:
    escaped = name.replace("_", r"\_")
    return escaped if len(name) == 1 else rf"\mathrm{{{escaped}}}"


def _subscript(body: str, edges, ctx: _Context) -> str:
    return f"{body}_{{{ctx.indices(edges)}}}" if edges else body


@functools.singledispatch
def _tex(t: Expr, ctx: _Context) -> str:
    raise NotImplementedError(f"tg.to_latex: no rule for node type {type(t).__name__}")


@_tex.register
def _(t: Variable, ctx):
    labels = t.printed([ctx.index(e) for e in t.edges])
    return f"{_symbol(t.name)}_{{{' '.join(labels)}}}" if labels else _symbol(t.name)


@_tex.register
def _(t: Delta, ctx):
    return sympy.latex(t.size) if not t.edges else _subscript(r"\delta", t.edges, ctx)


@_tex.register
def _(t: Zero, ctx):
    return "0"


@_tex.register
def _(t: Convolution, ctx):
    return _subscript(r"\mathrm{conv}", t.edges, ctx)


@_tex.register
def _(t: Product, ctx):
    return _product(t, ctx)


def _product(t: Product, ctx, broadcast=frozenset()) -> str:
    """``t`` in index notation; an all-ones Delta on a free edge in ``broadcast`` (a term of a sum
    whose other terms carry that edge) is left out, as index notation broadcasts."""
    if not t.factors:
        return "1"
    factors = list(t.factors) if ctx.einstein else _without_joints(t.factors, set(t.edges))
    counts = Counter(e for f in factors for e in f.edges)
    summed = [e for e in dict.fromkeys(e for f in factors for e in f.edges) if counts[e] >= 2 and e not in t.edges]
    parts = []
    for f in factors:
        if not ctx.einstein and isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in summed:
            continue  # an all-ones vector that only sums its index: the sum shows it
        if isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in broadcast and len(factors) > 1:
            continue  # an all-ones vector that broadcasts a term of a sum: the other terms show it
        body = _tex(f, ctx)
        grouped = isinstance(f, Sum) and (len(f.terms) > 1 or f.weights[0] != 1)
        parts.append(rf"\left({body}\right)" if grouped else body)
    body = " ".join(parts) if parts else "1"
    if ctx.einstein or not summed:
        return body
    return rf"\sum_{{{ctx.indices(summed)}}} {body}"


def _without_joints(factors, free: set) -> list:
    """``factors`` with each Delta of two or more edges that only says indices are equal
    written as that equality: its edges renamed to one index in the factors that hold them
    (``T_{a d} z_{e f} δ_{a e b} δ_{d f c}`` is ``T_{b c} z_{b c}``). A Delta with two free
    edges (a diagonal) or two edges on one factor (a trace) stays."""
    factors = list(factors)
    k = 0
    while k < len(factors):
        f = factors[k]
        others = [j for j in range(len(factors)) if j != k]
        # a free edge keeps its name (a joined one may be held by several factors already)
        kept = [e for e in f.edges if e in free] if isinstance(f, Delta) else []
        if not isinstance(f, Delta) or len(f.edges) < 2 or len(kept) > 1 or any(
                sum(e in factors[j].edges for e in f.edges) > 1 for j in others):
            k += 1
            continue
        name = kept[0] if kept else f.edges[0]
        for j in others:
            mapping = {e: name for e in f.edges if e != name and e in factors[j].edges}
            if mapping:
                factors[j] = rename(factors[j], mapping)
        del factors[k]
    return factors


@_tex.register
def _(t: Sum, ctx):
    out = []
    for k, (w, u) in enumerate(zip(t.weights, t.terms)):
        body = _product(u, ctx, _carried_by_others(t, k)) if isinstance(u, Product) else _tex(u, ctx)
        if isinstance(u, Sum) and len(u.terms) > 1 and w != 1:
            body = rf"\left({body}\right)"
        negative = w.is_number and w.is_real and w < 0
        size = -w if negative else w
        scalar = isinstance(u, Product) and not u.factors
        if scalar:
            term = sympy.latex(size)
        elif size == 1:
            term = body
        else:
            shown = sympy.latex(size)
            term = f"{shown} {body}" if (size.is_Atom) else rf"\left({shown}\right) {body}"
        sign = "-" if negative else "+"
        out.append((f"-{term}" if negative else term) if k == 0 else f" {sign} {term}")
    return "".join(out)


def _carried_by_others(t: Sum, k: int) -> set:
    """The edges of the sum ``t`` that some other term holds as more than an all-ones Delta."""
    def ones(u, e) -> bool:
        return isinstance(u, Product) and any(isinstance(f, Delta) and f.edges == (e,) for f in u.factors)

    return {e for e in t.edges if any(j != k and not ones(u, e) for j, u in enumerate(t.terms))}


@_tex.register
def _(t: Function, ctx):
    return t.spec.latex(t, [_tex(u, ctx) for u in t.inputs])


@_tex.register
def _(t: AlongEdge, ctx):
    return t.spec.latex(t, [ctx.index(a) for a in t.axes], _tex(t.input, ctx))


@_tex.register
def _(t: Derivative, ctx):
    x = t.x
    new = " ".join(ctx.index(t.new_names[e]) for e, _ in x.decl)
    variable = f"{_symbol(x.name)}_{{{new}}}" if new else _symbol(x.name)
    return rf"\frac{{\partial}}{{\partial {variable}}}\left[{_tex(t.expr, ctx)}\right]"


@_tex.register
def _(t: Expectation, ctx):
    x = t.wrt
    variable = _subscript(_symbol(x.name), [e for e, _ in x.decl], ctx)
    law = "" if t.has_default_law() else rf" \sim \mathcal{{N}}\left({_tex(t.mu, ctx)}, {_tex(t.covar, ctx)}\right)"
    return rf"\mathbb{{E}}_{{{variable}{law}}}\left[{_tex(t.expr, ctx)}\right]"


register_pass("to_latex", to_latex)
