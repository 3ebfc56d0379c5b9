"""Expression nodes, edges and sizes, identity (canonical hashing)."""

from .nodes import Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero
from .elementwise import FunctionSpec

__all__ = ["Convolution", "Delta", "Derivative", "Expr", "Function", "FunctionSpec", "Product", "Sum", "Variable", "Zero"]
