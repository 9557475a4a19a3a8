# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
# ---

# %% [markdown]
# # gflow quickstart: the gradient flow of the paper's Experiment 1
#
# Shallow tanh net (eq. (1)), d = 20, random labels, paper scaling ("ours"). We integrate the exact
# gradient flow, compare it with the paper's gradient descent (δ = 1), and check the flow against the
# closed form for a linear activation (EQUATIONS.md §5.1). Seed 0 throughout; runtime about 10 s on a
# 2-core CPU (`GFLOW_SMALL=1` shrinks it for the test suite).

# %%
import os

import numpy as np
import scipy.linalg

import gflow as gf

small = os.environ.get("GFLOW_SMALL") == "1"
m, n, t1 = (128, 10, 50.0) if small else (1024, 20, 500.0)

X, y = gf.data.random_labels(n=n, d=20, seed=0)
Xt, yt = gf.data.random_labels(n=200, d=20, seed=1)
net = gf.Network(d=20, width=m, activation="tanh", seed=0)

# %% [markdown]
# ## The flow and gradient descent from the same initialisation

# %%
sol = gf.simulate(net, X, y, t1=t1, method="dop853", rtol=1e-9, atol=1e-12, X_test=Xt, y_test=yt)
gd = gf.gradient_descent(net, X, y, step=1.0, steps=int(t1), save_every=max(1, int(t1) // 50))
print(sol.summary(rows=6))
print(f"GD (δ = 1) at t = {gd.t[-1]:g}: loss {gd.loss[-1]:.3e}; flow: {sol.loss[-1]:.3e}")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogy(sol.t, sol.loss, label="gradient flow (dop853)")
ax.semilogy(gd.t, gd.loss, "--", label="gradient descent, δ = 1")
ax.set_xlabel("flow time t (= GD steps × δ)")
ax.set_ylabel("training loss L (eq. 6)")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Check: linear σ has the closed form r(t) = exp(−ĉ²Gt) r(0)

# %%
lin = gf.Network(d=20, width=m, activation="linear", seed=0)
sl = gf.simulate(lin, X, y, t1=5.0, saveat=[0.0, 5.0], rtol=1e-10, atol=1e-12)
G = lin.gram(X).numpy()
r_exact = scipy.linalg.expm(-G * 5.0) @ sl.residual[0]
print("max |r_flow − r_exact| =", np.abs(sl.residual[-1] - r_exact).max())
assert np.allclose(sl.residual[-1], r_exact, rtol=1e-7, atol=1e-9)
