"""tgjax.nn: the tensor-train, CP and Tucker layers against their dense weights, built
independently in NumPy (float64); TT-SVD compression; initial scale; bad configurations."""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax.nn as tnn
from tgjax.nn._common import lowered

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


@pytest.mark.parametrize("make", [
    lambda: tnn.TensorTrainLinear((8, 8, 8), (8, 8, 8), (4, 4), key=jax.random.key(0)),
    lambda: tnn.CPLinear((8, 8, 8), (8, 8, 8), 16, key=jax.random.key(0)),
    lambda: tnn.TuckerLinear((8, 8, 8), (8, 8, 8), 4, key=jax.random.key(0)),
], ids=["tensor_train", "cp", "tucker"])
def test_a_weight_larger_than_the_batch_input_is_never_formed(make):
    # The layer rule: a 512 x 512 weight has more entries than a batch of 256
    # inputs (the batch its order is planned for), so nothing without the batch
    # is as large as it, for one example or under vmap.
    m = make()
    for jaxpr in (jax.make_jaxpr(m)(jnp.ones(512)), jax.make_jaxpr(jax.vmap(m))(jnp.ones((64, 512)))):
        eqns = list(_all_eqns(jaxpr.jaxpr))
        assert any(e.primitive.name == "dot_general" for e in eqns)  # the walk reached the contraction
        unbatched = [v for e in eqns for v in e.outvars if 64 not in v.aval.shape]
        biggest = max(math.prod(v.aval.shape) for v in unbatched)
        assert biggest < 512 * 512, biggest


@pytest.mark.parametrize("make", [
    lambda: tnn.TensorTrainLinear((8, 8, 8, 8), (2, 2, 2, 2), 8, use_bias=False, key=jax.random.key(0)),
    lambda: tnn.CPLinear((8, 8, 8, 8), (2, 2, 2, 2), 36, use_bias=False, key=jax.random.key(0)),
], ids=["tensor_train", "cp"])
def test_a_weight_no_larger_than_the_batch_input_is_formed_where_that_is_cheapest(make):
    # 4096 -> 16: the 65,536-entry weight is smaller than a batch of 256 inputs, so
    # the order may build it, and for a batch it is the cheapest: the layer then
    # costs what the dense layer costs plus building the weight once (candidate
    # programs are compared at the batch, not per example: the tensor train's
    # per-example order had 2.4x the FLOPs).
    m = make()
    xs = jnp.ones((256, 4096), jnp.float32)
    layer_flops = jax.jit(jax.vmap(m)).lower(xs).compile().cost_analysis()["flops"]
    dense = m.dense()
    dense_flops = jax.jit(lambda x: x @ dense.T).lower(xs).compile().cost_analysis()["flops"]
    assert layer_flops <= 1.2 * dense_flops, (layer_flops, dense_flops)
    np.testing.assert_allclose(jax.vmap(m)(xs[:4]), xs[:4] @ dense.T, rtol=2e-4, atol=1e-5)


