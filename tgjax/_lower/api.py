"""``tg.lower``, ``tg.to_source`` and ``tg.check_grads``: the public face of the compiler."""

from __future__ import annotations

import re
import sys
from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import sympy

from .._ir.deep import deep
from .._ir.elementwise import where as where_function
from .._ir.nodes import Expr, Function, Variable, variables_in
from .._ir.rename import sharing_args
from .._ir.sizes import complete_sizes, convolution_triples
from .._ir.structural import is_structural
from .._ir.walk import parents_first
from .._logging import listed, shapes_text, stage
from .._simplify import origins
from . import runtime
from .evaluation import by_symmetry_forms, evaluation_forms, normal_forms, on_normal_forms
from .program import build, parameter

_NOMINAL_SIZE = 64
_NOMINAL_KERNEL = 3


def _as_outputs(exprs, where: str):
    single = isinstance(exprs, Expr)
    outputs = [exprs] if single else list(exprs) if isinstance(exprs, (list, tuple)) else None
    if outputs is None or not outputs or not all(isinstance(t, Expr) for t in outputs):
        raise TypeError(f"{where}: expected a tensor expression or a non-empty list of them; got {exprs!r}.")
    return single, outputs


def _variables(outputs, where: str) -> dict:
    found: dict = {}
    for v in variables_in(outputs):
        other = found.setdefault(v.name, v)
        if other.key != v.key:
            raise ValueError(
                f"{where}: two different variables are both named {v.name!r} "
                f"({_declaration(other)} and {_declaration(v)}); give them distinct names, or one declaration."
            )
    return found


def _sizes_text(env: dict) -> str:
    return listed(f"{s}={n}" for s, n in sorted(env.items(), key=lambda item: str(item[0]))) or "(none)"


def _declaration(v: Variable) -> str:
    """``edges i=n, j=3`` (and the symmetries): what tells two variables of one name apart."""
    text = "edges " + ", ".join(f"{e}={s}" for e, s in v.decl)
    return text + (f", symmetric {list(v.symmetric)}" if v.symmetric else "")


def _size_symbols(outputs) -> set:
    symbols = set()
    seen = set()

    def visit(t):
        # expressions are DAGs: visit each shared node once
        if id(t) in seen:
            return
        seen.add(id(t))
        for s in t._shape.values():
            symbols.update(sympy.sympify(s).free_symbols)
        weights = getattr(t, "weights", ())
        for w in weights:
            symbols.update(sympy.sympify(w).free_symbols)
        for a in t.args:
            visit(a)

    for t in outputs:
        visit(t)
    return symbols


def _by_name(values) -> dict:
    """A dict of values keyed by Variables or names, keyed by names."""
    return {(k.name if isinstance(k, Variable) else k): v for k, v in (values or {}).items()}


def _checked_array(name: str, array, where: str = "tgjax function", masks=frozenset()):
    """The value given for variable ``name`` as an array of numbers, or a clear error. A
    boolean array is taken as 0/1 for a variable in ``masks`` (an ``F.where`` mask)."""
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        try:
            array = jnp.asarray(array)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{where}: the value for variable {name!r} must be an array of numbers; got {array!r} ({error})."
            ) from None
    if jnp.issubdtype(array.dtype, jnp.bool_):
        if name in masks:
            return jnp.asarray(array).astype(jnp.float32)  # exact: 0 and 1
        raise TypeError(
            f"{where}: variable {name!r} is a boolean array; tensor sums and products of booleans "
            f"are not defined here (a boolean array is taken only as an F.where mask). Convert it, "
            f"e.g. {name}=mask.astype(jnp.float32)."
        )
    if not jnp.issubdtype(array.dtype, jnp.number):
        raise TypeError(f"{where}: the value for variable {name!r} must be numeric; got dtype {array.dtype}.")
    return array


