"""The peer suite's workloads (issue 30), written as their users write them, against the JAX
a JAX user writes, float32, one process: loss and all gradients.

Rows so far:

- an embedding model: token ids looked up in a table (``F.take``, a gather;
  its gradient a scatter-add), a tanh layer, cross-entropy against integer
  labels (``F.one_hot``), against ``table[ids]`` and ``jax.nn.one_hot`` under
  ``jax.value_and_grad``.

Columns as in gradients.py: times, ``tg/jax`` (tgjax time / JAX time) and
``flops tg/jax`` (XLA cost-analysis FLOPs of the compiled programs).

Run: python benchmarks/workloads.py [--quick]
"""

from __future__ import annotations

import sys
import time

import jax

jax.config.update("jax_enable_x64", False)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import tgjax as tg  # noqa: E402
import tgjax.functions as F  # noqa: E402
from harness import Table, flops, max_rel_error, paired_times  # noqa: E402

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

    vg = jax.jit(jax.value_and_grad(jax_loss))
    params = {"E": values["E"], "W": values["W"]}

    def jax_all():
        value, grads = vg(params, values["ids"], values["labels"])
        return value, grads["E"], grads["W"]

    arrays, env = fn._bind(values, {})
    source, inputs, jitted = fn._program(env)
    by_name = dict(zip(fn.variables, arrays))
    ours_flops = flops(jitted.lower(*[by_name[n] for n in inputs]).compile())
    ratio = ours_flops / max(flops(vg.lower(params, values["ids"], values["labels"]).compile()), 1.0)
    err = max_rel_error(fn(values), jax_all())
    table.add(f"embedding model (b={batch}, seq {seq}, vocab {vocab:,}, d={dim}, {classes} classes)",
              *paired_times(jax_all, lambda: fn(values)), compile_s, err, ratio)


def main(quick: bool = False):
    table = Table("Peer workloads: tgjax vs the JAX a user writes", "jax", flops=True, width=62)
    table.header()
    embedding_model(table, **({"batch": 64, "vocab": 1000} if quick else {}))
    return table.summary()


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
