"""Newton steps with tgjax's curvature, against the JAX a user would write.

1. A damped Newton step for L2-regularised logistic regression (batch 2048,
   d 256): the loss, its gradient and its Hessian from one lowered program,
   then a dense solve. JAX: ``jax.value_and_grad`` and ``jax.hessian``, the
   same solve.
2. Newton-CG on a tanh MLP 784-1024-10 with cross-entropy, in the 802,816
   weights of its first layer, whose dense Hessian (2.6 TB in float32) cannot
   be formed: ``tg.linear_operator`` hands ``H`` to lineax's CG, each
   iteration one Hessian-vector product. JAX: ``jax.jvp(jax.grad(f))`` as a
   ``lineax.FunctionLinearOperator`` in the same CG.

Both sides run on the same arrays in one process; the script prints the
steps' agreement and the ratio of median step times (tgjax / JAX).

Run: python examples/newton.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

import tgjax as tg
import tgjax.functions as F

DAMPING = 1e-2
CG_STEPS = 10
CG_DAMPING = 1.0
CG_SCALE = 1e3


def median_seconds(fn, repeats=15):
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def logistic_regression(batch, d, damping=DAMPING):
    """The L2-regularised logistic loss both ways: (loss, w, its jax.numpy twin, arrays)."""
    n, k = tg.symbols("n k")
    A, y, w = tg.Variable("A", n=n, k=k), tg.Variable("y", n=n), tg.Variable("w", k=k)
    z = A @ w
    loss = F.sum(F.log(1 + F.exp(z)) - y * z) / batch + 0.5 * damping * F.sum(w * w)

    def jax_loss(w, A, y):
        z = A @ w
        return jnp.sum(jnp.logaddexp(0.0, z) - y * z) / batch + 0.5 * damping * jnp.sum(w * w)

    rng = np.random.default_rng(0)
    values = {"A": jnp.asarray(rng.standard_normal((batch, d)), jnp.float32),
              "y": jnp.asarray(rng.integers(0, 2, batch), jnp.float32),
              "w": jnp.asarray(rng.standard_normal(d) * 0.01, jnp.float32)}
    return loss, w, jax_loss, values


def logistic_regression_newton(batch=2048, d=256):
    loss, w, jax_loss, values = logistic_regression(batch, d)
    grad = loss.grad(w)
    hessian = grad.grad(w, {"k": "k2"})
    print("Hessian of the logistic loss, simplified:", hessian.simplify())
    program = tg.lower([loss, grad, hessian])

    @jax.jit
    def tg_step(values):
        value, g, h = program(values)
        return value, values["w"] - jnp.linalg.solve(h, g)

    @jax.jit
    def jax_step(w, A, y):
        value, g = jax.value_and_grad(jax_loss)(w, A, y)
        h = jax.hessian(jax_loss)(w, A, y)
        return value, w - jnp.linalg.solve(h, g)

    ours, theirs = tg_step(values), jax_step(values["w"], values["A"], values["y"])
    error = float(jnp.max(jnp.abs(ours[1] - theirs[1])) / jnp.max(jnp.abs(theirs[1])))
    ratio = median_seconds(lambda: tg_step(values)) / median_seconds(lambda: jax_step(values["w"], values["A"], values["y"]))
    print(f"damped Newton step, logistic regression b={batch} d={d}: new w agrees to {error:.1e} (relative); "
          f"step time tgjax / JAX = {ratio:.2f}")
    assert error < 1e-4, f"the Newton steps differ by {error:.2e}"


def mlp_newton_cg(batch=256, inputs=784, hidden=1024, classes=10):
    b, i, h, c = tg.symbols("b i h c")
    X, T = tg.Variable("X", b, i), tg.Variable("T", b, c)
    W1, W2 = tg.Variable("W1", i, h), tg.Variable("W2", h, c)
    loss = F.sum(F.cross_entropy(F.tanh(X @ W1) @ W2, T, "c"))
    grad = loss.grad(W1)
    # The Hessian in W1 as an operator on arrays shaped like W1 (its second edges i2, h2).
    curvature = tg.linear_operator(grad.grad(W1, {"i": "i2", "h": "h2"}), ["i2", "h2"])
    gradient = tg.lower(grad)
    print(f"Newton-CG on W1 ({inputs * hidden:,} parameters; the dense Hessian would take "
          f"{(inputs * hidden) ** 2 * 4 / 1e12:.1f} TB); symmetric proven: {curvature.symmetric}")

    solver = lx.CG(rtol=1e-30, atol=1e-30, max_steps=CG_STEPS)  # exactly CG_STEPS iterations

    def newton_cg(operator, g, w1):
        # lineax's CG gives up on a step (NaN) where p^T A p < 100 eps size |r|^2, an absolute
        # test that float32 fails at 802,816 unknowns: the system is solved scaled by CG_SCALE.
        scale, damping = (jnp.asarray(a, g.dtype) for a in (CG_SCALE, CG_DAMPING))  # keep g's precision
        damped = scale * (operator + damping * lx.IdentityLinearOperator(operator.in_structure()))
        damped = lx.TaggedLinearOperator(damped, (lx.symmetric_tag, lx.positive_semidefinite_tag))
        return w1 - lx.linear_solve(damped, CG_SCALE * g, solver, throw=False).value

    @jax.jit
    def tg_step(values):
        return newton_cg(curvature(values), gradient(values), values["W1"])

    def jax_loss(w1, data):
        logits = jnp.tanh(data["X"] @ w1) @ data["W2"]
        return -jnp.sum(data["T"] * jax.nn.log_softmax(logits, axis=1))

    @jax.jit
    def jax_step(w1, data):
        g = jax.grad(jax_loss)(w1, data)
        hvp = lambda v: jax.jvp(lambda w: jax.grad(jax_loss)(w, data), (w1,), (v,))[1]  # noqa: E731
        operator = lx.FunctionLinearOperator(hvp, jax.ShapeDtypeStruct(w1.shape, w1.dtype), lx.symmetric_tag)
        return newton_cg(operator, g, w1)

    rng = np.random.default_rng(1)
    values = {"X": jnp.asarray(rng.standard_normal((batch, inputs)), jnp.float32),
              "T": jax.nn.one_hot(rng.integers(0, classes, batch), classes, dtype=jnp.float32),
              "W1": jnp.asarray(rng.standard_normal((inputs, hidden)) * inputs**-0.5, jnp.float32),
              "W2": jnp.asarray(rng.standard_normal((hidden, classes)) * hidden**-0.5, jnp.float32)}
    data = {k: v for k, v in values.items() if k != "W1"}
    ours, theirs = tg_step(values), jax_step(values["W1"], data)
    error = float(jnp.max(jnp.abs(ours - theirs)) / jnp.max(jnp.abs(theirs - values["W1"])))
    ratio = median_seconds(lambda: tg_step(values), 7) / median_seconds(lambda: jax_step(values["W1"], data), 7)
    print(f"one Newton-CG step ({CG_STEPS} CG iterations), MLP {inputs}-{hidden}-{classes}, b={batch}: "
          f"steps agree to {error:.1e} (relative to the update); step time tgjax / JAX = {ratio:.2f}")
    assert error < 1e-3, f"the Newton-CG steps differ by {error:.2e}"


if __name__ == "__main__":
    if "--quick" in sys.argv:  # the test suite's run: small sizes
        logistic_regression_newton(batch=256, d=32)
        mlp_newton_cg(batch=32, inputs=64, hidden=32)
    else:
        logistic_regression_newton()
        mlp_newton_cg()