def _mask_variables(nodes) -> frozenset:
    """The names of the Variables in the masks of ``F.where`` among ``nodes`` (a shared DAG):
    API.md lets such a mask be a boolean array."""
    masks = [node.inputs[0] for node in nodes
             if isinstance(node, Function) and node.spec is where_function and node.renamed_from is None]
    return frozenset(v.name for v in variables_in(masks)) if masks else frozenset()


def _read_sizes(name: str, var: Variable, array, env: dict, origin: dict, where: str = "tgjax function") -> None:
    """Fix the size symbols of ``var``'s edges from its array's shape, checked against ``env``."""
    shape = tuple(array.shape)
    if len(shape) != len(var.decl):
        raise ValueError(
            f"{where}: variable {name!r} has edges ({', '.join(e for e, _ in var.decl)}) so its array "
            f"must have {len(var.decl)} axes; got an array of shape {shape}."
        )
    edges = ", ".join(e for e, _ in var.decl)
    for (edge, size), n in zip(var.decl, shape):
        size = sympy.sympify(size)
        if size.is_Symbol:
            if size in env and env[size] != n:
                raise ValueError(
                    f"{where}: edge {edge!r} of variable {name!r} has size {size}, which is {env[size]} "
                    f"from {origin[size]}, but {name!r} has {n} along that axis (shape {shape} for edges "
                    f"({edges})). One of the two arrays may be transposed: each array's axes follow its "
                    f"variable's edges in order."
                )
            env.setdefault(size, int(n))
            origin.setdefault(size, f"variable {name!r} (edge {edge!r}; shape {shape} for edges ({edges}))")


def _normalise_sizes(sizes, where: str) -> dict:
    if sizes is not None and not isinstance(sizes, Mapping):
        raise TypeError(
            f"{where}: sizes must be a dict from size symbol to int, e.g. sizes={{n: 5}}; got {type(sizes).__name__} {sizes!r}."
        )
    env = {}
    for k, v in (sizes or {}).items():
        sym = k if isinstance(k, sympy.Basic) else sympy.Symbol(str(k))
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{where}: sizes[{k}] must be a positive int; got {v!r}.")
        env[sym] = int(v)
    return env