def _all_eqns(jaxpr):
    """Equations of a jaxpr and of the jaxprs nested in it (jit calls)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", None)
            if inner is not None:
                yield from _all_eqns(getattr(inner, "jaxpr", inner))


def test_contraction_is_built_once_per_shape():
    lowered.cache_clear()
    layer(0)(np.ones(24))
    layer(1)(np.ones(24))
    assert lowered.cache_info().misses == 1


def test_initial_weight_has_linear_layer_scale():
    m = tnn.TensorTrainLinear((8, 8, 8), (8, 8, 8), 8, key=jax.random.key(3))
    std = float(np.std(np.asarray(m.dense())))
    target = 1 / math.sqrt(3 * 512)  # eqx.nn.Linear: uniform(-1/sqrt(in), 1/sqrt(in))
    assert 0.5 * target < std < 2 * target


@pytest.mark.parametrize(
    "args, match",
    [
        (((3, 4), (2,), 2), "as many modes each"),
        (((3, 0), (2, 2), 2), "in_modes must be"),
        (((3, 4), (2, 2.5), 2), "out_modes must be"),
        (((3, 4), (2, 2), [2, 2]), "ranks must be"),
        (((3, 4), (2, 2), 0), "ranks must be"),
        ((0, (2,), 2), "in_modes must be positive"),
        ((3.5, (2,), 2), "in_modes must be a positive int"),
    ],
)
def test_bad_configuration(args, match):
    with pytest.raises(ValueError, match=match):
        tnn.TensorTrainLinear(*args, key=jax.random.key(0))


def test_wrong_input_shape_names_the_fix():
    with pytest.raises(ValueError, match=r"shape \(24,\).*jax.vmap"):
        layer()(np.ones((2, 24)))


# -- CP and Tucker -----------------------------------------------------------------------------


def cp_dense(factors):
    """W[out, in] = sum_r prod_k A_k[i_k, o_k, r], row-major over the modes."""
    d = len(factors)
    letters = "abcdefgh"
    ins, outs = letters[:d], letters[d:2 * d].upper()
    spec = ",".join(f"{ins[k]}{outs[k]}r" for k in range(d)) + f"->{outs}{ins}"
    w = np.einsum(spec, *[np.asarray(f) for f in factors])
    n_out = math.prod(w.shape[:d])
    return w.reshape(n_out, -1)


def tucker_dense(core, in_factors, out_factors):
    d = len(in_factors)
    s, t = "abcd"[:d], "efgh"[:d]
    ins, outs = "ijkl"[:d], "mnop"[:d]
    spec = f"{s}{t}," + ",".join(f"{ins[k]}{s[k]}" for k in range(d)) + "," + ",".join(f"{outs[k]}{t[k]}" for k in range(d))
    w = np.einsum(spec + f"->{outs}{ins}", np.asarray(core), *[np.asarray(u) for u in in_factors],
                  *[np.asarray(v) for v in out_factors])
    return w.reshape(math.prod(w.shape[:d]), -1)


def test_cp_layer_is_its_dense_weight():
    m = tnn.CPLinear(IN, OUT, 5, key=jax.random.key(0))
    assert [f.shape for f in m.factors] == [(3, 2, 5), (4, 3, 5), (2, 5, 5)]
    x = np.random.default_rng(0).normal(size=24)
    np.testing.assert_allclose(m(x), cp_dense(m.factors) @ x + np.asarray(m.bias), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.dense(), cp_dense(m.factors), rtol=1e-12, atol=1e-12)


def test_tucker_layer_is_its_dense_weight():
    m = tnn.TuckerLinear(IN, OUT, (2, 3, 2, 2, 3, 4), key=jax.random.key(0))
    assert m.core.shape == (2, 3, 2, 2, 3, 4)
    assert [u.shape for u in m.in_factors] == [(3, 2), (4, 3), (2, 2)]
    assert [v.shape for v in m.out_factors] == [(2, 2), (3, 3), (5, 4)]
    x = np.random.default_rng(0).normal(size=24)
    w = tucker_dense(m.core, m.in_factors, m.out_factors)
    np.testing.assert_allclose(m(x), w @ x + np.asarray(m.bias), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.dense(), w, rtol=1e-12, atol=1e-12)


LAYERS = [
    pytest.param(lambda key, **kw: tnn.TensorTrainLinear(IN, OUT, RANKS, key=key, **kw), id="tensor train"),
    pytest.param(lambda key, **kw: tnn.CPLinear(IN, OUT, 4, key=key, **kw), id="CP"),
    pytest.param(lambda key, **kw: tnn.TuckerLinear(IN, OUT, 2, key=key, **kw), id="Tucker"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_every_layer_works_with_vmap_filter_jit_filter_grad_and_optax(make):
    optax = pytest.importorskip("optax")
    m = make(jax.random.key(0))
    xs = np.random.default_rng(1).normal(size=(6, 24))
    ys = np.random.default_rng(2).normal(size=(6, 30))
    np.testing.assert_allclose(jax.vmap(m)(xs), xs @ np.asarray(m.dense()).T + np.asarray(m.bias), rtol=1e-10, atol=1e-12)

    def loss(model):
        return jnp.mean((jax.vmap(model)(xs) - ys) ** 2)

    # the gradient through the layer equals the gradient through its dense weight
    grads = eqx.filter_grad(loss)(m)
    params, static = eqx.partition(m, eqx.is_array)

    def dense_loss(p):
        model = eqx.combine(p, static)
        return jnp.mean((xs @ model.dense().T + model.bias - ys) ** 2)

    reference = jax.grad(dense_loss)(params)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)

    optimiser = optax.adam(0.05)
    state = optimiser.init(params)

    @eqx.filter_jit
    def step(model, state):
        value, g = eqx.filter_value_and_grad(loss)(model)
        updates, state = optimiser.update(g, state, model)
        return eqx.apply_updates(model, updates), state, value

    first = None
    for _ in range(30):
        m, state, value = step(m, state)
        first = value if first is None else first
    assert float(value) < 0.5 * float(first)  # it learns


@pytest.mark.parametrize("make, terms", [
    pytest.param(lambda key: tnn.TensorTrainLinear((4, 4, 4), (2, 4, 2), (3, 5), use_bias=False, key=key), None, id="tensor train"),
    pytest.param(lambda key: tnn.CPLinear((4, 4, 4), (2, 4, 2), 7, use_bias=False, key=key), None, id="CP"),
    pytest.param(lambda key: tnn.TuckerLinear((4, 4, 4), (2, 4, 2), (2, 3, 4, 2, 2, 1), use_bias=False, key=key), None, id="Tucker"),
    pytest.param(lambda key: tnn.TensorTrainLinear(64, 16, 2, use_bias=False, key=key), None, id="int modes"),
])
def test_the_initial_weight_has_the_variance_of_eqx_nn_linear(make, terms):
    # E[W_oi^2] = 1 / (3 in) for every entry: averaged over many initialisations
    target = 1 / (3 * 64)
    second_moments = [float(jnp.mean(make(key).dense() ** 2)) for key in jax.random.split(jax.random.key(7), 100)]
    estimate = np.mean(second_moments)
    assert abs(estimate / target - 1) < 0.15, estimate / target
    linear = eqx.nn.Linear(64, 16, key=jax.random.key(0))
    assert abs(float(jnp.mean(linear.weight ** 2)) / target - 1) < 0.1


def test_int_modes_are_split_into_balanced_factors():
    m = tnn.TensorTrainLinear(256, (2, 4, 4), 4, key=jax.random.key(0))
    assert m.in_modes == (8, 8, 4) and m.out_modes == (2, 4, 4)
    both = tnn.CPLinear(4096, 16, 3, key=jax.random.key(0))
    assert both.in_modes == (16, 16, 16) and both.out_modes == (4, 2, 2)
    assert tnn.TuckerLinear(7, (2, 3), 1, key=jax.random.key(0)).in_modes == (7, 1)


def test_ranks_beyond_what_the_modes_allow_are_clipped_with_a_warning():
    with pytest.warns(UserWarning, match=r"exceed what the modes allow"):
        m = tnn.TensorTrainLinear((2, 3), (2, 2), 50, key=jax.random.key(0))
    assert m.ranks == (4,)
    with pytest.warns(UserWarning, match=r"exceed what the modes allow"):
        t = tnn.TuckerLinear((2, 3), (2, 2), 3, key=jax.random.key(0))
    assert t.ranks == (2, 3, 2, 2)


@pytest.mark.parametrize("make, match", [
    (lambda: tnn.CPLinear(IN, OUT, 0, key=jax.random.key(0)), "rank must be one positive int"),
    (lambda: tnn.CPLinear(IN, OUT, (2, 3), key=jax.random.key(0)), "rank must be one positive int"),
    (lambda: tnn.TuckerLinear(IN, OUT, (2, 2), key=jax.random.key(0)), "ranks must be one positive int or 6"),
    (lambda: tnn.TensorTrainLinear(IN, OUT, 2, dtype=jnp.int32, key=jax.random.key(0)), "floating dtype"),
    (lambda: tnn.CPLinear(IN, (2, 3), 2, key=jax.random.key(0)), "as many modes each"),
])
def test_bad_layer_configurations_name_the_fix(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- TT-SVD ------------------------------------------------------------------------------------


def test_from_dense_is_exact_at_full_rank_and_compresses_an_eqx_linear():
    linear = eqx.nn.Linear(24, 30, key=jax.random.key(0))
    tt = tnn.TensorTrainLinear.from_dense(linear.weight, IN, OUT, tol=1e-10, bias=linear.bias)
    np.testing.assert_allclose(tt.dense(), linear.weight, rtol=1e-9, atol=1e-10)
    x = np.random.default_rng(0).normal(size=24)
    np.testing.assert_allclose(tt(x), linear(x), rtol=1e-9, atol=1e-10)
    assert tnn.TensorTrainLinear.from_dense(linear.weight, IN, OUT, ranks=2).ranks == (2, 2)
    assert tnn.TensorTrainLinear.from_dense(linear.weight, IN, OUT, ranks=2).bias is None


@pytest.mark.parametrize("tol", [0.05, 0.2, 0.5, 0.9])
def test_from_dense_keeps_the_tt_svd_error_bound(tol):
    rng = np.random.default_rng(3)
    # a weight with decaying structure, so that the ranks depend on tol
    w = sum(0.6 ** k * np.outer(rng.normal(size=30), rng.normal(size=24)) for k in range(12)) + 0.01 * rng.normal(size=(30, 24))
    tt = tnn.TensorTrainLinear.from_dense(w, IN, OUT, tol=tol)
    error = np.linalg.norm(np.asarray(tt.dense()) - w) / np.linalg.norm(w)
    assert error <= tol + 1e-9
    full = tnn.TensorTrainLinear.from_dense(w, IN, OUT, tol=0.0)
    assert all(r <= f for r, f in zip(tt.ranks, full.ranks))


def test_from_dense_warns_where_its_ranks_cost_more_than_the_dense_weight():
    noise = np.random.default_rng(5).normal(size=(32, 256))  # incompressible
    with pytest.warns(UserWarning, match=r"9,280 parameters, more than the dense weight's 8,192"):
        tnn.TensorTrainLinear.from_dense(noise, 256, 32, tol=0.1)
    rng = np.random.default_rng(6)
    low_rank = np.outer(rng.normal(size=32), rng.normal(size=256))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tnn.TensorTrainLinear.from_dense(low_rank, 256, 32, tol=0.1)


def test_from_dense_clips_ranks_and_checks_its_input():
    w = np.ones((30, 24))
    with pytest.warns(UserWarning, match="exceed what the modes allow"):
        tnn.TensorTrainLinear.from_dense(w, IN, OUT, ranks=100)
    with pytest.raises(ValueError, match=r"weight must have shape \(out, in\) = \(30, 24\)"):
        tnn.TensorTrainLinear.from_dense(w.T, IN, OUT, ranks=2)
    with pytest.raises(ValueError, match="exactly one of ranks= .* or tol="):
        tnn.TensorTrainLinear.from_dense(w, IN, OUT)
    with pytest.raises(ValueError, match="tol must be a non-negative number"):
        tnn.TensorTrainLinear.from_dense(w, IN, OUT, tol=-1)
    with pytest.raises(ValueError, match=r"bias must have shape \(30,\)"):
        tnn.TensorTrainLinear.from_dense(w, IN, OUT, ranks=2, bias=np.ones(3))


@pytest.mark.slow
def test_a_tensor_train_layer_runs_where_its_dense_weight_cannot_exist():
    """65536 -> 65536, modes (16, 16, 16, 16), rank 16, batch 64: the dense weight would take
    16 GiB (float32). Forward and gradient run in float32, and no array is larger than
    batch x max(in, out) x rank (67,108,864 entries, 256 MiB)."""
    from costs import largest_intermediate

    layer = tnn.TensorTrainLinear((16, 16, 16, 16), (16, 16, 16, 16), 16, dtype=jnp.float32, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (64, 65536), jnp.float32)
    bound = 64 * 65536 * 16

    def loss(model, x):
        return jnp.sum(jax.vmap(model)(x) ** 2)

    y = jax.jit(jax.vmap(layer))(x)
    grads = eqx.filter_jit(eqx.filter_grad(loss))(layer, x)
    assert y.shape == (64, 65536) and bool(jnp.all(jnp.isfinite(y)))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads.cores)
    assert largest_intermediate(lambda x: jax.vmap(layer)(x), x) <= bound
    assert largest_intermediate(lambda x: eqx.filter_grad(loss)(layer, x), x) <= bound


# -- the tensor-train embedding ------------------------------------------------------------


def test_an_embedding_lookup_is_the_dense_tables_row():
    emb = tnn.TTEmbedding(1000, 64, rank=8, key=jax.random.key(0))
    assert (emb.in_modes, emb.out_modes, emb.ranks) == ((10, 10, 10), (4, 4, 4), (8, 8))
    table = emb.dense()
    assert table.shape == (1000, 64)
    assert 0.8 < float(table.std()) < 1.25  # eqx.nn.Embedding's entries have variance 1
    indices = jnp.array([0, 5, 999, 123])
    np.testing.assert_allclose(jax.vmap(emb)(indices), table[indices], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(emb(7), table[7], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(emb(np.int64(8)), table[8], rtol=1e-5, atol=1e-5)


def test_an_embedding_covers_a_row_count_its_modes_do_not_split():
    emb = tnn.TTEmbedding(1_000_003, 16, rank=4, key=jax.random.key(1))  # a prime
    assert math.prod(emb.in_modes) >= 1_000_003 and max(emb.in_modes) <= 101
    looked_up = jax.vmap(emb)(jnp.array([0, 1_000_002]))
    assert looked_up.shape == (2, 16)
    digits = np.unravel_index(1_000_002, emb.in_modes)
    cores = [np.asarray(c)[:, k] for c, k in zip(emb.cores, digits)]
    row = cores[0][0]
    for core in cores[1:]:
        row = np.einsum("...a,aob->...ob", row, core)
    np.testing.assert_allclose(looked_up[1], row.reshape(-1), rtol=1e-4, atol=1e-5)


def test_an_embedding_under_jit_clamps_as_jax_indexing_does():
    emb = tnn.TTEmbedding(100, 8, rank=3, key=jax.random.key(2))
    table = emb.dense()
    got = jax.jit(jax.vmap(emb))(jnp.array([-1, 100, 5000, 3]))
    np.testing.assert_allclose(got, table[jnp.array([-1, 100, 5000, 3])], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("index, match", [
    (100, "index 100 is out of range for 100 embeddings"),
    (-1, "index -1 is out of range"),
    (2.0, "must be an integer; got dtype float"),
    (True, "must be an integer; got dtype bool"),
    (np.array([1, 2]), r"one integer index; got an array of shape \(2,\).*jax.vmap"),
])
def test_a_bad_embedding_index_names_the_problem(index, match):
    emb = tnn.TTEmbedding(100, 8, rank=3, key=jax.random.key(2))
    with pytest.raises(ValueError, match=match):
        emb(index)


def test_embedding_gradients_are_the_dense_tables():
    emb = tnn.TTEmbedding(64, 8, in_modes=(4, 4, 4), out_modes=(2, 2, 2), rank=3, key=jax.random.key(3))
    indices = jnp.array([1, 2, 3, 3, 63])

    def loss(m):
        return jnp.sum(jnp.tanh(jax.vmap(m)(indices)))

    def dense_loss(m):
        return jnp.sum(jnp.tanh(m.dense()[indices]))

    ours, theirs = eqx.filter_grad(loss)(emb), eqx.filter_grad(dense_loss)(emb)
    for a, b in zip(ours.cores, theirs.cores):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_embedding_from_dense_keeps_the_tt_svd_error_bound_and_is_exact_at_full_rank():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((60, 8))  # 60 rows: modes (4, 4, 4) cover them with padding
    for tol in (0.1, 0.9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a random table barely compresses
            emb = tnn.TTEmbedding.from_dense(table, tol=tol)
        assert np.linalg.norm(emb.dense() - table) <= tol * np.linalg.norm(table) * (1 + 1e-6)
    with pytest.warns(UserWarning, match="more than the table"):
        exact = tnn.TTEmbedding.from_dense(table, tol=1e-9)
    np.testing.assert_allclose(exact.dense(), table, atol=1e-6)
    ranked = tnn.TTEmbedding.from_dense(table, rank=2)
    assert ranked.ranks == (2, 2)
    additive = np.outer(np.arange(1.0, 65.0), np.ones(8))  # row i is i + 1: tensor-train rank 2
    assert tnn.TTEmbedding.from_dense(additive, tol=1e-6).ranks == (2, 2)


@pytest.mark.parametrize("call, match", [
    (lambda: tnn.TTEmbedding(0, 8, rank=2, key=jax.random.key(0)), "num_embeddings must be a positive int"),
    (lambda: tnn.TTEmbedding(10, 8, in_modes=(2, 2), out_modes=(2, 4), rank=2, key=jax.random.key(0)),
     r"in_modes \(2, 2\) cover 4 rows, fewer than num_embeddings = 10"),
    (lambda: tnn.TTEmbedding(10, 8, out_modes=(2, 2), rank=2, key=jax.random.key(0)),
     r"out_modes \(2, 2\) multiply to 4, not embedding_dim = 8"),
    (lambda: tnn.TTEmbedding.from_dense(np.ones((4, 4)), rank=2, tol=0.1), "exactly one of rank= .* or tol="),
    (lambda: tnn.TTEmbedding.from_dense(np.ones(4), tol=0.1), r"2-D \(num_embeddings, embedding_dim\) array"),
])
def test_bad_embedding_configurations_name_the_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- CP and Tucker from a dense weight --------------------------------------------------------


def _low_rank_cp_weight(rank, seed=1):
    """A (16, 64) weight that is exactly a rank-``rank`` CP layer's, modes (4, 4, 4) -> (2, 2, 4)."""
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, m, rank)) for n, m in ((4, 2), (4, 2), (4, 4))]
    return np.einsum("aor,bpr,cqr->opqabc", *factors).reshape(16, 64)


