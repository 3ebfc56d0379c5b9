"""tg.lower, tg.to_source and tg.check_grads: compiled values, axis order, sharing, calling conventions.

Every lowered result is compared two ways in float64: against the reference
evaluator (one einsum per node, ``tgjax._lower.reference.evaluate``) and against
a plain ``jax.numpy`` version of the same formula (with ``jax.grad`` /
``jax.hessian`` / ``jax.jacobian`` for derivatives). Sizes are distinct and
non-square so that a transposed axis cannot go unnoticed.
"""

from __future__ import annotations

import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import strategies
from hypothesis import given, settings

import tgjax as tg
import tgjax.functions as F
from tgjax._lower import contract
from tgjax._lower.api import Lowered
from tgjax._lower.reference import evaluate
from tgjax.nn import cp, tensor_train, tucker

b, i, j, k, n = tg.symbols("b i j k n")
SIZES = {"b": 2, "i": 3, "j": 4, "k": 5, "n": 6}

x = tg.Variable("x", i)
z = tg.Variable("z", i)
y = tg.Variable("y", j)
A = tg.Variable("A", i, j)
B = tg.Variable("B", j, k)
D = tg.Variable("D", i=j, j=i)  # declared (i, j) with sizes (j, i): A's transpose shape
S = tg.Variable("S", i=n, j=n)
X = tg.Variable("X", b, i)
W = tg.Variable("W", i, j)
V = tg.Variable("V", j, k)
T = tg.Variable("T", b, k)
c = tg.Variable("c")  # a scalar


