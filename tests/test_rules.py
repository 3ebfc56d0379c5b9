"""Each named rewrite rule on its own: where it applies, what it gives, where it does not,
and that simplification records it by name."""

from __future__ import annotations

import pytest
import sympy

import tgjax as tg
import tgjax.functions as F
from tgjax._ir import along as al
from tgjax._ir import elementwise as ew
from tgjax._ir.nodes import Delta, Expr, Function, Product, ones, scale
from tgjax._simplify import products as pr
from tgjax._simplify.core import recording, simplified
from tgjax._simplify.functions import SHARED_RULES, fold_at_zero, ones_out_of_function
from tgjax._simplify.sums import collect_terms

i, j = tg.symbols("i j")
x = tg.Variable("x", i)
S = tg.Variable("S", i=i, j=i)
I = tg.Delta(i, "i", "j")
zero = tg.Zero({"i": i})


def _p(k, u):
    return Function(ew.power(k), [u])


sa, sb = tg.Variable("a"), tg.Variable("b")
Z, cj = tg.Variable("Z", i=i, j=i), tg.Variable("cj", j=i)
qd, Kd, bd = tg.Variable("qd", d=i), tg.Variable("Kd", i=i, d=i), tg.Variable("bd", d=i)  # a query, keys, a key bias


# (rule, node it applies to, expected result, node it leaves alone)
CASES = [
    (ew.log_of_exp, F.log(F.exp(x)), x, F.log(F.tanh(x))),
    (ew.stable_log, F.log(F.softmax(x, "i")), x - F.logsumexp(x, "i"), F.log(x)),
    (ew.stable_log, F.log(F.det(S)), al.logdet(S, "i", "j"), F.log(F.sum(S))),
    (ew.stable_log, F.log(F.sum(F.exp(x))), F.logsumexp(x, "i"), F.log(F.sum(F.tanh(x)))),
    (ew.power_one, _p(1, x), x, _p(2, x)),
    (ew.power_zero, _p(0, x), ones({"i": i}), _p(2, x)),
    (ew.power_of_power, _p(3, _p(2, x)), _p(6, x), _p(3, _p(sympy.Rational(1, 2), x))),
    (ew.power_of_scaled, _p(2, 3 * x), 9 * _p(2, x), _p(sympy.Rational(1, 2), 3 * x)),
    (al.constant_at_zero, F.softmax(zero, "i"), scale(ones({"i": i}), 1 / i), F.softmax(x, "i")),
    (al.constant_at_zero, F.logsumexp(zero, "i"), scale(ones({}), sympy.log(i)), F.logsumexp(x, "i")),
    (al.inverse_of_identity, F.inverse(I), I, F.inverse(S)),
    (al.det_of_identity, F.det(I), ones({}), F.det(S)),
    (al.logdet_of_identity, al.logdet(I, "i", "j"), tg.Zero({}), al.logdet(S, "i", "j")),
    (al.inverse_of_inverse, F.inverse(F.inverse(S)), S, F.inverse(F.inverse(S, ("j", "i")))),
    (ew.log1p_of_expm1, F.log1p(F.expm1(x)), x, F.log1p(F.exp(x))),
    (ew.expm1_of_log1p, F.expm1(F.log1p(x)), x, F.expm1(F.log(x))),
    (ew.power_of_product, _p(-1, Product([sa, _p(-1, sb)])), Product([_p(-1, sa), _p(-1, _p(-1, sb))]), _p(-1, x @ x)),
    (ew.power_of_product, _p(2, x * S), _p(2, x) * _p(2, S), _p(2, F.sum(S, "j"))),
    (ew.power_of_product, _p(-1, Product([F.sum(x), F.sum(S)])), Product([_p(-1, F.sum(x)), _p(-1, F.sum(S))]),
     _p(-1, x @ S)),
    (al.softmax_of_shift, F.softmax(Z + cj, "i"), F.softmax(Z, "i"), F.softmax(Z + x, "i")),
    (al.softmax_of_shift, F.softmax(Product([cj, Delta._make(i, ("i",))]), "i"), scale(ones({"i": i, "j": i}), 1 / i), F.softmax(Z, "i")),
    (al.softmax_of_shift, F.softmax(qd @ (Kd + bd), "i"), F.softmax(qd @ Kd, "i"), F.softmax(qd @ (Kd + Kd), "i")),
    (al.logsumexp_of_shift, F.logsumexp(Z + cj, "i"), None, F.logsumexp(Z + x, "i")),
    (fold_at_zero, F.exp(zero), ones({"i": i}), F.log(zero)),
    (fold_at_zero, F.tanh(zero), zero, F.tanh(x)),
    (ones_out_of_function, F.exp(Product([x, Delta._make(j, ("k",))])), Product([F.exp(x), Delta._make(j, ("k",))]),
     F.exp(Product([x, x.rename(i="k")]))),
]


