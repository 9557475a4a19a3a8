"""Periodic checkpoints of long single runs, and resuming from them.

A checkpoint (one ``torch.save`` file) holds everything a run needs to continue as if it had never stopped:
the loop state of the solver (t, the state, for the adaptive engine the step size, the PI controller's previous
error and the FSAL stage; for GD the step index), the recorder's contents, the monitor's counters, and a
fingerprint of the run — the network spec, a hash of the data and the solver settings, but not the limits
(max_steps, max_wall_time) or display options, so a stopped run can be resumed with larger limits.

The recorded history is stored append-only: the checkpoint file holds the loop state and a list of *segment*
files beside it (``<name>.seg000000``, …), each holding the rows recorded over a range of checkpoints.  A
checkpoint writes a new segment with the rows recorded since the last one, so its cost follows what was
recorded since, not the whole history (a single file rewritten at every checkpoint made a run's checkpoints
cost quadratically in its length: 20 000 GD steps with a checkpoint every 0.05 s spent 8.7× the run's own time
writing 5.4 GB).  Segments merge like a binary counter — a new segment absorbs the last one while that one holds
no more rows — so a run keeps O(log N) segment files and rewrites each row O(log N) times.

Files are written atomically (a temporary file in the same folder, flushed and fsynced, then ``os.replace``):
a segment first, then the checkpoint file that lists it, and only then are the segments it replaced deleted —
so a process killed at any moment leaves the old checkpoint or the new one, never a torn one.  Resuming repeats
exactly the operations of an uninterrupted run: bit-identical results for fixed-step methods and GD, and for
the adaptive engine too (same steps, same controller state).  Checkpoints of format 1 (one file with the whole
history, gflow before 2026-12-05) are still read, and continued in format 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._lock import FileLock, acquire
from .._validate import check_flag, check_positive_float, describe
from ..solution import GFlowWarning
from ._record import Monitor, Recorder

FORMAT = 2
#: the checkpoint formats this version reads (1: one file holding the whole history)
READ_FORMATS = (1, 2)
_SEG = ".seg"


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


def network_spec(net) -> dict:
    """A network's spec as a checkpoint fingerprints it (with a hash of c and W0 where they were given)."""
    spec = net.spec()
    if spec.get("explicit_params"):
        spec = dict(spec, params_sha256=_hash_tensors(net.c, net.W0))
    return json.loads(json.dumps(spec, default=str))


#: where a custom activation is fingerprinted: σ and σ′ there identify it (a spec holds its name only)
_PROBE = (-4.0, 4.0, 41)


def fingerprint(kind: str, problem, settings: dict) -> dict:
    """What identifies a run: kind, network spec (+ c, W0 if explicit), data hash and solver settings — and what a
    spec cannot say: a custom activation's σ and σ′ at :data:`_PROBE`'s points, a callable embedding's features Φ of
    the data (a checkpoint of one custom σ resumed with another of the same name, silently: a hybrid run)."""
    out = {
        "kind": kind,
        "network": network_spec(problem.net),
        "data_sha256": _hash_tensors(problem.X, problem.y, problem.X_test, problem.y_test),
        "solver": json.loads(json.dumps(settings, default=str)),
    }
    net = problem.net
    if not net.activation.builtin:
        u = torch.linspace(*_PROBE, dtype=torch.float64)
        out["activation_sha256"] = _hash_tensors(net.activation.sigma(u), net.activation.dsigma(u))
    emb = net.embedding.spec()  # (a callable, or random features with a custom activation: the features say)
    if emb.get("kind") == "callable" or '"custom": true' in json.dumps(emb, default=str):
        out["features_sha256"] = _hash_tensors(problem.Phi, problem.Phi_test)
    return out


def stored_layout(path: Any, default: str = "nm") -> str:
    """The feature-state layout to run with so that the checkpoint at ``path`` resumes: the one it was written with
    ("mn" for checkpoints written before the feature state had a layout choice, which stored [H, A] as (2, m, n)),
    or ``default`` where ``path`` is None or holds no readable feature-space checkpoint (open_checkpoint then reports
    what is wrong with the path or the file)."""
    if path is None:
        return default
    try:
        p = Path(path)
        if not p.is_file():
            return default
        solver = _read(p)["fingerprint"]["solver"]
    except Exception:  # noqa: BLE001 - an unreadable file: open_checkpoint reports it
        return default
    if not isinstance(solver, dict) or solver.get("space") != "feature":
        return default
    return solver.get("layout", "mn") if solver.get("layout", "mn") in ("nm", "mn") else default


