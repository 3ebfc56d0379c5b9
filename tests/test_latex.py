"""tg.to_latex and Jupyter's _repr_latex_: index notation with explicit sums or Einstein's convention."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import tgjax as tg
import tgjax.functions as F
from tgjax._ir.nodes import Product

b, j, k, n = tg.symbols("b j k n")
X, W, T = tg.Variable("X", b, j), tg.Variable("W", j, k), tg.Variable("T", b, k)
S, x = tg.Variable("S", i=n, j=n), tg.Variable("x", i=n)


def test_a_contraction_with_explicit_sums_and_by_einstein():
    assert tg.to_latex(X @ W) == r"\sum_{j} X_{b j} W_{j k}"
    assert tg.to_latex(X @ W, einstein=True) == r"X_{b j} W_{j k}"


def test_a_sum_over_an_edge_shows_the_sum_not_the_ones_vector():
    assert tg.to_latex(F.sum(X)) == r"\sum_{b j} X_{b j}"
    assert tg.to_latex(F.sum(X), einstein=True) == r"X_{b j} \delta_{b} \delta_{j}"


def test_a_cross_entropy_reads_as_written_not_as_a_mass_of_deltas():
    # issue 28: the Deltas that join indices are the equalities they say, and a term's
    # all-ones Delta is the broadcast index notation leaves implicit
    z = tg.Variable("z", b, k)
    assert tg.to_latex(F.cross_entropy(z, T, "k")) == (
        r"-\sum_{k} T_{b k} \left(z_{b k} - \operatorname{logsumexp}_{k}\left(z_{b k}\right)\right)")
    assert tg.to_latex(X + tg.Variable("y", b)) == r"X_{b j} + y_{b}"
    # a chain of joins keeps the free edge's name, though several factors hold it by then
    A, C, D = tg.Variable("A", a=n), tg.Variable("C", c=n), tg.Variable("D", d=n)
    joined = Product([A, tg.Delta(n, "a", "e", "b"), tg.Delta(n, "e", "c", "d"), C, D], edges=("b",))
    assert tg.to_latex(joined) == r"A_{b} C_{b} D_{b}"
    # a diagonal (two free edges) and an outer product with ones keep their Deltas
    assert tg.to_latex(tg.Delta(n, "i", "j")) == r"\delta_{i j}"
    assert r"\delta_{k}" in tg.to_latex(tg.Variable("y", b) @ tg.Delta(k, "k"))


@pytest.mark.parametrize("expr, symbol", [
    (F.tanh(x), r"\tanh\left(x_{i}\right)"),
    (F.exp(x), r"\exp\left(x_{i}\right)"),
    (F.log(x), r"\log\left(x_{i}\right)"),
    (F.sigmoid(x), r"\sigma\left(x_{i}\right)"),
    (F.abs(x), r"\left|x_{i}\right|"),
    (F.sqrt(x), r"\sqrt{x_{i}}"),
    (x ** 3, r"x_{i}^{3}"),
    (F.sin(x), r"\sin\left(x_{i}\right)"),
    (F.log1p(x), r"\log\left(1 + x_{i}\right)"),
    (F.expm1(x), r"\left(e^{x_{i}} - 1\right)"),
    (F.maximum(x, x.rename(i="i")), r"\max\left(x_{i}, x_{i}\right)"),
    (F.softmax(x, "i"), r"\operatorname{softmax}_{i}\left(x_{i}\right)"),
    (F.det(S), r"\det_{i j}\left(S_{i j}\right)"),
    (F.inverse(S), r"\left(S_{i j}\right)^{-1}_{i j}"),
    (tg.Delta(n, "i", "j"), r"\delta_{i j}"),
    (F.elementwise("my_fn", lambda v: v * v)(x), r"\operatorname{my\_fn}\left(x_{i}\right)"),
])
def test_functions_by_their_usual_symbols(expr, symbol):
    assert symbol in tg.to_latex(expr)


def test_structure_follows_the_expression():
    loss = F.sum(F.cross_entropy(X @ W, T, "k"))
    tex = tg.to_latex(loss.grad(W).simplify())
    for v in ("X", "T", "W"):
        assert re.search(rf"{v}_{{[a-z' ]+}}", tex), f"{v} with its indices"
    assert r"\sum_{" in tex and r"\operatorname{softmax}_{k}" in tex
    # the free edges j and k of the gradient appear, inner ones as short letters
    assert re.search(r"_\{[^}]*j[^}]*\}", tex) and re.search(r"_\{[^}]*k[^}]*\}", tex)


def test_derivatives_and_expectations():
    assert tg.to_latex(tg.Derivative(F.sum(x * x), x)).startswith(r"\frac{\partial}{\partial x_{i}}")
    m = tg.Variable("m", i=n)
    assert tg.to_latex(tg.Expectation(F.tanh(x), x, mu=m)).startswith(r"\mathbb{E}_{x_{i} \sim \mathcal{N}")


def test_jupyter_shows_the_notation():
    assert (X @ W)._repr_latex_() == r"$\sum_{j} X_{b j} W_{j k}$"


def test_not_an_expression_is_a_clear_error():
    with pytest.raises(TypeError, match="tg.to_latex: expected a tensor expression"):
        tg.to_latex("X @ W")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX on this machine")
def test_the_latex_compiles(tmp_path):
    loss = F.sum(F.cross_entropy(X @ W, T, "k"))
    body = "\n\n".join(f"${tg.to_latex(e)}$" for e in (loss, loss.grad(W).simplify(), F.inverse(S) + F.det(S) * S))
    source = tmp_path / "doc.tex"
    source.write_text(r"\documentclass{article}\usepackage{amsmath,amssymb}\begin{document}" + body + r"\end{document}")
    subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)


@pytest.mark.parametrize("expr", [
    F.sum(F.cross_entropy(X @ W, T, "k")),
    F.sum(F.cross_entropy(X @ W, T, "k")).grad(W),
    F.inverse(S) + F.det(S) * S - 3 * (x @ S) ** 2,
    tg.Expectation(F.exp(x @ S), x, mu=tg.Variable("m", i=n)),
])
def test_braces_and_delimiters_balance(expr):
    # where no TeX is installed, the structure that TeX would reject first
    tex = tg.to_latex(expr)
    depth = 0
    for c in tex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0
    assert depth == 0
    assert tex.count(r"\left") == tex.count(r"\right")