def make_values(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    s = SIZES
    shapes = {
        "x": (s["i"],), "z": (s["i"],), "y": (s["j"],),
        "A": (s["i"], s["j"]), "B": (s["j"], s["k"]), "D": (s["j"], s["i"]),
        "S": (s["n"], s["n"]), "X": (s["b"], s["i"]), "W": (s["i"], s["j"]),
        "V": (s["j"], s["k"]), "T": (s["b"], s["k"]), "c": (),
    }
    return {name: jnp.asarray(rng.normal(size=shape), dtype) for name, shape in shapes.items()}


VALUES = make_values()


def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# -- plain jnp versions -----------------------------------------------------------


def mlp_loss_jnp(X, W, V, T):
    return jnp.sum((jnp.tanh(jnp.tanh(X @ W) @ V) - T) ** 2)


def mlp_loss():
    return F.sum(F.pow(F.tanh(F.tanh(X @ W) @ V) - T, 2))


def frob_loss_jnp(X, W):
    return jnp.sum((X @ W) ** 2)


def softplus_loss_jnp(A, y):
    return jnp.sum(jax.nn.softplus(A @ y))


# (id, expression, plain-jnp function of the values dict). The expressions are
# built lazily so that a construction error fails one case, not the module.
CASES = [
    ("matvec", lambda: x @ A, lambda v: v["x"] @ v["A"]),
    ("chain", lambda: x @ A @ B, lambda v: v["x"] @ v["A"] @ v["B"]),
    ("bilinear", lambda: x @ A @ y, lambda v: v["x"] @ v["A"] @ v["y"]),
    ("outer", lambda: x * y, lambda v: jnp.outer(v["x"], v["y"])),
    ("hadamard", lambda: x * z, lambda v: v["x"] * v["z"]),
    ("hyperedge_matrix", lambda: A * x, lambda v: v["A"] * v["x"][:, None]),
    ("hyperedge_three", lambda: (A * x) @ y * z, lambda v: (v["A"] * v["x"][:, None]) @ v["y"] * v["z"]),
    ("broadcast_sum", lambda: x + A, lambda v: v["x"][:, None] + v["A"]),
    ("broadcast_sum_transposed", lambda: y + A, lambda v: v["y"][:, None] + v["A"].T),
    ("broadcast_scalar", lambda: 2 * A - 1, lambda v: 2 * v["A"] - 1),
    ("broadcast_both_sides", lambda: x + y, lambda v: v["x"][:, None] + v["y"][None, :]),
    ("broadcast_reduction", lambda: F.sum(x) + A, lambda v: jnp.sum(v["x"]) + v["A"]),
    ("scalar_variable", lambda: c * A + c, lambda v: v["c"] * v["A"] + v["c"]),
    ("size_as_weight", lambda: j * x - x / i, lambda v: 4 * v["x"] - v["x"] / 3),
    ("identity", lambda: tg.Delta(n, "i", "j"), lambda v: jnp.eye(6)),
    ("identity_in_sum", lambda: S + tg.Delta(n, "i", "j"), lambda v: v["S"] + jnp.eye(6)),
    ("identity_minus_transpose", lambda: 3 * tg.Delta(n, "i", "j") - S.rename(i="j", j="i"),
     lambda v: 3 * jnp.eye(6) - v["S"].T),
    ("trace", lambda: F.sum(S * tg.Delta(n, "i", "j")), lambda v: jnp.trace(v["S"])),
    ("diagonal_part", lambda: S * tg.Delta(n, "i", "j"), lambda v: jnp.diag(jnp.diag(v["S"]))),
    ("diag_of_vector", lambda: x * tg.Delta(i, "i", "l"), lambda v: jnp.diag(v["x"])),
    ("vector_times_identity", lambda: x * tg.Delta(n, "p", "q"),
     lambda v: v["x"][:, None, None] * jnp.eye(6)),
    ("closed_delta_loop", lambda: F.sum(tg.Delta(n, "i", "j")) * F.sum(x), lambda v: 6 * jnp.sum(v["x"])),
    ("rename_swap_plus", lambda: A.rename(i="j", j="i") + D, lambda v: v["A"] + v["D"].T),
    ("rename_swap_sum_edges", lambda: D + A.rename(i="j", j="i"), lambda v: v["D"] + v["A"].T),
    ("tanh_exp", lambda: F.tanh(x @ A) * F.exp(y), lambda v: jnp.tanh(v["x"] @ v["A"]) * jnp.exp(v["y"])),
    ("log_pow", lambda: F.log(F.pow(A, 2) + 1), lambda v: jnp.log(v["A"] ** 2 + 1)),
    ("fractional_pow_abs", lambda: F.pow(F.abs(A), 1.5) + F.sqrt(F.abs(x)),
     lambda v: jnp.abs(v["A"]) ** 1.5 + jnp.sqrt(jnp.abs(v["x"]))[:, None]),
    ("reciprocal", lambda: 1 / (1 + F.pow(x, 2)), lambda v: 1 / (1 + v["x"] ** 2)),
    ("division", lambda: A / F.exp(y), lambda v: v["A"] / jnp.exp(v["y"])),
    ("sigmoid_softplus_relu", lambda: F.sigmoid(A) - F.softplus(A) + 2 * F.relu(A),
     lambda v: jax.nn.sigmoid(v["A"]) - jax.nn.softplus(v["A"]) + 2 * jax.nn.relu(v["A"])),
    ("mean_all", lambda: F.mean(A), lambda v: jnp.mean(v["A"])),
    ("mean_one_edge", lambda: F.mean(A, "i"), lambda v: jnp.mean(v["A"], axis=0)),
    ("sum_one_edge", lambda: F.sum(A @ B, "k"), lambda v: jnp.sum(v["A"] @ v["B"], axis=1)),
    ("mlp_loss", mlp_loss, lambda v: mlp_loss_jnp(v["X"], v["W"], v["V"], v["T"])),
    ("grad_mlp_W", lambda: mlp_loss().grad(W),
     lambda v: jax.grad(mlp_loss_jnp, 1)(v["X"], v["W"], v["V"], v["T"])),
    ("grad_mlp_V", lambda: mlp_loss().grad(V),
     lambda v: jax.grad(mlp_loss_jnp, 2)(v["X"], v["W"], v["V"], v["T"])),
    ("grad_mlp_X", lambda: mlp_loss().grad(X),
     lambda v: jax.grad(mlp_loss_jnp, 0)(v["X"], v["W"], v["V"], v["T"])),
    ("derivative_node", lambda: tg.Derivative(mlp_loss(), V),
     lambda v: jax.grad(mlp_loss_jnp, 2)(v["X"], v["W"], v["V"], v["T"])),
    ("jacobian_identity_pair", lambda: (X @ W).grad(W),
     lambda v: jax.jacobian(lambda w: v["X"] @ w)(v["W"])),
    ("hessian_identity_pair", lambda: F.frobenius2(X @ W).grad(W).grad(W),
     lambda v: jax.hessian(frob_loss_jnp, 1)(v["X"], v["W"])),
    ("hessian_softplus", lambda: F.sum(F.softplus(A @ y)).grad(y).grad(y),
     lambda v: jax.hessian(softplus_loss_jnp, 1)(v["A"], v["y"])),
    ("hessian_trace_sq", lambda: F.sum(F.pow(S, 2) * tg.Delta(n, "i", "j")).grad(S).grad(S),
     lambda v: jax.hessian(lambda s: jnp.sum(jnp.diag(s) ** 2))(v["S"])),
    ("hessian_bilinear_x", lambda: F.pow(x @ A @ y, 2).grad(x).grad(x),
     lambda v: jax.hessian(lambda u: (u @ v["A"] @ v["y"]) ** 2)(v["x"])),
]

CASE_IDS = [c[0] for c in CASES]

# Sizes as symbols, for expressions that mention a size no input array fixes:
# a derivative that no longer depends on the variable it was taken against
# (X @ W differentiated by W is X times an identity on j) has lost the array
# that fixed that size.
SIZE_ENV = {tg.symbols(name): value for name, value in SIZES.items()}
NEEDS_SIZES = {"identity", "size_as_weight", "vector_times_identity", "closed_delta_loop", "jacobian_identity_pair", "hessian_identity_pair", "hessian_trace_sq"}
# Outputs that depend on no input array at all; their dtype is JAX's default float.
CONSTANT = {"identity", "hessian_trace_sq"}


@pytest.mark.parametrize("name, build, reference", CASES, ids=CASE_IDS)
def test_lowered_matches_reference_and_jnp(name, build, reference):
    expr = build()
    fn = tg.lower(expr, sizes=SIZE_ENV if name in NEEDS_SIZES else None)
    out = fn(VALUES)
    expected_shape = tuple(int(s.subs(SIZE_ENV)) for s in expr.shape.values())
    assert out.shape == expected_shape, f"{name}: axes {out.shape} do not follow edges {expr.edges}"
    assert out.dtype == jnp.float64
    # Both oracles run under jax.jit only to compile once instead of per operation.
    oracle = jax.jit(lambda v: evaluate(expr, v, sizes=SIZE_ENV))(VALUES)
    assert_close(out, oracle, what=f"{name}: lowered vs reference evaluator")
    assert_close(out, jax.jit(reference)(VALUES), what=f"{name}: lowered vs plain jnp")


@pytest.mark.parametrize("name, build, reference", CASES, ids=CASE_IDS)
def test_float32_in_float32_out(name, build, reference):
    values32 = make_values(np.float32)
    out = tg.lower(build(), sizes=SIZE_ENV if name in NEEDS_SIZES else None)(values32)
    if name not in CONSTANT:
        assert out.dtype == jnp.float32, f"{name}: float32 inputs gave {out.dtype}"
    expected = jax.jit(reference)({k: v.astype(np.float64) for k, v in values32.items()})
    assert_close(out, expected, rtol=2e-5, atol=2e-5, what=name)


# -- result axes -------------------------------------------------------------------


def test_axes_follow_edges_of_matrix_product():
    fn = tg.lower(A @ B)
    assert (A @ B).edges == ("i", "k")
    assert fn(VALUES).shape == (3, 5)


def test_axes_follow_edges_after_rename_swap():
    swapped = (A @ B).rename(i="k", k="i")
    assert swapped.edges == ("k", "i")
    out = tg.lower(swapped)(VALUES)
    # The swap only relabels: the array is still (A @ B) laid out by the edges in order.
    assert_close(out, VALUES["A"] @ VALUES["B"])
    # Adding a tensor declared (i, k) forces a real transpose of one side.
    C = tg.Variable("C", i=k, k=i)
    c = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)))
    out = tg.lower(swapped + C)({**VALUES, "C": c})
    assert out.shape == (3, 5)
    assert_close(out, VALUES["A"] @ VALUES["B"] + c.T)


def test_axes_of_gradient_follow_declared_order_of_variable():
    g = (x @ A @ y).grad(A)
    assert g.edges == ("i", "j")
    out = tg.lower(g)(VALUES)
    assert_close(out, jnp.outer(VALUES["x"], VALUES["y"]))


def test_hessian_edges_get_underscore_and_axes_follow():
    h = F.sum(F.tanh(x @ A)).grad(x).grad(x)
    assert h.edges == ("i", "i_")
    out = tg.lower(h)(VALUES)
    expected = jax.hessian(lambda u: jnp.sum(jnp.tanh(u @ VALUES["A"])))(VALUES["x"])
    assert_close(out, expected)


