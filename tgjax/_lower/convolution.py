"""Convolution tensors inside a network: contracted as convolutions, never built.

``C[i, j, o] = [i = j + o]`` joins its neighbours on three legs. Two ways to
contract it, tried in this order:

1. ``convolve_pairs``: two operands joined by convolution tensors (one leg
   on each, the third going elsewhere) are one ``lax.conv_general_dilated``:
   a "valid" convolution where one carries the input leg, a full one (the
   transposed convolution of a gradient) where both carry part legs. This
   is what backpropagation through a convolution layer does.
2. ``absorb_convolutions``: any other convolution is contracted with one
   neighbour ``T`` as a windowed view of ``T``, which then joins the einsum
   network like any operand:
   on the input leg ``i``: ``R[j, o] = T[j + o]`` (im2col);
   on a part leg ``o``: ``R[j, i] = T[i - j]``, the windows of ``T`` padded
   with zeros.
   The neighbour is chosen by the estimated cost of the whole network.
"""

from __future__ import annotations

import itertools
import math

import opt_einsum

from .._ir.util import EinsumLetters, UnionFind, fresh_edge


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
        code, new_legs = _window_code(c, program.read(name), edges.index(leg), leg, sizes)
        new_edges = _windowed_edges(edges, leg, new_legs, sizes, deltas)
        # a gather: every window element read and written once
        n = math.prod(sizes[e] for e in new_edges)
        operands.append((program.emit(code, f"{name} seen through windows: a convolution contracted", flops=n, elements=n), new_edges))
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


# Beyond this many convolutions in one network, or once this many complete
# sequences have been costed, choose greedily, one at a time.
_MAX_SEARCHED = 4
_MAX_COSTED = 256


def _choose(operands, convolutions, free, sizes) -> list:
    """[(convolution, operand index or None, leg)], in order, minimising the
    estimated cost: the windows' volume plus the flops of the einsum network
    that remains. The cheapest windowing of one convolution can make the next
    step expensive (a kernel seen through windows of the full width is a
    dense Toeplitz matrix), so whole sequences of choices are compared."""
    sizes = dict(sizes)
    costed = [0]

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
        new_legs = _window_legs(c, leg, sizes)
        deltas = list(deltas)
        new_edges = _windowed_edges(edges, leg, new_legs, sizes, deltas)
        ops.append((name, new_edges))
        return ops, deltas, math.prod(sizes[e] for e in new_edges)

    def best(ops, deltas, convs, depth):
        """(cost, choices) of the cheapest way to absorb ``convs``."""
        if not convs:
            costed[0] += 1
            return _network_cost(ops, deltas, free, sizes), []
        found = options(ops, convs)
        if not found:
            # nothing touches any of them: the first one is built as it is
            c = convs[0]
            cost, tail = best(ops + [("", c.edges)], deltas, convs[1:], depth)
            return cost, [(c, None, None)] + tail
        applied = [(choice, *apply(ops, deltas, choice)) for choice in found]
        if depth >= _MAX_SEARCHED or costed[0] >= _MAX_COSTED:
            # greedy: the smallest window first
            applied = [min(applied, key=lambda entry: entry[3])]
        results = []
        for choice, new_ops, new_deltas, volume in applied:
            rest = [c for c in convs if c is not choice[0]]
            cost, tail = best(new_ops, new_deltas, rest, depth + 1)
            results.append((cost + volume, [choice] + tail))
        return min(results, key=lambda r: r[0])

    return best(list(operands), [], list(convolutions), 0)[1]


