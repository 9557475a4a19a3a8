"""Does ``error_estimate=True`` bound the error of the smooth adaptive solvers?  (gflow/solve/estimate.py)

Each problem is solved with ``error_estimate=True`` by ``dop853``, ``exprk4``, ``dop853+exprk4`` and ``auto`` at
rtol 1e-3, 1e-4, 1e-6, 1e-8 (default atol), and the estimate is compared with the true relative loss error at 21
saved times: against the closed form L(t) = ½ r₀ᵀ exp(−2ĉ²Gt) r₀ for a linear σ (G regular, n < d, to L = 4e-22;
G singular, n > d), and against exprk4 at rtol 1e-12, atol 1e-30 otherwise (tanh to L = 1e-22 at t = 500 and over
t = 2 000; erf on random features; tanh under the NTK and mean-field scalings).  Saved times whose true error is
below 1e-12 (the references' own precision) or whose estimate is inf (no relative accuracy claimed) are left out.
Reported per run: the worst true/estimate (≤ 1: the estimate bounds the error), where, and the evaluations of both
solves over those of the returned one.  A second table measures what the estimate's second solve is made of for
``dopri5`` (refused): the two-tolerance difference × 2 against the true error.

    python benchmarks/bench_estimate.py [--quick] [--out DIR]

Output: ``estimate.json`` and ``estimate.md`` in ``--out`` (default benchmarks/results/estimate/).  Full mode
≈ 10 min on one thread; ``--quick`` (one linear problem, dop853 and exprk4 at one rtol) a few seconds.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.bench._common import machine, versions
from gflow.solve.estimate import ESTIMATE_SAFETY, difference_estimate

METHODS = ("dop853", "exprk4", "dop853+exprk4", "auto")
RTOLS = (1e-3, 1e-4, 1e-6, 1e-8)
PRECISION = 1e-12


def closed_form(net, X, r0, times):
    """L(t) = ½ r₀ᵀ exp(−2ĉ²Gt) r₀ (EQUATIONS.md (E5)): a linear σ under the paper's scaling."""
    w, V = np.linalg.eigh(net.gram(X).numpy())
    q = V.T @ r0
    c2 = float(np.mean(net.c.numpy() ** 2))
    return np.array([0.5 * np.sum(q ** 2 * np.exp(-2.0 * c2 * w * t)) for t in times])


def problems(quick: bool):
    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    yield ("linear, G regular (n = 4, d = 10), t ≤ 160", gf.Network(d=10, width=16, activation="linear", seed=1),
           X, y, 160.0)
    if quick:
        return
    X, y = gf.data.random_labels(n=8, d=4, seed=2)
    yield ("linear, G singular (n = 8, d = 4), t ≤ 100", gf.Network(d=4, width=16, activation="linear", seed=2),
           X, y, 100.0)
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    yield "tanh n = 20, d = 20, m = 128, t ≤ 500", gf.Network(d=20, width=128, activation="tanh", seed=0), X, y, 500.0
    X, y = gf.data.random_labels(n=40, d=20, seed=0)
    yield "tanh n = 40, d = 20, m = 128, t ≤ 2000", gf.Network(d=20, width=128, activation="tanh", seed=0), X, y, 2000.0
    X, y = gf.data.random_labels(n=20, d=10, seed=3)
    yield ("erf P-3L D = 32, m = 64, n = 20, t ≤ 200",
           gf.Network(d=10, width=64, activation="erf", embedding=gf.RandomFeatures(D=32), seed=3), X, y, 200.0)
    X, y = gf.data.random_labels(n=10, d=5, seed=4)
    yield ("tanh mf n = 10, m = 64, t ≤ 50", gf.Network(d=5, width=64, activation="tanh", scaling="mf", seed=4),
           X, y, 50.0)
    X, y = gf.data.random_labels(n=10, d=5, seed=5)
    yield ("tanh ntk n = 10, m = 64, t ≤ 200",
           gf.Network(d=5, width=64, activation="tanh", scaling="ntk", seed=5), X, y, 200.0)


