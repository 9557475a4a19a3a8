"""netCDF input/output of runs: gflow's h5py writer and reader against xarray's (the code before them), side by side.

One Solution of Experiment-1 size (n = 20, d = 20, m = 1024, 200 test points, t1 = 500: ~240 saved times, 33
variables, 4.6 MB) is written and read both ways in one process:

* ``Solution.save`` / ``gf.load`` against ``Dataset.to_netcdf(engine="h5netcdf")`` / ``xarray.open_dataset``
  (median of ``--repeats``);
* an experiment file of N runs (``save_runs`` / ``load_runs``, one group per run, for each N of ``--runs``)
  against the former code: a ``to_netcdf(mode="a", group=...)`` per run, and a ``Solution.load`` per group.

Every file written one way is read back the other way and compared.

    python benchmarks/bench_io.py [--quick] [--runs 10,40,120] [--repeats 7] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr

import gflow as gf
from gflow.experiments.common import Run, load_runs, save_runs
from gflow.solution import _json, write_netcdf_atomic


def solution(quick: bool) -> gf.Solution:
    m, n_test, t1 = (64, 20, 50.0) if quick else (1024, 200, 500.0)
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    X_test, y_test = gf.data.random_labels(n=n_test, d=20, seed=1)
    net = gf.Network(d=20, width=m, activation="tanh", seed=0)
    return gf.simulate(net, X, y, t1=t1, method="dop853", rtol=1e-8, atol=1e-10, X_test=X_test, y_test=y_test)


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def old_save(path: Path, sol: gf.Solution) -> None:
    """Solution.save before the h5py writer: xarray's ``to_netcdf``, replacing the file atomically."""
    write_netcdf_atomic(None, path, write=lambda tmp: sol.to_xarray().to_netcdf(tmp, engine="h5netcdf"))


def old_load(path: Path, group: str | None = None) -> gf.Solution:
    """gf.load before the h5py reader: ``xarray.open_dataset``."""
    with xr.open_dataset(path, engine="h5netcdf", group=group) as ds:
        return gf.Solution.from_dataset(ds.load(), path, group=group)


def old_save_runs(path: Path, runs: list[Run]) -> None:
    """save_runs before the h5py writer: xarray, one ``to_netcdf(mode="a")`` per run."""
    def write(tmp: Path) -> None:
        xr.Dataset().to_netcdf(tmp, engine="h5netcdf")
        for i, run in enumerate(runs):
            ds = run.solution.to_xarray(include_weights=False)
            ds.attrs["labels"] = _json(run.labels)
            ds.to_netcdf(tmp, mode="a", group=f"run{i:03d}", engine="h5netcdf")
        with h5py.File(tmp, "a") as fh:
            fh.attrs.update({"gflow_experiment": "bench", "preset": "bench", "config": "{}", "n_runs": len(runs)})

    write_netcdf_atomic(None, path, write=write)


def old_load_runs(path: Path) -> list[gf.Solution]:
    """load_runs before the h5py reader: one ``xarray.open_dataset`` per group."""
    with h5py.File(path, "r") as fh:
        groups = sorted(k for k in fh if k.startswith("run"))
    return [old_load(path, g) for g in groups]


def same(a: gf.Solution, b: gf.Solution) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("t", "loss", "output", "H", "test_output"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small run (m = 64) and N = 4, 16")
    ap.add_argument("--runs", default=None, help="comma-separated numbers of runs per experiment file")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    counts = [int(k) for k in (args.runs or ("4,16" if args.quick else "10,40,120")).split(",")]
    sol = solution(args.quick)
    ds = sol.to_xarray()
    import os

    result: dict = {"machine": {"platform": platform.platform(), "cpu": cpu(), "cores": os.cpu_count()},
                    "versions": {"gflow": gf.__version__, "xarray": xr.__version__, "h5py": h5py.__version__},
                    "variables": len(ds.variables), "bytes": int(ds.nbytes), "single": {}, "experiment": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fast, slow = tmp / "fast.nc", tmp / "xarray.nc"

        single = {
            "save_xarray_s": timed(lambda: old_save(slow, sol), args.repeats),
            "save_gflow_s": timed(lambda: sol.save(fast), args.repeats),
            "load_xarray_s": timed(lambda: old_load(slow), args.repeats),
            "load_gflow_s": timed(lambda: gf.load(slow), args.repeats),
        }
        assert same(gf.load(slow), sol) and same(old_load(fast), sol)
        result["single"] = single
        print(f"Solution ({len(ds.variables)} variables, {ds.nbytes / 1e6:.1f} MB): save "
              f"{single['save_xarray_s'] * 1e3:.0f} -> {single['save_gflow_s'] * 1e3:.0f} ms, load "
              f"{single['load_xarray_s'] * 1e3:.0f} -> "
              f"{single['load_gflow_s'] * 1e3:.0f} ms (xarray -> gflow)", flush=True)
        for n in counts:
            runs = [Run({"k": k}, sol) for k in range(n)]
            row = {"runs": n}
            row["save_xarray_s"] = timed(lambda: old_save_runs(tmp / "old.nc", runs))
            row["save_gflow_s"] = timed(lambda: save_runs(tmp / "new.nc", runs, experiment="bench", preset="bench",
                                                          config={}))
            row["load_xarray_s"] = timed(lambda: old_load_runs(tmp / "old.nc"))
            row["load_gflow_s"] = timed(lambda: load_runs(tmp / "old.nc"))
            assert all(same(r.solution, sol) for r in load_runs(tmp / "new.nc")[1])
            assert all(same(s, sol) for s in old_load_runs(tmp / "new.nc"))
            result["experiment"].append(row)
            print(f"runs.nc N = {n}: save {row['save_xarray_s']:.2f} -> {row['save_gflow_s']:.2f} s, load "
                  f"{row['load_xarray_s']:.2f} -> {row['load_gflow_s']:.2f} s (xarray -> gflow)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
