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
# # Gradient descent vs the gradient flow
#
# The paper trains with full-batch GD, δ = 1; its theorems are about the gradient flow. GD is forward Euler
# on the flow, linearly stable near a point only if δ·λ_max(M) < 2 (EQUATIONS.md E3, §13 "GD vs GF caveat").
# Here: Experiment 1's shallow tanh net with n = 80 > d = 20, where δ = 1 is past that limit at t = 0.
# We measure how far GD with step δ lands from the exact flow, and its first-order convergence as δ → 0.
# Seed 0; about 20 s on a 2-core CPU (`GFLOW_SMALL=1` shrinks it for the test suite).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import gflow as gf

small = os.environ.get("GFLOW_SMALL") == "1"
m, n, T = (128, 40, 20.0) if small else (1024, 80, 100.0)
X, y = gf.data.random_labels(n=n, d=20, seed=0)
net = gf.Network(d=20, width=m, activation="tanh", seed=0)

# %% [markdown]
# ## The exact flow and the stability limit

# %%
saveat = np.arange(0.0, T + 1e-9, 1.0)
flow = gf.simulate(net, X, y, saveat=saveat, method="dop853", rtol=1e-10, atol=1e-13)
limit = 2.0 / flow.lam_max_M[0]
print(f"λ_max(M₀) = {flow.lam_max_M[0]:.3f}: GD is linearly stable at t = 0 only for δ < {limit:.3f}")

# %% [markdown]
# ## GD at several steps, compared at equal flow time t = kδ

# %%
steps = [1.0, 0.5, 0.25, 0.125, 0.0625]
gaps, runs = [], {}
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
ax0.semilogy(flow.t, flow.loss, "k", lw=2, label="gradient flow (dop853, rtol 1e-10)")
for delta in steps:
    gd = gf.gradient_descent(net, X, y, step=delta, steps=int(round(T / delta)), save_every=int(round(1 / delta)))
    runs[delta] = gf.compare(gd, flow)  # GD's errors against the flow at the times both saved
    gaps.append(runs[delta].max_loss_rel_error)
    ax0.semilogy(gd.t, gd.loss, "--", label=f"GD δ = {delta:g}" + (" (past 2/λ_max)" if delta > limit else ""))
ax0.set_xlabel("flow time t (= GD steps × δ)")
ax0.set_ylabel("training loss L")
ax0.legend(fontsize=8)
ax1.loglog(steps, gaps, "o-", label="max_t |L_GD − L_flow| / L_flow")
ax1.loglog(steps, gaps[-1] * np.array(steps) / steps[-1], "k:", label="slope 1 (first order)")
ax1.axvline(limit, color="r", lw=1, label="stability limit 2/λ_max(M₀)")
ax1.set_xlabel("GD step δ")
ax1.set_ylabel("relative loss error")
ax1.legend(fontsize=8)
fig.tight_layout()

# %%
slope = np.polyfit(np.log(steps[2:]), np.log(gaps[2:]), 1)[0]
print("relative loss error of GD:", {d: f"{g:.2e}" for d, g in zip(steps, gaps)})
print(f"observed order as δ → 0: {slope:.2f} (GD is first order)")
assert 0.7 < slope < 1.3

# %% [markdown]
# ## The paper's step δ = 1 against the flow, quantity by quantity
#
# `gf.compare` gives the relative errors of the loss, the residual r = f − y, the features and the weights at the
# times both runs saved (`gflow compare gd.nc flow.nc` from the command line); `plot_comparison` draws them.
# The loss, a norm, can hide much of GD's error: past the stability limit the residual's error along the unstable
# direction is larger than the loss's (at the small size: up to 38 % against up to 2 %).

# %%
print(runs[1.0])
fig = gf.plotting.plot_comparison(runs[1.0])
