"""Expression nodes: tensors with named free edges and sympy sizes.

Every node is immutable, exposes its children as ``args`` and its free edges
as ``edges`` (ordered) and ``shape`` (edge -> size). Equality is isomorphism
of the tensor network up to inner edge names (see ``identity.py``).

The public constructors (``Variable``, ``Delta``) and operators build what the
user wrote; the lower-case helpers at the bottom (``product``, ``weighted_sum``,
...) are the private builders used by the passes.
"""

from __future__ import annotations

import itertools
import keyword
import os
import sys
import warnings
from collections import Counter
from types import MappingProxyType
from typing import Mapping

import sympy

from .deep import deep
from .util import IdentityCache, UnionFind, as_size, as_weight, fresh_edge, is_fresh
from .walk import parents_first

__all__ = ["Expr", "Variable", "Delta", "Convolution", "Zero", "Product", "Sum", "Function", "AlongEdge", "Derivative"]


def _check_edge_name(edge, where: str) -> str:
    if not isinstance(edge, str) or not edge:
        raise TypeError(f"{where}: an edge name must be a non-empty str; got {edge!r}.")
    if is_fresh(edge):
        raise ValueError(f"{where}: edge names starting with '#' are reserved for inner edges; got {edge!r}.")
    return edge


def _merge_shapes(parts, where: str) -> dict:
    """Union of several shapes; one edge name with two sizes is the user's mistake."""
    shape: dict = {}
    for part in parts:
        for edge, size in part.items():
            if edge in shape and shape[edge] != size:
                raise ValueError(
                    f"{where}: edge {edge!r} has size {shape[edge]} on one side and {size} on the other; "
                    f"an edge name must mean one size. Rename one of them with .rename({edge}=...)."
                )
            shape[edge] = size
    return shape


# Slots that cache what follows from a node's own data alone (its hash, the
# signature and graph that equality compares, its variables): set once, after
# construction, when first asked for. What a pass computes about a node (its
# normal form, say) is kept in that pass's own table (``util.NodeTable``).
_CACHES = frozenset({"_hash", "_sig", "_graph", "_vars"})

_set = object.__setattr__


# Called (no arguments) for every node built, while set: a later stage's work counter
# (``_simplify.budget``) reads it, so that building counts wherever it happens.
on_build = None


