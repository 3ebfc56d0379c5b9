"""A linear layer whose weight is a tensor train, contracted core by core, never dense."""

from __future__ import annotations

import math
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._ir.nodes import Variable
from ._common import (FactoredLinear, clipped, factor_std, initial_bias, is_int, kept_by_tol, read_dense_weight, read_dtype,
                      read_modes, read_ranks_or_tol, ranks_found, warn_if_larger, with_bias)

_NAME = "TensorTrainLinear"


def _ranks(value, d: int) -> tuple:
    """The d - 1 inner ranks: from one int, d - 1 ints, or d + 1 ints with 1 at both ends."""
    if is_int(value):
        ranks = (value,) * (d - 1)
    else:
        try:
            ranks = tuple(value)
        except TypeError:
            ranks = None
        if ranks is not None and len(ranks) == d + 1 and ranks[0] == ranks[-1] == 1:
            ranks = ranks[1:-1]
    ok = ranks is not None and len(ranks) == d - 1 and all(is_int(r) and r > 0 for r in ranks)
    if not ok:
        raise ValueError(
            f"{_NAME}: ranks must be one positive int, {d - 1} positive ints (between the {d} cores), "
            f"or {d + 1} with 1 at both ends; got {value!r}."
        )
    return ranks


def _rank_limits(in_modes: tuple, out_modes: tuple) -> tuple:
    """The largest useful rank between cores k and k+1: the size of the smaller side of that cut."""
    sizes = [n * m for n, m in zip(in_modes, out_modes)]
    return tuple(min(math.prod(sizes[: k + 1]), math.prod(sizes[k + 1:])) for k in range(len(sizes) - 1))


def core_edges(k: int, in_modes: tuple, out_modes: tuple, ranks: tuple) -> dict:
    """The edges of core ``G{k}`` of a network (the end cores without their rank-1 edge):
    ``r{k}``, ``i{k}``, ``o{k}``, ``r{k+1}``."""
    edges = {}
    if k > 0:
        edges[f"r{k}"] = ranks[k - 1]
    edges[f"i{k}"] = in_modes[k]
    edges[f"o{k}"] = out_modes[k]
    if k < len(in_modes) - 1:
        edges[f"r{k + 1}"] = ranks[k]
    return edges


def network_cores(cores: list) -> dict:
    """``G{k}`` -> core ``k`` as the network reads it: the first without its leading rank-1
    axis, the last without its trailing one."""
    out = {}
    for k, core in enumerate(cores):
        if k == 0:
            core = core[0]
        if k == len(cores) - 1:
            core = core[..., 0]
        out[f"G{k}"] = core
    return out


def _network(in_modes: tuple, out_modes: tuple, ranks: tuple):
    """``y[o_1..o_d] = x[i_1..i_d] G_1[i_1,o_1,r_1] G_2[r_1,i_2,o_2,r_2] ...`` as a tgjax network."""
    network = Variable("x", **{f"i{k}": n for k, n in enumerate(in_modes)})
    for k in range(len(in_modes)):
        network = network @ Variable(f"G{k}", **core_edges(k, in_modes, out_modes, ranks))
    return network


