"""Checkpoint/resume of long single runs (gflow.solve.checkpoint): continuity, fingerprints, atomic writes.

A run stopped early (a step limit, or a wall-time budget that runs out at a chosen evaluation) and resumed from
its checkpoint must give the same trajectory as an uninterrupted run: bit for bit for fixed-step methods and
GD, and here also for the adaptive engine (its controller state is part of the checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.solve import _record
from gflow.solve.checkpoint import atomic_save, load

ARRAYS = ("t", "loss", "residual", "output", "H", "W_final", "feature_t", "eta", "mu", "lam_min_M", "dL")


@pytest.fixture(scope="module")
def problem():
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    return net, X, y


@contextlib.contextmanager
def budget_runs_out_at_eval(k: int):
    """Emulate a wall-time budget that runs out at the k-th evaluation (deterministic, unlike a real clock)."""
    original = _record.Monitor.on_eval
    count = [0]

    def on_eval(self, dy=None):
        count[0] += 1
        if count[0] >= k:
            raise _record.Abort("time_budget", "the wall-time budget max_wall_time ran out (emulated); raise "
                                "max_wall_time")
        return original(self, dy)

    _record.Monitor.on_eval = on_eval
    try:
        yield
    finally:
        _record.Monitor.on_eval = original


def assert_same_run(a: gf.Solution, b: gf.Solution, exact: bool = True) -> None:
    for name in ARRAYS + ("int_eta", "int_abs_dL"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None, name
            continue
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12, err_msg=name)


class Killed(BaseException):
    """A process killed (SIGKILL: no final checkpoint) right after a checkpoint was written."""


def killed_after_checkpoint(monkeypatch, n: int, run) -> None:
    """Call ``run()`` with a checkpoint after every step, dying right after the n-th is written."""
    from gflow.solve import checkpoint as ck

    real, saves = ck.Checkpointer.save, []

    def save_then_die(self, loop):
        real(self, loop)
        saves.append(1)
        if len(saves) == n:
            raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(ck.Checkpointer, "due", lambda self: True)
        mp.setattr(ck.Checkpointer, "save", save_then_die)
        with pytest.raises(Killed):
            run()


@pytest.mark.parametrize("method, kw, stop_at", [
    ("rk4", {"step": 0.1}, 57),  # mid-step: a stage evaluation
    ("euler", {"step": 0.05}, 31),
    ("dop853", {"rtol": 1e-8, "atol": 1e-10}, 200),  # inside a step attempt
    ("dopri5", {"rtol": 1e-8, "atol": 1e-10}, 101),
])
def test_a_stopped_and_resumed_flow_equals_the_uninterrupted_run_bit_for_bit(problem, tmp_path, method, kw, stop_at):
    net, X, y = problem
    args = dict(t1=20.0, method=method, **kw)
    ref = gf.simulate(net, X, y, **args)
    assert ref.ok
    path = tmp_path / "run.ckpt"
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        first = gf.simulate(net, X, y, checkpoint=path, **args)
    assert first.status == "time_budget" and 0 < first.t[-1] < 20.0
    assert path.exists(), "a run that stops early keeps its checkpoint"
    resumed = gf.simulate(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"] and not first.stats["resumed"]
    assert not path.exists(), "the checkpoint is deleted after success"
    assert_same_run(resumed, ref, exact=True)
    if method in ("dop853", "dopri5"):
        assert resumed.stats["n_accepted"] == ref.stats["n_accepted"]


def test_a_flow_stopped_by_max_steps_resumes_with_a_larger_limit(problem, tmp_path):
    net, X, y = problem
    args = dict(t1=50.0, method="dop853", rtol=1e-9, atol=1e-11)
    ref = gf.simulate(net, X, y, **args)
    path = tmp_path / "run.ckpt"
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        first = gf.simulate(net, X, y, checkpoint=path, max_steps=10, **args)
    assert first.status == "max_steps" and path.exists()
    again = gf.simulate(net, X, y, checkpoint=path, max_steps=100_000, max_wall_time=600.0, keep_checkpoint=True,
                        **args)
    assert again.ok and path.exists(), "keep_checkpoint keeps the file after success"
    assert_same_run(again, ref, exact=True)
    assert again.stats["n_steps"] == ref.stats["n_steps"] and again.stats["n_f_evals"] == ref.stats["n_f_evals"]
    assert load(path)["loop"]["t"] == 50.0


@pytest.mark.parametrize("case", ["euler_diverged", "max_steps", "stalled"])
def test_a_failed_checkpointed_flow_repeated_by_the_same_call_returns_the_same_run(tmp_path, case):
    # regression: the resumed run lost the last accepted state, which the failed run ends with (a diverged Euler
    # run: t[-1] = 9.6 instead of 10.2), and a run stopped by max_steps or a stall took more steps each time it was
    # repeated (max_steps=5: n_steps 6, at another t, with the message "max_steps=5 steps were taken"; stalled:
    # 250 accepted steps instead of 200)
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    if case == "euler_diverged":  # (linear σ, ĉ = 1.5: 2/λ_max(M₀) = 0.36, so Euler at 0.6 diverges)
        net = gf.Network(d=6, width=16, activation="linear", seed=1, c_hat=1.5)
        args = dict(t1=240.0, method="euler", step=0.6, checkpoint_every=1e-9)
    elif case == "max_steps":
        net = gf.Network(d=6, width=16, activation="tanh", seed=0)
        args = dict(t1=50.0, method="dop853", max_steps=5)
    else:  # (dop853's steps collapse at the ReLU kink)
        X, y = gf.data.random_labels(n=6, d=4, seed=0)
        net = gf.Network(d=4, width=16, activation="relu", seed=0)
        args = dict(t1=5.0, method="dop853", max_steps=2000)
    path = tmp_path / "run.ckpt"
    first = gf.simulate(net, X, y, checkpoint=path, warn=False, **args)
    assert first.status == {"euler_diverged": "diverged"}.get(case, case) and path.exists()
    again = gf.simulate(net, X, y, checkpoint=path, warn=False, **args)
    assert again.stats["resumed"] and again.status == first.status and again.message == first.message
    assert_same_run(again, first, exact=True)
    for k in ("n_steps", "n_accepted", "n_rejected"):
        assert again.stats[k] == first.stats[k], k
    if case == "euler_diverged":
        ref = gf.simulate(net, X, y, warn=False, **{k: v for k, v in args.items() if k != "checkpoint_every"})
        assert ref.t[-1] == pytest.approx(10.2)
        assert_same_run(again, ref, exact=True)


def test_a_stopped_and_resumed_gradient_descent_equals_the_uninterrupted_run_bit_for_bit(problem, tmp_path):
    net, X, y = problem
    args = dict(step=0.5, steps=300, save_every=7, features_at=[0.0, 35.0, 150.0])
    ref = gf.gradient_descent(net, X, y, **args)
    path = tmp_path / "gd.ckpt"
    with budget_runs_out_at_eval(123), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        first = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert first.status == "time_budget" and path.exists()
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert resumed.ok and not path.exists()
    assert_same_run(resumed, ref, exact=True)
    assert resumed.stats["n_steps"] == 300


def test_gradient_descent_killed_right_after_a_checkpoint_at_a_saved_step_resumes_every_row(problem, tmp_path,
                                                                                             monkeypatch):
    # regression: the checkpoint of a saved step was written before the step's row was recorded; a run killed then
    # (SIGKILL: no final checkpoint) resumed past the step and lost the row — 3 000 saved times instead of 3 001
    net, X, y = problem
    args = dict(step=0.5, steps=40, save_every=1)
    ref = gf.gradient_descent(net, X, y, **args)
    path = tmp_path / "gd.ckpt"
    killed_after_checkpoint(monkeypatch, 5, lambda: gf.gradient_descent(net, X, y, checkpoint=path, **args))
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)


def test_periodic_checkpoints_are_written_while_the_run_goes_on(problem, tmp_path, monkeypatch):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    path = tmp_path / "run.ckpt"
    times = []
    original = ck.atomic_save
    monkeypatch.setattr(ck, "atomic_save",
                        lambda obj, p: ("loop" in obj and times.append(obj["loop"]["t"]), original(obj, p)))
    sol = gf.simulate(net, X, y, saveat=np.linspace(0.0, 2.0, 5), method="rk4", step=0.1, checkpoint=path,
                      checkpoint_every=1e-9, keep_checkpoint=True)
    assert sol.ok
    # after every one of the 20 steps (checkpoint_every is tiny), and the finished run (keep_checkpoint)
    assert len(times) == 21 and times == sorted(times) and times[0] == pytest.approx(0.1)
    saved = load(path)
    assert saved["loop"]["t"] == 2.0 and saved["monitor"]["n_accepted"] == 20
    np.testing.assert_array_equal(saved["recorder"]["rows"]["loss"], sol.loss)


def test_a_checkpoint_of_a_different_run_is_refused_naming_what_differs(problem, tmp_path):
    net, X, y = problem
    path = tmp_path / "run.ckpt"
    with pytest.warns(gf.GFlowWarning):
        gf.simulate(net, X, y, t1=50.0, method="dop853", rtol=1e-8, max_steps=5, checkpoint=path)
    with pytest.raises(ValueError, match=r"different run.*'rtol' \(1e-08 in the checkpoint vs 1e-06 now\)"):
        gf.simulate(net, X, y, t1=50.0, method="dop853", rtol=1e-6, checkpoint=path)
    with pytest.raises(ValueError, match=r"different run.*data"):
        gf.simulate(net, X, 2 * y, t1=50.0, method="dop853", rtol=1e-8, checkpoint=path)
    other = gf.Network(d=5, width=16, activation="tanh", seed=1)
    with pytest.raises(ValueError, match=r"network setting 'seed'"):
        gf.simulate(other, X, y, t1=50.0, method="dop853", rtol=1e-8, checkpoint=path)
    with pytest.raises(ValueError, match=r"kind of run"):
        gf.gradient_descent(net, X, y, steps=10, checkpoint=path)


def test_checkpoint_needs_the_native_engine_and_a_file_path(problem, tmp_path):
    net, X, y = problem
    with pytest.raises(ValueError, match=r"checkpoint/resume needs gflow's native engine.*'torchdiffeq.dopri5'"):
        gf.simulate(net, X, y, t1=1.0, method="torchdiffeq.dopri5", checkpoint=tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match=r"native engine.*'DOP853'.*method='dop853'"):
        gf.simulate(net, X, y, t1=1.0, method="DOP853", checkpoint=tmp_path / "x.ckpt")
    # a ReLU run is not told to use dop853/rk4 (they stall or lose their order at the kink)
    relu = gf.Network(d=X.shape[1], width=8, activation="relu", embedding=gf.RandomFeatures(D=16), seed=0)
    with pytest.raises(ValueError, match=r"'sliding'; for a ReLU-type activation, bound the run with max_wall_time"):
        gf.simulate(relu, X, y, t1=1.0, method="sliding", step=0.1, checkpoint=tmp_path / "x.ckpt")
    with pytest.raises(TypeError, match=r"checkpoint must be a file path"):
        gf.simulate(net, X, y, t1=1.0, checkpoint=3)
    with pytest.raises(ValueError, match=r"checkpoint_every must be > 0"):
        gf.simulate(net, X, y, t1=1.0, checkpoint=tmp_path / "x.ckpt", checkpoint_every=0.0)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"could not be read as a gflow checkpoint"):
        gf.simulate(net, X, y, t1=1.0, checkpoint=junk)


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from gflow.solve.checkpoint import atomic_save
    path = Path(sys.argv[1])
    big = np.arange(4_000_000, dtype=np.float64)  # 32 MB per write, so a kill lands mid-write
    k = 0
    print("ready", flush=True)
    while True:
        k += 1
        atomic_save({"format": 1, "k": k, "payload": big + k}, path)
""")


