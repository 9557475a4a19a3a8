"""Bad-input checks from the second fuzz report (findings 3, 4, 5, 9, 10, 13, 14 and 15): every error is a ValueError or
TypeError (IsADirectoryError for a directory given as a file) that names the argument, says what was expected
and what arrived; the command line checks its output path before it spends time on a run."""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.cli import main


@pytest.fixture(scope="module")
def sol():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    return gf.simulate(net, X, y, t1=1.0, features_at=[0.0, 1.0], warn=False)


@pytest.fixture(scope="module")
def saved(sol, tmp_path_factory):
    return sol.save(tmp_path_factory.mktemp("run") / "run.nc")


# ---------------------------------------------------------------------------------------------------------
# 9. features_at and plot_feature_scatter(times=...)


def test_features_at_a_kept_time_still_works(sol):
    np.testing.assert_array_equal(sol.features_at(1.0), sol.H[1])
    np.testing.assert_array_equal(sol.features_at(np.float32(0.0)), sol.H[0])


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -float("inf")])
def test_features_at_a_non_finite_time_is_a_value_error(sol, t):
    with pytest.raises(ValueError, match=r"t must be a finite time among the saved feature times .*got"):
        sol.features_at(t)


def test_features_at_a_time_not_kept_is_a_value_error(sol):
    with pytest.raises(ValueError, match=r"t must be one of the saved feature times \[0\.0, 1\.0\].*got 5\.0"):
        sol.features_at(5.0)


@pytest.mark.parametrize("t", ["x", None, [1.0], True])
def test_features_at_a_non_number_is_a_type_error(sol, t):
    with pytest.raises(TypeError, match=r"t must be a finite time among the saved feature times .*got"):
        sol.features_at(t)


@pytest.mark.parametrize("times, err, pattern", [
    ([float("nan")], ValueError, r"times\[0\] must be a finite time .*got nan"),
    ([0.0, 5.0], ValueError, r"times\[1\] must be one of the saved feature times .*got 5\.0"),
    (["x"], TypeError, r"times\[0\] must be a finite time .*got str 'x'"),
    ([None], TypeError, r"times\[0\] must be a finite time .*got NoneType"),
    ("1.0", TypeError, r"times must be a number or a sequence .*got str '1\.0'"),
])
def test_plot_feature_scatter_checks_times(sol, times, err, pattern):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    with pytest.raises(err, match=pattern):
        gf.plotting.plot_feature_scatter(sol, times=times)


# ---------------------------------------------------------------------------------------------------------
# 10. output paths


def test_save_to_a_directory_is_a_clear_error(sol, tmp_path):
    with pytest.raises(IsADirectoryError, match=r"path must be a file path, got .* existing directory"):
        sol.save(tmp_path)


def test_save_below_a_regular_file_is_a_clear_error(sol, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match=r"path must be a file path in a directory.* existing file"):
        sol.save(f / "run.nc")


def test_save_path_of_the_wrong_type_is_a_type_error(sol):
    with pytest.raises(TypeError, match=r"path must be a file path \(str or os.PathLike\), got int 3"):
        sol.save(3)


def _never(*args, **kwargs):
    raise AssertionError("the run started before the output path was checked")