def test_cp_from_dense_recovers_a_low_rank_weight_and_reports_its_error():
    w = _low_rank_cp_weight(3)
    cp = tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=3, bias=np.arange(16.0))
    assert cp.from_dense_error < 1e-5
    np.testing.assert_allclose(cp.dense(), w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cp.bias, np.arange(16.0))
    assert tnn.CPLinear((4, 4, 4), (2, 2, 4), 3, key=jax.random.key(0)).from_dense_error is None
    coarse = tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=1)
    actual = np.linalg.norm(coarse.dense() - w) / np.linalg.norm(w)
    assert 0.05 < coarse.from_dense_error == pytest.approx(actual, rel=1e-4)
    more = tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=2)
    assert more.from_dense_error < coarse.from_dense_error


def test_cp_from_dense_warns_and_checks_its_input():
    w = _low_rank_cp_weight(2)
    with pytest.warns(UserWarning, match="more than the dense weight"):
        tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=40, iters=2)
    with pytest.raises(ValueError, match=r"weight must have shape \(out, in\) = \(16, 64\)"):
        tnn.CPLinear.from_dense(w.T, (4, 4, 4), (2, 2, 4), rank=2)
    with pytest.raises(ValueError, match="rank must be one positive int"):
        tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=0)
    with pytest.raises(ValueError, match="iters must be a non-negative int"):
        tnn.CPLinear.from_dense(w, (4, 4, 4), (2, 2, 4), rank=2, iters=-1)


