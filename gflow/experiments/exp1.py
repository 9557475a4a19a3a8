r"""Experiment 1 (Appendix I; Figures 1 and 5): convergence when fitting random labels.

Shallow net (1) — identity embedding, D = d = 20, σ = tanh, the paper's scaling — on x_a ~ N(0, I_20),
y_a ~ U[−½, ½] (EQUATIONS.md §13.1).  For every n, width m and seed we run

* **GD with the paper's protocol**: full batch, δ = 1, ``gd_steps`` steps (50 000 in the paper), rule (9);
* **the gradient flow** (10) from the same initialisation, with an 8th-order adaptive Runge–Kutta method
  (gflow's native ``"dop853"``, the Dormand–Prince 8(5,3) pair of scipy's ``DOP853`` and torchdiffeq's
  ``dopri8``, on the CPU and on a GPU alike; checkpointable), saved at exactly the GD times t = kδ,

and check the paper's claims: a nearly linear rate for n ≤ 2d (its n = 20 and 40), a rate that falls as n grows,
agreement of the two widths; plus the GD-vs-flow caveat of §13 (GD is forward Euler on the flow, linearly stable
only where δ·λ_max(M) < 2).

Every claim is a pure function of the list of :class:`~gflow.experiments.common.Run` (labels ``n``, ``m``,
``seed``, ``solver`` ∈ {"gd", "flow"}), so it can be checked on synthetic curves.  Loss curves are
averaged over seeds arithmetically, as the paper plots them.

Usage::

    from gflow.experiments import exp1
    res = exp1.run("quick", "results")       # writes results/exp1/{runs/, runs.nc, figure1.*, figure5.*, ...}
    res = exp1.run("quick", "results", executor="process", workers=2)   # the runs in parallel
    [c.verdict for c in res.claims]
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .common import (
    Claim,
    ExperimentResult,
    Run,
    fitted_rate,
    resolve_preset,
    save_figure,
    save_runs,
    write_summary,
)

NAME = "exp1"
TITLE = "Experiment 1 — convergence when fitting random labels (Figures 1 and 5)"


@dataclass(frozen=True)
class Config:
    """Everything that defines an Experiment-1 run (stored in ``runs.nc`` and echoed in ``summary.md``).

    Attributes:
        n_values: numbers of training points (the paper: 20, 40 and larger values lost in its legend;
            EQUATIONS.md §13.1 suggests {20, 40, 80, 160}).
        widths: m values; the largest is Figure 1's (8192 in the paper), the second largest Figure 5's (4096),
            whatever their order here (:func:`make_figures`).
        seeds: seed s draws the network (c, W0) with ``seed = s`` and the data with ``seed = data_seed_offset + s``.
        gd_steps, gd_step: GD protocol (50 000 steps of δ = 1 in the paper); the flow runs to t1 = gd_steps·gd_step.
        save_every: GD records every this many steps; the flow is saved at the same times.
        early_points: besides, both record at about this many geometrically spaced steps k < save_every
            (1, 2, 3, ...), to resolve the first steps where δ·λ_max(M) may exceed 2 (0: none).
        d, activation, c_hat: the model (d = 20, tanh, ĉ = 1).
        flow_method, flow_method_cuda: the flow integrator on the CPU / on a CUDA device (gflow's native
            ``"dop853"`` on both: the same algorithm everywhere, and checkpointable).
        rtol, atol: its tolerances (the loss is resolved to ≈ 1e-5 relative down to ``floor``·L_0).
        flow_max_steps: step limit of the flow solver.
        space: ``"auto"`` (the cheaper exact form, :func:`gflow.fields.auto_space`: for GD feature space iff
            n < 2D = 40; for the flow weight space from n = 20 on, where its state is no larger).
        keep_features: keep H at t = 0 and t1 in ``runs.nc`` (dropped in the paper preset: 10 MB per run).
        cpu_threads: torch intra-op threads while running on the CPU (restored afterwards); ``None`` leaves
            torch's setting.  1 is fastest for these small problems and avoids threads thrashing on a shared
            machine (measured 15× slower with 2 threads on a loaded 2-core machine).
        floor: relative loss level L/L_0 ending the decay window used for fits (below it the flow's loss is at
            the integrator's resolution and GD's at float64 rounding).
        linear_r2, linear_decades, linear_slowdown: claim 1 thresholds (R² of the linear fit of log L over the
            decay window, the number of decades the loss falls, and the smallest local rate relative to the
            average — a stalling loss has local rates → 0).
        width_tol: claim 3 tolerance on the relative difference of fitted rates between widths.
        kernel_tol, log_gap_tol: claim 4: GD "tracks" the flow when max_t |λ_max^GD − λ_max^flow|/λ_max^flow
            < kernel_tol and the gap in log-loss, max_t |ln L_GD − ln L_flow| / ln(L_0/L_min), < log_gap_tol.
    """

    n_values: tuple[int, ...] = (20, 40, 80, 160)
    widths: tuple[int, ...] = (8192, 4096)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    gd_steps: int = 50_000
    gd_step: float = 1.0
    save_every: int = 100
    early_points: int = 14
    d: int = 20
    activation: str = "tanh"
    c_hat: float = 1.0
    data_seed_offset: int = 1000
    flow_method: str = "dop853"
    flow_method_cuda: str = "dop853"
    rtol: float = 1e-8
    atol: float = 1e-12
    flow_max_steps: int = 1_000_000
    space: str = "auto"
    keep_features: bool = True
    cpu_threads: int | None = 1
    floor: float = 1e-12
    linear_r2: float = 0.99
    linear_decades: float = 8.0
    linear_slowdown: float = 0.5
    width_tol: float = 0.25
    kernel_tol: float = 0.05
    log_gap_tol: float = 0.10

    @property
    def t1(self) -> float:
        """Final flow time t1 = gd_steps·gd_step (the GD run's last time)."""
        return self.gd_steps * self.gd_step

    def n_runs(self) -> int:
        """Number of runs: one GD and one flow run per (n, m, seed)."""
        return 2 * len(self.n_values) * len(self.widths) * len(self.seeds)

    def data_seed(self, seed: int) -> int:
        return self.data_seed_offset + int(seed)

    def early_steps(self) -> np.ndarray:
        """The extra recorded steps k < save_every (geometrically spaced from 1)."""
        if self.early_points <= 0 or self.save_every <= 1:
            return np.zeros(0, dtype=np.int64)
        k = np.unique(np.round(np.geomspace(1, self.save_every, self.early_points)).astype(np.int64))
        return k[(k >= 1) & (k < min(self.save_every, self.gd_steps))]


PRESETS: dict[str, Config] = {
    # seconds: for the tests
    "tiny": Config(n_values=(4, 8, 16), widths=(64, 32), seeds=(0,), gd_steps=200, save_every=5),
    # a 2-core CPU in well under a minute: smaller m, n ≤ 80, 3 seeds, 1 000 steps; the same qualitative claims
    "quick": Config(n_values=(20, 40, 80), widths=(256, 128), seeds=(0, 1, 2), gd_steps=1000, save_every=5),
    # the paper's sizes (meant for a GPU: run(..., device="cuda"))
    "paper": Config(n_values=(20, 40, 80, 160), widths=(8192, 4096), seeds=(0, 1, 2, 3, 4), gd_steps=50_000,
                    save_every=100, keep_features=False, cpu_threads=None),
}

SOLVERS = ("gd", "flow")
SOLVER_NAMES = {"gd": "GD", "flow": "flow"}


# ---------------------------------------------------------------------------------------------------------
# running


def _keep_features(sol, times: Sequence[float]):
    """The solution with its (m, n) feature snapshots H kept only at ``times`` (file size)."""
    ft = np.asarray(sol.feature_t, float)
    keep = np.array([any(abs(t - u) <= 1e-9 * max(1.0, abs(u)) for u in times) for t in ft], dtype=bool)
    if keep.all():
        return sol
    return replace(sol, feature_t=ft[keep], H=sol.H[keep],
                   H_test=None if sol.H_test is None else sol.H_test[keep])


def _save_times(gd_steps: int, save_every: int, gd_step: float, feature_times) -> np.ndarray:
    """The flow times t = kδ that GD records (every ``save_every`` steps, the last step, ``feature_times``): the
    flow is saved at exactly these times, so that GD and the flow are independent tasks."""
    k = np.unique(np.concatenate([np.arange(0, gd_steps + 1, save_every), [gd_steps],
                                  np.rint(np.asarray(feature_times, float) / gd_step).astype(np.int64)]))
    return k * gd_step


def _feature_times(cfg: Config) -> np.ndarray:
    return np.unique(np.concatenate([[0.0, cfg.t1], cfg.early_steps() * cfg.gd_step]))


def tasks(cfg: Config, device: str = "cpu", method: str | None = None) -> list:
    """One :class:`~gflow.experiments.tasks.Task` per (m, n, seed, solver): GD with the paper's protocol and
    the flow saved at GD's times (:func:`_task` computes one)."""
    from ..solve.ode import NATIVE_METHODS
    from .tasks import Task

    method = method or cfg.flow_method
    out = []
    for m in cfg.widths:
        for n in cfg.n_values:
            for seed in cfg.seeds:
                base = {"n": int(n), "m": int(m), "seed": int(seed), "d": cfg.d, "activation": cfg.activation,
                        "c_hat": cfg.c_hat, "data_seed": cfg.data_seed(seed), "device": str(device),
                        "gd_step": cfg.gd_step, "gd_steps": cfg.gd_steps, "save_every": cfg.save_every,
                        "feature_times": _feature_times(cfg).tolist(), "space": cfg.space,
                        "keep_features": cfg.keep_features}
                labels = {"n": int(n), "m": int(m), "seed": int(seed)}
                out.append(Task(f"{__name__}:_task", {**labels, "solver": "gd"}, {**base, "solver": "gd"}))
                flow = {**base, "solver": "flow", "method": method, "rtol": cfg.rtol, "atol": cfg.atol,
                        "max_steps": cfg.flow_max_steps}
                out.append(Task(f"{__name__}:_task", {**labels, "solver": "flow"}, flow,
                                checkpoint=method in NATIVE_METHODS))
    return out


def _task(spec: dict, checkpoint=None):
    """One run of :func:`tasks` (in a worker): the GD run or the flow run of one (n, m, seed)."""
    import gflow as gf

    from .tasks import solver_checkpoint

    X, y = gf.data.random_labels(spec["n"], spec["d"], seed=spec["data_seed"])
    net = gf.Network(d=spec["d"], width=spec["m"], activation=spec["activation"], c_hat=spec["c_hat"],
                     seed=spec["seed"], device=spec["device"])
    t1 = spec["gd_steps"] * spec["gd_step"]
    if spec["solver"] == "gd":  # the early steps are recorded through features_at (H dropped below)
        sol = gf.gradient_descent(net, X, y, step=spec["gd_step"], steps=spec["gd_steps"],
                                  save_every=spec["save_every"], space=spec["space"], integrals=False,
                                  features_at=spec["feature_times"], progress=None,
                                  **solver_checkpoint(checkpoint))
    else:
        saveat = _save_times(spec["gd_steps"], spec["save_every"], spec["gd_step"], spec["feature_times"])
        sol = gf.simulate(net, X, y, t1=t1, saveat=saveat, method=spec["method"], rtol=spec["rtol"],
                          atol=spec["atol"], max_steps=spec["max_steps"], space=spec["space"], integrals=False,
                          progress=None, **solver_checkpoint(checkpoint))
    return _keep_features(sol, (0.0, t1) if spec["keep_features"] else ()), {}


def run(preset: str | Config = "quick", out: str | Path | None = None, *, progress: bool | None = None,
        device: str = "cpu", executor="local", workers: int | None = None, scheduler=None) -> ExperimentResult:
    """Run Experiment 1: GD (paper protocol) and the gradient flow for every n, m and seed.

    Every run is a task (:mod:`gflow.experiments.tasks`) written to ``out/exp1/runs/<run_id>.nc`` as soon as it
    finishes: a killed run keeps its finished runs, and calling :func:`run` again computes only the missing ones
    (long runs resume from ``out/exp1/checkpoints/``).

    Args:
        preset: ``"tiny"`` (seconds, tests), ``"quick"`` (a 2-core CPU, about a minute), ``"paper"`` (m = 8192
            and 4096, 5 seeds, 50 000 steps; meant for a GPU), or an :class:`Config`.
        out: results folder; files go to ``out/exp1/`` (``runs/``, ``runs.nc``, ``figure1.{png,pdf}``,
            ``figure5.{png,pdf}``, ``gd_vs_flow.{png,pdf}``, ``summary.md``); ``None``: ``gflow-reproduce`` (the
            CLI's default, as in Experiments 2 and 3).
        progress: a tqdm bar over runs (default: only when attached to a terminal).
        device: ``"cpu"`` or ``"cuda"``; the flow uses ``config.flow_method_cuda`` on CUDA (gflow's native
            ``"dop853"`` on both by default).
        executor, workers, scheduler: where the runs execute: ``"local"`` (serial, default), ``"process"``
            (``workers`` processes) or ``"dask"`` (``scheduler``: a running cluster), as in :func:`gflow.sweep`.

    Returns:
        an :class:`~gflow.experiments.common.ExperimentResult` with runs labelled n, m, seed, solver.
    """
    import torch

    from .tasks import clean_checkpoints, execute

    name, cfg = resolve_preset(preset, PRESETS, Config, NAME)
    dev = torch.device(device)
    method = cfg.flow_method_cuda if dev.type == "cuda" else cfg.flow_method
    start = time.perf_counter()
    out_dir = Path("gflow-reproduce" if out is None else out) / NAME
    threads = torch.get_num_threads()
    cpu_threads = cfg.cpu_threads if dev.type == "cpu" else None
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    counts: dict = {}
    try:
        done = execute(tasks(cfg, device, method), out_dir, executor=executor, workers=workers,
                       scheduler=scheduler, threads=cpu_threads, progress=progress, desc="exp1 runs",
                       report=counts.update)
    finally:
        torch.set_num_threads(threads)
    runs = [r for r, _ in done]
    wall = {s: sum(float(r.solution.stats.get("wall_time", 0.0)) for r in runs if r.labels["solver"] == s)
            for s in SOLVERS}
    spaces = {}  # n → "GD <space>, flow <space>" (the two may differ: auto_space counts the ODE solver's state)
    for solver in ("gd", "flow"):
        for r in runs:
            if r.labels["solver"] == solver:
                spaces.setdefault(r.labels["n"], {})[solver] = r.solution.config.get("space", "?")
    spaces = {n: ", ".join(f"{'GD' if k == 'gd' else k} {v}" for k, v in d.items()) for n, d in spaces.items()}

    claims = evaluate(runs, cfg)
    compute_time = time.perf_counter() - start
    notes = _notes(cfg, name, method, spaces, wall, compute_time, dev.type, runs)
    result = ExperimentResult(NAME, name, runs, claims, notes=notes, counts=counts)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_checkpoints(out_dir)
    files = [save_runs(out_dir / "runs.nc", runs, experiment=NAME, preset=name, config=cfg)]
    figs = make_figures(runs, cfg, method=method)
    for stem, fig in figs.items():
        files += save_figure(fig, out_dir, stem)
        _close(fig)
    files.append(write_summary(out_dir / "summary.md", title=TITLE, preset=name, claims=claims, notes=notes,
                               wall_time=compute_time, figures=files))
    result.files = files
    result.wall_time = time.perf_counter() - start
    return result


def evaluate(runs: Sequence[Run], cfg: Config = Config()) -> list[Claim]:
    """The four claims of Experiment 1 computed from ``runs`` (thresholds from ``cfg``)."""
    return [
        claim_linear_convergence(runs, d=cfg.d, floor=cfg.floor, r2_min=cfg.linear_r2,
                                 decades_min=cfg.linear_decades, slowdown_min=cfg.linear_slowdown),
        claim_rate_decreases(runs, floor=cfg.floor),
        claim_widths_agree(runs, floor=cfg.floor, tol=cfg.width_tol),
        claim_gd_tracks_flow(runs, step=cfg.gd_step, floor=cfg.floor, kernel_tol=cfg.kernel_tol,
                             log_gap_tol=cfg.log_gap_tol),
    ]


# ---------------------------------------------------------------------------------------------------------
# curves and fits (pure functions of the runs)


def _values(runs: Iterable[Run], key: str) -> list:
    return sorted({r.labels[key] for r in runs if key in r.labels})


def _select(runs: Iterable[Run], **labels) -> list[Run]:
    return [r for r in runs if all(r.labels.get(k) == v for k, v in labels.items())]


def _stack(runs: Sequence[Run], attr: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, values (seeds, T)) on the longest time grid of ``runs``; shorter runs (failures) are NaN-padded."""
    longest = max(runs, key=lambda r: len(r.solution.t))
    t = np.asarray(longest.solution.t, float)
    out = np.full((len(runs), t.size), np.nan)
    for i, r in enumerate(runs):
        v = getattr(r.solution, attr)
        if v is None:
            continue
        v = np.asarray(v, float)
        tr = np.asarray(r.solution.t, float)
        if tr.size == t.size and np.allclose(tr, t, rtol=1e-9, atol=1e-9):
            out[i] = v
        else:  # align on the reference grid (times beyond the run's end stay NaN)
            k = np.searchsorted(t, tr[-1] * (1 + 1e-12), side="right")
            out[i, :k] = np.interp(t[:k], tr, v)
    return t, out


def mean_curve(runs: Sequence[Run], n: int, m: int, solver: str, attr: str = "loss") -> tuple[np.ndarray, np.ndarray]:
    """Seed-averaged ``attr`` (default the loss (6)) for one (n, m, solver): (t, mean), NaN where a seed failed."""
    sel = _select(runs, n=n, m=m, solver=solver)
    if not sel:
        raise KeyError(f"no runs with n={n}, m={m}, solver={solver!r}")
    t, vals = _stack(sel, attr)
    return t, vals.mean(axis=0)


def decay_window(t: np.ndarray, loss: np.ndarray, floor: float = 1e-12) -> int:
    """Number of leading points of the decay window: up to (excluding) the first time L < floor·L_0 or
    L is not finite; the whole curve if neither happens."""
    loss = np.asarray(loss, float)
    bad = ~np.isfinite(loss) | (loss < floor * loss[0])
    return int(np.argmax(bad)) if bad.any() else int(loss.size)


def uniform(t: np.ndarray, loss: np.ndarray, k: int | None = None, num: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` points of a loss curve resampled (log-linearly) on ``num`` equally spaced times, so that
    fits weigh every stretch of time equally whatever the saved grid (GD also saves a few early steps)."""
    k = len(t) if k is None else k
    t, loss = np.asarray(t, float)[:k], np.asarray(loss, float)[:k]
    if k < 2:
        return t, loss
    tu = np.linspace(t[0], t[-1], max(num, 3))
    return tu, np.exp(np.interp(tu, t, np.log(loss)))


def linear_fit(t: np.ndarray, loss: np.ndarray) -> tuple[float, float]:
    """(rate ρ, R²) of the least-squares fit ln L ≈ a − ρt over the given points."""
    t, y = np.asarray(t, float), np.log(np.asarray(loss, float))
    if t.size < 3:
        return math.nan, math.nan
    p = np.polyfit(t, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - np.polyval(p, t)) ** 2))
    return float(-p[0]), (1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan)


