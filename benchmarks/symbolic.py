"""Symbolic work alone: ``loss.grad(x).simplify()`` for a tanh chain of growing depth.

There is no JAX baseline (JAX does no symbolic work), so the figure to read
is how the time grows when the depth doubles: 2x is linear, 4x quadratic,
8x cubic. Beside it: the lowered loss and gradient (no ``simplify``) to a
first result, and the simplified gradient lowered to a first result. Both
include XLA's compile, which grows with the program.

Then ``loss.simplify()`` of a post-layer-norm transformer (``scale.py``'s model)
by blocks, and ``.simplify()`` of the gradient of its first block's query
weight (the deepest one): a layer norm reads its input three times, so the
loss read as a tree doubles with every block; simplify works on the DAG.

Run: python benchmarks/symbolic.py [--quick]
"""

from __future__ import annotations

import sys
import time

import numpy as np

import tgjax as tg
import tgjax.functions as F
from harness import machine
from scale import post_ln_transformer


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
    depths = (50, 100, 200) if quick else (250, 500, 1000, 2000)
    values = np.linspace(-1, 1, 8)
    print(f"Symbolic work on a tanh chain ({machine()})")
    print(f"{'depth':>6} {'grad+simplify s':>16} {'x per doubling':>15} {'lower+first call s':>19} "
          f"{'simplified, lowered s':>22}")
    previous = None
    for depth in depths:
        loss, x = tanh_chain_loss(depth)
        simplified = {}
        simplify_s = seconds(lambda: simplified.setdefault("g", loss.grad(x).simplify()))
        normal_s = seconds(lambda: tg.lower(simplified["g"])(x=values))
        loss, x = tanh_chain_loss(depth)  # fresh nodes: nothing cached from the lines above
        lower_s = seconds(lambda: tg.lower([loss, loss.grad(x)])(x=values))
        growth = f"{simplify_s / previous:.1f}x" if previous else ""
        print(f"{depth:>6} {simplify_s:>16.2f} {growth:>15} {lower_s:>19.2f} {normal_s:>22.2f}")
        previous = simplify_s
    print(f"\n{'blocks':>6} {'loss.simplify() s':>18} {'x per doubling':>15} {'grad(Wq0).simplify() s':>23} "
          f"{'x per doubling':>15}")
    previous = previous_blocks = None
    for blocks in (2, 4) if quick else (2, 4, 8, 12):
        loss, params = post_ln_transformer(blocks)[0]()
        simplify_s = seconds(loss.simplify)
        gradient = loss.grad(params[0])
        grad_s = seconds(gradient.simplify)
        doubled = previous and blocks == 2 * previous_blocks
        growth = f"{simplify_s / previous[0]:.1f}x" if doubled else ""
        grad_growth = f"{grad_s / previous[1]:.1f}x" if doubled else ""
        print(f"{blocks:>6} {simplify_s:>18.2f} {growth:>15} {grad_s:>23.2f} {grad_growth:>15}")
        previous, previous_blocks = (simplify_s, grad_s), blocks


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
