r"""Exact feature-space flow (eq. (11), EQUATIONS.md §4, E4).

On the training points the gradient flow closes on H = [h_i(x_a)] ∈ ℝ^{m×n}:

    Ḣ = −γ P G,      P_ia = c_i σ′(H_ia) r_a,      r = α σ(H)ᵀc − y,

with the n×n Gram G = Φ_tr Φ_trᵀ/D and γ = ℓαβ²D.  The state also carries A(t) = ∫₀ᵗ P ds (Ȧ = P), which
recovers, *exactly*, the test features h_i(x, t) = h_i(x, 0) − γ Σ_a G(x, x_a) A_ia(t) and the weights
W(t) = W(0) − ℓαβ A(t) Φ_tr at any saved time.

State layout (``layout``): ``"nm"`` (the default) stores [Hᵀ, Aᵀ] as a contiguous (2, n, m) tensor — H and A are
then the (m, n) views ``state[k].T``, column-major — and ``"mn"`` stores [H, A] as (2, m, n).  Both are the same
flow; "nm" is faster because the one product of an evaluation, Ḣ = P(−γG), then writes a column-major (m, n) result,
which BLAS computes with the long dimension m in its vector registers: 48 → 24 µs at (m, n) = (1024, 20),
249 → 179 µs at (1024, 64), 10 % at (2048, 400) (MKL, 2-core AMD EPYC Zen 4, one thread); the elementwise passes
do not mind the layout.  The event-driven ReLU solvers (``filippov``, ``sliding``) and ``exprk4``, which index
H's rows in place, take "mn".  Read H and A off a state with :meth:`FeatureSpaceField.split`, never by indexing.

Cost per evaluation ≈ 2mn² flops (against ≈ 4mDn in weight space): cheaper when n < 2D, and for an ODE solver,
which also streams the state (2mn entries here, mD in weight space), when n is well below 2D
(:func:`gflow.fields.auto_space`).
"""

from __future__ import annotations

import math

import torch

from .._validate import check_choice
from ..model import quantities as Q
from .base import AbstractField, Parts, Problem

LAYOUTS = ("nm", "mn")


