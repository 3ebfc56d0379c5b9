"""Expressions of any depth: passes that recurse are retried on a thread with a large stack.

The passes are written as recursive singledispatch functions, one rule per
node type, because that is how a reader follows them. Python stops recursion
at about a thousand frames, so an expression some hundreds of levels deep
(a 300-layer tanh chain, a sum of 400 terms built left to right) would raise
``RecursionError``. ``deep`` runs the entry point as usual, and only when the
recursion limit is hit runs it again on a worker thread whose stack is large
enough for millions of frames. Passes are pure (their only state is caches of
values already computed correctly), so running one again is safe, and
shallow expressions never pay for the thread. Only symbolic passes run
there: JAX's configuration contexts are per thread, so nothing that
evaluates arrays is decorated.
"""

from __future__ import annotations

import functools
import sys
import threading

# Address space for the worker's stack; memory is used only as frames touch it.
_STACK_BYTES = 1 << 30
_RECURSION_LIMIT = 2_000_000
# Passes take a few frames per level: deeper than this, go straight to the
# worker rather than fail first (the retry stays for what depth misses).
_SURELY_TOO_DEEP = 100
_state = threading.local()


def deep(fn):
    """Decorate an entry point of a recursive pass so that no expression is too deep for it."""

    @functools.wraps(fn)
    def entry(*args, **kwargs):
        # Only the outermost entry retries: an inner one, started near the
        # limit by its caller, would fail and spawn a thread again and again.
        if getattr(_state, "active", False):
            return fn(*args, **kwargs)
        if _depth(args) > _SURELY_TOO_DEEP:
            return _on_deep_stack(fn, args, kwargs)
        _state.active = True
        try:
            return fn(*args, **kwargs)
        except RecursionError:
            pass
        finally:
            _state.active = False
        return _on_deep_stack(fn, args, kwargs)

    return entry


def _depth(args) -> int:
    """The depth of the deepest expression among ``args`` (also inside lists and tuples)."""
    deepest = 0
    for a in args:
        for b in a if isinstance(a, (list, tuple)) else (a,):
            depth = getattr(b, "_depth", 0)
            if isinstance(depth, int):
                deepest = max(deepest, depth)
    return deepest


# The recursion limit and the stack size for new threads are process-wide:
# the limit is raised while any worker runs and put back when the last one
# ends; the stack size is set only around starting a worker (it applies to
# threads started while it is set).
_settings_lock = threading.Lock()
_workers = 0
_saved_limit = 0


def _on_deep_stack(fn, args, kwargs):
    global _workers, _saved_limit
    outcome: dict = {}

    def run():
        _state.active = True
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001  (re-raised in the caller's thread)
            outcome["error"] = error

    with _settings_lock:
        if _workers == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, _RECURSION_LIMIT))
        _workers += 1
        previous_stack = threading.stack_size(_STACK_BYTES)
        try:
            worker = threading.Thread(target=run, name="tgjax-deep")
            worker.start()
        finally:
            threading.stack_size(previous_stack)
    try:
        worker.join()
    finally:
        with _settings_lock:
            _workers -= 1
            if _workers == 0:
                sys.setrecursionlimit(_saved_limit)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
