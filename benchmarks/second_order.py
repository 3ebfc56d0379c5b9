"""Second order: Newton steps and Hessian-vector products, tgjax against the JAX a user writes,
float32 on one device, in one process.

Three tables:

1. The Newton row: loss, gradient and Hessian of L2-regularised logistic
   regression (batch 2048, d 256) from one ``tg.lower([loss, g, H])``, against
   ``jax.jit`` of ``jax.value_and_grad`` plus ``jax.hessian``.
2. ``H @ v`` for each model of ``benchmarks/gradients.py`` (the same code,
   the same arrays), in its first parameter, written as a user writes it,
   ``loss.grad(W).grad(W, second) @ V``, against ``jax.jvp(jax.grad(f))``.
3. One Newton-CG step of a tanh MLP 784-1024-10 (802,816 weights in W1; 10 CG
   iterations in lineax, each one ``mv``) through ``tg.linear_operator``,
   against ``jax.jvp(jax.grad)`` in the same lineax CG (``examples/newton.py``).

Columns as in gradients.py: times, ``tg/jax`` (tgjax time / JAX time) and
``flops tg/jax`` (XLA cost-analysis FLOPs of the compiled programs).

Run: python benchmarks/second_order.py [--quick]
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", False)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradients  # noqa: E402
import tgjax as tg  # noqa: E402
from harness import CaseTimeout, Table, flops, max_rel_error, paired_times, time_limit  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "examples"))
import newton  # noqa: E402

rng = np.random.default_rng(0)
LIMIT_S = 60.0


def _compiled_flops(fn, values):
    """FLOPs of tgjax's program for ``values`` (the jitted program itself, as gradients.py measures it)."""
    arrays, env = fn._bind(values, {})
    source, inputs, jitted = fn._program(env)
    by_name = dict(zip(fn.variables, arrays))
    return flops(jitted.lower(*[by_name[n] for n in inputs]).compile())


def newton_row(table, batch=2048, d=256):
    loss, w, jax_loss, values = newton.logistic_regression(batch, d)
    start = time.perf_counter()
    grad = loss.grad(w)
    fn = tg.lower([loss, grad, grad.grad(w, {"k": "k2"})])
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    @jax.jit
    def jax_all(w, A, y):
        value, g = jax.value_and_grad(jax_loss)(w, A, y)
        return value, g, jax.hessian(jax_loss)(w, A, y)

    args = (values["w"], values["A"], values["y"])
    ratio = _compiled_flops(fn, values) / flops(jax_all.lower(*args).compile())
    err = max_rel_error(fn(values), jax_all(*args))
    table.add(f"loss+grad+Hessian, logistic regression b={batch} d={d}",
              *paired_times(lambda: jax_all(*args), lambda: fn(values)), compile_s, err, ratio)


def _models(s):
    """(name, loss, params, values, jax_loss) of each gradients.py model, built by its own code."""
    found = []
    original = gradients.case
    gradients.case = lambda table, name, loss, params, values, jax_loss, limit_s=None: found.append(
        (name, loss, params, values, jax_loss))
    try:
        for make in gradients.CASES:
            make(None, s)
    finally:
        gradients.case = original
    return found


def hvp_row(table, name, loss, params, values, jax_loss):
    x = params[0]
    second = {e: f"{e}_2" for e, _ in x.decl}
    V = tg.Variable("V", **{second[e]: size for e, size in x.decl})
    direction = jnp.asarray(rng.standard_normal(values[x.name].shape), jnp.float32)
    start = time.perf_counter()
    with time_limit(LIMIT_S):
        fn = tg.lower(loss.grad(x).grad(x, second) @ V)
        all_values = {**values, "V": direction}
        jax.block_until_ready(fn(all_values))
    compile_s = time.perf_counter() - start
    names = [p.name for p in params]
    p_vals = {k: values[k] for k in names}
    data = {k: v for k, v in values.items() if k not in names}

    @jax.jit
    def jax_hvp(p_vals, data, v):
        grad = jax.grad(lambda w: jax_loss({**p_vals, x.name: w}, data))
        return jax.jvp(grad, (p_vals[x.name],), (v,))[1]

    ratio = _compiled_flops(fn, all_values) / flops(jax_hvp.lower(p_vals, data, direction).compile())
    err = max_rel_error(fn(all_values), jax_hvp(p_vals, data, direction))
    table.add(f"H v in {x.name}: {name}"[:table.width], *paired_times(lambda: jax_hvp(p_vals, data, direction),
                                                                       lambda: fn(all_values)), compile_s, err, ratio)


def main(quick: bool = False):
    s = 4 if quick else 1
    newton_table = Table("Newton step: tgjax vs jax.value_and_grad + jax.hessian", "jax", flops=True, width=58)
    newton_table.header()
    newton_row(newton_table, *((512, 64) if quick else ()))
    newton_table.summary()
    print()
    hvp = Table("Hessian-vector products written H @ v: tgjax vs jax.jvp(jax.grad)", "jax", flops=True, width=58)
    hvp.header()
    for name, loss, params, values, jax_loss in _models(s):
        try:
            hvp_row(hvp, name, loss, params, values, jax_loss)
        except (Exception, CaseTimeout) as error:  # noqa: BLE001  (one failing case must not stop the table)
            hvp.error(name[:58], f"{type(error).__name__}: {error}")
    hvp.summary()
    print()
    print("# Newton-CG (examples/newton.py), ratio tgjax / JAX of the whole step")
    if quick:
        newton.mlp_newton_cg(batch=32, inputs=196, hidden=256)
    else:
        newton.mlp_newton_cg()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
