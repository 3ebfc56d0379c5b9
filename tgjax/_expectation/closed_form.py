"""Gaussian expectations in closed form, as simplification rules of the Expectation node.

For ``x ~ N(mu, C)`` and a polynomial ``p`` of degree ``d``, the heat
equation (equivalently Stein's lemma applied ``d`` times, or Isserlis'
theorem) gives

    E[p(x)] = sum_{k <= d/2} 1 / (2^k k!) ((C : grad^2)^k p)(mu),

where ``C : grad^2`` contracts the Hessian with the covariance. Each term is a
symbolic derivative, a contraction and a substitution ``x -> mu``; the
simplifier then merges the isomorphic pairings (the fourth moment of a
standard normal vector comes out as three Delta products). An exponential
of an affine ``u(x)`` is handled by its moment generating function,
``E[exp(u)] = exp(u(mu) + Var(u) / 2)``, and a polynomial times a scalar one by
tilting the Gaussian: ``E[p(x) exp(u(x))] = E[exp(u)] E_{x ~ N(mu + C grad u, C)}[p(x)]``.

The covariance is used through its symmetric part ``(C + C^T) / 2``, so that
a gradient with respect to it is symmetric.
"""

from __future__ import annotations

import math

import sympy

from .._diff import derivative
from .._ir.elementwise import exp, exponent
from .._ir.nodes import (
    Derivative,
    Expectation,
    Expr,
    Function,
    Product,
    Sum,
    Variable,
    Zero,
    elementwise_product,
    rebuilt,
    summed,
)
from .._ir.rename import rename
from .._ir.util import fresh_edge
from .._ir.walk import parents_first
from .._simplify.core import make_sum, report, simplified, simplify_node, terms_of


@simplify_node.register
def _(t: Expectation):
    f = simplified(t.expr)
    node = Expectation._make(f, t.wrt, simplified(t.mu), simplified(t.covar), t.covar_names)
    if not f.depends_on(t.wrt):
        report(independent_of_the_variable, node, f)
        return f
    covar = _symmetric(node)  # once for all the terms
    closed, open_terms = [], []
    for w, core in terms_of(f):
        value = gaussian_polynomial(node, core, covar)
        if value is None:
            value = gaussian_exponential(node, core, covar)
        if value is None:
            open_terms.append((w, core))
        else:
            closed.append((w, value))
    # the weights of closed forms are polynomials in the sizes: n^2 + 2 n reads as such
    pairs = [(sympy.expand(sympy.cancel(w * v)), c) for w, value in closed for v, c in terms_of(simplified(value))]
    if open_terms:
        rest = make_sum(open_terms, f.shape)
        pairs.extend(terms_of(_factor_out_constants(node, rest)))
    return make_sum(pairs, f.shape)


# -- the rules ---------------------------------------------------------------------------


def independent_of_the_variable(t: Expectation):
    """E_x[f] = f when f does not mention x (a constant, or another variable's function)."""
    return t.expr if not t.expr.depends_on(t.wrt) else None


def gaussian_polynomial(t: Expectation, core: Expr, covar: Expr):
    """E[p(x)] for a polynomial p, any degree and tensor order: E[x^T A x] = tr(A C) + mu^T A mu.

    ``core`` is a term of ``t.expr``; ``covar`` the symmetric part of ``t.covar``.
    """
    degree = polynomial_degree(core, t.wrt)
    if degree is None:
        return None
    value = _polynomial(core, t.wrt, t.mu, covar, t.covar_names, degree)
    report(gaussian_polynomial, Expectation._make(core, t.wrt, t.mu, t.covar, t.covar_names), value)
    return value


def gaussian_exponential(t: Expectation, core: Expr, covar: Expr):
    """E[exp(u(x))] = exp(u(mu) + Var(u) / 2) for an affine u (elementwise over u's edges), and
    E[p(x) exp(u(x))] = E[exp(u)] E_{N(mu + C grad u, C)}[p] for a scalar affine u and a polynomial p.
    """
    x = t.wrt
    atoms = list(core.factors) if isinstance(core, Product) else [core]
    depending = [a for a in atoms if a.depends_on(x)]
    exponentials = [a for a in depending if isinstance(a, Function) and a.spec is exp]
    if len(exponentials) != 1 or polynomial_degree(exponentials[0].inputs[0], x) != 1:
        return None
    (e,) = exponentials
    others = [a for a in atoms if a is not e]
    u = e.inputs[0]
    if not e.edges:
        polynomial = Product(others) if len(others) != 1 else others[0]
        degree = polynomial_degree(polynomial, x)
        if degree is None:
            return None
        mean_u, variance, shift = _affine_moments(u, t, covar)
        tilted_mu = simplified(Sum([t.mu, shift], [1, 1], edges=t.mu.edges))
        moment = Function(exp, [Sum([mean_u, variance], [1, sympy.Rational(1, 2)], edges=())])
        value = Product([moment, _polynomial(polynomial, x, tilted_mu, covar, t.covar_names, degree)])
    elif len(depending) == 1:  # the exponential alone depends on x
        mean_u, variance, _ = _affine_moments(u, t, covar)
        moment = Function(exp, [Sum([mean_u, variance], [1, sympy.Rational(1, 2)], edges=mean_u.edges)], edges=e.edges)
        value = Product([*others, moment], edges=core.edges)
    else:
        return None
    report(gaussian_exponential, Expectation._make(core, x, t.mu, t.covar, t.covar_names), value)
    return value


