"""Tests of gflow.plotting: every figure from small seeded runs (a tanh flow with test data, a P-3L ReLU
rk4 flow, gradient descent), from Solution objects and from saved .nc files."""

from __future__ import annotations

import dataclasses
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gflow as gf  # noqa: E402
from gflow import plotting as P  # noqa: E402
from gflow.theory.certify import certify  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    X, y = gf.data.random_labels(n=6, d=8, seed=0)
    X_te, y_te = gf.data.random_labels(n=5, d=8, seed=1)
    return X, y, X_te, y_te


@pytest.fixture(scope="module")
def flow(data):
    X, y, X_te, y_te = data
    return gf.simulate(gf.Network(d=8, width=64, seed=0), X, y, t1=20.0, rtol=1e-9, atol=1e-11,
                       X_test=X_te, y_test=y_te)


@pytest.fixture(scope="module")
def p3l(data):
    X, y, X_te, y_te = data
    net = gf.Network(d=8, width=64, seed=0, activation="relu", embedding=gf.RandomFeatures(D=64))
    return gf.simulate(net, X, y, t1=20.0, method="rk4", step=0.05, X_test=X_te, y_test=y_te)


@pytest.fixture(scope="module")
def gd(data):
    X, y, _, _ = data
    return gf.gradient_descent(gf.Network(d=8, width=64, seed=0), X, y, step=0.5, steps=200, save_every=5)


@pytest.fixture(scope="module")
def saved(flow, tmp_path_factory):
    return flow.save(tmp_path_factory.mktemp("plot") / "flow.nc")


def _bound_lines(ax):
    return {ln.get_gid().split(":")[1]: ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("bound:")}


def _legend_texts(ax):
    leg = ax.get_legend()
    assert leg is not None
    return [t.get_text() for t in leg.get_texts()]


def _check_bounds_above_loss(ax, sol):
    """Every drawn bound whose check held lies above the loss wherever it is drawn (1e-9 relative)."""
    cert = certify(sol)
    lines = _bound_lines(ax)
    for key, ln in lines.items():
        if not cert.check(key).held:
            continue
        tb, B = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
        k = np.searchsorted(sol.t, tb)
        np.testing.assert_allclose(sol.t[k], tb)
        assert np.all(B >= sol.loss[k] * (1 - 1e-9)), key
    return lines


# ---------------------------------------------------------------------------------------------------------


def test_loss_bounds_flow(flow):
    ax = P.plot_loss_bounds(flow).axes[0]
    cert = certify(flow)
    applicable = [k for k in P.BOUND_KEYS if cert.check(k).applicable]
    assert "T3" in applicable
    loss_line = ax.get_lines()[0]
    assert loss_line.get_gid() == "loss"
    np.testing.assert_array_equal(loss_line.get_ydata(), flow.loss)
    np.testing.assert_array_equal(loss_line.get_xdata(), flow.t)
    lines = _check_bounds_above_loss(ax, flow)
    assert all(cert.check(k).held for k in lines)
    assert sorted(lines) == sorted(applicable)
    for key, ln in lines.items():
        assert ln.get_linestyle() != "-"  # dashed
        # the bound is exactly L0 exp(-E) with certify's exponent; T3 is the tightest
        assert ln.get_ydata()[0] == pytest.approx(flow.loss[0])
    E3 = 2 * flow.int_lam_min_M
    B3 = lines["T3"].get_ydata()
    np.testing.assert_allclose(B3, flow.loss[0] * np.exp(-E3[: len(B3)]))
    tests = [ln for ln in ax.get_lines() if ln.get_gid() == "test"]
    assert len(tests) == 1 and tests[0].get_linestyle() == "-."
    np.testing.assert_array_equal(tests[0].get_ydata(), flow.test_error)
    assert len(ax.get_lines()) == 1 + len(applicable) + 1
    texts = _legend_texts(ax)
    assert any(t.startswith("T3") and "rate" in t and "slack" in t for t in texts)
    assert any("training loss" in t for t in texts)
    rate = cert.check("T3").guaranteed_rate
    assert any(f"{rate:.3g}" in t for t in texts)
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "flow time t"
    assert ax.get_ylabel() == "training loss L (eq. 6)"
    title = ax.get_title()
    for word in ("tanh", "m = 64", "n = 6", "ours", "dop853"):
        assert word in title
    lo, hi = ax.get_ylim()
    assert lo <= flow.loss.min() and hi >= flow.loss[0] and hi < 10 * flow.loss[0]
    assert len(ax.collections) == 1  # the shaded slack of the tightest bound


