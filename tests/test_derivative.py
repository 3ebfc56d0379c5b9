"""Derivatives: edge naming (API.md), unevaluated Derivative nodes, zeros,
higher orders and renamed variables, each checked against JAX autodiff of the
reference evaluator (which never uses tgjax's symbolic rules)."""

import warnings

import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._ir.nodes import Zero
from strategies import A, B, I, J, K, S, assert_close, ev, jax_grad, jax_hessian, jax_third, values, x, y, z

VALS = values(7)


def declared(v):
    return tuple(e for e, _ in v.decl)


# -- naming of the new edges ----------------------------------------------------------


# Naming tests differentiate with respect to variables an expression lacks on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Derivative. the expression does not contain:UserWarning")


def test_gradient_of_scalar_keeps_the_variable_edge_names():
    f = F.sum(F.tanh(A @ y))
    assert f.grad(x).edges == ("i",)
    assert f.grad(y).edges == ("j",)
    assert f.grad(A).edges == ("i", "j")
    assert f.grad(A).shape == {"i": I, "j": J}


def test_new_edges_follow_the_expression_edges():
    e = A @ y  # free i
    assert e.grad(y).edges == ("i", "j")
    assert e.grad(B).edges == ("i", "j", "k")
    assert e.grad(A).edges == ("i", "i_", "j")
    assert e.grad(A).shape == {"i": I, "i_": I, "j": J}


def test_underscores_are_appended_until_free():
    e = S.rename(l="i_")  # free i, i_
    assert e.grad(x).edges == ("i", "i_", "i__")
    assert e.grad(S).edges == ("i", "i_", "i__", "l")
    h = F.sum(F.pow(x, 3)).grad(x).grad(x)
    assert h.grad(x).edges == ("i", "i_", "i__")


def test_hessian_edges_vector_and_matrix():
    f = F.sum(F.tanh(A @ y)) + F.sum(F.pow(x, 4))
    assert f.grad(x).grad(x).edges == ("i", "i_")
    assert f.grad(A).grad(A).edges == ("i", "j", "i_", "j_")
    assert f.grad(A).grad(x).edges == ("i", "j", "i_")
    assert f.grad(x).grad(A).edges == ("i", "i_", "j")
    assert f.grad(A).grad(A).simplify().edges == ("i", "j", "i_", "j_")


def test_new_names_override():
    f = F.sum(F.tanh(A @ y))
    assert f.grad(A, new_names={"i": "p"}).edges == ("p", "j")
    assert f.grad(A, new_names={"i": "p", "j": "q"}).edges == ("p", "q")
    g = A @ y
    assert g.grad(x, new_names={"i": "r"}).edges == ("i", "r")
    assert_close(ev(g.grad(x, new_names={"i": "r"}).simplify(), VALS), np.zeros((3, 3)))
    # the override is honoured in values too: edge p is A's declared i
    gp = f.grad(A, new_names={"i": "p", "j": "q"}).simplify()
    assert_close(ev(gp, VALS), jax_grad(f, A, VALS))


def test_new_names_errors():
    g = A @ y  # free i
    with pytest.raises(ValueError, match="already used"):
        g.grad(x, new_names={"i": "i"})
    with pytest.raises(ValueError, match="not edges of"):
        g.grad(x, new_names={"q": "r"})
    with pytest.raises(TypeError, match="Variable"):
        g.grad(A @ y)


# -- unevaluated derivatives ------------------------------------------------------------


@pytest.mark.parametrize("make, wrt", [
    (lambda: F.sum(F.tanh(A @ y) * x), x),
    (lambda: F.sum(F.tanh(A @ y) * x), A),
    (lambda: A @ y, A),
    (lambda: F.exp(F.tanh(A @ B)), B),
    (lambda: x * F.sigmoid(S @ x.rename(i="l")), x),
])
def test_derivative_node_is_unevaluated_and_simplifies_to_grad(make, wrt):
    e = make()
    d = tg.Derivative(e, wrt)
    assert isinstance(d, tg.Derivative)
    assert d.edges == e.grad(wrt).edges
    s = d.simplify()
    assert not isinstance(s, tg.Derivative)
    assert s.edges == d.edges
    assert s == e.grad(wrt).simplify()
    # the reference evaluator computes a Derivative node with jax.jacrev
    assert_close(ev(s, VALS), ev(d, VALS), what=str(e))


