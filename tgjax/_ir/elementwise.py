"""Elementwise function specifications: what each computes and its derivative rule.

A ``FunctionSpec`` is pure data plus two callables: ``apply`` (the JAX
implementation on arrays) and ``partials`` (the symbolic partial derivative
with respect to each input, as expressions with the input's edges). The
derivative pass multiplies these elementwise with the inputs' derivatives.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import sympy

from .nodes import Expr, Function, Zero, broadcast_to, ones, scale, _merge_shapes
from .util import as_weight


@dataclass(frozen=True, eq=False)
class FunctionSpec:
    name: str
    apply: Callable = field(repr=False)
    partials: Callable = field(repr=False)
    params: tuple = ()
    # f(0), when exact and finite: lets simplify fold f(Zero).
    at_zero: float | None = None

    @property
    def key(self):
        return (self.name, tuple(str(p) for p in self.params))

    def __call__(self, *inputs: Expr) -> Expr:
        return apply(self, *inputs)


def apply(spec: FunctionSpec, *inputs: Expr) -> Function:
    """``spec`` applied elementwise; inputs are broadcast to their union of edges."""
    shape = _merge_shapes([u._shape for u in inputs], f"{spec.name}(...)")
    order = []
    for u in inputs:
        order.extend(e for e in u.edges if e not in order)
    return Function(spec, [broadcast_to(u, shape, order=None) for u in inputs], edges=order)


def _ones_like(u: Expr) -> Expr:
    return ones(u.shape)


# -- the specs -----------------------------------------------------------------

exp = FunctionSpec("exp", jnp.exp, lambda u: [exp(u)], at_zero=1.0)
log = FunctionSpec("log", jnp.log, lambda u: [power(-1)(u)])
tanh = FunctionSpec("tanh", jnp.tanh, lambda u: [_ones_like(u) - power(2)(tanh(u))], at_zero=0.0)
sigmoid = FunctionSpec(
    "sigmoid", jax.nn.sigmoid, lambda u: [sigmoid(u) * (_ones_like(u) - sigmoid(u))], at_zero=0.5
)
step = FunctionSpec("step", lambda x: jnp.where(x > 0, 1.0, 0.0).astype(x.dtype), lambda u: [Zero._make(u.shape)], at_zero=0.0)
relu = FunctionSpec("relu", jax.nn.relu, lambda u: [step(u)], at_zero=0.0)
sign = FunctionSpec("sign", jnp.sign, lambda u: [Zero._make(u.shape)], at_zero=0.0)
abs_ = FunctionSpec("abs", jnp.abs, lambda u: [sign(u)], at_zero=0.0)
softplus = FunctionSpec("softplus", jax.nn.softplus, lambda u: [sigmoid(u)])


def _pow_apply(k):
    if k == sympy.Rational(1, 2):
        return jnp.sqrt
    if k == -1:
        return jnp.reciprocal
    if k == sympy.Rational(-1, 2):
        return jax.lax.rsqrt
    if k.is_Integer and 0 < int(k) <= 4:
        return functools.partial(jax.lax.integer_pow, y=int(k))
    if k.is_Integer:
        return lambda x: x ** int(k)
    return lambda x: jnp.power(x, float(k))


@functools.lru_cache(maxsize=None)
def power(k) -> FunctionSpec:
    """The spec of ``x ** k`` for a sympy number ``k``."""
    k = sympy.nsimplify(k) if isinstance(k, float) and float(k).is_integer() else sympy.sympify(k)

    def partials(u):
        if k - 1 == 0:
            return [scale(_ones_like(u), k)]
        if k - 1 == 1:
            return [scale(u, k)]
        return [scale(power(k - 1)(u), k)]

    at_zero = 0.0 if (k.is_positive) else (1.0 if k == 0 else None)
    return FunctionSpec("pow", _pow_apply(k), partials, params=(k,), at_zero=at_zero)


def raised(t: Expr, k, where: str) -> Function:
    """``t ** k`` elementwise, for a scalar exponent given by the user (``F.pow``, ``**``, ``/``).

    Floats that are whole numbers, or simple fractions, become exact
    exponents, so that powers merge and print exactly.
    """
    if isinstance(k, Expr):
        raise TypeError(f"{where}: the exponent must be a scalar number; for a tensor exponent write F.exp(k * F.log(t)).")
    k = as_weight(k, where)
    if isinstance(k, sympy.Float) and k == int(k):
        k = sympy.Integer(int(k))
    elif isinstance(k, sympy.Float):
        k = sympy.nsimplify(k, rational=True) if sympy.nsimplify(k, rational=True).q <= 16 else k
    return power(k)(t)


def exponent(spec: FunctionSpec):
    """``k`` for the spec of ``x ** k``, else None."""
    return spec.params[0] if spec.name == "pow" else None
