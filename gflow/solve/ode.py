r"""Integrate the gradient flow (eqs. (10)/(11)) with gflow's own engine, torchdiffeq or scipy behind one entry point.

* gflow's native Runge–Kutta engine (:mod:`gflow.solve.rk`; torch, CPU or GPU, low overhead, checkpointable):
  adaptive ``dop853`` (default) and ``dopri5``; fixed-step ``euler``, ``midpoint``, ``rk4``;
* torchdiffeq adaptive: ``dopri8``, ``bosh3``, ``adaptive_heun``, ``fehlberg2``; fixed-step ``explicit_adams``,
  ``implicit_adams``; and every torchdiffeq method under its prefixed name, e.g. ``torchdiffeq.dopri5``,
  ``torchdiffeq.rk4`` (torchdiffeq's own implementations);
* scipy (float64, CPU): ``RK45``, ``DOP853``, ``Radau``, ``BDF``, ``LSODA``;
* exponential: ``exprk4`` (:mod:`gflow.solve.expint`), for long, stiff horizons (feature space only), and
  ``dop853+exprk4`` / ``dopri5+exprk4``, which start explicitly and hand over to it where it pays;
* event-driven: ``filippov`` (:mod:`gflow.solve.filippov`), the sliding-mode flow of ReLU / leaky-ReLU
  networks to a tolerance (feature space only).

Fixed-step methods need an explicit ``step`` (never taken silently from the output grid).

Every run ends with a status.  A solve that cannot finish — a step limit, a collapsing step size (ReLU's
kink, see EQUATIONS.md §4), a wall-time budget, a non-finite state — stops with that status, a message that
says what to try, and the trajectory computed so far.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from .._validate import (arg, arg_eq, check_choice, check_flag, check_positive_float, check_positive_int,
                         check_run_flags, check_times, describe, is_real)
from ..fields import (RK_FLOPS_PER_STATE_ENTRY, SPACES, FeatureSpaceField, Problem, feature_space_warning,
                      lossy_feature_space, make_field)
from ..fields.base import AbstractField
from ..fields.observed import LAM_MIN_M_MAX_N, ObservedField
from ..model.network import Network
from ..solution import GFlowWarning, Interrupted, Solution, versions
from . import rk
from ._record import (DIVERGE_FACTOR, Abort, Monitor, Recorder, check_recording_memory, check_threads,
                      float64_advice, flow_activation_fault, guarded_solve, interrupted_message, limit_stop_message,
                      raise_if_interrupted, snapshot_bytes, solve_threads)
from .checkpoint import stored_layout
from .estimate import ADAPTIVE_ESTIMATE_METHODS
from .estimate import REFUSED as ESTIMATE_REFUSED
from .expint import EXPINT_METHODS, explicit_method, resolve_space, run_exprk

NATIVE_ADAPTIVE = rk.ADAPTIVE  # ("dop853", "dopri5")
NATIVE_FIXED = rk.FIXED  # ("euler", "midpoint", "rk4")
NATIVE_METHODS = NATIVE_ADAPTIVE + NATIVE_FIXED
_TD_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
_TD_FIXED = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")
TORCHDIFFEQ_ADAPTIVE = ("dopri8", "bosh3", "adaptive_heun", "fehlberg2") + tuple(f"torchdiffeq.{m}" for m in _TD_ADAPTIVE)
TORCHDIFFEQ_FIXED = ("explicit_adams", "implicit_adams") + tuple(f"torchdiffeq.{m}" for m in _TD_FIXED)
SCIPY_METHODS = ("RK45", "DOP853", "Radau", "BDF", "LSODA")
#: scipy's implicit methods (a dense finite-difference Jacobian; steps that grow late: LSODA, still in its Adams
#: phase after 200 steps at t = 64 of 1e7, was stopped as "stalled" — as dop853's stall advised — and finished in
#: 766 with max_steps raised)
IMPLICIT_SCIPY = ("Radau", "BDF", "LSODA")
FILIPPOV_METHODS = ("filippov",)
SLIDING_METHODS = ("sliding",)  # Filippov time-stepping, steps ≤ step (gflow.solve.sliding)
METHODS = (NATIVE_METHODS + TORCHDIFFEQ_ADAPTIVE + TORCHDIFFEQ_FIXED + SCIPY_METHODS + EXPINT_METHODS + FILIPPOV_METHODS
           + SLIDING_METHODS)
FIXED_STEP_METHODS = NATIVE_FIXED + TORCHDIFFEQ_FIXED + SLIDING_METHODS
ADAPTIVE_METHODS = tuple(m for m in METHODS if m not in FIXED_STEP_METHODS)
DEFAULT_METHOD = "dop853"  # simulate_batch's default; method="auto" (simulate's default) falls back to it below rtol 1e-4
AUTO_FILIPPOV_MAX_PAIRS = 20_000  # auto picks filippov for kinked σ up to this many pairs m·n (events ∝ pairs)
AUTO_SLIDING_STEP = 0.125  # ... and method="sliding" at this (largest) step beyond (gflow.solve.sliding: accuracy)
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4, "explicit_adams": 4, "implicit_adams": 4, "dopri5": 5, "dop853": 8,
          "dopri8": 8, "bosh3": 3, "adaptive_heun": 2, "fehlberg2": 2, "RK45": 5, "DOP853": 8, "Radau": 5,
          "BDF": 5, "LSODA": 12, "exprk4": 4, "dop853+exprk4": 4, "dopri5+exprk4": 4, "filippov": 5, "sliding": 1}
ORDERS.update({f"torchdiffeq.{m}": ORDERS[m] for m in _TD_ADAPTIVE + _TD_FIXED})


def backend_of(method: str) -> str:
    """``"gflow"`` (native engine), ``"torchdiffeq"`` or ``"scipy"``."""
    if method in NATIVE_METHODS or method in EXPINT_METHODS or method in FILIPPOV_METHODS + SLIDING_METHODS:
        return "gflow"
    return "scipy" if method in SCIPY_METHODS else "torchdiffeq"

_ADAPTIVE_OPTIONS = {"first_step", "max_step", "min_step", "safety", "ifactor", "dfactor"}
_FIXED_OPTIONS = {"implicit_adams": {"max_iters", "max_order"}, "explicit_adams": {"max_order"}}
_SCIPY_OPTIONS = {"first_step", "max_step"}
TIME_TOL = 1e-12  # output times closer than this relative to their own magnitude are one time (rounding)
_MAX_CHUNKS = 64  # odeint calls per solve (more where _CHUNK_BYTES asks): a failure loses one chunk of output times
_CHUNK_BYTES = 1 << 30  # the states one odeint call returns (1 GiB): more, smaller chunks beyond it
_DENSE_JACOBIAN_LIMIT = 16384  # state size beyond which Radau/BDF/LSODA's dense FD Jacobian exceeds 2 GiB


def default_saveat(t1: float, step: float | None = None) -> np.ndarray:
    """A grid that resolves both early and late times: 201 linear points ∪ 41 geometric points in [1e-4 t1, t1]
    (239 times: the shared t1 and the geometric points within rounding of a linear one are merged).

    With a fixed ``step`` h its times are moved to multiples of h (and t1): a fixed-step grid lands on every output
    time, so output times closer than h would set the steps instead of h (to t1 = 5 every step h ≥ 0.021 ran at
    ≈ 0.021: ``method="euler", step=0.5`` was not GD(0.5), and the h, h/2, h/4 solves of ``error_estimate`` were
    identical, reporting an error ≤ 0).

    Raises:
        TypeError, ValueError: ``t1`` or ``step`` not a number > 0 (a negative or NaN t1 gave the grid [t1], a
            negative step was ignored, and ``gf.extend(..., step="a")`` failed on a bare comparison)."""
    t1 = check_positive_float(t1, arg("t1"))
    if step is not None:
        step = check_positive_float(step, arg("step"))
    lo = 1e-4 * t1  # (0 for a subnormal t1: no geometric part then)
    times = np.concatenate([[0.0], np.linspace(0.0, t1, 201), np.geomspace(lo, t1, 41) if lo > 0 else []])
    if step is not None:
        times = np.unique(np.minimum(np.round(times / step) * step, t1))
    return _merge_close(times, t1)


def _hint(method: str, activation_smooth: bool, event_methods: bool = True) -> str:
    """What to try when a run of ``method`` stops (the advice fits the method that ran: filippov was told to use
    method='filippov').  ``event_methods``: whether 'filippov' and 'sliding' take the (kinked) activation — ReLU-type
    ones only (:func:`gflow.solve.filippov.kink_slopes`); a hardtanh declared ``smooth=False`` was sent to both,
    and both refused it."""
    if not activation_smooth and not event_methods:
        euler = ("method='euler', step=0.05, error_estimate=True (steps h, h/2, h/4 with an estimate of the loss "
                 "error; gf.simulate_nonsmooth(..., method='euler', rtol=1e-3) refines to a target)")
        only = ("method='filippov' and 'sliding' take ReLU-type kinks only (piecewise linear, one kink at 0, as "
                "relu and leaky_relu)")
        if method in FIXED_STEP_METHODS:
            return ("use a smaller step (error_estimate=True estimates the loss error from steps h, h/2, h/4; "
                    f"gf.simulate_nonsmooth(..., method='euler', rtol=1e-3) refines to a target); {only}")
        return ("the activation has a kink, where the flow chatters and adaptive solvers collapse their step: use "
                f"the fixed-step {euler}, or a smooth activation; {only}")
    if not activation_smooth:
        if method in FILIPPOV_METHODS:
            # (a run whose steps sit at the explicit stability limit — inputs of norm 1e3: 2.8e-6 — was told to
            # use step=0.25, 1e5× past sliding's limit too, where every neuron died in the first step)
            return ("use method='sliding', step=0.25, error_estimate=True (the Filippov flow by time-stepping: its "
                    "cost does not grow with the number of activation events, as filippov's does; at a step below "
                    "its stability limit 2/λ_max(M₀), which gf.simulate reports — where filippov's own steps stayed "
                    "tiny after the loss converged, the flow is stiff and that limit small), or the fixed-step "
                    "method='euler', step=0.05, error_estimate=True")
        if method in SLIDING_METHODS:
            return ("use a smaller step, or method='filippov' (event-driven, exact to rtol; for small and medium "
                    "problems)")
        if method in FIXED_STEP_METHODS:
            return ("use a smaller step (error_estimate=True estimates the loss error from steps h, h/2, h/4), "
                    "method='filippov' (event-driven, exact to rtol; for small and medium problems) or "
                    "method='sliding', step=0.25, error_estimate=True")
        return ("the activation has a kink (ReLU-type), where the flow chatters and adaptive solvers collapse "
                "their step: use the fixed-step method='euler', step=0.05, error_estimate=True (steps h, h/2, h/4 "
                "with an estimate of the loss error; gf.simulate_nonsmooth(..., rtol=1e-3) refines to a target), "
                "method='filippov' (event-driven, exact to rtol; for small and medium problems), "
                "method='sliding', step=0.25, error_estimate=True (the Filippov flow by time-stepping), or a smooth "
                "activation")
    if method == "exprk4":  # (the stiff method itself: the explicit methods' stiffness advice does not apply)
        return ("use method='dop853' (or method='auto') where the horizon is short or the features still move: "
                "exprk4 pays on long, stiff horizons")
    if method in EXPINT_METHODS:  # (the switching methods: an explicit start, exprk4 from the hand-over)
        return SWITCHING_HINT
    if method in IMPLICIT_SCIPY:
        return IMPLICIT_HINT
    if method in ADAPTIVE_METHODS:
        return STIFF_HINT
    return "try a smaller step or a different method"


#: the hint for smooth flows that stall in an explicit adaptive method: after STIFF_HINT_AFTER accepted steps only
STIFF_HINT = ("the flow is mildly stiff at long horizons and explicit methods run at their stability limit: "
              "use method='dop853+exprk4' (what method='auto' runs on long, stiff horizons: it solves the fast "
              "modes exactly)")
#: the same for the switching methods and scipy's implicit ones (each also after STIFF_HINT_AFTER steps only)
SWITCHING_HINT = ("the explicit start runs at its stability limit until exprk4 takes over: use method='dop853' "
                  "where the horizon is short")
IMPLICIT_HINT = ("an implicit method's steps grow late, once its Jacobian settles (a higher max_steps lets them); "
                 "or use method='dop853+exprk4' (what method='auto' runs on long, stiff horizons)")
STIFF_HINT_AFTER = 200
STIFF_FALLBACK = "try a different method (e.g. method='dop853+exprk4' on a long horizon)"
#: the switching methods' before STIFF_HINT_AFTER steps (STIFF_FALLBACK told them to use the method they ran — an audit)
SWITCHING_FALLBACK = ("try method='dop853' where the horizon is short or the features still move (the exponential "
                      "phase pays on long, stiff horizons)")


def monitor_hints(method: str, activation, checkpoint: bool = False, batch: bool = False,
                  extend: bool = False) -> dict:
    """The Monitor's hint arguments for ``method`` and the network's :class:`~gflow.Activation`: the stiffness hint
    only once steps have settled (a run stopped at t = 0 by max_wall_time, or by max_steps=1, was told the flow is
    stiff).  ``checkpoint``: the run checkpoints, which the exponential methods cannot (a checkpointed ``auto`` run
    falls back to dop853 and, stopped by max_steps, was advised dop853+exprk4 without a word of it).  ``batch``: for
    :func:`gflow.simulate_batch`, which takes none of the methods and options that a hint may name beyond its
    Runge–Kutta methods (:func:`batch_hint`).  ``extend``: for a :func:`gflow.extend` continuation, which takes
    neither the exponential nor the event methods (:func:`extend_hint`)."""
    hint = _hint(method, activation.smooth, activation.smooth or _event_methods_take(activation))
    out = {"hint": hint, "tolerances": method not in FIXED_STEP_METHODS, "method": method}
    if hint in (STIFF_HINT, SWITCHING_HINT, IMPLICIT_HINT):
        out.update(hint_after=STIFF_HINT_AFTER,
                   fallback_hint=SWITCHING_FALLBACK if hint == SWITCHING_HINT else STIFF_FALLBACK)
    if checkpoint:
        note = " (it cannot checkpoint: drop checkpoint= for it)"
        for key in ("hint", "fallback_hint"):
            if "'dop853+exprk4'" in out.get(key, ""):
                out[key] = out[key].replace("'dop853+exprk4'", "'dop853+exprk4'" + note, 1)
    if batch:
        out.update({k: batch_hint(v) for k, v in out.items() if k in ("hint", "fallback_hint")})
    if extend:
        out.update({k: extend_hint(v) for k, v in out.items() if k in ("hint", "fallback_hint")})
    return out


def extend_hint(hint: str) -> str:
    """``hint`` for a :func:`gflow.extend` continuation: where it advises a method that gf.extend refuses (exprk4
    and the switching methods, filippov, sliding), it says how to get that method over the longer horizon (a
    continuation stopped by max_steps was told to "use method='dop853+exprk4'", which gf.extend refuses)."""
    if not any(w in hint for w in ("exprk4", "'filippov'", "'sliding'")):
        return hint
    return (f"{hint}; gf.extend does not continue with that method: for it, run the flow from t = 0 to the new t1 "
            "with gf.simulate or gflow simulate (the same network and data)")


#: what a hint may name that gf.simulate_batch refuses (exprk4 and the switching methods, the event methods, and
#: error_estimate, a TypeError there)
_NOT_BATCHED = ("exprk4", "'filippov'", "'sliding'", "error_estimate")


def batch_hint(hint: str) -> str:
    """``hint`` for a :func:`gflow.simulate_batch` run: where it names a method or option that the batch refuses, it
    says to run those per network (a batch that stalled was told to "use method='dop853+exprk4'", which
    simulate_batch refuses — an audit)."""
    named = [w.strip("'") for w in _NOT_BATCHED if w in hint]
    if not named:
        return hint
    takes = f"does not take {named[0]}" if len(named) == 1 else f"takes none of {', '.join(named)}"
    return f"{hint}; simulate_batch {takes}: run {'it' if len(named) == 1 else 'those'} per network with gf.simulate"


def _event_methods_take(activation) -> bool:
    """Whether method='filippov' and 'sliding' integrate the kinked ``activation`` (a ReLU-type one)."""
    from .filippov import kink_slopes

    return kink_slopes(activation) is not None


#: state-sized arrays a solve holds (its stages, buffers and the field's (m, n) arrays), by method; others: 24
_WORKING_ROWS = {"dop853": 26, "dopri5": 16, "rk4": 10, "midpoint": 8, "euler": 6, "sliding": 12, "filippov": 16}


def _check_working_set(net: Network, X, method: str) -> None:
    """Refuse, before anything is allocated, a solve whose working set exceeds the machine's memory: the network's
    own check counts W only, and at width 1e8 a solve started and swapped for minutes (a bad-input fuzz)."""
    from ..model.network import _physical_memory

    if net.device.type != "cpu":
        return
    try:
        n = int(np.shape(X)[0]) if np.ndim(X) >= 1 else 1
    except (ValueError, TypeError):  # (ragged, or not array-like: numpy's own error came first; the inputs' check
        return  # names X, later)
    N = min(net.m * net.D, 2 * net.m * n)  # the state of the cheaper space
    need = torch.finfo(net.dtype).bits / 8 * N * _WORKING_ROWS.get(method, 24)
    if need > _physical_memory():
        raise ValueError(f"a solve with method={method!r} at width {net.m} (n = {n}, D = {net.D}) needs about "
                         f"{need / 2**30:.3g} GiB "
                         f"(its stages and buffers, {_WORKING_ROWS.get(method, 24)} state-sized arrays of "
                         f"{N} entries), more than this machine's {_physical_memory() / 2**30:.3g} GiB; use a smaller "
                         "width, or a method with fewer stages")


def _check_options(method: str, options: dict | None) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {describe(options)}")
    if method in NATIVE_METHODS:
        allowed = rk.OPTIONS if method in NATIVE_ADAPTIVE else set()
    elif method in TORCHDIFFEQ_ADAPTIVE:
        allowed = _ADAPTIVE_OPTIONS
    elif method in SCIPY_METHODS:
        allowed = _SCIPY_OPTIONS
    elif method in FILIPPOV_METHODS:
        allowed = {"max_step", "lower_order"}
    elif method in SLIDING_METHODS:
        allowed = {"event_rate", "long_step"}
    else:
        allowed = _FIXED_OPTIONS.get(method.removeprefix("torchdiffeq."), set())
    bad = sorted(set(options) - allowed)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for method {method!r}; allowed: {sorted(allowed) or 'none'}")
    out = {}
    for key, value in options.items():
        if not is_real(value):
            raise TypeError(f"option {key!r} must be a number, got {describe(value)}")
        out[key] = value.item() if isinstance(value, np.generic) else value
    # the step options mean the same for every backend: checked here once (the native engine checks its own again;
    # a NaN max_step reached torchdiffeq as "underflow in dt nan", scipy's RK45 took it silently)
    # (torchdiffeq's own: max_order 0 raised deque's "maxlen must be non-negative", 100 a failed run, ifactor 0.5 a
    # step-size collapse; the native engine checks the same ranges again)
    for key, ok, want in (("first_step", lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
                          ("max_step", lambda v: v > 0, "> 0 (inf: no limit)"),
                          ("min_step", lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0"),
                          ("safety", lambda v: 0 < v <= 1, "in (0, 1]"),
                          ("ifactor", lambda v: v >= 1, ">= 1"),
                          ("dfactor", lambda v: 0 < v <= 1, "in (0, 1]"),
                          ("max_order", lambda v: float(v).is_integer() and 1 <= v <= 12, "an integer in 1 … 12"),
                          ("max_iters", lambda v: float(v).is_integer() and 1 <= v < math.inf, "an integer >= 1")):
        if key in out and not ok(out[key]):
            raise ValueError(f"option {key!r} must be {want}, got {out[key]}")
    for key in ("max_order", "max_iters"):  # (torchdiffeq takes ints)
        if key in out:
            out[key] = int(out[key])
    if out.get("min_step", 0.0) > out.get("max_step", math.inf):  # (it ran, and stopped with "try another method")
        raise ValueError(f"options min_step = {out['min_step']:g} and max_step = {out['max_step']:g} contradict each "
                         "other: min_step must be ≤ max_step")
    return out


def _output_grid(t1, saveat, features_at, weights_at, step: float | None = None):
    if t1 is None and saveat is None:
        raise TypeError("give the final time t1 (e.g. t1=500.0) or the output times saveat")
    if t1 is not None:
        t1 = check_positive_float(t1, arg("t1"))
    if saveat is None:
        saveat = default_saveat(t1, step)
    else:
        saveat = check_times(saveat, "saveat")
        if t1 is None:
            t1 = float(saveat[-1])
            if t1 <= 0:
                raise ValueError(f"saveat must reach beyond t = 0, got {saveat.tolist()}")
        elif saveat[-1] > t1 * (1 + 1e-12):
            raise ValueError(f"saveat runs to {saveat[-1]} beyond t1 = {t1}")
    if features_at is None:
        features_at = np.array([0.0, t1])
    elif isinstance(features_at, str) and features_at == "all":
        features_at = saveat
    else:
        features_at = check_times(features_at, "features_at")
        if features_at[-1] > t1 * (1 + 1e-12):
            raise ValueError(f"features_at runs to {features_at[-1]} beyond t1 = {t1}")
    if weights_at is None:
        weights_at = np.zeros(0)
    else:
        weights_at = check_times(weights_at, "weights_at")
        if weights_at[-1] > t1 * (1 + 1e-12):
            raise ValueError(f"weights_at runs to {weights_at[-1]} beyond t1 = {t1}")
    grid = _merge_close(np.concatenate([[0.0, t1], saveat, features_at, weights_at]), t1)
    return t1, grid, _snap(features_at, grid), _snap(weights_at, grid)


def _merge_close(times: np.ndarray, t1: float) -> np.ndarray:
    """Sorted unique times in [0, t1], t1 among them, merging those that differ by rounding only (less than
    TIME_TOL relative to their own magnitude, e.g. 0.02 from a linear grid and 0.020000000000000004 from a geometric
    one, which would otherwise force a ~1e-18 step).  (A tolerance of 1e-10·max(1, t1) dropped the user's times:
    every t1 ≤ 1e-10 ran to "reached t1" with the single row t = 0, and saveat points 1e-6 apart at t1 = 1e4 went
    missing.)"""
    times = np.unique(np.clip(times, 0.0, t1))
    if times.size < 2:
        return times
    keep = np.concatenate([[True], np.diff(times) > TIME_TOL * times[1:]])
    out = times[keep]
    out[-1] = times[-1]
    return out


def _snap(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``times`` (in [0, t1]) moved to the nearest time of ``grid`` (which holds them up to rounding), so that
    the recorder finds them there exactly."""
    times = np.unique(np.asarray(times, dtype=np.float64))
    if times.size == 0:
        return times
    k = np.clip(np.searchsorted(grid, times), 1, grid.size - 1) if grid.size > 1 else np.zeros(times.size, int)
    lower = np.maximum(k - 1, 0)
    near = np.where(np.abs(grid[lower] - times) <= np.abs(grid[k] - times), lower, k)
    return np.unique(grid[near])


