"""Sweeps: grid × seeds as one call, the TOML file, executors that agree, a store that loses nothing."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.cli import main
from gflow.sweeps import LocalSerial, SweepConfigError, load_sweep_config, run_sweep
from gflow.sweeps.config import SweepConfig

NETWORK = {"d": 5, "width": 16, "activation": "tanh"}
DATA = {"generator": "random_labels", "n_test": 10}
SOLVER = {"kind": "simulate", "t1": 2.0, "saveat": [0.0, 0.5, 1.0, 1.5, 2.0], "method": "DOP853", "rtol": 1e-8,
          "atol": 1e-10}
GRID = {"data.n": [6, 8], "network.scaling": ["ours", "ntk"]}
SEEDS = 2

TOML = """
seeds = 2

[network]
d = 5
width = 16
activation = "tanh"

[data]
generator = "random_labels"
n_test = 10

[solver]
kind = "simulate"
t1 = 2
saveat = [0, 0.5, 1, 1.5, 2]
method = "DOP853"
rtol = 1e-8
atol = 1e-10

[grid]
"data.n" = [6, 8]
"network.scaling" = ["ours", "ntk"]
"""

ROOT = Path(gf.__file__).resolve().parents[1]


def _series(ds, names=("loss", "test_loss", "eta", "mu")) -> dict:
    order = np.argsort(ds.run_id.values.astype(str))
    return {k: ds[k].values[order] for k in names} | {"status": ds.status.values[order].astype(str)}


def _assert_same(a, b) -> None:
    """The runs of sweep ``a`` equal those of ``b`` (a may be the seed-0 part of b)."""
    b = b.isel(run=np.isin(b.run_id.values.astype(str), a.run_id.values.astype(str)))
    sa, sb = _series(a), _series(b)
    assert sorted(a.run_id.values.astype(str)) == sorted(b.run_id.values.astype(str))
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    store = tmp_path_factory.mktemp("serial")
    return gf.sweep(NETWORK, DATA, SOLVER, GRID, SEEDS, store=store, progress=False)


def test_grid_times_seeds_gives_every_run_with_its_coordinates(serial):
    ds = serial
    assert ds.sizes["run"] == 2 * 2 * SEEDS
    combos = sorted(zip(ds.n.values.tolist(), ds.scaling.values.astype(str).tolist(), ds.seed.values.tolist()))
    assert combos == sorted((n, s, k) for n in (6, 8) for s in ("ours", "ntk") for k in range(SEEDS))
    assert (ds.status.values == "success").all()
    assert ds.t.dims == ("run", "time") and ds.loss.dims == ("run", "time")
    assert json.loads(ds.attrs["grid_coords"]) == {"n": "data.n", "scaling": "network.scaling"}
    prov = json.loads(ds.attrs["provenance"])
    assert {"gflow", "torch", "python", "device", "git_revision"} <= set(prov)
    assert (ds.n_f_evals.values > 0).all() and np.isfinite(ds.wall_time.values).all()
    # a run of the sweep is exactly the run made by hand from its configuration
    i = int(np.flatnonzero((ds.n.values == 8) & (ds.scaling.values == "ntk") & (ds.seed.values == 1))[0])
    X, y = gf.data.random_labels(8, 5, seed=0)
    Xt, yt = gf.data.random_labels(10, 5, seed=1)
    net = gf.Network(d=5, width=16, activation="tanh", scaling="ntk", seed=1)
    sol = gf.simulate(net, X, y, t1=2.0, saveat=[0.0, 0.5, 1.0, 1.5, 2.0], method="DOP853", rtol=1e-8, atol=1e-10,
                      X_test=Xt, y_test=yt)
    T = len(sol.t)
    np.testing.assert_array_equal(ds.t.values[i, :T], sol.t)
    np.testing.assert_array_equal(ds.loss.values[i, :T], sol.loss)
    np.testing.assert_array_equal(ds.test_error.values[i, :T], sol.test_error)
    assert np.isnan(ds.loss.values[i, T:]).all()
    assert ds.final_loss.values[i] == sol.loss[-1]


def test_toml_and_python_api_are_the_same_sweep(serial, tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(TOML)
    kw = load_sweep_config(path)
    assert kw["grid"] == GRID and kw["seeds"] == [0, 1] and kw["network"] == NETWORK
    a = SweepConfig.from_dict(NETWORK, DATA, SOLVER, GRID, SEEDS)
    b = SweepConfig.from_toml(path)
    assert [r.run_id for r in a.runs()] == [r.run_id for r in b.runs()]  # t1 = 2 (TOML) is t1 = 2.0 (Python)
    # the command line on a part of the grid (to keep the test short) gives the same runs
    path.write_text(TOML.replace("seeds = 2", "seeds = 1").replace('"data.n" = [6, 8]', '"data.n" = [8]'))
    rc = main(["sweep", str(path), "--out", str(tmp_path / "cli"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 runs (0 already" in out and "2 succeeded" in out and "sweep.nc" in out
    _assert_same(gf.open_sweep(tmp_path / "cli"), serial)
    # the same sweep again: every run is already there
    rc = main(["sweep", str(path), "--out", str(tmp_path / "cli"), "--no-progress"])
    assert rc == 0 and "2 runs (2 already" in capsys.readouterr().out


def test_rerun_skips_completed_runs_and_a_wider_grid_adds_only_the_new_ones(tmp_path):
    store = tmp_path / "s"
    small = SweepConfig.from_dict(NETWORK, DATA, SOLVER, {"data.n": [6]}, 1)
    counts: dict = {}
    run_sweep(small, store=store, progress=False, report=counts.update)
    assert counts["skipped"] == 0 and counts["success"] == 1
    first = next((store / "runs").glob("*.nc"))
    mtime = first.stat().st_mtime_ns
    wider = SweepConfig.from_dict(NETWORK, DATA, SOLVER, {"data.n": [6, 8]}, 1)
    with pytest.raises(SweepConfigError, match=r"adds 1 run.*grid\['data.n'\] adds \[8\].*extend=True"):
        run_sweep(wider, store=store, progress=False)  # more runs in an existing store: only when asked for
    ds = run_sweep(wider, store=store, progress=False, report=counts.update, extend=True)
    assert counts["skipped"] == 1 and counts["success"] == 1
    assert first.stat().st_mtime_ns == mtime
    assert ds.sizes["run"] == 2 and (ds.status.values == "success").all()


def test_a_changed_configuration_is_refused_naming_what_differs(tmp_path):
    """Re-running a store with other settings would replace its manifest and hide its runs: refused, naming the
    keys; limits, defaults written out and the same grid are the same sweep."""
    store = tmp_path / "s"
    solver = {**LONG_GD, "steps": 20}
    base = SweepConfig.from_dict(NETWORK, DATA, solver, {"data.n": [6, 8]}, 1)
    run_sweep(base, store=store, progress=False)
    manifest = (store / "manifest.json").read_text()
    for changed, needle in [
        (({**NETWORK, "width": 8}, DATA, solver, {"data.n": [6, 8]}, 1), r"network.width: 16 in the store vs 8 now"),
        ((NETWORK, DATA, {**solver, "step": 0.2}, {"data.n": [6, 8]}, 1), r"solver.step: 0.1 in the store vs 0.2"),
        ((NETWORK, DATA, solver, {"data.n": [6, 10]}, 1), r"grid\['data.n'\] adds \[10\]; grid\['data.n'\] drops \[8\]"),
        ((NETWORK, DATA, solver, {"data.n": [6, 8]}, [1]), r"seeds adds \[1\], drops \[0\]"),
    ]:
        for extend in (False, True):  # extend adds runs, it never drops them
            with pytest.raises(SweepConfigError, match=needle + r".*would be orphaned.*new store \(store= / --out\)"):
                run_sweep(SweepConfig.from_dict(*changed), store=store, progress=False, extend=extend)
    assert (store / "manifest.json").read_text() == manifest  # untouched
    counts: dict = {}
    same = SweepConfig.from_dict(NETWORK, {**DATA, "seed": 0}, {**solver, "max_wall_time": 60.0, "checkpoint_every": 1.0},
                                 {"data.n": [6, 8]}, [0])
    run_sweep(same, store=store, progress=False, report=counts.update)
    assert counts["skipped"] == 2
    more = SweepConfig.from_dict(NETWORK, DATA, solver, {"data.n": [6, 8]}, 2)
    ds = run_sweep(more, store=store, progress=False, report=counts.update, extend=True)
    assert (counts["skipped"], counts["success"]) == (2, 2) and ds.sizes["run"] == 4


def test_cli_refuses_a_changed_config_and_extends_with_extend(tmp_path, capsys):
    base = ("seeds = 1\n[network]\nd = 5\nwidth = {w}\nactivation = \"tanh\"\n[data]\ngenerator = \"random_labels\"\n"
            "n = 6\n[solver]\nkind = \"gradient_descent\"\nsteps = 20\nsave_every = 10\n[grid]\n\"solver.step\" = {g}\n")
    files = {}
    for name, w, g in (("a", 16, "[0.1]"), ("b", 8, "[0.1]"), ("c", 16, "[0.1, 0.2]")):
        files[name] = tmp_path / f"{name}.toml"
        files[name].write_text(base.format(w=w, g=g))
    out = str(tmp_path / "st")
    assert main(["sweep", str(files["a"]), "--out", out, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(files["b"]), "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "network.width: 16 in the store vs 8 now" in err and "--out" in err
    assert main(["sweep", str(files["c"]), "--out", out, "--no-progress"]) == 2
    assert "--extend" in capsys.readouterr().err
    assert main(["sweep", str(files["c"]), "--out", out, "--no-progress", "--extend"]) == 0
    assert "2 runs (1 already" in capsys.readouterr().out


def test_process_pool_equals_serial(serial, tmp_path):
    ds = gf.sweep(NETWORK, DATA, SOLVER, GRID, 1, store=tmp_path, executor="process", workers=2, progress=False)
    assert ds.sizes["run"] == 4
    _assert_same(ds, serial)


def test_dask_local_cluster_with_two_workers_equals_serial(serial, tmp_path):
    pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "gflow[dask]"); '
                        "CI installs it through the test extra")
    ds = gf.sweep(NETWORK, DATA, SOLVER, GRID, 1, store=tmp_path, executor="dask", workers=2, progress=False)
    assert ds.sizes["run"] == 4
    _assert_same(ds, serial)


def test_a_custom_executor_object_is_accepted(serial, tmp_path):
    ds = gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [8]}, [1], store=tmp_path, executor=LocalSerial(),
                  progress=False)
    assert ds.sizes["run"] == 1
    _assert_same(ds, serial)


def test_diverging_and_raising_runs_are_recorded_and_the_sweep_goes_on(tmp_path):
    # ĉ = 1e200 passes the sweep's up-front checks (a valid value; they solve nothing) but overflows the loss at
    # t = 0, so each of its runs raises (the NTK scaling with an odd width did, until every grid point's network
    # was checked up front)
    ds = gf.sweep({"d": 5, "width": 15, "activation": "linear"}, {"generator": "random_labels", "n": 20},
                  {"kind": "gradient_descent", "save_every": 10, "steps": 200},
                  {"solver.step": [0.05, 100.0], "network.c_hat": [1.0, 1e200]},
                  store=tmp_path, progress=False)
    status = {(float(s), float(k)): str(st) for s, k, st in zip(ds.step.values, ds.c_hat.values, ds.status.values)}
    assert status[(0.05, 1.0)] == "success"  # (0.5 diverged too: loss 1.7 → 4.9e17, once recorded as success)
    assert status[(100.0, 1.0)] == "diverged"
    assert status[(0.05, 1e200)] == status[(100.0, 1e200)] == "error"
    i = int(np.flatnonzero((ds.step.values == 100.0) & (ds.c_hat.values == 1.0))[0])
    assert "stability limit" in str(ds.message.values[i])
    loss = ds.loss.values[i]
    assert 1 <= np.isfinite(loss).sum() < 21  # the partial trajectory, up to the last iterate before it diverged
    e = int(np.flatnonzero(ds.status.values == "error")[0])
    assert "Traceback" in str(ds.message.values[e]) and "the loss at t = 0 is not finite" in str(ds.message.values[e])
    sol = gf.run_solution(ds, i)
    assert sol.status == "diverged" and sol.kind == "gd"
    with pytest.raises(ValueError, match="raised an error"):
        gf.run_solution(tmp_path, str(ds.run_id.values[e]))
    # the raising run's record file, opened as a solution, says what it is and why (not the stored traceback)
    (rec,) = [p for p in (tmp_path / "runs").glob("*.nc") if str(ds.run_id.values[e]) in p.name]
    with pytest.raises(ValueError, match=r"record of a sweep run that produced no solution \(status 'error'\): "
                                         r"ValueError: the loss at t = 0 is not finite") as info:
        gf.Solution.load(rec)
    assert "Traceback" not in str(info.value)


def test_the_command_line_summary_names_the_first_failed_run_of_each_status_and_why(tmp_path, capsys):
    # regression: the summary said "error: 1 run(s)" and exited with status 1, with no word of which run or why
    # (the message was in the store only; runs lost by their workers already showed the first one's)
    path = tmp_path / "sweep.toml"
    path.write_text('seeds = 1\n[network]\nd = 5\nwidth = 15\nactivation = "linear"\n[data]\ngenerator = '
                    '"random_labels"\nn = 20\n[solver]\nkind = "gradient_descent"\nsteps = 200\nsave_every = 10\n'
                    '[grid]\n"solver.step" = [0.05, 100.0]\n"network.c_hat" = [1.0, 1e200]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    ds = gf.open_sweep(tmp_path / "s")
    for status, needle in (("diverged", "gradient descent diverged: the loss grew to"),
                           ("error", "ValueError: the loss at t = 0 is not finite")):
        i = int(np.flatnonzero(ds.status.values == status)[0])
        line = next(x for x in out.splitlines() if x.startswith(f"  {status}: "))
        assert f"; first: {ds.run_id.values[i]} (step={ds.step.values[i]}, c_hat={ds.c_hat.values[i]}, seed 0): " \
            f"{needle}" in line, out
        assert "Traceback" not in line and len(line) < 400


@pytest.mark.parametrize("grid, needle", [
    ({"network.activation": ["tanh", "no_such_activation"]}, "unknown activation 'no_such_activation'"),
    ({"network.width": [8, -2]}, "width must be an integer >= 1, got -2"),
    ({"solver.method": ["dop853", "warp"]}, "method must be one of"),
    ({"solver.rtol": [1e-6, 0.0]}, "rtol must be > 0"),
    ({"data.seed": [0, -1]}, "seed must be an integer >= 0, got -1"),  # (was an "error" run each)
    ({"network.embedding": ["identity", {"kind": "random_features", "D": 0}]}, "RandomFeatures D must be"),
])
def test_every_grid_value_is_checked_before_the_sweep_starts(tmp_path, grid, needle):
    # not only the first run's: a bad later value used to fail in each of its runs, after the others had run
    net = {"d": 3} if "network.width" in grid else {"d": 3, "width": 8}
    with pytest.raises(gf.sweeps.SweepConfigError, match=r"grid\['[a-z.]+'\] has the value .* which cannot run: "
                       + re.escape(needle)):
        gf.sweep(net, {"generator": "random_labels", "n": 4}, {"kind": "simulate", "t1": 0.5}, grid, [0],
                 store=tmp_path, progress=False)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("network, data, solver, grid, needle", [
    ({}, {}, {"interval": [1, 0]}, None, r"solver.interval = \[1, 0\] cannot run: interval must satisfy I_l < I_r"),
    ({}, {}, {"interval": "x"}, None, r"solver.interval = 'x' cannot run: interval must be a pair"),
    ({"device": "gpu"}, {}, {}, None, r"network.device = 'gpu' cannot run: device must be a torch device"),
    ({}, {}, {}, {"solver.interval": [[-1, 1], [2, 2]]}, r"grid\['solver.interval'\] has the value \[2, 2\]"),
    ({}, {}, {}, {"network.dtype": ["float64", "float16"]},
     r"grid\['network.dtype'\] has the value 'float16', which cannot run: dtype must be torch.float64"),
    ({}, {}, {}, {"network.device": ["cpu", "gpu"]},
     r"grid\['network.device'\] has the value 'gpu', which cannot run: device must be a torch device"),
    ({}, {"generator": "quadratic_teacher"}, {}, {"data.teacher_width": [2, 0]},
     r"the \[data\] settings at the grid point \{'data.teacher_width': 0\} cannot run: teacher_width must be an "
     r"integer >= 1, got 0"),
    ({"width": 7}, {}, {}, {"network.scaling": ["ours", "ntk"]},
     r"the \[network\] settings at the grid point \{'network.scaling': 'ntk'\} cannot run: width must be even"),
    ({"d": 1}, {}, {}, {"data.generator": ["random_labels", "wei2019"]},
     r"the \[data\] settings at the grid point \{'data.generator': 'wei2019'\} cannot run: d must be an integer "
     r">= 2, got 1"),
    # error_estimate with a method or step it cannot take (each run ended with status "error")
    ({}, {}, {"error_estimate": True, "method": "RK45"}, None,
     r"the \[solver\] settings cannot run: error_estimate=True needs .* got method='RK45', step=None"),
    ({}, {}, {"error_estimate": True, "method": "dopri5"}, None, r"error_estimate=True does not take method='dopri5'"),
    # (rtol too loose for the second solve: every run ended with status "error")
    ({}, {}, {"error_estimate": True, "method": "dop853", "rtol": 0.2}, None,
     r"error_estimate=True needs rtol ≤ 0.125 .* got rtol=0.2"),
    ({}, {}, {"error_estimate": True}, {"solver.rtol": [1e-6, 0.2]},
     r"at the grid point \{'solver.rtol': 0.2\} cannot run: error_estimate=True needs rtol ≤ 0.125"),
    ({}, {}, {"error_estimate": True, "method": "euler"}, None, r"got method='euler', step=None"),
    ({"activation": "relu"}, {}, {"error_estimate": True, "method": "rk4", "step": 0.1}, None,
     r"error_estimate=True with method='rk4' needs a smooth activation"),
    ({}, {}, {"method": "filippov"}, None, r"method 'filippov' integrates piecewise-linear activations .* got "
     r"activation 'tanh'; smooth activations need no event handling"),
    ({"activation": "relu"}, {}, {"method": "sliding", "step": 0.1, "space": "weight"}, None,
     r"method 'sliding' integrates the feature-space state"),
    ({}, {}, {"error_estimate": True, "method": "rk4", "step": 0.1}, {"network.activation": ["tanh", "relu"]},
     r"at the grid point \{'network.activation': 'relu'\} cannot run: error_estimate=True with method='rk4' needs"),
])
def test_every_network_and_data_of_the_grid_and_the_device_dtype_interval_are_checked_up_front(
        network, data, solver, grid, needle, tmp_path):
    # (these passed the checks — only the first run's network and data were built, on the CPU whatever its device —
    # and then every affected run ended with status "error")
    data = {"generator": "random_labels", "n": 4, **data}
    if grid and "data.generator" in grid:
        data.pop("generator")
    with pytest.raises(SweepConfigError, match=needle):
        gf.sweep({"d": 3, "width": 8, **network}, data, {"kind": "simulate", "t1": 0.5, **solver}, grid, 1,
                 store=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_error_estimate_settings_that_run_pass_the_up_front_check(tmp_path):
    # (the check that refuses the others must let these through: filippov's own estimate, auto's pick for a ReLU-type
    # σ, a fixed-step method with a step)
    runs = [({"method": "filippov"}, "relu"), ({"method": "auto"}, "relu"), ({"method": "rk4", "step": 0.1}, "tanh")]
    for k, (solver, act) in enumerate(runs):
        ds = gf.sweep({"d": 3, "width": 8, "activation": act}, {"generator": "random_labels", "n": 4},
                      {"kind": "simulate", "t1": 0.5, "error_estimate": True, **solver}, None, [0],
                      store=tmp_path / f"s{k}", progress=False)
        assert list(ds.status.values) == ["success"], (solver, ds.message.values)
        assert np.isfinite(ds.error_estimate.values[0, -1])


@pytest.mark.parametrize("change, key", [
    ({"network": {**NETWORK, "widht": 3}}, "network.widht"),
    ({"network": {**NETWORK, "seed": 3}}, "network.seed"),
    ({"grid": {"data.n": 6}}, "grid['data.n'] must be a list"),
    ({"grid": {"n": [6]}}, "grid key 'n'"),
    ({"grid": {"model.n": [6]}}, "grid key 'model.n'"),
    ({"grid": {"data.n": [6], "solver.tl": [1.0]}}, "solver.tl"),
    ({"data": {"generator": "mnist", "n": 4}}, "data.generator = 'mnist'"),
    ({"data": {"generator": "random_labels", "n": 4, "teacher_width": 3}}, "data.teacher_width"),
    ({"solver": {"kind": "ode", "t1": 1.0}}, "solver.kind = 'ode'"),
    ({"solver": {"kind": "simulate", "t1": 1.0, "checkpoint": "x"}}, "solver.checkpoint"),
    ({"network": {**NETWORK, "activation": "nope"}}, "activation"),
    ({"data": {"generator": "random_labels"}, "grid": {}}, "data.n"),
    ({"seeds": 0}, "seeds"),
    ({"grid": {"data.n": [6, 8, 6]}}, "grid['data.n'] repeats 6"),  # (it named a run-id hash alone)
])
def test_bad_configurations_fail_up_front_naming_the_key(tmp_path, change, key):
    kw = {"network": NETWORK, "data": DATA, "solver": SOLVER, "grid": {"data.n": [6]}, "seeds": 1, **change}
    with pytest.raises(SweepConfigError, match=key.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        gf.sweep(**kw, store=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_bad_toml_and_cli_errors_are_clean(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace("[grid]", "[grid]\n\"network.depth\" = [1, 2]"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "network.depth" in err and "Traceback" not in err
    path.write_text(TOML + "\n[extra]\nx = 1\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "s")]) == 2
    assert "unknown top-level key(s) ['extra']" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_a_killed_sweep_keeps_finished_runs_and_a_rerun_completes_it_once(tmp_path, fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr", reason='zarr is not installed (pip install "gflow[zarr]")')
    from gflow.sweeps.store import _records

    cfg = tmp_path / "slow.toml"
    cfg.write_text(
        'seeds = 3\n[network]\nd = 5\nwidth = 64\n[data]\ngenerator = "random_labels"\nn = 20\n'
        '[solver]\nkind = "gradient_descent"\nstep = 0.5\nsteps = 500\nsave_every = 50\n'
        '[grid]\n"network.scaling" = ["ours", "mf"]\n'
    )
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gflow", "sweep", str(cfg), "--out", str(store), "--format", fmt],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (store / "manifest.json").exists() and _records(store, fmt):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    def stamps() -> dict:
        return {k: p.stat().st_mtime_ns for k, p in _records(store, fmt).items()}

    before = stamps()
    assert 1 <= len(before) < 6
    partial = gf.open_sweep(store)  # a killed sweep is readable: the finished runs and the pending ones
    assert set(partial.status.values.astype(str)) <= {"success", "pending"}
    assert (partial.status.values == "success").sum() == len(before)
    # what writes killed midway leave (a file, a zarr group's folder, an earlier gflow's name) goes; the rest stays
    runs = store / ("runs" if fmt == "netcdf" else "runs.zarr")
    if fmt == "netcdf":
        leftovers = [runs / ".abc.nc.4242.0123abcd.tmp", runs / ".abc.nc.4242.tmp"]
        for q in leftovers:
            q.write_bytes(b"cut")
    else:
        leftovers = [runs / ".abc.4242.0123abcd.old", runs / ".abc.4242.0123abcd.tmp"]
        for q in leftovers:
            q.mkdir()
            (q / "zarr.json").write_text("{}")
    kept = [runs / ".keep.tmp", store / ".env.1.old", store / ".sweep.nc.77.89abcdef.tmp"]  # not a run record's
    for q in kept:
        q.write_text("not ours")
    counts: dict = {}
    ds = run_sweep(SweepConfig.from_toml(cfg), store=store, progress=False, report=counts.update)
    assert not any(q.exists() for q in leftovers) and all(q.exists() for q in kept)
    assert counts["skipped"] == len(before) and counts["success"] == 6 - len(before)
    assert ds.sizes["run"] == 6 and len(set(ds.run_id.values.tolist())) == 6
    assert (ds.status.values == "success").all()
    assert sorted(stamps()) == sorted(ds.run_id.values.tolist())
    assert {k: v for k, v in stamps().items() if k in before} == before  # finished runs were not redone
    assert (store / ("sweep.zarr" if fmt == "zarr" else "sweep.nc")).exists()


@pytest.mark.parametrize("fmt", ["netcdf", "zarr", "zarr-array"])
def test_a_damaged_run_record_is_set_aside_and_its_run_repeated(tmp_path, fmt):
    # (a truncated runs/<id>.nc counted as finished: every re-run said all runs were "already in" the store, and
    # open_sweep showed the run "pending" with "no run file yet", for good)
    # ("zarr-array": a zarr record's time array cut while its attributes read — the review of the fix: counted as
    # finished by the sweep, which read the status alone, and shown damaged by open_sweep, for good)
    fmt, cut_array = fmt.removesuffix("-array"), fmt.endswith("-array")
    if fmt == "zarr":
        pytest.importorskip("zarr", reason='zarr is not installed (pip install "gflow[zarr]")')
    from gflow.sweeps.store import _records

    cfg = SweepConfig.from_dict(NETWORK, {**DATA, "n": 6}, SOLVER, None, 2)
    ds = run_sweep(cfg, store=tmp_path, progress=False, format=fmt)
    good = gf.run_solution(ds, 0).loss
    run_id = str(ds.run_id.values[0])
    rec = _records(tmp_path, fmt)[run_id]
    if fmt == "netcdf":
        os.truncate(rec, 3000)  # (what a full disk or a cut copy leaves)
    elif cut_array:
        chunks = [p for p in (rec / "time").rglob("*") if p.is_file() and not p.name.startswith("zarr.json")
                  and not p.name.startswith(".")]
        assert chunks
        for p in chunks:
            os.truncate(p, 5)
    else:
        (rec / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    if not cut_array:
        with pytest.raises(ValueError, match=rf"the record {re.escape(str(rec))} of run {run_id} cannot be read"):
            gf.run_solution(tmp_path, 0)
    assert "cannot be read (damaged)" in str(gf.open_sweep(tmp_path, consolidated=False).message.values[0])
    counts: dict = {}
    with pytest.warns(gf.GFlowWarning, match=rf"1 run file\(s\) of the store .* could not be read \(damaged\) "
                                             rf"and are computed again; set aside as {rec.name}.damaged"):
        ds = run_sweep(cfg, store=tmp_path, progress=False, report=counts.update)
    assert (counts["skipped"], counts["success"]) == (1, 1)
    assert ds.status.values.tolist() == ["success", "success"]
    np.testing.assert_array_equal(gf.run_solution(ds, 0).loss, good)
    assert rec.with_name(rec.name + ".damaged").exists() and sorted(_records(tmp_path, fmt)) == sorted(ds.run_id.values)
    run_sweep(cfg, store=tmp_path, progress=False, report=counts.update)  # (and nothing more the next time)
    assert counts["skipped"] == 2


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_keep_weights_on_runs_recorded_without_weights_warns_naming_them(tmp_path, fmt):
    # (keep_weights=True was ignored without a word for the runs already in the store: their W_final read back
    # all NaN)
    if fmt == "zarr":
        pytest.importorskip("zarr", reason='zarr is not installed (pip install "gflow[zarr]")')
    kw = dict(network=NETWORK, data={**DATA, "n": 6}, solver=SOLVER, store=tmp_path, progress=False)
    ds = gf.sweep(**kw, seeds=[0], format=fmt)
    first = str(ds.run_id.values[0])
    with pytest.warns(gf.GFlowWarning, match=rf"keep_weights=True: 1 run\(s\) already in the store .* were recorded "
                                             rf"without their weights .* delete their records \({first}"):
        ds = gf.sweep(**kw, seeds=[0, 1], extend=True, keep_weights=True)
    assert np.isnan(gf.run_solution(ds, 0).W_final).all()
    assert np.isfinite(gf.run_solution(ds, 1).W_final).all()  # the run computed now has them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every run with its weights, or keep_weights off: nothing to say
        gf.sweep(**kw, seeds=[0, 1])
        record = tmp_path / ("runs.zarr" if fmt == "zarr" else "runs") / (first + ("" if fmt == "zarr" else ".nc"))
        shutil.rmtree(record) if record.is_dir() else record.unlink()
        ds = gf.sweep(**kw, seeds=[0, 1], keep_weights=True)  # as the warning says: deleted and computed again
    assert np.isfinite(gf.run_solution(ds, 0).W_final).all()


def test_runs_come_back_as_solutions_and_sweeps_plot(serial):
    import matplotlib

    matplotlib.use("Agg")
    sol = gf.run_solution(serial, 3)
    assert isinstance(sol, gf.Solution) and sol.ok
    np.testing.assert_array_equal(sol.loss, serial.loss.values[3, : len(sol.t)])
    assert json.loads(sol.extra_attrs["sweep_point"]) == {"data.n": int(serial.n[3]),
                                                          "network.scaling": str(serial.scaling.values[3])}
    ax = gf.plotting.plot_loss_bounds(sol).axes[0]
    assert ax.get_yscale() == "log"
    ax = gf.plotting.plot_sweep(serial, x="n", y="loss", hue="scaling").axes[0]
    assert len(ax.get_legend().get_texts()) == 2
    ax = gf.plotting.plot_sweep(serial.isel(run=serial.scaling.values == "ours"), x="t", y="loss",
                                hue="seed").axes[0]
    assert len(ax.lines) == 4
    with pytest.raises(ValueError, match="per-run coordinate"):
        gf.plotting.plot_sweep(serial, x="nonsense")
    with pytest.raises(ValueError, match="run must be in"):
        gf.run_solution(serial, 99)


def test_final_value_plots_fit_a_plain_savefig_with_integer_ticks_for_integer_keys(serial, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = gf.plotting.plot_sweep(serial, x="n", y="test_error", hue="scaling").axes[0]
    fig = ax.figure
    fig.savefig(tmp_path / "s.png")  # a plain savefig, no bbox_inches="tight"
    renderer = fig.canvas.get_renderer()
    label = ax.yaxis.label.get_window_extent(renderer)
    assert ax.get_ylabel() == "test_error at the end" and label.x0 >= 0 and label.x1 <= fig.bbox.width
    assert ax.get_xticks().tolist() == [6, 8]  # the grid's n, not 6.5, 7.0, 7.5
    final = serial.test_error.values[:, -1]
    assert ax.get_yscale() == ("log" if final.max() > 10 * final.min() else "linear")
    plt.close("all")


def test_unknown_executor_and_missing_store_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'spark'"):
        gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [6]}, store=tmp_path, executor="spark", progress=False)
    with pytest.raises(ValueError, match="executor='local' runs one run at a time"):
        gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [6]}, store=tmp_path / "x", workers=2, progress=False)
    with pytest.raises(FileNotFoundError, match="not a sweep store"):
        gf.open_sweep(tmp_path / "nothing")


def _experiment_run(spec, checkpoint=None):
    """A tiny run of gflow reproduce's kind (a task of gflow.experiments.tasks)."""
    X, y = gf.data.random_labels(3, 4, seed=0)
    return gf.gradient_descent(gf.Network(d=4, width=8, seed=0), X, y, step=0.5, steps=2, save_every=1,
                               progress=None), {}


