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
# # Experiment 3 from a saved run file: feature learning vs lazy training (Figure 4, second row)
#
# The P-3L ReLU net (eqs. 4–5) under the three scalings of Table 1 on the Wei et al. data. Figures are drawn
# from the saved `runs.nc` — never by re-integrating. If the file is missing, the `quick` preset makes it
# (a few minutes on a 2-core CPU; the `tiny` preset under `GFLOW_SMALL=1`). Seed 0.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from gflow.experiments import exp3, load_runs
from gflow.plotting import plot_feature_scatter

preset = "tiny" if os.environ.get("GFLOW_SMALL") == "1" else "quick"
path = Path(f"exp3-{preset}") / "exp3" / "runs.nc"
if not path.exists():
    exp3.run(preset, path.parent.parent)
attrs, runs = load_runs(path)
print(f"{len(runs)} runs from {path} (preset {attrs['preset']})")

# %% [markdown]
# ## The feature scatter h_i(x₁) vs h_i(x₂) at t = 0 and at the end, for each scaling

# %%
flow_runs = [r for r in runs if r.labels["solver"] == "flow"]
n_max = max(r.labels["n"] for r in flow_runs)
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
for ax, scaling in zip(axes, ("ours", "ntk", "mf")):
    run = next(r for r in flow_runs if r.labels["scaling"] == scaling and r.labels["n"] == n_max)
    plot_feature_scatter(run.solution, ax=ax)
    ax.set_title(f"scaling '{scaling}', n = {n_max}")
fig.tight_layout()

# %% [markdown]
# ## How far the features moved, per scaling (the paper: "ours" and "mf" move, "ntk" barely)

# %%
for scaling in ("ours", "ntk", "mf"):
    moved = [float(np.mean(r.solution.feature_movement[-1])) for r in flow_runs if r.labels["scaling"] == scaling]
    print(f"{scaling:>5}: mean (1/m)Σ|h_i(t) − h_i(0)| at the end = {np.mean(moved):.3g}")
