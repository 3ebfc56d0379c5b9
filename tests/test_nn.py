"""tgjax.nn.TensorTrainLinear against its dense weight, built independently in NumPy (float64)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax.nn as tnn
from tgjax.nn.tensor_train import _contraction

IN, OUT, RANKS = (3, 4, 2), (2, 3, 5), (4, 3)


def dense_weight(cores, xp=np):
    """W[out, in] from the cores by one einsum per core, row-major over the modes
    (``xp``: numpy, or jax.numpy to differentiate through it)."""
    cores = [xp.asarray(c) for c in cores]
    w = cores[0][0]  # (n1, m1, r1)
    for core in cores[1:]:
        # w[I, O, r] core[r, n, m, s] -> w[(I n), (O m), s]
        w = xp.einsum("abr,rnms->anbms", w, core)
        a, n, b, m, s = w.shape
        w = w.reshape(a * n, b * m, s)
    return w[..., 0].T


def layer(seed=0, **kwargs):
    return tnn.TensorTrainLinear(IN, OUT, RANKS, key=jax.random.key(seed), **kwargs)


def test_shapes_and_dense_equivalent():
    m = layer()
    assert [c.shape for c in m.cores] == [(1, 3, 2, 4), (4, 4, 3, 3), (3, 2, 5, 1)]
    assert (m.in_features, m.out_features) == (24, 30)
    x = np.random.default_rng(0).normal(size=24)
    y = m(x)
    assert y.shape == (30,)
    np.testing.assert_allclose(y, dense_weight(m.cores) @ x + np.asarray(m.bias), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.dense(), dense_weight(m.cores), rtol=1e-12, atol=1e-12)


def test_without_bias():
    m = layer(use_bias=False)
    assert m.bias is None
    x = np.ones(24)
    np.testing.assert_allclose(m(x), dense_weight(m.cores) @ x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ranks", [3, [3, 3], (1, 3, 3, 1)])
def test_rank_spellings(ranks):
    m = tnn.TensorTrainLinear(IN, OUT, ranks, key=jax.random.key(0))
    assert m.ranks == (3, 3)


def test_single_core_is_a_dense_linear_map():
    m = tnn.TensorTrainLinear((6,), (5,), [], key=jax.random.key(1))
    x = np.arange(6.0)
    np.testing.assert_allclose(m(x), np.asarray(m.cores[0][0, :, :, 0]).T @ x + np.asarray(m.bias), rtol=1e-12)


def test_vmap_jit_and_gradients_match_the_dense_formula():
    m = layer()
    xs = np.random.default_rng(1).normal(size=(5, 24))
    batched = jax.vmap(m)(xs)
    np.testing.assert_allclose(batched, np.stack([m(x) for x in xs]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(eqx.filter_jit(lambda mm, x: jax.vmap(mm)(x))(m, xs), batched, rtol=1e-12, atol=1e-12)

    def loss(mm):
        return jnp.sum(jnp.tanh(jax.vmap(mm)(xs)) ** 2)

    def dense_loss(cores, bias):
        return jnp.sum(jnp.tanh(xs @ dense_weight(cores, jnp).T + bias) ** 2)

    ours = eqx.filter_grad(loss)(m)
    theirs_cores, theirs_bias = jax.grad(dense_loss, argnums=(0, 1))(m.cores, m.bias)
    for a, b in zip(ours.cores, theirs_cores):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.bias, theirs_bias, rtol=1e-10, atol=1e-12)


def test_dense_matrix_is_never_formed():
    # every intermediate of the contraction is far smaller than the dense weight
    in_modes, out_modes, ranks = (8, 8, 8), (8, 8, 8), (4, 4)
    m = tnn.TensorTrainLinear(in_modes, out_modes, ranks, key=jax.random.key(0))
    eqns = list(_all_eqns(jax.make_jaxpr(m)(jnp.ones(512)).jaxpr))
    assert any(e.primitive.name == "dot_general" for e in eqns)  # the walk reached the contraction
    biggest = max(math.prod(v.aval.shape) for e in eqns for v in e.outvars)
    assert biggest < 512 * 512 // 16, biggest


def _all_eqns(jaxpr):
    """Equations of a jaxpr and of the jaxprs nested in it (jit calls)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", None)
            if inner is not None:
                yield from _all_eqns(getattr(inner, "jaxpr", inner))


def test_contraction_is_built_once_per_shape():
    _contraction.cache_clear()
    layer(0)(np.ones(24))
    layer(1)(np.ones(24))
    assert _contraction.cache_info().misses == 1


def test_initial_weight_has_linear_layer_scale():
    m = tnn.TensorTrainLinear((8, 8, 8), (8, 8, 8), 8, key=jax.random.key(3))
    std = float(np.std(np.asarray(m.dense())))
    target = 1 / math.sqrt(3 * 512)  # eqx.nn.Linear: uniform(-1/sqrt(in), 1/sqrt(in))
    assert 0.5 * target < std < 2 * target


@pytest.mark.parametrize(
    "args, match",
    [
        (((3, 4), (2,), 2), "as many of each"),
        (((3, 0), (2, 2), 2), "in_modes must be"),
        (((3, 4), (2, 2.5), 2), "out_modes must be"),
        (((3, 4), (2, 2), [2, 2]), "ranks must be"),
        (((3, 4), (2, 2), 0), "ranks must be"),
        ((3, (2,), 2), "in_modes must be"),
    ],
)
def test_bad_configuration(args, match):
    with pytest.raises(ValueError, match=match):
        tnn.TensorTrainLinear(*args, key=jax.random.key(0))


def test_wrong_input_shape_names_the_fix():
    with pytest.raises(ValueError, match=r"shape \(24,\).*jax.vmap"):
        layer()(np.ones((2, 24)))
