"""Ctrl-C (SIGINT) during a run: the run stops at its next evaluation, keeps its trajectory and its checkpoint, and
raises gf.Interrupted (a KeyboardInterrupt) with the partial Solution attached; a second Ctrl-C stops at once.

The signal is raised from inside the solve at a chosen evaluation (``signal.raise_signal``: the handler runs in the
main thread before the next bytecode), which is deterministic; one test sends a real SIGINT to a child process.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import gflow as gf
from gflow.solve import _record
from gflow.solve.ode import FixedGrid, _fixed_grid

from test_checkpoint import assert_same_run


@pytest.fixture(scope="module")
def problem():
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    return net, X, y


@pytest.fixture(scope="module")
def relu_problem():
    X, y = gf.data.random_labels(n=6, d=4, seed=1)
    return gf.Network(d=4, width=16, activation="relu", seed=1), X, y


@contextlib.contextmanager
def sigint_at_eval(k: int, times: int = 1):
    """Raise SIGINT ``times`` times at the k-th evaluation of any Monitor (as Ctrl-C pressed at that moment)."""
    original = _record.Monitor.on_eval
    count = [0]

    def on_eval(self, dy=None):
        count[0] += 1
        if count[0] == k:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return original(self, dy)

    _record.Monitor.on_eval = on_eval
    try:
        yield count
    finally:
        _record.Monitor.on_eval = original


def test_python_handler_is_in_place_for_these_tests():
    # (the tests below rely on it: stop_on_sigint only replaces Python's own handler)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert threading.current_thread() is threading.main_thread()


METHODS = [("dop853", {}), ("rk4", {"step": 0.05}), ("euler", {"step": 0.05}), ("DOP853", {}), ("dopri5", {}),
           ("exprk4", {}), ("dop853+exprk4", {})]


@pytest.mark.parametrize("method,kw", METHODS, ids=[m for m, _ in METHODS])
def test_ctrl_c_stops_a_flow_and_raises_interrupted_with_its_trajectory(problem, method, kw):
    net, X, y = problem
    with sigint_at_eval(40), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=200.0, method=method, saveat=np.linspace(0, 200, 201), **kw)
    sol = info.value.solution
    assert isinstance(info.value, KeyboardInterrupt)
    assert sol.status == "interrupted" and not sol.ok
    assert f"the trajectory is kept to t = {sol.t[-1]:.6g} (of t1 = 200)" in sol.message  # (its last row's t)
    assert "interrupted by Ctrl-C (SIGINT) after " in sol.message and "checkpoint" not in sol.message
    assert 0 < sol.t[-1] < 200.0 and len(sol.t) >= 2  # the last accepted state is kept
    assert np.all(np.isfinite(sol.loss)) and np.all(np.diff(sol.loss) <= 1e-12 * sol.loss[0])
    assert sol.H is not None and sol.H.shape[0] >= 1
    assert sol.stats["n_f_evals"] == 39  # stopped at the evaluation after the Ctrl-C, which is not run nor counted
    text = str(info.value)
    assert text.startswith("gf.simulate interrupted by Ctrl-C") and ".solution" in text
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_the_trajectory_before_the_ctrl_c_is_the_uninterrupted_runs(problem):
    net, X, y = problem
    grid = np.linspace(0, 50, 51)
    full = gf.simulate(net, X, y, t1=50.0, saveat=grid, method="rk4", step=0.05)
    with sigint_at_eval(4 * 300 + 2), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=50.0, saveat=grid, method="rk4", step=0.05)
    part = info.value.solution
    k = np.searchsorted(full.t, part.t[-1])
    assert k > 5 and np.array_equal(part.t[:-1], full.t[:len(part.t) - 1])
    assert np.array_equal(part.loss[:-1], full.loss[:len(part.t) - 1])


@pytest.mark.parametrize("method", ["filippov", "sliding"])
def test_ctrl_c_stops_a_relu_flow(relu_problem, method):
    net, X, y = relu_problem
    kw = {"step": 0.01} if method == "sliding" else {}
    with sigint_at_eval(30), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=100.0, method=method, **kw)
    sol = info.value.solution
    assert sol.status == "interrupted" and 0 < sol.t[-1] < 100.0


def test_ctrl_c_stops_gradient_descent_at_a_whole_step(problem):
    net, X, y = problem
    full = gf.gradient_descent(net, X, y, step=0.1, steps=2000, save_every=100)
    with sigint_at_eval(1234), pytest.raises(gf.Interrupted) as info:
        gf.gradient_descent(net, X, y, step=0.1, steps=2000, save_every=100)
    sol = info.value.solution
    assert sol.status == "interrupted" and sol.stats["n_steps"] == 1233
    # the saved rows, then the last step taken (between saved steps), as the uninterrupted run has them
    assert np.array_equal(sol.t[:-1], full.t[:13]) and sol.t[-1] == pytest.approx(123.3)
    assert np.array_equal(sol.loss[:-1], full.loss[:13])
    assert str(info.value).startswith("gf.gradient_descent interrupted")


@pytest.mark.parametrize("kind", ["flow", "gd"])
def test_an_interrupted_run_with_a_checkpoint_resumes_bit_for_bit(problem, tmp_path, kind):
    net, X, y = problem
    ck = tmp_path / "run.ckpt"
    if kind == "flow":
        def run(**kw):
            return gf.simulate(net, X, y, t1=40.0, saveat=np.linspace(0, 40, 81), method="dop853", rtol=1e-9, **kw)
    else:
        def run(**kw):
            return gf.gradient_descent(net, X, y, step=0.1, steps=800, save_every=10, **kw)
    full = run()
    with sigint_at_eval(300), pytest.raises(gf.Interrupted) as info:
        run(checkpoint=ck, checkpoint_every=1e9)  # (no periodic checkpoint: the one the Ctrl-C wrote)
    sol = info.value.solution
    assert sol.status == "interrupted" and ck.exists()
    assert f"the checkpoint {str(ck)!r} holds the run there: the same call resumes it" in sol.message
    resumed = run(checkpoint=ck)
    assert resumed.ok and resumed.stats["resumed"] and not ck.exists()
    assert_same_run(resumed, full, exact=True)


def test_ctrl_c_stops_a_batch_and_every_seed_keeps_its_trajectory(problem):
    _, X, y = problem
    nets = gf.networks([0, 1, 2], d=5, width=16, activation="tanh")
    with sigint_at_eval(60), pytest.raises(gf.Interrupted) as info:
        gf.simulate_batch(nets, X, y, t1=100.0, method="dop853")
    sols = info.value.solution
    assert isinstance(sols, list) and len(sols) == 3
    assert all(s.status == "interrupted" and 0 < s.t[-1] < 100 for s in sols)
    assert "these Solutions" in str(info.value)
    with sigint_at_eval(500), pytest.raises(gf.Interrupted) as info:
        gf.gradient_descent_batch(nets, X, y, step=0.1, steps=2000, save_every=100)
    sols = info.value.solution
    assert [s.status for s in sols] == ["interrupted"] * 3 and all(s.stats["n_steps"] == 499 for s in sols)


def test_an_interrupted_gd_batch_keeps_its_checkpoint_and_resumes_bit_for_bit(problem, tmp_path):
    _, X, y = problem
    nets = gf.networks([0, 1], d=5, width=16, activation="tanh")
    ck = tmp_path / "batch.ckpt"
    full = gf.gradient_descent_batch(nets, X, y, step=0.1, steps=600, save_every=20)
    with sigint_at_eval(333), pytest.raises(gf.Interrupted):
        gf.gradient_descent_batch(nets, X, y, step=0.1, steps=600, save_every=20, checkpoint=ck,
                                  checkpoint_every=1e9)
    assert ck.exists()  # (the batch's checkpoint was deleted as "done" when no seed said time_budget)
    resumed = gf.gradient_descent_batch(nets, X, y, step=0.1, steps=600, save_every=20, checkpoint=ck)
    for a, b in zip(resumed, full):
        assert_same_run(a, b, exact=True)


def test_a_second_ctrl_c_interrupts_at_once(problem):
    net, X, y = problem
    with sigint_at_eval(20, times=2), pytest.raises(KeyboardInterrupt) as info:
        gf.simulate(net, X, y, t1=100.0, method="dop853")
    assert type(info.value) is KeyboardInterrupt  # not gf.Interrupted: no Solution, at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_as_the_run_finishes_is_not_lost(problem, monkeypatch):
    net, X, y = problem
    original = _record.Recorder.close

    def close(self):  # after the last evaluation: nothing would look at the flag again
        signal.raise_signal(signal.SIGINT)
        return original(self)

    monkeypatch.setattr(_record.Recorder, "close", close)
    with pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=5.0, method="dop853")
    sol = info.value.solution
    assert sol.ok and sol.t[-1] == 5.0
    assert str(info.value).startswith("Ctrl-C arrived as gf.simulate finished [success]")


def test_a_handler_the_user_installed_is_left_alone(problem):
    net, X, y = problem
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with sigint_at_eval(20):
            sol = gf.simulate(net, X, y, t1=20.0, method="dop853")
        assert sol.ok and calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_run_in_a_worker_thread_installs_no_handler(problem):
    net, X, y = problem
    out = {}

    def work():
        out["sol"] = gf.simulate(net, X, y, t1=5.0, method="dop853")

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert out["sol"].ok and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interrupted_pickles_with_its_solution_and_an_interrupted_file_loads(problem, tmp_path):
    net, X, y = problem
    with sigint_at_eval(30), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=100.0, method="dop853")
    back = pickle.loads(pickle.dumps(info.value))
    assert type(back) is gf.Interrupted and str(back) == str(info.value)
    assert back.solution.status == "interrupted" and np.array_equal(back.solution.loss, info.value.solution.loss)
    path = info.value.solution.save(tmp_path / "part.nc")
    loaded = gf.load(path)
    assert loaded.status == "interrupted" and "interrupted" in gf.STATUSES
    cert = gf.certify(loaded)
    assert not cert.ok and "NOT CERTIFIED" in str(cert)


def test_the_cli_saves_the_partial_run_and_exits_130(tmp_path, capsys):
    from gflow.cli import EXIT_INTERRUPTED, main

    out = tmp_path / "run.nc"
    with sigint_at_eval(50):
        rc = main(["simulate", "--d", "5", "--width", "16", "--n", "8", "--t1", "500", "--out", str(out)])
    assert rc == EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert "gflow: interrupted: interrupted by Ctrl-C (SIGINT) after " in captured.err
    assert gf.load(out).status == "interrupted"


def test_a_real_sigint_from_outside_stops_a_run_in_a_child_process(tmp_path):
    script = textwrap.dedent("""
        import sys
        import gflow as gf
        from gflow.solve import _record
        original, first = _record.Monitor.on_eval, [True]
        def on_eval(self, dy=None):
            if first[0]:
                first[0] = False
                print("running", flush=True)
            return original(self, dy)
        _record.Monitor.on_eval = on_eval
        X, y = gf.data.random_labels(n=8, d=5, seed=0)
        net = gf.Network(d=5, width=16, activation="tanh", seed=0)
        try:
            gf.simulate(net, X, y, t1=1e9, method="rk4", step=1e-3, max_steps=10**13)
        except gf.Interrupted as stop:
            print("interrupted", stop.solution.status, stop.solution.t[-1] > 0, flush=True)
            sys.exit(3)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert out.strip() == "interrupted interrupted True"
    assert "gflow: Ctrl-C: stopping at the next step" in err


