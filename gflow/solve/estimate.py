r"""``sol.error_estimate`` from a second, looser solve: ``gf.simulate(..., error_estimate=True)`` with
``method="filippov"`` (the event-driven ReLU flow) or an adaptive smooth method, ``"dop853"``, ``"exprk4"`` or
``"dop853+exprk4"`` (and ``method="auto"`` where it picks one of them).

The returned run is the one at the requested (rtol, atol); a second solve at :data:`ESTIMATE_RATIO` (32) times
looser tolerances — for ``filippov`` with every approximation loosened, its embedded 4th-order solution propagated
(:mod:`gflow.solve.filippov`) — is that solve's error, to within the returned one's: the estimate is
:data:`ESTIMATE_SAFETY` (2; :data:`ADAPTIVE_ESTIMATE_SAFETY`, 4, for the adaptive smooth methods) × the
relative difference of the two losses, its largest over neighbouring saved times,
carried forward in time (the raw difference passes through 0 where the two errors cross), at least the loss's
rounding (:func:`gflow.solve.nonsmooth.rounding_floor`: the two solves round alike), and inf where it reaches 1 —
two losses that differ by half their size say nothing of the relative error (a linear flow below its rounding: 1e20
off its closed form where the two differed 350×).

Why these methods.  An adaptive method's ``rtol`` bounds local errors; the global error of the loss can be 10³–10⁵×
rtol where it falls to 1e-22 or over 2 000-unit horizons (docs/guide.md, "How far the error estimates go"), so
the second solve is what says how accurate a run is.  It assumes the looser solve's error is the larger — that the
error follows the tolerance.  Measured against closed forms (linear σ, G regular and singular) and references (tanh
to L = 1e-22 and over t = 2 000, erf random features, the NTK and mean-field scalings; 112 runs at rtol 1e-3 …
1e-8, with the safety 4): true/estimate median 0.04, ≤ 0.65 in 111, 1.17 once (``dop853+exprk4`` at rtol 1e-3 on a
linear flow, an error of 3.4e-8) — docs/guide.md, "How far the error estimates go".  ``dopri5`` is refused: where its
stability guard, not the tolerance, sets the steps, both solves take the same steps and make the same error —
5.6×, 10.7×, 3.3× and 2.5× under its error at rtol 1e-3, 1e-4, 1e-6, 1e-8 on a linear flow near t = 120 (L ≈ 4e-17),
1.4× on a tanh net (``benchmarks/bench_estimate.py``, results/estimate/) — and its estimate would not be one.  The
second solve costs 0.4–1.0× the first.  dop853 meets the same limit where both solves take its stability guard's
steps: on 60 random problems (``benchmarks/fuzz_smooth.py``) true/estimate was 1.21 once and 3 500 once (two solves
equal to rounding over t ≤ 4: an estimate of 7e-15 for an error of 2.6e-11), at errors 10³–10⁶× below rtol — an
estimate, not a bound, where it is far below rtol.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import numpy as np

from .._validate import check_positive_float
from ..solution import GFlowWarning, Interrupted
from ._record import interrupted

#: tolerance ratio of the second, looser solve behind ``error_estimate=True``
ESTIMATE_RATIO = 32.0
ESTIMATE_SAFETY = 2.0  # on the two solves' loss difference, as step halving's (see simulate_with_estimate)
#: the same for the adaptive smooth methods, where stability can set both solves' steps alike (see the module docstring)
ADAPTIVE_ESTIMATE_SAFETY = 4.0
ESTIMATE_RATIO_MIN = 4.0  # the least loosening of the estimate's second solve (after event-cycle retries)
#: the loosest rtol of the second solve
LOOSE_RTOL_MAX = 0.5
#: the adaptive smooth methods whose second solve gives an estimate (measured: see the module docstring)
ADAPTIVE_ESTIMATE_METHODS = ("dop853", "exprk4", "dop853+exprk4")
#: the adaptive methods refused, and why
REFUSED = {
    "dopri5": "where its stability guard, not the tolerance, sets its steps, a looser solve takes the same steps and "
              "makes the same error (10.7× under the error of a linear flow at L = 4e-17)",
}
REFUSED["dopri5+exprk4"] = REFUSED["dopri5"]


def estimate_method_problem(method: str, rtol: float) -> str | None:
    """Why a second-solve estimate cannot take the resolved adaptive ``method`` at ``rtol`` (None: it can)."""
    if method in REFUSED:
        return (f"error_estimate=True does not take method={method!r}: {REFUSED[method]}; use method='dop853' "
                "(or 'dop853+exprk4' on long, stiff horizons), whose estimate was measured to bound the error")
    if isinstance(rtol, (int, float)) and rtol * ESTIMATE_RATIO_MIN > LOOSE_RTOL_MAX:
        return (f"error_estimate=True needs rtol ≤ {LOOSE_RTOL_MAX / ESTIMATE_RATIO_MIN:g} (its second solve runs at "
                f"{ESTIMATE_RATIO_MIN:g}–{ESTIMATE_RATIO:g}× looser tolerances, up to rtol = {LOOSE_RTOL_MAX:g}); "
                f"got rtol={rtol:g}")
    return None


def difference_estimate(tight, loose_loss, safety: float) -> np.ndarray:
    """The estimate of ``tight``'s relative loss error at each saved time from a looser solve's losses at its first
    len(``loose_loss``) saved times (None: none; inf beyond them): ``safety`` × the relative difference, its largest
    over neighbouring saved times, carried forward, at least the loss's rounding, inf from 1 on; 0 at t = 0."""
    from .nonsmooth import _rel_envelope, rounding_floor

    rel = np.full(tight.t.shape, np.inf)
    n = 0 if loose_loss is None else len(loose_loss)
    if n:
        L = np.abs(tight.loss[:n])
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.abs(np.asarray(loose_loss) - tight.loss[:n])
            rel[:n] = np.where(L > 0, d / L, np.where(d > 0, np.inf, 0.0))
    rel[0] = 0.0
    # the raw difference passes through 0 where the two solves' errors cross, and a solve's error made at an event
    # persists while the looser one's may not (ReLU, n = 6, d = 8 to t = 200 at rtol 1e-5: an event at t ≈ 30 left
    # the returned solve 3.7e-5 off for good, the looser one's difference fell to 6.1e-9 at t = 170, 6 200× under
    # the true error): the envelope over neighbouring saved times, carried forward, × safety, at least the loss's
    # rounding (rounding_floor); from 1 on, inf (no relative accuracy)
    if n > 1:
        env = _rel_envelope(rel[:n] * L, L)
        rel[:n] = safety * np.maximum.accumulate(np.where(np.isnan(env), rel[:n], env))
        rel[:n] = np.maximum(rel[:n], rounding_floor(tight)[:n])
        rel[:n] = np.where(rel[:n] >= 1.0, np.inf, rel[:n])
        rel[0] = 0.0
    return rel