def slowdown(t: np.ndarray, loss: np.ndarray, pieces: int = 10) -> float:
    """min over ``pieces`` equal stretches of time of the local decay rate of ln L, divided by the average rate:
    ≈ 1 for a linear (exponential) rate, → 0 for a loss that stalls (sublinear convergence)."""
    t, y = np.asarray(t, float), np.log(np.asarray(loss, float))
    if t.size < pieces + 1 or y[0] <= y[-1]:
        return math.nan
    avg = (y[0] - y[-1]) / (t[-1] - t[0])
    edges = np.linspace(t[0], t[-1], pieces + 1)
    local = []
    for a, b in zip(edges[:-1], edges[1:]):
        i, j = np.searchsorted(t, a), np.searchsorted(t, b, side="right") - 1
        if j > i:
            local.append((y[i] - y[j]) / (t[j] - t[i]))
    return float(min(local) / avg) if local else math.nan


def _rate(t, loss, k: int) -> float:
    """Decay rate fitted by :func:`fitted_rate` over the first k points (resampled uniformly in time)."""
    return fitted_rate(*uniform(t, loss, k), floor=0.0) if k >= 3 else math.nan


def _combine(parts: dict[str, str]) -> str:
    """One verdict from several (per solver / width): unanimous, else inconclusive."""
    vs = set(parts.values())
    if len(vs) == 1:
        return vs.pop()
    return "inconclusive"


