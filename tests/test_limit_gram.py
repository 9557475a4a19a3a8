"""Limiting Gram matrices Ḡ (EQUATIONS.md §11), their concentration (Condition 1 §10.4, Lemma 4 §10.5) and
the Gram constants of §0.

Monte Carlo references use 200 000 draws of z ~ N(0, I_d) and compare entrywise within a few standard errors
computed from the same draws; everything is seeded, so the tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.theory import gram_concentration, gram_stats, kernel_map, limit_gram

N_MC = 200_000
N_SE = 5.0  # tolerance in standard errors (per entry; 21 entries, so a false alarm is ~1e-5 unlikely)


def _unit_variance_data(n: int, d: int, seed: int, lo: float = 0.5, hi: float = 1.5) -> np.ndarray:
    """Random directions with ‖x_a‖²/d spread evenly over [lo, hi] (variances ≤ 2, as in §11.5)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X * np.sqrt(d * np.linspace(lo, hi, n))[:, None]


def _mc_data() -> np.ndarray:
    """Four generic points in d = 3 plus a parallel (2x_1) and an anti-parallel (−x_2/2) one: θ = 0 and π
    exercise the clipping of the cosine (§11.2)."""
    X = _unit_variance_data(4, 3, seed=7)
    return np.vstack([X, 2.0 * X[0], -0.5 * X[1]])


def _monte_carlo(sigma, X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard error) of σ(z·x_a/√d)σ(z·x_b/√d) over N_MC draws of z ~ N(0, I_d)."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(N_MC, X.shape[1], generator=g, dtype=torch.float64)
    Phi = sigma(Z @ torch.as_tensor(X).T / math.sqrt(X.shape[1])).numpy()  # (N, n)
    prod = Phi[:, :, None] * Phi[:, None, :]
    return prod.mean(0), prod.std(0, ddof=1) / math.sqrt(N_MC)


def _assert_within_se(G: np.ndarray, mean: np.ndarray, se: np.ndarray) -> None:
    z = np.abs(G - mean) / (se + 1e-12)
    worst = np.unravel_index(z.argmax(), z.shape)
    assert z.max() <= N_SE, f"max deviation {z.max():.2f} standard errors at entry {worst}"


# ---------------------------------------------------------------------------------------------------------
# Closed forms and quadrature vs Monte Carlo (§11.1–§11.5)


@pytest.mark.parametrize("name, sigma", [("relu", torch.relu), ("erf", torch.erf)])
def test_closed_form_agrees_with_monte_carlo(name, sigma):
    X = _mc_data()
    G = limit_gram(name, X, method="closed_form")
    mean, se = _monte_carlo(sigma, X)
    _assert_within_se(G, mean, se)
    if name == "relu":  # anti-parallel points: ReLU(u)ReLU(−u/2·…) ≡ 0, so the limit entry is 0
        assert abs(G[1, 5]) < 1e-15 and abs(G[0, 4] - 2 * G[0, 0]) < 1e-14


def test_tanh_quadrature_agrees_with_monte_carlo():
    X = _mc_data()
    G = limit_gram("tanh", X)  # auto → quadrature
    mean, se = _monte_carlo(torch.tanh, X)
    _assert_within_se(G, mean, se)


def test_erf_quadrature_converges_spectrally_to_the_closed_form():
    X = _unit_variance_data(6, 4, seed=3)
    exact = limit_gram("erf", X, method="closed_form")
    errs = {K: np.abs(limit_gram("erf", X, method="quadrature", order=K) - exact).max()
            for K in (10, 20, 40, 80)}
    assert errs[40] < 1e-5
    assert errs[80] < 1e-9
    # Doubling K multiplies the error by an ever smaller factor (≈ 1/40, 1/700, 1/2e5): faster than any
    # power of 1/K, unlike the fixed factor ~1/2 of ReLU below.
    r = [errs[10] / errs[20], errs[20] / errs[40], errs[40] / errs[80]]
    assert 10 < r[0] < r[1] < r[2], r