class Expr:
    """Base class of tensor expressions: a tensor network with named free edges.

    Every expression has ``edges`` (its free edge names, in order), ``shape``
    (edge name -> size) and ``args`` (its children). Expressions are
    immutable: every field is set once, in the constructor, and assignment
    raises. ``t.func(*t.args)`` rebuilds an equal node.

    ``a == b`` holds when both are the same tensor network up to the names of
    their inner (contracted) edges, with the same free edge names.

    Examples:
        >>> b, i, j = tg.symbols("b i j")
        >>> X, W = tg.Variable("X", b, i), tg.Variable("W", i, j)
        >>> (X @ W).edges
        ('b', 'j')
        >>> X @ W == W @ X
        True
    """

    __slots__ = ("edges", "_shape", "_hash", "_sig", "_graph", "_vars", "_depth", "__weakref__")

    args: tuple = ()
    # The unevaluated Derivative this node evaluates (a ``.grad`` result's), else None:
    # only a Product built to stand for one has it (``Product(..., stands_for=d)``).
    stands_for = None
    # NumPy must hand ``array * expr`` to Expr.__rmul__, not build an object array.
    __array_ufunc__ = None

    def _init(self, edges, shape, depth=None):
        _set(self, "edges", tuple(edges))
        _set(self, "_shape", MappingProxyType(dict(shape)))
        for cache in _CACHES:
            _set(self, cache, None)
        # levels of nodes below and including this one: passes recurse this deep
        if depth is None:
            depth = 1 + max((a._depth for a in self.args), default=0)
        _set(self, "_depth", depth)
        if on_build is not None:
            on_build()

    def __setattr__(self, name, value):
        if name in _CACHES:
            _set(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__}.{name}: expressions are immutable; build a new one instead "
            f"(e.g. .rename(...) for new edge names, or tg.Variable(...) for a new variable)."
        )

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__}.{name}: expressions are immutable.")

    @property
    def shape(self) -> Mapping:
        """Edge name -> size (a sympy expression), in the order of ``edges``; read-only.

        Examples:
            >>> n = tg.symbols("n")
            >>> dict(tg.Variable("A", i=n, j=3).shape)
            {'i': n, 'j': 3}
        """
        return MappingProxyType({e: self._shape[e] for e in self.edges})

    @property
    def func(self):
        """The callable that rebuilds this node from new ``args``: ``t.func(*t.args) == t``.

        The node's other data (a Sum's weights, a function, axes, edge order)
        stays fixed; where new args change the free edges, their natural
        order is used.

        Examples:
            >>> x = tg.Variable("x", i=3)
            >>> t = F.tanh(x)
            >>> t.func(*t.args) == t
            True
            >>> t.func(x.rename(i="k")).edges
            ('k',)
        """
        return self._rebuild

    def _rebuild(self, *args):
        assert not args, f"internal error: {type(self).__name__} has no children"
        return self

    # -- identity ---------------------------------------------------------
    def __hash__(self):
        if self._hash is None:
            self._hash = _named_hash(self)
        return self._hash

    @deep
    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, Expr):
            return NotImplemented
        if hash(self) != hash(other):
            return False
        from .identity import isomorphic

        return isomorphic(self, other)

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __bool__(self):
        raise TypeError(
            "The truth value of a tensor expression is ambiguous; compare expressions with == "
            "and use the result in an if, or evaluate them with tg.lower."
        )

    # -- operators (API.md, "Building expressions") ----------------------
    # Those that can recurse (renames, broadcasts) do so through builders
    # decorated with @deep below.
    def __matmul__(self, other):
        if not isinstance(other, Expr):
            return NotImplemented
        return product([self, other], where="a @ b")

    def __rmatmul__(self, other):
        if not isinstance(other, Expr):
            return NotImplemented
        return product([other, self], where="a @ b")

    def __mul__(self, other):
        if isinstance(other, Expr):
            return elementwise_product(self, other, where="a * b")
        return scale(self, as_weight(other, "a * b"))

    def __rmul__(self, other):
        if isinstance(other, Expr):
            return elementwise_product(other, self, where="a * b")
        return scale(self, as_weight(other, "a * b"))

    def __truediv__(self, other):
        if isinstance(other, Expr):
            from .elementwise import raised

            return elementwise_product(self, raised(other, -1, "a / b"), where="a / b")
        weight = as_weight(other, "a / b")
        if weight == 0:
            raise ZeroDivisionError("a / b: division of a tensor expression by the scalar 0.")
        return scale(self, 1 / weight)

    def __rtruediv__(self, other):
        from .elementwise import raised

        return scale(raised(self, -1, "a / b"), as_weight(other, "a / b"))

    def __pow__(self, k):
        from .elementwise import raised

        return raised(self, k, "a ** k")

    def __add__(self, other):
        return broadcast_sum([self, _as_tensor(other, "a + b")], [1, 1], where="a + b")

    def __radd__(self, other):
        return broadcast_sum([_as_tensor(other, "a + b"), self], [1, 1], where="a + b")

    def __sub__(self, other):
        return broadcast_sum([self, _as_tensor(other, "a - b")], [1, -1], where="a - b")

    def __rsub__(self, other):
        return broadcast_sum([_as_tensor(other, "a - b"), self], [1, -1], where="a - b")

    def __neg__(self):
        return scale(self, sympy.Integer(-1))

    def __pos__(self):
        return self

    # -- edges ------------------------------------------------------------
    @deep
    def rename(self, mapping: Mapping[str, str] | None = None, **kwargs) -> "Expr":
        """Relabel free edges, all at once: ``t.rename(i="k", k="i")`` swaps ``i`` and ``k``.

        Args:
            mapping: old edge name -> new name (or give them as keywords).

        Returns:
            A new expression whose ``edges`` are those of ``t`` with each
            renamed edge replaced in place. Renaming an edge that is not free,
            or onto a name still free, is a ``ValueError``.

        Examples:
            >>> A = tg.Variable("A", i=2, j=3)
            >>> A.rename(i="j", j="i").edges
            ('j', 'i')
        """
        both = sorted(set(mapping or {}) & set(kwargs))
        if both:
            raise ValueError(
                f"rename: edge {both[0]!r} is renamed twice, in the mapping and as a keyword "
                f"({(mapping or {})[both[0]]!r} and {kwargs[both[0]]!r}); give one new name."
            )
        mapping = {**(mapping or {}), **kwargs}
        for old, new in mapping.items():
            if old not in self._shape:
                raise ValueError(
                    f"rename: edge {old!r} is not a free edge of this expression; its free edges are {list(self.edges)}."
                )
            _check_edge_name(new, "rename")
        result = [mapping.get(e, e) for e in self.edges]
        duplicates = sorted(e for e, n in Counter(result).items() if n > 1)
        if duplicates:
            raise ValueError(
                f"rename: after renaming {mapping}, edge name(s) {duplicates} would appear twice "
                f"among the free edges {result}; rename the clashing edge too (renames happen all at once)."
            )
        from .rename import rename

        return rename(self, {o: n for o, n in mapping.items() if o != n})

    # -- passes -----------------------------------------------------------
    # These methods are entry points for the user; the passes themselves live
    # in later stages of the pipeline, which register them (see ``register_pass``).
    @deep
    def grad(self, x, new_names=None):
        """The derivative of this expression with respect to Variable ``x``, or a list of them.

        Edges: ``self.edges`` followed by one new edge per edge of ``x`` (in
        ``x``'s declared order), named as ``x``'s edge, with ``_`` appended while
        that name is already free here; ``new_names`` overrides this.

        The result is built by reverse accumulation from the expression as
        written, in backpropagation's shape (what ``tg.lower`` compiles),
        without computing any normal form; ``.simplify()`` gives its normal
        form. For a scalar ``f`` and vector ``x`` with edge ``i``,
        ``f.grad(x).grad(x)`` is the Hessian with edges ``("i", "i_")``.

        ``x`` may be a list or tuple of Variables: the result is then the list
        of their derivatives, each with the edges it would have alone, from one
        reverse sweep. Gradients taken one at a time share that sweep too (the
        last few expressions' sweeps are remembered), so either way a loss's
        gradients cost work linear in the loss, not in the loss times the
        number of parameters.

        Args:
            x: the Variable to differentiate with respect to, or a list or tuple of them.
            new_names: edge of ``x`` -> name of the new edge; for a list, None or
                one such dict (or None) per Variable.

        Returns:
            The derivative, an expression with edges ``self.edges`` followed by
            the new ones; for a list, the list of derivatives.

        Examples:
            >>> b, d, c = tg.symbols("b d c")
            >>> X, W, T = tg.Variable("X", b, d), tg.Variable("W", d, c), tg.Variable("T", b, c)
            >>> loss = F.sum(F.cross_entropy(X @ W, T, "c"))
            >>> fn = tg.lower([loss, loss.grad(W)])
            >>> value, grad = fn(X=np.ones((4, 5)), W=np.zeros((5, 3)), T=np.eye(3)[[0, 1, 2, 0]])
            >>> round(float(value), 4), grad.shape
            (4.3944, (5, 3))
            >>> gX, gW = loss.grad([X, W])
            >>> gX.edges, gW.edges
            (('b', 'd'), ('d', 'c'))
        """
        grads = _pass("grad")
        if not isinstance(x, (list, tuple)):
            return grads(self, [x], [new_names])[0]
        xs = list(x)
        if new_names is None:
            names = [None] * len(xs)
        elif isinstance(new_names, (list, tuple)) and len(new_names) == len(xs):
            names = list(new_names)
        else:
            raise TypeError(
                f"grad: with a list of {len(xs)} Variables, new_names must be None or a list of {len(xs)} dicts "
                f"(or None), one per Variable; got {new_names!r}."
            )
        return grads(self, xs, names)

    @deep
    def simplify(self) -> "Expr":
        """An equal-valued expression in normal form, every derivative evaluated; ``edges`` kept exactly.

        The normal form shows structure: the Hessian of ``x^T A x`` is
        ``A + A^T``, independent of ``x``.

        Examples:
            >>> n = tg.symbols("n")
            >>> x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
            >>> (x @ A @ x.rename(i="j")).grad(x).grad(x).simplify()
            A[i,i_] + A[i_,i]
        """
        return _pass("simplify")(self)

    def expand(self) -> "Expr":
        """Every product distributed over its sums: a sum of monomials in normal form, ``edges`` kept exactly.

        ``a.expand() == b.expand()`` decides equality of expressions that differ
        only by distributivity; ``.simplify()`` keeps products of sums factored.

        Examples:
            >>> n = tg.symbols("n")
            >>> X, a, b = tg.Variable("X", i=n, j=n), tg.Variable("a", j=n), tg.Variable("b", j=n)
            >>> (X @ (a + b)).expand() == (X @ a + X @ b).expand()
            True
            >>> x, y, w = tg.Variable("x", i=n), tg.Variable("y", i=n), tg.Variable("w", i=n)
            >>> ((x + y) @ w - x @ w - y @ w).expand()
            0
        """
        return _pass("expand")(self)

    @deep
    def variables(self) -> tuple:
        """The Variables this expression depends on (as declared, not renamed), in first-seen order.

        Examples:
            >>> x, y = tg.Variable("x", i=2), tg.Variable("y", i=2)
            >>> [v.name for v in (x.rename(i="j") @ y.rename(i="j") + F.sum(x)).variables()]
            ['x', 'y']
        """
        if self._vars is None:
            seen: dict = {}
            for arg in self.args:
                for v in arg.variables():
                    seen.setdefault(v, None)
            self._vars = tuple(seen)
        return self._vars

    def depends_on(self, x: "Variable") -> bool:
        """Whether Variable ``x`` occurs in this expression (under any edge names).

        Examples:
            >>> x, y = tg.Variable("x", i=2), tg.Variable("y", i=2)
            >>> F.exp(x).depends_on(x), F.exp(x).depends_on(y)
            (True, False)
        """
        key = x.key
        return any(v.key == key for v in self.variables())

    @deep
    def __repr__(self):
        return _pass("to_string")(self)

    def _repr_latex_(self) -> str:
        """The index notation, for Jupyter (``tg.to_latex``)."""
        return "$" + _pass("to_latex")(self) + "$"

    def _repr_svg_(self) -> str:
        """The tensor diagram, for Jupyter (``tg.draw``)."""
        return _pass("draw")(self)

    __str__ = __repr__