def _disagreement(parts: dict[str, str]) -> str:
    if len(set(parts.values())) <= 1:
        return ""
    return " Verdicts differ: " + ", ".join(f"{k}: {v}" for k, v in parts.items()) + "."


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------------------
# the claims


def claim_linear_convergence(runs: Sequence[Run], *, d: int = 20, floor: float = 1e-12, r2_min: float = 0.99,
                             decades_min: float = 8.0, slowdown_min: float = 0.5) -> Claim:
    """Claim 1: linear convergence for n ≤ 2d, for every width and both solvers (seed-averaged curves): over the
    decay window (down to ``floor``·L_0), log L is linear in t (R² ≥ ``r2_min``, on a uniform time grid), the
    local rate never falls below ``slowdown_min`` × the average (:func:`slowdown`), and the loss falls by at
    least ``decades_min`` decades.  Larger n are reported for comparison.  n ≤ 2d is the paper's statement (§4.1:
    "a nearly linear rate when n = 20 and 40", d = 20), an empirical one beyond n = d: there G⁽⁰⁾ is singular and
    Corollary 1 does not apply (EQUATIONS.md §13.1).  Where the decay window holds too few
    saved points for :func:`slowdown` (fewer than 11) and the rest holds, the verdict is inconclusive, not
    confirmed nor refuted: nothing shows whether the rate slows down between the points."""
    claim = (f"Linear convergence for n ≤ 2d = {2 * d} (Fig. 1/5: \"a nearly linear rate when n = 20 and 40\", "
             f"d = 20): over the decay window (to {floor:.0e}·L₀) log L is linear in t (R² ≥ {r2_min:g}; local rate ≥ "
             f"{slowdown_min:g} × average) and falls by ≥ {decades_min:g} decades")
    small = [n for n in _values(runs, "n") if n <= 2 * d]
    if not small:
        return Claim(claim, f"no n ≤ 2d = {2 * d} among the runs", "inconclusive")
    parts, text = {}, []
    for m in sorted(_values(runs, "m"), reverse=True):
        for solver in SOLVERS:
            if not _select(runs, m=m, solver=solver):
                continue
            ok, unknown, items = True, False, []
            for n in _values(runs, "n"):
                t, L = mean_curve(runs, n, m, solver)
                k = decay_window(t, L, floor)
                _, r2 = linear_fit(*uniform(t, L, k)) if k >= 3 else (math.nan, math.nan)
                slow = slowdown(t[:k], L[:k])
                dec = float(np.log10(L[0] / L[k - 1])) if k >= 1 else 0.0
                reached = k < L.size and np.isfinite(L[k])
                rate = (_fmt(slow, 2) if np.isfinite(slow) else
                        f"n/a ({k} saved points in the window, too few)" if k < 11 else "n/a (the loss does not fall)")
                desc = f"R²={r2:.4f}, local/avg rate ≥ {rate}, {'≥' if reached else ''}{dec:.1f} dec. by t={t[k - 1]:g}"
                if n <= 2 * d:
                    good = np.isfinite(r2) and r2 >= r2_min and dec >= decades_min
                    ok &= bool(good) and not slow < slowdown_min  # (NaN: undecided, below)
                    unknown |= bool(good) and not np.isfinite(slow)
                    items.append(f"n={n}: {desc}")
                else:
                    items.append(f"(n={n} > 2d: {desc})")
            parts[f"{SOLVER_NAMES[solver]} m={m}"] = ("not confirmed" if not ok else
                                                      "inconclusive" if unknown else "confirmed")
            text.append(f"{SOLVER_NAMES[solver]} m={m}: " + "; ".join(items))
    verdict = _combine(parts)
    return Claim(claim, " · ".join(text) + "." + _disagreement(parts), verdict)


