"""A linear layer whose weight is a Tucker decomposition: a small core and a matrix per mode."""

from __future__ import annotations

import math
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._ir.nodes import Variable
from ._common import (FactoredLinear, clipped, initial_bias, kept_by_tol, read_dense_weight, read_dtype, read_modes,
                      read_positive_ints, read_ranks_or_tol, ranks_found, warn_if_larger, with_bias)

_NAME = "TuckerLinear"


def _network(in_modes: tuple, out_modes: tuple, ranks: tuple):
    """``y[o..] = x[i..] U_1[i_1,s_1] .. U_d[i_d,s_d] G[s_1..s_d,t_1..t_d] V_1[o_1,t_1] .. V_d[o_d,t_d]``."""
    d = len(in_modes)
    network = Variable("x", **{f"i{k}": n for k, n in enumerate(in_modes)})
    for k, n in enumerate(in_modes):
        network = network @ Variable(f"U{k}", **{f"i{k}": n, f"s{k}": ranks[k]})
    core = Variable("G", **{f"s{k}": ranks[k] for k in range(d)}, **{f"t{k}": ranks[d + k] for k in range(d)})
    network = network @ core
    for k, m in enumerate(out_modes):
        network = network @ Variable(f"V{k}", **{f"o{k}": m, f"t{k}": ranks[d + k]})
    return network