# -- several outputs and sharing ----------------------------------------------------


def test_multi_output_returns_tuple_of_all_results():
    loss = mlp_loss()
    fn = tg.lower([loss, loss.grad(W), loss.grad(V)])
    out = fn(VALUES)
    assert isinstance(out, tuple) and len(out) == 3
    args = (VALUES["X"], VALUES["W"], VALUES["V"], VALUES["T"])
    assert_close(out[0], mlp_loss_jnp(*args))
    assert_close(out[1], jax.grad(mlp_loss_jnp, 1)(*args))
    assert_close(out[2], jax.grad(mlp_loss_jnp, 2)(*args))


def test_multi_output_of_one_expression_is_still_a_tuple():
    out = tg.lower([x @ A])(VALUES)
    assert isinstance(out, tuple) and len(out) == 1
    assert_close(out[0], VALUES["x"] @ VALUES["A"])


def test_single_output_is_an_array_not_a_tuple():
    out = tg.lower(x @ A)(VALUES)
    assert not isinstance(out, tuple)


def test_multi_output_with_different_edges_keeps_each_order():
    fn = tg.lower([A @ B, (A @ B).rename(i="k", k="i"), y + A])
    ab, ab_swapped, ya = fn(VALUES)
    expected = VALUES["A"] @ VALUES["B"]
    assert_close(ab, expected)
    assert_close(ab_swapped, expected)
    assert_close(ya, VALUES["y"][:, None] + VALUES["A"].T)


def test_loss_and_gradients_share_the_tanh_layers():
    loss = mlp_loss()
    source = tg.to_source([loss, loss.grad(W), loss.grad(V)])
    # Two distinct tanh layers; the gradients reuse the forward pass.
    assert source.count("jnp.tanh(") == 2, source


def test_shared_subexpression_across_outputs_is_computed_once():
    hidden = F.tanh(x @ A)
    source = tg.to_source([F.sum(hidden), hidden * y, F.exp(hidden)])
    assert source.count("jnp.tanh(") == 1, source
    assert source.count("jnp.exp(") == 1, source


def test_loss_and_gradients_emit_no_statement_twice():
    loss = mlp_loss()
    source = tg.to_source([loss, loss.grad(W), loss.grad(V)])
    right_sides = [line.split(" = ", 1)[1] for line in source.splitlines() if " = " in line]
    repeated = {r for r in right_sides if right_sides.count(r) > 1}
    assert not repeated, f"computed more than once: {repeated}\n{source}"


def test_shared_subexpression_under_other_edge_names_is_computed_once():
    hidden = F.tanh(A @ B)
    source = tg.to_source([hidden, hidden.rename(i="a", k="c")])
    assert source.count("jnp.tanh(") == 1, source


def test_derivative_that_lost_its_variable_takes_its_sizes_from_it():
    jac = (X @ W).grad(W)  # X[b,i] delta[j,j_]: W is gone, but it was derived from W
    assert "W" not in {v.name for v in jac.variables()}
    expected = jax.jacobian(lambda w: VALUES["X"] @ w)(VALUES["W"])
    assert_close(tg.lower(jac)(VALUES), expected)  # the size of j from the W given
    without_w = {k: v for k, v in VALUES.items() if k != "W"}
    with pytest.raises(ValueError, match=r"\['j'\] are not fixed"):
        tg.lower(jac)(without_w)
    assert_close(tg.lower(jac, sizes={j: 4})(without_w), expected)
    # The unevaluated Derivative keeps W as an input, which fixes j.
    assert_close(tg.lower(tg.Derivative(X @ W, W))(VALUES), expected)


# -- calling conventions --------------------------------------------------------------


def test_keyword_call():
    out = tg.lower(x @ A)(x=VALUES["x"], A=VALUES["A"])
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_dict_keyed_by_variable():
    out = tg.lower(x @ A)({x: VALUES["x"], A: VALUES["A"]})
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_dict_keyed_by_name():
    out = tg.lower(x @ A)({"x": VALUES["x"], "A": VALUES["A"]})
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_dict_keyed_by_renamed_variable_uses_its_name():
    out = tg.lower(x @ A)({x.rename(i="q"): VALUES["x"], A: VALUES["A"]})
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_values_for_unused_variables_are_ignored():
    fn = tg.lower(x @ A)
    out = fn({**VALUES, "unrelated": "not an array", "B": np.ones((7, 7, 7))})
    assert_close(out, VALUES["x"] @ VALUES["A"])
    out = fn(x=VALUES["x"], A=VALUES["A"], y=np.ones(11))
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_numpy_inputs_are_accepted():
    out = tg.lower(x @ A)(x=np.asarray(VALUES["x"]), A=np.asarray(VALUES["A"]))
    assert isinstance(out, jax.Array)
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_list_inputs_are_accepted_without_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tg.lower(x @ A)(x=[1.0, 2.0, 3.0], A=np.asarray(VALUES["A"]))
    assert_close(out, np.asarray([1.0, 2.0, 3.0]) @ np.asarray(VALUES["A"]))


def test_sizes_for_delta_only_expression():
    fn = tg.lower(tg.Delta(n, "i", "j"), sizes={n: 4})
    out = fn()
    assert out.shape == (4, 4)
    assert_close(out, np.eye(4))


def test_sizes_for_three_edge_delta():
    out = tg.lower(tg.Delta(n, "a", "b", "c"), sizes={n: 3})()
    expected = np.zeros((3, 3, 3))
    for m in range(3):
        expected[m, m, m] = 1
    assert_close(out, expected)


def test_sizes_for_zero():
    out = tg.lower(tg.Zero({"i": n, "j": k}), sizes={n: 2, k: 5})()
    assert out.shape == (2, 5)
    assert_close(out, np.zeros((2, 5)))


def test_sizes_for_broadcast_edge_no_input_fixes():
    # x + Delta(n, "m") broadcasts x along m, whose size only sizes= gives.
    expr = x + tg.Delta(n, "m")
    out = tg.lower(expr, sizes={n: 2})(x=VALUES["x"])
    assert expr.edges == ("i", "m")
    assert_close(out, VALUES["x"][:, None] + np.ones((3, 2)))


def test_sizes_also_fixed_by_input_agreeing():
    out = tg.lower(x @ A, sizes={j: 4})(VALUES)
    assert_close(out, VALUES["x"] @ VALUES["A"])


