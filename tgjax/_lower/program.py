"""Building the program: a DAG of steps with shared subexpressions, emitted as JAX source.

Each distinct subexpression (equal as API.md defines it: up to inner edge
names and axis order) gets one statement; every later use reads its variable,
transposed when it needs another axis order. Products become planned einsum
steps (``contract.py``), sums weighted additions, functions one JAX call.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import sympy

from .._ir.identity import canonical_names
from .._ir.nodes import AlongEdge, Convolution, Delta, Expr, Function, Product, Sum, Variable, Zero
from .._ir.rename import rename
from .._viz.notation import to_string
from . import runtime
from .contract import plan
from .convolution import absorb_convolutions, convolve_pairs
from .factor import factor


@dataclass(frozen=True)
class Value:
    """A computed array: its variable name and the edge carried by each axis."""

    name: str
    edges: tuple


class Program:
    """Statements of one generated function, at fixed sizes."""

    def __init__(self, env: dict):
        self.env = env          # size symbol -> int
        self.lines = []          # generated statements, with comment lines
        self.memo = {}           # Expr -> Value
        self.inputs = {}         # variable name -> None, in first-use order
        self.extra_globals = {}  # callables that have no jnp spelling
        self.statements = {}     # statement key -> variable name, for sharing identical steps
        self.pairs = {}          # pairwise contraction (canonical letters) -> (name, output letters)
        self._count = 0

    # -- names and sizes ---------------------------------------------------
    def new_name(self) -> str:
        name = f"t{self._count}"
        self._count += 1
        return name

    def size(self, s) -> int:
        return int(sympy.sympify(s).subs(self.env)) if not isinstance(s, int) else s

    def number(self, w) -> str:
        value = sympy.sympify(w).subs(self.env)
        if value.is_Integer:
            return str(int(value))
        return repr(float(value))

    def emit(self, code: str, comment: str | None = None, key=None) -> str:
        """Append ``name = code``; an identical statement emitted before is reused instead."""
        key = key or code
        if key in self.statements:
            return self.statements[key]
        if comment:
            self.lines.append(f"# {_short(comment)}")
        name = self.new_name()
        self.lines.append(f"{name} = {code}")
        self.statements[key] = name
        return name

    # -- sharing pairwise contractions between products ---------------------
    def remember_pair(self, equation: str, operands, name: str):
        if len(operands) != 2:
            return
        ins, out = equation.split("->")
        a, b = ins.split(",")
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

    # -- values ------------------------------------------------------------
    def value(self, t: Expr) -> Value:
        if isinstance(t, Variable):
            self.inputs.setdefault(t.name, None)
            return Value(parameter(t.name), t.edges)
        # Memoise on a canonical naming of the free edges: the same work often
        # appears inside different terms under other edge names.
        canon = canonical_names(t)
        key = rename(t, canon)
        found = self.memo.get(key)
        if found is None:
            v = _lower(t, self)
            found = Value(v.name, tuple(canon[e] for e in v.edges))
            self.memo[key] = found
        back = {c: e for e, c in canon.items()}
        return Value(found.name, tuple(back[c] for c in found.edges))

    def aligned(self, t: Expr, order) -> str:
        """Source text for ``t``'s array with axes in ``order``."""
        v = self.value(t)
        order = tuple(order)
        if v.edges == order:
            return v.name
        perm = tuple(v.edges.index(e) for e in order)
        return f"{v.name}.transpose({perm})"


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.singledispatch
def _lower(t: Expr, program: Program) -> Value:
    raise NotImplementedError(f"lower: no rule for node type {type(t).__name__}")


@_lower.register
def _(t: Zero, program):
    shape = tuple(program.size(t._shape[e]) for e in t.edges)
    return Value(program.emit(f"jnp.zeros({shape}, dtype)", to_string(t)), t.edges)


@_lower.register
def _(t: Convolution, program):
    n, k, m = (program.size(t._shape[e]) for e in t.edges)
    return Value(program.emit(f"conv_indicator({n}, {k}, {m}, dtype)", to_string(t)), t.edges)


@_lower.register
def _(t: Delta, program):
    n, k = program.size(t.size), len(t.edges)
    return Value(program.emit(f"delta({n}, {k}, dtype)", to_string(t)), t.edges)


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


@_lower.register
def _(t: Sum, program):
    parts = []
    # NumPy broadcasting fills in ones-vector edges, as long as one term has them all.
    full_rank = any(not _broadcast_core(u)[1] for u in t.terms)
    for w, u in zip(t.weights, t.terms):
        text = _term_text(u, t.edges, program, full_rank)
        number = program.number(w)
        if number.startswith("-"):
            sign, number = "-", number[1:]
        else:
            sign = "+"
        body = text if number in ("1", "1.0") else f"{number} * {text}"
        parts.append((sign, body))
    code = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    code += "".join(f" {s} {b}" for s, b in parts[1:])
    return Value(program.emit(code, to_string(t)), t.edges)


@_lower.register
def _(t: Function, program):
    args = [program.aligned(u, t.edges) for u in t.inputs]
    return Value(program.emit(function_call(t.spec, args, program), to_string(t)), t.edges)


@_lower.register
def _(t: AlongEdge, program):
    v = program.value(t.input)
    positions = tuple(v.edges.index(a) for a in t.axes)
    edges = v.edges if t.spec.keeps_edge else tuple(e for e in v.edges if e not in t.axes)
    return Value(program.emit(t.spec.code(v.name, positions), to_string(t)), edges)


