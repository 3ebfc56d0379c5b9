"""Planning one tensor network: Deltas become shared indices, opt_einsum orders the pairwise steps.

A Delta inside a network is never materialised: its edges are one index
(a hyperedge), which gives a diagonal, a broadcast, a trace or an elementwise
product inside the einsum steps. Output edges that no operand carries are
added after the contraction (a broadcast, or a diagonal for an identity pair).
"""

from __future__ import annotations

from dataclasses import dataclass

import opt_einsum


@dataclass
class Step:
    """One einsum over named operands; its result is named ``out``."""

    equation: str
    operands: list
    out: str


@dataclass
class Plan:
    steps: list            # [Step]
    result: str            # the name of the contraction result (or None: no operand)
    axes: list             # one class per axis of ``result``
    post: list             # [("broadcast" | "diagonal", axis, size, new label)]
    labels: list           # labels of the axes after post-processing (free edge names)
    scale: int             # product of the sizes of closed Delta loops


def _optimizer(n: int):
    # Exact search is cheap for small networks; beyond that dynamic programming
    # and then random-greedy, all minimising flops and memory together.
    if n <= 4:
        return "optimal"
    if n <= 12:
        return opt_einsum.DynamicProgramming(minimize="combo", search_outer=True)
    return opt_einsum.RandomGreedy(minimize="combo", max_repeats=64)


def plan(operands, deltas, free, sizes, new_name, known=None) -> Plan:
    """``operands``: [(name, edges)]; ``deltas``: [edges]; ``free``: output edges in order;
    ``sizes``: edge -> int; ``new_name()``: a fresh variable name for intermediate results;
    ``known(inputs, output_letters, names)``: the name and output letter order of a
    pairwise contraction computed before, or None."""
    parent = {}

    def find(e):
        parent.setdefault(e, e)
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    for edges in deltas:
        for e in edges:
            find(e)
        for e in edges[1:]:
            a, b = find(edges[0]), find(e)
            if a != b:
                parent[b] = a
    for _, edges in operands:
        for e in edges:
            find(e)
    for e in free:
        find(e)

    letters = {}
    for _, edges in operands:
        for e in edges:
            letters.setdefault(find(e), opt_einsum.get_symbol(len(letters)))
    carried = set(letters)

    scale = 1
    seen_classes = {find(e) for e in parent}
    free_classes = {find(e) for e in free}
    for c in seen_classes - carried - free_classes:
        scale *= sizes[c]

    out_classes = []
    for e in free:
        c = find(e)
        if c in carried and c not in out_classes:
            out_classes.append(c)

    steps = []
    result = None
    if operands:
        inputs = ["".join(letters[find(e)] for e in edges) for _, edges in operands]
        output = "".join(letters[c] for c in out_classes)
        size_of = {letters[find(e)]: sizes[e] for _, edges in operands for e in edges}
        names = [name for name, _ in operands]
        if known is not None:
            inputs, names = _reuse(inputs, names, output, known)
        if len(inputs) == 1:
            if inputs[0] != output:
                result = new_name()
                steps.append(Step(f"{inputs[0]}->{output}", names, result))
            else:
                result = names[0]
        else:
            shapes = [tuple(size_of[ch] for ch in term) for term in inputs]
            equation = ",".join(inputs) + "->" + output
            _, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=_optimizer(len(inputs)))
            for contract_inds, _, einsum_str, _, _ in info.contraction_list:
                args = [names.pop(k) for k in contract_inds]
                out = new_name()
                steps.append(Step(einsum_str, args, out))
                names.append(out)
            result = names[-1]

    # Post-process: add the output axes that no operand carries.
    labels = []
    for c in out_classes:
        labels.append(next(e for e in free if find(e) == c))
    axes = list(out_classes)
    post = []
    for e in free:
        c = find(e)
        if e in labels:
            continue
        if c in carried or c in axes:
            at = max(k for k, a in enumerate(axes) if a == c)
            post.append(("diagonal", at, sizes[e], e))
            axes.insert(at + 1, c)
            labels.insert(at + 1, e)
        else:
            post.append(("broadcast", len(axes), sizes[e], e))
            axes.append(c)
            labels.append(e)
    return Plan(steps, result, out_classes, post, labels, scale)


def _reuse(inputs, names, output, known):
    """Replace operand pairs whose contraction was already computed elsewhere by its result."""
    inputs, names = list(inputs), list(names)
    changed = True
    while changed and len(inputs) > 1:
        changed = False
        for i in range(len(inputs)):
            for j in range(i + 1, len(inputs)):
                others = "".join(inputs[k] for k in range(len(inputs)) if k not in (i, j)) + output
                pair = inputs[i] + inputs[j]
                keep = "".join(dict.fromkeys(ch for ch in pair if ch in others))
                found = known((inputs[i], inputs[j]), keep, (names[i], names[j]))
                if found is None:
                    continue
                name, letters = found
                for k in (j, i):
                    inputs.pop(k)
                    names.pop(k)
                inputs.append(letters)
                names.append(name)
                changed = True
                break
            if changed:
                break
    return inputs, names
