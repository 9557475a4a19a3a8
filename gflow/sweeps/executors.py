"""Where the runs of a sweep execute: a small interface and four engines.

An executor has ``submit(fn, spec) -> future`` (anything with ``.result()``), ``as_completed(futures)`` (an
iterator over finished futures) and ``shutdown()``.  The engines:

* :class:`LocalSerial` (``"local"``): one run after another in this process; the default, and the reference.
* :class:`ProcessPool` (``"process"``): a :class:`concurrent.futures.ProcessPoolExecutor` with the spawn
  context, ``workers`` processes (default: the number of cores), each with cores // workers torch threads
  so that workers × threads ≤ cores.
* :class:`DaskExecutor` (``"dask"``): ``dask.distributed`` — a ``LocalCluster(n_workers=workers,
  threads_per_worker=1)`` by default, or ``Client(scheduler)`` for a running cluster (the way onto many
  machines; the store must then be on a file system every worker sees).  On a GPU machine run one worker
  per GPU (e.g. dask-cuda's ``LocalCUDACluster``, whose address you pass as ``scheduler``) with
  ``network.device = "cuda"``.  Needs the ``dask`` extra: ``pip install "gflow[dask]"``.
* :class:`SubmititExecutor` (``"submitit"``): one SLURM job per run through submitit (the ``slurm`` extra).

Another engine is a subclass of :class:`AbstractExecutor` (or any object with the three methods) passed
as ``executor=``.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

EXECUTORS = ("local", "process", "dask", "submitit")


class AbstractExecutor(abc.ABC):
    """Runs ``fn(spec)`` somewhere and hands back futures.

    Attributes:
        threads: torch intra-op threads each run should use (None: leave the worker's setting).
    """

    threads: int | None = None

    @abc.abstractmethod
    def submit(self, fn: Callable[[Any], Any], spec: Any) -> Any:
        """Schedule ``fn(spec)``; return a future-like object with ``.result()``."""

    @abc.abstractmethod
    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        """Yield the futures as they finish."""

    def shutdown(self) -> None:
        """Release the workers (the default does nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


class _Deferred:
    """A future computed when asked for: the serial executor runs each task as the sweep reaches it."""

    def __init__(self, fn, spec):
        self._fn, self._spec, self._done, self._value, self._error = fn, spec, False, None, None

    def run(self) -> None:
        if not self._done:
            try:
                self._value = self._fn(self._spec)
            except Exception as exc:  # noqa: BLE001 - kept for result(), as a concurrent.futures.Future does
                self._error = exc
            self._done = True

    def result(self):
        self.run()
        if self._error is not None:
            raise self._error
        return self._value


class LocalSerial(AbstractExecutor):
    """Every run in this process, one after another (torch threads as the caller set them)."""

    def submit(self, fn, spec):
        return _Deferred(fn, spec)

    def as_completed(self, futures):
        for fut in futures:
            fut.run()
            yield fut


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _check_workers(workers: Any) -> int | None:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer (or None for the number of cores), got {workers!r}")
    return workers


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessPool(AbstractExecutor):
    """A pool of ``workers`` spawned processes (default: one per core), each with cores // workers threads."""

    def __init__(self, workers: int | None = None):
        cores = _cores()
        self.workers = _check_workers(workers) or cores
        self.threads = max(1, cores // self.workers)
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(self.threads,))

    def submit(self, fn, spec):
        return self._pool.submit(fn, spec)

    def as_completed(self, futures):
        return cf.as_completed(list(futures))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(AbstractExecutor):
    """``dask.distributed``: a local cluster of ``workers`` single-threaded processes, or a running scheduler.

    Args:
        workers: processes of the local cluster (default: the number of cores); ignored with ``scheduler``.
        scheduler: address of a running scheduler (``"tcp://host:8786"``), or a ``distributed.Client``.
    """

    def __init__(self, workers: int | None = None, scheduler: Any = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError('executor="dask" needs dask.distributed: pip install "gflow[dask]" '
                              '(or pip install "dask[distributed]")') from None
        workers = _check_workers(workers)
        self._cluster = None
        self._own_client = True
        if scheduler is None:
            self.workers = workers or _cores()
            self.threads = 1
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        elif isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
        else:
            self.client = Client(scheduler)

    def submit(self, fn, spec):
        return self.client.submit(fn, spec, pure=False)

    def as_completed(self, futures):
        from distributed import as_completed

        return iter(as_completed(list(futures)))

    def shutdown(self) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()


class SubmititExecutor(AbstractExecutor):
    """One SLURM job per run through submitit (``pip install "gflow[slurm]"``).

    Args:
        folder: where submitit keeps job scripts and logs.
        **parameters: passed to ``submitit.AutoExecutor.update_parameters`` (e.g. ``timeout_min=60,
            slurm_partition="gpu", gpus_per_node=1``).
    """

    def __init__(self, folder: "str | Path", poll_interval: float = 5.0, **parameters):
        try:
            import submitit
        except ImportError:
            raise ImportError('executor="submitit" needs submitit: pip install "gflow[slurm]" '
                              "(or pip install submitit)") from None
        self._executor = submitit.AutoExecutor(folder=str(folder))
        self._executor.update_parameters(**{"timeout_min": 60, **parameters})
        self._poll = poll_interval

    def submit(self, fn, spec):
        return self._executor.submit(fn, spec)

    def as_completed(self, futures):
        pending = list(futures)
        while pending:
            done = [f for f in pending if f.done()]
            for f in done:
                pending.remove(f)
                yield f
            if pending and not done:
                time.sleep(self._poll)


def get_executor(executor: Any = "local", *, workers: int | None = None, scheduler: Any = None,
                 store: "str | Path | None" = None) -> tuple[AbstractExecutor, bool]:
    """Resolve ``executor`` (a name of :data:`EXECUTORS` or an executor object); returns (executor, owned)."""
    if not isinstance(executor, str):
        missing = [m for m in ("submit", "as_completed", "shutdown") if not hasattr(executor, m)]
        if missing:
            raise TypeError(f"executor must be one of {list(EXECUTORS)} or an object with submit, as_completed "
                            f"and shutdown (see gflow.sweeps.AbstractExecutor); got {type(executor).__name__} "
                            f"without {missing}")
        return executor, False
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; expected one of {list(EXECUTORS)} or an executor object")
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler={scheduler!r} is for executor='dask', got executor={executor!r}")
    if executor == "local":
        if workers not in (None, 1):
            raise ValueError(f"executor='local' runs one run at a time; for workers={workers} use "
                             "executor='process' or 'dask'")
        return LocalSerial(), True
    if executor == "process":
        return ProcessPool(workers), True
    if executor == "dask":
        return DaskExecutor(workers, scheduler), True
    folder = Path(store if store is not None else ".") / "submitit"
    return SubmititExecutor(folder), True


__all__ = ["AbstractExecutor", "LocalSerial", "ProcessPool", "DaskExecutor", "SubmititExecutor", "get_executor",
           "EXECUTORS"]
