r"""A field augmented with the running integrals that the pathwise bounds need (EQUATIONS.md §9).

The state is the flat vector [core state, q] where q holds

    ∫η dt,  ∫μ dt,  ∫ν dt,  ∫λ_min(M) dt,  ∫|L̇|^{1/2} dt,  ∫|L̇| dt

(T5, T4, T4, T3, T8 and the energy identity T2).  They are integrated by the same Runge–Kutta scheme as
the flow — not by quadrature over the saved grid — and for gradient descent (forward Euler) they become the
exact left sums Σ_k δ q(H_k).  Their absolute tolerance is infinite, so they never limit the step size:
η is piecewise constant in t and would otherwise make adaptive solvers crawl.
"""

from __future__ import annotations

import math

import torch

from ..model import quantities as Q
from .base import AbstractField, Parts

INTEGRALS = ("eta", "mu", "nu", "lam_min_M", "sqrt_abs_dL", "abs_dL")
LAM_MIN_M_MAX_N = 1024  # beyond this n, λ_min(M) per evaluation (an n×n eigenproblem) is skipped by default


class ObservedField(AbstractField):
    """``base`` plus the integrals :data:`INTEGRALS` as extra states.

    Args:
        base: the weight- or feature-space field.
        interval: the active interval I of η (default: the activation's).
        lam_min_M: integrate λ_min(M) (costs an n×n Gram product and eigenproblem per evaluation).
    """

    def __init__(self, base: AbstractField, interval: tuple[float, float], lam_min_M: bool = True):
        self.base = base
        self.problem = base.problem
        self.space = base.space
        self.interval = interval
        self.lam_min_M = lam_min_M
        self.core_shape = base.state_shape
        self.N = math.prod(self.core_shape)
        self.state_shape = (self.N + len(INTEGRALS),)
        self.rhs_reads = base.rhs_reads  # the integrands depend on the core state only
        self._c = base.problem.net.c
        self._coef = base.problem.net.kernel_coef
        self._G = base.problem.G

    def core(self, state: torch.Tensor) -> torch.Tensor:
        return state[: self.N].view(self.core_shape)

    def integrals(self, state: torch.Tensor) -> torch.Tensor:
        return state[self.N:]

    def initial_state(self) -> torch.Tensor:
        core = self.base.initial_state().reshape(-1)
        return torch.cat([core, core.new_zeros(len(INTEGRALS))])

    def atol_vector(self, atol: float) -> torch.Tensor:
        """atol for the core state and +inf for the integrals (which then never limit the step)."""
        a = torch.full(self.state_shape, float(atol), dtype=torch.float64, device=self._c.device)
        a[self.N:] = math.inf
        return a

    def integrands(self, parts: Parts) -> torch.Tensor:
        absdL = (-parts.dL).clamp_min(0.0)
        if self.lam_min_M:
            try:
                lam = torch.linalg.eigvalsh(Q.kernel_M(self._G, parts.ds, self._c, self._coef))[0]
            except RuntimeError:  # non-finite M (the solver then reports the non-finite state)
                lam = absdL.new_full((), math.nan)
        else:
            lam = absdL.new_zeros(())
        return torch.stack([Q.eta(parts.H, self.interval), Q.mu(parts.ds), Q.nu(parts.ds, self._c), lam,
                            absdL.sqrt(), absdL])

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        parts = self.base.rhs_into(self.core(state), self.core(out))
        out[self.N:] = self.integrands(parts)
        return parts

    def train_features(self, state):
        return self.base.train_features(self.core(state))

    def test_features(self, state):
        return self.base.test_features(self.core(state))

    def weights(self, state):
        return self.base.weights(self.core(state))

    def weight_movement(self, state) -> float:
        return self.base.weight_movement(self.core(state))

    def flops_per_eval(self) -> float:
        n, m = self.problem.n, self.problem.net.m
        return self.base.flops_per_eval() + (2.0 * m * n * n if self.lam_min_M else 0.0)