# -- the pieces -----------------------------------------------------------------------------


def polynomial_degree(t: Expr, x: Variable):
    """The degree of ``t`` as a polynomial in ``x``, or None when it is not one."""
    degree: dict = {}
    for node in reversed(parents_first([t])):
        if not node.depends_on(x):
            d = 0
        elif isinstance(node, Variable):
            d = 1
        elif isinstance(node, Product):
            parts = [degree[id(f)] for f in node.factors]
            d = None if None in parts else sum(parts)
        elif isinstance(node, Sum):
            parts = [degree[id(u)] for u in node.terms]
            d = None if None in parts else max(parts)
        elif isinstance(node, Function) and _natural(exponent(node.spec)):
            inner = degree[id(node.inputs[0])]
            d = None if inner is None else int(exponent(node.spec)) * inner
        else:
            d = None  # a function of x (tanh, softmax, ...) or an unevaluated derivative
        degree[id(node)] = d
    return degree[id(t)]


def _natural(k) -> bool:
    return k is not None and k == int(k) and k >= 0


def _polynomial(p: Expr, x: Variable, mu: Expr, covar: Expr, names, degree: int) -> Expr:
    """sum_k 1 / (2^k k!) ((C : grad^2)^k p)(mu), up to k = degree / 2."""
    terms, weights = [], []
    g = simplified(p)
    for k in range(degree // 2 + 1):
        terms.append(substitute(g, x, mu))
        weights.append(sympy.Rational(1, 2 ** k * math.factorial(k)))
        if k == degree // 2:
            break
        g = _covariance_laplacian(g, x, covar, names)
        if isinstance(g, Zero):
            break
    return Sum(terms, weights, edges=p.edges)


def _covariance_laplacian(g: Expr, x: Variable, covar: Expr, names) -> Expr:
    """C : grad^2 g, the Hessian of g contracted with the covariance."""
    a = {e: fresh_edge() for e, _ in x.decl}
    b = {e: fresh_edge() for e, _ in x.decl}
    hessian = derivative(simplified(derivative(g, x, a)), x, b)
    joined = rename(covar, {**a, **{names[e]: b[e] for e in a}})
    return simplified(Product([hessian, joined], edges=g.edges))


def _affine_moments(u: Expr, t: Expectation, covar: Expr):
    """For an affine u: its mean u(mu), its variance J C J^T (elementwise over u's edges), and C J^T."""
    x = t.wrt
    a = {e: fresh_edge() for e, _ in x.decl}
    b = {e: fresh_edge() for e, _ in x.decl}
    jacobian = simplified(derivative(u, x, a))  # u's edges + a, free of x
    mean = simplified(substitute(u, x, t.mu))
    left = Product([jacobian, rename(covar, {**a, **{t.covar_names[e]: b[e] for e in a}})])  # u's edges + b
    variance = summed(elementwise_product(left, rename(jacobian, {a[e]: b[e] for e in a})), list(b.values()))
    shift = Product([jacobian, rename(covar, {t.covar_names[e]: a[e] for e in a})])  # x's edges
    return mean, simplified(variance), shift


def _symmetric(t: Expectation) -> Expr:
    """(C + C^T) / 2, C^T swapping each edge of the variable with its partner."""
    swap = {**{e: n for e, n in t.covar_names.items()}, **{n: e for e, n in t.covar_names.items()}}
    c = t.covar
    return simplified(Sum([c, rename(c, swap)], [sympy.Rational(1, 2)] * 2, edges=c.edges))


def substitute(t: Expr, x: Variable, value: Expr) -> Expr:
    """``t`` with every occurrence of ``x`` replaced by ``value`` (which has ``x``'s declared edges)."""
    memo: dict = {}
    for node in reversed(parents_first([t])):
        if isinstance(node, Variable) and node.key == x.key:
            memo[id(node)] = rename(value, {e: node.edge_of(e) for e, _ in x.decl if node.edge_of(e) != e})
        elif isinstance(node, Expectation) and node.wrt.key == x.key:
            memo[id(node)] = node  # x is bound inside
        elif isinstance(node, Derivative) and node.x.key == x.key:
            raise AssertionError("internal error: evaluate derivatives before substituting their variable")
        else:
            memo[id(node)] = rebuilt(node, [memo[id(a)] for a in node.args])
    return memo[id(t)]


def _factor_out_constants(t: Expectation, rest: Expr) -> Expr:
    """E[c f(x)] = c E[f(x)] for the factors c of each term that do not mention x."""
    pairs = []
    for w, core in terms_of(rest):
        atoms = list(core.factors) if isinstance(core, Product) else [core]
        constant = [a for a in atoms if not a.depends_on(t.wrt)]
        varying = [a for a in atoms if a.depends_on(t.wrt)]
        inner = varying[0] if len(varying) == 1 else Product(varying)
        node = Expectation._make(inner, t.wrt, t.mu, t.covar, t.covar_names)
        pairs.append((w, Product([*constant, node], edges=core.edges) if constant else node))
    return make_sum(pairs, rest.shape)
