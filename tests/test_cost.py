"""Cost tests: tgjax's compiled loss-and-gradient programs never cost more than JAX's backprop.

Clock-free (tests/costs.py): FLOPs from XLA's cost analysis of the compiled
program, and the element count of the largest array any jaxpr equation
produces. For every case, ``tg.lower([loss, *grads])`` may cost at most
``BOUND`` times ``jax.jit(jax.value_and_grad(f, argnums=params))`` on both
measures, where ``f`` is the same loss written in jax.numpy; the Hessian
``loss.grad(x).grad(x)`` likewise against ``jax.hessian``. Values are checked
too.

Random cases draw from the whole function library; each is named by the
tgjax code that builds it (``Case.code``). The worst ratios seen are kept in
``WORST`` and reported (and bounded) by the last test of this file.

A bigger random sweep: ``TGJAX_COST_SWEEP=200 pytest -m slow tests/test_cost.py``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import strategies as st
from hypothesis.strategies import composite

import tgjax as tg
import tgjax.functions as F
from costs import Costs, _measure, jax_costs, tgjax_costs

BOUND = 2.0

# Shrinking re-runs a failing case hundreds of times (two XLA compilations
# each); the failing example is reported as drawn, named by its code.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
SLOW_DRAWS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# The worst ratio seen by any test of this module: measure -> (ratio, description, bound).
WORST: dict[str, tuple[float, str]] = {}


# -- comparing one case ------------------------------------------------------------


def _ratio(ours: float, theirs: float) -> float:
    return ours / max(theirs, 1.0)


def _record(measure: str, ratio: float, description: str, bound: float = BOUND):
    if measure not in WORST or ratio > WORST[measure][0]:
        WORST[measure] = (ratio, description, bound)


def _max_error(a, b) -> tuple[float, float]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf, 1.0
    if not a.size:
        return 0.0, 1.0
    return float(np.max(np.abs(a - b))), max(1.0, float(np.max(np.abs(b))))


def compare(name: str, ours: Costs, theirs: Costs, labels, dtype, baseline: str, steer: bool = False, reference=None,
            bounds=(BOUND, BOUND)):
    """Assert tgjax's costs are within ``bounds`` (FLOPs, largest intermediate) of JAX's, and the
    values agree; name the case on failure.

    ``reference()``: the baseline's outputs computed in float64. Where a float32
    result differs from the baseline's, tgjax passes if it is no further from
    that reference than the baseline itself (a zero gradient that tgjax finds
    exactly, where JAX's float32 roundoff shows, is not an error).
    """
    flops = _ratio(ours.flops, theirs.flops)
    largest = _ratio(ours.largest, theirs.largest)
    description = (
        f"{name}\n"
        f"  FLOPs: tgjax {ours.flops:.4g} / {baseline} {theirs.flops:.4g} = {flops:.3g}x "
        f"(transcendentals {ours.transcendentals:.4g} / {theirs.transcendentals:.4g})\n"
        f"  largest intermediate: tgjax {ours.largest} ({ours.largest_eqn}) / "
        f"{baseline} {theirs.largest} ({theirs.largest_eqn}) = {largest:.3g}x"
    )
    _record(f"FLOPs against {baseline}", flops, description, bounds[0])
    _record(f"largest intermediate against {baseline}", largest, description, bounds[1])
    if steer:
        target(flops, label=f"FLOPs ratio to {baseline}")
        target(largest, label=f"largest intermediate ratio to {baseline}")
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-8
    problems = []
    if len(ours.outputs) != len(theirs.outputs):
        problems.append(f"tgjax returned {len(ours.outputs)} outputs, {baseline} {len(theirs.outputs)}")
    exact = None
    for i, (label, a, b) in enumerate(zip(labels, ours.outputs, theirs.outputs)):
        err, scale = _max_error(a, b)
        if not err <= rtol * scale and reference is not None and np.dtype(dtype) != np.float64:
            exact = reference() if exact is None else exact
            ours_err, scale = _max_error(a, exact[i])
            theirs_err, _ = _max_error(b, exact[i])
            if ours_err <= max(rtol * scale, 2 * theirs_err):
                continue
            err = ours_err
        if not err <= rtol * scale:
            problems.append(
                f"{label} differs from {baseline}: max abs error {err:.3g} > {rtol:g} * {scale:.3g} "
                f"(shapes {np.shape(a)} / {np.shape(b)})"
            )
    if flops > bounds[0]:
        problems.append(f"FLOPs ratio {flops:.3g}x > {bounds[0]}x")
    if largest > bounds[1]:
        problems.append(f"largest-intermediate ratio {largest:.3g}x > {bounds[1]}x")
    assert not problems, description + "\n  " + "\n  ".join(problems)


def _float64(values, order):
    return [jnp.asarray(values[n], jnp.float64) for n in order]


def sizes_of(loss, values) -> dict:
    """Each size symbol of the loss's variables -> its length in ``values``: a derivative that no
    longer mentions a variable (a zero Hessian) still gets its sizes, as tg.check_grads does."""
    sizes = {}
    for v in loss.variables():
        for (_, size), n in zip(v.decl, np.shape(values[v.name])):
            if getattr(size, "is_Symbol", False):
                sizes[size] = int(n)
    return sizes


def check_gradients(name, loss, params, values, jax_loss, steer=False):
    """``tg.lower([loss, *grads])`` against ``jax.jit(jax.value_and_grad(jax_loss, argnums=params))``.

    ``jax_loss(env)`` takes a dict name -> array; the parameters are positional
    arguments of the JAX function (differentiated), the other values too (not).
    """
    names = [p.name for p in params]
    data = [n for n in values if n not in names]
    order = names + data

    def f(*arrays):
        return jax_loss(dict(zip(order, arrays)))

    ours = tgjax_costs([loss, *(loss.grad(p) for p in params)], values, sizes_of(loss, values))
    theirs = jax_costs(f, [values[n] for n in order], argnums=range(len(names)))

    def reference():
        value, grads = jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(names)))))(*_float64(values, order))
        return (value, *grads)

    dtype = values[names[0]].dtype
    labels = ["loss", *(f"d loss / d {n}" for n in names)]
    compare(name, ours, theirs, labels, dtype, "jax.value_and_grad", steer, reference)


def check_hessian(name, loss, x, values, jax_loss, steer=False):
    """``tg.lower([loss.grad(x).grad(x)])`` against ``jax.jit(jax.hessian(jax_loss, argnums=x))``."""
    data = [n for n in values if n != x.name]
    order = [x.name, *data]

    def f(*arrays):
        return jax_loss(dict(zip(order, arrays)))

    ours = tgjax_costs([loss.grad(x).grad(x)], values, sizes_of(loss, values))
    theirs = jax_costs(f, [values[n] for n in order], argnums=0, hessian=True)

    def reference():
        return (jax.jit(jax.hessian(f))(*_float64(values, order)),)

    dtype = values[x.name].dtype
    compare(name, ours, theirs, [f"d2 loss / d {x.name}2"], dtype, "jax.hessian", steer, reference)


# A derivative contracted with a tensor costs what the matching JAX transform costs.
HVP_BOUNDS = (1.6, 2.0)


def check_hvp(name, loss, x, values, jax_loss, seed=0, steer=False):
    """``loss.grad(x).grad(x) @ v``, written as a user writes ``H v``, against
    ``jax.jit(jax.jvp(jax.grad(jax_loss)))`` at the same direction ``v``."""
    data = [n for n in values if n != x.name]
    order = [x.name, *data]
    second = {e: f"{e}_2" for e, _ in x.decl}
    v = tg.Variable("v_dir", **{second[e]: size for e, size in x.decl})
    direction = np.random.default_rng(seed).standard_normal(np.shape(values[x.name]))
    values = {**values, "v_dir": jnp.asarray(direction, values[x.name].dtype)}
    hessian = loss.grad(x).grad(x, new_names=second)
    ours = tgjax_costs([hessian @ v], values, sizes_of(loss, values))

    def hvp(point, direction, *data_arrays):
        grad = jax.grad(lambda p: jax_loss(dict(zip(order, (p, *data_arrays)))))
        return jax.jvp(grad, (point,), (direction,))[1]

    args = [values[x.name], values["v_dir"], *(values[n] for n in data)]
    theirs = _measure(jax.jit(hvp), args)

    def reference():
        return (jax.jit(hvp)(*(jnp.asarray(a, jnp.float64) for a in args)),)

    dtype = values[x.name].dtype
    compare(name, ours, theirs, [f"H v, d2 loss / d {x.name}2"], dtype, "jax.jvp(jax.grad)", steer, reference, HVP_BOUNDS)


# -- random losses from the whole function library -----------------------------------
#
# Edges b, d, k, h, c (sizes drawn 16..64). Every node keeps its edges in this
# order, so the jax.numpy side broadcasts with a[:, None] and contracts with
# einsum without transposes, as a user would write it.

ORDER = ("b", "d", "k", "h", "c")
SYMBOLS = dict(zip(ORDER, tg.symbols("b d k h c")))
MAX_EDGES = 3  # no node has more free edges (64**3 entries at most)


@dataclasses.dataclass(frozen=True)
class Leaf:
    name: str
    edges: tuple
    kind: str  # "param" (differentiated), "data", "target" (probability rows along c)
    scale: float  # standard deviation of its entries


LEAVES = {
    leaf.name: leaf
    for leaf in (
        Leaf("X", ("b", "d"), "data", 1.0),
        Leaf("T", ("b", "c"), "target", 1.0),
        Leaf("w", ("b",), "data", 1.0),
        Leaf("W", ("d", "h"), "param", 0.0),  # scale 0: 1/sqrt(first edge), as a layer's init
        Leaf("U", ("h", "c"), "param", 0.0),
        Leaf("K", ("d", "k"), "param", 0.0),
        Leaf("V", ("k", "h"), "param", 0.0),
        Leaf("x", ("d",), "param", 1.0),
        Leaf("v", ("h",), "param", 0.5),
        Leaf("y", ("c",), "param", 0.5),
        Leaf("z", ("k",), "param", 0.5),
    )
}
VARIABLES = {n: tg.Variable(n, **{e: SYMBOLS[e] for e in leaf.edges}) for n, leaf in LEAVES.items()}
FULL_POOL = tuple(LEAVES)
HESSIAN_POOL = ("x", "X", "w")  # one vector variable x (edge d), with data


def make_values(names, sizes, dtype, seed) -> dict:
    """Arrays for the named leaves: normal entries at each leaf's scale; T's rows are probabilities."""
    rng = np.random.default_rng(seed)
    out = {}
    for n in sorted(names):
        leaf = LEAVES[n]
        shape = tuple(sizes[e] for e in leaf.edges)
        a = rng.standard_normal(shape)
        if leaf.kind == "target":
            a = np.exp(a) / np.exp(a).sum(axis=-1, keepdims=True)
        elif leaf.name == "w":
            a = rng.uniform(0.5, 1.5, shape)
        else:
            a = a * (leaf.scale or sizes[leaf.edges[0]] ** -0.5)
        out[n] = jnp.asarray(a, dtype)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One subexpression, both ways: the tgjax expression and a jax.numpy function of the arrays."""

    tg: Any
    jx: Callable  # env (name -> array) -> array, axes in ORDER restricted to `edges`
    edges: tuple
    code: str  # the tgjax code that builds it
    mag: float  # rough typical magnitude of its entries (keeps exp from overflowing)
    pos: bool = False  # positive and bounded away from zero (safe for log, sqrt, 1/t)


def canon(edges) -> tuple:
    edges = set(edges)
    return tuple(e for e in ORDER if e in edges)


def align(a, src, dst):
    """Broadcast array ``a`` with edges ``src`` to edges ``dst`` (both in ORDER): ``a[:, None]``."""
    if tuple(src) == tuple(dst):
        return a
    return a[tuple(slice(None) if e in src else None for e in dst)]


def leaf_node(name, sizes) -> Node:
    leaf = LEAVES[name]
    scale = leaf.scale or sizes[leaf.edges[0]] ** -0.5
    mag = 1.0 / sizes["c"] if leaf.kind == "target" else max(scale, 0.5)
    return Node(VARIABLES[name], lambda env: env[name], leaf.edges, name, mag, pos=leaf.name == "w")


def _small(u: Node) -> Node:
    """``u`` itself where exp(u) is safe, else tanh(u)."""
    if u.mag <= 1.5:  # exp(u) stays below ~1e3 for u up to 4 standard deviations
        return u
    return Node(F.tanh(u.tg), lambda env: jnp.tanh(u.jx(env)), u.edges, f"F.tanh({u.code})", 1.0)


def _positive(draw, u: Node) -> Node:
    """A positive expression of ``u``: u itself when it is, else exp(u), u*u + 1 or sigmoid(u)."""
    if u.pos:
        return u
    kind = draw(st.sampled_from(("exp", "square_plus_one", "sigmoid")))
    if kind == "exp" or (kind == "sigmoid" and u.mag > 1.5):
        s = _small(u)
        return Node(F.exp(s.tg), lambda env: jnp.exp(s.jx(env)), u.edges, f"F.exp({s.code})", math.exp(s.mag), True)
    if kind == "sigmoid":
        return Node(F.sigmoid(u.tg), lambda env: jax.nn.sigmoid(u.jx(env)), u.edges, f"F.sigmoid({u.code})", 1.0, True)

    def sq1(env):
        a = u.jx(env)
        return a * a + 1

    return Node(u.tg * u.tg + 1, sq1, u.edges, f"({u.code}) * ({u.code}) + 1", u.mag**2 + 1, True)


UNARY = ("tanh", "sigmoid", "relu", "softplus", "gelu", "abs", "neg", "scale", "square", "cube")
POSITIVE = ("log", "sqrt", "rsqrt", "reciprocal", "pow1.5")


def _unary(op, u: Node) -> Node:
    tg_fn, jx_fn, code, mag = {
        "tanh": (F.tanh, jnp.tanh, "F.tanh({})", 1.0),
        "sigmoid": (F.sigmoid, jax.nn.sigmoid, "F.sigmoid({})", 1.0),
        "relu": (F.relu, jax.nn.relu, "F.relu({})", u.mag),
        "softplus": (F.softplus, jax.nn.softplus, "F.softplus({})", u.mag + 1),
        "gelu": (F.gelu, lambda a: jax.nn.gelu(a, approximate=False), "F.gelu({})", u.mag),
        "abs": (F.abs, jnp.abs, "F.abs({})", u.mag),
        "neg": (lambda t: -t, lambda a: -a, "-({})", u.mag),
        "scale": (lambda t: 0.5 * t, lambda a: 0.5 * a, "0.5 * ({})", u.mag / 2),
        "square": (lambda t: F.pow(t, 2), lambda a: a**2, "F.pow({}, 2)", u.mag**2),
        "cube": (lambda t: F.pow(t, 3), lambda a: a**3, "F.pow({}, 3)", u.mag**3),
        "log": (F.log, jnp.log, "F.log({})", abs(math.log(max(u.mag, 1e-3))) + 1),
        "sqrt": (F.sqrt, jnp.sqrt, "F.sqrt({})", math.sqrt(u.mag)),
        "rsqrt": (lambda t: F.pow(t, -0.5), lambda a: a**-0.5, "F.pow({}, -0.5)", 5.0),
        "reciprocal": (lambda t: 1 / t, lambda a: 1 / a, "1 / ({})", 20.0),
        "pow1.5": (lambda t: F.pow(t, 1.5), lambda a: a**1.5, "F.pow({}, 1.5)", u.mag**1.5),
    }[op]
    return Node(tg_fn(u.tg), lambda env: jx_fn(u.jx(env)), u.edges, code.format(u.code), mag, op == "sigmoid" and u.mag <= 1.5)


def _exp(u: Node) -> Node:
    s = _small(u)
    return Node(F.exp(s.tg), lambda env: jnp.exp(s.jx(env)), u.edges, f"F.exp({s.code})", math.exp(s.mag), True)


def _shared(u: Node) -> Node:
    """A variable used in two terms inside one function: tanh(u + exp(u))."""
    s = _small(u)

    def fn(env):
        a = s.jx(env)
        return jnp.tanh(a + jnp.exp(a))

    return Node(F.tanh(s.tg + F.exp(s.tg)), fn, u.edges, f"F.tanh({s.code} + F.exp({s.code}))", 1.0)


def _binary(op, a: Node, b: Node, edges) -> Node:
    tg_fn = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q}[op]
    mag = a.mag * b.mag if op == "*" else a.mag + b.mag

    def fn(env):
        return tg_fn(align(a.jx(env), a.edges, edges), align(b.jx(env), b.edges, edges))

    pos = a.pos and b.pos and op in "+*"
    return Node(tg_fn(a.tg, b.tg), fn, edges, f"({a.code}) {op} ({b.code})", mag, pos)


