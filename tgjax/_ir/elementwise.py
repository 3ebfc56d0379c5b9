"""Elementwise functions as objects.

Each function is one object that carries everything about it: its printed
name, its partial derivatives (as expressions), the identities it obeys (named
rewrite rules), its JAX emission and its value at zero. Passes ask the object;
none of them recognises a function by its name. Built-ins are single
instances, compared by identity, so a user's ``F.elementwise`` can never be
taken for one.

The JAX emission is *source*: a template over the argument's source, written
into the generated program by lowering and compiled by the reference
evaluator. Nothing here imports JAX, so the IR stays free of later stages. A
function with no source (a user's ``F.elementwise``) offers a Python callable
on arrays instead (``python``).

Adding a built-in: one ``ElementwiseFunction(...)`` below, its wrapper in
``tgjax.functions``, and its tests.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from typing import Callable

import sympy

from .along import det, logdet, logsumexp, softmax
from .nodes import AlongEdge, Delta, Expr, Function, Product, Sum, Variable, Zero, _merge_shapes, broadcast_to, ones, scale
from .util import UnionFind, as_weight


class ElementwiseFunction:
    """An elementwise function of one or more tensors with the same edges.

    Args:
        name: the printed name (text notation and generated-code comments).
        source: JAX source with ``{0}``, ``{1}``, ... for the arguments' source,
            or None for a function given by ``python`` (a callable on arrays).
        partials: ``partials(*inputs)`` -> one expression per input, with the
            input's edges: the partial derivative, to be multiplied elementwise
            with the input's derivative.
        at_zero: f(0) when exact and finite (lets simplify fold f(Zero)).
        identities: named rewrite rules ``rule(node) -> Expr | None`` for a
            node of this function whose inputs are in normal form.
        key: what canonical hashing reads (stable across processes).
        latex: its LaTeX with ``{0}``, ... for the arguments' LaTeX (default:
            the name as an operator).
        arity: how many tensors it takes.
    """

    python: Callable | None = None

    def __init__(
        self, name: str, source: str | None, partials: Callable, *, at_zero=None, identities=(), key=None, latex=None,
        arity: int = 1,
    ):
        self.name = name
        self.arity = arity
        self._latex = latex
        self._source = source
        self.partials = partials
        self.at_zero = at_zero
        self.identities = tuple(identities)
        self.key = key if key is not None else (name, ())

    def __call__(self, *inputs: Expr) -> Function:
        """This function applied elementwise; inputs are broadcast to their union of edges."""
        shape = _merge_shapes([u._shape for u in inputs], f"{self.name}(...)")
        order = []
        for u in inputs:
            order.extend(e for e in u.edges if e not in order)
        return Function(self, [broadcast_to(u, shape) for u in inputs], edges=order)

    def source(self, *args: str) -> str | None:
        """JAX source applying this function to the arguments' source, or None (see ``python``)."""
        return None if self._source is None else self._source.format(*args)

    def text(self, node: Function, inner: list) -> str:
        """The text notation of ``node``, given its inputs' notation."""
        return f"{self.name}({', '.join(inner)})"

    def latex(self, node: Function, inner: list) -> str:
        """The LaTeX of ``node``, given its inputs' LaTeX."""
        if self._latex is not None:
            return self._latex.format(*inner)
        base, primes = self.name.rstrip("'"), len(self.name) - len(self.name.rstrip("'"))
        escaped, marks, args = base.replace("_", r"\_"), "'" * primes, ", ".join(inner)
        return rf"\operatorname{{{escaped}}}{marks}\left({args}\right)"

    def __repr__(self):
        return f"<elementwise function {self.name}>"


def _ones_like(u: Expr) -> Expr:
    return ones(u.shape)


# -- identities (named rewrite rules) -------------------------------------------
# Each takes a node whose inputs are in normal form and returns an equal
# expression with the node's edges, or None when it does not apply.


def log_of_exp(t: Function):
    """log(exp(u)) = u."""
    (u,) = t.inputs
    if isinstance(u, Function) and u.spec is exp:
        return u.inputs[0]
    return None


