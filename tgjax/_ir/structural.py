"""Structural tensors that are Variables to every pass but lowering, which computes them.

``tg.causal_mask(size, row, col)`` is a Variable of a reserved name: derivatives,
simplification, equality and drawing treat it as any Variable (its derivative
with respect to anything else is zero), and no array is passed for it; the
generated program computes it from its size (``jnp.tril``), so XLA folds it
into a constant.
"""

from __future__ import annotations

import re

from .nodes import Variable
from .util import as_size

# reserved variable name -> the JAX source of its array, given its size
_SOURCES: dict = {}
_PREFIX = "tg_causal_mask_"
_IOTA_PREFIX = "tg_positions_"
# the edges structural tensors are declared on (renamed to the caller's)
_ROW, _COL, _POSITION = "tg_row", "tg_col", "tg_position"


def causal_mask(size, row: str, col: str) -> Variable:
    """The 0/1 tensor with edges ``row`` and ``col`` (both of ``size``), entry 1 where
    ``col <= row``: position ``row`` may attend to positions up to itself. No array is
    passed for it; the program computes it.

    Args:
        size: the sequence length (a size symbol or an int).
        row, col: the names of its two edges (a query's and a key's position).

    Returns:
        A Variable that lowering computes, for ``F.where(mask, scores, -1e9)`` or
        ``scores * mask``.

    Examples:
        >>> s = tg.symbols("s")
        >>> M = tg.causal_mask(s, "q", "k")
        >>> tg.lower(M, sizes={s: 3})().tolist()
        [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    """
    size = as_size(size, "tg.causal_mask")
    if not all(isinstance(e, str) for e in (row, col)) or row == col:
        raise ValueError(f"tg.causal_mask: row and col must be two different edge names; got {row!r} and {col!r}.")
    name = _PREFIX + re.sub(r"\W", "_", str(size))
    _SOURCES[name] = "jnp.tril(jnp.ones(({n}, {n}), dtype))"
    # declared on fixed edge names, then renamed: masks of one size on other edges (two
    # attention layers) are then one variable, as lowering requires of one name
    return Variable(name, **{_ROW: size, _COL: size}).rename(**{_ROW: row, _COL: col})


def positions(size, edge: str) -> Variable:
    """The vector ``0, 1, ..., size - 1`` along ``edge``, computed by the program (``F.one_hot``
    compares an integer index with it)."""
    size = as_size(size, "positions")
    name = _IOTA_PREFIX + re.sub(r"\W", "_", str(size))
    _SOURCES[name] = "jnp.arange({n}).astype(dtype)"
    # declared on a fixed edge name, then renamed (as the causal mask): two lookups of one
    # size along different edges share the one variable
    return Variable(name, **{_POSITION: size}).rename(**{_POSITION: edge})


def structural_source(v: Variable, n: int) -> str | None:
    """The JAX source of ``v``'s array at size ``n`` where ``v`` is a structural tensor, else None."""
    template = _SOURCES.get(v.name)
    return None if template is None else template.format(n=n)


def is_structural(name: str) -> bool:
    return name in _SOURCES


def is_positions(name: str) -> bool:
    """Whether ``name`` is a ``positions`` vector's (``F.one_hot`` compares an index with it)."""
    return name.startswith(_IOTA_PREFIX) and name in _SOURCES