def test_a_fixed_step_run_of_1e7_steps_does_not_build_its_step_times(problem):
    # (the native engine held all its step times before its first step: 80 MB here, 8 GB for 1e9 steps)
    net, X, y = problem
    tracemalloc.start()
    try:
        sol = gf.simulate(net, X, y, t1=1e4, method="rk4", step=1e-3, max_steps=10**8, max_wall_time=0.3,
                          warn=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sol.status == "time_budget" and peak < 20e6


def test_the_lazy_fixed_grid_has_the_same_times_as_the_full_one():
    rng = np.random.default_rng(0)
    for trial in range(400):
        span = rng.choice([1.0, 10.0, 1e3])
        t = np.unique(np.concatenate([[0.0], np.sort(rng.uniform(0, span, rng.integers(1, 6)))]))
        if trial % 3 == 0:
            t = np.unique(np.round(t, 1))
        if len(t) < 2:
            continue
        h = float(rng.choice([0.1, 0.01, 0.3, 1 / 3, 0.25, 7.0])) * (t[-1] / 10 if trial % 2 else 1.0)
        ref, lazy = _fixed_grid(t, h), FixedGrid(t, h)
        assert len(lazy) == len(ref)
        assert np.array_equal([lazy[i] for i in range(len(lazy))], ref)
        assert all(lazy[int(i)] == ref[int(i)] for i in rng.integers(0, len(ref), 20))  # any order
    with pytest.raises(IndexError):
        FixedGrid(np.array([0.0, 1.0]), 0.1)[11]


def test_ctrl_c_in_a_step_halving_estimate_raises_interrupted(relu_problem):
    net, X, y = relu_problem
    with sigint_at_eval(50), pytest.raises(gf.Interrupted) as info:
        gf.simulate_nonsmooth(net, X, y, t1=20.0, step=0.05)
    assert info.value.solution.status == "interrupted" and info.value.solution.t[-1] < 20.0


def test_ctrl_c_in_the_second_solve_of_a_filippov_estimate_keeps_the_complete_first(relu_problem):
    # (a review: the second, looser solve's 2-step partial came back, and the complete first was dropped)
    net, X, y = relu_problem
    grid = np.linspace(0, 5, 11)
    full = gf.simulate(net, X, y, t1=5.0, saveat=grid, method="filippov", rtol=1e-7, error_estimate=True)
    first = full.stats["n_f_evals_returned"]
    with sigint_at_eval(first + 20), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=5.0, saveat=grid, method="filippov", rtol=1e-7, error_estimate=True)
    sol = info.value.solution
    assert sol.status == "interrupted" and "stopped the second solve for the error estimate" in sol.message
    assert np.array_equal(sol.t, full.t) and np.array_equal(sol.loss, full.loss)  # the complete first solve
    assert np.isinf(sol.error_estimate[-1]) and sol.error_estimate[0] == 0.0


