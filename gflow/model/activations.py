r"""Activation functions σ with the constants the theory needs (EQUATIONS.md §6, Assumption 2).

Each :class:`Activation` carries σ, σ′ (with σ′ = 0 at a kink, the paper's convention, §2.2), its Lipschitz
constant L_σ, a default active interval I = (I_l, I_r) and K_σ′ = inf_{u∈I} |σ′(u)|.  The bounds code reads
these constants from here and never hard-codes them.

Users add their own activation by constructing :class:`Activation` directly; there is no global registry.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._platform import cpuinfo
from .._validate import check_flag, describe, is_real
from . import _native

TensorFn = Callable[[torch.Tensor], torch.Tensor]

_SQRT_2 = math.sqrt(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    r"""An activation σ with its derivative and its Assumption-2 constants.

    Args:
        name: a label used in files and plots.
        sigma: σ, elementwise on tensors.
        dsigma: σ′, elementwise; must return 0 where σ is not differentiable (paper §2.2).
        lipschitz: L_σ = sup |σ′|.
        interval: the default active interval I = (I_l, I_r) on which |σ′| ≥ K_σ′ > 0.  May be infinite
            (linear, leaky ReLU), in which case the Lemma-1 machinery needs a bounded I (EQUATIONS.md §6).
        K: K_σ′ = inf over I of |σ′|.  ``None`` computes it numerically on a fine grid over I.
        sigma_and_dsigma: optional fused (σ(u), σ′(u)); used on hot paths when given.
        sigma_and_dsigma_into: optional in-place fused form ``(u, s, ds) -> None`` writing σ(u) into ``s`` and
            σ′(u) into ``ds`` (preallocated, same shape as u) without temporaries; used by the vector fields.
        sigma_into: optional in-place σ, ``(u, s) -> None``.
        dsigma_from_sigma_: optional ``s -> None`` overwriting s = σ(u) with σ′(u), where σ′ is a function of σ
            (tanh: 1 − σ², sigmoid: σ − σ²).  With ``sigma_into`` it lets the vector fields keep one (m, n)
            buffer instead of two: σ, the outputs f = α σᵀc, then σ′ in place (:meth:`sigma_then_dsigma_into`).
        params: parameters (e.g. the leaky-ReLU slope), recorded in result files.
        smooth: False for activations with a kink (ReLU, leaky ReLU): their gradient flow is non-smooth, and the
            solvers treat it so (``auto``'s pick, the stall checks).  None (the default): found from σ′ — False where
            it jumps at u = 0, ±½, ±1, ±2 or ±3 (where kinks sit), else True; say ``smooth=False`` for a kink
            elsewhere.  ``smooth=True`` with such a jump is refused.

    Example:
        >>> import torch, gflow as gf
        >>> cube = gf.Activation("cubic", lambda u: u + u**3 / 3, lambda u: 1 + u**2,
        ...                      lipschitz=float("inf"), interval=(-1.0, 1.0))
        >>> round(cube.K, 6)
        1.0
    """

    name: str
    sigma: TensorFn
    dsigma: TensorFn
    lipschitz: float
    interval: tuple[float, float]
    K: float | None = None
    sigma_and_dsigma: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = field(
        default=None, repr=False, compare=False
    )
    sigma_and_dsigma_into: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = field(
        default=None, repr=False, compare=False
    )
    sigma_into: Callable[[torch.Tensor, torch.Tensor], None] | None = field(default=None, repr=False, compare=False)
    dsigma_from_sigma_: Callable[[torch.Tensor], None] | None = field(default=None, repr=False, compare=False)
    params: tuple[tuple[str, float], ...] = ()
    smooth: bool | None = None
    #: set by gflow's own constructors (:data:`ACTIVATIONS`): only those are rebuilt from a file by name
    builtin: bool = field(default=False, repr=False, compare=False, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Activation name must be a non-empty string, got {describe(self.name)}")
        for attr in ("sigma", "dsigma"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Activation {attr} must be callable, got {describe(getattr(self, attr))}")
        try:
            lo, hi = (float(v) for v in self.interval)
        except Exception as exc:
            raise TypeError(f"Activation interval must be a pair (I_l, I_r), got {describe(self.interval)}") from exc
        if not lo < hi:
            raise ValueError(f"Activation interval must have I_l < I_r, got ({lo}, {hi})")
        object.__setattr__(self, "interval", (lo, hi))
        if not is_real(self.lipschitz):
            raise TypeError(f"Activation lipschitz must be a real number > 0, got {describe(self.lipschitz)}")
        if not (self.lipschitz > 0):
            raise ValueError(f"Activation lipschitz must be > 0, got {self.lipschitz}")
        if self.smooth is not None:
            check_flag(self.smooth, "Activation smooth")
        object.__setattr__(self, "params", _check_params(self.params))
        self._probe()
        # (an input audit: a custom ReLU left smooth by default stalled at its kink for minutes under dop853, whose
        # step collapse is stopped at once for a kinked σ only; auto ran dop853 on it instead of filippov)
        kink = self._kink()
        if self.smooth is None:
            object.__setattr__(self, "smooth", kink is None)
        elif self.smooth and kink is not None:
            raise ValueError(f"Activation {self.name!r}: smooth=True, but dsigma jumps at u = {kink[0]:g} (from "
                             f"{kink[1]:.6g} to {kink[2]:.6g}): σ has a kink there; say smooth=False (or leave it out)")
        object.__setattr__(self, "smooth", bool(self.smooth))
        given = self.K is not None  # (a K of the user's is checked against σ′ below)
        if self.K is None:
            object.__setattr__(self, "K", _numeric_inf_abs(self.dsigma, lo, hi))
        if not is_real(self.K):
            raise TypeError(f"Activation K must be a real number >= 0 (K_σ′ = inf over I of |σ′|), got "
                            f"{describe(self.K)}")
        if not (self.K >= 0):
            raise ValueError(f"Activation K must be >= 0, got {self.K}")
        if self.K > self.lipschitz * (1 + 1e-9):
            raise ValueError(f"Activation K = {self.K:g} (inf over I of |σ′|) cannot exceed lipschitz = "
                             f"{self.lipschitz:g} (sup of |σ′|)")
        u = torch.linspace(max(lo, -50.0), min(hi, 50.0), 203, dtype=torch.float64)[1:-1]
        low = float(self.dsigma(u).abs().min()) if given else 0.0
        if given and self.K > low * (1 + 1e-6) + 1e-12:
            raise ValueError(f"Activation K = {self.K:g} must be ≤ inf over I = ({lo:g}, {hi:g}) of |σ′|, but |σ′| "
                             f"comes down to {low:.6g} there")

    def _kink(self) -> tuple[float, float, float] | None:
        """(u, σ′(u⁻), σ′(u⁺)) at the first of u = 0, ±½, ±1, ±2, ±3 where σ′ jumps, else None.  A jump is the
        same across 2e-9 and across 2e-6, where a smooth σ′ changes 1000× more (and above its rounding): scale-free,
        so 1e-4·ReLU and exp(3u) + ReLU are found as ReLU is (a review: a threshold relative to max |σ′| missed
        them), and a σ′ through 0 with finite slope (σ = u²/2) is not."""
        k = torch.tensor([[0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0]], dtype=torch.float64)  # (shaped (m, n))
        with torch.no_grad():
            left, right = self.dsigma(k - 1e-9), self.dsigma(k + 1e-9)
            wide = self.dsigma(k + 1e-6) - self.dsigma(k - 1e-6)
        near = (right - left).abs()
        jump = torch.nonzero(((near > 0.5 * wide.abs()) & (near > 1e-12 * (left.abs() + right.abs()))).flatten())
        if not len(jump):
            return None
        i = int(jump[0])
        return float(k.flatten()[i]), float(left.flatten()[i]), float(right.flatten()[i])

    def _probe(self) -> None:
        """Check a user's σ, σ′, fused hooks and constants on 63 points of [−3, 3] (off the integers and 0, where kinks
        sit), shaped (7, 9) — the fields pass (m, n) arrays: a σ that flattens or transposes fails: tensors of the
        input's shape and dtype, the input left unchanged, σ′ the derivative of σ (a central difference, h = 1e-6)
        at all but a tenth of them (kinks), each hook equal to σ/σ′, and L_σ ≥ max |σ′|.  A scalar or wrongly
        signed σ′, or a hook that did nothing, otherwise ran silently to a different flow (bad-input fuzzes)."""
        u = (torch.linspace(-3.0, 3.0, 63, dtype=torch.float64) + 0.0123).reshape(7, 9)

        def call(attr: str, fn, *args: torch.Tensor):
            before = [a.clone() for a in args[:1]]
            try:
                v = fn(*args)
            except Exception as exc:
                raise TypeError(f"Activation {attr} failed on a float64 tensor of shape {tuple(args[0].shape)} "
                                f"(values in [{float(args[0].min()):.3g}, {float(args[0].max()):.3g}]): "
                                f"{type(exc).__name__}: {exc}") from exc
            if not torch.equal(args[0], before[0]):
                raise ValueError(f"Activation {attr} changed its input u in place; it must leave u as it is")
            return v

        def elementwise(attr: str, v) -> torch.Tensor:
            if not isinstance(v, torch.Tensor) or v.shape != u.shape or v.dtype != u.dtype:
                got = f"a {v.dtype} tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else describe(v)
                raise TypeError(f"Activation {attr} must map a tensor elementwise (same shape and dtype), got {got} "
                                f"for a float64 tensor of shape {tuple(u.shape)}")
            return v

        for attr in ("sigma_and_dsigma", "sigma_and_dsigma_into", "sigma_into", "dsigma_from_sigma_"):
            hook = getattr(self, attr)
            if hook is not None and not callable(hook):
                raise TypeError(f"Activation {attr} must be callable or None, got {describe(hook)}")
        s = elementwise("sigma", call("sigma", self.sigma, u))
        ds = elementwise("dsigma", call("dsigma", self.dsigma, u))
        h = 1e-6
        fd = (elementwise("sigma", call("sigma", self.sigma, u + h))
              - elementwise("sigma", call("sigma", self.sigma, u - h))) / (2 * h)
        bad = ~((fd - ds).abs() <= 1e-5 * (1.0 + fd.abs()))
        # beyond [−3, 3] too, where features of unnormalised data sit (a σ′ of the wrong sign for |u| > 3.2 passed,
        # and its flow stalled with the blame on the step size): 32 points out to |u| = 20, where σ is finite
        g = torch.logspace(math.log10(3.3), math.log10(20.0), 16, dtype=torch.float64) + 0.0123
        w = torch.cat([-g.flip(0), g]).reshape(4, 8)
        with torch.no_grad():
            ws = call("sigma", self.sigma, w)
            wfd = (call("sigma", self.sigma, w + h) - call("sigma", self.sigma, w - h)) / (2 * h)
            wds = call("dsigma", self.dsigma, w)
        wbad = torch.isfinite(ws) & torch.isfinite(wfd) & ~((wfd - wds).abs() <= 1e-5 * (1.0 + wfd.abs()))
        for pts, b, d_, f_, where in ((u, bad, ds, fd, "[−3, 3]"), (w, wbad, wds, wfd, "3.3 ≤ |u| ≤ 20")):
            if int(b.sum()) > pts.numel() // 10:
                k = tuple(int(i) for i in torch.nonzero(b)[0])
                raise ValueError(f"Activation {self.name!r}: dsigma is not the derivative of sigma at {int(b.sum())} "
                                 f"of {pts.numel()} points of {where} (e.g. u = {float(pts[k]):.4g}: dsigma = "
                                 f"{float(d_[k]):.6g}, finite difference of sigma = {float(f_[k]):.6g}; if sigma is "
                                 "computed in lower precision, the difference cannot resolve it: compute it in the "
                                 "input's dtype)")

        def same(attr: str, got, want: torch.Tensor) -> None:
            if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                    and torch.allclose(got, want, rtol=1e-10, atol=1e-12)):
                raise ValueError(f"Activation {self.name!r}: {attr} does not give what sigma and dsigma give on the "
                                 f"same input (got {describe(got)})")

        if self.sigma_and_dsigma is not None:
            pair = call("sigma_and_dsigma", self.sigma_and_dsigma, u)
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError(f"Activation {self.name!r}: sigma_and_dsigma must return the pair (sigma(u), "
                                 f"dsigma(u)), got {describe(pair)}")
            same("sigma_and_dsigma's first tensor", pair[0], s)
            same("sigma_and_dsigma's second tensor", pair[1], ds)
        if self.sigma_and_dsigma_into is not None:
            bs, bd = torch.full_like(u, math.nan), torch.full_like(u, math.nan)
            call("sigma_and_dsigma_into", self.sigma_and_dsigma_into, u, bs, bd)
            same("sigma_and_dsigma_into (its s buffer)", bs, s)
            same("sigma_and_dsigma_into (its ds buffer)", bd, ds)
        if self.sigma_into is not None:
            bs = torch.full_like(u, math.nan)
            call("sigma_into", self.sigma_into, u, bs)
            same("sigma_into", bs, s)
        if self.dsigma_from_sigma_ is not None:
            b = s.clone()
            try:
                self.dsigma_from_sigma_(b)
            except Exception as exc:
                raise TypeError(f"Activation dsigma_from_sigma_ failed: {type(exc).__name__}: {exc}") from exc
            same("dsigma_from_sigma_ (σ′ written over σ)", b, ds)
        top = float(ds.abs().max())
        if math.isfinite(self.lipschitz) and top > self.lipschitz * (1 + 1e-6) + 1e-12:
            k = tuple(int(i) for i in torch.nonzero(ds.abs() == top)[0])
            raise ValueError(f"Activation {self.name!r}: lipschitz = {self.lipschitz:g} must be ≥ sup |σ′|, but "
                             f"|dsigma({float(u[k]):.4g})| = {top:.6g}")

    def check_dtype(self, dtype: torch.dtype) -> None:
        """σ and σ′ keep ``dtype`` (a network's): one computed in float64 broke float32 networks deep in a solve."""
        u = torch.full((2, 3), 0.5, dtype=dtype)
        for attr in ("sigma", "dsigma"):
            v = getattr(self, attr)(u)
            if not isinstance(v, torch.Tensor) or v.dtype != dtype:
                got = v.dtype if isinstance(v, torch.Tensor) else describe(v)
                raise TypeError(f"activation {self.name!r}: {attr} must return the dtype of its input ({dtype}) for "
                                f"this network, got {got}")

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.sigma(u)

    def both(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ(u), σ′(u)), fused where the activation provides it."""
        if self.sigma_and_dsigma is not None:
            return self.sigma_and_dsigma(u)
        return self.sigma(u), self.dsigma(u)

    def both_into(self, u: torch.Tensor, s: torch.Tensor, ds: torch.Tensor) -> None:
        """Write σ(u) into ``s`` and σ′(u) into ``ds`` (preallocated, u's shape), fused and in place when the
        activation provides ``sigma_and_dsigma_into``; otherwise through :meth:`both` and a copy."""
        if self.sigma_and_dsigma_into is not None:
            self.sigma_and_dsigma_into(u, s, ds)
            return
        a, b = self.both(u)
        s.copy_(a)
        ds.copy_(b)

    @property
    def in_place_dsigma(self) -> bool:
        """True when σ′ can overwrite σ in place (:meth:`sigma_then_dsigma_into` then needs no ``ds`` buffer)."""
        return self.sigma_into is not None and self.dsigma_from_sigma_ is not None

    def sigma_then_dsigma_into(self, u: torch.Tensor, s: torch.Tensor, ds: torch.Tensor | None,
                               use_sigma: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """σ(u) into ``s``, ``use_sigma(s)``, then σ′(u); returns the tensor that holds σ′ (afterwards σ is gone
        where it could be overwritten).

        Where σ′ is a function of σ (:attr:`in_place_dsigma`) σ′ overwrites σ in ``s`` after ``use_sigma`` has
        read it, and ``ds`` is not touched (may be None): one (m, n) pass and buffer fewer than
        :meth:`both_into`, which the vector fields' hot path (σ, then r = α σᵀc − y, then σ′) is built for.
        Otherwise both are formed by :meth:`both_into` (``ds`` required) and σ′ is ``ds``.
        """
        if self.in_place_dsigma:
            self.sigma_into(u, s)
            use_sigma(s)
            self.dsigma_from_sigma_(s)
            return s
        if ds is None:
            raise ValueError(f"activation {self.name!r} cannot form σ′ from σ in place: ds must be a buffer, got None")
        self.both_into(u, s, ds)
        use_sigma(s)
        return ds

    # A built-in activation is identified by its name and parameters: each construction makes new σ′ functions
    # (tanh's lambda, leaky ReLU's closures), so field-wise equality said get_activation("tanh") differed from
    # itself, and pickle could not store them (a Network did not pickle); a file rebuilds them by name, and so do
    # pickle and copy.  A user's activation keeps the field-wise equality of its functions and constants.
    def _identity(self) -> tuple:
        if self.builtin:
            return ("builtin", self.name, self.params)
        return ("custom", self.name, self.sigma, self.dsigma, self.lipschitz, self.interval, self.K, self.params,
                self.smooth)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activation):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __reduce_ex__(self, protocol):
        if self.builtin:
            return (get_activation, (self.spec(),))
        return super().__reduce_ex__(protocol)

    def spec(self) -> dict:
        """A JSON-able description; :func:`get_activation` rebuilds built-ins from it, and refuses one marked
        ``custom`` (a user's activation, whatever its name: it cannot be rebuilt from a file)."""
        return {"name": self.name, **dict(self.params), **({} if self.builtin else {"custom": True})}


_SPEC_KEYS = ("name", "custom")  # spec()'s own keys: a parameter of that name would overwrite them


def _check_params(params) -> tuple[tuple[str, float], ...]:
    """``params`` as a tuple of (name, number) pairs — what :meth:`Activation.spec` writes into result files, and
    what keeps the Activation hashable.  A string, a dict or a pair with a non-str name failed only after the solve
    (when its result was formed, or saved)."""
    expected = "a tuple of (name, number) pairs, e.g. (('slope', 0.1),)"
    if isinstance(params, (str, bytes, dict)) or not isinstance(params, (tuple, list)):
        raise TypeError(f"Activation params must be {expected}, got {describe(params)}")
    out = []
    for item in params:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) and item[0]
                and item[0] not in _SPEC_KEYS and is_real(item[1])):
            raise TypeError(f"Activation params must be {expected} (names other than {list(_SPEC_KEYS)}), got the "
                            f"entry {describe(item)}")
        out.append((item[0], item[1]))
    return tuple(out)


def _numeric_inf_abs(dsigma: TensorFn, lo: float, hi: float) -> float:
    """inf of |σ′| over (lo, hi) on a fine grid; memoized on (σ′, lo, hi) where σ′ is hashable (σ′ is a pure
    function, and the 200 000-point grid cost ≈ 1.4 ms, paid by every solve's summary, Recorder.theory)."""
    try:
        hash(dsigma)
    except TypeError:  # e.g. a callable object that defines __eq__ only
        return _grid_inf_abs(dsigma, lo, hi)
    return _grid_inf_abs_cached(dsigma, lo, hi)


def _grid_inf_abs(dsigma: TensorFn, lo: float, hi: float) -> float:
    # A grid on [max(lo, −50), min(hi, 50)] without its ends (even count: never exactly 0, the built-in kinks' σ′),
    # plus each finite end nudged inwards by 1e-9 of the width — so that a monotone |σ′| gets its infimum at the end
    # to ~1e-9 (the grid alone stopped a step short: tanh on (−1, 1) gave 0.4199807 for sech²1 = 0.4199743, 1.5e-5
    # high, and K_σ′² scales the bounds' rates) — and far points on an infinite side, where σ′ may vanish (softplus
    # on (−∞, 0): sigmoid(−50) = 1.9e-22 at the grid's end, for an infimum of 0).
    a, b = max(lo, -50.0), min(hi, 50.0)
    w = (hi - lo) if math.isfinite(hi - lo) else (b - a)
    ends = [lo + 1e-9 * w] if math.isfinite(lo) else [-1e3, -1e6]
    ends += [hi - 1e-9 * w] if math.isfinite(hi) else [1e3, 1e6]
    u = torch.cat([torch.linspace(a, b, 200_000, dtype=torch.float64)[1:-1],
                   torch.tensor(ends, dtype=torch.float64)])
    return float(dsigma(u).abs().min())


_grid_inf_abs_cached = functools.lru_cache(maxsize=128)(_grid_inf_abs)


# ---------------------------------------------------------------------------------------------------------
# Built-ins (constants from EQUATIONS.md §6, table).


def _tanh_both(u):
    s = torch.tanh(u)
    return s, 1.0 - s * s


def _route(u) -> str:
    """The tanh route for u: float64_tanh_route() for float64 CPU tensors, else "tanh"."""
    return float64_tanh_route() if u.dtype == torch.float64 and u.device.type == "cpu" else "tanh"


def _sigmoid_route(u) -> bool:
    """Whether torch's part of the route for u is the sigmoid one (where the native kernel does not apply)."""
    route = _route(u)
    return route == "sigmoid" or (route == "native" and _torch_tanh_route() == "sigmoid")


def _tanh_both_into(u, s, ds):
    if _route(u) == "native" and _native.tanh_into(u, s, ds):
        return
    (_tanh_both_into_sigmoid if _sigmoid_route(u) else _tanh_both_into_tanh)(u, s, ds)


def _tanh_sigma_into(u, s):
    if _route(u) == "native" and _native.tanh_into(u, s):
        return
    (_tanh_via_sigmoid_into if _sigmoid_route(u) else torch.tanh)(u, out=s)


def fusable(act: Activation, H: torch.Tensor) -> bool:
    """Whether :func:`fused_P_into` may run for ``act`` on H: the built-in tanh on the native route (float64, CPU)."""
    return act.builtin and act.name == "tanh" and _route(H) == "native"


def sigma_absdiff_into(act: Activation, u: torch.Tensor, u0: torch.Tensor, s: torch.Tensor, d: torch.Tensor) -> bool:
    """σ(u) into ``s`` and |u − u0| into ``d`` (which may be ``u``) in one pass, the values of ``act.sigma_into``
    and ``torch.sub(u, u0).abs_()`` — where ``act`` is the built-in tanh on the native route and the tensors suit
    the kernel (:func:`gflow.model._native.tanh_absdiff_into`); False (nothing written) otherwise."""
    return fusable(act, u) and _native.tanh_absdiff_into(u, u0, s, d)


def fused_P_into(act: Activation, H: torch.Tensor, P: torch.Tensor, r: torch.Tensor, c: torch.Tensor,
                 y: torch.Tensor, alpha: float, ds: torch.Tensor | None = None, times_r: bool = True) -> bool:
    """P = c σ′(H) r (or c σ′(H) without ``times_r``) and r = α σ(H)ᵀc − y in one fused pass, σ′ into ``ds`` when
    given — where ``act`` is the built-in tanh on the native route and the tensors suit the kernel
    (:func:`gflow.model._native.tanh_P_into`); False (nothing written) otherwise, and the caller takes torch's
    passes."""
    return fusable(act, H) and _native.tanh_P_into(H, P, r, c, y, alpha, ds, times_r)


def _tanh_dsigma_from_sigma_(s):
    torch.addcmul(_scalar(s, 1.0), s, s, value=-1.0, out=s)  # tanh′ = 1 − tanh², in place


def _tanh_both_into_tanh(u, s, ds):
    # tanh′ = 1 − tanh²: one transcendental pass, then one fused multiply-add pass (no temporaries)
    torch.tanh(u, out=s)
    torch.addcmul(_scalar(u, 1.0), s, s, value=-1.0, out=ds)


def _tanh_via_sigmoid_into(u, out):
    # tanh(u) = 2σ(2u) − 1 in three passes, no temporaries: s ← 2u, s ← σ(s), s ← −1 + 2s (``add`` with alpha: one
    # rounding, as 2s is exact; ``addcmul(−1, s, 2)`` computed the same bits 5.6× slower — 39 against 7 µs at
    # (1024, 64) — because its 0-d multiplicand takes torch's broadcasting path).  Absolute error ≤ 3.4e-16
    # (checked against torch.tanh on [−40, 40] in the tests).
    torch.mul(u, 2.0, out=out)
    torch.sigmoid(out, out=out)
    torch.add(_scalar(u, -1.0), out, alpha=2.0, out=out)


def _tanh_both_into_sigmoid(u, s, ds):
    # tanh through the sigmoid, then tanh′ = 1 − tanh²: four passes
    _tanh_via_sigmoid_into(u, s)
    torch.addcmul(_scalar(u, 1.0), s, s, value=-1.0, out=ds)


#: float64_tanh_route() picks the sigmoid route only where torch.tanh is this much slower (measured: 5–7× on a
#: 2-core AMD EPYC, where float64 torch.tanh took 15 ns per element against 1.2 for sigmoid; 0.6–0.75× on a 2-core
#: Intel Xeon, where it is vectorised): a wide margin, so that the choice does not flip with machine load.
_SIGMOID_ROUTE_MIN_RATIO = 1.5
#: set to "tanh" or "sigmoid", it fixes float64_tanh_route() in processes started with it (gf.sweep's local workers
#: — process pool, local Dask cluster, submitit's local jobs — get the parent's choice so: timed in each, it could
#: flip, and a sweep's runs then differed from the serial ones by 4e-16)
TANH_ROUTE_ENV = "GFLOW_FLOAT64_TANH_ROUTE"


#: the values of :func:`float64_tanh_route`
TANH_ROUTES = ("native", "tanh", "sigmoid")
#: what :data:`TANH_ROUTE_ENV` may hold: a route, or "native+" torch's route (:func:`worker_tanh_route`)
_ROUTE_SETTINGS = (*TANH_ROUTES, "native+tanh", "native+sigmoid")


def set_float64_tanh_route(route: str) -> None:
    """Fix :func:`float64_tanh_route` to ``route`` in this process and the ones it starts (through
    :data:`TANH_ROUTE_ENV`): how gf.sweep's local workers take their parent's choice (:func:`worker_tanh_route`:
    ``"native+sigmoid"`` fixes torch's route too, for the tensors the kernel does not suit)."""
    if route not in _ROUTE_SETTINGS:
        raise ValueError(f"the float64 tanh route must be one of {TANH_ROUTES}, got {route!r}")
    os.environ[TANH_ROUTE_ENV] = route
    float64_tanh_route.cache_clear()
    _torch_tanh_route.cache_clear()


def _cpu_vendor() -> str | None:
    """The x86 CPU vendor string (``"GenuineIntel"``, ``"AuthenticAMD"``, ...) from /proc/cpuinfo, or None where
    it cannot be read (not Linux, not x86)."""
    return cpuinfo().get("vendor_id") or None


#: vendors whose CPUs get MKL's slow generic code path: torch's float64 tanh (and exp, erf) on x86 are MKL's vector
#: math, which does not dispatch its vectorised kernels there, whatever the instruction set — measured 2.8× the
#: sigmoid route's time on an AVX-512 AMD EPYC (Zen 5: 3.2 against 1.1 ms at (2048, 400)), 5–7× on an AVX2 one;
#: torch's sigmoid is its own vectorised kernel everywhere
_MKL_SLOW_VENDORS = ("AuthenticAMD", "HygonGenuine")


@functools.lru_cache(maxsize=1)
def float64_tanh_route() -> str:
    """How σ/σ′ of tanh are computed in float64 on the CPU in this process: ``"native"`` (gflow's fused kernel,
    :mod:`gflow.model._native`: σ, r = α σᵀc − y, σ′ and P = c σ′ r in one pass, its tanh within a few ulp
    relatively; tensors it does not suit — not dense, or not column-major (m, n) for the fused P — take the torch
    route below), ``"tanh"`` or ``"sigmoid"`` (torch's, :func:`_torch_tanh_route`).  ``"native"`` wherever the
    kernel builds (a C compiler, once per machine); :data:`TANH_ROUTE_ENV` (one of :data:`TANH_ROUTES`) fixes
    it instead — ``"native"`` there, as a sweep's parent passes it to its workers, takes torch's route where the
    kernel cannot be built (a remote worker without a compiler).  Recorded, as the route that ran, in every
    solution's provenance (:func:`gflow.solution.versions`), with :func:`gflow.model._native.status` (why it is
    off, where it is).  The routes agree to a few 1e-16 (absolutely: see :func:`_torch_tanh_route`)."""
    fixed = os.environ.get(TANH_ROUTE_ENV)
    if fixed is not None:
        if fixed not in _ROUTE_SETTINGS:
            raise ValueError(f"environment variable {TANH_ROUTE_ENV} must be one of {TANH_ROUTES}, got {fixed!r}")
        if not fixed.startswith("native"):
            return fixed
    return "native" if _native.available() else _torch_tanh_route()


def worker_tanh_route() -> str:
    """This process's route as its sweep workers should take it (:func:`set_float64_tanh_route`): with torch's route
    spelled out after "native+", so that a worker does not time its own for the tensors the kernel does not suit
    (or where it cannot build the kernel)."""
    route = float64_tanh_route()
    return f"native+{_torch_tanh_route()}" if route == "native" else route


@functools.lru_cache(maxsize=1)
def _torch_tanh_route() -> str:
    """torch's float64 tanh route on this CPU: ``"tanh"`` (torch.tanh, then
    1 − s²: two passes) or ``"sigmoid"`` (tanh = 2σ(2u) − 1: four passes, but 3–7× faster where float64 torch.tanh
    is not vectorised).  The two routes agree to 3.4e-16, so runs on one machine agree to that whichever it picks.
    That bound is absolute: near u = 0 the sigmoid route's 2σ(2u) − 1 cancels (tanh(1e-12) is 9e-5 off relatively,
    and 0 for |u| < 1e-17), where torch.tanh is correctly rounded — :data:`TANH_ROUTE_ENV` = ``"tanh"`` where the
    features are that small.

    Decided once per process, without timing where the CPU says which is faster: ``"sigmoid"`` on AMD (and Hygon)
    CPUs under a torch built with MKL, where torch's float64 tanh is MKL's slow generic path
    (:data:`_MKL_SLOW_VENDORS`; a build without MKL, e.g. a distribution's, takes SLEEF's and is timed), ``"tanh"`` on an
    Intel CPU on which torch dispatches AVX-512 kernels (MKL's vectorised tanh: 0.6–0.75× the sigmoid route's time
    on an Intel Xeon) — a timed choice flipped in processes started together (two submitit jobs picked
    ``"sigmoid"`` on an idle machine, and their results differed from the serial runs by 4e-16).  Elsewhere by
    timing both on 32 768 points (about 1 ms).  :data:`TANH_ROUTE_ENV` set to ``"tanh"`` or ``"sigmoid"`` fixes it
    instead (under ``"native"`` it serves the tensors the kernel does not suit)."""
    fixed = os.environ.get(TANH_ROUTE_ENV, "")
    if fixed.startswith("native+"):
        fixed = fixed[len("native+"):]
    if fixed in ("tanh", "sigmoid"):
        return fixed
    vendor = _cpu_vendor()
    if vendor in _MKL_SLOW_VENDORS and torch.backends.mkl.is_available():  # (without MKL: SLEEF's tanh, timed)
        return "sigmoid"
    if vendor == "GenuineIntel" and torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return "tanh"
    u = torch.linspace(-4.0, 4.0, 1 << 15, dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    best = {"tanh": math.inf, "sigmoid": math.inf}
    for _ in range(7):  # interleaved, best of 7: robust to a transient load
        for name, fn in (("tanh", _tanh_both_into_tanh), ("sigmoid", _tanh_both_into_sigmoid)):
            t0 = time.perf_counter()
            fn(u, s, ds)
            best[name] = min(best[name], time.perf_counter() - t0)
    return "sigmoid" if best["tanh"] > _SIGMOID_ROUTE_MIN_RATIO * best["sigmoid"] else "tanh"


_CONSTS: dict = {}


def _scalar(u, value: float) -> torch.Tensor:
    """A 0-d tensor of ``value`` in u's dtype and device (cached: building one costs more than a small pass)."""
    key = (u.dtype, u.device, value)
    c = _CONSTS.get(key)
    if c is None:
        c = _CONSTS[key] = torch.tensor(value, dtype=u.dtype, device=u.device)
    return c


def _sigmoid_both_into(u, s, ds):
    torch.sigmoid(u, out=s)
    torch.addcmul(s, s, s, value=-1.0, out=ds)  # σ′ = σ − σ²


def _sigmoid_into(u, s):
    torch.sigmoid(u, out=s)


def _sigmoid_dsigma_from_sigma_(s):
    torch.addcmul(s, s, s, value=-1.0, out=s)  # σ − σ², in place


_LOG2_E = 1.0 / math.log(2.0)
_LOG2_TWO_OVER_SQRT_PI = math.log2(_TWO_OVER_SQRT_PI)


def _erf_both_into(u, s, ds):
    # erf′ = (2/√π) e^{−u²} = 2^{log₂(2/√π) − log₂e·u²}: one fused multiply-add pass, then torch's exp2 in place —
    # its own vectorised kernel, where float64 exp is MKL's, whose generic path on AMD CPUs took 1.07 against 0.29 ms
    # at (2048, 400) (AVX-512 EPYC): the derivative 1.28 → 0.44 ms; relative error ≤ 6.4e-15 for |u| < 6 (was 3.6e-15)
    torch.erf(u, out=s)
    torch.addcmul(_scalar(u, _LOG2_TWO_OVER_SQRT_PI), u, u, value=-_LOG2_E, out=ds)
    torch.exp2(ds, out=ds)


def _linear_both_into(u, s, ds):
    s.copy_(u)
    ds.fill_(1.0)


def _relu_both_into(u, s, ds):
    torch.clamp_min(u, 0.0, out=s)
    torch.gt(u, 0.0, out=ds)  # writes 1.0 / 0.0 in ds's dtype


def _relu_sigma_into(u, s):
    torch.clamp_min(u, 0.0, out=s)


def _relu_dsigma_from_sigma_(s):
    torch.gt(s, 0.0, out=s)  # σ > 0 iff u > 0 (σ′(0) = 0); NaN ↦ 0, as from u — σ itself carries the NaN on


def _leaky_relu_kernels(slope: float):
    """σ, σ′ and their in-place forms for leaky ReLU, each one or two vectorised passes — the former
    ``torch.where`` against 0-d tensors took torch's broadcasting path: σ and σ′ 1 678 → 56 µs at (1024, 64)
    (``benchmarks/bench_activations.py``, AMD EPYC Zen 4, one thread).

    σ(u) = max(u, slope·u) (0 < slope < 1: u where u ≥ 0, slope·u where u < 0; exact).  σ′ = 1, slope, 0 where
    u >, <, = 0 (the paper's σ′(0) = 0): sign(u) mapped through a leaky ReLU of slope −slope (1 ↦ 1, −1 ↦ slope,
    exactly; 0 ↦ −0.0), and since sign(σ) = sign(u), σ′ can overwrite σ in place.  NaN: σ keeps it, σ′ is 0 there
    (torch's sign(NaN) = 0, as the comparisons of the former σ′ gave)."""
    F = torch.nn.functional

    def sigma(u):
        return F.leaky_relu(u, slope)

    def dsigma_into(u, ds):  # (u may be ds itself: sign(σ) = sign(u))
        torch.sign(u, out=ds)
        F.leaky_relu_(ds, -slope)

    def dsigma_from_sigma_(s):
        dsigma_into(s, s)

    def dsigma(u):
        ds = torch.empty_like(u)
        dsigma_into(u, ds)
        return ds

    def sigma_into(u, s):
        torch.mul(u, slope, out=s)
        torch.maximum(u, s, out=s)

    def both_into(u, s, ds):
        sigma_into(u, s)
        dsigma_into(u, ds)

    return sigma, dsigma, both_into, sigma_into, dsigma_from_sigma_


def _sigmoid_both(u):
    s = torch.sigmoid(u)
    return s, s * (1.0 - s)


def _relu_d(u):
    return (u > 0).to(u.dtype)


def _relu_both(u):
    return torch.relu(u), (u > 0).to(u.dtype)


def _erf_d(u):
    return _TWO_OVER_SQRT_PI * torch.exp(-u * u)


#: torch's softplus returns u itself above its ``threshold`` (20 by default), where log(1 + e^u) − u = log1p(e^{−u})
#: is still 2.1e-9: 1e-10 relative, far above float64's rounding, and a jump in σ the exact σ′ = sigmoid does not
#: have.  Above 40 it is below half an ulp of u (e^{−40} = 4.2e-18) in float64 and float32 alike, and e^{40} does not
#: overflow even in float32.
_SOFTPLUS_LINEAR_ABOVE = 40.0


def _softplus(u):
    return torch.nn.functional.softplus(u, threshold=_SOFTPLUS_LINEAR_ABOVE)


def _softplus_both(u):
    return _softplus(u), torch.sigmoid(u)


def _gelu(u):
    return 0.5 * u * (1.0 + torch.erf(u / _SQRT_2))


_LOG2_INV_SQRT_2PI = math.log2(_INV_SQRT_2PI)


def _gelu_both_into(u, s, ds):
    # one erf for both: Φ = ½(1 + erf(u/√2)), σ = u Φ, σ′ = Φ + u φ(u) with φ(u) = e^{−u²/2}/√(2π) formed as
    # 2^{log₂(1/√(2π)) − ½log₂e·u²} (one fused multiply-add and exp2, as erf′ in _erf_both_into): 7 passes and one
    # erf against the unfused σ and σ′'s two erfs, one exp and temporaries (0.80 → 0.36 ms at (1024, 64), AMD Zen 4;
    # benchmarks/bench_activations.py)
    torch.div(u, _SQRT_2, out=s)
    torch.erf(s, out=s)
    s.add_(1.0).mul_(0.5)  # Φ(u)
    torch.addcmul(_scalar(u, _LOG2_INV_SQRT_2PI), u, u, value=-0.5 * _LOG2_E, out=ds)
    torch.exp2(ds, out=ds)  # φ(u)
    ds.mul_(u).add_(s)  # σ′ = u φ + Φ
    s.mul_(u)  # σ = u Φ


def _gelu_both(u):
    s, ds = torch.empty_like(u), torch.empty_like(u)
    _gelu_both_into(u, s, ds)
    return s, ds


def _gelu_d(u):
    return 0.5 * (1.0 + torch.erf(u / _SQRT_2)) + u * _INV_SQRT_2PI * torch.exp(-0.5 * u * u)


def _linear_d(u):
    return torch.ones_like(u)


def tanh() -> Activation:
    return Activation("tanh", torch.tanh, lambda u: 1.0 - torch.tanh(u) ** 2, 1.0, (-1.0, 1.0),
                      K=1.0 - math.tanh(1.0) ** 2, sigma_and_dsigma=_tanh_both,
                      sigma_and_dsigma_into=_tanh_both_into, sigma_into=_tanh_sigma_into,
                      dsigma_from_sigma_=_tanh_dsigma_from_sigma_)


def sigmoid() -> Activation:
    s1 = 1.0 / (1.0 + math.exp(1.0))
    return Activation("sigmoid", torch.sigmoid, lambda u: _sigmoid_both(u)[1], 0.25, (-1.0, 1.0),
                      K=s1 * (1.0 - s1), sigma_and_dsigma=_sigmoid_both,
                      sigma_and_dsigma_into=_sigmoid_both_into, sigma_into=_sigmoid_into,
                      dsigma_from_sigma_=_sigmoid_dsigma_from_sigma_)


def relu() -> Activation:
    # I = (0, 1): a bounded sub-interval of the natural (0, ∞), see EQUATIONS.md §6 "Unbounded I".
    return Activation("relu", torch.relu, _relu_d, 1.0, (0.0, 1.0), K=1.0, sigma_and_dsigma=_relu_both,
                      sigma_and_dsigma_into=_relu_both_into, sigma_into=_relu_sigma_into,
                      dsigma_from_sigma_=_relu_dsigma_from_sigma_, smooth=False)


def leaky_relu(slope: float = 0.01) -> Activation:
    if not is_real(slope):
        raise TypeError(f"leaky_relu slope must be a real number in (0, 1), got {describe(slope)}")
    slope = float(slope)
    if not 0.0 < slope < 1.0:
        raise ValueError(f"leaky_relu slope must be in (0, 1), got {slope}")
    sigma, dsigma, both_into, sigma_into, dsigma_from_sigma_ = _leaky_relu_kernels(slope)
    # Global I = ℝ with K = slope gives the PL bound (16); σ'(0) = 0 is a measure-zero convention.
    return Activation("leaky_relu", sigma, dsigma, 1.0, (-math.inf, math.inf), K=slope,
                      sigma_and_dsigma_into=both_into, sigma_into=sigma_into, dsigma_from_sigma_=dsigma_from_sigma_,
                      params=(("slope", slope),), smooth=False)


def linear() -> Activation:
    return Activation("linear", lambda u: u, _linear_d, 1.0, (-math.inf, math.inf), K=1.0,
                      sigma_and_dsigma=lambda u: (u, torch.ones_like(u)), sigma_and_dsigma_into=_linear_both_into)


def erf() -> Activation:
    return Activation("erf", torch.erf, _erf_d, _TWO_OVER_SQRT_PI, (-1.0, 1.0),
                      K=_TWO_OVER_SQRT_PI * math.exp(-1.0), sigma_and_dsigma_into=_erf_both_into)


def softplus() -> Activation:
    return Activation("softplus", _softplus, torch.sigmoid, 1.0, (-1.0, 1.0),
                      K=1.0 / (1.0 + math.e), sigma_and_dsigma=_softplus_both)


def gelu() -> Activation:
    # sup σ' is attained at u = √2: Φ(√2) + √2 φ(√2).
    lip = 0.5 * (1.0 + math.erf(1.0)) + _SQRT_2 * _INV_SQRT_2PI * math.exp(-1.0)
    return Activation("gelu", _gelu, _gelu_d, lip, (0.0, 1.0), K=0.5, sigma_and_dsigma=_gelu_both,
                      sigma_and_dsigma_into=_gelu_both_into)


def _builtin(make: Callable[..., Activation]) -> Callable[..., Activation]:
    """``make``, with its activations marked built-in (what a file can rebuild by name)."""

    @functools.wraps(make)
    def wrapped(*args, **kwargs) -> Activation:
        act = make(*args, **kwargs)
        object.__setattr__(act, "builtin", True)
        return act

    return wrapped


tanh, sigmoid, relu, leaky_relu = _builtin(tanh), _builtin(sigmoid), _builtin(relu), _builtin(leaky_relu)
linear, erf, softplus, gelu = _builtin(linear), _builtin(erf), _builtin(softplus), _builtin(gelu)

_BUILTINS: dict[str, Callable[..., Activation]] = {
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "linear": linear,
    "erf": erf,
    "softplus": softplus,
    "gelu": gelu,
}

ACTIVATIONS: tuple[str, ...] = tuple(_BUILTINS)


def get_activation(spec: str | dict | Activation, **params) -> Activation:
    """Resolve an activation from a name (``"tanh"``, ``"leaky_relu"``…), a spec dict or an instance.

    ``get_activation("leaky_relu", slope=0.1)`` and ``get_activation({"name": "leaky_relu", "slope": 0.1})``
    are equivalent.
    """
    if isinstance(spec, Activation):
        if params:
            raise TypeError("parameters can only be given with an activation name, not an Activation instance")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if spec.pop("custom", False):
            raise ValueError(f"this network used a custom activation named {name!r} (a gf.Activation of your own), "
                             "which a file cannot rebuild; pass it again as activation=...")
        return get_activation(name, **spec, **params)
    if not isinstance(spec, str):
        raise TypeError(
            f"activation must be a name in {list(ACTIVATIONS)} or a gf.Activation, got {describe(spec)}"
        )
    key = spec.lower().replace("-", "_")
    if key not in _BUILTINS:
        raise ValueError(
            f"unknown activation {spec!r}; expected one of {list(ACTIVATIONS)} or a gf.Activation instance"
        )
    fn = _BUILTINS[key]
    try:  # check the parameter names only: a TypeError for a parameter's value must not be reworded
        inspect.signature(fn).bind(**params)
    except TypeError as exc:
        raise TypeError(f"activation {spec!r} does not take parameters {sorted(params)}: {exc}") from None
    return fn(**params)


def numeric_lipschitz(act: Activation, lo: float = -20.0, hi: float = 20.0) -> float:
    """sup |σ′| on a fine grid — used by tests to check the declared constants."""
    u = torch.linspace(lo, hi, 400_001, dtype=torch.float64)
    return float(act.dsigma(u).abs().max())


__all__ = ["ACTIVATIONS", "Activation", "get_activation", "numeric_lipschitz"]