def record_tol(grid: np.ndarray) -> float:
    """The recorder's time tolerance: a quarter of the closest output times' gap, so that a time matches at most
    one of them."""
    return 0.25 * float(np.min(np.diff(grid))) if grid.size > 1 else 0.0


def auto_sliding_step(limit: float, reason: str) -> tuple[float, str]:
    """(step, reason): ``method="auto"``'s step for ``sliding`` — :data:`AUTO_SLIDING_STEP`, or 0.9 of the stability
    limit 2/λ_max(M₀) of its explicit treatment of the free pairs where that is smaller (inputs of norm ~1e3 put
    the limit at 2e-6, and at 1/8 every neuron died in the first step), said in the reason."""
    if AUTO_SLIDING_STEP <= 0.9 * limit:
        return AUTO_SLIDING_STEP, reason
    step = 0.9 * limit
    return step, (f"{reason}; at step {step:.3g} = 0.9·2/λ_max(M₀): {AUTO_SLIDING_STEP:g} exceeds the stability "
                  f"limit 2/λ_max(M₀) = {limit:.3g} of its explicit treatment of the free pairs")


def with_auto_reason(sol: Solution, reason: str) -> Solution:
    """``sol`` with ``reason`` recorded as ``config["solver"]["auto"]`` (why ``method="auto"`` picked its method)."""
    from dataclasses import replace

    return replace(sol, config=dict(sol.config, solver=dict(sol.config["solver"], auto=reason)))


