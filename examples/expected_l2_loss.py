"""The expected L2 loss of a linear model under Gaussian weight noise, in closed form.

W ~ N(M, C) with a 4-edge covariance C[d, c, d_, c_] (every weight correlated
with every other). tgjax turns E_W[||X W - Y||^2] into ||X M - Y||^2 plus a
trace term, lowers it, and we check it against Monte Carlo, together with its
gradients with respect to the mean and the covariance (as variational
inference needs them).

Run: python examples/expected_l2_loss.py
"""

import jax
import numpy as np

import tgjax as tg
import tgjax.functions as F

jax.config.update("jax_enable_x64", True)

b, d, c = tg.symbols("b d c")
X, Y = tg.Variable("X", b, d), tg.Variable("Y", b, c)
W, M = tg.Variable("W", d, c), tg.Variable("M", d, c)
C = tg.Variable("C", d=d, c=c, d_=d, c_=c)

loss = F.sum((X @ W - Y) ** 2)
expected = tg.Expectation(loss, W, mu=M, covar=C)
print("E_W[loss]      =", expected)
closed = expected.simplify()
print("closed form    =", closed)
print("d/dM           =", expected.grad(M).simplify())

rng = np.random.default_rng(0)
B, D, K = 32, 6, 3
values = {"X": rng.normal(size=(B, D)), "Y": rng.normal(size=(B, K)), "M": rng.normal(size=(D, K))}
L = 0.3 * rng.normal(size=(D * K, D * K))
values["C"] = (L @ L.T).reshape(D, K, D, K)

fn = tg.lower([expected, expected.grad(M), expected.grad(C)])
value, grad_M, grad_C = fn(**values)

# Monte Carlo with the same law: W = M + chol(C) z
samples = 200_000
z = rng.normal(size=(samples, D * K)) @ np.linalg.cholesky(values["C"].reshape(D * K, D * K)).T
Ws = values["M"][None] + z.reshape(samples, D, K)
losses = np.sum((np.einsum("bd,sdc->sbc", values["X"], Ws) - values["Y"]) ** 2, axis=(1, 2))
error = losses.std() / np.sqrt(samples)
print(f"\nclosed form {float(value):.4f}   Monte Carlo {losses.mean():.4f} +- {error:.4f}")
assert abs(float(value) - losses.mean()) < 5 * error, "closed form and Monte Carlo disagree"

# the gradient with respect to the mean: 2 X^T (X M - Y); with respect to C: X^T X (x) I, symmetric
want_M = 2 * values["X"].T @ (values["X"] @ values["M"] - values["Y"])
want_C = np.einsum("bd,be,cf->dcef", values["X"], values["X"], np.eye(K))
np.testing.assert_allclose(grad_M, want_M, rtol=1e-10)
np.testing.assert_allclose(grad_C, want_C, rtol=1e-10)
print("gradients with respect to M and C match their exact values")
