"""Solution files: save → load round trips, the self-describing netCDF layout, and gf.rerun from a file alone.

The issue: "one Solution type for every solver and for GD ... saves to and loads from a self-describing file
(xarray → netCDF through h5netcdf) that holds the full configuration, seeds and package versions, so that the
run can be repeated from the file alone".
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import xarray as xr

import gflow as gf

# arrays every fixture below must carry (so that the round trips really cover test data and kept H and W)
CORE_ARRAYS = ("t", "loss", "residual", "output", "test_output", "test_loss", "test_error", "test_sign_error",
               "feature_t", "H", "H_test", "weight_t", "W", "W_final", "c", "X", "y", "X_test", "y_test")
DICTS = ("stats", "config", "versions", "theory")


def array_fields() -> list[str]:
    """Every array attribute of Solution (including the theory quantities), read off the dataclass."""
    names = [f.name for f in dataclasses.fields(gf.Solution) if "ndarray" in str(f.type)]
    assert set(CORE_ARRAYS) | {"W0"} <= set(names)
    return names


RERUN_RTOL = 1e-12



D_IN = 4


def _data():
    X, y = gf.data.random_labels(n=8, d=D_IN, seed=0)
    X_test, y_test = gf.data.wei2019(n=5, d=D_IN, seed=1)  # ±1 labels: the sign error is recorded too
    return X, y, X_test, y_test


def _flow(net=None, **kw) -> gf.Solution:
    X, y, X_test, y_test = _data()
    net = gf.Network(d=D_IN, width=6, seed=3) if net is None else net
    args = dict(t1=5.0, saveat=np.linspace(0.0, 5.0, 11), X_test=X_test, y_test=y_test, features_at="all",
                weights_at=[1.0, 5.0])
    args.update(kw)
    return gf.simulate(net, X, y, **args)


def _gd(net=None, **kw) -> gf.Solution:
    X, y, X_test, y_test = _data()
    net = gf.Network(d=D_IN, width=6, seed=3) if net is None else net
    args = dict(step=0.5, steps=20, save_every=5, X_test=X_test, y_test=y_test, features_at=[0.0, 5.0, 10.0],
                weights_at=[2.5])
    args.update(kw)
    return gf.gradient_descent(net, X, y, **args)


@pytest.fixture(scope="module")
def flow_solution():
    return _flow()


@pytest.fixture(scope="module")
def gd_solution():
    return _gd()


@pytest.fixture(params=["flow", "gd"])
def solution(request, flow_solution, gd_solution):
    return {"flow": flow_solution, "gd": gd_solution}[request.param]


def _json(d) -> str:
    # NaN-safe comparison of the JSON-able dicts (NaN != NaN for plain dict equality)
    return json.dumps(d, sort_keys=True)


def assert_same_solution(a: gf.Solution, b: gf.Solution, *, skip=()) -> None:
    for name in array_fields():
        if name in skip:
            continue
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), f"{name}: {type(x).__name__} vs {type(y).__name__}"
        if x is not None:
            x, y = np.asarray(x), np.asarray(y)
            assert x.shape == y.shape, f"{name}: shape {x.shape} vs {y.shape}"
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.status == b.status
    assert a.message == b.message
    for name in DICTS:
        if hasattr(a, name):
            assert _json(getattr(a, name)) == _json(getattr(b, name)), name


# ---------------------------------------------------------------------------------------------------------
# Round trips


def test_the_fixtures_exercise_every_optional_array(solution):
    # so that the round-trip tests below really cover test arrays, kept features and kept weights
    for name in CORE_ARRAYS:
        assert getattr(solution, name) is not None, name
    assert solution.ok
    assert len(solution.feature_t) >= 2 and len(solution.weight_t) >= 1


def test_save_then_load_preserves_every_array_status_message_stats_config_and_versions(solution, tmp_path):
    path = solution.save(tmp_path / "run.nc")
    loaded = gf.load(path)
    assert isinstance(loaded, gf.Solution)
    assert_same_solution(solution, loaded)
    assert loaded.kind == solution.kind
    assert loaded.ok
    assert (loaded.n, loaded.m, loaded.D) == (solution.n, solution.m, solution.D)


def test_loaded_weights_at_the_requested_times_match_the_saved_ones(flow_solution, tmp_path):
    loaded = gf.load(flow_solution.save(tmp_path / "w.nc"))
    np.testing.assert_array_equal(loaded.weight_t, [1.0, 5.0])
    np.testing.assert_array_equal(loaded.W[-1], loaded.W_final)  # t1 = 5 is a requested weight time
    np.testing.assert_array_equal(loaded.features_at(2.5), flow_solution.features_at(2.5))


def test_a_failed_run_round_trips_with_its_status_and_partial_trajectory(tmp_path):
    sol = _flow(t1=1000.0, saveat=None, max_steps=20, warn=False)
    assert sol.status == "max_steps"
    loaded = gf.load(sol.save(tmp_path / "failed.nc"))
    assert_same_solution(sol, loaded)
    assert not loaded.ok
    with pytest.raises(gf.SolverError, match=r"\[max_steps\]"):
        loaded.raise_for_status()


def test_a_run_without_test_data_or_kept_weights_round_trips(tmp_path):
    X, y, _, _ = _data()
    sol = gf.simulate(gf.Network(d=D_IN, width=6, seed=3), X, y, t1=1.0)
    loaded = gf.load(sol.save(tmp_path / "bare.nc"))
    assert_same_solution(sol, loaded)
    assert loaded.X_test is None and loaded.test_loss is None and loaded.W is None
    assert loaded.weight_t.shape == (0,)


def test_float32_run_round_trips_its_float64_arrays_and_dtype(tmp_path):
    net = gf.Network(d=D_IN, width=6, seed=3, dtype=torch.float32)
    sol = _flow(net, rtol=1e-5, atol=1e-7)
    loaded = gf.load(sol.save(tmp_path / "f32.nc"))
    assert_same_solution(sol, loaded)
    assert loaded.config["network"]["dtype"] == "float32"


def test_saving_creates_missing_parent_folders_and_overwrites_an_existing_file(flow_solution, gd_solution,
                                                                               tmp_path):
    path = tmp_path / "a" / "b" / "run.nc"
    assert flow_solution.save(path) == path and path.exists()
    gd_solution.save(path)
    assert gf.load(path).kind == "gd"


# ---------------------------------------------------------------------------------------------------------
# The file is self-describing


def test_the_file_holds_configuration_seeds_data_and_package_versions(solution, tmp_path):
    path = solution.save(tmp_path / "run.nc")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        attrs = dict(ds.attrs)
        names = set(ds.data_vars)
    assert attrs["gflow_format_version"] >= 1
    assert attrs["status"] == "success"
    config = json.loads(attrs["config"])
    assert config["kind"] == solution.kind
    network = config["network"]
    assert network["seed"] == 3 and network["width"] == 6 and network["d"] == D_IN
    assert network["activation"]["name"] == "tanh"
    assert config["solver"]["method"] == ("dop853" if solution.kind == "flow" else "gradient_descent")
    versions = json.loads(attrs["versions"])
    assert {"gflow", "torch", "torchdiffeq", "numpy", "scipy", "python"} <= set(versions)
    assert versions["gflow"] == gf.__version__ and versions["torch"] == torch.__version__
    assert {"X", "y", "X_test", "y_test", "c", "loss", "residual", "H", "W_final"} <= names


def test_the_versions_name_torchdiffeq_without_importing_it():
    # (an audit) versions() imported torchdiffeq for its version — with it scipy.integrate and scipy.optimize, 0.3 s
    # of the first solve of a process that ran none of its methods
    import subprocess
    import sys

    import torchdiffeq

    code = ("import sys, gflow as gf; X, y = gf.data.random_labels(n=4, d=3, seed=0); "
            "s = gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=1.0); "
            "print(s.versions['torchdiffeq'], 'torchdiffeq' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == [torchdiffeq.__version__, "False"]
    assert gf.solution.versions()["torchdiffeq"] == torchdiffeq.__version__


def test_saving_without_weights_omits_W_final_and_W_but_keeps_everything_else(flow_solution, tmp_path):
    path = flow_solution.save(tmp_path / "small.nc", include_weights=False)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert "W_final" not in ds and "W" not in ds
        assert int(ds.attrs["weights_included"]) == 0
    loaded = gf.load(path)
    assert loaded.W is None
    assert np.all(np.isnan(loaded.W_final))
    assert_same_solution(flow_solution, loaded, skip=("W", "W_final"))
    assert path.stat().st_size < flow_solution.save(tmp_path / "full.nc").stat().st_size


def test_a_file_without_weights_still_knows_the_embedding_dimension(flow_solution, tmp_path):
    loaded = gf.load(flow_solution.save(tmp_path / "small.nc", include_weights=False))
    assert loaded.D == flow_solution.D
    assert loaded.W_final.shape == flow_solution.W_final.shape


# ---------------------------------------------------------------------------------------------------------
# Bad files


def test_loading_a_netcdf_file_not_written_by_gflow_is_a_value_error(tmp_path):
    path = tmp_path / "other.nc"
    xr.Dataset({"loss": ("time", np.arange(3.0))}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match=r"other\.nc is not a gflow solution file"):
        gf.load(path)


def test_an_experiment_file_opens_run_by_run_with_group_and_says_how_when_opened_whole(flow_solution,
                                                                                         gd_solution, tmp_path):
    from gflow.experiments import Run, load_runs, save_runs

    path = save_runs(tmp_path / "exp1" / "runs.nc", [Run({"k": 0}, flow_solution), Run({"k": 1}, gd_solution)],
                     experiment="exp1", preset="tiny", config={})
    one = gf.load(path, group="run001")
    np.testing.assert_array_equal(one.loss, gd_solution.loss)
    np.testing.assert_array_equal(one.loss, load_runs(path)[1][1].solution.loss)
    with pytest.raises(ValueError, match=r"is a gflow experiment file \(experiment 'exp1', preset 'tiny'\) holding 2 "
                       r"runs, one netCDF group each \('run000', 'run001'\).*gf\.load\(.*group='run000'\).*"
                       r"gflow\.experiments\.load_runs\(.*runs/<id>\.nc"):
        gf.load(path)
    with pytest.raises(ValueError, match=r"has no group 'run7'; its groups: 'run000', 'run001'"):
        gf.load(path, group="run7")
    with pytest.raises(TypeError, match=r"group must be a group name \(str, e.g. 'run000'\)"):
        gf.load(path, group=1)


def test_loading_a_missing_file_is_a_file_not_found_error_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such solution file: .*missing\.nc"):
        gf.load(tmp_path / "missing.nc")
    with pytest.raises(FileNotFoundError):
        gf.rerun(tmp_path / "missing.nc")


def test_loading_a_file_that_is_not_netcdf_at_all_raises_instead_of_returning(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not a netCDF file")
    with pytest.raises((ValueError, OSError)):
        gf.load(path)


# ---------------------------------------------------------------------------------------------------------
# Rerun from the file alone


def _assert_reproduced(original: gf.Solution, again: gf.Solution) -> None:
    """The rerun gives the same trajectory (every array, the theory quantities included) to ~1e-12."""
    assert again.status == original.status
    assert again.kind == original.kind
    np.testing.assert_array_equal(again.t, original.t)
    np.testing.assert_allclose(again.loss, original.loss, rtol=RERUN_RTOL, atol=0)
    for name in array_fields():
        x, y = getattr(original, name), getattr(again, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=RERUN_RTOL, atol=1e-14,
                                       err_msg=name)
    assert _json(again.config) == _json(original.config)


@pytest.mark.parametrize(
    "kw",
    [dict(method="dopri5"), dict(method="DOP853"), dict(method="rk4", step=0.05),
     dict(method="bosh3", rtol=1e-6, atol=1e-8, options={"max_step": 0.5}),
     dict(method="dopri5", integrals=False), dict(method="DOP853", interval=(-0.5, 2.0))],
    ids=["dopri5", "DOP853", "rk4_fixed_step", "bosh3_with_options", "dopri5_without_integrals",
         "DOP853_with_a_custom_interval"],
)
def test_rerun_from_the_file_reproduces_a_seeded_flow(kw, tmp_path):
    sol = _flow(**kw)
    assert sol.ok
    path = sol.save(tmp_path / "flow.nc")
    _assert_reproduced(sol, gf.rerun(path))


def test_rerun_from_the_file_reproduces_gradient_descent(gd_solution, tmp_path):
    path = gd_solution.save(tmp_path / "gd.nc")
    again = gf.rerun(path)
    _assert_reproduced(gd_solution, again)
    np.testing.assert_allclose(again.W, gd_solution.W, rtol=RERUN_RTOL, atol=1e-14)


@pytest.mark.parametrize("how", ["checkpoint", "batch"])
def test_rerun_of_an_auto_run_repeats_the_method_auto_picked_for_it(tmp_path, how):
    # regression: the rerun went through "auto" again, which picked dop853+exprk4 (2602 evaluations) where the run
    # had fallen back to dop853 (6095): given checkpoint=, which exprk4 cannot write, or in a batch, which cannot
    # run exprk4
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    net = gf.Network(d=6, width=16, activation="tanh", seed=0)
    if how == "checkpoint":
        sol = gf.simulate(net, X, y, t1=3000.0, checkpoint=tmp_path / "run.ckpt")
    else:
        sol = gf.simulate_batch([net], X, y, t1=3000.0, method="auto")[0]
    assert sol.config["solver"]["method"] == "dop853" and "'dop853+exprk4'" in sol.config["solver"]["auto"]
    again = gf.rerun(sol.save(tmp_path / "run.nc"))
    assert again.config["solver"]["method"] == "dop853"
    assert again.config["solver"]["auto"] == sol.config["solver"]["auto"]  # why the repeated run has its method
    if how == "checkpoint":
        assert again.config["solver"] == sol.config["solver"]
        assert again.stats["n_f_evals"] == sol.stats["n_f_evals"]
        np.testing.assert_array_equal(again.loss, sol.loss)
    else:  # (alone, the seed's steps are its own: to the tolerance)
        np.testing.assert_allclose(again.loss, sol.loss, rtol=1e-5)


def test_a_loaded_files_extra_attributes_are_saved_again(flow_solution, tmp_path):
    # regression: Solution.save / to_xarray dropped extra_attrs: a sweep run's sweep_* vanished after save + load
    ds = flow_solution.to_xarray()
    extra = {"sweep_run_id": "abc123", "sweep_seed": 7, "sweep_wall_time": 0.25, "labels": '{"n": 8}'}
    ds.attrs.update(extra)
    ds.to_netcdf(tmp_path / "with_attrs.nc", engine="h5netcdf")
    loaded = gf.load(tmp_path / "with_attrs.nc")
    assert loaded.extra_attrs == extra
    assert {k: loaded.to_xarray().attrs[k] for k in extra} == extra
    back = gf.load(loaded.save(tmp_path / "resaved.nc"))
    assert back.extra_attrs == extra
    assert back.status == flow_solution.status and back.config == flow_solution.config  # (gflow's own attributes)
    assert gf.load(flow_solution.save(tmp_path / "plain.nc")).extra_attrs == {}


def test_rerun_accepts_a_solution_object_as_well_as_a_path(flow_solution):
    _assert_reproduced(flow_solution, gf.rerun(flow_solution))


def test_rerun_works_from_a_file_saved_without_weights(flow_solution, tmp_path):
    path = flow_solution.save(tmp_path / "small.nc", include_weights=False)
    _assert_reproduced(flow_solution, gf.rerun(path))


def _explicit_net(**kw) -> gf.Network:
    rng = np.random.default_rng(11)
    return gf.Network(d=D_IN, width=6, c=0.8 * rng.choice([-1.0, 1.0], size=6),
                      W0=rng.standard_normal((6, D_IN)), **kw)


@pytest.mark.parametrize("include_weights", [True, False])
def test_a_network_with_explicit_c_and_W0_stores_W0_in_the_file_and_reruns(include_weights, tmp_path):
    net = _explicit_net()
    sol = _flow(net, method="DOP853")
    path = sol.save(tmp_path / "explicit.nc", include_weights=include_weights)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert "W0" in ds and "c" in ds
        np.testing.assert_array_equal(ds["W0"].values, net.W0.numpy())
        assert json.loads(ds.attrs["config"])["network"]["explicit_params"] is True
    loaded = gf.load(path)
    np.testing.assert_array_equal(loaded.c, net.c.numpy())
    _assert_reproduced(sol, gf.rerun(path))


def test_a_seeded_network_does_not_store_W0(flow_solution, tmp_path):
    with xr.open_dataset(flow_solution.save(tmp_path / "seeded.nc"), engine="h5netcdf") as ds:
        assert "W0" not in ds


def test_rerun_reproduces_gradient_descent_of_a_network_with_explicit_parameters(tmp_path):
    sol = _gd(_explicit_net(scaling="mf"))
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "explicit_gd.nc")))


def test_rerun_reproduces_a_random_features_network_from_its_seed(tmp_path):
    net = gf.Network(d=D_IN, width=6, activation="tanh", embedding=gf.RandomFeatures(D=7), seed=5)
    sol = _flow(net)
    again = gf.rerun(sol.save(tmp_path / "rf.nc"))
    _assert_reproduced(sol, again)
    assert again.D == 7


def test_rerun_reproduces_a_random_features_network_with_its_own_seed_and_activation(tmp_path):
    emb = gf.RandomFeatures(D=9, activation="erf", seed=123)
    net = gf.Network(d=D_IN, width=8, activation="softplus", embedding=emb, scaling="ntk", seed=2)
    sol = _flow(net, method="DOP853")
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "rf_own.nc")))


def test_rerun_reproduces_gradient_descent_on_deep_random_features_with_a_parametrised_activation(tmp_path):
    leaky = {"name": "leaky_relu", "slope": 0.2}
    net = gf.Network(d=D_IN, width=6, activation=leaky, seed=4,
                     embedding=gf.DeepRandomFeatures(D=7, depth=4, activation=leaky))
    sol = _gd(net)
    again = gf.rerun(sol.save(tmp_path / "drf.nc"))
    _assert_reproduced(sol, again)
    assert again.config["network"]["activation"] == {"name": "leaky_relu", "slope": 0.2}


def test_rerun_reproduces_a_float32_run(tmp_path):
    sol = _flow(gf.Network(d=D_IN, width=6, seed=3, dtype="float32"), rtol=1e-5, atol=1e-7)
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "f32.nc")))


def test_rerun_reproduces_a_failed_run_with_the_same_status(tmp_path):
    sol = _flow(t1=1000.0, saveat=None, max_steps=20, warn=False)
    path = sol.save(tmp_path / "failed.nc")
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        again = gf.rerun(path)
    _assert_reproduced(sol, again)


def _double(X):
    return torch.cat([X, X**2], dim=1)


def test_rerun_of_a_callable_embedding_asks_for_the_callable_and_then_reproduces(tmp_path):
    net = gf.Network(d=D_IN, width=6, embedding=_double, seed=1)
    sol = _flow(net)
    path = sol.save(tmp_path / "callable.nc")
    with pytest.raises(ValueError, match=r"callable embedding.*embedding="):
        gf.rerun(path)
    _assert_reproduced(sol, gf.rerun(path, embedding=_double))


_NUMPY_SCALAR_BUG = ("BUG: numpy scalars accepted by the validators are stored unconverted (Network keeps d, "
                     "width and seed as given; RandomFeatures keeps D; options are copied as is), so "
                     "Solution.save fails after the whole run with 'TypeError: Object of type int64 is not "
                     "JSON serializable'")


def test_a_network_built_from_numpy_integers_saves_and_reruns(tmp_path):
    net = gf.Network(d=np.int64(D_IN), width=np.int64(6), seed=np.int64(3))
    sol = _flow(net, t1=1.0, saveat=None, weights_at=[1.0])
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "np_int.nc")))


def test_a_random_features_size_given_as_a_numpy_integer_saves_and_reruns(tmp_path):
    net = gf.Network(d=D_IN, width=6, embedding=gf.RandomFeatures(D=np.int64(5)), seed=3)
    sol = _flow(net, t1=1.0, saveat=None, weights_at=[1.0])
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "np_D.nc")))


def test_solver_options_given_as_numpy_floats_save_and_rerun(tmp_path):
    sol = _flow(t1=1.0, saveat=None, weights_at=[1.0], options={"max_step": np.float32(0.5)})
    _assert_reproduced(sol, gf.rerun(sol.save(tmp_path / "np_opt.nc")))


def test_a_custom_scaling_is_stored_by_its_exponents_and_reruns_exactly(tmp_path):
    # regression (a numerical audit): files stored the scaling's name only — a custom Scaling reran as "unknown
    # scaling", and one reusing a built-in's name (here "ours" with ℓ = m² instead of m) reran silently as the
    # built-in: loss 0.0483 against the original 3.7e-17
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((3, 8)), rng.uniform(-0.5, 0.5, 3)
    for sc in (gf.Scaling("ours", 1.0, 0.5, 2.0), gf.Scaling("ntk_unsym", 0.5, 0.5, 0.0)):
        sol = gf.simulate(gf.Network(d=8, width=16, scaling=sc, seed=3), X, y, t1=2.0, saveat=[0.0, 1.0, 2.0],
                          rtol=1e-10, atol=1e-12)
        assert sol.config["network"]["scaling"] == dataclasses.asdict(sc)
        again = gf.rerun(sol.save(tmp_path / f"{sc.name}.nc"))
        np.testing.assert_array_equal(again.loss, sol.loss)
    assert gf.Network(d=8, width=16, scaling="ours", seed=3).spec()["scaling"] == "ours"  # built-ins by name


def test_scaling_fields_are_checked():
    with pytest.raises(ValueError, match="Scaling lr_exp must be a finite number .*got"):
        gf.Scaling("x", 1.0, 0.5, float("nan"))
    with pytest.raises(TypeError, match="Scaling symmetric must be a bool"):
        gf.Scaling("x", 1.0, 0.5, 1.0, symmetric="yes")
    with pytest.raises(ValueError, match=r"missing \['lr_exp'\]"):
        gf.get_scaling({"name": "x", "alpha_exp": 1.0, "beta_exp": 0.5})
    assert gf.get_scaling({"name": "x", "alpha_exp": 1, "beta_exp": 0.5, "lr_exp": 1}).alpha_exp == 1.0


def test_a_batch_refuses_networks_whose_scalings_share_a_name_but_not_exponents():
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    nets = [gf.Network(d=3, width=8, seed=0), gf.Network(d=3, width=8, seed=1, scaling=gf.Scaling("ours", 1, 0.5, 2))]
    with pytest.raises(ValueError, match=r"nets\[1\] has scaling \{'name': 'ours', 'alpha_exp': 1.0, 'beta_exp': 0.5, "
                                         r"'lr_exp': 2.0, 'symmetric': False\} but nets\[0\] has 'ours'"):
        gf.simulate_batch(nets, X, y, t1=1.0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (h5netcdf closing a damaged file)
def test_a_damaged_file_is_refused_with_a_value_error_whatever_the_damage(flow_solution, tmp_path):
    # regression (a bad-input audit): of 150 random corruptions of a saved file, 20 raised h5py's KeyError ("incorrect
    # metadata checksum") and 7 a RuntimeError ("H5DSget_num_scales") out of gf.load, and gflow show printed tracebacks
    good = flow_solution.save(tmp_path / "good.nc")
    raw = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    kinds = {"loaded": 0, "refused": 0}
    for k in range(60):
        bad = bytearray(raw)
        start = int(rng.integers(0, len(bad) - 200))
        bad[start:start + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        path = tmp_path / f"bad{k}.nc"
        path.write_bytes(bytes(bad))
        try:
            gf.load(path)
            kinds["loaded"] += 1  # (damage inside an array's data, or padding: still a file)
        except ValueError as exc:
            assert str(path) in str(exc)
            kinds["refused"] += 1
    assert kinds["refused"] >= 10, kinds


def test_a_file_with_an_unknown_status_is_refused(flow_solution, tmp_path):
    ds = flow_solution.to_xarray()
    ds.attrs["status"] = "{not json"
    ds.to_netcdf(tmp_path / "odd.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match=r"status '\{not json' is not one of"):
        gf.load(tmp_path / "odd.nc")


def test_a_scaling_takes_numpy_numbers_and_refuses_an_empty_name():
    sc = gf.Scaling("x", np.float32(1.0), np.int64(0), 1)
    assert (sc.alpha_exp, sc.beta_exp, sc.lr_exp) == (1.0, 0.0, 1.0) and isinstance(sc.beta_exp, float)
    with pytest.raises(ValueError, match="Scaling name must be a non-empty str"):
        gf.Scaling("", 1.0, 0.5, 1.0)


def test_summary_with_no_rows_leaves_the_table_out():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=1.0)
    text = sol.summary(rows=0)
    assert text.startswith("status: success") and "loss" not in text.splitlines()[0]
    assert sol.summary(rows=2).splitlines()[0].split() == ["t", "loss"]


def test_a_save_that_fails_midway_leaves_the_previous_file_whole_and_no_temporary(tmp_path, monkeypatch):
    # (an audit: save wrote in place — a save killed midway left a truncated file where a good one was, and a load
    # beside a save failed on the half-written file)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=8, seed=0)
    first = gf.simulate(net, X, y, t1=1.0)
    second = gf.simulate(net, X, y, t1=2.0)
    path = first.save(tmp_path / "run.nc")
    before = path.read_bytes()
    import gflow.solution

    original = gflow.solution.to_netcdf  # (the writer of write_netcdf_atomic: h5py, or xarray's to_netcdf)

    def dies_midway(ds, target):
        original(ds, target)  # the bytes are on disk ...
        with open(target, "r+b") as fh:  # ... half of them, as a kill would leave them
            fh.truncate(len(open(target, "rb").read()) // 2)
        raise OSError("killed while writing")

    monkeypatch.setattr(gflow.solution, "to_netcdf", dies_midway)
    with pytest.raises(OSError, match="killed while writing"):
        second.save(path)
    monkeypatch.setattr(gflow.solution, "to_netcdf", original)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]
    assert gf.load(path).t[-1] == 1.0
    second.save(path)  # a save that completes replaces it whole
    assert gf.load(path).t[-1] == 2.0 and sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_a_save_over_a_file_keeps_its_permissions_and_a_symbolic_link_its_target(tmp_path):
    # (a review: the atomic replace made a 0640 file 0644, and turned a link into a file beside its stale target)
    import os
    import stat

    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=8, seed=0)
    first, second = gf.simulate(net, X, y, t1=1.0), gf.simulate(net, X, y, t1=2.0)
    path = first.save(tmp_path / "run.nc")
    os.chmod(path, 0o640)
    second.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and gf.load(path).t[-1] == 2.0
    target = first.save(tmp_path / "target.nc")
    link = tmp_path / "link.nc"
    link.symlink_to(target)
    second.save(link)
    assert link.is_symlink() and gf.load(target).t[-1] == 2.0


@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
def test_a_saved_run_continued_from_its_final_weights_follows_the_longer_run(scaling, tmp_path):
    # (the recipe for a longer horizon, docs/guide.md "Continuing a finished run": a workflow audit found no other way)
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", scaling=scaling, seed=0)
    kw = dict(method="dop853", rtol=1e-10, atol=1e-12, integrals=False)
    gf.simulate(net, X, y, t1=5.0, **kw).save(tmp_path / "run.nc")
    full = gf.simulate(net, X, y, t1=10.0, saveat=[0.0, 5.0, 10.0], **kw)
    a = gf.load(tmp_path / "run.nc")
    b = gf.simulate(gf.Network.from_spec(a.config["network"], c=a.c, W0=a.W_final), a.X, a.y, t1=5.0, **kw)
    assert b.t[0] == 0.0 and b.loss[0] == pytest.approx(a.final_loss, rel=1e-12)
    assert b.final_loss == pytest.approx(full.final_loss, rel=1e-8)
    assert np.allclose(b.W_final, full.W_final, rtol=0, atol=1e-8)