def _orthonormal(key, rows: int, columns: int, dtype):
    """A random ``rows x columns`` matrix with orthonormal columns (``columns <= rows``)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (rows, columns), dtype))
    return q * jnp.sign(jnp.diagonal(r))  # a uniformly random orientation of each column


class TuckerLinear(FactoredLinear, eqx.Module):
    """``y = W x + b`` with ``W`` a Tucker decomposition of the ``(out_modes, in_modes)`` tensor:
    a core ``G`` of shape ``ranks`` (input ranks, then output ranks) and one factor matrix per
    mode, ``U_k`` of shape ``(in_modes[k], s_k)`` and ``V_k`` of shape ``(out_modes[k], t_k)``.

    The forward pass projects the input onto the factors, contracts the core
    and expands onto the output factors, in an order planned for a batch under
    ``jax.vmap`` (one tgjax network per shape); the dense matrix is built only where it
    has no more entries than the batch's input, and only where that is cheapest. It starts
    from factor matrices with orthonormal columns and a Gaussian core scaled
    so that the weight has ``eqx.nn.Linear``'s variance.

    Follows ``eqx.nn.Linear``: keyword-only ``key``, ``__call__`` on one
    example (a vector of size ``prod(in_modes)``), ``jax.vmap`` for batches.

    Args:
        in_modes: factorisation of the input size (or an int, split to match ``out_modes``).
        out_modes: factorisation of the output size, as many modes as ``in_modes``.
        ranks: one int for every mode, or ``2 d`` ints, input modes first. A
            rank larger than its mode is clipped, with a warning.
        use_bias: add a bias vector (default True).
        dtype: parameter dtype, a float (default: JAX's default float).
        key: a ``jax.random`` key for the initialisation.

    Examples:
        >>> layer = tnn.TuckerLinear((8, 8, 8, 8), (2, 2, 2, 2), (4, 4, 3, 3, 2, 2, 2, 2), key=jax.random.key(0))
        >>> layer(jnp.ones(4096)).shape
        (16,)
    """

    core: jax.Array
    in_factors: list
    out_factors: list
    bias: jax.Array | None
    in_modes: tuple = eqx.field(static=True)
    out_modes: tuple = eqx.field(static=True)
    ranks: tuple = eqx.field(static=True)
    use_bias: bool = eqx.field(static=True)

    def __init__(self, in_modes: Sequence[int] | int, out_modes: Sequence[int] | int, ranks, *,
                 use_bias: bool = True, dtype=None, key):
        in_modes, out_modes = read_modes(in_modes, out_modes, _NAME)
        d = len(in_modes)
        ranks = clipped(read_positive_ints(ranks, 2 * d, "ranks", _NAME), in_modes + out_modes, _NAME)
        dtype = read_dtype(dtype, _NAME)
        self.in_modes, self.out_modes, self.ranks, self.use_bias = in_modes, out_modes, ranks, use_bias
        # Factor matrices with orthonormal columns (the form a higher-order SVD gives) and a
        # Gaussian core: each entry of W is then a Gaussian sum over the core (no heavy tails of a
        # product of many random factors), with mean variance sigma^2 prod(rank / mode) over the
        # entries; sigma makes that eqx.nn.Linear's 1 / (3 in).
        keys = jax.random.split(key, 2 * d + 2)
        modes = in_modes + out_modes
        kept = math.prod(r / m for r, m in zip(ranks, modes))
        std = math.sqrt(1.0 / (3.0 * self.in_features * kept))
        self.core = std * jax.random.normal(keys[0], ranks, dtype)
        factors = [_orthonormal(keys[1 + k], m, r, dtype) for k, (m, r) in enumerate(zip(modes, ranks))]
        self.in_factors, self.out_factors = factors[:d], factors[d:]
        self.bias = initial_bias(keys[-1], self.out_features, self.in_features, dtype) if use_bias else None

    @classmethod
    def from_dense(cls, weight, in_modes, out_modes, ranks=None, *, tol: float | None = None, bias=None):
        """The Tucker decomposition of a dense ``(out, in)`` weight (as ``eqx.nn.Linear.weight``), by
        a higher-order SVD.

        The weight, as a tensor of its ``2 d`` modes (input modes first, as
        ``ranks``), gets one factor matrix per mode: the leading left singular
        vectors of that mode's unfolding; the core is the weight projected onto
        them. With ``tol``, each mode keeps the fewest singular vectors whose
        dropped tail is at most ``tol * ||W||_F / sqrt(2 d)``, so the relative
        Frobenius error is at most ``tol`` (as TT-SVD's); with ``ranks`` (one
        int or ``2 d``), those (clipped, with a warning, to the modes). Where the
        factors hold more parameters than the weight, a ``UserWarning`` says so.

        Examples:
            >>> w = jnp.outer(jnp.arange(16.0), jnp.ones(64))   # every input mode: rank one
            >>> tk = tnn.TuckerLinear.from_dense(w, (4, 4, 4), (2, 2, 4), tol=1e-6)
            >>> tk.ranks, bool(jnp.allclose(tk.dense(), w, atol=1e-4))
            ((1, 1, 1, 2, 2, 2), True)
        """
        where = f"{_NAME}.from_dense"
        w, dtype, in_modes, out_modes = read_dense_weight(weight, in_modes, out_modes, where)
        tol = read_ranks_or_tol(ranks, tol, where)
        d = len(in_modes)
        modes = in_modes + out_modes
        fixed = None if ranks is None else clipped(read_positive_ints(ranks, 2 * d, "ranks", where), modes, _NAME)
        # W[o_1..o_d, i_1..i_d] as X[i_1..i_d, o_1..o_d]: the layer's order of modes and ranks
        x = w.reshape(out_modes + in_modes).transpose(tuple(range(d, 2 * d)) + tuple(range(d)))
        cut = 0.0 if tol is None else tol * float(np.linalg.norm(w)) / math.sqrt(2 * d)
        factors = []
        for k in range(2 * d):
            u, s, _ = np.linalg.svd(np.moveaxis(x, k, 0).reshape(modes[k], -1), full_matrices=False)
            keep = min(fixed[k], len(s)) if fixed is not None else kept_by_tol(s, cut)
            factors.append(u[:, :keep])
        core = x
        for k, u in enumerate(factors):  # project mode k onto its factor: X x_k U_k^T
            core = np.moveaxis(np.tensordot(u.T, core, axes=(1, k)), 0, k)
        found = tuple(u.shape[1] for u in factors)
        warn_if_larger(core.size + sum(u.size for u in factors), w.size, ranks_found(tol, found), where)
        layer = cls(in_modes, out_modes, found, use_bias=bias is not None, dtype=dtype, key=jax.random.key(0))
        arrays = [jnp.asarray(a, dtype) for a in factors]
        layer = eqx.tree_at(lambda m: (m.core, m.in_factors, m.out_factors), layer,
                            (jnp.asarray(core, dtype), arrays[:d], arrays[d:]))
        return with_bias(layer, bias, dtype, where)

    def __call__(self, x: jax.Array, *, key=None) -> jax.Array:
        """``x``: shape ``(prod(in_modes),)``; returns shape ``(prod(out_modes),)``. ``key`` is unused."""
        arrays = {"G": self.core}
        arrays.update({f"U{k}": u for k, u in enumerate(self.in_factors)})
        arrays.update({f"V{k}": v for k, v in enumerate(self.out_factors)})
        return self._forward(x, _NAME, _network, (self.in_modes, self.out_modes, self.ranks), arrays)
