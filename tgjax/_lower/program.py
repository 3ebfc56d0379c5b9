"""Building the program: the lowering rules, from expressions to a DAG of steps.

Each distinct subexpression (equal as API.md defines it: up to inner edge
names and axis order) gets one step; every later use reads its array,
transposed when it needs another axis order. Products become planned einsum
steps (``contract.py``), sums weighted additions, functions one JAX call.
The steps are data (``steps.py``); their cost is ``cost.py``'s and their
source ``emit.py``'s, written once for the candidate program chosen.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
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
from .contract import plan
from .convolution import absorb_convolutions, convolve_pairs
from .cost import einsum_cost, program_cost
from .emit import Comment, source
from .factor import factor_all
from .lookup import selector
from .network import distributed, network
from .steps import Steps, mark_long_chains


@dataclass(frozen=True)
class Value:
    """A computed array: its variable name and the edge carried by each axis."""

    name: str
    edges: tuple


class Program:
    """The steps of one generated function at fixed sizes, and what lowering knows while
    it builds them (the value of each subexpression, the pairwise contractions done)."""

    def __init__(self, env: dict, mapped=()):
        self.env = env          # size symbol -> int
        # the steps, and the values that depend on a mapped input (one example of a batch
        # that jax.vmap maps over): products are ordered for a batch of them (contract.py)
        self.steps = Steps(mapped={parameter(n) for n in mapped})
        self.mapped = self.steps.mapped
        self.numbering = Numbering()
        self.memo = {}           # value number -> Value, its edges given as port positions
        self.inputs = {}         # variable name -> None, in first-use order
        self.extra_globals = {}  # callables that have no jnp spelling
        self.pairs = {}          # pairwise contraction (canonical letters) -> (name, output letters)
        self.partners = {}       # operand name -> names it was contracted with in a remembered pair
        self._sizes = {}          # size expression -> int
        # id of a product -> whether it is thin / dissolves into its consumer
        # (network.py); ids stay valid because self.numbering keeps every lowered node
        self.thin = {}
        self.dissolves = {}
        self.fused = set()       # along_key of inputs whose softmax and logsumexp are both needed
        self._numbers: dict = {}  # weight -> its source text (``number``)

    # -- sizes and numbers -------------------------------------------------
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

    # -- steps -------------------------------------------------------------
    def read(self, name: str, perm: tuple | None = None) -> str:
        """The token by which a step's template reads array ``name`` (through ``perm``)."""
        return self.steps.read(name, perm)

    def emit(self, code: str, comment=None, key=None, flops: int = 0, elements: int = 0,
             elementwise: bool = False, expands: bool = False) -> str:
        """The name of a step computing ``code`` (a template over reads, ``read``); an identical
        step added before (same ``key``, by default the code) is reused instead.

        ``flops`` and ``elements`` (of the result) are its estimated cost
        (``cost.py``); ``comment``: a text or a ``Comment`` saying what it
        computes; ``elementwise`` and ``expands`` as ``steps.Step`` says.
        """
        if comment is not None and not callable(comment):
            comment = Comment(lambda text=comment: text)
        return self.steps.add(code, key, flops, elements, elementwise=elementwise, expands=expands, comment=comment)

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
                return Value(self.emit(structural_source(t, self.size), t.name, elements=math.prod(sizes)), t.edges)
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
        """The read of ``t``'s array with axes in ``order``, as a token for a step's template."""
        v = self.value(t)
        order = tuple(order)
        if v.edges == order:
            return self.read(v.name)
        return self.read(v.name, tuple(v.edges.index(e) for e in order))


# Functions XLA expands into a long elementwise chain of their own (erfc: two polynomials,
# an exponential and four selects, some 60 operations), each step calling one counted as a
# long chain (``steps.mark_long_chains``): a GELU's Phi(u), read by its value and its
# gradient, was computed twice (a third of a two-block post-layer-norm transformer's step
# beyond JAX's, which computes it once). Read off the function's own JAX source.
_EXPANDED_BY_XLA = re.compile(r"\blax\.(?:erfc|erf|erf_inv|lgamma|digamma|igamma|igammac|bessel_i0e|bessel_i1e)\(")


