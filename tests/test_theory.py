"""Tests of the theory layer: recorded quantities, running integrals, pathwise inequalities, certificates.

References (EQUATIONS.md): §3 (loss, M = κ_M·G∘S, L̇ = −rᵀMr, energy identity), §5 (invariants), §8 (η, η̄,
Lemma 1's κ), §9 (the pathwise inequalities T1–T11 that every exact gradient-flow trajectory satisfies),
§10.2–§10.3 (K, ĉ₀, r and the realised Theorem 1).  Every reference number is recomputed here in numpy from
the saved features H (or weights W) and the data, never read back from the package's own formulas.

Everything is small (n ≤ 10 points, m ≤ 64 neurons), float64 and explicitly seeded.  Torch runs on one
thread inside this module: the problems are tiny, and two threads under CPU contention were measured to be
up to 20× slower.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np
import pytest
import torch
from scipy.integrate import cumulative_trapezoid, simpson

import gflow as gf
from gflow.theory.bounds import realised_theorem1, theorem1

TANH_I = (-1.0, 1.0)  # default active interval of tanh (EQUATIONS.md §6 table)
K_TANH = 1.0 - math.tanh(1.0) ** 2  # K_σ′ = sech²(1) = 0.41997 on (−1, 1)
CUSTOM_I = (-0.4, 1.3)




def _data(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.uniform(-0.5, 0.5, size=n)


def _inner(interval):
    lo, hi = interval
    xi = (hi - lo) / 3.0
    return (lo + xi, hi - xi), xi


def _frac_in(H: np.ndarray, interval) -> np.ndarray:
    """(1/m)#{i : H_ia ∈ (lo, hi)} per point a (open interval)."""
    lo, hi = interval
    return np.mean((H > lo) & (H < hi), axis=0)


def _kernel_M(H: np.ndarray, c: np.ndarray, G: np.ndarray, coef: float) -> np.ndarray:
    """M = κ_M · G ∘ S, S = (1/m) Σ_i c_i² σ′(H_i·)σ′(H_i·)ᵀ for σ = tanh (E3)."""
    cd = (1.0 - np.tanh(H) ** 2) * c[:, None]
    return coef * G * (cd.T @ cd) / H.shape[0]


# ---------------------------------------------------------------------------------------------------------
# 1. Recorded quantities agree with a direct numpy computation from the saved H (and W)


SPACE_CASES = [
    # (kind, space, scaling, interval)
    ("flow", "feature", "ours", None),
    ("flow", "weight", "ours", CUSTOM_I),
    ("flow", "feature", "mf", CUSTOM_I),
    ("flow", "weight", "ntk", None),
    ("gd", "feature", "ours", CUSTOM_I),
    ("gd", "weight", "mf", None),
]


@pytest.mark.parametrize("kind,space,scaling,interval", SPACE_CASES)
def test_recorded_theory_quantities_equal_a_direct_computation_from_the_saved_features(kind, space, scaling,
                                                                                      interval):
    n, d, m = 5, 4, 16
    X, y = _data(n, d, seed=11)
    # MF on random features with D ≠ m, so that κ_M = m/D ≠ 1 is exercised (Table 1: ℓα²β²D·m = m/D)
    emb = gf.RandomFeatures(D=10, activation="tanh") if scaling == "mf" else "identity"
    net = gf.Network(d=d, width=m, activation="tanh", embedding=emb, scaling=scaling, seed=4)
    if kind == "flow":
        ts = np.linspace(0.0, 3.0, 13)
        sol = gf.simulate(net, X, y, saveat=ts, rtol=1e-9, atol=1e-11, space=space, features_at="all",
                          weights_at=ts, interval=interval)
    else:
        step, steps = 0.2, 15
        ts = step * np.arange(steps + 1)
        sol = gf.gradient_descent(net, X, y, step=step, steps=steps, save_every=1, space=space,
                                  features_at=ts, weights_at=ts, interval=interval)
    assert sol.ok and sol.config["space"] == space
    np.testing.assert_allclose(sol.t, ts, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.feature_t, sol.t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.weight_t, sol.t, rtol=0, atol=1e-12)
    assert sol.H.shape == (len(ts), m, n) and sol.W.shape == (len(ts), m, net.D)

    I = TANH_I if interval is None else interval
    I0, xi = _inner(I)
    assert tuple(sol.theory["interval"]) == I
    np.testing.assert_allclose(sol.theory["inner_interval"], I0, rtol=1e-15)

    Phi = net.embed(X).numpy()
    D = Phi.shape[1]
    G = Phi @ Phi.T / D
    np.testing.assert_allclose(sol.G, G, rtol=1e-13, atol=1e-15)
    coef = {"ours": 1.0, "ntk": 1.0, "mf": m / D}[scaling]
    assert net.kernel_coef == pytest.approx(coef, rel=1e-14)
    alpha = {"ours": 1.0 / m, "ntk": 1.0 / math.sqrt(m), "mf": 1.0 / m}[scaling]
    beta = {"ours": 1.0 / math.sqrt(D), "ntk": 1.0 / math.sqrt(D), "mf": 1.0 / D}[scaling]
    c = net.c.numpy()
    W0 = net.W0.numpy()
    H0 = sol.H[0]
    np.testing.assert_allclose(H0, beta * W0 @ Phi.T, rtol=1e-13, atol=1e-14)
    M0 = _kernel_M(H0, c, G, coef)

    for k in range(len(ts)):
        H, W = sol.H[k], sol.W[k]
        # the saved W and H belong to the same state: H = βWΦᵀ (§4)
        np.testing.assert_allclose(H, beta * W @ Phi.T, rtol=1e-12, atol=1e-13)
        ds = 1.0 - np.tanh(H) ** 2
        r = alpha * np.tanh(H).T @ c - y
        np.testing.assert_allclose(sol.residual[k], r, rtol=1e-12, atol=1e-14)
        assert sol.loss[k] == pytest.approx(0.5 * r @ r, rel=1e-12)
        # counts are compared exactly: the same float64 H goes into both
        assert sol.eta[k] == _frac_in(H, I).min()
        assert sol.eta_bar[k] == _frac_in(H, I0).min()
        assert sol.moved_fraction[k] == np.mean(np.abs(H - H0) >= xi, axis=0).max()
        assert sol.mu[k] == pytest.approx(np.mean(ds**2, axis=0).min(), rel=1e-13)
        assert sol.nu[k] == pytest.approx(((c**2) @ ds**2 / m).min(), rel=1e-13)
        M = _kernel_M(H, c, G, coef)
        lam = np.linalg.eigvalsh(M)
        assert sol.lam_min_M[k] == pytest.approx(lam[0], rel=1e-10, abs=1e-15)
        assert sol.lam_max_M[k] == pytest.approx(lam[-1], rel=1e-12)
        assert sol.dL[k] == pytest.approx(-(r @ M @ r), rel=1e-11, abs=1e-16)
        np.testing.assert_allclose(sol.feature_movement[k], np.mean(np.abs(H - H0), axis=0), rtol=1e-12,
                                   atol=1e-15)
        assert sol.kernel_movement[k] == pytest.approx(np.linalg.norm(M - M0) / np.linalg.norm(M0), rel=1e-9,
                                                       abs=1e-13)
        assert sol.weight_movement[k] == pytest.approx(np.linalg.norm(W - W0) / np.linalg.norm(W0), rel=1e-9,
                                                       abs=1e-13)
    # the quantities are not trivially constant along the run
    assert sol.weight_movement[-1] > 1e-3 and sol.kernel_movement[-1] > 1e-4
    assert np.all(sol.dL <= 0) and sol.dL[0] < 0


