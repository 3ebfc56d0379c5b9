"""The lowered callable under jax.jit, and with inputs sharded over several devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import tgjax as tg
import tgjax.functions as F

b, i, j, k = tg.symbols("b i j k")
x = tg.Variable("x", i)
A = tg.Variable("A", i, j)
X = tg.Variable("X", b, i)
W = tg.Variable("W", i, j)
T = tg.Variable("T", b, j)

rng = np.random.default_rng(0)
XV = jnp.asarray(rng.normal(size=(8, 3)))
WV = jnp.asarray(rng.normal(size=(3, 5)))
TV = jnp.asarray(rng.normal(size=(8, 5)))
xv = jnp.asarray(rng.normal(size=3))
AV = jnp.asarray(rng.normal(size=(3, 5)))


def close(a, b_, rtol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b_), rtol=rtol, atol=1e-12)


def loss_expr():
    return F.mean(F.pow(F.tanh(X @ W) - T, 2))


def loss_jnp(X, W, T):
    return jnp.mean((jnp.tanh(X @ W) - T) ** 2)


def test_jit_of_keyword_call_matches_eager_call():
    fn = tg.lower(F.tanh(x @ A) + x @ A)
    jitted = jax.jit(lambda x, A: fn(x=x, A=A))
    expected = jnp.tanh(xv @ AV) + xv @ AV
    close(jitted(xv, AV), expected)
    close(fn(x=xv, A=AV), expected)


def test_jit_of_dict_call_with_multiple_outputs():
    loss = loss_expr()
    fn = tg.lower([loss, loss.grad(W)])
    jitted = jax.jit(lambda values: fn(values))
    value, grad = jitted({"X": XV, "W": WV, "T": TV})
    close(value, loss_jnp(XV, WV, TV))
    close(grad, jax.grad(loss_jnp, 1)(XV, WV, TV))


def test_jit_retraces_for_new_shapes_and_stays_correct():
    fn = tg.lower(x @ A)
    jitted = jax.jit(lambda x, A: fn(x=x, A=A))
    close(jitted(xv, AV), xv @ AV)
    x2, A2 = jnp.arange(4.0), jnp.arange(8.0).reshape(4, 2)
    close(jitted(x2, A2), x2 @ A2)
    assert len(fn._programs) == 2


def test_jit_input_errors_still_raised_at_trace_time():
    fn = tg.lower(x @ A)
    jitted = jax.jit(lambda x, A: fn(x=x, A=A))
    with pytest.raises(ValueError, match=r"edge 'i' of variable 'A'"):
        jitted(xv, jnp.ones((4, 5)))


def test_jit_of_lowered_function_with_identity_output():
    S = tg.Variable("S", i=k, j=k)
    fn = tg.lower(S + 2 * tg.Delta(k, "i", "j"))
    s = jnp.asarray(rng.normal(size=(4, 4)))
    close(jax.jit(lambda s: fn(S=s))(s), s + 2 * jnp.eye(4))


def _mesh():
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 devices (conftest sets --xla_force_host_platform_device_count=4)")
    return Mesh(np.array(jax.devices()[:4]), ("d",))


def test_sharded_input_gives_unsharded_result():
    mesh = _mesh()
    loss = loss_expr()
    fn = tg.lower([loss, loss.grad(W), F.tanh(X @ W)])
    sharded_X = jax.device_put(XV, NamedSharding(mesh, PartitionSpec("d")))
    assert len(sharded_X.sharding.device_set) == 4
    sharded = fn(X=sharded_X, W=WV, T=TV)
    plain = fn(X=XV, W=WV, T=TV)
    for s, p in zip(sharded, plain):
        close(s, p, rtol=1e-12)
    close(sharded[0], loss_jnp(XV, WV, TV))
    # The batch-sized output keeps the batch sharding or is at least on the mesh.
    assert sharded[2].shape == (8, 5)


def test_sharded_inputs_under_jit():
    mesh = _mesh()
    fn = tg.lower(F.sum(F.tanh(X @ W) * T, "j"))
    spec = NamedSharding(mesh, PartitionSpec("d"))
    Xs = jax.device_put(XV, spec)
    Ts = jax.device_put(TV, spec)
    out = jax.jit(lambda X, T: fn(X=X, W=WV, T=T))(Xs, Ts)
    close(out, jnp.sum(jnp.tanh(XV @ WV) * TV, axis=1))
