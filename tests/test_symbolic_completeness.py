"""Symbolic completeness: cancellation inside contractions, the invariances of softmax and
logsumexp, hand-written softmax. Each class symbolically (``==`` against the closed form) and
numerically against JAX in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F

b, c, d, s, n = tg.symbols("b c d s n")
S, T = tg.Variable("S", i=n, j=n), tg.Variable("T", j=n, k=n)
x, z = tg.Variable("x", i=n), tg.Variable("z", b, c)
a, bb, cc, w = (tg.Variable(name) for name in ("a", "bb", "cc", "w"))
rng = np.random.default_rng(0)


def _close(ours, theirs, rtol=1e-9):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=rtol, atol=rtol)


# -- cancellation inside contractions ------------------------------------------------------

Z = F.sum(F.exp(x))


@pytest.mark.parametrize("expr, closed", [
    pytest.param((S @ T) * (S @ T) ** -1, tg.Delta(n, "i") * tg.Delta(n, "k"), id="(ST) (ST)^-1 = 1"),
    pytest.param((S @ T) * (S @ T), (S @ T) ** 2, id="(ST) (ST) = (ST)^2"),
    pytest.param((S @ T) ** 3 * (S @ T) ** -2, S @ T, id="(ST)^3 (ST)^-2 = ST"),
    pytest.param((F.exp(x) / Z) * Z, F.exp(x), id="(exp(x) / Z) Z = exp(x)"),
    pytest.param((a / bb) * (a / bb) ** -1 + w, 1 + w, id="(a/b) (a/b)^-1 + w = 1 + w"),
    pytest.param((a / bb) / (cc / bb), a / cc, id="(a/b) / (c/b) = a/c"),
    pytest.param((x * x.rename(i="i")) ** 2 / x ** 3, x, id="(x x)^2 / x^3 = x"),
])
def test_powers_cancel_inside_contractions(expr, closed):
    assert expr.simplify() == closed.simplify()
    values = {"S": rng.normal(size=(3, 3)), "T": rng.normal(size=(3, 3)), "x": rng.uniform(0.5, 2, size=3),
              "a": 1.5, "bb": 0.7, "cc": -1.2, "w": 0.3}
    names = {v.name for v in expr.variables()}
    used = {k: v for k, v in values.items() if k in names}
    _close(tg.lower(expr)(**used), tg.lower(closed, sizes={n: 3})(**{k: v for k, v in used.items() if k in {u.name for u in closed.variables()}}))


def test_a_power_of_a_sum_over_an_edge_is_not_distributed():
    # (sum_i x_i)^2 is not sum_i x_i^2: only an elementwise product's power splits
    assert (F.sum(x) ** 2).simplify() != F.sum(x ** 2).simplify()
    _close(tg.lower(F.sum(x) ** 2)(x=np.array([1.0, 2.0, 3.0])), 36.0)


def test_a_negative_power_of_an_outer_product_with_an_identity_is_not_split():
    # (x ⊗ I)^-1 is inf off the diagonal: splitting it would give 0 there
    outer = x * tg.Delta(n, "j", "k")
    assert (outer ** -1).simplify() != (x ** -1 * tg.Delta(n, "j", "k")).simplify()


# -- softmax and logsumexp: shift invariance -------------------------------------------------

cb = tg.Variable("cb", b)
Z_VAL, CB_VAL = rng.normal(size=(3, 4)), rng.normal(size=3)


@pytest.mark.parametrize("expr, closed, ref", [
    pytest.param(F.softmax(z + cb, "c"), F.softmax(z, "c"), lambda: jax.nn.softmax(Z_VAL + CB_VAL[:, None], axis=1), id="softmax"),
    pytest.param(F.log_softmax(z + cb, "c"), F.log_softmax(z, "c"), lambda: jax.nn.log_softmax(Z_VAL + CB_VAL[:, None], axis=1), id="log_softmax"),
    pytest.param(F.logsumexp(z + cb, "c"), F.logsumexp(z, "c") + cb, lambda: jax.nn.logsumexp(Z_VAL + CB_VAL[:, None], axis=1), id="logsumexp"),
    pytest.param(F.softmax(z - 2 * cb + 3, "c"), F.softmax(z, "c"), lambda: jax.nn.softmax(Z_VAL, axis=1), id="softmax, two shifts"),
])
def test_softmax_and_logsumexp_ignore_a_shift_constant_along_their_edge(expr, closed, ref):
    assert expr.simplify() == closed.simplify()
    _close(tg.lower(expr)(z=Z_VAL, cb=CB_VAL), ref())


def test_a_shift_along_the_other_edge_is_kept():
    shift = tg.Variable("sc", c)
    assert F.softmax(z + shift, "c").simplify() != F.softmax(z, "c").simplify()


def test_an_attention_bias_added_to_every_key_score_has_zero_gradient_symbolically():
    q, K, V = tg.Variable("q", d), tg.Variable("K", s, d), tg.Variable("V", s, d)
    bias = tg.Variable("bias")
    loss = F.sum(F.softmax(K @ q + bias, "s") @ V)
    assert loss.grad(bias).simplify() == tg.Zero({})
    per_query = tg.Variable("per_query", b)  # a bias per query, the same for every key
    Q = tg.Variable("Q", b, d)
    scores = Q @ K.rename() + per_query
    assert F.sum(F.softmax(scores, "s") @ V).grad(per_query).simplify() == tg.Zero({"b": b})


# -- a softmax written by hand -----------------------------------------------------------------

@pytest.mark.parametrize("edge", ["c", "b"])
def test_a_hand_written_softmax_is_recognised_and_stable_at_large_logits(edge):
    hand = F.exp(z) / F.sum(F.exp(z), edge)
    assert hand.simplify() == F.softmax(z, edge)
    logits = 1000.0 + rng.normal(size=(3, 4))
    out = tg.lower(hand)(z=logits)
    assert np.all(np.isfinite(out))
    _close(out, jax.nn.softmax(logits, axis="bc".index(edge)))
    loss = F.sum(F.log(hand) * tg.Variable("y", b, c))
    grads = tg.lower(loss.grad(z))(z=logits, y=np.ones((3, 4)))
    ref = jax.grad(lambda v: jnp.sum(jax.nn.log_softmax(v, axis="bc".index(edge))))(logits)
    _close(grads, ref, rtol=1e-6)


# -- expand() ----------------------------------------------------------------------------------

X, A = tg.Variable("X", i=n, j=n), tg.Variable("A", i=n, j=n)
va, vb, vx, vy, vw = (tg.Variable(name, i=n) for name in ("va", "vb", "vx", "vy", "vw"))


def test_expand_distributes_products_over_sums():
    left = X @ (va + vb).rename(i="j")
    assert left.expand() == (X @ va.rename(i="j") + X @ vb.rename(i="j")).expand()
    assert left.simplify() != (X @ va.rename(i="j") + X @ vb.rename(i="j")).simplify()  # simplify stays factored
    assert ((vx + vy) @ vw - vx @ vw - vy @ vw).expand() == tg.Zero({})
    s_ = F.sigmoid(vx)
    assert (s_ * (1 - s_)).expand() == (s_ - s_ ** 2).expand()
    assert ((vx + vy) ** 2).expand() == (vx ** 2 + 2 * vx * vy + vy ** 2).expand()


def test_expand_keeps_edges_and_is_idempotent():
    e = (X + A.rename(i="j", j="i")) @ (va + vb).rename(i="j")
    out = e.expand()
    assert out.edges == e.edges
    assert out.expand() == out
    assert ((A + X) * (va + 1)).expand().edges == ((A + X) * (va + 1)).edges


def test_the_gradient_of_a_quadratic_form_is_the_same_written_either_way():
    b_, c_ = tg.Variable("b_", j=n), tg.Variable("c_", i=n)
    D = tg.Variable("D", i=n, k=n)
    u = X @ b_ + c_
    f = u @ D @ u.rename(i="k")
    Dt = D.rename(i="k", k="i")
    factored = X @ (D @ u.rename(i="k") + Dt @ u.rename(i="k")).rename(i="i")  # X^T (D u + D^T u)
    grad = f.grad(b_)
    assert grad.expand() == factored.rename().expand()


def test_the_third_derivative_of_det_is_the_signed_sum_over_permutations():
    import itertools as it

    d3 = F.det(X).grad(X).grad(X).grad(X)
    rows, cols = ("i", "i_", "i__"), ("j", "j_", "j__")
    inverse_t = F.inverse(X).rename(i="j", j="i")  # (X^-1)^T[i, j] = (X^-1)[j, i]
    terms = []
    for perm in it.permutations(range(3)):
        sign = round(np.linalg.det(np.eye(3)[list(perm)]))
        factor = None
        for r, p in zip(rows, perm):
            part = inverse_t.rename(i=r, j=cols[p])
            factor = part if factor is None else factor * part
        terms.append(sign * factor)
    closed = F.det(X) * sum(terms[1:], terms[0])
    assert d3.expand() == closed.expand()
    assert len(d3.expand().terms) == 6


def test_expand_refuses_an_explosion_with_a_clear_error():
    big = tg.Variable("q", i=n)
    for _ in range(15):
        big = big * (big + 1)
    with pytest.raises(ValueError, match="terms"):
        big.expand()


# -- symmetric variables -----------------------------------------------------------------------

Ssym = tg.Variable("Ssym", i=n, j=n, symmetric=[("i", "j")])
S_VAL = rng.normal(size=(3, 3))
S_VAL = S_VAL + S_VAL.T
M_VAL = rng.normal(size=(3, 3))
M = tg.Variable("M", i=n, j=n)


def test_a_symmetric_variable_equals_its_transpose():
    transposed = Ssym.rename(i="j", j="i")
    assert transposed == Ssym
    assert (Ssym - transposed).simplify() == tg.Zero(Ssym.shape)
    assert (Ssym + transposed).simplify() == (2 * Ssym).simplify()
    assert str(transposed) == "Ssym[i,j]" and tg.to_latex(transposed) == r"\mathrm{Ssym}_{i j}"
    assert M.rename(i="j", j="i") != M  # a plain matrix is not its transpose
    assert tg.Variable("Ssym", i=n, j=n) != Ssym  # the symmetry is part of the variable


def test_the_hessian_of_a_quadratic_form_in_a_symmetric_matrix_is_twice_the_matrix():
    f = x @ Ssym @ x.rename(i="j")
    hessian = f.grad(x).grad(x)
    assert hessian.simplify() == (2 * Ssym.rename(j="i_")).simplify()
    _close(tg.lower(hessian)(x=np.ones(3), Ssym=S_VAL), 2 * S_VAL)


def test_the_gradient_with_respect_to_a_symmetric_variable_is_symmetrised():
    f = F.sum(M * Ssym)
    assert f.grad(Ssym).simplify() == ((M + M.rename(i="j", j="i")) / 2).simplify()
    assert tg.Derivative(f, Ssym).simplify() == f.grad(Ssym).simplify()
    loss = F.sum(F.tanh(Ssym @ M.rename(i="j", j="k")) ** 2)
    G = jax.grad(lambda a: jnp.sum(jnp.tanh(a @ M_VAL) ** 2))(S_VAL)
    _close(tg.lower(loss.grad(Ssym))(Ssym=S_VAL, M=M_VAL), (G + G.T) / 2)
    _close(tg.lower(loss.grad(Ssym).simplify())(Ssym=S_VAL, M=M_VAL), (G + G.T) / 2)
    tg.check_grads(loss, [Ssym], {"Ssym": S_VAL, "M": M_VAL}, order=2)


def test_a_fully_symmetric_three_edge_tensor():
    K = tg.Variable("K", i=n, j=n, k=n, symmetric=[("i", "j"), ("j", "k")])
    assert K.rename(i="k", k="i") == K and K.rename(i="j", j="k", k="i") == K
    v = tg.Variable("v", i=n)
    cubic = K @ v @ v.rename(i="j") @ v.rename(i="k")
    values = rng.normal(size=(3, 3, 3))
    values = sum(np.transpose(values, p) for p in __import__("itertools").permutations(range(3))) / 6
    tg.check_grads(cubic, [v, K], {"K": values, "v": rng.normal(size=3)}, order=2)


@pytest.mark.parametrize("symmetric, error, match", [
    ([("i", "q")], ValueError, "'q', which is not an edge"),
    ([("i", "i")], ValueError, "names one edge twice"),
    ([("i",)], TypeError, "pairs of edge names"),
    ("ij", TypeError, "pairs of edge names"),
])
def test_bad_symmetries_are_clear_errors(symmetric, error, match):
    with pytest.raises(error, match=match):
        tg.Variable("Bad", i=n, j=n, symmetric=symmetric)


def test_symmetric_edges_must_have_one_size():
    with pytest.raises(ValueError, match="a swap needs equal sizes"):
        tg.Variable("Bad", i=n, j=3, symmetric=[("i", "j")])
