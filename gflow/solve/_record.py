"""Recording observables at output times, and the run monitor that stops runaway solves.

Both are shared by the ODE backends and gradient descent, so every solver produces the same Solution and
fails the same way.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import torch

from ..fields.base import AbstractField


class Abort(Exception):
    """Raised inside a solve to stop it with a status; the partial trajectory is kept."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy().copy()


class Recorder:
    """Collects loss, residuals, outputs, test metrics, features and weights at the output times.

    Observables are computed from the state on the fly, so the full state is never stored over time
    (W is (m, D) and large); H and W are kept only at the times the user asked for.
    """

    def __init__(self, field: AbstractField, feature_times: np.ndarray, weight_times: np.ndarray,
                 time_tol: float = 0.0):
        self.field = field
        self._tol = time_tol  # output times are at least 2·time_tol apart, so a time matches at most one
        pb = field.problem
        self.pb = pb
        self._ft = feature_times
        self._wt = weight_times
        self.t: list[float] = []
        self.loss: list[float] = []
        self.residual: list[np.ndarray] = []
        self.output: list[np.ndarray] = []
        self.test_output: list[np.ndarray] = []
        self.feature_t: list[float] = []
        self.H: list[np.ndarray] = []
        self.H_test: list[np.ndarray] = []
        self.weight_t: list[float] = []
        self.W: list[np.ndarray] = []
        self.last_state: torch.Tensor | None = None
        yt = pb.y_test
        self.sign_labels = yt is not None and bool(torch.all((yt == 1) | (yt == -1)))

    def _member(self, t: float, times: np.ndarray) -> bool:
        if times.size == 0:
            return False
        k = np.searchsorted(times, t)
        return any(0 <= j < times.size and abs(times[j] - t) <= self._tol for j in (k - 1, k))

    def record(self, t: float, state: torch.Tensor, *, force_features: bool = False) -> None:
        """Record the observables of ``state`` at time t; raises Abort("nonfinite") for a non-finite loss."""
        H = self.field.train_features(state)
        f = self.pb.outputs(H)
        r = f - self.pb.y
        loss = float(0.5 * (r @ r))
        if not math.isfinite(loss):
            raise Abort("nonfinite", f"the loss became non-finite at t = {t:.6g}; the state was lost between "
                        f"t = {self.t[-1] if self.t else 0.0:.6g} and t; use float64, a smaller step or tighter "
                        "tolerances")
        self.t.append(float(t))
        self.loss.append(loss)
        self.residual.append(_np(r))
        self.output.append(_np(f))
        Hte = None
        if self.pb.X_test is not None:
            Hte = self.field.test_features(state)
            self.test_output.append(_np(self.pb.outputs(Hte)))
        if force_features or self._member(t, self._ft):
            self.feature_t.append(float(t))
            self.H.append(_np(H))
            if Hte is not None:
                self.H_test.append(_np(Hte))
        if self._member(t, self._wt):
            self.weight_t.append(float(t))
            self.W.append(_np(self.field.weights(state)))
        self.last_state = state

    def ensure_final_features(self) -> None:
        """Keep H at the last recorded time (a failed run's end), if it is not kept already."""
        if self.last_state is None or (self.feature_t and self.feature_t[-1] == self.t[-1]):
            return
        H = self.field.train_features(self.last_state)
        self.feature_t.append(self.t[-1])
        self.H.append(_np(H))
        if self.pb.X_test is not None:
            self.H_test.append(_np(self.field.test_features(self.last_state)))

    def arrays(self) -> dict:
        pb = self.pb
        out = {
            "t": np.asarray(self.t),
            "loss": np.asarray(self.loss),
            "residual": np.stack(self.residual),
            "output": np.stack(self.output),
            "feature_t": np.asarray(self.feature_t),
            "H": np.stack(self.H) if self.H else np.zeros((0, pb.net.m, pb.n)),
            "weight_t": np.asarray(self.weight_t, dtype=np.float64),
            "W": np.stack(self.W) if self.W else None,
            "W_final": _np(self.field.weights(self.last_state)),
        }
        if pb.X_test is not None:
            fte = np.stack(self.test_output)
            yte = _np(pb.y_test)
            err = fte - yte[None, :]
            out["test_output"] = fte
            out["test_loss"] = 0.5 * np.sum(err**2, axis=1)
            out["test_error"] = np.mean(err**2, axis=1)
            out["test_sign_error"] = np.mean(np.sign(fte) != yte[None, :], axis=1) if self.sign_labels else None
            out["H_test"] = np.stack(self.H_test) if self.H_test else None
        return out


