"""Functions applied along some edges: their specifications.

Primitive along one edge: ``softmax`` (keeps the edge) and ``logsumexp``
(consumes it); ``log_softmax`` and ``cross_entropy`` are built from them, so
that every derivative stays in these stable forms. Along two edges of equal
size (a matrix, other edges batched): ``inverse`` (keeps them), ``det`` and
``logdet`` (consume them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp

from .nodes import AlongEdge, Expr


@dataclass(frozen=True, eq=False)
class AlongSpec:
    name: str
    keeps_edge: bool
    apply: Callable = field(repr=False)   # apply(array, axis positions)
    code: Callable = field(repr=False)    # code(array source, axis positions) -> JAX source

    @property
    def key(self):
        return (self.name,)

    def __call__(self, t: Expr, *axes: str) -> AlongEdge:
        return AlongEdge(self, t, axes)


def _to_end(x, rows: int, cols: int):
    return jnp.moveaxis(x, (rows, cols), (-2, -1))


def matrix_inverse(x, rows: int, cols: int):
    """The inverse of the matrices laid out on axes (rows, cols), other axes batched."""
    return jnp.moveaxis(jnp.linalg.inv(_to_end(x, rows, cols)), (-2, -1), (rows, cols))


def matrix_det(x, rows: int, cols: int):
    return jnp.linalg.det(_to_end(x, rows, cols))


def matrix_logdet(x, rows: int, cols: int):
    """log(det(x)) through slogdet: exact for large or tiny determinants; nan where det < 0, as jnp.log."""
    sign, logabs = jnp.linalg.slogdet(_to_end(x, rows, cols))
    return jnp.where(sign > 0, logabs, jnp.where(sign == 0, -jnp.inf, jnp.nan))


softmax = AlongSpec(
    "softmax", True, lambda x, p: jax.nn.softmax(x, axis=p[0]), lambda x, p: f"jax.nn.softmax({x}, axis={p[0]})"
)
logsumexp = AlongSpec(
    "logsumexp", False, lambda x, p: jax.nn.logsumexp(x, axis=p[0]), lambda x, p: f"jax.nn.logsumexp({x}, axis={p[0]})"
)
inverse = AlongSpec(
    "inverse", True, lambda x, p: matrix_inverse(x, *p), lambda x, p: f"matrix_inverse({x}, {p[0]}, {p[1]})"
)
det = AlongSpec("det", False, lambda x, p: matrix_det(x, *p), lambda x, p: f"matrix_det({x}, {p[0]}, {p[1]})")
logdet = AlongSpec(
    "logdet", False, lambda x, p: matrix_logdet(x, *p), lambda x, p: f"matrix_logdet({x}, {p[0]}, {p[1]})"
)