@pytest.mark.parametrize("rule, node, expected, other", CASES, ids=[f"{c[0].__name__}-{k}" for k, c in enumerate(CASES)])
def test_rule(rule, node, expected, other):
    result = rule(node)
    if expected is None:  # a result that is checked by its value below
        expected = cj + F.logsumexp(Z, "i")
        assert result is not None and result.simplify() == expected.simplify()
    else:
        assert result is not None and result == expected
    assert set(result.edges) == set(node.edges)
    assert rule(other) is None


# -- product rules: each rewrites a flat product (tgjax._simplify.products.Flat) -----------------

A = tg.Variable("A", i=i, j=i)
B = tg.Variable("B", j=i, k=i)
C = tg.Variable("C", k=i, l=i)
y = tg.Variable("y", i)
Sk = S.rename(j="k")
inverse_k = F.inverse(S).rename(i="k")

def _diagonal(u, v):
    """The diagonal of u * v as one flat network: u[a,b] v[c,d] δ[a,b,c,d,i,j]."""
    return Product([u.rename(i="a", j="b"), v.rename(i="c", j="d"), Delta._make(i, ("a", "b", "c", "d", "i", "j"))])


def _twice(second_b):
    """(A @ B) * (A @ second_b) as one flat network: A[a,j] B[j,c] A[d,e] B'[e,f] δ[a,d,i] δ[c,f,k]."""
    return Product([
        A.rename(i="a"), B.rename(k="c"), A.rename(i="d", j="e"), second_b.rename(j="e", k="f"),
        Delta._make(i, ("a", "d", "i")), Delta._make(i, ("c", "f", "k")),
    ])


def _broadcast(v):
    """v[j] broadcast along i: v[j] δ[i]."""
    return Product([v.rename(i="j"), Delta._make(i, ("i",))])


# (rule, product it applies to, what that simplifies to, product it leaves alone)
PRODUCT_CASES = [
    (pr.zero_factor, Product([x, tg.Zero({"j": i})]), tg.Zero({"i": i, "j": i}), Product([x, y.rename(i="j")])),
    (pr.inline_nested, (A @ B) @ C, Product([A, B, C]), A @ B),
    (pr.inline_nested, Product([3 * x, y.rename(i="j")]), 3 * Product([x, y.rename(i="j")]), Product([x, y.rename(i="j")])),
    (pr.merge_deltas, Product([A, Delta._make(i, ("j", "m")), B.rename(j="m")]), A @ B, A @ B),
    (pr.merge_deltas, Product([Delta._make(i, ("a",)), Delta._make(i, ("a",))]), tg.Delta(i), F.sum(x)),
    (pr.combine_powers, x * x, x ** 2, x * y),
    (pr.combine_powers, Product([x, x.rename(i="a"), Delta._make(i, ("i", "a"))]), F.sum(x ** 2), Product([x, y.rename(i="a"), Delta._make(i, ("i", "a"))])),
    (pr.combine_powers, _diagonal(A, A), tg.Delta(i, "i", "j") * (A * A), _diagonal(A, B.rename(j="i", k="j"))),
    (pr.combine_powers, x * x ** -1, ones({"i": i}), x * y ** -1),
    (pr.square_of_a_full_contraction, x @ x, F.sum(x ** 2), A @ A.rename(i="j", j="i")),
    (pr.combine_scalar_factors, (x @ y) * (x @ y), (x @ y) ** 2, (x @ y) * (x @ x)),
    (pr.combine_scalar_factors, (x @ y) ** 2 * (x @ y) ** -1, x @ y, (x @ y) ** 2 * (y @ y) ** -1),
    (pr.combine_powers, _twice(B), (A @ B) ** 2, _twice(tg.Variable("D", j=i, k=i))),
    (pr.combine_powers, (A @ B) * (A @ B) ** -1, ones({"i": i, "k": i}), (A @ B) * (A @ C.rename(k="j", l="k")) ** -1),
    (pr.cancel_inverse, Sk @ inverse_k, I, Sk @ C.rename(k="k", l="j")),
    (pr.cancel_inverse, F.inverse(S).rename(j="k") @ S.rename(i="k"), I, Sk @ C.rename(l="j")),
    (pr.recognise_softmax, F.exp(x) / F.sum(F.exp(x)), F.softmax(x, "i"), F.exp(x) / F.sum(F.exp(y))),
    (pr.recognise_softmax, F.exp(A) / F.sum(F.exp(A), "j"), F.softmax(A, "j"), F.exp(A) / F.sum(F.exp(A.rename(i="j", j="i")), "j")),
    (pr.ones_out_of_sum_factor, Product([x, _broadcast(y) + _broadcast(x)]), F.sum(x) * (y + x).rename(i="j"), Product([x, x + y])),
    (pr.broadcast_sum_distributed, Product([x + y, Delta._make(i, ("l",))]),
     Product([x, Delta._make(i, ("l",))]) + Product([y, Delta._make(i, ("l",))]), Product([x + y, y.rename(i="l")])),
    (pr.sum_into_sum_factor, F.sum(x + y), F.sum(x) + F.sum(y), F.sum(x * (x + y))),
    (pr.sum_into_sum_factor, Product([tg.Delta(i, "j"), Delta._make(i, ("i",)), x + y]), tg.Delta(i, "j") * (F.sum(x) + F.sum(y)), (x + y) * tg.Delta(i, "j")),
]