def test_size_expression_edge_is_read_from_other_inputs():
    P = tg.Variable("P", m=2 * i)
    q = tg.Variable("q", m=2 * i)
    out = tg.lower(P * q + F.sum(x))(P=np.arange(6.0), q=np.ones(6), x=VALUES["x"])
    assert_close(out, np.arange(6.0) + float(np.sum(VALUES["x"])))


# -- dtype ------------------------------------------------------------------------------


def test_float64_inputs_give_float64():
    out = tg.lower([x @ A, S + tg.Delta(n, "i", "j"), F.mean(A)])(VALUES)
    assert all(o.dtype == jnp.float64 for o in out)


def test_float32_inputs_give_float32_including_identity_and_zero():
    v32 = make_values(np.float32)
    exprs = [x @ A, S + tg.Delta(n, "i", "j"), F.mean(A), (X @ W).grad(W), tg.Zero({"i": i}) + x]
    out = tg.lower(exprs)(v32)
    for expr, o in zip(exprs, out):
        assert o.dtype == jnp.float32, f"{expr}: {o.dtype}"


# -- programs are cached per sizes ---------------------------------------------------------


def test_program_is_built_once_per_shapes():
    fn = tg.lower(x @ A)
    fn(VALUES)
    assert len(fn._programs) == 1
    fn(x=VALUES["x"] + 1, A=VALUES["A"] * 2)
    fn({x: VALUES["x"], A: VALUES["A"]})
    assert len(fn._programs) == 1
    out = fn(x=np.ones(2), A=np.ones((2, 7)))
    assert len(fn._programs) == 2
    assert out.shape == (7,)
    assert_close(out, np.full(7, 2.0))
    fn(x=np.ones(3), A=np.ones((3, 4)))
    assert len(fn._programs) == 2


def test_cached_program_gives_fresh_values():
    fn = tg.lower(F.tanh(x @ A))
    first = fn(VALUES)
    other = make_values(seed=5)
    second = fn(other)
    assert_close(second, jnp.tanh(other["x"] @ other["A"]))
    assert not np.allclose(first, second)


# -- generated source -----------------------------------------------------------------------


def test_to_source_is_compilable_python_with_einsum():
    loss = mlp_loss()
    source = tg.to_source([loss, loss.grad(W)])
    assert isinstance(source, str)
    assert "def program(" in source
    assert "einsum(" in source
    compile(source, "<generated>", "exec")


def test_to_source_uses_given_sizes():
    source = tg.to_source(tg.Delta(n, "i", "j"), sizes={n: 4})
    assert "delta(4, 2" in source
    namespace = {}
    exec(compile(source, "<generated>", "exec"), {"jnp": jnp, "delta": lambda *a: a}, namespace)
    assert "program" in namespace


def test_to_source_single_expression():
    source = tg.to_source(x @ A @ B)
    assert "def program(" in source and "einsum(" in source
    compile(source, "<generated>", "exec")


@pytest.mark.parametrize(
    "build",
    [
        lambda: x * z,
        lambda: A * x,
        lambda: F.sum(S * tg.Delta(n, "i", "j")),
        lambda: F.sum(F.tanh(S) * tg.Delta(n, "i", "j")),
        lambda: S @ tg.Delta(n, "j", "k") @ S.rename(i="k", j="l"),
    ],
    ids=["hadamard", "hyperedge", "trace", "trace_of_function", "identity_between_factors"],
)
def test_delta_inside_a_network_is_not_materialised(build):
    expr = build()
    source = tg.to_source(expr)
    assert "delta(" not in source, source
    # contracted by an einsum, or multiplied where nothing is summed
    assert "einsum(" in source or " * " in source, source


