"""Property tests: random expressions, symbolic result == reference evaluation == JAX autodiff."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tgjax as tg
import tgjax.functions as F
from strategies import (
    PARTNER,
    I,
    J,
    K,
    assert_close,
    ev,
    expressions,
    jax_grad,
    jax_hessian,
    scalar_expressions,
    seeds,
    values,
    x,
)


# -- derivatives against autodiff of the reference evaluator ------------------


@settings(deadline=None)
@given(scalar_expressions(), seeds, st.data())
def test_gradient_matches_jax_grad(f, seed, data):
    vals = values(seed)
    assert f.edges == ()
    assume(f.variables())
    v = data.draw(st.sampled_from(f.variables()), label="wrt")
    g = f.grad(v).simplify()
    assert g.edges == tuple(e for e, _ in v.decl)
    assert_close(ev(g, vals), jax_grad(f, v, vals), what=f"d/d{v.name} of {f}")


@settings(deadline=None, max_examples=15)  # the Hessian's symbolic form is large to compile
@given(scalar_expressions(max_depth=2), seeds, st.data())
def test_hessian_matches_jax_hessian(f, seed, data):
    vals = values(seed)
    assume(f.variables())
    v = data.draw(st.sampled_from(f.variables()), label="wrt")
    h = f.grad(v).grad(v).simplify()
    names = tuple(e for e, _ in v.decl)
    assert h.edges == names + tuple(e + "_" for e in names)
    assert_close(ev(h, vals), jax_hessian(f, v, vals), what=f"d2/d{v.name}2 of {f}")


@settings(deadline=None, max_examples=8)  # each example compiles two large evaluations
@given(scalar_expressions(max_depth=2), seeds, st.data())
def test_unsimplified_gradient_matches_simplified(f, seed, data):
    """The raw derivative pass and its simplified form agree numerically."""
    vals = values(seed)
    assume(f.variables())
    v = data.draw(st.sampled_from(f.variables()), label="wrt")
    raw = f.grad(v)
    assert_close(ev(raw, vals), ev(raw.simplify(), vals), what=f"d/d{v.name} of {f}")


def _new_names(e, v):
    """API.md: a new edge keeps v's edge name, with "_" appended while it is free in e."""
    taken, names = set(e.edges), []
    for d, _ in v.decl:
        while d in taken:
            d += "_"
        taken.add(d)
        names.append(d)
    return tuple(names)


@settings(deadline=None, max_examples=10)  # each example compiles four evaluations
@given(expressions(max_depth=2), seeds, st.data())
def test_jacobian_matches_jacrev(e, seed, data):
    """Derivatives of non-scalar expressions, first and second order, against the
    reference evaluation of an unevaluated tg.Derivative (jax.jacrev)."""
    vals = values(seed)
    assume(e.variables())
    v = data.draw(st.sampled_from(e.variables()), label="wrt")
    d = e.grad(v)
    assert d.edges == e.edges + _new_names(e, v)
    s = d.simplify()
    assert s.edges == d.edges
    assert_close(ev(s, vals), ev(tg.Derivative(e, v), vals), what=f"d({e})/d{v.name}")
    h = d.grad(v).simplify()
    assert h.edges == d.edges + _new_names(d, v)
    assert_close(ev(h, vals), ev(tg.Derivative(tg.Derivative(e, v), v), vals), what=f"d2({e})/d{v.name}2")


# -- simplify -----------------------------------------------------------------


@settings(deadline=None)
@given(expressions(), seeds)
def test_simplify_keeps_edges_and_value(e, seed):
    vals = values(seed)
    s = e.simplify()
    assert s.edges == e.edges
    assert s.shape == e.shape
    assert_close(ev(s, vals), ev(e, vals), what=str(e))


def test_sum_made_from_a_summed_sum_factor_is_in_normal_form():
    # Found by test_simplify_is_idempotent: summing j over (δ[k] δ[i] + x[i] δ[k]) δ[j] δ[m]
    # gives j (δ[i] + x[i]) δ[k] δ[m], whose δ[i] term merges with the other term's at once.
    d = tg.Delta
    inner = d(K, "k") @ d(I, "i") + x @ d(K, "k")
    e = (d(J, "j", "m") @ d(K, "k") @ d(I, "i") + inner @ d(J, "j") @ d(J, "m")) @ d(J, "j")
    s = e.simplify()
    assert s.simplify() == s
    assert str(s) == "j x[i] δ[k] δ[m] + (j + 1) δ[k] δ[i] δ[m]"


@settings(deadline=None)
@given(expressions())
def test_simplify_is_idempotent(e):
    # values are compared in test_simplify_keeps_edges_and_value; here only the normal form
    s = e.simplify()
    s2 = s.simplify()
    assert s2.edges == s.edges
    assert s2 == s, f"{s} simplified again to {s2}"
    assert hash(s2) == hash(s)
    assert s2.simplify() == s2


@settings(deadline=None)
@given(expressions(max_depth=2), seeds)
def test_simplify_is_equal_for_equal_inputs(e, seed):
    """Renaming round-trips give equal expressions, and their normal forms are equal too."""
    mapping = {d: "t_" + d for d in e.edges}
    back = e.rename(mapping).rename({v: k for k, v in mapping.items()})
    assert back == e
    assert back.simplify() == e.simplify()


