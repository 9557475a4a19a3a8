r"""Width scalings of Table 1 (EQUATIONS.md §2) — the only place where width factors appear.

For f(x) = α Σ_i c_i σ(h_i(x)), h_i(x) = β Σ_j W_ij φ_j(x) and gradient descent W ← W − δ ℓ ∂L/∂W, the
gradient flow is Ẇ = −ℓ ∂L/∂W with flow time t = kδ after k steps, and the features move with
speed γ = ℓ α β² D (E1).

=========  ========  ========  ======  ===================  ==========================
 scaling    α         β         ℓ       γ = ℓαβ²D            initialisation
=========  ========  ========  ======  ===================  ==========================
 ours       1/m       1/√D      m       1                    i.i.d.
 ntk        1/√m      1/√D      1       1/√m                 symmetrised ("doubling", §2.4): f⁰ ≡ 0
 mf         1/m       1/D       m²      m/D  (= 1 at D = m)  i.i.d.
=========  ========  ========  ======  ===================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass

from .._validate import describe


@dataclass(frozen=True)
class Scaling:
    """One column of Table 1.

    Attributes:
        name: ``"ours"``, ``"ntk"`` or ``"mf"``.
        alpha_exp, beta_exp, lr_exp: α = m^{-alpha_exp}, β = D^{-beta_exp}, ℓ = m^{lr_exp}.
        symmetric: whether the initialisation is symmetrised so that f⁰ ≡ 0 (NTK, §2.4).
    """

    name: str
    alpha_exp: float
    beta_exp: float
    lr_exp: float
    symmetric: bool = False

    def alpha(self, m: int) -> float:
        return float(m) ** (-self.alpha_exp)

    def beta(self, D: int) -> float:
        return float(D) ** (-self.beta_exp)

    def lr(self, m: int) -> float:
        """ℓ, the learning-rate factor: Ẇ = −ℓ ∂L/∂W."""
        return float(m) ** self.lr_exp

    def gamma(self, m: int, D: int) -> float:
        """γ = ℓ α β² D, the feature-speed coefficient of (E1)/(E4)."""
        return self.lr(m) * self.alpha(m) * self.beta(D) ** 2 * D


OURS = Scaling("ours", 1.0, 0.5, 1.0)
NTK = Scaling("ntk", 0.5, 0.5, 0.0, symmetric=True)
MF = Scaling("mf", 1.0, 1.0, 2.0)

_ALIASES = {"ours": OURS, "ntk": NTK, "mf": MF, "mean_field": MF, "mean-field": MF, "meanfield": MF}
SCALINGS = ("ours", "ntk", "mf")


def get_scaling(spec) -> Scaling:
    """Resolve ``"ours"``, ``"ntk"``, ``"mf"`` (aliases ``"mean_field"``, ``"mean-field"``) or a Scaling."""
    if isinstance(spec, Scaling):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"scaling must be one of {list(SCALINGS)}, got {describe(spec)}")
    key = spec.lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown scaling {spec!r}; expected one of {list(SCALINGS)}")
    return _ALIASES[key]


__all__ = ["MF", "NTK", "OURS", "SCALINGS", "Scaling", "get_scaling"]
