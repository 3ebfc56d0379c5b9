"""The Gaussian sketch: E[<S x, S y>] = <x, y>, and its variance, in closed form.

S is a k x n matrix of independent N(0, 1/k) entries (covariance
I_k (x) I_n / k, a 4-edge tensor). A sketch preserves inner products on
average, and its variance, E[<Sx, Sy>^2] - <x, y>^2 = (|x|^2 |y|^2 + <x, y>^2) / k,
comes out of the symbolic expectation of a degree-4 polynomial in S. Both
are checked against Monte Carlo.

Run: python examples/tensor_sketch.py
"""

import jax
import numpy as np

import tgjax as tg

jax.config.update("jax_enable_x64", True)

k, n = tg.symbols("k n")
S = tg.Variable("S", k, n)
x, y = tg.Variable("x", n), tg.Variable("y", n)
covar = tg.Delta(k, "k", "k_") @ tg.Delta(n, "n", "n_") / k

inner = (S @ x) @ (S @ y)  # <Sx, Sy>, contracted over k
mean = tg.Expectation(inner, S, covar=covar).simplify()
second = tg.Expectation(inner ** 2, S, covar=covar).simplify()
variance = (second - mean ** 2).simplify()
print("E[<Sx, Sy>]        =", mean)
print("Var[<Sx, Sy>]      =", variance)

rng = np.random.default_rng(0)
K, N = 8, 20
xv, yv = rng.normal(size=N), rng.normal(size=N)
fn = tg.lower([mean, variance], sizes={k: K})  # k appears only as a size
m, v = (float(a) for a in fn(x=xv, y=yv))
exact_v = (xv @ xv * (yv @ yv) + (xv @ yv) ** 2) / K
print(f"\nclosed form: mean {m:.4f} (<x,y> = {xv @ yv:.4f}), variance {v:.4f} (formula {exact_v:.4f})")

samples = 200_000
Ss = rng.normal(size=(samples, K, N)) / np.sqrt(K)
values = np.einsum("skn,n,skm,m->s", Ss, xv, Ss, yv)
print(f"Monte Carlo: mean {values.mean():.4f}, variance {values.var():.4f}")
assert abs(m - xv @ yv) < 1e-9 and abs(v - exact_v) < 1e-9 * exact_v
assert abs(values.mean() - m) < 5 * values.std() / np.sqrt(samples)
assert abs(values.var() - v) < 0.05 * v