def test_cli_simulate_checks_out_before_solving(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gflow.cli.run_config", _never)
    rc = main(["simulate", "--d", "4", "--width", "16", "--n", "5", "--t1", "1", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("gflow: error: --out must be a file path") and "existing directory" in err


def test_cli_rerun_checks_out_before_running(saved, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.modules["gflow.solve.rerun"], "rerun", _never)  # gf.solve.rerun is the function
    assert main(["rerun", str(saved), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gflow: error: --out must be a file path") and "existing directory" in err


def test_cli_bench_checks_out_before_running(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gflow.bench.speed.run_speed", _never)
    f = tmp_path / "existing"
    f.write_text("x")
    assert main(["bench", "speed", "--tiny", "--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "--out must be an output folder" in err and "existing file, not a folder" in err


# ---------------------------------------------------------------------------------------------------------
# 13. certify's slack and delta


@pytest.mark.parametrize("kw, err, pattern", [
    (dict(slack=-1.0), ValueError, r"slack must be >= 0, got -1\.0"),
    (dict(slack=float("nan")), ValueError, r"slack must be a finite number, got nan"),
    (dict(slack="x"), TypeError, r"slack must be a real number, got str 'x'"),
    (dict(delta=5.0), ValueError, r"delta \(the failure probability\) must be in \(0, 1\), got 5\.0"),
    (dict(delta=0.0), ValueError, r"delta must be > 0, got 0\.0"),
    (dict(delta=float("nan")), ValueError, r"delta must be a finite number, got nan"),
])
def test_certify_rejects_bad_slack_and_delta(sol, kw, err, pattern):
    with pytest.raises(err, match=pattern):
        gf.certify(sol, **kw)


def test_certify_accepts_zero_slack(sol):
    assert gf.certify(sol, slack=0.0).slack == 0.0


# ---------------------------------------------------------------------------------------------------------
# 14. messages that name the argument


def test_seed_too_large_for_a_network():
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64 - 1\], got 1180591620717411303424"):
        gf.Network(d=4, width=16, seed=2**70)
    assert gf.Network(d=4, width=16, seed=2**64 - 1).seed == 2**64 - 1


def test_seed_too_large_for_random_features_and_networks():
    with pytest.raises(ValueError, match=r"RandomFeatures seed must be an integer in \[0, 2\*\*64 - 1\]"):
        gf.RandomFeatures(D=8, seed=2**70)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64 - 1\]"):
        gf.networks([2**70], d=4, width=16)


def test_activation_lipschitz_must_be_a_number():
    with pytest.raises(TypeError, match=r"Activation lipschitz must be a real number > 0, got str '1'"):
        gf.Activation("a", torch.tanh, torch.tanh, lipschitz="1", interval=(-1, 1))


def test_leaky_relu_slope_must_be_a_number():
    with pytest.raises(TypeError, match=r"leaky_relu slope must be a real number in \(0, 1\), got str 'x'"):
        gf.get_activation("leaky_relu", slope="x")
    assert gf.get_activation("leaky_relu", slope=0.1).K == 0.1
    with pytest.raises(TypeError, match=r"activation 'relu' does not take parameters \['slope'\]"):
        gf.get_activation("relu", slope=0.1)


@pytest.mark.parametrize("rows, err, pattern", [
    (-1, ValueError, r"rows must be a non-negative int, got -1"),
    ("x", TypeError, r"rows must be a non-negative int, got str 'x'"),
    (2.5, TypeError, r"rows must be a non-negative int, got float 2\.5"),
])
def test_summary_rows_is_checked(sol, rows, err, pattern):
    with pytest.raises(err, match=pattern):
        sol.summary(rows=rows)


def test_cli_show_rows_is_checked(saved, capsys):
    assert main(["show", str(saved), "--rows", "-1"]) == 2
    assert "gflow: error: --rows must be a non-negative int, got -1" in capsys.readouterr().err
    assert main(["show", str(saved), "--rows", "3"]) == 0


@pytest.mark.parametrize("source", [3, None])
def test_rerun_and_certify_of_a_non_path(source):
    with pytest.raises(TypeError, match=r"source must be a gflow.Solution or the path of a saved one, got"):
        gf.rerun(source)
    with pytest.raises(TypeError, match=r"source must be a gflow.Solution or the path of a saved one, got"):
        gf.certify(source)


# ---------------------------------------------------------------------------------------------------------
# 15. values that were accepted silently


def test_activation_smooth_must_be_a_bool():
    def dtanh(u):
        return 1.0 - torch.tanh(u) ** 2

    with pytest.raises(TypeError, match=r"Activation smooth must be True or False, got str 'no'"):
        gf.Activation("a", torch.tanh, dtanh, 1.0, (-1, 1), smooth="no")
    assert gf.Activation("a", torch.tanh, dtanh, 1.0, (-1, 1), smooth=np.bool_(False)).smooth is False


# ---------------------------------------------------------------------------------------------------------
# 7. a custom activation is probed at construction


@pytest.mark.parametrize("sigma, dsigma, err, match", [
    (lambda u: torch.tanh(u).sum(), lambda u: 1 - torch.tanh(u) ** 2, TypeError, r"sigma must map a tensor elementwise"),
    (torch.tanh, lambda u: torch.ones(1, dtype=u.dtype), TypeError, r"dsigma must map .* shape \(1,\)"),
    (torch.tanh, lambda u: torch.ones(3, dtype=u.dtype), TypeError, r"dsigma must map .* shape \(3,\)"),
    (lambda u: u.numpy(), lambda u: u, TypeError, r"sigma must map .* got numpy array"),
    (lambda u: None, lambda u: u, TypeError, r"sigma must map .* got NoneType"),
    (torch.tanh, lambda u: -(1 - torch.tanh(u) ** 2), ValueError, r"dsigma is not the derivative of sigma at 63 of 63"),
    # (a numerics audit: σ′ wrong only where |u| > 3.2 — unnormalised data reaches there — passed the probe)
    (torch.tanh, lambda u: torch.where(u.abs() < 3.2, 1 - torch.tanh(u) ** 2, -torch.ones_like(u)), ValueError,
     r"dsigma is not the derivative of sigma at 32 of 32 points of 3.3 ≤ \|u\| ≤ 20 \(e.g. u = -20"),
])
def test_a_custom_activation_that_is_not_elementwise_or_whose_derivative_is_wrong_is_refused(sigma, dsigma, err,
                                                                                             match):
    # (these ran silently to a different flow: a scalar σ, a broadcast σ′, a wrongly signed σ′ made the loss rise)
    with pytest.raises(err, match=match):
        gf.Activation("a", sigma, dsigma, 1.0, (-1.0, 1.0))


def test_a_custom_activation_with_kinks_or_unbounded_slope_is_accepted():
    gf.Activation("abs", torch.abs, torch.sign, 1.0, (0.5, 1.0))
    gf.Activation("relu2", lambda u: torch.relu(u) ** 2, lambda u: 2 * torch.relu(u), math.inf, (0.0, 1.0))
    with pytest.raises(ValueError, match=r"sigma_and_dsigma must return the pair"):
        gf.Activation("p", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (-1, 1), sigma_and_dsigma=torch.tanh)


def test_plot_loss_bounds_takes_one_name_as_a_list(sol):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    with pytest.raises(ValueError, match=r"unknown bound\(s\) \['foo'\]"):
        gf.plotting.plot_loss_bounds(sol, bounds="foo")
    ax = gf.plotting.plot_loss_bounds(sol, bounds="T3").axes[0]
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
    assert math.isfinite(sol.final_loss)


# ---------------------------------------------------------------------------------------------------------
# 3. a custom activation is not rebuilt from a file as the built-in of its name


def test_a_custom_activation_named_like_a_built_in_is_not_rerun_as_the_built_in(tmp_path):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    shadow = gf.Activation("tanh", torch.sin, torch.cos, 1.0, (-1.0, 1.0))
    sol = gf.simulate(gf.Network(d=4, width=16, activation=shadow, seed=0), X, y, t1=1.0, warn=False)
    path = sol.save(tmp_path / "shadow.nc")
    with pytest.raises(ValueError, match=r"custom activation named 'tanh'.*pass it again as activation="):
        gf.rerun(path)
    again = gf.rerun(path, activation=shadow)
    np.testing.assert_allclose(again.loss, sol.loss, rtol=1e-12)
    assert gf.get_activation("tanh").spec() == {"name": "tanh"}  # built-ins: rebuilt by name as before
    assert gf.get_activation("leaky_relu", slope=0.1).builtin


# ---------------------------------------------------------------------------------------------------------
# 4. W0 = 0 and 5. overflowing data or network


def test_zero_initial_weights_give_zero_then_infinite_relative_movement_not_nan_or_a_crash():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, W0=np.zeros((16, 4)), seed=0)
    for space in ("feature", "weight"):  # ‖W − W0‖/‖W0‖ with ‖W0‖ = 0: 0 at t = 0 (nothing moved), inf once W moved
        sol = gf.simulate(net, X, y, t1=1.0, space=space, warn=False)
        assert sol.ok and sol.weight_movement[0] == 0.0 and np.all(np.isinf(sol.weight_movement[1:]))
        gd = gf.gradient_descent(net, X, y, step=0.1, steps=3, space=space, warn=False)
        assert gd.weight_movement[0] == 0.0 and np.all(np.isinf(gd.weight_movement[1:]))


@pytest.mark.parametrize("how", ["c_zero", "dead_relu"])
def test_a_run_without_training_signal_reports_zero_kernel_movement_not_nan(how):
    """M₀ = 0 (c = 0, or a ReLU net whose every neuron is inactive on every point): M stays 0 and the kernel
    movement ‖M_t − M_0‖/‖M_0‖ is 0 — through every recording path: one time at a time (GD, the batch API) and a
    chunk of dense-output times at once (dop853 with a saveat), weight and feature space."""
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    if how == "c_zero":
        net = gf.Network(d=4, width=8, activation="tanh", c=np.zeros(8), seed=0)
    else:  # h = W x < 0 on every point: W0 = −|…| on positive inputs
        X = np.abs(X) + 0.1
        net = gf.Network(d=4, width=8, activation="relu", W0=-np.abs(np.random.default_rng(0).normal(size=(8, 4))),
                         seed=0)
    runs = [gf.simulate(net, X, y, t1=1.0, method="dop853", saveat=np.linspace(0, 1, 9), space=space, warn=False)
            for space in ("feature", "weight")]
    runs.append(gf.gradient_descent(net, X, y, step=0.1, steps=4, warn=False))
    runs += gf.simulate_batch([net, net], X, y, t1=1.0, method="rk4", step=0.25, warn=False)
    for sol in runs:
        assert np.all(sol.lam_max_M == 0.0), sol.summary()
        assert np.array_equal(sol.kernel_movement, np.zeros_like(sol.kernel_movement)), sol.kernel_movement
        assert np.array_equal(sol.loss, np.full_like(sol.loss, sol.loss[0]))
        assert "no training signal" in sol.summary(), sol.summary()
    trained = gf.simulate(gf.Network(d=4, width=8, activation="tanh", seed=0), X, y, t1=1.0, warn=False)
    assert "no training signal" not in trained.summary()


@pytest.mark.parametrize("case", ["X", "c_hat", "float32", "nan_embedding"])
def test_overflowing_data_or_network_is_a_clear_value_error(case):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net, want = gf.Network(d=4, width=16, seed=0), "overflows torch.float64"
    if case == "X":
        X = X * 1e154
    elif case == "c_hat":
        net = gf.Network(d=4, width=16, c_hat=1e300, seed=0)
    elif case == "float32":
        net, X, want = gf.Network(d=4, width=16, dtype="float32", seed=0), X * 1e30, "overflows torch.float32"
    else:
        net, want = gf.Network(d=4, width=16, embedding=lambda Z: Z * float("nan"), seed=0), "NaN entries"
    with pytest.raises(ValueError, match=want):
        gf.simulate(net, X, y, t1=1.0)


# ---------------------------------------------------------------------------------------------------------
# 11. test data that overflows, 12. step options of every backend, 15. warn


def test_test_data_that_overflows_is_a_clear_value_error_not_an_inf_test_loss():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    with pytest.raises(ValueError, match=r"the test loss at t = 0 is not finite"):
        gf.simulate(net, X, y, t1=1.0, X_test=X, y_test=y * 1e200)
    with pytest.raises(ValueError, match=r"the test loss at t = 0 is not finite"):
        gf.gradient_descent(net, X, y, step=0.5, steps=4, X_test=X, y_test=y * 1e200)


_STEP_OPTIONS = [("max_step", math.nan, r"> 0 \(inf: no limit\)"), ("first_step", -1.0, "a finite number > 0"),
                 ("min_step", math.nan, "a finite number >= 0")]


@pytest.mark.parametrize("method, option, value, want",
                         [(m, *o) for m in ("torchdiffeq.dopri5", "RK45", "dop853") for o in _STEP_OPTIONS
                          if not (m == "RK45" and o[0] == "min_step")])  # (scipy's RK45 has no min_step)
def test_step_options_are_checked_for_every_backend(method, option, value, want):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    with pytest.raises(ValueError, match=rf"option '{option}' must be {want}, got"):
        gf.simulate(gf.Network(d=4, width=16, seed=0), X, y, t1=1.0, method=method, options={option: value})


@pytest.mark.parametrize("method, step, option, value, want", [
    ("implicit_adams", 0.1, "max_order", 0, r"an integer in 1 … 12"),
    ("implicit_adams", 0.1, "max_order", 100, r"an integer in 1 … 12"),
    ("implicit_adams", 0.1, "max_iters", 0, r"an integer >= 1"),
    ("explicit_adams", 0.1, "max_order", 2.5, r"an integer in 1 … 12"),
    ("torchdiffeq.dopri5", None, "ifactor", 0.5, ">= 1"),
    ("torchdiffeq.dopri5", None, "dfactor", 1.5, r"in \(0, 1\]"),
    ("torchdiffeq.dopri5", None, "safety", 0.0, r"in \(0, 1\]"),
])
def test_torchdiffeq_options_are_checked_before_the_run(method, step, option, value, want):
    # (a new-user audit: max_order 0 raised deque's "maxlen must be non-negative", 100 returned a failed run,
    # ifactor 0.5 a step-size collapse)
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    with pytest.raises(ValueError, match=rf"option '{option}' must be {want}, got"):
        gf.simulate(gf.Network(d=4, width=16, seed=0), X, y, t1=1.0, method=method, step=step,
                    options={option: value})


def test_warn_must_be_a_bool_and_the_fixed_step_time_budget_message_does_not_mention_tolerances():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    with pytest.raises(TypeError, match=r"warn must be True or False, got str 'x'"):
        gf.simulate(net, X, y, t1=1.0, warn="x")
    gd = gf.gradient_descent(net, X, y, step=1e-3, steps=10**7, max_wall_time=0.2, warn=False)
    assert gd.status == "time_budget" and "rtol" not in gd.message and "larger or fewer steps" in gd.message
    assert "ran out at t = 0 " not in gd.message and " after 0 steps" not in gd.message  # (it said so, at t = 1500)


# ---------------------------------------------------------------------------------------------------------
# 8. a stiff seed in a batch


def test_a_batch_stopped_by_one_stiff_seed_names_it_and_a_first_step_collapse_points_to_the_scale():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    nets = [gf.Network(d=4, width=16, seed=0), gf.Network(d=4, width=16, seed=1, c_hat=1e8)]
    sols = gf.simulate_batch(nets, X, y, t1=1.0, warn=False)
    assert all(s.status == "step_size_collapse" for s in sols)
    assert "limited by seed index 1 (network seed 1)" in sols[0].message
    assert "the scale of X and y, c_hat" in sols[0].message
    assert gf.simulate(nets[0], X, y, t1=1.0, warn=False).ok  # alone, the healthy seed finishes


def test_random_features_check_their_activation_and_sweeps_their_flags(tmp_path):
    with pytest.raises(ValueError, match=r"unknown activation 'foo'"):
        gf.RandomFeatures(D=4, activation="foo")
    with pytest.raises(TypeError, match=r"keep_weights must be True or False, got str 'yes'"):
        gf.sweep({"d": 4, "width": 8}, {"generator": "random_labels", "n": 4}, {"kind": "simulate", "t1": 0.5},
                 store=tmp_path / "s", keep_weights="yes", progress=False)
    assert not (tmp_path / "s").exists()  # refused before anything ran


# ---------------------------------------------------------------------------------------------------------
# second round: activations' hooks, shapes, dtypes, constants; batches of custom activations; ReLU detection


@pytest.mark.parametrize("kw, err, match", [
    (dict(sigma_and_dsigma_into=lambda u, s, d: None), ValueError, r"sigma_and_dsigma_into \(its s buffer\) does not"),
    (dict(sigma_into=lambda u, s: torch.tanh(u, out=s), dsigma_from_sigma_=lambda s: s.mul_(-1)), ValueError,
     r"dsigma_from_sigma_ .* does not give"),
    (dict(sigma_and_dsigma_into=5), TypeError, r"sigma_and_dsigma_into must be callable or None, got int 5"),
    (dict(sigma_and_dsigma=lambda u: 1 / 0), TypeError, r"sigma_and_dsigma failed .* ZeroDivisionError"),
    (dict(K=5.0), ValueError, r"K = 5 .* cannot exceed lipschitz = 1"),
    (dict(K=0.9), ValueError, r"K = 0.9 must be ≤ inf over I = \(-1, 1\) of \|σ′\|, but \|σ′\| comes down to 0.42"),
    (dict(K="1"), TypeError, r"K must be a real number"),
    (dict(lipschitz=1e-3), ValueError, r"lipschitz = 0.001 must be ≥ sup \|σ′\|"),
])
def test_an_activation_whose_hooks_or_constants_disagree_with_its_sigma_is_refused(kw, err, match):
    args = {"lipschitz": 1.0, **kw}
    with pytest.raises(err, match=match):
        gf.Activation("t", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, interval=(-1.0, 1.0), **args)


@pytest.mark.parametrize("sigma, dsigma, err, match", [
    (lambda u: torch.tanh(u.flatten()), lambda u: (1 - torch.tanh(u) ** 2).flatten(), TypeError, r"shape \(63,\)"),
    (lambda u: torch.tanh(u.T), lambda u: (1 - torch.tanh(u) ** 2).T, TypeError, r"shape \(9, 7\)"),
    (lambda u: u.tanh_(), lambda u: 1 - torch.tanh(u) ** 2, ValueError, r"changed its input u in place"),
])
def test_an_activation_that_is_not_elementwise_on_matrices_or_changes_its_input_is_refused(sigma, dsigma, err, match):
    with pytest.raises(err, match=match):
        gf.Activation("a", sigma, dsigma, 1.0, (-1.0, 1.0))


def test_an_activation_computed_in_float64_is_refused_for_a_float32_network_and_a_builtin_cannot_be_faked():
    a64 = gf.Activation("t64", lambda u: torch.tanh(u.double()), lambda u: 1 - torch.tanh(u.double()) ** 2, 1.0,
                        (-1.0, 1.0))
    gf.Network(d=4, width=16, activation=a64)  # float64: fine
    with pytest.raises(TypeError, match=r"sigma must return the dtype of its input \(torch.float32\)"):
        gf.Network(d=4, width=16, dtype="float32", activation=a64)
    with pytest.raises(TypeError, match=r"builtin"):
        gf.Activation("tanh", torch.sin, torch.cos, 1.0, (-1.0, 1.0), builtin=True)


def test_a_batch_of_same_named_custom_activations_that_differ_is_refused():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    s = gf.Activation("sin", torch.sin, torch.cos, 1.0, (-1.0, 1.0))
    c = gf.Activation("sin", torch.cos, lambda u: -torch.sin(u), 1.0, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"nets\[1\] has activation"):
        gf.simulate_batch([gf.Network(d=4, width=16, seed=0, activation=s),
                           gf.Network(d=4, width=16, seed=0, activation=c)], X, y, t1=1.0)
    sols = gf.simulate_batch([gf.Network(d=4, width=16, seed=k, activation=s) for k in (0, 1)], X, y, t1=1.0)
    assert all(x.ok for x in sols)


def test_a_kinked_activation_other_than_relu_is_sent_to_what_takes_it():
    # regression (an audit): hardtanh declared smooth=False — dop853 (what auto picks) stalled and was told to use
    # method='filippov' or 'sliding'; both refused it, saying "smooth activations need no event handling: use
    # method='dop853'"
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    hardtanh = gf.Activation("hardtanh", lambda u: u.clamp(-1, 1), lambda u: ((u > -1) & (u < 1)).to(u.dtype), 1.0,
                             (-0.9, 0.9), smooth=False)
    net = gf.Network(d=6, width=16, activation=hardtanh, seed=0)
    sol = gf.simulate(net, X, y, t1=1.0, method="dop853", max_steps=50, warn=False)
    assert sol.status == "max_steps" and "use the fixed-step method='euler', step=0.05, error_estimate=True" in \
        sol.message
    assert "use method='filippov'" not in sol.message and ", method='filippov' (event-driven" not in sol.message
    assert "method='filippov' and 'sliding' take ReLU-type kinks only" in sol.message
    with pytest.raises(ValueError, match=r"method 'dop853' is adaptive, and the activation 'hardtanh' has a kink") \
            as e:  # (a batch refuses adaptive methods for a kinked σ, naming what runs it: not filippov here)
        gf.simulate_batch(gf.networks([0, 1], d=6, width=16, activation=hardtanh), X, y, t1=1.0, method="dop853")
    assert "filippov" not in str(e.value) and "gf.simulate per network (method='euler', step=0.05, " in str(e.value)
    with pytest.raises(ValueError, match=r"gf.simulate per network \(method='filippov' or 'sliding'"):
        gf.simulate_batch(gf.networks([0, 1], d=6, width=16, activation="relu"), X, y, t1=1.0, method="dop853")
    for method, kw in (("filippov", {}), ("sliding", {"step": 0.25})):
        refused = rf"method '{method}' integrates .* got the kinked activation 'hardtanh' \(smooth=False\) of " \
            r"another shape; use the fixed-step method='euler'"
        with pytest.raises(ValueError, match=refused) as e:
            gf.simulate(net, X, y, t1=1.0, method=method, **kw)
        assert "smooth activations need no event handling" not in str(e.value)
    with pytest.raises(ValueError, match=r"step halving cannot estimate it; use method='euler' \(first order\)$"):
        gf.simulate_nonsmooth(net, X, y, t1=1.0, method="midpoint", step=0.1)
    ok = gf.simulate(net, X, y, t1=1.0, method="euler", step=0.05, error_estimate=True)
    assert ok.ok and np.all(np.isfinite(ok.error_estimate))
    relu = gf.simulate(gf.Network(d=6, width=16, activation="relu", seed=0), X, y, t1=1.0, method="dop853",
                       max_steps=5, warn=False)  # (ReLU: the event methods are still offered)
    assert relu.status == "max_steps" and "method='filippov' (event-driven" in relu.message
    with pytest.raises(ValueError, match=r"got activation 'tanh'; smooth activations need no event handling"):
        gf.simulate(gf.Network(d=6, width=16, seed=0), X, y, t1=1.0, method="filippov")


def test_only_an_activation_that_is_relu_shaped_everywhere_is_integrated_as_relu():
    from gflow.solve.filippov import kink_slopes

    def step(u, a):
        return (u > a).to(u.dtype)

    cap = gf.Activation("relu_cap10", lambda u: torch.clamp(u, 0, 10), lambda u: step(u, 0) - step(u, 10), 1.0,
                        (0.1, 9.0), smooth=False)  # passed as ReLU on 6 sample points; auto then ran filippov
    assert kink_slopes(cap) is None
    mine = gf.Activation("myrelu", lambda u: torch.clamp(u, min=0), lambda u: step(u, 0), 1.0, (0.0, 1.0),
                         smooth=False)
    assert kink_slopes(mine) == (0.0, 1.0) and kink_slopes(gf.get_activation("leaky_relu", slope=0.1)) == (0.1, 1.0)


def test_gradient_descent_whose_loss_explodes_is_diverged_before_it_overflows():
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    bad = gf.Network(d=4, width=16, seed=1, activation="linear", c_hat=100.0)
    sol = gf.gradient_descent(bad, X, y, step=0.5, steps=20, save_every=5, warn=False)
    assert sol.status == "diverged" and "the loss grew to" in sol.message  # was 'success' at 1.8e165
    # (the saved steps end at t = 0; the last iterate within 1e10·L₀, step 1, between saved steps, is kept)
    assert sol.t.tolist() == [0.0, 0.5] and np.all(np.isfinite(sol.loss)) and "step 1 (t = 0.5)" in sol.message
    good = gf.Network(d=4, width=16, seed=0, activation="linear")
    sols = gf.gradient_descent_batch([good, bad], X, y, step=0.5, steps=20, save_every=5, warn=False)
    assert [s.status for s in sols] == ["success", "diverged"]


def test_rerun_refuses_an_override_that_would_run_another_problem_and_names_the_embeddings_custom_activation(tmp_path):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    path = gf.simulate(gf.Network(d=4, width=16, seed=0), X, y, t1=1.0).save(tmp_path / "tb.nc")
    with pytest.raises(ValueError, match=r"activation=\{'name': 'relu'\} differs from the recorded \{'name': 'tanh'\}"):
        gf.rerun(path, activation="relu")
    with pytest.raises(ValueError, match=r"embedding=\{'kind': 'quadratic'\} differs from the recorded"):
        gf.rerun(path, embedding="quadratic")
    s = gf.Activation("sin", torch.sin, torch.cos, 1.0, (-1.0, 1.0))
    sol = gf.simulate(gf.Network(d=4, width=16, embedding=gf.RandomFeatures(D=8, activation=s), seed=0), X, y, t1=1.0)
    rfc = sol.save(tmp_path / "rfc.nc")
    with pytest.raises(ValueError, match=r"embedding 'random_features' used a custom activation named 'sin'"):
        gf.rerun(rfc)
    again = gf.rerun(rfc, embedding=gf.RandomFeatures(D=8, activation=s))
    np.testing.assert_array_equal(again.loss, sol.loss)


def test_rerun_of_a_custom_activation_refuses_another_activation_and_accepts_the_same_one_again(tmp_path):
    # regression (an audit): the recorded-σ check ran only for built-ins — a run with a custom σ reran with any
    # other custom σ or a built-in, silently running another problem
    X, y = gf.data.random_labels(n=5, d=4, seed=0)

    def softsign():  # a fresh instance each call, as a user rebuilding it in a new session would have
        return gf.Activation("softsign", lambda u: u / (1 + u.abs()), lambda u: 1 / (1 + u.abs()) ** 2, 1.0,
                             (-1.0, 1.0))

    sol = gf.simulate(gf.Network(d=4, width=16, activation=softsign(), seed=0), X, y, t1=1.0)
    path = sol.save(tmp_path / "ss.nc")
    cubic = gf.Activation("cubic", lambda u: u + u ** 3 / 3, lambda u: 1 + u ** 2, math.inf, (-1.0, 1.0))
    recorded = r"differs from the recorded \{'name': 'softsign', 'custom': True\}: the run used a custom activation " \
        r"named 'softsign'"
    with pytest.raises(ValueError, match=r"activation=\{'name': 'cubic', 'custom': True\} " + recorded):
        gf.rerun(path, activation=cubic)
    with pytest.raises(ValueError, match=r"activation=\{'name': 'tanh'\} " + recorded):
        gf.rerun(path, activation="tanh")
    other = gf.Activation("softsign", lambda u: u / (1 + u.abs()), lambda u: 1 / (1 + u.abs()) ** 2, 1.0,
                          (-1.0, 1.0), params=(("scale", 2.0),))
    with pytest.raises(ValueError, match=r"'scale': 2.0"):
        gf.rerun(path, activation=other)
    np.testing.assert_array_equal(gf.rerun(path, activation=softsign()).loss, sol.loss)
    np.testing.assert_array_equal(gf.rerun(sol, activation=softsign()).loss, sol.loss)


def test_rerun_refuses_a_custom_activation_or_embedding_of_the_same_name_but_another_function(tmp_path):
    # (an input audit) the name and params matched the file's, so a different σ — or a callable embedding X ↦ 3X
    # for the run's 2X — reran silently: another run (final loss 0.131 against the file's 0.177)
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    cub = gf.Activation("cubic", lambda u: u + u ** 3 / 3, lambda u: 1 + u ** 2, math.inf, (-1.0, 1.0))
    sol = gf.simulate(gf.Network(d=4, width=16, activation=cub, seed=0), X, y, t1=0.5, method="dop853")
    path = sol.save(tmp_path / "c.nc")
    other = gf.Activation("cubic", lambda u: u + u ** 3, lambda u: 1 + 3 * u ** 2, math.inf, (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"rerun: the given activation is not the run's: its outputs at t = 0 .* "
                                         r"differ from the saved ones by up to .*; pass the activation the run used"):
        gf.rerun(path, activation=other)
    np.testing.assert_array_equal(gf.rerun(path, activation=cub).loss, sol.loss)
    run = gf.gradient_descent(gf.Network(d=4, width=16, embedding=lambda Z: 2 * Z, seed=0), X, y, step=0.5, steps=4)
    with pytest.raises(ValueError, match=r"the given embedding is not the run's"):
        gf.rerun(run, embedding=lambda Z: 3 * Z)
    np.testing.assert_array_equal(gf.rerun(run, embedding=lambda Z: 2 * Z).loss, run.loss)


def test_rerun_of_an_embedding_with_a_custom_activation_refuses_another_embedding_and_accepts_the_same_again(
        tmp_path):
    # regression (the audit fix's helper): the recorded-embedding check was skipped where the embedding's
    # activation was custom, so any embedding — another D, seed or activation — reran silently
    X, y = gf.data.random_labels(n=5, d=4, seed=0)

    def rf(D=6, seed=3, name="softsign"):  # a fresh instance each call, as in a new session
        act = gf.Activation(name, lambda u: u / (1 + u.abs()), lambda u: 1 / (1 + u.abs()) ** 2, 1.0, (-1.0, 1.0))
        return gf.RandomFeatures(D=D, activation=act, seed=seed)

    sol = gf.simulate(gf.Network(d=4, width=16, activation="tanh", embedding=rf(), seed=0), X, y, t1=1.0)
    path = sol.save(tmp_path / "rf.nc")
    for other in (rf(D=7), rf(seed=4), rf(name="other"), gf.RandomFeatures(D=6, seed=3)):
        with pytest.raises(ValueError, match=r"differs from the recorded .*used a custom activation named 'softsign'"):
            gf.rerun(path, embedding=other)
    np.testing.assert_array_equal(gf.rerun(path, embedding=rf()).loss, sol.loss)


@pytest.mark.parametrize("fn, err, match", [
    (lambda Z: Z.float(), TypeError, r"returned dtype torch.float32 for torch.float64 inputs"),
    (lambda Z: Z[:, :0], ValueError, r"returned no features \(D = 0\)"),
    (lambda Z: Z * torch.ones(1, dtype=Z.dtype, requires_grad=True), TypeError, r"requires grad"),
])
def test_a_callable_embedding_of_the_wrong_dtype_or_width_is_a_clear_error(fn, err, match):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    with pytest.raises(err, match=match):
        gf.simulate(gf.Network(d=4, width=16, embedding=fn, seed=0), X, y, t1=1.0)
    with pytest.raises(ValueError, match=r"Callable embedding D must be an integer >= 1, got -1"):
        gf.model.embeddings.Callable(lambda Z: Z, D=-1)


def test_a_directory_given_as_a_config_file_is_a_command_line_error(tmp_path, capsys):
    assert main(["simulate", str(tmp_path), "--out", str(tmp_path / "x.nc")]) == 2
    assert "is a directory, not a TOML file" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "is a directory, not a TOML file" in capsys.readouterr().err


def test_a_solution_file_of_another_format_or_missing_parts_is_a_clear_error(saved, tmp_path):
    import xarray as xr

    with xr.open_dataset(saved, engine="h5netcdf") as ds:
        ds = ds.load()
    for name, edit, match in (("v2", lambda d: d.attrs.update(gflow_format_version=2), r"file format '2'"),
                              ("nomsg", lambda d: d.attrs.pop("message"), r"lacks \['message'\]"),
                              ("badjson", lambda d: d.attrs.update(stats="{oops"), r"an attribute is not JSON"),
                              ("list", lambda d: d.attrs.update(stats="[1, 2]"), r"must be JSON objects"),
                              ("noloss", lambda d: d.__delitem__("loss"), r"lacks \['loss'\]")):
        d = ds.copy(deep=True)
        edit(d)
        path = tmp_path / f"{name}.nc"
        d.to_netcdf(path, engine="h5netcdf")
        with pytest.raises(ValueError, match=match):
            gf.Solution.load(path)


def test_the_gd_schedules_unique_equals_numpys():
    from gflow.solve.gd import _sorted_unique

    rng = np.random.default_rng(0)
    for size in (0, 1, 7, 1000):
        k = rng.integers(0, 50, size)
        np.testing.assert_array_equal(_sorted_unique(k), np.unique(k))


def test_plot_sweep_of_a_solution_and_a_fractional_train_index_are_clear_errors(sol):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from gflow.plotting import plot_feature_scatter, plot_sweep

    with pytest.raises(TypeError, match=r"plot_sweep takes a sweep"):
        plot_sweep(sol)
    with pytest.raises(TypeError, match=r"train_index must be an int .* got float 1.5"):
        plot_feature_scatter(sol, times=[1.0], train_index=1.5)


def test_a_solve_whose_working_set_exceeds_the_memory_is_refused_before_it_allocates(monkeypatch):
    from gflow.model import network

    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    monkeypatch.setattr(network, "_physical_memory", lambda: 1000.0)  # bytes: as if width were 1e8 here
    with pytest.raises(ValueError, match=r"a solve with method='auto' at width 16 .* more than this machine's"):
        gf.simulate(net, X, y, t1=1.0)


def test_a_sweeps_fixed_solver_values_are_checked_up_front_like_its_grid_values():
    from gflow.sweeps.config import SweepConfig, SweepConfigError

    with pytest.raises(SweepConfigError, match=r"solver.t1 = inf cannot run: t1 must be a finite number"):
        SweepConfig.from_dict({"d": 4, "width": 8}, {"generator": "random_labels", "n": 4},
                              {"kind": "simulate", "t1": math.inf})
    with pytest.raises(SweepConfigError, match=r"network.width = 0 cannot run"):
        SweepConfig.from_dict({"d": 4, "width": 0}, {"generator": "random_labels", "n": 4},
                              {"kind": "simulate", "t1": 1.0})


# ---------------------------------------------------------------------------------------------------------
# robustness audit (/tmp/audit/robust): bad input that ran silently


@pytest.mark.parametrize("spec, bad", [({"kind": "quadratic", "D": 5}, "['D']"),
                                       ({"kind": "identity", "foo": 1}, "['foo']"),
                                       ({"name": "quadratic", "depth": 2}, "['depth']")])
def test_an_embedding_spec_with_keys_its_kind_does_not_take_is_refused(spec, bad):
    # regression: get_embedding dropped them ({"kind": "quadratic", "D": 5} ran with D = d² = 9)
    with pytest.raises(ValueError, match=rf"embedding '\w+' takes no parameters .*got {re.escape(bad)} .*"
                                         r"accepted keys: \['kind'\]"):
        gf.Network(d=3, width=8, embedding=spec)
    assert gf.Network(d=3, width=8, embedding={"kind": spec.get("kind", spec.get("name"))}).D in (3, 9)


@pytest.mark.parametrize("method, kw", [("dop853", {}), ("rk4", {"step": 1e-11}), ("RK45", {})])
@pytest.mark.parametrize("t1", [1e-11, 1e-14])
def test_a_short_horizon_keeps_its_final_time(method, kw, t1):
    # regression: times closer than 1e-10·max(1, t1) were merged, so every t1 ≤ 1e-10 ran to "reached t1" with the
    # single row t = 0 (and the final features were never recorded)
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    kw = {k: min(v, t1) for k, v in kw.items()}
    sol = gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=t1, method=method, **kw)
    assert sol.ok and sol.t[0] == 0.0 and sol.t[-1] == t1 and sol.feature_t.tolist() == [0.0, t1]


def test_close_saveat_times_are_all_kept_and_rounding_twins_are_one():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    net = gf.Network(d=3, width=8, seed=0)
    want = np.r_[np.linspace(0, 1e-5, 11), 1e4]
    sol = gf.simulate(net, X, y, saveat=want, rtol=1e-4)
    np.testing.assert_array_equal(sol.t, want)  # (6e-6, 7e-6 and 1e-5 were dropped)
    twins = gf.simulate(net, X, y, t1=5.0, saveat=[0.0, 0.02, 0.020000000000000004, 5.0],
                        features_at=[0.020000000000000004, 5.0])
    assert twins.t.tolist() == [0.0, 0.02, 5.0] and twins.feature_t.tolist() == [0.02, 5.0]


@pytest.mark.parametrize("value", ["no", "0", 1, None])
def test_save_include_weights_must_be_a_bool(sol, tmp_path, value):
    # regression: "no" failed inside int() ("invalid literal for int()"), "0" was stored as weights_included = 0
    with pytest.raises(TypeError, match=r"include_weights must be True or False, got"):
        sol.save(tmp_path / "x.nc", include_weights=value)
    assert not (tmp_path / "x.nc").exists()


def test_load_names_a_bad_path_or_group_and_lists_the_groups(sol, saved, tmp_path):
    with pytest.raises(TypeError, match=r"path must be a file path \(str or os.PathLike\), got NoneType"):
        gf.load(None)
    with pytest.raises(TypeError, match=r"group must be a group name \(str, e.g. 'run000'\) of the file or None, got int 3"):
        gf.Solution.load(saved, group=3)
    with pytest.raises(ValueError, match=r"has no group 'nope'; its groups: none"):  # (was: "not a netCDF-4 file")
        gf.Solution.load(saved, group="nope")
    grouped = tmp_path / "grouped.nc"
    sol.to_xarray().to_netcdf(grouped, engine="h5netcdf", group="run0")
    assert gf.Solution.load(grouped, group="run0").status == sol.status
    with pytest.raises(ValueError, match=r"has no group 'run1'; its groups: 'run0'"):
        gf.Solution.load(grouped, group="run1")


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
def test_limit_gram_of_inputs_that_overflow_is_refused_on_every_path(activation):
    # regression: the closed form (relu) returned inf on the diagonal and NaN elsewhere, silently
    X, _ = gf.data.random_labels(n=6, d=3, seed=0)
    with pytest.raises(ValueError, match=r"XXᵀ/d overflows float64 .*rescale X"):
        gf.limit_gram(activation, X * 1e200)
    assert np.all(np.isfinite(gf.limit_gram(activation, X * 1e100)))


# ---------------------------------------------------------------------------------------------------------
# The sixteenth session's bad-input sweep (one argument of a valid call replaced by NaN, ±inf, 1e308, 1e-320, an
# array, a string, 10**30, ...): what it found, each now a clear error or a clean run


def _tiny():
    X, y = gf.data.random_labels(n=6, d=3, seed=0)
    return gf.Network(d=3, width=8, seed=0), X, y


@pytest.mark.parametrize("call", ["simulate", "gradient_descent", "simulate_batch", "gradient_descent_batch"])
@pytest.mark.parametrize("name, value, err", [("checkpoint_every", -1.0, ValueError),
                                              ("checkpoint_every", "soon", TypeError),
                                              ("keep_checkpoint", "yes", TypeError), ("warn", np.ones(2), TypeError)])
def test_run_flags_are_checked_with_or_without_a_checkpoint(call, name, value, err):
    # (checkpoint_every and keep_checkpoint were read only when checkpoint= was given; gradient_descent took any warn)
    net, X, y = _tiny()
    fn = getattr(gf, call)
    first = [net, net] if call.endswith("batch") else net
    kw = {"t1": 1.0} if call.startswith("simulate") else {"step": 0.1, "steps": 3}
    with pytest.raises(err, match=name):
        fn(first, X, y, **kw, **{name: value})


def test_space_given_an_array_is_named_before_auto_reads_it():
    net, X, y = _tiny()
    with pytest.raises(TypeError, match="space must be one of"):  # (was numpy's "truth value ... is ambiguous")
        gf.simulate(net, X, y, 1.0, space=np.array(["feature", "weight"]))


def test_gd_final_time_that_overflows_is_named():
    net, X, y = _tiny()
    with pytest.raises(ValueError, match=r"steps × step = 5 × 1e\+308 overflows"):  # (was "features_at must be finite")
        gf.gradient_descent(net, X, y, step=1e308, steps=5)


def test_device_beyond_int64_is_named():
    with pytest.raises(TypeError, match="device must be"):  # (was torch's "Overflow when unpacking long long")
        gf.Network(d=3, width=8, device=10**30)


def test_a_subnormal_final_time_gets_a_default_grid():
    net, X, y = _tiny()  # (numpy's "Geometric sequence cannot include zero" from default_saveat before)
    sol = gf.simulate(net, X, y, t1=1e-320, warn=False)
    assert sol.ok and sol.t[-1] == 1e-320 and sol.loss[-1] == sol.loss[0]


def test_limit_gram_refuses_a_depth_that_would_never_finish():
    with pytest.raises(ValueError, match="depth must be ≤ 10000"):  # (10**30 layers: a hang)
        gf.limit_gram("relu", np.eye(3), depth=10**30)


class TestSimulateNonsmooth:
    @staticmethod
    def _relu():
        X, y = gf.data.random_labels(n=6, d=3, seed=0)
        return gf.Network(d=3, width=8, activation="relu", seed=0), X, y

    @pytest.mark.parametrize("value, err", [("many", TypeError), (2.5, TypeError), (np.ones(2), TypeError),
                                            (0, ValueError), (None, TypeError)])
    def test_max_steps_is_checked(self, value, err):
        net, X, y = self._relu()  # (raw "'>' not supported" / torch's "Boolean value of Tensor" before)
        with pytest.raises(err, match="max_steps"):
            gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, max_steps=value)

    def test_warn_is_checked(self):
        net, X, y = self._relu()
        with pytest.raises(TypeError, match="warn must be True or False"):
            gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, warn="no")

    @pytest.mark.parametrize("kw", [{"t1": 1e308}, {"step": 1e-320}, {"saveat": [0.0, 1e308]}])
    def test_a_step_count_that_overflows_is_a_max_steps_error(self, kw):
        net, X, y = self._relu()  # (OverflowError: cannot convert float infinity to integer, before)
        kw = {"t1": 1.0, "step": 0.1, **kw}
        if "saveat" in kw:
            kw["t1"] = None
        with pytest.raises(ValueError, match="max_steps"):
            gf.simulate_nonsmooth(net, X, y, **kw)

    def test_an_unreachable_rtol_is_refused(self):
        net, X, y = self._relu()  # (rtol = 1e-320 halved the step until max_steps = 1e7: minutes to hours)
        with pytest.raises(ValueError, match=r"rtol must be ≥ 1.4\d*e-14"):
            gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, rtol=1e-320)

    def test_a_target_above_100_percent_is_refused(self):
        net, X, y = self._relu()  # (an input audit: rtol = 2 or 5 ran, met at once by the coarsest solve)
        with pytest.raises(ValueError, match=r"rtol must be ≤ 1 \(the target relative error of the loss"):
            gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, rtol=2.0)

    def test_a_budget_spent_before_the_first_solve_still_returns_it_partial(self):
        net, X, y = self._relu()  # (IndexError: list index out of range, before)
        with pytest.warns(gf.GFlowWarning, match="time_budget"):
            sol = gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, max_wall_time=1e-300)
        assert sol.status == "time_budget" and sol.t[0] == 0.0 and np.all(np.isfinite(sol.loss))
        assert "max_wall_time" in sol.message


