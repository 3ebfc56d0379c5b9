"""Expectations over Gaussian variables: closed forms as simplification rules."""

from . import closed_form  # noqa: F401  (registers the Expectation rules)
from .closed_form import polynomial_degree, substitute

__all__ = ["polynomial_degree", "substitute"]