def _random_einsum_steps(count: int, seed: int):
    """Equations of one or two operands, each index once per operand, as contraction steps are."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        terms = ["".join(rng.permutation(list("abcdef"))[: rng.integers(0, 5)]) for _ in range(rng.integers(1, 3))]
        letters = sorted(set("".join(terms)))
        out = "".join(rng.permutation(letters)[: rng.integers(0, len(letters) + 1)]) if letters else ""
        yield ",".join(terms) + "->" + out, {ch: int(rng.integers(2, 5)) for ch in "abcdef"}


def test_the_runtime_einsum_traces_what_jnp_einsum_traces(monkeypatch):
    # Generated programs call runtime.einsum for each contraction step: the same
    # primitives as jnp.einsum, without its path search and nested jit per call
    # (60% of a 200-layer MLP's trace), and the summed axes listed in the first
    # operand's order (jnp.einsum sorts them by letter, and XLA:CPU then copies an
    # operand whose summed axes are listed out of order). The operand order it
    # changes for XLA:CPU is the next test's.
    from tgjax._lower import runtime
    from tgjax._lower.runtime import einsum

    monkeypatch.setattr(runtime, "_swapped_faster", lambda *args, **kwargs: False)

    def primitives(jaxpr):
        return [(e.primitive.name, tuple(v.aval.shape for v in e.outvars)) for e in jaxpr.jaxpr.eqns]

    for equation, sizes in _random_einsum_steps(300, seed=0):
        terms = equation.split("->")[0].split(",")
        arrays = [np.random.default_rng(1).standard_normal([sizes[c] for c in t]).astype(np.float32) for t in terms]
        ours = jax.make_jaxpr(lambda *a: einsum(equation, *a))(*arrays)
        theirs = jax.make_jaxpr(lambda *a: jnp.einsum(equation, *a))(*arrays)
        assert primitives(ours) == primitives(theirs), equation
        np.testing.assert_allclose(einsum(equation, *arrays), jnp.einsum(equation, *arrays), rtol=1e-5, atol=1e-5)
        for eqn in ours.jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lhs, rhs), _ = eqn.params["dimension_numbers"]  # the first operand's in its order
                assert list(lhs) == sorted(lhs) or list(rhs) == sorted(rhs), equation


def test_the_runtime_einsum_puts_first_the_operand_xla_cpu_multiplies_fast():
    # A weight's gradient x^T g, x[b, i] and g[b, o]: XLA:CPU ran dot(x, g) -> [i, o] 8x slower
    # than dot(g, x) -> [o, i] for i = 4096, o = 16 (x's summed axis comes before its kept one).
    # The program computes the second, writes it out and transposes it: XLA would fold a bare
    # transpose back into the dot. Where the other operand keeps many entries, nothing changes.
    from tgjax._lower.runtime import einsum

    rng = np.random.default_rng(0)
    x, g, h = (rng.standard_normal(shape).astype(np.float32) for shape in ((256, 4096), (256, 16), (256, 512)))
    for other, swapped in ((g, True), (h, False)):
        jaxpr = jax.make_jaxpr(lambda a, b: einsum("bi,bo->io", a, b))(x, other)
        dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
        assert len(dots) == 1  # the order not taken is not traced
        assert (dots[0].invars[0].aval.shape == other.shape) is swapped
        np.testing.assert_allclose(einsum("bi,bo->io", x, other), x.T @ other, rtol=1e-4, atol=1e-3)
    if jax.default_backend() == "cpu":  # elsewhere XLA may fold the transpose back: no copy is kept there
        hlo = jax.jit(lambda a, b: einsum("bi,bo->io", a, b)).lower(x, g).compile().as_text()
        assert "f32[16,4096]{1,0} dot(" in hlo, hlo
    # under vmap and grad, the same values as jnp
    batched = jax.vmap(lambda a, b: einsum("bi,bo->io", a, b))(x[None], g[None])
    np.testing.assert_allclose(batched[0], x.T @ g, rtol=1e-4, atol=1e-3)
    grad = jax.grad(lambda a: jnp.sum(jnp.sin(einsum("bi,bo->io", a, g))))(x)
    want = jax.grad(lambda a: jnp.sum(jnp.sin(a.T @ g)))(x)
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-3)  # float32 sums of 16 products cancel to ~0.04


def test_the_runtime_einsum_promotes_dtypes_and_hands_other_equations_to_jnp():
    from tgjax._lower.runtime import einsum

    a, b = np.arange(6.0).reshape(2, 3), np.arange(3, dtype=np.int32)
    out = einsum("ij,j->i", a.astype(np.float32), b)
    assert out.dtype == jnp.einsum("ij,j->i", a.astype(np.float32), b).dtype
    np.testing.assert_allclose(out, a @ b)
    np.testing.assert_array_equal(einsum("ii->i", np.eye(3)), np.ones(3))  # a diagonal
    np.testing.assert_array_equal(einsum("ij,j->i", a.astype(np.int32), b), a.astype(np.int32) @ b)  # integers
    np.testing.assert_allclose(einsum("i,j,k->ijk", np.ones(2), np.ones(3), np.ones(4)), np.ones((2, 3, 4)))


def test_the_compiled_program_has_no_comments_and_to_source_has_them():
    # Printing each statement's expression took a third of a deep MLP's planning;
    # only the source a reader sees carries it.
    loss = mlp_loss()
    fn = tg.lower([loss, loss.grad(W)])
    arrays, env = fn._bind(VALUES, {})
    source, _, _ = fn._program(env)
    assert "#" not in source and "einsum(" in source
    shown = fn.source(VALUES)
    statements = [line for line in shown.splitlines() if re.match(r"\s+t\d+ = ", line)]
    comments = [line for line in shown.splitlines() if re.match(r"\s+# ", line)]
    assert len(comments) >= len(statements) - 1 > 0


def test_the_end_of_a_long_elementwise_chain_read_twice_is_written_out():
    # XLA:CPU fuses an elementwise chain into each reader, recomputing it;
    # the program writes out the end of a chain of six or more that two read.
    h = X
    for _ in range(8):
        h = F.tanh(h) * 2.0 + 1.0
    expr = [F.sum(h * h), F.sum(h @ W)]
    fn = tg.lower(expr)
    arrays, env = fn._bind(VALUES, {})
    source, _, _ = fn._program(env)
    assert source.count("materialized(") >= 1
    short = tg.lower([F.sum(F.tanh(X) * F.tanh(X)), F.sum(F.tanh(X) @ W)])
    assert "materialized(" not in short._program(short._bind(VALUES, {})[1])[0]
    h_np = VALUES["X"]
    for _ in range(8):
        h_np = np.tanh(h_np) * 2.0 + 1.0
    got = fn(VALUES)
    assert_close(got[0], np.sum(h_np * h_np))
    assert_close(got[1], np.sum(h_np @ VALUES["W"]))
    assert_close(jax.jit(lambda v: fn(v)[0])(VALUES), np.sum(h_np * h_np))
    assert_close(jax.vmap(lambda x: fn({**VALUES, "X": x})[1])(np.stack([VALUES["X"]] * 2)), [np.sum(h_np @ VALUES["W"])] * 2)


def test_delta_inside_a_network_values():
    out = tg.lower(S @ tg.Delta(n, "j", "k") @ S.rename(i="k", j="l"))(VALUES)
    assert_close(out, VALUES["S"] @ VALUES["S"])


def test_sum_of_transposed_terms_is_added_in_their_order():
    # The Hessian of a tanh MLP with respect to its input sums two matrices that
    # both come out of their einsums in the order opposite the sum's edges: they
    # are added as they are (reading both transposed is slow on XLA:CPU), and the
    # einsum that consumes the sum reads it in that order for free.
    d, h, m = tg.symbols("d h m")
    x, W1, W2 = tg.Variable("x", i=d), tg.Variable("W1", i=d, j=h), tg.Variable("W2", j=h, k=m)
    f = F.sum(F.tanh(F.tanh(x @ W1) @ W2))
    hessian = f.grad(x).grad(x)
    rng = np.random.default_rng(0)
    values = {"x": rng.standard_normal(6), "W1": rng.standard_normal((6, 5)) / 3, "W2": rng.standard_normal((5, 4)) / 3}
    source = tg.to_source(hessian, values=values)
    sums = [line for line in source.splitlines()
            if re.search(r" [+-] ", line) and "=" in line and not line.strip().startswith("#")]
    assert sums and not any(line.count(".transpose(") >= 2 for line in sums), source
    expected = jax.hessian(lambda x: jnp.sum(jnp.tanh(jnp.tanh(x @ values["W1"]) @ values["W2"])))(values["x"])
    assert_close(tg.lower(hessian)(values), expected)


def test_lowered_source_method_matches_sizes():
    fn = tg.lower(tg.Delta(n, "i", "j") + S)
    assert "delta(6, 2" in fn.source(VALUES)


# -- check_grads --------------------------------------------------------------------------


def test_check_grads_first_order_passes_with_small_errors():
    errors = tg.check_grads(mlp_loss(), [W, V, X], VALUES)
    assert set(errors) == {("W", 1), ("V", 1), ("X", 1)}
    assert all(0 <= e < 1e-10 for e in errors.values()), errors


def test_check_grads_second_order_passes_with_small_errors():
    f = F.frobenius2(X @ W) + F.sum(F.softplus(A @ y))
    errors = tg.check_grads(f, [W, y], VALUES, order=2)
    assert set(errors) == {("W", 1), ("W", 2), ("y", 1), ("y", 2)}
    assert all(0 <= e < 1e-10 for e in errors.values()), errors


def test_check_grads_accepts_a_single_variable_and_variable_keys():
    errors = tg.check_grads(F.sum(F.exp(x @ A)), x, {x: VALUES["x"], A: VALUES["A"]})
    assert set(errors) == {("x", 1)}
    assert errors[("x", 1)] < 1e-10


def test_check_grads_with_zero_hessian():
    errors = tg.check_grads(x @ A @ y, [x], VALUES, order=2)
    assert errors[("x", 2)] == 0.0


def test_check_grads_raises_on_wrong_symbolic_derivative(monkeypatch):
    f = F.sum(F.tanh(x @ A))
    assert tg.check_grads(f, [x], VALUES)[("x", 1)] < 1e-10
    true_grad = tg.Expr.grad

    def wrong_grad(self, var, new_names=None):
        return 1.5 * true_grad(self, var, new_names)

    monkeypatch.setattr(tg.Expr, "grad", wrong_grad)
    with pytest.raises(AssertionError, match=r"order 1 .*'x'"):
        tg.check_grads(f, [x], VALUES)


def test_check_grads_raises_on_wrong_second_derivative(monkeypatch):
    f = F.sum(F.tanh(x @ A))
    true_grad = tg.Expr.grad

    def wrong_second(self, var, new_names=None):
        g = true_grad(self, var, new_names)
        # Right first derivative, wrong second one.
        return g if self.edges == () else 2 * g

    monkeypatch.setattr(tg.Expr, "grad", wrong_second)
    assert tg.check_grads(f, [x], VALUES, order=1)[("x", 1)] < 1e-10
    with pytest.raises(AssertionError, match=r"order 2 .*'x'"):
        tg.check_grads(f, [x], VALUES, order=2)


def test_check_grads_rejects_non_scalar_f():
    with pytest.raises(ValueError, match="scalar"):
        tg.check_grads(x @ A, [x], VALUES)


def test_check_grads_rejects_order_3():
    with pytest.raises(ValueError, match="order must be 1 or 2; got 3"):
        tg.check_grads(F.sum(x), [x], VALUES, order=3)


# -- random expressions ------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(strategies.expressions(), strategies.seeds)
def test_random_expression_lowered_matches_reference(expr, seed):
    vals = strategies.values(seed)
    out = tg.lower(expr, sizes=strategies.SIZES)(vals)
    assert out.shape == tuple(strategies.SIZES[s] for s in expr.shape.values())
    strategies.assert_close(out, strategies.ev(expr, vals), rtol=1e-10, what=str(expr))


@settings(max_examples=6, deadline=None)
@given(strategies.scalar_expressions(max_depth=2), strategies.seeds)
def test_random_loss_lowered_with_its_gradients_matches_reference(f, seed):
    vals = strategies.values(seed)
    grads = [f.grad(v) for v in f.variables()]
    out = tg.lower([f, *grads], sizes=strategies.SIZES)(vals)
    assert isinstance(out, tuple) and len(out) == 1 + len(grads)
    strategies.assert_close(out[0], strategies.ev(f, vals), rtol=1e-10, what=str(f))
    for v, g in zip(f.variables(), out[1:]):
        strategies.assert_close(g, strategies.jax_grad(f, v, vals), rtol=1e-10, what=f"d/d{v.name} of {f}")


# -- orders for a batch (Lowered(..., mapped=...), used by tgjax.nn) ------------------------


@settings(max_examples=12, deadline=None)
@given(strategies.expressions(), strategies.seeds)
def test_random_expression_ordered_for_a_batch_matches_reference(expr, seed):
    vals = strategies.values(seed)
    mapped = sorted(v.name for v in expr.variables())[:1]
    out = Lowered(expr, sizes=strategies.SIZES, mapped=mapped)(vals)
    strategies.assert_close(out, strategies.ev(expr, vals), rtol=1e-10, what=f"{expr} mapped over {mapped}")


def _layer_networks():
    """(name, network, values) of the tensor-train, CP and Tucker layers' networks, float64."""
    rng = np.random.default_rng(0)
    out = []
    for name, build, shape in [
        ("tensor_train", tensor_train._network, ((4, 8, 8, 4), (4, 8, 8, 4), (8, 8, 8))),
        ("tensor_train_wide", tensor_train._network, ((8, 8, 8, 8), (2, 2, 2, 2), (8, 8, 8))),
        ("cp", cp._network, ((8, 8, 8, 8), (2, 2, 2, 2), 36)),
        ("tucker", tucker._network, ((4, 8, 8, 4), (4, 8, 8, 4), (3,) * 8)),
    ]:
        network = build(*shape)
        values = {v.name: rng.standard_normal(tuple(int(s) for s in v.shape.values())) for v in network.variables()}
        out.append((name, network, values))
    return out


