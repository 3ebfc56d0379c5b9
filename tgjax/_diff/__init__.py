"""Symbolic differentiation: forward rules (for the normal form) and reverse accumulation (for evaluation)."""

from .derivative import derivative
from .reverse import gradient

__all__ = ["derivative", "gradient"]
