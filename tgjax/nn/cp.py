"""A linear layer whose weight is a sum of ``rank`` outer products (a CP decomposition)."""

from __future__ import annotations

import string
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._ir.nodes import Delta, Variable
from ._common import (FactoredLinear, factor_std, initial_bias, is_int, read_dense_weight, read_dtype, read_modes,
                      warn_if_larger, with_bias)

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
    # the relative Frobenius error of the weight that from_dense approximated (None otherwise)
    from_dense_error: float | None = eqx.field(static=True, default=None)

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

    @classmethod
    def from_dense(cls, weight, in_modes, out_modes, rank: int, *, bias=None, iters: int = 100):
        """The rank-``rank`` CP decomposition of a dense ``(out, in)`` weight (as
        ``eqx.nn.Linear.weight``), by alternating least squares.

        The weight, as a tensor of one mode ``(in_modes[k], out_modes[k])`` per
        factor, starts from each mode's leading singular vectors; each of the
        ``iters`` sweeps solves for every factor in turn with the others fixed.
        A best rank-``rank`` approximation need not exist, and ALS finds a
        local one: the relative Frobenius error reached is reported as
        ``layer.from_dense_error``. Where the factors hold more parameters than
        the weight, a ``UserWarning`` says so.

        Examples:
            >>> A = [jax.random.normal(jax.random.key(k), (8, 2, 2)) for k in range(2)]  # two factors, rank 2
            >>> w = jnp.einsum("ipr,jqr->pqij", *A).reshape(4, 64)                      # W[o, i], as the layer's
            >>> cp = tnn.CPLinear.from_dense(w, (8, 8), (2, 2), rank=2)
            >>> cp.from_dense_error < 1e-4, bool(jnp.allclose(cp.dense(), w, atol=1e-3))
            (True, True)
        """
        where = f"{_NAME}.from_dense"
        w, dtype, in_modes, out_modes = read_dense_weight(weight, in_modes, out_modes, where)
        if not (is_int(rank) and rank > 0):
            raise ValueError(f"{where}: rank must be one positive int (the number of outer products); got {rank!r}.")
        if not (is_int(iters) and iters >= 0):
            raise ValueError(f"{where}: iters must be a non-negative int (ALS sweeps); got {iters!r}.")
        d = len(in_modes)
        sizes = tuple(n * m for n, m in zip(in_modes, out_modes))
        # W[o_1..o_d, i_1..i_d] -> Y[(i_1 o_1), ..., (i_d o_d)]: each factor's pair of modes side by side
        y = w.reshape(out_modes + in_modes).transpose([axis for k in range(d) for axis in (d + k, k)]).reshape(sizes)
        factors, error = _cp_als(y, rank, iters)
        warn_if_larger(sum(f.size for f in factors), w.size, f"rank {rank} gives", where)
        layer = cls(in_modes, out_modes, rank, use_bias=bias is not None, dtype=dtype, key=jax.random.key(0))
        arrays = [jnp.asarray(f.reshape(n, m, rank), dtype) for f, n, m in zip(factors, in_modes, out_modes)]
        layer = with_bias(eqx.tree_at(lambda m: m.factors, layer, arrays), bias, dtype, where)
        # a static field of a module just built (tree_at moves leaves only)
        object.__setattr__(layer, "from_dense_error", error)
        return layer

    def __call__(self, x: jax.Array, *, key=None) -> jax.Array:
        """``x``: shape ``(prod(in_modes),)``; returns shape ``(prod(out_modes),)``. ``key`` is unused."""
        factors = {f"A{k}": a for k, a in enumerate(self.factors)}
        return self._forward(x, _NAME, _network, (self.in_modes, self.out_modes, self.rank), factors)


def _cp_als(y: np.ndarray, rank: int, iters: int) -> tuple:
    """Factors ``F_k`` (``y.shape[k]`` x ``rank``) with ``y ~ sum_r F_1[:, r] x ... x F_d[:, r]``, by
    ``iters`` sweeps of alternating least squares, and the relative error reached."""
    d = y.ndim
    letters = string.ascii_letters[:d]
    rng = np.random.default_rng(0)
    factors = []
    for k in range(d):  # each mode's leading left singular vectors, random columns past them
        u = np.linalg.svd(np.moveaxis(y, k, 0).reshape(y.shape[k], -1), full_matrices=False)[0][:, :rank]
        factors.append(np.concatenate([u, rng.standard_normal((y.shape[k], rank - u.shape[1]))], axis=1))

    def mttkrp(k: int) -> np.ndarray:
        """``y`` contracted with every factor but the ``k``-th, along the rank: (``y.shape[k]``, rank)."""
        others = [j for j in range(d) if j != k]
        spec = f"{letters}," + ",".join(f"{letters[j]}z" for j in others) + f"->{letters[k]}z"
        return np.einsum(spec, y, *(factors[j] for j in others), optimize=True)

    def grams(skip: int | None = None) -> np.ndarray:
        out = np.ones((rank, rank))
        for j, f in enumerate(factors):
            if j != skip:
                out *= f.T @ f
        return out

    for _ in range(iters):
        for k in range(d):
            factors[k] = mttkrp(k) @ np.linalg.pinv(grams(skip=k))
    # ||y - y_hat||^2 = ||y||^2 - 2 <y, y_hat> + ||y_hat||^2, without forming y_hat
    norm2 = float(np.sum(y * y))
    inner = float(np.sum(mttkrp(0) * factors[0]))
    residual = max(norm2 - 2 * inner + float(np.sum(grams())), 0.0)
    error = float(np.sqrt(residual / norm2)) if norm2 > 0 else 0.0
    # the same scale in every factor of each outer product (ALS leaves it anywhere)
    norms = np.stack([np.linalg.norm(f, axis=0) for f in factors])
    scale = np.prod(norms, axis=0) ** (1.0 / d)
    factors = [f * np.where(n > 0, scale / np.where(n > 0, n, 1.0), 0.0) for f, n in zip(factors, norms)]
    return factors, error
