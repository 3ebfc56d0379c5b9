"""tg.draw and Jupyter's _repr_svg_: the SVG is valid, complete, readable (checked from its own
geometry), deterministic, and renders in a real browser."""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import pytest

import tgjax as tg
import tgjax.functions as F

b, i, j, k, c, n = tg.symbols("b i j k c n")
wi, kw, wo = tg.symbols("w_in kw w_out")
X, W, Y = tg.Variable("X", b, i), tg.Variable("W", i, c), tg.Variable("Y", b, c)
x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
l2 = F.sum((X @ W - Y) ** 2)
cross_entropy = F.sum(F.cross_entropy(X @ W, Y, "c"))


def _chain(length: int) -> tg.Expr:
    factors = [tg.Variable(f"M{q}", **{f"e{q}": n, f"e{q + 1}": n}) for q in range(length)]
    out = factors[0]
    for f in factors[1:]:
        out = out @ f
    return out


def _transformer_block() -> tg.Expr:
    """A post-layer-norm transformer block's loss, written as a user writes it."""
    s, d, e, f = tg.symbols("s d e f")
    X_, Y_ = tg.Variable("X", s=s, d=d), tg.Variable("Y", s=s, d=d)
    Wq, Wk, Wv = (tg.Variable(name, d, e) for name in ("Wq", "Wk", "Wv"))
    Wo, W1, W2 = tg.Variable("Wo", e, d), tg.Variable("W1", d, f), tg.Variable("W2", f, d)

    def layer_norm(h):
        centred = h - F.mean(h, "d")
        return centred * F.pow(F.mean(centred ** 2, "d") + 1e-5, -0.5)

    q, key, v = X_ @ Wq, X_.rename(s="t") @ Wk, X_.rename(s="t") @ Wv
    h = layer_norm(X_ + (F.softmax(q @ key / 8, "t") @ v) @ Wo)
    h = layer_norm(h + F.gelu(h @ W1) @ W2)
    return F.mean((h - Y_) ** 2)


CASES = {
    "variable": x,
    "matrix": A,
    "l2 loss": l2,
    "l2 gradient": l2.grad(W).simplify(),
    "cross-entropy hessian": cross_entropy.grad(W).grad(W).simplify(),
    "quadratic form": x @ A @ x.rename(i="j"),
    "hadamard": x * x,
    "parallel edges": A @ tg.Variable("B", i=n, j=n),
    "trace": A @ tg.Delta(n, "i", "j"),
    "identity": tg.Delta(n, "i", "j"),
    "scalar delta": tg.Delta(n),
    "zero": tg.Zero({"i": n}),
    "functions": F.softmax(F.tanh(X @ W), "c") * F.logsumexp(X @ W, "c") + F.sigmoid(Y),
    "inverse and det": F.inverse(A) * F.det(A),
    "unevaluated derivative": tg.Derivative(F.sum(F.tanh(A @ x)), x),
    "expectation": tg.Expectation(F.sum((A @ x) ** 2), x),
    "expectation with a law": tg.Expectation(F.sum(x ** 2), x, mu=tg.Variable("m", i=n), covar=A.rename(j="i_")),
    "convolution": tg.Variable("v", wi) @ tg.Convolution(wi, kw, wo),
    "the scalar 1": (F.sum(x) / F.sum(x)).simplify(),
    "a long chain": _chain(50),
    "a wide sum": sum((tg.Variable(f"v{q}", i=n) for q in range(30)), tg.Zero({"i": n})),
    "a transformer block, in parts": _transformer_block(),
}


def _tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _tag(el) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _num(el, name) -> float:
    return float(el.get(name))


def _view_box(root) -> tuple:
    x0, y0, w, h = map(float, root.get("viewBox").split())
    return x0, y0, w, h