def test_a_sweep_and_gflow_reproduce_refuse_each_others_folder(tmp_path, capsys):
    # the README once had `gflow sweep ... --out results/exp1` and `gflow reproduce all ... --out results`
    from gflow.experiments.tasks import Task, execute

    task = Task(f"{__name__}:_experiment_run", {"k": 0}, {"k": 0})
    exp1 = tmp_path / "results" / "exp1"
    execute([task], exp1, progress=False)  # what reproduce leaves in results/exp1 (before runs.nc is written)
    toml = tmp_path / "sweep.toml"
    toml.write_text(TOML)
    assert main(["sweep", str(toml), "--out", str(exp1)]) == 2
    err = capsys.readouterr().err
    assert f"store (--out) {exp1} holds the results of gflow reproduce" in err and "exp1-sweep" in err
    assert not (exp1 / "manifest.json").exists()

    store = tmp_path / "sweeps" / "exp1"
    gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [6]}, 1, store=store, progress=False)
    with pytest.raises(ValueError, match=r"is a sweep store \(manifest\.json of gflow sweep"):
        execute([task], store, progress=False)
    assert main(["reproduce", "exp1", "--preset", "tiny", "--out", str(store.parent)]) == 2
    assert "where they would mix with the sweep's" in capsys.readouterr().err
    assert len(list((store / "runs").glob("*.nc"))) == 1


