"""Hypothesis strategies for random tgjax expressions, and the helpers to check them.

Every edge name has one size everywhere (``EDGE_SIZE``), so any two generated
expressions can be combined: ``i`` and ``l`` have size ``I``, ``j`` and ``m``
size ``J``, ``k`` and ``n`` size ``K``. Renames only swap an edge with its
partner of the same size (``PARTNER``).

The oracle is ``tgjax._lower.reference.evaluate`` (one einsum per node); the
autodiff side differentiates that evaluator with ``jax.grad``/``jax.hessian``,
which is independent of tgjax's symbolic derivative rules.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import composite

import tgjax as tg
import tgjax.functions as F
from tgjax._lower.reference import evaluate

I, J, K = tg.symbols("i j k")
SIZES = {I: 3, J: 4, K: 2}
EDGE_SIZE = {"i": I, "l": I, "j": J, "m": J, "k": K, "n": K}
PARTNER = {"i": "l", "l": "i", "j": "m", "m": "j", "k": "n", "n": "k"}

x = tg.Variable("x", I)
y = tg.Variable("y", J)
z = tg.Variable("z", K)
A = tg.Variable("A", I, J)
B = tg.Variable("B", J, K)
S = tg.Variable("S", i=I, l=I)

VARIABLES = (x, y, z, A, B, S)
BY_NAME = {v.name: v for v in VARIABLES}

WEIGHTS = (2, -1, -3, 0.5, 3)

# Keep tensors small (at most this many free edges) so that evaluation stays cheap.
MAX_EDGES = 3


def shape_of(v: tg.Variable) -> tuple:
    return tuple(SIZES[s] for _, s in v.decl)


def values(seed: int = 0, variables=VARIABLES) -> dict:
    """Variable name -> float64 numpy array (standard normal), axes in declared edge order."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(shape_of(v)) for v in variables}


def ev(expr, vals) -> np.ndarray:
    """The reference value of ``expr`` (axes in ``expr.edges`` order) as a numpy array.

    Jitted as a whole: one compilation per expression is cheaper than one per
    distinct einsum node, and it computes the same thing.
    """
    arrays = {k: jnp.asarray(a) for k, a in vals.items()}
    return np.asarray(jax.jit(lambda vs: evaluate(expr, vs, sizes=SIZES))(arrays))


def scalarize(expr):
    """Sum over every free edge (a scalar expression)."""
    return F.sum(expr) if expr.edges else expr


def as_function_of(expr, v: tg.Variable, vals):
    """A plain JAX function: v's array -> expr's reference value, the other variables fixed."""
    fixed = {k: jnp.asarray(a) for k, a in vals.items()}

    def f(arr):
        return evaluate(expr, {**fixed, v.name: arr}, sizes=SIZES)

    return f


