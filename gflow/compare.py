r"""How far one run lies from a reference run of the same network on the same data.

The question a solver study asks — how accurately does gradient descent with step δ, a loose tolerance or a
cheaper method follow the true flow? — is a comparison of two :class:`gflow.Solution` s at the times both saved:

>>> ref = gf.simulate(net, X, y, saveat=gd.t, method="dop853", rtol=1e-10, atol=1e-13)   # doctest: +SKIP
>>> print(gf.compare(gd, ref))                                                             # doctest: +SKIP

Errors are measured in the quantities the paper's theorems bound: the loss L = ½‖r‖² (eq. (6)), the residual
r = f − y (its relative error e bounds the loss's: |ΔL|/L ≤ 2e + e²), the test loss and test mean squared error,
and, where both runs kept them, the features H (EQUATIONS.md §2) and the weights W.  GD's iterate k is compared
with the flow at t = kδ (eq. (9)).  The result is only as good as the reference: its own tolerance is quoted
with the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_positive_int
from .solution import Solution, as_solution, fields_equal

__all__ = ["Comparison", "compare"]

# times of the two runs match within this distance relative to max(1, |t|) (GD's t = kδ against a flow's grid)
TIME_TOL = 1e-9
# network settings that may differ between the runs: a float32 run against its float64 reference; the same network
# given by its seed or by explicit c and W0 (the runs' c and outputs at t = 0 are compared instead)
_FREE_NETWORK_KEYS = ("dtype", "device", "seed", "explicit_params")


@dataclass(frozen=True, eq=False)
class Comparison:
    r"""The errors of a run against a reference, at the times both saved (from :func:`compare`).

    Attributes (numpy arrays over the K shared times ``t``):
        t: (K,) the shared saved times.   loss, loss_ref: (K,) L of the run and of the reference there.
        loss_rel_error: (K,) |L − L_ref| / L_ref (0 where both are 0, inf where only L_ref is); NaN where L_ref is
            at or below ``loss_floor``, where both losses are rounding and their relative difference means nothing
            (just above it, rounding may move L by up to about (2·floor/L_ref)^½ relatively: the summary says so).
        loss_abs_error: (K,) |L − L_ref| / L₀ (L₀ the reference's initial loss): finite at every shared time.
        loss_floor: max over both runs of the loss below which a run's L is rounding, max(n·(1e3·ε·ĉ)², 1e-25·L₀)
            (ε of the run's dtype, ĉ the output weights' scale).
        residual_rel_error: (K,) ‖r − r_ref‖₂ / ‖r_ref‖₂, r = f − y on the training points (same conventions).
        output_abs_error: (K,) max_a |f(x_a) − f_ref(x_a)|.
        test_loss_rel_error, test_error_rel_error: (K,) the relative errors of the test loss ½Σ(f − y)² and of
            the test mean squared error; None unless both runs have the same test data.
        error_estimate: (K,) the run's own estimate of its relative loss error (``sol.error_estimate``) at the
            shared times, or None; :attr:`estimate_holds` says whether it bounds ``loss_rel_error``.
        error_estimate_ref: (K,) the reference's own estimate (e.g. ``filippov``'s with ``error_estimate=True``),
            or None: the measured errors mean little where they are not well above it.
        feature_t: (J,) the times at which both kept features;  feature_rel_error: (J,) ‖H − H_ref‖_F/‖H_ref‖_F.
        weight_rel_error: ‖W − W_ref‖_F/‖W_ref‖_F at the last shared time where both kept the weights (the runs'
            ends when they end together, else a ``weights_at`` time of both), None where there is none;
            weight_t: that time.
        label, label_ref: what was compared (method and step or tolerance).
        status, status_ref: the runs' statuses (a stopped run is compared over the times it saved).
        rtol_ref: the reference's relative tolerance (None for GD or a fixed step).
        n_saved: how many times the run saved (the summary notes when few of them are shared).
    """

    t: np.ndarray
    loss: np.ndarray
    loss_ref: np.ndarray
    loss_rel_error: np.ndarray
    loss_abs_error: np.ndarray
    loss_floor: float
    residual_rel_error: np.ndarray
    output_abs_error: np.ndarray
    test_loss_rel_error: np.ndarray | None
    test_error_rel_error: np.ndarray | None
    error_estimate: np.ndarray | None
    error_estimate_ref: np.ndarray | None
    feature_t: np.ndarray
    feature_rel_error: np.ndarray
    weight_t: float | None
    weight_rel_error: float | None
    label: str
    label_ref: str
    status: str
    status_ref: str
    rtol_ref: float | None
    n_saved: int = 0

    @property
    def max_loss_rel_error(self) -> float:
        """The largest relative loss error over the shared times above the loss floor (NaN where none is)."""
        return _nanmax(self.loss_rel_error)

    @property
    def max_residual_rel_error(self) -> float:
        """The largest relative residual error over the shared times above the loss floor (NaN where none is)."""
        return _nanmax(self.residual_rel_error)

    @property
    def estimate_holds(self) -> bool | None:
        """Whether the run's own error estimate bounds its measured relative loss error at every shared time
        where both are known (None without an estimate, or where no time has both)."""
        if self.error_estimate is None:
            return None
        known = np.isfinite(self.error_estimate) & ~np.isnan(self.loss_rel_error)
        return bool(np.all(self.loss_rel_error[known] <= self.error_estimate[known])) if np.any(known) else None

    def table(self, rows: int = 10) -> str:
        """The errors at up to ``rows`` shared times spread evenly over them (first and last included), and the
        time of the largest relative loss error among them (for rows ≥ 3, in place of its nearest row)."""
        rows = check_positive_int(rows, "rows", minimum=0)
        K = len(self.t)
        idx = sorted(set(np.linspace(0, K - 1, min(rows, K)).round().astype(int).tolist())) if rows != 1 else [K - 1]
        if len(idx) >= 3 and not np.all(np.isnan(self.loss_rel_error)):
            worst = int(np.nanargmax(self.loss_rel_error))  # (the summary's "largest ... at t =": a row of its own)
            if worst not in idx:
                inner = idx[1:-1]
                idx.remove(inner[int(np.argmin([abs(k - worst) for k in inner]))])
                idx = sorted(idx + [worst])
        test = self.test_error_rel_error is not None
        head = (f"{'t':>12}  {'loss':>12}  {'loss (ref)':>12}  {'rel. error':>10}  {'residual':>10}"
                + (f"  {'test MSE':>10}" if test else "") + (f"  {'estimate':>10}" if self.error_estimate is not None
                                                            else ""))
        lines = [head] if idx else []
        for k in idx:
            line = (f"{self.t[k]:12.6g}  {self.loss[k]:12.5e}  {self.loss_ref[k]:12.5e}  "
                    f"{self.loss_rel_error[k]:10.3e}  {self.residual_rel_error[k]:10.3e}")
            if test:
                line += f"  {self.test_error_rel_error[k]:10.3e}"
            if self.error_estimate is not None:
                line += f"  {self.error_estimate[k]:10.3e}"
            lines.append(line)
        return "\n".join(lines)

    def summary(self, rows: int = 10) -> str:
        """What was compared, the largest errors, notes on the reference and the runs' statuses, and the table of
        :meth:`table` (``rows=0``: no table)."""
        rows = check_positive_int(rows, "rows", minimum=0)
        K = len(self.t)
        lines = [f"{self.label} against {self.label_ref}: {K} shared time{'s' if K != 1 else ''} in "
                 f"[{self.t[0]:.6g}, {self.t[-1]:.6g}]"]
        resolved = ~np.isnan(self.loss_rel_error)
        if np.any(resolved):
            k = int(np.nanargmax(self.loss_rel_error))
            # (just above the floor the rounding of r, ‖δr‖² ≈ floor, alone moves L by ≈ (2·floor/L)^½ relatively)
            rounding = math.sqrt(2.0 * self.loss_floor / self.loss_ref[k])
            near = (f", where rounding may move L by up to ≈ {rounding:.2g}"
                    if rounding > 0.01 * self.loss_rel_error[k] else "")
            lines.append(f"largest relative error of the loss {self.loss_rel_error[k]:.3e} (at t = {self.t[k]:.6g}"
                         f"{near}); of the residual {self.max_residual_rel_error:.3e}; of f "
                         f"{float(np.max(self.output_abs_error)):.3e} (absolute)")
        if not np.all(resolved):
            lines.append(f"at {int(np.sum(~resolved))} of the {K} times the reference's loss is at or below the "
                         f"floor {self.loss_floor:.3g} where it is rounding: no relative error there (NaN); "
                         f"|L − L_ref|/L₀ at most {_nanmax(self.loss_abs_error):.3e} over all times")
        if self.test_error_rel_error is not None:
            lines.append(f"test loss {float(np.max(self.test_loss_rel_error)):.3e}, test mean squared error "
                         f"{float(np.max(self.test_error_rel_error)):.3e} (largest relative errors)")
        later = self.feature_t > 0  # (at t = 0 the features agree by construction)
        if np.any(later):
            J = int(np.sum(later))
            lines.append(f"features H at {J} time{'s' if J != 1 else ''} after t = 0: "
                         f"{_nanmax(self.feature_rel_error[later]):.3e} (largest relative Frobenius error)")
        if self.weight_rel_error is not None:
            lines.append(f"weights W at t = {self.weight_t:.6g}: {self.weight_rel_error:.3e} (relative Frobenius)")
        if self.estimate_holds is not None:
            lines.append(f"the run's own error estimate {'bounds' if self.estimate_holds else 'does NOT bound'} "
                         "its loss error at every shared time")
        if self.error_estimate_ref is not None:
            ref_est = _nanmax(self.error_estimate_ref)
            lines.append(f"the reference's own estimate of its relative loss error: at most {ref_est:.3e}")
            if self.max_loss_rel_error < 10.0 * ref_est:
                lines.append("note: the errors are within 10× the reference's own error estimate: tighten the "
                             "reference to resolve them")
        elif self.rtol_ref is not None and self.max_loss_rel_error < 10.0 * self.rtol_ref:
            lines.append(f"note: the errors are within 10× the reference's rtol ({self.rtol_ref:g}): tighten the "
                         "reference to resolve them")
        if self.n_saved > 2 * K:
            lines.append(f"note: only {K} of the run's {self.n_saved} saved times are among the reference's: save "
                         "the reference at the run's times (gf.simulate(..., saveat=run.t)) to compare at all of them")
        for who, status in (("run", self.status), ("reference", self.status_ref)):
            if status != "success":
                lines.append(f"note: the {who} stopped early ({status}); compared over the times it saved")
        table = self.table(rows)
        return "\n".join(lines + ([table] if table else []))

    def __str__(self) -> str:
        return self.summary()

    def __eq__(self, other: object) -> bool:
        """Every field equal (arrays by value, NaN equal to NaN): a pickled or copied Comparison equals the original."""
        return fields_equal(self, other) if isinstance(other, Comparison) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (it holds numpy arrays, as a Solution does)

    def __repr__(self) -> str:
        return (f"Comparison({self.label!r} vs {self.label_ref!r}, K={len(self.t)}, "
                f"max loss rel. error {self.max_loss_rel_error:.3e})")


def _nanmax(values) -> float:
    """The largest of ``values`` ignoring NaN; NaN where all are (no warning)."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmax(v)) if v.size and not np.all(np.isnan(v)) else math.nan