def base(draw, pool, edges, sizes) -> Node:
    """A leaf with exactly these edges, or a broadcast sum/product of leaves that covers them."""
    exact = [n for n in pool if set(LEAVES[n].edges) == set(edges)]
    if exact:
        return leaf_node(draw(st.sampled_from(exact)), sizes)
    parts = [n for n in pool if set(LEAVES[n].edges) < set(edges)]
    first = leaf_node(draw(st.sampled_from(parts)), sizes)
    rest = base(draw, pool, canon(set(edges) - set(first.edges)), sizes)
    return _binary(draw(st.sampled_from(("+", "*"))), first, rest, canon(edges))


def over(draw, pool, edges, depth, sizes, top=None) -> Node:
    """A random expression with exactly the free edges ``edges``, over the leaves in ``pool``
    (``top``: the operation at its root, else drawn)."""
    edges = canon(edges)
    if top is None and (depth <= 0 or draw(st.integers(0, 5)) == 0):
        return base(draw, pool, edges, sizes)
    pool_edges = canon(e for n in pool for e in LEAVES[n].edges)
    contractors = [
        (n, o, m)
        for n in pool
        if len(LEAVES[n].edges) == 2
        for o in LEAVES[n].edges
        for m in LEAVES[n].edges
        if o != m and o in edges and m not in edges
    ]
    reducible = [e for e in pool_edges if e not in edges] if len(edges) < MAX_EDGES else []
    ops = ["unary", "unary", "positive", "exp", "shared", "binary", "binary"]
    ops += ["softmax", "log_softmax", "center", "layernorm"]
    ops += ["contract", "contract"] if contractors else []
    ops += ["sum", "mean", "logsumexp"] if reducible else []
    ops += ["outer"] if len(edges) == 2 else []
    ops += ["cross_entropy"] if edges == ("b",) and "T" in pool else []
    ops += ["attention", "attention"] if edges == ("b", "h") and {"K", "V", "X"} <= set(pool) else []
    op = top or draw(st.sampled_from(ops))
    sub = lambda e: over(draw, pool, e, depth - 1, sizes)  # noqa: E731

    if op == "unary":
        return _unary(draw(st.sampled_from(UNARY)), sub(edges))
    if op == "positive":
        return _unary(draw(st.sampled_from(POSITIVE)), _positive(draw, sub(edges)))
    if op == "exp":
        return _exp(sub(edges))
    if op == "shared":
        return _shared(sub(edges))
    if op == "binary":
        a = sub(edges)
        part = draw(st.sets(st.sampled_from(edges), min_size=1))
        b = sub(canon(part))
        if draw(st.booleans()):
            a, b = b, a
        return _binary(draw(st.sampled_from("+-*")), a, b, edges)
    if op == "outer":
        return _binary(draw(st.sampled_from("+*")), sub(edges[:1]), sub(edges[1:]), edges)
    if op in ("softmax", "log_softmax", "center", "layernorm"):
        e = draw(st.sampled_from(edges))
        u = sub(edges)
        ax = edges.index(e)
        if op == "softmax":
            return Node(F.softmax(u.tg, e), lambda env: jax.nn.softmax(u.jx(env), axis=ax), edges, f'F.softmax({u.code}, "{e}")', 1.0)
        if op == "log_softmax":
            return Node(
                F.log_softmax(u.tg, e), lambda env: jax.nn.log_softmax(u.jx(env), axis=ax), edges,
                f'F.log_softmax({u.code}, "{e}")', 2 * u.mag + math.log(sizes[e]),
            )
        centred = u.tg - F.mean(u.tg, e)
        if op == "center":

            def center(env):
                a = u.jx(env)
                return a - jnp.mean(a, axis=ax, keepdims=True)

            return Node(centred, center, edges, f'{u.code} - F.mean({u.code}, "{e}")', 2 * u.mag)

        def layernorm(env):
            a = u.jx(env)
            c = a - jnp.mean(a, axis=ax, keepdims=True)
            return c / jnp.sqrt(jnp.mean(c * c, axis=ax, keepdims=True) + 1e-5)

        code = f'layernorm({u.code}, "{e}")'
        return Node(centred / F.sqrt(F.mean(centred * centred, e) + 1e-5), layernorm, edges, code, 3.0)
    if op in ("sum", "mean", "logsumexp"):
        e = draw(st.sampled_from(reducible))
        wide = canon((*edges, e))
        u = sub(wide)
        ax = wide.index(e)
        if op == "sum":
            return Node(F.sum(u.tg, e), lambda env: jnp.sum(u.jx(env), axis=ax), edges, f'F.sum({u.code}, "{e}")', u.mag * sizes[e])
        if op == "mean":
            return Node(F.mean(u.tg, e), lambda env: jnp.mean(u.jx(env), axis=ax), edges, f'F.mean({u.code}, "{e}")', u.mag)
        return Node(
            F.logsumexp(u.tg, e), lambda env: jax.nn.logsumexp(u.jx(env), axis=ax), edges,
            f'F.logsumexp({u.code}, "{e}")', u.mag + math.log(sizes[e]),
        )
    if op == "contract":
        name, o, m = draw(st.sampled_from(contractors))
        leaf = leaf_node(name, sizes)
        u = sub(canon((set(edges) - {o}) | {m}))
        spec = f"{''.join(u.edges)},{''.join(leaf.edges)}->{''.join(edges)}"
        mag = u.mag * leaf.mag * math.sqrt(sizes[m])
        return Node(u.tg @ leaf.tg, lambda env: jnp.einsum(spec, u.jx(env), env[name]), edges, f"({u.code}) @ {name}", mag)
    if op == "cross_entropy":
        logits = sub(("b", "c"))

        def xent(env):
            return -jnp.sum(env["T"] * jax.nn.log_softmax(logits.jx(env), axis=1), axis=1)

        code = f'F.cross_entropy({logits.code}, T, "c")'
        return Node(F.cross_entropy(logits.tg, VARIABLES["T"], "c"), xent, edges, code, logits.mag + 4)
    if op == "attention":
        q = sub(("b", "d"))
        K, V = VARIABLES["K"], VARIABLES["V"]

        def attention(env):
            return jax.nn.softmax(q.jx(env) @ env["K"], axis=1) @ env["V"]

        code = f'F.softmax(({q.code}) @ K, "k") @ V'
        return Node(F.softmax(q.tg @ K, "k") @ V, attention, edges, code, 1.0)
    raise AssertionError(op)


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    code: str
    loss: Any
    params: tuple
    values: dict
    jax_loss: Callable

    def __repr__(self):
        sizes = {str(s): n for s, n in self.sizes().items()}
        dtype = next(iter(self.values.values())).dtype
        return f"Case({self.code}  [{dtype}, sizes {sizes}, wrt {[p.name for p in self.params]}])"

    def _repr_pretty_(self, printer, cycle):  # hypothesis prints falsifying examples with this
        printer.text(repr(self))

    def sizes(self):
        out = {}
        for n, a in self.values.items():
            for e, size in zip(LEAVES[n].edges, a.shape):
                out[e] = size
        return out


