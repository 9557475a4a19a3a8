"""One run of a sweep, as executed by a worker: build the network and data, solve, write the run file.

:func:`run_task` never raises for a problem of the run itself: a solver failure is a :class:`gflow.Solution`
with its status (kept with its partial trajectory), and an exception becomes a run file with status
``"error"`` and the traceback as its message.  The file is written by the worker, atomically (a temporary
file, then :func:`os.replace`), so a finished run survives whatever happens to the sweep afterwards.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..solution import write_netcdf_atomic

RUNS_DIR = "runs"
ZARR_RUNS = "runs.zarr"
CHECKPOINT_DIR = "checkpoints"
#: store formats of the per-run records (see the module docstring)
FORMATS = ("netcdf", "zarr")
#: statuses a sweep adds to :data:`gflow.STATUSES`
SWEEP_STATUSES = {"error": "the run raised an exception (see its message for the traceback)",
                  "pending": "the run has not finished (no run file yet)"}


def build_problem(config: dict, *, device: Any = None):
    """The network and data of a resolved run configuration: ``(net, X, y, test)``, test a dict of kwargs."""
    from .. import data as gdata
    from ..model.network import Network

    net_kw = dict(config["network"])
    if device is not None:
        net_kw["device"] = device
    net = Network(**net_kw)
    dat = dict(config["data"])
    gen = gdata.GENERATORS[dat.pop("generator")]
    n_test = dat.pop("n_test", 0) or 0
    test_seed = dat.pop("test_seed", None)
    n = dat.pop("n")
    seed = dat.pop("seed", 0)
    X, y = gen(n, net.d, seed=seed, **dat)
    test = {}
    if n_test:
        Xt, yt = gen(n_test, net.d, seed=seed + 1 if test_seed is None else test_seed, **dat)
        test = {"X_test": Xt, "y_test": yt}
    return net, X, y, test


def run_file(store: "str | Path", run_id: str, fmt: str = "netcdf") -> Path:
    """Where run ``run_id`` is recorded: ``runs/<run_id>.nc`` (netCDF) or ``runs.zarr/<run_id>`` (a zarr group)."""
    if fmt == "zarr":
        return Path(store) / ZARR_RUNS / run_id
    return Path(store) / RUNS_DIR / f"{run_id}.nc"


def check_format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    if fmt == "zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ImportError('format="zarr" needs zarr: pip install "gflow[zarr]" (or pip install zarr)') from None
    return fmt


def _checkpointable(fn, solver: dict) -> bool:
    """GD and gflow's native Runge–Kutta methods checkpoint; torchdiffeq and scipy methods cannot, nor
    ``"auto"`` (simulate's default), whose pick (exprk4, filippov) may not, nor ``error_estimate=True`` (three
    solves at steps h, h/2, h/4, or two: gf.simulate refuses a checkpoint with it whatever the method).  The runs that
    cannot checkpoint run without one, as gf.simulate runs them."""
    from ..solve.ode import NATIVE_METHODS

    if getattr(fn, "__name__", "") == "gradient_descent":
        return True
    return solver.get("method", "auto") in NATIVE_METHODS and not solver.get("error_estimate", False)


def checkpoint_file(store: "str | Path", run_id: str) -> Path:
    return Path(store) / CHECKPOINT_DIR / f"{run_id}.ckpt"


#: write a dataset to a run-record path whole or not at all (the writer of gf.Solution.save)
write_atomic = write_netcdf_atomic


def write_zarr_atomic(ds, path: Path) -> None:
    """Write a dataset as the zarr group ``path`` (a folder) so that readers see it whole or not at all.

    The group is written as a standalone zarr store in a hidden temporary folder beside ``path`` and renamed
    into place (:func:`os.rename` of a folder is atomic on a POSIX file system).  An existing group (a run
    repeated with ``retry_failed``) is first moved aside and deleted; concurrent writers of the same path end
    with exactly one complete group.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    old = path.with_name(f".{path.name}.{tag}.old")
    try:
        ds.to_zarr(tmp, mode="w", consolidated=False)
        for _ in range(100):
            try:
                os.rename(tmp, path)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            try:
                os.rename(path, old)  # an earlier record of this run: out of the way, then deleted
            except FileNotFoundError:
                continue  # another writer moved it; try again
            shutil.rmtree(old, ignore_errors=True)
        else:  # pragma: no cover - 100 lost races
            raise OSError(f"could not move the zarr group into place at {path}")
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