def test_loss_bounds_selection_and_no_test(flow):
    fig, ax = plt.subplots()
    out = P.plot_loss_bounds(flow, ax, bounds=("T4",), test=None, title=False)
    assert out is fig  # (every plot function returns the Figure it drew into)
    assert sorted(_bound_lines(ax)) == ["T4"]
    assert not any(ln.get_gid() == "test" for ln in ax.get_lines())
    assert ax.get_title() == ""
    ax2 = P.plot_loss_bounds(flow, bounds=(), test="loss").axes[0]
    assert _bound_lines(ax2) == {}
    np.testing.assert_array_equal([ln for ln in ax2.get_lines() if ln.get_gid() == "test"][0].get_ydata(),
                                  flow.test_loss)
    with pytest.raises(ValueError, match="unknown bound"):
        P.plot_loss_bounds(flow, bounds=("T7",))


def test_loss_bounds_overlay(flow, gd, p3l):
    """Runs drawn on one Axes: each its own loss colour and bounds' dash pattern, named by what tells them apart
    (or their label), the title what they share, the ranges covering all."""
    fig = P.plot_loss_bounds(flow)
    assert P.plot_loss_bounds(gd, ax=fig) is fig  # (the Figure of an earlier call: its one Axes)
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    assert lines["loss"].get_color() == "black" and lines["loss@1"].get_color() == "tab:brown"
    np.testing.assert_array_equal(lines["loss@1"].get_ydata(), gd.loss)
    np.testing.assert_array_equal(lines["test"].get_ydata(), flow.test_error)
    both = [k for k in P.BOUND_KEYS if f"bound:{k}" in lines and f"bound:{k}@1" in lines]
    assert both, "no bound drawn for both runs"
    for k in both:  # a bound keeps its colour; its run's dash pattern tells the runs apart
        assert lines[f"bound:{k}"].get_color() == lines[f"bound:{k}@1"].get_color()
        assert lines[f"bound:{k}"]._unscaled_dash_pattern != lines[f"bound:{k}@1"]._unscaled_dash_pattern
    texts = _legend_texts(ax)
    flow_name = P._method_name(flow)
    assert f"{flow_name}: training loss" in " ".join(texts) and "GD, δ = 0.5: training loss" in " ".join(texts)
    assert any(t.startswith("GD, δ = 0.5: bounds T3 ") for t in texts)
    assert any(t.startswith("T3 $E_t") for t in texts)  # the colour of each bound, once
    assert ax.get_title() == "tanh, m = 64, n = 6, shallow, scaling 'ours'"  # what they share
    assert ax.get_xlim() == (0.0, 100.0)  # the flow to t = 20, GD to t = 200·0.5
    lo, hi = ax.get_ylim()
    assert lo <= min(flow.loss.min(), gd.loss.min()) and hi >= max(flow.loss[0], gd.loss[0])
    P.plot_loss_bounds(p3l, ax=ax, label="P-3L ReLU")
    texts = _legend_texts(ax)
    assert "P-3L ReLU: training loss" in " ".join(texts)
    assert {ln.get_gid() for ln in ax.get_lines()} >= {"loss@2", "test@2"}
    assert ax.get_title() == "m = 64, n = 6, scaling 'ours'"
    # the same run twice: numbered; one run with a label: every entry prefixed
    ax = P.plot_loss_bounds(flow).axes[0]
    P.plot_loss_bounds(flow, ax=ax)
    assert sum(t.startswith(("run 1: ", "run 2: ")) for t in _legend_texts(ax)) >= 4
    ax = P.plot_loss_bounds(flow, label="ours").axes[0]
    assert all(t.startswith("ours: ") for t in _legend_texts(ax))
    with pytest.raises(TypeError, match="label must be a string"):
        P.plot_loss_bounds(flow, label=3)


