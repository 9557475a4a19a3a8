"""Sweep throughput: the same grid with each executor, side by side in one run (ratios are the result).

For each executor (serial ``local``, a ``process`` pool, a local ``dask`` cluster) the same sweep runs into a
fresh store: wall time of the whole sweep, the sum of the runs' own wall times, the speed-up over serial,
and the store's share (writing run files, assembling and consolidating ``sweep.nc``) measured on the serial
sweep.  The start-up of a pool or cluster (spawning workers that import torch) is included: that is what a
user waits for.  ``--formats netcdf,zarr`` repeats each executor with each record format (a netCDF file per
run, or a group per run appended to one zarr store), to compare the stores' cost side by side.

    python benchmarks/bench_sweep.py [--quick] [--executors local,process,dask] [--formats netcdf,zarr]
                                     [--workers N] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.sweeps import open_sweep


def config(quick: bool) -> dict:
    width, t1 = (16, 2.0) if quick else (512, 100.0)
    return {
        "network": {"d": 20, "width": width, "activation": "tanh"},
        "data": {"generator": "random_labels", "n_test": 50},
        "solver": {"kind": "simulate", "t1": t1, "method": "DOP853", "rtol": 1e-8, "atol": 1e-10},
        "grid": {"data.n": [20, 40], "network.scaling": ["ours", "mf"]},
        "seeds": 1 if quick else 2,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny runs (the test suite runs this)")
    p.add_argument("--executors", default="local,process,dask", help="comma-separated executor names")
    p.add_argument("--formats", default="netcdf", help="comma-separated record formats (netcdf, zarr)")
    p.add_argument("--workers", type=int, default=None, help="workers of the pool / cluster (default: cores)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = config(args.quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt in [(e, f) for e in args.executors.split(",") for f in args.formats.split(",")]:
            store = Path(tmp) / f"{name}-{fmt}"
            kw = {} if name == "local" else {"workers": args.workers}
            t = time.perf_counter()
            ds = gf.sweep(**cfg, store=store, executor=name, progress=False, format=fmt, **kw)
            wall = time.perf_counter() - t
            t = time.perf_counter()
            open_sweep(store, consolidated=False)
            assemble = time.perf_counter() - t
            row = {"executor": name, "format": fmt, "runs": int(ds.sizes["run"]), "wall_s": wall,
                   "sum_solver_wall_s": float(np.nansum(ds.wall_time.values)), "open_sweep_s": assemble,
                   "all_success": bool((ds.status.values == "success").all()),
                   "final_loss": ds.final_loss.values.tolist()}
            rows.append(row)
            print(f"{name:>8} {fmt:>6}: {row['runs']} runs in {wall:6.2f} s (solvers {row['sum_solver_wall_s']:6.2f} s; "
                  f"open_sweep {assemble:.2f} s)")
    base = rows[0]["wall_s"]
    for row in rows:
        row["speedup_vs_first"] = base / row["wall_s"]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count()},
        "versions": {"gflow": gf.__version__, "torch": torch.__version__},
        "dtype": "float64", "config": cfg, "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
