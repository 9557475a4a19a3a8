r"""gflow's own explicit Runge–Kutta engine for the flow (eqs. (10)/(11)): low overhead, in torch, CPU or GPU.

Methods:

* adaptive ``dop853`` — Hairer's DOP853 (Dormand–Prince 8(5,3)): order 8, the combined 5th/3rd-order error
  estimator, 7th-order dense output from 3 extra stages (taken only in steps that contain an output time);
* adaptive ``dopri5`` — Dormand–Prince 5(4), FSAL, 4th-order dense output (Shampine's interpolant);
* fixed-step ``euler``, ``midpoint``, ``rk4`` (classic) on gflow's step grid: steps of exactly h, the last one
  before each output time shortened to land on it (:func:`gflow.solve.ode._fixed_grid`).

Why a native engine: at Experiment 1 sizes one evaluation of the field costs well under a millisecond, and a
general-purpose stepper (torchdiffeq) spends most of the wall time outside it.  Here every buffer is
preallocated — the stages K (s, N), the state, the candidate, one stage state — and a stage state is one
``addmv`` ``y + h·K[:j]ᵀ a_j`` into its buffer; a step allocates nothing of size N.  Adaptive steps never stop
on output times (the dense output serves them); only t1 is landed on exactly.

Error control follows Hairer, Nørsett & Wanner (*Solving ODEs I*, §II.4 and the DOPRI5/DOP853 codes): the
mixed norm ‖e / (atol + rtol·max(|y₀|, |y₁|))‖_RMS (an infinite atol entry — the running integrals of
:class:`~gflow.fields.ObservedField` — contributes 0), Hairer's initial-step heuristic, and the PI controller
h_new = h · safety · err^{−(1/(q+1) − 0.75β)} · err_old^{β}, clipped to [dfactor, ifactor]; after a rejection
the step does not grow.

Stability guard.  Once the residual has converged, the flow is stiff (its fast modes, §4) and an unguarded
explicit run steps at the stability limit, crossing it until the error estimate sees the stiff modes grow: the
error of r = f − y then settles at the tolerance's level, far above r itself (Experiment 1 demo saving only t1,
default tolerances: L(500) = 3e-18 for the flow's 3.3e-22; dopri5 at rtol 1e-4 on a dense grid: 3e11× off, the
saved loss rising), and DOP853's dense output amplifies those modes beyond hλ = −5 (see
:data:`DENSE_STIFF_LIMIT`: output values 50–500× less accurate than the steps' ends).  So every adaptive step is
kept to h·ρ ≤ :data:`STIFF_LIMIT` (DOP853: 5, dopri5: 3), with ρ the larger of Hairer's stiffness estimate from two
evaluations every step takes anyway (ρ = ‖f(y₁) − f(Y_s)‖/‖y₁ − Y_s‖, Y_s the last stage's state, c = 1) and a
power iteration on the Jacobian continued across steps (one evaluation, where h·ρ exceeds a fifth of the limit:
in every step that holds an output time, every :data:`_POWER_EVERY` accepted steps otherwise).  Guarded, the run
saving only t1 is within 5e-5 of the flow for 1.10× the evaluations, and the result no longer depends on the
output grid; a step set by accuracy (h·ρ below the limit) is unchanged.

A ``norm`` hook (scaled error tensor → scalar) replaces the RMS norm, e.g. a max-over-seeds norm for a batched
field.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..model import _native
from . import _tableaus as T
from ._record import Abort, Monitor, Recorder

ADAPTIVE = ("dop853", "dopri5")
FIXED = ("euler", "midpoint", "rk4")
METHODS = ADAPTIVE + FIXED
ORDERS = {"dop853": 8, "dopri5": 5, "euler": 1, "midpoint": 2, "rk4": 4}
OPTIONS = {"first_step", "max_step", "min_step", "safety", "ifactor", "dfactor", "pi_beta"}

Norm = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Scheme:
    """An explicit Runge–Kutta scheme.

    Attributes:
        name, order: the method and its order.
        err_order: order q of the embedded error estimate (the step-size exponent is 1/(q+1)); 0 if fixed-step.
        c, A, b: the Butcher tableau (A lower-triangular, rows padded; A may carry extra dense-output rows).
        stages: stages s of one step (without the FSAL evaluation f(t+h, y₁)).
        fsal: whether f(t+h, y₁) is evaluated in each step (it is the next step's first stage).
        pi_beta: the default β of the PI controller (Hairer: 0.04 for DOPRI5, 0 for DOP853).
    """

    name: str
    order: int
    err_order: int
    c: tuple
    A: tuple
    b: tuple
    stages: int
    fsal: bool
    pi_beta: float = 0.0


#: DOP853's steps are kept to h·ρ ≤ this (:data:`STIFF_LIMIT`; ρ: the step's estimate of the Jacobian's spectral
#: radius, see Engine._stiffness): its 7th-order dense output multiplies a stiff mode of the step's start by up to
#: 0.91 for hλ ∈ [−5, 0], but by 3.2, 10.5, 89 at hλ = −5.5, −6, −7 (its stability boundary is −6.35), where an
#: unguarded stability-limited run's steps sat
DENSE_STIFF_LIMIT = 5.0
#: every adaptive step is kept to h·ρ ≤ STIFF_LIMIT[method] (see Engine._stiff_safe): DOP853's
#: :data:`DENSE_STIFF_LIMIT` (its step multiplies a mode by R(hλ) = −0.06 at hλ = −5, its boundary is −6.35), dopri5's
#: 3.0 (R(−3) = 0.57, its dense output ≤ 1 there; its boundary is −3.3, where R = 0.99 and the dense output 1.07)
STIFF_LIMIT = {"dop853": DENSE_STIFF_LIMIT, "dopri5": 3.0}
_POWER_EVERY = 4  # stiff steps between two power-iteration refreshes of ρ (see Engine._stiff_safe)
_POWER_START = 12  # the first power iteration's evaluations at most (see Engine._power_step)
DENSE_CHUNK = 1 << 23  # the dense output forms at most this many state entries at once (64 MB in float64)
_MIN_FIRST_STEP = 1e-11  # the first step's floor, in the Monitor's time unit: 10× its collapse threshold at t ≈ 0
_AXPY_MAX = 3  # a combination of at most this many stages is a chain of axpys, not one addmv (see Engine._plan)
_SLOTS = {"dop853": (4, 0, 1, 2, 3) + tuple(range(5, 16))}  # storage row of each stage (see Engine)

SCHEMES = {
    "euler": Scheme("euler", 1, 0, (0.0,), ((0.0,),), (1.0,), 1, False),
    "midpoint": Scheme("midpoint", 2, 0, (0.0, 0.5), ((0.0, 0.0), (0.5, 0.0)), (0.0, 1.0), 2, False),
    "rk4": Scheme("rk4", 4, 0, (0.0, 0.5, 0.5, 1.0),
                  ((0.0,) * 4, (0.5, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
                  (1 / 6, 1 / 3, 1 / 3, 1 / 6), 4, False),
    "dopri5": Scheme("dopri5", 5, 4, T.DOPRI5_C, T.DOPRI5_A, T.DOPRI5_B, 6, True, pi_beta=0.04),
    "dop853": Scheme("dop853", 8, 7, T.DOP853_C, T.DOP853_A, T.DOP853_B, T.DOP853_N_STAGES, True, pi_beta=0.0),
}


class JumpQuadrature:
    r"""A positive-weight rule for the running integral of a discontinuous integrand (∫η: η jumps whenever a feature
    crosses the edge of the active interval, eq. 18) over one Runge–Kutta step, from the step's stage samples.

    A Runge–Kutta method integrates its states' integrands with its weights b, and DOP853's include b₆ = 4.45 and
    b₈ = −5.80 (dopri5's b₅ = −0.32): a jump of η between those stages moved ∫η by up to 5.8·h·Δη — over a step
    of 0.33 that took ∫η(1) to −0.026 where the integral is 0.169 (η ∈ [0, 1], so it must lie in [0, t]), and a
    15 % error at rtol 1e-11.  Here the integrand is the piecewise-linear interpolant of its samples at the sorted
    stage nodes (samples at one node averaged) — the composite trapezoidal rule, whose weights are positive and sum
    to 1: each step adds h times a convex combination of the sampled η, so ∫η stays within [h·min η, h·max η]
    per step, exact for a constant η and first order across a jump (its error at most the node spacing times the
    jump).  ``weights(theta)`` integrates the interpolant over [0, θ] (the dense output at t + θh, monotone in θ).

    Args:
        nodes: the nodes c_j ∈ [0, 1] of the samples, in the order the samples will be given.
    """

    def __init__(self, nodes):
        self.x, self.group = np.unique(np.asarray(nodes, dtype=np.float64), return_inverse=True)
        if self.x[0] != 0.0 or self.x[-1] != 1.0:
            raise ValueError(f"the nodes must include 0 and 1, got {sorted(set(nodes))}")
        self.count = np.bincount(self.group, minlength=len(self.x)).astype(np.float64)
        self.full = self.weights(1.0)

    def weights(self, theta) -> np.ndarray:
        """Weights of the samples such that Σ_j w_j v_j = ∫₀^θ of the interpolant (positive; Σ w_j = θ); θ a
        number (shape (samples,)) or a sequence of them (shape (len(θ), samples))."""
        x, th = self.x, np.asarray(theta, dtype=np.float64)
        u = np.zeros((*th.shape, len(x)))
        for i in range(len(x) - 1):
            s = np.clip(th - x[i], 0.0, x[i + 1] - x[i])
            d = x[i + 1] - x[i]
            u[..., i] += s - s * s / (2.0 * d)
            u[..., i + 1] += s * s / (2.0 * d)
        return u[..., self.group] / self.count[self.group]


def _unread_stages(sc: Scheme) -> frozenset:
    """The stages j ≥ 1 of an adaptive scheme with weight 0 in the solution and in the dense output (DOP853: 2–5;
    dopri5: 2): nothing reads their derivatives beyond the stage states."""
    dense = {"dop853": np.asarray(T.DOP853_D), "dopri5": np.asarray(T.DOPRI5_P).T}.get(sc.name)
    if dense is None:
        return frozenset()
    return frozenset(j for j in range(1, sc.stages) if sc.b[j] == 0.0 and not np.any(dense[:, j] != 0.0))


def rms_norm(e: torch.Tensor) -> torch.Tensor:
    """The default error norm: root mean square over all entries."""
    return torch.linalg.vector_norm(e) / math.sqrt(e.numel())


@functools.lru_cache(maxsize=256)
def _block_coefficients(slot: tuple[int, ...], n_rows: int, rows: tuple[tuple[float, ...], ...],
                        dtype: torch.dtype, device: torch.device) -> tuple[int, int, torch.Tensor]:
    """(lo, hi, C): the rows lo..hi−1 of the stage array that the combinations ``rows`` (stage-indexed, stage j
    stored in row slot[j]) read, and their coefficients C (r, hi − lo) on ``device``.  A pure function of the
    tableau, memoized: the tensors are never written to, and building them cost ≈ 0.5 ms per solve (a fifth of
    a demo-sized solve's fixed overhead)."""
    full = np.zeros((len(rows), n_rows))
    for i, row in enumerate(rows):
        for stage, c in enumerate(row):
            full[i, slot[stage]] = c
    nz = np.flatnonzero(np.any(full != 0, axis=0))
    lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
    return lo, hi, torch.tensor(full[:, lo:hi], dtype=dtype, device=device)


def _row_chunks(n_rows: int, width: int, limit: int) -> list[slice]:
    """Slices of ``range(n_rows)`` whose rows of ``width`` entries hold at most ``limit`` entries (one row at least)."""
    per = max(1, limit // max(1, width))
    return [slice(lo, min(n_rows, lo + per)) for lo in range(0, n_rows, per)]


class Engine:
    """Integrates one field over an output grid, recording at the grid's times; owns the stepping loop.

    Args:
        field: the vector field (``rhs_into(state, out) -> Parts``; ``Parts.probe`` is the finiteness witness).
        grid: increasing output times, grid[0] = 0, grid[-1] = t1.
        method: one of :data:`METHODS`.
        rtol, atol: tolerances (adaptive); atol a float or a tensor of the state's shape (``inf`` entries never
            limit the step).
        step: the step h of fixed-step methods.
        options: ``first_step``, ``max_step``, ``min_step``, ``safety`` (0.9), ``ifactor`` (10, largest growth
            per step), ``dfactor`` (0.2, largest shrink per step), ``pi_beta`` (PI controller β).
        recorder, monitor: gflow's recorder and run monitor.
        norm: optional error norm on the scaled error (default :func:`rms_norm`).
        checkpoint: optional :class:`gflow.solve.checkpoint.Checkpointer`.
        until: optional ``until(engine) -> bool``, called after every accepted adaptive step before t1; True
            stops the run there (``engine.t``, ``engine.y``, the next output index ``engine.k`` and the proposed
            step ``engine.h`` say where): a hand-over to another method (:mod:`gflow.solve.expint`).
    """

    def __init__(self, field, grid: np.ndarray, method: str, *, rtol: float = 1e-7, atol=1e-9,
                 step: float | None = None, options: dict | None = None, recorder: Recorder, monitor: Monitor,
                 norm: Norm | None = None, checkpoint=None, until=None):
        if method not in SCHEMES:
            raise ValueError(f"unknown native method {method!r}; expected one of {METHODS}")
        self.field = field
        self.grid = np.asarray(grid, dtype=np.float64)
        self.t1 = float(self.grid[-1])
        self.scheme = sc = SCHEMES[method]
        self.adaptive = sc.err_order > 0
        self.rtol = float(rtol)
        self.step = step
        opts = dict(options or {})
        self.first_step = opts.get("first_step")
        self.max_step = float(opts.get("max_step", math.inf))
        self.min_step = float(opts.get("min_step", 0.0))
        self.safety = float(opts.get("safety", 0.9))
        self.ifactor = float(opts.get("ifactor", 10.0))
        self.dfactor = float(opts.get("dfactor", 0.2))
        self.beta = float(opts.get("pi_beta", sc.pi_beta))
        for name, ok, want in (("safety", 0 < self.safety <= 1, "in (0, 1]"), ("ifactor", self.ifactor >= 1, ">= 1"),
                               ("dfactor", 0 < self.dfactor <= 1, "in (0, 1]"),
                               ("max_step", self.max_step > 0, "> 0"), ("min_step", self.min_step >= 0, ">= 0"),
                               ("pi_beta", 0 <= self.beta <= 0.2, "in [0, 0.2]"),
                               ("first_step", self.first_step is None or self.first_step > 0, "> 0")):
            if not ok:
                raise ValueError(f"option {name!r} must be {want}, got {opts.get(name)}")
        self.recorder = recorder
        self.monitor = monitor
        self.norm = norm or rms_norm
        self.ckpt = checkpoint
        self.until = until
        self.shape = tuple(field.state_shape)
        y0 = field.initial_state()
        self.dtype, self.device = y0.dtype, y0.device
        self.N = N = y0.numel()
        kw = {"dtype": self.dtype, "device": self.device}
        n_rows = max(len(sc.A) + (1 if sc.fsal and len(sc.A) == sc.stages else 0), sc.stages + int(sc.fsal))
        # Stage j is stored in row slot[j] of K.  DOP853 stores K0 after K1..K4, so that every linear combination
        # it forms (stages, solution, error, dense output) reads one contiguous block of rows of K that holds
        # few zero coefficients: the combinations are memory-bound and dominate the overhead at small n.
        self.slot = list(_SLOTS.get(method, range(n_rows)))
        self.K = torch.zeros((n_rows, N), **kw)
        self._rows = [self.K[self.slot[j]] for j in range(n_rows)]  # stage j's row (a view)
        # A stage state only feeds the field, which may read only the leading entries of the state (feature
        # space: H, not A = ∫P): the stage combinations then form only those (half the traffic there).
        reads = getattr(field, "rhs_reads", None)
        self.Nr = Nr = N if reads is None else max(1, min(N, int(reads)))
        self._comb = [None] + [self._plan(sc.A[j][:j], kw, Nr) for j in range(1, len(sc.A))]
        self._comb_b = self._plan(sc.b, kw, N)
        self._bde = None  # DOP853: rows d, e5, e3 of a step (below)
        self.y = y0.reshape(-1).clone()
        self.y_new = torch.empty(N, **kw)
        self.y_stage = torch.zeros(N, **kw)  # entries past Nr are never read by the field
        self._ys_shaped = self.y_stage.view(self.shape)
        self._rows_shaped = [r.view(self.shape) for r in self._rows]
        if self.adaptive:
            self.atol = atol.to(**kw).reshape(-1) if isinstance(atol, torch.Tensor) else float(atol)
            self.scale = torch.empty(N, **kw)
            if not self.rtol > 0:
                raise ValueError(f"rtol must be > 0, got {rtol}")
            self._a = self.atol / self.rtol
            self.absy, self.absy_new = torch.empty(N, **kw), torch.empty(N, **kw)  # a + |y|, a + |y₁|
            self._sums = _native.Sums()  # two host-side sums the native error and stiffness passes write
            if method == "dopri5":
                self._comb_err = self._block(T.DOPRI5_E, kw)
                self._err = torch.empty(N, **kw)
                self._comb_P = self._block(np.asarray(T.DOPRI5_P).T, kw, matrix=True)  # (4, k) @ (k, N)
            else:
                # the increment d = Σ b_l K_l and the 5th- and 3rd-order error vectors e5 = Σ E5_l K_l,
                # e3 = Σ E3_l K_l read the same stages (not the FSAL one): one (3, k) @ (k, N) product forms all
                # three, reading K once (was two matrix–vector products and three axpys: 365 → 205 µs per step
                # at Experiment-1 sizes, N = 40 960, on an Intel Xeon)
                s12 = T.DOP853_N_STAGES
                self._comb_bde = self._block(np.stack([np.asarray(T.DOP853_B)[:s12], np.asarray(T.DOP853_E5)[:s12],
                                                       np.asarray(T.DOP853_E3)[:s12]]), kw, matrix=True)
                self._bde = torch.empty((3, N), **kw)  # rows d, e5, e3
                self._comb_D = self._block(T.DOP853_D, kw, matrix=True)
                self.F = torch.empty((7, N), **kw)
        self._lean = self._lean_stages()
        # ∫η by a positive-weight rule (JumpQuadrature) where the scheme's weights include negative ones: the
        # samples are the stages the solution reads (whose integrands are evaluated whether or not the lean stages
        # skip theirs: the same run either way) and the new point (c = 1)
        self._jump = None
        jump_idx = getattr(field, "jump_integrals", lambda: None)()
        if jump_idx is not None and self.adaptive and min(sc.b) < 0.0:
            sampled = [j for j in range(sc.stages) if j not in _unread_stages(sc)]
            rule = JumpQuadrature([sc.c[j] for j in sampled] + [1.0])
            self._jump = (jump_idx.to(self.device), [self.slot[j] for j in sampled], rule)
            w = self._jump_weights(rule.full, n_rows)
            self._jump += (torch.tensor(w[:-1], **kw), float(w[-1]))
        # loop state (what a checkpoint holds)
        self.t = 0.0
        self.k = 1  # next output index
        self.i = 0  # fixed-step: index into the fine grid
        self.h = math.nan
        self.err_old = 1e-4
        self.rejected = False
        # the spectral-radius estimates (see _stiff_safe): Hairer's from the last accepted step, and a power
        # iteration's (its unit vector v over the first Nr entries; None until the first refresh)
        self.rho_h, self.rho_p, self._v = 0.0, 0.0, None
        self._rho_t = math.nan  # the time of the last power step (a retried step does not repeat it)
        self._rho_age = 0  # accepted steps since the last power step
        self._stiff_limit = STIFF_LIMIT.get(method, math.inf)
        #: the monitor's evaluation count where the loop state was last complete (a step taken or rejected, the first
        #: step chosen, a power step kept): a stopped run's checkpoint holds it, since its resumed run repeats the
        #: evaluations after it (rk4 stopped inside a step counted that step's first stages twice)
        self._evals_kept = 0

    def _plan(self, coefs, kw, width: int):
        """How to form y + h Σ_l coefs[l] K_l: a chain of axpys over the few nonzero rows (``("axpy", [(row,
        coef), ...])``), or one ``addmv`` over the contiguous block of rows holding them (``("mv", Kᵀ, a)``),
        whichever reads less: a block read costs a fixed ~2 rows more than an axpy chain, and DOP853's early
        stages have blocks with zero rows in them."""
        nz = [(self._rows[j][:width], float(c)) for j, c in enumerate(coefs) if c != 0.0]
        if len(nz) <= _AXPY_MAX:
            return ("axpy", nz)
        KT, a = self._block(coefs, kw)
        return ("mv", KT[:width], a)

    def _comb_into(self, plan, y: torch.Tensor, h: float, out: torch.Tensor) -> torch.Tensor:
        """out = y + h Σ_l coefs[l] K_l by ``plan`` (see :meth:`_plan`)."""
        if plan[0] == "mv":
            return torch.addmv(y, plan[1], plan[2], alpha=h, out=out)
        terms = plan[1]
        if not terms:
            return out.copy_(y)
        row, c = terms[0]
        torch.add(y, row, alpha=h * c, out=out)
        for row, c in terms[1:]:
            out.add_(row, alpha=h * c)
        return out

    def _block(self, coefs, kw, matrix: bool = False):
        """(Kᵀ block (N, k), coefficients (k,)) — or (K block (k, N), (r, k)) with ``matrix`` — such that the
        combination Σ_l coefs[l] K_l (one per row of coefs) reads only rows lo..hi−1 of K."""
        rows = np.atleast_2d(np.asarray(coefs, dtype=np.float64))
        lo, hi, c = _block_coefficients(tuple(self.slot), self.K.shape[0], tuple(map(tuple, rows.tolist())),
                                        kw["dtype"], torch.device(kw["device"]))
        if matrix:
            return self.K[lo:hi], c
        return self.K[lo:hi].T, c[0]

    # ----------------------------------------------------------------------------------------------------
    # building blocks

    def _f(self, t: float, y: torch.Tensor, out: torch.Tensor) -> None:
        """out = f(y) (flat buffers, or already in the field's shape)."""
        self._f_shaped(t, y.view(self.shape), out.view(self.shape))

    def _f_shaped(self, t: float, y: torch.Tensor, out: torch.Tensor, lean: bool = False) -> None:
        """:meth:`_f` on views already in the field's shape (the stage loop's); ``lean``: a stage whose entries
        beyond the core nothing reads (:meth:`_lean_stages`), where the field's ``rhs_core_into`` skips the
        running integrals' integrands."""
        self.monitor.on_eval()
        parts = (self.field.rhs_core_into if lean else self.field.rhs_into)(y, out)
        # the probe (L̇, or Σ Ḣ) reduces the whole derivative: one scalar tells whether any entry is NaN or inf
        if not math.isfinite(float(parts.probe)):
            self.monitor.raise_nonfinite(t, y, self.field)  # (σ or σ′ may be the cause: flow_activation_fault)

    def _lean_stages(self) -> frozenset:
        """The stages j ≥ 1 whose derivative is read only over the core (the first ``Nr`` entries): weight 0 in the
        solution and in the dense output, not the FSAL evaluation — where the field can skip the rest
        (``rhs_core_into``: an :class:`~gflow.fields.ObservedField`'s integrands) and the error norm ignores it
        (the integrals' atol is ∞, so a zero there counts nothing).  DOP853: stages 2–5; dopri5: stage 2."""
        sc, core = self.scheme, getattr(self.field, "N", self.N)  # (ObservedField.N: the core's entries)
        if getattr(self.field, "rhs_core_into", None) is None or not self.adaptive or self.Nr > core or not (
                isinstance(self.atol, torch.Tensor) and bool(torch.isinf(self.atol[core:]).all())):
            return frozenset()
        return _unread_stages(sc)

    def _stages(self, t: float, h: float, first: int, last: int) -> None:
        """K_j = f(t + c_j h, y + h Σ_{l<j} A_jl K_l) for j in [first, last)."""
        comb, rows, c, ys, f = self._comb, self._rows_shaped, self.scheme.c, self._ys_shaped, self._f_shaped
        y, ys_r = self.y[:self.Nr], self.y_stage[:self.Nr]
        lean = self._lean
        for j in range(first, last):
            self._comb_into(comb[j], y, h, ys_r)
            f(t + c[j] * h, ys, rows[j], j in lean)

    def _scaled_norm(self, v: torch.Tensor, y: torch.Tensor) -> float:
        """‖v / (atol + rtol|y|)‖ (for the initial-step heuristic); v is overwritten."""
        torch.abs(y, out=self.scale)
        self.scale.mul_(self.rtol).add_(self.atol)
        return float(self.norm(v.div_(self.scale)))

    def _initial_step(self) -> float:
        """Hairer's heuristic (Solving ODEs I, §II.4): h with h^{q+1}·max(‖f‖, ‖f′‖) ≈ 0.01 (one evaluation)."""
        y, f0, tmp = self.y, self._rows[0], self.y_stage
        d0 = self._scaled_norm(tmp.copy_(y), y)
        d1 = self._scaled_norm(tmp.copy_(f0), y)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, self.max_step, self.t1)
        if not h0 > 0:  # d0/d1 underflows on extreme (finite) data, e.g. y × 1e150: ZeroDivisionError below
            self.monitor.raise_collapse(h0, 0.0)
        torch.add(y, f0, alpha=h0, out=self.y_new)
        f1 = self._rows[1]
        self._f(h0, self.y_new, f1)
        f1.sub_(f0)
        d2 = self._scaled_norm(f1, y) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (self.scheme.err_order + 1))
        h = min(100 * h0, h1, self.max_step, self.t1)
        if not h > 0:  # (d2 overflows: h1 = 0, or NaN)
            self.monitor.raise_collapse(h, 0.0)
        # not below 10× the Monitor's collapse threshold (1e-12 near t = 0): components that start at exactly 0 (A = ∫P
        # in feature space) are scaled by atol alone, and at atol = 1e-20 the heuristic gave 4.8e-13 — a "collapse"
        # at the first step, blamed on the data; a step too long for the flow is rejected and shrunk as any other
        return min(max(h, _MIN_FIRST_STEP * self.monitor.time_unit), self.max_step, self.t1)

    def _abs_plus_a(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out = |y| + atol/rtol."""
        return torch.abs(y, out=out).add_(self._a)

    def _error(self, h: float) -> float:
        """The error norm of the step just taken (≤ 1: accept); for DOP853, ``_bde[1:]`` holds (e5, e3) on
        entry."""
        # sc = atol + rtol·max(|y|, |y₁|) = rtol·max(a + |y|, a + |y₁|) with a = atol/rtol; a + |y| is kept from
        # the step that produced y, and the factor rtol moves out of the default (homogeneous) RMS norm
        sc = self.scale
        unit = 1.0 / self.rtol if self.norm is rms_norm else 1.0
        if self._bde is not None and self.norm is rms_norm and _native.err853_into(
                self.absy, self.y_new, self._bde[1], self._bde[2], self._a, self.absy_new, self._sums):
            # (float64 CPU, DOP853: a + |y₁|, the scale and both rows' sums of squares in one pass, read without a
            # device sync: see _stiffness)
            e5, e3 = (math.sqrt(v) * (unit / math.sqrt(self.N)) for v in self._sums.values())
        else:
            e5, e3 = self._error_torch(h, sc, unit)
            if e5 is None:
                return e3  # (dopri5: the error norm itself)
        deno = e5 * e5 + 0.01 * e3 * e3
        if deno <= 0.0:  # both zero, or their squares underflow (huge rtol): Hairer's guard
            deno = 1.0
        return abs(h) * e5 * e5 / math.sqrt(deno)

    def _error_torch(self, h: float, sc: torch.Tensor, unit: float) -> tuple[float | None, float]:
        """:meth:`_error` by torch's passes: (e5, e3) for DOP853, (None, the error norm) for dopri5."""
        self._abs_plus_a(self.y_new, self.absy_new)
        torch.maximum(self.absy, self.absy_new, out=sc)
        if unit == 1.0:
            sc.mul_(self.rtol)
        if self.scheme.name == "dopri5":
            KT, e = self._comb_err
            err = torch.mv(KT, e, out=self._err)
            return None, abs(h) * unit * float(self.norm(err.div_(sc)))
        # DOP853: err = |h| e5² / sqrt(e5² + 0.01 e3²) (Hairer's combined 5th/3rd-order estimate)
        err = self._bde[1:].div_(sc)
        if self.norm is rms_norm:  # both rows' RMS in one reduction
            e5, e3 = (torch.linalg.vector_norm(err, dim=1) * (unit / math.sqrt(self.N))).tolist()
        else:
            e5, e3 = (unit * v for v in torch.stack([self.norm(err[0]), self.norm(err[1])]).tolist())  # one sync
        return e5, e3

    def _dense(self, t: float, h: float, times: list[float]) -> Iterator[tuple[slice, torch.Tensor]]:
        """States at ``times`` inside the step (t, t+h] just taken, from the dense output, in order: (the slice of
        ``times``, their states as the rows of one (k, N) tensor), in chunks of at most :data:`DENSE_CHUNK` entries
        (all at once, a step holding 40 output times of a dense ``saveat`` at (8192, 600) allocated 40 states of
        79 MB each); the recorder takes each chunk in one call (:meth:`Recorder.record_many`)."""
        sc, y0 = self.scheme, self.y
        x = (np.asarray(times) - t) / h
        kw = {"dtype": self.dtype, "device": self.device}
        if sc.name == "dopri5":
            # y(t + xh) = y0 + h Σ_j (Σ_q P_jq x^{q+1}) K_j: (n_out, 4) @ (4, k) @ (k, N) per chunk
            Kb, P = self._comb_P
            W = torch.tensor(np.stack([x, x**2, x**3, x**4], axis=1), **kw) @ P
            F, alpha = Kb, h
        else:
            # DOP853: 3 extra stages, then the 7th-order interpolant in Hairer's alternating Horner form
            self._stages(t, h, sc.stages + 1, T.DOP853_N_STAGES_EXTENDED)
            F, y1, rows = self.F, self.y_new, self._rows
            f_old, f_new = rows[0], rows[sc.stages]
            torch.sub(y1, y0, out=F[0])
            torch.add(F[0], f_old, alpha=h, out=F[1]).sub_(F[0], alpha=2.0)  # h f_old − Δy
            torch.add(f_new, f_old, out=F[2]).mul_(-h).add_(F[0], alpha=2.0)  # 2Δy − h (f_new + f_old)
            Kb, D = self._comb_D
            torch.mm(D, Kb, out=F[3:]).mul_(h)
            Wn = np.zeros((len(times), 7))  # the Horner recursion applied to unit vectors: weights of F_0..F_6
            for j, idx in enumerate(range(6, -1, -1)):
                Wn[:, idx] += 1.0
                Wn *= (x if j % 2 == 0 else 1.0 - x)[:, None]
            W, alpha = torch.tensor(Wn, **kw), 1.0
        for rows in _row_chunks(len(times), self.N, DENSE_CHUNK):
            Wc = W[rows]
            yield rows, torch.addmm(y0.expand(Wc.shape[0], self.N), Wc, F, alpha=alpha)

    def _jump_integral(self, h: float, samples: torch.Tensor, f_new: torch.Tensor):
        """Set ∫η's entries of the new point by :class:`JumpQuadrature` from the stages' ``samples`` (K's columns at
        those entries) and the new point's derivative ``f_new``; returns what :meth:`_jump_dense` needs."""
        idx, _, _, w, w_new = self._jump
        at_new = f_new[idx]
        self.y_new[idx] = self.y[idx] + h * (w @ samples + w_new * at_new)
        return samples, at_new

    def _jump_weights(self, u: np.ndarray, n_rows: int) -> np.ndarray:
        """:class:`JumpQuadrature`'s weights ``u`` (…, samples + 1) laid out on K's ``n_rows`` row slots, the new
        point's weight last: (…, n_rows + 1)."""
        w = np.zeros((*u.shape[:-1], n_rows + 1))
        w[..., self._jump[1]] = u[..., :-1]
        w[..., -1] = u[..., -1]
        return w

    def _jump_dense(self, h: float, theta: np.ndarray, samples: torch.Tensor, at_new: torch.Tensor) -> torch.Tensor:
        """∫η's entries of the dense-output states at t + θh (one row per θ): the same rule over [0, θ]."""
        w = self._jump_weights(self._jump[2].weights(theta), samples.shape[0])
        idx = self._jump[0]
        values = torch.cat([samples, at_new[None]])
        return self.y[idx] + h * (torch.tensor(w, dtype=self.dtype, device=self.device) @ values)

    def _stiffness(self, f_new: torch.Tensor) -> float:
        """ρ ≈ ‖f(y₁) − f(Y)‖ / ‖y₁ − Y‖ with Y the last stage's state (c = 1, in ``y_stage``; read before
        DOP853's dense output's extra stages overwrite it): a Rayleigh-type estimate of the spectral radius of the
        Jacobian (Hairer's stiffness detection in DOP853 and DOPRI5), never above it for a symmetric Jacobian and
        close to it where the step is stability-limited (y₁ − Y is then dominated by the stiff modes).  Over the
        entries the field reads (``Nr``); 0 where y₁ = Y.  One device sync (it runs every accepted step)."""
        Nr, last = self.Nr, self._rows[self.scheme.stages - 1]
        if _native.dist2_into(f_new[:Nr], last[:Nr], self.y_new[:Nr], self.y_stage[:Nr], self._sums):
            num, den = (math.sqrt(v) for v in self._sums.values())  # (float64 CPU: one pass, no device sync)
        else:
            num, den = torch.stack([torch.dist(f_new[:Nr], last[:Nr]),
                                    torch.dist(self.y_new[:Nr], self.y_stage[:Nr])]).tolist()
        if not den > 0.0:
            return 0.0
        rho = num / den
        return rho if math.isfinite(rho) else 0.0

    def _power_step(self) -> None:
        """Power iteration on the Jacobian J at the step's start y (f(y) = K₀), continued across steps:
        w = (f(y + εv) − f(y))/ε ≈ Jv, ρ_p = ‖w‖, v ← w/‖w‖, one evaluation each (into stage row 1, which the step
        overwrites).  The first call starts from a fixed pseudo-random v (every mode present: f(y) was tried, and
        once the fast modes had decayed it found ρ = 11 for λ_max = 268) and iterates until ρ_p settles (2 %, at
        most :data:`_POWER_START` evaluations); later calls take one iteration.  The Jacobian changes slowly along
        the flow, so ρ_p tracks its spectral radius (J = −ℓ∇²L is symmetric in weight space), including stiff
        modes that the step's own data do not show because their amplitude is at rounding level.

        The iterate and ρ_p are committed at the end only: a run stopped inside the iteration (Ctrl-C, a time
        budget: an evaluation raises) checkpointed a half-finished one, and its resumed run took fewer iterations
        than the uninterrupted run (55 against 59 steps on a stiff linear problem)."""
        Nr, f0, w = self.Nr, self._rows[0][:self.Nr], self._rows[1][:self.Nr]
        first = self._v is None
        if first:
            g = torch.Generator(device="cpu").manual_seed(0)
            v = torch.randn(Nr, generator=g, dtype=torch.float64).to(self.y)
        else:
            v = self._v.clone()
        rho = self.rho_p
        eps = math.sqrt(torch.finfo(self.dtype).eps) * max(1.0, float(torch.linalg.vector_norm(self.y[:Nr])))
        for _ in range(_POWER_START if first else 1):
            nv = float(torch.linalg.vector_norm(v))
            if not (nv > 0.0 and math.isfinite(nv)):
                v.fill_(1.0)
                nv = math.sqrt(Nr)
            torch.add(self.y[:Nr], v, alpha=eps / nv, out=self.y_stage[:Nr])
            # (only w's core is read; stage 1 overwrites the row)
            self._f_shaped(self.t, self._ys_shaped, self._rows_shaped[1], 1 in self._lean)
            w.sub_(f0)
            nw = float(torch.linalg.vector_norm(w))
            old, rho = rho, (nw / eps if math.isfinite(nw) else 0.0)
            if nw > 0.0 and math.isfinite(nw):
                v.copy_(w)
            if abs(rho - old) <= 0.02 * rho:
                break
        self._v, self.rho_p = v, rho

    def _stiff_safe(self, t: float, h: float) -> float:
        """h, shortened to h·ρ ≤ :data:`STIFF_LIMIT` (DOP853: 5, dopri5: 3), inside the stability region.

        ρ = max(ρ_h, ρ_p): Hairer's estimate of the last step (free) and a power iteration's (:meth:`_power_step`,
        one evaluation; up to :data:`_POWER_START` the first time) — both Rayleigh-type lower bounds of the spectral
        radius.  ρ_p is refreshed where h·ρ exceeds a fifth of the limit: in every step that holds an output time
        (DOP853's dense output amplifies the stiff modes beyond hλ = −5, :data:`DENSE_STIFF_LIMIT`; the first
        such step starts the iteration whatever h·ρ), and every :data:`_POWER_EVERY` accepted steps otherwise (a
        run that saves only t1 starts it only once h·ρ_h exceeds a fifth of the limit: a short, non-stiff run
        pays nothing).  Hairer's alone misses a stiff mode whose amplitude is still at rounding level: the step then
        runs past the stability boundary and the mode grows by |R(hλ)| per step until it shows (linear σ,
        λ_max = 8.65: steps at hλ = 6.6–9.2, outputs 1e5× rtol off).

        Why every step, not only those with output times: once the residual has converged, the steps sit at
        the stability limit and the controller lets them cross it until the error estimate sees the stiff modes
        grow, so the error of r = f − y settles at the tolerance's level — far above r itself.  Experiment 1
        (n = d = 20, m = 1024, t1 = 500, default tolerances) saving only t1 returned L(t1) = 3e-18 for the flow's
        3.3e-22 (9 000× off, reported as success), while the same run saving 100 times was within 7e-5: the
        result depended on the output grid.  Guarded, the t1-only run is within 5e-5 for 1.10× the
        evaluations."""
        end = self.t1 if t + 1.01 * h >= self.t1 else t + h  # (the loop lands the last step on t1)
        inner = self.k < len(self.grid) and self.grid[self.k] < end - 1e-14 * max(1.0, abs(end))
        rho = max(self.rho_h, self.rho_p)
        if self._rho_t != t and (inner or self._rho_age >= _POWER_EVERY) and (
                h * rho > 0.2 * self._stiff_limit or (inner and self._v is None)):
            self._power_step()
            self._rho_t, self._rho_age = t, 0
            self._evals_kept = self.monitor.n_f_evals
            rho = max(self.rho_h, self.rho_p)
        return min(h, self._stiff_limit / rho) if rho > 0.0 else h

    def _record(self, t: float, y: torch.Tensor) -> None:
        self.recorder.record(t, y.view(self.shape))

    def _due_outputs(self, t_new: float) -> list[float]:
        g, k, out = self.grid, self.k, []
        tol = 1e-14 * max(self.monitor.time_unit, abs(t_new))
        while k < len(g) and g[k] <= t_new + tol:
            out.append(float(g[k]))
            k += 1
        return out

    # ----------------------------------------------------------------------------------------------------
    # checkpoint state

    def state_dict(self) -> dict:
        """The loop state: resuming from it repeats exactly the operations of an uninterrupted run."""
        return {"method": self.scheme.name, "t": self.t, "k": self.k, "i": self.i, "h": self.h,
                "err_old": self.err_old, "rejected": self.rejected, "rho": (self.rho_h, self.rho_p),
                "rho_v": None if self._v is None else self._v.clone(), "rho_t": self._rho_t, "rho_age": self._rho_age,
                "y": self.y.clone(),
                "f0": self._rows[0].clone() if self.adaptive else None}

    def load_state_dict(self, s: dict) -> None:
        if s["method"] != self.scheme.name:
            raise ValueError(f"checkpoint holds a {s['method']!r} run, not {self.scheme.name!r}")
        self.t, self.k, self.i, self.h = float(s["t"]), int(s["k"]), int(s["i"]), float(s["h"])
        self.err_old, self.rejected = float(s["err_old"]), bool(s["rejected"])
        # (checkpoints written before the estimates existed hold none)
        self.rho_h, self.rho_p = (float(v) for v in s.get("rho", (0.0, 0.0)))
        v = s.get("rho_v")
        self._v = None if v is None else v.to(self.y).clone()
        self._rho_t = float(s.get("rho_t", math.nan))
        self._rho_age = int(s.get("rho_age", 0))
        self.y.copy_(s["y"].reshape(-1))
        if self.adaptive:
            self._rows[0].copy_(s["f0"])

    # ----------------------------------------------------------------------------------------------------
    # loops

    def run(self, resume: dict | None = None) -> None:
        """Integrate from 0 (or the resumed state) to t1; raises :class:`Abort` on failure."""
        if resume is not None:
            self.load_state_dict(resume)
            # the checkpoint's state is the last accepted one (checkpoints follow an accepted step, or the failed
            # step, whose result is not kept): a failed run keeps it as its end, a resumed one too (a diverged
            # Euler run repeated by the same call ended at t = 9.6 instead of 10.2)
            self.monitor.partial = (self.t, self.y.view(self.shape))
        else:
            self._record(0.0, self.y.clone())
        self._evals_kept = self.monitor.n_f_evals
        try:
            if resume is not None:
                self.monitor.check_resumed(not self.rejected)
            if self.adaptive:
                self._run_adaptive(resume is not None)
            else:
                self._run_fixed()
            if self.ckpt is not None and self.ckpt.keep:  # the finished run, for keep_checkpoint=True
                self.ckpt.save(self.state_dict())
        except Abort as exc:
            if self.ckpt is not None and exc.status not in ("nonfinite",):
                done, self.monitor.n_f_evals = self.monitor.n_f_evals, self._evals_kept
                try:
                    self.ckpt.save(self.state_dict())
                finally:
                    self.monitor.n_f_evals = done
            raise

    def _after_accept(self, t0: float, dt: float) -> None:
        m = self.monitor
        m.partial = (self.t, self.y.view(self.shape))
        self._evals_kept = m.n_f_evals
        # the step is counted before the checkpoint: a checkpoint taken first held one accepted step too few, and a
        # run killed right after it (SIGKILL: no final checkpoint) resumed with n_steps one short
        m.on_step(t0, dt, True)
        if self.ckpt is not None and self.ckpt.due():
            self.ckpt.save(self.state_dict())

    def _run_fixed(self) -> None:
        from .ode import FixedGrid

        fine = FixedGrid(self.grid, float(self.step))
        s = self.scheme.stages
        while self.i < len(fine) - 1:
            t0, t1 = float(fine[self.i]), float(fine[self.i + 1])
            h = t1 - t0
            self._f(t0, self.y, self._rows[0])
            self._stages(t0, h, 1, s)
            self._comb_into(self._comb_b, self.y, h, self.y_new)
            outs = self._due_outputs(t1)
            for tk in outs:
                self._record(tk, self.y_new.clone())
            self.y, self.y_new = self.y_new, self.y
            self.t, self.i, self.k = t1, self.i + 1, self.k + len(outs)
            self._after_accept(t0, h)

    def _run_adaptive(self, resumed: bool) -> None:
        sc, m = self.scheme, self.monitor
        s = sc.stages
        m.landing_time = self.t1
        expo = 1.0 / (sc.err_order + 1) - 0.75 * self.beta
        # a run stopped before its first step was chosen (a time budget that ran out in the first evaluations) left
        # h = NaN in its checkpoint: the resumed run stopped as "nonfinite" at once, and kept doing so
        if not resumed or math.isnan(self.h):
            self._f(0.0, self.y, self._rows[0])
            self.h = float(self.first_step) if self.first_step is not None else self._initial_step()
            self._evals_kept = m.n_f_evals
        self._abs_plus_a(self.y, self.absy)
        while self.t < self.t1:
            t, h = self.t, min(self.h, self.max_step)
            h = self._stiff_safe(t, h)
            if h < self.min_step:
                raise Abort("step_size_collapse", f"the step size fell below min_step={self.min_step:g} at "
                            f"t = {t:.6g}; {m.hint}")
            last = t + 1.01 * h >= self.t1
            if last:
                h = self.t1 - t
            self._stages(t, h, 1, s)
            if self._bde is None:
                self._comb_into(self._comb_b, self.y, h, self.y_new)
            else:  # DOP853: the increment d and the error vectors e5, e3 in one product
                Kb, C = self._comb_bde
                torch.mm(C, Kb, out=self._bde)
                torch.add(self.y, self._bde[0], alpha=h, out=self.y_new)
            t_new = self.t1 if last else t + h
            if self._bde is None:  # dopri5's error estimate reads the new point's derivative (FSAL)
                self._f(t_new, self.y_new, self._rows[s])
            err = self._error(h)
            if math.isnan(err):
                m.raise_nonfinite(t)
            fac11 = err ** expo if math.isfinite(err) else math.inf
            if err <= 1.0:
                fac = fac11 / self.err_old ** self.beta
                fac = max(1.0 / self.ifactor, min(1.0 / self.dfactor, fac / self.safety))
                h_new = h / fac
                if self.rejected:
                    h_new = min(h_new, h)
                outs = self._due_outputs(t_new)
                inner = [tk for tk in outs if tk < t_new]
                # (the stages' samples of ∫η's integrand, read before the new point's evaluation overwrites K₀)
                jump = None if self._jump is None else self.K[:, self._jump[0]]
                if self._bde is not None and not inner:
                    # DOP853 does not need the new point's derivative for its error estimate: it is evaluated for
                    # accepted steps only, straight into the next step's first stage (no copy of a stage row)
                    self._f(t_new, self.y_new, self._rows[0])
                    self.rho_h = self._stiffness(self._rows[0])
                    if jump is not None:
                        self._jump_integral(h, jump, self._rows[0])
                else:
                    if self._bde is not None:  # the dense output reads it as the last stage, and K₀ as is
                        self._f(t_new, self.y_new, self._rows[s])
                    self.rho_h = self._stiffness(self._rows[s])  # (before the dense output's stages overwrite Y)
                    if jump is not None:
                        jump = self._jump_integral(h, jump, self._rows[s])
                        if inner:
                            jump = self._jump_dense(h, (np.asarray(inner) - t) / h, *jump)
                    for rows, ys in (self._dense(t, h, inner) if inner else ()):
                        if jump is not None:
                            ys[:, self._jump[0]] = jump[rows]
                        self.recorder.record_many(inner[rows], ys.view((ys.shape[0],) + tuple(self.shape)))
                    self._rows[0].copy_(self._rows[s])
                    jump = None
                if len(inner) < len(outs):
                    self._record(t_new, self.y_new.clone())
                self.y, self.y_new = self.y_new, self.y
                self.absy, self.absy_new = self.absy_new, self.absy
                self.t, self.k, self.h = t_new, self.k + len(outs), h_new
                self.err_old, self.rejected = max(err, 1e-4), False
                self._rho_age += 1
                self._after_accept(t, h)
                if self.until is not None and self.t < self.t1 and self.until(self):
                    return
            else:
                self.h = h / min(1.0 / self.dfactor, fac11 / self.safety)
                self.rejected = True
                self._evals_kept = m.n_f_evals
                m.on_step(t, h, False)


def integrate(field, grid: np.ndarray, method: str, *, rtol: float, atol, step: float | None, options: dict,
              recorder: Recorder, monitor: Monitor, norm: Norm | None = None, checkpoint=None,
              resume: dict | None = None) -> None:
    """Run the native engine (see :class:`Engine`); the entry point used by :func:`gflow.simulate`."""
    Engine(field, grid, method, rtol=rtol, atol=atol, step=step, options=options, recorder=recorder,
           monitor=monitor, norm=norm, checkpoint=checkpoint).run(resume)
