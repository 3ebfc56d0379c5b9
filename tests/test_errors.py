"""Every bad input gets a clear error (STYLE.md, "Errors").

Each case names the call that goes wrong, the exception type and the
fragments its message must contain: the offending edge, size or value, and
the call it came from. Messages are matched on fragments, not whole
sentences, so that rewording them does not break the tests.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest
import sympy

import tgjax as tg
import tgjax.functions as F
from tgjax._ir.nodes import Product
from tgjax._lower.reference import evaluate

i, j, k, m, n = tg.symbols("i j k m n")
rows, cols = tg.symbols("rows cols")
x = tg.Variable("x", i)
A = tg.Variable("A", i, j)
B = tg.Variable("B", i, k)
C = tg.Variable("C", i, m)
# one edge name, two sizes with names that cannot turn up in a message by chance
u_rows = tg.Variable("u", i=rows)
v_cols = tg.Variable("v", i=cols)
M_cols = tg.Variable("M", i=cols, j=j)


def _check(exc, call, *fragments):
    """``call()`` raises ``exc``; its message contains every fragment (plain strings)."""
    with pytest.raises(exc, match=re.escape(fragments[0])) as info:
        call()
    message = str(info.value)
    for fragment in fragments[1:]:
        assert fragment in message, f"{fragment!r} missing from the message {message!r}"
    return message


def _case(call, exc, *fragments, id):
    return pytest.param(call, exc, fragments, id=id)


# -- Variables and Deltas ---------------------------------------------------------

VARIABLE_CASES = [
    _case(lambda: tg.Variable("A", i, i), ValueError, "'i'", "twice", "Variable('A'", id="duplicate positional edge"),
    _case(lambda: tg.Variable("A", i, **{"i": n}), ValueError, "'i'", "twice", id="duplicate positional and keyword edge"),
    _case(lambda: tg.Variable("A", 3), TypeError, "sympy symbol", "got 3", "Variable('A'", id="positional int size"),
    _case(lambda: tg.Variable("A", "i"), TypeError, "sympy symbol", "got 'i'", id="positional str size"),
    _case(lambda: tg.Variable("A", i + 1), TypeError, "sympy symbol", "i + 1", id="positional expression size"),
    _case(lambda: tg.Variable("A", sympy.Integer(3)), TypeError, "sympy symbol", "3", id="positional sympy Integer size"),
    _case(lambda: tg.Variable("A", i=2.5), TypeError, "2.5", id="float keyword size"),
    _case(lambda: tg.Variable("A", i=True), TypeError, "True", id="bool keyword size"),
    _case(lambda: tg.Variable("A", i=0), ValueError, "positive", "0", id="zero size"),
    _case(lambda: tg.Variable("A", i=-1), ValueError, "positive", "-1", id="negative size"),
    _case(lambda: tg.Variable("1A", i), ValueError, "identifier", "'1A'", id="name not an identifier"),
    _case(lambda: tg.Variable(3, i), (TypeError, ValueError), "identifier", "3", id="name not a str"),
    _case(lambda: tg.Variable("A", **{"#e": i}), ValueError, "'#e'", "reserved", id="reserved edge name"),
    _case(lambda: tg.Delta(i, "i", "i"), ValueError, "'i'", "twice", id="Delta duplicate edge"),
    _case(lambda: tg.Delta("i", "i"), TypeError, "edge size", "'i'", id="Delta str size"),
    _case(lambda: tg.Delta(2.0, "i"), TypeError, "edge size", "2.0", id="Delta float size"),
]


@pytest.mark.parametrize("call, exc, fragments", VARIABLE_CASES)
def test_variable_and_delta_errors(call, exc, fragments):
    _check(exc, call, *fragments)


# -- one edge name, two sizes ------------------------------------------------------

SIZE_CASES = [
    _case(lambda: u_rows @ v_cols, ValueError, "'i'", "a @ b", id="@"),
    _case(lambda: u_rows * v_cols, ValueError, "'i'", "a * b", id="*"),
    _case(lambda: u_rows + v_cols, ValueError, "'i'", "a + b", id="+"),
    _case(lambda: u_rows - v_cols, ValueError, "'i'", "a - b", id="-"),
    _case(lambda: u_rows / v_cols, ValueError, "'i'", "a / b", id="/"),
    _case(lambda: u_rows @ M_cols, ValueError, "'i'", id="@ matrix"),
    _case(lambda: F.dot(u_rows, v_cols, "i"), ValueError, "'i'", id="F.dot"),
    _case(lambda: F.sum(M_cols) * u_rows + v_cols, ValueError, "'i'", id="inside a larger expression"),
]


@pytest.mark.parametrize("call, exc, fragments", SIZE_CASES)
def test_two_sizes_for_one_edge(call, exc, fragments):
    # both sizes are named, so the user can see which side is which
    _check(exc, call, *fragments, "rows", "cols")


def test_two_integer_sizes_for_one_edge():
    a3, a4 = tg.Variable("a", i=3), tg.Variable("b", i=4)
    for call in (lambda: a3 + a4, lambda: a3 @ a4, lambda: a3 * a4):
        _check(ValueError, call, "'i'", "3", "4")


def test_integer_size_against_symbol():
    _check(ValueError, lambda: tg.Variable("a", i=3) @ x, "'i'", "3")


# -- an edge shared by three factors ---------------------------------------------------


def test_product_rejects_an_edge_shared_by_three_factors():
    message = _check(ValueError, lambda: Product([A, B, C]), "'i'", "3 factors")
    for name in ("A", "B", "C"):
        assert name in message


def test_chained_matmul_contracts_pairwise():
    """The public path cannot share one edge three times: ``@`` is binary, so
    ``A @ B @ C`` contracts ``i`` between A and B, and C's ``i`` stays free."""
    rng = np.random.RandomState(0)
    values = {"A": rng.normal(size=(3, 4)), "B": rng.normal(size=(3, 5)), "C": rng.normal(size=(3, 2))}
    t = A @ B @ C
    assert t.edges == ("j", "k", "i", "m")
    want = np.einsum("ij,ik,lm->jklm", values["A"], values["B"], values["C"])
    np.testing.assert_allclose(evaluate(t, values), want, rtol=1e-12)
    np.testing.assert_allclose(evaluate(t.simplify(), values), want, rtol=1e-12)

    s = x @ x @ x  # (x . x) x
    assert s.edges == ("i",)
    xv = rng.normal(size=3)
    np.testing.assert_allclose(evaluate(s.simplify(), {"x": xv}), (xv @ xv) * xv, rtol=1e-12)