# The passes that expressions offer as methods (.grad, .simplify, printing)
# belong to later stages of the pipeline. Each registers itself here when its
# module is imported (importing tgjax imports them all), so that imports flow
# one way: this module never imports a later stage.
_PASSES: dict = {}


def register_pass(name: str, fn) -> None:
    """Offer ``fn`` to the expression methods under ``name`` ("grad", "simplify", "to_string", "to_latex", "draw", "expand")."""
    _PASSES[name] = fn


def _pass(name: str):
    fn = _PASSES.get(name)
    if fn is None:
        raise AssertionError(f"internal error: the {name!r} pass is not registered; import tgjax, which registers it")
    return fn


@deep
def _named_hash(t: Expr) -> int:
    from .identity import named_hash

    return named_hash(t)


def _as_tensor(value, where: str) -> Expr:
    if isinstance(value, Expr):
        return value
    return scale(Product(()), as_weight(value, where))


class Variable(Expr):
    """A leaf tensor.

    ``Variable("x", i)`` has one edge named ``"i"`` of size ``i``;
    ``Variable("S", i=n, j=n)`` is an n-by-n matrix with edges ``i`` and ``j``.
    Declaration order is the axis order of the array bound to it at call time.

    ``symmetric=[("i", "j")]`` declares a tensor equal to itself with those
    edges swapped (each pair of equal size; pairs that share an edge make the
    tensor symmetric in all of their edges). Equality, simplification and
    printing use it (``S - S^T`` is 0), and ``.grad(S)`` is the symmetrised
    derivative ``(G + G^T) / 2``. The array bound to it must be symmetric:
    nothing checks this at call time. (So no edge can be called ``symmetric``.)

    Examples:
        >>> i, j = tg.symbols("i j")
        >>> A = tg.Variable("A", i, j)
        >>> n = tg.symbols("n")
        >>> S = tg.Variable("S", i=n, j=n, symmetric=[("i", "j")])
        >>> (S - S.rename(i="j", j="i")).simplify()
        0[i,j]
    """

    __slots__ = ("name", "decl", "_names", "symmetric")

    def __init__(self, name: str, /, *sizes, symmetric=(), **named_edges):
        where = f"Variable({name!r}, ...)"
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(
                f"Variable: the name must be a Python identifier that is not a keyword "
                f"(it is the keyword argument of the lowered function); got {name!r}."
            )
        decl = []
        for size in sizes:
            if not isinstance(size, sympy.Symbol):
                raise TypeError(
                    f"{where}: a positional size must be a sympy symbol, whose name becomes the edge name; "
                    f"got {size!r}. Give numeric sizes as keywords: Variable({name!r}, i=3)."
                )
            decl.append((str(size), size))
        for edge, size in named_edges.items():
            decl.append((edge, as_size(size, where)))
        names = [e for e, _ in decl]
        for e in names:
            _check_edge_name(e, where)
        duplicates = sorted(e for e, n in Counter(names).items() if n > 1)
        if duplicates:
            raise ValueError(
                f"{where}: edge {duplicates[0]!r} appears twice; each edge name must be unique. "
                f"Give the second one its own name, e.g. Variable({name!r}, i=n, j=n)."
            )
        self._setup(name, tuple(decl), tuple(names), _symmetric_classes(symmetric, dict(decl), where))

    def _setup(self, name, decl, names, symmetric=()):
        _set(self, "name", name)
        _set(self, "decl", decl)
        _set(self, "_names", names)
        _set(self, "symmetric", symmetric)
        self._init(names, {n: s for n, (_, s) in zip(names, decl)})

    @classmethod
    def _renamed(cls, base: "Variable", names) -> "Variable":
        obj = cls.__new__(cls)
        obj._setup(base.name, base.decl, tuple(names), base.symmetric)
        return obj

    @property
    def key(self):
        """What makes two Variables the same variable: name, declared edges and symmetries."""
        return (self.name, self.decl, self.symmetric)

    def symmetries(self) -> list:
        """Every permutation of the declared edges within their symmetric classes, as a mapping
        (declared edge -> declared edge), the identity first; just the identity when none."""
        per_class = [[dict(zip(c, order)) for order in itertools.permutations(c)] for c in self.symmetric]
        out = []
        for parts in itertools.product(*per_class):
            mapping = {e: e for e, _ in self.decl}
            for part in parts:
                mapping.update(part)
            out.append(mapping)
        return out

    def printed(self, labels) -> list:
        """``labels`` (one per edge, in edge order) as printed: each symmetric class's labels
        sorted over its positions, so that ``S[j,i]`` and ``S[i,j]``, one tensor, read alike."""
        labels = list(labels)
        position = {e: k for k, (e, _) in enumerate(self.decl)}
        for c in self.symmetric:
            places = sorted(position[e] for e in c)
            for k, label in zip(places, sorted(labels[k] for k in places)):
                labels[k] = label
        return labels

    def symmetric_class(self, declared_edge: str) -> tuple:
        """The declared edges that ``declared_edge`` can be swapped with (itself included)."""
        return next((c for c in self.symmetric if declared_edge in c), (declared_edge,))

    @property
    def declared(self) -> "Variable":
        """This variable with its declared edge names."""
        return self if self._names == tuple(e for e, _ in self.decl) else Variable._renamed(self, [e for e, _ in self.decl])

    def edge_of(self, declared_edge: str) -> str:
        """The current name of a declared edge."""
        for (e, _), n in zip(self.decl, self._names):
            if e == declared_edge:
                return n
        raise KeyError(declared_edge)

    def variables(self):
        return (self.declared,)


