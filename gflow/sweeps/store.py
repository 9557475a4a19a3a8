r"""The results store of a sweep: one folder, one record per finished run, a manifest, a summary.

::

    STORE/
      manifest.json          the sweep (sections, grid, seeds), its runs in order, the format, provenance
      runs/<run_id>.nc       format="netcdf" (default): one gflow.Solution file per finished run (+ sweep
                             attributes), written atomically
      runs.zarr/<run_id>/    format="zarr": one group per finished run of one zarr store, each renamed into
                             place whole, so that many workers append runs at once (see gflow.sweeps.run)
      checkpoints/           per-run checkpoint files, when the solver supports checkpoint=
      sweep.nc | sweep.zarr  the consolidated dataset (written when every run has finished)

Only the driver (the process that calls :func:`gflow.sweep`) writes ``manifest.json`` (atomically, before any
run is submitted) and the consolidated dataset (after the last run); workers write only their own run's
record.  :func:`open_sweep` assembles the dataset from the manifest and the run records, so it works on a
sweep that is still running or was killed, and gives the same dataset whichever the format.  Runs have different time grids: the dataset has dims (run, time) where
``time`` is the index of the saved time, and ``t`` is a 2-D coordinate (run, time); shorter runs are padded
with NaN.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validate import describe
from ..solve.checkpoint import move as move_checkpoint
from .config import RUN_ID_VERSION
from .run import (FORMATS, RUNS_DIR, SWEEP_STATUSES, ZARR_RUNS, check_format, checkpoint_file, ensure_zarr_root,
                  run_file, write_atomic, write_zarr_atomic)

MANIFEST = "manifest.json"
CONSOLIDATED = "sweep.nc"
CONSOLIDATED_ZARR = "sweep.zarr"
STORE_FORMAT = 1
#: per-run statistics copied from Solution.stats into the dataset (when a run has them)
STATS = ("n_f_evals", "n_steps", "n_accepted", "n_rejected", "wall_time")
#: the coordinates of :func:`open_sweep`'s dataset besides the grid keys (dims, then per-run labels)
RUN_COORDS = ("run", "time", "t", "run_id", "seed", "status", "message", "device", "host")
#: the per-run variables :func:`open_sweep` computes besides the solver statistics
PER_RUN = ("final_loss", "final_t")


def _series_names() -> set[str]:
    """The time series a run record can hold (those :func:`read_run` reads): every (time,) variable of a
    gflow.Solution file, e.g. ``loss``, ``eta``, ``error_estimate``."""
    from ..solution import _DIMS

    return {name for name, dims in _DIMS.items() if dims == ("time",)}


def reserved_names() -> set[str]:
    """Every name of :func:`open_sweep`'s dataset other than a grid key's: its coordinates, per-run variables and
    time series; a grid key whose short name is one of them gets ``section_key`` (a grid over
    ``solver.error_estimate`` is ``solver_error_estimate``, beside the ``error_estimate`` series)."""
    return {*RUN_COORDS, *STATS, *PER_RUN, *_series_names()}


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


def consolidated_path(store: "str | Path", fmt: str = "netcdf") -> Path:
    """``STORE/sweep.nc`` or ``STORE/sweep.zarr``."""
    return Path(store) / (CONSOLIDATED_ZARR if fmt == "zarr" else CONSOLIDATED)


def store_format(store: "str | Path", requested: "str | None" = None) -> str:
    """The record format of ``store``: the one its manifest names (``"netcdf"`` for stores written before
    formats existed), ``requested`` for a new store (default ``"netcdf"``).

    Raises:
        ValueError: ``requested`` differs from the format of a store that already holds runs.
    """
    store = Path(store)
    have = None
    if (store / MANIFEST).exists():
        have = read_manifest(store).get("format", "netcdf")
    elif (store / ZARR_RUNS).exists():
        have = "zarr"
    elif (store / RUNS_DIR).exists():
        have = "netcdf"
    if requested is None:
        return check_format(have or "netcdf")
    check_format(requested)
    if have is not None and have != requested and any(completed(store, read_status=False, fmt=have)):
        raise ValueError(f"format={requested!r}, but the store {store} holds {have} runs; use format={have!r} "
                         "(or a new store)")
    return requested


def write_manifest(store: Path, config: dict, runs: list, coords: dict, fmt: str = "netcdf") -> None:
    """Write ``STORE/manifest.json`` atomically (the sweep being run now replaces an earlier one).  Only the
    driver writes it, once per sweep and before any run is submitted."""
    manifest = {
        "gflow_sweep_format": STORE_FORMAT,
        "run_id_version": RUN_ID_VERSION,
        "format": fmt,
        "config": config,
        "grid_coords": coords,
        "runs": [{"run_id": r.run_id, "point": r.point, "seed": r.seed} for r in runs],
        "provenance": provenance(),
    }
    store.mkdir(parents=True, exist_ok=True)
    if fmt == "zarr":
        ensure_zarr_root(store)
    _write_json(store / MANIFEST, manifest)


def _write_json(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def migrate_run_ids(store: "str | Path", fmt: str = "netcdf") -> int:
    """Rename the runs of a store written before run ids left out the run limits to their current ids.

    Run ids of ``run_id_version`` 1 (manifests without the key) hashed ``max_wall_time``, ``max_steps``,
    ``checkpoint_every`` too, so every id differs now; without this a re-run of such a store would compute all
    its runs again under new ids and orphan the old records and checkpoints.  The store's own configuration (its
    manifest) is resolved again: when it reproduces the manifest's ids, each run record and checkpoint is renamed
    to the current id (atomically, one at a time; an interrupted migration is completed by the next call) and the
    manifest rewritten.  Returns the number of files renamed (0 for a current store).

    Raises:
        SweepConfigError: this gflow cannot reproduce the store's old run ids (its configuration no longer
            validates, or resolves to other runs: changed defaults), so its runs cannot be matched to the current
            ids; they stay readable with :func:`open_sweep`, and continuing needs a new store.
    """
    from .config import SweepConfig, SweepConfigError, run_id_of

    store = Path(store)
    manifest = read_manifest(store)
    if manifest.get("run_id_version", 1) >= RUN_ID_VERSION:
        return 0
    c = manifest["config"]
    advice = (f"its runs stay readable with gf.open_sweep({str(store)!r}); to continue the sweep give a new store "
              "(store= / --out)")
    try:
        runs = SweepConfig.from_dict(c["network"], c["data"], c["solver"], c.get("grid"), c["seeds"]).runs()
    except SweepConfigError as exc:
        raise SweepConfigError(f"the store {store} was written by an earlier gflow (run ids that hashed the run "
                               f"limits), and its configuration no longer validates ({exc}), so its runs cannot be "
                               f"matched to the current run ids; {advice}") from None
    mapping = {run_id_of(r.config, version=1): r.run_id for r in runs}
    listed = [r["run_id"] for r in manifest["runs"]]
    if set(listed) != set(mapping):
        raise SweepConfigError(f"the store {store} was written by an earlier gflow (run ids that hashed the run "
                               f"limits), and this gflow resolves its configuration to other runs (changed defaults), "
                               f"so its runs cannot be matched to the current run ids; {advice}")
    renamed = 0
    for old, new in mapping.items():
        if old == new:
            continue
        src, dst = run_file(store, old, fmt), run_file(store, new, fmt)
        if src.exists() and not dst.exists():
            os.rename(src, dst)
            renamed += 1
        src, dst = checkpoint_file(store, old), checkpoint_file(store, new)
        if src.exists() and not dst.exists():
            renamed += move_checkpoint(src, dst)  # the file and its segment files
    manifest["runs"] = [{**r, "run_id": mapping[r["run_id"]]} for r in manifest["runs"]]
    manifest["run_id_version"] = RUN_ID_VERSION
    _write_json(store / MANIFEST, manifest)
    return renamed


def check_same_sweep(store: "str | Path", config: dict, runs: list, fmt: str = "netcdf", *,
                     extend: bool = False) -> None:
    """Refuse to run a different sweep into a store that holds runs of another one.

    The manifest (and so :func:`open_sweep`) lists the runs of the sweep run last: a changed configuration would
    replace it and leave the store's earlier runs in ``runs/`` where no API shows them.  The runs are compared
    by id (which hashes each run's resolved settings but not its limits, so a default written out or a raised
    ``max_wall_time`` is the same sweep); ``extend=True`` accepts a configuration that keeps every run of the
    store and adds more (grid values, seeds).  A store without run records takes any configuration.

    Raises:
        SweepConfigError: the configuration drops runs of the store, or adds runs without ``extend``; the message
            names the settings that differ.
    """
    from .config import SweepConfigError

    store = Path(store)
    if not (store / MANIFEST).exists() or not _records(store, fmt):
        return
    manifest = read_manifest(store)
    old = [r["run_id"] for r in manifest["runs"]]
    new = {r.run_id for r in runs}
    dropped = [i for i in old if i not in new]
    added = len(new - set(old))
    if not dropped and (not added or extend):
        return
    diffs = "; ".join(config_differences(manifest["config"], config)) or (
        "the settings read the same, but resolve to other runs (defaults of another gflow version)")
    if not dropped:
        raise SweepConfigError(
            f"the configuration adds {added} run(s) to the sweep in the store {store} ({diffs}); to add them to "
            "this sweep pass extend=True (gflow sweep --extend), or give a new store (store= / --out)")
    raise SweepConfigError(
        f"the configuration differs from the sweep in the store {store} ({diffs}): {len(dropped)} of its "
        f"{len(old)} runs are not runs of the new configuration and would be orphaned (dropped from its manifest "
        "and from gf.open_sweep); give a new store (store= / --out) for the new configuration"
        + ("" if extend else ", or keep every setting and grid value and pass extend=True (gflow sweep --extend) "
           "to add grid values or seeds"))


def config_differences(old: dict, new: dict) -> list[str]:
    """What differs between two sweep configurations (``SweepConfig.to_dict()``), one phrase per key: fixed
    settings (the run limits left out), grid values and seeds."""
    from .config import RUN_LIMITS, SECTIONS, _canonical

    out = []
    for section in SECTIONS:
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if section == "solver" and key in RUN_LIMITS:
                continue
            va, vb = a.get(key), b.get(key)
            if _canonical(va) != _canonical(vb):  # 5 and 5.0 are the same setting
                show = lambda v: "not set" if v is None else json.dumps(v)
                out.append(f"{section}.{key}: {show(va)} in the store vs {show(vb)} now")
    ga, gb = old.get("grid") or {}, new.get("grid") or {}
    for key in list(ga) + [k for k in gb if k not in ga]:
        if key not in gb:
            out.append(f"grid[{key!r}] is swept in the store but not now")
        elif key not in ga:
            out.append(f"grid[{key!r}] is swept now but not in the store")
        else:
            ca, cb = _canonical(ga[key]), _canonical(gb[key])
            more = [v for v, c in zip(gb[key], cb) if c not in ca]
            less = [v for v, c in zip(ga[key], ca) if c not in cb]
            if more:
                out.append(f"grid[{key!r}] adds {json.dumps(more)}")
            if less:
                out.append(f"grid[{key!r}] drops {json.dumps(less)}")
    sa, sb = list(old.get("seeds", [])), list(new.get("seeds", []))
    if sa != sb:
        more, less = [s for s in sb if s not in sa], [s for s in sa if s not in sb]
        parts = ([f"adds {more}"] if more else []) + ([f"drops {less}"] if less else [])
        out.append("seeds " + ", ".join(parts) if parts else f"seeds: {sa} in the store vs {sb} now")
    return out


#: the statuses of runs stopped by a run limit (see :func:`retried_statuses`)
LIMIT_STATUSES = ("time_budget", "max_steps", "stalled")


def retried_statuses(old_solver: dict, new_solver: dict) -> set[str]:
    """The failure statuses a raised limit can resolve: ``"time_budget"`` when ``max_wall_time`` is larger in
    ``new_solver`` (None: no budget) than in ``old_solver``, ``"max_steps"`` and ``"stalled"`` (a projection
    beyond max_steps) when ``max_steps`` is.  A re-run of a sweep repeats its runs recorded with these statuses
    (they resume from their checkpoints), so raising the limit and re-running does what the message says;
    ``old_solver`` is then the [solver] section each run was recorded with (:func:`recorded_solver`)."""
    import inspect

    from ..solve.ode import simulate

    def limit(solver: dict, key: str):
        value = solver.get(key, inspect.signature(simulate).parameters[key].default)
        return math.inf if value is None else float(value)

    out = set()
    if limit(new_solver, "max_wall_time") > limit(old_solver, "max_wall_time"):
        out.add("time_budget")
    if limit(new_solver, "max_steps") > limit(old_solver, "max_steps"):
        out |= {"max_steps", "stalled"}
    return out


def _h5_attr(path: Path, name: str) -> bool:
    """Whether the HDF5/netCDF-4 file ``path`` has the root attribute ``name`` (False if it cannot be read)."""
    try:
        import h5py

        with h5py.File(path, "r") as fh:
            return name in fh.attrs
    except (OSError, ImportError):
        return False


def check_not_experiment_folder(store: "str | Path", *, look_at: int = 16) -> None:
    """Refuse to make ``store`` a sweep store if it holds the results of ``gflow reproduce`` (an experiment's
    ``runs.nc``, or run files of :mod:`gflow.experiments.tasks` among the first ``look_at`` in ``runs/``): the
    sweep's runs would mix with the experiment's in ``runs/`` and its manifest with the experiment's files."""
    store = Path(store)
    found = []
    if (store / "runs.nc").is_file() and _h5_attr(store / "runs.nc", "gflow_experiment"):
        found.append("runs.nc (an experiment's runs)")
    if (store / RUNS_DIR).is_dir():
        for path in sorted((store / RUNS_DIR).glob("*.nc"))[:look_at]:
            if _h5_attr(path, "reproduce_run_id"):
                found.append(f"{RUNS_DIR}/{path.name} (a run of gflow reproduce)")
                break
    if found:
        raise ValueError(
            f"store (--out) {store} holds the results of gflow reproduce: {', '.join(found)}; a sweep needs a folder "
            f"of its own, or its runs would mix with the experiment's in {store / RUNS_DIR}: give another store, "
            f"e.g. {store.parent / (store.name + '-sweep')}")


