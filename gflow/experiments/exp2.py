r"""Experiment 2 (Figures 2 and 6; EQUATIONS.md §13.2): the benefit of an input embedding.

Two students, both paper-scaled ReLU shallow nets on inputs x ~ N(0, I_d), d = 30:

* ``quadratic``: Φ(x) = vec(xxᵀ), D = d² = 900, G_ab = (x_a·x_b)²/d² (EQUATIONS.md §1.4);
* ``plain``: the plain shallow net, Φ = identity, D = d = 30 (§1.2);

trained on the labels of a teacher that is itself a quadratic-embedding net of width 5,
y = (1/5) Σ_i c*_i ReLU((1/d) xᵀW*_i x) (:func:`gflow.data.quadratic_teacher`).  For every student, n, m and
seed two trajectories are computed from the same initialisation, to the same flow time T = steps·δ_GD:

* ``"gd"``: the paper's protocol, full-batch gradient descent with δ = 1 (Table-1 rule, t = kδ);
* ``"flow"``: the gradient flow.  ReLU makes the vector field discontinuous; here the flow is approximated by
  gradient descent with a small step (δ = 0.1 in the paper preset, 0.2 in quick), which is forward Euler on the
  flow; its convergence is checked by halving the step on one configuration per student (``"flow_check"``), and
  the relative difference is printed on the figures.  (gflow's Filippov solvers, ``method="filippov"`` and
  ``method="sliding"``, compute the ReLU flow itself, but cost tens of times GD's wall time at these sizes: this
  experiment keeps the Euler stand-in and reports its step-halving check.)

Outputs under ``out/exp2/``: ``runs.nc``, ``exp2_fig2.{png,pdf}`` (final test error against n, quadratic vs
plain, mean ± sample std over seeds, GD δ = 1 and flow), ``exp2_fig6.{png,pdf}`` (test error against t for every n),
``exp2_widths.{png,pdf}`` (the two widths), and ``summary.md``.

The claims are pure functions of a list of :class:`~gflow.experiments.common.Run` (labels ``student``, ``n``,
``m``, ``seed``, ``solver``, ``step``, ``t1``), so they can be checked on synthetic runs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import (
    Claim,
    ExperimentResult,
    Run,
    Timer,
    resolve_preset,
    save_figure,
    save_runs,
    write_summary,
)

NAME = "exp2"
TITLE = "Experiment 2 — benefit of an input embedding (Figures 2 and 6)"

#: student name → gflow embedding
STUDENTS = {"quadratic": "quadratic", "plain": "identity"}
STUDENT_LABEL = {"quadratic": "quadratic embedding (D = d²)", "plain": "plain shallow (D = d)"}
STUDENT_COLOR = {"quadratic": "tab:blue", "plain": "tab:orange"}
SOLVERS = ("gd", "flow", "flow_check")


@dataclass(frozen=True)
class Config:
    """One preset of Experiment 2.

    Attributes:
        d: input dimension (30 in the paper).
        teacher_width: width k of the quadratic-embedding teacher (5).
        teacher_seed: seed of the teacher's c* (Rademacher) and W* (N(0, 1)); one teacher for every run.
        ns: training-set sizes n.
        ms: student widths m (the paper: 8192 for Fig. 2, {2048, 8192} for Fig. 6).
        seeds: run seeds; seed s draws the network (``gf.Network(seed=s)``), the training set
            (``quadratic_teacher(n, seed=train_seed_offset + s)``, nested in n) and the test set
            (``seed=test_seed_offset + s``).
        steps: GD steps at δ = ``gd_step`` (the paper: 50 000 steps of δ = 1); flow-time horizon
            T = steps·gd_step.
        gd_step: the paper's GD step δ = 1.
        flow_step: the small step of the converged-GD stand-in for the flow.
        check_step: the halved step of the convergence check.
        flow_horizon: flow time of the "flow" runs; ``None`` = T (equal horizons, compared at equal t).
        save_dt: flow time between records (a multiple of every step).
        n_test: test points (500 in the paper); test error = test MSE (1/n_te) Σ (f − y)².
        space: ``"auto"`` (the cheaper exact form, :func:`gflow.fields.auto_space`: feature space for the
            quadratic student, D = 900; weight space for the plain student once n ≥ 2D = 60 for GD, earlier for
            the flow's solver), ``"feature"`` or ``"weight"``; all are exact.
        dtype: ``"float64"`` or ``"float32"``.
        tol_width: claim 3's tolerance on the relative difference between the widths.
        tol_gap: claim 4's tolerance on the relative GD-vs-flow gap in final test error.
        tol_check: tolerance on the halving check of the flow stand-in.
        fig6_tmax: right end of the time axis of the Figure 6 analogue (``None``: the horizon; the paper's
            Figure 6 shows steps 0–10 000).
    """

    d: int = 30
    teacher_width: int = 5
    teacher_seed: int = 0
    ns: tuple = (50, 100, 150, 200, 250)
    ms: tuple = (2048, 8192)
    seeds: tuple = (0, 1, 2, 3, 4)
    steps: int = 50_000
    gd_step: float = 1.0
    flow_step: float = 0.1
    check_step: float = 0.05
    flow_horizon: float | None = None
    save_dt: float = 50.0
    n_test: int = 500
    train_seed_offset: int = 10_000
    test_seed_offset: int = 20_000
    space: str = "auto"
    dtype: str = "float64"
    tol_width: float = 0.25
    tol_gap: float = 0.10
    tol_check: float = 0.01
    fig6_tmax: float | None = None

    def __post_init__(self):
        for name in ("ns", "ms", "seeds"):
            value = tuple(int(v) for v in getattr(self, name))
            if not value:
                raise ValueError(f"{name} must not be empty")
            object.__setattr__(self, name, value)
        if self.flow_horizon is not None and self.flow_horizon > self.horizon:
            raise ValueError("flow_horizon must not exceed the GD horizon steps·gd_step")
        for step in (self.gd_step, self.flow_step, self.check_step):
            k = self.save_dt / step
            if step <= 0 or abs(k - round(k)) > 1e-9 or round(k) < 1:
                raise ValueError(f"save_dt = {self.save_dt} must be a positive multiple of every step, got {step}")
            for T in (self.horizon, self.flow_t1):
                if abs(T / step - round(T / step)) > 1e-9:
                    raise ValueError(f"the horizon {T} must be a multiple of the step {step}")

    @property
    def horizon(self) -> float:
        """Flow time T = steps·gd_step of the GD runs."""
        return self.steps * self.gd_step

    @property
    def flow_t1(self) -> float:
        """Flow time of the flow runs."""
        return self.horizon if self.flow_horizon is None else float(self.flow_horizon)

    def n_runs(self) -> int:
        return len(STUDENTS) * len(self.ns) * len(self.ms) * len(self.seeds) * 2 + len(STUDENTS)


PRESETS = {
    # seconds: for the tests
    "tiny": Config(d=6, ns=(10, 20), ms=(32, 64), seeds=(0,), steps=40, flow_step=0.25, check_step=0.125,
                   save_dt=2.0, n_test=100),
    # a 2-core CPU in about 2 minutes (the paper's d, teacher, n grid and test-set size; smaller m, 3 seeds, a
    # horizon T = 100 after which the test error moves by ~0.1%, and a flow step 0.2 checked against 0.1)
    "quick": Config(ns=(50, 100, 150, 200, 250), ms=(256, 1024), seeds=(0, 1, 2), steps=100, flow_step=0.2,
                    check_step=0.1, save_dt=5.0),
    # the paper's sizes, for a GPU
    "paper": Config(fig6_tmax=10_000),
}


# ---------------------------------------------------------------------------------------------------------
# running


def _slim(sol):
    """Keep what Experiment 2 uses (loss, residuals, outputs, test loss/error, λ(M), kernel movement, data):
    drop the per-neuron arrays (H, H_test), the per-test-point trajectories and the other theory quantities,
    which are large at paper size and slow to write (one netCDF group per run)."""
    m, n = sol.m, sol.n
    drop = ("H_test", "test_output", "feature_movement_test", "feature_movement", "eta", "eta_bar", "mu", "nu",
            "dL", "weight_movement", "moved_fraction", "G")
    return dataclasses.replace(sol, H=np.zeros((0, m, n)), feature_t=np.zeros(0), **{k: None for k in drop})


def _spec(cfg: Config, student: str, n: int, m: int, seed: int, solver: str, device: str) -> tuple[dict, dict]:
    """(labels, spec) of one run: the spec holds everything the run depends on (its id is a hash of it)."""
    step = {"gd": cfg.gd_step, "flow": cfg.flow_step, "flow_check": cfg.check_step}[solver]
    t1 = cfg.horizon if solver == "gd" else cfg.flow_t1
    labels = {"student": student, "n": int(n), "m": int(m), "seed": int(seed), "solver": solver, "step": step,
              "t1": t1}
    spec = {**labels, "d": cfg.d, "teacher_width": cfg.teacher_width, "teacher_seed": cfg.teacher_seed,
            "train_seed": cfg.train_seed_offset + int(seed), "test_seed": cfg.test_seed_offset + int(seed),
            "n_test": cfg.n_test, "steps": round(t1 / step), "save_every": round(cfg.save_dt / step),
            "space": cfg.space, "dtype": cfg.dtype, "device": str(device)}
    return labels, spec


def _task(spec: dict, checkpoint=None):
    """One run (in a worker): GD with the spec's step — δ = 1 (``"gd"``) or the flow's small step."""
    import gflow as gf

    from .tasks import solver_checkpoint

    X, y = gf.data.quadratic_teacher(spec["n"], spec["d"], seed=spec["train_seed"],
                                     teacher_width=spec["teacher_width"], teacher_seed=spec["teacher_seed"])
    Xt, yt = gf.data.quadratic_teacher(spec["n_test"], spec["d"], seed=spec["test_seed"],
                                       teacher_width=spec["teacher_width"], teacher_seed=spec["teacher_seed"])
    net = gf.Network(d=spec["d"], width=spec["m"], activation="relu", embedding=STUDENTS[spec["student"]],
                     scaling="ours", seed=spec["seed"], dtype=spec["dtype"], device=spec["device"])
    sol = gf.gradient_descent(net, X, y, step=spec["step"], steps=spec["steps"], save_every=spec["save_every"],
                              X_test=Xt, y_test=yt, space=spec["space"], integrals=False, warn=False, progress=None,
                              **solver_checkpoint(checkpoint))
    return _slim(sol), {}


def _one(cfg: Config, student: str, n: int, m: int, seed: int, solver: str, device: str):
    labels, spec = _spec(cfg, student, n, m, seed, solver, device)
    return Run(labels, _task(spec)[0])


def _jobs(cfg: Config) -> list[tuple]:
    jobs = [(s, n, m, seed, solver) for s in STUDENTS for n in cfg.ns for m in cfg.ms for seed in cfg.seeds
            for solver in ("gd", "flow")]
    # the halving check: one configuration per student, the largest n (largest λ_max(M)) at the smallest m
    jobs += [(s, max(cfg.ns), min(cfg.ms), cfg.seeds[0], "flow_check") for s in STUDENTS]
    return jobs


def tasks(cfg: Config, device: str = "cpu") -> list:
    """The runs of :func:`run` as :class:`~gflow.experiments.tasks.Task` (GD, so all checkpointable)."""
    from .tasks import Task

    return [Task(f"{__name__}:_task", *_spec(cfg, *job, device)) for job in _jobs(cfg)]


def run(preset: "str | Config" = "quick", out=None, *, progress=None, device: str = "cpu", executor="local",
        workers: int | None = None, scheduler=None) -> ExperimentResult:
    """Run Experiment 2 at a preset and write ``runs.nc``, the figures and ``summary.md`` under ``out/exp2``.

    Every run is a task (:mod:`gflow.experiments.tasks`) written to ``out/exp2/runs/<run_id>.nc`` as soon as it
    finishes; calling :func:`run` again computes only the missing runs (long ones resume from
    ``out/exp2/checkpoints/``).

    Args:
        preset: ``"tiny"`` (seconds, for tests), ``"quick"`` (a 2-core CPU, about 2 min) or ``"paper"``
            (m = 2048 and 8192, 5 seeds, 50 000 steps; for a GPU).  A :class:`Config` is also accepted.
        out: output folder (default ``gflow-reproduce``); files go to ``out/exp2/``.
        progress: show a progress bar over runs (default: when stderr is a terminal).
        device: torch device of the runs (``"cpu"`` or ``"cuda"``).
        executor, workers, scheduler: where the runs execute: ``"local"`` (serial, default), ``"process"``
            (``workers`` processes) or ``"dask"`` (``scheduler``: a running cluster), as in :func:`gflow.sweep`.

    Returns:
        an :class:`~gflow.experiments.common.ExperimentResult` with the runs, the claims and the files.
    """
    from .tasks import clean_checkpoints, execute

    preset, cfg = resolve_preset(preset, PRESETS, Config, NAME)
    out_dir = Path("gflow-reproduce" if out is None else out) / NAME
    out_dir.mkdir(parents=True, exist_ok=True)

    counts: dict = {}
    with Timer() as total:
        runs = [r for r, _ in execute(tasks(cfg, device), out_dir, executor=executor, workers=workers,
                                      scheduler=scheduler, progress=progress, desc="exp2 runs",
                                      report=counts.update)]
        clean_checkpoints(out_dir)
        files = [save_runs(out_dir / "runs.nc", runs, experiment=NAME, preset=preset, config=cfg)]
        claims, more, notes = _report(runs, cfg, out_dir, preset=preset, device=device)
        files += more
    # the wall time is known only now: write the summary with it
    summary = _write_summary(runs, cfg, out_dir, preset, claims, notes + [_time_note(runs, total.seconds)],
                             files, total.seconds)
    return ExperimentResult(NAME, preset, runs, claims, files + [summary], total.seconds,
                            notes + [_time_note(runs, total.seconds)], counts)


def report(path, out_dir=None) -> ExperimentResult:
    """Recompute the claims, figures and ``summary.md`` from a ``runs.nc`` written by :func:`run` (into the
    same folder unless ``out_dir`` is given), e.g. after a paper-size run on another machine."""
    from .common import load_runs

    path = Path(path)
    attrs, runs = load_runs(path)
    if attrs.get("gflow_experiment") != NAME:
        raise ValueError(f"{path} holds {attrs.get('gflow_experiment')!r}, not {NAME!r}")
    cfg = Config(**attrs["config"])
    out_dir = path.parent if out_dir is None else Path(out_dir)
    preset = str(attrs.get("preset", "custom"))
    device = runs[0].solution.config.get("network", {}).get("device", "?") if runs else "?"
    claims, files, notes = _report(runs, cfg, out_dir, preset=preset, device=device)
    wall = sum(float(r.solution.stats.get("wall_time", 0.0)) for r in runs)
    notes = notes + [_time_note(runs, None)]
    summary = _write_summary(runs, cfg, out_dir, preset, claims, notes, files, None)
    return ExperimentResult(NAME, preset, runs, claims, files + [summary], wall, notes)


def _report(runs: list[Run], cfg: Config, out_dir: Path, *, preset: str, device: str):
    claims = make_claims(runs, cfg)
    files = plot_fig2(runs, cfg, out_dir) + plot_fig6(runs, cfg, out_dir) + plot_widths(runs, cfg, out_dir)
    return claims, files, _notes(runs, cfg, preset, device)


def _write_summary(runs, cfg, out_dir, preset, claims, notes, files, wall):
    figures = [f for f in files if f.suffix == ".png"]
    summary = write_summary(out_dir / "summary.md", title=TITLE, preset=preset, claims=claims, notes=notes,
                            wall_time=wall, figures=figures)
    with summary.open("a") as fh:
        fh.write("\n" + results_table(runs) + "\n")
    return summary


def _time_note(runs: list[Run], wall: float | None) -> str:
    compute = {s: sum(float(r.solution.stats.get("wall_time", 0.0)) for r in runs if r.labels.get("solver") == s)
               for s in SOLVERS}
    text = (f"Compute time of the runs: GD δ = 1 {compute['gd']:.1f} s, flow {compute['flow']:.1f} s, halving check "
            f"{compute['flow_check']:.1f} s")
    return text + (f"; total wall time with files and figures {wall:.1f} s." if wall else ".")


# ---------------------------------------------------------------------------------------------------------
# measurements: pure functions of the runs


def diverged(sol) -> bool:
    """Whether a run diverged: GD stopped on a non-finite loss, or its final training loss is non-finite or
    above the initial one (GD past its stability limit grows geometrically; over a short horizon it may not
    yet overflow)."""
    loss = np.asarray(sol.loss, float)
    return sol.status == "diverged" or not math.isfinite(loss[-1]) or loss[-1] > loss[0]


def value_at(run: Run, t: float | None = None, field: str = "test_error") -> float:
    """``field`` (default: the test MSE) at flow time ``t`` (default: the run's horizon ``t1``).

    A diverged run (:func:`diverged`) gives +inf; a run that stopped early for another reason, or never
    reached ``t``, gives NaN.
    """
    sol = run.solution
    t = float(run.labels.get("t1", sol.t[-1])) if t is None else float(t)
    if diverged(sol):
        return math.inf
    k = np.flatnonzero(np.abs(np.asarray(sol.t, float) - t) <= 1e-9 * max(1.0, t))
    if k.size == 0:
        return math.nan
    v = float(np.asarray(getattr(sol, field), float)[k[0]])
    return v if math.isfinite(v) else math.inf


def final_errors(runs: list[Run], solver: str, *, t: float | None = None) -> dict:
    """{(student, n, m): {seed: final test error}} of the runs of one solver (at ``t``, default its horizon)."""
    table: dict = {}
    for r in runs:
        lb = r.labels
        if lb.get("solver") != solver:
            continue
        table.setdefault((lb["student"], int(lb["n"]), int(lb["m"])), {})[int(lb["seed"])] = value_at(r, t)
    return table


def _paired(table: dict, k1, k2) -> tuple[np.ndarray, np.ndarray]:
    """The values of two table entries on their common seeds, in seed order."""
    a, b = table.get(k1, {}), table.get(k2, {})
    seeds = sorted(set(a) & set(b))
    return np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)


def compare(a: np.ndarray, b: np.ndarray) -> str:
    """Is ``a`` smaller than ``b`` (paired over seeds)?  ``"yes"``, ``"no"`` or ``"unclear"``.

    ``"yes"`` when the mean paired difference b − a exceeds twice its standard error (at least 2 seeds), or,
    when a run diverged (inf), when every difference is positive; ``"no"`` when the mean difference is ≤ 0
    (every difference ≤ 0 with infinities); ``"unclear"`` otherwise.  Both-diverged pairs count as ties.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0:
        return "unclear"
    with np.errstate(invalid="ignore"):
        d = b - a
    d = np.where(np.isnan(d) & np.isinf(a) & np.isinf(b), 0.0, d)
    if np.any(np.isnan(d)):
        return "unclear"
    if not np.all(np.isfinite(d)):
        if np.all(d > 0):
            return "yes"
        return "no" if np.all(d <= 0) else "unclear"
    mean = float(d.mean())
    if mean <= 0:
        return "no"
    if d.size >= 2:
        sem = float(d.std(ddof=1)) / math.sqrt(d.size)
        if mean > 2.0 * sem:
            return "yes"
    return "unclear"


def _stats(values) -> tuple[float, float, int]:
    """(mean, std, number diverged) over the finite values (std 0 for a single value)."""
    v = np.asarray(list(values), float)
    fin = v[np.isfinite(v)]
    if fin.size == 0:
        return math.nan, math.nan, int(np.sum(np.isinf(v)))
    return float(fin.mean()), float(fin.std(ddof=1)) if fin.size > 1 else 0.0, int(np.sum(np.isinf(v)))


def _cell(values: dict) -> str:
    """Mean over the finite seeds, with the number of diverged runs."""
    mean, _, div = _stats(values.values())
    text = "diverged" if not math.isfinite(mean) and div else _fmt(mean)
    return text + (f" ({div}/{len(values)} diverged)" if div and math.isfinite(mean) else "")


def _fmt(v: float) -> str:
    return "diverged" if v == math.inf else ("n/a" if not math.isfinite(v) else f"{v:.4f}")


def _solver_name(solver: str, runs: list[Run]) -> str:
    steps = {r.labels["step"] for r in runs if r.labels.get("solver") == solver}
    step = f"{min(steps):g}" if steps else "?"
    return f"GD δ = {step}" if solver == "gd" else f"flow (GD δ = {step})"


def _largest_m(runs: list[Run], m: int | None) -> int:
    return max(int(r.labels["m"]) for r in runs) if m is None else int(m)


def claim_embedding_helps(runs: list[Run], solver: str = "flow", m: int | None = None) -> Claim:
    """Claim 1 (Fig. 2): the quadratic student's final test error is below the plain one's for n ≥ some n₀.

    Confirmed when the quadratic student is better (:func:`compare`, paired over seeds) at every n ≥ n₀ for
    some n₀ of the grid; not confirmed when it is not better in the mean at the largest n; inconclusive
    otherwise.
    """
    m = _largest_m(runs, m)
    table = final_errors(runs, solver)
    ns = sorted({k[1] for k in table if k[2] == m})
    verdicts = {n: compare(*_paired(table, ("quadratic", n, m), ("plain", n, m))) for n in ns}
    parts = [f"n = {n}: {_cell(table.get(('quadratic', n, m), {}))} vs {_cell(table.get(('plain', n, m), {}))}"
             for n in ns]
    n0 = None
    for n in reversed(ns):
        if verdicts[n] != "yes":
            break
        n0 = n
    if n0 is not None:
        verdict, tail = "confirmed", f"quadratic better for every n ≥ {n0}"
    elif ns and verdicts[ns[-1]] == "no":
        verdict, tail = "not confirmed", f"quadratic not better at n = {ns[-1]}"
    else:
        verdict, tail = "inconclusive", "no n at which the difference exceeds 2 standard errors over seeds"
    name = _solver_name(solver, runs)
    return Claim(
        claim=f"(1) Fig. 2: the quadratic embedding generalises better than the plain shallow net for n ≥ some "
              f"n₀ [{name}, m = {m}]",
        measured=f"mean test MSE quadratic vs plain — {'; '.join(parts)}; {tail}",
        verdict=verdict,
    )


def claim_decreases_with_n(runs: list[Run], solver: str = "flow", student: str = "quadratic",
                           m: int | None = None) -> Claim:
    """Claim 2 (Fig. 2): the quadratic student's test error decreases with n.

    Confirmed when the error at the largest n is below the one at the smallest n (paired over seeds: the
    training sets are nested) and no step n → n' increases it beyond noise (:func:`compare`); not confirmed
    when the mean at the largest n is not below the mean at the smallest; inconclusive otherwise.
    """
    m = _largest_m(runs, m)
    table = final_errors(runs, solver)
    ns = sorted({k[1] for k in table if k[0] == student and k[2] == m})
    means = [_stats(table[(student, n, m)].values())[0] for n in ns]
    if len(ns) < 2:
        return Claim(f"(2) Fig. 2: the test error of the {student} student decreases with n", "fewer than 2 n",
                     "inconclusive")
    overall = compare(*_paired(table, (student, ns[-1], m), (student, ns[0], m)))
    ups = [(ns[i], ns[i + 1]) for i in range(len(ns) - 1)
           if compare(*_paired(table, (student, ns[i], m), (student, ns[i + 1], m))) == "yes"]
    if overall == "yes" and not ups:
        verdict = "confirmed"
    elif overall == "no":
        verdict = "not confirmed"
    else:
        verdict = "inconclusive"
    trend = ", ".join(f"{n}: {_fmt(v)}" for n, v in zip(ns, means))
    extra = f"; significant increases at {ups}" if ups else ""
    return Claim(
        claim=f"(2) Fig. 2: the test error of the {student} student decreases with n [{_solver_name(solver, runs)}, "
              f"m = {m}]",
        measured=f"mean test MSE by n — {trend}; n = {ns[0]} → {ns[-1]}: decrease {overall}{extra}",
        verdict=verdict,
    )


def claim_widths_agree(runs: list[Run], solver: str = "flow", tol: float = 0.25) -> Claim:
    """Claim 3 (Fig. 6): the two widths give nearly the same test error.

    For every (student, n), the relative difference |mean_{m₁} − mean_{m₂}| / mean_{m₂} of the mean final test
    errors of the smallest and largest width; confirmed when the largest is below ``tol``; inconclusive with a
    single width or when a run diverged; not confirmed otherwise.
    """
    table = final_errors(runs, solver)
    ms = sorted({k[2] for k in table})
    head = f"(3) Fig. 6: m = {' and '.join(str(v) for v in ms)} give nearly equal test errors [{_solver_name(solver, runs)}]"
    if len(ms) < 2:
        return Claim(head, "a single width", "inconclusive")
    lo, hi = ms[0], ms[-1]
    rel = {}
    diverged = 0
    for (student, n, m) in sorted(table):
        if m != hi or (student, n, lo) not in table:
            continue
        a, _, da = _stats(table[(student, n, lo)].values())
        b, _, db = _stats(table[(student, n, hi)].values())
        diverged += da + db
        if math.isfinite(a) and math.isfinite(b) and b > 0:
            rel[(student, n)] = abs(a - b) / b
    if not rel:
        return Claim(head, "no comparable configurations", "inconclusive")
    worst = max(rel, key=rel.get)
    mean_rel = float(np.mean(list(rel.values())))
    measured = (f"relative difference of mean test MSE, m = {lo} vs {hi}: mean {mean_rel:.1%}, max {rel[worst]:.1%} "
                f"({worst[0]}, n = {worst[1]}); tolerance {tol:.0%}")
    if diverged:
        measured += f"; {diverged} diverged runs left out"
    if rel[worst] < tol:
        verdict = "inconclusive" if diverged else "confirmed"
    else:
        verdict = "not confirmed"
    return Claim(head, measured, verdict)


def gd_flow_gaps(runs: list[Run]) -> list[dict]:
    """Per configuration (student, n, m, seed): final test error of GD and of the flow at their common time,
    the relative gap |GD − flow| / flow, and δ·λ_max(M₀) of the GD run."""
    by_key: dict = {}
    for r in runs:
        lb = r.labels
        if lb.get("solver") in ("gd", "flow"):
            by_key.setdefault((lb["student"], int(lb["n"]), int(lb["m"]), int(lb["seed"])), {})[lb["solver"]] = r
    rows = []
    for key in sorted(by_key):
        pair = by_key[key]
        if "gd" not in pair or "flow" not in pair:
            continue
        gd, fl = pair["gd"], pair["flow"]
        t = min(float(gd.labels["t1"]), float(fl.labels["t1"]))
        e_gd, e_fl = value_at(gd, t), value_at(fl, t)
        lam0 = gd.solution.lam_max_M
        lam0 = float(lam0[0]) if lam0 is not None and len(lam0) else math.nan
        loss = np.asarray(gd.solution.loss, float)
        with np.errstate(invalid="ignore", over="ignore"):
            spike = float(np.nanmax(loss) / loss[0]) if loss[0] > 0 else math.nan
        gap = abs(e_gd - e_fl) / e_fl if math.isfinite(e_gd) and math.isfinite(e_fl) and e_fl > 0 else (
            math.inf if e_gd == math.inf else math.nan)
        rows.append({"student": key[0], "n": key[1], "m": key[2], "seed": key[3], "t": t, "gd": e_gd, "flow": e_fl,
                     "gap": gap, "step": float(gd.labels["step"]), "step_lam0": float(gd.labels["step"]) * lam0,
                     "diverged": diverged(gd.solution), "spike": spike})
    return rows


def claim_gd_matches_flow(runs: list[Run], tol: float = 0.10) -> Claim:
    """Claim 4: GD with δ = 1 (the paper's protocol) gives the test error of the gradient flow (the object of
    the theory).  Reports the relative gap per configuration and how often δ·λ_max(M₀) > 2 (linear
    instability of GD at the start, EQUATIONS.md §13).  Confirmed when no GD run diverged and every gap is
    below ``tol``; not confirmed otherwise."""
    rows = gd_flow_gaps(runs)
    head = "(4) §13 caveat: GD with δ = 1 (paper's protocol) gives the same test error as the gradient flow"
    if not rows:
        return Claim(head, "no GD/flow pairs", "inconclusive")
    gaps = np.array([r["gap"] for r in rows], float)
    unstable = [r for r in rows if r["step_lam0"] > 2]
    div = [r for r in rows if r["diverged"]]
    fin = gaps[np.isfinite(gaps)]
    parts = [f"{len(rows)} configurations; relative gap in final test MSE: median "
             f"{np.median(fin):.2%}, max {fin.max():.2%}" if fin.size else f"{len(rows)} configurations"]
    worst = [r for r in rows if np.isfinite(r["gap"])]
    if worst:
        w = max(worst, key=lambda r: r["gap"])
        parts.append(f"worst {w['student']} n = {w['n']} m = {w['m']} seed {w['seed']} ({w['gd']:.4f} vs "
                     f"{w['flow']:.4f})")
    parts.append(f"δ·λ_max(M₀) > 2 in {len(unstable)}/{len(rows)} "
                 f"(range {min(r['step_lam0'] for r in rows):.2f}–{max(r['step_lam0'] for r in rows):.2f})")
    if unstable:
        fin_u = [r["gap"] for r in unstable if np.isfinite(r["gap"])]
        fin_s = [r["gap"] for r in rows if r["step_lam0"] <= 2 and np.isfinite(r["gap"])]
        parts.append(f"max gap with δ·λ_max(M₀) > 2: {max(fin_u):.2%}" if fin_u else "all of those diverged")
        if fin_s:
            parts.append(f"with ≤ 2: {max(fin_s):.2%}")
    spikes = [r for r in rows if not r["diverged"] and r["spike"] > 1.0]
    if spikes:
        w = max(spikes, key=lambda r: r["spike"])
        parts.append(f"{len(spikes)} GD runs first raise the training loss (up to {w['spike']:.3g}× L₀, "
                     f"{w['student']} n = {w['n']}) and then converge elsewhere")
    if div:
        where = sorted({(r["student"], r["n"]) for r in div})
        parts.append(f"GD δ = {div[0]['step']:g} diverged (final loss > L₀) in {len(div)}/{len(rows)} runs "
                     f"({', '.join(f'{s} n = {n}' for s, n in where)}), all with δ·λ_max(M₀) = "
                     f"{min(r['step_lam0'] for r in div):.2f}–{max(r['step_lam0'] for r in div):.2f}")
    verdict = "confirmed" if not div and fin.size == len(rows) and fin.max() < tol else "not confirmed"
    return Claim(head, "; ".join(parts) + f"; tolerance {tol:.0%}", verdict)


def halving_checks(runs: list[Run]) -> list[dict]:
    """The flow stand-in (δ) against the halved step (δ/2) on the same configuration: the relative difference
    of the final test error and its maximum over the saved times."""
    flows = {(r.labels["student"], int(r.labels["n"]), int(r.labels["m"]), int(r.labels["seed"])): r
             for r in runs if r.labels.get("solver") == "flow"}
    rows = []
    for r in runs:
        lb = r.labels
        if lb.get("solver") != "flow_check":
            continue
        f = flows.get((lb["student"], int(lb["n"]), int(lb["m"]), int(lb["seed"])))
        if f is None:
            continue
        a = np.asarray(f.solution.test_error, float)
        b = np.asarray(r.solution.test_error, float)
        k = min(a.size, b.size)
        ok = f.solution.ok and r.solution.ok and a.size == b.size
        rel_final = abs(a[-1] - b[-1]) / abs(b[-1]) if ok else math.nan
        rel_max = float(np.max(np.abs(a[:k] - b[:k]) / np.abs(b[:k]))) if ok else math.nan
        rows.append({"student": lb["student"], "n": int(lb["n"]), "m": int(lb["m"]), "seed": int(lb["seed"]),
                     "step": float(f.labels["step"]), "check_step": float(lb["step"]), "rel_final": rel_final,
                     "rel_max": rel_max})
    return rows


def claim_flow_converged(runs: list[Run], tol: float = 0.01) -> Claim:
    """Check (ours): the small-step GD stand-in for the ReLU flow is converged in the step — halving it
    changes the final test error by less than ``tol`` (relative)."""
    rows = halving_checks(runs)
    head = "(check, ours) the flow stand-in is converged: halving its step changes the test error by < " f"{tol:.0%}"
    if not rows:
        return Claim(head, "no halving check", "inconclusive")
    parts = [f"{r['student']} n = {r['n']} m = {r['m']}: δ = {r['step']:g} vs {r['check_step']:g}: Δ(final) = "
             f"{r['rel_final']:.3%}, max over t {r['rel_max']:.3%}" for r in rows]
    vals = np.array([r["rel_final"] for r in rows], float)
    verdict = ("confirmed" if np.all(np.isfinite(vals)) and vals.max() < tol
               else "inconclusive" if np.any(~np.isfinite(vals)) else "not confirmed")
    return Claim(head, "; ".join(parts), verdict)


def make_claims(runs: list[Run], cfg: Config) -> list[Claim]:
    """Every claim of Experiment 2, in the order of summary.md."""
    return [
        claim_embedding_helps(runs, "flow"),
        claim_embedding_helps(runs, "gd"),
        claim_decreases_with_n(runs, "flow"),
        claim_decreases_with_n(runs, "gd"),
        claim_widths_agree(runs, "flow", cfg.tol_width),
        claim_widths_agree(runs, "gd", cfg.tol_width),
        claim_gd_matches_flow(runs, cfg.tol_gap),
        claim_flow_converged(runs, cfg.tol_check),
    ]


def check_text(runs: list[Run]) -> str:
    """The figure caption of the halving check."""
    rows = halving_checks(runs)
    if not rows:
        return "flow: no halving check"
    r0 = rows[0]
    worst = max((r["rel_final"] for r in rows), default=math.nan)
    where = ", ".join(f"{r['student']} n = {r['n']}, m = {r['m']}" for r in rows)
    return (f"flow ≈ GD with δ = {r0['step']:g}, checked against δ = {r0['check_step']:g}: "
            f"Δ = {worst:.2%} in the final test MSE ({where})")


def late_change(runs: list[Run]) -> float:
    """max over the flow runs of |e(T) − e(T/2)| / e(T), e the test MSE and T the run's horizon."""
    worst = 0.0
    for r in runs:
        if r.labels.get("solver") != "flow" or diverged(r.solution):
            continue
        T = float(r.labels["t1"])
        a, b = value_at(r, T), value_at(r, T / 2)
        if math.isfinite(a) and math.isfinite(b) and a > 0:
            worst = max(worst, abs(a - b) / a)
        elif not math.isfinite(b):
            return math.nan
    return worst


def null_error(runs: list[Run]) -> float:
    """Test MSE of the zero predictor, mean over the test sets: (1/n_te) Σ y²."""
    seen, vals = set(), []
    for r in runs:
        s = int(r.labels["seed"])
        if s not in seen and r.solution.y_test is not None:
            seen.add(s)
            vals.append(float(np.mean(np.asarray(r.solution.y_test, float) ** 2)))
    return float(np.mean(vals)) if vals else math.nan


def results_table(runs: list[Run]) -> str:
    """Markdown table: final test MSE mean ± std over seeds per (student, n, m, solver)."""
    lines = ["## Final test MSE (mean ± sample std over seeds, ddof = 1)", "",
             "| student | n | m | " + " | ".join(_solver_name(s, runs) for s in ("gd", "flow")) + " | δ·λ_max(M₀) (GD) |",
             "|---|---|---|---|---|---|"]
    tables = {s: final_errors(runs, s) for s in ("gd", "flow")}
    lam = {}
    for row in gd_flow_gaps(runs):
        lam.setdefault((row["student"], row["n"], row["m"]), []).append(row["step_lam0"])
    for key in sorted(tables["flow"], key=lambda k: (k[0] != "quadratic", k[1], k[2])):
        cells = []
        for s in ("gd", "flow"):
            mean, std, div = _stats(tables[s].get(key, {}).values())
            k = len(tables[s].get(key, {}))
            cell = "—" if not math.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"
            if div:
                cell += f" ({div}/{k} diverged)"
            cells.append(cell)
        lv = lam.get(key, [math.nan])
        cells.append(f"{np.nanmin(lv):.2f}–{np.nanmax(lv):.2f}")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    nul = null_error(runs)
    lines += ["", f"Zero predictor f ≡ 0: test MSE {nul:.4f} (mean over the test sets)."]
    return "\n".join(lines)


def _notes(runs: list[Run], cfg: Config, preset: str, device: str) -> list[str]:
    spaces = {}
    for r in runs:
        spaces.setdefault(r.labels["student"], set()).add(r.solution.config.get("space"))
    sizes = (f"d = {cfg.d}, n ∈ {{{', '.join(map(str, cfg.ns))}}}, m ∈ {{{', '.join(map(str, cfg.ms))}}}, "
             f"{len(cfg.seeds)} seed(s), GD δ = {cfg.gd_step:g} for {cfg.steps} steps (T = {cfg.horizon:g})")
    short = "" if preset == "paper" else " Smaller m, fewer seeds and a shorter horizon here (see the settling remark)."
    space_text = ", ".join(f"{s}: {'/'.join(sorted(v))}" for s, v in spaces.items())
    notes = [
        (f"Sizes ({preset}): {sizes}; the paper: m = 8192 (Fig. 2) and {{2048, 8192}} (Fig. 6), n ∈ {{50, …, 250}}, "
         f"5 seeds, 50 000 steps of δ = 1.{short}"),
        (f"Teacher (unspecified in the paper, EQUATIONS.md §13.2): width {cfg.teacher_width}, quadratic embedding, "
         f"c* Rademacher, W* ~ N(0, 1), one teacher (seed {cfg.teacher_seed}) for all runs; inputs x ~ N(0, I_{cfg.d});"
         " no label noise."),
        (f"Test error = test mean squared error (1/n_te) Σ (f(x) − y)² over n_te = {cfg.n_test} fresh test points "
         f"(a new test set per seed); zero predictor: {null_error(runs):.4f}."),
        ("Seed s: network gf.Network(seed=s) (c Rademacher, W ~ N(0, 1), paper scaling 'ours'), training set "
         f"quadratic_teacher(n, seed={cfg.train_seed_offset}+s) (nested in n), test set seed "
         f"{cfg.test_seed_offset}+s. Both students see the same data."),
        (f"GD δ = {cfg.gd_step:g} is the paper's protocol; the gradient flow itself is approximated by GD with "
         f"δ = {cfg.flow_step:g} (forward Euler on the flow; gflow's Filippov solvers are not used here), run to "
         f"t = {cfg.flow_t1:g}, and checked by halving the step: {check_text(runs)}. Euler's error is O(δ), so the "
         "stand-in is within about 2Δ of the flow."),
        (f"Both are computed exactly in feature or weight space (space='auto': {space_text}), {cfg.dtype}, on "
         f"{device}; loss = ½ Σ (f − y)² (sum), t = k·δ."),
        ("Mean ± sample std (ddof = 1) over seeds; a diverged GD run (final training loss non-finite or above the "
         "initial one: GD beyond its linear stability limit δ·λ_max(M) = 2 grows geometrically) is left out of the "
         "mean and counted separately."),
        (f"Settling: over the second half of the horizon (t = {cfg.flow_t1 / 2:g} → {cfg.flow_t1:g}) the flow's "
         f"test MSE changes by at most {late_change(runs):.2%} (relative, over all flow runs)."),
    ]
    return notes


# ---------------------------------------------------------------------------------------------------------
# figures


def _curve_stats(runs: list[Run]):
    """(t, mean, std, n_diverged, n) of the test-error curves of the successful runs (same time grid)."""
    ok = [r for r in runs if r.solution.ok and not diverged(r.solution)]
    div = sum(diverged(r.solution) for r in runs)
    if not ok:
        return None, None, None, div, len(runs)
    k = min(len(r.solution.t) for r in ok)
    E = np.array([np.asarray(r.solution.test_error, float)[:k] for r in ok])
    return (np.asarray(ok[0].solution.t[:k], float), E.mean(0), E.std(0, ddof=1) if len(ok) > 1 else 0 * E[0],
            div, len(runs))


def _pick(runs, **labels):
    return [r for r in runs if all(r.labels.get(k) == v for k, v in labels.items())]


def _plt():
    import matplotlib.pyplot as plt

    return plt


SOLVER_STYLE = {"gd": {"ls": "-", "marker": "o", "mfc": None}, "flow": {"ls": "--", "marker": "s", "mfc": "white"}}


def _errbar(ax, runs, student, solver, m, color, *, ls=None, marker=None, dx=0.0, label=None):
    table = final_errors(runs, solver)
    ns = sorted({k[1] for k in table if k[0] == student and k[2] == m})
    xs, means, stds, divs = [], [], [], []
    for n in ns:
        mean, std, div = _stats(table[(student, n, m)].values())
        xs.append(n)
        means.append(mean)
        stds.append(std)
        divs.append((div, len(table[(student, n, m)])))
    xs, means, stds = np.array(xs, float), np.array(means), np.array(stds)
    st = SOLVER_STYLE[solver]
    ax.errorbar(xs + dx, means, yerr=stds, color=color, ls=ls or st["ls"], marker=marker or st["marker"],
                mfc=st["mfc"] or color, mec=color, ms=5.5, lw=1.5, capsize=3, elinewidth=1.0, label=label)
    return [(x, d) for x, d in zip(xs, divs) if d[0] > 0]


def _mark_diverged(ax, marks, FONT, xs) -> None:
    """A cross near the top edge above each n where GD diverged, naming the widths and seed counts.

    ``marks``: (n, student, (k diverged, of total), m or None); ``xs``: the n grid (for the edge alignment)."""
    lo, hi = ax.get_ylim()
    groups: dict = {}
    for x, student, (k, tot), m in marks:
        groups.setdefault((x, student), []).append(f"m = {m}: {k}/{tot}" if m is not None else f"{k}/{tot} seeds")
    for row, ((x, student), lines) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))):
        y = hi - 0.04 * (hi - lo)
        ha = "right" if x == max(xs) else "left" if x == min(xs) else "center"
        dx = {"right": 6, "left": -6, "center": 0}[ha]
        ax.plot([x], [y], marker="x", color=STUDENT_COLOR[student], ms=7, mew=2, ls="none")
        ax.annotate("GD diverged\n" + "\n".join(lines), (x, y), xytext=(dx, -6), textcoords="offset points",
                    ha=ha, va="top", fontsize=FONT["note"] - 1.5, color=STUDENT_COLOR[student], linespacing=1.0)
    ax.set_ylim(lo, hi)