def claim_rate_decreases(runs: Sequence[Run], *, floor: float = 1e-12) -> Claim:
    """Claim 2: the convergence rate falls as n grows — rates ρ(n) fitted (ln L ≈ a − ρt) over a common window
    [0, T], T = the earliest time any n reaches ``floor``·L_0, strictly decrease in n, for every width and both
    solvers."""
    claim = ("The rate decreases as n becomes larger (Fig. 1/5): fitted rates ρ (L ≈ C e^{−ρt}) over a common "
             "window strictly decrease in n")
    ns = _values(runs, "n")
    if len(ns) < 2:
        return Claim(claim, "fewer than two values of n", "inconclusive")
    parts, text = {}, []
    for m in sorted(_values(runs, "m"), reverse=True):
        for solver in SOLVERS:
            if not _select(runs, m=m, solver=solver):
                continue
            curves = {n: mean_curve(runs, n, m, solver) for n in ns}
            k = min(decay_window(t, L, floor) for t, L in curves.values())
            rates = [_rate(t, L, k) for t, L in curves.values()]
            T = curves[ns[0]][0][max(k - 1, 0)]
            dec = all(np.isfinite(rates)) and all(a > b for a, b in zip(rates, rates[1:]))
            parts[f"{SOLVER_NAMES[solver]} m={m}"] = "confirmed" if dec else "not confirmed"
            text.append(f"{SOLVER_NAMES[solver]} m={m}, t∈[0,{T:g}]: "
                        + ", ".join(f"ρ({n})={_fmt(r)}" for n, r in zip(ns, rates)))
    return Claim(claim, " · ".join(text) + "." + _disagreement(parts), _combine(parts))