def test_eta_counts_the_open_interval_so_features_exactly_at_an_endpoint_are_inactive():
    # X = 2·I₃ and β = 1/√4 = 1/2 make H⁰ = W⁰[:, :3] exactly; point 0 has features −1, 1, 0.5, 0.2
    X = np.hstack([2.0 * np.eye(3), np.zeros((3, 1))])
    y = np.zeros(3)
    W0 = np.array([[-1.0, 0.1, 0.1, 0.0], [1.0, 0.1, 0.1, 0.0], [0.5, 0.1, 0.1, 0.0], [0.2, 0.1, 0.1, 0.0]])
    net = gf.Network(d=4, width=4, activation="tanh", c=[1.0, -1.0, 1.0, -1.0], W0=W0)
    sol = gf.simulate(net, X, y, saveat=[0.0, 1e-3], rtol=1e-9, atol=1e-11, features_at="all")
    np.testing.assert_array_equal(sol.H[0], W0[:, :3])
    assert sol.eta[0] == 0.5  # open (−1, 1): only 0.5 and 0.2 count at point 0 (closed would give 1.0)
    assert sol.eta_bar[0] == 0.25  # (−1/3, 1/3): only 0.2


@pytest.mark.parametrize("interval", [(-1.0, 1.0), (-1.0, 0.5), (0.0, 2.0), (-math.inf, 0.5), (-1.0, math.inf)])
def test_active_fraction_counts_exactly_the_open_interval_in_every_branch(interval):
    # symmetric (|h| < a), bounded asymmetric (#{h > lo} − #{h ≥ hi}) and one-sided intervals against a plain
    # count, with entries exactly at, and one ulp inside/outside, each endpoint, ±inf and NaN (never counted)
    from gflow.model.quantities import active_fraction

    lo, hi = interval
    edge = [v for e in (lo, hi) if math.isfinite(e) for v in (e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf))]
    # ±inf only for a bounded interval: a one-sided count reads only its finite end, so it would count the
    # infinite entry on its open side (features are finite in every solve: a non-finite state aborts it)
    vals = np.array(edge + [0.0, 0.3, -0.7, 5.0, -5.0, np.nan]
                    + ([np.inf, -np.inf] if math.isfinite(lo) and math.isfinite(hi) else []))
    rng = np.random.default_rng(0)
    H = rng.choice(vals, size=(37, 6))
    want = ((H > lo) & (H < hi)).sum(axis=0) / 37
    buf = torch.full(H.shape, 7.0, dtype=torch.float64)
    for out in (None, buf):
        got = active_fraction(torch.tensor(H), interval, out).numpy()
        np.testing.assert_array_equal(got, want)
    assert 0 < want.min() and want.max() < 1  # the data puts entries on both sides of the interval


# ---------------------------------------------------------------------------------------------------------
# 2. Running integrals


@functools.lru_cache(maxsize=None)
def _dense_run(activation: str):
    n, d, m = 3, 6, 16
    X, y = _data(n, d, seed=3)
    net = gf.Network(d=d, width=m, activation=activation, seed=2)
    ts = np.linspace(0.0, 2.0, 801)
    sol = gf.simulate(net, X, y, saveat=ts, rtol=1e-11, atol=1e-13, options={"max_step": 0.01})
    return sol, ts, 0.01


@pytest.mark.parametrize("activation", ["tanh", "erf"])
def test_running_integrals_match_a_dense_simpson_quadrature_of_the_recorded_integrands(activation):
    sol, ts, max_step = _dense_run(activation)
    assert sol.ok
    np.testing.assert_allclose(sol.t, ts, rtol=0, atol=1e-12)
    absdL = -sol.dL
    assert np.all(absdL >= 0)
    integrands = {"mu": sol.mu, "nu": sol.nu, "lam_min_M": sol.lam_min_M, "abs_dL": absdL,
                  "sqrt_abs_dL": np.sqrt(absdL)}
    ks = np.arange(0, len(ts), 100)  # even numbers of uniform intervals: composite Simpson is O(h⁴)
    for name, f in integrands.items():
        got = getattr(sol, f"int_{name}")
        assert got[0] == 0.0
        ref = np.array([0.0] + [simpson(f[: k + 1], x=ts[: k + 1]) for k in ks[1:]])
        scale = abs(ref[-1])
        assert scale > 0
        err = np.abs(got[ks] - ref).max() / scale
        assert err < 1e-6, f"∫{name}: relative error {err:.2e} against Simpson"
    # η is piecewise constant: each jump costs at most (solver step + output spacing)·|jump| in either
    # the Runge–Kutta integral (steps ≤ max_step) or the trapezoid rule on the saved grid
    ref_eta = cumulative_trapezoid(sol.eta, ts, initial=0.0)
    tv = np.abs(np.diff(sol.eta)).sum()
    tol = (max_step + (ts[1] - ts[0])) * tv + 1e-12
    assert np.abs(sol.int_eta - ref_eta).max() <= tol
    assert sol.int_eta[-1] == pytest.approx(ref_eta[-1], rel=1e-2)


@pytest.mark.parametrize("activation", ["tanh", "erf"])
def test_energy_identity_holds_to_1e_8_relative_on_an_accurate_run(activation):
    sol, _, _ = _dense_run(activation)
    L0 = sol.loss[0]
    assert sol.loss[-1] < 0.8 * L0  # the loss really decreased, so the identity is not trivial
    gap = np.abs(L0 - sol.loss - sol.int_abs_dL) / L0
    assert gap.max() < 1e-8


def test_gradient_descent_integrals_are_the_exact_left_sums_of_the_recorded_integrands():
    X, y = _data(6, 5, seed=8)
    net = gf.Network(d=5, width=24, activation="tanh", seed=6)
    step, steps = 0.3, 40
    gd = gf.gradient_descent(net, X, y, step=step, steps=steps, save_every=1)
    assert gd.ok and len(gd.t) == steps + 1
    integrands = {"eta": gd.eta, "mu": gd.mu, "nu": gd.nu, "lam_min_M": gd.lam_min_M, "abs_dL": -gd.dL,
                  "sqrt_abs_dL": np.sqrt(-gd.dL)}
    for name, f in integrands.items():
        left = np.concatenate([[0.0], np.cumsum(step * f[:-1])])  # Σ_{j<k} δ q(H_j)
        np.testing.assert_allclose(getattr(gd, f"int_{name}"), left, rtol=1e-13, atol=1e-15,
                                   err_msg=f"int_{name}")
    # and η really moved, so the left sum is not a multiple of a constant
    assert np.ptp(gd.eta) > 0


# ---------------------------------------------------------------------------------------------------------
# 3. Every pathwise inequality holds on accurate flows



