r"""S independent gradient flows (one per network seed, same data) evaluated in one batched computation.

Seed s has its own output weights c_s, initial weights W0_s and — when the embedding draws random features from
the network seed — its own Gram G_s.  Stacking the S states along a leading dimension turns the S small matrix
products of eqs. (10)/(11) into one ``torch.bmm`` (or, when every seed shares G, one ``torch.mm`` on the
(S·m, n) stacked P), and the elementwise work into single kernels over S·m·n entries:

    feature space (eq. (11), E4):  Ḣ_s = −γ P_s G_s,   Ȧ_s = P_s,   P_s = c_s σ′(H_s) r_s,   state (S, 2, m, n);
    weight space (eq. (10)):       Ẇ_s = −ℓαβ P_s Φ_s,                                        state (S, m, D).

With ``integrals`` the state of each seed also carries the six running integrals of
:class:`~gflow.fields.ObservedField` (EQUATIONS.md §9).  The batched state is always the (S, L) matrix whose row s
is *exactly* the state of the individual (possibly observed) field of seed s, flattened: the per-seed fields in
:attr:`BatchedField.fields` read H, the test features and W off ``state[s]`` as they do for an individual run,
so the recorder of an individual run is reused unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import AbstractField
from .feature_space import FeatureSpaceField
from .observed import INTEGRALS, ObservedField
from .weight_space import WeightSpaceField

CPU_CHUNK_ELEMENTS = 2**16  # entries per batched tensor on a CPU: 512 KiB in float64, so that the ~6 tensors of one
# evaluation stay in a core's L2 cache (measured: 8 seeds at m = 1024, n = 20 in one call are 2x slower than 8 calls)


def _all_equal(tensors: Sequence[torch.Tensor]) -> bool:
    return all(t is tensors[0] or torch.equal(t, tensors[0]) for t in tensors[1:])


class BatchedField:
    r"""The vector fields of S compatible per-seed fields, evaluated together.

    Args:
        fields: S per-seed fields of one space (all :class:`FeatureSpaceField`, all :class:`WeightSpaceField`,
            or all :class:`ObservedField` around one of them, with one interval and one ``lam_min_M`` choice),
            whose networks share m, D, activation, scaling, dtype and device and whose problems share X and y.
        chunk_size: seeds per batched kernel call; default: all S on a GPU, and on a CPU as many as keep one
            (k, m, max(n, D)) tensor within :data:`CPU_CHUNK_ELEMENTS` entries (the cache).

    Attributes:
        fields: the per-seed fields (row s of the batched state, viewed as ``fields[s].state_shape``, is seed s).
        S: number of seeds;  L: length of one seed's flat state;  state_shape: (S, L).
        shared_gram: whether one G (and Φ) serves every seed (then one mm instead of a bmm).
    """

    def __init__(self, fields: Sequence[AbstractField], chunk_size: int | None = None):
        fields = list(fields)
        if not fields:
            raise ValueError("BatchedField needs at least one field")
        self.fields = fields
        self.S = S = len(fields)
        self.observed = isinstance(fields[0], ObservedField)
        bases = [f.base if isinstance(f, ObservedField) else f for f in fields]
        kinds = {type(b) for b in bases}
        if len(kinds) != 1 or kinds.pop() not in (FeatureSpaceField, WeightSpaceField):
            raise TypeError("BatchedField needs per-seed fields of one space (feature or weight), got "
                            f"{sorted({type(b).__name__ for b in bases})}")
        if any(isinstance(f, ObservedField) != self.observed for f in fields):
            raise TypeError("BatchedField needs all per-seed fields with integrals or all without")
        self.space = bases[0].space
        self.layout = bases[0].layout
        if any(b.layout != self.layout for b in bases):
            raise ValueError("BatchedField needs one feature-state layout for every seed")
        self.core_shape = tuple(bases[0].state_shape)
        self.N = math.prod(self.core_shape)
        self.L = self.N + (len(INTEGRALS) if self.observed else 0)
        self.state_shape = (S, self.L)
        if chunk_size is None:
            # On a CPU the elementwise work is memory-bound: a batch of S·m·n entries that spills out of the
            # cache is slower than S passes over m·n each, so seeds are grouped to about CPU_CHUNK_ELEMENTS entries
            # per tensor.  On a GPU one launch over the whole batch is best.
            per_seed = max(1, fields[0].problem.net.m * max(fields[0].problem.n, fields[0].problem.net.D
                                                             if bases[0].space == "weight" else 1))
            dev = fields[0].problem.net.device
            chunk_size = S if dev.type != "cpu" else max(1, CPU_CHUNK_ELEMENTS // per_seed)
        elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
        self.chunk_size = min(S, chunk_size)
        self._per_seed_mm = fields[0].problem.net.device.type == "cpu"
        self.chunks = [(a, min(S, a + self.chunk_size)) for a in range(0, S, self.chunk_size)]
        problems = [f.problem for f in fields]
        self.problems = problems
        net = problems[0].net
        self.m, self.n = net.m, problems[0].n
        self._act = net.activation
        self._alpha = net.alpha
        c = torch.stack([p.net.c for p in problems])  # (S, m)
        self._c_col = c[:, :, None]  # (S, m, 1)
        self._c_row = c[:, None, :]  # (S, 1, m)
        self._mu_nu_rows = torch.stack([torch.ones_like(c), c * c], dim=1) / net.m  # (S, 2, m)
        self._y = problems[0].y
        self.shared_gram = _all_equal([p.G for p in problems])
        if self.space == "feature":
            self._minus_gamma_G = (-net.gamma) * (problems[0].G if self.shared_gram
                                                  else torch.stack([p.G for p in problems]))
        else:
            self.shared_gram = self.shared_gram and _all_equal([p.Phi for p in problems])
            Phi = problems[0].Phi if self.shared_gram else torch.stack([p.Phi for p in problems])
            self._beta_PhiT = (net.beta * Phi.transpose(-1, -2)).contiguous()  # (D, n) or (S, D, n)
            self._minus_Phi = ((-net.lr * net.alpha * net.beta) * Phi).contiguous()  # (n, D) or (S, n, D)
            self._lr = net.lr
        if self.observed:
            f0 = fields[0]
            self.interval = f0.interval
            self.lam_min_M = f0.lam_min_M
            if any(f.interval != f0.interval or f.lam_min_M != f0.lam_min_M for f in fields):
                raise ValueError("BatchedField needs one interval and one lam_min_M choice for every seed")
            self._coef = net.kernel_coef
            self._G = problems[0].G if self.shared_gram else torch.stack([p.G for p in problems])
            self._G_over_m = (self._coef / net.m) * self._G  # M = (κ_M/m · G) ∘ (cσ′)ᵀ(cσ′), as ObservedField

    # ------------------------------------------------------------------------------------------------------

    def initial_state(self) -> torch.Tensor:
        """(S, L): row s is ``fields[s].initial_state()`` flattened."""
        return torch.stack([f.initial_state().reshape(-1) for f in self.fields])

    def seed_state(self, state: torch.Tensor, s: int) -> torch.Tensor:
        """Seed s's state, in the shape its own field expects (a view, no copy)."""
        return state[s].view(self.fields[s].state_shape)

    def jump_integrals(self) -> torch.Tensor | None:
        """The flat indices of each seed's ∫η entry (see :meth:`ObservedField.jump_integrals`); None without
        integrals."""
        if not self.observed:
            return None
        return torch.arange(self.S) * self.L + self.N + INTEGRALS.index("eta")

    def atol_vector(self, atol: float) -> torch.Tensor | float:
        """atol for the flows and +inf for the integrals (which then never limit the step), shape (S, L)."""
        if not self.observed:
            return atol
        a = torch.full(self.state_shape, float(atol), dtype=torch.float64, device=self._y.device)
        a[:, self.N:] = math.inf
        return a

    def flops_per_eval(self) -> float:
        return float(sum(f.flops_per_eval() for f in self.fields))

    def _matmul(self, A: torch.Tensor, B: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """A_s B (shared B: one mm on the (k·rows, cols) stack) or A_s B_s (bmm) for the seeds a..b−1."""
        if B.ndim == 2:
            k, rows, cols = A.shape
            return (A.reshape(k * rows, cols) @ B).view(k, rows, B.shape[1])
        return torch.bmm(A, B[a:b])

    def rhs(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """d state/dt, (S, L), and L̇ per seed, (S,) (E3)."""
        out = torch.empty_like(state)
        dL = state.new_empty(self.S)
        for a, b in self.chunks:
            dL[a:b] = self._rhs_chunk(state[a:b], out[a:b], a, b)
        return out, dL

    def _rhs_chunk(self, state: torch.Tensor, out: torch.Tensor, a: int, b: int) -> torch.Tensor:
        k, N = b - a, self.N
        core = state[:, :N].view(k, *self.core_shape)
        nm = self.layout == "nm"  # the feature state holds [Hᵀ, Aᵀ]: H, A and their derivatives are views .mT
        if self.space == "feature":
            H = core[:, 0].mT if nm else core[:, 0]
        else:
            H = self._matmul(core, self._beta_PhiT, a, b)
        # in H's layout ("nm": column-major per seed), so that the elementwise passes between them run contiguous
        # (nm is False in weight space: its layout is None)
        s = (torch.empty((k, self.n, self.m), dtype=H.dtype, device=H.device).mT if nm
             else torch.empty(H.shape, dtype=H.dtype, device=H.device))
        ds = torch.empty_like(s)
        self._act.both_into(H, s, ds)  # fused (float64 tanh: activations.float64_tanh_route)
        r = torch.bmm(self._c_row[a:b], s).squeeze(1).mul_(self._alpha).sub_(self._y)  # (k, n)
        dcore = out[:, :N].view(k, *self.core_shape)
        if self.space == "feature":
            Hdot_out, P_out = (dcore[:, 0].mT, dcore[:, 1].mT) if nm else (dcore[:, 0], dcore[:, 1])
            # P goes straight into its slot Ȧ of the output (seed blocks are contiguous, the chunk is strided)
            P = torch.mul(ds, self._c_col[a:b], out=P_out)
            P.mul_(r[:, None, :])
            if self._per_seed_mm:
                # on a CPU, one mm per seed writes Ḣ in place (a batched product would need a copy); the
                # chunk is small there (CPU_CHUNK_ELEMENTS), so the loop is short
                dL = out.new_empty(k)
                for j in range(k):
                    G = self._minus_gamma_G if self._minus_gamma_G.ndim == 2 else self._minus_gamma_G[a + j]
                    torch.mm(P[j], G, out=Hdot_out[j])
                    dL[j] = torch.dot(dcore[j, 1].reshape(-1), dcore[j, 0].reshape(-1))  # (flat storage: no copy)
                dL.mul_(self._alpha)  # L̇ = α Σ_ia P_ia Ḣ_ia (E3), per seed
            else:
                Hdot = self._matmul(P, self._minus_gamma_G, a, b)
                Hdot_out.copy_(Hdot)
                dL = self._alpha * (P * Hdot).reshape(k, -1).sum(dim=1)
        else:
            P = torch.mul(ds, self._c_col[a:b])
            P.mul_(r[:, None, :])
            if self._per_seed_mm:
                dL = out.new_empty(k)
                for j in range(k):
                    Phi = self._minus_Phi if self._minus_Phi.ndim == 2 else self._minus_Phi[a + j]
                    torch.mm(P[j], Phi, out=dcore[j])
                    dL[j] = torch.dot(dcore[j].reshape(-1), dcore[j].reshape(-1))
                dL.div_(-self._lr)  # energy identity L̇ = −‖Ẇ‖²/ℓ
            else:
                Wdot = self._matmul(P, self._minus_Phi, a, b)
                dcore.copy_(Wdot)
                dL = -(Wdot * Wdot).reshape(k, -1).sum(dim=1) / self._lr
        if self.observed:
            out[:, N:] = self._integrands(H, ds, dL, a, b)
        return dL

    def __call__(self, t, state: torch.Tensor) -> torch.Tensor:
        return self.rhs(state)[0]

    def _integrands(self, H: torch.Tensor, ds: torch.Tensor, dL: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """The integrands of :data:`~gflow.fields.observed.INTEGRALS` per seed, (k, 6) (T2–T5, T8)."""
        m, k = self.m, b - a
        absdL = (-dL).clamp_min(0.0)
        lo, hi = self.interval
        inside = torch.ones_like(H, dtype=torch.bool)
        if math.isfinite(lo):
            inside &= H > lo
        if math.isfinite(hi):
            inside &= H < hi
        eta = (inside.sum(dim=1).to(H.dtype) / m).amin(dim=1)  # eq. (18)
        ds2 = ds * ds
        # μ_a and ν_a = S_aa (T4) in one batched product: rows [1, c_i²]/m against σ′(H)², (k, 2, n)
        munu = torch.bmm(self._mu_nu_rows[a:b], ds2).amin(dim=2)
        if self.lam_min_M:
            cd = ds * self._c_col[a:b]
            G = self._G_over_m if self._G_over_m.ndim == 2 else self._G_over_m[a:b]
            M = torch.bmm(cd.transpose(1, 2), cd).mul_(G)  # M = κ_M G∘S (E3)
            lam = self._lam_min(M, absdL)
        else:
            lam = absdL.new_zeros(k)
        mu, nu = munu[:, 0], munu[:, 1]
        return torch.stack([eta, mu, nu, lam, absdL.sqrt(), absdL], dim=1)

    @staticmethod
    def _lam_min(M: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        try:
            return torch.linalg.eigvalsh(M)[:, 0]
        except RuntimeError:  # a seed with a non-finite M: NaN for that seed only, the others are computed
            out = like.new_full((M.shape[0],), math.nan)
            for s in range(M.shape[0]):
                try:
                    out[s] = torch.linalg.eigvalsh(M[s])[0]
                except RuntimeError:
                    pass
            return out


__all__ = ["CPU_CHUNK_ELEMENTS", "BatchedField"]
