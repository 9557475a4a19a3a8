"""Shared helpers of the benchmarks: machine description, timing, JSON output, target verdicts."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._platform import cpuinfo

MODES = ("tiny", "quick", "full")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    return mode


def cpu_model() -> str:
    return cpuinfo().get("model name") or platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    cpu = cpuinfo()
    # "AMD EPYC" names several generations with different float64 kernels (the tanh route, MKL's paths): the
    # vendor, family and model say which, and torch's dispatched instruction set which kernels ran
    info = {"platform": platform.platform(), "cpu": cpu_model(), "cpu_vendor": cpu.get("vendor_id"),
            "cpu_family_model": (f"{cpu['cpu family']}/{cpu['model']}" if "cpu family" in cpu and "model" in cpu
                                 else None),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": device,
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict:
    from ..solution import versions as v

    out = dict(v())
    import scipy

    out.setdefault("scipy", scipy.__version__)
    return out


def time_call(fn: Callable[[], Any], repeats: int = 3, min_seconds: float = 0.2) -> float:
    """Best-of-``repeats`` mean seconds per call, each repeat running ≥ ``min_seconds`` (after one warm-up)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    inner = max(1, math.ceil(min_seconds / max(first, 1e-9)))
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def matmul_peak(dtype: torch.dtype, size: int, repeats: int = 3, device: str = "cpu") -> dict:
    """GFLOP/s of a square (size × size) GEMM in ``dtype``: the machine's practical peak, measured in-run."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g, dtype=dtype).to(device)
    b = torch.randn(size, size, generator=g, dtype=dtype).to(device)
    out = torch.empty_like(a)
    sec = time_call(lambda: torch.mm(a, b, out=out), repeats)
    return {"size": size, "dtype": str(dtype).replace("torch.", ""), "seconds": sec,
            "gflops": 2.0 * size**3 / sec / 1e9}


def loglog_slope(x, y) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two usable points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(np.log(x[ok])) == 0:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def verdict(target: str, met: bool | None, detail: str) -> dict:
    """One target of the issue with a plain verdict: "met", "missed" or "not measured"."""
    word = "not measured" if met is None else ("met" if met else "missed")
    return {"target": target, "verdict": word, "met": met, "detail": detail}


def _clean(obj):
    # strict JSON: non-finite floats become null (the row's status says why)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return _clean(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False))
    return path


def print_verdicts(verdicts: list[dict]) -> None:
    for v in verdicts:
        print(f"  [{v['verdict'].upper():>12}] {v['target']}: {v['detail']}")