def claim_widths_agree(runs: Sequence[Run], *, floor: float = 1e-12, tol: float = 0.25) -> Claim:
    """Claim 3: the widths agree (Fig. 1 at m = 8192 vs Fig. 5 at m = 4096) — for every n and solver the rates
    fitted over the common decay window of the widths differ by less than ``tol`` (relative to the larger)."""
    claim = (f"The two widths give the same picture (paper: m = 8192 in Fig. 1, m = 4096 in Fig. 5): for each n "
             f"the fitted rates at the two widths differ by < {tol:.0%}")
    ms = sorted(_values(runs, "m"), reverse=True)
    if len(ms) < 2:
        return Claim(claim, "only one width among the runs", "inconclusive")
    parts, text = {}, []
    for solver in SOLVERS:
        if not _select(runs, solver=solver):
            continue
        ok, items = True, []
        for n in _values(runs, "n"):
            curves = [mean_curve(runs, n, m, solver) for m in ms]
            k = min(decay_window(t, L, floor) for t, L in curves)
            rates = [_rate(t, L, k) for t, L in curves]
            rel = (max(rates) - min(rates)) / max(rates) if all(np.isfinite(rates)) and max(rates) > 0 else math.nan
            logs = [np.log10(L[:k]) for _, L in curves]
            dlog = float(np.max(np.abs(logs[0] - logs[-1]))) if k else math.nan
            ok &= bool(np.isfinite(rel) and rel < tol)
            items.append(f"n={n}: ρ=" + "/".join(_fmt(r) for r in rates) + f" (Δ={_fmt(100 * rel, 2)}%, "
                         f"max|Δlog₁₀L|={_fmt(dlog, 2)})")
        parts[SOLVER_NAMES[solver]] = "confirmed" if ok else "not confirmed"
        text.append(f"{SOLVER_NAMES[solver]}, m={'/'.join(map(str, ms))}: " + "; ".join(items))
    return Claim(claim, " · ".join(text) + "." + _disagreement(parts), _combine(parts))


