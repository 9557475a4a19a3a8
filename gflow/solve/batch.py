r"""S networks (different seeds, same data) trained in one batched computation: flow and gradient descent.

:func:`simulate_batch` and :func:`gradient_descent_batch` stack the S states along a leading dimension
(:class:`gflow.fields.batched.BatchedField`), so that every evaluation of eqs. (10)/(11) is one batched product
instead of S small ones, and return one :class:`gflow.Solution` per network, with the same fields, statuses and
theory quantities that :func:`gflow.simulate` / :func:`gflow.gradient_descent` give for that network alone (each
seed is recorded by its own :class:`~gflow.solve._record.Recorder` reading its own row of the batched state).

Error control (adaptive methods).  The seeds share one time step.  The step is accepted only if *every* seed
meets the tolerance: the error norm is :func:`max_seed_rms_norm`, the maximum over seeds of each seed's RMS
scaled error (the norm an individual run uses).  The plain RMS over the whole batched state would average a
seed with a large error against S − 1 seeds with small ones and let it exceed the tolerance by up to √S.  A
seed's trajectory is therefore at least as accurate as its individual run (its steps are never longer than
the ones that seed alone would accept at the same state); it is not bit-identical to it, since the shared steps
differ.  scipy's RK45/DOP853 do not accept a custom norm: they are run on the flattened state with rtol and atol
divided by √S, which makes their global RMS test imply the per-seed one (Σ_s RMS_s² ≤ S·RMS²_global).

Speed.  A batch saves the per-step work that does not grow with S (the solver's bookkeeping, kernel launches),
which dominates on a GPU at m ~ 1000.  On a CPU at that size each seed's evaluation is already compute- and
cache-bound: expect about the speed of S separate runs (``benchmarks/bench_batch.py`` measures it), and use the
batch API there for convenience (one call), not for speed.

Failures.  Gradient descent and fixed-step flows isolate them: a seed that diverges or turns non-finite after t = 0 is
frozen at its last state (its partial trajectory, status and message as its own run has them) and the others finish, bit
for bit as alone.  Adaptive methods share their steps, so a step limit, a stall, a step-size collapse or a non-finite
seed stops every seed (the message names the seed).  A seed whose loss overflows already at t = 0 is a ValueError naming
it, as for its own run.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .._validate import check_choice, check_flag, check_positive_float, check_run_flags, describe
from ..fields import RK_FLOPS_PER_STATE_ENTRY, Problem, make_field
from ..fields.batched import BatchedField
from ..model.network import Network
from ..solution import GFlowWarning, Solution
from ._record import (Abort, Monitor, Recorder, check_recording_memory, check_threads, float64_advice, guarded_solve,
                      interrupted_message, limit_stop_message, raise_if_interrupted, snapshot_bytes, solve_threads,
                      states_activation_fault)
from .checkpoint import stored_layout
from .expint import explicit_method
from .gd import DIVERGE_FACTOR, _loss_rise, failure_end, gd_schedule, note_unstable_step
from .ode import (
    DEFAULT_ATOL,
    DEFAULT_METHOD,
    EXPINT_METHODS,
    FILIPPOV_METHODS,
    FIXED_STEP_METHODS,
    METHODS,
    NATIVE_METHODS,
    SCIPY_METHODS,
    SLIDING_METHODS,
    TORCHDIFFEQ_FIXED,
    _chunks,
    _event_methods_take,
    _fixed_grid,
    _make_solution,
    _resolve_auto,
    check_interval,
    warn_lossy_feature_space,
    check_solver_args,
    check_started,
    default_rtol,
    fixed_step_guard,
    monitor_hints,
    observed_field,
    odeint_or_abort,
    record_chunk,
    record_tol,
)

BATCH_SCIPY_METHODS = ("RK45", "DOP853")
NORM_REASON = (
    "the seeds share one step; the error norm is the maximum over seeds of each seed's RMS scaled error, so the "
    "step is accepted only if every seed meets rtol/atol (a global RMS would let one seed exceed them by up to "
    "sqrt(S))"
)
SCIPY_REASON = (
    "scipy's error norm is the global RMS over the batched state and cannot be replaced; rtol and atol were "
    "divided by sqrt(S), so that the global test implies the per-seed one"
)


def networks(seeds: Iterable[int], **kwargs: Any) -> list[Network]:
    """One :class:`gflow.Network` per seed, all with the same other arguments: the input of the batch solvers.

    Args:
        seeds: network seeds, e.g. ``range(8)``.
        **kwargs: every other :class:`gflow.Network` argument (``d``, ``width``, ``activation``, ...).

    Example:
        >>> import gflow as gf
        >>> nets = gf.networks(range(3), d=5, width=8)
        >>> [net.seed for net in nets]
        [0, 1, 2]
    """
    if "seed" in kwargs:
        raise TypeError("networks() takes the seeds as its first argument; do not pass seed=")
    if isinstance(seeds, (int, np.integer, str, bytes, dict)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be an iterable of integers, e.g. range(8), got {describe(seeds)}")
    try:
        seeds = list(seeds)
    except TypeError as exc:  # (a 0-d tensor or array: iterable in type only)
        raise TypeError(f"seeds must be an iterable of integers, e.g. range(8), got {describe(seeds)}") from exc
    out = [Network(seed=s, **kwargs) for s in seeds]
    if not out:
        raise ValueError("seeds is empty; give at least one seed")
    return out


class MaxSeedRMSNorm:
    r"""Error norm of a batched state of shape (S, ...): max over seeds s of RMS(e_s) (see the module docstring).

    With S = 1 it is torchdiffeq's (and gflow's) RMS norm.  Call it on a tensor with S·L entries, the scaled
    error e/(atol + rtol·|y|) of the whole batch; it also counts, per seed, how often that seed set the norm
    (``limiting``: a per-seed share of the error control, for the record).

    Args:
        shape: the batched state's shape (S, ...).
    """

    def __init__(self, shape: Sequence[int]):
        shape = tuple(int(k) for k in shape)
        if len(shape) < 1 or shape[0] < 1:
            raise ValueError(f"shape must start with the number of seeds S >= 1, got {shape}")
        self.shape = shape
        self.S = shape[0]
        self.limiting = np.zeros(self.S, dtype=np.int64)
        self.last: int | None = None  # the seed that set the last norm
        #: where a stopped dop853/dopri5 batch's steps were capped by its stability guard: (seed index, ρ per seed,
        #: the guard's limit on h·ρ) (:func:`_stiff_seed`)
        self.stiff: tuple[int, list[float], float] | None = None

    def per_seed(self, tensor: torch.Tensor) -> torch.Tensor:
        """RMS of each seed's entries, (S,)."""
        e = tensor.reshape(self.S, -1)
        return e.abs().pow(2).mean(dim=1).sqrt()

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        rms = self.per_seed(tensor)
        k = int(torch.argmax(torch.nan_to_num(rms, nan=math.inf)))
        self.limiting[k] += 1
        self.last = k
        return rms.max()


def max_seed_rms_norm(shape: Sequence[int]) -> MaxSeedRMSNorm:
    """The per-seed error norm for a batched state of ``shape`` = (S, ...): max_s RMS(e_s).

    A standalone callable (tensor → 0-d tensor) for any Runge–Kutta engine with a ``norm`` hook, e.g.
    torchdiffeq's ``options={"norm": max_seed_rms_norm(y0.shape)}``.
    """
    return MaxSeedRMSNorm(shape)


# ---------------------------------------------------------------------------------------------------------
# input checks


