"""tg.explain: the derivation of .simplify(), one named rule per step, every step equal to the input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import tgjax as tg
import tgjax.functions as F
from tgjax._viz.explain import rule_names
from strategies import assert_close, ev, expressions, seeds, values

n = tg.symbols("n")
x = tg.Variable("x", i=n)
A = tg.Variable("A", i=n, j=n)
T = tg.Variable("T", i=n)
RNG = np.random.default_rng(0)
VALS = {"x": RNG.standard_normal(3), "A": RNG.standard_normal((3, 3)), "T": np.eye(3)[1]}
q = x @ A @ x.rename(i="j")

CASES = {
    "log of exp": F.log(F.exp(x)) * x,
    "hessian of a quadratic form": tg.Derivative(tg.Derivative(q, x), x),
    "gradient of cross-entropy": tg.Derivative(F.sum(F.cross_entropy(A @ x.rename(i="j"), T, "i")), x),
    "expectation of a quadratic form": tg.Expectation(q, x),
    "already normal": x,
    "result of .grad": F.sum(F.tanh(A @ x.rename(i="j"))).grad(x),
}


def _check_derivation(expr, evaluate):
    steps = tg.explain(expr)
    assert steps[0] == ("input", expr)
    final = expr.simplify()
    assert steps[-1][1].edges == final.edges and steps[-1][1] == final
    names = rule_names()
    for name, step in steps:
        assert name in names, f"undocumented rule name {name!r}"
        assert set(step.edges) == set(expr.edges)
    want = evaluate(expr)
    for name, step in steps[1:]:
        got = evaluate(step)
        order = [step.edges.index(e) for e in expr.edges]
        assert_close(np.transpose(got, order) if order else got, want, what=f"step {name!r}")
    return steps


@pytest.mark.parametrize("name", CASES)
def test_derivation_steps_are_named_and_equal_to_the_input(name):
    expr = CASES[name]
    # an expectation lowers through its closed form, so its steps are compared by value too
    _check_derivation(expr, lambda e: np.asarray(tg.lower(e, sizes={n: 3})(**VALS)))


def test_the_steps_read_as_a_derivation():
    names = [name for name, _ in tg.explain(CASES["hessian of a quadratic form"])]
    assert names[0] == "input" and "product rule" in names
    assert [name for name, _ in tg.explain(CASES["log of exp"])] == ["input", "log of exp", "combine powers"]
    assert [name for name, _ in tg.explain(CASES["expectation of a quadratic form"])][-1] == "gaussian polynomial"


def test_explain_rejects_what_is_not_an_expression():
    with pytest.raises(TypeError, match="tg.explain: expected a tensor expression"):
        tg.explain("x")


@settings(deadline=None, max_examples=15)
@given(expressions(max_depth=2), seeds)
def test_random_derivations(expr, seed):
    vals = values(seed)
    _check_derivation(expr, lambda e: np.asarray(ev(e, vals)))


def test_the_derivation_of_a_gradient_names_the_rules_a_reader_uses():
    # The natural call on a .grad result: derived from the derivative down, one rule at a
    # time (it showed "input" and one "product rule" step with the whole result).
    b, h = tg.symbols("b h")
    X, W = tg.Variable("X", b, i=n), tg.Variable("W", i=n, h=h)
    loss = F.sum(F.tanh(X @ W) ** 2)
    names = [name for name, _ in tg.explain(loss.grad(W))]
    assert names[:5] == ["input", "product rule", "power rule", "chain rule: derivative of tanh", "product rule"]
    values = {"X": RNG.standard_normal((2, 3)), "W": RNG.standard_normal((3, 4))}
    _check_derivation(loss.grad(W), lambda e: np.asarray(tg.lower(e)(**values)))


def test_the_derivation_of_a_hessian_derives_the_gradient_first():
    steps = tg.explain(q.grad(x).grad(x))
    names = [name for name, _ in steps]
    # the gradient's own derivation and simplification, then the outer derivative's rules
    assert names[:3] == ["input", "product rule", "product rule"]
    assert "sum rule" in names and names.count("merge deltas") <= 4
    assert len(steps) <= 12
    _check_derivation(q.grad(x).grad(x), lambda e: np.asarray(tg.lower(e, sizes={n: 3})(**VALS)))
