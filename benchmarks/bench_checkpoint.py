"""Checkpoint cost on long runs: wall time with and without checkpoints, side by side in one run.

A long gradient descent (and a long fixed-step flow) saving a row every few steps is run three ways in one
process: without a checkpoint, and with ``checkpoint_every`` set so that a checkpoint is written every few
hundred steps.  Reported: wall times and their ratio (the checkpoints' overhead), the number of checkpoints,
the bytes written in all, and the time of the last checkpoint against the first (a checkpoint that rewrites the
whole history grows with it: quadratic cost over a run).

    python benchmarks/bench_checkpoint.py [--quick] [--steps 20000] [--save-every 2] [--every 0.05] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.solve import checkpoint as ck


def problem(quick: bool):
    d, m, n = (5, 16, 10) if quick else (20, 256, 40)
    X, y = gf.data.random_labels(n, d, seed=0)
    X_test, y_test = gf.data.random_labels(4 * n, d, seed=1)
    net = gf.Network(d, width=m, activation="tanh", seed=0)
    return net, X, y, X_test, y_test


def measure(run, every: float | None, folder: Path) -> dict:
    """One run; with ``every``, checkpointing there, counting the bytes and the time of each checkpoint."""
    writes: list[tuple[float, int]] = []
    real = ck.atomic_save

    def counted(obj, path):
        t = time.perf_counter()
        real(obj, path)
        writes.append((time.perf_counter() - t, Path(path).stat().st_size, "loop" in obj))

    ck.atomic_save = counted
    try:
        kw = {} if every is None else {"checkpoint": folder / f"run-{every}.ckpt", "checkpoint_every": every}
        t = time.perf_counter()
        sol = run(**kw)
        wall = time.perf_counter() - t
    finally:
        ck.atomic_save = real
    assert sol.ok, sol.message
    # a checkpoint: the checkpoint file's write, and the segment written just before it (if any)
    per, acc = [], 0.0
    for w, _, main in writes:
        acc += w
        if main:
            per.append(acc)
            acc = 0.0
    return {"wall_s": wall, "n_checkpoints": len(per), "n_files_written": len(writes),
            "bytes_written": int(sum(b for _, b, _ in writes)), "first_checkpoint_s": per[0] if per else None,
            "last_checkpoint_s": per[-1] if per else None, "max_checkpoint_s": max(per) if per else None,
            "write_s": float(sum(per)), "n_saved_times": len(sol.t)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny run (the test suite runs this)")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--save-every", type=int, default=2)
    p.add_argument("--every", type=float, default=None,
                   help="checkpoint_every, in seconds (default 0.05; with --quick 1e-9: every step, or its 200 steps "
                        "ended before the first checkpoint)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    steps = 200 if args.quick else args.steps
    if args.every is None:
        args.every = 1e-9 if args.quick else 0.05
    net, X, y, Xt, yt = problem(args.quick)
    gd = lambda **kw: gf.gradient_descent(net, X, y, X_test=Xt, y_test=yt, step=0.5, steps=steps,  # noqa: E731
                                          save_every=args.save_every, integrals=False, **kw)
    t1 = 0.05 * steps
    saveat = np.linspace(0.0, t1, steps // args.save_every + 1)
    flow = lambda **kw: gf.simulate(net, X, y, t1, saveat, X_test=Xt, y_test=yt, method="rk4",  # noqa: E731
                                    step=0.05, integrals=False, **kw)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (("gradient_descent", gd), ("rk4", flow)):
            base = measure(run, None, Path(tmp))
            with_ck = measure(run, args.every, Path(tmp))
            rows[name] = {"without": base, "with": with_ck, "overhead": with_ck["wall_s"] / base["wall_s"] - 1.0}
            if not with_ck["n_checkpoints"]:
                print(f"{name}: {base['wall_s']:.2f} s without; no checkpoint was due within the run "
                      f"(checkpoint_every = {args.every:g} s): use a smaller --every or more --steps")
                continue
            print(f"{name}: {base['wall_s']:.2f} s without, {with_ck['wall_s']:.2f} s with {with_ck['n_checkpoints']} "
                  f"checkpoints (+{100 * rows[name]['overhead']:.0f} %, {with_ck['bytes_written'] / 1e6:.1f} MB "
                  f"written; first {with_ck['first_checkpoint_s'] * 1e3:.1f} ms, last "
                  f"{with_ck['last_checkpoint_s'] * 1e3:.1f} ms, slowest {with_ck['max_checkpoint_s'] * 1e3:.1f} ms)")
    res = {"steps": steps, "save_every": args.save_every, "checkpoint_every": args.every, "rows": rows,
           "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
           "versions": {"torch": torch.__version__, "gflow": gf.__version__}}
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
