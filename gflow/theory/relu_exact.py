r"""Exact, event-driven ReLU / leaky-ReLU gradient flow for one training point (EQUATIONS.md §5.4).

With n = 1, G = [g], every neuron follows dh_i/dτ = −c_i σ′(h_i) on the common clock dτ = γ g r dt, and r never
changes sign.  With s = sign(r₀)·τ ≥ 0, h_i moves at the constant rate −c_i sign(r₀) σ′(h_i) in s, so the
features are piecewise linear in s with events where a moving h_i reaches 0:

* ReLU: a neuron with h_i(0) > 0 and c_i sign(r₀) > 0 dies at s_i = h_i(0)/|c_i| and stays at 0; neurons with
  h_i(0) ≤ 0 are frozen.  At the kink the field is −c_i sign(r₀)|·| < 0 from above and 0 from below, so the
  Filippov set-valued field contains 0: the neuron sticks — the same solution as the paper's σ′(0) = 0 (no
  sliding ambiguity for n = 1).
* leaky ReLU (slope s_σ): both sides push the same way, so a neuron crosses 0 and continues at rate s_σ.

Between events |r| is linear in s, d|r|/ds = −α b_k with b_k = Σ_i c_i² σ′(h_i)², hence exponential in t:
|r(t)| = ρ_k exp(−αγ g b_k (t − t_k)) (for α = 1/m, γ = 1 this is §5.4's a_k = (1/m)Σ_alive c_i²).
"""

from __future__ import annotations

import math

import numpy as np


def relu_one_point(h0, c, g: float, y: float, times, *, alpha: float, gamma: float = 1.0, slope: float = 0.0):
    r"""Exact loss and features of the (leaky-)ReLU flow with one training point, at the given times.

    Args:
        h0: (m,) initial features h_i(x₁);  c: (m,) output weights;  g: the Gram entry G₁₁ > 0;  y: the target.
        times: increasing times ≥ 0.
        alpha, gamma: the scaling's α and γ (f = α Σ c_i σ(h_i), ḣ = −γ c σ′(h) g r).
        slope: 0 for ReLU, the leaky slope in (0, 1) otherwise.

    Returns:
        (loss (T,), H (T, m)) with loss = ½ r².
    """
    h0 = np.asarray(h0, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if not (0.0 <= slope < 1.0):
        raise ValueError(f"slope must be in [0, 1), got {slope}")
    if g <= 0:
        raise ValueError(f"g must be > 0, got {g}")

    def sig(h):
        return np.where(h > 0, h, slope * h)

    r0 = alpha * float(c @ sig(h0)) - y
    sgn = 1.0 if r0 >= 0 else -1.0
    v = -c * sgn                      # dh/ds = v σ′(h)
    # event s-values: a moving neuron reaches 0 once (it never comes back: its direction is fixed)
    towards = (h0 * v < 0) & (h0 != 0)
    if slope == 0.0:
        towards &= h0 > 0             # negative ReLU features do not move
    d1 = np.where(h0 > 0, 1.0, slope)  # σ′ before the hit
    s_hit = np.where(towards, np.abs(h0) / np.where(towards, np.abs(v) * d1, 1.0), np.inf)

    def features(s):
        # before the hit: h0 + v σ′(h0) s; after: ReLU sticks at 0, leaky continues at slope (or 1) rate
        before = h0 + v * d1 * s
        if slope == 0.0:
            return np.where(s < s_hit, before, 0.0)
        d2 = np.where(h0 > 0, slope, 1.0)
        return np.where(s < s_hit, before, v * d2 * (s - s_hit))

    def dsig2(s):  # σ′(h)² inside a piece (s strictly between events); a dead ReLU neuron (h = 0) gives 0
        return np.where(features(s) > 0, 1.0, slope**2)

    events = np.unique(s_hit[np.isfinite(s_hit)])
    out_r = np.empty_like(times)
    out_s = np.empty_like(times)
    t_k, s_k, rho = 0.0, 0.0, abs(r0)
    k_ev = 0
    order = np.argsort(times)
    idx = 0
    while idx < len(times):
        s_next = events[k_ev] if k_ev < len(events) else math.inf
        mid = s_k + 1.0 if not math.isfinite(s_next) else 0.5 * (s_k + s_next)
        b = float(np.sum(c**2 * dsig2(mid)))  # Σ c_i² σ′(h_i)² on this piece
        rate = alpha * gamma * g * b
        if math.isfinite(s_next) and rho - alpha * b * (s_next - s_k) > 0:
            rho_next = rho - alpha * b * (s_next - s_k)
            t_next = t_k + (math.log(rho / rho_next) / rate if b > 0 else (s_next - s_k) / (gamma * g * rho))
        else:
            t_next, rho_next = math.inf, 0.0
        while idx < len(times) and times[order[idx]] <= t_next:
            t = times[order[idx]]
            if b > 0:
                r_abs = rho * math.exp(-rate * (t - t_k))
                s = s_k + (rho - r_abs) / (alpha * b)
            else:
                r_abs = rho
                s = s_k + gamma * g * rho * (t - t_k)
            out_r[order[idx]] = r_abs
            out_s[order[idx]] = s
            idx += 1
        if not math.isfinite(t_next):
            break
        t_k, s_k, rho = t_next, s_next, rho_next
        k_ev += 1
    H = np.stack([features(s) for s in out_s])
    return 0.5 * out_r**2, H


__all__ = ["relu_one_point"]
