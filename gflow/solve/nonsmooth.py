r"""Kinked activations (ReLU, leaky ReLU): fixed-step flows with an a-posteriori error estimate of the loss.

**Which flow.**  For σ = ReLU the feature field (E4), Ḣ = −γ P G with P_ia = c_i σ′(H_ia) r_a, jumps across
every surface h_ia := H_ia = 0.  Write the h_ia-component of the field on the two sides of that surface
(EQUATIONS.md (11)) as

    f⁻_ia = q_ia := −γ c_i Σ_{b≠a} G_ab r_b σ′(h_ib) − γ c_i G_aa r_a σ′(0⁻),   f⁺_ia = f⁻_ia + p_ia,
    p_ia  := −γ c_i G_aa r_a (σ′(0⁺) − σ′(0⁻))          (σ′(0⁺) − σ′(0⁻) = 1 for ReLU, 1 − s for leaky slope s).

* **Crossing** (f⁻ and f⁺ of the same sign): the pair passes through the kink; every convention for σ′(0)
  gives the same (Carathéodory) solution, since the crossing takes zero time.
* **Sliding** (f⁺ < 0 < f⁻: the field points into the kink from both sides): no classical solution exists.
  The paper's convention σ′(0) = 0 (EQUATIONS.md §4) does not define one either — at h_ia = 0 it gives
  ḣ_ia = f⁻ > 0, which pushes the pair off the kink into a region whose field pushes it straight back.
  The **Filippov solution** keeps h_ia ≡ 0 and replaces σ′(h_ia) by the convex combination
  θ_ia = (σ′(0⁻) + (σ′(0⁺) − σ′(0⁻))·θ) with θ ∈ (0, 1) chosen so that ḣ_ia = 0; for one sliding pair of a
  neuron θ = −q_ia/p_ia, for several pairs of neuron i θ solves the |S_i|×|S_i| system with the block G_SS.
  The loss then decays with the Schur complement of G on the sliding pairs instead of G itself.
* The two differ exactly when some pair slides; along the ReLU flows of Experiments 2–3 thousands of pairs
  do (issue 6: 4 002 of 25 600 pairs flipped sign 475 000 times in 200 GD steps), so the difference is real.

**What gflow computes: the Filippov (sliding) solution** — directly, event by event, with
``method="filippov"`` (:mod:`gflow.solve.filippov`; exact to its tolerance, for small and medium problems), by
time-stepping with ``method="sliding"`` (:mod:`gflow.solve.sliding`: sliding pairs held on the kink, second order
on the exact solutions; usable here, with the same step-halving estimate), and as the step → 0 limit of the
fixed-step schemes below.  GD (eq. (9)) and every fixed-step Runge–Kutta
scheme evaluated with σ′(0) := 0 chatter across a sliding surface with amplitude O(step), spending a
fraction of their steps on each side that tends to θ; as the step → 0 they converge to the Filippov
solution (Filippov 1988, Ch. 2; checked in tests/test_nonsmooth.py on a one-neuron, two-point problem whose
Filippov solution is exact: the GD loss converges to it at first order, and not to the σ′(0) = 0 rate).
The value σ′(0) itself only matters on a set of times of measure zero and does not change the limit.

**How the error is controlled.**  Fixed-step schemes lose their classical order at the kink: local errors
are O(step) at every crossing and chattering adds O(step) noise, so the global error of the loss behaves
like C·step^p with an *observed* order p that is problem dependent (p ≈ 1 on small problems; on the
Experiment 3 setting, m = D = 512, n = 200, the loss at t = 50 for Euler steps 1/16, 1/32, 1/64, 1/128 was
4.1120, 4.0957, 4.0849, 4.0758 — differences shrinking by only 0.66 and 0.84 per halving — and at t = 200
for steps 1/4 … 1/128 it was 0.02433, 0.02597, 0.02510, 0.02478, 0.02446, 0.02434, not monotone).
:func:`simulate_nonsmooth` therefore runs the scheme at three steps h, h/2, h/4 on the same output grid,
estimates the contraction ρ = Σ_k|L_{h/2} − L_{h/4}| / Σ_k|L_h − L_{h/2}| of the differences (ρ = 2^{−p}),
and reports for the finest solution (the one returned)

    error_estimate_k = safety · max_{j∈{k−1,k,k+1}} (δ_j / L_{h/4}(t_j)) · ρ/(1 − ρ),

with δ_j = |L_{h/2}(t_j) − L_{h/4}(t_j)| for smooth σ.  The neighbour maximum guards against a difference
passing through zero at one saved time; it is taken of the relative differences (of the absolute ones divided
by L_{h/4}(t_k), it inflated the estimate by the loss's fall between neighbouring times: 4 000× on a ReLU run
to t = 2 000 with 11 saved times); ρ is clamped to [2^{−order}, ρ_max] and the run is flagged
``reliable: False`` when the observed ρ exceeds ρ_max (the steps are not yet in the convergent regime).

For a kinked σ the error converges like a staircase — whether a pair that grazes the kink crosses or slides
depends on the step, so the error can stall over a halving and drop at the next — and an error made at one
event persists while later differences are small.  Measured on a random P-3L problem (m = 128, D = 32,
n = 30): relative errors 6.7e-4, 4.0e-4, 3.7e-4, 3.2e-4, 1.8e-4 at t = 10 for steps 0.1 … 0.00625, and at
t = 7 differences of 1.4e-4 (h vs h/2) and 1.7e-5 (h/2 vs h/4) against an error of 3.3e-4.  Hence, for a
kinked σ: ρ ≥ ½ (order ≤ 1), δ_j = max(|L_h − L_{h/2}|, |L_{h/2} − L_{h/4}|)(t_j), and the relative estimate
is carried forward in time (a running maximum).  With safety = 2 this bounded the true error in every case
of tests/test_nonsmooth.py and in 7 of the 8 random cases of ``benchmarks/bench_relu.py --study``.  It is an
estimate, not a proof: an error plateau that spans all three steps is invisible to step halving (the 8th
case, kept as a strict xfail test: errors 4.1e-4, 4.6e-4, 4.6e-4 at steps 0.1, 0.05, 0.025, then 4e-6 at
0.0125).

With ``rtol`` the step is halved until the largest estimate meets it, within ``max_wall_time``.  What was
done is recorded in ``sol.config["solver"]["error_estimate"]``.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from .._validate import check_choice, check_flag, check_positive_float, check_positive_int, check_times, describe
from ..model.network import Network
from ..model.scaling import get_scaling
from ..solution import GFlowWarning, Interrupted, Solution
from ._record import interrupted

#: fixed-step schemes usable for non-smooth flows, with their classical orders (lost at the kink)
NONSMOOTH_METHODS = {"euler": 1, "midpoint": 2, "rk4": 4, "sliding": 1}
RHO_MAX = 0.85  # differences shrinking more slowly than this per halving (order < 0.23) are "not converging"
DEFAULT_SAFETY = 2.0
_MIN_RTOL = 64 * 2.0**-52  # ≈ 1.4e-14: differences of the loss below this are its rounding


def _steps_to(t: float, h: float) -> float:
    """⌈t/h⌉ as a float; inf where it overflows (t1 = 1e308, or a subnormal h)."""
    n = t / h
    return float(math.ceil(n)) if math.isfinite(n) else math.inf


#: rounding of the residual: ‖δr‖ ≈ κ·ε·S, S = max(‖y‖, ‖f‖, √n·ĉ·|α|·m) (ĉ: the rms of c; |α|·m·ĉ the size the m
#: terms α·cᵢσ(hᵢ) of f add up to per point for |σ| ≈ 1 — ĉ for "ours" and "mf", √m·ĉ for "ntk", whose symmetrised f
#: cancels to O(1) from terms of ĉ/√m each).  Measured float32 against float64 at the same fixed steps
#: (benchmarks/bench_rounding.py, results/rounding/: 60 runs, ours / ntk / mf, tanh / erf / linear / ReLU with euler
#: and sliding, identity and random-feature embeddings, m = 16 … 1024, n = 5 … 100, until float32's loss stalls),
#: ‖δr‖/(ε·S) where the floor is finite: ≤ 6.3 near the rounding and ≤ 9.5 while resolved for smooth σ and sliding
#: (with √n·ĉ alone "ntk" reached 277 at m = 1024; a float64 linear flow against its exact rk4 recursion in longdouble
#: 267, now 6.6).  Exceptions: a linear σ on rank-deficient random features (rank d < n, the loss stalling at 0.16),
#: 14–27 — the rounding of Φ turns G's null space (an ε₆₄ perturbation of X in float64: 13.5), data conditioning no
#: scale of the run shows; ReLU with euler up to 2 200 — rounding puts a pair on the other side of the kink, an O(step)
#: event error that step halving sees (it covered all 15 euler runs), not rounding that it misses.  First calibrated
#: on six small "ours" problems (≤ 3.4 resolved, 19 at the rounding; a float64 linear flow at L = 5e-27 was 6.2e-2 off
#: its closed form, 8e-15 in r)
ROUNDING_KAPPA = 16.0
#: a residual whose rounding is this fraction of it or more is rounding: its loss has no relative accuracy (inf)
ROUNDING_ALL = 0.5


def rounding_floor(sol: Solution) -> np.ndarray:
    r"""The relative error of ``sol``'s loss that rounding alone makes, at each saved time: with
    a = κ·ε·S/‖r(t)‖ (S = max(‖y‖, ‖f(t)‖, √n·ĉ·|α|·m), κ = :data:`ROUNDING_KAPPA`, ε the run's dtype's machine
    epsilon; |α|·m = 1 for "ours" and "mf", √m for "ntk", whose outputs are sums of m terms of size ĉ/√m),
    2a + a² — the relative change of ½‖r‖² that a residual error ‖δr‖ = κ·ε·S makes — and inf where
    a ≥ :data:`ROUNDING_ALL` (the residual is its own rounding: the flow's loss may be any number below, e.g. a
    linear flow's closed form 1e-120 where every solver, dop853 at rtol 1e-13 included, reads 1e-31).  Step halving
    cannot see it: the three solves round alike, so their differences fall with the step while the error stays.
    It matters where the loss is tiny (a ≈ 1 at L ≈ ½(κ·ε·S)²: ≈ 1e-28 in float64 and 1e-11 in float32 for S = 1)
    and in float32; 0 at t = 0 (every run starts from the same rounded loss)."""
    eps = float(np.finfo(np.float32 if sol.config.get("network", {}).get("dtype") == "float32" else np.float64).eps)
    res = np.asarray(sol.residual, dtype=np.float64).reshape(len(sol.t), -1)
    scale = rounding_scale(sol)
    norm = np.linalg.norm(res, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = np.where(norm > 0, ROUNDING_KAPPA * eps * scale / norm, np.where(scale > 0, np.inf, 0.0))
        floor = np.where(a >= ROUNDING_ALL, np.inf, 2.0 * a + a * a)
    if floor.size:
        floor[0] = 0.0
    return np.where(np.isnan(floor), np.inf, floor)


def rounding_scale(sol: Solution) -> np.ndarray:
    """S(t) = max(‖y‖, ‖f(t)‖, √n·ĉ·|α|·m) at each saved time of ``sol``: the scale the residual's rounding is
    relative to (:func:`rounding_floor`)."""
    out = np.asarray(sol.output, dtype=np.float64).reshape(len(sol.t), -1)
    c = np.asarray(sol.c, dtype=np.float64)
    terms = math.sqrt(out.shape[1] * float(np.mean(c * c))) * _output_factor(sol) if c.size else 0.0
    return np.maximum(max(float(np.linalg.norm(np.asarray(sol.y, dtype=np.float64))), terms),
                      np.linalg.norm(out, axis=1))


def _output_factor(sol: Solution) -> float:
    """|α|·m of ``sol``'s network: how large the sum of f's m terms α·cᵢσ(hᵢ) is against ĉ (1 for "ours" and "mf",
    √m for "ntk"; at least 1: a run whose configuration does not say is treated as "ours")."""
    net = sol.config.get("network", {})
    try:
        m = int(net["width"])
        return max(1.0, abs(get_scaling(net.get("scaling", "ours")).alpha(m)) * m)
    except (KeyError, TypeError, ValueError):
        return 1.0


def richardson_estimate(losses: Any, order: float, *, safety: float = DEFAULT_SAFETY, smooth: bool = True,
                        floor: Any = None) -> dict:
    r"""Error estimate of the finest of three loss trajectories computed with steps h, h/2, h/4.

    Args:
        losses: (3, T) the losses at the same saved times, coarsest first.
        order: the scheme's classical order (the fastest contraction believed: ρ ≥ 2^{−order}).
        safety: factor applied to the estimate (see the module docstring).
        smooth: False for a kinked activation: the order is then capped at 1 (events cost O(step) whatever the
            scheme) and the larger of the two differences is used, since the error need not shrink steadily:
            it can stall over a halving and then drop (whether a pair grazing the kink crosses or slides
            depends on the step).
        floor: (T,) the relative error that rounding alone makes (:func:`rounding_floor`): the estimate is at
            least this, at every saved time (None: no floor).

    Returns:
        dict with ``abs`` (T,) the absolute estimate, ``rel`` (T,) relative to the finest loss, ``rho`` the
        contraction used, ``rho_observed``, ``observed_order`` (−log2 ρ_observed) and ``reliable``.
    """
    L = np.asarray(losses, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != 3:
        raise ValueError(f"losses must have shape (3, T), got {L.shape}")
    d1 = np.abs(L[0] - L[1])
    d2 = np.abs(L[1] - L[2])
    s1, s2 = float(d1.sum()), float(d2.sum())
    rho_obs = s2 / s1 if s1 > 0 else (0.0 if s2 == 0 else math.inf)
    reliable = bool(rho_obs <= RHO_MAX)
    rho = min(max(rho_obs, 2.0 ** (-(order if smooth else min(order, 1.0)))), RHO_MAX)
    # the envelope over neighbouring times is taken of the *relative* differences: the absolute ones of an earlier
    # time, where the loss is orders of magnitude larger on a long horizon, divided by this time's loss made the
    # estimate 4 000× the true error (ReLU to t = 2 000, 11 saved times: 2.3e-2 against 5e-6)
    scale = np.abs(L[2])
    r1 = _ratio(d1, scale)
    env = _rel_envelope(d2, scale)
    if not smooth:  # staircase convergence: one small difference does not mean a small error (see docstring)
        env = np.maximum(env, _rel_envelope(d1, scale))
    if not reliable:  # not converging: fall back on the larger difference, still scaled by the slowest ρ
        env = np.maximum(env, r1)
    rel = safety * env * rho / (1.0 - rho)
    rel[0] = 0.0 if L.shape[1] and d2[0] == 0 else rel[0]
    if not smooth:  # an error made at a kink event persists: carry the largest relative estimate forward
        rel = np.maximum.accumulate(rel)
    rounded = np.zeros(rel.shape, dtype=bool)
    if floor is not None:  # (rounding: the same in all three solves, so no difference shows it; see rounding_floor)
        floor = np.asarray(floor, dtype=np.float64)
        if floor.shape != rel.shape:
            raise ValueError(f"floor must have shape ({rel.size},) (one per saved time), got {floor.shape}")
        rounded = floor > rel
        rel = np.where(rounded, floor, rel)
    # (a loss of exactly 0: the absolute difference itself, as the relative one is infinite there)
    fallback = safety * np.maximum(d2, d1 if not (smooth and reliable) else 0.0) * rho / (1.0 - rho)
    with np.errstate(invalid="ignore"):  # (inf · 0 where the loss is 0: replaced by the fallback; a NaN stays NaN)
        est = np.where(scale == 0, np.where(rel > 0, fallback, 0.0), rel * scale)
    return {"abs": est, "rel": rel, "rho": rho, "rho_observed": rho_obs, "rounded": rounded,
            "observed_order": -math.log2(rho_obs) if 0 < rho_obs < math.inf else math.inf, "reliable": reliable}


def _ratio(d: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """d / scale, inf where scale is 0 and d is not (0 where both are)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale == 0, np.where(d > 0, np.inf, 0.0), d / scale)


