"""The public surface behaves alike across entry points: names, equality, pickling, reprs and plot returns."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import types

import numpy as np
import pytest
import torch

import gflow as gf


@pytest.fixture(scope="module")
def runs():
    X, y = gf.data.random_labels(n=5, d=3, seed=0)
    Xt, yt = gf.data.random_labels(n=7, d=3, seed=1)
    net = gf.Network(d=3, width=8, seed=0)
    flow = gf.simulate(net, X, y, t1=1.0, method="dop853", X_test=Xt, y_test=yt, features_at=[0.0, 1.0])
    gd = gf.gradient_descent(net, X, y, step=0.1, steps=10, save_every=2, X_test=Xt, y_test=yt)
    return flow, gd


# ---------------------------------------------------------------------------------------------------------
# names


def _public_non_modules(module) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")
            and not isinstance(getattr(module, name), types.ModuleType) and name != "annotations"}


def test_the_top_level_namespace_shows_only_gflow_s_own_names():
    # (dir(gf) listed importlib's PackageNotFoundError; gf.data listed the validation helper check_positive_int)
    assert _public_non_modules(gf) - set(gf.__all__) == {"Callable"}  # (kept off __all__: it shadowed typing's)
    assert _public_non_modules(gf.data) == set(gf.data.__all__)
    assert _public_non_modules(gf.plotting) == set(gf.plotting.__all__) | {"FONT"}  # (json, np, describe, ...)


# ---------------------------------------------------------------------------------------------------------
# equality, hashing, pickling and copies


def test_a_built_in_activation_equals_itself_rebuilt_and_pickles():
    # (tanh's σ′ is a lambda made per construction: get_activation("tanh") != get_activation("tanh"), and pickle
    # refused it, so no Network pickled)
    tanh = gf.get_activation("tanh")
    assert tanh == gf.get_activation("tanh") and hash(tanh) == hash(gf.get_activation("tanh"))
    leaky = gf.get_activation("leaky_relu", slope=0.2)
    assert leaky == gf.get_activation({"name": "leaky_relu", "slope": 0.2}) != gf.get_activation("leaky_relu")
    assert tanh != leaky
    for act in (tanh, leaky, gf.get_activation("relu")):
        back = pickle.loads(pickle.dumps(act))
        assert back == act and back.builtin and copy.deepcopy(act) == act
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert torch.equal(pickle.loads(pickle.dumps(leaky)).dsigma(x), leaky.dsigma(x))
    own = gf.Activation("sine", torch.sin, torch.cos, 1.0, (-1.0, 1.0))  # (a user's: compared by its functions)
    assert own == copy.copy(own) == pickle.loads(pickle.dumps(own)) and own != tanh
    assert own != gf.Activation("sine", torch.sin, torch.cos, 1.0, (-0.5, 0.5))


def test_a_network_equals_the_same_network_built_again_and_survives_pickle_and_copy():
    net = gf.Network(d=3, width=8, seed=0)
    assert net == gf.Network(d=3, width=8, seed=0) and hash(net) == hash(gf.Network(d=3, width=8, seed=0))
    assert net != gf.Network(d=3, width=8, seed=1) and net != gf.Network(d=3, width=8, seed=0, c_hat=2.0)
    assert net != gf.Network(d=3, width=8, seed=0, activation="erf") and net != net.to(dtype="float32")
    assert net != "net" and len({net, gf.Network(d=3, width=8, seed=0)}) == 1
    W0 = np.random.default_rng(0).standard_normal((8, 10))
    nets = [net, gf.Network(d=3, width=8, activation="leaky_relu", embedding=gf.RandomFeatures(10, seed=1),
                            scaling="ntk", seed=2, dtype="float32"),
            gf.Network(d=3, width=8, embedding=gf.RandomFeatures(10, activation="relu", seed=1), W0=W0),
            gf.Network(d=3, width=8, W0=W0[:, :3], dtype="float32")]
    for a in nets:
        for b in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
            assert b == a and b.spec() == a.spec()
            assert torch.equal(b.c, a.c) and torch.equal(b.W0, a.W0) and b.W0.dtype == a.W0.dtype
    other_W0 = W0.copy()
    other_W0[0, 0] += 1e-12
    assert nets[2] != gf.Network(d=3, width=8, embedding=gf.RandomFeatures(10, activation="relu", seed=1),
                                 W0=other_W0)


def test_a_solution_equals_its_pickle_and_copies_and_is_not_hashable(runs, tmp_path):
    flow, gd = runs
    for sol in (flow, gd):
        assert pickle.loads(pickle.dumps(sol)) == sol
        assert copy.copy(sol) == sol and copy.deepcopy(sol) == sol
        path = tmp_path / f"{sol.kind}.nc"
        sol.save(path)
        assert gf.load(path) == sol  # (weights included: the file keeps every field)
        assert sol != dataclasses.replace(sol, loss=sol.loss * (1 + 1e-15) + 1e-300)
        assert sol != dataclasses.replace(sol, stats=dict(sol.stats, n_f_evals=-1))
        assert sol != dataclasses.replace(sol, test_output=None)
    assert flow != gd and flow != "flow"
    nan = dataclasses.replace(gd, loss=np.full_like(gd.loss, np.nan))
    assert nan == copy.deepcopy(nan)  # (NaN entries, as a failed run's, compare equal)
    with pytest.raises(TypeError, match="unhashable"):
        hash(flow)


def test_a_comparison_and_a_certificate_equal_their_pickles_and_copies(runs):
    # (a Comparison compared by identity; a Certificate's dataclass == said it differed from its own copy — a
    # check's worst_margin is NaN by default — and hash() failed on its dict field: "unhashable type: 'dict'")
    flow, gd = runs
    cmp, cert = gf.compare(gd, flow), gf.certify(flow)
    for obj in (cmp, cert, cert.checks[0]):
        assert pickle.loads(pickle.dumps(obj)) == obj and copy.deepcopy(obj) == obj and copy.copy(obj) == obj
    assert cmp != gf.compare(flow, gd) and cert != gf.certify(gd) and cert.checks[0] != cert.checks[1]
    assert hash(cert) == hash(copy.deepcopy(cert))
    with pytest.raises(TypeError, match="unhashable"):
        hash(cmp)


def test_print_shows_the_report_and_repr_one_line_for_every_result(runs):
    # (print(sol) showed the repr, one line, where print(cert) and print(cmp) showed their reports)
    flow, gd = runs
    for obj, report in ((flow, flow.summary()), (gd, gd.summary()), (gf.compare(gd, flow), None),
                        (gf.certify(flow), None)):
        assert "\n" not in repr(obj) and len(repr(obj)) < 160
        assert "\n" in str(obj) and (report is None or str(obj) == report)


def test_a_certificate_s_repr_is_one_short_line(runs):
    flow, _ = runs
    cert = gf.certify(flow)
    text = repr(cert)
    # (the dataclass repr spelled out every Check: thousands of characters at a prompt)
    assert "\n" not in text and len(text) < 160 and text.startswith("Certificate(kind='flow', OK")
    assert "11 checks" in text and "0 violation(s)" in text


# ---------------------------------------------------------------------------------------------------------
# plots: one rule — ax= says where to draw (None, an earlier call's Figure, an empty Figure, Axes), the Figure returns


_PLOTS = [name for name in gf.plotting.__all__ if name.startswith("plot_")]


def test_every_plot_function_takes_ax_and_says_so():
    # (plot_quantities and plot_comparison took axes=, plot_summary nothing; the single-panel plots returned Axes)
    for name in _PLOTS:
        fn = getattr(gf.plotting, name)
        assert "ax" in inspect.signature(fn).parameters, name
        assert "ax:" in inspect.getdoc(fn) and "the Figure" in inspect.getdoc(fn).split("Returns:")[1], name


def test_every_plot_function_returns_the_figure_and_draws_again_into_it(runs):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    flow, gd = runs
    cmp = gf.compare(gd, flow)
    draws = {"plot_loss_bounds": (lambda **kw: gf.plotting.plot_loss_bounds(flow, **kw), 1),
             "plot_feature_scatter": (lambda **kw: gf.plotting.plot_feature_scatter(flow, **kw), 1),
             "plot_gram_spectrum": (lambda **kw: gf.plotting.plot_gram_spectrum(flow, **kw), 1),
             "plot_quantities": (lambda **kw: gf.plotting.plot_quantities(flow, **kw), 3),
             "plot_comparison": (lambda **kw: gf.plotting.plot_comparison(cmp, **kw), 2)}
    try:
        for name, (draw, panels) in draws.items():
            fig = draw()
            assert isinstance(fig, Figure) and len(fig.axes) == panels, name
            lines = sum(len(a.get_lines()) + len(a.collections) for a in fig.axes)
            assert draw(ax=fig) is fig and len(fig.axes) == panels, name  # (drawn again into its panels)
            assert sum(len(a.get_lines()) + len(a.collections) for a in fig.axes) > lines, name
            empty = plt.figure()
            assert draw(ax=empty) is empty and len(empty.axes) == panels, name  # (the panels added)
            own = plt.subplots(1, panels)[1]
            assert draw(ax=own) is np.ravel(own)[0].figure, name  # (Axes of one's own)
            if panels > 1:
                assert draw(axes=fig) is fig, name  # (axes=: the multi-panel plots' name before, the same argument)
                with pytest.raises(TypeError, match="not both"):
                    draw(ax=fig, axes=fig)
                with pytest.raises(ValueError, match=f"must hold {panels} Axes"):
                    draw(ax=list(np.ravel(own))[:-1])
            else:
                with pytest.raises(ValueError, match="ax is a Figure with 2 Axes"):
                    draw(ax=plt.subplots(1, 2)[0])
            with pytest.raises(TypeError, match="ax must be"):
                draw(ax="left")
        empty = plt.figure(figsize=(12, 9))
        assert gf.plotting.plot_summary(flow, ax=empty) is empty and len(empty.axes) >= 6
        assert tuple(empty.get_size_inches()) == (12.0, 9.0)  # (a figure of one's own keeps its size)
        with pytest.raises(TypeError, match="empty matplotlib Figure"):
            gf.plotting.plot_summary(flow, ax=fig)
    finally:
        plt.close("all")


# ---------------------------------------------------------------------------------------------------------
# exceptions: the same bad input, the same exception type, from every entry point


@pytest.mark.parametrize("kw, error, match", [
    (dict(step="a"), TypeError, "step must be a real number"),
    (dict(max_wall_time="a"), TypeError, "max_wall_time must be a real number"),
    (dict(max_wall_time=-1.0), ValueError, "max_wall_time must be > 0"),
    (dict(warn="yes"), TypeError, "warn must be True or False"),
    (dict(integrals=1), TypeError, "integrals must be True or False"),
    (dict(threads=0), ValueError, "threads must be an integer >= 1"),
    (dict(interval=(1.0, 0.0)), ValueError, "interval must satisfy"),
    (dict(space=3), TypeError, "space must be one of"),
    (dict(X_test=np.zeros((2, 3))), ValueError, "X_test and y_test must be given together"),
])
def test_the_same_bad_argument_raises_the_same_error_from_every_entry_point(kw, error, match):
    # (step="a" raised a ValueError from gf.simulate and gf.simulate_batch with an adaptive method — "was given but
    # method 'dop853' is adaptive" — and a TypeError from gf.gradient_descent and gf.simulate_nonsmooth)
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    net = gf.Network(d=3, width=4, seed=0)
    nets = gf.networks(range(2), d=3, width=4)
    calls = {
        "simulate": lambda: gf.simulate(net, X, y, t1=1.0, method="dop853", **kw),
        "simulate auto": lambda: gf.simulate(net, X, y, t1=1.0, **kw),
        "simulate_batch": lambda: gf.simulate_batch(nets, X, y, t1=1.0, **kw),
        "simulate_nonsmooth": lambda: gf.simulate_nonsmooth(net, X, y, t1=1.0, **({"step": 0.25} | kw)),
        "gradient_descent": lambda: gf.gradient_descent(net, X, y, **({"step": 0.1, "steps": 3} | kw)),
        "gradient_descent_batch": lambda: gf.gradient_descent_batch(nets, X, y, **({"step": 0.1, "steps": 3} | kw)),
    }
    for name, call in calls.items():
        with pytest.raises(error, match=match):
            call()


def test_every_entry_point_that_reads_a_run_or_a_store_names_its_argument_when_given_a_number():
    # (gf.run_solution(3, 0) raised pathlib's "expected str, bytes or os.PathLike object, not int")
    calls = {"source": [lambda: gf.rerun(3), lambda: gf.extend(3, t1=2.0), lambda: gf.certify(3),
                        lambda: gf.run_solution(3, 0)],
             "sol": [lambda: gf.compare(3, 4), lambda: gf.plotting.plot_loss_bounds(3)],
             "store": [lambda: gf.open_sweep(3)]}
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(TypeError, match=f"^{name} must be .* got int 3"):
                fn()


def test_default_saveat_and_extend_check_t1_and_step():
    # (gf.default_saveat(-1.0) returned [-1.], (nan) [nan], a negative step was ignored, and
    # gf.extend(sol, t1=2, step="a") raised "'>' not supported between instances of 'str' and 'int'")
    assert gf.default_saveat(10.0, 0.5)[-1] == 10.0 and len(gf.default_saveat(10.0)) == 239
    for t1, error in ((-1.0, ValueError), (float("nan"), ValueError), ("a", TypeError), (True, TypeError)):
        with pytest.raises(error, match="t1 must be"):
            gf.default_saveat(t1)
    for step, error in ((-0.1, ValueError), (0.0, ValueError), (float("nan"), ValueError), ("a", TypeError)):
        with pytest.raises(error, match="step must be"):
            gf.default_saveat(1.0, step)
    X, y = gf.data.random_labels(n=4, d=3, seed=0)
    sol = gf.simulate(gf.Network(d=3, width=4, seed=0), X, y, t1=1.0, method="rk4", step=0.25)
    for method in ("rk4", "dop853"):
        with pytest.raises(TypeError, match="step must be a real number"):
            gf.extend(sol, t1=2.0, method=method, step="a")