_SAME = (
    ("width", lambda n: n.m, "width m"),
    ("d", lambda n: n.d, "input dimension d"),
    ("D", lambda n: n.D, "embedding dimension D"),
    # a custom activation is known by its object: same-named ones may differ (every seed ran nets[0]'s)
    ("activation", lambda n: n.activation.spec() if n.activation.builtin else n.activation, "activation"),
    ("scaling", lambda n: n.scaling.spec(), "scaling"),  # (a custom one: its exponents, whatever its name)
    ("embedding", lambda n: n.embedding.spec().get("kind"), "embedding kind"),
    ("dtype", lambda n: n.dtype, "dtype"),
    ("device", lambda n: n.device, "device"),
)


def check_networks(nets: Any) -> list[Network]:
    """A non-empty sequence of compatible networks (same m, d, D, activation, scaling, embedding kind, dtype,
    device); the error names the first offending index."""
    if isinstance(nets, Network):
        raise TypeError("nets must be a sequence of gf.Network (one per seed), got a single Network; "
                        "use gf.simulate for one network, or gf.networks(seeds, ...) to build several")
    try:
        nets = list(nets)
    except TypeError:
        raise TypeError(f"nets must be a sequence of gf.Network, got {describe(nets)}") from None
    if not nets:
        raise ValueError("nets is empty; give at least one gf.Network (e.g. gf.networks(range(8), ...))")
    for i, net in enumerate(nets):
        if not isinstance(net, Network):
            raise TypeError(f"nets[{i}] must be a gf.Network, got {describe(net)}")
    ref = nets[0]
    for i, net in enumerate(nets[1:], start=1):
        for _, get, what in _SAME:
            a, b = get(ref), get(net)
            if a != b:
                raise ValueError(f"nets[{i}] has {what} {b!r} but nets[0] has {a!r}; the networks of one batch "
                                 "must share width, d, D, activation, scaling, embedding kind, dtype and device")
    return nets


def _fields(nets, X, y, X_test, y_test, space, interval, integrals, per_entry: float = 0.0,
            checkpoint: Any = None) -> BatchedField:
    problems = [Problem.from_data(net, X, y, X_test, y_test) for net in nets]
    layout = stored_layout(checkpoint)  # (a checkpoint written before the layout choice: its (2, m, n) layout)
    # one space for all seeds: make_field's "auto" rule depends only on m, n and D, which they share; per_entry
    # as for the individual runs (gf.simulate: RK_FLOPS_PER_STATE_ENTRY, gradient descent: 0)
    return BatchedField([observed_field(make_field(p, space, per_entry, layout), interval, integrals)
                         for p in problems])


def _batch_info(nets, s: int, **extra) -> dict:
    return {"size": len(nets), "index": s, "seeds": [int(n.seed) for n in nets], **extra}


def _seed_solutions(bf: BatchedField, recorders, statuses, messages, stats, config_of) -> list[Solution]:
    for s, rec in enumerate(recorders):  # (t = 0 unrecorded: name the seed whose loss overflows there, not seed 0)
        pb = bf.problems[s]
        if not rec.t and not math.isfinite(float(0.5 * torch.sum((pb.outputs(pb.H0) - pb.y) ** 2))):
            check_started(rec, pb, statuses[s], messages[s], f" [seed index {s}, network seed {pb.net.seed}]")
    sols = []
    for s, rec in enumerate(recorders):
        sols.append(_make_solution(rec, bf.problems[s], statuses[s], messages[s], stats[s], config_of(s)))
    return sols


# ---------------------------------------------------------------------------------------------------------
# the flow