def _symmetric_classes(symmetric, sizes: dict, where: str) -> tuple:
    """The classes of declared edges that ``symmetric`` (pairs of edge names) makes interchangeable,
    each in declaration order, checked."""
    if isinstance(symmetric, tuple) and len(symmetric) == 2 and all(isinstance(e, str) for e in symmetric):
        symmetric = [symmetric]  # one pair given without its list
    pairs = list(symmetric)
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(e, str) for e in pair)):
            raise TypeError(f"{where}: symmetric must be a list of pairs of edge names, e.g. [('i', 'j')]; got {symmetric!r}.")
        for e in pair:
            if e not in sizes:
                raise ValueError(f"{where}: symmetric names edge {e!r}, which is not an edge; its edges are {list(sizes)}.")
        a, b = pair
        if a == b:
            raise ValueError(f"{where}: symmetric pair {tuple(pair)} names one edge twice.")
        if sizes[a] != sizes[b]:
            raise ValueError(
                f"{where}: symmetric edges {a!r} and {b!r} have sizes {sizes[a]} and {sizes[b]}; a swap needs equal sizes."
            )
    classes = UnionFind()
    for a, b in pairs:
        classes.union(a, b)
    groups: dict = {}
    for e in sizes:
        if e in classes:
            groups.setdefault(classes.find(e), []).append(e)
    return tuple(tuple(g) for g in groups.values())


class Delta(Expr):
    """The copy tensor: 1 where all its indices agree, else 0.

    With two edges it is the identity matrix, with one the all-ones vector,
    with none the scalar ``size``. Inside a network it just joins edges.

    Examples:
        >>> n = tg.symbols("n")
        >>> I = tg.Delta(n, "i", "j")
        >>> x = tg.Variable("x", i=n)
        >>> (x @ I).simplify()
        x[j]
    """

    __slots__ = ("size",)

    def __init__(self, size, *edges):
        where = f"Delta({size}, {', '.join(map(repr, edges))})"
        size = as_size(size, where)
        for e in edges:
            _check_edge_name(e, where)
        duplicates = sorted(e for e, n in Counter(edges).items() if n > 1)
        if duplicates:
            raise ValueError(f"{where}: edge {duplicates[0]!r} appears twice; each edge name must be unique.")
        _set(self, "size", size)
        self._init(edges, {e: size for e in edges})

    @classmethod
    def _make(cls, size, edges):
        obj = cls.__new__(cls)
        _set(obj, "size", size)
        obj._init(edges, {e: size for e in edges})
        return obj


class Convolution(Expr):
    """The convolution tensor of Hayashi et al.: 1 where ``in = out + k``, else 0.

    ``Convolution(w_in, k, w_out)`` has three edges named after its sizes,
    ``(str(w_in), str(k), str(w_out))``, and describes a "valid" convolution:
    ``w_out = w_in - k + 1``. ``x @ Convolution(w, k, w2) @ kernel`` is the
    1-D cross-correlation ``y[o] = sum_j x[o + j] kernel[j]`` (what deep
    learning calls a convolution). The two "part" edges (``k`` and
    ``w_out``) play symmetric roles: the tensor is the same with them swapped.

    When a network is lowered the tensor is never built: two operands joined
    by convolution tensors become one ``lax.conv_general_dilated``, and a
    convolution anywhere else a windowed view of a neighbour.

    Args:
        w_in, k, w_out: sympy symbols (``tg.symbols("w k w2")``). Sizes are
            read from the inputs at call time; one that no input fixes is
            derived from the other two.

    Examples:
        >>> w, k, w2 = tg.symbols("w k w2")
        >>> y = tg.Variable("x", w) @ tg.Convolution(w, k, w2) @ tg.Variable("kernel", k)
    """

    __slots__ = ()

    def __init__(self, w_in, k, w_out):
        sizes = (w_in, k, w_out)
        where = f"Convolution({', '.join(map(str, sizes))})"
        for s in sizes:
            if not isinstance(s, sympy.Symbol):
                raise TypeError(
                    f"{where}: each size must be a sympy symbol, whose name becomes the edge name; got {s!r}. "
                    f"Use tg.symbols('w k w2'); numeric sizes come from the arrays at call time."
                )
        names = tuple(str(s) for s in sizes)
        duplicates = sorted(e for e, n in Counter(names).items() if n > 1)
        if duplicates:
            raise ValueError(
                f"{where}: edge {duplicates[0]!r} appears twice; give the three sizes distinct symbols, "
                f"e.g. tg.symbols('w k w2'), even where two of them are equal in value."
            )
        for e in names:
            _check_edge_name(e, where)
        self._init(names, dict(zip(names, sizes)))

    @classmethod
    def _make(cls, edges, shape):
        obj = cls.__new__(cls)
        obj._init(edges, shape)
        return obj

    @property
    def input_edge(self) -> str:
        """The ``w_in`` edge; the other two (kernel and output) are interchangeable."""
        return self.edges[0]


class Zero(Expr):
    """The zero tensor with the given edges and sizes.

    Args:
        shape: edge name -> size.

    Examples:
        >>> n = tg.symbols("n")
        >>> x = tg.Variable("x", i=n)
        >>> F.sum(x).grad(x).grad(x).simplify() == tg.Zero({"i": n, "i_": n})
        True
    """

    __slots__ = ()

    def __init__(self, shape: Mapping[str, sympy.Expr]):
        if not isinstance(shape, Mapping):
            raise TypeError(f"Zero: expected a mapping edge name -> size; got {shape!r}.")
        checked = {_check_edge_name(e, "Zero"): as_size(s, "Zero") for e, s in shape.items()}
        self._init(tuple(checked), checked)

    @classmethod
    def _make(cls, shape: Mapping) -> "Zero":
        obj = cls.__new__(cls)
        obj._init(tuple(shape), shape)
        return obj