@pytest.mark.parametrize("method", ["filippov", "auto"])
def test_ctrl_c_in_the_first_solve_of_a_filippov_estimate_keeps_an_estimate_of_inf(relu_problem, method):
    # (an audit: the partial run came back with error_estimate None and no estimate in its configuration, where a
    # time budget, or a Ctrl-C in the second solve, gives an estimate that is inf where nothing was estimated)
    net, X, y = relu_problem
    with sigint_at_eval(40), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=5.0, saveat=np.linspace(0, 5, 11), method=method, rtol=1e-7, error_estimate=True)
    sol = info.value.solution
    assert sol.status == "interrupted" and 0 < sol.t[-1] < 5.0
    assert sol.error_estimate.shape == sol.t.shape and sol.error_estimate[0] == 0.0
    assert np.all(np.isinf(sol.error_estimate[1:])) and len(sol.t) > 1
    assert sol.config["solver"]["error_estimate"]["looseness_tried"] == []
    assert "second solve for the error estimate did not start" in sol.message
    with sigint_as_solve_ends(1), pytest.raises(gf.Interrupted) as info:  # as the first solve finished: it is whole
        gf.simulate(net, X, y, t1=5.0, method=method, rtol=1e-7, error_estimate=True)
    sol = info.value.solution
    assert sol.status == "interrupted" and sol.t[-1] == 5.0 and np.all(np.isinf(sol.error_estimate[1:]))
    assert "second solve for the error estimate did not start" in sol.message