def simulate_batch(
    nets: Sequence[Network],
    X: Any,
    y: Any,
    t1: float | None = None,
    saveat: Any = None,
    *,
    method: str = DEFAULT_METHOD,
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
    threads: int | None = None,
) -> list[Solution]:
    r"""Integrate the gradient flows (eq. (10), or eq. (11) in feature space) of S networks in one batched solve.

    The arguments ``X``, ``y``, ``t1``, ``saveat``, ``rtol``, ``atol``, ``step``, ``max_steps``,
    ``max_wall_time``, ``X_test``, ``y_test``, ``space``, ``features_at``, ``weights_at``, ``options``,
    ``interval``, ``integrals``, ``progress``, ``warn`` and ``threads`` mean what they mean in :func:`gflow.simulate`,
    with ``nets`` (S compatible networks, e.g. ``gf.networks(range(8), d=20, width=1024)``) in place of ``net``;
    the data are shared (``threads``: one for the batch where its S evaluations cost fewer flops together than
    :data:`~gflow.solve._record.SERIAL_BELOW_FLOPS`).  It differs from :func:`gflow.simulate` in:

    * ``method``: the default is ``"dop853"``, not ``"auto"``.  ``"auto"`` is accepted: it picks what
      :func:`gflow.simulate` picks (``"dop853"``, or ``"dopri5"`` at 1e-4 ≤ rtol ≤ 1e-3), with its explicit method in
      place of ``"dop853+exprk4"``/``"dopri5+exprk4"``, and records the reason in
      ``sol.config["solver"]["auto"]``; for a kinked σ (ReLU, leaky ReLU), where :func:`gflow.simulate` picks
      ``"filippov"``/``"sliding"``, it raises a ValueError: run those seeds separately with
      :func:`gflow.simulate`.  Accepted methods: the native and torchdiffeq Runge–Kutta methods and scipy's
      ``"RK45"``/``"DOP853"``.  Not accepted: ``"exprk4"``, ``"dop853+exprk4"``, ``"dopri5+exprk4"``,
      ``"filippov"``, ``"sliding"`` (they follow one network's linearizations or activation events) and
      ``"Radau"``, ``"BDF"``, ``"LSODA"`` (see below).
    * ``checkpoint``, ``checkpoint_every``, ``keep_checkpoint``: as in :func:`gflow.simulate` (gflow's native
      methods only), for the whole batch: a stopped batch resumes bit for bit; the checkpoint holds every seed's
      network, so it is refused for another list of networks.  ``error_estimate`` does not exist here (a
      TypeError): estimate the error of individual :func:`gflow.simulate` runs instead.

    Error control: the seeds share one step; adaptive torchdiffeq methods accept it only if every seed meets
    rtol/atol (error norm :func:`max_seed_rms_norm`: the max over seeds of each seed's RMS scaled error, since a
    global RMS would let one seed exceed the tolerance by up to √S).  scipy's ``RK45``/``DOP853`` cannot take a
    custom norm: they run with rtol and atol divided by √S, which implies the per-seed test.  ``Radau``, ``BDF``
    and ``LSODA`` are refused (their dense Jacobian of the batched state costs S² times that of one seed); so are
    adaptive methods for a σ with a kink (ReLU: their steps collapse there) — fixed steps (``euler``, ``rk4``
    with ``step``) run it.  The
    reason is stored in ``sol.config["solver"]["batch"]``, with ``limiting_share``: the fraction of error-norm
    evaluations at which that seed had the largest error.

    Failures: with a fixed-step method a seed that diverges (its loss past 1e10·L₀) or turns non-finite is frozen
    at its last state with the status, message, partial trajectory and counts of its own run, and the other seeds
    go on, unchanged (a loss that overflows at t = 0 is a ValueError naming the seed, as for its own run).  The
    wall-time budget and Ctrl-C stop every seed still running.  With an
    adaptive method the seeds share their steps, so a non-finite seed, the step limit, a stall, a step-size
    collapse, the wall-time budget and Ctrl-C stop every seed with that status (the message names the seeds that
    turned non-finite or, for the step limit, stall or collapse, the seed that limited the shared steps); every
    seed keeps its partial trajectory.

    Returns:
        a list of S :class:`gflow.Solution`, one per network, in the order of ``nets``.  ``stats`` hold the
        shared counts (evaluations and steps of the batch; ``wall_time`` of the whole batched solve), except for a
        frozen seed, whose counts are those at which it stopped.

    Raises:
        TypeError, ValueError: bad input (an incompatible network is named by its index).

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=10, d=20, seed=0)
        >>> sols = gf.simulate_batch(gf.networks(range(3), d=20, width=64), X, y, t1=5.0, rtol=1e-6)
        >>> [bool(s.ok and s.loss[-1] < s.loss[0]) for s in sols]
        [True, True, True]
    """
    nets = check_networks(nets)
    check_run_flags(warn, checkpoint_every, keep_checkpoint)
    threads = check_threads(threads, warn)
    net = nets[0]
    rtol = default_rtol(net.dtype, method) if rtol is None else rtol
    atol = DEFAULT_ATOL if atol is None else atol
    S = len(nets)
    auto_reason = None
    if isinstance(method, str) and method == "auto":
        method, auto_reason = _resolve_batch_auto(net, X, y, t1, saveat, rtol, step, space)
    check_choice(method, "method", METHODS + ("auto",))
    kinked = not net.activation.smooth
    # (a kinked σ's batch ran the default dop853 to a stall, whose advice — error_estimate, filippov, sliding — the
    # batch refuses; the filippov refusal sent it back to dop853)
    per_network = ("method='filippov' or 'sliding': the Filippov flow, with error_estimate=True" if kinked and
                   _event_methods_take(net.activation) else  # (ReLU-type kinks only: a hardtanh is refused there)
                   "method='euler', step=0.05, error_estimate=True: steps h, h/2, h/4 with an estimate of the loss "
                   "error")
    kink_ways = ("method='euler' or 'rk4' with a step here (fixed steps: a failing seed is frozen, the others go "
                 f"on), gf.gradient_descent_batch, or gf.simulate per network ({per_network})")
    if method in EXPINT_METHODS or method in FILIPPOV_METHODS or method in SLIDING_METHODS:
        raise ValueError(
            f"method {method!r} is not available for batched seeds: it integrates one network's flow with its own "
            "linearizations or activation events; use gf.simulate per network, or "
            + ("method='euler' or 'rk4' with a step here, or gf.gradient_descent_batch" if kinked else
               "a Runge–Kutta method here (e.g. method='dop853')")
        )
    if kinked and method not in FIXED_STEP_METHODS:
        raise ValueError(
            f"method {method!r} is adaptive, and the activation {net.activation.name!r} has a kink, where the flow "
            "chatters and adaptive steps collapse (a stall; alone, gf.simulate then stops the run): for a batch use "
            + kink_ways
        )
    if method in SCIPY_METHODS and method not in BATCH_SCIPY_METHODS:
        raise ValueError(
            f"method {method!r} is not available for batched seeds: it forms a dense finite-difference Jacobian of "
            f"the whole batched state (S² = {S * S} times the cost of one seed's); use dopri5/dopri8/DOP853, or "
            "gf.simulate per network"
        )
    rtol, atol, step, max_steps, max_wall_time, opts, t1, grid, ft, wt = check_solver_args(
        net, method, rtol, atol, step, max_steps, max_wall_time, options, t1, saveat, features_at, weights_at,
        batch=True)
    interval = check_interval(interval, net)
    integrals = check_flag(integrals, "integrals")
    if checkpoint is not None and method not in NATIVE_METHODS:
        raise ValueError(f"checkpoint/resume needs gflow's native engine (method in {NATIVE_METHODS}), got method "
                         f"{method!r}; use e.g. method='dop853' or method='rk4'")
    bf = _fields(nets, X, y, X_test, y_test, space, interval, integrals, RK_FLOPS_PER_STATE_ENTRY, checkpoint)
    warn_lossy_feature_space(bf.problems[0], bf.fields[0], "simulate_batch", warn)

    tol = record_tol(grid)
    pb = bf.problems[0]
    check_recording_memory(len(grid), pb.n, pb.n_test, S, what="output times (saveat)",
                           advice="give fewer output times, or fewer seeds per batch",
                           snapshots=snapshot_bytes(pb, len(ft), len(wt)))
    recorders = [Recorder(f, ft, wt, time_tol=tol, interval=interval, **fixed_step_guard(method, step, grid, rtol))
                 for f in bf.fields]
    batch_rec = _BatchRecorder(bf, recorders)
    monitor = _BatchMonitor(t1, max_steps, max_wall_time, **monitor_hints(method, net.activation, batch=True),
                            dtype=net.dtype, adaptive=method not in FIXED_STEP_METHODS,
                            kinked=not net.activation.smooth)
    if method in FIXED_STEP_METHODS:  # (the same steps as alone: a failing seed is frozen, the others go on)
        monitor.freezer = batch_rec.freezer = _Freezer(bf, recorders, monitor)
    freezer = monitor.freezer
    norm = max_seed_rms_norm(bf.state_shape)
    status, message = "success", f"reached t1 = {t1:g}"
    recorders[0].attach_progress(progress, t1, f"flow ({method}, {S} seeds)")
    ckpt = resume = None
    if checkpoint is not None:
        settings = {"method": method, "rtol": rtol, "atol": atol, "step": step, "t1": t1, "saveat": grid.tolist(),
                    "features_at": ft.tolist(), "weights_at": wt.tolist(), "options": opts, "space": bf.space,
                    "layout": bf.layout, "interval": list(interval), "integrals": bool(integrals)}
        ckpt, resume = _open_batch_checkpoint(checkpoint, checkpoint_every, keep_checkpoint, "flow_batch", nets, bf,
                                              settings, batch_rec, monitor)
    t_start = time.perf_counter()
    threads = solve_threads(S * bf.fields[0].flops_per_eval(), net.device, threads)
    with guarded_solve(monitor, ckpt, threads):
        try:
            if method in SCIPY_METHODS:
                _run_scipy_batch(bf, grid, method, rtol / math.sqrt(S), atol / math.sqrt(S), opts, batch_rec, monitor)
            elif method in NATIVE_METHODS:
                _run_native_batch(bf, grid, method, rtol, atol, step, opts, batch_rec, monitor, norm, ckpt, resume,
                                  freezer)
            else:
                _run_torchdiffeq_batch(bf, grid, method, rtol, atol, step, opts, batch_rec, monitor, norm)
        except Abort as exc:
            status, message = exc.status, exc.message
            if status == "nonfinite" and recorders[0].fixed_step is not None:  # (as gf.simulate: the step's limit,
                tight = min(recorders, key=lambda rec: rec.stability_limit0())  # the seed with the lowest)
                message = f"{message}; {tight.step_advice()}"
            if S > 1 and exc.status in ("step_size_collapse", "stalled", "max_steps"):
                message = _limited_by(message, norm, nets)
        finally:
            for rec in recorders:  # (the progress bar moves on from a frozen seed: see _Freezer.stop)
                rec.close()
    wall = time.perf_counter() - t_start
    if ckpt is not None:
        ckpt.finish(status == "success")

    outcomes = {} if freezer is None else freezer.outcome  # {seed index: (status, message, counts)}: frozen seeds
    if status != "success" and freezer is not None:  # each seed still running keeps its last accepted state
        for s, rec in enumerate(recorders):
            if s not in outcomes:
                freezer.keep_partial(s)
    elif status != "success":
        if monitor.partial is not None and monitor.partial[0] > recorders[0].t[-1] * (1 + 1e-12):
            try:  # keep the last accepted state, unless it is itself non-finite
                batch_rec.record(monitor.partial[0], monitor.partial[1])
            except Abort:
                pass
        for rec in recorders:
            rec.ensure_final_features()
    running = [s for s in range(S) if s not in outcomes]
    if status == "interrupted" and running:
        message = interrupted_message(recorders[running[0]].t[-1], t1, monitor.n_steps, ckpt)
    message = limit_stop_message(message, status, ckpt)

    adaptive = method not in FIXED_STEP_METHODS
    total = max(1, int(norm.limiting.sum()))
    stats = [{
        "n_f_evals": monitor.n_f_evals,
        "n_steps": monitor.n_steps,
        "n_accepted": monitor.n_accepted,
        "n_rejected": monitor.n_rejected if method not in SCIPY_METHODS else -1,
        "wall_time": wall + monitor.wall_before,
        "flops_per_eval": f.flops_per_eval(),
        "torch_threads": threads,
        "last_step": monitor.last_dt if math.isfinite(monitor.last_dt) else None,
        "resumed": resume is not None,
    } for f in bf.fields]
    statuses, messages = [status] * S, [message] * S
    for s, (st, msg, counts) in outcomes.items():
        statuses[s], messages[s] = st, msg
        stats[s].update(counts)
    if method in SCIPY_METHODS:
        error_control = {"norm": "global RMS (scipy)", "reason": SCIPY_REASON, "rtol_used": rtol / math.sqrt(S),
                         "atol_used": atol / math.sqrt(S)}
    elif adaptive:
        error_control = {"norm": "max over seeds of per-seed RMS", "reason": NORM_REASON}
    else:
        error_control = {"norm": None, "reason": "fixed step: the same steps as an individual run"}

    def config_of(s: int) -> dict:
        extra = dict(error_control)
        if adaptive and method not in SCIPY_METHODS:
            extra["limiting_share"] = float(norm.limiting[s] / total)
        return {
            "kind": "flow",
            "network": nets[s].spec(),
            "space": bf.space,
            "solver": {
                "method": method, "rtol": rtol, "atol": atol, "step": step, "max_steps": max_steps,
                "max_wall_time": max_wall_time, "t1": t1, "saveat": grid.tolist(), "features_at": ft.tolist(),
                "weights_at": wt.tolist(), "options": opts, "space": space, "interval": list(interval),
                "integrals": bool(integrals), "batch": _batch_info(nets, s, shared_gram=bf.shared_gram, **extra),
                **({"auto": auto_reason} if auto_reason is not None else {}),
            },
        }

    # a solve whose saved loss rose (fixed-step, or adaptive with smooth σ): recorded per seed, one warning
    smooth = nets[0].activation.smooth
    status_of = dict(zip(map(id, recorders), statuses))
    rises = _note_rises(recorders, [st != "diverged" for st in statuses],
                        lambda rec: rec.rise_warning(method, rtol, smooth, status_of[id(rec)] == "success"), messages,
                        stats)
    sols = _seed_solutions(bf, recorders, statuses, messages, stats, config_of)
    raise_if_interrupted(monitor, status, sols, "gf.simulate_batch")
    failed = [s for s in range(S) if statuses[s] != "success"]
    if warn and failed and not outcomes:
        warnings.warn(f"gflow.simulate_batch stopped early for all {S} seeds [{status}]: {message}", GFlowWarning,
                      stacklevel=2)
    elif warn and failed:
        warnings.warn(f"gflow.simulate_batch: seed indices {failed} stopped early "
                      f"[{', '.join(sorted({statuses[s] for s in failed}))}]: {messages[failed[0]]}", GFlowWarning,
                      stacklevel=2)
    elif warn and rises:
        _warn_rises("simulate_batch", rises)
    return sols


