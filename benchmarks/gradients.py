"""Loss plus all parameter gradients from one tg.lower([loss, *grads]) against
jax.jit(jax.value_and_grad(...)), float32 on one device.

Each model is written the way a user writes it (F.cross_entropy, F.softmax,
layer norm with F.mean and F.pow), on both sides from the same arrays. Beside
the times: tg/jax (tgjax time / JAX time: the targets are a geometric mean of
at most 1.0 and a worst row of at most 1.25) and flops tg/jax (XLA
cost_analysis FLOPs of tgjax's compiled program over JAX's). A case that
raises, runs past its time limit, or whose program has over 100x JAX's FLOPs
prints a row without times, and the script goes on.

Run: python benchmarks/gradients.py [--quick]
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import tgjax as tg
import tgjax.functions as F
from harness import CaseTimeout, Table, flops, max_rel_error, paired_times, time_limit

rng = np.random.default_rng(0)

MAX_FLOP_RATIO = 100.0  # above this tgjax's program is not run, only its FLOP ratio reported
MAX_LINES = 20_000  # generated statements; a bigger program is not even compiled
CASE_LIMIT_S = 45.0  # symbolic work, planning and both compiles of one case; then again for the timing


def normal(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def one_hot(batch, classes):
    return jax.nn.one_hot(rng.integers(0, classes, batch), classes, dtype=jnp.float32)


def case(table, name, loss, params, values, jax_loss, limit_s=CASE_LIMIT_S):
    """One row. ``jax_loss(params: dict, data: dict)``; ``params``: the Variables to differentiate.

    Errors, time limits and oversized programs become an error row.
    """
    compile_s = ratio = None
    try:
        with time_limit(limit_s):
            start = time.perf_counter()
            fn = tg.lower([loss, *(loss.grad(p) for p in params)])
            # tgjax's jitted program, compiled ahead of time for its FLOP count.
            arrays, env = fn._bind(values, {})
            source, inputs, jitted = fn._program(env)
            lines = source.count("\n")
            if lines > MAX_LINES:
                table.error(name, f"program too big: {lines} lines of generated source (> {MAX_LINES})",
                            time.perf_counter() - start)
                return
            by_name = dict(zip(fn.variables, arrays))
            ordered = [by_name[n] for n in inputs]
            compiled = jitted.lower(*ordered).compile()
            jax.block_until_ready(compiled(*ordered))
            compile_s = time.perf_counter() - start

            names = [p.name for p in params]
            p_vals = {k: values[k] for k in names}
            data = {k: v for k, v in values.items() if k not in names}
            vg = jax.jit(jax.value_and_grad(jax_loss))
            ratio = flops(compiled) / flops(vg.lower(p_vals, data).compile())
        if not ratio <= MAX_FLOP_RATIO:
            table.add(name, None, None, compile_s, None, ratio,
                      note=f"not timed: {ratio:.0f}x JAX's FLOPs (> {MAX_FLOP_RATIO:g}x)")
            return
        with time_limit(limit_s):
            ours = fn(values)
            value, grads = vg(p_vals, data)
            theirs = (value, *(grads[k] for k in names))
            err = max_rel_error(ours, theirs)
            jax_s, tg_s = paired_times(lambda: vg(p_vals, data), lambda: fn(values))
        table.add(name, jax_s, tg_s, compile_s, err, ratio)
    except (Exception, CaseTimeout) as error:  # noqa: BLE001  (one failing case must not stop the table)
        table.error(name, f"{type(error).__name__}: {error}", compile_s, ratio)


def mlp_regression(table, s):
    """Three tanh layers with biases, mean squared error."""
    b, d, h, h2, o = tg.symbols("b d h h2 o")
    B, D, H, O = 256 // s, 784 // s, 256 // s, 10
    X, Y = tg.Variable("X", b, d), tg.Variable("Y", b, o)
    W1, b1 = tg.Variable("W1", d, h), tg.Variable("b1", h)
    W2, b2 = tg.Variable("W2", h, h2), tg.Variable("b2", h2)
    W3 = tg.Variable("W3", h2, o)
    out = F.tanh(F.tanh(X @ W1 + b1) @ W2 + b2) @ W3
    loss = F.mean((out - Y) ** 2)

    def jax_mlp(p, data):
        z = jnp.tanh(jnp.tanh(data["X"] @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]) @ p["W3"]
        return jnp.mean((z - data["Y"]) ** 2)

    values = {"X": normal(B, D), "Y": normal(B, O), "W1": normal(D, H, scale=D**-0.5), "b1": normal(H, scale=0.1),
              "W2": normal(H, H, scale=H**-0.5), "b2": normal(H, scale=0.1), "W3": normal(H, O, scale=H**-0.5)}
    case(table, f"MLP regression (b={B}, {D}-{H}-{H}-{O}, tanh)", loss, [W1, b1, W2, b2, W3], values, jax_mlp)


def mlp_classifier_logsumexp(table, s):
    """The old row: no biases, cross-entropy written out by hand as logsumexp - <T, logits>."""
    b, d, h, c = tg.symbols("b d h c")
    B, D, H, C = 256 // s, 784 // s, 256 // s, 10
    X, T = tg.Variable("X", b, d), tg.Variable("T", b, c)
    V1, V2 = tg.Variable("V1", d, h), tg.Variable("V2", h, c)
    logits = F.relu(X @ V1) @ V2
    ce = F.mean(F.logsumexp(logits, "c") - F.sum(T * logits, "c"))

    def jax_classifier(p, data):
        z = jax.nn.relu(data["X"] @ p["V1"]) @ p["V2"]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(data["T"] * z, axis=1))

    values = {"X": normal(B, D), "T": one_hot(B, C), "V1": normal(D, H, scale=D**-0.5), "V2": normal(H, C, scale=H**-0.5)}
    case(table, f"MLP classifier, hand logsumexp CE, no bias (b={B})", ce, [V1, V2], values, jax_classifier)


def mlp_classifier(table, s):
    """784-256-10 relu MLP with biases and F.cross_entropy."""
    b, d, h, c = tg.symbols("b d h c")
    B, D, H, C = 256 // s, 784 // s, 256 // s, 10
    X, T = tg.Variable("X", b, d), tg.Variable("T", b, c)
    W1, b1 = tg.Variable("W1", d, h), tg.Variable("b1", h)
    W2, b2 = tg.Variable("W2", h, c), tg.Variable("b2", c)
    logits = F.relu(X @ W1 + b1) @ W2 + b2
    loss = F.mean(F.cross_entropy(logits, T, "c"))

    def jax_classifier(p, data):
        z = jax.nn.relu(data["X"] @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        return jnp.mean(-jnp.sum(data["T"] * jax.nn.log_softmax(z, axis=1), axis=1))

    values = {"X": normal(B, D), "T": one_hot(B, C), "W1": normal(D, H, scale=D**-0.5), "b1": normal(H, scale=0.1),
              "W2": normal(H, C, scale=H**-0.5), "b2": normal(C, scale=0.1)}
    case(table, f"MLP classifier, F.cross_entropy (b={B}, {D}-{H}-{C}, relu)", loss, [W1, b1, W2, b2], values,
         jax_classifier)


def attention_head(table, s):
    """softmax(X Wq (X Wk)^T / sqrt(d')) X Wv against a target, squared error."""
    n, d, e = tg.symbols("s d e")
    S, D, E = 128 // s, 64 // s, 64 // s
    X, Y = tg.Variable("X", s=n, d=d), tg.Variable("Y", s=n, e=e)
    Wq, Wk, Wv = (tg.Variable(name, d, e) for name in ("Wq", "Wk", "Wv"))
    Q = X @ Wq                      # (s, e)
    K = X.rename(s="t") @ Wk        # (t, e)
    V = X.rename(s="t") @ Wv        # (t, e)
    A = F.softmax((Q @ K) / math.sqrt(E), "t")
    loss = F.sum((A @ V - Y) ** 2)

    def jax_attention(p, data):
        x = data["X"]
        q, k, v = x @ p["Wq"], x @ p["Wk"], x @ p["Wv"]
        a = jax.nn.softmax(q @ k.T / math.sqrt(E), axis=-1)
        return jnp.sum((a @ v - data["Y"]) ** 2)

    values = {"X": normal(S, D), "Y": normal(S, E), **{w: normal(D, E, scale=D**-0.5) for w in ("Wq", "Wk", "Wv")}}
    case(table, f"attention head (s={S}, d={D}, d'={E})", loss, [Wq, Wk, Wv], values, jax_attention)


def transformer_block(table, s):
    """Pre-norm block: x + attn(LN(x)), then + MLP(LN(.)) with gelu; MSE to a target."""
    n, d, e, f = tg.symbols("s d e f")
    S, D, E, Fh = 128 // s, 64 // s, 64 // s, 256 // s
    eps = 1e-5
    X, Y = tg.Variable("X", s=n, d=d), tg.Variable("Y", s=n, d=d)
    g1, be1, g2, be2 = (tg.Variable(name, d) for name in ("g1", "be1", "g2", "be2"))
    Wq, Wk, Wv = (tg.Variable(name, d, e) for name in ("Wq", "Wk", "Wv"))
    Wo = tg.Variable("Wo", e, d)
    W1, c1, W2, c2 = tg.Variable("W1", d, f), tg.Variable("c1", f), tg.Variable("W2", f, d), tg.Variable("c2", d)

    def layer_norm(x, g, beta):
        centred = x - F.mean(x, "d")
        return centred * F.pow(F.mean(centred**2, "d") + eps, -0.5) * g + beta

    h = layer_norm(X, g1, be1)
    Q, K, V = h @ Wq, h.rename(s="t") @ Wk, h.rename(s="t") @ Wv
    X1 = X + (F.softmax((Q @ K) / math.sqrt(E), "t") @ V) @ Wo
    X2 = X1 + F.gelu(layer_norm(X1, g2, be2) @ W1 + c1) @ W2 + c2
    loss = F.mean((X2 - Y) ** 2)
    params = [g1, be1, Wq, Wk, Wv, Wo, g2, be2, W1, c1, W2, c2]

    def jax_block(p, data):
        def ln(x, g, beta):
            centred = x - x.mean(-1, keepdims=True)
            return centred * (jnp.mean(centred**2, -1, keepdims=True) + eps) ** -0.5 * g + beta

        x = data["X"]
        h = ln(x, p["g1"], p["be1"])
        a = jax.nn.softmax((h @ p["Wq"]) @ (h @ p["Wk"]).T / math.sqrt(E), axis=-1)
        x1 = x + (a @ (h @ p["Wv"])) @ p["Wo"]
        x2 = x1 + jax.nn.gelu(ln(x1, p["g2"], p["be2"]) @ p["W1"] + p["c1"], approximate=False) @ p["W2"] + p["c2"]
        return jnp.mean((x2 - data["Y"]) ** 2)

    values = {"X": normal(S, D), "Y": normal(S, D),
              "g1": 1 + normal(D, scale=0.1), "be1": normal(D, scale=0.1),
              "g2": 1 + normal(D, scale=0.1), "be2": normal(D, scale=0.1),
              **{w: normal(D, E, scale=D**-0.5) for w in ("Wq", "Wk", "Wv")}, "Wo": normal(E, D, scale=E**-0.5),
              "W1": normal(D, Fh, scale=D**-0.5), "c1": normal(Fh, scale=0.1),
              "W2": normal(Fh, D, scale=Fh**-0.5), "c2": normal(D, scale=0.1)}
    case(table, f"pre-norm transformer block (s={S}, d={D}, f={Fh}, gelu)", loss, params, values, jax_block)


def softmax_regression(table, s):
    """Linear classifier with a bias and F.cross_entropy."""
    b, d, c = tg.symbols("b d c")
    B, D, C = 64, 784 // s, 10
    X, T = tg.Variable("X", b, d), tg.Variable("T", b, c)
    W, bias = tg.Variable("W", d, c), tg.Variable("bias", c)
    loss = F.mean(F.cross_entropy(X @ W + bias, T, "c"))

    def jax_softmax_regression(p, data):
        z = data["X"] @ p["W"] + p["bias"]
        return jnp.mean(-jnp.sum(data["T"] * jax.nn.log_softmax(z, axis=1), axis=1))

    values = {"X": normal(B, D), "T": one_hot(B, C), "W": normal(D, C, scale=D**-0.5), "bias": normal(C, scale=0.1)}
    case(table, f"softmax regression, F.cross_entropy (b={B}, d={D})", loss, [W, bias], values, jax_softmax_regression)


def conv_net(table, s):
    """conv 3x3 + bias, relu, flatten (a dense weight over (filters, w2, h2)) to classes, F.cross_entropy."""
    b, c, d, w, h, kw, kh, w2, h2, o = tg.symbols("b c d w h kw kh w2 h2 o")
    B, Cin, D, W, K, O = 32 // s, 1, 16 // (2 if s > 1 else 1), 28 // (2 if s > 1 else 1), 3, 10
    W2 = W - K + 1
    data, T = tg.Variable("data", b, c, w, h), tg.Variable("T", b, o)
    kernel, cb = tg.Variable("kernel", d, c, kw, kh), tg.Variable("cb", d)
    Wd, bd = tg.Variable("Wd", d, w2, h2, o), tg.Variable("bd", o)
    y = data @ tg.Convolution(w, kw, w2) @ tg.Convolution(h, kh, h2) @ kernel  # (b, w2, h2, d)
    logits = F.relu(y + cb) @ Wd + bd                                           # (b, o)
    loss = F.mean(F.cross_entropy(logits, T, "o"))

    def jax_conv_net(p, v):
        y = lax.conv_general_dilated(v["data"], p["kernel"], (1, 1), "VALID")  # (b, d, w2, h2)
        z = jnp.einsum("bdwh,dwho->bo", jax.nn.relu(y + p["cb"][:, None, None]), p["Wd"]) + p["bd"]
        return jnp.mean(-jnp.sum(v["T"] * jax.nn.log_softmax(z, axis=1), axis=1))

    fan = D * W2 * W2
    values = {"data": normal(B, Cin, W, W), "T": one_hot(B, O), "kernel": normal(D, Cin, K, K, scale=(Cin * K * K) ** -0.5),
              "cb": normal(D, scale=0.1), "Wd": normal(D, W2, W2, O, scale=fan**-0.5), "bd": normal(O, scale=0.1)}
    case(table, f"conv net, F.cross_entropy (b={B}, {Cin}x{W}x{W}, {D} 3x3 filters)", loss, [kernel, cb, Wd, bd],
         values, jax_conv_net)


def deep_mlp(table, s):
    """16 weight layers (15 tanh hidden layers with biases, a linear head), MSE."""
    L = 16
    B, D, H, O = 64 // s, 128 // s, 128 // s, 10
    b, o = tg.symbols("b o")
    edges = [tg.symbols("d")] + [tg.symbols(f"h{i}") for i in range(1, L)] + [o]
    X, Y = tg.Variable("X", b, edges[0]), tg.Variable("Y", b, o)
    Ws = [tg.Variable(f"W{i}", edges[i], edges[i + 1]) for i in range(L)]
    bs = [tg.Variable(f"b{i}", edges[i + 1]) for i in range(L)]
    z = X
    for i in range(L):
        z = z @ Ws[i] + bs[i]
        if i < L - 1:
            z = F.tanh(z)
    loss = F.mean((z - Y) ** 2)
    params = [p for pair in zip(Ws, bs) for p in pair]

    def jax_deep(p, data):
        z = data["X"]
        for i in range(L):
            z = z @ p[f"W{i}"] + p[f"b{i}"]
            if i < L - 1:
                z = jnp.tanh(z)
        return jnp.mean((z - data["Y"]) ** 2)

    widths = [D] + [H] * (L - 1) + [O]
    values = {"X": normal(B, D), "Y": normal(B, O)}
    for i in range(L):
        values[f"W{i}"] = normal(widths[i], widths[i + 1], scale=widths[i] ** -0.5)
        values[f"b{i}"] = normal(widths[i + 1], scale=0.1)
    case(table, f"deep MLP (16 layers, b={B}, width {H}, tanh, biases)", loss, params, values, jax_deep)


def tensor_train(table, s):
    """Tensor-train regression layer 4096 -> 16: four rank-8 cores, batch 256."""
    b, i1, i2, i3, i4, o1, o2, o3, o4, r1, r2, r3 = tg.symbols("b i1 i2 i3 i4 o1 o2 o3 o4 r1 r2 r3")
    x = tg.Variable("x", b, i1, i2, i3, i4)
    y = tg.Variable("y", b, o1, o2, o3, o4)
    G1, G2 = tg.Variable("G1", i1, o1, r1), tg.Variable("G2", r1, i2, o2, r2)
    G3, G4 = tg.Variable("G3", r2, i3, o3, r3), tg.Variable("G4", r3, i4, o4)
    pred = x @ G1 @ G2 @ G3 @ G4
    tt_loss = F.mean((pred - y) ** 2, ["b", "o1", "o2", "o3", "o4"])

    def jax_tt(p, data):
        pred = jnp.einsum("bijkl,ipr,rjqs,skut,tlv->bpquv", data["x"], p["G1"], p["G2"], p["G3"], p["G4"])
        return jnp.mean((pred - data["y"]) ** 2)

    B, R = 256, 8
    values = {"x": normal(B, 8, 8, 8, 8), "y": normal(B, 2, 2, 2, 2),
              "G1": normal(8, 2, R, scale=0.3), "G2": normal(R, 8, 2, R, scale=0.3),
              "G3": normal(R, 8, 2, R, scale=0.3), "G4": normal(R, 8, 2, scale=0.3)}
    case(table, f"tensor-train regression 4096->16 (b={B}, rank {R})", tt_loss, [G1, G2, G3, G4], values, jax_tt)


def logistic_regression(table, s):
    b, d = tg.symbols("b d")
    B, D = 4096 // s, 512 // s
    X, y, w = tg.Variable("X", b, d), tg.Variable("y", b), tg.Variable("w", d)
    z = X @ w
    logistic = F.mean(F.softplus(z) - y * z)

    def jax_logistic(p, data):
        z = data["X"] @ p["w"]
        return jnp.mean(jax.nn.softplus(z) - data["y"] * z)

    values = {"X": normal(B, D), "y": jnp.asarray(rng.integers(0, 2, B), jnp.float32), "w": normal(D, scale=0.05)}
    case(table, f"logistic regression (b={B}, d={D})", logistic, [w], values, jax_logistic)


def least_squares(table, s):
    b, d, o = tg.symbols("b d o")
    B, D, O = 2048 // s, 512 // s, 64
    X, Y, W = tg.Variable("X", b, d), tg.Variable("Y", b, o), tg.Variable("W", d, o)
    ls = F.sum((X @ W - Y) ** 2)

    def jax_ls(p, data):
        return jnp.sum((data["X"] @ p["W"] - data["Y"]) ** 2)

    values = {"X": normal(B, D), "Y": normal(B, O), "W": normal(D, O, scale=0.05)}
    case(table, f"least squares (b={B}, d={D}, o={O})", ls, [W], values, jax_ls)


CASES = [mlp_regression, mlp_classifier_logsumexp, mlp_classifier, attention_head, transformer_block,
         softmax_regression, conv_net, deep_mlp, tensor_train, logistic_regression, least_squares]


def main(quick: bool = False):
    s = 4 if quick else 1
    table = Table("Loss and gradients: tgjax vs jax.jit(jax.value_and_grad)", "jax", flops=True, width=58)
    table.header()
    for make in CASES:
        try:
            make(table, s)
        except (Exception, CaseTimeout) as error:  # noqa: BLE001  (building the model itself failed)
            table.error(make.__name__, f"{type(error).__name__}: {error}")
    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
