"""Exact gradient-flow vector fields in weight space (eq. (10)) and feature space (eq. (11))."""

from .base import AbstractField, Problem
from .feature_space import FeatureSpaceField
from .observed import INTEGRALS, ObservedField
from .weight_space import WeightSpaceField

SPACES = ("auto", "weight", "feature")


def make_field(problem: Problem, space: str = "auto") -> AbstractField:
    """The vector field in the requested space; ``"auto"`` picks the cheaper exact form (feature iff n < 2D)."""
    from .._validate import check_choice

    check_choice(space, "space", SPACES)
    if space == "auto":
        space = "feature" if problem.n < 2 * problem.net.D else "weight"
    return FeatureSpaceField(problem) if space == "feature" else WeightSpaceField(problem)


__all__ = [
    "INTEGRALS",
    "SPACES",
    "AbstractField",
    "FeatureSpaceField",
    "ObservedField",
    "Problem",
    "WeightSpaceField",
    "make_field",
]
