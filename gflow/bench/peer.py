r"""The peer: the weight-space GD loop a researcher writes by hand in plain PyTorch with autograd.

This is what gflow is compared with in ``gflow bench speed``: no closed-form gradient, no feature-space
reduction, no preallocation — the forward pass f = α c·σ(β W Φᵀ), the loss L = ½‖f − y‖² (eq. (6)),
``torch.autograd.grad`` and the update W ← W − δ ℓ ∂L/∂W (eq. (9)).  Each step costs ≈ 4mDn flops (two
(m × D)·(D × n) products) against ≈ 2mn² for gflow's feature-space step, a flop ratio of 2D/n.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def peer_autograd_gd(W0: torch.Tensor, c: torch.Tensor, Phi: torch.Tensor, y: torch.Tensor, *, alpha: float,
                     beta: float, lr: float, step: float, steps: int,
                     sigma: Callable[[torch.Tensor], torch.Tensor] = torch.tanh) -> torch.Tensor:
    """``steps`` GD steps W ← W − δ ℓ ∂L/∂W from W0 (m, D) with features Φ (n, D); returns W (m, D).

    The same iteration as ``gf.gradient_descent(net, X, y, step, steps)`` with α, β, ℓ = net.alpha, net.beta,
    net.lr and Φ = the embedded inputs (identity embedding: Φ = X).
    """
    W = W0.detach().clone().requires_grad_(True)
    for _ in range(steps):
        h = beta * (W @ Phi.T)  # (m, n) pre-activations
        f = alpha * (sigma(h).T @ c)  # (n,) outputs
        loss = 0.5 * ((f - y) ** 2).sum()
        (g,) = torch.autograd.grad(loss, W)
        with torch.no_grad():
            W -= (step * lr) * g
    return W.detach()


__all__ = ["peer_autograd_gd"]