def _network_cost(operands, deltas, free, sizes) -> float:
    """Estimated flops of contracting ``operands`` (Deltas join edges into one index)."""
    classes = UnionFind()
    for edges in deltas:
        classes.join(edges)
    find = classes.find
    letters = EinsumLetters()
    inputs = []
    for _, edges in operands:
        inputs.append("".join(letters.of(find(e)) for e in edges))
    output = "".join(dict.fromkeys(letters[find(e)] for e in free if find(e) in letters))
    if len(inputs) == 1:
        return math.prod(sizes[e] for e in operands[0][1])
    size_of = {letters[find(e)]: sizes[e] for _, edges in operands for e in edges}
    shapes = [tuple(size_of[ch] for ch in term) for term in inputs]
    _, info = opt_einsum.contract_path(",".join(inputs) + "->" + output, *shapes, shapes=True, optimize="greedy")
    return float(info.opt_cost)


def _window_legs(c, leg: str, sizes: dict) -> tuple:
    """The legs that replace ``leg`` when convolution ``c`` is contracted there, in axis order."""
    in_edge, a, b = c.edges
    if leg == in_edge:
        return (a, b) if sizes[a] <= sizes[b] else (b, a)  # the loop runs over the shorter part leg
    return (b if leg == a else a, in_edge)


def _window_code(c, name: str, axis: int, leg: str, sizes: dict):
    """The ``window(...)`` call contracting convolution ``c`` with the array ``name`` reads (a
    step's read token) on ``leg``; and the new legs in order."""
    p, q = legs = _window_legs(c, leg, sizes)
    if leg == c.input_edge:
        # R[p, q] = T[p + q]
        return f"window({name}, {axis}, 0, 0, 1, {sizes[p]}, {sizes[q]})", legs
    # R[p, i] = T[i - p] = T_padded[i - p + n_p - 1]
    n_p = sizes[p]
    return f"window({name}, {axis}, {n_p - 1}, {n_p - 1}, -1, {n_p}, {sizes[q]})", legs


def convolve_pairs(operands, convolutions, deltas, free, sizes: dict, program):
    """Contract each pair of operands joined by convolution tensors as one
    ``lax.conv_general_dilated``, as backpropagation would; returns the new
    operands and the convolutions left over (for windowed views).

    The pair's other edges go on to the rest of the network: a gradient
    ``x C K x' C'`` is the forward convolution ``y = x C K`` and then ``y``
    against ``x'`` (the kernel gradient) or the kernel (the data gradient).
    """
    operands, convolutions = list(operands), list(convolutions)
    changed = True
    while changed and convolutions:
        changed = False
        for i, j in itertools.combinations(range(len(operands)), 2):
            (_, ea), (_, eb) = operands[i], operands[j]
            joining = [c for c in convolutions if _joins(c, ea, eb)]
            if not joining:
                continue
            outside = set(free).union(*(set(d) for d in deltas))
            for k, (_, edges) in enumerate(operands):
                if k not in (i, j):
                    outside.update(edges)
            for c in convolutions:
                if not any(c is g for g in joining):
                    outside.update(c.edges)
            group_free = [e for e in dict.fromkeys(ea + eb + tuple(e for c in joining for e in c.edges)) if e in outside]
            found = convolution_call(operands[i], operands[j], joining, group_free, sizes, program.read)
            if found is None:
                continue
            code, edges = found
            # a multiply-add for each output entry and kernel position: every index
            # but the input legs, which the output and kernel legs determine
            inputs = {c.input_edge for c in joining}
            index = set(ea) | set(eb) | set(edges)
            flops = 2 * math.prod(sizes[e] for e in index - inputs)
            name = program.emit(code, f"convolution of {operands[i][0]} and {operands[j][0]}",
                                flops=flops, elements=math.prod(sizes[e] for e in edges))
            operands = [o for k, o in enumerate(operands) if k not in (i, j)] + [(name, edges)]
            convolutions = [c for c in convolutions if not any(c is g for g in joining)]
            changed = True
            break
    return operands, convolutions


def _joins(c, ea, eb) -> bool:
    """Convolution ``c`` has one leg on each operand and its third leg elsewhere."""
    in_a = [e for e in c.edges if e in ea]
    in_b = [e for e in c.edges if e in eb]
    return len(in_a) == 1 and len(in_b) == 1  # an edge has two ends, so the legs differ


