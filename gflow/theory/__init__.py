"""Theory: limiting Gram matrices, bounds and certificates (EQUATIONS.md §6–§11)."""

from .bounds import (
    C1,
    C2,
    Hypothesis,
    IntervalChoice,
    K_const,
    RealisedTheorem1,
    TheoremReport,
    best_interval,
    dsigma_inf,
    inner_interval,
    kappa,
    kappa_xi,
    pl_rate,
    prob_inner,
    realised_theorem1,
    theorem1,
    theorem2,
    theorem3,
)
from .certify import Certificate, Check, certify
from .limit_gram import gram_concentration, gram_stats, kernel_map, limit_gram

__all__ = [
    "C1", "C2", "Hypothesis", "IntervalChoice", "K_const", "RealisedTheorem1", "TheoremReport", "best_interval",
    "dsigma_inf", "inner_interval", "kappa", "kappa_xi", "pl_rate", "prob_inner", "realised_theorem1",
    "theorem1", "theorem2", "theorem3", "Certificate", "Check", "certify", "gram_concentration", "gram_stats",
    "kernel_map", "limit_gram",
]
