"""Building the program: a DAG of steps with shared subexpressions, emitted as JAX source.

Each distinct subexpression (equal as API.md defines it: up to inner edge
names and axis order) gets one statement; every later use reads its variable,
transposed when it needs another axis order. Products become planned einsum
steps (``contract.py``), sums weighted additions, functions one JAX call.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass

import sympy

from .._ir.along import axis_argument, logsumexp, softmax
from .._ir.elementwise import gelu_as_product
from .._ir.nodes import AlongEdge, Convolution, Delta, Expr, Function, Product, Sum, Variable, Zero
from .._ir.numbering import Numbering
from .._ir.structural import is_structural, structural_source
from .._ir.walk import parents_first
from .._viz.notation import to_string
from . import runtime
from .contract import MAPPED_BATCH, plan
from .convolution import absorb_convolutions, convolve_pairs
from .factor import factor_all
from .lookup import selector
from .network import distributed, network


@dataclass(frozen=True)
class Value:
    """A computed array: its variable name and the edge carried by each axis."""

    name: str
    edges: tuple


class Program:
    """Statements of one generated function, at fixed sizes."""

    def __init__(self, env: dict, mapped=()):
        self.env = env          # size symbol -> int
        # the values that depend on a mapped input (one example of a batch that
        # jax.vmap maps over): products are ordered for a batch of them (contract.py)
        self.mapped = {parameter(n) for n in mapped}
        self.lines = []          # generated statements, with comment lines
        self.numbering = Numbering()
        self.memo = {}           # value number -> Value, its edges given as port positions
        self.inputs = {}         # variable name -> None, in first-use order
        self.extra_globals = {}  # callables that have no jnp spelling
        self.statements = {}     # statement key -> variable name, for sharing identical steps
        self.pairs = {}          # pairwise contraction (canonical letters) -> (name, output letters)
        self.partners = {}       # operand name -> names it was contracted with in a remembered pair
        self.reads = {}          # statement name -> the statement names it reads, in emission order
        self.line_of = {}        # statement name -> its index in self.lines
        self.elementwise = set()  # the statements that are elementwise in what they read
        self.flops = 0           # estimated FLOPs of the statements emitted (as XLA counts them)
        self.written = 0         # elements written by them
        self._sizes = {}          # size expression -> int
        # id of a product -> whether it is thin / dissolves into its consumer
        # (network.py); ids stay valid because self.numbering keeps every lowered node
        self.thin = {}
        self.dissolves = {}
        self.fused = set()       # along_key of inputs whose softmax and logsumexp are both needed
        self._count = 0
        self._numbers: dict = {}  # weight -> its source text (``number``)

    # -- names and sizes ---------------------------------------------------
    def new_name(self) -> str:
        name = f"t{self._count}"
        self._count += 1
        return name

    def size(self, s) -> int:
        if isinstance(s, int):
            return s
        # Memoised: a program asks for the same few sizes thousands of times,
        # and sympy's subs is slow.
        n = self._sizes.get(s)
        if n is None:
            n = self.env[s] if s in self.env else int(sympy.sympify(s).subs(self.env))
            self._sizes[s] = n
        return n

    def number(self, w) -> str:
        """A weight as the source text of its value at these sizes (memoised, as ``size``)."""
        text = self._numbers.get(w)
        if text is None:
            text = self._numbers[w] = self._number(w)
        return text

    def _number(self, w) -> str:
        value = sympy.sympify(w).subs(self.env)
        if value.is_Integer and abs(int(value)) < 2**31:
            return str(int(value))
        if value.is_Integer:
            # past int32, JAX cannot pass the Python int to a float32 array's product
            # (a 12-block GPT's normal form had -d^7 = -2^35 as a coefficient)
            return repr(float(value))
        if not value.is_finite:  # 1/0 from a mean over an empty edge: nan, as jnp.mean gives
            return {sympy.oo: "jnp.inf", -sympy.oo: "-jnp.inf"}.get(value, "jnp.nan")
        return repr(float(value))

    def elements(self, t: Expr) -> int:
        n = 1
        for s in t._shape.values():
            n *= self.size(s)
        return n

    @property
    def cost(self) -> int:
        """What the program is estimated to cost: work plus memory traffic."""
        return self.flops + self.written

    def emit(self, code: str, comment: str | None = None, key=None, flops: int = 0, elements: int = 0,
             elementwise: bool = False) -> str:
        """Append ``name = code``; an identical statement emitted before is reused instead.

        ``flops`` and ``elements`` (of the result) feed the program's cost estimate;
        ``elementwise``: whether each entry of the result reads only the same entry of
        what the statement reads (``materialize_long_chains``).
        """
        key = key or code
        if key in self.statements:
            return self.statements[key]
        batched = bool(self.mapped) and not self.mapped.isdisjoint(re.findall(r"\b\w+\b", code))
        # A statement on one example of a mapped batch runs once per example: candidate
        # programs of a layer are compared at the batch the contraction order is planned for.
        self.flops += flops * (MAPPED_BATCH if batched else 1)
        self.written += elements * (MAPPED_BATCH if batched else 1)
        if comment:
            self.lines.append(comment if callable(comment) else _Comment(lambda: comment))
        code = _separate_self_reads(code)
        name = self.new_name()
        self.line_of[name] = len(self.lines)
        self.lines.append(f"{name} = {code}")
        self.reads[name] = tuple(dict.fromkeys(_STATEMENT.findall(code)))
        if elementwise:
            self.elementwise.add(name)
        self.statements[key] = name
        if batched:
            self.mapped.add(name)
        return name

    def materialize_long_chains(self, results):
        """Pass through ``runtime.materialized`` every statement that ends a chain of
        ``_LONG_CHAIN`` or more elementwise statements and is read at least twice (by
        statements or as a result): XLA:CPU would recompute the chain in each reader."""
        uses = Counter(results)
        for reads in self.reads.values():
            uses.update(reads)
        chain = {}
        for name, reads in self.reads.items():
            length = 0
            if name in self.elementwise:
                own = _LONG_CHAIN if _EXPANDED_BY_XLA.search(self.lines[self.line_of[name]]) else 1
                length = own + max((chain[r] for r in reads), default=0)
            if length >= _LONG_CHAIN and uses[name] >= 2:
                k = self.line_of[name]
                self.lines[k] = f"{name} = materialized({self.lines[k][len(name) + 3:]})"
                length = 0
            chain[name] = length

    # -- sharing pairwise contractions between products ---------------------
    def remember_pair(self, equation: str, operands, name: str):
        if len(operands) != 2:
            return
        ins, out = equation.split("->")
        a, b = ins.split(",")
        for one, other in (operands, operands[::-1]):
            self.partners.setdefault(one, set()).add(other)
        for (x, y), names in (((a, b), tuple(operands)), ((b, a), tuple(operands[::-1]))):
            key, canon = _pair_key(x, y, out, names)
            self.pairs.setdefault(key, (name, "".join(canon[c] for c in out)))

    def known_pair(self, inputs, keep: str, names):
        key, canon = _pair_key(*inputs, keep, tuple(names))
        found = self.pairs.get(key)
        if found is None:
            return None
        back = {v: k for k, v in canon.items()}
        name, out = found
        return name, "".join(back[c] for c in out)

    def along_key(self, t: AlongEdge):
        """What identifies a function along edges up to the function: its input's value and axis ports."""
        number, ports = self.numbering(t.input)
        return number, tuple(ports.index(a) for a in t.axes)

    def fuse_softmax_logsumexp(self, nodes):
        """Note the inputs whose softmax and logsumexp (same axis) are both among ``nodes``."""
        seen: dict = {}
        for t in nodes:
            if isinstance(t, AlongEdge) and t.spec in (softmax, logsumexp):
                seen.setdefault(self.along_key(t), set()).add(t.spec)
        self.fused = {key for key, fns in seen.items() if len(fns) == 2}

    # -- values ------------------------------------------------------------
    def value(self, t: Expr) -> Value:
        if isinstance(t, Variable):
            if is_structural(t.name):  # computed here, not passed in (tg.causal_mask)
                sizes = [self.size(s) for _, s in t.decl]
                return Value(self.emit(structural_source(t, sizes[0]), t.name, elements=math.prod(sizes)), t.edges)
            self.inputs.setdefault(t.name, None)
            return Value(parameter(t.name), t.edges)
        # Memoise on the value number: the same work often appears inside
        # different terms, or in renamed copies, under other edge names.
        number, ports = self.numbering(t)
        found = self.memo.get(number)
        if found is None:
            v = _lower(t, self)
            found = Value(v.name, tuple(ports.index(e) for e in v.edges))
            self.memo[number] = found
        return Value(found.name, tuple(ports[k] for k in found.edges))

    def aligned(self, t: Expr, order) -> str:
        """Source text for ``t``'s array with axes in ``order``."""
        v = self.value(t)
        order = tuple(order)
        if v.edges == order:
            return v.name
        perm = tuple(v.edges.index(e) for e in order)
        return f"{v.name}.transpose({perm})"