def test_relu_quadrature_converges_only_algebraically_to_the_closed_form():
    X = _unit_variance_data(6, 4, seed=3)
    exact = limit_gram("relu", X)
    e40 = np.abs(limit_gram("relu", X, method="quadrature", order=40) - exact).max()
    e160 = np.abs(limit_gram("relu", X, method="quadrature", order=160) - exact).max()
    assert e160 < 2e-3
    assert 2.5 < e40 / e160 < 8.0  # ~1/K: 4x more nodes gives ~4x less error, not spectral


def test_quadrature_is_exact_for_a_polynomial_activation():
    # σ(u) = u + u³/3: by Isserlis, E[σ(u)σ(v)] = c(1 + a + b + ab) + (2/3)c³
    # for Var u = a, Var v = b, Cov(u, v) = c.
    cubic = gf.Activation("cubic", lambda u: u + u**3 / 3, lambda u: 1 + u**2, lipschitz=float("inf"),
                          interval=(-1.0, 1.0))
    X = _unit_variance_data(5, 3, seed=4)
    K = X @ X.T / 3
    a, b = np.diag(K)[:, None], np.diag(K)[None, :]
    exact = K * (1 + a + b + a * b) + (2.0 / 3.0) * K**3
    G = limit_gram(cubic, X, order=4)  # degree 6 in t_k, 3 in t_l: 4 nodes suffice
    np.testing.assert_allclose(G, exact, rtol=1e-13, atol=1e-14)


def test_linear_limit_is_exactly_XXt_over_d_at_every_depth():
    X = _unit_variance_data(5, 3, seed=5)
    for depth in (3, 4, 6):
        np.testing.assert_array_equal(limit_gram("linear", X, depth=depth), X @ X.T / 3)
    np.testing.assert_allclose(limit_gram("linear", X, method="quadrature", order=3), X @ X.T / 3,
                               rtol=1e-13, atol=1e-15)


def test_closed_form_matches_quadrature_on_a_general_psd_kernel():
    # F_σ(K) with unequal diagonals and |ρ| near 1 (not of the form XXᵀ/d with ‖x‖² ≈ d).
    rng = np.random.default_rng(6)
    Y = rng.standard_normal((6, 2)) * np.array([[0.3], [0.6], [1.0], [1.2], [0.8], [0.4]])
    K = Y @ Y.T
    np.testing.assert_allclose(kernel_map("erf", K), kernel_map("erf", K, method="quadrature", order=160),
                               atol=1e-9)  # variances up to 3.8 here: slower than at ≤ 2
    np.testing.assert_allclose(kernel_map("relu", K), kernel_map("relu", K, method="quadrature", order=160),
                               atol=2e-3)


def test_closed_form_is_chosen_by_function_not_by_name():
    X = _unit_variance_data(4, 3, seed=8)
    impostor = gf.Activation("relu", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (-1.0, 1.0))
    np.testing.assert_array_equal(limit_gram(impostor, X), limit_gram("tanh", X))
    with pytest.raises(ValueError, match="closed.form"):
        limit_gram(impostor, X, method="closed_form")
    renamed = gf.Activation("my_relu", torch.relu, lambda u: (u > 0).to(u.dtype), 1.0, (0.0, 1.0))
    np.testing.assert_array_equal(limit_gram(renamed, X, method="closed_form"), limit_gram("relu", X))


def test_zero_input_gives_finite_limits():
    X = _unit_variance_data(4, 3, seed=9)
    X[2] = 0.0
    for name in ("relu", "erf", "tanh"):
        for method in ("auto", "quadrature"):
            G = limit_gram(name, X, method=method)
            assert np.all(np.isfinite(G))
            np.testing.assert_allclose(G[2], 0.0, atol=1e-15)  # σ(0) = 0 for all three
    G = limit_gram("softplus", X)  # σ(0) = log 2: Ḡ_2b = log 2 · E σ(u_b)
    assert np.all(np.isfinite(G)) and G[2, 2] == pytest.approx(math.log(2) ** 2, rel=1e-14)