def test_loss_bounds_p3l_and_gd(p3l, gd):
    ax = P.plot_loss_bounds(p3l).axes[0]
    lines = _check_bounds_above_loss(ax, p3l)
    assert all(certify(p3l).check(k).held for k in lines)  # to t = 20 every drawn bound holds
    assert "T3" in lines and "T6" not in lines  # ReLU: inf|σ'| = 0, so the PL bound does not apply
    assert "relu" in ax.get_title() and "rk4" in ax.get_title() and "P-3L" in ax.get_title()
    ax = P.plot_loss_bounds(gd).axes[0]
    assert ax.get_xlabel() == "t = k·δ (GD steps × δ)"
    assert "GD" in ax.get_title()
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), gd.loss)
    assert "T3" in _bound_lines(ax)
    assert "information for GD" in ax.get_legend().get_title().get_text()
    assert not any(ln.get_gid() == "test" for ln in ax.get_lines())  # the GD run has no test data


def test_quantities(flow, gd):
    fig = P.plot_quantities(flow)
    axes = fig.axes
    assert len(axes) == 3
    assert [len(a.get_lines()) for a in axes] == [2, 2, 3]
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_ydata(), flow.eta)
    np.testing.assert_array_equal(axes[0].get_lines()[1].get_ydata(), flow.eta_bar)
    np.testing.assert_array_equal(axes[2].get_lines()[1].get_ydata(), flow.lam_min_M)
    assert axes[2].get_yscale() == "log"
    leg = _legend_texts(axes[0])
    assert "[-1, 1]" in leg[0] and "I_0" in leg[1]
    for a in axes:
        assert a.get_xlabel() == "flow time t"
        assert a.get_ylabel()
        lo, hi = a.get_ylim()
        data = np.concatenate([ln.get_ydata() for ln in a.get_lines()])
        assert lo <= data.min() and hi >= data.max()
    # the Schur ordering λ_min(M) ≥ κ_M λ_min(G) ν drawn in panel 3
    assert np.all(axes[2].get_lines()[1].get_ydata() >= axes[2].get_lines()[2].get_ydata() * (1 - 1e-9))
    fig2 = P.plot_quantities(gd, stacked=True)
    assert fig2.axes[2].get_xlabel().startswith("t = k·δ")
    _, given = plt.subplots(3, 1)
    assert P.plot_quantities(flow, given) is given[0].figure
    with pytest.raises(ValueError, match="3 Axes"):
        P.plot_quantities(flow, given[:2])


def test_quantities_of_a_run_without_training_signal():
    """c = 0: M_t = 0 at every saved time.  The eigenvalue panel stays linear with a note, and no panel asks
    matplotlib for a log scale of data with no positive value (which warned "Data has no positive values, and
    therefore cannot be log-scaled", twice per figure, from plot_quantities and plot_summary)."""
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    W0 = np.random.default_rng(0).standard_normal((8, 3))
    net = gf.Network(d=3, width=8, activation="tanh", seed=0, c=np.zeros(8), W0=W0)
    sol = gf.simulate(net, X, y, 1.0)
    assert np.all(sol.lam_max_M == 0.0) and sol.loss[-1] == sol.loss[0]
    for draw in (P.plot_quantities, P.plot_summary):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig = draw(sol)
        assert not [w for w in caught if "log-scaled" in str(w.message)], draw.__name__
        noted = [a for a in fig.axes if any("no training signal" in t.get_text() for t in a.texts)]
        assert len(noted) == 1 and noted[0].get_yscale() == "linear", draw.__name__
        plt.close(fig)