class Product(Expr):
    """A tensor network: an edge name shared by two factors is contracted, the rest stay free.

    ``edges`` is the free edges in order of first appearance, unless given.

    ``stands_for``: the unevaluated Derivative this product evaluates (a
    ``.grad`` result is its reverse sweep's value, a product of one factor,
    standing for the derivative): its normal form is the derivative's, it
    prints as the derivative, and lowering may take the derivative from
    another form. A product rebuilt over new factors stands for nothing.
    """

    __slots__ = ("factors", "stands_for")

    def __init__(self, factors, edges=None, where: str = "product", stands_for=None):
        factors = tuple(factors)
        counts = Counter(e for f in factors for e in f.edges)
        crowded = sorted(e for e, n in counts.items() if n > 2)
        if crowded:
            e = crowded[0]
            holders = [repr(f) for f in factors if e in f._shape]
            raise ValueError(
                f"{where}: edge {e!r} is shared by {counts[e]} factors ({', '.join(holders)}); "
                f"an edge joins at most two. Use a * b for elementwise products, or rename one of them."
            )
        shape = _merge_shapes([f._shape for f in factors], where)
        free = [e for f in factors for e in f.edges if counts[e] == 1]
        if edges is not None:
            assert sorted(edges) == sorted(free), f"internal error: Product edge order {edges} is not a permutation of {free}"
            free = list(edges)
        assert stands_for is None or (isinstance(stands_for, Derivative) and set(stands_for.edges) == set(free)), (
            f"internal error: a product with edges {free} cannot stand for {stands_for!r}"
        )
        _set(self, "factors", factors)
        _set(self, "stands_for", stands_for)
        self._init(free, {e: shape[e] for e in free})

    @property
    def args(self):
        return self.factors

    def _rebuild(self, *factors):
        counts = Counter(e for f in factors for e in f.edges)
        same = sorted(e for e, n in counts.items() if n == 1) == sorted(self.edges)
        return Product(factors, edges=self.edges if same else None)

    @property
    def inner_edges(self) -> set:
        counts = Counter(e for f in self.factors for e in f.edges)
        return {e for e, n in counts.items() if n == 2}


class _RenamedLazily(Expr):
    """A node whose renamed copy is made in constant time: its children carry its edges, so
    an eager copy would rebuild everything below it down to the leaves. The copy keeps
    the node it was renamed from and the mapping (``renamed_from``) and renames its
    children only when something reads them; a rename of a rename starts from the
    original, and a rename back returns it. ``_rename_memo``: the memo of the ``rename``
    call that made the copy (see ``rename_in``), until the children are read."""

    __slots__ = ("renamed_from", "_rename_memo")

    @classmethod
    def _lazy_copy(cls, base, mapping: dict, memo: dict, own):
        """``base`` renamed by ``mapping``; ``own(origin)``: the copy's other slots, by name (its
        children's slot None)."""
        if base.renamed_from is not None:
            origin, first = base.renamed_from
            through = {e: mapping.get(first.get(e, e), first.get(e, e)) for e in origin.edges}
            base, mapping = origin, {e: n for e, n in through.items() if e != n}
        if not mapping:
            return base
        obj = cls.__new__(cls)
        for name, value in own(base).items():
            _set(obj, name, value)
        _set(obj, "renamed_from", (base, mapping))
        _set(obj, "_rename_memo", memo)
        obj._init(tuple(mapping.get(e, e) for e in base.edges), {mapping.get(e, e): s for e, s in base._shape.items()},
                  depth=base._depth)
        return obj

    def _children_read(self, slot: str, of_origin) -> tuple:
        """The children in ``slot``, renamed from the origin's (``of_origin(origin)``) on first read."""
        if getattr(self, slot) is None:
            from .rename import rename_in

            origin, mapping = self.renamed_from
            _set(self, slot, tuple(rename_in(u, mapping, self._rename_memo) for u in of_origin(origin)))
            _set(self, "_rename_memo", None)
        return getattr(self, slot)

    def variables(self) -> tuple:
        if self.renamed_from is not None:
            return self.renamed_from[0].variables()
        return super().variables()


class Sum(_RenamedLazily):
    """A weighted sum of terms that all have the same free edges."""

    __slots__ = ("_terms", "weights")

    def __init__(self, terms, weights, edges=None, where: str = "sum"):
        terms = tuple(terms)
        weights = tuple(as_weight(w, where) for w in weights)
        assert terms and len(terms) == len(weights), "internal error: a Sum needs one weight per term and at least one term"
        edge_set = set(terms[0].edges)
        for t in terms[1:]:
            assert set(t.edges) == edge_set, f"internal error: Sum terms with edges {terms[0].edges} and {t.edges}; broadcast first"
        shape = _merge_shapes([t._shape for t in terms], where)
        order = tuple(edges) if edges is not None else terms[0].edges
        assert set(order) == edge_set
        _set(self, "_terms", terms)
        _set(self, "weights", weights)
        _set(self, "renamed_from", None)
        _set(self, "_rename_memo", None)
        self._init(order, shape)

    @classmethod
    def _renamed(cls, base: "Sum", mapping: dict, memo: dict) -> "Sum":
        """``base`` with free edges renamed by ``mapping``, in constant time. In a layer-norm
        stack each block's centred sum holds the one before it, and the normal form names it
        differently in every product that reads it: renamed eagerly, the stack's normal form
        grows quadratically in depth."""
        return cls._lazy_copy(base, mapping, memo, lambda b: {"_terms": None, "weights": b.weights})

    @property
    def terms(self) -> tuple:
        return self._children_read("_terms", lambda origin: origin.terms)

    @property
    def args(self):
        return self.terms

    def _rebuild(self, *terms):
        same = set(terms[0].edges) == set(self.edges)
        return Sum(terms, self.weights, edges=self.edges if same else None)