FLOW_CASES = {
    # key: (activation, scaling, n, d, m, solver kwargs); n > d makes the shallow Gram singular
    "tanh-ours-n<d": ("tanh", "ours", 4, 8, 32, {}),
    "erf-ours-n>d": ("erf", "ours", 10, 4, 24, {}),
    "gelu-ours-n<d": ("gelu", "ours", 4, 8, 32, {}),
    "softplus-ours-n>d": ("softplus", "ours", 6, 3, 24, {}),
    "tanh-ntk-n<d": ("tanh", "ntk", 4, 8, 32, {}),
    "tanh-mf-n>d": ("tanh", "mf", 6, 3, 24, {}),
    "relu-ours-rk4": ("relu", "ours", 4, 8, 32, {"method": "rk4", "step": 0.01}),
}


@functools.lru_cache(maxsize=None)
def _flow(key: str):
    act, scaling, n, d, m, kw = FLOW_CASES[key]
    X, y = _data(n, d, seed=0)
    emb = gf.RandomFeatures(D=m) if scaling == "mf" else "identity"
    net = gf.Network(d=d, width=m, activation=act, scaling=scaling, embedding=emb, seed=1)
    solver = dict(kw) if kw else {"rtol": 1e-10, "atol": 1e-12}
    sol = gf.simulate(net, X, y, t1=6.0 if kw else 4.0, **solver)
    return sol, gf.certify(sol)


@pytest.mark.parametrize("key", list(FLOW_CASES))
def test_every_pathwise_inequality_holds_on_an_accurate_flow(key):
    sol, cert = _flow(key)
    act, scaling, n, d, m, kw = FLOW_CASES[key]
    assert sol.ok
    assert sol.loss[-1] < sol.loss[0]
    failed = [str(c) for c in cert.checks if c.applicable and c.counts and not c.held]
    if act == "relu":
        assert not cert.check("T2").counts  # sliding at the kink: information only
    assert not failed, "\n".join(failed)
    assert cert.ok and not cert.violations
    for key_ in ("T1", "T2", "T3", "T4", "T7", "T11"):
        assert cert.check(key_).applicable, key_
    # T3 (the tightest exponential bound) is a genuine, non-vacuous guarantee no faster than the loss
    t3 = cert.check("T3")
    assert t3.held and t3.guaranteed_rate > 0
    assert t3.tightness >= 0.95
    T = sol.t[-1]
    chord = math.log(sol.loss[0] / sol.loss[-1]) / T
    assert t3.guaranteed_rate <= chord * (1 + 1e-6)
    # the Gram-dependent checks are applicable exactly when λ_min(G) > 0 (n ≤ d for the shallow net)
    lam_min_G = np.linalg.eigvalsh(sol.G)[0]
    G_pd = lam_min_G > 1e-10
    assert G_pd == (scaling == "mf" or n <= d)
    assert cert.check("T8").applicable == G_pd
    assert cert.check("T9").applicable == (G_pd and scaling == "ours")
    if not G_pd:
        assert any("λ_min(G)" in note for note in cert.notes)


def test_relu_fixed_step_flow_satisfies_every_inequality_except_the_energy_identity():
    sol, cert = _flow("relu-ours-rk4")
    assert sol.ok
    for c in cert.checks:
        if c.applicable and c.counts and c.key != "T2":
            assert c.held, str(c)
    assert cert.check("T9").applicable and cert.check("T3").held


def test_relu_energy_identity_is_information_only_because_sliding_features_break_it():
    # Features that reach the kink slide along h = 0 (ḣ < 0 just above, > 0 just below) and chatter between
    # σ′ = 0 and 1; ∫rᵀMr then overestimates L_0 − L_t by an amount that does not shrink with the step, so the
    # certificate must not blame the integrator for it.
    X, y = _data(4, 8, seed=0)
    net = gf.Network(d=8, width=32, activation="relu", seed=1)
    gaps, losses = [], []
    for h in (0.01, 0.005):
        sol = gf.simulate(net, X, y, saveat=[0.0, 1.0], method="rk4", step=h)
        gaps.append(abs(sol.loss[0] - sol.loss[-1] - sol.int_abs_dL[-1]) / sol.loss[0])
        losses.append(sol.loss[-1])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)  # the trajectory has converged ...
    assert gaps[1] > 0.6 * gaps[0]  # ... but the gap does not shrink with the step
    cert = gf.certify(sol)
    t2 = cert.check("T2")
    assert t2.applicable and not t2.counts and "kink" in t2.detail
    assert cert.ok and any("Filippov" in note for note in cert.notes)




def test_pl_check_is_not_applicable_for_softplus_whose_derivative_vanishes_at_minus_infinity():
    sol, cert = _flow("softplus-ours-n>d")
    assert sol.theory["K_sigma_global"] == 0.0
    assert not cert.check("T6").applicable


def test_linear_activation_flow_satisfies_the_pl_bound():
    X, y = _data(3, 6, seed=2)
    net = gf.Network(d=6, width=16, activation="linear", c_hat=0.8, seed=3)
    sol = gf.simulate(net, X, y, t1=5.0, rtol=1e-10, atol=1e-12)
    cert = gf.certify(sol)
    assert sol.ok and cert.ok
    t6 = cert.check("T6")
    assert t6.applicable and t6.counts and t6.held
    # (16): rate 2ĉ²λ_min(G)K_σ′² with K_σ′ = 1, ĉ = 0.8
    lam_min_G = np.linalg.eigvalsh(X @ X.T / 6)[0]
    assert t6.guaranteed_rate == pytest.approx(2 * 0.64 * lam_min_G, rel=1e-10)
    assert np.all(sol.loss <= sol.loss[0] * np.exp(-2 * 0.64 * lam_min_G * sol.t) * (1 + 1e-8))
    # σ linear: M ≡ ĉ²G (§5.1), so λ_min(M) is constant and T3 is tight
    np.testing.assert_allclose(sol.lam_min_M, 0.64 * lam_min_G, rtol=1e-10)


# ---------------------------------------------------------------------------------------------------------
# 4. certify flags inaccurate trajectories; gradient descent is certified only on T7/T11


def _unstable_problem():
    X, y = _data(5, 8, seed=0)
    net = gf.Network(d=8, width=32, activation="tanh", seed=1)
    H0 = net.W0.numpy() @ X.T / math.sqrt(8)
    lam_max = np.linalg.eigvalsh(_kernel_M(H0, net.c.numpy(), X @ X.T / 8, 1.0))[-1]
    return X, y, net, lam_max


def test_certify_flags_euler_with_a_step_past_stability_and_advises_a_smaller_step():
    X, y, net, lam_max = _unstable_problem()
    step = 3.0 / lam_max
    with pytest.warns(gf.GFlowWarning, match=r"the loss rose .* exceeds the stability limit"):  # simulate says so
        sol = gf.simulate(net, X, y, saveat=step * np.arange(21), method="euler", step=step)
    assert sol.ok
    assert np.any(np.diff(sol.loss) > 0)  # the loss oscillates upwards: not a gradient flow
    cert = gf.certify(sol)
    assert not cert.ok
    bad = {c.key for c in cert.violations}
    assert {"T1", "T2"} <= bad
    assert cert.check("T1").worst_margin < 0
    assert "step" in cert.advice.lower() and "halve" in cert.advice.lower()
    numbers = [float(x) for x in re.findall(r"\d+\.\d+(?:e[-+]?\d+)?", cert.advice)]
    assert any(abs(x - step) <= 1e-9 * step for x in numbers), cert.advice
    text = str(cert)
    assert "VIOLATED" in text and "advice:" in text


