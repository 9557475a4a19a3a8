"""ReLU flows to a requested accuracy: the step-halving error estimate against a finer reference, and its cost.

The Experiment 3 setting (gflow/experiments/exp3.py: Wei et al. data with d = 50, P-3L embedding
``gf.RandomFeatures(D=m)``, ReLU, scaling "ours"; issue 6 target: m = D = 512, n = 200, t = 2000, relative
loss error ≤ 1e-3 in ≤ 2× the wall time of GD with δ = 0.25).  Steps, each timed side by side on this machine:

1. GD with δ = 0.25 to t1 (the cost yardstick);
2. ``gf.simulate_nonsmooth(rtol=1e-3, step=0.25, max_wall_time=2 × GD)``: the target attempt;
3. ``gf.simulate_nonsmooth`` from the coarsest step without a budget down to ``--ref-step``: every level's loss
   (the convergence table, with the contraction ρ of the differences and the observed order −log₂ρ);
4. the true error of each level's estimate against the finest level (minus the finest level's own estimate).

Output: ``relu.json`` (every number, machine, versions) and a printed summary.

    python benchmarks/bench_relu.py [--quick] [--m 512] [--n 200] [--t1 200] [--ref-step 0.0078125] [--out DIR]

Other modes: ``--long-levels`` (``sliding`` with long steps at each of ``--steps``: a step-halving reference and
its observed order), ``--sliding`` (``method="sliding"`` at several δ against a reference, with the step-halving estimate
and the target attempt), ``--long-step K`` (``sliding`` with and without ``options={"long_step": K}``, side by
side, against fixed steps of ``--ref-step``), ``--study``, ``--filippov``, ``--filippov-estimate``; see ``--help``.
"""

from __future__ import annotations

import argparse
import math
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.solve.nonsmooth import richardson_estimate


def setting(m: int, n: int, d: int = 50, seed: int = 0):
    X, y = gf.data.wei2019(n, d, seed=seed)
    net = gf.Network(d, width=m, activation="relu", embedding=gf.RandomFeatures(D=m), scaling="ours", seed=seed)
    return net, X, y