def _footnote(fig, text: str, FONT, y: float = -0.01, width: int = 120) -> None:
    import textwrap

    lines = [w for part in text.split("\n") for w in textwrap.wrap(part, width)]
    fig.text(0.01, y, "\n".join(lines), fontsize=FONT["note"], color="0.3", ha="left", va="top")


def plot_fig2(runs: list[Run], cfg: Config, out_dir: Path) -> list[Path]:
    """Figure 2 analogue: final test error against n at the largest m, quadratic vs plain, GD δ = 1 and flow."""
    plt = _plt()
    from ..plotting import FONT, _style

    m = max(cfg.ms)
    fig, ax = plt.subplots(figsize=(6.8, 5.2))
    span = (max(cfg.ns) - min(cfg.ns)) or 1
    marks = []
    for student in STUDENTS:
        for j, solver in enumerate(("gd", "flow")):
            lab = f"{STUDENT_LABEL[student]}, {_solver_name(solver, runs)}"
            div = _errbar(ax, runs, student, solver, m, STUDENT_COLOR[student], dx=(j - 0.5) * 0.012 * span,
                          label=lab)
            marks += [(x, student, d, None) for x, d in div]
    ax.axhline(null_error(runs), color="0.45", ls=":", lw=1.2, label="zero predictor f ≡ 0")
    ax.set_xlabel("number of training points n", fontsize=FONT["label"])
    ax.set_ylabel(f"test MSE at t = {cfg.horizon:g} ({cfg.n_test} test points)", fontsize=FONT["label"])
    ax.set_xticks(list(cfg.ns))
    _style(ax)
    lo, hi = ax.get_ylim()
    if marks:
        ax.set_ylim(lo, hi + 0.14 * (hi - lo))
        _mark_diverged(ax, marks, FONT, cfg.ns)
    ax.set_title(f"Fig. 2 analogue — teacher: quadratic-embedding net of width {cfg.teacher_width}\n"
                 f"ReLU students, d = {cfg.d}, m = {m}, mean ± sample std over {len(cfg.seeds)} seed(s)",
                 fontsize=FONT["title"])
    leg = ax.legend(fontsize=FONT["legend"], loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                    frameon=False, handlelength=2.6)
    fig.tight_layout()
    fig.canvas.draw()
    bottom = leg.get_window_extent().transformed(fig.transFigure.inverted()).y0
    _footnote(fig, check_text(runs) + f".\nGD: δ = {cfg.gd_step:g}, {cfg.steps} steps; t = k·δ.", FONT,
              y=bottom - 0.01, width=105)
    paths = save_figure(fig, out_dir, "exp2_fig2")
    plt.close(fig)
    return paths