def test_certify_flags_a_loose_adaptive_run_through_the_energy_identity():
    X, y, net, _ = _unstable_problem()
    # (dopri5, which auto ran at rtol 1e-2 until it kept to 1e-4 ≤ rtol ≤ 1e-3: its loose run is what certify flags)
    sol = gf.simulate(net, X, y, t1=200.0, method="dopri5", rtol=1e-2, atol=1e-2)
    assert sol.ok
    cert = gf.certify(sol, slack=1e-6)
    assert not cert.ok
    assert "T2" in {c.key for c in cert.violations}
    assert cert.slack == 1e-6
    assert "rtol" in cert.advice


def test_gradient_descent_past_stability_is_certified_only_on_the_counting_inequalities():
    X, y, net, lam_max = _unstable_problem()
    step = 3.0 / lam_max
    with pytest.warns(gf.GFlowWarning, match="loss rose"):
        gd = gf.gradient_descent(net, X, y, step=step, steps=40, save_every=1)
    assert gd.ok
    assert np.any(np.diff(gd.loss) > 0)
    cert = gf.certify(gd)
    assert cert.kind == "gd"
    assert cert.ok, str(cert)
    t1 = cert.check("T1")
    assert t1.applicable and t1.held is False and t1.counts is False
    for c in cert.checks:
        assert c.counts == (c.key in ("T7", "T11")) or not c.applicable, c.key
    assert cert.check("T7").held and cert.check("T11").held
    note = " ".join(cert.notes)
    assert "2/λ_max" in note and "PAST" in note
    assert f"{2.0 / lam_max:.3g}" in note


def test_gradient_descent_within_stability_is_noted_as_within_the_limit():
    X, y, net, lam_max = _unstable_problem()
    gd = gf.gradient_descent(net, X, y, step=1.0 / lam_max, steps=10, save_every=1)
    cert = gf.certify(gd)
    assert cert.ok and cert.check("T1").held
    assert any("2/λ_max" in n and "within" in n for n in cert.notes)
    assert np.all(np.diff(gd.loss) <= 0) and cert.check("T1").detail == "the saved loss never increased"  # (it read
    # "largest increase -8.6e-23")


# ---------------------------------------------------------------------------------------------------------
# 5. Theorem 1: constants by hand, the ĉ switch, and the realised form along a flow