# Statements a generated program names (t0, t1, ...; parameter() keeps inputs off these names).
_STATEMENT = re.compile(r"\bt\d+\b")
# The elementwise statements in a row that a program lets XLA recompute in each reader
# (materialize_long_chains): 6 and 4 measured alike on the post-layer-norm stack, 6 better at 2 blocks.
_LONG_CHAIN = 6
# Functions XLA expands into a long elementwise chain of their own (erfc: two polynomials,
# an exponential and four selects, some 60 operations), each counted as a long chain: a
# GELU's Phi(u), read by its value and its gradient, was computed twice (a third of a
# two-block post-layer-norm transformer's step beyond JAX's, which computes it once).
_EXPANDED_BY_XLA = re.compile(r"\blax\.(?:erfc|erf|erf_inv|lgamma|digamma|igamma|igammac|bessel_i0e|bessel_i1e)\(")

# A name, and the transpose it is read through if any.
_READ = re.compile(r"\b(\w+)(?:\.transpose\((\([\d, ]*\))\))?")


def _separate_self_reads(code: str) -> str:
    """``code`` with every transposed read of an array that it also reads in another
    layout spelled ``relaid(x, perm)`` instead of ``x.transpose(perm)``.

    One statement is (at least) one fused XLA loop, and XLA:CPU runs a loop that
    reads the same array in place and transposed 10 to 40 times slower than a
    plain addition (``runtime.relaid``); the symmetric part ``A + A^T`` of a
    Hessian is the common case.
    """
    if ".transpose(" not in code:
        return code
    layouts: dict = {}
    for m in _READ.finditer(code):
        layouts.setdefault(m.group(1), set()).add(m.group(2))
    twice = {name for name, seen in layouts.items() if len(seen) > 1}

    def read(m):
        name, perm = m.groups()
        return f"relaid({name}, {perm})" if perm and name in twice else m.group(0)

    return _READ.sub(read, code) if twice else code