def test_ctrl_c_in_a_finer_step_halving_solve_keeps_the_completed_ones(relu_problem):
    net, X, y = relu_problem
    with sigint_at_eval(12000), pytest.raises(gf.Interrupted) as info:  # (in the 5th solve, step 0.003125)
        # (max_steps so large that the halvings' projection, which stops an rtol out of reach at once, lets them go on)
        gf.simulate_nonsmooth(net, X, y, t1=20.0, step=0.05, rtol=1e-12, max_steps=10**13)
    sol = info.value.solution
    assert sol.status == "interrupted"
    assert info.value.args[0].startswith("gf.simulate_nonsmooth [interrupted]: the solve with step")
    assert sol.t[-1] == 20.0 and np.all(np.isfinite(sol.loss))  # the finest completed solve, whole
    assert sol.config["solver"]["error_estimate"]["steps"][:3] == [0.05, 0.025, 0.0125]


@pytest.mark.parametrize("k", [27, 29, 31])
def test_a_stop_inside_dop853s_first_power_iteration_resumes_bit_for_bit(tmp_path, k):
    # (a review: the checkpoint held a half-finished power iteration, and the resumed run took 55 steps, not 59)
    rng = np.random.default_rng(198)
    X, y = rng.standard_normal((10, 8)), rng.standard_normal(10)
    net = gf.Network(8, width=64, activation="linear", embedding="quadratic", scaling="ntk", c_hat=2.0, seed=80)

    def run(**kw):
        return gf.simulate(net, X, y, 20.0, saveat=np.linspace(0.0, 20.0, 401), method="dop853", rtol=1e-10,
                           atol=1e-12, integrals=False, **kw)

    full = run()
    ck = tmp_path / "run.ckpt"
    with sigint_at_eval(k), pytest.raises(gf.Interrupted):
        run(checkpoint=ck, checkpoint_every=1e9)
    resumed = run(checkpoint=ck)
    assert resumed.stats["n_accepted"] == full.stats["n_accepted"]
    assert np.array_equal(resumed.loss, full.loss) and np.array_equal(resumed.W, full.W)


