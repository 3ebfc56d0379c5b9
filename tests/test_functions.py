"""The function library ``tgjax.functions`` against plain JAX, in float64.

For every function: the lowered value equals ``jnp``/``jax.nn`` and the
gradient and Hessian of a scalar built from it equal JAX autodiff
(``tg.check_grads``). Then stability at extreme inputs, symbolic identities,
two small models (layer norm, an attention head), user-defined elementwise
functions, JAX-like domain behaviour (nan/inf) and errors on bad input.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._lower.reference import evaluate

RTOL = 1e-9
B, C, N = 3, 4, 3  # batch, class and matrix sizes
b, c, d, n, t_, k = tg.symbols("b c d n t k")
nrows, ncols = tg.symbols("nrows ncols")  # sizes whose names cannot turn up in a message by chance

T = tg.Variable("T", b, c)        # a 2-edge tensor: along one edge, the other batched
Y = tg.Variable("Y", b, c)        # targets, and fixed weights for scalar losses
X = tg.Variable("X", i=n, j=n)    # a square matrix
XB = tg.Variable("XB", b, i=n, j=n)
CM = tg.Variable("CM", i=n, j=n)  # fixed weights with X's edges
z = tg.Variable("z", c)
y = tg.Variable("y", c)

rng = np.random.default_rng(0)
T_VAL = rng.normal(size=(B, C))
T_POS = rng.uniform(0.5, 2.0, size=(B, C))
T_AWAY = np.where(np.abs(T_VAL) < 0.2, T_VAL + np.sign(T_VAL + 1e-3) * 0.3, T_VAL)  # away from 0
Y_VAL = rng.normal(size=(B, C))
Y_PROB = rng.dirichlet(np.ones(C), size=B)  # target rows of probabilities
X_VAL = rng.normal(size=(N, N)) + 4 * np.eye(N)  # non-symmetric, well conditioned
XB_VAL = rng.normal(size=(B, N, N)) + 4 * np.eye(N)
CM_VAL = rng.normal(size=(N, N))


def close(ours, theirs, rtol=RTOL):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(theirs), initial=0.0))))


# -- 1. elementwise functions -----------------------------------------------------

ELEMENTWISE = [
    pytest.param(F.exp, jnp.exp, T_VAL, id="exp"),
    pytest.param(F.log, jnp.log, T_POS, id="log"),
    pytest.param(F.sqrt, jnp.sqrt, T_POS, id="sqrt"),
    pytest.param(lambda u: F.pow(u, 3), lambda a: a**3, T_VAL, id="pow 3"),
    pytest.param(lambda u: F.pow(u, 1.5), lambda a: a**1.5, T_POS, id="pow 1.5"),
    pytest.param(lambda u: F.pow(u, 1 / 3), lambda a: a ** (1 / 3), T_POS, id="pow 1/3"),
    pytest.param(lambda u: F.pow(u, -2), lambda a: a**-2.0, T_POS, id="pow -2"),
    pytest.param(F.tanh, jnp.tanh, T_VAL, id="tanh"),
    pytest.param(F.sigmoid, jax.nn.sigmoid, T_VAL, id="sigmoid"),
    pytest.param(F.relu, jax.nn.relu, T_AWAY, id="relu"),
    pytest.param(F.abs, jnp.abs, T_AWAY, id="abs"),
    pytest.param(F.softplus, jax.nn.softplus, T_VAL, id="softplus"),
    pytest.param(F.gelu, lambda a: jax.nn.gelu(a, approximate=False), T_VAL, id="gelu"),
    pytest.param(lambda u: F.gelu(u, approximate=True), lambda a: jax.nn.gelu(a, approximate=True), T_VAL,
                 id="gelu tanh form"),
    pytest.param(F.erf, jax.scipy.special.erf, T_VAL, id="erf"),
    pytest.param(F.sign, jnp.sign, T_AWAY, id="sign"),
    pytest.param(F.sin, jnp.sin, T_VAL, id="sin"),
    pytest.param(F.cos, jnp.cos, T_VAL, id="cos"),
    pytest.param(F.log1p, jnp.log1p, T_POS, id="log1p"),
    pytest.param(F.expm1, jnp.expm1, T_VAL, id="expm1"),
]


S_VAL = np.where(np.arange(B * C).reshape(B, C) % 3 == 0, T_VAL, Y_VAL)  # ties with Y_VAL in a third of the entries


@pytest.mark.parametrize("f, ref", [
    pytest.param(F.maximum, jnp.maximum, id="maximum"), pytest.param(F.minimum, jnp.minimum, id="minimum"),
])
@pytest.mark.parametrize("second", [pytest.param(S_VAL, id="ties"), pytest.param(Y_VAL, id="apart")])
def test_maximum_and_minimum_value_grad_and_hessian_with_ties_split_as_jax(f, ref, second):
    S = tg.Variable("S", b, c)
    loss = F.sum(f(T, S) ** 2 * Y)
    value = tg.lower(f(T, S))(T=T_VAL, S=second)
    close(value, ref(T_VAL, second))
    grads = tg.lower([loss.grad(T), loss.grad(S)])(T=T_VAL, S=second, Y=Y_VAL)
    ref_loss = lambda t, s: jnp.sum(ref(t, s) ** 2 * Y_VAL)  # noqa: E731
    for ours, theirs in zip(grads, jax.grad(ref_loss, argnums=(0, 1))(T_VAL, second)):
        close(ours, theirs)
    errors = tg.check_grads(loss, [T, S], {"T": T_VAL, "S": second, "Y": Y_VAL}, order=2, rtol=RTOL)
    assert ("T", 2) in errors


def test_maximum_and_minimum_take_a_number_on_either_side():
    close(tg.lower(F.maximum(T, 0))(T=T_VAL), np.maximum(T_VAL, 0))
    close(tg.lower(F.minimum(0.5, T))(T=T_VAL), np.minimum(0.5, T_VAL))
    close(tg.lower(F.sum(F.maximum(T, 0)).grad(T))(T=T_AWAY), (T_AWAY > 0).astype(float))
    with pytest.raises(TypeError, match="at least one argument must be a tensor"):
        F.maximum(1, 2)


def test_where_picks_entries_and_sends_the_derivative_to_the_side_chosen():
    M = tg.Variable("M", b, c)
    mask = (np.arange(B * C).reshape(B, C) % 2).astype(float)
    close(tg.lower(F.where(M, T, Y))(M=mask, T=T_VAL, Y=Y_VAL), np.where(mask != 0, T_VAL, Y_VAL))
    # a number on one side, broadcast as + broadcasts, and no 0 * inf where it is masked out
    close(tg.lower(F.where(M, T, -1e9))(M=mask, T=T_VAL), np.where(mask != 0, T_VAL, -1e9))
    close(tg.lower(F.where(M, 1.0, -1.0))(M=mask), np.where(mask != 0, 1.0, -1.0))  # numbers on both sides
    loss = F.sum(F.where(M, F.tanh(T), -1e9 * T) * Y)

    def ref(t):
        return jnp.sum(jnp.where(mask != 0, jnp.tanh(t), -1e9 * t) * Y_VAL)

    close(tg.lower(loss.grad(T))(M=mask, T=T_VAL, Y=Y_VAL), jax.grad(ref)(T_VAL))
    tg.check_grads(loss, [T], {"M": mask, "T": T_VAL, "Y": Y_VAL}, order=2, rtol=RTOL)
    with pytest.raises(TypeError, match="the mask must be a tensor expression"):
        F.where(1.0, T, Y)


def test_where_takes_a_boolean_mask_array_and_only_a_mask():
    # API.md: the mask is a boolean or 0/1 tensor
    M = tg.Variable("M", b, c)
    mask = np.arange(B * C).reshape(B, C) % 3 == 0
    loss = F.sum(F.where(M, F.tanh(T), 0.0) * Y)
    value, grad = tg.lower([loss, loss.grad(T)])(M=mask, T=T_VAL, Y=Y_VAL)
    ref = lambda t: jnp.sum(jnp.where(mask, jnp.tanh(t), 0.0) * Y_VAL)  # noqa: E731
    close(value, ref(T_VAL))
    close(grad, jax.grad(ref)(T_VAL))
    with pytest.raises(TypeError, match="boolean array.*only as an F.where mask"):
        tg.lower(F.sum(M * T))(M=mask, T=T_VAL)


def test_layer_norm_matches_the_jax_one_and_its_gradient():
    d = tg.symbols("d")
    h = tg.Variable("h", b, d)
    values = rng.normal(size=(B, 6)) * 3 + 1

    def ref(v):
        centred = v - v.mean(-1, keepdims=True)
        return centred / jnp.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-5)

    close(tg.lower(F.layer_norm(h, "d"))(h=values), ref(values))
    loss = F.sum(F.layer_norm(h, "d") * F.layer_norm(h, "d") ** 2)
    close(tg.lower(loss.grad(h))(h=values), jax.grad(lambda v: jnp.sum(ref(v) ** 3))(values))
    with pytest.raises(ValueError, match="'q' is not a free edge"):
        F.layer_norm(h, "q")


def test_log1p_and_expm1_undo_each_other_and_stay_accurate_near_zero():
    assert F.log1p(F.expm1(T)).simplify() == T
    assert F.expm1(F.log1p(T)).simplify() == T
    tiny = np.full((B, C), 1e-12)
    close(tg.lower(F.log1p(T))(T=tiny), np.log1p(tiny))
    close(tg.lower(F.expm1(T))(T=tiny), np.expm1(tiny))


def test_symmetrize_is_the_mean_over_orders_and_symmetrizing_twice_is_once():
    sym = F.symmetrize(X, ["i", "j"])
    close(tg.lower(sym)(X=X_VAL), (X_VAL + X_VAL.T) / 2)
    assert F.symmetrize(sym, ["j", "i"]).simplify() == sym.simplify()
    assert (sym - sym.rename(i="j", j="i")).simplify() == tg.Zero(sym.shape)
    cube = tg.Variable("K", i=n, j=n, k=n)
    values = rng.normal(size=(N, N, N))
    expected = sum(np.transpose(values, p) for p in __import__("itertools").permutations(range(3))) / 6
    close(tg.lower(F.symmetrize(cube, ["i", "j", "k"]))(K=values), expected)
    loss = F.sum(F.symmetrize(X, ["i", "j"]) * CM) ** 2
    tg.check_grads(loss, [X], {"X": X_VAL, "CM": CM_VAL}, order=2, rtol=RTOL)


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.symmetrize(X, "ij"), TypeError, "a list of edge names"),
    (lambda: F.symmetrize(X, ["i"]), ValueError, "at least two edges"),
    (lambda: F.symmetrize(X, ["i", "q"]), ValueError, "'q' is not a free edge"),
    (lambda: F.symmetrize(T, ["b", "c"]), ValueError, "must have one size"),
])
def test_symmetrize_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("f, ref, value", ELEMENTWISE)
def test_elementwise_value_grad_and_hessian(f, ref, value):
    expr = f(T)
    assert expr.edges == ("b", "c")
    loss = F.sum(expr * Y)
    out, total = tg.lower([expr, loss])(T=value, Y=Y_VAL)
    close(out, ref(value))
    close(total, jnp.sum(ref(value) * Y_VAL))
    errors = tg.check_grads(loss, [T], {"T": value, "Y": Y_VAL}, order=2, rtol=RTOL)
    assert set(errors) == {("T", 1), ("T", 2)}


def test_pow_fractional_exponent_matches_rational_power():
    # 1/3 is not a short rational after float rounding; the value must still be the cube root
    close(tg.lower(F.pow(T, 1 / 3))(T=T_POS), np.cbrt(T_POS))


# -- 1. along one edge: both the first and the second edge ----------------------------

ALONG = [
    pytest.param(lambda u, e: F.softmax(u, e), lambda a, ax: jax.nn.softmax(a, axis=ax), id="softmax"),
    pytest.param(lambda u, e: F.log_softmax(u, e), lambda a, ax: jax.nn.log_softmax(a, axis=ax), id="log_softmax"),
    pytest.param(lambda u, e: F.logsumexp(u, e), lambda a, ax: jax.nn.logsumexp(a, axis=ax), id="logsumexp"),
]
EDGES = [pytest.param("b", 0, id="along first edge"), pytest.param("c", 1, id="along second edge")]


@pytest.mark.parametrize("edge, axis", EDGES)
@pytest.mark.parametrize("f, ref", ALONG)
def test_along_value_grad_and_hessian(f, ref, edge, axis):
    expr = f(T, edge)
    expected = ref(jnp.asarray(T_VAL), axis)
    other = "c" if edge == "b" else "b"
    assert set(expr.edges) == ({"b", "c"} if expected.ndim == 2 else {other})
    weights = Y if expected.ndim == 2 else F.sum(Y, edge)
    loss = F.sum(expr * weights)
    w_val = Y_VAL if expected.ndim == 2 else Y_VAL.sum(axis=axis)
    out, total = tg.lower([expr, loss])(T=T_VAL, Y=Y_VAL)
    close(out, expected)
    close(total, jnp.sum(expected * w_val))
    tg.check_grads(loss, [T], {"T": T_VAL, "Y": Y_VAL}, order=2, rtol=RTOL)


def _cross_entropy_jnp(logits, target, axis):
    return -jnp.sum(target * jax.nn.log_softmax(logits, axis=axis), axis=axis)


@pytest.mark.parametrize("edge, axis", EDGES)
def test_cross_entropy_value_grad_and_hessian(edge, axis):
    expr = F.cross_entropy(T, Y, edge)
    other = "c" if edge == "b" else "b"
    assert expr.edges == (other,)
    close(tg.lower(expr)(T=T_VAL, Y=Y_VAL), _cross_entropy_jnp(T_VAL, Y_VAL, axis))
    loss = F.sum(expr)
    tg.check_grads(loss, [T, Y], {"T": T_VAL, "Y": Y_VAL}, order=2, rtol=RTOL)


def test_softmax_on_transposed_layout():
    # edges declared (c, b): the result axes follow expr.edges, not a fixed layout
    U = tg.Variable("U", c, b)
    u_val = T_VAL.T
    expr = F.softmax(U, "c")
    assert expr.edges == ("c", "b")
    close(tg.lower(expr)(U=u_val), jax.nn.softmax(u_val, axis=0))


# -- 1. reductions, dot, frobenius --------------------------------------------------

def test_sum_and_mean_over_named_edges():
    exprs = [F.sum(T, "b"), F.sum(T, "c"), F.sum(T), F.mean(T, "b"), F.mean(T, ["c"]), F.mean(T), F.sum(T, ["b", "c"])]
    outs = tg.lower(exprs)(T=T_VAL)
    expected = [T_VAL.sum(0), T_VAL.sum(1), T_VAL.sum(), T_VAL.mean(0), T_VAL.mean(1), T_VAL.mean(), T_VAL.sum()]
    for o, x in zip(outs, expected):
        close(o, x)
    assert exprs[0].edges == ("c",) and exprs[1].edges == ("b",) and exprs[2].edges == ()


def test_sum_mean_grads():
    loss = F.sum(F.pow(F.mean(T, "b"), 2)) + F.sum(F.pow(F.sum(T, "c"), 3))
    close(tg.lower(loss)(T=T_VAL), np.sum(T_VAL.mean(0) ** 2) + np.sum(T_VAL.sum(1) ** 3))
    tg.check_grads(loss, [T], {"T": T_VAL}, order=2, rtol=RTOL)


def test_dot_contracts_only_named_edges():
    full = F.dot(T, Y, ["b", "c"])
    rows = F.dot(T, Y, "c")  # b shared but not named: elementwise, stays free
    assert full.edges == () and rows.edges == ("b",)
    o_full, o_rows = tg.lower([full, rows])(T=T_VAL, Y=Y_VAL)
    close(o_full, np.sum(T_VAL * Y_VAL))
    close(o_rows, np.sum(T_VAL * Y_VAL, axis=1))
    loss = F.sum(F.pow(rows, 2))
    tg.check_grads(loss, [T, Y], {"T": T_VAL, "Y": Y_VAL}, order=2, rtol=RTOL)


def test_frobenius2():
    loss = F.frobenius2(T)
    assert loss.edges == ()
    close(tg.lower(loss)(T=T_VAL), np.sum(T_VAL**2))
    tg.check_grads(loss, [T], {"T": T_VAL}, order=2, rtol=RTOL)


# -- 1. linear algebra ----------------------------------------------------------------

def test_trace():
    expr = F.trace(X)
    assert expr.edges == ()
    close(tg.lower(expr)(X=X_VAL), np.trace(X_VAL))
    batched = F.trace(XB, ("i", "j"))
    assert batched.edges == ("b",)
    close(tg.lower(batched)(XB=XB_VAL), np.trace(XB_VAL, axis1=1, axis2=2))
    tg.check_grads(F.pow(F.trace(X), 2), [X], {"X": X_VAL}, order=2, rtol=RTOL)


def test_inverse_value_and_grads():
    expr = F.inverse(X)
    assert expr.edges == ("i", "j")
    close(tg.lower(expr)(X=X_VAL), jnp.linalg.inv(X_VAL))
    loss = F.sum(expr * CM)
    close(tg.lower(loss)(X=X_VAL, CM=CM_VAL), jnp.sum(jnp.linalg.inv(X_VAL) * CM_VAL))
    tg.check_grads(loss, [X], {"X": X_VAL, "CM": CM_VAL}, order=2, rtol=RTOL)


def test_inverse_batched_over_other_edge():
    expr = F.inverse(XB, ("i", "j"))
    assert expr.edges == ("b", "i", "j")
    close(tg.lower(expr)(XB=XB_VAL), jnp.linalg.inv(XB_VAL))


def test_inverse_with_edges_named_in_reverse():
    # X laid out as (j, i) is X^T; its inverse laid out back as (i, j) is X^{-1} again
    reversed_, round_trip = tg.lower([F.inverse(X, ("j", "i")), F.inverse(F.inverse(X), ("j", "i"))])(X=X_VAL)
    close(reversed_, jnp.linalg.inv(X_VAL))
    close(round_trip, X_VAL)


def test_det_value_and_grads():
    expr = F.det(X)
    assert expr.edges == ()
    close(tg.lower(expr)(X=X_VAL), jnp.linalg.det(X_VAL))
    loss = F.det(X) * 2.5
    tg.check_grads(loss, [X], {"X": X_VAL}, order=2, rtol=RTOL)
    batched = F.det(XB, ("i", "j"))
    assert batched.edges == ("b",)
    close(tg.lower(batched)(XB=XB_VAL), jnp.linalg.det(XB_VAL))


def test_logdet_value_and_grads():
    expr = F.log(F.det(X))
    assert expr.edges == ()
    close(tg.lower(expr)(X=X_VAL), jnp.log(jnp.linalg.det(X_VAL)))
    tg.check_grads(expr * 1.5, [X], {"X": X_VAL}, order=2, rtol=RTOL)


def test_linear_algebra_against_reference_evaluator():
    exprs = [F.inverse(X), F.det(X), F.trace(X), F.log(F.det(X))]
    for e, o in zip(exprs, tg.lower(exprs)(X=X_VAL)):
        close(o, evaluate(e, {"X": X_VAL}))


# -- 2. extreme inputs ------------------------------------------------------------------

BIG = np.array([1000.0, 1000.5, 999.0, 1001.0])
BIG2 = np.stack([BIG, BIG - 2000.0, BIG[::-1]])  # (b, c): rows near +1000 and -1000
PROB = np.array([0.1, 0.2, 0.3, 0.4])


def test_logsumexp_log_softmax_cross_entropy_at_large_logits():
    exprs = [F.logsumexp(z, "c"), F.log_softmax(z, "c"), F.cross_entropy(z, y, "c"), F.softmax(z, "c")]
    outs = tg.lower(exprs)(z=BIG, y=PROB)
    expected = [
        jax.nn.logsumexp(BIG),
        jax.nn.log_softmax(BIG),
        -jnp.sum(PROB * jax.nn.log_softmax(BIG)),
        jax.nn.softmax(BIG),
    ]
    for o, x in zip(outs, expected):
        assert np.all(np.isfinite(o))
        close(o, x)


def test_along_edge_at_large_logits_batched():
    exprs = [F.logsumexp(T, "c"), F.log_softmax(T, "c"), F.softmax(T, "c"), F.cross_entropy(T, Y, "c")]
    outs = tg.lower(exprs)(T=BIG2, Y=Y_PROB)
    expected = [
        jax.nn.logsumexp(BIG2, axis=1),
        jax.nn.log_softmax(BIG2, axis=1),
        jax.nn.softmax(BIG2, axis=1),
        _cross_entropy_jnp(BIG2, Y_PROB, 1),
    ]
    for o, x in zip(outs, expected):
        assert np.all(np.isfinite(o))
        close(o, x)


def test_cross_entropy_gradient_at_large_logits():
    loss = F.sum(F.cross_entropy(T, Y, "c"))
    g = tg.lower(loss.grad(T))(T=BIG2, Y=Y_PROB)
    expected = jax.grad(lambda a: jnp.sum(_cross_entropy_jnp(a, Y_PROB, 1)))(jnp.asarray(BIG2))
    assert np.all(np.isfinite(g))
    close(g, expected)


def test_hand_written_log_softmax_is_stable():
    expr = F.log(F.softmax(z, "c"))
    assert "logsumexp" in tg.to_source(expr)
    out = tg.lower(expr)(z=BIG)
    assert np.all(np.isfinite(out))
    close(out, jax.nn.log_softmax(BIG))


def test_hand_written_logsumexp_is_stable():
    expr = F.log(F.sum(F.exp(z), "c"))
    assert "logsumexp" in tg.to_source(expr)
    out = tg.lower(expr)(z=BIG)
    assert np.isfinite(out)
    close(out, jax.nn.logsumexp(BIG))


def test_hand_written_logsumexp_batched_is_stable():
    expr = F.log(F.sum(F.exp(T), "c"))
    assert "logsumexp" in tg.to_source(expr)
    close(tg.lower(expr)(T=BIG2), jax.nn.logsumexp(BIG2, axis=1))


ZSPREAD = np.array([0.0, -800.0, 1.0, 2.0])  # exp(-800) underflows to 0 in float64


def test_hand_written_log_softmax_gradient_is_stable():
    loss = F.sum(y * F.log(F.softmax(z, "c")))
    g = tg.lower(loss.grad(z))(z=ZSPREAD, y=PROB)
    expected = jax.grad(lambda a: jnp.sum(PROB * jax.nn.log_softmax(a)))(jnp.asarray(ZSPREAD))
    assert np.all(np.isfinite(g))
    close(g, expected)


def test_hand_written_log_softmax_gradient_after_simplify_is_stable():
    loss = F.sum(y * F.log(F.softmax(z, "c"))).simplify()
    g = tg.lower(loss.grad(z))(z=ZSPREAD, y=PROB)
    close(g, jax.grad(lambda a: jnp.sum(PROB * jax.nn.log_softmax(a)))(jnp.asarray(ZSPREAD)))


def test_hand_written_logsumexp_gradient_is_stable():
    g = tg.lower(F.log(F.sum(F.exp(z), "c")).grad(z))(z=BIG)
    assert np.all(np.isfinite(g))
    close(g, jax.nn.softmax(BIG))


def test_logdet_of_tiny_matrix_does_not_underflow():
    expr = F.log(F.det(X))
    assert "matrix_logdet" in tg.to_source(expr)
    out = tg.lower(expr)(X=1e-200 * np.eye(3))
    assert np.isfinite(out)
    close(out, 3 * math.log(1e-200), rtol=1e-12)


def test_logdet_of_matrix_with_negative_determinant_is_nan_like_jnp_log():
    m = np.diag([1.0, 2.0, -3.0])
    out = tg.lower(F.log(F.det(X)))(X=m)
    assert np.isnan(out) and np.isnan(jnp.log(jnp.linalg.det(m)))


def test_sigmoid_and_tanh_saturate():
    v = np.array([-50.0, 50.0, -30.0, 30.0])
    x = tg.Variable("x", c)
    sig, th = tg.lower([F.sigmoid(x), F.tanh(x)])(x=v)
    close(sig, jax.nn.sigmoid(v))
    close(th, jnp.tanh(v))
    assert sig[0] > 0 and sig[1] == 1.0 and th[2] == -1.0 and th[3] == 1.0
    g = tg.lower(F.sum(F.sigmoid(x)).grad(x))(x=v)
    close(g, jax.grad(lambda a: jnp.sum(jax.nn.sigmoid(a)))(jnp.asarray(v)))


# -- 3. symbolic identities ---------------------------------------------------------------

def test_inverse_of_inverse_is_identity():
    assert F.inverse(F.inverse(X)).simplify() == X.simplify()


@pytest.mark.parametrize(
    "build, expected",
    [
        pytest.param(lambda: X @ F.inverse(X).rename(i="j", j="k"), lambda: tg.Delta(n, "i", "k"), id="X X^-1"),
        pytest.param(lambda: F.inverse(X) @ X.rename(i="j", j="k"), lambda: tg.Delta(n, "i", "k"), id="X^-1 X"),
        pytest.param(lambda: F.trace(X.rename(j="k") @ F.inverse(X).rename(i="k")), lambda: tg.Delta(n), id="tr(X X^-1) = n"),
        pytest.param(
            lambda: X.rename(i="a", j="p") @ F.inverse(X).rename(i="p", j="q") @ CM.rename(i="q", j="r"),
            lambda: CM.rename(i="a", j="r"),
            id="X X^-1 CM = CM",
        ),
    ],
)
def test_matrix_times_its_inverse_is_identity(build, expected):
    expr = build()
    assert expr.simplify() == expected().simplify()
    # and the value agrees with the computation it replaces
    vals = {"X": X_VAL, "CM": rng.normal(size=(N, N))}
    np.testing.assert_allclose(np.asarray(tg.lower(expr)(vals)), np.asarray(evaluate(expr, vals)), rtol=1e-9, atol=1e-9)


def test_inverse_of_another_matrix_or_full_contraction_is_not_cancelled():
    other = CM @ F.inverse(X).rename(i="j", j="k")     # a different matrix: no identity
    full = X @ F.inverse(X)                              # sum_ij X_ij (X^-1)_ij: not a matrix product
    for expr in (other, full):
        assert any(isinstance(a, type(F.inverse(X))) for a in expr.simplify().factors)


def test_det_and_trace_of_delta():
    delta = tg.Delta(n, "i", "j")
    size_n = F.sum(tg.Delta(n, "q"))  # the scalar n, built from public pieces
    one = F.det(delta).simplify()
    assert one == (size_n / n).simplify()
    assert one.edges == ()
    close(tg.lower(one)({}), 1.0)
    tr = F.trace(delta).simplify()
    assert tr == size_n.simplify()
    assert tr.edges == ()
    close(tg.lower(tr, sizes={n: 4})({}), 4.0)


def _hessian_closed_form():
    p = F.softmax(z, "c")
    return F.sum(y) * (p * tg.Delta(c, "c", "c_") - p * p.rename(c="c_"))


def test_cross_entropy_hessian_numerically():
    hess = F.cross_entropy(z, y, "c").grad(z).grad(z)
    assert hess.edges == ("c", "c_")
    zv, yv = rng.normal(size=C), rng.uniform(0.1, 1.0, size=C)
    ours, closed = tg.lower([hess, _hessian_closed_form()])(z=zv, y=yv)
    expected = jax.hessian(lambda a: -jnp.sum(yv * jax.nn.log_softmax(a)))(jnp.asarray(zv))
    close(ours, expected)
    close(closed, expected)


def test_cross_entropy_hessian_symbolically():
    hess = F.cross_entropy(z, y, "c").grad(z).grad(z)
    assert hess.simplify() == _hessian_closed_form().simplify()


def test_inverse_derivative_numerically():
    jac = F.inverse(X).grad(X)
    assert jac.edges == ("i", "j", "i_", "j_")
    close(tg.lower(jac)(X=X_VAL), jax.jacobian(jnp.linalg.inv)(jnp.asarray(X_VAL)))


def test_det_derivative_is_det_times_inverse_transpose():
    grad = F.det(X).grad(X)
    assert grad.edges == ("i", "j")
    expected = np.linalg.det(X_VAL) * np.linalg.inv(X_VAL).T
    closed = F.det(X) * F.inverse(X).rename(i="j", j="i")
    g, cf = tg.lower([grad, closed])(X=X_VAL)
    close(g, expected)
    assert closed.edges == ("j", "i")
    close(cf, expected.T)
    close(g, jax.grad(jnp.linalg.det)(jnp.asarray(X_VAL)))


# -- 4. small models ------------------------------------------------------------------------

D = 4


def test_layer_norm_gradients():
    Xl = tg.Variable("X", b, d)
    g = tg.Variable("g", d)
    beta = tg.Variable("beta", d)
    mu = F.mean(Xl, "d")
    xc = Xl - mu
    var = F.mean(xc**2, "d")
    yn = xc / F.sqrt(var + 1e-5) * g + beta
    loss = F.sum(F.tanh(yn))
    vals = {"X": rng.normal(size=(B, D)), "g": rng.normal(size=D), "beta": rng.normal(size=D)}

    def ref(X, g, beta):
        mu = X.mean(axis=1, keepdims=True)
        v = ((X - mu) ** 2).mean(axis=1, keepdims=True)
        return jnp.sum(jnp.tanh((X - mu) / jnp.sqrt(v + 1e-5) * g + beta))

    args = [jnp.asarray(vals[nm]) for nm in ("X", "g", "beta")]
    value, gX = tg.lower([loss, loss.grad(Xl)])(vals)
    close(value, ref(*args))
    close(gX, jax.grad(ref)(*args))
    # order 2 would add ~2 s; Hessians of mean, sqrt and tanh are checked one by one above
    tg.check_grads(loss, [Xl, g, beta], vals, order=1, rtol=RTOL)


def test_attention_head_gradients():
    Xa = tg.Variable("X", t_, d)
    Wq, Wk, Wv = (tg.Variable(nm, d, k) for nm in ("Wq", "Wk", "Wv"))
    dk = 4
    Q = Xa @ Wq
    K = (Xa @ Wk).rename(t="s")
    V = (Xa @ Wv).rename(t="s")
    scores = (Q @ K) / math.sqrt(dk)
    assert set(scores.edges) == {"t", "s"}
    A = F.softmax(scores, "s")
    out = A @ V
    assert set(out.edges) == {"t", "k"}
    loss = F.sum(out**2)
    vals = {"X": rng.normal(size=(3, D)), **{nm: rng.normal(size=(D, dk)) for nm in ("Wq", "Wk", "Wv")}}

    def ref(X, Wq, Wk, Wv):
        Q, K, V = X @ Wq, X @ Wk, X @ Wv
        A = jax.nn.softmax(Q @ K.T / jnp.sqrt(dk), axis=1)
        return jnp.sum((A @ V) ** 2)

    args = [jnp.asarray(vals[nm]) for nm in ("X", "Wq", "Wk", "Wv")]
    value, gWq = tg.lower([loss, loss.grad(Wq)])(vals)
    close(value, ref(*args))
    close(gWq, jax.grad(ref, argnums=1)(*args))
    tg.check_grads(loss, [Wq, Wk, Wv, Xa], vals, order=1, rtol=RTOL)


# -- 5. user-defined elementwise functions ------------------------------------------------------

swish = F.elementwise("swish", lambda v: v * jax.nn.sigmoid(v))
i_, j_ = tg.symbols("i j")
W = tg.Variable("W", i_, j_)
xv = tg.Variable("x", j_)


def _swish_jnp(v):
    return v * jax.nn.sigmoid(v)


def test_user_elementwise_value_grad_hessian():
    loss = F.sum(swish(W @ xv))
    vals = {"W": rng.normal(size=(3, 4)), "x": rng.normal(size=4)}
    close(tg.lower(loss)(vals), jnp.sum(_swish_jnp(vals["W"] @ vals["x"])))
    tg.check_grads(loss, [W, xv], vals, order=2, rtol=RTOL)


def test_user_elementwise_third_derivative():
    loss = F.sum(swish(W @ xv))
    third = loss.grad(xv).grad(xv).grad(xv)
    assert third.edges == ("j", "j_", "j__")
    Wv_, xv_ = rng.normal(size=(3, 4)), rng.normal(size=4)
    ours = tg.lower(third)(W=Wv_, x=xv_)
    f = lambda a: jnp.sum(_swish_jnp(jnp.asarray(Wv_) @ a))  # noqa: E731
    expected = jax.jacfwd(jax.hessian(f))(jnp.asarray(xv_))
    close(ours, expected)


def test_user_elementwise_of_scalar_only_function():
    # fn fails on an array (a (2,) @ (2,) product turns into a shape error); it is applied entry by entry
    quad = F.elementwise("quad", lambda v: jnp.array([v, v**2]) @ jnp.array([1.0, 0.5]))
    x = tg.Variable("x", c)
    v = np.array([-1.5, -0.5, 0.7, 2.0])
    close(tg.lower(quad(x))(x=v), v + 0.5 * v**2)
    tg.check_grads(F.sum(quad(x) * x), [x], {"x": v}, order=2, rtol=RTOL)


def test_user_elementwise_rejects_non_elementwise():
    with pytest.raises(ValueError, match="not elementwise"):
        F.elementwise("bad", lambda v: v - v.mean())


def test_user_elementwise_rejects_shape_changing_function():
    with pytest.raises(ValueError, match="not elementwise"):
        F.elementwise("bad_shape", lambda v: jnp.sum(v))


def test_user_elementwise_rejects_non_callable():
    with pytest.raises(TypeError, match="callable"):
        F.elementwise("bad", 3.0)


def test_user_elementwise_rejects_bad_name():
    with pytest.raises(TypeError, match="name"):
        F.elementwise("", jnp.sin)


# -- 6. domain errors follow JAX -----------------------------------------------------------------

def test_log_of_nonpositive_follows_jax():
    x = tg.Variable("x", c)
    out = np.asarray(tg.lower(F.log(x))(x=np.array([-1.0, 0.0, 1.0])))
    assert np.isnan(out[0]) and out[1] == -np.inf and out[2] == 0.0


def test_inverse_of_singular_matrix_is_not_finite_and_does_not_raise():
    out = np.asarray(tg.lower(F.inverse(X))(X=np.zeros((2, 2))))
    assert out.shape == (2, 2)
    assert not np.all(np.isfinite(out))


def test_square_of_sqrt_of_negative_is_nan():
    x = tg.Variable("x", c)
    out = np.asarray(tg.lower(F.pow(F.sqrt(x), 2))(x=np.array([-4.0, 4.0])))
    expected = np.asarray(jnp.sqrt(jnp.array([-4.0, 4.0])) ** 2)
    assert np.isnan(out[0]) and np.isnan(expected[0])
    close(out[1:], expected[1:])


def test_sqrt_of_negative_is_nan():
    x = tg.Variable("x", c)
    out = np.asarray(tg.lower(F.sqrt(x))(x=np.array([-4.0, 4.0])))
    assert np.isnan(out[0]) and out[1] == 2.0


# -- 7. bad inputs ----------------------------------------------------------------------------------

T3 = tg.Variable("T3", b, i=n, j=n)
R = tg.Variable("R", i=nrows, j=ncols)  # two edges of different sizes


@pytest.mark.parametrize(
    "call, fragments",
    [
        pytest.param(lambda: F.softmax(T, "q"), ["F.softmax", "'q'", "'b'", "'c'"], id="softmax missing edge"),
        pytest.param(lambda: F.log_softmax(T, "q"), ["F.log_softmax", "'q'"], id="log_softmax missing edge"),
        pytest.param(lambda: F.logsumexp(T, "q"), ["F.logsumexp", "'q'"], id="logsumexp missing edge"),
        pytest.param(lambda: F.cross_entropy(T, Y, "q"), ["F.cross_entropy", "'q'"], id="cross_entropy missing edge"),
        pytest.param(lambda: F.cross_entropy(T, F.sum(Y, "c"), "c"), ["F.cross_entropy", "target", "'c'"], id="cross_entropy target lacks edge"),
        pytest.param(lambda: F.inverse(T3), ["F.inverse", "'b'", "'i'", "'j'"], id="inverse of 3 edges"),
        pytest.param(lambda: F.det(T3), ["F.det", "'b'", "'i'", "'j'"], id="det of 3 edges"),
        pytest.param(lambda: F.trace(T3), ["F.trace", "'b'", "'i'", "'j'"], id="trace of 3 edges"),
        pytest.param(lambda: F.inverse(R), ["F.inverse", "'i'", "'j'", "nrows", "ncols"], id="inverse of unequal sizes"),
        pytest.param(lambda: F.det(R), ["F.det", "'i'", "'j'", "nrows", "ncols"], id="det of unequal sizes"),
        pytest.param(lambda: F.trace(R), ["F.trace", "'i'", "'j'", "nrows", "ncols"], id="trace of unequal sizes"),
        pytest.param(lambda: F.inverse(T3, ("i", "q")), ["F.inverse", "'q'"], id="inverse of missing edge"),
        pytest.param(lambda: F.sum(T, "q"), ["F.sum", "'q'"], id="sum missing edge"),
        pytest.param(lambda: F.mean(T, ["b", "q"]), ["F.mean", "'q'"], id="mean missing edge"),
        pytest.param(lambda: F.dot(T, z, "b"), ["F.dot", "'b'"], id="dot edge missing from one side"),
    ],
)
def test_bad_edges_raise_value_error_naming_the_edge(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


def test_functions_reject_non_tensors():
    with pytest.raises(TypeError, match="F.exp"):
        F.exp(np.ones(3))
    with pytest.raises(TypeError, match="F.softmax"):
        F.softmax(T, 1)


@pytest.mark.parametrize("f, ref", [
    pytest.param(F.abs, jnp.abs, id="abs"), pytest.param(F.relu, jax.nn.relu, id="relu"),
    pytest.param(F.sign, jnp.sign, id="sign"),
    pytest.param(lambda u: F.maximum(u, 0), lambda a: jnp.maximum(a, 0.0), id="maximum"),
    pytest.param(lambda u: F.minimum(u, 0), lambda a: jnp.minimum(a, 0.0), id="minimum"),
])
def test_derivatives_at_kinks_follow_jax(f, ref):
    at = np.array([-1.0, 0.0, 2.0])
    v = tg.Variable("v", c=3)
    ours = tg.lower(F.sum(f(v)).grad(v))(v=at)
    close(ours, jax.grad(lambda a: jnp.sum(ref(a)))(at))


# -- along several edges at once, and max / min -------------------------------------------------

Q = tg.Variable("Q", b, c, d)
Q_VAL = rng.normal(size=(B, C, 2))
Q_TIES = np.where(np.arange(B * C * 2).reshape(B, C, 2) % 2 == 0, 0.5, Q_VAL)  # a maximum shared by several entries
Q_TIES[0] = 1.0  # every entry of the first example attains it


@pytest.mark.parametrize("f, ref", [
    pytest.param(lambda u: F.softmax(u, ["c", "d"]), lambda a: jax.nn.softmax(a, axis=(1, 2)), id="softmax"),
    pytest.param(lambda u: F.log_softmax(u, ["d", "c"]), lambda a: jax.nn.log_softmax(a, axis=(1, 2)), id="log_softmax"),
    pytest.param(lambda u: F.logsumexp(u, ("c", "d")), lambda a: jax.nn.logsumexp(a, axis=(1, 2)), id="logsumexp"),
    pytest.param(lambda u: F.max(u, ["c", "d"]), lambda a: jnp.max(a, axis=(1, 2)), id="max over two"),
    pytest.param(lambda u: F.max(u, "c"), lambda a: jnp.max(a, axis=1), id="max over one"),
    pytest.param(lambda u: F.min(u, "d"), lambda a: jnp.min(a, axis=2), id="min over one"),
    pytest.param(lambda u: F.max(u), lambda a: jnp.max(a), id="max over all"),
    pytest.param(lambda u: F.min(u, ["b", "d"]), lambda a: jnp.min(a, axis=(0, 2)), id="min over two"),
])
@pytest.mark.parametrize("value", [pytest.param(Q_VAL, id="distinct"), pytest.param(Q_TIES, id="ties")])
def test_along_several_edges_value_grad_and_hessian(f, ref, value):
    expr = f(Q)
    weights = rng.normal(size=np.shape(ref(value)))
    Wt = tg.Variable("Wt", *[{"b": b, "c": c, "d": d}[e] for e in expr.edges])
    loss = F.sum(expr ** 2 * Wt)
    close(tg.lower(expr)(Q=value), ref(value))
    close(tg.lower(loss.grad(Q))(Q=value, Wt=weights), jax.grad(lambda a: jnp.sum(ref(a) ** 2 * weights))(value))
    errors = tg.check_grads(loss, [Q], {"Q": value, "Wt": weights}, order=2, rtol=RTOL)
    assert ("Q", 2) in errors


def test_cross_entropy_over_two_class_edges():
    target = tg.Variable("P", b, c, d)
    probs = rng.dirichlet(np.ones(C * 2), size=B).reshape(B, C, 2)
    loss = F.sum(F.cross_entropy(Q, target, ["c", "d"]))
    ref = lambda a: -jnp.sum(probs * jax.nn.log_softmax(a, axis=(1, 2)))  # noqa: E731
    close(tg.lower(loss)(Q=Q_VAL, P=probs), ref(Q_VAL))
    tg.check_grads(loss, [Q], {"Q": Q_VAL, "P": probs}, order=2, rtol=RTOL)


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.softmax(Q, []), TypeError, "non-empty list"),
    (lambda: F.softmax(Q, ["c", "c"]), ValueError, "name an edge twice"),
    (lambda: F.logsumexp(Q, ["c", "q"]), ValueError, "'q' is not a free edge"),
    (lambda: F.max(Q, "q"), ValueError, "'q' is not a free edge"),
    (lambda: F.min(3.0), TypeError, "expected a tensor expression"),
])
def test_along_several_edges_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_max_of_a_scalar_is_itself_and_softmax_over_several_edges_sums_to_one():
    s_ = tg.Variable("s_")
    assert F.max(s_) is s_
    total = tg.lower(F.sum(F.softmax(Q, ["c", "d"]), ["c", "d"]))(Q=Q_VAL)
    close(total, np.ones(B))


def test_causal_mask_is_computed_by_the_program_and_masks_attention_as_jax_does():
    s, d = tg.symbols("s d")
    mask = tg.causal_mask(s, "q", "k")
    np.testing.assert_array_equal(tg.lower(mask, sizes={s: 4})(), np.tril(np.ones((4, 4))))
    Q, K = tg.Variable("Q", q=s, d=d), tg.Variable("K", k=s, d=d)
    att = F.softmax(F.where(mask, Q @ K, -1e9), "k")
    loss = F.sum(att * att)
    fn = tg.lower([loss, loss.grad(Q), loss.grad(K)])
    assert sorted(fn.variables) == ["K", "Q"]  # no array is passed for the mask
    qv, kv = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))

    def ref(q, k):
        scores = jnp.where(jnp.tril(jnp.ones((5, 5))) != 0, q @ k.T, -1e9)
        return jnp.sum(jax.nn.softmax(scores, axis=1) ** 2)

    value, gq, gk = fn(Q=qv, K=kv)
    close(value, ref(qv, kv))
    for ours, theirs in zip((gq, gk), jax.grad(ref, argnums=(0, 1))(qv, kv)):
        close(ours, theirs)
    assert "jnp.tril" in tg.to_source(loss, values={"Q": qv, "K": kv})
    with pytest.raises(ValueError, match="two different edge names"):
        tg.causal_mask(s, "q", "q")


def test_one_hot_of_integer_labels_feeds_cross_entropy_as_jax_one_hot():
    d, k = tg.symbols("d k")
    labels = tg.Variable("labels", b)
    X, W = tg.Variable("X", b, d), tg.Variable("W", d, k)
    lv = np.array([0, 2, 1, 2])
    close(tg.lower(F.one_hot(labels, "k", k), sizes={k: 3})(labels=lv), jax.nn.one_hot(lv, 3))
    loss = F.sum(F.cross_entropy(X @ W, F.one_hot(labels, "k", k), "k"))
    xv, wv = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))

    def ref(w):
        return -jnp.sum(jax.nn.one_hot(lv, 3) * jax.nn.log_softmax(xv @ w, axis=1))

    value, grad = tg.lower([loss, loss.grad(W)])(X=xv, W=wv, labels=lv)
    close(value, ref(wv))
    close(grad, jax.grad(ref)(wv))
    with pytest.raises(ValueError, match="must be a new edge name"):
        F.one_hot(labels, "b", 3)


def test_take_is_a_gather_and_its_gradient_a_scatter_add_never_a_one_hot_product():
    from costs import largest_intermediate

    s, v, d, k = tg.symbols("s v d k")
    tokens, E = tg.Variable("tokens", b, s), tg.Variable("E", v, d)
    W, T = tg.Variable("W", d, k), tg.Variable("T", b, s, k)
    loss = F.sum(F.cross_entropy(F.tanh(F.take(E, tokens, "v")) @ W, T, "k"))
    fn = tg.lower([loss, *loss.grad([E, W])])
    tv = rng.integers(0, 50, size=(B, 3))
    ev, wv = rng.normal(size=(50, 4)), rng.normal(size=(4, 5))
    tt = rng.dirichlet(np.ones(5), size=(B, 3))

    def ref(e, w):
        logits = jnp.tanh(e[tv]) @ w
        return -jnp.sum(tt * jax.nn.log_softmax(logits, axis=-1))

    value, ge, gw = fn(tokens=tv, E=ev, W=wv, T=tt)
    close(value, ref(ev, wv))
    for ours, theirs in zip((ge, gw), jax.grad(ref, argnums=(0, 1))(ev, wv)):
        close(ours, theirs)
    source = tg.to_source([loss, *loss.grad([E, W])], values={"tokens": tv, "E": ev, "W": wv, "T": tt})
    assert "jnp.take(E" in source and ".at[tokens" in source
    # no (b, s, v) one-hot: nothing larger than the table or the batch's rows
    arrays = {"tokens": tv, "E": ev, "W": wv, "T": tt}
    assert largest_intermediate(lambda a: fn(a), arrays) <= max(50 * 4, B * 3 * 5)
    # an index out of range picks a row of zeros, as the one-hot product it stands for
    np.testing.assert_array_equal(tg.lower(F.take(E, tokens, "v"))(tokens=np.full((B, 3), 99), E=ev), 0.0)


def test_take_errors_name_the_edges():
    s, v, d = tg.symbols("s v d")
    tokens, E = tg.Variable("tokens", b, s), tg.Variable("E", v, d)
    with pytest.raises(ValueError, match="edge 'q' is not an edge of the table"):
        F.take(E, tokens, "q")
    with pytest.raises(ValueError, match=r"share edge\(s\) \['d'\]"):
        F.take(E, tokens.rename(s="d"), "v")
    with pytest.raises(ValueError, match="tokens is an integer index here"):
        F.sum(F.take(E, tokens, "v")).grad(tokens)


# -- pooling and concatenation: lookups of structural positions --------------------------


def _pool_reference(x, axis: int, window: int, reduce):
    """Non-overlapping windows along ``axis`` (a remainder dropped), reduced: what a JAX user writes."""
    count = x.shape[axis] // window
    kept = jax.lax.slice_in_dim(x, 0, count * window, axis=axis)
    shape = x.shape[:axis] + (count, window) + x.shape[axis + 1:]
    return reduce(kept.reshape(shape), axis=axis + 1)


@pytest.mark.parametrize("pool, reduce", [(F.mean_pool, jnp.mean), (F.max_pool, jnp.max)])
def test_pooling_matches_reshaped_windows_with_gradient_and_hessian(pool, reduce):
    from costs import jax_costs, tgjax_costs

    h, w = tg.symbols("h w")
    x = tg.Variable("x", b, c, h, w)
    # odd sizes (a remainder dropped), the new edge under a new name and under the old one
    pooled = pool(pool(x, "h", 2, "h2"), "w", 3, "w")
    assert pooled.edges == ("b", "c", "h2", "w")
    loss = F.sum(F.tanh(pooled) ** 2)
    xv = rng.normal(size=(2, 3, 9, 7))

    def ref(x):
        return jnp.sum(jnp.tanh(_pool_reference(_pool_reference(x, 2, 2, reduce), 3, 3, reduce)) ** 2)

    value, grad = tg.lower([loss, loss.grad(x)])(x=xv)
    close(value, ref(xv))
    close(grad, jax.grad(ref)(xv))
    small = tg.Variable("s", h)
    second = F.sum(F.sin(pool(small, "h", 2, "h2")) ** 3)
    close(tg.lower(second.grad(small).grad(small))(s=xv[0, 0, :, 0]),
          jax.hessian(lambda s: jnp.sum(jnp.sin(_pool_reference(s, 0, 2, reduce)) ** 3))(xv[0, 0, :, 0]))
    # the windows read in place (a reshape) and put back in place for the gradient: no gather,
    # no scatter-add, no pooling matrix (a gather and a scatter-add: 1.6-1.7x JAX's FLOPs; a
    # one-hot product: 10x at 24 x 24, 36x at 96 x 96)
    xv32 = rng.normal(size=(16, 8, 24, 24)).astype(np.float32)
    ours = tgjax_costs([loss, loss.grad(x)], {"x": xv32})
    theirs = jax_costs(ref, [xv32])
    assert "windows(x, 2, 12, 2)" in ours.source and "jnp.take" not in ours.source and ".at[" not in ours.source
    assert ours.largest <= xv32.size and ours.flops <= 1.15 * theirs.flops, (ours.flops, theirs.flops)


def test_pooling_errors_name_the_problem():
    h = tg.symbols("h")
    x = tg.Variable("x", b, h)
    with pytest.raises(ValueError, match="edge 'q' is not an edge"):
        F.mean_pool(x, "q", 2, "h2")
    for window in (0, 2.0, True):
        with pytest.raises(ValueError, match="window must be a positive int"):
            F.max_pool(x, "h", window, "h2")
    with pytest.raises(ValueError, match="new_edge must be a name .* not already use"):
        F.mean_pool(x, "h", 2, "b")
    with pytest.raises(ValueError, match="window 4 is longer than edge 'h', which has 3 entries"):
        F.max_pool(tg.Variable("y", h=3), "h", 4, "h2")


def test_concat_joins_along_an_edge_as_jnp_concatenate():
    h, w = tg.symbols("h w")
    a, e = tg.Variable("a", b, i=h), tg.Variable("e", i=w, b=b)  # the second in another edge order
    joined = F.concat([a, e, a], "i")
    assert joined.edges == ("b", "i") and joined.shape["i"] == 2 * h + w
    loss = F.sum(F.sin(joined) * joined)
    av, ev = rng.normal(size=(B, 3)), rng.normal(size=(4, B))

    def ref(a, e):
        j = jnp.concatenate([a, e.T, a], axis=1)
        return jnp.sum(jnp.sin(j) * j)

    outputs = tg.lower([loss, *loss.grad([a, e])])(a=av, e=ev)
    for ours, theirs in zip(outputs, (ref(av, ev), *jax.grad(ref, argnums=(0, 1))(av, ev))):
        close(ours, theirs)
    assert F.concat([a], "i") is a
    # parts of sizes whose names would read alike (n + 1, n - 1) stay different parts
    first = F.concat([tg.Variable("p", i=n + 1), tg.Variable("q", i=c)], "i")
    F.concat([tg.Variable("r", i=n - 1), tg.Variable("s", i=c)], "i")
    np.testing.assert_array_equal(tg.lower(first, sizes={n: 2, c: 2})(p=np.arange(3.0), q=np.array([10.0, 20.0])),
                                  [0.0, 1.0, 2.0, 10.0, 20.0])
    with pytest.raises(ValueError, match="tensor 1 has no edge 'i'"):
        F.concat([a, tg.Variable("u", b)], "i")
    with pytest.raises(ValueError, match="same edges with the same sizes"):
        F.concat([a, tg.Variable("u", b=c, i=h)], "i")
    with pytest.raises(TypeError, match="non-empty list"):
        F.concat(a, "i")
