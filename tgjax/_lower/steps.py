"""The program's statements as data: each step names an array computed from explicit reads.

A lowering rule writes a step's expression as a template in which every array
it reads is a token (``Steps.read``), never a bare name. The reads are then
data: what a step reads, in which layout, and how often a value is used are
looked up, not parsed out of source; a later decision about a read (a
transposed read written out apart, ``emit.py``) or about a step (written out
for its readers, ``mark_long_chains``) is recorded on the step, and the source
text is written once, at the end, from the steps (``emit.source``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Read:
    """An array a step reads: a statement's or an input's name, through a transpose if ``perm``."""

    name: str
    perm: tuple | None = None


@dataclass
class Step:
    """``name = template``, the template's tokens standing for ``reads``.

    ``flops`` and ``elements`` (written) are its estimated cost for one run
    (``cost.py``); ``batched``: it runs once per example of a mapped batch.
    ``elementwise``: each entry of the result reads only the same entry of
    what the step reads; ``expands``: it calls a function that XLA expands into
    a long elementwise chain of its own (erfc). ``materialized``: written out
    for its readers (``mark_long_chains``). ``comment``: what it computes, for
    a reader (a callable, written only where the source is shown).
    """

    name: str
    template: str
    reads: tuple
    flops: int = 0
    elements: int = 0
    batched: bool = False
    elementwise: bool = False
    expands: bool = False
    comment: object = None
    materialized: bool = False


# A read's token in a template: a character no JAX source contains, the read's number, the same.
TOKEN = re.compile("\x00(\\d+)\x00")
# A statement's name (t0, t1, ...): never written bare into a template (``Steps.add`` checks).
_STATEMENT = re.compile(r"\bt\d+\b")


@dataclass
class Steps:
    """The steps of one program, in order, with identical steps shared."""

    mapped: set = field(default_factory=set)  # names whose values depend on a mapped input
    steps: dict = field(default_factory=dict)  # name -> Step, in order
    _by_key: dict = field(default_factory=dict)  # statement key -> name, for sharing identical steps
    _reads: list = field(default_factory=list)  # token number -> Read
    _tokens: dict = field(default_factory=dict)  # Read -> its token

    def read(self, name: str, perm: tuple | None = None) -> str:
        """The token for reading ``name`` (through ``perm``), to write into a template."""
        key = Read(name, perm)
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = f"\x00{len(self._reads)}\x00"
            self._reads.append(key)
        return token

    def reads_of(self, template: str) -> tuple:
        """The reads a template's tokens stand for, in order (repeats kept)."""
        return tuple(self._reads[int(k)] for k in TOKEN.findall(template))

    def add(self, template: str, key, flops: int, elements: int, **flags) -> str:
        """The name of the step computing ``template``: an identical one added before (same
        ``key``, by default the template), else a new step."""
        key = key or template
        found = self._by_key.get(key)
        if found is not None:
            return found
        if _STATEMENT.search(template):
            raise RuntimeError(f"internal error: a step reads a statement by name, not by token: {template!r}")
        reads = self.reads_of(template)
        name = f"t{len(self.steps)}"
        batched = any(r.name in self.mapped for r in reads)
        self.steps[name] = Step(name, template, reads, flops, elements, batched, **flags)
        self._by_key[key] = name
        if batched:
            self.mapped.add(name)
        return name


# The elementwise steps in a row that a program lets XLA recompute in each reader
# (mark_long_chains): 6 and 4 measured alike on the post-layer-norm stack, 6 better at 2 blocks.
LONG_CHAIN = 6


def mark_long_chains(steps: Steps, results: tuple):
    """Mark ``materialized`` every step that ends a chain of ``LONG_CHAIN`` or more elementwise
    steps and is read at least twice (by steps, or as one of the ``results``, reads): XLA:CPU
    would recompute the chain in each reader. A step that ``expands`` counts as a chain on its own."""
    uses = Counter(r.name for r in results)
    for step in steps.steps.values():
        uses.update({r.name for r in step.reads})
    chain: dict = {}
    for name, step in steps.steps.items():
        length = 0
        if step.elementwise:
            own = LONG_CHAIN if step.expands else 1
            length = own + max((chain.get(r.name, 0) for r in step.reads), default=0)
        if length >= LONG_CHAIN and uses[name] >= 2:
            step.materialized = True
            length = 0
        chain[name] = length
