r"""The Filippov (sliding-mode) flow of ReLU and leaky-ReLU networks: event-driven, to a tolerance.

``gf.simulate(net, X, y, t1, method="filippov", rtol=..., atol=...)``.

**The flow.**  For σ piecewise linear with one kink at 0 (σ′ = s₊ above, s₋ below: ReLU s₋ = 0, leaky ReLU
s₋ = slope), the feature-space field (E4) Ḣ = −γ P G, P_ia = c_i σ′(H_ia) r_a, is smooth as long as no pair
(i, a) changes side.  Every pair is in one of three modes:

* ``+`` (h_ia > 0, σ′ = s₊) or ``−`` (h_ia < 0, σ′ = s₋): σ(h_ia) = σ′·h_ia, a linear piece;
* ``0`` (sliding, h_ia ≡ 0): the field pushes the pair into the kink from both sides, and the Filippov
  solution (see :mod:`gflow.solve.nonsmooth` for why the paper's σ′(0) = 0 defines no solution there) replaces
  σ′(h_ia) by the value in [s₋, s₊] that keeps ḣ_ia = 0.  Writing w_ib = σ′_ib r_b, the sliding pairs S_i of
  neuron i satisfy (ẇ-free) ``(w_i G)_a = 0`` for a ∈ S_i, i.e. the |S_i|×|S_i| system

      G_{S_i S_i} u_{S_i} = −(w_i^F G)_{S_i},       w_ib = u_b (b ∈ S_i),  w_ib = σ′_ib r_b (b ∉ S_i),

  one per neuron with sliding pairs, solved as one padded batch (pseudo-inverse of G_SS, cached until the
  pattern changes: a null direction of G_SS moves neither H nor W, since zᵀG_SS z = 0 ⇒ z Φ_S = 0).
  The equivalent σ′ of a sliding pair is u_b/r_b, written θ_b = (u_b/r_b − s₋)/(s₊ − s₋) ∈ [0, 1].

Between events the pattern is fixed and the flow is smooth (piecewise linear σ: r is affine in H), so an
embedded Runge–Kutta pair (Dormand–Prince 5(4), FSAL, with its 4th-order dense output) integrates it to rtol /
atol — on the state (the features' atol at most 1e-6·rtol of their scale: small features decide the events), and on
a step without events also on the residual: the error estimate δH maps to
δr = α Σ_i c_i σ′_i δH_i, held to ‖δr‖ ≤ rtol·‖r‖ (above the rounding of f), so the loss keeps its relative
accuracy as it falls (the state's atol alone let it drift 1.8× off at L ≈ 1e-19 with the default tolerances).
After each accepted step the pattern is checked:

* **arrival**: a ``±`` pair ends the step on the other side → its crossing time is the root of the dense
  output of h_ia on the step (bisection, to rounding);
* **exit**: a sliding pair's θ leaves [0, 1] → its time is found by Illinois-modified regula falsi on θ along the
  dense output (θ is continuous in time while the pattern is fixed), to a bracket of 1e-6 of the step, and the exit
  is placed at the bracket's outer end, where θ is already outside: placed inside, the released pair headed back
  into the kink and re-arrived at once (cycles of zero-length events; :func:`_exit_times`).

The step is cut at the earliest event (the state there is the dense output; arrivals are set to exactly 0),
and the new pattern is resolved: arrivals join the sliding set, θ is solved, and pairs whose θ falls outside
[0, 1] leave it to the side it points to (for an attracting pair, c_i r_b > 0: θ > 1 → ``+``, θ < 0 → ``−``;
for a repelling one the reverse), repeated until every sliding pair is consistent.  A repelling arrival
(c_i r_a ≤ 0) crosses.  This is an active-set event-driven scheme (Acary & Brogliato, *Numerical Methods for
Nonsmooth Dynamical Systems*, 2008, ch. 7; Filippov 1988, ch. 2): its accuracy is that of the Runge–Kutta
pair plus the event location, so the global error follows the tolerance — unlike fixed steps, whose error at
the kink is O(step) and chatters.

The cost grows with the number of events (each is one cut step plus one resolution, about 8 evaluations).
Events are frequent on wide nets: the P-3L ReLU net of Experiment 3 at m = D = 128, n = 50 has about 7 000 in
t ∈ [0, 200] (measured: ~250 per unit time early, fewer later), so this is a *reference* solver for small and
medium problems — the first whose answer is known to the tolerance — not a replacement for GD at paper scale.
``sol.stats`` reports ``n_events``, ``n_arrivals``, ``n_exits`` and ``n_sliding`` (pairs sliding at t1).

With ``error_estimate=True`` a second solve with every approximation loosened — 32× looser tolerances (16×, 8×,
4× where a looser solve stalls in an event cycle), the
embedded 4th-order solution propagated, events located and cut on the 3rd-order Hermite interpolant instead of
the 4th-order dense output (option ``lower_order=1``) — gives ``sol.error_estimate`` = 2× the relative difference
of the two losses (the second solve's error), its largest over neighbouring saved times and carried forward in time,
and at least the loss's rounding (:func:`gflow.solve.nonsmooth.rounding_floor`).  The raw difference under-reported:
it passes through 0 where the two solves' errors cross, and an error the returned solve makes at an event persists
while the looser solve's need not (ReLU, n = 6, d = 8, rtol 1e-5 to t = 200: 3.7e-5 off from t ≈ 30 on, a raw
difference of 6.1e-9 at t = 170; now 3.4e-5 there, the worst ratio true/estimate over 12 random ReLU and leaky-ReLU
cases at rtol 1e-5 and 1e-6 1.1, was 6 200).  It remains an estimate: the two solves' event decisions can err alike.
(Where steps are cut by events the tolerance barely matters and the error comes from the event states; the
interpolant is what makes the two solves differ there.)

**Neurons through w_i = 0** (shallow nets with n > d, where G has rank < n): a neuron can reach w_i = 0 — its pairs
reach the kink together as it moves on a line of rank G − 1 sliding pairs — where the Filippov solution is not
unique.  Located one by one, in rounding order, the first version let such a neuron bounce back (leaky ReLU,
d = 2, n = 11: 0.7 off in H against GD at small steps, which passes through) or kept it at 0.  An event that brings a
neuron to rank G sliding pairs whose features span G's range (:meth:`FlowConstants.collapsed`; dependent ones — random
features with D < n — leave w_i free along what they miss), or its features within :data:`NEAR_ZERO` of their size
before the step, now sets its row to 0 and lets :meth:`FlowConstants.emerge` decide the pattern it leaves with
(``n_emerged``) or that it stays.

**Ill-conditioned events.**  Which pair leaves or arrives next is decided by small quantities — a feature nearing
the kink, θ_b = u_b/r_b where a residual component r_b passes near 0 — and one decision changes the later flow.  With
the user's atol (1e-9 by default) bounding the error of small features, the Experiment 3 setting at m = 64, n = 50
ended 6.4e-3 off at t = 1 000 for every rtol from 1e-7 to 1e-9, and ``error_estimate=True`` said 7e-6 (its looser
solve took the same branch); with the features' atol tied to rtol (above) it is 1.3e-8 off at the default rtol, at
the same cost.  Such decisions remain sensitive: at m = 32, n = 12 (t = 1 000) rtol 1e-7 is 7e-7 off and rtol 1e-8
6.9e-3 (a 0.1-late exit keeps another pair from leaving) — ``error_estimate=True`` reports that one (6.8e-3).  Where
the loss matters to better than 1e-2 over long horizons, compare two tolerances.

Limits: feature space only (W and the test features are recovered exactly from A = ∫P, as for every
feature-space run); the running integrals of :func:`gflow.certify` are not carried (``integrals`` is
recorded as False); a neuron whose sliding pairs give a rank-deficient G_SS uses the minimum-norm solution.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..fields.feature_space import FeatureSpaceField
from . import _tableaus as T
from ._record import Abort, Monitor, Recorder

THETA_TOL = 1e-10  # θ within [−tol, 1 + tol] counts as inside (rounding in the small solves)
MAX_RESOLVE = 100  # passes of the pattern resolution at one event
MAX_STALLED_EVENTS = 2000  # consecutive events that advance time by (almost) nothing
CYCLE_REPEATS = 3  # … or, within such a run, this many events that end on the same pattern
SECANT_ITERS = 16  # at most this many evaluations locate an exit (Illinois regula falsi, _exit_times) ...
EXIT_BRACKET = 1e-6  # ... to a bracket this narrow (fraction of the step), placed at its outer end
ATOL_H_REL = 1e-6  # the features' absolute tolerance is at most this × rtol × their scale (run_filippov)
BISECT_ITERS = 16
NEWTON_ITERS = 3
NEAR_ZERO = 1e-6  # a neuron's features within this fraction of their size before an event step: w_i at 0
EMERGE_STEPS = 400  # Euler steps of a neuron's own flow near w_i = 0 for a first guess at the pattern it leaves with
EMERGE_ITERATIONS = 8  # active-set iterations per pair to make that pattern consistent

_C = torch.tensor(T.DOPRI5_C, dtype=torch.float64)
_A = torch.tensor(T.DOPRI5_A, dtype=torch.float64)
_B = torch.tensor(T.DOPRI5_B + (0.0,), dtype=torch.float64)
_E = torch.tensor(T.DOPRI5_E, dtype=torch.float64)
_P = torch.tensor(T.DOPRI5_P, dtype=torch.float64)  # (7, 4): dense output y0 + h Σ_j K_j Σ_p P_jp τ^{p+1}


def any_true(mask: torch.Tensor) -> bool:
    """``bool(mask.any())``, for a bool mask as the max of its bytes: torch's ``any`` over a bool tensor is not
    vectorised (48 against 3 µs at (512, 200) on an AMD EPYC Zen 4; the event-driven solvers ask it ~25 times a
    step).  Other dtypes go to ``any``."""
    if mask.dtype != torch.bool:
        return bool(mask.any())
    return mask.numel() > 0 and bool(mask.view(torch.uint8).max())


def any_rows(mask: torch.Tensor) -> torch.Tensor:
    """``mask.any(1)`` for a bool (rows, n) mask, as the max of each row's bytes: torch's ``any`` along a dim of a bool
    tensor is not vectorised (228 against 68 µs at (512, 200) on an Intel Xeon; ``sliding`` asks it several times a
    pass)."""
    if mask.dtype != torch.bool or mask.shape[1] == 0:
        return mask.any(1)
    return mask.view(torch.uint8).amax(1).view(torch.bool)


def kink_slopes(act) -> tuple[float, float] | None:
    """(s₋, s₊) if σ is piecewise linear with its only kink at 0 and σ(0) = 0 (ReLU, leaky ReLU), else None.

    Checked on 400 points from 1e-6 to 1e6 on each side, σ/u and σ′ both (six points let a ReLU capped at 10 pass
    as ReLU, and ``auto`` integrated it as one: loss 9.60 against GD's 3.80; a bad-input fuzz)."""
    r = torch.logspace(-6.0, 6.0, 200, dtype=torch.float64)
    u = torch.cat([-r.flip(0), r])
    try:
        s, ds = act.sigma(u), act.dsigma(u)
        s0 = float(act.sigma(torch.zeros(1, dtype=torch.float64))[0])
    except Exception:  # noqa: BLE001 - a user activation that cannot take float64 tensors
        return None
    q = torch.cat([s / u, ds])
    k = len(r)
    lo, hi = torch.cat([q[:k], q[2 * k:3 * k]]), torch.cat([q[k:2 * k], q[3 * k:]])
    if s0 != 0.0 or not bool(torch.isfinite(q).all()):
        return None
    if float(lo.max() - lo.min()) > 1e-12 * (1 + abs(float(lo[0]))) or \
            float(hi.max() - hi.min()) > 1e-12 * (1 + abs(float(hi[0]))):
        return None
    lo, hi = [float(lo[0])], [float(hi[0])]
    if abs(hi[0] - lo[0]) <= 1e-12 or hi[0] <= 0:
        return None
    return float(lo[0]), float(hi[0])


class PairSolves:
    """The batched per-neuron solves G_{S_i S_i} u = b on the pairs of ``S`` (m, n), padded to the largest |S_i|
    (rows: the neurons with a pair in S, restricted to ``rows_allowed``; ``rows`` is None if there are none).

    A rank-deficient G_SS (e.g. a shallow net with more sliding points than inputs) takes the minimum-norm
    solution (pseudo-inverse).  ``previous``: the solves of a pattern that differs in few neurons — the inverses of
    the neurons whose pairs are unchanged are taken from it (the padding is the identity: an inverse is its leading
    block), in place where the layout is the same (:meth:`_update`; ``previous`` cannot solve afterwards).
    ``exact``: inverses bitwise equal to a fresh build's — reused only where the pad width k is unchanged (one
    factored at another width rounds differently) and at the same offset modulo 64 bytes in the batch, the new ones
    placed as in a whole batch (:meth:`_inverses`).  Also used by :mod:`gflow.solve.sliding`.
    """

    def __init__(self, G: torch.Tensor, S: torch.Tensor, rows_allowed: torch.Tensor | None = None,
                 previous: PairSolves | None = None, exact: bool = False):
        if rows_allowed is not None:
            S = S & rows_allowed[:, None]
        self.S = S
        ii, bb = torch.nonzero(S, as_tuple=True)  # row-major: by neuron, then by point
        counts = torch.bincount(ii, minlength=S.shape[0])  # (S.sum(1), at a third of the cost)
        self.present = present = counts > 0
        if previous is not None and previous.rows is not None and previous.Ginv is not None and \
                torch.equal(present, previous.present) and int(counts.max()) == previous.k:
            self._update(G, previous, exact)
            return
        if not ii.numel():
            self.rows = None
            return
        # the padded layout from the pairs' positions (no sort): entry (local row of i, j-th pair of i) = b
        rows = torch.nonzero(present).flatten()
        self.rows = rows
        self.k = k = int(counts.max())
        self.local = local = torch.cumsum(present, 0) - 1  # neuron → its row in the padded arrays
        first = torch.cumsum(counts, 0) - counts  # index of each neuron's first pair in (ii, bb)
        li, pos = local[ii], torch.arange(ii.numel(), device=ii.device) - first[ii]
        idx = torch.zeros((rows.numel(), k), dtype=torch.int64, device=S.device)
        idx[li, pos] = bb
        mask = torch.zeros((rows.numel(), k), dtype=torch.bool, device=S.device)
        mask[li, pos] = True
        self.idx, self.mask, self.maskf = idx, mask, mask.to(G.dtype)
        if previous is None or previous.rows is None or (exact and previous.k != k):
            self.Ginv = self._inverses(G, idx, mask)
            return
        same = (present & previous.present & ~any_rows(S != previous.S))[rows]  # per padded row
        per = 64 // G.element_size()  # elements per 64 bytes
        if exact and (k * k) % per:  # an inverse kept must sit at the same offset modulo 64 bytes (_inverses)
            same &= (previous.local[rows] - torch.arange(rows.numel(), device=rows.device)) * (k * k) % per == 0
        new = ~same
        at = torch.nonzero(new).flatten() if exact else None
        old = previous.Ginv[previous.local[rows[same]]]
        if previous.k > k:
            old = old[:, :k, :k]
        elif previous.k < k:
            old = torch.nn.functional.pad(old, (0, k - previous.k, 0, k - previous.k))
            old[:, previous.k:, previous.k:] = torch.eye(k - previous.k, dtype=G.dtype, device=G.device)
        self.Ginv = torch.empty((rows.numel(), k, k), dtype=G.dtype, device=G.device)
        self.Ginv[same] = old
        if any_true(new):
            self.Ginv[new] = self._inverses(G, idx[new], mask[new], at)

    def _update(self, G: torch.Tensor, previous: PairSolves, exact: bool) -> None:
        """The layout of ``previous`` (the same rows and pad width k): its arrays with the changed neurons' rows
        rewritten and refactored (an event changes one or a few; a third of the cost of a whole build at m = 128,
        n = 50, where set_mode took 0.2 ms a call).  ``previous`` gives up its inverses."""
        rows, k = previous.rows, previous.k
        self.rows, self.local, self.k = rows, previous.local, k
        new = torch.nonzero(any_rows(self.S[rows] != previous.S[rows])).flatten()  # changed rows (local)
        self.idx, self.mask, self.maskf = previous.idx.clone(), previous.mask.clone(), previous.maskf.clone()
        self.Ginv, previous.Ginv = previous.Ginv, None
        if not new.numel():
            return
        # a neuron's sliding points in increasing order, then the padding (index 0, as a whole build's)
        on, order = torch.sort(self.S[rows[new]], dim=1, descending=True, stable=True)
        mask, idx = on[:, :k], order[:, :k]
        idx = torch.where(mask, idx, 0)
        self.idx[new], self.mask[new], self.maskf[new] = idx, mask, mask.to(G.dtype)
        self.Ginv[new] = self._inverses(G, idx, mask, new if exact else None)

    @property
    def gi(self) -> torch.Tensor:
        """(rows, k) row index of each padded entry: full[gi, idx]."""
        return self.rows[:, None].expand_as(self.idx)

    @functools.cached_property
    def pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(i, b, local row, position) of the pairs (row-major, as ``nonzero(S)``) and where each sits in the padded
        arrays (formed on first use: ``sliding`` reads it at every landing of a pattern, ``filippov`` never)."""
        li, pos = torch.nonzero(self.mask, as_tuple=True)
        return self.rows[li], self.idx[li, pos], li, pos

    @staticmethod
    def _inverses(G: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor,
                  at: torch.Tensor | None = None) -> torch.Tensor:
        """(G_SS)⁻¹ per padded row (identity on the padding; pseudo-inverse where G_SS is singular).

        ``at``: the rows' positions in the whole padded batch, for inverses bitwise equal to a whole build's: MKL's
        ``potri`` (``cholesky_inverse``) rounds differently with a matrix's address modulo 64 bytes (measured: 1 ulp
        in ~1 of 100 inverses at k = 13 between a batch and its rows one by one; none once each sits at the same
        offset modulo 64 bytes as in the whole batch), so each factor is placed at such an offset in a batch padded
        with identities.  (The pseudo-inverses, rare, are not placed.)"""
        k = idx.shape[1]
        Gss = G[idx[:, :, None], idx[:, None, :]]
        both = mask[:, :, None] & mask[:, None, :]
        Gss = torch.where(both, Gss, torch.eye(k, dtype=G.dtype, device=G.device).expand_as(Gss))
        L, info = torch.linalg.cholesky_ex(Gss)
        any_bad = any_true(info)
        if any_bad:
            bad = info != 0  # a failed factor may hold a zero pivot, which cholesky_inverse refuses: replace it
            L[bad] = torch.eye(k, dtype=G.dtype, device=G.device)
        per = 64 // G.element_size()
        period = per // math.gcd(k * k, per)  # batch positions with the same offset modulo 64 bytes
        if at is not None and period > 1 and at.numel() == 1:  # (the usual case: one neuron changed)
            p = int(at) % period
            if p:
                L = torch.cat([torch.eye(k, dtype=G.dtype, device=G.device).expand(p, k, k), L])
            Ginv = torch.cholesky_inverse(L)[p:]
        elif at is not None and period > 1:
            q = period * torch.arange(at.numel(), device=at.device) + at % period
            buf = torch.eye(k, dtype=G.dtype, device=G.device).repeat(int(q[-1]) + 1, 1, 1)
            buf[q] = L
            Ginv = torch.cholesky_inverse(buf)[q]
        else:
            Ginv = torch.cholesky_inverse(L)
        if any_bad:
            Ginv[bad] = torch.linalg.pinv(Gss[bad], hermitian=True)
        return Ginv

    def solve(self, rhs_full: torch.Tensor) -> torch.Tensor:
        """u (rows, k) with G_SS u = rhs_S, rhs_full (rows, n); zero on the padding."""
        return self.solve_padded(torch.gather(rhs_full, 1, self.idx))

    def solve_padded(self, rhs: torch.Tensor) -> torch.Tensor:
        """:meth:`solve` with rhs_S given in the padded layout (rows, k)."""
        rhs = rhs * self.maskf
        return torch.bmm(self.Ginv, rhs[:, :, None])[:, :, 0] * self.maskf


class FlowConstants:
    """What the Filippov solvers read from the problem: G, c, γ, α, y, the kink's slopes (s₋, s₊), the monitor."""

    def __init__(self, problem, slopes: tuple[float, float], monitor: Monitor):
        net = problem.net
        self.G = problem.G
        self.c = net.c
        self.c_col = net.c[:, None]
        self.gamma = float(net.gamma)
        self.alpha = float(net.alpha)
        self.y = problem.y
        self.sm, self.sp = slopes
        self.monitor = monitor
        self.m, self.n = net.m, problem.n
        self.theta_tol = max(THETA_TOL, 64 * torch.finfo(self.G.dtype).eps)  # float32: θ carries ~1e-7 rounding
        ev = torch.linalg.eigvalsh(self.G)
        #: numerical rank of G: a neuron with this many pairs on the kink has h_i ≡ 0 on every point (the landing
        #: conditions G_SS Ā_S = … then fix its whole row), more make G_SS singular
        self._rank_tol = float(ev[-1]) * self.n * torch.finfo(self.G.dtype).eps * 10
        self.rank_G = int((ev > self._rank_tol).sum())
        #: training points with φ(x_a) = 0 (G_aa = 0: x = 0 under the identity embedding, or all-zero ReLU random
        #: features): h_ia ≡ 0 on every neuron, never moved by the flow and moving nothing — pairs that sit on the
        #: kink without sliding, kept in a free mode.  Counted as sliding (or made to slide by the passage through
        #: w_i = 0) they held neurons at w_i = 0 that pass through it (2.5e-3 off the loss on a d = 1 net), and leaky
        #: ReLU crashed
        self.inert = torch.diagonal(self.G) == 0

    def slopes_of(self, mode: torch.Tensor) -> torch.Tensor:
        """σ′ of each pair's mode: s₋ (−1), 0 (sliding: its weight comes from a solve), s₊ (+1)."""
        # mode is int8: clamped there (vectorised) and converted, 1/0 and −1/0 — not compared with 0 (an int8 against
        # a scalar takes torch's broadcasting path): 117 → 21 µs for ReLU at (512, 200), 257 → 64 for leaky ReLU;
        # the same bits (1·s₊, and 0 + (−1)(−s₋) = s₋ exactly, +0 elsewhere)
        out = mode.clamp_min(0).to(self.G.dtype)
        if self.sp != 1.0:
            out.mul_(self.sp)
        if self.sm != 0.0:
            out.add_(mode.clamp_max(0).to(self.G.dtype), alpha=-self.sm)
        return out

    def residual(self, H: torch.Tensor) -> torch.Tensor:
        """r = α σ(H)ᵀc − y (σ(h) = s₊h above the kink, s₋h below; a sliding pair, h = 0, adds nothing)."""
        # σ(h) = max(s₋h, s₊h) for s₋ ≤ s₊ (min otherwise): the product on h's side exactly (rounding is monotone),
        # in three vectorised passes — the float comparison and where took 482 against ~60 µs at (512, 200)
        sig, other = H * self.sm, H * self.sp
        (torch.maximum if self.sm <= self.sp else torch.minimum)(sig, other, out=sig)
        return torch.addmv(self.y, sig.T, self.c, beta=-1.0, alpha=self.alpha)

    def emerge(self, H0: torch.Tensor, H1: torch.Tensor, mode1: torch.Tensor, rows: torch.Tensor,
               dt: float) -> torch.Tensor:
        """Neurons ``rows`` whose feature row a step from ``H0`` to ``H1`` collapsed onto h_i = 0 (w_i = 0; as many
        pairs on the kink as G has rank): set in ``mode1`` (in place) the pattern p ∈ {−1, 0, +1}ⁿ with which each
        leaves w_i = 0, if it does.

        At w_i = 0 every pair is on its kink, and the Filippov velocities are ḣ_ia = −γ c_i Σ_b σ′_b r_b G_ba with
        σ′_b = s₊ (p_b = +1), s₋ (p_b = −1), or, for the pairs that slide on (p_b = 0), the value in [s₋, s₊] that
        keeps ḣ_ib = 0 (a least-squares solve on those pairs).  The neuron can leave along p if sign ḣ_i = p on its
        free pairs and the sliding pairs' σ′ are admissible — and several p can be (the Filippov solution through
        w_i = 0 is not unique: a leaky-ReLU net with d = 3, n = 9 had both "pair 8 slides" and "pair 8 leaves
        upwards"; GD at small steps takes the second, and the first put the run 0.2 off in H).  The exact flow
        passes *near* 0, and what it leaves with depends on how it came: so the first guess is the neuron's own flow
        through the passage, from ``H0`` by gradient-descent steps far below the solver's (:meth:`_local_pattern`),
        then made consistent by an active-set iteration (:meth:`_exit_pattern`).  Returns the neurons for which no
        pattern is found with fewer than rank G sliding pairs: w_i = 0 holds them (the Filippov flow's equilibrium);
        and those whose features before the step (``dt`` long) were too far from 0 to reach it at the neuron's largest
        rate (4×): their collapse is the landing's, not a passage (a random-feature fuzz case, |h| = 1.4 before a
        step of δ/1024; letting it leave put the run 2.4e-3 off GD, keeping it at 0 5.5e-5).  Rare (a neuron through
        w_i = 0): a loop over those neurons."""
        r = self.residual(H1)
        stuck = self.far_from_zero(H0, r, rows, dt)
        rate = self.rates(r)
        for i in torch.nonzero(rows & ~stuck).flatten().tolist():
            stuck[i] = not self.leave_with(i, r, self._local_pattern(i, r, H0[i], self._own_rate(i, r, H0[i],
                                                                                              float(rate[i]))), mode1)
        return stuck

    def _side_pattern(self, h0: torch.Tensor) -> torch.Tensor:
        """Each pair's side of the kink at ``h0`` (±1; inert pairs, at h ≡ 0, free on −1)."""
        return torch.where(self.inert, -1, torch.sign(h0)).to(torch.int8)

    def _own_rate(self, i: int, r: torch.Tensor, h0: torch.Tensor, bound: float) -> float:
        """Neuron i's largest rate on its own pattern at ``h0`` (|ḣ_i| there), or ``bound`` (:meth:`rates`) where that
        is 0: the local flow's steps follow how fast the neuron itself moves — sized by the all-above bound, a neuron
        arriving 60× slower (d = 1: F = 0.0094 against 0.61) did not get through the passage in the local flow's
        steps, took the side it came from, and was held at w_i = 0 (3.9 % off the loss)."""
        p = self._side_pattern(h0)
        v = float(((self.slopes_of(p) * r) @ self.G).abs().max()) * abs(self.gamma * float(self.c[i]))
        return v if v > 0 else bound

    def leave_with(self, i: int, r: torch.Tensor, p0: torch.Tensor, mode1: torch.Tensor) -> bool:
        """Whether neuron i, at w_i = 0, can leave: the consistent pattern found from ``p0`` (:meth:`_exit_pattern`)
        with fewer than rank G sliding pairs, set in ``mode1`` (in place)."""
        p = self._exit_pattern(i, r, p0)
        if p is None or int((p == 0).sum()) >= self.rank_G:
            return False
        mode1[i] = p
        return True

    def rates(self, r: torch.Tensor) -> torch.Tensor:
        """Each neuron's largest rate (m,), γ|c_i| max_a |((s₊ r) G)_a| (the scale of its local flow; all pairs above
        the kink)."""
        return ((self.sp * r) @ self.G).abs().max() * (self.gamma * self.c).abs()

    def far_from_zero(self, H0: torch.Tensor, r: torch.Tensor, rows: torch.Tensor, dt: float,
                      bound: bool = False) -> torch.Tensor:
        """The neurons of ``rows`` whose features ``H0`` are too far from 0 to reach it in a step of ``dt``: beyond
        4× what their largest rate (:meth:`rates`) covers, or, with ``bound``, beyond 2× what a bound on any
        velocity their pairs can have covers (γ|c_i| max(|s₋|, |s₊|) max_a Σ_b |r_b G_ba|, whatever the pattern:
        :meth:`rates` is the velocity of one pattern and can be far below it where r's terms cancel)."""
        if bound:
            reach = (r.abs() @ self.G.abs()).max() * (max(abs(self.sp), abs(self.sm)) * abs(self.gamma) * 2 * float(dt))
            reach = reach * self.c.abs()
        else:
            reach = self.rates(r) * (4 * float(dt))
        return rows & (H0.abs().amax(1) > reach)

    def _at_zero(self, i: int, r: torch.Tensor, p: torch.Tensor):
        """Neuron i at w_i = 0 with pattern p: (ḣ_i, σ′r with the sliding pairs' solved, their θ or None)."""
        G, sm, sp = self.G, self.sm, self.sp
        a = self.slopes_of(p) * r  # σ′ r of the free pairs (0 on the sliding ones)
        S = p == 0
        th = None
        if any_true(S):
            u = torch.linalg.pinv(G[S][:, S], hermitian=True) @ (-(a @ G[:, S]))
            a[S] = u
            rs = r[S]
            th = (u / torch.where(rs == 0, torch.ones_like(rs), rs) - sm) / (sp - sm)
        return (a @ G) * (-self.gamma * float(self.c[i])), a, th

    def collapsed(self, mode0: torch.Tensor, mode1: torch.Tensor) -> torch.Tensor:
        """The neurons (m,) whose count of sliding pairs goes from below rank G (``mode0``) to rank G (``mode1``), and
        whose sliding pairs' φ(x_a) span G's range: their whole feature row is then on the kink, w_i = 0 (never where
        G has full rank: n pairs on the kink leave w_i free off the span of the φ(x_a); n = 1 slides so)."""
        if self.rank_G >= self.n:
            return torch.zeros_like(mode0[:, 0], dtype=torch.bool)
        out = ((mode1 == 0).sum(dim=1) >= self.rank_G) & ((mode0 == 0).sum(dim=1) < self.rank_G) & (self.c != 0)
        # … and only where those pairs' features span G's range: dependent ones (random features with D < n) leave
        # w_i free along what they miss — a D = 4, n = 12 net's neuron with |h| ≈ 0.67 was set to 0 by ``filippov``
        # on its fifth pair's arrival (2e-2 off the loss by t = 10, where GD and ``sliding`` agree to 1e-6)
        for i in torch.nonzero(out).flatten().tolist():
            S = mode1[i] == 0
            if int((torch.linalg.eigvalsh(self.G[S][:, S]) > self._rank_tol).sum()) < self.rank_G:
                out[i] = False
        return out

    def _violations(self, p: torch.Tensor, hd: torch.Tensor, th: torch.Tensor | None):
        """(free pairs moving against their side, sliding pairs whose θ leaves [0, 1]) of a pattern at w_i = 0."""
        S = p == 0
        bad_free = ~S & (torch.sign(hd).to(p.dtype) != p) & ~self.inert  # (an inert pair's ḣ is 0 in every pattern)
        bad_slide = torch.zeros_like(S)
        if th is not None:
            bad_slide[S] = (th > 1 + self.theta_tol) | (th < -self.theta_tol)
        return bad_free, bad_slide

    def _local_pattern(self, i: int, r: torch.Tensor, h0: torch.Tensor, v: float) -> torch.Tensor:
        """A first guess at the pattern neuron i leaves w_i = 0 with: its own flow ḣ_i = −γ c_i (σ′(h_i) ∘ r) G, the
        rest of the net frozen (r fixed), from its features ``h0`` before the collapsing step, by Euler steps of
        1/50 of |h0| — gradient descent at a step far below the smallest one, through the passage; pairs within 2 %
        of the largest |h_ib| after :data:`EMERGE_STEPS` steps chatter (slide); ``v``: the neuron's largest rate."""
        scale = -self.gamma * float(self.c[i])
        size = float(h0.abs().max())
        if not (v > 0 and size > 0):
            return self._side_pattern(h0)
        tau = size / (50 * v)
        h = h0.clone()
        for _ in range(EMERGE_STEPS):
            p = torch.sign(h).to(torch.int8)
            h = h + tau * ((self.slopes_of(p) * r) @ self.G) * scale
        p = torch.sign(h).to(torch.int8)
        p[h.abs() <= 0.02 * h.abs().max()] = 0
        p[self.inert] = -1  # (free: they never slide)
        return p

    def _exit_pattern(self, i: int, r: torch.Tensor, p: torch.Tensor) -> torch.Tensor | None:
        """The consistent pattern of :meth:`emerge` for neuron i from the start ``p``, or None.  One pair changes per
        iteration, the one that violates most (changing all at once cycles between the pattern and its reverse)."""
        sm, sp = self.sm, self.sp
        p = p.clone()
        flipped = torch.zeros_like(p, dtype=torch.bool)
        for _ in range(EMERGE_ITERATIONS * p.numel()):
            hd, a, th = self._at_zero(i, r, p)
            bad_free, bad_slide = self._violations(p, hd, th)
            if not any_true(bad_free) and not any_true(bad_slide):
                break
            score = torch.where(bad_free, hd.abs(), torch.zeros_like(hd))
            if th is not None:  # (θ's distance outside [0, 1], in units of the free pairs' rates)
                S = p == 0
                excess = torch.zeros_like(hd)
                excess[S] = torch.maximum(th - 1, -th).clamp(min=0.0) * hd.abs().max()
                score = torch.where(bad_slide, excess, score)
            b = int(score.argmax())
            if bool(bad_free[b]):
                if bool(flipped[b]):  # against both sides: slides
                    p[b] = 0
                else:  # first to the other side
                    p[b] = -p[b]
                    flipped[b] = True
            else:  # released: to the side its σ′ clipped to [s₋, s₊] moves it
                S = p == 0
                a[S] = (sm + (sp - sm) * th.clamp(0.0, 1.0)) * r[S]
                side = float(((a @ self.G[:, b]) * (-self.gamma * float(self.c[i]))).sign())
                p[b] = 1 if side >= 0 else -1
        else:
            return None
        for b in torch.nonzero(p == 0).flatten().tolist():  # a sliding pair that could as well leave, leaves
            for side in (1, -1):
                q = p.clone()
                q[b] = side
                hd, _, th = self._at_zero(i, r, q)
                bad_free, bad_slide = self._violations(q, hd, th)
                if not any_true(bad_free) and not any_true(bad_slide):
                    p = q
                    break
        return p


