r"""Publication-style figures of a :class:`gflow.Solution` (matplotlib, object-oriented API).

Every function accepts a :class:`gflow.Solution` or the path of a saved ``.nc`` file and follows one rule:

* ``ax=`` says where to draw: None (the default) draws a new figure; the Figure an earlier call returned draws
  into its panels (another run overlaid: ``fig = plot_loss_bounds(a); plot_loss_bounds(b, ax=fig)``); an empty
  Figure (or SubFigure) of yours gets the panels added; or Axes of yours — one Axes for the one-panel plots
  (:func:`plot_loss_bounds`, :func:`plot_feature_scatter`, :func:`plot_gram_spectrum`, :func:`plot_sweep`), a
  sequence of them for the multi-panel ones (3 for :func:`plot_quantities`, 2 for :func:`plot_comparison`, whose
  ``axes=`` is the same argument).  :func:`plot_summary` lays out its own panels: it takes None or an empty
  Figure.
* Every function returns the Figure it drew into; its panels are ``fig.axes`` (a one-panel plot's Axes is
  ``fig.axes[0]``).

Nothing is integrated here: the bounds are evaluated from the running integrals stored in the solution, with the
same exponents as :func:`gflow.certify` (EQUATIONS.md §9):

==== =====================================================================================
T3   L_t ≤ L_0 exp(−2∫λ_min(M_s) ds)
T4   L_t ≤ L_0 exp(−2κ_M λ_min(G) ∫ν_s ds)
T5   L_t ≤ L_0 exp(−2κ_M ĉ² λ_min(G) K_σ′² ∫η_s ds)
T6   L_t ≤ L_0 exp(−2κ_M ĉ² λ_min(G) K_σ′² t)   (PL bound (16), |σ′| ≥ K_σ′ everywhere)
T10  L_t ≤ L_0 exp(−ρ t)                         (realised Theorem 1, ρ from the certificate)
==== =====================================================================================

A bound is drawn only when the certificate says its hypotheses hold, and only over the certificate's
window: where the loss is finite and above the floor max(n·(1e3·atol·ĉ)², 1e-25·L₀) of :func:`gflow.certify`.

Functions: :func:`plot_loss_bounds`, :func:`plot_quantities`, :func:`plot_feature_scatter`,
:func:`plot_gram_spectrum`, :func:`plot_summary`, :func:`plot_comparison` (a :func:`gflow.compare` result),
and :func:`plot_sweep` for a sweep (:func:`gflow.open_sweep`; one of its runs is a Solution again with
:func:`gflow.run_solution`).  matplotlib is imported lazily.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ._validate import check_flag, describe, is_int
from .solution import Solution, check_output_path

#: font sizes used by every figure (points)
FONT = {"label": 10, "tick": 9, "legend": 8, "title": 10.5, "suptitle": 12, "note": 8}

#: the bounds :func:`plot_loss_bounds` knows, in the order they are drawn
BOUND_KEYS = ("T3", "T4", "T5", "T6", "T10")

_BOUND_STYLE = {
    "T3": dict(color="tab:blue"),
    "T4": dict(color="tab:orange"),
    "T5": dict(color="tab:green"),
    "T6": dict(color="tab:purple"),
    "T10": dict(color="tab:red"),
}
#: each bound's phase in its run's dash pattern (a fraction of the period), drawn in this order (the later on top):
#: where two bounds coincide — T4 and T5 near L₀ on a slow run — the upper one's gaps fall on the lower one's
#: dashes (≥ 20 % of its length shows, 40 % for neighbours such as T4 and T5), so no bound hides under another
_BOUND_PHASE = {"T3": 0.0, "T4": 0.4, "T5": 0.8, "T6": 0.2, "T10": 0.6}
#: runs overlaid on one Axes by :func:`plot_loss_bounds`: the loss (and test) colour of the second, third, ...
#: run (the first is black), and each run's dash pattern for its bounds (which keep their colours)
_RUN_COLORS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
_RUN_DASHES = ((0, (4, 4)), (0, (1.2, 1.8)), (0, (6, 2, 1, 2)), (0, (10, 4)), (0, (3, 1.5, 1, 1.5, 1, 1.5)))


def _bound_dashes(key: str, dashes) -> tuple:
    """The dash pattern of bound ``key`` in a run whose bounds are dashed ``dashes``: shifted by its phase."""
    offset, seq = dashes
    return (offset + _BOUND_PHASE[key] * sum(seq), seq)


# ---------------------------------------------------------------------------------------------------------
# helpers


def _solution(sol: "Solution | str | os.PathLike") -> Solution:
    if isinstance(sol, Solution):
        return sol
    if isinstance(sol, (str, os.PathLike)):
        return Solution.load(Path(sol))
    raise TypeError(f"sol must be a gflow.Solution or the path of a saved .nc file, got {describe(sol)}")


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _check_axes(ax, name: str = "ax"):
    """``ax`` if it is a matplotlib Axes (a str or a number failed later with an AttributeError naming neither)."""
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(f"{name} must be a matplotlib Axes, got {describe(ax)}")
    return ax


def _check_axes_list(axes, count: int, name: str = "axes") -> list:
    """``axes`` (any nesting, e.g. a subplots array) as a list of ``count`` checked Axes."""
    if isinstance(axes, (str, bytes)) or not np.iterable(axes):
        raise TypeError(f"{name} must be a Figure or a sequence of {count} matplotlib Axes, got {describe(axes)}")
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != count:
        raise ValueError(f"{name} must hold {count} Axes, got {len(axes)}")
    return [_check_axes(a, f"{name}[{i}]") for i, a in enumerate(axes)]


def _is_figure(obj) -> bool:
    from matplotlib.figure import FigureBase

    return isinstance(obj, FigureBase)


def _new_axes(ax, figsize=(6.4, 4.4), layout=None):
    """(Axes, made) for a one-panel plot from its ``ax=``: None (a new figure: made), an Axes, or a Figure — one
    an earlier call returned (its one Axes) or an empty one (an Axes is added to it)."""
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=figsize, layout=layout)
        return ax, True
    if _is_figure(ax):
        panels = ax.axes
        if not panels:
            return ax.add_subplot(), False
        if len(panels) > 1:
            raise ValueError(f"ax is a Figure with {len(panels)} Axes, and this plot has one panel: pass the Axes to "
                             "draw into (e.g. ax=fig.axes[0])")
        return panels[0], False
    return _check_axes(ax), False


def _panel_axes(ax, count: int, make, name: str = "ax"):
    """(figure, axes, made) for a plot of ``count`` panels from its ``ax=``: None (``make(None)`` draws a new
    figure), a Figure (its ``count`` Axes, or ``make(fig)`` adds them to an empty one) or ``count`` Axes.
    ``made`` is True where the panels were made here (laid out here, on a figure of its own only where new)."""
    if ax is None:
        fig, axes = make(None)
        return fig, list(np.ravel(axes)), True
    if _is_figure(ax):
        if not ax.axes:
            fig, axes = make(ax)
            return fig, list(np.ravel(axes)), True
        ax = ax.axes
    axes = _check_axes_list(ax, count, name)
    return axes[0].figure, axes, False


def _one_of(ax, axes, where: str):
    """The multi-panel plots' ``ax=``, also spelt ``axes=`` (their name before the plots shared one rule)."""
    if axes is None:
        return ax
    if ax is not None:
        raise TypeError(f"{where}: give ax= or axes= (the same argument), not both")
    return axes


def _style(ax) -> None:
    ax.tick_params(labelsize=FONT["tick"])
    ax.grid(True, which="major", alpha=0.25, lw=0.6)


def _legend(ax, **kw) -> None:
    kw.setdefault("loc", "best")
    kw.setdefault("handlelength", 2.6)
    leg = ax.legend(fontsize=FONT["legend"], framealpha=0.85, **kw)
    leg.get_frame().set_linewidth(0.5)
    if leg.get_title() is not None:
        leg.get_title().set_fontsize(FONT["legend"])


def _time_label(sol: Solution) -> str:
    return "t = k·δ (GD steps × δ)" if sol.kind == "gd" else "flow time t"


def _sweep_time_label(ds) -> str:
    """:func:`_time_label` of a sweep's runs, from its configuration's solver kind (GD: t = kδ)."""
    import json

    try:
        kind = json.loads(ds.attrs["config"])["solver"].get("kind")
    except (KeyError, TypeError, ValueError, AttributeError):
        kind = None
    return "t = k·δ (GD steps × δ)" if kind == "gradient_descent" else "flow time t"


