"""``error_estimate=True`` on the adaptive smooth methods (gflow.solve.estimate): a second solve at 32× looser
tolerances, whose loss difference (× 4, enveloped, carried forward, floored by the loss's rounding) must bound the
returned run's true error — against closed forms (linear σ) and a tight reference (tanh)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gflow as gf

METHODS = ["dop853", "exprk4", "dop853+exprk4"]


def _closed_form(net, X, r0, times):
    """L(t) = ½ r₀ᵀ exp(−2ĉ²Gt) r₀ (EQUATIONS.md (E5)) for a linear σ."""
    w, V = np.linalg.eigh(net.gram(X).numpy())
    q = V.T @ r0
    c2 = float(np.mean(net.c.numpy() ** 2))
    return np.array([0.5 * np.sum(q**2 * np.exp(-2.0 * c2 * w * t)) for t in times])


def _assert_bounds(sol, exact, precision):
    true = np.abs(sol.loss / exact - 1.0)
    est = sol.error_estimate
    assert est.shape == sol.t.shape and est[0] == 0.0
    # beyond the reference's own precision, the estimate is at least the error
    bad = (true > precision) & ~(true <= est)
    assert not bad.any(), (sol.t[bad], true[bad], est[bad])
    return true, est


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rtol", [1e-4, 1e-6, 1e-8])
@pytest.mark.parametrize("case", ["regular", "singular"])
def test_the_estimate_bounds_a_linear_flows_error(method, rtol, case):
    # G regular (n = 4 < d = 10: L falls to 4e-22 at t = 160) and singular (n = 8 > d = 4: L levels off)
    n, d, t1 = (4, 10, 160.0) if case == "regular" else (8, 4, 100.0)
    X, y = gf.data.random_labels(n=n, d=d, seed=1 if case == "regular" else 2)
    net = gf.Network(d=d, width=16, activation="linear", seed=1 if case == "regular" else 2)
    ts = np.linspace(0.0, t1, 17)
    sol = gf.simulate(net, X, y, t1, ts, method=method, rtol=rtol, error_estimate=True, integrals=False)
    assert sol.ok and "estimated relative loss error ≤" in sol.message
    true, est = _assert_bounds(sol, _closed_form(net, X, sol.residual[0], ts), 1e-12)
    assert np.all(np.isfinite(est)) and est.max() < 1e-1


@pytest.mark.parametrize("scaling", ["ours", "ntk", "mf"])
def test_the_estimate_bounds_a_tanh_flows_error(scaling):
    X, y = gf.data.random_labels(n=8, d=5, seed=4)
    net = gf.Network(d=5, width=24, activation="tanh", scaling=scaling, seed=4)
    t1 = 10.0 if scaling == "mf" else 100.0
    ts = np.linspace(0.0, t1, 11)
    ref = gf.simulate(net, X, y, t1, ts, method="exprk4", rtol=1e-12, atol=1e-30, integrals=False)
    for method in METHODS:
        sol = gf.simulate(net, X, y, t1, ts, method=method, rtol=1e-5, error_estimate=True, integrals=False)
        true, est = _assert_bounds(sol, ref.loss, 1e-11)
        assert true.max() > 1e-9  # (the precondition: an error the estimate has to see)


def test_an_estimate_past_the_rounding_is_inf_and_the_message_says_where():
    # a linear flow to L = 1e-52 (its computed loss: rounding, 1e20 times too large): the two solves' losses differ
    # by 350×, and the estimate said 7e2 — a number for an error of 1e20
    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    net = gf.Network(d=10, width=16, activation="linear", seed=1)
    ts = np.linspace(0.0, 400.0, 21)
    sol = gf.simulate(net, X, y, 400.0, ts, method="dop853", error_estimate=True, integrals=False)
    exact = _closed_form(net, X, sol.residual[0], ts)
    assert np.isinf(sol.error_estimate[-1]) and sol.loss[-1] / exact[-1] > 1e10
    _assert_bounds(sol, exact, 1e-12)
    assert "inf from t = " in sol.message and "no relative accuracy" in sol.message


def test_dopri5_is_refused_and_auto_estimates_with_dop853_instead():
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    net = gf.Network(d=5, width=32, activation="tanh", seed=0)
    for method in ("dopri5", "dopri5+exprk4"):
        with pytest.raises(ValueError, match=re.escape(f"does not take method='{method}'") + ".*same error"):
            gf.simulate(net, X, y, t1=10.0, method=method, error_estimate=True)
    with pytest.raises(ValueError, match="not measured for it: use gflow's 'dop853'"):
        gf.simulate(net, X, y, t1=10.0, method="RK45", error_estimate=True)
    with pytest.raises(ValueError, match=r"needs rtol ≤ 0.125"):
        gf.simulate(net, X, y, t1=10.0, method="dop853", rtol=0.2, error_estimate=True)
    sol = gf.simulate(net, X, y, t1=10.0, rtol=1e-3, error_estimate=True)   # auto would pick dopri5 here
    assert sol.config["solver"]["method"] == "dop853" and "'dop853' instead of 'dopri5'" in sol.config["solver"]["auto"]
    assert sol.stats["n_f_evals"] > sol.stats["n_f_evals_returned"]
    info = sol.config["solver"]["error_estimate"]
    assert info["flow"] == "gradient flow" and "second solve of dop853 at rtol×32" in info["scheme"]
    from gflow.solve.ode import error_estimate_problem

    assert error_estimate_problem(net, "dop853", None) is None and error_estimate_problem(net, "auto", None) is None
    assert "same error" in error_estimate_problem(net, "dopri5", None)


def test_a_run_with_a_second_solve_estimate_reruns_and_round_trips(tmp_path):
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, t1=20.0, method="dop853+exprk4", rtol=1e-6, error_estimate=True)
    sol.save(tmp_path / "run.nc")
    again = gf.rerun(tmp_path / "run.nc")
    np.testing.assert_array_equal(again.loss, sol.loss)
    np.testing.assert_array_equal(again.error_estimate, sol.error_estimate)
    np.testing.assert_array_equal(gf.load(tmp_path / "run.nc").error_estimate, sol.error_estimate)


def test_the_estimate_benchmark_quick_mode_writes_its_tables_and_the_estimates_hold(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_estimate

    out = bench_estimate.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "estimate.json").is_file() and "| problem |" in (tmp_path / "estimate.md").read_text()
    assert {r["method"] for r in out["runs"]} == {"dop853", "exprk4"}
    assert all(r["worst_true_over_estimate"] <= 1.0 and r["status"] == "success" for r in out["runs"])
    assert out["dopri5"] and all(r["true"] >= 0 for r in out["dopri5"])


def test_the_returned_solves_warnings_are_said_with_an_estimate_too(monkeypatch):
    # the returned solve ran with warn=False: its loss-rise warning (kept in the message only) and float32 feature
    # space's loss of W were said without error_estimate and silently dropped with it
    from gflow.solve import _record

    X, _ = gf.data.random_labels(n=10, d=8, seed=0)
    net = gf.Network(d=8, width=64, activation="tanh", scaling="ntk", seed=0)
    monkeypatch.setattr(_record.Recorder, "_rounding", lambda self, loss, s: 0.0)   # (a rise at L ≈ 1e-31)
    with pytest.warns(gf.GFlowWarning, match="gflow.simulate: the loss rose .* does not follow the flow there"):
        sol = gf.simulate(net, X, np.zeros(10), t1=5.0, method="dop853", error_estimate=True)
    assert sol.ok and "warning: the loss rose" in sol.message and "loss_rise" in sol.stats
    monkeypatch.undo()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 2)), rng.standard_normal(8)
    for net, method in ((gf.Network(d=2, width=16, seed=0, dtype="float32"), "exprk4"),
                        (gf.Network(d=2, width=16, activation="relu", seed=0, dtype="float32"), "filippov")):
        with pytest.warns(gf.GFlowWarning, match=r"float32 feature space with n = 8 > D = 2") as caught:
            gf.simulate(net, X, y, t1=0.2, method=method, error_estimate=True)
        assert len([w for w in caught if issubclass(w.category, gf.GFlowWarning)]) == 1   # (once, not per solve)


def test_bad_methods_and_options_with_an_estimate_say_what_was_wrong():
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    for method in (123, None):  # (AttributeError: 'int' object has no attribute 'startswith')
        with pytest.raises(TypeError, match="method must be one of"):
            gf.simulate(net, X, y, t1=2.0, method=method, error_estimate=True)
    from gflow.solve.ode import error_estimate_problem

    assert "got int 123" in error_estimate_problem(net, 123, None)
    # auto with a step (it said "needs method='auto', ...; got method='auto', step=0.1")
    with pytest.raises(ValueError, match=r"with method='auto' takes no step .* got step=0.1; give a fixed-step method"):
        gf.simulate(net, X, y, t1=2.0, step=0.1, error_estimate=True)
    # auto picks dop853+exprk4 on this long horizon, which takes no options: say auto picked it (the solve said
    # "unknown option(s) ['first_step'] for method 'dop853+exprk4'", a method never named)
    with pytest.raises(ValueError, match=r"method='auto' picked 'dop853\+exprk4' .* which takes no options.*"
                                         r"give method='dop853'"):
        gf.simulate(net, X, y, t1=3000.0, options={"first_step": 0.01}, error_estimate=True)


def test_extending_a_run_with_a_second_solve_estimate_names_it():
    X, y = gf.data.random_labels(n=8, d=5, seed=0)
    net = gf.Network(d=5, width=16, activation="tanh", seed=0)
    sol = gf.simulate(net, X, y, t1=2.0, method="dop853", error_estimate=True)
    with pytest.raises(ValueError, match=r"a second, looser solve of method 'dop853'"):
        gf.extend(sol, t1=4.0)
    halved = gf.simulate(net, X, y, t1=2.0, method="rk4", step=0.5, error_estimate=True)
    with pytest.raises(ValueError, match=r"three solves at steps h, h/2, h/4\)"):
        gf.extend(halved, t1=4.0)