def _with_layout(solver: dict) -> dict:
    """A checkpoint's solver settings with the layout that checkpoints older than the setting had: (2, m, n) ("mn")
    in feature space, None in weight space."""
    if not isinstance(solver, dict) or "layout" in solver or "space" not in solver:
        return solver
    return dict(solver, layout="mn" if solver.get("space") == "feature" else None)


def _differences(old: dict, new: dict) -> list[str]:
    old = dict(old, solver=_with_layout(old.get("solver", {})))
    out = []
    if old.get("kind") != new["kind"]:
        out.append(f"the kind of run ({old.get('kind')!r} vs {new['kind']!r})")
    if old.get("data_sha256") != new["data_sha256"]:
        out.append("the training/test data (their hashes differ)")
    for key, what in (("activation_sha256", "the custom activation's σ or σ′ (their values differ)"),
                      ("features_sha256", "the embedding's features Φ(X) (a callable, or with a custom activation: "
                                          "they differ)")):
        if old.get(key) == new.get(key):
            continue
        if old.get(key) is None:  # (an earlier gflow's checkpoint: nothing to compare with)
            out.append(f"{what.split(' (')[0]}: this checkpoint was written by an earlier gflow, which did not "
                       "fingerprint it, so it cannot be told from another one")
        else:
            out.append(what)
    for part in ("network", "solver"):
        a, b = old.get(part, {}), new[part]
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if part == "solver" and "space" in keys and "layout" in keys:
            keys.remove("layout")  # (the feature state's layout follows the space; listed, it named an unset setting)
        for k in keys[:6]:
            if part == "solver" and k == "networks" and isinstance(a.get(k), list) and isinstance(b.get(k), list):
                out.append(f"solver setting 'networks' ({_networks_differences(a[k], b[k])})")
                continue
            out.append(f"{part} setting {k!r} ({_short(a.get(k))} in the checkpoint vs {_short(b.get(k))} now)")
    return out


def _networks_differences(old: list, new: list) -> str:
    """What differs between a batch checkpoint's networks and the current ones (their count, or which network and
    which of its settings): both lists' reprs cut to 60 characters looked the same."""
    if len(old) != len(new):
        return f"{len(old)} networks in the checkpoint vs {len(new)} now"
    parts = []
    for i, (a, b) in enumerate(zip(old, new)):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                parts.append(f"nets[{i}]: {_short(a)} in the checkpoint vs {_short(b)} now")
            continue
        for k in sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)):
            parts.append(f"nets[{i}] {k!r}: {_short(a.get(k))} in the checkpoint vs {_short(b.get(k))} now")
    return "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")


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


