"""Networks with many operands: every size of network plans, lowers and matches a NumPy/JAX reference (float64).

The planner switches search method with the number of operands (``contract._optimizer``):
chains of 13 and 40 matrices, a 12-core tensor train and deep MLP gradients reach
the methods used past 8 and past 20 operands; a deep derivative's normal form
(``test_deep.py``) the one past 200.
"""

from __future__ import annotations

import random
import string

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
import tgjax.nn as tnn
from tgjax._lower import contract


def chain(n, seed=0, name="A"):
    """``A0 @ A1 @ ... @ A{n-1}``, ``Ak`` with edges ``(ik, ik+1)`` of mixed sizes 2-4, and its arrays."""
    sizes = [(2, 3, 4, 3, 2, 4)[k % 6] for k in range(n + 1)]
    mats = [tg.Variable(f"{name}{k}", **{f"i{k}": sizes[k], f"i{k + 1}": sizes[k + 1]}) for k in range(n)]
    expr = mats[0]
    for m in mats[1:]:
        expr = expr @ m
    rng = np.random.default_rng(seed)
    # Entries near 1 in size keep a product of 40 factors well inside float64.
    arrays = {f"{name}{k}": rng.normal(size=(sizes[k], sizes[k + 1])) / np.sqrt(sizes[k]) for k in range(n)}
    return expr, mats, arrays


