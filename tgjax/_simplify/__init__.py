"""Rewrite rules to a normal form, one rule family per file."""

from . import along, derivatives, functions, products, sums  # noqa: F401  (register the rules)
from .core import simplify, simplified

__all__ = ["simplify", "simplified"]