def test_a_writer_killed_with_sigkill_leaves_the_old_or_the_new_checkpoint_never_a_torn_one(tmp_path):
    path = tmp_path / "atomic.ckpt"
    atomic_save({"format": 1, "k": 0, "payload": np.arange(4_000_000, dtype=np.float64)}, path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        data = load(path)
        k = data["k"]
        np.testing.assert_array_equal(data["payload"], np.arange(4_000_000, dtype=np.float64) + k)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(name.endswith(".tmp") for name in leftovers)  # only temporary files of killed writes remain


def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_the_run(problem, tmp_path):
    # it failed at the first checkpoint (a minute in by default) with a bare OSError, and the work was lost
    net, X, y = problem
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"checkpoint '.*a_file/run.ckpt' cannot be written there"):
        gf.gradient_descent(net, X, y, steps=5, checkpoint=blocker / "run.ckpt")
    with pytest.raises(ValueError, match=r"cannot be written there"):
        gf.simulate(net, X, y, t1=1.0, method="dop853", checkpoint=blocker / "run.ckpt")


def test_a_checkpoint_that_fails_mid_run_warns_once_and_the_run_goes_on(problem, tmp_path, monkeypatch):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    ref = gf.gradient_descent(net, X, y, step=0.5, steps=30, save_every=3)

    def disk_full(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    monkeypatch.setattr(ck, "atomic_save", disk_full)
    with pytest.warns(gf.GFlowWarning, match=r"could not be written.*No space left.*the run goes on") as rec:
        sol = gf.gradient_descent(net, X, y, step=0.5, steps=30, save_every=3, checkpoint=tmp_path / "gd.ckpt")
    assert sol.ok and len([w for w in rec if "could not be written" in str(w.message)]) == 1
    assert_same_run(sol, ref, exact=True)


def test_a_resumed_run_reports_the_wall_time_of_all_its_segments(problem, tmp_path):
    # stats["wall_time"] was the last segment's only (a sweep's wall_time column understated resumed runs)
    net, X, y = problem
    args = dict(step=0.5, steps=300, save_every=7)
    path = tmp_path / "gd.ckpt"
    with budget_runs_out_at_eval(123), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        first = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    data = load(path)
    assert 0.0 < data["monitor"]["wall"] < 60.0
    data["monitor"]["wall"] = 1000.0  # as if the first segment had taken 1 000 s
    atomic_save(data, path)
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert resumed.ok and 1000.0 < resumed.stats["wall_time"] < 1060.0
    assert first.stats["wall_time"] < 60.0


def _count_writes(monkeypatch):
    """Record (file name, bytes) of every checkpoint write."""
    from gflow.solve import checkpoint as ck

    writes, real = [], ck.atomic_save

    def counted(obj, path):
        real(obj, path)
        rows = obj["end"]["rows.t"] - obj["start"].get("rows.t", 0) if "entries" in obj else 0
        writes.append((Path(path).name, Path(path).stat().st_size, rows))

    monkeypatch.setattr(ck, "atomic_save", counted)
    return writes


def test_checkpoints_append_what_was_recorded_since_the_last_one_instead_of_rewriting_the_history(
        problem, tmp_path, monkeypatch):
    # every checkpoint rewrote the whole history (quadratic over a run: 20 000 GD steps with a checkpoint every
    # 0.05 s wrote 5.4 GB and took 8.7× the run's time); segments merge like a binary counter, so each row is
    # written O(log N) times and O(log N) segment files exist at any time
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    n_steps = 512
    args = dict(step=0.5, steps=n_steps, save_every=1)
    ref = gf.gradient_descent(net, X, y, **args)
    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    writes = _count_writes(monkeypatch)
    path = tmp_path / "gd.ckpt"
    sol = gf.gradient_descent(net, X, y, checkpoint=path, keep_checkpoint=True, **args)
    assert sol.ok
    assert_same_run(sol, ref, exact=True)
    files = ck.checkpoint_files(path)
    segs = [q for q in files if q != path]
    assert files[0] == path and 1 <= len(segs) <= 3, [q.name for q in files]  # 513 rows: 512 + 1 (binary)
    rows_written = sum(r for _, _, r in writes)
    assert n_steps + 1 <= rows_written <= (np.log2(n_steps) + 1) * (n_steps + 1), rows_written  # (old: ≈ 256×)
    final = sum(q.stat().st_size for q in files)
    written = sum(b for _, b, _ in writes)  # with every file's fixed overhead, which weighs at 8 points
    assert written <= 32 * final, (written, final)  # (the old single file: 300× here)
    # the history assembled from the segments is the run's
    saved = load(path)
    np.testing.assert_array_equal(saved["recorder"]["rows"]["loss"], sol.loss)
    np.testing.assert_array_equal(np.stack(saved["recorder"]["rows"]["residual"]), sol.residual)
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)  # a kept, finished run resumes at its end
    assert resumed.ok and resumed.stats["resumed"] and not ck.checkpoint_files(path)
    assert_same_run(resumed, ref, exact=True)


