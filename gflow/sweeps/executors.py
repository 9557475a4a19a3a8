"""Where the runs of a sweep execute: a small interface and four engines.

An executor has ``submit(fn, spec) -> future`` (anything with ``.result()``), ``as_completed(futures)`` (an
iterator over finished futures) and ``shutdown()``.  The engines:

* :class:`LocalSerial` (``"local"``): one run after another in this process; the default, and the reference.
* :class:`ProcessPool` (``"process"``): a :class:`concurrent.futures.ProcessPoolExecutor` with the spawn
  context, ``workers`` processes (default: the number of cores), each with cores // workers torch threads
  so that workers × threads ≤ cores.
* :class:`DaskExecutor` (``"dask"``): ``dask.distributed`` — a ``LocalCluster(n_workers=workers,
  threads_per_worker=1)`` by default, or ``Client(scheduler)`` for a running cluster (the way onto many
  machines; the store must then be on a file system every worker sees).  Needs the ``dask`` extra:
  ``pip install "gflow[dask]"``.
* :class:`SubmititExecutor` (``"submitit"``): one SLURM job per run through submitit (the ``slurm`` extra);
  ``cluster="local"`` runs the jobs as local processes and ``cluster="debug"`` in this process (no SLURM).

**GPUs.**  When the runs ask for ``network.device = "cuda"`` and the machine has G > 0 GPUs, the process pool
and the local Dask cluster start one worker per GPU (``workers`` defaults to G) and pin worker i to
``cuda:(i mod G)`` (:func:`plan_workers`; :func:`pin_worker` makes it the worker's current CUDA device); a
run's ``"cuda"`` then means its worker's GPU, and the device a run used is recorded with it (the ``device``
coordinate of :func:`gflow.open_sweep`).  Runs on ``"cpu"`` (the default) are not moved.  With a running
scheduler (``scheduler=``) the cluster's own workers decide (e.g. dask-cuda's ``LocalCUDACluster`` pins one
worker per GPU through ``CUDA_VISIBLE_DEVICES``).

Another engine is a subclass of :class:`AbstractExecutor` (or any object with the three methods) passed
as ``executor=``.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

EXECUTORS = ("local", "process", "dask", "submitit")
#: submitit clusters: "slurm" (and "auto", SLURM when available), "local" (local processes), "debug" (in-process)
SUBMITIT_CLUSTERS = ("auto", "slurm", "local", "debug")

# --------------------------------------------------------------------------------------------------------
# Devices: one worker per GPU

#: the device this worker process is pinned to (None: not pinned), set by :func:`pin_worker`
_WORKER_DEVICE: dict[str, Any] = {"device": None}


def gpu_count() -> int:
    """The number of CUDA devices torch sees here (0 without CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install is a machine without GPUs for the sweep
        return 0


def plan_workers(workers: int | None, *, cores: int, gpus: int, use_gpu: bool) -> tuple[int, list[str | None]]:
    """How many local workers to start and the device each is pinned to: ``(n, devices)``.

    Without GPUs, or when the runs do not ask for ``"cuda"``: ``workers`` (default: ``cores``) unpinned
    workers.  With G = ``gpus`` > 0 and GPU runs: ``workers`` (default: G) workers, worker i on
    ``cuda:(i mod G)`` — one per GPU by default; more workers than GPUs share them round-robin.

    >>> plan_workers(None, cores=16, gpus=4, use_gpu=True)
    (4, ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'])
    >>> plan_workers(3, cores=16, gpus=2, use_gpu=True)
    (3, ['cuda:0', 'cuda:1', 'cuda:0'])
    >>> plan_workers(None, cores=2, gpus=0, use_gpu=True)
    (2, [None, None])
    """
    workers = _check_workers(workers)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"gpus must be a non-negative integer, got {gpus!r}")
    if not use_gpu or gpus == 0:
        n = workers or max(1, cores)
        return n, [None] * n
    n = workers or gpus
    return n, [f"cuda:{i % gpus}" for i in range(n)]


def pin_worker(device: str | None) -> None:
    """Pin this worker process to ``device`` (``"cuda:i"``: made the current CUDA device, so that a run's
    ``"cuda"`` lands on it); None leaves the worker unpinned."""
    _WORKER_DEVICE["device"] = device
    if device is not None and device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(torch.device(device))


def worker_device() -> str | None:
    """The device this worker is pinned to (None when not pinned, e.g. the serial executor)."""
    return _WORKER_DEVICE["device"]