#: atol when none is given (``atol=None``): of the adaptive methods' error test, per state entry
DEFAULT_ATOL = 1e-9


def default_rtol(dtype: torch.dtype, method: str | None = None) -> float:
    """rtol when none is given: 1e-7 in float64, 1e-5 in float32 (within 100× of float32's machine epsilon an
    adaptive method's error estimate is rounding, and steps are rejected for it); 1e-7 for a fixed-step method in
    either (it sets no step there: so its recorded rtol, and a sweep's run id, stay as they were)."""
    if method in FIXED_STEP_METHODS:
        return 1e-7
    return 1e-7 if torch.finfo(dtype).eps < 1e-10 else 1e-5


def simulate(
    net: Network,
    X: Any,
    y: Any,
    t1: float | None = None,
    saveat: Any = None,
    *,
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = DEFAULT_ATOL,
    step: float | None = None,
    max_steps: int = 100_000,
    max_wall_time: float | None = None,
    X_test: Any = None,
    y_test: Any = None,
    space: str = "auto",
    features_at: Any = None,
    weights_at: Any = None,
    options: dict | None = None,
    interval: tuple[float, float] | None = None,
    integrals: bool = True,
    progress: bool | None = False,
    warn: bool = True,
    checkpoint: Any = None,
    checkpoint_every: float = 60.0,
    keep_checkpoint: bool = False,
    error_estimate: bool = False,
    threads: int | None = None,
    _continue: Any = None,
) -> Solution:
    r"""Integrate the gradient flow Ẇ = −ℓ ∂L/∂W (eq. (10)) of ``net`` on (X, y) from t = 0 to t1.

    Args:
        net: the :class:`gflow.Network` (its W0 is the initial condition).
        X: (n, d) training inputs;  y: (n,) targets (numpy arrays or torch tensors).
        t1: final time (flow time; GD with step δ reaches t = kδ after k steps).
        saveat: increasing output times in [0, t1] (default: :func:`default_saveat`).  t = 0 and t1 are always
            included.
        method: ``"auto"`` (default) picks per problem and records the choice and its reason in
            ``sol.config["solver"]["auto"]``: ``"filippov"`` for ReLU-type σ (up to :data:`AUTO_FILIPPOV_MAX_PAIRS`
            pairs m·n), ``"dop853+exprk4"`` (``"dopri5+exprk4"`` at 1e-4 ≤ rtol ≤ 1e-3) where a smooth flow is
            stiff enough over the horizon for the exponential method to pay and rtol ≥ 1e-10 (down to which its
            loss error was measured to follow rtol: :data:`gflow.solve.expint.AUTO_EXPINT_MIN_RTOL`)
            (:func:`gflow.solve.expint.auto_method`), else ``"dop853"`` — or ``"dopri5"`` at 1e-4 ≤ rtol ≤ 1e-3,
            where the 5th-order pair is the cheaper (:func:`gflow.solve.expint.explicit_method`) — also when
            ``checkpoint`` is given and the pick cannot checkpoint.  Or any of :data:`METHODS`: ``"dop853"`` (gflow's own 8th-order engine, CPU or
            GPU) and ``"dopri5"`` are adaptive; fixed-step methods (``"rk4"``, ...) need ``step``; torchdiffeq's
            implementations are ``"torchdiffeq.dopri5"`` etc.; scipy methods need float64 on the CPU.
            ``"exprk4"`` (exponential Runge–Kutta, :mod:`gflow.solve.expint`) treats the fast residual modes
            ṙ = −M r (E3) exactly: use it for long, stiff horizons, where explicit methods would
            sit at their stability limit (:func:`gflow.solve.expint.auto_method` says when it pays).
            ``"dop853+exprk4"`` / ``"dopri5+exprk4"`` run the explicit method while the features move and hand
            over to exprk4 where a trial step shows it pays (``sol.stats["switch_time"]``), and back to the
            explicit method where exprk4's steps collapse below a quarter of the explicit ones they replaced
            (``sol.stats["give_back_time"]``; it may hand over again, ``sol.stats["phase_times"]``): what
            ``"auto"`` runs on long, stiff horizons.
        rtol, atol: tolerances of adaptive methods (how to choose: the loss is accurate to about rtol
            relative while it is far above atol·n; None: the default).  Default atol: 1e-9 (:data:`DEFAULT_ATOL`);
            default rtol: 1e-7 in float64, 1e-5 in float32
            (:func:`default_rtol`; 1e-7 is float32's machine epsilon, where steps are rejected for rounding: a tanh
            run to t = 3 000 took 4 072 steps, 625 rejected, against 650 at 1e-5).
        step: the step of fixed-step methods; required for them and rejected for adaptive ones.  A flow's loss
            never increases: a fixed-step run whose saved loss grows past 1e10·L₀ stops with status
            ``"diverged"``, and one whose saved loss rises above the previous one (beyond rounding) warns and says
            so in its message (a step past the stability limit 2/λ_max(M₀)).
        max_steps: limit on step attempts; a solve that would need more stops with status ``"max_steps"``
            or ``"stalled"`` (see :class:`gflow.solve._record.Monitor`).
        max_wall_time: optional wall-time budget in seconds (status ``"time_budget"``), checked before every
            evaluation of the field: a run ends within about one evaluation, or one step of the engine's own work,
            past it.  scipy's ``Radau`` and ``BDF`` also stop before a dense Jacobian or LU factorization that would
            end past it (predicted from the last one of its kind), since these n³ factorizations run between two
            evaluations: at a state of n = 6 000 entries Radau's two took 17 s on one core, and a run given 8 s ended
            after 31 s; with the check it ends no later than 1 s past it.  What no check divides can still overrun
            it: the n×n arrays around their finite-difference Jacobians (under 1 s at n = 6 000) and ``LSODA``'s
            factorizations, inside its Fortran code (an n³ LU each, like Radau's real one: seconds at n in the
            thousands).
        X_test, y_test: optional test data; test outputs, loss and error are recorded at every saved time.
        space: ``"feature"`` (state H, eq. (11), cost ≈ 2mn² per evaluation), ``"weight"`` (state W, eq. (10),
            ≈ 4mDn) or ``"auto"`` (the cheaper, counting the solver's traffic over the state too:
            :func:`gflow.fields.auto_space`; feature when n is well below 2D).  Both are exact.
        features_at: times at which H (and the test features) are kept: default (0, t1); ``"all"``: every
            saved time.
        weights_at: times at which W is kept (default: none; W at the final time is always kept).
        options: method options: native ``dop853``/``dopri5`` ``first_step``, ``max_step``, ``min_step``,
            ``safety``, ``ifactor``, ``dfactor``, ``pi_beta`` (see :class:`gflow.solve.rk.Engine`); torchdiffeq
            adaptive ``first_step``, ``max_step``, ``min_step``, ``safety``, ``ifactor``, ``dfactor``; ``implicit_adams`` ``max_iters``, ``max_order``; scipy
            ``first_step``, ``max_step``.  ``"exprk4"`` and the switching methods take none: ``method="auto"``
            with options where it picks a switching method (a long, stiff horizon) is a ValueError that names the
            pick and says what to do (drop the options, or give the explicit method: many times the evaluations).
        interval: the active interval I of η (Lemma 1); default: the activation's (EQUATIONS.md §6).
        integrals: carry ∫η, ∫μ, ∫ν, ∫λ_min(M), ∫|L̇|^{1/2} and ∫|L̇| as extra ODE states (for the pathwise
            bounds of :func:`gflow.certify`).  They never limit the step; their cost is O(mn) per evaluation,
            plus an n×n eigenproblem for λ_min(M) when n ≤ 1024.  ``False`` integrates the bare flow.  The ReLU
            solvers ``filippov`` and ``sliding`` (and ``auto`` where it picks them) do not carry them
            (``integrals`` is recorded False; :func:`gflow.certify` says so).
        progress: a tqdm bar over flow time (``None``: only when stderr is a terminal).
        warn: issue a :class:`gflow.GFlowWarning` when the run fails.
        checkpoint: a file path for periodic checkpoints (native methods only).  If the file exists and was
            written by the same run (network, data and solver settings; limits such as max_steps and
            max_wall_time may differ) the run resumes from it; the file is kept when the run stops early and
            deleted on success unless ``keep_checkpoint``.  The recorded history goes, append-only, into segment
            files beside it (``<name>.seg000000``, …; moved, kept and deleted with it).  See
            :mod:`gflow.solve.checkpoint`.
        checkpoint_every: seconds of wall time between checkpoints (one is also written when the run stops).
        keep_checkpoint: keep the checkpoint file (and its segment files) after a successful run.
        error_estimate: fill ``sol.error_estimate`` (the estimated relative loss error per saved time).  Accepted
            with:

            * a fixed-step ``method`` and an explicit ``step``: ``"euler"`` (any σ), ``"sliding"`` (ReLU-type σ),
              ``"midpoint"`` or ``"rk4"`` (smooth σ only: for a kinked σ they lose their order at the kink and
              are refused).  It solves with ``step``, ``step``/2 and ``step``/4 and returns the
              finest (:func:`gflow.simulate_nonsmooth`, which also refines to an accuracy target);
            * ``method="filippov"`` (ReLU-type σ): a second solve at a looser rtol gives the estimate;
            * ``method="auto"`` with a ReLU-type σ: whatever it picks, ``"filippov"`` or ``"sliding"`` at step
              1/8 (:data:`AUTO_SLIDING_STEP`);
            * ``"dop853"``, ``"exprk4"``, ``"dop853+exprk4"`` and ``"auto"`` with a smooth σ: a second solve at 32×
              looser tolerances (:mod:`gflow.solve.estimate`: what it measured, and why ``"dopri5"`` is refused;
              ``auto`` runs ``"dop853"`` where it would pick ``"dopri5"``).

            scipy's and torchdiffeq's methods are refused (not measured).  Not with ``checkpoint`` (several solves).
        threads: torch's intra-op CPU threads for the solve (restored after it); default: one where an
            evaluation costs fewer than :data:`~gflow.solve._record.SERIAL_BELOW_FLOPS` flops, else torch's
            setting (``sol.stats["torch_threads"]``; see docs/guide.md, "Threads and performance notes").
        _continue: private to :func:`gflow.extend`: called as ``_continue(field, recorder)`` before the solve (on
            its threads), it sets the state the field starts from and the references the recorder measures from.

    Returns:
        a :class:`gflow.Solution` (check ``sol.ok`` / ``sol.status``; failures keep the partial trajectory).

    Raises:
        TypeError, ValueError: bad input, with the argument named.

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=10, d=20, seed=0)
        >>> net = gf.Network(d=20, width=64, activation="tanh", seed=0)
        >>> sol = gf.simulate(net, X, y, t1=5.0, rtol=1e-6)
        >>> bool(sol.ok and sol.loss[-1] < sol.loss[0])
        True
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gf.Network, got {describe(net)}")
    error_estimate = check_flag(error_estimate, "error_estimate")
    rtol = default_rtol(net.dtype, method) if rtol is None else rtol
    atol = DEFAULT_ATOL if atol is None else atol
    check_run_flags(warn, checkpoint_every, keep_checkpoint)
    threads = check_threads(threads, warn)
    check_choice(space, "space", SPACES)  # (before auto reads it)
    if error_estimate:  # (a method that is no string failed with "AttributeError: 'int' object has no attribute
        check_choice(method, "method", METHODS + ("auto",))  # 'startswith'" in the estimate's refusal)
    picked = reason = None  # with error_estimate, the estimate follows what auto picks
    if error_estimate and method == "auto" and step is None:
        picked, reason = _resolve_auto(net, X, y, t1, saveat, rtol, step, space)
    if error_estimate and picked is not None and net.activation.smooth:
        from .estimate import REFUSED

        if picked in REFUSED:  # (dopri5 at 1e-4 ≤ rtol ≤ 1e-3: its second solve can make the same error)
            instead = picked.replace("dopri5", "dop853")
            reason = (f"{reason}; error_estimate=True: {instead!r} instead of {picked!r}, whose looser second solve "
                      "can take the same steps and make the same error")
            picked = instead
        if isinstance(options, dict) and options and picked in EXPINT_METHODS:  # (as without error_estimate: the
            # solve said "unknown option(s) [...] for method 'dop853+exprk4'", a method the user never named)
            explicit = explicit_method(check_positive_float(rtol, "rtol"))[0].replace("dopri5", "dop853")
            raise ValueError(f"method='auto' picked {picked!r} ({reason}), which takes no options; got "
                             f"options={sorted(options)}: drop options= to run it, or give method={explicit!r} to run "
                             "with them (on this stiff horizon the explicit method alone costs many times the "
                             "evaluations)")
    event_driven = method in FILIPPOV_METHODS or picked in FILIPPOV_METHODS  # (auto's pick recorded inside)
    if error_estimate and (event_driven or step is None and net.activation.smooth and (
            method in ADAPTIVE_ESTIMATE_METHODS + tuple(ESTIMATE_REFUSED) or picked in ADAPTIVE_ESTIMATE_METHODS)):
        from .estimate import simulate_with_estimate

        if event_driven:
            picked = reason = None  # (filippov's own solves run "auto" and record its pick)
        try:
            out = simulate_with_estimate(
                net, X, y, t1, saveat, method=picked or method, rtol=rtol, atol=atol, max_steps=max_steps,
                max_wall_time=max_wall_time, X_test=X_test, y_test=y_test, space=space, features_at=features_at,
                weights_at=weights_at, options=options, interval=interval, integrals=integrals, progress=progress,
                warn=warn, checkpoint=checkpoint, threads=threads)
        except Interrupted as stop:  # (Ctrl-C: the partial result records the pick too)
            if reason is not None:
                stop.solution = with_auto_reason(stop.solution, reason)
            raise
        return out if reason is None else with_auto_reason(out, reason)
    if error_estimate:
        from .nonsmooth import simulate_nonsmooth

        if picked in SLIDING_METHODS:  # (below the stability limit, as auto's single solve: see simulate below)
            from .filippov import kink_slopes
            from .sliding import stability_limit

            method = picked
            step, reason = auto_sliding_step(stability_limit(Problem.from_data(net, X, y),
                                                             kink_slopes(net.activation)), reason)
        problem = _estimate_method_problem(method, step)
        if problem:
            raise ValueError(problem)
        if checkpoint is not None:
            raise ValueError("checkpoint is not supported with error_estimate=True (three solves); checkpoint the "
                             "single solves instead")
        try:
            out = simulate_nonsmooth(
                net, X, y, t1, saveat, method=method, step=step, max_steps=max_steps, max_wall_time=max_wall_time,
                X_test=X_test, y_test=y_test, space=space, features_at=features_at, weights_at=weights_at,
                options=options, interval=interval, integrals=integrals, progress=progress, warn=warn,
                threads=threads)
        except Interrupted as stop:  # (Ctrl-C: the partial result records the pick too)
            if reason is not None:
                stop.solution = with_auto_reason(stop.solution, reason)
            raise
        return out if reason is None else with_auto_reason(out, reason)
    auto_reason = None
    if isinstance(net, Network) and isinstance(method, str):
        _check_working_set(net, X, method)  # (before auto's look at the problem, which allocates (m, n) arrays)
    if isinstance(method, str) and method == "auto":
        method, auto_reason = _resolve_auto(net, X, y, t1, saveat, rtol, step, space)
        if method in SLIDING_METHODS:
            step = AUTO_SLIDING_STEP
        if checkpoint is not None and method not in NATIVE_METHODS:
            if method in FILIPPOV_METHODS + SLIDING_METHODS:
                raise ValueError(f"method='auto' picked {method!r} ({auto_reason}), which cannot checkpoint; drop "
                                 "checkpoint, or give method='euler' with a step (checkpointable)")
            fallback = explicit_method(check_positive_float(rtol, "rtol"))[0]
            method, auto_reason = fallback, (f"{auto_reason}; but checkpoint= was given and {method!r} cannot "
                                             f"checkpoint: {fallback!r} instead")
        if isinstance(options, dict) and options and method in EXPINT_METHODS:
            # (the switching methods take no options: "unknown option for 'dop853+exprk4'", a method the user never
            # named, on long horizons only — an audit; running the explicit method instead cost 20× the evaluations)
            explicit = explicit_method(check_positive_float(rtol, "rtol"))[0]
            raise ValueError(f"method='auto' picked {method!r} ({auto_reason}), which takes no options; got "
                             f"options={sorted(options)}: drop options= to run it, or give method={explicit!r} to run "
                             "with them (on this stiff horizon the explicit method alone costs many times the "
                             "evaluations)")
        try:  # (an option the pick does not take: say that auto picked it)
            _check_options(method, options)
        except ValueError as exc:
            raise ValueError(f"method='auto' picked {method!r} ({auto_reason}): {exc}") from None
    check_choice(method, "method", METHODS + ("auto",))
    rtol, atol, step, max_steps, max_wall_time, opts, t1, grid, ft, wt = check_solver_args(
        net, method, rtol, atol, step, max_steps, max_wall_time, options, t1, saveat, features_at, weights_at)
    if checkpoint is not None and method not in NATIVE_METHODS:
        advice = ("use e.g. method='dop853' or method='rk4'" if net.activation.smooth else
                  # (dop853/rk4 on a kinked σ stall or lose their order: not the advice for a ReLU run)
                  "for a ReLU-type activation, bound the run with max_wall_time instead, or checkpoint "
                  "gf.gradient_descent, or method='euler' (GD's iteration, with a checkpoint)")
        raise ValueError(f"checkpoint/resume needs gflow's native engine (method in {NATIVE_METHODS}), got method "
                         f"{method!r}; {advice}")
    slopes = None
    if method in FILIPPOV_METHODS + SLIDING_METHODS:
        from .filippov import check_filippov

        slopes, space = check_filippov(net, space, method)
        integrals = False  # not carried by the Filippov solvers (recorded in the config)

    interval = check_interval(interval, net)
    problem = Problem.from_data(net, X, y, X_test, y_test)
    sliding_limit = None
    if method in SLIDING_METHODS:
        from .sliding import stability_limit

        sliding_limit = stability_limit(problem, slopes)
        if auto_reason is not None and step == AUTO_SLIDING_STEP:
            step, auto_reason = auto_sliding_step(sliding_limit, auto_reason)
    # the feature state's layout (FeatureSpaceField); a checkpoint written before the layout choice resumes in its
    # (2, m, n) layout
    in_place = method in EXPINT_METHODS + FILIPPOV_METHODS + SLIDING_METHODS  # (they index H's rows in place)
    layout = stored_layout(checkpoint, "mn" if in_place else "nm")
    field = observed_field(make_field(problem, resolve_space(space) if method in EXPINT_METHODS else space,
                                      RK_FLOPS_PER_STATE_ENTRY, layout), interval, integrals)
    warn_lossy_feature_space(problem, field, "simulate", warn, method)
    if method in IMPLICIT_SCIPY:
        N = int(np.prod(field.state_shape))
        if N > _DENSE_JACOBIAN_LIMIT:
            raise ValueError(
                f"method {method!r} forms a dense finite-difference Jacobian of the {N}-dimensional state "
                f"({N * N * 8 / 2**30:.1f} GiB, {N} evaluations per Jacobian); this problem is too large for it. "
                "Use an explicit method (dopri5, DOP853) or a smaller problem"
            )

    check_recording_memory(len(grid), problem.n, problem.n_test, what="output times (saveat)",
                           advice="give fewer output times", snapshots=snapshot_bytes(problem, len(ft), len(wt)))
    recorder = Recorder(field, ft, wt, time_tol=record_tol(grid), interval=interval,
                        **fixed_step_guard(method, step, grid, rtol))
    monitor = Monitor(t1, max_steps, max_wall_time, **monitor_hints(method, net.activation, checkpoint is not None,
                                                                        extend=_continue is not None),
                      dtype=net.dtype,
                      adaptive=method not in FIXED_STEP_METHODS + FILIPPOV_METHODS,  # filippov: its own checks
                      # filippov: the stall projection too (a float32 ReLU net to t1 = 5e4 ran to max_steps, ~80 s),
                      # without the kinked σ's collapse criteria (it resolves the kink: its event steps are short)
                      stall=method not in FIXED_STEP_METHODS,  # (the adaptive methods and filippov)
                      kinked=not net.activation.smooth and method not in FILIPPOV_METHODS,
                      # (a kinked σ collapses their steps for good from the start: 200, as the others — exprk4 on
                      # a ReLU net took 10 s and 16 000 evaluations to stop at 2 000; filippov's early events: 500)
                      stall_after=(2000 if method in EXPINT_METHODS + IMPLICIT_SCIPY and net.activation.smooth else
                                   500 if method in FILIPPOV_METHODS else 200))
    monitor.lam_max0 = recorder.lam_max_M0  # (for the hint of a stalled run)
    status, message = "success", f"reached t1 = {t1:g}"
    recorder.attach_progress(progress, t1, f"flow ({method})")
    ckpt = resume = None
    if checkpoint is not None:
        from .checkpoint import open_checkpoint

        settings = {"method": method, "rtol": rtol, "atol": atol, "step": step, "t1": t1, "saveat": grid.tolist(),
                    "features_at": ft.tolist(), "weights_at": wt.tolist(), "options": opts, "space": field.space,
                    "layout": field.layout, "interval": list(interval), "integrals": bool(integrals),
                    **getattr(_continue, "fingerprint", {})}  # (gf.extend: the run it continues, and from where)
        ckpt, resume = open_checkpoint(checkpoint, every=checkpoint_every, keep=keep_checkpoint, kind="flow",
                                       problem=problem, settings=settings, recorder=recorder, monitor=monitor)
    t_start = time.perf_counter()
    unstable_note = None
    threads = solve_threads(field.flops_per_eval(), net.device, threads)
    with guarded_solve(monitor, ckpt, threads):
        if _continue is not None:
            _continue(field, recorder)
        try:
            if method in SCIPY_METHODS:
                _run_scipy(field, grid, method, rtol, atol, opts, recorder, monitor)
            elif method in NATIVE_METHODS:
                atol_v = field.atol_vector(atol) if isinstance(field, ObservedField) else atol
                rk.integrate(field, grid, method, rtol=rtol, atol=atol_v, step=step, options=opts, recorder=recorder,
                             monitor=monitor, checkpoint=ckpt, resume=resume)
            elif method in EXPINT_METHODS:
                run_exprk(field, grid, rtol, atol, recorder, monitor, method=method, explicit_space=space)
            elif method in FILIPPOV_METHODS:
                from .filippov import run_filippov

                run_filippov(field, grid, rtol, atol, recorder, monitor, slopes, opts)
            elif method in SLIDING_METHODS:
                from .sliding import run_sliding

                if _largest_step(step, grid) > sliding_limit:  # (the loss then rises: 2.7 % off at 0.25 vs 0.214)
                    unstable_note = (f"method='sliding' with step={step:g} exceeds the stability limit 2/λ_max(M₀) = "
                                     f"{sliding_limit:.3g} of its explicit treatment of the free pairs: the run may "
                                     "oscillate, diverge or freeze (every neuron dead) at a loss the flow would leave; "
                                     f"use step ≤ {0.9 * sliding_limit:.2g}")
                    if warn:
                        warnings.warn(unstable_note, GFlowWarning, stacklevel=2)
                run_sliding(field, grid, step, recorder, monitor, slopes, opts)
            else:
                _run_torchdiffeq(field, grid, method, rtol, atol, step, opts, recorder, monitor)
        except Abort as exc:
            status, message = exc.status, exc.message
            fault = flow_activation_fault(field, monitor, recorder) if status == "nonfinite" else None
            if fault is not None:  # (σ or σ′ non-finite at finite features: "check the data scale" missed it)
                message = fault
            elif status == "nonfinite" and recorder.fixed_step is not None:  # (blown up between two saved times: the
                message = f"{message}; {recorder.step_advice()}"  # step against the stability limit, as GD is told)
        finally:
            recorder.close()
    wall = time.perf_counter() - t_start
    if ckpt is not None:
        ckpt.finish(status == "success")

    if status != "success":
        if monitor.partial is not None and monitor.partial[0] > recorder.t[-1] * (1 + 1e-12):
            try:  # keep the last accepted state, unless it is itself non-finite
                recorder.record(monitor.partial[0], monitor.partial[1])
            except Abort:
                pass
        recorder.ensure_final_features()
    if status == "interrupted":
        message = interrupted_message(recorder.t[-1], t1, monitor.n_steps, ckpt)
    message = limit_stop_message(message, status, ckpt)

    stats = {
        "n_f_evals": monitor.n_f_evals,
        "n_steps": monitor.n_steps,
        "n_accepted": monitor.n_accepted,
        "n_rejected": monitor.n_rejected if method not in SCIPY_METHODS else -1,
        "resumed": resume is not None,
        "wall_time": wall + monitor.wall_before,
        "flops_per_eval": field.flops_per_eval(),
        "torch_threads": threads,
        "last_step": monitor.last_dt if math.isfinite(monitor.last_dt) else None,
        **getattr(monitor, "extra_stats", {}),  # exprk4: flops, flops_per_eval (per stage), n_linearizations
        # sliding: 2/λ_max(M₀), the stability limit of its explicit treatment of the free pairs
        **({"stability_limit": sliding_limit} if sliding_limit is not None else {}),
    }
    config = {
        "kind": "flow",
        "network": net.spec(),
        "space": field.space,
        "solver": {
            "method": method, "backend": backend_of(method), "rtol": rtol, "atol": atol, "step": step, "max_steps": max_steps,
            "max_wall_time": max_wall_time, "t1": t1, "saveat": grid.tolist(), "features_at": ft.tolist(),
            "weights_at": wt.tolist(), "options": opts, "space": space, "interval": list(interval),
            "integrals": bool(integrals),
            **({"auto": auto_reason} if auto_reason is not None else {}),
        },
    }
    rise, noted = None, None
    if method not in SLIDING_METHODS and status != "diverged":  # (sliding warns up front past its limit)
        noted = recorder.rise_warning(method, rtol, net.activation.smooth, status == "success")
    if noted is not None:
        rise = noted[0]
        message = f"{message}; warning: {rise}"
        stats.update(noted[1])
    elif unstable_note is not None and status == "success":  # (also in the result: the run itself said "success"
        message = f"{message}; warning: {unstable_note}"  # and simulate_nonsmooth's three frozen solves estimated 0)
        stats["unstable_step"] = True
    sol = _make_solution(recorder, problem, status, message, stats, config)
    raise_if_interrupted(monitor, status, sol, "gf.simulate")
    if warn and status != "success":
        warnings.warn(f"gflow.simulate stopped early [{status}]: {message}", GFlowWarning, stacklevel=2)
    elif warn and rise is not None:
        warnings.warn(f"gflow.simulate: {rise}", GFlowWarning, stacklevel=2)
    return sol


def warn_lossy_feature_space(problem: Problem, field, name: str, warn: bool, method: str | None = None) -> None:
    """Warn (for ``gflow.<name>``, at its caller) where a feature-space run — ``field``'s space, or an exprk4 method —
    loses W and the test outputs (float32 with n > D, :func:`gflow.fields.lossy_feature_space`); the advice is
    float64 where ``method`` runs in feature space only."""
    if not (warn and lossy_feature_space(problem)):
        return
    if method in EXPINT_METHODS or isinstance(getattr(field, "base", field), FeatureSpaceField):
        only = method if method in EXPINT_METHODS + FILIPPOV_METHODS + SLIDING_METHODS else None
        warnings.warn(f"gflow.{name}: {feature_space_warning(problem, only)}", GFlowWarning, stacklevel=3)


#: the most an adaptive solve's saved loss may rise above its lowest saved value, relative, and still count as within
#: its tolerance (Recorder.rise_rtol = min(rtol, this)); a plateau's wobble was 1.2e-11 relative
RISE_RTOL_CAP = 1e-6


def fixed_step_guard(method: str, step: float | None, grid=None, rtol: float | None = None) -> dict:
    """The Recorder arguments that make a fixed-step solve stop as "diverged" when its loss grows past
    DIVERGE_FACTOR·L₀ and keep the first rise of its saved loss: a fixed step past the stability limit 2/λ_max(M₀)
    blew the loss up 1e152-fold (rk4, step 2 on ReLU) and the run reported success, since only an overflow to
    inf/NaN was caught.  The step recorded is the largest one taken: no longer than the largest interval between
    output times ``grid`` (step = 5 to t1 = 1 takes one step of 1, and was warned of as past the limit).  An
    adaptive solve's: ``rtol``, the share of L a saved loss may rise by within its tolerance (Recorder.rise_rtol)."""
    if method not in FIXED_STEP_METHODS:  # (exprk4 with a fixed step has no error control: no allowance)
        return {} if rtol is None or step is not None else {"rise_rtol": min(rtol, RISE_RTOL_CAP)}
    return {"diverge_factor": DIVERGE_FACTOR, "fixed_step": (method, _largest_step(step, grid))}


