"""jax.vmap over the lowered callable equals a Python loop of calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import tgjax as tg
import tgjax.functions as F

i, j, k = tg.symbols("i j k")
x = tg.Variable("x", i)
A = tg.Variable("A", i, j)
B = tg.Variable("B", j, k)

rng = np.random.default_rng(0)
XS = jnp.asarray(rng.normal(size=(6, 3)))      # batch of x
AV = jnp.asarray(rng.normal(size=(3, 4)))
AS = jnp.asarray(rng.normal(size=(6, 3, 4)))   # batch of A
BV = jnp.asarray(rng.normal(size=(4, 5)))


def close(a, b_):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b_), rtol=1e-10, atol=1e-12)


def test_vmap_over_one_input_closing_over_another():
    fn = tg.lower(F.tanh(x @ A) @ B)
    batched = jax.vmap(lambda xb: fn(x=xb, A=AV, B=BV))(XS)
    looped = jnp.stack([fn(x=xb, A=AV, B=BV) for xb in XS])
    assert batched.shape == (6, 5)
    close(batched, looped)
    close(batched, jnp.tanh(XS @ AV) @ BV)


def test_vmap_with_in_axes_none():
    fn = tg.lower(x @ A + F.sum(A, "i"))
    batched = jax.vmap(lambda x, A: fn(x=x, A=A), in_axes=(None, 0))(XS[0], AS)
    looped = jnp.stack([fn(x=XS[0], A=a) for a in AS])
    close(batched, looped)


def test_vmap_over_two_inputs_with_multiple_outputs():
    f = F.sum(F.exp(x @ A))
    fn = tg.lower([f, f.grad(x), x * x + F.sum(A, "j")])
    batched = jax.vmap(lambda x, A: fn(x=x, A=A))(XS, AS)
    looped = [fn(x=xb, A=a) for xb, a in zip(XS, AS)]
    assert isinstance(batched, tuple) and len(batched) == 3
    for n, out in enumerate(batched):
        close(out, jnp.stack([r[n] for r in looped]))


def test_vmap_of_identity_output():
    S = tg.Variable("S", i=k, j=k)
    fn = tg.lower(S + tg.Delta(k, "i", "j"))
    Ss = jnp.asarray(rng.normal(size=(3, 4, 4)))
    batched = jax.vmap(lambda s: fn(S=s))(Ss)
    close(batched, Ss + jnp.eye(4))


def test_vmap_output_axis_and_jit_compose():
    fn = tg.lower(x @ A)
    batched = jax.jit(jax.vmap(lambda a: fn(x=XS[1], A=a), out_axes=1))(AS)
    assert batched.shape == (4, 6)
    close(batched, jnp.einsum("i,bij->jb", XS[1], AS))