def test_feature_scatter(flow, gd):
    ax = P.plot_feature_scatter(flow).axes[0]
    assert len(ax.collections) == len(flow.feature_t) == 2
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[flow.H[0][:, 0], flow.H_test[0][:, 0]])
    np.testing.assert_allclose(ax.collections[1].get_offsets(),
                               np.c_[flow.H[-1][:, 0], flow.H_test[-1][:, 0]])
    texts = _legend_texts(ax)
    assert texts[:2] == ["t = 0", "t = 20"]
    assert "training input" in ax.get_xlabel() and "test input" in ax.get_ylabel()
    assert ax.get_aspect() == 1.0
    c0, c1 = (tuple(c.get_facecolor()[0]) for c in ax.collections)
    assert c0 != c1
    ax = P.plot_feature_scatter(flow, times=[20.0], train_index=2, test_index=3).axes[0]
    assert len(ax.collections) == 1
    np.testing.assert_allclose(ax.collections[0].get_offsets(),
                               np.c_[flow.H[-1][:, 2], flow.H_test[-1][:, 3]])
    ax = P.plot_feature_scatter(gd).axes[0]  # no test data: x_2 is the next training input
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[gd.H[0][:, 0], gd.H[0][:, 1]])
    assert "training input #1" in ax.get_ylabel()
    with pytest.raises(ValueError, match="not kept"):
        P.plot_feature_scatter(flow, times=[3.0])
    with pytest.raises(IndexError):
        P.plot_feature_scatter(flow, train_index=6)
    # (an audit: test_index was ignored without test data, and all-NaN features gave empty axes without a word)
    with pytest.raises(ValueError, match="test_index=3 needs test data"):
        P.plot_feature_scatter(gd, test_index=3)
    H = np.full_like(gd.H, np.nan)
    ax = P.plot_feature_scatter(dataclasses.replace(gd, H=H)).axes[0]
    assert any("no finite features" in t.get_text() for t in ax.texts)


def test_gram_spectrum(flow, p3l):
    ax = P.plot_gram_spectrum(p3l).axes[0]
    gids = [ln.get_gid() for ln in ax.get_lines()]
    assert gids == ["G", "G_limit"]
    ev = np.sort(np.linalg.eigvalsh(p3l.G))[::-1]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ev)
    evb = np.sort(np.linalg.eigvalsh(gf.limit_gram("relu", p3l.X, depth=3)))[::-1]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), evb)
    assert ax.get_xlabel() == "index k"
    assert ax.get_ylabel() == r"eigenvalue $\lambda_k$"  # rendered "eigenvalue λ_k"
    assert ax.get_yscale() == "log"
    assert any("limit" in t for t in _legend_texts(ax))
    ax = P.plot_gram_spectrum(p3l, limit=False).axes[0]
    assert [ln.get_gid() for ln in ax.get_lines()] == ["G"]
    ax = P.plot_gram_spectrum(flow).axes[0]  # identity embedding: G = XXᵀ/d is its own limit
    assert [ln.get_gid() for ln in ax.get_lines()] == ["G"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.sort(np.linalg.eigvalsh(flow.G))[::-1])


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_summary_files(flow, tmp_path, suffix):
    path = tmp_path / f"summary{suffix}"
    fig = P.plot_summary(flow, path)
    assert path.exists() and path.stat().st_size > 20_000
    assert len(fig.axes) == 6  # loss, scatter, spectrum, three quantity panels
    assert fig.get_suptitle().startswith("tanh, m = 64, n = 6")
    with pytest.raises(ValueError, match="png or .pdf"):
        P.plot_summary(flow, tmp_path / "summary.svg")


def test_summary_without_features(gd, tmp_path):
    sol = dataclasses.replace(gd, feature_t=np.zeros(0), H=np.zeros((0, gd.m, gd.n)), H_test=None)
    fig = P.plot_summary(sol, tmp_path / "s.png")
    assert len(fig.axes) == 5
    assert (tmp_path / "s.png").stat().st_size > 20_000
    with pytest.raises(ValueError, match="no features"):
        P.plot_feature_scatter(sol)