@pytest.mark.parametrize("name, network, values", _layer_networks(), ids=lambda p: p if isinstance(p, str) else "")
def test_layer_network_ordered_for_a_batch_matches_plain_order_under_vmap(name, network, values):
    ordered, plain = Lowered(network, mapped=["x"]), tg.lower(network)
    xs = np.stack([values["x"] * k for k in (1.0, -0.5, 2.0)])
    others = {k: v for k, v in values.items() if k != "x"}
    batched = jax.vmap(lambda x: ordered(x=x, **others))(xs)
    for k in range(3):
        assert_close(batched[k], plain(x=xs[k], **others), rtol=1e-9, atol=1e-9)


def _order_cost(inputs, output, size_of, path, batched, batch_letter, batch=contract.MAPPED_BATCH):
    """The combo cost (FLOPs + 64 x entries written) of ``path`` for a batch, and the largest
    intermediate it builds without the batch."""
    terms = [t + batch_letter if k in batched else t for k, t in enumerate(inputs)]
    final, sizes = output + batch_letter, {**size_of, batch_letter: batch}
    cost = largest = 0
    for positions, _ in path:
        picked = [terms.pop(k) for k in positions]
        kept = "".join(ch for ch in dict.fromkeys("".join(picked)) if ch in final or any(ch in t for t in terms))
        entries = math.prod(sizes[ch] for ch in kept)
        cost += math.prod(sizes[ch] for ch in set("".join(picked))) + 64 * entries
        if batch_letter not in kept:
            largest = max(largest, entries)
        terms.append(kept)
    return cost, largest