def plot_fig6(runs: list[Run], cfg: Config, out_dir: Path) -> list[Path]:
    """Figure 6 analogue: test error against t for every n (columns), quadratic and plain (rows), each width
    (colour), GD δ = 1 (solid) and flow (dashed); mean over the non-diverged seeds, ±std band for the flow."""
    plt = _plt()
    from ..plotting import FONT, _style

    ns, ms = list(cfg.ns), list(cfg.ms)
    fig, axes = plt.subplots(2, len(ns), figsize=(2.9 * len(ns) + 0.6, 5.8), sharex=True, squeeze=False)
    mcolors = ["tab:green", "tab:purple", "tab:brown", "tab:gray"]
    nul = null_error(runs)
    tmax = cfg.horizon if cfg.fig6_tmax is None else min(cfg.fig6_tmax, cfg.horizon)
    for i, student in enumerate(STUDENTS):
        highs, lows, peaks = [nul], [], {}
        for j, n in enumerate(ns):
            ax = axes[i, j]
            notes = []
            for c, m in enumerate(ms):
                for solver in ("gd", "flow"):
                    t, mean, std, div, tot = _curve_stats(_pick(runs, student=student, n=n, m=m, solver=solver))
                    if div:
                        notes.append(f"GD δ={cfg.gd_step:g}, m={m}: {div}/{tot} diverged")
                    if t is None:
                        continue
                    color = mcolors[c % len(mcolors)]
                    ax.plot(t, mean, color=color, ls=SOLVER_STYLE[solver]["ls"], lw=1.4,
                            label=f"m = {m}, {_solver_name(solver, runs)}")
                    w = t <= tmax
                    lows.append(float(np.min(mean[w])))
                    if solver == "flow":
                        ax.fill_between(t, mean - std, mean + std, color=color, alpha=0.13, lw=0)
                        highs.append(float(np.max((mean + std)[w])))
                    else:  # GD: its final value sets the range; transients above it are named
                        highs.append(float(mean[w][-1]))
                        peaks[(j, m)] = float(np.max(mean[w]))
            ax.axhline(nul, color="0.45", ls=":", lw=1.0, label="zero predictor f ≡ 0")
            ax.set_xlim(0, tmax)
            ax.set_title(f"{student}, n = {n}", fontsize=FONT["title"] - 1)
            if notes:
                ax.text(0.03, 0.97, "\n".join(notes), transform=ax.transAxes, ha="left", va="top",
                        fontsize=FONT["note"] - 1.5, color="tab:red")
            _style(ax)
            if i == 1:
                ax.set_xlabel("t = k·δ", fontsize=FONT["label"])
            if j == 0:
                ax.set_ylabel(f"test MSE ({STUDENT_LABEL[student].split(' (')[0]})", fontsize=FONT["label"] - 1)
        top = max(highs) + 0.12 * (max(highs) - min(lows + highs))
        bottom = min(lows) - 0.08 * (max(highs) - min(lows)) if lows else 0.0
        for j, ax in enumerate(axes[i]):
            ax.set_ylim(bottom, top)
            over = [f"GD δ={cfg.gd_step:g}, m={m}: peak {p:.3g} (off scale)" for (jj, m), p in peaks.items()
                    if jj == j and p > top]
            if over:
                ax.text(0.97, 0.45, "\n".join(over), transform=ax.transAxes, ha="right", va="center",
                        fontsize=FONT["note"] - 1.5, color="0.25")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Fig. 6 analogue: test MSE against t, ReLU, d = {cfg.d}; mean over seeds "
                 f"({len(cfg.seeds)}), ±std band for the flow", fontsize=FONT["suptitle"])
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=FONT["legend"], frameon=False,
               bbox_to_anchor=(0.5, 0.95))
    _footnote(fig, check_text(runs) + ".", FONT, width=230)
    paths = save_figure(fig, out_dir, "exp2_fig6")
    plt.close(fig)
    return paths