def stable_log(t: Function):
    """log(u) in a stable form, or None: log(softmax(v)) = v - logsumexp(v),
    log(sum_c exp(v)) = logsumexp(v) and log(det(X)) = logdet(X) (through slogdet).

    Applied by the simplifier and to the evaluation form that lowering
    builds, so that both lower to stable code.
    """
    (u,) = t.inputs
    edges = t.edges
    if isinstance(u, AlongEdge) and u.spec is det:
        return AlongEdge(logdet, u.input, u.axes, edges=edges)
    if isinstance(u, AlongEdge) and u.spec is softmax:
        v = u.input
        return Sum([v, broadcast_to(logsumexp(v, *u.axes), v._shape)], [1, -1], edges=edges)
    summed = sum_of_exp(u)
    if summed is not None:
        lse = logsumexp(*summed)
        return lse if lse.edges == tuple(edges) else Product([lse], edges=edges)
    return None


def sum_of_exp(u: Expr):
    """``(v, e)`` when ``u`` is ``sum_e exp(v)`` (an exp times a ones vector on one of its
    edges, which it sums), else None: the pattern behind logsumexp and softmax written by hand."""
    if not (isinstance(u, Product) and len(u.factors) == 2):
        return None
    exps = [f for f in u.factors if isinstance(f, Function) and f.spec is exp]
    ones = [f for f in u.factors if isinstance(f, Delta) and len(f.edges) == 1]
    if len(exps) != 1 or len(ones) != 1:
        return None
    e = ones[0].edges[0]
    return (exps[0].inputs[0], e) if e in exps[0]._shape and e not in u._shape else None


def log1p_of_expm1(t: Function):
    """log1p(expm1(u)) = u."""
    (u,) = t.inputs
    return u.inputs[0] if isinstance(u, Function) and u.spec is expm1 else None


def expm1_of_log1p(t: Function):
    """expm1(log1p(u)) = u (where log1p is defined, u > -1)."""
    (u,) = t.inputs
    return u.inputs[0] if isinstance(u, Function) and u.spec is log1p else None


def power_one(t: Function):
    """u ** 1 = u."""
    return t.inputs[0] if t.spec.k == 1 else None


def power_zero(t: Function):
    """u ** 0 = 1 (also where u is 0, as jnp)."""
    return ones(t.shape) if t.spec.k == 0 else None


def power_of_power(t: Function):
    """(u ** a) ** b = u ** (a b) for integers a and b (sqrt(x) ** 2 is nan for x < 0, not x)."""
    (u,) = t.inputs
    k = t.spec.k
    if isinstance(u, Function) and isinstance(u.spec, Power) and k.is_Integer and u.spec.k.is_Integer:
        return Function(power(u.spec.k * k), u.inputs, edges=t.edges)
    return None


def power_of_scaled(t: Function):
    """(c u) ** k = c ** k u ** k for integer k."""
    (u,) = t.inputs
    k = t.spec.k
    if isinstance(u, Sum) and len(u.terms) == 1 and k.is_Integer:
        (w,), (core,) = u.weights, u.terms
        return scale(Function(power(k), [core], edges=t.edges), w**k)
    return None


def power_of_product(t: Function):
    """An integer power of an elementwise product is the product of the powers:
    ``(a b^-1)^-1 = a^-1 b``, ``(x * y)^2 = x^2 * y^2``.

    Only where the product sums over nothing and puts no Delta's zeros in its
    result: each class of edges its Deltas join holds exactly one free edge.
    """
    (u,) = t.inputs
    k = t.spec.k
    if not (isinstance(u, Product) and k.is_Integer and u.factors):
        return None
    parts = _components(u)
    if len(parts) > 1:
        # factors that share no edge are an outer product: its power is the product of the
        # parts' powers, ``(Σa / Σb)^-1 = (Σa)^-1 Σb``, so a ratio of sums cancels against itself
        return Product([Function(power(k), [part]) for part in parts], edges=t.edges)
    classes = UnionFind()
    for f in u.factors:
        if isinstance(f, Delta):
            classes.join(f.edges)
        for e in f.edges:
            classes.find(e)
    free_per_class = Counter(classes.find(e) for e in u.edges)
    if any(free_per_class[classes.find(e)] != 1 for e in classes):
        return None
    factors = [f if isinstance(f, Delta) else Function(power(k), [f]) for f in u.factors]
    return Product(factors, edges=t.edges)


