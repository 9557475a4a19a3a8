"""Shared machinery of the paper's experiments: presets, one netCDF file per experiment, claims, figures.

Every experiment module (``exp1``, ``exp2``, ``exp3``) exposes

    PRESETS: dict[str, Config]          # "tiny" (tests), "quick" (2-core CPU, minutes), "paper" (GPU scale)
    run(preset="quick", out=None, *, progress=None, device="cpu") -> ExperimentResult

(``preset``: a name or the module's ``Config``, recorded as ``"custom"``; ``out=None``: ``./gflow-reproduce``, the
CLI's default)

and writes, under ``out/<name>/``: ``runs.nc`` (every run with its labels, configuration and solution, one
netCDF group per run), the figures as PNG and PDF, and ``summary.md`` (each of the paper's claims next to the
measured numbers and a verdict computed from the data).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .. import _netcdf
from ..solution import Solution, _json, write_netcdf_atomic

VERDICTS = ("confirmed", "not confirmed", "inconclusive")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims with what we measured and a verdict computed from the data.

    Attributes:
        claim: the paper's statement (with its figure/section).
        measured: the numbers, in words.
        verdict: ``"confirmed"``, ``"not confirmed"`` or ``"inconclusive"``.
    """

    claim: str
    measured: str
    verdict: str

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass(frozen=True)
class Run:
    """A labelled run: ``labels`` such as {"n": 40, "seed": 0, "solver": "gd", "m": 4096}."""

    labels: dict
    solution: Solution


@dataclass
class ExperimentResult:
    """What :func:`run` returns: the runs, the claims, the files written and the wall time; ``counts`` has the
    number of runs ``total``, ``skipped`` (their files were already in ``out/<exp>/runs/``) and ``computed``."""

    name: str
    preset: str
    runs: list[Run]
    claims: list[Claim]
    files: list[Path] = field(default_factory=list)
    wall_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    def select(self, **labels) -> list[Run]:
        """The runs whose labels match all of ``labels``."""
        return [r for r in self.runs if all(r.labels.get(k) == v for k, v in labels.items())]


def resolve_preset(preset: Any, presets: dict, config_type: type, experiment: str) -> tuple[str, Any]:
    """(name, configuration) of an experiment's ``run(preset)``: a preset's name from ``presets``, or a
    ``config_type`` instance, recorded as ``"custom"``."""
    if isinstance(preset, config_type):
        return "custom", preset
    if not isinstance(preset, str) or preset not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)} or an {experiment}.Config, got {preset!r}")
    return preset, presets[preset]


def config_dict(config: Any) -> dict:
    return asdict(config) if is_dataclass(config) else dict(config)


def save_runs(path: str | Path, runs: Iterable[Run], *, experiment: str, preset: str, config: Any,
              include_weights: bool = False, also: Callable[[Path], None] | None = None) -> Path:
    """Write every run to one netCDF file: group ``run000``, ``run001``, ... each a Solution with its labels;
    ``also(file)`` writes more groups.  The file is replaced whole (:func:`gflow.solution.write_netcdf_atomic`):
    a reproduction stopped while writing it leaves the previous file, not a part of the new one.

    All groups go through one h5py file handle (:func:`gflow._netcdf.write_groups`): a ``to_netcdf(mode="a")``
    per run reopened the file each time and grew faster than linearly (120 runs: 46 s); a dataset only xarray
    writes sends the whole file through xarray, as before."""
    import h5py
    import xarray as xr

    runs = list(runs)

    def datasets() -> dict:
        out = {}
        for i, run in enumerate(runs):
            ds = run.solution.to_xarray(include_weights=include_weights)
            ds.attrs["labels"] = _json(run.labels)
            out[f"run{i:03d}"] = ds
        return out

    def write(tmp: Path) -> None:
        groups = datasets()
        try:
            _netcdf.write_groups(tmp, groups)
        except _netcdf.Unsupported:
            xr.Dataset().to_netcdf(tmp, engine="h5netcdf")
            for name, ds in groups.items():
                ds.to_netcdf(tmp, mode="a", group=name, engine="h5netcdf")
        if also is not None:
            also(tmp)
        with h5py.File(tmp, "a") as fh:
            fh.attrs["gflow_experiment"] = experiment
            fh.attrs["preset"] = preset
            fh.attrs["config"] = _json(config_dict(config))
            fh.attrs["n_runs"] = len(runs)

    return write_netcdf_atomic(None, path, write=write)


