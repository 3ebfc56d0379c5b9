"""A catalogue of matrix-calculus identities (Matrix Cookbook style).

Each case is a tgjax expression ``f``, the Variable(s) it is differentiated
with respect to (repeated for Hessians and third derivatives, or a tuple for
mixed partials), the known closed form written with tgjax operators, and the
edges the derivative must have (API.md: ``f``'s edges, then one new edge per
edge of ``x``, with ``_`` appended while the name is taken). Every case is
checked two ways (STYLE.md, "Tests"):

- symbolically: ``f.grad(x)...simplify() == closed.simplify()``;
- numerically, in float64: the reference evaluation of the derivative (before
  and after ``simplify``) and of the closed form against ``jax.jacrev`` of a
  plain-``jnp`` version of ``f``.

Closed forms are written the way the product and chain rules factor them.
Where a natural closed form has equal values but another normal form, the
symbolic check compares ``.expand()`` of both sides instead (``equal_by_expand``
says why the normal forms differ). Sizes differ per edge symbol, so a
transposed result cannot pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._lower.reference import evaluate

i, j, k, b, n = tg.symbols("i j k b n")
SIZES = {i: 3, j: 4, k: 5, b: 6, n: 4}
RTOL = 1e-10
ATOL = 1e-12
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# -- variables (edges named after their size symbols unless square) ----------
x = tg.Variable("x", i)
y = tg.Variable("y", j)
a = tg.Variable("a", i)
c = tg.Variable("c", j)
A = tg.Variable("A", i, j)
S = tg.Variable("S", i=i, i_=i)  # square: edges i, i_
St = S.rename(i="i_", i_="i")  # its transpose
X = tg.Variable("X", b, i)  # data: b rows, i features
W = tg.Variable("W", i, k)
Y = tg.Variable("Y", b, k)
w = tg.Variable("w", i)
M = tg.Variable("M", i, j)  # a matrix variable for bilinear forms
T = tg.Variable("T", i=n, j=n, k=n)  # a cubic form
z = tg.Variable("z", i=n)
P = tg.Variable("P", p=n, q=n)  # square, for the chain u^T P B P v
B = tg.Variable("B", q=n, r=n)
u = tg.Variable("u", p=n)
v = tg.Variable("v", s=n)

ones_i = tg.Delta(i, "i")
I_i = tg.Delta(i, "i", "i_")


@dataclass
class Case:
    id: str
    f: tg.Expr
    wrt: tg.Variable | tuple  # a tuple of Variables: mixed partials, in that order
    closed: tg.Expr
    edges: tuple
    jf: Callable  # plain jnp version of f: dict name -> array  ->  array with axes in f.edges order
    order: int = 1
    positive: bool = False  # data drawn from (0.5, 1.5), for log and fractional powers
    equal_by_expand: str | None = None


CASES = [
    # -- linear forms ---------------------------------------------------------
    Case("a.x", a @ x, x, a, ("i",), lambda d: d["a"] @ d["x"]),
    Case("x.a", x @ a, x, a, ("i",), lambda d: d["x"] @ d["a"]),
    Case("F.dot(a,x)", F.dot(a, x, "i"), x, a, ("i",), lambda d: jnp.dot(d["a"], d["x"])),
    Case("sum(x)", F.sum(x), x, ones_i, ("i",), lambda d: jnp.sum(d["x"])),
    Case("mean(x)", F.mean(x), x, ones_i / i, ("i",), lambda d: jnp.mean(d["x"])),
    # -- quadratic and bilinear forms ------------------------------------------
    Case(
        "x.S.x grad",
        x @ S @ x.rename(i="i_"),
        x,
        S @ x.rename(i="i_") + St @ x.rename(i="i_"),
        ("i",),
        lambda d: d["x"] @ d["S"] @ d["x"],
    ),
    Case(
        "x.S.x hessian",
        x @ S @ x.rename(i="i_"),
        x,
        S + St,
        ("i", "i_"),
        lambda d: d["x"] @ d["S"] @ d["x"],
        order=2,
    ),
    Case("x.x grad", x @ x, x, 2 * x, ("i",), lambda d: d["x"] @ d["x"]),
    Case("x.x hessian", x @ x, x, 2 * I_i, ("i", "i_"), lambda d: d["x"] @ d["x"], order=2),
    Case("frobenius2(x) grad", F.frobenius2(x), x, 2 * x, ("i",), lambda d: jnp.sum(d["x"] ** 2)),
    Case("a.M.c wrt M", a @ M @ c, M, a * c, ("i", "j"), lambda d: d["a"] @ d["M"] @ d["c"]),
    Case("a.A.y wrt y", a @ A @ y, y, a @ A, ("j",), lambda d: d["a"] @ d["A"] @ d["y"]),
    # -- least squares -----------------------------------------------------------
    Case(
        "||Ay-a||^2 grad",
        F.frobenius2(A @ y - a),
        y,
        2 * ((A @ y - a) @ A),
        ("j",),
        lambda d: jnp.sum((d["A"] @ d["y"] - d["a"]) ** 2),
    ),
    Case(
        "||Ay-a||^2 hessian",
        F.frobenius2(A @ y - a),
        y,
        2 * (A @ A.rename(j="j_")),
        ("j", "j_"),
        lambda d: jnp.sum((d["A"] @ d["y"] - d["a"]) ** 2),
        order=2,
    ),
    Case(
        "||XW-Y||^2 wrt W",
        F.frobenius2(X @ W - Y),
        W,
        2 * (X @ (X @ W - Y)),
        ("i", "k"),
        lambda d: jnp.sum((d["X"] @ d["W"] - d["Y"]) ** 2),
    ),
    Case(
        "||XW-Y||^2 wrt X",
        F.frobenius2(X @ W - Y),
        X,
        2 * ((X @ W - Y) @ W),
        ("b", "i"),
        lambda d: jnp.sum((d["X"] @ d["W"] - d["Y"]) ** 2),
    ),
    Case(
        "||XW-Y||^2 hessian wrt W",
        F.frobenius2(X @ W - Y),
        W,
        2 * ((X @ X.rename(i="i_")) * tg.Delta(k, "k", "k_")),
        ("i", "k", "i_", "k_"),
        lambda d: jnp.sum((d["X"] @ d["W"] - d["Y"]) ** 2),
        order=2,
    ),
    Case(
        "||XW-Y||^2 hessian wrt X",
        F.frobenius2(X @ W - Y),
        X,
        2 * (tg.Delta(b, "b", "b_") * (W @ W.rename(i="i_"))),
        ("b", "i", "b_", "i_"),
        lambda d: jnp.sum((d["X"] @ d["W"] - d["Y"]) ** 2),
        order=2,
    ),
    # -- traces ---------------------------------------------------------------
    Case(
        "tr(M N) wrt M",
        M @ tg.Variable("N", j, i),
        M,
        tg.Variable("N", j, i),
        ("i", "j"),
        lambda d: jnp.trace(d["M"] @ d["N"]),
    ),
    Case(
        "tr(S) = sum(S * I)",
        F.sum(S * I_i),
        S,
        I_i,
        ("i", "i_"),
        lambda d: jnp.trace(d["S"]),
    ),
    Case(
        "tr(G A^T W) wrt W",
        tg.Variable("G", k, j) @ A @ W,  # every edge contracted
        W,
        tg.Variable("G", k, j) @ A,
        ("i", "k"),
        lambda d: jnp.trace(d["G"] @ d["A"].T @ d["W"]),
    ),
    Case(
        "tr(X S X^T) wrt X",
        X @ S @ X.rename(i="i_"),
        X,
        X.rename(i="i_") @ S + X.rename(i="i_") @ St,
        ("b", "i"),
        lambda d: jnp.trace(d["X"] @ d["S"] @ d["X"].T),
    ),
    Case("tr(X^T X) wrt X", X @ X, X, 2 * X, ("b", "i"), lambda d: jnp.trace(d["X"].T @ d["X"])),
    # -- chains of products ------------------------------------------------------
    Case(
        "u^T P B P v wrt P",
        u @ P @ B @ P.rename(p="r", q="s") @ v,
        P,
        # v factored out of both terms: equal in value, but grad differentiates
        # the flattened normal form, whose product rule gives two separate networks
        (u * (B @ P.rename(p="r", q="s")) + (u @ P @ B).rename(r="p") * tg.Delta(n, "s", "q")) @ v,
        ("p", "q"),
        lambda d: d["u"] @ d["P"] @ d["B"] @ d["P"] @ d["v"],
        equal_by_expand="simplifier: does not factor v out of the product rule's two terms",
    ),
    Case(
        "u^T P B P v wrt P, expanded",
        u @ P @ B @ P.rename(p="r", q="s") @ v,
        P,
        u * (B @ P.rename(p="r", q="s") @ v) + (u @ P @ B).rename(r="p") * v.rename(s="q"),
        ("p", "q"),
        lambda d: d["u"] @ d["P"] @ d["B"] @ d["P"] @ d["v"],
    ),
    Case(
        "d(Xw)/dX",
        X @ w,
        X,
        tg.Delta(b, "b", "b_") * w,
        ("b", "b_", "i"),
        lambda d: d["X"] @ d["w"],
    ),
    Case("d(Ay)/dy", A @ y, y, A, ("i", "j"), lambda d: d["A"] @ d["y"]),
    # -- elementwise functions inside products -----------------------------------------
    Case(
        "sum(tanh(Ay))",
        F.sum(F.tanh(A @ y)),
        y,
        (ones_i - F.tanh(A @ y) ** 2) @ A,
        ("j",),
        lambda d: jnp.sum(jnp.tanh(d["A"] @ d["y"])),
    ),
    Case(
        "d tanh(Ay)/dy",
        F.tanh(A @ y),
        y,
        (ones_i - F.tanh(A @ y) ** 2) * A,
        ("i", "j"),
        lambda d: jnp.tanh(d["A"] @ d["y"]),
    ),
    Case("sum(exp(x)) grad", F.sum(F.exp(x)), x, F.exp(x), ("i",), lambda d: jnp.sum(jnp.exp(d["x"]))),
    Case(
        "sum(exp(x)) hessian",
        F.sum(F.exp(x)),
        x,
        F.exp(x) * I_i,
        ("i", "i_"),
        lambda d: jnp.sum(jnp.exp(d["x"])),
        order=2,
    ),
    Case(
        "a^T exp(M) c wrt M",
        a @ F.exp(M) @ c,
        M,
        (a * c) * F.exp(M),
        ("i", "j"),
        lambda d: d["a"] @ jnp.exp(d["M"]) @ d["c"],
    ),
    Case(
        "sum(log(x)) grad",
        F.sum(F.log(x)),
        x,
        x**-1,
        ("i",),
        lambda d: jnp.sum(jnp.log(d["x"])),
        positive=True,
    ),
    Case(
        "sum(log(x)) hessian",
        F.sum(F.log(x)),
        x,
        -(x**-2) * I_i,
        ("i", "i_"),
        lambda d: jnp.sum(jnp.log(d["x"])),
        order=2,
        positive=True,
    ),
    Case(
        "logsumexp grad is softmax",
        F.log(F.sum(F.exp(x))),
        x,
        # log(sum(exp(x))) is rewritten to logsumexp, whose gradient is the stable softmax
        F.softmax(x, "i"),
        ("i",),
        lambda d: jax.scipy.special.logsumexp(d["x"]),
    ),
    Case(
        "log(x.S.x)",
        F.log(x @ S @ x.rename(i="i_")),
        x,
        (S @ x.rename(i="i_") + St @ x.rename(i="i_")) * (x @ S @ x.rename(i="i_")) ** -1,
        ("i",),
        lambda d: jnp.log(d["x"] @ d["S"] @ d["x"]),
        positive=True,
    ),
    Case("sum(x^3) grad", F.sum(x**3), x, 3 * x**2, ("i",), lambda d: jnp.sum(d["x"] ** 3)),
    Case(
        "sum(x^3) hessian", F.sum(x**3), x, 6 * x * I_i, ("i", "i_"), lambda d: jnp.sum(d["x"] ** 3), order=2
    ),
    Case(
        "sum(x^-2) grad", F.sum(x**-2), x, -2 * x**-3, ("i",), lambda d: jnp.sum(d["x"] ** -2), positive=True
    ),
    Case(
        "sum(x^1.5) grad",
        F.sum(F.pow(x, 1.5)),
        x,
        1.5 * F.pow(x, 0.5),
        ("i",),
        lambda d: jnp.sum(d["x"] ** 1.5),
        positive=True,
    ),
    Case(
        "sum(sqrt(x)) grad",
        F.sum(F.sqrt(x)),
        x,
        0.5 * x ** -0.5,
        ("i",),
        lambda d: jnp.sum(jnp.sqrt(d["x"])),
        positive=True,
    ),
    Case(
        "||x|| grad",
        F.sqrt(F.frobenius2(x)),
        x,
        x * F.frobenius2(x) ** -0.5,
        ("i",),
        lambda d: jnp.linalg.norm(d["x"]),
    ),
    Case(
        "(x.x)^(-1/2) grad",
        F.pow(x @ x, -0.5),
        x,
        -(x * F.pow(x @ x, -1.5)),
        ("i",),
        lambda d: (d["x"] @ d["x"]) ** -0.5,
    ),
    Case(
        "sum of row norms of X",
        F.sum(F.sqrt(F.dot(X, X, "i"))),
        X,
        X * F.dot(X, X, "i") ** -0.5,
        ("b", "i"),
        lambda d: jnp.sum(jnp.linalg.norm(d["X"], axis=1)),
    ),
    Case(
        "sum(sigmoid(x)) grad",
        F.sum(F.sigmoid(x)),
        x,
        F.sigmoid(x) * (ones_i - F.sigmoid(x)),
        ("i",),
        lambda d: jnp.sum(jax.nn.sigmoid(d["x"])),
    ),
    Case(
        "logistic loss grad",
        F.sum(F.softplus(X @ w)),
        w,
        F.sigmoid(X @ w) @ X,
        ("i",),
        lambda d: jnp.sum(jax.nn.softplus(d["X"] @ d["w"])),
    ),
    Case(
        "logistic loss hessian",
        F.sum(F.softplus(X @ w)),
        w,
        (F.sigmoid(X @ w) * (1 - F.sigmoid(X @ w))) * X @ X.rename(i="i_"),
        ("i", "i_"),
        lambda d: jnp.sum(jax.nn.softplus(d["X"] @ d["w"])),
        order=2,
    ),
    # -- reductions over some edges ------------------------------------------------
    Case(
        "||column sums of X||^2",
        F.frobenius2(F.sum(X, "b")),
        X,
        2 * (F.sum(X, "b") * tg.Delta(b, "b")),
        ("b", "i"),
        lambda d: jnp.sum(jnp.sum(d["X"], axis=0) ** 2),
    ),
    Case(
        "mean(X^2) over b, summed",
        F.sum(F.mean(X**2, "b")),
        X,
        (2 / b) * X,
        ("b", "i"),
        lambda d: jnp.sum(jnp.mean(d["X"] ** 2, axis=0)),
    ),
    Case("mean(x^2)", F.mean(x**2), x, (2 / i) * x, ("i",), lambda d: jnp.mean(d["x"] ** 2)),
    Case(
        "F.dot(A, M, 'j') summed, wrt M",
        F.sum(F.dot(A, M, "j")),
        M,
        A,
        ("i", "j"),
        lambda d: jnp.sum(d["A"] * d["M"]),
    ),
    # -- elementwise products and quotients ------------------------------------------
    Case("d(x*x)/dx", x * x, x, 2 * x * I_i, ("i", "i_"), lambda d: d["x"] * d["x"]),
    Case(
        "d(x/x)/dx",
        x / x,
        x,
        tg.Zero({"i": i, "i_": i}),
        ("i", "i_"),
        lambda d: d["x"] / d["x"],
        positive=True,
    ),
    Case("d(x*a)/dx", x * a, x, a * I_i, ("i", "i_"), lambda d: d["x"] * d["a"]),
    Case(
        "d(a/x)/dx", a / x, x, -(a * x**-2) * I_i, ("i", "i_"), lambda d: d["a"] / d["x"], positive=True
    ),
    Case(
        "sum(x^(1/3)) grad",
        F.sum(x ** (1 / 3)),
        x,
        (1 / 3) * x ** (-2 / 3),
        ("i",),
        lambda d: jnp.sum(d["x"] ** (1 / 3)),
        positive=True,
    ),
    Case("sum(x^-1) grad", F.sum(x**-1), x, -(x**-2), ("i",), lambda d: jnp.sum(1 / d["x"]), positive=True),
    Case("F.pow(x, 2.0) grad", F.sum(F.pow(x, 2.0)), x, 2 * x, ("i",), lambda d: jnp.sum(d["x"] ** 2)),
    Case(
        "exp(a.x) grad",
        F.exp(a @ x),
        x,
        F.exp(a @ x) * a,
        ("i",),
        lambda d: jnp.exp(d["a"] @ d["x"]),
    ),
    Case(
        "sum(tanh(X)) hessian wrt matrix",
        F.sum(F.tanh(X)),
        X,
        -2 * F.tanh(X) * (1 - F.tanh(X) ** 2) * tg.Delta(b, "b", "b_") * tg.Delta(i, "i", "i_"),
        ("b", "i", "b_", "i_"),
        lambda d: jnp.sum(jnp.tanh(d["X"])),
        order=2,
    ),
    Case("tr(S S) grad", S @ St, S, 2 * St, ("i", "i_"), lambda d: jnp.trace(d["S"] @ d["S"])),
    Case(
        "d(S^T)/dS: new names step around i and i_",
        St,
        S,
        tg.Delta(i, "i_", "i__") * tg.Delta(i, "i", "i___"),
        ("i_", "i", "i__", "i___"),
        lambda d: d["S"],  # renaming relabels the axes in place: the array is S's own
    ),
    Case(
        "x.S^T.x hessian",
        x @ St @ x.rename(i="i_"),
        x,
        S + St,
        ("i", "i_"),
        lambda d: d["x"] @ d["S"].T @ d["x"],
        order=2,
    ),
    Case(
        "softmax jacobian",
        F.exp(x) / F.sum(F.exp(x)),
        x,
        F.exp(x) * I_i * F.sum(F.exp(x)) ** -1 - F.exp(x) * F.exp(x).rename(i="i_") * F.sum(F.exp(x)) ** -2,
        ("i", "i_"),
        lambda d: jax.nn.softmax(d["x"]),
    ),
    # -- mixed partials -------------------------------------------------------------
    Case(
        "a.A.y d/dA d/dy",
        a @ A @ y,
        (A, y),
        a * tg.Delta(j, "j", "j_"),
        ("i", "j", "j_"),
        lambda d: d["a"] @ d["A"] @ d["y"],
    ),
    Case(
        "||XW-Y||^2 d/dW d/dX",
        F.frobenius2(X @ W - Y),
        (W, X),
        2 * (I_i * (X @ W - Y)) + 2 * (X * W.rename(i="i_")),
        ("i", "k", "b", "i_"),
        lambda d: jnp.sum((d["X"] @ d["W"] - d["Y"]) ** 2),
    ),
    # -- equal values, other normal forms: the simplifier neither expands nor factors --
    Case(
        "x.S.x grad as (S + S^T) x",
        x @ S @ x.rename(i="i_"),
        x,
        (S + St) @ x.rename(i="i_"),
        ("i",),
        lambda d: d["x"] @ d["S"] @ d["x"],
        equal_by_expand="simplifier: does not factor S x + S^T x into (S + S^T) x (nor expand the latter)",
    ),
    Case(
        "sum(sigmoid(x)) grad as s - s^2",
        F.sum(F.sigmoid(x)),
        x,
        F.sigmoid(x) - F.sigmoid(x) ** 2,
        ("i",),
        lambda d: jnp.sum(jax.nn.sigmoid(d["x"])),
        equal_by_expand="simplifier: keeps s (1 - s) as a product with a sum factor; does not expand it to s - s^2",
    ),
    Case(
        "||Ay-a||^2 grad expanded",
        F.frobenius2(A @ y - a),
        y,
        2 * (A @ A.rename(j="j_") @ y.rename(j="j_")) - 2 * (a @ A),
        ("j",),
        lambda d: jnp.sum((d["A"] @ d["y"] - d["a"]) ** 2),
        equal_by_expand="simplifier: keeps 2 A^T (A y - a) factored; does not expand it to 2 A^T A y - 2 A^T a",
    ),
    # -- third derivatives -------------------------------------------------------
    Case(
        "sum(x^4) third",
        F.sum(x**4),
        x,
        24 * x * tg.Delta(i, "i", "i_", "i__"),
        ("i", "i_", "i__"),
        lambda d: jnp.sum(d["x"] ** 4),
        order=3,
    ),
    Case(
        "sum(log(x)) third",
        F.sum(F.log(x)),
        x,
        2 * x**-3 * tg.Delta(i, "i", "i_", "i__"),
        ("i", "i_", "i__"),
        lambda d: jnp.sum(jnp.log(d["x"])),
        order=3,
        positive=True,
    ),
    Case(
        "cubic form T(z,z,z) third",
        T @ z @ z.rename(i="j") @ z.rename(i="k"),
        z,
        sum(
            (T.rename(i=p, j=q, k=r) for p, q, r in itertools.permutations(("i", "i_", "i__"))),
            start=tg.Zero({"i": n, "i_": n, "i__": n}),
        ),
        ("i", "i_", "i__"),
        lambda d: jnp.einsum("ijk,i,j,k->", d["T"], d["z"], d["z"], d["z"]),
        order=3,
    ),
]


def _random_values(*exprs, positive=False) -> dict:
    """Random float64 arrays for every variable of ``exprs``, laid out in declared edge order."""
    rng = np.random.RandomState(20240611)
    values = {}
    for var in (v for t in exprs for v in t.variables()):
        if var.name in values:
            continue
        shape = tuple(int(s.subs(SIZES)) for _, s in var.decl)
        array = rng.uniform(0.5, 1.5, shape) if positive else rng.normal(size=shape)
        values[var.name] = jnp.asarray(array, dtype=jnp.float64)
    return values


def _values(case: Case) -> dict:
    return _random_values(case.f, case.closed, positive=case.positive)


def _wrt(case: Case) -> tuple:
    return case.wrt if isinstance(case.wrt, tuple) else (case.wrt,) * case.order


def _derivative(case: Case) -> tg.Expr:
    d = case.f
    for var in _wrt(case):
        d = d.grad(var)
    return d


def _autodiff(case: Case, values: dict):
    """jax.jacrev once per variable in ``_wrt(case)``: axes are f's, then each variable's in turn."""

    def differentiate(g, name):
        return lambda vals: jax.jacrev(lambda array: g({**vals, name: array}))(vals[name])

    g = case.jf
    for var in _wrt(case):
        g = differentiate(g, var.name)
    return g(values)


def _aligned(array, edges, order):
    return jnp.transpose(array, [edges.index(e) for e in order]) if edges else array


def _close(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL)


IDS = [case.id for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_edges(case):
    d = _derivative(case)
    assert d.edges == case.edges
    assert d.simplify().edges == case.edges
    assert set(case.closed.edges) == set(case.edges), "the closed form in the catalogue has the wrong edges"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_numeric(case):
    values = _values(case)
    d = _derivative(case)
    simple = d.simplify()

    # One compiled program per case, without XLA's optimisation passes:
    # compilation, not arithmetic, dominates the run time.
    def run(vals):
        return {
            "f": evaluate(case.f, vals, sizes=SIZES),
            "jf": case.jf(vals),
            "derivative": evaluate(d, vals, sizes=SIZES),
            "simplified": evaluate(simple, vals, sizes=SIZES),
            "closed": _aligned(evaluate(case.closed, vals, sizes=SIZES), case.closed.edges, d.edges),
            "autodiff": _autodiff(case, vals),
        }

    out = jax.jit(run).lower(values).compile(compiler_options=FAST_COMPILE)(values)
    _close(out["f"], out["jf"])  # f and its plain-jnp twin agree
    _close(out["derivative"], out["autodiff"])
    _close(out["simplified"], out["autodiff"])
    _close(out["closed"], out["autodiff"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivative_symbolic(case):
    d = _derivative(case)
    if case.equal_by_expand:
        # simplify keeps each side factored its own way; expand multiplies both out
        assert d.simplify() != case.closed.simplify(), "now equal in normal form: drop equal_by_expand"
        assert d.expand() == case.closed.expand()
    else:
        assert d.simplify() == case.closed.simplify()


def test_tgjax_derivative_node_matches_grad():
    """The unevaluated ``tg.Derivative`` simplifies to what ``grad`` gives, nested too."""
    f = x @ S @ x.rename(i="i_")
    d = tg.Derivative(f, x)
    assert d.edges == ("i",)
    assert d.simplify() == f.grad(x).simplify()
    assert d.simplify() != (2 * (S @ x.rename(i="i_"))).simplify()
    h = tg.Derivative(d, x)
    assert h.edges == ("i", "i_")
    assert h.simplify() == (S + St).simplify()
    assert d.grad(x).simplify() == (S + St).simplify()


def test_new_names_override_the_default():
    f = F.frobenius2(X @ W - Y)
    g = f.grad(W, new_names={"k": "out"})
    assert g.edges == ("i", "out")
    assert g.simplify() == f.grad(W).simplify().rename(k="out")
    h = g.grad(W, new_names={"i": "i2"})
    assert h.edges == ("i", "out", "i2", "k")
    values = _random_values(f)
    want = jax.hessian(lambda w_: jnp.sum((values["X"] @ w_ - values["Y"]) ** 2))(values["W"])
    _close(evaluate(h.simplify(), values, sizes=SIZES), want)


@pytest.mark.parametrize("case", [c for c in CASES if not isinstance(c.closed, tg.Zero)], ids=lambda c: c.id)
def test_symbolic_check_can_fail(case):
    """Equality is not vacuous: twice the closed form is a different tensor."""
    assert _derivative(case).simplify() != (2 * case.closed).simplify()
