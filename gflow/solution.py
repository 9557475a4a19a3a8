r"""One result type for every solver and for gradient descent, saved to a self-describing netCDF file.

A :class:`Solution` holds the saved times, the loss (eq. (6)), residuals and outputs on the training points,
test outputs/loss/error when test data were given, hidden features H at chosen times, the final weights (and
weights at chosen times on request), solver statistics, a status and a message.  Its file also stores the
data, the full configuration, the seeds and the package versions, so that :func:`gflow.rerun` can repeat the
run from the file alone.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from . import _netcdf
from ._validate import check_flag, describe, is_int, is_real

FORMAT_VERSION = 1

#: Status values.  Everything except "success" is a failure that kept the partial trajectory.
STATUSES = {
    "success": "the integration reached t1",
    "max_steps": "the step limit max_steps was reached before t1",
    "stalled": "the step size collapsed (projected step count far beyond max_steps)",
    "step_size_collapse": "the step size underflowed",
    "nonfinite": "the state became non-finite (NaN or inf)",
    "time_budget": "the wall-time budget max_wall_time ran out",
    "diverged": "a fixed-step solve or gradient descent diverged (loss past 1e10·L₀, or non-finite)",
    "interrupted": "Ctrl-C (SIGINT) stopped the run (it raised gflow.Interrupted, which carries this Solution)",
    "failed": "the solver raised an error",
}


def _json(obj) -> str:
    """JSON with numpy scalars and arrays converted to Python numbers and lists."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.dumps(obj, default=default)


def check_output_path(path: Any, name: str = "path", *, folder: bool = False) -> Path:
    """``path`` as a Path, checked to be writable as a file (``folder``: as an output folder): not a directory (not
    a file), and not below a regular file.

    Raises TypeError for a non-path and IsADirectoryError / ValueError naming ``name`` otherwise, so that a
    caller can check its output path before it spends time on a run.
    """
    what = "an output folder" if folder else "a file path"
    if not isinstance(path, (str, PathLike)):
        raise TypeError(f"{name} must be {what} (str or os.PathLike), got {describe(path)}")
    p = Path(path)
    if str(path) == "":
        raise ValueError(f"{name} must be {what}, got an empty string")
    if p.is_dir() and not folder:
        raise IsADirectoryError(f"{name} must be a file path, got {str(p)!r}, which is an existing directory")
    if p.exists() and not p.is_dir() and folder:
        raise ValueError(f"{name} must be an output folder, got {str(p)!r}, which is an existing file, not a folder")
    if folder and p.is_dir():  # (an existing output folder is written into, whatever its parent allows)
        _check_writable(p, p, name)
        return p
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{name} must be {what} in a directory, got {str(p)!r}, but "
                                 f"{str(parent)!r} is an existing file, not a directory")
            _check_writable(parent, p, name)
            break
    return p


