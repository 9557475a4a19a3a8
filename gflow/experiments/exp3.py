r"""Experiment 3 — feature learning vs lazy training (the paper's Figures 3, 4, 7, 8; EQUATIONS.md §13.3).

P-3L net (4)–(5) with σ = ReLU in both hidden layers, d = 50, D = m, on the data of Wei, Lee, Liu & Ma (2019)
(:func:`gflow.data.wei2019`, labels ±1), under the three scalings of Table 1 (``"ours"``, ``"ntk"``
symmetrised, ``"mf"``).  For every scaling, training-set size n and seed two trajectories are computed from
the same initialisation and data:

* ``solver="gd"``: the paper's protocol — full-batch GD with δ = 1 and the Table-1 learning-rate rule
  (:func:`gflow.gradient_descent` applies the scaling's factor ℓ, so ``step=1.0`` *is* the paper's δ);
* ``solver="flow"``: the gradient flow the theory is about.  ReLU is kinked, so an adaptive ODE solver is of
  no help; the flow is GD with a small step δ_f (``Config.flow_step``), and one configuration is repeated
  with δ_f/2 (``solver="flow_check"``) to show that the step is small enough to be converged.

Both record the training loss (6), the test mean squared error (1/n_te)Σ(f − y)², the test sign error
(1/n_te)Σ1{sign f ≠ y}, λ_max(M_t) and the feature movement (1/m)Σ_i|h_i^t(x_a) − h_i^0(x_a)| at
``Config.n_saves`` evenly spaced times, and the features h_i(x₁) (x₁ = training input #0) and h_i(x₂)
(x₂ = test input #0) of all m neurons at t = 0 and at the end (the scatter of Figure 4, row 2).

Outputs under ``out/exp3/``: ``runs.nc`` (one group per run; the scatter features in the extra group
``scatter``, see :func:`load`), ``fig4_n{n}.png/.pdf`` for every n (the paper's Fig. 7, 4 and 8 are the
panels at n = 400, 600 and 800), ``fig3_test_error_vs_n.png/.pdf``, ``gd_vs_flow.png/.pdf`` and
``summary.md``.  Each claim is a pure function of the runs (``claim_*``) and can be checked on synthetic data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (Claim, ExperimentResult, Run, Timer, load_runs, resolve_preset, save_figure, save_runs,
                     write_summary)

NAME = "exp3"
TITLE = "Experiment 3 — feature learning vs lazy training (Figures 3, 4, 7, 8)"
SCALINGS = ("ours", "ntk", "mf")
SOLVERS = ("gd", "flow")

#: thresholds used by the claims (stated in summary.md)
MOVEMENT_RATIO = 0.3     # claim 1: mean final feature movement ntk / ours and ntk / mf below this
TRAIN_DROP = 1e-2        # claim 0: final training loss / initial training loss below this
GAP_TOL = 0.10           # claim 4: GD and flow "disagree" when their final test MSEs differ by more than 10 %
CHECK_TOL = 0.02         # claim 4: the flow proxy is converged when halving δ_f changes the test MSE by < 2 %

_SCALING_COLOR = {"ours": "tab:red", "ntk": "tab:blue", "mf": "tab:green"}
_SCALING_NAME = {"ours": "ours", "ntk": "NTK (symmetrised)", "mf": "mean field"}
_SOLVER_COLOR = {"gd": "tab:blue", "flow": "tab:red"}


@dataclass(frozen=True)
class Config:
    """Sizes and protocol of Experiment 3.

    Attributes:
        d: input dimension (50 in the paper).   m: width m = D (embedding dimension).
        ns: training-set sizes n.   seeds: seeds (data, network and embedding; test data use seed + test_seed_offset).
        scalings: subset of ("ours", "ntk", "mf").   n_test: test points (500 in the paper).
        gd_step: the paper's δ (1).   steps: GD steps (50 000 in the paper); horizon T = steps·gd_step.
        flow_step: δ_f of the small-step GD standing in for the flow (ReLU: no adaptive ODE solver helps).
        check_scaling, check_n: the configuration (first seed) repeated with δ_f/2 (check_n None: the largest n,
            where λ_max(M_0) and so the discretisation error are largest).
        n_saves: number of evenly spaced saved times after t = 0.
        keep_features: keep H/H_test (all neurons, all points, t = 0 and T) in the saved solutions; the
            scatter data (x₁, x₂ only) are always kept.  False at paper sizes (GiB otherwise).
        space: "auto" (the cheaper exact form, :func:`gflow.fields.auto_space`), "feature" or "weight".
        fig4_ns: the n for which a Figure-4 panel set is drawn (None: every n).
    """

    d: int = 50
    m: int = 8192
    ns: tuple[int, ...] = (400, 600, 800)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    scalings: tuple[str, ...] = SCALINGS
    n_test: int = 500
    gd_step: float = 1.0
    steps: int = 50_000
    flow_step: float = 0.1
    check_scaling: str = "ours"
    check_n: int | None = None
    n_saves: int = 100
    keep_features: bool = False
    test_seed_offset: int = 10_000
    space: str = "auto"
    fig4_ns: tuple[int, ...] | None = None

    def __post_init__(self):
        bad = [s for s in self.scalings if s not in SCALINGS]
        if bad or not self.scalings:
            raise ValueError(f"scalings must be a non-empty subset of {SCALINGS}, got {self.scalings}")
        if "ntk" in self.scalings and self.m % 2:
            raise ValueError(f"m must be even with the symmetrised 'ntk' scaling (§2.4: m counts the neurons of both "
                             f"halves), got m = {self.m}")
        if self.check_scaling not in self.scalings:
            raise ValueError(f"check_scaling {self.check_scaling!r} is not among the scalings {self.scalings}")
        if self.check_n is not None and self.check_n not in self.ns:
            raise ValueError(f"check_n {self.check_n} is not among ns {self.ns}")
        if self.fig4_ns is not None and not set(self.fig4_ns) <= set(self.ns):
            raise ValueError(f"fig4_ns {self.fig4_ns} must be among ns {self.ns}")
        if self.steps % self.n_saves:
            raise ValueError(f"steps ({self.steps}) must be a multiple of n_saves ({self.n_saves})")
        for step in (self.flow_step, self.flow_step / 2):
            k = self.save_interval / step
            if abs(k - round(k)) > 1e-9 * k:
                raise ValueError(f"the save interval T/n_saves = {self.save_interval:g} must be a multiple of the flow "
                                 f"steps δ_f = {self.flow_step:g} and δ_f/2")

    @property
    def horizon(self) -> float:
        """T = steps · gd_step (flow time; 50 000 in the paper)."""
        return self.steps * self.gd_step

    @property
    def save_interval(self) -> float:
        return self.horizon / self.n_saves

    @property
    def check_step(self) -> float:
        return self.flow_step / 2

    @property
    def check_config(self) -> tuple[str, int, int]:
        return self.check_scaling, (max(self.ns) if self.check_n is None else self.check_n), self.seeds[0]


PRESETS: dict[str, Config] = {
    # seconds: the test-suite's end-to-end check
    "tiny": Config(d=10, m=64, ns=(20, 40), seeds=(0,), n_test=50, steps=30, flow_step=0.5, n_saves=10,
                   keep_features=True, fig4_ns=(40,)),
    # minutes on a 2-core CPU: 1.2·10⁵ feature-space steps at m = 512, n ≤ 200 (the flow runs dominate); T = 1000
    "quick": Config(m=512, ns=(100, 150, 200), seeds=(0,), steps=1000, flow_step=0.1, n_saves=100,
                    keep_features=False),
    # the paper's sizes (GPU): 45 GD runs of 5·10⁴ steps, 45 flow runs of 5·10⁵ steps and a check of 10⁶ steps at
    # m = D = 8192, feature space (≈ 2mn² ≈ 10 GFLOP per step at n = 800).  Not run here; estimated at a few
    # hours on one H100 in float64 (≈ 0.5 ms per step at n = 800), the summary reports the measured wall time.
    "paper": Config(m=8192, ns=(400, 600, 800), seeds=(0, 1, 2, 3, 4), steps=50_000, flow_step=0.1, n_saves=200,
                    keep_features=False),
}

TRAIN_INDEX = 0  # x₁ of the scatter: training input #0
TEST_INDEX = 0   # x₂ of the scatter: test input #0


# ---------------------------------------------------------------------------------------------------------
# running


def _data(cfg: Config, n: int, seed: int):
    import gflow as gf

    X, y = gf.data.wei2019(n, cfg.d, seed=seed)
    X_te, y_te = gf.data.wei2019(cfg.n_test, cfg.d, seed=seed + cfg.test_seed_offset)
    return X, y, X_te, y_te


def _spec(cfg: Config, scaling: str, n: int, seed: int, solver: str, device: str) -> tuple[dict, dict]:
    """(labels, spec) of one run: the spec holds everything the run depends on (its id is a hash of it)."""
    step = {"gd": cfg.gd_step, "flow": cfg.flow_step, "flow_check": cfg.check_step}[solver]
    steps = round(cfg.horizon / step)
    labels = {"scaling": scaling, "n": int(n), "seed": int(seed), "solver": solver, "step": step, "steps": steps,
              "m": cfg.m, "D": cfg.m, "d": cfg.d, "n_test": cfg.n_test, "test_seed": int(seed) + cfg.test_seed_offset}
    spec = {**labels, "save_every": round(cfg.save_interval / step), "space": cfg.space,
            "keep_features": cfg.keep_features, "device": str(device)}
    return labels, spec


def _one(cfg: Config, scaling: str, n: int, seed: int, solver: str, data, device: str, checkpoint=None):
    """One trajectory: (Run with the solution, scatter array (2 points, 2 times, m), feature times)."""
    return _compute(_spec(cfg, scaling, n, seed, solver, device)[1], data, checkpoint)


def _compute(spec: dict, data, checkpoint=None):
    import gflow as gf

    from .tasks import solver_checkpoint

    X, y, X_te, y_te = data
    step, steps = spec["step"], spec["steps"]
    net = gf.Network(spec["d"], width=spec["m"], activation="relu", embedding=gf.RandomFeatures(D=spec["D"]),
                     scaling=spec["scaling"], seed=spec["seed"], device=spec["device"])
    sol = gf.gradient_descent(net, X, y, step=step, steps=steps, save_every=spec["save_every"],
                              X_test=X_te, y_test=y_te, space=spec["space"], features_at=(0.0, steps * step),
                              integrals=False, warn=False, progress=None,
                              **solver_checkpoint(checkpoint))
    scatter = np.stack([
        np.stack([sol.H[0][:, TRAIN_INDEX], sol.H[-1][:, TRAIN_INDEX]]),
        np.stack([sol.H_test[0][:, TEST_INDEX], sol.H_test[-1][:, TEST_INDEX]]),
    ]).astype(np.float64)
    ft = np.asarray(sol.feature_t, float)[[0, -1]]
    if not spec["keep_features"]:
        # drop the (K, m, n) features and the (m, D) weights — 512 MiB per run at m = D = 8192 — keeping a
        # zero-memory stand-in of the right shape (runs.nc never stores the weights: include_weights=False)
        sol = dataclasses.replace(sol, feature_t=np.zeros(0), H=np.zeros((0, sol.m, sol.n)), H_test=None,
                                  W_final=np.broadcast_to(np.float64(np.nan), sol.W_final.shape))
    labels = {k: spec[k] for k in ("scaling", "n", "seed", "solver", "step", "steps", "m", "D", "d", "n_test",
                                   "test_seed")}
    return Run(labels, sol), scatter, ft


def _task(spec: dict, checkpoint=None):
    """One run (in a worker): the solution, and the scatter features as extras stored in its run file."""
    import gflow as gf

    X, y = gf.data.wei2019(spec["n"], spec["d"], seed=spec["seed"])
    X_te, y_te = gf.data.wei2019(spec["n_test"], spec["d"], seed=spec["test_seed"])
    run, scatter, ft = _compute(spec, (X, y, X_te, y_te), checkpoint)
    return run.solution, {"scatter_h": (("scatter_point", "scatter_time", "neuron"), scatter),
                          "scatter_t": (("scatter_time",), ft)}


def _plan(cfg: Config) -> list[tuple[str, int, int, str]]:
    jobs = [(s, n, seed, solver) for s in cfg.scalings for n in cfg.ns for seed in cfg.seeds for solver in SOLVERS]
    s, n, seed = cfg.check_config
    jobs.append((s, n, seed, "flow_check"))
    return jobs


def tasks(cfg: Config, device: str = "cpu") -> list:
    """The runs of :func:`run` as :class:`~gflow.experiments.tasks.Task` (GD, so all checkpointable)."""
    from .tasks import Task

    return [Task(f"{__name__}:_task", *_spec(cfg, *job, device)) for job in _plan(cfg)]


def run(preset: str | Config = "quick", out=None, *, progress: bool | None = None, device: str = "cpu",
        config: Config | None = None, executor="local", workers: int | None = None,
        scheduler=None) -> ExperimentResult:
    """Run Experiment 3 and write ``runs.nc``, the figures and ``summary.md`` under ``out/exp3/``.

    Every run is a task (:mod:`gflow.experiments.tasks`) written to ``out/exp3/runs/<run_id>.nc`` (with its
    scatter features) as soon as it finishes; calling :func:`run` again computes only the missing runs (long
    ones resume from ``out/exp3/checkpoints/``).

    Args:
        preset: ``"tiny"`` (seconds), ``"quick"`` (minutes on a 2-core CPU) or ``"paper"`` (the paper's sizes,
            for a GPU), or a :class:`Config` (recorded as preset ``"custom"``, as in Experiments 1 and 2).
        out: output folder (default ``gflow-reproduce``); files go to ``out/exp3/``.
        progress: show a progress bar over runs (default: when attached to a terminal).
        device: ``"cpu"`` or ``"cuda"``.
        config: a :class:`Config` replacing the preset's (recorded as ``"custom"`` unless it equals the preset's).
        executor, workers, scheduler: where the runs execute: ``"local"`` (serial, default), ``"process"``
            (``workers`` processes) or ``"dask"`` (``scheduler``: a running cluster), as in :func:`gflow.sweep`.

    Returns:
        an :class:`~gflow.experiments.common.ExperimentResult` with one run per (scaling, n, seed, solver),
        labels ``scaling, n, seed, solver ("gd" | "flow" | "flow_check"), step, steps, m, D, d, n_test,
        test_seed``, the claims, the files written and the wall time.
    """
    from .tasks import clean_checkpoints, execute

    if isinstance(preset, Config) and config is not None:
        raise ValueError("give the exp3.Config either as preset or as config, not as both")
    preset, cfg = resolve_preset(preset, PRESETS, Config, NAME)
    cfg = cfg if config is None else config
    if config is not None and config != PRESETS.get(preset):
        preset = "custom"  # (the summary and runs.nc must not name a preset whose configuration was not run)
    out_dir = Path("gflow-reproduce" if out is None else out) / NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict = {}
    with Timer() as timer:
        done = execute(tasks(cfg, device), out_dir, executor=executor, workers=workers, scheduler=scheduler,
                       progress=progress, desc="exp3 runs", report=counts.update)
        clean_checkpoints(out_dir)
        runs = [r for r, _ in done]
        sc = {"h": np.stack([e["scatter_h"] for _, e in done]), "t": np.stack([e["scatter_t"] for _, e in done])}
        files = [save_runs(out_dir / "runs.nc", runs, experiment=NAME, preset=preset, config=cfg,
                           also=lambda file: _save_scatter(file, sc))]
        files += make_figures(runs, sc, out_dir, fig4_ns=cfg.fig4_ns)
        claims = claims_of(runs)
    notes = _notes(cfg, runs, timer.seconds)
    files.append(write_summary(out_dir / "summary.md", title=TITLE, preset=preset, claims=claims, notes=notes,
                               wall_time=timer.seconds, figures=files))
    return ExperimentResult(NAME, preset, runs, claims, files, timer.seconds, notes, counts)


def _save_scatter(path: Path, sc: dict) -> None:
    import xarray as xr

    ds = xr.Dataset(
        {"h": (("run", "point", "feature_time", "neuron"), sc["h"]), "t": (("run", "feature_time"), sc["t"])},
        attrs={"description": "h_i(x) of every neuron i at t = 0 and at the end, x = (x1 = training input "
                              f"#{TRAIN_INDEX}, x2 = test input #{TEST_INDEX}); run k is group run{{k:03d}}"},
    )
    ds.to_netcdf(path, mode="a", group="scatter", engine="h5netcdf")


def load(path) -> tuple[dict, list[Run], dict]:
    """Read ``runs.nc`` written by :func:`run`: (attributes, runs, scatter) with scatter = {"h": (R, 2, 2, m),
    "t": (R, 2)} (R runs; points x₁, x₂; times 0, end).  Re-draw the figures with :func:`make_figures`."""
    import xarray as xr

    attrs, runs = load_runs(path)
    with xr.open_dataset(path, group="scatter", engine="h5netcdf") as ds:
        sc = {"h": ds["h"].values, "t": ds["t"].values}
    return attrs, runs, sc


# ---------------------------------------------------------------------------------------------------------
# measurements (pure functions of the runs)


def _ok(run: Run) -> bool:
    return run.solution.status == "success" and bool(np.isfinite(run.solution.loss[-1]))


def final(run: Run, what: str) -> float:
    """Final value of ``"test_mse"``, ``"test_sign"``, ``"loss"``, ``"movement"`` (mean over training points) or
    ``"lam0"`` (λ_max(M_0)); NaN for a run that did not finish (e.g. diverged GD)."""
    sol = run.solution
    if what == "lam0":
        return float(sol.lam_max_M[0]) if sol.lam_max_M is not None else math.nan
    if not _ok(run):
        return math.nan
    if what == "test_mse":
        return float(sol.test_error[-1])
    if what == "test_sign":
        return float(sol.test_sign_error[-1]) if sol.test_sign_error is not None else math.nan
    if what == "loss":
        return float(sol.loss[-1])
    if what == "movement":
        return float(np.mean(sol.feature_movement[-1]))
    raise ValueError(f"unknown quantity {what!r}")


def _select(runs: Iterable[Run], **labels) -> list[Run]:
    return [r for r in runs if all(r.labels.get(k) == v for k, v in labels.items())]


def _values(runs: Iterable[Run], key: str) -> list:
    return sorted({r.labels[key] for r in runs if key in r.labels})


def _mean(runs: list[Run], what: str) -> float:
    """Mean of a final value over the finished runs (NaN if none); the claims count the others with
    :func:`_failed`."""
    v = np.array([final(r, what) for r in runs], float)
    return float(np.nanmean(v)) if v.size and np.any(np.isfinite(v)) else math.nan


def _failed(runs: list[Run]) -> int:
    """How many of ``runs`` did not finish (GD past its stability limit diverges): their final values are NaN,
    left out of :func:`_mean`, and every claim counts them as failures (a verdict must not hinge on them)."""
    return sum(not _ok(r) for r in runs)


def _diverged(runs: list[Run]) -> str:
    """' (k/N diverged)' for the k of the N ``runs`` that did not finish, as Exp 2 reports them; '' for none."""
    k = _failed(runs)
    return f" ({k}/{len(runs)} diverged)" if k else ""


def _scalings(runs) -> list[str]:
    return [s for s in SCALINGS if _select(runs, scaling=s)]


def _solvers(runs) -> list[str]:
    return [s for s in SOLVERS if _select(runs, solver=s)]


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{digits}g}"


# ---------------------------------------------------------------------------------------------------------
# claims


def claim_training(runs: Sequence[Run], drop: float = TRAIN_DROP) -> Claim:
    """Claim 0 (Fig. 4, row 1): the training loss goes to ~0 under all three scalings (GD and flow).

    Confirmed when L_T/L_0 < ``drop`` in every run; a run that did not finish (diverged: L_T is NaN) fails it,
    whatever its place among the runs."""
    main = [r for r in runs if r.labels.get("solver") in SOLVERS]
    worst, reached, div = {}, {}, {}
    for s in _scalings(main):
        for solver in _solvers(main):
            rs = _select(main, scaling=s, solver=solver)
            v = np.array([final(r, "loss") / float(r.solution.loss[0]) for r in rs], float)
            fin = v[np.isfinite(v)]
            worst[(s, solver)] = float(fin.max()) if fin.size else math.nan  # over the finished runs
            reached[(s, solver)] = bool(v.size) and bool(np.all(v < drop))  # NaN (diverged) is not below
            div[(s, solver)] = _diverged(rs)
    if not worst:
        return Claim("All three scalings fit the training data (Fig. 4, row 1).", "no runs", "inconclusive")
    failed = [k for k, ok in reached.items() if not ok]
    measured = "; ".join(f"{s}: GD {_fmt(worst.get((s, 'gd'), math.nan), 2)}{div.get((s, 'gd'), '')}, flow "
                         f"{_fmt(worst.get((s, 'flow'), math.nan), 2)}{div.get((s, 'flow'), '')}"
                         for s in _scalings(main))
    T = max(float(r.solution.t[-1]) for r in main)
    measured = (f"worst L_T/L_0 over n and seeds (finished runs) at t = {T:g} — {measured} (threshold {drop:g}; "
                "a diverged run fails it)")
    verdict = "confirmed" if not failed else "not confirmed"
    if failed:
        measured += "; not reached: " + ", ".join(f"{s}/{solver}" for s, solver in failed)
    return Claim("All three scalings drive the training loss to ≈ 0 (Fig. 4, row 1).", measured, verdict)


def claim_feature_movement(runs: Sequence[Run], ratio: float = MOVEMENT_RATIO) -> Claim:
    """Claim 1 (Fig. 4, row 2): features move under ours and mf but barely under ntk.

    Measured by the final feature movement (1/m)Σ_i|h_i^T(x_a) − h_i^0(x_a)|, averaged over training points,
    n and seeds (finished runs); confirmed when ntk/ours and ntk/mf are both below ``ratio`` for GD and for the
    flow.  A solver with a run that did not finish (diverged) fails: its movement is unknown."""
    text = "Features move under 'ours' and 'mf' but barely under 'ntk' (Fig. 4, row 2; lazy training)."
    main = [r for r in runs if r.labels.get("solver") in SOLVERS]
    if not all(_select(main, scaling=s) for s in SCALINGS):
        return Claim(text, "needs runs of all three scalings", "inconclusive")
    parts, verdicts = [], []
    for solver in _solvers(main):
        sel = {s: _select(main, scaling=s, solver=solver) for s in SCALINGS}
        mv = {s: _mean(sel[s], "movement") for s in SCALINGS}
        r_o, r_m = mv["ntk"] / mv["ours"], mv["ntk"] / mv["mf"]
        verdicts.append(r_o < ratio and r_m < ratio and not any(_failed(rs) for rs in sel.values()))
        name = "GD δ=1" if solver == "gd" else "flow"
        parts.append(f"{name}: " + ", ".join(f"{s} {_fmt(mv[s])}{_diverged(sel[s])}" for s in SCALINGS)
                     + f" (ntk/ours {_fmt(r_o, 2)}, ntk/mf {_fmt(r_m, 2)})")
    ms = _values(main, "m")
    if ms:
        parts.append(f"1/√m = {_fmt(1 / math.sqrt(ms[-1]), 2)}")
    measured = "mean final movement (1/m)Σ|h_i^T − h_i^0| — " + "; ".join(parts) + f"; threshold ratio {ratio:g}"
    verdict = "confirmed" if all(verdicts) else ("not confirmed" if not any(verdicts) else "inconclusive")
    return Claim(text, measured, verdict)


def claim_lowest_test_error(runs: Sequence[Run]) -> Claim:
    """Claim 2 (Figs. 3, 4): 'ours' has the lowest test error.

    For every n, solver and metric (test MSE, test sign error; means over seeds) ours ≤ min(ntk, mf) counts as a
    win.  Confirmed if ours wins every comparison, not confirmed if it wins fewer than half, else inconclusive.
    Means are over the finished runs; a run that did not finish (diverged) counts against its scaling: ours does
    not win where one of its runs diverged, and a scaling whose runs all diverged loses to ours."""
    text = "'Ours' has the lowest test error of the three scalings (Figs. 3, 4, 7, 8)."
    main = [r for r in runs if r.labels.get("solver") in SOLVERS]
    scs = _scalings(main)
    if "ours" not in scs or len(scs) < 2:
        return Claim(text, "needs 'ours' and another scaling", "inconclusive")
    wins, total, parts = 0, 0, []
    for solver in _solvers(main):
        for n in _values(main, "n"):
            sel = {s: _select(main, scaling=s, solver=solver, n=n) for s in scs}
            fails = {s: _failed(rs) for s, rs in sel.items()}
            cell = []
            for metric, short in (("test_mse", "MSE"), ("test_sign", "sign")):
                v = {s: _mean(sel[s], metric) for s in scs}
                if not any(fails.values()) and not all(math.isfinite(x) for x in v.values()):
                    continue  # (not recorded)
                total += 1
                others = [x for s, x in v.items() if s != "ours" and math.isfinite(x) and not fails[s]]
                win = not fails["ours"] and math.isfinite(v["ours"]) and all(v["ours"] <= x for x in others)
                wins += win
                cell.append(f"{short} " + "/".join(_fmt(v[s], 2) for s in scs) + ("" if win else " ✗"))
            div = ", ".join(f"{s} {k}/{len(sel[s])}" for s, k in fails.items() if k)
            parts.append(f"{'GD' if solver == 'gd' else 'flow'} n={n}: " + ", ".join(cell)
                         + (f" ({div} diverged)" if div else ""))
    if total == 0:
        return Claim(text, "no finished runs", "inconclusive")
    measured = (f"final test error ({'/'.join(scs)}; ✗ = ours not lowest): " + "; ".join(parts)
                + f" — ours lowest in {wins}/{total}")
    verdict = "confirmed" if wins == total else ("not confirmed" if wins < total / 2 else "inconclusive")
    return Claim(text, measured, verdict)


def claim_trend_with_n(runs: Sequence[Run]) -> Claim:
    """Claim 3 (Fig. 3): the test error decreases as n grows.

    For every scaling and solver, the test MSE (mean over seeds) at the largest n is below that at the smallest;
    confirmed if so for all, not confirmed if for fewer than half, else inconclusive.  Means are over the finished
    runs; a run at the smallest or largest n that did not finish (diverged) makes its row fail."""
    text = "The test error decreases as the number of training points n grows (Fig. 3)."
    main = [r for r in runs if r.labels.get("solver") in SOLVERS]
    ns = _values(main, "n")
    if len(ns) < 2:
        return Claim(text, "needs at least two values of n", "inconclusive")
    good, total, parts = 0, 0, []
    for solver in _solvers(main):
        for s in _scalings(main):
            sel = [_select(main, scaling=s, solver=solver, n=n) for n in ns]
            mse = [_mean(rs, "test_mse") for rs in sel]
            sign = [_mean(rs, "test_sign") for rs in sel]
            ends_failed = _failed(sel[0]) + _failed(sel[-1])
            if not ends_failed and not (math.isfinite(mse[0]) and math.isfinite(mse[-1])):
                continue
            total += 1
            dec = not ends_failed and mse[-1] < mse[0]
            good += dec
            div = ", ".join(f"n={n}: {_failed(rs)}/{len(rs)}" for n, rs in zip(ns, sel) if _failed(rs))
            parts.append(f"{s} {'GD' if solver == 'gd' else 'flow'}: MSE " + "→".join(_fmt(x, 2) for x in mse)
                         + ", sign " + "→".join(_fmt(x, 2) for x in sign) + ("" if dec else " ✗")
                         + (f" (diverged {div})" if div else ""))
    if total == 0:
        return Claim(text, "no finished runs", "inconclusive")
    measured = f"n = {', '.join(map(str, ns))}: " + "; ".join(parts) + f" — decreasing in {good}/{total}"
    verdict = "confirmed" if good == total else ("not confirmed" if good < total / 2 else "inconclusive")
    return Claim(text, measured, verdict)


def gd_flow_pairs(runs: Sequence[Run]) -> list[dict]:
    """Per (scaling, n): mean final test MSE and sign error of GD (δ = 1) and of the flow over their finished runs,
    their relative MSE gap (GD − flow)/flow, δ·λ_max(M_0) (mean over seeds), and for each solver whether every run
    finished (``gd_ok``, ``flow_ok``) and how many did not (``gd_failed`` of ``n_gd``, ``flow_failed`` of
    ``n_flow``)."""
    out = []
    for s in _scalings(runs):
        for n in _values(runs, "n"):
            g, f = _select(runs, scaling=s, n=n, solver="gd"), _select(runs, scaling=s, n=n, solver="flow")
            if not g or not f:
                continue
            gm, fm = _mean(g, "test_mse"), _mean(f, "test_mse")
            step = float(g[0].labels.get("step", 1.0))
            out.append({"scaling": s, "n": n, "gd_mse": gm, "flow_mse": fm, "gap": (gm - fm) / fm,
                        "gd_sign": _mean(g, "test_sign"), "flow_sign": _mean(f, "test_sign"),
                        "stability": step * float(np.nanmean([final(r, "lam0") for r in g])),
                        "gd_ok": all(_ok(r) for r in g), "gd_failed": _failed(g), "n_gd": len(g),
                        "flow_ok": all(_ok(r) for r in f), "flow_failed": _failed(f), "n_flow": len(f)})
    return out


def flow_check(runs: Sequence[Run]) -> dict | None:
    """The halving check: relative change of the final test MSE (and the sign error) between the flow run with
    δ_f and the one with δ_f/2, or None without a ``flow_check`` run."""
    for c in _select(runs, solver="flow_check"):
        lab = c.labels
        f = _select(runs, solver="flow", scaling=lab["scaling"], n=lab["n"], seed=lab["seed"])
        if not f:
            continue
        a, b = final(f[0], "test_mse"), final(c, "test_mse")
        return {"scaling": lab["scaling"], "n": lab["n"], "seed": lab["seed"], "step": f[0].labels.get("step"),
                "half": lab.get("step"), "mse": a, "mse_half": b, "rel": abs(a - b) / abs(b),
                "sign": final(f[0], "test_sign"), "sign_half": final(c, "test_sign"),
                "movement_rel": abs(final(f[0], "movement") - final(c, "movement")) / abs(final(c, "movement"))}
    return None


def claim_gd_vs_flow(runs: Sequence[Run], tol: float = GAP_TOL, check_tol: float = CHECK_TOL) -> Claim:
    """Claim 4 (§13 caveat): GD with δ = 1 — the paper's protocol — tracks the gradient flow the theory analyses.

    GD and flow disagree in a configuration when their final test MSEs (means over the finished runs) differ by
    more than ``tol`` (relative), or when one of its GD or flow runs did not finish (diverged).
    Confirmed when no configuration disagrees, not confirmed when some do; inconclusive when the flow proxy is
    not converged (halving δ_f changes the test MSE by ≥ ``check_tol``) or there is nothing to compare."""
    text = ("GD with δ = 1 (the paper's protocol) follows the gradient flow that the theory analyses "
            "(§13: GD is only stable near a point where δ·λ_max(M) < 2).")
    pairs = gd_flow_pairs(runs)
    if not pairs:
        return Claim(text, "no GD/flow pairs", "inconclusive")
    chk = flow_check(runs)

    def finished(p):
        return p["gd_ok"] and p["flow_ok"]

    def agree(p):
        return finished(p) and abs(p["gap"]) <= tol

    def div(p):
        return "".join(f" ({name} {p[k + '_failed']}/{p['n_' + k]} diverged)"
                       for k, name in (("gd", "GD"), ("flow", "flow")) if p[k + "_failed"])

    bad = [p for p in pairs if not agree(p)]
    parts = [f"{p['scaling']} n={p['n']}: δλ_max(M₀)={_fmt(p['stability'], 2)}, MSE GD {_fmt(p['gd_mse'])} vs flow "
             f"{_fmt(p['flow_mse'])} ({p['gap']:+.0%}), sign {_fmt(p['gd_sign'], 2)} vs {_fmt(p['flow_sign'], 2)}"
             + div(p) + ("" if agree(p) else " ✗") for p in pairs]
    above = [abs(p["gap"]) for p in pairs if p["stability"] >= 2 and finished(p) and math.isfinite(p["gap"])]
    below = [abs(p["gap"]) for p in pairs if p["stability"] < 2 and finished(p) and math.isfinite(p["gap"])]
    n_div = sum(not finished(p) for p in pairs)
    summary = (f"{len(bad)}/{len(pairs)} configurations disagree by > {tol:.0%} (✗"
               + (f"; {n_div} of them with a diverged run" if n_div else "") + "); mean |gap| "
               f"{_fmt(float(np.mean(below)), 2) if below else '—'} where δλ_max(M₀) < 2, "
               f"{_fmt(float(np.mean(above)), 2) if above else '—'} where ≥ 2")
    if chk is None:
        conv = "no halving check"
        converged = False
    else:
        converged = chk["rel"] < check_tol
        conv = (f"halving check ({chk['scaling']} n={chk['n']}): δ_f={chk['step']:g} vs {chk['half']:g} changes "
                f"the test MSE by {100 * chk['rel']:.2g} % and the sign error {_fmt(chk['sign'], 3)} vs "
                f"{_fmt(chk['sign_half'], 3)}")
    measured = summary + ". " + "; ".join(parts) + ". " + conv
    if not converged:
        verdict = "inconclusive"
    else:
        verdict = "confirmed" if not bad else "not confirmed"
    return Claim(text, measured, verdict)


CLAIMS = (claim_training, claim_feature_movement, claim_lowest_test_error, claim_trend_with_n, claim_gd_vs_flow)


def claims_of(runs: Sequence[Run]) -> list[Claim]:
    """Every claim of Experiment 3, in order, from the runs alone."""
    return [f(runs) for f in CLAIMS]


# ---------------------------------------------------------------------------------------------------------
# figures


def _curves(runs: list[Run], attr: str, scale: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, mean, std) over the runs of a time series on the common saved grid (finished runs only); the sample
    std (ddof = 1, as Exp 2's; 0 for a single run)."""
    rs = [r for r in runs if _ok(r)] or runs
    T = min(len(r.solution.t) for r in rs)
    t = np.asarray(rs[0].solution.t[:T], float)
    ys = []
    for r in rs:
        v = np.asarray(getattr(r.solution, attr)[:T], float)
        if scale is not None:
            v = v * scale / r.solution.n
        ys.append(v)
    ys = np.array(ys)
    return t, ys.mean(0), (ys.std(0, ddof=1) if len(ys) > 1 else 0 * ys[0])


