"""gflow's compiled float64 tanh kernels (gflow.model._native): accuracy against an extended-precision reference,
the fused σ/r/σ′/P pass against torch's passes, NaN and ±inf, the layouts they take and refuse, and the build:
cached, off on request, off with a reason where it cannot be built — and torch's route then."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.model import _native, activations

EPS = float(torch.finfo(torch.float64).eps)


@pytest.fixture
def native():
    if _native._compiler() is None:
        pytest.skip("no C compiler: gflow's native kernels cannot be built here")
    assert _native.available(), _native.status()
    return _native


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """A process state in which the library is looked up (and built) again, in ``tmp_path``; restored after."""
    monkeypatch.setenv(_native.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(activations.TANH_ROUTE_ENV, raising=False)
    _native._library.cache_clear()
    activations.float64_tanh_route.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    _native._library.cache_clear()
    activations.float64_tanh_route.cache_clear()


def _long_double_tanh(u: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """tanh(u) and 1 − tanh(u)² in x87 extended precision (64-bit significand) where numpy has it."""
    x = u.numpy().astype(np.longdouble)
    t = np.tanh(x)
    return t, (1 - t) * (1 + t)


def test_native_tanh_is_within_4_ulp_relatively_and_its_derivative_within_a_few_eps(native):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("numpy's long double is not extended precision here")
    u = torch.cat([torch.linspace(-40.0, 40.0, 800_001, dtype=torch.float64),
                   torch.logspace(-300, 1, 20_001, dtype=torch.float64),
                   -torch.logspace(-300, 1, 20_001, dtype=torch.float64)])
    s, ds = torch.empty_like(u), torch.empty_like(u)
    assert native.tanh_into(u, s, ds)
    t, dt = _long_double_tanh(u)
    rel = np.abs((s.numpy() - t) / np.where(t == 0, 1, t)).max()
    assert rel <= 4 * EPS  # relative, also near 0 (where 2σ(2u) − 1 would cancel)
    assert np.abs(s.numpy() - t).max() <= 1.5 * EPS  # absolute, near ±1
    assert np.abs(ds.numpy() - dt).max() <= 4 * EPS  # σ′ = 1 − s² from s
    assert float(s.abs().max()) <= 1.0
    assert torch.equal(s[u == 0], u[u == 0])  # tanh(0) = 0 exactly


def test_native_tanh_propagates_nan_and_saturates_at_infinity(native):
    u = torch.tensor([math.nan, math.inf, -math.inf, 1e308, -1e308, 20.0, -20.0, 19.0], dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    assert native.tanh_into(u, s, ds)
    assert math.isnan(s[0]) and math.isnan(ds[0])
    torch.testing.assert_close(s[1:], torch.tanh(u[1:]), rtol=0, atol=EPS)
    assert torch.equal(ds[1:5], torch.zeros(4, dtype=torch.float64))


def _problem(m=37, n=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = 2.0 * torch.randn(n, m, generator=g, dtype=torch.float64).T  # column-major (m, n), as the "nm" state
    c = torch.randn(m, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return H, c, y


@pytest.mark.parametrize("times_r", [True, False])
@pytest.mark.parametrize("with_ds", [False, True])
def test_fused_P_pass_equals_torch_passes(native, times_r, with_ds):
    H, c, y = _problem()
    m, n = H.shape
    alpha = 0.37
    s = torch.tanh(H)
    r_ref = alpha * s.T @ c - y
    ds_ref = 1.0 - s * s
    P_ref = c[:, None] * ds_ref * (r_ref[None, :] if times_r else 1.0)
    P = torch.full((n, m), math.nan, dtype=torch.float64).T
    ds = torch.full((n, m), math.nan, dtype=torch.float64).T if with_ds else None
    r = torch.full((n,), math.nan, dtype=torch.float64)
    assert native.tanh_P_into(H, P, r, c, y, alpha, ds, times_r)
    torch.testing.assert_close(r, r_ref, rtol=16 * EPS, atol=16 * EPS * float(c.abs().sum()))
    torch.testing.assert_close(P, P_ref, rtol=32 * EPS, atol=32 * EPS * float(P_ref.abs().max()))
    if with_ds:
        torch.testing.assert_close(ds, ds_ref, rtol=0, atol=4 * EPS)
    # a NaN in one column of H makes that r (and its column of P) NaN, and no other
    H2 = H.clone()
    H2[3, 5] = math.nan
    assert native.tanh_P_into(H2, P, r, c, y, alpha, ds, times_r)
    assert math.isnan(r[5]) and torch.isfinite(r[torch.arange(n) != 5]).all()
    assert torch.isnan(P[:, 5]).all() == times_r and torch.isfinite(P[:, :5]).all()


def test_the_columns_split_over_threads_give_the_same_bits(native, monkeypatch):
    H, c, y = _problem(m=64, n=23, seed=3)
    m, n = H.shape
    monkeypatch.setattr(native, "PARALLEL_MIN_ENTRIES", 1)
    got = []
    for threads in (1, 2, 5, 64):
        P, ds = torch.empty(n, m, dtype=torch.float64).T, torch.empty(n, m, dtype=torch.float64).T
        r = torch.empty(n, dtype=torch.float64)
        assert native.tanh_P_into(H, P, r, c, y, 0.7, ds, threads=threads)
        got.append((P, ds, r))
    for P, ds, r in got[1:]:
        assert torch.equal(P, got[0][0]) and torch.equal(ds, got[0][1]) and torch.equal(r, got[0][2])


def test_native_kernels_refuse_what_they_do_not_suit(native):
    H, c, y = _problem()
    m, n = H.shape
    r = torch.empty(n, dtype=torch.float64)
    P = torch.empty(n, m, dtype=torch.float64).T
    assert not native.tanh_P_into(H.contiguous(), P, r, c, y, 1.0)  # row-major H
    assert not native.tanh_P_into(H, torch.empty(m, n, dtype=torch.float64), r, c, y, 1.0)  # row-major P
    assert not native.tanh_P_into(H.float(), P.float(), r.float(), c.float(), y.float(), 1.0)  # float32
    assert not native.tanh_P_into(H, P, r, c[:-1], y, 1.0)  # c of the wrong length
    assert not native.tanh_P_into(H, P, r[:-1], c, y, 1.0)  # r of the wrong length
    overlapping = torch.empty(m + n, dtype=torch.float64).as_strided((m, n), (1, 1))
    assert not native.tanh_P_into(overlapping, P, r, c, y, 1.0)  # columns that overlap
    half = H[:, ::2]
    r2, y2 = torch.empty(half.shape[1], dtype=torch.float64), y[::2].clone()
    assert native.tanh_P_into(half, P[:, ::2], r2, c, y2, 1.0)  # every other column: taken
    assert not native.tanh_P_into(half, P[:, ::2], r[::2], c, y2, 1.0)  # a strided r: refused
    u = torch.randn(8, 6, dtype=torch.float64)
    assert not native.tanh_into(u[:, ::2], torch.empty(8, 3, dtype=torch.float64))  # not dense
    assert not native.tanh_into(u, torch.empty(6, 8, dtype=torch.float64).T)  # layouts differ
    assert not native.tanh_into(u.float(), torch.empty(8, 6))


def test_fields_on_the_native_route_agree_with_torchs_route(native, monkeypatch):
    # the whole RHS, in both spaces, both feature layouts, with and without keep_parts, and a GD step, against the
    # torch route (sigmoid): the same flow to rounding
    X = torch.randn(9, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randn(9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    net = gf.Network(d=4, width=33, activation="tanh", seed=3)
    pb = gf.Problem.from_data(net, X, y)
    got = {}
    for route in ("native", "sigmoid"):
        monkeypatch.setattr(activations, "float64_tanh_route", lambda route=route: route)
        for space, layout in (("weight", None), ("feature", "nm"), ("feature", "mn")):
            for keep in (False, True):
                f = gf.make_field(pb, space, **({} if layout is None else {"layout": layout}))
                f.keep_parts = keep
                s0 = f.initial_state()
                s0 = s0 + 0.5 * torch.randn(s0.shape, generator=torch.Generator().manual_seed(4), dtype=s0.dtype)
                out = torch.empty_like(s0)
                parts = f.rhs_into(s0, out)
                got[route, space, layout, keep] = (out.clone(), parts.r.clone(),
                                                   None if parts.ds is None else parts.ds.clone())
                assert math.isfinite(float(parts.probe))
            if space == "feature":
                f = gf.make_field(pb, space, layout=layout)
                st = f.initial_state()
                f.gd_step_(st, 0.3, torch.empty_like(st))
                got[route, "gd", layout] = st
    for key, val in got.items():
        if key[0] != "native":
            continue
        ref = got[("sigmoid",) + key[1:]]
        for a, b in zip(val if isinstance(val, tuple) else (val,), ref if isinstance(ref, tuple) else (ref,)):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14 * float(b.abs().max()))


def test_the_probe_after_the_fused_pass_catches_a_nan_feature(native):
    X = torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.randn(6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    net = gf.Network(d=3, width=10, activation="tanh", seed=7)
    f = gf.make_field(gf.Problem.from_data(net, X, y), "feature")
    s0 = f.initial_state()
    f.split(s0)[0][4, 2] = math.nan
    out = torch.empty_like(s0)
    parts = f.rhs_into(s0, out)
    assert not math.isfinite(float(parts.probe)) and not torch.isfinite(out).all()


def test_the_library_is_built_once_and_reused(native, fresh_build):
    assert _native.available(), _native.status()
    built = list(fresh_build.glob("gflow_native_*.so"))
    assert len(built) == 1 and str(built[0]) in _native.status()
    mtime = built[0].stat().st_mtime_ns
    _native._library.cache_clear()
    assert _native.available() and built[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert list(fresh_build.iterdir()) == built  # no temporaries left


def test_no_compiler_or_a_failed_build_turns_the_kernels_off_with_a_reason_and_torch_takes_over(
        fresh_build, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert not _native.available()
    assert "no C compiler found" in _native.status() and "/nonexistent/cc" in _native.status()
    assert activations.float64_tanh_route() in ("tanh", "sigmoid")
    u = torch.linspace(-3, 3, 101, dtype=torch.float64)
    s, ds = torch.empty_like(u), torch.empty_like(u)
    gf.get_activation("tanh").both_into(u, s, ds)  # torch's route
    torch.testing.assert_close(s, torch.tanh(u), rtol=0, atol=2 * EPS)
    # asked for by name (as a sweep's parent passes it on to a worker without a compiler): torch's route runs, and
    # the provenance says so and why
    monkeypatch.setenv(activations.TANH_ROUTE_ENV, "native")
    activations.float64_tanh_route.cache_clear()
    assert activations.float64_tanh_route() in ("tanh", "sigmoid")
    from gflow.solution import versions

    assert versions()["float64_tanh_route"] in ("tanh", "sigmoid") and "no C compiler" in versions()["native_kernels"]
    # a compiler that fails
    monkeypatch.delenv(activations.TANH_ROUTE_ENV)
    monkeypatch.setenv("CC", "false")
    _native._library.cache_clear()
    if _native._compiler() is None:
        pytest.skip("no `false` command")
    assert not _native.available() and "build failed" in _native.status()
    assert list(fresh_build.iterdir()) == []  # nothing half-written left behind


def test_a_read_only_cache_directory_falls_back_to_the_temporary_one(native, fresh_build, monkeypatch):
    blocked = fresh_build / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv(_native.CACHE_ENV, str(blocked / "sub"))  # mkdir fails: a file is in the way
    (fresh_build / "tmp").mkdir()
    monkeypatch.setattr(_native.tempfile, "gettempdir", lambda: str(fresh_build / "tmp"))
    assert _native.available(), _native.status()
    assert (fresh_build / "tmp" / f"gflow-{os.getuid()}").stat().st_mode & 0o777 == 0o700
    assert str(fresh_build / "tmp") in _native.status()


def test_a_shared_temporary_folder_is_not_trusted(native, fresh_build, monkeypatch):
    # the fallback folder has a predictable name in a world-writable place: one that others may write to is refused
    blocked = fresh_build / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv(_native.CACHE_ENV, str(blocked / "sub"))
    tmp = fresh_build / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(_native.tempfile, "gettempdir", lambda: str(tmp))
    planted = tmp / f"gflow-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    assert not _native.available() and "not a private folder" in _native.status()


def test_the_provenance_does_not_build_the_kernels(fresh_build, monkeypatch):
    monkeypatch.setenv(activations.TANH_ROUTE_ENV, "sigmoid")
    from gflow.solution import versions

    v = versions()
    assert v["float64_tanh_route"] == "sigmoid" and v["native_kernels"] == "not loaded"
    assert list(fresh_build.iterdir()) == []


def test_workers_get_torchs_route_with_native(native, monkeypatch):
    # a worker told "native" alone timed its own torch route for the tensors the kernel does not suit
    monkeypatch.delenv(activations.TANH_ROUTE_ENV, raising=False)
    activations.float64_tanh_route.cache_clear()
    activations._torch_tanh_route.cache_clear()
    try:
        told = activations.worker_tanh_route()
        assert told == "native+" + activations._torch_tanh_route()
        other = "tanh" if told.endswith("sigmoid") else "sigmoid"

        def timed(*_):
            raise AssertionError("timed")

        monkeypatch.setattr(activations, "_tanh_both_into_tanh", timed)
        monkeypatch.setattr(activations, "_tanh_both_into_sigmoid", timed)
        activations.set_float64_tanh_route("native+" + other)
        assert activations.float64_tanh_route() == "native" and activations._torch_tanh_route() == other
        assert activations.worker_tanh_route() == "native+" + other
    finally:
        os.environ.pop(activations.TANH_ROUTE_ENV, None)  # (set_float64_tanh_route writes os.environ itself)
        monkeypatch.undo()
        activations.float64_tanh_route.cache_clear()
        activations._torch_tanh_route.cache_clear()


def test_gflow_native_0_turns_the_kernels_off(fresh_build, monkeypatch):
    monkeypatch.setenv(_native.NATIVE_ENV, "0")
    assert not _native.available() and "GFLOW_NATIVE=0" in _native.status()
    assert activations.float64_tanh_route() != "native"
    assert list(fresh_build.iterdir()) == []  # not built


def test_an_unknown_route_is_refused_by_name(monkeypatch):
    with pytest.raises(ValueError, match="must be one of .*'native'.*got 'fast'"):
        activations.set_float64_tanh_route("fast")
    monkeypatch.setenv(activations.TANH_ROUTE_ENV, "fast")
    activations.float64_tanh_route.cache_clear()
    try:
        with pytest.raises(ValueError, match="GFLOW_FLOAT64_TANH_ROUTE must be one of"):
            activations.float64_tanh_route()
    finally:
        monkeypatch.undo()
        activations.float64_tanh_route.cache_clear()


@pytest.mark.parametrize("vector_atol", [False, True])
def test_the_error_and_stiffness_sums_equal_torchs(native, vector_atol):
    # DOP853's error estimate (Engine._error) and Hairer's stiffness estimate read these sums
    g = torch.Generator().manual_seed(8)
    n = 1001
    absy = torch.rand(n, generator=g, dtype=torch.float64) + 0.01
    y1 = torch.randn(n, generator=g, dtype=torch.float64)
    e5, e3 = 1e-6 * torch.randn(2, n, generator=g, dtype=torch.float64)
    a = torch.rand(n, generator=g, dtype=torch.float64) * 1e-3 if vector_atol else 1e-3
    if vector_atol:
        a[:10] = math.inf  # (the running integrals: atol = ∞ counts nothing)
    absy1 = torch.empty(n, dtype=torch.float64)
    sums = native.Sums()
    assert native.err853_into(absy, y1, e5, e3, a, absy1, sums)
    ref_absy1 = y1.abs() + a
    sc = torch.maximum(absy, ref_absy1)
    torch.testing.assert_close(absy1, ref_absy1, rtol=0, atol=0)
    ref = [float((e / sc).square().sum()) for e in (e5, e3)]
    torch.testing.assert_close(torch.tensor(sums.values()), torch.tensor(ref), rtol=1e-13, atol=0)
    for bad in (math.nan,):  # a NaN in y₁ or in the error rows reaches the sums
        for arr in (absy, y1, e5, e3):
            old = arr[7].item()
            arr[7] = bad
            assert native.err853_into(absy, y1, e5, e3, a, absy1, sums)
            assert any(math.isnan(v) for v in sums.values()), arr
            arr[7] = old
    b1, b2 = torch.randn(2, n, generator=g, dtype=torch.float64)
    assert native.dist2_into(y1, b1, e5, b2, sums)
    torch.testing.assert_close(torch.tensor(sums.values()),
                               torch.tensor([float(torch.dist(y1, b1)) ** 2, float(torch.dist(e5, b2)) ** 2]),
                               rtol=1e-13, atol=0)
    assert not native.dist2_into(y1[::2], b1[::2], e5[::2], b2[::2], sums)  # not contiguous
    # a subnormal scale (atol = 0, |y| ~ 1e-310) with a zero error: 0, not NaN (1/sc would overflow)
    tiny = torch.full((n,), 1e-310, dtype=torch.float64)
    zero = torch.zeros(n, dtype=torch.float64)
    assert native.err853_into(tiny, tiny, zero, zero, 0.0, absy1, sums) and sums.values() == (0.0, 0.0)
    assert not native.err853_into(absy, y1, e5, e3, a, absy1.float(), sums)


def test_tanh_and_the_distance_in_one_pass_equal_tanh_into_and_torchs_difference_bit_for_bit(native):
    g = torch.Generator().manual_seed(7)
    u = torch.cat([s * torch.randn(4001, generator=g, dtype=torch.float64) for s in (1e-300, 1e-8, 0.5, 3.0, 19.9,
                                                                                      25.0, 1e300)])
    u0 = torch.randn(u.shape, generator=g, dtype=torch.float64)
    u[:6] = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, -20.0], dtype=torch.float64)
    u0[6:9] = torch.tensor([math.nan, -0.0, math.inf], dtype=torch.float64)
    u, u0 = u.reshape(-1, 7), u0.reshape(-1, 7)  # (an (m, n) block, as the recorder's test features)
    s_ref = torch.empty_like(u)
    assert native.tanh_into(u, s_ref)
    d_ref = torch.sub(u, u0).abs_()
    bits = lambda x: x.view(torch.int64)  # noqa: E731  (NaN payloads and signed zeros too)
    s, d = torch.empty_like(u), torch.empty_like(u)
    assert native.tanh_absdiff_into(u, u0, s, d)
    over = u.clone()  # the distance written over u itself, as the recorder does
    s2 = torch.empty_like(u)
    assert native.tanh_absdiff_into(over, u0, s2, over)
    for got, ref in ((s, s_ref), (d, d_ref), (s2, s_ref), (over, d_ref)):
        assert torch.equal(bits(got), bits(ref))
    col = u.T.contiguous().T  # one dense layout for all four: taken
    assert native.tanh_absdiff_into(col, u0.T.contiguous().T, torch.empty_like(col), torch.empty_like(col))
    assert not native.tanh_absdiff_into(u, u0.T.contiguous().T, s, d)  # layouts differ
    assert not native.tanh_absdiff_into(u[:, ::2], u0[:, ::2], s[:, ::2], d[:, ::2])  # not dense
    assert not native.tanh_absdiff_into(u.float(), u0.float(), s.float(), d.float())  # float32
    assert not native.tanh_absdiff_into(u, u0[:-1], s, d)  # shapes differ
