"""The peer suite's workloads (issue 30), written as their users write them, against the JAX
a JAX user writes, float32, one process: loss and all gradients.

Rows so far:

- an embedding model: token ids looked up in a table (``F.take``, a gather;
  its gradient a scatter-add), a tanh layer, cross-entropy against integer
  labels (``F.one_hot``), against ``table[ids]`` and ``jax.nn.one_hot`` under
  ``jax.value_and_grad``;
- a conv net: two 3x3 convolutions (``tg.Convolution``) with a 2x2 mean pool
  between them (``F.mean_pool`` on each spatial edge), against
  ``lax.conv_general_dilated`` and a reshape-and-mean pool;
- the peer's residual MLP (6 blocks of ``h + tanh(h W + b)``) and RNN (16 steps,
  shared weights), mean squared error;
- its Gaussian process marginal likelihood (``F.inverse``, ``F.det``) and minGPT step
  (gpt-nano: embeddings by ``F.take``, causal attention, tanh GELU, cross-entropy on a
  window of positions);
- its diffusion step (schedule and time embedding looked up by integer timesteps) and
  linear VAE (the reconstruction term an exact ``tg.Expectation``);
- its second-order rows: the Newton step of logistic regression (loss, gradient and
  Hessian, ``second_order.newton_row``), and the Hessians of ``x^T A x``, logsumexp and a
  tanh layer, against ``jax.hessian``.

Columns as in gradients.py: times, ``tg/jax`` (tgjax time / JAX time) and
``flops tg/jax`` (XLA cost-analysis FLOPs of the compiled programs).

Run: python benchmarks/workloads.py [--quick]
"""

from __future__ import annotations

import math
import sys
import time

import jax

jax.config.update("jax_enable_x64", False)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
import numpy as np  # noqa: E402

import tgjax as tg  # noqa: E402
import tgjax.functions as F  # noqa: E402
from harness import Table, flops, max_rel_error, paired_times  # noqa: E402
from hessians import lowered_hessian  # noqa: E402
from second_order import _compiled_flops, newton_row  # noqa: E402  (the Newton step, as second_order.py times it)

rng = np.random.default_rng(0)


def embedding_model(table, batch=256, seq=16, vocab=10_000, dim=64, classes=32):
    b, s, v, d, c = tg.symbols("b s v d c")
    ids, labels = tg.Variable("ids", b, s), tg.Variable("labels", b)
    E, W = tg.Variable("E", v, d), tg.Variable("W", d, c)
    pooled = F.mean(F.tanh(F.take(E, ids, "v")), "s")                  # (b, d)
    loss = F.mean(F.cross_entropy(pooled @ W, F.one_hot(labels, "c", c), "c"))
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad([E, W])])
    values = {"ids": jnp.asarray(rng.integers(0, vocab, (batch, seq)), jnp.int32),
              "labels": jnp.asarray(rng.integers(0, classes, batch), jnp.int32),
              "E": jnp.asarray(rng.standard_normal((vocab, dim)) * 0.1, jnp.float32),
              "W": jnp.asarray(rng.standard_normal((dim, classes)) * dim**-0.5, jnp.float32)}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(params, ids, labels):
        pooled = jnp.tanh(params["E"][ids]).mean(axis=1)
        logits = pooled @ params["W"]
        return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, classes) * jax.nn.log_softmax(logits, axis=1), axis=1))

    _row(table, f"embedding model (b={batch}, seq {seq}, vocab {vocab:,}, d={dim}, {classes} classes)",
         fn, values, compile_s, jax_loss, ["E", "W"], ["ids", "labels"])


def _row(table, name, fn, values, compile_s, jax_loss, params, data):
    """Time ``fn`` (loss, then the gradients of ``params`` in order) against
    ``jax.value_and_grad(jax_loss)(params dict, *data arrays)`` and add the row."""
    vg = jax.jit(jax.value_and_grad(jax_loss))
    arguments = ({n: values[n] for n in params}, *(values[n] for n in data))

    def jax_all():
        value, grads = vg(*arguments)
        return (value, *(grads[n] for n in params))

    ratio = _compiled_flops(fn, values) / max(flops(vg.lower(*arguments).compile()), 1.0)
    err = max_rel_error(fn(values), jax_all())
    table.add(name, *paired_times(jax_all, lambda: fn(values)), compile_s, err, ratio)


