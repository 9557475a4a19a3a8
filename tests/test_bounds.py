"""Tests of gflow.theory.bounds against EQUATIONS.md §6–§10 (constants recomputed independently here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from gflow.theory.bounds import (
    C1,
    C2,
    Hypothesis,
    K_const,
    best_interval,
    dsigma_inf,
    inner_interval,
    kappa,
    kappa_xi,
    pl_rate,
    prob_inner,
    realised_theorem1,
    theorem1,
    theorem2,
    theorem3,
)

# A small hand-computed case: I = (−1, 2) (length 3), λ_min = 0.5, λ_max = 2, K_σ′ = 0.25,
# G_min = 1, G_max = 1.5, ‖y‖ = 2, n = 10, δ = 0.1.
I_HC = (-1.0, 2.0)
LMIN, LMAX, KS, GMIN, GMAX, Y, N, DELTA = 0.5, 2.0, 0.25, 1.0, 1.5, 2.0, 10, 0.1
# K = 3/(6·√(2π·1.5))·exp(−4/2) = 0.5/√(3π)·e^{−2}
K_HC = 0.5 / math.sqrt(3.0 * math.pi) * math.exp(-2.0)
# κ = 9·2/(√2·0.5·0.25·3) = 18/(0.375·√2) = 24√2
KAPPA_HC = 24.0 * math.sqrt(2.0)


def _t1(**kw):
    args = dict(c_hat=1.0, lam_min_G=LMIN, lam_max_G=LMAX, G_min=GMIN, G_max=GMAX, y_norm=Y, n=N, m=10**9,
                K_sigma=KS, I=I_HC, delta=DELTA)
    args.update(kw)
    return theorem1(**args)


def _t2(fn=theorem2, **kw):
    args = dict(c_hat=1.0, lam_min_Gbar=LMIN, lam_max_Gbar=LMAX, Gbar_min=GMIN, Gbar_max=GMAX, y_norm=Y, n=N,
                m=10**9, K_sigma=KS, I=I_HC, delta=DELTA)
    args.update(kw)
    return fn(**args)


# ---------------------------------------------------------------------------------------------------------
# Building blocks


def test_K_table_values():
    # EQUATIONS.md §6 table: K(I, 1, 1)
    assert K_const((-1.0, 1.0), 1.0, 1.0) == pytest.approx(0.08066, abs=5e-6)
    assert K_const((0.0, 1.0), 1.0, 1.0) == pytest.approx(0.04033, abs=5e-6)
    assert K_const(I_HC, GMIN, GMAX) == pytest.approx(K_HC, rel=1e-14)


def test_inner_interval():
    (a, b), xi = inner_interval(I_HC)
    assert xi == pytest.approx(1.0)
    assert (a, b) == pytest.approx((0.0, 1.0))
    (a, b), xi = inner_interval((-1.0, 1.0))
    assert (a, b) == pytest.approx((-1 / 3, 1 / 3)) and xi == pytest.approx(2 / 3)


def test_prob_inner_exact_and_lemma3_inequality():
    # π(I0; 1) for I = (−1, 1): I0 = (−1/3, 1/3)
    assert prob_inner((-1.0, 1.0), 1.0) == pytest.approx(math.erf(1 / (3 * math.sqrt(2))), rel=1e-12)
    g = np.array([0.7, 1.3])
    p = prob_inner(I_HC, g)
    assert p.shape == (2,)
    assert p == pytest.approx(norm.cdf(1.0 / np.sqrt(g)) - norm.cdf(0.0), rel=1e-12)
    # (71): π(I0; G_bb) ≥ 2K(I, G_min, G_max) for every G_bb in [G_min, G_max]
    for I in [(-1.0, 1.0), (0.0, 1.0), I_HC, (-0.3, 2.5)]:
        gs = np.linspace(GMIN, GMAX, 31)
        assert np.all(prob_inner(I, gs) >= 2 * K_const(I, GMIN, GMAX))


def test_kappa_C1_C2_hand_computed():
    assert kappa(LMIN, LMAX, KS, I_HC) == pytest.approx(KAPPA_HC, rel=1e-14)
    # C1 = 3·2/(√0.5·3) = 2√2;  C2 = 6/(√2·0.5·0.25·3) = 8√2
    assert C1(LMIN, LMAX, I_HC) == pytest.approx(2 * math.sqrt(2), rel=1e-14)
    assert C2(LMIN, LMAX, KS, I_HC) == pytest.approx(8 * math.sqrt(2), rel=1e-14)
    assert C2(LMIN, LMAX, KS, I_HC) == pytest.approx(C1(LMIN, LMAX, I_HC) / (math.sqrt(2 * LMIN) * KS))
    for args in [(LMIN, LMAX, KS, I_HC), (0.1, 3.0, 0.42, (-1.0, 1.0)), (1.0, 1.0, 1.0, (0.0, 0.5))]:
        assert kappa(*args) == pytest.approx(3 * C2(*args), rel=1e-14)
    # general-ξ form with ξ = |I|/3 is κ; ξ = 1 here
    assert kappa_xi(LMIN, LMAX, KS, 1.0) == pytest.approx(KAPPA_HC, rel=1e-14)
    assert kappa_xi(LMIN, LMAX, KS, 2.0) == pytest.approx(KAPPA_HC / 2, rel=1e-14)
    # singular G: κ = ∞
    assert kappa(0.0, LMAX, KS, I_HC) == math.inf


def test_pl_rate():
    assert pl_rate(0.7, 0.3, 0.1) == pytest.approx(2 * 0.49 * 0.3 * 0.01, rel=1e-14)


def test_K_monotone():
    I = (-0.5, 1.2)
    l1s = np.linspace(0.2, 2.0, 20)
    k_l1 = [K_const(I, l1, 2.0) for l1 in l1s]
    assert np.all(np.diff(k_l1) > 0)  # increases in λ1
    l2s = np.linspace(0.5, 3.0, 20)
    k_l2 = [K_const(I, 0.5, l2) for l2 in l2s]
    assert np.all(np.diff(k_l2) < 0)  # decreases in λ2


# ---------------------------------------------------------------------------------------------------------
# Theorem 1


def test_theorem1_constants_hand_computed():
    rep = _t1()
    c0 = 9 * math.sqrt(2) * Y / (KS * 3.0 * K_HC**1.5)
    assert rep.K == pytest.approx(K_HC, rel=1e-14)
    assert rep.kappa == pytest.approx(KAPPA_HC, rel=1e-14)
    assert rep.c0 == pytest.approx(c0, rel=1e-13)
    assert rep.c_threshold == pytest.approx(c0 * LMAX / LMIN, rel=1e-13)
    # (58) in κ form: 2κ‖y‖/K^{3/2}
    assert rep.c_threshold == pytest.approx(2 * KAPPA_HC * Y / K_HC**1.5, rel=1e-13)
    r = 2 ** (1 / 3) * KS**2 * K_HC
    assert rep.r == pytest.approx(r, rel=1e-14)
    assert rep.rate == pytest.approx(r * 1.0 * LMIN, rel=1e-14)
    assert rep.eta_lower == pytest.approx(2 ** (-2 / 3) * K_HC, rel=1e-14)
    assert rep.m_required == pytest.approx(math.log(2 * N / DELTA) / (2 * K_HC**2), rel=1e-13)


def test_theorem1_c_hypothesis_switches_at_threshold():
    thr = _t1().c_threshold
    below, above = _t1(c_hat=0.99 * thr), _t1(c_hat=1.01 * thr)
    hb = {h.name: h for h in below.hypotheses}
    ha = {h.name: h for h in above.hypotheses}
    name = next(k for k in hb if k.startswith("ĉ"))
    assert not hb[name].met and ha[name].met
    assert "needs ĉ ≥" in hb[name].detail and f"{thr:.4g}" in hb[name].detail
    assert not below.all_met and above.all_met
    assert below.guaranteed_rate is None and np.all(np.isnan(below.bound([0.0, 1.0], L0=1.0)))
    assert above.guaranteed_rate == pytest.approx(above.rate)
    t = np.array([0.0, 0.5, 2.0])
    assert above.bound(t, L0=3.0) == pytest.approx(3.0 * np.exp(-above.rate * t), rel=1e-14)
    assert isinstance(above.bound(1.0, L0=3.0), float)
    assert "w.p." not in above.guarantee and "probability ≥ 0.9" in above.guarantee
    s = str(below)
    assert "✗" in s and "✓" in s and "Theorem 1" in s


def test_theorem1_width_and_singular():
    req = _t1().m_required
    hm = {h.name: h for h in _t1(m=math.floor(req)).hypotheses}
    hM = {h.name: h for h in _t1(m=math.ceil(req)).hypotheses}
    key = next(k for k in hm if k.startswith("width"))
    assert not hm[key].met and hM[key].met
    assert f"≥ {math.ceil(req)} required" in hM[key].detail
    # λ_min = 0: vacuous; λ_min(G) ≤ G_min must still hold
    rep = _t1(lam_min_G=0.0, c_hat=1e30)
    assert not rep.all_met and rep.c_threshold == math.inf
    assert any("singular" in h.detail and not h.met for h in rep.hypotheses)


def test_realised_theorem1():
    L0, eta = 1.7, 0.3
    thr = 2 * KAPPA_HC * math.sqrt(L0) / eta**1.5
    lo = realised_theorem1(c_hat=0.99 * thr, lam_min_G=LMIN, lam_max_G=LMAX, K_sigma=KS, L0=L0, eta_bar0=eta, I=I_HC)
    hi = realised_theorem1(c_hat=1.01 * thr, lam_min_G=LMIN, lam_max_G=LMAX, K_sigma=KS, L0=L0, eta_bar0=eta, I=I_HC)
    assert lo.c_threshold == pytest.approx(thr, rel=1e-13)
    assert not lo.all_met and hi.all_met
    c = 1.01 * thr
    assert hi.rate == pytest.approx(2 ** (1 / 3) * c * c * LMIN * KS**2 * eta, rel=1e-13)
    assert hi.eta_lower == pytest.approx(2 ** (-2 / 3) * eta, rel=1e-14)
    # general θ: θ* = (1 − κ√L0/(ĉ η̄0^{3/2}))^{2/3} ≥ 2^{−2/3} when the condition holds, and rate_best ≥ rate
    theta = (1 - KAPPA_HC * math.sqrt(L0) / (c * eta**1.5)) ** (2 / 3)
    assert hi.theta_best == pytest.approx(theta, rel=1e-12) and theta >= 2 ** (-2 / 3)
    assert hi.rate_best >= hi.rate
    assert np.all(np.isnan(lo.bound([1.0, 2.0])))
    assert hi.bound(2.0) == pytest.approx(L0 * math.exp(-2 * hi.rate), rel=1e-13)
    # ξ form with ξ = |I|/3 = 1 is the same
    hx = realised_theorem1(c_hat=c, lam_min_G=LMIN, lam_max_G=LMAX, K_sigma=KS, L0=L0, eta_bar0=eta, xi=1.0)
    assert hx.c_threshold == pytest.approx(hi.c_threshold, rel=1e-14)
    # η̄0 = 0 is never enough
    z = realised_theorem1(c_hat=1e9, lam_min_G=LMIN, lam_max_G=LMAX, K_sigma=KS, L0=L0, eta_bar0=0.0, I=I_HC)
    assert not z.all_met


def test_theorem1_events_imply_realised():
    # Lemma 2/3 events + (58) ⇒ realised condition, with a larger rate (§10.3)
    thr = _t1().c_threshold
    L0, eta = 0.9 * Y**2, 1.05 * K_HC
    rep = _t1(c_hat=1.0001 * thr, L0=L0, eta_bar0=eta)
    assert rep.all_met and rep.events_occurred
    assert rep.realised is not None and rep.realised.all_met
    assert rep.realised.rate >= rep.rate
    assert rep.guaranteed_rate == rep.realised.rate
    assert rep.bound([0.0, 1.0]) == pytest.approx(L0 * np.exp(-rep.realised.rate * np.array([0.0, 1.0])))
    bad = _t1(c_hat=1.0001 * thr, L0=1.1 * Y**2, eta_bar0=0.5 * K_HC)
    assert bad.events_occurred is False and [h.met for h in bad.events] == [False, False]


# ---------------------------------------------------------------------------------------------------------
# Theorems 2 and 3


def test_theorem2_constants():
    rep = _t2()
    Kb = K_const(I_HC, GMIN / 2, 2 * GMAX)
    # by hand: 3/(6√(2π·3))·exp(−4/(2·0.5))
    assert Kb == pytest.approx(0.5 / math.sqrt(6 * math.pi) * math.exp(-4.0), rel=1e-14)
    assert rep.K == pytest.approx(Kb, rel=1e-14)
    assert rep.kappa_used == pytest.approx(4 * KAPPA_HC, rel=1e-14)
    c0 = 36 * math.sqrt(2) * Y / (KS * 3.0 * Kb**1.5)
    assert rep.c0 == pytest.approx(c0, rel=1e-13)
    assert rep.c_threshold == pytest.approx(8 * KAPPA_HC * Y / Kb**1.5, rel=1e-13)
    assert rep.r == pytest.approx(2 ** (-2 / 3) * KS**2 * Kb, rel=1e-14)
    assert rep.m_required == pytest.approx(math.log(4 * N / DELTA) / (2 * Kb**2), rel=1e-13)
    thr = rep.c_threshold
    assert not _t2(c_hat=0.99 * thr).all_met and _t2(c_hat=1.01 * thr).all_met
    # D condition with a callable D_min(δ, u)
    seen = {}

    def D_min(d, u):
        seen["args"] = (d, u)
        return 500.0

    r2 = _t2(c_hat=1.01 * thr, D=499, D_min=D_min)
    assert seen["args"] == pytest.approx((DELTA / 2, LMIN / 2))
    assert not r2.all_met and _t2(c_hat=1.01 * thr, D=500, D_min=D_min).all_met
    ev = _t2(gram_deviation=0.26).events
    assert len(ev) == 1 and not ev[0].met and _t2(gram_deviation=0.25).events[0].met


def test_theorem3_D_condition():
    thr = _t2(theorem3, D=1).c_threshold
    D_req = 2.0 * N**2 * math.log(N / DELTA) / LMIN**2
    ok = _t2(theorem3, c_hat=1.01 * thr, D=math.ceil(D_req), C_D=2.0)
    no = _t2(theorem3, c_hat=1.01 * thr, D=math.floor(D_req), C_D=2.0)
    assert ok.D_required == pytest.approx(D_req, rel=1e-13)
    assert ok.all_met and not no.all_met
    hD = next(h for h in no.hypotheses if h.name.startswith("D"))
    assert not hD.met and "C_D = 2" in hD.detail and "unspecified" in hD.detail
    assert ok.r == pytest.approx(_t2().r) and ok.c0 == pytest.approx(_t2().c0)


# ---------------------------------------------------------------------------------------------------------
# best_interval


def test_best_interval_tanh():
    (lo, hi), r = best_interval("tanh", 0.5, 2.0, 1.0, 1.0)
    assert lo == pytest.approx(-hi, abs=1e-6)
    assert hi == pytest.approx(0.459, abs=0.01)
    # the optimum of r(a) = 2^{1/3} sech⁴(a) · 2a/(6√(2π)) e^{−a²/2} solves 1/a − 4 tanh a − a = 0
    assert 1 / hi - 4 * math.tanh(hi) - hi == pytest.approx(0.0, abs=1e-5)
    assert r == pytest.approx(2 ** (1 / 3) * (1 - math.tanh(hi) ** 2) ** 2 * K_const((lo, hi), 1, 1), rel=1e-7)
    # beats the default I = (−1, 1)
    assert r > 2 ** (1 / 3) * (1 - math.tanh(1) ** 2) ** 2 * K_const((-1, 1), 1, 1)
    # the general (l, r) search agrees
    (lo_g, hi_g), r_g = best_interval("tanh", 0.5, 2.0, 1.0, 1.0, family="general")
    assert hi_g == pytest.approx(0.459, abs=0.01) and lo_g == pytest.approx(-0.459, abs=0.01)
    assert r_g == pytest.approx(r, rel=1e-6)


def test_best_interval_relu():
    gmin, gmax = 0.5, 2.0
    (lo, hi), r = best_interval("relu", 0.1, 3.0, gmin, gmax)
    assert lo == pytest.approx(0.0, abs=1e-8)
    assert hi == pytest.approx(math.sqrt(gmin), rel=1e-5)  # K_σ′ = 1 so r ∝ K, max at b = √G_min
    assert r == pytest.approx(2 ** (1 / 3) * K_const((0, math.sqrt(gmin)), gmin, gmax), rel=1e-9)
    (lo, hi), thr = best_interval("relu", 0.1, 3.0, gmin, gmax, y_norm=2.0, objective="c0")
    assert lo == pytest.approx(0.0, abs=1e-8)
    assert hi == pytest.approx(math.sqrt(5 * gmin / 3), rel=1e-5)
    Kb = K_const((0, hi), gmin, gmax)
    assert thr == pytest.approx(9 * math.sqrt(2) * 2.0 / (hi * Kb**1.5) * 3.0 / 0.1, rel=1e-9)
    # theorem 2: K̄ = K(I, Ḡ_min/2, 2Ḡ_max) ⇒ b = √(Ḡ_min/2)
    (lo, hi), _ = best_interval("relu", 0.1, 3.0, gmin, gmax, theorem=2)
    assert hi == pytest.approx(math.sqrt(gmin / 2), rel=1e-5)


def test_dsigma_inf():
    assert dsigma_inf("tanh", (-1.0, 1.0)) == pytest.approx(1 - math.tanh(1) ** 2, rel=1e-8)
    assert dsigma_inf("relu", (0.0, 1.0)) == 1.0
    assert dsigma_inf("relu", (-0.1, 1.0)) == 0.0
    assert dsigma_inf("softplus", (-1.0, 1.0)) == pytest.approx(1 / (1 + math.e), rel=1e-8)


# ---------------------------------------------------------------------------------------------------------
# Bad inputs and formatting


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K_const((0.0, math.inf), 1, 1), "bounded"),
        (lambda: inner_interval((-math.inf, 1.0)), "bounded"),
        (lambda: K_const((1.0, -1.0), 1, 1), "I_l < I_r"),
        (lambda: K_const((-1.0, 1.0), -1.0, 1.0), "lam1"),
        (lambda: K_const((-1.0, 1.0), 2.0, 1.0), "lam1"),
        (lambda: kappa(-0.1, 1.0, 0.5, (-1, 1)), "lam1"),
        (lambda: kappa(0.1, 1.0, 0.0, (-1, 1)), "K_sigma"),
        (lambda: prob_inner((-1, 1), -1.0), "g"),
        (lambda: _t1(lam_min_G=-1.0), "lam_min_G"),
        (lambda: _t1(lam_min_G=3.0, lam_max_G=2.0), "lam_min_G"),
        (lambda: _t1(G_min=0.4), "G_min"),  # λ_min = 0.5 > G_min: eigenvalues vs diagonal mixed up
        (lambda: _t1(G_max=3.0), "G_max"),
        (lambda: _t1(delta=1.5), "delta"),
        (lambda: _t1(I=(0.0, math.inf)), "bounded"),
        (lambda: _t1(n=0), "n"),
        (lambda: _t1(c_hat=0.0), "c_hat"),
        (lambda: _t1(L0=1.0, eta_bar0=1.5), "eta_bar0"),
        (lambda: _t2(theorem3, D=10, C_D=-1.0), "C_D"),
        (lambda: best_interval("tanh", 0.5, 2, 1, 1, objective="nope"), "objective"),
        (lambda: best_interval("tanh", 0.5, 2, 1, 1, objective="c0"), "y_norm"),
        (lambda: realised_theorem1(c_hat=1, lam_min_G=1, lam_max_G=2, K_sigma=1, L0=1, eta_bar0=0.5), "exactly one"),
    ],
)
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_hypothesis_str():
    assert str(Hypothesis("x", True, "fine")) == "✓ x: fine"
    assert str(Hypothesis("x", False, "bad")) == "✗ x: bad"
    s = str(_t1(L0=1.0, eta_bar0=0.2))
    assert "Realised Theorem 1" in s and s.count("\n") >= 6
    assert "Theorem 3" in str(_t2(theorem3, D=10))


# ---------------------------------------------------------------------------------------------------------
# What a report guarantees when the proof's events are known (EQUATIONS.md §10.2–§10.4)


def test_a_failed_event_guarantees_no_rate_for_that_initialisation_and_sure_needs_every_event():
    thr = _t1().c_threshold
    # hypotheses met, Lemma 3's event failed: the probability-(1 − δ) statement does not cover this draw
    bad = _t1(c_hat=1.0001 * thr, L0=0.5 * Y**2, eta_bar0=0.5 * K_HC)
    assert bad.all_met and bad.events_occurred is False
    assert bad.guaranteed_rate is None and np.all(np.isnan(bad.bound([0.0, 1.0])))
    assert "no rate guaranteed for this initialisation" in bad.guarantee and "η̄_0" in bad.guarantee
    assert "no rate guaranteed for this initialisation" in str(bad)
    # only Lemma 2's event given (and it occurred): still only probable, and the report says what is unchecked
    part = _t1(c_hat=1.0001 * thr, L0=0.5 * Y**2)
    assert part.guaranteed_rate == part.rate and "surely" not in part.guarantee
    assert "probability ≥ 0.9" in part.guarantee and "eta_bar0" in part.guarantee
    assert part.bound(1.0) == pytest.approx(0.5 * Y**2 * math.exp(-part.rate))  # L0 given to the theorem
    # both events given and occurred: sure for this draw
    full = _t1(c_hat=1.0001 * thr, L0=0.5 * Y**2, eta_bar0=1.5 * K_HC)
    assert full.guarantee.startswith("surely")
    # Theorems 2 and 3 also need event (74): without gram_deviation it is not sure
    kb = _t2().K
    t2 = _t2(c_hat=1.0001 * _t2().c_threshold, L0=0.5 * Y**2, eta_bar0=1.5 * kb)
    assert t2.all_met and t2.events_occurred and "surely" not in t2.guarantee and "gram_deviation" in t2.guarantee
    t2s = _t2(c_hat=1.0001 * _t2().c_threshold, L0=0.5 * Y**2, eta_bar0=1.5 * kb, gram_deviation=0.1 * LMIN)
    assert t2s.guarantee.startswith("surely") and t2s.events_unchecked == ()
    with pytest.raises(ValueError, match="pass L0= here or to the theorem"):
        _t1().bound(1.0)


def test_theorem2s_guarantee_names_the_d_condition_when_nothing_checks_it():
    # the report said "L_t ≤ L_0·exp(−ρt), with probability ≥ 0.9 over the initialisation" while Condition 1
    # (D ≥ D_min), a hypothesis of the theorem, was checked neither directly nor through its event (74)
    c = 1.0001 * _t2().c_threshold
    bare = _t2(c_hat=c)
    assert bare.all_met and bare.guaranteed_rate == bare.rate
    assert "provided D ≥ D_min" in bare.guarantee and "provided D ≥ D_min" in str(bare).splitlines()[0]
    for checked in (_t2(c_hat=c, D=100, D_min=50.0), _t2(c_hat=c, gram_deviation=0.1 * LMIN)):
        assert checked.conditions_unchecked == () and "provided" not in checked.guarantee
    short = _t2(c_hat=c, D=10, D_min=50.0)  # checked and failed: no rate, as before
    assert not short.all_met and short.guaranteed_rate is None


def test_a_singular_gram_rounded_below_zero_is_vacuous_not_an_error():
    rep = _t1(lam_min_G=-1e-17)  # what an eigensolver returns for a singular G
    assert rep.lam_min == 0.0 and rep.guaranteed_rate is None and not rep.all_met
    with pytest.raises(ValueError, match="lam_min_G"):
        _t1(lam_min_G=-1e-3)  # a real negative eigenvalue is still refused


@pytest.mark.parametrize("interval,g", [((0.0, 3.0), 0.01), ((-3.0, 0.0), 0.01), ((-1.0, 1.0), 1e-4),
                                        ((-1.0, 2.0), 4.0)])
def test_prob_inner_keeps_its_digits_in_either_tail(interval, g):
    # π(I₀; g) with I₀ far in a tail: the difference of the two CDFs cancelled to 0 (I₀ = (1, 2), g = 0.01:
    # 7.6e-24), below the 2K of (71) that it must exceed
    (a, b), _ = inner_interval(interval)
    s = math.sqrt(g)
    exact = norm.sf(a / s) - norm.sf(b / s) if a >= 0 else norm.cdf(b / s) - norm.cdf(a / s)
    got = prob_inner(interval, g)
    assert got == pytest.approx(exact, rel=1e-12) and got >= 2 * K_const(interval, g, g)
