"""Recording observables at output times, and the run monitor that stops runaway solves.

Both are shared by the ODE backends and gradient descent, so every solver produces the same Solution and
fails the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque

import numpy as np
import torch

from .._validate import check_positive_int, describe
from ..fields.base import AbstractField, column_major, scratch
from ..model import quantities as Q
from ..model.activations import sigma_absdiff_into
from ..model.network import Network, _physical_memory
from ..solution import Interrupted


class Abort(Exception):
    """Raised inside a solve to stop it with a status; the partial trajectory is kept."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy().copy()


EIG_MAX_N = 2000  # λ(M) at saved times for n up to this (an n×n eigenproblem per saved time)


def _global_inf_abs(act) -> float:
    """inf over ℝ of |σ′|: a fine grid on [−50, 50] plus far-out points (softplus′ and tanh′ vanish at −∞)."""
    from ..model.activations import _numeric_inf_abs

    far = torch.tensor([-1e6, -1e3, 1e3, 1e6], dtype=torch.float64)
    v = min(_numeric_inf_abs(act.dsigma, -math.inf, math.inf), float(act.dsigma(far).abs().min()))
    return 0.0 if v < 1e-12 else v


#: a loss beyond this factor times L₀ at a saved time ends gradient descent and fixed-step flow solves as "diverged"
#: (before it overflows: a loss growing 1e3 → 1.8e165 ended as "success", and certify said OK)
DIVERGE_FACTOR = 1e10


#: features beyond this size may overflow σ or σ′ (exp-type σ) without blame on the activation (activation_fault)
ACTIVATION_OVERFLOW_H = 100.0


def activation_fault(net, H: torch.Tensor, where: str, instead: str, s: torch.Tensor | None = None,
                     ds: torch.Tensor | None = None) -> str | None:
    """The message that blames the activation where σ or σ′ (``s``, ``ds``: computed here if not given) is
    non-finite at the finite features ``H``, else None: a NaN σ′ at a stable step was blamed on the step (GD: "use
    a smaller step") or on the data scale (gf.simulate). ``where``: "at step 3 (t = 0.15)"; ``instead``: what did
    not make the run non-finite."""
    if not bool(torch.isfinite(H).all()):
        return None
    if s is None:
        s, ds = net.activation.both(H)
    if bool(torch.isfinite(s).all() and torch.isfinite(ds).all()):
        return None
    # an overflow at huge features is the step's or the scale's doing (σ = sinh at |H| = 3e33 from an unstable rk4
    # step was blamed on σ, a review): σ's fault only where it is NaN, or infinite at moderate features
    moderate = H.abs() <= ACTIVATION_OVERFLOW_H
    if not bool((torch.isnan(s) | torch.isnan(ds)).any() or ((torch.isinf(s) | torch.isinf(ds)) & moderate).any()):
        return None
    return (f"σ or σ′ of the activation {net.activation.name!r} returned non-finite values at finite features "
            f"(|H| up to {float(H.abs().max()):.3g}) {where}: the activation, not {instead}, made the run non-finite; "
            "check its sigma/dsigma there")


def flow_activation_fault(field: AbstractField, monitor: "Monitor", recorder: "Recorder") -> str | None:
    """After a flow solve turned non-finite (its failure path only): the message of :func:`activation_fault` for
    the first of the states at hand — the stage whose derivative was non-finite (:meth:`Monitor.raise_nonfinite`),
    the state whose loss or σ′ the recorder refused, the last accepted state (of ``field``) — whose features are
    finite and whose σ or σ′ is not; else None (gf.simulate told a NaN of σ at finite features to "check the data
    scale")."""
    partial = None if monitor.partial is None else (*monitor.partial, field)
    return states_activation_fault((monitor.nonfinite_state, recorder.nonfinite_state, partial))


def states_activation_fault(states) -> str | None:
    """:func:`flow_activation_fault` over ``states``: (t, state, of) or None each, ``of`` the state's field or the
    network whose features H the state is."""
    for got in states:
        if got is None or got[2] is None:
            continue
        t, state, of = got
        try:
            H, net = (state, of) if isinstance(of, Network) else (of.train_features(state.reshape(of.state_shape)),
                                                                   of.problem.net)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):  # (a batch's field: nothing to say)
            continue
        fault = activation_fault(net, H, f"near t = {float(t):.6g}", "the solver or the data scale")
        if fault is not None:
            return fault
    return None


def float64_advice(dtype: torch.dtype | None) -> str:
    """``"float64, "`` for a run in a lower precision or of unknown dtype (to start a list of what to try), else
    ``""``: a float64 run that turned non-finite was told to "use float64"."""
    return "" if dtype == torch.float64 else "float64, "


#: the real stability interval [−ρ, 0] of the fixed-step Runge–Kutta methods (forward Euler and the explicit
#: midpoint rule ρ = 2, classical RK4 ρ ≈ 2.785): on ṙ = −Mr (E3) a step h is stable only if h·λ_max(M) ≤ ρ
STABILITY_INTERVAL = {"euler": 2.0, "midpoint": 2.0, "rk4": 2.785}


#: what one saved time costs in memory while a run records (measured with tracemalloc, GD, save_every = 1: 1.5 KB
#: at n = 5, 5.9 KB at n = 50 with 50 test points): a base for the scalars, and per residual/output entry
ROW_BYTES_BASE, ROW_BYTES_PER_ENTRY = 1200, 32
#: a run whose saved times would hold more than this share of the machine's memory is refused before it starts
ROW_MEMORY_SHARE = 0.5


def output_terms(net, s: torch.Tensor) -> float:
    """‖|α| |c|ᵀ|σ(H)|‖ for ``s`` = σ(H): the scale of the terms the outputs f = α cᵀσ(H) sum, which their rounding
    (and a solver's error in H) is relative to — not f itself, which cancels to 0 under the symmetrised NTK scaling."""
    return abs(float(net.alpha)) * float(torch.linalg.norm(net.c.abs() @ s.abs()))


def snapshot_bytes(problem, n_features: int, n_weights: int) -> float:
    """What the features and weights kept at ``n_features`` / ``n_weights`` times (features_at, weights_at) hold:
    H (m, n) and H_test (m, n_te), W (m, D), each twice while the run ends (the list of arrays, then its stack)."""
    net = problem.net
    size = torch.finfo(net.dtype).bits // 8
    return 2.0 * size * net.m * (n_features * (problem.n + problem.n_test) + n_weights * net.D)


def check_recording_memory(rows: int, n: int, n_test: int, seeds: int = 1, *, what: str, advice: str,
                           snapshots: float = 0.0) -> None:
    """Refuse a run whose ``rows`` saved times (× ``seeds``), with ``snapshots`` bytes per seed of kept features and
    weights (:func:`snapshot_bytes`), would hold more than :data:`ROW_MEMORY_SHARE` of the machine's physical
    memory: 1e7 saved GD steps at n = 5 held ~15 GB, and the process was killed for memory hours into the run (and
    features_at="all" over 20 001 times at m = 4 096 failed on its 3 GiB stack after the whole run).  Nothing is
    checked where the memory size is unknown."""
    total = _physical_memory()  # (inf where the platform does not say: nothing is refused)
    rows_need = rows * seeds * (ROW_BYTES_BASE + ROW_BYTES_PER_ENTRY * (2 * n + n_test))
    need = rows_need + seeds * snapshots
    if total > 0 and need > ROW_MEMORY_SHARE * total:
        kept = (f", {seeds * snapshots / 2**30:.1f} GiB of it the features and weights kept at the features_at / "
                f"weights_at times (give fewer of those)") if snapshots > 0.1 * need else ""
        raise ValueError(f"{rows} {what}{f' × {seeds} seeds' if seeds > 1 else ''} would hold about "
                         f"{need / 2**30:.1f} GiB in memory while the run records them (about "
                         f"{rows_need / (rows * seeds) / 1e3:.1f} kB each{kept}), more than {ROW_MEMORY_SHARE:.0%} "
                         f"of this machine's {total / 2**30:.0f} GiB; {advice}")


def rise_words(loss_rise) -> str:
    """A first rise of the saved loss (t_prev, L_prev, t, L) in words (:meth:`Recorder.rise_text`)."""
    t0, L0, t, L = loss_rise
    return f"the loss rose from {L0:.6g} at t = {t0:.6g} to {L:.6g} at t = {t:.6g}"