def pooled_conv_net(table, batch=64, channels=8, side=24, filters=16, classes=10):
    """Two 3x3 convolutions, relu after each, a 2x2 mean pool (``F.mean_pool`` on each spatial
    edge), a dense head and cross-entropy: the peer's conv net, with pooling written as a JAX
    user writes it (a reshape and ``mean``) and as a tgjax user does."""
    b, c, h, w, kh, kw, h1, w1, h2, w2, o, o2, k = tg.symbols("b c h w kh kw h1 w1 h2 w2 o o2 k")
    x, labels = tg.Variable("x", b, c, h, w), tg.Variable("labels", b)
    K1, K2 = tg.Variable("K1", o, c, kh, kw), tg.Variable("K2", o2, o, kh, kw)
    y = F.relu(x @ tg.Convolution(h, kh, h1) @ tg.Convolution(w, kw, w1) @ K1)          # (b, h1, w1, o)
    z = F.relu(y @ tg.Convolution(h1, kh, h2) @ tg.Convolution(w1, kw, w2) @ K2)         # (b, h2, w2, o2)
    pooled = F.mean_pool(F.mean_pool(z, "h2", 2, "hp"), "w2", 2, "wp")                  # (b, hp, wp, o2)
    Wd = tg.Variable("Wd", o2=o2, hp=pooled.shape["hp"], wp=pooled.shape["wp"], k=k)
    logits = pooled @ Wd                                                                 # (b, k)
    loss = F.mean(F.cross_entropy(logits, F.one_hot(labels, "k", k), "k"))
    side2 = side - 4
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad([K1, K2, Wd])])
    values = {"x": jnp.asarray(rng.standard_normal((batch, channels, side, side)), jnp.float32),
              "labels": jnp.asarray(rng.integers(0, classes, batch), jnp.int32),
              "K1": jnp.asarray(rng.standard_normal((filters, channels, 3, 3)) * (9 * channels) ** -0.5, jnp.float32),
              "K2": jnp.asarray(rng.standard_normal((filters, filters, 3, 3)) * (9 * filters) ** -0.5, jnp.float32),
              "Wd": jnp.asarray(rng.standard_normal((filters, side2 // 2, side2 // 2, classes)) * (filters * (side2 // 2) ** 2) ** -0.5,
                                jnp.float32)}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(params, x, labels):
        y = jax.nn.relu(lax.conv_general_dilated(x, params["K1"], (1, 1), "VALID"))    # (b, o, h1, w1)
        z = jax.nn.relu(lax.conv_general_dilated(y, params["K2"], (1, 1), "VALID"))    # (b, o2, h2, w2)
        n, o_, s1, s2 = z.shape
        pooled = z.reshape(n, o_, s1 // 2, 2, s2 // 2, 2).mean(axis=(3, 5))
        logits = jnp.einsum("bohw,ohwk->bk", pooled, params["Wd"])
        return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, classes) * jax.nn.log_softmax(logits, axis=1), axis=1))

    _row(table, f"conv net, 2x2 F.mean_pool (b={batch}, {channels}x{side}x{side}, {filters} 3x3 filters x2)",
         fn, values, compile_s, jax_loss, ["K1", "K2", "Wd"], ["x", "labels"])


def normal(*shape, scale=1.0):
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def residual_mlp(table, batch=256, dim=128, blocks=6):
    """The peer's MLP: ``h = h + tanh(h W_i + b_i)`` for 6 blocks, a linear readout, mean squared error."""
    b, d = tg.symbols("b d")
    x, y = tg.Variable("x", b, d), tg.Variable("y", b)
    Ws = [tg.Variable(f"W{i}", din=d, d=d) for i in range(blocks)]
    bs = [tg.Variable(f"b{i}", d) for i in range(blocks)]
    w_out = tg.Variable("w_out", d)
    h = x
    for W, bias in zip(Ws, bs):
        h = h + F.tanh(h.rename(d="din") @ W + bias)
    loss = F.mean((h @ w_out - y) ** 2)
    params = [*Ws, *bs, w_out]
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad(params)])
    values = {"x": normal(batch, dim), "y": normal(batch), "w_out": normal(dim, scale=dim**-0.5),
              **{f"W{i}": normal(dim, dim, scale=dim**-0.5) for i in range(blocks)},
              **{f"b{i}": normal(dim, scale=0.1) for i in range(blocks)}}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(p, x, y):
        h = x
        for i in range(blocks):
            h = h + jnp.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
        return jnp.mean((h @ p["w_out"] - y) ** 2)

    _row(table, f"residual MLP ({blocks} blocks, b={batch}, d={dim}, tanh, MSE)", fn, values, compile_s,
         jax_loss, [v.name for v in params], ["x", "y"])