def _thm1_problem():
    n, d, m = 3, 6, 64
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, d))
    y = rng.uniform(-0.5, 0.5, size=n)
    # symmetrised explicit initialisation (neurons i and i + m/2 share weights, opposite c): f⁰ ≡ 0, so
    # L_0 = ½‖y‖² does not grow with ĉ and the realised Theorem 1 can be met by a large ĉ (§10.3)
    half = rng.standard_normal((m // 2, d))
    eps = rng.choice([-1.0, 1.0], size=m // 2)
    return X, y, np.vstack([half, half]), np.concatenate([eps, -eps])


def _hand_constants(X, y, I=TANH_I, Ks=K_TANH, delta=0.1, m=64):
    n, d = X.shape
    G = X @ X.T / d
    ev = np.linalg.eigvalsh(G)
    lmin, lmax = ev[0], ev[-1]
    gmin, gmax = np.diag(G).min(), np.diag(G).max()
    lo, hi = I
    ynorm = np.linalg.norm(y)
    K = (hi - lo) / (6 * math.sqrt(2 * math.pi * gmax)) * math.exp(-max(lo**2, hi**2) / (2 * gmin))  # (71)
    kappa = 9 * lmax / (math.sqrt(2) * lmin * Ks * (hi - lo))  # (19), §8.2
    c0 = 9 * math.sqrt(2) * ynorm / (Ks * (hi - lo) * K**1.5)  # (58), re-derived
    r = 2 ** (1 / 3) * Ks**2 * K  # (61)
    return dict(lmin=lmin, lmax=lmax, gmin=gmin, gmax=gmax, ynorm=ynorm, K=K, kappa=kappa, c0=c0, r=r,
                thr=c0 * lmax / lmin, m_req=math.log(2 * n / delta) / (2 * K**2), n=n, m=m)


def _c_hypothesis(report):
    (h,) = [h for h in report.hypotheses if h.name.startswith("ĉ ≥ ĉ₀")]
    return h


def test_theorem1_constants_match_a_hand_computation_and_the_c_hypothesis_switches_at_the_threshold():
    X, y, _, _ = _thm1_problem()
    hc = _hand_constants(X, y)
    assert hc["lmin"] > 0  # n ≤ d, linearly independent inputs: Corollary 1 applies
    # ĉ₀λ_max/λ_min = 2κ‖y‖/K^{3/2} (§10.3)
    assert hc["thr"] == pytest.approx(2 * hc["kappa"] * hc["ynorm"] / hc["K"] ** 1.5, rel=1e-12)
    args = dict(lam_min_G=hc["lmin"], lam_max_G=hc["lmax"], G_min=hc["gmin"], G_max=hc["gmax"],
                y_norm=hc["ynorm"], n=hc["n"], m=hc["m"], K_sigma=K_TANH, I=TANH_I, delta=0.1)
    below = theorem1(c_hat=0.99 * hc["thr"], **args)
    above = theorem1(c_hat=1.01 * hc["thr"], **args)
    for rep, c_hat in ((below, 0.99 * hc["thr"]), (above, 1.01 * hc["thr"])):
        assert rep.K == pytest.approx(hc["K"], rel=1e-12)
        assert rep.kappa == pytest.approx(hc["kappa"], rel=1e-12)
        assert rep.c0 == pytest.approx(hc["c0"], rel=1e-12)
        assert rep.c_threshold == pytest.approx(hc["thr"], rel=1e-12)
        assert rep.r == pytest.approx(hc["r"], rel=1e-12)
        assert rep.rate == pytest.approx(hc["r"] * c_hat**2 * hc["lmin"], rel=1e-12)
        assert rep.eta_lower == pytest.approx(2 ** (-2 / 3) * hc["K"], rel=1e-12)
        assert rep.m_required == pytest.approx(hc["m_req"], rel=1e-12)
    assert not _c_hypothesis(below).met
    assert _c_hypothesis(above).met
    # the other hypotheses do not depend on ĉ
    def others(rep):
        return [(h.name, h.met) for h in rep.hypotheses if not h.name.startswith("ĉ ≥ ĉ₀")]

    assert others(below) == others(above)
    assert ("λ_min(G) > 0", True) in others(above)


@functools.lru_cache(maxsize=None)
def _thm1_run(factor: float, horizon: float):
    """A flow with ĉ = factor × the realised threshold 2κ√L_0/η̄_0^{3/2} (hand-computed)."""
    X, y, W0, eps = _thm1_problem()
    hc = _hand_constants(X, y)
    H0 = W0 @ X.T / math.sqrt(X.shape[1])
    eb0 = _frac_in(H0, _inner(TANH_I)[0]).min()
    L0 = 0.5 * y @ y
    thr = 2 * hc["kappa"] * math.sqrt(L0) / eb0**1.5
    c_hat = factor * thr
    net = gf.Network(d=X.shape[1], width=W0.shape[0], activation="tanh", c=c_hat * eps, W0=W0)
    rate = 2 ** (1 / 3) * c_hat**2 * hc["lmin"] * K_TANH**2 * eb0
    sol = gf.simulate(net, X, y, t1=horizon / rate, rtol=1e-10, atol=1e-12)
    return sol, gf.certify(sol), dict(hc, eb0=eb0, L0=L0, thr_realised=thr, c_hat=c_hat, rate=rate)


def test_realised_theorem1_holds_along_a_flow_with_a_large_c_hat():
    sol, cert, hc = _thm1_run(1.2, 6.0)
    assert sol.ok and cert.ok
    assert sol.loss[0] == pytest.approx(hc["L0"], rel=1e-12)  # f⁰ ≡ 0
    assert sol.eta_bar[0] == hc["eb0"]
    th = sol.theory
    assert th["lam_min_G"] == pytest.approx(hc["lmin"], rel=1e-10)
    assert th["lam_max_G"] == pytest.approx(hc["lmax"], rel=1e-12)
    assert th["c_hat"] == th["c_min"] == pytest.approx(hc["c_hat"], rel=1e-14)
    rt = realised_theorem1(c_hat=hc["c_hat"], lam_min_G=hc["lmin"], lam_max_G=hc["lmax"], K_sigma=K_TANH,
                           L0=hc["L0"], eta_bar0=hc["eb0"], I=TANH_I)
    assert rt.all_met
    assert rt.kappa == pytest.approx(hc["kappa"], rel=1e-12)
    assert rt.c_threshold == pytest.approx(hc["thr_realised"], rel=1e-12)
    assert rt.rate == pytest.approx(hc["rate"], rel=1e-12)
    assert rt.eta_lower == pytest.approx(2 ** (-2 / 3) * hc["eb0"], rel=1e-14)
    t10 = cert.check("T10")
    assert t10.applicable and t10.counts and t10.held
    assert t10.guaranteed_rate == pytest.approx(hc["rate"], rel=1e-10)
    assert cert.check("T9").held
    # the conclusion itself, at every saved time
    assert np.all(sol.loss <= hc["L0"] * np.exp(-hc["rate"] * sol.t) * (1 + 1e-8) + 1e-30)
    assert np.all(sol.eta >= 2 ** (-2 / 3) * hc["eb0"])
    assert sol.loss[-1] < 1e-3 * sol.loss[0]
    # the probabilistic threshold ĉ₀λ_max/λ_min is larger: that hypothesis fails, yet the realised form
    # guarantees the rate surely
    (rep,) = cert.theorems
    assert hc["c_hat"] < hc["thr"]
    assert not _c_hypothesis(rep).met
    assert rep.realised is not None and rep.realised.all_met
    assert rep.guaranteed_rate == pytest.approx(hc["rate"], rel=1e-10)


def test_lemma1_margin_is_the_hand_computed_one_and_a_lowered_eta_fails_it():
    # (a mutation audit: T9's allowance 1.5/m made 15/m, 10× looser, passed every test) Lemma 1 (19):
    # η_t^{3/2} ≥ η̄₀^{3/2} − κ(√L₀ − √L_t)/ĉ, allowed 1.5/m (η counts neurons) and the slack on κ√L₀/ĉ
    sol, cert, hc = _thm1_run(1.2, 6.0)
    m, L = sol.m, sol.loss
    assert m == 64
    rhs = hc["eb0"] ** 1.5 - hc["kappa"] * (math.sqrt(hc["L0"]) - np.sqrt(L)) / hc["c_hat"]
    allow = 1.5 / m + cert.slack * hc["kappa"] * math.sqrt(hc["L0"]) / hc["c_hat"]
    gap = sol.eta**1.5 - rhs + allow
    t9 = cert.check("T9")
    assert t9.applicable and t9.counts and t9.held
    assert t9.worst_margin == pytest.approx(gap.min(), rel=1e-12) and t9.worst_t == sol.t[np.argmin(gap)]
    # η lowered at one saved time until (19) fails by 3/m beyond the allowance
    k = 1
    eta = sol.eta.copy()
    eta[k] = (rhs[k] - allow - 3.0 / m) ** (2 / 3)
    t9 = gf.certify(dataclasses.replace(sol, eta=eta)).check("T9")
    assert not t9.held and t9.worst_t == sol.t[k]
    assert t9.worst_margin == pytest.approx(-3.0 / m, rel=1e-10)


def test_realised_theorem1_is_not_applicable_below_its_c_threshold():
    sol, cert, hc = _thm1_run(0.8, 1e-3)
    t10 = cert.check("T10")
    assert not t10.applicable and t10.held is None
    assert "condition not met" in t10.detail
    assert cert.check("T9").applicable and cert.check("T9").held


# ---------------------------------------------------------------------------------------------------------
# 6. The certificate as text and from a file


def test_certificate_text_mentions_every_check_T1_to_T11():
    _, cert = _flow("tanh-ours-n<d")
    text = str(cert)
    assert text.startswith("Certificate (flow): OK")
    for k in range(1, 12):
        assert re.search(rf"\bT{k}\b", text), f"T{k} missing"
    assert [c.key for c in cert.checks] == [f"T{k}" for k in range(1, 12)]


def test_certify_accepts_a_saved_file_and_gives_the_same_verdict(tmp_path):
    for key in ("tanh-ours-n<d", "erf-ours-n>d"):
        sol, cert = _flow(key)
        path = sol.save(tmp_path / f"{key}.nc")
        for source in (path, str(path)):
            again = gf.certify(source)
            assert again.ok == cert.ok and again.kind == cert.kind
            for a, b in zip(cert.checks, again.checks):
                assert (a.key, a.applicable, a.held, a.counts) == (b.key, b.applicable, b.held, b.counts)
                np.testing.assert_allclose(b.worst_margin, a.worst_margin, rtol=1e-12, atol=1e-300)
                if a.guaranteed_rate is not None:
                    assert b.guaranteed_rate == pytest.approx(a.guaranteed_rate, rel=1e-12)


def test_certify_at_a_zero_loss_equilibrium_reports_no_violation():
    # regression: f⁰ ≡ 0 (ntk, symmetric c) and y = 0: L ≈ 4.6e-34 throughout, exact; rounding divided by L_0 was a
    # T2 "violation" of 314
    X, _ = gf.data.random_labels(n=6, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=8, scaling="ntk", seed=0), X, np.zeros(6), t1=1.0)
    assert sol.loss[0] < 1e-30
    cert = gf.certify(sol)
    assert cert.ok, str(cert)
    assert "below the loss the state resolves" in cert.check("T2").detail
    # f⁰ rounds to exactly 0 with some float64 tanh routes (the route is timed per process): L₀ = 0 exactly was a
    # math domain error in the exponential bounds
    import dataclasses

    cert = gf.certify(dataclasses.replace(sol, loss=np.zeros_like(sol.loss)))
    assert cert.ok, str(cert)


def test_certify_reads_a_custom_scalings_exponents_not_its_name():
    # regression (a numerical audit): T11 took α·m from the scaling's *name* (1 for any name but "ntk"), so a custom
    # gf.Scaling with NTK exponents (α·m = √m = 8) failed (15) by 0.42 on an exact flow; and T9/T10 were gated on the
    # name "ours", so a custom Scaling named "ours" with ℓ = m² counted as the paper's
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((3, 8)), rng.uniform(-0.5, 0.5, 3)
    ntk_unsym = gf.Scaling("ntk_unsym", alpha_exp=0.5, beta_exp=0.5, lr_exp=0.0)
    sol = gf.simulate(gf.Network(d=8, width=64, scaling=ntk_unsym, seed=3), X, y, t1=20.0, method="dop853",
                      rtol=1e-11, atol=1e-13)
    cert = gf.certify(sol)
    assert cert.ok and cert.check("T11").held
    named_ours = gf.Scaling("ours", 1.0, 0.5, 2.0)
    assert not named_ours.paper and gf.get_scaling("ours").paper
    sol = gf.simulate(gf.Network(d=8, width=64, scaling=named_ours, seed=3), X, y, t1=2.0, rtol=1e-10, atol=1e-12)
    cert = gf.certify(sol)
    assert not cert.check("T9").applicable and "ℓ = m^2" in cert.check("T9").detail


def test_a_run_that_stopped_early_is_not_certified():
    # regression (a bad-input audit): a run that turned non-finite at t = 0 (one saved row) passed every check
    # vacuously: "Certificate (flow): OK", and `gflow certify` exited 0
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=16, seed=0, c_hat=1e100), X, y, t1=1.0, warn=False)
    assert sol.status == "nonfinite"
    cert = gf.certify(sol)
    assert not cert.ok and not cert.violations and cert.status == "nonfinite"
    assert str(cert).startswith("Certificate (flow): NOT CERTIFIED (the run stopped early [nonfinite])")
    assert "rerun it to t1" in cert.advice
    short = gf.simulate(gf.Network(d=3, width=16, seed=0), X, y, t1=5.0, max_steps=3, warn=False)
    assert short.status == "max_steps" and not gf.certify(short).ok