def gd_flow_gaps(runs: Sequence[Run], n: int, m: int, *, floor: float = 1e-12) -> dict:
    """GD-vs-flow comparison for one (n, m), seed-averaged over the flow's decay window:

    ``loss_gap`` max |L_GD − L_flow|/L_flow; ``log_gap`` max |ln L_GD − ln L_flow| / ln(L_0/L_flow,min);
    ``kernel_gap`` max |λ_max^GD − λ_max^flow|/λ_max^flow (λ_max of M_t, E3); ``lam0`` mean λ_max(M_0)
    and ``lam0_range`` its range over seeds; ``gd_ok`` whether every GD run finished (did not diverge).
    """
    t, Lg = mean_curve(runs, n, m, "gd")
    tf, Lf = mean_curve(runs, n, m, "flow")
    if tf.size != t.size or not np.allclose(tf, t):
        Lf = np.interp(t, tf, Lf, right=np.nan)
    k = decay_window(t, Lf, floor)
    ok = np.isfinite(Lg[:k]) & (Lg[:k] > 0)
    if not ok.all():
        loss_gap = log_gap = math.inf
    else:
        loss_gap = float(np.max(np.abs(Lg[:k] - Lf[:k]) / Lf[:k]))
        span = max(float(np.log(Lf[0] / np.min(Lf[:k]))), 1.0)
        log_gap = float(np.max(np.abs(np.log(Lg[:k]) - np.log(Lf[:k]))) / span)
    _, lg = mean_curve(runs, n, m, "gd", "lam_max_M")
    _, lf = mean_curve(runs, n, m, "flow", "lam_max_M")
    if lf.size != lg.size:
        lf = np.interp(t, tf, lf, right=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        kg = np.abs(lg[:k] - lf[:k]) / lf[:k]
    kernel_gap = float(np.max(kg)) if np.all(np.isfinite(kg)) else math.inf
    lam0s = [float(r.solution.lam_max_M[0]) for r in _select(runs, n=n, m=m, solver="flow")
             if r.solution.lam_max_M is not None]
    gd_ok = all(r.solution.status == "success" for r in _select(runs, n=n, m=m, solver="gd"))
    return {"loss_gap": loss_gap, "log_gap": log_gap, "kernel_gap": kernel_gap, "t_end": float(t[max(k - 1, 0)]),
            "lam0": float(np.mean(lam0s)) if lam0s else math.nan,
            "lam0_range": (min(lam0s), max(lam0s)) if lam0s else (math.nan, math.nan), "gd_ok": gd_ok}


def claim_gd_tracks_flow(runs: Sequence[Run], *, step: float = 1.0, floor: float = 1e-12, kernel_tol: float = 0.05,
                         log_gap_tol: float = 0.10) -> Claim:
    """Claim 4 (EQUATIONS.md §13, GD vs GF caveat): GD with step δ follows the gradient flow where
    δ·λ_max(M_0) < 2 and departs from it beyond.  Per width (gaps from :func:`gd_flow_gaps`):

    * every stable n (δ·λ_max(M_0) < 2) must track the flow: GD finished and log-loss gap < ``log_gap_tol``
      (a stable GD still differs by O(δλ) per step — forward Euler — so it is not required to match exactly);
    * every unstable n must depart further than any stable one: its gap in λ_max(M_t) exceeds the largest
      stable one (and ``kernel_tol`` when no n is stable).

    Verdict: confirmed when both hold (only the first is tested when no n is unstable); not confirmed when a
    stable n does not track; inconclusive when an unstable n departs no more than the stable ones.
    """
    claim = (f"GD (δ = {step:g}, the paper's protocol) follows the gradient flow the theory is about where "
             f"δ·λ_max(M₀) < 2 and departs from it beyond (EQUATIONS.md §13 caveat): stable n track "
             f"(log-loss gap < {log_gap_tol:.0%}), unstable n depart more (larger gap in λ_max(M_t))")
    if not _select(runs, solver="gd") or not _select(runs, solver="flow"):
        return Claim(claim, "needs both GD and flow runs", "inconclusive")
    stable_bad, not_departing, n_unstable, items = [], [], 0, []
    for m in sorted(_values(runs, "m"), reverse=True):
        sub, gaps = [], {}
        for n in _values(runs, "n"):
            g = gaps[n] = gd_flow_gaps(runs, n, m, floor=floor)
            g["unstable"] = step * g["lam0"] > 2.0
            lo, hi = g["lam0_range"]
            sub.append(f"n={n}: δλ_max(M₀)={step * lo:.2f}–{step * hi:.2f} ({'>' if g['unstable'] else '<'} 2), "
                       f"max rel. loss gap {_fmt(g['loss_gap'], 2)}, log-loss gap {_fmt(100 * g['log_gap'], 2)}%, "
                       f"λ_max(M_t) gap {_fmt(100 * g['kernel_gap'], 2)}%" + ("" if g["gd_ok"] else ", GD DIVERGED"))
        stable = [n for n, g in gaps.items() if not g["unstable"]]
        unstable = [n for n, g in gaps.items() if g["unstable"]]
        n_unstable += len(unstable)
        for n in stable:
            g = gaps[n]
            if not (g["gd_ok"] and g["log_gap"] < log_gap_tol):
                stable_bad.append((n, m))
        bar = max((gaps[n]["kernel_gap"] for n in stable), default=kernel_tol)
        for n in unstable:
            if not (gaps[n]["kernel_gap"] > bar or not gaps[n]["gd_ok"]):
                not_departing.append((n, m))
        items.append(f"m={m}: " + "; ".join(sub))

    def where(pairs):
        return ", ".join(f"n={n} (m={m})" for n, m in pairs)

    if stable_bad:
        verdict, tail = "not confirmed", f" GD does not track the flow although stable at {where(stable_bad)}."
    elif not_departing:
        verdict = "inconclusive"
        tail = (f" Past the stability limit GD departs no more than within it at {where(not_departing)} "
                "(λ_max(M_t) falls below 2/δ within a few steps).")
    else:
        verdict = "confirmed"
        tail = (" Stable n track the flow up to forward Euler's O(δλ) error; unstable n depart more, GD pushing "
                "λ_max(M_t) below the flow's." if n_unstable else
                " No n is beyond the stability limit in this preset: only the first half is tested.")
    return Claim(claim, " · ".join(items) + "." + tail, verdict)


# ---------------------------------------------------------------------------------------------------------
# notes and figures


def _notes(cfg: Config, name: str, method: str, spaces: dict, wall: dict, compute_time: float, device: str,
           runs: Sequence[Run]) -> list[str]:
    n_fail = [r.labels for r in runs if r.solution.status != "success"]
    sp = "; ".join(f"n={n}: {s}" for n, s in sorted(spaces.items()))
    notes = [
        f"Model (EQUATIONS.md §13.1): shallow net (1), σ = {cfg.activation}, d = D = {cfg.d}, ĉ = {cfg.c_hat:g}, "
        "paper scaling (α = 1/m, β = 1/√d, GD rule W ← W − mδ∂L/∂W), loss (6) = ½Σ(f − y)², "
        "x ~ N(0, I_d), y ~ U[−½, ½].",
        f"Sizes: n ∈ {{{', '.join(map(str, cfg.n_values))}}} (20 and 40 are the paper's; the larger values are "
        "unrecoverable from its legend, EQUATIONS.md §13.1/§14 suggests 80, 160), "
        f"m ∈ {{{', '.join(map(str, cfg.widths))}}} (Figure 1 uses the largest, Figure 5 the second largest), "
        f"{len(cfg.seeds)} seed(s): network seed s, data seed {cfg.data_seed_offset} + s.",
        f"GD: the paper's protocol, full batch, δ = {cfg.gd_step:g}, {cfg.gd_steps} steps (paper: 50 000), loss "
        f"recorded every {cfg.save_every} steps and at steps {_early_text(cfg)}.  Flow: {method} (rtol {cfg.rtol:g}, atol {cfg.atol:g}) to "
        f"t1 = {cfg.t1:g}, saved at the same times t = kδ; on a GPU the flow uses {cfg.flow_method_cuda} "
        "(gflow's native dop853 is the Dormand–Prince 8(5,3) pair of scipy's DOP853 and torchdiffeq's dopri8, "
        "and runs on both devices).",
        f"State space (space='{cfg.space}', the cheaper of the two exact forms, EQUATIONS.md §4: feature space "
        "costs 2mn² flops per evaluation on a state of 2mn entries, weight space 4mDn on mD; GD counts the flops, "
        "the flow's solver also the traffic over its state — gflow.fields.auto_space): " + sp + ".",
        "Curves are the arithmetic mean over seeds (as the paper plots them).  Rates are least-squares fits of "
        "ln L ≈ a − ρt (fitted_rate) on a uniform time grid (log-linear interpolation of the saved points, so the "
        "extra early points carry no extra weight), over the decay window: from "
        f"t = 0 to the first time L < {cfg.floor:.0e}·L₀ (below that the flow's loss is at its integrator's "
        "resolution and GD's at rounding).  Claim 2 compares all n over a common window [0, T] (T = the earliest "
        "n to reach the floor); claim 3 compares widths over their common window.",
        "The active interval I of Lemma 1 (used only for the recorded η_t; no certificate is needed here, "
        "integrals=False) is the activation's default, I = (−1, 1) for tanh.",
        "GD vs GF (EQUATIONS.md §13 caveat): GD is forward Euler on the flow and is linearly stable only where "
        "δ·λ_max(M) < 2.  Even where stable, its per-step contraction 1 − δλ differs from e^{−δλ} by O(δλ²), so "
        "relative loss gaps compound over many decades; the log-loss gap (normalised by the decades traversed) "
        "and the gap in λ_max(M_t) measure whether GD follows the flow's trajectory.",
        f"Wall time {compute_time:.1f} s on {device} (GD {wall['gd']:.1f} s, flow {wall['flow']:.1f} s, "
        f"{len(runs)} runs).",
    ]
    if not cfg.keep_features:
        notes.append("Feature snapshots H (m × n) are not stored in runs.nc in this preset (file size).")
    if n_fail:
        notes.append(f"Runs that did not finish: {n_fail}.")
    return notes


def _early_text(cfg: Config) -> str:
    k = cfg.early_steps()
    return "{" + ", ".join(map(str, k.tolist())) + "}" if k.size else "none else"


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _colors(ns: Sequence[int]) -> dict:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(ns)}


