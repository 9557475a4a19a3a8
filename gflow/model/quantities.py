r"""Quantities that the paper's proofs track, as pure functions of the features H (EQUATIONS.md §3, §8, §9).

All take torch tensors: H (m, n) features, ds = σ′(H) (m, n), c (m,), G (n, n).

* η (18): the worst-point fraction of neurons in the active interval I, min_a (1/m) #{i : H_ia ∈ I}.
* μ, ν (T4): min_a (1/m) Σ_i σ′(H_ia)², and with c_i² weights.
* S = (1/m) Σ_i c_i² σ′(H_i·)σ′(H_i·)ᵀ and the function-space kernel M = κ_M · G ∘ S (E3), where κ_M = ℓα²β²Dm
  is 1 for the "ours" and "ntk" scalings and m/D for "mf"; ṙ = −M r and L̇ = −rᵀ M r.
"""

from __future__ import annotations

import math

import torch


def active_fraction(H: torch.Tensor, interval: tuple[float, float], out: torch.Tensor | None = None,
                    ones: torch.Tensor | None = None, abs_H: torch.Tensor | None = None) -> torch.Tensor:
    """(1/m) #{i : H_ia ∈ (I_l, I_r)} for each point a; shape (n,) — or (k, n) for a stack H of shape (k, m, n)
    (the recorder's saved times taken together).  The interval is open.

    The indicator is formed in H's dtype (in ``out``, a buffer of H's shape, when given) and counted by a
    matrix–vector product — exact integer counts, then / m (a boolean column sum cost 5× that at m = 1024, n = 20).
    A symmetric interval (−a, a) counts |H| < a (exact: |·| does not round); another bounded one counts
    #{H > I_l} − #{H ≥ I_r} (the second set lies in the first), with no boolean temporary: 39 → 12 µs (symmetric)
    and 18 µs at (1024, 20) on an Intel Xeon (the product of two indicators cost 39 µs).  NaN is never counted.
    ``ones``: the (m,) ones vector of the products, where the caller keeps one (no allocation per call); ``abs_H``:
    |H|, where the caller has it (a symmetric interval then counts without a pass of its own: the recorder's η and η̄).
    """
    lo, hi = interval
    m = H.shape[-2]
    if not (math.isfinite(lo) or math.isfinite(hi)):  # I = ℝ
        return H.new_ones(H.shape[:-2] + H.shape[-1:])
    ind = torch.empty_like(H) if out is None else out
    count = _column_counts(m, H, ones)
    if math.isfinite(lo) and math.isfinite(hi):
        if lo == -hi:
            if abs_H is None:
                torch.abs(H, out=ind).lt_(hi)  # 1.0 / 0.0 in H's dtype
            else:
                torch.lt(abs_H, hi, out=ind)
            return count(ind).div_(m)
        torch.gt(H, lo, out=ind)
        total = count(ind)
        torch.ge(H, hi, out=ind)
        return total.sub_(count(ind)).div_(m)
    if math.isfinite(lo):
        torch.gt(H, lo, out=ind)
    else:
        torch.lt(H, hi, out=ind)
    return count(ind).div_(m)


def _column_counts(m: int, like: torch.Tensor, ones: torch.Tensor | None = None, exact: bool = True):
    """x ↦ Σ_i x_ia, the sums over the m neurons of an (m, n) or (k, m, n) tensor as products with a ones vector
    (``ones`` where the caller keeps one): torch.mv for one matrix; for a stack, one batched product where the sums
    are ``exact`` (counts of indicators: any order of summation gives them), else torch.mv matrix by matrix — a
    batched product sums in its own order (torch.matmul against torch.mv/mm at m ≤ 128: ulps apart)."""
    ones = like.new_ones(m) if ones is None else ones
    if like.dim() == 2:
        return lambda x: torch.mv(x.T, ones)
    if exact:
        return lambda x: torch.matmul(ones, x)
    return lambda x: torch.stack([torch.mv(xi.T, ones) for xi in x])


def eta(H: torch.Tensor, interval: tuple[float, float], out: torch.Tensor | None = None,
        ones: torch.Tensor | None = None, abs_H: torch.Tensor | None = None) -> torch.Tensor:
    """η = min_a (1/m) #{i : H_ia ∈ I} (eq. (18)); a 0-d tensor — (k,) for a stack H of shape (k, m, n) — (``out``:
    an indicator buffer; ``ones``, ``abs_H``: as in :func:`active_fraction`)."""
    return active_fraction(H, interval, out, ones, abs_H).amin(dim=-1)