def test_chained_matmul_prints_unambiguously():
    # the inner product's edge is shown under its own letter: (x[a] x[a]) x[i]
    assert str(x @ x @ x).count("[i]") == 1
    assert str((x @ x + 1) * x).count("[i]") == 1


def test_inner_letters_never_look_like_a_size_in_a_weight():
    b = tg.symbols("b")
    y, X, w = tg.Variable("y", a=3), tg.Variable("X", a=3, j=b), tg.Variable("w", j=b)
    text = str((-(y @ X @ w) / b).simplify())
    assert "/b)" in text and "[a,b]" not in text and "w[b]" not in text


# -- rename -------------------------------------------------------------------

RENAME_CASES = [
    _case(lambda: A.rename(k="z"), ValueError, "'k'", "not a free edge", "['i', 'j']", id="edge absent"),
    _case(lambda: (A @ x).rename(i="z"), ValueError, "'i'", "not a free edge", "['j']", id="inner edge"),
    _case(lambda: A.rename(i="j"), ValueError, "['j']", "twice", id="duplicate result"),
    _case(lambda: (A * B).rename(j="k"), ValueError, "['k']", "twice", id="duplicate result in a product"),
    _case(lambda: A.rename(i=3), TypeError, "edge name", "3", id="new name not a str"),
    _case(lambda: A.rename(i=""), TypeError, "edge name", "''", id="empty new name"),
    _case(lambda: A.rename(i="#1"), ValueError, "'#1'", "reserved", id="reserved new name"),
]


@pytest.mark.parametrize("call, exc, fragments", RENAME_CASES)
def test_rename_errors(call, exc, fragments):
    _check(exc, call, *fragments)


def test_rename_all_at_once_is_not_a_duplicate():
    """A swap renames both edges at once, so no intermediate clash is reported."""
    t = A.rename(i="j", j="i")
    assert t.edges == ("j", "i")
    assert t.rename(i="j", j="i") == A


# -- derivatives ----------------------------------------------------------------