class Monitor:
    """Counts evaluations and steps and stops a solve that cannot finish in reasonable time.

    Stops with:
      * ``max_steps`` — more than ``max_steps`` step attempts;
      * ``stalled`` — the recent step sizes project far more than ``max_steps`` steps to reach t1 (the
        ReLU kink makes adaptive solvers collapse their step, EQUATIONS.md §4 "Non-smooth σ");
      * ``step_size_collapse`` — a step below 1e-12·max(1, |t|);
      * ``time_budget`` — ``max_wall_time`` seconds elapsed;
      * ``nonfinite`` — a non-finite derivative.
    """

    def __init__(self, t1: float, max_steps: int, max_wall_time: float | None, *, hint: str,
                 adaptive: bool = True):
        self.t1 = t1
        self.adaptive = adaptive
        self.max_steps = max_steps
        self.max_wall_time = max_wall_time
        self.hint = hint
        self.start = time.perf_counter()
        self.n_f_evals = 0
        self.n_accepted = 0
        self.n_rejected = 0
        self.last_t = 0.0
        self.last_dt = math.nan
        self._recent = deque(maxlen=100)
        self.partial: tuple[float, torch.Tensor] | None = None  # last accepted (t, state) inside a chunk
        self.proposed_dt: float | None = None
        self.landing_time = math.nan  # the output time the solver is currently stepping onto

    @property
    def n_steps(self) -> int:
        return self.n_accepted + self.n_rejected

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def on_eval(self, dy: torch.Tensor | None = None) -> None:
        self.n_f_evals += 1
        if self.max_wall_time is not None and self.elapsed() > self.max_wall_time:
            raise Abort(
                "time_budget",
                f"the wall-time budget max_wall_time={self.max_wall_time:g} s ran out at t = {self.last_t:.6g} "
                f"(of t1 = {self.t1:g}) after {self.n_steps} steps; raise max_wall_time, loosen rtol/atol, "
                f"or {self.hint}",
            )

    def raise_nonfinite(self, t: float | None = None) -> None:
        t = self.last_t if t is None else t
        raise Abort(
            "nonfinite",
            f"the state or its derivative became non-finite near t = {t:.6g}; check the data scale, use float64, "
            f"or {self.hint}",
        )

    def on_step(self, t0: float, dt: float, accepted: bool) -> None:
        if accepted:
            self.n_accepted += 1
            self.last_t = t0 + dt
            self.last_dt = dt
            self._recent.append(dt)
        else:
            self.n_rejected += 1
        n = self.n_steps
        if n >= self.max_steps:
            raise Abort(
                "max_steps",
                f"max_steps={self.max_steps} steps were taken and t = {self.last_t:.6g} < t1 = {self.t1:g} "
                f"(last step {self.last_dt:.3g}); raise max_steps, or {self.hint}",
            )
        if not self.adaptive:
            return
        tiny = 1e-12 * max(1.0, abs(t0))
        if dt < tiny and not (accepted and abs(t0 + dt - self.landing_time) <= tiny):
            # (a tiny step that lands exactly on an output time is rounding, not a collapse)
            raise Abort(
                "step_size_collapse",
                f"the step size collapsed to {dt:.3g} at t = {t0:.6g}; {self.hint}",
            )
        if accepted and self.n_accepted >= 200 and self.n_accepted % 50 == 0:
            mean_dt = sum(self._recent) / len(self._recent)
            projected = n + (self.t1 - self.last_t) / mean_dt
            if projected > 4 * self.max_steps:
                raise Abort(
                    "stalled",
                    f"the step size collapsed to about {mean_dt:.3g} at t = {self.last_t:.6g}, which would need "
                    f"about {projected:.3g} steps to reach t1 = {self.t1:g} (max_steps={self.max_steps}); "
                    f"{self.hint}",
                )
