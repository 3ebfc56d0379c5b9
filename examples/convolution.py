"""A 2-D convolution layer written with tg.Convolution: its kernel Jacobian is a
convolution again, its gradients are the lax convolutions of backpropagation,
and its kernel Hessian beats jax.hessian.

Run: python examples/convolution.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import tgjax as tg
import tgjax.functions as F

b, c, d, w, h, kw, kh, w2, h2 = tg.symbols("b c d w h kw kh w2 h2")
data = tg.Variable("data", b, c, w, h)        # a batch of c-channel images
kernel = tg.Variable("kernel", d, c, kw, kh)  # d filters of kw x kh
# [w = kw + w2] and [h = kh + h2]: a "valid" convolution, w2 = w - kw + 1
y = data @ tg.Convolution(w, kw, w2) @ tg.Convolution(h, kh, h2) @ kernel
print("y       =", y, "   edges", y.edges)

jacobian = y.grad(kernel).simplify()
print("dy/dK   =", jacobian, "   (the data seen through the same convolutions)")

loss = F.sum(F.tanh(y))
fn = tg.lower([loss, loss.grad(kernel), loss.grad(data)])
rng = np.random.default_rng(0)
values = {"data": rng.normal(size=(8, 3, 16, 16)).astype(np.float32),
          "kernel": (rng.normal(size=(4, 3, 3, 3)) / 5).astype(np.float32)}
print("\nGenerated JAX for the loss and both gradients:\n")
print(fn.source(values))


def jax_loss(k, x):
    return jnp.sum(jnp.tanh(lax.conv_general_dilated(x, k, (1, 1), "VALID")))


def rel_err(ours, theirs):
    return float(jnp.max(jnp.abs(ours - theirs)) / jnp.max(jnp.abs(theirs)))


value, grad_k, grad_x = fn(values)
jax_grad_k, jax_grad_x = jax.grad(jax_loss, argnums=(0, 1))(values["kernel"], values["data"])
print("relative error against jax.grad: kernel", rel_err(grad_k, jax_grad_k), " data", rel_err(grad_x, jax_grad_x))

hess = tg.lower(loss.grad(kernel).grad(kernel))     # edges (d, c, kw, kh, d_, c_, kw_, kh_)
jax_hess = jax.jit(jax.hessian(jax_loss))
ours, theirs = hess(values), jax_hess(values["kernel"], values["data"])
print("Hessian wrt the kernel:", ours.shape, " relative error against jax.hessian", rel_err(ours, theirs))


def median_ms(f, repeats=30):
    jax.block_until_ready(f())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f())
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


t_tg = median_ms(lambda: hess(values))
t_jax = median_ms(lambda: jax_hess(values["kernel"], values["data"]))
print(f"kernel Hessian: tgjax {t_tg:.3f} ms, jax.hessian {t_jax:.3f} ms ({t_jax / t_tg:.1f}x)")
