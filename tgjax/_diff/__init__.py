"""Symbolic differentiation: forward rules (for the normal form) and reverse accumulation (for evaluation).

``Expr.grad`` reaches reverse accumulation through lowering's written form
(``_lower/evaluation.grads``, registered as the "grad" pass).
"""

from .derivative import derivative
from .reverse import gradient, gradients

__all__ = ["derivative", "gradient", "gradients"]