def _loss_of(draw, pool, depth, sizes, edge_sets):
    """A scalar term: F.sum or F.mean of a random expression; over the full pool, sometimes a
    cross-entropy or an attention head at the top."""
    kinds = ["sum", "mean"] + (["cross_entropy", "attention"] if set(pool) >= {"T", "K", "V", "X"} else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "cross_entropy":
        node = over(draw, pool, ("b",), depth, sizes, top="cross_entropy")
    elif kind == "attention":
        node = over(draw, pool, ("b", "h"), depth, sizes, top="attention")
    else:
        node = over(draw, pool, draw(st.sampled_from(edge_sets)), depth, sizes)
    if kind != "mean":
        return F.sum(node.tg), lambda env: jnp.sum(node.jx(env)), f"F.sum({node.code})"
    return F.mean(node.tg), lambda env: jnp.mean(node.jx(env)), f"F.mean({node.code})"


LOSS_EDGES = (("b",), ("d",), ("h",), ("b", "d"), ("b", "h"), ("b", "c"), ("d", "h"), ("h", "c"), ("b", "k"))


@composite
def gradient_cases(draw, depth=3):
    """A random scalar loss over the full pool of leaves, with its jax.numpy twin; wrt every parameter in it."""
    sizes = {e: draw(st.integers(16, 64), label=f"size {e}") for e in ORDER}
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    loss, jax_loss, code = _loss_of(draw, FULL_POOL, depth, sizes, LOSS_EDGES)
    if draw(st.integers(0, 2)) == 0:  # a second term
        loss2, jax_loss2, code2 = _loss_of(draw, FULL_POOL, depth - 1, sizes, LOSS_EDGES)
        loss, code = loss + loss2, f"{code} + {code2}"
        jax_loss = (lambda f1, f2: lambda env: f1(env) + f2(env))(jax_loss, jax_loss2)
    used = sorted(v.name for v in loss.variables())
    params = [n for n in used if LEAVES[n].kind == "param"] or used
    values = make_values(used, sizes, dtype, draw(st.integers(0, 2**16), label="seed"))
    return Case(code, loss, tuple(VARIABLES[n] for n in params), values, jax_loss)


@composite
def hessian_cases(draw, depth=2):
    """A small random scalar loss of the vector x (edge d), with data X (b, d) and w (b)."""
    sizes = {e: draw(st.integers(16, 64), label=f"size {e}") for e in ORDER}
    dtype = draw(st.sampled_from((np.float32, np.float64)))
    x = VARIABLES["x"]
    for _ in range(8):  # most draws mention x; the rest are drawn again
        loss, jax_loss, code = _loss_of(draw, HESSIAN_POOL, depth, sizes, (("d",), ("b", "d"), ("b",)))
        if x in loss.variables():
            break
    else:
        loss, code = loss + F.sum(F.tanh(x)), f"{code} + F.sum(F.tanh(x))"
        jax_loss = (lambda f1: lambda env: f1(env) + jnp.sum(jnp.tanh(env["x"])))(jax_loss)
    used = sorted(v.name for v in loss.variables())
    values = make_values(used, sizes, dtype, draw(st.integers(0, 2**16), label="seed"))
    return Case(code, loss, (x,), values, jax_loss)


# Derandomized: the same cases in every run, so that CI is repeatable; the big
# sweep below (TGJAX_COST_SWEEP) explores new ones. Random exploration found a
# float32 accuracy gap, now a test below (test_layer_norm_of_a_broadcast_sum_float32_accuracy).
@settings(max_examples=30, deadline=None, phases=NO_SHRINK, suppress_health_check=SLOW_DRAWS, derandomize=True)
@given(gradient_cases())
def test_random_loss_and_gradients_cost_at_most_twice_jax(case):
    check_gradients(repr(case), case.loss, case.params, case.values, case.jax_loss, steer=True)


@settings(max_examples=20, deadline=None, phases=NO_SHRINK, suppress_health_check=SLOW_DRAWS, derandomize=True)
@given(hessian_cases())
def test_random_hessian_costs_at_most_twice_jax(case):
    check_hessian(repr(case), case.loss, case.params[0], case.values, case.jax_loss, steer=True)


@settings(max_examples=20, deadline=None, phases=NO_SHRINK, suppress_health_check=SLOW_DRAWS, derandomize=True)
@given(gradient_cases(depth=2), st.integers(0, 3))
def test_random_hessian_vector_products_cost_what_jvp_of_grad_costs(case, which):
    """Random losses over the whole pool, the Hessian of one parameter (a vector or a matrix)
    contracted with a random direction on its second edges."""
    x = case.params[which % len(case.params)]
    check_hvp(repr(case), case.loss, x, case.values, case.jax_loss, seed=which, steer=True)


@settings(max_examples=15, deadline=None, phases=NO_SHRINK, suppress_health_check=SLOW_DRAWS, derandomize=True)
@given(hessian_cases())
def test_random_vector_hessian_vector_products_cost_what_jvp_of_grad_costs(case):
    check_hvp(repr(case), case.loss, case.params[0], case.values, case.jax_loss, steer=True)


SWEEP = int(os.environ.get("TGJAX_COST_SWEEP", "0"))


@pytest.mark.slow
@pytest.mark.skipif(not SWEEP, reason="set TGJAX_COST_SWEEP=<examples> for the big random sweep")
@settings(max_examples=max(SWEEP, 1), deadline=None, phases=NO_SHRINK, suppress_health_check=SLOW_DRAWS)
@given(gradient_cases(depth=4), hessian_cases(depth=3), st.booleans())
def test_sweep_costs_at_most_twice_jax(case, hessian_case, both):
    check_gradients(repr(case), case.loss, case.params, case.values, case.jax_loss, steer=True)
    if both:
        h = hessian_case
        check_hessian(repr(h), h.loss, h.params[0], h.values, h.jax_loss, steer=True)


# -- named regression cases ------------------------------------------------------------

class Arrays:
    """Random arrays for one named case, from its own seed (so a case's values do not depend on which others ran)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape, scale=1.0, dtype=jnp.float32):
        return jnp.asarray(self.rng.standard_normal(shape) * scale, dtype)

    def one_hot(self, batch, classes):
        return jax.nn.one_hot(self.rng.integers(0, classes, batch), classes, dtype=jnp.float32)


def tanh_x_plus_exp_x():
    r = Arrays()
    n = tg.symbols("n")
    x = tg.Variable("x", i=n)
    return F.sum(F.tanh(x + F.exp(x))), [x], {"x": r.normal(1024)}, lambda e: jnp.sum(jnp.tanh(e["x"] + jnp.exp(e["x"])))


def tanh_centred_rows():
    r = Arrays()
    m, n = tg.symbols("m n")
    X = tg.Variable("X", j=m, i=n)

    def jax_loss(e):
        return jnp.sum(jnp.tanh(e["X"] - jnp.mean(e["X"], axis=1, keepdims=True)))

    return F.sum(F.tanh(X - F.mean(X, "i"))), [X], {"X": r.normal(128, 64)}, jax_loss


def layer_norm():
    r = Arrays()
    b, d, h = tg.symbols("b d h")
    X, W, g, beta = tg.Variable("X", b, d), tg.Variable("W", d, h), tg.Variable("g", h), tg.Variable("beta", h)
    z = X @ W
    c = z - F.mean(z, "h")
    normed = c / F.sqrt(F.mean(c * c, "h") + 1e-5)
    loss = F.sum(F.tanh(normed * g + beta))

    def jax_loss(e):
        z = e["X"] @ e["W"]
        c = z - jnp.mean(z, axis=1, keepdims=True)
        normed = c / jnp.sqrt(jnp.mean(c * c, axis=1, keepdims=True) + 1e-5)
        return jnp.sum(jnp.tanh(normed * e["g"] + e["beta"]))

    values = {"X": r.normal(64, 128), "W": r.normal(128, 64, scale=128**-0.5), "g": 1 + r.normal(64, scale=0.1), "beta": r.normal(64, scale=0.1)}
    return loss, [W, g, beta], values, jax_loss


def softmax_regression():
    r = Arrays()
    b, d, c = tg.symbols("b d c")
    X, W, T = tg.Variable("X", b, d), tg.Variable("W", d, c), tg.Variable("T", b, c)

    def jax_loss(e):
        return -jnp.sum(e["T"] * jax.nn.log_softmax(e["X"] @ e["W"], axis=1))

    values = {"X": r.normal(64, 256), "W": r.normal(256, 10, scale=256**-0.5), "T": r.one_hot(64, 10)}
    return F.sum(F.cross_entropy(X @ W, T, "c")), [W], values, jax_loss


def relu_mlp():
    r = Arrays()
    b, d, h, c = tg.symbols("b d h c")
    X, T = tg.Variable("X", b, d), tg.Variable("T", b, c)
    W1, b1, W2, b2 = tg.Variable("W1", d, h), tg.Variable("b1", h), tg.Variable("W2", h, c), tg.Variable("b2", c)
    loss = F.sum(F.cross_entropy(F.relu(X @ W1 + b1) @ W2 + b2, T, "c"))

    def jax_loss(e):
        logits = jax.nn.relu(e["X"] @ e["W1"] + e["b1"]) @ e["W2"] + e["b2"]
        return -jnp.sum(e["T"] * jax.nn.log_softmax(logits, axis=1))

    values = {"X": r.normal(32, 784), "T": r.one_hot(32, 10), "W1": r.normal(784, 256, scale=784**-0.5),
              "b1": r.normal(256, scale=0.1), "W2": r.normal(256, 10, scale=256**-0.5), "b2": r.normal(10, scale=0.1)}
    return loss, [W1, b1, W2, b2], values, jax_loss


def attention_head():
    r = Arrays()
    s, m, d, v = tg.symbols("s m d v")
    X = tg.Variable("X", s, m)
    Wq, Wk, Wv = tg.Variable("Wq", m, d), tg.Variable("Wk", m, d), tg.Variable("Wv", m, v)
    keys = X.rename(s="t")
    Q, K, V = X @ Wq, keys @ Wk, keys @ Wv  # edges (s, d), (t, d), (t, v)
    loss = F.sum(F.softmax((Q @ K) / 4, "t") @ V)  # sqrt(d) = 4

    def jax_loss(e):
        q, k, val = e["X"] @ e["Wq"], e["X"] @ e["Wk"], e["X"] @ e["Wv"]
        return jnp.sum(jax.nn.softmax(q @ k.T / 4, axis=1) @ val)

    values = {"X": r.normal(32, 32), "Wq": r.normal(32, 16, scale=32**-0.5), "Wk": r.normal(32, 16, scale=32**-0.5),
              "Wv": r.normal(32, 16, scale=32**-0.5)}
    return loss, [Wq, Wk, Wv], values, jax_loss


def cross_entropy_of_logsumexp_over_broadcast():
    """Found by the random sweep at 2.07x: every exponential computed twice (the
    forward logsumexp and its pullback's softmax), and a summed-out index
    costed as if multiplied through."""
    r = Arrays()
    b, c, d = tg.symbols("b c d")
    x, T = tg.Variable("x", d), tg.Variable("T", b, c)
    loss = F.sum(F.cross_entropy(F.exp(F.tanh(F.logsumexp(x + T, "d"))), T, "c"))

    def jax_loss(e):
        z = jnp.exp(jnp.tanh(jax.nn.logsumexp(e["x"][None, None, :] + e["T"][:, :, None], axis=2)))
        return -jnp.sum(e["T"] * jax.nn.log_softmax(z, axis=1))

    return loss, [x], {"x": r.normal(25), "T": r.normal(34, 64)}, jax_loss


REGRESSIONS = {
    "F.sum(F.tanh(x + F.exp(x))), x: 1024": tanh_x_plus_exp_x,
    'F.sum(F.tanh(X - F.mean(X, "i"))), X: 128x64': tanh_centred_rows,
    "layer norm: F.sum(F.tanh(LN(X @ W) * g + beta)), b=64, 128->64": layer_norm,
    'softmax regression: F.sum(F.cross_entropy(X @ W, T, "c")), b=64, 256->10': softmax_regression,
    "relu MLP 784-256-10 with biases, cross-entropy, b=32": relu_mlp,
    'attention head: F.sum(F.softmax(Q @ K^T / sqrt(d), "t") @ V), s=32, d=16, wrt Wq, Wk, Wv': attention_head,
    'F.sum(F.cross_entropy(F.exp(F.tanh(F.logsumexp(x + T, "d"))), T, "c")), b=34, c=64, d=25': cross_entropy_of_logsumexp_over_broadcast,
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression_case_costs_at_most_twice_jax(name):
    loss, params, values, jax_loss = REGRESSIONS[name]()
    check_gradients(name, loss, params, values, jax_loss)


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression_case_hessian_vector_product_costs_what_jvp_of_grad_costs(name):
    """``loss.grad(W).grad(W) @ v`` of each named model, for its first parameter."""
    loss, params, values, jax_loss = REGRESSIONS[name]()
    check_hvp(name, loss, params[0], values, jax_loss)


def test_layer_norm_gradient_computes_its_matrix_product_once():
    # The forward pass centres X W as X (W - rowsum(W)/h); its gradient needs
    # X (-h W + rowsum(W)), the same sum scaled: one matrix product serves both
    # (factor._scaled_out). Before, the program had three products to JAX's two.
    loss, params, values, jax_loss = layer_norm()
    names = [p.name for p in params]
    order = names + [n for n in values if n not in names]
    ours = tgjax_costs([loss, *(loss.grad(p) for p in params)], values, sizes_of(loss, values))
    theirs = jax_costs(lambda *a: jax_loss(dict(zip(order, a))), [values[n] for n in order], argnums=range(len(names)))
    assert ours.flops <= 1.15 * theirs.flops, (ours.describe(), theirs.describe())


def test_a_gelu_written_from_primitives_costs_what_backpropagation_does():
    # issue 30's defect 2: the cotangent of u = X W1 is a sum of three dense terms (one per
    # place u is read); each met X in a matrix product of its own (1.38x JAX's FLOPs). A sum
    # whose terms are all dense is now materialised before the product.
    b, d, f = tg.symbols("b d f")
    X, W1, W2 = tg.Variable("X", b, d), tg.Variable("W1", d, f), tg.Variable("W2", f, d)
    u = X @ W1
    gelu = 0.5 * u * (1 + F.tanh(0.7978845608 * (u + 0.044715 * u ** 3)))
    loss = F.sum((gelu @ W2) ** 2)
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((128, 64)).astype(np.float32),
              "W1": 0.1 * rng.standard_normal((64, 256)).astype(np.float32),
              "W2": 0.1 * rng.standard_normal((256, 64)).astype(np.float32)}

    def jax_loss(w1, w2, x):
        u = x @ w1
        return jnp.sum((0.5 * u * (1 + jnp.tanh(0.7978845608 * (u + 0.044715 * u ** 3))) @ w2) ** 2)

    ours = tgjax_costs([loss, *loss.grad([W1, W2])], values)
    theirs = jax_costs(jax_loss, [values["W1"], values["W2"], values["X"]], argnums=[0, 1])
    assert ours.flops <= 1.05 * theirs.flops, (ours.describe(), theirs.describe())


def test_a_convolution_after_pooling_matrices_pools_first():
    # issue 30's defect 1: x @ Ph @ Pw @ conv @ W folded the pooling matrices and the kernel
    # into one large effective kernel (24x the FLOPs of pooling first, 900x with the gradient)
    b, c, h1, w1, ph, pw, kh, kw, h2, w2, o = tg.symbols("b c h1 w1 ph pw kh kw h2 w2 o")
    x, Ph, Pw = tg.Variable("x", b, c, h1, w1), tg.Variable("Ph", h1, ph), tg.Variable("Pw", w1, pw)
    W = tg.Variable("W", o, c, kh, kw)
    y = x @ Ph @ Pw @ tg.Convolution(ph, kh, h2) @ tg.Convolution(pw, kw, w2) @ W
    loss = F.sum(y * y)
    rng = np.random.default_rng(0)
    pool = (0.5 * np.repeat(np.eye(12), 2, axis=0)).astype(np.float32)
    values = {"x": rng.standard_normal((16, 8, 24, 24)).astype(np.float32), "Ph": pool, "Pw": pool,
              "W": rng.standard_normal((16, 8, 3, 3)).astype(np.float32)}

    def jax_loss(w, x, ph, pw):
        pooled = jnp.einsum("bchw,hp,wq->bcpq", x, ph, pw)
        out = jax.lax.conv_general_dilated(pooled, w, (1, 1), "VALID")
        return jnp.sum(out * out)

    ours = tgjax_costs([loss, loss.grad(W)], values)
    theirs = jax_costs(jax_loss, [values["W"], values["x"], values["Ph"], values["Pw"]], argnums=[0])
    assert ours.flops <= 1.1 * theirs.flops, (ours.describe(), theirs.describe())


def test_exact_gelu_and_its_gradient_compute_the_normal_cdf_once():
    # gelu(u) = u Phi(u) and its derivative Phi(u) + u phi(u) share Phi(u), and
    # phi reads exp(-z^2) for the z that erfc reads: as many exponentials as
    # JAX's backpropagation through jax.nn.gelu (one more per entry before).
    b, h = tg.symbols("b h")
    X, W = tg.Variable("X", b, h), tg.Variable("W", h=h, g=h)
    loss = F.sum(F.gelu(X @ W))
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((16, 32)).astype(np.float32), "W": rng.standard_normal((32, 32)).astype(np.float32)}
    ours = tgjax_costs([loss, loss.grad(W)], values)
    theirs = jax_costs(lambda w, x: jnp.sum(jax.nn.gelu(x @ w, approximate=False)), [values["W"], values["X"]], argnums=[0])
    assert ours.transcendentals <= theirs.transcendentals, (ours.describe(), theirs.describe())
    assert ours.flops <= 1.05 * theirs.flops, (ours.describe(), theirs.describe())


def test_a_gelu_read_by_its_value_and_its_gradient_computes_its_erfc_once():
    # XLA expands erfc into some 60 elementwise operations and fused them into both
    # readers of Phi(u) (the forward product and the gradient): the program writes Phi
    # out instead (JAX's own program computes it twice here).
    b, i, h, o = tg.symbols("b i h o")
    X, W, V = tg.Variable("X", b, i), tg.Variable("W", i, h), tg.Variable("V", h, o)
    loss = F.sum(F.gelu(X @ W) @ V)
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((16, 32)).astype(np.float32), "W": rng.standard_normal((32, 64)).astype(np.float32),
              "V": rng.standard_normal((64, 8)).astype(np.float32)}
    ours = tgjax_costs([loss, loss.grad(W)], values)
    theirs = jax_costs(lambda w, x, v: jnp.sum(jax.nn.gelu(x @ w, approximate=False) @ v),
                       [values["W"], values["X"], values["V"]], argnums=[0])
    assert "materialized((0.5 * lax.erfc(" in ours.source
    assert ours.flops <= 0.75 * theirs.flops, (ours.describe(), theirs.describe())


def test_a_written_out_value_is_computed_by_one_kernel():
    # The conditional that writes a value out on CPU must not read the value for its
    # predicate: XLA then computed the value for the predicate too, and where the two
    # shared an expensive step (erfc's divisions) it wrote that step out on its own,
    # and the erfc's kernel, reading more arrays, was split across threads.
    from jax import lax

    from tgjax._lower.runtime import materialized

    def program(x, g):
        u = x * 3.0
        cdf = materialized(0.5 * lax.erfc(u * -0.7071067811865476))
        return u * cdf, jnp.sum(g * (cdf + u * jnp.exp(-lax.square(u * -0.7071067811865476))))

    ones = np.ones((16, 64), np.float32)
    text = jax.jit(program).lower(ones, ones).compile().as_text()
    assert sum("divide(" in c for c in text.split("\n\n")) == 1, text
    assert "outer_dimension_partitions\":[\"2" not in text, text


def _matmul_flops(jitted, args) -> float:
    """The FLOPs of the dot_generals of a program's jaxpr (2 per multiply-add), sub-jaxprs included."""
    def walk(jaxpr):
        total = 0.0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (contracted, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[k] for k in contracted)
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else [value]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += walk(inner)
        return total

    return walk(jax.make_jaxpr(jitted)(*args).jaxpr)


def test_a_gpt_stack_backpropagates_each_attention_once():
    # Keys and values read the block's layer norm renamed (s -> t); the reverse
    # sweep took the renamed copy of the attention output (its functions seen
    # through views) for another node and backpropagated it twice: the 2-block
    # stack had 1.16x JAX's FLOPs, its matrix products 1.08x JAX's. Now JAX's.
    s_, d_, h_, e_, f_ = tg.symbols("s d h e f")
    S, D, H, E, Fh, blocks = 8, 16, 2, 8, 32, 2
    X, Y = tg.Variable("X", s=s_, d=d_), tg.Variable("Y", s=s_, d=d_)
    mask = tg.causal_mask(s_, "s", "t")
    x, params = X, []
    for k in range(blocks):
        Wq, Wk, Wv = (tg.Variable(f"{w}{k}", d_, h_, e_) for w in ("Wq", "Wk", "Wv"))
        Wo, W1, W2 = tg.Variable(f"Wo{k}", h_, e_, d_), tg.Variable(f"W1{k}", d_, f_), tg.Variable(f"W2{k}", f_, d_)
        params += [Wq, Wk, Wv, Wo, W1, W2]
        a = F.layer_norm(x, "d")
        Q, K, V = a @ Wq, a.rename(s="t") @ Wk, a.rename(s="t") @ Wv
        att = F.softmax(F.where(mask, F.dot(Q, K, "e") / math.sqrt(E), -1e9), "t")
        x = x + F.dot(att, V, "t") @ Wo
        x = x + F.gelu(F.layer_norm(x, "d") @ W1) @ W2
    loss = F.mean((F.layer_norm(x, "d") - Y) ** 2)
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((S, D)).astype(np.float32), "Y": rng.standard_normal((S, D)).astype(np.float32)}
    for k in range(blocks):
        values |= {f"{w}{k}": (rng.standard_normal((D, H, E)) / 4).astype(np.float32) for w in ("Wq", "Wk", "Wv")}
        values |= {f"Wo{k}": (rng.standard_normal((H, E, D)) / 4).astype(np.float32),
                   f"W1{k}": (rng.standard_normal((D, Fh)) / 4).astype(np.float32),
                   f"W2{k}": (rng.standard_normal((Fh, D)) / 6).astype(np.float32)}
    causal = np.tril(np.ones((S, S), bool))

    def ln(v):
        c = v - v.mean(-1, keepdims=True)
        return c * (jnp.mean(c**2, -1, keepdims=True) + 1e-5) ** -0.5

    names = [p.name for p in params]

    def jax_loss(*weights):
        p, v = dict(zip(names, weights)), values["X"]
        for k in range(blocks):
            a = ln(v)
            q, kk, vv = (jnp.einsum("sd,dhe->she", a, p[f"{w}{k}"]) for w in ("Wq", "Wk", "Wv"))
            scores = jnp.where(causal[:, None, :], jnp.einsum("she,the->sht", q, kk) / math.sqrt(E), -1e9)
            v = v + jnp.einsum("sht,the,hed->sd", jax.nn.softmax(scores, axis=-1), vv, p[f"Wo{k}"])
            v = v + jax.nn.gelu(ln(v) @ p[f"W1{k}"], approximate=False) @ p[f"W2{k}"]
        return jnp.mean((ln(v) - values["Y"]) ** 2)

    fn = tg.lower([loss, *loss.grad(params)])
    arrays, env = fn._bind(values, {})
    _, inputs, jitted = fn._program(env)
    by_name = dict(zip(fn.variables, arrays))
    ours = _matmul_flops(jitted, [by_name[n] for n in inputs])
    weights = [values[n] for n in names]
    theirs = _matmul_flops(jax.jit(jax.value_and_grad(jax_loss, argnums=tuple(range(len(names))))), weights)
    assert ours <= 1.02 * theirs, (ours, theirs)
    want = jax.value_and_grad(jax_loss, argnums=tuple(range(len(names))))(*weights)
    got = fn(values)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4)
    for g, w in zip(got[1:], want[1]):
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-4)


