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

import math
from dataclasses import dataclass

from .._validate import describe, is_real


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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Scaling name must be a str, got {describe(self.name)}")
        if not self.name:
            raise ValueError("Scaling name must be a non-empty str, got ''")
        for field in ("alpha_exp", "beta_exp", "lr_exp"):
            v = getattr(self, field)
            if not is_real(v) or not math.isfinite(float(v)):
                raise ValueError(f"Scaling {field} must be a finite number (the exponent of m or D), got {describe(v)}")
            object.__setattr__(self, field, float(v))
        if not isinstance(self.symmetric, bool):
            raise TypeError(f"Scaling symmetric must be a bool, got {describe(self.symmetric)}")

    @property
    def paper(self) -> bool:
        """Whether these are the paper's exponents (Table 1's "ours": α = 1/m, β = 1/√D, ℓ = m, i.i.d.), for which
        Lemma 1 and Theorem 1 are stated — whatever the name."""
        return (self.alpha_exp, self.beta_exp, self.lr_exp, self.symmetric) == (1.0, 0.5, 1.0, False)

    def spec(self):
        """The name for a built-in; for any other Scaling (a custom one, or one that reuses a built-in's name with
        other exponents) a dict of its fields, which :func:`get_scaling` takes back: a file then rebuilds it
        exactly instead of by name."""
        if _ALIASES.get(self.name) == self:
            return self.name
        return {"name": self.name, "alpha_exp": self.alpha_exp, "beta_exp": self.beta_exp, "lr_exp": self.lr_exp,
                "symmetric": self.symmetric}

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


_FIELDS = ("name", "alpha_exp", "beta_exp", "lr_exp", "symmetric")


def get_scaling(spec) -> Scaling:
    """Resolve ``"ours"``, ``"ntk"``, ``"mf"`` (aliases ``"mean_field"``, ``"mean-field"``), a Scaling, or the dict
    of a custom one's fields (:meth:`Scaling.spec`, as files store it)."""
    if isinstance(spec, Scaling):
        return spec
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(_FIELDS))
        missing = [k for k in _FIELDS[:4] if k not in spec]
        if unknown or missing:
            raise ValueError(f"a scaling given as a dict needs the keys {list(_FIELDS[:4])} (and optionally "
                             f"'symmetric'); got unknown {unknown} and missing {missing}")
        return Scaling(**spec)
    if not isinstance(spec, str):
        raise TypeError(f"scaling must be one of {list(SCALINGS)}, got {describe(spec)}")
    key = spec.lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown scaling {spec!r}; expected one of {list(SCALINGS)}")
    return _ALIASES[key]


__all__ = ["MF", "NTK", "OURS", "SCALINGS", "Scaling", "get_scaling"]
