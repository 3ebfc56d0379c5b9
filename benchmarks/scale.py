"""Time to first result at model scale: tgjax's symbolic work, tg.lower and
first call against jax.jit(jax.value_and_grad(...))'s trace, compile and
first call, float32 on CPU, in one process.

Each model is written the way a user writes it (F.softmax, F.gelu, layer norm,
edges named per layer), loss MSE to a target, on both sides from the same
arrays:

- a post-layer-norm transformer of 2, 4, 8 and 12 blocks (single head, six
  weights a block, s=16, d=32, f=64, no affine layer-norm parameters);
- a tanh MLP of 50, 200 and 1000 layers (x = tanh(x @ W_k), batch 8, d=16);
- a pre-layer-norm GPT stack of 12 blocks: 4 causal heads of 8 (d=32),
  residuals, gelu MLP (f=128), a final layer norm.

tgjax's first result splits into ``sym`` (building the loss and its
gradients: ``loss.grad(params)``, one reverse sweep), ``lower`` (the ``tg.lower([loss, *grads])`` call:
evaluation and normal forms) and ``compile+call`` (planning, code generation,
trace, XLA compile and the first call, blocked on). ``first tg/jax`` is
tgjax's total over JAX's; ``step tg/jax`` the ratio of steady-state step times
(harness.paired_times). A case that raises or runs past ``--limit`` seconds
prints an error row with the times it reached, and the script goes on.

Run: python benchmarks/scale.py [--quick] [--only NAME_SUBSTRING] [--limit SECONDS]
"""

from __future__ import annotations

import argparse
import math
import time

import jax

jax.config.update("jax_enable_x64", False)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import tgjax as tg  # noqa: E402
import tgjax.functions as F  # noqa: E402
from harness import CaseTimeout, machine, max_rel_error, paired_times, time_limit  # noqa: E402

rng = np.random.default_rng(0)
EPS = 1e-5
NEG = -1e9  # the masked scores' value above the diagonal


