"""Models at scale: the symbolic work in front of the compiler grows linearly with the model.

Work is counted without a clock: nodes built (``Expr._init``) and, for
equality, node pairs compared. A doubling of the model must cost about twice
the work (linear), never four times (quadratic) or more. Before: ``.grad``
simplified the loss first, and equality unfolded the DAG into a tree, so a
post-layer-norm transformer's loss took 74 s to simplify at 3 blocks (its
tree doubles with every block); each ``.grad`` walked the whole loss again
(O(L^2) for a gradient per layer); lowering factored and checked every output
on its own (83 s to plan a 400-layer MLP's gradients, 2.9 s now); a sum built
by repeated ``+`` was normalised once per level.
"""

from __future__ import annotations

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax import _logging
from tgjax._ir import identity, nodes
from tgjax._ir.rename import sharing_args
from tgjax._ir.walk import parents_first
from tgjax._lower import evaluation
from tgjax._simplify.core import has_normal_form


@pytest.fixture
def built():
    """A counter of the nodes built while it is read: ``built(fn)`` runs ``fn`` and returns the count."""
    work = [0]
    init = nodes.Expr._init

    def counted_init(self, *args, **kwargs):
        work[0] += 1
        return init(self, *args, **kwargs)

    def count(fn):
        work[0] = 0
        fn()
        return work[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nodes.Expr, "_init", counted_init)
        yield count


def tanh_mlp(layers: int, b=None):
    """``x = tanh(x @ W_k)`` for ``layers`` layers, each weight on its own edges; MSE to ``Y``."""
    b = b or tg.symbols("b")
    hs = tg.symbols(" ".join(f"h{k}" for k in range(layers + 1)))
    x = X = tg.Variable("X", b=b, h0=hs[0])
    params = []
    for k in range(layers):
        W = tg.Variable(f"W{k}", **{f"h{k}": hs[k], f"h{k + 1}": hs[k + 1]})
        params.append(W)
        x = F.tanh(x @ W)
    Y = tg.Variable("Y", **{"b": b, f"h{layers}": hs[layers]})
    return F.mean((x - Y) ** 2), params, X, Y


def post_layer_norm(blocks: int):
    """Attention, residual, layer norm, gelu MLP, residual, layer norm; six weights a block."""
    s, d, e, f = tg.symbols("s d e f")
    X, Y = tg.Variable("X", s=s, d=d), tg.Variable("Y", s=s, d=d)

    def layer_norm(h):
        centred = h - F.mean(h, "d")
        return centred * F.pow(F.mean(centred**2, "d") + 1e-5, -0.5)

    x, params = X, []
    for k in range(blocks):
        Wq, Wk, Wv = (tg.Variable(f"{name}{k}", d, e) for name in ("Wq", "Wk", "Wv"))
        Wo, W1, W2 = tg.Variable(f"Wo{k}", e, d), tg.Variable(f"W1_{k}", d, f), tg.Variable(f"W2_{k}", f, d)
        params += [Wq, Wk, Wv, Wo, W1, W2]
        q, key, v = x @ Wq, x.rename(s="t") @ Wk, x.rename(s="t") @ Wv
        x = layer_norm(x + (F.softmax(q @ key / math.sqrt(4), "t") @ v) @ Wo)
        x = layer_norm(x + F.gelu(x @ W1) @ W2)
    return F.mean((x - Y) ** 2), params


# -- one reverse sweep ----------------------------------------------------------------


def test_a_list_of_variables_gives_the_list_of_gradients():
    loss, params, X, _ = tanh_mlp(3)
    together = loss.grad(params)
    assert isinstance(together, list) and len(together) == 3
    for W, g in zip(params, together):
        alone = tanh_mlp(3)[0].grad(W)  # another loss object: no sweep shared with the list
        assert g.edges == alone.edges == W.edges
        assert g == alone
        assert g.simplify() == alone.simplify()
    assert loss.grad(tuple(params[:2]))[1].edges == params[1].edges
    renamed = loss.grad([params[0], X], new_names=[{"h0": "a"}, None])
    assert renamed[0].edges == ("a", "h1") and renamed[1].edges == X.edges


def test_a_list_with_new_names_of_another_length_is_refused():
    loss, params, _, _ = tanh_mlp(2)
    with pytest.raises(TypeError, match="new_names must be None or a list of 2 dicts"):
        loss.grad(params, new_names={"h0": "a"})


