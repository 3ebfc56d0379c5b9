"""A linear layer whose weight is a sum of ``rank`` outer products (a CP decomposition)."""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax

from .._ir.nodes import Delta, Variable
from ._common import FactoredLinear, factor_std, initial_bias, is_int, read_dtype, read_modes

_NAME = "CPLinear"


def _network(in_modes: tuple, out_modes: tuple, rank: int):
    """``y[o_1..o_d] = sum_r x[i_1..i_d] A_1[i_1,o_1,r] ... A_d[i_d,o_d,r]``: the rank edge,
    shared by every factor, is a d-legged Delta."""
    d = len(in_modes)
    network = Variable("x", **{f"i{k}": n for k, n in enumerate(in_modes)})
    for k, (n, m) in enumerate(zip(in_modes, out_modes)):
        network = network @ Variable(f"A{k}", **{f"i{k}": n, f"o{k}": m, f"r{k}": rank})
    return network @ Delta(rank, *(f"r{k}" for k in range(d)))


class CPLinear(FactoredLinear, eqx.Module):
    """``y = W x + b`` with ``W[o, i] = sum_r prod_k A_k[i_k, o_k, r]``: ``rank`` outer products.

    ``d`` factors of shape ``(in_modes[k], out_modes[k], rank)`` replace the
    ``prod(out_modes) x prod(in_modes)`` matrix. The forward pass is one
    tgjax network (the rank shared by all factors is a copy tensor), planned
    once per shape and ordered for a batch: the dense matrix is built only where it
    has no more entries than the batch's input, and only where that is cheapest.

    Follows ``eqx.nn.Linear``: keyword-only ``key``, ``__call__`` on one
    example (a vector of size ``prod(in_modes)``), ``jax.vmap`` for batches.

    Args:
        in_modes: factorisation of the input size (or an int, split to match ``out_modes``).
        out_modes: factorisation of the output size, as many modes as ``in_modes``.
        rank: the number of outer products.
        use_bias: add a bias vector (default True).
        dtype: parameter dtype, a float (default: JAX's default float).
        key: a ``jax.random`` key for the initialisation.

    Examples:
        >>> layer = tnn.CPLinear((8, 8, 8, 8), (2, 2, 2, 2), rank=36, key=jax.random.key(0))
        >>> layer(jnp.ones(4096)).shape
        (16,)
    """

    factors: list
    bias: jax.Array | None
    in_modes: tuple = eqx.field(static=True)
    out_modes: tuple = eqx.field(static=True)
    rank: int = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(self, in_modes: Sequence[int] | int, out_modes: Sequence[int] | int, rank: int, *,
                 use_bias: bool = True, dtype=None, key):
        in_modes, out_modes = read_modes(in_modes, out_modes, _NAME)
        if not (is_int(rank) and rank > 0):
            raise ValueError(f"{_NAME}: rank must be one positive int (the number of outer products); got {rank!r}.")
        dtype = read_dtype(dtype, _NAME)
        self.in_modes, self.out_modes, self.rank, self.use_bias = in_modes, out_modes, rank, use_bias
        d = len(in_modes)
        # Each entry of W is a sum over rank products of d factor entries.
        std = factor_std(self.in_features, rank, d)
        keys = jax.random.split(key, d + 1)
        self.factors = [
            std * jax.random.normal(keys[k], (n, m, rank), dtype) for k, (n, m) in enumerate(zip(in_modes, out_modes))
        ]
        self.bias = initial_bias(keys[d], self.out_features, self.in_features, dtype) if use_bias else None

    def __call__(self, x: jax.Array, *, key=None) -> jax.Array:
        """``x``: shape ``(prod(in_modes),)``; returns shape ``(prod(out_modes),)``. ``key`` is unused."""
        factors = {f"A{k}": a for k, a in enumerate(self.factors)}
        return self._forward(x, _NAME, _network, (self.in_modes, self.out_modes, self.rank), factors)