@pytest.mark.parametrize("name, network, values", _layer_networks(), ids=lambda p: p if isinstance(p, str) else "")
def test_order_for_a_batch_is_no_costlier_than_the_order_for_one_example(name, network, values):
    # The search is exact: for a batch it beats (or ties) the order planned for one
    # example wherever that one keeps within the cap, and never exceeds the cap: the
    # layer rule lets nothing without the batch be as large as the dense weight, except
    # where that weight has no more entries than the batch's input.
    x = next(v for v in network.variables() if v.name == "x")
    factors = [v for v in network.variables() if v.name != "x"]
    letters = {}
    for delta in (f for f in network.factors if isinstance(f, tg.Delta)):  # a CP rank: one index
        for e in delta.edges:
            letters[e] = "r"
    for v in [x, *factors]:
        for e in v.edges:
            letters.setdefault(e, "abcdefghijklmnopqstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY"[len(letters)])
    inputs = tuple("".join(letters[e] for e in v.edges) for v in [x, *factors])
    output = "".join(letters[e] for e in network.edges)
    size_of = {letters[e]: int(s) for v in [x, *factors] for e, s in v.shape.items()}
    batched = frozenset([0])
    one_input = math.prod(values["x"].shape)
    dense = one_input * math.prod(int(s) for s in network.shape.values())
    cap = math.inf if dense <= contract.MAPPED_BATCH * one_input else dense
    ordered = contract.mapped_order(inputs, output, size_of, batched, "Z")
    shapes = tuple(tuple(size_of[ch] for ch in t) for t in inputs)
    per_example = contract._contraction_order(",".join(inputs) + "->" + output, shapes, contract._optimizer(len(inputs)))
    cost, largest = _order_cost(inputs, output, size_of, ordered, batched, "Z")
    assert largest < cap
    their_cost, their_largest = _order_cost(inputs, output, size_of, per_example, batched, "Z")
    if their_largest < cap:
        assert cost <= their_cost


def test_intermediate_is_laid_out_for_the_contraction_that_reads_it():
    # (AB) is summed over c next: c goes last; the elementwise step between
    # keeps its input's layout and passes the wish on.
    order = (((1, 0), "bc,ab->ca"), ((1, 0), "ca,cd->ad"))
    assert contract._laid_out(order, ("ab", "bc", "cd")) == (((1, 0), "bc,ab->ac"), ((1, 0), "ac,cd->ad"))
    order = (((1, 0), "bc,ab->ca"), ((2, 1), "ca,ac->ca"), ((1, 0), "ca,cd->ad"))
    laid = contract._laid_out(order, ("ab", "bc", "cd", "ac"))
    assert [eq for _, eq in laid] == ["bc,ab->ac", "ac,ac->ac", "ac,cd->ad"]


def test_elementwise_step_takes_the_layout_of_its_operand_from_outside():
    # The input "ca" fixes the layout of the elementwise product with it, and of
    # the intermediate it multiplies, even where the contraction after would want
    # another: an elementwise loop that reads an operand transposed is not vectorised.
    order = (((1, 0), "bc,ab->ca"), ((2, 1), "ca,ca->ca"), ((1, 0), "ca,cd->ad"))
    laid = contract._laid_out(order, ("ab", "bc", "cd", "ca"))
    assert [eq for _, eq in laid] == ["bc,ab->ca", "ca,ca->ca", "ca,cd->ad"]
    # As the last step it sets the layout of the product's result, which plan() reports.
    order = (((1, 0), "bc,ab->ac"), ((1, 0), "ac,ca->ac"))
    laid = contract._laid_out(order, ("ab", "bc", "ca"))
    assert [eq for _, eq in laid] == ["bc,ab->ca", "ca,ca->ca"]
    p = contract.plan([("A", ("i", "j")), ("B", ("j", "k")), ("G", ("k", "i"))], [], ("i", "k"),
                      {"i": 2, "j": 3, "k": 4}, iter(["t0", "t1"]).__next__)
    assert p.labels == ["k", "i"] and p.steps[-1].equation.endswith("->ca")


def test_a_gradient_program_reads_no_array_transposed():
    # A tanh layer with a bias, a gelu layer and a cross-entropy, written as a user
    # would: every elementwise step runs in the layout of the arrays it reads,
    # cotangents come in their nodes' axis order, and no ``.transpose`` is left
    # (on XLA:CPU a loop reading an array transposed is not vectorised).
    b, d, h, c = tg.symbols("b d h c")
    X, T = tg.Variable("X", b, d), tg.Variable("T", b, c)
    W1, b1, W2 = tg.Variable("W1", d, h), tg.Variable("b1", h), tg.Variable("W2", h, c)
    hidden = F.gelu(F.tanh(X @ W1 + b1))
    loss = F.sum(F.cross_entropy(hidden @ W2, T, "c"))
    fn = tg.lower([loss, *(loss.grad(w) for w in (W1, b1, W2))])
    rng = np.random.default_rng(0)
    values = {"X": rng.normal(size=(6, 5)), "T": np.eye(3)[[0, 1, 2, 0, 1, 2]],
              "W1": rng.normal(size=(5, 4)), "b1": rng.normal(size=4), "W2": rng.normal(size=(4, 3))}
    assert ".transpose(" not in "\n".join(
        line for line in fn.source(values).splitlines() if not line.lstrip().startswith("#"))

    def reference(p):
        z = jax.nn.gelu(jnp.tanh(values["X"] @ p["W1"] + p["b1"]), approximate=False) @ p["W2"]
        return -jnp.sum(values["T"] * jax.nn.log_softmax(z, axis=-1))

    params = {k: jnp.asarray(values[k]) for k in ("W1", "b1", "W2")}
    value, grads = jax.value_and_grad(reference)(params)
    ours = fn(values)
    np.testing.assert_allclose(ours[0], value, rtol=1e-6)
    for got, k in zip(ours[1:], ("W1", "b1", "W2")):
        np.testing.assert_allclose(got, grads[k], rtol=1e-6, atol=1e-9)


