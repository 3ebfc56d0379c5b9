"""Shared timing code for the benchmarks: medians after warm-up, same arrays for both sides."""

from __future__ import annotations

import math
import platform
import statistics
import time

import jax
import numpy as np


def median_time(fn, *args, repeats: int = 30, warmup: int = 3, **kwargs) -> float:
    """Median wall time of ``fn(*args, **kwargs)`` in seconds, blocking on the result."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args, **kwargs))
    times = []
    budget = time.perf_counter() + 5.0  # keep slow cases bounded
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args, **kwargs))
        times.append(time.perf_counter() - start)
        if time.perf_counter() > budget and len(times) >= 5:
            break
    return statistics.median(times)


def max_rel_error(ours, theirs) -> float:
    ours, theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
    worst = 0.0
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(np.max(np.abs(b)), 1e-30)
        worst = max(worst, float(np.max(np.abs(a - b)) / scale))
    return worst


def machine() -> str:
    device = jax.devices()[0]
    return f"{platform.machine()} {device.platform} ({device.device_kind}), jax {jax.__version__}"


class Table:
    def __init__(self, title: str, baseline: str):
        self.title = title
        self.baseline = baseline
        self.rows = []

    def add(self, case: str, jax_s: float, tg_s: float, compile_s: float, err: float):
        self.rows.append((case, jax_s, tg_s, jax_s / tg_s, compile_s, err))
        print(f"{case:<44} {jax_s * 1e3:10.3f} {tg_s * 1e3:10.3f} {jax_s / tg_s:8.2f}x {compile_s:9.2f} {err:10.1e}", flush=True)

    def header(self):
        print(f"# {self.title} on {machine()}")
        print(f"{'case':<44} {self.baseline + ' ms':>10} {'tgjax ms':>10} {'speedup':>9} {'sym+jit s':>9} {'max rel err':>10}")

    def summary(self):
        speedups = [r[3] for r in self.rows]
        geo = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
        print(f"geometric-mean speedup {geo:.2f}x, worst {min(speedups):.2f}x, "
              f"worst sym+jit {max(r[4] for r in self.rows):.2f} s")
        return geo
