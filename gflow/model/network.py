r"""The network f(x) = α Σ_i c_i σ(h_i(x)), h_i(x) = β Σ_j W_ij φ_j(x) (eqs. (2)–(3), EQUATIONS.md §1–2).

c is fixed, W is trained.  Initialisation (Assumptions 1 and 3): c_i = ĉ·ε_i with ε_i Rademacher and
W_ij ~ N(0, 1), drawn from one seed on the CPU in float64 and then cast and moved, so that one seed gives
the same network on every device and dtype.  Under the NTK scaling the initialisation is symmetrised
(EQUATIONS.md §2.4): neurons i and i + m/2 share their weights and have opposite c, so f⁰ ≡ 0.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validate import as_tensor, check_positive_float, check_positive_int, describe
from .activations import get_activation
from .embeddings import BoundEmbedding, Callable, _cpu_generator, check_seed, get_embedding
from .scaling import get_scaling

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "double": torch.float64, "float": torch.float32}


def _physical_memory() -> float:
    """Bytes of physical memory (inf where the platform does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return math.inf


def resolve_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float64, torch.float32):
            raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        return _DTYPES[dtype.replace("torch.", "")]
    if isinstance(dtype, (type, np.dtype)) and dtype in (np.float64, np.float32):  # (np.float64 was refused)
        return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    raise TypeError(f"dtype must be torch.float64 or torch.float32 (or 'float64'/'float32'), got {describe(dtype)}")


def check_device(device: Any) -> torch.device:
    """``device`` as a torch device of type ``cpu`` or ``cuda``, whether or not this machine has CUDA
    (:func:`resolve_device` checks that too; a sweep's runs may execute on another machine's GPUs)."""
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError, ValueError) as exc:  # (ValueError: an int beyond int64)
        raise TypeError(
            f"device must be a torch device or a string like 'cpu' or 'cuda', got {describe(device)}"
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (gflow is tested on these), got {str(dev)!r}")
    return dev


def resolve_device(device: Any) -> torch.device:
    dev = check_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(dev)!r} was requested but CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _probe(embedding, dtype: torch.dtype, device: torch.device) -> dict:
    """The keywords that probe a callable embedding in the network's dtype and on its device — what it will be
    given (a float32 map failed on a float64 probe with torch's dtype error); none for the others."""
    return {"dtype": dtype, "device": device} if isinstance(embedding, Callable) else {}


def check_network_args(d: Any, width: Any, activation: Any, embedding: Any, scaling: Any, c_hat: Any, seed: Any,
                       dtype: Any, device: Any, *, explicit: bool = False, available: bool = True) -> dict:
    """The checks :class:`Network` makes of its keywords, without drawing its weights (m × D = 8192² of them take
    ~1 s): ``{name: value}`` as the network holds them.  ``explicit``: c and W0 are given (any width then);
    ``available=False`` accepts a CUDA device on a machine without one (:func:`check_device`: a sweep checks every
    grid point's [network] up front, and its runs may execute on a cluster's GPUs)."""
    out = {"d": check_positive_int(d, "d"), "width": check_positive_int(width, "width"),
           "activation": get_activation(activation), "embedding": get_embedding(embedding),
           "scaling": get_scaling(scaling), "c_hat": check_positive_float(c_hat, "c_hat"),
           "seed": check_seed(seed, "seed"), "dtype": resolve_dtype(dtype),
           "device": resolve_device(device) if available else check_device(device)}
    d, m, act, scale = out["d"], out["width"], out["activation"], out["scaling"]
    if not act.builtin:
        act.check_dtype(out["dtype"])
    if scale.symmetric and m % 2 and not explicit:
        raise ValueError(
            f"width must be even for the {scale.name!r} scaling (symmetrised initialisation pairs "
            f"neuron i with i + m/2), got width={m}"
        )
    D = out["embedding"].dim(d, **_probe(out["embedding"], out["dtype"],
                                         out["device"] if available else torch.device("cpu")))
    need = 8.0 * m * D  # W0 is drawn in float64 on the CPU
    if need > _physical_memory():
        raise ValueError(f"width × D = {m} × {D} first-layer weights need {need / 2**30:.3g} GiB in float64, more "
                         f"than this machine's {_physical_memory() / 2**30:.3g} GiB of memory; use a smaller width "
                         f"or input dimension (d = {d}, embedded to D = {D})")
    return out


