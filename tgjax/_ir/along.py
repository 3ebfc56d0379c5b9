"""Functions applied along one edge: their specifications.

Only two are primitive: ``softmax`` (keeps the edge) and ``logsumexp``
(consumes it). ``log_softmax`` and ``cross_entropy`` are built from them, so
that every derivative stays in terms of these stable forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax

from .nodes import AlongEdge, Expr


@dataclass(frozen=True, eq=False)
class AlongSpec:
    name: str
    keeps_edge: bool
    apply: Callable = field(repr=False)   # apply(array, axis)
    jax_name: str = ""                    # how generated code spells it

    @property
    def key(self):
        return (self.name,)

    def __call__(self, t: Expr, edge: str) -> AlongEdge:
        return AlongEdge(self, t, edge)


softmax = AlongSpec("softmax", True, lambda x, axis: jax.nn.softmax(x, axis=axis), "jax.nn.softmax")
logsumexp = AlongSpec("logsumexp", False, lambda x, axis: jax.nn.logsumexp(x, axis=axis), "jax.nn.logsumexp")
