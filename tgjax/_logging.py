"""What the long symbolic work is doing: each stage (derivative, simplify, plan, compile) and
its time, reported to ``logging.getLogger("tgjax")``.

A stage that runs past ``SLOW_S`` seconds says so at INFO level while it is still
running (what it is doing, on what size), and again with its time when it ends;
shorter stages report at DEBUG level only.

    import logging; logging.basicConfig(level=logging.INFO)   # or logging.getLogger("tgjax").setLevel(...)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter

logger = logging.getLogger("tgjax")

# Past this, a stage is worth telling a user about (a first result that takes
# longer than this is what they wait on).
SLOW_S = 2.0
# Items a log line lists before it summarises the rest.
LISTED = 6


@contextlib.contextmanager
def stage(name: str, what: str = ""):
    """Log ``name`` (and ``what`` it works on) with the seconds the block took: at INFO when past
    ``SLOW_S`` (also once while it is still running), at DEBUG otherwise."""
    about = f"{name}{f' of {what}' if what else ''}"
    timer = None
    if logger.isEnabledFor(logging.INFO):
        timer = threading.Timer(SLOW_S, logger.info, ("%s: still running after %.0f s", about, SLOW_S))
        timer.daemon = True
        timer.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()
        elapsed = time.perf_counter() - start
        level = logging.INFO if elapsed > SLOW_S else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "%s: %.3f s", about, elapsed)


def listed(items, limit: int = LISTED) -> str:
    """``items`` as text, the first ``limit`` of them and then how many there are in all."""
    items = [str(item) for item in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def shapes_text(shapes) -> str:
    """Array shapes summarised: ``3 arrays: 2 of (32, 32), 1 of (16, 32)``."""
    counts = Counter(tuple(s) for s in shapes)
    parts = [f"{n} of {shape}" for shape, n in counts.most_common()]
    return f"{sum(counts.values())} array(s): {listed(parts)}"