def test_a_post_layer_norm_stack_is_not_recomputed_along_its_residual_stream():
    # Centre, scale, add the next block's output: each block's activations end a
    # chain of elementwise statements that XLA:CPU fused into every reader,
    # recomputing the stream from the first block (JAX's program too). The
    # program writes out the end of each long chain that several statements read.
    s_, d_, f_ = tg.symbols("s d f")
    S, D, Fh, blocks = 8, 16, 32, 6
    X, Y = tg.Variable("X", s=s_, d=d_), tg.Variable("Y", s=s_, d=d_)
    x, params = X, []
    for k in range(blocks):
        Wq, Wk, Wv, Wo = (tg.Variable(f"{w}{k}", d=d_, e=d_) for w in ("Wq", "Wk", "Wv", "Wo"))
        W1, W2 = tg.Variable(f"W1{k}", d_, f_), tg.Variable(f"W2{k}", f_, d_)
        params += [Wq, Wk, Wv, Wo, W1, W2]
        Q, K, V = x @ Wq, x.rename(s="t") @ Wk, x.rename(s="t") @ Wv
        x = F.layer_norm(x + (F.softmax(Q @ K / 4.0, "t") @ V) @ Wo.rename(e="d", d="e"), "d")
        x = F.layer_norm(x + F.tanh(x @ W1) @ W2, "d")
    loss = F.mean((x - Y) ** 2)
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((S, D)).astype(np.float32), "Y": rng.standard_normal((S, D)).astype(np.float32)}
    for k in range(blocks):
        values |= {f"{w}{k}": (rng.standard_normal((D, D)) / 4).astype(np.float32) for w in ("Wq", "Wk", "Wv", "Wo")}
        values |= {f"W1{k}": (rng.standard_normal((D, Fh)) / 4).astype(np.float32),
                   f"W2{k}": (rng.standard_normal((Fh, D)) / 6).astype(np.float32)}

    def ln(v):
        c = v - v.mean(-1, keepdims=True)
        return c * (jnp.mean(c**2, -1, keepdims=True) + 1e-5) ** -0.5

    def jax_loss(env):
        v = env["X"]
        for k in range(blocks):
            q, kk, vv = (v @ env[f"{w}{k}"] for w in ("Wq", "Wk", "Wv"))
            v = ln(v + (jax.nn.softmax(q @ kk.T / 4.0, axis=-1) @ vv) @ env[f"Wo{k}"])
            v = ln(v + jnp.tanh(v @ env[f"W1{k}"]) @ env[f"W2{k}"])
        return jnp.mean((v - env["Y"]) ** 2)

    names = [p.name for p in params]
    order = names + ["X", "Y"]
    ours = tgjax_costs([loss, *loss.grad(params)], values, sizes_of(loss, values))
    theirs = jax_costs(lambda *a: jax_loss(dict(zip(order, a))), [values[n] for n in order], argnums=range(len(names)))
    assert "materialized(" in ours.source
    assert ours.flops <= 0.9 * theirs.flops, (ours.describe(), theirs.describe())
    for got, want in zip(ours.outputs, theirs.outputs):
        np.testing.assert_allclose(got, want, rtol=3e-3, atol=3e-4)


