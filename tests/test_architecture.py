"""The architecture's promises: imports in pipeline order, functions as objects
(never recognised by name), frozen nodes rebuilt from ``func`` and ``args``."""

from __future__ import annotations

import ast
import gc
import pathlib
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import tgjax as tg
import tgjax.functions as F
from tgjax._ir import along, elementwise, extrema
from tgjax._ir import nodes
from tgjax._ir.nodes import AlongEdge, Function, Product, Sum, rebuilt
from tgjax._ir.util import NodeTable
from tgjax._simplify import core, origins
from tgjax._lower import runtime

from strategies import expressions

PACKAGE = pathlib.Path(tg.__file__).parent

# The pipeline, first stage first: a module may import its own stage and
# earlier ones, never a later one (text notation comes before lowering, whose
# generated code carries it in comments).
# _logging reports the stages' times; it imports nothing of tgjax, so every stage may use it
STAGES = ["_logging", "_ir", "_diff", "_simplify", "_expectation", "_viz", "_lower", "functions", "nn", "__init__"]


def _stage(module: str) -> str:
    """The stage of a dotted module name inside tgjax ("tgjax._ir.nodes" -> "_ir")."""
    parts = module.split(".")
    assert parts[0] == "tgjax"
    if len(parts) == 1:
        return "__init__"
    return parts[1].removesuffix(".py")