def test_a_loop_reading_an_array_in_place_and_transposed_reads_a_relaid_copy():
    # XLA:CPU runs a fused loop that reads one array both ways 10-40x slower than a
    # plain addition; the symmetric part A + A^T of a Hessian is such a loop.
    n = tg.symbols("n")
    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=5), "A": rng.normal(size=(5, 5))}
    for expr, reference in [
        (x @ A @ x.rename(i="j"), lambda x: x @ values["A"] @ x),
        (F.sum(x ** 4) + x @ A @ x.rename(i="j"), lambda x: jnp.sum(x ** 4) + x @ values["A"] @ x),
    ]:
        fn = tg.lower(expr.grad(x).grad(x))
        assert "A + relaid(A, (1, 0))" in fn.source(values)
        np.testing.assert_allclose(fn(values), jax.hessian(reference)(values["x"]), rtol=1e-12)


def test_only_an_array_read_in_two_layouts_by_one_statement_is_relaid():
    # the reads are data of the step (tokens in its template); only writing the source spells them
    from tgjax._lower.emit import statement
    from tgjax._lower.steps import Read, Steps

    def written(*parts):
        steps = Steps()
        template = " ".join(steps.read(*p) if isinstance(p, tuple) else p for p in parts)
        step = steps.steps[steps.add(template, None, 0, 0)]
        return step, statement(step)[len(step.name) + 3:]

    step, code = written(("A",), "+", ("A", (1, 0)))
    assert code == "A + relaid(A, (1, 0))" and step.reads == (Read("A"), Read("A", (1, 0)))
    _, code = written(("t3",), "*", ("t3", (1, 0, 2)), "*", ("t3", (2, 1, 0)))
    assert code == "t3 * relaid(t3, (1, 0, 2)) * relaid(t3, (2, 1, 0))"
    for parts, alone in [((("t1",), "*", ("t2", (1, 0))), "t1 * t2.transpose((1, 0))"),
                         ((("A1",), "+", ("A", (1, 0))), "A1 + A.transpose((1, 0))"),
                         (("2 *", ("A", (1, 0)), "-", ("A", (1, 0))), "2 * A.transpose((1, 0)) - A.transpose((1, 0))")]:
        assert written(*parts)[1] == alone


def test_a_step_reads_a_statement_only_through_a_token():
    from tgjax._lower.steps import Steps

    steps = Steps()
    first = steps.add(f"jnp.tanh({steps.read('x')})", None, 1, 1, elementwise=True)
    with pytest.raises(RuntimeError, match="statement by name"):
        steps.add(f"{first} + 1", None, 1, 1)
    assert steps.add(f"jnp.tanh({steps.read('x')})", None, 1, 1) == first  # the same step, shared


@pytest.mark.parametrize("shape, perm", [((4, 3), (1, 0)), ((600, 500), (1, 0)), ((80, 70, 60), (2, 0, 1))])
def test_relaid_is_the_transpose_under_jit_vmap_grad_and_export(shape, perm):
    from tgjax._lower.runtime import relaid

    x = jnp.asarray(np.random.default_rng(0).normal(size=shape))
    expected = np.transpose(np.asarray(x), perm)
    np.testing.assert_array_equal(jax.jit(relaid, static_argnums=1)(x, perm), expected)
    np.testing.assert_array_equal(jax.vmap(lambda y: relaid(y, perm))(x[None]), expected[None])
    weights = jnp.asarray(np.random.default_rng(1).normal(size=expected.shape))
    gradient = jax.grad(lambda y: jnp.sum(weights * relaid(y, perm)))(x)
    np.testing.assert_array_equal(gradient, np.transpose(np.asarray(weights), np.argsort(perm)))
    exported = jax.export.export(jax.jit(lambda y: relaid(y, perm)), platforms=("cpu", "cuda"))(x)
    np.testing.assert_array_equal(exported.call(x), expected)
    # on CPU a large array is written out by a branch of a conditional, which XLA keeps
    compiled = jax.jit(lambda y: relaid(y, perm)).lower(x).compile().as_text()
    assert ("conditional(" in compiled) == (x.size >= 1 << 18)


def test_a_standalone_program_refuses_shapes_it_was_not_planned_for():
    """``tg.to_source`` without sizes plans at a nominal 64; the program it writes must not
    accept a batch of 100 and return a value computed with 64 in it (1.80 against 1.17)."""
    b, i = tg.symbols("b i")
    X = tg.Variable("X", b, i)
    loss = F.mean(F.tanh(X))
    namespace: dict = {}
    exec(tg.to_source(loss), namespace)
    rng = np.random.default_rng(0)
    planned = rng.standard_normal((64, 64))
    np.testing.assert_allclose(namespace["program"](planned), tg.lower(loss)(X=planned), rtol=1e-12)
    with pytest.raises(ValueError, match=r"X has shape \(100, 64\), but this program was planned for \(64, 64\)"):
        namespace["program"](rng.standard_normal((100, 64)))
    namespace = {}
    exec(tg.lower(loss).source(X=rng.standard_normal((100, 8))), namespace)
    assert namespace["program"](np.ones((100, 8))).shape == ()
    with pytest.raises(ValueError, match="planned for"):
        namespace["program"](np.ones((8, 100)))


def test_to_source_ignores_values_of_variables_it_does_not_use_as_the_callable_does():
    b, i = tg.symbols("b i")
    X, y = tg.Variable("X", b, i), tg.Variable("y", b)
    values = {"X": np.ones((5, 3)), "y": np.ones(5), "unused": np.ones(7)}
    assert "planned at sizes b=5, i=3" in tg.to_source(F.sum(X), values=values)


def test_two_lookups_or_masks_of_one_size_on_different_edges_lower_together():
    # The positions vector F.take compares an index with, and the causal mask, are
    # variables the program computes, named by their size; declared on the caller's
    # edges, two of one size on different edges were "two different variables named
    # tg_positions_v" and lowering refused the expression.
    a, b, v, d, s = tg.symbols("a b v d s")
    E1, E2 = tg.Variable("E1", v, d), tg.Variable("E2", w=v, e=d)
    i1, i2 = tg.Variable("i1", a), tg.Variable("i2", b)
    y = F.sum(F.take(E1, i1, "v")) + F.sum(F.take(E2, i2, "w"))
    values = {"E1": np.arange(6.0).reshape(3, 2), "E2": np.ones((3, 2)), "i1": np.array([0, 2]), "i2": np.array([1])}
    assert float(tg.lower(y)(values)) == 12.0
    masks = F.sum(tg.causal_mask(s, "q", "k")) + F.sum(tg.causal_mask(s, "s", "t"))
    assert float(tg.lower(masks, sizes={s: 3})()) == 12.0