def test_from_saved_file(flow, saved, tmp_path):
    ax = P.plot_loss_bounds(str(saved)).axes[0]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), flow.loss)
    assert sorted(_bound_lines(ax)) == sorted(_bound_lines(P.plot_loss_bounds(flow).axes[0]))
    assert len(P.plot_quantities(saved).axes) == 3
    assert len(P.plot_feature_scatter(saved).axes[0].collections) == 2
    assert P.plot_gram_spectrum(saved).axes[0].get_lines()
    fig = P.plot_summary(saved, tmp_path / "from_file.png")
    assert (tmp_path / "from_file.png").stat().st_size > 20_000
    with pytest.raises(FileNotFoundError):
        P.plot_loss_bounds(tmp_path / "missing.nc")
    with pytest.raises(TypeError):
        P.plot_loss_bounds(42)
    assert fig is not None


def test_render_summary_png(p3l):
    """The figure looked at by eye during development (kept: it is cheap and catches layout errors)."""
    fig = P.plot_summary(p3l, "/tmp/gflow_summary.png")
    renderer = fig.canvas.get_renderer()
    # no two text labels of the loss panel overlap
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in (ax.xaxis.label, ax.yaxis.label, ax.title)]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j])
    _assert_no_curve_under_the_legend(ax, renderer)


def _assert_no_curve_under_the_legend(ax, renderer):
    """Every curve of ``ax`` passes above the legend within the legend's width."""
    box = ax.get_legend().get_window_extent(renderer)
    for ln in ax.get_lines():
        xy = ax.transData.transform(np.c_[ln.get_xdata(), ln.get_ydata()])
        under = (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & np.isfinite(xy[:, 1])
        assert np.all(xy[under, 1] >= box.y1 - 1.0), ln.get_gid()


def test_the_loss_axis_does_not_reach_far_below_the_data(flow):
    # the axis used to go down until the loss's minimum cleared a legend inside the axes (15 empty decades on the
    # demo run, then 18); the legend now sits under the axes, and the y-range is the data's
    ax = P.plot_loss_bounds(flow, test=None).axes[0]  # (the test error starts below the loss here)
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    _assert_no_curve_under_the_legend(ax, renderer)
    assert ax.get_legend().get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0
    lo = ax.get_ylim()[0]
    assert flow.loss.min() / 10 < lo < flow.loss.min()


def test_the_no_bounds_span_is_a_legend_entry_not_a_note_over_the_curves(flow):
    # a loose atol raises the certificate's float64 floor, so its window ends before t1 (as on long runs)
    config = {**flow.config, "solver": {**flow.config["solver"], "atol": 2e-4}}
    sol = dataclasses.replace(flow, config=config)
    t_end = certify(sol).window[1]
    assert t_end < sol.t[-1]
    ax = P.plot_loss_bounds(sol).axes[0]
    assert [p.get_gid() for p in ax.patches] == ["no-bounds"]
    # (shortened from "grey: loss below the certificate's floor, beyond what the run's atol or float64 vouches for:
    # no bounds", the widest entry, which ran past the demo figure's right edge)
    assert "grey: no bounds (loss below the certificate's atol/float64 floor)" in _legend_texts(ax)
    assert not any("no bounds" in t.get_text() for t in ax.texts)


def test_a_loss_that_turns_nan_is_not_called_below_the_tolerance(flow):
    # (an audit: the grey span after a NaN tail read "loss below what the run's tolerance resolves")
    L = flow.loss.copy()
    L[len(L) // 2:] = np.nan
    ax = P.plot_loss_bounds(dataclasses.replace(flow, loss=L, status="nonfinite")).axes[0]
    assert [p.get_gid() for p in ax.patches] == ["no-bounds"]
    assert "grey: no bounds (loss not finite: NaN or inf)" in _legend_texts(ax)


def test_bounds_of_a_kinked_activation_are_marked_information_as_the_certificate_does(p3l, flow):
    cert = certify(p3l)
    ax = P.plot_loss_bounds(p3l).axes[0]
    texts = [t for t in _legend_texts(ax) if t[:2] in ("T3", "T4", "T5", "T6") or t.startswith("T10")]
    assert texts and all(t.endswith("information") for t in texts)
    assert all(not cert.check(k).counts for k in _bound_lines(ax))
    assert "σ has a kink" in ax.get_legend().get_title().get_text()
    ax = P.plot_loss_bounds(flow).axes[0]  # smooth σ: the bounds count
    assert not any("information" in t for t in _legend_texts(ax))
    assert "kink" not in ax.get_legend().get_title().get_text()


def test_a_run_with_one_saved_time_plots_without_matplotlib_warnings():
    # regression (a bad-input audit): a run that stopped at t = 0 set identical x-limits — matplotlib's "makes
    # transformation singular" UserWarning, four times for the summary figure
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=16, seed=0, c_hat=1e100), X, y, t1=1.0, warn=False)
    assert sol.t.size == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figs = [gf.plotting.plot_loss_bounds(sol), gf.plotting.plot_summary(sol)]
    for fig in figs:
        plt.close(fig)


