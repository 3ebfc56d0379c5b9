"""tgjax: symbolic tensor calculus with named edges, compiled to XLA through JAX."""

from sympy import symbols

from . import _expectation  # noqa: F401  (registers the closed forms of expectations)
from ._ir.nodes import Convolution, Delta, Derivative, Expectation, Expr, Variable, Zero
from ._ir.structural import causal_mask
from ._lower.api import check_grads, lower, to_source
from ._lower.operator import linear_operator
from ._viz.draw import draw
from ._viz.explain import explain
from ._viz.latex import to_latex

__version__ = "0.1.0"

__all__ = [
    "symbols", "Variable", "Delta", "Convolution", "causal_mask", "Derivative", "Expectation", "Expr", "Zero",
    "lower", "to_source", "check_grads", "linear_operator", "draw", "explain", "to_latex", "__version__",
]