def _style(ax) -> None:
    from ..plotting import FONT

    ax.tick_params(labelsize=FONT["tick"])
    ax.grid(True, which="major", alpha=0.25, lw=0.6)


def scatter_limits(runs: Sequence[Run], sc: dict, n: int) -> dict[str, float]:
    """{solver: half-width} of the square axes of Figure 4's scatter row of that solver at this n: 1.08 × the
    largest |h| over the row's scalings (first seed), so that the scalings share one range as in the paper, where
    features barely moving (NTK) show as a small cloud next to those that move.  Over the finished runs (a diverged
    GD run's features, 1e6, shrank the others to a dot), over all where none finished."""
    runs = list(runs)
    seed = _values(_select(runs, n=n), "seed")[0]
    out = {}
    for solver in SOLVERS:
        ks = [k for k, r in enumerate(runs) if r.labels.get("n") == n and r.labels.get("solver") == solver
              and r.labels.get("seed") == seed]
        ks = [k for k in ks if _ok(runs[k])] or ks
        vals = np.concatenate([np.asarray(sc["h"][k], float).ravel() for k in ks]) if ks else np.zeros(0)
        vals = np.abs(vals[np.isfinite(vals)])
        out[solver] = 1.08 * float(vals.max()) if vals.size and vals.max() > 0 else 1.0
    return out