class Lowered:
    """A compiled tgjax program (what ``tg.lower`` returns): call it with arrays bound to variable names.

    ``fn(x=x_array, A=A_array)`` or ``fn({x: x_array, "A": A_array})``. Result
    axes follow ``expr.edges``. Programs are planned and jitted once per set
    of sizes.

    ``mapped`` (for the layers in ``tgjax.nn``): names of variables given one
    example at a time under ``jax.vmap``. Contractions are then ordered for a
    batch of them, so work that does not involve them runs once per batch.
    """

    @deep
    def __init__(self, exprs, sizes: Mapping | None = None, mapped=()):
        self._single, outputs = _as_outputs(exprs, "tg.lower")
        self.exprs = tuple(outputs)
        self._depth = max(t._depth for t in outputs)  # read by @deep on the methods
        # Up to four candidate forms of the same values (evaluation.py): the
        # program of each is built per set of sizes, and the cheapest is kept.
        self.evaluated = evaluation_forms(outputs)
        shared = parents_first(list(self.exprs), children=sharing_args)  # one walk for the three below
        self.by_symmetry = by_symmetry_forms(outputs, shared)
        self.normal = normal_forms(self.exprs, shared)
        self.on_normal = on_normal_forms(self.exprs, shared)
        forms = self.evaluated + (self.by_symmetry or ()) + (self.normal or ()) + (self.on_normal or ())
        # the Variables an array is passed for: not the structural ones the program computes
        self.variables = {n: v for n, v in _variables(forms + self.exprs, "tg.lower").items() if not is_structural(n)}
        self._masks = _mask_variables(shared)
        # what the expressions were derived from (a .grad's unevaluated derivative, a
        # simplified expression's input) but no longer mention: sizes only
        derived = [t.stands_for for t in outputs if t.stands_for is not None]
        derived += [v for t in outputs for v in origins(t)]
        self.size_sources = {
            v.name: v for v in _variables(tuple(derived), "tg.lower").values() if v.name not in self.variables
        } if derived else {}
        self._fixed = _normalise_sizes(sizes, "tg.lower")
        unknown = sorted(set(mapped) - set(self.variables))
        assert not unknown, f"internal error: mapped variables {unknown} are not inputs"
        self._mapped = tuple(mapped)
        self._symbols = _size_symbols(forms)
        # the sizes of a convolution that simplified away are still tied
        self._triples = convolution_triples(forms + self.exprs)
        self._programs: dict = {}
        self._by_shapes: dict = {}

    # -- binding -----------------------------------------------------------
    def _bind(self, values, kwargs, unbound=frozenset()) -> tuple[list, dict]:
        """The input arrays in ``self.variables`` order and the sizes they fix. Variables named in
        ``unbound`` are neither read nor returned (``tg.linear_operator``'s direction, whose
        shape follows from the others)."""
        given = {}
        if values is not None:
            if not isinstance(values, Mapping):
                raise TypeError(
                    f"tgjax function: pass arrays as keywords fn(x=...) or as one dict fn({{x: ...}}); got {type(values).__name__}."
                )
            for k, v in values.items():
                name = k.name if isinstance(k, Variable) else k
                if name in given:
                    raise ValueError(f"tgjax function: variable {name!r} is given twice in the dict; give it once.")
                given[name] = v
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise ValueError(
                f"tgjax function: variable {twice[0]!r} is given twice, in the dict and as a keyword; give it once."
            )
        given.update(kwargs)
        env = dict(self._fixed)
        origin = {s: "tg.lower(..., sizes=...)" for s in env}
        arrays = []
        for name, var in self.variables.items():
            if name in unbound:
                continue
            if name not in given:
                edges = ", ".join(e for e, _ in var.decl)
                raise ValueError(f"tgjax function: missing variable {name!r} (edges {edges}); pass it as fn({name}=array).")
            array = _checked_array(name, given[name], masks=self._masks)
            _read_sizes(name, var, array, env, origin)
            arrays.append(array)
        # Variables the expressions were derived from but no longer mention (a constant
        # Hessian): their arrays, where given, fix sizes too.
        for name, var in self.size_sources.items():
            if name in given:
                _read_sizes(name, var, _checked_array(name, given[name]), env, origin)
        env = complete_sizes(env, self._triples, "tgjax function")
        for array, (name, var) in zip(arrays, [(n, v) for n, v in self.variables.items() if n not in unbound]):
            shape = tuple(array.shape)
            for (edge, size), n in zip(var.decl, shape):
                size = sympy.sympify(size)
                if not size.is_Symbol and size.free_symbols <= set(env):
                    expected = int(size.subs(env))
                    if expected != n:
                        shown = str(expected) if size.is_number else f"{size} = {expected}"
                        raise ValueError(
                            f"tgjax function: edge {edge!r} of variable {name!r} has size {shown}, "
                            f"but its array has {n} along that axis (shape {shape})."
                        )
        missing = sorted(str(s) for s in self._symbols if s not in env)
        if missing:
            raise ValueError(
                f"tgjax function: size(s) {missing} are not fixed by any input array; "
                f"give them as tg.lower(expr, sizes={{{missing[0]}: ...}})."
            )
        return arrays, env

    @deep
    def _program(self, env: dict):
        key = tuple(sorted((str(s), n) for s, n in env.items() if s in self._symbols))
        entry = self._programs.get(key)
        if entry is None:
            with stage("plan", f"{len(self.exprs)} expression(s) at sizes {_sizes_text(env)}"):
                source, inputs, extra = self._build(env, comments=False)
            namespace = {**runtime.MODULES, **runtime.HELPERS, **extra}
            exec(compile(source, "<tgjax program>", "exec"), namespace)
            entry = (source, inputs, jax.jit(namespace["program"]))
            self._programs[key] = entry
        return entry

    @deep
    def _build(self, env: dict, comments: bool = True):
        """Source, inputs and globals of the cheaper candidate program at sizes ``env``
        (``comments``: with a comment on each statement, as ``tg.to_source`` shows it)."""
        # On a tie the earlier candidate wins: the normal forms, whose programs the
        # benchmarks have measured longest, then derivatives on normal forms.
        candidates = [forms for forms in (self.normal, self.on_normal) if forms is not None] + [self.evaluated]
        candidates += [self.by_symmetry] if self.by_symmetry is not None else []
        # compared by their steps' estimated cost: only the one kept is written as source
        best = min((build(forms, env, mapped=self._mapped) for forms in candidates), key=lambda built: built.cost)
        return best.source(as_tuple=not self._single, comments=comments), best.inputs, best.extra_globals

    def _shapes_key(self, arrays, given: dict) -> tuple:
        """What picks a program: the shapes and dtypes of the inputs (a dtype the checks in
        ``_bind`` refuse is never a key), and the shapes of the arrays that only give sizes."""
        key = [(a.shape, a.dtype) for a in arrays]
        key.extend((name, given[name].shape) for name in self.size_sources if name in given)
        return tuple(key)

    def __call__(self, values=None, /, *extra, **kwargs):
        if extra:
            raise TypeError(
                f"tgjax function: got {1 + len(extra)} positional arguments; pass the arrays by keyword, "
                f"fn({', '.join(f'{n}=...' for n in self.variables)}), or as one dict keyed by variable name."
            )
        # Fast path, for a dict of arrays (or keywords) keyed by name, in shapes seen
        # before (checked then): the time between two calls is spent here, and on
        # XLA:CPU it costs more than its length (the thread pool goes idle), so it
        # does no more than pick the program and order the arrays.
        given = values if not kwargs else kwargs if values is None else None
        if isinstance(given, dict):
            try:
                try:
                    arrays = [given[name] for name in self.variables]
                except KeyError:  # Variables as keys
                    given = _by_name(given)
                    arrays = [given[name] for name in self.variables]
                found = self._by_shapes.get(self._shapes_key(arrays, given))
            except (KeyError, AttributeError, TypeError):  # a variable missing, a list for an array
                found = None
            if found is not None:
                fn, positions = found
                return fn(*[arrays[k] for k in positions])
        arrays, env = self._bind(values, kwargs)
        _, inputs, fn = self._program(env)
        names = list(self.variables)
        positions = [names.index(n) for n in inputs]
        given = {**_by_name(values), **kwargs}
        if all(hasattr(given[n], "shape") and hasattr(given[n], "dtype")
               for n in [*names, *(n for n in self.size_sources if n in given)]):
            self._by_shapes[self._shapes_key([given[n] for n in names], given)] = (fn, positions)
        with stage("compile and first call", shapes_text(a.shape for a in arrays)):
            return fn(*[arrays[k] for k in positions])

    def source(self, values=None, /, **kwargs) -> str:
        """The generated source for the sizes of these inputs (see ``tg.to_source``).

        Examples:
            >>> x = tg.Variable("x", i=3)
            >>> fn = tg.lower(F.exp(x))
            >>> "jnp.exp(x)" in fn.source(x=np.zeros(3))
            True
        """
        _, env = self._bind(values, kwargs)
        return _sizes_header(env, set(env)) + standalone(*self._build(env), _planned_shapes(self.variables, env))

    def __repr__(self):
        return f"<tgjax.lower of {len(self.exprs)} expression(s) in {sorted(self.variables)}>"


