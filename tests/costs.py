"""Clock-free cost measures of compiled programs, for tgjax against JAX autodiff.

Two figures, both deterministic for a given program and shapes:

- ``flops``: the FLOP count of XLA's cost analysis of the compiled program
  (after XLA's own simplification and fusion; transcendental functions are
  counted apart, in ``transcendentals``).
- ``largest_intermediate``: the element count of the largest array that any
  equation of the program's jaxpr produces, in every sub-jaxpr too (jit,
  custom_jvp/vjp, cond branches, scan and while bodies). Inputs are not
  produced by an equation, so they never count; results do.

``tgjax_costs`` measures the program that ``tg.lower`` generates, and
``jax_costs`` the program a JAX user writes (``jax.value_and_grad`` or
``jax.hessian`` under ``jax.jit``), on the same arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import numpy as np

import tgjax as tg


def _cost_dict(compiled) -> dict:
    """``compiled.cost_analysis()`` as one dict: jax returns a dict (>= 0.4.36) or a list of dicts
    (one per program of the executable, older versions); counts of a list are added up."""
    analysis = compiled.cost_analysis()
    if analysis is None:
        return {}
    if isinstance(analysis, dict):
        return analysis
    total: dict = {}
    for part in analysis:
        for key, value in (part or {}).items():
            total[key] = total.get(key, 0.0) + value
    return total


def _jitted(fn):
    return fn if hasattr(fn, "lower") else jax.jit(fn)


def compile_program(fn, *args, **kwargs):
    """The compiled XLA executable of ``jax.jit(fn)`` (``fn`` itself when already jitted) at these arguments."""
    return _jitted(fn).lower(*args, **kwargs).compile()


def flops_of(compiled) -> float:
    """The FLOP count of XLA's cost analysis of a compiled executable."""
    return float(_cost_dict(compiled).get("flops", 0.0))


def transcendentals_of(compiled) -> float:
    """The count of transcendental operations (exp, log, tanh...) in XLA's cost analysis."""
    return float(_cost_dict(compiled).get("transcendentals", 0.0))


def flops(jitted_fn, *args, **kwargs) -> float:
    """XLA's FLOP count of ``jitted_fn`` compiled for these arguments (no clock involved)."""
    return flops_of(compile_program(jitted_fn, *args, **kwargs))


def _sub_jaxprs(value):
    """The jaxprs held in one equation parameter: a (Closed)Jaxpr, or a tuple/list of them (cond branches)."""
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)
    elif hasattr(value, "eqns") and hasattr(value, "outvars"):  # Jaxpr
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value, "consts"):  # ClosedJaxpr
        yield value.jaxpr


def _walk(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            shape = getattr(var.aval, "shape", ())
            yield int(np.prod(shape, dtype=np.int64)), eqn.primitive.name, tuple(shape)
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from _walk(sub)


def intermediates(fn, *args, **kwargs) -> list[tuple[int, str, tuple]]:
    """Every array an equation of ``jax.make_jaxpr(fn)`` produces, recursing into sub-jaxprs:
    ``(element count, primitive name, shape)``, largest first. Inputs are not included."""
    closed = jax.make_jaxpr(fn)(*args, **kwargs)
    return sorted(_walk(closed.jaxpr), key=lambda t: -t[0])


def largest_intermediate(fn, *args, **kwargs) -> int:
    """The element count of the largest array any equation of ``fn``'s jaxpr produces (0 if none)."""
    found = intermediates(fn, *args, **kwargs)
    return found[0][0] if found else 0


@dataclasses.dataclass
class Costs:
    """What one compiled program costs, and what it returned on the arguments it was measured at."""

    flops: float
    transcendentals: float
    largest: int
    largest_eqn: str  # "primitive shape" of the largest intermediate, for messages
    outputs: tuple
    source: str = ""

    def describe(self) -> str:
        return f"{self.flops:.4g} FLOPs ({self.transcendentals:.4g} transcendentals), largest intermediate {self.largest} ({self.largest_eqn})"


def _measure(jitted, args, source="") -> Costs:
    compiled = compile_program(jitted, *args)
    found = intermediates(jitted, *args)
    largest, eqn = (found[0][0], f"{found[0][1]} {list(found[0][2])}") if found else (0, "none")
    outputs = compiled(*args)
    outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
    return Costs(flops_of(compiled), transcendentals_of(compiled), largest, eqn, outputs, source)


def tgjax_costs(exprs: Sequence, values: dict, sizes: dict | None = None) -> Costs:
    """Costs of the program ``tg.lower(list(exprs))`` compiles for ``values`` (variable name -> array).

    Measures the jitted program itself (``Lowered._program``), so only the
    arrays the program takes are its inputs; outputs are in ``exprs`` order.
    """
    lowered = tg.lower(list(exprs), sizes=sizes)
    if hasattr(lowered, "_bind") and hasattr(lowered, "_program"):
        arrays, env = lowered._bind(values, {})
        source, inputs, jitted = lowered._program(env)
        by_name = dict(zip(lowered.variables, arrays))
        args = [by_name[name] for name in inputs]
    else:  # the internals moved: measure the public callable, which is a pure JAX function
        names = sorted(values)
        source, args = "", [values[n] for n in names]
        jitted = jax.jit(lambda *a: lowered(dict(zip(names, a))))
    return _measure(jitted, args, source)


def jax_costs(f: Callable, args: Sequence[Any], argnums: Sequence[int] | None = None, hessian: bool = False) -> Costs:
    """Costs of the JAX baseline on positional ``args``.

    ``jax.jit(jax.value_and_grad(f, argnums))`` (outputs: value, then one
    gradient per argnum), or with ``hessian=True`` ``jax.jit(jax.hessian(f, argnums))``
    (``argnums`` one int: the Hessian alone). ``argnums`` defaults to every argument.
    """
    args = list(args)
    if hessian:
        argnum = 0 if argnums is None else argnums
        return _measure(jax.jit(jax.hessian(f, argnums=argnum)), args)
    argnums = tuple(range(len(args))) if argnums is None else tuple(argnums)
    value_and_grad = jax.jit(jax.value_and_grad(f, argnums=argnums))

    def flat(*a):
        value, grads = value_and_grad(*a)
        return (value, *grads)

    return _measure(jax.jit(flat), args)