@pytest.mark.parametrize("name", ["relu", "erf", "tanh", "gelu", "sigmoid"])
@pytest.mark.parametrize("depth", [3, 4])
def test_limit_is_symmetric_psd_and_lifts_the_rank(name, depth):
    X = _unit_variance_data(10, 3, seed=10)  # n > d: XXᵀ/d has rank 3
    G = limit_gram(name, X, depth=depth)
    assert G.dtype == np.float64 and G.shape == (10, 10)
    np.testing.assert_array_equal(G, G.T)
    ev = np.linalg.eigvalsh(G)
    assert np.linalg.eigvalsh(X @ X.T / 3)[0] < 1e-14 * ev[-1]  # the linear Gram is singular...
    # ...the limit is not (Assumption 4).  Sigmoid at depth 4 has λ_min/λ_max ≈ 4e-7: small but positive.
    assert ev[0] > 1e-8 * ev[-1], f"λ_min(Ḡ) = {ev[0]:.3g} should be > 0 for a non-polynomial σ"


def test_torch_input_and_dtype_are_accepted():
    X = _unit_variance_data(4, 3, seed=11)
    ref = limit_gram("relu", X)
    np.testing.assert_array_equal(limit_gram("relu", torch.as_tensor(X)), ref)
    np.testing.assert_allclose(limit_gram("relu", torch.as_tensor(X, dtype=torch.float32)), ref, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Finite-D Grams from the package's own embeddings (Condition 1, Lemma 4)


def test_finite_D_gram_of_the_package_is_close_to_the_limit():
    X = _unit_variance_data(8, 4, seed=12)
    net = gf.Network(4, width=2, activation="relu", embedding=gf.RandomFeatures(D=40_000, seed=3))
    G = net.gram(X).numpy()
    Gbar = limit_gram("relu", X)
    err = np.linalg.norm(G - Gbar, 2)  # ≈ 0.04 here; Lemma 4 scale ~ n·max Ḡ_aa/√D ≈ 0.06
    assert err < 0.05 * np.linalg.eigvalsh(Gbar)[-1]
    assert np.abs(G - Gbar).max() < 0.02


def test_gram_error_shrinks_like_one_over_sqrt_D():
    X = _unit_variance_data(6, 4, seed=13)
    out = gram_concentration("relu", X, [1000, 16000], seeds=range(20))
    assert out["D"] == [1000, 16000]
    assert set(out) == {"D", "err_mean", "err_std", "lam_min_limit", "lam_max_limit"}
    ratio = out["err_mean"][0] / out["err_mean"][1]  # √16 = 4 for a 1/√D law
    assert 2.0 < ratio < 8.0, ratio
    assert all(s > 0 for s in out["err_std"])
    ev = np.linalg.eigvalsh(limit_gram("relu", X))
    assert out["lam_min_limit"] == pytest.approx(ev[0]) and out["lam_max_limit"] == pytest.approx(ev[-1])


def test_gram_concentration_uses_the_network_gram():
    X = _unit_variance_data(5, 3, seed=14)
    out = gram_concentration("erf", X, [500], seeds=[4])
    G = gf.Network(3, width=2, activation="erf", embedding=gf.RandomFeatures(D=500, seed=4)).gram(X).numpy()
    assert out["err_mean"][0] == pytest.approx(np.linalg.norm(G - limit_gram("erf", X), 2), rel=1e-12)
    assert out["err_std"] == [0.0]


def test_depth4_recursion_matches_deep_random_features():
    X = _unit_variance_data(6, 4, seed=15)
    out = gram_concentration("relu", X, [256, 4096], seeds=range(4), depth=4)
    e_small, e_large = out["err_mean"]
    assert e_large < e_small / 2.0  # decays with D (≈ 4x expected)
    assert e_large < 0.1 * out["lam_max_limit"]
    # The recursion really is two applications of F_σ, and differs from the depth-3 limit.
    K1 = X @ X.T / 4
    np.testing.assert_allclose(limit_gram("relu", X, depth=4), kernel_map("relu", kernel_map("relu", K1)),
                               rtol=0, atol=0)
    assert np.abs(limit_gram("relu", X, depth=4) - limit_gram("relu", X)).max() > 1e-3


def test_depth4_closed_form_recursion_matches_quadrature_recursion():
    X = _unit_variance_data(6, 4, seed=16)
    np.testing.assert_allclose(limit_gram("erf", X, depth=4),
                               limit_gram("erf", X, depth=4, method="quadrature", order=64), atol=1e-8)


# ---------------------------------------------------------------------------------------------------------
# gram_stats (§0: G_min, G_max are diagonal entries)


def test_gram_stats_on_a_hand_made_matrix():
    G = np.array([[2.0, 1.0], [1.0, 3.0]])
    s = gram_stats(G)
    assert s["lam_min"] == pytest.approx((5 - math.sqrt(5)) / 2, rel=1e-14)
    assert s["lam_max"] == pytest.approx((5 + math.sqrt(5)) / 2, rel=1e-14)
    assert s["G_min"] == 2.0 and s["G_max"] == 3.0  # not the eigenvalues 1.38, 3.62
    assert all(type(v) is float for v in s.values())
    assert gram_stats(torch.as_tensor(G)) == s


# ---------------------------------------------------------------------------------------------------------
# Bad inputs


X_OK = np.eye(3)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: limit_gram(3, X_OK), TypeError, "activation"),
        (lambda: limit_gram("nope", X_OK), ValueError, "activation"),
        (lambda: limit_gram("relu", np.ones(3)), ValueError, "X must be 2-D"),
        (lambda: limit_gram("relu", np.array([[1.0, np.nan]])), ValueError, "X contains"),
        (lambda: limit_gram("relu", [["a"]]), TypeError, "X must be a numeric"),
        (lambda: limit_gram("relu", X_OK, depth=2), ValueError, "depth"),
        (lambda: limit_gram("relu", X_OK, depth=3.0), TypeError, "depth"),
        (lambda: limit_gram("relu", X_OK, method="exact"), ValueError, "method"),
        (lambda: limit_gram("tanh", X_OK, method="closed_form"), ValueError, "closed_form"),
        (lambda: limit_gram("tanh", X_OK, order=0), ValueError, "order"),
        (lambda: kernel_map("relu", np.ones((2, 3))), ValueError, "K must be a square"),
        (lambda: kernel_map("relu", np.array([[1.0, 0.5], [0.0, 1.0]])), ValueError, "K must be symmetric"),
        (lambda: kernel_map("relu", -np.eye(2)), ValueError, "K must be positive semi-definite"),
        (lambda: gram_concentration("relu", X_OK, []), ValueError, "Ds is empty"),
        (lambda: gram_concentration("relu", X_OK, [10, 0]), ValueError, r"Ds\[1\]"),
        (lambda: gram_concentration("relu", X_OK, 100), TypeError, "Ds"),
        (lambda: gram_concentration("relu", X_OK, [10], seeds=[-1]), ValueError, r"seeds\[0\]"),
        (lambda: gram_concentration("relu", X_OK, [10], depth=1), ValueError, "depth"),
        (lambda: gram_stats(np.ones((2, 3))), ValueError, "G must be a square"),
        (lambda: gram_stats(np.array([[1.0, 2.0], [0.0, 1.0]])), ValueError, "G must be symmetric"),
        (lambda: gram_stats(np.ones(4)), ValueError, "G must be 2-D"),
    ],
)
def test_bad_inputs_raise_named_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
