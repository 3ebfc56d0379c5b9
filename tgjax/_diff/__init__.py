"""Symbolic differentiation."""

from .derivative import derivative

__all__ = ["derivative"]
