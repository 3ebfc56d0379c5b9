"""The user-facing function library: ``import tgjax.functions as F``.

Every function takes and returns tensor expressions with named edges; each
carries a symbolic derivative rule, so derivatives of any order work through
compositions.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import sympy

from ._ir import along as _al
from ._ir import elementwise as _ew
from ._ir import extrema as _ex
from ._ir.nodes import Delta, Expr, Product, _as_tensor, elementwise_product, scale, summed
from ._ir.rename import mean_over_renamings

__all__ = [
    "sum", "mean", "exp", "log", "sqrt", "pow", "tanh", "sigmoid", "relu", "abs", "softplus",
    "sign", "sin", "cos", "log1p", "expm1", "maximum", "minimum", "symmetrize", "max", "min",
    "dot", "frobenius2", "softmax", "log_softmax", "logsumexp", "cross_entropy", "trace", "inverse", "det",
    "elementwise", "gelu", "erf", "where", "layer_norm", "one_hot", "take", "mean_pool", "max_pool", "concat",
]


def _tensor(t, where: str) -> Expr:
    if not isinstance(t, Expr):
        raise TypeError(f"{where}: expected a tensor expression (a tg.Variable or an expression built from one); got {type(t).__name__} {t!r}.")
    return t


def _edges(t: Expr, edges, where: str) -> tuple:
    if edges is None:
        return t.edges
    if isinstance(edges, str):
        edges = (edges,)
    if not isinstance(edges, (list, tuple, set, frozenset)) or not all(isinstance(e, str) for e in edges):
        raise TypeError(f"{where}: edges must be an edge name or a list of edge names; got {edges!r}. The tensor's edges are {list(t.edges)}.")
    edges = tuple(edges)
    for e in edges:
        if e not in t._shape:
            raise ValueError(f"{where}: edge {e!r} is not a free edge of the tensor; its edges are {list(t.edges)}.")
    if len(set(edges)) != len(edges):
        raise ValueError(f"{where}: edges {list(edges)} name an edge twice.")
    return edges


def sum(t: Expr, edges: str | Iterable[str] | None = None) -> Expr:
    """Sum over some edges of ``t``.

    Args:
        t: a tensor expression.
        edges: an edge name or a list of them; None (the default) sums over every edge.

    Returns:
        The sum, with ``t``'s other edges in their order.

    Examples:
        >>> b, i = tg.symbols("b i")
        >>> X = tg.Variable("X", b, i)
        >>> F.sum(X, "b").edges
        ('i',)
        >>> F.sum(X).edges
        ()
    """
    t = _tensor(t, "F.sum")
    return summed(t, _edges(t, edges, "F.sum"))


def mean(t: Expr, edges: str | Iterable[str] | None = None) -> Expr:
    """Mean over some edges of ``t``: ``F.sum(t, edges)`` divided by the product of their sizes.

    Args:
        t: a tensor expression.
        edges: an edge name or a list of them; None (the default) averages over every edge.

    Returns:
        The mean, with ``t``'s other edges.

    Examples:
        >>> b, i = tg.symbols("b i")
        >>> X = tg.Variable("X", b, i)
        >>> F.mean(X, "i").simplify()
        (1/i) X[b,a] δ[a]
    """
    t = _tensor(t, "F.mean")
    edges = _edges(t, edges, "F.mean")
    count = sympy.Mul(*(t._shape[e] for e in edges))
    return scale(sum(t, edges), 1 / count)


def exp(t: Expr) -> Expr:
    """Elementwise exponential; the result has the edges of ``t``.

    Examples:
        >>> x = tg.Variable("x", i=2)
        >>> tg.lower(F.exp(x))(x=np.zeros(2)).tolist()
        [1.0, 1.0]
    """
    return _ew.exp(_tensor(t, "F.exp"))


def log(t: Expr) -> Expr:
    """Elementwise natural logarithm; the result has the edges of ``t``.

    ``F.log(F.softmax(z, e))``, ``F.log(F.sum(F.exp(z), e))`` and
    ``F.log(F.det(X))`` are rewritten to stable forms (log-softmax,
    logsumexp, slogdet).

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.log(F.exp(x)).simplify()
        x[i]
    """
    return _ew.log(_tensor(t, "F.log"))


def tanh(t: Expr) -> Expr:
    """Elementwise hyperbolic tangent; the result has the edges of ``t``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.tanh(x)).grad(x).simplify()
        δ[i] - tanh(x[i])^2
    """
    return _ew.tanh(_tensor(t, "F.tanh"))


def sigmoid(t: Expr) -> Expr:
    """Elementwise logistic sigmoid ``1 / (1 + exp(-t))``; the result has the edges of ``t``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sigmoid(x).edges
        ('i',)
    """
    return _ew.sigmoid(_tensor(t, "F.sigmoid"))


def relu(t: Expr) -> Expr:
    """Elementwise ``max(t, 0)``; its derivative is the step function (0 at 0, as JAX).

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> tg.lower(F.relu(x))(x=np.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 2.0]
    """
    return _ew.relu(_tensor(t, "F.relu"))


def abs(t: Expr) -> Expr:
    """Elementwise absolute value; its derivative is the sign, but 1 at 0, as JAX's.

    Examples:
        >>> x = tg.Variable("x", i=2)
        >>> tg.lower(F.abs(x))(x=np.array([-1.5, 2.0])).tolist()
        [1.5, 2.0]
    """
    return _ew.abs_(_tensor(t, "F.abs"))


def softplus(t: Expr) -> Expr:
    """Elementwise ``log(1 + exp(t))``, computed stably; its derivative is the sigmoid.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.softplus(x)).grad(x).simplify()
        sigmoid(x[i])
    """
    return _ew.softplus(_tensor(t, "F.softplus"))


def sign(t: Expr) -> Expr:
    """Elementwise sign (-1, 0 or 1); its derivative is 0 everywhere (as JAX, also at 0).

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> tg.lower(F.sign(x))(x=np.array([-2.0, 0.0, 3.0])).tolist()
        [-1.0, 0.0, 1.0]
    """
    return _ew.sign(_tensor(t, "F.sign"))


def sin(t: Expr) -> Expr:
    """Elementwise sine; its derivative is the cosine.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.sin(x)).grad(x).simplify()
        cos(x[i])
    """
    return _ew.sin(_tensor(t, "F.sin"))


def cos(t: Expr) -> Expr:
    """Elementwise cosine; its derivative is minus the sine.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.cos(x)).grad(x).simplify()
        -sin(x[i])
    """
    return _ew.cos(_tensor(t, "F.cos"))


def log1p(t: Expr) -> Expr:
    """Elementwise ``log(1 + t)``, accurate for small ``t`` (``jnp.log1p``); ``F.log1p(F.expm1(t))`` is ``t``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.log1p(F.expm1(x)).simplify()
        x[i]
    """
    return _ew.log1p(_tensor(t, "F.log1p"))


def expm1(t: Expr) -> Expr:
    """Elementwise ``exp(t) - 1``, accurate for small ``t`` (``jnp.expm1``); ``F.expm1(F.log1p(t))`` is ``t``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.expm1(x)).grad(x).simplify()
        exp(x[i])
    """
    return _ew.expm1(_tensor(t, "F.expm1"))


def maximum(a, b) -> Expr:
    """The elementwise larger of ``a`` and ``b`` (tensors or numbers), broadcast on their edges.

    At a tie each side gets half the derivative, as JAX's ``jnp.maximum``.

    Examples:
        >>> x, y = tg.Variable("x", i=3), tg.Variable("y", i=3)
        >>> tg.lower(F.maximum(x, 0))(x=np.array([-1.0, 0.5, 2.0])).tolist()
        [0.0, 0.5, 2.0]
    """
    return _ew.maximum(*_two_tensors(a, b, "F.maximum"))


def minimum(a, b) -> Expr:
    """The elementwise smaller of ``a`` and ``b`` (tensors or numbers), broadcast on their edges.

    At a tie each side gets half the derivative, as JAX's ``jnp.minimum``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> tg.lower(F.minimum(x, 1))(x=np.array([-1.0, 0.5, 2.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    return _ew.minimum(*_two_tensors(a, b, "F.minimum"))


