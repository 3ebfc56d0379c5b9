"""The few helpers that generated programs call besides jax.numpy and lax.

They build structural tensors with the cheapest XLA ops: ``delta`` makes an
output identity from an iota comparison (never a dense constant), and
``broadcast_axis`` / ``embed_diagonal`` give a contraction result the output
axes that no operand carried. ``relaid`` keeps XLA:CPU from a slow loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax



def delta(n: int, k: int, dtype):
    """The copy tensor with ``k`` edges of size ``n`` (ones for k=1, identity for k=2)."""
    if k == 0:
        return jnp.asarray(n, dtype)
    if k == 1:
        return jnp.ones((n,), dtype)
    first = lax.broadcasted_iota(jnp.int32, (n,) * k, 0)
    same = jnp.ones((n,) * k, bool)
    for axis in range(1, k):
        same = same & (lax.broadcasted_iota(jnp.int32, (n,) * k, axis) == first)
    return same.astype(dtype)


def einsum(equation: str, *operands):
    """``jnp.einsum(equation, *operands)`` for one step of a planned contraction, in lax directly.

    The steps of a generated program contract one or two operands, each
    index once per operand. ``jnp.einsum`` plans a path and traces a jitted
    function of its own for every call: about a millisecond of tracing a
    step, 60% of a 200-layer MLP's trace. This traces the operations
    ``jnp.einsum`` would (a sum of the indices one side alone carries, one
    ``dot_general`` with the operands in the order it picks, a transpose where
    the result is in another order), with two differences, both for XLA:CPU.
    The summed indices are listed in the order the first operand has them,
    where ``jnp.einsum`` sorts them by letter: XLA:CPU transposes an operand
    whose summed axes are listed out of its own order (a 4096 -> 16
    tensor-train layer copied its whole batch of inputs: 0.55 ms against
    1.48 ms). And the operands go in the order XLA:CPU multiplies faster
    (``_contracted``). Other equations, and arrays that are not floating
    point, go to ``jnp.einsum``.
    """
    ins, out = equation.split("->")
    terms = ins.split(",")
    dtype = jnp.result_type(*operands)
    if len(terms) > 2 or any(len(set(t)) != len(t) for t in terms) or not jnp.issubdtype(dtype, jnp.inexact):
        return jnp.einsum(equation, *operands)
    arrays = [None] * len(terms)
    for k in reversed(range(len(terms))):  # jnp.einsum's order, so that the traces match
        x, names = operands[k], terms[k]
        if x.dtype != dtype:
            x = lax.convert_element_type(x, dtype)
        others = out + "".join(terms[:k] + terms[k + 1:])
        alone = tuple(names.index(ch) for ch in sorted(names) if ch not in others)
        if alone:
            x = lax.reduce_sum(x, alone)
        arrays[k] = (x, "".join(ch for ch in names if ch in others))
    if len(arrays) == 1:
        (x, names), = arrays
    else:
        x, names = _contracted(*arrays, out)
    if names != out:
        x = lax.transpose(x, tuple(map(names.index, out)))
    return x


def _contracted(a_side, b_side, out: str):
    """The ``dot_general`` of two operands (each an array and its index letters), and its
    result's letters: the indices both carry and ``out`` keeps first, then each side's own.

    Which operand goes first is ``jnp.einsum``'s choice (``a`` where that gives ``out``'s
    order, else ``b``), except where the other order is faster on CPU (``_swapped_faster``).
    The order is the same on every backend (choosing per platform would trace both dots
    into every program); only the copy that keeps XLA from undoing it is CPU's.
    """
    (a, a_names), (b, b_names) = a_side, b_side
    summed = [ch for ch in a_names if ch in b_names and ch not in out]  # in a's order (einsum's docstring)
    batch = [ch for ch in out if ch in a_names and ch in b_names]

    def letters(first_names, second_names) -> str:
        return "".join(batch) + "".join(ch for ch in first_names + second_names if ch not in summed and ch not in batch)

    def dot(first, first_names, second, second_names):
        dims = [(tuple(map(names.index, summed)), tuple(map(names.index, batch)))
                for names in (first_names, second_names)]
        x = lax.dot_general(first, second, ((dims[0][0], dims[1][0]), (dims[0][1], dims[1][1])),
                            preferred_element_type=first.dtype)
        return x, letters(first_names, second_names)

    first, second = ((a, a_names), (b, b_names)) if letters(a_names, b_names) == out else ((b, b_names), (a, a_names))
    in_order = letters(first[1], second[1]) == out
    if not _swapped_faster(*first, *second, summed, batch, transposed_back=in_order):
        return dot(*first, *second)
    x, names = dot(*second, *first)
    if in_order and names != out:
        # XLA folds a transpose that only swaps the two sides' axes back into the dot, which
        # undoes the swap: on CPU the swapped result is written out first.
        x = lax.platform_dependent(x, cpu=lax.optimization_barrier, default=lambda y: y)
    return x, names


# XLA:CPU runs a dot slowly whose first operand has summed axes before the axes it keeps,
# and the more so the fewer entries the second operand keeps (a weight's gradient x^T g
# with x[b, i], g[b, o], b = 256: i = 4096, o = 16 took 1.9 ms, 0.22 ms with g first).
# Measured on 2-core x86, 256 <= b <= 2048 (``_swapped_faster``): with the second operand's
# summed axes first too, going second-first is 1.1-8.5x faster where that operand keeps 64
# entries or fewer, and up to 1.4x slower where it keeps 256; with the second in the fast
# layout, 1.1-9.3x faster, except where the result (written out, then transposed back)
# has millions of entries (4096 x 784: 1.7x slower).
_SMALL_SECOND = 64
_LARGE_RESULT = 1 << 20


def _swapped_faster(first, first_names: str, second, second_names: str, summed, batch, transposed_back: bool) -> bool:
    """Whether ``dot_general(second, first)`` runs faster than ``dot_general(first, second)`` on
    CPU (the measurements above), the result transposed back to the first order where
    ``transposed_back``."""
    first_kept, first_slow = _layout(first, first_names, summed, batch)
    second_kept, second_slow = _layout(second, second_names, summed, batch)
    if not first_slow:
        return False
    if second_kept == 1:
        return False  # a matrix times a vector runs alike either way
    if second_slow:
        return second_kept <= _SMALL_SECOND and second_kept < first_kept
    return not transposed_back or first_kept * second_kept <= _LARGE_RESULT


def _layout(x, names: str, summed, batch) -> tuple[int, bool]:
    """The entries (per batch) of the axes ``x`` keeps in a dot, and whether it has a summed
    axis before one of them."""
    kept = [k for k, ch in enumerate(names) if ch not in summed and ch not in batch]
    first_summed = min((k for k, ch in enumerate(names) if ch in summed), default=len(names))
    n = 1
    for k in kept:
        n *= x.shape[k]
    return n, bool(kept) and first_summed < kept[-1]


def broadcast_axis(x, axis: int, n: int):
    """``x`` with a new axis of size ``n`` at ``axis``: a broadcast, not a copy, under jit."""
    x = jnp.expand_dims(x, axis)
    shape = list(x.shape)
    shape[axis] = n
    return jnp.broadcast_to(x, shape)


def embed_diagonal(x, axis: int, n: int):
    """``y[..., a, b, ...] = x[..., a, ...] * (a == b)``: a new axis after ``axis`` on the diagonal."""
    eye = delta(n, 2, x.dtype).reshape((1,) * axis + (n, n) + (1,) * (x.ndim - axis - 1))
    return jnp.expand_dims(x, axis + 1) * eye


# Below this many entries (512 x 512) the slow loop ``relaid`` avoids costs
# less than writing the transposed copy.
_RELAID_MIN_ENTRIES = 1 << 18


def relaid(x, perm):
    """``x.transpose(perm)`` written out to an array of its own, for a loop that also reads ``x`` in place.

    XLA fuses a transpose into the loop that consumes it. XLA:CPU tiles such a
    loop only when every array in it is read in one layout; one that reads
    ``x`` both in place and transposed runs element by element, 10 to 40 times
    slower than a plain addition (``A + A.T``, the symmetric part of a matrix
    and so of many Hessians: 6.5 ms for a 1024 x 1024 ``A``). Written out
    first, by a kernel that only transposes, the same sum takes 0.9 ms.

    XLA removes a copy or an optimization barrier between the two, but not a
    conditional: on CPU the transposed array is both branches of one (so it is
    the same whichever runs; the predicate is any runtime scalar), flattened so
    that the branch must write it in the new order rather than hand over ``x``
    under another layout. Other backends tile the fused transpose themselves,
    and small arrays gain nothing: they get the plain transpose.
    """
    perm = tuple(perm)
    if x.size < _RELAID_MIN_ENTRIES:
        return x.transpose(perm)
    return _written_out(x, lambda y: y.transpose(perm), tuple(x.shape[k] for k in perm))


def materialized(x):
    """``x``, written out to an array of its own on CPU, where XLA would otherwise recompute it.

    XLA fuses an elementwise producer into each of its consumers, and on CPU it
    does so along a whole chain of elementwise statements: a residual stream
    through layer norms (centre, scale, add the next block's output) was
    recomputed from the first block in every consumer of every block's
    activations, a 12-block post-layer-norm transformer's loss and gradient
    1.3-1.4x JAX's time (JAX's own program does the same). The generated
    program passes the end of a long elementwise chain that several statements
    read through this (``steps.mark_long_chains``): 0.7x JAX's time.
    A conditional (``relaid``) is what XLA:CPU does not fuse through.
    """
    if x.size == 0:
        return x
    return _written_out(x, lambda y: y, x.shape)


def _written_out(x, fn, shape):
    """``fn(x)`` (of ``shape``) computed in both branches of a conditional on CPU, so that XLA
    writes it out rather than fuse it into its consumers; ``fn(x)`` on other backends."""
    def flat(y):
        return fn(y).reshape(-1)

    def written_out(y):
        # The predicate must be a runtime value, or XLA inlines the branch, and must not
        # read y: a predicate computed from y's first entry had XLA compute the chain
        # that ends in y for it too, and split the chain where the two shared an
        # expensive step (an erfc's divisions and exponential became three more kernels,
        # and the erfc's own kernel was then costly enough to be split across threads).
        any_runtime_value = lax.optimization_barrier(jnp.zeros((), jnp.int32)) != 0
        return lax.cond(any_runtime_value, flat, flat, y).reshape(shape)

    return lax.platform_dependent(x, cpu=written_out, default=fn)


# Up to this many slices a window is a stack of static slices (cheap, fuses
# well); beyond it one gather with an iota index is smaller to compile.
_MAX_UNROLLED_SLICES = 32


def window(x, axis: int, pad: int, start: int, step: int, count: int, length: int):
    """Windows of ``x`` along ``axis``: ``y[..., p, q, ...] = xp[..., start + step * p + q, ...]``.

    ``xp`` is ``x`` with ``pad`` zeros at both ends of ``axis``; ``p < count``
    and ``q < length`` replace that axis. This is how a convolution tensor is
    contracted without building it (an im2col view of the data, or of the
    padded cotangent for the transposed convolution).
    """
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (pad, pad)
        x = jnp.pad(x, widths)
    if count <= _MAX_UNROLLED_SLICES:
        slices = [lax.slice_in_dim(x, start + step * p, start + step * p + length, axis=axis) for p in range(count)]
        return jnp.stack(slices, axis=axis)
    index = start + step * lax.broadcasted_iota(jnp.int32, (count, length), 0) + lax.broadcasted_iota(jnp.int32, (count, length), 1)
    # every index is in bounds: "clip" only spares the out-of-bounds fill mask
    return jnp.take(x, index, axis=axis, mode="clip")


def windows(x, axis: int, count: int, window: int):
    """The first ``count * window`` entries of ``x`` along ``axis`` as ``count`` windows of
    ``window`` entries (two axes in its place): a pooling's windows, a view XLA fuses into
    the reduction that reads it, where a gather would copy them."""
    x = lax.slice_in_dim(x, 0, count * window, axis=axis)
    return x.reshape(x.shape[:axis] + (count, window) + x.shape[axis + 1:])


def conv_indicator(n: int, k: int, m: int, dtype):
    """The dense convolution tensor ``[i = j + o]`` of shape (n, k, m); only for a
    convolution that no operand touches (an output, or one contracted with nothing)."""
    i = lax.broadcasted_iota(jnp.int32, (n, k, m), 0)
    j = lax.broadcasted_iota(jnp.int32, (n, k, m), 1)
    o = lax.broadcasted_iota(jnp.int32, (n, k, m), 2)
    return (i == j + o).astype(dtype)


def _to_end(x, rows: int, cols: int):
    return jnp.moveaxis(x, (rows, cols), (-2, -1))


def matrix_inverse(x, rows: int, cols: int):
    """The inverse of the matrices laid out on axes (rows, cols), other axes batched."""
    return jnp.moveaxis(jnp.linalg.inv(_to_end(x, rows, cols)), (-2, -1), (rows, cols))


def matrix_det(x, rows: int, cols: int):
    """The determinant of the matrices on axes (rows, cols), other axes batched."""
    return jnp.linalg.det(_to_end(x, rows, cols))


def matrix_logdet(x, rows: int, cols: int):
    """log(det(x)) through slogdet: exact for large or tiny determinants; nan where det < 0, as jnp.log."""
    sign, logabs = jnp.linalg.slogdet(_to_end(x, rows, cols))
    return jnp.where(sign > 0, logabs, jnp.where(sign == 0, -jnp.inf, jnp.nan))


def softmax_logsumexp(x, axis):
    """``(softmax(x), logsumexp(x))`` along ``axis`` (an int or a tuple of them), sharing one exponential per entry.

    A program that needs both (a log-softmax loss and its gradient) would
    otherwise compute every exponential twice.
    """
    top = jnp.max(x, axis=axis, keepdims=True)
    top = lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0))
    shifted = jnp.exp(x - top)
    total = jnp.sum(shifted, axis=axis, keepdims=True)
    return shifted / total, jnp.squeeze(jnp.log(total) + top, axis)


# The names generated programs use besides their inputs and the modules.
HELPERS = {
    "einsum": einsum,
    "matrix_inverse": matrix_inverse,
    "matrix_det": matrix_det,
    "matrix_logdet": matrix_logdet,
    "softmax_logsumexp": softmax_logsumexp,
    "delta": delta,
    "broadcast_axis": broadcast_axis,
    "embed_diagonal": embed_diagonal,
    "relaid": relaid,
    "materialized": materialized,
    "window": window,
    "windows": windows,
    "conv_indicator": conv_indicator,
}
MODULES = {"jax": jax, "jnp": jnp, "lax": lax}


@functools.lru_cache(maxsize=None)
def elementwise_callable(fn, arity: int):
    """A callable on arrays for an elementwise function object: its own Python
    callable, or its JAX source compiled once."""
    if fn.python is not None:
        return fn.python
    source = fn.source(*(f"xs[{k}]" for k in range(arity)))
    compiled = eval(f"lambda dtype, *xs: {source}", {**MODULES, **HELPERS})  # noqa: S307  (our own source)
    return lambda *xs: compiled(jnp.result_type(*xs), *xs)


@functools.lru_cache(maxsize=None)
def along_callable(fn, positions: tuple):
    """A callable on arrays for a function along the axes at ``positions``, from its JAX source."""
    return eval(f"lambda x: {fn.source('x', positions)}", {**MODULES, **HELPERS})  # noqa: S307  (our own source)
