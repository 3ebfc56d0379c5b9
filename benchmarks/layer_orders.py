"""Every contraction order of a tensorised layer's one-line einsum, timed: how fast can it be
without the dense weight?

The one-line ``jnp.einsum`` of a tensor-train or CP layer (``layers.py``) lets
opt_einsum pick its order for the whole batch, and for a batch of 256 it
contracts the factors first, into the dense ``(out, in)`` weight, then
multiplies the batch by it. The tgjax layers may not build that weight
(API: "Equinox layers"). This script times every pairwise contraction order
of the same einsum (mapped over the batch with ``jax.vmap``, so a step that
does not involve the input runs once) and reports the fastest order that
builds the dense weight and the fastest that builds nothing as large, beside
the einsum's own time. Every order is timed by default; ``--top N`` times only
the N of each kind cheapest for the batch (FLOPs plus entries written), a cost
that ranks these orders poorly on XLA:CPU.

Run: ``python benchmarks/layer_orders.py [--top N]``.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp

import tgjax.nn as tnn
from harness import machine, median_time

BATCH = 256


def sequences(n: int):
    """Every sequence of pairwise contractions of ``n`` operands, as opt_einsum paths."""
    if n == 1:
        yield []
        return
    for i in range(n):
        for j in range(i + 1, n):
            for rest in sequences(n - 1):
                yield [(i, j)] + rest


def orders(n: int) -> list:
    """One path per contraction tree of ``n`` operands (sequences that build the same
    intermediates in another order are the same program)."""
    trees = {}
    for path in sequences(n):
        groups = [frozenset([k]) for k in range(n)]
        built = set()
        for i, j in path:
            merged = groups[i] | groups[j]
            groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]
            built.add(merged)
        trees.setdefault(frozenset(built), path)
    return list(trees.values())


def order_cost(equation: str, shapes, path) -> tuple:
    """(FLOPs plus entries written, largest batch-free intermediate) of ``path`` for ``equation``,
    whose batch index is ``z``."""
    ins, out = equation.split("->")
    terms = ins.split(",")
    size = {ch: n for term, shape in zip(terms, shapes) for ch, n in zip(term, shape)}
    cost = largest_free = 0
    for i, j in path:
        a, b = terms[i], terms[j]
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        kept = "".join(ch for ch in dict.fromkeys(a + b) if ch in out or any(ch in t for t in rest))
        entries = math.prod(size[ch] for ch in kept)
        cost += math.prod(size[ch] for ch in set(a + b)) + entries
        if "z" not in kept:
            largest_free = max(largest_free, entries)
        terms = rest + [kept]
    return cost, largest_free


def fastest(equation: str, arrays, x, paths, top: int) -> tuple:
    """(seconds, path) of the fastest of ``paths`` under ``jax.vmap``, timing the ``top`` cheapest (None: all)."""
    per_example = equation.replace("z", "")
    best = (math.inf, None)
    for _, path in paths[:top]:
        fn = jax.jit(lambda x, *a, p=path: jax.vmap(lambda xi: jnp.einsum(per_example, xi, *a, optimize=p))(x))
        best = min(best, (median_time(fn, x, *arrays, repeats=10), path), key=lambda pair: pair[0])
    return best


def report(name: str, equation: str, arrays, x, top: int):
    shapes = [x.shape] + [a.shape for a in arrays]
    n_in = math.prod(x.shape[1:])
    n_out = math.prod(jax.eval_shape(lambda: jnp.einsum(equation, x[:1], *arrays)).shape)
    ranked = {True: [], False: []}  # builds a batch-free intermediate as large as the dense weight?
    for path in orders(len(shapes)):
        cost, largest_free = order_cost(equation, shapes, path)
        ranked[largest_free >= n_in * n_out].append((cost, path))
    einsum = median_time(jax.jit(lambda x, *a: jnp.einsum(equation, x, *a)), x, *arrays)
    with_dense, _ = fastest(equation, arrays, x, sorted(ranked[True]), top)
    without, path = fastest(equation, arrays, x, sorted(ranked[False]), top)
    print(f"| {name} | {1e3 * einsum:.3f} | {1e3 * with_dense:.3f} | {1e3 * without:.3f} "
          f"| {einsum / without:.2f}x | {len(ranked[False])} | {path} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=None, help="orders of each kind to time (cheapest first; default all)")
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    print(f"# {machine()}, float32, batch {BATCH}, forward pass")
    print("| layer | einsum ms | fastest order with the dense weight, ms | fastest without, ms "
          "| einsum / without | orders without | fastest order without |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for in_modes, out_modes, tt_rank, cp_rank in [((8, 8, 8, 8), (2, 2, 2, 2), 8, 36), ((4, 8, 8, 4), (4, 8, 8, 4), 8, 64)]:
        x = jax.random.normal(jax.random.key(1), (BATCH,) + in_modes, jnp.float32)
        shape = f"{math.prod(in_modes)}->{math.prod(out_modes)} ({'x'.join(map(str, in_modes))} -> {'x'.join(map(str, out_modes))})"
        train = tnn.TensorTrainLinear(in_modes, out_modes, tt_rank, use_bias=False, key=key)
        cores = list(train.cores)
        cores[0], cores[-1] = cores[0][0], cores[-1][..., 0]
        report(f"{shape}, tensor train, rank {tt_rank}", "zabcd,aAp,pbBq,qcCs,sdD->zABCD", cores, x, args.top)
        cp = tnn.CPLinear(in_modes, out_modes, cp_rank, use_bias=False, key=key)
        report(f"{shape}, CP, rank {cp_rank}", "zabcd,aAr,bBr,cCr,dDr->zABCD", cp.factors, x, args.top)


if __name__ == "__main__":
    main()
