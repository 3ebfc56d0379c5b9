"""Gaussian expectations: closed forms against exact moments and exact quadrature,
gradients with respect to the mean and covariance, and errors.

The oracle is Gauss-Hermite quadrature over the Gaussian (x = mu + L z, z on a
tensor grid of 5 nodes per entry), which is exact for polynomials of degree
up to 9 and needs no tolerance beyond rounding.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tgjax as tg
import tgjax.functions as F
from tgjax._expectation import polynomial_degree
from tgjax._ir.nodes import Product
from tgjax._simplify.core import recording

from strategies import SIZES, expressions, values

n = tg.symbols("n")
u = tg.Variable("u", i=n)
m = tg.Variable("m", i=n)
a = tg.Variable("a", i=n)
A = tg.Variable("A", i=n, j=n)
C = tg.Variable("C", i=n, i_=n)
RNG = np.random.default_rng(0)
N = 3
VALS = {
    "m": RNG.standard_normal(N),
    "a": 0.3 * RNG.standard_normal(N),
    "A": RNG.standard_normal((N, N)),
}
_L = RNG.standard_normal((N, N))
VALS["C"] = 0.5 * _L @ _L.T + 0.2 * np.eye(N)


def quadrature(expr, wrt, mean, covar, vals, points=5, sizes=None):
    """E[expr] over wrt ~ N(mean, covar) by a Gauss-Hermite tensor grid (covar as a matrix); differentiable in mean."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    weights = weights / weights.sum()
    shape = np.shape(mean)
    size = int(np.prod(shape))
    chol = np.linalg.cholesky(np.reshape(covar, (size, size)))
    grid = np.array(list(itertools.product(nodes, repeat=size)))
    grid_w = np.prod(np.array(list(itertools.product(weights, repeat=size))), axis=1)
    samples = jnp.reshape(mean, -1)[None] + grid @ chol.T
    fn = tg.lower(expr, sizes=sizes)
    others = {k: v for k, v in vals.items() if k != wrt.name}
    out = jax.vmap(lambda s: fn(**others, **{wrt.name: s.reshape(shape)}))(samples)
    return jnp.tensordot(jnp.asarray(grid_w), out, axes=1)


def closed(expr, **vals):
    return np.asarray(tg.lower(expr.simplify())(**{k: VALS[k] for k in vals}))


# -- known moments -------------------------------------------------------------------------


def test_quadratic_form_is_trace_plus_mean_term():
    e = tg.Expectation(u @ A @ u.rename(i="j"), u, mu=m, covar=C)
    s = e.simplify()
    assert not any(isinstance(node, tg.Expectation) for node in _nodes(s))
    A_, C_, m_ = VALS["A"], VALS["C"], VALS["m"]
    np.testing.assert_allclose(closed(e, A=1, m=1, C=1), np.trace(A_ @ C_) + m_ @ A_ @ m_, rtol=1e-12)


def test_standard_normal_quadratic_is_the_trace():
    assert tg.Expectation(u @ A @ u.rename(i="j"), u).simplify() == F.trace(A).simplify()


def test_fourth_moment_is_three_pairings():
    four = Product([u, u.rename(i="j"), u.rename(i="k"), u.rename(i="l")])
    d = lambda p, q: tg.Delta(n, p, q)  # noqa: E731
    expected = d("i", "j") * d("k", "l") + d("i", "k") * d("j", "l") + d("i", "l") * d("j", "k")
    assert tg.Expectation(four, u).simplify() == expected.simplify()


@pytest.mark.parametrize("k, moment", [(1, n), (2, n * (n + 2)), (3, n * (n + 2) * (n + 4))])
def test_chi_square_moments(k, moment):
    # the weights of closed forms are expanded polynomials of the sizes: n**2 + 2*n
    result = tg.Expectation(F.sum(u * u) ** k, u).simplify()
    assert str(result) == str(sympy.expand(moment))


def test_odd_moments_of_a_centred_gaussian_vanish():
    assert isinstance(tg.Expectation(u * F.sum(u * u), u).simplify(), tg.Zero)