def _note_rises(recorders, check, rise_of, messages: list, stats: list) -> dict:
    """{seed index: text} of the seeds with a warning, among those with ``check[s]``: ``rise_of(recorder)`` gives
    (text, stats) or None (:meth:`Recorder.fixed_step_warning`; GD's loss rise); the text is appended to the seed's
    message and the stats to its ``stats``."""
    rises = {}
    for s, rec in enumerate(recorders):
        noted = rise_of(rec) if check[s] else None
        if noted is not None:
            rises[s] = noted[0]
            messages[s] = f"{messages[s]}; warning: {noted[0]}"
            stats[s].update(noted[1])
    return rises


def _gd_rise(recorder, step: float) -> tuple[str, dict] | None:
    """GD's loss rise (:func:`gflow.solve.gd._loss_rise`) as :func:`_note_rises` takes it."""
    text = _loss_rise(recorder, step)
    return None if text is None else (text, {"loss_rise": list(recorder.loss_rise)})


def _warn_rises(name: str, rises: dict) -> None:
    """One warning for the seeds of :func:`_note_rises`, worded for the first of them."""
    s = min(rises)
    warnings.warn(f"gflow.{name}: seed indices {sorted(rises)}: for seed index {s}, {rises[s]}", GFlowWarning,
                  stacklevel=3)


def _resolve_batch_auto(net: Network, X, y, t1, saveat, rtol, step, space) -> tuple[str, str]:
    """``method="auto"`` for a batch: :func:`gflow.simulate`'s pick (:func:`gflow.solve.ode._resolve_auto`) where
    the batch runs it; its explicit method where that pick is exponential (exprk4 linearizes one network's flow);
    a ValueError for a kinked σ, whose flow needs the per-network filippov/sliding solvers.  Returns (method,
    reason), the reason recorded in ``sol.config["solver"]["auto"]`` as gf.simulate records it."""
    if not net.activation.smooth:
        raise ValueError(
            f"method='auto' is not available for a batch of networks with the activation {net.activation.name!r}, "
            "which has a kink: gf.simulate's 'auto' picks the per-network Filippov solvers ('filippov', or "
            "'sliding' for large m·n) there, and a batch cannot run them (adaptive Runge–Kutta methods stall on "
            "the kink); run the seeds separately with gf.simulate(net, X, y, ...) for each net, or train them "
            "with gf.gradient_descent_batch"
        )
    method, reason = _resolve_auto(net, X, y, t1, saveat, rtol, step, space)
    if method in EXPINT_METHODS:
        explicit, why = explicit_method(check_positive_float(rtol, "rtol"))
        method, reason = explicit, (f"{reason}; but {method!r} is not available for batched seeds (it linearizes "
                                    f"one network's flow): {why}")
    return method, reason


class _BatchRecorder:
    """Records every seed's row of the batched state with that seed's own Recorder."""

    def __init__(self, bf: BatchedField, recorders: list[Recorder]):
        self.bf = bf
        self.recorders = recorders
        self.freezer: _Freezer | None = None  # (fixed-step methods: a failing seed is frozen, the others recorded)

    # the interface of a Recorder that checkpoints use (gflow.solve.checkpoint): each seed's lists under "<s>/"
    def lengths(self) -> dict[str, int]:
        return {f"{s}/{k}": v for s, rec in enumerate(self.recorders) for k, v in rec.lengths().items()}

    def entries(self, start: dict[str, int], end: dict[str, int]) -> dict[str, list]:
        out = {}
        for s, rec in enumerate(self.recorders):
            p = f"{s}/"
            mine = {k[len(p):]: v for k, v in end.items() if k.startswith(p)}
            since = {k[len(p):]: v for k, v in start.items() if k.startswith(p)}
            out.update({p + k: v for k, v in rec.entries(since, mine).items()})
        return out

    def head_state(self) -> dict:
        return {"seeds": [rec.head_state() for rec in self.recorders]}

    def load_state_dict(self, state: dict, device=None) -> None:
        for rec, st in zip(self.recorders, state["seeds"]):
            rec.load_state_dict(st, device=device)

    def record(self, t: float, state: torch.Tensor) -> None:
        """Record every seed at t, or none of them (Abort) if any seed's loss is non-finite there; with a
        :class:`_Freezer` (fixed-step methods), after t = 0, every seed still running, a seed whose record fails
        (diverged, non-finite) being frozen instead."""
        freezer = self.freezer
        if freezer is not None and self.recorders[0].t:
            for s, rec in enumerate(self.recorders):
                if s not in freezer.outcome:
                    try:
                        rec.record(t, self.bf.seed_state(state, s))
                    except Abort as exc:
                        freezer.stop(s, exc.status, exc.message)
            return
        bad = []
        for s, (f, pb) in enumerate(zip(self.bf.fields, self.bf.problems)):
            loss = 0.5 * float(((pb.outputs(f.train_features(self.bf.seed_state(state, s))) - pb.y) ** 2).sum())
            if not math.isfinite(loss):
                bad.append(s)
        if bad:
            prev = self.recorders[0].t[-1] if self.recorders[0].t else 0.0
            raise Abort("nonfinite", f"the loss of seed indices {bad} became non-finite at t = {t:.6g}; the state "
                        f"was lost between t = {prev:.6g} and t; use {float64_advice(self.bf.problems[0].net.dtype)}a "
                        "smaller step or tighter tolerances")
        for s, rec in enumerate(self.recorders):
            rec.record(t, self.bf.seed_state(state, s))

    def record_many(self, ts, states: torch.Tensor) -> None:
        """:meth:`record` at each time of ``ts`` (a dense output's chunk of batched states), in order."""
        for t, state in zip(ts, states):
            self.record(t, state)


