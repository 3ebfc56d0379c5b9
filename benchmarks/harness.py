"""Shared timing code for the benchmarks: medians after warm-up, same arrays for both sides."""

from __future__ import annotations

import contextlib
import math
import platform
import signal
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


def paired_times(baseline, ours, blocks: int = 20, block: int = 10, warmup: int = 5,
                 budget_s: float = 10.0, warmup_s: float = 1.0) -> tuple[float, float]:
    """Median wall times (seconds) of ``baseline()`` and ``ours()``, run in alternating blocks.

    The machines these run on are shared: a burst of other work that lands on
    one side's calls skews the ratio by tens of percent when each side is timed
    in one stretch. Alternating blocks of ``block`` calls puts both sides under
    the same load, while the calls within a block still follow each other as
    in a training loop (caches warm with that side's arrays).

    Both sides first run, alternating, ``warmup`` calls each and for at least
    ``warmup_s`` seconds in all: a program of a few hundred small kernels runs
    1.5x slower in its first thousand calls on XLA:CPU than after (both
    sides do; a two-block transformer's step measured 1.25x JAX's after 5
    warm-up calls, 1.06x after a second).
    """
    deadline = time.perf_counter() + warmup_s
    k = 0
    while k < warmup or time.perf_counter() < deadline:
        jax.block_until_ready(baseline())
        jax.block_until_ready(ours())
        k += 1
    first, second = [], []
    sides = ((baseline, first), (ours, second))
    deadline = time.perf_counter() + budget_s  # keep slow cases bounded
    for k in range(blocks):
        for fn, times in sides if k % 2 else sides[::-1]:
            for _ in range(block):
                start = time.perf_counter()
                jax.block_until_ready(fn())
                times.append(time.perf_counter() - start)
        if time.perf_counter() > deadline and k >= 1:
            break
    return statistics.median(first), statistics.median(second)


def max_rel_error(ours, theirs) -> float:
    """The largest error of an output relative to that output's largest entry. An output that
    is zero up to rounding (under 1e-6 of the largest entry of all outputs: the gradient of a
    key's bias, which a softmax over keys cancels, 1e-10 from both sides) is measured against
    1e-4 of that largest entry instead."""
    ours, theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
    largest = max((float(np.max(np.abs(np.asarray(b, np.float64)), initial=0.0)) for b in theirs), default=0.0)
    worst = 0.0
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = np.max(np.abs(b), initial=0.0)
        scale = max(scale if scale >= 1e-6 * largest else 1e-4 * largest, 1e-30)
        worst = max(worst, float(np.max(np.abs(a - b)) / scale))
    return worst


def flops(compiled) -> float:
    """XLA's FLOP count of a compiled program (``jax.stages.Compiled``)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per device program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


class CaseTimeout(BaseException):
    """Raised by ``time_limit``; a BaseException so library ``except Exception`` blocks cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Interrupt the block with ``CaseTimeout`` after ``seconds`` (main thread, POSIX only).

    The signal is delivered between Python bytecodes: a long call into C++ (an
    XLA compile) is interrupted only when it returns. It fires again every half
    second until the block exits, in case a callback (a gc hook) swallowed it.
    """
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise CaseTimeout(f"over the {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def machine() -> str:
    device = jax.devices()[0]
    return f"{platform.machine()} {device.platform} ({device.device_kind}), jax {jax.__version__}"


def _geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


class Table:
    """Rows of baseline time, tgjax time, speedup (baseline / tgjax), sym+jit seconds and error.

    With ``flops=True`` two more columns: ``tg/jax`` (tgjax time / baseline
    time) and ``flops tg/jax`` (XLA cost-analysis FLOPs of tgjax's compiled
    program over the baseline's). Rows may be untimed (``None`` times, e.g.
    a program too costly to run) or errors (``error``).
    """

    def __init__(self, title: str, baseline: str, flops: bool = False, width: int = 44):
        self.title = title
        self.baseline = baseline
        self.flops = flops
        self.width = width
        self.rows = []
        self.failed = []  # (case, reason): rows without a time

    def add(self, case: str, jax_s: float | None, tg_s: float | None, compile_s: float | None, err: float | None,
            flop_ratio: float | None = None, note: str = ""):
        timed = jax_s is not None and tg_s is not None
        speedup = jax_s / tg_s if timed else None
        if timed:
            self.rows.append((case, jax_s, tg_s, speedup, compile_s, err))
        else:
            self.failed.append((case, note or "not timed"))

        def num(x, fmt, width):
            return f"{format(x, fmt):>{width}}" if x is not None else f"{'-':>{width}}"

        line = (f"{case:<{self.width}} {num(jax_s and jax_s * 1e3, '.3f', 10)} {num(tg_s and tg_s * 1e3, '.3f', 10)} "
                f"{num(speedup, '.2f', 8)}{'x' if timed else ' '}")
        if self.flops:
            line += f" {num(tg_s / jax_s if timed else None, '.2f', 7)} {num(flop_ratio, '.2f', 12)}"
        line += f" {num(compile_s, '.2f', 9)} {num(err, '.1e', 11)}"
        if note:
            line += f"  {note}"
        print(line, flush=True)

    def error(self, case: str, message: str, compile_s: float | None = None, flop_ratio: float | None = None):
        """An error row: the case failed (an exception, a time limit, a program too big)."""
        message = " ".join(str(message).split())
        self.add(case, None, None, compile_s, None, flop_ratio, note=f"ERROR {message[:160]}")

    def header(self):
        print(f"# {self.title} on {machine()}")
        line = f"{'case':<{self.width}} {self.baseline + ' ms':>10} {'tgjax ms':>10} {'speedup':>9}"
        if self.flops:
            line += f" {'tg/jax':>7} {'flops tg/jax':>12}"
        print(line + f" {'sym+jit s':>9} {'max rel err':>11}", flush=True)

    def summary(self):
        if not self.rows:
            print(f"no case was timed; {len(self.failed)} failed or untimed", flush=True)
            return float("nan")
        speedups = [r[3] for r in self.rows]
        geo = _geomean(speedups)
        print(f"geometric-mean speedup {geo:.2f}x, worst {min(speedups):.2f}x; "
              f"time tgjax/{self.baseline}: geometric mean {1 / geo:.2f}, worst {1 / min(speedups):.2f}; "
              f"worst sym+jit {max(r[4] for r in self.rows):.2f} s"
              + (f" (over {len(self.rows)} timed rows)" if self.failed else ""), flush=True)
        if self.failed:
            print(f"{len(self.failed)} row(s) not timed (they fail any target): "
                  + "; ".join(case for case, _ in self.failed), flush=True)
        return geo
