"""tgjax quickstart: a symbolic gradient and Hessian, simplified, compiled, checked and timed.

Run: python examples/quickstart.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import tgjax as tg
import tgjax.functions as F

# 1. A loss, written with named edges: ridge-regularised logistic regression
#    on a batch of b examples with d features.
b, d = tg.symbols("b d")
X = tg.Variable("X", b, d)
y = tg.Variable("y", b)
w = tg.Variable("w", d)
z = X @ w                                   # edges: (b,)
loss = F.mean(F.softplus(z) - y * z) + 0.01 * F.sum(w**2)

# 2. Symbolic derivatives, simplified to a normal form.
grad = loss.grad(w).simplify()              # edges: (d,)
hess = loss.grad(w).grad(w).simplify()      # edges: (d, d_)
print("loss     =", loss.simplify())
print("gradient =", grad, "   edges", grad.edges)
print("Hessian  =", hess, "   edges", hess.edges)
print("  i.e. X^T diag(sigmoid(z) (1 - sigmoid(z))) X / b + 0.02 I; it does not depend on y:", not hess.depends_on(y))

# 3. One jitted JAX function computing all three, sharing the forward pass.
print("\ngenerated JAX source:\n")
print(tg.to_source([loss, grad, hess]))
fn = tg.lower([loss, grad, hess])

rng = np.random.default_rng(0)
B, D = 4096, 256
values = {
    "X": jnp.asarray(rng.standard_normal((B, D)), jnp.float32),
    "y": jnp.asarray(rng.integers(0, 2, B), jnp.float32),
    "w": jnp.asarray(rng.standard_normal(D) * 0.1, jnp.float32),
}
L, g, H = fn(values)


# 4. The same loss in plain JAX, differentiated by autodiff.
def jax_loss(w, X, y):
    z = X @ w
    return jnp.mean(jax.nn.softplus(z) - y * z) + 0.01 * jnp.sum(w**2)


jax_grad = jax.jit(jax.grad(jax_loss))
jax_hess = jax.jit(jax.hessian(jax_loss))
ref_g = jax_grad(values["w"], values["X"], values["y"])
ref_H = jax_hess(values["w"], values["X"], values["y"])


def rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


print(f"max relative error vs jax.grad:    {rel(g, ref_g):.1e}")
print(f"max relative error vs jax.hessian: {rel(H, ref_H):.1e}")
assert rel(g, ref_g) < 1e-4 and rel(H, ref_H) < 1e-4, "tgjax disagrees with JAX autodiff"


# 5. Timing: medians after warm-up, same arrays for both.
def median_ms(f, *args, repeats=50, **kwargs):
    for _ in range(3):
        jax.block_until_ready(f(*args, **kwargs))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args, **kwargs))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


hess_only = tg.lower(hess)
t_jax = median_ms(jax_hess, values["w"], values["X"], values["y"])
t_tg = median_ms(hess_only, values)
print(f"\nHessian (b={B}, d={D}, float32, {jax.devices()[0].platform}):")
print(f"  jax.jit(jax.hessian): {t_jax:8.3f} ms")
print(f"  tgjax:                {t_tg:8.3f} ms   ({t_jax / t_tg:.1f}x)")
print("\nOK: tgjax's symbolic gradient and Hessian match JAX autodiff.")