def _raise_nonfinite(dL: torch.Tensor, t: float, monitor: Monitor, bf: BatchedField | None = None,
                     state: torch.Tensor | None = None) -> None:
    """Stop an adaptive batch whose evaluation at ``state`` (of ``bf``) made ``dL`` non-finite; where σ or σ′ of a
    seed that did is non-finite at its finite features, the message says the activation is the cause, as the seed's
    own run says (it said "check the data scale", with the explicit methods' advice — an audit)."""
    bad = torch.nonzero(~torch.isfinite(dL)).flatten().tolist()
    if bf is not None and state is not None:  # (the failure path only: σ and σ′ at each such seed's features)
        rows = state.detach().reshape(bf.S, -1)
        for s in bad:
            fault = states_activation_fault(((t, bf.seed_state(rows, s), bf.fields[s]),))
            if fault is not None:
                raise Abort("nonfinite", f"the derivative of seed indices {bad} became non-finite, which stops every "
                            f"seed (they share their steps): {fault}")
    raise Abort("nonfinite", f"the state or its derivative of seed indices {bad} became non-finite near t = {t:.6g}, "
                "which stops every seed; check the data scale, "
                f"{'use float64, ' if float64_advice(dL.dtype) else ''}or {monitor.hint}")


def _hand_on_bar(recorders: list[Recorder], s: int, running: list[int]) -> None:
    """Pass the progress bar from seed s, frozen, to the first seed still ``running``: it advances with its holder's
    records, and stood at seed 0's stop."""
    if recorders[s].bar is not None and running:
        recorders[running[0]].bar, recorders[s].bar = recorders[s].bar, None


class _BatchMonitor(Monitor):
    """The batch's Monitor: with a :class:`_Freezer` (fixed-step methods), the non-finite evaluation that the
    engine reports here (:meth:`raise_nonfinite`, with the stage's time) freezes the seeds that caused it, as their
    own runs would have stopped, and the solve goes on while any seed is running."""

    freezer: _Freezer | None = None

    def raise_nonfinite(self, t: float | None = None, state: torch.Tensor | None = None, field=None) -> None:
        try:
            super().raise_nonfinite(t, state, field)  # (it raises)
        except Abort as exc:
            if self.freezer is None or not self.freezer.pending:
                raise
            # freeze the seeds with the message of their own runs' stop
            pending, self.freezer.pending = self.freezer.pending, []
            for s in pending:
                self.freezer.stop(s, exc.status, exc.message)


class _Freezer:
    """The seeds of a fixed-step batch that stopped (diverged, non-finite), frozen as gradient_descent_batch freezes
    them: their derivative is zero from then on (:meth:`mask`, one masked write per evaluation), their record ends as
    their own run's does (the last accepted state, :meth:`keep_partial`) with its status, message and counts
    (``outcome``), and the other seeds take the same steps as before; the last seed to stop ends the solve."""

    def __init__(self, bf: BatchedField, recorders: list[Recorder], monitor: Monitor):
        self.bf, self.recorders, self.monitor = bf, recorders, monitor
        self.frozen = torch.zeros(bf.S, dtype=torch.bool, device=bf.problems[0].net.device)
        self.outcome: dict[int, tuple[str, str, dict]] = {}
        self.pending: list[int] = []  # seeds non-finite in the current evaluation, frozen by the Monitor

    def mask(self, out: torch.Tensor, dL: torch.Tensor) -> bool:
        """Zero the derivative of the frozen seeds and of those non-finite now (kept in ``pending``); False where
        some seed is newly non-finite (the caller reports it: :meth:`_BatchMonitor.raise_nonfinite`)."""
        if self.outcome:
            out[self.frozen] = 0.0
            dL = dL.masked_fill(self.frozen, 0.0)
        if bool(torch.isfinite(dL).all()):
            return True
        self.pending = torch.nonzero(~torch.isfinite(dL)).flatten().tolist()
        out[self.pending] = 0.0
        return False

    def keep_partial(self, s: int) -> None:
        """Seed s's end as its own run's (gf.simulate): the last accepted state, unless it is non-finite or
        diverged, then H at the last recorded time."""
        rec, part = self.recorders[s], self.monitor.partial
        if part is not None and part[0] > rec.t[-1] * (1 + 1e-12):
            try:
                rec.record(part[0], self.bf.seed_state(part[1], s).clone())
            except Abort:
                pass
        rec.ensure_final_features()

    def stop(self, s: int, status: str, message: str) -> None:
        """Freeze seed s with its own run's status and message (a non-finite one with its step advice, as
        gf.simulate gives it) and counts; Abort once no seed is running."""
        rec, m = self.recorders[s], self.monitor
        if status == "nonfinite":  # (σ or σ′ non-finite at its finite features: the activation, as gf.simulate says)
            fault = self.activation_fault(s)
            message = fault if fault is not None else f"{message}; {rec.step_advice()}"
        _hand_on_bar(self.recorders, s, [k for k in range(self.bf.S) if k not in self.outcome and k != s])
        self.keep_partial(s)
        self.outcome[s] = (status, message, {
            "n_f_evals": m.n_f_evals, "n_steps": m.n_steps, "n_accepted": m.n_accepted, "n_rejected": m.n_rejected,
            "last_step": m.last_dt if math.isfinite(m.last_dt) else None})
        self.frozen[s] = True
        if len(self.outcome) == self.bf.S:
            raise Abort(status, message)

    def activation_fault(self, s: int) -> str | None:
        """:func:`~gflow.solve._record.flow_activation_fault` for seed s: its row of the failing stage, the state
        its recorder refused, its row of the last accepted state."""
        bf = self.bf

        def row(got):
            if got is None or not (got[2] is bf or getattr(got[2], "bf", None) is bf):
                return None
            return got[0], bf.seed_state(got[1].reshape(bf.S, -1), s), bf.fields[s]

        part = None if self.monitor.partial is None else (*self.monitor.partial, bf)
        return states_activation_fault((row(self.monitor.nonfinite_state), self.recorders[s].nonfinite_state,
                                        row(part)))

    def state_dict(self) -> dict:
        return {"frozen_outcome": {int(s): list(v) for s, v in self.outcome.items()}}

    def load_state_dict(self, loop: dict) -> None:
        self.outcome = {int(s): tuple(v) for s, v in loop.get("frozen_outcome", {}).items()}
        self.frozen[:] = False
        self.frozen[list(self.outcome)] = True