class Function(_RenamedLazily):
    """An elementwise function of one or more tensors with the same edges.

    ``spec`` (an ``ElementwiseFunction``) carries what it computes, its derivative,
    identities and printing.
    """

    __slots__ = ("spec", "_inputs")

    def __init__(self, spec, inputs, edges=None):
        inputs = tuple(inputs)
        assert inputs, "internal error: a Function needs an input"
        edge_set = set(inputs[0].edges)
        for u in inputs[1:]:
            assert set(u.edges) == edge_set, "internal error: elementwise inputs must be broadcast first"
        shape = _merge_shapes([u._shape for u in inputs], f"{spec.name}(...)")
        _set(self, "spec", spec)
        _set(self, "_inputs", inputs)
        _set(self, "renamed_from", None)
        _set(self, "_rename_memo", None)
        self._init(tuple(edges) if edges is not None else inputs[0].edges, shape)

    @classmethod
    def _renamed(cls, base: Function, mapping: dict, memo: dict) -> Function:
        """``base`` with free edges renamed by ``mapping``, in constant time. A derivative's
        normal form renames the chain below every partial (quadratic in depth, eagerly)."""
        return cls._lazy_copy(base, mapping, memo, lambda b: {"spec": b.spec, "_inputs": None})

    @property
    def inputs(self) -> tuple:
        return self._children_read("_inputs", lambda origin: origin.inputs)

    @property
    def args(self):
        return self.inputs

    def _rebuild(self, *inputs):
        same = set(inputs[0].edges) == set(self.edges)
        return Function(self.spec, inputs, edges=self.edges if same else None)


class AlongEdge(Expr):
    """A function applied along some edges (``axes``, in order) of its input,
    independently for every value of the other edges: ``softmax`` and
    ``inverse`` keep their axes, ``logsumexp`` and ``det`` consume them.

    ``spec.keeps_edge`` says which; consumed axes are inner edges.
    """

    __slots__ = ("spec", "input", "axes")

    def __init__(self, spec, input: Expr, axes, edges=None):
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        for a in axes:
            assert a in input._shape, f"internal error: {spec.name} along {a!r}, which {input.edges} lacks"
        _set(self, "spec", spec)
        _set(self, "input", input)
        _set(self, "axes", axes)
        free = input.edges if spec.keeps_edge else tuple(e for e in input.edges if e not in axes)
        if edges is not None:
            assert sorted(edges) == sorted(free)
            free = tuple(edges)
        self._init(free, {e: input._shape[e] for e in free})

    @property
    def args(self):
        return (self.input,)

    def _rebuild(self, input):
        same = set(input.edges) == set(self.input.edges)
        return AlongEdge(self.spec, input, self.axes, edges=self.edges if same else None)

    @property
    def edge(self) -> str:
        """The axis of a one-axis function (softmax, logsumexp)."""
        return self.axes[0]


class Derivative(Expr):
    """The derivative of ``expr`` with respect to Variable ``x``, unevaluated.

    Args:
        expr: the expression to differentiate.
        x: a Variable.
        new_names: edge of ``x`` -> name of the new edge (see ``Expr.grad``).

    Edges: ``expr.edges`` then one new edge per edge of ``x``. ``.simplify()``
    evaluates it; ``tg.lower`` evaluates it too.

    Examples:
        >>> x = tg.Variable("x", i=3)
        >>> d = tg.Derivative(F.sum(x * x), x)
        >>> d.edges
        ('i',)
        >>> d.simplify()
        2 x[i]
    """

    __slots__ = ("expr", "x", "new_names")

    def __init__(self, expr: Expr, x: Variable, new_names: Mapping[str, str] | None = None):
        if not isinstance(expr, Expr):
            raise TypeError(f"Derivative: expected a tensor expression to differentiate; got {type(expr).__name__}.")
        if not isinstance(x, Variable):
            raise TypeError(
                f"Derivative: can only differentiate with respect to a Variable; got {type(x).__name__} {x!r}. "
                f"Differentiate with respect to the Variable itself, then rename edges if needed."
            )
        x = x.declared
        _check_wrt(expr, x, "Derivative")
        if new_names is not None and not isinstance(new_names, Mapping):
            raise TypeError(
                f"Derivative: new_names must be a dict (edge of {x.name} -> new name); got {new_names!r}."
            )
        given = dict(new_names or {})
        declared = [e for e, _ in x.decl]
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"Derivative: new_names has key(s) {unknown} that are not edges of {x.name}; its edges are {declared}.")
        taken = set(expr.edges)
        names = {}
        for e in declared:
            if e in given:
                name = _check_edge_name(given[e], "Derivative")
                if name in taken:
                    raise ValueError(
                        f"Derivative: new edge name {name!r} (for edge {e!r} of {x.name}) is already used by "
                        f"{sorted(taken)}; choose another name."
                    )
            else:
                name = e
                while name in taken:
                    name += "_"
            taken.add(name)
            names[e] = name
        self._setup(expr, x, names)

    def _setup(self, expr: Expr, x: Variable, names: dict):
        _set(self, "expr", expr)
        _set(self, "x", x)
        _set(self, "new_names", MappingProxyType(dict(names)))
        self._init(
            expr.edges + tuple(names[e] for e, _ in x.decl),
            {**expr._shape, **{names[e]: s for e, s in x.decl}},
        )

    @classmethod
    def _make(cls, expr: Expr, x: Variable, names: dict) -> "Derivative":
        """The derivative with new edges ``names`` as given: passes may use inner (``#``) names."""
        obj = cls.__new__(cls)
        obj._setup(expr, x, dict(names))
        return obj

    @property
    def args(self):
        return (self.expr, self.x)

    def _rebuild(self, expr, x):
        return Derivative._make(expr, x, self.new_names)


