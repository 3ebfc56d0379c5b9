"""Symbolic differentiation: forward rules (for the normal form), reverse accumulation (for
evaluation) and forward accumulation along a direction (a derivative contracted on its new edges).

``Expr.grad`` reaches reverse accumulation through lowering's written form
(``_lower/evaluation.grads``, registered as the "grad" pass).
"""

from .derivative import derivative, derivative_step
from .forward import Unsupported, directional
from .reverse import gradient, gradients

__all__ = ["derivative", "derivative_step", "directional", "gradient", "gradients", "Unsupported"]
