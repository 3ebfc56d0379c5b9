"""Draw the README's pictures with tg.draw: ``python docs/make_pictures.py`` writes them to docs/images/.

The pictures are committed; a test checks that this script still draws them byte for byte.
"""

from __future__ import annotations

import pathlib
import sys

import tgjax as tg
import tgjax.functions as F

HERE = pathlib.Path(__file__).parent


def pictures() -> dict:
    """File name -> SVG of each picture."""
    b, i, c = tg.symbols("b i c")
    X, W, Y = tg.Variable("X", b, i), tg.Variable("W", i, c), tg.Variable("Y", b, c)
    n = tg.symbols("n")
    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    l2 = F.sum((X @ W - Y) ** 2)
    cross_entropy = F.sum(F.cross_entropy(X @ W, Y, "c"))
    return {
        "l2_gradient.svg": tg.draw([
            ("loss = F.sum((X @ W - Y) ** 2)", l2),
            ("loss.grad(W).simplify()", l2.grad(W).simplify()),
        ]),
        "cross_entropy_hessian.svg": tg.draw([
            ('F.sum(F.cross_entropy(X @ W, Y, "c")).grad(W).grad(W).simplify()',
             cross_entropy.grad(W).grad(W).simplify()),
        ]),
        "explain.svg": tg.draw(tg.explain((x @ A @ x.rename(i="j")).grad(x).grad(x))),
    }


def main(out: pathlib.Path = HERE / "images") -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, svg in pictures().items():
        (out / name).write_text(svg, encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "images")
