"""JAX autodiff through the lowered callable: jax.grad, jax.jvp, jax.hessian.

The gradient of the lowered scalar function must equal tgjax's lowered symbolic
gradient and jax.grad of a plain jax.numpy version of the same formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import tgjax as tg
import tgjax.functions as F

b, i, j, k = tg.symbols("b i j k")
X = tg.Variable("X", b, i)
W = tg.Variable("W", i, j)
V = tg.Variable("V", j, k)
T = tg.Variable("T", b, k)
x = tg.Variable("x", i)
A = tg.Variable("A", i, j)

rng = np.random.default_rng(0)
VALUES = {
    "X": jnp.asarray(rng.normal(size=(2, 3))),
    "W": jnp.asarray(rng.normal(size=(3, 4))),
    "V": jnp.asarray(rng.normal(size=(4, 5))),
    "T": jnp.asarray(rng.normal(size=(2, 5))),
    "x": jnp.asarray(rng.normal(size=3)),
    "A": jnp.asarray(rng.normal(size=(3, 4))),
}


def close(a, b_):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b_), rtol=1e-10, atol=1e-12)


LOSS = F.sum(F.pow(F.sigmoid(F.tanh(X @ W) @ V) - T, 2))


def loss_jnp(X, W, V, T):
    return jnp.sum((jax.nn.sigmoid(jnp.tanh(X @ W) @ V) - T) ** 2)


def test_jax_grad_through_lowered_equals_symbolic_and_plain():
    fn = tg.lower(LOSS)
    args = tuple(VALUES[n] for n in "XWVT")
    for pos, var in [(1, W), (2, V)]:
        name = var.name
        through = jax.grad(lambda w: fn({**VALUES, name: w}))(VALUES[name])
        symbolic = tg.lower(LOSS.grad(var))(VALUES)
        plain = jax.grad(loss_jnp, pos)(*args)
        assert through.shape == VALUES[name].shape
        close(through, plain)
        close(symbolic, plain)


def test_jax_grad_of_keyword_call_with_argnums():
    fn = tg.lower(LOSS)
    gW, gV = jax.grad(lambda W, V: fn(X=VALUES["X"], W=W, V=V, T=VALUES["T"]), argnums=(0, 1))(VALUES["W"], VALUES["V"])
    args = tuple(VALUES[n] for n in "XWVT")
    close(gW, jax.grad(loss_jnp, 1)(*args))
    close(gV, jax.grad(loss_jnp, 2)(*args))


def test_jax_grad_through_lowered_symbolic_gradient():
    # Second derivative: autodiff of tgjax's own symbolic gradient.
    g = F.sum(F.exp(x @ A)).grad(x)
    fn = tg.lower(F.sum(g * g))

    def plain(x):
        gx = jax.grad(lambda u: jnp.sum(jnp.exp(u @ VALUES["A"])))(x)
        return jnp.sum(gx * gx)

    close(jax.grad(lambda u: fn(x=u, A=VALUES["A"]))(VALUES["x"]), jax.grad(plain)(VALUES["x"]))


def test_jvp_through_lowered_matches_plain():
    fn = tg.lower(F.tanh(X @ W) @ V)
    tangent = jnp.asarray(rng.normal(size=(3, 4)))
    primal, tan = jax.jvp(lambda w: fn(X=VALUES["X"], W=w, V=VALUES["V"]), (VALUES["W"],), (tangent,))
    p_ref, t_ref = jax.jvp(lambda w: jnp.tanh(VALUES["X"] @ w) @ VALUES["V"], (VALUES["W"],), (tangent,))
    close(primal, p_ref)
    close(tan, t_ref)


def test_hessian_through_lowered_equals_symbolic_hessian():
    f = F.sum(F.softplus(x @ A)) + F.frobenius2(x)
    fn = tg.lower(f)
    through = jax.hessian(lambda u: fn(x=u, A=VALUES["A"]))(VALUES["x"])
    symbolic = tg.lower(f.grad(x).grad(x))(VALUES)
    plain = jax.hessian(lambda u: jnp.sum(jax.nn.softplus(u @ VALUES["A"])) + jnp.sum(u**2))(VALUES["x"])
    assert through.shape == (3, 3)
    close(through, plain)
    close(symbolic, plain)


def test_grad_of_multi_output_component():
    fn = tg.lower([LOSS, F.tanh(X @ W)])
    through = jax.grad(lambda w: fn({**VALUES, "W": w})[0])(VALUES["W"])
    close(through, jax.grad(loss_jnp, 1)(*(VALUES[n] for n in "XWVT")))


def test_value_and_grad_under_jit():
    fn = tg.lower(LOSS)
    value, grad = jax.jit(jax.value_and_grad(lambda v: fn({**VALUES, "V": v})))(VALUES["V"])
    args = tuple(VALUES[n] for n in "XWVT")
    close(value, loss_jnp(*args))
    close(grad, jax.grad(loss_jnp, 2)(*args))
