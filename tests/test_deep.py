"""Expressions of any depth and width: no pass stops at Python's recursion limit.

Issue: lowering 300 nested tanh, simplifying the gradient of 200 nested tanh
and a sum of 400 terms raised RecursionError. Each case is checked for its
value, not only for running.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._ir.nodes import Function, Product
from tgjax._ir.numbering import Numbering
from tgjax._ir.rename import sharing_args
from tgjax._ir.walk import parents_first

n = tg.symbols("n")
x = tg.Variable("x", n)
X0 = np.linspace(-0.9, 0.9, 5)


def tanh_chain(depth):
    e = x
    for _ in range(depth):
        e = F.tanh(e)
    return e


def jax_tanh_chain(v, depth):
    for _ in range(depth):
        v = jnp.tanh(v)
    return v


@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_tanh_chain_loss_and_gradient(depth):
    loss = F.sum(tanh_chain(depth))
    value, grad = tg.lower([loss, loss.grad(x)])(x=X0)
    jloss = lambda v: jnp.sum(jax_tanh_chain(v, depth))  # noqa: E731
    np.testing.assert_allclose(value, jloss(X0), rtol=1e-10)
    np.testing.assert_allclose(grad, jax.grad(jloss)(X0), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("depth", [200, pytest.param(1000, marks=pytest.mark.slow)])
def test_gradient_of_nested_tanh_simplifies(depth):
    # 0.1 s at 200 levels, 0.9 s at 1,000. The normal form names the chain below
    # each partial apart: lowering takes each renamed copy from the function it
    # copies (a view) and never builds its inputs, which would be quadratic in depth.
    g = F.sum(tanh_chain(depth)).grad(x).simplify()
    shared = parents_first([g], children=sharing_args)
    unbuilt = [u for u in shared if isinstance(u, Function) and u._inputs is None]
    assert len(shared) < 7 * depth and len(unbuilt) > 0.9 * depth
    jloss = lambda v: jnp.sum(jax_tanh_chain(v, depth))  # noqa: E731
    np.testing.assert_allclose(tg.lower(g)(x=X0), jax.grad(jloss)(X0), rtol=1e-10, atol=1e-14)
    assert all(u._inputs is None for u in unbuilt)


def test_simplifying_a_deep_gradient_is_linear():
    # Work counted without a clock: nodes built, and factors read by the structural
    # hash of products. The derivative of an n-deep chain nests n products; each
    # simplified on its own was a normal form of growing size (quadratic work, 4x
    # for twice the depth), and each partial's chain is a renamed copy of the chain
    # below it (cubic where the copies were built in full: 7x or more).
    from tgjax._ir import identity, nodes

    work = [0]
    init, network = nodes.Expr._init, identity.network

    def counted_init(self, *args, **kwargs):
        work[0] += 1
        return init(self, *args, **kwargs)

    def counted_network(p):
        atoms = network(p)
        work[0] += len(atoms)
        return atoms

    counts = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nodes.Expr, "_init", counted_init)
        patch.setattr(identity, "network", counted_network)
        for depth in (40, 80, 160):
            g = F.sum(tanh_chain(depth)).grad(x)
            work[0] = 0
            g.simplify()
            counts.append(work[0])
    assert counts[1] < 2.2 * counts[0] and counts[2] < 2.2 * counts[1], counts


def test_a_product_shared_at_every_level_is_simplified_once():
    # Each level uses the one below twice; opened once, the second use is its normal
    # form, renamed. Renamed before it was simplified, it was simplified anew at every
    # level (twice the work per level: 14 levels took seconds, 30 did not finish).
    from tgjax._ir import nodes

    A, B = tg.Variable("A", i=n, j=n), tg.Variable("B", j=n, k=n)
    v = x.rename(n="i")
    work = [0]
    init = nodes.Expr._init

    def counted_init(self, *args, **kwargs):
        work[0] += 1
        return init(self, *args, **kwargs)

    counts = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nodes.Expr, "_init", counted_init)
        for levels in (8, 16):
            p = A @ B
            for _ in range(levels):
                p = (p * (v @ A @ B)) * p
            work[0] = 0
            p.simplify()
            counts.append(work[0])
    assert counts[1] < 2.5 * counts[0], counts


@pytest.mark.slow
def test_simplifying_ten_thousand_levels():
    g = F.sum(tanh_chain(10_000)).grad(x).simplify()
    # one sum factor per level, all joined elementwise: 1 - tanh(u)^2 for each u of the chain
    assert len(g.factors) == 10_001 and sum(type(f).__name__ == "Sum" for f in g.factors) == 10_000


def test_renaming_a_function_chain_copies_nothing_until_read():
    e = tanh_chain(2_000)
    renamed = e.rename(n="m")
    assert renamed.edges == ("m",) and renamed.renamed_from == (e, {"n": "m"})
    assert renamed._inputs is None  # nothing below it is built until read
    assert renamed.rename(m="n") is e  # a rename back is the original, not a copy
    assert renamed.rename(m="p").renamed_from == (e, {"n": "p"})  # a rename of a rename starts from it
    loss = F.sum(renamed * F.exp(x.rename(n="m")))
    jloss = lambda v: jnp.sum(jax_tanh_chain(v, 2_000) * jnp.exp(v))  # noqa: E731
    np.testing.assert_allclose(tg.lower(loss)(x=X0), jloss(X0), rtol=1e-10)
    np.testing.assert_allclose(tg.lower(loss.grad(x))(x=X0), jax.grad(jloss)(X0), rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_ten_thousand_levels():
    e = tanh_chain(10_000)
    assert e.edges == ("n",)
    assert repr(e).count("tanh") == 10_000
    np.testing.assert_allclose(tg.lower(F.sum(e))(x=X0), jnp.sum(jax_tanh_chain(X0, 10_000)), rtol=1e-10)


@pytest.mark.parametrize("terms", [400, pytest.param(10_000, marks=pytest.mark.slow)])
def test_long_sum_built_left_to_right(terms):
    xs = [tg.Variable(f"x{k}", n) for k in range(8)]
    total = xs[0]
    for k in range(1, terms):
        total = total + (k % 3 + 1) * xs[k % 8]
    values = {f"x{k}": np.full(3, float(k)) for k in range(8)}
    expected = sum((k % 3 + 1 if k else 1) * float(k % 8) for k in range(terms))
    np.testing.assert_allclose(tg.lower(F.sum(total))(values), 3 * expected)
    # its normal form collects the terms: one per variable
    assert len(F.sum(total).simplify().terms) == 8
    assert "x7" in repr(total)


def test_printing_a_deep_gradient():
    g = F.sum(tanh_chain(300)).grad(x)
    assert "tanh" in repr(g) and "tanh" in tg.to_source(g, sizes={n: 4})


def test_value_numbers_see_through_renaming():
    """A renamed copy (what ``a * b`` makes of its operands) is the same computation."""
    i, j = tg.symbols("i j")
    A = tg.Variable("A", i, j)
    t = F.tanh(A @ tg.Variable("B", j=j, k=i))
    copy = t.rename(i="p", k="q")
    numbers = Numbering()
    (a, ports_a), (b, ports_b) = numbers(t), numbers(copy)
    assert a == b
    assert dict(zip(ports_a, ports_b)) == {"i": "p", "k": "q"}
    assert numbers(F.exp(A @ tg.Variable("B", j=j, k=i)))[0] != a


def test_value_numbers_see_through_views():
    """A view (identity Deltas that relabel a node's edges) has its node's number, and so has
    a renamed product whose function became a view: the reverse sweep then gives both one
    cotangent."""
    from tgjax._ir.numbering import view_origin
    from tgjax._ir.rename import view, with_views

    i, j = tg.symbols("i j")
    A = tg.Variable("A", i, j)
    t = F.tanh(A @ tg.Variable("B", j=j, k=i))
    seen = view(t, {"i": "p"})
    assert view_origin(seen) == (t, {"i": "p"})
    numbers = Numbering()
    (a, ports_a), (b, ports_b) = numbers(t), numbers(seen)
    assert a == b and dict(zip(ports_a, ports_b)) == {"i": "p", "k": "k"}
    product = t @ tg.Variable("C", k=i, m=j)
    renamed, = with_views([product.rename(i="s")])
    assert numbers(renamed)[0] == numbers(product)[0]
    # a trace or a diagonal is no view
    M = tg.Variable("M", i=i, j=i)
    assert view_origin(Product([M, tg.Delta(i, "i", "j")], edges=())) is None
    assert view_origin(Product([M.rename(j="q"), tg.Delta(i, "i", "p", "r")], edges=("p", "r", "q"))) is None


def test_renaming_a_residual_network_is_linear():
    # h is used twice per layer; a rename rebuilt it once per path (2^layers)
    s, d = tg.symbols("s d")
    h = tg.Variable("x", s, d)
    for k in range(12):
        h = h + F.tanh(h @ tg.Variable(f"W{k}", d=d, e=d)).rename(e="d")
    from tgjax._lower.evaluation import node_count

    assert node_count([h.rename(s="t")]) < 4 * node_count([h])
    assert node_count([h * h]) < 10 * node_count([h])


def test_a_renamed_gradient_keeps_its_normal_form():
    # == implies equal normal forms: the derivative a .grad result stands for follows a rename
    A = tg.Variable("A", i=n, j=n)
    g = F.tanh(x.rename(n="i") @ A @ x.rename(n="j")).grad(x)
    there_and_back = g.rename(n="q").rename(q="n")
    assert there_and_back == g
    assert there_and_back.simplify() == g.simplify()


def test_deep_workers_restore_the_process_settings():
    import sys
    import threading

    limit = sys.getrecursionlimit()
    errors = []

    def build():
        try:
            F.sum(tanh_chain(400)).grad(x)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sys.getrecursionlimit() == limit
    assert threading.stack_size() == 0


def test_an_unevaluated_derivative_composes_with_elementwise_products():
    # renaming a Derivative to inner edge names (as a * b does) must not trip the user-facing check
    v = tg.Variable("v", n)
    d = tg.Derivative(F.sum(v * v), v)
    np.testing.assert_allclose(tg.lower(d * v)(v=X0), 2 * X0 * X0, rtol=1e-12)
