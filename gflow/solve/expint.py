r"""Exponential Runge–Kutta integration of the feature-space flow for long, stiff horizons (``method="exprk4"``).

Why: along the flow (E4) the Jacobian splits as J = J₁ + J₂, where J₁ is the part that acts through the
residual r and J₂ the part through σ″ (∝ r, small near convergence).  With B = c σ′(H) (m×n, B_ia = c_i σ′_ia)
and G′ = −γG,

    J₁ = U Vᵀ,   Vᵀ(δH, δA) = α Σ_i B_i· ∘ δH_i·  (n-vector),   U w = ((B ∘ 1wᵀ) G′,  B ∘ 1wᵀ),

a rank-≤n operator whose nonzero spectrum is that of the n×n matrix K = VᵀU = α (BᵀB) ∘ G′ = −M, the
function-space kernel of E3 (αγ·BᵀB = κ_M S with S, κ_M as in E3).  M carries the fast, stiff modes
(λ_max(M) up to ~4 while the slow ones fall to 1e-4), which make explicit methods crawl at their stability
limit over long horizons (EQUATIONS.md §3, §4, §13).  Matrix functions of a low-rank operator are cheap:

    φ_k(hUVᵀ) = I/k! + h U φ_{k+1}(hK) Vᵀ,

with φ_{k+1}(hK) from the symmetric eigendecomposition of K (n×n).

Method: the 5-stage exponential Runge–Kutta method of Hochbruck & Ostermann (SIAM J. Numer. Anal. 43, 2005;
Acta Numerica 19, 2010, eq. (2.40)) of stiff order 4, applied in Rosenbrock form to

    u′ = L_n (u − u_n) + N_n(u),      L_n = J₁(u_n) frozen for the step,  N_n(u) = F(u) − L_n (u − u_n).

It is a consistent method of classical order 4 for any L_n (it reduces to a classical 4th-order Runge–Kutta
method as L_n → 0), it is exact when F is affine (linear σ, where J₂ = 0 and N_n is constant, E5), and its
stiff order 4 avoids order reduction from the fast modes.  Step size: a defect-based estimate (the defect of the
step's quadrature at its end, whose evaluation is the next step's first stage, and — on every 8th step, and on every
step once the loss has converged, where it shows — at ¾ of the step; see :func:`_embedded_error`) and Gustafsson's
PI controller.  The linearization (B, the eigenpairs of K) is re-used
across steps while the part of J₁ it misses is small against 1/τ (:data:`_RELIN_TOL`).  Output times inside a
step come from its dense output — the step's own exponential quadrature taken to θτ, no evaluation — where an
estimate of its error is within the tolerance, else from an extra step of the same method from the step's start
(see "Dense output" below); saved times never shorten the step sequence.

Cost per stage: two products with G′ (the stage's H and the projection Vᵀ F), each min(2mn², 4mnD) flops
(G = ΦΦᵀ/D is applied in factored form when D < n/2), i.e. twice one feature-space evaluation; plus, per new
linearization, BᵀB ((1 + 1/4)mn² by :func:`gflow.model.quantities.gram` from n = 128 on, 2mn² below) and an n×n
eigenproblem.  Per step: 5 evaluations (4 stages and the end point), 11 G-products; 6 and 15 where the estimate
samples the defect at ¾ of the step.  (The first version estimated the error by step doubling: 14 evaluations per
double step.)

The integrals of an :class:`~gflow.fields.ObservedField` (atol = ∞) are integrated by the underlying classical
Runge–Kutta weights (the rows of U for them are zero), ∫|L̇| and ∫|L̇|^½ with the step's linearization as a control
variate (:func:`_correct_dL_integrals`), ∫η (whose integrand jumps) by the positive-weight rule of the explicit
methods on the step's samples (:func:`_jump_integral`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..fields import RK_FLOPS_PER_STATE_ENTRY, auto_space, lossy_feature_space
from ..fields.base import AbstractField, Parts, Problem
from ..fields.observed import INTEGRALS, ObservedField
from ..fields.weight_space import WeightSpaceField
from ..model.quantities import gram, gram_flops
from ._record import Monitor, Recorder
from .rk import _MIN_FIRST_STEP, JumpQuadrature

#: "dop853+exprk4" / "dopri5+exprk4": the explicit method while the flow is not stiff, exprk4 from where it pays
SWITCHING_METHODS = ("dop853+exprk4", "dopri5+exprk4")
EXPINT_METHODS = ("exprk4", *SWITCHING_METHODS)
ORDER = 4
_SAFETY, _FAC_MIN, _FAC_MAX = 0.9, 0.2, 5.0
_MAX_NONFINITE_REJECTS = 8


# ---------------------------------------------------------------------------------------------------------
# φ functions


_TAYLOR_TERMS = 30  # |z| < 2: the truncation 2³⁰/30! ≈ 4e-24 is far below rounding


@functools.lru_cache(maxsize=8)
def _inverse_factorials(kmax: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """C[j, k−1] = 1/(j+k)! for j < 30, 1 ≤ k ≤ kmax (never written to)."""
    C = [[1.0 / math.factorial(j + k) for k in range(1, kmax + 1)] for j in range(_TAYLOR_TERMS)]
    return torch.tensor(C, dtype=dtype, device=device)


def phi_functions(z: torch.Tensor, kmax: int) -> torch.Tensor:
    r"""φ_0(z), …, φ_kmax(z) elementwise, φ_k(z) = Σ_j z^j/(j+k)!, stacked to shape (kmax+1, *z.shape).

    φ_0 = exp.  For k ≥ 1: the Taylor series (30 terms, all k at once as one product of the powers of z with
    the matrix of 1/(j+k)!) for |z| < 2, the recurrence φ_{k+1} = (φ_k − 1/k!)/z elsewhere (it then loses at
    most a factor (k+1)/|z| ≤ 2.5 per level); accurate to a few ulp for real z ≤ 0 (for z ∈ (−2, 0) the series
    of φ_k, k ≥ 1, sums terms at most φ_1(2)/φ_1(−2) ≈ 7.4 times the result).  A fixed, small number of tensor
    operations whatever the size of z: exprk4 calls it once per step size.
    """
    e = torch.exp(z)
    if kmax == 0:
        return e[None]
    small = z.abs() < 2.0
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    zs = torch.where(small, z, zero).reshape(-1, 1)
    zl = torch.where(small, zero + 1.0, z)
    # powers zs^j, j < 30, as a cumulative product; times C[j, k−1] = 1/(j+k)!
    powers = torch.cumprod(torch.cat([torch.ones_like(zs), zs.expand(-1, _TAYLOR_TERMS - 1)], dim=1), dim=1)
    taylor = (powers @ _inverse_factorials(kmax, z.dtype, z.device)).T.reshape(kmax, *z.shape)
    rec = torch.where(small, zero, e)
    out = [e]
    for k in range(1, kmax + 1):
        rec = (rec - 1.0 / math.factorial(k - 1)) / zl
        out.append(rec)
    out[1:] = torch.where(small, taylor, torch.stack(out[1:])).unbind(0)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------------
# The Hochbruck–Ostermann tableau: each coefficient a_jl(z) = Σ coef·φ_k(c z), as (coef, k, c) triples.


@dataclass(frozen=True)
class ExpTableau:
    """An explicit exponential Runge–Kutta tableau whose coefficients are combinations of φ_k(c·z)."""

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[tuple[tuple[float, int, float], ...], ...], ...]  # a[j][l] = ((coef, k, c), ...), l < j
    b: tuple[tuple[tuple[float, int, float], ...], ...]
    order: int

    def at_zero(self, terms) -> float:
        return float(sum(coef / math.factorial(k) for coef, k, _ in terms))

    @functools.cached_property
    def compiled(self) -> _CompiledRows:
        """The a-rows 1…s−1, the b-row and the error estimates' rows (the node-only one; the dense output at θ = ¾
        and the two defect quadratures that sample it, see _embedded_error) as arrays, built once per tableau (a
        frozen dataclass still takes a cached property: it writes the instance dict directly)."""
        return _CompiledRows([*self.a[1:], self.b, *_estimate_rows()])


_h = 0.5
HOCHBRUCK_OSTERMANN = ExpTableau(
    name="Hochbruck-Ostermann exprk4 (5 stages, stiff order 4)",
    c=(0.0, _h, _h, 1.0, _h),
    a=(
        (),
        (((_h, 1, _h),),),
        (((_h, 1, _h), (-1.0, 2, _h)), ((1.0, 2, _h),)),
        (((1.0, 1, 1.0), (-2.0, 2, 1.0)), ((1.0, 2, 1.0),), ((1.0, 2, 1.0),)),
        (
            ((_h, 1, _h), (-0.75, 2, _h), (1.0, 3, 1.0), (-0.25, 2, 1.0), (_h, 3, _h)),
            ((_h, 2, _h), (-1.0, 3, 1.0), (0.25, 2, 1.0), (-_h, 3, _h)),
            ((_h, 2, _h), (-1.0, 3, 1.0), (0.25, 2, 1.0), (-_h, 3, _h)),
            ((-0.25, 2, _h), (1.0, 3, 1.0), (-0.25, 2, 1.0), (_h, 3, _h)),
        ),
    ),
    b=(
        ((1.0, 1, 1.0), (-3.0, 2, 1.0), (4.0, 3, 1.0)),
        (),
        (),
        ((-1.0, 2, 1.0), (4.0, 3, 1.0)),
        ((4.0, 2, 1.0), (-8.0, 3, 1.0)),
    ),
    order=4,
)


class _CompiledRows:
    r"""The rows of an exponential tableau (its a-rows 1…s−1, its b-row and any extra rows) as arrays, so that
    every stage coefficient of a step is formed by a few tensor operations instead of a loop over terms.

    Row r, column l: a(0) = Σ coef/k! (the classical weight) and weights W[e, (k+1, node)] += coef·c (e the entry
    (r, l) in a flat numbering, node the index of c in ``nodes``), so that the φ part of a_rl(τL) applied in
    eigen-coordinates is τ Σ W[e, (k', node)]·φ_{k'}(c τ λ).
    """

    def __init__(self, rows: list):
        self.rows = rows
        self.nodes = tuple(sorted({c for row in rows for terms in row for _, _, c in terms}))
        self.kmax = 1 + max(k for row in rows for terms in row for _, k, _ in terms)
        self.slices, self.a0 = [], []
        entries = []
        for row in rows:
            start = len(entries)
            entries.extend(row)
            self.slices.append(slice(start, len(entries)))
            self.a0.append(tuple(float(sum(coef / math.factorial(k) for coef, k, _ in terms)) for terms in row))
        W = np.zeros((len(entries), self.kmax + 1, len(self.nodes)))  # laid out as φ: (k, node) flattened
        for e, terms in enumerate(entries):
            for coef, k, c in terms:
                W[e, k + 1, self.nodes.index(c)] += coef * c
        self.W = W.reshape(len(entries), -1)
        self.a0_flat = np.array([a for row in self.a0 for a in row], dtype=np.float64)
        self._device_arrays: dict = {}

    def arrays(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        if key not in self._device_arrays:
            self._device_arrays[key] = (
                torch.as_tensor(self.W, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.a0_flat, dtype=like.dtype, device=like.device),
                torch.as_tensor(self.nodes, dtype=like.dtype, device=like.device),
            )
        return self._device_arrays[key]

    def coefficients(self, tau: float, lam: torch.Tensor) -> list[torch.Tensor]:
        r"""Per row, a (2, L, n) tensor [Cg; Cs] with what = Σ_l Cg_l ∘ ĝ_l + Cs_l ∘ ŝ_l the row's
        eigen-coordinate combination: Cg = τ Σ coef·c φ_{k+1}(cτλ), Cs = −(Cg λ + a(0))."""
        W, a0, nodes = self.arrays(lam)
        phi = phi_functions((tau * nodes)[:, None] * lam[None, :], self.kmax)  # (kmax+1, nodes, n)
        Cg = (W * tau) @ phi.reshape(-1, lam.numel())
        Cs = -(Cg * lam + a0[:, None])
        both = torch.stack([Cg, Cs])
        return [both[:, sl] for sl in self.slices]


# ---------------------------------------------------------------------------------------------------------
# The structured flow


class _Point:
    """A state (H, A, q) with its evaluation: P, F_H = P G′, the integrands and the projection g = Vᵀ F."""

    __slots__ = ("A", "B", "FH", "H", "P", "ds", "fint", "g", "g_lin", "q", "r", "t")

    def __init__(self, t, H, A, q, P, FH, fint, ds=None, B=None):
        self.t, self.H, self.A, self.q, self.P, self.FH, self.fint, self.ds = t, H, A, q, P, FH, fint, ds
        self.B = B  # c σ′(H) (m, n)
        self.r = None
        self.g = None  # Vᵀ F in eigen-coordinates of the linearization g_lin
        self.g_lin = None


class _NonFinite(Exception):
    """A non-finite evaluation; ``H``: its features where known (:func:`~gflow.solve._record.flow_activation_fault`
    blames σ where it is non-finite there)."""

    def __init__(self, H: torch.Tensor | None = None):
        super().__init__()
        self.H = H


class _GiveBack(Exception):
    """exprk4's steps after the hand-over of a switching method collapsed below the explicit steps they replaced:
    hand the run back (at ``p``, next output index ``k``) to the explicit method (:func:`_finish_explicitly`)."""

    def __init__(self, p, k: int, reason: str):
        super().__init__(reason)
        self.p, self.k, self.reason = p, k, reason


class _Flow:
    """The feature-space flow (E4) in the form the exponential integrator needs."""

    def __init__(self, field: AbstractField):
        self.field = field
        self.observed = isinstance(field, ObservedField)
        base = field.base if self.observed else field
        self.fbase = base
        if base.space != "feature":
            raise ValueError(
                f"method 'exprk4' integrates the feature-space state [H, A] (EQUATIONS.md §4), got a "
                f"{base.space}-space field; use space='feature' or space='auto' (W is recovered exactly, and "
                "G is applied in factored form when that is cheaper, so the cost matches weight space)"
            )
        pb = field.problem
        net = pb.net
        self.pb, self.net = pb, net
        self.m, self.n, self.D = net.m, pb.n, net.D
        self.alpha = float(net.alpha)
        self.c_col = net.c[:, None]
        self.y = pb.y
        # ∫η's entries among the running integrals q (η jumps: :func:`_jump_integral`)
        self.jump = (field.jump_integrals() - field.N).tolist() if self.observed else []
        self.y_norm = float(torch.linalg.vector_norm(pb.y))
        self.Gp = (-net.gamma) * pb.G  # G′ = −γG
        # G = ΦΦᵀ/D: apply G′ as (XΦ)(−γ/D)Φᵀ when 4mnD < 2mn², i.e. D < n/2
        self.factored = 2 * self.D < self.n
        if self.factored:
            self.Phi = pb.Phi
            self.PhiT_scaled = (-net.gamma / net.D) * pb.Phi.T.contiguous()
        self.g_flops = 2.0 * self.m * self.n * min(self.n, 2 * self.D)
        self.flops = 0.0

    def mulG(self, X: torch.Tensor) -> torch.Tensor:
        """X G′ for X (m, n)."""
        self.flops += self.g_flops
        if self.factored:
            return (X @ self.Phi) @ self.PhiT_scaled
        return X @ self.Gp

    def split(self, state: torch.Tensor):
        core = self.field.core(state) if self.observed else state
        q = self.field.integrals(state).clone() if self.observed else None
        H, A = self.fbase.split(core)  # (either layout; simulate gives this method "mn")
        return H.clone(), A.clone(), q

    def join(self, H, A, q) -> torch.Tensor:
        core = self.fbase.join(H, A)
        if not self.observed:
            return core
        return torch.cat([core.reshape(-1), q])

    def evaluate(self, t: float, H, A, q, monitor: Monitor, integrands: bool = True) -> _Point:
        """One right-hand-side evaluation at H (F does not depend on A or q); raises _NonFinite.  ``integrands=False``:
        without the running integrals' integrands (``fint`` None), for a stage whose weight in the step's
        quadrature of them is 0."""
        monitor.on_eval()
        net = self.net
        act = net.activation
        r = torch.empty_like(self.y)
        # σ, r = α σᵀc − y, then σ′ (over σ where σ′ is a function of σ), as the fields do
        ds = act.sigma_then_dsigma_into(H, torch.empty_like(H), None if act.in_place_dsigma else torch.empty_like(H),
                                        lambda sig: torch.addmv(self.y, sig.T, net.c, beta=-1.0, alpha=self.alpha,
                                                                out=r))
        B = torch.mul(ds, self.c_col)
        P = B * r
        FH = self.mulG(P)
        dL = self.alpha * torch.dot(P.reshape(-1), FH.reshape(-1))  # L̇ (E3): one scalar checks everything
        if not math.isfinite(float(dL)):
            raise _NonFinite(H)
        fint = self.field.integrands(Parts(H, ds, r, dL)) if self.observed and integrands else None
        pt = _Point(t, H, A, q, P, FH, fint, ds, B)
        pt.r = r
        return pt


class _Linearization:
    """L_n = J₁(u_n) = U Vᵀ through B = c σ′(H_n); K = VᵀU = α(BᵀB)∘G′ = −M (E3) and its eigenpairs.

    ``B`` may be given when it is known (the evaluation at H_n has it); Q_alpha = αQ folds the α of Vᵀ.
    """

    def __init__(self, flow: _Flow, H: torch.Tensor, B: torch.Tensor | None = None):
        self.flow = flow
        self.t0 = math.nan  # where it was taken (set by the adaptive driver)
        self.B = flow.net.activation.dsigma(H) * flow.c_col if B is None else B
        flow.flops += gram_flops(flow.m, flow.n)
        K = gram(self.B).mul_(flow.Gp).mul_(flow.alpha)
        # eigh reads K's lower triangle only: that is the symmetrisation (BᵀB and G′ are symmetric up to rounding)
        try:
            self.lam, self.Q = torch.linalg.eigh(K)
        except torch.linalg.LinAlgError as exc:  # LAPACK's answer to a non-finite K
            raise _NonFinite from exc
        if not math.isfinite(float(self.lam.sum())):
            raise _NonFinite
        self.Q_alpha = flow.alpha * self.Q
        flow.flops += 10.0 * flow.n**3
        self._coefs: dict[tuple[int, float], list[torch.Tensor]] = {}

    def Vt(self, XH: torch.Tensor) -> torch.Tensor:
        """Vᵀ(δH, ·) = α Σ_i B_i· ∘ δH_i·, in eigen-coordinates of K; XH of shape (m, n) or (k, m, n)."""
        return (self.B * XH).sum(dim=-2) @ self.Q_alpha

    def coefficients(self, tab: ExpTableau, tau: float) -> list[torch.Tensor]:
        """The rows' eigen-coordinate coefficients at step tau (:meth:`_CompiledRows.coefficients`), cached."""
        key = (id(tab), tau)
        if key not in self._coefs:
            if len(self._coefs) > 16:
                self._coefs.clear()
            self._coefs[key] = tab.compiled.coefficients(tau, self.lam)
        return self._coefs[key]


def _substep(flow: _Flow, lin: _Linearization, base: _Point, tau: float, monitor: Monitor,
             tab: ExpTableau = HOCHBRUCK_OSTERMANN, *, evaluate_end: bool = False, stages: dict | None = None):
    """One exponential RK step of size tau from ``base`` with the frozen L = lin; returns (H, A, q) or a _Point.

    Stage j: U_j = u_b + τ Σ_l a_jl(τL) (F_l − L(U_l − u_b)), written as the increment (X G′, X) with
    X = τ Σ_l a_jl(0) P_l + B ∘ 1wᵀ, w = τ Q Σ_l [−a_jl(0) ŝ_l + Σ coef·cτ φ_{k+1}(cτλ)(ĝ_l − λ ŝ_l)]
    (ŝ_l = Qᵀ Vᵀ(U_l − u_b), ĝ_l = Qᵀ Vᵀ F_l), from φ_k(cτUVᵀ) = I/k! + cτ U φ_{k+1}(cτK) Vᵀ.  The
    eigen-coordinate sums are one product per row with coefficients formed once per step size
    (:class:`_CompiledRows`).
    """
    if base.g is None or base.g_lin is not lin:
        base.g, base.g_lin = lin.Vt(base.FH), lin
    comp = tab.compiled
    coefs = lin.coefficients(tab, tau)
    s = len(tab.c)
    gs = torch.zeros((2, s, lin.lam.numel()), dtype=lin.lam.dtype, device=lin.lam.device)  # [ĝ_l; ŝ_l]
    gs[0, 0] = base.g
    P = [base.P]
    fint = [base.fint]

    def increment(r):
        return _increment(comp.a0[r], coefs[r], P, gs, lin, tau)

    weights = comp.a0[s - 1]  # the b-row's classical weights: the integrals' quadrature (Simpson's rule here)
    for j in range(1, s):
        X = increment(j - 1)
        Y = flow.mulG(X)
        H = base.H + Y
        # (stages 2 and 3 of the Hochbruck–Ostermann method have weight 0 there: no integrands, as DOP853's 2–5)
        pt = flow.evaluate(base.t + tab.c[j] * tau, H, None, None, monitor, integrands=bool(weights[j]))
        P.append(pt.P)
        gs[:, j] = lin.Vt(torch.stack([pt.FH, Y]))
        fint.append(pt.fint)
    if stages is not None:
        stages.update(P=P, gs=gs, fint=fint)
    X = increment(s - 1)
    H = base.H + flow.mulG(X)
    A = base.A + X
    q = _integrals_over(flow, lin, base, tau, weights, tab.c, fint) if flow.observed else None
    if evaluate_end:
        return flow.evaluate(base.t + tau, H, A, q, monitor)
    return H, A, q


# The running integrals over an exprk4 step.  The step's classical weights (Simpson's rule on the nodes 0, ½, 1)
# integrate smooth integrands well, but |L̇| = rᵀMr and |L̇|^½ decay like e^{−2μ_k s} in the modes μ_k of M, and
# exprk4's steps reach τμ_k ≫ 1 (linear σ: whole horizons in one step): Simpson's rule then misses the integral of
# |L̇| by up to 12 % per step (τμ = 2.5), which showed as a 0.7 % gap in the energy identity L₀ − L_t = ∫|L̇| on
# a linear flow.  So the two are integrated with the step's own linearization as a control variate: with M_n = −K
# and ρ = Qᵀr_n (eigen-coordinates of K), the model |L̇|(s) ≈ Σ_k μ_k ρ_k² e^{−2μ_k s} (exact for linear σ, where
# ṙ = −Mr with M constant) is integrated exactly (|L̇|: Σ_k ρ_k²(1 − e^{−2μ_kτ})/2) or by a fine Gauss–Legendre
# rule on geometrically growing pieces (|L̇|^½), and Simpson's rule is left with the difference between the
# integrand and the model, which is smooth.  Exact for linear σ; where τμ ≪ 1 the correction vanishes.
_I_SQRT, _I_ABS = INTEGRALS.index("sqrt_abs_dL"), INTEGRALS.index("abs_dL")
_GL_POINTS = 16


@functools.lru_cache(maxsize=4)
def _gauss_legendre(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the k-point Gauss–Legendre rule on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(k)
    return (x + 1.0) / 2.0, w / 2.0


def _increment(a0, C: torch.Tensor, P: list, gs: torch.Tensor, lin: _Linearization, tau: float) -> torch.Tensor:
    """A tableau row's increment X = τ Σ_l a0_l P_l + τ B ∘ 1(Q what)ᵀ, what = Σ_l C_g,l ĝ_l + C_s,l ŝ_l (see
    :func:`_substep`): a0 its classical weights, C its eigen-coordinate coefficients (:meth:`_CompiledRows.
    coefficients`), P the stages' P, gs = [ĝ; ŝ] (2, s, n) — columns past C's unread."""
    X = None
    for l, a in enumerate(a0):
        if a:
            X = (tau * a) * P[l] if X is None else X.add_(P[l], alpha=tau * a)
    what = (C * gs[:, : C.shape[1]]).sum(dim=(0, 1))
    return X.addcmul_(lin.B, lin.Q @ what, value=tau)


def _integrals_over(flow: _Flow, lin: _Linearization, base: _Point, tau: float, weights, nodes, fint: list,
                    span: float | None = None) -> torch.Tensor:
    """The running integrals at base.t + span (default τ) from the stages' integrands ``fint`` (None where the
    weight is 0) by the quadrature τ Σ_l weights_l fint_l, with the control variate of ∫|L̇| and ∫|L̇|^½, and ∫η
    by :func:`_jump_integral`."""
    q = base.q.clone()
    for bl, fl in zip(weights, fint):
        if bl:
            q.add_(fl, alpha=tau * bl)
    _correct_dL_integrals(lin, base, tau, weights, nodes, q, span)
    if flow.jump:
        _jump_integral(flow, base, tau, 1.0 if span is None else span / tau, fint, q)
    return q


# ∫η (η ∈ [0, 1] jumps whenever a feature crosses an edge of the active interval, eq. 18).  The step's Simpson
# weights (1/6, 2/3, 1/6 on the nodes 0, ½, 1) are positive, but the dense output's at θ are not — stage 4's
# weight −θ²/2 + 2θ³/3 < 0 for θ < 3/4 — so a jump of η inside a step moved the saved ∫η backwards (an audit: 6e-3
# down over one output interval, 5 % of the value).  So ∫η takes the positive-weight rule of the explicit methods
# (:class:`gflow.solve.rk.JumpQuadrature`, the trapezoidal rule on the piecewise-linear interpolant of the samples
# at the nodes 0, ½, 1 — stages 1, 5, 4) in the step and in its dense output alike: each step adds τ times a
# convex combination of the sampled η, and the dense values grow with θ up to the step's end value.


@functools.lru_cache(maxsize=4)
def _jump_rule(weights: tuple) -> tuple[tuple[int, ...], JumpQuadrature]:
    """The stages a tableau's b-row ``weights`` reads (those with integrands) and the JumpQuadrature on their
    nodes."""
    stages = tuple(l for l, b in enumerate(weights) if b)
    return stages, JumpQuadrature([HOCHBRUCK_OSTERMANN.c[l] for l in stages])


def _jump_integral(flow: _Flow, base: _Point, tau: float, theta: float, fint: list, q: torch.Tensor) -> None:
    """Set ∫η's entries of q (the integrals at base.t + θτ) by :class:`JumpQuadrature` over [0, θ] from the
    stages' integrands ``fint`` (see above)."""
    stages, rule = _jump_rule(HOCHBRUCK_OSTERMANN.compiled.a0[len(HOCHBRUCK_OSTERMANN.c) - 1])
    w = rule.full if theta == 1.0 else rule.weights(theta)  # (the whole step's, most calls: 40 µs a weights())
    for i in flow.jump:
        q[i] = base.q[i] + tau * sum(float(wl) * fint[l][i] for wl, l in zip(w, stages))


def _integral_sqrt_model(mu: torch.Tensor, w: torch.Tensor, tau: float) -> float:
    """∫₀^τ (Σ_k w_k e^{−2μ_k s})^½ ds (w, μ ≥ 0) by 16-point Gauss–Legendre on the pieces [0, h₀], [h₀, 2h₀],
    [2h₀, 4h₀], … with 2μ_max h₀ ≤ 1: every piece sees each exponential fall by at most e^{−2μa} over [a, 2a],
    which the rule resolves far below rounding where the piece still carries weight."""
    mu_max = float(mu.max()) if mu.numel() else 0.0
    h0 = tau if 2.0 * mu_max * tau <= 1.0 else 0.5 / mu_max
    edges = [0.0, h0]
    while edges[-1] < tau:
        edges.append(min(2.0 * edges[-1], tau))
    x, gw = _gauss_legendre(_GL_POINTS)
    a, b = np.asarray(edges[:-1]), np.asarray(edges[1:])
    nodes = (a[:, None] + (b - a)[:, None] * x[None, :]).ravel()
    weights = ((b - a)[:, None] * gw[None, :]).ravel()
    s = torch.as_tensor(nodes, dtype=mu.dtype, device=mu.device)
    vals = (torch.exp(-2.0 * s[:, None] * mu[None, :]) @ w).clamp_min(0.0).sqrt()
    return float(torch.as_tensor(weights, dtype=mu.dtype, device=mu.device) @ vals)


def _correct_dL_integrals(lin: _Linearization, base: _Point, tau: float, weights, nodes, q: torch.Tensor,
                          span: float | None = None) -> None:
    """Replace the quadrature of the model part of |L̇| and |L̇|^½ in q (the step's running integrals) by its
    exact / finely resolved integral (see above).  The quadrature is τ Σ_l weights_l f(nodes_l τ) over [0, span]
    (span = τ by default; a dense output's span θτ < τ reads the step's nodes)."""
    if base.r is None:
        return
    span = tau if span is None else span
    mu = (-lin.lam).clamp_min(0.0)  # M_n's eigenvalues (K = −M_n is negative semi-definite up to rounding)
    rho2 = (lin.Q.T @ base.r) ** 2
    w = mu * rho2  # the model: |L̇|(s) = Σ_k w_k e^{−2μ_k s}
    c = torch.as_tensor(nodes, dtype=mu.dtype, device=mu.device)
    b = torch.as_tensor(weights, dtype=mu.dtype, device=mu.device)
    at_nodes = torch.exp(-2.0 * tau * c[:, None] * mu[None, :]) @ w  # the model at the stage nodes
    exact_abs = 0.5 * float((rho2 * -torch.expm1(-2.0 * span * mu)).sum())  # ∫₀^span μρ² e^{−2μs} ds
    q[_I_ABS] += exact_abs - tau * float(b @ at_nodes)
    q[_I_SQRT] += _integral_sqrt_model(mu, w, span) - tau * float(b @ at_nodes.clamp_min(0.0).sqrt())


# ---------------------------------------------------------------------------------------------------------
# Dense output
#
# The Hochbruck–Ostermann step is the exponential quadrature of the quadratic that interpolates the nonlinear
# remainder N at the nodes 0, ½, 1 (stages 1, 5, 4): with Z = θτL and N(sτ) ≈ N₁ + s(−3N₁ + 4N₅ − N₄) +
# s²(2N₁ − 4N₅ + 2N₄),
#
#     u(θτ) = e^{Z}u_n + θτ [φ₁(Z)N₁ + θφ₂(Z)(−3N₁ + 4N₅ − N₄) + 2θ²φ₃(Z)(2N₁ − 4N₅ + 2N₄)],
#
# which at θ = 1 is the step's b-row (φ₁ − 3φ₂ + 4φ₃, 4φ₂ − 8φ₃, −φ₂ + 4φ₃).  So an output time inside an accepted
# step costs no evaluation: the same quadrature to θτ (exact for linear σ, where N is constant).  Its error is
# not the step's (Simpson's superconvergence at θ = 1 is lost inside), so it is taken only where an estimate of what
# the quadratic interpolant misses is within the tolerance by the step's own norms (those of [H, A] and of the
# residual, as the steps are held); elsewhere the output costs an extra step of the method from the step's start
# (≈ 4 evaluations).  The estimate is the quadrature of the cubic term of the interpolant through one more node,
# the previous step's start u_{n−1} at s = −ρτ (its N under this step's L costs two projections Vᵀ, no product
# with G): with c₃ = N[−ρτ, 0, τ/2, τ] the divided difference, the cubic's quadrature less the quadratic's is
#
#     ∫₀^{θτ} e^{(θτ−s)L} c₃ s(s − τ/2)(s − τ) ds = τ Σ_j w_j N_j [½θ²φ₂ − 3θ³φ₃ + 6θ⁴φ₄](θτL),
#
# w_j = 1/Π_{k≠j}(x_j − x_k) over the nodes x = (0, ½, 1, −ρ) — c₃τ⁴θ²(1 − θ)²/4 as L → 0: the leading term of
# the quadratic's error, 0 at θ = 1.  (The first step, and the first after a hand-over, have no u_{n−1}: the
# quadratic part of the interpolant, its difference to the linear one through N₁, N₄, stands in — an O(τ³) bound
# of that O(τ⁴) term.)  That bound, which every step took before, turned down 86–90 % of the output times at
# Experiment 1 n = 80 and 160 (rtol 1e-6; each then an extra step: 22 687 evaluations for 5 001 output times against
# 5 025 for the default 239, themselves 199 extra steps) while the dense outputs' errors against a reference of 8
# fresh-linearization steps were ≤ 1.07 in the step's norms — the outputs' error is mostly the step's own, held to
# ≤ 1.  Over eight problems (tanh n = 20…160, erf, softplus, gelu; rtol 1e-4…1e-9; 2 300 output times) the cubic
# estimate took 98–100 % of them, those with errors ≤ 1.08 (2.4 the worst of all, turned down by it).  The estimate
# is only as good as the step's own, which it adds (a review: softplus under the mean-field scaling with a small
# W0, rtol 1e-6, took outputs 4–7 off where the step's end was 7.2 off itself — no worse than the extra steps'
# start).  Where the residual is held to its rounding floor (L ≲ 1e-11 at rtol 1e-10) the dense values are a few
# rtol off in L where the extra steps were within it (4.3 against 0.08 at L = 5.5e-12; both 5.2 below 1e-12).


@functools.lru_cache(maxsize=64)
def _dense_rows(theta: float) -> _CompiledRows:
    """The dense output at θ and its estimate (quadratic − linear interpolant of N), as tableau rows over the five
    stages: (coef, k, c) meaning coef·φ_k(cτL) in the increment τ Σ_l (...)."""
    t2, t3 = theta * theta, theta ** 3
    est = (((-2.0 * t2, 2, theta), (4.0 * t3, 3, theta)), (), (),
           ((-2.0 * t2, 2, theta), (4.0 * t3, 3, theta)), ((4.0 * t2, 2, theta), (-8.0 * t3, 3, theta)))
    return _CompiledRows([_dense_row(theta), est])


def _dense_row(theta: float) -> tuple:
    """The dense output at θ (the step's quadrature of the quadratic interpolant of N taken to θτ) as a tableau row
    over the five stages."""
    t2, t3 = theta * theta, theta ** 3
    return (((theta, 1, theta), (-3.0 * t2, 2, theta), (4.0 * t3, 3, theta)), (), (),
            ((-t2, 2, theta), (4.0 * t3, 3, theta)), ((4.0 * t2, 2, theta), (-8.0 * t3, 3, theta)))


def _cubic_estimate_row(theta: float, rho: float) -> tuple:
    """The dense output's error estimate at θ (see above) as a tableau row over the five stages and u_{n−1} at
    s = −ρτ (column 5): the nodes 0, ½, 1 are stages 1, 5, 4."""
    nodes = {0: 0.0, 4: 0.5, 3: 1.0, 5: -rho}
    row: list = [()] * 6
    for j, xj in nodes.items():
        w = 1.0 / math.prod(xj - xk for k, xk in nodes.items() if k != j)
        row[j] = ((0.5 * w * theta**2, 2, theta), (-3.0 * w * theta**3, 3, theta), (6.0 * w * theta**4, 4, theta))
    return tuple(row)


def _dense_output(flow: _Flow, lin: _Linearization, base: _Point, tau: float, theta: float, stages: dict,
                  new: _Point, rtol: float, atol: float, prev: _Point | None = None, step_err: float = 0.0):
    """(H, A, q) at base.t + θτ inside the accepted step base → new (stages: its :func:`_substep` record), or None
    where the estimate exceeds the tolerance (the caller then takes an extra step).  ``prev``: the previous
    accepted step's start u_{n−1}, the fourth node of the estimate (None: the O(τ³) bound stands in); with it the
    estimate is added to ``step_err``, the step's own (the stages' errors, which it leaves out)."""
    P, gs = stages["P"], stages["gs"]
    if prev is None:
        comp = _dense_rows(theta)
        P_est, gs_est = P, gs
    else:
        comp = _CompiledRows([_dense_row(theta), _cubic_estimate_row(theta, (base.t - prev.t) / tau)])
        if "gs_prev" not in stages:  # [ĝ; ŝ] of u_{n−1} under this step's L, once per step
            g_s = torch.stack([lin.Vt(prev.FH), lin.Vt(prev.H - base.H)])
            stages["gs_prev"] = torch.cat([gs, g_s[:, None]], dim=1)
        P_est, gs_est = [*P, prev.P], stages["gs_prev"]
    C_rows = comp.coefficients(tau, lin.lam)
    eX = _increment(comp.a0[1], C_rows[1], P_est, gs_est, lin, tau)
    eH = flow.mulG(eX)
    X = _increment(comp.a0[0], C_rows[0], P, gs, lin, tau)
    H = base.H + flow.mulG(X)
    A = base.A + X
    # the step's norms: [H, A], and the residual's relative share at the step's end (the smaller residual)
    err = max(_rms(eH, base.H, H, rtol, atol), _rms(eX, base.A, A, rtol, atol), _residual_err(flow, new, eH, rtol))
    if not err + (0.0 if prev is None else step_err) <= 1.0:
        return None
    q = (_integrals_over(flow, lin, base, tau, comp.a0[0], HOCHBRUCK_OSTERMANN.c, stages["fint"], theta * tau)
         if flow.observed else None)
    return H, A, q


# ---------------------------------------------------------------------------------------------------------
# The driver


def _rms(diff: torch.Tensor, ref1: torch.Tensor, ref2: torch.Tensor, rtol: float, atol: float) -> float:
    scale = torch.maximum(ref1.abs(), ref2.abs()).mul_(rtol).add_(atol)
    return float(torch.linalg.vector_norm(diff / scale)) / math.sqrt(max(diff.numel(), 1))


def _initial_step(flow: _Flow, p: _Point, rtol: float, atol: float, span: float) -> float:
    """Hairer–Wanner's first guess 0.01‖y‖/‖y′‖ (weighted), capped at the span."""
    core = torch.stack([p.H, p.A])
    sc = atol + rtol * core.abs()
    d0 = float(torch.sqrt(torch.mean((core / sc) ** 2)))
    d1 = float(torch.sqrt(torch.mean((torch.stack([p.FH, p.P]) / sc) ** 2)))
    h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    return min(h, span)


def run_exprk(field: AbstractField, grid: np.ndarray, rtol: float, atol: float, recorder: Recorder,
              monitor: Monitor, *, step: float | None = None, method: str = "exprk4",
              explicit_space: str = "feature") -> dict:
    """Integrate ``field`` over ``grid`` with exprk4, recording at every grid time; returns extra stats.

    Adaptive (embedded error estimate, PI control) when ``step`` is None; otherwise fixed steps of exactly ``step`` (the last one
    shortened to land on each grid time), with no error control: for convergence studies.
    ``method`` "dop853+exprk4" / "dopri5+exprk4" (adaptive only) first runs that explicit method and hands over to
    exprk4 where exprk4 pays (:class:`_Handover`); the hand-over time is ``switch_time`` in the stats (None: the
    explicit method reached t1).  ``explicit_space``: the space of that explicit phase, ``"feature"`` or ``"auto"``
    (weight space where it is the cheaper, :func:`gflow.fields.auto_space`: :class:`_WeightPhase`).
    Raises :class:`Abort` with a status on failure (the partial trajectory stays in ``recorder``).
    """
    flow = _Flow(field)
    extra = {"n_linearizations": 0, "flops": 0.0, "flops_per_eval": 2.0 * flow.g_flops}
    monitor.extra_stats = extra  # read by simulate() also after a failure
    k0, h0, explicit_flops = 1, None, 0.0
    try:
        if method in SWITCHING_METHODS:
            if step is not None:
                raise ValueError(f"method {method!r} is adaptive; step must be None, got {step}")
            handover, explicit_flops = _explicit_phase(flow, grid, method.split("+")[0], rtol, atol, recorder,
                                                       monitor, extra, explicit_space)
            if handover is None:  # the explicit method reached t1
                return extra
            p, lin0, k0, h0, handover_step = handover
        else:
            state0 = field.initial_state()
            recorder.record(0.0, state0)
            H, A, q = flow.split(state0)
            try:
                p = flow.evaluate(0.0, H, A, q, monitor)
            except _NonFinite as exc:
                monitor.raise_nonfinite(0.0, exc.H, net=flow.net)
            lin0 = None
        if step is not None:
            _run_fixed(flow, p, grid, step, recorder, monitor, extra)
        elif method in SWITCHING_METHODS:
            extra["phase_times"] = [p.t]  # where the run changed method: explicit → exprk4 → explicit → …
            while True:
                try:
                    _run_adaptive(flow, p, grid, rtol, atol, recorder, monitor, extra, k=k0, h=h0, lin=lin0,
                                  give_back=handover_step)
                    break
                except _GiveBack as back:
                    if extra.get("give_back_time") is None:  # (the first give-back)
                        extra.update(give_back_time=back.p.t, give_back_reason=back.reason)
                    extra["phase_times"].append(back.p.t)
                    hook = _handover_again(flow, method.split("+")[0], rtol, atol, monitor,
                                           len(extra["phase_times"]) // 2)
                    n0 = monitor.n_f_evals
                    try:
                        handover = _finish_explicitly(flow, back.p, back.k, grid, method.split("+")[0], rtol, atol,
                                                      recorder, monitor, hook)
                    finally:  # (also where the finish stops early: its evaluations were made)
                        trial_evals = 0 if hook is None else hook.trial_evals
                        extra["handover_trials"] += 0 if hook is None else hook.trials
                        explicit_flops += (monitor.n_f_evals - n0 - trial_evals) * flow.g_flops
                    if handover is None:  # the explicit method reached t1
                        break
                    p, lin0, k0, h0, handover_step = handover
                    extra["phase_times"].append(p.t)
                    extra["n_linearizations"] += 1  # the trial's, which exprk4's first step re-uses
        else:
            _run_adaptive(flow, p, grid, rtol, atol, recorder, monitor, extra, k=k0, h=h0, lin=lin0)
    finally:
        extra["flops"] = flow.flops + explicit_flops
    monitor.partial = None
    return extra


# The hand-over.  While the features still move, an explicit Runge–Kutta step is cheaper than an exprk4 step
# (5 evaluations, 11 G-products and an n×n eigenproblem) and the two take similar steps; once the residual has
# converged the explicit method sits at its stability limit while exprk4's steps grow with the slow dynamics
# (on the long-horizon bench problem, Exp 1 n = 40 to t = 2000: exprk4's steps average 0.07 for t < 10 against
# dopri5's 0.15, but 71 beyond t = 500 against dopri5's 4).  So the explicit method runs first, and at
# geometrically spaced accepted steps (16, 32, 48, …, then every quarter of the steps so far) a trial exprk4
# step of _HANDOVER_FACTOR explicit steps' worth of evaluations (τ = 24/(evaluations per explicit step) × h)
# is taken from the current state: exprk4 takes over once that trial meets the tolerance with room to grow
# (err ≤ _HANDOVER_ERR), i.e. where one exprk4 step already replaces more explicit steps than it costs.  The trial
# is judged by the node-only estimate (judged by the quadratic one, the hand-over came later: t = 632 against < 600
# in test_switching_hands_over_as_early_with_many_output_times_as_with_two), but it samples the defect
# at ¾ too, and exprk4's first step gets its size from the norm it will be held to (see the estimate below: sized by
# the node-only one, a first step held to the quadratic one was rejected).  With space="auto" the explicit phase runs
# in weight space where that is the cheaper (:class:`_WeightPhase`).
_HANDOVER_EVALS = 24.0  # an exprk4 step costs ≈ 5 evaluations + 6 G-products + an eigenproblem ≈ 2 dopri5 steps
_HANDOVER_ERR = 0.5
_HANDOVER_FIRST = 16


class _Handover:
    """The ``until`` hook of the explicit phase: True once a trial exprk4 step of τ = factor·h passes."""

    def __init__(self, flow: _Flow, rtol: float, atol: float, evals_per_step: int, monitor: Monitor,
                 to_feature=None):
        self.flow, self.rtol, self.atol, self.monitor = flow, rtol, atol, monitor
        self.to_feature = to_feature  # the explicit engine's state → the feature-space state (None: it is one)
        self.factor = _HANDOVER_EVALS / evals_per_step
        self.accepted, self.next_trial, self.trials = 0, _HANDOVER_FIRST, 0
        self.trial_evals = 0  # the trials' evaluations (counted by the monitor, their flops by the flow)
        self.start = None  # (p, lin, first exprk4 step) of the trial that passed: exprk4 starts from them
        self.explicit_step = math.nan  # the explicit method's step at the hand-over
        self.t_prev = 0.0

    def __call__(self, eng) -> bool:
        self.accepted += 1
        taken, self.t_prev = eng.t - self.t_prev, eng.t
        if self.accepted < self.next_trial:
            return False
        self.next_trial = self.accepted + max(_HANDOVER_FIRST, self.accepted // 4)
        # the explicit step: the one taken, where the proposal is larger — the engine shortens steps to h·ρ ≤ 5
        # (3 for dopri5: the stability guard), and the controller then proposes steps past the stability limit
        # that the guard shortens again; trials at factor × those proposals failed for long (Exp 1 n = 40 to
        # t = 2000 with the default 239 output times: hand-over at t = 822 instead of 441)
        tau = min(self.factor * min(eng.h, taken), eng.t1 - eng.t)
        if not tau > 0:
            return False
        flow = self.flow
        y = eng.y.view(eng.shape)
        H, A, q = flow.split(y if self.to_feature is None else self.to_feature(y))
        self.trials += 1
        n0 = self.monitor.n_f_evals
        try:
            p = flow.evaluate(eng.t, H, A, q, self.monitor)
            lin = _Linearization(flow, p.H, p.B)
            _, errs = _attempt(flow, lin, p, tau, self.rtol, self.atol, self.monitor, sample=True)
        except _NonFinite:
            return False
        finally:  # (their flops are in flow.flops: not the explicit phase's)
            self.trial_evals += self.monitor.n_f_evals - n0
        if errs[0] <= _HANDOVER_ERR:  # (the node-only estimate: whether exprk4 pays, see above)
            err = _held_to(errs)  # the first step's size from the norm it will be held to
            lin.t0 = p.t
            self.explicit_step = min(eng.h, taken)
            self.start = (p, lin, tau * min(_FAC_MAX, _SAFETY * max(err, 1e-10) ** (-1.0 / _EST_ORDER)))
            return True
        return False


class _WeightPhase:
    """The explicit phase in weight space, where that space is the cheaper (:func:`gflow.fields.auto_space` with
    the Runge–Kutta cost of a state entry; always when 2D < n): its field, and the exact map
    of its states to the feature-space state [H, A] (+ the integrals) that exprk4 and the recorder read.

    H = βWΦᵀ.  A is not determined by W when n > D (only AΦ is: W = W₀ − ℓαβ AΦ), but everything the flow
    reports depends on A only through AΦ (W, the test features H₀,te − γ A G_cross with G_cross = ΦΦ_teᵀ/D, and
    ‖W − W₀‖), and A never feeds back into the flow: A = (W₀ − W)Φ⁺/(ℓαβ), the minimum-norm solution (Φ⁺ the
    pseudo-inverse, ΦΦ⁺Φ = Φ), is exact for all of it.  Why: with 2D < n the explicit method's cost is ≈ 4mDn
    flops per evaluation in both spaces (G is applied in factored form), but its stage combinations stream a state
    of mD entries instead of 2mn, which made the explicit phase 2.0–2.7× faster on Experiment-1 problems with
    n = 80, 160 (D = 20).  Measured on the same problems: the minimum-norm A (≈ 100× smaller than ∫P there)
    changed exprk4's evaluations after the hand-over by 0–5 %.
    """

    def __init__(self, flow: _Flow):
        base = WeightSpaceField(flow.pb)
        self.field = ObservedField(base, flow.field.interval, flow.field.lam_min_M) if flow.observed else base
        self.flow, self.base = flow, base
        net = flow.net
        self.W0 = net.W0
        self.R = torch.linalg.pinv(flow.pb.Phi).mul_(1.0 / (net.lr * net.alpha * net.beta))  # Φ⁺/(ℓαβ), (D, n)

    def to_feature(self, y: torch.Tensor) -> torch.Tensor:
        """The feature-space state (the layout of ``flow.field``) of the weight-space state y."""
        core = self.field.core(y) if self.flow.observed else y
        H = self.base.train_features(core)
        A = torch.sub(self.W0, core) @ self.R
        q = self.field.integrals(y) if self.flow.observed else None
        return self.flow.join(H, A, q)


class _FeatureRecorder:
    """The recorder of the feature-space field, fed states of the explicit phase's weight-space engine."""

    def __init__(self, recorder: Recorder, to_feature):
        self.recorder, self.to_feature = recorder, to_feature

    def record(self, t: float, state: torch.Tensor, **kw) -> None:
        self.recorder.record(t, self.to_feature(state), **kw)

    def record_many(self, ts, states: torch.Tensor) -> None:
        for t, state in zip(ts, states):  # (the feature states one by one: to_feature forms a new state each)
            self.recorder.record(t, self.to_feature(state))


def _explicit_phase(flow: _Flow, grid, explicit: str, rtol, atol, recorder, monitor, extra, space: str = "feature"):
    """Run the native ``explicit`` method until the hand-over; returns ((start point, its linearization, next
    output index, first exprk4 step) or None when it reached t1, the explicit phase's flops).  ``space="auto"``
    runs it in weight space where that is the cheaper (:class:`_WeightPhase`)."""
    from . import rk

    weight = None
    if space == "auto" and auto_space(flow.pb, RK_FLOPS_PER_STATE_ENTRY) == "weight":
        weight = _WeightPhase(flow)
    field = flow.field if weight is None else weight.field
    atol_v = field.atol_vector(atol) if flow.observed else atol
    evals = rk.SCHEMES[explicit].stages  # per accepted step (FSAL)
    hook = _Handover(flow, rtol, atol, evals, monitor, None if weight is None else weight.to_feature)
    n0 = monitor.n_f_evals
    extra.update(explicit_method=explicit, explicit_space=field.space, switch_time=None,
                 handover_trials=0)  # (also if the phase fails)
    rec = recorder if weight is None else _FeatureRecorder(recorder, weight.to_feature)
    eng = rk.Engine(field, grid, explicit, rtol=rtol, atol=atol_v, recorder=rec, monitor=monitor, until=hook)
    factor, monitor.stall_factor = monitor.stall_factor, 40.0  # (the hand-over ends the explicit phase: Monitor)
    try:
        eng.run()
    finally:
        monitor.stall_factor = factor
        extra["handover_trials"] = hook.trials
        if weight is not None and monitor.partial is not None:  # the partial trajectory in the caller's layout
            t_p, y_p = monitor.partial
            monitor.partial = (t_p, weight.to_feature(y_p.view(eng.shape)))
    explicit_flops = (monitor.n_f_evals - n0 - hook.trial_evals) * (
        flow.g_flops if weight is None else weight.base.flops_per_eval())
    if hook.start is None:  # the explicit method reached t1
        return None, explicit_flops
    p, lin, h0 = hook.start
    extra["switch_time"] = p.t
    extra["n_linearizations"] += 1  # the trial's, which exprk4's first step re-uses
    return (p, lin, eng.k, h0, hook.explicit_step), explicit_flops


def _handover_again(flow: _Flow, explicit: str, rtol, atol, monitor, give_backs: int) -> _Handover | None:
    """The hand-over hook of the explicit phase after the ``give_backs``-th give-back: its first trial after
    16·2^give_backs steps, so that a run cannot bounce between the two methods; None after :data:`_MAX_GIVE_BACKS`
    give-backs (the explicit method then finishes the run)."""
    from . import rk

    if give_backs >= _MAX_GIVE_BACKS:
        return None
    hook = _Handover(flow, rtol, atol, rk.SCHEMES[explicit].stages, monitor)
    hook.next_trial = _HANDOVER_FIRST * 2 ** give_backs
    return hook


def _finish_explicitly(flow: _Flow, p: _Point, k: int, grid, explicit: str, rtol, atol, recorder, monitor,
                       hook: _Handover | None):
    """Run the native ``explicit`` method in feature space from ``p`` (next output index ``k``) after a give-back
    (:class:`_GiveBack`), handing over to exprk4 again where ``hook`` (:func:`_handover_again`) shows it pays, else
    to t1.  Returns (start point, its linearization, next output index, first exprk4 step, the explicit step) for
    the next hand-over, or None where it reached t1.

    Why not final: exprk4's steps can dip where the features move again late in a long run (Exp 1 n = 80, rtol
    1e-6: from ≈ 70 to 2 at t = 28 000 of 50 000) and grow again after it; a final give-back left the explicit
    method at its stability limit to t1 (27 900 evaluations against 4 000)."""
    from . import rk

    field = flow.field
    atol_v = field.atol_vector(atol) if flow.observed else atol
    eng = rk.Engine(field, grid, explicit, rtol=rtol, atol=atol_v, recorder=recorder, monitor=monitor, until=hook)
    state = flow.join(p.H, p.A, p.q).reshape(-1)
    factor = monitor.stall_factor
    if hook is not None:
        monitor.stall_factor = 40.0  # (a hand-over may end the phase: as in _explicit_phase)
    try:
        # (the engine's own resume: h = NaN picks a first step there, as at t = 0)
        eng.run({"method": eng.scheme.name, "t": float(p.t), "k": int(k), "i": 0, "h": math.nan, "err_old": 1e-4,
                 "rejected": False, "rho": (0.0, 0.0), "rho_v": None, "rho_t": math.nan, "y": state,
                 "f0": torch.zeros_like(state)})
    finally:
        monitor.stall_factor = factor
    if hook is None or hook.start is None:
        return None
    p, lin, h0 = hook.start
    return p, lin, eng.k, h0, hook.explicit_step


def resolve_space(space: str) -> str:
    """The space exprk4 runs in: ``"feature"`` for ``"auto"``/``"feature"``; ValueError for ``"weight"``."""
    if space == "weight":
        raise ValueError(
            "method 'exprk4' integrates the feature-space state [H, A] (EQUATIONS.md §4), but space='weight' was "
            "given; use space='feature' or space='auto' (W is recovered exactly, and G = ΦΦᵀ/D is applied in "
            "factored form when D < n/2, so the cost per stage matches weight space)"
        )
    return "feature" if space == "auto" else space


def _record(flow: _Flow, recorder: Recorder, t: float, H, A, q):
    recorder.record(t, flow.join(H, A, q))


def _run_fixed(flow, p, grid, step, recorder, monitor, extra):
    from .ode import FixedGrid

    times = FixedGrid(grid, step)
    k = 1
    for i in range(1, len(times)):
        t_next = times[i]
        tau = t_next - p.t
        try:
            lin = _Linearization(flow, p.H, p.B)
            extra["n_linearizations"] += 1
            p = _substep(flow, lin, p, tau, monitor, evaluate_end=True)
        except _NonFinite as exc:
            monitor.raise_nonfinite(p.t + tau, exc.H, net=flow.net)
        p.t = float(t_next)
        monitor.partial = (p.t, flow.join(p.H, p.A, p.q))
        monitor.on_step(p.t - tau, tau, True)
        if k < len(grid) and abs(grid[k] - p.t) <= 1e-12 * max(monitor.time_unit, p.t):
            _record(flow, recorder, float(grid[k]), p.H, p.A, p.q)
            k += 1


def _reject_nonfinite(monitor: Monitor, t: float, tau: float, count: int, exc: _NonFinite | None = None,
                      net=None) -> float:
    """A trial step met a non-finite value (``exc``): retry with a 10× smaller step, or stop with status nonfinite."""
    if count >= _MAX_NONFINITE_REJECTS or 0.1 * tau < 1e-11 * max(monitor.time_unit, abs(t)):
        monitor.raise_nonfinite(t + tau, None if exc is None else exc.H, net=net)
    monitor.on_step(t, tau, False)
    return 0.1 * tau


# The error estimate (cf. Auzinger, Koch & Thalhammer's defect-based local error estimators).  The step is the
# exponential quadrature of the quadratic Ñ(s) that interpolates the non-stiff remainder N(u) = F(u) − L(u − u_n) at
# the nodes 0, ½, 1 (stages 1, 5, 4; "Dense output" below), i.e. the end point of the curve û(s),
# û′ = L(û − u_n) + Ñ(s).  Its defect d(s) = Ñ(s) − N(û(s)) gives the local error by the variation of constants,
# û(τ) − u(τ) = τ ∫₀¹ e^{(1−s)τL} d(sτ) ds up to a term J_N·(û − u) of higher order; with d a polynomial through
# samples, ∫₀¹ e^{(1−s)Z}s^k ds = k! φ_{k+1}(Z) gives e as tableau rows (:func:`_defect_row`).  d(0) = 0 and
# d(1) = N(U₄) − N(u_{n+1}) come free (F(u_{n+1}) is the next step's first stage); d(¾) costs one evaluation, at the
# dense output û(¾τ).  Three estimates, all O(τ⁴) (d = O(τ³)):
#
#   node-only  d through d(0), d(½) := 0, d(1):  e = τ b₄(τL)(N(u_{n+1}) − N(U₄)), b₄ = −φ₂ + 4φ₃ (the method with
#              stage 4 replaced by the new point); blind to the interpolation error of N, which vanishes at the nodes;
#   cubic      d through d(0), d(½) := 0, d(¾), d(1): the node-only one plus the interpolation error's cubic
#              s(s − ½)(s − 1), which integrates to 0 as τL → 0 (Simpson's symmetry) — so it equals the node-only
#              one wherever τλ is small in the modes that matter;
#   quadratic  d through d(0), d(¾), d(1) (no assumption at ½): e = τ[β_¾(τL) d(¾) + β₁(τL) d(1)],
#              β_¾ = (16/3)(φ₂ − 2φ₃), β₁ = 8φ₃ − 3φ₂, Ñ(¾) = −⅛N₁ + ¾N₅ + ⅜N₄.
#
# Once the loss has converged the steps reach τλ ≈ 1 in the slow modes of M that r still holds, the remainder N then
# carries their exponentials, which no quadratic follows, and the local error in r sits in the interpolation error
# the node-only estimate cannot see: one step from a converged state (tanh, n = 12, m = 32 at t = 100,
# |r| = 1.5e-3; Exp-1-like n = 20, m = 64 at t = 200; erf on D = 16 random features, n = 24 at t = 300),
# τ = 1 … 126, against a DOP853 rtol-1e-13 step: the node-only estimate of the relative error of r was 10–70×,
# 20–30 000× and 1–10× below the true one, the quadratic one 1.5–3.5×, 2–7× and 1.5–3× above it.  But the
# quadratic one is often 2–60× above the node-only one also before (where τλ is small and the node-only one holds,
# as its loss errors there show) and the sample costs an evaluation: exprk4 held to it on every step took
# 1.2–1.4× the flops to a 1e-6 loss error on benchmarks/bench_stiff.py's long problems (t = 50 000, not converged).
# So the steps are held to the node-only estimate, and every _DEFECT_EVERY-th trial step samples d(¾): where the
# cubic estimate exceeds _DEFECT_RATIO × the node-only one (its cubic part, which counts only where e^{(1−s)τL}
# breaks the symmetry, is what the node-only one misses), that step and every next one are sampled and held to the
# quadratic estimate, until a step where the cubic one is within _DEFECT_RATIO again.  Along the bench runs the
# cubic / node-only ratio (on every step) had medians 0.6–1.1 per tenth of a run and exceeded 2 on ≈ 1 % of the
# steps; along the five runs below its medians were 0.4–1.3 until the loss converged and 8–215 after.  Largest
# relative loss error over rtol
# (log L below L = 1e-12) against DOP853 rtol-1e-13 references at 13 saved times (tanh n = 12, m = 32 to t = 200;
# Exp-1-like n = 20, 40, m = 64 to 5 000; erf on D = 16 random features, n = 24, m = 32 to 5 000; softplus n = 16,
# m = 48 to 2 000), node-only → now at rtol 1e-4, 1e-6, 1e-8, 1e-10: tanh 2.9, 10.5, 28, 398 → 2.4, 6.2, 7.7, 7.6;
# the others 0.1–1.2, 1.7–5.4, 7.2–16, 75–247 → 0.2–0.3, 0.2–0.9, 0.2–0.9, 0.6–3.4 (at 1e-10 the 3.4 is at
# L = 3.5e-16, where δr ≈ 5e-16 is rounding and the residual's norm holds it to its floor, see _residual_err; above
# L = 1e-14: 0.5–1.6), for 1.12–1.72× the evaluations; on bench_stiff 1.02–1.03× the flops.  What tanh keeps was
# committed before its loss converged, where the node-only estimate holds [H, A] and r to rtol (its loss error at
# t = 63 was 1.6–2.1× rtol with either estimate), and grows ∝ t after: L ≈ ρ²e^{−2μt} with decay rates μ of M that
# move with H, so the relative error of L is ≈ 2tδμ = ln(L₀/L)·δμ/μ — 24× the relative error of μ at t = 200,
# L = 2.3e-11 (in log L, which the comparison uses from 1e-12 down, 7.7× rtol is 0.3×).  exprk4 held to the
# quadratic estimate on every step met it (≤ 1.4×) only by overestimating the error 2–60× before, which is what
# costs the 1.2–1.4× on the bench.
_DEFECT_NODE = 0.75  # where the defect is sampled, besides 0 and 1
_DEFECT_RATIO = 2.0  # the cubic estimate above this × the node-only one: hold the step to the quadratic one
_DEFECT_EVERY = 8  # one trial step in this many samples the defect while the node-only estimate holds (≈ 2.5 %)
_EST_ORDER = 4  # e = O(τ⁴)
# A switching method hands the run back to its explicit method where exprk4's steps collapse below the explicit steps
# they replaced (an exprk4 step costs about two explicit steps): on an Experiment-1-like net with inputs of norm
# ~75 (tanh, n = 15, d = 7, m = 16, rtol 1e-10) exprk4's steps collapsed from 0.5 to 1e-3 after the hand-over
# and the run stopped "stalled" at t = 210 of 700, which dop853 alone reaches (an audit).  Only a collapse, to
# below a quarter of the explicit step: exprk4's steps grow as the flow slows — giving back at exactly the explicit
# step (0.98× it, at t = 166 of 50 000, Exp 1 n = 80, rtol 1e-4, once the explicit steps were stability-guarded)
# left the explicit method to run to t1 in 59 000 evaluations against 1 570.  The explicit method may hand over
# again (:func:`_finish_explicitly`).
_GIVE_BACK_STEPS = 4
_GIVE_BACK_FRACTION = 0.25
_MAX_GIVE_BACKS = 6  # then the explicit method finishes the run
_PI_BETA1, _PI_BETA2 = 0.7 / _EST_ORDER, 0.4 / _EST_ORDER  # Gustafsson's PI controller
# Re-use the previous step's linearization L = J₁ (B = cσ′(H), the eigenpairs of K) while
# τ·max|λ(K)|·‖B(u_n) − B_L‖/‖B_L‖ ≤ _RELIN_TOL: the missing part of J₁ then acts as a non-stiff term of size
# ≲ _RELIN_TOL/τ, which the method integrates like J₂.  Off (0): measured on benchmarks/bench_stiff.py, 0.2
# saved 30 % of the flops at n = 160 (the eigenproblems) but cost up to 10× in the error of log L once the loss
# is small (the slow modes' exponentials e^{−τλ} then need the current K), which no norm of the estimate saw.
_RELIN_TOL = 0.0


def _embedded_error(flow: _Flow, lin: _Linearization, base: _Point, tau: float, stages: dict, new: _Point,
                    monitor: Monitor | None = None, tab: ExpTableau = HOCHBRUCK_OSTERMANN) -> list:
    """The error estimates (each its H and A parts) of the step base → new (see above): [node-only] without
    ``monitor``; with it also the defect at θ = ¾ (one evaluation, at the dense output), [node-only, cubic,
    quadratic].  Raises _NonFinite."""
    comp = tab.compiled
    C = lin.coefficients(tab, tau)
    s = len(tab.c)  # rows s …: the node-only estimate, the dense output at ¾, the cubic and the quadratic estimates
    P, gs = stages["P"], stages["gs"]
    XH = [new.FH, new.H - base.H]
    if monitor is not None:
        Y = flow.mulG(_increment(comp.a0[s + 1], C[s + 1], P, gs, lin, tau))
        pt = flow.evaluate(base.t + _DEFECT_NODE * tau, base.H + Y, None, None, monitor, integrands=False)
        XH += [pt.FH, Y]
    g = lin.Vt(torch.stack(XH)).reshape(len(XH) // 2, 2, -1).transpose(0, 1)  # [ĝ; ŝ] of the new point, (¾ sample)
    out = [_increment(comp.a0[s], C[s], [*P, new.P], torch.cat([gs, g[:, :1]], dim=1), lin, tau)]
    if monitor is not None:  # columns: the 5 stages, the ¾ sample, the new point
        cols = ([*P, pt.P, new.P], torch.cat([gs, g.flip(1)], dim=1))
        out += [_increment(comp.a0[r], C[r], *cols, lin, tau) for r in (s + 2, s + 3)]
    return [(flow.mulG(X), X) for X in out]


_QUAD = {0: lambda t: 1 - 3 * t + 2 * t * t, 4: lambda t: 4 * t - 4 * t * t, 3: lambda t: 2 * t * t - t}  # Ñ(θ)


def _defect_row(sampled: tuple, zero: tuple) -> tuple:
    """e = τ ∫₀¹ e^{(1−s)τL} d(sτ) ds, d the polynomial through d(0) = 0, d = 0 at the nodes ``zero`` and
    d(θ_j) = Ñ(θ_j) − N(û(θ_j)) at ``sampled`` + (1,) (û(τ) = u_{n+1}, Ñ(1) = N₄), as a tableau row (coef, k, c):
    coef·φ_k(cτL) over the columns N₁ … N₅ (stages), N(û(θ_j)), N(u_{n+1}), from ∫₀¹ e^{(1−s)Z}s^k ds =
    k! φ_{k+1}(Z)."""
    thetas = (*sampled, 1.0)
    nodes = (0.0, *zero, *thetas)
    est = [[] for _ in range(5 + len(thetas))]
    for j, theta in enumerate(thetas):
        ell = np.poly1d([1.0])  # the Lagrange polynomial of θ on the nodes
        for x in nodes:
            if x != theta:
                ell = ell * np.poly1d([1.0, -x]) / (theta - x)
        for k, a in enumerate(ell.coeffs[::-1]):
            if a == 0.0:
                continue
            w = float(a) * math.factorial(k)
            for col, weight in _QUAD.items():
                if weight(theta):
                    est[col].append((w * weight(theta), k + 1, 1.0))
            est[5 + j].append((-w, k + 1, 1.0))
    return tuple(tuple(terms) for terms in est)


@functools.lru_cache(maxsize=1)
def _estimate_rows() -> tuple:
    """The node-only estimate, the dense output at ¾, the cubic and the quadratic estimate (see above)."""
    return (_defect_row((), (0.5,)), _dense_row(_DEFECT_NODE), _defect_row((_DEFECT_NODE,), (0.5,)),
            _defect_row((_DEFECT_NODE,), ()))


def _residual_err(flow: _Flow, new: _Point, eH: torch.Tensor, rtol: float) -> float:
    """‖δr‖ / (rtol ‖r‖ + floor) with δr = α Σ_i c_i σ′(H_i·) ∘ eH_i· the residual's share of the estimate.

    Once the loss is small the state barely moves (its increments are ∝ r), so a norm on [H, A] alone no longer
    sees the relative error of r, i.e. of log L: the steps would then grow to the horizon.  Bounding the
    relative error of r keeps log L accurate until rtol‖r‖ meets the rounding noise of δr, where the bound
    turns absolute at 100× that noise: the estimate is a difference of states of size |H|, so its share of r
    carries noise ≈ ε α Σ_i |c_i σ′_ia H_ia|, plus ε|y| from forming r.  A flow at rest (r = 0, H = 0 and y = 0,
    e.g. W0 = 0 with zero targets: no noise either) has δr = 0, i.e. no error (0, not 0/0).
    """
    B = new.B
    dr = float(torch.linalg.vector_norm(flow.alpha * (B * eH).sum(dim=0)))
    if dr == 0.0:
        return 0.0
    noise = flow.alpha * (B.abs() * new.H.abs()).sum(dim=0) + flow.y.abs()
    floor = 1e2 * torch.finfo(eH.dtype).eps * float(torch.linalg.vector_norm(noise))
    return dr / max(rtol * float(torch.linalg.vector_norm(new.r)) + floor, torch.finfo(eH.dtype).tiny)


def _stale(flow: _Flow, lin: _Linearization, p: _Point, tau: float) -> bool:
    if lin.t0 == p.t:
        return False
    if _RELIN_TOL <= 0 or p.B is None:
        return True
    B_norm = float(torch.linalg.vector_norm(lin.B))
    rel = float(torch.linalg.vector_norm(p.B - lin.B)) / max(B_norm, 1e-300)
    lam_abs_max = float(lin.lam.abs().max()) if lin.lam.numel() else 0.0
    return tau * lam_abs_max * rel > _RELIN_TOL


def _attempt(flow: _Flow, lin: _Linearization, p: _Point, tau: float, rtol: float, atol: float,
             monitor: Monitor, stages: dict | None = None, sample: bool = False) -> tuple[_Point, list[float]]:
    """One trial step p → new of size tau with its error norms (≤ 1: accept) — [node-only], or with ``sample``
    [node-only, cubic, quadratic] (see the estimate above); raises _NonFinite.  ``stages``: a dict that receives
    the step's stages (for the dense output)."""
    stages = {} if stages is None else stages
    Hn, An, qn = _substep(flow, lin, p, tau, monitor, stages=stages)
    new = flow.evaluate(p.t + tau, Hn, An, qn, monitor)
    errs = [max(_rms(eH, p.H, Hn, rtol, atol), _rms(eA, p.A, An, rtol, atol), _residual_err(flow, new, eH, rtol))
            for eH, eA in _embedded_error(flow, lin, p, tau, stages, new, monitor if sample else None)]
    if not all(math.isfinite(e) for e in errs):
        raise _NonFinite
    return new, errs


class _Sampler:
    """When the step samples the defect at ¾ and which norm it is held to (see the estimate above): every
    :data:`_DEFECT_EVERY`-th trial step while the node-only estimate holds (the cubic one within
    :data:`_DEFECT_RATIO` of it), every step — held to the quadratic estimate — from a step where it does not
    until one where it holds again."""

    def __init__(self):
        self.skip, self.defect = 0, False

    def due(self) -> bool:
        if self.defect or self.skip <= 0:
            return True
        self.skip -= 1
        return False

    def norm(self, errs: list[float]) -> float:
        if len(errs) == 1:
            return errs[0]
        self.defect = _misses(errs)
        if not self.defect:
            self.skip = _DEFECT_EVERY - 1
        return _held_to(errs)


def _misses(errs: list[float]) -> bool:
    """Whether a sampled step's cubic estimate shows the node-only one missing the error (errs = [node-only, cubic,
    quadratic])."""
    return errs[1] > _DEFECT_RATIO * errs[0]


def _held_to(errs: list[float]) -> float:
    """The norm a step with error norms ``errs`` ([node-only] or [node-only, cubic, quadratic]) is held to."""
    return errs[2] if len(errs) == 3 and _misses(errs) else errs[0]


def _run_adaptive(flow, p, grid, rtol, atol, recorder, monitor: Monitor, extra, *, k: int = 1, h: float | None = None,
                  lin: _Linearization | None = None, dense: bool = True, give_back: float | None = None):
    """From p (at p.t) to grid[-1]; k: the next grid index to record; h: the first step (default: a guess); lin: a
    linearization taken at p (default: built at the first step).  ``give_back``: the explicit method's step at the
    hand-over of a switching method; :class:`_GiveBack` is raised where exprk4's steps fall below a quarter of it
    (the last :data:`_GIVE_BACK_STEPS` accepted ones, on average) or a rejected step below a tenth of it."""
    t1 = float(grid[-1])
    recent: list[float] = []
    prev = None  # the previous accepted step's start (the dense output's estimate reads it)
    if h is None:  # (not below the explicit engine's floor for a first step: A = ∫P starts at exactly 0, scaled by atol
        # alone, and at atol = 1e-30 the guess was 4.5e-20 — "step_size_collapse at t = 0" on a linear σ, which exprk4
        # integrates exactly; a step too long for the flow is rejected and shrunk as any other)
        h = min(max(_initial_step(flow, p, rtol, atol, t1 - p.t), _MIN_FIRST_STEP * monitor.time_unit), t1 - p.t)
    else:
        h = min(h, t1 - p.t)
    nonfinite = 0
    err_prev = 1.0
    sampler = _Sampler()
    while p.t < t1 * (1 - 1e-14):
        remaining = t1 - p.t
        last = h >= remaining * (1 - 1e-12)
        tau = remaining if last else h
        monitor.landing_time = t1 if last else math.nan
        try:
            if lin is None or _stale(flow, lin, p, tau):
                lin = _Linearization(flow, p.H, p.B)
                lin.t0 = p.t
                extra["n_linearizations"] += 1
            stages: dict = {}
            new, errs = _attempt(flow, lin, p, tau, rtol, atol, monitor, stages, sample=sampler.due())
            err = sampler.norm(errs)
            nonfinite = 0
        except _NonFinite as exc:
            h = _reject_nonfinite(monitor, p.t, tau, nonfinite := nonfinite + 1, exc, flow.net)
            continue
        t_new = t1 if last else p.t + tau
        if err <= 1.0:
            # output times inside (t_n, t_new): an extra step of < tau from t_n
            while k < len(grid) and grid[k] < t_new - 1e-12 * max(monitor.time_unit, t_new):
                tk = float(grid[k])
                tau_k = tk - p.t
                if tau_k <= 1e-13 * max(monitor.time_unit, tk):
                    _record(flow, recorder, tk, p.H, p.A, p.q)
                else:
                    out = (_dense_output(flow, lin, p, tau, tau_k / tau, stages, new, rtol, atol, prev, err) if dense
                           else None)
                    if out is None:
                        try:
                            out = _substep(flow, lin, p, tau_k, monitor)
                        except _NonFinite as exc:
                            monitor.raise_nonfinite(tk, exc.H, net=flow.net)
                        if flow.jump:  # ∫η from the step's own samples, as the dense output: monotone in the step
                            _jump_integral(flow, p, tau, tau_k / tau, stages["fint"], out[2])
                        extra["n_output_steps"] = extra.get("n_output_steps", 0) + 1
                    else:
                        extra["n_dense_outputs"] = extra.get("n_dense_outputs", 0) + 1
                    _record(flow, recorder, tk, *out)
                k += 1
            if k < len(grid) and abs(grid[k] - t_new) <= 1e-12 * max(monitor.time_unit, t_new):
                _record(flow, recorder, float(grid[k]), new.H, new.A, new.q)
                k += 1
            t_old = p.t
            prev = _Point(p.t, p.H, None, None, p.P, p.FH, None)  # (what the estimate reads: not A, σ′, B, g)
            p = new
            p.t = t_new
            monitor.partial = (t_new, flow.join(p.H, p.A, p.q))
            monitor.on_step(t_old, t_new - t_old, True)
            if give_back is not None and not last:
                recent = (recent + [tau])[-_GIVE_BACK_STEPS:]
                if len(recent) == _GIVE_BACK_STEPS and sum(recent) / len(recent) < _GIVE_BACK_FRACTION * give_back:
                    raise _GiveBack(p, k, f"exprk4's last {_GIVE_BACK_STEPS} steps averaged "
                                          f"{sum(recent) / len(recent):.3g}, below a quarter of the explicit step "
                                          f"{give_back:.3g} they replaced")
            e = max(err, 1e-10)
            fac = min(_FAC_MAX, max(_FAC_MIN, _SAFETY * e ** (-_PI_BETA1) * err_prev ** _PI_BETA2))
            err_prev = max(err, 1e-4)
            h = tau * fac if not last else h
        else:
            monitor.on_step(p.t, tau, False)
            h = tau * min(1.0, max(_FAC_MIN, _SAFETY * err ** (-1.0 / _EST_ORDER)))
            if give_back is not None and h < 0.1 * give_back:
                raise _GiveBack(p, k, f"exprk4's step fell to {h:.3g} after a rejection, below a tenth of the "
                                      f"explicit step {give_back:.3g}")
            if lin.t0 != p.t:
                lin = None  # a re-used linearization may be what failed: rebuild it at u_n
        monitor.proposed_dt = h
    while k < len(grid):  # rounding: the last grid time is t1
        _record(flow, recorder, float(grid[k]), p.H, p.A, p.q)
        k += 1


# ---------------------------------------------------------------------------------------------------------
# When does the exponential method pay?

# Calibrated on Experiment-1-like problems (benchmarks/bench_stiff.py, tanh, d = 20, m = 256, error 1e-6):
# flops DOP853 / exprk4 alone = 3.6, 4.8, 0.86, 0.27 at t1 = 2000 for n = 20, 40, 80, 160 (t1·λ_min(M₀) = 140,
# 94, 43, 36) and 73, 59, 25, 2.1 at t1 = 50 000 (10.7 on the P-3L case, t1·λ_min(M₀) = 800): exprk4 alone wins
# once the residual has converged over most of the horizon, where explicit methods sit at their stability limit
# |h λ_max(M)| ≲ 6 (DOP853) while exprk4 treats the fast modes exactly.  Hence the first rule, which also asked
# t1·λ_min(M₀) ≥ 50.  But auto runs the switching method, which stays explicit until a trial exprk4 step shows
# that exprk4 pays, and with it the decay condition is a loss.  At t1 = 2000, n = 80 and 160 (t1·λ_min(M₀) = 43,
# 36) DOP853 / dop853+exprk4 = 1.6 and 0.91 in flops, 1.18 and 0.89 in wall time at rtol 1e-6 (gflow's dop853,
# side by side).  On the random problems of benchmarks/fuzz_smooth.py (200, t1 up to 20 000) dropping it changes
# the pick on 63: 35 run faster, 16 of them ≥ 10× — λ_min(M₀) small or 0 (singular G with n > d or D, linear σ)
# while the flow is stiff: linear σ, n = 26, t1 = 20 000 took 34 s with dop853 and 0.02 s — each within its
# tolerance (dop853, held at its stability limit, is often more accurate than asked); the others lose what the
# trials cost where the hand-over never comes (≈ 10 %), or where exprk4's steps on a small net cost more Python
# than they save in flops: 1.32× at worst, side by side.  So stiffness alone decides.  The threshold was 2000 until
# the quick accuracy bench's long case (Exp 1 n = 20, m = 128, t1 = 500: t1·λ_max(M₀) = 631) showed auto's DOP853 at
# 2.2× the evaluations of dop853+exprk4 to a loss error of 1e-6.  On the fuzz's cases in the band 400 ≤ t1·λ_max(M₀)
# < 2000 (15 of seeds 0–52: tanh, gelu, softplus, erf, linear; rtol 1e-5…1e-9; side by side, the fuzz's 22 output
# times) dop853 / dop853+exprk4 in wall time was 2.7, 3.7, 3.7, 4.4, 5.0 (linear σ and softplus with λ_min(M₀) ≈ 0:
# 240–370 evaluations against 1 250–2 770), 1.29, 1.05, 1.01, and 0.82–0.94 on seven: six whose hand-over never
# came (the trials' cost; 0–3 % more evaluations) and one whose 27 % fewer evaluations cost more Python than they
# saved; geometric mean 1.5×.  Below 400 it was 0.70, 0.71 and 1.47.
AUTO_MIN_STIFFNESS = 400.0  # t1·λ_max(M₀): explicit methods would need ≳ 400/6·12 ≈ 800 evaluations
AUTO_MAX_N = 2000  # an n×n eigenproblem per step
# The tightest rtol auto runs the switching method at.  It was 1e-7 while exprk4 held every step to the node-only
# estimate: once the loss had converged that missed the local error in r up to 30 000× (an audit), and the relative
# loss error was 3–51× rtol at 1e-4…1e-8 and 500–3 500× at 1e-10.  With the defect sampled at θ = ¾ where it shows
# (see the estimate above), measured against DOP853 rtol-1e-13 references on five long-horizon problems (tanh n = 12,
# m = 32, ĉ = 1.5 to t = 200; Exp-1-like n = 20, 40, m = 64 to t = 5 000; erf on D = 16 random features, n = 24,
# m = 32 to 5 000; softplus n = 16, m = 48 to 2 000; the largest error over 13 saved times down to L ≈ 1e-16), the
# largest relative loss error (of log L below 1e-12) over rtol of dop853+exprk4 was 0.01–0.19 at rtol 1e-8 and
# 0.56–1.0 at 1e-10 (9.4 on erf at L = 3.5e-16, where δr is rounding: 0.2 above L = 1e-14), DOP853's alone
# 0.01–0.19 and 0.28–2.5 (2.3 at that point), for 1.1–10.9× fewer evaluations than DOP853 (1 022–3 046 against
# 1 454–15 868 at 1e-8; 1.0–8.0× at 1e-10).  The switching method hands over once the features have settled, so
# the error the node-only estimate lets through before the loss converges (exprk4 alone: up to 7.7× rtol on the
# tanh net at 1e-8 and 1e-10, see above) is DOP853's there.  So auto runs the switching method down to 1e-10 (below
# 1e-11 DOP853's order 8 pays, see auto_method).
AUTO_EXPINT_MIN_RTOL = 1e-10
# The explicit pick.  At loose tolerances the 5th-order Dormand–Prince pair reaches a given loss error with fewer
# evaluations than DOP853 (whose 8th order pays only once the step is set by accuracy, not by the first steps and
# stability): measured with `gflow bench accuracy` (rtol = 1e-3 … 1e-10, atol = 1e-3·rtol) on the four smooth
# problems, dopri5 was cheaper *and* more accurate at rtol = 1e-3 on all four, cheaper for the accuracy it
# reached at 1e-4 on two (Exp 1 n = 20, 80; the 1e-6 loss-error target sits there: dop853 needed 1.16–1.25× the
# evaluations), while from rtol = 1e-5 down DOP853 reached more accuracy per evaluation everywhere (3.5× fewer
# evaluations at a loss error of 1e-12 on P-3L).  Hairer & Wanner (Solving ODEs I, §II.10) draw the same line.
AUTO_DOPRI5_MIN_RTOL = 1e-4
# Above the calibrated range DOP853 reaches far more accuracy per evaluation: on Experiment 1 (n = d = 20, m = 256,
# t1 = 300, saving t1, the default atol) dopri5's relative loss error was 2.2e-3 and 1.6e-2 at rtol = 1e-2 and 0.1,
# DOP853's 3.2e-5 and 1.7e-4, for 1.17× the evaluations.  (Before every step was kept inside the stability region,
# :meth:`gflow.solve.rk.Engine._stiff_safe`, dopri5's loss went wrong there: 1.6e-2 and 4.0 off, the saved loss
# rising 20–83 times.)
AUTO_DOPRI5_MAX_RTOL = 1e-3


def explicit_method(rtol: float) -> tuple[str, str]:
    """The explicit adaptive method ``method="auto"`` runs where it runs one: ``"dopri5"`` for
    :data:`AUTO_DOPRI5_MIN_RTOL` ≤ rtol ≤ :data:`AUTO_DOPRI5_MAX_RTOL`, else ``"dop853"``; returns (method,
    reason)."""
    if rtol > AUTO_DOPRI5_MAX_RTOL:
        return "dop853", (f"rtol = {rtol:g} > {AUTO_DOPRI5_MAX_RTOL:g}: DOP853, far more accurate per evaluation than "
                          "dopri5 at such loose tolerances (10–100× on Experiment 1 for 1.2× the evaluations)")
    if rtol >= AUTO_DOPRI5_MIN_RTOL:
        return "dopri5", (f"rtol = {rtol:g} in [{AUTO_DOPRI5_MIN_RTOL:g}, {AUTO_DOPRI5_MAX_RTOL:g}]: the 5th-order "
                          "pair dopri5 reaches these tolerances with fewer evaluations than DOP853")
    return "dop853", f"rtol = {rtol:g} < {AUTO_DOPRI5_MIN_RTOL:g}: DOP853's 8th order pays"


def auto_method(problem: Problem, t1: float, rtol: float) -> tuple[str, str]:
    r"""Choose between exprk4 — run as ``"dop853+exprk4"`` (``"dopri5+exprk4"`` at 1e-4 ≤ rtol ≤ 1e-3): the explicit
    method while the features move, exprk4 from where a trial step shows it pays — and the explicit method alone
    (:func:`explicit_method`: ``"dop853"``, or ``"dopri5"`` at 1e-4 ≤ rtol ≤ 1e-3) for the flow of ``problem`` to t1.

    The flow is stiff where the residual has converged: ṙ ≈ −M r (E3) decays at rates λ(M) up to λ_max, and an
    explicit method then steps at its stability limit h ≲ 5/λ_max(M) whatever the tolerance, while exprk4
    treats those modes exactly (its step is set by the slow feature motion).  So the switching method is chosen
    when t1·λ_max(M₀) ≥ :data:`AUTO_MIN_STIFFNESS` (M₀ = M at t = 0, E3), n ≤ :data:`AUTO_MAX_N` and
    rtol ≥ :data:`AUTO_EXPINT_MIN_RTOL` = 1e-10 (down to which the switching method's loss error was measured to
    follow rtol as DOP853's does — 0.01–0.19× rtol at 1e-8, 0.56–1.0× at 1e-10 above the rounding floor, DOP853
    0.01–0.19× and 0.28–2.5× — for 1.1–10.9× fewer evaluations; linear σ, where exprk4 is exact, excepted down to
    rtol > 1e-11, where exprk4's order 4 costs more steps than DOP853's order 8 while the flow is still moving); it
    runs the explicit method until a trial exprk4 step shows that exprk4 pays, so it loses little where the flow
    never gets stiff enough (see the comment above
    :data:`AUTO_MIN_STIFFNESS` for the numbers).

    Args:
        problem: the :class:`gflow.fields.Problem` (network and data).
        t1: the final time (> 0).
        rtol: the relative tolerance of the run.

    Returns:
        (method, reason): method is ``"dop853+exprk4"``, ``"dopri5+exprk4"``, ``"dop853"`` or ``"dopri5"``;
        reason states the numbers behind the choice.

    Raises:
        ValueError: t1 or rtol not positive and finite.
    """
    from .._validate import check_positive_float
    from ..model import quantities as Q

    t1 = check_positive_float(t1, "t1")
    rtol = check_positive_float(rtol, "rtol")
    n = problem.n
    explicit, why = explicit_method(rtol)
    if not problem.net.activation.smooth:
        return explicit, f"the activation has a kink: exprk4's error control assumes a smooth flow; {why}"
    if n > AUTO_MAX_N:
        return explicit, f"n = {n} > {AUTO_MAX_N}: an n×n eigenproblem per step would dominate; {why}"
    if lossy_feature_space(problem):
        return explicit, (f"float32 with n = {n} > D = {problem.net.D}: exprk4 runs in feature space, which loses W "
                          f"and the test outputs there (gflow.fields.lossy_feature_space); {why}")
    net = problem.net
    _, ds = net.activation.both(problem.H0)
    # M₀ is PSD: λ_max ≤ tr M₀.  The trace costs O(mn), so a horizon too short for exprk4 to pay is recognised
    # without forming M₀ (mn²) or its eigenvalues (n³).
    diag_S = ((ds * net.c[:, None]) ** 2).mean(dim=0)
    trace = float(net.kernel_coef * (torch.diagonal(problem.G) * diag_S).sum())
    if not math.isfinite(trace):
        if not bool(torch.isfinite(ds).all()):  # (a custom σ′ returning NaN is no overflow of the kernel)
            raise ValueError(f"σ′ of the activation {net.activation.name!r} returned non-finite values at the initial "
                             f"features H₀ (|H₀| up to {float(problem.H0.abs().max()):.3g}): check the activation's "
                             "dsigma there, or the scale of X")
        c_text = (f"c (max |c_i| = {float(net.c.abs().max()):.3g}; c or W0 was given explicitly)"
                  if net.explicit_params else f"c_hat (= {net.c_hat:g})")
        raise ValueError(f"the kernel M₀ = κ_M G∘S of the flow overflows {net.dtype} (tr M₀ = {trace}): check "
                         f"{c_text}, the scaling and the scale of X")
    if t1 * trace < AUTO_MIN_STIFFNESS:
        return explicit, (f"not stiff enough over this horizon for the exponential method to pay (t1·tr(M₀) = "
                          f"{t1 * trace:.3g} ≥ t1·λ_max(M₀), threshold {AUTO_MIN_STIFFNESS:g}); {why}")
    M0 = Q.kernel_M(problem.G, ds, net.c, net.kernel_coef)
    lo, hi = Q.extreme_eigenvalues(M0)
    stiff = t1 * hi
    numbers = (f"t1·λ_max(M₀) = {stiff:.3g} (threshold {AUTO_MIN_STIFFNESS:g}), t1·λ_min(M₀) = "
               f"{t1 * max(lo, 0.0):.3g}, rtol = {rtol:g}")
    if stiff < AUTO_MIN_STIFFNESS:
        return explicit, f"not stiff enough over this horizon for the exponential method to pay ({numbers}); {why}"
    if rtol <= 1e-11 and net.activation.name != "linear":  # (exprk4 is exact for linear σ, E5: no order to lose)
        return explicit, (f"rtol = {rtol:g} ≤ 1e-11: exprk4's order 4 would cost more steps than DOP853's order 8 "
                          f"while the features move ({numbers}); {why}")
    if rtol < AUTO_EXPINT_MIN_RTOL and net.activation.name != "linear":
        return explicit, (f"rtol = {rtol:g} < {AUTO_EXPINT_MIN_RTOL:g}: below the tolerances where exprk4's loss "
                          "error was measured to follow rtol; DOP853's order 8 pays there while the features move "
                          f"({numbers}); {why}")
    return f"{explicit}+exprk4", (
        f"the flow is stiff over the horizon ({numbers}): explicit methods would run at their stability limit "
        f"≈ 5/λ_max(M); {explicit} while the features move, exprk4 from where a trial step shows it pays")