def mu(ds: torch.Tensor) -> torch.Tensor:
    """μ = min_a (1/m) Σ_i σ′(H_ia)² (T4)."""
    return (ds * ds).mean(dim=0).min()


def nu(ds: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """ν = min_a (1/m) Σ_i c_i² σ′(H_ia)² = min_a S_aa (T4)."""
    return torch.mv((ds * ds).T, c * c).min() / ds.shape[0]


#: gram() splits the columns into this many blocks from GRAM_MIN_N columns on
GRAM_BLOCKS, GRAM_MIN_N = 4, 128


def _gram_edges(n: int) -> list[int]:
    nb = GRAM_BLOCKS if n >= GRAM_MIN_N else 1
    return [round(i * n / nb) for i in range(nb + 1)]


def gram(B: torch.Tensor) -> torch.Tensor:
    """BᵀB (n, n) for B (m, n) — (k, n, n) for a stack (k, m, n) — exactly symmetric: from n = GRAM_MIN_N on, the
    upper block triangle of a split into GRAM_BLOCKS column blocks and its mirror, (1 + 1/4)·mn² flops instead of
    2mn² (torch has no symmetric rank-k product; measured 30.6 → 21.9 ms at (4096, 600), 0.83 → 0.63 ms at
    (1024, 200) on one core)."""
    if B.dim() == 3:  # a stack (k, m, n) → (k, n, n), matrix by matrix (a batched product sums in its own order)
        return torch.stack([gram(b) for b in B])
    edges = _gram_edges(B.shape[-1])
    if len(edges) == 2:
        return _mirror_upper_(B.T @ B)
    n = B.shape[1]
    S = B.new_empty((n, n))
    for a0, a1 in zip(edges[:-1], edges[1:]):  # the upper block triangle (the lower part is never read)
        torch.mm(B[:, a0:a1].T, B[:, a0:], out=S[a0:a1, a0:])
        _mirror_upper_(S[a0:a1, a0:a1])
        if a1 < n:
            S[a1:, a0:a1] = S[a0:a1, a1:].T  # a copy: torch's blocked transpose
    return S


def _mirror_upper_(D: torch.Tensor) -> torch.Tensor:
    """D (square) := its upper triangle and the mirror of it, in place: BLAS does not promise a
    symmetric BᵀB, nor symmetric diagonal blocks (MKL on an AMD EPYC: 1 ulp off across the diagonal at n = 5 and
    inside the blocks at n = 301).  Exact (x + 0).  Only on gram()'s diagonal blocks: an add of a transposed n×n
    operand runs strided (gram at (64, 2048) on an AMD EPYC, one core: 63 ms with the whole product mirrored so,
    23 ms with the off-diagonal blocks copied)."""
    U = torch.triu(D, 1)
    return D.triu_().add_(U.T)


def gram_flops(m: int, n: int) -> float:
    """The flops of :func:`gram` on an (m, n) matrix."""
    edges = _gram_edges(n)
    return sum(2.0 * m * (a1 - a0) * (n - a0) for a0, a1 in zip(edges[:-1], edges[1:]))


def kernel_S(ds: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """S = (1/m) Σ_i c_i² σ′(H_i·) σ′(H_i·)ᵀ, shape (n, n)."""
    return gram(ds * c[:, None]) / ds.shape[0]


def kernel_M(G: torch.Tensor, ds: torch.Tensor, c: torch.Tensor, coef: float = 1.0) -> torch.Tensor:
    """M = coef · G ∘ S (E3), PSD by the Schur product theorem; coef = ℓα²β²Dm (1 for ours/ntk)."""
    return coef * (G * kernel_S(ds, c))


class FastForms:
    """μ, ν and M formed with few passes, for code that evaluates them often (the running integrals at every
    evaluation, the recorder at every saved time): the values of :func:`mu`, :func:`nu` and :func:`kernel_M` up to
    rounding, with the constants folded once — μ_a and ν_a = S_aa as one product of the rows [1, c²]/m with σ′²
    (T4), and M = (κ_M/m · G) ∘ (cσ′)ᵀ(cσ′) (E3) through the symmetric :func:`gram`.

    Args:
        c: (m,) output weights; G: (n, n) Gram matrix, or None where M is not needed (no n×n copy is kept);
        coef: κ_M.
    """

    def __init__(self, c: torch.Tensor, G: torch.Tensor | None, coef: float = 1.0):
        m = c.shape[0]
        self.mu_nu_rows = torch.stack([torch.ones_like(c), c * c]) / m
        self.G_over_m = None if G is None else (coef / m) * G
        self.c_col = c[:, None]

    def mu_nu(self, ds: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """(μ, ν), shape (2,) — (k, 2) for a stack ds of shape (k, m, n); σ′² is formed in ``buf`` (ds's shape)."""
        sq = torch.mul(ds, ds, out=buf)
        if ds.dim() == 2:
            return torch.mm(self.mu_nu_rows, sq).amin(dim=1)
        return torch.stack([torch.mm(self.mu_nu_rows, q) for q in sq]).amin(dim=-1)  # (the product of each matrix)

    def kernel_M(self, ds: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        """M (n, n) — (k, n, n) for a stack ds of shape (k, m, n) — exactly symmetric; cσ′ is formed in ``buf``
        (ds's shape)."""
        return gram(torch.mul(ds, self.c_col, out=buf)).mul_(self.G_over_m)


def relative_movement(moved: float, start: float) -> float:
    """‖X_t − X_0‖/‖X_0‖ from its two norms, with a zero start made explicit: 0 where nothing moved from a zero start
    (M₀ = 0 with c = 0 or every neuron inactive: M stays 0, as W₀ = 0 stays where its gradient is 0), inf where it
    moved from one — not the 0/0 = NaN of a plain division."""
    if start != 0.0:
        return moved / start
    return 0.0 if moved == 0.0 else math.inf


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of ``x`` is finite.  A finite sum proves it (a NaN or ±inf entry makes the sum
    non-finite), so the entrywise test — four passes and a temporary — runs only where the sum is not (NaN, inf, or
    the sum's own overflow): 144 → 12 µs for GD's state at (1024, 20)."""
    return math.isfinite(float(x.sum())) or bool(torch.isfinite(x).all())


def extreme_eigenvalues(M: torch.Tensor, exactly_symmetric: bool = False) -> tuple[float, float]:
    """(λ_min, λ_max) of a symmetric matrix; (nan, nan) where it has a non-finite entry (an overflowing kernel:
    LAPACK's eigh failed to converge there, and that error replaced the message that names the overflow).
    ``exactly_symmetric``: the caller knows M = Mᵀ bit for bit (as :class:`FastForms` forms it from a symmetric G),
    so ½(M + Mᵀ) is M itself and is not formed (the same eigenvalues; 60 → 32 µs at n = 20 with the finiteness
    test by a sum, which the recorder runs at every saved time)."""
    if not all_finite(M):
        return math.nan, math.nan
    ev = torch.linalg.eigvalsh(M if exactly_symmetric else 0.5 * (M + M.T))
    return float(ev[0]), float(ev[-1])


def column_sums(x: torch.Tensor, ones: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i x_ia, the sums over the neurons of an (m, n) tensor — (k, n) for a stack (k, m, n) — by the products
    :func:`feature_movement` sums |H − H0| with (``ones``: their (m,) ones vector, where the caller keeps one)."""
    return _column_counts(x.shape[-2], x, ones, exact=False)(x)


def feature_movement(H: torch.Tensor, H0: torch.Tensor, out: torch.Tensor | None = None,
                     ones: torch.Tensor | None = None) -> torch.Tensor:
    """(1/m) Σ_i |h_i^t(x_a) − h_i^0(x_a)| for each point a; shape (n,) — (k, n) for a stack H of shape (k, m, n)
    (eq. (15), T8).

    ``out``: a buffer of H's shape that receives |H − H0| (no temporaries; the caller may read it afterwards).
    The sum over neurons is a matrix–vector product (a column mean over (m, n) cost 9× that at (4096, 600));
    ``ones``: its (m,) ones vector, where the caller keeps one.
    """
    d = torch.sub(H, H0, out=out).abs_()
    m = H.shape[-2]
    return _column_counts(m, H, ones, exact=False)(d).div_(m)


__all__ = [
    "FastForms",
    "active_fraction",
    "column_sums",
    "eta",
    "extreme_eigenvalues",
    "feature_movement",
    "gram",
    "gram_flops",
    "kernel_M",
    "kernel_S",
    "mu",
    "nu",
]