def read_manifest(store: "str | Path") -> dict:
    """``STORE/manifest.json`` as a dict.

    Raises:
        FileNotFoundError: ``store`` has no manifest (not a sweep store).
        ValueError: the manifest cannot be read (damaged: not JSON, not UTF-8, not a JSON object); the message
            names it and says how to write it anew.
    """
    store = Path(store)
    path = store / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{store} is not a sweep store (no {MANIFEST}); run gf.sweep(..., store=...) "
                                "or `gflow sweep CONFIG.toml --out STORE` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # (a bare JSONDecodeError named no file)
        problem = f"{type(exc).__name__}: {exc}"
    else:
        if isinstance(manifest, dict) and isinstance(manifest.get("runs"), list):
            return manifest
        problem = f"expected a JSON object with the list 'runs', got {type(manifest).__name__}"
    # the run records do not depend on the manifest: the same sweep run again writes it anew and skips them
    raise ValueError(f"the manifest {path} of the sweep store {store} is damaged ({problem}); move it aside (e.g. to "
                     f"{MANIFEST}.damaged) and run the same sweep again to write it anew (the finished runs in the "
                     "store are kept and not computed again), or restore it from a copy")


def grid_coords(grid_keys: list[str]) -> dict[str, str]:
    """Coordinate names for grid keys: the bare key (``"n"``) when unique, else ``"data_seed"`` style."""
    bare = [k.split(".")[1] for k in grid_keys]
    reserved = reserved_names()
    out = {}
    for key, name in zip(grid_keys, bare):
        out[key.replace(".", "_") if bare.count(name) > 1 or name in reserved else name] = key
    return out