def _fig4(runs: list[Run], sc: dict, n: int, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..plotting import FONT

    scs = _scalings(runs)
    seeds = _values(_select(runs, n=n), "seed")
    index = {id(r): k for k, r in enumerate(runs)}
    fig, axes = plt.subplots(3, len(scs), figsize=(4.3 * len(scs), 11.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1.0, 1.08, 1.08]})
    any_run = _select(runs, n=n)[0]
    gd_step = next((r.labels["step"] for r in _select(runs, solver="gd")), 1.0)
    flow_step = next((r.labels["step"] for r in _select(runs, solver="flow")), math.nan)
    chk = flow_check(runs)
    top = 0.0
    lims = scatter_limits(runs, sc, n)
    for j, s in enumerate(scs):
        ax = axes[0, j]
        for solver in SOLVERS:
            rs = _select(runs, scaling=s, n=n, solver=solver)
            if not rs:
                continue
            col = _SOLVER_COLOR[solver]
            t, tr, _ = _curves(rs, "loss", scale=2.0)
            t2, te, te_sd = _curves(rs, "test_error")
            _, sg, _ = _curves(rs, "test_sign_error")
            ax.plot(t, tr, color=col, lw=1.7, ls="-")
            ax.plot(t2, te, color=col, lw=1.7, ls="--")
            if len(rs) > 1:
                ax.fill_between(t2, te - te_sd, te + te_sd, color=col, alpha=0.15, lw=0)
            ax.plot(t2, sg, color=col, lw=1.1, ls=":")
            top = max(top, float(np.nanmax(te + te_sd)), float(np.nanmax(tr)))
            if any(not _ok(r) for r in rs):
                ax.text(0.5, 0.5, "GD diverged", transform=ax.transAxes, ha="center", color=col)
        ax.set_xlim(0, float(any_run.solution.t[-1]))
        ax.set_title(_SCALING_NAME[s], fontsize=FONT["title"] + 1, fontweight="bold")
        ax.set_xlabel(r"time $t = k\delta$", fontsize=FONT["label"])
        if j == 0:
            ax.set_ylabel("training / test error", fontsize=FONT["label"])
        _style(ax)
        # scatter rows: GD and flow, each on square axes shared by the row's scalings (lims: the paper's Fig. 4
        # compares the scalings on common axes; GD's features can reach much further than the flow's)
        sel = {solver: [index[id(r)] for r in _select(runs, scaling=s, n=n, solver=solver, seed=seeds[0])]
               for solver in SOLVERS}
        for i, solver in enumerate(SOLVERS, start=1):
            ax = axes[i, j]
            if not sel[solver]:
                ax.set_visible(False)
                continue
            lim = lims[solver]
            k = sel[solver][0]
            h, tt = sc["h"][k], sc["t"][k]
            # the end first, t = 0 on top in small dark dots: where features barely move (NTK) both stay visible
            ax.scatter(h[0, 1], h[1, 1], s=9, color=_SOLVER_COLOR[solver], alpha=0.45, edgecolors="none",
                       zorder=3, label=rf"$t = {tt[1]:.4g}$")
            ax.scatter(h[0, 0], h[1, 0], s=1.5, color="0.15", alpha=0.7, edgecolors="none", zorder=4,
                       label=r"$t = 0$")
            mv = final(runs[k], "movement")
            ax.text(0.97, 0.03, rf"mean$_{{i,a}}\,|h_i^T(x_a)-h_i^0(x_a)|$ = {_fmt(mv, 2)}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=FONT["note"], color="0.2",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}, zorder=5)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal", adjustable="box")
            ax.axhline(0, color="0.8", lw=0.6, zorder=1)
            ax.axvline(0, color="0.8", lw=0.6, zorder=1)
            ax.set_xlabel(r"$h_i(x_1)$, $x_1$ = training input", fontsize=FONT["label"])
            if j == 0:
                ax.set_ylabel(r"$h_i(x_2)$, $x_2$ = test input", fontsize=FONT["label"])
            name = f"GD δ = {gd_step:g}" if solver == "gd" else f"flow (GD δ = {flow_step:g})"
            ax.set_title(f"{_SCALING_NAME[s]}: features, {name}", fontsize=FONT["title"])
            _style(ax)
            leg = ax.legend(fontsize=FONT["legend"], markerscale=2.5, loc="upper left", framealpha=0.85)
            for hd in leg.legend_handles:
                hd.set_sizes([24.0])
                hd.set_alpha(1.0)
            leg.get_frame().set_linewidth(0.5)
    for ax in axes[0]:
        ax.set_ylim(0, max(1.05, 1.05 * top))  # one error scale for the three scalings
    handles = [Line2D([], [], color=_SOLVER_COLOR["gd"], lw=2, label=f"GD, δ = {gd_step:g} (paper's protocol)"),
               Line2D([], [], color=_SOLVER_COLOR["flow"], lw=2, label=f"gradient flow (GD, δ = {flow_step:g})"),
               Line2D([], [], color="0.3", lw=1.7, ls="-", label="training MSE  (2/n)·L"),
               Line2D([], [], color="0.3", lw=1.7, ls="--", label="test MSE"),
               Line2D([], [], color="0.3", lw=1.1, ls=":", label="test sign error")]
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=FONT["legend"] + 0.5, frameon=False,
               bbox_to_anchor=(0.5, 0.962))
    m = any_run.labels.get("m")
    check = ""
    if chk is not None:
        check = (f"; flow step checked by halving ({chk['scaling']}, n = {chk['n']}): δ = {chk['step']:g} → "
                 f"{chk['half']:g} changes the final test MSE by {100 * chk['rel']:.2g} %")
    seed_txt = f"{len(seeds)} seed" + ("s (mean ± sample std)" if len(seeds) > 1 else "")
    fig.suptitle(f"P-3L, ReLU, d = {any_run.labels.get('d')}, m = D = {m}, n = {n}, {seed_txt}; "
                 f"Wei et al. data, {any_run.labels.get('n_test')} test points\n"
                 f"features at t = 0 (dark dots) and at the end: x₁ = training input #{TRAIN_INDEX}, "
                 f"x₂ = test input #{TEST_INDEX}, seed {seeds[0]}{check}",
                 fontsize=FONT["suptitle"] - 1, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.952))
    fig.subplots_adjust(top=0.905)
    paths = save_figure(fig, out_dir, f"fig4_n{n}")
    plt.close(fig)
    return paths


