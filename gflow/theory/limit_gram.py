r"""Limiting Gram matrices of random-feature embeddings (EQUATIONS.md §11, Condition 1 §10.4, Lemma 4 §10.5).

For the P-3L embedding φ_j(x) = σ(z_jᵀx/√d), z_j ~ N(0, I_d) (eq. (5)), the Gram matrix G = ΦΦᵀ/D (eq. (12),
(22)) converges as D → ∞ to (eq. (23), §11.1)

    Ḡ_ab = E_{(u,v)~N(0,Σ_ab)}[σ(u)σ(v)],   Σ_ab = [[‖x_a‖²/d, x_a·x_b/d], [x_a·x_b/d, ‖x_b‖²/d]],

i.e. Ḡ = F_σ(XXᵀ/d) with the *kernel map*

    F_σ(K)_ab := E_{(u,v)~N(0,[[K_aa,K_ab],[K_ab,K_bb]])}[σ(u)σ(v)]        (§11.6).

For the partially-trained L-layer net (Appendix H, §1.5) the fixed layers compose F_σ:
K⁽¹⁾ = XXᵀ/d, K⁽ˡ⁺¹⁾ = F_σ(K⁽ˡ⁾) (l = 1..L−3), Ḡ = F_σ(K⁽ᴸ⁻²⁾).

F_σ is evaluated in closed form for ReLU (arc-cosine kernel, §11.2), erf (Williams, §11.3) and the identity
(§11.4), and by 2-D Gauss–Hermite quadrature for any other σ (§11.5).  :func:`gram_concentration` measures
‖G − Ḡ‖₂ for the package's own finite-D embeddings (Lemma 4: ~ n/√D), and :func:`gram_stats` returns the
four Gram constants the bounds use (§0: G_min, G_max are *diagonal entries*).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

from .._validate import as_tensor, check_choice, check_positive_int, describe
from ..model.activations import Activation, get_activation

_METHODS = ("auto", "quadrature", "closed_form")
_CPU = torch.device("cpu")
# Largest (pairs × order²) block evaluated at once by the quadrature (float64 elements, ~32 MB).
_QUAD_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------------------------
# Input handling


def _as_float64_matrix(x: Any, name: str, *, square: bool = False) -> np.ndarray:
    """A finite 2-D float64 numpy array from a numpy array, a torch tensor (any real dtype, any device) or a
    sequence."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real, got {describe(x)}")
        x = x.detach().to(device=_CPU, dtype=torch.float64).numpy()
    t = as_tensor(x, name, ndim=2, dtype=torch.float64, device=_CPU)
    arr = t.numpy().astype(np.float64, copy=True)
    if square and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {arr.shape}")
    return arr


def _symmetrised(K: np.ndarray, name: str) -> np.ndarray:
    """(K + Kᵀ)/2 after checking that K is symmetric up to rounding."""
    scale = max(float(np.abs(K).max()), np.finfo(np.float64).tiny)
    asym = float(np.abs(K - K.T).max())
    if asym > 1e-8 * scale:
        raise ValueError(
            f"{name} must be symmetric, but max |{name} - {name}ᵀ| = {asym:.3g} (max |{name}| = {scale:.3g})"
        )
    return 0.5 * (K + K.T)


def _resolve_activation(activation: Any) -> Activation:
    # get_activation raises TypeError/ValueError messages that name "activation".
    return get_activation(activation)


# ---------------------------------------------------------------------------------------------------------
# Closed forms of F_σ (§11.2–§11.4), written for a general PSD kernel matrix K


