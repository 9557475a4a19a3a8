r"""The training problem (network + data) and the interface shared by the two exact vector fields.

A field maps (t, state) to d state/dt.  It also knows how to read the training features H, the test
features and the weights W off a state, so that solvers and observers never depend on which space the
flow is integrated in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from .._validate import as_tensor
from ..model.activations import fusable, fused_P_into
from ..model.network import Network


@dataclass(frozen=True, eq=False)
class Problem:
    """A network with its training (and optional test) data, as tensors in the network's dtype/device.

    Attributes:
        net: the network.
        X: (n, d) training inputs;  y: (n,) targets.
        X_test: (n_te, d) or None;  y_test: (n_te,) or None.
    """

    net: Network
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @classmethod
    def from_data(cls, net: Network, X: Any, y: Any, X_test: Any = None, y_test: Any = None) -> Problem:
        if not isinstance(net, Network):
            raise TypeError(f"net must be a gf.Network, got {type(net).__name__}")
        Xt = net._inputs(X, "X")
        n = Xt.shape[0]
        yt = _targets(y, "y", n, net)
        if (X_test is None) != (y_test is None):
            raise ValueError("X_test and y_test must be given together (got only "
                             f"{'X_test' if y_test is None else 'y_test'})")
        Xte = yte = None
        if X_test is not None:
            Xte = net._inputs(X_test, "X_test")
            yte = _targets(y_test, "y_test", Xte.shape[0], net)
        return cls(net, Xt, yt, Xte, yte)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_test(self) -> int:
        return 0 if self.X_test is None else int(self.X_test.shape[0])

    @cached_property
    def Phi(self) -> torch.Tensor:
        """Φ_tr, (n, D)."""
        return self.net._phi(self.X)

    @cached_property
    def Phi_test(self) -> torch.Tensor | None:
        """Φ_te, (n_te, D) or None."""
        return None if self.X_test is None else self.net._phi(self.X_test)

    @cached_property
    def G(self) -> torch.Tensor:
        """G = Φ_tr Φ_trᵀ / D (eq. (12)), (n, n); a ValueError if it overflows (every quantity of the run reads it)."""
        G = (self.Phi @ self.Phi.T) / self.net.D
        if not bool(torch.isfinite(G).all()):
            raise ValueError(f"the Gram matrix G = ΦΦᵀ/D of the inputs overflows {G.dtype} (largest |Φ| entry "
                             f"{float(self.Phi.abs().max()):.3g}): rescale X"
                             + (" (or use float64)" if G.dtype != torch.float64 else ""))
        return G

    @cached_property
    def G_cross(self) -> torch.Tensor | None:
        """G(x_a, x_te) = Φ_tr Φ_teᵀ / D, (n, n_te) or None."""
        return None if self.Phi_test is None else (self.Phi @ self.Phi_test.T) / self.net.D

    @cached_property
    def H0(self) -> torch.Tensor:
        """Initial training features β W0 Φ_trᵀ, (m, n)."""
        return torch.mm(self.net.W0, self.Phi.T).mul_(self.net.beta)

    @cached_property
    def H0_test(self) -> torch.Tensor | None:
        """Initial test features β W0 Φ_teᵀ, (m, n_te) or None."""
        return None if self.Phi_test is None else self.net.beta * (self.net.W0 @ self.Phi_test.T)

    def outputs(self, H: torch.Tensor) -> torch.Tensor:
        """f = α σ(H)ᵀ c for features H (m, k) → (k,)."""
        return self.net.alpha * (self.net.c @ self.net.activation.sigma(H))


def _targets(y: Any, name: str, n: int, net: Network) -> torch.Tensor:
    t = as_tensor(y, name, ndim=(1, 2), dtype=net.dtype, device=net.device)
    if t.ndim == 2:
        if t.shape[1] != 1:
            raise ValueError(f"{name} must have shape ({n},) or ({n}, 1) (scalar outputs), got {tuple(t.shape)}")
        t = t[:, 0]
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but there are {n} inputs")
    return t.contiguous()


def scratch(owner: object, key: str, shape: tuple[int, ...], like: torch.Tensor,
            col: bool | None = None) -> torch.Tensor:
    """A buffer kept on ``owner`` and reused across calls (allocated on first use or when shape/dtype/device
    change): fresh (m, n) arrays on every call cost page faults.  Of ``like``'s shape, it also takes its memory
    layout (a column-major H gets column-major buffers: elementwise passes between them stay contiguous);
    ``col`` (True / False) fixes the layout instead: column-major (a transposed contiguous tensor) or contiguous."""
    # the hot paths ask for a few buffers per evaluation: each is kept with its layout flag, so a reuse costs one
    # layout test of ``like`` (3.7 → 1.6 µs for a column-major (1024, 20) buffer; ~5 % of a GD step there)
    bufs = owner.__dict__.get("_buffers")
    if bufs is None:
        bufs = owner.__dict__["_buffers"] = {}
    shape = tuple(shape)
    cols = (len(shape) >= 2 and like.shape == shape and column_major(like)) if col is None else bool(col)
    entry = bufs.get(key)
    if entry is not None:
        buf, buf_cols = entry
        if buf_cols == cols and buf.shape == shape and buf.dtype == like.dtype and buf.device == like.device:
            return buf
    kw = {"dtype": like.dtype, "device": like.device}
    buf = torch.empty(shape[:-2] + (shape[-1], shape[-2]), **kw).mT if cols else torch.empty(shape, **kw)
    bufs[key] = (buf, cols)
    return buf


def column_major(x: torch.Tensor) -> bool:
    """Whether x (≥ 2-D) is a transposed contiguous tensor — as H in the feature state's "nm" layout — and not
    contiguous itself."""
    if x.dim() < 2 or x.is_contiguous():
        return False
    if x.dim() == 2:  # x.mT.is_contiguous() from the strides, without forming the view (0.94 → 0.46 µs); with a
        return x.stride() == (1, x.shape[0])  # size-1 dimension x is contiguous iff x.mT is (tested)
    return x.mT.is_contiguous()


class AbstractField:
    """An exact gradient-flow vector field; subclasses fix the state space.

    Attributes:
        problem: the :class:`Problem`.
        space: ``"weight"`` or ``"feature"``.
        state_shape: shape of the state tensor.
    """

    problem: Problem
    space: str
    state_shape: tuple[int, ...]
    #: the derivative depends only on the first ``rhs_reads`` entries of the flattened state (None: on all of
    #: it); a solver may leave the other entries of a stage state unformed (see :mod:`gflow.solve.rk`)
    rhs_reads: int | None = None
    #: the feature state's memory layout, "nm" or "mn" (:class:`~gflow.fields.FeatureSpaceField`); None in weight space
    layout: str | None = None
    #: where set, the state :meth:`initial_state` returns a copy of instead of the network's W0: a run continued from
    #: another's end (:func:`gflow.extend`: its final weights or features, and its integrals so far)
    start: torch.Tensor | None = None

    def initial_state(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_features(self, state: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """H, (m, n)."""
        raise NotImplementedError

    def train_features_into(self, state: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`train_features` written into ``out`` (an (m, n) view, e.g. one time of the recorder's stack of
        saved times); a field that forms H by a product writes it there directly."""
        return out.copy_(self.train_features(state))

    def test_features(self, state: torch.Tensor) -> torch.Tensor | None:  # pragma: no cover
        """H_te, (m, n_te), or None without test data."""
        raise NotImplementedError

    def test_features_into(self, state: torch.Tensor, out: torch.Tensor) -> torch.Tensor | None:
        """:meth:`test_features` written into ``out`` (a contiguous (m, n_te) buffer) where the field can, else a
        tensor of its own: the caller may overwrite the result only where it ``is out``.  The recorder's per-saved-time
        product then needs no fresh (m, n_te) array (page faults on every call: 1.6 MB at (1024, 200))."""
        return self.test_features(state)

    def weights(self, state: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """W, (m, D)."""
        raise NotImplementedError

    def flops_per_eval(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def rhs_into(self, state: torch.Tensor, out: torch.Tensor) -> Parts:
        """Write d state/dt into ``out`` and return the intermediate quantities (for observers).

        The tensors in the returned :class:`Parts` may live in scratch buffers owned by the field (reused
        across calls, so that a solve allocates nothing per evaluation): they stay valid until the next call
        of ``rhs_into`` on this field; copy them to keep them longer.  ``out`` itself belongs to the caller.
        ``Parts.ds`` (σ′) and ``Parts.dL`` may be None unless :attr:`keep_parts` is set; ``Parts.probe`` is
        always there: finite iff the derivative written into ``out`` is.
        """
        raise NotImplementedError  # pragma: no cover

    def gd_step_(self, state: torch.Tensor, step: float, deriv: torch.Tensor) -> None:
        """One gradient-descent (forward Euler) step in place: state ← state + step·f(state); ``deriv`` is a
        caller-owned buffer of the state's shape (its content afterwards is unspecified)."""
        self.rhs_into(state, deriv)
        state.add_(deriv, alpha=step)

    def __call__(self, t, state: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(state)
        self.rhs_into(state, out)
        return out

    def _scratch(self, key: str, shape: tuple[int, ...], like: torch.Tensor, col: bool | None = None) -> torch.Tensor:
        """A buffer reused across evaluations (:func:`scratch`)."""
        return scratch(self, key, shape, like, col)

    #: whether :meth:`rhs_into` returns σ′(H) and L̇ in ``Parts.ds`` and ``Parts.dL`` (an
    #: :class:`~gflow.fields.ObservedField` sets it on its base: its integrands read both).  Otherwise σ′ is
    #: formed inside P's own buffer (P = c σ′ r then takes in-place passes only, see :meth:`_P_into`), and a field
    #: may return ``ds = None`` and ``dL = None`` with a cheaper finiteness witness in ``Parts.probe``.
    keep_parts: bool = False

    # Shared by both spaces: P_ia = c_i σ'(H_ia) r_a (eq. (10)), residual r = f − y.
    def _dsigma_and_r(self, H: torch.Tensor, into: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ′(H), r = α σ(H)ᵀc − y); σ′ in ``into`` when given (H's shape), else in a scratch buffer; r in a
        scratch buffer (both valid until the next call).

        σ into one (m, n) buffer, r from it in one BLAS call, then σ′ — over σ, in place, where σ′ is a function
        of σ (tanh, sigmoid: :meth:`Activation.sigma_then_dsigma_into`), which saves a buffer and a pass.
        """
        net, pb = self.problem.net, self.problem
        act = net.activation
        shape = tuple(H.shape)
        if act.in_place_dsigma:  # σ, then σ′ over it
            s, ds = (self._scratch("s", shape, H) if into is None else into), None
        else:
            s, ds = self._scratch("s", shape, H), (self._scratch("ds", shape, H) if into is None else into)
        r = self._scratch("r", (shape[1],), H)
        ds = act.sigma_then_dsigma_into(
            H, s, ds, lambda sig: torch.addmv(pb.y, sig.T, net.c, beta=-1.0, alpha=net.alpha, out=r))
        return ds, r

    def _P_into(self, H: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, bool]:
        """Write P = c σ′(H) r into ``out`` (m, n); returns (σ′(H) in a scratch buffer, or None unless
        :attr:`keep_parts`; r in a scratch buffer; whether the fused tanh kernel formed them).

        The built-in tanh in float64 on the CPU, H and ``out`` column-major: one fused pass
        (:func:`~gflow.model.activations.fused_P_into`, :mod:`gflow.model._native`).  Otherwise torch's passes,
        allocation-free: without :attr:`keep_parts`, σ′ is formed in ``out`` itself and P by two in-place broadcasts
        (·r over the rows, ·c over the columns): an in-place pass costs about half an out-of-place one (no
        read-for-ownership of the destination; 1.35 against 2.8 ms at (8192, 600) on an Intel Xeon), which took
        the feature RHS at (4096, 600) from 39.4 to 37.4 ms, bit-identical.  With it, P = σ′ r out of place from
        σ′'s buffer, then ·c in place (an expanded copy of c, an AMD-era choice, cost 4.2 against 2.7 ms there).
        """
        fused = self._fused_into(H, out, self.keep_parts, times_r=True)
        if fused is not None:
            return fused[1], fused[0], True
        if self.keep_parts:
            ds, r = self._dsigma_and_r(H)
            torch.mul(ds, r, out=out)
        else:
            ds, r = self._dsigma_and_r(H, into=out)
            out.mul_(r)
            ds = None
        out.mul_(self._c_col)  # c[:, None], set by the subclass
        return ds, r, False

    def _Q_and_r(self, H: torch.Tensor,
                 with_ds: bool = False) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """(Q = c σ′(H), r, σ′(H) if ``with_ds`` else None), each in a scratch buffer: what a gradient-descent step
        in feature space needs (fused in one pass where :func:`~gflow.model.activations.fused_P_into` applies).
        With ``with_ds`` through torch's passes, Q is None: the caller reads σ′, then forms Q over it
        (``ds.mul_(c[:, None])``), as before — no third (m, n) buffer."""
        Q = self._scratch("s", tuple(H.shape), H)  # (σ's buffer, where torch's passes run)
        fused = self._fused_into(H, Q, with_ds, times_r=False)
        if fused is not None:
            return Q, fused[0], fused[1]
        ds, r = self._dsigma_and_r(H)
        if with_ds:
            return None, r, ds
        return ds.mul_(self._c_col), r, None

    def _fused_into(self, H: torch.Tensor, out: torch.Tensor, with_ds: bool,
                    times_r: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The fused tanh pass (:func:`~gflow.model.activations.fused_P_into`) into ``out``: (r, σ′ or None) in
        scratch buffers, or None where it cannot run (then no buffer was taken for it) and torch's passes follow."""
        net = self.problem.net
        if not fusable(net.activation, H):
            return None
        r = self._scratch("r", (H.shape[1],), H)
        ds = self._scratch("ds", tuple(H.shape), H) if with_ds else None
        if fused_P_into(net.activation, H, out, r, net.c, self.problem.y, net.alpha, ds, times_r):
            return r, ds
        return None


@dataclass(frozen=True)
class Parts:
    """Intermediates of one right-hand-side evaluation: H (m, n), σ′(H) (m, n), r (n,), L̇ = −rᵀMr, and ``probe``,
    a scalar that is finite iff the whole derivative is (the solvers' check; L̇ when not given).  ``ds`` and
    ``dL`` may be None unless the field's ``keep_parts`` is set."""

    H: torch.Tensor
    ds: torch.Tensor | None
    r: torch.Tensor
    dL: torch.Tensor | None
    probe: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.probe is None:
            object.__setattr__(self, "probe", self.dL)