def _fig3(runs: list[Run], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from ..plotting import FONT

    main = [r for r in runs if r.labels.get("solver") in SOLVERS]
    ns = _values(main, "n")
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.1))
    for ax, metric, label in ((axes[0], "test_mse", r"test MSE $\frac{1}{500}\sum(f-y)^2$"),
                              (axes[1], "test_sign", r"test sign error $\frac{1}{500}\sum 1\{\mathrm{sign}\,f\neq y\}$")):
        for s in _scalings(main):
            for solver, ls, mk in (("gd", "-", "o"), ("flow", "--", "s")):
                mu, sd = [], []
                for n in ns:
                    v = np.array([final(r, metric) for r in _select(main, scaling=s, solver=solver, n=n)], float)
                    v = v[np.isfinite(v)]
                    mu.append(v.mean() if v.size else np.nan)
                    sd.append(v.std(ddof=1) if v.size > 1 else (0.0 if v.size else np.nan))  # sample std
                ax.errorbar(ns, mu, yerr=sd, color=_SCALING_COLOR[s], ls=ls, marker=mk, ms=5, lw=1.6, capsize=3,
                            mfc="white" if solver == "flow" else _SCALING_COLOR[s])
        n_te = main[0].labels.get("n_test", 500) if main else 500
        ax.set_ylabel(label.replace("500", str(n_te)), fontsize=FONT["label"])
        ax.set_xlabel("number of training points n", fontsize=FONT["label"])
        ax.set_xticks(ns)
        ax.set_ylim(bottom=0)
        _style(ax)
    handles = [Line2D([], [], color=_SCALING_COLOR[s], lw=2, label=_SCALING_NAME[s]) for s in _scalings(main)]
    gd_step = next((r.labels["step"] for r in _select(main, solver="gd")), 1.0)
    flow_step = next((r.labels["step"] for r in _select(main, solver="flow")), math.nan)
    handles += [Line2D([], [], color="0.3", ls="-", marker="o", label=f"GD, δ = {gd_step:g}"),
                Line2D([], [], color="0.3", ls="--", marker="s", mfc="white", label=f"flow (GD, δ = {flow_step:g})")]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=FONT["legend"] + 0.5, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    lab = main[0].labels if main else {}
    seeds = _values(main, "seed")
    T = main[0].solution.t[-1] if main else math.nan
    fig.suptitle(f"Test error at t = {T:g} vs n — P-3L, ReLU, m = D = {lab.get('m')}, {len(seeds)} seed"
                 + ("s, mean ± sample std (ddof = 1) over the finished runs" if len(seeds) > 1 else ""),
                 fontsize=FONT["suptitle"] - 1, y=1.07)
    fig.tight_layout()
    paths = save_figure(fig, out_dir, "fig3_test_error_vs_n")
    plt.close(fig)
    return paths


