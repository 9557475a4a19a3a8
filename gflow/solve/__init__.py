"""Solvers: the ODE entry point :func:`simulate` and discrete :func:`gradient_descent`."""

from .extend import extend
from .gd import gradient_descent
from .nonsmooth import simulate_nonsmooth
from .ode import (
    FIXED_STEP_METHODS,
    METHODS,
    NATIVE_METHODS,
    SCIPY_METHODS,
    TORCHDIFFEQ_ADAPTIVE,
    default_saveat,
    simulate,
)
from .rerun import rerun

__all__ = [
    "FIXED_STEP_METHODS",
    "METHODS",
    "NATIVE_METHODS",
    "SCIPY_METHODS",
    "TORCHDIFFEQ_ADAPTIVE",
    "default_saveat",
    "extend",
    "gradient_descent",
    "rerun",
    "simulate",
    "simulate_nonsmooth",
]