def _boxes(root, kind: str) -> list:
    """(x0, y0, x1, y1) of each node (kind 'node') or frame (kind 'frame')."""
    out = []
    for el in root.iter():
        classes = (el.get("class") or "").split()
        if kind not in classes:
            continue
        if _tag(el) == "rect":
            x0, y0 = _num(el, "x"), _num(el, "y")
            out.append((x0, y0, x0 + _num(el, "width"), y0 + _num(el, "height")))
        elif _tag(el) == "circle":
            cx, cy, r = _num(el, "cx"), _num(el, "cy"), _num(el, "r")
            out.append((cx - r, cy - r, cx + r, cy + r))
    return out


def _text_boxes(root) -> list:
    """The box each text takes, from its anchor, baseline and the monospace advance (0.6 em)."""
    out = []
    default = float(root.get("font-size"))
    for el in root.iter():
        if _tag(el) != "text":
            continue
        size = float(el.get("font-size") or default)
        width = 0.6 * size * len(el.text)
        x, y = _num(el, "x"), _num(el, "y")
        start = {"start": x, "middle": x - width / 2, "end": x - width}[el.get("text-anchor")]
        out.append((start, y - 0.8 * size, start + width, y + 0.2 * size, el.text))
    return out


def _overlap(a, b, slack=0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _texts(root) -> list:
    return [el.text for el in root.iter() if _tag(el) == "text"]


def _function_names(expr) -> set:
    from tgjax._ir.nodes import AlongEdge, Function
    from tgjax._ir.walk import parents_first

    return {t.spec.name for t in parents_first([expr]) if isinstance(t, (Function, AlongEdge)) and t.spec.name != "pow"}


@pytest.mark.parametrize("name", list(CASES))
def test_the_svg_is_valid_xml_with_a_view_box_and_names_everything(name):
    expr = CASES[name]
    root = _tree(tg.draw(expr))
    assert _tag(root) == "svg" and len(root.get("viewBox").split()) == 4
    texts = _texts(root)
    joined = "\n".join(texts)
    for v in expr.variables():
        assert v.name in texts, f"{v.name} is not drawn"
    for e in expr.edges:
        assert e in texts, f"free edge {e} is not labelled"
    for f in _function_names(expr):
        assert f in joined, f"function {f} is not named"


@pytest.mark.parametrize("name", list(CASES))
def test_nodes_do_not_overlap_and_nothing_leaves_the_canvas(name):
    root = _tree(tg.draw(CASES[name]))
    x0, y0, w, h = _view_box(root)
    canvas = (x0, y0, x0 + w, y0 + h)
    nodes, frames = _boxes(root, "node"), _boxes(root, "frame")
    for a, b_ in itertools.combinations(nodes, 2):
        assert not _overlap(a, b_), f"nodes {a} and {b_} overlap"
    for frame in frames:
        for other in nodes + [f for f in frames if f is not frame]:
            assert not _overlap(frame, other) or _contains(frame, other) or _contains(other, frame), (
                f"frame {frame} cuts {other}"
            )
    texts = _text_boxes(root)
    for box in nodes + frames + [t[:4] for t in texts]:
        assert _contains(canvas, box), f"{box} leaves the canvas {canvas}"
    for a, b_ in itertools.combinations(texts, 2):
        assert not _overlap(a, b_), f"labels {a[4]!r} and {b_[4]!r} overlap"


def test_parallel_edges_are_drawn_apart():
    root = _tree(tg.draw(CASES["parallel edges"]))
    lines = [el.get("points") for el in root.iter() if _tag(el) == "polyline"]
    assert len(lines) == 2 and lines[0] != lines[1]


def test_a_chain_is_a_chain_and_fifty_factors_stay_a_sensible_size():
    root = _tree(tg.draw(_chain(50)))
    _, _, w, h = _view_box(root)
    assert w < 1200 and h < 1200
    # 49 contractions, each one line, plus the two free ends
    assert sum(_tag(el) == "polyline" for el in root.iter()) == 49 + 2


def test_a_deep_expression_still_draws():
    t = x
    for _ in range(300):
        t = F.tanh(t)
    root = _tree(tg.draw(t))
    assert _texts(root).count("tanh") == 300


def _parts(root) -> list:
    return [el.text for el in root.iter() if el.get("class") == "caption" and el.text.endswith(" =")]


def test_a_transformer_block_and_its_gradient_fit_the_width_in_parts():
    # issue 28: the block's loss was 11,695 px wide, every repeated subexpression drawn again
    loss = _transformer_block()
    for expr in (loss, loss.grad(tg.Variable("W1", tg.symbols("d"), tg.symbols("f")))):
        root = _tree(tg.draw(expr))
        _, _, w, _ = _view_box(root)
        assert w <= 1800, w
        texts = _texts(root)
        parts = _parts(root)
        assert parts == [f"[{q}] =" for q in range(1, len(parts) + 1)] and parts
        for q in range(1, len(parts) + 1):  # each part is referred to by a box
            assert any(t == f"[{q}]" or t.startswith(f"[{q}] ") for t in texts), q
        # the softmax, read by the residual and by both layer norms' means, is drawn once
        assert sum(t.startswith("softmax[") for t in texts if not t.startswith("[")) == 1
        for user_edge in ("s", "d"):
            assert user_edge in texts


def test_a_deep_network_is_folded_to_the_width():
    h = tg.Variable("x", b=b, i=i)
    for q in range(200):
        h = F.tanh((h @ tg.Variable(f"W{q}", i=i, o=i)).rename(o="i"))
    root = _tree(tg.draw(F.sum(h ** 2)))
    _, _, w, _ = _view_box(root)
    assert w <= 1800, w
    assert _texts(root).count("W199") == 1 and _texts(root).count("W0") == 1


def test_max_width_inf_draws_everything_in_place_and_a_bad_width_is_a_clear_error():
    import math

    root = _tree(tg.draw(_chain(3) @ tg.Variable("v", e3=n), max_width=math.inf))
    assert _parts(root) == []
    block = CASES["a transformer block, in parts"]
    assert _parts(_tree(tg.draw(block))) and _parts(_tree(tg.draw(block, max_width=math.inf))) == []
    for bad in (0, -5, "wide", True):
        with pytest.raises(ValueError, match="max_width must be a positive number"):
            tg.draw(x, max_width=bad)


def test_a_list_draws_one_below_the_other_with_titles():
    root = _tree(tg.draw([("the loss", l2), l2.grad(W).simplify()]))
    texts = _texts(root)
    assert "the loss" in texts
    captions = [el for el in root.iter() if el.get("class") == "caption"]
    assert len(captions) == 1


def test_the_derivation_of_explain_draws_step_by_step():
    steps = tg.explain(l2.grad(W))
    texts = _texts(_tree(tg.draw(steps)))
    for rule, _ in steps:
        assert rule in texts


def test_the_same_expression_draws_the_same_bytes_whatever_the_hash_seed():
    program = (
        "import tgjax as tg, tgjax.functions as F, sys\n"
        "b, i, c = tg.symbols('b i c')\n"
        "X, W, Y = tg.Variable('X', b, i), tg.Variable('W', i, c), tg.Variable('Y', b, c)\n"
        "loss = F.sum(F.cross_entropy(X @ W, Y, 'c'))\n"
        "sys.stdout.write(tg.draw([loss.grad(W).grad(W).simplify(), *[s for _, s in tg.explain(loss.grad(W))]]))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", program], env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1
    assert tg.draw(CASES["functions"]) == tg.draw(CASES["functions"])


def test_path_writes_the_file(tmp_path):
    path = tmp_path / "loss.svg"
    svg = tg.draw(l2, path=str(path))
    assert path.read_text(encoding="utf-8") == svg


def test_jupyter_shows_the_diagram():
    assert l2._repr_svg_() == tg.draw(l2)


@pytest.mark.parametrize("call, error, match", [
    (lambda: tg.draw(3), TypeError, "expected an expression or a list"),
    (lambda: tg.draw("x"), TypeError, "expected an expression or a list"),
    (lambda: tg.draw([]), ValueError, "the list is empty"),
    (lambda: tg.draw([x, 3]), TypeError, r"item 1 of the list is 3"),
    (lambda: tg.draw([(x, "title")]), TypeError, "title, expression"),
    (lambda: tg.draw(x, path="x.png"), ValueError, "ending in '.svg'"),
])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- a real browser ---------------------------------------------------------------------------

CHROMIUM = next((p for p in (shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _chromium(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def _png_pixels(data: bytes):
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for q in range(stride):
            left = line[q - channels] if q >= channels else 0
            up = previous[q]
            corner = previous[q - channels] if q >= channels else 0
            if kind == 1:
                line[q] = (line[q] + left) & 0xFF
            elif kind == 2:
                line[q] = (line[q] + up) & 0xFF
            elif kind == 3:
                line[q] = (line[q] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[q] = (line[q] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(line)
        previous = line
    return width, height, channels, rows


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_a_real_browser_renders_the_diagram(tmp_path):
    svg = tg.draw([("cross-entropy Hessian", CASES["cross-entropy hessian"]), ("l2 gradient", CASES["l2 gradient"])])
    path = tmp_path / "diagram.svg"
    path.write_text(svg, encoding="utf-8")
    # No rendering error: Chromium parses the document as SVG (an XML error becomes a <parsererror> page).
    dom = _chromium("--dump-dom", path.as_uri(), cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr
    assert "<svg" in dom.stdout and "parsererror" not in dom.stdout and "This page contains" not in dom.stdout
    # Not blank: the screenshot has dark strokes and text over a good share of the picture.
    _, _, w, h = _view_box(_tree(svg))
    shot = tmp_path / "diagram.png"
    run = _chromium(f"--screenshot={shot}", f"--window-size={int(w) + 1},{int(h) + 1}", path.as_uri(), cwd=tmp_path)
    assert shot.exists(), run.stderr
    width, height, channels, rows = _png_pixels(shot.read_bytes())
    dark = sum(
        1 for row in rows[::2] for q in range(0, width * channels, channels * 2) if sum(row[q:q + 3]) < 3 * 128
    )
    sampled = len(rows[::2]) * len(range(0, width * channels, channels * 2))
    assert 0.005 < dark / sampled < 0.5, f"{dark} of {sampled} sampled pixels are dark"


def test_the_readme_pictures_are_what_the_script_draws(tmp_path):
    """docs/make_pictures.py draws the README's pictures; the committed files must be its output."""
    import importlib.util
    import pathlib

    docs = pathlib.Path(__file__).parents[1] / "docs"
    spec = importlib.util.spec_from_file_location("make_pictures", docs / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pictures = module.pictures()
    assert set(pictures) == {"l2_gradient.svg", "cross_entropy_hessian.svg", "explain.svg"}
    for name, svg in pictures.items():
        committed = (docs / "images" / name).read_text(encoding="utf-8")
        assert svg == committed, f"docs/images/{name} is stale: run python docs/make_pictures.py"


def test_a_derivation_that_ends_in_a_constant_draws():
    steps = tg.explain(F.sum(F.exp(x)) / F.sum(F.exp(x)))
    assert "1" in _texts(_tree(tg.draw(steps)))


def test_an_edge_is_named_once_where_it_crosses_a_frame():
    # Issue 28 item 10: a line into a frame was named at the border and again inside, at the
    # end of each term's stub ("— i  — i"). An edge alone on its side of the frame is named
    # at the border only.
    x_, A_ = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    for expr in (F.tanh(A_ @ x_.rename(i="j")) + x_, F.exp(F.tanh(A_ @ x_.rename(i="j") + x_)) * x_):
        texts = _texts(_tree(tg.draw(expr)))
        assert texts.count("i") == 1, texts