def _components(u: Product) -> list:
    """The factors of ``u`` grouped into the networks that share no edge, each a product."""
    classes = UnionFind()
    for f in u.factors:
        classes.join([id(f), *f.edges])
    groups: dict = {}
    for f in u.factors:
        groups.setdefault(classes.find(id(f)), []).append(f)
    if len(groups) == 1:
        return [u]
    return [g[0] if len(g) == 1 else Product(g) for g in groups.values()]


class Power(ElementwiseFunction):
    """``x ** k`` for a sympy number ``k``: the one function the IR's own operators build (``**``, ``/``)."""

    def __init__(self, k):
        def partials(u):
            if k - 1 == 0:
                return [scale(_ones_like(u), k)]
            if k - 1 == 1:
                return [scale(u, k)]
            return [scale(power(k - 1)(u), k)]

        at_zero = 0.0 if k.is_positive else (1.0 if k == 0 else None)
        super().__init__(
            "pow", None, partials, at_zero=at_zero,
            identities=(power_one, power_zero, power_of_power, power_of_scaled, power_of_product), key=("pow", (str(k),)),
        )
        self.k = k

    def source(self, x: str) -> str:
        k = self.k
        if k == sympy.Rational(1, 2):
            return f"jnp.sqrt({x})"
        if k == sympy.Rational(-1, 2):
            return f"lax.rsqrt({x})"
        if k == -1:
            return f"1 / {x}"
        if k.is_Integer:
            return f"lax.integer_pow({x}, {int(k)})"
        return f"{x} ** {float(k)!r}"

    def latex(self, node: Function, inner: list) -> str:
        (x,) = inner
        k = self.k
        if k == sympy.Rational(1, 2):
            return rf"\sqrt{{{x}}}"
        base = x if isinstance(node.inputs[0], Variable) else rf"\left({x}\right)"
        return f"{base}^{{{sympy.latex(k)}}}"

    def text(self, node: Function, inner: list) -> str:
        (x,) = inner
        k = self.k
        if k == sympy.Rational(1, 2):
            return f"sqrt({x})"
        base = x if isinstance(node.inputs[0], (Variable, Function)) else f"({x})"
        return f"{base}^{k}" if k.is_Integer and k > 0 else f"{base}^({k})"

    def __repr__(self):
        return f"<elementwise function pow({self.k})>"


@functools.lru_cache(maxsize=None)
def _power(k) -> Power:
    return Power(k)


def power(k) -> Power:
    """The function ``x ** k`` for a number ``k`` (one object per exponent)."""
    k = sympy.nsimplify(k) if isinstance(k, float) and float(k).is_integer() else sympy.sympify(k)
    return _power(k)


def exponent(spec):
    """``k`` for the function ``x ** k``, else None."""
    return spec.k if isinstance(spec, Power) else None


def raised(t: Expr, k, where: str) -> Function:
    """``t ** k`` elementwise, for a scalar exponent given by the user (``F.pow``, ``**``, ``/``).

    Floats that are whole numbers, or simple fractions, become exact
    exponents, so that powers merge and print exactly.
    """
    if isinstance(k, Expr):
        raise TypeError(f"{where}: the exponent must be a scalar number; for a tensor exponent write F.exp(k * F.log(t)).")
    k = as_weight(k, where)
    if not k.is_number:
        raise TypeError(
            f"{where}: the exponent must be a number; got {k}, a size symbol. Give its value (t ** 3), "
            f"or for an exponent that varies write F.exp(k * F.log(t))."
        )
    if isinstance(k, sympy.Float) and k == int(k):
        k = sympy.Integer(int(k))
    elif isinstance(k, sympy.Float):
        fraction = sympy.nsimplify(k, rational=True)
        k = fraction if fraction.q <= 16 else k
    return power(k)(t)


