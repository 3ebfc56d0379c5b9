"""Convolution tensors inside a network: contracted as windowed views, never built.

``C[i, j, o] = [i = j + o]`` touches a neighbour operand ``T`` on one leg.
Contracting the two gives ``T`` with that leg replaced by the other two:

- on the input leg ``i``: ``R[j, o] = T[j + o]``, the windows of ``T``
  (im2col), a stack of ``min(k, w_out)`` slices;
- on a part leg ``o``: ``R[j, i] = T[i - j]``, the windows of ``T`` padded
  with zeros (the transposed convolution of a gradient).

What remains is an ordinary einsum network (the windows against the kernel),
which ``contract.plan`` orders as usual. Each convolution is absorbed into
the neighbour for which the windowed array is smallest.
"""

from __future__ import annotations

import math

import opt_einsum

from .._ir.util import fresh_edge


def absorb_convolutions(operands, convolutions, free, sizes: dict, program):
    """Replace every convolution tensor and one neighbour of it by the windowed neighbour.

    ``operands``: [(variable name, edges)]; ``free``: the network's output
    edges; ``sizes``: edge -> int (extended with any new edge). Returns
    (operands, deltas): deltas tie a window's leg to an edge its neighbour
    already had (a convolution contracted twice with one operand).
    """
    operands, convolutions, deltas = list(operands), list(convolutions), []
    choices = _choose(operands, convolutions, free, sizes)
    for c, k, leg in choices:
        convolutions.remove(c)
        if k is None:
            # No operand touches it (a convolution tensor as an output, or
            # contracted only with other convolutions): build it.
            v = program.value(c)
            operands.append((v.name, v.edges))
            continue
        name, edges = operands.pop(k)
        code, new_legs = _window_code(c, name, edges.index(leg), leg, sizes)
        new_edges = _windowed_edges(edges, leg, new_legs, sizes, deltas)
        operands.append((program.emit(code, f"{name} seen through windows: a convolution contracted"), new_edges))
    return operands, deltas


def _windowed_edges(edges, leg, new_legs, sizes, deltas):
    """``edges`` with ``leg`` replaced by ``new_legs``. A leg the operand
    already carries (it meets the convolution twice) gets a fresh name, joined
    to the old one by a Delta appended to ``deltas``."""
    renamed = []
    for e in new_legs:
        if e in edges:
            fresh = fresh_edge()
            sizes[fresh] = sizes[e]
            deltas.append((fresh, e))
            e = fresh
        renamed.append(e)
    at = edges.index(leg)
    return tuple(edges[:at]) + tuple(renamed) + tuple(edges[at + 1:])


# Beyond this many convolutions in one network, choose greedily, one at a time.
_MAX_SEARCHED = 4


def _choose(operands, convolutions, free, sizes) -> list:
    """[(convolution, operand index or None, leg)], in order, minimising the
    estimated cost: the windows' volume plus the flops of the einsum network
    that remains. The cheapest windowing of one convolution can make the next
    step expensive (a kernel seen through windows of the full width is a
    dense Toeplitz matrix), so whole sequences of choices are compared."""
    sizes = dict(sizes)

    def options(ops, convs):
        out = []
        for c in convs:
            for k, (_, edges) in enumerate(ops):
                for leg in c.edges:
                    if leg in edges:
                        out.append((c, k, leg))
        return out

    def apply(ops, deltas, choice):
        c, k, leg = choice
        ops = list(ops)
        name, edges = ops.pop(k)
        new_legs = _window_code(c, name, edges.index(leg), leg, sizes)[1]
        deltas = list(deltas)
        new_edges = _windowed_edges(edges, leg, new_legs, sizes, deltas)
        ops.append((name, new_edges))
        return ops, deltas, math.prod(sizes[e] for e in new_edges)

    def best(ops, deltas, convs, depth):
        """(cost, choices) of the cheapest way to absorb ``convs``."""
        if not convs:
            return _network_cost(ops, deltas, free, sizes), []
        found = options(ops, convs)
        if not found:
            # nothing touches any of them: the first one is built as it is
            c = convs[0]
            cost, tail = best(ops + [("", c.edges)], deltas, convs[1:], depth)
            return cost, [(c, None, None)] + tail
        if depth >= _MAX_SEARCHED:
            # greedy: the smallest window first
            found = [min(found, key=lambda ch: apply(ops, deltas, ch)[2])]
        results = []
        for choice in found:
            new_ops, new_deltas, volume = apply(ops, deltas, choice)
            rest = [c for c in convs if c is not choice[0]]
            cost, tail = best(new_ops, new_deltas, rest, depth + 1)
            results.append((cost + volume, [choice] + tail))
        return min(results, key=lambda r: r[0])

    return best(list(operands), [], list(convolutions), 0)[1]


def _network_cost(operands, deltas, free, sizes) -> float:
    """Estimated flops of contracting ``operands`` (Deltas join edges into one index)."""
    parent: dict = {}

    def find(e):
        while parent.get(e, e) != e:
            e = parent[e]
        return e

    for a, b in deltas:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra
    letters: dict = {}
    inputs = []
    for _, edges in operands:
        inputs.append("".join(letters.setdefault(find(e), opt_einsum.get_symbol(len(letters))) for e in edges))
    output = "".join(dict.fromkeys(letters[find(e)] for e in free if find(e) in letters))
    if len(inputs) == 1:
        return math.prod(sizes[e] for e in operands[0][1])
    size_of = {letters[find(e)]: sizes[e] for _, edges in operands for e in edges}
    shapes = [tuple(size_of[ch] for ch in term) for term in inputs]
    _, info = opt_einsum.contract_path(",".join(inputs) + "->" + output, *shapes, shapes=True, optimize="greedy")
    return float(info.opt_cost)


def _window_code(c, name: str, axis: int, leg: str, sizes: dict):
    """The ``window(...)`` call contracting convolution ``c`` with array ``name`` on ``leg``; and the new legs in order."""
    in_edge, a, b = c.edges
    if leg == in_edge:
        # R[p, q] = T[p + q]: loop over the shorter part leg
        p, q = (a, b) if sizes[a] <= sizes[b] else (b, a)
        return f"window({name}, {axis}, 0, 0, 1, {sizes[p]}, {sizes[q]})", (p, q)
    other = b if leg == a else a
    # R[p, i] = T[i - p] = T_padded[i - p + n_p - 1]
    n_p = sizes[other]
    return f"window({name}, {axis}, {n_p - 1}, {n_p - 1}, -1, {n_p}, {sizes[in_edge]})", (other, in_edge)
