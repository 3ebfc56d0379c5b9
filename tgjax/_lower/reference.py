"""A small, obviously correct evaluator: one ``jnp.einsum`` per node, no cleverness.

It is the oracle the tests compare every later stage against; it is not the
fast path (that is ``tg.lower``). A Derivative node is evaluated with
``jax.jacrev`` of its inner expression, independently of the symbolic rules.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import sympy

from .._ir.nodes import AlongEdge, Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero
from .._ir.sizes import complete_sizes, convolution_triples
from .._ir.util import EinsumLetters
from . import runtime


def bind_sizes(t: Expr, values: dict, sizes: dict | None = None) -> dict:
    """Symbol -> int for every size symbol, read from the arrays bound to the variables."""
    env = {sympy.Symbol(str(k)) if not isinstance(k, sympy.Basic) else k: int(v) for k, v in (sizes or {}).items()}
    for v in t.variables():
        array = values[v.name]
        for (e, size), n in zip(v.decl, jnp.shape(array)):
            if size.is_Symbol:
                env.setdefault(size, int(n))
    return complete_sizes(env, convolution_triples([t]), "evaluate")


def evaluate(t: Expr, values: dict, sizes: dict | None = None):
    """The array of ``t`` with axes in ``t.edges`` order. ``values``: variable name -> array."""
    values = {(k.name if isinstance(k, Variable) else k): jnp.asarray(v) for k, v in values.items()}
    env = bind_sizes(t, values, sizes)
    return _eval(t, values, env)


def _size(s, env) -> int:
    return int(sympy.sympify(s).subs(env))


def _weight(w, env) -> float:
    value = sympy.sympify(w).subs(env)
    if not value.is_finite:  # 1/0 from a mean over an empty edge: nan, as jnp.mean gives
        return {sympy.oo: float("inf"), -sympy.oo: float("-inf")}.get(value, float("nan"))
    return float(value)


def _dtype(values):
    dtypes = [v.dtype for v in values.values() if jnp.issubdtype(v.dtype, jnp.floating)]
    return jnp.result_type(*dtypes) if dtypes else jnp.result_type(float)


@functools.singledispatch
def _eval(t: Expr, values, env):
    raise NotImplementedError(f"reference evaluator: no rule for node type {type(t).__name__}")


@_eval.register
def _(t: Variable, values, env):
    array = values[t.name]
    # the array's axes are the declared edges; permute to the current edge order
    return array  # current edges are the declared ones, renamed in place


@_eval.register
def _(t: Convolution, values, env):
    # the oracle may build the dense indicator; the compiler never does
    n, k, m = (_size(t._shape[e], env) for e in t.edges)
    i, j, o = jnp.indices((n, k, m))
    return (i == j + o).astype(_dtype(values))


@_eval.register
def _(t: Delta, values, env):
    n = _size(t.size, env)
    dtype = _dtype(values)
    k = len(t.edges)
    if k == 0:
        return jnp.asarray(n, dtype)
    if k == 1:
        return jnp.ones(n, dtype)
    grid = jnp.indices((n,) * k)
    return jnp.all(grid == grid[0], axis=0).astype(dtype)


@_eval.register
def _(t: Zero, values, env):
    return jnp.zeros(tuple(_size(t._shape[e], env) for e in t.edges), _dtype(values))


@_eval.register
def _(t: Product, values, env):
    if not t.factors:
        return jnp.asarray(1, _dtype(values))
    letters = EinsumLetters()
    for f in t.factors:
        for e in f.edges:
            letters.of(e)
    spec = ",".join("".join(letters[e] for e in f.edges) for f in t.factors)
    spec += "->" + "".join(letters[e] for e in t.edges)
    return jnp.einsum(spec, *(_eval(f, values, env) for f in t.factors))


def _aligned(u: Expr, order, values, env):
    array = _eval(u, values, env)
    return jnp.transpose(array, [u.edges.index(e) for e in order]) if u.edges else array


@_eval.register
def _(t: Sum, values, env):
    return functools.reduce(
        jnp.add, (_weight(w, env) * _aligned(u, t.edges, values, env) for w, u in zip(t.weights, t.terms))
    )


@_eval.register
def _(t: Function, values, env):
    inputs = [_aligned(u, t.edges, values, env) for u in t.inputs]
    return runtime.elementwise_callable(t.spec, len(inputs))(*inputs)


@_eval.register
def _(t: Derivative, values, env):
    x = t.x

    def inner(array):
        return _eval(t.expr, {**values, x.name: array}, env)

    return jax.jacrev(inner)(values[x.name])


@_eval.register
def _(t: AlongEdge, values, env):
    array = _eval(t.input, values, env)
    out = runtime.along_callable(t.spec, tuple(t.input.edges.index(a) for a in t.axes))(array)
    natural = t.input.edges if t.spec.keeps_edge else tuple(e for e in t.input.edges if e not in t.axes)
    return jnp.transpose(out, [natural.index(e) for e in t.edges]) if t.edges else out