def _imports(path: pathlib.Path):
    """(line, imported tgjax module) for every import in the file, function-level ones included."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(relative.parts[:-1])  # the package a relative import starts from
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tgjax":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tgjax":
                continue
            if node.module is None or target.count(".") == 0:
                # "from . import a, b": each name is a module of that package
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_imports_flow_in_pipeline_order():
    wrong = []
    for path in _modules():
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = _stage(module)
        for line, target in _imports(path):
            if STAGES.index(_stage(target)) > STAGES.index(own):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target} ({_stage(target)})")
    assert not wrong, "imports against the pipeline order:\n" + "\n".join(wrong)


def test_the_ir_imports_no_numerical_library():
    # (numpy is allowed: user input arrives as numpy scalars)
    heavy = {"jax", "jaxlib", "opt_einsum", "equinox"}
    found = []
    for path in (PACKAGE / "_ir").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in heavy]
    assert not found, f"_ir must not carry numerical code: {found}"


# -- functions are objects, never recognised by name ---------------------------

i = tg.symbols("i")
x = tg.Variable("x", i)
ARRAY = {"x": np.linspace(0.2, 1.4, 5)}


@pytest.mark.parametrize("name", ["exp", "log", "pow", "sqrt", "softmax", "step", "logdet", "gelu", "tanh"])
def test_a_user_function_cannot_take_a_built_in_name(name):
    with pytest.raises(ValueError, match=f"'{name}' is the name of a built-in function"):
        F.elementwise(name, lambda v: v * v)


def test_a_user_function_is_never_taken_for_a_built_in():
    square = F.elementwise("Exp", lambda v: v * v)
    expr = F.log(square(x))
    # log(exp(u)) = u must not fire: this is not exp
    assert expr.simplify() != x
    assert expr.simplify() == F.log(square(x))
    value = tg.lower(expr)(**ARRAY)
    np.testing.assert_allclose(value, np.log(ARRAY["x"] ** 2), rtol=1e-12)
    assert "jnp.exp" not in tg.to_source(expr)


def test_user_functions_with_one_name_stay_distinct():
    f = F.elementwise("f", lambda v: v * v)
    g = F.elementwise("f", lambda v: v + 1)
    assert f(x) != g(x)
    np.testing.assert_allclose(tg.lower(F.sum(f(x) - g(x)))(**ARRAY), np.sum(ARRAY["x"] ** 2 - ARRAY["x"] - 1))


def test_user_functions_whose_names_collide_get_their_own_globals():
    # _f is taken by f, and _f_2 by a function named "f_2": the third needs _f_1
    f, f_2, g = F.elementwise("f", lambda v: v + 1), F.elementwise("f_2", lambda v: v + 2), F.elementwise("f", lambda v: v + 3)
    expr = F.sum(f(x) * f_2(x) * g(x))
    source = tg.to_source(expr)
    assert "_f(" in source and "_f_2(" in source and "_f_1(" in source
    expected = np.sum((ARRAY["x"] + 1) * (ARRAY["x"] + 2) * (ARRAY["x"] + 3))
    np.testing.assert_allclose(tg.lower(expr)(**ARRAY), expected, rtol=1e-12)


def test_generated_source_names_a_user_function_readably():
    swish = F.elementwise("swish", lambda v: v * jax.nn.sigmoid(v))
    source = tg.to_source([F.sum(swish(x)), F.sum(swish(x)).grad(x)])
    assert "_swish(" in source and "_swish_(" in source  # swish and its derivative swish'
    # a lambda cannot be imported: the header says to define it
    assert "# _swish: a Python function given to F.elementwise" in source
    assert "# _swish_: a Python function given to F.elementwise" in source


def test_generated_source_runs_on_its_own():
    b, c = tg.symbols("b c")
    logits, target, S = tg.Variable("Z", b, c), tg.Variable("T", b, c), tg.Variable("S", b=b, c=b)
    loss = F.sum(F.cross_entropy(logits, target, "c")) + F.log(F.det(S)) + F.sum(F.inverse(S))
    source = tg.to_source([loss, loss.grad(logits), loss.grad(S)], sizes={b: 3, c: 3})
    assert "from tgjax._lower.runtime import" in source
    namespace: dict = {}
    exec(source, namespace)  # no globals but what the source imports
    arrays = {"Z": np.arange(9.0).reshape(3, 3) / 9, "T": np.eye(3), "S": np.eye(3) * 2 + 0.1}
    parameters = source.split("def program(")[1].split(")")[0].split(", ")
    got = namespace["program"](*(arrays[name] for name in parameters))
    want = tg.lower([loss, loss.grad(logits), loss.grad(S)])(**arrays)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10)


def test_generated_source_never_imports_a_wrapper_under_its_targets_name():
    # the derivative of a user function is a vectorised wrapper that borrows its __qualname__
    g = F.elementwise("g", jax.nn.soft_sign)
    source = tg.to_source(F.sum(g(x)).grad(x))
    assert "as _g_" not in source and "# _g_:" in source


def test_powers_are_one_object_per_exponent():
    assert elementwise.power(2) is elementwise.power(2.0)
    assert (x ** 2).spec is elementwise.power(2)
    assert elementwise.exponent((x ** 3).spec) == 3
    assert elementwise.exponent(F.exp(x).spec) is None


def test_every_built_in_emits_jax_source_that_runs():
    arrays = jnp.linspace(0.2, 1.4, 6)
    for fn in elementwise.BUILTINS:
        source = fn.source(*["x"] * fn.arity)
        value = eval(source, {**runtime.MODULES, "x": arrays, "dtype": arrays.dtype})
        assert value.shape == arrays.shape, fn
    matrix = jnp.eye(3) * 2.0
    for fn in (*along.BUILTINS, *extrema.BUILTINS):
        source = fn.source("x", (0, 1) if fn.n_axes == 2 else (0,))
        value = eval(source, {**runtime.MODULES, **runtime.HELPERS, "x": matrix})
        assert jnp.all(jnp.isfinite(value)), fn


def test_the_derivative_passes_name_no_built_in_function():
    # Every function carries its own derivative (partials; differential and
    # pullback along edges), so adding one touches _ir and functions.py only.
    for path in (PACKAGE / "_diff").glob("*.py"):
        source = path.read_text()
        assert "from .._ir.along import" not in source and "from .._ir.elementwise import" not in source, path
    for fn in (*along.BUILTINS, *extrema.BUILTINS):
        assert callable(fn.differential) and callable(fn.pullback), fn


# -- frozen nodes --------------------------------------------------------------

A = tg.Variable("A", i=i, j=i)
NODES = {
    "Variable": x,
    "Delta": tg.Delta(i, "i", "j"),
    "Zero": tg.Zero({"i": i}),
    "Product": A @ x,
    "Sum": x + x.rename(i="i"),
    "Function": F.tanh(x),
    "AlongEdge": F.softmax(x, "i"),
    "Derivative": tg.Derivative(F.sum(x * x), x),
    "Convolution": tg.Convolution(*tg.symbols("w k w2")),
}


@pytest.mark.parametrize("kind", NODES)
def test_nodes_are_frozen(kind):
    node = NODES[kind]
    before = hash(node)
    for field in ("edges", "name", "factors", "terms", "weights", "spec", "input", "axes", "size", "_shape", "stands_for"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(node, field, None)
    with pytest.raises(TypeError):
        node.shape["i"] = 5
    assert hash(node) == before


def test_a_node_caches_only_what_follows_from_its_own_data():
    # its hash, and the signature, graph and variables that equality reads; a normal
    # form or the Variables a simplified expression lost belong to the simplify pass
    assert nodes._CACHES == {"_hash", "_sig", "_graph", "_vars"}
    slots = {s for cls in Product.__mro__ for s in getattr(cls, "__slots__", ())}
    assert not slots & {"_simplified", "_stands_for", "_origins"}
    hessian = F.sum(x * x).grad(x).grad(x)
    normal = hessian.simplify()  # 2 I: x is gone, but lowering still reads its size
    assert x not in normal.variables() and [v.name for v in origins(normal)] == ["x"]
    assert core.has_normal_form(normal) and not core.has_normal_form(F.sum(x * x) + 7)


def test_a_pass_table_entry_lives_exactly_as_long_as_its_node():
    table = NodeTable()
    t, u = F.tanh(x), F.exp(x)
    table.set(t, "its value")
    table.set(u, u)  # a value that is the node itself does not keep it alive
    assert table.get(t) == "its value" and table.get(u) is u and t in table
    assert table.get(F.tanh(x)) is None  # an equal node is another node
    freed = weakref.ref(u)
    del u
    gc.collect()
    assert freed() is None and len(table._entries) == 1


def test_normal_forms_are_freed_with_their_expressions():
    # (a .grad result's sweep is remembered for a few expressions: simplified alone here)
    gc.collect()
    before = len(core._NORMAL_FORMS._entries)
    y, B = tg.Variable("y", i), tg.Variable("B", i=i, j=i)
    normal = F.sum(F.tanh(B @ y) * F.exp(B @ y) + F.sum(y * y)).simplify()
    assert len(core._NORMAL_FORMS._entries) > before
    del y, B, normal
    core._recent.clear()  # the last few thousand normal forms computed stay held, by design
    gc.collect()
    assert len(core._NORMAL_FORMS._entries) <= before


def test_a_gradient_stands_for_its_derivative_as_data():
    g = F.sum(F.tanh(A @ x)).grad(x)
    assert isinstance(g, Product) and isinstance(g.stands_for, tg.Derivative) and g.stands_for.x is x
    renamed = g.rename(i="k")
    assert renamed.stands_for == g.stands_for.rename(i="k")
    # a product rebuilt over other factors no longer equals the derivative: it stands for nothing
    assert g.func(*(2 * f for f in g.factors)).stands_for is None


def test_derivative_new_names_are_read_only():
    d = NODES["Derivative"]
    with pytest.raises(TypeError):
        d.new_names["i"] = "q"


@pytest.mark.parametrize("kind", NODES)
def test_func_of_args_rebuilds_an_equal_node(kind):
    node = NODES[kind]
    again = node.func(*node.args)
    assert again == node and again.edges == node.edges


@settings(max_examples=60, deadline=None)
@given(expressions())
def test_func_of_args_rebuilds_random_expressions(expr):
    # every node of the expression, rebuilt from fresh copies of its children
    memo = {}

    def copy(t):
        if id(t) not in memo:
            memo[id(t)] = t.func(*(copy(a) for a in t.args))
        return memo[id(t)]

    again = copy(expr)
    assert again == expr and again.edges == expr.edges
    assert again is not expr or not expr.args


def test_rebuilt_keeps_the_node_when_children_are_its_own():
    t = A @ x
    assert rebuilt(t, t.args) is t
    assert isinstance(rebuilt(t, [A, x.rename(i="j")]), Product)


def test_rebuild_with_new_free_edges_uses_their_natural_order():
    s = x + 1
    assert isinstance(s, Sum)
    renamed = s.func(*(u.rename(i="q") for u in s.args))
    assert renamed.edges == ("q",)
    f = F.tanh(x)
    assert isinstance(f, Function) and f.func(x.rename(i="q")).edges == ("q",)
    p = F.softmax(A, "i")
    assert isinstance(p, AlongEdge) and p.func(A).edges == p.edges


def test_einsum_letters_follow_opt_einsum():
    import opt_einsum

    from tgjax._ir.util import EinsumLetters, einsum_letter

    assert [einsum_letter(k) for k in range(200)] == [opt_einsum.get_symbol(k) for k in range(200)]
    letters = EinsumLetters()
    assert (letters.of("p"), letters.of("q"), letters.of("p")) == ("a", "b", "a")
    with pytest.raises(KeyError):
        letters["r"]


def test_importing_tgjax_loads_no_library_it_does_not_need_yet():
    # Importing took 3 s beyond JAX (exact GELU ran JAX at import); drawing's graph
    # library and the solvers' operator library load when first used. Counted
    # without a clock: which modules an import leaves loaded, and that no JAX
    # computation ran (no backend was started).
    import subprocess
    import sys

    code = (
        "import sys, tgjax, tgjax.functions, tgjax.nn\n"
        "from jax._src import xla_bridge\n"
        "print(sorted(m for m in ('networkx', 'lineax', 'optax') if m in sys.modules), bool(getattr(xla_bridge, '_backends', {})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False"], out
