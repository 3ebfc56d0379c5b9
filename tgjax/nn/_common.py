"""What the tensorised layers share: reading modes, ranks and dtypes, the initial scale,
the lowered forward network per shape, and the input check."""

from __future__ import annotations

import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._ir.nodes import Expr
from .._lower.api import Lowered


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def balanced_factors(n: int, parts: int) -> tuple:
    """``n`` as a product of ``parts`` factors as equal as its prime factors allow, largest first
    (``256, 3 -> (8, 8, 4)``; a prime leaves ones: ``7, 2 -> (7, 1)``)."""
    primes, rest, p = [], n, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * parts
    for prime in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= prime
    return tuple(sorted(factors, reverse=True))


def mode_sequence(value):
    """``value`` as a non-empty tuple of positive ints, or None where it is not one."""
    try:
        modes = tuple(value)
    except TypeError:
        return None
    return modes if modes and all(is_int(m) and m > 0 for m in modes) else None


def read_modes(in_modes, out_modes, layer: str) -> tuple:
    """``(in_modes, out_modes)`` as tuples of positive ints of one length; an int is split into
    as many balanced factors as the other has modes (both ints: three each)."""
    def checked(value, name):
        if is_int(value):
            if value <= 0:
                raise ValueError(f"{layer}: {name} must be positive; got {value}.")
            return value
        modes = mode_sequence(value)
        if modes is None:
            raise ValueError(
                f"{layer}: {name} must be a positive int or a non-empty sequence of positive ints, "
                f"e.g. (4, 8, 8) for 256; got {value!r}."
            )
        return modes

    ins, outs = checked(in_modes, "in_modes"), checked(out_modes, "out_modes")
    if is_int(ins) and is_int(outs):
        ins, outs = balanced_factors(ins, 3), balanced_factors(outs, 3)
    elif is_int(ins):
        ins = balanced_factors(ins, len(outs))
    elif is_int(outs):
        outs = balanced_factors(outs, len(ins))
    if len(ins) != len(outs):
        raise ValueError(
            f"{layer}: in_modes and out_modes need as many modes each (one pair per factor); "
            f"got {len(ins)} in_modes {ins} and {len(outs)} out_modes {outs}. Give an int for one of them "
            f"to have it split to match."
        )
    return ins, outs


def read_dtype(dtype, layer: str):
    """The parameter dtype: JAX's default float, or a floating dtype given."""
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{layer}: dtype must be a floating dtype such as jnp.float32; got {dtype}.")
    return dtype


def read_positive_ints(value, count: int, what: str, layer: str) -> tuple:
    """``count`` positive ints from one int or a sequence of exactly ``count``."""
    values = (value,) * count if is_int(value) else None
    if values is None:
        try:
            values = tuple(value)
        except TypeError:
            values = None
    if values is None or len(values) != count or not all(is_int(r) and r > 0 for r in values):
        raise ValueError(f"{layer}: {what} must be one positive int or {count} positive ints; got {value!r}.")
    return values


def clipped(ranks: tuple, limits: tuple, layer: str) -> tuple:
    """``ranks`` no larger than ``limits`` (what the modes allow), with a warning where one was clipped."""
    out = tuple(min(r, m) for r, m in zip(ranks, limits))
    if out != ranks:
        warnings.warn(
            f"{layer}: ranks {ranks} exceed what the modes allow ({limits}); using {out}.", UserWarning, stacklevel=3
        )
    return out


def factor_std(in_features: int, terms: int, factors: int) -> float:
    """The std of ``factors`` independent normal factors whose products, summed over ``terms``,
    give each weight entry the variance of ``eqx.nn.Linear``'s initial weight: uniform
    ``(-1/sqrt(in), 1/sqrt(in))``, variance ``1 / (3 in)``. ``terms * std^(2 factors) = 1 / (3 in)``."""
    return (1.0 / (3.0 * in_features * terms)) ** (1.0 / (2 * factors))


def initial_bias(key, out_features: int, in_features: int, dtype):
    limit = 1.0 / math.sqrt(in_features)
    return jax.random.uniform(key, (out_features,), dtype, -limit, limit)


def one_example(x, in_features: int, in_modes: tuple, layer: str) -> jax.Array:
    """``x`` checked to be one example of ``in_features`` entries, reshaped to ``in_modes``."""
    x = jnp.asarray(x)
    if x.shape != (in_features,):
        raise ValueError(
            f"{layer}: expected one example of shape ({in_features},) (in_modes {in_modes}); got shape {x.shape}. "
            f"Map over a batch with jax.vmap(layer)."
        )
    return x.reshape(in_modes)