@pytest.mark.parametrize("one_at_a_time", [False, True])
def test_gradients_of_every_layer_build_in_work_linear_in_depth(built, one_at_a_time):
    # One sweep for all parameters, shared by gradients asked for one at a time:
    # before, each .grad walked the whole loss (O(L^2) for a weight per layer).
    counts = []
    for layers in (50, 100, 200):
        loss, params, _, _ = tanh_mlp(layers)
        counts.append(built(lambda: [loss.grad(W) for W in params] if one_at_a_time else loss.grad(params)))
    assert counts[1] < 2.1 * counts[0] and counts[2] < 2.1 * counts[1], counts


def test_gradients_do_not_wait_on_normal_forms(built):
    # .grad builds on the expression as written: no normal form is computed
    loss, params = post_layer_norm(2)
    loss.grad(params)
    assert not has_normal_form(loss)
    # and building them costs work linear in the number of blocks
    counts = []
    for blocks in (2, 4, 8):
        loss, params = post_layer_norm(blocks)
        counts.append(built(lambda: loss.grad(params)))
    assert counts[1] < 2.2 * counts[0] and counts[2] < 2.2 * counts[1], counts


def test_lowering_a_deep_mlp_and_its_gradients_builds_no_node(built):
    # past the normal-form limit, lowering lowers the forms .grad built, as they are
    loss, params, _, _ = tanh_mlp(100)
    grads = loss.grad(params)
    assert built(lambda: tg.lower([loss, *grads])) == 0


# -- numbers ------------------------------------------------------------------------


def test_post_layer_norm_transformer_gradients_match_jax():
    loss, params = post_layer_norm(2)
    rng = np.random.default_rng(0)
    S, D, E, Fh = 5, 4, 3, 6
    values = {"X": rng.standard_normal((S, D)), "Y": rng.standard_normal((S, D))}
    for W in params:
        first, second = (D if e == "d" else E if e == "e" else Fh for e in W.edges)
        values[W.name] = rng.standard_normal((first, second)) / 2
    got = tg.lower([loss, *loss.grad(params)])(values)

    def layer_norm(h):
        c = h - h.mean(-1, keepdims=True)
        return c * (jnp.mean(c**2, -1, keepdims=True) + 1e-5) ** -0.5

    def jax_loss(p):
        x = values["X"]
        for k in range(2):
            q, key, v = x @ p[f"Wq{k}"], x @ p[f"Wk{k}"], x @ p[f"Wv{k}"]
            x = layer_norm(x + (jax.nn.softmax(q @ key.T / 2, axis=-1) @ v) @ p[f"Wo{k}"])
            x = layer_norm(x + jax.nn.gelu(x @ p[f"W1_{k}"], approximate=False) @ p[f"W2_{k}"])
        return jnp.mean((x - values["Y"]) ** 2)

    p = {W.name: jnp.asarray(values[W.name]) for W in params}
    value, grads = jax.value_and_grad(jax_loss)(p)
    np.testing.assert_allclose(got[0], value, rtol=1e-10)
    for W, g in zip(params, got[1:]):
        np.testing.assert_allclose(g, grads[W.name], rtol=1e-8, atol=1e-12)


def test_normal_forms_past_the_budget_are_left_out_and_lowering_still_works():
    # A post-layer-norm block's gradients by the forward rules grow without bound;
    # lowering gives up on that candidate within its budget and lowers the rest.
    loss, params = post_layer_norm(1)
    grads = loss.grad(params)
    outputs = [loss, *grads]
    shared = parents_first(outputs, children=sharing_args)
    assert evaluation.normal_forms(outputs, shared) is None
    assert evaluation.on_normal_forms(outputs, shared) is not None


def test_a_softmax_written_by_hand_stays_stable_past_the_normal_form_limit(monkeypatch):
    # .grad no longer differentiates a normal form, so the written form itself
    # recognises exp(z) / sum exp(z) (its log then the log-softmax)
    monkeypatch.setattr(evaluation, "NORMAL_FORM_NODE_LIMIT", 0)
    z, y = tg.Variable("z", b=3, c=4), tg.Variable("y", b=3, c=4)
    loss = F.sum(F.log(F.exp(z) / F.sum(F.exp(z), "c")) * y)
    logits = np.array([[1000.0, 1001.0, 999.0, 1000.0]] * 3)
    targets = np.eye(4)[[0, 1, 2]]
    value, grad = tg.lower([loss, loss.grad(z)])(z=logits, y=targets)

    def reference(v):
        return jnp.sum(jax.nn.log_softmax(v, axis=1) * targets)

    np.testing.assert_allclose(value, reference(logits), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(reference)(logits), rtol=1e-10, atol=1e-12)