def _check_writable(folder: Path, p: Path, name: str) -> None:
    """A probe file in ``folder``: ``p`` itself for an existing output folder, else the nearest existing folder above
    ``p``, where a file is written beside its temporary copy and a missing folder is made (``gflow simulate --out
    /proc/x.nc`` ran the whole run, then failed naming a temporary file; os.access says yes to root wherever the
    mode bits do)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".gflow-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{name}: cannot write {str(p)!r}: the folder {str(folder)!r} is not writable "
                         f"({exc.strerror or exc})") from None


def to_netcdf(ds, path: str | Path) -> None:
    """Write the xarray Dataset ``ds`` as the netCDF-4 file ``path`` (replaced): through h5py
    (:mod:`gflow._netcdf`, ~6x faster than xarray's writer on a Solution) where the dataset is one gflow writes,
    else ``ds.to_netcdf(path, engine="h5netcdf")``; xarray reads either back identically."""
    try:
        _netcdf.write_file(path, ds)
    except _netcdf.Unsupported:
        ds.to_netcdf(path, engine="h5netcdf")


def write_netcdf_atomic(ds, path: str | Path, also=None, *, write=None) -> Path:
    """Write the xarray Dataset ``ds`` to the netCDF file ``path`` so that a reader sees the old file or the new one,
    whole, never a half-written one (a run killed while saving left a truncated file where a good one was; a load
    beside a save failed): through a temporary file of its own in the same folder, flushed to disk, then
    :func:`os.replace`.  ``also(tmp)``: writes more groups into the temporary file before it is put in place;
    ``write(tmp)`` (with ``ds=None``): writes the whole file instead of ``ds``.  The file keeps its permissions and
    a symbolic link its target; a hard link to the old file keeps the old contents; in a folder where no file may be
    created, a writable file is written in place (not atomically)."""
    import os
    import stat
    import uuid

    def write_all(target: Path) -> None:
        if write is not None:
            write(target)
        else:
            to_netcdf(ds, target)
        if also is not None:
            also(target)

    path = Path(path)
    given = path
    if path.is_symlink():  # (replacing the link with a file left its target as it was)
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            write_all(tmp)
        except PermissionError:  # a folder where no file may be created, holding a file we may write: in place
            if tmp.exists() or not (path.exists() and os.access(path, os.W_OK)):
                raise
            write_all(path)
            return given
        if path.exists():  # the file keeps its permissions (a 0640 file came back 0644)
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        fd = os.open(tmp, os.O_RDWR)  # (Windows' fsync needs a handle with write access)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return given


class GFlowWarning(UserWarning):
    """Warning issued by gflow, e.g. when a solver stops early with a failure status."""


class SolverError(RuntimeError):
    """Raised by :meth:`Solution.raise_for_status` for a failed run."""


class Interrupted(KeyboardInterrupt):
    """Raised when Ctrl-C (SIGINT) stops a run of gflow; the run's trajectory up to there is in ``.solution``.

    The first Ctrl-C during ``gf.simulate``, ``gf.gradient_descent`` or their batched forms stops the run at its
    next evaluation, as a wall-time budget would: the run writes its checkpoint (where it has one: the same call
    then resumes it) and keeps its trajectory, and the function raises this exception with the
    :class:`Solution` (status ``"interrupted"``; a list of them for the batched forms) attached.  A second Ctrl-C
    interrupts at once (a plain KeyboardInterrupt).  It is a KeyboardInterrupt, so a script or a loop over runs
    still stops; to keep the trajectory::

        try:
            sol = gf.simulate(net, X, y, t1=50_000)
        except gf.Interrupted as stop:
            sol = stop.solution

    (at an interactive prompt, after an uncaught one: ``sys.last_value.solution``).  A run that finished just as
    Ctrl-C arrived raises it too, with the complete Solution (status ``"success"``): the Ctrl-C is never lost.
    """

    def __init__(self, message: str, solution=None):
        super().__init__(message)
        self.solution = solution

    def __reduce__(self):  # (a process-pool worker sends it back pickled)
        return type(self), (self.args[0] if self.args else "", self.solution)


def _package_version(name: str) -> str:
    """A package's version without importing it (importing torchdiffeq pulls in scipy.integrate and
    scipy.optimize: 0.3 s of the first solve of a process that runs none of its methods)."""
    module = sys.modules.get(name)
    if getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def versions() -> dict:
    import scipy
    import torch

    from . import __version__
    from .model._native import status as native_status
    from .model.activations import float64_tanh_route

    return {
        "gflow": __version__,
        "torch": torch.__version__,
        "torchdiffeq": _package_version("torchdiffeq"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "float64_tanh_route": float64_tanh_route(),  # how tanh σ/σ′ ran on this CPU (the routes agree to ~4e-16)
        # gflow's compiled kernels: "on (file name)" — not its folder, the user's home — or "off (why)"
        "native_kernels": native_status(path=False),
    }


# every array field of Solution with its netCDF dimensions
_DIMS: dict[str, tuple[str, ...]] = {
    "loss": ("time",), "residual": ("time", "sample"), "output": ("time", "sample"),
    "X": ("sample", "input"), "y": ("sample",), "c": ("neuron",), "H": ("feature_time", "neuron", "sample"),
    "W_final": ("neuron", "embed"), "W": ("weight_time", "neuron", "embed"), "W0": ("neuron", "embed"),
    "X_test": ("test_sample", "input"), "y_test": ("test_sample",), "test_output": ("time", "test_sample"),
    "test_loss": ("time",), "test_error": ("time",), "test_sign_error": ("time",),
    "H_test": ("feature_time", "neuron", "test_sample"),
    "eta": ("time",), "eta_bar": ("time",), "mu": ("time",), "nu": ("time",), "lam_min_M": ("time",),
    "lam_max_M": ("time",), "dL": ("time",), "feature_movement": ("time", "sample"),
    "feature_movement_test": ("time", "test_sample"), "kernel_movement": ("time",), "weight_movement": ("time",),
    "moved_fraction": ("time",),
    "int_eta": ("time",), "int_mu": ("time",), "int_nu": ("time",), "int_lam_min_M": ("time",),
    "int_sqrt_abs_dL": ("time",), "int_abs_dL": ("time",), "G": ("sample", "sample2"),
    "error_estimate": ("time",),
}


_KNOWN_ATTRS = {"gflow_format_version", "status", "message", "stats", "config", "versions", "theory",
                "weights_included", "D"}


def _same(a: Any, b: Any) -> bool:
    """``a`` equals ``b`` as :meth:`Solution.__eq__` compares its fields: arrays (and numbers) by value with NaN
    equal to NaN, dictionaries and sequences entry by entry."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and \
            all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b) and \
            all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) or (is_real(a) and is_real(b)):
        if a is None or b is None:
            return False
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return False
        try:
            return bool(np.array_equal(x, y, equal_nan=True))
        except TypeError:  # (object or string arrays: NaN is not looked for)
            return bool(np.array_equal(x, y))
    try:
        return bool(a == b)
    except Exception:
        return False