class Expectation(Expr):
    """The expectation of ``expr`` over a Gaussian Variable ``wrt ~ N(mu, covar)``.

    Args:
        expr: the expression to average.
        wrt: the Gaussian Variable (scalar, vector, matrix or any tensor).
        mu: its mean, an expression with ``wrt``'s declared edges (default 0).
        covar: its covariance, with two edges per edge ``e`` of ``wrt``: ``e``
            and ``covar_names[e]`` (default: the identity). It is taken to be
            symmetric: the closed forms use ``(covar + covar^T) / 2``, so a
            gradient with respect to it is symmetric too.
        covar_names: edge of ``wrt`` -> the name of its partner edge in
            ``covar`` (default: the edge with ``_`` appended until it is neither
            an edge of ``wrt`` nor a free edge of ``expr``).

    Edges: ``expr.edges``. ``.simplify()`` gives the closed form of every
    polynomial of ``wrt`` and of a polynomial times ``F.exp`` of an affine
    function of ``wrt``; elsewhere the node stays, and ``tg.lower`` says which
    part has no closed form.

    Examples:
        >>> n = tg.symbols("n")
        >>> u = tg.Variable("u", i=n)
        >>> tg.Expectation(F.sum(u * u) ** 2, u).simplify()
        n**2 + 2*n
        >>> A, m = tg.Variable("A", i=n, j=n), tg.Variable("m", i=n)
        >>> closed = tg.Expectation(u @ A @ u.rename(i="j"), u, mu=m).simplify()  # tr(A) + m^T A m
        >>> float(tg.lower(closed)(A=np.eye(2), m=np.ones(2)))
        4.0
    """

    __slots__ = ("expr", "wrt", "mu", "covar", "covar_names")

    def __init__(self, expr: Expr, wrt: "Variable", mu: Expr | None = None, covar: Expr | None = None,
                 covar_names: Mapping[str, str] | None = None):
        where = "Expectation"
        if not isinstance(expr, Expr):
            raise TypeError(f"{where}: expected a tensor expression to average; got {type(expr).__name__}.")
        if not isinstance(wrt, Variable):
            raise TypeError(
                f"{where}: wrt must be the Gaussian tg.Variable to average over; got {type(wrt).__name__} {wrt!r}."
            )
        wrt = wrt.declared
        declared = [e for e, _ in wrt.decl]
        if covar_names is not None and not isinstance(covar_names, Mapping):
            raise TypeError(f"{where}: covar_names must be a dict (edge of {wrt.name} -> partner edge name); got {covar_names!r}.")
        given = dict(covar_names or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(f"{where}: covar_names has key(s) {unknown} that are not edges of {wrt.name}; its edges are {declared}.")
        taken = set(declared) | set(expr.edges)
        names, apart = {}, {}
        for e in declared:
            if e in given:
                name = _check_edge_name(given[e], where)
                if name in declared or name in names.values():
                    raise ValueError(
                        f"{where}: covar_names[{e!r}] = {name!r} is already an edge of {wrt.name} or the partner of "
                        f"another edge ({sorted(set(declared) | set(names.values()))}); choose another name."
                    )
                if name in expr._shape:
                    # The partner edges are the covariance's own, bound inside this node: one that
                    # is also a free edge of the expression (E[x x'] with x' = x renamed onto
                    # covar's names) is renamed apart, in the covariance too.
                    apart[name] = name + "_"
                    while apart[name] in taken or (isinstance(covar, Expr) and apart[name] in covar._shape):
                        apart[name] += "_"
                    name = apart[name]
            else:
                name = e + "_"
                while name in taken:
                    name += "_"
            taken.add(name)
            names[e] = name
        shape = dict(wrt.decl)
        if mu is None:
            mu = Zero._make(shape)
        _check_moment(mu, shape, "mu", where, wrt)
        if covar is None:
            covar = Product([Delta._make(s, (e, names[e])) for e, s in wrt.decl], edges=tuple(declared) + tuple(names[e] for e in declared))
        elif isinstance(covar, Expr) and apart and set(apart) <= set(covar.edges):
            covar = covar.rename(apart)
        _check_moment(covar, {**shape, **{names[e]: s for e, s in wrt.decl}}, "covar", where, wrt)
        _check_wrt(expr, wrt, where, zero_if_absent=False)
        self._setup(expr, wrt, mu, covar, names)

    def _setup(self, expr, wrt, mu, covar, names):
        _set(self, "expr", expr)
        _set(self, "wrt", wrt)
        _set(self, "mu", mu)
        _set(self, "covar", covar)
        _set(self, "covar_names", MappingProxyType(dict(names)))
        self._init(expr.edges, expr._shape)

    @classmethod
    def _make(cls, expr, wrt, mu, covar, names) -> "Expectation":
        obj = cls.__new__(cls)
        obj._setup(expr, wrt, mu, covar, dict(names))
        return obj

    @property
    def args(self):
        return (self.expr, self.wrt, self.mu, self.covar)

    def _rebuild(self, expr, wrt, mu, covar):
        return Expectation._make(expr, wrt, mu, covar, self.covar_names)

    def has_identity_covariance(self) -> bool:
        """Whether ``covar`` is the identity (the default): Deltas joining each edge to its partner."""
        factors = self.covar.factors if isinstance(self.covar, Product) else (self.covar,)
        pairs = {frozenset((e, n)) for e, n in self.covar_names.items()}
        return all(isinstance(f, Delta) and frozenset(f.edges) in pairs for f in factors) and len(factors) == len(pairs)

    def has_default_law(self) -> bool:
        """Whether the law is the default standard normal (zero mean, identity covariance)."""
        return isinstance(self.mu, Zero) and self.has_identity_covariance()

    def variables(self):
        if self._vars is None:
            seen: dict = {}
            for v in self.expr.variables():
                if v.key != self.wrt.key:
                    seen.setdefault(v, None)
            for v in (*self.mu.variables(), *self.covar.variables()):
                seen.setdefault(v, None)
            self._vars = tuple(seen)
        return self._vars


# What the last few expressions differentiated contain: a loss's gradients, one Derivative
# per parameter, walk the loss once.
_CONTENTS = IdentityCache(8)


def _contents(expr: Expr) -> tuple:
    """(name -> {key: Variable} of the Variables ``expr`` contains, keys averaged over by its
    Expectations, keys of integer indices of its one-hots), from one walk. A ``.grad`` result is read through the derivative it
    stands for, which still contains what its evaluation may have dropped (the Hessian
    of ``x^T A x`` is ``A + A^T``, but it is a derivative of an expression of ``x``)."""
    def walk():
        names: dict = {}
        averaged: set = set()
        indices: set = set()
        for node in parents_first([expr if expr.stands_for is None else expr.stands_for]):
            if isinstance(node, Variable):
                names.setdefault(node.name, {})[node.key] = node
            elif isinstance(node, Expectation):
                averaged.add(node.wrt.key)
            elif isinstance(node, Function) and node.spec.name == "equal":
                # F.one_hot's comparison (F.take's too): its index is integer data
                indices.update(v.key for v in variables_in([node.inputs[0]]))
        return names, averaged, indices
    return _CONTENTS.get(expr, walk)


def _declared(v: "Variable") -> str:
    return f"{v.name}[{', '.join(f'{e}={s}' for e, s in v.decl)}]"


def _check_wrt(expr: Expr, x: "Variable", where: str, zero_if_absent: bool = True) -> None:
    """``x`` against the Variables of ``expr``: another Variable of its name (other edges or
    sizes) is a ValueError, as ``tg.lower`` refuses it; an Expectation averaging over ``x``
    is a ValueError for a derivative; no Variable of its name at all is a true zero,
    said once as a UserWarning (nearly always a mistake)."""
    names, averaged, indices = _contents(expr)
    if zero_if_absent and x.key in indices:
        raise ValueError(
            f"{where}: {x.name} is an integer index here (of F.one_hot or F.take); a derivative with "
            f"respect to it is not defined. Differentiate with respect to the table or other parameters."
        )
    if zero_if_absent and x.key in averaged:
        raise ValueError(
            f"{where}: an Expectation in the expression averages over {x.name}, so it does not depend on "
            f"{x.name}; differentiate with respect to its mean or covariance (the Variables given as mu= and "
            f"covar=) instead."
        )
    found = names.get(x.name, {})
    other = next((v for key, v in found.items() if key != x.key), None)
    if other is not None and x.key not in found:
        raise ValueError(
            f"{where}: {_declared(x)} is not the expression's Variable {x.name!r}, which is "
            f"{_declared(other)}; two different variables may not share a name. Use the expression's "
            f"Variable, or give them distinct names."
        )
    if zero_if_absent and not found:
        warnings.warn(
            f"{where}: the expression does not contain Variable {x.name!r}, so its derivative with respect "
            f"to it is zero; its variables are {sorted(names)}.",
            UserWarning,
            stacklevel=_outside_tgjax(),
        )


def _outside_tgjax() -> int:
    """The ``stacklevel`` that points a warning at the caller's own code, past tgjax's frames."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _check_moment(t, shape: dict, what: str, where: str, wrt) -> None:
    if not isinstance(t, Expr):
        raise TypeError(f"{where}: {what} must be a tensor expression (a tg.Variable, say); got {type(t).__name__}.")
    if set(t.edges) != set(shape):
        meaning = f"the edges of {wrt.name}" if what == "mu" else f"each edge of {wrt.name} and its partner in covar_names"
        raise ValueError(
            f"{where}: {what} must have the edges {sorted(shape)} ({meaning}); got {sorted(t.edges)}. Rename it with .rename(...)."
        )
    for e, s in shape.items():
        if sympy.simplify(t._shape[e] - s) != 0:
            raise ValueError(f"{where}: {what} has edge {e!r} of size {t._shape[e]}, but {wrt.name}'s edge has size {s}.")


# -- private builders used by operators and passes ---------------------------


def variables_in(exprs) -> tuple:
    """The Variables of all ``exprs``, as ``variables()`` orders them (first seen), from one
    walk of their shared DAG that caches nothing on the way.

    ``variables()`` caches a tuple on every node, which for a sum built by repeated
    ``+`` over distinct variables is quadratic (each level holds all below it), and
    asking each of many outputs for its own costs outputs times variables (a million
    for a 1,000-layer MLP's gradients).
    """
    seen: dict = {}
    visited: set = set()
    stack = list(reversed(exprs))
    while stack:
        node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, Variable):
            seen.setdefault(node.declared, None)
        elif node._vars is not None or isinstance(node, Expectation):
            seen.update(dict.fromkeys(v for v in node.variables() if v not in seen))
        elif renamed_origin(node) is not None:
            stack.append(node.renamed_from[0])  # its children would be built to be read
        else:
            stack.extend(reversed(node.args))
    return tuple(seen)


def renamed_origin(t: Expr):
    """``(origin, mapping)`` for a lazily renamed copy (a function or a sum, whose children
    are renamed only when read), else None."""
    return getattr(t, "renamed_from", None)


def rebuilt(t: Expr, args) -> Expr:
    """``t`` over new children ``args``, or ``t`` itself when they are its own."""
    args = tuple(args)
    if all(a is b for a, b in zip(args, t.args)):
        return t
    return t.func(*args)


def product(factors, where="product", edges=None) -> Expr:
    """Contract the factors on the edge names they share."""
    return Product(factors, edges=edges, where=where)


def scale(t: Expr, weight) -> Expr:
    """``weight * t``."""
    if weight == 1:
        return t
    return Sum([t], [weight], edges=t.edges)


def summed(t: Expr, edges) -> Expr:
    """``t`` summed over ``edges`` (a tuple of its free edges): contracted with all-ones vectors."""
    edges = tuple(edges)
    if not edges:
        return t
    return Product([t, *(Delta._make(t._shape[e], (e,)) for e in edges)], edges=tuple(e for e in t.edges if e not in edges))


def ones(shape: Mapping) -> Expr:
    """The all-ones tensor with these edges: an outer product of Delta vectors."""
    return Product([Delta._make(s, (e,)) for e, s in shape.items()], edges=tuple(shape))


def broadcast_to(t: Expr, shape: Mapping, order=None) -> Expr:
    """``t`` multiplied by ones on every edge of ``shape`` that it lacks."""
    missing = {e: s for e, s in shape.items() if e not in t._shape}
    if not missing:
        return t
    return _broadcast(t, missing, order)


@deep
def _broadcast(t: Expr, missing: dict, order) -> Expr:
    if isinstance(t, Product):
        inner = t.inner_edges & set(missing)
        if inner:
            from .rename import freshen_inner

            t = freshen_inner(t, set(missing))
    order = order or (t.edges + tuple(missing))
    return Product([t, *(Delta._make(s, (e,)) for e, s in missing.items())], edges=order)


def broadcast_sum(terms, weights, where="sum") -> Expr:
    """A weighted sum; an edge missing from some term is broadcast (API.md)."""
    shape = _merge_shapes([t._shape for t in terms], where)
    order = []
    for t in terms:
        order.extend(e for e in t.edges if e not in order)
    return Sum([broadcast_to(t, shape) for t in terms], weights, edges=order, where=where)


@deep
def elementwise_product(a: Expr, b: Expr, where="a * b") -> Expr:
    """Elementwise on shared edges, outer product on the others.

    Each shared edge ``e`` becomes a three-legged Delta joining ``a``'s copy,
    ``b``'s copy and the free ``e``: the tensor-network form of a Hadamard product.
    """
    _merge_shapes([a._shape, b._shape], where)
    shared = [e for e in a.edges if e in b._shape]
    if not shared:
        return Product([a, b], where=where)
    from .rename import rename

    left = {e: fresh_edge() for e in shared}
    right = {e: fresh_edge() for e in shared}
    deltas = [Delta._make(a._shape[e], (left[e], right[e], e)) for e in shared]
    order = a.edges + tuple(e for e in b.edges if e not in a._shape)
    return Product([rename(a, left), rename(b, right), *deltas], edges=order, where=where)
