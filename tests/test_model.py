"""Correctness of the model layer: activations, embeddings, scalings (Table 1), and the closed-form gradient.

References are EQUATIONS.md §1 (models), §2 (scalings), §3 (gradient (8)/(10)), §4 (feature field (E4)) and
§6 (activation constants).  All checks are in float64 with tolerances a few ulps above rounding.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch

import gflow as gf
from gflow.model.activations import numeric_lipschitz

EPS = float(torch.finfo(torch.float64).eps)

# Built-ins plus a non-default leaky-ReLU slope, so the slope parameter is exercised too.
ACTIVATION_SPECS = list(gf.ACTIVATIONS) + [{"name": "leaky_relu", "slope": 0.2}]


def _act_id(spec) -> str:
    return spec if isinstance(spec, str) else f"{spec['name']}({spec['slope']})"


def _bounded(act: gf.Activation) -> bool:
    lo, hi = act.interval
    return math.isfinite(lo) and math.isfinite(hi)


def _require_native():
    """Skip where no C compiler is found (the kernels cannot be built: gflow takes torch's route there); fail where
    one is found but the build fails."""
    from gflow.model import _native

    if _native._compiler() is None:
        pytest.skip("no C compiler: gflow's native kernels cannot be built here")
    assert _native.available(), _native.status()


def _fused_tanh(net) -> bool:
    """Whether the fields' σ/r/σ′/P pass runs through the native kernel for ``net``."""
    from gflow.model.activations import float64_tanh_route

    return (net.activation.name == "tanh" and net.dtype == torch.float64 and net.device.type == "cpu"
            and float64_tanh_route() == "native")


def _points_away_from_kink(seed: int, n: int = 400, lo: float = -4.0, hi: float = 4.0) -> torch.Tensor:
    """Random float64 points in [lo, hi] at distance ≥ 1e-3 from the kink u = 0."""
    g = torch.Generator().manual_seed(seed)
    u = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.where(u.abs() < 1e-3, u.sign() * 1e-3 + u, u)


# ---------------------------------------------------------------------------------------------------------
# Activations (EQUATIONS.md §6)


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_dsigma_equals_the_autograd_derivative_of_sigma_at_non_kink_points(spec):
    act = gf.get_activation(spec)
    u = _points_away_from_kink(seed=11).requires_grad_(True)
    (grad,) = torch.autograd.grad(act.sigma(u).sum(), u)
    ds = act.dsigma(u.detach())
    torch.testing.assert_close(ds, grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_fused_sigma_and_dsigma_equal_the_separate_functions(spec):
    act = gf.get_activation(spec)
    u = _points_away_from_kink(seed=12)
    s, ds = act.both(u)
    torch.testing.assert_close(s, act.sigma(u), rtol=4 * EPS, atol=4 * EPS)
    torch.testing.assert_close(ds, act.dsigma(u), rtol=4 * EPS, atol=4 * EPS)


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_in_place_fused_sigma_and_dsigma_equal_the_separate_functions(spec):
    act = gf.get_activation(spec)
    u = _points_away_from_kink(seed=12)
    s, ds = torch.full_like(u, float("nan")), torch.full_like(u, float("nan"))
    act.both_into(u, s, ds)
    torch.testing.assert_close(s, act.sigma(u), rtol=4 * EPS, atol=4 * EPS)
    torch.testing.assert_close(ds, act.dsigma(u), rtol=4 * EPS, atol=4 * EPS)


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_sigma_then_dsigma_hands_sigma_over_then_returns_dsigma(spec):
    # the vector fields' hot path: σ into s, read it (r = α σᵀc − y), then σ′ — in place over σ where σ′ is a
    # function of σ (tanh, sigmoid), through both_into otherwise
    act = gf.get_activation(spec)
    u = _points_away_from_kink(seed=13)
    s, ds = torch.full_like(u, float("nan")), torch.full_like(u, float("nan"))
    seen = []
    out = act.sigma_then_dsigma_into(u, s, ds, lambda sig: seen.append(sig.clone()))
    torch.testing.assert_close(seen[0], act.sigma(u), rtol=4 * EPS, atol=4 * EPS)
    torch.testing.assert_close(out, act.dsigma(u), rtol=4 * EPS, atol=4 * EPS)
    assert (out is s) == act.in_place_dsigma and (out is ds) != act.in_place_dsigma
    if act.in_place_dsigma:
        assert torch.isnan(ds).all()  # the second buffer is not needed, not touched
        assert act.sigma_then_dsigma_into(u, s, None, lambda sig: None) is s
    else:
        with pytest.raises(ValueError, match="ds must be a buffer"):
            act.sigma_then_dsigma_into(u, s, None, lambda sig: None)


def test_tanh_sigmoid_and_the_relus_form_dsigma_in_place():
    # σ′ is a function of σ for these (for the ReLUs through sign(σ) = sign(u)); not for erf
    for name in ("tanh", "sigmoid", "relu", "leaky_relu"):
        assert gf.get_activation(name).in_place_dsigma, name
    assert not gf.get_activation("erf").in_place_dsigma


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_declared_K_is_the_infimum_of_abs_dsigma_over_the_active_interval(spec):
    act = gf.get_activation(spec)
    lo, hi = act.interval
    if _bounded(act):
        if act.smooth:
            # σ' is continuous: inf over the open interval = min over the closed one (grid hits the ends).
            u = torch.linspace(lo, hi, 100_001, dtype=torch.float64)
        else:
            # kinked σ (ReLU on (0, 1)): σ'(I_l) = σ'(0) := 0 lies outside the open interval.
            u = torch.linspace(lo, hi, 100_001, dtype=torch.float64)[1:-1]
    else:
        # Unbounded active interval (linear, leaky ReLU: I = ℝ): the global inf, off the measure-zero kink.
        u = _points_away_from_kink(seed=13, n=200_001, lo=-50.0, hi=50.0)
    K_grid = float(act.dsigma(u).abs().min())
    assert act.K > 0
    assert act.K == pytest.approx(K_grid, rel=1e-12, abs=1e-14)


def test_numeric_K_is_memoized_per_dsigma_and_interval_and_accepts_unhashable_callables():
    from gflow.model.activations import _grid_inf_abs, _numeric_inf_abs

    calls = []

    def ds(u):
        calls.append(1)
        return 2.0 + u * u

    assert _numeric_inf_abs(ds, -1.0, 3.0) == pytest.approx(2.0, abs=1e-9)
    assert _numeric_inf_abs(ds, -1.0, 3.0) == _grid_inf_abs(ds, -1.0, 3.0)  # the grid itself ran once more
    assert len(calls) == 2  # the second _numeric_inf_abs call came from the memo
    assert _numeric_inf_abs(ds, 1.0, 3.0) == pytest.approx(3.0, rel=1e-4)  # another interval (open: the grid skips 1)

    class Unhashable:  # defines __eq__ only, so hash() raises: computed without the memo
        def __eq__(self, other):
            return isinstance(other, Unhashable)

        def __call__(self, u):
            return 0.5 + 0.0 * u

    assert _numeric_inf_abs(Unhashable(), -1.0, 1.0) == 0.5


@pytest.mark.parametrize("spec", ACTIVATION_SPECS, ids=_act_id)
def test_declared_lipschitz_constant_is_the_sup_of_abs_dsigma(spec):
    act = gf.get_activation(spec)
    # softplus approaches its sup 1 only as u → ∞ (grid on [-20, 20] gives 1 − 2e-9).
    assert act.lipschitz == pytest.approx(numeric_lipschitz(act), rel=1e-8)


@pytest.mark.parametrize("spec", ["relu", "leaky_relu", {"name": "leaky_relu", "slope": 0.2}], ids=_act_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kinked_activations_have_zero_derivative_at_the_kink(spec, dtype):
    act = gf.get_activation(spec)
    zero = torch.zeros(5, dtype=dtype)
    assert torch.equal(act.dsigma(zero), zero)
    assert torch.equal(act.both(zero)[1], zero)
    # and the derivative is the one-sided slope right next to it
    tiny = torch.tensor([1e-30, -1e-30], dtype=dtype)
    slope = dict(act.params).get("slope", 0.0)
    assert act.dsigma(tiny).tolist() == pytest.approx([1.0, slope])


def test_leaky_relu_slope_parameter_sets_K_and_negative_slope():
    act = gf.get_activation("leaky_relu", slope=0.3)
    assert act.K == pytest.approx(0.3)
    u = torch.tensor([-2.0, 3.0], dtype=torch.float64)
    assert act.sigma(u).tolist() == pytest.approx([-0.6, 3.0])


def test_user_defined_activation_drives_a_flow_matching_its_linear_closed_form(make_data, rel_err):
    # σ(u) = s·u is user-defined; its flow is r(t) = exp(−s²ĉ²G t) r(0) (EQUATIONS.md §5.1, σ = s·u).
    s, c_hat = 1.5, 0.7
    act = gf.Activation("scaled_linear", lambda u: s * u, lambda u: torch.full_like(u, s), lipschitz=s,
                        interval=(-1.0, 1.0))
    assert act.K == pytest.approx(s)  # computed numerically since K was not given
    X, y = make_data(n=5, d=6, seed=0)
    net = gf.Network(d=6, width=8, activation=act, c_hat=c_hat, seed=3)
    ts = np.array([0.0, 0.4, 1.2])
    sol = gf.simulate(net, X, y, saveat=ts, rtol=1e-10, atol=1e-12)
    assert sol.status == "success"
    G = net.gram(X).numpy()
    r0 = sol.residual[0]
    ref = np.stack([scipy.linalg.expm(-(s * c_hat) ** 2 * G * t) @ r0 for t in ts])
    assert rel_err(sol.residual, ref) < 1e-8


def test_user_defined_tanh_gives_the_same_flow_as_the_built_in_tanh(make_data, rel_err):
    mytanh = gf.Activation("mytanh", torch.tanh, lambda u: 1.0 / torch.cosh(u) ** 2, lipschitz=1.0,
                           interval=(-1.0, 1.0))
    X, y = make_data(n=5, d=4, seed=1)
    ts = [0.0, 0.5, 1.0]
    a = gf.simulate(gf.Network(d=4, width=8, activation=mytanh, seed=2), X, y, saveat=ts, rtol=1e-10,
                    atol=1e-12)
    b = gf.simulate(gf.Network(d=4, width=8, activation="tanh", seed=2), X, y, saveat=ts, rtol=1e-10,
                    atol=1e-12)
    assert a.status == b.status == "success"
    assert rel_err(a.residual, b.residual) < 1e-8
    assert rel_err(a.H, b.H) < 1e-8


# ---------------------------------------------------------------------------------------------------------
# Embeddings (EQUATIONS.md §1)


def test_identity_embedding_has_D_equal_d_and_returns_the_inputs(make_data):
    X, _ = make_data(n=6, d=5, seed=0)
    net = gf.Network(d=5, width=4, embedding="identity", seed=0)
    assert net.D == 5 and net.W0.shape == (4, 5)
    assert np.array_equal(net.embed(X).numpy(), X)
    np.testing.assert_allclose(net.gram(X).numpy(), X @ X.T / 5, rtol=1e-14, atol=1e-15)


def test_quadratic_embedding_rows_are_vec_of_x_x_transpose(make_data):
    X, _ = make_data(n=4, d=3, seed=1)
    net = gf.Network(d=3, width=4, embedding="quadratic", seed=0)
    assert net.D == 9
    Phi = net.embed(X).numpy()
    for a in range(4):
        np.testing.assert_array_equal(Phi[a], np.outer(X[a], X[a]).reshape(-1))


def test_quadratic_gram_is_the_hadamard_square_of_the_linear_gram(make_data):
    X, _ = make_data(n=7, d=4, seed=2)
    net = gf.Network(d=4, width=4, embedding="quadratic", seed=0)
    G_lin = X @ X.T / 4
    np.testing.assert_allclose(net.gram(X).numpy(), G_lin * G_lin, rtol=1e-13, atol=1e-14)


def _rf_Z(D: int, d: int, seed: int) -> np.ndarray:
    """The z_j drawn by RandomFeatures(D, seed): with σ = identity, Φ(√d e_k)_j = z_jk, i.e. Z = Φ(√d I)ᵀ."""
    probe = gf.Network(d=d, width=2, embedding=gf.RandomFeatures(D=D, activation="linear", seed=seed))
    return probe.embed(math.sqrt(d) * np.eye(d)).numpy().T


@pytest.mark.parametrize("rf_activation", [None, "relu"])
def test_random_features_equal_sigma_of_X_Z_transpose_over_sqrt_d(make_data, rf_activation):
    D, d, seed = 7, 5, 21
    X, _ = make_data(n=6, d=d, seed=3)
    Z = _rf_Z(D, d, seed)
    assert Z.shape == (D, d)
    net = gf.Network(d=d, width=4, activation="tanh",
                     embedding=gf.RandomFeatures(D=D, activation=rf_activation, seed=seed), seed=0)
    sigma = np.tanh if rf_activation is None else (lambda v: np.maximum(v, 0.0))
    assert net.D == D
    np.testing.assert_allclose(net.embed(X).numpy(), sigma(X @ Z.T / math.sqrt(d)), rtol=1e-13, atol=1e-15)


def test_random_feature_directions_are_standard_gaussian():
    Z = _rf_Z(D=400, d=10, seed=5)  # 4000 draws
    assert abs(Z.mean()) < 0.1  # sd of the mean ≈ 0.016
    assert Z.var() == pytest.approx(1.0, abs=0.1)  # sd of the variance ≈ 0.022


def test_random_features_are_deterministic_per_seed_and_change_with_it(make_data):
    X, _ = make_data(n=5, d=4, seed=4)

    def phi(rf_seed, net_seed=0):
        return gf.Network(d=4, width=2, embedding=gf.RandomFeatures(D=6, seed=rf_seed), seed=net_seed).embed(X)

    assert torch.equal(phi(3), phi(3))
    assert torch.equal(phi(3, net_seed=0), phi(3, net_seed=9))  # an explicit RF seed overrides the net seed
    assert not torch.allclose(phi(3), phi(4))
    # without an explicit seed, the draw follows the network seed
    assert torch.equal(phi(None, net_seed=1), phi(None, net_seed=1))
    assert not torch.allclose(phi(None, net_seed=1), phi(None, net_seed=2))


@pytest.mark.parametrize("seed", [7, None])
def test_deep_random_features_of_depth_three_equal_random_features(make_data, seed):
    X, _ = make_data(n=6, d=4, seed=5)
    a = gf.Network(d=4, width=2, activation="erf", embedding=gf.RandomFeatures(D=9, seed=seed), seed=1)
    b = gf.Network(d=4, width=2, activation="erf", embedding=gf.DeepRandomFeatures(D=9, depth=3, seed=seed),
                   seed=1)
    assert torch.equal(a.embed(X), b.embed(X))


def test_deep_random_features_of_depth_four_follow_the_appendix_H_recursion(make_data):
    X, _ = make_data(n=6, d=4, seed=6)
    D, d = 8, 4
    net = gf.Network(d=d, width=2, activation="tanh", embedding=gf.DeepRandomFeatures(D=D, depth=4, seed=3))
    Z, W1 = (p.numpy() for p in net._phi.params)  # the drawn fixed layers
    assert Z.shape == (D, d) and W1.shape == (D, D)
    assert np.array_equal(Z, _rf_Z(D, d, 3))  # the first layer is the RandomFeatures draw
    h1 = X @ Z.T / math.sqrt(d)
    h2 = np.tanh(h1) @ W1.T / math.sqrt(D)
    np.testing.assert_allclose(net.embed(X).numpy(), np.tanh(h2), rtol=1e-13, atol=1e-15)


def test_callable_embedding_infers_D_and_is_used_for_features(make_data):
    X, _ = make_data(n=5, d=3, seed=7)

    def fn(T):
        return torch.cat([T, T**2, torch.ones(T.shape[0], 1, dtype=T.dtype)], dim=1)

    net = gf.Network(d=3, width=6, activation="tanh", embedding=fn, seed=2)
    assert net.D == 7 and net.W0.shape == (6, 7)
    Phi = np.concatenate([X, X**2, np.ones((5, 1))], axis=1)
    np.testing.assert_allclose(net.embed(X).numpy(), Phi, rtol=0, atol=0)
    np.testing.assert_allclose(net.gram(X).numpy(), Phi @ Phi.T / 7, rtol=1e-14)
    f = (1 / 6) * np.tanh(net.W0.numpy() @ Phi.T / math.sqrt(7)).T @ net.c.numpy()
    np.testing.assert_allclose(net.forward(X).numpy(), f, rtol=1e-13, atol=1e-16)


def test_callable_embedding_trains_identically_in_weight_and_feature_space(make_data, rel_err):
    X, y = make_data(n=5, d=3, seed=8)
    net = gf.Network(d=3, width=6, activation="tanh", embedding=lambda T: torch.cat([T, T**2], 1), seed=2)
    kw = dict(saveat=[0.0, 1.0], rtol=1e-10, atol=1e-12)
    a = gf.simulate(net, X, y, space="weight", **kw)
    b = gf.simulate(net, X, y, space="feature", **kw)
    assert a.status == b.status == "success"
    assert a.loss[-1] < a.loss[0]
    assert rel_err(b.residual, a.residual) < 1e-8


# ---------------------------------------------------------------------------------------------------------
# Scalings (Table 1, EQUATIONS.md §2) and initialisation (§1.6, §2.4)

_M, _D = 12, 9
TABLE_1 = {
    #        α               β          ℓ          γ = ℓαβ²D
    "ours": (1 / _M, 1 / math.sqrt(_D), _M, 1.0),
    "ntk": (1 / math.sqrt(_M), 1 / math.sqrt(_D), 1.0, 1 / math.sqrt(_M)),
    "mf": (1 / _M, 1 / _D, _M**2, _M / _D),
}


@pytest.mark.parametrize("scaling", list(TABLE_1))
def test_scaling_coefficients_match_table_1(scaling):
    net = gf.Network(d=3, width=_M, embedding=gf.RandomFeatures(D=_D), scaling=scaling, seed=0)
    alpha, beta, lr, gamma = TABLE_1[scaling]
    assert (net.m, net.D) == (_M, _D)
    assert net.alpha == pytest.approx(alpha, rel=1e-15)
    assert net.beta == pytest.approx(beta, rel=1e-15)
    assert net.lr == pytest.approx(lr, rel=1e-15)
    assert net.gamma == pytest.approx(gamma, rel=1e-14)
    assert net.gamma == pytest.approx(net.lr * net.alpha * net.beta**2 * net.D, rel=1e-14)


@pytest.mark.parametrize("scaling", list(TABLE_1))
def test_forward_evaluates_alpha_sum_c_sigma_of_beta_W_phi(make_data, scaling):
    X, y = make_data(n=5, d=3, seed=9)
    net = gf.Network(d=3, width=_M, activation="erf", embedding=gf.RandomFeatures(D=_D), scaling=scaling,
                     c_hat=0.7, seed=4)
    alpha, beta, _, _ = TABLE_1[scaling]
    Phi, W, c = net.embed(X).numpy(), net.W0.numpy(), net.c.numpy()
    H = beta * W @ Phi.T
    np.testing.assert_allclose(net.features(X).numpy(), H, rtol=1e-13, atol=1e-15)
    f = alpha * torch.erf(torch.from_numpy(H)).numpy().T @ c
    np.testing.assert_allclose(net.forward(X).numpy(), f, rtol=1e-13, atol=1e-16)
    assert net.loss(X, y).item() == pytest.approx(0.5 * np.sum((f - y) ** 2), rel=1e-13)


def test_ntk_symmetrised_initialisation_pairs_neurons_exactly():
    net = gf.Network(d=4, width=10, activation="tanh", scaling="ntk", c_hat=0.7, seed=5)
    c, W = net.c, net.W0
    assert torch.equal(c[5:], -c[:5])
    assert torch.equal(W[5:], W[:5])
    X = np.random.default_rng(0).standard_normal((9, 4))
    H = net.features(X)
    assert torch.equal(H[5:], H[:5])  # h⁰_{i+m/2} ≡ h⁰_i


@pytest.mark.parametrize("embedding", ["identity", "quadratic", gf.RandomFeatures(D=6)], ids=["id", "quad", "rf"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_ntk_symmetrised_network_outputs_zero_at_initialisation_on_arbitrary_inputs(embedding, activation):
    X = 5.0 * np.random.default_rng(1).standard_normal((11, 4))  # arbitrary, not training data
    net = gf.Network(d=4, width=10, activation=activation, embedding=embedding, scaling="ntk", seed=6)
    f0 = net.forward(X)
    # Each output is a sum of ±pairs that cancel exactly in exact arithmetic; the only error allowed is
    # the rounding of the length-m sum, bounded by m·eps·α Σ_i |c_i σ(h_i)|.
    terms = net.alpha * (net.c[:, None] * net.activation.sigma(net.features(X))).abs().sum(0)
    assert bool((f0.abs() <= net.m * EPS * terms).all())
    assert float(terms.max()) > 0.1  # the cancelling terms are not themselves zero
    # With a single pair the two features are bitwise equal; σ of equal inputs may still differ by an ulp,
    # because torch's vectorised elementwise kernels round differently in their SIMD body and scalar tail
    # (seen for softplus on an AVX-512 Xeon), so each output is at most one rounding of each σ away from 0.
    net2 = gf.Network(d=4, width=2, activation=activation, embedding=embedding, scaling="ntk", seed=6)
    H2 = net2.features(X)
    assert torch.equal(H2[0], H2[1])
    terms2 = net2.alpha * (net2.c[:, None] * net2.activation.sigma(H2)).abs().sum(0)
    assert bool((net2.forward(X).abs() <= 2 * EPS * terms2).all())


@pytest.mark.parametrize("scaling", ["ours", "mf"])
def test_non_ntk_scalings_are_not_symmetrised(scaling):
    net = gf.Network(d=4, width=10, scaling=scaling, seed=5)
    assert not torch.equal(net.W0[5:], net.W0[:5])
    assert net.forward(np.ones((1, 4))).abs().item() > 1e-6


def test_odd_width_is_rejected_for_the_symmetrised_ntk_scaling():
    with pytest.raises(ValueError, match="even"):
        gf.Network(d=3, width=7, scaling="ntk")


@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
def test_initial_c_is_rademacher_times_c_hat_and_W0_is_standard_gaussian(scaling):
    net = gf.Network(d=10, width=400, scaling=scaling, c_hat=0.7, seed=8)
    c, W = net.c.numpy(), net.W0.numpy()
    assert set(np.unique(c).tolist()) == {-0.7, 0.7}
    half = W if scaling != "ntk" else W[:200]  # the independent draws
    assert abs(half.mean()) < 0.05 and half.var() == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
def test_same_seed_gives_identical_parameters_and_different_seeds_differ(scaling):
    def make(seed):
        return gf.Network(d=3, width=8, embedding=gf.RandomFeatures(D=5), scaling=scaling, seed=seed)

    a, b, other = make(4), make(4), make(5)
    assert torch.equal(a.c, b.c) and torch.equal(a.W0, b.W0)
    assert not torch.equal(a.W0, other.W0)
    assert not torch.equal(a.c, other.c)  # P(equal) = 2^-8 (ours, mf) / 2^-4 (ntk) and fixed by the seeds


def test_converting_a_network_to_float32_casts_the_same_parameters(make_data):
    X, _ = make_data(n=4, d=3, seed=10)
    net = gf.Network(d=3, width=6, activation="tanh", embedding=gf.RandomFeatures(D=5), seed=3)
    n32 = net.to(dtype=torch.float32)
    assert n32.dtype == torch.float32 and n32.c.dtype == n32.W0.dtype == torch.float32
    assert torch.equal(n32.c, net.c.to(torch.float32))
    assert torch.equal(n32.W0, net.W0.to(torch.float32))
    X32 = torch.as_tensor(X, dtype=torch.float32)
    torch.testing.assert_close(n32.embed(X32), net.embed(X).to(torch.float32), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(n32.forward(X32).double(), net.forward(X), rtol=1e-5, atol=1e-6)
    # and back: a network drawn from its seed is drawn again — the seed's float64 network, which its files (seed
    # only) rebuild; copying carried float32's rounding into W0 (5.8e-8) and gf.rerun differed by 2.8e-8 in the loss
    back = n32.to(dtype=torch.float64)
    assert torch.equal(back.W0, net.W0) and torch.equal(back.c, net.c) and not back.explicit_params
    assert torch.equal(gf.Network.from_spec(back.spec()).W0, back.W0)
    # explicit parameters are copied (float32-rounded) and stay explicit, so that a file stores them
    e32 = gf.Network(d=3, width=6, W0=np.full((6, 3), 0.1), dtype="float32", seed=3)
    e64 = e32.to(dtype=torch.float64)
    assert e64.explicit_params and torch.equal(e64.W0, e32.W0.double()) and not torch.equal(e64.W0, e64.W0 * 0 + 0.1)


def test_a_float32_callable_embedding_is_probed_in_the_networks_dtype():
    # (a model audit: D was found by applying the map to a float64 zero input whatever the network's dtype, so a
    # float32 map — a torch module in its default dtype — failed with torch's "expected m1 and m2 to have the same
    # dtype" naming neither the embedding nor the cause)
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh()).requires_grad_(False)
    net = gf.Network(d=3, width=8, embedding=layer, dtype="float32", seed=0)
    assert net.D == 5 and net.embed(np.zeros((2, 3))).dtype == torch.float32
    with pytest.raises(ValueError, match=r"callable embedding .* failed on a probe input of shape \(1, 3\), dtype "
                                         r"torch.float64.*give Callable\(fn, D=...\) to skip the probe"):
        gf.Network(d=3, width=8, embedding=layer, seed=0)


def test_explicit_c_and_W0_replace_the_random_draw():
    c = np.array([1.0, -2.0, 0.5])
    W0 = np.arange(6.0).reshape(3, 2)
    net = gf.Network(d=2, width=3, c=c, W0=W0, seed=0)
    assert np.array_equal(net.c.numpy(), c) and np.array_equal(net.W0.numpy(), W0)
    assert net.explicit_params


# ---------------------------------------------------------------------------------------------------------
# The closed-form gradient (eq. (8)/(10)) and the feature field (E4) against torch.autograd

GRAD_EMBEDDINGS = {
    "identity": "identity",
    "quadratic": "quadratic",
    "rf": gf.RandomFeatures(D=7),
    "deep": gf.DeepRandomFeatures(D=6, depth=4),
}


def _perturbed_W(net: gf.Network, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return net.W0 + 0.5 * torch.randn(net.W0.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("emb", list(GRAD_EMBEDDINGS))
@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "erf", "gelu", "leaky_relu", "sigmoid"])
def test_weight_field_equals_minus_lr_times_autograd_gradient_of_the_loss(make_data, activation, scaling, emb):
    X, y = make_data(n=5, d=3, seed=12)
    net = gf.Network(d=3, width=6, activation=activation, embedding=GRAD_EMBEDDINGS[emb], scaling=scaling,
                     c_hat=0.8, seed=13)
    field = gf.make_field(gf.Problem.from_data(net, X, y), "weight")
    W = _perturbed_W(net, seed=14).requires_grad_(True)
    (dLdW,) = torch.autograd.grad(net.loss(X, y, W), W)
    Wdot = field(0.0, W.detach())
    assert Wdot.shape == (net.m, net.D)
    expected = -net.lr * dLdW
    assert float(expected.abs().max()) > 1e-8  # a non-trivial gradient
    torch.testing.assert_close(Wdot, expected, rtol=1e-12, atol=1e-13 * float(expected.abs().max()))


@pytest.mark.parametrize("emb", list(GRAD_EMBEDDINGS))
@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_feature_field_is_beta_Wdot_phi_transpose_and_accumulates_P(make_data, activation, scaling, emb):
    X, y = make_data(n=5, d=3, seed=15)
    net = gf.Network(d=3, width=6, activation=activation, embedding=GRAD_EMBEDDINGS[emb], scaling=scaling,
                     c_hat=0.8, seed=16)
    pb = gf.Problem.from_data(net, X, y)
    W = _perturbed_W(net, seed=17)
    Wdot = gf.make_field(pb, "weight")(0.0, W)
    Phi = net.embed(X)
    Hdot = net.beta * Wdot @ Phi.T
    # Ȧ = P, P_ia = c_i σ'(H_ia) r_a with r = f − y
    r = net.forward(X, W) - torch.as_tensor(y)
    P = net.c[:, None] * net.activation.dsigma(net.features(X, W)) * r[None, :]
    with pytest.raises(ValueError, match=r"unknown layout 'mn '; expected one of \['mn', 'nm'\]"):
        gf.make_field(pb, "feature", layout="mn ")
    for layout, shape in (("nm", (2, 5, net.m)), ("mn", (2, net.m, 5))):  # [Hᵀ, Aᵀ] and [H, A]
        ffield = gf.make_field(pb, "feature", layout=layout)
        state = ffield.initial_state()
        assert state.shape == shape and state.is_contiguous()
        H0, A0 = ffield.split(state)
        torch.testing.assert_close(H0, net.features(X), rtol=0, atol=0)
        assert torch.equal(A0, torch.zeros_like(A0))  # A(0) = 0
        state = ffield.join(net.features(X, W), torch.full_like(H0, 0.3))  # A does not enter the right-hand side
        assert state.shape == shape and state.is_contiguous()
        Hd, Pd = ffield.split(ffield(0.0, state))
        torch.testing.assert_close(Hd, Hdot, rtol=1e-12, atol=1e-13 * float(Hdot.abs().max()))
        torch.testing.assert_close(Pd, P, rtol=1e-13, atol=1e-15)


def test_ode_solvers_count_the_state_they_stream_when_picking_the_space(make_data):
    # gradient descent: flops only (feature iff n < 2D); an ODE solver also streams its state (2mn entries in
    # feature space, mD in weight space) about a dozen times per evaluation, RK_FLOPS_PER_STATE_ENTRY flops each
    from gflow.fields import RK_FLOPS_PER_STATE_ENTRY, auto_space

    k = RK_FLOPS_PER_STATE_ENTRY
    for n, expected in ((20, "weight"), (30, "weight"), (8, "feature")):
        X, y = make_data(n=n, d=20, seed=19)
        net = gf.Network(d=20, width=64, seed=0)
        pb = gf.Problem.from_data(net, X, y)
        assert auto_space(pb) == "feature"  # n < 2D = 40
        m, D = 64, 20
        by_formula = "feature" if 2 * m * n * n + k * 2 * m * n < 4 * m * n * D + k * m * D else "weight"
        assert auto_space(pb, k) == by_formula == expected, n
        sol = gf.simulate(net, X, y, t1=0.5, saveat=[0.0, 0.5], method="dop853", integrals=False)
        gd = gf.gradient_descent(net, X, y, step=0.1, steps=2, integrals=False)
        batch = gf.simulate_batch([net], X, y, t1=0.5, saveat=[0.0, 0.5], method="dop853", integrals=False)[0]
        assert sol.config["space"] == batch.config["space"] == expected and gd.config["space"] == "feature"
    # where n is well below 2D the state term does not matter (the quadratic student of Experiment 2)
    X, y = make_data(n=100, d=30, seed=20)
    quad = gf.Network(d=30, width=32, embedding="quadratic", seed=0)
    assert auto_space(gf.Problem.from_data(quad, X, y), k) == "feature"


def test_auto_space_picks_feature_space_iff_n_is_below_2D(make_data):
    X, y = make_data(n=9, d=4, seed=18)  # 2D = 8 < 9 for the shallow net
    shallow = gf.Network(d=4, width=4, seed=0)
    quad = gf.Network(d=4, width=4, embedding="quadratic", seed=0)  # 2D = 32 > 9
    assert gf.make_field(gf.Problem.from_data(shallow, X, y), "auto").space == "weight"
    assert gf.make_field(gf.Problem.from_data(quad, X, y), "auto").space == "feature"


@pytest.mark.parametrize("activation", ["tanh", "erf"])  # σ′ over σ in place / from u
@pytest.mark.parametrize("space", ["weight", "feature"])
def test_field_scratch_buffers_reused_across_calls_give_the_results_of_a_fresh_field(make_data, space, activation):
    # the fields keep σ, σ′, r (and H, P in weight space) in buffers reused across evaluations; without keep_parts,
    # σ′ is formed inside P's buffer (in-place passes only) — the derivative must be bit-identical either way
    X, y = make_data(n=5, d=3, seed=21)
    net = gf.Network(d=3, width=6, activation=activation, seed=22)
    pb = gf.Problem.from_data(net, X, y)
    reused = gf.make_field(pb, space)
    reused.keep_parts = True
    s0 = reused.initial_state()
    s1 = s0 + 0.3 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(23), dtype=torch.float64)
    reused(0.0, s0)
    out = torch.empty_like(s1)
    parts = reused.rhs_into(s1, out)
    fresh = gf.make_field(pb, space)
    fresh.keep_parts = True
    out_fresh = torch.empty_like(s1)
    parts_fresh = fresh.rhs_into(s1, out_fresh)
    torch.testing.assert_close(out, out_fresh, rtol=0, atol=0)
    for a, b in zip((parts.H, parts.ds, parts.r, parts.dL), (parts_fresh.H, parts_fresh.ds, parts_fresh.r,
                                                           parts_fresh.dL)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(parts.ds, net.activation.dsigma(parts.H), rtol=1e-14, atol=1e-15)
    lean = gf.make_field(pb, space)
    assert not lean.keep_parts  # the default: no caller of a bare field reads σ′ or L̇
    out_lean = torch.empty_like(s1)
    for state in (s0, s1):  # twice: the buffers are reused
        parts_lean = lean.rhs_into(state, out_lean)
    assert parts_lean.ds is None
    torch.testing.assert_close(out_lean, out, rtol=0, atol=0)
    torch.testing.assert_close(parts_lean.r, parts.r, rtol=0, atol=0)
    assert math.isfinite(float(parts_lean.probe)) and parts.probe is parts.dL
    if space == "weight":  # L̇ = −‖Ẇ‖²/ℓ is the witness itself there
        torch.testing.assert_close(parts_lean.dL, parts.dL, rtol=0, atol=0)
    elif _fused_tanh(net):  # Σ r after the fused tanh kernel (P = c σ′ r is finite iff r is)
        assert parts_lean.dL is None and float(parts_lean.probe) == float(parts_lean.r.sum())
    else:  # Σ Ḣ
        assert parts_lean.dL is None and float(parts_lean.probe) == float(out_lean[0].sum())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("space", ["weight", "feature"])
def test_the_finiteness_witness_sees_a_non_finite_entry_anywhere_in_the_derivative(make_data, space, bad):
    # the solvers check one scalar per evaluation (Parts.probe): a NaN or ±inf in any σ, σ′ or P entry, including
    # where c_i = 0 or a point's features are all zero (a zero row/column of G), must make it non-finite
    X, y = make_data(n=5, d=3, seed=31)
    X[2] = 0.0  # Φ row 2 is zero: G's row and column 2 vanish
    net = gf.Network(d=3, width=6, activation="linear", c=[1.0, -1.0, 0.0, 1.0, -1.0, 1.0],
                     W0=np.random.default_rng(0).standard_normal((6, 3)))
    for keep in (False, True):
        for i, a in [(0, 0), (2, 1), (4, 2), (5, 4)]:
            field = gf.make_field(gf.Problem.from_data(net, X, y), space)
            field.keep_parts = keep
            # a linear σ has σ′ ≡ 1; replace it by one with a single bad σ′ entry at (i, a)
            def dsigma_bad(u, i=i, a=a):
                out = torch.ones_like(u)
                if u.shape == field.problem.H0.shape:
                    out[i, a] = bad
                return out
            bad_act = gf.Activation("linear_bad", lambda u: u.clone(), dsigma_bad, lipschitz=1.0,
                                    interval=(-math.inf, math.inf), K=1.0)
            object.__setattr__(field.problem.net, "activation", bad_act)
            state = field.initial_state()
            out = torch.empty_like(state)
            parts = field.rhs_into(state, out)
            assert not bool(torch.isfinite(out).all())
            assert not math.isfinite(float(parts.probe)), (space, keep, i, a)


@pytest.mark.parametrize("route", ["tanh", "sigmoid", "native"])
def test_in_place_tanh_is_accurate_to_a_few_ulps_over_its_whole_range_by_either_route(monkeypatch, route):
    # the float64 CPU hot path computes tanh through gflow's kernel, or the sigmoid where torch's float64 tanh is not
    # vectorised (float64_tanh_route): every route must agree with torch.tanh
    from gflow.model import _native, activations

    if route == "native":
        _require_native()
    monkeypatch.setattr(activations, "float64_tanh_route", lambda: route)
    act = gf.get_activation("tanh")
    u = torch.linspace(-40.0, 40.0, 400_001, dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    act.both_into(u, s, ds)
    exact = torch.tanh(u)
    assert float((s - exact).abs().max()) <= (0.0 if route == "tanh" else 2 * EPS)
    assert float((ds - (1.0 - exact**2)).abs().max()) <= 4 * EPS
    assert float(s.abs().max()) <= 1.0  # never outside [−1, 1]
    # the one-buffer path (σ, then σ′ over it) takes the same route and agrees bitwise with both_into
    s2, ds2 = torch.empty_like(u), torch.empty_like(u)
    assert torch.equal(act.sigma_then_dsigma_into(u, s2, None, lambda sig: ds2.copy_(sig)), ds)
    assert torch.equal(ds2, s)
    if route != "tanh":
        assert float((s - exact).abs().max()) > 0.0  # the route really ran (it rounds differently)
    if route == "native":  # (and no other way: the kernel takes these dense tensors)
        s3 = torch.empty_like(u)
        assert _native.tanh_into(u, s3) and torch.equal(s3, s)


def test_in_place_erf_derivative_is_accurate_over_its_range():
    # erf′ = (2/√π) e^{−u²} is formed as exp2(log₂(2/√π) − log₂e·u²) in the fields' hot path (torch's own exp2
    # kernel: float64 exp is MKL's, slow on AMD CPUs); against an extended-precision reference
    act = gf.get_activation("erf")
    u = torch.linspace(-6.0, 6.0, 120_001, dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    act.both_into(u, s, ds)
    assert torch.equal(s, torch.erf(u))
    wide = np.longdouble
    if np.finfo(wide).eps > 1e-18:  # (no extended precision on this platform: float64's own formula, looser)
        ref, tol = (2.0 / math.sqrt(math.pi)) * np.exp(-(u.numpy() ** 2)), 2e-14
    else:
        ref, tol = wide(2) / np.sqrt(wide(np.pi)) * np.exp(-(u.numpy().astype(wide) ** 2)), 1e-14
    rel = np.abs((ds.numpy().astype(wide) - ref) / ref).astype(np.float64)
    assert rel.max() <= tol, rel.max()
    # and the plain σ′ agrees to that (the fields and the observers read both)
    torch.testing.assert_close(ds, act.dsigma(u), rtol=tol, atol=0.0)


@pytest.mark.parametrize("slope", [0.01, 0.2, 0.7])
def test_leaky_relu_kernels_give_exactly_u_slope_u_and_one_slope_zero_on_every_path(slope):
    # σ = max(u, slope·u) and σ′ = leaky_relu(sign(u), −slope): exact, the kink's σ′(0) = 0 included, on every path
    # the fields take (fused, one-buffer in place, separate)
    act = gf.get_activation("leaky_relu", slope=slope)
    g = torch.Generator().manual_seed(5)
    u = torch.cat([torch.randn(1000, generator=g, dtype=torch.float64) * 10.0 ** e for e in (-300, -5, 0, 5, 300)]
                  + [torch.tensor([0.0, -0.0, math.inf, -math.inf], dtype=torch.float64)]).reshape(-1, 4)
    sigma = torch.where(u > 0, u, slope * u)
    one = torch.ones_like(u)
    dsigma = torch.where(u > 0, one, torch.where(u < 0, slope * one, 0.0 * one))
    s, ds = torch.empty_like(u), torch.empty_like(u)
    act.both_into(u, s, ds)
    assert torch.equal(s, sigma) and torch.equal(ds, dsigma)
    assert torch.equal(act.sigma(u), sigma) and torch.equal(act.dsigma(u), dsigma)
    s2 = torch.empty_like(u).T.contiguous().T  # a column-major buffer, as in the feature state's "nm" layout
    seen = []
    out = act.sigma_then_dsigma_into(u, s2, None, lambda sig: seen.append(sig.clone()))
    assert out is s2 and torch.equal(seen[0], sigma) and torch.equal(out, dsigma)
    # a NaN stays in σ (and so reaches r and the loss); σ′ is 0 there, as the comparisons gave before
    nan = torch.tensor([math.nan], dtype=torch.float64)
    assert torch.isnan(act.sigma(nan)).all() and act.dsigma(nan).item() == 0.0


def test_relu_in_place_dsigma_is_the_indicator_of_u_above_zero():
    act = gf.get_activation("relu")
    u = torch.tensor([[-2.0, -1e-300, -0.0, 0.0], [1e-300, 3.0, math.inf, -math.inf]], dtype=torch.float64)
    s = torch.empty_like(u)
    seen = []
    out = act.sigma_then_dsigma_into(u, s, None, lambda sig: seen.append(sig.clone()))
    assert torch.equal(seen[0], torch.relu(u))
    assert out.tolist() == [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]


def test_gelu_fused_kernel_matches_its_closed_form_and_autograd_over_a_wide_range():
    # the fused σ, σ′ share one erf and form φ through exp2: against the closed forms evaluated per point with
    # Python's math.erf / math.exp, and σ′ against the autograd derivative of the plain σ
    act = gf.get_activation("gelu")
    u = torch.linspace(-12.0, 12.0, 24_001, dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    act.both_into(u, s, ds)
    x = u.tolist()
    phi = [0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x]
    s_ref = torch.tensor([v * p for v, p in zip(x, phi)], dtype=torch.float64)
    ds_ref = torch.tensor([p + v * math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi) for v, p in zip(x, phi)],
                          dtype=torch.float64)
    torch.testing.assert_close(s, s_ref, rtol=4 * EPS, atol=4 * EPS)
    torch.testing.assert_close(ds, ds_ref, rtol=1e-14, atol=4 * EPS)
    w = u.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(act.sigma(w).sum(), w)
    torch.testing.assert_close(ds, grad, rtol=1e-14, atol=4 * EPS)
    torch.testing.assert_close(act.both(u)[1], ds, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_softplus_is_log1p_exp_to_rounding_where_torch_would_return_u_itself(dtype):
    # torch's softplus is u itself above its default threshold 20, 2e-9 off (1e-10 relative) there in float64
    act = gf.get_activation("softplus")
    u = torch.linspace(15.0, 60.0, 4_501, dtype=torch.float64)
    ref = u + torch.log1p(torch.exp(-u))
    got = act.sigma(u.to(dtype)).to(torch.float64)
    eps = float(torch.finfo(dtype).eps)
    assert float(((got - ref) / ref).abs().max()) <= eps
    if dtype == torch.float64:
        assert torch.equal(act.both(u)[0], act.sigma(u))


def test_the_float64_tanh_route_is_decided_once_and_recorded_in_the_provenance():
    from gflow.model.activations import float64_tanh_route
    from gflow.solution import versions

    from gflow.model import _native

    assert float64_tanh_route() in ("native", "tanh", "sigmoid")
    assert float64_tanh_route() is float64_tanh_route()  # cached: one decision per process
    assert versions()["float64_tanh_route"] == float64_tanh_route()
    assert versions()["native_kernels"] == _native.status(path=False)
    if _native.available():  # the file name, not the user's cache folder
        assert versions()["native_kernels"].startswith("on (gflow_native_") and os.sep not in versions()["native_kernels"]
    if "GFLOW_FLOAT64_TANH_ROUTE" not in os.environ:  # native wherever it builds
        assert (float64_tanh_route() == "native") == _native.available()


@pytest.mark.parametrize("space", ["feature", "weight"])
@pytest.mark.parametrize("activation,interval", [("tanh", (-1.0, 1.0)), ("relu", (0.0, 1.0)),
                                                 ("leaky_relu", (-math.inf, math.inf)), ("erf", (-math.inf, 0.5)),
                                                 ("softplus", (0.2, math.inf))])
def test_observed_integrands_are_the_quantities_functions(make_data, space, activation, interval):
    # ObservedField forms (η, μ, ν, λ_min(M), |L̇|^½, |L̇|) with fewer operations than gflow.model.quantities
    # (float indicators counted by a product, σ′² once, κ_M/m folded into G): the same values
    from gflow.fields import ObservedField
    from gflow.model import quantities as Q

    X, y = make_data(n=7, d=5, seed=21)
    net = gf.Network(d=5, width=33, activation=activation, seed=4)  # m = 33: 1/m is not exact in binary
    pb = gf.Problem.from_data(net, X, y)
    field = ObservedField(gf.make_field(pb, space), interval)
    state = field.initial_state()
    state[: field.N] += 0.3 * torch.randn(field.N, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = torch.empty_like(state)
    parts = field.rhs_into(state, out)
    got = out[field.N:]
    H, ds = parts.H, parts.ds
    lam = torch.linalg.eigvalsh(Q.kernel_M(pb.G, ds, net.c, net.kernel_coef))[0]
    want = torch.stack([Q.eta(H, interval), Q.mu(ds), Q.nu(ds, net.c), lam, (-parts.dL).clamp_min(0).sqrt(),
                        (-parts.dL).clamp_min(0)])
    assert got[0] == want[0]  # η: exact counts over m
    torch.testing.assert_close(got[1:], want[1:], rtol=1e-12, atol=1e-15)
    assert 0.0 < float(got[0]) < 1.0 or interval == (-math.inf, math.inf)


@pytest.mark.parametrize("n", [5, 127, 128, 301])
def test_gram_is_the_exactly_symmetric_product_with_its_flop_count(n):
    from gflow.model.quantities import GRAM_BLOCKS, GRAM_MIN_N, gram, gram_flops

    B = torch.randn(37, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    S = gram(B)
    torch.testing.assert_close(S, B.T @ B, rtol=1e-13, atol=1e-13 * float((B * B).sum(0).max()))
    assert torch.equal(S, S.T)  # exactly symmetric (the lower blocks are the mirror of the upper ones)
    blocks = GRAM_BLOCKS if n >= GRAM_MIN_N else 1
    edges = [round(i * n / blocks) for i in range(blocks + 1)]
    assert gram_flops(37, n) == sum(2 * 37 * (b - a) * (n - a) for a, b in zip(edges[:-1], edges[1:]))
    assert gram_flops(37, n) == 2 * 37 * n * n if n < GRAM_MIN_N else gram_flops(37, n) < 0.7 * 2 * 37 * n * n


@pytest.mark.parametrize("n", [5, 301])
def test_gram_never_reads_the_uninitialised_lower_part(monkeypatch, n):
    # the blocked path writes the upper block triangle into an empty buffer: non-finite garbage below it must not
    # reach the result (poisoned here with NaN and ±inf), whatever mirrors it
    from gflow.model.quantities import gram

    real = torch.Tensor.new_empty

    def poisoned(self, *a, **k):
        out = real(self, *a, **k).fill_(math.nan)
        out.view(-1)[::3] = math.inf
        out.view(-1)[::5] = -math.inf
        return out

    monkeypatch.setattr(torch.Tensor, "new_empty", poisoned)
    B = torch.randn(23, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    S = gram(B)
    assert bool(torch.isfinite(S).all()) and torch.equal(S, S.T)
    torch.testing.assert_close(S, B.T @ B, rtol=1e-13, atol=1e-13 * float((B * B).sum(0).max()))


@pytest.mark.parametrize("params", ["x", {"x": 1}, (("a",), 1.0), ((1, 2),), (("name", 1.0),), (("s", "fast"),)])
def test_activation_params_must_be_name_number_pairs(params):
    # regression (a bad-input audit): params="x" passed, and the solve ran to the end before the result's
    # Activation.spec() failed ("dictionary update sequence element #0 has length 1"); a dict made it unhashable
    with pytest.raises(TypeError, match=r"Activation params must be a tuple of \(name, number\) pairs"):
        gf.Activation("a", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (-1.0, 1.0), params=params)
    ok = gf.Activation("a", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (-1.0, 1.0), params=[("s", 0.5)])
    assert ok.params == (("s", 0.5),) and ok.spec()["s"] == 0.5 and hash(ok) is not None


def test_network_loss_refuses_targets_of_the_wrong_length(make_data):
    # regression (a bad-input audit): torch's "The size of tensor a (8) must match the size of tensor b (3)"
    X, y = make_data(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0)
    with pytest.raises(ValueError, match=r"y has 3 entries but there are 8 inputs"):
        net.loss(X, y[:3])
    assert float(net.loss(X, y.reshape(-1, 1))) == float(net.loss(X, y))