@pytest.mark.parametrize("case", ["near-singular G", "singular G"])
def test_vacuous_bounds_are_named_in_the_legend_and_not_drawn_as_lines(case):
    # (an audit: with λ_min(G)/λ_max(G) = 2.5e-15 — singular by certify's own test — T4 and T5 were drawn as lines
    # labelled "rate 1.94e-15 (3.41e+13× slack)"; with n > d, λ_min(G) = −2.8e-16, "vacuous" lines lay flat at L₀)
    rng = np.random.default_rng(0)
    if case == "near-singular G":
        X = rng.normal(size=(3, 3))
        X[2] = X[0] + X[1] + 1e-7 * rng.normal(size=3)
        y = rng.uniform(-0.5, 0.5, 3)
    else:
        X, y = gf.data.random_labels(n=10, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=64, seed=0), X, y, t1=5.0, rtol=1e-10, atol=1e-12)
    cert = certify(sol)
    assert sol.theory["lam_min_G"] <= 1e-12 * sol.theory["lam_max_G"]
    for key in ("T4", "T5"):
        check = cert.check(key)
        assert check.vacuous and check.tightness is None and "vacuous" in check.detail
        assert "slack" not in str(check)
    assert not cert.check("T3").vacuous
    ax = P.plot_loss_bounds(sol).axes[0]
    assert {"T4", "T5"}.isdisjoint(_bound_lines(ax)) and "T3" in _bound_lines(ax)
    named = {ln.get_gid(): ln.get_label() for ln in ax.get_lines() if str(ln.get_gid()).startswith("vacuous:")}
    assert set(named) == {"vacuous:T4", "vacuous:T5"} and all("vacuous" in v and "rate" not in v
                                                              for v in named.values())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("vacuous" in t for t in legend) == 2
    plt.close(ax.figure)


def test_a_singular_kernel_m_names_t3_vacuous_in_the_legend_instead_of_a_rounding_rate():
    # (an audit: linear σ with n > d, M = ĉ²G singular: T3 was a flat line at L₀ labelled "rate 8.12e-17
    # (3.83e+15× slack)")
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((6, 5)), rng.uniform(-0.5, 0.5, 6)
    sol = gf.simulate(gf.Network(d=5, width=12, activation="linear", c_hat=1.3, seed=2), X, y, t1=4.0,
                      method="dop853", rtol=1e-12, atol=1e-13)
    sol = dataclasses.replace(sol, int_lam_min_M=4e-17 * sol.t)  # the rounding's sign fixed: positive
    ax = P.plot_loss_bounds(sol).axes[0]
    assert "T3" not in _bound_lines(ax)
    named = {ln.get_gid(): ln.get_label() for ln in ax.get_lines() if str(ln.get_gid()).startswith("vacuous:")}
    assert "λ_min(M) ≈ 0" in named["vacuous:T3"] and "rate" not in named["vacuous:T3"]
    plt.close(ax.figure)


def test_a_zero_loss_run_says_so_instead_of_an_empty_log_axis_with_one_point_bounds():
    # (an audit: L ≡ 0 — linear σ fit exactly — gave an empty log axis, one-point T3–T6 legend entries and a grey
    # "below tolerance" span over the whole run)
    X, y = gf.data.random_labels(n=5, d=8, seed=0)
    net = gf.Network(d=8, width=64, seed=0, activation="linear")
    f0 = gf.simulate(net, X, y, t1=0.1, rtol=1e-10, atol=1e-12).output[0]
    sol = gf.simulate(net, X, np.asarray(f0), t1=1.0, rtol=1e-10, atol=1e-12)
    assert sol.loss[0] == 0.0 and sol.loss.max() < 1e-30  # (rounding after t = 0)
    ax = P.plot_loss_bounds(sol).axes[0]
    assert not _bound_lines(ax) and not [p for p in ax.patches if p.get_gid() == "no-bounds"]
    assert any("exact fit" in t.get_text() for t in ax.texts)
    plt.close(ax.figure)


