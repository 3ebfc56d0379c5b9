"""Integer lookups: a one-hot product lowered to a gather, and its transpose to a scatter-add.

``F.take(table, index, edge)`` is the network ``one_hot(index, edge) @ table``;
``F.one_hot`` compares the index with the positions along ``edge``. Built as
written, that is a dense ``(index..., edge)`` 0/1 array and a matrix product
over the whole table. In a product's network (``network.network``) the
one-hot is recognised instead (``selector``):

- where its ``edge`` meets exactly one other operand (the table), the pair is
  ``jnp.take(table, index, axis)``: the forward lookup;
- where its ``edge`` is free and its index edges are contracted with the rest
  (the table's gradient, ``one_hot^T g``), or spread along by a ones vector (a
  pooling window's entries, given the window's cotangent), the rest is
  contracted keeping the index edges, then added into the rows the index picks
  (``.at[index].add``): the scatter-add of backpropagation. Several such
  one-hots in one product (a 2-D pooling's gradient) are one scatter-add with
  an index per axis.

Any other use keeps the dense one-hot, which has the same value.
"""

from __future__ import annotations

from typing import NamedTuple

from .._ir.elementwise import equal
from .._ir.nodes import Delta, Expr, Function, Product
from .._ir.structural import is_positions


class Lookup(NamedTuple):
    """A one-hot in a product's network, edge names as in the network."""

    node: Expr          # the one-hot (``F.one_hot(index, edge, size)`` as built)
    names: dict         # its renaming into the network
    index: object       # the index's Value
    index_edges: tuple  # the index's edges
    edge: str           # the edge it picks along
    joined: dict        # the renaming of its edges where views' Deltas joined them
    window: int | None = None  # where the index is a pooling's window positions, its window


def _core(u: Expr):
    """``u`` without the ones vectors it is broadcast along: (core, broadcast edges)."""
    if not isinstance(u, Product):
        return u, ()
    ones = [f for f in u.factors if isinstance(f, Delta) and len(f.edges) == 1]
    rest = [f for f in u.factors if not any(f is o for o in ones)]
    if len(rest) != 1 or set(rest[0].edges) != set(u.edges) - {f.edges[0] for f in ones}:
        return None, ()
    return rest[0], tuple(f.edges[0] for f in ones)


def selector(f: Expr):
    """(index, edge) where ``f`` is ``F.one_hot(index, edge, size)`` as built, else None."""
    if not isinstance(f, Function) or f.spec is not equal:
        return None
    index, spread = _core(f.inputs[0])
    positions, _ = _core(f.inputs[1])
    if index is None or positions is None or not is_positions(getattr(positions, "name", "")):
        return None
    edge = positions.edges[0]
    if spread != (edge,) or edge in index._shape:
        return None
    return index, edge


def gathered(operands: list, deltas: list, free: set, lookups: list, sizes: dict, program) -> tuple[list, list]:
    """``operands`` with each lookup whose edge meets exactly one operand (and no Delta, and is
    not free) fused with it into ``jnp.take``, and the lookups left over (the dense one-hot
    then). ``lookups``: the network's ``Lookup``s; ``sizes``: its edge sizes."""
    left = []
    for lookup in lookups:
        index, index_edges, edge = lookup.index, lookup.index_edges, lookup.edge
        holders = [k for k, (_, edges) in enumerate(operands) if edge in edges]
        if (len(holders) == 1 and edge not in free and not any(edge in d for d in deltas)
                and operands[holders[0]][1].count(edge) == 1 and not set(index_edges) & set(operands[holders[0]][1])):
            table, edges = operands[holders[0]]
            axis = edges.index(edge)
            out = edges[:axis] + index_edges + edges[axis + 1:]
            rows = program.read(table)
            if lookup.window is not None:
                # a pooling's windows: the table's entries, cut into windows, read in place
                count = sizes[index_edges[0]]
                code = f"windows({rows}, {axis}, {count}, {lookup.window})"
                name = program.emit(code, "windows: the entries along an edge cut into windows")
            else:
                elements = 1
                for e in out:
                    elements *= sizes[e]
                picks = program.read(index.name)
                code = f"jnp.take({rows}, {picks}.astype(jnp.int32), axis={axis}, mode='fill', fill_value=0)"
                name = program.emit(code, "take: rows picked by an integer index", elements=elements)
            operands[holders[0]] = (name, out)
        else:
            left.append(lookup)
    return operands, left


def scattered_lookups(operands: list, deltas: list, free: set, lookups: list) -> tuple:
    """The lookups (``gathered``'s leftovers, all of them) when each one's edge is free and met
    by nothing else, and its index edges (apart from every other's) are carried and
    contracted by the other operands, or spread along by a ones vector (a pooling's
    windows, each entry of a window given the same cotangent): the product is then a
    scatter-add of the rest into the entries the indices pick, one axis per lookup (a 2-D
    pooling's gradient has two). An empty tuple where they are not all such."""
    carried = {e for _, edges in operands for e in edges}
    spread = {d[0] for d in deltas if len(d) == 1}
    joined = {e for d in deltas if len(d) > 1 for e in d}
    seen: set = set()
    for lookup in lookups:
        index_edges, edge = lookup.index_edges, lookup.edge
        if (edge not in free or edge in carried or any(edge in d for d in deltas) or set(index_edges) & free
                or not set(index_edges) <= carried | spread or set(index_edges) & (joined | seen)):
            return ()
        seen.update(index_edges)
    return tuple(lookups)