class _Sliding(FlowConstants):
    """The flow on a fixed pattern of modes (+1, −1, 0 = sliding), with the batched per-neuron solves.

    :meth:`set_mode` builds the solves from the last pattern's (:class:`PairSolves` ``previous``, ``exact``: an event
    changes the pairs of one or a few neurons; the others' inverses are kept) and precomputes what :meth:`eval`
    reads; :meth:`eval` builds [Q; w] in its output and scales it there.  Both give bitwise the results of the
    former fresh build per pattern and its operations (every choice below keeps the rounding).  Measured on the
    P-3L ReLU problem at m = D = 128, n = 50, t = 10 (2-core AMD EPYC, one thread, in the run): set_mode 280 →
    195 µs a call, eval 131 → 88 µs."""

    def __init__(self, problem, slopes: tuple[float, float], monitor: Monitor):
        super().__init__(problem, slopes, monitor)
        self.kw = {"dtype": self.G.dtype, "device": self.G.device}
        self.mode: torch.Tensor | None = None
        self._pat: PairSolves | None = None
        self._sliding: torch.Tensor | None = None
        self.theta_half: torch.Tensor | None = None
        #: θ = u/r exactly where s₋ = 0, s₊ = 1 (ReLU): (u/r − 0)/1 rounds to u/r
        self._theta_plain = self.sm == 0.0 and self.sp == 1.0

    # -- pattern ----------------------------------------------------------------------------------------
    def set_mode(self, mode: torch.Tensor) -> None:
        self.mode = mode
        self.sign = mode.to(self.G.dtype)
        self.slope = self.slopes_of(mode)  # s₊, s₋, 0 on +, −, the kink
        self.free = self.sign.abs()  # 1 off the kink, 0 on it
        # −γ·free in one factor: ((Q c) (−γ)) free and (Q c) (−γ free) round alike (free ∈ {0, 1})
        self.neg_gamma_free = self.free * (-self.gamma)
        sliding = mode == 0
        if self._sliding is not None and torch.equal(sliding, self._sliding):
            return
        self._pat = pat = PairSolves(self.G, sliding, previous=self._pat, exact=True)
        self._sliding = sliding
        self.rows = pat.rows
        if pat.rows is not None:
            self.idx, self.mask, self.maskf, self.Ginv = pat.idx, pat.mask, pat.maskf, pat.Ginv
            self.flat = (pat.rows[:, None] * self.n + pat.idx).flatten()  # Q.view(-1)[flat] = Q[rows][i, idx]
            self.neg_maskf = -pat.maskf
            if self.theta_half is None or self.theta_half.shape != pat.maskf.shape:
                self.theta_half = torch.full_like(pat.maskf, 0.5)

    # -- field ------------------------------------------------------------------------------------------
    def eval(self, H: torch.Tensor, out: torch.Tensor,
             theta: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Write [Ḣ, Ȧ] into out (2, m, n); returns r and θ of the sliding pairs (ms, k) or None (also with
        ``theta=False``: the inner stages of a step, which do not read it)."""
        self.monitor.on_eval()
        r = torch.addmv(self.y, (self.slope * H).T, self.c, beta=-1.0, alpha=self.alpha)
        # w_ib = σ′_ib r_b (0 on sliding pairs) and Q = w G are built in place in out = [Q; w], then scaled there
        Q, w = out[0], out[1]
        torch.mul(self.slope, r, out=w)
        torch.mm(w, self.G, out=Q)
        th = None
        if self.rows is not None:
            rows, idx = self.rows, self.idx
            rhs = torch.take(Q, self.flat).view_as(idx).mul_(self.neg_maskf)
            u = torch.bmm(self.Ginv, rhs[:, :, None])[:, :, 0].mul_(self.maskf)
            add = torch.zeros((2, rows.numel(), self.n), **self.kw)  # [us G; us], us: u at the sliding points
            add[1].scatter_add_(1, idx, u)
            torch.mm(add[1], self.G, out=add[0])
            out.index_add_(1, rows, add)
            if theta:
                th = torch.take(r, idx)
                torch.div(u, th, out=th)
                if not self._theta_plain:
                    th.sub_(self.sm).div_(self.sp - self.sm)
                th = torch.where(self.mask, th, self.theta_half)
        out.mul_(self.c_col)
        out[0].mul_(self.neg_gamma_free)  # sliding pairs: ḣ = 0 exactly
        # 0·x is NaN exactly where x is ±inf or NaN, and a sum of ±0 and NaN cannot overflow: isfinite(·).all()
        # in 2 operations (it took 14 µs of the 134 µs of an evaluation)
        if math.isnan(float(torch.mul(out[0], 0.0).sum())):
            raise _NonFinite
        return r, th

    def orientation(self, r: torch.Tensor) -> torch.Tensor:
        """sign(c_i r_a) (m, n): > 0 where the kink attracts pair (i, a)."""
        return torch.sign(self.c_col * r[None, :])


class _NonFinite(Exception):
    pass


def _comb(w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j K_j over the first len(w) stages: ``torch.tensordot(w, K[:len(w)], dims=1)`` without its Python
    wrapper (~15 µs a call, 7 calls a step): the same (1, j) × (j, N) product, so the same rounding."""
    j = w.shape[0]
    return torch.mm(w.view(1, j), K[:j].view(j, -1)).view(K.shape[1:])


def _cycle_message(stalled: int, t: float) -> str:
    return (f"{stalled} consecutive pattern events at t = {t:.6g} advanced time by nothing (an event cycle — on "
            "shallow nets often a neuron resting at w_i = 0); use method='sliding' (the same Filippov flow by time "
            "steps, e.g. step=1/64, error_estimate=True), loosen rtol/atol, or use method='euler' with "
            "error_estimate=True")


def _initial_step(y, f, rtol, atol, t1):
    sc = atol + rtol * y.abs()
    d0 = float(torch.linalg.vector_norm(y / sc)) / math.sqrt(y.numel())
    d1 = float(torch.linalg.vector_norm(f / sc)) / math.sqrt(y.numel())
    h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    return min(h, t1)


def run_filippov(field: FeatureSpaceField, grid: np.ndarray, rtol: float, atol: float, recorder: Recorder,
                 monitor: Monitor, slopes: tuple[float, float], options: dict | None = None) -> dict:
    """Integrate the Filippov flow of ``field`` over ``grid``, recording at every grid time; returns stats.

    Raises :class:`Abort` with a status on failure (the partial trajectory stays in ``recorder``).
    """
    opts = dict(options or {})
    max_step = float(opts.get("max_step", math.inf))
    lower_order = bool(opts.get("lower_order", 0))
    safety, ifactor, dfactor = 0.9, 10.0, 0.2
    _check_mn_layout(field, "filippov")
    problem = field.problem
    flow = _Sliding(problem, slopes, monitor)
    stats = {"n_events": 0, "n_arrivals": 0, "n_exits": 0, "n_sliding": 0, "n_resolve_passes": 0, "n_emerged": 0}
    monitor.extra_stats = stats
    y = field.initial_state()
    H0 = y[0]
    scale = float(H0.abs().max()) if H0.numel() else 1.0
    h_eps = 64 * torch.finfo(y.dtype).eps * max(scale, 1.0)
    # the features' absolute tolerance: at most ATOL_H_REL·rtol of their scale.  The events are decided by small
    # features — a pair nearing the kink, θ = u/r of a sliding pair — which the user's atol (1e-9 by default, meant
    # for the state as a whole) left unresolved: the Experiment 3 setting at m = 64, n = 50 ended 8.7e-4 off at
    # t = 200 and 6.4e-3 at t = 1 000 at rtol 1e-7 and 1e-9 alike (a decision flipped), 5e-11 and 1.3e-8 with this, at
    # the same cost (3 000 events, 6.6 s); A = ∫P keeps the user's atol
    atol_H = min(atol, ATOL_H_REL * rtol * scale) if scale > 0 else atol  # (H₀ = 0: no scale, the user's atol)
    atol_state = torch.tensor([atol_H, atol], dtype=y.dtype, device=y.device).view(2, *([1] * (y.dim() - 1)))
    mode = torch.where(H0 > 0, 1, -1).to(torch.int8)
    t = 0.0
    recorder.record(0.0, y)
    K = torch.empty((7,) + tuple(y.shape), dtype=y.dtype, device=y.device)
    ystage = torch.empty_like(y)
    a, b, e, P = (x.to(y.device, y.dtype) for x in (_A, _B, _E, _P))
    if lower_order:
        P = _hermite(b - e)  # and the 3rd-order Hermite interpolant for event times and event states
    t1 = float(grid[-1])
    unit = monitor.time_unit  # (the time unit of the step thresholds: min(1, t1))
    # the residual's own error control: r = α σ(H)ᵀc − y is linear in H on a fixed pattern, so the step's error
    # estimate maps to δr = α Σ_i c_i σ′_i δH_i, held to ‖δr‖ ≤ rtol·‖r‖ (above the rounding of f): the state's
    # atol alone let the loss drift 3e-2 off at L ≈ 1e-20 with the default tolerances (the residual shrinks to
    # 1e-10 while atol = 1e-9 bounds the error of H)
    # (the floor: 1e3·eps·‖y‖, and 10·eps·‖Σ_i |α c_i σ(h_i)|‖ for the rounding of the output's terms, which cancel
    # where the targets are small: with y = 0 the residual reached that rounding, ~1e-15, and held to rtol·‖r‖ the
    # steps shrank until the run ended on its time budget — m = D = 32, n = 10, 200 000 evaluations to t = 1 350)
    eps_r = 1e3 * float(torch.finfo(y.dtype).eps)
    y_norm = float(torch.linalg.vector_norm(problem.y))
    alpha_c = flow.alpha * flow.c
    alpha_abs_c = alpha_c.abs()
    dH = torch.empty_like(H0)
    try:
        zero0 = (H0 == 0) & ~flow.inert  # (inert pairs sit at h = 0 in a free mode for good)
        mode, r, theta = _resolve(flow, y, mode, arrivals=zero0, prev=mode.clone(), K0=K[0], stats=stats)
        r_start = r
        h = _initial_step(y, K[0], rtol, atol, t1)
        if not h >= 1e-12 * unit:  # extreme data (y × 1e150): h underflowed and 1e5 steps of length 0 were taken
            monitor.raise_collapse(h, 0.0)
        h = min(h, max_step)
        kgrid = 1
        stalled = 0
        seen: dict[bytes, int] = {}  # patterns after the events of the current run of zero-length events
        while kgrid < len(grid):
            t_target = float(grid[kgrid])
            landing = h >= (t_target - t) * (1 - 1e-12)
            if landing:
                h = t_target - t
            monitor.landing_time = t_target
            # --- one Dormand–Prince 5(4) step on the current pattern (K[0] = f(y) is valid) ---------
            for j in range(1, 6):
                torch.add(y, _comb(a[j, :j], K), alpha=h, out=ystage)
                flow.eval(ystage[0], K[j], theta=False)
            y1 = torch.add(y, _comb(b[:6], K), alpha=h)
            r1, theta1 = flow.eval(y1[0], K[6])
            err = _comb(e, K).mul_(h)
            if lower_order:  # propagate the embedded 4th-order solution (the estimate's second solve)
                y1.sub_(err)
                y1[0].mul_(flow.free)
                r1, theta1 = flow.eval(y1[0], K[6])
            sc = torch.maximum(y.abs(), y1.abs()).mul_(rtol).add_(atol_state)
            enorm = float(torch.linalg.vector_norm(err / sc)) / math.sqrt(err.numel())
            dr = torch.mv(torch.mul(err[0], flow.slope, out=dH).T, alpha_c)  # (flow.slope: σ′ of the pattern)
            # norm-wise (L's relative error is ‖δr‖/‖r‖; a component of r passing through 0 must not set the step);
            # applied to steps without events only (below): across a crossing the estimate measures the kink, which
            # the event location resolves — held to ‖r‖ there, it shrank the steps until events stalled
            r_norm = max(float(torch.linalg.vector_norm(r_start)), float(torch.linalg.vector_norm(r1)))
            terms = torch.mv(torch.mul(y[0], flow.slope, out=dH).abs_().T, alpha_abs_c)  # Σ_i |α c_i σ(h_i)|
            r_floor = eps_r * max(y_norm, 1e-2 * float(torch.linalg.vector_norm(terms)), 1e-300)
            enorm_r = float(torch.linalg.vector_norm(dr)) / (rtol * r_norm + r_floor)
            if not (math.isfinite(enorm) and math.isfinite(enorm_r)):
                raise _NonFinite
            if enorm > 1.0:
                h = _rejected(monitor, t, h, max(dfactor, safety * enorm ** -0.2))
                continue
            h_new = min(h * min(ifactor, max(dfactor, safety * enorm ** -0.2 if enorm > 0 else ifactor)), max_step)
            # --- events on [t, t + h] -------------------------------------------------------------------
            H1 = y1[0]
            s0 = flow.sign  # (mode as ±1, 0: h·s0 < −h_eps is h < −h_eps on +, h > h_eps on −, never on 0)
            cross = torch.mul(H1, s0) < -h_eps
            # a pair may cross and come back within one step (both ends on its side): candidates turn round
            # inside the step, heading for the kink at its start; their dense output is checked inside
            turn = ~cross & (K[0][0] * s0 < 0) & (K[6][0] * s0 > 0)
            if any_true(turn):
                cross = cross | _dips(y[0], K[:, 0], P, h, turn, mode, h_eps)
            # arrivals first (their times come from the dense output alone), then exits before the earliest one
            tau_c = _crossing_times(y[0], K[:, 0], P, h, cross, mode) if any_true(cross) else None
            exit_tau = None
            if theta1 is not None:
                out = (theta1 < -THETA_TOL) | (theta1 > 1 + THETA_TOL)
                if any_true(out):
                    exit_tau = _exit_times(flow, y, K, P, h, theta, theta1, out,
                                           float(tau_c[1].min()) if tau_c is not None else 1.0)
            if tau_c is not None or exit_tau is not None:
                tau_star = min(float(tau_c[1].min()) if tau_c is not None else 2.0,
                               float(exit_tau[1].min()) if exit_tau is not None else 2.0)
                tau_star = min(max(tau_star, 0.0), 1.0)
                window = tau_star + 1e-9
                ye = torch.add(y, _comb(torch.mv(P, _powers(tau_star, P)), K), alpha=h)
                arrivals = torch.zeros_like(mode, dtype=torch.bool)
                prev = mode.clone()
                if tau_c is not None:
                    sel = tau_c[1] <= window
                    ii, aa = tau_c[0][0][sel], tau_c[0][1][sel]
                    arrivals[ii, aa] = True
                    ye[0][ii, aa] = 0.0
                    stats["n_arrivals"] += int(sel.sum())
                new_mode = mode.clone()
                if exit_tau is not None:
                    sel = exit_tau[1] <= window
                    ii, aa, th = exit_tau[0][0][sel], exit_tau[0][1][sel], exit_tau[2][sel]
                    orient = flow.orientation(r1)[ii, aa]
                    up = (th > 1) == (orient > 0)
                    new_mode[ii, aa] = torch.where(up, 1, -1).to(torch.int8)
                    stats["n_exits"] += int(sel.sum())
                dt = tau_star * h
                monitor.on_step(t, dt, True)
                stalled = stalled + 1 if dt <= 1e-13 * max(unit, abs(t)) else 0
                if stalled > MAX_STALLED_EVENTS:
                    raise Abort("stalled", _cycle_message(stalled, t))
                t = t + dt
                y, y_start = ye, y
                # a neuron whose pairs all reach the kink together passes through w_i = 0 (it moves on a line of
                # sliding pairs, h_i ∝ s(t)): located one by one, its pairs crossed in rounding order and it bounced
                # back (leaky ReLU, d = 2, n = 11: 0.7 off in H against GD at small steps)
                near0 = arrivals.any(1) & (ye[0].abs().amax(1) <= NEAR_ZERO * y_start[0].abs().amax(1))
                mode, r, theta = _resolve(flow, y, new_mode, arrivals=arrivals, prev=prev, K0=K[0], stats=stats)
                r_start = r
                zero = flow.collapsed(prev, mode) | near0
                if any_true(zero):  # w_i at 0: the pattern it leaves with, if it does (FlowConstants.emerge)
                    stuck = flow.emerge(y_start[0], y[0], mode, zero, dt)
                    stats["n_emerged"] += int((zero & ~stuck).sum())
                    mode[stuck] = 0  # the Filippov flow's equilibrium w_i = 0: every pair slides
                    y[0][zero] = 0.0
                    mode, r, theta = _resolve(flow, y, mode, arrivals=torch.zeros_like(arrivals), prev=mode.clone(),
                                              K0=K[0], stats=stats)
                    r_start = r
                stats["n_events"] += 1
                monitor.partial = (t, y)
                if stalled:  # a pattern met again in the same instant: the events cycle (one such cycle took 2 000
                    key = mode.cpu().numpy().tobytes()  # events, 40 s, to reach MAX_STALLED_EVENTS)
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] >= CYCLE_REPEATS:
                        raise Abort("stalled", _cycle_message(stalled, t))
                else:
                    seen.clear()
                h = max(h_new if tau_star >= 1.0 else h, 1e-12 * max(unit, t))
                continue
            # --- accept (no event in the step: the residual's relative error too) ---------------------------
            if enorm_r > 1.0:
                h = _rejected(monitor, t, h, max(dfactor, safety * enorm_r ** -0.2))
                continue
            if enorm_r > enorm:
                h_new = min(h * min(ifactor, max(dfactor, safety * enorm_r ** -0.2)), max_step)
            if not landing and not h > 1e-12 * max(unit, abs(t)) * 1e-3:  # (no progress: stop, never spin)
                monitor.raise_collapse(h, t)
            monitor.on_step(t, h, True)
            t = t_target if landing else t + h
            y = y1
            K[0].copy_(K[6])
            theta, r_start = theta1, r1
            monitor.partial = (t, y)
            if landing:
                recorder.record(t, y)
                kgrid += 1
            h = h_new
    except _NonFinite:
        monitor.raise_nonfinite(t)
    stats["n_sliding"] = int((mode == 0).sum())
    monitor.partial = None
    return stats