def plot_widths(runs: list[Run], cfg: Config, out_dir: Path) -> list[Path]:
    """The m-comparison: final test error against n for every width, one panel per solver."""
    plt = _plt()
    from ..plotting import FONT, _style

    ms = list(cfg.ms)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.6))
    markers = ["^", "o", "D", "v"]
    styles = [":", "-", "-.", "--"]
    span = (max(cfg.ns) - min(cfg.ns)) or 1
    for ax, solver in zip(axes, ("flow", "gd")):
        marks = []
        for student in STUDENTS:
            for c, m in enumerate(ms):
                k = (0 if c == 0 else 1) if len(ms) <= 2 else c % 4
                div = _errbar(ax, runs, student, solver, m, STUDENT_COLOR[student], ls=styles[k], marker=markers[k],
                              dx=(c - (len(ms) - 1) / 2) * 0.012 * span, label=f"{STUDENT_LABEL[student]}, m = {m}")
                marks += [(x, student, d, m) for x, d in div]
        ax.axhline(null_error(runs), color="0.45", ls=":", lw=1.0, label="zero predictor f ≡ 0")
        ax.set_title(_solver_name(solver, runs), fontsize=FONT["title"])
        ax.set_xlabel("number of training points n", fontsize=FONT["label"])
        ax.set_ylabel(f"test MSE at t = {cfg.horizon:g}", fontsize=FONT["label"])
        ax.set_xticks(list(cfg.ns))
        _style(ax)
        if marks:
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + (0.14 + 0.05 * len(ms)) * (hi - lo))
            _mark_diverged(ax, marks, FONT, cfg.ns)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(f"Width comparison (Fig. 6): m = {', '.join(map(str, ms))}; final test MSE, mean ± sample std "
                 f"over {len(cfg.seeds)} seed(s)", fontsize=FONT["suptitle"])
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=FONT["legend"], frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    _footnote(fig, check_text(runs) + ".", FONT, width=180)
    paths = save_figure(fig, out_dir, "exp2_widths")
    plt.close(fig)
    return paths


__all__ = [
    "PRESETS",
    "Config",
    "check_text",
    "claim_decreases_with_n",
    "claim_embedding_helps",
    "claim_flow_converged",
    "claim_gd_matches_flow",
    "claim_widths_agree",
    "compare",
    "final_errors",
    "gd_flow_gaps",
    "halving_checks",
    "make_claims",
    "null_error",
    "results_table",
    "run",
    "value_at",
]
