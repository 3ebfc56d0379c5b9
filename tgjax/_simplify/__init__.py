"""Rewrite rules to a normal form, one rule family per file."""

from .._ir.nodes import register_pass
from . import derivatives, functions, products, sums  # noqa: F401  (register the rules)
from .core import OverBudget, budget, share_normal_form, simplified
from .expand import expand
from .finish import origins, simplify

register_pass("simplify", simplify)

__all__ = ["simplify", "simplified", "expand", "budget", "OverBudget", "origins", "share_normal_form"]
