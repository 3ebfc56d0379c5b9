"""What the long symbolic work is doing: each stage (derivative, simplify, plan, compile) and
its time, reported to ``logging.getLogger("tgjax")`` at DEBUG level.

    import logging; logging.basicConfig(level=logging.DEBUG)   # or logging.getLogger("tgjax").setLevel(...)
"""

from __future__ import annotations

import contextlib
import logging
import time

logger = logging.getLogger("tgjax")


@contextlib.contextmanager
def stage(name: str, what: str = ""):
    """Log ``name`` (and ``what`` it works on) with the seconds the block took, at DEBUG level."""
    if not logger.isEnabledFor(logging.DEBUG):
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        logger.debug("%s%s: %.3f s", name, f" of {what}" if what else "", time.perf_counter() - start)