def _fig_gap(runs: list[Run], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from ..plotting import FONT

    pairs = gd_flow_pairs(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.9))
    ns = sorted({p["n"] for p in pairs})
    sizes = {n: 30 + 50 * k for k, n in enumerate(ns)}
    for p in pairs:
        c = _SCALING_COLOR[p["scaling"]]
        axes[0].scatter(p["stability"], p["gd_mse"] / p["flow_mse"], color=c, s=sizes[p["n"]], edgecolors="k",
                        linewidths=0.5, zorder=3)
        axes[1].scatter(p["stability"], p["gd_sign"] - p["flow_sign"], color=c, s=sizes[p["n"]], edgecolors="k",
                        linewidths=0.5, zorder=3)
    for ax, lab, ref in ((axes[0], "test MSE: GD δ=1 / flow", 1.0), (axes[1], "test sign error: GD δ=1 − flow", 0.0)):
        ax.axvline(2.0, color="0.3", ls=":", lw=1.2)
        ax.axhline(ref, color="0.6", lw=0.8)
        ax.set_xlabel(r"$\delta\,\lambda_{\max}(M_0)$  (GD linearly unstable beyond 2)", fontsize=FONT["label"])
        ax.set_ylabel(lab, fontsize=FONT["label"])
        _style(ax)
    if pairs:
        axes[0].axhspan(1 - GAP_TOL, 1 + GAP_TOL, color="0.85", alpha=0.5, lw=0, zorder=0)
    for s in _scalings(runs):
        axes[0].scatter([], [], color=_SCALING_COLOR[s], label=_SCALING_NAME[s], edgecolors="k", linewidths=0.5)
    for n in ns:
        axes[0].scatter([], [], color="w", edgecolors="k", s=sizes[n], label=f"n = {n}")
    if pairs:
        axes[0].legend(fontsize=FONT["legend"], loc="best", framealpha=0.85)
    fig.suptitle("Where GD with the paper's δ = 1 departs from the gradient flow (grey band: ±10 %)",
                 fontsize=FONT["suptitle"] - 1)
    fig.tight_layout()
    paths = save_figure(fig, out_dir, "gd_vs_flow")
    plt.close(fig)
    return paths