@functools.lru_cache(maxsize=None)
def lowered(build, *shape):
    """``tg.lower`` of the network ``build(*shape)``, once per shape, with its input ``x`` mapped:
    the contraction order is planned for a batch under ``jax.vmap`` (factors combined once
    per batch where that pays); the dense weight is built only where it has no more entries
    than the batch's input (``contract.mapped_order``)."""
    network = build(*shape)
    assert isinstance(network, Expr)
    return Lowered(network, mapped=("x",))


class FactoredLinear:
    """What the factored linear layers share, mixed into each ``eqx.Module``: their sizes, the
    forward pass through a lowered network, and the dense weight for inspection. A layer has
    ``in_modes``, ``out_modes`` and ``bias`` (None without one)."""

    @property
    def in_features(self) -> int:
        return math.prod(self.in_modes)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_modes)

    def _forward(self, x, layer: str, build, shape: tuple, arrays: dict) -> jax.Array:
        """``W x + b`` for one example ``x``, through ``lowered(build, *shape)`` given the factors ``arrays``."""
        x = one_example(x, self.in_features, self.in_modes, layer)
        y = lowered(build, *shape)(x=x, **arrays).reshape(self.out_features)
        return y + self.bias if self.bias is not None else y

    def dense(self) -> jax.Array:
        """The weight as a dense (out_features, in_features) matrix, for tests and inspection only."""
        eye = jnp.eye(self.in_features, dtype=jax.tree_util.tree_leaves(self)[0].dtype)
        columns = jax.vmap(self)(eye)
        return (columns - self.bias if self.bias is not None else columns).T


# -- compressing a dense weight (from_dense) ----------------------------------------------


def read_dense_weight(weight, in_modes, out_modes, where: str) -> tuple:
    """``(w, dtype, in_modes, out_modes)``: the ``(out, in)`` weight as a float64 array checked
    against the modes, and the dtype the layer keeps (the weight's float, else JAX's default)."""
    in_modes, out_modes = read_modes(in_modes, out_modes, where)
    w = np.asarray(weight)
    expected = (math.prod(out_modes), math.prod(in_modes))
    if w.shape != expected:
        raise ValueError(
            f"{where}: weight must have shape (out, in) = {expected} for out_modes {out_modes} and "
            f"in_modes {in_modes}; got {w.shape}."
        )
    return w.astype(np.float64), dtype_of_dense(w, where), in_modes, out_modes


def dtype_of_dense(w: np.ndarray, where: str):
    """The dtype a layer made from the dense array ``w`` keeps: ``w``'s float, else JAX's default."""
    floating = np.issubdtype(w.dtype, np.floating)
    return read_dtype(jax.dtypes.canonicalize_dtype(w.dtype) if floating else None, where)


def read_ranks_or_tol(ranks, tol, where: str, ranks_name: str = "ranks"):
    """``tol``, checked, where exactly one of ``ranks`` (fixed ranks) and ``tol`` (a relative
    error) is given (``ranks`` is read by the caller, whose spellings differ)."""
    if (ranks is None) == (tol is None):
        raise ValueError(
            f"{where}: give exactly one of {ranks_name}= (fixed ranks) or tol= (a relative error)."
        )
    if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
        raise ValueError(f"{where}: tol must be a non-negative number; got {tol!r}.")
    return tol


def ranks_found(tol, found: tuple) -> str:
    """How ``warn_if_larger`` names the ranks: found for a tolerance, or given."""
    return f"tol={tol} gives ranks {found} and" if tol is not None else f"ranks {found} give"


def warn_if_larger(factored: int, dense: int, how: str, where: str, what: str = "the dense weight"):
    """A ``UserWarning`` where the factors hold more parameters than the dense array they replace
    (``how``: what gave them, ``ranks_found``)."""
    if factored > dense:
        warnings.warn(
            f"{where}: {how} {factored:,} parameters, more than {what}'s {dense:,}; the factored form "
            f"saves nothing here (raise tol, or give smaller ranks).",
            UserWarning,
            stacklevel=3,
        )


def with_bias(layer, bias, dtype, where: str):
    """``layer`` with ``bias`` (as ``eqx.nn.Linear.bias``) as its bias, checked; unchanged for None."""
    if bias is None:
        return layer
    bias = jnp.asarray(bias, dtype)
    if bias.shape != (layer.out_features,):
        raise ValueError(f"{where}: bias must have shape ({layer.out_features},); got {bias.shape}.")
    return eqx.tree_at(lambda m: m.bias, layer, bias)


def kept_by_tol(singular_values: np.ndarray, cut: float) -> int:
    """The fewest leading singular values (at least one) whose dropped tail has norm at most ``cut``."""
    tails = np.sqrt(np.cumsum((singular_values ** 2)[::-1]))[::-1]  # tails[j]: the error of keeping j values
    return max(1, next((j for j in range(1, len(singular_values) + 1)
                        if j == len(singular_values) or tails[j] <= cut), len(singular_values)))
