"""Symbolic differentiation: forward rules (for the normal form) and reverse accumulation (for evaluation)."""

from .._ir.nodes import register_pass
from .derivative import derivative
from .reverse import gradient, gradients

register_pass("gradient", gradient)

__all__ = ["derivative", "gradient", "gradients"]
