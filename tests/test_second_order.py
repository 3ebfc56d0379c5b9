"""Derivatives contracted with tensors: ``H @ v``, ``u @ J``, ``u^T H v``, lowered as gradients of
contractions (``_lower.evaluation._derivative_contracted``), checked against JAX in float64,
and ``tg.linear_operator``: curvature handed to lineax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from costs import largest_intermediate

b, i, h, c = tg.symbols("b i h c")
X, T = tg.Variable("X", b, i), tg.Variable("T", b, c)
W1, W2 = tg.Variable("W1", i, h), tg.Variable("W2", h, c)
SIZES = dict(b=6, i=5, h=4, c=3)


def _values(seed=0, **extra):
    rng = np.random.default_rng(seed)
    shapes = {"X": ("b", "i"), "T": ("b", "c"), "W1": ("i", "h"), "W2": ("h", "c"), **extra}
    out = {n: rng.standard_normal(tuple(SIZES[e] for e in edges)) for n, edges in shapes.items()}
    out["T"] = np.asarray(jax.nn.softmax(out["T"], -1))
    return {n: jnp.asarray(a) for n, a in out.items()}


def _mlp_loss():
    return F.sum(F.cross_entropy(F.tanh(X @ W1) @ W2, T, "c"))


def _jax_mlp_loss(w1, env):
    z = jnp.tanh(env["X"] @ w1) @ env["W2"]
    return -jnp.sum(env["T"] * jax.nn.log_softmax(z, -1))


def _jax_hvp(values, direction):
    grad = jax.grad(_jax_mlp_loss)
    return jax.jvp(lambda w: grad(w, values), (values["W1"],), (direction,))[1]


def test_hessian_times_vector_as_written_is_the_hessian_vector_product():
    V = tg.Variable("V", i_=i, h_=h)
    hv = _mlp_loss().grad(W1).grad(W1) @ V
    values = _values(V=("i", "h"))
    got = tg.lower(hv)(**values)
    np.testing.assert_allclose(got, _jax_hvp(values, values["V"]), rtol=1e-9, atol=1e-12)


def test_hessian_vector_product_costs_what_the_gradient_of_the_contraction_costs():
    """``H @ v`` written the obvious way lowers to the program of ``(g @ v).grad(x)``."""
    V = tg.Variable("V", i, h)
    loss = _mlp_loss()
    written = loss.grad(W1).grad(W1) @ V.rename(i="i_", h="h_")
    by_hand = (loss.grad(W1) @ V).grad(W1)
    sizes = {s: 16 for s in (b, i, h, c)}
    assert tg.to_source(written, sizes=sizes).count("einsum") == tg.to_source(by_hand, sizes=sizes).count("einsum")


def test_vector_hessian_vector_and_row_times_hessian():
    U, V = tg.Variable("U", i, h), tg.Variable("V", i_=i, h_=h)
    H = _mlp_loss().grad(W1).grad(W1)
    values = _values(U=("i", "h"), V=("i", "h"))
    hv = _jax_hvp(values, values["V"])
    quadratic = tg.lower(U @ H @ V)(**values)
    np.testing.assert_allclose(quadratic, jnp.sum(values["U"] * hv), rtol=1e-9)
    row = tg.lower(U @ H)(**values)  # u^T H = H u by symmetry, on the second edges
    np.testing.assert_allclose(row, _jax_hvp(values, values["U"]), rtol=1e-9, atol=1e-12)


def test_hessian_of_a_tensor_valued_function_times_vector():
    """Per-row losses (edge b free): each row's Hessian is symmetric, contracted row by row."""
    x = tg.Variable("x", i)
    V = tg.Variable("V", i_=i)
    rows = F.tanh(X @ x) ** 3  # edges b
    hv = rows.grad(x).grad(x) @ V
    values = _values(x=("i",), V=("i",))

    def per_row(xx):
        return jnp.tanh(values["X"] @ xx) ** 3

    jac_hv = jax.jvp(jax.jacrev(per_row), (values["x"],), (values["V"],))[1]
    np.testing.assert_allclose(tg.lower(hv)(**values), jac_hv, rtol=1e-9, atol=1e-12)


