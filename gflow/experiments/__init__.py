"""The paper's experiments (Appendix I, EQUATIONS.md §13): ``gflow reproduce {exp1,exp2,exp3,all}``.

Each module has ``PRESETS`` (``"tiny"`` for tests, ``"quick"`` for a 2-core CPU, ``"paper"`` for a GPU) and
``run(preset, out)``, which writes ``runs.nc``, PNG/PDF figures and ``summary.md`` under ``out/<name>/``.
Every run is a task (:mod:`gflow.experiments.tasks`) written atomically to ``out/<name>/runs/<run_id>.nc`` as it
finishes, through a :mod:`gflow.sweeps` executor (``executor="local" | "process" | "dask"``): a killed
reproduction keeps its finished runs, and running it again computes only the missing ones.
"""

from __future__ import annotations

import importlib

from .common import Claim, ExperimentResult, Run, load_runs, save_runs

EXPERIMENTS = ("exp1", "exp2", "exp3")


def reproduce(name: str, preset: str = "quick", out=None, *, progress=None, device: str = "cpu",
              executor="local", workers: int | None = None, scheduler=None):
    """Run one experiment (``"exp1"``, ``"exp2"``, ``"exp3"``) or ``"all"``; returns a list of results.

    ``executor`` (``"local"``, ``"process"``, ``"dask"`` or an executor object), ``workers`` and ``scheduler``
    say where the runs execute (see :func:`gflow.sweep`); runs already in ``out/<name>/runs/`` are not repeated.
    """
    from .._validate import check_choice
    from ..solution import check_output_path
    from ..sweeps.executors import _check_workers

    check_choice(name, "experiment", EXPERIMENTS + ("all",))
    _check_device(device, executor, scheduler)
    # before any folder is made (an existing file as ``out`` was a NotADirectoryError traceback after the first
    # runs were set up; workers=0 was refused after out/<name>/runs/ was made)
    if out is not None:
        check_output_path(out, "out", folder=True)
    _check_workers(workers)
    names = EXPERIMENTS if name == "all" else (name,)
    results = []
    for n in names:
        mod = importlib.import_module(f"{__name__}.{n}")
        check_choice(preset, "preset", tuple(mod.PRESETS))
        results.append(mod.run(preset, out, progress=progress, device=device, executor=executor, workers=workers,
                               scheduler=scheduler))
    return results


def _check_device(device, executor, scheduler=None) -> None:
    """The device checked before any run or folder is made (``--device gpu`` ended in torch's traceback from a
    worker, ``cuda`` on a machine without it in a chained one, after ``out/<name>`` was made): its form always, CUDA's
    presence where the runs execute here (``local``, ``process``, ``dask`` without a scheduler: a local cluster; a
    cluster's workers may have a GPU this machine lacks)."""
    from ..model.network import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        if "CUDA is not available" not in str(exc) or executor in ("local", "process") or (
                executor == "dask" and scheduler is None):
            raise


__all__ = ["EXPERIMENTS", "reproduce", "Claim", "Run", "ExperimentResult", "load_runs", "save_runs"]
