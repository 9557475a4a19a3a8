"""Solvers: the ODE entry point :func:`simulate` and discrete :func:`gradient_descent`."""

from .gd import gradient_descent
from .nonsmooth import simulate_nonsmooth
from .ode import FIXED_STEP_METHODS, METHODS, SCIPY_METHODS, TORCHDIFFEQ_ADAPTIVE, default_saveat, simulate
from .rerun import rerun

__all__ = ["simulate", "gradient_descent", "rerun", "METHODS", "FIXED_STEP_METHODS", "SCIPY_METHODS",
           "TORCHDIFFEQ_ADAPTIVE", "default_saveat", "simulate_nonsmooth"]