@dataclass(frozen=True, eq=False, repr=False)
class Network:
    r"""A two-layer network on a fixed embedding, with its initialisation.

    Args:
        d: input dimension.
        width: m, the number of trained neurons.
        activation: σ — a name (``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"linear"``,
            ``"erf"``, ``"softplus"``, ``"gelu"``), a spec dict such as ``{"name": "leaky_relu", "slope": 0.1}``,
            or a :class:`gflow.Activation`.
        embedding: Φ — ``"identity"`` (shallow net, D = d), ``"quadratic"`` (D = d²),
            :class:`gflow.RandomFeatures`, :class:`gflow.DeepRandomFeatures`, or a callable X ↦ Φ(X).
        scaling: ``"ours"``, ``"ntk"`` or ``"mf"`` (Table 1, see :mod:`gflow.model.scaling`).
        c_hat: ĉ > 0, the magnitude of the output weights (Assumption 1).
        seed: seed of c, W and (unless the embedding has its own) the embedding's random layer.
        c: explicit output weights (m,), replacing the random draw.
        W0: explicit initial weights (m, D), replacing the random draw.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        device: ``"cpu"`` (default), ``"cuda"``, ...

    Example:
        >>> import gflow as gf
        >>> net = gf.Network(d=20, width=64, activation="tanh", seed=0)
        >>> net.c.shape, net.W0.shape, round(net.gamma, 12)   # γ = 1 for "ours", up to rounding
        (torch.Size([64]), torch.Size([64, 20]), 1.0)
    """

    d: int
    width: int
    activation: Any = "tanh"
    embedding: Any = "identity"
    scaling: Any = "ours"
    c_hat: float = 1.0
    seed: int = 0
    c: Any = None
    W0: Any = None
    dtype: Any = torch.float64
    device: Any = "cpu"
    _phi: BoundEmbedding = field(init=False, repr=False)
    _explicit: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)
        checked = check_network_args(self.d, self.width, self.activation, self.embedding, self.scaling, self.c_hat,
                                     self.seed, self.dtype, self.device,
                                     explicit=self.c is not None and self.W0 is not None)
        for key, value in checked.items():
            set_(key, value)
        d, m = self.d, self.width
        phi = self.embedding.bind(d, activation=self.activation, seed=self.seed, **_probe(self.embedding, self.dtype,
                                                                                         self.device))
        set_("_phi", phi)
        D = phi.D

        explicit = self.c is not None or self.W0 is not None
        c64, W64 = self._draw(m, D)
        if self.c is not None:
            c64 = self._explicit_param(self.c, "c", (m,))
        if self.W0 is not None:
            W64 = self._explicit_param(self.W0, "W0", (m, D))
        set_("_explicit", explicit)
        set_("c", c64.to(dtype=self.dtype, device=self.device))
        set_("W0", W64.to(dtype=self.dtype, device=self.device))

    def _draw(self, m: int, D: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = _cpu_generator(self.seed)
        k = m // 2 if self.scaling.symmetric else m
        eps = torch.randint(0, 2, (k,), generator=g, dtype=torch.int64).to(torch.float64) * 2.0 - 1.0
        W = torch.randn(k, D, generator=g, dtype=torch.float64)
        c = self.c_hat * eps
        if self.scaling.symmetric:
            c, W = torch.cat([c, -c]), torch.cat([W, W])
        return c, W

    def _explicit_param(self, value: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.dtype != self.dtype:
                raise TypeError(f"{name} has dtype {value.dtype} but dtype={self.dtype} was requested; "
                                f"pass {name}.to({self.dtype})")
            if value.device != self.device:
                raise ValueError(f"{name} is on device {value.device} but device={self.device} was requested")
            value = value.detach().cpu()
        t = as_tensor(value, name, ndim=len(shape), dtype=torch.float64, device=torch.device("cpu"), shape=shape)
        return t.clone()

    # ----------------------------------------------------------------------------------------------------
    # Dimensions and coefficients (Table 1)

    @property
    def m(self) -> int:
        """Width m."""
        return int(self.width)

    @property
    def D(self) -> int:
        """Embedding dimension D."""
        return self._phi.D

    @property
    def alpha(self) -> float:
        """Output factor α."""
        return self.scaling.alpha(self.m)

    @property
    def beta(self) -> float:
        """Hidden factor β."""
        return self.scaling.beta(self.D)

    @property
    def lr(self) -> float:
        """Learning-rate factor ℓ: the flow is Ẇ = −ℓ ∂L/∂W."""
        return self.scaling.lr(self.m)

    @property
    def gamma(self) -> float:
        """Feature-speed coefficient γ = ℓαβ²D of (E1)."""
        return self.scaling.gamma(self.m, self.D)

    @property
    def kernel_coef(self) -> float:
        """κ_M = ℓα²β²D·m, the factor in M = κ_M·G∘S (E3): 1 for "ours" and "ntk", m/D for "mf"."""
        return self.lr * self.alpha**2 * self.beta**2 * self.D * self.m

    @property
    def explicit_params(self) -> bool:
        """Whether c or W0 were given explicitly (a file then stores them, since the seed does not)."""
        return self._explicit

    # ----------------------------------------------------------------------------------------------------
    # Evaluation

    def _inputs(self, X: Any, name: str = "X") -> torch.Tensor:
        return as_tensor(X, name, ndim=2, dtype=self.dtype, device=self.device, shape=(None, self.d))

    def embed(self, X: Any) -> torch.Tensor:
        """Φ(X): (n, d) → (n, D), in the network's dtype and on its device."""
        return self._phi(self._inputs(X))

    def gram(self, X: Any, X2: Any = None) -> torch.Tensor:
        """G = Φ(X)Φ(X2)ᵀ/D (eq. (12)); (n, n) or (n, n2)."""
        P1 = self.embed(X)
        P2 = P1 if X2 is None else self.embed(X2)
        return (P1 @ P2.T) / self.D

    def features(self, X: Any, W: torch.Tensor | None = None) -> torch.Tensor:
        """H = [h_i(x_a)] = β W Φ(X)ᵀ, shape (m, n); W defaults to W0."""
        if W is None:
            W = self.W0
        elif not isinstance(W, torch.Tensor):
            W = as_tensor(W, "W", ndim=2, dtype=self.dtype, device=self.device, shape=(self.m, self.D))
        elif W.dtype != self.dtype or W.device != self.device or tuple(W.shape) != (self.m, self.D):
            # (a tensor is not converted — autograd through W must keep working — only checked)
            raise TypeError(f"W must be a ({self.m}, {self.D}) tensor of dtype {self.dtype} on {self.device}, got "
                            f"{describe(W)}")
        return self.beta * (W @ self.embed(X).T)

    def forward(self, X: Any, W: torch.Tensor | None = None) -> torch.Tensor:
        """f(X) = α σ(H)ᵀ c, shape (n,)."""
        return self.alpha * (self.activation.sigma(self.features(X, W)).T @ self.c)

    __call__ = forward

    def loss(self, X: Any, y: Any, W: torch.Tensor | None = None) -> torch.Tensor:
        """L = ½ Σ_a (f(x_a) − y_a)² (eq. (6), a sum over points)."""
        f = self.forward(X, W)
        yt = as_tensor(y, "y", ndim=(1, 2), dtype=self.dtype, device=self.device).reshape(-1)
        if yt.shape[0] != f.shape[0]:
            raise ValueError(f"y has {yt.shape[0]} entries but there are {f.shape[0]} inputs (rows of X); give one "
                             "target per input")
        return 0.5 * ((f - yt) ** 2).sum()

    # ----------------------------------------------------------------------------------------------------

    def to(self, dtype: Any = None, device: Any = None) -> Network:
        """The same network (same c, W0 and embedding draw) in another dtype or on another device.

        A network drawn from its seed is drawn again (in float64 on the CPU, then cast): copying its parameters
        carried float32's rounding into ``net.to(dtype="float32").to(dtype="float64")`` (W0 5.8e-8 off the seed's
        draw) while its files, which rebuild it from the seed, said it was the seed's network — ``gf.rerun`` then
        differed by 2.8e-8 in the loss.  Explicit c, W0 are copied."""
        explicit = self._explicit
        new = dataclasses.replace(
            self,
            activation=self.activation,
            embedding=self.embedding,
            scaling=self.scaling,
            c=self.c.detach().cpu().to(torch.float64).numpy() if explicit else None,
            W0=self.W0.detach().cpu().to(torch.float64).numpy() if explicit else None,
            dtype=self.dtype if dtype is None else dtype,
            device=self.device if device is None else device,
        )
        object.__setattr__(new, "_explicit", explicit)
        return new

    def spec(self) -> dict:
        """A JSON-able description from which :meth:`from_spec` rebuilds the network (with the seed)."""
        return {
            "d": self.d,
            "width": self.width,
            "activation": self.activation.spec(),
            "embedding": self.embedding.spec(),
            "scaling": self.scaling.spec(),
            "c_hat": self.c_hat,
            "seed": self.seed,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "explicit_params": self._explicit,
        }

    @classmethod
    def from_spec(cls, spec: dict, *, c=None, W0=None, device: Any = None, activation=None,
                  embedding=None) -> Network:
        """Rebuild a network from :meth:`spec` (plus c and W0 when they were explicit)."""
        spec = dict(spec)
        spec.pop("explicit_params", None)
        if device is not None:
            spec["device"] = device
        recorded_act, recorded_emb = spec.get("activation"), spec.get("embedding")
        if activation is not None:
            # only what a file cannot rebuild may be passed again: a built-in that differs from the recorded one
            # would silently run another problem, and so would a custom σ other than the recorded one — the file
            # records a custom σ by its name and parameters, so one of another name (or a built-in) is refused
            given = get_activation(activation).spec()
            if isinstance(recorded_act, dict) and not recorded_act.get("custom") and given != recorded_act:
                raise ValueError(f"activation={given} differs from the recorded "
                                 f"{recorded_act}: pass activation= only for a custom activation, which a file "
                                 "cannot rebuild")
            if isinstance(recorded_act, dict) and recorded_act.get("custom") and \
                    _without_custom(given) != _without_custom(recorded_act):
                raise ValueError(f"activation={given} differs from the recorded {recorded_act}: the run used a "
                                 f"custom activation named {recorded_act.get('name')!r}; pass that gf.Activation "
                                 "again (same name and parameters)")
            spec["activation"] = activation
        if embedding is not None:
            given = get_embedding(embedding).spec()
            if isinstance(recorded_emb, dict) and recorded_emb.get("kind") != "callable" and \
                    not _embedding_has_custom_activation(recorded_emb) and given != recorded_emb:
                raise ValueError(f"embedding={given} differs from the recorded "
                                 f"{recorded_emb}: pass embedding= only for a callable embedding or one with a "
                                 "custom activation, which a file cannot rebuild")
            # (an embedding with a custom activation was taken whatever it was: another D, seed or activation ran
            # another problem; the file records all but the activation's functions)
            if isinstance(recorded_emb, dict) and _embedding_has_custom_activation(recorded_emb) and \
                    _embedding_identity(given) != _embedding_identity(recorded_emb):
                raise ValueError(f"embedding={given} differs from the recorded {recorded_emb}: the run's embedding "
                                 f"used a custom activation named {recorded_emb['activation'].get('name')!r}; pass "
                                 "that embedding again (same kind, D, seed and activation)")
            spec["embedding"] = embedding
        elif isinstance(recorded_emb, dict) and recorded_emb.get("kind") == "callable":
            raise ValueError(
                f"this network used a user callable embedding ({recorded_emb.get('fn')}); pass it again "
                "as embedding=..."
            )
        elif isinstance(recorded_emb, dict) and _embedding_has_custom_activation(recorded_emb):
            raise ValueError(f"this network's embedding {recorded_emb['kind']!r} used a custom activation named "
                             f"{recorded_emb['activation'].get('name')!r}, which a file cannot rebuild; pass the "
                             "embedding again, e.g. embedding=gf.RandomFeatures(D=..., activation=..., seed=...)")
        return cls(**spec, c=c, W0=W0)

    # Two networks are equal when they are the same model and initialisation: the same d, width, σ, Φ, scaling,
    # ĉ, seed, dtype and device and the same c and W0 bit for bit (before: identity, so a network built twice
    # from the same arguments, or pickled and loaded, differed from itself).  Hashing takes the settings only.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        if self is other:
            return True
        same = (self.d == other.d and self.width == other.width and self.c_hat == other.c_hat
                and self.seed == other.seed and self.dtype == other.dtype
                and torch.device(self.device) == torch.device(other.device)
                and self._explicit == other._explicit and self.activation == other.activation
                and self.embedding == other.embedding and self.scaling == other.scaling)
        return bool(same and torch.equal(self.c, other.c) and torch.equal(self.W0, other.W0))

    def __hash__(self) -> int:
        return hash((self.d, self.width, self.activation.name, self.scaling.name, self.c_hat, self.seed, self.dtype))

    def __reduce_ex__(self, protocol):
        # rebuilt from its arguments, as :meth:`to` does: a seed's draw is made again (on the CPU, the same on every
        # machine), explicit c and W0 are carried; a built-in σ, whose functions are closures, travels by its name
        explicit = self._explicit
        args = dict(d=self.d, width=self.width, activation=self.activation, embedding=self.embedding,
                    scaling=self.scaling, c_hat=self.c_hat, seed=self.seed,
                    c=self.c.detach().cpu().to(torch.float64).numpy() if explicit else None,
                    W0=self.W0.detach().cpu().to(torch.float64).numpy() if explicit else None,
                    dtype=self.dtype, device=str(self.device))
        return (_network_from_args, (args, explicit))

    def __repr__(self) -> str:
        return (
            f"Network(d={self.d}, width={self.width}, D={self.D}, activation={self.activation.name!r}, "
            f"embedding={self.embedding.spec()['kind']!r}, scaling={self.scaling.name!r}, c_hat={self.c_hat}, "
            f"seed={self.seed}, dtype={self.dtype}, device={str(self.device)!r})"
        )


def _network_from_args(args: dict, explicit: bool) -> Network:
    """A pickled :class:`Network` again (its ``__reduce_ex__``)."""
    net = Network(**args)
    object.__setattr__(net, "_explicit", explicit)
    return net


def _without_custom(spec: dict) -> dict:
    """An activation's spec without its ``custom`` mark: the name and parameters that identify it."""
    return {k: v for k, v in spec.items() if k != "custom"}


def _embedding_identity(spec: dict) -> dict:
    """An embedding's spec with its activation's ``custom`` mark dropped: what identifies it."""
    act = spec.get("activation")
    return dict(spec, activation=_without_custom(act)) if isinstance(act, dict) else spec


def _embedding_has_custom_activation(spec: dict) -> bool:
    act = spec.get("activation")
    return isinstance(act, dict) and bool(act.get("custom"))


__all__ = ["Network", "check_device", "check_network_args", "resolve_device", "resolve_dtype"]
