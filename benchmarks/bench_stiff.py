"""Long-horizon, stiff flows: the exponential method exprk4 against the best explicit method (scipy DOP853).

Experiment-1-like shallow tanh nets (gf.data.random_labels, d = 20, m = 256, n = 20, 40, 80, 160) integrated
to t1 = 2000 and 50 000 (issue 6, item 2), and a P-3L case (erf on D = 64 random features, m = 128, n = 80,
random labels; the loss creeps from 3.7 to about 5e-6 by t1 = 50 000).  For each problem a reference is computed with DOP853 at
rtol = 1e-12 and checked against exprk4 at a tight tolerance (their disagreement is reported).  For each
method and tolerance: the relative error of L(t1) (of log L(t1) where L < 1e-12), the evaluations, the flops
(G-products, BᵀB and the eigenproblems for exprk4, evaluations × flops per evaluation for DOP853, each in the
cheaper space) and the wall time.  Summary: the cheapest run of each method reaching a relative error of 1e-6,
and the flop ratio DOP853 / exprk4 (> 1: exprk4 cheaper).  DOP853 runs in the space gf.simulate picks (weight
space for n > 2D), exprk4 in feature space with G applied in factored form when D < n/2.

    python benchmarks/bench_stiff.py [--quick] [--out DIR] [--n 20 40] [--t1 2000 50000] [--case exp1 p3l]
                                     [--reuse-explicit OLD/stiff_summary.json] [--exp-method dop853+exprk4]
                                     [--explicit-space auto|feature]

Each (case, n, t1) is written to DIR/stiff_[p3l_]n{n}_t{t1}.json as it finishes; DIR/stiff_summary.{json,md}
collects all the files present in DIR (so problems may be run in separate processes).  ``--reuse-explicit``
takes the reference and the DOP853 rows of a problem from an earlier summary (same case, n, m, t1) and runs
only exprk4 (and its tight-tolerance check): for re-measuring exprk4 alone; the flop ratios stay exact, the wall
ratios then compare runs made at different times (machine load differs).  ``--exp-method`` measures
``dop853+exprk4`` (what ``method="auto"`` runs on these problems: DOP853 while the features move, exprk4 from the
hand-over) or ``dopri5+exprk4`` in exprk4's place; the tables then name it.  ``--explicit-space``: the space of
that explicit phase — ``auto`` is what gf.simulate runs (weight space where its smaller state makes it faster,
:func:`gflow.fields.auto_space`), ``feature`` the one with fewer flops where 2D > n (Exp 1 at n = 20, P-3L), which
is the space the reused DOP853 rows were counted in there.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.fields import Problem
from gflow.solve.expint import auto_method

TARGET = 1e-6
LOG_BELOW = 1e-12  # below this loss, errors are measured on log L
FLOOR_EPS = 1024 * 2.0**-52  # below L ≈ n·(FLOOR_EPS·max|y|)², r is rounding noise: compare H instead
# (64ε was too low: two DOP853 rtol-1e-12 runs of the n = 20 problem ended at L = 2.4e-28 and 2.5e-27)


def error(sol, ref, floor: float) -> tuple[float, str]:
    """(relative error, what was measured): L(t1); log L(t1) below 1e-12; H(t1) at the rounding floor.

    Below L ≈ floor the residual r = f − y is rounding noise (|δr| ≈ ε|y|), so L and log L carry no information;
    the features H(t1) then are the state to compare (‖H − H_ref‖ / ‖H_ref − H(0)‖).
    """
    loss, L = float(sol.loss[-1]), float(ref.loss[-1])
    if not sol.ok or not (math.isfinite(loss) and loss >= 0):
        return math.inf, "failed"
    if L < floor:
        dH = np.linalg.norm(sol.H[-1] - ref.H[-1]) / np.linalg.norm(ref.H[-1] - ref.H[0])
        return float(dH), "H"
    if L < LOG_BELOW:
        return abs(math.log(max(loss, 1e-300)) - math.log(L)) / abs(math.log(L)), "log L"
    return abs(loss - L) / L, "L"


def flops(sol) -> float:
    st = sol.stats
    return float(st["flops"]) if "flops" in st else float(st["n_f_evals"] * st["flops_per_eval"])


def solve(net, X, y, t1, method, rtol, max_wall, space="auto"):
    t = time.perf_counter()
    sol = gf.simulate(net, X, y, saveat=[0.0, t1], method=method, rtol=rtol, atol=rtol * 1e-6, integrals=False,
                      max_steps=10**7, max_wall_time=max_wall, warn=False, space=space)
    return sol, time.perf_counter() - t


CASES = ("exp1", "p3l")


def build(case: str, n: int, m: int):
    """(net, X, y) of a case: Experiment 1 (shallow tanh) or P-3L (erf on D = 64 random features)."""
    X, y = gf.data.random_labels(n=n, d=20, seed=0)
    if case == "p3l":
        return gf.Network(d=20, width=m, activation="erf", embedding=gf.RandomFeatures(D=64), seed=0), X, y
    return gf.Network(d=20, width=m, activation="tanh", seed=0), X, y


def _row(method, rtol, sol, wall, ref, floor):
    err, measured = error(sol, ref, floor)
    return {"method": method, "rtol": rtol, "status": sol.status, "loss_t1": float(sol.loss[-1]),
            "rel_err": err, "measured": measured, "n_f_evals": sol.stats["n_f_evals"],
            "n_steps": sol.stats["n_steps"], "n_linearizations": sol.stats.get("n_linearizations"),
            "flops": flops(sol), "wall_s": wall, "space": sol.config["space"], "last_step": sol.stats["last_step"],
            **({"explicit_space": sol.stats["explicit_space"]} if "explicit_space" in sol.stats else {}),
            **({"switch_time": sol.stats["switch_time"]} if "switch_time" in sol.stats else {})}


class _Ref:
    """The parts of a reference Solution that error() reads, rebuilt from a stored summary."""

    def __init__(self, loss_t1: float):
        self.loss = np.array([loss_t1])


def run_problem(n: int, t1: float, m: int, quick: bool, max_wall: float, case: str = "exp1",
                reuse: dict | None = None, exp_method: str = "exprk4", explicit_space: str = "auto") -> dict:
    net, X, y = build(case, n, m)
    floor = 0.5 * n * (FLOOR_EPS * float(np.abs(y).max())) ** 2
    if reuse is not None and float(reuse["reference"]["loss_t1"]) >= floor:
        ref, ref_wall = _Ref(reuse["reference"]["loss_t1"]), reuse["reference"]["wall_s"]
        ref_info = {k: reuse["reference"][k] for k in ("n_f_evals", "flops", "status")}
        lam = (reuse["lam_min_M0"], reuse["lam_max_M0"], reuse["lam_max_M_t1"])
    else:
        ref, ref_wall = solve(net, X, y, t1, "DOP853", 1e-12, 10 * max_wall)
        ref_info = {"n_f_evals": ref.stats["n_f_evals"], "flops": flops(ref), "status": ref.status}
        lam = (float(ref.lam_min_M[0]), float(ref.lam_max_M[0]), float(ref.lam_max_M[-1]))
    check_tol = 1e-10 if quick else (1e-11 if (n <= 40 or t1 <= 2000) else 1e-10)
    check, _ = solve(net, X, y, t1, "exprk4", check_tol, 10 * max_wall)
    L_ref = float(ref.loss[-1])
    EXP = exp_method
    if quick:
        tols = {"DOP853": [1e-5, 1e-7], EXP: [1e-6, 1e-8]}
    elif t1 > 2000:
        tols = {"DOP853": [1e-4, 1e-5, 1e-7, 1e-9, 1e-11] if case == "exp1" else [1e-4, 1e-6, 1e-8],
                EXP: [1e-2, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-7]}
    else:
        tols = {"DOP853": [1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-11],
                EXP: [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8]}
    rows = []
    if reuse is not None:  # (the reference is recomputed where errors are on H: the same deterministic run)
        rows = [r for r in reuse["rows"] if r["method"] == "DOP853"]
        tols = {"DOP853": sorted({r["rtol"] for r in rows}), EXP: tols[EXP]}
    for method, rts in tols.items():
        if reuse is not None and method == "DOP853":
            continue
        for rtol in rts:
            sol, wall = solve(net, X, y, t1, method, rtol, max_wall, explicit_space if method == EXP else "auto")
            rows.append(_row(method, rtol, sol, wall, ref, floor))
            print(f"  {case} n={n} t1={t1:g} {method:13s} rtol={rtol:.0e} err={rows[-1]['rel_err']:.2e} "
                  f"evals={rows[-1]['n_f_evals']} GF={rows[-1]['flops'] / 1e9:.3g} wall={wall:.1f}s", flush=True)
    best = {}
    for method in tols:
        ok = [r for r in rows if r["method"] == method and r["rel_err"] <= TARGET]
        best[method] = min(ok, key=lambda r: r["flops"]) if ok else None
    ratio = (best["DOP853"]["flops"] / best[EXP]["flops"]) if best["DOP853"] and best[EXP] else None
    wall_ratio = (best["DOP853"]["wall_s"] / best[EXP]["wall_s"]) if ratio else None
    switch = [r.get("switch_time") for r in rows if r["method"] == EXP]
    pb = Problem.from_data(net, X, y)
    t = time.perf_counter()
    auto = auto_method(pb, t1, TARGET)  # (at the loss-error target: auto keeps to DOP853 below rtol 1e-10)
    auto_s = time.perf_counter() - t
    return {"case": case, "n": n, "m": m, "d": 20, "D": net.D, "t1": t1,
            "activation": "erf" if case == "p3l" else "tanh", "seed": 0,
            "explicit_rows_reused": reuse is not None,
            "reference": {"method": "DOP853", "rtol": 1e-12, "loss_t1": L_ref, **ref_info, "wall_s": ref_wall,
                          "check_method": f"exprk4 rtol {check_tol:g}", "check_status": check.status,
                          "check_rel_diff": error(check, ref, floor)[0], "measured": error(check, ref, floor)[1],
                          "rounding_floor_L": floor},
            "lam_min_M0": lam[0], "lam_max_M0": lam[1], "lam_max_M_t1": lam[2],
            "exp_method": EXP, "switch_times": switch if EXP != "exprk4" else None,
            "explicit_space_option": explicit_space,
            "rows": rows, "cheapest_to_target": {"DOP853": best["DOP853"], "exprk4": best[EXP]},
            "flop_ratio_dop853_over_exprk4": ratio,
            "wall_ratio_dop853_over_exprk4": wall_ratio, "auto_method": list(auto), "auto_seconds": auto_s}


def _exp_tag(r: dict) -> str:
    m = r.get("exp_method", "exprk4")
    return "" if m == "exprk4" else f" ({m})"


def summarize(out: Path) -> str:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("stiff_*n*_t*.json"))]
    results.sort(key=lambda r: (r.get("case", "exp1"), r["t1"], r["n"]))
    lines = [(f"Relative error target {TARGET:g} in L(t1) (in log L where L < {LOG_BELOW:g}; in H(t1) where L is at "
              "the rounding floor); cheapest run of each method that reaches it."), "",
             "A * on the wall ratio: the DOP853 rows were reused from an earlier run (not side by side).", "",
             "The exponential column is exprk4 unless the row names dop853+exprk4 (DOP853 until the hand-over).", "",
             ("| case | n | t1 | L(t1) (error on) | ref check | DOP853 evals / GFLOP | exprk4 evals / GFLOP | flop ratio | wall ratio "
             "| t1·λ_min(M₀) | t1·λ_max(M₀) | auto |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b = r["cheapest_to_target"]

        def cell(x):
            return "not reached" if x is None else f"{x['n_f_evals']} / {x['flops'] / 1e9:.3g}"

        ratio = r["flop_ratio_dop853_over_exprk4"]
        wr = r["wall_ratio_dop853_over_exprk4"]
        lines.append(
            f"| {r.get('case', 'exp1')} | {r['n']} | {r['t1']:g} | {r['reference']['loss_t1']:.3e} ({r['reference']['measured']}) "
            f"| {r['reference']['check_rel_diff']:.1e} "
            f"| {cell(b['DOP853'])} | {cell(b['exprk4'])}{_exp_tag(r)} | {'—' if ratio is None else f'{ratio:.2f}'} "
            f"| {'—' if wr is None else f'{wr:.2f}'}{'*' if r.get('explicit_rows_reused') and wr else ''} | {r['t1'] * r['lam_min_M0']:.3g} | "
            f"{r['t1'] * r['lam_max_M0']:.3g} | {r['auto_method'][0]} |")
    text = "\n".join(lines) + "\n"
    (out / "stiff_summary.md").write_text(text)
    (out / "stiff_summary.json").write_text(json.dumps({
        "machine": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
        "torch": torch.__version__, "gflow": gf.__version__, "dtype": "float64", "threads": 1,
        "problems": results}, indent=1))
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny problems (n = 8, m = 32, t1 = 200): seconds")
    p.add_argument("--out", type=Path, default=Path("bench_out"))
    p.add_argument("--n", type=int, nargs="+", default=None)
    p.add_argument("--t1", type=float, nargs="+", default=None)
    p.add_argument("--m", type=int, default=None)
    p.add_argument("--max-wall", type=float, default=300.0, help="wall-time budget per solve (s)")
    p.add_argument("--case", nargs="+", choices=CASES, default=None,
                   help="exp1 (shallow tanh, n = 20..160) and/or p3l (erf, random features, n = 80, t1 = 50 000)")
    p.add_argument("--reuse-explicit", type=Path, default=None,
                   help="an earlier stiff_summary.json: reuse its reference and DOP853 rows, run exprk4 only")
    p.add_argument("--exp-method", default="exprk4", choices=("exprk4", "dop853+exprk4", "dopri5+exprk4"),
                   help="the exponential method measured against DOP853 (default exprk4)")
    p.add_argument("--explicit-space", default="auto", choices=("auto", "feature"),
                   help="space of a switching method's explicit phase: auto (what gf.simulate runs: weight space "
                        "where that is faster) or feature (fewer flops where 2D > n)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    ns = args.n or ([8] if args.quick else [20, 40, 80, 160])
    t1s = args.t1 or ([200.0] if args.quick else [2000.0, 50_000.0])
    m = args.m or (32 if args.quick else 256)
    cases = args.case or (["exp1"] if args.quick else list(CASES))
    old = {}
    if args.reuse_explicit is not None:
        for r in json.loads(args.reuse_explicit.read_text())["problems"]:
            old[(r.get("case", "exp1"), r["n"], r["m"], r["t1"])] = r
    for case in cases:
        if case == "p3l" and not args.quick:  # the P-3L long-horizon case: n = 80, m = 128, t1 = 50 000
            problems = [(n, args.m or 128, t1) for t1 in t1s if t1 > 2000 for n in (args.n or [80])]
        else:
            problems = [(n, m, t1) for t1 in t1s for n in ns]
        for n, mm, t1 in problems:
            res = run_problem(n, t1, mm, args.quick, args.max_wall, case, old.get((case, n, mm, t1)), args.exp_method,
                              args.explicit_space)
            stem = "stiff_" + ("p3l_" if case == "p3l" else "") + f"n{n}_t{t1:g}.json"
            (args.out / stem).write_text(json.dumps(res, indent=1))
    print(summarize(args.out))


if __name__ == "__main__":
    main()
