"""tgjax's lowered symbolic Hessian against jax.jit(jax.hessian(f)), float32 on one device.

Run: python benchmarks/hessians.py [--quick]
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import tgjax as tg
import tgjax.functions as F
from harness import Table, max_rel_error, paired_times

rng = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def lowered_hessian(expr, x, values, jax_f):
    """The Hessian of scalar ``expr`` wrt Variable ``x`` both ways: (tgjax's lowered function,
    its symbolic work plus first call in seconds, the jitted ``jax.hessian`` of ``jax_f``, a
    function of ``x``'s array and the other values by keyword)."""
    start = time.perf_counter()
    # The Hessian may not mention every input (ridge: only X), so fix the sizes from f's inputs.
    sizes = {size: dim for v in expr.variables() for (_, size), dim in zip(v.decl, values[v.name].shape)}
    fn = tg.lower(expr.grad(x).grad(x), sizes=sizes)
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start
    others = {k: v for k, v in values.items() if k != x.name}
    return fn, compile_s, jax.jit(jax.hessian(lambda a: jax_f(a, **others)))


def case(table, name, expr, x, values, jax_f):
    """Time the Hessian of scalar ``expr`` wrt Variable ``x`` both ways."""
    fn, compile_s, hess = lowered_hessian(expr, x, values, jax_f)
    ours, theirs = fn(values), hess(values[x.name])
    table.add(name, *paired_times(lambda: hess(values[x.name]), lambda: fn(values)), compile_s, max_rel_error(ours, theirs))


def main(quick: bool = False):
    s = 4 if quick else 1
    table = Table("Hessians: tgjax vs jax.jit(jax.hessian)", "jax")
    table.header()
    n, m, d, h, b, c = tg.symbols("n m d h b c")

    # x^T A x: the Hessian A + A^T does not depend on x at all.
    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    N = 1024 // s
    case(table, f"x^T A x (n={N})", x @ A @ x.rename(i="j"), x,
         {"x": normal(N), "A": normal(N, N)}, lambda x, A: x @ A @ x)

    # logsumexp: diag(p) - p p^T.
    x = tg.Variable("x", i=n)
    case(table, f"logsumexp (n={N})", F.log(F.sum(F.exp(x))), x,
         {"x": normal(N)}, lambda x: jax.scipy.special.logsumexp(x))

    # A tanh MLP's Hessian with respect to its input.
    x, W1, W2 = tg.Variable("x", i=d), tg.Variable("W1", i=d, j=h), tg.Variable("W2", j=h, k=m)
    D, H_, M = 256 // s, 512 // s, 16
    case(table, f"tanh MLP wrt input (d={D}, h={H_})", F.sum(F.tanh(F.tanh(x @ W1) @ W2)), x,
         {"x": normal(D), "W1": normal(D, H_, scale=D**-0.5), "W2": normal(H_, M, scale=H_**-0.5)},
         lambda x, W1, W2: jnp.sum(jnp.tanh(jnp.tanh(x @ W1) @ W2)))

    # Least squares: 2 X^T X, independent of w.
    X, w, y = tg.Variable("X", b=b, i=d), tg.Variable("w", i=d), tg.Variable("y", b=b)
    B, D = 2048 // s, 256 // s
    case(table, f"least squares wrt w (b={B}, d={D})", F.sum((X @ w - y) ** 2), w,
         {"X": normal(B, D), "w": normal(D), "y": normal(B)},
         lambda w, X, y: jnp.sum((X @ w - y) ** 2))

    # Logistic regression: X^T diag(p (1 - p)) X.
    case(table, f"logistic regression wrt w (b={B}, d={D})",
         F.sum(F.softplus(X @ w) - y * (X @ w)), w,
         {"X": normal(B, D), "w": normal(D, scale=0.1), "y": jnp.asarray(rng.integers(0, 2, B), jnp.float32)},
         lambda w, X, y: jnp.sum(jax.nn.softplus(X @ w) - y * (X @ w)))

    # Ridge-regularised least squares in a matrix variable: Hessian 2 X^T X (x) I + 2 lam I (x) I.
    W, Y = tg.Variable("W", i=d, k=c), tg.Variable("Y", b=b, k=c)
    B, D, C = 512 // s, 64 // s, 8
    case(table, f"ridge regression wrt W (d={D}, c={C})", F.sum((X @ W - Y) ** 2) + 0.1 * F.sum(W ** 2), W,
         {"X": normal(B, D), "W": normal(D, C), "Y": normal(B, C)},
         lambda W, X, Y: jnp.sum((X @ W - Y) ** 2) + 0.1 * jnp.sum(W ** 2))

    # Cubic: sum (x^T A x)^... elementwise: sum_i x_i^4 + x^T A x; Hessian diag(12 x^2) + A + A^T.
    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    N = 1024 // s
    case(table, f"quartic + quadratic (n={N})", F.sum(x ** 4) + x @ A @ x.rename(i="j"), x,
         {"x": normal(N), "A": normal(N, N)}, lambda x, A: jnp.sum(x**4) + x @ A @ x)

    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
