"""Structural tensors that are Variables to every pass but lowering, which computes them.

``tg.causal_mask(size, row, col)`` is a Variable of a reserved name: derivatives,
simplification, equality and drawing treat it as any Variable (its derivative
with respect to anything else is zero), and no array is passed for it; the
generated program computes it from its size (``jnp.tril``), so XLA folds it
into a constant. The integer positions that ``F.one_hot`` compares with, and
the positions that ``F.mean_pool``, ``F.max_pool`` and ``F.concat`` look up
(``F.take``), are structural tensors too.
"""

from __future__ import annotations

import re

import sympy

from .nodes import Variable
from .util import as_size, stable_hash

# reserved variable name -> (the JAX source of its array, given its first size ``n``; the
# other sizes the source reads, by name)
_SOURCES: dict = {}
_PREFIX = "tg_causal_mask_"
_IOTA_PREFIX = "tg_positions_"
_WINDOWS_PREFIX = "tg_windows_"
_WINDOWS: dict = {}  # the name of a pooling's window positions -> its window
_PART_PREFIX = "tg_part_"
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
    name = _PREFIX + _spelled(size)
    _register(name, "jnp.tril(jnp.ones(({n}, {n}), dtype))", {})
    # declared on fixed edge names, then renamed: masks of one size on other edges (two
    # attention layers) are then one variable, as lowering requires of one name
    return Variable(name, **{_ROW: size, _COL: size}).rename(**{_ROW: row, _COL: col})


def positions(size, edge: str) -> Variable:
    """The vector ``0, 1, ..., size - 1`` along ``edge``, computed by the program (``F.one_hot``
    compares an integer index with it)."""
    size = as_size(size, "positions")
    name = _IOTA_PREFIX + _spelled(size)
    _register(name, "jnp.arange({n}).astype(dtype)", {})
    # declared on a fixed edge name, then renamed (as the causal mask): two lookups of one
    # size along different edges share the one variable
    return Variable(name, **{_POSITION: size}).rename(**{_POSITION: edge})


def window_positions(count, window: int, edge: str, within: str) -> Variable:
    """The positions ``window * p + q`` of entry ``q < window`` (along ``within``) of window
    ``p < count`` (along ``edge``): the windows of a pooling, looked up with ``F.take``."""
    count = as_size(count, "window positions")
    name = f"{_WINDOWS_PREFIX}{window}_{_spelled(count)}"
    _WINDOWS[name] = window
    _register(name, f"(jnp.arange({{n}})[:, None] * {window} + jnp.arange({window})[None, :]).astype(dtype)", {})
    return Variable(name, **{_ROW: count, _COL: window}).rename(**{_ROW: edge, _COL: within})


def part_positions(size, start, length, edge: str) -> Variable:
    """Along ``edge`` (of ``size``): the position ``j - start`` in a part of ``length`` entries
    that begins at ``start``, and ``length`` (out of the part's range) outside it: a part of
    a concatenation, looked up with ``F.take`` (a lookup out of range is a zero)."""
    size, length, start = as_size(size, "part positions"), as_size(length, "part positions"), sympy.sympify(start)
    name = f"{_PART_PREFIX}from_{_spelled(start)}_length_{_spelled(length)}_of_{_spelled(size)}"
    _register(
        name,
        "jnp.where((jnp.arange({n}) >= {start}) & (jnp.arange({n}) < {start} + {length}), "
        "jnp.arange({n}) - {start}, {length}).astype(dtype)",
        {"start": start, "length": length},
    )
    return Variable(name, **{_POSITION: size}).rename(**{_POSITION: edge})


def _spelled(size) -> str:
    """A size as part of a Python name, one name per size: where characters had to be
    replaced (``n + 1`` and ``n - 1`` both read ``n___1``), a hash of the size's text follows."""
    text = str(size)
    spelled = re.sub(r"\W", "_", text)
    return spelled if spelled == text else f"{spelled}_{stable_hash(text) % 16**8:08x}"


def _register(name: str, source: str, sizes: dict):
    """Remember the source of the structural tensor ``name``; a name means one tensor."""
    entry = (source, sizes)
    assert _SOURCES.setdefault(name, entry) == entry, f"internal error: structural tensor {name!r} defined twice"


def structural_source(v: Variable, size_of) -> str | None:
    """The JAX source of ``v``'s array where ``v`` is a structural tensor, else None;
    ``size_of``: the number a size expression has in the program."""
    entry = _SOURCES.get(v.name)
    if entry is None:
        return None
    template, sizes = entry
    return template.format(n=size_of(v.decl[0][1]), **{k: size_of(s) for k, s in sizes.items()})


def window_of(name: str) -> int | None:
    """The window of a pooling's window positions named ``name`` (lowering reads a lookup
    of them as a reshape of the table), else None."""
    return _WINDOWS.get(name)


def is_structural(name: str) -> bool:
    return name in _SOURCES


def is_positions(name: str) -> bool:
    """Whether ``name`` is a ``positions`` vector's (``F.one_hot`` compares an index with it)."""
    return name.startswith(_IOTA_PREFIX) and name in _SOURCES