def test_plot_arguments_are_checked_by_name():
    # (an audit: ax="a" raised AttributeError "'str' object has no attribute 'plot'" after the certificate was
    # computed; plot_sweep took logy="no" as a log axis and labelled a GD sweep's axis "flow time t")
    sol = gf.simulate(gf.Network(d=3, width=8, seed=0), *gf.data.random_labels(n=4, d=3, seed=0), t1=1.0)
    with pytest.raises(TypeError, match=r"^ax must be a matplotlib Axes, got str"):
        P.plot_loss_bounds(sol, ax="a")
    with pytest.raises(TypeError, match=r"^axes\[0\] must be a matplotlib Axes, got str"):
        P.plot_quantities(sol, axes=["a", "b", "c"])
    import xarray as xr

    ds = xr.Dataset({"loss": (("run", "time"), np.ones((1, 3))), "t": (("run", "time"), [[0.0, 1.0, 2.0]]),
                     "status": (("run",), np.array(["success"]))},
                    attrs={"config": '{"solver": {"kind": "gradient_descent", "step": 0.5}}'})
    with pytest.raises(TypeError, match=r"^logy must be None, True or False, got str"):
        P.plot_sweep(ds, logy="no")
    with pytest.raises(TypeError, match=r"include_failed"):
        P.plot_sweep(ds, include_failed="yes")
    ax = P.plot_sweep(ds).axes[0]
    assert ax.get_xlabel() == "t = k·δ (GD steps × δ)"
    plt.close(ax.figure)


def test_plot_sweep_draws_a_geometric_width_grid_on_a_log_axis_with_the_widths_as_ticks():
    # (a workflow audit: widths 64 … 2048 on a linear axis crowded 64 and 128 into one label)
    import xarray as xr
    from matplotlib.ticker import NullFormatter

    widths = np.repeat([64, 128, 256, 512, 1024, 2048], 2)
    ds = xr.Dataset({"final_loss": (("run",), np.linspace(1.0, 2.0, widths.size))},
                    coords={"width": (("run",), widths), "seed": (("run",), np.tile([0, 1], 6)),
                            "status": (("run",), np.array(["success"] * widths.size))})
    ax = P.plot_sweep(ds, x="width", y="final_loss").axes[0]
    assert ax.get_xscale() == "log"
    assert list(ax.get_xticks()) == [64, 128, 256, 512, 1024, 2048]
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "128", "256", "512", "1024", "2048"]
    assert isinstance(ax.xaxis.get_minor_formatter(), NullFormatter)
    assert P.plot_sweep(ds, x="width", y="final_loss", logx=False).axes[0].get_xscale() == "linear"
    near = ds.isel(run=widths <= 512)  # (within a decade: linear, as before)
    assert P.plot_sweep(near, x="width", y="final_loss").axes[0].get_xscale() == "linear"
    assert P.plot_sweep(near, x="width", y="final_loss", logx=True).axes[0].get_xscale() == "log"
    with pytest.raises(TypeError, match=r"^logx must be None, True or False, got str"):
        P.plot_sweep(ds, x="width", y="final_loss", logx="yes")
    with pytest.raises(ValueError, match=r"logx=True needs positive values of x='seed', got \[0, 1\]"):
        P.plot_sweep(ds, x="seed", y="final_loss", logx=True)


# ---------------------------------------------------------------------------------------------------------
# readability (a usability audit of the demo and summary figures)