def _rel_envelope(d: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """max over each saved time and its two neighbours of the relative differences d_j / |L_j|; a neighbour whose
    loss is exactly 0 gives d_j / |L_k| (its own ratio, inf, made the estimate of a positive loss next to it inf)."""
    own = _ratio(d, scale)
    env = own.copy()
    if env.size > 1:
        env[1:] = np.maximum(env[1:], np.where(scale[:-1] == 0, _ratio(d[:-1], scale[1:]), own[:-1]))
        env[:-1] = np.maximum(env[:-1], np.where(scale[1:] == 0, _ratio(d[1:], scale[:-1]), own[1:]))
    return env


def _unreachable(est: dict, order: float, h: float, rtol: float, t_end: float, max_steps: int, wall: float,
                 remaining: float | None) -> tuple[str, str] | None:
    """(status, message) where the halvings cannot reach ``rtol`` within max_steps or the time left: the estimated
    error e at step h falls as h^p (p: the observed order, or the method's where that is larger or unknown — the
    projection that asks for the fewest steps), so rtol needs a step h·(rtol/e)^{1/p}; None where it may be
    reachable.  The solves to get there cost about twice the last one's time × h/h_needed."""
    worst = float(np.max(est["rel"]))
    if not (math.isfinite(worst) and worst > rtol):
        return None
    observed = est.get("observed_order", math.nan)
    p = max(order, observed) if math.isfinite(observed) else order
    h_need = h * (rtol / worst) ** (1.0 / p)
    n_need = _steps_to(t_end, h_need)
    head = (f"the estimated error {worst:.2e} at step {h:g} falls as h^{p:.2g}: rtol = {rtol:g} needs a step of about "
            f"{h_need:.2g}")
    if n_need > 2 * max_steps:  # (2×: early estimates are rough, and an error may fall faster later)
        return "max_steps", (f"{head}, {n_need:.3g} steps, more than max_steps = {max_steps}; loosen rtol or raise "
                             "max_steps")
    cost = 2.0 * wall * h / h_need
    if remaining is not None and cost > remaining:
        return "time_budget", (f"{head}, about {cost:.3g} s more, beyond max_wall_time; loosen rtol or raise "
                               "max_wall_time")
    return None


def _rounding_unreachable(est: dict, rtol: float | None, sol: Solution) -> tuple[str, str] | None:
    """("max_steps", message) where rounding alone keeps the estimate above ``rtol`` (no step reaches it: halving
    would go on to max_steps); None where it does not, or without an rtol (an estimate only)."""
    if rtol is None:
        return None
    over = np.flatnonzero(est["rounded"] & (est["rel"] > rtol))
    if not over.size:
        return None
    k = int(over[0])
    dtype = sol.config.get("network", {}).get("dtype", "float64")
    return "max_steps", (f"no step reaches rtol = {rtol:g}: from t = {sol.t[k]:.6g} (loss {sol.loss[k]:.3g}) the "
                         f"bound on the loss's rounding in {dtype} (16·ε·S/‖r‖, conservative) alone is "
                         f"{est['rel'][k]:.2e} of it, which step halving cannot certify below; loosen rtol, end at an "
                         "earlier t1"
                         + (", or use float64" if dtype == "float32" else ""))


def kinked_method_problem(net: Network, method: str) -> str | None:
    """Why step halving cannot take ``method`` on ``net``'s activation (None: it can): a higher-order scheme on a
    kinked σ, whose error step halving cannot estimate."""
    if net.activation.smooth or method in ("euler", "sliding"):
        return None
    from .filippov import kink_slopes

    use = ("use method='sliding' (the Filippov time-stepping scheme) or 'euler' (first order)"
           if kink_slopes(net.activation) is not None else  # (sliding takes ReLU-type kinks only)
           "use method='euler' (first order)")
    return (f"method {method!r} with the kinked activation {net.activation.name!r}: higher-order schemes lose their "
            "order at the kink and their error oscillates with the step (it depends on where each crossing falls "
            f"inside its step), so step halving cannot estimate it; {use}")


def simulate_nonsmooth(
    net: Network,
    X: Any,
    y: Any,
    t1: float | None = None,
    saveat: Any = None,
    *,
    method: str = "euler",
    step: float | None = None,
    rtol: float | None = None,
    safety: float = DEFAULT_SAFETY,
    max_wall_time: float | None = None,
    max_steps: int = 10_000_000,
    warn: bool = True,
    **kwargs: Any,
) -> Solution:
    r"""Integrate a (possibly non-smooth) gradient flow with a fixed-step scheme and estimate the loss error.

    Runs ``method`` with steps h, h/2, h/4 (h = ``step``) on one output grid and returns the h/4 solution
    with ``sol.error_estimate`` (the estimated relative error of the loss at each saved time; see the module
    docstring).  The flow computed is the Filippov solution (sliding along h_ia = 0), the step → 0 limit of
    GD and of fixed-step schemes.

    Args:
        net, X, y, t1, saveat: as in :func:`gflow.simulate`.
        method: ``"euler"`` (forward Euler = GD in feature space), ``"sliding"`` (kinked activations only: the
            Filippov time-stepping scheme of :mod:`gflow.solve.sliding`, 7–2500× more accurate than Euler at the
            same (largest) step on Experiment 3's ReLU setting),
            ``"midpoint"`` or ``"rk4"`` (smooth activations only: at a kink their error oscillates with the
            step — on the n = 1 oracle midpoint's relative error at t = 2.5 went 2.1e-3, 4.9e-4, 4.3e-4,
            3.6e-4, 7.1e-5, 8.7e-5 as the step halved from 0.1 — and step halving does not estimate it).
        step: the coarsest step h (default 0.25; it must be stable, δλ_max(M) < 2).
        rtol: accuracy target for the relative loss error: the step is halved (one more solve, the coarsest
            dropped) until the largest estimate over the saved times is ≤ rtol, or the budget runs out
            (status ``"time_budget"``/``"max_steps"``, with the finest solution reached and its estimate).
            ``None``: one three-step estimate, no refinement — except that steps past the stability limit are
            dropped: where the finest of the three is stable the step is halved until all three are.
        safety: factor on the estimate (2 by default; tests/test_nonsmooth.py checks that it bounds the
            true error on ReLU, leaky-ReLU and tanh problems).
        max_wall_time: budget in seconds for all solves together.
        max_steps: limit on the steps of the finest solve.
        warn: warn with :class:`gflow.GFlowWarning` when the target is not met or a solve fails.
        **kwargs: passed to :func:`gflow.simulate` (``space``, ``X_test``, ``integrals``, ``features_at``,
            ``options`` — e.g. ``{"event_rate": ν}`` for ``"sliding"`` —, ...).

    Returns:
        a :class:`gflow.Solution` with ``error_estimate`` filled and ``config["solver"]["error_estimate"]``
        describing the steps, the observed order and whether the target was met.

    Example:
        >>> import gflow as gf
        >>> X, y = gf.data.random_labels(n=5, d=10, seed=0)
        >>> net = gf.Network(d=10, width=32, activation="relu", seed=0)
        >>> sol = gf.simulate_nonsmooth(net, X, y, t1=2.0, step=0.1, saveat=[0.0, 1.0, 2.0])
        >>> sol.error_estimate.shape
        (3,)
    """
    from .ode import _fixed_step_count, default_saveat, simulate

    if not isinstance(net, Network):
        raise TypeError(f"net must be a gf.Network, got {describe(net)}")
    unknown = sorted(set(kwargs) - set(inspect.signature(simulate).parameters))
    if unknown:  # (simulate's own TypeError named simulate(), called three solves down)
        raise TypeError(f"simulate_nonsmooth() got an unexpected keyword argument {unknown[0]!r}")
    check_choice(method, "method", tuple(NONSMOOTH_METHODS))
    step = 0.25 if step is None else check_positive_float(step, "step")
    if rtol is not None:
        rtol = check_positive_float(rtol, "rtol")
    safety = check_positive_float(safety, "safety")
    if safety < 1:
        raise ValueError(f"safety must be ≥ 1, got {safety}")
    if rtol is not None and rtol > 1:
        raise ValueError(f"rtol must be ≤ 1 (the target relative error of the loss: 1 is 100 %), got {rtol:g}")
    if rtol is not None and rtol < _MIN_RTOL:
        raise ValueError(f"rtol must be ≥ {_MIN_RTOL:g}, got {rtol:g}: below that the loss's own rounding (float64) "
                         "sets the differences between step halvings, so halving would go on until max_steps")
    max_steps = check_positive_int(max_steps, "max_steps")
    check_flag(warn, "warn")
    if max_wall_time is not None:
        max_wall_time = check_positive_float(max_wall_time, "max_wall_time")
    for bad in ("rtol_inner", "atol", "error_estimate"):
        if bad in kwargs:
            raise TypeError(f"simulate_nonsmooth() got an unexpected keyword argument {bad!r}")
    if kwargs.get("checkpoint") is not None:  # (one file cannot hold three solves with different steps)
        raise ValueError("checkpoint is not supported by simulate_nonsmooth (solves at steps h, h/2, h/4, …); "
                         "checkpoint single gf.simulate solves instead")
    problem = kinked_method_problem(net, method)
    if problem:
        raise ValueError(problem)
    order = NONSMOOTH_METHODS[method]
    kwargs.setdefault("progress", False)

    if t1 is None and saveat is None:
        raise TypeError("give the final time t1 (e.g. t1=500.0) or the output times saveat")
    t_end = check_positive_float(t1, "t1") if t1 is not None else float(np.max(check_times(saveat, "saveat")))
    if _steps_to(t_end, step / 4) > max_steps:
        raise ValueError(f"the finest of the steps {step:g}, {step / 2:g}, {step / 4:g} needs "
                         f"{_steps_to(t_end, step / 4):.0f} steps to reach t1={t_end:g}, more than max_steps={max_steps}; "
                         "raise max_steps or enlarge step")
    given = saveat is not None
    if saveat is None:  # one output grid for all solves, on multiples of the coarsest step (see default_saveat)
        saveat = default_saveat(t_end, step)
    grid = np.unique(np.concatenate([[0.0, t_end], check_times(saveat, "saveat")]))
    counts = [_fixed_step_count(grid, h) for h in (step, step / 2, step / 4)]
    if not counts[0] < counts[1] < counts[2]:  # fixed-step grids land on every output time
        why = (f"saveat has output times closer than step={step:g} (or step/2)" if given else
               f"step={step:g} exceeds t1={t_end:g}")
        raise ValueError(f"{why}: the solves at steps {step:g}, {step / 2:g}, {step / 4:g} would take "
                         f"{counts[0]:.0f}, {counts[1]:.0f}, {counts[2]:.0f} steps — some the same steps — so step "
                         "halving could not estimate the error; "
                         + ("give fewer output times (or none)" if given else f"use step ≤ {t_end:g}"))
    start = time.perf_counter()
    sols: list[Solution] = []
    steps: list[float] = []
    walls: list[float] = []
    evals = 0
    status, message = "success", ""
    h = step
    est = None
    loosen = " or loosen rtol" if rtol is not None else " or enlarge step"
    ctrl_c = False  # a Ctrl-C stopped a solve, or arrived as one finished
    skipped = ""  # the finer solves not run: every step of the estimate past the stability limit
    extra, refused = False, ""  # halving on past an unstable coarse step (rtol None): optional — refused, the
    while True:  # three solves before stand, without an estimate, as without the extra halving
        remaining = None if max_wall_time is None else max_wall_time - (time.perf_counter() - start)
        need = _steps_to(t_end, h)
        if extra and need > max_steps:
            refused = f"halving on to step {h:g} would need {need:.0f} steps, more than max_steps = {max_steps}"
            break
        if need > max_steps:
            status, message = "max_steps", (f"the next step h = {h:g} needs {need:.0f} steps, more than max_steps = "
                                            f"{max_steps}; raise max_steps{loosen}")
            break
        if not sols and remaining is not None:  # the coarsest solve always runs, to its share of the budget: it
            remaining = max(remaining, 1e-9)  # returns a partial trajectory and a status (nothing, before)
        elif remaining is not None and (remaining <= 0 or (walls and 2.2 * walls[-1] > remaining)):
            if extra:
                refused = f"halving on to step {h:g} would exceed max_wall_time = {max_wall_time:g} s"
                break
            status, message = "time_budget", (f"max_wall_time = {max_wall_time:g} s would be exceeded by the solve "
                                              f"with step {h:g}; raise max_wall_time{loosen}")
            break
        try:
            sol = simulate(net, X, y, t1, saveat, method=method, step=h,  # (the grid lands on every output time)
                           max_steps=max_steps, max_wall_time=remaining, warn=False, **kwargs)
        except Interrupted as stop:  # Ctrl-C: the finest completed solve and its estimate are what is kept
            sol, ctrl_c = stop.solution, True
        evals += int(sol.stats.get("n_f_evals", 0))
        if extra and not sol.ok and not ctrl_c:
            refused = f"the solve halving on to step {h:g} stopped [{sol.status}]"
            break
        if not sol.ok:
            status, message = sol.status, f"the solve with step {h:g} stopped: {sol.message}"
            if sol.status == "time_budget":  # (its own message quoted the budget it was given: what was left)
                message = (f"the wall-time budget max_wall_time = {max_wall_time:g} s (for all the solves) ran out in "
                           f"the solve with step {h:g} at t = {sol.t[-1]:.6g} (of t1 = {t_end:g}); raise "
                           f"max_wall_time{loosen}")
            if not sols:
                sols.append(sol)
                steps.append(h)
                walls.append(float(sol.stats.get("wall_time", 0.0)))
            break
        sols.append(sol)
        steps.append(h)
        walls.append(float(sol.stats.get("wall_time", 0.0)))
        limit = sol.stats.get("stability_limit")
        if len(sols) == 1 and rtol is None and sol.stats.get("unstable_step") and limit is not None and \
                h / 4 > limit:  # all three steps past the limit: the finer two would estimate nothing either
            # (the test net with inputs of norm 1e3, limit 2e-6: the solve at 0.25 took 0.5 s, the one at 0.125 took
            # 8 196 steps and 270 s, for the "no error estimate" of three solves that do not follow the flow)
            skipped = (f"no error estimate: the steps {h:g}, {h / 2:g}, {h / 4:g} are all past the stability limit "
                       f"2/λ_max(M₀) = {limit:.3g} (see the warning), where the solves do not follow the flow, so the "
                       f"finer two were not run; use step ≤ {0.9 * limit:.2g}")
            break  # (the estimate of fewer than three solves below: none, marked unstable)
        if len(sols) >= 3:
            est = richardson_estimate([s.loss for s in sols[-3:]], order, safety=safety,
                                      smooth=net.activation.smooth, floor=rounding_floor(sols[-1]))
            unstable = [bool(s.stats.get("unstable_step")) for s in sols[-3:]]
            if any(unstable):
                # a step past the stability limit estimates nothing: with inputs of norm 1e3 (limit 2e-6) the
                # solves at 0.25, 0.125, 0.0625 each killed every neuron in their first step and froze at one loss
                # (1.89, the flow's 1e-24): differences 0, an estimate of 0 and "success"
                rel = np.full(est["rel"].shape, np.inf)
                rel[0] = 0.0
                est = dict(est, abs=rel.copy(), rel=rel, reliable=False, unstable=True)
            if rtol is None and any(unstable) and not unstable[-1]:
                extra = True  # the finest step is stable: halving drops the unstable ones (at most two more solves)
            elif rtol is None or float(np.max(est["rel"])) <= rtol:
                break
            stop = _rounding_unreachable(est, rtol, sols[-1]) or _unreachable(est, order, h, rtol, t_end, max_steps,
                                                                            walls[-1],
                                None if max_wall_time is None else max_wall_time - (time.perf_counter() - start))
            if stop is not None:  # (rtol = 1e-9 on a small ReLU net: halving went on for an hour, to max_steps)
                status, message = stop
                break
        if ctrl_c:  # (it arrived as this solve finished: no finer one)
            status, message = "interrupted", f"Ctrl-C (SIGINT) arrived as the solve with step {h:g} finished"
            break
        h = h / 2

    best = sols[-1]
    if est is None and len(sols) < 3:
        rel = np.full(best.t.shape, np.inf)
        rel[0] = 0.0
        est = {"abs": rel.copy(), "rel": rel, "rho": math.nan, "rho_observed": math.nan,
               "observed_order": math.nan, "reliable": False}
        if skipped:
            est["unstable"] = True
    if status == "success":
        worst = float(np.max(est["rel"]))
        message = (f"reached t1 = {best.t[-1]:g} with {method} at step {steps[-1]:g}; estimated relative loss "
                   f"error ≤ {worst:.2e} (observed order {est['observed_order']:.2f})")
        if est.get("unstable"):
            message = (f"reached t1 = {best.t[-1]:g} with {method} at step {steps[-1]:g}; no error estimate: the "
                       f"steps {', '.join(f'{h:g}' for h in steps[-3:])} include steps past the stability limit "
                       "(see the warning), where the solves do not follow the flow"
                       + (f"; {refused}" if refused else ""))
            if skipped:
                message = f"reached t1 = {best.t[-1]:g} with {method} at step {steps[-1]:g}; {skipped}"
        elif not est["reliable"]:
            message += "; the differences between step halvings do not contract: the estimate is not reliable, " \
                       "use a smaller step"
        rounded = np.flatnonzero(np.asarray(est.get("rounded", False)) & (est["rel"] > 1e-3))
        if rounded.size and not est.get("unstable"):  # (a tiny loss, or float32: see rounding_floor)
            k = int(rounded[0])
            message += (f"; from t = {best.t[k]:.6g} (loss {best.loss[k]:.3g}) the estimate is the loss's rounding "
                        f"in {best.config.get('network', {}).get('dtype', 'float64')} (≥ {est['rel'][k]:.2g} of it)")
        dropped = [f"{h:g}" for h, s in zip(steps[:-3], sols[:-3]) if s.stats.get("unstable_step")]
        if dropped and not est.get("unstable"):
            message += (f"; the step{'s' if len(dropped) > 1 else ''} {', '.join(dropped)} past the stability limit "
                        "dropped from the estimate")
    else:
        message += (f"; returning the finest completed solve (step {steps[-1]:g}) with its estimate "
                    f"(≤ {float(np.max(est['rel'])):.2e})" if np.all(np.isfinite(est["rel"])) else "")
    info = {
        "scheme": "step halving h, h/2, h/4 with observed-order Richardson estimate (finest returned)",
        "method": method, "steps": steps, "steps_used": steps[-3:], "rtol": rtol, "safety": safety,
        "observed_order": est["observed_order"], "rho_observed": est["rho_observed"], "rho": est["rho"],
        "reliable": est["reliable"], "max_rel_estimate": float(np.max(est["rel"])), "wall_times": walls,
        "rounding_times": int(np.count_nonzero(est.get("rounded", False))),
        "flow": "Filippov (sliding) solution",
    }
    solver = dict(best.config["solver"], error_estimate=info, max_wall_time=max_wall_time)
    config = dict(best.config, solver=solver)
    stats = dict(best.stats, n_f_evals=evals, wall_time=time.perf_counter() - start,
                 n_f_evals_finest=best.stats.get("n_f_evals"))
    rise = noted_step = None
    noted = [(h, s) for h, s in zip(steps[-3:][::-1], sols[-3:][::-1])
             if ("loss_rise" in s.stats or s.stats.get("unstable_step")) and "; warning: " in s.message]
    if noted:  # (simulate's note — a loss rise, or a step past the stability limit — kept: the finest solve's first)
        noted_step, first = noted[0]
        rise = first.message[first.message.index("; warning: ") + len("; warning: "):]
        message = f"{message}; warning: {rise}"
    out = replace(best, status=status, message=message, stats=stats, config=config,
                  error_estimate=np.asarray(est["rel"], dtype=np.float64))
    if ctrl_c:  # (also where it arrived as the last solve finished: the Ctrl-C is never lost)
        raise interrupted(f"gf.simulate_nonsmooth [{status}]: {message}", out)
    if warn and status != "success":
        warnings.warn(f"gflow.simulate_nonsmooth stopped early [{status}]: {message}", GFlowWarning, stacklevel=2)
    elif warn and rise is not None:
        which = "the finest solve" if noted_step == steps[-1] else "the solve"
        warnings.warn(f"gflow.simulate_nonsmooth: {which} (step {noted_step:g}): {rise}", GFlowWarning, stacklevel=2)
    return out


__all__ = ["NONSMOOTH_METHODS", "richardson_estimate", "rounding_floor", "rounding_scale", "simulate_nonsmooth"]