def make_figures(runs: Sequence[Run], scatter: dict, out_dir, *, fig4_ns: Sequence[int] | None = None) -> list[Path]:
    """Figure 4 analogues (one per n in ``fig4_ns``, default every n), the Figure 3 analogue and the GD-vs-flow
    figure; PNG and PDF each."""
    out_dir = Path(out_dir)
    runs = list(runs)
    files: list[Path] = []
    for n in (_values(runs, "n") if fig4_ns is None else fig4_ns):
        files += _fig4(runs, scatter, n, out_dir)
    files += _fig3(runs, out_dir)
    files += _fig_gap(runs, out_dir)
    return files


# ---------------------------------------------------------------------------------------------------------
# summary notes


def _notes(cfg: Config, runs: list[Run], wall: float) -> list[str]:
    ns = ", ".join(map(str, cfg.ns))
    lam = {n: _mean(_select(runs, n=n, solver="gd"), "lam0") for n in cfg.ns}
    t_gd = sum(r.solution.stats.get("wall_time", 0.0) for r in _select(runs, solver="gd"))
    t_fl = sum(r.solution.stats.get("wall_time", 0.0) for r in runs if r.labels["solver"] != "gd")
    space = runs[0].solution.config.get("space") if runs else "?"
    paper = Config()
    horizon = f"horizon T = {cfg.horizon:g}"
    if cfg.horizon != paper.horizon:
        horizon += f" (the paper: {paper.horizon:g}; shorter here to fit the preset's budget)"
    check_s, check_n, check_seed = cfg.check_config
    notes = [
        (f"Sizes: d = {cfg.d}, m = D = {cfg.m}, n ∈ {{{ns}}}, seeds {list(cfg.seeds)}, {cfg.n_test} test points "
         f"(seed + {cfg.test_seed_offset}); {horizon}. ReLU in both hidden layers, ĉ = 1, NTK symmetrised "
         "(§2.4, m counts all neurons)."),
        (f"GD: the paper's protocol, full batch, δ = {cfg.gd_step:g} with the Table-1 factor ℓ (m, 1, m²), "
         f"{cfg.steps} steps. Gradient flow: ReLU is kinked, so the flow is GD with δ_f = {cfg.flow_step:g} "
         f"({round(cfg.horizon / cfg.flow_step)} steps), checked once by halving δ_f "
         f"({check_s}, n = {check_n}, seed {check_seed})."),
        ("λ_max(M₀) (mean over scalings and seeds): " + ", ".join(f"n = {n}: {_fmt(lam[n], 3)}" for n in cfg.ns)
         + f"; GD with δ = {cfg.gd_step:g} is linearly unstable at t = 0 where δ·λ_max(M₀) > 2."),
        ("Test error (undefined in the paper): both the test MSE (1/n_te)Σ(f − y)² and the sign error "
         "(1/n_te)Σ1{sign f ≠ y} are recorded; claims use both (lowest error) or the MSE (trend, GD vs flow)."),
        ("Plotted training loss: the training MSE (2/n)·L = (1/n)Σ(f − y)², on the same scale as the test MSE; "
         "runs.nc keeps the sum L of (6) (`loss`)."),
        (f"Feature scatter (Fig. 4 row 2): x₁ = training input #{TRAIN_INDEX}, x₂ = test input #{TEST_INDEX}, all "
         "m neurons; t = 0 (dark dots) and the end (colour) overlaid, for GD and for the flow (first seed), on "
         "axes shared by the scalings of a row (as in the paper)."),
        ("Mean ± std: over the seeds' finished runs, the sample std (ddof = 1, as in Exp 2)."),
        ("Feature movement: (1/m)Σ_i|h_i^T(x_a) − h_i^0(x_a)| averaged over the training points "
         f"(Solution.feature_movement); 'barely moves' means ntk/ours and ntk/mf below {MOVEMENT_RATIO:g} "
         f"(theory: O(1/√m) = {1 / math.sqrt(cfg.m):.3g})."),
        (f"GD and flow 'disagree' when their final test MSEs differ by more than {GAP_TOL:.0%}; the flow proxy "
         f"counts as converged when halving δ_f changes the test MSE by less than {CHECK_TOL:.0%}."),
        ("Figure files: fig4_n{n} (paper: Fig. 7 is n = 400, Fig. 4 n = 600, Fig. 8 n = 800; one m per figure — "
         "the paper's other m values are not recoverable), fig3_test_error_vs_n (Fig. 3), gd_vs_flow (the gap "
         "against δ·λ_max(M₀))."),
    ]
    # what GD does past its stability limit, from the data
    unstable = [r for r in _select(runs, solver="gd") if _ok(r) and r.labels["step"] * final(r, "lam0") > 2]
    if unstable:
        lam_end = float(np.mean([r.solution.lam_max_M[-1] for r in unstable]))
        ratio = []
        for r in unstable:
            f = _select(runs, solver="flow", scaling=r.labels["scaling"], n=r.labels["n"], seed=r.labels["seed"])
            if f and _ok(f[0]):
                ratio.append(final(r, "movement") / final(f[0], "movement"))
        notes.append(
            f"In the {len(unstable)} GD runs that start past the stability limit (δ·λ_max(M₀) > 2), λ_max(M_t) ends "
            f"at {lam_end:.3g} on average (< 2/δ: GD drifted to a flatter region, 'catapult'), and the features "
            f"moved {_fmt(float(np.mean(ratio)), 2) if ratio else '—'}× as far as under the flow (mean ratio).")
    notes.append(f"Computation: {space} space, float64, integrals off; solver time {t_gd:.0f} s for GD, "
                 f"{t_fl:.0f} s for the flow runs; total wall time {wall:.0f} s (a shared machine inflates it).")
    failed = [r for r in runs if not _ok(r)]
    if failed:
        notes.append("Runs that did not finish: " + ", ".join(
            f"{r.labels['scaling']} n={r.labels['n']} seed={r.labels['seed']} {r.labels['solver']} "
            f"[{r.solution.status}]" for r in failed) + " — their final values are left out of the means (NaN), "
            "and every claim counts them as failures ('k/N diverged').")
    return notes


__all__ = [
    "CLAIMS",
    "PRESETS",
    "Config",
    "claim_feature_movement",
    "claim_gd_vs_flow",
    "claim_lowest_test_error",
    "claim_training",
    "claim_trend_with_n",
    "claims_of",
    "final",
    "flow_check",
    "gd_flow_pairs",
    "load",
    "make_figures",
    "run",
]