def _safe_coords(coords_map: dict[str, str]) -> dict[str, str]:
    """``grid_coords`` of a manifest with the names that collide with the dataset's own renamed ``section_key``:
    a store written before the time series were reserved (a grid over ``solver.error_estimate`` named its
    coordinate ``error_estimate``, and no dataset of the store could be built)."""
    reserved = reserved_names()
    return {(key.replace(".", "_") if name in reserved else name): key for name, key in coords_map.items()}


#: the suffix of a run record that could not be read, set aside by :func:`set_aside_damaged`
#: (``runs/<run_id>.nc.damaged``, ``runs.zarr/<run_id>.damaged``): no longer a record, so the run is repeated
DAMAGED = ".damaged"


def _records(store: Path, fmt: str) -> dict[str, Path]:
    """``{run_id: path}`` of the run records present (hidden temporary files and folders, and records set aside
    as damaged, are ignored)."""
    if fmt == "zarr":
        root = store / ZARR_RUNS
        if not root.is_dir():
            return {}
        return {f.name: f for f in root.iterdir()
                if not f.name.startswith(".") and not f.name.endswith(DAMAGED) and f.is_dir()
                and ((f / "zarr.json").exists() or (f / ".zgroup").exists())}
    return {f.stem: f for f in (store / RUNS_DIR).glob("*.nc") if not f.name.startswith(".")}