def hessian_tanh_x_plus_exp_x():
    r = Arrays()
    x = tg.Variable("x", i=tg.symbols("n"))
    return F.sum(F.tanh(x + F.exp(x))), x, {"x": r.normal(64, dtype=jnp.float64)}, lambda e: jnp.sum(jnp.tanh(e["x"] + jnp.exp(e["x"])))


def hessian_softmax_of_log_softmax():
    # found by test_sweep_costs_at_most_twice_jax: the rank-one product softmax (x) softmax
    # is built as a matrix and multiplied by another, O(n^3) where JAX is O(n^2). The plan
    # depends on the edge's name: with edge "i" it was 1.26x, with "d" 2.4x.
    x = tg.Variable("x", d=tg.symbols("d"))
    values = {"x": Arrays(1).normal(29, dtype=jnp.float64)}
    return F.sum(F.softmax(F.log_softmax(x, "d"), "d")), x, values, lambda e: jnp.sum(jax.nn.softmax(jax.nn.log_softmax(e["x"])))


def hessian_layer_norm():
    # found by test_random_hessian_costs_at_most_twice_jax: an (n, n, n) product in the Hessian
    x = tg.Variable("x", d=tg.symbols("d"))
    p = F.pow(F.exp(x), -0.5)
    c = p - F.mean(p, "d")
    loss = F.sum(c / F.sqrt(F.mean(c * c, "d") + 1e-5))

    def jax_loss(e):
        p = jnp.exp(e["x"]) ** -0.5
        c = p - jnp.mean(p)
        return jnp.sum(c / jnp.sqrt(jnp.mean(c * c) + 1e-5))

    return loss, x, {"x": Arrays(3).normal(64, dtype=jnp.float64)}, jax_loss


