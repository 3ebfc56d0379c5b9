"""Input errors of tg.lower and of the lowered callable: clear ValueError/TypeError messages.

Each message must name what went wrong precisely enough to fix it: the
variable, the edge and the sizes involved.
"""

from __future__ import annotations

import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F

i, j, k, n = tg.symbols("i j k n")
x = tg.Variable("x", i)
y = tg.Variable("y", j)
A = tg.Variable("A", i, j)


def test_missing_variable_names_it_and_its_edges():
    fn = tg.lower(x @ A)
    with pytest.raises(ValueError, match=r"missing variable 'A'") as info:
        fn(x=np.ones(3))
    message = str(info.value)
    assert "i" in message and "j" in message


def test_missing_variable_in_dict_call():
    fn = tg.lower(x @ A)
    with pytest.raises(ValueError, match=r"missing variable 'x'"):
        fn({A: np.ones((3, 4))})


def test_missing_variable_after_a_successful_call():
    fn = tg.lower(x @ A)
    fn(x=np.ones(3), A=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"missing variable 'A'"):
        fn(x=np.ones(3))


def test_wrong_rank_names_variable_edges_and_shape():
    fn = tg.lower(x @ A)
    with pytest.raises(ValueError, match=r"variable 'A'") as info:
        fn(x=np.ones(3), A=np.ones(3))
    message = str(info.value)
    assert "(i, j)" in message
    assert "2 axes" in message
    assert "(3,)" in message


def test_wrong_rank_too_many_axes():
    fn = tg.lower(F.sum(x))
    with pytest.raises(ValueError, match=r"variable 'x' .*1 axes.*\(3, 1\)"):
        fn(x=np.ones((3, 1)))


def test_wrong_rank_after_a_successful_call_with_other_shapes():
    fn = tg.lower(x @ A)
    fn(x=np.ones(3), A=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"variable 'A'.*\(3, 4, 1\)"):
        fn(x=np.ones(3), A=np.ones((3, 4, 1)))


def test_sizes_that_disagree_between_two_variables():
    fn = tg.lower(A @ y)
    with pytest.raises(ValueError, match=r"edge 'j'") as info:
        fn(A=np.ones((3, 4)), y=np.ones(5))
    message = str(info.value)
    assert "'A'" in message and "'y'" in message
    assert "4" in message and "5" in message


def test_sizes_that_disagree_within_one_variable():
    S = tg.Variable("S", i=n, j=n)
    fn = tg.lower(F.sum(S))
    with pytest.raises(ValueError, match=r"'S'") as info:
        fn(S=np.ones((3, 4)))
    message = str(info.value)
    assert "'j'" in message and "3" in message and "4" in message


def test_input_disagrees_with_sizes_argument():
    fn = tg.lower(x @ A, sizes={j: 4})
    with pytest.raises(ValueError, match=r"edge 'j' of variable 'A'") as info:
        fn(x=np.ones(3), A=np.ones((3, 5)))
    message = str(info.value)
    assert "sizes" in message and "4" in message and "5" in message


def test_size_expression_disagrees_with_array():
    P = tg.Variable("P", m=2 * i)
    fn = tg.lower(F.sum(P) + F.sum(x))
    with pytest.raises(ValueError, match=r"edge 'm' of variable 'P'") as info:
        fn(P=np.ones(5), x=np.ones(3))
    message = str(info.value)
    assert "2*i" in message and "6" in message and "5" in message


def test_numeric_size_disagrees_with_array():
    P = tg.Variable("P", m=3)
    with pytest.raises(ValueError, match=r"edge 'm' of variable 'P'.*3.*4"):
        tg.lower(F.sum(P))(P=np.ones(4))


@pytest.mark.parametrize("bad", [None, "abc"], ids=repr)
def test_non_array_value_names_the_variable(bad):
    fn = tg.lower(x @ A)
    with pytest.raises((TypeError, ValueError), match=r"'x'"):
        fn(x=bad, A=np.ones((3, 4)))