@pytest.mark.parametrize("fn", ["plot_loss_bounds", "plot_quantities", "plot_gram_spectrum", "plot_feature_scatter"])
def test_plots_name_the_sol_argument(fn):
    with pytest.raises(TypeError, match="sol must be a gflow.Solution"):
        getattr(gf.plotting, fn)(3.0)


@pytest.mark.parametrize("fn, kw, err, what", [
    ("plot_quantities", {"stacked": np.ones(2)}, TypeError, "stacked must be True or False"),
    ("plot_gram_spectrum", {"limit": "yes"}, TypeError, "limit must be True or False"),
    ("plot_loss_bounds", {"title": np.ones(2)}, TypeError, "title must be True, False or a string"),
    ("plot_loss_bounds", {"test": np.ones(2)}, ValueError, "test must be 'error', 'loss' or None"),
    ("plot_loss_bounds", {"bounds": 3}, TypeError, "bounds must be a bound name or a list"),
    ("plot_feature_scatter", {"times": []}, ValueError, "times must name at least one saved feature time"),
    ("plot_feature_scatter", {"times": np.ones((2, 2))}, ValueError, r"flat sequence .* shape \(2, 2\)"),
    ("plot_summary", {"path": 3}, TypeError, "path must be a file path"),
    ("plot_summary", {"path": "summary.txt"}, ValueError, r"path must end in \.png or \.pdf"),
])
def test_plot_arguments_are_named(sol, fn, kw, err, what):
    # (numpy's "truth value ... is ambiguous", "'int' object is not iterable", "need at least one array to
    # concatenate" before; plot_summary drew the whole figure before it refused a .txt path)
    with pytest.raises(err, match=what):
        getattr(gf.plotting, fn)(sol, **kw)


