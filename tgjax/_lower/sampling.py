"""Monte-Carlo estimates of the expectations that have no closed form: ``tg.lower(expr, samples=N)``.

Every Expectation is first simplified, so the parts with a closed form are
exact. Each expectation left (outermost ones; one nested in another's
integrand is estimated inside it) becomes a placeholder input of the outer
program, and its integrand a program of its own. At call time the variable is
drawn by reparameterisation, ``x = mu + L z`` with ``L`` the Cholesky factor of
the covariance laid out as a matrix (its symmetric part) and ``z`` standard
normal, so the estimate is differentiable with respect to the mean and the
covariance; the integrand is averaged over the N draws with ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import sympy

from .._ir.nodes import Expectation, Expr, Product, Variable, Zero, rebuilt
from .._ir.rename import rename
from .._ir.walk import parents_first
from .._simplify import simplify
from .api import Lowered, _as_outputs, _normalise_sizes


class Sampled:
    """What ``tg.lower(exprs, samples=N)`` returns: call it with the arrays and ``key=`` a JAX PRNG key."""

    def __init__(self, exprs, samples: int, sizes: Mapping | None = None):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
            raise ValueError(f"tg.lower: samples must be a positive int (the number of Monte-Carlo draws); got {samples!r}.")
        self._single, outputs = _as_outputs(exprs, "tg.lower")
        self.samples = samples
        self._fixed = _normalise_sizes(sizes, "tg.lower")
        self.placeholders: list = []
        by_node: dict = {}
        replaced = [_replace_open_expectations(t, by_node, self.placeholders) for t in outputs]
        self._outer = Lowered(replaced[0] if self._single else replaced, sizes)
        self._estimators = [_Estimator(p, samples, sizes) for p in self.placeholders]
        self._run = jax.jit(self._evaluate)

    def __call__(self, values=None, /, *, key=None, **kwargs):
        if key is None:
            raise ValueError(
                "tgjax function: this program estimates expectations by sampling; pass a JAX PRNG key, "
                "fn(..., key=jax.random.PRNGKey(0))."
            )
        if values is not None and not isinstance(values, Mapping):
            raise TypeError(
                f"tgjax function: pass arrays as keywords fn(x=..., key=...) or as one dict fn({{x: ...}}, key=...); "
                f"got {type(values).__name__}."
            )
        given = {}
        for k, v in (values or {}).items():
            given[k.name if isinstance(k, Variable) else k] = v
        given.update(kwargs)
        return self._run(key, {k: jnp.asarray(v) for k, v in given.items()})

    def _evaluate(self, key, given: dict):
        given = dict(given)
        for k, estimator in enumerate(self._estimators):
            given[estimator.name] = estimator(jax.random.fold_in(key, k), given, self._fixed)
        return self._outer(given)


class _Placeholder:
    def __init__(self, name: str, node: Expectation):
        self.name = name
        self.node = node


def _replace_open_expectations(t: Expr, by_node: dict, placeholders: list) -> Expr:
    """``t`` with each outermost Expectation simplified and, where one stays open, a placeholder Variable."""

    def children(node):
        return () if isinstance(node, Expectation) else node.args

    memo: dict = {}
    for node in reversed(parents_first([t], children=children)):
        if not isinstance(node, Expectation):
            memo[id(node)] = rebuilt(node, [memo[id(a)] for a in node.args])
            continue
        closed = simplify(node)
        if not any(isinstance(u, Expectation) for u in parents_first([closed], children=children)):
            memo[id(node)] = closed
            continue
        # the open expectations of the closed form become placeholders
        inner: dict = {}
        for u in reversed(parents_first([closed], children=children)):
            if isinstance(u, Expectation):
                inner[id(u)] = _placeholder(u, by_node, placeholders)
            else:
                inner[id(u)] = rebuilt(u, [inner[id(a)] for a in u.args])
        memo[id(node)] = inner[id(closed)]
    return memo[id(t)]


def _placeholder(node: Expectation, by_node: dict, placeholders: list) -> Expr:
    key = (node, node.edges)
    if key not in by_node:
        name = f"tgjax_expectation_{len(placeholders)}"
        declared = Variable(name, **{f"e{k}": node._shape[e] for k, e in enumerate(node.edges)})
        by_node[key] = declared
        placeholders.append(_Placeholder(name, node))
    declared = by_node[key]
    return rename(declared, {f"e{k}": e for k, e in enumerate(node.edges)})


class _Estimator:
    """The N-sample estimate of one open expectation, from the arrays of the call."""

    def __init__(self, placeholder: _Placeholder, samples: int, sizes):
        node = placeholder.node
        self.name = placeholder.name
        self.node = node
        self.samples = samples
        declared = tuple(e for e, _ in node.wrt.decl)
        partners = tuple(node.covar_names[e] for e in declared)
        integrand = node.expr
        has_open = any(isinstance(u, Expectation) for u in parents_first([integrand]))
        self._integrand = Sampled(integrand, samples, sizes) if has_open else Lowered(integrand, sizes)
        self._nested = has_open
        self._mu = None if isinstance(node.mu, Zero) else Lowered(Product([node.mu], edges=declared), sizes)
        self._covar = None if node.has_identity_covariance() else Lowered(Product([node.covar], edges=declared + partners), sizes)

    def __call__(self, key, given: dict, fixed: dict):
        x = self.node.wrt
        shape = self._shape(given, fixed)
        size = math.prod(shape)
        dtype = jnp.result_type(float, *given.values()) if given else jnp.result_type(float)
        mu = jnp.zeros(size, dtype) if self._mu is None else jnp.reshape(self._mu(given), (size,))
        if self._covar is None:
            draws = jax.random.normal(key, (self.samples, size), dtype)
        else:
            covar = jnp.reshape(self._covar(given), (size, size))
            factor = jnp.linalg.cholesky((covar + covar.T) / 2)
            draws = jax.random.normal(key, (self.samples, size), dtype) @ factor.T
        xs = jnp.reshape(mu + draws, (self.samples, *shape))

        def one(draw, k):
            inputs = {**given, x.name: draw}
            if self._nested:
                return self._integrand(inputs, key=k)
            return self._integrand(inputs)

        keys = jax.random.split(jax.random.fold_in(key, 1), self.samples)
        return jnp.mean(jax.vmap(one)(xs, keys), axis=0)

    def _shape(self, given: dict, fixed: dict) -> tuple:
        """The shape of the averaged variable, its sizes read from the arrays of the call."""
        x = self.node.wrt
        env = dict(fixed)
        for program in (self._integrand, self._mu, self._covar):
            if program is None or not isinstance(program, Lowered):
                continue
            for name, var in program.variables.items():
                if name in given:
                    for (_, size), n in zip(var.decl, jnp.shape(given[name])):
                        if sympy.sympify(size).is_Symbol:
                            env.setdefault(sympy.sympify(size), int(n))
        shape = []
        for e, size in x.decl:
            value = sympy.sympify(size).subs(env)
            if not value.is_Integer:
                raise ValueError(
                    f"tgjax function: the size of edge {e!r} of {x.name}, which is sampled, is not fixed by any input "
                    f"array; give it as tg.lower(..., samples=..., sizes={{{size}: ...}})."
                )
            shape.append(int(value))
        return tuple(shape)