def _two_tensors(a, b, where: str) -> tuple:
    if not isinstance(a, Expr) and not isinstance(b, Expr):
        raise TypeError(f"{where}: at least one argument must be a tensor expression; got {a!r} and {b!r}.")
    return tuple(u if isinstance(u, Expr) else _as_tensor(u, where) for u in (a, b))


def symmetrize(t: Expr, edges: Iterable[str]) -> Expr:
    """The mean of ``t`` over every order of the named edges (all of one size).

    ``F.symmetrize(A, ["i", "j"])`` is ``(A + A^T) / 2``; symmetrizing twice is
    symmetrizing once.

    Args:
        t: a tensor expression.
        edges: two or more of its edge names, all of the same size.

    Examples:
        >>> n = tg.symbols("n")
        >>> A = tg.Variable("A", i=n, j=n)
        >>> F.symmetrize(A, ["i", "j"]).simplify()
        (1/2) A[i,j] + (1/2) A[j,i]
    """
    t = _tensor(t, "F.symmetrize")
    if isinstance(edges, str):
        raise TypeError(f"F.symmetrize: edges must be a list of edge names, such as ['i', 'j']; got the string {edges!r}.")
    edges = _edges(t, edges, "F.symmetrize")
    if len(edges) < 2:
        raise ValueError(f"F.symmetrize: give at least two edges to symmetrize over; got {list(edges)}.")
    sizes = {e: t._shape[e] for e in edges}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"F.symmetrize: the edges must have one size; got sizes {sizes}.")
    return mean_over_renamings(t, [dict(zip(edges, order)) for order in itertools.permutations(edges)])