@pytest.mark.parametrize("W, what", [(3.0, "W must be"), (np.ones((2, 2)), r"W must have shape \(16, 4\)"),
                                     (torch.ones(16, 4, dtype=torch.float32), "W must be a \\(16, 4\\) tensor")])
def test_forward_checks_W(W, what):
    X, _ = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)  # (torch's "unsupported operand type(s) for @" before)
    with pytest.raises((TypeError, ValueError), match=what):
        net.forward(X, W)


def test_forward_keeps_autograd_through_W():
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    W = net.W0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net.loss(X, y, W), W)
    assert g.shape == W.shape and float(g.abs().max()) > 0


def test_deep_random_features_refuse_a_depth_that_would_never_finish():
    with pytest.raises(ValueError, match="depth must be ≤ 10000"):  # (10**30 D×D draws: a hang)
        gf.DeepRandomFeatures(4, depth=10**30)


@pytest.mark.parametrize("seeds", ["01", torch.tensor(3), {"a": 1}])
def test_networks_name_bad_seeds(seeds):
    with pytest.raises(TypeError, match="seeds must be an iterable of integers"):
        gf.networks(seeds, d=3, width=4)


# an input audit (bare errors from the libraries underneath)


def test_a_sweep_given_as_none_is_named():
    with pytest.raises(TypeError, match="store must be the path of a sweep's store folder, got NoneType"):
        gf.open_sweep(None)  # (pathlib's "expected str, bytes or os.PathLike object, not NoneType")
    with pytest.raises(TypeError, match=r"ds must be a sweep dataset \(gf.open_sweep\(...\)\) .*got NoneType"):
        gf.plotting.plot_sweep(None)  # ("argument of type 'NoneType' is not iterable")