@contextlib.contextmanager
def sigint_as_solve_ends(which: int):
    """SIGINT as the ``which``-th solve's recording closes: after its last evaluation (the run has finished)."""
    original = _record.Recorder.close
    count = [0]

    def close(self):
        count[0] += 1
        if count[0] == which:
            signal.raise_signal(signal.SIGINT)
        return original(self)

    _record.Recorder.close = close
    try:
        yield
    finally:
        _record.Recorder.close = original


def test_a_ctrl_c_as_a_compound_runs_inner_solve_finishes_is_not_lost(relu_problem):
    # (a review: step halving and the filippov estimate took the finished inner solve and went on)
    net, X, y = relu_problem
    with sigint_as_solve_ends(1), pytest.raises(gf.Interrupted) as info:
        gf.simulate_nonsmooth(net, X, y, t1=5.0, step=0.05)
    sol = info.value.solution
    assert sol.status == "interrupted" and "arrived as the solve with step 0.05 finished" in sol.message
    assert sol.t[-1] == 5.0 and sol.config["solver"]["error_estimate"]["steps"] == [0.05]
    with sigint_as_solve_ends(2), pytest.raises(gf.Interrupted) as info:
        gf.simulate(net, X, y, t1=5.0, method="filippov", error_estimate=True)
    sol = info.value.solution
    assert sol.ok and np.all(np.isfinite(sol.error_estimate))  # both solves complete: the estimate too
    assert str(info.value).startswith("gf.simulate [success]")


def test_a_sweep_run_that_finished_as_ctrl_c_arrived_is_recorded(tmp_path):
    # (a review: its Solution was dropped after its checkpoint was deleted: the whole run was computed again)
    kw = dict(network={"d": 3, "width": 8}, data={"generator": "random_labels", "n": 5},
              solver={"kind": "simulate", "t1": 2.0, "method": "dop853"}, grid={"network.c_hat": [1.0, 2.0]},
              seeds=1, store=tmp_path / "st")
    with sigint_as_solve_ends(1), pytest.raises(gf.Interrupted):
        gf.sweep(**kw)
    assert len(list((tmp_path / "st" / "runs").glob("*.nc"))) == 1
    ds = gf.sweep(**kw)  # the other run only
    assert sorted(ds.status.values.tolist()) == ["success", "success"]


@pytest.mark.parametrize("kind", ("gd", "gd_batch", "euler", "euler_batch"))
def test_a_run_interrupted_and_resumed_counts_the_evaluations_of_the_uninterrupted_one(problem, tmp_path, kind):
    # (an audit: the evaluation the Ctrl-C refused was counted, checkpointed and counted again: 3001 for 3000)
    net, X, y = problem
    nets = gf.networks([0, 1], d=5, width=16, activation="tanh")
    batch = kind.endswith("_batch")
    if kind.startswith("gd"):
        fn, kw = (gf.gradient_descent_batch if batch else gf.gradient_descent), dict(step=0.1, steps=300, save_every=7)
    else:
        fn, kw = (gf.simulate_batch if batch else gf.simulate), dict(t1=20.0, method="euler", step=0.1)
    arg = nets if batch else net
    full = fn(arg, X, y, **kw)
    ck = tmp_path / "run.ckpt"
    with sigint_at_eval(123), pytest.raises(gf.Interrupted):
        fn(arg, X, y, checkpoint=ck, checkpoint_every=1e9, **kw)
    resumed = fn(arg, X, y, checkpoint=ck, **kw)
    count = [s.stats["n_f_evals"] for s in (resumed if batch else [resumed])]
    assert count == [s.stats["n_f_evals"] for s in (full if batch else [full])]
    assert count[0] == (300 if kind.startswith("gd") else 200)  # (one evaluation per step)
