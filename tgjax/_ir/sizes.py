"""Relations between size symbols: a Convolution ties its three sizes together.

``Convolution(w_in, k, w_out)`` is a "valid" convolution, so
``w_out = w_in - k + 1``. Inputs usually fix two of the three (the data and
the kernel); the third is derived here, and a contradiction is the user's
mistake, reported with the numbers.
"""

from __future__ import annotations

from .nodes import Convolution, Expr
from .rename import sharing_args


def convolution_triples(exprs) -> list:
    """``(w_in, k, w_out)`` size symbols of every Convolution in ``exprs`` (shared nodes once)."""
    triples: dict = {}
    seen: set = set()

    def visit(t: Expr):
        if id(t) in seen:
            return
        seen.add(id(t))
        if isinstance(t, Convolution):
            triples.setdefault(tuple(t._shape[e] for e in t.edges), None)
        for a in sharing_args(t):  # a renamed copy has its origin's sizes
            visit(a)

    for t in exprs:
        visit(t)
    return list(triples)


def complete_sizes(env: dict, triples, where: str) -> dict:
    """``env`` (symbol -> int) with every size that a Convolution determines filled in.

    Raises ValueError when the given sizes contradict ``w_out = w_in - k + 1``
    or leave a size below 1.
    """
    env = dict(env)
    changed = True
    while changed:
        changed = False
        for w_in, k, w_out in triples:
            known = [s in env for s in (w_in, k, w_out)]
            if all(known):
                if env[w_out] != env[w_in] - env[k] + 1:
                    raise ValueError(
                        f"{where}: Convolution({w_in}, {k}, {w_out}) is a valid convolution, so {w_out} = {w_in} - {k} + 1 "
                        f"= {env[w_in] - env[k] + 1}; but the sizes given are {w_in}={env[w_in]}, {k}={env[k]}, "
                        f"{w_out}={env[w_out]}. Check the arrays' shapes along these edges."
                    )
            elif sum(known) == 2:
                if not known[2]:
                    symbol, value = w_out, env[w_in] - env[k] + 1
                elif not known[1]:
                    symbol, value = k, env[w_in] - env[w_out] + 1
                else:
                    symbol, value = w_in, env[w_out] + env[k] - 1
                if value < 1:
                    given = ", ".join(f"{s}={env[s]}" for s in (w_in, k, w_out) if s in env)
                    raise ValueError(
                        f"{where}: Convolution({w_in}, {k}, {w_out}) with {given} would make {symbol} = {value}; "
                        f"a valid convolution needs the kernel {k} no longer than the input {w_in}."
                    )
                env[symbol] = value
                changed = True
    return env