@pytest.mark.parametrize("n", [13, 40])
def test_chain_of_matrices_lowers(n):
    expr, _, arrays = chain(n)
    assert expr.edges == ("i0", f"i{n}")
    got = tg.lower(expr)(**arrays)
    want = np.linalg.multi_dot([arrays[f"A{k}"] for k in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_chain_gradient_with_respect_to_a_middle_matrix():
    n, middle = 13, 6
    expr, mats, arrays = chain(n, seed=1)
    grad = F.sum(expr).grad(mats[middle])
    assert grad.edges == (f"i{middle}", f"i{middle + 1}")
    got = tg.lower(grad)(**arrays)

    def total(a):
        factors = [arrays[f"A{k}"] for k in range(n)]
        factors[middle] = a
        return jnp.sum(jnp.linalg.multi_dot(factors))

    want = jax.grad(total)(jnp.asarray(arrays[f"A{middle}"]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layers", [13, 24])
def test_deep_mlp_gradient(layers):
    # the gradient's network shares the batch edge among all the layers' factors
    x = tg.Variable("x", b=3, h0=4)
    ws = [tg.Variable(f"W{k}", **{f"h{k}": 4, f"h{k + 1}": 4}) for k in range(layers)]
    h = x
    for w in ws:
        h = F.tanh(h @ w)
    wrt = layers // 2
    got_expr = F.sum(h * h).grad(ws[wrt])
    rng = np.random.default_rng(2)
    arrays = {"x": rng.normal(size=(3, 4))} | {f"W{k}": rng.normal(size=(4, 4)) for k in range(layers)}
    got = tg.lower(got_expr)(**arrays)

    def loss(w):
        h = jnp.asarray(arrays["x"])
        for k in range(layers):
            h = jnp.tanh(h @ (w if k == wrt else arrays[f"W{k}"]))
        return jnp.sum(h * h)

    want = jax.grad(loss)(jnp.asarray(arrays[f"W{wrt}"]))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def tensor_train_einsum(d):
    """The einsum equation of ``x[i...] G0[a,i0,o0,r1] ... G{d-1}[r{d-1},i,o,z] -> o...``."""
    letters = iter(string.ascii_letters)
    i = [next(letters) for _ in range(d)]
    o = [next(letters) for _ in range(d)]
    r = [next(letters) for _ in range(d + 1)]  # r[0], r[d]: the boundary ranks of size 1
    cores = [r[k] + i[k] + o[k] + r[k + 1] for k in range(d)]
    return "".join(i) + "," + ",".join(cores) + "->" + "".join(o)


def test_twelve_core_tensor_train_forward_and_gradient():
    d = 12
    in_modes, out_modes = (2,) * d, (2, 1) * (d // 2)
    layer = tnn.TensorTrainLinear(in_modes, out_modes, 2, key=jax.random.key(0))
    xs = np.random.default_rng(3).normal(size=(2, layer.in_features))
    equation = tensor_train_einsum(d)

    def reference(cores, bias, x):
        y = jnp.einsum(equation, x.reshape(in_modes), *cores, optimize="greedy")
        return y.reshape(-1) + bias

    for x in xs:
        np.testing.assert_allclose(layer(x), reference(layer.cores, layer.bias, x), rtol=1e-10, atol=1e-12)

    def loss(m):
        return jnp.sum(jnp.tanh(jax.vmap(m)(xs)) ** 2)

    def reference_loss(cores, bias):
        return jnp.sum(jnp.tanh(jax.vmap(lambda x: reference(cores, bias, x))(xs)) ** 2)

    ours = eqx.filter_grad(loss)(layer)
    theirs_cores, theirs_bias = jax.grad(reference_loss, argnums=(0, 1))(layer.cores, layer.bias)
    for a, b in zip(ours.cores, theirs_cores):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.bias, theirs_bias, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", sorted(contract._OPTIMIZERS))
def test_every_search_method_gives_a_valid_order(method):
    # each method on its own, whatever size the thresholds would send to it
    n = 13
    _, _, arrays = chain(n, seed=4)
    mats = [arrays[f"A{k}"] for k in range(n)]
    symbols = string.ascii_letters
    equation = ",".join(symbols[k] + symbols[k + 1] for k in range(n)) + "->" + symbols[0] + symbols[n]
    steps = contract._contraction_order(equation, tuple(m.shape for m in mats), method)
    assert len(steps) == n - 1
    for positions, step in steps:
        mats.append(np.einsum(step, *[mats.pop(p) for p in positions]))
    assert len(mats) == 1
    np.testing.assert_allclose(mats[0], np.linalg.multi_dot([arrays[f"A{k}"] for k in range(n)]), rtol=1e-10)


def test_each_size_gets_a_method_that_opt_einsum_accepts():
    assert {contract._optimizer(n) for n in range(2, 400)} == set(contract._OPTIMIZERS)


def test_identical_networks_are_planned_once():
    # the same network over other variables: one search serves both
    contract._contraction_order.cache_clear()
    tg.to_source(chain(21, name="A")[0])
    first = contract._contraction_order.cache_info()
    assert first.misses >= 1
    tg.to_source(chain(21, name="B")[0])
    second = contract._contraction_order.cache_info()
    assert second.misses == first.misses and second.hits > first.hits


def test_planning_leaves_the_global_random_stream_alone():
    # random greedy (past 20 operands) seeds the random module for its trials
    expr, _, arrays = chain(40, seed=5)
    contract._contraction_order.cache_clear()
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    tg.lower(expr)(**arrays)
    assert random.random() == expected


@pytest.mark.slow
def test_eight_layer_mlp_check_grads_to_second_order():
    # an 8-layer MLP with biases: every layer's gradient and Hessian against JAX
    b, *hs = tg.symbols("b h0 h1 h2 h3 h4 h5 h6 h7 h8")
    x = tg.Variable("x", b, hs[0])
    ws = [tg.Variable(f"W{k}", hs[k], hs[k + 1]) for k in range(8)]
    cs = [tg.Variable(f"c{k}", hs[k + 1]) for k in range(8)]
    h = x
    for w, c in zip(ws, cs):
        h = F.tanh(h @ w + c)
    loss = F.mean(h * h)
    rng = np.random.default_rng(3)
    values = {"x": rng.normal(size=(3, 3))}
    values |= {f"W{k}": rng.normal(size=(3, 3)) for k in range(8)} | {f"c{k}": rng.normal(size=3) for k in range(8)}
    # the first and last layers and a bias in between (every layer took 90 s of CI's 15 minutes)
    errors = tg.check_grads(loss, [ws[0], ws[7], cs[2]], values, order=2)
    assert max(errors.values()) < 1e-8
