"""Loss plus all parameter gradients from one tg.lower([loss, *grads]) against
jax.jit(jax.value_and_grad(...)), float32 on one device.

Run: python benchmarks/gradients.py [--quick]
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import tgjax as tg
import tgjax.functions as F
from harness import Table, max_rel_error, median_time

rng = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def case(table, name, loss, params, values, jax_loss):
    """``jax_loss(params: dict, data: dict)``; ``params``: the Variables to differentiate."""
    start = time.perf_counter()
    fn = tg.lower([loss, *(loss.grad(p) for p in params)])
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start
    names = [p.name for p in params]
    p_vals = {k: values[k] for k in names}
    data = {k: v for k, v in values.items() if k not in names}
    vg = jax.jit(jax.value_and_grad(jax_loss))
    ours = fn(values)
    value, grads = vg(p_vals, data)
    theirs = (value, *(grads[k] for k in names))
    table.add(name, median_time(vg, p_vals, data), median_time(fn, values), compile_s, max_rel_error(ours, theirs))


def main(quick: bool = False):
    s = 4 if quick else 1
    table = Table("Loss and gradients: tgjax vs jax.jit(jax.value_and_grad)", "jax")
    table.header()
    b, d, h, h2, o, c = tg.symbols("b d h h2 o c")

    # MLP regression, three tanh layers with biases.
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
    case(table, f"MLP regression (b={B}, {D}-{H}-{H}-{O})", loss, [W1, b1, W2, b2, W3], values, jax_mlp)

    # MLP classifier with softmax cross-entropy.
    C = 10
    T = tg.Variable("T", b, c)
    V1, V2 = tg.Variable("V1", d, h), tg.Variable("V2", h, c)
    logits = F.relu(X @ V1) @ V2
    ce = F.mean(F.logsumexp(logits, "c") - F.sum(T * logits, "c"))

    def jax_classifier(p, data):
        z = jax.nn.relu(data["X"] @ p["V1"]) @ p["V2"]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.sum(data["T"] * z, axis=1))

    labels = jax.nn.one_hot(rng.integers(0, C, B), C, dtype=jnp.float32)
    values = {"X": normal(B, D), "T": labels, "V1": normal(D, H, scale=D**-0.5), "V2": normal(H, C, scale=H**-0.5)}
    case(table, f"MLP classifier (b={B}, {D}-{H}-{C})", ce, [V1, V2], values, jax_classifier)

    # Tensor-train regression layer 4096 -> 16: four rank-8 cores, batch 256.
    i1, i2, i3, i4, o1, o2, o3, o4, r1, r2, r3 = tg.symbols("i1 i2 i3 i4 o1 o2 o3 o4 r1 r2 r3")
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

    # Logistic regression.
    B, D = 4096 // s, 512 // s
    Xl, yl, w = tg.Variable("X", b, d), tg.Variable("y", b), tg.Variable("w", d)
    z = Xl @ w
    logistic = F.mean(F.softplus(z) - yl * z)

    def jax_logistic(p, data):
        z = data["X"] @ p["w"]
        return jnp.mean(jax.nn.softplus(z) - data["y"] * z)

    values = {"X": normal(B, D), "y": jnp.asarray(rng.integers(0, 2, B), jnp.float32), "w": normal(D, scale=0.05)}
    case(table, f"logistic regression (b={B}, d={D})", logistic, [w], values, jax_logistic)

    # Multi-output least squares.
    B, D, O = 2048 // s, 512 // s, 64
    W = tg.Variable("W", d, o)
    ls = F.sum((X @ W - Y) ** 2)

    def jax_ls(p, data):
        return jnp.sum((data["X"] @ p["W"] - data["Y"]) ** 2)

    values = {"X": normal(B, D), "Y": normal(B, O), "W": normal(D, O, scale=0.05)}
    case(table, f"least squares (b={B}, d={D}, o={O})", ls, [W], values, jax_ls)

    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