def test_a_run_killed_between_a_segment_and_the_checkpoint_file_resumes_bit_for_bit(problem, tmp_path,
                                                                                    monkeypatch):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(t1=6.0, saveat=np.linspace(0.0, 6.0, 61), method="rk4", step=0.05, features_at=[0.0, 2.0, 6.0])
    ref = gf.simulate(net, X, y, **args)
    path = tmp_path / "run.ckpt"
    real, n_segments = ck.atomic_save, []

    def die_before_the_7th_checkpoint_file(obj, p):
        if "entries" in obj:
            n_segments.append(1)
        elif len(n_segments) == 7:
            raise Killed  # the 7th segment is on disk, the checkpoint file still lists the old ones
        real(obj, p)

    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    monkeypatch.setattr(ck, "atomic_save", die_before_the_7th_checkpoint_file)
    with pytest.raises(Killed):
        gf.simulate(net, X, y, checkpoint=path, **args)
    monkeypatch.setattr(ck, "atomic_save", real)
    listed = {ck.segment_path(path, s["index"]) for s in load(path)["segments"]}
    assert set(ck.checkpoint_files(path)[1:]) - listed, "an orphan segment is left by the kill"
    resumed = gf.simulate(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)
    assert not ck.checkpoint_files(path), "the checkpoint, its segments and the orphan are deleted after success"


def test_a_checkpoint_of_the_single_file_format_still_resumes(problem, tmp_path):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(step=0.5, steps=300, save_every=7, features_at=[0.0, 35.0, 150.0])
    ref = gf.gradient_descent(net, X, y, **args)
    path = tmp_path / "gd.ckpt"
    with budget_runs_out_at_eval(123), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        gf.gradient_descent(net, X, y, checkpoint=path, **args)
    data = load(path)
    for q in ck.checkpoint_files(path):
        q.unlink()
    old = tmp_path / "old.ckpt"  # what gflow wrote before segments: one file with the whole history
    atomic_save({"format": 1, "fingerprint": data["fingerprint"], "loop": data["loop"],
                 "recorder": data["recorder"], "monitor": data["monitor"]}, old)
    resumed = gf.gradient_descent(net, X, y, checkpoint=old, keep_checkpoint=True, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)
    assert load(old)["format"] == 2 and len(ck.checkpoint_files(old)) == 2  # continued in segments


def test_a_missing_segment_is_reported_by_name(problem, tmp_path):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    path = tmp_path / "run.ckpt"
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        gf.simulate(net, X, y, t1=50.0, method="dop853", rtol=1e-8, max_steps=5, checkpoint=path)
    seg = ck.checkpoint_files(path)[1]
    seg.unlink()
    with pytest.raises(ValueError, match=rf"incomplete: its segment file '{seg.name}' is missing.*delete the checkpoint"):
        gf.simulate(net, X, y, t1=50.0, method="dop853", rtol=1e-8, checkpoint=path)


def test_moving_a_checkpoint_moves_its_segments(problem, tmp_path):
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(t1=50.0, method="dop853", rtol=1e-9, atol=1e-11)
    ref = gf.simulate(net, X, y, **args)
    path = tmp_path / "a.ckpt"
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        gf.simulate(net, X, y, checkpoint=path, max_steps=10, **args)
    n = len(ck.checkpoint_files(path))
    assert n >= 2 and ck.move(path, tmp_path / "b.ckpt") == n and not ck.checkpoint_files(path)
    again = gf.simulate(net, X, y, checkpoint=tmp_path / "b.ckpt", **args)
    assert again.ok and again.stats["resumed"]
    assert_same_run(again, ref, exact=True)


@pytest.mark.parametrize("method, kw", [("dop853", {"rtol": 1e-8, "atol": 1e-10}), ("rk4", {"step": 0.1})])
def test_a_flow_killed_right_after_a_checkpoint_resumes_with_its_step_counts(problem, tmp_path, monkeypatch, method,
                                                                             kw):
    # regression: the periodic checkpoint was written before the step was counted; a run killed right after it
    # (SIGKILL: no final checkpoint) resumed with n_steps and n_accepted one short
    net, X, y = problem
    args = dict(t1=10.0, method=method, **kw)
    ref = gf.simulate(net, X, y, **args)
    path = tmp_path / "run.ckpt"
    killed_after_checkpoint(monkeypatch, 7, lambda: gf.simulate(net, X, y, checkpoint=path, **args))
    resumed = gf.simulate(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)
    for key in ("n_steps", "n_accepted", "n_rejected", "n_f_evals"):
        assert resumed.stats[key] == ref.stats[key], key


def test_checkpoint_benchmark_quick_mode_writes_json(tmp_path):
    import json
    import runpy

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_checkpoint.py"))
    out = tmp_path / "b.json"
    mod["main"](["--quick", "--out", str(out)])  # (as documented: its default --every failed with --quick)
    data = json.loads(out.read_text())
    for name in ("gradient_descent", "rk4"):
        row = data["rows"][name]
        assert row["without"]["n_checkpoints"] == 0 and row["with"]["n_checkpoints"] >= 100
        assert row["with"]["n_saved_times"] == row["without"]["n_saved_times"] == 101