HESSIAN_REGRESSIONS = {
    "Hessian of F.sum(F.tanh(x + F.exp(x))), x: 64": hessian_tanh_x_plus_exp_x,
    'Hessian of F.sum(F.softmax(F.log_softmax(x, "d"), "d")), x: 29': hessian_softmax_of_log_softmax,
    'Hessian of a layer norm: F.sum(layernorm(F.pow(F.exp(x), -0.5), "d")), x: 64': hessian_layer_norm,
}


@pytest.mark.parametrize("name", list(HESSIAN_REGRESSIONS))
def test_regression_hessian_costs_at_most_twice_jax(name):
    loss, x, values, jax_loss = HESSIAN_REGRESSIONS[name]()
    check_hessian(name, loss, x, values, jax_loss)


# -- the harness itself ------------------------------------------------------------------


def test_harness_counts_intermediates_not_inputs():
    from costs import flops, largest_intermediate

    a = jnp.ones((100, 3), jnp.float32)
    assert largest_intermediate(lambda a: jnp.sum(a), a) == 1
    assert largest_intermediate(lambda a: jnp.sum(a[:, :, None] * a[:, None, :]), a) == 900
    # inside jit and custom_jvp (jax.nn.relu) and cond branches
    f = jax.jit(lambda a: jax.lax.cond(a[0, 0] > 0, lambda a: jnp.outer(a[:, 0], a[:, 0]), lambda a: a[:, :1] * a[:, 1], a))
    assert largest_intermediate(f, a) == 10000
    assert largest_intermediate(lambda a: jax.nn.relu(a).sum(), a) == 300
    m = jnp.ones((8, 8), jnp.float32)
    assert 2 * 8**3 <= flops(jax.jit(lambda m: m @ m), m) <= 3 * 8**3