def _fig_legend(fig, handles, ncol: int | None = None):
    from ..plotting import FONT

    leg = fig.legend(handles=handles, loc="outside lower center", ncol=ncol or len(handles),
                     fontsize=FONT["legend"] + 0.5, framealpha=0.9, handlelength=2.8, columnspacing=1.6)
    leg.get_frame().set_linewidth(0.5)
    return leg


def _style_axes(ax, cfg: Config, *, logx: bool, t_first: float) -> None:
    from ..plotting import FONT

    if logx:
        ax.set_xscale("log")
        ax.set_xlim(t_first, cfg.t1)
    else:
        ax.set_xlim(0, cfg.t1)
    ax.set_xlabel(f"GD step k   (flow time t = kδ, δ = {cfg.gd_step:g})", fontsize=FONT["label"])
    ax.tick_params(labelsize=FONT["tick"])
    ax.grid(True, which="major", alpha=0.25, lw=0.6)


def _first_positive(runs) -> float:
    ts = [float(np.asarray(r.solution.t)[1]) for r in runs if len(r.solution.t) > 1]
    return min(ts) if ts else 1.0


_GD_STYLE = dict(ls="-", lw=1.8)
_FLOW_STYLE = dict(ls=(0, (4, 2)), lw=1.5)


def _loss_panel(ax, runs, cfg: Config, m: int, *, logx: bool, compare_m: int | None = None) -> None:
    from ..plotting import FONT

    ns = _values(runs, "n")
    col = _colors(ns)
    lows, L0s = [], []
    for n in ns:
        for solver in SOLVERS:
            sel = _select(runs, n=n, m=m, solver=solver)
            if not sel:
                continue
            t, vals = _stack(sel, "loss")
            L = vals.mean(axis=0)
            keep = np.isfinite(L) & (L > 0)
            if solver == "flow":  # below this the flow's loss is integrator noise
                keep[decay_window(t, L, cfg.floor * 1e-2):] = False
            if logx:
                keep &= t > 0
            style = _GD_STYLE if solver == "gd" else _FLOW_STYLE
            ax.plot(t[keep], L[keep], color=col[n], zorder=3 if solver == "gd" else 4, **style)
            if solver == "gd" and len(sel) > 1:
                lo, hi = np.nanmin(vals, axis=0), np.nanmax(vals, axis=0)
                ax.fill_between(t[keep], lo[keep], hi[keep], color=col[n], alpha=0.10, lw=0, zorder=1)
            if keep.any():
                lows.append(float(L[keep].min()))
                L0s.append(float(L[0]))
        if compare_m is not None and _select(runs, n=n, m=compare_m, solver="gd"):
            t, L = mean_curve(runs, n, compare_m, "gd")
            keep = np.isfinite(L) & (L > 0) & ((t > 0) if logx else True)
            ax.plot(t[keep], L[keep], color="0.1", ls=":", lw=1.1, zorder=5)
    ax.set_yscale("log")
    if lows:
        top = 3.0 * max(L0s)
        ax.set_ylim(max(min(lows) / 3.0, top * 1e-34), top)
    _style_axes(ax, cfg, logx=logx, t_first=_first_positive(_select(runs, m=m)))
    ax.set_ylabel("training loss L (eq. 6), mean over seeds", fontsize=FONT["label"])


def _style_handles(cfg: Config, method: str) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="black", label=f"GD, δ = {cfg.gd_step:g} (paper's protocol)", **_GD_STYLE),
            Line2D([], [], color="black", label=f"gradient flow ({method})", **_FLOW_STYLE)]