@settings(deadline=None)
@given(expressions(max_depth=2), expressions(max_depth=2), expressions(max_depth=2))
def test_sum_normal_form_is_canonical(a, b, c):
    """Sums that differ by grouping, order or distributed weights have one normal form."""
    assert ((a + b) + c).simplify() == (c + (b + a)).simplify()
    assert (2 * (a - b)).simplify() == (2 * a - 2 * b).simplify()
    assert (a - b + b).simplify() == (b + a - b).simplify()


# -- equality agrees with numbers -------------------------------------------------


@settings(deadline=None)
@given(expressions(), seeds)
def test_rename_round_trip_is_equal(e, seed):
    vals = values(seed)
    tmp = {d: "t_" + d for d in e.edges}
    back = e.rename(tmp).rename({v: k for k, v in tmp.items()})
    assert back == e and e == back
    assert hash(back) == hash(e)
    assert back.edges == e.edges
    # a permutation among edges of the same size, then its inverse
    perm = {d: PARTNER[d] for d in e.edges if PARTNER[d] in e.edges}
    if perm:
        swapped = e.rename(perm)
        again = swapped.rename(perm)
        assert again == e
        assert hash(again) == hash(e)
        assert_close(ev(again, vals), ev(e, vals))


@settings(deadline=None, max_examples=15)  # each example compiles several large evaluations
@given(expressions(max_depth=2), expressions(max_depth=2), seeds)
def test_sum_is_commutative(e, g, seed):
    vals = values(seed)
    left, right = e + g, g + e
    assert left == right
    assert hash(left) == hash(right)
    assert e @ g == g @ e and hash(e @ g) == hash(g @ e)
    assert e * g == g * e and hash(e * g) == hash(g * e)
    order = left.edges
    assert_close(ev(left, vals), np.transpose(ev(right, vals), [right.edges.index(d) for d in order]))


@settings(deadline=None, max_examples=10)  # each example compiles several large evaluations
@given(expressions(max_depth=2), expressions(max_depth=2), expressions(max_depth=2), seeds)
def test_product_is_associative(a, b, c, seed):
    # an edge free in all three would be contracted in one grouping and free in the other
    assume(not (set(a.edges) & set(b.edges) & set(c.edges)))
    vals = values(seed)
    left, right = (a @ b) @ c, a @ (b @ c)
    assert set(left.edges) == set(right.edges)
    assert left == right
    assert hash(left) == hash(right)
    assert_close(ev(left, vals), np.transpose(ev(right, vals), [right.edges.index(d) for d in left.edges]))


@settings(deadline=None, max_examples=60)
@given(expressions(max_depth=2), expressions(max_depth=2), expressions(max_depth=2), st.sampled_from(("mul", "matmul")))
def test_normal_form_does_not_depend_on_grouping(a, b, c, op):
    product = (lambda u, v: u * v) if op == "mul" else (lambda u, v: u @ v)
    if op == "matmul":
        assume(not (set(a.edges) & set(b.edges) & set(c.edges)))
    # Opened in place (nested products not yet simplified join one flat product) ...
    opened = product(a, product(b, c)).simplify()
    # ... and met as normal forms, simplified where they stand alone first.
    ab, bc = product(a, b), product(b, c)
    ab.simplify(), bc.simplify()
    assert product(ab, c).simplify() == opened
    assert product(a, bc).simplify() == opened


@settings(deadline=None, max_examples=15)  # each example compiles several large evaluations
@given(expressions(), seeds, st.sampled_from(("double", "shift", "negate", "square")))
def test_different_expressions_are_unequal(e, seed, how):
    vals = values(seed)
    base = ev(e, vals)
    if how == "double":
        other = 2 * e
        assume(np.max(np.abs(base)) > 1e-6)
    elif how == "shift":
        other = e + 1
    elif how == "negate":
        other = -e
        assume(np.max(np.abs(base)) > 1e-6)
    else:
        other = e * e
        assume(np.max(np.abs(base - base**2)) > 1e-6)
    assert not (e == other)
    assert e != other
    assert not np.allclose(ev(other, vals), base)


@settings(deadline=None, max_examples=15)  # one evaluation per edge
@given(expressions(max_depth=2), seeds)
def test_sum_over_edge_then_simplify(e, seed):
    """F.sum over each edge keeps the other edges in order, before and after simplify."""
    vals = values(seed)
    for d in e.edges:
        r = F.sum(e, d)
        assert r.edges == tuple(f for f in e.edges if f != d)
        assert r.simplify().edges == r.edges
        assert_close(ev(r.simplify(), vals), ev(e, vals).sum(axis=e.edges.index(d)))


@settings(deadline=None, max_examples=25)
@given(expressions(max_depth=2), seeds)
def test_expand_has_the_same_value_and_is_idempotent(e, seed):
    vals = values(seed)
    try:
        out = e.expand()
    except ValueError as error:  # a product of many sums is refused, by name
        assert "terms" in str(error)
        return
    assert out.edges == e.edges
    assert_close(ev(out, vals), ev(e, vals))
    assert out.expand() == out


@settings(deadline=None, max_examples=40)
@given(expressions(max_depth=2), expressions(max_depth=2), expressions(max_depth=2), st.sampled_from(("mul", "matmul")))
def test_expressions_equal_by_distributivity_expand_to_one_form(a, b, c, op):
    c = F.tanh(b) * F.sum(c)  # a second term with b's edges, and c's structure
    product = (lambda u, v: u * v) if op == "mul" else (lambda u, v: u @ v)
    if op == "matmul":
        assume(not (set(a.edges) & set(b.edges) & set(c.edges)))
    left, right = product(a, b + c), product(a, b) + product(a, c)
    assert left.expand() == right.expand()
