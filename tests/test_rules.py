"""Each named rewrite rule on its own: where it applies, what it gives, where it does not,
and that simplification records it by name."""

from __future__ import annotations

import sympy
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._ir import along as al
from tgjax._ir import elementwise as ew
from tgjax._ir.nodes import Function, ones, scale
from tgjax._simplify.core import recording
from tgjax._simplify.functions import fold_at_zero

i, j = tg.symbols("i j")
x = tg.Variable("x", i)
S = tg.Variable("S", i=i, j=i)
I = tg.Delta(i, "i", "j")
zero = tg.Zero({"i": i})


def _p(k, u):
    return Function(ew.power(k), [u])


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
    (fold_at_zero, F.exp(zero), ones({"i": i}), F.log(zero)),
    (fold_at_zero, F.tanh(zero), zero, F.tanh(x)),
]


@pytest.mark.parametrize("rule, node, expected, other", CASES, ids=[f"{c[0].__name__}-{k}" for k, c in enumerate(CASES)])
def test_rule(rule, node, expected, other):
    result = rule(node)
    assert result is not None and result == expected
    assert set(result.edges) == set(node.edges)
    assert rule(other) is None


def test_every_rule_has_a_docstring_and_a_case():
    rules = {r for fn in (*ew.BUILTINS, *al.BUILTINS, ew.power(2)) for r in fn.identities} | {fold_at_zero}
    tested = {c[0] for c in CASES}
    assert rules <= tested, f"rules without a test: {sorted(r.__name__ for r in rules - tested)}"
    assert all(r.__doc__ for r in rules)


def test_simplify_records_the_rules_it_applies():
    with recording() as steps:
        F.log(F.exp(x ** 1)).simplify()
    assert [name for name, _, _ in steps] == ["power_one", "log_of_exp"]
    name, before, after = steps[-1]
    assert before == F.log(F.exp(x)) and after == x


def test_recording_stops_at_the_end_of_the_block():
    with recording() as steps:
        pass
    F.log(F.exp(F.tanh(x))).simplify()
    assert steps == []