class _Comment:
    """A comment line of the generated source, written only where the source is shown
    (``tg.to_source``): the program that is run needs none, and printing every
    statement's expression took a third of a 200-layer MLP's planning."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text  # a function returning the comment's text

    def __call__(self) -> str:
        return f"# {_short(self.text())}"


def _describe(t: Expr, prefix: str = "") -> _Comment:
    """A comment for the statement computing ``t``: its top levels only (a DAG
    printed whole as a tree can be far larger than the program)."""
    return _Comment(lambda: prefix + to_string(t, depth=4))


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.singledispatch
def _lower(t: Expr, program: Program) -> Value:
    raise NotImplementedError(f"lower: no rule for node type {type(t).__name__}")


@_lower.register
def _(t: Zero, program):
    shape = tuple(program.size(t._shape[e]) for e in t.edges)
    return Value(program.emit(f"jnp.zeros({shape}, dtype)", _describe(t), elements=program.elements(t)), t.edges)


@_lower.register
def _(t: Convolution, program):
    n, k, m = (program.size(t._shape[e]) for e in t.edges)
    return Value(program.emit(f"conv_indicator({n}, {k}, {m}, dtype)", _describe(t)), t.edges)


@_lower.register
def _(t: Delta, program):
    n, k = program.size(t.size), len(t.edges)
    return Value(program.emit(f"delta({n}, {k}, dtype)", _describe(t), elements=program.elements(t)), t.edges)


def _broadcast_core(u: Expr):
    """Split a term into its core and the edges it is only broadcast along (ones vectors)."""
    if isinstance(u, Delta) and len(u.edges) == 1:
        return None, u.edges
    if not isinstance(u, Product):
        return u, ()
    ones = [f for f in u.factors if isinstance(f, Delta) and len(f.edges) == 1 and f.edges[0] in u._shape]
    if not ones:
        return u, ()
    spread = tuple(f.edges[0] for f in ones)
    rest = [f for f in u.factors if not any(f is o for o in ones)]
    if not rest:
        return None, spread
    return Product(rest, edges=tuple(e for e in u.edges if e not in spread)), spread


def _term_text(u: Expr, order, program: Program, full_rank: bool) -> str:
    """A sum term as source, relying on NumPy broadcasting for its ones-vector edges."""
    core, spread = _broadcast_core(u)
    if not spread or not full_rank:
        return program.aligned(u, order)
    if core is None:
        return "1"
    kept = [e for e in order if e in core._shape]
    text = program.aligned(core, kept)
    if len(kept) == len(order):
        return text
    index = ", ".join(":" if e in core._shape else "None" for e in order)
    return f"{text}[{index}]"


def _sum_order(t: Sum, program: Program) -> tuple:
    """The axis order in which to add the terms of ``t``: the one its full-size terms all
    have, else ``t.edges``.

    Adding arrays that are transposed relative to ``t.edges`` would read every one
    of them strided; XLA:CPU runs such a loop up to an order of magnitude slower than
    one that reads in place, and without vectorising it (the Hessian of a tanh MLP
    ran 1.8x faster for this). The consumers align the result as they need it, for
    free where they are einsums, and elementwise functions keep it
    (``_function_order``), so a forward pass stays in the layout its matrix
    products wrote (an MLP's gradient 1.1x faster).
    """
    arrays = [core for core, spread in map(_broadcast_core, t.terms)
              if core is not None and not spread and not isinstance(core, Delta)]
    orders = {program.value(core).edges for core in arrays}
    return orders.pop() if len(orders) == 1 else t.edges


@_lower.register
def _(t: Sum, program):
    parts = []
    # NumPy broadcasting fills in ones-vector edges, as long as one term has them all.
    full_rank = any(not _broadcast_core(u)[1] for u in t.terms)
    order = _sum_order(t, program)
    for w, u in zip(t.weights, t.terms):
        text = _term_text(u, order, program, full_rank)
        number = program.number(w)
        if number.startswith("-"):
            sign, number = "-", number[1:]
        else:
            sign = "+"
        body = text if number in ("1", "1.0") else f"{number} * {text}"
        parts.append((sign, body))
    code = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    code += "".join(f" {s} {b}" for s, b in parts[1:])
    n = program.elements(t)
    return Value(program.emit(code, _describe(t), flops=n * len(parts), elements=n, elementwise=True), order)


@_lower.register
def _(t: Function, program):
    as_product = gelu_as_product(t)
    if as_product is not None:
        # Phi(u) computed once where a gradient needs it too (Phi(u) + u phi(u))
        return program.value(as_product)
    order = _function_order(t, program)
    args = [program.aligned(u, order) for u in t.inputs]
    n = program.elements(t)
    return Value(program.emit(function_call(t.spec, args, program), _describe(t), flops=n, elements=n, elementwise=True),
                 order)


def _function_order(t: Function, program: Program) -> tuple:
    """The axis order in which to apply ``t``: its first input's, where every input
    carries all of ``t``'s edges, else ``t.edges``. An elementwise chain (``tanh``, its
    square, ``1 - tanh^2``) then stays in the layout its first array was computed in
    (``_sum_order``), and no loop reads its input transposed."""
    if all(set(u.edges) == set(t.edges) for u in t.inputs):
        return program.value(t.inputs[0]).edges
    return t.edges


@_lower.register
def _(t: AlongEdge, program):
    v = program.value(t.input)
    positions = tuple(v.edges.index(a) for a in t.axes)
    edges = v.edges if t.spec.keeps_edge else tuple(e for e in v.edges if e not in t.axes)
    # a max, a subtraction, an exponential, a sum, and a division or a log per entry
    n = program.elements(t.input)
    if program.along_key(t) in program.fused:
        # softmax and logsumexp of one input: one call computes both from the same exponentials
        along = math.prod(program.size(t.input._shape[a]) for a in t.axes)
        both = program.emit(
            f"softmax_logsumexp({v.name}, {axis_argument(positions)})", _describe(t.input, "softmax and logsumexp of "),
            flops=6 * n, elements=n + n // along,
        )
        return Value(program.emit(f"{both}[{0 if t.spec is softmax else 1}]"), edges)
    return Value(program.emit(t.spec.source(v.name, positions), _describe(t), flops=5 * n, elements=program.elements(t)), edges)


def function_call(fn, args, program) -> str:
    """The JAX source for an elementwise function applied to ``args``.

    A function with no JAX source (a user's ``F.elementwise``) is called
    through a global named after it.
    """
    source = fn.source(*args)
    if source is not None:
        return source
    base = "_" + re.sub(r"[^0-9a-zA-Z_]", "_", fn.name)
    # the first of _f, _f_1, _f_2, ... that is free or already this function's
    name = next(
        n for n in itertools.chain([base], (f"{base}_{k}" for k in itertools.count(1)))
        if program.extra_globals.get(n, fn.python) is fn.python
    )
    program.extra_globals[name] = fn.python
    return f"{name}({', '.join(args)})"


@_lower.register
def _(t: Product, program):
    spread = distributed(t, program)
    if spread is not None:
        return program.value(spread)
    operands, deltas, convolutions, sizes, weight, scatter = network(t, program)
    if convolutions:
        operands, convolutions = convolve_pairs(operands, convolutions, deltas, t.edges, sizes, program)
    if convolutions:
        operands, joins = absorb_convolutions(operands, convolutions, t.edges, sizes, program)
        deltas.extend(joins)
    if scatter is not None:
        return _scatter_add(t, operands, deltas, sizes, weight, scatter, program)
    placeholders = (f"%{k}" for k in itertools.count())
    p = plan(operands, deltas, t.edges, sizes, lambda: next(placeholders), known=program,
             mapped=program.mapped)
    return _emitted(p, weight, _describe(t), program.elements(t), program)


def _scatter_add(t: Product, operands, deltas, sizes: dict, weight, scatter, program) -> Value:
    """``t``, whose one-hot factor's edge is free (``lookup.scattered_lookup``): the rest of the
    network contracted keeping the index edges, then added into the rows the index picks."""
    _, _, index, index_edges, edge = scatter
    rest = tuple(e for e in t.edges if e != edge)
    placeholders = (f"%{k}" for k in itertools.count())
    p = plan(operands, deltas, index_edges + rest, sizes, lambda: next(placeholders), known=program,
             mapped=program.mapped)
    elements = 1
    for e in index_edges + rest:
        elements *= sizes[e]
    rows = _emitted(p, weight, "the rows to add, per index entry", elements, program)
    order = [rows.edges.index(e) for e in index_edges + rest]
    text = rows.name if order == sorted(order) else f"{rows.name}.transpose({tuple(order)})"
    shape = (sizes[edge],) + tuple(sizes[e] for e in rest)
    code = f"jnp.zeros({shape}, dtype).at[{index.name}.astype(jnp.int32)].add({text})"
    return Value(program.emit(code, "scatter-add: rows added where the integer index points", flops=elements,
                              elements=program.elements(t)), (edge,) + rest)


def _emitted(p, weight, comment, elements: int, program) -> Value:
    """The steps of plan ``p`` emitted, then its broadcasts, diagonals and scale (``comment``:
    a text or a ``_Comment`` for the first step)."""
    # Steps are named as they are emitted; identical steps of other products
    # (the same operands, the same equation up to index letters) are shared.
    renamed = {}
    result = p.result
    for k, step in enumerate(p.steps):
        note = comment if len(p.steps) == 1 else (
            _step_comment(comment, f"  [step {k + 1}/{len(p.steps)}]") if k == 0 else f"[step {k + 1}/{len(p.steps)}]")
        operands = [renamed.get(a, a) for a in step.operands]
        product = _product_code(step.equation, operands)
        code = product or f"einsum({step.equation!r}, {', '.join(operands)})"
        key = ("einsum", _canonical_equation(step.equation), tuple(operands))
        step_flops, step_elements = _step_cost(step.equation, p.letter_sizes)
        renamed[step.out] = program.emit(code, note, key=key, flops=step_flops, elements=step_elements,
                                         elementwise=product is not None)
        program.remember_pair(step.equation, operands, renamed[step.out])
        if step.out == p.result:
            result = renamed[step.out]
    code = result if result is not None else "jnp.ones((), dtype)"
    for kind, axis, n, _ in p.post:
        fn = "broadcast_axis" if kind == "broadcast" else "embed_diagonal"
        code = f"{fn}({code}, {axis}, {n})"
    scale = sympy.sympify(weight * p.scale)
    if scale != 1:
        code = f"{program.number(scale)} * {code}"
    if code != result:
        # A broadcast is free under jit (XLA fuses it into its consumer); a
        # diagonal or a scale writes the array.
        n = elements if scale != 1 or any(kind != "broadcast" for kind, *_ in p.post) else 0
        name = program.emit(code, comment if not p.steps else "output axes no operand carries", flops=n, elements=n,
                            elementwise=True)
    else:
        name = result
    return Value(name, tuple(p.labels))


def _step_comment(comment, suffix: str) -> _Comment:
    """``comment`` (a text or a ``_Comment``) with ``suffix`` added."""
    text = comment.text if callable(comment) else (lambda: comment)
    return _Comment(lambda: text() + suffix)


def _product_code(equation: str, operands) -> str | None:
    """An einsum that sums over nothing, as a broadcast multiplication (``t3 * t5[:, None]``).

    It is the same array, but a plain multiply is what XLA fuses best, and
    the long elementwise chains of a backward pass compile faster without
    an einsum's reshapes. None where the einsum does more (a sum, a diagonal).
    """
    ins, out = equation.split("->")
    terms = ins.split(",")
    if len(terms) != 2 or len(set(out)) != len(out) or set("".join(terms)) != set(out):
        return None
    parts = []
    for term, name in zip(terms, operands):
        if len(set(term)) != len(term):
            return None  # a diagonal
        ordered = [c for c in out if c in term]
        if ordered != list(term):
            name = f"{name}.transpose({tuple(term.index(c) for c in ordered)})"
        if len(ordered) == len(out):
            parts.append(name)
        else:
            parts.append(f"{name}[{', '.join(':' if c in term else 'None' for c in out)}]")
    return " * ".join(parts)


def _step_cost(equation: str, letter_sizes: dict) -> tuple[int, int]:
    """FLOPs and output elements of one einsum step, counted as XLA counts them:
    a multiply and an add for every index combination of a contraction, a
    multiply per element of a product that sums nothing. An index that only
    one of several operands carries, and the output lacks, is summed out of
    that operand first (as ``jnp.einsum`` does), an add per element."""

    def size(letters) -> int:
        n = 1
        for ch in set(letters):
            n *= letter_sizes.get(ch, 1)
        return n

    ins, out = equation.split("->")
    terms = ins.split(",")
    flops = 0
    if len(terms) > 1:
        for k, term in enumerate(terms):
            others = "".join(terms[:k] + terms[k + 1:]) + out
            alone = "".join(ch for ch in term if ch not in others)
            if alone:
                flops += size(term)
                terms[k] = "".join(ch for ch in term if ch in others)
    combinations = size("".join(terms))
    elements = size(out)
    summed = combinations > elements
    return flops + (2 if summed else 1) * combinations, elements


def _letter_map(letters) -> dict:
    out = {}
    for ch in letters:
        out.setdefault(ch, chr(ord("a") + len(out)) if len(out) < 26 else f"<{len(out)}>")
    return out


def _canonical_equation(equation: str) -> str:
    """The einsum equation with index letters renamed in order of appearance."""
    canon = _letter_map(ch for ch in equation if ch not in ",->")
    return "".join(canon.get(ch, ch) for ch in equation)


def _pair_key(x: str, y: str, out: str, names: tuple):
    """A pairwise contraction, up to index letters and output order: (key, letter map)."""
    canon = _letter_map(x + y)
    key = ("".join(canon[c] for c in x), "".join(canon[c] for c in y), frozenset(canon[c] for c in out), names)
    return key, canon


def parameter(name: str) -> str:
    """The generated program's parameter for a variable: its name, unless that
    would shadow a name the program uses (``jnp``, ``dtype``, ``t3``, ...)."""
    taken = name in runtime.HELPERS or name in runtime.MODULES or name in ("dtype", "program") or name.startswith("_")
    if taken or re.fullmatch(r"t\d+", name):
        return f"in_{name}"
    return name


def build(outputs, env: dict, as_tuple: bool = False, function_name: str = "program", mapped=(),
          comments: bool = True):
    """Source text, inputs and globals of one function computing every output at sizes ``env``,
    and its estimated cost (``Program.cost``). ``mapped``: names of the inputs that are one
    example of a batch (``Program.mapped``). ``comments``: whether each statement is preceded
    by a comment saying what it computes (for a reader; the program run needs none)."""
    program = Program(env, mapped)
    outputs = factor_all(outputs, program.size)
    # Functions first, innermost first: the products inside them (a forward
    # pass) are then known when the products outside are planned, which may
    # reuse them.
    nodes = parents_first(outputs)
    program.fuse_softmax_logsumexp(nodes)
    for t in reversed(nodes):
        # (a one-hot is lowered where it is used: most become gathers, lookup.py)
        if isinstance(t, (Function, AlongEdge)) and selector(t) is None:
            program.value(t)
    results = [program.aligned(t, t.edges) for t in outputs]
    program.materialize_long_chains(_STATEMENT.findall(" ".join(results)))
    inputs = list(program.inputs)
    params = [parameter(n) for n in inputs]
    header = [f"def {function_name}({', '.join(params)}):"]
    # a comment is a _Comment, written here only where asked for
    lines = [line() if callable(line) else line for line in program.lines if comments or not callable(line)]
    body = [f"dtype = jnp.result_type(float{''.join(', ' + n for n in params)})", *lines]
    if len(results) == 1 and not as_tuple:
        body.append(f"return {results[0]}")
    else:
        body.append(f"return ({', '.join(results)},)")
    source = "\n".join(header + ["    " + line for line in body]) + "\n"
    return source, inputs, dict(program.extra_globals), program.cost