#: the hidden temporaries of run records written by :func:`write_atomic` (``.<run>.nc.<pid>.<8 hex>.tmp``;
#: ``.<run>.nc.<pid>.tmp`` from an earlier gflow) and :func:`write_zarr_atomic` (``.<run>.<pid>.<8 hex>.tmp`` /
#: ``.old`` folders), in the folders that hold only runs (``runs``, ``runs.zarr``)
_LEFTOVER = {".nc": re.compile(r"\.[^/]+\.nc\.\d+(?:\.[0-9a-f]{8})?\.tmp"),
             ".zarr": re.compile(r"\.[^/]+\.\d+\.[0-9a-f]{8}\.(?:tmp|old)")}


def remove_write_leftovers(folder: "str | Path", kind: str = ".nc") -> int:
    """Delete the temporaries that run-record writes killed midway left in ``folder``, a folder of run records
    (``STORE/runs`` with kind ``".nc"``, ``STORE/runs.zarr`` with ``".zarr"``, an experiment's ``runs``): a
    process killed with SIGKILL, or a pool worker that ended with its sweep; the number deleted.  Only under the
    folder's lock (:data:`gflow.sweeps.SWEEP_LOCK`, :data:`gflow.experiments.tasks.REPRODUCE_LOCK`): no write of
    its runs is then in flight."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    pattern = _LEFTOVER[kind]
    for q in folder.iterdir():
        if pattern.fullmatch(q.name):
            if q.is_dir():
                shutil.rmtree(q, ignore_errors=True)
            else:
                q.unlink(missing_ok=True)
            n += 1
    return n


def ensure_zarr_root(store: "str | Path") -> Path:
    """Create the root group ``STORE/runs.zarr`` if it is missing (the driver does, before any run starts)."""
    root = Path(store) / ZARR_RUNS
    if not ((root / "zarr.json").exists() or (root / ".zgroup").exists()):
        import zarr

        root.mkdir(parents=True, exist_ok=True)
        zarr.open_group(str(root), mode="a")
    return root


def write_record(ds, store: "str | Path", run_id: str, fmt: str = "netcdf") -> Path:
    """Write one run's dataset to the store in format ``fmt``, atomically; returns its path."""
    path = run_file(store, run_id, fmt)
    if fmt == "zarr":
        ensure_zarr_root(store)
        write_zarr_atomic(ds, path)
    else:
        write_atomic(ds, path)
    return path


def _sweep_attrs(payload: dict, status: str) -> dict:
    return {
        "sweep_run_id": payload["run_id"],
        "sweep_index": int(payload["index"]),
        "sweep_point": json.dumps(payload["point"]),
        "sweep_seed": int(payload["seed"]),
        "sweep_config": json.dumps(payload["config"]),
        "sweep_status": status,
    }