def record_attrs(path: "str | Path", names: "Sequence[str] | None" = None, *,
                 arrays: "Sequence[str]" = ()) -> dict | None:
    """The root attributes ``names`` (None: all) of a run record (a netCDF file or a zarr group) that it has,
    reading of its arrays only ``arrays`` (those it has, to check they can be read); None if it cannot be read
    (damaged: HDF5 refuses to open a file shorter than its superblock says, so a truncated record is caught here;
    a zarr record's arrays are files of their own, one of which can be cut while its attributes read).  One
    attribute of a small netCDF record costs ~0.4 ms, all 19 ~2.5 ms, :func:`read_run` ~10 ms."""
    path = Path(path)
    try:
        if path.is_dir():
            import zarr

            group = zarr.open_group(str(path), mode="r")
            for name in arrays:
                if name in group:
                    group[name][...]
            attrs = group.attrs.asdict()  # (one JSON document: all at once)
            return {k: _attr(v) for k, v in attrs.items() if names is None or k in names}
        import h5py

        with h5py.File(path, "r") as fh:
            for name in arrays:
                if name in fh:
                    fh[name][()]
            return {k: _attr(fh.attrs[k]) for k in (fh.attrs if names is None else names) if k in fh.attrs}
    except Exception:  # noqa: BLE001 - OSError, zarr's errors on a damaged group: not finished
        return None