def test_a_symmetric_variable_and_a_plain_one_of_one_name_have_their_own_gradients():
    S = tg.Variable("S", i=3, j=3, symmetric=[("i", "j")])
    P = tg.Variable("S", i=3, j=3)
    loss = F.sum(F.tanh(S)) + F.sum(F.exp(P))
    gS, gP = loss.grad([S, P])
    assert gS.simplify() == tg.Derivative(loss, S).simplify()
    assert gP.simplify() == tg.Derivative(loss, P).simplify()


# -- simplify and equality of a layer-norm stack ---------------------------------------


def test_equality_of_a_layer_norm_stack_compares_each_node_pair_once():
    # The loss read as a tree doubles with every block (a layer norm reads its
    # input three times); equality follows the DAG, one node pair at a time.
    compared = []
    same = identity._Matcher.same

    def counted(self, x, y, m):
        compared.append(1)
        return same(self, x, y, m)

    counts = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(identity._Matcher, "same", counted)
        for blocks in (4, 8):
            a, b = post_layer_norm(blocks)[0], post_layer_norm(blocks)[0]
            compared.clear()
            assert identity.isomorphic(a, b)
            counts.append(len(compared))
    assert counts[1] < 2.2 * counts[0], counts


def test_a_layer_norm_stack_simplifies():
    # 3 blocks took 74 s (equality unfolded the DAG); 12 blocks now take a few seconds
    loss, _ = post_layer_norm(6)
    simplified = loss.simplify()
    assert simplified.edges == ()
    assert simplified == post_layer_norm(6)[0].simplify()


def test_a_layer_norm_stack_and_its_gradients_simplify_in_near_linear_work(built):
    # Each block's centred sum holds the block below, and the normal form names it
    # differently in every product that reads it: renamed eagerly, the normal form
    # held a copy of the whole stack below every block (quadratic: 6,075 nodes at 8
    # blocks, 784 now), and the mean of each block's input pushed its sum through
    # every block below, anew each time. Work is nodes built; quadratic is 4x a doubling.
    loss_work, grad_work, sizes = [], [], []
    for blocks in (4, 8):
        loss, params = post_layer_norm(blocks)
        box = {}
        loss_work.append(built(lambda: box.setdefault("loss", loss.simplify())))
        sizes.append(len(parents_first([box["loss"]], children=sharing_args)))
        gradient = loss.grad(params[0])
        grad_work.append(built(gradient.simplify))
    assert loss_work[1] < 2.3 * loss_work[0], loss_work
    assert sizes[1] < 2.3 * sizes[0], sizes
    assert grad_work[1] < 2.7 * grad_work[0], grad_work


def test_renaming_a_deep_sum_is_constant_work(built):
    # a sum's copy renames its terms only when they are read, as a function's does
    s = tg.symbols("s")
    x = tg.Variable("x", s=s)
    for k in range(200):
        x = x + tg.Variable(f"c{k}") * x
    renamed = {}
    assert built(lambda: renamed.setdefault("y", x.rename(s="t"))) <= 2
    y = renamed["y"]
    assert y.edges == ("t",) and y == x.rename(s="t")
    assert y.simplify() == x.simplify().rename(s="t")
    values = {"x": np.arange(3.0), **{f"c{k}": 0.001 * k for k in range(200)}}
    np.testing.assert_allclose(tg.lower(y)(**values), tg.lower(x)(**values))


def test_the_symbolic_derivative_of_a_layer_norm_stack_differentiates_each_node_once(built):
    # A layer norm reads its input three times: differentiated as a tree, the
    # derivative of 3 blocks had 8.7 million nodes (and 2 blocks took 17 s to simplify).
    from tgjax._diff import derivative
    from tgjax._simplify.core import simplified

    loss, params = post_layer_norm(3)
    normal = simplified(loss)
    x = params[0]
    made = built(lambda: derivative(normal, x, {e: e + "_" for e in x.edges}))
    assert made < 5 * len(parents_first([normal])), made


