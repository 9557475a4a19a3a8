"""Exclusive use of a checkpoint, a sweep store or an experiment folder by one run at a time (``flock`` on a lock file).

Two runs given the same checkpoint path (a script started twice, a notebook beside a script) both resumed from it,
wrote into it and deleted each other's segment files; two sweeps of one store computed every run twice.  The lock
is an advisory ``flock`` on a small file beside what it protects, which the operating system releases when the
holder's process ends however it ends (a crash or SIGKILL leaves no stale lock); it names the holder (pid, host,
start) for the message of the run that is refused.  Where ``fcntl`` is missing (Windows), or the filesystem has no
``flock``, nothing is locked.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import platform
import threading
import warnings
from pathlib import Path
from typing import IO

from .solution import GFlowWarning

#: the locks this process holds, by the lock file's real path: a run that ended without releasing its lock (an
#: exception between its start and its end, whose traceback keeps it alive at an interactive prompt) is taken over
#: by this process's next run of the same path in the same thread instead of refusing it (a live run in another
#: thread is refused, as another process's)
_HELD: dict[str, "FileLock"] = {}


class InUseError(RuntimeError):
    """A checkpoint, sweep store or experiment folder is in use by another run (another process holds its lock)."""


class FileLock:
    """An exclusive ``flock`` on ``path``, released by :meth:`release` (the file is then removed)."""

    def __init__(self, path: Path, fh: IO[str], holder: str):
        self.path = path
        self._fh: IO[str] | None = fh
        self.holder = holder
        self.thread = threading.current_thread()

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        key = os.path.realpath(self.path)
        if _HELD.get(key) is self:
            del _HELD[key]
        try:
            os.unlink(self.path)  # (while still holding it: a run that opens the path afterwards creates a new file)
        except OSError:
            pass
        fh.close()


def acquire(lock_path: str | os.PathLike, what: str) -> FileLock | None:
    """Hold ``lock_path`` exclusively for this process, or raise :class:`InUseError` naming ``what`` and the holder.

    None where ``fcntl`` is not available, or where the filesystem has no ``flock`` (with a warning).  A lock this
    process took for the same path in the same thread, or in a thread that has ended, is taken over (see
    :data:`_HELD`).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path = Path(lock_path)
    key = os.path.realpath(path)
    mine = _HELD.get(key)
    if mine is not None and mine.held:
        if mine.thread is not threading.current_thread() and mine.thread.is_alive():
            raise InUseError(f"{what} is in use by another run in this process (thread {mine.thread.name!r}, "
                             f"{mine.holder}); wait for that run to end, or give this one another path")
        mine.release()
    for _ in range(100):
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # a filesystem without flock (Lustre without -o flock, some network and FUSE mounts): run unlocked
                fh.close()
                with contextlib.suppress(OSError):
                    if os.path.getsize(path) == 0:
                        os.unlink(path)
                warnings.warn(f"{what} cannot be locked on this filesystem (flock: {exc.strerror or exc}): nothing "
                              "stops a second run from using it at the same time", GFlowWarning, stacklevel=3)
                return None
            fh.seek(0)
            holder = fh.read().strip() or "holder unknown"
            fh.close()
            raise InUseError(f"{what} is in use by another run ({holder}); wait for that run to end (or stop it), "
                             "or give this one another path") from None
        # the holder may have released (and removed) the file between our open and our flock: the lock is ours only
        # if the path still names the file we locked
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    else:  # pragma: no cover - a path recreated 100 times in a row
        raise InUseError(f"{what}: its lock file {str(path)!r} kept changing; try again")
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    holder = f"pid {os.getpid()} on {platform.node() or 'this host'} since {since}"
    os.ftruncate(fh.fileno(), 0)
    fh.write(holder + "\n")
    fh.flush()
    lock = FileLock(path, fh, holder)
    _HELD[key] = lock
    return lock


__all__ = ["FileLock", "InUseError", "acquire"]
