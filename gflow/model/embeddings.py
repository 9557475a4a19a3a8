r"""Embeddings Φ: ℝ^d → ℝ^D (EQUATIONS.md §1).

* :class:`Identity` — the shallow mean-field net (1), D = d.
* :class:`Quadratic` — Φ(x) = vec(x xᵀ), D = d² (Experiment 2).
* :class:`RandomFeatures` — φ_j(x) = σ(z_jᵀx/√d), z_j ~ N(0, I_d) (the P-3L net, eqs. (4)–(5)).
* :class:`DeepRandomFeatures` — the fixed layers of the partially-trained L-layer net (Appendix H).
* :class:`Callable` — any user function X ↦ Φ(X).

An embedding is a *specification* (frozen, no tensors).  :meth:`AbstractEmbedding.bind` draws its random
parameters, on the CPU in float64 from a seed, and returns a :class:`BoundEmbedding` that maps an (n, d)
tensor to its (n, D) features.  Drawing on the CPU makes one seed give the same network on every device.
"""

from __future__ import annotations

import inspect

import math
from collections.abc import Callable as _Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validate import check_positive_int, describe
from .activations import Activation, get_activation


#: the largest seed torch's generator takes (seeds are unsigned 64-bit integers)
MAX_SEED = 2**64 - 1


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in [0, 2**64 - 1] (what ``torch.Generator.manual_seed`` accepts)."""
    seed = check_positive_int(value, name, minimum=0)
    if seed > MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2**64 - 1], got {seed} (too large for torch's generator)")
    return seed


def _cpu_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def derived_seed(seed: int, stream: int) -> int:
    """An independent seed for a named random stream, derived from the network seed."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0] >> 1)


class AbstractEmbedding:
    """Specification of a fixed (untrained) embedding Φ."""

    def dim(self, d: int) -> int:  # pragma: no cover - abstract
        """D, the embedding dimension for inputs of dimension d."""
        raise NotImplementedError

    def bind(self, d: int, *, activation: Activation, seed: int) -> BoundEmbedding:  # pragma: no cover
        """Draw the random parameters (if any) and return the feature map."""
        raise NotImplementedError

    def spec(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class BoundEmbedding:
    """A materialised feature map: ``features(X)`` with X of shape (n, d) returns Φ of shape (n, D).

    Random parameters are stored on the CPU in float64 and moved/cast on use, so the same draw serves
    every device and dtype.
    """

    spec: AbstractEmbedding
    d: int
    D: int
    fn: _Callable[[torch.Tensor, tuple[torch.Tensor, ...]], torch.Tensor]
    params: tuple[torch.Tensor, ...] = ()

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        params = tuple(p.to(dtype=X.dtype, device=X.device) for p in self.params)
        Phi = self.fn(X, params)
        if not isinstance(Phi, torch.Tensor) or Phi.shape != (X.shape[0], self.D):
            got = tuple(Phi.shape) if isinstance(Phi, torch.Tensor) else describe(Phi)
            raise ValueError(f"embedding {self.spec!r} returned {got}, expected shape ({X.shape[0]}, {self.D})")
        if Phi.dtype != X.dtype or Phi.requires_grad:
            what = f"dtype {Phi.dtype}" if Phi.dtype != X.dtype else "a tensor that requires grad"
            raise TypeError(f"embedding {self.spec!r} returned {what} for {X.dtype} inputs; it must return features "
                            "of its input's dtype, without autograd history (e.g. compute under torch.no_grad())")
        if self.D < 1:
            raise ValueError(f"embedding {self.spec!r} returned no features (D = 0)")
        if not bool(torch.isfinite(Phi).all()):
            what = "NaN" if bool(torch.isnan(Phi).any()) else "±inf"
            raise ValueError(f"embedding {self.spec!r} returned features with {what} entries for finite inputs: the "
                             f"embedding is undefined there or overflows {Phi.dtype}; check it and the scale of X")
        return Phi


@dataclass(frozen=True)
class Identity(AbstractEmbedding):
    """Φ(x) = x: the shallow mean-field net (1), D = d."""

    def dim(self, d: int) -> int:
        return d

    def bind(self, d, *, activation, seed):
        return BoundEmbedding(self, d, d, lambda X, p: X)

    def spec(self) -> dict:
        return {"kind": "identity"}


def _quadratic(X: torch.Tensor, params) -> torch.Tensor:
    n, d = X.shape
    return (X[:, :, None] * X[:, None, :]).reshape(n, d * d)


@dataclass(frozen=True)
class Quadratic(AbstractEmbedding):
    """Φ(x) = vec(x xᵀ) ∈ ℝ^{d²}, all ordered pairs (EQUATIONS.md §1.4); G is the Hadamard square of x·x'/d."""

    def dim(self, d: int) -> int:
        return d * d

    def bind(self, d, *, activation, seed):
        return BoundEmbedding(self, d, d * d, _quadratic)

    def spec(self) -> dict:
        return {"kind": "quadratic"}


@dataclass(frozen=True)
class RandomFeatures(AbstractEmbedding):
    r"""φ_j(x) = σ(z_jᵀx/√d), z_j ~ N(0, I_d) i.i.d., j ∈ [D] — the fixed first layer of the P-3L net (5).

    Args:
        D: number of random features.
        activation: σ of the fixed layer; ``None`` uses the network's activation (the paper uses the same σ
            in both hidden layers).
        seed: seed of the z_j; ``None`` derives one from the network seed (independent of c and W).
    """

    D: int
    activation: str | Activation | None = None
    seed: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "D", check_positive_int(self.D, "RandomFeatures D"))
        if self.seed is not None:
            object.__setattr__(self, "seed", check_seed(self.seed, "RandomFeatures seed"))
        if self.activation is not None:
            get_activation(self.activation)  # a bad name fails here, not when a network is built with it

    def dim(self, d: int) -> int:
        return self.D

    def bind(self, d, *, activation, seed):
        act = activation if self.activation is None else get_activation(self.activation)
        s = derived_seed(seed, 1) if self.seed is None else self.seed
        Z = torch.randn(self.D, d, generator=_cpu_generator(s), dtype=torch.float64)
        scale = 1.0 / math.sqrt(d)

        def fn(X, params):
            (Zt,) = params
            return act.sigma((X @ Zt.T) * scale)

        return BoundEmbedding(self, d, self.D, fn, (Z,))

    def spec(self) -> dict:
        act = None if self.activation is None else get_activation(self.activation).spec()
        return {"kind": "random_features", "D": self.D, "activation": act, "seed": self.seed}