def _applied(rule, node):
    # each factor in normal form, as a nested product simplified before meets the rules
    # (Flat.of would open a nested product that is not simplified yet in place)
    flat = pr.Flat(tuple(simplified(f) for f in node.factors), sympy.Integer(1), node.edges, node.shape)
    result = rule(flat)
    return result if result is None or isinstance(result, Expr) else result.expr()


@pytest.mark.parametrize("rule, node, expected, other", PRODUCT_CASES, ids=[f"{c[0].__name__}-{k}" for k, c in enumerate(PRODUCT_CASES)])
def test_product_rule(rule, node, expected, other):
    result = _applied(rule, node)
    assert result is not None and result.simplify() == expected.simplify()
    assert set(result.edges) == set(node.edges)
    assert _applied(rule, other) is None


def test_collect_terms_merges_and_drops_terms_and_is_recorded_only_then():
    assert collect_terms(x + (y - x)) == y
    assert collect_terms(A + A.rename(i="j", j="i").rename(i="j", j="i")) == 2 * A
    with recording() as steps:
        (x + 2 * (y - x)).simplify()
        (x + y).simplify()
    assert [name for name, _, _ in steps] == ["collect_terms"]


def test_every_rule_has_a_docstring_and_a_case():
    rules = {r for fn in (*ew.BUILTINS, *al.BUILTINS, ew.power(2)) for r in fn.identities}
    rules |= {*SHARED_RULES, collect_terms, *pr.PRODUCT_RULES, *pr.FINISHING_RULES}
    tested = {c[0] for c in CASES + PRODUCT_CASES} | {collect_terms}
    assert rules <= tested, f"rules without a test: {sorted(r.__name__ for r in rules - tested)}"
    assert all(r.__doc__ for r in rules)


def test_simplify_records_the_rules_it_applies():
    with recording() as steps:
        F.log(F.exp(x ** 1)).simplify()
    assert [name for name, _, _ in steps] == ["power_one", "log_of_exp"]
    name, before, after = steps[-1]
    assert before == F.log(F.exp(x)) and after == x


def test_simplify_records_the_product_rules_it_applies():
    with recording() as steps:
        F.sum((tg.Delta(i, "i", "j") * A) * A + Sk @ inverse_k).simplify()
    names = [name for name, _, _ in steps]
    assert {"inline_nested", "combine_powers", "merge_deltas", "cancel_inverse", "sum_into_sum_factor"} <= set(names)
    for _, before, after in steps:
        assert isinstance(before, Expr) and isinstance(after, Expr) and set(before.edges) == set(after.edges)


def test_recording_stops_at_the_end_of_the_block():
    with recording() as steps:
        pass
    F.log(F.exp(F.tanh(x))).simplify()
    assert steps == []