def _describe(t: Expr, prefix: str = "") -> Comment:
    """A comment for the statement computing ``t``: its top levels only (a DAG
    printed whole as a tree can be far larger than the program)."""
    return Comment(lambda: prefix + to_string(t, depth=4))


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
    code = function_call(t.spec, args, program)
    return Value(program.emit(code, _describe(t), flops=n, elements=n, elementwise=True, expands=_expands(t.spec)),
                 order)


def _expands(fn) -> bool:
    """Whether XLA expands ``fn`` into a long elementwise chain of its own (``_EXPANDED_BY_XLA``)."""
    own = fn.source(*(f"x{k}" for k in range(fn.arity)))
    return own is not None and _EXPANDED_BY_XLA.search(own) is not None


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
            f"softmax_logsumexp({program.read(v.name)}, {axis_argument(positions)})",
            _describe(t.input, "softmax and logsumexp of "), flops=6 * n, elements=n + n // along,
        )
        return Value(program.emit(f"{program.read(both)}[{0 if t.spec is softmax else 1}]"), edges)
    code = t.spec.source(program.read(v.name), positions)
    return Value(program.emit(code, _describe(t), flops=5 * n, elements=program.elements(t)), edges)


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
    operands, deltas, convolutions, sizes, weight, scatters = network(t, program)
    if convolutions:
        operands, convolutions = convolve_pairs(operands, convolutions, deltas, t.edges, sizes, program)
    if convolutions:
        operands, joins = absorb_convolutions(operands, convolutions, t.edges, sizes, program)
        deltas.extend(joins)
    if scatters:
        return _scatter_add(t, operands, deltas, sizes, weight, scatters, program)
    placeholders = (f"%{k}" for k in itertools.count())
    p = plan(operands, deltas, t.edges, sizes, lambda: next(placeholders), known=program,
             mapped=program.mapped)
    return _emitted(p, weight, _describe(t), program.elements(t), program)


def _scatter_add(t: Product, operands, deltas, sizes: dict, weight, scatters, program) -> Value:
    """``t``, whose one-hot factors' edges are free (``lookup.scattered_lookups``): the rest of
    the network contracted keeping the index edges, then added into the entries the indices
    pick, one leading axis per one-hot."""
    edges = tuple(lookup.edge for lookup in scatters)
    index_edges = tuple(e for lookup in scatters for e in lookup.index_edges)
    rest = tuple(e for e in t.edges if e not in edges)
    placeholders = (f"%{k}" for k in itertools.count())
    p = plan(operands, deltas, index_edges + rest, sizes, lambda: next(placeholders), known=program,
             mapped=program.mapped)
    elements = 1
    for e in index_edges + rest:
        elements *= sizes[e]
    rows = _emitted(p, weight, "the rows to add, per index entry", elements, program)
    order = [rows.edges.index(e) for e in index_edges + rest]
    text = program.read(rows.name, None if order == sorted(order) else tuple(order))
    if all(lookup.window is not None for lookup in scatters):
        # a pooling's windows put back: each (window, entry) pair of axes is one run of the
        # edge, padded with zeros where a remainder was dropped
        runs = tuple(math.prod(sizes[e] for e in lookup.index_edges) for lookup in scatters)
        code = f"{text}.reshape({runs + tuple(sizes[e] for e in rest)})"
        pads = [(0, sizes[lookup.edge] - n) for lookup, n in zip(scatters, runs)]
        if any(after for _, after in pads):
            code = f"jnp.pad({code}, {tuple(pads) + ((0, 0),) * len(rest)})"
        return Value(program.emit(code, "windows put back in place along their edges", elements=program.elements(t)),
                     tuple(lookup.edge for lookup in scatters) + rest)
    indices = []
    for lookup in scatters:
        own = lookup.index_edges
        picks = f"{program.read(lookup.index.name)}.astype(jnp.int32)"
        if len(scatters) > 1:
            # each index spread along the others' index edges, which numpy's indexing broadcasts
            picks += f".reshape({tuple(sizes[e] if e in own else 1 for e in index_edges)})"
        indices.append(picks)
    shape = tuple(sizes[e] for e in edges + rest)
    # an index out of range (outside a concatenation's part) adds nothing, as its lookup picks zeros
    code = f"jnp.zeros({shape}, dtype).at[{', '.join(indices)}].add({text}, mode='drop')"
    return Value(program.emit(code, "scatter-add: rows added where the integer index points", flops=elements,
                              elements=program.elements(t)), edges + rest)