class _Sink:
    """The file torch.save writes to, keeping the OSError of a write that failed (a full disk): torch's zip writer
    reports it as a RuntimeError ("unexpected pos 64 vs 0"), which :meth:`Checkpointer.save` did not catch."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data):
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        self.fh.flush()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace (atomic on POSIX and Windows).

    Raises:
        OSError: the file could not be written (a full disk: also when torch reports it as a RuntimeError).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is None:
                    raise
                raise sink.error from None
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def segment_path(path: Path, index: int) -> Path:
    """The file of segment ``index`` of the checkpoint at ``path``."""
    return path.with_name(f"{path.name}{_SEG}{index:06d}")


def checkpoint_files(path: Any) -> list[Path]:
    """The checkpoint file at ``path`` (if it exists) and every segment file beside it, referenced or not."""
    p = Path(path)
    head = f"{p.name}{_SEG}"
    segs = sorted(q for q in p.parent.iterdir() if q.name.startswith(head) and q.name[len(head):].isdigit()) \
        if p.parent.is_dir() else []
    return ([p] if p.is_file() else []) + segs


def _temporary_files(path: Path) -> list[Path]:
    """The temporary files of :func:`atomic_save` writes of the checkpoint at ``path`` and of its segments (left
    by a process killed mid-write)."""
    pattern = re.compile(re.escape(f".{path.name}") + rf"(?:{re.escape(_SEG)}\d+)?\.[a-z0-9_]+\.tmp")
    return [q for q in path.parent.iterdir() if pattern.fullmatch(q.name)] if path.parent.is_dir() else []


def delete(path: Any) -> int:
    """Delete the checkpoint at ``path``, its segment files and the temporaries of writes killed midway (those that
    cannot be deleted are left); the number deleted."""
    p = Path(path)
    n = 0
    for q in checkpoint_files(p) + _temporary_files(p):
        try:
            q.unlink()
            n += 1
        except OSError:
            pass
    return n


def move(src: Any, dst: Any) -> int:
    """Rename a checkpoint and its segment files (to ``dst`` and ``dst``'s segment names); the number renamed.

    The segments go first and the checkpoint file last: a move killed midway leaves the checkpoint at ``src``, and
    moving it again completes the move (the file first left ``dst`` without its segments, and ``src`` gone)."""
    src, dst = Path(src), Path(dst)
    n = 0
    for q in sorted(checkpoint_files(src), key=lambda q: q == src):  # (the checkpoint file last)
        os.rename(q, dst.with_name(dst.name + q.name[len(src.name):]))
        n += 1
    return n


#: recorded arrays up to this size are stacked into one array per segment (larger ones, e.g. features H at chosen
#: times, are pickled as they are: stacking would copy them, and their pickling overhead is negligible)
STACK_MAX_BYTES = 1 << 16


def _pack(values: list) -> tuple[str, Any]:
    """A list of recorded entries in a compact picklable form: small equal-shape arrays stacked into one, floats
    into one float64 array (pickling thousands of small arrays one by one cost more than their bytes)."""
    if values and all(type(v) is float for v in values):
        return "floats", np.asarray(values, dtype=np.float64)
    if values and all(isinstance(v, np.ndarray) for v in values):
        v0 = values[0]
        if v0.nbytes <= STACK_MAX_BYTES and all(v.shape == v0.shape and v.dtype == v0.dtype for v in values):
            return "stack", np.stack(values)
    return "list", list(values)


def _unpack(packed: tuple[str, Any]) -> list:
    kind, data = packed
    return data.tolist() if kind == "floats" else list(data)  # ("stack": the rows, views of one array)


def _read(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


def _assemble(path: Path, data: dict) -> dict:
    """The recorder's full state from a format-2 checkpoint's segments (what ``Recorder.load_state_dict`` restores).

    Raises:
        ValueError: a segment is missing, unreadable, or not the one the checkpoint lists.
    """
    lists: dict[str, list] = {}
    for seg in data["segments"]:
        q = segment_path(path, seg["index"])
        try:
            part = _read(q)
            ok = (isinstance(part, dict) and part.get("token") == data["token"] and part.get("index") == seg["index"]
                  and part.get("start") == seg["start"] and part.get("end") == seg["end"])
        except Exception:  # noqa: BLE001 - a missing or unreadable segment is reported the same way
            ok = False
        if not ok:
            raise ValueError(f"checkpoint {str(path)!r} is incomplete: its segment file {q.name!r} is missing, "
                             "unreadable or from another run; delete the checkpoint and its .seg files to start "
                             "afresh") from None
        for k, packed in part["entries"].items():
            values = _unpack(packed)
            if len(values) != seg["end"][k] - seg["start"].get(k, 0):
                raise ValueError(f"checkpoint {str(path)!r} is incomplete: its segment file {q.name!r} holds "
                                 f"{len(values)} entries of {k!r}, not the {seg['end'][k] - seg['start'].get(k, 0)} "
                                 "the checkpoint lists; delete the checkpoint and its .seg files to start afresh")
            lists.setdefault(k, []).extend(values)
    return _recorder_state(data["recorder_head"], lists)


def _recorder_state(head: dict, lists: dict[str, list]) -> dict:
    """What ``Recorder.load_state_dict`` restores, from a checkpoint's head state and flat lists (keyed as
    ``Recorder.lengths``: ``"rows.<key>"`` and the series).  A batch of seeds keys its lists ``"<seed index>/…"``
    and its head ``{"seeds": [head of each seed]}``: then ``{"seeds": [state of each seed]}``."""
    if "seeds" in head:
        per: list[dict[str, list]] = [{} for _ in head["seeds"]]
        for k, v in lists.items():
            i, key = k.split("/", 1)
            per[int(i)][key] = v
        return {"seeds": [_recorder_state(h, lst) for h, lst in zip(head["seeds"], per)]}
    state = dict(head)
    state["rows"] = {k[5:]: v for k, v in lists.items() if k.startswith("rows.")}
    for k, v in lists.items():
        if not k.startswith("rows."):
            state[k] = v
    for k in Recorder.SERIES:
        state.setdefault(k, [])
    return state


def load(path: Any) -> dict:
    """Read a checkpoint: a dict with ``format``, ``fingerprint``, ``loop``, ``monitor`` and ``recorder`` (the
    recorder's whole state, assembled from the segment files); it is a pickle: open only files you wrote.

    Raises:
        ValueError: a segment file is missing, unreadable or from another run.
    """
    p = _check_path(path)
    data = _read(p)
    if isinstance(data, dict) and data.get("format") == 2 and "segments" in data:
        data = dict(data, recorder=_assemble(p, data))
    return data


class Checkpointer:
    """Writes a run's checkpoints; created by :func:`open_checkpoint`.

    Args:
        path: the checkpoint file (its segment files go beside it).
        every: seconds of wall time between checkpoints.
        keep: keep the files after a successful run.
        fp: the run's :func:`fingerprint`.
        recorder, monitor: whose states the checkpoint holds along with the solver's loop state.
        resumed: the format-2 checkpoint this run resumes from (its segments are continued), if any.
    """

    def __init__(self, path: Path, every: float, keep: bool, fp: dict, recorder: Recorder, monitor: Monitor,
                 resumed: dict | None = None, lock: FileLock | None = None):
        self.path = path
        #: this run's exclusive use of the path (:func:`lock_path`), released by :meth:`finish`, or when the
        #: Checkpointer is collected (a run ended by an exception)
        self.lock = lock
        if lock is not None:
            weakref.finalize(self, lock.release)
        self.every = every
        self.keep = keep
        self.fp = fp
        self.recorder = recorder
        self.monitor = monitor
        self.last = time.perf_counter()
        self.n_saved = 0
        self.n_failed = 0
        cont = resumed is not None and resumed.get("format") == 2 and "segments" in resumed
        #: the segments the checkpoint file lists: {"index", "start", "end", "size"} (ranges of recorded entries)
        self.segments: list[dict] = list(resumed["segments"]) if cont else []
        self.token: str = resumed["token"] if cont else uuid.uuid4().hex
        self.next_index: int = int(resumed["next_index"]) if cont else 0

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every

    def save(self, loop: dict) -> None:
        """Write a checkpoint: a segment with what was recorded since the last one (merged with the last segments
        while they hold no more rows), then the checkpoint file listing the segments, then delete the segments it
        replaced.  One that cannot be written (a full disk, a folder gone) warns once and the run goes on — an
        OSError here ended the run with an exception and lost the work done."""
        try:
            superseded = self._write(loop)
        except OSError as exc:
            if not self.n_failed:
                warnings.warn(f"checkpoint {str(self.path)!r} could not be written ({exc}); the run goes on, and "
                              "tries again at the next checkpoint", GFlowWarning, stacklevel=3)
            self.n_failed += 1
        else:
            self.n_saved += 1
            for q in superseded:
                try:
                    q.unlink()
                except OSError:
                    pass  # an orphan: removed at the end of the run
        self.last = time.perf_counter()

    def _write(self, loop: dict) -> list[Path]:
        rec = self.recorder
        end = rec.lengths()
        segments = list(self.segments)
        start = segments[-1]["end"] if segments else {}
        # rows recorded since (a batch's seeds record at the same times: any seed's count)
        size = max((end[k] - start.get(k, 0) for k in end if k == "rows.t" or k.endswith("/rows.t")), default=0)
        superseded, next_index = [], self.next_index
        if any(end[k] != start.get(k, 0) for k in end):
            # binary-counter merging: absorb the last segments while they hold no more rows than the new one
            while segments and segments[-1]["size"] <= size:
                old = segments.pop()
                superseded.append(segment_path(self.path, old["index"]))
                size += old["size"]
            start = segments[-1]["end"] if segments else {}
            seg = {"index": self.next_index, "start": dict(start), "end": end, "size": size}
            entries = {k: _pack(v) for k, v in rec.entries(start, end).items()}
            q = segment_path(self.path, seg["index"])
            atomic_save({"format": FORMAT, "token": self.token, "index": seg["index"], "start": seg["start"],
                         "end": end, "entries": entries}, q)
            segments.append(seg)
            next_index += 1
        atomic_save({"format": FORMAT, "fingerprint": self.fp, "loop": loop, "monitor": self.monitor.state_dict(),
                     "recorder_head": rec.head_state(), "token": self.token, "next_index": next_index,
                     "segments": segments}, self.path)
        self.segments, self.next_index = segments, next_index
        return superseded

    def finish(self, success: bool) -> None:
        """Delete the files after a successful run (unless ``keep``); keep them when the run stopped early.  Segment
        files that the checkpoint does not list (left by a process killed between two writes), and the temporary
        files of writes killed midway, go either way.  A file that cannot be deleted (a folder made read-only during
        the run) warns and is left: the run's result is returned — that OSError ended a finished run with an
        exception, and its result was lost (an audit)."""
        listed = {segment_path(self.path, s["index"]) for s in self.segments}
        left: list[tuple[Path, OSError]] = []
        try:
            for q in checkpoint_files(self.path) + _temporary_files(self.path):
                if (success and not self.keep) or (q != self.path and q not in listed):
                    try:
                        q.unlink()
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        left.append((q, exc))
        except OSError as exc:  # (the folder itself could not be listed)
            left.append((self.path.parent, exc))
        self.release_lock()
        if left:
            warnings.warn(f"checkpoint {str(self.path)!r}: {len(left)} of its files could not be deleted at the end of "
                          f"the run ({left[0][0].name}: {left[0][1].strerror or left[0][1]}); the run's result is "
                          "complete: delete them by hand", GFlowWarning, stacklevel=3)

    def release_lock(self) -> None:
        """Let another run use the path (:meth:`finish` does; also a run ended by an exception)."""
        if self.lock is not None:
            self.lock.release()


def lock_path(path: Path) -> Path:
    """The lock file of the checkpoint at ``path`` (:mod:`gflow._lock`): ``run.ckpt.lock``, while a run uses it."""
    return path.with_name(path.name + ".lock")


def open_checkpoint(path: Any, *, every: Any, keep: Any, kind: str, problem, settings: dict,
                    recorder: Recorder, monitor: Monitor) -> tuple[Checkpointer, dict | None]:
    """A :class:`Checkpointer` for ``path``, and the loop state to resume from if ``path`` holds this run.

    Restores the recorder's and monitor's states from the file when resuming.

    Raises:
        ValueError: the file holds a different run (the message names what differs), or is not a checkpoint.
        InUseError: another process runs with this checkpoint now (it holds ``run.ckpt.lock``: :func:`lock_path`).
    """
    p = _check_path(path)
    _check_writable(p)
    every = check_positive_float(every, "checkpoint_every")
    keep = check_flag(keep, "keep_checkpoint")
    fp = fingerprint(kind, problem, settings)
    lock = acquire(lock_path(p), f"checkpoint {str(p)!r}")
    try:
        return _open_locked(p, every, keep, kind, fp, problem, recorder, monitor, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _open_locked(p: Path, every: float, keep: bool, kind: str, fp: dict, problem, recorder: Recorder,
                 monitor: Monitor, lock: FileLock | None) -> tuple[Checkpointer, dict | None]:
    if not p.exists():
        return Checkpointer(p, every, keep, fp, recorder, monitor, lock=lock), None
    try:
        data = _read(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"checkpoint {str(p)!r} exists but could not be read as a gflow checkpoint ({exc}); "
                         "delete it or choose another path") from None
    if not isinstance(data, dict) or data.get("format") not in READ_FORMATS or "fingerprint" not in data:
        raise ValueError(f"checkpoint {str(p)!r} is not a gflow checkpoint (formats {READ_FORMATS}); delete it or "
                         "choose another path")
    diffs = _differences(data["fingerprint"], fp)
    if diffs:
        raise ValueError(f"checkpoint {str(p)!r} was written by a different run, so it cannot be resumed: "
                         + "; ".join(diffs) + ". Use the same settings, or another checkpoint path (or delete "
                         "the file) to start afresh")
    ckpt = Checkpointer(p, every, keep, fp, recorder, monitor, resumed=data, lock=lock)
    state = _assemble(p, data) if data["format"] == 2 else data["recorder"]
    device = problem.net.device
    loop = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in data["loop"].items()}
    recorder.load_state_dict(state, device=device)
    monitor.load_state_dict(data["monitor"])
    return ckpt, loop