def _activation_name(sol: Solution) -> str:
    act = sol.config.get("network", {}).get("activation", {})
    if isinstance(act, dict):
        name = str(act.get("name", "?"))
        params = ", ".join(f"{k}={v}" for k, v in act.items() if k != "name")
        return f"{name}({params})" if params else name
    return str(act)


def _embedding_name(sol: Solution) -> str:
    emb = sol.config.get("network", {}).get("embedding", {}) or {}
    kind = emb.get("kind", "identity")
    if kind == "random_features":
        return f"P-3L, D = {emb.get('D')}"
    if kind == "deep_random_features":
        return f"P-{emb.get('depth')}L, D = {emb.get('D')}"
    if kind == "identity":
        return "shallow"
    return str(kind)


def _set_time_limits(ax, t: np.ndarray) -> None:
    """The time axis over the saved times; a run with one saved time (stopped at t = 0) keeps matplotlib's own
    limits (identical limits warned "makes transformation singular", four times per summary figure)."""
    if float(t[-1]) > float(t[0]):
        ax.set_xlim(float(t[0]), float(t[-1]))


def _scaling_name(spec) -> str:
    """A recorded scaling's name (a custom one is recorded as the dict of its fields)."""
    return spec.get("name", "?") if isinstance(spec, dict) else spec


def _method_name(sol: Solution) -> str:
    solver = sol.config.get("solver", {})
    if sol.kind == "gd":
        return f"GD, δ = {solver.get('step'):g}" if solver.get("step") is not None else "GD"
    method = solver.get("method", "?")
    if solver.get("step") is not None:
        return f"{method}, h = {solver['step']:g}"
    rtol = solver.get("rtol")
    return f"{method}, rtol = {rtol:.0e}" if rtol is not None else str(method)


def _run_fields(sol: Solution) -> dict[str, str]:
    """The parts of :func:`run_description`: activation, m, n, embedding, scaling, method."""
    net = sol.config.get("network", {})
    return {"activation": _activation_name(sol), "m": f"m = {sol.m}", "n": f"n = {sol.n}",
            "embedding": _embedding_name(sol), "scaling": f"scaling {_scaling_name(net.get('scaling', '?'))!r}",
            "method": _method_name(sol)}


def run_description(sol: "Solution | str | os.PathLike") -> str:
    """One line naming the run: activation, m, n, embedding, scaling, method (and a failure status)."""
    sol = _solution(sol)
    text = ", ".join(_run_fields(sol).values())
    if sol.status != "success":
        text += f"  [status: {sol.status}]"
    return text


def _certificate(sol: Solution):
    """gf.certify(sol), or None (with a warning) when it cannot be computed."""
    if sol.eta is None:
        return None
    from .theory.certify import certify

    try:
        return certify(sol)
    except Exception as exc:  # a plot must not fail because a certificate does
        warnings.warn(f"no bounds drawn: the certificate could not be computed ({exc})", stacklevel=3)
        return None


def _bound_exponent(sol: Solution, key: str, check) -> np.ndarray | None:
    """E_t with bound L_0 e^{−E_t}, with the exponents of :func:`gflow.certify`."""
    th = sol.theory
    coef, lmin_G = th.get("kernel_coef", 1.0), th.get("lam_min_G", math.nan)
    c_hat, K, Kg = th.get("c_hat", math.nan), th.get("K_sigma", 0.0), th.get("K_sigma_global", 0.0)
    if key == "T3":
        return None if sol.int_lam_min_M is None else 2.0 * sol.int_lam_min_M
    if key == "T4":
        return None if sol.int_nu is None else 2.0 * coef * lmin_G * sol.int_nu
    if key == "T5":
        return None if sol.int_eta is None else 2.0 * coef * c_hat**2 * lmin_G * K**2 * sol.int_eta
    if key == "T6":
        return 2.0 * coef * c_hat**2 * lmin_G * Kg**2 * sol.t
    if key == "T10":
        return None if check.guaranteed_rate is None else check.guaranteed_rate * sol.t
    raise ValueError(f"unknown bound {key!r}; choose from {BOUND_KEYS}")


def _bound_formula(key: str, coef: float) -> str:
    """The exponent E_t of the bound L_t ≤ L_0 e^{−E_t}, as mathtext."""
    k = "" if abs(coef - 1.0) < 1e-12 else r"\kappa_M"
    return {
        "T3": r"$E_t=2\int_0^t\lambda_{\min}(M_s)\,ds$",
        "T4": rf"$E_t=2{k}\lambda_{{\min}}(G)\int_0^t\nu_s\,ds$",
        "T5": rf"$E_t=2{k}\hat c^2\lambda_{{\min}}(G)K_{{\sigma'}}^2\int_0^t\eta_s\,ds$",
        "T6": rf"(PL) $E_t=2{k}\hat c^2\lambda_{{\min}}(G)K_{{\sigma'}}^2\,t$",
        "T10": r"(Thm 1) $E_t=\rho\,t$",
    }[key]


def _interval_text(iv) -> str:
    if iv is None:
        return "none"
    lo, hi = iv
    f = lambda x: ("−∞" if x < 0 else "∞") if math.isinf(x) else f"{x:.3g}"  # noqa: E731
    return f"[{f(lo)}, {f(hi)}]"


def _empty_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=FONT["note"],
            color="0.35", wrap=True)


# ---------------------------------------------------------------------------------------------------------
# 1. loss against the certified bounds


