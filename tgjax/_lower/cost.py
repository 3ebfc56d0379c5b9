"""What a program is estimated to cost, from its steps: work plus memory traffic.

Lowering builds several candidate programs for one set of expressions and
keeps the cheapest by this estimate; no source is written to compare them.
"""

from __future__ import annotations

from .contract import MAPPED_BATCH
from .steps import Steps


def program_cost(steps: Steps) -> int:
    """FLOPs plus elements written over all steps; a step on one example of a mapped batch
    counted once per example of the batch its products are ordered for (``MAPPED_BATCH``),
    so that candidate programs of a layer are compared at that batch."""
    return sum((s.flops + s.elements) * (MAPPED_BATCH if s.batched else 1) for s in steps.steps.values())


def einsum_cost(equation: str, letter_sizes: dict) -> tuple[int, int]:
    """FLOPs and output elements of one einsum step, counted as XLA counts them:
    a multiply and an add for every index combination of a contraction, a
    multiply per element of a product that sums nothing. An index that only
    one of several operands carries, and the output lacks, is summed out of
    that operand first (as ``jnp.einsum`` does), an add per element."""

    def size(letters) -> int:
        n = 1
        for ch in set(letters):
            n *= letter_sizes.get(ch, 1)
        return n

    ins, out = equation.split("->")
    terms = ins.split(",")
    flops = 0
    if len(terms) > 1:
        for k, term in enumerate(terms):
            others = "".join(terms[:k] + terms[k + 1:]) + out
            alone = "".join(ch for ch in term if ch not in others)
            if alone:
                flops += size(term)
                terms[k] = "".join(ch for ch in term if ch in others)
    combinations = size("".join(terms))
    elements = size(out)
    summed = combinations > elements
    return flops + (2 if summed else 1) * combinations, elements