class _BatchFunc:
    """The batched field with counting, a finiteness check per evaluation and torchdiffeq's step callbacks."""

    def __init__(self, bf: BatchedField, monitor: Monitor, adaptive: bool):
        self.bf = bf
        self.monitor = monitor
        self.adaptive = adaptive

    def __call__(self, t, y):
        self.monitor.on_eval()
        out, dL = self.bf.rhs(y)
        freezer = self.monitor.freezer
        if freezer is not None:
            if not freezer.mask(out, dL):
                self.monitor.raise_nonfinite(float(t), y, self.bf)
            return out
        # L̇ reduces each seed's whole derivative, so S scalars tell whether any entry is NaN or inf
        if not bool(torch.isfinite(dL).all()):
            _raise_nonfinite(dL, float(t), self.monitor, self.bf, y)
        return out

    def callback_step(self, t0, y0, dt):
        if self.adaptive:
            self.monitor.proposed_dt = float(dt)
        else:
            self.monitor.partial = (float(t0), y0)
            self.monitor.on_step(float(t0), float(dt), True)

    def callback_accept_step(self, t0, y0, dt):
        self.monitor.partial = (float(t0), y0)
        self.monitor.on_step(float(t0), float(dt), True)

    def callback_reject_step(self, t0, y0, dt):
        self.monitor.on_step(float(t0), float(dt), False)


class _NativeBatchField:
    """The batched field seen as one field by gflow's native engine (:mod:`gflow.solve.rk`)."""

    def __init__(self, bf: BatchedField, monitor: Monitor):
        self.bf = bf
        self.monitor = monitor
        self.state_shape = tuple(bf.state_shape)

    def initial_state(self) -> torch.Tensor:
        return self.bf.initial_state()

    def jump_integrals(self) -> torch.Tensor | None:
        """Each seed's ∫η entry (:meth:`BatchedField.jump_integrals`), which the engine integrates by its
        positive-weight rule (without it a batch kept DOP853's weights: ∫η(1) = −0.026 where it is 0.167)."""
        return self.bf.jump_integrals()

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor):
        d, dL = self.bf.rhs(state)
        freezer = self.monitor.freezer
        if freezer is not None:  # (a non-finite probe: the engine reports it with the stage's time, see _Freezer)
            ok = freezer.mask(d, dL)
            out.copy_(d)
            return _Probe(0.0 if ok else math.nan)
        out.copy_(d)
        if not bool(torch.isfinite(dL).all()):
            _raise_nonfinite(dL, self.monitor.last_t, self.monitor, self.bf, state)
        return _Probe(dL.sum())


class _Probe:
    """What the native engine reads off an evaluation: a scalar that is finite iff the derivative is."""

    def __init__(self, probe: torch.Tensor):
        self.probe = probe


def _open_batch_checkpoint(path, every, keep, kind: str, nets, bf: BatchedField, settings: dict,
                           recorder: _BatchRecorder, monitor: Monitor):
    """:func:`gflow.solve.checkpoint.open_checkpoint` for a batch: the fingerprint holds every seed's network."""
    from .checkpoint import network_spec, open_checkpoint

    settings = dict(settings, networks=[network_spec(n) for n in nets])
    return open_checkpoint(path, every=every, keep=keep, kind=kind, problem=bf.problems[0], settings=settings,
                           recorder=recorder, monitor=monitor)


class _NormCheckpoint:
    """The batch's checkpointer as the native engine sees it: each checkpoint also holds the error norm's per-seed
    counts (a resumed batch reported ``limiting_share``, and named the seed that limited the steps, from its last
    segment only)."""

    def __init__(self, ckpt, norm: MaxSeedRMSNorm, freezer: _Freezer | None = None):
        self.ckpt, self.norm, self.freezer = ckpt, norm, freezer

    def __getattr__(self, name):
        return getattr(self.ckpt, name)

    def save(self, loop: dict) -> None:
        frozen = {} if self.freezer is None else self.freezer.state_dict()  # (the frozen seeds' outcomes)
        self.ckpt.save(dict(loop, norm_limiting=self.norm.limiting.tolist(), norm_last=self.norm.last, **frozen))


def _run_native_batch(bf, grid, method, rtol, atol, step, opts, recorder: _BatchRecorder, monitor: Monitor,
                      norm: MaxSeedRMSNorm, ckpt=None, resume=None, freezer: _Freezer | None = None):
    from . import rk

    field = _NativeBatchField(bf, monitor)
    adaptive = method not in FIXED_STEP_METHODS
    if ckpt is not None:
        ckpt = _NormCheckpoint(ckpt, norm, freezer)
    if resume is not None and "norm_limiting" in resume:
        norm.limiting[:] = resume["norm_limiting"]
        norm.last = resume["norm_last"]
    if resume is not None and freezer is not None:
        freezer.load_state_dict(resume)
    engine = rk.Engine(field, grid, method, rtol=rtol, atol=bf.atol_vector(atol) if adaptive else atol, step=step,
                       options=opts, recorder=recorder, monitor=monitor, norm=norm if adaptive else None,
                       checkpoint=ckpt)
    try:
        engine.run(resume)
    except Abort as exc:
        if adaptive and bf.S > 1 and exc.status in ("step_size_collapse", "stalled", "max_steps"):
            norm.stiff = _stiff_seed(engine, bf)
        raise


def _stiff_seed(engine, bf: BatchedField, iterations: int = 30) -> tuple[int, list[float], float] | None:
    """Where the stability guard of dop853/dopri5 (:meth:`gflow.solve.rk.Engine._stiff_safe`, h·ρ ≤ its limit) capped
    the shared step at the end (the controller proposed a longer one), the seed that set ρ: the largest of the
    spectral radii ρ_s of the seeds' Jacobians at the last accepted state, by one batched power iteration (its
    seed blocks are independent: each is normalised on its own).  Returns (seed index, ρ per seed, the limit); None
    where the error control, not the guard, set the step.  (The error norm's largest seed, which the message named,
    can be any seed there: a healthy one was named, and dropping it did not help.)"""
    limit, rho = engine._stiff_limit, max(engine.rho_h, engine.rho_p)
    if not (math.isfinite(limit) and rho > 0.0 and engine.h * rho > limit * (1 + 1e-9)):
        return None
    N, S = bf.N, bf.S
    y = engine.y.view(bf.state_shape)
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn((S, N), generator=g, dtype=torch.float64).to(y)
    f0 = bf.rhs(y)[0][:, :N]
    eps = math.sqrt(torch.finfo(y.dtype).eps) * torch.clamp(torch.linalg.vector_norm(y[:, :N], dim=1), min=1.0)
    yv, rho_s = y.clone(), torch.zeros(S, dtype=y.dtype, device=y.device)
    for _ in range(iterations):
        v = v / torch.clamp(torch.linalg.vector_norm(v, dim=1, keepdim=True), min=1e-300)
        yv[:, :N] = y[:, :N] + eps[:, None] * v
        w = (bf.rhs(yv)[0][:, :N] - f0) / eps[:, None]
        rho_s = torch.nan_to_num(torch.linalg.vector_norm(w, dim=1), nan=0.0, posinf=0.0)
        v = torch.where(rho_s[:, None] > 0, w, v)
    return int(torch.argmax(rho_s)), rho_s.tolist(), float(limit)