def test_matrix_variable_with_a_four_edge_covariance():
    b, d, c = tg.symbols("b d c")
    X, Y = tg.Variable("X", b, d), tg.Variable("Y", b, c)
    W, M = tg.Variable("W", d, c), tg.Variable("M", d, c)
    CW = tg.Variable("CW", d=d, c=c, d_=d, c_=c)
    B, D, K = 4, 3, 2
    Xv, Yv, Mv = RNG.standard_normal((B, D)), RNG.standard_normal((B, K)), RNG.standard_normal((D, K))
    L = 0.4 * RNG.standard_normal((D * K, D * K))
    Cv = (L @ L.T).reshape(D, K, D, K)
    mean = Xv @ Mv - Yv
    var = np.einsum("bd,be,dcec->bc", Xv, Xv, Cv)
    for power, exact in ((2, np.sum(mean ** 2 + var)), (4, np.sum(mean ** 4 + 6 * mean ** 2 * var + 3 * var ** 2))):
        e = tg.Expectation(F.sum((X @ W - Y) ** power), W, mu=M, covar=CW).simplify()
        np.testing.assert_allclose(tg.lower(e)(X=Xv, Y=Yv, M=Mv, CW=Cv), exact, rtol=1e-12)


def test_degree_four_polynomial_of_a_matrix_simplifies_quickly():
    # well under a second (measured about 0.01 s): no timing assertion, only that it finishes closed
    b, d, c = tg.symbols("b d c")
    X, W, M = tg.Variable("X", b, d), tg.Variable("W", d, c), tg.Variable("M", d, c)
    e = tg.Expectation(F.sum((X @ W) ** 4) + F.sum(X @ W) ** 2, W, mu=M).simplify()
    assert not any(isinstance(node, tg.Expectation) for node in _nodes(e))


# -- exponentials ---------------------------------------------------------------------------


def test_moment_generating_function():
    a_, m_, C_ = VALS["a"], VALS["m"], VALS["C"]
    e = tg.Expectation(F.exp(a @ u), u, mu=m, covar=C)
    np.testing.assert_allclose(closed(e, a=1, m=1, C=1), np.exp(a_ @ m_ + a_ @ C_ @ a_ / 2), rtol=1e-12)


def test_elementwise_exponential():
    e = tg.Expectation(F.exp(u), u, mu=m, covar=C)
    np.testing.assert_allclose(closed(e, m=1, C=1), np.exp(VALS["m"] + np.diag(VALS["C"]) / 2), rtol=1e-12)


def test_polynomial_times_exponential_by_tilting():
    b = tg.Variable("b", i=n)
    vals = {**VALS, "b": 0.2 * RNG.standard_normal(N)}
    expr = (a @ u) ** 2 * F.exp(b @ u + 1)
    e = tg.Expectation(expr, u, mu=m, covar=C).simplify()
    got = tg.lower(e)(a=vals["a"], b=vals["b"], m=vals["m"], C=vals["C"])
    want = quadrature(expr, u, vals["m"], vals["C"], vals, points=12)
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- structure --------------------------------------------------------------------------------


def test_independent_factors_and_constants_come_out():
    y = tg.Variable("y", i=n)
    assert tg.Expectation(F.tanh(y), u).simplify() == F.tanh(y)
    assert tg.Expectation(3 * F.tanh(y) * F.sum(u * u), u).simplify() == (3 * n * F.tanh(y)).simplify()


def test_no_closed_form_keeps_the_node_and_splits_off_the_rest():
    e = tg.Expectation(F.sum(F.tanh(u)) * 2 + F.sum(u * u), u, mu=m).simplify()
    kept = [node for node in _nodes(e) if isinstance(node, tg.Expectation)]
    assert len(kept) == 1 and "tanh" in str(kept[0]) and "u[a] u[a]" not in str(kept[0])
    with pytest.raises(ValueError, match="no closed form for .*tanh"):
        tg.lower(e)


def test_nested_expectations_over_different_variables():
    v = tg.Variable("v", i=n)
    inner = tg.Expectation((u @ v) ** 2, u)
    assert tg.Expectation(inner, v).simplify().simplify() == tg.Delta(n).simplify()


def test_expectation_is_an_ordinary_expression():
    e = tg.Expectation(F.tanh(u), u, mu=m)
    assert e == tg.Expectation(F.tanh(u), u, mu=m)
    assert e != tg.Expectation(F.tanh(u), u, mu=a)
    assert e.rename(i="j").edges == ("j",)
    assert e.rename(i="j") == tg.Expectation(F.tanh(u.rename(i="j")), u, mu=m)
    assert [v.name for v in e.variables()] == ["m"]
    assert not e.depends_on(u) and e.depends_on(m)
    assert str(e) == "E[u[i] ~ N(m[i], δ[i,i_])](tanh(u[i]))"
    assert e.func(*e.args) == e


def test_simplify_records_the_rules():
    with recording() as steps:
        tg.Expectation(F.exp(a @ u) + u @ a, u, mu=m).simplify()
    names = {name for name, _, _ in steps}
    assert {"gaussian_polynomial", "gaussian_exponential"} <= names


# -- gradients with respect to the law ----------------------------------------------------------