# ---------------------------------------------------------------------------------------------------------
# batched seeds


def _batch_problem():
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    # linear σ, ĉ = 10 for the middle seed: δλ_max(M) far past 2 at δ = 0.1, so it diverges while the others go on
    nets = [gf.Network(d=5, width=16, activation="linear", seed=s, c_hat=ch) for s, ch in [(0, 1.0), (1, 10.0),
                                                                                           (2, 1.0)]]
    return nets, X, y


def _assert_same_batch(a, b):
    assert [s.status for s in a] == [s.status for s in b]
    for x, y_ in zip(a, b):
        assert x.message == y_.message
        assert_same_run(x, y_, exact=True)
        assert x.stats["n_steps"] == y_.stats["n_steps"]


@pytest.mark.parametrize("method, kw", [("dop853", {"rtol": 1e-8, "atol": 1e-10}), ("rk4", {"step": 0.1})])
def test_a_stopped_and_resumed_batch_flow_equals_the_uninterrupted_one_bit_for_bit(tmp_path, method, kw):
    nets, X, y = _batch_problem()
    nets = [nets[0], nets[2]]
    args = dict(t1=20.0, method=method, X_test=X[:3], y_test=y[:3], features_at=[0.0, 5.0, 20.0], **kw)
    ref = gf.simulate_batch(nets, X, y, **args)
    assert all(s.ok for s in ref)
    stop_at = ref[0].stats["n_f_evals"] // 2 + 1  # inside a step
    path = tmp_path / "batch.ckpt"
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        first = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    assert first[0].status == "time_budget" and path.exists()
    resumed = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    assert all(s.ok and s.stats["resumed"] for s in resumed) and not path.exists()
    _assert_same_batch(resumed, ref)
    # another list of networks is refused
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning):
        gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    with pytest.raises(ValueError, match=r"different run.*'networks'"):
        gf.simulate_batch(nets[::-1], X, y, checkpoint=path, **args)


def test_a_stopped_and_resumed_batch_gradient_descent_with_a_diverged_seed_equals_the_uninterrupted_one(tmp_path):
    nets, X, y = _batch_problem()
    args = dict(step=0.1, steps=400, save_every=7, features_at=[0.0, 3.5, 15.0], X_test=X[:3], y_test=y[:3])
    with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\].*diverged"):
        ref = gf.gradient_descent_batch(nets, X, y, **args)
    assert [s.status for s in ref] == ["success", "diverged", "success"] and ref[1].t[-1] < 20
    # the middle seed's loss passes 1e10·L₀ at step 5, seen at the saved step 7: it ends at step 4, between saved
    # steps (W_final there), also where the batch was stopped at step 2 and resumed from its checkpoint
    assert ref[1].t.tolist() == [0.0, 0.4] and "step 4 (t = 0.4)" in ref[1].message
    loss_end = float(nets[1].loss(torch.as_tensor(X), y, torch.as_tensor(ref[1].W_final)))
    assert loss_end == pytest.approx(ref[1].loss[-1], rel=1e-9)
    path = tmp_path / "gd.ckpt"
    for stop_at in (3, 250):  # before the middle seed diverges (seen at step 7), and after
        with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
            first = gf.gradient_descent_batch(nets, X, y, checkpoint=path, **args)
        assert first[0].status == "time_budget" and path.exists()
        with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\].*diverged"):
            resumed = gf.gradient_descent_batch(nets, X, y, checkpoint=path, **args)
        assert all(s.stats["resumed"] for s in resumed) and not path.exists()
        _assert_same_batch(resumed, ref)


def test_a_batch_killed_right_after_a_checkpoint_resumes_every_row(tmp_path, monkeypatch):
    nets, X, y = _batch_problem()
    nets = [nets[0], nets[2]]
    args = dict(step=0.1, steps=40, save_every=1)
    ref = gf.gradient_descent_batch(nets, X, y, **args)
    path = tmp_path / "gd.ckpt"
    killed_after_checkpoint(monkeypatch, 9, lambda: gf.gradient_descent_batch(nets, X, y, checkpoint=path, **args))
    resumed = gf.gradient_descent_batch(nets, X, y, checkpoint=path, **args)
    _assert_same_batch(resumed, ref)


def test_batch_checkpoints_need_the_native_engine(tmp_path):
    nets, X, y = _batch_problem()
    with pytest.raises(ValueError, match=r"checkpoint/resume needs gflow's native engine.*'RK45'"):
        gf.simulate_batch(nets, X, y, t1=1.0, method="RK45", checkpoint=tmp_path / "b.ckpt")


def _disk_with_space(monkeypatch, space: list):
    """Emulate a disk with ``space[0]`` bytes free (None: unlimited) under the files that atomic_save writes:
    a write beyond it fails with ENOSPC, as the OS fails it."""
    import errno
    import io

    real_fdopen = os.fdopen

    class Disk(io.BufferedWriter):
        def write(self, b):
            if space[0] is not None:
                if len(b) > space[0]:
                    raise OSError(errno.ENOSPC, "No space left on device")
                space[0] -= len(b)
            return super().write(b)

    def fdopen(fd, mode="r", *args, **kw):
        return Disk(io.FileIO(fd, "wb")) if mode == "wb" else real_fdopen(fd, mode, *args, **kw)

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_disk_that_fills_up_while_a_checkpoint_is_written_warns_and_the_run_goes_on(problem, tmp_path,
                                                                                       monkeypatch):
    # regression: torch's zip writer reports a write that failed (ENOSPC, or EFBIG under `ulimit -f`) as a
    # RuntimeError ("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"), not the OSError that
    # Checkpointer.save catches: a full disk ended the run with that error, and the work was lost
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(step=0.5, steps=40, save_every=1, features_at=[0.0, 5.0, 20.0])
    ref = gf.gradient_descent(net, X, y, **args)
    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    path = tmp_path / "gd.ckpt"
    space = [60_000]  # a few checkpoints fit, then the disk is full
    _disk_with_space(monkeypatch, space)
    with budget_runs_out_at_eval(30), pytest.warns(gf.GFlowWarning) as rec:
        first = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert first.status == "time_budget"
    assert len([w for w in rec if re.search(r"could not be written.*No space left", str(w.message))]) == 1
    data = load(path)  # the last checkpoint written before the disk filled up
    assert 0 < data["loop"]["k"] < 29
    space[0] = None  # space freed: the run resumes from that checkpoint
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)
    assert not list(tmp_path.iterdir()), "no file is left after success"


