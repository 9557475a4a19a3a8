"""The torch threads a solve runs on (gflow.solve._record.solve_threads): one for small evaluations on the CPU."""

import pytest
import torch

import gflow as gf
from gflow.solve import _record


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_a_small_solve_runs_on_one_thread_and_gives_torchs_setting_back(two_threads):
    # (with torch's 2 threads on a 2-core machine shared with two other processes the demo's flow took 38–56 s,
    # against 2.3–2.8 s on one thread)
    seen = []

    def sigma(h):  # (a custom σ: each evaluation notes the threads it runs on)
        seen.append(torch.get_num_threads())
        return torch.tanh(h)

    act = gf.Activation("spy", sigma, lambda h: 1.0 - torch.tanh(h) ** 2, lipschitz=1.0, interval=(-1.0, 1.0))
    X, y = gf.data.random_labels(n=4, d=3)
    sol = gf.simulate(gf.Network(d=3, width=8, activation=act, seed=0), X, y, t1=1.0, method="dop853")
    assert sol.stats["torch_threads"] == 1 and torch.get_num_threads() == 2
    assert seen.count(1) >= sol.stats["n_f_evals"]  # (every evaluation of the solve; the setup around it: torch's 2)
    net = gf.Network(d=3, width=8, seed=0)
    gd = gf.gradient_descent(net, X, y, steps=3, step=0.1)
    batch = gf.simulate_batch(gf.networks([0, 1], d=3, width=8), X, y, t1=0.5)
    gd_batch = gf.gradient_descent_batch(gf.networks([0, 1], d=3, width=8), X, y, steps=3, step=0.1)
    assert gd.stats["torch_threads"] == batch[1].stats["torch_threads"] == gd_batch[1].stats["torch_threads"] == 1
    assert torch.get_num_threads() == 2


def test_threads_are_given_back_when_the_solve_raises(two_threads):
    calls = []

    def sigma(h):  # (a σ that fails in the middle of the solve, on one thread)
        calls.append(torch.get_num_threads())
        if len(calls) == 30:
            raise RuntimeError("σ failed")
        return torch.tanh(h)

    act = gf.Activation("fails", sigma, lambda h: 1.0 - torch.tanh(h) ** 2, lipschitz=1.0, interval=(-1.0, 1.0))
    X, y = gf.data.random_labels(n=4, d=3)
    with pytest.raises(RuntimeError, match="σ failed"):
        gf.simulate(gf.Network(d=3, width=8, activation=act, seed=0), X, y, t1=5.0, method="dop853")
    assert calls[-1] == 1 and torch.get_num_threads() == 2
    monitor = _record.Monitor(1.0, 10, None, hint="")
    with pytest.raises(RuntimeError, match="inside"):
        with _record.guarded_solve(monitor, None, threads=1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_large_or_gpu_solves_keep_torchs_setting(two_threads):
    assert _record.solve_threads(_record.SERIAL_BELOW_FLOPS * 0.99, "cpu") == 1
    assert _record.solve_threads(_record.SERIAL_BELOW_FLOPS, "cpu") == 2
    assert _record.solve_threads(1e3, "meta") == 2  # (not the CPU: intra-op threads do not apply)


def test_threads_asked_for_are_used_and_bad_ones_are_refused_naming_the_argument(two_threads, monkeypatch):
    monkeypatch.setattr(_record.os, "cpu_count", lambda: 2)  # (threads=2 within the cores on any machine)
    X, y = gf.data.random_labels(n=4, d=3)
    net = gf.Network(d=3, width=8, seed=0)
    assert gf.simulate(net, X, y, t1=0.5, threads=2).stats["torch_threads"] == 2
    assert gf.gradient_descent(net, X, y, steps=2, step=0.1, threads=2).stats["torch_threads"] == 2
    est = gf.simulate(gf.Network(d=3, width=8, activation="relu", seed=0), X, y, t1=0.5, method="euler", step=0.05,
                      error_estimate=True, threads=2)
    assert est.stats["torch_threads"] == 2
    for bad in (0, 1.5, "2", True):
        with pytest.raises((TypeError, ValueError), match="threads"):
            gf.simulate(net, X, y, t1=0.5, threads=bad)
    with pytest.raises((TypeError, ValueError), match="threads"):
        gf.simulate_batch(gf.networks([0, 1], d=3, width=8), X, y, t1=0.5, threads=0)
    with pytest.raises((TypeError, ValueError), match="threads"):
        gf.gradient_descent_batch(gf.networks([0, 1], d=3, width=8), X, y, steps=2, step=0.1, threads=-1)


def test_more_threads_than_cores_warn(monkeypatch):
    # (an input audit: threads=1000 ran silently, 3.9 s for a run of 0.1 s)
    monkeypatch.setattr(_record.os, "cpu_count", lambda: 2)
    X, y = gf.data.random_labels(n=4, d=3)
    net = gf.Network(d=3, width=8, seed=0)
    with pytest.warns(gf.GFlowWarning, match="threads=3 is more than this machine's 2 cores"):
        sol = gf.simulate(net, X, y, t1=0.1, threads=3)
    assert sol.ok and sol.stats["torch_threads"] == 3
    with pytest.warns(gf.GFlowWarning, match="threads=5 is more than"):
        gf.gradient_descent(net, X, y, steps=2, step=0.1, threads=5)
    with pytest.warns(gf.GFlowWarning, match="threads=4 is more than"):
        gf.simulate_batch(gf.networks([0, 1], d=3, width=8), X, y, t1=0.1, threads=4)
    assert gf.simulate(net, X, y, t1=0.1, threads=3, warn=False).ok  # (warn=False: quiet)