# -- wide sums ------------------------------------------------------------------------


def wide_sum(terms: int):
    x = tg.Variable("x", j=tg.symbols("m"))
    total = None
    for k in range(terms):
        term = tg.Variable(f"c{k}") * x ** (k % 7 + 1)
        total = term if total is None else total + term
    return total


def test_a_wide_sum_builds_and_simplifies_in_linear_work(built):
    # built by repeated +, n nested sums: each level was normalised on its own (quadratic)
    counts = []
    for terms in (500, 1000, 2000):
        box = {}
        build = built(lambda: box.setdefault("sum", wide_sum(terms)))
        counts.append(build + built(lambda: box["sum"].simplify()))
    assert counts[1] < 2.1 * counts[0] and counts[2] < 2.1 * counts[1], counts


def test_simplifying_a_wide_sum_keeps_no_variable_list_per_level():
    # variables() caches a tuple on every node it is asked of: for a sum built by
    # repeated + over distinct variables that is quadratic (55 s for 20,000 terms);
    # simplify reads the variables of its input in one walk that caches nothing
    total = wide_sum(300)
    simplified = total.simplify()
    assert len(simplified.terms) == 300
    level, cached = total, 0
    while isinstance(level, nodes.Sum) and level.terms and isinstance(level.terms[0], nodes.Sum):
        cached += level.terms[0]._vars is not None
        level = level.terms[0]
    assert cached == 0


def test_a_wide_sum_merges_its_like_terms():
    x = tg.Variable("x", j=3)
    total = None
    for k in range(300):
        term = (k + 1) * x ** (k % 3 + 1)
        total = term if total is None else total + term
    simplified = total.simplify()
    assert len(simplified.terms) == 3
    values = np.array([0.5, -1.0, 2.0])
    want = sum((k + 1) * values ** (k % 3 + 1) for k in range(300))
    np.testing.assert_allclose(tg.lower(simplified)(x=values), want, rtol=1e-12)


# -- saying what is slow -----------------------------------------------------------------


def test_a_slow_stage_says_so_at_info_level(caplog, monkeypatch):
    monkeypatch.setattr(_logging, "SLOW_S", 0.0)
    loss, params, _, _ = tanh_mlp(3)
    with caplog.at_level(logging.INFO, logger="tgjax"):
        loss.grad(params)
    messages = [r.getMessage() for r in caplog.records if r.name == "tgjax" and r.levelno == logging.INFO]
    assert any(m.startswith("derivative of 3 variable(s)") for m in messages), messages


def test_log_lines_summarise_long_lists():
    assert _logging.listed(range(3)) == "0, 1, 2"
    assert _logging.listed(range(100)) == "0, 1, 2, 3, 4, 5, ... (100 in all)"
    text = _logging.shapes_text([(32, 32)] * 40 + [(16, 32)])
    assert text == "41 array(s): 40 of (32, 32), 1 of (16, 32)"


def test_a_weight_past_int32_is_written_as_a_float():
    # a 12-block GPT's normal form had -d^7 = -2^35 as a coefficient, which JAX could not
    # pass to a float32 array's product as a Python int
    from tgjax._lower.program import Program

    program = Program({}, ())
    assert program.number(-(2**35)) == repr(-float(2**35))
    assert program.number(2**20) == "1048576"
    x = tg.Variable("x", i=2)
    value = tg.lower((2**40) * F.sum(x))(x=np.ones(2, np.float32))
    assert float(value) == 2.0**41


def test_an_identity_cache_keeps_the_newest_keys_by_identity():
    from tgjax._ir.util import IdentityCache

    cache, made = IdentityCache(2), []

    def make(value):
        made.append(value)
        return value

    a, b, c = tg.Variable("a", i=2), tg.Variable("a", i=2), tg.Variable("c", i=2)
    assert a == b and a is not b  # equal, but two keys
    assert cache.get(a, lambda: make("A")) == "A"
    assert cache.get(b, lambda: make("B")) == "B"
    assert cache.get(a, lambda: make("A again")) == "A"  # a is now the newest
    cache.get(c, lambda: make("C"))  # evicts b, the oldest
    assert cache.get(b, lambda: make("B again")) == "B again"
    assert made == ["A", "B", "C", "B again"]
