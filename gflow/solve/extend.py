r"""Continue a finished run to a longer horizon: one :class:`~gflow.Solution` over [0, new t1].

A run's file holds its final weights, its data and its configuration, and the flow is autonomous: from
W(t₀) the same field integrated to t1 is the same flow as one run to t1.  What a plain new run from W(t₀) would
lose is its reference to t = 0: the running integrals ∫₀ᵗ (·) ds (EQUATIONS.md §9), the movements
(feature, kernel and weight movement measured from H₀, M₀ and W₀) and L₀ of the bounds.  :func:`extend` starts the
field at the run's end with its integrals so far as the initial values of the integral states, has the recorder
measure from the original references (:meth:`gflow.solve._record.Recorder.refer_to`) and glues the two pieces.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._validate import arg, arg_eq, check_positive_float, check_positive_int, check_times, describe, is_int
from ..fields import Problem, make_field
from ..model.network import Network
from ..solution import Interrupted, Solution, as_solution
from ._record import Recorder, rise_words
from .ode import EXPINT_METHODS, FILIPPOV_METHODS, FIXED_STEP_METHODS, METHODS, SLIDING_METHODS, default_saveat

#: the statuses a run may be continued from: it reached t1, or a limit or Ctrl-C stopped it at an accepted state.
#: A run that ended "nonfinite", "diverged", "stalled", "step_size_collapse" or "failed" is refused: its last state
#: is suspect, or the same settings would stop again at once.
CONTINUABLE_STATUSES = ("success", "time_budget", "max_steps", "interrupted")

#: the time-series fields of a Solution (first axis: its saved times), glued old rows + new rows
_SERIES = ("loss", "residual", "output", "test_output", "test_loss", "test_error", "test_sign_error", "eta",
           "eta_bar", "mu", "nu", "lam_min_M", "lam_max_M", "dL", "feature_movement", "feature_movement_test",
           "kernel_movement", "weight_movement", "moved_fraction", "int_eta", "int_mu", "int_nu", "int_lam_min_M",
           "int_sqrt_abs_dL", "int_abs_dL")
#: statistics that add up over the pieces
_SUMMED = ("n_f_evals", "n_steps", "n_accepted", "n_rejected", "wall_time")


def _refuse_methods(method: str) -> str | None:
    """Why a flow of ``method`` cannot be continued, or None."""
    if method in FILIPPOV_METHODS + SLIDING_METHODS:
        return (f"method {method!r} cannot be continued: its state includes the pairs sliding on the kink h = 0, "
                "which a Solution does not hold; repeat the run to the longer t1 instead")
    if method in EXPINT_METHODS:
        return (f"method {method!r} cannot be continued: its phases and hand-over times (stats['switch_time'], "
                "['phase_times']) belong to one run; pass method='dop853' (or another of gflow's native methods) to "
                "continue it with an explicit method, or repeat the run to the longer t1")
    if method not in METHODS:
        return f"method {method!r} is not a gflow method (one of {METHODS})"
    return None


def extend(
    source: "Solution | str | Path",
    t1: float | None = None,
    *,
    steps: int | None = None,
    saveat: Any = None,
    save_every: int | None = None,
    features_at: Any = None,
    weights_at: Any = None,
    method: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    step: float | None = None,
    max_steps: int | None = None,
    max_wall_time: float | None = None,
    options: dict | None = None,
    progress: bool | None = False,
    warn: bool = True,
    threads: int | None = None,
    checkpoint: Any = None,
    checkpoint_every: float = 60.0,
    keep_checkpoint: bool = False,
    device: Any = None,
    activation: Any = None,
    embedding: Any = None,
) -> Solution:
    r"""Continue a run (a flow to ``t1``, or gradient descent ``steps`` more steps) from its end, as one run.

    ``gf.extend(gf.simulate(net, X, y, t1=500), t1=5000)`` is the flow to t = 5 000: the original's rows followed by
    the new ones (t continuing, the joint saved once), the running integrals ∫₀ᵗ continuing from the original's
    final values, the movements measured from the original t = 0 (H₀, M₀, W₀), statistics (evaluations, steps, wall
    time) summed, and ``config["extended"]`` recording each piece; :func:`gflow.certify` of the result certifies the
    whole run (L₀ is the original's).  How close it is to one run to the longer horizon:

    * gradient descent: bit for bit (loss, residual, integrals, movements) where the run is in weight space; in
      feature space the same but the weight movement, the test outputs and ``W_final``, which the continued run
      forms from the final weights instead of the original's A = ∫P (a Solution does not hold A): to rounding;
    * a fixed-step method (``rk4``, ...) whose step lands on the joint: to rounding (the same steps);
    * an adaptive method (``dop853``, ...): within its tolerance (its steps restart at the joint).

    Args:
        source: a :class:`gflow.Solution` or the path of a saved one, saved with its weights
            (``include_weights=True``, the default of :meth:`Solution.save`; a sweep keeps them with
            ``keep_weights=True``).  Its status must be one of :data:`CONTINUABLE_STATUSES`: a run stopped by
            ``max_wall_time``, ``max_steps`` or Ctrl-C ended at an accepted state of the flow, and continuing it is
            what a larger limit would have done (the message records where it stopped); a run that diverged, turned
            non-finite, stalled or failed is refused.
        t1: flows: the new final time, beyond the run's last saved time ``source.t[-1]``.
        steps: gradient descent: how many more steps (of the run's δ).
        saveat: flows: the continuation's output times: times in (t[-1], t1], or a count k (an int: k times evenly
            spaced over (t[-1], t1], on the continuation's multiples of a fixed-step method's step: at most one a
            step); t1 is always saved.  Default: the times :func:`gflow.default_saveat` gives the run to the new
            t1, beyond t[-1] (on multiples of a fixed step).
        save_every: gradient descent: save the steps that are multiples of this, counted from the start of the
            whole run, as the longer run saves them (default: the run's; the last step is always saved).
        features_at, weights_at: times of the continuation at which H / W are kept (default: its end for H; W at
            none: ``W_final`` is always kept); for GD multiples of δ.  The original's kept ones stay.
        method, rtol, atol, step, max_steps, options: flows: the solver settings of the continuation (default: the
            run's, as in ``source.config["solver"]``).  Gradient descent keeps its δ.  Continued: gflow's native
            methods (``dop853``, ``dopri5``, ``rk4``, ``midpoint``, ``euler``), torchdiffeq's and scipy's; refused:
            ``exprk4`` and the switching methods (pass ``method="dop853"`` to continue one of those), ``filippov``
            and ``sliding`` (their state holds the pairs sliding on the kink) and runs with an error estimate.
        max_wall_time, progress, warn, threads: as in :func:`gflow.simulate`, for the continuation.  Its warnings
            (a stop, a loss rise) are given at the caller as ``gflow.extend``'s, in the extended run's words, and the
            loss-rise check of an adaptive method is the one-piece run's: against the whole run's lowest saved loss.
        checkpoint, checkpoint_every, keep_checkpoint: checkpoints of the continuation, as in
            :func:`gflow.simulate` (gflow's native methods, and gradient descent): the same call — the same source,
            ``t1`` / ``steps`` and settings, limits such as ``max_wall_time`` may differ — resumes a continuation
            stopped by a limit, Ctrl-C or a killed process, to the Solution of an uninterrupted one; the checkpoint
            fingerprints the run continued (its end state, integrals and references), so it resumes nothing else.
        device: continue on another device.   activation, embedding: as in :func:`gflow.rerun`, for a custom
            activation or a callable embedding, which a file cannot hold.

    Returns:
        the extended :class:`gflow.Solution` (status and message of the continuation; ``message`` says where it
        was extended from).  Where the continuation is stopped by Ctrl-C, :class:`gflow.Interrupted` carries the
        extended Solution so far.

    Raises:
        TypeError, ValueError: bad input, naming the argument, what was expected and what arrived.

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=10, d=20, seed=0)
        >>> gd = gf.gradient_descent(gf.Network(d=20, width=64), X, y, step=0.5, steps=100, save_every=10)
        >>> longer = gf.extend(gd, steps=50)
        >>> float(longer.t[-1]), len(longer.t) == len(gd.t) + 5
        (75.0, True)
    """
    sol = as_solution(source, "source")
    cfg = sol.config
    kind = cfg.get("kind", "flow")
    s = dict(cfg.get("solver", {}))
    _check_source(sol, s)
    t_old = float(sol.t[-1])
    gd = kind == "gd"
    if gd:
        given = [name for name, v in (("t1", t1), ("saveat", saveat), ("method", method), ("rtol", rtol),
                                      ("atol", atol), ("step", step), ("max_steps", max_steps),
                                      ("options", options)) if v is not None]
        if given:
            raise TypeError(f"extend: the source is a gradient descent run (δ = {s['step']:g}, to t = {t_old:g}): "
                            f"give {arg_eq('steps')} (how many more steps of the same δ), not "
                            f"{', '.join(arg(g) for g in given)}"
                            + (f" ({arg_eq('t1', t1)} would be {arg_eq('steps', (t1 - t_old) / s['step'], 'g')})"
                               if isinstance(t1, (int, float)) and not isinstance(t1, bool) else "")
                            + (f"; GD saves the steps that are multiples of {arg_eq('save_every')} (this run's: "
                               f"{s.get('save_every')})" if saveat is not None else ""))
        if steps is None:
            raise TypeError(f"extend: give {arg_eq('steps')} (how many more GD steps of δ = {s['step']:g} after "
                            f"t = {t_old:g})")
        steps = check_positive_int(steps, arg("steps"))
    else:
        given = [name for name, v in (("steps", steps), ("save_every", save_every)) if v is not None]
        if given:
            raise TypeError(f"extend: the source is a flow (method {s.get('method')!r}, to t = {t_old:g}): give "
                            f"{arg_eq('t1')} (the new final time), not {', '.join(arg(g) for g in given)}"
                            + (f"; a flow's output times are {arg_eq('saveat')} (times in ({t_old:g}, t1], or how "
                               "many)" if save_every is not None else ""))
        if t1 is None:
            raise TypeError(f"extend: give {arg_eq('t1')}, the new final time (beyond the run's end t = {t_old:g})")
        t1 = check_positive_float(t1, arg("t1"))
        if not t1 > t_old * (1 + 1e-12):
            raise ValueError(f"{arg('t1')} must lie beyond the run's end t = {t_old:g} (the run already covers "
                             f"[0, {t_old:g}]), got {arg('t1')} = {t1:g}")
        method = s.get("method") if method is None else method
        if not isinstance(method, str):
            raise TypeError(f"{arg('method')} must be a method name (e.g. 'dop853'), got {describe(method)}")
        why = _refuse_methods(method)
        if why is not None:
            raise ValueError(f"extend: {why}")

    orig_net, cont_net = _networks(sol, device, activation, embedding)
    interval = tuple(s.get("interval") or orig_net.activation.interval)
    integrals = bool(s.get("integrals", True))
    data = dict(X=sol.X, y=sol.y, X_test=sol.X_test, y_test=sol.y_test)
    start = _Start(sol, orig_net, interval, integrals)
    # a checkpoint of the continuation (the same gf.extend call resumes it): its fingerprint names the run it goes on
    # from, besides the continuation's own network (c and W_final), data and settings
    ckpt = ({} if checkpoint is None else
            {"checkpoint": checkpoint, "checkpoint_every": checkpoint_every, "keep_checkpoint": keep_checkpoint})

    if gd:
        delta = float(s["step"])
        k0 = int(round(t_old / delta))
        start.step_offset = k0  # (GD saves the steps of the whole run that are multiples of save_every)
        save_every = s.get("save_every") if save_every is None else check_positive_int(save_every, arg("save_every"))
        to_local = _local_times(t_old, t_old + steps * delta)
        fa, wa = to_local(features_at, "features_at"), to_local(weights_at, "weights_at")
        absolute = (lambda t: (k0 + np.rint(np.asarray(t, dtype=np.float64) / delta)) * delta)
        segment = {"from_t": t_old, "from_step": k0, "steps": steps, "save_every": save_every,
                   "max_wall_time": max_wall_time}
        from .gd import gradient_descent

        def run() -> Solution:
            return gradient_descent(
                cont_net, **data, step=delta, steps=steps, save_every=save_every, space=cfg.get("space", "auto"),
                features_at=[steps * delta] if fa is None else fa, weights_at=wa, max_wall_time=max_wall_time,
                interval=interval, integrals=integrals, progress=progress, warn=warn, threads=threads, _continue=start,
                **ckpt)
    else:
        same = method == s.get("method")
        fixed_step = s.get("step") if step is None and same else step
        grid = _output_times(saveat, t_old, t1, fixed_step if method in FIXED_STEP_METHODS else None)
        to_local = _local_times(t_old, t1)
        fa, wa = to_local(features_at, "features_at"), to_local(weights_at, "weights_at")
        absolute = _time_map(t_old, grid)
        # the run's settings unless overridden (its options and step only for the same method: they are the method's)
        kw = {"method": method, "max_steps": s.get("max_steps", 100_000) if max_steps is None else max_steps,
              "rtol": s.get("rtol") if rtol is None else rtol, "atol": s.get("atol") if atol is None else atol,
              "step": fixed_step, "options": (s.get("options") or None) if options is None and same else options}
        kw = {k: v for k, v in kw.items() if v is not None}
        segment = {"from_t": t_old, "t1": t1, "max_wall_time": max_wall_time, "saveat": grid.tolist()}
        from .ode import simulate

        def run() -> Solution:
            return simulate(
                cont_net, **data, t1=t1 - t_old, saveat=grid - t_old, **kw, max_wall_time=max_wall_time,
                space=cfg.get("space", "auto"), features_at=np.asarray([t1 - t_old]) if fa is None else fa,
                weights_at=wa, interval=interval, integrals=integrals, progress=progress, warn=warn, threads=threads,
                _continue=start, **ckpt)

    words: dict[str, str] = {}  # (local words → the run's, for the continuation's warnings: _rewarn)

    def glue(new: Solution) -> Solution:
        if not gd:
            ns = new.config["solver"]
            segment.update({k: ns.get(k) for k in ("method", "rtol", "atol", "step", "max_steps", "options")})
        segment.update(features_at=absolute(new.feature_t[new.feature_t > 0]).tolist(),
                       weights_at=absolute(new.weight_t[new.weight_t > 0]).tolist(), status=new.status)
        rise = new.stats.get("loss_rise")  # (its words in the run's times: the original's rise, or the first new)
        rise_at = None if rise is None else (rise_words(rise), rise_words(_absolute_rise(sol, rise, absolute)))
        out = _glue(sol, new, absolute, segment, _absolute_message(new.message, said, t_old, rise_at))
        words.update({new.message: out.message, **dict([rise_at] if rise_at else [])})
        return out

    # the continuation's message in the extended run's times: its success messages say where it ended
    said = ((f"took {steps} steps of size {s['step']:g} (t = {steps * s['step']:g})",
             f"took {steps} more steps of size {s['step']:g} (to t = {(k0 + steps) * s['step']:g})") if gd else
            (f"reached t1 = {t1 - t_old:g}", f"reached t1 = {t1:g}"))
    # the continuation's warnings (a stop, a loss rise) are given again in the run's words and times, at the caller
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # (under the caller's filters, which apply again)
            new = run()
        return glue(new)
    except Interrupted as stop:  # (Ctrl-C: the extended run so far, and the exception's text in the run's words)
        stop.solution = glue(stop.solution)
        if stop.args:
            text = _run_words(str(stop.args[0]), words)  # ("gf.extend: extended from t = 10 (...): interrupted ...")
            stop.args = (text.replace("gf.extend extended from", "gf.extend: extended from", 1),) + stop.args[1:]
        raise
    except ValueError as exc:
        if checkpoint is None or "written by a different run" not in str(exc):
            raise
        raise ValueError(f"{exc} (a checkpoint of gf.extend resumes the same call: the same source and "
                         f"{arg('steps') if gd else arg('t1')}; an extended run that stopped is resumed by repeating "
                         "the call that stopped, not by extending its result)") from None
    finally:
        _rewarn(caught, words)


def rerun_extended(sol: Solution, *, device: Any = None, embedding: Any = None, activation: Any = None) -> Solution:
    """:func:`gflow.rerun` of an extended run: the run it extended (``config["extended"]["base"]``), rerun, then each
    continuation (``config["extended"]["segments"]``) with its recorded settings."""
    from .rerun import rerun

    record = sol.config["extended"]
    config = copy.deepcopy(sol.config)
    config.pop("extended")
    config["solver"] = copy.deepcopy(record["base"])
    out = rerun(dataclasses.replace(sol, config=config), device=device, embedding=embedding, activation=activation)
    same = dict(device=device, embedding=embedding, activation=activation)
    for seg in record["segments"]:
        kept = {"features_at": seg.get("features_at") or None, "weights_at": seg.get("weights_at") or None,
                "max_wall_time": seg.get("max_wall_time")}
        if sol.config.get("kind") == "gd":
            out = extend(out, steps=seg["steps"], save_every=seg["save_every"], **kept, **same)
        else:
            out = extend(out, t1=seg["t1"], saveat=seg["saveat"], method=seg["method"], rtol=seg["rtol"],
                         atol=seg["atol"], step=seg["step"], max_steps=seg["max_steps"], options=seg["options"],
                         **kept, **same)
    return out


def _check_source(sol: Solution, s: dict) -> None:
    """Refuse a source that cannot be continued, naming what it is and what would do."""
    if sol.error_estimate is not None or "error_estimate" in s:
        info = s.get("error_estimate")
        how = ("three solves at steps h, h/2, h/4" if isinstance(info, dict) and "steps" in info else
               f"a second, looser solve of method {s.get('method', '?')!r}")  # (it said "filippov" of any)
        raise ValueError(f"extend: the source carries an error estimate ({how}), which one continuation cannot "
                         "extend; repeat it with gf.simulate(..., error_estimate=True) to the longer t1")
    W = np.asarray(sol.W_final)
    if W.size == 0 or not np.all(np.isfinite(W)):
        saved_without = W.size > 0 and bool(np.all(np.isnan(W)))
        raise ValueError(
            "extend: the source holds no final weights W_final"
            + (" (it was saved without weights: include_weights=False, or a sweep's run file, whose default is "
               "keep_weights=False)" if saved_without else f" that are finite (status {sol.status!r})")
            + "; repeat the run with gf.rerun(source) (which rebuilds it from the file) and extend that, or save "
              "with include_weights=True (sweeps: keep_weights=True)")
    if sol.status not in CONTINUABLE_STATUSES:
        raise ValueError(f"extend: the source ended with status {sol.status!r}, not one of {CONTINUABLE_STATUSES}: "
                         f"{sol.message[:200]}; its last state is not one to continue from (fix the run first: the "
                         "message says how)")
    if len(sol.t) == 0 or float(sol.t[0]) != 0.0:
        raise ValueError(f"extend: the source's saved times must start at t = 0, got {describe(sol.t[:1])}")


def _networks(sol: Solution, device, activation, embedding) -> tuple[Network, Network]:
    """(the original network, from its seed or explicit c/W0, checked against the saved outputs at t = 0; the same
    network with W0 = the run's final weights)."""
    from .rerun import _check_same_start

    spec = dict(sol.config["network"])
    explicit = spec.get("explicit_params", False)
    orig = Network.from_spec(spec, c=sol.c if explicit else None, W0=sol.W0 if explicit else None, device=device,
                             activation=activation, embedding=embedding)
    custom = [name for name, given in (("activation", activation), ("embedding", embedding)) if given is not None]
    _check_same_start(sol, orig, custom)
    c = orig.c.detach().to("cpu", torch.float64).numpy()  # (explicit parameters are given in float64)
    cont = Network.from_spec(spec, c=c, W0=np.asarray(sol.W_final, dtype=np.float64), device=device,
                             activation=activation, embedding=embedding)
    return orig, cont


class _Start:
    """The hook a continued run's solver calls before it starts (``_continue`` of :func:`gflow.simulate` and
    :func:`gflow.gradient_descent`): its field starts from the original run's end — W_final, or in feature space the
    last kept features (those the original run stepped) — with the integrals so far, and its recorder measures the
    movements from the original's t = 0 references, formed as the original run formed them."""

    #: gradient descent: the steps the original run took (the continuation saves the whole run's multiples of
    #: save_every: :func:`gflow.solve.gd.gd_schedule`)
    step_offset = 0

    def __init__(self, sol: Solution, orig_net: Network, interval, integrals: bool):
        self.sol, self.orig_net, self.interval, self.integrals = sol, orig_net, interval, integrals

    @property
    def fingerprint(self) -> dict:
        """What a checkpoint of the continuation adds to its fingerprint (:func:`gflow.solve.checkpoint.fingerprint`):
        the original network and what the continuation starts from (its end state, integrals, L₀, lowest loss and
        first rise), so that a checkpoint resumes only the continuation of the same run from the same point."""
        from .checkpoint import _hash_tensors, network_spec

        sol = self.sol
        H_last = sol.H[-1] if sol.H is not None and len(sol.H) else None
        q = [getattr(sol, f"int_{name}") for name in ("eta", "mu", "nu", "lam_min_M", "sqrt_abs_dL", "abs_dL")]
        numbers = [float(sol.loss[0]), float(np.min(sol.loss))] + [math.nan if v is None else float(v[-1]) for v in q]
        numbers += list(sol.stats.get("loss_rise") or [])
        arrays = [np.asarray(sol.W_final, dtype=np.float64), None if H_last is None else np.asarray(H_last),
                  np.asarray(numbers, dtype=np.float64)]
        return {"continues": {"from_t": float(sol.t[-1]), "from_step": int(self.step_offset),
                              "network": network_spec(self.orig_net),
                              "start_sha256": _hash_tensors(*(None if a is None else torch.from_numpy(a.copy())
                                                               for a in arrays))}}

    def __call__(self, field, recorder: Recorder) -> None:
        sol, net = self.sol, self.orig_net
        base = getattr(field, "base", field)
        core = base.initial_state()  # (from the continuation network's W0 = W_final)
        t_end = float(sol.t[-1])
        if base.space == "feature" and len(sol.feature_t) and sol.H is not None and \
                abs(float(sol.feature_t[-1]) - t_end) <= 1e-12 * abs(t_end):
            # the features the original run's state held at its end (W_final's features differ by rounding); kept
            # ones from before the end are not its state (with 1e-12·max(1, t) a run to t1 = 1e-12 that kept H at
            # 0.97e-12 only went on from those: the loss 3.7e-2 off the one-piece run's)
            base.split(core)[0].copy_(torch.as_tensor(np.asarray(sol.H[-1]), dtype=core.dtype, device=core.device))
        if base is not field:  # the integrals so far (an integral not carried, λ_min(M) for n > 1024: 0, as there)
            from ..fields.observed import INTEGRALS

            q = [getattr(sol, f"int_{name}") for name in INTEGRALS]
            if q[0] is None:
                raise ValueError("extend: the source carries no running integrals (int_eta is None) though its "
                                 "config says integrals=True; the file is incomplete")
            q0 = torch.tensor([0.0 if v is None else float(v[-1]) for v in q], dtype=core.dtype, device=core.device)
            field.start = torch.cat([core.reshape(-1), q0])
        else:
            base.start = core
        # the t = 0 references, formed by a recorder of the original problem in the continuation's layout
        problem = Problem.from_data(net, sol.X, sol.y, sol.X_test, sol.y_test)
        ref_field = make_field(problem, base.space, layout=base.layout or "nm")
        ref = Recorder(ref_field, np.zeros(0), np.zeros(0), interval=self.interval)
        ref.record(0.0, ref_field.initial_state())
        # (λ_max(M₀) as t = 0 recorded it, NaN for n > EIG_MAX_N: the stability limit 2/λ_max(M₀) of GD and the
        # fixed-step methods is the original's, not the joint's — a continuation judged δ by the joint's kernel)
        recorder.refer_to(problem.H0, problem.H0_test, ref._M0, net.W0, float(sol.loss[0]),
                          ref.rows["lam_max_M"][0])
        # an adaptive continuation's loss may rise within its tolerance above the whole run's lowest saved loss, as
        # the one-piece run's may: not above its own lowest (from the joint on), which can lie above the run's
        recorder.lowest_before = float(np.min(sol.loss))
        rise = sol.stats.get("loss_rise")
        if rise is not None:  # the whole run's first rise is the original's: the continuation looks for no other
            t_old = float(sol.t[-1])
            recorder.loss_rise = (float(rise[0]) - t_old, float(rise[1]), float(rise[2]) - t_old, float(rise[3]))


def _output_times(saveat: Any, t_old: float, t1: float, step: float | None) -> np.ndarray:
    """A flow continuation's output times in the run's times, in (t_old, t1] with t1 the last: ``saveat`` None (the
    one-piece run's :func:`default_saveat` beyond t_old), times in (t_old, t1], or a count k (k times evenly spaced
    over (t_old, t1]; on the continuation's multiples of a fixed-step method's ``step``, as the default grid is, so
    that the output times never cut its steps); ValueError / TypeError naming ``saveat`` otherwise."""
    name = arg("saveat")
    if saveat is None:
        grid = default_saveat(t1, step)
    elif is_int(saveat):
        k = check_positive_int(saveat, f"{name} (a count of output times)")
        grid = t_old + np.linspace(0.0, t1 - t_old, k + 1)[1:]
        if step is not None and step > 0:
            grid = t_old + np.minimum(np.round((grid - t_old) / step) * step, t1 - t_old)
    else:
        if isinstance(saveat, (bool, np.bool_)):
            raise TypeError(f"{name} must be times in ({t_old:g}, t1] or a count of output times (an int), got "
                            f"{describe(saveat)}")
        grid = check_times(saveat, name)
        if grid[0] <= t_old * (1 + 1e-12):
            raise ValueError(f"{name} must lie in (t[-1], t1] = ({t_old:g}, {t1:g}] (the run's own saved times cover "
                             f"[0, {t_old:g}]; a count of output times is an int), got a first time {grid[0]:g}")
        if grid[-1] > t1 * (1 + 1e-12):
            raise ValueError(f"{name} runs to {grid[-1]:g} beyond {arg('t1')} = {t1:g}")
    return np.unique(np.concatenate([grid[grid > t_old * (1 + 1e-12)], [t1]]))


def _local_times(t_old: float, t_end: float):
    """A function (times, name) → the continuation's own times (t − t_old) of times given in (t_old, t_end], or
    None for None; ValueError naming the argument for times outside."""

    def to_local(times, name):
        if times is None:
            return None
        if isinstance(times, str) and times == "all":
            return "all"
        t = check_times(times, name)
        if t[0] <= t_old * (1 + 1e-12) or t[-1] > t_end * (1 + 1e-12):
            raise ValueError(f"{name} must lie in the continuation ({t_old:g}, {t_end:g}] (the run's own kept times "
                             f"stay), got times from {t[0]:g} to {t[-1]:g}")
        return t - t_old

    return to_local


def _time_map(t_old: float, grid: np.ndarray):
    """Local times of the continuation → absolute times: those of ``grid`` (the absolute output times, whose local
    forms ``grid − t_old`` the solver saved at) exactly, any other time (a stopped run's last state) as t_old + t."""
    local = grid - t_old
    # the nearest output time, within rounding in the continuation's time unit min(1, its t1) (as its step thresholds:
    # with 1e-12·max(1, t), to t1 = 1e-12 every saved time matched the output time before it too, and the run's times
    # came out one output time early — the last 1.99e-12 for t1 = 2e-12)
    unit = min(1.0, float(local[-1])) if local.size and local[-1] > 0 else 1.0

    def absolute(t):
        t = np.asarray(t, dtype=np.float64)
        out = t_old + t
        if local.size == 0 or t.size == 0:
            return out
        k = np.clip(np.searchsorted(local, t), 0, local.size - 1)
        below = np.maximum(k - 1, 0)
        j = np.where(np.abs(local[below] - t) < np.abs(local[k] - t), below, k)
        hit = np.abs(local[j] - t) <= 1e-12 * np.maximum(unit, np.abs(t))
        return np.where(hit, grid[j], out)

    return absolute


#: the names a continuation's warnings and exceptions give the function that ran it ("gflow.simulate: ...",
#: "gf.gradient_descent interrupted ...", "Ctrl-C arrived as gf.simulate finished"), not an advice's
_SOLVER_NAME = re.compile(r"^(gflow|gf)\.(?:simulate|gradient_descent)\b"
                          r"|(?<=arrived as )(gf)\.(?:simulate|gradient_descent)\b")


def _run_words(text: str, words: dict[str, str]) -> str:
    """``text`` (a continuation's warning or exception) in the extended run's words: its stop message and loss rise
    replaced by the extended run's (in its times; the original's rise where it had one), and the solver that ran
    the continuation (``gflow.gradient_descent``, ``gf.simulate``) named as what the caller called, ``extend``."""
    for local, whole in sorted(words.items(), key=lambda kv: -len(kv[0])):  # (the message before its rise)
        text = text.replace(local, whole)
    return _SOLVER_NAME.sub(lambda mt: f"{mt.group(1) or mt.group(2)}.extend", text)


def _rewarn(caught: list, words: dict[str, str]) -> None:
    """Warn again, at :func:`extend`'s caller, each warning the continuation gave, in the extended run's words
    (:func:`_run_words`: "gflow.extend stopped early [time_budget]: extended from t = ...")."""
    for w in caught:
        warnings.warn(_run_words(str(w.message), words), w.category, stacklevel=3)


def _absolute_rise(old: Solution, rise, absolute) -> list:
    """The whole run's first loss rise (t_prev, L_prev, t, L) in its times: the original's where it had one (the
    continuation's recorder starts with it, in its own times), else the continuation's ``rise``."""
    if old.stats.get("loss_rise") is not None:
        return list(old.stats["loss_rise"])
    return [float(absolute(rise[0])), rise[1], float(absolute(rise[2])), rise[3]]


def _absolute_message(message: str, said: tuple[str, str], t_old: float,
                      rise_at: tuple[str, str] | None = None) -> str:
    """The continuation's ``message`` with its success text ``said[0]`` (in its own times) as ``said[1]`` and the
    words of its loss rise ``rise_at[0]`` as ``rise_at[1]`` (in the run's times); any other message (a stop: its
    times count from the joint) noted so."""
    rewritten = rise_at is not None and rise_at[0] in message
    if rewritten:
        message = message.replace(rise_at[0], rise_at[1])
    if message.startswith(said[0]):
        return said[1] + message[len(said[0]):]
    return (f"{message} [times in this message count from t = {t_old:g}, where the run was continued"
            + (", but the loss rise's, which are the run's]" if rewritten else "]"))


def _cat(old, new):
    if old is None or new is None:
        return old if new is None else new
    return np.concatenate([np.asarray(old), np.asarray(new)])


def _glue(old: Solution, new: Solution, absolute, segment: dict | None, message: str) -> Solution:
    """One Solution: ``old``'s rows, then ``new``'s after its first (the joint, which ``old`` holds), at the absolute
    times ``absolute(new.t)``; the kept features and weights of both; stats summed; config recording the piece."""
    t_old = float(old.t[-1])
    fields: dict[str, Any] = {"t": np.concatenate([old.t, absolute(new.t[1:])])}
    for name in _SERIES:
        a, b = getattr(old, name), getattr(new, name)
        fields[name] = None if a is None or b is None else np.concatenate([np.asarray(a), np.asarray(b)[1:]])
    fk = new.feature_t > 0
    fields["feature_t"] = np.concatenate([old.feature_t, absolute(new.feature_t[fk])])
    fields["H"] = np.concatenate([old.H, new.H[fk]])
    fields["H_test"] = (None if old.H_test is None or new.H_test is None else
                        np.concatenate([old.H_test, new.H_test[fk]]))
    wk = new.weight_t > 0
    fields["weight_t"] = np.concatenate([np.asarray(old.weight_t, dtype=np.float64), absolute(new.weight_t[wk])])
    W_new = None if new.W is None else new.W[wk]
    fields["W"] = _cat(old.W, W_new) if fields["weight_t"].size else None
    stats = dict(new.stats)
    for key in _SUMMED:
        a, b = old.stats.get(key), new.stats.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            stats[key] = -1 if key == "n_rejected" and -1 in (a, b) else a + b
    rise = new.stats.get("loss_rise")  # (the first rise of the whole run, in its times)
    if old.stats.get("loss_rise") is not None or rise is not None:
        stats["loss_rise"] = _absolute_rise(old, rise, absolute)
    if old.stats.get("unstable_step"):
        stats["unstable_step"] = True
    config = copy.deepcopy(old.config)
    solver = config.setdefault("solver", {})
    record = config.get("extended") or {"base": copy.deepcopy(solver), "segments": []}
    if segment is not None:
        record["segments"].append(segment)
        if config.get("kind") == "gd":
            solver["steps"] = int(segment["from_step"] + segment["steps"])
        else:
            solver["t1"] = segment["t1"]
            solver["saveat"] = list(solver.get("saveat") or []) + segment["saveat"]
        solver["features_at"] = fields["feature_t"].tolist()
        solver["weights_at"] = fields["weight_t"].tolist()
        config["extended"] = record
    message = f"extended from t = {t_old:g} ({old.status}): {message}"
    return dataclasses.replace(
        old, **fields, W_final=new.W_final, status=new.status, message=message, stats=stats, config=config,
        versions=new.versions)


__all__ = ["extend", "CONTINUABLE_STATUSES"]