class FeatureSpaceField(AbstractField):
    """Ḣ = −γ P G, Ȧ = P on the state [H, A]: (2, n, m) holding [Hᵀ, Aᵀ] (``layout="nm"``, default) or (2, m, n)
    holding [H, A] (``"mn"``); :meth:`split` and :meth:`join` convert."""

    space = "feature"

    def __init__(self, problem: Problem, layout: str = "nm"):
        self.layout = check_choice(layout, "layout", LAYOUTS)
        self.problem = problem
        net = problem.net
        self.state_shape = (2, problem.n, net.m) if layout == "nm" else (2, net.m, problem.n)
        self.rhs_reads = net.m * problem.n  # Ḣ and Ȧ depend on H = state[0] only, not on A
        self._c_col = net.c[:, None]
        self._minus_gamma_G = (-net.gamma) * problem.G  # fold −γ into G once
        self._alpha = net.alpha

    def split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, A), each (m, n), as views of ``state`` (column-major ones in the "nm" layout)."""
        if self.layout == "nm":
            return state[0].T, state[1].T
        return state[0], state[1]

    def join(self, H: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """A new state in this field's layout from H and A, each (m, n)."""
        if self.layout == "nm":
            return torch.stack([H.T, A.T])
        return torch.stack([H, A])

    def initial_state(self) -> torch.Tensor:
        if self.start is not None:
            return self.start.clone()
        s = torch.zeros(self.state_shape, dtype=self.problem.net.dtype, device=self.problem.net.device)
        self.split(s)[0].copy_(self.problem.H0)
        return s

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        # allocation-free: P is written straight into out[1] (Ȧ = P) and Ḣ = P(−γG) into out[0]; r (and σ′ with
        # keep_parts) live in scratch buffers valid until the next call (see AbstractField.rhs_into)
        H = self.split(state)[0]
        Hdot, P = self.split(out)
        ds, r, fused = self._P_into(H, P)
        torch.mm(P, self._minus_gamma_G, out=Hdot)  # ("nm": a column-major result, BLAS's fast case)
        if self.keep_parts:  # L̇ = Σ_a r_a ḟ_a = α Σ_ia P_ia Ḣ_ia (E3), for the observer (over the flat storage)
            return Parts(H, ds, r, self._alpha * torch.dot(out[1].reshape(-1), out[0].reshape(-1)))
        # the finiteness witness: Σ Ḣ, one pass over one array (L̇'s dot reads two).  A NaN or ±inf in P reaches
        # Ḣ = P(−γG) (NaN·x and inf·0 are NaN), so Σ Ḣ is finite iff the whole derivative [Ḣ, P] is (barring an
        # overflow of the sum itself, at |Ḣ| ~ 1e304).  (4096, 600): 35.4 → 34.4 ms.  After the fused tanh pass
        # (``fused``), Σ r: P = c σ′ r with σ′ = 1 − tanh² ∈ [0, 1] for every H but NaN (whose tanh is NaN and makes
        # r NaN), so P is finite iff r is, and Ḣ then barring an overflow of P(−γG) (|P|·‖γG‖₁ ~ 1e308; |P| ≤
        # |c|·|r|) — n entries instead of mn: 8 µs at (1024, 64).
        return Parts(H, None, r, None, probe=r.sum() if fused else out[0].sum())

    def gd_step_(self, state: torch.Tensor, step: float, deriv: torch.Tensor) -> None:
        """H ← H + δ P(−γG) and A ← A + δP with P = Q diag(r), Q = c σ′(H), in three passes over (m, n) after σ
        and σ′: Q formed in place over σ′, H updated by one in-place ``addmm`` against diag(r)(−γG) (r folded into
        the n×n factor, not into an (m, n) pass), A by one ``addcmul``; no Ḣ or P buffer, and no L̇ (GD does not
        use it).  ``deriv`` is unused."""
        H, A = self.split(state)
        Q, r, _ = self._Q_and_r(H)
        self._gd_update_(H, A, Q, r, step)

    def _gd_update_(self, H: torch.Tensor, A: torch.Tensor, Q: torch.Tensor, r: torch.Tensor, step: float) -> None:
        """The update of :meth:`gd_step_` from Q = c σ′(H) and r (:meth:`_Q_and_r`)."""
        rG = torch.mul(self._minus_gamma_G, r[:, None], out=self._scratch("rG", tuple(self._minus_gamma_G.shape), H))
        H.addmm_(Q, rG, alpha=step)
        A.addcmul_(Q, r, value=step)

    def train_features(self, state):
        return self.split(state)[0]

    def test_features(self, state):
        return self.test_features_into(state, None)

    def test_features_into(self, state, out):
        pb = self.problem
        if pb.G_cross is None:
            return None
        # one pass, no temporaries
        return torch.addmm(pb.H0_test, self.split(state)[1], pb.G_cross, alpha=-pb.net.gamma, out=out)

    def weights(self, state):
        net = self.problem.net
        # one fused pass: W0 − ℓαβ A Φ (addmm, no (m, D) temporaries)
        return torch.addmm(net.W0, self.split(state)[1], self.problem.Phi, alpha=-(net.lr * net.alpha * net.beta))

    def weight_movement(self, state) -> float:
        """‖W − W0‖_F / ‖W0‖_F without forming W: ‖AΦ‖²_F = D·Σ (AG)∘A."""
        net, A = self.problem.net, self.split(state)[1]
        # Σ (AG)∘A = ⟨AᵀA, G⟩ with AᵀA by the symmetric gram(): (1 + 1/4)mn² flops instead of 2mn² (1.76 → 0.89 ms
        # at (1024, 200) on an Intel Xeon)
        sq = net.D * float(torch.dot(Q.gram(A).reshape(-1), self.problem.G.reshape(-1)))
        moved = abs(net.lr * net.alpha * net.beta) * math.sqrt(max(sq, 0.0))
        if self.__dict__.get("_W0_norm") is None:
            self._W0_norm = float(torch.linalg.norm(net.W0))
        return Q.relative_movement(moved, self._W0_norm)

    def flops_per_eval(self) -> float:
        m, n = self.problem.net.m, self.problem.n
        return 2.0 * m * n * n