def run(m: int, n: int, t1: float, ref_step: float, rtol: float = 1e-3, coarse: float = 0.25) -> dict:
    net, X, y = setting(m, n)
    saveat = np.linspace(0.0, t1, 21)
    steps = round(t1 / coarse)
    t0 = time.perf_counter()
    gd = gf.gradient_descent(net, X, y, step=coarse, steps=steps, save_every=steps // 20, integrals=False)
    w_gd = time.perf_counter() - t0

    t0 = time.perf_counter()
    target = gf.simulate_nonsmooth(net, X, y, t1, saveat, step=coarse, rtol=rtol, max_wall_time=2 * w_gd,
                                   integrals=False, warn=False)
    w_target = time.perf_counter() - t0

    # every level from the coarse step down to ref_step (one solve each), timed
    levels, h = [], coarse
    while h >= ref_step * (1 - 1e-12):
        t0 = time.perf_counter()
        s = gf.simulate(net, X, y, t1, saveat, method="euler", step=h, integrals=False, warn=False)
        levels.append({"step": h, "loss": s.loss, "wall": time.perf_counter() - t0, "status": s.status})
        h /= 2
    ref = levels[-1]["loss"]
    ref_est = (richardson_estimate([lv["loss"] for lv in levels[-3:]], 1, smooth=False)["rel"]
               if len(levels) >= 3 else np.full(ref.shape, np.nan))
    rows = []
    for k in range(2, len(levels) - 1):
        est = richardson_estimate([lv["loss"] for lv in levels[k - 2:k + 1]], 1, smooth=False)
        true = np.abs(levels[k]["loss"] - ref) / ref
        rows.append({
            "finest_step": levels[k]["step"], "wall_three_levels": sum(lv["wall"] for lv in levels[k - 2:k + 1]),
            "est_max": float(est["rel"].max()), "est_final": float(est["rel"][-1]),
            "true_max": float(true.max()), "true_final": float(true[-1]),
            "bounded": bool(np.all(est["rel"][1:] + ref_est[1:] >= true[1:])),
            "observed_order": est["observed_order"], "reliable": est["reliable"],
        })
    gd_err = np.abs(gd.loss - ref) / ref if gd.loss.shape == ref.shape else None
    info = target.config["solver"]["error_estimate"]
    target_true = np.abs(target.loss - ref) / ref
    return {
        "m": m, "D": m, "n": n, "d": 50, "t1": t1, "rtol": rtol, "coarse_step": coarse, "ref_step": ref_step,
        "gd_wall": w_gd, "gd_final_loss": float(gd.loss[-1]),
        "gd_rel_error_final": None if gd_err is None else float(gd_err[-1]),
        "target": {"status": target.status, "message": target.message, "wall": w_target,
                   "wall_ratio_vs_gd": w_target / w_gd, "steps": info["steps"],
                   "est_max": info["max_rel_estimate"], "true_max_vs_ref": float(target_true.max()),
                   "met": bool(target.ok and info["max_rel_estimate"] <= rtol)},
        "levels": [{"step": lv["step"], "final_loss": float(lv["loss"][-1]), "wall": lv["wall"],
                    "status": lv["status"]} for lv in levels],
        "ref_estimate_max": float(np.nanmax(ref_est)),
        "estimates": rows,
    }


def filippov_study(m: int, n: int, t1: float, rtols=(1e-6, 1e-9)) -> dict:
    """The event-driven Filippov solver (``method="filippov"``) on the Exp 3 setting: cost against GD δ = 0.25,
    agreement between two tolerances (the tighter is the reference), and the true error of GD at several δ and of
    the Euler step-halving estimate against it."""
    net, X, y = setting(m, n)
    saveat = np.linspace(0.0, t1, 11)
    steps = round(t1 / 0.25)
    t0 = time.perf_counter()
    gd = gf.gradient_descent(net, X, y, step=0.25, steps=steps, save_every=steps // 10, integrals=False)
    w_gd = time.perf_counter() - t0
    sols = {}
    for rt in rtols:
        t0 = time.perf_counter()
        s = gf.simulate(net, X, y, t1, saveat, method="filippov", rtol=rt, atol=rt * 1e-3, max_steps=10**7,
                        integrals=False, warn=False)
        sols[rt] = (s, time.perf_counter() - t0)
    ref = sols[rtols[-1]][0]
    out = {"m": m, "D": m, "n": n, "t1": t1, "gd_wall": w_gd, "gd_final_loss": float(gd.loss[-1]), "filippov": []}
    for rt, (s, w) in sols.items():
        k = min(len(s.loss), len(ref.loss))
        out["filippov"].append({
            "rtol": rt, "status": s.status, "wall": w, "wall_ratio_vs_gd": w / w_gd, "final_loss": float(s.loss[-1]),
            "rel_diff_vs_tightest": float(np.max(np.abs(s.loss[:k] - ref.loss[:k]) / ref.loss[:k])),
            **{key: s.stats.get(key) for key in ("n_events", "n_arrivals", "n_exits", "n_sliding", "n_f_evals",
                                                   "n_accepted")}})
    if ref.ok:
        out["gd"] = []
        for delta in (0.25, 0.0625, 0.015625):
            k = round(t1 / delta)
            t0 = time.perf_counter()
            g = gf.gradient_descent(net, X, y, step=delta, steps=k, save_every=k // 10, integrals=False)
            out["gd"].append({"step": delta, "wall": time.perf_counter() - t0,
                              "rel_error_max": float(np.max(np.abs(g.loss - ref.loss) / ref.loss)),
                              "rel_error_final": float(abs(g.loss[-1] - ref.loss[-1]) / ref.loss[-1])})
        t0 = time.perf_counter()
        est = gf.simulate(net, X, y, t1, saveat, method="euler", step=0.25, error_estimate=True, integrals=False,
                          warn=False)
        true = np.abs(est.loss - ref.loss) / ref.loss
        out["euler_estimate"] = {"steps": [0.25, 0.125, 0.0625], "wall": time.perf_counter() - t0,
                                 "est_max": float(est.error_estimate.max()), "true_max": float(true.max()),
                                 "bounded": bool(np.all(est.error_estimate[1:] >= true[1:]))}
    return out


def long_step_study(m: int, n: int, t1: float, steps, k: float, ref_step: float) -> dict:
    """``method="sliding"`` with fixed-length steps δ and with long steps (``options={"long_step": k}``), side by
    side on the Exp 3 setting, against fixed steps of ``ref_step`` (whose own error is not measured): wall time,
    steps, long steps and their retries, and the relative loss error (max over 11 saved times)."""
    net, X, y = setting(m, n)
    saveat = np.linspace(0.0, t1, 11)

    def run(delta, long_step):
        t0 = time.perf_counter()
        s = gf.simulate(net, X, y, t1, saveat, method="sliding", step=delta, integrals=False, warn=False,
                        max_steps=10**8, options={"long_step": long_step})
        return s, time.perf_counter() - t0

    ref, w_ref = run(ref_step, 1.0)
    rows = []
    for d in sorted(steps, reverse=True):
        for long_step in (1.0, k):
            s, w = run(d, long_step)
            rows.append({"step": d, "long_step": long_step, "status": s.status, "wall": w,
                         "n_accepted": s.stats["n_accepted"], "n_exponential": s.stats["n_exponential"],
                         "n_long_retries": s.stats["n_long_retries"], "max_step": float(s.stats["max_step"]),
                         "rel_error": float(np.max(np.abs(s.loss / ref.loss - 1))), "final_loss": float(s.loss[-1])})
            print(f"  δ = {d:g}, long_step {long_step:g}: {w:.1f} s, {rows[-1]['n_accepted']} steps "
                  f"({rows[-1]['n_exponential']} long, {rows[-1]['n_long_retries']} retried), error "
                  f"{rows[-1]['rel_error']:.2e}", flush=True)
    return {"m": m, "D": m, "n": n, "t1": t1, "long_step": k,
            "reference": {"method": "sliding", "step": ref_step, "wall": w_ref, "final_loss": float(ref.loss[-1])},
            "rows": rows}


def long_levels(m: int, n: int, t1: float, steps, k: float, n_times: int = 81) -> dict:
    """A reference by step halving: ``sliding`` with long steps (``options={"long_step": k}``) at each δ of
    ``steps``, on the Exp 3 setting to t1 (n_times saved times): every level's loss and wall time, the relative
    differences of successive levels (max over the saved times, and at t1), their contraction ρ and observed order
    −log₂ρ, and the finest level's Richardson estimate of its own error, |L_{δ/2} − L_δ|·ρ/(1 − ρ)."""
    net, X, y = setting(m, n)
    saveat = np.linspace(0.0, t1, n_times)
    levels = []
    for d in sorted(steps, reverse=True):
        t0 = time.perf_counter()
        s = gf.simulate(net, X, y, t1, saveat, method="sliding", step=d, integrals=False, warn=False,
                        max_steps=10**8, options={"long_step": k})
        w = time.perf_counter() - t0
        levels.append({"step": d, "status": s.status, "wall": w, "loss": s.loss.tolist(),
                       "n_accepted": s.stats["n_accepted"], "n_exponential": s.stats["n_exponential"],
                       "n_long_retries": s.stats["n_long_retries"], "max_step": float(s.stats["max_step"])})
        print(f"  δ = {d:g}: {w:.1f} s, L(t1) = {s.loss[-1]:.6e}", flush=True)
    diffs = []
    for a, b in zip(levels, levels[1:]):
        la, lb = np.asarray(a["loss"]), np.asarray(b["loss"])
        rel = np.abs(la - lb) / np.abs(lb)
        diffs.append({"steps": [a["step"], b["step"]], "max": float(rel.max()), "at_t1": float(rel[-1])})
    out = {"m": m, "D": m, "n": n, "t1": t1, "long_step": k, "times": saveat.tolist(), "levels": levels,
           "differences": diffs}
    if len(diffs) >= 2:
        rho = diffs[-1]["at_t1"] / diffs[-2]["at_t1"]
        out["contraction_at_t1"] = rho
        out["observed_order_at_t1"] = float(-np.log2(rho)) if rho > 0 else math.inf
        out["finest_error_estimate_at_t1"] = diffs[-1]["at_t1"] * rho / (1 - rho) if rho < 1 else math.inf
        print(f"  at t1: differences {diffs[-2]['at_t1']:.2e}, {diffs[-1]['at_t1']:.2e} (order "
              f"{out['observed_order_at_t1']:.2f}); the finest level's estimated error {out['finest_error_estimate_at_t1']:.2e}")
    return out


def sliding_study(m: int, n: int, t1: float, steps, reference: str = "filippov", estimate_step: float | None = None,
                  target_rtol: float = 1e-3, target_budget: float = 2.0) -> dict:
    """``method="sliding"`` (Filippov time-stepping) on the Exp 3 setting, timed side by side with GD.

    For each step δ: sliding's wall time, products with G and relative loss error (max over 11 saved times) against
    the reference, with GD at the same δ; the step-halving estimate (``error_estimate=True``: steps δ_e, δ_e/2,
    δ_e/4) against its true error; and ``simulate_nonsmooth(method="sliding", step=0.25, rtol=target_rtol)`` within
    ``target_budget`` × GD(0.25)'s wall time (the issue's target: 2).
    ``reference``: ``"filippov"`` (event-driven, rtol 1e-9) or ``"self"`` (sliding at the finest step; then the
    errors of the coarser steps are differences, and the finest step's own error is not measured).
    """
    net, X, y = setting(m, n)
    saveat = np.linspace(0.0, t1, 11)

    def gd_run(delta):
        k = round(t1 / delta)
        t0 = time.perf_counter()
        g = gf.gradient_descent(net, X, y, step=delta, steps=k, save_every=max(1, k // 10), integrals=False)
        return g, time.perf_counter() - t0

    def sliding_run(delta, **kw):
        t0 = time.perf_counter()
        s = gf.simulate(net, X, y, t1, saveat, method="sliding", step=delta, integrals=False, warn=False,
                        max_steps=10**8, **kw)
        return s, time.perf_counter() - t0

    _, w_gd = gd_run(0.25)
    runs = {d: sliding_run(d) for d in sorted(steps, reverse=True)}
    if reference == "filippov":
        t0 = time.perf_counter()
        ref = gf.simulate(net, X, y, t1, saveat, method="filippov", rtol=1e-9, atol=1e-12, max_steps=10**8,
                          integrals=False, warn=False)
        w_ref = time.perf_counter() - t0
        ref_info = {"method": "filippov", "rtol": 1e-9, "wall": w_ref, "status": ref.status,
                    "n_events": ref.stats.get("n_events")}
    else:
        finest = min(runs)
        ref = runs[finest][0]
        ref_info = {"method": "sliding", "step": finest, "wall": runs[finest][1]}

    def rel(loss):
        k = min(len(loss), len(ref.loss))
        return float(np.max(np.abs(loss[:k] - ref.loss[:k]) / ref.loss[:k]))

    rows = []
    for d, (s, w) in runs.items():
        g, wg = gd_run(d)
        rows.append({"step": d, "status": s.status, "wall": w, "wall_ratio_vs_gd025": w / w_gd,
                     "products_with_G": s.stats["n_f_evals"], "rel_error": rel(s.loss),
                     "gd_rel_error": rel(g.loss), "gd_wall": wg, "final_loss": float(s.loss[-1]),
                     **{k: s.stats[k] for k in ("n_arrivals", "n_crossings", "n_exits", "n_pinned", "n_passes",
                                                "n_sliding")}})
        print(f"  sliding δ = {d:g}: {w:.1f} s ({w / w_gd:.0f}x GD(0.25)), error {rows[-1]['rel_error']:.2e}; "
              f"GD at δ: {rows[-1]['gd_rel_error']:.2e}", flush=True)
    out = {"m": m, "D": m, "n": n, "t1": t1, "gd025_wall": w_gd, "reference": ref_info, "steps": rows}
    if estimate_step is not None:
        s, w = sliding_run(estimate_step, error_estimate=True)
        true = np.abs(s.loss - ref.loss) / ref.loss
        out["estimate"] = {"steps": [estimate_step, estimate_step / 2, estimate_step / 4], "wall": w,
                           "wall_ratio_vs_gd025": w / w_gd, "est_max": float(s.error_estimate.max()),
                           "true_max": float(true.max()), "bounded": bool(np.all(s.error_estimate[1:] >= true[1:])),
                           "reference_independent": reference == "filippov"}
        print(f"  estimate from δ = {estimate_step:g}: {out['estimate']['est_max']:.2e} (true "
              f"{out['estimate']['true_max']:.2e}), {w:.1f} s", flush=True)
    if target_rtol:
        t0 = time.perf_counter()
        s = gf.simulate_nonsmooth(net, X, y, t1, saveat, method="sliding", step=0.25, rtol=target_rtol,
                                  integrals=False, warn=False, max_wall_time=target_budget * w_gd)
        w = time.perf_counter() - t0
        info = s.config["solver"]["error_estimate"]
        out["target"] = {"rtol": target_rtol, "budget_x_gd025": target_budget, "status": s.status, "wall": w,
                         "wall_ratio_vs_gd025": w / w_gd, "steps": info["steps"],
                         "est_max": float(s.error_estimate.max()),
                         "true_max_vs_ref": rel(s.loss) if s.ok else None,  # a stopped run ends off the grid
                         "met_accuracy": bool(s.error_estimate.max() <= target_rtol),
                         "within_2x_gd": w <= 2 * w_gd}
        print(f"  rtol {target_rtol:g}: [{s.status}] {w:.1f} s = {w / w_gd:.0f}x GD(0.25), steps {info['steps']}, "
              f"estimate {out['target']['est_max']:.2e}, error vs reference {out['target']['true_max_vs_ref']}",
              flush=True)
    return out


def filippov_estimate_study(t1: float = 10.0) -> list[dict]:
    """``method="filippov", error_estimate=True`` at rtol 1e-4, 1e-6, 1e-8 against rtol 1e-13 on small random P-3L
    problems (ReLU and leaky ReLU): does the estimate bound the true relative loss error?"""
    rows = []
    for act in ("relu", "leaky_relu"):
        a = "relu" if act == "relu" else gf.get_activation("leaky_relu", slope=0.1)
        for m, D, n, seed in ((32, 16, 8, 0), (64, 32, 16, 1), (48, 48, 12, 2), (64, 20, 20, 3)):
            X, y = gf.data.wei2019(n, D, seed=seed)
            net = gf.Network(D, width=m, activation=a, embedding=gf.RandomFeatures(D=D, seed=seed), seed=seed)
            sv = np.linspace(0.0, t1, 11)
            ref = gf.simulate(net, X, y, t1, sv, method="filippov", rtol=1e-13, atol=1e-15, max_steps=10**7)
            for rt in (1e-4, 1e-6, 1e-8):
                sol = gf.simulate(net, X, y, t1, sv, method="filippov", rtol=rt, atol=rt * 1e-2, error_estimate=True,
                                  max_steps=10**7)
                true = np.abs(sol.loss - ref.loss) / ref.loss
                rows.append({"activation": act, "m": m, "D": D, "n": n, "seed": seed, "rtol": rt,
                             "n_events": sol.stats["n_events"], "true_max": float(true.max()),
                             "est_max": float(sol.error_estimate.max()),
                             "ratio_min": float(np.min(sol.error_estimate[1:] / np.maximum(true[1:], 1e-300)))})
                r = rows[-1]
                print(f"  {act:10s} m={m:<3d} n={n:<3d} rtol {rt:g}: true {r['true_max']:.1e} estimate "
                      f"{r['est_max']:.1e} min est/true {r['ratio_min']:.1f}", flush=True)
    print(f"bounded in {sum(r['ratio_min'] >= 1 for r in rows)} of {len(rows)}")
    return rows


def study(t1: float = 10.0, coarse: float = 0.1, ref_factor: int = 256, reference: str = "euler") -> list[dict]:
    """Convergence study: the estimate (steps h, h/2, h/4) against a reference at h/ref_factor, on small random
    P-3L problems (relu and leaky relu).  ``ratio_min`` = min over saved times t > 0 of estimate / true error
    (≥ 1: bounded; the reference's own estimate is reported next to it)."""
    rows = []
    for act in ("relu", "leaky_relu"):
        activation = "relu" if act == "relu" else gf.get_activation("leaky_relu", slope=0.1)
        for m, D, n, seed in ((64, 20, 10, 0), (256, 64, 50, 1), (128, 32, 30, 2), (256, 20, 50, 3)):
            X, y = gf.data.wei2019(n, D, seed=seed)
            net = gf.Network(D, width=m, activation=activation, embedding=gf.RandomFeatures(D=D, seed=seed),
                             seed=seed)
            sv = np.linspace(0.0, t1, 11)
            sol = gf.simulate(net, X, y, t1, sv, method="euler", step=coarse, error_estimate=True,
                              integrals=False)
            if reference == "filippov":
                ref = gf.simulate(net, X, y, t1, sv, method="filippov", rtol=1e-10, atol=1e-12, error_estimate=True,
                                  max_steps=10**7)
            else:
                ref = gf.simulate_nonsmooth(net, X, y, t1, sv, step=coarse * 4 / ref_factor, integrals=False)
            true = np.abs(sol.loss - ref.loss) / ref.loss
            est = sol.error_estimate
            rows.append({"activation": act, "m": m, "D": D, "n": n, "seed": seed,
                         "est_max": float(est.max()), "true_max": float(true.max()),
                         "ratio_min": float(np.min(est[1:] / np.maximum(true[1:], 1e-300))),
                         "ref_est_max": float(ref.error_estimate.max()),
                         "observed_order": sol.config["solver"]["error_estimate"]["observed_order"]})
            r = rows[-1]
            print(f"  {act:10s} m={m:<4d} D={D:<3d} n={n:<3d} estimate {r['est_max']:.2e} true {r['true_max']:.2e} "
                  f"min est/true {r['ratio_min']:.2f} (reference's own estimate {r['ref_est_max']:.1e}, "
                  f"observed order {r['observed_order']:.2f})", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="m = D = 64, n = 24, t1 = 10 (the test suite runs this)")
    p.add_argument("--m", type=int, default=512)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--t1", type=float, default=200.0)
    p.add_argument("--ref-step", type=float, default=0.25 / 32)
    p.add_argument("--out", default="bench-relu")
    p.add_argument("--study", action="store_true", help="only the convergence study on small random problems")
    p.add_argument("--reference", choices=("euler", "filippov", "self"), default="euler",
                   help="--study: reference solutions from a 64× finer Euler step, or method='filippov' at rtol 1e-10; "
                        "--sliding: 'filippov' (rtol 1e-9) or 'self' (sliding at the finest step)")
    p.add_argument("--filippov-estimate", action="store_true",
                   help="only: does filippov's error_estimate bound the true error (small random problems)")
    p.add_argument("--filippov", action="store_true",
                   help="only the event-driven Filippov solver on the Exp 3 setting (--m, --n, --t1)")
    p.add_argument("--sliding", action="store_true",
                   help="only method='sliding' on the Exp 3 setting (--m, --n, --t1), against --reference")
    p.add_argument("--steps", default="0.25,0.125,0.0625,0.03125",
                   help="--sliding, --long-step: the steps δ, comma-separated")
    p.add_argument("--long-step", type=float, default=None,
                   help="only: method='sliding' with fixed steps δ and with options={'long_step': K}, side by side on "
                        "the Exp 3 setting (--m, --n, --t1, --steps), against fixed steps of --ref-step")
    p.add_argument("--long-levels", action="store_true",
                   help="only: a reference by step halving, method='sliding' with options={'long_step': K} (K from "
                        "--long-step, default 64) at each of --steps, its differences and observed order")
    p.add_argument("--estimate-step", type=float, default=None, help="--sliding: δ_e of the step-halving estimate")
    p.add_argument("--target-rtol", type=float, default=1e-3, help="--sliding: simulate_nonsmooth's rtol (0: skip)")
    p.add_argument("--target-budget", type=float, default=2.0,
                   help="--sliding: its wall-time budget in multiples of GD(0.25)'s (the target: 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.long_levels:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res = long_levels(args.m, args.n, args.t1, [float(x) for x in args.steps.split(",")], args.long_step or 64.0)
        res.update({"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1},
                    "versions": gf.solution.versions(), "dtype": "float64", "seeds": {"network": 0, "data": 0}})
        (out / f"relu_long_levels_m{args.m}_n{args.n}_t{args.t1:g}.json").write_text(json.dumps(res, indent=2,
                                                                                             default=float))
        return res
    if args.long_step is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res = long_step_study(args.m, args.n, args.t1, [float(x) for x in args.steps.split(",")], args.long_step,
                              args.ref_step)
        res.update({"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1},
                    "versions": gf.solution.versions(), "dtype": "float64", "seeds": {"network": 0, "data": 0}})
        (out / f"relu_long_m{args.m}_n{args.n}_t{args.t1:g}.json").write_text(json.dumps(res, indent=2, default=float))
        return res
    if args.sliding:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        reference = "filippov" if args.reference == "filippov" else "self"
        res = sliding_study(args.m, args.n, args.t1, [float(x) for x in args.steps.split(",")], reference,
                            args.estimate_step, args.target_rtol, args.target_budget)
        res.update({"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": 1},
                    "versions": gf.solution.versions(), "dtype": "float64", "seeds": {"network": 0, "data": 0}})
        (out / f"relu_sliding_m{args.m}_n{args.n}_t{args.t1:g}.json").write_text(json.dumps(res, indent=2,
                                                                                            default=float))
        return res
    if args.study:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = study(reference=args.reference)
        (out / f"relu_study_{args.reference}.json").write_text(json.dumps(rows, indent=2, default=float))
        return rows
    if args.filippov_estimate:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rows = filippov_estimate_study()
        (out / "relu_filippov_estimate.json").write_text(json.dumps(rows, indent=2, default=float))
        return rows
    if args.filippov:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res = filippov_study(args.m, args.n, args.t1)
        (out / f"relu_filippov_m{args.m}_n{args.n}_t{args.t1:g}.json").write_text(json.dumps(res, indent=2,
                                                                                             default=float))
        print(json.dumps(res, indent=1, default=float))
        return res
    m, n, t1, ref_step = (64, 24, 10.0, 0.25 / 16) if args.quick else (args.m, args.n, args.t1, args.ref_step)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "device": "cpu",
                          "threads": 1, "note": "shared 2-core machine, loaded by other jobs: ratios only"},
              "versions": gf.solution.versions(), "dtype": "float64", "seeds": {"network": 0, "data": 0},
              "problem": run(m, n, t1, ref_step)}
    (out / "relu.json").write_text(json.dumps(result, indent=2, default=float))
    pr = result["problem"]
    tg = pr["target"]
    print(f"Exp 3 setting m = D = {m}, n = {n}, t1 = {t1:g}: GD δ = 0.25 {pr['gd_wall']:.1f} s "
          f"(rel. loss error at t1 {pr['gd_rel_error_final']:.2e} vs the δ = {ref_step:g} reference)")
    print(f"target rtol {pr['rtol']:g} within 2x GD: {'MET' if tg['met'] else 'MISSED'} [{tg['status']}] — "
          f"{tg['wall']:.1f} s ({tg['wall_ratio_vs_gd']:.2f}x GD), steps {tg['steps']}, estimate "
          f"{tg['est_max']:.2e}, error vs reference {tg['true_max_vs_ref']:.2e}")
    for lv in pr["levels"]:
        print(f"  euler step {lv['step']:<10g} loss(t1) {lv['final_loss']:.6f}  {lv['wall']:.1f} s")
    for row in pr["estimates"]:
        print(f"  finest {row['finest_step']:<10g} estimate max {row['est_max']:.2e}  true max {row['true_max']:.2e}"
              f"  bounded {row['bounded']}  observed order {row['observed_order']:.2f}")
    print(f"  reference (step {ref_step:g}) own estimate: {pr['ref_estimate_max']:.2e}")
    return result


if __name__ == "__main__":
    main()