def _label(sol: Solution) -> str:
    solver = sol.config.get("solver", {})
    if sol.kind == "gd":
        return f"GD δ = {solver.get('step'):g}"
    method = solver.get("method", "?")
    if solver.get("step") is not None:  # (a fixed step, or the finest of a step-halving estimate)
        return f"{method} step {solver['step']:g}" + (" (step halving)" if solver.get("error_estimate") else "")
    return f"{method} rtol {solver['rtol']:g}" if solver.get("rtol") is not None else str(method)


def _same(a, b, rtol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b), initial=0.0))))


def _check_same_problem(sol: Solution, ref: Solution) -> None:
    """Raise ValueError where the two runs differ in their network or training data (float32 and float64 runs of
    the same network and data compare: their arrays agree to float32's rounding)."""
    net, net_ref = sol.config.get("network", {}), ref.config.get("network", {})
    low = 1e-12 if net.get("dtype", "float64") == net_ref.get("dtype", "float64") == "float64" else 1e-6
    keys = sorted(k for k in set(net) | set(net_ref) if k not in _FREE_NETWORK_KEYS and net.get(k) != net_ref.get(k))
    advice = "compare a run with a reference of the same network (the same gf.Network, or the same seed and settings)"
    if keys:
        diff = "; ".join(f"{k}: {net.get(k)!r} vs {net_ref.get(k)!r}" for k in keys)
        raise ValueError(f"sol and reference are runs of different networks ({diff}); {advice}")
    seeds = (f" (seed: {net.get('seed')!r} vs {net_ref.get('seed')!r})" if net.get("seed") != net_ref.get("seed")
             else "")
    differ = ("c" if not _same(sol.c, ref.c, low) else
              "W0" if sol.W0 is not None and ref.W0 is not None and not _same(sol.W0, ref.W0, low) else None)
    if differ is not None:
        raise ValueError(f"sol and reference are runs of different networks: their {differ} differ{seeds}; {advice}")
    # the data before the outputs: on another number of points the outputs' shapes differ (a workflow audit: a
    # raw numpy broadcasting error, 'operands could not be broadcast together with shapes (20,) (30,)')
    for name in ("X", "y"):
        if not _same(getattr(sol, name), getattr(ref, name), low):
            raise ValueError(f"sol and reference were trained on different data: their {name} differ (shapes "
                             f"{np.shape(getattr(sol, name))} and {np.shape(getattr(ref, name))})")
    # the networks' functions: a custom activation or embedding of the same name but another function (a review)
    starts = [(name, np.asarray(a)[0], np.asarray(b)[0]) for name, ta, a, tb, b in (
        ("outputs f", sol.t, sol.output, ref.t, ref.output), ("features H", sol.feature_t, sol.H, ref.feature_t, ref.H))
        if a is not None and b is not None and len(ta) and len(tb) and float(ta[0]) == float(tb[0]) == 0.0]
    for name, a, b in starts:
        if not _same(a, b, 1e3 * low):
            worst = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            raise ValueError(f"sol and reference are runs of different networks: their {name} at t = 0 differ by up "
                             f"to {worst:.3g}{seeds} (a custom activation or embedding of the same name but another "
                             f"function?); {advice}")