def rnn(table, batch=64, seq=16, dim=64):
    """The peer's RNN: ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)`` with the weights shared by all
    steps, a linear readout of the last state, mean squared error. The inputs are one
    Variable per step, as the peer writes them; JAX reads them as one array."""
    b, d = tg.symbols("b d")
    xs = [tg.Variable(f"x{t}", b, d) for t in range(seq)]
    y = tg.Variable("y", b)
    Wx, Wh, bias, w_out = tg.Variable("Wx", din=d, d=d), tg.Variable("Wh", din=d, d=d), tg.Variable("bias", d), tg.Variable("w_out", d)
    h = F.tanh(xs[0].rename(d="din") @ Wx + bias)
    for x in xs[1:]:
        h = F.tanh(x.rename(d="din") @ Wx + h.rename(d="din") @ Wh + bias)
    loss = F.mean((h @ w_out - y) ** 2)
    params = [Wx, Wh, bias, w_out]
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad(params)])
    sequence = normal(batch, seq, dim)
    values = {"y": normal(batch), "Wx": normal(dim, dim, scale=dim**-0.5), "Wh": normal(dim, dim, scale=dim**-0.5),
              "bias": normal(dim, scale=0.1), "w_out": normal(dim, scale=dim**-0.5), "xs": sequence,
              **{f"x{t}": sequence[:, t] for t in range(seq)}}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(p, xs, y):
        h = jnp.tanh(xs[:, 0] @ p["Wx"] + p["bias"])
        for t in range(1, seq):
            h = jnp.tanh(xs[:, t] @ p["Wx"] + h @ p["Wh"] + p["bias"])
        return jnp.mean((h @ p["w_out"] - y) ** 2)

    _row(table, f"RNN ({seq} steps, b={batch}, d={dim}, shared weights)", fn, values, compile_s,
         jax_loss, [v.name for v in params], ["xs", "y"])


def gp_marginal_likelihood(table, points=128):
    """The peer's Gaussian process step: the negative log marginal likelihood
    ``(y^T K^-1 y + log|K|) / 2n`` of an RBF kernel ``K = sf^2 exp(-(x_i - x_j)^2 / 2 l^2) + sn^2 I``
    over 1-D inputs, and its gradients with respect to the three log-hyperparameters.
    JAX: the same formula with ``jnp.linalg.solve`` and ``slogdet`` under ``jax.value_and_grad``."""
    n = tg.symbols("n")
    X, y = tg.Variable("X", n), tg.Variable("y", n)
    loglen, logsf, logsn = tg.Variable("loglen"), tg.Variable("logsf"), tg.Variable("logsn")
    gap = X - X.rename(n="m")
    K = F.exp(2 * logsf) * F.exp(-(gap * gap) / (2 * F.exp(2 * loglen))) + F.exp(2 * logsn) * tg.Delta(n, "n", "m")
    nlml = ((F.inverse(K, ("n", "m")) @ y) @ y.rename(n="m") + F.log(F.det(K, ("n", "m")))) / (2 * points)
    params = [loglen, logsf, logsn]
    start = time.perf_counter()
    fn = tg.lower([nlml, *nlml.grad(params)])
    xs = jnp.asarray(rng.uniform(-3, 3, points), jnp.float32)
    values = {"X": xs, "y": jnp.sin(2 * xs) + 0.5 * xs + 0.1 * normal(points),
              "loglen": jnp.float32(0.0), "logsf": jnp.float32(0.0), "logsn": jnp.float32(-1.0)}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_nlml(p, X, y):
        gap = X[:, None] - X[None, :]
        K = jnp.exp(2 * p["logsf"]) * jnp.exp(-gap**2 / (2 * jnp.exp(2 * p["loglen"]))) + jnp.exp(2 * p["logsn"]) * jnp.eye(points)
        return (y @ jnp.linalg.solve(K, y) + jnp.linalg.slogdet(K)[1]) / (2 * points)

    _row(table, f"GP marginal likelihood (n={points}, RBF, 3 hyperparameters)", fn, values, compile_s,
         jax_nlml, ["loglen", "logsf", "logsn"], ["X", "y"])