def test_size_not_fixed_by_any_input_needs_sizes():
    fn = tg.lower(tg.Delta(n, "i", "j"))
    with pytest.raises(ValueError, match=r"'n'.*not fixed by any input.*sizes="):
        fn()


def test_broadcast_size_not_fixed_by_any_input():
    fn = tg.lower(x + tg.Delta(n, "m"))
    with pytest.raises(ValueError, match=r"\['n'\] are not fixed"):
        fn(x=np.ones(3))


def test_bad_sizes_argument():
    with pytest.raises(ValueError, match=r"positive int; got -2"):
        tg.lower(tg.Delta(n, "i", "j"), sizes={n: -2})
    with pytest.raises(ValueError, match=r"positive int; got 2.5"):
        tg.lower(tg.Delta(n, "i", "j"), sizes={n: 2.5})


def test_two_variables_with_one_name_in_one_lowered_list():
    other = tg.Variable("x", j)
    with pytest.raises(ValueError, match=r"two different variables are both named 'x'") as info:
        tg.lower([F.sum(x), F.sum(other)])
    message = str(info.value)
    assert "edges i=i" in message and "edges j=j" in message


def test_two_variables_with_one_name_in_one_expression():
    other = tg.Variable("A", j, i)
    with pytest.raises(ValueError, match=r"both named 'A'"):
        tg.lower(F.sum(A) + F.sum(other))


def test_renamed_variable_is_the_same_variable():
    # Not an error: renaming edges does not make a new variable.
    fn = tg.lower(F.sum(A) + F.sum(A.rename(i="p", j="q")))
    assert fn(A=np.arange(12.0).reshape(3, 4)) == 2 * np.sum(np.arange(12.0))


def test_non_mapping_positional_argument():
    fn = tg.lower(x @ A)
    with pytest.raises(TypeError, match=r"keywords.*got ndarray"):
        fn(np.ones(3))


def test_non_mapping_positional_argument_after_a_successful_call():
    fn = tg.lower(x @ A)
    fn(x=np.ones(3), A=np.ones((3, 4)))
    with pytest.raises(TypeError, match=r"got list"):
        fn([np.ones(3), np.ones((3, 4))])


def test_non_mapping_positional_argument_after_a_cached_call_without_variables():
    # The shape cache must not skip the argument check: with no variables every
    # call has the same (empty) shapes.
    fn = tg.lower(tg.Delta(n, "i", "j"), sizes={n: 3})
    with pytest.raises(TypeError, match=r"got ndarray"):
        fn(np.ones(3))
    fn()
    with pytest.raises(TypeError, match=r"got ndarray"):
        fn(np.ones(3))


def test_cached_shapes_do_not_skip_the_checks_of_other_dtypes():
    # The fast path keys programs on shapes and dtypes: a boolean array of a
    # shape seen before is still refused, with the same message.
    fn = tg.lower(x @ A)
    fn(x=np.ones(3), A=np.ones((3, 4)))
    with pytest.raises(TypeError, match=r"boolean array"):
        fn(x=np.ones(3, bool), A=np.ones((3, 4)))
    # Variables as keys, and arrays of another dtype, take the checked path and agree.
    assert np.allclose(fn({x: np.ones(3), A: np.ones((3, 4))}), 3)
    assert np.allclose(fn(x=np.ones(3, np.float32), A=np.ones((3, 4), np.float32)), 3)


@pytest.mark.parametrize("bad", [3, "x @ A", None, [], [x @ A, 2], np.ones(3)], ids=repr)
def test_lower_of_non_expression(bad):
    with pytest.raises(TypeError, match=r"tg.lower: expected a tensor expression"):
        tg.lower(bad)


def test_to_source_of_non_expression():
    with pytest.raises(TypeError, match=r"expected a tensor expression"):
        tg.to_source("x")


def test_check_grads_wrt_non_variable():
    with pytest.raises(TypeError, match=r"wrt must hold Variables"):
        tg.check_grads(F.sum(x), [x @ A], {"x": np.ones(3), "A": np.ones((3, 4))})


def test_check_grads_missing_value():
    with pytest.raises(ValueError, match=r"'x'"):
        tg.check_grads(F.sum(x), [x], {})