def _limited_by(message: str, norm: MaxSeedRMSNorm, nets) -> str:
    """``message`` with the seed that limited an adaptive batch's shared steps: the stiffest seed where the
    stability guard capped them (:func:`_stiff_seed`), else the seed that most often had the largest error."""
    if norm.stiff is not None:
        k, rho, limit = norm.stiff
        others = max((r for s, r in enumerate(rho) if s != k), default=0.0)
        why = (f"its Jacobian's spectral radius ρ ≈ {rho[k]:.3g} (the other seeds' at most {others:.3g}) held the "
               f"shared step at about {limit:g}/ρ = {limit / rho[k]:.3g} by the stability guard")
    elif norm.limiting.sum() > 0:
        k = int(np.argmax(norm.limiting))
        why = (f"it had the largest error in {norm.limiting[k] / norm.limiting.sum():.0%} of the error-norm "
               "evaluations")
    else:
        return message
    return (f"{message} [the batch's steps were limited by seed index {k} (network seed {nets[k].seed}): {why}; the "
            "seeds share their steps, so run it separately or drop it, and the others may finish]")


def _run_torchdiffeq_batch(bf, grid, method, rtol, atol, step, opts, recorder: _BatchRecorder, monitor: Monitor,
                           norm: MaxSeedRMSNorm):
    from torchdiffeq import odeint

    fixed = method in TORCHDIFFEQ_FIXED
    func = _BatchFunc(bf, monitor, adaptive=not fixed)
    if not fixed:
        atol = bf.atol_vector(atol)
    y = bf.initial_state()
    recorder.record(0.0, y)
    dev = y.device
    for chunk in _chunks(grid, y.numel() * y.element_size()):
        t = torch.as_tensor(chunk, dtype=torch.float64, device=dev)
        options = dict(opts)
        if fixed:
            fine = torch.as_tensor(_fixed_grid(chunk, step), dtype=torch.float64, device=dev)
            options["grid_constructor"] = lambda f, y0, tt, _g=fine: _g
        else:
            options["norm"] = norm
            options["step_t"] = t[-1:]
            monitor.landing_time = float(chunk[-1])
            if "first_step" not in opts and monitor.proposed_dt is not None:
                options["first_step"] = min(monitor.proposed_dt, float(chunk[-1] - chunk[0]))
        y = record_chunk(odeint_or_abort(odeint, func, y, t, method.removeprefix("torchdiffeq."), rtol, atol, options,
                                         monitor), chunk, recorder)
        monitor.partial = None


def _run_scipy_batch(bf, grid, method, rtol, atol, opts, recorder: _BatchRecorder, monitor: Monitor):
    import scipy.integrate as si
    from threadpoolctl import threadpool_limits

    from .ode import _scipy_loop

    shape = bf.state_shape
    y0 = bf.initial_state()
    recorder.record(0.0, y0)

    def fun(t, yflat):
        monitor.on_eval()
        y = torch.from_numpy(np.ascontiguousarray(yflat)).view(shape)
        out, dL = bf.rhs(y)
        if not bool(torch.isfinite(dL).all()):
            _raise_nonfinite(dL, float(t), monitor, bf, y)
        return out.reshape(-1).numpy()

    atol_v = bf.atol_vector(atol)
    if isinstance(atol_v, torch.Tensor):
        atol_v = atol_v.reshape(-1).numpy()
    with threadpool_limits(limits=1, user_api="blas"):
        solver = getattr(si, method)(fun, 0.0, y0.reshape(-1).numpy().copy(), float(grid[-1]), rtol=rtol,
                                     atol=atol_v, **opts)
        jump = bf.jump_integrals()
        _scipy_loop(solver, grid, shape, method, recorder, monitor, None if jump is None else jump.numpy())


# ---------------------------------------------------------------------------------------------------------
# gradient descent


