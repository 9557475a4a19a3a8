r"""The runs of an experiment as tasks: one atomic netCDF file per finished run, resumable, on any executor.

Every run of ``gflow reproduce`` (a GD or flow trajectory for one n, m, seed, scaling, ...) is a :class:`Task`:
a JSON-able ``spec`` (everything the run depends on), its ``labels`` and the dotted name of a module-level
function ``fn(spec, checkpoint=PATH | None) -> (Solution, extras)``, which passes :func:`solver_checkpoint` of its
``checkpoint`` on to the solver: the checkpoint is deleted once the run's file is written, not before.
:func:`execute` runs the tasks whose file is missing through a :mod:`gflow.sweeps` executor (``"local"``,
``"process"``, ``"dask"`` or an executor object) and reads every run back, in task order::

    out/<exp>/
      runs/<run_id>.nc          one gflow.Solution file per finished run (labels, spec, extras), written atomically
      checkpoints/<run_id>.ckpt the checkpoint of a long run in progress (GD and native Runge–Kutta methods)

The run id is ``<labels>_<hash>``, the hash being the first 16 hex digits of SHA-256 of (fn, spec), so a run is
found again whenever its configuration is the same (thresholds of the claims are not part of any spec: changing
them recomputes nothing) and a changed configuration never reuses a stale file.  A killed ``gflow reproduce``
keeps its finished runs; running it again skips them and resumes the unfinished ones from their checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._lock import acquire
from ..sweeps.run import CHECKPOINT_DIR, RUNS_DIR, checkpoint_file, remove_write_leftovers, run_file, write_atomic
from .common import Run, progress_bar

#: attributes this module adds to a run file (not copied into ``runs.nc``)
_ATTRS = ("labels", "reproduce_run_id", "reproduce_spec", "reproduce_fn", "reproduce_wall_time")
_EXTRA = "extra_"


@dataclass(frozen=True)
class Task:
    """One run of an experiment.

    Attributes:
        fn: ``"package.module:function"``, called in the worker as ``fn(spec, checkpoint=path_or_None)`` and
            returning ``(solution, extras)``, extras a dict ``name -> (dims, array)`` stored beside the solution;
            it passes ``**solver_checkpoint(checkpoint)`` to its solver (:func:`solver_checkpoint`).
        labels: the run's labels (``Run.labels``).
        spec: JSON-able configuration of the run; with ``fn`` it defines the run id.
        checkpoint: pass ``checkpoint=`` (GD and gflow's native methods support it).
    """

    fn: str
    labels: dict
    spec: dict
    checkpoint: bool = True

    @property
    def run_id(self) -> str:
        return run_id_of(self.fn, self.labels, self.spec)


#: the longest readable prefix of a run id (whole labels only)
SLUG_CHARS = 80


def run_id_of(fn: str, labels: dict, spec: dict) -> str:
    """``<labels>_<hash>``: a readable prefix from the labels — as many whole ``<key><value>`` labels as fit in
    80 characters — and the SHA-256 of (fn, spec) to 16 hex digits (the id: the prefix only reads)."""
    parts = [re.sub(r"[^A-Za-z0-9.=-]+", "", f"{k}{v}") for k, v in labels.items() if isinstance(v, (str, int, float))]
    slug = ""
    for part in filter(None, parts):  # (cut at 80 characters mid-value, "testseed10000" read "testseed1000")
        if len(slug) + bool(slug) + len(part) > SLUG_CHARS:
            break
        slug = f"{slug}-{part}" if slug else part
    return f"{slug}_{_digest(fn, spec)}" if slug else _digest(fn, spec)


def _digest(fn: str, spec: dict) -> str:
    text = json.dumps({"fn": fn, "spec": spec}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _legacy_run_id(fn: str, labels: dict, spec: dict) -> str:
    """The run id before whole labels (a prefix cut at 80 characters): its files are renamed on sight."""
    slug = "-".join(f"{k}{v}" for k, v in labels.items() if isinstance(v, (str, int, float)))
    slug = re.sub(r"[^A-Za-z0-9.=-]+", "", slug)[:SLUG_CHARS]
    return f"{slug}_{_digest(fn, spec)}" if slug else _digest(fn, spec)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def _resolve_fn(name: str) -> Callable:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def solver_checkpoint(checkpoint: Any) -> dict:
    """The checkpoint keywords of a task function's solver call (GD or a native method): ``{}`` for None, else
    ``checkpoint=`` and ``keep_checkpoint=True``, so that the solver keeps a finished run's checkpoint and
    :func:`run_one` deletes it once the run's file is written (deleted by the solver, a run whose file could not be
    written — a full disk, a read-only folder — was lost whole and ran again from t = 0: an audit)."""
    return {} if checkpoint is None else {"checkpoint": checkpoint, "keep_checkpoint": True}


def run_one(payload: dict) -> dict:
    """Worker side: compute one task and write ``runs/<run_id>.nc`` atomically; returns a short record.

    An exception propagates (no file is written: the run stays to be done on the next call of :func:`execute`,
    from its checkpoint, which a successful run's write deletes only once it is done).
    A pool worker of a reproduction that Ctrl-C stopped starts no queued run (as :func:`gflow.sweeps.run.run_task`).
    """
    from ..solution import Interrupted
    from ..sweeps.executors import stop_requested

    if stop_requested():  # a pool worker of a reproduction that Ctrl-C stopped starts no queued run
        raise Interrupted("not started: Ctrl-C stopped the reproduction")
    if payload.get("threads"):
        import torch

        torch.set_num_threads(int(payload["threads"]))
    folder = Path(payload["dir"])
    run_id = payload["run_id"]
    ckpt = None
    if payload["checkpoint"]:
        ckpt = checkpoint_file(folder, run_id)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sol, extras = _resolve_fn(payload["fn"])(payload["spec"], checkpoint=ckpt)
    wall = time.perf_counter() - start
    ds = sol.to_xarray(include_weights=False)
    for name, (dims, arr) in (extras or {}).items():
        ds[_EXTRA + name] = (tuple(dims), np.asarray(arr))
    ds.attrs.update({"labels": json.dumps(payload["labels"], default=_jsonable), "reproduce_run_id": run_id,
                     "reproduce_spec": json.dumps(payload["spec"], sort_keys=True, default=_jsonable),
                     "reproduce_fn": payload["fn"], "reproduce_wall_time": wall})
    write_atomic(ds, run_file(folder, run_id))
    if ckpt is not None and sol.status == "success":  # (only now: see solver_checkpoint)
        from ..solve.checkpoint import delete

        delete(ckpt)
    return {"run_id": run_id, "status": sol.status, "wall_time": wall}


def load_run(path: Path) -> tuple[Run, dict]:
    """A run file written by :func:`run_one`: (Run, extras as {name: array})."""
    import xarray as xr

    from ..solution import Solution

    with xr.open_dataset(path, engine="h5netcdf") as ds:  # once for both (it was opened twice: 0.18 s a run)
        ds = ds.load()
    sol = Solution.from_dataset(ds, path)
    extras = {k[len(_EXTRA):]: ds[k].values for k in ds.data_vars if k.startswith(_EXTRA)}
    labels = json.loads(sol.extra_attrs.get("labels", "{}"))
    sol = _strip(sol)
    return Run(labels, sol), extras


def _strip(sol):
    from dataclasses import replace

    return replace(sol, extra_attrs={k: v for k, v in sol.extra_attrs.items() if k not in _ATTRS})


def pending(tasks: Sequence[Task], folder: Path) -> list[Task]:
    """The tasks without a readable run file in ``folder/runs`` (interrupted writes leave only hidden temporary
    files; a file that cannot be opened, e.g. truncated, is no finished run: :func:`execute` sets it aside)."""
    from ..sweeps.store import record_attrs

    # (opened for one attribute, ~1 ms a file; a truncated file counted as finished, and every later call
    # crashed reading it back with h5py's raw OSError)
    for t in tasks:  # (a run under its earlier id, with a prefix cut mid-label: renamed, not redone — its record,
        legacy = _legacy_run_id(t.fn, t.labels, t.spec)  # or its checkpoint where it was interrupted)
        if legacy == t.run_id:
            continue
        new, old = run_file(folder, t.run_id), run_file(folder, legacy)
        if old.exists() and not new.exists():
            old.replace(new)
        new_ck, old_ck = checkpoint_file(folder, t.run_id), checkpoint_file(folder, legacy)
        if old_ck.exists() and not new_ck.exists():
            from ..solve.checkpoint import move

            move(old_ck, new_ck)
    return [t for t in tasks if record_attrs(run_file(folder, t.run_id), ("reproduce_run_id",)) is None]


#: the lock file a running reproduction holds in an experiment's folder (:mod:`gflow._lock`; removed at its end)
REPRODUCE_LOCK = ".reproduce.lock"


def execute(tasks: Sequence[Task], folder: str | Path | None, *, executor: Any = "local",
            workers: int | None = None, scheduler: Any = None, threads: int | None = None,
            progress: bool | None = None, desc: str = "runs", report: Callable[[dict], None] | None = None
            ) -> list[tuple[Run, dict]]:
    """Compute the tasks without a run file in ``folder`` and return every run, in the order of ``tasks``.

    Args:
        tasks: the runs; their run ids must be distinct.
        folder: the experiment's folder (``out/<exp>``; run files go to ``folder/runs``); ``None``: a temporary
            folder, deleted afterwards (nothing is kept).
        executor: ``"local"`` (serial, in this process), ``"process"``, ``"dask"`` (see
            :mod:`gflow.sweeps.executors`) or an executor object.
        workers, scheduler: as in :func:`gflow.sweep`.
        threads: torch threads of each run in a worker (default: the executor's share of the cores); the serial
            executor leaves this process's setting alone.
        progress: a bar over runs (default: only in a terminal).
        report: called with ``{"total", "skipped", "computed"}``.

    Raises:
        RuntimeError: a run raised; the message names it.  Finished runs are kept: call again to resume.
    """
    from ..sweeps.executors import LocalSerial, get_executor

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="gflow-reproduce-") as tmp:
            return execute(tasks, tmp, executor=executor, workers=workers, scheduler=scheduler, threads=threads,
                           progress=progress, desc=desc, report=report)
    folder = Path(folder)
    check_not_sweep_store(folder)
    ids = [t.run_id for t in tasks]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"tasks must have distinct run ids, got duplicates {dup[:3]}")
    (folder / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    # one reproduction at a time in a folder: a second one computed every run again beside the first
    lock = acquire(folder / REPRODUCE_LOCK, f"the experiment folder {str(folder)!r}")
    try:
        remove_write_leftovers(folder / RUNS_DIR)  # (what a killed reproduction's writes left)
        todo = pending(tasks, folder)
        _set_aside_damaged(folder, todo)
        if todo:
            ex, owned = get_executor(executor, workers=workers, scheduler=scheduler, store=folder)
            bar = progress_bar(len(tasks), desc, progress)
            bar.update(len(tasks) - len(todo))
            serial = isinstance(ex, LocalSerial)
            where = folder.resolve()
            try:
                nthreads = None if serial else (threads or getattr(ex, "threads", None))
                futures = {ex.submit(run_one, {"fn": t.fn, "spec": t.spec, "labels": t.labels,
                                               "run_id": t.run_id, "dir": str(where), "checkpoint": t.checkpoint,
                                               "threads": nthreads}): t
                           for t in todo}
                for fut in ex.as_completed(list(futures)):
                    task = futures[fut]
                    try:
                        fut.result()
                    except Exception as exc:
                        kept = len(list(folder.glob(f"{RUNS_DIR}/*.nc")))
                        raise RuntimeError(f"the run {task.labels} ({task.run_id}) raised {type(exc).__name__}: "
                                           f"{exc}. The {kept} finished runs are kept in {folder / RUNS_DIR}; run "
                                           "again to resume") from exc
                    bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in task.labels.items()))
                    bar.update()
            except KeyboardInterrupt:  # (the finished runs are kept: the same call goes on from them)
                if owned:
                    ex.interrupt()
                raise
            finally:
                bar.close()
                if owned:
                    ex.shutdown()
        if report is not None:
            report({"total": len(tasks), "skipped": len(tasks) - len(todo), "computed": len(todo)})
    finally:
        if lock is not None:
            lock.release()
    return [_load_checked(run_file(folder, t.run_id)) for t in tasks]


def _set_aside_damaged(folder: Path, todo: Sequence[Task]) -> None:
    """Rename the run files of ``todo`` that exist (so could not be read) to ``<file>.damaged``, out of the way of
    their runs, computed again; renamed rather than deleted, as :func:`gflow.sweeps.store.set_aside_damaged`
    does.  Only under the folder's lock."""
    from ..sweeps.store import set_aside

    set_aside([p for p in (run_file(folder, t.run_id) for t in todo) if p.exists()], f"the experiment in {folder}",
              stacklevel=4)


def _load_checked(path: Path) -> tuple[Run, dict]:
    """:func:`load_run`, with a file that opens but cannot be read back (damaged inside) a one-line error naming
    it, not a traceback from h5py or xarray."""
    try:
        return load_run(path)
    except Exception as exc:  # noqa: BLE001 - OSError, KeyError, ValueError of a damaged file
        raise ValueError(f"the run file {path} cannot be read ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it and run again to compute the "
                         "run anew") from exc


def check_not_sweep_store(folder: str | Path) -> None:
    """Refuse to write an experiment's runs into ``folder`` if it is a sweep store (``manifest.json`` of
    :func:`gflow.sweep`): the runs would mix in ``folder/runs`` (``gflow sweep ... --out results/exp1`` and
    ``gflow reproduce ... --out results`` both write to ``results/exp1``)."""
    from ..sweeps.store import MANIFEST

    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        raise ValueError(
            f"{folder} is a sweep store ({MANIFEST} of gflow sweep / gf.sweep); gflow reproduce writes this "
            f"experiment's runs to {folder / RUNS_DIR}, where they would mix with the sweep's: give reproduce "
            f"another --out than {folder.parent}, or move the sweep to a folder of its own")


def clean_checkpoints(folder: str | Path) -> None:
    """Remove ``folder/checkpoints`` when empty (every run finished)."""
    ck = Path(folder) / CHECKPOINT_DIR
    if ck.is_dir() and not any(ck.iterdir()):
        ck.rmdir()


__all__ = ["Task", "check_not_sweep_store", "clean_checkpoints", "execute", "load_run", "pending", "run_id_of",
           "run_one", "solver_checkpoint"]