def test_native_runs_get_their_own_checkpoint_file_and_scipy_runs_none(tmp_path, monkeypatch):
    from gflow.sweeps import config as sweep_config

    seen = []
    real = sweep_config._solver_fn

    def spy(kind):
        fn = real(kind)

        @functools.wraps(fn)
        def solve(*args, **kw):
            seen.append(kw.get("checkpoint"))
            return fn(*args, **kw)  # the real solver, checkpointing for real
        return solve

    monkeypatch.setattr(sweep_config, "_solver_fn", spy)
    native = {**SOLVER, "method": "dop853"}
    ds = gf.sweep(NETWORK, {**DATA, "n": 6}, native, None, 2, store=tmp_path / "a", progress=False)
    assert (ds.status.values == "success").all()
    assert sorted(seen) == sorted(str(tmp_path / "a" / "checkpoints" / f"{i}.ckpt") for i in ds.run_id.values)
    assert not list((tmp_path / "a" / "checkpoints").glob("*.ckpt"))  # deleted once each run succeeded
    seen.clear()
    gf.sweep(NETWORK, {**DATA, "n": 6}, SOLVER, None, 1, store=tmp_path / "b", progress=False)  # scipy DOP853
    assert seen == [None]
    with pytest.raises(SweepConfigError, match="solver.checkpoint"):
        gf.sweep(NETWORK, {**DATA, "n": 6}, {**SOLVER, "checkpoint": "one.ckpt"}, store=tmp_path, progress=False)