DERIVATIVE_CASES = [
    _case(lambda: F.sum(A).grad(A @ x), TypeError, "Variable", "Product", id="grad wrt expression"),
    _case(lambda: F.sum(A).grad("A"), TypeError, "Variable", "'A'", id="grad wrt str"),
    _case(lambda: F.sum(A).grad(2 * A), TypeError, "Variable", id="grad wrt scaled variable"),
    _case(lambda: tg.Derivative(F.sum(A), A @ x), TypeError, "Variable", "Product", id="Derivative wrt expression"),
    _case(lambda: tg.Derivative(F.sum(A), "A"), TypeError, "Variable", "'A'", id="Derivative wrt str"),
    _case(lambda: tg.Derivative(3, A), TypeError, "tensor expression", "int", id="Derivative of an int"),
    _case(
        lambda: tg.Derivative(F.sum(A), A, new_names={"z": "q"}),
        ValueError, "['z']", "['i', 'j']", id="new_names unknown key",
    ),
    _case(lambda: A.grad(A, new_names={"z": "q"}), ValueError, "['z']", id="grad new_names unknown key"),
    _case(
        lambda: tg.Derivative(A, A, new_names={"i": "j"}),
        ValueError, "'j'", "already used", id="new_names already free",
    ),
    _case(lambda: A.grad(A, new_names={"i": "j"}), ValueError, "'j'", "already used", id="grad new_names already free"),
    _case(
        lambda: F.sum(A).grad(A, new_names={"i": "q", "j": "q"}),
        ValueError, "'q'", id="new_names name two edges alike",
    ),
    _case(lambda: F.sum(A).grad(A, new_names={"i": 3}), TypeError, "edge name", "3", id="new_names value not a str"),
    _case(lambda: F.sum(A).grad(A, new_names={"i": "#q"}), ValueError, "'#q'", id="new_names reserved name"),
]


@pytest.mark.parametrize("call, exc, fragments", DERIVATIVE_CASES)
def test_derivative_errors(call, exc, fragments):
    _check(exc, call, *fragments)


def test_new_names_override_then_default_avoids_them():
    """A given new name is taken first; the default for the next edge steps around it."""
    assert F.sum(A).grad(A, new_names={"i": "j"}).edges == ("j", "j_")


def test_new_names_not_a_mapping():
    _check((TypeError, ValueError), lambda: tg.Derivative(F.sum(A), A, new_names=["q"]), "new_names")


# -- functions ------------------------------------------------------------------

FUNCTION_CASES = [
    _case(lambda: F.sum(A, "k"), ValueError, "'k'", "F.sum", "['i', 'j']", id="F.sum missing edge"),
    _case(lambda: F.sum(A, ["i", "k"]), ValueError, "'k'", "F.sum", id="F.sum one edge missing"),
    _case(lambda: F.sum(A, ["i", "i"]), ValueError, "F.sum", "'i'", id="F.sum edge twice"),
    _case(lambda: F.mean(A, "k"), ValueError, "'k'", "F.mean", id="F.mean missing edge"),
    _case(lambda: F.dot(A, x, "j"), ValueError, "'j'", "F.dot", id="F.dot edge missing on one side"),
    _case(lambda: F.dot(x, A, "j"), ValueError, "'j'", "F.dot", id="F.dot edge missing on the other side"),
    _case(lambda: F.sum(3.0), TypeError, "F.sum", "tensor expression", id="F.sum of a float"),
    _case(lambda: F.exp([1, 2]), TypeError, "F.exp", "list", id="F.exp of a list"),
    _case(lambda: F.frobenius2(np.ones(3)), TypeError, "F.frobenius2", id="F.frobenius2 of an array"),
    _case(lambda: F.pow(A, x), TypeError, "F.pow", "exponent", id="F.pow tensor exponent"),
    _case(lambda: A**x, TypeError, "exponent", id="** tensor exponent"),
    _case(lambda: F.pow(A, "2"), TypeError, "F.pow", "'2'", id="F.pow str exponent"),
    _case(lambda: F.pow(A, 1j), TypeError, "F.pow", "1j", id="F.pow complex exponent"),
    _case(lambda: F.softmax(A, "k"), ValueError, "'k'", "F.softmax", id="F.softmax missing edge"),
    _case(lambda: F.logsumexp(A, "k"), ValueError, "'k'", "F.logsumexp", id="F.logsumexp missing edge"),
]


