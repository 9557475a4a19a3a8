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
        base.keep_parts = True  # the integrands read σ′ and L̇ from the base's evaluation
        self.problem = base.problem
        self.space = base.space
        self.interval = interval
        self.lam_min_M = lam_min_M
        self.core_shape = base.state_shape
        self.N = math.prod(self.core_shape)
        self.state_shape = (self.N + len(INTEGRALS),)
        # the integrands depend on the core state only (weight space: the whole core)
        self.rhs_reads = base.rhs_reads if base.rhs_reads is not None else self.N
        self.layout = base.layout
        net = base.problem.net
        self._c = net.c
        self._coef = net.kernel_coef
        self._G = base.problem.G
        # hot-path forms of μ, ν (one product) and M (the scalar folded into G once): Q.FastForms
        self._forms = Q.FastForms(net.c, self._G if lam_min_M else None, self._coef)

    def core(self, state: torch.Tensor) -> torch.Tensor:
        return state[: self.N].view(self.core_shape)

    def integrals(self, state: torch.Tensor) -> torch.Tensor:
        return state[self.N:]

    def initial_state(self) -> torch.Tensor:
        if self.start is not None:
            return self.start.clone()
        core = self.base.initial_state().reshape(-1)
        return torch.cat([core, core.new_zeros(len(INTEGRALS))])

    def jump_integrals(self) -> torch.Tensor:
        """The flat indices of the state's entries whose integrand jumps (∫η): solvers integrate them by a
        positive-weight rule (:class:`gflow.solve.rk.JumpQuadrature`)."""
        return torch.tensor([self.N + INTEGRALS.index("eta")])

    def atol_vector(self, atol: float) -> torch.Tensor:
        """atol for the core state and +inf for the integrals (which then never limit the step)."""
        a = torch.full(self.state_shape, float(atol), dtype=torch.float64, device=self._c.device)
        a[self.N:] = math.inf
        return a

    def integrands(self, parts: Parts) -> torch.Tensor:
        """(η, μ, ν, λ_min(M), |L̇|^½, |L̇|) at one evaluation — the values of :mod:`gflow.model.quantities`'
        functions, formed with fewer operations (this runs at every evaluation; with Experiment 1's sizes it cost
        2.9× the RHS when written with those functions): σ′² once, μ and ν in one product, M without
        temporaries of shape (m, n) beyond c σ′."""
        return self._integrands(parts.H, parts.ds, parts.dL)

    def _integrands(self, H, ds, dL=None, r=None) -> torch.Tensor:
        """:meth:`integrands` from H, σ′(H) and L̇ — or, with ``dL=None``, L̇ = −rᵀMr (E3) from r and the M that
        λ_min(M) needs anyway (``lam_min_M`` only).  η, μ, ν, M and λ_min(M) come from :meth:`offer_integrands`
        where it was handed this H and σ′."""
        offered = self._offered_for(H, ds)
        if offered is not None:
            eta, munu, M, lam = offered
        else:
            eta, buf = self._eta(H), self._scratch("ds2", tuple(ds.shape), ds)
            munu = self._forms.mu_nu(ds, buf)  # (μ, ν)
            M = lam = None
        if self.lam_min_M:
            if M is None:
                M = self._forms.kernel_M(ds, buf)  # (σ′² in buf is no longer needed)
            if dL is None:
                dL = -torch.dot(r, torch.mv(M, r))
            if lam is None:
                try:
                    lam = torch.linalg.eigvalsh(M)[:1]
                except RuntimeError:  # non-finite M (the solver then reports the non-finite state)
                    lam = ds.new_full((1,), math.nan)
        else:
            lam = ds.new_zeros(1)
        absdL = (-dL).clamp_min(0.0)
        return torch.cat([eta, munu, lam, absdL.sqrt().view(1), absdL.view(1)])

    #: what :meth:`offer_integrands` was last handed: (H, its version, σ′, η, (μ, ν), M, λ_min(M)), or None
    _offer: tuple | None = None

    def offer_integrands(self, H: torch.Tensor, ds: torch.Tensor, eta: torch.Tensor, mu_nu: torch.Tensor,
                         M: torch.Tensor, lam_min: torch.Tensor) -> None:
        """Take η (1,), (μ, ν) (2,), M (n, n) and λ_min(M) (1,) formed by someone else (the recorder, at a saved
        step) from the features ``H`` of a state and their σ′ ``ds`` — as :meth:`_integrands` forms them: this
        field's interval, ``FastForms`` of c, G and κ_M, M's own eigenvalues — for the next evaluation at that state
        (gradient descent's next step) to use instead of forming them again.  Used once, and only where that
        evaluation's H is the same tensor, unchanged since (its storage, strides and version counter), and its σ′
        equals ``ds`` bit for bit in the same layout: the integrals are then the same numbers, whichever formed them.
        The tensors are read, never written, and must stay unchanged until then (the recorder's σ′ buffer does)."""
        self._offer = (H, H._version, ds, eta, mu_nu, M, lam_min)

    def _offered_for(self, H: torch.Tensor, ds: torch.Tensor):
        """(η, (μ, ν), M, λ_min) of :meth:`offer_integrands` where they were formed from this H and σ′, else None;
        the offer is dropped either way."""
        offer = self._offer
        if offer is None:
            return None
        self._offer = None
        H1, version, ds1, eta, munu, M, lam = offer
        same_H = (H.data_ptr() == H1.data_ptr() and H.device == H1.device and H.shape == H1.shape
                  and H.stride() == H1.stride() and H.dtype == H1.dtype and H._version == version)
        if not (same_H and ds.stride() == ds1.stride() and torch.equal(ds, ds1)):
            return None
        return eta, munu, M, lam

    def gd_step_(self, state: torch.Tensor, step: float, deriv: torch.Tensor) -> None:
        """A gradient-descent step of the core state and the left sums of the integrals.  Feature space with
        λ_min(M): the base field's fused update (:meth:`FeatureSpaceField.gd_step_`) with the integrands taken
        from the same σ′ and r before it, and L̇ = −rᵀMr from the M they form (no Ḣ, P or L̇ pass over (m, n));
        otherwise one evaluation and an update of the whole state."""
        from .feature_space import FeatureSpaceField

        if not (self.lam_min_M and isinstance(self.base, FeatureSpaceField)):
            super().gd_step_(state, step, deriv)
            return
        core = self.core(state)
        H, A = self.base.split(core)
        Q, r, ds = self.base._Q_and_r(H, with_ds=True)
        q = self._integrands(H, ds, r=r)  # before the update overwrites H (and Q, where None, σ′)
        if Q is None:
            Q = ds.mul_(self.base._c_col)
        self.base._gd_update_(H, A, Q, r, step)  # (a non-finite r or σ′ propagates into the state, as before)
        self.integrals(state).add_(q, alpha=step)

    def _eta(self, H: torch.Tensor) -> torch.Tensor:
        """η (eq. (18)) as a (1,) tensor, its indicator in a scratch buffer."""
        return Q.eta(H, self.interval, self._scratch("ind", tuple(H.shape), H)).view(1)

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        parts = self.base.rhs_into(self.core(state), self.core(out))
        out[self.N:] = self.integrands(parts)
        return parts

    def rhs_core_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        """:meth:`rhs_into` without the integrands (their entries of ``out`` set to 0), for a solver's stages whose
        integral entries nothing reads: DOP853's stages 2–5 and dopri5's stage 2 have weight 0 in the solution and
        in the dense output (the integrals' atol = ∞ leaves them out of the error norm), and their stage states
        read only the core (:attr:`rhs_reads`).  The integrands cost about what the RHS does (M's Gram product
        and λ_min(M)), so this is a third of their cost with DOP853, and the same result bit for bit."""
        parts = self.base.rhs_into(self.core(state), self.core(out))
        out[self.N:] = 0.0
        return parts

    def train_features(self, state):
        return self.base.train_features(self.core(state))

    def train_features_into(self, state, out):
        return self.base.train_features_into(self.core(state), out)

    def test_features(self, state):
        return self.base.test_features(self.core(state))

    def test_features_into(self, state, out):
        return self.base.test_features_into(self.core(state), out)

    def weights(self, state):
        return self.base.weights(self.core(state))

    def weight_movement(self, state) -> float:
        return self.base.weight_movement(self.core(state))

    def flops_per_eval(self) -> float:
        n, m = self.problem.n, self.problem.net.m
        return self.base.flops_per_eval() + (2.0 * m * n * n if self.lam_min_M else 0.0)