def _status(attrs: dict) -> str:
    return str(attrs.get("sweep_status", attrs.get("status", "error")))


def completed(store: "str | Path", *, read_status: bool = True, fmt: str | None = None) -> dict[str, str | None]:
    """``{run_id: status}`` of the run records present (temporary files of interrupted writes are ignored).

    With ``read_status`` (the default) each record is opened for its status attribute alone (its arrays are not
    read), and a record that cannot be read is left out: the run is not finished and is repeated (see
    :func:`set_aside_damaged`).  ``read_status=False`` lists the records without opening them (status None)."""
    store = Path(store)
    fmt = fmt or store_format(store)
    out: dict[str, str | None] = {}
    for run_id, f in _records(store, fmt).items():
        if not read_status:
            out[run_id] = None
            continue
        attrs = record_attrs(f, ("sweep_status", "status"), arrays=("time", "loss"))
        if attrs is not None:  # unreadable: treat as not finished, the run is repeated
            out[run_id] = _status(attrs)
    return out


def recorded_solver(store: "str | Path", run_id: str, fmt: str = "netcdf") -> dict | None:
    """The resolved [solver] section, run limits included, that run ``run_id`` of ``store`` was recorded with (its
    record's ``sweep_config``); None if the record does not say (or cannot be read)."""
    attrs = record_attrs(run_file(store, run_id, fmt), ("sweep_config",)) or {}
    try:
        solver = json.loads(attrs["sweep_config"])["solver"]
    except (KeyError, TypeError, ValueError):
        return None
    return solver if isinstance(solver, dict) else None