def test_plot_summary_checks_its_output_folder_before_drawing(tmp_path, monkeypatch):
    X, y = gf.data.random_labels(n=5, d=4, seed=0)
    sol = gf.simulate(gf.Network(d=4, width=8, seed=0), X, y, t1=1.0, integrals=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    drawn = []
    monkeypatch.setattr(gf.plotting, "_pyplot", lambda: drawn.append(1))
    with pytest.raises(ValueError, match=r"path must be a file path in a directory, got .* is an existing file"):
        gf.plotting.plot_summary(sol, blocker / "sum.png")  # (drawn for a second, then PIL's FileNotFoundError)
    assert not drawn


def test_loading_a_folder_says_it_is_one_and_points_to_what_it_holds(tmp_path, capsys):
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a solution file$"):
        gf.load(tmp_path)  # (HDF5's "Unable to synchronously open file (file read failed: ... buf = 0x7ff...")
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text("{}")
    with pytest.raises(IsADirectoryError, match=r"a sweep's store: gf.open_sweep\(.*\) reads all its runs"):
        gf.load(store)
    exp = tmp_path / "exp1"
    exp.mkdir()
    (exp / "runs.nc").write_text("")
    with pytest.raises(IsADirectoryError, match=r"an experiment's runs: gf.load\('.*runs.nc', group='run000'\)"):
        gf.load(exp)
    assert main(["show", str(store)]) == 2
    assert "is a folder, not a solution file" in capsys.readouterr().err


@pytest.mark.parametrize("make", [gf.data.random_labels, gf.data.wei2019, gf.data.quadratic_teacher])
def test_a_data_draw_larger_than_the_machine_is_refused_naming_n_and_d(make):
    with pytest.raises(ValueError, match=r"n = 1000000000000 points of dimension d = \d+ need .* GiB, more than half"):
        make(n=10**12)  # (numpy's bare MemoryError "Unable to allocate 29.1 TiB")
    with pytest.raises(ValueError, match=r"n = 5 points of dimension d = 1000000000000 need"):
        make(n=5, d=10**12)


def test_simulate_nonsmooth_names_itself_for_an_unknown_keyword():
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    net = gf.Network(d=3, width=8, activation="relu", seed=0)
    with pytest.raises(TypeError, match=r"^simulate_nonsmooth\(\) got an unexpected keyword argument 'stepp'"):
        gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, stepp=0.1)  # (it said simulate())


