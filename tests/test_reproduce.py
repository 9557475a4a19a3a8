"""``gflow reproduce`` is resumable and parallel: one atomic file per run in out/<exp>/runs/ (gflow.experiments.tasks).

Re-running in the same folder recomputes nothing and writes the same summary; a deleted run file is recomputed
(and equals the deleted one); a process pool gives the same runs as the serial executor.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from gflow.cli import main
from gflow.experiments import exp1, exp3, load_runs
from gflow.experiments.tasks import Task, execute, load_run, run_id_of

SERIES = ("loss", "test_loss", "test_error", "lam_max_M", "feature_movement")


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def first(tmp_path_factory, exp3_tiny):
    """exp3 at the tiny preset, serial: a copy of the session's run (conftest; test_exp3 reads it), since
    test_rerun writes its summary and runs.nc again (through the CLI: the command computes nothing there)."""
    out = tmp_path_factory.mktemp("repro")
    shutil.copytree(exp3_tiny[0], out, dirs_exist_ok=True)  # (copy2 keeps the modification times)
    return out


def _stamps(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "runs").glob("*.nc"))}


def _untimed(text: str) -> str:
    """summary.md without the wall times of this call (the per-run solver times come from the run files)."""
    return re.sub(r"(wall time(?: with files and figures)?) [\d.]+ s", r"\1 _ s", text)


def _same_solution(a, b) -> None:
    for name in SERIES:
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            np.testing.assert_array_equal(va, vb, err_msg=name)
    np.testing.assert_array_equal(a.t, b.t)
    assert a.status == b.status


def test_runs_are_files_named_by_a_hash_of_their_configuration(first):
    folder = first / "exp3"
    cfg = exp3.PRESETS["tiny"]
    stamps = _stamps(folder)
    ids = [t.run_id for t in exp3.tasks(cfg)]
    assert sorted(stamps) == sorted(f"{i}.nc" for i in ids) and len(ids) == len(set(ids))
    assert not (folder / "checkpoints").exists()  # every run finished: no checkpoint left
    _, runs = load_runs(folder / "runs.nc")  # runs.nc as before, in task order
    assert [r.labels for r in runs] == [t.labels for t in exp3.tasks(cfg)]
    # the run files hold the same solutions (and the scatter features of Figure 4)
    run, extras = load_run(folder / "runs" / f"{ids[0]}.nc")
    assert run.labels == runs[0].labels and extras["scatter_h"].shape == (2, 2, cfg.m)
    _same_solution(run.solution, runs[0].solution)
    assert "reproduce_spec" not in runs[0].solution.extra_attrs


def test_rerun_recomputes_nothing_and_gives_the_same_summary(first, capsys):
    folder = first / "exp3"
    before, summary = _stamps(folder), (folder / "summary.md").read_text()
    capsys.readouterr()
    assert main(["reproduce", "exp3", "--preset", "tiny", "--out", str(first)]) == 0
    assert "(0 computed, 13 already in" in capsys.readouterr().out
    assert _stamps(folder) == before  # run files untouched
    assert _untimed((folder / "summary.md").read_text()) == _untimed(summary)


def test_a_deleted_run_file_is_recomputed(first, tmp_path, one_thread):
    out = tmp_path / "copy"
    shutil.copytree(first, out)  # (copy2 keeps the modification times)
    runs = out / "exp3" / "runs"
    before = _stamps(out / "exp3")
    victim = sorted(runs.glob("*.nc"))[3]
    old, _ = load_run(victim)
    victim.unlink()
    cut = runs / f".{victim.name}.4242.0123abcd.tmp"  # the temporary of a write killed midway: removed
    cut.write_bytes(b"cut")
    counts: dict = {}  # (the run files alone: exp3.run's runs.nc, figures and summary took three quarters)
    execute(exp3.tasks(exp3.PRESETS["tiny"]), out / "exp3", progress=False, report=counts.update)
    assert counts == {"total": 13, "skipped": 12, "computed": 1} and not cut.exists()
    after = _stamps(out / "exp3")
    assert sorted(after) == sorted(before)
    assert {k: v for k, v in after.items() if k != victim.name} == {k: v for k, v in before.items()
                                                                    if k != victim.name}
    new, _ = load_run(victim)
    assert new.labels == old.labels
    _same_solution(new.solution, old.solution)


def test_process_pool_gives_the_runs_of_the_serial_executor(first, tmp_path):
    # the run files and the claims from them (exp3.run's runs.nc, figures and summary, the same code whatever the
    # executor, are left to the serial runs: they took a third of this test)
    counts: dict = {}
    done = execute(exp3.tasks(exp3.PRESETS["tiny"]), tmp_path / "exp3", executor="process", workers=2,
                   progress=False, report=counts.update)
    assert counts["computed"] == 13
    assert sorted(_stamps(tmp_path / "exp3")) == sorted(_stamps(first / "exp3"))
    for f in sorted((first / "exp3" / "runs").glob("*.nc")):
        (a, ea), (b, eb) = load_run(f), load_run(tmp_path / "exp3" / "runs" / f.name)
        assert a.labels == b.labels
        _same_solution(a.solution, b.solution)
        np.testing.assert_array_equal(ea["scatter_h"], eb["scatter_h"])
    serial = load_runs(first / "exp3" / "runs.nc")[1]
    assert [c.verdict for c in exp3.claims_of([r for r, _ in done])] == [c.verdict for c in exp3.claims_of(serial)]


def test_exp1_flow_uses_the_native_dop853_and_checkpoints():
    cfg = exp1.PRESETS["tiny"]
    assert cfg.flow_method == cfg.flow_method_cuda == "dop853"
    flows = [t for t in exp1.tasks(cfg) if t.labels["solver"] == "flow"]
    assert flows and all(t.checkpoint and t.spec["method"] == "dop853" for t in flows)
    # scipy's DOP853 cannot checkpoint: a custom configuration using it runs without
    import dataclasses

    old = dataclasses.replace(cfg, flow_method="DOP853")
    assert not any(t.checkpoint for t in exp1.tasks(old) if t.labels["solver"] == "flow")
    # the flow is saved at exactly GD's times
    gd_times = exp1._save_times(cfg.gd_steps, cfg.save_every, cfg.gd_step, exp1._feature_times(cfg))
    assert gd_times[0] == 0.0 and gd_times[-1] == cfg.t1 and set(cfg.early_steps() * cfg.gd_step) <= set(gd_times)


def test_run_ids():
    spec = {"n": 4, "m": 8, "rtol": 1e-8}
    a = run_id_of("m:f", {"n": 4, "solver": "gd"}, spec)
    assert a == run_id_of("m:f", {"n": 4, "solver": "gd"}, dict(reversed(spec.items())))  # key order: same id
    assert a.startswith("n4-solvergd_")
    assert a != run_id_of("m:f", {"n": 4, "solver": "gd"}, {**spec, "rtol": 1e-9})
    assert a != run_id_of("m:g", {"n": 4, "solver": "gd"}, spec)
    # the thresholds of the claims are not part of any run: changing them keeps every run
    cfg = exp1.PRESETS["tiny"]
    import dataclasses

    ids = [t.run_id for t in exp1.tasks(cfg)]
    assert ids == [t.run_id for t in exp1.tasks(dataclasses.replace(cfg, width_tol=0.5, floor=1e-10))]
    assert ids != [t.run_id for t in exp1.tasks(cfg, device="cuda")]


def _fake(spec, checkpoint=None):
    import gflow as gf

    if spec.get("fail"):
        raise FloatingPointError("boom")
    X, y = gf.data.random_labels(3, 4, seed=spec["seed"])
    sol = gf.gradient_descent(gf.Network(d=4, width=8, seed=spec["seed"]), X, y, step=0.5, steps=4, save_every=2,
                              checkpoint=checkpoint, progress=None)
    return sol, {"x": (("k",), np.arange(3.0))}


def test_a_failing_run_keeps_the_finished_ones(tmp_path, one_thread):
    tasks = [Task(f"{__name__}:_fake", {"seed": s}, {"seed": s, "fail": s == 1}) for s in range(3)]
    with pytest.raises(RuntimeError, match=r"\{'seed': 1\}.*FloatingPointError: boom.*run again to resume"):
        execute(tasks, tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "runs").glob("*.nc")) == [f"{tasks[0].run_id}.nc"]
    fixed = [Task(t.fn, t.labels, {**t.spec, "fail": False}) for t in tasks]
    counts: dict = {}
    done = execute(fixed, tmp_path, progress=False, report=counts.update)
    assert counts == {"total": 3, "skipped": 1, "computed": 2}
    assert [r.labels for r, _ in done] == [t.labels for t in tasks]
    np.testing.assert_array_equal(done[2][1]["x"], np.arange(3.0))
    with pytest.raises(ValueError, match="distinct run ids"):
        execute(fixed + fixed[:1], tmp_path, progress=False)


def test_long_labels_make_a_prefix_of_whole_labels_and_old_files_are_kept(tmp_path, one_thread):
    # (the prefix was cut at 80 characters mid-value: "...-testseed1000_<hash>" for a test seed of 10000)
    from gflow.experiments import tasks as T

    labels = {"scaling": "ntk", "x": "a" * 17, "y": "b" * 30, "seed": 2, "testseed": 10000}
    rid = run_id_of("m:f", labels, {"n": 4})
    slug, digest = rid.rsplit("_", 1)
    assert slug == "scalingntk-x" + "a" * 17 + "-y" + "b" * 30 + "-seed2" and len(digest) == 16
    assert T._legacy_run_id("m:f", labels, {"n": 4}).startswith(slug + "-testseed1000_")  # (the old, misleading)
    short = {"n": 4, "solver": "gd"}
    assert run_id_of("m:f", short, {"n": 4}) == T._legacy_run_id("m:f", short, {"n": 4})  # (unchanged below 80)
    # a run finished under the old id is renamed, not computed again
    task = Task(f"{__name__}:_fake", {**labels, "seed": 0}, {"seed": 0})
    execute([task], tmp_path, progress=False)
    new = tmp_path / "runs" / f"{task.run_id}.nc"
    old = tmp_path / "runs" / f"{T._legacy_run_id(task.fn, task.labels, task.spec)}.nc"
    assert old != new
    new.rename(old)
    counts: dict = {}
    execute([task], tmp_path, progress=False, report=counts.update)
    assert counts == {"total": 1, "skipped": 1, "computed": 0} and new.exists() and not old.exists()
    # an interrupted run's checkpoint (and its segments) under the old id moves with it (a review: it was left
    # behind, and the run started over from t = 0)
    from gflow.experiments.tasks import pending
    from gflow.sweeps.run import checkpoint_file

    other = Task(f"{__name__}:_fake", {**labels, "seed": 1}, {"seed": 1})
    old_ck = checkpoint_file(tmp_path, T._legacy_run_id(other.fn, other.labels, other.spec))
    old_ck.parent.mkdir(parents=True, exist_ok=True)
    old_ck.write_bytes(b"ckpt")
    old_ck.with_name(old_ck.name + ".seg000000").write_bytes(b"seg")
    assert pending([other], tmp_path) == [other]
    new_ck = checkpoint_file(tmp_path, other.run_id)
    assert new_ck.read_bytes() == b"ckpt" and new_ck.with_name(new_ck.name + ".seg000000").read_bytes() == b"seg"
    assert not old_ck.exists()


def test_a_damaged_run_file_is_set_aside_and_recomputed(tmp_path, one_thread, capsys):
    # (a truncated run file counted as finished: every later call crashed reading it back, with h5py's raw
    # "OSError: Unable to synchronously open file (truncated file ...)" traceback)
    import os

    import gflow as gf

    tasks = [Task(f"{__name__}:_fake", {"seed": s}, {"seed": s}) for s in range(3)]
    first = execute(tasks, tmp_path, progress=False)
    victim = tmp_path / "runs" / f"{tasks[1].run_id}.nc"
    os.truncate(victim, 2000)
    counts: dict = {}
    with pytest.warns(gf.GFlowWarning, match=rf"1 run file\(s\) of the experiment in .* could not be read "
                                             r"\(damaged\) and are computed again; set aside as "
                                             rf"{victim.name}.damaged"):
        done = execute(tasks, tmp_path, progress=False, report=counts.update)
    assert counts == {"total": 3, "skipped": 2, "computed": 1}
    assert victim.with_name(victim.name + ".damaged").exists()
    for (a, ea), (b, eb) in zip(first, done):
        assert a.labels == b.labels
        _same_solution(a.solution, b.solution)
    # a file that opens but cannot be read back: a one-line error naming it
    import h5py

    with h5py.File(victim, "w") as f:
        f.attrs["reproduce_run_id"] = tasks[1].run_id
    with pytest.raises(ValueError, match=rf"the run file {re.escape(str(victim))} cannot be read .*; delete it and "
                                         "run again"):
        execute(tasks, tmp_path, progress=False)


def _first_tasks():
    from gflow.experiments import exp2

    t1 = exp1.tasks(exp1.PRESETS["tiny"])
    return {"exp1-gd": t1[0], "exp1-flow": next(t for t in t1 if t.labels["solver"] == "flow"),
            "exp2": exp2.tasks(exp2.PRESETS["tiny"])[0], "exp3": exp3.tasks(exp3.PRESETS["tiny"])[0]}


@pytest.mark.parametrize("which", ["exp1-gd", "exp1-flow", "exp2", "exp3"])
def test_a_finished_run_whose_file_cannot_be_written_resumes_from_its_checkpoint(tmp_path, monkeypatch, one_thread,
                                                                                 which):
    # regression: the solver deleted a finished run's checkpoint before run_one wrote the run's file; a file that
    # could not be written (a full disk) lost the run whole, and the next call ran it again from t = 0 (as
    # gflow.sweeps.run and gflow simulate, fixed before)
    import errno

    from gflow.experiments import tasks as T
    from gflow.sweeps.run import checkpoint_file

    task = _first_tasks()[which]
    assert task.checkpoint
    real, calls = T.write_atomic, []

    def full_disk_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "write_atomic", full_disk_once)
    with pytest.raises(RuntimeError, match="No space left on device.*run again to resume"):
        execute([task], tmp_path, progress=False)
    assert checkpoint_file(tmp_path, task.run_id).is_file()  # (the finished run, kept)
    (run, _), = execute([task], tmp_path, progress=False)
    assert run.solution.ok and run.solution.stats["resumed"] is True  # (the whole run, from its final checkpoint)
    assert not list((tmp_path / "checkpoints").iterdir())  # deleted once the run's file was written