@pytest.mark.parametrize("kind", ["flow", "gd", "batch"])
def test_a_checkpoint_that_cannot_be_deleted_at_the_end_warns_and_the_run_returns_its_result(problem, tmp_path,
                                                                                           monkeypatch, kind):
    # regression: Checkpointer.finish let the OSError of a file it could not delete (a folder made read-only or
    # immutable during the run: "[Errno 1] Operation not permitted") out of gf.simulate, after the whole run: its
    # result was lost
    net, X, y = problem
    path = tmp_path / "run.ckpt"
    run = {"flow": lambda **kw: gf.simulate(net, X, y, t1=5.0, method="dop853", **kw),
           "gd": lambda **kw: gf.gradient_descent(net, X, y, step=0.5, steps=40, **kw),
           "batch": lambda **kw: gf.simulate_batch(gf.networks((0, 1), d=5, width=16), X, y, t1=5.0, **kw)[1]}[kind]
    ref = run()
    real = Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name.startswith("run.ckpt") and not self.name.endswith(".lock"):
            raise PermissionError(1, "Operation not permitted", str(self))
        return real(self, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(Path, "unlink", unlink)
        with pytest.warns(gf.GFlowWarning, match=r"could not be deleted at the end of the run \(run.ckpt: Operation "
                                                 r"not permitted\); the run's result is complete"):
            sol = run(checkpoint=path, checkpoint_every=1e-9)  # (a checkpoint after every step)
    assert sol.ok and not sol.stats["resumed"]
    assert_same_run(sol, ref)
    assert path.is_file()  # (left, whole: the same call resumes from it and returns the same run)
    again = run(checkpoint=path)
    assert again.ok and again.stats["resumed"]
    assert_same_run(again, ref)
    assert not list(tmp_path.iterdir())


def test_a_move_killed_midway_is_completed_by_the_next_one(problem, tmp_path, monkeypatch):
    # regression: move renamed the checkpoint file first, then its segments; killed in between (the sweep's
    # migration: "an interrupted migration is completed by the next call"), the new name held a checkpoint whose
    # segments were still under the old name, and the next migration skipped it (the old checkpoint was gone):
    # the run could not resume ("incomplete: its segment file ... is missing")
    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(step=0.5, steps=60, save_every=1)
    ref = gf.gradient_descent(net, X, y, **args)
    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    src, dst = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    with budget_runs_out_at_eval(40), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        gf.gradient_descent(net, X, y, checkpoint=src, **args)
    n = len(ck.checkpoint_files(src))
    assert n >= 3
    real, renames = os.rename, []

    def rename_then_die(a, b):
        if len(renames) == 1:
            raise Killed
        real(a, b)
        renames.append(b)

    monkeypatch.setattr(os, "rename", rename_then_die)
    with pytest.raises(Killed):
        ck.move(src, dst)
    monkeypatch.setattr(os, "rename", real)
    if src.exists() and not dst.exists():  # as gflow.sweeps.store.migrate_run_ids goes on
        ck.move(src, dst)
    assert not ck.checkpoint_files(src) and len(ck.checkpoint_files(dst)) == n
    resumed = gf.gradient_descent(net, X, y, checkpoint=dst, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)


def test_the_temporary_files_of_writes_killed_midway_are_deleted_with_the_checkpoint(problem, tmp_path, monkeypatch):
    # regression: a process killed inside atomic_save (SIGKILL: no cleanup) left its temporary file
    # ('.gd.ckpt.seg000004.k2j9x_a1.tmp'), and it stayed after the resumed run succeeded (and kept gflow reproduce's
    # checkpoints/ folder from being removed as empty)
    import tempfile

    from gflow.solve import checkpoint as ck

    net, X, y = problem
    args = dict(step=0.5, steps=40, save_every=1)
    ref = gf.gradient_descent(net, X, y, **args)
    monkeypatch.setattr(ck.Checkpointer, "due", lambda self: True)
    other = tmp_path / "gd.ckpt.x"  # another checkpoint beside it, whose name starts with this one's
    atomic_save({"format": 1}, other)
    others_tmp = tmp_path / f".{other.name}.abcd_123.tmp"  # and a temporary file of its own (not this one's)
    others_tmp.write_bytes(b"")
    real = ck.atomic_save
    for kill_in in ("segment", "checkpoint file"):
        path, writes = tmp_path / "gd.ckpt", []

        def killed_midway(obj, p):
            writes.append(p)
            if len(writes) in (9, 10) and ("entries" in obj) == (kill_in == "segment"):
                fd, _ = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
                os.write(fd, b"PK\x03\x04 half a zip file")
                raise Killed  # (the process dies mid-write)
            real(obj, p)

        monkeypatch.setattr(ck, "atomic_save", killed_midway)
        with pytest.raises(Killed):
            gf.gradient_descent(net, X, y, checkpoint=path, **args)
        monkeypatch.setattr(ck, "atomic_save", real)
        assert [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")], kill_in
        resumed = gf.gradient_descent(net, X, y, checkpoint=path, **args)
        assert resumed.ok and resumed.stats["resumed"]
        assert_same_run(resumed, ref, exact=True)
        assert sorted(q.name for q in tmp_path.iterdir()) == sorted([other.name, others_tmp.name]), kill_in


def test_a_resumed_adaptive_batch_reports_the_limiting_share_of_the_whole_run(tmp_path):
    # regression: the error norm's per-seed counts were not in the checkpoint, so a resumed batch reported the
    # limiting_share of its last segment only (1.0 and 0.0 here, instead of 0.98 and 0.02)
    nets, X, y = _batch_problem()
    nets = [nets[0], nets[2]]
    args = dict(t1=20.0, method="dop853", rtol=1e-8, atol=1e-10)
    ref = gf.simulate_batch(nets, X, y, **args)
    assert 0 < ref[1].config["solver"]["batch"]["limiting_share"] < 0.5
    path = tmp_path / "batch.ckpt"
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        gf.simulate_batch(nets, X, y, checkpoint=path, max_steps=10, **args)
    resumed = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    _assert_same_batch(resumed, ref)
    for a, b in zip(resumed, ref):
        assert a.config["solver"]["batch"] == b.config["solver"]["batch"]


def test_a_batch_checkpoint_refused_for_other_networks_says_what_differs(tmp_path):
    # regression: the message showed both lists of networks cut to 60 characters, which looked the same (it did not
    # say which network, or that their number differed); and gf.gradient_descent's checkpoint, given to the batch,
    # was also said to differ in features_at (steps in the batch's fingerprint, times in the single run's)
    nets, X, y = _batch_problem()
    args = dict(step=0.1, steps=60, save_every=7)
    path = tmp_path / "gd.ckpt"
    with budget_runs_out_at_eval(3), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        gf.gradient_descent_batch(nets, X, y, checkpoint=path, **args)
    other = gf.Network(d=5, width=16, activation="linear", seed=2, c_hat=2.0)
    with pytest.raises(ValueError, match=r"'networks' \(nets\[2\] 'c_hat': 1\.0 in the checkpoint vs 2\.0 now\)"):
        gf.gradient_descent_batch(nets[:2] + [other], X, y, checkpoint=path, **args)
    with pytest.raises(ValueError, match=r"'networks' \(3 networks in the checkpoint vs 2 now\)"):
        gf.gradient_descent_batch(nets[:2], X, y, checkpoint=path, **args)
    single = tmp_path / "single.ckpt"
    with budget_runs_out_at_eval(3), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        gf.gradient_descent(nets[0], X, y, checkpoint=single, **args)
    with pytest.raises(ValueError, match=r"kind of run \('gd' vs 'gd_batch'\)") as info:
        gf.gradient_descent_batch(nets[:1], X, y, checkpoint=single, **args)
    assert "features_at" not in str(info.value)


@pytest.mark.parametrize("stop_at", [1, 2])  # f(0), and the initial-step heuristic's evaluation
def test_an_adaptive_batch_stopped_before_its_first_step_was_chosen_resumes(tmp_path, stop_at):
    # regression: the checkpoint held h = NaN (no step chosen yet); the resumed run stopped at once as "nonfinite"
    # (and kept its checkpoint, so every rerun did so again).  gf.simulate's engine is the same.
    nets, X, y = _batch_problem()
    nets = [nets[0], nets[2]]
    args = dict(t1=5.0, method="dop853", rtol=1e-8, atol=1e-10)
    ref = gf.simulate_batch(nets, X, y, **args)
    path = tmp_path / "batch.ckpt"
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        first = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    assert first[0].status == "time_budget" and path.exists()
    resumed = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
    assert all(s.ok for s in resumed) and not path.exists()
    _assert_same_batch(resumed, ref)
    single = tmp_path / "single.ckpt"
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        gf.simulate(nets[0], X, y, checkpoint=single, **args)
    assert_same_run(gf.simulate(nets[0], X, y, checkpoint=single, **args), gf.simulate(nets[0], X, y, **args))


@pytest.mark.parametrize("kind", ["gd", "flow"])
def test_a_feature_space_checkpoint_written_before_the_layout_choice_resumes_in_its_layout(problem, tmp_path,
                                                                                            monkeypatch, kind):
    # Checkpoints written before the feature state had a layout choice hold [H, A] as (2, m, n) and no "layout" in
    # their fingerprint; now the default is [Hᵀ, Aᵀ], (2, n, m).  Such a file must resume in its own layout
    # (bitwise the run it continues), not be refused, and not be read in the other layout.
    from gflow.solve import checkpoint as ck
    from gflow.solve import gd as gdm
    from gflow.solve import ode as odem

    net, X, y = problem
    mod, run, args = ((gdm, gf.gradient_descent, dict(step=0.5, steps=300, save_every=7, space="feature"))
                      if kind == "gd" else
                      (odem, gf.simulate, dict(t1=30.0, method="dop853", rtol=1e-9, atol=1e-11, space="feature")))
    real = mod.make_field
    monkeypatch.setattr(mod, "make_field", lambda pb, space, per_entry=0.0, layout="nm": real(pb, space, per_entry,
                                                                                              "mn"))
    ref = run(net, X, y, **args)  # the run in the old layout, uninterrupted
    path = tmp_path / f"{kind}.ckpt"
    with budget_runs_out_at_eval(123), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        run(net, X, y, checkpoint=path, **args)
    monkeypatch.setattr(mod, "make_field", real)
    head = ck._read(path)
    assert head["fingerprint"]["solver"].pop("layout") == "mn"  # as the old version wrote it: no layout
    atomic_save(head, path)
    assert ck.stored_layout(path) == "mn"
    resumed = run(net, X, y, checkpoint=path, **args)
    assert resumed.ok and resumed.stats["resumed"]
    assert_same_run(resumed, ref, exact=True)
    # a new run's checkpoint records its layout; a weight-space or missing file leaves the default
    fresh = tmp_path / "fresh.ckpt"
    with budget_runs_out_at_eval(123), pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        run(net, X, y, checkpoint=fresh, **args)
    assert ck._read(fresh)["fingerprint"]["solver"]["layout"] == "nm" and ck.stored_layout(fresh) == "nm"
    assert ck.stored_layout(tmp_path / "none.ckpt", "mn") == "mn"


@pytest.mark.parametrize("kind", ["gd_batch", "flow_batch"])
def test_a_batch_checkpoint_written_before_the_layout_choice_resumes_in_its_layout(tmp_path, monkeypatch, kind):
    # as for single runs: a feature-space batch checkpoint without a layout in its fingerprint holds [H, A] per seed
    # and resumes in that layout, bit for bit
    from gflow.solve import batch as batch_module
    from gflow.solve import checkpoint as ck

    nets, X, y = _batch_problem()
    nets = [nets[0], nets[2]]
    run, args = ((gf.gradient_descent_batch, dict(step=0.1, steps=40, save_every=3, space="feature"))
                 if kind == "gd_batch" else
                 (gf.simulate_batch, dict(t1=4.0, method="dop853", rtol=1e-9, atol=1e-11, space="feature")))
    real = batch_module.make_field
    monkeypatch.setattr(batch_module, "make_field", lambda pb, space, per_entry=0.0, layout="nm":
                        real(pb, space, per_entry, "mn"))
    ref = run(nets, X, y, **args)
    path = tmp_path / f"{kind}.ckpt"
    with budget_runs_out_at_eval(17), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        run(nets, X, y, checkpoint=path, **args)
    monkeypatch.setattr(batch_module, "make_field", real)
    head = ck._read(path)
    assert head["fingerprint"]["solver"].pop("layout") == "mn"
    atomic_save(head, path)
    resumed = run(nets, X, y, checkpoint=path, **args)
    assert all(s.ok and s.stats["resumed"] for s in resumed)
    _assert_same_batch(resumed, ref)


def test_gd_stopped_by_its_time_budget_keeps_its_last_step_and_resumes_to_the_same_run(tmp_path):
    # regression (an interruption audit): the steps since the last saved one were dropped ("ran out at t = 4755",
    # sol.t[-1] = 4500); the docstring promises the last step
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0)
    kw = dict(step=0.5, steps=40_000, save_every=10_000, integrals=False)
    ck = tmp_path / "gd.ckpt"
    part = gf.gradient_descent(net, X, y, **kw, max_wall_time=0.2, checkpoint=ck, warn=False)
    assert part.status == "time_budget" and 0 < part.stats["n_steps"] < 40_000
    k = part.stats["n_steps"]
    assert part.t[-1] == k * 0.5 and f"ran out at t = {k * 0.5:g}" in part.message
    same = gf.gradient_descent(net, X, y, step=0.5, steps=k, save_every=k, integrals=False)
    assert part.loss[-1] == same.loss[-1] and np.array_equal(part.W_final, same.W_final)
    full = gf.gradient_descent(net, X, y, **kw)
    resumed = gf.gradient_descent(net, X, y, **kw, checkpoint=ck)
    assert resumed.ok and np.array_equal(resumed.t, full.t) and np.array_equal(resumed.loss, full.loss)


def _unstable_gd_problem():
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    # linear σ, ĉ = 1.5: 2/λ_max(M₀) = 0.36, so GD at δ = 0.6 diverges (loss 3.7e7 at step 14, > 1e10·L₀ at 18)
    return gf.Network(d=6, width=16, activation="linear", seed=1, c_hat=1.5), X, y


@pytest.mark.parametrize("how", ["rerun", "budget"])
def test_a_resumed_gd_that_diverges_ends_at_its_last_kept_step_as_the_uninterrupted_run(tmp_path, how):
    # regression: the resumed run took the checkpoint's state (step 20, or 16) as its last good one, so W_final and
    # H[-1] were from there, labelled t[-1] = 8.4 (step 14): loss(W_final) 1e12 where loss[-1] was 3.7e7; the
    # runs end at step 17, the last iterate before the loss passed 1e10·L₀, between the saved steps 14 and 21
    net, X, y = _unstable_gd_problem()
    args = dict(step=0.6, steps=400, save_every=7)
    ref = gf.gradient_descent(net, X, y, warn=False, **args)
    assert ref.status == "diverged" and ref.t[-1] == pytest.approx(10.2) and ref.t[-2] == pytest.approx(8.4)
    assert "step 17 (t = 10.2)" in ref.message
    path = tmp_path / "gd.ckpt"
    if how == "rerun":  # the same diverging call repeated: its checkpoint (after every step) resumes at step 20
        first = gf.gradient_descent(net, X, y, checkpoint=path, checkpoint_every=1e-9, warn=False, **args)
        assert first.status == "diverged" and load(path)["loop"]["k"] == 20
    else:  # stopped at step 16, between saved steps 14 and 21
        with budget_runs_out_at_eval(17):
            first = gf.gradient_descent(net, X, y, checkpoint=path, warn=False, **args)
        assert first.status == "time_budget" and load(path)["loop"]["k"] == 16
    resumed = gf.gradient_descent(net, X, y, checkpoint=path, warn=False, **args)
    assert resumed.stats["resumed"] and resumed.status == "diverged" and resumed.message == ref.message
    assert_same_run(resumed, ref, exact=True)
    loss_final = float(net.loss(torch.as_tensor(X), y, torch.as_tensor(resumed.W_final)))
    assert loss_final == pytest.approx(resumed.loss[-1], rel=1e-9)


@pytest.mark.parametrize("stop_at", [50, 700])  # loss 2.6e33·L₀ at step 49; a non-finite state at step 699
def test_gd_whose_iterates_diverged_before_its_time_budget_ran_out_is_reported_diverged(stop_at):
    # regression: the budget's record of the last step raised "diverged" (or "nonfinite"), which was swallowed:
    # status "time_budget", "raise max_wall_time", where the same run without the budget said "diverged"
    net, X, y = _unstable_gd_problem()
    args = dict(step=0.6, steps=2000, save_every=1000)
    ref = gf.gradient_descent(net, X, y, warn=False, **args)
    with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"\[diverged\]"):
        sol = gf.gradient_descent(net, X, y, **args)
    assert sol.status == "diverged" and "max_wall_time" not in sol.message and "the loss grew to" in sol.message
    direct = gf.gradient_descent(net, X, y, step=0.6, steps=stop_at - 1, save_every=stop_at - 1, warn=False)
    assert direct.status == "diverged"
    # every run ends where saving every step would have: at step 17, before the loss passed 1e10·L₀ at step 18
    assert sol.message == direct.message == ref.message and "step 17 (t = 10.2)" in sol.message
    for a in (ref, direct):
        np.testing.assert_array_equal(sol.t, a.t)
        np.testing.assert_array_equal(sol.W_final, a.W_final)