def min_gpt(table, batch=64, seq=11, dim=48, heads=3, blocks=3, vocab=3, window=5):
    """The peer's minGPT step (gpt-nano on its sorting task): token ids looked up (``F.take``)
    plus learned positions, pre-LN blocks (layer norms with their affine part, causal
    attention with ``tg.causal_mask``, a tanh-form GELU MLP, biases), a final layer norm, a
    bias-free head, cross-entropy on the last ``seq - window`` positions (a 0/1 weight per
    position, as the peer passes it). Loss and all gradients; no optimizer update."""
    b, s, t, d, h, e, f, v = tg.symbols("b s t d h e f v")
    ids, targets, weight = tg.Variable("ids", b, s), tg.Variable("targets", b, s), tg.Variable("weight", s)
    mask = tg.causal_mask(s, "s", "t")
    params = {"wte": tg.Variable("wte", v, d), "wpe": tg.Variable("wpe", s, d), "head": tg.Variable("head", d, v),
              "gf": tg.Variable("gf", d), "bf": tg.Variable("bf", d)}

    def affine_norm(x, k):
        return F.layer_norm(x, "d") * params[f"g{k}"] + params[f"b{k}"]

    x = F.take(params["wte"], ids, "v") + params["wpe"]                                  # (b, s, d)
    for k in range(blocks):
        params |= {f"W{w}{k}": tg.Variable(f"W{w}{k}", d, h, e) for w in "qkv"}
        params |= {f"c{w}{k}": tg.Variable(f"c{w}{k}", h, e) for w in "qkv"}
        params |= {f"Wo{k}": tg.Variable(f"Wo{k}", h, e, d), f"co{k}": tg.Variable(f"co{k}", d),
                   f"W1{k}": tg.Variable(f"W1{k}", d, f), f"c1{k}": tg.Variable(f"c1{k}", f),
                   f"W2{k}": tg.Variable(f"W2{k}", f, d), f"c2{k}": tg.Variable(f"c2{k}", d)}
        params |= {f"g{k}a": tg.Variable(f"g{k}a", d), f"b{k}a": tg.Variable(f"b{k}a", d),
                   f"g{k}m": tg.Variable(f"g{k}m", d), f"b{k}m": tg.Variable(f"b{k}m", d)}
        a = affine_norm(x, f"{k}a")
        q = a @ params[f"Wq{k}"] + params[f"cq{k}"]                                       # (b, s, h, e)
        kk, vv = ((a @ params[f"W{w}{k}"] + params[f"c{w}{k}"]).rename(s="t") for w in "kv")
        scores = F.where(mask, F.dot(q, kk, "e") / math.sqrt(dim // heads), -1e9)  # (b, s, h, t)
        x = x + F.dot(F.softmax(scores, "t"), vv, "t") @ params[f"Wo{k}"] + params[f"co{k}"]
        m = F.gelu(affine_norm(x, f"{k}m") @ params[f"W1{k}"] + params[f"c1{k}"], approximate=True)
        x = x + m @ params[f"W2{k}"] + params[f"c2{k}"]
    logits = affine_norm(x, "f") @ params["head"]                                         # (b, s, v)
    losses = F.cross_entropy(logits, F.one_hot(targets, "v", v), "v")                    # (b, s)
    loss = F.sum(losses * weight) / (batch * (seq - window))
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad(list(params.values()))])
    digits = rng.integers(0, vocab, (batch, seq))
    values = {"ids": jnp.asarray(digits, jnp.int32), "targets": jnp.asarray(np.roll(digits, -1, 1), jnp.int32),
              "weight": jnp.asarray(np.arange(seq) >= window, jnp.float32)}
    fan = {"d": dim, "f": 4 * dim, "h": dim}
    shapes = {"wte": (vocab, dim), "wpe": (seq, dim), "head": (dim, vocab)}
    for name, var in params.items():
        shape = shapes.get(name) or tuple({"d": dim, "h": heads, "e": dim // heads, "f": 4 * dim}[str(sz)] for _, sz in var.decl)
        scale = fan.get(str(var.decl[0][1]), 1) ** -0.5 if len(shape) > 1 else 0.02
        values[name] = 1.0 + normal(*shape, scale=0.02) if name[0] == "g" else normal(*shape, scale=scale)
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start
    causal = np.tril(np.ones((seq, seq), bool))

    def jax_loss(p, ids, targets, weight):
        def norm(x, k):
            mu = x.mean(-1, keepdims=True)
            return (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * p[f"g{k}"] + p[f"b{k}"]

        x = p["wte"][ids] + p["wpe"]
        for k in range(blocks):
            a = norm(x, f"{k}a")
            q, kk, vv = (jnp.einsum("bsd,dhe->bshe", a, p[f"W{w}{k}"]) + p[f"c{w}{k}"] for w in "qkv")
            scores = jnp.where(causal[:, None, :], jnp.einsum("bshe,bthe->bsht", q, kk) / math.sqrt(dim // heads), -1e9)
            x = x + jnp.einsum("bsht,bthe,hed->bsd", jax.nn.softmax(scores, -1), vv, p[f"Wo{k}"]) + p[f"co{k}"]
            m = jax.nn.gelu(norm(x, f"{k}m") @ p[f"W1{k}"] + p[f"c1{k}"], approximate=True)
            x = x + m @ p[f"W2{k}"] + p[f"c2{k}"]
        logits = norm(x, "f") @ p["head"]
        losses = -jnp.sum(jax.nn.one_hot(targets, vocab) * jax.nn.log_softmax(logits, -1), -1)
        return jnp.sum(losses * weight) / (batch * (seq - window))

    _row(table, f"minGPT ({blocks} blocks, {heads} heads, d={dim}, b={batch}, seq {seq}, vocab {vocab})", fn, values,
         compile_s, jax_loss, list(params), ["ids", "targets", "weight"])


def diffusion_step(table, batch=128, dim=64, steps=100, blocks=3):
    """The peer's DDPM step: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with the schedule and
    a learned time embedding looked up by integer timesteps (``F.take``), 3 residual tanh
    blocks and a readout predicting the noise, mean squared error."""
    b, d, T = tg.symbols("b d T")
    x0, eps, t = tg.Variable("x0", b, d), tg.Variable("eps", b, d), tg.Variable("t", b)
    abar, temb = tg.Variable("abar", T), tg.Variable("temb", T, d)
    Ws = [tg.Variable(f"W{i}", din=d, d=d) for i in range(blocks)]
    bs = [tg.Variable(f"b{i}", d) for i in range(blocks)]
    w_out = tg.Variable("w_out", din=d, d=d)
    picked = F.take(abar, t, "T")                                                         # (b,)
    h = F.sqrt(picked) * x0 + F.sqrt(1 - picked) * eps + F.take(temb, t, "T")
    for W, bias in zip(Ws, bs):
        h = h + F.tanh(h.rename(d="din") @ W + bias)
    loss = F.mean((h.rename(d="din") @ w_out - eps) ** 2)
    params = [temb, *Ws, *bs, w_out]
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad(params)])
    betas = np.linspace(1e-4, 0.02, steps)
    values = {"x0": normal(batch, dim), "eps": normal(batch, dim), "t": jnp.asarray(rng.integers(0, steps, batch), jnp.int32),
              "abar": jnp.asarray(np.cumprod(1 - betas), jnp.float32), "temb": normal(steps, dim, scale=0.1),
              "w_out": normal(dim, dim, scale=dim**-0.5), **{f"W{i}": normal(dim, dim, scale=dim**-0.5) for i in range(blocks)},
              **{f"b{i}": normal(dim, scale=0.1) for i in range(blocks)}}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(p, x0, eps, t, abar):
        ab = abar[t][:, None]
        h = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps + p["temb"][t]
        for i in range(blocks):
            h = h + jnp.tanh(h @ p[f"W{i}"] + p[f"b{i}"])
        return jnp.mean((h @ p["w_out"] - eps) ** 2)

    _row(table, f"diffusion step (b={batch}, d={dim}, {steps} timesteps, {blocks} blocks)", fn, values, compile_s,
         jax_loss, [v.name for v in params], ["x0", "eps", "t", "abar"])


def linear_vae(table, points=1024, dim=16, latent=2, noise=0.1):
    """The peer's linear VAE: encoder mean ``x We``, a per-coordinate posterior std
    ``exp(logs)``, linear decoder, fixed observation noise. The ELBO's reconstruction term is
    an exact ``tg.Expectation`` over the latent; the KL is the closed form. JAX: the same
    ELBO with the expectation worked out by hand, as a JAX user who wants it exact must."""
    b, x_, l = tg.symbols("b x l")
    x, z = tg.Variable("x", b, x_), tg.Variable("z", b, l)
    We, logs, Wd, bd = tg.Variable("We", x_, l), tg.Variable("logs", l), tg.Variable("Wd", l, x_), tg.Variable("bd", x_)
    mu = x @ We                                                                           # (b, l)
    covar = tg.Delta(b, "b", "b2") * (tg.Delta(l, "l", "l2") * F.exp(2 * logs))
    error = x - z @ Wd - bd
    reconstruction = tg.Expectation(-F.sum(error * error) / (2 * noise**2), z, mu=mu, covar=covar,
                                    covar_names={"b": "b2", "l": "l2"})
    kl = 0.5 * F.sum(mu * mu + F.exp(2 * logs) - 2 * logs - 1)
    loss = -(reconstruction - kl) / points
    params = [We, logs, Wd, bd]
    start = time.perf_counter()
    fn = tg.lower([loss, *loss.grad(params)])
    values = {"x": normal(points, latent) @ normal(latent, dim) + 0.1 * normal(points, dim),
              "We": normal(dim, latent, scale=0.05), "logs": normal(latent, scale=0.1),
              "Wd": normal(latent, dim, scale=0.05), "bd": normal(dim, scale=0.1)}
    jax.block_until_ready(fn(values))
    compile_s = time.perf_counter() - start

    def jax_loss(p, x):
        mu = x @ p["We"]
        variance = jnp.exp(2 * p["logs"])
        expected_error = jnp.sum((x - mu @ p["Wd"] - p["bd"]) ** 2) + x.shape[0] * jnp.sum(variance[:, None] * p["Wd"] ** 2)
        kl = 0.5 * jnp.sum(mu**2 + variance - 2 * p["logs"] - 1)
        return (expected_error / (2 * noise**2) + kl) / points

    _row(table, f"linear VAE, exact ELBO by tg.Expectation (n={points}, d={dim}, latent {latent})", fn, values,
         compile_s, jax_loss, [v.name for v in params], ["x"])


def hessian_row(table, name, expr, x, values, jax_f):
    """The Hessian of scalar ``expr`` with respect to ``x``, against ``jax.hessian(jax_f)`` (a
    function of ``x``'s array and the others by keyword)."""
    fn, compile_s, hess = lowered_hessian(expr, x, values, jax_f)
    ratio = _compiled_flops(fn, values) / max(flops(hess.lower(values[x.name]).compile()), 1.0)
    err = max_rel_error(fn(values), hess(values[x.name]))
    table.add(name, *paired_times(lambda: hess(values[x.name]), lambda: fn(values)), compile_s, err, ratio)


def second_order_rows(table, quadratic=512, small=64):
    """The peer's Hessian rows: ``x^T A x`` (the Hessian is ``A + A^T``), logsumexp
    (``diag(p) - p p^T``) and a tanh layer ``sum(tanh(x W1) * W2)`` with respect to ``x``."""
    n, m = tg.symbols("n m")
    x, A = tg.Variable("x", i=n), tg.Variable("A", i=n, j=n)
    hessian_row(table, f"x^T A x Hessian (n={quadratic})", x @ A @ x.rename(i="j"), x,
                {"x": normal(quadratic), "A": normal(quadratic, quadratic)}, lambda x, A: x @ A @ x)
    hessian_row(table, f"logsumexp Hessian (n={small})", F.logsumexp(x, "i"), x, {"x": normal(small)},
                lambda x: jax.scipy.special.logsumexp(x))
    W1, W2 = tg.Variable("W1", i=n, j=m), tg.Variable("W2", j=m)
    hessian_row(table, f"tanh-layer Hessian (n={small}, m={small})", F.sum(F.tanh(x @ W1) * W2), x,
                {"x": normal(small), "W1": normal(small, small, scale=small**-0.5), "W2": normal(small)},
                lambda x, W1, W2: jnp.sum(jnp.tanh(x @ W1) * W2))


def main(quick: bool = False):
    table = Table("Peer workloads: tgjax vs the JAX a user writes", "jax", flops=True, width=62)
    table.header()
    embedding_model(table, **({"batch": 64, "vocab": 1000} if quick else {}))
    pooled_conv_net(table, **({"batch": 8} if quick else {}))
    residual_mlp(table, **({"batch": 32} if quick else {}))
    rnn(table, **({"batch": 8, "seq": 4} if quick else {}))
    gp_marginal_likelihood(table, **({"points": 32} if quick else {}))
    min_gpt(table, **({"batch": 8} if quick else {}))
    diffusion_step(table, **({"batch": 16} if quick else {}))
    linear_vae(table, **({"points": 64} if quick else {}))
    newton_row(table, **({"batch": 256, "d": 32} if quick else {}))
    second_order_rows(table, **({"quadratic": 64, "small": 16} if quick else {}))
    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