def _legs_volume(convolutions, edges, sizes) -> int:
    return math.prod(sizes[e] for c in convolutions for e in c.edges if e in edges)


def convolution_call(first, second, convolutions, free, sizes, read):
    """One ``lax.conv_general_dilated`` for operands ``first`` and ``second`` (name, edges)
    and the convolution tensors between them: (code, output edges), or None. ``free``: the edges
    the group passes on to the rest of the network; ``read(name, perm)``: the code reading an
    operand, transposed by ``perm`` (``Program.read``).

    Each convolution joins the two operands: one carries a leg, the other
    another, the third leg is an output. If one operand ``A`` carries input
    legs it is the data, and along that axis the other, ``B``, is a "valid"
    kernel; where both carry part legs the output is the input leg, a full
    convolution (``A`` padded, ``B`` flipped), as in the gradient of a
    convolution layer with respect to its data. Edges both operands carry
    and sum are the input features, those of one operand only are batch
    (``A``) or output features (``B``). Anything else (an edge both keep, an
    input leg on both sides, an operand on two legs of one convolution) is
    left to the windowed views.
    """
    (na, ea), (nb, eb) = first, second
    data_in_a = any(c.input_edge in ea for c in convolutions)
    data_in_b = any(c.input_edge in eb for c in convolutions)
    if data_in_a and data_in_b:
        return None  # data on both sides
    if data_in_b:
        (na, ea), (nb, eb) = (nb, eb), (na, ea)
    elif not data_in_a and _legs_volume(convolutions, eb, sizes) > _legs_volume(convolutions, ea, sizes):
        # a full convolution: pad the long signal by the short one, not the reverse
        (na, ea), (nb, eb) = (nb, eb), (na, ea)
    spatial = []  # (A leg, B leg, output leg, kind)
    for c in convolutions:
        a_legs = [e for e in c.edges if e in ea]
        b_legs = [e for e in c.edges if e in eb]
        if len(a_legs) != 1 or len(b_legs) != 1:
            return None
        out = next(e for e in c.edges if e not in (a_legs[0], b_legs[0]))
        if out not in free:
            return None
        spatial.append((a_legs[0], b_legs[0], out, "valid" if a_legs[0] == c.input_edge else "full"))
    conv_legs = {e for s in spatial for e in s}
    shared = [e for e in ea if e in eb and e not in conv_legs]
    if any(e in free for e in shared):
        return None
    batch = [e for e in ea if e not in eb and e not in conv_legs]
    features = [e for e in eb if e not in ea and e not in conv_legs]
    if any(e not in free for e in batch + features):
        return None

    def grouped(name, edges, groups):
        order = [e for g in groups for e in g]
        perm = tuple(edges.index(e) for e in order)
        text = read(name, None if perm == tuple(range(len(edges))) else perm)
        shape = tuple(math.prod(sizes[e] for e in g) if len(g) != 1 else sizes[g[0]] for g in groups)
        if shape != tuple(sizes[e] for e in order):
            text = f"{text}.reshape({shape})"
        return text

    lhs = grouped(na, ea, [batch, shared] + [[a] for a, _, _, _ in spatial])
    rhs = grouped(nb, eb, [features, shared] + [[b] for _, b, _, _ in spatial])
    flips = tuple(2 + k for k, s in enumerate(spatial) if s[3] == "full")
    if flips:
        rhs = f"jnp.flip({rhs}, {flips})"
    padding = [(sizes[b] - 1, sizes[b] - 1) if kind == "full" else (0, 0) for _, b, _, kind in spatial]
    # lax wants one dtype on both sides, where einsum would promote
    code = f"lax.conv_general_dilated({lhs}.astype(dtype), {rhs}.astype(dtype), {(1,) * len(spatial)}, {padding})"
    out_edges = batch + features + [o for _, _, o, _ in spatial]
    shape = tuple(sizes[e] for e in out_edges)
    if len(batch) != 1 or len(features) != 1:
        code = f"{code}.reshape({shape})"
    return code, tuple(out_edges)
