"""Expression nodes, edges and sizes, identity (canonical hashing)."""

from .nodes import Convolution, Delta, Derivative, Expr, Function, Product, Sum, Variable, Zero
from .along import AlongFunction
from .elementwise import ElementwiseFunction

__all__ = ["Convolution", "Delta", "Derivative", "Expr", "Function", "ElementwiseFunction", "AlongFunction", "Product", "Sum", "Variable", "Zero"]