def plot_loss_bounds(sol: "Solution | str | os.PathLike", ax=None, *, bounds: Sequence[str] = BOUND_KEYS,
                     test: str | None = "error", title: bool | str = True, label: str | None = None):
    r"""Training loss (log scale) against every applicable exponential bound of the certificate.

    Several runs on one Axes (``fig = plot_loss_bounds(ours); plot_loss_bounds(ntk, ax=fig)``, e.g. to compare
    scalings): the first run's loss is black, the next ones' brown, pink, olive, cyan, grey; a bound keeps its
    colour and takes its run's dash pattern (dashed, dotted, dash-dotted, ...); every legend entry starts with
    its run's name — ``label``, or else the parts of :func:`run_description` in which the runs differ — and the
    title keeps the parts they share.  The y- and time ranges cover every run; the shaded slack is the first
    run's only.

    Args:
        sol: a :class:`gflow.Solution` or the path of a saved one.
        ax: where to draw (the module's rule): None for a new figure, the Figure of an earlier call (an overlay),
            an empty Figure, or an Axes.
        bounds: which of ``"T3", "T4", "T5", "T6", "T10"`` to draw; each is drawn only when
            :func:`gflow.certify` finds its hypotheses met, over the certificate's window, as a dashed line
            whose legend gives the guaranteed average rate E_t/t at the window's end and its slack (fitted
            decay rate of L / guaranteed rate).  Each bound's dashes are shifted by its own phase, so that
            bounds which coincide (T4 and T5 near L_0 on a slow run) show both colours, alternating.  The gap
            between the loss and the tightest drawn bound is shaded.
        test: ``"error"`` (test mean squared error), ``"loss"`` (½Σ over test points, comparable to L) or
            None; drawn dash-dotted when the run has test data.
        title: True for a title naming the run (on an overlay: what the runs share), False for none, or a string.
        label: the run's name in the legend, in front of each of its entries (default: none for a run alone,
            what tells it apart from the others on an overlay).

    The legend sits under the Axes, below the x label, so that the y-range is the data's: a figure made here
    is sized to hold it (taller by its height, wider where it is wider than the Axes); into given Axes,
    ``tight_layout`` or ``savefig(..., bbox_inches="tight")`` makes room for it.

    Returns:
        the Figure; in its Axes (``fig.axes[0]``) the first line is the training loss (``ydata`` is
        ``sol.loss``); the bound lines carry ``gid = "bound:T3"`` etc., the test line ``gid = "test"``; a k-th
        overlaid run (k = 1, 2, ...) the same gids with ``"@k"`` appended (``"loss@1"``, ``"bound:T3@1"``).
    """
    sol = _solution(sol)
    if isinstance(bounds, str):  # one name: a one-element list, not its letters
        bounds = [bounds]
    if not isinstance(bounds, (list, tuple)):
        raise TypeError(f"bounds must be a bound name or a list of them from {BOUND_KEYS}, got {describe(bounds)}")
    if not (isinstance(title, str) or isinstance(title, (bool, np.bool_))):
        raise TypeError(f"title must be True, False or a string, got {describe(title)}")
    unknown = [b for b in bounds if b not in BOUND_KEYS]
    if unknown:
        raise ValueError(f"unknown bound(s) {unknown}; choose from {BOUND_KEYS}")
    if not (test is None or isinstance(test, str)) or test not in ("error", "loss", None):
        raise ValueError(f"test must be 'error', 'loss' or None, got {test!r}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string (the run's name in the legend) or None, got {describe(label)}")
    ax, new = _new_axes(ax, figsize=(7.0, 5.0))
    runs = getattr(ax, "_gflow_runs", [])  # the runs this function drew into ax before (an overlay)
    k = len(runs)
    suffix = f"@{k}" if k else ""
    color = "black" if k == 0 else _RUN_COLORS[(k - 1) % len(_RUN_COLORS)]
    dashes = _RUN_DASHES[k % len(_RUN_DASHES)]
    run = {"fields": _run_fields(sol), "label": label, "lines": [], "bounds": [], "dashes": dashes}
    t, L = np.asarray(sol.t, float), np.asarray(sol.loss, float)
    L0 = float(L[0])
    cert = _certificate(sol)
    emp = cert.empirical_rate if cert is not None else None

    text = r"training loss $L_t$" + (f" (fitted rate {emp:.3g})" if emp is not None else "")
    (loss_line,) = ax.plot(t, L, color=color, lw=1.8, label=text, zorder=5)
    loss_line.set_gid("loss" + suffix)
    run["lines"].append((loss_line, text))

    t_end = cert.window[1] if cert is not None else float(t[-1])
    win = t <= t_end * (1 + 1e-12) + 1e-300
    if not L0 > 0:  # (a run from a global minimum: an empty log axis, one-point "bounds" in the legend)
        pos = L[np.isfinite(L) & (L > 0)]
        _empty_note(ax, "$L_0$ = 0: the run starts at an exact fit, and the bounds $L_0e^{-E_t}$ are 0"
                    + (f"\n(the loss after it is rounding: at most {pos.max():.2g})" if pos.size else ""))
        cert, t_end = None, float(t[-1])
    elif cert is not None and np.count_nonzero(win) < 2:  # (only t = 0 to bound: one-point legend entries)
        cert = None
    lows = [float(np.min(L[L > 0]))] if np.any(L > 0) else []
    highs = [L0]
    tightest = None
    gd = sol.kind == "gd"
    info = False  # a drawn bound that the certificate reports for information only (σ with a kink)
    if cert is not None:
        coef = sol.theory.get("kernel_coef", 1.0)
        for key in bounds:
            check = cert.check(key)
            if not check.applicable:
                continue
            E = _bound_exponent(sol, key, check)
            if E is None:
                continue
            if check.vacuous:  # (a legend entry, no line: a flat or rounding-rate line at L₀ read as a bound)
                why = (f"λ_min(G) = {sol.theory.get('lam_min_G', math.nan):.2g} ≈ 0" if key in ("T4", "T5", "T6")
                       else "λ_min(M) ≈ 0" if key == "T3" and (check.guaranteed_rate or 0.0) > 0
                       else "its exponent ≤ 0")
                text = f"{key} {_bound_formula(key, coef)}: vacuous ({why})"
                (line,) = ax.plot([], [], lw=1.4, label=text, ls=_bound_dashes(key, dashes), **_BOUND_STYLE[key])
                line.set_gid(f"vacuous:{key}{suffix}")
                run["lines"].append((line, text))
                run["bounds"].append((key, f"{key} vacuous", _bound_formula(key, coef)))
                continue
            B = L0 * np.exp(-np.asarray(E, float)[win])
            parts = [f"{key} {_bound_formula(key, coef)}"]
            short = key  # (an overlay's legend: "T3 0.178 (1.19×)")
            if check.guaranteed_rate is not None:
                g = check.guaranteed_rate
                if g > 0:
                    s, short = f"rate {g:.3g}", f"{key} {g:.3g}"
                    if check.tightness is not None and check.tightness > 0:
                        s += f" ({check.tightness:.3g}× slack)"
                        short += f" ({check.tightness:.3g}×)"
                    parts.append(s)
                else:
                    parts.append("vacuous")
                    short += " vacuous"
            if check.held is False:
                parts.append("VIOLATED" if check.counts else ("not met by GD" if gd else "not met"))
                short += " " + parts[-1]
            if not check.counts and not gd:
                info = True
                parts.append("information")
                short += " information"
            run["bounds"].append((key, short, _bound_formula(key, coef)))
            text = ", ".join(parts)
            (line,) = ax.plot(t[win], B, lw=1.4, label=text, zorder=4, ls=_bound_dashes(key, dashes),
                             **_BOUND_STYLE[key])
            line.set_gid(f"bound:{key}{suffix}")
            run["lines"].append((line, text))
            pos = B[B > 0]
            if pos.size:
                lows.append(float(pos.min()))
            if tightest is None or (B[-1] < tightest[1][-1]):
                tightest = (key, B)
        if tightest is not None and k == 0:
            B = tightest[1]
            ax.fill_between(t[win], np.minimum(L[win], B), B, color=_BOUND_STYLE[tightest[0]]["color"],
                            alpha=0.10, lw=0, zorder=1)

    if test is not None and sol.test_error is not None:
        vals = np.asarray(sol.test_error if test == "error" else sol.test_loss, float)
        n_te = 0 if sol.y_test is None else len(sol.y_test)
        lab = (rf"test error $\frac{{1}}{{n_{{te}}}}\sum(f-y)^2$ ($n_{{te}}$ = {n_te})" if test == "error"
               else rf"test loss $\frac{{1}}{{2}}\sum(f-y)^2$ ($n_{{te}}$ = {n_te})")
        (tl,) = ax.plot(t, vals, color="0.45" if k == 0 else color, lw=1.5, ls="-.", label=lab, zorder=3)
        tl.set_gid("test" + suffix)
        run["lines"].append((tl, lab))
        run["test"] = (tl, "test error" if test == "error" else "test loss")
        good = vals[np.isfinite(vals) & (vals > 0)]
        if good.size:
            highs.append(float(good.max()))
            lows.append(float(good.min()))

    with np.errstate(over="ignore"):  # autoscaling a diverged run (loss ~ 1e300) overflows harmlessly
        ax.set_yscale("log")
    # y-range: the initial loss (or test values) on top, growth beyond 1e6·L_0 (divergence) clipped;
    # below: the smallest positive value, at most 32 decades down (beyond that it is rounding noise)
    finite_L = L[np.isfinite(L)]
    if finite_L.size:
        highs.append(min(float(finite_L.max()), 1e6 * L0))
    top = 2.0 * max(h for h in highs if math.isfinite(h))
    bottom = min(lows) / 2.0 if lows else top * 1e-12
    yrange = getattr(ax, "_gflow_yrange", None)
    if k and yrange is not None:  # (an overlay: the y-range of every run)
        bottom, top = min(bottom, yrange[0]), max(top, yrange[1])
    bottom = max(bottom, top * 1e-32)
    if bottom < top:  # (the data's range: the legend is below the axes, off the curves)
        ax._gflow_yrange = (bottom, top)
        ax.set_ylim(bottom, top)
    if k:
        lo, hi = ax.get_xlim()
        _set_time_limits(ax, np.array([min(lo, float(t[0])), max(hi, float(t[-1]))]))
    else:
        _set_time_limits(ax, t)
        ax.set_xlabel(_time_label(sol), fontsize=FONT["label"])
    ax.set_ylabel("training loss L (eq. 6)", fontsize=FONT["label"])
    if t_end < float(t[-1]) * (1 - 1e-12):  # (a legend entry: a note in the span overlapped the test line)
        # why the certificate's window ends there: a loss that is not finite (it was labelled "below what the
        # tolerance resolves"), or one below gf.certify's floor max(n(10³·atol·ĉ)², 1e-25·L₀), where the run's
        # atol or float64 no longer vouches for its digits (the demo's loss was still accurate to 1e-8 there,
        # against an rtol-1e-12 reference)
        after = L[t > t_end * (1 + 1e-12)]
        why = ("loss not finite: NaN or inf" if not np.all(np.isfinite(after)) else
               "loss below the certificate's atol/float64 floor")
        text = f"grey: no bounds ({why})"
        span = ax.axvspan(t_end, float(t[-1]), color="0.5", alpha=0.08, lw=0, zorder=0, label=text)
        span.set_gid("no-bounds" + suffix)
        run["lines"].append((span, text))
    run["gd"] = gd
    runs = runs + [run]
    ax._gflow_runs = runs
    common, handles = _name_runs(runs)
    if title:
        ax.set_title(title if isinstance(title, str) else run_description(sol) if k == 0 else common,
                     fontsize=FONT["title"])
    _style(ax)
    if any(str(ln.get_gid()).startswith("bound:") for ln in ax.get_lines()):
        head = (r"dashed: bounds $L_t\leq L_0\,e^{-E_t}$" if k == 0 else
                r"bounds $L_t\leq L_0\,e^{-E_t}$: colour per bound, dash pattern per run")
        head += " of the flow (information for GD)" if any(r["gd"] for r in runs) else ""
        if info or any("information" in short for r in runs for _, short, _ in r["bounds"]):
            head += "\nσ has a kink: those marked 'information' are not guaranteed"
        _legend_below(ax, title=head + "\nrate = average $E_t/t$ over the drawn range", **handles)
    else:
        _legend_below(ax, **handles)
    if new or getattr(ax, "_gflow_own_figure", False):  # (an overlay into the figure made here: it grows too)
        ax._gflow_own_figure = True
        _fit_figure_to_legend(ax, (7.0, 5.0))
    return ax.figure