def _check_mn_layout(field, method: str) -> None:
    """The event-driven solvers index the rows of H = state[0] in place: they need the (2, m, n) layout."""
    if getattr(field, "layout", None) != "mn":
        raise ValueError(f"method {method!r} needs the feature-space field in layout 'mn' (state [H, A] of shape "
                         f"(2, m, n)), got layout {getattr(field, 'layout', None)!r}; gf.simulate sets it")


def _rejected(monitor: Monitor, t: float, h: float, factor: float) -> float:
    """The step h from t was rejected: count it and return the shorter step h·factor (Abort if it collapsed)."""
    monitor.on_step(t, h, False)
    h *= factor
    if h < 1e-12 * max(monitor.time_unit, abs(t)):
        raise Abort("step_size_collapse", f"the step size collapsed to {h:.3g} at t = {t:.6g} on a fixed "
                    "activation pattern; check the data scale or loosen rtol/atol")
    return h


def _hermite(w: torch.Tensor) -> torch.Tensor:
    """The cubic Hermite interpolant on (y0, f0 = K₀, y1 = y0 + h Σ w_j K_j, f1 = K₆) in the dense-output form
    y0 + h Σ_j K_j Σ_p P_jp τ^{p+1} (P: (7, 4), last column 0)."""
    d0 = torch.zeros_like(w)
    d0[0] = 1.0
    d6 = torch.zeros_like(w)
    d6[6] = 1.0
    return torch.stack([d0, 3 * w - 2 * d0 - d6, d0 + d6 - 2 * w, torch.zeros_like(w)], dim=1)