def test_the_documented_example_file_is_a_valid_sweep():
    cfg = SweepConfig.from_toml(ROOT / "docs" / "sweep.toml")
    assert len(cfg.runs()) == 27 and cfg.grid["network.scaling"] == ["ours", "ntk", "mf"]


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_retry_failed_repeats_only_the_failed_runs(tmp_path, fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr", reason='zarr is not installed (pip install "gflow[zarr]")')
    cfg = SweepConfig.from_dict({"d": 5, "width": 16, "activation": "linear"}, {"generator": "random_labels", "n": 10},
                                {"kind": "gradient_descent", "steps": 100, "save_every": 10},
                                {"solver.step": [0.05, 100.0]})  # (0.5 diverges too)
    counts: dict = {}
    run_sweep(cfg, store=tmp_path, progress=False, report=counts.update, format=fmt)
    assert (counts["success"], counts["failed"]) == (1, 1)
    run_sweep(cfg, store=tmp_path, progress=False, report=counts.update)
    assert counts["skipped"] == 2
    ds = run_sweep(cfg, store=tmp_path, progress=False, retry_failed=True, report=counts.update)
    assert counts["skipped"] == 1 and counts["failed"] == 1
    assert sorted(ds.status.values.tolist()) == ["diverged", "success"]


LONG_GD = {"kind": "gradient_descent", "step": 0.1, "steps": 3000, "save_every": 100}


@pytest.mark.parametrize("solver", [{**LONG_GD, "steps": 1000}, {"kind": "simulate", "t1": 50.0, "method": "dop853"}],
                         ids=["gd", "dop853"])
def test_a_finished_run_whose_record_cannot_be_written_resumes_from_its_checkpoint(tmp_path, monkeypatch, solver):
    # regression: the solver deleted a finished run's checkpoint before the sweep wrote the run's record; a record
    # that could not be written (a full disk) left the run pending with nothing to resume: repeated from t = 0
    import errno

    from gflow.sweeps import run as srun

    real, calls = srun.write_record, []

    def full_disk_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(srun, "write_record", full_disk_once)
    kw = dict(store=tmp_path, progress=False)
    with pytest.warns(gf.GFlowWarning, match=r"1 run\(s\) .* stay pending.*No space left on device"):
        ds = gf.sweep(NETWORK, {**DATA, "n": 6}, solver, **kw)
    assert ds.status.values.tolist() == ["pending"]
    assert [p.stem for p in (tmp_path / "checkpoints").glob("*.ckpt")] == ds.run_id.values.tolist()
    ds = gf.sweep(NETWORK, {**DATA, "n": 6}, solver, **kw)
    sol = gf.run_solution(ds, 0)
    assert sol.ok and sol.stats["resumed"] is True  # (the whole run, from its final checkpoint)
    ref = gf.sweep(NETWORK, {**DATA, "n": 6}, solver, store=tmp_path / "ref", progress=False)
    np.testing.assert_array_equal(ds.loss.values, ref.loss.values)
    assert gf.run_solution(ref, 0).stats["n_f_evals"] == sol.stats["n_f_evals"]
    assert not list((tmp_path / "checkpoints").iterdir())  # deleted once the record was written


def test_raising_max_wall_time_resumes_the_stopped_runs_from_their_checkpoints(tmp_path):
    """The time_budget message says "raise max_wall_time": re-running with a larger one is the same run (the
    limits are not part of the run id), repeated from its checkpoint, not a new run from t = 0."""
    cfg = lambda **limits: SweepConfig.from_dict(
        NETWORK, {**DATA, "n": 6}, {**LONG_GD, **limits}, None, 1)
    counts: dict = {}
    ds = run_sweep(cfg(max_wall_time=1e-3), store=tmp_path, progress=False, report=counts.update)
    assert ds.status.values.tolist() == ["time_budget"] and ds.final_t.values[0] < 300.0
    run_id = ds.run_id.values[0]
    assert [p.stem for p in (tmp_path / "checkpoints").glob("*.ckpt")] == [run_id]
    assert cfg(max_wall_time=60.0, checkpoint_every=5.0, keep_checkpoint=True).runs()[0].run_id == run_id
    # the same budget again: complete as recorded (a failure is repeated only with --retry-failed)
    run_sweep(cfg(max_wall_time=1e-3), store=tmp_path, progress=False, report=counts.update)
    assert counts["skipped"] == 1
    ds = run_sweep(cfg(max_wall_time=60.0), store=tmp_path, progress=False, report=counts.update)
    assert counts["skipped"] == 0 and counts["success"] == 1
    assert ds.run_id.values.tolist() == [run_id] and ds.status.values.tolist() == ["success"]
    assert ds.final_t.values[0] == pytest.approx(300.0)
    assert gf.run_solution(ds, 0).stats["resumed"] is True
    assert [p.stem for p in (tmp_path / "runs").glob("*.nc")] == [run_id]
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))  # deleted once the run succeeded


def test_a_raised_limit_repeats_the_stopped_runs_also_after_the_re_run_that_raised_it_was_killed(tmp_path):
    # (the retry compared the limits with the manifest's, which the killed re-run had already rewritten: the next
    # identical re-run repeated none of the time_budget runs left and reported the sweep complete)
    cfg = lambda **limits: SweepConfig.from_dict(NETWORK, {**DATA, "n": 6}, {**LONG_GD, **limits}, None, 3)
    ds = run_sweep(cfg(max_wall_time=1e-3), store=tmp_path, progress=False)
    assert ds.status.values.tolist() == ["time_budget"] * 3

    class KilledAfterOneRun(LocalSerial):  # as a SIGKILL after the first run: manifest written, two runs left
        def as_completed(self, futures):
            yield next(iter(super().as_completed(futures)))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg(max_wall_time=60.0), store=tmp_path, progress=False, executor=KilledAfterOneRun())
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["solver"]["max_wall_time"] == 60.0
    assert sorted(gf.open_sweep(tmp_path).status.values.tolist()) == ["success", "time_budget", "time_budget"]
    counts: dict = {}
    ds = run_sweep(cfg(max_wall_time=60.0), store=tmp_path, progress=False, report=counts.update)
    assert (counts["skipped"], counts["success"]) == (1, 2)
    assert ds.status.values.tolist() == ["success"] * 3
    assert all(gf.run_solution(ds, i).stats["resumed"] for i in range(3))  # from their checkpoints


def test_a_run_limit_cannot_be_swept():
    with pytest.raises(SweepConfigError, match=r"solver.max_wall_time is a run limit.*set it in \[solver\]"):
        SweepConfig.from_dict(NETWORK, {**DATA, "n": 6}, LONG_GD, {"solver.max_wall_time": [1.0, 2.0]}, 1)


def test_a_store_with_the_old_run_ids_is_migrated_not_recomputed(tmp_path):
    """Stores written before the limits left the run id: their records and checkpoints are renamed to the
    current ids (with a warning), so that re-running them skips their finished runs."""
    from gflow.sweeps.config import run_id_of

    cfg = SweepConfig.from_dict(NETWORK, DATA, {**LONG_GD, "steps": 20}, {"data.n": [6, 7]}, 1)
    ds = run_sweep(cfg, store=tmp_path, progress=False)
    # make it a store of the earlier scheme: ids hashing every solver keyword, no run_id_version in the manifest
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["run_id_version"]
    for r, spec in zip(manifest["runs"], cfg.runs()):
        old = run_id_of(spec.config, version=1)
        assert old != r["run_id"]
        (tmp_path / "runs" / f"{r['run_id']}.nc").rename(tmp_path / "runs" / f"{old}.nc")
        r["run_id"] = old
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    counts: dict = {}
    with pytest.warns(gf.GFlowWarning, match=r"earlier gflow.*renamed 2 run record"):
        again = run_sweep(cfg, store=tmp_path, progress=False, report=counts.update)
    assert counts["skipped"] == 2
    assert again.run_id.values.tolist() == ds.run_id.values.tolist()
    np.testing.assert_array_equal(again.loss.values, ds.loss.values)
    # a manifest whose ids this gflow cannot reproduce is refused, not recomputed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["run_id_version"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SweepConfigError, match=r"cannot be matched to the current run ids.*new store"):
        run_sweep(cfg, store=tmp_path, progress=False)