def test_vector_times_jacobian_is_one_reverse_sweep():
    u = tg.Variable("u", b, h)
    J = F.tanh(X @ W1).grad(W1)  # edges b, h, i_, h_... named by .grad
    vjp = u @ J
    values = _values(u=("b", "h"))
    _, pullback = jax.vjp(lambda w: jnp.tanh(values["X"] @ w), values["W1"])
    got = tg.lower(vjp)(**values)
    np.testing.assert_allclose(got, pullback(values["u"])[0], rtol=1e-9, atol=1e-12)


def test_jacobian_times_directions_is_the_tangent_along_each():
    """``J @ V`` for the Jacobian of a softmax layer, with a batch of directions (edge m): the
    tangent carries m along, as ``jax.vmap(jax.jvp)`` would."""
    m = tg.symbols("m")
    J = F.softmax(X @ W1, "h").grad(W1, {"i": "i2", "h": "h2"})  # edges b, h, i2, h2
    V = tg.Variable("V", i2=i, h2=h, m=m)
    rng = np.random.default_rng(3)
    values = {**_values(), "V": jnp.asarray(rng.standard_normal((SIZES["i"], SIZES["h"], 2)))}
    got = tg.lower(J @ V)(**values)  # edges b, h, m

    def layer(w):
        return jax.nn.softmax(values["X"] @ w, axis=1)

    expected = jax.vmap(lambda v: jax.jvp(layer, (values["W1"],), (v,))[1], in_axes=2, out_axes=2)(values["V"])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_jacobian_vector_product_never_forms_the_jacobian():
    """The program of ``J @ v`` has no array larger than its inputs (``J`` has b*h*i*h entries)."""
    J = F.tanh(X @ W1).grad(W1, {"i": "i2", "h": "h2"})
    V = tg.Variable("V", i2=i, h2=h)
    fn = tg.lower(J @ V)
    rng = np.random.default_rng(4)
    values = {n: jnp.asarray(rng.standard_normal(shape)) for n, shape in (("X", (64, 32)), ("W1", (32, 16)), ("V", (32, 16)))}
    assert largest_intermediate(lambda v: fn(v), values) <= 64 * 32


def test_contraction_with_a_tensor_that_depends_on_the_variable_is_left_alone():
    """``H @ W1`` is not a Hessian-vector product with a constant vector: the product rule would
    add a term; it is computed from the Hessian itself, and agrees with JAX."""
    H = _mlp_loss().grad(W1).grad(W1)
    hx = H @ W1.rename(i="i_", h="h_")
    values = _values()
    np.testing.assert_allclose(tg.lower(hx)(**values), _jax_hvp(values, values["W1"]), rtol=1e-9, atol=1e-12)


def test_unevaluated_derivative_nodes_contract_the_same_way():
    V = tg.Variable("V", i_=i, h_=h)
    loss = _mlp_loss()
    H = tg.Derivative(tg.Derivative(loss, W1), W1, {"i": "i_", "h": "h_"})
    values = _values(V=("i", "h"))
    np.testing.assert_allclose(tg.lower(H @ V)(**values), _jax_hvp(values, values["V"]), rtol=1e-9, atol=1e-12)


# -- tg.linear_operator -------------------------------------------------------------------

import lineax as lx  # noqa: E402


def _ridge_logistic():
    n, d = tg.symbols("n d")
    A, y, w = tg.Variable("A", n, d), tg.Variable("y", n), tg.Variable("w", d)
    z = A @ w
    loss = F.sum(F.log(1 + F.exp(z)) - y * z) + 0.5 * F.sum(w * w)
    return loss, w


def _ridge_values(seed=0):
    rng = np.random.default_rng(seed)
    return {"A": jnp.asarray(rng.standard_normal((20, 4))), "y": jnp.asarray(rng.integers(0, 2, 20).astype(float)),
            "w": jnp.asarray(rng.standard_normal(4) * 0.1)}


def _jax_ridge_loss(w, A, y):
    z = A @ w
    return jnp.sum(jnp.logaddexp(0.0, z) - y * z) + 0.5 * jnp.sum(w * w)