def test_compare_names_the_case_and_fails_above_the_bound():
    one = (jnp.ones(3),)
    cheap = Costs(100.0, 0.0, 10, "exp [10]", one)
    saved = dict(WORST)
    try:
        compare("cheap", cheap, cheap, ["loss"], np.float32, "jax")
        with pytest.raises(AssertionError, match=r"(?s)my case.*FLOPs ratio 2\.01x"):
            compare("my case", Costs(201.0, 0.0, 10, "exp [10]", one), cheap, ["loss"], np.float32, "jax")
        with pytest.raises(AssertionError, match="largest-intermediate ratio 3x"):
            compare("my case", Costs(100.0, 0.0, 30, "exp [30]", one), cheap, ["loss"], np.float32, "jax")
        with pytest.raises(AssertionError, match="loss differs"):
            compare("my case", Costs(100.0, 0.0, 10, "exp [10]", (2 * jnp.ones(3),)), cheap, ["loss"], np.float32, "jax")
    finally:
        WORST.clear()
        WORST.update(saved)


# -- the worst case found ----------------------------------------------------------------


def test_worst_case_found_is_within_bound():
    """Names the worst ratios that the tests above met (run the whole file); fails above a bound."""
    if not WORST:
        pytest.skip("no cost test of this module ran before this one")
    report = "\n".join(f"worst {m} ratio {r:.3g}x (bound {bound}x):\n{d}" for m, (r, d, bound) in WORST.items())
    print(report)
    assert all(r <= bound for r, _, bound in WORST.values()), report


