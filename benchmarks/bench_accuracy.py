"""Work–precision: how far each solver (and GD with step δ) lands from the true flow, and at what cost.

For each problem a float64 reference is computed with DOP853 at rtol = 1e-12 and checked against dopri8 at
the same tolerance (their disagreement is reported).  Then, for every method, the relative error of the loss
and of the features H at t1, the number of right-hand-side evaluations and the wall time are measured:

* GD (forward Euler) with δ from 1 down to 1e-3, midpoint and rk4 at several steps (observed orders fitted);
* adaptive torchdiffeq (dopri5, dopri8, bosh3, adaptive_heun) and scipy (RK45, DOP853, LSODA) at rtol from
  1e-3 to 1e-10.

Output: JSON with every number (machine, versions, dtype, seeds) and two figures: error against step size
(with fitted slopes) and the work–precision diagram (error against evaluations and against seconds), with
GD at the paper's δ = 1 marked and each problem's stability limit 2/λ_max(M₀).

    python benchmarks/bench_accuracy.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import gflow as gf

ADAPTIVE = ["dopri5", "dopri8", "bosh3", "adaptive_heun", "RK45", "DOP853", "LSODA"]


def problems(quick: bool):
    if quick:
        X, y = gf.data.random_labels(n=6, d=8, seed=0)
        return [("tiny tanh (d=8, n=6, m=32)", gf.Network(d=8, width=32, seed=0), X, y, 4.0)]
    out = []
    for n in (20, 40, 80):
        X, y = gf.data.random_labels(n=n, d=20, seed=0)
        out.append((f"Exp 1 tanh n={n} (m=512)", gf.Network(d=20, width=512, seed=0), X, y, 50.0))
    X, y = gf.data.wei2019(n=100, d=20, seed=0)
    net = gf.Network(d=20, width=256, activation="erf", embedding=gf.RandomFeatures(D=256), seed=0)
    out.append(("P-3L erf (d=20, n=100, m=D=256)", net, X, y, 50.0))
    X, y = gf.data.random_labels(n=40, d=20, seed=0)
    out.append(("long horizon: Exp 1 tanh n=40, t=2000 (m=256)", gf.Network(d=20, width=256, seed=0), X, y,
                2000.0))
    return out


def rel_errors(sol, ref):
    eL = abs(sol.loss[-1] - ref.loss[-1]) / ref.loss[-1]
    eH = float(np.linalg.norm(sol.H[-1] - ref.H[-1]) / np.linalg.norm(ref.H[-1] - ref.H[0]))
    return float(eL), eH


def run_problem(name, net, X, y, t1, quick):
    kw = dict(saveat=[0.0, t1], integrals=False, warn=False)
    ref = gf.simulate(net, X, y, t1=t1, method="DOP853", rtol=1e-12, atol=1e-14, **kw)
    check = gf.simulate(net, X, y, t1=t1, method="dopri8", rtol=1e-12, atol=1e-14, max_steps=10**6, **kw)
    lam0 = gf.simulate(net, X, y, t1=min(t1, 1e-6), saveat=[0.0, min(t1, 1e-6)], warn=False).lam_max_M[0]
    rows = []

    def record(kind, method, param, sol, wall):
        eL, eH = rel_errors(sol, ref) if sol.ok else (float("nan"), float("nan"))
        rows.append({"kind": kind, "method": method, "param": param, "rel_err_loss": eL, "rel_err_H": eH,
                     "n_f_evals": sol.stats["n_f_evals"], "wall_s": wall, "status": sol.status})

    gd_steps = [1.0, 0.5, 0.25] if quick else [1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001]
    for d in gd_steps:
        k = int(round(t1 / d))
        if k > 200_000:
            continue
        t = time.perf_counter()
        sol = gf.gradient_descent(net, X, y, step=d, steps=k, save_every=k, integrals=False, warn=False)
        record("fixed", "gd", d, sol, time.perf_counter() - t)
    fixed_steps = [0.5, 0.25, 0.125] if quick else [1.0, 0.5, 0.25, 0.125, 0.0625]
    for method in ("midpoint", "rk4"):
        for h in fixed_steps:
            t = time.perf_counter()
            sol = gf.simulate(net, X, y, t1=t1, method=method, step=h, max_steps=10**6, **kw)
            record("fixed", method, h, sol, time.perf_counter() - t)
    tols = [1e-3, 1e-6] if quick else [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10]
    for method in ADAPTIVE:
        for rtol in tols:
            t = time.perf_counter()
            try:
                sol = gf.simulate(net, X, y, t1=t1, method=method, rtol=rtol, atol=rtol * 1e-3, max_steps=10**6,
                                  max_wall_time=120.0, **kw)
            except ValueError as exc:  # e.g. LSODA's dense Jacobian refused on a large state: say so, go on
                rows.append({"kind": "adaptive", "method": method, "param": rtol, "rel_err_loss": float("nan"),
                             "rel_err_H": float("nan"), "n_f_evals": 0, "wall_s": 0.0, "status": f"refused: {exc}"})
                break
            record("adaptive", method, rtol, sol, time.perf_counter() - t)
    orders = {}
    for method in ("gd", "midpoint", "rk4"):
        pts = [(r["param"], r["rel_err_loss"]) for r in rows if r["method"] == method
               and np.isfinite(r["rel_err_loss"]) and 1e-13 < r["rel_err_loss"] < 1e-1]
        if len(pts) >= 2:
            h, e = np.array(pts).T
            orders[method] = float(np.polyfit(np.log(h), np.log(e), 1)[0])
    best = {}
    for target in (1e-6,):
        ok = [r for r in rows if r["rel_err_loss"] <= target and r["kind"] == "adaptive"]
        if ok:
            b = min(ok, key=lambda r: r["n_f_evals"])
            best[str(target)] = {"method": b["method"], "param": b["param"], "n_f_evals": b["n_f_evals"]}
    return {"name": name, "t1": t1, "m": net.m, "n": len(y), "D": net.D, "activation": net.activation.name,
            "reference": {"method": "DOP853", "rtol": 1e-12, "n_f_evals": ref.stats["n_f_evals"],
                          "rel_diff_vs_dopri8": abs(ref.loss[-1] - check.loss[-1]) / ref.loss[-1],
                          "loss_t1": float(ref.loss[-1])},
            "stability_limit_gd": float(2.0 / lam0), "rows": rows, "orders": orders, "cheapest_to_1e-6": best}


def figures(result, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = result["problems"]
    fig, axes = plt.subplots(len(probs), 3, figsize=(15, 4 * len(probs)), squeeze=False)
    for row, p in zip(axes, probs):
        rows = p["rows"]
        for method, marker in (("gd", "o"), ("midpoint", "s"), ("rk4", "^")):
            pts = [(r["param"], r["rel_err_loss"], r["n_f_evals"], r["wall_s"]) for r in rows if r["method"] == method]
            if not pts:
                continue
            h, e, nf, w = np.array(pts).T
            slope = p["orders"].get(method)
            lab = f"{method}" + (f" (slope {slope:.2f})" if slope is not None else "")
            row[0].loglog(h, e, marker + "-", label=lab)
            row[1].loglog(nf, e, marker + "-", label=method)
            row[2].loglog(w, e, marker + "-", label=method)
        for method in ADAPTIVE:
            pts = [(r["rel_err_loss"], r["n_f_evals"], r["wall_s"]) for r in rows
                   if r["method"] == method and r["n_f_evals"] > 0]
            if not pts:
                continue
            e, nf, w = np.array(pts).T
            row[1].loglog(nf, e, ".--", label=method)
            row[2].loglog(w, e, ".--", label=method)
        gd1 = [r for r in rows if r["method"] == "gd" and r["param"] == 1.0]
        if gd1:
            for ax, x in ((row[1], gd1[0]["n_f_evals"]), (row[2], gd1[0]["wall_s"])):
                ax.annotate("GD, δ = 1 (paper)", (x, gd1[0]["rel_err_loss"]), fontsize=8,
                            xytext=(5, 5), textcoords="offset points")
        row[0].axvline(p["stability_limit_gd"], color="r", lw=1, label="2/λ_max(M₀)")
        row[0].set_xlabel("step size (δ or h)")
        row[1].set_xlabel("right-hand-side evaluations")
        row[2].set_xlabel("wall time (s)")
        for ax in row:
            ax.set_ylabel("relative error of L(t1)")
            ax.grid(True, which="both", alpha=0.3)
        row[0].set_title(p["name"], fontsize=10)
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths = [out / "work_precision.png", out / "work_precision.pdf"]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one tiny problem (the test suite runs this)")
    p.add_argument("--out", default="bench-accuracy", help="output folder")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "device": "cpu"},
              "versions": gf.solution.versions(), "dtype": "float64", "seeds": {"network": 0, "data": 0},
              "problems": [run_problem(*prob, args.quick) for prob in problems(args.quick)]}
    (out / "accuracy.json").write_text(json.dumps(result, indent=2))
    figures(result, out)
    for prob in result["problems"]:
        print(f"{prob['name']}: reference vs dopri8 {prob['reference']['rel_diff_vs_dopri8']:.1e}; GD stability "
              f"limit {prob['stability_limit_gd']:.3g}; orders {prob['orders']}; cheapest to 1e-6: "
              f"{prob['cheapest_to_1e-6']}")
    return result


if __name__ == "__main__":
    main()