def test_derivative_node_new_names_and_nesting():
    f = F.sum(F.pow(A @ y, 3))
    d = tg.Derivative(tg.Derivative(f, y, new_names={"j": "p"}), y)
    assert d.edges == ("p", "j")
    s = d.simplify()
    assert s.edges == ("p", "j")
    assert s == f.grad(y, new_names={"j": "p"}).grad(y).simplify()
    assert_close(ev(s, VALS), jax_hessian(f, y, VALS))


def test_derivative_node_equality():
    f = F.sum(F.tanh(A @ y))
    assert tg.Derivative(f, A) == tg.Derivative(f, A)
    assert hash(tg.Derivative(f, A)) == hash(tg.Derivative(f, A))
    assert tg.Derivative(f, A) != tg.Derivative(f, y)


def test_grad_of_derivative_node():
    f = F.sum(F.tanh(A @ y) * x)
    h = tg.Derivative(f, x).grad(A).simplify()
    assert h.edges == ("i", "i_", "j")
    assert h == f.grad(x).grad(A).simplify()
    assert_close(ev(h, VALS), ev(tg.Derivative(tg.Derivative(f, x), A), VALS))


# -- zeros ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, wrt, edges", [
    (lambda: A @ y, z, ("i", "k")),
    (lambda: F.tanh(B), x, ("j", "k", "i")),
    (lambda: F.sum(B), A, ("i", "j")),
    (lambda: S.rename(l="i_"), x, ("i", "i_", "i__")),
    (lambda: tg.Delta(I, "i", "l"), S, ("i", "l", "i_", "l_")),
])
def test_derivative_of_independent_expression_is_zero(make, wrt, edges):
    e = make()
    with pytest.warns(UserWarning, match=f"does not contain Variable '{wrt.name}'"):
        d = e.grad(wrt)
    assert d.edges == edges
    s = d.simplify()
    assert isinstance(s, Zero)
    assert s.edges == edges
    with pytest.warns(UserWarning, match="derivative with respect to it is zero"):
        derivative = tg.Derivative(e, wrt)
    assert derivative.simplify().edges == edges
    assert isinstance(derivative.simplify(), Zero)
    assert not np.any(ev(s, VALS))


def test_a_variable_of_the_same_name_but_other_sizes_is_refused_not_a_silent_zero():
    m, n = tg.symbols("m n")
    x_n, x_m = tg.Variable("x", i=n), tg.Variable("x", i=m)
    f = F.sum(x_n * x_n)
    for attempt in (lambda: f.grad(x_m), lambda: tg.Derivative(f, x_m), lambda: f.grad([x_n, x_m])):
        with pytest.raises(ValueError, match=r"x\[i=m\] is not the expression's Variable 'x', which is x\[i=n\]"):
            attempt()
    with pytest.raises(ValueError, match="may not share a name"):
        tg.Expectation(x_n * x_n, x_m)