class TensorTrainLinear(FactoredLinear, eqx.Module):
    """``y = W x + b`` with ``W`` (prod(out_modes) x prod(in_modes)) a tensor train.

    Core ``k`` has shape ``(r_{k-1}, in_modes[k], out_modes[k], r_k)`` with
    ``r_0 = r_d = 1``: ``d`` small tensors instead of one big matrix. The
    forward pass contracts the input, reshaped to ``in_modes``, with the cores
    in an order planned for a batch under ``jax.vmap`` (cores are combined once
    per batch where that pays); the dense matrix is built only where it has no
    more entries than the batch's input, and only where that is cheapest.

    Follows ``eqx.nn.Linear``: keyword-only ``key``, ``__call__`` on one
    example (a vector of size ``prod(in_modes)``), ``jax.vmap`` for batches.

    Args:
        in_modes: factorisation of the input size, e.g. ``(4, 8, 8)`` for 256;
            an int is split into as many balanced modes as ``out_modes`` has
            (both ints: three each).
        out_modes: factorisation of the output size, as many modes as ``in_modes``.
        ranks: the ranks between cores: one int, ``d - 1`` ints, or ``d + 1``
            ints with 1 at both ends. A rank larger than the modes allow (the
            smaller side of its cut) is clipped, with a warning.
        use_bias: add a bias vector (default True).
        dtype: parameter dtype, a float (default: JAX's default float).
        key: a ``jax.random`` key for the initialisation.

    Examples:
        >>> layer = tnn.TensorTrainLinear((4, 8, 8), (2, 4, 4), ranks=8, key=jax.random.key(0))
        >>> y = layer(jnp.ones(256))                    # shape (32,)
        >>> ys = jax.vmap(layer)(jnp.ones((10, 256)))   # shape (10, 32)
    """

    cores: list
    bias: jax.Array | None
    in_modes: tuple = eqx.field(static=True)
    out_modes: tuple = eqx.field(static=True)
    ranks: tuple = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(self, in_modes: Sequence[int] | int, out_modes: Sequence[int] | int, ranks, *, use_bias: bool = True,
                 dtype=None, key):
        in_modes, out_modes = read_modes(in_modes, out_modes, _NAME)
        d = len(in_modes)
        ranks = clipped(_ranks(ranks, d), _rank_limits(in_modes, out_modes), _NAME)
        dtype = read_dtype(dtype, _NAME)
        self.in_modes, self.out_modes, self.ranks = in_modes, out_modes, ranks
        self.use_bias = use_bias
        # Each entry of W is a sum over prod(ranks) products of d core entries.
        std = factor_std(self.in_features, math.prod(ranks), d)
        bounds = (1,) + ranks + (1,)
        keys = jax.random.split(key, d + 1)
        self.cores = [
            std * jax.random.normal(keys[k], (bounds[k], n, m, bounds[k + 1]), dtype)
            for k, (n, m) in enumerate(zip(in_modes, out_modes))
        ]
        self.bias = initial_bias(keys[d], self.out_features, self.in_features, dtype) if use_bias else None

    @classmethod
    def from_dense(cls, weight, in_modes, out_modes, ranks=None, *, tol: float | None = None, bias=None):
        """The tensor train of a dense ``(out, in)`` weight (as ``eqx.nn.Linear.weight``), by TT-SVD.

        Cores are cut one by one from truncated SVDs of the weight's
        unfoldings (Oseledets' TT-SVD). With ``tol``, each SVD keeps the
        fewest singular values whose dropped tail is at most
        ``tol * ||W||_F / sqrt(d - 1)``, so the relative Frobenius error of the
        result is at most ``tol``; with ``ranks``, those ranks (clipped, with a
        warning, where the modes allow less). ``bias`` (as
        ``eqx.nn.Linear.bias``) becomes the layer's bias; without it the layer
        has none.

        Examples:
            >>> linear = eqx.nn.Linear(64, 16, key=jax.random.key(0))
            >>> tt = tnn.TensorTrainLinear.from_dense(linear.weight, (4, 4, 4), (2, 2, 4), tol=1e-6, bias=linear.bias)
            >>> bool(jnp.allclose(tt.dense(), linear.weight, atol=1e-5))
            True
        """
        where = f"{_NAME}.from_dense"
        w, dtype, in_modes, out_modes = read_dense_weight(weight, in_modes, out_modes, where)
        tol = read_ranks_or_tol(ranks, tol, where)
        d = len(in_modes)
        fixed = None if ranks is None else clipped(_ranks(ranks, d), _rank_limits(in_modes, out_modes), _NAME)
        cores = _tt_svd(w, in_modes, out_modes, fixed, tol)
        found = tuple(c.shape[-1] for c in cores[:-1])
        warn_if_larger(sum(c.size for c in cores), w.size, ranks_found(tol, found), where)
        layer = cls(in_modes, out_modes, found, use_bias=bias is not None, dtype=dtype, key=jax.random.key(0))
        layer = eqx.tree_at(lambda m: m.cores, layer, [jnp.asarray(c, dtype) for c in cores])
        return with_bias(layer, bias, dtype, where)

    def __call__(self, x: jax.Array, *, key=None) -> jax.Array:
        """``x``: shape ``(prod(in_modes),)``; returns shape ``(prod(out_modes),)``. ``key`` is unused."""
        shape = (self.in_modes, self.out_modes, self.ranks)
        return self._forward(x, _NAME, _network, shape, network_cores(self.cores))


def _tt_svd(w: np.ndarray, in_modes: tuple, out_modes: tuple, ranks: tuple | None, tol: float | None) -> list:
    """Cores ``(r_{k-1}, n_k, m_k, r_k)`` of ``w`` (out, in), by sequential truncated SVDs."""
    d = len(in_modes)
    # W[o_1..o_d, i_1..i_d] -> T[(i_1 o_1), (i_2 o_2), ...]: each core's pair of modes side by side
    t = w.reshape(out_modes + in_modes)
    t = t.transpose([axis for k in range(d) for axis in (d + k, k)])
    sizes = [n * m for n, m in zip(in_modes, out_modes)]
    cut = 0.0 if tol is None else tol * float(np.linalg.norm(w)) / math.sqrt(max(d - 1, 1))
    cores, rank, rest = [], 1, t.reshape(-1)
    for k in range(d - 1):
        u, s, vt = np.linalg.svd(rest.reshape(rank * sizes[k], -1), full_matrices=False)
        keep = min(ranks[k], len(s)) if ranks is not None else kept_by_tol(s, cut)
        cores.append(u[:, :keep].reshape(rank, in_modes[k], out_modes[k], keep))
        rest = s[:keep, None] * vt[:keep]
        rank = keep
    cores.append(rest.reshape(rank, in_modes[-1], out_modes[-1], 1))
    return cores