def test_gradients_with_respect_to_mean_and_covariance():
    e = tg.Expectation(F.sum(F.exp(u)) + (u @ A @ u.rename(i="j")) ** 2, u, mu=m, covar=C)

    def exact(m_, C_):
        A_ = VALS["A"]
        S = (C_ + C_.T) / 2
        quad = jnp.trace(A_ @ S) + m_ @ A_ @ m_
        # Var(u^T A u) = 2 tr(A_s S A_s S) + 4 m^T A_s S A_s m, with A_s the symmetric part of A
        As = (A_ + A_.T) / 2
        var = 2 * jnp.trace(As @ S @ As @ S) + 4 * m_ @ As @ S @ As @ m_
        return jnp.sum(jnp.exp(m_ + jnp.diag(S) / 2)) + var + quad ** 2

    fn = tg.lower([e, e.grad(m), e.grad(C)])
    value, grad_m, grad_C = fn(A=VALS["A"], m=VALS["m"], C=VALS["C"])
    np.testing.assert_allclose(value, exact(VALS["m"], VALS["C"]), rtol=1e-10)
    np.testing.assert_allclose(grad_m, jax.grad(exact, 0)(VALS["m"], VALS["C"]), rtol=1e-10)
    np.testing.assert_allclose(grad_C, jax.grad(exact, 1)(VALS["m"], VALS["C"]), rtol=1e-10)
    np.testing.assert_allclose(grad_C, np.asarray(grad_C).T, rtol=1e-12)


def test_gradient_of_an_open_expectation_follows_prices_theorem():
    # d/dmu E[tanh(u)] = E[tanh'(u)]: the derivative keeps the node, and its integrand is the derivative
    g = tg.Expectation(F.sum(F.tanh(u)), u, mu=m).grad(m).simplify()
    kept = [node for node in _nodes(g) if isinstance(node, tg.Expectation)]
    assert kept and all(node.wrt == u for node in kept)


def test_differentiating_with_respect_to_the_averaged_variable_is_an_error():
    with pytest.raises(ValueError, match="averages over u"):
        tg.Expectation(F.sum(u * u), u).grad(u)


# -- Monte-Carlo estimates of what has no closed form -------------------------------------------


def test_sampling_estimates_an_open_expectation_and_its_gradient():
    e = tg.Expectation(F.sum(F.tanh(u)) + F.sum(u * u), u, mu=m, covar=C)
    fn = tg.lower([e, e.grad(m)], samples=100_000)
    value, grad = fn(m=VALS["m"], C=VALS["C"], key=jax.random.PRNGKey(0))
    z = np.random.default_rng(1).standard_normal((400_000, N)) @ np.linalg.cholesky(VALS["C"]).T + VALS["m"]
    reference = np.sum(np.tanh(z), 1) + np.sum(z * z, 1)
    # the polynomial part is exact; only the tanh part is sampled: compare within 5 standard errors
    error = 5 * np.std(np.sum(np.tanh(z), 1)) / np.sqrt(100_000)
    np.testing.assert_allclose(value, reference.mean(), atol=error + 5 * reference.std() / np.sqrt(400_000))
    np.testing.assert_allclose(grad, np.mean(1 - np.tanh(z) ** 2, 0) + 2 * VALS["m"], atol=0.02)
    # and jax.grad through the sampler (reparameterised) agrees with the symbolic gradient's estimate
    through = jax.grad(lambda mu: fn(m=mu, C=VALS["C"], key=jax.random.PRNGKey(0))[0])(jnp.asarray(VALS["m"]))
    np.testing.assert_allclose(through, grad, atol=0.02)