def _shared(t: np.ndarray, t_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) with t[i] = t_ref[j] within TIME_TOL relative (both sorted)."""
    t, t_ref = np.asarray(t, dtype=np.float64), np.asarray(t_ref, dtype=np.float64)
    if not len(t) or not len(t_ref):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    j = np.clip(np.searchsorted(t_ref, t), 1, len(t_ref) - 1) if len(t_ref) > 1 else np.zeros(len(t), dtype=int)
    j = np.where(np.abs(t_ref[j - 1] - t) < np.abs(t_ref[j] - t), j - 1, j) if len(t_ref) > 1 else j
    ok = np.abs(t_ref[j] - t) <= TIME_TOL * np.maximum(1.0, np.abs(t))
    return np.flatnonzero(ok), j[ok]


def _rel(diff: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|diff| / |ref| elementwise, 0 where both are 0, inf where only ref is, NaN where either is NaN."""
    diff, ref = np.abs(diff), np.abs(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ref > 0, diff / ref, np.where(diff > 0, np.inf, 0.0))
    return np.where(np.isnan(diff) | np.isnan(ref), np.nan, out)


def _loss_floor(sol: Solution, L0: float) -> float:
    """The loss below which a run's L is rounding: max(n·(1e3·ε·ĉ)², 1e-25·L₀) — r = f − y carries about 1e3·ε of
    the scale ĉ of f's terms (:func:`gflow.certify` takes atol for ε, a bound for its checks; an adaptive run's
    residual is resolved below atol: gflow's dop853 at atol 1e-10 held L = 8e-22 to 1.2e-6)."""
    net = sol.config.get("network", {})
    eps = 1.2e-7 if net.get("dtype") == "float32" else 2.2e-16
    return max(sol.n * (1e3 * eps * float(net.get("c_hat") or 1.0)) ** 2, 1e-25 * L0)