def lower(exprs, sizes: Mapping | None = None, samples: int | None = None):
    """Compile one expression, or a list of them, into one jitted JAX function.

    Derivatives are computed as backpropagation computes them (reverse
    accumulation), and the normal form (``simplify``) is lowered instead where
    it is estimated cheaper; common subexpressions across all outputs are
    computed once. A loss and its gradients cost what
    ``jax.value_and_grad`` of the same loss costs: the tests assert at most 2x
    its XLA FLOPs and largest intermediate (README, "Cost").

    Args:
        exprs: an expression, or a list of them (then the call returns a tuple).
        sizes: values for size symbols that no input array fixes, e.g. ``{n: 5}``.
        samples: estimate each ``tg.Expectation`` that has no closed form from
            this many reparameterised draws; the callable then takes a
            keyword ``key`` (a JAX PRNG key). Without it such an expectation
            is a ``ValueError``.

    Returns:
        A callable: ``fn(x=x_array, A=A_array)`` or ``fn({x: x_array})``.

    Examples:
        >>> n = tg.symbols("n")
        >>> x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
        >>> q = x @ A @ x.rename(i="j")
        >>> fn = tg.lower([q, q.grad(x)])
        >>> value, grad = fn(x=jnp.ones(3), A=jnp.eye(3))
        >>> float(value), grad.tolist()
        (3.0, [2.0, 2.0, 2.0])

        An expectation without a closed form, estimated by sampling:

        >>> u = tg.Variable("u", i=n)
        >>> fn = tg.lower(tg.Expectation(F.sum(F.tanh(u) ** 2), u), sizes={n: 2}, samples=20000)
        >>> round(float(fn(key=jax.random.PRNGKey(0))), 1)
        0.8
    """
    if samples is not None:
        from .sampling import Sampled  # it builds on Lowered

        return Sampled(exprs, samples, sizes)
    return Lowered(exprs, sizes)