def test_a_gd_batch_seed_whose_iterates_diverged_before_the_time_budget_ran_out_is_reported_diverged():
    # (as for gf.gradient_descent: the middle seed, diverged since step 7, was "time_budget", "raise max_wall_time")
    nets, X, y = _batch_problem()
    args = dict(step=0.1, steps=4000, save_every=2000)
    ref = gf.gradient_descent_batch(nets, X, y, warn=False, **args)
    assert ref[1].status == "diverged"
    for stop_at in (60, 3000):  # the middle seed's loss finite but 1e10·L₀ past; its state non-finite
        with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"stopped early"):
            sols = gf.gradient_descent_batch(nets, X, y, **args)
        assert [s.status for s in sols] == ["time_budget", "diverged", "time_budget"], stop_at
        assert "max_wall_time" not in sols[1].message and "diverged" in sols[1].message
        np.testing.assert_array_equal(sols[1].t, ref[1].t)  # the last iterate before the blow-up (t = 0.4) is the end
        np.testing.assert_array_equal(sols[1].W_final, ref[1].W_final)
        for s in (0, 2):
            assert sols[s].t[-1] == (stop_at - 1) * 0.1


def test_a_gd_batch_stopped_by_its_time_budget_keeps_its_last_step():
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    nets = gf.networks(range(2), d=3, width=16)
    sols = gf.gradient_descent_batch(nets, X, y, step=0.5, steps=200_000, save_every=50_000, integrals=False,
                                     max_wall_time=0.3, warn=False)
    for s, net in zip(sols, nets):
        k = s.stats["n_steps"]
        assert s.status == "time_budget" and 0 < k < 200_000 and s.t[-1] == k * 0.5
        one = gf.gradient_descent(net, X, y, step=0.5, steps=k, save_every=k, integrals=False)
        np.testing.assert_allclose(s.loss[-1], one.loss[-1], rtol=1e-12)
        # (to 1e-12 of W's scale: an entry of 0.005 among entries of 10 was 2.5e-14 off after ~1e5 steps)
        np.testing.assert_allclose(s.W_final, one.W_final, rtol=1e-12, atol=1e-12 * np.abs(one.W_final).max())


