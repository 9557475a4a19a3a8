r"""The results store of a sweep: one folder, one small netCDF file per finished run, a manifest, a summary.

::

    STORE/
      manifest.json          the sweep (sections, grid, seeds), its runs in order, provenance
      runs/<run_id>.nc       one gflow.Solution file per finished run (+ sweep attributes), written atomically
      checkpoints/           per-run checkpoint files, when the solver supports checkpoint=
      sweep.nc               the consolidated dataset (written when every run has finished)

:func:`open_sweep` assembles the dataset from the manifest and the run files, so it works on a sweep that
is still running or was killed.  Runs have different time grids: the dataset has dims (run, time) where
``time`` is the index of the saved time, and ``t`` is a 2-D coordinate (run, time); shorter runs are padded
with NaN.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .run import RUNS_DIR, SWEEP_STATUSES, run_file, write_atomic

MANIFEST = "manifest.json"
CONSOLIDATED = "sweep.nc"
STORE_FORMAT = 1
#: per-run statistics copied from Solution.stats into the dataset (when a run has them)
STATS = ("n_f_evals", "n_steps", "n_accepted", "n_rejected", "wall_time")
#: the names of per-run coordinates that grid keys must not shadow
_RESERVED = {"run", "time", "t", "run_id", "seed", "status", "message", *STATS, "final_loss", "final_t"}


def provenance() -> dict:
    """gflow / torch / Python versions, the device, the host and the git revision of gflow when available."""
    import torch

    from ..solution import versions

    prov = dict(versions())
    if torch.cuda.is_available():
        prov["device"] = f"cuda: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    else:
        prov["device"] = f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    prov["host"] = platform.node()
    prov["git_revision"] = _git_revision()
    return prov


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        rev = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
        return rev + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_manifest(store: Path, config: dict, runs: list, coords: dict) -> None:
    """Write ``STORE/manifest.json`` atomically (the sweep being run now replaces an earlier one)."""
    manifest = {
        "gflow_sweep_format": STORE_FORMAT,
        "config": config,
        "grid_coords": coords,
        "runs": [{"run_id": r.run_id, "point": r.point, "seed": r.seed} for r in runs],
        "provenance": provenance(),
    }
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(tmp, store / MANIFEST)


def read_manifest(store: "str | Path") -> dict:
    store = Path(store)
    path = store / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{store} is not a sweep store (no {MANIFEST}); run gf.sweep(..., store=...) "
                                "or `gflow sweep CONFIG.toml --out STORE` first")
    return json.loads(path.read_text())


def grid_coords(grid_keys: list[str]) -> dict[str, str]:
    """Coordinate names for grid keys: the bare key (``"n"``) when unique, else ``"data_seed"`` style."""
    bare = [k.split(".")[1] for k in grid_keys]
    out = {}
    for key, name in zip(grid_keys, bare):
        out[key.replace(".", "_") if bare.count(name) > 1 or name in _RESERVED else name] = key
    return out


def completed(store: "str | Path", *, read_status: bool = True) -> dict[str, str | None]:
    """``{run_id: status}`` of the run files present (temporary files of interrupted writes are ignored);
    the status is None when ``read_status`` is False (a listing, without opening the files)."""
    out: dict[str, str | None] = {}
    for f in (Path(store) / RUNS_DIR).glob("*.nc"):
        if f.name.startswith("."):
            continue
        if not read_status:
            out[f.stem] = None
            continue
        run = read_run(f)
        if run is not None:  # unreadable: treat as not finished, the run is repeated
            out[f.stem] = run["status"]
    return out


def _coord_values(values: list) -> np.ndarray:
    """A 1-D coordinate array for grid values: numbers, strings, bools; anything else as JSON text."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float if any(isinstance(v, float) for v in values) else np.int64)
    return np.array([v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values], dtype=object)


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def read_run(path: Path) -> dict | None:
    """Status, message, times, time series and statistics of a run file; None if it cannot be read.

    Reads the HDF5 file with h5py directly: the run files are small, but xarray's netCDF decoding of all their
    variables costs ~10x more than these few arrays.
    """
    import h5py

    from ..solution import _DIMS

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            t = np.asarray(f["time"][...], dtype=float) if "time" in f else np.zeros(0)
            series = {name: np.asarray(f[name][...], dtype=float) for name, dims in _DIMS.items()
                      if dims == ("time",) and name in f}
    except (OSError, KeyError, ValueError):
        return None
    stats = json.loads(attrs.get("stats", "{}"))
    if "sweep_wall_time" in attrs and "wall_time" not in stats:
        stats["wall_time"] = float(attrs["sweep_wall_time"])
    return {"status": str(attrs.get("sweep_status", attrs.get("status", "error"))),
            "message": str(attrs.get("message", "")), "t": t, "series": series, "stats": stats}