def normal(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def gradients(loss, params):
    """All parameter gradients, from one reverse sweep."""
    return loss.grad(list(params))


def layer_norm(x, edge="d"):
    """Layer norm without its affine part (``F.layer_norm``: composed from F.mean and F.pow)."""
    return F.layer_norm(x, edge, eps=EPS)


def jax_ln(x):
    centred = x - x.mean(-1, keepdims=True)
    return centred * (jnp.mean(centred**2, -1, keepdims=True) + EPS) ** -0.5


# -- models: each returns (tg_model, values, jax_loss); tg_model() -> (loss, params) -------------

def post_ln_transformer(blocks, S=16, D=32, Fh=64):
    E = D

    def tg_model():
        n, d, e, f = tg.symbols("s d e f")
        X, Y = tg.Variable("X", s=n, d=d), tg.Variable("Y", s=n, d=d)
        params, x = [], X
        for k in range(blocks):
            Wq, Wk, Wv = (tg.Variable(f"{w}{k}", d, e) for w in ("Wq", "Wk", "Wv"))
            Wo, W1, W2 = tg.Variable(f"Wo{k}", e, d), tg.Variable(f"W1{k}", d, f), tg.Variable(f"W2{k}", f, d)
            params += [Wq, Wk, Wv, Wo, W1, W2]
            Q, K, V = x @ Wq, x.rename(s="t") @ Wk, x.rename(s="t") @ Wv
            x = layer_norm(x + (F.softmax((Q @ K) / math.sqrt(E), "t") @ V) @ Wo)
            x = layer_norm(x + F.gelu(x @ W1) @ W2)
        return F.mean((x - Y) ** 2), params

    def jax_loss(p, data):
        x = data["X"]
        for k in range(blocks):
            q, kk, v = x @ p[f"Wq{k}"], x @ p[f"Wk{k}"], x @ p[f"Wv{k}"]
            x = jax_ln(x + (jax.nn.softmax(q @ kk.T / math.sqrt(E), axis=-1) @ v) @ p[f"Wo{k}"])
            x = jax_ln(x + jax.nn.gelu(x @ p[f"W1{k}"], approximate=False) @ p[f"W2{k}"])
        return jnp.mean((x - data["Y"]) ** 2)

    values = {"X": normal(S, D), "Y": normal(S, D)}
    for k in range(blocks):
        values |= {f"{w}{k}": normal(D, E, scale=D**-0.5) for w in ("Wq", "Wk", "Wv")}
        values |= {f"Wo{k}": normal(E, D, scale=E**-0.5), f"W1{k}": normal(D, Fh, scale=D**-0.5),
                   f"W2{k}": normal(Fh, D, scale=Fh**-0.5)}
    return tg_model, values, jax_loss


def tanh_mlp(layers, B=8, D=16):
    def tg_model():
        b, d = tg.symbols("b d")
        X, Y = tg.Variable("X", b=b, h0=d), tg.Variable("Y", **{"b": b, f"h{layers}": d})
        params = [tg.Variable(f"W{k}", **{f"h{k}": d, f"h{k + 1}": d}) for k in range(layers)]
        x = X
        for W in params:
            x = F.tanh(x @ W)
        return F.mean((x - Y) ** 2), params

    def jax_loss(p, data):
        x = data["X"]
        for k in range(layers):
            x = jnp.tanh(x @ p[f"W{k}"])
        return jnp.mean((x - data["Y"]) ** 2)

    values = {"X": normal(B, D), "Y": normal(B, D, scale=0.5)}
    values |= {f"W{k}": normal(D, D, scale=D**-0.5) for k in range(layers)}
    return tg_model, values, jax_loss


def gpt(blocks, S=16, D=32, H=4, Fh=128):
    E = D // H
    causal = np.tril(np.ones((S, S), bool))

    def tg_model():
        n, d, h, e, f = tg.symbols("s d h e f")
        X, Y = tg.Variable("X", s=n, d=d), tg.Variable("Y", s=n, d=d)
        mask = tg.causal_mask(n, "s", "t")  # computed by the program, no array passed
        params, x = [], X
        for k in range(blocks):
            Wq, Wk, Wv = (tg.Variable(f"{w}{k}", d, h, e) for w in ("Wq", "Wk", "Wv"))
            Wo, W1, W2 = tg.Variable(f"Wo{k}", h, e, d), tg.Variable(f"W1{k}", d, f), tg.Variable(f"W2{k}", f, d)
            params += [Wq, Wk, Wv, Wo, W1, W2]
            a = layer_norm(x)
            Q, K, V = a @ Wq, a.rename(s="t") @ Wk, a.rename(s="t") @ Wv      # (s,h,e), (t,h,e), (t,h,e)
            att = F.softmax(F.where(mask, F.dot(Q, K, "e") / math.sqrt(E), NEG), "t")  # (s,h,t)
            x = x + F.dot(att, V, "t") @ Wo                                    # heads joined by Wo
            x = x + F.gelu(layer_norm(x) @ W1) @ W2
        return F.mean((layer_norm(x) - Y) ** 2), params

    def jax_loss(p, data):
        x = data["X"]
        for k in range(blocks):
            a = jax_ln(x)
            q, kk, v = (jnp.einsum("sd,dhe->she", a, p[f"{w}{k}"]) for w in ("Wq", "Wk", "Wv"))
            scores = jnp.where(causal[:, None, :], jnp.einsum("she,the->sht", q, kk) / math.sqrt(E), NEG)
            att = jax.nn.softmax(scores, axis=-1)
            x = x + jnp.einsum("sht,the,hed->sd", att, v, p[f"Wo{k}"])
            x = x + jax.nn.gelu(jax_ln(x) @ p[f"W1{k}"], approximate=False) @ p[f"W2{k}"]
        return jnp.mean((jax_ln(x) - data["Y"]) ** 2)

    values = {"X": normal(S, D), "Y": normal(S, D)}
    for k in range(blocks):
        values |= {f"{w}{k}": normal(D, H, E, scale=D**-0.5) for w in ("Wq", "Wk", "Wv")}
        values |= {f"Wo{k}": normal(H, E, D, scale=D**-0.5), f"W1{k}": normal(D, Fh, scale=D**-0.5),
                   f"W2{k}": normal(Fh, D, scale=Fh**-0.5)}
    return tg_model, values, jax_loss


# (name, builder) per family, smallest first: --quick runs the first of each
FAMILIES = [
    [(f"post-LN transformer, {k} blocks (s=16 d=32 f=64)", lambda k=k: post_ln_transformer(k)) for k in (2, 4, 8, 12)],
    [(f"tanh MLP, {k} layers (b=8 d=16)", lambda k=k: tanh_mlp(k)) for k in (50, 200, 1000)],
    [("GPT pre-LN, 12 blocks, 4x8 causal heads (s=16 d=32 f=128)", lambda: gpt(12))],
]

WIDTH = 58
COLUMNS = [("tg first s", 10, ".2f"), ("sym s", 7, ".2f"), ("lower s", 7, ".2f"), ("compile+call s", 14, ".2f"),
           ("jax first s", 11, ".2f"), ("first tg/jax", 12, ".2f"), ("tg step ms", 10, ".3f"),
           ("jax step ms", 11, ".3f"), ("step tg/jax", 11, ".2f"), ("max rel err", 11, ".1e")]


def row(name, values, note=""):
    cells = [f"{format(v, fmt):>{w}}" if v is not None else f"{'-':>{w}}" for v, (_, w, fmt) in zip(values, COLUMNS)]
    print(f"{name:<{WIDTH}} " + " ".join(cells) + (f"  {note}" if note else ""), flush=True)


def case(name, build, limit):
    """One row: tgjax's and JAX's first result, then paired step times and the error.

    Returns (first-result ratio, step ratio), or None for an error row, which
    shows the time of each stage reached, the failing one included.
    """
    t, stage = {}, None

    def clock(name):  # close the running stage, open the next
        nonlocal stage, start
        now = time.perf_counter()
        if stage:
            t[stage] = now - start
        stage, start = name, now

    start = time.perf_counter()
    try:
        with time_limit(limit):
            tg_model, values, jax_loss = build()
            clock("sym")
            loss, params = tg_model()
            grads = gradients(loss, params)
            clock("lower")
            fn = tg.lower([loss, *grads])
            clock("compile")
            ours = jax.block_until_ready(fn(values))
            clock(None)
            t["tg"] = t["sym"] + t["lower"] + t["compile"]

            names = [p.name for p in params]
            p_vals = {k: values[k] for k in names}
            data = {k: v for k, v in values.items() if k not in names}
            clock("jax")
            vg = jax.jit(jax.value_and_grad(jax_loss))
            value, g = jax.block_until_ready(vg(p_vals, data))
            clock(None)

            err = max_rel_error(ours, (value, *(g[k] for k in names)))
            jax_step, tg_step = paired_times(lambda: vg(p_vals, data), lambda: fn(values))
        first, step = t["tg"] / t["jax"], tg_step / jax_step
        row(name, [t["tg"], t["sym"], t["lower"], t["compile"], t["jax"], first, tg_step * 1e3, jax_step * 1e3,
                   step, err])
        return first, step
    except (Exception, CaseTimeout) as error:  # noqa: BLE001  (one failing case must not stop the table)
        clock(None)  # the stage that failed shows the time it ran
        message = " ".join(f"{type(error).__name__}: {error}".split())
        row(name, [t.get(k) for k in ("tg", "sym", "lower", "compile", "jax")] + [None] * 5, f"ERROR {message[:200]}")
        return None


def warm_up():
    """Pay the process's one-time costs (backend start, lazy imports) before any case is timed."""
    x = tg.Variable("x", i=3)
    loss = F.sum(F.tanh(x) ** 2)
    jax.block_until_ready(tg.lower([loss, loss.grad(x)])(x=np.ones(3, np.float32)))
    jax.block_until_ready(jax.jit(jax.value_and_grad(lambda v: jnp.sum(jnp.tanh(v) ** 2)))(jnp.ones(3)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smallest size of each family only")
    parser.add_argument("--only", default="", help="run the cases whose name contains this (case-insensitive)")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per case (default 600)")
    args = parser.parse_args()

    warm_up()
    print(f"# Time to first result, loss + all gradients: tgjax vs jax.jit(jax.value_and_grad), float32, "
          f"on {machine()}")
    print("# gradients by loss.grad(params); layer norm by F.layer_norm; causal mask by tg.causal_mask and F.where")
    print(f"{'case':<{WIDTH}} " + " ".join(f"{title:>{w}}" for title, w, _ in COLUMNS), flush=True)
    ratios, failed = [], []
    for family in FAMILIES:
        for name, build in family[:1] if args.quick else family:
            if args.only.lower() not in name.lower():
                continue
            result = case(name, build, args.limit)
            if result:
                ratios.append(result)
            else:
                failed.append(name)
    if ratios:
        geo = [math.exp(sum(math.log(r[i]) for r in ratios) / len(ratios)) for i in (0, 1)]
        worst = [max(r[i] for r in ratios) for i in (0, 1)]
        print(f"geometric mean over {len(ratios)} rows: first result tg/jax {geo[0]:.2f} (worst {worst[0]:.2f}), "
              f"step tg/jax {geo[1]:.2f} (worst {worst[1]:.2f})")
    if failed:
        print(f"{len(failed)} case(s) failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
