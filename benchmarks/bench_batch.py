"""Batched seeds: one ``gf.simulate_batch`` / ``gf.gradient_descent_batch`` run of S networks against S separate
``gf.simulate`` / ``gf.gradient_descent`` runs of the same networks, on the same device, measured side by side.

Cases (S = 8 seeds, m = 1024, float64):

* ``exp1``: Experiment 1 sizes, the shallow tanh net on random labels, d = n = 20 (feature space);
* ``p3l``:  a P-3L net (ReLU random features, D = 512) with ReLU, d = 20, n = 200 (feature space).

For each: GD (δ = 1) and the flow (exp1: dopri5 and scipy DOP853; p3l: rk4, since ReLU's kink makes adaptive
solvers crawl), all with the default recording (theory quantities and running integrals), and for exp1 also
the bare dopri5 flow (``integrals=False``), where the solver's per-step overhead, shared by a batch, is largest.  Reported: wall
time of the S separate runs, of the batched run, the speed-up (target ≥ 0.7·S) and the largest relative
difference of the loss between the two over the saved times where L > 1e-12·L₀ (GD and rk4: rounding; adaptive:
within the tolerance; below, L's own rounding error grows to 100 %).  The two
are timed alternately and the best of ``--repeats`` is kept.

    python benchmarks/bench_batch.py [--quick] [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

import gflow as gf
from gflow.bench._common import machine


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def cases(quick: bool, device: str):
    S, m = (2, 32) if quick else (8, 1024)
    out = []
    # Experiment 1: shallow tanh net, d = n = 20
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    nets = gf.networks(range(S), d=20, width=m, activation="tanh", device=device)
    steps = 10 if quick else 1000
    t1 = 1.0 if quick else 100.0
    saveat = np.linspace(0.0, t1, 11 if quick else 51)
    out.append(("exp1", "gd", nets, X, y, dict(step=1.0, steps=steps, save_every=max(1, steps // 50))))
    out.append(("exp1", "dopri5", nets, X, y, dict(t1=t1, saveat=saveat, method="dopri5", rtol=1e-7, atol=1e-9)))
    out.append(("exp1", "dopri5-bare", nets, X, y, dict(t1=t1, saveat=saveat, method="dopri5", rtol=1e-7, atol=1e-9,
                                                         integrals=False)))
    if device == "cpu":
        out.append(("exp1", "DOP853", nets, X, y, dict(t1=t1, saveat=saveat, method="DOP853", rtol=1e-7,
                                                        atol=1e-9)))
    # P-3L: ReLU random features D = 512, n = 200
    D, n = (16, 12) if quick else (512, 200)
    X, y = gf.data.random_labels(n=n, d=20, seed=0)
    nets = gf.networks(range(S), d=20, width=m, activation="relu", embedding=gf.RandomFeatures(D=D), device=device)
    steps = 10 if quick else 100
    t1 = 0.3 if quick else 2.0
    out.append(("p3l", "gd", nets, X, y, dict(step=1.0, steps=steps, save_every=max(1, steps // 20), space="feature")))
    out.append(("p3l", "rk4", nets, X, y, dict(t1=t1, saveat=np.linspace(0.0, t1, 11), method="rk4", step=0.1,
                                               space="feature")))
    return out


#: the losses are compared where L > this fraction of L₀: L's relative rounding error is ≈ 2ε|f|/‖r‖ (r = f − y), about
#: 2e-10 at L = 1e-12·L₀ here, 2e-6 at 1e-20·L₀, and 1 at the floor, ≈ 1e-30 — where Experiment 1's GD is by step
#: 1 000 and batched and separate runs differed by 100 % in their rounding noise
ROUNDING_FLOOR = 1e-12


def _loss_rel_diff(b, s) -> float:
    """Largest relative difference of the two runs' losses over the saved times where the loss is above the rounding
    floor (:data:`ROUNDING_FLOOR`·L₀; the final loss alone compared rounding noise)."""
    keep = np.abs(s.loss) > ROUNDING_FLOOR * abs(s.loss[0])
    if not keep.any():
        return 0.0
    return float((np.abs(b.loss[keep] - s.loss[keep]) / np.abs(s.loss[keep])).max())


def run_case(nets, X, y, kw, solver: str, device: str, repeats: int) -> dict:
    single = gf.gradient_descent if solver == "gd" else gf.simulate
    batch = gf.gradient_descent_batch if solver == "gd" else gf.simulate_batch
    t_sep, t_bat = [], []
    for r in range(repeats):
        order = ("sep", "bat") if r % 2 == 0 else ("bat", "sep")
        for which in order:
            if which == "sep":
                dt, sep = _timed(lambda: [single(net, X, y, **kw) for net in nets], device)
                t_sep.append(dt)
            else:
                dt, bat = _timed(lambda: batch(nets, X, y, **kw), device)
                t_bat.append(dt)
    S = len(nets)
    diff = max(_loss_rel_diff(b, s) for b, s in zip(bat, sep))
    best_sep, best_bat = min(t_sep), min(t_bat)
    return {
        "S": S, "m": nets[0].m, "n": int(np.asarray(X).shape[0]), "D": nets[0].D,
        "separate_s": best_sep, "batched_s": best_bat, "speedup": best_sep / best_bat,
        "target": 0.7 * S, "meets_target": best_sep / best_bat >= 0.7 * S,
        "loss_rel_diff": float(diff), "n_f_evals_batched": bat[0].stats["n_f_evals"],
        "n_f_evals_separate": [s.stats["n_f_evals"] for s in sep],
        "status": sorted({s.status for s in bat}),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds): checks the script, not the speed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 2)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ReLU GD at δ = 1 may diverge; the timing is what is measured
        for name, solver, nets, X, y, kw in cases(args.quick, args.device):
            res = run_case(nets, X, y, kw, solver, args.device, repeats)
            res.update(case=name, solver=solver)
            rows.append(res)
            print(f"{name:5s} {solver:11s} S={res['S']} m={res['m']} n={res['n']} D={res['D']}: "
                  f"separate {res['separate_s']:.3f} s, batched {res['batched_s']:.3f} s, "
                  f"speed-up {res['speedup']:.2f}x (target {res['target']:.1f}x), "
                  f"loss rel. diff (L > 1e-12 L0) {res['loss_rel_diff']:.1e}, status {res['status']}", flush=True)
    out = {
        "results": rows,
        "machine": {**machine(args.device), "threads": args.threads,
                    "cuda": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
        "versions": gf.solution.versions(), "dtype": "float64", "seeds": "networks 0..S-1, data seed 0",
        "quick": args.quick, "repeats": repeats,
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return out


if __name__ == "__main__":
    main()
