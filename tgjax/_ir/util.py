"""Small shared helpers for the IR: deterministic hashing, fresh inner edge names, sizes."""

from __future__ import annotations

import functools
import hashlib
import itertools
import weakref
from fractions import Fraction

import sympy

# Inner (contracted) edges get names no user writes, so that renaming a free
# edge can never capture one by accident.
_FRESH_PREFIX = "#"
_counter = itertools.count()


def fresh_edge() -> str:
    """A new inner edge name, unique in this process."""
    return f"{_FRESH_PREFIX}{next(_counter)}"


def is_fresh(edge: str) -> bool:
    return edge.startswith(_FRESH_PREFIX)


@functools.lru_cache(maxsize=1 << 16)
def stable_hash(obj) -> int:
    """A hash of str(obj) that does not change between processes.

    Python salts str hashes per process; canonical term order (and so the
    printed form and the generated code) must not depend on that salt.
    """
    digest = hashlib.blake2b(str(obj).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def combine(*parts) -> int:
    """Hash a tuple of ints (and tuples of ints) deterministically."""
    return hash(parts)


def as_size(size, where: str) -> sympy.Expr:
    """Check and convert an edge size: a positive int or a sympy expression."""
    if isinstance(size, bool):
        raise TypeError(f"{where}: an edge size must be a sympy symbol or a positive int; got {size!r}.")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"{where}: an edge size must be positive; got {size}.")
        return sympy.Integer(size)
    if isinstance(size, sympy.Expr):
        return size
    raise TypeError(
        f"{where}: an edge size must be a sympy symbol (tg.symbols('n')) or a positive int; "
        f"got {size!r} of type {type(size).__name__}."
    )


def exact_number(w: sympy.Float) -> sympy.Expr:
    """A float weight as the rational it stands for where one with a denominator up to 10^6
    gives the same float (0.01 as 1/100, 1.0 as 1), so that it prints and merges exactly;
    other floats stay floats.

    Since SymPy 1.13 a Float never equals an Integer or Rational (``Float(1.0) == 1`` is
    False), so a weight computed as ``1.5 / 1.5`` must become the integer 1 here, or every
    rule that asks whether a weight is 1 sees a Float that is not: the product rules then
    rescaled a sum by its leading weight 1.0 forever (``F.tanh(0.79788456 * (x + 0.5 *
    x ** 3)).grad(x).simplify()`` never returned).
    """
    value = float(w)
    fraction = Fraction(value).limit_denominator(10**6)
    if float(fraction) == value:
        return sympy.Rational(fraction.numerator, fraction.denominator)
    return w


def as_weight(value, where: str) -> sympy.Expr:
    """Scalar weights of sums are sympy numbers (or expressions in sizes, as in mean = sum / n)."""
    if isinstance(value, bool):
        value = int(value)
    try:
        import numpy as np

        if isinstance(value, np.integer):
            value = int(value)
        elif isinstance(value, np.floating) or (hasattr(value, "shape") and value.shape == () and hasattr(value, "dtype")):
            value = float(value)
    except (TypeError, ValueError):
        pass
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{where}: a scalar weight must be finite; got {value!r}.")
        return exact_number(sympy.Float(value))
    if isinstance(value, sympy.Float):
        return exact_number(value)
    if isinstance(value, sympy.Expr):
        return value
    hint = " To use an array, declare a tg.Variable and pass the array when calling the lowered function." if hasattr(value, "shape") else ""
    raise TypeError(f"{where}: expected a scalar (int, float or sympy number); got {value!r} of type {type(value).__name__}.{hint}")


class NodeTable:
    """What one pass has computed about nodes, keyed by node identity; an entry lives no
    longer than its node.

    A pass's memo across calls (the normal form of every node simplified) that
    is the pass's own, not a slot on the node: a node holds its data and a
    cached hash, nothing else. An entry never keeps its node alive. With
    ``weak_values`` it keeps its value (a node) alive no longer either: a value
    that refers back to its key (a lazily renamed copy keeps the memo of the
    rename that made it) would otherwise keep both alive for good; the pass
    holds what it still needs while it runs.
    """

    _ITSELF = object()

    def __init__(self, weak_values: bool = False):
        self.weak_values = weak_values
        self._entries: dict = {}  # id -> (weak reference to the node, value)

    def get(self, node, default=None):
        """The value remembered for ``node``, else ``default``."""
        entry = self._entries.get(id(node))
        if entry is None or entry[0]() is not node:
            return default
        value = entry[1]
        if value is self._ITSELF:
            return node
        if self.weak_values:
            value = value()
            return default if value is None else value
        return value

    def __contains__(self, node) -> bool:
        return self.get(node, self._ITSELF) is not self._ITSELF

    def set(self, node, value):
        """Remember ``value`` for ``node`` (until ``node``, or a weak value, is freed)."""
        key = id(node)
        if value is node:
            value = self._ITSELF
        elif self.weak_values:
            value = weakref.ref(value)
        self._entries[key] = (weakref.KeyedRef(node, self._forget, key), value)

    def _forget(self, ref):
        entry = self._entries.get(ref.key)
        if entry is not None and entry[0] is ref:
            del self._entries[ref.key]


class IdentityCache:
    """The values of the last ``kept`` keys asked for, each key an object compared by identity.

    An entry keeps its key alive, so that the key's id is not reused while it
    is remembered; a pass's memo across calls (a loss's reverse sweep, its
    written form), bounded so that it never holds more than a few expressions.
    """

    def __init__(self, kept: int):
        self.kept = kept
        self._entries: dict = {}  # id -> (key, value), oldest first

    def get(self, key, make):
        """The value remembered for ``key``, or ``make()`` remembered for it."""
        entry = self._entries.pop(id(key), None)
        if entry is None or entry[0] is not key:
            entry = (key, make())
        self._entries[id(key)] = entry  # now the newest
        if len(self._entries) > self.kept:
            del self._entries[next(iter(self._entries))]
        return entry[1]


class UnionFind:
    """Classes of edge names: a Delta says its edges are one index."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, e):
        self.parent.setdefault(e, e)
        while self.parent[e] != e:
            self.parent[e] = self.parent[self.parent[e]]
            e = self.parent[e]
        return e

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def join(self, edges):
        """Put all of ``edges`` in one class (and each in some class)."""
        for e in edges:
            self.find(e)
        for e in edges[1:]:
            self.union(edges[0], e)

    def __contains__(self, e) -> bool:
        return e in self.parent

    def __iter__(self):
        return iter(list(self.parent))



def einsum_letter(k: int) -> str:
    """The ``k``-th einsum index letter: a-z, A-Z, then further Unicode letters
    (the same sequence as ``opt_einsum.get_symbol``, so plans and code agree)."""
    if k < 26:
        return chr(ord("a") + k)
    if k < 52:
        return chr(ord("A") + k - 26)
    return chr(k + 140) if k < 55296 else chr(k + 2048)


class EinsumLetters(dict):
    """Key (an edge or an edge class) -> einsum letter, assigned in first-use order by ``of``.

    Reading an unassigned key with ``[]`` is a KeyError, as for a dict.
    """

    def of(self, key) -> str:
        letter = self.get(key)
        if letter is None:
            letter = self[key] = einsum_letter(len(self))
        return letter
