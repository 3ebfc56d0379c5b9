"""Symbolic work alone: ``loss.grad(x).simplify()`` for a tanh chain of growing depth.

There is no JAX baseline (JAX does no symbolic work), so the figure to read
is how the time grows when the depth doubles: 2x is linear, 4x quadratic,
8x cubic. The lowered loss and gradient (no ``simplify``) are timed beside
it: lowering is linear in depth.

Run: python benchmarks/symbolic.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import tgjax as tg
import tgjax.functions as F
from harness import machine


def tanh_chain_loss(depth: int):
    n = tg.symbols("n")
    x = tg.Variable("x", n)
    e = x
    for _ in range(depth):
        e = F.tanh(e)
    return F.sum(e), x


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(quick: bool = False):
    depths = (25, 50, 100) if quick else (50, 100, 200, 400)
    print(f"Symbolic work on a tanh chain ({machine()})")
    print(f"{'depth':>6} {'grad+simplify s':>16} {'x per doubling':>15} {'lower+first call s':>19}")
    previous = None
    for depth in depths:
        loss, x = tanh_chain_loss(depth)
        simplify_s = seconds(lambda: loss.grad(x).simplify())
        loss, x = tanh_chain_loss(depth)  # fresh nodes: nothing cached from the line above
        lower_s = seconds(lambda: tg.lower([loss, loss.grad(x)])(x=np.linspace(-1, 1, 8)))
        growth = f"{simplify_s / previous:.1f}x" if previous else ""
        print(f"{depth:>6} {simplify_s:>16.2f} {growth:>15} {lower_s:>19.2f}")
        previous = simplify_s


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