@dataclass(frozen=True)
class DeepRandomFeatures(AbstractEmbedding):
    r"""The fixed layers of the partially-trained L-layer net (Appendix H, EQUATIONS.md §1.5).

    h⁽¹⁾_j = z_jᵀx/√d,  h⁽ˡ⁺¹⁾_j = (1/√D) Σ_k W⁽ˡ⁾_jk σ(h⁽ˡ⁾_k) for l = 1..L−3,  φ_j = σ(h⁽ᴸ⁻²⁾_j),
    with z_j ~ N(0, I_d) and W⁽ˡ⁾ ~ N(0, 1) i.i.d.

    Args:
        D: width of every fixed layer.
        depth: L, the depth of the whole network (L ≥ 3); ``depth=3`` is the P-3L net and draws the same
            z as :class:`RandomFeatures` with the same seed.
        activation: σ of the fixed layers (``None``: the network's).
        seed: seed of the fixed layers (``None``: derived from the network seed).
    """

    D: int
    depth: int = 4
    activation: str | Activation | None = None
    seed: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "D", check_positive_int(self.D, "DeepRandomFeatures D"))
        object.__setattr__(self, "depth", check_positive_int(self.depth, "DeepRandomFeatures depth", minimum=3))
        if self.depth > 10_000:  # (a D×D draw per layer: 10**30 layers was a hang)
            raise ValueError(f"DeepRandomFeatures depth must be ≤ 10000, got {self.depth}")
        if self.seed is not None:
            object.__setattr__(self, "seed", check_seed(self.seed, "DeepRandomFeatures seed"))

    def dim(self, d: int) -> int:
        return self.D

    def bind(self, d, *, activation, seed):
        act = activation if self.activation is None else get_activation(self.activation)
        s = derived_seed(seed, 1) if self.seed is None else self.seed
        g = _cpu_generator(s)
        Z = torch.randn(self.D, d, generator=g, dtype=torch.float64)
        Ws = [torch.randn(self.D, self.D, generator=g, dtype=torch.float64) for _ in range(self.depth - 3)]
        sd, sD = 1.0 / math.sqrt(d), 1.0 / math.sqrt(self.D)

        def fn(X, params):
            Zt, *layers = params
            h = (X @ Zt.T) * sd
            for Wl in layers:
                h = (act.sigma(h) @ Wl.T) * sD
            return act.sigma(h)

        return BoundEmbedding(self, d, self.D, fn, (Z, *Ws))

    def spec(self) -> dict:
        act = None if self.activation is None else get_activation(self.activation).spec()
        return {"kind": "deep_random_features", "D": self.D, "depth": self.depth, "activation": act,
                "seed": self.seed}


