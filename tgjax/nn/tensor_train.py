"""A linear layer whose weight is a tensor train, contracted core by core, never dense."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from .._ir.nodes import Variable
from .._lower.api import lower


def _modes(value, name: str) -> tuple:
    try:
        modes = tuple(value)
    except TypeError:
        modes = None
    if not modes or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in modes):
        raise ValueError(f"TensorTrainLinear: {name} must be a non-empty sequence of positive ints; got {value!r}.")
    return modes


def _ranks(value, d: int) -> tuple:
    """The d - 1 inner ranks: from one int, d - 1 ints, or d + 1 ints with 1 at both ends."""
    if isinstance(value, int) and not isinstance(value, bool):
        ranks = (value,) * (d - 1)
    else:
        try:
            ranks = tuple(value)
        except TypeError:
            ranks = None
        if ranks is not None and len(ranks) == d + 1 and ranks[0] == ranks[-1] == 1:
            ranks = ranks[1:-1]
    ok = ranks is not None and len(ranks) == d - 1 and all(
        isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in ranks)
    if not ok:
        raise ValueError(
            f"TensorTrainLinear: ranks must be one positive int, {d - 1} positive ints (between the {d} cores), "
            f"or {d + 1} with 1 at both ends; got {value!r}."
        )
    return ranks


@functools.lru_cache(maxsize=None)
def _contraction(in_modes: tuple, out_modes: tuple, ranks: tuple):
    """The lowered network ``y[o_1..o_d] = x[i_1..i_d] G_1[i_1,o_1,r_1] G_2[r_1,i_2,o_2,r_2] ...``.

    Built once per shape with tgjax itself: opt_einsum plans the order, so
    the dense (prod in) x (prod out) matrix is never formed.
    """
    d = len(in_modes)
    x = Variable("x", **{f"i{k}": n for k, n in enumerate(in_modes)})
    network = x
    for k, (n, m) in enumerate(zip(in_modes, out_modes)):
        edges = {}
        if k > 0:
            edges[f"r{k}"] = ranks[k - 1]
        edges[f"i{k}"] = n
        edges[f"o{k}"] = m
        if k < d - 1:
            edges[f"r{k + 1}"] = ranks[k]
        network = network @ Variable(f"G{k}", **edges)
    return lower(network)


class TensorTrainLinear(eqx.Module):
    """``y = W x + b`` with ``W`` (prod(out_modes) x prod(in_modes)) a tensor train.

    Core ``k`` has shape ``(r_{k-1}, in_modes[k], out_modes[k], r_k)`` with
    ``r_0 = r_d = 1``: ``d`` small tensors instead of one big matrix. The
    forward pass contracts the input, reshaped to ``in_modes``, with the cores
    in the order opt_einsum plans, so the dense matrix is never built.

    Follows ``eqx.nn.Linear``: keyword-only ``key``, ``__call__`` on one
    example (a vector of size ``prod(in_modes)``), ``jax.vmap`` for batches.

    Args:
        in_modes: factorisation of the input size, e.g. ``(4, 8, 8)`` for 256.
        out_modes: factorisation of the output size, as many modes as ``in_modes``.
        ranks: the ranks between cores: one int, or ``len(in_modes) - 1`` ints.
        use_bias: add a bias vector (default True).
        dtype: parameter dtype (default: JAX's default float).
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

    def __init__(self, in_modes: Sequence[int], out_modes: Sequence[int], ranks, *, use_bias: bool = True,
                 dtype=None, key):
        in_modes, out_modes = _modes(in_modes, "in_modes"), _modes(out_modes, "out_modes")
        if len(in_modes) != len(out_modes):
            raise ValueError(
                f"TensorTrainLinear: in_modes and out_modes need one mode per core, as many of each; "
                f"got {len(in_modes)} in_modes {in_modes} and {len(out_modes)} out_modes {out_modes}."
            )
        d = len(in_modes)
        ranks = _ranks(ranks, d)
        dtype = jnp.result_type(float) if dtype is None else dtype
        self.in_modes, self.out_modes, self.ranks = in_modes, out_modes, ranks
        self.use_bias = use_bias
        # Each entry of W is a sum over prod(ranks) products of d core entries;
        # scale the cores so that W has the variance of eqx.nn.Linear's
        # uniform(-1/sqrt(in), 1/sqrt(in)) initialisation, 1 / (3 in).
        target = 1.0 / (3.0 * self.in_features)
        std = (target / math.prod(ranks)) ** (1.0 / (2 * d))
        bounds = (1,) + ranks + (1,)
        keys = jax.random.split(key, d + 1)
        self.cores = [
            std * jax.random.normal(keys[k], (bounds[k], n, m, bounds[k + 1]), dtype)
            for k, (n, m) in enumerate(zip(in_modes, out_modes))
        ]
        if use_bias:
            limit = 1.0 / math.sqrt(self.in_features)
            self.bias = jax.random.uniform(keys[d], (self.out_features,), dtype, -limit, limit)
        else:
            self.bias = None

    @property
    def in_features(self) -> int:
        return math.prod(self.in_modes)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_modes)

    def __call__(self, x: jax.Array, *, key=None) -> jax.Array:
        """``x``: shape ``(prod(in_modes),)``; returns shape ``(prod(out_modes),)``. ``key`` is unused."""
        x = jnp.asarray(x)
        if x.shape != (self.in_features,):
            raise ValueError(
                f"TensorTrainLinear: expected one example of shape ({self.in_features},) (in_modes {self.in_modes}); "
                f"got shape {x.shape}. Map over a batch with jax.vmap(layer)."
            )
        d = len(self.in_modes)
        cores = {}
        for k, core in enumerate(self.cores):
            if k == 0:
                core = core[0]
            if k == d - 1:
                core = core[..., 0]
            cores[f"G{k}"] = core
        y = _contraction(self.in_modes, self.out_modes, self.ranks)(x=x.reshape(self.in_modes), **cores)
        y = y.reshape(self.out_features)
        return y + self.bias if self.use_bias else y

    def dense(self) -> jax.Array:
        """The weight as a dense (out_features, in_features) matrix, for tests and inspection only."""
        columns = jax.vmap(self)(jnp.eye(self.in_features, dtype=self.cores[0].dtype))
        return (columns - self.bias if self.use_bias else columns).T
