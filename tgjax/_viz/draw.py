"""``tg.draw``: tensor diagrams as standalone SVG, made with nothing but Python.

A diagram is laid out as nested rectangles ("blocks"), each knowing its size
and where its edges leave it ("ports"):

- a variable is a labelled box, a Delta a dot where its lines meet (a scalar
  Delta is its size), a Convolution a box of its own style;
- a function, a sum, a derivative and an expectation are frames: a titled box
  around the closed diagrams of their arguments (each with its free edges
  dangling and labelled), with the frame's own edges leaving its border;
- a product is a network: its factors (nested products flattened) are put in
  the order of a depth-first walk of the factor graph, so that chains are
  drawn as chains, in one row or, past ``_MAX_ROW`` factors, in rows that
  snake back and forth. Neighbours in a row are joined by straight lines,
  one row to the next by a short bend, and any other pair by a line routed
  above the rows (through lanes of its own in the gaps between rows and in
  the left margin), so no line passes through a node. Parallel edges leave a
  side at different ports, so a Hadamard product shows them apart.

A large diagram is drawn in parts. A framed subexpression of a few nodes or
more that occurs more than once (the same structure, whatever its edges are
named) is drawn once, as a numbered part ``[n]`` listed below the diagram,
and every occurrence is a box labelled ``[n]`` that names its lines as the
part does; and where a network would be wider than ``max_width``, its widest
frames become parts too, so a transformer block's diagram stays within a
screen's width.

Everything is computed from the expression alone (networkx's walk over
integer nodes, edges in the order of the expression), so the same expression
always draws the same bytes. Text is set in a monospace font, whose width is
known without measuring.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable
from xml.sax.saxutils import escape

from .._ir.deep import deep
from .._ir.elementwise import Power
from .._ir.identity import signature
from .._ir.nodes import (
    AlongEdge, Convolution, Delta, Derivative, Expectation, Expr, Function, Product, Sum, Variable, Zero,
    register_pass,
)
from .._ir.rename import freshen_inner, rename
from .._ir.util import is_fresh
from .notation import short_names_and_letters, shown

_FONT = 12.0  # px
_CHAR = 0.6 * _FONT  # the advance of one character of a monospace font
_LINE = _FONT + 4  # the height of a line of text
_PAD = 8.0  # inside a frame or a box, around its content
_STUB = 14.0  # the length of a dangling free edge
_LANE = 7.0  # between two routed lines
_GUTTER = 14.0  # between two rows, besides their lanes
_GAP = 36.0  # between two factors side by side: room for the lines that join them
_PORT = 10.0  # between two ports on one side
_ITEM_GAP = 10.0  # between the items of a frame
_MAX_ROW = 8  # factors in one row of a network
_MAX_WIDTH = 960.0  # a frame's items wrap into lines past this width
_MARGIN = 12.0  # around the whole picture
_PORT_FONT = 10.0  # the names of lines where they enter a frame
_MAX_DRAW_WIDTH = 1600.0  # past this, a network's widest frames are drawn as parts of their own
_PART_TITLE = 14  # a part's box shows the frame's title up to this many characters
_PART_NODES = 5  # a repeated frame of fewer nodes is drawn in place each time: a box would say less

_SIDES = ("left", "right", "top", "bottom")

# Presentation attributes (not CSS), so that every SVG viewer shows the same picture.
_STYLE = {
    "variable": 'fill="#ffffff" stroke="#1f2937" stroke-width="1.3"',
    "convolution": 'fill="#fff7d6" stroke="#8a6d00" stroke-width="1.3"',
    "scalar": 'fill="#ffffff" stroke="#9ca3af" stroke-width="1"',
    "delta": 'fill="#1f2937"',
    "function": 'fill="#f3f6fb" stroke="#4a6fa5" stroke-width="1.2"',
    "sum": 'fill="none" stroke="#9ca3af" stroke-width="1" stroke-dasharray="4 3"',
    "derivative": 'fill="#fdf6ec" stroke="#b5651d" stroke-width="1.2"',
    "expectation": 'fill="#f1f8ef" stroke="#3c8d2f" stroke-width="1.2"',
    "edge": 'fill="none" stroke="#1f2937" stroke-width="1.2"',
    "part": 'fill="#f3f6fb" stroke="#4a6fa5" stroke-width="1.2" stroke-dasharray="3 2"',
}
_TEXT_COLOUR = {
    "name": "#111827", "label": "#374151", "port": "#6b7280", "title": "#1f2937", "weight": "#111827", "caption": "#111827",
}


def draw(expr_or_list, path: str | None = None, *, max_width: float = _MAX_DRAW_WIDTH) -> str:
    """The tensor diagram of an expression, or of a list of them, as an SVG document.

    Args:
        expr_or_list: an expression; or a list of expressions and
            ``(title, expression)`` pairs, drawn one below the other
            (``tg.explain``'s list draws the derivation step by step).
        path: also write the SVG to this file (its name must end in ``.svg``).
        max_width: about how wide, in pixels, a diagram may grow: past it, a
            network's widest frames are drawn as numbered parts below it
            (default 1600; ``math.inf`` draws everything in place).

    Returns:
        The SVG document as a string. Every factor is a node labelled with its
        name, every contracted edge a line between its two factors, every free
        edge a dangling line labelled with its name; a function is a box around
        its argument's diagram, a sum a dashed frame around its weighted terms,
        a derivative and an expectation a frame titled with their variable.
        A framed subexpression of five nodes or more that occurs more than once
        is drawn once, as a part ``[n]`` below the diagram, and each occurrence
        as a box ``[n]`` (unless ``max_width`` is ``math.inf``).

    Examples:
        >>> i, j = tg.symbols("i j")
        >>> X, y = tg.Variable("X", i, j), tg.Variable("y", j)
        >>> svg = tg.draw(F.tanh(X @ y))
        >>> svg.startswith("<svg") and "tanh" in svg
        True
    """
    items = _items(expr_or_list)
    if path is not None and not (isinstance(path, str) and path.endswith(".svg")):
        raise ValueError(f"tg.draw: path must be a file name ending in '.svg'; got {path!r}.")
    if isinstance(max_width, bool) or not isinstance(max_width, (int, float)) or not max_width > 0:
        raise ValueError(f"tg.draw: max_width must be a positive number of pixels (or math.inf); got {max_width!r}.")
    svg = _rendered([title for title, _ in items], [expr for _, expr in items], float(max_width))
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg)
    return svg


def _items(expr_or_list) -> list:
    """``[(title or None, expression)]`` from what ``draw`` was given, checked."""
    if isinstance(expr_or_list, Expr):
        return [(None, shown(expr_or_list))]
    if not isinstance(expr_or_list, (list, tuple)) or isinstance(expr_or_list, str):
        raise TypeError(
            f"tg.draw: expected an expression or a list of expressions and (title, expression) pairs; "
            f"got {type(expr_or_list).__name__}."
        )
    if not expr_or_list:
        raise ValueError("tg.draw: the list is empty; give at least one expression.")
    items = []
    for k, item in enumerate(expr_or_list):
        if isinstance(item, Expr):
            items.append((None, item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Expr):
            items.append(item)
        else:
            raise TypeError(
                f"tg.draw: item {k} of the list is {item!r}; each item must be an expression "
                f"or a (title, expression) pair with a string title."
            )
    # a .grad result is drawn as the derivative it stands for, as it prints
    return [(title, shown(expr)) for title, expr in items]


# ---------------------------------------------------------------------------
# SVG output


class _Svg:
    """The elements of a picture, in drawing order, in absolute coordinates."""

    def __init__(self):
        self.parts: list[str] = []

    def rect(self, x, y, w, h, style, rx=4.0):
        self.parts.append(
            f'<rect class="{_class_of(style)}" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" '
            f'rx="{_n(rx)}" {_STYLE[style]}/>'
        )

    def circle(self, cx, cy, r, style):
        self.parts.append(f'<circle class="node" cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r)}" {_STYLE[style]}/>')

    def line(self, points, title: str | None = None):
        coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
        hover = f"<title>{escape(title)}</title>" if title else ""
        self.parts.append(f'<polyline class="edge" points="{coords}" {_STYLE["edge"]}>{hover}</polyline>')

    def text(self, x, y, s: str, kind: str, anchor: str = "start"):
        """``s`` with its baseline at ``y``; ``anchor`` says whether ``x`` is its start, middle or end."""
        weight = ' font-weight="bold"' if kind in ("title", "caption") else ""
        size = f' font-size="{_n(_PORT_FONT)}"' if kind == "port" else ""
        self.parts.append(
            f'<text class="{kind}" x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" '
            f'fill="{_TEXT_COLOUR[kind]}"{weight}{size}>{escape(s)}</text>'
        )


def _class_of(style: str) -> str:
    return "node" if style in ("variable", "convolution", "scalar") else ("node part" if style == "part" else f"frame {style}")


def _n(v: float) -> str:
    """A coordinate, rounded to a tenth of a pixel and written the same way every time."""
    text = f"{round(v, 1):.1f}"
    return text[:-2] if text.endswith(".0") else text


def _document(diagrams: list) -> str:
    svg = _Svg()
    y, width = _MARGIN, 0.0
    for title, block in diagrams:
        if title is not None:
            svg.text(_MARGIN, y + _FONT, title, "caption")
            y += _LINE + 6
            width = max(width, _width_of(title))
        block.emit(svg, _MARGIN, y)
        y += block.h + 2 * _MARGIN
        width = max(width, block.w)
    w, h = width + 2 * _MARGIN, y - _MARGIN
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(w)} {_n(h)}" width="{_n(w)}" height="{_n(h)}" '
        f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{_n(_FONT)}">'
    )
    background = f'<rect class="background" x="0" y="0" width="{_n(w)}" height="{_n(h)}" fill="#ffffff"/>'
    return "\n".join([head, background, *svg.parts, "</svg>"]) + "\n"


def _width_of(s: str) -> float:
    return len(s) * _CHAR


# ---------------------------------------------------------------------------
# Blocks


@dataclass
class _Block:
    """A rectangle of the picture: its size, where its edges leave it, and how to draw it at a place."""

    w: float
    h: float
    ports: dict = field(default_factory=dict)  # edge -> (x, y), relative to the top left corner
    paint: Callable = lambda svg, x, y: None
    part: bool = False  # the box of a part drawn below the diagram

    def emit(self, svg: _Svg, x: float, y: float):
        self.paint(svg, x, y)


class _Context:
    """What every block needs: the short letters for machine-named edges, as in the text notation.

    Flattening renames the inner edges of nested products apart; those new names
    get the next free letters when first shown (the layout asks in a fixed order).
    """

    def __init__(self, expr: Expr, max_width: float = math.inf):
        self.names, self._letters = short_names_and_letters(expr)
        self.max_width = max_width
        # the keys of frames that occur more than once (none where everything is drawn in place)
        self.repeated = _repeated_parts(expr) if max_width < math.inf else set()
        self.numbers: dict = {}  # part key -> its number
        self.parts: dict = {}  # number -> the part's own diagram
        self.firsts: dict = {}  # number -> the occurrence the part draws
        self.in_place = None  # the frame whose part is being drawn: drawn itself, not as its box

    def label(self, edge: str) -> str:
        if edge not in self.names:
            self.names[edge] = next(self._letters) if is_fresh(edge) else edge
        return self.names[edge]

    def part(self, t: Expr) -> int:
        """The number of the part that draws the frame ``t``, its diagram drawn the first time."""
        key = _part_key(t)
        if key not in self.numbers:
            self.numbers[key] = n = len(self.numbers) + 1
            self.firsts[n] = t
            outer, self.in_place = self.in_place, t
            try:
                self.parts[n] = _network(t, self)
            finally:
                self.in_place = outer
        return self.numbers[key]


@deep
def _rendered(titles: list, exprs: list, max_width: float = math.inf) -> str:
    """The SVG document (layout and painting both recurse through the expression: see ``deep``):
    each diagram followed by its parts."""
    diagrams = []
    for title, expr in zip(titles, exprs):
        ctx = _Context(expr, max_width)
        diagrams.append((title, _network(expr, ctx)))
        diagrams.extend((f"[{n}] =", ctx.parts[n]) for n in sorted(ctx.parts))
    return _document(diagrams)


def _spacing(side: str, edges: list, labelled: set, ctx: _Context) -> float:
    """The room one port needs on ``side``: a labelled free edge needs room for its label."""
    shown = [e for e in edges if e in labelled]
    if not shown:
        return _PORT
    if side in ("top", "bottom"):
        return max(_PORT, max(_width_of(ctx.label(e)) for e in shown) + 8)
    return max(_PORT, _LINE)


def _box_size(by_side: dict, labelled: set, ctx: _Context, w: float, h: float):
    """The least size, at least ``w`` x ``h``, whose sides hold their ports."""
    for side, edges in by_side.items():
        need = (len(edges) + 1) * _spacing(side, edges, labelled, ctx)
        if side in ("top", "bottom"):
            w = max(w, need)
        else:
            h = max(h, need)
    return w, h


def _spread(by_side: dict, w: float, h: float) -> dict:
    """Ports spread evenly along their sides."""
    ports = {}
    for side, edges in by_side.items():
        for k, e in enumerate(edges, start=1):
            if side == "left":
                ports[e] = (0.0, h * k / (len(edges) + 1))
            elif side == "right":
                ports[e] = (w, h * k / (len(edges) + 1))
            elif side == "top":
                ports[e] = (w * k / (len(edges) + 1), 0.0)
            else:
                ports[e] = (w * k / (len(edges) + 1), h)
    return ports


def _grouped(sides: dict) -> dict:
    """side -> its edges, in the order given."""
    by_side = {s: [] for s in _SIDES}
    for e, s in sides.items():
        by_side[s].append(e)
    return {s: es for s, es in by_side.items() if es}


def _boxed(label: str, style: str, sides: dict, labelled: set, ctx: _Context) -> _Block:
    """A labelled box: a variable, a convolution, a scalar."""
    by_side = _grouped(sides)
    w, h = _box_size(by_side, labelled, ctx, _width_of(label) + 2 * _PAD, _LINE + 10)

    def paint(svg, x, y):
        svg.rect(x, y, w, h, style)
        svg.text(x + w / 2, y + h / 2 + 0.35 * _FONT, label, "name", "middle")

    return _Block(w, h, _spread(by_side, w, h), paint)


def _dot(sides: dict, labelled: set, ctx: _Context) -> _Block:
    """A Delta: its lines meet at a dot."""
    by_side = _grouped(sides)
    w, h = _box_size(by_side, labelled, ctx, 10.0, 10.0)
    ports = _spread(by_side, w, h)

    def paint(svg, x, y):
        for px, py in ports.values():
            if (px, py) != (w / 2, h / 2):
                svg.line([(x + px, y + py), (x + w / 2, y + h / 2)])
        svg.circle(x + w / 2, y + h / 2, 3.5, "delta")

    return _Block(w, h, ports, paint)


def _text(s: str, kind: str = "weight") -> _Block:
    w = _width_of(s)

    def paint(svg, x, y):
        svg.text(x, y + 0.8 * _FONT, s, kind)

    return _Block(w, _LINE, {}, paint)


def _flow(items: list, wrap: float = _MAX_WIDTH) -> _Block:
    """Items left to right, vertically centred, wrapped into lines past ``wrap`` pixels."""
    lines, line, width = [], [], 0.0
    for item in items:
        if line and width + _ITEM_GAP + item.w > wrap:
            lines.append(line)
            line, width = [], 0.0
        width += (_ITEM_GAP if line else 0.0) + item.w
        line.append(item)
    lines.append(line)
    widths = [sum(b.w for b in ln) + _ITEM_GAP * (len(ln) - 1) for ln in lines]
    heights = [max(b.h for b in ln) for ln in lines]
    w, h = max(widths), sum(heights) + _ITEM_GAP * (len(lines) - 1)

    def paint(svg, x, y):
        for ln, lh in zip(lines, heights):
            bx = x
            for b in ln:
                b.emit(svg, bx, y + (lh - b.h) / 2)
                bx += b.w + _ITEM_GAP
            y += lh + _ITEM_GAP

    return _Block(w, h, {}, paint)


def _frame(title: str | None, items: list, style: str, sides: dict, labelled: set, ctx: _Context) -> _Block:
    """A box titled ``title`` around ``items`` (closed diagrams and text), its edges leaving its border."""
    content = _flow(items)
    title_h = _LINE if title else 0.0
    by_side = _grouped(sides)
    w, h = _box_size(
        by_side, set(sides), ctx,  # every port of a frame is named
        max(content.w, _width_of(title or "")) + 2 * _PAD, content.h + title_h + 2 * _PAD,
    )

    ports = _spread(by_side, w, h)

    def paint(svg, x, y):
        svg.rect(x, y, w, h, style, rx=10.0 if style == "sum" else 6.0)
        if title:
            svg.text(x + _PAD, y + _PAD + 0.8 * _FONT, title, "title")
        content.emit(svg, x + (w - content.w) / 2, y + _PAD + title_h + (h - 2 * _PAD - title_h - content.h) / 2)
        # A line into a frame is named where it enters, as it is inside (free edges are named at their ends).
        for e, side in sides.items():
            if e in labelled:
                continue
            px, py = x + ports[e][0], y + ports[e][1]
            at, anchor = _PORT_LABEL_AT[side]
            svg.text(px + at[0], py + at[1], ctx.label(e), "port", anchor)

    return _Block(w, h, ports, paint)


_FRAMED = (Function, AlongEdge, Sum, Derivative, Expectation)


def _frame_title(t: Expr, ctx: _Context) -> str | None:
    """The title a frame is drawn with (a sum has none)."""
    if isinstance(t, Function):
        return f"** {t.spec.k}" if isinstance(t.spec, Power) else t.spec.name
    if isinstance(t, AlongEdge):
        return f"{t.spec.name}[{','.join(ctx.label(a) for a in t.axes)}]"
    if isinstance(t, Derivative):
        return f"∂/∂{t.x.name}"
    if isinstance(t, Expectation):
        return f"E over {t.wrt.name}"
    return None


def _port_label_width(s: str) -> float:
    return len(s) * 0.6 * _PORT_FONT


# Where a frame writes the name of a line that enters it, from the port: beside the line, outside the frame.
_PORT_LABEL_AT = {
    "left": ((-3.0, -3.0), "end"),
    "right": ((3.0, -3.0), "start"),
    "top": ((3.0, -3.0), "start"),
    "bottom": ((3.0, _PORT_FONT + 1), "start"),
}


# ---------------------------------------------------------------------------
# One block per node type. ``sides`` maps each edge of the node to the side it
# leaves by (chosen by the enclosing network); ``labelled`` are its free edges
# there, which carry labels and need room for them.


@functools.singledispatch
def _block(t: Expr, sides: dict, labelled: set, ctx: _Context) -> _Block:
    raise NotImplementedError(f"tg.draw: no glyph for node type {type(t).__name__}")


@_block.register
def _(t: Variable, sides, labelled, ctx):
    return _boxed(t.name, "variable", sides, labelled, ctx)


@_block.register
def _(t: Delta, sides, labelled, ctx):
    if not t.edges:
        return _boxed(str(t.size), "scalar", sides, labelled, ctx)
    return _dot(sides, labelled, ctx)


@_block.register
def _(t: Zero, sides, labelled, ctx):
    return _boxed("0", "scalar", sides, labelled, ctx)


@_block.register
def _(t: Convolution, sides, labelled, ctx):
    return _boxed("conv", "convolution", sides, labelled, ctx)


@_block.register
def _(t: Product, sides, labelled, ctx):
    # only the empty product (the scalar 1) reaches here: others are flattened into their network
    return _boxed("1", "scalar", sides, labelled, ctx)


@_block.register
def _(t: Function, sides, labelled, ctx):
    items = []
    for k, u in enumerate(t.inputs):
        if k:
            items.append(_text(","))
        items.append(_network(u, ctx, sides))
    return _frame(_frame_title(t, ctx), items, "function", sides, labelled, ctx)


@_block.register
def _(t: AlongEdge, sides, labelled, ctx):
    return _frame(_frame_title(t, ctx), [_network(t.input, ctx, sides)], "function", sides, labelled, ctx)


@_block.register
def _(t: Sum, sides, labelled, ctx):
    items = []
    for k, (w, u) in enumerate(_flat_terms(t)):
        negative = bool(w.is_number and w.is_real and w < 0)
        size = -w if negative else w
        sign = ("−" if negative else "") if k == 0 else ("−" if negative else "+")
        if isinstance(u, Product) and not u.factors:
            items.append(_text(f"{sign} {size}".strip()))
            continue
        shown = "" if size == 1 else (f"{size}·" if size.is_Atom else f"({size})·")
        term = _network(u, ctx, sides)
        # a sign stays on the line of its term
        items.append(_flow([_text(f"{sign} {shown}".strip()), term], wrap=math.inf) if sign or shown else term)
    return _frame(None, items, "sum", sides, labelled, ctx)


def _flat_terms(t: Sum, scale=1) -> list:
    """``(weight, term)`` pairs with nested sums spliced in, so that ``a + b + c``, built as
    ``(a + b) + c``, is drawn as one frame of three terms."""
    out = []
    for w, u in zip(t.weights, t.terms):
        out.extend(_flat_terms(u, scale * w) if isinstance(u, Sum) else [(scale * w, u)])
    return out


@_block.register
def _(t: Derivative, sides, labelled, ctx):
    return _frame(_frame_title(t, ctx), [_network(t.expr, ctx, sides)], "derivative", sides, labelled, ctx)


@_block.register
def _(t: Expectation, sides, labelled, ctx):
    items = [_network(t.expr, ctx, sides)]
    if not t.has_default_law():
        items += [_text("μ ="), _network(t.mu, ctx), _text("Σ ="), _network(t.covar, ctx)]
    return _frame(_frame_title(t, ctx), items, "expectation", sides, labelled, ctx)


# ---------------------------------------------------------------------------
# Parts: a frame drawn once, below the diagram, and referred to by its number


def _part_key(t: Expr) -> tuple:
    """What makes two frames one part: the same structure, whatever their edges are named
    (each occurrence's box names its lines as the part does, where they differ)."""
    sig = signature(t)
    return sig.shape, tuple(sorted(sig.ports.values()))


def _as_in_part(t: Expr, first: Expr) -> dict:
    """Each edge of the frame ``t`` -> the edge of ``first`` (the occurrence its part draws)
    in the same role."""
    roles = defaultdict(list)
    for e in first.edges:
        roles[signature(first).ports[e]].append(e)
    return {e: roles[signature(t).ports[e]].pop(0) for e in t.edges}


def _frame_children(t: Expr) -> list:
    """The expressions a frame draws inside it."""
    if isinstance(t, Function):
        return list(t.inputs)
    if isinstance(t, AlongEdge):
        return [t.input]
    if isinstance(t, Sum):
        return [u for _, u in _flat_terms(t)]
    if isinstance(t, Expectation) and not t.has_default_law():
        return [t.expr, t.mu, t.covar]
    return [t.expr]  # a derivative, an expectation


def _repeated_parts(expr: Expr) -> set:
    """The part keys of the frames that the diagram of ``expr`` would draw more than once, of
    at least ``_PART_NODES`` nodes; a frame met again is not entered again, so this walks each
    distinct part once."""
    counts: Counter = Counter()
    large = set()  # the keys of frames large enough to be parts
    stack = [expr]
    while stack:
        for f in _flat_factors(stack.pop()):
            if isinstance(f, _FRAMED):
                key = _part_key(f)
                counts[key] += 1
                if counts[key] == 1:
                    stack.extend(_frame_children(f))
                    if _has_nodes(f, _PART_NODES):
                        large.add(key)
    return {key for key, n in counts.items() if n > 1 and key in large}


def _has_nodes(t: Expr, n: int) -> bool:
    """Whether ``t`` has at least ``n`` distinct nodes (a walk that stops there)."""
    seen, stack = set(), [t]
    while stack:
        u = stack.pop()
        if id(u) not in seen:
            seen.add(id(u))
            if len(seen) >= n:
                return True
            stack.extend(u.args)
    return False


def _part_box(t: Expr, number: int, sides: dict, labelled: set, ctx: _Context) -> _Block:
    """The box that stands for part ``number`` (the frame ``t``): a line whose name differs
    from the part's name for it is named, as the part names it, where it enters the box."""
    title = _frame_title(t, ctx)
    label = f"[{number}] {title}" if title and len(title) <= _PART_TITLE else f"[{number}]"
    renamed = {e: ctx.label(p) for e, p in _as_in_part(t, ctx.firsts[number]).items() if ctx.label(p) != ctx.label(e)}
    box = _boxed(label, "part", sides, labelled | set(renamed), ctx)
    inner = box.paint

    def paint(svg, x, y):
        inner(svg, x, y)
        for e, name in renamed.items():
            (px, py), (at, anchor) = box.ports[e], _PORT_LABEL_AT[sides[e]]
            svg.text(x + px + at[0], y + py + at[1], name, "port", anchor)

    return _Block(box.w, box.h, box.ports, paint, part=True)


def _factor_block(f: Expr, sides: dict, labelled: set, ctx: _Context) -> _Block:
    """A factor's block: a repeated frame as its part's box, anything else drawn in place."""
    if isinstance(f, _FRAMED) and f is not ctx.in_place and _part_key(f) in ctx.repeated:
        return _part_box(f, ctx.part(f), sides, labelled, ctx)
    return _block(f, sides, labelled, ctx)


def _folded(factors: list, blocks: list, plan, labelled: set, ctx: _Context) -> list:
    """``blocks`` with the widest frames replaced by their parts' boxes until the network's
    columns fit in ``ctx.max_width`` (or no frame is left drawn in place)."""
    blocks = list(blocks)
    cells = [plan.cell(k) for k in range(len(factors))]

    def width() -> float:
        cols = defaultdict(float)
        for b, (_, c) in zip(blocks, cells):
            cols[c] = max(cols[c], b.w)
        return sum(cols.values()) + _GAP * (len(cols) - 1)

    while width() > ctx.max_width:
        framed = [k for k, f in enumerate(factors) if isinstance(f, _FRAMED) and not blocks[k].part]
        if not framed:
            break
        k = max(framed, key=lambda j: (blocks[j].w, -j))
        blocks[k] = _part_box(factors[k], ctx.part(factors[k]), plan.sides[k], labelled & set(factors[k].edges), ctx)
    return blocks


# ---------------------------------------------------------------------------
# Networks


def _flat_factors(t: Expr) -> list:
    """The factors of ``t`` as one network: nested products spliced in (their inner edges
    renamed apart), and Deltas that merely join two lines drawn as the one line they are."""
    return _without_joints(_spliced(t))


def _spliced(t: Expr) -> list:
    if not isinstance(t, Product):
        return [t]
    out = []
    for f in t.factors:
        if isinstance(f, Product) and f.factors:
            out.extend(_spliced(freshen_inner(f, f.inner_edges)))
        elif not (isinstance(f, Product) and not f.factors and len(t.factors) > 1):
            out.append(f)
    return out


def _without_joints(factors: list) -> list:
    """Remove each two-edge Delta that joins another factor's edge to a third: ``x[a] δ[a,b] y[b]``
    is drawn as ``x[a] y[a]``. One that joins two edges of a single factor (a trace) stays."""
    factors = list(factors)
    while True:
        holders = defaultdict(list)
        for k, f in enumerate(factors):
            for e in f.edges:
                holders[e].append(k)
        for k, f in enumerate(factors):
            if not (isinstance(f, Delta) and len(f.edges) == 2):
                continue
            (a, b) = f.edges
            partner_a = [h for h in holders[a] if h != k]
            partner_b = [h for h in holders[b] if h != k]
            if partner_a and partner_a == partner_b:
                continue  # a loop on one factor (a trace) is drawn through the dot
            if partner_b:  # the factor on b takes the name a (free or held by another factor)
                (other,) = partner_b
                factors[other] = rename(factors[other], {b: a})
            elif partner_a:
                (other,) = partner_a
                factors[other] = rename(factors[other], {a: b})
            else:
                continue  # an identity matrix on its own: both lines are free
            del factors[k]
            break
        else:
            return factors


def _walk_order(n: int, pairs: list) -> list:
    """The factors in the order of a depth-first walk from an end of each connected piece, so chains stay chains."""
    import networkx as nx  # here, not at import: it takes a quarter of a second to load

    graph = nx.MultiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(pairs)
    order = []
    for piece in sorted((sorted(c) for c in nx.connected_components(graph)), key=lambda c: c[0]):
        start = min(piece, key=lambda k: (graph.degree(k), k))
        order.extend(nx.dfs_preorder_nodes(graph, start))
    return order


def _agreement(plan, prefer: dict) -> int:
    """How many free edges leave by the side ``prefer`` gives them."""
    return sum(plan.sides[plan.holders[e][0]].get(e) == side for e, side in prefer.items() if e in plan.free)


@dataclass
class _Arrangement:
    """Where each factor of a network sits and how each edge is drawn (before any sizes are known)."""

    holders: dict  # edge -> the factors that hold it (two for a contracted edge, one for a free edge)
    free: list
    position: dict  # factor -> its place in the walk
    per_row: int
    rows: int
    straight: list  # (edge, left factor, right factor): neighbours in a row
    bends: list  # (edge, upper factor, lower factor): one row to the next in one column
    routed: list  # (edge, a, b): any other pair, through lanes above the rows
    sides: list  # per factor: edge -> the side it leaves by

    def cell(self, k) -> tuple:
        """(row, column) of factor ``k``; odd rows run right to left, so a chain snakes on."""
        r, c = divmod(self.position[k], self.per_row)
        return r, (c if r % 2 == 0 else self.per_row - 1 - c)


def _arranged(factors: list, backwards: bool = False) -> _Arrangement:
    n = len(factors)
    holders = defaultdict(list)
    for k, f in enumerate(factors):
        for e in f.edges:
            holders[e].append(k)
    inner = [e for e, hs in holders.items() if len(hs) == 2]
    free = [e for e, hs in holders.items() if len(hs) == 1]
    order = _walk_order(n, [tuple(holders[e]) for e in inner])
    if backwards:
        order = order[::-1]
    per_row = min(n, _MAX_ROW)
    plan = _Arrangement(
        holders, free, {k: p for p, k in enumerate(order)}, per_row, math.ceil(n / per_row), [], [], [],
        [dict() for _ in factors],
    )
    position, sides = plan.position, plan.sides
    for e in inner:
        a, b = holders[e]
        (ra, ca), (rb, cb) = plan.cell(a), plan.cell(b)
        if ra == rb and abs(ca - cb) == 1:
            plan.straight.append((e, *((a, b) if ca < cb else (b, a))))
        elif ca == cb and abs(ra - rb) == 1:
            plan.bends.append((e, *((a, b) if ra < rb else (b, a))))
        else:
            plan.routed.append((e, a, b))
    # Routed lines leave by the top, ordered so that lines to nearer factors nest inside those to farther ones.
    tops = defaultdict(list)
    for e, a, b in plan.routed:
        tops[a].append((position[b] > position[a], -position[b], e))
        tops[b].append((position[a] > position[b], -position[a], e))
    for k, keyed in tops.items():
        for *_, e in sorted(keyed):
            sides[k][e] = "top"
    for e, left, right in plan.straight:
        sides[left][e] = "right"
        sides[right][e] = "left"
    for index, e in enumerate(free):
        (k,) = holders[e]
        if n == 1:  # a lone factor: its edges go left, right, down and up in turn
            sides[k][e] = _SIDES[index % 4]
        elif plan.rows == 1 and position[k] == 0:
            sides[k][e] = "left"
        elif plan.rows == 1 and position[k] == n - 1:
            sides[k][e] = "right"
        else:
            sides[k][e] = "bottom"
    for e, upper, lower in plan.bends:
        sides[upper][e] = "bottom"
        sides[lower][e] = "top"
    return plan


def _network(t: Expr, ctx: _Context, prefer: dict | None = None) -> _Block:
    """The closed diagram of ``t``: its factors, the lines between them, its free edges dangling
    and labelled. ``prefer`` (edge -> side) is how the frame around it places those edges: the
    chain runs the way that puts more of them on the same side inside as outside."""
    factors = _flat_factors(t) or [t]  # the empty product, the scalar 1, is its own box
    n = len(factors)
    plan = _arranged(factors)
    if prefer:
        backwards = _arranged(factors, backwards=True)
        if _agreement(backwards, prefer) > _agreement(plan, prefer):
            plan = backwards
    holders, free, position, per_row, rows = plan.holders, plan.free, plan.position, plan.per_row, plan.rows
    straight, bends, routed, sides = plan.straight, plan.bends, plan.routed, plan.sides
    one_row = rows == 1

    free_set = set(free)
    blocks = [_factor_block(f, sides[k], free_set & set(f.edges), ctx) for k, f in enumerate(factors)]
    if n > 1:
        blocks = _folded(factors, blocks, plan, free_set, ctx)
    cells = [plan.cell(k) for k in range(n)]
    # Inside a frame, a free edge is named where it crosses the frame's border (outside it);
    # one that leaves by the same side as there, alone on that side, is not named again here.
    per_side = Counter((prefer or {}).values())
    quiet = {e for e in free if prefer and e in prefer and per_side[prefer[e]] == 1
             and sides[holders[e][0]][e] == prefer[e]}

    # Lanes: each routed line has its own height in the gap above each row it touches (shorter spans
    # lower), and a line between rows its own column in the left margin.
    lanes = defaultdict(dict)  # row -> {edge: lane}
    for e, a, b in sorted(routed, key=lambda r: (abs(position[r[1]] - position[r[2]]), position[r[1]])):
        for r in dict.fromkeys((cells[a][0], cells[b][0])):
            lanes[r][e] = len(lanes[r])
    between_rows = [e for e, a, b in routed if cells[a][0] != cells[b][0]]
    margin_lane = {e: k for k, e in enumerate(between_rows)}

    def label_width(k, side):
        """The room the labels of ``side``'s free edges need (0 where each is quiet: its stub
        needs room still), None without free edges there."""
        shown = [e for e, s in sides[k].items() if s == side and e in free_set]
        if not shown:
            return None
        return max((_width_of(ctx.label(e)) for e in shown if e not in quiet), default=0.0)

    col_w = [0.0] * per_row
    row_h = [0.0] * rows
    bottom_zone = [0.0] * rows
    top_zone = 0.0
    left_zone = right_zone = 0.0
    for k, (r, c) in enumerate(cells):
        col_w[c] = max(col_w[c], blocks[k].w)
        row_h[r] = max(row_h[r], blocks[k].h)
        if label_width(k, "bottom") is not None:
            bottom_zone[r] = _STUB + _LINE
        if label_width(k, "top") is not None:
            top_zone = _STUB + _LINE
        for side in ("left", "right"):
            width = label_width(k, side)
            if width is not None:
                zone = _STUB + 4 + width
                if side == "left":
                    left_zone = max(left_zone, zone)
                else:
                    right_zone = max(right_zone, zone)
    gutter = [_GUTTER + _LANE * len(lanes[r]) for r in range(rows)]
    gutter[0] = 4.0 + top_zone + (_LANE * (len(lanes[0]) + 1) if lanes[0] else 0.0)
    left = 4.0 + left_zone + _LANE * len(between_rows)
    # A line between two framed factors carries its name at both ends: the gap makes room for both.
    gap = [_GAP] * per_row
    for e, left_k, right_k in straight:
        named = sum(isinstance(factors[k], _FRAMED) for k in (left_k, right_k))
        c = min(cells[left_k][1], cells[right_k][1])
        gap[c] = max(gap[c], named * (_port_label_width(ctx.label(e)) + 6) + 12)
    col_x, x = [], left
    for c in range(per_row):
        col_x.append(x)
        x += col_w[c] + gap[c]
    width = x - gap[-1] + right_zone + 4.0
    row_y, y = [], 0.0
    for r in range(rows):
        y += gutter[r]
        row_y.append(y)
        y += row_h[r] + bottom_zone[r]
    height = y + 4.0

    def place(k):
        r, c = cells[k]
        return col_x[c] + (col_w[c] - blocks[k].w) / 2, row_y[r] + (row_h[r] - blocks[k].h) / 2

    def paint(svg, x0, y0):
        at = [place(k) for k in range(n)]

        def port(k, e):
            px, py = blocks[k].ports[e]
            return x0 + at[k][0] + px, y0 + at[k][1] + py

        def lane_y(r, e):
            return y0 + row_y[r] - 6.0 - _LANE * lanes[r][e]

        for e, left_k, right_k in straight:
            svg.line([port(left_k, e), port(right_k, e)], ctx.label(e))
        for e, upper, lower in bends:
            (ux, uy), (lx, ly) = port(upper, e), port(lower, e)
            mid = y0 + row_y[cells[lower][0]] - gutter[cells[lower][0]] + 5.0
            svg.line([(ux, uy), (ux, mid), (lx, mid), (lx, ly)], ctx.label(e))
        for e, a, b in routed:
            (ax, ay), (bx, by) = port(a, e), port(b, e)
            ra, rb = cells[a][0], cells[b][0]
            if ra == rb:
                ly = lane_y(ra, e)
                svg.line([(ax, ay), (ax, ly), (bx, ly), (bx, by)], ctx.label(e))
            else:
                mx = x0 + left - 4.0 - _LANE * (margin_lane[e] + 1) + _LANE / 2
                la, lb = lane_y(ra, e), lane_y(rb, e)
                svg.line([(ax, ay), (ax, la), (mx, la), (mx, lb), (bx, lb), (bx, by)], ctx.label(e))
        for e in free:
            (k,) = holders[e]
            px, py = port(k, e)
            side, name = sides[k][e], "" if e in quiet else ctx.label(e)
            r, c = cells[k]
            if side == "left":
                end = x0 + col_x[c] - _STUB if one_row else px - _STUB
                svg.line([(px, py), (end, py)])
                if name:
                    svg.text(end - 4, py + 0.35 * _FONT, name, "label", "end")
            elif side == "right":
                end = x0 + col_x[c] + col_w[c] + _STUB if one_row else px + _STUB
                svg.line([(px, py), (end, py)])
                if name:
                    svg.text(end + 4, py + 0.35 * _FONT, name, "label", "start")
            elif side == "bottom":
                end = y0 + row_y[r] + row_h[r] + _STUB
                svg.line([(px, py), (px, end)])
                if name:
                    svg.text(px, end + _FONT, name, "label", "middle")
            else:
                end = y0 + row_y[r] - _STUB
                svg.line([(px, py), (px, end)])
                if name:
                    svg.text(px, end - 4, name, "label", "middle")
        for k in range(n):
            blocks[k].emit(svg, x0 + at[k][0], y0 + at[k][1])

    return _Block(width, height, {}, paint)


def _repr_svg(expr: Expr) -> str:
    return draw(expr)


register_pass("draw", _repr_svg)