def test_sweep_benchmark_quick_mode_writes_json(tmp_path):
    import runpy

    mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_sweep.py"))
    out = tmp_path / "b.json"
    mod["main"](["--quick", "--executors", "local", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["rows"][0]["runs"] == 4 and data["rows"][0]["all_success"]


class _LosesFirstRun(LocalSerial):
    """A serial executor whose first run is lost by its 'worker' (as when a process is killed)."""

    def __init__(self):
        self.lost = False

    def submit(self, fn, spec):
        if not self.lost:
            self.lost = True

            def die(_):
                raise RuntimeError("worker killed")

            return super().submit(die, spec)
        return super().submit(fn, spec)


def test_a_run_lost_by_its_worker_stays_pending_and_the_next_sweep_repeats_it(tmp_path):
    kw = dict(network=NETWORK, data=DATA, solver=SOLVER, grid={"data.n": [6, 8]}, store=tmp_path, progress=False)
    with pytest.warns(gf.GFlowWarning, match="1 run\\(s\\) of the sweep .* lost .* worker killed"):
        ds = gf.sweep(**kw, executor=_LosesFirstRun())
    assert sorted(ds.status.values.tolist()) == ["pending", "success"]
    assert not (tmp_path / "sweep.nc").exists()
    ds = gf.sweep(**kw)
    assert ds.status.values.tolist() == ["success", "success"]


# ------------------------------------------------------------------------------------------------------------
# One worker per GPU: the plan is a pure function; pinning is checked with mocked device counts

def test_plan_workers_gives_one_worker_per_gpu_and_leaves_cpu_runs_alone():
    from gflow.sweeps.executors import plan_workers, run_device

    assert plan_workers(None, cores=16, gpus=4, use_gpu=True) == (4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"])
    assert plan_workers(3, cores=16, gpus=2, use_gpu=True) == (3, ["cuda:0", "cuda:1", "cuda:0"])
    assert plan_workers(1, cores=16, gpus=2, use_gpu=True) == (1, ["cuda:0"])
    assert plan_workers(None, cores=16, gpus=4, use_gpu=False) == (16, [None] * 16)  # CPU runs: one per core
    assert plan_workers(None, cores=2, gpus=0, use_gpu=True) == (2, [None, None])
    assert plan_workers(5, cores=2, gpus=0, use_gpu=False) == (5, [None] * 5)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        plan_workers(0, cores=2, gpus=1, use_gpu=True)
    with pytest.raises(ValueError, match="gpus must be a non-negative integer"):
        plan_workers(None, cores=2, gpus=-1, use_gpu=True)
    # a run's "cuda" is its worker's GPU; explicit devices and CPU runs are never moved
    assert run_device("cuda", "cuda:3") == "cuda:3"
    assert run_device("cpu", "cuda:3") == "cpu" and run_device("cuda:0", "cuda:3") == "cuda:0"
    assert run_device("cuda", None) == "cuda" and run_device("cpu", None) == "cpu"


def _pins(ex, n: int) -> dict:
    from gflow.sweeps.executors import _probe

    futs = [ex.submit(_probe, i) for i in range(n)]
    return dict(f.result() for f in ex.as_completed(futs))  # {pid: device}


def test_process_pool_pins_each_process_to_its_own_gpu(monkeypatch):
    from gflow.sweeps import executors

    monkeypatch.setattr(executors, "gpu_count", lambda: 2)
    with executors.ProcessPool(use_gpu=True) as ex:  # no workers given: one per (mocked) GPU
        assert ex.workers == 2 and ex.devices == ["cuda:0", "cuda:1"]
        pins = _pins(ex, 8)
    # every process that ran a task is pinned, to a device of its own (CUDA itself is absent here, so pinning
    # only records the device; with CUDA it also makes it the process's current device)
    assert set(pins.values()) <= {"cuda:0", "cuda:1"}
    assert len(set(pins.values())) == len(pins)
    with executors.ProcessPool(2) as ex:  # CPU runs: unpinned
        assert ex.devices == [None, None] and set(_pins(ex, 2).values()) == {None}


def test_dask_local_cluster_has_one_pinned_worker_per_gpu(monkeypatch):
    pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "gflow[dask]")')
    from gflow.sweeps import executors

    monkeypatch.setattr(executors, "gpu_count", lambda: 2)
    with executors.DaskExecutor(use_gpu=True) as ex:
        workers = ex.client.scheduler_info()["workers"]
        assert len(workers) == 2 and ex.devices == ["cuda:0", "cuda:1"]
        seen = {}
        for addr in workers:
            pid, dev = ex.client.submit(executors._probe, addr, workers=[addr], pure=False).result()
            seen[addr] = dev
    assert sorted(seen.values()) == ["cuda:0", "cuda:1"]


def test_runs_record_their_device_and_cuda_runs_without_a_gpu_fail_up_front(serial, tmp_path):
    assert set(serial.device.values.tolist()) == {"cpu"}
    # (gflow's dop853: scipy's DOP853, SOLVER's, is refused on a CUDA network before — its settings cannot run there)
    with pytest.raises(SweepConfigError, match="network.device asks for 'cuda' but this machine has no CUDA"):
        gf.sweep({**NETWORK, "device": "cuda"}, {**DATA, "n": 6}, {**SOLVER, "method": "dop853"}, store=tmp_path,
                 progress=False)
    with pytest.raises(SweepConfigError, match=r"scipy method 'DOP853' runs on the CPU, but the network is on cuda"):
        gf.sweep({**NETWORK, "device": "cuda"}, {**DATA, "n": 6}, SOLVER, store=tmp_path, progress=False)


# ------------------------------------------------------------------------------------------------------------
# submitit without SLURM: local processes and the in-process debug cluster

def test_submitit_local_cluster_runs_the_sweep_end_to_end(serial, tmp_path, capsys):
    pytest.importorskip("submitit", reason='submitit is not installed (pip install "gflow[slurm]"); CI installs it '
                        "through the test extra")
    path = tmp_path / "s.toml"
    path.write_text(TOML.replace("seeds = 2", "seeds = 1").replace('"data.n" = [6, 8]', '"data.n" = [8]'))
    rc = main(["sweep", str(path), "--out", str(tmp_path / "o"), "--executor", "submitit", "--cluster", "local",
               "--submitit-param", "timeout_min=10", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert "2 succeeded" in capsys.readouterr().out
    assert list((tmp_path / "o" / "submitit").glob("*_log.out"))  # the jobs ran through submitit
    _assert_same(gf.open_sweep(tmp_path / "o"), serial)


def test_submitit_debug_cluster_and_option_errors(serial, tmp_path, capsys):
    pytest.importorskip("submitit", reason='submitit is not installed (pip install "gflow[slurm]")')
    ds = gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [8]}, [1], store=tmp_path / "d", executor="submitit",
                  executor_options={"cluster": "debug"}, progress=False)
    _assert_same(ds, serial)
    with pytest.raises(ValueError, match="cluster must be one of"):
        gf.sweep(NETWORK, DATA, SOLVER, {"data.n": [8]}, store=tmp_path / "e", executor="submitit",
                 executor_options={"cluster": "pbs"}, progress=False)
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    assert main(["sweep", str(path), "--out", str(tmp_path / "f"), "--cluster", "local"]) == 2
    assert "--cluster and --submitit-param are for --executor submitit" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# Progress: bars in a terminal, nothing in logs

class _Terminal:
    """A stderr that says it is a terminal and keeps what is written to it."""

    def __init__(self):
        import io

        self.buf = io.StringIO()

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        return self.buf.write(s)

    def flush(self) -> None:
        pass


def test_progress_bars_in_a_terminal_and_quiet_in_logs(tmp_path, monkeypatch, capsys):
    kw = dict(network=NETWORK, data=DATA, solver=SOLVER, grid={"data.n": [6, 8]})
    gf.sweep(**kw, store=tmp_path / "log")  # progress=None, stderr captured (not a terminal): nothing
    assert capsys.readouterr().err == ""
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    gf.sweep(**kw, store=tmp_path / "tty")
    text = term.buf.getvalue()
    # the overall bar: runs done of total, failed, remaining and the estimated time left
    assert "sweep:" in text and "2/2" in text and "done=2" in text and "failed=0" in text and "remaining=0" in text
    assert "<" in text  # tqdm's [elapsed<remaining] estimate
    # per-run bars over flow time (serial executor: the runs share this terminal)
    assert "t = " in text and "/2 [" in text


def test_workers_take_the_parents_float64_tanh_route(monkeypatch):
    # timed in each process, the route could flip on a loaded machine (a process-pool sweep then differed from the
    # serial runs by 4e-16); the environment variable fixes it, and the pools pass the parent's choice on
    from gflow.model import activations as A
    from gflow.sweeps import executors as E

    other = "sigmoid" if A.float64_tanh_route() == "tanh" else "tanh"
    monkeypatch.delenv(A.TANH_ROUTE_ENV, raising=False)
    threads = torch.get_num_threads()
    E._init_worker(threads, None, other)
    try:
        A.float64_tanh_route.cache_clear()
        assert A.float64_tanh_route() == other
        monkeypatch.setenv(A.TANH_ROUTE_ENV, "fast")
        A.float64_tanh_route.cache_clear()
        with pytest.raises(ValueError, match="GFLOW_FLOAT64_TANH_ROUTE must be one of .*, got 'fast'"):
            A.float64_tanh_route()
    finally:
        monkeypatch.delenv(A.TANH_ROUTE_ENV, raising=False)
        A.float64_tanh_route.cache_clear()


@pytest.mark.parametrize("vendor,capability,route", [
    ("GenuineIntel", "AVX512", "tanh"),  # MKL's vectorised tanh: faster than the sigmoid route
    ("AuthenticAMD", "AVX512", "sigmoid"),  # MKL's generic path, AVX-512 or not (Zen 5: 2.8× slower)
    ("AuthenticAMD", "AVX2", "sigmoid"),
    ("HygonGenuine", "AVX2", "sigmoid"),
])
def test_the_cpu_decides_the_float64_tanh_route_without_timing(monkeypatch, vendor, capability, route):
    # (torch's route: what runs where gflow's native kernel cannot be built, or does not suit the tensors)
    from gflow.model import activations as A

    def no_timing(*_):
        raise AssertionError("timed")

    monkeypatch.delenv(A.TANH_ROUTE_ENV, raising=False)
    monkeypatch.setattr(A, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)  # (a torch built without MKL times)
    monkeypatch.setattr(A, "_tanh_both_into_tanh", no_timing)
    monkeypatch.setattr(A, "_tanh_both_into_sigmoid", no_timing)
    A._torch_tanh_route.cache_clear()
    try:
        assert A._torch_tanh_route() == route
    finally:
        A._torch_tanh_route.cache_clear()


@pytest.mark.parametrize("vendor,capability,mkl", [(None, "AVX512", True), ("GenuineIntel", "AVX2", True),
                                                  ("CentaurHauls", "AVX2", True), ("AuthenticAMD", "AVX512", False)])
def test_other_cpus_time_the_float64_tanh_route(monkeypatch, vendor, capability, mkl):
    # an unknown vendor (or /proc/cpuinfo unreadable), an Intel CPU without AVX-512, or an AMD one under a torch
    # built without MKL (its float64 tanh is then SLEEF's, vectorised): timed, the slower loses
    from gflow.model import activations as A

    slept = {"tanh": 0.0, "sigmoid": 0.0}

    def slow(name, seconds):
        def fn(*_):
            slept[name] += seconds
            time.sleep(seconds)
        return fn

    monkeypatch.delenv(A.TANH_ROUTE_ENV, raising=False)
    monkeypatch.setattr(A, "_cpu_vendor", lambda: vendor)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    for slower, want in (("tanh", "sigmoid"), ("sigmoid", "tanh")):
        monkeypatch.setattr(A, "_tanh_both_into_tanh", slow("tanh", 0.004 if slower == "tanh" else 0.0))
        monkeypatch.setattr(A, "_tanh_both_into_sigmoid", slow("sigmoid", 0.004 if slower == "sigmoid" else 0.0))
        A._torch_tanh_route.cache_clear()
        try:
            assert A._torch_tanh_route() == want
        finally:
            A._torch_tanh_route.cache_clear()
    assert slept["tanh"] > 0.0 and slept["sigmoid"] > 0.0  # both were timed


def test_the_cpu_vendor_is_read_from_proc_cpuinfo_or_none(monkeypatch, tmp_path):
    from gflow.model import activations as A

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path,
                                                                        *a, **k))
    assert A._cpu_vendor() == "AuthenticAMD"
    info.write_text("processor\t: 0\n")  # (an ARM machine: no vendor_id line)
    assert A._cpu_vendor() is None
    info.unlink()
    assert A._cpu_vendor() is None


