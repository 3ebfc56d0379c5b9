"""The few helpers that generated programs call besides jax.numpy and lax.

They build structural tensors with the cheapest XLA ops: ``delta`` makes an
output identity from an iota comparison (never a dense constant), and
``broadcast_axis`` / ``embed_diagonal`` give a contraction result the output
axes that no operand carried.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .._ir.along import matrix_det, matrix_inverse, matrix_logdet  # noqa: F401  (used by generated code)


def delta(n: int, k: int, dtype):
    """The copy tensor with ``k`` edges of size ``n`` (ones for k=1, identity for k=2)."""
    if k == 0:
        return jnp.asarray(n, dtype)
    if k == 1:
        return jnp.ones((n,), dtype)
    first = lax.broadcasted_iota(jnp.int32, (n,) * k, 0)
    same = jnp.ones((n,) * k, bool)
    for axis in range(1, k):
        same = same & (lax.broadcasted_iota(jnp.int32, (n,) * k, axis) == first)
    return same.astype(dtype)


def broadcast_axis(x, axis: int, n: int):
    """``x`` with a new axis of size ``n`` at ``axis``: a broadcast, not a copy, under jit."""
    x = jnp.expand_dims(x, axis)
    shape = list(x.shape)
    shape[axis] = n
    return jnp.broadcast_to(x, shape)


def embed_diagonal(x, axis: int, n: int):
    """``y[..., a, b, ...] = x[..., a, ...] * (a == b)``: a new axis after ``axis`` on the diagonal."""
    eye = delta(n, 2, x.dtype).reshape((1,) * axis + (n, n) + (1,) * (x.ndim - axis - 1))
    return jnp.expand_dims(x, axis + 1) * eye