def run_task(payload: dict) -> dict:
    """Run one sweep run and record it in the store; returns ``{run_id, status, message, wall_time, device}``.

    ``payload``: ``run_id``, ``index``, ``point``, ``seed``, ``config`` (resolved), ``store`` (folder),
    ``format`` (``"netcdf"`` or ``"zarr"``), ``threads`` (torch intra-op threads for this worker, or None to
    leave them), ``keep_weights``, ``progress`` (a tqdm bar over flow time for this run).
    A run whose network asks for ``device = "cuda"`` runs on the GPU this worker is pinned to (see
    :func:`gflow.sweeps.executors.plan_workers`); the device it ran on is recorded (``sweep_device``).
    A module-level function, so that process pools, Dask and submitit can pickle it.
    """
    import torch
    import xarray as xr

    from ..solution import Solution
    from .config import _solver_fn, accepts
    from .executors import in_pool_worker, run_device, stop_requested, worker_device

    if stop_requested():  # a pool worker of a sweep that Ctrl-C stopped starts no queued run
        return {"run_id": payload["run_id"], "status": "interrupted", "message": "not started: Ctrl-C stopped the "
                "sweep", "wall_time": 0.0, "device": None}
    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    store = Path(payload["store"])
    fmt = payload.get("format", "netcdf")
    start = time.perf_counter()
    cfg = payload["config"]
    device = run_device(cfg["network"].get("device"), worker_device())
    ctrl_c = ckpt = None
    keep = True
    try:
        net, X, y, test = build_problem(cfg, device=device)
        device = str(net.device)
        solver = dict(cfg["solver"])
        fn = _solver_fn(solver.pop("kind"))
        if accepts(fn, "checkpoint") and _checkpointable(fn, solver):
            # checkpoint/resume of long single runs: one file per run, beside the results; a killed sweep's
            # unfinished runs resume from their last checkpoint when the sweep is run again
            ckpt = checkpoint_file(store, payload["run_id"])
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            solver["checkpoint"] = str(ckpt)
            # a finished run's checkpoint goes once its record is written, not before: deleted by the solver, a run
            # whose record could not be written (a full disk) was lost whole and repeated from t = 0 (an audit)
            keep, solver["keep_checkpoint"] = bool(solver.get("keep_checkpoint", False)), True
        try:
            sol = fn(net, X, y, **test, **solver, progress=bool(payload.get("progress", False)), warn=False)
        except KeyboardInterrupt as stop:  # gf.Interrupted, or a second Ctrl-C (a plain KeyboardInterrupt)
            done = getattr(stop, "solution", None)
            if isinstance(done, Solution) and done.status != "interrupted":
                sol, ctrl_c = done, stop  # it arrived as the run finished: record the run (its checkpoint is gone)
            elif not in_pool_worker():  # a serial sweep (or a Dask worker's thread) stops here; the checkpoint stays
                raise
            else:
                # a pool worker (a terminal's Ctrl-C reaches the whole process group): no run record, so the run
                # stays pending and resumes from its checkpoint when the sweep is run again
                return {"run_id": payload["run_id"], "status": "interrupted",
                        "message": done.message if isinstance(done, Solution) else "stopped by Ctrl-C",
                        "wall_time": time.perf_counter() - start, "device": str(device or "cpu")}
        ds = sol.to_xarray(include_weights=bool(payload.get("keep_weights", False)))
        status, message = sol.status, sol.message
    except Exception as exc:  # noqa: BLE001 - every failure of one run is a result of the sweep
        status = "error"
        message = f"{type(exc).__name__}: {exc}\n\n" + traceback.format_exc()
        ds = xr.Dataset(coords={"time": np.zeros(0)}, attrs={"status": status, "message": message})
    wall = time.perf_counter() - start
    ds.attrs.update(_sweep_attrs(payload, status))
    ds.attrs["sweep_wall_time"] = wall
    ds.attrs["sweep_device"] = str(device or "cpu")
    ds.attrs["sweep_host"] = platform.node()
    write_record(ds, store, payload["run_id"], fmt)
    if ckpt is not None and not keep and status == "success":
        from ..solve.checkpoint import delete

        delete(ckpt)
    if ctrl_c is not None and not in_pool_worker():  # (recorded: the serial sweep stops now)
        raise ctrl_c
    return {"run_id": payload["run_id"], "status": status, "message": message.splitlines()[0] if message else "",
            "wall_time": wall, "device": str(device or "cpu")}


__all__ = ["run_task", "build_problem", "run_file", "checkpoint_file", "write_atomic", "write_zarr_atomic",
           "write_record", "check_format", "FORMATS", "SWEEP_STATUSES"]
