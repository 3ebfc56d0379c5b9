"""tg.Convolution: the constant tensor [i = j + o] of a "valid" convolution.

Lowered values are compared in float64 against NumPy (``np.correlate`` /
``np.convolve``), against ``jax.lax.conv_general_dilated`` and against the
reference evaluator (which builds the dense indicator; the compiler never
does). Derivatives are compared against JAX autodiff of the JAX convolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import tgjax as tg
import tgjax.functions as F
from tgjax._lower.reference import evaluate

w, k, w2 = tg.symbols("w k w2")
h, kh, h2 = tg.symbols("h kh h2")
k2, w3 = tg.symbols("k2 w3")
b, c, d = tg.symbols("b c d")

RTOL, ATOL = 1e-10, 1e-12


def assert_close(actual, expected, rtol=RTOL, atol=ATOL, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def indicator(n, kk, m):
    """The dense convolution tensor [i = j + o] of shape (n, kk, m), by loops."""
    out = np.zeros((n, kk, m))
    for j in range(kk):
        for o in range(m):
            if j + o < n:
                out[j + o, j, o] = 1.0
    return out


# -- JAX references ---------------------------------------------------------


def jax_conv1d(x, kern):
    """1-D valid cross-correlation of vectors with lax (NCH / OIH layout)."""
    return lax.conv_general_dilated(x[None, None], kern[None, None], (1,), "VALID")[0, 0]


def jax_conv_nc(data, kern, strides):
    """data (b, c, spatial...), kern (d, c, kernel...) -> (b, d, out...)."""
    return lax.conv_general_dilated(data, kern, strides, "VALID")


# -- expressions ------------------------------------------------------------

x = tg.Variable("x", w)
K = tg.Variable("K", k)
C = tg.Convolution(w, k, w2)
Y1 = x @ C @ K  # edges (w2,)

# batch and channels: x (b, c, w), kernel (d, c, k) -> (b, w2, d)
Xb = tg.Variable("X", b, c, w)
Kb = tg.Variable("Kc", d, c, k)
Y1b = Xb @ C @ Kb

# 2-D: data (b, c, w, h), kernel (d, c, k, kh) -> (b, w2, h2, d)
data = tg.Variable("data", b, c, w, h)
kernel = tg.Variable("kernel", d, c, k, kh)
Cw = tg.Convolution(w, k, w2)
Ch = tg.Convolution(h, kh, h2)
Y2 = data @ Cw @ Ch @ kernel


def conv2d_values(B, Cc, W, H, D, KW, KH, seed=0):
    rng = np.random.default_rng(seed)
    return {"data": rng.normal(size=(B, Cc, W, H)), "kernel": rng.normal(size=(D, Cc, KW, KH))}


def jax_conv2d(dv, kv):
    """(b, c, w, h), (d, c, kw, kh) -> (b, w2, h2, d): the axis order of Y2."""
    return jnp.transpose(jax_conv_nc(dv, kv, (1, 1)), (0, 2, 3, 1))


# == 1. 1-D values ============================================================


def test_repr_edges_and_shape():
    assert repr(C) == "conv[w,k,w2]"
    assert C.edges == ("w", "k", "w2")
    assert C.shape == {"w": w, "k": k, "w2": w2}
    assert Y1.edges == ("w2",)
    assert Y1.shape == {"w2": w2}


@pytest.mark.parametrize("n, m", [(10, 3), (7, 1), (5, 5), (9, 4), (64, 32)])
def test_conv1d_matches_numpy_and_lax(n, m):
    xv, kv = rand(n, seed=1), rand(m, seed=2)
    got = tg.lower(Y1)(x=xv, K=kv)
    assert got.shape == (n - m + 1,)
    assert_close(got, np.correlate(xv, kv, mode="valid"), what="vs np.correlate")
    assert_close(got, jax_conv1d(jnp.asarray(xv), jnp.asarray(kv)), what="vs lax")
    assert_close(got, evaluate(Y1, {"x": xv, "K": kv}), what="vs reference")


def test_conv1d_large_kernel():
    n, m = 66, 33
    xv, kv = rand(n, seed=3), rand(m, seed=4)
    assert_close(tg.lower(Y1)(x=xv, K=kv), np.correlate(xv, kv, mode="valid"))


def test_conv1d_kernel_first_in_product():
    # the written order of the factors does not matter
    xv, kv = rand(9, seed=5), rand(4, seed=6)
    y = K @ C @ x
    assert y.edges == ("w2",)
    assert_close(tg.lower(y)(x=xv, K=kv), np.correlate(xv, kv, mode="valid"))


def test_conv1d_batch_and_channels_vs_lax():
    B, Cc, W, D, M = 3, 2, 11, 4, 3
    xv, kv = rand(B, Cc, W, seed=7), rand(D, Cc, M, seed=8)
    assert Y1b.edges == ("b", "w2", "d")
    got = tg.lower(Y1b)(X=xv, Kc=kv)
    expected = jnp.transpose(jax_conv_nc(jnp.asarray(xv), jnp.asarray(kv), (1,)), (0, 2, 1))
    assert_close(got, expected)
    assert_close(got, evaluate(Y1b, {"X": xv, "Kc": kv}), what="vs reference")


def test_transposed_convolution_from_cotangent_and_kernel():
    # g (w2) and K (k) fix w = w2 + k - 1: g @ C @ K is the full convolution
    g = tg.Variable("g", w2)
    z = g @ C @ K
    assert z.edges == ("w",)
    gv, kv = rand(6, seed=9), rand(4, seed=10)
    got = tg.lower(z)(g=gv, K=kv)
    assert got.shape == (9,)
    assert_close(got, np.convolve(gv, kv, mode="full"))
    assert_close(got, evaluate(z, {"g": gv, "K": kv}), what="vs reference")


def test_transposed_convolution_large_kernel():
    g = tg.Variable("g", w2)
    gv, kv = rand(36, seed=11), rand(35, seed=12)
    got = tg.lower(g @ C @ K)(g=gv, K=kv)
    assert_close(got, np.convolve(gv, kv, mode="full"))


def test_kernel_recovered_from_input_and_output():
    # x (w) and g (w2) fix k = w - w2 + 1: x @ C @ g is the kernel gradient
    g = tg.Variable("g", w2)
    z = x @ C @ g
    assert z.edges == ("k",)
    xv, gv = rand(10, seed=13), rand(7, seed=14)
    got = tg.lower(z)(x=xv, g=gv)
    assert_close(got, np.correlate(xv, gv, mode="valid"))


def test_renamed_convolution_edges():
    Cr = C.rename(w="a")
    assert Cr.edges == ("a", "k", "w2")
    assert Cr.shape == {"a": w, "k": k, "w2": w2}
    y = x.rename(w="a") @ Cr @ K
    xv, kv = rand(8, seed=15), rand(3, seed=16)
    assert_close(tg.lower(y)(x=xv, K=kv), np.correlate(xv, kv, mode="valid"))


def test_renamed_part_edges_with_swapped_roles():
    # rename the kernel leg to "o" and the output leg to "j": the kernel now sits on j
    Cr = C.rename(k="o", w2="j")
    y = x @ Cr @ K.rename(k="o")
    assert y.edges == ("j",)
    xv, kv = rand(8, seed=17), rand(3, seed=18)
    assert_close(tg.lower(y)(x=xv, K=kv), np.correlate(xv, kv, mode="valid"))


def test_conv1d_axes_in_another_order_vs_lax():
    # data declared (w, c, b), kernel (k, c, d): the layouts are transposed for lax
    X = tg.Variable("X", w, c, b)
    Kk = tg.Variable("Kk", k, c, d)
    y = X @ C @ Kk
    assert y.edges == ("b", "w2", "d")
    xv, kv = rand(9, 2, 3, seed=80), rand(3, 2, 4, seed=81)
    lax_out = jax_conv_nc(jnp.asarray(xv.transpose(2, 1, 0)), jnp.asarray(kv.transpose(2, 1, 0)), (1,))  # (b, d, w2)
    assert_close(tg.lower(y)(X=xv, Kk=kv), jnp.transpose(lax_out, (0, 2, 1)))


def test_conv1d_several_batch_and_feature_edges():
    # two batch edges (b, e) on the data, two output-feature edges (d, h) on the kernel
    e = tg.symbols("e")
    X = tg.Variable("X", b, e, c, w)
    Kk = tg.Variable("Kk", d, c, k, h)
    y = X @ C @ Kk
    assert y.edges == ("b", "e", "w2", "d", "h")
    xv, kv = rand(2, 3, 2, 9, seed=82), rand(3, 2, 4, 2, seed=83)
    expected = np.einsum("becI,Ijo,dcjh->beodh", xv, indicator(9, 4, 6), kv)
    assert_close(tg.lower(y)(X=xv, Kk=kv), expected)


def test_conv1d_integer_and_float32_inputs():
    fn = tg.lower(Y1)
    got = fn(x=np.arange(6), K=np.array([1, 2]))
    assert jnp.issubdtype(got.dtype, jnp.floating)
    assert_close(got, np.correlate(np.arange(6), [1, 2], mode="valid").astype(float))
    x32, k32 = rand(10, seed=84).astype(np.float32), rand(3, seed=85).astype(np.float32)
    got32 = fn(x=x32, K=k32)
    assert got32.dtype == jnp.float32
    assert_close(got32, np.correlate(x32.astype(float), k32.astype(float), mode="valid"), rtol=1e-5, atol=1e-5)
    # mixed precision promotes as einsum would
    assert fn(x=x32, K=k32.astype(np.float64)).dtype == jnp.float64


def test_conv1d_summed_over_batch():
    # a Delta (the sum over b) sits in the same network as the convolution
    X = tg.Variable("X", b, w)
    y = F.sum(X @ C @ K, "b")
    xv, kv = rand(3, 9, seed=86), rand(4, seed=87)
    expected = sum(np.correlate(r, kv, mode="valid") for r in xv)
    assert_close(tg.lower(y)(X=xv, K=kv), expected)


def test_conv1d_with_a_kernel_per_batch_entry():
    # b is kept by both sides (elementwise), not a batch or feature edge
    X = tg.Variable("X", b, w)
    Kb = tg.Variable("Kb", b, k)
    y = F.sum((X @ C) * Kb, "k")
    assert set(y.edges) == {"b", "w2"}
    xv, kv = rand(3, 9, seed=88), rand(3, 4, seed=89)
    expected = np.stack([np.correlate(xv[t], kv[t], mode="valid") for t in range(3)])
    order = [("b", "w2").index(e) for e in y.edges]
    assert_close(tg.lower(y)(X=xv, Kb=kv), expected.transpose(order))


# == 2. 2-D values ============================================================


@pytest.mark.parametrize(
    "B, Cc, W, H, D, KW, KH",
    [
        (2, 3, 6, 5, 4, 2, 3),  # non-square kernel
        (1, 2, 5, 4, 3, 1, 1),  # 1x1 kernel
        (2, 1, 4, 3, 2, 4, 3),  # kernel == input: 1x1 output
        (1, 1, 7, 6, 1, 3, 1),  # one channel, a 3x1 kernel
    ],
)
def test_conv2d_vs_lax(B, Cc, W, H, D, KW, KH):
    vals = conv2d_values(B, Cc, W, H, D, KW, KH, seed=B + W)
    assert Y2.edges == ("b", "w2", "h2", "d")
    got = tg.lower(Y2)(vals)
    assert got.shape == (B, W - KW + 1, H - KH + 1, D)
    assert_close(got, jax_conv2d(vals["data"], vals["kernel"]))


def test_conv2d_large_kernel_vs_lax():
    vals = conv2d_values(1, 1, 70, 4, 2, 35, 2, seed=21)
    got = tg.lower(Y2)(vals)
    assert_close(got, jax_conv2d(vals["data"], vals["kernel"]))


def test_conv3d_vs_lax():
    l, kl, l2 = tg.symbols("l kl l2")
    D3 = tg.Variable("D3", b, c, w, h, l)
    K3 = tg.Variable("K3", d, c, k, kh, kl)
    y = D3 @ tg.Convolution(w, k, w2) @ tg.Convolution(h, kh, h2) @ tg.Convolution(l, kl, l2) @ K3
    assert y.edges == ("b", "w2", "h2", "l2", "d")
    dv, kv = rand(2, 2, 5, 4, 6, seed=90), rand(3, 2, 2, 3, 1, seed=91)
    expected = jnp.transpose(jax_conv_nc(jnp.asarray(dv), jnp.asarray(kv), (1, 1, 1)), (0, 2, 3, 4, 1))
    assert_close(tg.lower(y)(D3=dv, K3=kv), expected)


def test_conv2d_valid_along_one_axis_full_along_the_other():
    # T carries the input leg of Cw but a part leg (h2) of Ch: along h the result is a full convolution
    T = tg.Variable("T", w, h2)
    U = tg.Variable("U", k, kh)
    y = T @ Cw @ Ch @ U
    assert set(y.edges) == {"w2", "h"}
    tv, uv = rand(7, 3, seed=92), rand(2, 4, seed=93)
    expected = np.einsum("ijo,Hbc,ic,jb->oH", indicator(7, 2, 6), indicator(6, 4, 3), tv, uv)
    order = [("w2", "h").index(e) for e in y.edges]
    got = tg.lower(y)(T=tv, U=uv)
    assert got.shape == tuple(expected.shape[i] for i in order)
    assert_close(got, expected.transpose(order))


# Two operands A and B joined by Cw and Ch: each convolution has one leg on A,
# one on B and one free (a valid convolution where a side holds the input
# leg, a full one where both hold part legs). Sizes: w=7, k=3, w2=5, h=6, kh=2, h2=5.
LEG_SIZES = {w: 7, k: 3, w2: 5, h: 6, kh: 2, h2: 5, b: 2, c: 3, d: 2}
LETTERS = {w: "i", k: "j", w2: "o", h: "p", kh: "q", h2: "r", b: "b", c: "c", d: "d"}


def _leg_case(pw, ph, marks=()):
    return pytest.param(pw, ph, marks=marks, id=f"{'-'.join(map(str, pw))}_{'-'.join(map(str, ph))}")


LEG_CASES = [
    *[_leg_case((w, k, w2), ph) for ph in [(h, kh, h2), (h, h2, kh), (kh, h, h2), (h2, h, kh), (h2, kh, h)]],
    *[_leg_case(pw, (kh, h2, h)) for pw in [(k, w, w2), (w2, w, k), (k, w2, w), (w2, k, w)]],
    _leg_case((w, k, w2), (kh, h2, h)),
    _leg_case((w, w2, k), (kh, h2, h)),
    _leg_case((k, w2, w), (h, h2, kh)),
]


@pytest.mark.parametrize("pw, ph", LEG_CASES)
def test_two_operands_joined_by_two_convolutions(pw, ph):
    # pw = (leg on A, leg on B, free leg) of Cw; ph likewise for Ch
    A = tg.Variable("A", b, pw[0], c, ph[0])
    B = tg.Variable("B", ph[1], c, d, pw[1])
    y = A @ Cw @ Ch @ B
    rng = np.random.default_rng(7)
    vals = {v.name: rng.normal(size=[LEG_SIZES[s] for _, s in v.decl]) for v in (A, B)}
    spec = "ijo,pqr,{},{}->{}".format(
        "".join(LETTERS[s] for _, s in A.decl),
        "".join(LETTERS[s] for _, s in B.decl),
        "".join(LETTERS[y.shape[e]] for e in y.edges),
    )
    expected = np.einsum(spec, indicator(7, 3, 5), indicator(6, 2, 5), vals["A"], vals["B"])
    assert_close(tg.lower(y)(vals), expected)


def test_valid_and_full_axes_data_on_smaller_operand():
    # A holds the input leg w of Cw; along h both hold part legs (kh, h2): a full convolution.
    # A's conv legs (7 * 2 = 14) are fewer than B's (5 * 3 = 15), and A gets swapped out of the data slot.
    A = tg.Variable("A", w, kh)
    B = tg.Variable("B", h2, k)
    y = A @ Cw @ Ch @ B
    av, bv = rand(7, 2, seed=98), rand(5, 3, seed=99)
    expected = np.einsum("ijo,pqr,iq,rj->op", indicator(7, 3, 5), indicator(6, 2, 5), av, bv)
    assert y.edges == ("w2", "h")
    assert_close(tg.lower(y)(A=av, B=bv), expected)


def test_conv2d_vs_reference():
    vals = conv2d_values(2, 2, 5, 4, 3, 2, 3, seed=22)
    assert_close(tg.lower(Y2)(vals), evaluate(Y2, vals))


# == 3. the Jacobian w.r.t. the kernel is again a convolution ==================


def test_jacobian_wrt_kernel_1d_symbolic():
    J = Y1.grad(K).simplify()
    assert J.edges == ("w2", "k")
    assert J == x @ tg.Convolution(w, k, w2)
    # the kernel leg is free in J and the output leg too; neither is "w"
    assert J != x @ tg.Convolution(w, k, w2).rename(k="k_")


def test_jacobian_wrt_input_1d_symbolic():
    J = Y1.grad(x).simplify()
    assert J.edges == ("w2", "w")
    assert J == tg.Convolution(w, k, w2) @ K


def test_jacobian_new_edge_gets_underscore_when_taken():
    # k is free in (x @ C) @ K[j] (an outer product): d/dK's new edge is "k_"
    z = (x @ C) @ K.rename(k="j")
    assert z.edges == ("k", "w2", "j")
    J = z.grad(K).simplify()
    assert J.edges == ("k", "w2", "j", "k_")
    assert J == (x @ tg.Convolution(w, k, w2)) @ tg.Delta(k, "j", "k_")
    xv, kv = rand(7, seed=19), rand(3, seed=20)
    expected = np.einsum("ab,c->abc", np.stack([xv[j:j + 5] for j in range(3)]), np.ones(3))[..., None] * np.eye(3)[None, None]
    # J does not depend on K, so nothing but sizes= fixes k
    assert_close(tg.lower(J, sizes={k: 3})(x=xv), expected)


def test_jacobian_wrt_kernel_2d_symbolic():
    J = Y2.grad(kernel).simplify()
    # d is free in Y2, so the kernel's d edge becomes d_; c, k, kh are inner in Y2
    assert J.edges == ("b", "w2", "h2", "d", "d_", "c", "k", "kh")
    expected = data @ tg.Convolution(w, k, w2) @ tg.Convolution(h, kh, h2) @ tg.Delta(d, "d", "d_")
    assert J == expected
    # a different wiring (the two convolutions' legs swapped) is not equal
    wrong = data @ tg.Convolution(w, k, w2) @ tg.Convolution(h, kh, h2).rename(kh="x1", h2="x2")
    assert not (J == wrong)


def test_jacobian_wrt_kernel_2d_numeric():
    vals = conv2d_values(2, 2, 5, 4, 3, 2, 3, seed=23)
    # the Jacobian does not depend on the kernel: its sizes come from sizes=
    J = tg.lower(Y2.grad(kernel), sizes={d: 3, k: 2, kh: 3})(data=vals["data"])
    dv = jnp.asarray(vals["data"])
    jac = jax.jacrev(lambda kk: jax_conv2d(dv, kk))(jnp.asarray(vals["kernel"]))
    # jac axes: (b, w2, h2, d) + kernel (d, c, k, kh): the order of Y2.grad(kernel).edges
    assert_close(J, jac)


def test_jacobian_wrt_kernel_1d_numeric():
    xv, kv = rand(9, seed=24), rand(3, seed=25)
    J = tg.lower(Y1.grad(K), sizes={k: 3})(x=xv)
    jac = jax.jacrev(lambda kk: jax_conv1d(jnp.asarray(xv), kk))(jnp.asarray(kv))
    assert_close(J, jac)


def test_jacobian_new_names_and_unevaluated_derivative():
    J = Y1.grad(K, new_names={"k": "kk"}).simplify()
    assert J.edges == ("w2", "kk")
    assert J == x @ tg.Convolution(w, k, w2).rename(k="kk")
    # an unevaluated Derivative node mentions K, so K's array fixes the size k
    D = tg.Derivative(Y1, K)
    assert D.edges == ("w2", "k")
    assert D.simplify() == x @ tg.Convolution(w, k, w2)
    xv, kv = rand(9, seed=100), rand(3, seed=101)
    expected = np.stack([xv[o:o + 3] for o in range(7)])
    assert_close(tg.lower(D)(x=xv, K=kv), expected)


# == 4. gradients and Hessians ================================================


def test_check_grads_1d_tanh_order2():
    xv, kv = rand(12, seed=26), rand(4, seed=27)
    loss = F.sum(F.tanh(Y1))
    errors = tg.check_grads(loss, [x, K], {"x": xv, "K": kv}, order=2)
    assert set(errors) == {("x", 1), ("x", 2), ("K", 1), ("K", 2)}
    assert max(errors.values()) < 1e-10


def test_check_grads_2d_frobenius_order2():
    target = tg.Variable("target", b, w2, h2, d)
    loss = F.frobenius2(Y2 - target)
    vals = conv2d_values(2, 2, 4, 4, 2, 2, 3, seed=28)
    vals["target"] = rand(2, 3, 2, 2, seed=29)
    errors = tg.check_grads(loss, [data, kernel], vals, order=2)
    assert max(errors.values()) < 1e-10


def test_check_grads_2d_tanh_order2():
    loss = F.sum(F.tanh(Y2))
    vals = conv2d_values(1, 2, 4, 3, 2, 2, 2, seed=30)
    errors = tg.check_grads(loss, [data], vals, order=2)
    assert max(errors.values()) < 1e-10


def test_check_grads_cross_entropy_over_output_channels():
    Tg = tg.Variable("Tg", b, w2, d)
    loss = F.sum(F.cross_entropy(Y1b, Tg, "d"))
    vals = {
        "X": rand(2, 3, 8, seed=102),
        "Kc": rand(4, 3, 3, seed=103),
        "Tg": np.asarray(jax.nn.softmax(jnp.asarray(rand(2, 6, 4, seed=104)), axis=-1)),
    }
    errors = tg.check_grads(loss, [Xb, Kb], vals, order=1)
    assert max(errors.values()) < 1e-10


def test_grad_1d_vs_jax_grad():
    xv, kv = rand(15, seed=31), rand(5, seed=32)
    loss = F.sum(F.tanh(Y1))

    def jloss(xx, kk):
        return jnp.sum(jnp.tanh(jax_conv1d(xx, kk)))

    gx = tg.lower(loss.grad(x))(x=xv, K=kv)
    gk = tg.lower(loss.grad(K))(x=xv, K=kv)
    ex, ek = jax.grad(jloss, argnums=(0, 1))(jnp.asarray(xv), jnp.asarray(kv))
    assert_close(gx, ex, what="d/dx")
    assert_close(gk, ek, what="d/dK")


def test_grad_1d_large_kernel_vs_jax_grad():
    # k = 35, w = 70: the data gradient is a full convolution with a 35-long kernel
    xv, kv = rand(70, seed=33), rand(35, seed=34)
    loss = F.sum(F.tanh(Y1))

    def jloss(xx, kk):
        return jnp.sum(jnp.tanh(jax_conv1d(xx, kk)))

    fn = tg.lower([loss.grad(x), loss.grad(K)])
    gx, gk = fn(x=xv, K=kv)
    ex, ek = jax.grad(jloss, argnums=(0, 1))(jnp.asarray(xv), jnp.asarray(kv))
    assert_close(gx, ex, what="d/dx")
    assert_close(gk, ek, what="d/dK")


def test_grad_2d_vs_jax_grad():
    target = tg.Variable("target", b, w2, h2, d)
    loss = F.frobenius2(Y2 - target)
    vals = conv2d_values(2, 3, 6, 5, 2, 3, 2, seed=35)
    vals["target"] = rand(2, 4, 4, 2, seed=36)

    def jloss(dv, kv):
        return jnp.sum((jax_conv2d(dv, kv) - vals["target"]) ** 2)

    gd, gk = tg.lower([loss.grad(data), loss.grad(kernel)])(vals)
    ed, ek = jax.grad(jloss, argnums=(0, 1))(jnp.asarray(vals["data"]), jnp.asarray(vals["kernel"]))
    assert_close(gd, ed, what="d/ddata")
    assert_close(gk, ek, what="d/dkernel")


def test_hessian_1d_vs_jax_hessian():
    xv, kv = rand(8, seed=37), rand(3, seed=38)
    loss = F.sum(F.tanh(Y1))
    Hx, Hxk = tg.lower([loss.grad(x).grad(x), loss.grad(x).grad(K)])(x=xv, K=kv)

    def jloss(xx, kk):
        return jnp.sum(jnp.tanh(jax_conv1d(xx, kk)))

    assert_close(Hx, jax.hessian(jloss, 0)(jnp.asarray(xv), jnp.asarray(kv)), what="d2/dx2")
    assert_close(Hxk, jax.jacfwd(jax.grad(jloss, 0), 1)(jnp.asarray(xv), jnp.asarray(kv)), what="d2/dxdK")


# == 5. composition with JAX transformations =================================


def test_jax_grad_through_lowered_function():
    fn = tg.lower(Y1)
    xv, kv = jnp.asarray(rand(10, seed=39)), jnp.asarray(rand(3, seed=40))
    got = jax.grad(lambda kk: fn(x=xv, K=kk).sum())(kv)
    expected = jax.grad(lambda kk: jax_conv1d(xv, kk).sum())(kv)
    assert_close(got, expected)
    got_x = jax.grad(lambda xx: (fn(x=xx, K=kv) ** 2).sum())(xv)
    expected_x = jax.grad(lambda xx: (jax_conv1d(xx, kv) ** 2).sum())(xv)
    assert_close(got_x, expected_x)


def test_jit_of_lowered_function():
    fn = tg.lower(Y1)
    xv, kv = jnp.asarray(rand(10, seed=41)), jnp.asarray(rand(4, seed=42))
    jitted = jax.jit(lambda xx, kk: fn(x=xx, K=kk))
    assert_close(jitted(xv, kv), np.correlate(np.asarray(xv), np.asarray(kv), mode="valid"))


def test_vmap_of_lowered_function():
    fn = tg.lower(Y1)
    xs, kv = jnp.asarray(rand(5, 10, seed=43)), jnp.asarray(rand(3, seed=44))
    got = jax.vmap(lambda xx: fn(x=xx, K=kv))(xs)
    expected = np.stack([np.correlate(np.asarray(r), np.asarray(kv), mode="valid") for r in xs])
    assert_close(got, expected)
    ks = jnp.asarray(rand(4, 3, seed=45))
    got_k = jax.vmap(lambda kk: fn(x=xs[0], K=kk))(ks)
    expected_k = np.stack([np.correlate(np.asarray(xs[0]), np.asarray(r), mode="valid") for r in ks])
    assert_close(got_k, expected_k)


def test_jax_transformations_through_windowed_views():
    # one operand on two legs: lowered through window(), not lax.conv
    T = tg.Variable("T", w, k)
    fn = tg.lower(T @ C)
    tv = jnp.asarray(rand(9, 3, seed=105))

    def ref(t):
        return jnp.stack([jnp.trace(t[o:o + 3]) for o in range(7)])

    assert_close(fn(T=tv), ref(tv))
    assert_close(jax.grad(lambda t: (fn(T=t) ** 2).sum())(tv), jax.grad(lambda t: (ref(t) ** 2).sum())(tv))
    stacked = jnp.stack([tv, 2 * tv, -tv])
    assert_close(jax.vmap(lambda t: fn(T=t))(stacked), jax.vmap(ref)(stacked))
    assert_close(jax.jit(lambda t: fn(T=t))(tv), ref(tv))


def test_two_sizes_reuse_one_lowered_function():
    fn = tg.lower(Y1)
    for n, m in [(10, 3), (6, 2), (10, 3), (12, 12)]:
        xv, kv = rand(n, seed=n), rand(m, seed=m)
        assert_close(fn(x=xv, K=kv), np.correlate(xv, kv, mode="valid"), what=f"{n},{m}")


# == 6. chained convolutions ==================================================


def test_chained_convolutions_vs_numpy():
    K1 = tg.Variable("K1", k)
    K2 = tg.Variable("K2", k2)
    y = x @ tg.Convolution(w, k, w2) @ K1 @ tg.Convolution(w2, k2, w3) @ K2
    assert y.edges == ("w3",)
    xv, k1, k2v = rand(12, seed=46), rand(3, seed=47), rand(4, seed=48)
    got = tg.lower(y)(x=xv, K1=k1, K2=k2v)
    expected = np.correlate(np.correlate(xv, k1, mode="valid"), k2v, mode="valid")
    assert got.shape == (12 - 3 + 1 - 4 + 1,)
    assert_close(got, expected)


def test_chained_convolutions_gradient():
    K1 = tg.Variable("K1", k)
    K2 = tg.Variable("K2", k2)
    y = x @ tg.Convolution(w, k, w2) @ K1 @ tg.Convolution(w2, k2, w3) @ K2
    loss = F.sum(F.tanh(y))
    vals = {"x": rand(11, seed=49), "K1": rand(3, seed=50), "K2": rand(2, seed=51)}
    errors = tg.check_grads(loss, [x, K1, K2], vals, order=1)
    errors.update(tg.check_grads(loss, [K1], vals, order=2))
    assert set(errors) == {("x", 1), ("K1", 1), ("K2", 1), ("K1", 2)}
    assert max(errors.values()) < 1e-10


def test_five_convolutions_in_one_network():
    # five convolutions in one network (more than the planner searches exhaustively)
    syms = tg.symbols("n0 n1 n2 n3 n4 n5")
    ks = tg.symbols("q0 q1 q2 q3 q4")
    y = tg.Variable("x", syms[0])
    kernels = []
    for t in range(5):
        kern = tg.Variable(f"K{t}", ks[t])
        kernels.append(kern)
        y = y @ tg.Convolution(syms[t], ks[t], syms[t + 1]) @ kern
    assert y.edges == ("n5",)
    vals = {"x": rand(20, seed=52)}
    expected = vals["x"]
    for t, m in enumerate([3, 2, 4, 1, 3]):
        vals[f"K{t}"] = rand(m, seed=60 + t)
        expected = np.correlate(expected, vals[f"K{t}"], mode="valid")
    assert_close(tg.lower(y)(vals), expected)


# == 7. a convolution contracted twice with one operand ========================


def test_operand_on_input_and_kernel_legs():
    T = tg.Variable("T", w, k)
    z = T @ C
    assert z.edges == ("w2",)
    tv = rand(9, 4, seed=53)
    got = tg.lower(z)(T=tv)
    expected = np.array([sum(tv[o + j, j] for j in range(4)) for o in range(6)])
    assert_close(got, expected)
    assert_close(got, evaluate(z, {"T": tv}), what="vs reference")


def test_operand_on_input_and_output_legs():
    T = tg.Variable("T", w, w2)
    z = T @ C
    assert z.edges == ("k",)
    tv = rand(9, 6, seed=54)
    got = tg.lower(z)(T=tv)
    expected = np.array([sum(tv[o + j, o] for o in range(6)) for j in range(4)])
    assert_close(got, expected)


def test_operand_on_both_part_legs():
    M = tg.Variable("M", k, w2)
    z = x @ C @ M  # scalar: sum_{j,o} x[o + j] M[j, o]
    assert z.edges == ()
    xv, mv = rand(8, seed=55), rand(3, 6, seed=56)
    got = tg.lower(z)(x=xv, M=mv)
    expected = sum(xv[o + j] * mv[j, o] for j in range(3) for o in range(6))
    assert_close(got, expected)


# (n, m): window counts min(k, w2) of 32 (the most that are a stack of static
# slices), 33 and 35 (one gather each)
@pytest.mark.parametrize("n, m", [(63, 32), (65, 33), (70, 35)])
def test_operand_on_two_legs_many_windows(n, m):
    T = tg.Variable("T", w, k)
    tv = rand(n, m, seed=94)
    got = tg.lower(T @ C)(T=tv)
    expected = np.array([np.trace(tv[o:o + m]) for o in range(n - m + 1)])
    assert_close(got, expected)
    # on the input and output legs: the padded windows (transposed convolution)
    T2 = tg.Variable("T", w, w2)
    tv2 = rand(n, n - m + 1, seed=95)
    got2 = tg.lower(T2 @ C)(T=tv2)
    expected2 = np.array([sum(tv2[o + j, o] for o in range(n - m + 1)) for j in range(m)])
    assert_close(got2, expected2)
    # on both part legs, the input leg free: windows of the zero-padded operand
    T3 = tg.Variable("T", k, w2)
    tv3 = rand(m, n - m + 1, seed=96)
    got3 = tg.lower(T3 @ C)(T=tv3)
    expected3 = np.einsum("ijo,jo->i", indicator(n, m, n - m + 1), tv3)
    assert_close(got3, expected3)


def test_operand_on_both_part_legs_large():
    M = tg.Variable("M", k, w2)
    xv, mv = rand(70, seed=96), rand(35, 36, seed=97)
    got = tg.lower(x @ C @ M)(x=xv, M=mv)
    assert_close(got, np.einsum("ijo,i,jo->", indicator(70, 35, 36), xv, mv))


def test_operand_on_all_three_legs():
    T = tg.Variable("T", w, k, w2)
    z = T @ C  # scalar: sum_{j,o} T[o + j, j, o]
    tv = rand(7, 3, 5, seed=57)
    got = tg.lower(z)(T=tv)
    assert_close(got, np.sum(tv * indicator(7, 3, 5)))


# == 8. a bare convolution tensor ==============================================


@pytest.mark.parametrize("sizes", [{w: 5, k: 2}, {w: 5, w2: 4}, {k: 2, w2: 4}, {w: 5, k: 2, w2: 4}])
def test_bare_convolution_is_the_indicator(sizes):
    got = tg.lower(C, sizes=sizes)()
    assert_close(got, indicator(5, 2, 4))
    assert_close(got, evaluate(C, {}, sizes), what="vs reference")


def test_bare_convolution_with_string_size_keys():
    got = tg.lower(C, sizes={"w": 6, "k": 3})()
    assert_close(got, indicator(6, 3, 4))


def test_bare_convolution_reduced():
    dense = indicator(6, 3, 4)
    assert_close(tg.lower(F.sum(C, "k"), sizes={w: 6, k: 3})(), dense.sum(axis=1))
    assert_close(tg.lower(F.sum(C, "w"), sizes={w: 6, k: 3})(), dense.sum(axis=0))
    assert_close(tg.lower(F.sum(C, ["k", "w2"]), sizes={w: 6, k: 3})(), dense.sum(axis=(1, 2)))
    assert_close(tg.lower(F.sum(C), sizes={w: 6, k: 3})(), 12.0)


def test_bare_convolution_squared():
    # C @ C contracts all three legs: one entry per (j, o) pair
    assert_close(tg.lower(C @ C, sizes={w: 6, k: 3})(), 3 * 4)
    # sharing w and k: [o == o'] * k
    z = C @ C.rename(w2="o")
    assert_close(tg.lower(z, sizes={w: 6, k: 3})(), 3 * np.eye(4))


def test_bare_convolution_transposed_and_scaled():
    z = (2 * C).rename(w="a")
    got = tg.lower(z, sizes={w: 5, k: 2})()
    assert_close(got, 2 * indicator(5, 2, 4))


def test_part_legs_are_symmetric_numerically():
    # Convolution(w, w2, k) is the same tensor as Convolution(w, k, w2), axes permuted
    a = tg.lower(tg.Convolution(w, w2, k), sizes={w: 6, k: 3})()
    assert_close(a, indicator(6, 3, 4).transpose(0, 2, 1))


def test_product_of_conv_and_elementwise():
    # an elementwise product with C keeps it as a tensor in the network
    M = tg.Variable("M", w, k, w2)
    z = M * C
    mv = rand(5, 2, 4, seed=58)
    got = tg.lower(z)(M=mv)
    assert_close(got, mv * indicator(5, 2, 4))


# == 9. errors =================================================================


@pytest.mark.parametrize("bad", [3, "w", 3.0])
def test_non_symbol_size_is_a_type_error(bad):
    with pytest.raises(TypeError, match="sympy symbol"):
        tg.Convolution(bad, k, w2)
    with pytest.raises(TypeError, match="sympy symbol"):
        tg.Convolution(w, k, bad)


def test_size_expression_is_a_type_error():
    with pytest.raises(TypeError, match="sympy symbol"):
        tg.Convolution(w, k, w - k + 1)


@pytest.mark.parametrize("args", [(w, w, w2), (w, k, w), (w, k, k), (w, w, w)])
def test_duplicate_symbols(args):
    with pytest.raises(ValueError, match="appears twice"):
        tg.Convolution(*args)


def test_inconsistent_sizes_at_call_time():
    fn = tg.lower(Y1, sizes={w2: 5})
    with pytest.raises(ValueError, match="valid convolution"):
        fn(x=rand(10), K=rand(3))
    # consistent: fine
    assert_close(fn(x=rand(7), K=rand(3)), np.correlate(rand(7), rand(3), mode="valid"))


def test_inconsistent_sizes_from_an_input_with_the_output_edge():
    g = tg.Variable("g", w2)
    z = Y1 @ g  # scalar
    fn = tg.lower(z)
    with pytest.raises(ValueError, match="valid convolution"):
        fn(x=rand(10), K=rand(3), g=rand(5))
    xv, kv, gv = rand(10), rand(3), rand(8)
    assert_close(fn(x=xv, K=kv, g=gv), np.correlate(xv, kv, mode="valid") @ gv)


def test_kernel_longer_than_input():
    fn = tg.lower(Y1)
    with pytest.raises(ValueError, match="no longer than the input"):
        fn(x=rand(3), K=rand(5))


def test_kernel_longer_than_input_in_reference():
    with pytest.raises(ValueError, match="no longer than the input"):
        evaluate(Y1, {"x": rand(3), "K": rand(5)})


def test_transposed_output_would_be_empty():
    # x and g fix k = w - w2 + 1; an output longer than the input is an error
    g = tg.Variable("g", w2)
    with pytest.raises(ValueError, match="valid convolution"):
        tg.lower(x @ C @ g)(x=rand(4), g=rand(6))


def test_missing_size_cannot_be_derived():
    fn = tg.lower(C, sizes={w: 5})
    with pytest.raises(ValueError, match="not fixed"):
        fn()


def test_inconsistent_lower_sizes():
    fn = tg.lower(C, sizes={w: 5, k: 2, w2: 3})
    with pytest.raises(ValueError, match="valid convolution"):
        fn()


def test_to_source_with_inconsistent_sizes():
    with pytest.raises(ValueError, match="valid convolution"):
        tg.to_source(C, sizes={w: 5, k: 2, w2: 3})


# == 10. simplify, equality and hashing ========================================


def test_simplify_keeps_edges():
    assert C.simplify() == C
    assert C.simplify().edges == C.edges
    for t in [2 * C, C + C, C - 3 * C, (C @ K), F.sum(C, "w2")]:
        s = t.simplify()
        assert s.edges == t.edges
    Cr = C.rename(w="a", k="b", w2="o")
    assert Cr.simplify().edges == ("a", "b", "o")


def test_sum_of_convolutions_simplifies():
    assert (C + C).simplify() == (2 * C).simplify()
    assert (C - C).simplify() == tg.Zero({"w": w, "k": k, "w2": w2})
    assert (3 * C - C).simplify() == (2 * C).simplify()


def test_delta_on_a_leg_merges_into_the_convolution():
    z = (C @ tg.Delta(w2, "w2", "o")).simplify()
    assert z.edges == ("w", "k", "o")
    assert z == C.rename(w2="o")
    assert_close(tg.lower(z, sizes={w: 5, k: 2})(), indicator(5, 2, 4))


def test_part_legs_symmetric_equality_and_hash():
    a = tg.Convolution(w, k, w2)
    b2 = tg.Convolution(w, w2, k)
    assert a == b2
    assert hash(a) == hash(b2)
    # renaming both the same way keeps them equal
    assert a.rename(k="p", w2="q") == b2.rename(k="p", w2="q")
    # different sizes on the same leg names: not equal
    assert not (a.rename(k="p", w2="q") == b2.rename(w2="p", k="q"))


def test_input_leg_is_not_a_part_leg():
    a = tg.Convolution(w, k, w2)
    other = tg.Convolution(k, w, w2)  # edges named the same, but "k" is now the input leg
    assert not (a == other)
    assert a != other


def test_equality_up_to_inner_names():
    y_a = x @ C @ K
    y_b = x.rename(w="a") @ C.rename(w="a", k="z") @ K.rename(k="z")
    assert y_a == y_b
    assert hash(y_a) == hash(y_b)
    # not equal to the same network with another variable
    assert not (y_a == x @ C @ tg.Variable("L", k))


def test_hash_consistent_with_equality_in_sets():
    items = {tg.Convolution(w, k, w2), tg.Convolution(w, w2, k), C.rename(w="w"), 2 * C}
    assert len(items) == 2


def test_derivative_of_convolution_is_zero():
    # x's edge w and K's edge k are free in C: the new edges get "_" appended
    for v, new in ((x, "w_"), (K, "k_"), (tg.Variable("u", k2), "k2")):
        z = C.grad(v).simplify()
        assert isinstance(z, tg.Zero)
        assert z.edges == C.edges + (new,)
    assert_close(tg.lower(C.grad(x), sizes={w: 4, k: 2, w2: 3})(), np.zeros((4, 2, 3, 4)))


def test_size_derived_for_convolution_that_simplifies_away():
    # the reference evaluator derives w2 = w - k + 1 here; tg.lower should agree
    expected = evaluate(C - C, {}, {w: 5, k: 2})
    assert expected.shape == (5, 2, 4)
    assert_close(tg.lower(C - C, sizes={w: 5, k: 2})(), expected)


# == 11. generated source ======================================================

# The compiler never builds the dense indicator for a convolution that touches
# an operand: two operands joined by convolutions are one lax.conv_general_dilated,
# any other convolution a windowed view of a neighbour.


def _no_dense_indicator(src):
    assert "conv_indicator" not in src, src
    assert "window(" in src or "conv_general_dilated" in src, src


def test_source_has_no_dense_indicator_for_two_operand_networks():
    for expr in (Y1, Y1b, Y2, Y1.grad(x), F.sum(F.tanh(Y2)).grad(data), F.sum(F.tanh(Y2)).grad(kernel)):
        _no_dense_indicator(tg.to_source(expr))


def test_layer_loss_and_gradients_are_three_lax_convolutions():
    # backpropagation's form: the forward convolution, then the kernel gradient
    # (data against the cotangent) and the data gradient (a full convolution)
    loss = F.sum(F.tanh(Y2))
    src = tg.to_source([loss, loss.grad(kernel), loss.grad(data)])
    assert src.count("lax.conv_general_dilated(") == 3, src
    assert "window(" not in src and "conv_indicator" not in src, src


def test_source_uses_windows_for_an_operand_on_two_legs():
    # one operand on two legs of one convolution: no lax convolution expresses it
    for T in (tg.Variable("T", w, k), tg.Variable("T", w, w2), tg.Variable("T", w, k, w2)):
        src = tg.to_source(T @ C)
        assert "conv_indicator" not in src, src
        assert "window(" in src, src


def test_source_has_no_dense_indicator_for_larger_networks():
    M = tg.Variable("M", k, w2)
    v = tg.Variable("v", w2)
    for expr in (x @ C @ M, F.sum(F.tanh(x @ C @ M.rename(w2="o") @ v)).grad(x)):
        _no_dense_indicator(tg.to_source(expr))


def test_source_of_lowered_function_with_large_kernel():
    fn = tg.lower(Y1)
    _no_dense_indicator(fn.source(x=rand(70), K=rand(35)))
    T = tg.Variable("T", w, k)
    src = tg.lower(T @ C).source(T=rand(70, 35))
    assert "conv_indicator" not in src and "window(" in src


CHAIN = x @ tg.Convolution(w, k, w2) @ tg.Variable("K1", k) @ tg.Convolution(w2, k2, w3) @ tg.Variable("K2", k2)


def test_source_of_chained_convolutions_derives_middle_size():
    # every size follows from w, k and k2; tg.lower(CHAIN, sizes=...) accepts exactly these
    src = tg.to_source(CHAIN, sizes={w: 20, k: 3, k2: 4})
    assert "conv_indicator" not in src


def test_source_of_chained_convolutions_all_sizes_given():
    src = tg.to_source(CHAIN, sizes={w: 20, k: 3, w2: 18, k2: 4})
    _no_dense_indicator(src)
    fn = tg.lower(CHAIN, sizes={w: 20, k: 3, k2: 4})
    vals = {"x": rand(20, seed=70), "K1": rand(3, seed=71), "K2": rand(4, seed=72)}
    expected = np.correlate(np.correlate(vals["x"], vals["K1"], mode="valid"), vals["K2"], mode="valid")
    assert_close(fn(vals), expected)


def test_source_of_bare_convolution_builds_indicator():
    src = tg.to_source(C, sizes={w: 5, k: 2})
    assert "conv_indicator(5, 2, 4" in src
    assert "window(" not in src


def test_two_layer_network_hessian_wrt_first_kernel_vs_jax():
    # windows through two layers in one product: the choice of views is searched within its budget
    e, kw2, kh2, w3, h3 = tg.symbols("e kw2 kh2 w3 h3")
    K1 = tg.Variable("K1", d, c, k, kh)
    K2 = tg.Variable("K2", e, d, kw2, kh2)
    x = tg.Variable("x", b, c, w, h)
    y1 = F.tanh(x @ tg.Convolution(w, k, w2) @ tg.Convolution(h, kh, h2) @ K1)
    y2 = y1 @ tg.Convolution(w2, kw2, w3) @ tg.Convolution(h2, kh2, h3) @ K2
    hess = tg.lower(F.sum(F.tanh(y2)).grad(K1).grad(K1))
    vals = {"x": rand(2, 2, 7, 6, seed=90), "K1": rand(2, 2, 3, 2, seed=91) / 3, "K2": rand(2, 2, 2, 3, seed=92) / 3}

    def jax_loss(k1):
        a = jnp.tanh(lax.conv_general_dilated(jnp.asarray(vals["x"]), k1, (1, 1), "VALID"))
        return jnp.sum(jnp.tanh(lax.conv_general_dilated(a, jnp.asarray(vals["K2"]), (1, 1), "VALID")))

    assert_close(hess(vals), jax.hessian(jax_loss)(jnp.asarray(vals["K1"])))
