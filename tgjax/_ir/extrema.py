"""``max`` and ``min`` along edges, as function objects (see ``along.py`` for the design).

Their derivative follows JAX (``lax.reduce_max``'s rule): the incoming
derivative goes to the entries that attain the extremum, shared equally
among ties. The share is ``ties(u, m) / sum ties(u, m)``, where ``m`` is the
extremum broadcast back along the axes and ``ties`` the elementwise
indicator of equality, whose own derivative is zero, so every higher
derivative is zero too (as JAX's).
"""

from __future__ import annotations

from .along import AlongFunction, axis_argument
from .elementwise import ElementwiseFunction, power
from .nodes import AlongEdge, Expr, Zero, broadcast_to, elementwise_product, summed
from .rename import hadamard

ties = ElementwiseFunction(
    "ties", "jnp.where({0} == {1}, 1, 0).astype(dtype)", lambda a, b: [Zero._make(a.shape), Zero._make(b.shape)],
    arity=2,
)


def _share(t: AlongEdge) -> Expr:
    """The weight of each input entry in the extremum: 1 / (how many attain it) where it is attained, else 0."""
    u, axes = t.input, list(t.axes)
    attained = ties(u, broadcast_to(t, u._shape))
    return elementwise_product(attained, broadcast_to(power(-1)(summed(attained, axes)), u._shape), where="extremum")


def _differential(t: AlongEdge, du: Expr) -> Expr:
    """d max(u) = sum over the axes of share * du."""
    return summed(elementwise_product(_share(t), du, where="chain rule"), list(t.axes))


def _pullback(t: AlongEdge, g: Expr) -> Expr:
    """m = max(u): du = share * g, broadcast along the axes."""
    u = t.input
    return hadamard(broadcast_to(g, {a: u._shape[a] for a in t.axes}), _share(t))


max_ = AlongFunction(
    "max", False, None, lambda x, p: f"jnp.max({x}, axis={axis_argument(p)})", _differential, _pullback,
    latex=r"\max_{{{axes}}}\left({inner}\right)",
)
min_ = AlongFunction(
    "min", False, None, lambda x, p: f"jnp.min({x}, axis={axis_argument(p)})", _differential, _pullback,
    latex=r"\min_{{{axes}}}\left({inner}\right)",
)

BUILTINS = (max_, min_)