@dataclass(frozen=True)
class Callable(AbstractEmbedding):
    """A user feature map ``fn(X) -> Φ`` with X (n, d) and Φ (n, D) torch tensors.

    Args:
        fn: the map; it must be deterministic (it is applied to training and test inputs separately).
        D: the output dimension (``None``: found by applying ``fn`` to one zero input).
    """

    fn: _Callable[[torch.Tensor], torch.Tensor]
    D: int | None = None

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"embedding must be callable, got {describe(self.fn)}")
        if self.D is not None:
            object.__setattr__(self, "D", check_positive_int(self.D, "Callable embedding D"))

    def dim(self, d: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> int:
        """D: given, or the width of ``fn`` applied to one zero input of the network's dtype and device (a float32
        map — e.g. a torch module in its default dtype — failed on a float64 probe with torch's dtype error)."""
        if self.D is not None:
            return int(self.D)
        try:
            out = self.fn(torch.zeros(1, d, dtype=dtype, device=device))
        except Exception as exc:
            name = getattr(self.fn, "__qualname__", None) or f"({type(self.fn).__name__} object)"
            raise ValueError(f"the callable embedding {name} failed on a "
                             f"probe input of shape (1, {d}), dtype {dtype}, device {device}, which finds its output "
                             f"dimension D: {type(exc).__name__}: {exc}; it receives the network's dtype and device "
                             "(give Callable(fn, D=...) to skip the probe)") from exc
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
            raise ValueError(
                f"callable embedding must map an (n, d) tensor to an (n, D) tensor; for input (1, {d}) "
                f"it returned {describe(out)}"
            )
        return int(out.shape[1])

    def bind(self, d, *, activation, seed, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        D = self.dim(d, dtype=dtype, device=device)
        return BoundEmbedding(self, d, D, lambda X, p: self.fn(X))

    def spec(self) -> dict:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        mod = getattr(self.fn, "__module__", "?")
        return {"kind": "callable", "fn": f"{mod}:{name}", "D": self.D}


def get_embedding(spec) -> AbstractEmbedding:
    """Resolve ``"identity"``, ``"quadratic"``, an embedding instance, a spec dict or a callable."""
    if isinstance(spec, AbstractEmbedding):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key == "identity":
            return Identity()
        if key == "quadratic":
            return Quadratic()
        raise ValueError(
            f"unknown embedding {spec!r}; expected 'identity', 'quadratic', gf.RandomFeatures(D=...), "
            f"gf.DeepRandomFeatures(D=..., depth=...) or a callable X -> Phi(X)"
        )
    if isinstance(spec, dict):
        given = spec
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind is None and "name" in spec:  # the key activation tables use
            kind = spec.pop("name")
        if kind in ("identity", "quadratic"):
            if spec:  # (a dropped key ran silently: {"kind": "quadratic", "D": 512} gave D = d²)
                D = "d" if kind == "identity" else "d²"
                raise ValueError(f"embedding {kind!r} takes no parameters (its dimension is D = {D}), got "
                                 f"{sorted(map(str, spec))} in {given!r}; accepted keys: ['kind']; for a chosen D use "
                                 "{'kind': 'random_features', 'D': ...}")
            return get_embedding(kind)
        if kind in ("random_features", "deep_random_features"):
            cls = RandomFeatures if kind == "random_features" else DeepRandomFeatures
            accepted = list(inspect.signature(cls).parameters)
            unknown = sorted(str(k) for k in spec if k not in accepted)
            if unknown:  # (Python's "__init__() got an unexpected keyword argument" named no accepted key)
                raise ValueError(f"embedding {kind!r} does not take {unknown} (in {given!r}); accepted keys: "
                                 f"{['kind', *accepted]}")
            return cls(**spec)
        if kind == "callable":
            raise ValueError(f"a callable embedding cannot be rebuilt from its spec {given!r}; pass the callable itself")
        raise ValueError(
            f"an embedding spec needs kind = 'identity', 'quadratic', 'random_features' or 'deep_random_features' "
            f"with its keywords (e.g. {{'kind': 'random_features', 'D': 64}}), got {given!r}"
        )
    if callable(spec):
        return Callable(spec)
    raise TypeError(
        "embedding must be 'identity', 'quadratic', a gf.RandomFeatures / gf.DeepRandomFeatures instance or "
        f"a callable, got {describe(spec)}"
    )


__all__ = [
    "AbstractEmbedding",
    "BoundEmbedding",
    "Callable",
    "DeepRandomFeatures",
    "Identity",
    "Quadratic",
    "RandomFeatures",
    "get_embedding",
]
