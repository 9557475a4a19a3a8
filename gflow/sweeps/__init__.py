r"""Grids of runs as one call: :func:`sweep` (and ``gflow sweep CONFIG.toml --out STORE``).

A sweep is the cartesian product of a grid of settings times network seeds.  Each run is built from its
resolved configuration alone, executed locally (serially or in a process pool), on a Dask cluster or
through submitit, and written to its own file in a store folder as soon as it finishes; re-running the
same sweep skips the runs already there.  :func:`open_sweep` hands back one labelled
:class:`xarray.Dataset` with dims (run, time).

Example (in a script, under ``if __name__ == "__main__":``: ``executor="process"`` spawns workers that import the
main script, and an unguarded call would run the sweep again in each of them):

    >>> import gflow as gf
    >>> ds = gf.sweep(                                                   # doctest: +SKIP
    ...     network={"d": 20, "width": 256, "activation": "tanh"},
    ...     data={"generator": "random_labels", "n_test": 100},             # (n is swept below)
    ...     solver={"kind": "simulate", "t1": 100.0, "method": "DOP853"},
    ...     grid={"data.n": [10, 20, 40], "network.scaling": ["ours", "ntk", "mf"]},
    ...     seeds=3, store="results/sweep1", executor="process")
    >>> ds.final_loss.groupby("n").mean()                                # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from .._lock import acquire
from .._validate import check_flag, describe
from ..solution import GFlowWarning
from .config import RunSpec, SweepConfig, SweepConfigError, run_id_of
from .executors import (
    EXECUTORS,
    SUBMITIT_CLUSTERS,
    AbstractExecutor,
    DaskExecutor,
    LocalSerial,
    ProcessPool,
    SubmititExecutor,
    get_executor,
    gpu_count,
    importing_main_in_worker,
    main_guard_advice,
    mark_unguarded_main,
    plan_workers,
    took_unguarded_main,
    unguarded_main_call,
)
from .run import FORMATS, RUNS_DIR, SWEEP_STATUSES, ZARR_RUNS, remove_write_leftovers, run_file, run_task
from .store import (
    LIMIT_STATUSES,
    check_not_experiment_folder,
    check_same_sweep,
    completed,
    consolidate,
    consolidated_path,
    grid_coords,
    migrate_run_ids,
    open_sweep,
    read_manifest,
    record_attrs,
    recorded_solver,
    retried_statuses,
    run_solution,
    set_aside_damaged,
    store_format,
    write_manifest,
)


def load_sweep_config(path: "str | Path") -> dict:
    """Read a sweep TOML file into the keyword arguments of :func:`sweep`: ``network``, ``data``, ``solver``,
    ``grid`` and ``seeds`` (validated; errors name the key)."""
    cfg = SweepConfig.from_toml(path)
    return {"network": cfg.network, "data": cfg.data, "solver": cfg.solver, "grid": cfg.grid,
            "seeds": list(cfg.seeds)}


def sweep(
    network: dict,
    data: dict,
    solver: dict,
    grid: "dict[str, list] | None" = None,
    seeds: "int | Sequence[int]" = 1,
    *,
    store: "str | Path",
    executor: "str | AbstractExecutor" = "local",
    workers: int | None = None,
    scheduler: Any = None,
    progress: bool | None = None,
    retry_failed: bool = False,
    extend: bool = False,
    keep_weights: bool = False,
    format: str | None = None,
    executor_options: dict | None = None,
):
    r"""Run every point of ``grid`` × ``seeds`` and collect the results in ``store``.

    Args:
        network: :class:`gflow.Network` keywords (``d``, ``width``, ``activation``, ``embedding`` — a name or a
            spec such as ``{"kind": "random_features", "D": 512}`` —, ``scaling``, ``c_hat``, ``dtype``,
            ``device``); the seed comes from ``seeds``.
        data: ``generator`` (a :mod:`gflow.data` function: ``random_labels``, ``quadratic_teacher``,
            ``wei2019``) and its arguments (``n``, ``seed`` (default 0), ``teacher_width``, ...), plus ``n_test``
            (test points, default none) and ``test_seed`` (default seed + 1).  ``d`` is the network's.
        solver: ``kind`` = ``"simulate"`` or ``"gradient_descent"`` and that function's keywords (``t1``,
            ``method``, ``rtol``, ... or ``step``, ``steps``, ``save_every``, ...).
        grid: ``{"section.key": [values]}``, e.g. ``{"data.n": [20, 40, 80], "network.scaling": ["ours",
            "ntk", "mf"], "solver.step": [0.5, 1.0]}``; the sweep is the cartesian product (None: one point).
        seeds: N (network seeds 0..N−1) or a list of seeds.
        store: the results folder (created if needed); see :mod:`gflow.sweeps.store`.
        executor: ``"local"`` (serial, the default), ``"process"`` (a spawn process pool, whose workers import
            the main script: a script's call must be under ``if __name__ == "__main__":``), ``"dask"``
            (``dask.distributed``), ``"submitit"`` (SLURM; ``executor_options={"cluster": "local"}`` runs its
            jobs as local processes), or an :class:`AbstractExecutor`.
        workers: processes for ``"process"`` and a local Dask cluster (default: the number of cores; when the
            runs ask for ``network.device = "cuda"`` on a machine with GPUs, one worker per GPU, each pinned to
            its GPU: see :func:`gflow.sweeps.executors.plan_workers`); for ``"submitit"``, jobs in flight.
        scheduler: a Dask scheduler address (``"tcp://host:8786"``) or ``distributed.Client``; the store must
            then be on a file system the workers share.
        progress: an overall tqdm bar (done, failed, remaining, ETA), and with the serial executor a bar over
            flow time for the run in progress; ``None``: only when stderr is a terminal (quiet in logs).
        retry_failed: also repeat runs whose file records a failure (any status but ``"success"``), e.g. a
            ``time_budget`` run on a faster machine; by default every run with a file is complete (a file that cannot
            be read, e.g. truncated, is set aside as ``<file>.damaged`` and its run repeated, with a
            :class:`gflow.GFlowWarning`), except that a limit raised above the one a run was recorded with
            (``max_wall_time``, ``max_steps``) repeats the runs it stopped (``"time_budget"``; ``"max_steps"``,
            ``"stalled"``), also after a re-run that raised it was killed midway.
        extend: accept a ``store`` that holds a sweep this one extends (the same settings, with more grid values
            or seeds): only the new runs are computed.  Any other change of configuration against a store with
            runs is refused, since the manifest would forget the store's earlier runs (give a new store).
        keep_weights: store W_final (and W at ``weights_at``) in the run files; off by default, because at
            m = D = 8192 W alone is 512 MiB per run.  It applies to the runs computed now: runs already in the
            store that were recorded without weights are not computed again (a :class:`gflow.GFlowWarning` names
            them and says how to get their weights).
        format: how runs are recorded: ``"netcdf"`` (one file per run, the default) or ``"zarr"`` (one group
            per run in the zarr store ``STORE/runs.zarr``, appended safely by many workers at once; needs
            ``pip install "gflow[zarr]"``).  None: the store's own format (``"netcdf"`` for a new store).
            :func:`open_sweep` gives the same dataset for both.
        executor_options: keywords of the executor's class: for ``"submitit"``, ``cluster`` (``"slurm"``,
            ``"local"``, ``"debug"``), ``folder`` and submitit parameters (``timeout_min``, ``slurm_partition``,
            ``gpus_per_node``, ...); for ``"process"`` / ``"dask"``, ``devices`` (one per worker).

    Returns:
        :func:`open_sweep` of the store: dims (run, time), a coordinate per grid key, ``seed``, ``status``,
        ``message``, solver statistics and the time series (``loss``, ``test_error``, ``eta``, ``mu``, ...).
        A run that failed (``"diverged"``, ``"stalled"``, ``"time_budget"``, ...) keeps its status, message and
        partial trajectory; a run that raised has status ``"error"`` and the traceback as its message.

    Raises:
        SweepConfigError (a ValueError): unknown sections or keys, grid values that are not lists, an unknown
            generator or solver kind, a value that cannot run, or a grid point whose network, data or solver
            settings fail their checks (every point is checked, none solved: the first point's network is built, the
            others' settings go through its checks without drawing weights); the
            message names the key; a grid value given twice, also in two spellings of one setting (``"ours"`` and
            ``"OURS"``), naming the key and both.  Also a ``store`` that holds runs of a different sweep (naming
            the settings that differ), or of a sweep this one extends without ``extend=True``.
        RuntimeError: ``executor="process"`` from a script whose call is not under
            ``if __name__ == "__main__":`` (every worker ran it again and died).

    A run's file is named by a hash of its resolved configuration (grid point, seed and fixed settings, but not
    the run limits ``max_wall_time``, ``max_steps``, ``checkpoint_every``, ``keep_checkpoint``, which do not change
    its result), so re-running a sweep — after a crash, a kill, or with more grid values — only computes the
    missing runs.  If the solver takes ``checkpoint=`` (checkpoint/resume of long runs), each run gets
    ``STORE/checkpoints/<run_id>.ckpt``, and a run stopped by ``max_wall_time`` resumes from it when the sweep is
    run again with a larger ``max_wall_time``.  A store written by a gflow whose run ids hashed the limits too is
    migrated first (its records and checkpoints renamed, with a :class:`gflow.GFlowWarning`; see
    :func:`gflow.sweeps.store.migrate_run_ids`).
    """
    cfg = SweepConfig.from_dict(network, data, solver, grid, seeds)
    return run_sweep(cfg, store=store, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
                     retry_failed=retry_failed, extend=extend, keep_weights=keep_weights, format=format,
                     executor_options=executor_options)


def run_sweep(cfg: SweepConfig, *, store: "str | Path", executor: Any = "local", workers: int | None = None,
              scheduler: Any = None, progress: bool | None = None, retry_failed: bool = False,
              extend: bool = False, keep_weights: bool = False, format: str | None = None,
              executor_options: dict | None = None,
              report=None):
    """Run a validated :class:`SweepConfig` (see :func:`sweep`); ``report(counts)`` gets the final counts
    (``total``, ``skipped``, ``success``, ``failed``, ``error``, and ``lost``: runs whose worker died, which stay
    pending with a :class:`gflow.GFlowWarning`)."""
    if importing_main_in_worker():  # (each worker ran the sweep again, found the store in use and died)
        mark_unguarded_main(store)  # (what the parent reads: the evidence, not a parse of the script)
        raise RuntimeError("gf.sweep was called by a worker process of a sweep as it imported the main script: "
                           + main_guard_advice(unguarded_main_call()))
    if not isinstance(cfg, SweepConfig):
        raise TypeError(f"cfg must be a SweepConfig, got {type(cfg).__name__}")
    if store is None:
        raise TypeError("store must be a folder for the results (e.g. store='results/sweep1')")
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise ValueError(f"store must be a folder, but {store} is a file")
    retry_failed, extend = check_flag(retry_failed, "retry_failed"), check_flag(extend, "extend")
    keep_weights = check_flag(keep_weights, "keep_weights")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (a bar when stderr is a terminal), got "
                        f"{describe(progress)}")
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"unknown executor {executor!r}; expected one of {list(EXECUTORS)} or an executor "
                             "object (see gflow.sweeps.AbstractExecutor)")
        if executor == "local" and workers not in (None, 1):
            raise ValueError(f"executor='local' runs one run at a time; for workers={workers} use "
                             "executor='process' or 'dask'")
    if executor_options is not None and not isinstance(executor_options, dict):
        raise TypeError(f"executor_options must be a dict of keywords, got {type(executor_options).__name__}")
    check_not_experiment_folder(store)
    fmt = store_format(store, format)
    runs = cfg.runs()
    use_gpu = any(str(r.config["network"].get("device", "cpu")).startswith("cuda") for r in runs)
    runs_here = isinstance(executor, str) and (executor in ("local", "process") or
                                               (executor == "dask" and scheduler is None))
    if use_gpu and runs_here and gpu_count() == 0:
        raise SweepConfigError(f"network.device asks for 'cuda' but this machine has no CUDA device; with "
                               f"executor={executor!r} the runs execute here (use device = 'cpu', or a cluster "
                               "with GPUs through scheduler= or submitit)")
    # one sweep at a time in a store: a second one computed every run again beside the first
    made = not store.exists()  # (a new store that cannot start its executor is removed again)
    store.mkdir(parents=True, exist_ok=True)
    lock = acquire(store / SWEEP_LOCK, f"the sweep store {str(store)!r}")
    started = False
    try:
        remove_write_leftovers(store / RUNS_DIR)  # (what a killed sweep's writes of run records left)
        remove_write_leftovers(store / ZARR_RUNS, ".zarr")
        manifest_solver: dict = {}
        if (store / "manifest.json").exists():
            renamed = migrate_run_ids(store, fmt)
            if renamed:
                warnings.warn(f"the store {store} was written by an earlier gflow, whose run ids also hashed the run "
                              f"limits (max_wall_time, ...); renamed {renamed} run record(s) and checkpoint(s) to the "
                              "current ids", GFlowWarning, stacklevel=2)
            manifest_solver = read_manifest(store)["config"].get("solver", {})
            check_same_sweep(store, cfg.to_dict(), runs, fmt, extend=extend)
        # each record opened for its status alone (~1 ms a record: 0.1 s for 100); one that cannot be read (a
        # truncated file) is not finished: it was listed as done, and the run stayed pending for good
        have = completed(store, fmt=fmt)
        set_aside_damaged(store, have, fmt)

        def raised(run_id: str) -> bool:
            """Whether a limit raised since the run was recorded can resolve how it stopped: it is repeated (from its
            checkpoint).  Compared with the limits in its own record, not the manifest's: a re-run that raised them
            and was killed before it repeated every such run had already written them to the manifest, and the next
            one repeated none of the rest."""
            if have[run_id] not in LIMIT_STATUSES:
                return False
            old = recorded_solver(store, run_id, fmt)  # (a few records: only those a limit stopped)
            return have[run_id] in retried_statuses(manifest_solver if old is None else old, cfg.solver)

        todo = [r for r in runs if r.run_id not in have or (retry_failed and have[r.run_id] != "success")
                or raised(r.run_id)]
        if keep_weights:
            computed = {r.run_id for r in todo}
            _warn_without_weights(store, [r.run_id for r in runs if r.run_id in have and r.run_id not in computed], fmt)
        # the executor starts before the manifest is written: one that cannot start (no srun, no scheduler at the
        # address) leaves the manifest as it was
        ex, owned = (get_executor(executor, workers=workers, scheduler=scheduler, store=store, use_gpu=use_gpu,
                                  options=executor_options) if todo else (None, False))
        started = True
        try:
            write_manifest(store, cfg.to_dict(), runs, grid_coords(list(cfg.grid)), fmt)
        except BaseException:
            if owned:
                ex.shutdown()
            raise
        if todo:
            # the consolidated file is stale until this sweep completes; open_sweep reads the run records meanwhile
            cons = consolidated_path(store, fmt)
            if cons.is_dir():
                shutil.rmtree(cons, ignore_errors=True)
            else:
                cons.unlink(missing_ok=True)
        counts = {"total": len(runs), "skipped": len(runs) - len(todo), "success": 0, "failed": 0, "error": 0,
                  "lost": 0, "lost_messages": []}
        bar = _bar(progress, len(runs), counts["skipped"])
        if todo:
            try:
                threads = getattr(ex, "threads", None)
                # per-run bars over flow time only where runs share this terminal (serial); workers stay quiet
                run_bars = bar is not None and isinstance(ex, LocalSerial)
                where = store.resolve()  # workers may run in another folder (a Dask cluster, SLURM)
                futures = {ex.submit(run_task, {**_payload(r, where, threads, keep_weights, fmt),
                                                "progress": run_bars}): r
                           for r in todo}
                for fut in ex.as_completed(list(futures)):
                    try:
                        res = fut.result()
                    except Exception as exc:  # noqa: BLE001 - the worker itself was lost (killed, out of memory, ...)
                        # no run file: the run stays pending and the next sweep of this store repeats it
                        counts["lost"] += 1
                        counts["lost_messages"].append(f"{futures[fut].run_id}: {type(exc).__name__}: {exc}")
                    else:
                        if res["status"] == "interrupted":  # Ctrl-C reached its worker alone: pending, as a lost run
                            counts["lost"] += 1
                            counts["lost_messages"].append(f"{res['run_id']}: Ctrl-C in its worker: {res['message']}")
                        else:
                            counts[{"success": "success", "error": "error"}.get(res["status"], "failed")] += 1
                    if bar is not None:
                        finished = counts["success"] + counts["failed"] + counts["error"] + counts["lost"]
                        bar.set_postfix(done=counts["success"], failed=finished - counts["success"],
                                        remaining=len(todo) - finished, refresh=False)
                        bar.update(1)
            except KeyboardInterrupt:  # (the finished runs are in the store: the same sweep goes on from them)
                if owned:
                    ex.interrupt()
                raise
            finally:
                if bar is not None:
                    bar.close()
                if owned:
                    ex.shutdown()
        elif bar is not None:
            bar.close()
        if took_unguarded_main(store) and counts["lost"]:
            # a worker ran the script's sweep call again as it imported the script (it said so, see above) and died,
            # as every worker will: "run the sweep again" failed the same way
            raise RuntimeError(f"the workers of the sweep in {store} died before running its runs: "
                               f"{main_guard_advice(unguarded_main_call())}")
        if report is not None:
            report(counts)
        if counts["lost"]:
            warnings.warn(f"{counts['lost']} run(s) of the sweep in {store} were lost by their workers and stay "
                          f"pending; run the sweep again to repeat them. First: {counts['lost_messages'][0]}",
                          GFlowWarning, stacklevel=2)
            return open_sweep(store, consolidated=False)
        return consolidate(store)
    finally:
        if lock is not None:
            lock.release()
        if made and not started:
            try:
                store.rmdir()  # (only while empty: nothing of the store is ever removed)
            except OSError:
                pass


def _warn_without_weights(store: Path, kept: list[str], fmt: str) -> None:
    """Warn that ``keep_weights=True`` leaves the runs ``kept`` (recorded, not computed again) without weights if
    their records have none: it was ignored for them without a word, and their W_final read back all NaN."""
    without = [i for i in kept if (record_attrs(run_file(store, i, fmt), ("weights_included",)) or {})
               .get("weights_included") == 0]  # (one attribute a record: ~1 ms; "error" records have no solution)
    if without:
        paths = ", ".join(run_file(store, i, fmt).name for i in without[:3]) + (", ..." if len(without) > 3 else "")
        warnings.warn(f"keep_weights=True: {len(without)} run(s) already in the store {store} were recorded without "
                      "their weights and are not computed again (run_solution(...).W_final is NaN for them); to get "
                      f"their weights, delete their records ({paths} in {run_file(store, without[0], fmt).parent}) "
                      "and run the sweep again, or give a new store", GFlowWarning, stacklevel=3)


#: the lock file a running sweep holds in its store (:mod:`gflow._lock`; removed when the sweep ends)
SWEEP_LOCK = ".sweep.lock"


def _payload(r: RunSpec, store: Path, threads: int | None, keep_weights: bool, fmt: str = "netcdf") -> dict:
    return {"run_id": r.run_id, "index": r.index, "point": r.point, "seed": r.seed, "config": r.config,
            "store": str(store), "threads": threads, "keep_weights": keep_weights, "format": fmt}


def _bar(progress: bool | None, total: int, initial: int):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="sweep", unit="run", file=sys.stderr, dynamic_ncols=True)


__all__ = [
    "sweep", "run_sweep", "open_sweep", "run_solution", "consolidate", "load_sweep_config", "SweepConfig",
    "SweepConfigError", "RunSpec", "run_id_of", "AbstractExecutor", "LocalSerial", "ProcessPool", "DaskExecutor",
    "SubmititExecutor", "get_executor", "EXECUTORS", "SWEEP_STATUSES", "read_manifest", "run_task", "FORMATS",
    "SUBMITIT_CLUSTERS", "plan_workers", "store_format",
]