def run_device(config_device: Any, pinned: str | None) -> Any:
    """The device a run uses: its worker's GPU when the run asks for ``"cuda"`` (no index) and the worker is
    pinned to one, else the run's own ``network.device``.

    >>> run_device("cuda", "cuda:1"), run_device("cpu", "cuda:1"), run_device("cuda:0", "cuda:1")
    ('cuda:1', 'cpu', 'cuda:0')
    >>> run_device("cuda", None)
    'cuda'
    """
    if pinned is not None and str(pinned).startswith("cuda") and config_device == "cuda":
        return pinned
    return config_device



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

    def interrupt(self) -> None:
        """Ctrl-C in the sweep: stop the queued runs and, where the executor can, the runs in flight (the default
        does nothing: :meth:`shutdown` follows)."""

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


MAX_WORKERS = 65_536  # (10**30 workers was an OverflowError from the process pool)


def _check_workers(workers: Any) -> int | None:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be a positive integer, at most {MAX_WORKERS} (or None for the number of "
                         f"cores), got {workers!r}")
    return workers


#: how often a pool worker checks that the process that started it is still there (see _watch_parent)
PARENT_POLL_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    """End this worker process once its parent is gone (re-parented: ``os.getppid()`` changed).  A sweep killed with
    a plain ``kill PID`` (SIGTERM to the main process only) left its spawned workers computing the queued runs into
    the store, then idle on a pipe forever; a second sweep started meanwhile computed the same runs beside them."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # (a run record or checkpoint cut mid-write is a hidden temporary that the next sweep removes)


#: in a ProcessPool's worker: the pool's "stop" event, set by :meth:`ProcessPool.interrupt` (None elsewhere)
_POOL_STOP: Any = None


def in_pool_worker() -> bool:
    """Whether this process is a :class:`ProcessPool` worker (set up by its initializer)."""
    return _POOL_STOP is not None


def stop_requested() -> bool:
    """In a pool worker: the sweep that owns the pool was stopped (Ctrl-C), so a queued run must not start."""
    return _POOL_STOP is not None and _POOL_STOP.is_set()


def _init_worker(threads: int, devices: Any = None, tanh_route: str | None = None, parent: int | None = None,
                 stop: Any = None) -> None:
    import signal
    import threading

    import torch

    from ..solve._record import idle_worker_sigint

    global _POOL_STOP
    _POOL_STOP = stop
    if stop is not None:  # (ProcessPool's workers: a Ctrl-C between runs is the sweep's to handle)
        signal.signal(signal.SIGINT, idle_worker_sigint)

    # ``parent``: the pid of the process that made the pool.  Read here with os.getppid(), a worker whose sweep was
    # killed while the worker was still importing (seconds on a loaded machine) took PID 1 for its parent and
    # never ended
    parent = os.getppid() if parent is None else parent
    threading.Thread(target=_watch_parent, args=(parent,), name="gflow-parent-watch", daemon=True).start()
    torch.set_num_threads(threads)
    if tanh_route is not None:  # the parent's float64 tanh route: bit-identical to serial runs
        from ..model.activations import set_float64_tanh_route

        set_float64_tanh_route(tanh_route)
    if devices is not None:
        try:
            device = devices.get(timeout=10)  # each process takes the next device of the plan
        except Exception:  # noqa: BLE001 - queue.Empty: a process started beyond the plan stays unpinned
            device = None
        pin_worker(device)


def _probe(_: Any = None) -> tuple[int, str | None]:
    """``(pid, pinned device)`` of the worker that runs it (for tests and diagnostics)."""
    time.sleep(0.2)
    return os.getpid(), worker_device()


def importing_main_in_worker() -> bool:
    """Whether this process is a spawned worker still importing the main script (multiprocessing's bootstrap runs
    the script's unguarded module-level code in every worker of ``executor="process"``)."""
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _unguarded_marker(store: Any, parent_pid: int) -> Path:
    return Path(store) / f".unguarded-main-{parent_pid}"


def mark_unguarded_main(store: Any) -> None:
    """In a spawned worker importing the main script: leave the evidence that it ran the script's sweep call again
    (a file in the store named by the parent's pid, read by :func:`took_unguarded_main`); best effort."""
    try:
        _unguarded_marker(store, os.getppid()).touch()
    except (OSError, TypeError, ValueError):
        pass


def took_unguarded_main(store: Any) -> bool:
    """In the sweep's process: whether one of its workers left :func:`mark_unguarded_main`'s evidence (removed
    here).  A worker that died for another reason (killed, out of memory) leaves none, and its runs stay pending with
    the usual warning, whatever the script's guard looks like."""
    marker = _unguarded_marker(store, os.getpid())
    try:
        found = marker.exists()
        marker.unlink(missing_ok=True)
    except OSError:
        return False
    return found


def _is_main_test(test: Any, op: type) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (``op`` = ast.Eq) or ``!=`` (ast.NotEq), either way round."""
    import ast

    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], op)):
        return False
    sides = [test.left, test.comparators[0]]
    return (any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def unguarded_main_call() -> "tuple[str, int] | None":
    """``(script, line)`` when the running call was made by the main script's module-level code outside an
    ``if __name__ == "__main__":`` block — code that every spawned worker runs again as it imports the script;
    None when it was not (an interactive session, ``python -c``, a notebook, a guarded call) or cannot be told.
    Only for the message: whether the workers did run the call again is what they report
    (:func:`mark_unguarded_main`), since guards of other forms (``and``, ``in``, ``match``) are not parsed here."""
    import ast
    import sys

    frame, line, path = sys._getframe(1), None, None
    while frame is not None:  # the outermost frame of the script's module-level code ("__mp_main__" in a worker)
        file = frame.f_globals.get("__file__")
        if (frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") in ("__main__", "__mp_main__")
                and isinstance(file, str) and file.endswith(".py")):  # (not a worker's `python -c` bootstrap)
            line, path = frame.f_lineno, file
        frame = frame.f_back
    if line is None or path is None:
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    inside = lambda body: any(st.lineno <= line <= (st.end_lineno or st.lineno) for st in body)  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ((_is_main_test(node.test, ast.Eq) and inside(node.body))
                                         or (_is_main_test(node.test, ast.NotEq) and inside(node.orelse))):
            return None
    return str(path), line


def main_guard_advice(where: "tuple[str, int] | None") -> str:
    """What to do about a sweep call that spawned workers run again (see :func:`unguarded_main_call`)."""
    call = f"the gf.sweep call of {where[0]} (line {where[1]})" if where else "the script's gf.sweep call"
    return (f"executor='process' and a local Dask cluster start their workers with multiprocessing's 'spawn', and "
            f"each worker imports the main script, running its module-level code again; put {call} under "
            "`if __name__ == \"__main__\":` (or use executor='local')")


class ProcessPool(AbstractExecutor):
    """A pool of spawned processes, each with cores // workers torch threads.

    Args:
        workers: processes (default: the number of cores; with GPU runs, the number of GPUs).
        use_gpu: the runs ask for ``"cuda"``: pin one process per GPU (see :func:`plan_workers`).
        devices: an explicit device per process (overrides the plan; e.g. ``["cuda:0", "cuda:1"]``).
    """

    def __init__(self, workers: int | None = None, *, use_gpu: bool = False, devices: "list[str | None] | None" = None):
        cores = _cores()
        self.workers, devices = _worker_devices(workers, devices, use_gpu)
        self.devices = devices
        self.threads = max(1, cores // self.workers)
        ctx = multiprocessing.get_context("spawn")
        queue = None
        if any(d is not None for d in devices):
            queue = ctx.Queue()
            for d in devices:
                queue.put(d)
        from ..model.activations import worker_tanh_route

        #: set by interrupt(): the workers start no queued run (the ones a pool hands out ahead ran to their end)
        self._stop = ctx.Event()
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.threads, queue, worker_tanh_route(), os.getpid(),
                                                      self._stop))

    def submit(self, fn, spec):
        return self._pool.submit(fn, spec)

    def as_completed(self, futures):
        return cf.as_completed(list(futures))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def interrupt(self) -> None:
        """Ctrl-C in the sweep: no queued run starts, the runs in flight stop at their next step (they keep their
        checkpoints), and the workers end.  A terminal's Ctrl-C reaches the workers with the sweep (one process
        group); where it did not (a SIGINT to the sweep's process alone), the workers still busy after
        :data:`INTERRUPT_GRACE_SECONDS` get it from here.  A second Ctrl-C meanwhile terminates them at once.
        Without this, the runs in flight and the ones already handed to a worker ran to their end before the
        sweep returned."""
        self._stop.set()
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
            while time.monotonic() < deadline and any(p.is_alive() for p in procs):
                time.sleep(0.05)
            for p in procs:
                if p.is_alive():
                    try:
                        os.kill(p.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + INTERRUPT_JOIN_SECONDS
            for p in procs:
                p.join(max(0.0, deadline - time.monotonic()))
        finally:  # (also on a second Ctrl-C: the runs lose what they did since their last checkpoint)
            for p in procs:
                if p.is_alive():
                    p.terminate()


#: a worker still busy this long after a Ctrl-C in the sweep gets a SIGINT of its own (ProcessPool.interrupt)
INTERRUPT_GRACE_SECONDS = 3.0
#: then, how long a worker may take to stop its run and write its checkpoint before it is terminated
INTERRUPT_JOIN_SECONDS = 60.0


def _worker_devices(workers: Any, devices: "list[str | None] | None", use_gpu: bool) -> tuple[int, list]:
    """(workers, a device per worker): :func:`plan_workers`'s plan, or explicit ``devices`` checked against
    ``workers``."""
    if devices is None:
        return plan_workers(workers, cores=_cores(), gpus=gpu_count() if use_gpu else 0, use_gpu=use_gpu)
    devices = list(devices)
    n = _check_workers(workers) or len(devices)
    if len(devices) != n:
        raise ValueError(f"devices must give one device per worker ({n}), got {devices!r}")
    return n, devices


class _WithTanhRoute:
    """``fn`` run with the float64 tanh route fixed to ``route`` in the (local) process that runs it."""

    def __init__(self, fn: Callable, route: str):
        self.fn, self.route = fn, route

    def __call__(self, spec):
        from ..model.activations import set_float64_tanh_route

        set_float64_tanh_route(self.route)
        return self.fn(spec)


class DaskExecutor(AbstractExecutor):
    """``dask.distributed``: a local cluster of ``workers`` single-threaded processes, or a running scheduler.

    Args:
        workers: processes of the local cluster (default: the number of cores; with GPU runs, the number of
            GPUs); ignored with ``scheduler``.
        scheduler: address of a running scheduler (``"tcp://host:8786"``), or a ``distributed.Client``.
        use_gpu: the runs ask for ``"cuda"``: the local cluster gets one worker per GPU, each pinned to its
            device by a worker plugin (see :func:`plan_workers`).
        devices: an explicit device per local worker (overrides the plan).
    """

    def __init__(self, workers: int | None = None, scheduler: Any = None, *, use_gpu: bool = False,
                 devices: "list[str | None] | None" = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError('executor="dask" needs dask.distributed: pip install "gflow[dask]" '
                              '(or pip install "dask[distributed]")') from None
        workers = _check_workers(workers)
        self._cluster = None
        self._own_client = True
        self.devices = None
        if scheduler is None:
            self.workers, devices = _worker_devices(workers, devices, use_gpu)
            self.devices = devices
            self.threads = 1 if all(d is None for d in devices) else max(1, _cores() // self.workers)
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
            from ..model.activations import worker_tanh_route
            from ._dask import PinDevice, TanhRoute

            self.client.register_plugin(TanhRoute(worker_tanh_route()))  # (as the process pool's workers)
            if any(d is not None for d in devices):
                self.client.register_plugin(PinDevice(devices))
        elif isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
        else:
            try:
                self.client = Client(scheduler)
            except (OSError, TimeoutError, ValueError) as exc:  # (a traceback from tornado after 30 s)
                raise ValueError(f"scheduler={scheduler!r}: no Dask scheduler could be reached there ({exc}); start "
                                 "one (dask scheduler) or check the address, or leave scheduler out for a local "
                                 "cluster") from None

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
    """One job per run through submitit (``pip install "gflow[slurm]"``).

    Args:
        folder: where submitit keeps job scripts and logs.
        cluster: ``None``/``"auto"`` (SLURM when ``sbatch`` exists, else local processes), ``"slurm"``,
            ``"local"`` (each job a local process: the sweep runs without SLURM) or ``"debug"`` (each job in this
            process, when its result is asked for: for debugging).
        poll_interval: seconds between polls of unfinished jobs (default 5 on SLURM, 0.2 locally).
        max_jobs: jobs in flight at once; the others are submitted as these finish (default: unlimited on
            SLURM, whose queue schedules them; the number of cores for ``"local"``, which would otherwise start
            every run's process at once).  ``workers=`` of :func:`gflow.sweep` sets it.
        **parameters: passed to ``submitit.AutoExecutor.update_parameters`` (e.g. ``timeout_min=60,
            slurm_partition="gpu", gpus_per_node=1``).
    """

    def __init__(self, folder: "str | Path", cluster: str | None = None, poll_interval: float | None = None,
                 max_jobs: int | None = None, **parameters):
        try:
            import submitit
        except ImportError:
            raise ImportError('executor="submitit" needs submitit: pip install "gflow[slurm]" '
                              "(or pip install submitit)") from None
        if cluster is not None and cluster not in SUBMITIT_CLUSTERS:
            raise ValueError(f"cluster must be one of {list(SUBMITIT_CLUSTERS)} (or None), got {cluster!r}")
        self.cluster = None if cluster == "auto" else cluster
        try:
            self._executor = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster)
        except RuntimeError as exc:  # ("Could not detect "srun", are you indeed on a slurm cluster?": a traceback)
            raise ValueError(f"cluster={cluster!r}: submitit cannot submit from this machine ({exc}); run the sweep on "
                             "the cluster's login node, or use cluster='local' (processes here) or 'debug'") from None
        try:
            self._executor.update_parameters(**{"timeout_min": 60, **parameters})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"submitit rejected the executor options {sorted(parameters)}: {exc}") from None
        self.cluster = self._executor.cluster
        self._poll = poll_interval if poll_interval is not None else (5.0 if self.cluster == "slurm" else 0.2)
        self.max_jobs = _check_workers(max_jobs) or (_cores() if self.cluster == "local" else None)

    def submit(self, fn, spec):
        if self.cluster == "local":  # processes on this machine: the parent's float64 tanh route, as the pools'
            from ..model.activations import worker_tanh_route

            fn = _WithTanhRoute(fn, worker_tanh_route())
        fut = _Job(self._executor, fn, spec)
        if self.max_jobs is None:
            fut.start()
        return fut

    def as_completed(self, futures):
        pending = list(futures)
        while pending:
            running = sum(f.job is not None for f in pending)
            for f in pending:
                if running >= (self.max_jobs or len(pending)):
                    break
                if f.job is None:
                    f.start()
                    running += 1
            done = [f for f in pending if f.job is not None and f.job.done()]
            for f in done:
                pending.remove(f)
                yield f
            if pending and not done:
                time.sleep(self._poll)


class _Job:
    """A submitit job submitted when the executor has room for it (``max_jobs``)."""

    def __init__(self, executor, fn, spec):
        self._executor, self._fn, self._spec, self.job = executor, fn, spec, None

    def start(self) -> None:
        if self.job is None:
            self.job = self._executor.submit(self._fn, self._spec)

    def done(self) -> bool:
        return self.job is not None and self.job.done()

    def result(self):
        self.start()
        return self.job.result()


def get_executor(executor: Any = "local", *, workers: int | None = None, scheduler: Any = None,
                 store: "str | Path | None" = None, use_gpu: bool = False,
                 options: "dict | None" = None) -> tuple[AbstractExecutor, bool]:
    """Resolve ``executor`` (a name of :data:`EXECUTORS` or an executor object); returns (executor, owned).

    ``use_gpu``: the runs ask for ``"cuda"`` (one pinned worker per GPU, see :func:`plan_workers`);
    ``options``: keywords of the executor's class (e.g. ``{"cluster": "local", "timeout_min": 10}`` for
    submitit, ``{"devices": [...]}`` for the process pool or Dask).
    """
    options = dict(options or {})
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
        if options:
            raise ValueError(f"executor='local' takes no options, got {sorted(options)}")
        return LocalSerial(), True
    if executor == "process":
        return ProcessPool(workers, use_gpu=use_gpu, **options), True
    if executor == "dask":
        return DaskExecutor(workers, scheduler, use_gpu=use_gpu, **options), True
    folder = Path(options.pop("folder", None) or Path(store if store is not None else ".") / "submitit")
    if workers is not None:
        options.setdefault("max_jobs", workers)
    return SubmititExecutor(folder, **options), True


__all__ = ["AbstractExecutor", "LocalSerial", "ProcessPool", "DaskExecutor", "SubmititExecutor", "get_executor",
           "EXECUTORS", "SUBMITIT_CLUSTERS", "plan_workers", "pin_worker", "worker_device", "run_device", "gpu_count"]
