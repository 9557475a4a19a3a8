"""What the differential fuzzes (``fuzz_relu.py``, ``fuzz_smooth.py``) share: a solve that records whatever
happens, the per-run record with its flags, and the loop over seeds that appends one JSON line per case."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import gflow as gf


def solve_caught(net, X, y, t1, saveat, **kw):
    """``gf.simulate`` with ``features_at=[t1]``: (solution or None, wall seconds, warning or exception texts)."""
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            s = gf.simulate(net, X, y, t1, saveat=saveat, features_at=[t1], **kw)
        except Exception as e:  # noqa: BLE001 - a fuzz records whatever happens
            return None, time.perf_counter() - t, [repr(e)]
    return s, time.perf_counter() - t, [str(x.message) for x in w]


def judge(name: str, s, wall: float, w: list, flags: list, slow: float, check: Callable[[object, dict], list],
          width: int = 120) -> dict:
    """The record of one run: status, wall, the first warnings, and what ``check(s, record)`` flags (called on
    a successful run; it fills the record's errors); a failure or a run slower than ``slow`` seconds is flagged."""
    e = {"wall": wall, "warnings": [x[:width] for x in w[:2]]}
    if s is None:
        e["status"] = "exception"
        flags.append(f"{name}:exception")
    else:
        e["status"] = s.status
        if s.ok:
            flags += [f"{name}:{f}" for f in check(s, e)]
        else:
            flags.append(f"{name}:{s.status}")
    if wall > slow:
        flags.append(f"{name}:slow")
    return e


def run_cases(run_case: Callable[[int], dict], first: int, cases: int, path: Path,
              line: Callable[[dict], str | None]) -> list[dict]:
    """Run seeds first … first + cases − 1, appending each record to ``path`` as it finishes; print ``line(rec)``
    where it is not None, and a count of the flagged cases."""
    recs = []
    with open(path, "a") as f:
        for seed in range(first, first + cases):
            rec = run_case(seed)
            recs.append(rec)
            f.write(json.dumps(rec, default=float) + "\n")
            f.flush()
            text = line(rec)
            if text is not None:
                print(text, flush=True)
    print(f"{len(recs)} cases, {sum(bool(r['flags']) for r in recs)} flagged")
    return recs
