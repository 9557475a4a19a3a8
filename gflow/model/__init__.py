"""The paper's networks: activations, embeddings, scalings (Table 1) and the network itself."""

from .activations import ACTIVATIONS, Activation, get_activation
from .embeddings import (
    AbstractEmbedding,
    Callable,
    DeepRandomFeatures,
    Identity,
    Quadratic,
    RandomFeatures,
    get_embedding,
)
from .network import Network
from .scaling import SCALINGS, Scaling, get_scaling

__all__ = [
    "ACTIVATIONS",
    "SCALINGS",
    "AbstractEmbedding",
    "Activation",
    "Callable",
    "DeepRandomFeatures",
    "Identity",
    "Network",
    "Quadratic",
    "RandomFeatures",
    "Scaling",
    "get_activation",
    "get_embedding",
    "get_scaling",
]