# -- the built-ins --------------------------------------------------------------

exp = ElementwiseFunction("exp", "jnp.exp({0})", lambda u: [exp(u)], at_zero=1.0, latex=r"\exp\left({0}\right)")
log = ElementwiseFunction(
    "log", "jnp.log({0})", lambda u: [power(-1)(u)], identities=(log_of_exp, stable_log), latex=r"\log\left({0}\right)"
)
tanh = ElementwiseFunction(
    "tanh", "jnp.tanh({0})", lambda u: [_ones_like(u) - power(2)(tanh(u))], at_zero=0.0, latex=r"\tanh\left({0}\right)"
)
sigmoid = ElementwiseFunction(
    "sigmoid", "jax.nn.sigmoid({0})", lambda u: [sigmoid(u) * (_ones_like(u) - sigmoid(u))], at_zero=0.5,
    latex=r"\sigma\left({0}\right)",
)
step = ElementwiseFunction("step", "jnp.where({0} > 0, 1, 0).astype(dtype)", lambda u: [Zero._make(u.shape)], at_zero=0.0)
relu = ElementwiseFunction("relu", "jax.nn.relu({0})", lambda u: [step(u)], at_zero=0.0)
sign = ElementwiseFunction("sign", "jnp.sign({0})", lambda u: [Zero._make(u.shape)], at_zero=0.0)
# The slope of abs: the sign, but 1 at 0, as JAX's derivative of jnp.abs (``jax.grad(jnp.abs)(0.0) == 1``).
abs_slope = ElementwiseFunction(
    "abs'", "jnp.where({0} >= 0, 1, -1).astype(dtype)", lambda u: [Zero._make(u.shape)], at_zero=1.0,
)
abs_ = ElementwiseFunction("abs", "jnp.abs({0})", lambda u: [abs_slope(u)], at_zero=0.0, latex=r"\left|{0}\right|")
softplus = ElementwiseFunction("softplus", "jax.nn.softplus({0})", lambda u: [sigmoid(u)])
sin = ElementwiseFunction("sin", "jnp.sin({0})", lambda u: [cos(u)], at_zero=0.0, latex=r"\sin\left({0}\right)")
cos = ElementwiseFunction("cos", "jnp.cos({0})", lambda u: [scale(sin(u), -1)], at_zero=1.0, latex=r"\cos\left({0}\right)")
log1p = ElementwiseFunction(
    "log1p", "jnp.log1p({0})", lambda u: [power(-1)(_ones_like(u) + u)], at_zero=0.0, identities=(log1p_of_expm1,),
    latex=r"\log\left(1 + {0}\right)",
)
expm1 = ElementwiseFunction(
    "expm1", "jnp.expm1({0})", lambda u: [exp(u)], at_zero=0.0, identities=(expm1_of_log1p,),
    latex=r"\left(e^{{{0}}} - 1\right)",
)
# d max(a, b) / da: 1 where a wins, 0 where b wins, and 1/2 at a tie, as JAX (lax.max) splits it.
first_wins = ElementwiseFunction(
    "first_wins", "jnp.where({0} > {1}, 1.0, jnp.where({0} == {1}, 0.5, 0.0)).astype(dtype)",
    lambda a, b: [Zero._make(a.shape), Zero._make(b.shape)], arity=2,
)
maximum = ElementwiseFunction(
    "maximum", "jnp.maximum({0}, {1})", lambda a, b: [first_wins(a, b), first_wins(b, a)], arity=2,
    latex=r"\max\left({0}, {1}\right)",
)
minimum = ElementwiseFunction(
    "minimum", "jnp.minimum({0}, {1})", lambda a, b: [first_wins(b, a), first_wins(a, b)], arity=2,
    latex=r"\min\left({0}, {1}\right)",
)

