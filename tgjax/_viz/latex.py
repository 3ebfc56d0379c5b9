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
    if not t.factors:
        return "1"
    counts = Counter(e for f in t.factors for e in f.edges)
    summed = [e for e in dict.fromkeys(e for f in t.factors for e in f.edges) if counts[e] == 2]
    parts = []
    for f in t.factors:
        if not ctx.einstein and isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in summed:
            continue  # an all-ones vector that only sums its index: the sum shows it
        body = _tex(f, ctx)
        grouped = isinstance(f, Sum) and (len(f.terms) > 1 or f.weights[0] != 1)
        parts.append(rf"\left({body}\right)" if grouped else body)
    body = " ".join(parts) if parts else "1"
    if ctx.einstein or not summed:
        return body
    return rf"\sum_{{{ctx.indices(summed)}}} {body}"


@_tex.register
def _(t: Sum, ctx):
    out = []
    for k, (w, u) in enumerate(zip(t.weights, t.terms)):
        body = _tex(u, ctx)
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
