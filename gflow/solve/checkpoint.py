"""Periodic checkpoints of long single runs, and resuming from them.

A checkpoint (one ``torch.save`` file) holds everything a run needs to continue as if it had never stopped:
the loop state of the solver (t, the state, for the adaptive engine the step size, the PI controller's previous
error and the FSAL stage; for GD the step index), the recorder's contents, the monitor's counters, and a
fingerprint of the run — the network spec, a hash of the data and the solver settings, but not the limits
(max_steps, max_wall_time) or display options, so a stopped run can be resumed with larger limits.

Files are written atomically (a temporary file in the same folder, flushed and fsynced, then ``os.replace``), so
a process killed at any moment leaves the old checkpoint or the new one, never a torn file.  Resuming repeats
exactly the operations of an uninterrupted run: bit-identical results for fixed-step methods and GD, and for
the adaptive engine too (same steps, same controller state).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .._validate import check_positive_float, describe
from ..solution import GFlowWarning
from ._record import Monitor, Recorder

FORMAT = 1


def _hash_tensors(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
            continue
        a = t.detach().to("cpu").contiguous().numpy()
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(kind: str, problem, settings: dict) -> dict:
    """What identifies a run: kind, network spec (+ c, W0 if explicit), data hash and solver settings."""
    net = problem.net
    spec = net.spec()
    if spec.get("explicit_params"):
        spec = dict(spec, params_sha256=_hash_tensors(net.c, net.W0))
    return {
        "kind": kind,
        "network": json.loads(json.dumps(spec, default=str)),
        "data_sha256": _hash_tensors(problem.X, problem.y, problem.X_test, problem.y_test),
        "solver": json.loads(json.dumps(settings, default=str)),
    }


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old.get("kind") != new["kind"]:
        out.append(f"the kind of run ({old.get('kind')!r} vs {new['kind']!r})")
    if old.get("data_sha256") != new["data_sha256"]:
        out.append("the training/test data (their hashes differ)")
    for part in ("network", "solver"):
        a, b = old.get(part, {}), new[part]
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        for k in keys[:6]:
            out.append(f"{part} setting {k!r} ({_short(a.get(k))} in the checkpoint vs {_short(b.get(k))} now)")
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got {describe(path)}")
    p = Path(path)
    if p.exists() and p.is_dir():
        raise ValueError(f"checkpoint must be a file path, got the directory {str(p)!r}")
    return p


def _check_writable(p: Path) -> None:
    """Refuse a checkpoint path whose folder cannot be created or written, before the run (it failed at the first
    checkpoint, a minute in by default, with a bare OSError and the run's work lost)."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"checkpoint {str(p)!r} cannot be written there ({exc.strerror or exc}); choose a path in a "
                         "writable folder") from None


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace (atomic on POSIX and Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path: Any) -> dict:
    """Read a checkpoint file (it is a pickle: open only files you wrote)."""
    return torch.load(_check_path(path), map_location="cpu", weights_only=False)


class Checkpointer:
    """Writes a run's checkpoints; created by :func:`open_checkpoint`.

    Args:
        path: the checkpoint file.
        every: seconds of wall time between checkpoints.
        keep: keep the file after a successful run.
        fp: the run's :func:`fingerprint`.
        recorder, monitor: whose states the checkpoint holds along with the solver's loop state.
    """

    def __init__(self, path: Path, every: float, keep: bool, fp: dict, recorder: Recorder, monitor: Monitor):
        self.path = path
        self.every = every
        self.keep = keep
        self.fp = fp
        self.recorder = recorder
        self.monitor = monitor
        self.last = time.perf_counter()
        self.n_saved = 0
        self.n_failed = 0

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every

    def save(self, loop: dict) -> None:
        """Write a checkpoint; one that cannot be written (a full disk, a folder gone) warns once and the run goes
        on — an OSError here ended the run with an exception and lost the work done."""
        try:
            atomic_save({"format": FORMAT, "fingerprint": self.fp, "loop": loop,
                         "recorder": self.recorder.state_dict(), "monitor": self.monitor.state_dict()}, self.path)
        except OSError as exc:
            if not self.n_failed:
                warnings.warn(f"checkpoint {str(self.path)!r} could not be written ({exc}); the run goes on, and "
                              "tries again at the next checkpoint", GFlowWarning, stacklevel=3)
            self.n_failed += 1
        else:
            self.n_saved += 1
        self.last = time.perf_counter()

    def finish(self, success: bool) -> None:
        """Delete the file after a successful run (unless ``keep``); keep it when the run stopped early."""
        if success and not self.keep:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def open_checkpoint(path: Any, *, every: Any, keep: Any, kind: str, problem, settings: dict,
                    recorder: Recorder, monitor: Monitor) -> tuple[Checkpointer, dict | None]:
    """A :class:`Checkpointer` for ``path``, and the loop state to resume from if ``path`` holds this run.

    Restores the recorder's and monitor's states from the file when resuming.

    Raises:
        ValueError: the file holds a different run (the message names what differs), or is not a checkpoint.
    """
    p = _check_path(path)
    _check_writable(p)
    every = check_positive_float(every, "checkpoint_every")
    if not isinstance(keep, bool):
        raise TypeError(f"keep_checkpoint must be True or False, got {describe(keep)}")
    fp = fingerprint(kind, problem, settings)
    ckpt = Checkpointer(p, every, keep, fp, recorder, monitor)
    if not p.exists():
        return ckpt, None
    try:
        data = load(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"checkpoint {str(p)!r} exists but could not be read as a gflow checkpoint ({exc}); "
                         "delete it or choose another path") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "fingerprint" not in data:
        raise ValueError(f"checkpoint {str(p)!r} is not a gflow checkpoint (format {FORMAT}); delete it or choose "
                         "another path")
    diffs = _differences(data["fingerprint"], fp)
    if diffs:
        raise ValueError(f"checkpoint {str(p)!r} was written by a different run, so it cannot be resumed: "
                         + "; ".join(diffs) + ". Use the same settings, or another checkpoint path (or delete "
                         "the file) to start afresh")
    device = problem.net.device
    loop = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in data["loop"].items()}
    recorder.load_state_dict(data["recorder"], device=device)
    monitor.load_state_dict(data["monitor"])
    return ckpt, loop