def pow(t: Expr, k) -> Expr:
    """Elementwise ``t ** k`` (also written ``t ** k``).

    Args:
        t: a tensor expression.
        k: a scalar exponent: integer, fraction or negative. Floats that are
            simple fractions become exact (``0.5`` is ``1/2``), so that powers
            merge and print exactly.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> (F.pow(x, 2) * F.pow(x, -0.5)).simplify()
        x[i]^(3/2)
    """
    return _ew.raised(_tensor(t, "F.pow"), k, "F.pow")


def sqrt(t: Expr) -> Expr:
    """Elementwise square root: ``F.pow(t, 1/2)``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sqrt(x) == F.pow(x, 0.5)
        True
    """
    return _ew.power(sympy.Rational(1, 2))(_tensor(t, "F.sqrt"))


def dot(a: Expr, b: Expr, edges: str | Iterable[str]) -> Expr:
    """Contract ``a`` and ``b`` over ``edges`` only; their other shared edges are multiplied elementwise.

    Args:
        a, b: tensor expressions that both have ``edges``.
        edges: an edge name or a list of them.

    Returns:
        The result has the edges of ``a`` and ``b`` but ``edges``.

    Examples:
        >>> b, i = tg.symbols("b i")
        >>> X, Y = tg.Variable("X", b, i), tg.Variable("Y", b, i)
        >>> F.dot(X, Y, "i").edges
        ('b',)
    """
    a, b = _tensor(a, "F.dot"), _tensor(b, "F.dot")
    edges = _edges(a, edges, "F.dot")
    _edges(b, edges, "F.dot")
    return sum(elementwise_product(a, b, where="F.dot"), edges)


def frobenius2(t: Expr) -> Expr:
    """The squared Frobenius norm: the sum of squares of every entry (a scalar).

    Examples:
        >>> A = tg.Variable("A", i=2, j=3)
        >>> F.frobenius2(A).grad(A).simplify()
        2 A[i,j]
    """
    t = _tensor(t, "F.frobenius2")
    return sum(pow(t, 2))


def _along(t: Expr, edge, where: str) -> tuple:
    """The axes a function along edges acts on (jointly): one edge name, or a sequence of them."""
    axes = (edge,) if isinstance(edge, str) else edge
    if not isinstance(axes, (list, tuple)) or not axes or not all(isinstance(e, str) for e in axes):
        raise TypeError(f"{where}: edge must be an edge name (str) or a non-empty list of them; got {edge!r}.")
    for e in axes:
        if e not in t._shape:
            raise ValueError(f"{where}: edge {e!r} is not a free edge of the tensor; its edges are {list(t.edges)}.")
    if len(set(axes)) != len(axes):
        raise ValueError(f"{where}: edges {list(axes)} name an edge twice.")
    return tuple(axes)


def softmax(t: Expr, edge: str | Iterable[str]) -> Expr:
    """Softmax along ``edge``, independently for every value of the other edges.

    Args:
        t: a tensor expression (logits).
        edge: the edge to normalise along, or a list of edges to normalise
            along jointly (their entries together sum to 1).

    Returns:
        Probabilities with the edges of ``t``; stable at large logits.

    Examples:
        >>> b, c = tg.symbols("b c")
        >>> z = tg.Variable("z", b, c)
        >>> p = F.softmax(z, "c")
        >>> tg.lower(F.sum(p, "c"))(z=np.zeros((2, 3))).tolist()
        [1.0, 1.0]
    """
    t = _tensor(t, "F.softmax")
    return _al.softmax(t, *_along(t, edge, "F.softmax"))


def logsumexp(t: Expr, edge: str | Iterable[str]) -> Expr:
    """``log(sum_edge exp(t))``, computed stably.

    Args:
        t: a tensor expression.
        edge: the edge to reduce, or a list of edges to reduce jointly.

    Returns:
        The result has ``t``'s edges but ``edge``.

    Examples:
        >>> z = tg.Variable("z", c=2)
        >>> round(float(tg.lower(F.logsumexp(z, "c"))(z=np.array([1000.0, 1000.0]))), 3)
        1000.693
    """
    t = _tensor(t, "F.logsumexp")
    return _al.logsumexp(t, *_along(t, edge, "F.logsumexp"))


