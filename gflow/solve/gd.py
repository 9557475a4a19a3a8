r"""Discrete full-batch gradient descent, W ← W − δ ℓ ∂L/∂W (eq. (9)), from the same initialisation.

In feature space this is H ← H − δγPG (EQUATIONS.md §4, "GD in feature space"), exactly the weight-space
iteration up to rounding, at ≈ 2mn² instead of ≈ 4mDn flops per step.  After k steps the flow time is t = kδ.
GD is forward Euler on the flow: it is linearly stable near a point only if δ·λ_max(M) < 2 (E3); past that
limit it follows a different trajectory from the flow (a property of GD, not a bug).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from .._validate import arg, arg_eq, check_positive_float, check_positive_int, check_run_flags, check_times, describe
from ..fields import Problem, make_field
from ..model import quantities as Q
from ..model.network import Network
from ..solution import GFlowWarning, Solution
from ._record import (DIVERGE_FACTOR, Abort, Monitor, Recorder, activation_fault, check_recording_memory, check_threads,
                      guarded_solve, interrupted_message, limit_stop_message, raise_if_interrupted, snapshot_bytes,
                      solve_threads)
from .checkpoint import stored_layout
from .ode import _make_solution, check_interval, check_started, observed_field, warn_lossy_feature_space


MAX_SAVED_STEPS = 10_000_000  # saved steps per run: each keeps the loss, the residuals and the outputs


def _steps_of(times: Any, name: str, step: float, steps: int) -> np.ndarray:
    t = check_times(times, name)
    k = np.rint(t / step)
    bad = np.abs(k * step - t) > 1e-9 * np.maximum(1.0, t)
    if np.any(bad):
        raise ValueError(f"{name} must be multiples of the step {step:g} (GD only visits t = kδ), got "
                         f"{t[bad][:3].tolist()}")
    if k[-1] > steps:
        raise ValueError(f"{name} runs to t = {t[-1]:g} beyond the last step (t = {steps * step:g})")
    return k.astype(np.int64)


def _sorted_unique(k: np.ndarray) -> np.ndarray:
    """np.unique of integer steps by a sort (numpy's hash-based unique took 15 s for the 1e7 saved steps that
    gradient descent allows, before its wall-time budget started; this takes ≈ 0.3 s)."""
    k = np.sort(k.astype(np.int64, copy=False), kind="stable")
    return k[np.concatenate([[True], k[1:] != k[:-1]])] if k.size else k


def _first_refused(field, recorder, start: torch.Tensor, k0: int, k1: int, step: float, monitor: Monitor | None):
    """Replay GD from its last recorded state ``start`` (step k0) to step k1, after the run failed by step k1 (a
    non-finite state, or a loss past diverge_factor·L₀, is seen at saved steps only): the first iterate k0 < k ≤ k1
    that saving every step would have refused, as (k − 1, the iterate k − 1, status, why), or None (none did)."""
    pb, net = field.problem, field.problem.net
    limit = recorder.diverge_factor * max(recorder.initial_loss(), 1e-300)
    state, prev, deriv = start.clone(), start.clone(), torch.empty_like(start)
    for k in range(k0 + 1, k1 + 1):
        # Ctrl-C stops the replay (the last saved state stays the end); the time budget does not: a run found
        # diverged when its budget ran out ends where saving every step would have, after at most save_every − 1
        # replayed steps (each ≈ 2–3 steps' cost: σ and σ′ unfused, and the loss)
        if monitor is not None and monitor.interrupt_requested:
            return None
        field.gd_step_(state, step, deriv)
        at = f"at step {k} (t = {k * step:g})"
        H = field.train_features(state)
        what = "state" if not bool(torch.isfinite(state).all() and torch.isfinite(H).all()) else None
        if what is None:
            s, ds = net.activation.both(H)
            fault = activation_fault(net, H, at, "the step", s, ds)
            if fault is not None:  # (a NaN σ′ at a stable step was blamed on the step)
                return k - 1, prev, "nonfinite", fault
            r = net.alpha * (net.c @ s) - pb.y
            loss = float(0.5 * (r @ r))
            if not math.isfinite(loss) or not bool(torch.isfinite(ds).all()):
                what = "loss"
            elif loss > limit:
                return k - 1, prev, "diverged", recorder.diverged_message(loss, k * step)
        if what is not None:
            return k - 1, prev, "diverged", (f"gradient descent diverged (non-finite {what}) {at}: the step δ = "
                                             f"{step:g} is far past the stability limit 2/λ_max(M); use a smaller step")
        prev.copy_(state)
    return None


def failure_end(field, recorder, start: torch.Tensor, k0: int, k1: int, step: float, monitor: Monitor | None = None):
    """The end of a GD run (or a batch's seed) that failed by step k1, its last recorded state ``start`` at step k0:
    replays to the first iterate its run saving every step would have refused (:func:`_first_refused`; on this
    failure path only, no cost per step), records the iterate before it where that is past k0 (up to save_every − 1
    finite steps were dropped: a run that diverged at step 2 of 100 ended at t = 0), and returns (status, message
    naming both steps, the end state), or None where the replay found no refused iterate."""
    found = _first_refused(field, recorder, start, k0, k1, step, monitor)
    if found is None:
        return None
    k, end, status, why = found
    if k > k0:
        try:
            recorder.record(k * step, end)
        except Abort:  # (rounding between the replay's loss and the recorder's: the last saved state stays the end)
            k, end = k0, start
    return status, f"{why}; the run ends at its last iterate before that, step {k} (t = {k * step:g})", end


def default_save_every(steps: int) -> int:
    """GD's ``save_every`` where none is given: about 200 saved steps, at most every 100th — the paper's 50 000 steps
    save every 100th (the fixed default before, which saved only t = 0 and the end of a run of 100 steps, and looked
    for a rise of the loss at those two alone)."""
    return max(1, min(100, steps // 200))


def gd_schedule(step, steps, save_every, max_wall_time, features_at, weights_at, offset: int = 0):
    """Validate GD's arguments (shared with :func:`gflow.gradient_descent_batch`); returns (step, steps,
    save_every, max_wall_time, t1, feature steps, weight steps, saved steps).  ``offset``: the steps taken before
    (a run continued by :func:`gflow.extend`), so that the saved steps are those of the whole run, multiples of
    ``save_every`` counted from its start (and the first and last step)."""
    # (arg / arg_eq: the arguments as the caller spells them, keywords or gflow simulate's flags)
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step <= 0:
        raise ValueError(f"{arg('step')} must be > 0 (the GD step δ), got {step}")
    step = check_positive_float(step, arg("step"))
    steps = check_positive_int(steps, arg("steps"))
    save_every = default_save_every(steps) if save_every is None else check_positive_int(save_every,
                                                                                         arg("save_every"))
    if max_wall_time is not None:
        max_wall_time = check_positive_float(max_wall_time, arg("max_wall_time"))
    t1 = steps * step
    if not math.isfinite(t1):
        raise ValueError(f"{arg('steps')} × {arg('step')} = {steps} × {step:g} overflows float64 (the final time "
                         f"t = kδ); give a smaller {arg('step')} or fewer {arg('steps')}")
    if steps // save_every > MAX_SAVED_STEPS:
        raise ValueError(f"{arg_eq('steps', steps)} with {arg_eq('save_every', save_every)} would save "
                         f"{steps // save_every + 1} points (loss, residuals and outputs at each); raise "
                         f"{arg('save_every')} to at least {-(-steps // MAX_SAVED_STEPS)} (at most {MAX_SAVED_STEPS} "
                         "saved steps)")
    saved = _sorted_unique(np.concatenate([[0], np.arange(-offset % save_every, steps + 1, save_every), [steps]]))
    if isinstance(features_at, str) and features_at == "all":  # as in simulate: at every saved step
        fk = saved
    else:
        fk = _steps_of([0.0, t1] if features_at is None else features_at, "features_at", step, steps)
    wk = np.zeros(0, np.int64) if weights_at is None else _steps_of(weights_at, "weights_at", step, steps)
    save_k = _sorted_unique(np.concatenate([saved, fk, wk]))
    return step, steps, save_every, max_wall_time, t1, fk, wk, save_k


def gradient_descent(
    net: Network,
    X: Any,
    y: Any,
    step: float = 1.0,
    steps: int = 50_000,
    save_every: int | None = None,
    *,
    X_test: Any = None,
    y_test: Any = None,
    space: str = "auto",
    features_at: Any = None,
    weights_at: Any = None,
    max_wall_time: float | None = None,
    interval: tuple[float, float] | None = None,
    integrals: bool = True,
    progress: bool | None = False,
    warn: bool = True,
    checkpoint: Any = None,
    checkpoint_every: float = 60.0,
    keep_checkpoint: bool = False,
    threads: int | None = None,
    _continue: Any = None,
) -> Solution:
    r"""Run ``steps`` steps of full-batch gradient descent with step δ = ``step`` (eq. (9)).

    Args:
        net: the network; X (n, d), y (n,): training data.
        step: δ > 0 (the paper uses δ = 1).  Flow time after k steps is kδ.
        steps: number of steps k (the paper uses 50 000).
        save_every: record the loss every this many steps (the last step is always recorded); default: about 200
            saved steps, at most every 100th (``max(1, min(100, steps // 200))``: every 100th of the paper's 50 000).
        X_test, y_test: optional test data.
        space: ``"feature"``, ``"weight"`` or ``"auto"``, as in :func:`gflow.simulate`; both are exact.
        features_at, weights_at: flow times (multiples of ``step``) at which H / W are kept; features default
            to the first and last step; ``features_at="all"``: at every saved step (as in :func:`gflow.simulate`).
        max_wall_time: optional budget in seconds (status ``"time_budget"``).
        progress: a tqdm bar over flow time t = kδ (``None``: only when stderr is a terminal).
        interval, integrals: as in :func:`gflow.simulate`; for GD the integrals are the exact left sums
            Σ_k δ q(H_k).
        warn: warn with :class:`gflow.GFlowWarning` if the run diverges or runs out of time.
        checkpoint, checkpoint_every, keep_checkpoint: periodic checkpoints and resume, as in
            :func:`gflow.simulate` (``max_wall_time`` may differ between the stopped and the resumed run; resuming
            is bit-identical to an uninterrupted run).
        threads: torch's intra-op CPU threads, as in :func:`gflow.simulate` (default: one for small evaluations).
        _continue: private to :func:`gflow.extend`, as in :func:`gflow.simulate`.

    Returns:
        a :class:`gflow.Solution` with ``t = k·step`` at the saved steps; status ``"diverged"`` if the state or
        loss became non-finite or the loss grew past 1e10·L₀ (:data:`~gflow.solve._record.DIVERGE_FACTOR`), seen
        at a saved step: a replay from the last saved step (on that failure only) finds the first iterate past
        that, whose loss and step the message gives, and the run ends at the iterate before it, kept as an extra
        saved time (W_final and the last H are its), as the same run saving every step ends; ``"nonfinite"``
        where σ or σ′ was non-finite at finite features there (the activation, not the step, is named).

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=10, d=20, seed=0)
        >>> gd = gf.gradient_descent(gf.Network(d=20, width=64), X, y, step=0.5, steps=100, save_every=10)
        >>> float(gd.t[-1]), bool(gd.loss[-1] < gd.loss[0])
        (50.0, True)
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a gf.Network, got {describe(net)}")
    check_run_flags(warn, checkpoint_every, keep_checkpoint)
    threads = check_threads(threads, warn)
    step, steps, save_every, max_wall_time, t1, fk, wk, save_k = gd_schedule(
        step, steps, save_every, max_wall_time, features_at, weights_at, getattr(_continue, "step_offset", 0))

    interval = check_interval(interval, net)
    problem = Problem.from_data(net, X, y, X_test, y_test)
    # (a checkpoint written before the layout choice resumes in its (2, m, n) layout)
    field = observed_field(make_field(problem, space, layout=stored_layout(checkpoint)), interval, integrals)
    warn_lossy_feature_space(problem, field, "gradient_descent", warn)
    check_recording_memory(len(save_k), problem.n, problem.n_test, what="saved steps",
                           advice=f"save less often (save_every > {save_every})",
                           snapshots=snapshot_bytes(problem, len(fk), len(wk)))
    recorder = Recorder(field, fk * step, wk * step, time_tol=0.25 * step, interval=interval,
                        diverge_factor=DIVERGE_FACTOR, share=True)
    monitor = Monitor(t1, steps + 1, max_wall_time, hint="use a smaller step or fewer steps", adaptive=False,
                      dtype=net.dtype)
    status, message = "success", f"took {steps} steps of size {step:g} (t = {t1:g})"
    recorder.attach_progress(progress, t1, f"GD (δ = {step:g})")
    ckpt = resume = None
    if checkpoint is not None:
        from .checkpoint import open_checkpoint

        settings = {"method": "gradient_descent", "step": step, "steps": steps, "save_every": save_every,
                    "features_at": (fk * step).tolist(), "weights_at": (wk * step).tolist(), "space": field.space,
                    "layout": field.layout, "interval": list(interval), "integrals": bool(integrals),
                    **getattr(_continue, "fingerprint", {})}  # (gf.extend: the run it continues, and from where)
        ckpt, resume = open_checkpoint(checkpoint, every=checkpoint_every, keep=keep_checkpoint, kind="gd",
                                       problem=problem, settings=settings, recorder=recorder, monitor=monitor)
    threads = solve_threads(field.flops_per_eval(), problem.net.device, threads)
    with guarded_solve(monitor, ckpt, threads):
        if _continue is not None:
            _continue(field, recorder)
        t_start = time.perf_counter()
        state = field.initial_state()
        k_done, next_save = 0, 1
        if resume is None:
            try:
                recorder.record(0.0, state.clone())
            except Abort as exc:
                check_started(recorder, problem, exc.status, exc.message)  # raises: t = 0 overflows
        else:
            state.copy_(resume["state"])
            k_done = int(resume["k"])
            if k_done > steps:
                raise ValueError(f"checkpoint {str(ckpt.path)!r} is at step {k_done}, beyond steps={steps}")
            next_save = int(np.searchsorted(save_k, k_done, side="right"))
        # the last saved (finite) iterate, which a failed run ends with: a checkpoint taken between saved steps
        # holds a later state (resumed as the end, a diverged run's W_final and H[-1] were from a later step than
        # t[-1]: loss(W_final) 1e12 where loss[-1] was 3.7e7); checkpoints from before it was kept hold none
        last_good, k_good = state.clone(), k_done
        if resume is not None and "k_good" in resume:
            k_good = int(resume["k_good"])
            if resume["last_good"] is not None:
                last_good = resume["last_good"].clone()

        def loop_state():
            # (at a saved step the last good state is the state: stored twice, 512 checkpoints of GD saving every
            # step wrote 9.6 MB instead of 8.4)
            return {"method": "gradient_descent", "k": k_done, "state": state.clone(), "k_good": k_good,
                    "last_good": None if k_good == k_done else last_good.clone()}

        deriv = torch.empty_like(state)  # reused every step: the loop allocates nothing
        try:
            for k in range(k_done + 1, steps + 1):
                monitor.n_accepted, monitor.last_t = k_done, k_done * step  # (what a time-budget message reports)
                monitor.on_eval()
                field.gd_step_(state, step, deriv)  # state ← state + δ·f(state), fused where the field can
                k_done = k
                if k == save_k[next_save]:
                    next_save += 1
                    if not Q.all_finite(state):  # (by a sum: 144 → 12 µs per saved step at (1024, 20))
                        raise Abort(
                            "diverged",
                            f"gradient descent diverged (non-finite state) between steps {int(save_k[next_save - 2])} "
                            f"and {k}: the step δ = {step:g} is far past the stability limit 2/λ_max(M); use a "
                            "smaller step",
                        )
                    recorder.record(k * step, state)
                    last_good = state.clone() if next_save < len(save_k) else state
                    k_good = k
                # after the step's record: a checkpoint taken before it, at a saved step, resumed past that step
                # (searchsorted "right") and the resumed run lost the row (one in save_every checkpoints)
                if ckpt is not None and ckpt.due():
                    ckpt.save(loop_state())
            if ckpt is not None and ckpt.keep:  # the finished run, for keep_checkpoint=True
                ckpt.save(loop_state())
        except Abort as exc:
            status, message = exc.status, exc.message
            if ckpt is not None and status not in ("nonfinite", "diverged"):
                ckpt.save(loop_state())
            if status in ("time_budget", "interrupted") and k_done > k_good:
                # the last step taken, also between saved steps (the steps since the last save were dropped: "ran out at
                # t = 4755" with sol.t[-1] = 4500); after the checkpoint above, which resumes on the saved grid
                try:
                    recorder.record(k_done * step, state)
                    last_good, k_good = state, k_done
                except Abort as late:
                    # the iterates had diverged by then, which ends the run, not the budget (reported as "raise
                    # max_wall_time" at a loss of 3e33, L₀ = 0.85); the last saved state stays the end
                    exc = late
                    status, message = exc.status, exc.message
            if status == "nonfinite":
                status = "diverged"
                message = (f"gradient descent diverged (non-finite loss) before step {k_done}: the step δ = {step:g} "
                           "is far past the stability limit 2/λ_max(M); use a smaller step")
            end = (failure_end(field, recorder, last_good, k_good, k_done, step, monitor) if status == "diverged"
                   else None)
            if end is not None:  # the last iterate before the failure, and what failed (the step, or σ)
                status, message, last_good = end
            recorder.last_state = last_good
            recorder.ensure_final_features()
        finally:
            recorder.close()
    wall = time.perf_counter() - t_start
    if ckpt is not None:
        ckpt.finish(status == "success")
    if status == "interrupted":
        message = interrupted_message(recorder.t[-1], t1, k_done, ckpt)
    message = limit_stop_message(message, status, ckpt)
    stats = {
        "n_f_evals": monitor.n_f_evals, "n_steps": k_done, "n_accepted": k_done, "n_rejected": 0,
        "wall_time": wall + monitor.wall_before, "flops_per_eval": field.flops_per_eval(), "last_step": step,
        "resumed": resume is not None, "torch_threads": threads,
    }
    config = {
        "kind": "gd",
        "network": net.spec(),
        "space": field.space,
        "solver": {"method": "gradient_descent", "step": step, "steps": steps, "save_every": save_every,
                   "features_at": (fk * step).tolist(), "weights_at": (wk * step).tolist(),
                   "max_wall_time": max_wall_time, "space": space, "interval": list(interval),
                   "integrals": bool(integrals)},
    }
    rise = _loss_rise(recorder, step) if status == "success" else None
    if rise is not None:
        message = f"{message}; warning: {rise}"
        stats["loss_rise"] = list(recorder.loss_rise)
    message = note_unstable_step(recorder, step, status, message, stats)
    sol = _make_solution(recorder, problem, status, message, stats, config)
    raise_if_interrupted(monitor, status, sol, "gf.gradient_descent")
    if warn and status != "success":
        warnings.warn(f"gflow.gradient_descent stopped early [{status}]: {message}", GFlowWarning, stacklevel=2)
    elif warn and rise is not None:
        warnings.warn(f"gflow.gradient_descent: {rise}", GFlowWarning, stacklevel=2)
    return sol


def note_unstable_step(recorder, step: float, status: str, message: str, stats: dict) -> str:
    """GD's message, with a note where δ exceeds the linear stability limit 2/λ_max(M₀) though no saved loss rose
    (a rise has its own warning), and ``stats["unstable_step"] = True`` past the limit either way.  Not a warning:
    the paper's δ = 1 is past the limit for larger n, on purpose; but the verdict must not depend on save_every
    (δ = 5 at 7.5× the limit: "success" without a word at save_every = 10, a loss rise at save_every = 1)."""
    limit = recorder.stability_limit0()
    if not step > limit:
        return message
    stats["unstable_step"] = True
    if status != "success" or "loss_rise" in stats:
        return message
    return (f"{message}; note: δ = {step:g} exceeds GD's linear stability limit 2/λ_max(M₀) = {limit:.3g}: the saved "
            "loss did not rise, but GD does not follow the gradient flow there (gf.compare(gd, flow) measures how far)")


def _loss_rise(recorder, step: float) -> str | None:
    """The first rise of GD's saved loss (beyond rounding), worded for a warning, or None.

    A bounded σ keeps an unstable iteration finite — tanh at δ = 1e6 jumped to 12 L₀ and stayed there, δ = 30
    bounced between 0.25 and 2.25, both "success" without a word — so a rise, which the gradient flow never has, is
    the sign that GD no longer follows it (the paper's δ = 1 is past the limit for larger n)."""
    if recorder.loss_rise is None:
        return None
    limit = recorder.stability_limit0()
    where = (f"δ = {step:g} exceeds GD's linear stability limit 2/λ_max(M₀) = {limit:.3g}; a step below it follows "
             "the flow" if step > limit else
             f"δ = {step:g} is below GD's stability limit 2/λ_max(M₀) = {limit:.3g} at t = 0, but λ_max(M) changes as "
             "the features move; a smaller step follows the flow")
    return f"{recorder.rise_text()}, which the gradient flow never does: {where}"

