r"""Exact feature-space flow (eq. (11), EQUATIONS.md §4, E4).

On the training points the gradient flow closes on H = [h_i(x_a)] ∈ ℝ^{m×n}:

    Ḣ = −γ P G,      P_ia = c_i σ′(H_ia) r_a,      r = α σ(H)ᵀc − y,

with the n×n Gram G = Φ_tr Φ_trᵀ/D and γ = ℓαβ²D.  The state also carries A(t) = ∫₀ᵗ P ds (Ȧ = P), which
recovers, *exactly*, the test features h_i(x, t) = h_i(x, 0) − γ Σ_a G(x, x_a) A_ia(t) and the weights
W(t) = W(0) − ℓαβ A(t) Φ_tr at any saved time.  State shape (2, m, n): [H, A].

Cost per evaluation ≈ 2mn² flops (against ≈ 4mDn in weight space): cheaper when n < 2D.
"""

from __future__ import annotations

import torch

from .base import AbstractField, Problem


class FeatureSpaceField(AbstractField):
    """Ḣ = −γ P G, Ȧ = P on the state [H, A] of shape (2, m, n)."""

    space = "feature"

    def __init__(self, problem: Problem):
        self.problem = problem
        net = problem.net
        self.state_shape = (2, net.m, problem.n)
        self._c_col = net.c[:, None]
        self._minus_gamma_G = (-net.gamma) * problem.G  # fold −γ into G once

    def initial_state(self) -> torch.Tensor:
        s = torch.zeros(self.state_shape, dtype=self.problem.net.dtype, device=self.problem.net.device)
        s[0] = self.problem.H0
        return s

    def __call__(self, t, state: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(state)
        self._P_into(state[0], out[1])
        torch.mm(out[1], self._minus_gamma_G, out=out[0])
        return out

    def train_features(self, state):
        return state[0]

    def test_features(self, state):
        pb = self.problem
        if pb.G_cross is None:
            return None
        return pb.H0_test - pb.net.gamma * (state[1] @ pb.G_cross)

    def weights(self, state):
        net = self.problem.net
        return net.W0 - (net.lr * net.alpha * net.beta) * (state[1] @ self.problem.Phi)

    def flops_per_eval(self) -> float:
        m, n = self.problem.net.m, self.problem.n
        return 2.0 * m * n * n