def test_sampling_leaves_closed_forms_exact():
    e = tg.Expectation(u @ A @ u.rename(i="j"), u, mu=m, covar=C)
    sampled = tg.lower(e, samples=3)(A=VALS["A"], m=VALS["m"], C=VALS["C"], key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(sampled, closed(e, A=1, m=1, C=1), rtol=1e-12)


def test_sampling_nested_open_expectations():
    v = tg.Variable("v", i=n)
    inner = tg.Expectation(F.sum(F.tanh(u + v)), u)
    outer = tg.Expectation(inner, v)
    value = tg.lower(outer, samples=300, sizes={n: 2})(key=jax.random.PRNGKey(0))
    z = np.random.default_rng(0).standard_normal((400_000, 2)) * np.sqrt(2)  # u + v ~ N(0, 2 I)
    np.testing.assert_allclose(value, np.mean(np.sum(np.tanh(z), 1)), atol=0.05)


def test_sampling_errors():
    fn = tg.lower(tg.Expectation(F.sum(F.tanh(u)), u, mu=m), samples=10)
    with pytest.raises(ValueError, match="pass a JAX PRNG key"):
        fn(m=VALS["m"])
    with pytest.raises(ValueError, match="samples must be a positive int"):
        tg.lower(tg.Expectation(F.sum(F.tanh(u)), u), samples=0)
    with pytest.raises(ValueError, match="not fixed by any input"):
        tg.lower(tg.Expectation(F.sum(F.tanh(u)), u), samples=10)(key=jax.random.PRNGKey(0))


def test_covariance_edges_that_are_free_edges_of_the_expression_are_renamed_apart():
    # E[x x'] for x' = x renamed onto the covariance's own names: the partner edges are
    # bound inside the node (issue 26's case; it was refused)
    i, j = tg.symbols("i j")
    X = tg.Variable("X", i=i, j=j)
    C = tg.Variable("C", i=i, j=j, i2=i, j2=j)
    second = tg.Expectation(X * X.rename(i="i2", j="j2"), X, covar=C, covar_names={"i": "i2", "j": "j2"})
    assert second.edges == ("i", "j", "i2", "j2")
    c = np.random.default_rng(0).normal(size=(2, 3, 2, 3))
    np.testing.assert_allclose(tg.lower(second.simplify())(C=c), (c + c.transpose(2, 3, 0, 1)) / 2, rtol=1e-12)
    # the default covariance's partner edges likewise
    v = tg.Variable("v", i=i)
    outer = tg.Expectation(v * v.rename(i="k"), v, covar_names={"i": "k"}).simplify()
    np.testing.assert_allclose(tg.lower(outer, sizes={i: 3})(), np.eye(3))


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: tg.Expectation(u, u * 2), "wrt must be the Gaussian tg.Variable"),
    (lambda: tg.Expectation(u, u, mu=A), r"mu must have the edges \['i'\]"),
    (lambda: tg.Expectation(u, u, mu=tg.Variable("m3", i=3)), "size"),
    (lambda: tg.Expectation(u, u, covar=A), "covar must have the edges"),
    (lambda: tg.Expectation(u, u, covar_names={"i": "i"}), "already an edge"),
    (lambda: tg.Expectation(u, u, covar_names={"i": "k"}, covar=tg.Variable("C2", i=3, j=3)), "covar must have the edges"),
    (lambda: tg.Expectation(u, u, covar_names={"q": "r"}), "not edges of u"),
    (lambda: tg.Expectation(u, u, mu=np.zeros(3)), "mu must be a tensor expression"),
    (lambda: tg.Expectation("u", u), "expected a tensor expression"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


# -- property: random polynomials against exact quadrature ---------------------------------------

X = tg.Variable("x", tg.symbols("i"))
MU = tg.Variable("mu", i=tg.symbols("i"))
COV = tg.Variable("Cx", i=tg.symbols("i"), i_=tg.symbols("i"))


# Most random expressions are not polynomials (tanh, exp, ...): those are filtered out.
@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(expressions(max_depth=2), st.integers(0, 2 ** 16))
def test_random_polynomials_match_quadrature(expr, seed):
    assume(expr.depends_on(X))
    degree = polynomial_degree(expr.simplify(), X)
    assume(degree is not None and degree <= 4)
    vals = values(seed)
    rng = np.random.default_rng(seed)
    size = SIZES[tg.symbols("i")]
    L = 0.5 * rng.standard_normal((size, size))
    vals = {**vals, "mu": rng.standard_normal(size), "Cx": L @ L.T + 0.3 * np.eye(size)}
    e = tg.Expectation(expr, X, mu=MU, covar=COV).simplify()
    assert not any(isinstance(node, tg.Expectation) for node in _nodes(e))
    used = {v.name for v in e.variables()}
    got = np.asarray(tg.lower(e, sizes=SIZES)(**{k: v for k, v in vals.items() if k in used}))
    inputs = {k: v for k, v in vals.items() if k in {v.name for v in expr.variables()}}
    want = quadrature(expr, X, vals["mu"], vals["Cx"], inputs, sizes=SIZES)
    order = [expr.edges.index(d) for d in e.edges] if e.edges else []
    np.testing.assert_allclose(got, np.transpose(want, order) if order else want, rtol=1e-7, atol=1e-7)
    if not expr.edges:
        # the closed form's gradient with respect to the mean, against the quadrature's
        grad = tg.lower(tg.Expectation(expr, X, mu=MU, covar=COV).grad(MU), sizes=SIZES)
        got = grad(**vals)  # arrays of variables it does not use are ignored
        want = jax.grad(lambda mu: quadrature(expr, X, mu, vals["Cx"], inputs, sizes=SIZES))(jnp.asarray(vals["mu"]))
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)


def _nodes(t):
    from tgjax._ir.walk import parents_first

    return parents_first([t])