def log_softmax(t: Expr, edge: str | Iterable[str]) -> Expr:
    """``t - logsumexp(t, edge)``: the log of ``softmax(t, edge)``, computed stably.

    Args:
        t: a tensor expression (logits).
        edge: the edge to normalise along, or a list of edges (jointly).

    Returns:
        The result has the edges of ``t``.

    Examples:
        >>> z = tg.Variable("z", c=3)
        >>> F.log_softmax(z, "c") == F.log(F.softmax(z, "c")).simplify()
        True
    """
    t = _tensor(t, "F.log_softmax")
    return t - logsumexp(t, _along(t, edge, "F.log_softmax"))


def cross_entropy(logits: Expr, target: Expr, edge: str | Iterable[str]) -> Expr:
    """``-sum_edge target * log_softmax(logits, edge)``.

    Args:
        logits: a tensor expression with ``edge``.
        target: probabilities (or one-hot labels) along ``edge``.
        edge: the class edge (or a list of edges that together index the classes).

    Returns:
        The loss per example: the edges of ``logits`` and ``target`` but ``edge``.

    Examples:
        >>> b, d, c = tg.symbols("b d c")
        >>> X, W, T = tg.Variable("X", b, d), tg.Variable("W", d, c), tg.Variable("T", b, c)
        >>> loss = F.sum(F.cross_entropy(X @ W, T, "c"))
        >>> loss.grad(W).edges
        ('d', 'c')
    """
    logits, target = _tensor(logits, "F.cross_entropy"), _tensor(target, "F.cross_entropy")
    _along(logits, edge, "F.cross_entropy")
    missing = [e for e in ([edge] if isinstance(edge, str) else list(edge)) if e not in target.shape]
    if missing:
        raise ValueError(
            f"F.cross_entropy: the target has no class edge {missing[0]!r} (its edges are {list(target.edges)}); "
            f"targets are probabilities or one-hot rows over {missing[0]!r}, not integer labels. For integer "
            f"labels write F.one_hot(labels, {missing[0]!r}, num_classes); or pass one-hot rows for a Variable "
            f"with edges {list(target.edges) + missing}."
        )
    _along(target, edge, "F.cross_entropy (target)")
    return -sum(target * log_softmax(logits, edge), edge)


def max(t: Expr, edges: str | Iterable[str] | None = None) -> Expr:
    """The largest entry along ``edges`` (None: all edges), for every value of the other edges.

    Its derivative goes to the entries that attain the maximum, shared
    equally among ties, as JAX's ``jnp.max``.

    Examples:
        >>> b, c = tg.symbols("b c")
        >>> z = tg.Variable("z", b, c)
        >>> tg.lower(F.max(z, "c"))(z=np.array([[1.0, 3.0], [2.0, 0.0]])).tolist()
        [3.0, 2.0]
    """
    return _extremum(_ex.max_, t, edges, "F.max")


def min(t: Expr, edges: str | Iterable[str] | None = None) -> Expr:
    """The smallest entry along ``edges`` (None: all edges), for every value of the other edges.

    Its derivative goes to the entries that attain the minimum, shared
    equally among ties, as JAX's ``jnp.min``.

    Examples:
        >>> z = tg.Variable("z", c=3)
        >>> float(tg.lower(F.min(z))(z=np.array([2.0, -1.0, 5.0])))
        -1.0
    """
    return _extremum(_ex.min_, t, edges, "F.min")


def _extremum(fn, t: Expr, edges, where: str) -> Expr:
    t = _tensor(t, where)
    edges = _edges(t, edges, where)
    return fn(t, *edges) if edges else t


def _matrix_edges(t: Expr, edges, where: str) -> tuple:
    if len(t.edges) < 2:
        raise ValueError(
            f"{where}: needs a tensor with two edges of equal size (a matrix, other edges batched); "
            f"this one has edges {list(t.edges)}."
        )
    if edges is None:
        if len(t.edges) != 2:
            a, b = t.edges[:2]
            raise ValueError(
                f"{where}: the tensor has edges {list(t.edges)}; name the two matrix edges, e.g. {where}(t, edges=({a!r}, {b!r}))."
            )
        edges = t.edges
    if isinstance(edges, str):
        raise ValueError(
            f"{where}: edges must be two edge names, e.g. edges=({edges[:1]!r}, {edges[1:]!r}); got the string {edges!r}."
        )
    edges = tuple(edges)
    if len(edges) != 2:
        raise ValueError(f"{where}: edges must name exactly two edges (rows, columns); got {list(edges)}.")
    for e in edges:
        if e not in t._shape:
            raise ValueError(f"{where}: edge {e!r} is not a free edge of the tensor; its edges are {list(t.edges)}.")
    r, c = edges
    if r == c:
        raise ValueError(f"{where}: the two matrix edges must differ; got {r!r} twice.")
    if t._shape[r] != t._shape[c]:
        raise ValueError(
            f"{where}: edges {r!r} and {c!r} must have equal sizes to form a square matrix; got {t._shape[r]} and {t._shape[c]}."
        )
    return edges