def function_call(spec, args, program) -> str:
    """The JAX source for an elementwise function applied to ``args``."""
    (x,) = args if len(args) == 1 else (None,)
    simple = {
        "exp": "jnp.exp", "log": "jnp.log", "tanh": "jnp.tanh", "sigmoid": "jax.nn.sigmoid",
        "relu": "jax.nn.relu", "abs": "jnp.abs", "sign": "jnp.sign", "softplus": "jax.nn.softplus",
    }
    if spec.name in simple and x is not None:
        return f"{simple[spec.name]}({x})"
    if spec.name == "step" and x is not None:
        return f"jnp.where({x} > 0, 1, 0).astype(dtype)"
    if spec.name == "pow" and x is not None:
        k = spec.params[0]
        if k == sympy.Rational(1, 2):
            return f"jnp.sqrt({x})"
        if k == sympy.Rational(-1, 2):
            return f"lax.rsqrt({x})"
        if k == -1:
            return f"1 / {x}"
        if k.is_Integer:
            return f"lax.integer_pow({x}, {int(k)})"
        return f"{x} ** {float(k)!r}"
    name = f"_{re.sub(r'[^0-9a-zA-Z_]', '_', spec.name)}_{len(program.extra_globals)}"
    program.extra_globals[name] = spec.apply
    return f"{name}({', '.join(args)})"


@_lower.register
def _(t: Product, program):
    operands, deltas, convolutions = [], [], []
    for f in t.factors:
        if isinstance(f, Delta):
            deltas.append(f.edges)
        elif isinstance(f, Convolution):
            convolutions.append(f)
        else:
            v = program.value(f)
            operands.append((v.name, v.edges))
    sizes = {e: program.size(s) for f in t.factors for e, s in f._shape.items()}
    if convolutions:
        operands, convolutions = convolve_pairs(operands, convolutions, deltas, t.edges, sizes, program)
    if convolutions:
        operands, joins = absorb_convolutions(operands, convolutions, t.edges, sizes, program)
        deltas.extend(joins)
    placeholders = (f"%{k}" for k in itertools.count())
    p = plan(operands, deltas, t.edges, sizes, lambda: next(placeholders), known=program.known_pair)
    comment = to_string(t)
    # Steps are named as they are emitted; identical steps of other products
    # (the same operands, the same equation up to index letters) are shared.
    renamed = {}
    result = p.result
    for k, step in enumerate(p.steps):
        note = comment if len(p.steps) == 1 else (
            f"{comment}  [step {k + 1}/{len(p.steps)}]" if k == 0 else f"[step {k + 1}/{len(p.steps)}]")
        operands = [renamed.get(a, a) for a in step.operands]
        code = f"jnp.einsum({step.equation!r}, {', '.join(operands)})"
        key = ("einsum", _canonical_equation(step.equation), tuple(operands))
        renamed[step.out] = program.emit(code, note, key=key)
        program.remember_pair(step.equation, operands, renamed[step.out])
        if step.out == p.result:
            result = renamed[step.out]
    code = result if result is not None else "jnp.ones((), dtype)"
    for kind, axis, n, _ in p.post:
        fn = "broadcast_axis" if kind == "broadcast" else "embed_diagonal"
        code = f"{fn}({code}, {axis}, {n})"
    if p.scale != 1:
        code = f"{p.scale} * {code}"
    if code != result:
        name = program.emit(code, comment if not p.steps else "output axes no operand carries")
    else:
        name = result
    return Value(name, tuple(p.labels))


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


def _functions_first(t: Expr, program: Program, seen: set):
    """Lower every function node, innermost first (``seen``: ids already visited)."""
    if id(t) in seen:
        return
    seen.add(id(t))
    for a in t.args:
        _functions_first(a, program, seen)
    if isinstance(t, (Function, AlongEdge)):
        program.value(t)


def parameter(name: str) -> str:
    """The generated program's parameter for a variable: its name, unless that
    would shadow a name the program uses (``jnp``, ``dtype``, ``t3``, ...)."""
    taken = name in RUNTIME_GLOBALS or name in ("jax", "jnp", "lax", "dtype", "program") or name.startswith("_")
    if taken or re.fullmatch(r"t\d+", name):
        return f"in_{name}"
    return name


RUNTIME_GLOBALS = {
    "matrix_inverse": runtime.matrix_inverse,
    "matrix_det": runtime.matrix_det,
    "matrix_logdet": runtime.matrix_logdet,
    "delta": runtime.delta,
    "broadcast_axis": runtime.broadcast_axis,
    "embed_diagonal": runtime.embed_diagonal,
    "window": runtime.window,
    "conv_indicator": runtime.conv_indicator,
}


def build(outputs, env: dict, as_tuple: bool = False, function_name: str = "program"):
    """Source text and globals of one function computing every output, at sizes ``env``."""
    program = Program(env)
    outputs = [factor(t, program.size) for t in outputs]
    # Functions first: the products inside them (a forward pass) are then
    # known when the products outside are planned, which may reuse them.
    seen: set = set()
    for t in outputs:
        _functions_first(t, program, seen)
    results = [program.aligned(t, t.edges) for t in outputs]
    inputs = list(program.inputs)
    params = [parameter(n) for n in inputs]
    header = [f"def {function_name}({', '.join(params)}):"]
    body = [f"dtype = jnp.result_type(float{''.join(', ' + n for n in params)})", *program.lines]
    if len(results) == 1 and not as_tuple:
        body.append(f"return {results[0]}")
    else:
        body.append(f"return ({', '.join(results)},)")
    source = "\n".join(header + ["    " + line for line in body]) + "\n"
    return source, inputs, dict(program.extra_globals)