def _renderer(fig):
    try:
        return fig.canvas.get_renderer()
    except AttributeError:  # backends without get_renderer
        return fig._get_renderer()


def _legend_below(ax, gap: float = 6.0, **kw) -> None:
    """The legend under the Axes — below its tick labels and x label, ``gap`` points down, left-aligned with it —
    off the curves, so that the y-range stays the data's.  ``tight_layout`` and ``savefig(bbox_inches="tight")``
    make room for it (it is part of the Axes' tight bounding box)."""
    from matplotlib.transforms import ScaledTranslation

    fig = ax.figure
    renderer = _renderer(fig)
    axis = ax.xaxis.get_tightbbox(renderer)
    drop = 0.0 if axis is None else max(ax.get_window_extent(renderer).y0 - axis.y0, 0.0) / fig.dpi
    below = ax.transAxes + ScaledTranslation(0.0, -(drop + gap / 72.0), fig.dpi_scale_trans)
    _legend(ax, loc="upper left", bbox_to_anchor=(0.0, 0.0), bbox_transform=below, borderaxespad=0.0, **kw)


def _fit_figure_to_legend(ax, size: tuple[float, float]) -> None:
    """Size the figure of ``ax`` (made by this module, one Axes) as ``size`` plus the legend under the Axes: taller
    by its height, and wider where it is wider than the Axes (not squeezing them), then ``tight_layout``."""
    fig = ax.figure
    renderer = _renderer(fig)
    box = ax.get_legend().get_window_extent(renderer)
    width, height = size[0], size[1] + box.height / fig.dpi + 0.1
    for _ in range(3):
        fig.set_size_inches(width, height)
        fig.tight_layout()
        over = (ax.get_legend().get_window_extent(renderer).x1 - ax.get_window_extent(renderer).x1) / fig.dpi
        if over <= 0.01:
            break
        width += over


def _name_runs(runs: list[dict]) -> tuple[str, dict]:
    """Name the runs drawn on one Axes by :func:`plot_loss_bounds` (a run's ``label``, or the parts of
    :func:`run_description` in which the runs differ).  One run: its legend entries, prefixed with its label if
    it has one.  Several: a compact legend — per run its loss, one entry for its bounds (its dash pattern, their
    rates), its test line — and per bound its colour.  Returns the parts the runs share (an overlay's title)
    and the ``handles``/``labels`` for the legend (empty for one run: its artists' own labels)."""
    from matplotlib.lines import Line2D

    keys = list(runs[0]["fields"])
    differ = [key for key in keys if len({r["fields"][key] for r in runs}) > 1]
    names = [r["label"] if r["label"] is not None else ", ".join(r["fields"][key] for key in differ) for r in runs]
    auto = list(names)
    for i, name in enumerate(auto):  # (the same description twice, e.g. two seeds: numbered)
        if runs[i]["label"] is None and (not name or auto.count(name) > 1):
            names[i] = f"{name} (run {i + 1})" if name else f"run {i + 1}"
    common = ", ".join(runs[0]["fields"][key] for key in keys if key not in differ)
    if len(runs) == 1:
        for artist, text in runs[0]["lines"]:
            artist.set_label(text if runs[0]["label"] is None else f"{names[0]}: {text}")
        return common, {}
    handles, labels, formulas = [], [], {}
    for r, name in zip(runs, names):
        loss_line, loss_text = r["lines"][0]
        handles.append(loss_line)
        labels.append(f"{name}: {loss_text}")
        if r["bounds"]:
            handles.append(Line2D([], [], color="0.35", lw=1.4, ls=r["dashes"]))
            labels.append(f"{name}: bounds " + ", ".join(short for _, short, _ in r["bounds"]))
        if "test" in r:
            handles.append(r["test"][0])
            labels.append(f"{name}: {r['test'][1]}")
        for artist, text in r["lines"][1:]:
            if str(artist.get_gid()).startswith("no-bounds"):
                handles.append(artist)
                labels.append(f"{name}: {text}")
        for key, _, formula in r["bounds"]:
            formulas.setdefault(key, formula)
    for key in BOUND_KEYS:
        if key in formulas:
            handles.append(Line2D([], [], color=_BOUND_STYLE[key]["color"], lw=1.4))
            labels.append(f"{key} {formulas[key]}")
    return common, {"handles": handles, "labels": labels}


def _set_room(ax, lo: float, hi: float, *, log: bool) -> None:
    """Remember the data's y-range of ``ax``; :func:`_room_for_legend` then keeps the legend clear of it."""
    ax._gflow_room = (float(lo), float(hi), bool(log))
    ax.set_ylim(lo, hi)


def _room_for_legend(ax, margin: float = 0.03) -> None:
    """Raise the upper y-limit so that every curve lies below the legend at the top of the axes.

    The legend's height (in axes fraction) is measured with the figure's renderer, so call again after the
    layout changes (as :func:`plot_summary` does).  (The loss panel's legend is under the axes instead.)
    """
    room = getattr(ax, "_gflow_room", None)
    leg = ax.get_legend()
    if room is None or leg is None:
        return
    lo, hi, log = room
    renderer = _renderer(ax.figure)
    h = leg.get_window_extent(renderer).height / max(ax.get_window_extent(renderer).height, 1.0)
    h = min(h + margin, 0.6)
    a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
    b = a + (b - a) / (1.0 - h)  # the highest datum at height 1 − h
    ax.set_ylim(*((10.0**a, 10.0**b) if log else (a, b)))


def _refresh_rooms(fig) -> None:
    for a in fig.axes:
        _room_for_legend(a)


# ---------------------------------------------------------------------------------------------------------
# 2. theory quantities


