"""Tensorised layers against the dense layer and the hand-written einsum of the same factorisation.

For each layer (tensor train, CP, Tucker) and shape: the forward pass and the
forward + backward pass (the gradient of a sum of squares with respect to
every parameter) on a batch of 256, jitted with ``eqx.filter_jit``, against

- the dense ``eqx.nn.Linear`` of the same shape, and
- the one-line ``jnp.einsum`` of the same factors (the way the "Tensorization
  of neural network layers" post writes the layer), jitted the same way, and
- the same einsum written for one example and mapped with ``jax.vmap``, as
  an Equinox layer is written (``per ex.``): opt_einsum then plans for one
  example, and like the tgjax layers it never builds the dense weight, where
  for a batch of 256 the one-line einsum does.

``vs ...`` columns are the other's time divided by tgjax's (above 1: tgjax
is faster). Then a tensor-train embedding (``tnn.TTEmbedding``, 1,000,000 x 64,
rank 16) against ``jnp.take`` on a dense table of that shape, for a batch of
4096 lookups. Run: ``python benchmarks/layers.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math

import equinox as eqx
import jax
import jax.numpy as jnp

import tgjax.nn as tnn
from harness import machine, median_time

BATCH = 256


def tt_einsum(layer, x):
    """y = x . G1 . G2 ... as one einsum (``x`` batched, reshaped to the input modes)."""
    d = len(layer.in_modes)
    ins, outs, ranks = "abcdefgh"[:d], "ABCDEFGH"[:d], "pqrstuvw"[: d - 1]
    cores = [c for c in layer.cores]
    cores[0], cores[-1] = cores[0][0], cores[-1][..., 0]
    terms = []
    for k in range(d):
        left = ranks[k - 1] if k > 0 else ""
        right = ranks[k] if k < d - 1 else ""
        terms.append(f"{left}{ins[k]}{outs[k]}{right}")
    spec = f"z{ins}," + ",".join(terms) + f"->z{outs}"
    return jnp.einsum(spec, x.reshape((x.shape[0],) + layer.in_modes), *cores).reshape(x.shape[0], -1)


def cp_einsum(layer, x):
    d = len(layer.in_modes)
    ins, outs = "abcdefgh"[:d], "ABCDEFGH"[:d]
    spec = f"z{ins}," + ",".join(f"{ins[k]}{outs[k]}r" for k in range(d)) + f"->z{outs}"
    return jnp.einsum(spec, x.reshape((x.shape[0],) + layer.in_modes), *layer.factors).reshape(x.shape[0], -1)


def tucker_einsum(layer, x):
    d = len(layer.in_modes)
    ins, outs, s, t = "abcd"[:d], "ABCD"[:d], "efgh"[:d], "EFGH"[:d]
    spec = (f"z{ins}," + ",".join(f"{ins[k]}{s[k]}" for k in range(d)) + f",{s}{t},"
            + ",".join(f"{outs[k]}{t[k]}" for k in range(d)) + f"->z{outs}")
    arrays = [x.reshape((x.shape[0],) + layer.in_modes), *layer.in_factors, layer.core, *layer.out_factors]
    return jnp.einsum(spec, *arrays).reshape(x.shape[0], -1)


def per_example(einsum):
    """``einsum`` applied to one example at a time under ``jax.vmap``: planned for a batch of one."""
    return lambda layer, x: jax.vmap(lambda xi: einsum(layer, xi[None])[0])(x)


def timings(apply, model, x):
    """(forward, forward + backward) median seconds of ``apply(model, x)`` over the batch."""
    forward = eqx.filter_jit(apply)

    def loss(m, xs):
        return jnp.sum(apply(m, xs) ** 2)

    backward = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    return median_time(forward, model, x), median_time(backward, model, x)


def parameters(model) -> int:
    return sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape only")
    args = parser.parse_args(argv)
    shapes = [((8, 8, 8, 8), (2, 2, 2, 2), 8, 36, (4, 4, 3, 3, 2, 2, 2, 2))]
    if not args.quick:
        shapes.append(((4, 8, 8, 4), (4, 8, 8, 4), 8, 64, (3,) * 8))
    key = jax.random.key(0)
    print(f"# {machine()}, float32, batch {BATCH}")
    print("| layer | params | % dense | fwd ms | vs einsum | vs per ex. | vs dense "
          "| fwd+bwd ms | vs einsum | vs per ex. | vs dense |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for in_modes, out_modes, tt_rank, cp_rank, tucker_ranks in shapes:
        n_in, n_out = math.prod(in_modes), math.prod(out_modes)
        x = jax.random.normal(jax.random.key(1), (BATCH, n_in), jnp.float32)
        dense = eqx.nn.Linear(n_in, n_out, use_bias=False, key=key)
        dense_times = timings(lambda m, xs: jax.vmap(m)(xs), dense, x)
        layers = [
            (f"tensor train, rank {tt_rank}", tnn.TensorTrainLinear(in_modes, out_modes, tt_rank, use_bias=False, key=key), tt_einsum),
            (f"CP, rank {cp_rank}", tnn.CPLinear(in_modes, out_modes, cp_rank, use_bias=False, key=key), cp_einsum),
            (f"Tucker, ranks {','.join(map(str, tucker_ranks))}", tnn.TuckerLinear(in_modes, out_modes, tucker_ranks, use_bias=False, key=key), tucker_einsum),
        ]
        shape = f"{n_in}->{n_out} ({'x'.join(map(str, in_modes))} -> {'x'.join(map(str, out_modes))})"
        for name, layer, einsum in layers:
            ours = timings(lambda m, xs: jax.vmap(m)(xs), layer, x)
            theirs = timings(einsum, layer, x)
            mapped = timings(per_example(einsum), layer, x)
            # the three compute the same map
            assert jnp.allclose(jax.vmap(layer)(x), einsum(layer, x), rtol=1e-3, atol=1e-4)
            assert jnp.allclose(per_example(einsum)(layer, x), einsum(layer, x), rtol=1e-3, atol=1e-4)
            count = parameters(layer)
            row = [f"{shape}, {name}", str(count), f"{100 * count / (n_in * n_out):.1f}%"]
            for k in (0, 1):  # forward, forward + backward
                row += [f"{1e3 * ours[k]:.3f}", *(f"{other[k] / ours[k]:.2f}x" for other in (theirs, mapped, dense_times))]
            print("| " + " | ".join(row) + " |")
    embedding_rows(args.quick)


def embedding_rows(quick: bool):
    """A batch of lookups from a tensor-train embedding against ``jnp.take`` on a dense table of
    the same shape: forward, and forward + backward (the gradient with respect to the cores, or
    to the whole table: a dense array of the table's size every step)."""
    rows, dim, rank, batch = (100_000 if quick else 1_000_000), 64, 16, 4096
    emb = tnn.TTEmbedding(rows, dim, rank=rank, key=jax.random.key(0))
    table = jax.random.normal(jax.random.key(1), (rows, dim), jnp.float32)
    indices = jax.random.randint(jax.random.key(2), (batch,), 0, rows)
    ours = timings(lambda m, i: jax.vmap(m)(i), emb, indices)
    theirs = timings(lambda t, i: jnp.take(t, i, axis=0), table, indices)
    count = parameters(emb)
    print()
    print(f"# embedding lookup: {batch} indices, float32")
    print("| table | params | % table | MB held | fwd ms | vs take | fwd+bwd ms | vs take |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, held, times, ratios in (
        (f"TTEmbedding {rows:,} x {dim}, modes {emb.in_modes} x {emb.out_modes}, rank {rank}", count, ours,
         [theirs[k] / ours[k] for k in (0, 1)]),
        (f"dense table {rows:,} x {dim}, jnp.take", rows * dim, theirs, [1.0, 1.0]),
    ):
        print(f"| {name} | {held:,} | {100 * held / (rows * dim):.2f}% | {4 * held / 2**20:.1f} "
              f"| {1e3 * times[0]:.3f} | {ratios[0]:.2f}x | {1e3 * times[1]:.3f} | {ratios[1]:.2f}x |")


if __name__ == "__main__":
    main()