@pytest.fixture(scope="module")
def fast():
    """A loss that falls 20 decades, then below the certificate's floor (the grey no-bounds span), like the demo's."""
    X, y = gf.data.random_labels(n=4, d=20, seed=0)
    X_te, y_te = gf.data.random_labels(n=5, d=20, seed=1)
    return gf.simulate(gf.Network(d=20, width=64, seed=0), X, y, t1=100.0, rtol=1e-10, atol=1e-12,
                       X_test=X_te, y_test=y_te)


def _positive_ydata(ax):
    y = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in ax.get_lines()])
    return y[np.isfinite(y) & (y > 0)]


@pytest.mark.parametrize("how", ["alone", "summary", "overlay"])
def test_the_loss_legend_lies_within_the_figure_and_off_the_curves(fast, flow, how):
    # (an audit: the demo's legend ran 0.9 in past the figure's right edge — the grey span's entry — and sat lower
    # left inside the axes, so the y-axis was pushed down to 1e-40 under a loss ending at 1e-22)
    if how == "summary":
        ax = P.plot_summary(fast).axes[0]
    else:
        ax = P.plot_loss_bounds(fast).axes[0]
        if how == "overlay":
            P.plot_loss_bounds(flow, ax=ax)
    assert [p.get_gid() for p in ax.patches] == ["no-bounds"]
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    leg = ax.get_legend().get_window_extent(renderer)
    assert fig.bbox.x0 <= leg.x0 and leg.x1 <= fig.bbox.x1 and fig.bbox.y0 <= leg.y0 and leg.y1 <= fig.bbox.y1
    assert not leg.overlaps(ax.get_window_extent(renderer))  # outside the plot: no curve can pass under it
    assert not leg.overlaps(ax.xaxis.get_tightbbox(renderer))  # nor over the tick labels or the axis label
    lo, hi = ax.get_ylim()
    y = _positive_ydata(ax)
    assert y.min() / 10 < lo <= y.min() and y.max() <= hi < 10 * y.max()  # the y-range is the data's
    if how == "summary":  # nor over the panel below it
        assert not leg.overlaps(fig.axes[2].get_tightbbox(renderer))


def _visible_fraction(below, above):
    """The fraction of a line ``below`` that shows where ``above`` (drawn over it, same width) coincides with it:
    the dashes of ``below`` in the gaps of ``above`` (both patterns as matplotlib draws them)."""
    def on(line, s):
        offset, seq = line._dash_pattern
        if seq is None:  # solid
            return np.ones_like(s, dtype=bool)
        ends = np.cumsum(seq)
        return np.searchsorted(ends, (s + offset) % ends[-1], side="right") % 2 == 0

    s = np.linspace(0.0, 500.0, 200_001)
    return float(np.mean(on(below, s) & ~on(above, s)))


@pytest.mark.parametrize("overlay", [False, True])
def test_coinciding_bounds_stay_visible(flow, gd, overlay):
    # (an audit: all bounds were dashed (5, 2) in phase, so T4 vanished under T5 where they coincided, near L_0)
    ax = P.plot_loss_bounds(flow).axes[0]
    if overlay:
        P.plot_loss_bounds(gd, ax=ax)
    suffix = "@1" if overlay else ""
    lines = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("bound:")
             and str(ln.get_gid()).endswith(suffix) and (overlay or "@" not in str(ln.get_gid()))]
    assert {"bound:T4" + suffix, "bound:T5" + suffix} <= {ln.get_gid() for ln in lines}
    for i, below in enumerate(lines):
        for above in lines[i + 1:]:
            assert above.get_zorder() >= below.get_zorder()
            assert _visible_fraction(below, above) >= 0.15, (below.get_gid(), above.get_gid())
    # every bound's pattern is its own: T4 differs from T5 by its dashes, not only by its colour
    assert len({ln._unscaled_dash_pattern for ln in lines}) == len(lines)


def test_the_active_square_is_drawn_over_the_scatter(flow):
    # (an audit: the dotted I × I box, listed in the legend, had zorder 2 under the points' 3, 4, ...)
    ax = P.plot_feature_scatter(flow).axes[0]
    (box,) = [p for p in ax.patches if p.get_label().startswith("I × I")]
    assert box.get_zorder() > max(c.get_zorder() for c in ax.collections)
