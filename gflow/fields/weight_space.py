r"""Weight-space flow (eq. (10)): Ẇ = −ℓ ∂L/∂W = −ℓαβ P Φ_tr with P_ia = c_i σ′(h_i(x_a)) r_a.

The state is W ∈ ℝ^{m×D}.  Cost per evaluation ≈ 4mDn flops (H = βWΦᵀ and PΦ): cheaper than feature space
when n > 2D (e.g. shallow nets on many points).
"""

from __future__ import annotations

import torch

from ..model import quantities as Q
from .base import AbstractField, Parts, Problem

#: the largest m·D for which :class:`WeightSpaceField` routes its CPU products through column-major buffers
COLUMN_MAJOR_MAX_ENTRIES = 1 << 22


class WeightSpaceField(AbstractField):
    """Ẇ = −ℓαβ P Φ_tr (closed-form gradient of eq. (8))."""

    space = "weight"
    #: route the CPU products through column-major buffers (:meth:`rhs_into`); False: the former row-major route
    #: (kept for side-by-side measurements, ``benchmarks/bench_layout.py``)
    column_major_products: bool = True

    def __init__(self, problem: Problem):
        self.problem = problem
        net = problem.net
        self.state_shape = (net.m, net.D)
        self._c_col = net.c[:, None]
        self._beta_PhiT = (net.beta * problem.Phi.T).contiguous()  # (D, n)
        self._minus_Phi = ((-net.lr * net.alpha * net.beta) * problem.Phi).contiguous()  # (n, D)
        self._lr = net.lr
        # the column-major route needs one more (m, D) buffer and a copy of it per evaluation: kept to Ẇ ≤ 2²² entries
        # (32 MB in float64), where it was measured to pay — at (4096, 4096, 600) it ran 0.96× the row-major route
        self._col_fits = net.m * net.D <= COLUMN_MAJOR_MAX_ENTRIES

    def initial_state(self) -> torch.Tensor:
        if self.start is not None:
            return self.start.clone()
        return self.problem.net.W0.clone()

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        m, n = state.shape[0], self._beta_PhiT.shape[1]
        # On the CPU, H, P and Ẇ go through column-major (m, ·) buffers, as the feature state's "nm" layout: BLAS
        # then writes both products with the long dimension m in its vector registers, and Ẇ is copied into
        # ``out``.  Side by side (MKL, AMD EPYC Zen 4, one thread), the two products and the copy against the two
        # products into row-major results: 1.40× at (m, D, n) = (1024, 20, 20), 1.69× at (1024, 20, 200), 1.88× at
        # (4096, 20, 200), 1.04–1.5× for D = 64 … 256, the whole RHS 1.04× at (2048, 2048, 400).  (Where Ẇ is
        # large, on GPUs and with other BLAS, as before: not measured to pay.)
        col = self.column_major_products and self._col_fits and state.device.type == "cpu"
        H, P = self._scratch("H", (m, n), state, col), self._scratch("P", (m, n), state, col)  # valid until next call
        torch.mm(state, self._beta_PhiT, out=H)
        ds, r, _ = self._P_into(H, P)
        if col:
            Wdot = self._scratch("Wdot", tuple(out.shape), out, True)
            torch.mm(P, self._minus_Phi, out=Wdot)
            out.copy_(Wdot)
        else:
            torch.mm(P, self._minus_Phi, out=out)
        # energy identity: L̇ = −ℓ‖∂L/∂W‖² = −‖Ẇ‖²/ℓ
        dL = -torch.dot(out.reshape(-1), out.reshape(-1)) / self._lr
        return Parts(H, ds, r, dL)

    def train_features(self, state):
        return state @ self._beta_PhiT

    def train_features_into(self, state, out):
        return torch.mm(state, self._beta_PhiT, out=out)

    def test_features(self, state):
        return self.test_features_into(state, None)

    def test_features_into(self, state, out):
        pb = self.problem
        if pb.Phi_test is None:
            return None
        if self.__dict__.get("_beta_PhitT") is None:  # β Φ_teᵀ once: one product per call, no scaling pass
            self._beta_PhitT = (pb.net.beta * pb.Phi_test.T).contiguous()
        return state @ self._beta_PhitT if out is None else torch.mm(state, self._beta_PhitT, out=out)

    def weights(self, state):
        return state

    def weight_movement(self, state) -> float:
        """‖W − W0‖_F / ‖W0‖_F."""
        W0 = self.problem.net.W0
        if self.__dict__.get("_W0_norm") is None:
            self._W0_norm = float(torch.linalg.norm(W0))
        return Q.relative_movement(float(torch.dist(state, W0)), self._W0_norm)

    def flops_per_eval(self) -> float:
        m, n, D = self.problem.net.m, self.problem.n, self.problem.net.D
        return 4.0 * m * n * D
