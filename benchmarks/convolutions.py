"""Convolution layers written with tg.Convolution against lax.conv_general_dilated,
float32 on one device: the forward pass, loss plus gradients with respect
to kernel and data (tg.lower([loss, *grads]) vs jax.jit(jax.value_and_grad)),
and the Hessian with respect to the kernel (vs jax.jit(jax.hessian)).

Run: python benchmarks/convolutions.py [--quick]
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import tgjax as tg
import tgjax.functions as F
from harness import Table, max_rel_error, paired_times

rng = np.random.default_rng(0)


def normal(*shape):
    return jnp.asarray(rng.standard_normal(shape) / np.sqrt(shape[-1]), jnp.float32)


def timed_lower(exprs, values):
    start = time.perf_counter()
    fn = tg.lower(exprs)
    jax.block_until_ready(fn(values))
    return fn, time.perf_counter() - start


def main(quick: bool = False):
    s = 2 if quick else 1
    table = Table("Convolutions: tgjax vs lax.conv_general_dilated", "jax")
    table.header()
    b, c, d, w, h, kw, kh, w2, h2 = tg.symbols("b c d w h kw kh w2 h2")

    for B, C, D, W, K in [(32 // s, 16, 32, 32 // s, 3), (8, 64 // s, 64 // s, 16, 5)]:
        data, kernel = tg.Variable("data", b, c, w, h), tg.Variable("kernel", d, c, kw, kh)
        y = data @ tg.Convolution(w, kw, w2) @ tg.Convolution(h, kh, h2) @ kernel  # (b, w2, h2, d)
        values = {"data": normal(B, C, W, W), "kernel": normal(D, C, K, K)}
        label = f"(b={B}, c={C}, d={D}, {W}x{W}, k={K})"

        def conv(x, k):
            return lax.conv_general_dilated(x, k, (1, 1), "VALID")

        fn, compile_s = timed_lower(y, values)
        ref = jax.jit(lambda v: conv(v["data"], v["kernel"]).transpose(0, 2, 3, 1))
        table.add(f"2-D conv forward {label}", *paired_times(lambda: ref(values), lambda: fn(values)), compile_s,
                  max_rel_error(fn(values), ref(values)))

        loss = F.sum(F.tanh(y))
        fn, compile_s = timed_lower([loss, loss.grad(kernel), loss.grad(data)], values)
        vg = jax.jit(jax.value_and_grad(lambda k, x: jnp.sum(jnp.tanh(conv(x, k))), argnums=(0, 1)))

        def jax_all(v):
            value, (gk, gx) = vg(v["kernel"], v["data"])
            return value, gk, gx

        table.add(f"2-D conv loss + grads {label}", *paired_times(lambda: jax_all(values), lambda: fn(values)),
                  compile_s,
                  max_rel_error(fn(values), jax_all(values)))

    # Hessian with respect to the kernel: the windows of the data, twice, against tanh''.
    B, C, D, W, K = 8, 4, 4, 16, 3
    data, kernel = tg.Variable("data", b, c, w, h), tg.Variable("kernel", d, c, kw, kh)
    y = data @ tg.Convolution(w, kw, w2) @ tg.Convolution(h, kh, h2) @ kernel
    values = {"data": normal(B, C, W, W), "kernel": normal(D, C, K, K)}
    fn, compile_s = timed_lower(F.sum(F.tanh(y)).grad(kernel).grad(kernel), values)
    hess = jax.jit(jax.hessian(lambda k, x: jnp.sum(jnp.tanh(lax.conv_general_dilated(x, k, (1, 1), "VALID")))))

    def jax_hess(v):
        return hess(v["kernel"], v["data"])

    table.add(f"2-D conv Hessian wrt kernel (b={B}, c={C}, d={D}, {W}x{W}, k={K})",
              *paired_times(lambda: jax_hess(values), lambda: fn(values)), compile_s,
              max_rel_error(fn(values), jax_hess(values)))

    # 1-D convolution of long signals with a wide kernel.
    B, C, D, W, K = 16, 8, 8, 4096 // s, 64
    x, kernel = tg.Variable("x", b, c, w), tg.Variable("kernel", d, c, kw)
    y = x @ tg.Convolution(w, kw, w2) @ kernel  # (b, w2, d)
    loss = F.frobenius2(y)
    values = {"x": normal(B, C, W), "kernel": normal(D, C, K)}
    fn, compile_s = timed_lower([loss, loss.grad(kernel), loss.grad(x)], values)
    vg = jax.jit(jax.value_and_grad(lambda k, v: jnp.sum(lax.conv_general_dilated(v, k, (1,), "VALID") ** 2), argnums=(0, 1)))

    def jax_1d(v):
        value, (gk, gx) = vg(v["kernel"], v["x"])
        return value, gk, gx

    table.add(f"1-D conv loss + grads (b={B}, c={C}, w={W}, k={K})",
              *paired_times(lambda: jax_1d(values), lambda: fn(values)), compile_s,
              max_rel_error(fn(values), jax_1d(values)))
    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