def test_a_variable_the_expression_lacks_warns_once_naming_it():
    f = F.sum(x * x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f.grad(z)
    assert len(caught) == 1 and "'z'" in str(caught[0].message) and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f.grad(x)  # contained: no warning
        F.sum(x * x).grad(x).grad(x).grad(x)  # a third derivative of a quadratic: a true zero, but x is in it


def test_derivative_that_cancels_is_zero():
    e = F.tanh(A @ y) - F.tanh(A @ y)
    s = e.grad(y).simplify()
    assert isinstance(s, Zero)
    assert s.edges == ("i", "j")


# -- simple closed forms -------------------------------------------------------------------


def test_derivative_of_variable_is_identity():
    d = x.grad(x).simplify()
    assert d.edges == ("i", "i_")
    assert d == tg.Delta(I, "i", "i_")
    assert_close(ev(d, VALS), np.eye(3))
    dA = A.grad(A).simplify()
    assert dA.edges == ("i", "j", "i_", "j_")
    assert_close(ev(dA, VALS), np.einsum("ac,bd->abcd", np.eye(3), np.eye(4)))


def test_gradient_of_linear_form():
    f = F.sum(A @ y)  # sum_ij A[i,j] y[j]
    g = f.grad(A).simplify()
    assert g == tg.Delta(I, "i") * y
    assert_close(ev(g, VALS), np.outer(np.ones(3), VALS["y"]))
    gy = f.grad(y).simplify()
    assert gy == F.sum(A, "i")


# -- higher orders -------------------------------------------------------------------------


@pytest.mark.parametrize("make, wrt", [
    (lambda: F.sum(F.pow(x, 3) * F.exp(F.tanh(x))), x),
    (lambda: F.sum(F.log(1 + F.pow(A @ y, 2))), y),
    (lambda: F.sum(F.sigmoid(x @ S) * F.tanh(S @ x.rename(i="l"))), x),
    (lambda: F.sum(F.pow(B, 3) / (1 + F.pow(B, 2))), B),
])
def test_third_derivative_matches_jax(make, wrt):
    f = make()
    t = f.grad(wrt).grad(wrt).grad(wrt).simplify()
    names = declared(wrt)
    assert t.edges == names + tuple(e + "_" for e in names) + tuple(e + "__" for e in names)
    assert_close(ev(t, VALS), jax_third(f, wrt, VALS), what=str(f))


def test_mixed_second_derivative_matches_jax():
    f = F.sum(F.tanh(A @ y) * x)
    h = f.grad(A).grad(y).simplify()
    assert h.edges == ("i", "j", "j_")
    import jax

    def fn(a, b):
        return ev_fn(f, {"A": a, "y": b})

    expected = jax.jit(jax.jacfwd(jax.grad(fn, argnums=0), argnums=1))(VALS["A"], VALS["y"])
    assert_close(ev(h, VALS), expected)


def ev_fn(expr, arrays):
    from tgjax._lower.reference import evaluate
    from strategies import SIZES

    return evaluate(expr, {**VALS, **arrays}, sizes=SIZES)


# -- a variable that appears renamed ------------------------------------------------------------


def test_derivative_through_renamed_variable():
    xl = x.rename(i="l")
    e = S @ xl  # sum_l S[i,l] x[l], free i
    d = e.grad(x)
    assert d.edges == ("i", "i_")  # "i" is free in e, so the new edge is "i_"
    s = d.simplify()
    assert s == S.rename(l="i_")
    assert_close(ev(s, VALS), VALS["S"])
    assert_close(ev(s, VALS), ev(tg.Derivative(e, x), VALS))


def test_gradient_with_variable_used_under_two_names():
    f = F.sum(x * F.tanh(S @ x.rename(i="l")))  # sum_i x_i tanh(sum_l S[i,l] x_l)
    g = f.grad(x).simplify()
    assert g.edges == ("i",)
    assert_close(ev(g, VALS), jax_grad(f, x, VALS))
    h = f.grad(x).grad(x).simplify()
    assert h.edges == ("i", "i_")
    assert_close(ev(h, VALS), jax_hessian(f, x, VALS))


def test_quadratic_form_with_swapped_variable():
    st = S.rename(i="l", l="i")  # S^T
    f = x @ st @ x.rename(i="l")  # sum S[l,i] x_i x_l
    g = f.grad(x).simplify()
    expected = (VALS["S"] + VALS["S"].T) @ VALS["x"]
    assert_close(ev(g, VALS), expected)
    assert_close(ev(g, VALS), jax_grad(f, x, VALS))


def test_gradient_with_respect_to_renamed_wrt_uses_declared_edges():
    f = F.sum(F.tanh(S @ x.rename(i="l")))
    g1 = f.grad(x).simplify()
    assert g1.edges == ("i",)
    assert_close(ev(g1, VALS), jax_grad(f, x, VALS))


# -- new edges and inner edges with the same name ---------------------------------------------------


def test_new_edge_may_reuse_an_inner_edge_name():
    e = A @ y  # j is contracted, i is free
    d = e.grad(y)
    assert d.edges == ("i", "j")
    s = d.simplify()
    assert s == A
    assert_close(ev(s, VALS), VALS["A"])
    dA = e.grad(A).simplify()
    assert dA.edges == ("i", "i_", "j")
    assert dA == tg.Delta(I, "i", "i_") * y
    assert_close(ev(dA, VALS), ev(tg.Derivative(e, A), VALS))


def test_renamed_derivative_node():
    d = tg.Derivative(S @ x.rename(i="l"), x)  # d(S x)_i / d x_i_ = S[i, i_]
    assert d.edges == ("i", "i_")
    r = d.rename(i="z", i_="i")
    assert r.edges == ("z", "i")
    s = r.simplify()
    assert s.edges == ("z", "i")
    assert s == S.rename(i="z", l="i")
    assert_close(ev(s, VALS), VALS["S"])
    assert_close(ev(r, VALS), VALS["S"])


def test_a_gradient_prints_as_the_derivative_it_stands_for_until_simplified():
    # issue 28, item 8: its evaluation form is backpropagation's network of Deltas
    loss = F.sum(F.tanh(A @ x) ** 2)
    g = loss.grad(x)
    assert str(g) == str(tg.Derivative(loss, x)) and str(g).startswith("D[")
    assert "D[" in str(g.grad(x, new_names={"i": "k"}))
    assert "D[" not in str(g.simplify()) and "δ[f,b]" not in str(g)