def test_bad_counts_and_flags_of_a_sweep_are_refused_up_front(tmp_path):
    # (a fixed solver.save_every = 0 ran every point into status "error"; 10**30 seeds or workers were an
    # OverflowError; progress took anything)
    gd = {"kind": "gradient_descent", "step": 0.1, "steps": 5, "save_every": 0}
    with pytest.raises(gf.sweeps.SweepConfigError, match="solver.save_every = 0 cannot run: save_every must be"):
        gf.sweep({"d": 3, "width": 8}, {"generator": "random_labels", "n": 4}, gd, store=tmp_path, progress=False)
    with pytest.raises(gf.sweeps.SweepConfigError, match="solver.max_steps = 'many' cannot run: max_steps must"):
        gf.sweep(NETWORK, {**DATA, "n": 6}, {**SOLVER, "max_steps": "many"}, store=tmp_path, progress=False)
    with pytest.raises(gf.sweeps.SweepConfigError, match="seeds must be from 1 to 10000000"):
        gf.sweep(NETWORK, {**DATA, "n": 6}, SOLVER, seeds=10**30, store=tmp_path, progress=False)
    with pytest.raises(ValueError, match="workers must be a positive integer, at most 65536"):
        gf.sweep(NETWORK, {**DATA, "n": 6}, SOLVER, store=tmp_path, executor="process", workers=10**30, progress=False)
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        gf.sweep(NETWORK, {**DATA, "n": 6}, SOLVER, store=tmp_path, progress="yes")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("solver, grid, needle", [
    ({"kind": "simulate", "t1": 1.0, "method": "dop853", "options": {"frist_step": 0.1}}, None,
     r"the \[solver\] settings cannot run: unknown option\(s\) \['frist_step'\]"),
    ({"kind": "simulate", "t1": 1.0, "method": "rk4"}, None,
     r"'rk4' is a fixed-step method and needs an explicit step"),
    ({"kind": "simulate", "t1": 1.0, "method": "dop853", "saveat": [0, 0.5, 0.2]}, None, r"strictly increasing"),
    ({"kind": "simulate", "t1": 1.0}, {"solver.method": ["dop853", "rk4"]},
     r"at the grid point \{'solver.method': 'rk4'\} cannot run: .*needs an explicit step"),
    ({"kind": "gradient_descent", "step": 0.5, "steps": 10, "features_at": [0.25]}, None, r"multiples of the step"),
    ({"kind": "gradient_descent", "save_every": 10}, {"solver.steps": [200, 10**9]},
     r"at the grid point \{'solver.steps': 1000000000\} cannot run: .*would save 100000001 points"),
])
def test_solver_settings_that_cannot_run_fail_before_the_sweep_starts(solver, grid, needle, tmp_path):
    # regression (a bad-input audit): only the network and data were checked up front, so an unknown option, a
    # fixed-step method without its step or unsorted output times made every run of the sweep end "error"
    with pytest.raises(SweepConfigError, match=needle):
        gf.sweep({"d": 3, "width": 8}, {"generator": "random_labels", "n": 4}, solver, grid, 2, store=tmp_path / "st")
    assert not (tmp_path / "st").exists()