def open_sweep(store: "str | Path", *, consolidated: bool = True):
    """The sweep in ``store`` as one :class:`xarray.Dataset` with dims (run, time).

    Per-run coordinates: ``run_id``, every grid key (named by the key, e.g. ``n``, ``width``, ``scaling``;
    ``section_key`` when two sections share a key), ``seed``, ``status`` (``"pending"`` for runs without a
    file yet, ``"error"`` for runs that raised), ``message``.  Per-run variables: solver statistics
    (``n_f_evals``, ``n_steps``, ``n_accepted``, ``n_rejected``, ``wall_time``), ``final_loss``, ``final_t``.
    Time series (run, time), NaN-padded: ``loss``, ``test_loss``, ``test_error``, ``eta``, ``mu``, ``nu``,
    ``lam_min_M``, ... (every (time,) variable of the runs), with the 2-D coordinate ``t``.  Attributes:
    ``store``, ``config`` and ``provenance`` (JSON) and ``grid_coords`` (JSON: coordinate → ``section.key``).

    Args:
        store: the folder given to :func:`gflow.sweep` / ``gflow sweep --out``.
        consolidated: read ``STORE/sweep.nc`` when it is up to date with the manifest (faster); ``False``
            always assembles from the run files.

    Select with xarray, e.g. ``ds.where(ds.status == "success", drop=True)`` or
    ``ds.isel(run=(ds.n == 40).values)``; :func:`gflow.sweeps.run_solution` turns one run back into a
    :class:`gflow.Solution`.
    """
    import xarray as xr

    store = Path(store)
    manifest = read_manifest(store)
    stamp = _manifest_stamp(store)
    cons = store / CONSOLIDATED
    if consolidated and cons.exists():
        with xr.open_dataset(cons, engine="h5netcdf") as ds:
            if ds.attrs.get("manifest_stamp") == stamp:
                ds = ds.load()
                ds.attrs["store"] = str(store.resolve())
                return ds
    runs = manifest["runs"]
    coords_map = manifest["grid_coords"]
    records, series = [], {}
    for r in runs:
        path = run_file(store, r["run_id"])
        rec = {"status": "pending", "message": SWEEP_STATUSES["pending"], "t": np.zeros(0), "series": {},
               "stats": {}}
        run = read_run(path) if path.exists() else None
        if run is not None:
            rec = run
            for name in rec["series"]:
                series.setdefault(name, None)
        records.append(rec)
    T = max([len(rec["t"]) for rec in records] + [0])
    R = len(records)

    def padded(get) -> np.ndarray:
        out = np.full((R, T), np.nan)
        for i, rec in enumerate(records):
            v = get(rec)
            if v is not None:
                out[i, : len(v)] = v
        return out

    data_vars: dict[str, Any] = {}
    for name in series:
        data_vars[name] = (("run", "time"), padded(lambda rec, name=name: rec["series"].get(name)))
    for name in STATS:
        vals = [rec["stats"].get(name) for rec in records]
        if any(v is not None for v in vals):
            data_vars[name] = ("run", np.array([np.nan if v is None else float(v) for v in vals]))
    loss = padded(lambda rec: rec["series"].get("loss"))
    t2 = padded(lambda rec: rec["t"])
    data_vars["final_loss"] = ("run", np.array([_last_finite(row) for row in loss]))
    data_vars["final_t"] = ("run", np.array([_last_finite(row) for row in t2]))
    coords: dict[str, Any] = {
        "run": np.arange(R),
        "time": np.arange(T),
        "t": (("run", "time"), t2),
        "run_id": ("run", np.array([r["run_id"] for r in runs], dtype=object)),
        "seed": ("run", np.array([r["seed"] for r in runs], dtype=np.int64)),
        "status": ("run", np.array([rec["status"] for rec in records], dtype=object)),
        "message": ("run", np.array([rec["message"] for rec in records], dtype=object)),
    }
    for name, key in coords_map.items():
        coords[name] = ("run", _coord_values([r["point"][key] for r in runs]))
    attrs = {
        "store": str(store.resolve()),
        "config": json.dumps(manifest["config"]),
        "provenance": json.dumps(manifest["provenance"]),
        "grid_coords": json.dumps(coords_map),
        "manifest_stamp": stamp,
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _last_finite(row: np.ndarray) -> float:
    ok = np.flatnonzero(np.isfinite(row))
    return float(row[ok[-1]]) if ok.size else float("nan")


def _manifest_stamp(store: Path) -> str:
    import hashlib

    return hashlib.sha256((store / MANIFEST).read_bytes()).hexdigest()[:16]


def consolidate(store: "str | Path"):
    """Assemble the sweep from its run files and write ``STORE/sweep.nc`` (atomically); returns the dataset."""
    store = Path(store)
    ds = open_sweep(store, consolidated=False)
    write_atomic(ds, store / CONSOLIDATED)
    return ds


def run_solution(source: Any, run: "int | str"):
    """One run of a sweep as a :class:`gflow.Solution`, so that every :mod:`gflow.plotting` function applies.

    Args:
        source: the store folder, or a dataset from :func:`open_sweep` (its ``store`` attribute is used).
        run: the run's position (``ds.run`` index) or its ``run_id``.

    Raises:
        ValueError: the run has not finished or raised an error (its message is in the exception).
    """
    from ..solution import Solution

    store = Path(source.attrs["store"]) if hasattr(source, "attrs") else Path(source)
    runs = read_manifest(store)["runs"]
    if isinstance(run, str):
        ids = [r["run_id"] for r in runs]
        if run not in ids:
            raise ValueError(f"run {run!r} is not a run of the sweep in {store} ({len(ids)} runs)")
        run_id = run
    elif isinstance(run, (int, np.integer)) and not isinstance(run, bool):
        if not 0 <= run < len(runs):
            raise ValueError(f"run must be in [0, {len(runs)}) for the sweep in {store}, got {run}")
        run_id = runs[int(run)]["run_id"]
    else:
        raise TypeError(f"run must be a run index (int) or a run_id (str), got {type(run).__name__}")
    path = run_file(store, run_id)
    if not path.exists():
        raise ValueError(f"run {run_id} has not finished (no {path}); run the sweep again to complete it")
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        status, message = ds.attrs.get("sweep_status"), ds.attrs.get("message", "")
    if status == "error":
        raise ValueError(f"run {run_id} raised an error and has no solution:\n{message}")
    return Solution.load(path)


__all__ = ["open_sweep", "run_solution", "consolidate", "provenance", "read_manifest", "completed", "grid_coords"]