def _rows_norm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.asarray(a, dtype=np.float64).reshape(len(a), -1) ** 2, axis=1))


def compare(sol, reference) -> Comparison:
    r"""The errors of ``sol`` against ``reference`` at the times both saved.

    Args:
        sol: a :class:`gflow.Solution` (a flow or gradient descent), or the path of a saved one.
        reference: a run of the same network on the same data — typically the flow at a tight tolerance, saved
            at ``sol``'s times (``saveat=sol.t``; GD's t = kδ) — or the path of one.  float32 and float64 runs of
            one network compare.

    Returns:
        a :class:`Comparison`: relative errors of the loss, residual, test loss and test mean squared error at
        the shared times, of the features at the shared feature times, of the weights at the last shared weight
        time; ``print()`` it for a summary and table.

    Raises:
        TypeError: an argument is not a Solution or a path.
        ValueError: the runs differ in their network or training data, or share no saved time (the message
            gives both runs' time ranges and how to save at common times).
    """
    sol, ref = as_solution(sol, "sol"), as_solution(reference, "reference")
    _check_same_problem(sol, ref)
    i, j = _shared(sol.t, ref.t)
    if not np.any(np.asarray(ref.t)[j] > 0.0):  # (both start at t = 0, where they agree by construction)
        raise ValueError(
            f"sol and reference share no saved time after t = 0 (sol: {len(sol.t)} times in "
            f"[{sol.t[0]:.6g}, {sol.t[-1]:.6g}], "
            f"reference: {len(ref.t)} in [{ref.t[0]:.6g}, {ref.t[-1]:.6g}], matched within {TIME_TOL:g} relative): "
            "solve the reference with saveat=sol.t, or save both at common times (GD saves t = kδ at every "
            "save_every-th step)")
    def at(values, k) -> np.ndarray:  # (indexed first: a float32 run's H is not copied whole)
        return np.asarray(values)[k].astype(np.float64)

    loss, loss_ref = at(sol.loss, i), at(ref.loss, j)
    r, r_ref, f, f_ref = at(sol.residual, i), at(ref.residual, j), at(sol.output, i), at(ref.output, j)
    L0 = float(ref.loss[0])
    floor = max(_loss_floor(sol, L0), _loss_floor(ref, L0))
    resolved = loss_ref > floor  # (below: both losses are rounding, their relative difference says nothing)
    test = (sol.X_test is not None and ref.X_test is not None and sol.test_loss is not None
            and ref.test_loss is not None and _same(sol.X_test, ref.X_test, 1e-6) and _same(sol.y_test, ref.y_test,
                                                                                             1e-6))
    fi, fj = _shared(sol.feature_t, ref.feature_t) if sol.H is not None and ref.H is not None else ([], [])
    H, H_ref = (at(sol.H, fi), at(ref.H, fj)) if len(fi) else (np.zeros((0,)), np.zeros((0,)))
    weight_t = weight_error = None
    # the weights: both runs' ends where they end together, else the last time at which both kept W
    if abs(float(sol.t[-1]) - float(ref.t[-1])) <= TIME_TOL * max(1.0, abs(float(ref.t[-1]))):
        weight_t, W, W_ref = float(ref.t[-1]), sol.W_final, ref.W_final
    else:
        wi, wj = (_shared(sol.weight_t, ref.weight_t) if sol.W is not None and ref.W is not None
                  else (np.zeros(0, dtype=int), np.zeros(0, dtype=int)))
        if len(wi):
            weight_t, W, W_ref = float(ref.weight_t[wj[-1]]), sol.W[wi[-1]], ref.W[wj[-1]]
    if weight_t is not None:
        W, W_ref = np.asarray(W, dtype=np.float64), np.asarray(W_ref, dtype=np.float64)
        if np.isfinite(W).all() and np.isfinite(W_ref).all():  # (a file saved without weights holds NaN)
            weight_error = float(_rel(np.linalg.norm(W - W_ref), np.linalg.norm(W_ref)))
        else:
            weight_t = None
    solver_ref = ref.config.get("solver", {})
    rtol_ref = solver_ref.get("rtol") if ref.kind != "gd" and solver_ref.get("step") is None else None
    estimate = None if sol.error_estimate is None else np.asarray(sol.error_estimate, dtype=np.float64)[i]
    estimate_ref = None if ref.error_estimate is None else np.asarray(ref.error_estimate, dtype=np.float64)[j]
    return Comparison(
        t=np.asarray(ref.t, dtype=np.float64)[j], loss=loss, loss_ref=loss_ref,
        loss_rel_error=np.where(resolved, _rel(loss - loss_ref, loss_ref), np.nan),
        loss_abs_error=_rel(loss - loss_ref, np.full_like(loss_ref, L0)), loss_floor=floor,
        residual_rel_error=np.where(resolved, _rel(_rows_norm(r - r_ref), _rows_norm(r_ref)), np.nan),
        output_abs_error=np.max(np.abs(f - f_ref), axis=1),
        test_loss_rel_error=(_rel(np.asarray(sol.test_loss)[i] - np.asarray(ref.test_loss)[j],
                                  np.asarray(ref.test_loss)[j]) if test else None),
        test_error_rel_error=(_rel(np.asarray(sol.test_error)[i] - np.asarray(ref.test_error)[j],
                                   np.asarray(ref.test_error)[j]) if test else None),
        error_estimate=estimate, error_estimate_ref=estimate_ref,
        feature_t=np.asarray(ref.feature_t, dtype=np.float64)[fj] if len(fj) else np.zeros(0),
        feature_rel_error=_rel(_rows_norm(H - H_ref), _rows_norm(H_ref)) if len(fi) else np.zeros(0),
        weight_t=weight_t, weight_rel_error=weight_error,
        label=_label(sol), label_ref=_label(ref), status=sol.status, status_ref=ref.status,
        rtol_ref=None if rtol_ref is None or not math.isfinite(rtol_ref) else float(rtol_ref),
        n_saved=len(sol.t),
    )