def reference(name, net, X, y, t1, ts):
    if name.startswith("linear"):
        base = gf.simulate(net, X, y, t1, ts, method="dop853", rtol=1e-6, integrals=False)
        return closed_form(net, X, base.residual[0], ts)
    return gf.simulate(net, X, y, t1, ts, method="exprk4", rtol=1e-12, atol=1e-30, integrals=False).loss


def worst(true, est, ts):
    mask = (true > PRECISION) & np.isfinite(est)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(mask, true / np.where(est > 0, est, np.nan), 0.0)
    k = int(np.nanargmax(r)) if np.any(mask) else 0
    return float(np.nan_to_num(r[k], nan=np.inf)), float(ts[k]), float(true[k]), float(est[k])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/estimate"))
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args) -> dict:
    methods, rtols = (("dop853", "exprk4"), (1e-6,)) if args.quick else (METHODS, RTOLS)
    rows, refused, start = [], [], time.perf_counter()
    for name, net, X, y, t1 in problems(args.quick):
        ts = np.linspace(0.0, t1, 21)
        ref = reference(name, net, X, y, t1, ts)
        for method in methods:
            for rtol in rtols:
                s = gf.simulate(net, X, y, t1, ts, method=method, rtol=rtol, integrals=False, error_estimate=True)
                true = np.abs(s.loss - ref) / ref
                ratio, t, tr, es = worst(true, s.error_estimate, ts)
                rows.append({"problem": name, "method": method, "ran": s.config["solver"]["method"], "rtol": rtol,
                             "worst_true_over_estimate": ratio, "at_t": t, "true": tr, "estimate": es,
                             "max_true": float(true.max()), "status": s.status,
                             "evals_ratio": s.stats["n_f_evals"] / s.stats["n_f_evals_returned"]})
                print(f"{name:44s} {method:14s} {rtol:.0e}: worst true/est {ratio:.3f} (t = {t:.4g}, true {tr:.1e}, "
                      f"est {es:.1e}); evals ×{rows[-1]['evals_ratio']:.2f}", flush=True)
        for rtol in rtols:  # dopri5: what its second solve would say (2× the difference, as filippov's)
            tight = gf.simulate(net, X, y, t1, ts, method="dopri5", rtol=rtol, integrals=False)
            loose = gf.simulate(net, X, y, t1, ts, method="dopri5", rtol=32 * rtol, atol=32e-9, integrals=False)
            est = difference_estimate(tight, loose.loss, ESTIMATE_SAFETY)
            ratio, t, tr, es = worst(np.abs(tight.loss - ref) / ref, est, ts)
            refused.append({"problem": name, "rtol": rtol, "worst_true_over_estimate": ratio, "at_t": t, "true": tr,
                            "estimate": es})
    out = {"machine": machine(), "versions": versions(), "quick": args.quick, "runs": rows, "dopri5": refused,
           "wall_s": time.perf_counter() - start}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimate.json").write_text(json.dumps(out, indent=1))
    ratios = [r["worst_true_over_estimate"] for r in rows]
    lines = ["# error_estimate=True on the smooth adaptive solvers (benchmarks/bench_estimate.py)", "",
             f"{len(rows)} runs; worst true/estimate: median {np.median(ratios):.3g}, max {max(ratios):.3g} "
             f"({sum(x > 1 for x in ratios)} above 1); both solves' evaluations over the returned one's "
             f"{min(r['evals_ratio'] for r in rows):.2f}–{max(r['evals_ratio'] for r in rows):.2f}.", "",
             "| problem | method (ran) | rtol | worst true/estimate | at t | true | estimate |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['problem']} | {r['method']} ({r['ran']}) | {r['rtol']:.0e} | "
              f"{r['worst_true_over_estimate']:.3g} | {r['at_t']:.4g} | {r['true']:.2e} | {r['estimate']:.2e} |"
              for r in rows]
    lines += ["", "dopri5 (refused): 2× the difference of two solves 32× apart against the true error", "",
              "| problem | rtol | worst true/estimate | at t | true | estimate |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['problem']} | {r['rtol']:.0e} | {r['worst_true_over_estimate']:.3g} | {r['at_t']:.4g} | "
              f"{r['true']:.2e} | {r['estimate']:.2e} |" for r in refused]
    (args.out / "estimate.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    main()