@pytest.mark.parametrize("call, exc, fragments", FUNCTION_CASES)
def test_function_errors(call, exc, fragments):
    _check(exc, call, *fragments)


def test_sum_over_a_non_str_edge():
    _check((TypeError, ValueError), lambda: F.sum(A, 0), "F.sum", "0")


# -- scalars --------------------------------------------------------------------

SCALAR_CASES = [
    _case(lambda: A * "a", TypeError, "a * b", "'a'", id="* str"),
    _case(lambda: A + "a", TypeError, "a + b", "'a'", id="+ str"),
    _case(lambda: A - [1], TypeError, "a - b", id="- list"),
    _case(lambda: A * np.ones(3), TypeError, "a * b", "ndarray", id="* array on the right"),
    _case(lambda: A * jnp.ones(3), TypeError, "a * b", id="* jax array on the right"),
    _case(lambda: A / 0, ZeroDivisionError, "0", id="/ 0"),
    _case(lambda: A / 0.0, ZeroDivisionError, "0", id="/ 0.0"),
]


@pytest.mark.parametrize("call, exc, fragments", SCALAR_CASES)
def test_scalar_errors(call, exc, fragments):
    _check(exc, call, *fragments)


def test_array_times_expression_on_the_left():
    _check(TypeError, lambda: np.ones(3) * A, "a * b")


@pytest.mark.parametrize("call", [
    pytest.param(lambda: A * float("nan"), id="* nan"),
    pytest.param(lambda: A * float("inf"), id="* inf"),
    pytest.param(lambda: A + float("nan"), id="+ nan"),
    pytest.param(lambda: F.pow(A, float("nan")), id="F.pow nan"),
])
def test_non_finite_scalar(call):
    with pytest.raises(ValueError, match=r"(a [*+] b|F\.pow).*(nan|inf)"):
        call()


# -- truth values ---------------------------------------------------------------


def test_bool_of_an_expression_is_ambiguous():
    _check(TypeError, lambda: bool(A), "truth value", "ambiguous")
    _check(TypeError, lambda: 1 if A @ x else 0, "truth value")
    _check(TypeError, lambda: A and x, "truth value")
    _check(TypeError, lambda: bool(F.sum(A)), "truth value")  # even a scalar


def test_equality_is_a_plain_bool():
    assert (A == A) is True
    assert (A == B) is False
    assert (A == 3) is False
    assert (A != B) is True


# -- public constructors that do not check their input ------------------------------


def test_delta_non_str_edge():
    _check(TypeError, lambda: tg.Delta(i, 3), "edge name", "3")


def test_zero_non_str_edge():
    _check(TypeError, lambda: tg.Zero({3: i}), "edge name", "3")


def test_zero_negative_size():
    _check(ValueError, lambda: tg.Zero({"i": -1}), "positive", "-1")


def test_zero_reserved_edge():
    _check(ValueError, lambda: tg.Zero({"#1": i}), "'#1'", "reserved")


def test_variable_name_is_a_keyword():
    _check(ValueError, lambda: tg.Variable("lambda", i), "'lambda'")


def test_edge_named_name():
    assert tg.Variable("A", name=3).edges == ("name",)


def test_two_positional_arrays_say_to_pass_them_by_keyword_or_dict():
    x, y = tg.Variable("x", i=3), tg.Variable("y", i=3)
    fn = tg.lower(x @ y)
    with pytest.raises(TypeError, match=r"pass the arrays by keyword, fn\(x=\.\.\., y=\.\.\.\), or as one dict"):
        fn(np.ones(3), np.ones(3))


def test_integer_labels_for_cross_entropy_say_what_a_target_is():
    b, c = tg.symbols("b c")
    logits, labels = tg.Variable("z", b, c), tg.Variable("y", b)
    with pytest.raises(ValueError, match=r"not integer labels. For integer labels write F.one_hot\(labels, 'c', num_classes\)"):
        F.cross_entropy(logits, labels, "c")


def test_a_transposed_array_is_shown_beside_the_one_it_conflicts_with():
    b, d, c = tg.symbols("b d c")
    fn = tg.lower(tg.Variable("X", b, d) @ tg.Variable("W", d, c))
    with pytest.raises(ValueError, match=r"from variable 'X' \(edge 'd'; shape \(5, 4\) for edges \(b, d\)\).*"
                                         r"may be transposed"):
        fn(X=np.ones((5, 4)), W=np.ones((5, 3)))