def _largest_step(step: float | None, grid) -> float | None:
    """The largest step a fixed-step solve takes over the output times ``grid``: ``step``, or the largest
    interval between them where that is shorter (each interval ends on its output time)."""
    if step is None or grid is None or len(grid) < 2:
        return step
    return min(step, float(np.max(np.diff(np.asarray(grid, dtype=np.float64)))))


def _resolve_auto(net, X, y, t1, saveat, rtol, step, space) -> tuple[str, str]:
    """``method="auto"``: filippov for ReLU-type σ up to AUTO_FILIPPOV_MAX_PAIRS pairs (sliding, at
    AUTO_SLIDING_STEP, beyond), dop853+exprk4 where a
    smooth flow is stiff enough over the horizon for exprk4 to pay (:func:`gflow.solve.expint.auto_method`), else dop853
    (dopri5 at 1e-4 ≤ rtol ≤ 1e-3, :func:`gflow.solve.expint.explicit_method`); returns (method, reason), the reason
    being recorded in ``sol.config["solver"]["auto"]``."""
    from .expint import auto_method

    if step is not None:
        if not is_real(step):  # (a type error first, as for any method)
            raise TypeError(f"{arg('step')} must be a real number (a fixed-step method's step), got {describe(step)}")
        raise ValueError(f"step={step} was given with method='auto', which picks an adaptive method; give a "
                         "fixed-step method (e.g. method='rk4') with step, or drop step")
    if not net.activation.smooth:
        from .filippov import kink_slopes

        if space == "weight" and kink_slopes(net.activation) is not None:
            # (an adaptive explicit method in weight space crawls at the kink: dop853 stalled at t = 0.01 on a
            # 16-neuron ReLU net, after 3.5 s)
            raise ValueError(f"method='auto' with the kinked activation {net.activation.name!r} runs the Filippov flow "
                             "('filippov' or 'sliding'), which is integrated in feature space only, but space='weight' "
                             "was given; use space='auto' or 'feature' (W(t) is recovered exactly), or a fixed-step "
                             "method in weight space (e.g. method='euler', step=0.05: GD's iteration)")
        pairs = net.m * int(net._inputs(X, "X").shape[0])
        if kink_slopes(net.activation) is not None and pairs <= AUTO_FILIPPOV_MAX_PAIRS:
            return "filippov", (f"the activation {net.activation.name!r} has a kink at 0: the event-driven Filippov "
                                "flow is the method that meets rtol there (its cost grows with the number of "
                                f"activation events; beyond {AUTO_FILIPPOV_MAX_PAIRS} pairs m·n auto runs method='sliding')")
        if kink_slopes(net.activation) is not None:
            return "sliding", (f"m·n = {pairs} pairs > {AUTO_FILIPPOV_MAX_PAIRS}: too many activation events for the "
                               "event-driven 'filippov' (about 30 000 per unit time at m = D = 512, n = 200); the "
                               f"Filippov flow by time-stepping at step {AUTO_SLIDING_STEP:g} instead; rtol does not "
                               "set its accuracy (relative loss error ≈ 1e-5 on the Experiment 3 setting at m = D = "
                               "128, n = 50) and it has no error estimate: give error_estimate=True for steps δ, δ/2, "
                               "δ/4 with one, or gf.simulate_nonsmooth(method='sliding', rtol=...) to refine to a "
                               "target)")
    rtol = check_positive_float(rtol, "rtol")
    if space == "weight":
        method, why = explicit_method(rtol)
        return method, f"space='weight' was asked for; exprk4 runs in feature space only; {why}"
    if t1 is None and saveat is None:
        raise TypeError("give the final time t1 (e.g. t1=500.0) or the output times saveat")
    horizon = check_positive_float(t1, "t1") if t1 is not None else float(check_times(saveat, "saveat")[-1])
    if horizon <= 0:
        raise ValueError(f"saveat must reach beyond t = 0, got {saveat}")
    return auto_method(Problem.from_data(net, X, y), horizon, rtol)