def assert_close(actual, expected, rtol=1e-9, atol=1e-9, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def rename_to_partners(expr, flips):
    """Rename each edge in ``flips`` to its partner; a partner that is also free is swapped back."""
    flips = set(flips) & set(expr.edges)
    for e in list(flips):
        if PARTNER[e] in expr.edges:
            flips.add(PARTNER[e])
    if not flips:
        return expr
    return expr.rename({e: PARTNER[e] for e in flips})


def _shrink(draw, expr):
    """Sum over free edges beyond MAX_EDGES (drawn which), so tensors stay small."""
    while len(expr.edges) > MAX_EDGES:
        e = draw(st.sampled_from(expr.edges))
        expr = F.sum(expr, e)
    return expr


@composite
def deltas(draw):
    """A structural tensor: the all-ones vector, or the identity matrix, written either as a
    two-legged Delta or as a three-legged one with its third leg summed."""
    e = draw(st.sampled_from(sorted(EDGE_SIZE)))
    legs = draw(st.sampled_from(((e,), (e, PARTNER[e]), (e, PARTNER[e], e + "3"))))
    return tg.Delta(EDGE_SIZE[e], *legs) if len(legs) < 3 else F.sum(tg.Delta(EDGE_SIZE[e], *legs), e + "3")


@composite
def leaves(draw, variables=VARIABLES, with_deltas=True):
    """A Variable with some edges renamed to their partners, or (rarely) a Delta."""
    if with_deltas and draw(st.integers(0, 7)) == 0:
        return draw(deltas())
    v = draw(st.sampled_from(variables))
    flips = draw(st.sets(st.sampled_from(v.edges)))
    return rename_to_partners(v, flips)


UNARY = ("neg", "weight", "rename", "sum", "tanh", "exp_tanh", "pow", "log1p_sq", "log_exp", "sigmoid")
BINARY = ("matmul", "mul", "add", "sub", "div")


@composite
def expressions(draw, max_depth: int = 3, variables=VARIABLES):
    """A random expression over ``variables``, well defined (finite, smooth) for standard normal data.

    Unary steps: negation, scalar weights, renames, F.sum over an edge, F.tanh,
    F.exp(F.tanh(u)), F.pow(u, 2 or 3), F.log(1 + u**2), F.log(F.exp(u)) for
    shallow u, F.sigmoid. Binary steps: @, *, +, -, and u / (1 + v**2).
    """
    if max_depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(leaves(variables))
    if draw(st.booleans()):
        op = draw(st.sampled_from(UNARY))
        u = draw(expressions(max_depth - 1, variables))
        if op == "neg":
            return -u
        if op == "weight":
            return draw(st.sampled_from(WEIGHTS)) * u
        if op == "rename":
            if not u.edges:
                return u
            return rename_to_partners(u, draw(st.sets(st.sampled_from(u.edges), min_size=1)))
        if op == "sum":
            if not u.edges:
                return u
            return F.sum(u, draw(st.sampled_from(u.edges)))
        if op == "tanh":
            return F.tanh(u)
        if op == "exp_tanh":
            return F.exp(F.tanh(u))
        if op == "pow":
            return F.pow(u, draw(st.sampled_from((2, 3))))
        if op == "log1p_sq":
            return F.log(1 + F.pow(u, 2))
        if op == "log_exp":
            # exp of a deep expression may overflow; keep its argument shallow
            w = draw(leaves(variables, with_deltas=False)) if max_depth > 2 else u
            return F.log(F.exp(w))
        if op == "sigmoid":
            return F.sigmoid(u)
        raise AssertionError(op)
    op = draw(st.sampled_from(BINARY))
    a = draw(expressions(max_depth - 1, variables))
    b = draw(expressions(max_depth - 1, variables))
    if op == "matmul":
        result = a @ b
    elif op == "mul":
        result = a * b
    elif op == "add":
        result = a + b
    elif op == "sub":
        result = a - b
    elif op == "div":
        result = a / (1 + F.pow(b, 2))
    else:
        raise AssertionError(op)
    return _shrink(draw, result)


@composite
def scalar_expressions(draw, max_depth: int = 3, variables=VARIABLES):
    """A random scalar expression: a random expression summed over all its edges."""
    return scalarize(draw(expressions(max_depth, variables)))


seeds = st.integers(0, 2**16)


def jax_grad(expr, v, vals):
    """jax.grad of the reference evaluation of scalar ``expr`` with respect to ``v``'s array."""
    return np.asarray(jax.jit(jax.grad(as_function_of(expr, v, vals)))(jnp.asarray(vals[v.name])))


def jax_hessian(expr, v, vals):
    """jax.hessian of the reference evaluation of scalar ``expr`` with respect to ``v``'s array."""
    return np.asarray(jax.jit(jax.hessian(as_function_of(expr, v, vals)))(jnp.asarray(vals[v.name])))


def jax_third(expr, v, vals):
    """The third derivative: jax.jacfwd of jax.hessian of the reference evaluation."""
    return np.asarray(jax.jit(jax.jacfwd(jax.hessian(as_function_of(expr, v, vals))))(jnp.asarray(vals[v.name])))
