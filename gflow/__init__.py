"""gflow — exact continuous gradient-flow simulation of wide neural networks.

Pipeline (imports flow one way): ``model`` (activations, embeddings, scalings, network) → ``fields`` (weight-
and feature-space vector fields) → ``solve`` (ODE solvers, gradient descent) → ``solution`` (results and files)
→ ``cli``.  The paper: Chen, Vanden-Eijnden & Bruna, *On Feature Learning in Neural Networks with Global
Convergence Guarantees*, ICLR 2022.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version

try:
    __version__ = _version("gflow")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0+local"

from . import data, plotting
from .fields import FeatureSpaceField, Problem, WeightSpaceField, make_field
from .model import (
    ACTIVATIONS,
    SCALINGS,
    Activation,
    Callable as Callable,  # (an attribute, not star-exported: see __all__)
    DeepRandomFeatures,
    Identity,
    Network,
    Quadratic,
    RandomFeatures,
    Scaling,
    get_activation,
    get_embedding,
    get_scaling,
)
from ._lock import InUseError
from .solution import STATUSES, GFlowWarning, Interrupted, Solution, SolverError, load
from .solve import METHODS, default_saveat, extend, gradient_descent, rerun, simulate
from .sweeps import open_sweep, run_solution, sweep
from .solve.nonsmooth import simulate_nonsmooth
from .solve.batch import gradient_descent_batch, max_seed_rms_norm, networks, simulate_batch
from .theory import Certificate, certify, limit_gram
from .compare import Comparison, compare

# (gf.Callable, the embedding of a user function, stays an attribute but is not star-exported: `from gflow import *`
# shadowed typing.Callable)
__all__ = [
    "__version__", "data", "plotting", "Network", "Activation", "ACTIVATIONS", "get_activation", "Identity", "Quadratic",
    "RandomFeatures", "DeepRandomFeatures", "get_embedding", "Scaling", "SCALINGS", "get_scaling",
    "Problem", "FeatureSpaceField", "WeightSpaceField", "make_field", "simulate", "gradient_descent", "rerun", "extend",
    "METHODS", "default_saveat", "Solution", "load", "STATUSES", "GFlowWarning", "SolverError", "Interrupted",
    "InUseError", "certify",
    "Certificate", "limit_gram", "simulate_nonsmooth", "compare", "Comparison",
    "sweep", "open_sweep", "run_solution",
    "simulate_batch", "gradient_descent_batch", "networks", "max_seed_rms_norm",
]