def check_solver_args(net: Network, method, rtol, atol, step, max_steps, max_wall_time, options, t1, saveat,
                      features_at, weights_at, *, batch: bool = False):
    """Validate the solver arguments shared by :func:`simulate` and :func:`gflow.simulate_batch`; returns
    (rtol, atol, step, max_steps, max_wall_time, options, t1, grid, feature times, weight times)."""
    # (arg / arg_eq: the arguments as the caller spells them, keywords or gflow simulate's flags)
    rtol = check_positive_float(rtol, arg("rtol"))
    atol = check_positive_float(atol, arg("atol"))
    max_steps = check_positive_int(max_steps, arg("max_steps"))
    if max_wall_time is not None:
        max_wall_time = check_positive_float(max_wall_time, arg("max_wall_time"))
    opts = _check_options(method, options)
    if rtol > 1:  # (rtol = 1: a fixed step through an adaptive method, as the order tests take it)
        raise ValueError(f"{arg('rtol')} must be ≤ 1 (a relative tolerance: 1 is 100 %), got {rtol:g}")
    eps = torch.finfo(net.dtype).eps
    if method not in FIXED_STEP_METHODS and rtol < 0.25 * eps:
        # (float32 at rtol 1e-12 stalled, and the message blamed stiffness)
        raise ValueError(f"{arg_eq('rtol', rtol, 'g')} is below what {net.dtype} resolves (machine epsilon {eps:.2g}): "
                         f"an adaptive method cannot meet it and its steps would collapse; use {arg('rtol')} ≥ "
                         f"{eps:.0e}"
                         + (" or dtype float64" if net.dtype != torch.float64 else ""))
    if method in FIXED_STEP_METHODS:
        if step is None:
            if method in SLIDING_METHODS:
                raise ValueError(
                    f"method {method!r} needs {arg_eq('step')} (its largest step δ; steps follow the rate of "
                    f"activation changes below it), e.g. {arg_eq('step', AUTO_SLIDING_STEP)} as method='auto' takes "
                    "(relative loss error ≈ 1e-5 on the Experiment 3 setting at m = 128), or error_estimate=True for "
                    "a step-halving estimate"
                )
            raise ValueError(
                f"method {method!r} is a fixed-step method and needs an explicit step, e.g. {arg_eq('step', 0.01)} "
                "(gflow never takes the step from the output grid)"
            )
        step = check_positive_float(step, arg("step"))
    elif step is not None:
        if not is_real(step):  # (a type error first, as gf.gradient_descent and gf.simulate_nonsmooth raise it)
            raise TypeError(f"{arg('step')} must be a real number (a fixed-step method's step), got {describe(step)}")
        raise ValueError(
            f"{arg_eq('step', step)} was given but method {method!r} is adaptive and chooses its own steps; control it "
            f"with {arg('rtol')}/{arg('atol')}, or use a fixed-step method "
            f"({', '.join(m for m in FIXED_STEP_METHODS if not (batch and m in SLIDING_METHODS))})"
        )
    if method in SCIPY_METHODS:
        nets, has, verb = ("networks", "have", "are") if batch else ("network", "has", "is")
        if net.dtype != torch.float64:
            raise TypeError(f"scipy method {method!r} needs dtype float64, but the {nets} {has} {net.dtype}; "
                            "use net.to(dtype=torch.float64) or a torchdiffeq method")
        if net.device.type != "cpu":
            raise ValueError(f"scipy method {method!r} runs on the CPU, but the {nets} {verb} on {net.device}; use "
                             "net.to(device='cpu') or a torchdiffeq method")
    t1, grid, ft, wt = _output_grid(t1, saveat, features_at, weights_at, step)
    if step is not None:
        n_needed = _fixed_step_count(grid, step)  # (counted, not built: a tiny step would build ~t1/step times)
        if n_needed > max_steps:
            raise ValueError(
                f"method {method!r} with {arg_eq('step', step, 'g')} needs {n_needed:.0f} steps to reach "
                f"{arg_eq('t1', t1, 'g')}, more than {arg_eq('max_steps', max_steps)}; raise {arg('max_steps')} or "
                f"enlarge {arg('step')}"
            )
    return rtol, atol, step, max_steps, max_wall_time, opts, t1, grid, ft, wt


