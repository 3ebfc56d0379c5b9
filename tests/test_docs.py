"""The examples in the docstrings of every public name run and print what they say.

The docs (docs/, built by MkDocs in CI) are rendered from these docstrings.
"""

from __future__ import annotations

import doctest
import inspect
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tgjax as tg
import tgjax.functions as F
import tgjax.nn as tnn


def _public():
    """(qualified name, object) for every public name and the methods users call on expressions."""
    for module, prefix in ((tg, "tg"), (F, "F"), (tnn, "tnn")):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.getmodule(obj) is not None and inspect.getmodule(obj).__name__.startswith("tgjax"):
                yield f"{prefix}.{name}", obj
    for name in ("rename", "grad", "simplify", "variables", "depends_on", "shape", "func"):
        yield f"Expr.{name}", getattr(tg.Expr, name)
    yield "Lowered.source", tg.lower(tg.Variable("x", i=2)).__class__.source


PUBLIC = dict(_public())


def _examples(obj) -> list:
    doc = inspect.getdoc(obj) or ""
    return doctest.DocTestParser().get_examples(doc)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_docstring_with_an_example(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj) or ""
    assert len(doc.splitlines()) >= 3, f"{name}: the docstring is a one-liner; say what it takes and returns"
    assert _examples(obj), f"{name}: the docstring has no example"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_examples_run(name):
    obj = PUBLIC[name]
    # As a reader runs them: default float32, the modules under their usual names.
    globs = {"tg": tg, "F": F, "tnn": tnn, "jax": jax, "jnp": jnp, "np": np}
    test = doctest.DocTestParser().get_doctest(inspect.getdoc(obj) or "", globs, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list = []
    with jax.enable_x64(False):
        result = runner.run(test, out=report.append)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed:\n" + "".join(report)


ROOT = pathlib.Path(__file__).parent.parent
PAGES = ("README.md", "docs/api.md", "docs/index.md")


def _code_blocks():
    for page in PAGES:
        text = (ROOT / page).read_text()
        for k, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            yield f"{page}#{k + 1}", block


BLOCKS = dict(_code_blocks())


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_code_block_of_the_readme_and_guide_runs_on_its_own(name, capsys):
    """Each python block a reader is meant to paste runs as it stands: its own imports, its own
    variables and arrays, in a fresh namespace, at JAX's default precision."""
    with jax.enable_x64(False):
        exec(compile(BLOCKS[name], name, "exec"), {"__name__": "__main__"})