def gradient_descent_batch(
    nets: Sequence[Network],
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
) -> list[Solution]:
    r"""Full-batch gradient descent (eq. (9)) of S networks on the same data, in one batched iteration.

    The arguments are those of :func:`gflow.gradient_descent`, with ``nets`` (S compatible networks) in place
    of ``net``; ``checkpoint``, ``checkpoint_every``, ``keep_checkpoint`` checkpoint the whole batch (every
    seed's state, status and record: a stopped batch resumes bit for bit).  Every seed takes exactly the steps its
    individual run takes, so each result equals that run up to rounding (the batched products sum in another
    order).

    Failures are per seed: a seed whose state or loss turns non-finite or whose loss grows past 1e10·L₀ stops
    with its own run's status and message (``"diverged"``, or ``"nonfinite"`` naming the activation) and its
    iterates up to the last one before the blow-up (also between saved steps, exactly as
    :func:`gflow.gradient_descent` records it), its state is frozen there, and the other seeds go on.  The
    wall-time budget stops every seed still running with ``"time_budget"``.

    Returns:
        a list of S :class:`gflow.Solution`, one per network, in the order of ``nets``.

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=10, d=20, seed=0)
        >>> gds = gf.gradient_descent_batch(gf.networks(range(2), d=20, width=64), X, y, step=0.5, steps=100)
        >>> [(g.status, float(g.t[-1])) for g in gds]
        [('success', 50.0), ('success', 50.0)]
    """
    nets = check_networks(nets)
    check_run_flags(warn, checkpoint_every, keep_checkpoint)
    threads = check_threads(threads, warn)
    net = nets[0]
    S = len(nets)
    step, steps, save_every, max_wall_time, t1, fk, wk, save_k = gd_schedule(
        step, steps, save_every, max_wall_time, features_at, weights_at)
    integrals = check_flag(integrals, "integrals")

    interval = check_interval(interval, net)
    bf = _fields(nets, X, y, X_test, y_test, space, interval, integrals, checkpoint=checkpoint)
    warn_lossy_feature_space(bf.problems[0], bf.fields[0], "gradient_descent_batch", warn)
    pb = bf.problems[0]
    check_recording_memory(len(save_k), pb.n, pb.n_test, len(nets), what="saved steps",
                           advice=f"save less often (save_every > {save_every}), or fewer seeds per batch",
                           snapshots=snapshot_bytes(pb, len(fk), len(wk)))
    recorders = [Recorder(f, fk * step, wk * step, time_tol=0.25 * step, interval=interval,
                          diverge_factor=DIVERGE_FACTOR) for f in bf.fields]
    monitor = Monitor(t1, steps + 1, max_wall_time, hint="use a smaller step or fewer steps", adaptive=False,
                      dtype=bf.problems[0].net.dtype)
    statuses = ["success"] * S
    messages = [f"took {steps} steps of size {step:g} (t = {t1:g})"] * S
    k_done = [0] * S
    active = list(range(S))  # seeds still iterating
    recorders[0].attach_progress(progress, t1, f"GD (δ = {step:g}, {S} seeds)")
    ckpt = resume = None
    if checkpoint is not None:
        # (times, as gf.gradient_descent's: its checkpoint, refused here, was also said to differ in features_at)
        settings = {"method": "gradient_descent", "step": step, "steps": steps, "save_every": save_every,
                    "features_at": (fk * step).tolist(), "weights_at": (wk * step).tolist(), "space": bf.space,
                    "layout": bf.layout, "interval": list(interval), "integrals": bool(integrals)}
        ckpt, resume = _open_batch_checkpoint(checkpoint, checkpoint_every, keep_checkpoint, "gd_batch", nets, bf,
                                              settings, _BatchRecorder(bf, recorders), monitor)
    threads = solve_threads(S * bf.fields[0].flops_per_eval(), net.device, threads)
    with guarded_solve(monitor, ckpt, threads):
        t_start = time.perf_counter()
        frozen = torch.zeros(S, dtype=torch.bool, device=net.device)
        k_start, next_save = 0, 1
        if resume is None:
            state = bf.initial_state()
            for s in range(S):
                try:
                    recorders[s].record(0.0, bf.seed_state(state, s).clone())
                except Abort as exc:  # (as gf.gradient_descent: a ValueError, naming the seed)
                    check_started(recorders[s], bf.problems[s], exc.status, exc.message,
                                  f" [seed index {s}, network seed {nets[s].seed}]")
            last_good = state.clone()
        else:  # every seed's state, status and last finite iterate as they were at the checkpoint
            state, last_good = resume["state"].clone(), resume["last_good"].clone()
            k_start, next_save = int(resume["k"]), int(resume["next_save"])
            statuses, messages, k_done = list(resume["statuses"]), list(resume["messages"]), list(resume["k_done"])
            active = list(resume["active"])
            frozen[[s for s in range(S) if s not in active]] = True

        def loop_state(k: int) -> dict:
            return {"method": "gradient_descent_batch", "k": k, "next_save": next_save, "state": state.clone(),
                    "last_good": last_good.clone(), "statuses": list(statuses), "messages": list(messages),
                    "k_done": list(k_done), "active": list(active)}

        def stop(s: int, status: str, message: str) -> None:
            statuses[s], messages[s] = status, message
            recorders[s].last_state = bf.seed_state(last_good, s).clone()
            recorders[s].ensure_final_features()
            active.remove(s)
            frozen[s] = True
            state[s] = last_good[s]  # freeze a finite state: its (zeroed) updates then stay finite
            _hand_on_bar(recorders, s, active)

        def record_or_stop(s: int, finite: bool, k_at: int, since: int) -> bool:
            """Record seed s at step ``k_at``, or stop it where its state (non-finite since step ``since``, its
            last recorded one) or its loss has blown up, as its own run stops (:func:`failure_end`: at its last
            iterate before that, "diverged", or "nonfinite" where σ or σ′ was the cause); True where recorded."""
            if finite:
                try:
                    recorders[s].record(k_at * step, bf.seed_state(state, s))
                    return True
                except Abort as exc:
                    if exc.status == "diverged":
                        why = None
                        message = exc.message
                    else:
                        why = f"(non-finite loss) before step {k_at}"
            else:
                why = f"(non-finite state) between steps {since} and {k_at}"
            if why is not None:
                message = (f"gradient descent diverged {why}: the step δ = {step:g} is far past the stability limit "
                           "2/λ_max(M); use a smaller step")
            status, seed_good = "diverged", bf.seed_state(last_good, s)
            bar, recorders[s].bar = recorders[s].bar, None  # (the bar goes on with the next seed's records)
            end = failure_end(bf.fields[s], recorders[s], seed_good, since, k_at, step, monitor)  # (its run's replay)
            recorders[s].bar = bar
            if end is not None:
                status, message, kept = end
                seed_good.copy_(kept)  # (frozen there by stop, and checkpointed so)
            stop(s, status, message)
            return False

        k = k_start
        try:
            for k in range(k_start + 1, steps + 1):
                if not active:
                    break
                monitor.n_accepted, monitor.last_t = k - 1, (k - 1) * step  # (what a time-budget message reports)
                monitor.on_eval()
                upd, _ = bf.rhs(state)
                if len(active) < S:
                    upd[frozen] = 0.0
                state.add_(upd, alpha=step)
                for s in active:
                    k_done[s] = k
                if k == save_k[next_save]:
                    next_save += 1
                    finite = torch.isfinite(state).all(dim=1).tolist()
                    for s in list(active):
                        record_or_stop(s, finite[s], k, int(save_k[next_save - 2]))
                    if next_save < len(save_k):
                        # the recorders keep views of `state` as their last state; give them the saved copy instead
                        last_good = state.clone()
                        for s in active:
                            recorders[s].last_state = bf.seed_state(last_good, s)
                    else:
                        last_good = state
                # after the step's records (as gf.gradient_descent: a checkpoint before them lost a row on resume)
                if ckpt is not None and ckpt.due():
                    ckpt.save(loop_state(k))
            if ckpt is not None and ckpt.keep:  # the finished batch, for keep_checkpoint=True
                ckpt.save(loop_state(k))
        except Abort as exc:  # the wall-time budget: every seed still running stops
            if ckpt is not None:  # (before the seeds are stopped: they resume as running)
                ckpt.save(loop_state(k - 1))
            if active and k - 1 > int(save_k[next_save - 1]):  # the last step taken, also between saved steps (as GD)
                finite = torch.isfinite(state).all(dim=1).tolist()
                last_good = last_good.clone()
                # a seed whose iterates had diverged by then stops as "diverged", as it would have at its next saved
                # step, not "time_budget" (advised to raise max_wall_time at a loss of 1e33·L₀); its last saved
                # state stays the end
                for s in list(active):
                    if record_or_stop(s, finite[s], k - 1, int(save_k[next_save - 1])):
                        last_good[s] = state[s]
            for s in list(active):
                stop(s, exc.status, exc.message)
        finally:
            for rec in recorders:  # (the progress bar moves on from a frozen seed: see stop)
                rec.close()
    wall = time.perf_counter() - t_start
    if ckpt is not None:  # (a batch whose seeds all finished or diverged is done)
        ckpt.finish("time_budget" not in statuses and "interrupted" not in statuses)
    messages = [interrupted_message(recorders[s].t[-1], t1, k_done[s], ckpt) if st == "interrupted" else
                limit_stop_message(msg, st, ckpt) for s, (st, msg) in enumerate(zip(statuses, messages))]
    # (per seed, as its own run counts them: one evaluation per step; the batch's count was each seed's, 400 for a
    # seed that diverged after 7 steps)
    stats = [{
        "n_f_evals": k_done[s], "n_steps": k_done[s], "n_accepted": k_done[s], "n_rejected": 0,
        "wall_time": wall + monitor.wall_before, "flops_per_eval": f.flops_per_eval(), "last_step": step,
        "resumed": resume is not None, "torch_threads": threads,
    } for s, f in enumerate(bf.fields)]

    def config_of(s: int) -> dict:
        return {
            "kind": "gd",
            "network": nets[s].spec(),
            "space": bf.space,
            "solver": {"method": "gradient_descent", "step": step, "steps": steps, "save_every": save_every,
                       "features_at": (fk * step).tolist(), "weights_at": (wk * step).tolist(),
                       "max_wall_time": max_wall_time, "space": space, "interval": list(interval),
                       "integrals": bool(integrals),
                       "batch": _batch_info(nets, s, shared_gram=bf.shared_gram, norm=None,
                                            reason="per-seed GD steps; a diverging seed is frozen and the others "
                                                   "go on")},
        }

    # a saved loss that rose: as gf.gradient_descent, per seed, one warning
    rises = _note_rises(recorders, [st == "success" for st in statuses], lambda rec: _gd_rise(rec, step), messages,
                        stats)
    messages = [note_unstable_step(rec, step, st, msg, sts) for rec, st, msg, sts in zip(recorders, statuses,
                                                                                         messages, stats)]
    sols = _seed_solutions(bf, recorders, statuses, messages, stats, config_of)
    raise_if_interrupted(monitor, "interrupted" if "interrupted" in statuses else "success", sols,
                         "gf.gradient_descent_batch")
    failed = [s for s in range(S) if statuses[s] != "success"]
    if warn and failed:
        warnings.warn(f"gflow.gradient_descent_batch: seed indices {failed} stopped early "
                      f"[{', '.join(sorted({statuses[s] for s in failed}))}]: {messages[failed[0]]}", GFlowWarning,
                      stacklevel=2)
    elif warn and rises:
        _warn_rises("gradient_descent_batch", rises)
    return sols


__all__ = ["BATCH_SCIPY_METHODS", "MaxSeedRMSNorm", "check_networks", "gradient_descent_batch", "max_seed_rms_norm",
           "networks", "simulate_batch"]