def check_interval(interval, net: Network) -> tuple[float, float]:
    """The active interval I for η: the activation's by default; a pair (I_l, I_r) with I_l < I_r."""
    if interval is None:
        return tuple(net.activation.interval)
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise TypeError(f"interval must be a pair (I_l, I_r) of numbers, got {describe(interval)}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"interval must satisfy I_l < I_r, got ({lo}, {hi})")
    return (lo, hi)


def observed_field(base: AbstractField, interval, integrals: bool) -> AbstractField:
    integrals = check_flag(integrals, "integrals")
    if not integrals:
        return base
    return ObservedField(base, interval, lam_min_M=base.problem.n <= LAM_MIN_M_MAX_N)


def check_started(recorder: Recorder, problem: Problem, status, message, seed: str = "") -> None:
    """Raise a ValueError if even t = 0 could not be recorded: a Solution without a single time would be no answer.

    The error says what is not finite at t = 0 and the likely cause, naming the arguments to check — not the
    stopped run's own message (status, message), which is worded for a state lost mid-run ("between t = 0 and t;
    use a smaller step") where no step was taken; that is kept only where t = 0 itself was fine.  ``seed``: a label
    for a batch's seed (" [seed index s, network seed k]"), put after the first clause."""
    if recorder.t:
        return
    net, H0, act = problem.net, problem.H0, problem.net.activation
    f0 = problem.outputs(H0) if bool(torch.isfinite(H0).all()) else None
    loss0 = math.inf if f0 is None else float(0.5 * torch.sum((f0 - problem.y) ** 2))
    lead = f"the loss at t = 0 is not finite ({loss0:g}){seed}" if not math.isfinite(loss0) else \
        f"the run cannot start at t = 0{seed}"
    if f0 is None:
        raise ValueError(f"{lead}: the initial features H₀ are not finite — the inputs X (|X| up to "
                         f"{float(problem.X.abs().max()):.3g}), the embedding or the initial weights (W0, if given) "
                         f"overflow {net.dtype} in the first layer; check the scale of X and of W0")
    s0, ds0 = act.both(H0)
    bad = [name for name, v in (("σ", s0), ("σ′", ds0)) if not bool(torch.isfinite(v).all())]
    if bad:  # (not an overflow: σ's own values)
        raise ValueError(f"{lead}: {' and '.join(bad)} of the activation {act.name!r} returned non-finite values at "
                         f"the finite initial features H₀ (|H₀| up to {float(H0.abs().max()):.3g}); check the "
                         "activation's sigma and dsigma there, or the scale of X")
    if math.isfinite(loss0):  # (t = 0 is fine: the run stopped for another reason before recording it)
        raise ValueError(f"the run stopped [{status}] before it recorded t = 0{seed}: {message}")
    y_max = float(problem.y.abs().max()) if problem.y.numel() else 0.0
    f_max = float(f0.abs().max()) if f0.numel() else 0.0
    sizes = f"|f(0)| up to {f_max:.3g}, |y| up to {y_max:.3g}"
    if not (math.isfinite(f_max) and f_max <= y_max):
        raise ValueError(f"{lead}: the network's outputs f(0) = α σ(H₀)ᵀc overflow {net.dtype} in the loss ½‖f − y‖² "
                         f"({sizes}; c_hat = {net.c_hat:g}, α = {net.alpha:.3g}); check c_hat (or c, if given) and "
                         "the network's scaling, or the scale of X")
    raise ValueError(f"{lead}: the targets y overflow {net.dtype} in the loss ½‖f − y‖² ({sizes}); check the scale "
                     "of y")


def _estimate_method_problem(method: str, step) -> str | None:
    """Why ``error_estimate=True`` cannot take the (resolved) ``method`` and ``step`` of a step-halving estimate."""
    from .nonsmooth import NONSMOOTH_METHODS

    if method in NONSMOOTH_METHODS and step is not None:
        return None
    if not isinstance(method, str):
        return f"error_estimate=True needs method to be one of gflow's method names, got {describe(method)}"
    if method == "auto":  # (it said "needs method='auto', ...; got method='auto', step=0.1")
        return (f"error_estimate=True with method='auto' takes no step (auto picks an adaptive method), got "
                f"step={step}; give a fixed-step method in {tuple(NONSMOOTH_METHODS)} with the step, or drop step")
    return (f"error_estimate=True needs method='auto', 'filippov' (ReLU-type σ), one of {ADAPTIVE_ESTIMATE_METHODS} "
            f"(smooth σ: a second, looser solve), or a fixed-step method in {tuple(NONSMOOTH_METHODS)} with an "
            f"explicit step (midpoint and rk4 for a smooth activation only); got method={method!r}, step={step}"
            + ("; scipy's and torchdiffeq's methods were not measured for it: use gflow's 'dop853'"
               if method in SCIPY_METHODS or method.startswith("torchdiffeq.") or method in TORCHDIFFEQ_ADAPTIVE
               else ""))


def error_estimate_problem(net: Network, method: str, step, rtol=None) -> str | None:
    """Why :func:`simulate` would refuse ``error_estimate=True`` with ``method``, ``step`` and ``rtol`` (None: the
    default) on ``net``, before any
    solve (None: it takes them, as far as is known without the data — ``"auto"`` on a ReLU-type σ estimates what it
    picks; whether filippov and sliding take the activation is :func:`gflow.solve.filippov.check_filippov`'s); for
    checks up front, e.g. a sweep's, where every run failed with it."""
    from .nonsmooth import kinked_method_problem

    if method in FILIPPOV_METHODS or (method == "auto" and step is None and _event_methods_take(net.activation)):
        return None
    if step is None and net.activation.smooth and (method in ADAPTIVE_ESTIMATE_METHODS or method in ESTIMATE_REFUSED
                                                   or method == "auto"):
        from .estimate import estimate_method_problem

        # (rtol: a second solve at up to 32× looser needs rtol ≤ 0.125 — a sweep's rtol = 0.2 failed every run)
        return estimate_method_problem(method, 0.0 if rtol is None else rtol)
    problem = _estimate_method_problem(method, step)
    kinked = kinked_method_problem(net, method) if problem is None else None
    if kinked:  # (simulate_nonsmooth's own refusal)
        return f"error_estimate=True with method={method!r} needs a smooth activation: {kinked}"
    return problem


def _make_solution(recorder: Recorder, problem: Problem, status, message, stats, config) -> Solution:
    from ._record import _np

    check_started(recorder, problem, status, message)
    arr = recorder.arrays()
    net = problem.net
    return Solution(
        status=status, message=message, stats=stats, config=config, X=_np(problem.X), y=_np(problem.y),
        c=_np(net.c), X_test=None if problem.X_test is None else _np(problem.X_test),
        y_test=None if problem.y_test is None else _np(problem.y_test),
        W0=_np(net.W0) if net.explicit_params else None, versions=versions(), G=_np(problem.G),
        theory=recorder.theory(), **arr,
    )


# ---------------------------------------------------------------------------------------------------------
# torchdiffeq backend


class _TorchFunc:
    """The vector field with counting and torchdiffeq's step callbacks (fixed-step solvers)."""

    def __init__(self, field: AbstractField, monitor: Monitor):
        self.field = field
        self.monitor = monitor

    def __call__(self, t, y):
        self.monitor.on_eval()
        out = torch.empty_like(y)
        parts = self.field.rhs_into(y, out)
        # the probe (L̇, or Σ Ḣ) reduces the whole derivative: one scalar tells whether any entry is NaN or inf
        if not math.isfinite(float(parts.probe)):
            self.monitor.raise_nonfinite(float(t), y, self.field)
        return out

    def callback_step(self, t0, y0, dt):
        self.monitor.partial = (float(t0), y0)
        self.monitor.on_step(float(t0), float(dt), True)


class _TorchFuncAdaptive(_TorchFunc):
    """Adds the accept/reject callbacks of torchdiffeq's adaptive Runge–Kutta solvers."""

    def callback_step(self, t0, y0, dt):
        self.monitor.proposed_dt = float(dt)

    def callback_accept_step(self, t0, y0, dt):
        self.monitor.partial = (float(t0), y0)
        self.monitor.on_step(float(t0), float(dt), True)

    def callback_reject_step(self, t0, y0, dt):
        self.monitor.on_step(float(t0), float(dt), False)


def _fixed_grid(times: np.ndarray, h: float) -> np.ndarray:
    """Steps of exactly h from each output time to the next, the last one shortened to land on it."""
    pieces = [times[:1]]
    for a, b in zip(times[:-1], times[1:]):
        k = int(math.floor((b - a) / h + 1e-9))
        inner = a + h * np.arange(1, k + 1)
        inner = inner[inner < b - 1e-9 * h]
        pieces.append(inner)
        pieces.append(np.array([b]))
    return np.concatenate(pieces)


class FixedGrid:
    """The times of :func:`_fixed_grid` (the same floats), computed on demand: ``grid[i]`` and ``len(grid)``.

    The native engine's fixed-step loops index it; built in full, a run of 1e9 steps (max_steps raised) held
    8 GB of step times before its first step, and the process was killed for memory.
    """

    def __init__(self, times: np.ndarray, h: float):
        self.times = np.asarray(times, dtype=np.float64)
        self.h = float(h)
        a, b = self.times[:-1], self.times[1:]
        count = _inner_steps(self.times, self.h)  # the inner points a + h·j, j = 1 … count, of each interval
        for i in np.flatnonzero((count > 0) & (a + self.h * np.maximum(count, 0) >= b - 1e-9 * self.h)):
            while count[i] > 0 and a[i] + self.h * count[i] >= b[i] - 1e-9 * self.h:  # (rounding: as _fixed_grid)
                count[i] -= 1
        #: the index of each output time in the grid
        self.starts = np.concatenate([[0], np.cumsum(np.maximum(count, 0) + 1)]).astype(np.int64)
        self._k = 0  # the interval of the last lookup (the loops walk the grid in order)
        self._len = int(self.starts[-1]) + 1

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> float:
        if not 0 <= i < self._len:
            raise IndexError(f"fixed-step grid index {i} out of range 0 … {self._len - 1}")
        k = self._k
        if not self.starts[k] <= i < self.starts[min(k + 1, len(self.starts) - 1)]:
            k = self._k = int(np.searchsorted(self.starts, i, side="right")) - 1
        j = i - int(self.starts[k])
        return float(self.times[k]) if j == 0 else float(self.times[k] + self.h * j)


def _inner_steps(times: np.ndarray, h: float) -> np.ndarray:
    """Per output interval [a, b], the steps a + h·j (j ≥ 1) strictly inside it as :func:`_fixed_grid` counts
    them (floats; the last of a + h·j, j ≤ ⌊(b − a)/h⌋, is dropped where it reaches b; may be −1 or inf)."""
    a, b = np.asarray(times[:-1], np.float64), np.asarray(times[1:], np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        k = np.floor((b - a) / h + 1e-9)
        return k - (a + h * k >= b - 1e-9 * h)


def _fixed_step_count(times: np.ndarray, h: float) -> float:
    """The number of steps of :func:`_fixed_grid` (``_fixed_grid(times, h).size − 1``), without building it;
    a float (inf where it overflows: t1 = 1e308 or a subnormal h)."""
    with np.errstate(over="ignore", invalid="ignore"):
        n = float(np.sum(np.maximum(_inner_steps(times, h), 0.0) + 1.0))
    return n if math.isfinite(n) else math.inf


def _chunks(grid: np.ndarray, state_bytes: int = 0) -> list[np.ndarray]:
    """The output times in chunks of one ``odeint`` call each: :data:`_MAX_CHUNKS` of them, or more, smaller ones
    where the states a chunk returns at once (one per output time, and its start) would hold more than
    :data:`_CHUNK_BYTES` (at m = D = 1 024 in weight space, 5 001 output times were chunks of 79 states, 0.62 GiB
    each — at m = D = 4 096, 9.9 GiB).  Each chunk costs a step landing on its end and an evaluation at its
    start (dopri5, 1 001 output times: 634 evaluations in 64 chunks, 2 213 at 4 output times a chunk)."""
    size = max(1, math.ceil((len(grid) - 1) / _MAX_CHUNKS))
    if state_bytes > 0:
        size = max(1, min(size, _CHUNK_BYTES // state_bytes - 1))
    return [grid[i: i + size + 1] for i in range(0, len(grid) - 1, size)]


def _run_torchdiffeq(field, grid, method, rtol, atol, step, opts, recorder: Recorder, monitor: Monitor):
    from torchdiffeq import odeint

    fixed = method in TORCHDIFFEQ_FIXED
    method = method.removeprefix("torchdiffeq.")
    func = _TorchFunc(field, monitor) if fixed else _TorchFuncAdaptive(field, monitor)
    if isinstance(field, ObservedField) and not fixed:
        atol = field.atol_vector(atol)
    y = field.initial_state()
    recorder.record(0.0, y)
    dev = y.device
    for chunk in _chunks(grid, y.numel() * y.element_size()):
        t = torch.as_tensor(chunk, dtype=torch.float64, device=dev)
        options = dict(opts)
        if fixed:
            fine = torch.as_tensor(_fixed_grid(chunk, step), dtype=torch.float64, device=dev)
            options["grid_constructor"] = lambda f, y0, tt, _g=fine: _g
        else:
            # Step exactly onto the chunk's end, so that the next chunk starts from a step endpoint rather than
            # from the (less accurate) dense-output interpolant; carry the step size across chunks.
            options["step_t"] = t[-1:]
            monitor.landing_time = float(chunk[-1])
            if "first_step" not in opts and monitor.proposed_dt is not None:
                options["first_step"] = min(monitor.proposed_dt, float(chunk[-1] - chunk[0]))
        y = record_chunk(odeint_or_abort(odeint, func, y, t, method, rtol, atol, options, monitor), chunk, recorder)
        monitor.partial = None


def record_chunk(ys: torch.Tensor, chunk: np.ndarray, recorder) -> torch.Tensor:
    """Record the states ``odeint`` returned at a chunk's output times; returns a copy of the last, the next
    chunk's start (a view of ys, which the recorder kept too, held the whole chunk alive through the next call)
    (shared by :func:`simulate` and :func:`gflow.simulate_batch`)."""
    y = ys[-1].clone()
    for k in range(1, len(chunk)):
        recorder.record(float(chunk[k]), ys[k] if k < len(chunk) - 1 else y)
    return y


def odeint_or_abort(odeint, func, y, t, method, rtol, atol, options, monitor: Monitor):
    """torchdiffeq's ``odeint`` over one chunk; its failures (raised as AssertionError) become an :class:`Abort`
    with a status (shared by :func:`simulate` and :func:`gflow.simulate_batch`)."""
    try:
        return odeint(func, y, t, method=method, rtol=rtol, atol=atol, options=options)
    except AssertionError as exc:
        text = str(exc)
        if "underflow in dt" in text:
            raise Abort("step_size_collapse", f"torchdiffeq: {text}; {monitor.hint}") from None
        if "non-finite" in text:
            raise Abort("nonfinite", "the state became non-finite; check the data scale, or use "
                        f"{float64_advice(monitor.dtype)}tighter tolerances") from None
        raise Abort("failed", f"torchdiffeq failed: {text}") from None


# ---------------------------------------------------------------------------------------------------------
# scipy backend


def _run_scipy(field, grid, method, rtol, atol, opts, recorder: Recorder, monitor: Monitor):
    import scipy.integrate as si
    from threadpoolctl import threadpool_limits

    shape = field.state_shape
    y0 = field.initial_state()
    recorder.record(0.0, y0)

    def fun(t, yflat):
        monitor.on_eval()
        yt = torch.from_numpy(np.ascontiguousarray(yflat)).view(shape)
        out = torch.empty_like(yt)
        parts = field.rhs_into(yt, out)
        if not math.isfinite(float(parts.probe)):  # the probe reduces the whole derivative
            monitor.raise_nonfinite(float(t), yt, field)
        return out.reshape(-1).numpy()

    cls = getattr(si, method)
    t1 = float(grid[-1])
    # numpy's BLAS threads spin after each small vector op in scipy's stepper and starve torch's threads
    # (measured 6x slower on 2 cores); limit them for the duration of this solve only.
    if isinstance(field, ObservedField):
        atol = field.atol_vector(atol).numpy()
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        solver = cls(fun, 0.0, y0.reshape(-1).numpy().copy(), t1, rtol=rtol, atol=atol, **opts)
        if monitor.max_wall_time is not None and method in ("Radau", "BDF"):
            _bound_factorizations(solver, monitor, time.perf_counter() - start)
        jump = getattr(field, "jump_integrals", lambda: None)()
        _scipy_loop(solver, grid, shape, method, recorder, monitor, None if jump is None else jump.numpy())


#: the first dense LU factorization of a scipy implicit method is predicted from one of a matrix this many times
#: smaller in each dimension, timed first (its cost, 1/64 of the factorization's, is spent only under a time budget,
#: at n ≥ _PREDICT_LU_FROM)
_PREDICT_LU_SHRINK = 4
_PREDICT_LU_FROM = 1000
#: a complex LU factorization (Radau's second) predicted from the real one before it: 2.8–4.1× its time measured
_COMPLEX_LU_FACTOR = 4.0


def _bound_factorizations(solver, monitor: Monitor, first_jac_time: float) -> None:
    """Let ``monitor`` stop scipy's Radau or BDF under a time budget before a dense Jacobian or LU factorization that
    would end past it (:meth:`Monitor.check_ahead`): their n³ factorizations run between two evaluations, unchecked,
    and overran the budget by their whole time (Radau at n = 6 000, one core: 4.5 s real + 12.7 s complex).  Each is
    predicted from the last of its kind (a Jacobian first from the solver's construction, which forms one; a complex
    LU from the real one before it, ×4; the first real LU from one of a matrix 4× smaller, ×64)."""
    last = {"jac": first_jac_time}
    jac, lu = solver.jac, solver.lu

    def timed(key, what, fn, *args):
        monitor.check_ahead(last.get(key, 0.0), what)
        start = time.perf_counter()
        out = fn(*args)
        last[key] = time.perf_counter() - start
        return out

    def guarded_lu(A):
        key = "lu_" + A.dtype.kind
        if key not in last:
            if key == "lu_c" and "lu_f" in last:
                last[key] = _COMPLEX_LU_FACTOR * last["lu_f"]
            elif A.shape[0] >= _PREDICT_LU_FROM and isinstance(A, np.ndarray):
                import scipy.linalg

                k = A.shape[0] // _PREDICT_LU_SHRINK
                small = np.eye(k, dtype=A.dtype) * k + np.random.default_rng(0).random((k, k))
                start = time.perf_counter()
                scipy.linalg.lu_factor(small, overwrite_a=True, check_finite=False)
                last[key] = (time.perf_counter() - start) * _PREDICT_LU_SHRINK ** 3
        return timed(key, "LU factorization", lu, A)

    if callable(jac):  # (None where the user gave a constant Jacobian: never the case here)
        solver.jac = lambda *args: timed("jac", "finite-difference Jacobian", jac, *args)
    solver.lu = guarded_lu


def _scipy_loop(solver, grid, shape, method, recorder: Recorder, monitor: Monitor, jump_idx=None):
    """Step a scipy OdeSolver to the end of ``grid``, recording output times inside a step from its dense output.
    (scipy's DOP853 interpolant amplifies stiff modes where its steps sit at the stability limit — 7.8e-7 off a
    stiff linear flow's closed form at rtol 1e-10, against 1.6e-10 for gflow's dop853, which bounds a step that
    holds an output time: a peer method, kept as scipy runs it.)  ``jump_idx``: the entries of ∫η, which the
    explicit Runge–Kutta methods (RK45, DOP853: negative weights) integrate by :class:`gflow.solve.rk.JumpQuadrature`
    from their stages, as gflow's own engine does."""
    rule = None
    if jump_idx is not None and hasattr(solver, "K") and hasattr(solver, "C"):
        rule = rk.JumpQuadrature([*map(float, solver.C), 1.0])  # K's rows: the stages, then f at the new point
    k = 1
    monitor.landing_time = float(grid[-1])  # scipy steps to t1 (a short t1 is one step shorter than 1e-12: no collapse)
    while k < len(grid):
        q_old = None if rule is None else solver.y[jump_idx].copy()
        msg = solver.step()
        if solver.status == "failed":
            text = str(msg)
            status = "step_size_collapse" if "step size" in text.lower() else "failed"
            raise Abort(status, f"scipy {method}: {text}; {monitor.hint}")
        t_old, t_new = float(solver.t_old), float(solver.t)
        if rule is not None:  # (the integrands do not feed back: the next step reads the corrected y as is)
            samples = solver.K[:, jump_idx]
            solver.y[jump_idx] = q_old + (t_new - t_old) * (rule.full @ samples)
        dense = None
        while k < len(grid) and grid[k] <= t_new * (1 + 1e-14):
            # (in the time unit min(1, t1): with 1, every output time within 1e-14 of t_new took its state — at
            # t1 = 1e-12 two output times of the default grid, the loss 1.4e-2 off)
            if abs(grid[k] - t_new) <= 1e-14 * max(monitor.time_unit, t_new):
                yk = solver.y.copy()
            else:
                dense = dense or solver.dense_output()
                yk = dense(grid[k])
                if rule is not None:
                    theta = (grid[k] - t_old) / (t_new - t_old)
                    yk[jump_idx] = q_old + (t_new - t_old) * (rule.weights(float(theta)) @ samples)
            recorder.record(float(grid[k]), torch.from_numpy(np.ascontiguousarray(yk)).view(shape))
            k += 1
        monitor.partial = (t_new, torch.from_numpy(solver.y.copy()).view(shape))
        monitor.on_step(t_old, t_new - t_old, True)
        if solver.status == "finished":
            break
    monitor.partial = None