erf = ElementwiseFunction(
    "erf", "lax.erf({0})", lambda u: [scale(exp(scale(power(2)(u), -1)), as_weight(2 / math.sqrt(math.pi), "erf"))],
    at_zero=0.0, latex=r"\operatorname{{erf}}\left({0}\right)",
)
# The standard normal's density and distribution function, phi and Phi. Both read
# z = -u / sqrt(2) as erfc does (Phi(u) = erfc(z) / 2, phi(u) = exp(-z^2) / sqrt(2 pi)):
# XLA then computes exp(-z^2) once for the two, as it does for jax.nn.gelu and its
# gradient (written exp(-u^2 / 2), the gelu gradient had one exponential more).
normal_density = ElementwiseFunction(
    "phi", "(0.3989422804014327 * jnp.exp(-lax.square({0} * -0.7071067811865476)))",
    lambda u: [scale(u * normal_density(u), -1)], at_zero=1 / math.sqrt(2 * math.pi), latex=r"\phi\left({0}\right)",
)
normal_cdf = ElementwiseFunction(
    "Phi", "(0.5 * lax.erfc({0} * -0.7071067811865476))", lambda u: [normal_density(u)],
    at_zero=0.5, latex=r"\Phi\left({0}\right)",
)
# Exact GELU, u Phi(u), as one function. Lowering computes it as that product
# (gelu_as_product), so a program with its gradient computes Phi(u) once, for the
# value and the derivative Phi(u) + u phi(u), as backpropagation through jax.nn.gelu
# does (as one call and its jax.grad, the GPT's loss and gradient had 1.17x JAX's FLOPs).
gelu = ElementwiseFunction(
    "gelu", "jax.nn.gelu({0}, approximate=False)", lambda u: [normal_cdf(u) + u * normal_density(u)], at_zero=0.0,
)


def gelu_as_product(t: Function) -> Expr | None:
    """``gelu(u)`` as ``u Phi(u)``, else None."""
    if t.spec is not gelu:
        return None
    (u,) = t.inputs
    return Product([u * normal_cdf(u)], edges=t.edges)


# GELU's tanh form, 0.5 u (1 + tanh(c (u + a u^3))), as one function (a GPT's GELU is one node)
_GELU_C, _GELU_A = math.sqrt(2 / math.pi), 0.044715


def _gelu_tanh_partials(u: Expr) -> list:
    t = tanh(_GELU_C * (u + _GELU_A * u ** 3))
    slope = _GELU_C * (1 + 3 * _GELU_A * u ** 2)
    return [0.5 * (1 + t) + 0.5 * (u * ((1 - t ** 2) * slope))]


gelu_tanh = ElementwiseFunction("gelu_tanh", "jax.nn.gelu({0}, approximate=True)", _gelu_tanh_partials, at_zero=0.0)
# where(m, a, b): a where the mask m is nonzero, else b; the mask is not differentiated
# (its partials are two indicator functions, not chosen and 1 - chosen: a sum would let the
# derivative be factored into -1e9 + chosen (g + 1e9), which loses g to cancellation)
chosen = ElementwiseFunction("chosen", "jnp.where({0} != 0, 1, 0).astype(dtype)", lambda m: [Zero._make(m.shape)])
not_chosen = ElementwiseFunction("not_chosen", "jnp.where({0} != 0, 0, 1).astype(dtype)", lambda m: [Zero._make(m.shape)])
where = ElementwiseFunction(
    "where", "jnp.where({0} != 0, {1}, {2})", lambda m, a, b: [Zero._make(m.shape), chosen(m), not_chosen(m)], arity=3,
)

# 1 where the two are equal, else 0 (F.one_hot); not differentiated
equal = ElementwiseFunction(
    "equal", "jnp.where({0} == {1}, 1, 0).astype(dtype)", lambda a, b: [Zero._make(a.shape), Zero._make(b.shape)], arity=2,
)

BUILTINS = (exp, log, tanh, sigmoid, step, relu, sign, abs_slope, abs_, softplus, sin, cos, log1p, expm1, first_wins, maximum,
            minimum, erf, normal_density, normal_cdf, gelu, gelu_tanh, chosen, not_chosen, where, equal)
