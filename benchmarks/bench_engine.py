"""Native RK engine vs torchdiffeq and scipy on the demo problem: evaluations, wall time, solver overhead.

Overhead share = (wall − time inside the right-hand side) / wall, measured by timing every ``rhs_into`` call;
"excl.rec" also leaves out the time spent recording observables at the saved times (``Recorder.record``: loss,
η, μ, ν, the spectrum of M, ... at 242 default output times), i.e. the solver's own overhead.
Run from the repository root: ``python -m benchmarks.bench_engine [--t1 100] [--repeat 3] [--quick]``.
Numbers are noisy on a shared machine: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

import gflow as gf
from gflow.fields.feature_space import FeatureSpaceField
from gflow.fields.weight_space import WeightSpaceField
from gflow.solve._record import Recorder


class _RhsTimer:
    """Times every rhs_into (the right-hand side) and every Recorder.record (observables at saved times)."""

    def __init__(self):
        self.seconds = 0.0
        self.record_seconds = 0.0
        self._orig = {}

    def __enter__(self):
        for cls in (FeatureSpaceField, WeightSpaceField):
            orig = cls.rhs_into
            self._orig[cls] = ("rhs_into", orig)

            def timed(obj, state, out, _orig=orig):
                t0 = time.perf_counter()
                try:
                    return _orig(obj, state, out)
                finally:
                    self.seconds += time.perf_counter() - t0

            cls.rhs_into = timed
        orig_rec = Recorder.record
        self._orig[Recorder] = ("record", orig_rec)

        def timed_record(obj, *a, **kw):
            t0 = time.perf_counter()
            try:
                return orig_rec(obj, *a, **kw)
            finally:
                self.record_seconds += time.perf_counter() - t0

        Recorder.record = timed_record
        return self

    def __exit__(self, *exc):
        for cls, (name, orig) in self._orig.items():
            setattr(cls, name, orig)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--t1", type=float, default=100.0)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--methods", default="dop853,dopri5,torchdiffeq.dopri5,DOP853")
    ap.add_argument("--ends-only", action="store_true", help="output only at 0 and t1 (no dense output)")
    ap.add_argument("--quick", action="store_true", help="a tiny problem (m = 64, t1 = 5), to check the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.width, args.t1 = 64, 5.0
    torch.set_num_threads(1)
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    net = gf.Network(d=20, width=args.width, activation="tanh", seed=0)
    rows = {}
    for _ in range(args.repeat):
        for method in args.methods.split(","):
            with _RhsTimer() as timer:
                t0 = time.perf_counter()
                saveat = [0.0, args.t1] if args.ends_only else None
                sol = gf.simulate(net, X, y, t1=args.t1, saveat=saveat, method=method, rtol=1e-8, atol=1e-10,
                                  integrals=False)
                wall = time.perf_counter() - t0
            r = rows.setdefault(method, [])
            solver_wall = wall - timer.record_seconds
            r.append((sol.stats["n_f_evals"], sol.stats["n_accepted"], wall, (wall - timer.seconds) / wall,
                      (solver_wall - timer.seconds) / solver_wall, float(sol.loss[-1]), sol.status))
    ref = rows.get("DOP853")
    print(f"{'method':20s} {'evals':>6s} {'steps':>6s} {'wall s':>8s} {'overhead':>8s} {'excl.rec':>8s} "
          f"{'evals/DOP853':>12s} {'wall/DOP853':>11s} {'final loss':>12s}")
    for method, r in rows.items():
        best = min(r, key=lambda v: v[2])
        ev, st, wall, ov, ov_solver, loss, status = best
        e_ratio = ev / ref[0][0] if ref else float("nan")
        w_ratio = wall / min(v[2] for v in ref) if ref else float("nan")
        print(f"{method:20s} {ev:6d} {st:6d} {wall:8.3f} {ov:8.1%} {ov_solver:8.1%} {e_ratio:12.2f} {w_ratio:11.2f} "
              f"{loss:12.6e} {status}")


if __name__ == "__main__":
    main()