def set_aside_damaged(store: "str | Path", readable: "dict | set", fmt: str = "netcdf") -> list[Path]:
    """Rename the run records of ``store`` that are not in ``readable`` (:func:`completed`: those that could not
    be read) to ``<record>.damaged``, so that a sweep repeats their runs, with a warning (:func:`set_aside`);
    returns the new paths.  Only the driver of a sweep calls this, holding the store's lock (no write of a record
    is then in flight)."""
    store = Path(store)
    return set_aside([path for run_id, path in _records(store, fmt).items() if run_id not in readable],
                     f"the store {store}", stacklevel=4)  # (the warning points at run_sweep's caller)


def set_aside(paths: "Sequence[Path]", where: str = "", *, stacklevel: int = 3) -> list[Path]:
    """Rename each of ``paths`` (run files or zarr groups that could not be read) to ``<name>.damaged``, replacing
    an earlier damaged copy, and warn naming them where ``where`` says what holds them (e.g. "the store S");
    returns the new paths.  Renamed, not deleted: one that only failed to read this once (a file system's hiccup)
    keeps its run, to be put back by hand.  Sweeps and ``gflow reproduce`` both call it, under their lock."""
    out = []
    for path in paths:
        aside = path.with_name(path.name + DAMAGED)
        if aside.is_dir():
            import shutil

            shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)
        out.append(aside)
    if out and where:
        import warnings

        from ..solution import GFlowWarning

        warnings.warn(f"{len(out)} run file(s) of {where} could not be read (damaged) and are computed again; set "
                      f"aside as {', '.join(p.name for p in out[:3])}{', ...' if len(out) > 3 else ''} in "
                      f"{out[0].parent}", GFlowWarning, stacklevel=stacklevel)
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