def simulate_with_estimate(net, X, y, t1, saveat, *, method, rtol, atol, warn, checkpoint, **kwargs):
    """``simulate(method=..., error_estimate=True)`` for ``method="filippov"`` (or ``"auto"`` where it picks filippov)
    and the adaptive methods of :data:`ADAPTIVE_ESTIMATE_METHODS`: solves at (rtol, atol), and again at 32× looser
    tolerances (filippov: propagating its embedded 4th-order solution).  ``max_wall_time`` covers both: the second
    solve gets what the first left, and a run out of time before the estimate is complete ends as ``"time_budget"``.

    Returns the first solve with ``error_estimate`` = s·|L_loose − L_tight| / L_tight at each saved time (s =
    :data:`ESTIMATE_SAFETY` for filippov, :data:`ADAPTIVE_ESTIMATE_SAFETY` for the adaptive methods; the
    second solve's error), enveloped over neighbouring saved times, carried forward in time, at least the loss's
    rounding and inf from 1 on (see the module docstring), an estimate of the returned one's.  (For filippov both
    loosenings matter: where every step is cut by an event the tolerance never limits the step, and two solves
    differing only in rtol would be identical.)
    """
    from .ode import simulate

    event_driven = method not in ADAPTIVE_ESTIMATE_METHODS  # (filippov, or auto picking it)
    safety = ESTIMATE_SAFETY if event_driven else ADAPTIVE_ESTIMATE_SAFETY
    if checkpoint is not None:
        raise ValueError("checkpoint is not supported with method='filippov' (event-driven); use max_wall_time to "
                         "bound the run" if event_driven else
                         "checkpoint is not supported with error_estimate=True (two solves); checkpoint the single "
                         "solves instead, and compare them with gf.compare")
    rtol, atol = check_positive_float(rtol, "rtol"), check_positive_float(atol, "atol")
    problem = estimate_method_problem(method, rtol)
    if problem:
        raise ValueError(problem)
    start = time.perf_counter()
    # max_wall_time covers the whole call (each solve was given all of it: 6 s for a 3 s budget): the returned
    # solve first, with the whole budget, then the second one with what is left
    max_wall_time = kwargs.pop("max_wall_time", None)
    options = dict(kwargs.pop("options", None) or {})
    loose_options = dict(options, lower_order=1) if event_driven else options
    loose, ratio, tried, ctrl_c = None, min(ESTIMATE_RATIO, LOOSE_RTOL_MAX / rtol), [], False
    # the returned solve's own notes (a loss rise, float32 feature space losing W) are said after both solves, as
    # without error_estimate (with warn=False on it they were lost, though its message kept the rise); its "stopped
    # early" warning is this call's, below, which names the estimate too, and simulate said any about threads
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        try:
            tight = simulate(net, X, y, t1, saveat, method=method, rtol=rtol, atol=atol, warn=warn,
                             options=options, max_wall_time=max_wall_time, **kwargs)
        except Interrupted as stop:  # Ctrl-C in the first solve: its partial run, with an estimate of inf beyond t = 0
            tight, ctrl_c = stop.solution, True  # (it came back without one: error_estimate None, unlike a time budget)
    for note in notes:
        if not issubclass(note.category, GFlowWarning) or str(note.message).startswith("gflow.simulate: "):
            warnings.warn(note.message, note.category, stacklevel=3)
    # a looser solve that stalls in an event cycle (which tolerance does is erratic: ×32 and ×8 stalled on a
    # 32-neuron ReLU net where ×16, ×4 and ×2 went through) is retried less loose, down to ×ESTIMATE_RATIO_MIN
    while ratio >= ESTIMATE_RATIO_MIN and not ctrl_c:
        remaining = None if max_wall_time is None else max_wall_time - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            break
        try:
            loose = simulate(net, X, y, t1, saveat, method=method, rtol=rtol * ratio, atol=atol * ratio,
                             warn=False, options=loose_options, max_wall_time=remaining, **kwargs)
        except Interrupted as stop:  # Ctrl-C in the second solve: the first, complete, is kept with the estimate so far
            loose, ctrl_c = stop.solution, True
        tried.append(ratio)
        if ctrl_c or loose.status not in ("stalled", "step_size_collapse"):
            break
        ratio /= 2
    n = 0 if loose is None else min(len(loose.loss), len(tight.loss))
    while n > 1 and not math.isclose(loose.t[n - 1], tight.t[n - 1], rel_tol=1e-12, abs_tol=1e-300):
        n -= 1  # (a stopped second solve ends on its last accepted state, between two saved times)
    rel = difference_estimate(tight, None if loose is None else loose.loss[:n], safety)
    used = tried[-1] if tried else ratio
    info = {"scheme": (f"second solve propagating the embedded 4th-order solution at rtol×{used:g}, atol×{used:g}"
                       if event_driven else f"second solve of {method} at rtol×{used:g}, atol×{used:g}")
                      + f"; estimate = {safety:g} × the loss difference (that solve's error; its envelope "
                        "over neighbouring saved times, carried forward), at least the loss's rounding, inf from 1",
            "looseness_tried": tried,
            "max_rel_estimate": float(np.max(rel)),
            "flow": "Filippov (sliding) solution" if event_driven else "gradient flow",
            "loose_stats": {} if loose is None else {k: v for k, v in loose.stats.items()
                                                     if isinstance(v, (int, float))}}
    status, message = tight.status, tight.message
    if ctrl_c and loose is None:  # (Ctrl-C in the first solve, or as it finished: then it is whole)
        status = "interrupted"
        message += "; the second solve for the error estimate did not start: sol.error_estimate is inf beyond t = 0"
    elif status == "success" and loose is not None and loose.status == "interrupted":
        status = "interrupted"
        message += (f"; but Ctrl-C (SIGINT) stopped the second solve for the error estimate at t = {loose.t[-1]:.6g}: "
                    f"sol.error_estimate is inf beyond t = {tight.t[n - 1] if n else 0.0:.6g}")
    elif status == "success" and (loose is None or loose.status == "time_budget"):
        status = "time_budget"
        where = ("before the second solve for the error estimate could start" if loose is None else
                 f"in the second solve for the error estimate, at t = {loose.t[-1]:.6g}")
        message += (f"; but the wall-time budget max_wall_time={max_wall_time:g} s (for both solves) ran out "
                    f"{where}: sol.error_estimate is inf beyond t = {tight.t[n - 1] if n else 0.0:.6g}; raise "
                    "max_wall_time, or drop error_estimate")
    elif status == "success" and not loose.ok:
        message += f"; the looser solve for the estimate stopped [{loose.status}]: the estimate is incomplete"
    elif status == "success" and math.isfinite(info["max_rel_estimate"]):
        message += f"; estimated relative loss error ≤ {info['max_rel_estimate']:.2e}"
    elif status == "success":
        k = int(np.argmax(np.isinf(rel)))
        finite = rel[:k]
        message += (f"; estimated relative loss error ≤ {float(finite.max()) if finite.size else 0.0:.2e} to "
                    f"t = {tight.t[k - 1] if k else 0.0:.6g}, inf from t = {tight.t[k]:.6g} "
                    f"(loss {tight.loss[k]:.3g}): "
                    "the loss has no relative accuracy there — its rounding, or two solves that differ by half of "
                    "it; end at an earlier t1, or tighten rtol and atol")
    solver = dict(tight.config["solver"], error_estimate=info)
    stats = dict(tight.stats, wall_time=time.perf_counter() - start,
                 n_f_evals=int(tight.stats["n_f_evals"]) + (0 if loose is None else int(loose.stats["n_f_evals"])),
                 n_f_evals_returned=tight.stats["n_f_evals"])
    out = dataclasses.replace(tight, status=status, message=message, stats=stats,
                              config=dict(tight.config, solver=solver), error_estimate=rel)
    if ctrl_c:  # (also where it arrived as the second solve finished: the Ctrl-C is never lost)
        raise interrupted(f"gf.simulate [{status}] {message}", out)
    if warn and status != "success":
        warnings.warn(f"gflow.simulate stopped early [{status}]: {message}", GFlowWarning, stacklevel=3)
    return out