@pytest.mark.parametrize("dtype, want", [(np.float64, torch.float64), (np.dtype("float32"), torch.float32),
                                         (np.float32, torch.float32)])
def test_numpy_dtypes_are_taken(dtype, want):
    assert gf.Network(d=3, width=4, seed=0, dtype=dtype).dtype == want  # (np.float64 was refused)
    with pytest.raises(TypeError, match="dtype must be torch.float64 or torch.float32"):
        gf.Network(d=3, width=4, seed=0, dtype=np.int64)
    with pytest.raises(TypeError, match="dtype must be torch.float64 or torch.float32"):
        gf.Network(d=3, width=4, seed=0, dtype=np.ones(2))


def test_a_batch_given_a_step_with_an_adaptive_method_lists_only_the_batch_s_fixed_step_methods():
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    with pytest.raises(ValueError, match=r"was given but method 'dop853' is adaptive") as err:
        gf.simulate_batch(gf.networks([0, 1], d=3, width=8), X, y, t1=1.0, step=0.1)
    assert "rk4" in str(err.value) and "sliding" not in str(err.value)  # (an input audit: the batch refuses it)
    with pytest.raises(ValueError, match=r"fixed-step method \(.*sliding\)"):
        gf.simulate(gf.Network(d=3, width=8, seed=0), X, y, t1=1.0, method="dop853", step=0.1)