def trace(t: Expr, edges=None) -> Expr:
    """The trace over two edges of equal size.

    Args:
        t: a tensor expression.
        edges: the two edges ``(rows, cols)``; None: the tensor's two edges.

    Returns:
        The result lacks the two edges (other edges are batched).

    Examples:
        >>> n = tg.symbols("n")
        >>> S = tg.Variable("S", i=n, j=n)
        >>> F.trace(S).grad(S).simplify()
        δ[i,j]
    """
    t = _tensor(t, "F.trace")
    r, c = _matrix_edges(t, edges, "F.trace")
    return Product([t, Delta._make(t._shape[r], (r, c))], edges=tuple(e for e in t.edges if e not in (r, c)))


def inverse(t: Expr, edges=None) -> Expr:
    """The matrix inverse over two edges of equal size.

    Args:
        t: a tensor expression.
        edges: the two edges ``(rows, cols)``; None: the tensor's two edges.

    Returns:
        The result keeps ``t``'s edges: for X with edges ``(i, j)`` its array
        is ``inv`` of X's array laid out as ``(i, j)``; other edges are batched.

    Examples:
        >>> n = tg.symbols("n")
        >>> S = tg.Variable("S", i=n, j=n)
        >>> F.inverse(F.inverse(S)).simplify()
        S[i,j]
    """
    t = _tensor(t, "F.inverse")
    return _al.inverse(t, *_matrix_edges(t, edges, "F.inverse"))


def det(t: Expr, edges=None) -> Expr:
    """The determinant over two edges of equal size.

    Args:
        t: a tensor expression.
        edges: the two edges ``(rows, cols)``; None: the tensor's two edges.

    Returns:
        The result lacks the two edges (other edges are batched).
        ``F.log(F.det(X))`` is lowered through ``slogdet``.

    Examples:
        >>> n = tg.symbols("n")
        >>> S = tg.Variable("S", i=n, j=n)
        >>> F.det(S).edges
        ()
    """
    t = _tensor(t, "F.det")
    return _al.det(t, *_matrix_edges(t, edges, "F.det"))


