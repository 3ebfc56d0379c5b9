"""Every script in examples/ runs to the end (each checks its own numbers)."""

from __future__ import annotations

import pathlib
import runpy

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


# Command-line arguments for examples that would otherwise run for minutes.
ARGUMENTS = {"tensor_train_regression": ["--quick"], "newton": ["--quick"]}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", [str(path), *ARGUMENTS.get(path.stem, [])])
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out  # it prints what it shows
