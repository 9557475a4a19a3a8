"""Exact gradient-flow vector fields in weight space (eq. (10)) and feature space (eq. (11))."""

import torch

from .base import AbstractField, Problem
from .feature_space import FeatureSpaceField
from .observed import INTEGRALS, ObservedField
from .weight_space import WeightSpaceField

SPACES = ("auto", "weight", "feature")


#: What one state entry costs per evaluation in an explicit Runge–Kutta solve, in flops of the RHS's products:
#: the stages, the solution, the error estimate and the step's bookkeeping stream the state about a dozen times
#: per evaluation, measured at 1.7–2 ns per entry per evaluation (dop853, 2-core Intel Xeon, m = 1024, D = 20,
#: n = 20…80, and m = 1024, D = 256, n = 400) against ≈ 12.5 ps per flop of the RHS.  Gradient descent streams
#: its state once per step and counts 0.
RK_FLOPS_PER_STATE_ENTRY = 150.0


def auto_space(problem: Problem, per_entry: float = 0.0) -> str:
    """The cheaper exact form of the flow: ``"feature"`` iff 2mn² + κ·2mn < 4mDn + κ·mD, with the RHS's flops
    (eq. (11): 2mn², eq. (10): 4mDn) and κ = ``per_entry`` flops for each entry of the state (feature: [H, A],
    2mn entries; weight: W, mD) — :data:`RK_FLOPS_PER_STATE_ENTRY` for ODE solvers, 0 (n < 2D) for GD.

    With κ = 150 feature space still wins wherever n is well below 2D, but small shallow problems move to weight
    space, e.g. Experiment 1 at n = 20, D = 20 (weight space's state is half the size): dop853 there ran 1.06×
    (m = 1024, t1 = 100) to 1.18× (the demo; m = 256) faster in weight space, at n = 30 1.03–1.26×; feature space
    stays faster at n = 8 (1.17×) — re-measured on an AMD EPYC Zen 4 with both states' products in BLAS's
    column-major fast case (the [Hᵀ, Aᵀ] feature state; weight space's column-major buffers).
    """
    m, n, D = problem.net.m, problem.n, problem.net.D
    if lossy_feature_space(problem):
        return "weight"
    feature = 2.0 * m * n * n + per_entry * 2.0 * m * n
    weight = 4.0 * m * n * D + per_entry * m * D
    return "feature" if feature < weight else "weight"


def lossy_feature_space(problem: Problem) -> bool:
    """Whether feature space loses W and the test outputs here: float32 with n > D.  G = ΦΦᵀ/D then has a null
    space, along which the residual never decays, so A = ∫P (from which W and the test features are recovered)
    grows ∝ t there; the recovery cancels that part exactly only in exact arithmetic, and in float32 ε·|A| leaks
    into W and the test outputs (a d = 2, n = 8 tanh net at t = 1e4: 7.5 % off a test output, the loss right to
    2e-7).  Weight space has no A: :func:`auto_space` takes it, and ``"auto"`` does not pick exprk4."""
    return problem.net.dtype == torch.float32 and problem.n > problem.net.D


def feature_space_warning(problem: Problem, feature_only: str | None = None) -> str:
    """The warning for a feature-space run where :func:`lossy_feature_space`; ``feature_only``: the method, where
    it runs in feature space only (exprk4, filippov, sliding: then float64 is the advice, not space='weight')."""
    advice = (f"use dtype float64 (method {feature_only!r} runs in feature space only)" if feature_only else
              "use space='weight' (or space='auto') or dtype float64")
    return (f"float32 feature space with n = {problem.n} > D = {problem.net.D}: W and the test outputs are recovered "
            "from A = ∫P, whose part along G's null space grows ∝ t and leaks ε·|A| into them (the loss and training "
            f"features stay accurate); {advice}")


def make_field(problem: Problem, space: str = "auto", per_entry: float = 0.0, layout: str = "nm") -> AbstractField:
    """The vector field in the requested space; ``"auto"`` picks the cheaper exact form (:func:`auto_space`,
    ``per_entry`` its cost of a state entry: 0 — feature iff n < 2D — unless the caller is an ODE solver);
    ``layout``: the feature state's memory layout (:class:`FeatureSpaceField`)."""
    from .._validate import check_choice

    check_choice(space, "space", SPACES)
    if space == "auto":
        space = auto_space(problem, per_entry)
    return FeatureSpaceField(problem, layout) if space == "feature" else WeightSpaceField(problem)


__all__ = [
    "RK_FLOPS_PER_STATE_ENTRY",
    "auto_space",
    "feature_space_warning",
    "lossy_feature_space",
    "INTEGRALS",
    "SPACES",
    "AbstractField",
    "FeatureSpaceField",
    "ObservedField",
    "Problem",
    "WeightSpaceField",
    "make_field",
]