def elementwise(name: str, fn):
    """A user-defined elementwise function from a scalar JAX callable ``fn``.

    Args:
        name: how the function prints, and its name in generated code. It may
            not be a built-in's name (``"exp"``, ``"pow"``, ...): a user's
            function is never taken for a built-in.
        fn: a callable of one scalar, written with ``jax.numpy``.

    Returns:
        ``f``, with ``f(t)`` applying ``fn`` to every entry of ``t`` (same
        edges). Its derivative is the elementwise function ``jax.grad(fn)``,
        so derivatives of any order work. ``fn`` must act entry by entry: a
        ``ValueError`` says so when ``fn`` applied to an array differs from
        ``fn`` applied to each entry.

    Examples:
        >>> swish = F.elementwise("swish", lambda v: v * jax.nn.sigmoid(v))
        >>> x = tg.Variable("x", i=3)
        >>> swish(x)
        swish(x[i])
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"F.elementwise: name must be a non-empty str; got {name!r}.")
    if name in _RESERVED:
        raise ValueError(
            f"F.elementwise: {name!r} is the name of a built-in function (F.{name} or its parts); "
            f"a user function needs its own name, e.g. F.elementwise('my_{name}', fn)."
        )
    if not callable(fn):
        raise TypeError(f"F.elementwise: fn must be a callable of one scalar; got {fn!r}.")
    required = _required_arguments(fn)
    if required is not None and required != 1:
        raise TypeError(
            f"F.elementwise: fn must take one scalar argument; {name!r} takes {required}. "
            f"Fix the others (e.g. with a lambda) or, for two tensors, use F.maximum-style built-ins."
        )
    return _user_function(name, fn, order=0)


def _required_arguments(fn) -> int | None:
    """How many positional arguments ``fn`` requires, or None where its signature cannot be read."""
    import inspect

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return None
    # (this module's own sum is F.sum)
    return len([p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])


_SERIAL = itertools.count()


class UserFunction(_ew.ElementwiseFunction):
    """An elementwise function given by a Python callable on arrays (``F.elementwise``).

    Compared by identity like every function. Its key (for canonical hashing)
    holds a serial number, so two user functions with one name differ, and
    term order does not depend on memory addresses.
    """

    def __init__(self, base: str, fn, python, order: int):
        # base: the user's name; the printed name has one prime per derivative
        self._base, self._fn, self._order, self._derivative = base, fn, order, None
        name = base + "'" * order
        super().__init__(name, None, self._derivative_of, key=(name, (str(next(_SERIAL)),)))
        self.python = python

    def _derivative_of(self, u: Expr):
        if self._derivative is None:
            import jax

            self._derivative = _user_function(self._base, jax.grad(self._fn), self._order + 1)
        return [self._derivative(u)]


def _user_function(name: str, fn, order: int):
    import jax.numpy as jnp

    if order > 0:
        # A derivative of an elementwise function is elementwise, and jax.grad
        # takes scalars: map it over the entries, with no probe to run.
        return _user_spec(name, fn, jnp.vectorize(fn), order)
    probe = jnp.linspace(0.3, 1.7, 5)
    one_by_one = jnp.stack([jnp.asarray(fn(p)) for p in probe])
    try:
        whole = jnp.asarray(fn(probe))
        vectorised = whole.shape == probe.shape and bool(jnp.allclose(whole, one_by_one, equal_nan=True))
    except Exception:  # noqa: BLE001  (fn may only accept scalars)
        vectorised = False
    if not vectorised:
        try:
            whole = jnp.asarray(fn(probe))
        except Exception:  # noqa: BLE001
            whole = None
        if whole is not None and whole.shape != probe.shape:
            raise ValueError(
                f"F.elementwise({name!r}): fn is not elementwise: on an array of shape {probe.shape} it returned "
                f"shape {whole.shape}. Give a function of one scalar (it is applied entry by entry)."
            )
        if whole is not None:
            raise ValueError(
                f"F.elementwise({name!r}): fn is not elementwise: applied to an array it differs from applying it "
                f"to each entry (does it mix entries, e.g. x - x.mean()?). Give a function of one scalar."
            )
    return _user_spec(name, fn, fn if vectorised else jnp.vectorize(fn), order)


def _user_spec(name: str, fn, apply, order: int):
    """The function ``f`` over a ``UserFunction`` of ``fn`` (applied to arrays by ``apply``)."""
    spec = UserFunction(name, fn, apply, order)

    def f(t: Expr) -> Expr:
        return spec(_tensor(t, f"F.{spec.name}"))

    f.__name__ = spec.name
    f.spec = spec
    return f


def gelu(t: Expr, approximate: bool = False) -> Expr:
    """Elementwise GELU, one function either way, as ``jax.nn.gelu``: the exact form
    ``t * Phi(t)`` (``Phi`` the standard normal's distribution function), or with
    ``approximate=True`` the tanh form ``0.5 t (1 + tanh(sqrt(2/pi) (t + 0.044715 t^3)))``
    (GPT-2's). Derivatives of any order are symbolic. A gradient computes ``Phi(t)``
    once, for the value and the derivative ``Phi(t) + t phi(t)``, as backpropagation
    does; written out from primitives, the tanh form is a dozen nodes whose
    derivative costs more than backpropagation through one function.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.gelu(x), F.gelu(x, approximate=True)
        (gelu(x[i]), gelu_tanh(x[i]))
    """
    t = _tensor(t, "F.gelu")
    if not isinstance(approximate, bool):
        raise TypeError(f"F.gelu: approximate must be True or False; got {approximate!r}.")
    return _ew.gelu_tanh(t) if approximate else _ew.gelu(t)


def erf(t: Expr) -> Expr:
    """Elementwise error function, as ``jax.scipy.special.erf``; its derivative is
    ``2 / sqrt(pi) exp(-t^2)``.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> F.sum(F.erf(x)).grad(x).simplify()
        1.12837916709551 exp(-x[i]^2)
    """
    return _ew.erf(_tensor(t, "F.erf"))


def where(mask, a, b) -> Expr:
    """``a`` where ``mask`` is nonzero, else ``b``, entry by entry, broadcast on their edges as
    ``+`` broadcasts (``a`` and ``b`` may be numbers). The mask is a 0/1 tensor (the array of
    a Variable used as a mask may be boolean) and is not differentiated; the derivative goes to
    the side chosen, as ``jnp.where``'s. Masked entries never mix in: ``F.where(m, x, -1e9)``
    is ``-1e9`` where ``m`` is 0, with no ``0 * inf``.

    Examples:
        >>> m, x = tg.Variable("m", i=3), tg.Variable("x", i=3)
        >>> tg.lower(F.where(m, x, 0.0))(m=np.array([1.0, 0.0, 1.0]), x=np.array([1.0, 2.0, 3.0])).tolist()
        [1.0, 0.0, 3.0]
    """
    if not isinstance(mask, Expr):
        raise TypeError(f"F.where: the mask must be a tensor expression (a 0/1 tg.Variable); got {type(mask).__name__}.")
    # numbers on either side (or both) are broadcast to the mask's edges by the function itself
    a, b = (u if isinstance(u, Expr) else _as_tensor(u, "F.where") for u in (a, b))
    return _ew.where(mask, a, b)


def one_hot(index: Expr, edge: str, size) -> Expr:
    """The 0/1 tensor with ``index``'s edges plus ``edge`` (of ``size``): 1 where the entry of
    ``edge`` equals the integer in ``index``, as ``jax.nn.one_hot``. ``index`` is a Variable of
    integer dtype (class labels, token ids); it is not differentiated.

    Examples:
        >>> b, c = tg.symbols("b c")
        >>> labels = tg.Variable("labels", b)
        >>> tg.lower(F.one_hot(labels, "c", c), sizes={c: 3})(labels=np.array([2, 0])).tolist()
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    from ._ir.structural import positions

    index = _tensor(index, "F.one_hot")
    if not isinstance(edge, str) or edge in index.shape:
        raise ValueError(
            f"F.one_hot: edge must be a new edge name (the classes'), not one of the index's edges "
            f"{list(index.edges)}; got {edge!r}."
        )
    return _ew.equal(index, positions(size, edge))


def take(table: Expr, index: Expr, edge: str) -> Expr:
    """Rows of ``table`` along its edge ``edge``, picked by ``index`` (an embedding lookup):
    the result has ``index``'s edges, then ``table``'s other edges. ``index`` is a Variable of
    integer dtype (token ids). Lowered to a gather (``jnp.take``), and its derivative with
    respect to ``table`` to a scatter-add, never a one-hot product; it is the network
    ``F.one_hot(index, edge, size) @ table``, which is what it prints as. An index out of
    range picks a row of zeros.

    Examples:
        >>> b, v, d = tg.symbols("b v d")
        >>> ids, E = tg.Variable("ids", b), tg.Variable("E", v, d)
        >>> tg.lower(F.take(E, ids, "v"))(ids=np.array([2, 0]), E=np.arange(6.0).reshape(3, 2)).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    table, index = _tensor(table, "F.take"), _tensor(index, "F.take")
    if edge not in table.shape:
        raise ValueError(f"F.take: edge {edge!r} is not an edge of the table; its edges are {list(table.edges)}.")
    shared = sorted(set(index.edges) & set(table.edges))
    if shared:
        raise ValueError(
            f"F.take: the index and the table share edge(s) {shared}; rename the index's edges apart "
            f"(index.rename(...)): they become the lookup's batch edges."
        )
    picked = one_hot(index, edge, table.shape[edge])
    return Product([picked, table], edges=index.edges + tuple(e for e in table.edges if e != edge), where="F.take")


def mean_pool(t: Expr, edge: str, window: int, new_edge: str) -> Expr:
    """The mean of each run of ``window`` entries along ``edge`` (non-overlapping windows, a
    remainder shorter than a window dropped): ``new_edge``, of size ``size // window``, takes
    ``edge``'s place among ``t``'s edges (it may keep its name). The windows are looked up
    (``F.take`` of window positions, which lowering reads as a reshape into windows, and
    the derivative as the reverse reshape), so no pooling matrix is ever multiplied.

    Examples:
        >>> h = tg.symbols("h")
        >>> x = tg.Variable("x", h)
        >>> tg.lower(F.mean_pool(x, "h", 2, "h2"))(x=np.array([1.0, 3.0, 5.0, 7.0, 9.0])).tolist()
        [2.0, 6.0]
    """
    return _pooled(t, edge, window, new_edge, mean, "F.mean_pool")


def max_pool(t: Expr, edge: str, window: int, new_edge: str) -> Expr:
    """The largest of each run of ``window`` entries along ``edge``, as ``F.mean_pool`` takes
    their mean; its derivative goes to the largest entry of each window (``F.max``'s).

    Examples:
        >>> h = tg.symbols("h")
        >>> x = tg.Variable("x", h)
        >>> tg.lower(F.max_pool(x, "h", 2, "h2"))(x=np.array([1.0, 3.0, 7.0, 5.0])).tolist()
        [3.0, 7.0]
    """
    return _pooled(t, edge, window, new_edge, max, "F.max_pool")


def _pooled(t: Expr, edge: str, window: int, new_edge: str, reduce, where: str) -> Expr:
    """``reduce`` over each window of ``window`` entries along ``edge`` of ``t``."""
    from ._ir.structural import window_positions

    t = _tensor(t, where)
    if edge not in t._shape:
        raise ValueError(f"{where}: edge {edge!r} is not an edge of the tensor; its edges are {list(t.edges)}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{where}: window must be a positive int (entries per window); got {window!r}.")
    if not isinstance(new_edge, str) or (new_edge != edge and new_edge in t._shape):
        raise ValueError(
            f"{where}: new_edge must be a name for the pooled edge that the tensor does not already use "
            f"(or {edge!r} itself); got {new_edge!r}, and the tensor's edges are {list(t.edges)}."
        )
    size = t._shape[edge]
    if size.is_number and window > size:
        raise ValueError(f"{where}: window {window} is longer than edge {edge!r}, which has {size} entries.")
    inner = _unused_name("window", t.edges + (new_edge,))
    # the windows' edge, under another name while the table still has ``edge``
    outer = new_edge if new_edge != edge else _unused_name(new_edge, t.edges + (inner,))
    positions = window_positions(sympy.floor(size / window), window, outer, inner)
    pooled = reduce(take(t, positions, edge), inner)
    order = tuple(outer if e == edge else e for e in t.edges)
    return Product([pooled], edges=order, where=where).rename(**{outer: new_edge})


def concat(tensors, edge: str) -> Expr:
    """The tensors joined along ``edge``: each has it, and the result's ``edge`` is as long as
    theirs together, the first tensor's entries first. Their other edges must be the same
    edges with the same sizes; the result has the first tensor's edge order. Each part is
    looked up into place (``F.take`` at positions the program computes: a gather, and for
    the derivative a scatter-add of the part's slice of the cotangent).

    Examples:
        >>> a, b = tg.Variable("a", i=2), tg.Variable("b", i=3)
        >>> tg.lower(F.concat([a, b], "i"))(a=np.array([1.0, 2.0]), b=np.array([3.0, 4.0, 5.0])).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    from ._ir.structural import part_positions

    if isinstance(tensors, Expr) or not isinstance(tensors, (list, tuple)) or not tensors:
        raise TypeError(f"F.concat: expected a non-empty list of tensor expressions; got {tensors!r}.")
    tensors = [_tensor(t, "F.concat") for t in tensors]
    first = tensors[0]
    for k, t in enumerate(tensors):
        if edge not in t._shape:
            raise ValueError(f"F.concat: tensor {k} has no edge {edge!r} to join along; its edges are {list(t.edges)}.")
        others = {e: s for e, s in t.shape.items() if e != edge}
        expected = {e: s for e, s in first.shape.items() if e != edge}
        if others != expected:
            raise ValueError(
                f"F.concat: tensor {k} has edges {dict(t.shape)} and tensor 0 {dict(first.shape)}; apart from "
                f"{edge!r} they must have the same edges with the same sizes."
            )
    if len(tensors) == 1:
        return first
    total = sympy.Add(*(t._shape[edge] for t in tensors))
    joining = _unused_name(edge, first.edges)  # the joined edge, under another name while the parts have ``edge``
    parts, start = [], sympy.Integer(0)
    for t in tensors:
        length = t._shape[edge]
        parts.append(take(t, part_positions(total, start, length, joining), edge))
        start += length
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + part
    order = tuple(joining if e == edge else e for e in first.edges)
    return Product([joined], edges=order, where="F.concat").rename(**{joining: edge})


def _unused_name(base: str, taken) -> str:
    """``base``, with ``_`` appended while it is in ``taken``."""
    name = base
    while name in taken:
        name += "_"
    return name


def layer_norm(t: Expr, edges: str | Iterable[str], eps: float = 1e-5) -> Expr:
    """``(t - mean) / sqrt(var + eps)`` over ``edges`` (no affine part), as a transformer's layer
    norm. It is written from ``F.mean`` and ``F.pow``: lowered with its gradient it costs what
    backpropagation does (one matrix product per use, as JAX), so it needs no function of its
    own.

    Examples:
        >>> b, d = tg.symbols("b d")
        >>> h = tg.Variable("h", b, d)
        >>> out = tg.lower(F.layer_norm(h, "d"))(h=np.array([[1.0, 2.0, 3.0]]))
        >>> [round(v, 4) for v in out[0].tolist()]
        [-1.2247, 0.0, 1.2247]
    """
    t = _tensor(t, "F.layer_norm")
    edges = _edges(t, edges, "F.layer_norm")
    centred = t - mean(t, edges)
    return centred * pow(mean(centred ** 2, edges) + eps, -0.5)


# Names a user's F.elementwise may not take: every function of this module and
# every built-in function object (some, like pow and step, appear only inside
# expressions).
_RESERVED = frozenset(__all__) | {fn.name for fn in (*_ew.BUILTINS, *_al.BUILTINS, *_ex.BUILTINS, _ex.ties)}
