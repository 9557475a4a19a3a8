"""Input checking shared by every public entry point.

Every error names the argument, says what was expected and what arrived (value, shape, dtype), and
where it helps, how to fix it.  Nothing here uses ``assert``: user input is never checked by assertions.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Iterator

import numpy as np
import torch


def describe(x: Any) -> str:
    """A short description of ``x`` for error messages: type, shape and dtype where it has them."""
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor of shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape}, dtype {x.dtype}"
    r = repr(x)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(x).__name__} {r}"


#: the command-line flags of the arguments a command passes on (see :func:`cli_spelling`); None: Python's keywords
_FLAGS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gflow_cli_flags", default=None)


@contextlib.contextmanager
def cli_spelling(flags: dict[str, str]) -> Iterator[None]:
    """Within the block, errors that name an argument through :func:`arg` / :func:`arg_eq` name the arguments in
    ``flags`` (keyword -> flag, e.g. ``{"step": "--step"}``) as a command line spells them: ``gflow simulate --method
    rk4`` without a step was told "e.g. step=0.01", a keyword it cannot type."""
    token = _FLAGS.set(dict(flags))
    try:
        yield
    finally:
        _FLAGS.reset(token)


def arg(name: str) -> str:
    """The argument ``name`` in a message: the keyword, or its flag within :func:`cli_spelling`."""
    flags = _FLAGS.get()
    return flags.get(name, name) if flags else name


def arg_eq(name: str, value: Any = None, fmt: str = "") -> str:
    """An argument set to ``value`` in a message, as the caller writes it: ``step=0.01``, ``method='dop853'``
    (``fmt``: a format spec for a number), or within :func:`cli_spelling` ``--step 0.01``, ``--method dop853``;
    ``value`` None: the argument alone (``step=`` / ``--step``)."""
    flags = _FLAGS.get()
    text = "" if value is None else (format(value, fmt) if fmt else (repr(value) if isinstance(value, str) else
                                                                         str(value)))
    if flags and name in flags:
        return flags[name] + ("" if value is None else " " + (value if isinstance(value, str) else text))
    return f"{name}={text}"


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def is_real(value: Any) -> bool:
    """A real number (Python or numpy int/float), not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if not is_int(value):
        # (steps=1e3 is a float: the message showed 1000.0 and did not say why an integer was refused)
        whole = isinstance(value, (float, np.floating)) and abs(value) < 1e15 and float(value).is_integer()
        hint = f" (a float, as 1e3 is: write {int(value)})" if whole else ""
        raise TypeError(f"{name} must be an integer >= {minimum}, got {describe(value)}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_positive_float(value: Any, name: str, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def check_run_flags(warn: Any, checkpoint_every: Any, keep_checkpoint: Any) -> None:
    """The arguments every run function shares, checked whether or not a checkpoint is asked for (a bad
    ``checkpoint_every`` was accepted silently until the first run with a checkpoint)."""
    check_flag(warn, "warn")
    check_positive_float(checkpoint_every, "checkpoint_every")
    check_flag(keep_checkpoint, "keep_checkpoint")


def check_choice(value: Any, name: str, choices) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {sorted(choices)}, got {describe(value)}")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


def as_tensor(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    shape: tuple[int | None, ...] | None = None,
) -> torch.Tensor:
    """Convert array-like ``x`` to a tensor of ``dtype`` on ``device``, checking shape and finiteness.

    numpy arrays and Python sequences are converted.  A torch tensor must already have the network's
    dtype and device: gflow never moves or casts a user's tensor silently.
    """
    if isinstance(x, torch.Tensor):
        if x.dtype != dtype:
            # (a network can be built in float64 or float32 only: for another dtype, building it is no advice)
            other = (f" or build the network with dtype={x.dtype}" if x.dtype in (torch.float64, torch.float32)
                     else "")
            raise TypeError(
                f"{name} has dtype {x.dtype} but the network uses {dtype}; convert it with "
                f"{name}.to({dtype}){other}"
            )
        if x.device != device:
            raise ValueError(
                f"{name} is on device {x.device} but the network is on {device}; move it with "
                f"{name}.to('{device}') or use net.to(device='{x.device}')"
            )
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be array-like, got {describe(x)}") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must be a numeric array, got {describe(x)}")
        if np.iscomplexobj(arr):
            raise TypeError(f"{name} must be real, got {describe(x)}")
        arr = arr.astype(np.float64, copy=False)
        if not arr.flags.writeable:  # (pandas ≥ 3's .to_numpy(), np.load(mmap_mode='r'), broadcast views: torch
            arr = arr.copy()         # warned "The given NumPy array is not writable ... undefined behavior")
        t = torch.as_tensor(arr).to(dtype=dtype, device=device)
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if t.ndim not in ndims:
        want = " or ".join(f"{k}-D" for k in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if shape is not None:
        for k, (got, want) in enumerate(zip(t.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"{name} must have shape {tuple('*' if s is None else s for s in shape)}, "
                    f"got {tuple(t.shape)} (axis {k} is {got}, expected {want})"
                )
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return t


def check_times(values: Any, name: str) -> np.ndarray:
    """A 1-D, finite, non-negative, strictly increasing float64 array of times."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of times, got {describe(values)}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3]}")
    if arr[0] < 0:
        raise ValueError(f"{name} must be >= 0 (flows start at t = 0), got {arr[0]}")
    d = np.diff(arr)
    if np.any(d <= 0):
        k = int(np.argmax(d <= 0))
        raise ValueError(
            f"{name} must be strictly increasing, but {name}[{k}] = {arr[k]} >= {name}[{k + 1}] = {arr[k + 1]}"
        )
    return arr