def test_a_custom_activation_whose_derivative_jumps_is_found_kinked():
    # (an input audit) a custom ReLU left smooth by default: auto ran dop853 on it, whose steps collapsed at the kink
    # for minutes (the step projection stops a kinked σ's collapse at once only); now smooth=False is found from σ′
    relu = gf.Activation("relu2", torch.relu, lambda u: (u > 0).to(u.dtype), 1.0, (0.0, 1.0))
    hard = gf.Activation("hardtanh", lambda u: u.clamp(-1, 1), lambda u: ((u > -1) & (u < 1)).to(u.dtype), 1.0,
                         (-0.9, 0.9))
    assert not relu.smooth and not hard.smooth
    for name in ("tanh", "sigmoid", "erf", "softplus", "gelu", "linear"):
        assert gf.get_activation(name).smooth, name
    softsign = gf.Activation("softsign", lambda u: u / (1 + u.abs()), lambda u: 1 / (1 + u.abs()) ** 2, 1.0,
                             (-1.0, 1.0))  # (σ′ continuous, σ″ jumps: smooth enough for the solvers)
    assert softsign.smooth
    with pytest.raises(ValueError, match=r"smooth=True, but dsigma jumps at u = 1 \(from 1 to 0\)"):
        gf.Activation("hardtanh", hard.sigma, hard.dsigma, 1.0, (-0.9, 0.9), smooth=True)
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation=relu, seed=0)
    assert gf.simulate(net, X, y, t1=1.0).config["solver"]["method"] == "filippov"
    sol = gf.simulate(net, X, y, t1=1.0, method="dop853", warn=False)
    assert sol.status == "stalled" and sol.stats["n_accepted"] <= 400 and "kink" in sol.message


