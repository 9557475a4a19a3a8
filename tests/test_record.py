"""The recorder's batched path: the saved times of a solver's dense output taken together (Recorder.record_many) give
the rows of one record call per time, bit for bit, and fail at the same time the same way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.fields import Problem, make_field
from gflow.model import quantities as Q
from gflow.solve._record import Abort, Recorder
from gflow.solve.ode import observed_field


def _data(n=6, d=3, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)), rng.uniform(-0.5, 0.5, n), rng.standard_normal((n_test, d)),
            rng.uniform(-0.5, 0.5, n_test))


def _arrays(sol) -> dict:
    return {k: v for k, v in vars(sol).items() if isinstance(v, np.ndarray) and v.dtype != object}


@pytest.mark.parametrize("method, space, activation", [("dop853", "weight", "tanh"), ("dop853", "feature", "tanh"),
                                                       ("dopri5", "feature", "erf"), ("dopri5", "weight", "gelu")])
def test_a_dense_saveat_recorded_in_chunks_equals_one_record_per_time_bit_for_bit(monkeypatch, method, space,
                                                                                  activation):
    X, y, Xt, yt = _data()
    net = gf.Network(d=3, width=16, activation=activation, seed=1)
    kw = dict(t1=20.0, saveat=np.linspace(0.0, 20.0, 401), method=method, space=space, X_test=Xt, y_test=yt,
              features_at=np.linspace(0.0, 20.0, 11), weights_at=np.linspace(0.0, 20.0, 6))
    chunks = []
    many = Recorder.record_many

    def spy(self, ts, states):
        chunks.append(len(ts))
        return many(self, ts, states)

    monkeypatch.setattr(Recorder, "record_many", spy)
    together = gf.simulate(net, X, y, **kw)
    assert max(chunks) > 5  # (the dense output hands the recorder many times at once)
    monkeypatch.setattr(Recorder, "RECORD_CHUNK_ENTRIES", 1)  # one saved time per chunk: the per-time path
    alone = gf.simulate(net, X, y, **kw)
    a, b = _arrays(together), _arrays(alone)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert together.feature_t.tolist() == kw["features_at"].tolist()
    assert together.weight_t.tolist() == kw["weights_at"].tolist()


def _recorder_and_states(space: str, k: int = 7):
    X, y, Xt, yt = _data(seed=2)
    net = gf.Network(d=3, width=32, activation="tanh", seed=3)
    field = observed_field(make_field(Problem.from_data(net, X, y, Xt, yt), space), tuple(net.activation.interval),
                           True)
    g = torch.Generator().manual_seed(4)
    y0 = field.initial_state()
    states = y0 + 0.05 * torch.randn((k,) + tuple(y0.shape), generator=g, dtype=y0.dtype)
    return field, y0, states


@pytest.mark.parametrize("space", ["weight", "feature"])
def test_record_many_keeps_the_rows_before_a_nonfinite_time_and_stops_there_as_record_does(space):
    field, y0, states = _recorder_and_states(space)
    states[4].view(-1)[0] = math.nan
    ts = [0.5 * (i + 1) for i in range(len(states))]
    recs, errors = [], []
    for many in (True, False):
        rec = Recorder(field, np.array([0.0, ts[2]]), np.array([ts[1]]), time_tol=1e-9)
        rec.record(0.0, y0)
        with pytest.raises(Abort) as err:
            if many:
                rec.record_many(ts, states)
            else:
                for t, state in zip(ts, states):
                    rec.record(t, state)
        recs.append(rec)
        errors.append(err.value)
    (a, b), (ea, eb) = recs, errors
    assert ea.status == eb.status == "nonfinite" and ea.message == eb.message
    assert a.t == b.t == [0.0] + ts[:4]
    assert a.nonfinite_state[0] == ts[4] and torch.equal(a.nonfinite_state[1].nan_to_num(), states[4].nan_to_num())
    for key, rows in a.rows.items():
        assert len(rows) == len(b.rows[key]), key
        for u, v in zip(rows, b.rows[key]):
            assert np.array_equal(u, v, equal_nan=True), key
    assert a.feature_t == b.feature_t == [0.0, ts[2]] and a.weight_t == b.weight_t == [ts[1]]
    for u, v in zip(a.H + a.H_test + a.W, b.H + b.H_test + b.W):
        assert np.array_equal(u, v)
    assert torch.equal(a.last_state, states[3])


def test_record_many_refuses_a_different_number_of_times_and_states():
    field, y0, states = _recorder_and_states("weight", k=3)
    rec = Recorder(field, np.array([0.0]), np.array([]))
    with pytest.raises(ValueError, match="one state per time: got 2 times and 3 states"):
        rec.record_many([0.1, 0.2], states)


@pytest.mark.parametrize("column_major", [False, True])
def test_quantities_of_a_stack_are_those_of_each_matrix_bit_for_bit(column_major):
    g = torch.Generator().manual_seed(5)
    k, m, n = 5, 24, 9  # (small m: where a batched product would sum in another order than each matrix's)
    H = torch.randn((k, n, m) if column_major else (k, m, n), generator=g, dtype=torch.float64)
    H = H.mT if column_major else H
    H0, c = torch.randn(m, n, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    G = torch.randn(n, n, generator=g, dtype=torch.float64)
    forms = Q.FastForms(c, G @ G.T, 1.0)
    ds = torch.tanh(H)
    for interval in ((-1.0, 1.0), (-0.5, 2.0), (0.0, math.inf), (-math.inf, 0.3), (-math.inf, math.inf)):
        assert torch.equal(Q.eta(H, interval), torch.stack([Q.eta(h, interval) for h in H]))
    assert torch.equal(Q.feature_movement(H, H0), torch.stack([Q.feature_movement(h, H0) for h in H]))
    assert torch.equal(forms.mu_nu(ds, torch.empty_like(ds)), torch.stack([forms.mu_nu(d, torch.empty_like(d))
                                                                          for d in ds]))
    M = forms.kernel_M(ds, torch.empty_like(ds))
    assert torch.equal(M, torch.stack([forms.kernel_M(d, torch.empty_like(d)) for d in ds]))
    assert torch.equal(M, M.mT)  # (exactly symmetric, as for one matrix)
    wide = torch.randn(3, 40, Q.GRAM_MIN_N + 3, generator=g, dtype=torch.float64)  # (the blocked form)
    assert torch.equal(Q.gram(wide), torch.stack([Q.gram(b) for b in wide]))


def test_record_benchmark_quick_mode_writes_json_and_the_former_recorder_records_the_same_arrays(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_record.py"))
    mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "record.json").read_text())
    assert len(data["cases"]) == 6
    for row in data["cases"]:
        assert row["arrays_equal"], row["case"]
        assert row["record_s"] > 0 and row["former_record_s"] > 0 and row["saved_times"] > 1
    assert len(data["shared"]) == 10  # (GD with the recorder's work shared and the test block fused, and without)
    for row in data["shared"]:
        assert row["identical"], row["case"]
        assert row["wall_s"] > 0 and row["before_wall_s"] > 0 and row["record_s"] > 0


def _gd_problem(activation="tanh", dtype="float64", n_test=5):
    X, y, Xt, yt = _data(n=8, d=4, n_test=n_test, seed=6)
    net = gf.Network(d=4, width=48, activation=activation, seed=7, dtype=dtype)
    return net, X, y, Xt, yt


@pytest.mark.parametrize("activation, dtype", [("tanh", "float64"), ("relu", "float32"), ("erf", "float64")])
def test_gd_steps_take_the_recorders_kernel_at_saved_steps_and_give_the_same_run_bit_for_bit(monkeypatch, activation,
                                                                                               dtype):
    from gflow.fields import ObservedField

    net, X, y, Xt, yt = _gd_problem(activation, dtype)
    kw = dict(step=0.5, steps=30, save_every=1, space="feature", X_test=Xt, y_test=yt, features_at="all", warn=False)
    taken = []
    offered_for = ObservedField._offered_for

    def spy(self, H, ds):
        got = offered_for(self, H, ds)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(ObservedField, "_offered_for", spy)
    shared = gf.gradient_descent(net, X, y, **kw)
    # every step after a saved one takes η, μ, ν, M and λ_min(M) from the recorder (t = 0 records a copy: not taken)
    assert taken == [False] + [True] * 29
    monkeypatch.setattr(ObservedField, "offer_integrands", lambda self, *a: None)
    alone = gf.gradient_descent(net, X, y, **kw)
    a, b = _arrays(shared), _arrays(alone)
    assert a.keys() == b.keys() and {"int_eta", "int_mu", "int_nu", "int_lam_min_M", "int_abs_dL"} <= a.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert {k: v for k, v in shared.stats.items() if "wall" not in k} == \
        {k: v for k, v in alone.stats.items() if "wall" not in k}


def test_the_integrands_take_an_offer_only_for_the_same_unchanged_features_and_the_same_sigma_prime():
    field, y0, _ = _recorder_and_states("feature")
    core = field.core(y0)
    H = field.base.split(core)[0]
    _, r, ds = field.base._Q_and_r(H, with_ds=True)
    ds, r = ds.clone(), r.clone()
    fresh = field._integrands(H, ds, r=r)
    n = H.shape[1]
    # a marked offer (η = 7, μ = ν = 8, M = 2I, λ_min = 9): taken where H and σ′ are the ones it was formed from
    mark = (torch.full((1,), 7.0, dtype=H.dtype), torch.full((2,), 8.0, dtype=H.dtype), 2 * torch.eye(n, dtype=H.dtype),
            torch.full((1,), 9.0, dtype=H.dtype))
    field.offer_integrands(H, ds.clone(), *mark)
    got = field._integrands(H, ds, r=r)
    assert got[:4].tolist() == [7.0, 8.0, 8.0, 9.0] and float(got[5]) == pytest.approx(2 * float(r @ r))
    assert torch.equal(field._integrands(H, ds, r=r), fresh)  # (used once)
    off = ds.clone()
    off[1, 2] = torch.nextafter(off[1, 2], torch.tensor(2.0, dtype=off.dtype))  # σ′ one ulp apart
    field.offer_integrands(H, off, *mark)
    assert torch.equal(field._integrands(H, ds, r=r), fresh)
    field.offer_integrands(H, ds.clone(), *mark)
    H.add_(0.0)  # (the state written in place since the offer: its version counter moved)
    assert torch.equal(field._integrands(H, ds, r=r), fresh)
    field.offer_integrands(H.clone(), ds.clone(), *mark)  # other features of the same values
    assert torch.equal(field._integrands(H, ds, r=r), fresh)


def test_the_test_block_in_one_pass_records_what_three_passes_record(monkeypatch):
    import gflow.solve._record as record_module
    from gflow.model import _native

    net, X, y, Xt, yt = _gd_problem("tanh", "float64", n_test=40)
    calls = []
    fused = record_module.sigma_absdiff_into

    def spy(*a):
        calls.append(fused(*a))
        return calls[-1]

    monkeypatch.setattr(record_module, "sigma_absdiff_into", spy)
    kw = dict(step=0.5, steps=20, save_every=1, X_test=Xt, y_test=yt, features_at="all")
    one = [gf.gradient_descent(net, X, y, space=space, **kw) for space in ("weight", "feature")]
    assert len(calls) == 42 and all(calls) == _native.available()
    monkeypatch.setattr(record_module, "sigma_absdiff_into", lambda *a: False)
    three = [gf.gradient_descent(net, X, y, space=space, **kw) for space in ("weight", "feature")]
    for u, v in zip(one, three):
        a, b = _arrays(u), _arrays(v)
        assert a.keys() == b.keys() and {"test_output", "feature_movement_test", "H_test"} <= a.keys()
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), k