def test_certify_reads_a_file_of_an_earlier_gflow_that_named_a_custom_scaling_only(tmp_path):
    # review: files of an earlier gflow stored a custom scaling by name; certify must not fail on them (T9–T11 need
    # its exponents: not applicable, saying why)
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=8, scaling=gf.Scaling("ntk_unsym", 0.5, 0.5, 0.0), seed=0), X, y,
                      t1=1.0, rtol=1e-10, atol=1e-12)
    old = dataclasses.replace(sol, config={**sol.config, "network": {**sol.config["network"], "scaling": "ntk_unsym"}})
    cert = gf.certify(old)
    assert cert.ok and not cert.check("T11").applicable and "recorded by name only" in cert.check("T11").detail
    assert "recorded by name only" in cert.check("T9").detail


# ---------------------------------------------------------------------------------------------------------
# Edge cases of certify: no counted violation where the trajectory is right (each a former false violation or
# crash)


def test_certify_with_an_exactly_zero_initial_loss_holds_t10():
    X, y = _data(5, 8, 0)
    net = gf.Network(d=8, width=64, seed=0)
    y0 = gf.simulate(net, X, y, t1=1e-9).output[0]  # targets at the initial outputs: L₀ = 0
    cert = gf.certify(gf.simulate(net, X, y0, t1=5.0, rtol=1e-10, atol=1e-12))
    t10 = cert.check("T10")
    assert cert.ok and t10.applicable and t10.held  # (log 0 − log 0 = NaN: a counted violation)


def test_certify_with_c_identically_zero_neither_crashes_nor_flags():
    X, y = _data(5, 8, 0)
    sol = gf.simulate(gf.Network(d=8, width=64, seed=0, c=np.zeros(64)), X, y, t1=2.0, rtol=1e-10, atol=1e-12)
    cert = gf.certify(sol)  # (ZeroDivisionError in T9: 0 ≤ 1e-12·0 made |c_i| "all equal")
    assert cert.ok and not cert.check("T9").applicable and not cert.check("T11").applicable
    assert "does not depend on the features" in cert.check("T11").detail


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1.0), (torch.float64, 1000.0)])
def test_weight_space_feature_rounding_at_t0_does_not_fail_t8(dtype, scale):
    X, y = _data(5, 8, 0)
    sol = gf.simulate(gf.Network(d=8, width=64, seed=0, dtype=dtype), X * scale, y, t1=1.0, space="weight")
    assert sol.feature_movement[0].max() > 0  # the precondition: H(0) = W₀(βΦᵀ) vs (W₀Φᵀ)β rounds apart
    t8 = gf.certify(sol).check("T8")
    assert t8.applicable and t8.held


@pytest.mark.parametrize("rtol", [1e-8, 1e-10, 1e-12])
def test_n_equal_one_where_t3_and_t4_hold_with_equality_is_certified_at_every_rtol(rtol):
    # n = 1: M is a scalar, T3 and T4 are equalities, and L = ½r² is known only to ~2δ/|r| relatively once r ≪ f
    net = gf.Network(d=4, width=16, activation="tanh", seed=0)
    sol = gf.simulate(net, np.array([[1, 0.5, -0.3, 0.8]]), np.array([0.4]), t1=40.0, rtol=rtol, atol=rtol * 1e-2)
    cert = gf.certify(sol)
    assert cert.check("T3").worst_margin < -cert.slack  # the precondition: beyond the plain slack
    assert cert.ok and cert.check("T3").held and cert.check("T4").held and "allowed there" in cert.check("T3").detail


def test_the_accuracy_allowance_still_catches_an_inaccurate_trajectory():
    # a 10× error in the loss is far beyond the loss's accuracy at any saved time: T3 must fail
    X, y = _data(6, 5, 1)
    sol = gf.simulate(gf.Network(d=5, width=32, seed=1), X, y, t1=20.0, rtol=1e-10, atol=1e-12)
    bad = dataclasses.replace(sol, loss=sol.loss * np.r_[1.0, np.full(sol.loss.size - 1, 10.0)])
    cert = gf.certify(bad)
    assert not cert.check("T3").held and not cert.ok


def test_the_accuracy_allowance_catches_a_loss_error_that_grows_late_in_the_run():
    # (a review: with δ = slack/10 of the terms' scale the allowance reached 0.5 in log units at the end of the
    # window, and a loss 4.5× too large there (1.5× above T3's bound) was certified; the saved loss's own error is
    # 6e-6 there against an rtol 1e-12 run)
    X, y = gf.data.random_labels(n=3, d=8, seed=0)
    sol = gf.simulate(gf.Network(d=8, width=64, seed=0), X, y, t1=70.0)
    assert gf.certify(sol).ok
    bad = dataclasses.replace(sol, loss=sol.loss * np.exp(0.05 * np.maximum(sol.t - 40.0, 0.0)))
    t3 = gf.certify(bad).check("T3")
    assert not t3.held and t3.worst_t == pytest.approx(70.0) and "allowed there" in t3.detail