def _powers(tau: float | torch.Tensor, P: torch.Tensor):
    if isinstance(tau, torch.Tensor):
        return torch.stack([tau, tau**2, tau**3, tau**4], dim=-1)
    return torch.tensor([tau, tau**2, tau**3, tau**4], dtype=P.dtype, device=P.device)


def _dips(H0, KH, P, h, turn, mode, h_eps):
    """The pairs of ``turn`` whose dense output crosses the kink inside the step (checked at 32 points)."""
    ii, aa = torch.nonzero(turn, as_tuple=True)
    coef = (P.T @ KH[:, ii, aa]).mul_(h)  # (4, q)
    tau = torch.linspace(0.0, 1.0, 33, dtype=H0.dtype, device=H0.device)[1:-1, None]
    val = H0[ii, aa] + (((coef[3] * tau + coef[2]) * tau + coef[1]) * tau + coef[0]) * tau  # (31, q)
    wrong = (val * mode[ii, aa].to(H0.dtype) < -h_eps).any(dim=0)
    out = torch.zeros_like(turn)
    out[ii[wrong], aa[wrong]] = True
    return out


_GRID = np.linspace(0.0, 1.0, 33)[1:, None]  # (np.linspace: ~25 µs a call in the profile)


def _crossing_times(H0, KH, P, h, cross, mode):
    """Roots in [0, 1] of the dense output of the crossing pairs' h_ia: bisection to 2^-16 of the step, then
    Newton kept inside the bracket (vectorised; in numpy on the CPU, where small arrays cost less per operation).

    The side a pair starts on is its mode's (a pair may start exactly at 0, just released from the kink).
    """
    ii, aa = torch.nonzero(cross, as_tuple=True)
    Kc = KH[:, ii, aa]  # (7, q)
    coef = (P.T @ Kc).mul_(h).cpu().numpy()  # (4, q): h(τ) = h0 + Σ_p coef_p τ^{p+1}
    h0 = H0[ii, aa].cpu().numpy()
    s0 = mode[ii, aa].cpu().numpy().astype(h0.dtype)
    # on the side it starts: s0·h(τ) > 0 (s0 = ±1: the coefficients times s0 give s0·h exactly, as sign(h) == s0
    # did in one more operation, and the Newton step val/der is the same)
    coef *= s0
    h0 = h0 * s0
    c0, c1, c2, c3 = coef
    lo = np.zeros_like(h0)
    hi = np.ones_like(h0)
    grid = _GRID  # a pair that dips and comes back: its first wrong-side sample
    wrong = ~(h0 + (((c3 * grid + c2) * grid + c1) * grid + c0) * grid > 0)
    first = np.argmax(wrong, axis=0)
    hi = np.where(wrong[first, np.arange(h0.size)], grid[first, 0], hi)
    for _ in range(BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        same = h0 + (((c3 * mid + c2) * mid + c1) * mid + c0) * mid > 0
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    tau = hi
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(NEWTON_ITERS):
            val = h0 + (((c3 * tau + c2) * tau + c1) * tau + c0) * tau
            der = ((4 * c3 * tau + 3 * c2) * tau + 2 * c1) * tau + c0
            step = np.where(der != 0, val / der, 0.0)
            tau = np.minimum(np.maximum(tau - step, lo), hi)
    return (ii, aa), torch.from_numpy(tau).to(H0.device)


def _exit_times(flow, y, K, P, h, theta0, theta1, out, t_max: float = 1.0):
    """Where sliding pairs' θ leaves [0, 1] before ``t_max`` (fractions of the step, on the dense output): for each
    candidate a point at which θ is *outside* — the outer end of its bracket after Illinois-modified regula falsi,
    refined on the earliest — or None if none is outside at ``t_max`` (an earlier arrival cuts the step first).

    An exit placed where θ is still inside releases the pair with a velocity that points back into the kink: it
    re-arrived at once, exited again, … — cycles of zero-length events (dozens at rtol 1e-9) that delayed an exit
    by up to 2 time units on the Experiment 3 setting (m = 32, n = 12).  The velocity is continuous at an exit, so
    a placement late by δ costs O(δ²)."""
    rows, idx = flow.rows, flow.idx
    jj, kk = torch.nonzero(out, as_tuple=True)
    th1 = theta1[jj, kk]
    bound = torch.where(th1 > 1, 1.0, 0.0).to(th1.dtype)
    tmp = torch.empty_like(K[0])

    def theta_at(tau: float) -> torch.Tensor:
        ys = torch.add(y, _comb(torch.mv(P, _powers(tau, P)), K), alpha=h)
        return flow.eval(ys[0], tmp)[1][jj, kk]

    if t_max < 1.0:  # an arrival cuts the step at t_max: only exits before it matter
        fb = theta_at(t_max) - bound
        keep = torch.sign(fb) == torch.sign(th1 - bound)
        if not any_true(keep):
            return None
        jj, kk, th1, bound, fb = jj[keep], kk[keep], th1[keep], bound[keep], fb[keep]
    else:
        fb = th1 - bound
    ii, aa = rows[jj], idx[jj, kk]
    ta, fa = torch.zeros_like(th1), theta0[jj, kk] - bound
    tb = torch.full_like(th1, t_max)
    if any_true(torch.sign(fa) == torch.sign(fb)):  # outside at the start already (by rounding): exits at 0
        return (ii, aa), torch.where(torch.sign(fa) == torch.sign(fb), torch.zeros_like(tb), tb), th1
    side = torch.zeros_like(th1)  # Illinois: −1 / +1 after the inner / outer end was moved
    for _ in range(SECANT_ITERS):
        denom = torch.where(fb != fa, fb - fa, torch.ones_like(fb))
        tau = torch.minimum(torch.maximum(ta - fa * (tb - ta) / denom, ta), tb)
        j = int(torch.argmin(tau))  # the earliest estimated exit
        t_a, t_b = float(ta[j]), float(tb[j])
        if t_b - t_a <= EXIT_BRACKET:
            break
        t_try = float(tau[j])
        if t_try != t_try:  # (NaN)
            t_try = 0.5 * (t_a + t_b)
        # at least half the bracket's target from either end (Brent's least step): an estimate that lands on the
        # root, on either side, is followed by one evaluation that closes the bracket (where θ is linear on the step,
        # regula falsi crept from the far end by bisection: 16 evaluations)
        t_try = min(max(t_try, t_a + 0.5 * EXIT_BRACKET), t_b - 0.5 * EXIT_BRACKET)
        fm = theta_at(t_try) - bound
        inb = (ta < t_try) & (t_try < tb)  # candidates whose bracket holds t_try learn from it
        ins = inb & ((fm == 0) | (torch.sign(fm) == torch.sign(fa)))  # (θ on the bound: inside; NaN: outside)
        outs = inb & ~ins
        # Illinois: the end that stays when the other moves twice in a row has its value halved
        fb = torch.where(ins & (side < 0), 0.5 * fb, fb)
        fa = torch.where(outs & (side > 0), 0.5 * fa, fa)
        ta, fa = torch.where(ins, torch.full_like(ta, t_try), ta), torch.where(ins, fm, fa)
        tb, fb = torch.where(outs, torch.full_like(tb, t_try), tb), torch.where(outs, fm, fb)
        side = torch.where(ins, -1.0, torch.where(outs, 1.0, side))
    return (ii, aa), tb, th1


def _resolve(flow: _Sliding, y, mode, *, arrivals, prev, K0, stats):
    """Resolve the pattern at an event: arrivals join the sliding set, inconsistent sliding pairs leave it.

    Evaluates the field on the final pattern into K0 (the next step's first stage); returns (mode, r, θ).
    """
    mode = mode.clone()
    mode[arrivals] = 0
    y[0][mode == 0] = 0.0
    for _ in range(MAX_RESOLVE):
        stats["n_resolve_passes"] += 1
        flow.set_mode(mode)
        r, theta = flow.eval(y[0], K0)
        if theta is None:
            return mode, r, theta
        rows, idx, mask = flow.rows, flow.idx, flow.mask
        orient = flow.orientation(r)[rows[:, None], idx]
        low, high = theta < -THETA_TOL, theta > 1 + THETA_TOL
        repel_arrival = (orient <= 0) & arrivals[rows[:, None], idx] & ~low & ~high
        bad = (low | high | repel_arrival) & mask
        if not any_true(bad):
            return mode, r, theta
        # one pair per neuron and pass, the one that violates most (a repelling arrival first): releasing all of a
        # neuron's at once can leave none consistent — two pairs of one neuron arriving together were both released,
        # crossed back at once, and cycled in zero time (random features with D < n: "stalled" at rtol 1e-10)
        viol = torch.where(repel_arrival, torch.full_like(theta, math.inf), torch.maximum(theta - 1, -theta))
        viol = torch.where(bad, viol, torch.full_like(theta, -math.inf))
        one = torch.zeros_like(bad)
        one[torch.arange(bad.shape[0], device=bad.device), viol.argmax(dim=1)] = True
        jj, kk = torch.nonzero(one & bad, as_tuple=True)
        ii, aa = rows[jj], idx[jj, kk]
        up = torch.where(repel_arrival[jj, kk], prev[ii, aa] < 0, high[jj, kk] == (orient[jj, kk] > 0))
        mode[ii, aa] = torch.where(up, 1, -1).to(torch.int8)
    raise Abort("stalled", f"the sliding pattern did not settle in {MAX_RESOLVE} passes at an event; use "
                "method='sliding' (the same Filippov flow by time steps, e.g. step=1/64, error_estimate=True), loosen "
                "rtol, or use method='euler' with error_estimate=True")


def check_filippov(net, space: str, method: str = "filippov") -> tuple[tuple[float, float], str]:
    """Validate ``method="filippov"`` (or ``"sliding"``) for ``net``: (s₋, s₊) of its activation and the space
    (always feature)."""
    slopes = kink_slopes(net.activation)
    if slopes is None:
        what = f"method {method!r} integrates piecewise-linear activations with one kink at 0 (relu, leaky_relu), got "
        if net.activation.smooth:
            raise ValueError(f"{what}activation {net.activation.name!r}; smooth activations need no event handling: "
                             "use method='dop853'")
        # (a kinked σ of another shape — hardtanh declared smooth=False — was told it was smooth and sent to dop853,
        # which stalls at its kinks)
        raise ValueError(f"{what}the kinked activation {net.activation.name!r} (smooth=False) of another shape; use "
                         "the fixed-step method='euler' with a step and error_estimate=True (e.g. step=0.05: steps h, "
                         "h/2, h/4 with an estimate of the loss error)")
    if space == "weight":
        raise ValueError(
            f"method {method!r} integrates the feature-space state [H, A] (EQUATIONS.md §4), where the sliding "
            "condition h_ia = 0 is a coordinate; space='weight' was given: use space='feature' or 'auto' (W and "
            "the test features are recovered exactly from A)")
    if space not in ("auto", "feature"):
        raise ValueError(f"space must be 'auto', 'feature' or 'weight', got {space!r}")
    return slopes, "feature"
