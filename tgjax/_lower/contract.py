"""Planning one tensor network: Deltas become shared indices, opt_einsum orders the pairwise steps.

A Delta inside a network is never materialised: its edges are one index
(a hyperedge), which gives a diagonal, a broadcast, a trace or an elementwise
product inside the einsum steps. Output edges that no operand carries are
added after the contraction (a broadcast, or a diagonal for an identity pair).
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import dataclass

import opt_einsum

from .._ir.util import EinsumLetters, UnionFind, einsum_letter


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
    post: list             # [("broadcast" | "diagonal", axis, size, new label)]
    labels: list           # labels of the axes after post-processing (free edge names)
    scale: int             # product of the sizes of closed Delta loops
    letter_sizes: dict     # einsum index letter -> size


# Thresholds from plan times measured with opt_einsum 3.4 on chains of
# matrices, tensor trains, MLP gradients and random networks: dynamic
# programming that also tries outer products plans 8 operands in under 15 ms
# and finds up to 4x cheaper orders than without them, but takes ~1 s at 12.
# Over connected subgraphs only, it stays under ~1 s up to 20 operands (tens
# of ms on chains and trains) yet reaches 5-20 s at 40-80. Random greedy then
# takes 0.1-0.4 s at 24-80 operands for orders 1-2.7x the dynamic-programming cost.
# Past a few hundred operands (a deep derivative's normal form joins one factor per
# layer) 128 random trials take seconds (12 s at 2,000 vectors on one edge), and
# one greedy pass 0.04 s.
_DP_OUTER_MAX = 8
_DP_MAX = 20
_RANDOM_MAX = 200
_RANDOM_REPEATS = 128


def _optimizer(n: int) -> str:
    """The name of the path search for a network of ``n`` operands (a key of ``_OPTIMIZERS``)."""
    if n <= _DP_OUTER_MAX:
        return "dp-outer"
    if n <= _DP_MAX:
        return "dp"
    if n <= _RANDOM_MAX:
        return "random-greedy"
    return "greedy"


# "combo" counts flops plus the memory written by each step; random greedy
# supports only one of the two, and flops is what the others weigh most.
_OPTIMIZERS = {
    "dp-outer": lambda: opt_einsum.DynamicProgramming(minimize="combo", search_outer=True),
    "dp": lambda: opt_einsum.DynamicProgramming(minimize="combo"),
    "random-greedy": lambda: opt_einsum.RandomGreedy(minimize="flops", max_repeats=_RANDOM_REPEATS),
    "greedy": lambda: "greedy",
}


@functools.lru_cache(maxsize=4096)
def _contraction_order(equation: str, shapes: tuple, optimizer: str) -> tuple:
    """``((operand positions, einsum string), ...)``: opt_einsum's pairwise steps, planned once
    per network and laid out (``_laid_out``).

    One program often holds many copies of the same product (a forward pass and
    every term of its gradient), so the search runs once for each.
    """
    # RandomGreedy reseeds the global ``random`` module for reproducible trials;
    # the user's own random stream must not change because they lowered something.
    state = random.getstate()
    try:
        # A fresh optimiser each time: the random ones keep their best path
        # between calls and refuse a second, different network.
        _, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=_OPTIMIZERS[optimizer]())
    finally:
        random.setstate(state)
    order = tuple((tuple(inds), einsum_str) for inds, _, einsum_str, _, _ in info.contraction_list)
    return _laid_out(order, equation.split("->")[0].split(","))


def plan(operands, deltas, free, sizes, new_name, known=None, mapped=frozenset()) -> Plan:
    """``operands``: [(name, edges)]; ``deltas``: [edges]; ``free``: output edges in order;
    ``sizes``: edge -> int; ``new_name()``: a fresh variable name for intermediate results;
    ``known``: the pairwise contractions computed before (a ``Program``):
    ``known.known_pair(inputs, output_letters, names)`` gives the name and output letter
    order of one, or None, and ``known.partners`` the names each operand name was
    contracted with; ``mapped``: names of operands that are
    one example of a batch mapped by ``jax.vmap`` (``mapped_order``)."""
    classes = UnionFind()
    find = classes.find
    for edges in deltas:
        classes.join(edges)
    for _, edges in operands:
        for e in edges:
            find(e)
    for e in free:
        find(e)

    letters = EinsumLetters()
    for _, edges in operands:
        for e in edges:
            letters.of(find(e))
    carried = set(letters)

    scale = 1
    seen_classes = {find(e) for e in classes}
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
        laid = output  # the layout the result comes in
        if len(inputs) == 1:
            if sorted(inputs[0]) == sorted(output) and len(set(output)) == len(output):
                # a permutation: the operand is the result, in its own layout
                # (a consumer reads it in the order it wants, fused)
                result, laid = names[0], inputs[0]
            else:
                result = new_name()
                steps.append(Step(f"{inputs[0]}->{output}", names, result))
        else:
            batched = frozenset(k for k, name in enumerate(names) if name in mapped)
            if batched and len(batched) < len(inputs) and len(inputs) <= MAPPED_MAX:
                order = mapped_order(tuple(inputs), output, size_of, batched, einsum_letter(len(letters)))
            else:
                shapes = tuple(tuple(size_of[ch] for ch in term) for term in inputs)
                order = _contraction_order(",".join(inputs) + "->" + output, shapes, _optimizer(len(inputs)))
            for contract_inds, einsum_str in order:
                args = [names.pop(k) for k in contract_inds]
                out = new_name()
                steps.append(Step(einsum_str, args, out))
                names.append(out)
            result = names[-1]
            laid = order[-1][1].split("->")[1]  # as its last step chose (``_laid_out``)
        by_letter = {letters[c]: c for c in out_classes}
        out_classes = [by_letter[ch] for ch in laid]

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
    letter_sizes = {letters[c]: sizes[c] for c in letters}
    return Plan(steps, result, post, labels, scale, letter_sizes)


def _laid_out(order, inputs) -> tuple:
    """``order`` with each intermediate's axes laid out for the step that uses it.

    The next contraction wants an intermediate's batch indices (those both its
    operands keep) first and the indices it sums last; otherwise XLA copies the
    intermediate into that layout first. An einsum step's result does not come
    out in any order at no cost, though: XLA:CPU's dot writes fast only the
    orders of ``_dot_orders`` (batch, then the kept indices of an operand that
    sums its last axes, then the other's), so a contraction of two operands
    picks among those the one closest to that wish (least squares' ``H v``:
    1.66x -> 1.14x JAX's time; the tensor-train layers 1.1-1.3x faster).

    A step that sums nothing (an
    elementwise product) with a full-size operand from outside the network (a
    function's value, an input) is computed in that operand's layout, and so is
    the intermediate it multiplies: XLA:CPU runs an elementwise loop that reads
    an operand transposed without vectorising it, the operand's own fused work
    (a gelu derivative's erf) included, 4x slower in the transformer block's
    gradient. Other elementwise steps keep the layout of their intermediate
    input, and pass on the wish of the contraction after them. The last step
    keeps the output order asked for unless it is such an elementwise product
    (``plan`` reads the result's layout from the last step). Measured on XLA:CPU:
    the tanh MLP Hessian 1.5x faster, the tensor-train gradient 1.2x, the
    4096 -> 16 tensor-train layer 1.4x.
    """
    sides = [eq.split("->")[0].split(",") for _, eq in order]
    kept = [eq.split("->")[1] for _, eq in order]
    sums = [bool(set("".join(ins)) - set(out)) for ins, out in zip(sides, kept)]
    operands = [None] * len(inputs)  # the operand list: None for an input, else the step that made it
    consumer = {}
    fixed = {}  # elementwise step -> the layout of its full-size input operand
    for k, (inds, _) in enumerate(order):
        made = [operands.pop(i) for i in inds]
        for m in made:
            if m is not None:
                consumer[m] = k
        if not sums[k]:
            full = [t for t, m in zip(sides[k], made) if m is None and len(t) == len(kept[k]) == len(set(t))
                    and set(t) == set(kept[k])]
            if full:
                fixed[k] = full[0]
        operands.append(k)

    def wish(k: int):
        """(the other operand, the result) of the first contraction after step ``k``, or None."""
        c = consumer.get(k)
        while c is not None and not sums[c]:
            k, c = c, consumer.get(c)
        if c is None:
            return None
        other = next((t for t in sides[c] if set(t) != set(kept[k])), sides[c][0])
        return other, set(kept[c])

    terms = [(t, False) for t in inputs]  # (letters, whether an intermediate) of the operand list
    steps = []
    for k, (inds, _) in enumerate(order):
        picked = [terms.pop(i) for i in inds]
        letters = kept[k]
        c = consumer.get(k)
        if k in fixed:
            letters = fixed[k]
        elif c is not None and c in fixed and set(letters) <= set(fixed[c]):
            letters = "".join(ch for ch in fixed[c] if ch in letters)
        elif c is not None and sums[k]:
            target = wish(k)
            if target is not None:
                other, out = target
                rank = {ch: (ch not in other or ch not in out) + (ch not in out) for ch in letters}
                natural = _dot_orders([t for t, _ in picked], letters)
                if natural:
                    letters = min(natural, key=lambda order: [rank[ch] for ch in order])
                else:
                    letters = "".join(sorted(letters, key=rank.__getitem__))
        elif c is not None:
            # an elementwise step keeps its largest intermediate input's layout
            bases = [t for t, made in picked if made and set(letters) <= set(t)]
            if bases:
                letters = "".join(ch for ch in max(bases, key=len) if ch in letters)
        steps.append((inds, ",".join(t for t, _ in picked) + "->" + letters))
        terms.append((letters, True))
    return tuple(steps)


def _dot_orders(operands: list, letters: str) -> list:
    """The output orders XLA:CPU writes fast for a contraction of two operands: the batch
    letters, then the kept letters of one operand (the left), then the other's, each in
    its own layout, where the left operand has the letters it sums last. Measured on
    XLA:CPU, ``X[b,d] V[d,o]``: 0.7 ms written ``(b, o)``, 3.3 ms written ``(o, b)`` (the
    left operand would be ``V``, which sums its first axis). Empty where neither
    operand can be the left one, or the step is no plain product of two operands."""
    if len(operands) != 2 or any(len(set(t)) != len(t) for t in operands):
        return []  # not a plain matrix product (a diagonal read off an operand)
    batch = [ch for ch in operands[0] if ch in operands[1] and ch in letters]
    orders = []
    for left, right in (operands, operands[::-1]):
        summed = [ch for ch in left if ch not in letters]
        if not summed or set(left[len(left) - len(summed):]) != set(summed):
            continue
        order = batch + [ch for ch in left if ch in letters and ch not in batch]
        order += [ch for ch in right if ch in letters and ch not in order]
        if set(order) == set(letters):
            orders.append("".join(order))
    return orders


# Mapped orders are searched exhaustively over subsets (3^n pairs): 59,049 at 10 operands.
MAPPED_MAX = 10
MAPPED_BATCH = 256  # the batch size a mapped product is ordered for
_COMBO_FACTOR = 64   # opt_einsum's "combo" weight of an entry written against one FLOP


def mapped_order(inputs: tuple, output: str, size_of: dict, batched: frozenset, batch: str) -> tuple:
    """Pairwise steps (as ``_contraction_order`` gives them) for the network ``inputs -> output``
    when the operands at positions ``batched`` are one example each of a batch that
    ``jax.vmap`` maps over.

    Under ``vmap`` a step that involves no batched operand runs once for the whole
    batch, so the best order for one example (which combines the other operands
    with each other only where that pays for one example) is not the best for the
    batch, which combines them wherever that makes the batched steps fewer or
    smaller. The order is searched exactly, by dynamic programming over subsets,
    with the batch as an index ``batch`` of size ``MAPPED_BATCH`` on the batched
    operands and the output, at opt_einsum's "combo" cost (FLOPs plus 64 per entry
    written). The map from the batched operands to the output (a layer's dense
    weight) may be built only where it has no more entries than the batch's
    input: past that no intermediate without the batch is as large as it (the
    layer rule of docs/api.md: the dense weight never costs more memory than the
    caller already holds). An allowed order always exists: contracting every
    other operand into the batched ones builds nothing without the batch.
    (benchmarks/README.md, "Layers", has the measurements.)
    """
    n = len(inputs)
    terms = [t + batch if k in batched else t for k, t in enumerate(inputs)]
    final = output + batch
    sizes = {**size_of, batch: MAPPED_BATCH}
    holders: dict = {}  # letter -> bitmask of the operands that carry it
    for k, term in enumerate(terms):
        for ch in term:
            holders[ch] = holders.get(ch, 0) | 1 << k
    everything = (1 << n) - 1

    @functools.cache
    def kept(mask: int) -> frozenset:
        """The indices of the contraction of the operands in ``mask`` that something else needs."""
        return frozenset(ch for ch, m in holders.items() if m & mask and (m & ~mask or ch in final))

    def entries(letters) -> int:
        return math.prod(sizes[ch] for ch in letters)

    # The layer rule (docs/api.md, "Equinox layers"): an intermediate without the batch may
    # be as large as the dense map from the batched operands to the output only where that
    # map has no more entries than the batch's input; past that it stays smaller.
    one_input = entries({ch for k in batched for ch in inputs[k]})
    dense = one_input * entries(set(output))
    cap = math.inf if dense <= MAPPED_BATCH * one_input else dense
    best = {1 << k: (0, None) for k in range(n)}  # mask -> (cost, (left mask, right mask))
    for mask in sorted(range(1, everything + 1), key=int.bit_count):
        if mask in best:
            continue
        result = kept(mask)
        written = entries(result)
        if batch not in result and written >= cap:
            continue
        low = mask & -mask
        sub = (mask - 1) & mask
        while sub:
            # each split once: the part holding the lowest operand is the left one
            if sub & low and sub in best and (mask ^ sub) in best:
                left, right = sub, mask ^ sub
                cost = best[left][0] + best[right][0] + entries(kept(left) | kept(right)) + _COMBO_FACTOR * written
                if mask not in best or cost < best[mask][0]:
                    best[mask] = (cost, (left, right))
            sub = (sub - 1) & mask

    pending = [(1 << k, term) for k, term in enumerate(inputs)]  # (mask, letters) of the operand list
    steps = []

    def contract(mask: int):
        """Append the steps that build the intermediate of ``mask``."""
        left, right = best[mask][1]
        for part in (left, right):
            if best[part][1] is not None:
                contract(part)
        i, j = sorted((next(k for k, (m, _) in enumerate(pending) if m == part) for part in (left, right)), reverse=True)
        (_, a), (_, b) = pending.pop(i), pending.pop(j)
        letters = output if mask == everything else "".join(ch for ch in dict.fromkeys(a + b) if ch in kept(mask))
        steps.append(((i, j), f"{a},{b}->{letters}"))
        pending.append((mask, letters))

    contract(everything)
    return _weights_laid_for_the_batch(_laid_out(tuple(steps), inputs), inputs, batched)


def _weights_laid_for_the_batch(steps: tuple, inputs: tuple, batched: frozenset) -> tuple:
    """``steps`` with each intermediate that has no batch, and meets a batched operand in
    the step that reads it, written with the letters it shares with that operand first and
    in that operand's order, then the letters it keeps in the step's output order.

    A layer's combined factors (its dense weight, where it may be built) meet the batch
    of inputs in one contraction; with the summed letters in another order than the
    input's, XLA transposes one operand first, and on CPU that was the batch (a
    4096 -> 16 tensor train copied its 256 x 4096 input before the product).
    """
    steps = [list(step) for step in steps]
    operands = [(term, k in batched, None) for k, term in enumerate(inputs)]  # (letters, batched, made by)
    for k, (inds, equation) in enumerate(steps):
        picked = [operands.pop(i) for i in inds]
        out = equation.split("->")[1]
        if len(picked) == 2 and picked[0][1] != picked[1][1]:
            (weights, _, made), (batch_operand, _, _) = sorted(picked, key=lambda p: p[1])
            if made is not None:
                order = "".join(ch for ch in batch_operand if ch in weights)
                order += "".join(ch for ch in out if ch in weights and ch not in order)  # as the result reads
                order += "".join(ch for ch in weights if ch not in order)
                m_ins, _ = steps[made][1].split("->")
                steps[made][1] = f"{m_ins}->{order}"
                # the batched operand first: vmap then puts its batch axis first in the
                # product's result, and XLA reads the input as it lies
                # (inds pop one after the other: the same two in the other order)
                i, j = inds
                if not picked[0][1]:
                    picked, inds = picked[::-1], (j, i - 1) if j < i else (j + 1, i)
                steps[k] = [tuple(inds), f"{batch_operand},{order}->{out}"]
        operands.append((out, any(p[1] for p in picked), k))
    return tuple((tuple(inds), equation) for inds, equation in steps)


def _reuse(inputs, names, output, known):
    """Replace operand pairs whose contraction was already computed elsewhere by its result."""
    inputs, names = list(inputs), list(names)
    changed = True
    while changed and len(inputs) > 1:
        changed = False
        # a letter of a pair stays if the output or another operand has it too
        everywhere = Counter(output)
        for letters in inputs:
            everywhere.update(letters)
        for i in range(len(inputs)):
            # only pairs of names contracted together before can have been computed
            partners = known.partners.get(names[i], ())
            for j in range(i + 1, len(inputs)) if partners else ():
                if names[j] not in partners:
                    continue
                pair = inputs[i] + inputs[j]
                keep = "".join(dict.fromkeys(ch for ch in pair if everywhere[ch] > pair.count(ch)))
                found = known.known_pair((inputs[i], inputs[j]), keep, (names[i], names[j]))
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