def test_kinks_are_found_whatever_the_scale_of_sigma_prime_and_smooth_turns_are_not():
    # (a review: a threshold relative to max |σ′| over the probes missed 1e-4·ReLU and exp(3u) + ReLU)
    def act(sigma, dsigma, lipschitz=math.inf):
        return gf.Activation("a", sigma, dsigma, lipschitz, (0.0, 1.0))

    assert not act(lambda u: 1e-4 * torch.relu(u), lambda u: 1e-4 * (u > 0).to(u.dtype), 1e-4).smooth
    exp_relu = act(lambda u: torch.exp(3 * u) / 3 + torch.relu(u), lambda u: torch.exp(3 * u) + (u > 0).to(u.dtype))
    assert not exp_relu.smooth
    assert act(lambda u: u * u / 2, lambda u: u).smooth  # (σ′ through 0 with slope 1)
    assert act(lambda u: torch.where(u.abs() < 1, u * u / 2, u.abs() - 0.5), lambda u: u.clamp(-1, 1), 1.0).smooth
    assert act(lambda u: torch.tanh(1000 * u) / 1000, lambda u: 1 - torch.tanh(1000 * u) ** 2, 1.0).smooth


def test_an_overflow_of_sigma_at_huge_features_is_blamed_on_the_step_not_the_activation():
    # (a review: σ = sinh at |H| = 3e33 after an unstable rk4 step was blamed on σ, and the step advice was lost)
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    sinh = gf.Activation("sinh", torch.sinh, torch.cosh, math.inf, (-1.0, 1.0))
    sol = gf.simulate(gf.Network(d=4, width=16, activation=sinh, seed=0), X, 30 * y, t1=50.0, method="rk4", step=0.5,
                      warn=False)
    assert sol.status == "nonfinite" and "the activation" not in sol.message
    assert "exceeds the stability limit" in sol.message and "use a step below it" in sol.message


# ---------------------------------------------------------------------------------------------------------
# a workflow audit: read-only input arrays (pandas ≥ 3's DataFrame.to_numpy(), np.load(mmap_mode="r"))


@pytest.mark.parametrize("call", [
    "gf.simulate(gf.Network(d=4, width=8, seed=0), X, y, t1=0.5, integrals=False)",
    "gf.gradient_descent(gf.Network(d=4, width=8, seed=0), X, y, step=0.1, steps=2, integrals=False)",
    "gf.Network(d=4, width=5, c=y, W0=X)",
])
def test_read_only_arrays_are_taken_without_torchs_not_writable_warning(call):
    # (torch warns "The given NumPy array is not writable ... undefined behavior" once per process, so each call
    # runs in a fresh interpreter with warnings as errors)
    import subprocess

    code = ("import numpy as np, gflow as gf\n"
            "X, y = gf.data.random_labels(n=5, d=4, seed=0)\n"
            "X, y = np.array(X), np.array(y)\n"
            "X.flags.writeable = False; y.flags.writeable = False\n"
            f"{call}\n"
            "assert not X.flags.writeable and np.array_equal(X, gf.data.random_labels(n=5, d=4, seed=0)[0])\n")
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