def test_resuming_in_another_space_names_the_space_only(tmp_path):
    # (an interruption audit: it also listed "solver setting 'layout' (None in the checkpoint vs 'nm' now)", a setting
    # the user never gave)
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=16, seed=0)
    ck = tmp_path / "c.ckpt"
    gf.simulate(net, X, y, t1=50.0, method="dop853", space="weight", checkpoint=ck, max_steps=5, warn=False)
    with pytest.raises(ValueError, match=r"solver setting 'space' \('weight' in the checkpoint vs 'feature' now\)\. "
                                         r"Use the same settings") as info:
        gf.simulate(net, X, y, t1=50.0, method="dop853", space="feature", checkpoint=ck)
    assert "layout" not in str(info.value)


@pytest.mark.parametrize("what", ["activation", "embedding", "random_features"])
def test_a_checkpoint_of_another_custom_activation_or_callable_embedding_is_refused(tmp_path, what):
    # (a differential fuzz: both specs hold a name only, and the resumed run was a hybrid of the two networks)
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    if what == "activation":
        first = dict(activation=gf.Activation("mine", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, lipschitz=1.0,
                                              interval=(-1.0, 1.0)))
        other = dict(activation=gf.Activation("mine", lambda u: torch.tanh(2 * u) / 2,
                                              lambda u: 1 - torch.tanh(2 * u) ** 2, lipschitz=1.0, interval=(-1.0, 1.0)))
        why = r"the custom activation's σ or σ′ \(their values differ\)"
    elif what == "random_features":  # (a review: a custom σ inside the random features was not fingerprinted)
        def rf(fn, dfn):
            return dict(embedding=gf.RandomFeatures(D=8, activation=gf.Activation("mine", fn, dfn, lipschitz=1.0,
                                                                               interval=(-1.0, 1.0))))
        first = rf(torch.tanh, lambda u: 1 - torch.tanh(u) ** 2)
        other = rf(lambda u: torch.tanh(2 * u) / 2, lambda u: 1 - torch.tanh(2 * u) ** 2)
        why = r"the embedding's features Φ\(X\) \(a callable, or with a custom activation: they differ\)"
    else:
        first, other = dict(embedding=lambda Z: Z), dict(embedding=lambda Z: 2 * Z)
        why = r"the embedding's features Φ\(X\) \(a callable, or with a custom activation: they differ\)"
    ck = tmp_path / "run.ckpt"
    kw = dict(t1=5.0, method="dop853", checkpoint=ck, warn=False)
    assert gf.simulate(gf.Network(d=3, width=16, **first), X, y, max_steps=3, **kw).status == "max_steps"
    with pytest.raises(ValueError, match=why):
        gf.simulate(gf.Network(d=3, width=16, **other), X, y, **kw)
    resumed = gf.simulate(gf.Network(d=3, width=16, **first), X, y, **kw)  # the same one still resumes
    assert resumed.ok and resumed.stats["resumed"]



