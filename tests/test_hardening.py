"""Odd and bad inputs, one class each: a clear error where the mistake is made, or the answer
jnp gives; unevaluated derivatives that compose with every operator."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tgjax as tg
import tgjax.functions as F
from strategies import SIZES, VARIABLES, assert_close, ev, expressions, seeds, values

n = tg.symbols("n")
v = tg.Variable("v", i=n)
M = tg.Variable("M", i=n, j=n)


# -- errors where the mistake is made ------------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda: v ** n, TypeError, r"the exponent must be a number; got n, a size symbol"),
    (lambda: F.pow(v, n), TypeError, r"the exponent must be a number"),
    (lambda: tg.lower(v, sizes=[n]), TypeError, r"sizes must be a dict from size symbol to int"),
    (lambda: tg.lower(v)(v=np.array(["a", "b"])), TypeError, r"must be numeric; got dtype <U1"),
    (lambda: tg.lower(F.sum(v))(v=np.array([True, False])), TypeError, r"boolean array.*astype\(jnp.float32\)"),
    (lambda: tg.lower(v)({"v": np.ones(3)}, v=np.ones(3)), ValueError, r"'v' is given twice, in the dict and as a keyword"),
    (lambda: tg.lower(v)({v: np.ones(3), "v": np.ones(3)}), ValueError, r"'v' is given twice in the dict"),
    (lambda: v.rename({"i": "q"}, i="r"), ValueError, r"edge 'i' is renamed twice.*'q' and 'r'"),
    (lambda: F.inverse(tg.Variable("S", i=n, k=n), "ik"), ValueError, r"edges=\('i', 'k'\); got the string 'ik'"),
    (lambda: F.trace(tg.Variable("s")), ValueError, r"needs a tensor with two edges.*has edges \[\]"),
    (lambda: F.det(v), ValueError, r"needs a tensor with two edges.*has edges \['i'\]"),
    (lambda: F.elementwise("plus", lambda a, b: a + b), TypeError, r"must take one scalar argument; 'plus' takes 2"),
])
def test_a_mistake_is_a_clear_error_where_it_is_made(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_user_function_with_a_default_second_argument_is_fine():
    scaled = F.elementwise("scaled", lambda a, c=2.0: c * a)
    np.testing.assert_allclose(tg.lower(scaled(v))(v=np.ones(3)), 2 * np.ones(3))


# -- the answers jnp gives -----------------------------------------------------------------------

def test_a_mean_over_an_empty_edge_is_nan_as_jnp():
    out = tg.lower(F.mean(v))(v=np.zeros(0))
    assert np.isnan(out)  # jnp.mean(jnp.zeros(0)) is nan too
    assert float(tg.lower(F.sum(v))(v=np.zeros(0))) == 0.0


@pytest.mark.parametrize("dtype", [np.int32, np.float16, jnp.bfloat16, np.complex64, np.complex128, np.float32])
def test_integer_half_and_complex_inputs_give_what_jnp_gives(dtype):
    a = jnp.arange(1, 4).astype(dtype)
    m = (jnp.arange(9).reshape(3, 3) + 1).astype(dtype)
    cases = [
        (F.sum(v), {"v": a}, jnp.sum(a)),
        (F.mean(v), {"v": a}, jnp.mean(a)),
        (M @ M.rename(i="j", j="k"), {"M": m}, m @ m),
        (v * v, {"v": a}, a * a),
        (F.exp(v), {"v": a}, jnp.exp(a)),
    ]
    for expr, arrays, expected in cases:
        out = tg.lower(expr)(**arrays)
        tolerance = 1e-2 if dtype in (np.float16, jnp.bfloat16) else 1e-6
        np.testing.assert_allclose(np.asarray(out, np.complex128), np.asarray(expected, np.complex128), rtol=tolerance)
        assert jnp.issubdtype(out.dtype, jnp.complexfloating) == jnp.issubdtype(expected.dtype, jnp.complexfloating)


# -- unevaluated derivatives compose like evaluated ones ------------------------------------------

def test_an_unevaluated_derivative_in_an_elementwise_product():
    d = tg.Derivative(F.sum(v * v), v) * v
    assert str(d) == "D[v[a]]((v[b] v[c] δ[b,c,e]) δ[e]) v[d] δ[a,d,i]"
    assert d.simplify() == (2 * v ** 2).simplify()
    np.testing.assert_allclose(tg.lower(d)(v=np.array([1.0, 2.0, 3.0])), [2.0, 8.0, 18.0])


OPERATORS = {
    "times": lambda d, e: d * e,
    "times, other side": lambda d, e: e * d,
    "contract": lambda d, e: d @ e,
    "plus": lambda d, e: d + F.sum(e) * d,
    "minus itself": lambda d, e: d - d * F.sum(e),
    "divide": lambda d, e: d / (1 + F.sum(e) ** 2),
    "power": lambda d, e: d ** 2,
    "negate": lambda d, e: -d,
    "tanh": lambda d, e: F.tanh(d),
    "sum": lambda d, e: F.sum(d),
}


@settings(deadline=None, max_examples=30)
@given(expressions(max_depth=2), expressions(max_depth=1), st.sampled_from(VARIABLES), st.sampled_from(sorted(OPERATORS)), seeds)
def test_unevaluated_derivatives_combine_with_every_operator_like_evaluated_ones(e, other, x, op, seed):
    unevaluated = OPERATORS[op](tg.Derivative(e, x), other)
    evaluated = OPERATORS[op](e.grad(x), other)
    vals = values(seed)
    expected = ev(evaluated, vals)
    assert_close(ev(unevaluated.simplify(), vals), expected, what="simplified")
    assert_close(tg.lower(unevaluated, sizes=SIZES)(**vals), expected, rtol=1e-7, atol=1e-7, what="lowered")



# -- sizes, printing, logging, export ------------------------------------------------------------

def test_a_hessian_that_no_longer_mentions_x_reads_its_sizes_from_x():
    x = tg.Variable("x", i=n)
    hessian = F.sum(x ** 2).grad(x).grad(x)
    for form in (hessian, hessian.simplify(), hessian.expand()):
        np.testing.assert_allclose(tg.lower(form)(x=np.ones(3)), 2 * np.eye(3))
    with pytest.raises(ValueError, match=r"variable 'x' has edges \(i\) so its array must have 1 axes"):
        tg.lower(hessian)(x=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"not fixed by any input array"):
        tg.lower(hessian)(y=np.ones(3))


def test_to_source_says_the_sizes_it_planned_at_and_reads_values():
    b, i = tg.symbols("b i")
    X = tg.Variable("X", b, i)
    assert tg.to_source(F.sum(X)).splitlines()[0] == "# nominal sizes (none given) b=64, i=64"
    assert tg.to_source(F.sum(X), values={"X": np.ones((5, 7))}).splitlines()[0] == "# planned at sizes b=5, i=7"
    assert tg.to_source(F.sum(X), sizes={b: 3}).splitlines()[0] == "# planned at sizes b=3; nominal sizes (none given) i=64"
    assert tg.lower(F.sum(X)).source(X=np.ones((2, 3))).splitlines()[0] == "# planned at sizes b=2, i=3"


def test_messages_say_the_sizes():
    with pytest.raises(ValueError, match=r"edges i=n, j=n and edges i=n, j=3"):
        tg.lower([tg.Variable("A", i=n, j=n), tg.Variable("A", i=n, j=3)])
    with pytest.raises(ValueError, match=r"has size 3, but its array has 4"):
        tg.lower(tg.Variable("c", k=3) * v)(c=np.ones(4), v=np.ones(2))


def test_each_stage_logs_its_time_at_debug_level(caplog):
    x = tg.Variable("x", i=n)
    with caplog.at_level("DEBUG", logger="tgjax"):
        tg.lower(F.sum(F.tanh(x) ** 2).grad(x))(x=np.ones(3))
    stages = [record.getMessage().split(" ")[0] for record in caplog.records if record.name == "tgjax"]
    assert {"derivative", "simplify", "plan", "compile"} <= set(stages)
    assert all(record.levelname == "DEBUG" for record in caplog.records if record.name == "tgjax")


def test_a_lowered_hessian_round_trips_through_jax_export():
    import jax

    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    hessian = tg.lower(F.tanh(x @ A @ x.rename(i="j")).grad(x).grad(x))
    fn = jax.jit(lambda x_, a_: hessian(x=x_, A=a_))
    specs = (jax.ShapeDtypeStruct((3,), np.float64), jax.ShapeDtypeStruct((3, 3), np.float64))
    restored = jax.export.deserialize(jax.export.export(fn)(*specs).serialize())
    xv, av = np.linspace(0.1, 0.3, 3), np.eye(3) + 0.1
    np.testing.assert_allclose(restored.call(xv, av), fn(xv, av), rtol=1e-12)