def _norms_and_cos(K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """s_a = √K_aa, s_a s_b, and ρ_ab = K_ab/(s_a s_b) clipped to [−1, 1] (0 where s_a s_b = 0)."""
    s = np.sqrt(np.clip(np.diag(K), 0.0, None))
    ss = np.outer(s, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(ss > 0, K / np.where(ss > 0, ss, 1.0), 0.0)
    rho = np.clip(rho, -1.0, 1.0)
    np.fill_diagonal(rho, np.where(s > 0, 1.0, 0.0))
    return s, ss, rho


def _relu_kernel(K: np.ndarray) -> np.ndarray:
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009; §11.2) with norms √K_aa:
    F_ab = (s_a s_b / 2π)(sin θ_ab + (π − θ_ab) cos θ_ab), cos θ_ab = K_ab/(s_a s_b) ∈ [−1, 1]."""
    _, ss, rho = _norms_and_cos(K)
    theta = np.arccos(rho)
    F = ss / (2.0 * math.pi) * (np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)) + (math.pi - theta) * rho)
    np.fill_diagonal(F, 0.5 * np.clip(np.diag(K), 0.0, None))  # θ_aa = 0: F_aa = K_aa/2 exactly
    return F


def _erf_kernel(K: np.ndarray) -> np.ndarray:
    """Williams (1997) (§11.3): F_ab = (2/π) arcsin(2K_ab / √((1 + 2K_aa)(1 + 2K_bb)))."""
    q = 1.0 + 2.0 * np.clip(np.diag(K), 0.0, None)
    arg = np.clip(2.0 * K / np.sqrt(np.outer(q, q)), -1.0, 1.0)
    return (2.0 / math.pi) * np.arcsin(arg)


def _linear_kernel(K: np.ndarray) -> np.ndarray:
    """σ(u) = u (§11.4): F(K) = K."""
    return K.copy()


_CLOSED_FORMS = {
    "relu": (torch.relu, _relu_kernel),
    "erf": (torch.erf, _erf_kernel),
    "linear": (lambda u: u, _linear_kernel),
}


def _closed_form_for(act: Activation):
    """The closed-form kernel map if σ *is* ReLU, erf or the identity, else None.

    The match is on the function, not the label: σ must agree with the reference on a grid of 401 points in
    [−8, 8] to 1e-12, so a user Activation named "relu" with a different σ falls back to quadrature.
    """
    u = torch.linspace(-8.0, 8.0, 401, dtype=torch.float64)
    try:
        got = act.sigma(u)
    except Exception:  # a σ that fails on a plain float64 tensor has no closed form here
        return None
    if not isinstance(got, torch.Tensor) or got.shape != u.shape:
        return None
    got = got.to(torch.float64)
    for key, (ref, kernel) in _CLOSED_FORMS.items():
        if bool(torch.all(torch.abs(got - ref(u)) <= 1e-12)):
            return key, kernel
    return None


# ---------------------------------------------------------------------------------------------------------
# Gauss–Hermite quadrature of F_σ (§11.5)


def _sigma_f64(act: Activation, u: torch.Tensor) -> torch.Tensor:
    out = act.sigma(u)
    if not isinstance(out, torch.Tensor) or out.shape != u.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else describe(out)
        raise TypeError(
            f"activation {act.name!r}: sigma must map a float64 tensor of shape {tuple(u.shape)} to a tensor "
            f"of the same shape, got {got}"
        )
    return out.to(torch.float64)


def _quadrature_kernel(act: Activation, K: np.ndarray, order: int) -> np.ndarray:
    r"""F_σ(K) by 2-D Gauss–Hermite quadrature in the conditional parametrisation (§11.5):

    F_ab ≈ Σ_k Σ_l w̃_k w̃_l σ(s_a t_k) σ(s_b(ρ t_k + √(1−ρ²) t_l)),  w̃ = w/√(2π),

    evaluated for all pairs a ≤ b at once (in blocks bounding memory) and mirrored, so F is exactly symmetric.
    """
    t_np, w_np = np.polynomial.hermite_e.hermegauss(order)
    t = torch.as_tensor(t_np, dtype=torch.float64)
    w = torch.as_tensor(w_np / math.sqrt(2.0 * math.pi), dtype=torch.float64)
    s_np, _, rho_np = _norms_and_cos(K)
    s = torch.as_tensor(s_np, dtype=torch.float64)
    n = K.shape[0]
    ia_np, ib_np = np.triu_indices(n)
    ia, ib = torch.as_tensor(ia_np), torch.as_tensor(ib_np)
    rho = torch.as_tensor(rho_np[ia_np, ib_np], dtype=torch.float64)
    comp = torch.sqrt(torch.clamp(1.0 - rho * rho, min=0.0))

    outer = _sigma_f64(act, s[:, None] * t[None, :])  # σ(s_a t_k), shape (n, K)
    vals = torch.empty(ia.numel(), dtype=torch.float64)
    block = max(1, _QUAD_BLOCK // (order * order))
    for lo in range(0, ia.numel(), block):  # blocks of pairs, not a loop over pairs
        sl = slice(lo, lo + block)
        sb, r, c = s[ib[sl]], rho[sl], comp[sl]
        arg = sb[:, None, None] * (r[:, None, None] * t[None, :, None] + c[:, None, None] * t[None, None, :])
        inner = _sigma_f64(act, arg) @ w  # Σ_l w̃_l σ(...), shape (P, K)
        vals[sl] = (outer[ia[sl]] * inner) @ w
    F = np.empty((n, n), dtype=np.float64)
    v = vals.numpy()
    F[ia_np, ib_np] = v
    F[ib_np, ia_np] = v
    if not np.all(np.isfinite(F)):
        raise ValueError(
            f"activation {act.name!r}: σ returned non-finite values at the Gauss–Hermite nodes "
            f"(order={order}, largest variance {float(np.max(np.diag(K))):.3g}); the limit Gram does not "
            "exist or needs a lower quadrature order"
        )
    return F


# ---------------------------------------------------------------------------------------------------------
# Public API


def kernel_map(
    activation: "str | Activation", K: Any, *, method: str = "auto", order: int = 64
) -> np.ndarray:
    r"""The dual kernel F_σ(K)_ab = E_{(u,v)~N(0,[[K_aa,K_ab],[K_ab,K_bb]])}[σ(u)σ(v)] (§11.6, (23)).

    One fixed layer of width D → ∞ maps the Gram kernel of its inputs to that of its outputs; with
    K = XXᵀ/d this is Ḡ⁽¹⁾ of eq. (23).

    Args:
        activation: σ — a name (``"relu"``, ``"tanh"``…) or a :class:`gflow.Activation`.
        K: a symmetric positive semi-definite (n, n) kernel matrix (numpy array, torch tensor or sequence).
            Symmetry is checked up to rounding; only the 2×2 principal minors are used, so a K with
            |K_ab| > √(K_aa K_bb) has its correlations clipped to [−1, 1].
        method: ``"auto"`` — closed form for ReLU (arc-cosine, §11.2), erf (§11.3) and linear (§11.4), and
            Gauss–Hermite quadrature (§11.5) for any other σ; ``"quadrature"`` — always quadrature;
            ``"closed_form"`` — closed form or ValueError.
        order: number of Gauss–Hermite nodes per dimension (quadrature only).  Exact for polynomial σ of
            degree < order; spectral convergence for analytic σ (erf: order 40 → ~1e-5), only algebraic
            for kinked σ (ReLU: order 160 → ~1e-3), see §11.5.

    Returns:
        F_σ(K) as a symmetric float64 numpy array of shape (n, n).

    Raises:
        TypeError, ValueError: naming the offending argument.
    """
    act = _resolve_activation(activation)
    method = check_choice(method, "method", _METHODS)
    order = check_positive_int(order, "order")
    Km = _symmetrised(_as_float64_matrix(K, "K", square=True), "K")
    diag = np.diag(Km)
    if np.any(diag < 0):
        a = int(np.argmin(diag))
        raise ValueError(f"K must be positive semi-definite, but K[{a}, {a}] = {diag[a]:.3g} < 0")
    return _apply(act, Km, method, order)


def _apply(act: Activation, K: np.ndarray, method: str, order: int) -> np.ndarray:
    cf = None if method == "quadrature" else _closed_form_for(act)
    if cf is not None:
        return cf[1](K)
    if method == "closed_form":
        raise ValueError(
            f"method='closed_form': no closed-form limit Gram is known for activation {act.name!r}; closed "
            f"forms exist for {sorted(_CLOSED_FORMS)} (§11.2–§11.4). Use method='auto' or 'quadrature'"
        )
    return _quadrature_kernel(act, K, order)


MAX_DEPTH = 10_000  # one kernel map per layer: a bound that turns a mistyped depth into an error, not a hang


def _check_depth(depth) -> int:
    depth = check_positive_int(depth, "depth", minimum=3)
    if depth > MAX_DEPTH:
        raise ValueError(f"depth must be ≤ {MAX_DEPTH} (one kernel map per layer), got {depth}")
    return depth


def limit_gram(
    activation: "str | Activation",
    X: Any,
    *,
    depth: int = 3,
    method: str = "auto",
    order: int = 64,
) -> np.ndarray:
    r"""The D → ∞ limit Ḡ of the random-feature Gram matrix G = ΦΦᵀ/D (eq. (23), §11).

    For depth L = 3 (the P-3L net (4)–(5)), φ_j(x) = σ(z_jᵀx/√d) with z_j ~ N(0, I_d), and

        Ḡ_ab = E_{(u,v)~N(0,Σ_ab)}[σ(u)σ(v)],  Σ_ab = [[‖x_a‖²/d, x_a·x_b/d], [x_a·x_b/d, ‖x_b‖²/d]]   (23).

    For the partially-trained L-layer net (Appendix H, §11.6) with W⁽ˡ⁾ ~ N(0, 1):
    K⁽¹⁾ = XXᵀ/d, K⁽ˡ⁺¹⁾ = F_σ(K⁽ˡ⁾) for l = 1..L−3, Ḡ = F_σ(K⁽ᴸ⁻²⁾), with F_σ from :func:`kernel_map`
    (the limit taken layer by layer).  This is the Ḡ of Condition 1 (§10.4) and Theorem 3 (§10.5).

    Args:
        activation: σ of the fixed layers — a name or a :class:`gflow.Activation`.
        X: training inputs, shape (n, d) (numpy array, torch tensor of any real dtype/device, or sequence).
        depth: L ≥ 3, the depth of the whole network; 3 is the P-3L net.
        method: ``"auto"`` (closed form for ReLU §11.2, erf §11.3, linear §11.4; Gauss–Hermite quadrature
            §11.5 otherwise), ``"quadrature"`` or ``"closed_form"`` (ValueError when σ has none).
        order: Gauss–Hermite nodes per dimension for the quadrature.

    Returns:
        Ḡ, a symmetric positive semi-definite float64 numpy array of shape (n, n).

    Raises:
        TypeError, ValueError: naming the offending argument.

    Example:
        >>> import numpy as np
        >>> from gflow.theory import limit_gram
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> np.round(limit_gram("relu", X), 4)   # ‖x‖²/(2d) on the diagonal, 1/(2π d) off it
        array([[0.25  , 0.0796],
               [0.0796, 0.25  ]])
    """
    act = _resolve_activation(activation)
    Xm = _as_float64_matrix(X, "X")
    depth = _check_depth(depth)
    method = check_choice(method, "method", _METHODS)
    order = check_positive_int(order, "order")
    d = Xm.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        K = Xm @ Xm.T / d
    if not np.all(np.isfinite(K)):  # (X × 1e200: relu's closed form returned inf and NaN silently)
        raise ValueError(f"XXᵀ/d overflows float64 (largest entry |X_ai| = {float(np.max(np.abs(Xm))):.3g}): the inputs "
                         "are too large for the limit Gram; rescale X")
    K = _symmetrised(K, "XXᵀ/d")
    for _ in range(depth - 2):  # L − 3 hidden fixed layers, then the map into the trained layer
        with np.errstate(over="ignore", invalid="ignore"):
            F = _apply(act, K, method, order)
        if not np.all(np.isfinite(F)):  # (the quadrature checks its own; a closed form must be checked here)
            raise ValueError(f"activation {act.name!r}: the limit Gram has non-finite entries (largest variance "
                             f"{float(np.max(np.diag(K))):.3g}): the inputs are too large for it; rescale X")
        K = F
    return 0.5 * (K + K.T)


def gram_stats(G: Any) -> dict:
    r"""The four Gram constants of the bounds: λ_min(G), λ_max(G), G_min, G_max (§0, §10).

    Note that G_min = min_a G_aa and G_max = max_a G_aa are *diagonal entries*, not eigenvalues (§0); they
    enter Lemmas 2–3 (§10.1–10.2), while λ_min, λ_max enter κ and the rates (§10.3–10.4).

    Args:
        G: a symmetric (n, n) matrix (numpy array, torch tensor or sequence); symmetry is checked up to
            rounding and G is symmetrised before its eigenvalues are computed.

    Returns:
        ``{"lam_min": λ_min(G), "lam_max": λ_max(G), "G_min": min_a G_aa, "G_max": max_a G_aa}`` (floats).
    """
    Gm = _symmetrised(_as_float64_matrix(G, "G", square=True), "G")
    ev = np.linalg.eigvalsh(Gm)
    dg = np.diag(Gm)
    return {
        "lam_min": float(ev[0]),
        "lam_max": float(ev[-1]),
        "G_min": float(dg.min()),
        "G_max": float(dg.max()),
    }


def _int_list(values: Any, name: str, minimum: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be an iterable of integers, got {describe(values)}")
    out = [check_positive_int(v, f"{name}[{i}]", minimum=minimum) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} is empty; give at least one value")
    return out


def gram_concentration(
    activation: "str | Activation",
    X: Any,
    Ds: Iterable[int],
    *,
    seeds: Iterable[int] = range(5),
    depth: int = 3,
    method: str = "auto",
    order: int = 64,
) -> dict:
    r"""How fast the finite-D Gram G = ΦΦᵀ/D concentrates around its limit Ḡ (Condition 1, Lemma 4).

    For each D in ``Ds`` and each seed, the finite-D Gram is drawn with the package's own embedding —
    :class:`gflow.RandomFeatures` (depth 3) or :class:`gflow.DeepRandomFeatures` (depth > 3) with that seed,
    bound through a :class:`gflow.Network` — and compared with :func:`limit_gram` in spectral norm.  Lemma 4
    (§10.5) predicts ‖G − Ḡ‖₂ = O(n/√D) (up to logs); Condition 1 (§10.4) is in force on the event
    ‖G − Ḡ‖₂ ≤ λ_min(Ḡ)/2, so compare ``err_mean`` with ``lam_min_limit / 2``.

    Args:
        activation: σ of the fixed layers — a name or a :class:`gflow.Activation`.
        X: inputs, shape (n, d).
        Ds: embedding widths D (positive integers).
        seeds: seeds of the embedding draws (non-negative integers, at least one).
        depth: L ≥ 3 (see :func:`limit_gram`).  Depth > 3 draws D×D weight matrices: mind the memory.
        method, order: how Ḡ is computed (see :func:`limit_gram`).

    Returns:
        ``{"D": [...], "err_mean": [...], "err_std": [...], "lam_min_limit": λ_min(Ḡ),
        "lam_max_limit": λ_max(Ḡ)}`` — per D the mean and the sample standard deviation (ddof = 1; 0 for a
        single seed) of ‖G − Ḡ‖₂ over the seeds.
    """
    from ..model.embeddings import DeepRandomFeatures, RandomFeatures
    from ..model.network import Network

    act = _resolve_activation(activation)
    Xm = _as_float64_matrix(X, "X")
    Ds_list = _int_list(Ds, "Ds", 1)
    seed_list = _int_list(seeds, "seeds", 0)
    depth = _check_depth(depth)
    Gbar = limit_gram(act, Xm, depth=depth, method=method, order=order)
    ev = np.linalg.eigvalsh(Gbar)
    d = Xm.shape[1]
    err_mean, err_std = [], []
    for D in Ds_list:
        errs = []
        for s in seed_list:
            if depth == 3:
                emb = RandomFeatures(D=D, activation=act, seed=s)
            else:
                emb = DeepRandomFeatures(D=D, depth=depth, activation=act, seed=s)
            net = Network(d, width=2, activation=act, embedding=emb)
            G = net.gram(Xm).detach().cpu().numpy()
            errs.append(float(np.linalg.norm(G - Gbar, 2)))
        e = np.asarray(errs)
        err_mean.append(float(e.mean()))
        err_std.append(float(e.std(ddof=1)) if e.size > 1 else 0.0)
    return {
        "D": Ds_list,
        "err_mean": err_mean,
        "err_std": err_std,
        "lam_min_limit": float(ev[0]),
        "lam_max_limit": float(ev[-1]),
    }


__all__ = ["limit_gram", "kernel_map", "gram_concentration", "gram_stats"]