def _read_arrays(path: Path) -> tuple[dict, np.ndarray, dict]:
    """Attributes, times and (time,) series of a run record, read with h5py (a ``.nc`` file) or zarr (a group
    folder) directly: the records are small, but xarray's decoding of all their variables costs ~10-40x more."""
    from ..solution import _DIMS

    if path.is_dir():
        import zarr

        g = zarr.open_group(str(path), mode="r")
        attrs = {k: _attr(v) for k, v in g.attrs.asdict().items()}
        names = set(g.array_keys())
        get = lambda name: g[name][...]  # noqa: E731
    else:
        import h5py

        with h5py.File(path, "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            names = set(f.keys())
            arrays = {name: f[name][...] for name in names if name == "time" or _DIMS.get(name) == ("time",)}
        get = arrays.__getitem__
    t = np.asarray(get("time"), dtype=float) if "time" in names else np.zeros(0)
    series = {name: np.asarray(get(name), dtype=float) for name, dims in _DIMS.items()
              if dims == ("time",) and name in names}
    return attrs, t, series


def read_run(path: Path) -> dict | None:
    """Status, message, times, time series, statistics and device of a run record (a netCDF file or a zarr
    group); None if it cannot be read (an unfinished or damaged record: the run is repeated)."""
    try:
        attrs, t, series = _read_arrays(Path(path))
    except Exception:  # noqa: BLE001 - OSError, KeyError, zarr's errors on a damaged group: not finished
        return None
    stats = json.loads(attrs.get("stats", "{}"))
    if "sweep_wall_time" in attrs and "wall_time" not in stats:
        stats["wall_time"] = float(attrs["sweep_wall_time"])
    return {"status": str(attrs.get("sweep_status", attrs.get("status", "error"))),
            "message": str(attrs.get("message", "")), "t": t, "series": series, "stats": stats,
            "device": str(attrs.get("sweep_device", "")), "host": str(attrs.get("sweep_host", ""))}


def open_sweep(store: "str | Path", *, consolidated: bool = True):
    """The sweep in ``store`` as one :class:`xarray.Dataset` with dims (run, time).

    Per-run coordinates: ``run_id``, every grid key (named by the key, e.g. ``n``, ``width``, ``scaling``;
    ``section_key`` when two sections share a key or the key is a name of the dataset's own, e.g.
    ``solver_error_estimate`` beside the ``error_estimate`` series), ``seed``, ``status``
    (``"pending"`` for runs without a record yet, ``"error"`` for runs that raised), ``message``, ``device``
    (what the run ran on, e.g. ``"cpu"`` or ``"cuda:1"``) and ``host``.  Per-run variables: solver statistics
    (``n_f_evals``, ``n_steps``, ``n_accepted``, ``n_rejected``, ``wall_time``), ``final_loss``, ``final_t``.
    Time series (run, time), NaN-padded: ``loss``, ``test_loss``, ``test_error``, ``eta``, ``mu``, ``nu``,
    ``lam_min_M``, ... (every (time,) variable of the runs), with the 2-D coordinate ``t``.  Attributes:
    ``store``, ``config`` and ``provenance`` (JSON) and ``grid_coords`` (JSON: coordinate → ``section.key``).

    Args:
        store: the folder given to :func:`gflow.sweep` / ``gflow sweep --out``.
        consolidated: read ``STORE/sweep.nc`` (``sweep.zarr``) when it is up to date with the manifest
            (faster); ``False`` always assembles from the run records.

    The dataset is the same whether the store's runs are netCDF files or groups of a zarr store.

    Select with xarray, e.g. ``ds.where(ds.status == "success", drop=True)`` or
    ``ds.isel(run=(ds.n == 40).values)``; :func:`gflow.sweeps.run_solution` turns one run back into a
    :class:`gflow.Solution`.
    """
    import xarray as xr

    if not isinstance(store, (str, os.PathLike)):  # (None: pathlib's "expected str, bytes or os.PathLike object")
        raise TypeError(f"store must be the path of a sweep's store folder, got {describe(store)}")
    store = Path(store)
    manifest = read_manifest(store)
    fmt = manifest.get("format", "netcdf")
    stamp = _manifest_stamp(store)
    cons = consolidated_path(store, fmt)
    if consolidated and cons.exists():
        ds = _read_consolidated(cons, fmt)
        if ds is not None and ds.attrs.get("manifest_stamp") == stamp:
            ds.attrs["store"] = str(store.resolve())
            return ds
    runs = manifest["runs"]
    coords_map = _safe_coords(manifest["grid_coords"])
    records, series = [], {}
    for r in runs:
        path = run_file(store, r["run_id"], fmt)
        rec = {"status": "pending", "message": SWEEP_STATUSES["pending"], "t": np.zeros(0), "series": {},
               "stats": {}, "device": "", "host": ""}
        run = read_run(path) if path.exists() else None
        if run is None and path.exists():  # (it said "no run file yet" of a record that is there, damaged)
            rec["message"] = (f"the run record {path} cannot be read (damaged); the next sweep of this store sets "
                              "aside the records it cannot open (or whose time and loss it cannot read) and repeats "
                              f"their runs — one damaged elsewhere, delete it (or rename it to {path.name}.damaged) "
                              "to have its run repeated")
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
        "device": ("run", np.array([rec["device"] for rec in records], dtype=object)),
        "host": ("run", np.array([rec["host"] for rec in records], dtype=object)),
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


def _read_consolidated(path: Path, fmt: str):
    import xarray as xr

    try:
        if fmt == "zarr":
            with xr.open_zarr(path, consolidated=False) as ds:
                ds = ds.load()
            for name in ("run_id", "status", "message", "device", "host"):  # as the netCDF path gives them
                if name in ds.coords:
                    ds[name] = ds[name].astype(object)
            return ds
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception:  # noqa: BLE001 - a damaged summary: assemble from the run records instead
        return None


def consolidate(store: "str | Path"):
    """Assemble the sweep from its run records and write ``STORE/sweep.nc`` (``sweep.zarr`` for a zarr store),
    atomically; returns the dataset."""
    store = Path(store)
    ds = open_sweep(store, consolidated=False)
    fmt = read_manifest(store).get("format", "netcdf")
    if fmt == "zarr":
        write_zarr_atomic(ds, consolidated_path(store, fmt))
    else:
        write_atomic(ds, consolidated_path(store, fmt))
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

    if hasattr(source, "attrs") and "store" in getattr(source, "attrs", {}):
        store = Path(source.attrs["store"])
    elif isinstance(source, (str, os.PathLike)):
        store = Path(source)
    else:  # (an int reached Path(): "expected str, bytes or os.PathLike object, not int", naming no argument)
        raise TypeError(f"source must be a sweep's store folder or the dataset of gf.open_sweep, got "
                        f"{describe(source)}")
    manifest = read_manifest(store)
    runs = manifest["runs"]
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
        raise TypeError(f"run must be a run index (int) or a run_id (str), got {describe(run)}")
    fmt = manifest.get("format", "netcdf")
    path = run_file(store, run_id, fmt)
    if not path.exists():
        raise ValueError(f"run {run_id} has not finished (no {path}); run the sweep again to complete it")
    if fmt != "zarr":
        # a finished run's netCDF record, read once: its status from the root attributes (h5py, ~1 ms), then the
        # Solution by gflow's reader.  The whole record through xarray first, for two attributes, cost 7× the read
        # itself (215 → 30 ms for a run of 501 saved times).  A record that is damaged, of a failed run, or that
        # Solution.load refuses takes the path below, which says why as before.
        attrs = record_attrs(path, ("sweep_status",))
        if attrs is not None and attrs.get("sweep_status") != "error":
            try:
                return Solution.load(path)
            except Exception:  # noqa: BLE001 - (read again below, through xarray, which words the error)
                pass
    import xarray as xr

    try:
        if fmt == "zarr":
            with xr.open_zarr(path, consolidated=False) as ds:
                ds = ds.load()
        else:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                ds = ds.load()
    except Exception as exc:  # noqa: BLE001 - (a truncated record was h5py's raw OSError)
        raise ValueError(f"the record {path} of run {run_id} cannot be read (damaged: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); run the sweep again to set it aside and "
                         "repeat the run") from None
    status, message = ds.attrs.get("sweep_status"), ds.attrs.get("message", "")
    if status == "error":
        raise ValueError(f"run {run_id} raised an error and has no solution:\n{message}")
    if fmt == "zarr":  # Solution reads netCDF: hand it the group as a small temporary file
        with tempfile.TemporaryDirectory() as tmp:
            ds.to_netcdf(Path(tmp) / "run.nc", engine="h5netcdf")
            return Solution.load(Path(tmp) / "run.nc")
    return Solution.load(path)


__all__ = ["open_sweep", "run_solution", "consolidate", "provenance", "read_manifest", "completed", "grid_coords",
           "store_format", "consolidated_path", "migrate_run_ids", "retried_statuses", "check_same_sweep",
           "config_differences", "record_attrs", "recorded_solver", "set_aside_damaged", "LIMIT_STATUSES",
           "FORMATS"]