def fields_equal(a: Any, b: Any) -> bool:
    """Two dataclass results (:class:`Solution`, :class:`gflow.Comparison`, :class:`gflow.Certificate`) of one
    type with every field equal as :func:`_same` compares them (NaN equal to NaN: a dataclass's own ``==`` said a
    result with a NaN differed from its copy)."""
    return a is b or (type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__))


@dataclass(frozen=True, eq=False)
class Solution:
    r"""The result of :func:`gflow.simulate` or :func:`gflow.gradient_descent`.

    Attributes (numpy arrays; T saved times, n training points, m neurons, D embedding dimension):
        t: (T,) times; for gradient descent t = kδ after k steps.
        loss: (T,) L = ½ Σ_a (f(x_a) − y_a)² (eq. (6)).
        residual: (T, n) r = f − y.   output: (T, n) f on the training inputs.
        test_output: (T, n_te);  test_loss: (T,) ½ Σ (f − y)² over test points;  test_error: (T,) the
            test mean squared error (1/n_te) Σ (f − y)²;  test_sign_error: (T,) fraction with sign f ≠ y,
            only for ±1 labels (an f within rounding of 0 — 1e3 ε × the scale of the terms it sums — is no
            prediction: an error, as f = 0 is).  All None without test data.
        feature_t: (K,) times at which features were kept;  H: (K, m, n);  H_test: (K, m, n_te) or None.
        weight_t: (J,) times at which weights were kept (may be empty);  W: (J, m, D) or None.
        W_final: (m, D) weights at ``t[-1]``.   c: (m,) output weights.
        status: one of :data:`STATUSES`;  message: what happened and what to try.
        stats: n_f_evals, n_steps, n_accepted, n_rejected, wall_time, flops_per_eval, ...
        config: ``{"kind": "flow"|"gd", "network": ..., "solver": ..., "space": ...}``.
        X, y, X_test, y_test: the data.   W0: explicit initial weights (None when the seed defines them).
        versions: package versions that produced the run.

    Theory quantities (EQUATIONS.md §8–§9), each (T,) unless noted; see :mod:`gflow.model.quantities`:
        eta: η_t = min_a (1/m)#{i : h_i(x_a) ∈ I} (18);  eta_bar: the same with the inner interval I₀.
        mu, nu: min_a (1/m)Σ_i σ′(h_ia)² and with c_i² weights.
        lam_min_M, lam_max_M: extreme eigenvalues of M = κ_M·G∘S (E3) (NaN for n > 2000).
        dL: L̇ = −rᵀMr.   feature_movement: (T, n) (1/m)Σ_i|h_i^t(x_a) − h_i^0(x_a)|;
            feature_movement_test: (T, n_te) the same on the test inputs (None without test data).
        kernel_movement: ‖M_t − M_0‖_F/‖M_0‖_F.   weight_movement: ‖W_t − W_0‖_F/‖W_0‖_F.  (From a zero start,
            M₀ = 0 or W₀ = 0: 0 while nothing moved, inf once it has.)
        moved_fraction: max_a (1/m)#{i : |h_i^t(x_a) − h_i^0(x_a)| ≥ ξ}, ξ = |I|/3 (T7; NaN for unbounded I).
        int_eta, int_mu, int_nu, int_lam_min_M, int_sqrt_abs_dL, int_abs_dL: running integrals ∫₀ᵗ (·) ds,
            integrated with the flow (exact left sums for GD); None when ``integrals=False`` (and int_lam_min_M
            for n > 1024, where λ_min(M) at every evaluation is skipped: ``gflow.fields.observed.LAM_MIN_M_MAX_N``).
        error_estimate: (T,) the estimated relative error of the loss at each saved time (``error_estimate=True``:
            step halving, :func:`gflow.simulate_nonsmooth`, or a second, looser solve, :mod:`gflow.solve.estimate`);
            None when not computed.
        G: (n, n) the Gram matrix.   theory: static constants (interval I, K_σ′, ĉ, λ_min(G), G_min, ...).
        extra_attrs: attributes of a loaded file that gflow does not read itself (e.g. an experiment run's
            ``labels``, a sweep run's ``sweep_*``), as strings or numbers, written again by :meth:`save`; empty
            for a run computed here.
    """

    t: np.ndarray
    loss: np.ndarray
    residual: np.ndarray
    output: np.ndarray
    status: str
    message: str
    stats: dict
    config: dict
    X: np.ndarray
    y: np.ndarray
    c: np.ndarray
    W_final: np.ndarray
    feature_t: np.ndarray
    H: np.ndarray
    weight_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    W: np.ndarray | None = None
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    test_output: np.ndarray | None = None
    test_loss: np.ndarray | None = None
    test_error: np.ndarray | None = None
    test_sign_error: np.ndarray | None = None
    H_test: np.ndarray | None = None
    W0: np.ndarray | None = None
    versions: dict = field(default_factory=dict)
    # theory quantities at every saved time (EQUATIONS.md §8-§9)
    eta: np.ndarray | None = None
    eta_bar: np.ndarray | None = None
    mu: np.ndarray | None = None
    nu: np.ndarray | None = None
    lam_min_M: np.ndarray | None = None
    lam_max_M: np.ndarray | None = None
    dL: np.ndarray | None = None
    feature_movement: np.ndarray | None = None
    feature_movement_test: np.ndarray | None = None
    kernel_movement: np.ndarray | None = None
    weight_movement: np.ndarray | None = None
    moved_fraction: np.ndarray | None = None
    int_eta: np.ndarray | None = None
    int_mu: np.ndarray | None = None
    int_nu: np.ndarray | None = None
    int_lam_min_M: np.ndarray | None = None
    int_sqrt_abs_dL: np.ndarray | None = None
    int_abs_dL: np.ndarray | None = None
    G: np.ndarray | None = None
    error_estimate: np.ndarray | None = None
    theory: dict = field(default_factory=dict)
    extra_attrs: dict = field(default_factory=dict)

    # ----------------------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """The same run's results: every field equal — arrays by shape and value (NaN equal to NaN), the
        dictionaries (``stats``, ``config``, ``theory``, ...) entry by entry.  A Solution pickled and loaded, or
        copied, equals the original; one saved to netCDF and loaded back need not (the file's types differ)."""
        if not isinstance(other, Solution):
            return NotImplemented
        return fields_equal(self, other)

    #: a Solution holds numpy arrays, which can change in place: it is not hashable (as numpy arrays are not)
    __hash__ = None  # type: ignore[assignment]

    @property
    def ok(self) -> bool:
        """True when the run reached its final time (status ``"success"``)."""
        return self.status == "success"

    @property
    def kind(self) -> str:
        """``"flow"`` (an ODE solve) or ``"gd"`` (gradient descent)."""
        return self.config.get("kind", "flow")

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def m(self) -> int:
        return int(self.c.shape[0])

    @property
    def D(self) -> int:
        return int(self.W_final.shape[1])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    def time_to_loss(self, level: float) -> float | None:
        """The first time at which the training loss reaches ``level`` (L_t ≤ level), between the two saved times
        around it interpolated linearly in log L — exact where the loss decays exponentially between them (a linear
        σ with n = 1), otherwise as fine as the saved times (``saveat``; GD: t = kδ at the saved steps).

        Returns:
            the time (flow time t; 0.0 where L₀ ≤ level), or None where no saved loss reaches ``level`` (the run
            ended above it, or stopped early: see :attr:`status`).
        """
        if not is_real(level):
            raise TypeError(f"level must be a positive loss value, e.g. 1e-6, got {describe(level)}")
        level = float(level)
        if not (level > 0 and math.isfinite(level)):
            raise ValueError(f"level must be a positive, finite loss value, e.g. 1e-6, got {level}")
        L, t = np.asarray(self.loss, dtype=np.float64), np.asarray(self.t, dtype=np.float64)
        below = np.flatnonzero(L <= level)  # (NaN compares False: a non-finite loss never reaches it)
        if below.size == 0:
            return None
        k = int(below[0])
        if k == 0:
            return float(t[0])
        (ta, tb), (La, Lb) = t[k - 1:k + 1], L[k - 1:k + 1]
        if not (math.isfinite(La) and La > level):  # (after a non-finite saved loss: no interval to interpolate in)
            return float(tb)
        if Lb > 0:
            frac = math.log(La / level) / math.log(La / Lb)
        else:  # (an exact 0: linear in L)
            frac = (La - level) / La
        return float(ta + frac * (tb - ta))

    def feature_index(self, t: float, *, name: str = "t") -> int:
        """The index in :attr:`feature_t` of time ``t`` (nearest saved time within 1e-9 relative).

        Raises TypeError for a non-number and ValueError for a non-finite time or one that was not kept.
        """
        if not is_real(t):
            raise TypeError(f"{name} must be a finite time among the saved feature times "
                            f"{np.asarray(self.feature_t).tolist()}, got {describe(t)}")
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"{name} must be a finite time among the saved feature times "
                             f"{np.asarray(self.feature_t).tolist()}, got {t}")
        ft = np.asarray(self.feature_t, dtype=np.float64)
        if ft.size == 0 or self.H is None:
            raise ValueError(f"no features were kept in this solution, so none at {name} = {t} "
                             "(simulate with features_at=...)")
        k = int(np.argmin(np.abs(ft - t)))
        if abs(ft[k] - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(f"{name} must be one of the saved feature times {ft.tolist()} (within 1e-9 "
                             f"relative), got {t}: features were not kept there (choose times with features_at=... "
                             "when simulating)")
        return k

    def features_at(self, t: float) -> np.ndarray:
        """The features H (m, n), h_i(x_a), at a time at which they were kept.

        Args:
            t: a time in :attr:`feature_t` (the ``features_at=`` times of the run; by default 0 and t1),
                matched to the nearest kept time within 1e-9 relative.

        Raises:
            TypeError, ValueError: ``t`` not a finite number, or not a kept time (the message lists them).
        """
        return self.H[self.feature_index(t)]

    def raise_for_status(self) -> "Solution":
        """Raise :class:`SolverError` with the message if the run failed; return self otherwise."""
        if not self.ok:
            raise SolverError(f"[{self.status}] {self.message}")
        return self

    def summary(self, rows: int = 10) -> str:
        """A short human-readable table of the loss (and the test mean squared error, with test data; the test
        0–1 error too for ±1 test labels) over time, with the status and statistics.

        Args:
            rows: at most this many table rows, at saved times spread evenly over the run (first and last
                included; 1: the last alone); 0 leaves the table out (the status and the statistics only).
        """
        if not is_int(rows):
            raise TypeError(f"rows must be a non-negative int, got {describe(rows)}")
        if rows < 0:
            raise ValueError(f"rows must be a non-negative int, got {rows}")
        T = len(self.t)
        idx = sorted(set(np.linspace(0, T - 1, min(rows, T)).round().astype(int).tolist())) if rows != 1 else [T - 1]
        gd = self.kind != "flow"
        # (the column held the test mean squared error under "test error", read as a misclassification rate)
        head = f"{'t = kδ' if gd else 't':>12}  {'loss':>14}" + (f"  {'test MSE':>12}" if self.test_error is not None
                                                                   else "")
        sign = self.test_sign_error  # (±1 test labels: the 0–1 error beside the MSE)
        head += f"  {'test 0-1 err':>12}" if sign is not None else ""
        lines = [head] if idx else []
        for k in idx:
            line = f"{self.t[k]:12.6g}  {self.loss[k]:14.6e}"
            if self.test_error is not None:
                line += f"  {self.test_error[k]:12.5e}"
            if sign is not None:
                line += f"  {sign[k]:12.4g}"
            lines.append(line)
        st = self.stats
        solver = self.config.get("solver", {})
        what = solver.get("method", "gradient_descent") if not gd else f"GD step={solver.get('step')}"
        rejected = st.get("n_rejected")
        steps = (f"{st.get('n_steps')} steps" if gd or solver.get("step") is not None else  # (fixed steps: none)
                 f"{st.get('n_steps')} accepted steps (scipy does not report rejections)" if rejected == -1 else
                 f"{st.get('n_steps')} steps ({rejected} rejected)")
        space = self.config.get("space")
        if st.get("explicit_method") and st.get("switch_time") is None:  # (no hand-over: exprk4 never ran)
            space = st.get("explicit_space", "feature")
        lines.append(
            f"status: {self.status} — {self.message}\n"
            f"{what} in {space} space: {st.get('n_f_evals')} evaluations, {steps}, "
            f"{st.get('wall_time', float('nan')):.3g} s"
        )
        if st.get("explicit_method"):  # dop853+exprk4 / dopri5+exprk4: say where each phase ran
            phase = f"{st['explicit_method']} in {st.get('explicit_space', 'feature')} space"
            sw = st.get("switch_time")
            if sw is not None:
                times = st.get("phase_times") or [sw] + ([] if st.get("give_back_time") is None
                                                         else [st["give_back_time"]])
                text = f"  {phase} to t = {times[0]:.6g}, then exprk4 in feature space"
                for i, t in enumerate(times[1:]):
                    text += (f" to t = {t:.6g}, then {st['explicit_method']} again (feature space)" if i % 2 == 0
                             else f" to t = {t:.6g}, then exprk4 again")
                lines.append(text)
            else:  # (a run that stopped early never reached t1: "to t1" said it had)
                lines.append(f"  {phase} to t1 (no hand-over)" if self.ok else
                             f"  {phase} until it stopped at t = {float(self.t[-1]):.6g} (no hand-over)")
        lam = None if self.lam_max_M is None else np.asarray(self.lam_max_M, dtype=np.float64)
        if lam is not None and lam.size and np.all(lam == 0.0):  # (NaN, n > 2000 or not recorded: no claim)
            lines.append("note: the kernel M is 0 at every saved time — no training signal (c = 0, or every neuron "
                         "inactive on every training point, e.g. dead ReLUs): the flow did not move")
        return "\n".join(lines)

    def __str__(self) -> str:
        # (print(sol) showed the one-line repr, where print(cert) and print(cmp) show their reports)
        return self.summary()

    def __repr__(self) -> str:
        return (f"Solution(kind={self.kind!r}, status={self.status!r}, T={len(self.t)}, t1={self.t[-1]:.6g}, "
                f"loss {self.loss[0]:.4e} -> {self.loss[-1]:.4e}, m={self.m}, n={self.n})")

    # ----------------------------------------------------------------------------------------------------
    # Files

    def to_xarray(self, *, include_weights: bool = True):
        """The solution as an :class:`xarray.Dataset` (dims time, sample, neuron, embed, ...), as :meth:`save`
        writes it, with ``extra_attrs`` among its attributes.

        Args:
            include_weights: include ``W_final`` and ``W`` (False leaves them out, as ``save`` does with
                ``include_weights=False``; :meth:`load` then gives a NaN placeholder for ``W_final``).
        """
        import xarray as xr

        include_weights = check_flag(include_weights, "include_weights")  # ("no" reached int(), "0" was kept)

        dv: dict[str, Any] = {}
        for name, dims in _DIMS.items():
            value = getattr(self, name)
            if value is None or (not include_weights and name in ("W_final", "W")):
                continue
            dv[name] = (dims, np.asarray(value))
        coords = {"time": self.t, "feature_time": self.feature_t, "weight_time": self.weight_t}
        attrs = {
            "gflow_format_version": FORMAT_VERSION,
            "status": self.status,
            "message": self.message,
            "stats": _json(self.stats),
            "config": _json(self.config),
            "versions": _json(self.versions),
            "theory": _json(self.theory),
            "weights_included": int(include_weights),
            "D": self.D,
        }
        for k, v in self.extra_attrs.items():  # (a loaded file's: a sweep run's sweep_* were lost on save + load)
            attrs.setdefault(k, v)
        return xr.Dataset(dv, coords=coords, attrs=attrs)

    def save(self, path: str | Path, *, include_weights: bool = True) -> Path:
        """Write a netCDF-4 file (through h5py in h5netcdf's layout, :mod:`gflow._netcdf`; xarray's writer for a
        dataset it does not take) holding the run, its data, configuration and versions.

        Args:
            path: the file to write (conventionally ``*.nc``).
            include_weights: store W_final (and W at the chosen times); ``False`` keeps files small at
                paper sizes (m = D = 8192 makes W_final 512 MiB in float64).

        The file is replaced whole (:func:`write_netcdf_atomic`): a save that is killed, or a load beside it, never
        sees a half-written file.
        """
        path = check_output_path(path)
        return write_netcdf_atomic(self.to_xarray(include_weights=include_weights), path)

    @classmethod
    def load(cls, path: str | Path, *, group: str | None = None) -> "Solution":
        """Read a file written by :meth:`save`, or with ``group`` one run of an experiment file
        (``results/<exp>/runs.nc``: groups ``"run000"``, ``"run001"``, ...); see :func:`gflow.load`."""
        import xarray as xr

        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"path must be a file path (str or os.PathLike), got {describe(path)}")
        if group is not None and not isinstance(group, str):
            raise TypeError(f"group must be a group name (str, e.g. 'run000') of the file or None, got {describe(group)}")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such solution file: {path}")
        if path.is_dir():  # (HDF5's "Unable to synchronously open file (file read failed ...)", an input audit)
            runs = path / "runs"
            hint = (f"; it looks like a sweep's store: gf.open_sweep({str(path)!r}) reads all its runs, "
                    f"gf.load('{runs}/<run_id>.nc') one of them" if (path / "manifest.json").exists() else
                    f"; it holds an experiment's runs: gf.load('{path / 'runs.nc'}', group='run000') reads one"
                    if (path / "runs.nc").exists() else "")
            raise IsADirectoryError(f"{path} is a folder, not a solution file{hint}")
        try:  # (through h5py, 4-5x faster than xarray's reader; any other file or a damaged one: xarray, below)
            ds = _netcdf.read_file(path, group)
        except Exception:  # noqa: BLE001 - xarray reads it, or says why it cannot
            ds = None
        if ds is not None:
            return cls.from_dataset(ds, path, group=group)
        try:
            with xr.open_dataset(path, engine="h5netcdf", group=group) as ds:
                ds = ds.load()
        except OSError as exc:
            groups = _groups(path)
            if group is not None and groups is not None and group.strip("/") not in groups:
                raise ValueError(f"{path} has no group {group!r}; its groups: {_listing(groups)}") from None
            raise ValueError(f"{path} is not a netCDF-4 file: {exc}") from None
        except (KeyError, RuntimeError, ValueError) as exc:  # h5py's answers to a damaged file (a bad checksum:
            # KeyError; dimension scales: RuntimeError), or xarray's to unreadable contents
            raise ValueError(f"{path} is not a readable gflow solution file (damaged or not written by gflow): "
                             f"{type(exc).__name__}: {exc}") from None
        return cls.from_dataset(ds, path, group=group)

    @classmethod
    def from_dataset(cls, ds, path: str | Path = "<dataset>", *, group: str | None = None) -> "Solution":
        """The Solution held by a loaded xarray Dataset written by :meth:`to_xarray` (what :meth:`load` reads;
        ``path`` only names it in errors): a caller that reads the file's other variables too opens it once."""
        path = Path(path)
        if "gflow_format_version" not in ds.attrs and group is None and "gflow_experiment" in ds.attrs:
            groups = [g for g in _groups(path) or [] if g.startswith("run")]  # (exp3 adds a "scatter" group)
            first = groups[0] if groups else "run000"
            raise ValueError(
                f"{path} is a gflow experiment file (experiment {ds.attrs['gflow_experiment']!r}, preset "
                f"{ds.attrs.get('preset', '?')!r}) holding {len(groups)} runs, one netCDF group each "
                f"({_listing(groups)}), not a single solution: open one run with gf.load({str(path)!r}, "
                f"group={first!r}), all of them with gflow.experiments.load_runs({str(path)!r}), or give "
                f"gflow show/plot/certify a per-run file {path.parent / 'runs'}/<id>.nc")
        if "gflow_format_version" not in ds.attrs:
            if "sweep_status" in ds.attrs:  # a sweep's record of a run that produced no solution
                first = str(ds.attrs.get("message", "")).strip().split("\n\n")[0]  # not the stored traceback
                raise ValueError(f"{path} is the record of a sweep run that produced no solution (status "
                                 f"{ds.attrs['sweep_status']!r}): {first}")
            raise ValueError(f"{path} is not a gflow solution file (no gflow_format_version attribute)")
        version = str(ds.attrs["gflow_format_version"])
        if version != str(FORMAT_VERSION):
            raise ValueError(f"{path} was written in gflow file format {version!r}; this gflow reads format "
                             f"{FORMAT_VERSION} (use the gflow version that wrote it)")
        missing = [a for a in ("status", "message", "stats", "config", "versions") if a not in ds.attrs]
        missing += [v for v in ("time", "feature_time", "weight_time", "loss", "X", "y", "c") if v not in ds]
        if missing:
            raise ValueError(f"{path} is not a complete gflow solution file: it lacks {missing}")
        try:
            meta = {k: json.loads(ds.attrs[k]) for k in ("stats", "config", "versions")}
            meta["theory"] = json.loads(ds.attrs.get("theory", "{}"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable gflow solution file: an attribute is not JSON ({exc})") from None
        if not all(isinstance(meta[k], dict) for k in meta):
            raise ValueError(f"{path} is not a readable gflow solution file: stats, config, versions and theory must "
                             "be JSON objects")
        if str(ds.attrs["status"]) not in STATUSES:
            status = str(ds.attrs["status"])[:60]
            raise ValueError(f"{path} is not a readable gflow solution file: status {status!r} is not one of "
                             f"{list(STATUSES)}")
        if ds.sizes.get("time", 0) == 0:
            raise ValueError(f"{path} holds no saved time (an empty gflow solution file)")
        arrays = {name: ds[name].values for name in _DIMS if name in ds}
        if "W_final" not in arrays:
            D = int(ds.attrs.get("D", ds.sizes.get("embed", 0)))
            # a read-only, zero-memory placeholder (a real array would cost m·D·8 bytes per run)
            arrays["W_final"] = np.broadcast_to(np.float64(np.nan), (ds.sizes["neuron"], D))
        return cls(
            t=ds["time"].values, feature_t=ds["feature_time"].values, weight_t=ds["weight_time"].values,
            status=str(ds.attrs["status"]), message=str(ds.attrs["message"]), **meta,
            extra_attrs={k: v for k, v in ds.attrs.items() if k not in _KNOWN_ATTRS}, **arrays,
        )


def _groups(path: Path) -> list[str] | None:
    """The groups of a netCDF-4 file (nested ones as "a/b"), or None if it is not one."""
    import h5netcdf

    try:
        with h5netcdf.File(path, "r") as f:
            out, todo = [], [("", f)]
            while todo:
                prefix, g = todo.pop()
                for name, sub in g.groups.items():
                    out.append(prefix + name)
                    todo.append((prefix + name + "/", sub))
            return sorted(out)
    except Exception:  # noqa: BLE001 - not HDF5/netCDF-4: the caller says so
        return None


def _listing(names: list[str], most: int = 4) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f", ... {names[-1]!r}" if len(names) > most else "")


def as_solution(source: Any, name: str = "source") -> Solution:
    """``source`` itself if a :class:`Solution`, else the one saved at that path; TypeError naming ``name`` for
    anything else (shared by :func:`gflow.rerun` and :func:`gflow.compare`)."""
    if isinstance(source, Solution):
        return source
    if isinstance(source, (str, PathLike)):
        return Solution.load(source)
    raise TypeError(f"{name} must be a gflow.Solution or the path of a saved one, got {describe(source)}")


def load(path: str | Path, *, group: str | None = None) -> Solution:
    """Load a :class:`Solution` saved with :meth:`Solution.save` (the same as :meth:`Solution.load`).

    Args:
        path: a file written by :meth:`Solution.save`, ``gflow simulate``/``demo``/``rerun``, or a sweep's or
            experiment's per-run file (``results/<exp>/runs/<id>.nc``).
        group: the netCDF group that holds the run, for files with several: an experiment file
            ``results/<exp>/runs.nc`` has one group per run, ``"run000"``, ``"run001"``, ...
            (:func:`gflow.experiments.load_runs` reads them all, with their labels).  Default: the file's root.

    Returns:
        the :class:`Solution`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a gflow solution (the message says what the file is: an experiment file, a sweep's
            record of a failed run, another format version), or no such group.

    Example: ``gf.load("results/exp1/runs.nc", group="run000")``, the first run of Experiment 1.
    """
    return Solution.load(path, group=group)


__all__ = ["Solution", "load", "STATUSES", "GFlowWarning", "SolverError", "Interrupted", "versions"]