def test_certify_above_the_eigenproblem_size_leaves_the_lambda_min_bounds_unevaluated(monkeypatch):
    import gflow.solve._record as rec

    monkeypatch.setattr(rec, "EIG_MAX_N", 1)  # λ(G) computed up to 4·EIG_MAX_N = 4 points
    X, y = _data(5, 3, 0)
    sol = gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=0.5, rtol=1e-8, atol=1e-10)
    assert math.isnan(sol.theory["lam_min_G"])
    cert = gf.certify(sol)
    assert cert.ok and not cert.violations
    for key in ("T4", "T5", "T6", "T8", "T9", "T10"):
        assert not cert.check(key).applicable and "not computed" in cert.check(key).detail, key


def test_a_float32_run_with_a_small_residual_is_certified_at_its_default_rtol():
    X, y = gf.data.random_labels(n=5, d=8, seed=0)
    net = gf.Network(d=8, width=256, seed=0, dtype=torch.float32)
    y1 = gf.simulate(net, X, y, t1=1e-6).output[0] + 1e-4 * np.array([1, -1, 1, -1, 1.0])  # a small residual
    cert = gf.certify(gf.simulate(net, X, y1, t1=5.0, space="feature"))  # rtol 1e-7: float32's floor
    assert cert.ok and cert.check("T2").held  # (T2 "failed" at 1.7e-4 against the slack 1e-5)


def test_certify_says_why_t4_is_not_evaluated_without_running_integrals():
    X, y = _data(5, 8, 0)
    cert = gf.certify(gf.simulate(gf.Network(d=8, width=16, seed=0), X, y, t1=1.0, integrals=False))
    t4 = cert.check("T4")
    assert not t4.applicable and "no running integrals" in t4.detail  # (the reason was empty)
    assert "integrals=False" in t4.detail and "integrals=False" in cert.check("T2").detail


@pytest.mark.parametrize("method", ["filippov", "sliding"])
def test_certify_says_that_the_relu_solvers_do_not_carry_the_integrals(method):
    # (it said "integrals=False", which the user never passed: these solvers drop them)
    X, y = _data(6, 4, 0)
    sol = gf.simulate(gf.Network(d=4, width=16, activation="relu", seed=0), X, y, t1=2.0, method=method,
                      **({"step": 0.05} if method == "sliding" else {}))
    cert = gf.certify(sol)
    for key in ("T2", "T3", "T4", "T5"):
        detail = cert.check(key).detail
        assert not cert.check(key).applicable and f"method={method!r} does not carry them" in detail, key
        assert "integrals=False" not in detail


def test_a_non_finite_running_integral_is_a_counted_violation_not_hidden():
    # (a review: a NaN exponent was reported "not applicable", which hid it from cert.ok)
    X, y = _data(5, 8, 0)
    sol = gf.simulate(gf.Network(d=8, width=16, seed=0), X, y, t1=1.0, rtol=1e-10, atol=1e-12)
    bad = dataclasses.replace(sol, int_lam_min_M=np.where(sol.t > 0.5, np.nan, sol.int_lam_min_M))
    cert = gf.certify(bad)
    t3 = cert.check("T3")
    assert t3.applicable and t3.held is False and "not finite" in t3.detail and not cert.ok


@pytest.mark.parametrize("seed", [10, 21])
def test_float32_outputs_rounding_does_not_fail_the_counting_inequality_t11(seed):
    # (a fuzz of certify over 40 random accurate runs: two float32 runs failed T11 by 1.6e-9 and 6.7e-8 at t < 0.002,
    # the rounding of f — read as "this indicates a bug"; the fuzz's draws, as it made them)
    r = np.random.default_rng(seed)
    n, d, m = int(r.integers(1, 12)), int(r.integers(1, 10)), int(r.choice([8, 32, 128]))
    act = str(r.choice(["tanh", "erf", "softplus", "sigmoid", "gelu"]))
    scaling, emb = str(r.choice(["ours", "ntk", "mf"])), str(r.choice(["identity", "quadratic"]))
    r.random()  # (the dtype draw: float32 for these seeds)
    X, y = r.standard_normal((n, d)), r.standard_normal(n) * float(r.choice([0.01, 1.0]))
    net = gf.Network(d=d, width=m, activation=act, scaling=scaling, embedding=emb, seed=seed, dtype="float32")
    t1 = float(r.choice([5.0, 50.0, 500.0]))
    sol = gf.simulate(net, X, y, t1=t1, rtol=1e-6, atol=1e-8, max_wall_time=20)
    t11 = gf.certify(sol).check("T11")
    assert t11.applicable and t11.held


