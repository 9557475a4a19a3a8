"""gf.compare: a run's errors against a reference run of the same network and data."""

import dataclasses

import matplotlib
import numpy as np
import pytest
import scipy.linalg
import torch

import gflow as gf
from gflow.cli import main

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def linear_net():
    """A linear-σ P-3L net, whose flow on the training points is r(t) = exp(−κ G t) r0 (EQUATIONS.md E3)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((6, 4)), rng.uniform(-0.5, 0.5, 6)
    net = gf.Network(d=4, width=16, activation="linear", embedding=gf.RandomFeatures(D=8, activation="tanh"),
                     seed=1)
    return net, X, y


@pytest.fixture(scope="module")
def tanh_runs():
    X, y = gf.data.random_labels(n=12, d=6, seed=0)
    Xt, yt = gf.data.random_labels(n=30, d=6, seed=1)
    net = gf.Network(d=6, width=48, activation="tanh", seed=0)
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=20, save_every=2, X_test=Xt, y_test=yt,
                             features_at=[0.0, 1.0, 2.0, 10.0])
    ref = gf.simulate(net, X, y, saveat=gd.t, rtol=1e-11, atol=1e-13, X_test=Xt, y_test=yt)
    return net, X, y, Xt, yt, gd, ref


def test_gd_against_the_linear_flow_measures_its_distance_to_the_closed_form(linear_net):
    net, X, y = linear_net
    gd = gf.gradient_descent(net, X, y, step=0.1, steps=30, save_every=1, integrals=False)
    grid = np.arange(31) / 10.0  # (3/10 is 0.3 here and 3·0.1 = 0.30000000000000004 in GD: matched within 1e-9)
    assert np.any(grid != gd.t)
    ref = gf.simulate(net, X, y, saveat=grid, method="dop853", rtol=1e-12, atol=1e-14, integrals=False)
    cmp = gf.compare(gd, ref)
    assert len(cmp.t) == 31 and np.array_equal(cmp.t, grid)
    kappa = net.lr * net.alpha ** 2 * net.beta ** 2 * net.D * float((net.c ** 2).sum())
    G = net.gram(X).numpy()
    r0 = net.forward(X).numpy() - y
    L_exact = np.array([0.5 * np.sum((scipy.linalg.expm(-kappa * G * t) @ r0) ** 2) for t in grid])
    assert np.allclose(ref.loss, L_exact, rtol=1e-9, atol=0.0)  # (the reference is the closed form)
    assert np.allclose(cmp.loss_rel_error, np.abs(gd.loss - L_exact) / L_exact, rtol=1e-6, atol=1e-12)
    assert cmp.loss_rel_error[0] < 1e-14 and cmp.max_loss_rel_error > 1e-4
    # the residual error bounds the loss error: |ΔL|/L ≤ 2e + e²
    e = cmp.residual_rel_error
    assert np.all(cmp.loss_rel_error <= 2 * e + e ** 2 + 1e-12)


def test_gd_error_against_the_flow_is_first_order_in_the_step(linear_net):
    net, X, y = linear_net
    ref = gf.simulate(net, X, y, saveat=np.linspace(0.0, 2.0, 5), method="dop853", rtol=1e-12, atol=1e-14,
                      integrals=False)
    errs = []
    for delta in (0.1, 0.05, 0.025):
        gd = gf.gradient_descent(net, X, y, step=delta, steps=round(2.0 / delta), save_every=round(0.5 / delta),
                                 integrals=False)
        errs.append(gf.compare(gd, ref).max_loss_rel_error)
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), (errs, ratios)


def test_the_two_exact_formulations_agree_in_every_compared_quantity(tanh_runs):
    net, X, y, Xt, yt, gd, _ = tanh_runs
    kw = dict(saveat=np.linspace(0.0, 5.0, 6), rtol=1e-11, atol=1e-13, X_test=Xt, y_test=yt,
              features_at=[0.0, 2.0, 5.0], weights_at=[2.0])
    w = gf.simulate(net, X, y, space="weight", **kw)
    f = gf.simulate(net, X, y, space="feature", **kw)
    cmp = gf.compare(f, w)
    assert np.array_equal(cmp.feature_t, [0.0, 2.0, 5.0]) and cmp.weight_t == 5.0
    for err in (cmp.residual_rel_error, cmp.loss_rel_error, cmp.test_loss_rel_error, cmp.test_error_rel_error,
                cmp.feature_rel_error, [cmp.weight_rel_error]):
        assert np.max(err) < 1e-8, err
    assert cmp.max_residual_rel_error > 0.0  # (two computations, not one compared with itself)
    # runs that end apart compare their weights at the last weights_at time both kept
    shorter = gf.simulate(net, X, y, saveat=np.linspace(0.0, 4.0, 5), rtol=1e-11, atol=1e-13, space="feature",
                          weights_at=[1.0, 2.0, 3.0], integrals=False)
    cmp_w = gf.compare(shorter, w)
    assert cmp_w.weight_t == 2.0 and 0.0 < cmp_w.weight_rel_error < 1e-8
    # against GD (δ = 0.5) every quantity is visibly off, and the errors are the runs' own differences
    cmp_gd = gf.compare(gd, w)
    k = np.flatnonzero(np.isin(gd.t, w.t))
    assert np.array_equal(cmp_gd.t, gd.t[k]) and len(k) == 6  # t = 0, 1, …, 5
    j = np.searchsorted(w.t, gd.t[k])
    rel = np.abs(gd.test_error[k] - w.test_error[j]) / w.test_error[j]
    assert np.allclose(cmp_gd.test_error_rel_error, rel, rtol=1e-12) and rel.max() > 1e-3
    assert np.array_equal(cmp_gd.feature_t, [0.0, 2.0]) and cmp_gd.feature_rel_error[0] == 0.0  # (GD's 0, 2 of 4)
    H, H_ref = gd.features_at(2.0), w.features_at(2.0)
    assert cmp_gd.feature_rel_error[1] == pytest.approx(np.linalg.norm(H - H_ref) / np.linalg.norm(H_ref), rel=1e-12)
    assert cmp_gd.weight_rel_error is None  # (the runs end at 10 and 5, and share no weights_at time)


def test_a_float32_run_compares_with_its_float64_reference(tanh_runs):
    net, X, y, Xt, yt, _, ref = tanh_runs
    net32 = gf.Network(d=6, width=48, activation="tanh", seed=0, dtype="float32")
    sol = gf.simulate(net32, X, y, saveat=ref.t, rtol=1e-5, atol=1e-6, X_test=Xt, y_test=yt)
    cmp = gf.compare(sol, ref)
    assert 0.0 < cmp.max_residual_rel_error < 1e-3 and cmp.test_error_rel_error is not None


def test_the_run_s_own_error_estimate_is_checked_against_its_measured_error(tanh_runs):
    net, X, y, Xt, yt, gd, ref = tanh_runs
    sol = gf.simulate(net, X, y, saveat=gd.t, method="euler", step=0.25, error_estimate=True, integrals=False)
    cmp = gf.compare(sol, ref)
    assert cmp.error_estimate is not None and cmp.estimate_holds is True
    assert "step halving" in cmp.label and "bounds its loss error" in str(cmp)
    low = dataclasses.replace(cmp, error_estimate=cmp.loss_rel_error / 2.0)
    assert low.estimate_holds is False and "does NOT bound" in str(low)
    assert gf.compare(gd, ref).estimate_holds is None
    # the reference's own estimate, where it has one, is quoted, and sets the line below which errors mean little
    against = gf.compare(ref, sol)
    assert np.array_equal(against.error_estimate_ref, cmp.error_estimate) and against.error_estimate is None
    assert "within 10× the reference's own error estimate" in str(against)


def test_a_loose_reference_and_a_stopped_run_are_said_in_the_summary(tanh_runs):
    net, X, y, Xt, yt, gd, ref = tanh_runs
    loose = gf.simulate(net, X, y, saveat=gd.t, rtol=1e-3, atol=1e-6)
    text = str(gf.compare(ref, loose))
    assert "within 10× the reference's rtol (0.001)" in text
    short = gf.simulate(net, X, y, saveat=gd.t, rtol=1e-10, max_steps=8, warn=False)
    assert short.status == "max_steps"
    cmp = gf.compare(short, ref)
    assert cmp.t[-1] <= short.t[-1] < 10.0 and "the run stopped early (max_steps)" in str(cmp)


def test_few_shared_times_are_noted_and_the_worst_time_is_a_row(linear_net):
    # (a usability audit: GD's 11 saved times against a flow's default grid shared 3, without a word; the table's
    # rows skipped the time of the "largest relative error ... at t =" line)
    net, X, y = linear_net
    gd = gf.gradient_descent(net, X, y, step=0.1, steps=40, save_every=1, integrals=False)
    sparse = gf.simulate(net, X, y, saveat=[0.0, 1.0, 2.0, 4.0], rtol=1e-12, atol=1e-14, integrals=False)
    text = gf.compare(gd, sparse).summary(rows=3)
    assert "note: only 4 of the run's 41 saved times are among the reference's" in text and "saveat=run.t" in text
    full = gf.simulate(net, X, y, saveat=gd.t, rtol=1e-12, atol=1e-14, integrals=False)
    cmp = gf.compare(gd, full)
    assert "note: only" not in cmp.summary()
    worst = float(cmp.t[int(np.nanargmax(cmp.loss_rel_error))])
    for rows in (3, 4, 10):
        times = [float(line.split()[0]) for line in cmp.table(rows).splitlines()[1:]]
        assert len(times) == rows and times[0] == 0.0 and times[-1] == pytest.approx(4.0), (rows, times)
        assert any(t == pytest.approx(worst, abs=1e-6) for t in times), (rows, worst, times)


def test_a_flow_at_rest_has_zero_error_not_nan():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 3)), np.zeros(5)
    net = gf.Network(d=3, width=8, activation="tanh", seed=0, W0=np.zeros((8, 3)), c=np.ones(8))
    a = gf.simulate(net, X, y, t1=1.0, integrals=False)
    b = gf.gradient_descent(net, X, y, step=0.5, steps=2, save_every=1, integrals=False)
    cmp = gf.compare(b, a)
    assert np.all(cmp.loss_ref == 0.0) and np.all(cmp.loss_abs_error == 0.0)
    assert np.all(np.isnan(cmp.loss_rel_error)) and np.isnan(cmp.max_loss_rel_error)  # (below the floor: no relative)
    assert "at 3 of the 3 times the reference's loss is at or below the floor" in str(cmp)


def test_relative_errors_are_left_out_where_the_reference_s_loss_is_rounding():
    # (a review: dop853 at rtol 1e-8 against 1e-12 to t = 3000 headlined a relative loss error of 1e3 where both
    # losses were at their rounding floor, 1e-26 against 1e-33, and f agreed to 5e-8)
    X, y = gf.data.random_labels(n=4, d=8, seed=0)
    net = gf.Network(d=8, width=32, activation="tanh", seed=1)
    grid = [0.0, 10.0, 50.0, 100.0, 200.0, 400.0]
    ref = gf.simulate(net, X, y, saveat=grid, rtol=1e-12, atol=1e-14, method="dop853", integrals=False)
    run = gf.simulate(net, X, y, saveat=grid, rtol=1e-8, atol=1e-10, method="dop853", integrals=False)
    cmp = gf.compare(run, ref)
    floor = 4 * (1e3 * 2.2e-16) ** 2  # n·(1e3·ε·ĉ)²
    assert cmp.loss_floor == pytest.approx(floor) and ref.loss[-1] < floor < ref.loss[-2]
    assert np.isnan(cmp.loss_rel_error[-1]) and np.isnan(cmp.residual_rel_error[-1])
    assert np.all(np.isfinite(cmp.loss_rel_error[:-1])) and 1e-7 < cmp.max_loss_rel_error < 1e-5
    np.testing.assert_allclose(cmp.loss_abs_error, np.abs(run.loss - ref.loss) / ref.loss[0], rtol=1e-12)
    assert "at 1 of the 6 times the reference's loss is at or below the floor" in str(cmp)


def test_weights_a_file_did_not_keep_are_not_compared(tanh_runs, tmp_path):
    # (a review: a file saved with include_weights=False holds NaN weights, compared as an error of exactly 0)
    net, X, y, Xt, yt, gd, ref = tanh_runs
    lean = gf.load(gd.save(tmp_path / "gd.nc", include_weights=False))
    cmp = gf.compare(lean, ref)
    assert cmp.weight_rel_error is None and cmp.weight_t is None and "weights W" not in str(cmp)
    assert gf.compare(gd, ref).weight_rel_error > 0.0


def test_the_same_network_given_by_its_seed_or_its_parameters_compares(tanh_runs):
    # (a review: explicit W0 and c of the same network were refused as "different networks")
    net, X, y, Xt, yt, gd, ref = tanh_runs
    same = gf.Network(d=6, width=48, activation="tanh", W0=net.W0, c=net.c)
    cmp = gf.compare(gf.gradient_descent(same, X, y, step=0.5, steps=20, save_every=2), ref)
    assert cmp.max_loss_rel_error == pytest.approx(gf.compare(gd, ref).max_loss_rel_error, rel=1e-12)


def test_custom_activations_of_one_name_but_two_functions_are_different_networks():
    # (a review: tanh(u) and tanh(2u)/2, both named "mine", compared with a 1.5 % loss error at t = 0)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    one = gf.Activation("mine", torch.tanh, lambda u: 1 - torch.tanh(u) ** 2, 1.0, (-1.0, 1.0))
    two = gf.Activation("mine", lambda u: torch.tanh(2 * u) / 2, lambda u: 1 - torch.tanh(2 * u) ** 2, 1.0,
                        (-1.0, 1.0))
    runs = [gf.simulate(gf.Network(d=4, width=16, activation=a, seed=0), X, y, t1=1.0, integrals=False)
            for a in (one, two)]
    with pytest.raises(ValueError, match=r"different networks: their outputs f at t = 0 differ by up to .* \(a custom "
                                         r"activation or embedding of the same name but another function\?\)"):
        gf.compare(*runs)


def test_runs_of_different_networks_data_or_times_are_refused(tanh_runs, tmp_path):
    net, X, y, Xt, yt, gd, ref = tanh_runs
    other = gf.Network(d=6, width=48, activation="tanh", seed=1)
    with pytest.raises(ValueError, match=r"different networks: their c differ \(seed: 1 vs 0\)"):
        gf.compare(gf.gradient_descent(other, X, y, step=0.5, steps=2), ref)
    with pytest.raises(ValueError, match=r"different data: their y differ"):
        gf.compare(gf.gradient_descent(net, X, -y, step=0.5, steps=2), ref)
    # (a workflow audit: data of another size raised numpy's "operands could not be broadcast together")
    X2, y2 = gf.data.random_labels(n=10, d=6, seed=0)
    small_gd = gf.gradient_descent(net, X2, y2, step=0.5, steps=2)
    small_flow = gf.simulate(net, X2, y2, t1=1.0, integrals=False)
    for run, reference, shapes in ((small_gd, ref, r"\(10, 6\) and \(12, 6\)"),
                                   (ref, small_flow, r"\(12, 6\) and \(10, 6\)")):
        with pytest.raises(ValueError, match=r"trained on different data: their X differ \(shapes " + shapes):
            gf.compare(run, reference)
    late = gf.simulate(net, X, y, saveat=[0.0, 10.5, 11.0], rtol=1e-6)  # (every run starts at t = 0)
    with pytest.raises(ValueError, match=r"share no saved time after t = 0 .*saveat=sol\.t"):
        gf.compare(late, gd)
    with pytest.raises(TypeError, match=r"reference must be a gflow.Solution or the path of a saved one, got int"):
        gf.compare(gd, 3)
    with pytest.raises(ValueError, match="rows must be an integer >= 0"):
        gf.compare(gd, ref).summary(rows=-1)


def test_gflow_compare_prints_the_errors_of_two_saved_runs(tanh_runs, tmp_path, capsys):
    net, X, y, Xt, yt, gd, ref = tanh_runs
    a, b = gd.save(tmp_path / "gd.nc"), ref.save(tmp_path / "ref.nc")
    assert main(["compare", str(a), str(b), "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GD δ = 0.5 against dop853 rtol 1e-11: 11 shared times in [0, 10]")
    assert f"{gf.compare(gd, ref).max_loss_rel_error:.3e}" in out and len(out.strip().splitlines()) == 5 + 4
    other = gf.simulate(gf.Network(d=6, width=48, activation="tanh", seed=2), X, y, t1=1.0)
    assert main(["compare", str(a), str(other.save(tmp_path / "other.nc"))]) == 2
    assert "different networks" in capsys.readouterr().err


def test_plot_comparison_overlays_runs_against_one_reference_each_in_its_own_colour(tanh_runs):
    # (a workflow audit: GD at two steps drawn into one figure came out in one colour, with the reference, its rtol
    # and every legend entry twice and nothing to tell the runs apart; the Figure itself was refused as `axes`)
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    net, X, y, Xt, yt, gd, ref = tanh_runs
    fine = gf.gradient_descent(net, X, y, step=0.25, steps=40, save_every=4, X_test=Xt, y_test=yt)
    fig = gf.plotting.plot_comparison(gf.compare(gd, ref))
    assert gf.plotting.plot_comparison(gf.compare(fine, ref), axes=fig) is fig
    a1, a2 = fig.axes
    gids = [ln.get_gid() for ln in a2.get_lines()]
    assert sorted(gids) == sorted(["error:loss", "error:residual", "error:test", "rtol:reference",
                                   "error:loss@1", "error:residual@1", "error:test@1"])
    by = {ln.get_gid(): ln for ln in a2.get_lines()}
    first, second = ({to_rgba(by[g + k].get_color()) for g in ("error:loss", "error:residual", "error:test")}
                     for k in ("", "@1"))
    assert len(first) == len(second) == 1 and first != second  # (one colour per run, two runs, two colours)
    labels = [ln.get_label() for ln in a2.get_lines() if ln.get_gid() != "rtol:reference"]
    assert all(t.startswith(("GD δ = 0.5: ", "GD δ = 0.25: ")) for t in labels) and len(set(labels)) == 6
    assert [ln.get_gid() for ln in a1.get_lines()] == ["loss:reference", "loss", "loss@1"]  # (the reference once)
    assert [ln.get_label() for ln in a1.get_lines()][1:] == ["GD δ = 0.5", "GD δ = 0.25"]
    assert a2.get_title() == "2 runs against dop853 rtol 1e-11"
    assert np.array_equal(by["error:loss@1"].get_ydata()[1:], gf.compare(fine, ref).loss_rel_error[1:])
    named = gf.plotting.plot_comparison(gf.compare(fine, ref), axes=fig.axes, label="fine")
    assert any(ln.get_label() == "fine: " + r"loss $|L-L_{ref}|/L_{ref}$" for ln in named.axes[1].get_lines())
    with pytest.raises(TypeError, match="label must be a string"):
        gf.plotting.plot_comparison(gf.compare(gd, ref), label=3)
    plt.close("all")


def test_plot_comparison_draws_the_errors_and_both_estimates(tanh_runs):
    import matplotlib.pyplot as plt

    net, X, y, Xt, yt, gd, ref = tanh_runs
    sol = gf.simulate(net, X, y, saveat=gd.t, method="euler", step=0.25, error_estimate=True, integrals=False)
    cmp = gf.compare(gd, ref)
    fig = gf.plotting.plot_comparison(cmp)
    lines = {ln.get_gid(): ln for ln in fig.axes[1].get_lines()}
    assert set(lines) == {"error:loss", "error:residual", "error:test", "rtol:reference"}
    y_loss = np.asarray(lines["error:loss"].get_ydata(), float)
    assert np.isnan(y_loss[0]) and np.array_equal(y_loss[1:], cmp.loss_rel_error[1:])  # (t = 0: exactly 0)
    assert fig.axes[1].get_yscale() == "log" and fig.axes[0].get_lines()[1].get_ydata()[-1] == gd.loss[-1]
    fig2 = gf.plotting.plot_comparison(gf.compare(sol, ref))
    assert {"estimate", "error:loss"} <= {ln.get_gid() for ln in fig2.axes[1].get_lines()}
    fig3 = gf.plotting.plot_comparison(gf.compare(ref, sol))
    assert "estimate:reference" in {ln.get_gid() for ln in fig3.axes[1].get_lines()}
    same = gf.plotting.plot_comparison(gf.compare(ref, ref))  # (no error to draw on a log axis: a note)
    assert [ln.get_gid() for ln in same.axes[1].get_lines()] == ["rtol:reference"]
    assert "agree exactly" in same.axes[1].texts[0].get_text()
    with pytest.raises(TypeError, match="comparison must be a gflow.Comparison"):
        gf.plotting.plot_comparison(ref)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="axes must hold 2 Axes, got 1"):
        gf.plotting.plot_comparison(cmp, axes=[ax])
    plt.close("all")
