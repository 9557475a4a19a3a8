"""The feature state's memory layout: one RHS evaluation in layout "nm" ([Hᵀ, Aᵀ], the default) against "mn"
([H, A]), and both against weight space, side by side in one run (gflow.fields.FeatureSpaceField); weight space's
own products through column-major buffers (the default on the CPU) against the former row-major route
(``WeightSpaceField.column_major_products``).

The layouts differ only in the product Ḣ = P(−γG): in "nm" its (m, n) result is column-major, which BLAS computes
with the long dimension m in its vector registers.  Also times an Experiment-1-sized dop853 solve and gradient-descent
steps in both layouts (the same run to rounding).

Run from the repository root: ``python benchmarks/bench_layout.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import gflow as gf
from gflow.bench._common import machine, versions, write_json
from gflow.bench.speed import _data, _rhs_call, seconds_side_by_side
from gflow.fields import Problem, make_field
from gflow.solve import gd as gd_module
from gflow.solve import ode as ode_module

SIZES = [(1024, 20, 20), (1024, 256, 64), (2048, 2048, 400), (4096, 4096, 600), (8192, 8192, 600)]
QUICK_SIZES = [(256, 20, 20), (256, 64, 32)]


def rhs_rows(sizes, repeats: int, min_seconds: float) -> list[dict]:
    rows = []
    for m, D, n in sizes:
        net, X, y = _data(m, D, n)
        pb = Problem.from_data(net, X, y)
        w_row = make_field(pb, "weight")
        w_row.column_major_products = False
        fields = [make_field(pb, "weight"), make_field(pb, "feature", layout="mn"),
                  make_field(pb, "feature", layout="nm"), w_row]
        w, mn, nm, wr = seconds_side_by_side([_rhs_call(f) for f in fields], repeats if m * D * n < 5e9 else 3,
                                             min_seconds)
        ratio = 2.0 * D / n
        rows.append({"m": m, "D": D, "n": n, "weight_s": w, "feature_mn_s": mn, "feature_nm_s": nm,
                     "mn_over_nm": mn / nm, "efficiency_mn": w / mn / ratio, "efficiency_nm": w / nm / ratio,
                     "weight_row_major_s": wr, "weight_row_over_column": wr / w})
        print(f"RHS ({m}, {D}, {n}): weight {w * 1e6:.0f} µs (row-major products {wr * 1e6:.0f} µs, "
              f"{wr / w:.2f}×), feature mn {mn * 1e6:.0f} µs, nm {nm * 1e6:.0f} µs (mn/nm {mn / nm:.2f}); of the flop "
              f"ratio 2D/n: mn {w / mn / ratio:.2f}, nm {w / nm / ratio:.2f}", flush=True)
    return rows


def _forced(real, layout: str):
    """make_field with the feature layout fixed to ``layout``."""

    def make(problem, space="auto", per_entry=0.0, layout=None, _fixed=layout):
        return real(problem, space, per_entry, _fixed)

    return make


def runs(quick: bool, repeats: int) -> list[dict]:
    """dop853 (Experiment 1 shapes, feature space) and GD steps, each layout, best of ``repeats`` alternating."""
    m = 256 if quick else 1024
    cases = []
    for n in ((20,) if quick else (20, 40, 80)):
        X, y = gf.data.random_labels(n=n, d=20, seed=0)
        net = gf.Network(d=20, width=m, activation="tanh", seed=0)
        cases.append((f"dop853 m={m} d=20 n={n} t1=200 rtol=1e-8", ode_module,
                      lambda net=net, X=X, y=y: gf.simulate(net, X, y, t1=20.0 if quick else 200.0, method="dop853",
                                                            rtol=1e-8, atol=1e-10, space="feature")))
    mg, Dg, ng = (256, 256, 64) if quick else (2048, 2048, 400)
    Xg, yg = gf.data.random_labels(n=ng, d=Dg, seed=0)
    netg = gf.Network(d=Dg, width=mg, activation="tanh", seed=0)
    cases.append((f"gradient_descent ({mg}, {Dg}, {ng}) 30 steps", gd_module,
                  lambda: gf.gradient_descent(netg, Xg, yg, step=0.1, steps=30, save_every=30, space="feature")))
    rows = []
    for name, module, fn in cases:
        real = module.make_field
        best = {}
        try:
            for _ in range(repeats):
                for layout in ("mn", "nm"):
                    module.make_field = _forced(real, layout)
                    t0 = time.perf_counter()
                    sol = fn()
                    best[layout] = min(best.get(layout, float("inf")), time.perf_counter() - t0)
                    best[f"loss_{layout}"] = float(sol.loss[-1])
        finally:
            module.make_field = real
        row = {"case": name, "mn_s": best["mn"], "nm_s": best["nm"], "mn_over_nm": best["mn"] / best["nm"],
               "final_loss_mn": best["loss_mn"], "final_loss_nm": best["loss_nm"]}
        rows.append(row)
        print(f"{name}: mn {best['mn']:.3f} s, nm {best['nm']:.3f} s (mn/nm {row['mn_over_nm']:.2f}); final loss "
              f"{best['loss_mn']:.12e} / {best['loss_nm']:.12e}", flush=True)
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/layout")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = {"benchmark": "layout", "mode": "quick" if args.quick else "full", "machine": machine(),
           "versions": versions(), "dtype": "float64",
           "rhs": rhs_rows(QUICK_SIZES if args.quick else SIZES, 3 if args.quick else args.repeat,
                           0.02 if args.quick else 0.2),
           "runs": runs(args.quick, 1 if args.quick else 3)}
    out["wall_s"] = time.perf_counter() - t0
    path = write_json(Path(args.out) / "layout.json", out)
    print(f"results written to {path}")
    return out


if __name__ == "__main__":
    main()