def test_a_checkpoint_of_an_earlier_gflow_with_a_custom_activation_is_refused_saying_why(tmp_path):
    # (a review: a checkpoint without the new fingerprint key was refused as "their values differ")
    from gflow.solve.checkpoint import _differences, fingerprint
    from gflow.fields import Problem

    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    act = gf.Activation("mine", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, lipschitz=1.0, interval=(-1.0, 1.0))
    fp = fingerprint("flow", Problem.from_data(gf.Network(d=3, width=8, activation=act), X, y), {})
    old = {k: v for k, v in fp.items() if k != "activation_sha256"}
    assert _differences(fp, fp) == []
    (why,) = _differences(old, fp)
    assert "written by an earlier gflow, which did not fingerprint it" in why


@pytest.mark.parametrize("method", ("euler", "rk4"))
def test_a_fixed_step_batch_with_a_frozen_seed_stopped_and_resumed_equals_the_uninterrupted_one(tmp_path, method):
    nets, X, y = _batch_problem()  # the middle seed diverges at step 0.1 and is frozen; the others go on
    args = dict(t1=10.0, method=method, step=0.1, X_test=X[:3], y_test=y[:3], features_at=[0.0, 5.0, 10.0])
    with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\] stopped early \[diverged\]"):
        ref = gf.simulate_batch(nets, X, y, **args)
    assert [s.status for s in ref] == ["success", "diverged", "success"]
    path = tmp_path / "batch.ckpt"
    per_step = 1 if method == "euler" else 4
    for stop_at in (3 * per_step + 1, ref[0].stats["n_f_evals"] // 2 + 2):  # before the seed diverges, and after
        with budget_runs_out_at_eval(stop_at), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
            gf.simulate_batch(nets, X, y, checkpoint=path, **args)
        with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\] stopped early \[diverged\]"):
            resumed = gf.simulate_batch(nets, X, y, checkpoint=path, **args)
        assert all(s.stats["resumed"] for s in resumed) and not path.exists()
        _assert_same_batch(resumed, ref)
        assert [s.stats["n_f_evals"] for s in resumed] == [s.stats["n_f_evals"] for s in ref]


@pytest.mark.parametrize("kind", ("gd", "gd_batch", "rk4", "rk4_batch", "euler", "dop853", "dopri5"))
def test_a_stopped_and_resumed_run_counts_the_evaluations_of_the_uninterrupted_one(problem, tmp_path, kind):
    # (an audit: the evaluation the stop refused was counted, checkpointed and counted again: 3001 for 3000; a
    # stop inside an rk4 step also counted that step's first stages twice)
    net, X, y = problem
    nets = gf.networks([0, 1], d=net.d, width=net.m)
    if kind.startswith("gd"):
        fn, arg, kw = ((gf.gradient_descent_batch, nets) if kind == "gd_batch" else (gf.gradient_descent, net)) + (
            dict(step=0.1, steps=60, save_every=7),)
    else:
        method = kind.removesuffix("_batch")
        fn, arg = (gf.simulate_batch, nets) if kind.endswith("_batch") else (gf.simulate, net)
        kw = dict(t1=6.0, method=method, **({"step": 0.1} if method in ("rk4", "euler") else {}))

    def evals(sols):
        return [s.stats["n_f_evals"] for s in (sols if isinstance(sols, list) else [sols])]

    full = fn(arg, X, y, **kw)
    path = tmp_path / "run.ckpt"
    with budget_runs_out_at_eval(evals(full)[0] // 2 + 3), pytest.warns(gf.GFlowWarning, match=r"time_budget"):
        fn(arg, X, y, checkpoint=path, **kw)
    resumed = fn(arg, X, y, checkpoint=path, **kw)
    assert evals(resumed) == evals(full)


def test_a_checkpointed_auto_run_stopped_by_max_steps_says_its_advice_cannot_checkpoint(tmp_path):
    # (a usability audit: with checkpoint=, auto falls back from dop853+exprk4 to dop853; stopped by max_steps it was
    # advised dop853+exprk4, which refuses checkpoint=, without a word of it)
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=32, seed=0)
    for max_steps in (50, 300):  # (before and after the stiffness hint takes over, at 200 accepted steps)
        sol = gf.simulate(net, X, y, t1=2000.0, max_steps=max_steps, checkpoint=tmp_path / f"{max_steps}.ckpt",
                          warn=False)
        assert sol.status == "max_steps" and sol.config["solver"]["method"] == "dop853"
        assert "'dop853+exprk4' (it cannot checkpoint: drop checkpoint= for it)" in sol.message
    plain = gf.simulate(net, X, y, t1=2000.0, method="dop853", max_steps=300, warn=False)
    assert "method='dop853+exprk4'" in plain.message and "cannot checkpoint" not in plain.message


def test_a_checkpointed_run_stopped_by_a_limit_says_the_checkpoint_is_kept_and_how_to_resume(problem, tmp_path):
    # (a long-run audit: a run stopped by max_wall_time or max_steps kept its checkpoint, but its message only said
    # "raise max_wall_time": nothing of the file, nor that the same call with a larger limit resumes from it)
    net, X, y = problem
    args = dict(t1=50.0, method="dop853", rtol=1e-9, atol=1e-11, warn=False)
    ck = tmp_path / "flow.ckpt"
    sol = gf.simulate(net, X, y, checkpoint=ck, max_steps=10, **args)
    assert sol.status == "max_steps" and ck.is_file()
    assert sol.message.endswith(f"; the checkpoint {str(ck)!r} is kept and holds the run at its last step: the same "
                                "call with a larger max_steps resumes it from there")
    assert gf.simulate(net, X, y, checkpoint=ck, max_steps=100_000, **args).stats["resumed"] is True
    with budget_runs_out_at_eval(30):
        sol = gf.simulate(net, X, y, checkpoint=tmp_path / "budget.ckpt", **args)
    assert sol.status == "time_budget" and "the same call with a larger max_wall_time resumes it" in sol.message
    assert str(tmp_path / "budget.ckpt") in sol.message
    plain = gf.simulate(net, X, y, max_steps=10, **args)  # (no checkpoint: nothing to say)
    assert plain.status == "max_steps" and "checkpoint" not in plain.message
    kw = dict(step=0.1, steps=200, save_every=50, warn=False)
    with budget_runs_out_at_eval(30):
        gd = gf.gradient_descent(net, X, y, checkpoint=tmp_path / "gd.ckpt", **kw)
    assert gd.status == "time_budget" and "gd.ckpt' is kept" in gd.message and "larger max_wall_time" in gd.message
    assert gf.gradient_descent(net, X, y, checkpoint=tmp_path / "gd.ckpt", **kw).stats["resumed"] is True
    nets = gf.networks(range(2), d=5, width=16)
    batch = gf.simulate_batch(nets, X, y, checkpoint=tmp_path / "batch.ckpt", max_steps=10, **args)
    assert all(s.status == "max_steps" and "batch.ckpt' is kept" in s.message for s in batch)
    with budget_runs_out_at_eval(30):
        batch = gf.gradient_descent_batch(nets, X, y, checkpoint=tmp_path / "gdb.ckpt", **kw)
    assert all(s.status == "time_budget" and "gdb.ckpt' is kept" in s.message for s in batch)