def test_layer_norm_log_softmax_float32_accuracy():
    # Found by the random cost tests: the float32 gradient was further from the float64
    # value (4e-4) than twice JAX's float32 error. Layer norm over h removes w, so the
    # log-softmax is along an edge (b) its input is broadcast along: now that a function
    # of a broadcast is the broadcast function, the loss simplifies to -b d h log(b) and
    # its gradient to exactly zero.
    d, h, b = tg.symbols("d h b")
    W, w = tg.Variable("W", d=d, h=h), tg.Variable("w", b=b)
    u = W + w
    centred = u - F.mean(u, "h")
    loss = F.sum(F.sum(F.log_softmax(centred / F.sqrt(F.mean(centred * centred, "h") + 1e-5), "b"), "h"))
    assert loss.grad(W).simplify() == tg.Zero({"d": d, "h": h})

    def jax_loss(env):
        a = env["W"][:, None, :] + env["w"][None, :, None]
        c = a - a.mean(-1, keepdims=True)
        return jnp.sum(jax.nn.log_softmax(c / jnp.sqrt((c * c).mean(-1, keepdims=True) + 1e-5), axis=1))

    values = make_values(["W", "w"], {"d": 34, "h": 63, "b": 46}, np.float32, 0)
    check_gradients("layer norm, log_softmax along b", loss, (W,), values, jax_loss)


# Found by the 2,000-case sweep (session 15): layer norm over c of (K + y) @ V removes the K
# part, so K's terms of d/dV cancel. The program chosen then (derivatives from the normal form)
# computed them apart and subtracted, 0.016 from the float64 value where JAX's float32 error
# is 1e-4. The normal form now cancels them (distribute_where_terms_merge, two products at a
# time), so the loss's normal form no longer mentions K.
def test_layer_norm_of_a_broadcast_sum_float32_accuracy():
    K, y, V = VARIABLES["K"], VARIABLES["y"], VARIABLES["V"]
    u = (K + y) @ V
    centred = u - F.mean(u, "c")
    loss = F.sum(F.mean(F.exp(F.tanh(centred / F.sqrt(F.mean(centred * centred, "c") + 1e-5))), "c"))

    def jax_loss(env):
        a = (env["K"] @ env["V"])[:, None, :] + env["y"][None, :, None] * env["V"].sum(0)[None, None, :]
        c = a - a.mean(1, keepdims=True)
        return jnp.sum(jnp.mean(jnp.exp(jnp.tanh(c / jnp.sqrt((c * c).mean(1, keepdims=True) + 1e-5))), 1))

    values = make_values(["K", "V", "y"], {"d": 17, "k": 47, "h": 49, "c": 16}, np.float32, 0)
    check_gradients("layer norm over c of (K + y) @ V", loss, (K, V, y), values, jax_loss)