def plot_quantities(sol: "Solution | str | os.PathLike", ax=None, *, stacked: bool = False, axes=None):
    r"""Three panels over t: η_t and η̄_t; μ_t and ν_t; λ_min(M_t) and λ_max(M_t) (log y).

    Args:
        sol: a :class:`gflow.Solution` or the path of a saved one.
        ax: where to draw (the module's rule): None for a new 1×3 figure (3×1 with ``stacked=True``), the Figure
            of an earlier call, an empty Figure (the panels are added), or three Axes.
        stacked: lay new panels out vertically with a shared t axis.
        axes: the same as ``ax``.

    Returns:
        the Figure.  The third panel also shows the Schur lower bound κ_M λ_min(G) ν_t ≤ λ_min(M_t)
        (EQUATIONS.md §9) when λ_min(G) > 0.  Legends sit above the curves (the y-range is extended).
    """
    sol = _solution(sol)
    stacked = check_flag(stacked, "stacked")
    ax = _one_of(ax, axes, "plot_quantities")

    def make(fig):
        if fig is None:
            size = (6.4, 7.5) if stacked else (14.0, 4.0)
            fig = _pyplot().figure(figsize=size)
        return fig, fig.subplots(3, 1, sharex=True) if stacked else fig.subplots(1, 3)

    fig, axes, new = _panel_axes(ax, 3, make, "axes" if ax is axes else "ax")
    a1, a2, a3 = axes
    t = np.asarray(sol.t, float)
    th = sol.theory

    def finite(*arrays):
        v = np.concatenate([np.asarray(x, float).ravel() for x in arrays if x is not None])
        return v[np.isfinite(v)]

    if sol.eta is None:
        for a in axes:
            _empty_note(a, "no theory quantities in this solution\n(rerun it with gf.rerun)")
    else:
        a1.plot(t, sol.eta, color="tab:blue", lw=1.6,
                label=rf"$\eta_t$ (I = {_interval_text(th.get('interval'))})")
        if sol.eta_bar is not None and np.any(np.isfinite(np.asarray(sol.eta_bar, float))):
            a1.plot(t, sol.eta_bar, color="tab:cyan", lw=1.4, ls="--",
                    label=rf"$\bar\eta_t$ ($I_0$ = {_interval_text(th.get('inner_interval'))})")
        a1.set_ylabel(r"fraction of neurons in I", fontsize=FONT["label"])
        a1.set_title(r"active fractions $\eta_t$, $\bar\eta_t$ (eq. 18)", fontsize=FONT["title"])
        v = finite(sol.eta, sol.eta_bar)
        _set_room(a1, 0.0, max(float(v.max()) if v.size else 1.0, 1e-3) * 1.05, log=False)

        a2.plot(t, sol.mu, color="tab:green", lw=1.6, label=r"$\mu_t$")
        if sol.nu is not None:
            a2.plot(t, sol.nu, color="tab:olive", lw=1.4, ls="--", label=r"$\nu_t$ ($c_i^2$-weighted)")
        a2.set_ylabel(r"$\min_a\frac{1}{m}\sum_i\sigma'(h_{ia})^2$", fontsize=FONT["label"])
        a2.set_title(r"derivative energies $\mu_t$, $\nu_t$", fontsize=FONT["title"])
        v = finite(sol.mu, sol.nu)
        _set_room(a2, 0.0, max(float(v.max()) if v.size else 1.0, 1e-3) * 1.05, log=False)

        lmin = None if sol.lam_min_M is None else np.asarray(sol.lam_min_M, float)
        if lmin is None or not np.any(np.isfinite(lmin)):
            _empty_note(a3, "λ(M_t) not recorded\n(not computed for n > 2000)")
        else:
            a3.plot(t, sol.lam_max_M, color="tab:red", lw=1.6, label=r"$\lambda_{\max}(M_t)$")
            a3.plot(t, lmin, color="tab:blue", lw=1.6, label=r"$\lambda_{\min}(M_t)$")
            coef, lmin_G = th.get("kernel_coef", 1.0), th.get("lam_min_G", math.nan)
            schur = None
            if sol.nu is not None and lmin_G > 0:
                schur = coef * lmin_G * np.asarray(sol.nu, float)
                a3.plot(t, schur, color="0.4", lw=1.2, ls=":",
                        label=r"$\kappa_M\lambda_{\min}(G)\,\nu_t$ (Schur)")
            v = finite(sol.lam_max_M, lmin, schur)
            v = v[v > 0]
            if not v.size:  # (M_t ≡ 0 — c = 0, a dead ReLU net, zero inputs: a log scale has nothing to show)
                a3.text(0.5, 0.75, "$M_t = 0$ at every saved time (no training signal)", transform=a3.transAxes,
                        ha="center", va="center", fontsize=FONT["note"], color="0.35", wrap=True)
            else:
                a3.set_yscale("log")
                lo_v, hi_v = float(v.min()), float(v.max())
                span = max(math.log10(hi_v / lo_v), 0.3)
                _set_room(a3, lo_v / 10 ** (0.06 * span), hi_v * 10 ** (0.06 * span), log=True)
        a3.set_ylabel(r"eigenvalue of $M_t=\kappa_M G\circ S_t$", fontsize=FONT["label"])
        a3.set_title(r"extreme eigenvalues of $M_t$", fontsize=FONT["title"])
    shared = new and stacked
    for i, a in enumerate(axes):
        if not shared or i == 2:
            a.set_xlabel(_time_label(sol), fontsize=FONT["label"])
        _set_time_limits(a, t)
        _style(a)
        handles = a.get_legend_handles_labels()[0]
        if handles:
            _legend(a, loc="upper right", ncol=len(handles), columnspacing=1.2, handlelength=2.2)
    if new and not fig.get_layout_engine():
        fig.tight_layout()
    for a in axes:
        _room_for_legend(a)
    return fig


_COMPARISON_COLORS = ("tab:red", "tab:purple", "tab:green", "tab:orange", "tab:brown", "tab:cyan", "tab:olive")


def plot_comparison(comparison, ax=None, *, label: str | None = None, axes=None):
    r"""Two panels over the shared times of a :class:`gflow.Comparison` (:func:`gflow.compare`): the loss of the
    run and of the reference (log y); the run's relative errors — loss, residual, test mean squared error — with
    the run's own error estimate and the reference's (or its rtol) for scale (log y; exact zeros, e.g. at t = 0,
    are left out).

    Several comparisons on one figure (``fig = plot_comparison(gf.compare(gd1, ref));
    plot_comparison(gf.compare(gd05, ref), ax=fig)``, e.g. GD at several steps against one flow): each run
    takes its own colour (the first red, then purple, green, orange, ...), its quantities keep their markers
    (loss ○, residual □, test MSE △) and line styles, and every legend entry starts with its run's name; the
    reference's loss and rtol are drawn once where the runs share them.

    Args:
        comparison: a :class:`gflow.Comparison`.
        ax: where to draw (the module's rule): None for a new 1×2 figure, the Figure of an earlier call (an
            overlay), an empty Figure (the panels are added), or two Axes.
        label: the run's name in the legend on an overlay (default: the comparison's label, e.g. "GD δ = 0.5").
        axes: the same as ``ax``.

    Returns:
        the Figure.  The error lines carry ``gid = "error:loss"``, ``"error:residual"``, ``"error:test"``,
        ``"estimate"``, ``"estimate:reference"`` (or ``"rtol:reference"``); a k-th overlaid run (k = 1, 2, ...)
        the same gids with ``"@k"`` appended.
    """
    from .compare import Comparison

    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a gflow.Comparison (from gf.compare(sol, reference)), got "
                        f"{describe(comparison)}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a string (the run's name in the legend) or None, got {describe(label)}")
    c = comparison
    ax = _one_of(ax, axes, "plot_comparison")

    def make(fig):
        fig = _pyplot().figure(figsize=(11.0, 4.0)) if fig is None else fig
        return fig, fig.subplots(1, 2)

    fig, axes, new = _panel_axes(ax, 2, make, "axes" if ax is axes else "ax")
    a1, a2 = axes
    runs = getattr(a2, "_gflow_comparisons", [])  # the comparisons drawn into these axes before (an overlay)
    k = len(runs)
    suffix = f"@{k}" if k else ""
    name = label if label is not None else c.label
    color = _COMPARISON_COLORS[k % len(_COMPARISON_COLORS)]
    t = np.asarray(c.t, float)

    def positive(values):
        v = np.asarray(values, float)
        return np.where(np.isfinite(v) & (v > 0), v, np.nan)

    run = {"name": name, "color": color, "lines": []}  # (lines that take the run's name and colour on an overlay)
    same_ref = any(r["label_ref"] == c.label_ref and r["t"].shape == t.shape and np.array_equal(r["t"], t)
                   and np.array_equal(r["loss_ref"], c.loss_ref, equal_nan=True) for r in runs)
    if not same_ref:
        (line,) = a1.plot(t, positive(c.loss_ref), color="black" if not k else "0.35", lw=1.8,
                          ls="-" if not k else ":", label=f"reference: {c.label_ref}")
        line.set_gid("loss:reference" + suffix)
    (line,) = a1.plot(t, positive(c.loss), color=color, lw=1.4, ls="--", marker="o", ms=3, label="loss")
    line.set_gid("loss" + suffix)
    run["lines"].append(line)
    a1.set_yscale("log")
    a1.set_ylabel(r"training loss $L_t$", fontsize=FONT["label"])
    a1.set_title("loss of the run and of the reference" if not k else "loss of the runs and of the reference",
                 fontsize=FONT["title"])
    first = not k  # (the first run keeps the residual blue and the test MSE grey of a figure of one run)
    lines = [("loss", c.loss_rel_error, dict(color=color, lw=1.6, marker="o", ms=3),
              r"loss $|L-L_{ref}|/L_{ref}$"),
             ("residual", c.residual_rel_error, dict(color="tab:blue" if first else color, lw=1.4, marker="s", ms=3,
                                                     ls="-" if first else "--"),
              r"residual $\|r-r_{ref}\|/\|r_{ref}\|$")]
    if c.test_error_rel_error is not None:
        lines.append(("test", c.test_error_rel_error, dict(color="0.45" if first else color, lw=1.4, ls="-.",
                                                           marker="^", ms=3), "test MSE (relative)"))
    if c.error_estimate is not None:
        lines.append(("estimate", c.error_estimate, dict(color=color, lw=1.2, ls=":"),
                      "the run's own error estimate"))
    if c.error_estimate_ref is not None and not same_ref:
        lines.append(("estimate:reference", c.error_estimate_ref, dict(color="black", lw=1.2, ls=":"),
                      "the reference's own error estimate"))
    drawn = 0
    for gid, values, style, text in lines:
        v = positive(values)
        if np.any(np.isfinite(v)):
            (line,) = a2.plot(t, v, label=text, **style)
            line.set_gid((gid if gid.startswith("estimate") else f"error:{gid}") + suffix)
            if gid != "estimate:reference":
                run["lines"].append(line)
            drawn += 1
    rtols = {r["rtol_ref"] for r in runs}
    if c.error_estimate_ref is None and c.rtol_ref is not None and c.rtol_ref not in rtols:
        line = a2.axhline(c.rtol_ref, color="black", lw=1.0, ls=":", label=f"the reference's rtol ({c.rtol_ref:g})")
        line.set_gid("rtol:reference" + suffix)
    if drawn:
        a2.set_yscale("log")
    elif k:
        pass  # (an overlay: the other runs' errors are on the axes)
    elif np.all(np.nan_to_num(c.loss_rel_error, nan=1.0) == 0.0) and np.all(c.residual_rel_error == 0.0):
        _empty_note(a2, "the run and the reference agree exactly\nat every shared time")
    else:  # (errors NaN below the loss floor, or infinite where the reference's loss is 0)
        _empty_note(a2, "no finite, positive error to draw:\nthe losses are at their rounding floor or 0")
    a2.set_ylabel("relative error", fontsize=FONT["label"])
    runs.append(dict(run, label_ref=c.label_ref, t=t, loss_ref=np.asarray(c.loss_ref, float),
                     rtol_ref=c.rtol_ref if c.error_estimate_ref is None else None))
    a2._gflow_comparisons = runs
    if len(runs) == 1:
        runs[0]["lines"][0].set_label(name)  # (a run alone: its loss line is named by the run, as before)
        a2.set_title(f"{c.label} against {c.label_ref}", fontsize=FONT["title"])
    else:  # every entry of every run starts with its run's name
        for r in runs:
            for line in r["lines"]:
                line.set_color(r["color"])  # (the first run's residual and test lines were blue and grey)
                if line.get_gid().startswith("error:residual"):
                    line.set_linestyle("--")
                text = line.get_label()
                if not text.startswith(r["name"]):
                    line.set_label(r["name"] if text == "loss" else f"{r['name']}: {text}")
        refs = sorted({r["label_ref"] for r in runs})
        a2.set_title(f"{len(runs)} runs against {' / '.join(refs)}", fontsize=FONT["title"])
    for a in axes:
        a.set_xlabel(r"$t$", fontsize=FONT["label"])
        ts = np.concatenate([r["t"] for r in runs])
        _set_time_limits(a, np.unique(ts))  # (both panels over the shared times: the error panel has no point at 0)
        _style(a)
        entries = len(a.get_legend_handles_labels()[0])
        if entries:
            _legend(a, ncols=2 if entries > 8 else 1)
    if new and not fig.get_layout_engine():
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# 3. feature scatter (Figure 4, second row)