@pytest.mark.parametrize("tol", [0.05, 0.3, 0.6])
def test_tucker_from_dense_keeps_the_hosvd_error_bound(tol):
    rng = np.random.default_rng(2)
    # a weight with decaying structure, so that the tolerance picks ranks below full
    u = [np.linalg.qr(rng.standard_normal((m, m)))[0] * (0.4 ** np.arange(m)) for m in (2, 2, 4, 4, 4, 4)]
    core = rng.standard_normal((2, 2, 4, 4, 4, 4))
    w = np.einsum("abcdef,pa,qb,rc,id,je,kf->pqrijk", core, *u).reshape(16, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tk = tnn.TuckerLinear.from_dense(w, (4, 4, 4), (2, 2, 4), tol=tol)
    assert np.linalg.norm(tk.dense() - w) <= tol * np.linalg.norm(w) * (1 + 1e-5)
    assert len(tk.ranks) == 6


def test_tucker_from_dense_is_exact_at_full_rank_and_takes_fixed_ranks():
    linear = eqx.nn.Linear(64, 16, key=jax.random.key(0))
    with pytest.warns(UserWarning, match="more than the dense weight"):
        tk = tnn.TuckerLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4), tol=0.0, bias=linear.bias)
    np.testing.assert_allclose(tk.dense(), linear.weight, atol=1e-5)
    np.testing.assert_allclose(tk.bias, linear.bias)
    assert tnn.TuckerLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4), ranks=2).ranks == (2,) * 6
    with pytest.warns(UserWarning, match="exceed what the modes allow"):
        clipped = tnn.TuckerLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4), ranks=3)
    assert clipped.ranks == (3, 3, 3, 2, 2, 3)
    with pytest.raises(ValueError, match="exactly one of ranks= .* or tol="):
        tnn.TuckerLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4))
    with pytest.raises(ValueError, match="tol must be a non-negative number"):
        tnn.TuckerLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4), tol=-1)