@pytest.mark.parametrize("order", [["float64", "float32"], ["float32", "float64"]])
def test_the_solver_checks_read_each_grid_points_own_dtype(order, tmp_path):
    # review: every point was checked against the first point's network, so float32's rtol floor was seen or not
    # depending on the order of the grid
    with pytest.raises(SweepConfigError, match=r"at the grid point \{'network.dtype': 'float32'\} cannot run: "
                                               r"rtol=1e-08 is below what torch.float32 resolves"):
        gf.sweep({"d": 3, "width": 8}, {"generator": "random_labels", "n": 4},
                 {"kind": "simulate", "t1": 1.0, "method": "dop853", "rtol": 1e-8}, {"network.dtype": order}, 1,
                 store=tmp_path / "st")


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc for the workers' pids")
@pytest.mark.parametrize("when", ["busy", "starting"])
def test_the_process_pools_workers_end_when_the_sweep_is_killed(tmp_path, when):
    # regression (an interruption audit): `kill PID` (SIGTERM to the main process only) left the spawned workers
    # re-parented to PID 1, computing the queued runs into the store and then idle on a pipe forever; and a sweep
    # killed while its workers were still importing (seconds on a loaded machine) left them for good: they took
    # PID 1 for their parent
    cfg = tmp_path / "sw.toml"
    cfg.write_text('seeds = 8\n[network]\nd = 5\nwidth = 64\n[data]\ngenerator = "random_labels"\nn = 10\n'
                   '[solver]\nkind = "simulate"\nt1 = 3000.0\nmethod = "dop853"\n')
    p = subprocess.Popen([sys.executable, "-m", "gflow", "sweep", str(cfg), "--out", str(tmp_path / "st"),
                          "--executor", "process", "--workers", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(kids) < 3:  # two workers and multiprocessing's resource tracker
            time.sleep(0.2)
            kids = _children(p.pid)
        if when == "busy":
            time.sleep(2.0)  # (the workers busy with runs, where the machine is not loaded)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        alive = list(kids)
        deadline = time.time() + 60  # (a worker still importing torch checks its parent once initialised)
        while alive and time.time() < deadline:
            time.sleep(0.5)
            alive = [k for k in kids if _state(k) not in ("gone", "Z")]
        assert kids and not alive, (kids, alive)
    finally:
        if p.poll() is None:
            p.kill()
        for k in kids:  # (re-parented once the sweep is gone: not its children any more)
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGKILL)


def _start_process_sweep(tmp_path, toml: str):
    """``gflow sweep`` of ``toml`` (with ``checkpoint_every`` small) with two pool workers, in a session of its own
    (as a terminal job): (process, its children, the command line, the store) once both workers are in a run."""
    cfg = tmp_path / "sw.toml"
    cfg.write_text(toml)
    store = tmp_path / "st"
    cmd = [sys.executable, "-m", "gflow", "sweep", str(cfg), "--out", str(store), "--executor", "process",
           "--workers", "2", "--no-progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    kids: list[int] = []
    deadline = time.time() + 90
    while time.time() < deadline and p.poll() is None and (
            len(kids) < 3 or len(list((store / "checkpoints").glob("*.ckpt"))) < 2):
        time.sleep(0.2)  # (two workers and the resource tracker; both workers in a run: its first checkpoints)
        kids = _children(p.pid)
    return p, kids, cmd, store


def _kill_all(p: subprocess.Popen, kids: list[int]) -> None:
    """The sweep and the processes it started, whatever state the test left them in."""
    if p.poll() is None:
        p.kill()
    for k in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(k, signal.SIGKILL)


@pytest.mark.parametrize("to", ["group", "sweep", "group twice", "sweep twice"])
def test_ctrl_c_stops_a_process_pool_sweep_promptly_and_the_same_sweep_goes_on(tmp_path, to):
    # a terminal's Ctrl-C (SIGINT to the process group) used to end in a traceback after the runs in flight and the
    # ones already handed to a worker had run to their end (8–9 s here), without their checkpoints; a SIGINT to the
    # sweep alone waited for every run in flight.  Now the runs stop at their next step and keep their checkpoints.
    # (runs of 3–6 s on a 2-core EPYC at t1 = 500; a Ctrl-C to the sweep alone reaches the runs after the 3 s grace,
    # by which the runs had ended on an idle machine, leaving no checkpoint: those variants run 16× longer — at 4×,
    # t1 = 2 000, the n = 40 run took 3.5 s on a quiet 2-core Xeon and ended within the grace: no checkpoint, a
    # failure in CI)
    t1 = 8000.0 if to.startswith("sweep") else 500.0
    p, kids, cmd, store = _start_process_sweep(
        tmp_path, 'seeds = 2\n[network]\nd = 5\nwidth = 256\n[data]\ngenerator = "random_labels"\nseed = 0\n'
                  f'[solver]\nkind = "simulate"\nt1 = {t1}\nmethod = "dop853"\nrtol = 1e-11\natol = 1e-13\n'
                  'checkpoint_every = 0.2\n[grid]\n"data.n" = [40, 80]\n')
    try:
        t0 = time.time()
        for _ in range(2 if to.endswith("twice") else 1):  # (twice: a second Ctrl-C left the sweep hanging)
            if to.startswith("group"):
                os.killpg(p.pid, signal.SIGINT)
            else:
                p.send_signal(signal.SIGINT)
            time.sleep(0.5)
        _, err = p.communicate(timeout=60)
        took = time.time() - t0
        assert p.returncode == 130, err
        assert "gflow: interrupted (Ctrl-C) during 'gflow sweep'" in err
        if not to.endswith("twice"):
            assert "Traceback" not in err
        grace = gf.sweeps.executors.INTERRUPT_GRACE_SECONDS
        assert took < (5.0 if to != "sweep" else grace + 5.0), took
        time.sleep(0.5)
        assert not [k for k in kids if k in _children(p.pid) or os.path.exists(f"/proc/{k}/stat")
                    and _state(k) != "Z"]
    finally:
        _kill_all(p, kids)
    stopped = sorted(q.name for q in (store / "checkpoints").glob("*.ckpt"))
    # (a second Ctrl-C to the sweep alone, before it passed the first on to the workers, stops them at once)
    assert stopped or to == "sweep twice", "the runs in flight keep their checkpoints"
    if to == "group":
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        ds = gf.open_sweep(store)
        assert sorted(set(ds.status.values.tolist())) == ["success"] and ds.sizes["run"] == 4
        assert not list((store / "checkpoints").glob("*.ckpt"))


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_ctrl_c_to_one_worker_alone_leaves_only_its_run_pending(tmp_path):
    # (a review: the worker whose run was stopped returned "not started" for every queued run: 7 of 8 lost)
    p, kids, _, _ = _start_process_sweep(
        tmp_path, 'seeds = 3\n[network]\nd = 5\nwidth = 128\n[data]\ngenerator = "random_labels"\nseed = 0\n'
                  'n = 30\n[solver]\nkind = "simulate"\nt1 = 3000.0\nmethod = "dop853"\nrtol = 1e-10\n'
                  'atol = 1e-12\ncheckpoint_every = 0.2\n')
    try:
        workers = [k for k in kids if "spawn_main" in open(f"/proc/{k}/cmdline").read()]
        os.kill(workers[0], signal.SIGINT)
        out, err = p.communicate(timeout=240)
    finally:
        _kill_all(p, kids)
    assert p.returncode == 1, err  # (a run stays pending)
    assert "3 runs (0 already in" in out and "2 succeeded" in out and "1 run(s) lost" in out, out
    assert "Ctrl-C in its worker" in out


def test_a_sweep_with_method_auto_checks_its_solver_settings_up_front(tmp_path):
    # (its options depend on the pick, so nothing was checked: unsorted output times made every run "error")
    with pytest.raises(gf.sweeps.SweepConfigError, match=r"saveat must be strictly increasing"):
        gf.sweep(network={"d": 3, "width": 8}, data={"generator": "random_labels", "n": 5},
                 solver={"kind": "simulate", "saveat": [0.0, 2.0, 1.0]}, grid={"network.c_hat": [1.0, 2.0]},
                 store=tmp_path / "st")
    assert not (tmp_path / "st" / "runs").exists()


def test_an_unreachable_cluster_is_a_clear_error_naming_it(tmp_path, monkeypatch):
    # (a new-user audit: SLURM without srun and a Dask scheduler that does not answer ended in submitit's and
    # tornado's tracebacks — the latter after 30 s)
    from gflow.sweeps.executors import DaskExecutor, SubmititExecutor

    pytest.importorskip("submitit", reason='submitit is not installed (pip install "gflow[slurm]")')
    import shutil

    if shutil.which("srun") is None:
        with pytest.raises(ValueError, match=r"cluster='slurm': submitit cannot submit from this machine"):
            SubmititExecutor(tmp_path / "sub", cluster="slurm")
    distributed = pytest.importorskip("distributed", reason='dask.distributed is not installed')

    class Unreachable(distributed.Client):  # (a class: the executor also asks isinstance(scheduler, Client))
        def __init__(self, address, *args, **kwargs):
            raise OSError(f"Timed out trying to connect to {address} after 30 s")

    monkeypatch.setattr(distributed, "Client", Unreachable)
    with pytest.raises(ValueError, match=r"scheduler='tcp://127.0.0.1:1': no Dask scheduler could be reached there"):
        DaskExecutor(scheduler="tcp://127.0.0.1:1")


def test_an_executor_that_cannot_start_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    # (it wrote the manifest first: a new store was left with a manifest and no runs, an extended one with the
    # manifest of a sweep that never ran)
    import gflow.sweeps as sw

    def refuse(*args, **kwargs):
        raise ValueError("scheduler='tcp://127.0.0.1:1': no Dask scheduler could be reached there")

    monkeypatch.setattr(sw, "get_executor", refuse)
    new = tmp_path / "new"
    with pytest.raises(ValueError, match="no Dask scheduler"):
        gf.sweep(network=NETWORK, data=DATA, solver=SOLVER, grid={"data.n": [6]}, store=new)
    assert not new.exists()
    monkeypatch.undo()
    old = tmp_path / "old"
    gf.sweep(network=NETWORK, data=DATA, solver=SOLVER, grid={"data.n": [6]}, store=old)
    manifest = (old / "manifest.json").read_text()
    monkeypatch.setattr(sw, "get_executor", refuse)
    with pytest.raises(ValueError, match="no Dask scheduler"):
        gf.sweep(network=NETWORK, data=DATA, solver=SOLVER, grid={"data.n": [6, 8]}, store=old, extend=True)
    assert (old / "manifest.json").read_text() == manifest and not (old / ".sweep.lock").exists()


@pytest.mark.parametrize("damage", ["truncated", "not an object"])
def test_a_damaged_manifest_is_a_clear_error_naming_it_and_moving_it_aside_recovers(tmp_path, capsys, damage):
    # (a truncated manifest.json gave a bare "JSONDecodeError: Unterminated string ..." naming no file, from
    # gflow sweep and gf.open_sweep alike)
    store = tmp_path / "s"
    kw = dict(network=NETWORK, data={**DATA, "n": 6}, solver=SOLVER, store=store, progress=False)
    gf.sweep(**kw)
    manifest = store / "manifest.json"
    manifest.write_text(manifest.read_text()[:300] if damage == "truncated" else "[]")
    needle = rf"the manifest {re.escape(str(manifest))} of the sweep store .* is damaged .* move it aside"
    for call in (lambda: gf.open_sweep(store), lambda: gf.sweep(**kw), lambda: gf.run_solution(store, 0)):
        with pytest.raises(ValueError, match=needle):
            call()
    toml = tmp_path / "s.toml"
    toml.write_text(TOML)
    assert main(["sweep", str(toml), "--out", str(store)]) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and "Traceback" not in err
    manifest.rename(store / "manifest.json.damaged")  # as the message says: the same sweep writes it anew
    counts: dict = {}
    ds = run_sweep(SweepConfig.from_dict(NETWORK, {**DATA, "n": 6}, SOLVER), store=store, progress=False,
                   report=counts.update)
    assert counts["skipped"] == 1 and ds.status.values.tolist() == ["success"]


def test_a_bad_threads_value_is_refused_up_front_and_threads_is_not_part_of_the_run_id():
    # (a review: solver.threads = 0 failed every run of the sweep; adding threads = 1 started every run again)
    from gflow.sweeps.config import SweepConfig, SweepConfigError, run_id_of

    net, data, solver = {"d": 3, "width": 8}, {"generator": "random_labels", "n": 4}, {"kind": "simulate", "t1": 0.5}
    with pytest.raises(SweepConfigError, match="threads"):
        SweepConfig.from_dict(net, data, {**solver, "threads": 0})
    with pytest.raises(SweepConfigError, match="threads"):
        SweepConfig.from_dict(net, data, solver, grid={"solver.threads": [1, 2]})
    a = SweepConfig.from_dict(net, data, solver).runs()[0]
    b = SweepConfig.from_dict(net, data, {**solver, "threads": 1}).runs()[0]
    assert a.run_id == b.run_id == run_id_of(b.config) and b.config["solver"]["threads"] == 1


SMALL = {"d": 3, "width": 8}
SMALL_DATA = {"generator": "random_labels", "n": 4}


def test_a_grid_over_error_estimate_is_the_coordinate_solver_error_estimate_beside_the_series(tmp_path):
    # (the coordinate was named error_estimate, as the series of the sliding runs: every run was written, then
    # gf.sweep and gf.open_sweep raised "variables {'error_estimate'} are found in both data_vars and coords")
    import matplotlib

    matplotlib.use("Agg")
    store = tmp_path / "s"
    ds = gf.sweep({**SMALL, "activation": "relu"}, SMALL_DATA,
                  {"kind": "simulate", "t1": 0.5, "method": "sliding", "step": 0.25},
                  {"solver.error_estimate": [False, True]}, store=store, progress=False)
    assert ds.solver_error_estimate.values.tolist() == [False, True]
    assert ds.error_estimate.dims == ("run", "time") and (ds.status.values == "success").all()
    assert np.isnan(ds.error_estimate.values[0]).all() and np.isfinite(ds.error_estimate.values[1]).any()
    assert json.loads(ds.attrs["grid_coords"]) == {"solver_error_estimate": "solver.error_estimate"}
    assert gf.open_sweep(store, consolidated=False).solver_error_estimate.values.tolist() == [False, True]
    assert gf.run_solution(ds, 1).error_estimate is not None
    ax = gf.plotting.plot_sweep(ds, x="solver_error_estimate", y="loss").axes[0]
    assert len(ax.get_lines()) == 2
    with pytest.raises(ValueError, match="x='error_estimate' is not a per-run coordinate.*'solver_error_estimate'"):
        gf.plotting.plot_sweep(ds, x="error_estimate", y="loss")
    # a store written with the bare name (before the series were reserved) is readable: renamed as it is read
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["grid_coords"] = {"error_estimate": "solver.error_estimate"}
    (store / "manifest.json").write_text(json.dumps(manifest))
    old = gf.open_sweep(store, consolidated=False)
    assert old.solver_error_estimate.values.tolist() == [False, True] and old.error_estimate.dims == ("run", "time")
    from gflow.sweeps.store import grid_coords, reserved_names

    assert {"loss", "eta", "error_estimate", "final_loss", "seed", "t"} <= reserved_names()
    assert grid_coords(["solver.error_estimate", "data.n"]) == {"solver_error_estimate": "solver.error_estimate",
                                                               "n": "data.n"}


def test_error_estimate_with_a_native_fixed_step_method_runs_without_a_checkpoint(tmp_path):
    # (the sweep gave every euler/midpoint/rk4 run checkpoint=, which gf.simulate refuses with error_estimate=True:
    # every run ended with status "error", while the same gf.simulate call alone succeeds)
    ds = gf.sweep({**SMALL, "activation": "tanh"}, SMALL_DATA,
                  {"kind": "simulate", "t1": 0.5, "step": 0.25, "error_estimate": True},
                  grid={"solver.method": ["euler", "midpoint"]}, store=tmp_path / "s", progress=False)
    assert ds.status.values.tolist() == ["success", "success"], ds.message.values.tolist()
    assert np.isfinite(ds.error_estimate.values[:, -1]).all()
    assert not list((tmp_path / "s" / "checkpoints").glob("*.ckpt"))
    from gflow.sweeps.config import _solver_fn
    from gflow.sweeps.run import _checkpointable

    simulate = _solver_fn("simulate")
    assert _checkpointable(simulate, {"method": "euler"})
    assert not _checkpointable(simulate, {"method": "euler", "error_estimate": True})
    assert _checkpointable(simulate, {"method": "rk4", "error_estimate": False})


@pytest.mark.parametrize("grid, needle", [
    ({"network.embedding": ["identity", {"kind": "identity"}]},
     r"grid\['network.embedding'\] has both 'identity' and \{'kind': 'identity'\}, which are the same setting"),
    ({"network.scaling": ["ours", "ntk", "OURS"]}, r"grid\['network.scaling'\] has both 'ours' and 'OURS'"),
    ({"network.activation": ["ReLU", "relu"]}, r"grid\['network.activation'\] has both 'ReLU' and 'relu'"),
    ({"network.dtype": ["float", "float32"]}, r"grid\['network.dtype'\] has both 'float' and 'float32'"),
    ({"solver.options": [{"first_step": 0.1}, {"first_step": 0.2}, {"first_step": 0.1}]},
     r"grid\['solver.options'\] repeats \{'first_step': 0.1\}"),
    ({"data.test_seed": [None, 1]},  # (test_seed = None is seed + 1: two points, the same runs)
     r"the grid points \{'data.test_seed': None\} and \{'data.test_seed': 1\} are the same runs"),
])
def test_two_spellings_of_one_grid_value_are_refused_as_repeated_points(grid, needle):
    # (they ran the same runs under different run ids, shown by open_sweep and plot_sweep as different grid points)
    net = {k: v for k, v in {**SMALL, "activation": "tanh"}.items() if f"network.{k}" not in grid}
    with pytest.raises(SweepConfigError, match=needle):
        SweepConfig.from_dict(net, {**SMALL_DATA, "n_test": 2}, {"kind": "simulate", "t1": 0.5, "method": "dop853"},
                              grid)


def test_checking_spellings_keeps_every_run_id():
    # (the check compares what the values normalise to; each spelling's run id is as before, so stores keep runs)
    from gflow.sweeps.config import run_id_of

    a = SweepConfig.from_dict(SMALL, SMALL_DATA, {"kind": "simulate", "t1": 0.5}, {"network.scaling": ["OURS"]})
    b = SweepConfig.from_dict(SMALL, SMALL_DATA, {"kind": "simulate", "t1": 0.5}, {"network.scaling": ["ours"]})
    ra, rb = a.runs()[0], b.runs()[0]
    assert ra.run_id != rb.run_id and ra.run_id == run_id_of(ra.config)
    assert ra.config["network"]["scaling"] == "OURS"


def test_a_repeated_grid_value_in_a_toml_file_names_the_file_the_key_and_the_value(tmp_path, capsys):
    # (it said "the grid has repeated points (run ids ['0083b343a030ebbf'])": no key, no value, no file)
    path = tmp_path / "rep.toml"
    path.write_text(TOML.replace('"network.scaling" = ["ours", "ntk"]', '"network.scaling" = ["ours", "ntk", "ours"]'))
    with pytest.raises(SweepConfigError, match=re.escape(f"{path}: grid['network.scaling'] repeats 'ours'")):
        SweepConfig.from_toml(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: grid['network.scaling'] repeats 'ours'" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def _run_sweep_script(script, tmp_path):
    """Run a Python script that makes a one-run process sweep of a tiny tanh net into tmp_path/st."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


_SWEEP_CALL = ("gf.sweep({'d': 3, 'width': 4}, {'generator': 'random_labels', 'n': 4}, {'kind': 'simulate', "
               "'t1': 0.1, 'method': 'dop853'}, store='st', executor='process', workers=1, progress=False)")


def test_a_process_sweep_of_a_script_without_a_main_guard_says_so(tmp_path):
    # (each spawned worker ran the script's sweep again, found the store in use and died; the sweep returned every
    # run pending, with a warning to run it again — which failed the same way)
    script = tmp_path / "unguarded.py"
    script.write_text(f"import gflow as gf\nds = {_SWEEP_CALL}\n")
    done = _run_sweep_script(script, tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: the workers of the sweep in st died before running its runs"), \
        done.stderr[-3000:]
    assert f"put the gf.sweep call of {script} (line 2) under `if __name__ == \"__main__\":`" in last
    assert "gf.sweep was called by a worker process of a sweep as it imported the main script" in done.stderr
    assert gf.open_sweep(tmp_path / "st").status.values.tolist() == ["pending"]


def test_workers_that_die_for_another_reason_under_a_guard_of_another_form_are_not_blamed_on_the_guard(tmp_path):
    # (a review: the error came from parsing the script, which took `if __name__ == "__main__" and ...:` for no
    # guard, so workers killed for another reason — here at start, as by the OOM killer — were blamed on it; the
    # workers' own report decides now)
    (tmp_path / "crash").mkdir()
    (tmp_path / "crash" / "sitecustomize.py").write_text(
        "import os, sys\nif '--multiprocessing-fork' in sys.argv:\n    os._exit(137)\n")
    script = tmp_path / "guarded.py"
    script.write_text(
        "import os, warnings\nimport gflow as gf\n"
        "if __name__ == '__main__' and True:\n"
        f"    os.environ['PYTHONPATH'] = {str(tmp_path / 'crash')!r} + os.pathsep + os.environ['PYTHONPATH']\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        f"        ds = {_SWEEP_CALL}\n"
        "    print(ds.status.values.tolist(), any('lost by their workers' in str(x.message) for x in w))\n")
    done = _run_sweep_script(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['pending'] True"
    assert not list((tmp_path / "st").glob(".unguarded-main-*"))


def test_a_sweep_call_under_a_main_guard_is_not_taken_for_an_unguarded_one(tmp_path):
    from gflow.sweeps.executors import unguarded_main_call

    script = tmp_path / "guard.py"
    script.write_text("import sys\nfrom gflow.sweeps.executors import unguarded_main_call as u\n"
                      "print('top', u())\n"
                      "if __name__ == '__main__':\n    print('guarded', u())\n"
                      "if __name__ != '__main__':\n    pass\nelse:\n    print('else', u())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines() == [f"top ('{script}', 3)", "guarded None", "else None"]
    assert unguarded_main_call() is None  # (pytest's own main: no module-level frame of a script calls it)


def test_gd_s_default_save_every_follows_steps_and_keeps_the_ids_of_runs_from_20_000_steps():
    # (a workflow audit: the fixed default save_every = 100 saved t = 0 and the end alone of a run of 100 steps)
    ids = {}
    for steps, want in ((None, 100), (20_000, 100), (1_000, 5), (100, 1)):
        solver = {"kind": "gradient_descent", "step": 0.1} | ({} if steps is None else {"steps": steps})
        run = SweepConfig.from_dict(SMALL, SMALL_DATA, solver).runs()[0]
        assert run.config["solver"]["save_every"] == want
        ids[steps] = run.run_id
    # (the ids gflow gave them before the change, where the default is still every 100th; 1 000 steps: another run)
    assert ids[None] == "c29bce69523d648a" and ids[20_000] == "64130bab7c17b231"
    assert ids[1_000] != "25fc8c4ee4a91576"
    written = SweepConfig.from_dict(SMALL, SMALL_DATA, {"kind": "gradient_descent", "step": 0.1, "steps": 1_000,
                                                        "save_every": 100}).runs()[0]
    assert written.run_id == "25fc8c4ee4a91576"  # (an older store continues with save_every = 100 written out)
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    gd = gf.gradient_descent(gf.Network(d=3, width=8), X, y, step=0.1, steps=100)
    assert len(gd.t) == 101 and gd.config["solver"]["save_every"] == 1
    gds = gf.gradient_descent_batch(gf.networks([0, 1], d=3, width=8), X, y, step=0.1, steps=1_000)
    assert [len(g.t) for g in gds] == [201, 201]
    assert len(gf.gradient_descent(gf.Network(d=3, width=8), X, y, step=0.1, steps=1_000, save_every=100).t) == 11


def test_rtol_s_default_follows_the_dtype_and_keeps_float64_run_ids():
    # (a robustness audit: rtol's default 1e-7 is float32's machine epsilon, where steps are rejected for rounding —
    # a tanh run to t = 3 000 took 4 072 steps, 625 rejected, against 650 at 1e-5; float32 now defaults to 1e-5)
    implicit = SweepConfig.from_dict(SMALL, SMALL_DATA, {"kind": "simulate", "t1": 0.5},
                                     {"network.dtype": ["float64", "float32"]}).runs()
    explicit = [SweepConfig.from_dict({**SMALL, "dtype": dt}, SMALL_DATA, {"kind": "simulate", "t1": 0.5, "rtol": r})
                .runs()[0] for dt, r in (("float64", 1e-7), ("float32", 1e-5))]
    assert [r.config["solver"]["rtol"] for r in implicit] == [1e-7, 1e-5]
    assert [r.run_id for r in implicit] == [r.run_id for r in explicit]  # (float64's id: as with rtol = 1e-7 written)
    assert implicit[0].run_id == "5813bf5cecd54ff0"  # (the id gflow gave it before the change)
    fixed = SweepConfig.from_dict({**SMALL, "dtype": "float32"}, SMALL_DATA,  # (fixed steps: 1e-7, as before)
                                  {"kind": "simulate", "t1": 0.5, "method": "rk4", "step": 0.1}).runs()[0]
    assert fixed.config["solver"]["rtol"] == 1e-7 and fixed.run_id == "25a6725fbb1c33b9"  # (its id before)
    gd = SweepConfig.from_dict(SMALL, SMALL_DATA, {"kind": "gradient_descent", "step": 0.1, "steps": 2}).runs()[0]
    assert "rtol" not in gd.config["solver"]
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    for dtype, want in (("float64", 1e-7), ("float32", 1e-5)):
        net = gf.Network(d=3, width=8, seed=0, dtype=dtype)
        assert gf.simulate(net, X, y, t1=0.5, method="dop853").config["solver"]["rtol"] == want
        batch = gf.simulate_batch(gf.networks([0, 1], d=3, width=8, dtype=dtype), X, y, t1=0.5)
        assert all(s.config["solver"]["rtol"] == want for s in batch)
    net32 = gf.Network(d=3, width=8, seed=0, dtype="float32")
    assert gf.simulate(net32, X, y, t1=0.5, method="dop853", rtol=1e-6).config["solver"]["rtol"] == 1e-6