@deep
def to_source(exprs, sizes: Mapping | None = None, values: Mapping | None = None) -> str:
    """The generated JAX source of ``tg.lower(exprs)`` as a string.

    Args:
        exprs: an expression, or a list of them.
        sizes: size symbol -> int for the sizes to plan with.
        values: arrays for (some of) the variables, keyed by name or Variable;
            their shapes fix sizes as a call of the lowered function would, and
            arrays of variables the expression does not use are ignored, as there.

    Returns:
        A module that runs on its own: a comment with the sizes it was
        planned at, its imports (JAX, and the helpers of tgjax's runtime it
        calls), then ``def program(...)``, whose arguments are the variables.
        A function given to ``F.elementwise`` is imported where it can be,
        and otherwise named in a comment to define first.

    Contraction order and literal sizes depend on the sizes; those neither in
    ``sizes`` nor fixed by ``values`` are planned at a nominal 64 (a
    convolution kernel at 3), and the header says which. The program checks
    on entry that its arrays have the shapes it was planned for and raises a
    ``ValueError`` otherwise: at other shapes its literal sizes would be
    wrong, and broadcasting would hide it.

    Examples:
        >>> b, i = tg.symbols("b i")
        >>> X = tg.Variable("X", b, i)
        >>> print(tg.to_source(F.sum(F.tanh(X)), sizes={b: 8, i: 4}))
        # planned at sizes b=8, i=4
        import jax
        import jax.numpy as jnp
        from jax import lax
        from tgjax._lower.runtime import einsum
        <BLANKLINE>
        <BLANKLINE>
        def program(X):
            # planned for these shapes only: for others, generate the program again at their sizes
            for _name, _array, _shape in (('X', X, (8, 4)),):
                if jnp.shape(_array) != _shape:
                    raise ValueError(f"program: {_name} has shape {jnp.shape(_array)}, but this program was planned "
                                     f"for {_shape}; generate it for these sizes (tg.to_source(..., sizes=...)).")
            dtype = jnp.result_type(float, X)
            # tanh(X[a,b])
            t0 = jnp.tanh(X)
            # tanh(X[a,b]) δ[a] δ[b]
            t1 = einsum('ab->', t0)
            return t1
        <BLANKLINE>
    """
    lowered = Lowered(exprs, sizes)
    symbols = set(lowered._symbols)
    for v in lowered.variables.values():
        for _, s in v.decl:
            symbols.update(sympy.sympify(s).free_symbols)
    env = dict(lowered._fixed)
    if values is not None:
        if not isinstance(values, Mapping):
            raise TypeError(f"tg.to_source: values must be a dict of arrays keyed by variable name; got {type(values).__name__}.")
        origin = {s: "tg.to_source(..., sizes=...)" for s in env}
        known = {**lowered.size_sources, **lowered.variables}
        for key, array in values.items():
            name = key.name if isinstance(key, Variable) else key
            if name not in known:
                continue  # ignored, as the lowered callable ignores it: one dict serves a loss and its parts
            _read_sizes(name, known[name], _checked_array(name, array, "tg.to_source", lowered._masks), env, origin,
                        "tg.to_source")
    given = set(env)
    # Sizes a convolution ties together are derived, not guessed: a nominal
    # (short) kernel and input where neither end is known.
    env = complete_sizes(env, lowered._triples, "tg.to_source")
    for w_in, k, w_out in lowered._triples:
        if k not in env and (w_in not in env or w_out not in env):
            env[k] = _NOMINAL_KERNEL
        if w_in not in env and w_out not in env:
            env[w_in] = _NOMINAL_SIZE
        env = complete_sizes(env, lowered._triples, "tg.to_source")
    for s in symbols:
        env.setdefault(s, _NOMINAL_SIZE)
    return _sizes_header(env, given) + standalone(*lowered._build(env), _planned_shapes(lowered.variables, env))


