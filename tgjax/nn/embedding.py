"""An embedding table held as a tensor train, looked up row by row without forming the table."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import functions as F
from .._ir.nodes import Variable
from .._lower.api import Lowered
from ._common import (balanced_factors, clipped, dtype_of_dense, is_int, mode_sequence, ranks_found, read_dtype,
                      read_ranks_or_tol, warn_if_larger)
from .tensor_train import _rank_limits, _ranks, _tt_svd, core_edges, network_cores

_NAME = "TTEmbedding"
# Modes of each size when the caller gives none (as the linear layers split an int).
_DEFAULT_MODES = 3


def _covering_modes(n: int, d: int) -> tuple:
    """``d`` modes, largest first, whose product is at least ``n`` and close to it: each starts
    at the ``d``-th root rounded up and is lowered while the product still covers ``n``
    (``1_000_000, 3 -> (100, 100, 100)``; the prime ``1_000_003`` -> ``(101, 101, 99)``)."""
    root = max(1, math.ceil(round(n ** (1.0 / d), 9)))
    while root ** d < n:  # the float root can fall short
        root += 1
    modes = [root] * d
    for k in range(d):
        others = math.prod(modes) // modes[k]
        while modes[k] > 1 and (modes[k] - 1) * others >= n:
            modes[k] -= 1
    return tuple(sorted(modes, reverse=True))


def _read_embedding_modes(num_embeddings, embedding_dim, in_modes, out_modes, layer: str) -> tuple:
    """``(in_modes, out_modes)``: the index modes cover ``num_embeddings`` (their product may be
    larger: the table is padded), the embedding modes multiply to ``embedding_dim``."""
    for value, name in ((num_embeddings, "num_embeddings"), (embedding_dim, "embedding_dim")):
        if not (is_int(value) and value > 0):
            raise ValueError(f"{layer}: {name} must be a positive int; got {value!r}.")

    def modes(value, name):
        if value is None:
            return None
        out = mode_sequence(value)
        if out is None:
            raise ValueError(f"{layer}: {name} must be a non-empty sequence of positive ints; got {value!r}.")
        return out

    ins, outs = modes(in_modes, "in_modes"), modes(out_modes, "out_modes")
    d = len(ins) if ins is not None else len(outs) if outs is not None else _DEFAULT_MODES
    ins = _covering_modes(num_embeddings, d) if ins is None else ins
    outs = balanced_factors(embedding_dim, d) if outs is None else outs
    if len(ins) != len(outs):
        raise ValueError(
            f"{layer}: in_modes and out_modes need as many modes each (one pair per core); got {ins} and {outs}."
        )
    if math.prod(ins) < num_embeddings:
        raise ValueError(
            f"{layer}: in_modes {ins} cover {math.prod(ins)} rows, fewer than num_embeddings = {num_embeddings}; "
            f"give modes whose product is at least that (or leave in_modes out)."
        )
    if math.prod(outs) != embedding_dim:
        raise ValueError(
            f"{layer}: out_modes {outs} multiply to {math.prod(outs)}, not embedding_dim = {embedding_dim}."
        )
    return ins, outs


def _network(in_modes: tuple, out_modes: tuple, ranks: tuple):
    """``row[o_1..o_d] = G_1[k_1, o_1, r_1] G_2[r_1, k_2, o_2, r_2] ...``: each core's slice at
    its digit ``k_j`` of the index (``F.take``, lowered to a gather), contracted along the ranks."""
    network = None
    for k in range(len(in_modes)):
        core = Variable(f"G{k}", **core_edges(k, in_modes, out_modes, ranks))
        piece = F.take(core, Variable(f"k{k}"), f"i{k}")
        network = piece if network is None else network @ piece
    return network


@functools.lru_cache(maxsize=None)
def _lowered(in_modes: tuple, out_modes: tuple, ranks: tuple) -> Lowered:
    """The lookup network, lowered once per shape, its digits mapped (one index of a batch)."""
    return Lowered(_network(in_modes, out_modes, ranks), mapped=tuple(f"k{k}" for k in range(len(in_modes))))


class TTEmbedding(eqx.Module):
    """An embedding table of shape ``(num_embeddings, embedding_dim)`` held as tensor-train cores.

    Row ``index`` of the table is ``G_1[k_1] G_2[k_2] ... G_d[k_d]``, where
    ``k_1..k_d`` are the digits of ``index`` in the mixed radix ``in_modes``
    (C order: ``index = (k_1 n_2 + k_2) n_3 + k_3`` for three modes) and core
    ``j`` has shape ``(r_{j-1}, in_modes[j], out_modes[j], r_j)``, ``r_0 = r_d = 1``.
    A lookup gathers one slice of each core and contracts them (a tgjax
    network, planned for a batch under ``jax.vmap``): the table is never
    formed, and a 1,000,000 x 64 table of rank 16 holds 0.2% of its entries.

    Follows ``eqx.nn.Embedding``: ``layer(index)`` for one integer index
    returns the ``(embedding_dim,)`` row; ``jax.vmap`` for batches.

    Args:
        num_embeddings: the number of rows. ``in_modes`` may cover more (their
            product is at least this): the extra rows exist but are never looked up.
        embedding_dim: the size of a row.
        in_modes: the index's modes; by default ``d`` (3, or as many as
            ``out_modes`` has) modes near the ``d``-th root of
            ``num_embeddings``, rounded up to cover it.
        out_modes: the row's modes, multiplying to ``embedding_dim``; by
            default ``embedding_dim`` split into balanced factors.
        rank: the ranks between cores: one int, ``d - 1`` ints, or ``d + 1``
            with 1 at both ends. A rank larger than the modes allow is clipped,
            with a warning.
        key: a ``jax.random`` key for the initialisation (each table entry
            starts with variance 1, as ``eqx.nn.Embedding``'s).
        dtype: parameter dtype, a float (default: JAX's default float).

    Raises:
        ValueError: for an index that is not one integer, or (where the index is
            concrete, outside ``jax.jit``) one outside ``[0, num_embeddings)``.
            Under ``jit`` an index is clamped into range, as JAX's
            ``table[index]`` does.

    Examples:
        >>> emb = tnn.TTEmbedding(1000, 64, rank=8, key=jax.random.key(0))
        >>> emb(3).shape
        (64,)
        >>> jax.vmap(emb)(jnp.array([0, 5, 999])).shape
        (3, 64)
    """

    cores: list
    num_embeddings: int = eqx.field(static=True)
    embedding_dim: int = eqx.field(static=True)
    in_modes: tuple = eqx.field(static=True)
    out_modes: tuple = eqx.field(static=True)
    ranks: tuple = eqx.field(static=True)

    def __init__(self, num_embeddings: int, embedding_dim: int, *, in_modes: Sequence[int] | None = None,
                 out_modes: Sequence[int] | None = None, rank, key, dtype=None):
        in_modes, out_modes = _read_embedding_modes(num_embeddings, embedding_dim, in_modes, out_modes, _NAME)
        d = len(in_modes)
        ranks = clipped(_ranks(rank, d), _rank_limits(in_modes, out_modes), _NAME)
        dtype = read_dtype(dtype, _NAME)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.in_modes, self.out_modes, self.ranks = in_modes, out_modes, ranks
        # Each entry is a sum over prod(ranks) products of d core entries: variance 1 when
        # prod(ranks) std^(2 d) = 1.
        std = (1.0 / math.prod(ranks)) ** (1.0 / (2 * d))
        bounds = (1,) + ranks + (1,)
        keys = jax.random.split(key, d)
        self.cores = [
            std * jax.random.normal(keys[k], (bounds[k], n, m, bounds[k + 1]), dtype)
            for k, (n, m) in enumerate(zip(in_modes, out_modes))
        ]

    @classmethod
    def from_dense(cls, table, rank=None, *, tol: float | None = None, in_modes: Sequence[int] | None = None,
                   out_modes: Sequence[int] | None = None):
        """The tensor train of a dense ``(num_embeddings, embedding_dim)`` table (as
        ``eqx.nn.Embedding.weight``), by TT-SVD, as ``TensorTrainLinear.from_dense``: with
        ``rank``, those ranks; with ``tol``, the smallest ranks whose relative Frobenius error is
        at most ``tol`` (a ``UserWarning`` where they hold more parameters than the table).
        Rows past ``num_embeddings`` (where ``in_modes`` cover more) are zeros.

        Examples:
            >>> table = jnp.outer(jnp.arange(1.0, 65.0), jnp.ones(8))
            >>> emb = tnn.TTEmbedding.from_dense(table, tol=1e-6)
            >>> bool(jnp.allclose(emb.dense(), table, atol=1e-4)), emb.ranks
            (True, (2, 2))
        """
        where = f"{_NAME}.from_dense"
        tol = read_ranks_or_tol(rank, tol, where, ranks_name="rank")
        w = np.asarray(table)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"{where}: table must be a 2-D (num_embeddings, embedding_dim) array; got shape {w.shape}.")
        num_embeddings, embedding_dim = w.shape
        in_modes, out_modes = _read_embedding_modes(num_embeddings, embedding_dim, in_modes, out_modes, where)
        d = len(in_modes)
        dtype = dtype_of_dense(w, where)
        fixed = None if rank is None else clipped(_ranks(rank, d), _rank_limits(in_modes, out_modes), _NAME)
        padded = np.zeros((math.prod(in_modes), embedding_dim))
        padded[:num_embeddings] = w
        # TT-SVD of the (out, in) matrix, as the linear layer's: here out is the row, in the index
        cores = _tt_svd(padded.T, in_modes, out_modes, fixed, tol)
        found = tuple(c.shape[-1] for c in cores[:-1])
        warn_if_larger(sum(c.size for c in cores), w.size, ranks_found(tol, found), where, what="the table")
        layer = cls(num_embeddings, embedding_dim, in_modes=in_modes, out_modes=out_modes, rank=found,
                    key=jax.random.key(0), dtype=dtype)
        return eqx.tree_at(lambda m: m.cores, layer, [jnp.asarray(c, dtype) for c in cores])

    def __call__(self, index, *, key=None) -> jax.Array:
        """``index``: one integer; returns the ``(embedding_dim,)`` row. ``key`` is unused."""
        index = _checked_index(index, self.num_embeddings)
        digits = {}
        for k in reversed(range(len(self.in_modes))):
            digits[f"k{k}"] = index % self.in_modes[k]
            index = index // self.in_modes[k]
        cores = network_cores(self.cores)
        return _lowered(self.in_modes, self.out_modes, self.ranks)(**digits, **cores).reshape(self.embedding_dim)

    def dense(self) -> jax.Array:
        """The table as a dense ``(num_embeddings, embedding_dim)`` array, for tests and inspection only."""
        return jax.vmap(self)(jnp.arange(self.num_embeddings))


def _checked_index(index, num_embeddings: int) -> jax.Array:
    """``index`` as a 0-d integer array in ``[0, num_embeddings)``: checked where it is concrete,
    clamped (after wrapping a negative one, as JAX indexing does) where it is traced."""
    traced = isinstance(index, jax.core.Tracer)
    array = index if traced else jnp.asarray(index)
    if array.ndim != 0:
        raise ValueError(
            f"{_NAME}: expected one integer index; got an array of shape {array.shape}. "
            f"Look up a batch with jax.vmap(layer)(indices)."
        )
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise ValueError(f"{_NAME}: the index must be an integer; got dtype {array.dtype} ({index!r}).")
    if not traced:
        value = int(array)
        if not 0 <= value < num_embeddings:
            raise ValueError(
                f"{_NAME}: index {value} is out of range for {num_embeddings} embeddings (0 to {num_embeddings - 1})."
            )
        return array
    array = jnp.where(array < 0, array + num_embeddings, array)
    return jnp.clip(array, 0, num_embeddings - 1)
