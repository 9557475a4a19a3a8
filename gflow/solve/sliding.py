r"""Time-stepping for the Filippov (sliding) flow of ReLU and leaky-ReLU networks: ``method="sliding"``.

``gf.simulate(net, X, y, t1, method="sliding", step=δ)`` (δ: the largest step; see "Steps"); with
``error_estimate=True`` (or through :func:`gflow.simulate_nonsmooth`) it runs at δ, δ/2, δ/4 and reports
``sol.error_estimate``.

**Why not GD / Euler or Runge–Kutta.**  Fixed-step schemes evaluated with σ′(0) := 0 chatter across every
sliding surface h_ia = 0 and make an O(δ) error at every crossing.  They converge to the Filippov flow, but at
first order at best and irregularly: whether a pair that grazes the kink crosses it depends on δ.  At m = D = 128,
n = 50, t = 200 GD is 1.1 % off the Filippov loss at δ = 1/64, 0.17 % at 1/32 and 0.07 % at 1/128.  Higher-order
Runge–Kutta does no better, since it loses its order at the kink: Heun, midpoint and rk4 are also ≈ 1–1.4 % off
at δ = 1/64 … 1/32 there and 2–4e-4 at 1/128 — first order, as GD, at 2–4× its evaluations per step (measured
2026-12-07 against filippov at rtol 1e-8 and 1e-10, which agree to 1e-11; an earlier claim here, that Heun
converges to another flow, did not hold).  The event-driven ``method="filippov"`` is exact, but pays
≈ 8 evaluations per event, and wide nets have tens of thousands of events per unit time.

**The scheme.**  Every pair is in a mode: ``+`` (σ′ = s₊), ``−`` (σ′ = s₋) or ``0`` (sliding, h_ia ≡ 0; the
Filippov σ′ is the value in [s₋, s₊] that keeps it there, see :mod:`gflow.solve.filippov`).  Over a step the
flow moves H by the *integrated* weights Ā = ∫ σ′ r dt (E4):

    H(t + δ) = H(t) − γ (c ∘ Ā) G,        A(t + δ) = A(t) + c ∘ Ā,

and no single pair needs its event time resolved:

* a free pair (mode ±) takes Ā_ia = σ′ ∫ r_a dt, with ∫ r dt by the trapezoid rule on r(t) and r at a
  predictor's end (r is continuous; the scheme is second order between events);
* a sliding pair, *and a pair that arrives at the kink during the step and slides on*, is constrained to end
  the step at h = 0: per neuron i, the |S_i|×|S_i| system G_SS Ā_iS = h_iS(t)/(γc_i) − (Ā_iF G)_S (one padded,
  batched Cholesky solve per pass).  Whatever its arrival time, its Ā is then the one that lands it exactly on
  the kink given the others — the landing condition replaces the event location;
* a pair that crosses the kink (the field points through it) is split at the crossing fraction φ of the step
  (linear in h): Ā_ia = s_start ∫₀^{φδ} r_a + s_end ∫_{φδ}^{δ} r_a, with r linear over the step.

Which of these applies is decided per step by an active-set pass (as ``filippov`` resolves an event): a
predicted arrival slides if the end-of-step Filippov θ of the pattern is in [0, 1] and crosses otherwise; a
sliding pair whose step-averaged θ̄ = (Ā_ia/∫r_a − s₋)/(s₊ − s₋) leaves [0, 1] is released for the step, and
one whose end-of-step θ leaves [0, 1] is released for the next step (exits are smooth events: the velocity
is continuous there).  Where G is rank-deficient, a landed arrival that is repelling (c_i ∫r_a (s₊ − s₋) ≤ 0: the
pairs ``filippov`` never lets arrive), and a crossing that ends on its start side, are checked against the neuron's
other changes: left free in its start mode, with the rest of the neuron as it is, does it still reach the kink?
If not, the others turn it back first and it keeps its start mode (``n_spurious``; :meth:`SlidingStepper.spurious`)
— landed anyway, it slid on consistently and the run followed another Filippov solution for good, at every δ (a
neuron with d < n inputs locks onto a few extra kinks).  Where G has full rank (P-3L with D ≥ n) a wrong landing
leaves again within steps and its error falls with δ, and the test measured worse there: on Experiment 3's setting
(m = D = 512, n = 200) it took δ = 1/8 from 1.5e-5 to 2.0e-4 off δ = 1/32 (δ = 1/16: 3.5e-6 and 2.8e-6 either way),
so it is not run.  A pair that would change a third time in one step is pinned at h = 0 for the step; if the
weight that pins it is far from one the Filippov flow can give (its step-averaged θ̄ beyond [−μ, 1 + μ]: no σ′ in
[s₋, s₊] keeps it there), the step is retried at half size (``n_pin_retries``, down to the floor of the rank retries
below).  Gross violations come with nearly dependent features among one neuron's pairs (random features with
D < n): a differential fuzz found four pairs with a singular G_SS landed by weights of ≈ 10² where ∫r ≈ 10⁻², moving
the neuron's other pairs by 0.15 in one step — 0.7 % off the loss at δ = 1/64 … 1/256, not falling with δ; the
retries there (θ̄ up to 2e5, median 22) take it to 1.7e-5, 1.3e-5, 1.3e-8, 1.3e-7 at δ = 1/32 … 1/256.  Where G has
full rank (P-3L with D ≥ n) the pins' θ̄ stay within 3.4 of [0, 1] (median 0.2 beyond it: m = D = 512, n = 200) and
are an O(δ) effect: there μ = :data:`PIN_MARGIN` = 1 (+6 … 13 % wall, 37 retries to t = 5 at δ = 1/4, whose loss at
t = 1 came 14× closer to δ = 1/16's), and μ = :data:`PIN_MARGIN_DEFICIENT` = 0.05 where G is rank-deficient (with
μ = 1 the fuzz case stalled at 1.4e-3 in H; μ = 0.05 everywhere cost +30 … 90 % at m = 512 for no gain at δ = 1/8).

**Several changes in one neuron** (full-rank G; :attr:`SlidingStepper.in_sequence`).  An arrival, crossing or exit
changes the velocities of its neuron's other pairs, and the Filippov flow takes them in time order.  So a pass takes
one arrival per neuron, its earliest (fraction φ = h₀/(h₀ − h_end) of the step), and none in a neuron whose other
pairs change in that pass (:meth:`SlidingStepper.first_arrivals`); a pair released from the kink in the step slides
(with its start-of-step θ) up to its neuron's first arrival or crossing, which is what makes it leave, or else up to
where θ, linear over the step, leaves [0, 1], and is free after it (:meth:`SlidingStepper.late_releases`); an exit
found at the step's end is released in the step, at that fraction, not at the next step; and a crossing that ends on
its start side takes its fraction again from its end without the crossing given the neuron's other changes.  Taken
together, a late arrival was judged against an early one held on the kink that in fact crossed it, turned back,
arrived again and was pinned for the rest of the step (O(δ) per pin); an exit that a crossing causes leaves with a
finite velocity and was released at the step's start or the next step's (late or early by up to a step).  On a
P-3L ReLU net (m = D = 96, n = 30, t ≤ 6) max|ΔH| against ``filippov`` fell from 1.9e-3, 2.0e-3, 1.2e-4, 4.6e-5
at δ = 1/32 … 1/256 to 1.4e-4, 3.5e-5, 2.8e-5, 1.8e-5, and with outputs every 1/64 (which cut the steps) from
2.0e-3, 2.0e-3, 2.1e-4, 5.7e-5 to 6.0e-5, 5.9e-5, 2.8e-5, 8.9e-6 (tests/test_sliding.py,
``test_the_features_converge_to_filippovs_where_a_neurons_events_crowd_into_one_step``).  Where G is
rank-deficient :meth:`SlidingStepper.spurious` sorts such changes instead (taken in order there, a shallow
leaky-ReLU net, d = 5, n = 15, went from 2.1e-4 to 7.1e-3 off the loss at δ = 1/4).

**Steps.**  Several changes in one neuron within one step interact (an arrival changes its neighbours'
velocities), and the scheme classifies them as if each were alone; so the step follows the event density: it is
δ·min(1, ν/ρ), with ρ the measured rate of mode changes per unit time (smoothed over the last steps) and
ν = ``options={"event_rate": ν}`` (default m, about one change per neuron per unit time at δ = 1); steps start at
δ/64 (ρ is unknown at t = 0), at most double per step and never fall below δ/2^:data:`MAX_HALVINGS` (one chattering
pair per step makes ρ ≈ 1/h: the steps then shrank geometrically, to 1e-34); ``event_rate=inf`` gives fixed
steps δ.  Halving δ halves every step, so step halving (``error_estimate=True``) refines uniformly.  On
Experiment 3's setting at m = D = 512, n = 200 the rate falls from ≈ 48 000 per unit time at t = 0 to ≈ 400 at
t = 64: fixed steps of 1/16 … 1/64 stayed ≈ 7e-4 apart at t = 20 (not converging), the adaptive steps converge.
The free pairs are treated explicitly: a step beyond 2/λ_max(M₀) warns (:func:`stability_limit`).

**Stalls.**  max_steps is checked up front on δ's nominal steps and during the run on the real ones (with their
retries); shrunk steps can need far more.  At step = 10 on a 16-neuron net whose limit 2/λ_max(M₀) is 0.02 every step
past about 0.02 was retried (one retry per accepted step, steps 0.01–0.02): t1 = 2 000 ran 228 s before it diverged
at t = 340.  So every 50 accepted steps the last 100, with their retries, are projected to t1 (:class:`StallWatch`);
a run projected past max_steps, with its steps shrunk below half of δ's and not growing, stops with ``"stalled"``,
the partial trajectory and advice (a step below the limit — what ``"auto"`` takes —, ``filippov``, max_steps): from
200 accepted steps where they are retried (that one: 402 steps, 3 s), from 1 000 where only the event rate holds
them, the projection held over the last half of the run and the events went on (the rate falls as the flow settles:
at m = D = 512, n = 200 the first 200 steps project 11× max_steps to t1 = 2 000, and grow; replayed on the step
sequences of 50 random P-3L and shallow ReLU runs, m ≤ 64, event_rate 0.001 … m, and of m = D = 128 and 512, with
max_steps at each run's own step count, none stopped).

**Long steps** (``options={"long_step": k}``, k > 1; full-rank G only).  Past the event-dense start the pattern
changes rarely (m = D = 128, n = 50: ≈ 1 000 mode changes per unit time at t < 1, ≈ 0.5 for 400 < t < 1 000, none
after t ≈ 1 500), but the free pairs' explicit treatment keeps every step at δ (stability), to the end.  On a fixed
pattern, though, the flow is *linear*: σ is linear on each side of the kink and a sliding pair stays at h = 0, so
ṙ = −M r with M = αγ Σ_i c_i² D_i (G − G_{·S_i} G_{S_iS_i}⁺ G_{S_i·}) D_i (the free pairs' E3 kernel less the
sliding blocks' Schur complements; :meth:`SlidingStepper.kernel`, updated over the neurons whose modes changed).  A
step beyond δ (taken where the event rate lets steps grow past δ, by 1.25× per step, up to kδ) integrates r
exactly for its start pattern — ∫r = δ φ₁(−δM) r₀ from M's eigendecomposition — in place of the trapezoid rule on
a predictor, and splits a crossing pair's weight with that r(t); it is exact wherever the pattern holds and stable
at any length.  Changes within a long step are classified as in a short one, but a long step with more than one
change in a neuron is retried at half its length (``n_long_retries``; down to δ), and long steps then stay below
half the retried length, a bound that relaxes by 5 % per step (:data:`LONG_BACKOFF`, :data:`LONG_RELAX`; steps
that grew straight back into the retried length were retried 1 746 times at m = D = 512 to t = 2 000, δ = 1/8:
now 244, 135 → 106 s at the same loss, 6e-5 apart; m = D = 128: 5.1 → 4.7 s): a neuron's changes interact, and an
arrival slid on where it should have crossed when a step of 8δ held it together with a neighbour's exit — 2e-2 off
by t = 2 000 at m = D = 128.  Allowing such pairs of changes in long steps up to 4δ (most are linked: one pair
leaves the kink as another lands) halved the retries but put a random P-3L case 1e-2 off (δ = 0.05), so it is not.
Measured (Intel Xeon, one thread, side by side; ``benchmarks/bench_relu.py --long-step 64``): m = D = 128, n = 50 to
t = 2 000 — δ = 1/8, k = 64: 4.7 s and 1.7e-5 off the loss at fixed steps of 1/16, against 15.9 s and 3.4e-5 with
fixed steps of δ = 1/8; a differential
sweep over ten random P-3L ReLU / leaky-ReLU problems (m ≤ 62, n ≤ 17, t = 200, against fixed steps of 0.0125): 4 …
14× fewer seconds than fixed steps of the same δ = 0.05, at errors 1 … 130× theirs (3e-6 … 6e-4) that fall with δ
(δ = 0.025: 2e-6 … 2e-4; before the back-off).  Where events stay dense it does not pay: m = D = 512, n = 200 to
t = 600 at δ = 1/4, 66.7 s against 61.3 s with fixed steps (both ≈ 1e-2 off fixed steps of 1/8; 129 retries for
504 long steps; the kernel's update and eigendecomposition add ≈ 5 ms to each long step); to t = 2 000 it converges
(δ = 1/8, 1/16, 1/32 at an observed order of 1.7, ``bench_relu.py --long-levels``).
Off by default (``"auto"`` does not set it).

**Neurons through w_i = 0.**  Where G is rank-deficient (shallow nets with n > d), a step that would put as many
pairs of one neuron on the kink as G has rank fixes the neuron's whole feature row at 0 (w_i = 0); it is retried at
half the step (``n_rank_retries``), down to δ/2^:data:`MAX_HALVINGS`.  A collapse that still holds there is the
flow's own: the neuron reaches w_i = 0, typically along a line of rank G − 1 sliding pairs, where every pair is on
its kink and the Filippov solution is not unique.  What it does next is decided by its own flow through the
passage, resolved far below the step (:meth:`FlowConstants.emerge <gflow.solve.filippov.FlowConstants.emerge>`,
``n_emerged``): it leaves on a consistent pattern, or stays at 0 while it has none (an equilibrium of the flow): its
pattern is then held, and when a pair of it would leave (the end-of-step θ of a pair that rank-many others hold at
0, not unique there) it is asked again whether it can leave, from its held pattern
(:meth:`SlidingStepper.leave_zero`; not before r has moved by :data:`REASK`, a threshold that doubles with every
answer that keeps it) — released instead, such a pair re-arrived on the next step, every step, and shrank the steps
~100× (a d = 2 net: over 30 s instead of 2 s to t = 10). The first version kept every such neuron at 0 — 0.4 off in
H against GD at small steps on a shallow ReLU net, and a crawl to steps of 1e-34 on the dead neuron's chatter — and
choosing among the consistent patterns by straight passage left on the wrong one.  Differential sweep with this
and the pin retries above (32 random shallow and random-feature ReLU / leaky-ReLU problems, m ≤ 32, n ≤ 12, t = 10,
against GD at δ = 1e-4): the worst loss error
at δ = 1/128 fell from 7e-3 to 3e-4 (all others ≤ 6e-5), at δ = 1/32 (within the stability limit) from 8e-3 to 3e-4.
The 3e-4 case (random features, D = 6 < n = 12) holds four nearly dependent pairs of one neuron on the kink that GD
(and ``filippov``) let leave slowly: with G_SS near-singular their θ is not unique, and the end-of-step θ keeps
them in [0, 1] — not resolved.  Arrivals that would together bring a neuron's sliding pairs up to rank G are
first checked as :meth:`SlidingStepper.spurious` checks a repelling arrival (left free, with the others landing,
does it still reach its kink?), whatever their sign: two data points nearly antiparallel (a d = 2, n = 13 shallow
ReLU net, cos(x_5, x_7) = −0.99997, tests/test_sliding.py) put a neuron far from 0 (|h| ≈ 0.04) on both kinks within
2e-6 of each other; landed together they collapsed its row at every retry down to the smallest step, and the neuron
was held at 0 for good (4e-2 off in H by t = 0.012 at δ = 1/64; 2.2e-3 with the check, 3.9e-4 at δ = 1/256).  Past
the first real passage (t = 0.0142 there) that net's Filippov solution is not unique: at w_i = 0 several exit
patterns are consistent, and GD picks one by the phase of its steps (δ = 1e-6 and 3e-7 end 0.63 apart in H at
t = 1, 8.9e-3 in the loss, and ``filippov`` 0.62 from the latter; ``sliding`` lands on one branch or another as
its steps and rounding fall: 0.2–0.5 from ``filippov`` at δ = 1/64 and 1/256) — no solver is "right" there.

**Accuracy.**  Against ``method="filippov"`` at rtol 1e-9 (Experiment 3's P-3L ReLU setting, m = D = 128,
n = 50, t = 200, 6 900 events): relative loss error 9.7e-6 at δ = 1/4, 3.5e-6 at δ = 1/8 (before "Several
changes in one neuron": 7.6e-5, 7.9e-6, and 3.6e-6 at δ = 1/16; fixed steps: 2.5e-2, 9.1e-3, 1.0e-4; GD at those
steps: 4.9e-2, 2.0e-2, 1.1e-2; benchmarks/bench_relu.py --sliding).

Cost per step: a few products of an (m, n) matrix with G (a GD step is one; between active-set passes the
free pairs' product is updated over the entries whose mode changed), plus the batched solves on the sliding pairs
(refactored only for the neurons whose pairs changed).  Measured at m = D = 512, n = 200, δ = 1/4 (Intel Xeon, one
thread): ≈ 19 ms per step for t < 1, 28–33 ms for 1 < t < 50 (≈ 4 passes, up to 10 000 sliding pairs), 15 ms
beyond t = 200 (≈ 2 passes), against GD's 0.85 ms.  Those products are the smaller part of a pass: the rest is
≈ 250 small tensor operations of the active-set bookkeeping (masks over (m, n), their ``nonzero``, gathers), so the
step writes them where torch has a vectorised kernel (:func:`gflow.solve.filippov.any_rows`, :func:`_fill`, int8
masks by ``logical_not``/``bool`` and same-shaped comparisons): 50.1 → 40.9 ms per step at m = D = 512, n = 200
to t = 2 (δ = 1/4, 6.9 passes a step; Intel Xeon, one thread, side by side, the same trajectories bit for bit),
none measurable at m = D = 128, n = 50 (per-operation overhead there).  Feature space only (the condition
h_ia = 0 is a coordinate); the running integrals of :func:`gflow.certify` are not carried.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..fields.feature_space import FeatureSpaceField
from ..model.quantities import gram
from ._record import Abort, Monitor, Recorder
from .expint import phi_functions
from .filippov import FlowConstants, _check_mn_layout, any_rows, any_true
from .filippov import PairSolves as _Pattern

THETA_TOL = 1e-10  # θ within [−tol, 1 + tol] counts as inside (rounding in the small solves; float64)
MAX_CHANGES = 2  # changes of mode of one pair within one step before it is pinned at the kink for the step
MAX_PASSES = 64  # active-set passes per step; after that every pending change is pinned
MAX_HALVINGS = 10  # a step that brings a neuron's sliding pairs up to rank G is retried down to δ/2^this
PIN_MARGIN = 1.0  # a pin's θ̄ beyond [−this, 1 + this] retries the step (module docstring) ...
PIN_MARGIN_DEFICIENT = 0.05  # ... and beyond this where G is rank-deficient (nearly dependent features)
KERNEL_CHUNK = 64  # neurons per padded block in :meth:`SlidingStepper.contributions`
KERNEL_REFRESH = 64  # updates of the long steps' kernel M over changed neurons before it is formed afresh
LONG_GROWTH = 1.25  # growth per step of the long steps (retries cost a step each)
#: after a long step of length h is retried, long steps stay below LONG_BACKOFF·h, a bound that relaxes by
#: LONG_RELAX per accepted step (growing straight back to h retried again and again where events stay dense)
LONG_BACKOFF, LONG_RELAX = 0.5, 1.05
MAX_LONG_CHANGES = 1  # a long step with more changes of mode in one neuron is retried shorter (module docstring)
REASK = 1e-3  # held neurons (w_i = 0) are asked again once r has moved this much, relative (:meth:`reask`)
RAMP = 64  # adaptive steps start at δ/RAMP (the event rate is not known before the first step)
#: the stall projection (:class:`StallWatch`): every STALL_EVERY accepted steps, the last 2·STALL_EVERY of them (with
#: their retries) project the steps to t1.  Past max_steps, with the steps shrunk (the projection beyond STALL_SHRUNK×
#: the nominal steps of δ) and not growing (by STALL_GROWTH since half the run), the run stops as "stalled": from
#: STALL_AFTER accepted steps where the steps are retried (≥ STALL_RETRIED retries per accepted step: held by the
#: step's length against the dynamics, they stay), from STALL_AFTER_EVENTS where the event rate alone holds them
#: and the projection held through the last half of the run (the rate falls as the flow settles: at m = D = 512,
#: n = 200, δ = 1/8 the first 200 steps projected 1.1e6 steps to t1 = 2 000, 11× max_steps, growing 1.5–3.5× per
#: doubling of the step count; a low event_rate made them dip and grow late, 25× beyond its 11 353 steps at 200)
STALL_AFTER, STALL_AFTER_EVENTS, STALL_EVERY, STALL_GROWTH, STALL_SHRUNK, STALL_RETRIED = 200, 1000, 50, 1.25, 2.0, 0.5
STALL_HELD = 0.5  # ... and the events over those steps ≥ this times ν·δ per step (the rate holds them: δ·ν/ρ)
SPARSE_UPDATE = 1  # X G for an X with at most this many nonzeros per row (on average) is formed over them: an
# index_add of scaled rows of G costs ≈ 60× per entry what the dense product does (2.8 ms for 10 000 entries against
# 0.45 ms for all 102 400, measured at m = 512, n = 200 on one core)


def _fill(mode: torch.Tensor, mask: torch.Tensor, value: int) -> torch.Tensor:
    """``mode.masked_fill_(mask, value)`` for an int8 mode array (value −1, 0 or 1), in two vectorised passes:
    torch's masked_fill_ on int8 is not vectorised (137 against 22–33 µs at (512, 200); a pass takes several).
    Comparisons of int8 arrays with a scalar are not either (``mode == 0``: 119 µs; ``logical_not(mode)``, or a
    comparison with a same-shaped array, 3 µs): the step writes them so."""
    mode.mul_(~mask)
    if value:
        mode.add_(mask.view(torch.int8), alpha=value)
    return mode


def _head_integral(phi: torch.Tensor, b: torch.Tensor, dt: float, r0: torch.Tensor, r1: torch.Tensor, spec):
    """∫₀^{φδ} r_b for the fractions ``phi`` of the step of the pairs' points ``b``: r linear over the step (r0 to
    r1; ``spec`` None), or r(τ) = V e^{−τΛ} w on a fixed pattern (``spec`` = (Λ, V, w): τ φ₁(−τΛ))."""
    if spec is None:
        return dt * (phi * r0[b] + 0.5 * phi * phi * (r1[b] - r0[b]))
    lam, V, w = spec
    tau = phi * dt
    return tau * (V[b] * phi_functions(-tau[:, None] * lam, 1)[1] * w).sum(1)


class SlidingStepper(FlowConstants):
    """One step of the scheme (module docstring) on the feature-space state [H, A] with its mode array."""

    def __init__(self, problem, slopes: tuple[float, float], monitor: Monitor):
        super().__init__(problem, slopes, monitor)
        self.active_rows = self.c != 0  # a neuron with c_i = 0 never moves
        self._rows_allowed = None if bool(self.active_rows.all()) else self.active_rows  # (for :meth:`pattern`)
        self.sigma = problem.net.activation.sigma
        self._last: tuple[torch.Tensor, _Pattern] | None = None
        self._attract = None  # (pattern, R, its pairs' attraction) of the last :meth:`leaving`
        self._kernel = None  # (mode, M, λ, V, updates since formed) of :meth:`kernel`
        #: neurons held at w_i = 0 (the flow's equilibrium: :meth:`emerge` found no pattern to leave with), no
        #: longer retried; and those whose inadmissible pins held at the smallest retry step (no pin retries)
        self.accepted = torch.zeros_like(self.active_rows)
        self.pin_exempt = torch.zeros_like(self.active_rows)
        #: μ of the pin retries (module docstring)
        self.pin_margin = PIN_MARGIN_DEFICIENT if self.rank_G < self.n else PIN_MARGIN
        #: arrivals that the neuron's other changes turn back are looked for where G is rank-deficient
        #: (:meth:`spurious`)
        self.check_spurious = self.rank_G < self.n
        #: a neuron's arrivals are taken one per pass, earliest first (:meth:`first_arrivals`), where G has full rank;
        #: where it is rank-deficient :meth:`spurious` sorts interacting changes (taken in sequence there, a shallow
        #: leaky-ReLU net, d = 5, n = 15, went from 2.1e-4 to 7.1e-3 off the loss at δ = 1/4)
        self.in_sequence = self.rank_G == self.n
        #: a free pair released on the kink counts as across it beyond this many units of its neuron's largest |h|
        #: (rounding, as ``filippov``'s h_eps): a pair that other sliding pairs hold at h = 0 (its feature in the
        #: span of theirs) ended steps at |h| ≈ 1e-21 on either side and "arrived" again every step.  Only where G
        #: is rank-deficient: with G of full rank every G_SS is nonsingular and no pair is held by others (0: the
        #: hot path skips the passes)
        self.h_rel = 64 * torch.finfo(self.G.dtype).eps if self.rank_G < self.n else 0.0
        #: after :meth:`step`: the neurons (m,) with a pinned pair whose weight no σ′ in [s₋, s₊] gives, else None
        self.inadmissible: torch.Tensor | None = None
        #: after :meth:`step`: the held neurons (m,) (:attr:`accepted`) with a pair that would leave, else None
        self.held_exits: torch.Tensor | None = None
        self._asked_r: torch.Tensor | None = None  # r at the last :meth:`reask` that said yes, and its threshold
        self._reask = REASK
        self.stats = {"n_arrivals": 0, "n_crossings": 0, "n_exits": 0, "n_pinned": 0, "n_passes": 0,
                      "n_sliding": 0, "max_sliding_per_neuron": 0, "n_rank_retries": 0, "n_pin_retries": 0,
                      "n_emerged": 0, "n_spurious": 0}

    def leave_zero(self, H1: torch.Tensor, mode1: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """For held neurons ``rows`` (at w_i = 0): set in ``mode1`` the pattern each leaves with, if it has one, as
        :meth:`emerge <gflow.solve.filippov.FlowConstants.emerge>` does for a neuron arriving at 0 — but from its held
        pattern (there is no passage to follow); returns the neurons that stay."""
        r = self.residual(H1)
        stuck = torch.zeros_like(rows)
        for i in torch.nonzero(rows).flatten().tolist():
            stuck[i] = not self.leave_with(i, r, mode1[i], mode1)
        self._reask = REASK if any_true(rows & ~stuck) else min(2 * self._reask, 0.1)
        return stuck

    def reask(self, H1: torch.Tensor) -> bool:
        """Whether :meth:`leave_zero` is worth asking for held neurons (:attr:`held_exits`) at the state ``H1``: at
        w_i = 0 its answer depends on r alone, so not before r has moved by :data:`REASK` (relative) since the last
        ask, a threshold that doubles (up to 10 %) with every answer that keeps them held — asked at every step, a
        held neuron of a d = 4, n = 7 leaky-ReLU net that kept wishing to leave made the run 3× slower."""
        r = self.residual(H1)
        if self._asked_r is not None and float((r - self._asked_r).norm()) < self._reask * float(self._asked_r.norm()):
            return False
        self._asked_r = r
        return True

    def collapsing(self, mode: torch.Tensor, mode1: torch.Tensor) -> torch.Tensor:
        """The neurons (m,) that a step from ``mode`` to ``mode1`` collapses onto w_i = 0 (:meth:`collapsed`), less
        those accepted before (:attr:`accepted`).

        Landing that many pairs fixes the neuron's whole feature row at 0 (w_i ⟂ every φ(x_a)) — with rank-
        deficient G (shallow nets with n > d) a neuron whose first pair slides is then pulled onto the others'
        kinks as well, whereas the Filippov flow resolves the arrivals one at a time (a differential fuzz at d = 2,
        n = 9: a neuron collapsed at δ = 1/32 only, 1.7e-2 off in the loss)."""
        return self.collapsed(mode, mode1) & self.active_rows & ~self.accepted

    def retry(self, mode: torch.Tensor, mode1: torch.Tensor) -> tuple[torch.Tensor, str] | None:
        """(neurons, kind) if the step just taken from ``mode`` to ``mode1`` should be retried at half size: the
        neurons of :meth:`collapsing` and :attr:`inadmissible`, kind "rank" if there is a collapse, else "pin";
        None if there are none."""
        bad = self.collapsing(mode, mode1)
        kind = "rank" if any_true(bad) else "pin"
        if self.inadmissible is not None:
            bad |= self.inadmissible
        return (bad, kind) if any_true(bad) else None

    def pattern(self, S: torch.Tensor) -> _Pattern:
        """The solves on the pairs of S, reused while S is unchanged (a pass without arrivals or releases keeps the
        predictor's; the comparison costs one pass over a boolean (m, n)); otherwise built from the last pattern,
        factoring only the neurons whose sliding pairs changed (a pass changes few)."""
        if self._last is not None and torch.equal(self._last[0], S):
            return self._last[1]
        pat = _Pattern(self.G, S, self._rows_allowed, previous=None if self._last is None else self._last[1])
        self._last = (S, pat)
        return pat

    def contributions(self, rows: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        """Σ_{i ∈ rows} c_i² D_i (G − G_{·S_i} G_{S_iS_i}⁺ G_{S_i·}) D_i (n×n) for the modes ``mode`` (m, n) of those
        neurons (:meth:`kernel`).  The sliding blocks are padded per chunk of neurons with similar |S_i| (one
        neuron with many sliding pairs would otherwise pad them all)."""
        md = mode[rows]
        B = self.slopes_of(md).mul_(self.c[rows][:, None])
        out = gram(B).mul_(self.G)
        S = md == 0
        k = S.sum(1)
        has = torch.nonzero(k).flatten()
        if not has.numel():
            return out
        order = has[torch.argsort(k[has])]
        for chunk in order.split(KERNEL_CHUNK):
            pat = _Pattern(self.G, S[chunk])
            Et = self.G[pat.idx].mul_(B[chunk][pat.rows][:, None, :]).mul_(pat.maskf[:, :, None])  # (rows, k, n)
            Ft = torch.bmm(pat.Ginv, Et)
            out.sub_(Et.reshape(-1, self.n).T @ Ft.reshape(-1, self.n))
        return out

    def kernel(self, mode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(M, λ, V): the n×n matrix of the linear flow ṙ = −M r that the pattern ``mode`` follows while it holds,
        and its eigendecomposition.  σ is linear on each side of the kink and a sliding pair stays at h = 0, so

            M = αγ Σ_i c_i² D_i (G − G_{·S_i} G_{S_iS_i}⁺ G_{S_i·}) D_i,   D_i = diag(σ′ of i's free pairs, 0 on S_i)

        (E3's M = κ G ∘ (BᵀB) for the free pairs, less the Schur complements of the sliding blocks: a sliding
        pair's weight u_iS = −G_SS⁺ G_SF (σ′ r)_F keeps ḣ_iS = 0).  Kept from the last call and updated over the
        neurons whose modes changed (a long step changes few), re-formed after :data:`KERNEL_REFRESH` updates or
        where many changed; the same pattern (a retried step) reuses the eigendecomposition."""
        kappa = self.alpha * self.gamma
        cache = self._kernel
        if cache is not None:
            mode0, M, lam, V, updates = cache
            changed = torch.nonzero(any_rows(mode != mode0)).flatten()
            if not changed.numel():
                return M, lam, V
            if changed.numel() <= self.m // 8 and updates < KERNEL_REFRESH:
                M = M + kappa * (self.contributions(changed, mode) - self.contributions(changed, mode0))
                M = 0.5 * (M + M.T)
                lam, V = torch.linalg.eigh(M)
                self._kernel = (mode.clone(), M, lam, V, updates + 1)
                return M, lam, V
        M = self.contributions(torch.arange(self.m, device=mode.device), mode).mul_(kappa)
        M = 0.5 * (M + M.T)
        lam, V = torch.linalg.eigh(M)
        self._kernel = (mode.clone(), M, lam, V, 0)
        return M, lam, V

    # -- pieces ------------------------------------------------------------------------------------------
    def residual(self, H: torch.Tensor) -> torch.Tensor:
        """r = α σ(H)ᵀc − y (σ(h) = s₊h above the kink, s₋h below; a sliding pair, h = 0, adds nothing)."""
        return torch.addmv(self.y, self.sigma(H).T, self.c, beta=-1.0, alpha=self.alpha)

    def land(self, pat: _Pattern, H0: torch.Tensor, Af: torch.Tensor, S: torch.Tensor,
             AfG: torch.Tensor | None = None, weights: bool = True):
        """End state of the step: free pairs with integrated weights Af, pairs of S landing on h = 0.

        ``AfG``: Af G if known (it is not modified).  Returns (H1, Ā, u): Ā = Af plus the sliding pairs' weights
        u (padded (rows, k) as in ``pat``; None without sliding pairs), or None for Ā with ``weights=False`` (a
        step's passes need only their last one's: :meth:`integrated`).
        """
        self.monitor.on_eval()
        if AfG is None:
            AfG = Af @ self.G
        u = None
        if pat.rows is not None:
            gi, idx = pat.gi, pat.idx
            u = pat.solve_padded(H0[gi, idx] / (self.gamma * self.c[gi]) - AfG[gi, idx])
            ii, bb, li, pos = pat.pairs
            AfG = self.plus_times_G(AfG, ii, bb, u[li, pos])
        H1 = torch.addcmul(H0, AfG, self.c_col, value=-self.gamma)
        H1.masked_fill_(S, 0.0)
        return H1, (self.integrated(pat, Af, u) if weights else None), u

    @staticmethod
    def integrated(pat: _Pattern, Af: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Ā = Af plus the sliding pairs' weights ``u`` (:meth:`land`; padded as in ``pat``, None without them)."""
        A = Af.clone()
        if u is not None:
            ii, bb, li, pos = pat.pairs
            A[ii, bb] = u[li, pos]  # Ā = Af + u on S (Af is 0 there: σ′ of a sliding mode is 0)
        return A

    def plus_times_G(self, base: torch.Tensor, ii: torch.Tensor, bb: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """base + X G for the (m, n) matrix X holding ``vals`` at (ii, bb) and 0 elsewhere (base is not modified):
        over those entries while they are few (SPARSE_UPDATE per row), else one dense product."""
        if ii.numel() <= SPARSE_UPDATE * self.m:
            return base.index_add(0, ii, self.G[bb] * vals[:, None])
        X = torch.zeros_like(base)
        X[ii, bb] = vals
        return torch.addmm(base, X, self.G)

    def product(self, Af: torch.Tensor, prev: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Af G, updated from a previous (Af₀, Af₀ G) of the same step where few entries changed (an active-set pass
        changes the weights of the pairs whose mode changed only), else formed afresh."""
        if prev is not None:
            Af0, AfG0 = prev
            ii, bb = torch.nonzero(Af != Af0, as_tuple=True)
            if ii.numel() <= SPARSE_UPDATE * self.m:
                return self.plus_times_G(AfG0, ii, bb, Af[ii, bb] - Af0[ii, bb])
        return Af @ self.G

    def first_arrivals(self, arr: torch.Tensor, H: torch.Tensor, H1: torch.Tensor,
                       busy: torch.Tensor | None = None) -> torch.Tensor:
        """The arrivals ``arr`` (m, n) to take in this pass: per neuron the earliest, at the fraction
        φ = h₀/(h₀ − h₁) of the step (h linear from ``H`` to its end ``H1`` in the pass), none in the ``busy``
        neurons (m,) (another of its pairs changes mode in this pass); the others stay in their mode and are
        asked again on the next pass, once the earlier change is resolved.

        An arrival changes the velocities of its neuron's other pairs, so the Filippov flow resolves a neuron's
        events in time order (as ``filippov`` does).  Landed together, a late arrival was classified against an
        early one held on the kink that in fact crossed it: the late one was turned back (θ̄ < 0), arrived
        again once the early one crossed, and was pinned at h = 0 for the rest of the step (its third change) —
        an O(δ) error per pin that did not fall with δ (a P-3L ReLU net, m = D = 96, n = 30: 2.1e-3 off in H at
        δ = 1/64, t = 6, and its trajectory depended on the output times)."""
        if not self.in_sequence or not any_true(arr):
            return arr
        ii, bb = torch.nonzero(arr, as_tuple=True)
        per_row = torch.bincount(ii, minlength=self.m)
        several = per_row > 1
        if busy is not None:
            several |= busy & (per_row > 0)
        if not any_true(several):
            return arr
        h0 = H[ii, bb]
        den = h0 - H1[ii, bb]
        phi = torch.where(den != 0, h0 / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den))
        first = torch.full((self.m,), math.inf, dtype=phi.dtype, device=phi.device)
        first = first.scatter_reduce(0, ii, phi, "amin")
        keep = phi <= first[ii]
        if busy is not None:
            keep &= ~busy[ii]
        out = torch.zeros_like(arr)
        out[ii[keep], bb[keep]] = True
        return out

    def late_releases(self, Af: torch.Tensor, mode: torch.Tensor, start: torch.Tensor, H: torch.Tensor,
                      hend: torch.Tensor, dt: float, r0: torch.Tensor, r1: torch.Tensor | None, R: torch.Tensor,
                      spec, theta0, phi_rel: torch.Tensor) -> torch.Tensor:
        """Af (in place) with the weights of the pairs released from the kink in this step (sliding at its start,
        free in ``mode``) split at the first arrival or crossing of their neuron in the step, at the fraction φ of
        :meth:`weights`: before it the pair slides on with its start-of-step Filippov θ (``theta0(rows)``: (m, n)),
        after it it is free.  Full-rank G only (:attr:`in_sequence`); a neuron without such a change keeps the
        weight of a release at the step's start (a smooth exit, whose velocity is continuous).

        An exit that a crossing of another pair of the neuron causes is not smooth: the pair's θ jumps out of
        [0, 1] at the crossing and the pair leaves with a finite velocity.  Released from the step's start it ran
        free (the wrong way: θ < 1 meant it was held back) before the crossing — on a P-3L ReLU net (m = D = 96,
        n = 30) 1.5e-5 off in H after one such exit, at δ = 1/128 and 1/256 alike."""
        rel = torch.logical_not(start) & mode.bool()
        if not any_true(rel):
            return Af
        chg = start.bool() & (mode != start)  # arrivals and crossings of the step
        rows = any_rows(rel) & any_rows(chg)
        ri, rb = torch.nonzero(rel, as_tuple=True)
        f = phi_rel[ri, rb]
        if any_true(rows):
            ii, bb = torch.nonzero(chg & rows[:, None], as_tuple=True)
            h0 = H[ii, bb]
            den = h0 - hend[ii, bb]
            phi = torch.where(den != 0, h0 / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den))
            first = torch.ones(self.m, dtype=phi.dtype, device=phi.device)
            first = first.scatter_reduce(0, ii, phi.clamp(0.0, 1.0), "amin")
            f = torch.where(rows[ri], first[ri], f)
        if not any_true(f > 0):
            return Af
        head = _head_integral(f, rb, dt, r0, r1, spec)
        rows = torch.zeros_like(self.active_rows)
        rows[ri] = True
        th = theta0(rows)[ri, rb].clamp(0.0, 1.0)
        s_end = torch.where(mode[ri, rb] > 0, self.sp, self.sm)
        Af[ri, rb] = (self.sm + th * (self.sp - self.sm)) * head + s_end * (R[rb] - head)
        return Af

    def theta(self, pat: _Pattern, u: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """θ = (u/R − s₋)/(s₊ − s₋) of the sliding pairs (padded (rows, k)); u: their weights, R: ∫r or r."""
        Rk = R[pat.idx]
        Rk = torch.where(Rk == 0, torch.ones_like(Rk), Rk)
        return (u / Rk - self.sm) / (self.sp - self.sm)

    def instantaneous(self, pat: _Pattern, H1: torch.Tensor, mode: torch.Tensor, slopes: torch.Tensor | None = None):
        """Filippov θ (padded (rows, k)) of the sliding pairs at the end state H1 (pattern ``mode``, whose σ′ (m, n)
        ``slopes`` are given where known), and r(H1)."""
        self.monitor.on_eval()
        r1 = self.residual(H1)
        rows = pat.rows
        w = (self.slopes_of(mode[rows]) if slopes is None else slopes[rows]) * r1[None, :]
        return self.theta(pat, pat.solve(-(w @ self.G)), r1), r1

    def leaving(self, pat: _Pattern, sel: torch.Tensor, th: torch.Tensor, R: torch.Tensor):
        """(out, up) padded masks: θ outside [0, 1] among ``sel``, and whether the pair leaves upwards (to ``+``)."""
        hi = sel & (th > 1 + self.theta_tol)
        lo = sel & (th < -self.theta_tol)
        last = self._attract  # (a pass asks twice with its end-of-step r, and once more after the last pass)
        if last is not None and last[0] is pat and last[1] is R:
            attract = last[2]
        else:
            attract = (self.c_col[pat.rows] * R[pat.idx] * (self.sp - self.sm)) > 0
            self._attract = (pat, R, attract)
        return hi | lo, torch.where(attract, hi, lo)

    def weights(self, mode, start, H, hend, dt, r0, r1, R, spec=None):
        """Integrated weights Ā of the free pairs, the mask of pairs crossing the kink inside the step, and σ′ of
        ``mode`` (m, n).  The crossing pairs are split at the crossing fraction φ = h₀/(h₀ − h_end) (h linear over
        the step, h_end its end without the crossing), with r linear from r0 to r1 — or, for an exponential step
        (``spec`` = (λ, V, Vᵀr0) of the start pattern's M), r(t) = V e^{−λt} Vᵀr0."""
        slopes = self.slopes_of(mode)
        Af = slopes * R[None, :]
        cr = torch.mul(start, mode)
        cr = torch.lt(cr, torch.zeros_like(cr))  # from one side to the other (modes are −1, 0, +1; _fill)
        if any_true(cr):
            ii, bb = torch.nonzero(cr, as_tuple=True)
            h0, he = H[ii, bb], hend[ii, bb]
            phi = (h0 / (h0 - he)).clamp_(0.0, 1.0)
            first = _head_integral(phi, bb, dt, r0, r1, spec)
            up_start = start[ii, bb] > 0
            s_start = torch.where(up_start, self.sp, self.sm)
            s_end = torch.where(up_start, self.sm, self.sp)
            Af[ii, bb] = s_start * first + s_end * (R[bb] - first)
        return Af, cr, slopes

    def spurious(self, H: torch.Tensor, S: torch.Tensor, start: torch.Tensor, cand: torch.Tensor, Af: torch.Tensor,
                 AfG: torch.Tensor, R: torch.Tensor) -> torch.Tensor | None:
        """Which of the changes ``cand`` (landed arrivals that are repelling or would put their neuron on w_i = 0
        together, or crossings that end on their start side) are no change at all: (m, n) mask of the pairs to put
        back in their start mode, at most one per neuron, or None.

        Two or more changes in one neuron within one step interact: in the Filippov flow an earlier arrival or
        crossing can turn a pair back before it reaches the kink.  Landed anyway, such a pair slides on
        consistently (its θ stays in [0, 1]) and the run follows another Filippov solution for good — a
        differential fuzz case (shallow ReLU, d = 6, n = 16) landed three arrivals of one neuron, which then pulled
        a fourth pair onto its kink: 8.7e-4 off in the loss at every δ from 1/16 to 1/256, where ``filippov`` and
        GD agree.  The test: the pair left free in its start mode (weight s_start ∫r over the step), the neuron's
        other sliding pairs S′ landing as before; if it then ends on its start side it does not reach the kink in
        this step (a pair that really arrives, or crosses, ends across).  For an arrival with θ̄ inside (0, 1)
        this is the rule ``filippov`` applies at an event: only an attracting pair (c_i r_j (s₊ − s₋) > 0)
        arrives.  Where φ(x_j) is (numerically) in the span of the φ(x_b), b ∈ S′ (rank-deficient G: the Schur
        complement G_jj − G_jS′ G_S′S′⁺ G_S′j ≤ 1e-6 G_jj), landing S′ fixes h_j as well and the pair has no free
        motion to test: it stays as it is (a shallow net with d = 2 let such pairs go: 0.64 off in H, relative, by
        t = 1).
        Neurons decouple within a step (r is the predictor's), so every candidate is a row of one batched solve.
        Of several in one neuron the one that ends farthest on its side goes back (one at a time, as ``filippov``
        resolves an event)."""
        ii, jj = torch.nonzero(cand, as_tuple=True)
        if not ii.numel():
            return None
        hend, schur = self.start_mode_end(H, S, start, ii, jj, Af, AfG, R)
        side = hend * start[ii, jj]
        free = schur > 1e-6 * self.G[jj, jj]
        score = torch.where((side > 0) & free, side, torch.zeros_like(side))
        best = torch.zeros(self.m, dtype=side.dtype, device=side.device).scatter_reduce(0, ii, score, "amax")
        back = (score > 0) & (score == best[ii])
        if not any_true(back):
            return None
        out = torch.zeros_like(S)
        out[ii[back], jj[back]] = True
        return out

    def start_mode_end(self, H: torch.Tensor, S: torch.Tensor, start: torch.Tensor, ii: torch.Tensor,
                       jj: torch.Tensor, Af: torch.Tensor, AfG: torch.Tensor, R: torch.Tensor):
        """(h_end, schur) of the pairs (ii, jj) left free in their start mode over the step (weight s_start ∫r), the
        rest of their neuron as it is (its other sliding pairs S′ landing): their end features, and the Schur
        complements G_jj − G_jS′ G_S′S′⁺ G_S′j (:meth:`spurious`).  One batched solve, a row per pair."""
        k = torch.arange(ii.numel(), device=ii.device)
        Sv = S[ii]
        Sv[k, jj] = False
        dw = self.slopes_of(start[ii, jj]) * R[jj] - Af[ii, jj]  # its weight in the start mode, less the current
        AfGv = torch.addcmul(AfG[ii], dw[:, None], self.G[jj])
        hv = AfGv[k, jj]
        schur = self.G[jj, jj].clone()
        pat = _Pattern(self.G, Sv)
        if pat.rows is not None:
            gi, idx = pat.gi, pat.idx
            u = pat.solve_padded(H[ii[gi], idx] / (self.gamma * self.c[ii[gi]]) - AfGv[gi, idx])
            g = self.G[idx, jj[pat.rows][:, None]]  # G_S′j, padded
            hv[pat.rows] += (u * g).sum(1)
            schur[pat.rows] -= (pat.solve_padded(g) * g).sum(1)
        return H[ii, jj] - self.gamma * self.c[ii] * hv, schur

    # -- the step ----------------------------------------------------------------------------------------
    def step(self, H: torch.Tensor, mode: torch.Tensor, dt: float, exponential: bool = False,
             split_collapses: torch.Tensor | None = None):
        """Advance (H, mode) by dt; returns (H1, Ā, mode1).  ``exponential``: ∫r over the step from the start
        pattern's linear flow, exactly (:meth:`kernel`; module docstring, "Long steps") instead of the trapezoid
        rule on a predictor.  ``split_collapses``: neurons (m,) whose arrivals that would together put them on
        w_i = 0 are checked as :meth:`spurious` checks a repelling arrival (module docstring, "Neurons through
        w_i = 0"; where G is rank-deficient)."""
        st = self.stats
        r0 = self.residual(H)
        if not bool(torch.isfinite(r0).all()):
            raise FloatingPointError
        start = mode
        S = torch.logical_not(start)
        pat = self.pattern(S)
        s_start = self.slopes_of(start)
        spec = None
        if exponential:  # exact while the start pattern holds: R = ∫₀^δ e^{−tM} r0 dt = δ φ₁(−δM) r0
            _, lam, V = self.kernel(start)
            w = V.T @ r0
            R = V @ (dt * phi_functions(-dt * lam, 1)[1] * w)
            spec = (lam, V, w)
            Ht, _, _ = self.land(pat, H, s_start * R[None, :], S, weights=False)
            r1 = None  # (r(t) is spec's; the predictor's end residual is not needed)
        else:
            Ht, _, _ = self.land(pat, H, s_start * (dt * r0)[None, :], S, weights=False)  # predictor: Euler on r
            r1 = self.residual(Ht)
            R = (r0 + r1) * (0.5 * dt)
        mode = start.clone()
        hend = Ht
        # a pair that starts the step on the kink in a free mode (released there) and ends it within rounding of it
        # has not crossed (h_eps: rounding of its neuron's largest |h|; a neuron through w_i = 0 has tiny features)
        h_eps = 0.0
        if self.h_rel:
            Habs = H.abs()
            h_eps = Habs.amax(1, keepdim=True).mul_(self.h_rel)
            h_eps = torch.where(Habs <= h_eps, h_eps, torch.zeros_like(H))
        arr = torch.mul(Ht, start) < -h_eps  # h has left the side of its mode (modes are ±1; 0 · h is never < 0)
        # neurons held at w_i = 0 keep their pattern (rank-many sliding pairs fix the row; the others' θ are not
        # unique there): a pair of theirs that would leave at the step's end is a question for :meth:`leave_zero`
        # (``held_exits``), not a change of mode — released, it re-arrived on the next step, and such a pair every
        # step shrank the steps 100×; changing within the passes, they took 4 passes a step instead of 1
        held = None
        if any_true(self.accepted):  # (accepted with nearly dependent φ, a row can stay off 0: not held)
            held = self.accepted & (H.abs().amax(1) <= self.h_rel * float(H.abs().max()))
            held = held[:, None] if any_true(held) else None
        if held is not None:
            arr &= ~held
        arr = self.first_arrivals(arr, H, Ht)
        _fill(mode, arr, 0)
        nchg = arr.to(torch.int8)
        nsplit = torch.zeros_like(nchg)  # crossing fractions taken again (:attr:`in_sequence`)
        pinned = torch.zeros_like(arr)
        prev = None  # (Af, Af G) of the last pass
        phi_rel = torch.zeros_like(H)  # where in the step a pair released in it leaves the kink (:meth:`late_releases`)
        th0 = [torch.zeros_like(H), torch.zeros_like(self.active_rows)]  # (θ₀, the neurons it holds)
        released = False  # whether a pair sliding at the start is released in the step

        def theta0(rows: torch.Tensor) -> torch.Tensor:
            # the start-of-step Filippov θ (m, n) of the pairs sliding at the start, for the neurons rows (m,) at least
            # (factored afresh for them: the passes' patterns take over the inverses of the step's first pattern)
            new = rows & ~th0[1] & self.active_rows
            if any_true(new):
                pat0 = _Pattern(self.G, torch.logical_not(start) & new[:, None])
                if pat0.rows is not None:
                    th, _ = self.instantaneous(pat0, H, start, s_start)
                    th0[0][pat0.gi[pat0.mask], pat0.idx[pat0.mask]] = th[pat0.mask]
                th0[1] |= new
            return th0[0]

        for npass in range(MAX_PASSES):
            st["n_passes"] += 1
            S = torch.logical_not(mode)
            Af, cr, slopes = self.weights(mode, start, H, hend, dt, r0, r1, R, spec)
            if released:  # releases split at their neuron's first arrival or crossing (:meth:`late_releases`)
                Af = self.late_releases(Af, mode, start, H, hend, dt, r0, r1, R, spec, theta0, phi_rel)
            AfG = self.product(Af, prev)
            prev = (Af, AfG)
            if split_collapses is not None:  # arrivals that would put a neuron on w_i = 0 together (:meth:`spurious`)
                coll = self.collapsed(start, mode) & split_collapses
                if any_true(coll):
                    cand = coll[:, None] & torch.logical_not(mode) & start.bool() & ~pinned & (nchg == 1)
                    back = self.spurious(H, S, start, cand, Af, AfG, R) if any_true(cand) else None
                    if back is not None:
                        st["n_spurious"] += int(back.sum())
                        nchg += back
                        mode = torch.where(back, start, mode)
                        prev = None
                        continue
            pat = self.pattern(S)
            H1, _, u_slide = self.land(pat, H, Af, S, AfG, weights=False)
            want = torch.zeros_like(S)
            up = torch.zeros_like(S)
            th_end = exits = None
            if pat.rows is not None:  # classified on the sliding pairs only (padded (rows, k), as the solves)
                gi, idx = pat.gi, pat.idx
                start_k = start[gi, idx]
                # sliding from the start: the step-averaged θ̄ decides a release for this step; an arrival:
                # θ̄ outside [0, 1] means it does not reach the kink (or crosses it) with σ′ in [s₋, s₊]
                keep = pat.mask & ~pinned[gi, idx]
                th_bar = self.theta(pat, u_slide, R)
                o, u = self.leaving(pat, keep, th_bar, R)
                arrivals = keep & (start_k != 0) & ~o
                th_end, r_end = self.instantaneous(pat, H1, mode, slopes)
                if any_true(arrivals):  # it arrives: slide on, or cross (the end-of-step θ decides)
                    oa, ua = self.leaving(pat, arrivals, th_end, r_end)
                    back = oa & (torch.where(ua, 1, -1).to(start.dtype) == start_k)  # touches and leaves
                    pinned[gi[back], idx[back]] = True
                    o |= oa & ~back
                    u |= ua & oa & ~back
                if self.in_sequence:
                    # an exit found at the step's end leaves in this step, where θ, linear in t from its start value
                    # θ₀, leaves [0, 1], or at its neuron's first arrival or crossing (:meth:`late_releases`): at
                    # the next step it left late, by up to a step (first order: the steps that output times cut
                    # changed the trajectory).  Released for this step by θ̄, θ = 2θ̄ − θ₀ at the step's end
                    oe, ue = self.leaving(pat, keep & (start_k == 0) & ~o, th_end, r_end)
                    sel = o & (start_k == 0)
                    if any_true(sel) or any_true(oe):
                        released = True
                        rows = torch.zeros_like(self.active_rows)
                        rows[gi[sel | oe]] = True
                        t0 = theta0(rows)[gi, idx]
                        t1 = torch.where(oe, th_end, 2 * th_bar - t0)
                        bound = (t1 > 1).to(t1.dtype)
                        den = t1 - t0
                        f = torch.where(den != 0, (bound - t0) / torch.where(den != 0, den, torch.ones_like(den)),
                                        torch.zeros_like(den)).clamp_(0.0, 1.0)
                        phi_rel[gi[sel | oe], idx[sel | oe]] = f[sel | oe]
                        exits = (oe, ue) if any_true(oe) else None
                want[gi[o], idx[o]] = True
                up[gi[o & u], idx[o & u]] = True
            wrong = torch.mul(H1, mode) < -h_eps
            if held is not None:
                wrong &= ~held
                want &= ~held
            newarr = wrong & ~cr & ~pinned
            if npass < MAX_PASSES - 1:  # one arrival per neuron and pass, after the neuron's other changes
                newarr = self.first_arrivals(newarr, H, H1, busy=any_rows(want))
            if exits is not None:  # (only in neurons without another change in this pass: a landing held on the
                # kink for the pass, a crossing pair turned a pair's exit from upwards to downwards)
                oe, ue = exits
                oe = oe & ~any_rows(want | newarr)[gi]
                want[gi[oe], idx[oe]] = True
                up[gi[oe & ue], idx[oe & ue]] = True
            # a crossing that ends on its starting side: turned back before the kink by the neuron's other changes
            # (:meth:`spurious`), or marginal — then it is held at the kink for the step
            back = None
            marginal = wrong & cr & ~pinned
            if self.check_spurious and any_true(marginal):
                back = self.spurious(H, S, start, marginal & (nchg <= MAX_CHANGES), Af, AfG, R)
                if back is not None:
                    marginal &= ~back
                    st["n_spurious"] += int(back.sum())
                    nchg += back
                    mode = torch.where(back, start, mode)
            resplit = False
            if self.in_sequence and any_true(marginal):
                # its crossing fraction φ came from its end without the crossing before its neuron's other changes
                # in the step: that end again, now — still across, it crosses at the new φ; else it does not reach
                # the kink and keeps its start mode (held on the kink for the step instead, it left late: O(δ))
                again = marginal & (nsplit < MAX_CHANGES)
                if any_true(again):
                    ii, jj = torch.nonzero(again, as_tuple=True)
                    he, _ = self.start_mode_end(H, S, start, ii, jj, Af, AfG, R)
                    across = he * start[ii, jj] < 0
                    hend = hend.clone()
                    hend[ii[across], jj[across]] = he[across]
                    nsplit[ii, jj] += 1
                    stays = torch.zeros_like(again)
                    stays[ii[~across], jj[~across]] = True
                    nchg += stays
                    mode = torch.where(stays, start, mode)
                    marginal &= ~again
                    resplit = True
            pinned |= marginal
            want |= newarr
            want &= ~pinned
            again = want & torch.ge(nchg, torch.full_like(nchg, MAX_CHANGES))  # (_fill: an int8 against a scalar)
            if npass == MAX_PASSES - 1:
                again = want
            new_pins = again | (pinned & mode.bool())
            pinned |= again
            want &= ~again
            if not any_true(want) and not any_true(new_pins) and back is None and not resplit:
                if not self.check_spurious:
                    break
                # arrivals that the neuron's other changes turn back (:meth:`spurious`: only a repelling pair can
                # be one), checked once per pair
                cand = torch.logical_not(mode) & start.bool() & ~pinned & (nchg == 1)
                cand &= torch.outer(self.c, R).mul_(self.sp - self.sm) <= 0
                if any_true(cand):
                    back = self.spurious(H, S, start, cand, Af, AfG, R)
                if back is None:
                    break
                st["n_spurious"] += int(back.sum())
                nchg += back
                mode = torch.where(back, start, mode)
                continue
            _fill(mode, pinned, 0)
            nchg.add_(want.view(torch.int8))
            flip = want & ~newarr  # (fills, not index_put: an index_put with a boolean mask costs a nonzero first)
            _fill(_fill(mode, flip & up, 1), flip & ~up, -1)
            if any_true(newarr):  # (few: over their indices, not two passes over (m, n))
                ii, jj = torch.nonzero(newarr, as_tuple=True)
                hend[ii, jj] = H1[ii, jj]  # (in place: hend is the step's own, the predictor's end or a copy)
                mode[ii, jj] = 0
        else:  # the last pass pinned what was pending: the end state of that pattern, no end-of-step releases
            S = torch.logical_not(mode)
            Af, _, _ = self.weights(mode, start, H, hend, dt, r0, r1, R, spec)
            if released:
                Af = self.late_releases(Af, mode, start, H, hend, dt, r0, r1, R, spec, theta0, phi_rel)
            pat = self.pattern(S)
            H1, _, u_slide = self.land(pat, H, Af, S, weights=False)
            th_end = None
        A = self.integrated(pat, Af, u_slide)
        # a pin whose weight leaves [s₋, s₊]·∫r is no Filippov motion (module docstring): flagged for a retry
        self.inadmissible = None
        if pat.rows is not None and any_true(pinned):
            gi, idx = pat.gi, pat.idx
            th = self.theta(pat, u_slide, R)
            out = pat.mask & pinned[gi, idx] & ((th > 1 + self.pin_margin) | (th < -self.pin_margin))
            if any_true(out):
                rows = torch.zeros_like(self.active_rows)
                rows[pat.rows[any_rows(out)]] = True
                rows &= ~(self.accepted | self.pin_exempt)
                self.inadmissible = rows if any_true(rows) else None
        # exits found at the end of the step (the end-of-step θ of pairs that slid through it): released for the
        # next step, from h = 0 (an exit is a smooth event)
        if th_end is not None:
            gi, idx = pat.gi, pat.idx
            o, u = self.leaving(pat, pat.mask & ~pinned[gi, idx], th_end, r_end)
            mode[gi[o], idx[o]] = torch.where(u[o], 1, -1).to(mode.dtype)
        self.held_exits = None
        if held is not None:
            moved = held[:, 0] & any_rows(mode != start)
            if any_true(moved):
                self.held_exits = moved
                mode = torch.where(held, start, mode)
        # the changes of mode as one count of (start, end) pairs: code 3·start + end + 4 in 0 … 8
        code = torch.add(mode, start, alpha=3).to(torch.int64).add_(4)
        counts = torch.bincount(code.flatten(), minlength=9).tolist()
        st["n_exits"] += counts[3] + counts[5]  # 0 → ∓1
        st["n_arrivals"] += counts[1] + counts[7]  # ∓1 → 0
        st["n_crossings"] += counts[2] + counts[6]  # ∓1 → ±1
        st["n_pinned"] += int(pinned.sum())
        if pat.rows is not None:
            st["max_sliding_per_neuron"] = max(st["max_sliding_per_neuron"], int(pat.mask.shape[1]))
        return H1, A, mode


def stability_limit(problem, slopes: tuple[float, float]) -> float:
    """2/λ_max(M₀): the largest step for which the scheme's explicit treatment of the free pairs is stable at t = 0
    (M₀ = κ_M G∘S₀ with σ′ ∈ {s₋, s₊} at the initial features, E3)."""
    from ..model import quantities as Q

    net = problem.net
    sm, sp = slopes
    ds = torch.where(problem.H0 > 0, sp, sm).to(problem.G.dtype)
    lam = Q.extreme_eigenvalues(Q.kernel_M(problem.G, ds, net.c, net.kernel_coef))[1]
    return 2.0 / lam if lam > 0 else math.inf


class StallWatch:
    """The stall projection of a sliding run (module docstring, "Steps"; :data:`STALL_AFTER`): its steps shrink below
    δ where events are dense or steps are retried, which the up-front max_steps check (δ's nominal steps) does not
    see — at step = 10, 500× past the stability limit 0.02 of a 16-neuron net, retries held them at 0.01–0.02, and
    t1 = 2 000 ran 228 s.  Every :data:`STALL_EVERY` accepted steps it keeps (t, steps, events); :meth:`check` stops
    the run with ``"stalled"`` where the recent steps project past max_steps."""

    def __init__(self, field: FeatureSpaceField, grid: np.ndarray, step: float, monitor: Monitor,
                 slopes: tuple[float, float], nu: float, stats: dict):
        self.field, self.grid, self.step, self.monitor, self.slopes, self.nu = field, grid, step, monitor, slopes, nu
        self.stats = stats
        self.marks = [(0.0, monitor.n_steps, 0)]  # (t, steps with retries, mode changes) every STALL_EVERY accepted
        self.since: int | None = None  # accepted steps at the first of the latest checks in a row that stalled

    def events(self) -> int:
        st = self.stats
        return st["n_arrivals"] + st["n_crossings"] + st["n_exits"]

    def check(self, t: float) -> None:
        """After an accepted step ending at ``t``: raises Abort("stalled") where the run is stalled (class doc)."""
        mon = self.monitor
        k = mon.n_accepted
        if k % STALL_EVERY:
            return
        self.marks.append((t, mon.n_steps, self.events()))
        if k < STALL_AFTER:
            return
        t0, n0, e0 = self.marks[-3]  # the last 2·STALL_EVERY accepted steps
        span, tries = t - t0, mon.n_steps - n0
        retries = tries / (2 * STALL_EVERY) - 1
        if not self.projects_past(k, t, span, tries):
            self.since = None
            return
        self.since = k if self.since is None else self.since
        # (without retries the event rate holds the steps, δ·ν/ρ, only where the events go on: an event_rate of 1e-300
        # held them at the floor δ/2^10 while the smoothed ρ of the start's events halved per step without one, and
        # they grew past ρ's underflow 1 000 steps later, to t1; fixed steps, ν = inf, are never held so)
        events = (self.events() - e0) / span
        held = events * span / (2 * STALL_EVERY) >= STALL_HELD * self.nu * self.step
        if retries >= STALL_RETRIED or (held and k >= STALL_AFTER_EVENTS and self.since <= k // 2):
            projected = mon.n_steps + (float(self.grid[-1]) - t) * tries / span
            raise Abort("stalled", self.message(t, span / (2 * STALL_EVERY), retries, events, projected))

    def projects_past(self, k: int, t: float, span: float, tries: int) -> bool:
        """Whether the last 2·STALL_EVERY accepted steps (``span`` of time, ``tries`` steps with their retries)
        project past max_steps at t1, shrunk (past STALL_SHRUNK× δ's nominal steps) and not growing."""
        t1 = float(self.grid[-1])
        if not self.monitor.n_steps + (t1 - t) * tries / span > self.monitor.max_steps:
            return False
        from .ode import _fixed_step_count

        rest = np.concatenate([[t], self.grid[self.grid > t]])
        if (t1 - t) * 2 * STALL_EVERY / span <= STALL_SHRUNK * _fixed_step_count(rest, self.step):
            return False  # (not shrunk: max_steps stops it where it must)
        i = (k // 2) // STALL_EVERY  # the 2·STALL_EVERY accepted steps up to half the run
        return not span > STALL_GROWTH * (self.marks[i][0] - self.marks[i - 2][0])  # (growing: a dense start)

    def message(self, t: float, dt: float, retries: float, events: float, projected: float) -> str:
        """What happened (the steps, their retries and events; the step against the stability limit) and what to try."""
        from .ode import AUTO_SLIDING_STEP

        mon, step, t1 = self.monitor, self.step, float(self.grid[-1])
        limit = stability_limit(self.field.problem, self.slopes)
        head = (f"the steps shrank to about {dt:.3g} (step={step:g}; {retries:.2g} retries per accepted step, "
                f"{events:.3g} activation events per unit time) at t = {t:.6g}, which would need about {projected:.3g} "
                f"steps to reach t1 = {t1:g} (max_steps={mon.max_steps})")
        filippov = "method='filippov' (event-driven, exact to rtol; for small and medium nets)"
        if retries >= STALL_RETRIED:
            why = ("the steps are retried shorter (n_rank_retries, n_pin_retries: changes of mode that a longer step "
                   "cannot classify)")
        else:
            why = (f"the event-rate control holds them where events are dense: steps are step·ν/ρ, with ρ the rate "
                   f"of mode changes, here ≈ {events:.3g} per unit time, against ν = options="
                   f"{{'event_rate': {self.nu:g}}}")
        if step > limit:
            good = min(AUTO_SLIDING_STEP, 0.9 * limit)
            need = t1 / good
            fix = (f"about {need:.3g} steps to t1, so raise max_steps with it), or {filippov}" if need > mon.max_steps
                   else f"about {need:.3g} steps to t1), {filippov}, or raise max_steps")
            return (f"{head}: {why}; and step={step:g} exceeds the stability limit 2/λ_max(M₀) = {limit:.3g} of the "
                    "explicit treatment of the free pairs, where the run oscillates (dense events) or its steps are "
                    f"retried; use a step below the limit (e.g. step={good:.2g}, what method='auto' takes: {fix}")
        return (f"{head}: {why}; raise max_steps (steps grow again where events thin out), use {filippov}, or a larger "
                "event_rate (longer steps, less accurate)")


def run_sliding(field: FeatureSpaceField, grid: np.ndarray, step: float, recorder: Recorder, monitor: Monitor,
                slopes: tuple[float, float], options: dict | None = None) -> dict:
    """Integrate the Filippov flow of ``field`` over ``grid`` with steps δ·min(1, ν/ρ) (module docstring, "Steps"),
    δ = ``step``, landing on every grid time and recording there; returns stats (also ``monitor.extra_stats``).

    Raises :class:`gflow.solve._record.Abort` on failure (the partial trajectory stays in ``recorder``).
    """
    opts = dict(options or {})
    _check_mn_layout(field, "sliding")
    stepper = SlidingStepper(field.problem, slopes, monitor)
    nu = float(opts.get("event_rate", field.problem.net.m))
    if not nu > 0:
        raise ValueError(f"option 'event_rate' must be > 0 (mode changes per unit time at which steps start to "
                         f"shrink; inf: fixed steps), got {opts.get('event_rate')}")
    adaptive = math.isfinite(nu)
    grow = float(opts.get("long_step", 1.0))
    if not (grow >= 1 and math.isfinite(grow)):
        raise ValueError(f"option 'long_step' must be a finite number >= 1 (the largest step, in units of step, taken "
                         f"by exponential steps where activation events are sparse; 1: off), got {opts.get('long_step')}")
    if grow > 1 and stepper.rank_G < stepper.n:
        raise ValueError(f"option 'long_step' needs a Gram matrix G of full rank (rank {stepper.rank_G} < n = "
                         f"{stepper.n} here: the embedded points φ(x_a) are linearly dependent, as in a shallow net "
                         f"with more points than inputs or random features with D < n); leave it out")
    stats = stepper.stats
    stats.update({"event_rate": nu, "min_step": math.inf, "max_step": 0.0, "long_step": grow, "n_exponential": 0,
                  "n_long_retries": 0})
    monitor.extra_stats = stats
    y = field.initial_state()
    recorder.record(0.0, y)
    mode = torch.where(y[0] > 0, 1, -1).to(torch.int8)
    c_col = field.problem.net.c[:, None]
    dt = step / RAMP if adaptive else step  # the rate is unknown at t = 0: start small, at most double per step
    t, rate = 0.0, None
    h_floor = step / 2**MAX_HALVINGS
    long_bound = math.inf  # long steps stay below it after a retry (LONG_BACKOFF, LONG_RELAX)
    watch = StallWatch(field, np.asarray(grid, dtype=float), step, monitor, slopes, nu, stats)
    try:
        for t_out in np.asarray(grid, dtype=float)[1:]:
            while t < t_out:
                h = dt
                landing = h >= (t_out - t) * (1 - 1e-9)
                if landing:
                    h = t_out - t
                before = stats["n_arrivals"] + stats["n_crossings"] + stats["n_exits"]
                kept = dict(stats)
                split = None  # (at the smallest step: neurons far from 0 whose arrivals would collapse them)
                while True:  # a collapse or an inadmissible pin: resolve it finer, down to δ/2^MAX_HALVINGS
                    expo = bool(grow > 1 and h > step)
                    H1, A, mode1 = stepper.step(y[0], mode, h, exponential=expo, split_collapses=split)
                    if expo and any_true((mode1 != mode).sum(1) > MAX_LONG_CHANGES):
                        # a long step with interacting changes in one neuron: shorter, down to δ
                        kind, shorter = "long", max(0.5 * h, step)
                        long_bound = min(long_bound, LONG_BACKOFF * h)
                    else:
                        retry = stepper.retry(mode, mode1)
                        if retry is None:
                            break
                        if 0.5 * h < h_floor:  # it holds at the smallest step: the flow's own w_i → 0 …
                            coll = stepper.collapsing(mode, mode1)
                            if retry[1] == "rank" and split is None:  # … unless a landing put two arrivals together
                                far = stepper.far_from_zero(y[0], stepper.residual(y[0]), coll, h, bound=True)
                                if any_true(far):
                                    split = far
                                    kept["n_rank_retries"] += 1
                                    stats.update(kept)
                                    monitor.on_step(t, h, False)
                                    continue
                            if any_true(coll):  # w_i reaches 0: the pattern it leaves with, if it does
                                stuck = stepper.emerge(y[0], H1, mode1, coll, h)
                                H1[coll & ~stuck] = 0.0  # (exactly: it leaves from 0 on its new pattern)
                                stats["n_emerged"] += int((coll & ~stuck).sum())
                                stepper.accepted |= stuck
                            stepper.pin_exempt |= retry[0] & ~coll
                            break
                        kind, shorter = retry[1], 0.5 * h
                    kept[f"n_{kind}_retries"] += 1  # (the retried step's counts are dropped)
                    stats.update(kept)
                    monitor.on_step(t, h, False)
                    h, landing = shorter, False
                    dt = min(dt, h)
                rows = stepper.held_exits
                if rows is not None and stepper.reask(H1):  # a held neuron may leave w_i = 0 now (r has moved on)
                    stuck = stepper.leave_zero(H1, mode1, rows)
                    H1[rows & ~stuck] = 0.0  # (exactly: it leaves from 0 on its new pattern)
                    stepper.accepted &= ~(rows & ~stuck)
                    stats["n_emerged"] += int((rows & ~stuck).sum())
                mode = mode1
                y1 = torch.empty_like(y)
                y1[0] = H1
                torch.addcmul(y[1], A, c_col, out=y1[1])
                monitor.on_step(t, h, True)
                stats["n_exponential"] += expo
                y, t = y1, (t_out if landing else t + h)
                monitor.partial = (t, y)
                stats["min_step"], stats["max_step"] = min(stats["min_step"], h), max(stats["max_step"], h)
                if adaptive:  # the rate of mode changes, smoothed over the last steps (a count per step is noisy)
                    now = (stats["n_arrivals"] + stats["n_crossings"] + stats["n_exits"] - before) / h
                    rate = now if rate is None else 0.5 * (rate + now)
                    # (never below the retries' floor: one chattering pair per tiny step made the rate ~ 1/h and
                    # shrank the steps geometrically, to 1e-34)
                    # (ν/ρ only where it is below the cap: a rate that decays to a subnormal overflowed it)
                    cap = step * (grow if rate * grow <= nu else nu / rate)
                    if long_bound < math.inf:
                        long_bound *= LONG_RELAX
                        cap = min(cap, max(step, long_bound))
                    dt = max(min(cap, (2.0 if h <= step else LONG_GROWTH) * dt), h_floor)
                watch.check(t)
            recorder.record(t, y)
    except FloatingPointError:
        monitor.raise_nonfinite(t)
    stats["n_sliding"] = int((mode == 0).sum())
    monitor.partial = None
    return stats
