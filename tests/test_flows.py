"""Correctness of the gradient-flow solvers against closed forms, each other, and convergence theory.

References: EQUATIONS.md §3 (flow, loss decay (E3)), §4 (exact feature-space reduction, GD in feature space),
§5.1 (linear σ closed forms (E5)).  Tolerances are tied to the solver tolerance: a run at rtol = 1e-10 must
match a closed form to ~1e-8 relative (a 100× margin for error accumulation over a few time units).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import gflow as gf
from gflow.solve.ode import ADAPTIVE_METHODS, EXPINT_METHODS, FIXED_STEP_METHODS, METHODS, ORDERS, SCIPY_METHODS

pytestmark = pytest.mark.filterwarnings("ignore:Solver .* does not support callbacks:UserWarning")

RTOL, ATOL = 1e-10, 1e-12
EPS = float(torch.finfo(torch.float64).eps)
FLOW_TOL = 1e2 * RTOL  # relative agreement expected from an rtol = 1e-10 run
SCALINGS = ("ours", "ntk", "mf")
SPACES = ("weight", "feature")


def _kappa(net: gf.Network) -> float:
    """Rate of the linear-σ residual ODE ṙ = −κ G r: κ = ℓα²β²D·Σc_i² (= ĉ², or (m/D)ĉ² for MF), §5.1."""
    return net.lr * net.alpha**2 * net.beta**2 * net.D * float((net.c**2).sum())


def _psi(G: np.ndarray, kappa: float, t: float) -> np.ndarray:
    """Ψ(t) = ∫₀ᵗ exp(−κ G s) ds (§5.1), entry t on the null space of G."""
    lam, V = np.linalg.eigh(G)
    safe = np.where(lam > 1e-13, lam, 1.0)
    diag = np.where(lam > 1e-13, -np.expm1(-kappa * lam * t) / (kappa * safe), t)
    return (V * diag) @ V.T


def _linear_net(scaling: str, seed: int = 1) -> gf.Network:
    # m = 8 ≠ D = 6, so the MF factor m/D ≠ 1 is exercised; ĉ = 0.7 ≠ 1.
    return gf.Network(d=4, width=8, activation="linear", embedding=gf.RandomFeatures(D=6, activation="tanh"),
                      scaling=scaling, c_hat=0.7, seed=seed)


# ---------------------------------------------------------------------------------------------------------
# Linear σ: exact closed forms (EQUATIONS.md §5.1, E5)


def test_linear_flow_rate_kappa_is_c_hat_squared_and_m_over_D_for_mean_field():
    for scaling, factor in [("ours", 1.0), ("ntk", 1.0), ("mf", 8 / 6)]:
        assert _kappa(_linear_net(scaling)) == pytest.approx(0.49 * factor, rel=1e-14)


def test_time_to_loss_is_exact_for_one_point_where_the_loss_decays_exponentially(make_data):
    # n = 1, linear σ: L_t = L₀ e^{−2κGt}, so the time to reach a level is log(L₀/level)/(2κG), between any saved times
    X, y = make_data(n=1, d=4, seed=0)
    net = _linear_net("ours")
    rate = 2 * _kappa(net) * float(net.gram(X)[0, 0])
    sol = gf.simulate(net, X, y, saveat=np.linspace(0.0, 12.0 / rate, 9), rtol=RTOL, atol=ATOL)
    L0 = float(sol.loss[0])
    for level in (0.5 * L0, 1e-3 * L0, float(sol.loss[3])):  # (between saved times, and on one)
        assert sol.time_to_loss(level) == pytest.approx(math.log(L0 / level) / rate, rel=1e-8)
    assert sol.time_to_loss(2 * L0) == 0.0 and sol.time_to_loss(1e-3 * float(sol.loss[-1])) is None
    gd = gf.gradient_descent(net, X, y, step=0.05 / rate, steps=100, save_every=7)  # (GD: t = kδ, saved steps)
    k = int(np.argmax(gd.loss <= 0.5 * L0))
    assert gd.t[k - 1] < gd.time_to_loss(0.5 * L0) <= gd.t[k]
    for bad, err in ((0.0, ValueError), (-1e-3, ValueError), (math.nan, ValueError), ("1e-6", TypeError)):
        with pytest.raises(err, match="level must be a positive"):
            sol.time_to_loss(bad)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_linear_flow_residual_is_the_matrix_exponential_of_the_gram(make_data, rel_err, scaling, space):
    X, y = make_data(n=5, d=4, seed=0)
    net = _linear_net(scaling)
    ts = np.array([0.0, 0.3, 1.0, 2.5])
    sol = gf.simulate(net, X, y, saveat=ts, rtol=RTOL, atol=ATOL, space=space)
    assert sol.status == "success" and sol.config["space"] == space
    np.testing.assert_array_equal(sol.t, ts)
    G, kappa = net.gram(X).numpy(), _kappa(net)
    r0 = net.forward(X).numpy() - y
    np.testing.assert_allclose(sol.residual[0], r0, rtol=0, atol=1e-15)
    ref = np.stack([scipy.linalg.expm(-kappa * G * t) @ r0 for t in ts])
    assert rel_err(sol.residual, ref) < FLOW_TOL
    L_ref = np.array([0.5 * r0 @ scipy.linalg.expm(-2 * kappa * G * t) @ r0 for t in ts])
    assert rel_err(sol.loss, L_ref) < FLOW_TOL
    assert sol.loss[-1] < 0.9 * sol.loss[0]  # the flow really moved


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_linear_flow_features_test_features_and_weights_follow_the_closed_form(make_data, rel_err, scaling,
                                                                                space):
    X, y, Xt, yt = make_data(n=5, d=4, seed=1, n_test=3)
    net = _linear_net(scaling, seed=2)
    ts = np.array([0.0, 0.5, 1.5])
    sol = gf.simulate(net, X, y, saveat=ts, rtol=RTOL, atol=ATOL, space=space, X_test=Xt, y_test=yt,
                      features_at="all", weights_at=ts)
    assert sol.status == "success"
    np.testing.assert_array_equal(sol.feature_t, ts)
    np.testing.assert_array_equal(sol.weight_t, ts)
    G, Gx, kappa = net.gram(X).numpy(), net.gram(Xt, X).numpy(), _kappa(net)
    c, Phi = net.c.numpy(), net.embed(X).numpy()
    H0, Ht0, W0 = net.features(X).numpy(), net.features(Xt).numpy(), net.W0.numpy()
    r0 = net.forward(X).numpy() - y
    for k, t in enumerate(ts):
        v = _psi(G, kappa, t) @ r0  # A(t) = c vᵀ (rank one)
        H = H0 - net.gamma * np.outer(c, G @ v)
        Ht = Ht0 - net.gamma * np.outer(c, Gx @ v)
        W = W0 - net.lr * net.alpha * net.beta * np.outer(c, v) @ Phi
        assert rel_err(sol.H[k], H) < FLOW_TOL
        if t > 0:  # also relative to the displacement H(t) − H(0), the part the flow computes
            assert rel_err(sol.H[k] - H0, H - H0) < FLOW_TOL
        assert rel_err(sol.H_test[k], Ht) < FLOW_TOL
        assert rel_err(sol.W[k], W) < FLOW_TOL
    # features at t1 moved by a non-negligible amount (the check above is not vacuous)
    assert np.abs(sol.H[-1] - H0).max() > 1e-3 * np.abs(H0).max()
    np.testing.assert_allclose(sol.test_output, np.stack([c @ h for h in sol.H_test]) * net.alpha,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("scaling", SCALINGS)
def test_linear_gradient_descent_residual_is_a_matrix_power(make_data, rel_err, scaling, space):
    X, y = make_data(n=5, d=4, seed=3)
    net = _linear_net(scaling, seed=4)
    delta, steps = 0.3, 25
    gd = gf.gradient_descent(net, X, y, step=delta, steps=steps, save_every=1, space=space)
    assert gd.status == "success"
    np.testing.assert_allclose(gd.t, delta * np.arange(steps + 1), rtol=1e-15, atol=0)
    G, kappa = net.gram(X).numpy(), _kappa(net)
    step_matrix = np.eye(5) - delta * kappa * G
    r0 = net.forward(X).numpy() - y
    ref = np.stack([np.linalg.matrix_power(step_matrix, k) @ r0 for k in range(steps + 1)])
    assert rel_err(gd.residual, ref) < 1e-12
    assert gd.loss[-1] < 0.9 * gd.loss[0]


# ---------------------------------------------------------------------------------------------------------
# Weight space ≡ feature space (EQUATIONS.md §4)

AGREEMENT_NETS = {
    "tanh-shallow-ours": dict(d=4, width=10, activation="tanh", seed=2),
    "tanh-P3L-ntk": dict(d=4, width=10, activation="tanh", embedding=gf.RandomFeatures(D=12), scaling="ntk",
                         seed=3),
    "erf-P3L-mf": dict(d=4, width=10, activation="erf", embedding=gf.RandomFeatures(D=7), scaling="mf", seed=3),
    "relu-P3L-ours": dict(d=4, width=10, activation="relu", embedding=gf.RandomFeatures(D=9), seed=5),
}


@pytest.mark.parametrize("name", list(AGREEMENT_NETS))
def test_weight_and_feature_space_flows_agree_on_outputs_features_and_weights(make_data, rel_err, name):
    X, y, Xt, yt = make_data(n=6, d=4, seed=5, n_test=4)
    net = gf.Network(**AGREEMENT_NETS[name])
    ts = [0.0, 0.5, 1.0, 2.0]
    kw = dict(saveat=ts, X_test=Xt, y_test=yt, features_at=ts, weights_at=[1.0, 2.0])
    if net.activation.smooth:
        kw.update(rtol=RTOL, atol=ATOL)
        tol = FLOW_TOL
    else:  # ReLU: same fixed-step scheme in both spaces, which commutes with W ↦ βWΦᵀ (§4)
        kw.update(method="rk4", step=0.02)
        tol = 1e-12
    a = gf.simulate(net, X, y, space="weight", **kw)
    b = gf.simulate(net, X, y, space="feature", **kw)
    assert a.status == b.status == "success"
    assert (a.config["space"], b.config["space"]) == ("weight", "feature")
    for attr in ("residual", "output", "test_output", "H", "H_test", "W", "W_final"):
        assert rel_err(getattr(b, attr), getattr(a, attr)) < tol, attr
    assert rel_err(b.loss, a.loss) < tol
    np.testing.assert_array_equal(a.weight_t, [1.0, 2.0])
    np.testing.assert_array_equal(b.weight_t, [1.0, 2.0])
    # kept features are those of the kept weights: H = β W Φᵀ (consistency inside each solution)
    for sol in (a, b):
        np.testing.assert_allclose(sol.H[-1], net.features(X, torch.from_numpy(sol.W[-1])).numpy(),
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(sol.test_output[-1], net.forward(Xt, torch.from_numpy(sol.W_final)).numpy(),
                                   rtol=1e-12, atol=1e-13)
    assert a.loss[-1] < a.loss[0]


@pytest.mark.parametrize("space", SPACES)
def test_weight_movement_is_the_relative_frobenius_distance_of_the_kept_weights(make_data, space):
    # (a mutation audit: feature space's ‖W − W₀‖_F without its factor D, from the Gram, was caught only by a
    # theory test) an embedding with D ≠ d, where that factor is not the input dimension either
    X, y = make_data(n=6, d=4, seed=9)
    net = gf.Network(d=4, width=12, activation="tanh", embedding=gf.RandomFeatures(D=10), seed=4)
    ts = [0.0, 0.5, 1.0, 3.0]
    sol = gf.simulate(net, X, y, saveat=ts, weights_at=ts, rtol=RTOL, atol=ATOL, space=space)
    assert sol.ok and sol.W.shape == (4, 12, 10)
    np.testing.assert_array_equal(sol.weight_t, sol.t)
    W0 = net.W0.numpy()
    ref = np.linalg.norm(sol.W - W0, axis=(1, 2)) / np.linalg.norm(W0)
    assert ref[0] == 0.0 and ref[-1] > 1e-2  # the weights moved
    np.testing.assert_allclose(sol.weight_movement, ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize("space", SPACES)
def test_the_integral_of_the_loss_decay_is_the_loss_lost(make_data, space):
    # (a mutation audit: weight space's L̇ = −‖Ẇ‖²/ℓ made −‖Ẇ‖²/(2ℓ) was caught only by a theory test) the energy
    # identity integrated: ∫₀ᵗ|L̇| = L₀ − L_t at every saved time, L̇ from each space's own formula
    X, y = make_data(n=6, d=4, seed=10)
    net = gf.Network(d=4, width=12, activation="tanh", embedding=gf.RandomFeatures(D=10), seed=5)
    sol = gf.simulate(net, X, y, t1=5.0, saveat=np.linspace(0.0, 5.0, 11), rtol=RTOL, atol=ATOL, space=space)
    assert sol.ok and sol.loss[-1] < 0.8 * sol.loss[0]  # the loss fell
    assert sol.int_abs_dL[0] == 0.0
    np.testing.assert_allclose(sol.int_abs_dL[1:], sol.loss[0] - sol.loss[1:], rtol=1e-8, atol=0)


@pytest.mark.parametrize("run", ["dop853", "rk4", "gd"])
def test_the_two_feature_state_layouts_give_the_same_run(make_data, rel_err, monkeypatch, run):
    # "nm" ([Hᵀ, Aᵀ], the default) and "mn" ([H, A]): the same flow in another memory order, so every recorded
    # quantity agrees to rounding — including A's (test features, W) and the running integrals
    from gflow.solve import gd as gdm
    from gflow.solve import ode as odem

    X, y, Xt, yt = make_data(n=7, d=4, seed=8, n_test=3)
    net = gf.Network(d=4, width=12, activation="tanh", embedding=gf.RandomFeatures(D=9), seed=4)
    ts = [0.0, 0.7, 2.0]
    kw = dict(X_test=Xt, y_test=yt, space="feature", features_at=ts, weights_at=[2.0])
    if run == "gd":
        mod, fn, kw = gdm, gf.gradient_descent, dict(kw, step=0.1, steps=20, save_every=7)
    else:
        mod, fn = odem, gf.simulate
        kw.update(saveat=ts, method=run, **({"step": 0.05} if run == "rk4" else {"rtol": 1e-10, "atol": 1e-12}))
    sols = {}
    real = mod.make_field
    for layout in ("nm", "mn"):
        monkeypatch.setattr(mod, "make_field", lambda pb, space, per_entry=0.0, layout=None, _l=layout:
                            real(pb, space, per_entry, _l))
        sols[layout] = fn(net, X, y, **kw)
    a, b = sols["nm"], sols["mn"]
    assert a.ok and b.ok
    if run != "dop853":  # (an adaptive run may take a step more or less: its accept test sees the rounding)
        assert a.stats["n_f_evals"] == b.stats["n_f_evals"]
    assert a.loss[-1] < 0.9 * a.loss[0]
    tol = 1e-8 if run == "dop853" else 1e-12  # (dop853: to its tolerance, should the step sequences differ)
    for attr in ("loss", "residual", "test_output", "H", "H_test", "W", "W_final", "int_eta", "int_abs_dL"):
        assert rel_err(getattr(a, attr), getattr(b, attr)) < tol, attr


def test_scratch_buffers_take_the_layout_of_a_column_major_operand():
    from gflow.fields.base import column_major, scratch

    class Owner:
        pass

    o = Owner()
    Hc = torch.zeros(5, 3, dtype=torch.float64).T  # (3, 5), column-major
    buf = scratch(o, "s", (3, 5), Hc)
    assert column_major(buf) and scratch(o, "s", (3, 5), Hc) is buf  # reused
    assert not column_major(scratch(o, "v", (5,), Hc))  # another shape: contiguous
    row = scratch(o, "s", (3, 5), torch.zeros(3, 5, dtype=torch.float64))
    assert row is not buf and row.is_contiguous()  # the layout changed: a new buffer


@pytest.mark.parametrize("activation", ["tanh", "relu", "erf"])
def test_weight_field_column_major_products_give_the_row_major_derivative_to_rounding(make_data, activation):
    from gflow.fields import Problem
    from gflow.fields.base import column_major

    X, y = make_data(n=9, d=5, seed=21)
    net = gf.Network(d=5, width=40, activation=activation, seed=22)
    pb = Problem.from_data(net, X, y)
    col, row = gf.fields.make_field(pb, "weight"), gf.fields.make_field(pb, "weight")
    row.column_major_products = False
    W = net.W0 + 0.3 * torch.randn(net.W0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out_c, out_r = torch.full_like(W, math.nan), torch.full_like(W, math.nan)
    pc, pr = col.rhs_into(W, out_c), row.rhs_into(W, out_r)
    assert column_major(pc.H) and pr.H.is_contiguous()  # the two routes really ran
    scale = float(out_r.abs().max())
    assert float((out_c - out_r).abs().max()) <= 64 * EPS * scale
    torch.testing.assert_close(pc.H, pr.H, rtol=16 * EPS, atol=16 * EPS)
    torch.testing.assert_close(pc.r, pr.r, rtol=64 * EPS, atol=64 * EPS)
    assert float(pc.dL) == pytest.approx(float(pr.dL), rel=1e-13)


def test_column_major_is_mT_contiguous_and_not_contiguous_for_every_stride_pattern():
    from gflow.fields.base import column_major

    base = torch.zeros(6, 7, 5, dtype=torch.float64)
    cases = [base[0], base[0].T, base[:, 0], base[:, 0].T, base[0, :1], base[0, :1].T, base[0, :, :1],
             base[0, :, :1].T, base[0, ::2], base[0, ::2].T, base[0, :1, :1], base[0].T[:1], base[0].T[:, :1],
             base, base.mT, base.permute(1, 0, 2), base[:1].mT, torch.zeros(1, 1, dtype=torch.float64),
             torch.zeros(3, dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64).T,
             torch.zeros(3, 5, dtype=torch.float64).T[::2]]
    for x in cases:
        want = x.dim() >= 2 and not x.is_contiguous() and x.mT.is_contiguous()
        assert column_major(x) == want, (tuple(x.shape), x.stride())


def test_weights_move_only_within_the_row_span_of_the_training_embedding(make_data):
    # §5.3: W(t) − W(0) ∈ rowspan(Φ_tr); here n = 3 < D = 8, so the invariant is non-trivial.
    X, y = make_data(n=3, d=8, seed=6)
    net = gf.Network(d=8, width=6, activation="tanh", seed=7)
    sol = gf.simulate(net, X, y, saveat=[0.0, 2.0], rtol=RTOL, atol=ATOL, space="feature")
    dW = sol.W_final - net.W0.numpy()
    Q, _ = np.linalg.qr(X.T)  # orthonormal basis of rowspan(Φ_tr) = span{x_a}
    outside = dW - (dW @ Q) @ Q.T
    assert np.abs(dW).max() > 1e-2
    assert np.abs(outside).max() < 1e-13


# ---------------------------------------------------------------------------------------------------------
# Gradient descent (eq. (9))


def test_gradient_descent_in_feature_space_reproduces_weight_space_descent(make_data, rel_err):
    X, y, Xt, yt = make_data(n=6, d=4, seed=7, n_test=3)
    net = gf.Network(d=4, width=10, activation="tanh", embedding=gf.RandomFeatures(D=7), seed=2)
    kw = dict(step=0.1, steps=60, save_every=7, X_test=Xt, y_test=yt, features_at=[0.0, 1.0, 6.0],
              weights_at=[2.0, 6.0])
    a = gf.gradient_descent(net, X, y, space="weight", **kw)
    b = gf.gradient_descent(net, X, y, space="feature", **kw)
    assert a.status == b.status == "success"
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_allclose(a.t, 0.1 * np.array([0, 7, 10, 14, 20, 21, 28, 35, 42, 49, 56, 60]), rtol=1e-14)
    for attr in ("residual", "test_output", "H", "H_test", "W", "W_final"):
        assert rel_err(b.__getattribute__(attr), a.__getattribute__(attr)) < 1e-12, attr
    np.testing.assert_array_equal(a.feature_t, [0.0, 1.0, 6.0])
    assert a.loss[-1] < a.loss[0]
    # features_at="all", as in simulate (its saveat): H at every step of the save_every grid and the last one
    c = gf.gradient_descent(net, X, y, **{**kw, "features_at": "all"})
    grid = 0.1 * np.array([0, 7, 14, 21, 28, 35, 42, 49, 56, 60])
    np.testing.assert_allclose(c.feature_t, grid, rtol=1e-14)
    assert c.H.shape == (10, 10, 6) and c.config["solver"]["features_at"] == c.feature_t.tolist()
    assert rel_err(c.H[[0, -1]], a.H[[0, -1]]) < 1e-12


@pytest.mark.parametrize("integrals", [True, False])
@pytest.mark.parametrize("activation", ["erf", "tanh"])  # σ′ from u (erf) / over σ in place (tanh)
def test_gradient_descent_equals_forward_euler_with_the_same_step(make_data, activation, integrals):
    # GD's fused in-place step (r folded into the n×n factor, c σ′ over σ′'s buffer) against the RHS's Euler step
    X, y, Xt, yt = make_data(n=6, d=4, seed=8, n_test=3)
    net = gf.Network(d=4, width=10, activation=activation, seed=3)
    delta = 0.1
    gd = gf.gradient_descent(net, X, y, step=delta, steps=40, save_every=5, X_test=Xt, y_test=yt, integrals=integrals)
    eu = gf.simulate(net, X, y, saveat=gd.t, method="euler", step=delta, X_test=Xt, y_test=yt, integrals=integrals)
    assert gd.status == eu.status == "success"
    np.testing.assert_allclose(eu.t, gd.t, rtol=1e-14)
    np.testing.assert_allclose(eu.residual, gd.residual, rtol=0, atol=1e-13)
    np.testing.assert_allclose(eu.test_output, gd.test_output, rtol=0, atol=1e-13)
    np.testing.assert_allclose(eu.W_final, gd.W_final, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------------------
# Convergence orders against a tight reference

T_ORDER = 2.0


@pytest.fixture(scope="module")
def order_problem():
    """A small tanh problem with a large ĉ (fast, strongly nonlinear flow) and its DOP853 reference at T."""
    rng = np.random.default_rng(9)
    X, y = rng.standard_normal((6, 5)), rng.uniform(-0.5, 0.5, 6)
    net = gf.Network(d=5, width=12, activation="tanh", c_hat=2.0, seed=2)
    ref = gf.simulate(net, X, y, saveat=[0.0, T_ORDER], method="DOP853", rtol=1e-13, atol=1e-15)
    assert ref.status == "success"
    return net, X, y, ref.residual[-1]


def _observed_order(steps, errors) -> float:
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def test_gradient_descent_converges_to_the_flow_at_first_order_in_the_step(order_problem):
    net, X, y, r_ref = order_problem
    deltas = [0.1, 0.05, 0.025, 0.0125]
    errors = []
    for delta in deltas:
        k = int(round(T_ORDER / delta))
        gd = gf.gradient_descent(net, X, y, step=delta, steps=k, save_every=k)
        assert gd.t[-1] == pytest.approx(T_ORDER, rel=1e-14)
        errors.append(np.abs(gd.residual[-1] - r_ref).max())
    assert min(errors) > 1e-8  # far above the reference's error: we measure GD, not the reference
    assert _observed_order(deltas, errors) == pytest.approx(1.0, abs=0.2)
    assert all(e1 > e2 for e1, e2 in zip(errors, errors[1:]))


@pytest.mark.parametrize("method,order,steps", [
    ("euler", 1, [0.1, 0.05, 0.025, 0.0125]),
    ("midpoint", 2, [0.1, 0.05, 0.025, 0.0125]),
    ("rk4", 4, [0.05, 0.025, 0.0125, 0.00625]),  # ĉ = 2: larger steps are pre-asymptotic
])
def test_fixed_step_methods_converge_at_their_nominal_order(order_problem, method, order, steps):
    net, X, y, r_ref = order_problem
    errors = []
    for h in steps:
        sol = gf.simulate(net, X, y, saveat=[0.0, T_ORDER], method=method, step=h)
        assert sol.status == "success"
        assert sol.stats["n_accepted"] == int(round(T_ORDER / h))
        errors.append(np.abs(sol.residual[-1] - r_ref).max())
    assert min(errors) > 1e-11  # the smallest error is still far above roundoff and the reference error
    assert _observed_order(steps, errors) == pytest.approx(order, abs=0.3)


# ---------------------------------------------------------------------------------------------------------
# Loss decay (E3: L̇ = −rᵀMr ≤ 0)

DECAY_CASES = {
    "tanh-ours": dict(activation="tanh", scaling="ours"),
    "tanh-ntk": dict(activation="tanh", scaling="ntk"),
    "tanh-mf-P3L": dict(activation="tanh", scaling="mf", embedding=gf.RandomFeatures(D=16)),
    "erf-ours-P3L": dict(activation="erf", scaling="ours", embedding=gf.RandomFeatures(D=16)),
    "erf-mf": dict(activation="erf", scaling="mf"),
    "relu-ours": dict(activation="relu", scaling="ours"),
    "relu-ntk-P3L": dict(activation="relu", scaling="ntk", embedding=gf.RandomFeatures(D=16)),
    "relu-mf-P3L": dict(activation="relu", scaling="mf", embedding=gf.RandomFeatures(D=16)),
}


@pytest.mark.parametrize("case", list(DECAY_CASES))
def test_loss_is_non_increasing_along_the_flow(make_data, case):
    X, y = make_data(n=8, d=5, seed=10)
    net = gf.Network(d=5, width=16, seed=4, **DECAY_CASES[case])
    ts = np.linspace(0.0, 5.0, 101)
    if net.activation.smooth:
        rtol = 1e-9
        sol = gf.simulate(net, X, y, saveat=ts, rtol=rtol, atol=1e-12)
    else:  # ReLU: adaptive control crawls at the kink; a small fixed step instead (EQUATIONS.md §4)
        rtol = 1e-9  # the same small slack as for the adaptive runs
        sol = gf.simulate(net, X, y, saveat=ts, method="rk4", step=0.01)
    assert sol.status == "success"
    increments = np.diff(sol.loss)
    assert increments.max() <= 10 * rtol * sol.loss[0]
    assert sol.loss[-1] < 0.9 * sol.loss[0]


def test_gradient_descent_with_a_small_step_decreases_the_loss_monotonically(make_data):
    X, y = make_data(n=8, d=5, seed=11)
    net = gf.Network(d=5, width=16, activation="relu", seed=5)
    gd = gf.gradient_descent(net, X, y, step=0.05, steps=100, save_every=1)
    assert np.all(np.diff(gd.loss) <= 0)
    assert gd.loss[-1] < 0.9 * gd.loss[0]


# ---------------------------------------------------------------------------------------------------------
# Solver back-ends


@pytest.fixture(scope="module")
def tiny_problem():
    rng = np.random.default_rng(12)
    X, y = rng.standard_normal((4, 3)), rng.uniform(-0.5, 0.5, 4)
    net = gf.Network(d=3, width=6, activation="tanh", seed=2)
    ts = [0.0, 0.5, 1.0]
    ref = gf.simulate(net, X, y, saveat=ts, method="dopri5", rtol=1e-12, atol=1e-14)
    assert ref.status == "success"
    return net, X, y, ts, ref


@pytest.mark.parametrize("method", ["RK45", "DOP853", "LSODA", "Radau", "BDF"])
@pytest.mark.parametrize("space", SPACES)
def test_scipy_methods_agree_with_dopri5_at_tight_tolerance(tiny_problem, rel_err, method, space):
    net, X, y, ts, ref = tiny_problem
    assert method in SCIPY_METHODS
    sol = gf.simulate(net, X, y, saveat=ts, method=method, rtol=RTOL, atol=ATOL, space=space)
    assert sol.status == "success"
    np.testing.assert_array_equal(sol.t, ts)
    assert rel_err(sol.residual, ref.residual) < 1e3 * RTOL
    assert rel_err(sol.W_final, ref.W_final) < 1e3 * RTOL


# (exprk4 and the switching methods are tested in test_expint.py, filippov — ReLU-type σ only — in test_filippov.py)
@pytest.mark.parametrize("method", [m for m in METHODS if m not in SCIPY_METHODS and m not in EXPINT_METHODS + ("filippov", "sliding")])
def test_every_torchdiffeq_method_runs_to_success_with_plausible_accuracy(tiny_problem, method):
    net, X, y, ts, ref = tiny_problem
    if method in FIXED_STEP_METHODS:
        h = 0.05
        sol = gf.simulate(net, X, y, saveat=ts, method=method, step=h)
        # global error ≲ C h^p with C ≈ 1 here (p capped at 4: the Adams start-up is lower order)
        bound = h ** min(ORDERS[method], 4)
    else:
        assert method in ADAPTIVE_METHODS
        rtol = 1e-6
        sol = gf.simulate(net, X, y, saveat=ts, method=method, rtol=rtol, atol=1e-8)
        bound = 1e2 * rtol
    assert sol.status == "success", sol.message
    assert sol.ok and sol.t[-1] == 1.0
    assert sol.stats["n_f_evals"] > 0
    assert np.abs(sol.residual - ref.residual).max() < bound


def test_fixed_step_methods_require_an_explicit_step(tiny_problem):
    net, X, y, ts, _ = tiny_problem
    with pytest.raises(ValueError, match="step"):
        gf.simulate(net, X, y, saveat=ts, method="rk4")
    with pytest.raises(ValueError, match="adaptive"):
        gf.simulate(net, X, y, saveat=ts, method="dopri5", step=0.1)


# ---------------------------------------------------------------------------------------------------------
# Edge cases


@pytest.mark.parametrize("space", SPACES)
def test_first_saved_point_is_the_initial_state_computed_directly_from_the_network(make_data, space):
    X, y, Xt, yt = make_data(n=5, d=4, seed=13, n_test=3)
    net = gf.Network(d=4, width=8, activation="tanh", embedding=gf.RandomFeatures(D=6), c_hat=0.8, seed=3)
    sol = gf.simulate(net, X, y, t1=1.0, saveat=[0.25, 1.0], rtol=1e-8, atol=1e-10, space=space,
                      X_test=Xt, y_test=yt)
    np.testing.assert_array_equal(sol.t, [0.0, 0.25, 1.0])  # t = 0 is always included
    assert sol.loss[0] == pytest.approx(net.loss(X, y).item(), rel=1e-14)
    np.testing.assert_allclose(sol.output[0], net.forward(X).numpy(), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(sol.residual[0], net.forward(X).numpy() - y, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(sol.test_output[0], net.forward(Xt).numpy(), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(sol.H[0], net.features(X).numpy(), rtol=1e-14, atol=1e-16)
    assert sol.test_loss[0] == pytest.approx(net.loss(Xt, yt).item(), rel=1e-14)
    assert sol.test_error[0] == pytest.approx(2 * net.loss(Xt, yt).item() / 3, rel=1e-14)
    np.testing.assert_allclose(sol.loss, 0.5 * (sol.residual**2).sum(1), rtol=1e-14)


def test_gradient_descent_starts_from_the_initial_loss(make_data):
    X, y = make_data(n=5, d=4, seed=14)
    net = gf.Network(d=4, width=8, activation="tanh", seed=3)
    gd = gf.gradient_descent(net, X, y, step=0.1, steps=3, save_every=1)
    assert gd.t[0] == 0.0
    assert gd.loss[0] == pytest.approx(net.loss(X, y).item(), rel=1e-14)
    np.testing.assert_allclose(gd.H[-1], net.features(X, torch.from_numpy(gd.W_final)).numpy(), rtol=1e-13)


def test_runs_without_test_data_have_no_test_outputs(make_data):
    X, y = make_data(n=5, d=4, seed=15)
    net = gf.Network(d=4, width=8, activation="tanh", seed=3)
    flow = gf.simulate(net, X, y, t1=0.5, rtol=1e-6)
    gd = gf.gradient_descent(net, X, y, step=0.1, steps=5, save_every=1)
    for sol in (flow, gd):
        assert sol.status == "success"
        assert sol.X_test is None and sol.y_test is None
        assert sol.test_output is None and sol.test_loss is None
        assert sol.test_error is None and sol.test_sign_error is None and sol.H_test is None


def test_ntk_flow_starts_from_zero_output_so_the_initial_loss_is_half_the_label_norm(make_data):
    X, y = make_data(n=5, d=4, seed=16)
    net = gf.Network(d=4, width=10, activation="tanh", scaling="ntk", seed=1)
    sol = gf.simulate(net, X, y, t1=0.5, saveat=[0.0, 0.5], rtol=1e-8)
    assert sol.loss[0] == pytest.approx(0.5 * float(y @ y), rel=1e-14)
    assert np.abs(sol.output[0]).max() < 1e-14
    assert np.abs(sol.output[-1]).max() > 1e-3


def test_features_and_weights_are_kept_at_exactly_the_requested_times(make_data):
    X, y = make_data(n=4, d=3, seed=17)
    net = gf.Network(d=3, width=4, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, saveat=np.linspace(0.0, 1.0, 11), features_at=[0.0, 0.3, 1.0],
                      weights_at=[0.5, 1.0], rtol=1e-8)
    np.testing.assert_allclose(sol.feature_t, [0.0, 0.3, 1.0], rtol=1e-15)
    np.testing.assert_allclose(sol.weight_t, [0.5, 1.0], rtol=1e-15)
    assert sol.H.shape == (3, 4, 4) and sol.W.shape == (2, 4, 3)
    assert np.array_equal(sol.features_at(0.3), sol.H[1])
    np.testing.assert_allclose(sol.H[2], net.features(X, torch.from_numpy(sol.W[1])).numpy(), rtol=1e-12,
                               atol=1e-14)  # H and W kept at t = 1 are the same state


def test_a_requested_feature_time_is_kept_once_even_next_to_a_distinct_nearby_output_time(make_data):
    X, y = make_data(n=4, d=3, seed=18)
    net = gf.Network(d=3, width=4, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, saveat=[0.0, 0.5, 0.5 + 1.5e-10, 1.0], features_at=[0.5], weights_at=[0.5],
                      rtol=1e-8)
    assert len(sol.t) == 4  # 0.5 and 0.5 + 1.5e-10 are distinct output times (not merged)
    assert sol.feature_t.tolist() == [0.5]
    assert sol.weight_t.tolist() == [0.5]


def test_activation_benchmark_quick_mode_writes_json_and_former_and_fused_kernels_agree(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_activations.py"))
    mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "activations.json").read_text())
    assert [r["activation"] for r in data["former_vs_fused"]] == ["leaky_relu", "relu", "gelu"]
    for r in data["former_vs_fused"]:
        assert r["rhs_max_rel_diff"] <= 1e-13, r
        assert min(r["kernel_s"], r["rhs_s"], r["gd_step_s"], r["kernel_former_s"]) > 0
    assert set(data["builtin_kernels_s"]) == set(gf.ACTIVATIONS)


def test_layout_benchmark_quick_mode_writes_json_and_both_layouts_end_alike(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_layout.py"))
    mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "layout.json").read_text())
    assert len(data["rhs"]) == 2 and len(data["runs"]) == 2
    for r in data["rhs"]:
        assert r["weight_s"] > 0 and r["feature_mn_s"] > 0 and r["feature_nm_s"] > 0 and r["weight_row_major_s"] > 0
    for r in data["runs"]:
        assert r["final_loss_nm"] == pytest.approx(r["final_loss_mn"], rel=1e-10)


def test_float32_with_n_above_d_keeps_to_weight_space_where_feature_space_loses_w_and_the_test_outputs():
    # (a differential fuzz: A = ∫P grows ∝ t along G's null space and leaked ε₃₂·|A| into W and the test outputs —
    # 7.5 % off one at t = 1e4 — while the loss stayed right; weight space has no A)
    rng = np.random.default_rng(0)
    X, y, Xt = rng.standard_normal((8, 2)), rng.standard_normal(8), rng.standard_normal((3, 2))
    n64 = gf.Network(d=2, width=16, activation="tanh", seed=0)
    n32 = n64.to(dtype="float32")
    kw = dict(step=0.2, steps=5000, save_every=5000, X_test=Xt, y_test=np.zeros(3))  # (t = 1 000)
    ref = gf.gradient_descent(n64, X, y, space="weight", **kw).test_output[-1]
    auto = gf.gradient_descent(n32, X, y, **kw)  # (space="auto": weight space here)
    np.testing.assert_allclose(auto.test_output[-1], ref, rtol=1e-4)
    with pytest.warns(gf.GFlowWarning, match=r"float32 feature space with n = 8 > D = 2: W and the test outputs"):
        lossy = gf.gradient_descent(n32, X, y, space="feature", **kw)
    # the precondition: feature space is lossy indeed, 100× weight space's error (measured 1.8e-4 here at t = 1 000,
    # 3 500×; 1.6e-4 at t = 2 000, where the test ran before)
    assert np.max(np.abs(lossy.test_output[-1] - ref)) > 100 * np.max(np.abs(auto.test_output[-1] - ref))
    from gflow.fields import Problem
    from gflow.solve.expint import auto_method

    method, why = auto_method(Problem.from_data(n32, X, y), 2000.0, 1e-6)  # stiff here, but no exprk4
    assert method == "dop853" and "float32 with n = 8 > D = 2" in why
    assert auto_method(Problem.from_data(n64, X, y), 2000.0, 1e-6)[0] == "dop853+exprk4"  # (float64: it does)
    with pytest.warns(gf.GFlowWarning, match=r"float32 feature space"):
        gf.simulate(n32, X, y, t1=1.0, method="exprk4")


def test_the_float32_feature_space_warning_advises_what_the_method_allows():
    # (a review: a default ReLU run — filippov, feature space only — and exprk4 were told to use space='weight',
    # which they refuse; a float32 feature-space batch had no warning at all)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 2)), rng.standard_normal(8)
    relu = gf.Network(d=2, width=16, activation="relu", seed=0, dtype="float32")
    with pytest.warns(gf.GFlowWarning, match=r"use dtype float64 \(method 'filippov' runs in feature space only\)"):
        gf.simulate(relu, X, y, t1=0.2)
    with pytest.warns(gf.GFlowWarning, match=r"use dtype float64 \(method 'exprk4' runs in feature space only\)"):
        gf.simulate(gf.Network(d=2, width=16, seed=0, dtype="float32"), X, y, t1=0.2, method="exprk4")
    nets = gf.networks([0, 1], d=2, width=16, dtype="float32")
    with pytest.warns(gf.GFlowWarning, match=r"gflow.simulate_batch: float32 feature space .* use space='weight'"):
        gf.simulate_batch(nets, X, y, t1=0.2, space="feature")
    with pytest.warns(gf.GFlowWarning, match=r"gflow.gradient_descent_batch: float32 feature space"):
        gf.gradient_descent_batch(nets, X, y, step=0.1, steps=2, space="feature")


@pytest.mark.parametrize("batch", [False, True])
def test_torchdiffeq_holds_one_chunk_of_output_states_at_a_time_and_chunks_by_memory(make_data, monkeypatch, batch):
    # (an audit) odeint returns a chunk's states at once, and the next chunk started from a view of its last one
    # (which the recorder kept too): the whole chunk stayed alive through the next call — 2 × 79 states of 8.4 MB at
    # m = D = 1 024 with 5 001 output times.  Chunks are also capped at _CHUNK_BYTES of states.
    import weakref

    import torchdiffeq

    from gflow.solve import ode

    X, y = make_data(n=6, d=4, seed=0)
    nets = [gf.Network(d=4, width=16, activation="tanh", seed=s) for s in (0, 1)]
    returned, alive, rows, state_bytes = [], [], [], []
    real = torchdiffeq.odeint

    def odeint(func, y0, t, **k):
        alive.append(sum(r() is not None for r in returned))  # earlier chunks still held (no cycles: refcounts)
        state_bytes.append(y0.numel() * y0.element_size())
        ys = real(func, y0, t, **k)
        returned.append(weakref.ref(ys))
        rows.append(ys.shape[0])
        return ys

    monkeypatch.setattr(torchdiffeq, "odeint", odeint)
    kw = dict(saveat=np.linspace(0.0, 1.0, 201), method="torchdiffeq.dopri5", rtol=1e-8, atol=1e-10, space="weight")
    run = (lambda: gf.simulate_batch(nets, X, y, **kw)) if batch else (lambda: [gf.simulate(nets[0], X, y, **kw)])
    first = run()
    assert all(s.ok for s in first)
    assert rows[0] == 5 and len(rows) == 50  # _MAX_CHUNKS: 200 output times in chunks of 4 (and the start)
    assert alive == [0] * 50
    monkeypatch.setattr(ode, "_CHUNK_BYTES", 3 * state_bytes[0])  # ≤ 2 output states a chunk (3 with its start)
    returned.clear(), alive.clear(), rows.clear()
    capped = run()
    assert max(rows) == 3 and len(rows) == 100 and alive == [0] * 100
    for a, b in zip(first, capped):
        assert b.ok and np.abs(b.loss / a.loss - 1).max() < 1e-6


@pytest.mark.parametrize("activation,method", [("linear", "dop853"), ("linear", "dopri5"), ("linear", "exprk4"),
                                               ("linear", "dop853+exprk4"), ("relu", "filippov"),
                                               ("linear", "RK45")])
def test_a_flow_on_a_fast_time_scale_is_the_same_flow_in_scaled_time(activation, method):
    # X × s, y × s scale G by s², so (homogeneous σ: linear, ReLU) the flow to t1 = 1/s² is the flow of X, y to t = 1
    # in time t·s² with the loss × s².  The step thresholds took 1e-12 as the smallest meaningful step whatever t1:
    # at s = 1e6 exprk4, dopri5 and filippov stopped at t = 0 ("step_size_collapse"), filippov with the default
    # output grid after a short step onto an output time (dop853 and the switching method: regression guards);
    # scipy's RK45 saved the state at a step's end for every output time within 1e-14 of it (2 output times apart at
    # t1 = 1e-12 on the default grid): the loss 1.4e-2 off
    rng = np.random.default_rng(0)
    X, y, s = rng.standard_normal((5, 4)), rng.standard_normal(5), 1e6
    net = gf.Network(4, 16, activation=activation, seed=0)
    saveat = np.linspace(0.0, 1.0, 9)[1:]
    ref = gf.simulate(net, X, y, saveat=saveat, method=method, rtol=1e-9)
    for grid in (saveat / s**2, None):  # (None: the default output grid)
        fast = gf.simulate(net, X * s, y * s, t1=1.0 / s**2, saveat=grid, method=method, rtol=1e-9)
        assert fast.status == "success", fast.message
        if grid is not None:
            np.testing.assert_allclose(fast.t * s**2, ref.t, rtol=1e-14)
            np.testing.assert_allclose(fast.loss / s**2, ref.loss, rtol=1e-7)
        else:
            np.testing.assert_allclose(fast.loss[-1] / s**2, ref.loss[-1], rtol=1e-7)
