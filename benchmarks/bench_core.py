"""Core-engine speed, measured side by side in one run (ratios, not absolute times, are the result).

1. One right-hand-side evaluation in weight space (≈ 4mDn flops) and feature space (≈ 2mn² flops), with the
   measured ratio next to the flop-count ratio 2D/n.
2. Time per step of ``gf.gradient_descent`` against the peer a researcher writes by hand: a plain PyTorch
   loop with autograd in weight space (``peer_autograd_gd`` below).
3. The demo problem (Experiment 1, d = n = 20, m = 1024, to t1 = 100 where L ≈ 1e-6) with each solver: evaluations,
   wall time, and the share of wall time spent outside the right-hand side (solver overhead).

    python benchmarks/bench_core.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

import gflow as gf


def _best(fn, repeats: int, inner: int) -> float:
    """Best-of-``repeats`` mean seconds per call over ``inner`` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def peer_autograd_gd(W0, c, Phi, y, m, D, step, steps):
    """The hand-written peer: weight-space GD with autograd, W ← W − mδ ∂L/∂W (eq. (9), paper's scaling)."""
    W = W0.clone().requires_grad_(True)
    for _ in range(steps):
        h = (W @ Phi.T) / D**0.5
        f = torch.tanh(h).T @ c / m
        loss = 0.5 * ((f - y) ** 2).sum()
        (g,) = torch.autograd.grad(loss, W)
        with torch.no_grad():
            W -= m * step * g
    return W.detach()


def bench_rhs(sizes, repeats):
    rows = []
    for m, D, n in sizes:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((n, D)), rng.uniform(-0.5, 0.5, n)
        net = gf.Network(d=D, width=m, activation="tanh", seed=0)
        pb = gf.Problem.from_data(net, X, y)
        out = {"m": m, "D": D, "n": n}
        for space in ("weight", "feature"):
            f = gf.make_field(pb, space)
            s = f.initial_state()
            sec = _best(lambda: f(0.0, s), repeats, 5)
            out[f"{space}_s"] = sec
            out[f"{space}_gflops"] = f.flops_per_eval() / sec / 1e9
        out["speedup"] = out["weight_s"] / out["feature_s"]
        out["flop_ratio"] = 2 * D / n
        rows.append(out)
    return rows


def bench_gd(sizes, steps, repeats):
    rows = []
    for m, D, n in sizes:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((n, D)), rng.uniform(-0.5, 0.5, n)
        net = gf.Network(d=D, width=m, activation="tanh", seed=0)
        Phi, yt = torch.as_tensor(X), torch.as_tensor(y)
        t_gf = _best(lambda: gf.gradient_descent(net, X, y, step=0.5, steps=steps, save_every=steps), repeats, 1)
        t_peer = _best(lambda: peer_autograd_gd(net.W0, net.c, Phi, yt, m, D, 0.5, steps), repeats, 1)
        W_gf = gf.gradient_descent(net, X, y, step=0.5, steps=steps, save_every=steps).W_final
        W_peer = peer_autograd_gd(net.W0, net.c, Phi, yt, m, D, 0.5, steps).numpy()
        rows.append({"m": m, "D": D, "n": n, "steps": steps, "gflow_step_s": t_gf / steps,
                     "peer_step_s": t_peer / steps, "speedup": t_peer / t_gf, "flop_ratio": 2 * D / n,
                     "max_abs_W_diff": float(np.abs(W_gf - W_peer).max())})
    return rows


def bench_solvers(t1):
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    net = gf.Network(d=20, width=1024, activation="tanh", seed=0)
    pb = gf.Problem.from_data(net, X, y)
    f = gf.make_field(pb, "feature")
    s = f.initial_state()
    rhs = _best(lambda: f(0.0, s), 3, 50)
    ref = gf.simulate(net, X, y, t1=t1, method="DOP853", rtol=1e-12, atol=1e-14, saveat=[0.0, t1], integrals=False)
    rows = []
    for method, kw in [("dopri5", {}), ("DOP853", {}), ("RK45", {}), ("rk4", {"step": 0.25})]:
        tol = {} if "step" in kw else {"rtol": 1e-8, "atol": 1e-12}
        sol = gf.simulate(net, X, y, t1=t1, method=method, saveat=[0.0, t1], integrals=False, **kw, **tol)
        wall, nfev = sol.stats["wall_time"], sol.stats["n_f_evals"]
        rows.append({"method": method, **kw, **tol, "n_f_evals": nfev, "wall_s": wall,
                     "overhead_share": max(0.0, 1 - nfev * rhs / wall),
                     "rel_err_loss": abs(sol.loss[-1] - ref.loss[-1]) / ref.loss[-1]})
    return {"rhs_s": rhs, "t1": t1, "rows": rows}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test suite runs this)")
    p.add_argument("--out", default=None, help="write the JSON here")
    args = p.parse_args(argv)
    if args.quick:
        rhs_sizes, gd_sizes, steps, repeats, t1 = [(64, 32, 16)], [(64, 32, 16)], 3, 1, 5.0
    else:
        rhs_sizes = [(1024, 20, 20), (1024, 256, 64), (2048, 2048, 400), (4096, 4096, 600)]
        gd_sizes, steps, repeats, t1 = [(2048, 2048, 400), (4096, 4096, 600)], 20, 3, 100.0
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch_threads": torch.get_num_threads(), "device": "cpu"},
        "versions": gf.solution.versions(),
        "dtype": "float64",
        "rhs": bench_rhs(rhs_sizes, repeats),
        "gd": bench_gd(gd_sizes, steps, repeats),
        "solvers": bench_solvers(t1),
    }
    print(f"{'m':>6} {'D':>6} {'n':>5}  {'weight ms':>10} {'feature ms':>10} {'speedup':>8} {'2D/n':>6}")
    for r in result["rhs"]:
        print(f"{r['m']:6d} {r['D']:6d} {r['n']:5d}  {r['weight_s'] * 1e3:10.3f} {r['feature_s'] * 1e3:10.3f} "
              f"{r['speedup']:8.2f} {r['flop_ratio']:6.1f}")
    print(f"\n{'m':>6} {'D':>6} {'n':>5}  {'gflow GD ms/step':>16} {'autograd peer':>14} {'speedup':>8} {'2D/n':>6}")
    for r in result["gd"]:
        print(f"{r['m']:6d} {r['D']:6d} {r['n']:5d}  {r['gflow_step_s'] * 1e3:16.3f} {r['peer_step_s'] * 1e3:14.3f} "
              f"{r['speedup']:8.2f} {r['flop_ratio']:6.1f}")
    sv = result["solvers"]
    print(f"\nExperiment 1 demo problem to t = {sv['t1']:g} (one RHS evaluation: {sv['rhs_s'] * 1e6:.0f} µs)")
    for r in sv["rows"]:
        print(f"  {r['method']:>7}: {r['n_f_evals']:6d} evals  {r['wall_s']:7.3f} s  overhead "
              f"{100 * r['overhead_share']:5.1f} %  rel. loss error {r['rel_err_loss']:.1e}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