def _sizes_header(env: dict, given: set) -> str:
    """A comment line with the sizes a program was planned at, the nominal ones marked."""
    def listed(symbols):
        return ", ".join(f"{s}={env[s]}" for s in sorted(symbols, key=str))

    known, nominal = [s for s in env if s in given], [s for s in env if s not in given]
    if not env:
        return ""
    parts = [f"planned at sizes {listed(known)}"] if known else []
    if nominal:
        parts.append(f"nominal sizes (none given) {listed(nominal)}")
    return "# " + "; ".join(parts) + "\n"


def standalone(source: str, inputs, extra: dict, shapes: dict | None = None) -> str:
    """``source`` (one ``def program``) with the imports that make it run on its own and, given
    ``shapes`` (input name -> the shape it was planned for), a check of them on entry: its
    literal sizes and contraction order hold at those shapes only, and arrays of others
    would broadcast into wrong values rather than fail."""
    if shapes:
        source = _with_shape_checks(source, inputs, shapes)
    lines = ["import jax", "import jax.numpy as jnp", "from jax import lax"]
    helpers = [name for name in runtime.HELPERS if re.search(rf"\b{name}\(", source)]
    if helpers:
        lines.append(f"from tgjax._lower.runtime import {', '.join(helpers)}")
    for name, fn in extra.items():
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
        # only a name that imports to this very function (a wrapper may borrow its target's name)
        importable = module != "__main__" and qualname.isidentifier() and getattr(sys.modules.get(module), qualname, None) is fn
        if importable:
            lines.append(f"from {module} import {qualname}" + (f" as {name}" if qualname != name else ""))
        else:
            lines.append(f"# {name}: a Python function given to F.elementwise (or its derivative); define it before calling program")
    return "\n".join(lines) + "\n\n\n" + source


def _with_shape_checks(source: str, inputs, shapes: dict) -> str:
    head, body = source.split("\n", 1)
    listed = ", ".join(f"({name!r}, {parameter(name)}, {shapes[name]!r})" for name in inputs if name in shapes)
    if not listed:
        return source
    check = (
        "    # planned for these shapes only: for others, generate the program again at their sizes\n"
        f"    for _name, _array, _shape in ({listed},):\n"
        "        if jnp.shape(_array) != _shape:\n"
        "            raise ValueError(f\"program: {_name} has shape {jnp.shape(_array)}, but this program was planned \"\n"
        "                             f\"for {_shape}; generate it for these sizes (tg.to_source(..., sizes=...)).\")\n"
    )
    return head + "\n" + check + body


def _planned_shapes(variables: dict, env: dict) -> dict:
    """Each input's shape at the sizes ``env``."""
    return {name: tuple(int(sympy.sympify(size).subs(env)) for _, size in v.decl) for name, v in variables.items()}