def plot_feature_scatter(sol: "Solution | str | os.PathLike", times: Sequence[float] | None = None, ax=None,
                         *, train_index: int = 0, test_index: int = 0):
    r"""Scatter of (h_i(x_1), h_i(x_2)) over the neurons i at kept feature times (paper, Fig. 4, row 2).

    Args:
        sol: a :class:`gflow.Solution` or the path of a saved one.
        times: times in ``sol.feature_t`` (default: the first and the last kept time).
        ax: where to draw (the module's rule): None for a new figure, the Figure of an earlier call, an empty
            Figure, or an Axes.
        train_index: x_1 = training input ``train_index`` (``sol.H[k][:, train_index]``).
        test_index: x_2 = test input ``test_index`` (``sol.H_test[k][:, test_index]``); without test data,
            x_2 is the next training input instead.

    Returns:
        the Figure; its Axes (``fig.axes[0]``) has one scatter collection per time (labelled "t = ..."),
        equal aspect, and the active square I × I dashed over the points when the interval I is bounded.
    """
    sol = _solution(sol)
    ft = np.asarray(sol.feature_t, float)
    if ft.size == 0 or sol.H is None:
        raise ValueError("no features were kept in this solution (simulate with features_at=...)")
    if times is None:
        times = [ft[0]] if ft.size == 1 else [ft[0], ft[-1]]
    if isinstance(times, (str, bytes)):
        raise TypeError(f"times must be a number or a sequence of saved feature times, got {describe(times)}")
    arr = np.asarray(times, dtype=object)
    if arr.ndim > 1:
        raise ValueError(f"times must be a number or a flat sequence of saved feature times, got an array of shape "
                         f"{arr.shape}")
    times = list(np.atleast_1d(arr))
    if not times:
        raise ValueError("times must name at least one saved feature time, got an empty sequence")
    for j, x in enumerate(times):  # a clear error for NaN, non-numbers or times that were not kept
        sol.feature_index(x, name=f"times[{j}]")
    times = [float(x) for x in times]
    n = sol.n
    for name, v in (("train_index", train_index), ("test_index", test_index)):
        if not is_int(v):
            raise TypeError(f"{name} must be an int (the index of an input), got {describe(v)}")
    if not 0 <= train_index < n:
        raise IndexError(f"train_index {train_index} out of range for n = {n} training inputs")
    have_test = sol.H_test is not None and sol.H_test.shape[-1] > 0
    if have_test:
        if not 0 <= test_index < sol.H_test.shape[-1]:
            raise IndexError(f"test_index {test_index} out of range for {sol.H_test.shape[-1]} test inputs")
        second = f"test input #{test_index}"
    else:
        if test_index != 0:  # (it was ignored: x_2 was the next training input whatever test_index said)
            raise ValueError(f"test_index={test_index} needs test data, and this run has none (simulate with X_test, "
                             "y_test); without it x_2 is the training input after train_index")
        other = (train_index + 1) % n
        second = f"training input #{other}"
    ax, new = _new_axes(ax, figsize=(6.6, 4.8))
    import matplotlib as mpl

    if len(times) <= 10:  # distinct qualitative colours; a sequential map beyond
        colors = [mpl.colormaps["tab10"](j) for j in range(len(times))]
    else:
        colors = [mpl.colormaps["viridis"](0.9 * j / (len(times) - 1)) for j in range(len(times))]
    allv = []
    for j, time in enumerate(times):
        k = sol.feature_index(time, name="times")
        h1 = np.asarray(sol.H[k][:, train_index], float)
        h2 = np.asarray(sol.H_test[k][:, test_index] if have_test else sol.H[k][:, other], float)
        ax.scatter(h1, h2, s=10, alpha=0.65, color=colors[j], edgecolors="none", label=f"t = {ft[k]:.4g}",
                   zorder=3 + j)
        allv.append(np.concatenate([h1, h2]))
    v = np.concatenate(allv)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (-1.0, 1.0)
    if not v.size:  # (empty axes under a legend of times)
        _empty_note(ax, "no finite features at these times (NaN or inf)")
    interval = sol.theory.get("interval")
    if interval is not None and all(math.isfinite(x) for x in interval):
        from matplotlib.patches import Rectangle

        a, b = interval
        # (over the points: under them, from zorder 2, the box listed in the legend was hidden by the cloud)
        ax.add_patch(Rectangle((a, a), b - a, b - a, fill=False, ls=(0, (2, 1.5)), lw=1.3, ec="0.1",
                               zorder=4 + len(times), label=f"I × I, I = {_interval_text(interval)}"))
        lo, hi = min(lo, a), max(hi, b)
    pad = 0.06 * max(hi - lo, 1e-12)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.axhline(0, color="0.8", lw=0.6, zorder=1)
    ax.axvline(0, color="0.8", lw=0.6, zorder=1)
    ax.set_xlabel(rf"$h_i(x_1)$,  $x_1$ = training input #{train_index}", fontsize=FONT["label"])
    ax.set_ylabel(rf"$h_i(x_2)$,  $x_2$ = {second}", fontsize=FONT["label"])
    ax.set_title(f"hidden features of the m = {sol.m} neurons", fontsize=FONT["title"])
    _style(ax)
    _legend(ax, markerscale=1.8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if new:
        ax.figure.tight_layout()
    return ax.figure


# ---------------------------------------------------------------------------------------------------------
# 4. Gram spectrum


def _limit_gram_of(sol: Solution) -> tuple[np.ndarray | None, str]:
    """(Ḡ, label) for random-feature embeddings, else (None, reason)."""
    net = sol.config.get("network", {})
    emb = net.get("embedding", {}) or {}
    kind = emb.get("kind", "identity")
    if kind == "identity":
        return None, "identity embedding: G = XXᵀ/d is deterministic (no D → ∞ limit to compare)"
    if kind not in ("random_features", "deep_random_features"):
        return None, f"{kind} embedding: no limiting Gram"
    depth = 3 if kind == "random_features" else int(emb.get("depth", 3))
    act = emb.get("activation") or net.get("activation")
    from .theory.limit_gram import limit_gram

    try:
        Gbar = limit_gram(act, np.asarray(sol.X, float), depth=depth)
    except Exception as exc:  # e.g. a user activation that cannot be rebuilt from the file
        return None, f"limit Gram not available ({exc})"
    name = act.get("name", "?") if isinstance(act, dict) else str(act)
    return Gbar, rf"limit $\bar G$ (D → ∞, {name}, depth {depth}; eq. 23)"


def plot_gram_spectrum(sol: "Solution | str | os.PathLike", ax=None, *, limit: bool = True):
    r"""Eigenvalues of the Gram matrix G (descending, log y), with the D → ∞ limit Ḡ for comparison.

    Args:
        sol: a :class:`gflow.Solution` or the path of a saved one.
        ax: where to draw (the module's rule): None for a new figure, the Figure of an earlier call, an empty
            Figure, or an Axes.
        limit: also draw the spectrum of :func:`gflow.theory.limit_gram` (EQUATIONS.md §11) when the run
            used a :class:`gflow.RandomFeatures` / :class:`gflow.DeepRandomFeatures` embedding.  For the
            identity embedding G = XXᵀ/d is deterministic (its own limit), so nothing is added.

    Returns:
        the Figure; its Axes (``fig.axes[0]``) has a line for G (gid ``"G"``) and, when drawn, one for Ḡ
        (gid ``"G_limit"``).  Eigenvalues ≤ 1e-13·λ_max (numerically zero) are not drawn; a note gives their number.
    """
    sol = _solution(sol)
    limit = check_flag(limit, "limit")
    if sol.G is None:
        raise ValueError("this solution holds no Gram matrix G")
    ax, _ = _new_axes(ax)
    G = np.asarray(sol.G, float)
    ev = np.sort(np.linalg.eigvalsh(0.5 * (G + G.T)))[::-1]
    k = np.arange(1, ev.size + 1)
    tol = 1e-13 * max(float(ev[0]), np.finfo(float).tiny)
    emb = sol.config.get("network", {}).get("embedding", {}) or {}
    D = sol.D
    lab = (r"$G=XX^\top/d$ (realised)" if emb.get("kind", "identity") == "identity"
           else rf"$G=\Phi\Phi^\top/D$, D = {D} (realised)")
    keep = ev > tol
    (line,) = ax.plot(k[keep], ev[keep], "o-", color="tab:blue", ms=4, lw=1.3, label=lab, zorder=4)
    line.set_gid("G")
    notes = []
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} eigenvalue(s) of G ≤ 1e-13 λ_max (G singular)")
    if limit:
        Gbar, why = _limit_gram_of(sol)
        if Gbar is not None:
            evb = np.sort(np.linalg.eigvalsh(Gbar))[::-1]
            kb = evb > 1e-13 * max(float(evb[0]), np.finfo(float).tiny)
            (lb,) = ax.plot(k[kb], evb[kb], "s--", color="tab:orange", ms=3.5, lw=1.2, mfc="none",
                            label=why, zorder=3)
            lb.set_gid("G_limit")
            err = float(np.linalg.norm(G - Gbar, 2))
            notes.append(rf"$\|G-\bar G\|_2$ = {err:.3g},  $\lambda_{{\min}}(\bar G)/2$ = {evb[-1] / 2:.3g}")
        else:
            notes.append(why)
    ax.set_yscale("log")
    ax.set_xlabel("index k", fontsize=FONT["label"])
    ax.set_ylabel(r"eigenvalue $\lambda_k$", fontsize=FONT["label"])
    lmin = f"{ev[-1]:.3g}" if ev[-1] > tol else f"0 (rounding: {ev[-1]:.1g})"  # (it showed "= -1.61e-16")
    ax.set_title(rf"Gram spectrum: $\lambda_{{\min}}(G)$ = {lmin}, $\lambda_{{\max}}(G)$ = {ev[0]:.3g}",
                 fontsize=FONT["title"])
    if ev.size <= 30:
        ax.set_xticks(k if ev.size <= 12 else k[::max(1, ev.size // 10)])
    if notes:
        ax.text(0.98, 0.97, "\n".join(notes), transform=ax.transAxes, ha="right", va="top",
                fontsize=FONT["note"], color="0.25",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.8", alpha=0.9))
    _style(ax)
    _legend(ax, loc="lower left")
    return ax.figure


# ---------------------------------------------------------------------------------------------------------
# 5. summary


def plot_summary(sol: "Solution | str | os.PathLike", path: "str | os.PathLike | None" = None, *, ax=None):
    r"""A 2×2 summary: loss vs bounds | feature scatter, Gram spectrum | the three theory quantities.

    Without kept features the top row is loss | Gram spectrum and the quantities span the bottom row.

    Args:
        sol: a :class:`gflow.Solution` or the path of a saved one.
        path: if given, the figure is saved there (PNG or PDF by suffix, dpi 150).
        ax: None for a new figure (14 × 10 inches, taller by the loss panel's legend), or an empty Figure of
            yours to lay the panels out in, at its size (the module's rule; the summary lays out its own panels, so
            it takes no Axes).

    Returns:
        the Figure.
    """
    sol = _solution(sol)
    from matplotlib.figure import Figure

    if ax is not None and not (isinstance(ax, Figure) and not ax.axes):
        what = f"a Figure that holds {len(ax.axes)} Axes" if isinstance(ax, Figure) else describe(ax)
        raise TypeError(f"ax must be None or an empty matplotlib Figure (the summary lays out its own panels), got "
                        f"{what}")
    if path is not None:  # (checked before the figure is drawn: seconds)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or os.PathLike) or None, got {describe(path)}")
        path = Path(path)
        if path.suffix.lower() not in (".png", ".pdf"):
            raise ValueError(f"path must end in .png or .pdf, got {path.name!r}")
        check_output_path(path)  # (a folder not writable: drawn for a second, then PIL's bare FileNotFoundError)
    have_features = sol.H is not None and np.asarray(sol.feature_t).size >= 1
    fig = _pyplot().figure(figsize=(14.0, 10.0)) if ax is None else ax
    if have_features:
        gs = fig.add_gridspec(2, 2, width_ratios=[1.3, 1.0], height_ratios=[1.0, 1.0])
        ax_loss = fig.add_subplot(gs[0, 0])
        ax_scatter = fig.add_subplot(gs[0, 1])
        ax_gram = fig.add_subplot(gs[1, 0])
        sub = gs[1, 1].subgridspec(3, 1)
        q0 = fig.add_subplot(sub[0])
        qs = [q0, fig.add_subplot(sub[1], sharex=q0), fig.add_subplot(sub[2], sharex=q0)]
    else:
        gs = fig.add_gridspec(2, 2, height_ratios=[1.3, 1.0])
        ax_loss = fig.add_subplot(gs[0, 0])
        ax_gram = fig.add_subplot(gs[0, 1])
        sub = gs[1, :].subgridspec(1, 3)
        qs = [fig.add_subplot(sub[j]) for j in range(3)]
        ax_scatter = None
    plot_loss_bounds(sol, ax_loss, title="training loss against the certified bounds (EQUATIONS.md §9)")
    if ax is None:  # taller by the loss panel's legend (under its axes): the rows keep their heights
        fig.set_size_inches(14.0, 10.0 + ax_loss.get_legend().get_window_extent(_renderer(fig)).height / fig.dpi)
    if ax_scatter is not None:
        plot_feature_scatter(sol, ax=ax_scatter)
    plot_gram_spectrum(sol, ax_gram)
    plot_quantities(sol, qs)
    if have_features:
        for a in qs[:2]:
            a.set_xlabel("")
            a.tick_params(labelbottom=False)
        for a in qs:
            a.set_title("")
        qs[0].set_ylabel(r"$\eta_t$, $\bar\eta_t$", fontsize=FONT["label"])
        qs[1].set_ylabel(r"$\mu_t$, $\nu_t$", fontsize=FONT["label"])
        qs[2].set_ylabel(r"$\lambda(M_t)$", fontsize=FONT["label"])
        qs[0].set_title("theory quantities along the trajectory", fontsize=FONT["title"])
    fig.suptitle(run_description(sol), fontsize=FONT["suptitle"])
    if not fig.get_layout_engine():
        fig.tight_layout()
    _refresh_rooms(fig)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


# ---------------------------------------------------------------------------------------------------------
# sweeps


def plot_sweep(ds, x: str = "t", y: str = "loss", hue: str | None = None, ax=None, *, include_failed: bool = False,
               logy: bool | None = None, logx: bool | None = None):
    r"""A sweep (or a selection of it) from :func:`gflow.open_sweep`: trajectories, or final values against a
    grid key.

    Args:
        ds: the dataset of :func:`gflow.open_sweep` (any ``isel``/``where`` selection of it), or a store folder.
        x: ``"t"`` draws ``y`` against flow time, one line per run; a per-run coordinate (a grid key such as
            ``"n"`` or ``"width"``, or ``"seed"``) draws the final value of ``y`` against it, the mean over the
            other runs (e.g. the seeds) as a line and each run as a dot.
        y: a time series (``"loss"``, ``"test_error"``, ``"eta"``, ...) or a per-run variable (``"wall_time"``,
            ``"n_f_evals"``, ``"final_loss"``).
        hue: a per-run coordinate whose values get one colour each (and a legend entry).
        ax: where to draw (the module's rule): None for a new figure with constrained layout (so that its labels
            fit a plain ``savefig``), the Figure of an earlier call, an empty Figure, or an Axes.
        include_failed: also draw runs whose status is not ``"success"`` (their partial trajectories).
        logy: log-scaled y axis (default: for loss-like variables whose drawn values span more than a decade).
        logx: log-scaled x axis (default: against a grid key whose values are positive and span a decade or more,
            such as widths 64 … 2048, whose small values crowded together on a linear axis; never against t).

    Returns:
        the Figure (its Axes: ``fig.axes[0]``).  Against an integer grid key (``"n"``, ``"width"``,
        ``"seed"``) the x ticks are integers (the grid values themselves, up to 12 of them).
    """
    if isinstance(ds, (str, os.PathLike)):
        from .sweeps import open_sweep

        ds = open_sweep(ds)
    if isinstance(ds, Solution):
        raise TypeError("plot_sweep takes a sweep (gf.open_sweep(...) or its store folder); for a single run use "
                        "plot_summary or plot_loss_bounds")
    import xarray as xr

    if not isinstance(ds, xr.Dataset):  # (None: "argument of type 'NoneType' is not iterable", an input audit)
        raise TypeError(f"ds must be a sweep dataset (gf.open_sweep(...)) or the path of its store folder, got "
                        f"{describe(ds)}")
    if y not in ds:
        raise ValueError(f"y={y!r} is not a variable of the sweep; available: {sorted(ds.data_vars)}")
    for name, what in ((x, "x"), (hue, "hue")):
        if name is not None and name not in ("t", "time") and (name not in ds.coords or ds[name].dims != ("run",)):
            per_run = sorted(k for k, v in ds.coords.items() if v.dims == ("run",))
            try:  # a grid key whose short name is one of the dataset's own (a series): its coordinate is renamed
                renamed = [c for c, key in json.loads(ds.attrs.get("grid_coords", "{}")).items()
                           if key.split(".")[-1] == name and c != name]
            except (TypeError, ValueError, AttributeError):
                renamed = []
            hint = f" (the grid key's coordinate is {renamed[0]!r})" if renamed else ""
            raise ValueError(f"{what}={name!r} is not a per-run coordinate of the sweep{hint}; available: {per_run}")
    include_failed = check_flag(include_failed, "include_failed")
    for flag, name in ((logy, "logy"), (logx, "logx")):
        if flag is not None and not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be None, True or False, got {describe(flag)}")
    if x not in ("t", "time") and ds[x].dtype.kind in "iuf":
        grid = np.asarray(ds[x].values, dtype=float)
        if logx is None:
            logx = bool(grid.size and np.all(grid > 0) and grid.max() >= 10 * grid.min())
        elif logx and not np.all(grid > 0):
            raise ValueError(f"logx=True needs positive values of x={x!r}, got {sorted(set(ds[x].values.tolist()))}")
    elif logx:
        raise ValueError(f"logx=True needs a numeric grid key as x, got x={x!r}")
    keep = np.ones(ds.sizes["run"], dtype=bool) if include_failed else (ds.status.values == "success")
    ds = ds.isel(run=np.flatnonzero(keep))
    ax, _ = _new_axes(ax, layout="constrained")
    drawn: list[np.ndarray] = []
    cmap = _pyplot().get_cmap("viridis" if hue is not None and ds[hue].dtype.kind in "if" else "tab10")
    hues = [None] if hue is None else sorted(set(ds[hue].values.tolist()), key=lambda v: (str(type(v)), v))
    colour = {h: cmap(i / max(1, len(hues) - 1)) if cmap.N > 20 else cmap(i % 10) for i, h in enumerate(hues)}
    series = "time" in ds[y].dims
    for h in hues:
        sel = np.ones(ds.sizes["run"], dtype=bool) if h is None else (ds[hue].values == h)
        label = None if h is None else f"{hue} = {h}"
        if x in ("t", "time"):
            if not series:
                raise ValueError(f"x='t' needs a time series, but {y!r} is one value per run")
            for k, i in enumerate(np.flatnonzero(sel)):
                ax.plot(ds.t.values[i], ds[y].values[i], color=colour[h], lw=1.0, alpha=0.8,
                        label=label if k == 0 else None)
                drawn.append(np.asarray(ds[y].values[i], dtype=float))
            continue
        vals = ds[y].values[sel]
        if series:
            vals = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in vals])
        xs = ds[x].values[sel]
        ax.plot(xs, vals, "o", color=colour[h], ms=3.5, alpha=0.45)
        ux = sorted(set(xs.tolist()))
        ax.plot(ux, [np.nanmean(vals[xs == u]) for u in ux], "-", color=colour[h], lw=1.4, label=label)
        drawn.append(np.asarray(vals, dtype=float))
    if logy is None:
        logy = y in ("loss", "test_loss", "test_error", "final_loss") or y.startswith("int_")
        pos = np.concatenate([v.ravel() for v in drawn]) if drawn else np.zeros(0)
        pos = pos[np.isfinite(pos) & (pos > 0)]
        if logy and pos.size and pos.max() < 10 * pos.min():  # within a decade: log ticks say little
            logy = False
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if x not in ("t", "time") and ds[x].dtype.kind in "iu":
        from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

        values = sorted(set(ds[x].values.tolist()))
        if 0 < len(values) <= 12:
            ax.set_xticks(values)
            if logx:  # (the grid values as plain integers, not 2^6 or 10^3, and no minor labels between them)
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
        elif not logx:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel((_sweep_time_label(ds) if x in ("t", "time") else x), fontsize=FONT["label"])
    ax.set_ylabel(y if x in ("t", "time") or not series else f"{y} at the end", fontsize=FONT["label"])
    _style(ax)
    if hue is not None:
        _legend(ax)
    return ax.figure


__all__ = ["plot_loss_bounds", "plot_quantities", "plot_feature_scatter", "plot_gram_spectrum",
           "plot_summary", "plot_comparison", "run_description", "plot_sweep", "BOUND_KEYS"]


def __dir__() -> list[str]:
    # (tab completion on gf.plotting listed its imports — json, np, Path, check_flag, describe, Solution, ... — among
    # the plot functions; they stay importable, as any module's names)
    return sorted([*__all__, "FONT"])