class Recorder:
    """Collects loss, residuals, outputs, test metrics, the theory's quantities, features and weights.

    Observables are computed from the state at each output time, so the full state is never stored over
    time (W is (m, D) and large); H and W are kept only at the times the user asked for.  Theory quantities
    (EQUATIONS.md §8–§9): η and η̄ (intervals I and I₀), μ, ν, λ_min/λ_max of M = κ_M·G∘S, L̇ = −rᵀMr, the
    feature movement per point, the kernel movement ‖M_t − M_0‖_F/‖M_0‖_F, ‖W_t − W_0‖_F/‖W_0‖_F, and the
    running integrals carried by an :class:`~gflow.fields.ObservedField`.
    """

    def __init__(self, field: AbstractField, feature_times: np.ndarray, weight_times: np.ndarray,
                 time_tol: float = 0.0, interval: tuple[float, float] | None = None,
                 diverge_factor: float | None = None, fixed_step: tuple[str, float] | None = None,
                 rise_rtol: float = 0.0, share: bool = False):
        self.field = field
        #: gradient descent and fixed-step flow solves: a loss beyond this factor times L₀ raises Abort("diverged")
        #: (a flow's loss never grows)
        self.diverge_factor = diverge_factor
        #: (method, step) of a fixed-step flow solve: its divergence message advises a step below 2/λ_max(M₀), and a
        #: saved loss above the previous one by more than rounding is kept in ``loss_rise`` (the caller warns)
        self.fixed_step = fixed_step
        self.loss_rise: tuple[float, float, float, float] | None = None  # first rise: (t_prev, L_prev, t, L)
        #: an adaptive solve's rtol: a rise within rtol·L is within its tolerance, not a rise (linear σ with singular
        #: G on a loss plateau of 3.5e-3 over t = 1e6 wobbled by 1.2e-11 relative at rtol 1e-10 and was told its
        #: solver did not follow the flow; tightening rtol did not help — an audit)
        self.rise_rtol = rise_rtol
        self._lowest = (0, math.inf)  # (rows it covers, the lowest saved loss): see _lowest_loss
        #: the lowest saved loss before this solve's rows: a continued run's (gf.extend) whole run's, so that its
        #: loss-rise check is the one-piece run's, not one against the continuation's own lowest
        self.lowest_before = math.inf
        self._tol = time_tol  # output times are at least 2·time_tol apart, so a time matches at most one
        pb = field.problem
        self.pb = pb
        net = pb.net
        self.interval = tuple(net.activation.interval) if interval is None else tuple(interval)
        lo, hi = self.interval
        if math.isfinite(lo) and math.isfinite(hi):
            xi = (hi - lo) / 3.0
            self.inner = (lo + xi, hi - xi)
        else:
            self.inner = None
        #: η and η̄ count |H| < a on both intervals (symmetric): |H| is formed once for both
        self._symmetric = self.inner is not None and lo == -hi and self.inner[0] == -self.inner[1]
        self._ft = feature_times
        self._wt = weight_times
        self._eig = pb.n <= EIG_MAX_N
        self._M0: torch.Tensor | None = None
        self._M0_norm: torch.Tensor | None = None
        self._forms = Q.FastForms(net.c, pb.G if self._eig else None, net.kernel_coef)  # μ, ν, M in few passes
        # M = (κ_M/m · G) ∘ gram(cσ′) is symmetric bit for bit where G is (gram() is): no ½(M + Mᵀ) for its eigenvalues
        Gm = self._forms.G_over_m
        self._M_symmetric = Gm is not None and torch.equal(Gm, Gm.T)
        self._ones_m = torch.ones_like(net.c)
        #: ``share`` (gradient descent): a single saved time hands η, μ, ν, M and λ_min(M) to the field's running
        #: integrals (:meth:`~gflow.fields.ObservedField.offer_integrands`), which the next step forms at the same
        #: state — where they are the same numbers: the field's interval, M exactly symmetric (λ_min from M itself);
        #: in feature space only, where H is a view of the state (weight space forms H and σ′ in buffers of its own,
        #: column-major on the CPU, whose M differs from the recorder's in the last bits: never the same tensors)
        self._share = (share and field.space == "feature" and hasattr(field, "offer_integrands")
                       and self._M_symmetric and tuple(field.interval) == self.interval)
        self._H0 = pb.H0
        self._H0_test = pb.H0_test
        self.rows: dict[str, list] = {k: [] for k in (
            "t", "loss", "residual", "output", "test_output", "eta", "eta_bar", "mu", "nu", "lam_min_M",
            "lam_max_M", "dL", "feature_movement", "feature_movement_test", "kernel_movement",
            "weight_movement", "moved_fraction", "integrals")}
        self.feature_t: list[float] = []
        self.H: list[np.ndarray] = []
        self.H_test: list[np.ndarray] = []
        self.weight_t: list[float] = []
        self.W: list[np.ndarray] = []
        self.last_state: torch.Tensor | None = None
        #: (t, state, field) whose loss or σ′ :meth:`record` found non-finite (a copy, on that failure only)
        self.nonfinite_state: tuple[float, torch.Tensor, AbstractField] | None = None
        self.bar = None  # optional tqdm bar over flow time (see attach_progress)
        yt = pb.y_test
        self.sign_labels = yt is not None and bool(torch.all((yt == 1) | (yt == -1)))

    @property
    def t(self) -> list[float]:
        return self.rows["t"]

    def _members(self, ts, times: np.ndarray):
        """Whether each of ``ts`` is one of ``times`` (within the time tolerance), as a sequence of bools: one search
        for a chunk of saved times."""
        if times.size == 0:
            return [False] * len(ts)
        if len(ts) == 1:  # (a single time: 2 µs where the array form takes 17)
            t = ts[0]
            k = int(np.searchsorted(times, t))
            return [any(0 <= j < times.size and abs(times[j] - t) <= self._tol for j in (k - 1, k))]
        t = np.asarray(ts, dtype=np.float64)
        k = np.searchsorted(times, t)
        below, above = times[np.clip(k - 1, 0, times.size - 1)], times[np.clip(k, 0, times.size - 1)]
        return ((k >= 1) & (np.abs(below - t) <= self._tol)) | ((k < times.size) & (np.abs(above - t) <= self._tol))

    #: :meth:`record_many` forms the (m, n) observables of up to this many entries of features at once (a chunk of
    #: a solver's dense output: 13 saved times at (1024, 20)): each operation's overhead is paid once per chunk, and
    #: the chunk's few buffers (2 MB each in float64) stay in cache
    RECORD_CHUNK_ENTRIES = 1 << 18

    def record(self, t: float, state: torch.Tensor, *, force_features: bool = False) -> None:
        """Record the observables of ``state`` at time t; raises Abort("nonfinite") for a non-finite loss."""
        self._record_chunk((t,), state.unsqueeze(0), force_features)

    def record_many(self, ts, states: torch.Tensor) -> None:
        """:meth:`record` at each time of ``ts`` (increasing) of the state ``states[i]`` (a stack: the rows of a
        solver's dense output), in order — the same rows, and the same Abort at the same time, as one call per
        time — with the (m, n) work of several saved times in one operation each (:data:`RECORD_CHUNK_ENTRIES`).
        A dense ``saveat`` (the quick start's 5 001 times at m = 1024, n = 20) cost 2–3 record calls' worth of
        dispatch per time, more than the flow's stepping: see ``benchmarks/bench_record.py``."""
        if len(ts) != states.shape[0]:
            raise ValueError(f"record_many takes one state per time: got {len(ts)} times and "
                             f"{states.shape[0]} states")
        per = max(1, self.RECORD_CHUNK_ENTRIES // max(1, self.pb.net.m * self.pb.n))
        for a in range(0, len(ts), per):
            self._record_chunk(ts[a:a + per], states[a:a + per], False)

    def _like(self, key: str, base: torch.Tensor, k: int) -> torch.Tensor:
        """A buffer kept across calls with ``base``'s shape and strides (the native kernels take operands of one
        layout only; a fresh array per saved time cost page faults): for a stack, its first ``k`` matrices."""
        bufs = self.__dict__.setdefault("_chunk_bufs", {})
        full = (key, tuple(base.shape), base.stride(), base.dtype, base.device)
        buf = bufs.get(full)
        if buf is None:
            buf = bufs[full] = torch.empty_strided(base.shape, base.stride(), dtype=base.dtype, device=base.device)
        return buf if base.dim() == 2 else buf[:k]

    def _stack_features(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, base): the features of the ``k`` states as a (k, m, n) stack in the layout the field gives them
        (column-major stays column-major: the products over neurons then run as before) — of a single state, H
        (m, n) itself (the 2-D operations cost 2–4 µs less each than their batched forms) — and the tensor whose
        layout the chunk's buffers take (:meth:`_like`)."""
        first = self.field.train_features(states[0])
        k = states.shape[0]
        if k == 1:
            return first, first
        per = max(1, self.RECORD_CHUNK_ENTRIES // max(1, first.numel()))
        cap = scratch(self, "H_stack", (per,) + tuple(first.shape), first, col=column_major(first))
        H = cap[:k]
        H[0].copy_(first)
        for i in range(1, k):
            self.field.train_features_into(states[i], H[i])
        return H, cap

    def _record_chunk(self, ts, states: torch.Tensor, force_features: bool) -> None:
        """:meth:`record` of each state of the stack ``states`` at the times ``ts``: the observables are formed for
        the whole chunk first — the elementwise passes over the (k, m, n) stack, the counts of indicators as one
        batched product (exact), the eigenvalues as one batched eigvalsh (LAPACK's routine matrix by matrix), the
        sums that round by the same products as for a single time: the same numbers, bit for bit — then each time's
        checks run and its row is kept, in order."""
        pb, net, rows, field = self.pb, self.pb.net, self.rows, self.field
        k = len(ts)
        H, base = self._stack_features(states)
        # a single time's quantities stay what they are (H (m, n), r (n,), η a 0-d tensor: the 2-D operations and
        # float() cost a few µs less each than their batched forms); a stack's have a leading axis of k
        single = H.dim() == 2
        at = (lambda x, i: x) if single else (lambda x, i: x[i])  # (time i's of a stack's, or the single time's)
        values = (lambda x: [float(x)]) if single else (lambda x: x.tolist())  # (a list of k floats)
        s, ds = self._like("s", base, k), self._like("ds", base, k)
        net.activation.both_into(H, s, ds)  # the fused σ/σ′ of the field (float64 tanh: ~5x torch.tanh)
        # (n,), or (k, n) for a stack: every sum that rounds is formed matrix by matrix, by the operation a single time
        # takes (a batched product sums in its own order: torch.matmul against c @ s at m ≤ 128, ulps apart)
        f = net.alpha * (net.c @ s if single else torch.stack([net.c @ si for si in s.unbind()]))
        r = f - pb.y
        losses = [float(0.5 * (r @ r))] if single else [float(0.5 * (ri @ ri)) for ri in r.unbind()]
        ds_finite = Q.all_finite(ds)  # σ′(H) feeds M, μ, ν and L̇ (its finiteness by a sum; a row's where it is not)
        ok = [math.isfinite(loss) and (ds_finite or Q.all_finite(at(ds, i))) for i, loss in enumerate(losses)]
        R, F = _np(r), _np(f)
        keep = self._members(ts, self._ft)
        if force_features:
            keep = [True] * k
        keep_W = self._members(ts, self._wt)
        test = pb.X_test is not None
        if test:
            fte, fm_te, Hte_kept = self._test_block(states, keep)  # (k, n_te) each, (n_te,) for a single time
            FTE, FMT = _np(fte), _np(fm_te)
        # theory quantities (EQUATIONS.md §8-§9), for the whole chunk
        ind = self._like("ind", base, k)  # η's indicator buffer, reused
        ones = self._ones_m
        dH = self._like("dH", base, k)  # (|H| for η and η̄ where both intervals are symmetric, then |H − H0|)
        abs_H = torch.abs(H, out=dH) if self._symmetric else None
        eta_t = Q.eta(H, self.interval, ind, ones, abs_H)
        eta = values(eta_t)
        eta_bar = values(Q.eta(H, self.inner, ind, ones, abs_H)) if self.inner else [math.nan] * k
        mu_nu_t = self._forms.mu_nu(ds, ind)  # (T4; as the running integrals form them)
        mu_nu = [mu_nu_t.tolist()] if single else mu_nu_t.tolist()
        if self._eig and all(ok):  # (a failing time ends the chunk: the eigenvalues of a NaN M are not asked for)
            M = self._forms.kernel_M(ds, ind)  # κ_M G∘S (E3), exactly symmetric; (k, n, n) for a stack
            M0 = at(M, 0) if self._M0 is None else self._M0
            M0_norm = torch.linalg.norm(M0) if self._M0_norm is None or self._M0 is None else self._M0_norm
            if single:
                lam = [Q.extreme_eigenvalues(M, self._M_symmetric)]
                moved_M = [Q.relative_movement(float(torch.dist(M, M0)), float(M0_norm))]
                if self._share and math.isfinite(lam[0][0]):  # (a non-finite M: the field's eigvalsh says NaN)
                    self.field.offer_integrands(H, ds, eta_t.view(1), mu_nu_t, M, M.new_full((1,), lam[0][0]))
            else:
                if Q.all_finite(M):
                    ev = torch.linalg.eigvalsh(M if self._M_symmetric else 0.5 * (M + M.mT))
                    lam = list(zip(ev[:, 0].tolist(), ev[:, -1].tolist()))
                else:  # (an overflowing kernel: NaN at those times, as extreme_eigenvalues says)
                    lam = [Q.extreme_eigenvalues(Mi, self._M_symmetric) for Mi in M]
                moved_M = [Q.relative_movement(d, float(M0_norm))
                           for d in torch.stack([torch.dist(Mi, M0) for Mi in M.unbind()]).tolist()]
        elif self._eig:  # the times before the failing one, one by one (the failure path only)
            M = [self._forms.kernel_M(at(ds, i), at(ind, i)) if ok[i] else None for i in range(k)]
        fm = _np(Q.feature_movement(H, self._H0, dH, ones))  # leaves |H − H0| in dH
        if self.inner:  # T7: max_a (1/m) #{i : |h_i^t(x_a) − h_i^0(x_a)| ≥ ξ}
            xi = (self.interval[1] - self.interval[0]) / 3.0
            torch.ge(dH, xi, out=ind)  # 1.0 / 0.0 in H's dtype, counted by a product (exact integer counts)
            counts = torch.mv(ind.T, ones) if single else torch.matmul(ones, ind)
            moved = [c / net.m for c in values(counts.amax(dim=-1))]
        else:
            moved = [math.nan] * k
        integrals = None
        if hasattr(field, "integrals"):
            q = field.integrals(states[0]) if single else torch.stack([field.integrals(st) for st in states])
            integrals = _np(q)
        moved_W = [self._weight_movement(states[0])] if single else [self._weight_movement(x) for x in states.unbind()]

        for i, t in enumerate(ts):
            state, loss = states[i], losses[i]
            if not ok[i]:
                self.nonfinite_state = (float(t), state.detach().clone(), field)
                raise Abort("nonfinite", f"the loss or σ′ became non-finite at t = {t:.6g}; the state was lost between "
                            f"t = {rows['t'][-1] if rows['t'] else 0.0:.6g} and t = {t:.6g}; use "
                            f"{float64_advice(net.dtype)}a smaller step or tighter tolerances")
            if self.diverge_factor is not None and rows["loss"] and \
                    loss > self.diverge_factor * max(self.initial_loss(), 1e-300):
                raise Abort("diverged", self.diverged_message(loss, t))
            if rows["loss"] and self.loss_rise is None and loss > rows["loss"][-1] and (
                    loss > rows["loss"][-1] + self._rounding(rows["loss"][-1], at(s, i)) if not self.rise_rtol else
                    loss > (low := self._lowest_loss()) * (1.0 + self.rise_rtol) + self._rounding(low, at(s, i))):
                self.loss_rise = (rows["t"][-1], rows["loss"][-1], float(t), loss)
            if self.bar is not None:
                self.bar.update(float(t) - (rows["t"][-1] if rows["t"] else 0.0))
                self.bar.set_postfix_str(f"L = {loss:.3e}", refresh=False)
            rows["t"].append(float(t))
            rows["loss"].append(loss)
            rows["residual"].append(at(R, i))
            rows["output"].append(at(F, i))
            if test:
                if len(rows["t"]) == 1 and not math.isfinite(float(torch.sum((at(fte, i) - pb.y_test) ** 2))):
                    raise ValueError(f"the test loss at t = 0 is not finite: the test data or the network overflow "
                                     f"{fte.dtype} on X_test (largest |y_test| {float(pb.y_test.abs().max()):.3g}); "
                                     "check the scale of X_test and y_test")
                rows["test_output"].append(at(FTE, i))
                rows["feature_movement_test"].append(at(FMT, i))
            rows["eta"].append(eta[i])
            rows["eta_bar"].append(eta_bar[i])
            rows["mu"].append(mu_nu[i][0])
            rows["nu"].append(mu_nu[i][1])
            if self._eig:
                Mi = at(M, i)
                if self._M0 is None:
                    self._M0 = Mi.clone()
                if self._M0_norm is None:  # (also after a checkpoint restored M₀)
                    self._M0_norm = torch.linalg.norm(self._M0)
                if all(ok):
                    lo, hi = lam[i]
                    kernel_moved = moved_M[i]
                else:
                    lo, hi = Q.extreme_eigenvalues(Mi, self._M_symmetric)
                    kernel_moved = Q.relative_movement(float(torch.dist(Mi, self._M0)), float(self._M0_norm))
                rows["lam_min_M"].append(lo)
                rows["lam_max_M"].append(hi)
                ri = at(r, i)
                rows["dL"].append(float(-(ri @ (Mi @ ri))))
                rows["kernel_movement"].append(kernel_moved)
            else:
                for key in ("lam_min_M", "lam_max_M", "dL", "kernel_movement"):
                    rows[key].append(math.nan)
            rows["feature_movement"].append(at(fm, i))
            rows["moved_fraction"].append(moved[i])
            rows["weight_movement"].append(moved_W[i])
            if integrals is not None:
                rows["integrals"].append(at(integrals, i))
            if keep[i]:
                self.feature_t.append(float(t))
                self.H.append(_np(at(H, i)))
                if test:
                    self.H_test.append(Hte_kept[i])
            if keep_W[i]:
                self.weight_t.append(float(t))
                self.W.append(_np(field.weights(state)))
            self.last_state = state

    def refer_to(self, H0: torch.Tensor, H0_test: torch.Tensor | None, M0: torch.Tensor | None,
                 W0: torch.Tensor, L0: float, lam_max0: float = math.nan) -> None:
        """Measure the movements against these t = 0 references instead of the field's start: the features H0 (m, n)
        and H0_test (m, n_te), the kernel M0 (n, n; None: the first recorded time's) and the weights W0 (m, D) of
        the run that a continued run (:func:`gflow.extend`) goes on from — its field starts at that run's end — its
        initial loss L0 (what a loss diverges from, :data:`DIVERGE_FACTOR`) and λ_max(M₀) (NaN where t = 0 did not
        record it, n > EIG_MAX_N: formed from H0 where needed), which the stability limit 2/λ_max(M₀) of GD and of the
        fixed-step methods is measured by (:meth:`lam_max_M0`; the continuation's first row is the joint's kernel)."""
        self._H0, self._H0_test, self._M0, self._M0_norm = H0, H0_test, M0, None
        self._W0_ref, self._W0_ref_norm = W0, torch.linalg.norm(W0)
        self._L0_ref = float(L0)
        self._lam_max0_ref = float(lam_max0)

    def initial_loss(self) -> float:
        """L₀: the first recorded loss, or the original run's (:meth:`refer_to`)."""
        L0 = self.__dict__.get("_L0_ref")
        return self.rows["loss"][0] if L0 is None else L0

    def _weight_movement(self, state: torch.Tensor) -> float:
        """‖W − W0‖_F/‖W0‖_F of ``state``: the field's own (against its start), or against :meth:`refer_to`'s W0
        (formed as weight space forms it: the same number, bit for bit, where the state is W)."""
        W0 = self.__dict__.get("_W0_ref")
        if W0 is None:
            return self.field.weight_movement(state)
        return Q.relative_movement(float(torch.dist(self.field.weights(state), W0)), float(self._W0_ref_norm))

    def _test_block(self, states: torch.Tensor, keep: list[bool]):
        """(f_te (k, n_te), the test feature movement (k, n_te), {i: H_te at the kept times}) of the chunk's states,
        time by time: an (m, n_te) block per time is already a few passes of memory traffic, not of dispatch."""
        pb, net = self.pb, self.pb.net
        fte, fm_te, kept = [], [], {}
        m = net.m
        for i in range(states.shape[0]):
            # the test features in a buffer kept across calls (a fresh (m, n_te) product per saved time cost page
            # faults), and |H_te − H_te⁰| formed over them in place once σ(H_te) is taken (one large array fewer
            # to stream): the test block 885 → 770 µs at (m, n_te) = (1024, 200) (one thread, Intel Xeon)
            Hte_buf = scratch(self, "Hte", (m, pb.n_test), self._H0_test, col=False)
            Hte = self.field.test_features_into(states[i], Hte_buf)
            ste = scratch(self, "ste", Hte.shape, Hte)
            if keep[i]:  # (before the buffer is overwritten)
                kept[i] = _np(Hte)
            # float64 tanh on the CPU: σ(H_te) and |H_te − H_te⁰| (over H_te) in one pass, the same values as the
            # three passes below (σ, the difference, its |·|): the test block 1.5 → 1.1 ms at (1024, 200)
            # (benchmarks/bench_record.py)
            if Hte is Hte_buf and sigma_absdiff_into(net.activation, Hte, self._H0_test, ste, Hte):
                fte.append(net.alpha * (net.c @ ste))
                fm_te.append(Q.column_sums(Hte, self._ones_m).div_(m))
                continue
            if net.activation.sigma_into is not None:
                net.activation.sigma_into(Hte, ste)
            else:
                ste.copy_(net.activation.sigma(Hte))
            fte.append(net.alpha * (net.c @ ste))
            fm_te.append(Q.feature_movement(Hte, self._H0_test, Hte if Hte is Hte_buf else ste, self._ones_m))
        if len(fte) == 1:  # (a single time's: (n_te,) each, as the chunk's other quantities of a single time)
            return fte[0], fm_te[0], kept
        return torch.stack(fte), torch.stack(fm_te), kept

    def _lowest_loss(self) -> float:
        """The lowest saved loss: an adaptive solve's loss may rise by rise_rtol of it (its tolerance), measured from
        there and not from the last saved loss, so that rises within rtol do not add up unseen (0.9·rtol per saved
        time rose 24 % in all at rtol 1e-3).  Kept as rows are saved (all rows read once after a resume)."""
        losses = self.rows["loss"]
        n, low = self._lowest
        if n > len(losses):  # (rows replaced)
            n, low = 0, math.inf
        if n < len(losses):
            low = min(low, min(losses[n:]))
            self._lowest = (len(losses), low)
        return min(low, self.lowest_before)

    def _rounding(self, loss: float, s: torch.Tensor) -> float:
        """How far a saved loss may rise above the previous one by rounding alone: the outputs f = α c·σ(H)
        (``s`` = σ(H)) carry an error of about ε·(‖|α| |c|ᵀ|σ(H)|‖ + ‖y‖) — the scale of the sums' terms, not of
        f, which cancels to 0 under the symmetrised NTK scaling (a GD at L ≈ 1e-32 with y = 0 warned of a rise
        from 1.32e-32 to 1.40e-32) — (generously: 1e3 ε, for the sums over m neurons and the solver's rounding
        near a zero-loss equilibrium), which moves L = ½‖r‖² by up to that times ‖r‖ (plus its square)."""
        eps = torch.finfo(s.dtype).eps
        delta = 1e3 * eps * (output_terms(self.pb.net, s) + float(torch.linalg.norm(self.pb.y)))
        return 1e3 * eps * loss + delta * math.sqrt(2.0 * loss) + delta * delta

    def lam_max_M0(self) -> float:
        """λ_max(M₀), the largest eigenvalue of the kernel at t = 0 (recorded when n ≤ EIG_MAX_N, else computed
        here once: it is needed only to word a failure)."""
        lam = self._recorded_lam_max0()
        if not math.isfinite(lam):
            pb, net = self.pb, self.pb.net
            _, ds = net.activation.both(self._H0)  # (t = 0's features: a continued run's are the original's)
            lam = Q.extreme_eigenvalues(Q.kernel_M(pb.G, ds, net.c, net.kernel_coef))[1]
        return lam

    def _recorded_lam_max0(self) -> float:
        """λ_max(M₀) as recorded at t = 0 — the original run's for a continued one (:meth:`refer_to`) — or NaN."""
        ref = self.__dict__.get("_lam_max0_ref")
        if ref is not None:
            return ref
        return self.rows["lam_max_M"][0] if self.rows["lam_max_M"] else math.nan

    def stability_limit0(self) -> float:
        """2/λ_max(M₀), the linear stability limit of GD and of the explicit methods at t = 0 (E3; rk4's reaches
        2.79/λ_max); inf where λ_max(M₀) is not a finite positive number."""
        lam = self.lam_max_M0()
        return 2.0 / lam if math.isfinite(lam) and lam > 0 else math.inf

    def rise_text(self) -> str:
        """The first rise of the saved loss (:attr:`loss_rise`, not None), in words."""
        return rise_words(self.loss_rise)

    def step_advice(self) -> str:
        """What to try after a fixed-step flow solve's loss rose or diverged: a step below the method's stability
        limit ρ/λ_max(M₀) (:data:`STABILITY_INTERVAL`: rk4's ρ is 2.785; 2, GD's and Euler's, for the others)."""
        method, h = self.fixed_step
        rho = STABILITY_INTERVAL.get(method.removeprefix("torchdiffeq."), 2.0)
        limit = rho * self.stability_limit0() / 2.0
        if not math.isfinite(limit):
            return f"use a step below {h:g}, or an adaptive method (e.g. method='dop853')"
        if h > limit:
            return (f"the step {h:g} of method={method!r} exceeds the stability limit {rho:g}/λ_max(M₀) = {limit:.3g}; "
                    f"use a step below it (e.g. step={0.5 * limit:.2g}), or an adaptive method (e.g. method='dop853')")
        return (f"the step {h:g} of method={method!r} is below the stability limit {rho:g}/λ_max(M₀) = {limit:.3g} at "
                f"t = 0, but λ_max(M) changes as the features move; use a smaller step (e.g. step={0.25 * h:.2g}), or "
                "an adaptive method (e.g. method='dop853')")

    def diverged_message(self, loss: float, t: float) -> str:
        L0 = self.initial_loss()
        if self.fixed_step is None:
            return (f"gradient descent diverged: the loss grew to {loss:.3g} at t = {t:.6g}, more than "
                    f"{self.diverge_factor:.0e}× its initial {L0:.3g}: the step is far past the stability limit "
                    "2/λ_max(M); use a smaller step")
        return (f"the fixed-step solve (method={self.fixed_step[0]!r}) diverged: the loss grew to {loss:.3g} at t = {t:.6g}, more than "
                f"{self.diverge_factor:.0e}× its initial {L0:.3g} (a gradient flow's loss never increases): "
                f"{self.step_advice()}")

    def past_stability_limit(self) -> tuple[float, float] | None:
        """(ρ, λ_max(M₀)) of a fixed-step flow solve whose step h exceeds its method's stability limit ρ/λ_max(M₀)
        (:data:`STABILITY_INTERVAL`), whether or not its saved loss rose; None otherwise (an adaptive solve, a method
        without a known ρ, or λ_max(M₀) not recorded)."""
        if self.fixed_step is None:
            return None
        method, h = self.fixed_step
        rho = STABILITY_INTERVAL.get(method.removeprefix("torchdiffeq."))
        # λ_max(M₀) as recorded at t = 0 (n ≤ EIG_MAX_N): beyond, forming M₀ and its eigenvalues after every solve
        # (minutes at n = 1e4) would cost more than the check is worth
        lam = self._recorded_lam_max0() if rho is not None and h is not None else math.nan
        if not (math.isfinite(lam) and lam > 0) or h * lam <= rho:
            return None
        return rho, lam

    def unstable_step_message(self) -> str | None:
        """A fixed-step flow solve whose step exceeds its method's stability limit ρ/λ_max(M₀)
        (:data:`STABILITY_INTERVAL`) while its saved loss never rose, worded for a warning (None otherwise).  Past
        the limit the iteration does not follow the flow even where no guard sees it: with σ saturated (tanh,
        ĉ = 1e4, midpoint at 1e8× its limit) it froze, σ′ ≈ 0, at a constant loss, and reported success."""
        if self.loss_rise is not None:
            return None
        past = self.past_stability_limit()
        if past is None:
            return None
        method, h = self.fixed_step
        rho, lam = past
        return (f"the step {h:g} of method={method!r} exceeds its stability limit {rho:g}/λ_max(M₀) = {rho / lam:.3g}: "
                "the saved loss did not rise, but the iteration does not follow the flow (where σ saturates it can "
                f"freeze, σ′ ≈ 0, at a loss the flow would leave); use a step below the limit (e.g. "
                f"step={0.5 * rho / lam:.2g}), or an adaptive method (e.g. method='dop853')")

    def fixed_step_warning(self, reached_t1: bool) -> tuple[str, dict] | None:
        """A fixed-step flow solve's warning and the stats that record it: its first loss rise
        (``{"loss_rise": ...}``, plus ``"unstable_step": True`` where its step is past the stability limit, which
        the rise's advice names), else — for a solve that reached t1 — its step past the stability limit
        (``{"unstable_step": True}``, :meth:`unstable_step_message`); None for neither (simulate and
        simulate_batch).  A step past the limit is recorded with or without a rise: step halving
        (:func:`gflow.simulate_nonsmooth`) estimates nothing from such solves (it reported 6.7e10, "observed order
        22", from three euler solves past the limit whose loss rose)."""
        if self.fixed_step is None:  # (an adaptive solve: its tolerance, not a step, bounds a rise)
            return None
        if self.loss_rise is not None:
            unstable = {"unstable_step": True} if self.past_stability_limit() is not None else {}
            return self.rise_message(), {"loss_rise": list(self.loss_rise), **unstable}
        text = self.unstable_step_message() if reached_t1 else None
        return None if text is None else (text, {"unstable_step": True})

    def rise_warning(self, method: str, rtol: float, smooth: bool, reached_t1: bool) -> tuple[str, dict] | None:
        """The warning of a flow solve and the stats that record it, or None: a fixed-step solve's
        (:meth:`fixed_step_warning`), an adaptive one's where σ is smooth (:meth:`adaptive_rise_warning`); for
        simulate and simulate_batch alike."""
        if self.fixed_step is not None:
            return self.fixed_step_warning(reached_t1)
        return self.adaptive_rise_warning(method, rtol) if smooth else None

    def adaptive_rise_warning(self, method: str, rtol: float) -> tuple[str, dict] | None:
        """An adaptive flow solve's first rise of the saved loss beyond rounding, worded for a warning, and the stats
        that record it (``{"loss_rise": ...}``); None where the saved loss never rose.  A gradient flow's loss never
        increases, so a rise is the solver's error showing: scipy's RK45 at rtol = 1e-3 on Experiment 1 (m = 256,
        t1 = 300) let the converged loss rise 27 times, by up to 900×, torchdiffeq's dopri5 at rtol = 1e-6 by 61 %
        (gflow's own dop853/dopri5 keep their steps inside the stability region and did not rise there).  For
        smooth σ only (a Filippov flow at a kink is not a gradient flow of L; a custom activation with a kink
        should say ``smooth=False``)."""
        if self.loss_rise is None:
            return None
        tighten = f"tighten rtol and atol (e.g. rtol={rtol * 1e-2:.0e})"
        if method in ("dop853", "dopri5") or "exprk4" in method:  # gflow's own, stability-guarded methods
            advice = tighten + (" (dop853 is the more accurate per evaluation)" if method == "dopri5" else "")
        else:  # a peer's (scipy, torchdiffeq): its steps are not kept inside the stability region
            advice = f"{tighten}, or use method='dop853' (gflow's, whose steps stay inside the stability region)"
        text = (f"{self.rise_text()}, but a gradient flow's loss never increases: method={method!r} at rtol={rtol:g} "
                f"does not follow the flow there (its error exceeds the loss's change between the saved times); "
                f"{advice}")
        return text, {"loss_rise": list(self.loss_rise)}

    def rise_message(self) -> str | None:
        """The first rise of the saved loss of a fixed-step flow solve, worded for a warning (None: no rise)."""
        if self.loss_rise is None or self.fixed_step is None:
            return None
        return (f"{self.rise_text()}, but a gradient flow's loss never increases: the fixed-step solve is not "
                f"following the flow; {self.step_advice()}")

    #: the recorded series besides ``rows``: lists that only ever grow, as ``rows``' lists do
    SERIES = ("feature_t", "H", "H_test", "weight_t", "W")

    def lengths(self) -> dict[str, int]:
        """How many entries each recorded list holds (``rows`` keys as ``"rows.<key>"``): the lists only grow, so
        two calls delimit what was recorded in between (:meth:`entries`); append-only checkpoints use this."""
        out = {f"rows.{k}": len(v) for k, v in self.rows.items()}
        out.update({k: len(getattr(self, k)) for k in self.SERIES})
        return out

    def entries(self, start: dict[str, int], end: dict[str, int]) -> dict[str, list]:
        """The entries of each list from ``start`` to ``end`` (both from :meth:`lengths`), keyed as there."""
        return {k: (self.rows[k[5:]] if k.startswith("rows.") else getattr(self, k))[start.get(k, 0):end[k]]
                for k in end}

    def head_state(self) -> dict:
        """What the checkpoint needs besides the lists: M₀, the last state and the first loss rise."""
        return {"M0": None if self._M0 is None else self._M0.detach().clone(),
                "last_state": None if self.last_state is None else self.last_state.detach().clone(),
                "loss_rise": self.loss_rise}

    def load_state_dict(self, state: dict, device=None) -> None:
        """Restore what a checkpoint holds: :meth:`head_state` with ``rows`` ({key: list}) and the :data:`SERIES`
        lists (as :func:`gflow.solve.checkpoint.load` assembles them from the segment files)."""
        self.rows = {k: list(state["rows"].get(k, [])) for k in self.rows}
        self.feature_t, self.H, self.H_test = list(state["feature_t"]), list(state["H"]), list(state["H_test"])
        self.weight_t, self.W = list(state["weight_t"]), list(state["W"])
        self._M0 = None if state["M0"] is None else state["M0"].to(device)
        self._M0_norm = None  # (formed from M₀ at the next record)
        self.last_state = None if state["last_state"] is None else state["last_state"].to(device)
        self.loss_rise = state.get("loss_rise")
        if self.bar is not None and self.rows["t"]:
            self.bar.update(self.rows["t"][-1])

    def attach_progress(self, progress: bool | None, t1: float, desc: str) -> None:
        """A tqdm bar over flow time; ``None`` shows it only when stderr is a terminal."""
        import sys

        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None, got {describe(progress)} (None: a bar only on a "
                            "terminal)")
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=t1, desc=desc, unit="t", leave=False,
                            bar_format="{l_bar}{bar}| t = {n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

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
        pb, rows = self.pb, self.rows
        out = {
            "t": np.asarray(rows["t"]),
            "loss": np.asarray(rows["loss"]),
            "residual": np.stack(rows["residual"]),
            "output": np.stack(rows["output"]),
            "feature_t": np.asarray(self.feature_t),
            "H": np.stack(self.H) if self.H else np.zeros((0, pb.net.m, pb.n)),
            "weight_t": np.asarray(self.weight_t, dtype=np.float64),
            "W": np.stack(self.W) if self.W else None,
            "W_final": _np(self.field.weights(self.last_state)),
            "feature_movement": np.stack(rows["feature_movement"]),
        }
        for k in ("eta", "eta_bar", "mu", "nu", "lam_min_M", "lam_max_M", "dL", "kernel_movement",
                  "weight_movement", "moved_fraction"):
            out[k] = np.asarray(rows[k], dtype=np.float64)
        if rows["integrals"]:
            from ..fields.observed import INTEGRALS

            q = np.stack(rows["integrals"])
            for i, name in enumerate(INTEGRALS):
                out[f"int_{name}"] = q[:, i]
            if not getattr(self.field, "lam_min_M", True):
                out["int_lam_min_M"] = None
        if pb.X_test is not None:
            fte = np.stack(rows["test_output"])
            yte = _np(pb.y_test)
            err = fte - yte[None, :]
            out["test_output"] = fte
            out["test_loss"] = 0.5 * np.sum(err**2, axis=1)
            out["test_error"] = np.mean(err**2, axis=1)
            out["test_sign_error"] = self._sign_error(fte, yte) if self.sign_labels else None
            out["H_test"] = np.stack(self.H_test) if self.H_test else None
            out["feature_movement_test"] = np.stack(rows["feature_movement_test"])
        return out

    def _sign_error(self, fte: np.ndarray, yte: np.ndarray) -> np.ndarray:
        """The test sign error (1/n_te)Σ1{sign f ≠ y} at each saved time (labels ±1), where an output within
        rounding of 0 is no prediction and counts as an error, as f = 0 does (sign 0 ≠ ±1): |f(x)| ≤ 1e3·ε·
        |α| Σ_i |c_i||σ(h_i⁰(x))|, the scale of the terms f sums (:func:`output_terms`, per test point, at t = 0:
        c and α are fixed), with :meth:`_rounding`'s generous 1e3 ε.  Under the symmetrised NTK scaling f⁰ ≡ 0
        comes out as ≈ 1e-17 of random sign, which otherwise decided the t = 0 sign error (≈ 0.5 instead of 1)."""
        net = self.pb.net
        s0 = net.activation.sigma(self._H0_test)
        terms = abs(float(net.alpha)) * _np(net.c.abs() @ s0.abs())
        tol = 1e3 * np.finfo(fte.dtype).eps * terms
        pred = np.where(np.abs(fte) > tol[None, :], np.sign(fte), 0.0)
        return np.mean(pred != yte[None, :], axis=1)

    def theory(self) -> dict:
        """Static quantities of the run (EQUATIONS.md §6, §10): spectrum and diagonal of G, ĉ, I, K_σ′, ..."""
        from ..model.activations import _numeric_inf_abs

        pb, net = self.pb, self.pb.net
        G = pb.G
        ev = torch.linalg.eigvalsh(G) if pb.n <= 4 * EIG_MAX_N else None
        diag = torch.diagonal(G)
        act = net.activation
        lo, hi = self.interval
        K = act.K if self.interval == tuple(act.interval) else _numeric_inf_abs(act.dsigma, lo, hi)
        absc = net.c.abs()
        # the scale of the outputs' terms at t = 0: the error of r (and so of L's relative value where r is small)
        # is relative to it, not to f (gflow.certify's tolerance; Recorder._rounding's model)
        terms = output_terms(net, act.sigma(pb.H0))
        return {
            "interval": [lo, hi],
            "inner_interval": list(self.inner) if self.inner else None,
            "K_sigma": float(K),
            "K_sigma_global": _global_inf_abs(act),
            "smooth": bool(act.smooth),
            "lipschitz": float(act.lipschitz),
            "c_hat": float(absc.max()),
            "c_min": float(absc.min()),
            "kernel_coef": float(net.kernel_coef),
            "gamma": float(net.gamma),
            "lam_min_G": float(ev[0]) if ev is not None else math.nan,
            "lam_max_G": float(ev[-1]) if ev is not None else math.nan,
            "G_min": float(diag.min()),
            "G_max": float(diag.max()),
            "y_norm": float(torch.linalg.norm(pb.y)),
            "output_terms": terms,
        }


#: the hint of a stalled filippov run ({float64}: :func:`float64_advice`): its steps are held by the events, or by
#: rtol on the residual, which in float32 is rounding once the loss has converged (a float32 ReLU net, m = 16,
#: n = 6, to t1 = 5e4: steps of about 0.65 from t = 950 on, at a loss of 5e-14; in float64 3.6, 14 000 steps)
FILIPPOV_STALL_HINT = ("filippov's steps are held by its activation events and by rtol on the residual (in float32, "
                       "by the residual's rounding once the loss has converged): use {float64}a shorter t1, a looser "
                       "rtol, or method='sliding', step=0.25, error_estimate=True (the Filippov flow by "
                       "time-stepping, whose cost does not grow with the events; at a step below its stability limit "
                       "2/λ_max(M₀), which gf.simulate reports)")
#: the methods a stalled smooth run is not advised to switch to (it runs one of them already)
_HIGH_ORDER = ("dop853", "dop853+exprk4", "DOP853", "dopri8", "torchdiffeq.dopri8")


class Monitor:
    """Counts evaluations and steps and stops a solve that cannot finish in reasonable time.

    Stops with:
      * ``max_steps`` — more than ``max_steps`` step attempts;
      * ``stalled`` — the recent step sizes project far more than ``max_steps`` steps to reach t1 (the
        ReLU kink makes adaptive solvers collapse their step, EQUATIONS.md §4 "Non-smooth σ");
      * ``step_size_collapse`` — a step below 1e-12·max(u, |t|), u = min(1, t1) the time unit;
      * ``time_budget`` — ``max_wall_time`` seconds elapsed;
      * ``nonfinite`` — a non-finite derivative;
      * ``interrupted`` — Ctrl-C (SIGINT) under :func:`stop_on_sigint`.
    """

    def __init__(self, t1: float, max_steps: int, max_wall_time: float | None, *, hint: str,
                 adaptive: bool = True, kinked: bool = False, hint_after: int = 0, fallback_hint: str = "",
                 tolerances: bool | None = None, stall_after: int = 200, dtype: torch.dtype | None = None,
                 method: str | None = None, stall: bool | None = None):
        self.t1 = t1
        #: the time unit of the thresholds on step sizes (a collapse is a step below 1e-12·max(u, |t|)): 1, or t1 on
        #: a shorter horizon — a flow on a fast time scale (X × 1e6, t1 = 1e-12: the flow of X to t = 1) takes steps
        #: far below 1e-12 that are no collapse (exprk4, dopri5 and filippov stopped at t = 0 there)
        self.time_unit = min(1.0, t1) if t1 > 0 else 1.0
        #: the method that runs (a stalled run's hint does not advise it again)
        self.method = method
        #: the run's dtype: a non-finite state advises float64 only where the run is in a lower precision
        self.dtype = dtype
        #: accepted steps before the stall projection of on_step may stop a run (exprk4: 2 000, its steps grow
        #: late — at rtol 1e-11 they stayed near 0.004 for 200 steps, then reached t1 = 20 000 in 2 171)
        self.stall_after = stall_after
        #: a smooth σ's run is stalled when its recent steps project beyond this many times max_steps (the
        #: explicit phase of a switching method takes 40: the hand-over to exprk4 ends it — at rtol 1e-11 one
        #: projected 4.5·max_steps at t = 20 and needed 3 730 steps in all)
        self.stall_factor = 4.0
        self.adaptive = adaptive
        #: the stall projection of on_step (default: adaptive methods); filippov has it without the step-collapse
        #: check of adaptive methods (its event steps are as short as the events are close: it checks its own)
        self.stall = adaptive if stall is None else stall
        #: project the remaining steps at the largest step so far, not the recent steps' mean (filippov: its events
        #: come in bursts early on — a ReLU net, m = 128, n = 30, took 500 steps to t = 1.4 and 2 205 in all to
        #: t1 = 100, and was stopped at t = 1.4 as "stalled", "about 2.47e4 steps", with max_steps = 4 410)
        self.stall_by_largest = method == "filippov"
        #: rtol/atol set the cost (a wall-time budget advises loosening them): adaptive methods and filippov
        self.tolerances = adaptive if tolerances is None else tolerances
        #: the hint applies after this many accepted steps only (a stiffness hint, for stalls at long horizons:
        #: a run stopped at t = 0 after 0 steps was told the flow is stiff); before, ``fallback_hint``
        self.hint_after = hint_after
        self.fallback_hint = fallback_hint
        self.kinked = kinked  # σ has a kink: the step collapse there is expected, and stopped sooner (on_step)
        self.max_dt = 0.0
        self.max_steps = max_steps
        self.max_wall_time = max_wall_time
        self._hint = hint
        self.start = time.perf_counter()
        #: wall time of the earlier segments of a resumed run (from its checkpoint): ``stats["wall_time"]`` is the
        #: whole run's (it was the last segment's only), while ``max_wall_time`` bounds each segment
        self.wall_before = 0.0
        self.n_f_evals = 0
        self.n_accepted = 0
        self.n_rejected = 0
        self.last_t = 0.0
        self.last_dt = math.nan
        self._recent = deque(maxlen=100)
        self.partial: tuple[float, torch.Tensor] | None = None  # last accepted (t, state) inside a chunk
        #: (t, state, field) of the evaluation found non-finite, where its engine passed them (a copy, on failure only)
        self.nonfinite_state: tuple[float, torch.Tensor, AbstractField] | None = None
        self.proposed_dt: float | None = None
        self.landing_time = math.nan  # the output time the solver is currently stepping onto
        #: set by the SIGINT handler of :func:`stop_on_sigint`: the next evaluation stops the run ("interrupted")
        self.interrupt_requested = False
        #: λ_max(M₀) where the caller knows it (a callable, read when a run stalls: :meth:`_stall_hint`), else None
        self.lam_max0 = None

    def _stall_hint(self, mean_dt: float) -> str:
        """The hint of a stalled smooth run: accuracy-limited where its steps sit far below any explicit method's
        stability limit — adaptive_heun, fehlberg2 and bosh3 at rtol 1e-10 stopped with steps of 3e-6…4e-4 where
        2/λ_max(M₀) = 1.13, and were told the flow is stiff — else :attr:`hint`."""
        if self.method == "filippov":
            return FILIPPOV_STALL_HINT.format(float64=float64_advice(self.dtype))
        lam = self.lam_max0() if self.lam_max0 is not None and not self.kinked else math.nan
        if not (math.isfinite(lam) and lam > 0 and mean_dt * lam < 0.01):
            return self.hint
        head = (f"the steps are {2.0 / (lam * mean_dt):.3g}× below the explicit stability limit ≈ 2/λ_max(M₀) = "
                f"{2.0 / lam:.3g}: accuracy, not stiffness, holds them there — ")
        if self.method in _HIGH_ORDER:  # (it advised the method that had just stalled: a custom σ kinked at 0.3)
            return (head + "if σ′ jumps somewhere (a kink that gf.Activation's check at u = 0, ±½, ±1, ±2, ±3 did "
                    "not see), declare it with smooth=False for a kinked σ's methods (the Filippov solvers for a "
                    "ReLU-type kink at 0; else a fixed step with error_estimate=True); else loosen rtol")
        return head + "use a higher-order method (e.g. method='dop853', or method='auto') or loosen rtol"

    @property
    def hint(self) -> str:
        """What to try, for the messages of a stopped run."""
        return self._hint if self.n_accepted >= self.hint_after else self.fallback_hint

    @property
    def n_steps(self) -> int:
        return self.n_accepted + self.n_rejected

    def state_dict(self) -> dict:
        """The counters (for checkpoints) and the wall time spent so far; the limits are not part of it."""
        return {"n_f_evals": self.n_f_evals, "n_accepted": self.n_accepted, "n_rejected": self.n_rejected,
                "last_t": self.last_t, "last_dt": self.last_dt, "recent": list(self._recent), "max_dt": self.max_dt,
                "proposed_dt": self.proposed_dt, "wall": self.wall_before + self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.n_f_evals, self.n_accepted = int(state["n_f_evals"]), int(state["n_accepted"])
        self.n_rejected = int(state["n_rejected"])
        self.last_t, self.last_dt = float(state["last_t"]), float(state["last_dt"])
        self._recent.clear()
        self._recent.extend(state["recent"])
        self.max_dt = float(state.get("max_dt", 0.0))
        self.proposed_dt = state["proposed_dt"]
        self.wall_before = float(state.get("wall", 0.0))

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def kept_t(self) -> float:
        """The time of the last accepted state the run keeps (:attr:`partial`): the end of the last accepted step,
        except with torchdiffeq, whose accept callback passes the step's start — its messages named the end, up to a
        step past the trajectory kept (dopri8: t = 56.8, kept to 52.4)."""
        return min(self.last_t, float(self.partial[0])) if self.partial is not None else self.last_t

    def on_eval(self, dy: torch.Tensor | None = None) -> None:
        # (counted after the checks: an evaluation they stop is never run, and a stopped run that resumed counted it
        # twice, n_f_evals 3001 for an uninterrupted 3000)
        if self.interrupt_requested:  # (the entry point words the message: interrupted_message)
            raise Abort("interrupted", "interrupted by Ctrl-C (SIGINT)")
        if self.max_wall_time is not None and self.elapsed() > self.max_wall_time:
            self._raise_budget("ran out")
        self.n_f_evals += 1

    def check_ahead(self, seconds: float, what: str) -> None:
        """Stop with ``time_budget`` before an operation of about ``seconds`` that no evaluation divides (scipy's
        dense Jacobians and LU factorizations) where it would end past ``max_wall_time``: the step it belongs to
        (scipy returns a step only after them, Radau's Jacobian after an accepted step too) could not be kept
        within the budget either, so nothing is lost by not starting it (Radau's two LU factorizations at
        n = 6 000 took 17 s on one core, between two checks of :meth:`on_eval`)."""
        if self.max_wall_time is not None and self.elapsed() + seconds > self.max_wall_time:
            self._raise_budget(f"would run out during the next {what} (about {seconds:.2g} s)")

    def _raise_budget(self, how: str) -> None:
        raise Abort(
            "time_budget",
            f"the wall-time budget max_wall_time={self.max_wall_time:g} s {how} at t = {self.kept_t():.6g} "
            f"(of t1 = {self.t1:g}) after {self.n_steps} steps; raise max_wall_time, "
            + (f"loosen rtol/atol, or {self.hint}" if self.tolerances else "or take larger or fewer steps"),
        )

    def raise_collapse(self, dt: float, t0: float) -> None:
        """Stop with ``step_size_collapse`` (a step of ``dt`` at ``t0``); at the start, point to the data's scale."""
        first = (" in the first steps, where the flow's time scale is set by the data and the network (the "
                 "scale of X and y, c_hat, the scaling): check those first;") if self.n_accepted == 0 else ""
        raise Abort(
            "step_size_collapse",
            f"the step size collapsed to {dt:.3g} at t = {t0:.6g}{first or ';'} {self.hint}",
        )

    def raise_nonfinite(self, t: float | None = None, state: torch.Tensor | None = None,
                        field: AbstractField | None = None, net=None) -> None:
        """Stop with ``nonfinite``; ``state``: the input of the evaluation found non-finite, a state of ``field`` or
        the features H of ``net``, kept for :func:`flow_activation_fault`."""
        t = self.last_t if t is None else t
        self.nonfinite_state = (None if state is None or (field is None and net is None) else
                                (float(t), state.detach().clone(), field if field is not None else net))
        raise Abort(
            "nonfinite",
            f"the state or its derivative became non-finite near t = {t:.6g}; check the data scale, "
            f"{'use float64, ' if float64_advice(self.dtype) else ''}or {self.hint}",
        )

    def on_step(self, t0: float, dt: float, accepted: bool) -> None:
        if accepted:
            self.n_accepted += 1
            self.last_t = t0 + dt
            self.last_dt = dt
            self._recent.append(dt)
        else:
            self.n_rejected += 1
        self._check_max_steps()
        if self.adaptive:
            tiny = 1e-12 * max(self.time_unit, abs(t0))
            if dt < tiny and not (accepted and abs(t0 + dt - self.landing_time) <= tiny):
                # (a tiny step that lands exactly on an output time is rounding, not a collapse)
                self.raise_collapse(dt, t0)
        if not self.stall:
            return
        if accepted:
            self.max_dt = max(self.max_dt, dt)
        self._check_stall(accepted)

    def check_resumed(self, last_accepted: bool) -> None:
        """A resumed run's first act: the limits :meth:`on_step` applied after the checkpoint's last step, applied
        again under this run's limits, so that a run stopped by one stops there again unless it was raised (a run
        stopped by max_steps=5, resumed by the same call, took a 6th step and stopped again: each repeat one step
        further).  ``last_accepted``: that step was accepted (the stall check follows accepted steps only)."""
        self._check_max_steps()
        if self.stall:
            self._check_stall(last_accepted)

    def _check_max_steps(self) -> None:
        if self.n_steps >= self.max_steps and self.last_t < self.t1 * (1 - 1e-12):
            raise Abort(
                "max_steps",
                f"max_steps={self.max_steps} steps were taken and t = {self.kept_t():.6g} < t1 = {self.t1:g} "
                f"(last step {self.last_dt:.3g}); raise max_steps, or {self.hint}",
            )

    def _check_stall(self, accepted: bool) -> None:
        n = self.n_steps
        if accepted and self.n_accepted >= self.stall_after and self.n_accepted % 50 == 0:
            mean_dt = sum(self._recent) / len(self._recent)
            pace = self.max_dt if self.stall_by_largest else mean_dt
            projected = n + (self.t1 - self.last_t) / pace if pace > 0 else math.inf
            # a kinked σ: an adaptive method's steps collapse at the kink for good (ReLU, d = 4, m = 16, n = 6: from
            # 0.2 to 9e-5, 1e5 steps in 130 s to t = 4.3 of 5, under the 4·max_steps projection throughout), so
            # a projection beyond max_steps, or steps 1000× below the largest, end the run
            if projected > (1 if self.kinked else self.stall_factor) * self.max_steps or (
                    self.kinked and mean_dt < 1e-3 * self.max_dt):
                what = ("the step size collapsed to about" if mean_dt < 0.5 * self.max_dt else
                        "the steps stayed at about")  # (steps that never grew did not collapse)
                raise Abort(
                    "stalled",
                    f"{what} {mean_dt:.3g} (largest step so far {self.max_dt:.3g}) at "
                    f"t = {self.kept_t():.6g}, which would need about {projected:.3g} steps"
                    + (" (at the largest step so far)" if self.stall_by_largest else "") +
                    f" to reach t1 = {self.t1:g} (max_steps={self.max_steps}); {self._stall_hint(mean_dt)}",
                )


@contextlib.contextmanager
def stop_on_sigint(monitor: Monitor):
    """Within the block, the first Ctrl-C (SIGINT) asks ``monitor`` to stop the run at its next evaluation (status
    ``"interrupted"``: the partial trajectory and the checkpoint are kept, as for a wall-time budget) instead of
    raising KeyboardInterrupt wherever the solve happens to be; a second Ctrl-C raises KeyboardInterrupt at once.

    Only where Python's own handler (or a sweep worker's :func:`idle_worker_sigint`) is in place, in the main
    thread (signals reach no other thread): a handler the user or a framework installed is left alone, and so are
    runs in worker threads.  The handler in place before is restored after the block.  In a sweep's pool worker a
    further SIGINT changes nothing (the pool passes a terminal's Ctrl-C on to workers still busy after a grace
    period, which must not count as a second one; a second Ctrl-C to the sweep terminates its workers).  The
    caller raises :class:`~gflow.Interrupted` after the block (:func:`raise_if_interrupted`).
    """
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is not signal.default_int_handler and previous is not idle_worker_sigint:
        yield
        return

    worker = previous is idle_worker_sigint

    def handler(signum, frame):
        if monitor.interrupt_requested:  # (a sweep worker: its pool passed the Ctrl-C on; the pool ends it if need be)
            return
        monitor.interrupt_requested = True
        if not worker:  # a second Ctrl-C: KeyboardInterrupt at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\ngflow: Ctrl-C: stopping at the next step and keeping the trajectory so far"
              + ("" if worker else " (press Ctrl-C again to stop at once, losing it)"), file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: a solve on the CPU whose evaluation costs fewer flops than this runs on one torch thread (:func:`solve_threads`)
SERIAL_BELOW_FLOPS = 1e7


def check_threads(threads, warn: bool = True) -> int | None:
    """The ``threads`` argument of a solve: None (:func:`solve_threads` decides) or a positive int; more than the
    machine's cores warns (at the solve's caller): threads=1000 on 2 cores took 3.9 s for a run of 0.1 s."""
    if threads is None:
        return None
    threads = check_positive_int(threads, "threads")
    cores = os.cpu_count()
    if warn and cores is not None and threads > cores:
        from ..solution import GFlowWarning

        warnings.warn(f"threads={threads} is more than this machine's {cores} cores: oversubscribed threads wait on "
                      "each other at every operation (a small run took 40× as long); pass at most the cores, or "
                      "threads=None to let gflow choose", GFlowWarning, stacklevel=3)
    return threads


def solve_threads(flops_per_eval: float, device, threads: int | None = None) -> int:
    """The torch intra-op threads a solve runs on: ``threads`` where given, else one on the CPU below
    :data:`SERIAL_BELOW_FLOPS` per evaluation, else torch's setting.

    A small evaluation is a few dozen short tensor operations, each an OpenMP parallel region whose fork and
    barrier cost about what the work they split saves, and which turn into scheduler waits whenever another
    process shares the cores.  rk4 evaluations at 1.6e6, 1.3e7, 6.6e7, 4.1e7 (P-3L) and 3.3e8 flops on torch's 2
    threads of a 2-core AMD EPYC took 1.06, 0.95, 0.84, 0.74 and 0.75× the time on one thread with the machine
    idle, and 7.6, 5.4, 5.0, 13.8 and 2.6× with two other processes running (the demo's flow, m = 1024, n = 20,
    1.6e6 flops an evaluation: 38–56 s against 2.3–2.8 s).  Below 1e7 threads never paid; above it they pay on an
    idle machine, and ``threads=1`` is the choice on a shared one.  One thread also makes a small run's rounding
    independent of the machine's core count.
    """
    if threads is not None:
        return threads
    if torch.device(device).type != "cpu" or not flops_per_eval < SERIAL_BELOW_FLOPS:
        return torch.get_num_threads()
    return 1


@contextlib.contextmanager
def guarded_solve(monitor: Monitor, checkpoint=None, threads: int | None = None):
    """The block of an entry point's solve: :func:`stop_on_sigint`, and ``checkpoint``'s lock released where an
    exception leaves the block (a second Ctrl-C, a bug; the solve's own stops are :class:`Abort`, caught inside):
    its traceback, kept at a prompt, held the lock, and another process was refused as if the run went on.
    ``threads``: torch's intra-op threads inside the block (:func:`solve_threads`), restored after it."""
    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        with stop_on_sigint(monitor):
            try:
                yield
            except BaseException:
                if checkpoint is not None:
                    checkpoint.release_lock()
                raise
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def idle_worker_sigint(signum, frame) -> None:
    """The SIGINT handler of a sweep's pool worker between runs (:func:`gflow.sweeps.executors._init_worker`): a
    terminal's Ctrl-C reaches every process of the group, and an idle worker has nothing to stop (Python's own
    handler printed a traceback from the pool's queue); during a run, :func:`stop_on_sigint` takes over."""


def interrupted_message(t_kept: float, t1: float, n_steps: int, checkpoint) -> str:
    """The stored message of an interrupted run: where its kept trajectory ends, and how its checkpoint resumes it."""
    text = (f"interrupted by Ctrl-C (SIGINT) after {n_steps} steps; the trajectory is kept to t = {t_kept:.6g} "
            f"(of t1 = {t1:g})")
    if checkpoint is None:
        return text
    return f"{text}; the checkpoint {str(checkpoint.path)!r} holds the run there: the same call resumes it"


#: the statuses of a run stopped by one of its limits, and the argument that raises it: a checkpointed run so stopped
#: resumes when the same call is made with the limit raised (the limits are not part of a checkpoint's fingerprint)
LIMIT_STATUSES = {"time_budget": "max_wall_time", "max_steps": "max_steps"}


def limit_stop_message(message: str, status: str, checkpoint) -> str:
    """``message``, and for a run stopped by a limit (:data:`LIMIT_STATUSES`) whose checkpoint is on disk: that the
    checkpoint is kept, where, and that the same call with a larger limit resumes it (the message advised "raise
    max_wall_time" but said nothing of the checkpoint, and a run repeated from t = 0 with another path, or the file
    deleted as a leftover, lost hours).  Unchanged without a checkpoint, or where none could be written."""
    limit = LIMIT_STATUSES.get(status)
    if limit is None or checkpoint is None or not checkpoint.path.is_file():
        return message
    return (f"{message}; the checkpoint {str(checkpoint.path)!r} is kept and holds the run at its last step: the "
            f"same call with a larger {limit} resumes it from there")


def interrupted(text: str, result, *, whole: bool = False) -> Interrupted:
    """:class:`~gflow.Interrupted` with ``text``, ``result`` (a Solution or a list) attached and where to find it;
    ``whole``: it is the complete run (Ctrl-C came as it finished)."""
    where = "these Solutions" if isinstance(result, list) else "this Solution"
    return Interrupted(f"{text}: the exception's .solution holds {where}{', the whole run' if whole else ''} (at a "
                       "prompt, after an uncaught one: sys.last_value.solution)", result)


def raise_if_interrupted(monitor: Monitor, status: str, result, what: str) -> None:
    """Raise :class:`~gflow.Interrupted` with ``result`` (a Solution, or a list) attached where a Ctrl-C arrived
    during the run; a Ctrl-C that came as the run finished (nothing evaluated after it) is reported the same way,
    with the whole run attached, so that it is never swallowed."""
    if not monitor.interrupt_requested:
        return
    sols = result if isinstance(result, list) else [result]
    stopped = [s for s in sols if s.status == "interrupted"]
    if stopped:
        seeds = f" ({len(stopped)} of {len(sols)} seeds; the others had stopped before)" \
            if isinstance(result, list) and len(stopped) < len(sols) else ""
        raise interrupted(f"{what} {stopped[0].message}{seeds}", result)
    statuses = ", ".join(sorted({s.status for s in sols}))
    raise interrupted(f"Ctrl-C arrived as {what} finished [{statuses}]", result, whole=True)