def _symmetric_part(array, x: Variable):
    """The mean of ``array`` over the axis swaps that ``x`` is symmetric under (itself when none)."""
    if not x.symmetric:
        return array
    position = {e: k for k, (e, _) in enumerate(x.decl)}
    swaps = [jnp.transpose(array, [position[m[e]] for e, _ in x.decl]) for m in x.symmetries()]
    return sum(swaps[1:], swaps[0]) / len(swaps)


def check_grads(f: Expr, wrt: Iterable[Variable], values: Mapping, order: int = 1, rtol: float | None = None):
    """Check tgjax's symbolic derivatives of scalar ``f`` against JAX autodiff.

    Args:
        f: a scalar expression (no free edges).
        wrt: a Variable or a list of them.
        values: variable name (or Variable) -> array.
        order: 1 (gradients) or 2 (gradients and Hessians).
        rtol: the relative tolerance; None: 1e-4 in float32, 1e-8 in float64.

    Returns:
        A dict ``(name, order) -> max relative error``. For each ``x`` in
        ``wrt``, ``f.grad(x)`` is compared with ``jax.grad`` of the lowered
        ``f`` (and, for ``order=2``, ``f.grad(x).grad(x)`` with
        ``jax.hessian``); an ``AssertionError`` names the worst error.

    Examples:
        >>> b, i = tg.symbols("b i")
        >>> X, w = tg.Variable("X", b, i), tg.Variable("w", i)
        >>> loss = F.sum(F.tanh(X @ w))
        >>> errors = tg.check_grads(loss, [w], {"X": np.ones((4, 3)), "w": np.full(3, 0.1)}, order=2)
        >>> sorted(errors)
        [('w', 1), ('w', 2)]
    """
    if not isinstance(f, Expr) or f.edges:
        raise ValueError(f"tg.check_grads: f must be a scalar expression (no free edges); got edges {getattr(f, 'edges', f)!r}.")
    if order not in (1, 2):
        raise ValueError(f"tg.check_grads: order must be 1 or 2; got {order!r}.")
    wrt = [wrt] if isinstance(wrt, Variable) else list(wrt)
    for x in wrt:
        if not isinstance(x, Variable):
            raise TypeError(f"tg.check_grads: wrt must hold Variables; got {type(x).__name__} {x!r}.")
    values = {(k.name if isinstance(k, Variable) else k): jnp.asarray(v) for k, v in values.items()}
    f_fn = lower(f)
    # Derivatives may not mention every variable (a zero Hessian), so give
    # them the sizes that f's inputs fix.
    _, env = f_fn._bind(values, {})
    errors = {}
    for x in wrt:
        if x.name not in values:
            raise ValueError(f"tg.check_grads: no value for variable {x.name!r}.")

        def scalar(array, x=x):
            # a symmetric x is read as its symmetric part, whose derivative is the symmetrised one
            return f_fn({**values, x.name: _symmetric_part(array, x)})

        checks = [(1, f.grad(x), jax.grad(scalar))]
        if order == 2:
            checks.append((2, f.grad(x).grad(x), jax.hessian(scalar)))
        for k, symbolic, autodiff in checks:
            ours = lower(symbolic, sizes=env)(values)
            theirs = autodiff(values[x.name])
            scale = float(jnp.max(jnp.abs(theirs))) if theirs.size else 0.0
            err = float(jnp.max(jnp.abs(ours - theirs))) if theirs.size else 0.0
            rel = err / max(scale, 1e-30) if scale else err
            tol = rtol if rtol is not None else (1e-8 if ours.dtype == jnp.float64 else 1e-4)
            errors[(x.name, k)] = rel
            if not rel <= tol:
                raise AssertionError(
                    f"tg.check_grads: derivative of order {k} with respect to {x.name!r} differs from JAX autodiff: "
                    f"max abs error {err:.3g}, relative {rel:.3g} > {tol:g}."
                )
    return errors