def _emitted(p, weight, comment, elements: int, program) -> Value:
    """The steps of plan ``p`` emitted, then its broadcasts, diagonals and scale (``comment``:
    a text or a ``Comment`` for the first step)."""
    # Steps are named as they are emitted; identical steps of other products
    # (the same operands, the same equation up to index letters) are shared.
    renamed = {}
    result = p.result
    for k, step in enumerate(p.steps):
        note = comment if len(p.steps) == 1 else (
            _step_comment(comment, f"  [step {k + 1}/{len(p.steps)}]") if k == 0 else f"[step {k + 1}/{len(p.steps)}]")
        operands = [renamed.get(a, a) for a in step.operands]
        product = _product_code(step.equation, operands, program)
        code = product or f"einsum({step.equation!r}, {', '.join(map(program.read, operands))})"
        key = ("einsum", _canonical_equation(step.equation), tuple(operands))
        step_flops, step_elements = einsum_cost(step.equation, p.letter_sizes)
        renamed[step.out] = program.emit(code, note, key=key, flops=step_flops, elements=step_elements,
                                         elementwise=product is not None)
        program.remember_pair(step.equation, operands, renamed[step.out])
        if step.out == p.result:
            result = renamed[step.out]
    plain = None if result is None else program.read(result)
    code = plain or "jnp.ones((), dtype)"
    for kind, axis, n, _ in p.post:
        fn = "broadcast_axis" if kind == "broadcast" else "embed_diagonal"
        code = f"{fn}({code}, {axis}, {n})"
    scale = sympy.sympify(weight * p.scale)
    if scale != 1:
        code = f"{program.number(scale)} * {code}"
    if code != plain:
        # A broadcast is free under jit (XLA fuses it into its consumer); a
        # diagonal or a scale writes the array.
        n = elements if scale != 1 or any(kind != "broadcast" for kind, *_ in p.post) else 0
        name = program.emit(code, comment if not p.steps else "output axes no operand carries", flops=n, elements=n,
                            elementwise=True)
    else:
        name = result
    return Value(name, tuple(p.labels))


def _step_comment(comment, suffix: str) -> Comment:
    """``comment`` (a text or a ``Comment``) with ``suffix`` added."""
    text = comment.text if callable(comment) else (lambda: comment)
    return Comment(lambda: text() + suffix)


def _product_code(equation: str, operands, program: Program) -> str | None:
    """An einsum that sums over nothing, as a broadcast multiplication (``t3 * t5[:, None]``).

    It is the same array, but a plain multiply is what XLA fuses best, and
    the long elementwise chains of a backward pass compile faster without
    an einsum's reshapes. None where the einsum does more (a sum, a diagonal).
    """
    ins, out = equation.split("->")
    terms = ins.split(",")
    if len(terms) != 2 or len(set(out)) != len(out) or set("".join(terms)) != set(out):
        return None
    if any(len(set(term)) != len(term) for term in terms):
        return None  # a diagonal
    parts = []
    for term, name in zip(terms, operands):
        ordered = [c for c in out if c in term]
        read = program.read(name, None if ordered == list(term) else tuple(term.index(c) for c in ordered))
        if len(ordered) == len(out):
            parts.append(read)
        else:
            parts.append(f"{read}[{', '.join(':' if c in term else 'None' for c in out)}]")
    return " * ".join(parts)


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


@dataclass
class Built:
    """One candidate program, as steps: the inputs it reads (variable names, in first-use
    order), its results (reads), the callables it needs, and its estimated cost."""

    steps: Steps
    results: tuple
    inputs: list
    extra_globals: dict
    cost: int

    def source(self, as_tuple: bool = False, function_name: str = "program", comments: bool = True) -> str:
        """The function's source (``comments``: each statement preceded by a comment saying
        what it computes, for a reader; the program run needs none)."""
        params = [parameter(n) for n in self.inputs]
        return source(self.steps, self.results, params, function_name, as_tuple, comments)


def build(outputs, env: dict, mapped=()) -> Built:
    """The program computing every output at sizes ``env``. ``mapped``: names of the inputs
    that are one example of a batch (``Program.mapped``)."""
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
    results = program.steps.reads_of("".join(program.aligned(t, t.edges) for t in outputs))
    mark_long_chains(program.steps, results)
    return Built(program.steps, results, list(program.inputs), dict(program.extra_globals), program_cost(program.steps))