def test_hessian_operator_is_symmetric_and_its_matrix_is_the_hessian():
    loss, w = _ridge_logistic()
    make = tg.linear_operator(loss.grad(w).grad(w, {"d": "d2"}), ["d2"])
    values = _ridge_values()
    op = make(**values)
    assert lx.is_symmetric(op) and make.symmetric
    expected = jax.hessian(_jax_ridge_loss)(values["w"], values["A"], values["y"])
    np.testing.assert_allclose(op.as_matrix(), expected, rtol=1e-10)
    np.testing.assert_allclose(op.mv(jnp.arange(4.0)), expected @ jnp.arange(4.0), rtol=1e-10)


def test_newton_step_with_cg_under_jit_matches_a_dense_solve():
    loss, w = _ridge_logistic()
    grad = loss.grad(w)
    make = tg.linear_operator(grad.grad(w, {"d": "d2"}), ["d2"], tags=lx.positive_semidefinite_tag)
    gradient = tg.lower(grad)
    values = _ridge_values()

    @jax.jit
    def step(values):
        op = make(values)
        return lx.linear_solve(op, gradient(values), lx.CG(rtol=1e-12, atol=1e-12)).value

    expected = jnp.linalg.solve(jax.hessian(_jax_ridge_loss)(values["w"], values["A"], values["y"]),
                                jax.grad(_jax_ridge_loss)(values["w"], values["A"], values["y"]))
    np.testing.assert_allclose(step(values), expected, rtol=1e-8)


def test_a_matrix_variable_hessian_operator_takes_arrays_shaped_like_the_variable():
    make = tg.linear_operator(_mlp_loss().grad(W1).grad(W1), ["i_", "h_"])
    values = _values(V=("i", "h"))
    direction = values.pop("V")
    op = make(values)
    assert op.in_structure().shape == (SIZES["i"], SIZES["h"]) and lx.is_symmetric(op)
    np.testing.assert_allclose(op.mv(direction), _jax_hvp(values, direction), rtol=1e-9, atol=1e-12)


def test_a_jacobian_operator_is_not_tagged_symmetric_and_transposes():
    J = F.tanh(X @ W1).grad(W1, {"i": "i2", "h": "h2"})  # edges b, h, i2, h2
    make = tg.linear_operator(J, ["i2", "h2"])
    values = _values()
    op = make(values)
    assert not lx.is_symmetric(op)
    direction = jnp.ones((SIZES["i"], SIZES["h"]))
    _, jvp = jax.jvp(lambda w: jnp.tanh(values["X"] @ w), (values["W1"],), (direction,))
    np.testing.assert_allclose(op.mv(direction), jvp, rtol=1e-9, atol=1e-12)
    u = jnp.ones((SIZES["b"], SIZES["h"]))
    _, pullback = jax.vjp(lambda w: jnp.tanh(values["X"] @ w), values["W1"])
    np.testing.assert_allclose(op.transpose().mv(u), pullback(u)[0], rtol=1e-9, atol=1e-12)


def test_a_symmetric_matrix_written_out_is_proven_symmetric_by_its_normal_form():
    A = tg.Variable("A", i=3, j=3)
    assert tg.linear_operator(A + A.rename(i="j", j="i"), ["j"]).symmetric
    assert not tg.linear_operator(A, ["j"]).symmetric


@pytest.mark.parametrize("in_edges, message", [
    (["k"], "not free edges"),
    ([], "in_edges is empty"),
    (["i", "i"], "name an edge twice"),
])
def test_linear_operator_bad_edges_are_named(in_edges, message):
    A = tg.Variable("A", i=3, j=3)
    with pytest.raises(ValueError, match=message):
        tg.linear_operator(A, in_edges)


def test_linear_operator_refuses_a_value_for_its_own_input_and_names_missing_values():
    A = tg.Variable("A", i=3, j=3)
    make = tg.linear_operator(A, ["j"])
    with pytest.raises(ValueError, match="operator's own input"):
        make(A=jnp.eye(3), v=jnp.ones(3))
    with pytest.raises(ValueError, match="missing variable 'A'"):
        make()
