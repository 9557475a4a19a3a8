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