def load_runs(path: str | Path) -> tuple[dict, list[Run]]:
    """Read a file written by :func:`save_runs`: (attributes, runs).

    One h5py file handle reads every group (:func:`gflow._netcdf.read_group`): xarray's reader, one open per
    group, named each dimension through an HDF5 call that searches the whole file and grew as the square of the
    number of runs (120 runs: 63 s).  A group of another layout is read by :meth:`Solution.load`, as before."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such experiment file: {path}")
    with h5py.File(path, "r") as fh:
        if "gflow_experiment" not in fh.attrs:
            raise ValueError(f"{path} is not a gflow experiment file")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in fh.attrs.items()}
        groups = sorted(k for k in fh.keys() if k.startswith("run"))
        read = {}
        for g in groups:
            try:
                read[g] = _netcdf.read_group(fh[g])
            except Exception:  # noqa: BLE001 - Solution.load reads it through xarray, or says why it cannot
                pass
    attrs["config"] = json.loads(attrs["config"])
    runs = []
    for g in groups:
        sol = Solution.from_dataset(read[g], path, group=g) if g in read else Solution.load(path, group=g)
        runs.append(Run(json.loads(sol.extra_attrs.get("labels", "{}")), sol))
    return attrs, runs


def write_summary(path: str | Path, *, title: str, preset: str, claims: list[Claim], notes: Iterable[str] = (),
                  wall_time: float | None = None, figures: Iterable[Path] = ()) -> Path:
    """``summary.md``: the claims table, the choices made where the paper is silent, and the figures."""
    path = Path(path)
    lines = [f"# {title}", "", f"Preset `{preset}`" + (f", wall time {wall_time:.1f} s" if wall_time else "")
             + f", gflow, Python {sys.version.split()[0]}.", "",
             "| the paper's claim | measured | verdict |", "|---|---|---|"]
    for c in claims:
        mark = {"confirmed": "✅ confirmed", "not confirmed": "❌ not confirmed", "inconclusive": "➖ inconclusive"}
        lines.append(f"| {c.claim} | {c.measured} | {mark[c.verdict]} |")
    notes = list(notes)
    if notes:
        lines += ["", "## Choices and remarks", ""] + [f"- {n}" for n in notes]
    figs = list(figures)
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figs if f.suffix == ".png"]
    path.write_text("\n".join(lines) + "\n")
    return path


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as PNG (dpi 150) and PDF; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        p = out_dir / f"{stem}{suffix}"
        fig.savefig(p, dpi=150 if suffix == ".png" else None, bbox_inches="tight")
        paths.append(p)
    return paths


def progress_bar(total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar over runs (or steps) when attached to a terminal; a silent stand-in otherwise."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False)
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    return _Silent()


class _Silent:
    def update(self, k: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def fitted_rate(t: np.ndarray, loss: np.ndarray, *, floor: float = 1e-25) -> float:
    """Least-squares decay rate ρ of loss ≈ C e^{−ρt} over the points above ``floor``·loss[0]."""
    t, loss = np.asarray(t, float), np.asarray(loss, float)
    keep = loss > floor * loss[0]
    if keep.sum() < 3:
        return float("nan")
    slope = np.polyfit(t[keep], np.log(loss[keep]), 1)[0]
    return float(-slope)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


__all__ = ["Claim", "Run", "ExperimentResult", "save_runs", "load_runs", "write_summary", "save_figure",
           "progress_bar", "fitted_rate", "VERDICTS", "Timer"]