@functools.lru_cache(maxsize=1)
def _eta_problem():
    """A net whose η jumps 4 times in t ≤ 1, and a fine run of it (rk4 at step 2.5e-4, η saved at every step)."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((5, 4)), rng.uniform(-0.5, 0.5, 5)
    net = gf.Network(d=4, width=16, activation="tanh", seed=1)
    fine = gf.simulate(net, X, y, t1=1.0, method="rk4", step=2.5e-4, interval=(-0.5, 0.5),
                       saveat=np.linspace(0.0, 1.0, 4001), integrals=False)
    return net, X, y, fine


@pytest.mark.parametrize("method, space", [("dop853", "weight"), ("dop853", "feature"), ("dopri5", "weight"),
                                           ("DOP853", "weight"), ("DOP853", "feature"), ("RK45", "feature"),
                                           ("dop853+exprk4", "feature"), ("batch-dop853", "weight"),
                                           ("batch-DOP853", "feature")])
def test_the_integral_of_eta_stays_in_its_range_over_long_steps(method, space):
    # (a model audit: DOP853's weights include b₆ = 4.45 and b₈ = −5.80, and over its 3 steps to t = 1 here ∫η
    # came out −0.026 (−0.21 at a saved time) where it is 0.169, 0.231 in feature space: η ∈ [0, 1] jumps whenever
    # a feature crosses the edge of the interval, and a jump between those stages moved ∫η by up to 5.8·h·Δη)
    net, X, y, fine = _eta_problem()
    grid = np.linspace(0.0, 1.0, 11)
    ref = cumulative_trapezoid(fine.eta, fine.t, initial=0.0)[::400]
    if method.startswith("batch-"):  # (a batch's engine had no rule of its own: it kept DOP853's weights)
        sol = gf.simulate_batch([net], X, y, t1=1.0, method=method[6:], interval=(-0.5, 0.5), space=space,
                                saveat=grid)[0]
    else:
        sol = gf.simulate(net, X, y, t1=1.0, method=method, interval=(-0.5, 0.5), space=space, saveat=grid)
    assert sol.ok and sol.stats["n_steps"] <= 10  # (long steps: the case that broke)
    rate = np.diff(sol.int_eta) / np.diff(grid)
    assert rate.min() >= fine.eta.min() - 1e-12 and rate.max() <= fine.eta.max() + 1e-12
    # each jump of η costs at most (the longest step)·|jump| against the fine trapezoid rule
    assert np.abs(sol.int_eta - ref).max() <= 0.4 * np.abs(np.diff(fine.eta)).sum() + 1e-4
    assert sol.int_eta[-1] == pytest.approx(ref[-1], rel=0.03)


# ---------------------------------------------------------------------------------------------------------
# An exactness audit of the theory layer (EQUATIONS.md §6, §9)


def test_t3_is_vacuous_where_m_is_singular_whatever_the_sign_of_its_rounding():
    # (an audit) linear σ on a shallow net with n = 6 > d = 5: M = ĉ²G (§5.1) is singular, and the recorded λ_min(M)
    # is the eigensolver's rounding (±1e-17).  T3 reported "guaranteed rate 8.12e-17 … 3.83e+15× slack" where that
    # rounding came out positive, "vacuous" where negative; T4–T6 are vacuous for the same G either way.
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((6, 5)), rng.uniform(-0.5, 0.5, 6)
    net = gf.Network(d=5, width=12, activation="linear", c_hat=1.3, seed=2)
    sol = gf.simulate(net, X, y, t1=4.0, saveat=np.linspace(0.0, 4.0, 9), method="dop853", rtol=1e-12, atol=1e-13)
    lam = np.linalg.eigvalsh(1.3**2 * X @ X.T / 5)  # M = ĉ²G, independent of the features
    assert lam[0] <= 1e-12 * lam[-1]  # the precondition: M is singular
    assert math.log(sol.loss[0] / sol.loss[-1]) > 0.5  # the loss still decays (on G's range)
    for sign in (1.0, -1.0):  # both signs of the rounding: λ_min(M) = ±4e-17 throughout
        bad = dataclasses.replace(sol, int_lam_min_M=sign * 4e-17 * sol.t, lam_min_M=np.full_like(sol.t, sign * 4e-17))
        t3 = gf.certify(bad).check("T3")
        assert t3.applicable and t3.held and t3.vacuous and t3.tightness is None, str(t3)
    t3 = gf.certify(sol).check("T3")
    assert t3.vacuous and t3.tightness is None and "λ_min(M) ≈ 0" in t3.detail, str(t3)
    # a genuinely positive λ_min(M), however small against λ_max(M) but above rounding, stays a bound
    ok = dataclasses.replace(sol, int_lam_min_M=1e-9 * lam[-1] * sol.t)
    t3 = gf.certify(ok).check("T3")
    assert not t3.vacuous and t3.guaranteed_rate == pytest.approx(2e-9 * lam[-1], rel=1e-12)


_SOFTPLUS = (torch.nn.functional.softplus, torch.sigmoid)
_TANH = (torch.tanh, lambda u: 1.0 - torch.tanh(u) ** 2)


@pytest.mark.parametrize("activation, interval, K", [("tanh", (-0.4, 1.3), 1.0 - math.tanh(1.3) ** 2),
                                                     ("tanh", (-1.0, 1.0), 1.0 - math.tanh(1.0) ** 2),
                                                     ("softplus", (-math.inf, 0.0), 0.0)])
def test_k_sigma_of_a_chosen_interval_is_the_infimum_of_abs_dsigma_on_it(activation, interval, K):
    # (an audit) K_σ′ = inf_I |σ′| (Assumption 2) of an interval other than the activation's own came from a grid
    # that stopped a step short of the ends: sech²(1.3)·(1 + 1.5e-5) on (−0.4, 1.3) — and K_σ′² is in T5's and
    # T10's rates — and sigmoid(−50) = 1.9e-22 for softplus on (−∞, 0), where it is 0 and T5 guarantees nothing
    X, y = _data(4, 6, seed=1)
    net = gf.Network(d=6, width=16, activation=activation, seed=2)
    sol = gf.simulate(net, X, y, t1=1.0, rtol=1e-10, atol=1e-12, interval=interval)
    assert sol.theory["K_sigma"] == pytest.approx(K, rel=1e-8, abs=0.0)
    if K == 0.0:
        assert not gf.certify(sol).check("T5").applicable
    # a custom activation's K (computed when not given) on its own interval alike
    sigma, dsigma = _TANH if activation == "tanh" else _SOFTPLUS
    own = gf.Activation(f"my_{activation}", sigma, dsigma, lipschitz=1.0, interval=interval)
    assert own.K == pytest.approx(K, rel=1e-8, abs=0.0)


@pytest.mark.parametrize("activation", ["tanh", "linear"])
def test_t4_t5_t6_t8_carry_the_mean_field_coefficients_by_hand(activation):
    # (an audit: no test pinned the factors κ_M and γ of T4–T6 and T8 — only that the checks held, which a bound
    # weakened by a dropped factor still does) Table 1, mean field at D ≠ m: κ_M = ℓα²β²Dm = γ = ℓαβ²D = m/D = 1.6
    n, d, m, D, c_hat = 4, 6, 16, 10, 0.9
    X, y = _data(n, d, seed=7)
    net = gf.Network(d=d, width=m, activation=activation, embedding=gf.RandomFeatures(D=D), scaling="mf",
                     c_hat=c_hat, seed=3)
    sol = gf.simulate(net, X, y, t1=3.0, method="dop853", rtol=1e-11, atol=1e-13, features_at="all")
    cert = gf.certify(sol)
    assert sol.ok and cert.ok
    Phi = net.embed(X).numpy()
    lam = np.linalg.eigvalsh(Phi @ Phi.T / D)
    coef = gamma = m / D
    K = K_TANH if activation == "tanh" else 1.0
    T = sol.t[-1]
    rate = {c.key: c.guaranteed_rate for c in cert.checks if c.applicable and c.guaranteed_rate is not None}
    assert rate["T4"] == pytest.approx(2 * coef * lam[0] * sol.int_nu[-1] / T, rel=1e-10)
    assert rate["T5"] == pytest.approx(2 * coef * c_hat**2 * lam[0] * K**2 * sol.int_eta[-1] / T, rel=1e-10)
    if activation == "linear":  # M ≡ κ_M ĉ² G (§5.1): T3, T4, T5 and the PL bound (16), T6, all have its rate
        for key in ("T3", "T4", "T5", "T6"):
            assert rate[key] == pytest.approx(2 * coef * c_hat**2 * lam[0], rel=1e-9), key
    else:
        assert not cert.check("T6").applicable
    # T8: (1/m)Σ_i|Δh_i(x_a)| ≤ γλ_max(G)/√(κ_M λ_min(G)) · ∫|L̇|^½ (|c_i| = ĉ), its worst margin by hand
    C = gamma * lam[-1] / math.sqrt(coef * lam[0])
    H_scale = np.abs(sol.H).max()
    gap = (C * sol.int_sqrt_abs_dL * (1 + cert.slack) + 1e-14 + 1e3 * np.finfo(float).eps * H_scale
           - np.abs(sol.H - sol.H[0]).mean(axis=1).max(axis=1))
    assert cert.check("T8").worst_margin == pytest.approx(gap.min(), rel=1e-9, abs=1e-15)
    # the checks name the κ_M they carry (their names said exp(−2λ_min(G)∫ν), a rate 1/κ_M of the one checked)
    assert "exp(−2κ_M·λ_min(G)∫ν) (κ_M = 1.6)" in str(cert.check("T4"))
    assert "exp(−2κ_M·ĉ²λ_min(G)K_σ′²∫η) (κ_M = 1.6)" in str(cert.check("T5"))
    plain = gf.certify(gf.simulate(gf.Network(d=d, width=m, activation=activation, seed=3), X, y, t1=1.0))
    assert "κ_M" not in str(plain)