def _loss_figure(runs, cfg: Config, m: int, fig_no: int, *, method: str, compare_m: int | None = None):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ..plotting import FONT

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 5.0), layout="constrained")
    for ax, logx, lab in zip(axes, (False, True), ("(a) linear step axis", "(b) logarithmic step axis")):
        _loss_panel(ax, runs, cfg, m, logx=logx, compare_m=compare_m if not logx else None)
        ax.set_title(lab, fontsize=FONT["title"])
    ns = _values(runs, "n")
    col = _colors(ns)
    handles = [Line2D([], [], color=col[n], lw=2.2, label=f"n = {n}") for n in ns] + _style_handles(cfg, method)
    seeds = len(_values(_select(runs, m=m), "seed"))
    if seeds > 1:
        handles.append(Patch(color="0.55", alpha=0.3, lw=0, label="GD: range over seeds"))
    if compare_m is not None:
        handles.append(Line2D([], [], color="0.1", lw=1.1, ls=":", label=f"GD at m = {compare_m} (Fig. 1)"))
    _fig_legend(fig, handles)
    fig.suptitle(f"Figure {fig_no} analogue: shallow {cfg.activation} net, d = {cfg.d}, random labels, "
                 f"m = {m}, n ∈ {{{', '.join(map(str, ns))}}}; training loss, mean of {seeds} "
                 f"seed{'s' if seeds > 1 else ''}\n(flow curves end where L < {cfg.floor * 1e-2:.0e}·L₀, the "
                 "integrator's resolution; GD reaches float64 rounding)", fontsize=FONT["suptitle"] - 1)
    return fig


def _gap_figure(runs, cfg: Config, m: int, *, method: str):
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..plotting import FONT

    ns = [n for n in _values(runs, "n")
          if _select(runs, n=n, m=m, solver="gd") and _select(runs, n=n, m=m, solver="flow")]
    col = _colors(_values(runs, "n"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 5.0), layout="constrained")
    t_first = _first_positive(_select(runs, m=m))
    handles = []
    for n in ns:
        g = gd_flow_gaps(runs, n, m, floor=cfg.floor)
        t, Lg = mean_curve(runs, n, m, "gd")
        _, Lf = mean_curve(runs, n, m, "flow")
        k = decay_window(t, Lf, cfg.floor)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(Lg - Lf) / Lf
        keep = (np.arange(t.size) < k) & (t > 0) & np.isfinite(rel) & (rel > 0)
        ax1.plot(t[keep], rel[keep], color=col[n], lw=1.7)
        _, lg = mean_curve(runs, n, m, "gd", "lam_max_M")
        _, lf = mean_curve(runs, n, m, "flow", "lam_max_M")
        pos = t > 0
        ax2.plot(t[pos], lg[pos], color=col[n], **_GD_STYLE)
        ax2.plot(t[pos], lf[pos], color=col[n], **_FLOW_STYLE)
        ax2.plot([t_first], [g["lam0"]], marker="o", ms=6, color=col[n], clip_on=False, zorder=6, mec="white")
        dl = cfg.gd_step * g["lam0"]
        handles.append(Line2D([], [], color=col[n], lw=2.2,
                              label=f"n = {n}: δ·λₘₐₓ(M₀) = {dl:.2f} {'>' if dl > 2 else '<'} 2"))
    for ax in (ax1, ax2):
        _style_axes(ax, cfg, logx=True, t_first=t_first)
    ax1.set_yscale("log")
    ax1.set_ylabel(r"relative loss gap $|L_{GD} - L_{flow}|\,/\,L_{flow}$", fontsize=FONT["label"])
    ax1.set_title(f"(a) GD vs flow loss (seed means), while $L_{{flow}}$ > {cfg.floor:.0e}·$L_0$",
                  fontsize=FONT["title"])
    ax1.text(0.98, 0.03, "even where GD is stable, the gaps compound\nas the loss decays: a GD step contracts a\n"
             r"mode by $1-\delta\lambda$, the flow by $e^{-\delta\lambda}$", transform=ax1.transAxes,
             ha="right", va="bottom", fontsize=FONT["note"] + 0.5, color="0.3")
    limit = 2.0 / cfg.gd_step
    ax2.axhline(limit, color="0.25", lw=1.0, ls="-.", zorder=2)
    ax2.annotate(f"GD stability limit 2/δ = {limit:g}", xy=(1.0, limit), xycoords=("axes fraction", "data"),
                 xytext=(-4, 4), textcoords="offset points", ha="right", va="bottom", fontsize=FONT["note"] + 0.5,
                 color="0.25")
    ax2.set_ylabel(r"$\lambda_{max}(M_t)$,  $M = G\circ S$ (E3)", fontsize=FONT["label"])
    ax2.set_title("(b) top eigenvalue of the kernel M_t (●: t = 0)", fontsize=FONT["title"])
    ax2.set_ylim(0, max(ax2.get_ylim()[1], 1.15 * limit))
    _fig_legend(fig, handles + _style_handles(cfg, method), ncol=min(len(handles) + 2, 4))
    seeds = len(_values(_select(runs, m=m), "seed"))
    fig.suptitle(f"GD (δ = {cfg.gd_step:g}) vs gradient flow: shallow {cfg.activation} net, d = {cfg.d}, m = {m}, "
                 f"mean of {seeds} seed{'s' if seeds > 1 else ''}\nGD is forward Euler on the flow, linearly "
                 "stable only where δ·λₘₐₓ(M) < 2", fontsize=FONT["suptitle"] - 1)
    return fig


def make_figures(runs: Sequence[Run], cfg: Config, *, method: str | None = None) -> dict:
    """The figures as {stem: Figure}: ``figure1`` (largest m), ``figure5`` (second m, with the largest m's GD
    curves dotted for comparison) and ``gd_vs_flow`` (relative loss gap and λ_max(M_t), largest m)."""
    method = method or cfg.flow_method
    ms = sorted(_values(runs, "m"), reverse=True)
    figs = {"figure1": _loss_figure(runs, cfg, ms[0], 1, method=method)}
    if len(ms) > 1:
        figs["figure5"] = _loss_figure(runs, cfg, ms[1], 5, method=method, compare_m=ms[0])
    figs["gd_vs_flow"] = _gap_figure(runs, cfg, ms[0], method=method)
    return figs


__all__ = [
    "PRESETS",
    "Config",
    "claim_gd_tracks_flow",
    "claim_linear_convergence",
    "claim_rate_decreases",
    "claim_widths_agree",
    "decay_window",
    "evaluate",
    "gd_flow_gaps",
    "linear_fit",
    "make_figures",
    "mean_curve",
    "run",
]
