"""Non-smooth (ReLU, leaky ReLU) flows: which flow the schemes converge to, and the step-halving error estimate.

The estimate (gflow/solve/nonsmooth.py) must bound the true relative loss error, with the documented safety
factor 2 already inside it, on: the exact event-driven n = 1 solution (EQUATIONS.md §5.4), an exact Filippov
(sliding) solution with one neuron and two points, and small random P-3L problems against much finer
references; for tanh the observed order must match the scheme's classical order.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest

import gflow as gf
from gflow.fields import Problem
from gflow.solve.nonsmooth import richardson_estimate
from gflow.theory.relu_exact import relu_one_point


def _run(net, X, y, T, sv, method, step, **kw):
    return gf.simulate(net, X, y, T, sv, method=method, step=step, integrals=False, **kw)


def _true_rel(sol_loss, ref_loss):
    return np.abs(sol_loss - ref_loss) / np.abs(ref_loss)


# ------------------------------------------------------------------------------------------------------------
# n = 1: the exact event-driven solution


def _one_point(slope, T):
    """A (leaky-)ReLU net with one training point and its exact loss and features at times T (§5.4)."""
    act = "relu" if slope == 0 else gf.get_activation("leaky_relu", slope=slope)
    X, y = np.array([[1.0, -0.5, 0.3]]), np.array([1.5])
    net = gf.Network(d=3, width=64, activation=act, seed=1)
    pb = Problem.from_data(net, X, y)
    L, H = relu_one_point(pb.H0[:, 0].numpy(), net.c.numpy(), float(pb.G[0, 0]), 1.5, T, alpha=net.alpha,
                          gamma=net.gamma, slope=slope)
    return net, X, y, L, H


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_one_point_oracle_agrees_with_a_fine_rk4_run(slope):
    T = np.linspace(0.0, 10.0, 11)
    net, X, y, L, H = _one_point(slope, T)
    sol = _run(net, X, y, 10.0, T, "rk4", 2e-3, features_at="all")
    assert np.max(_true_rel(sol.loss, L)) < 1e-4          # O(step) at the events
    assert np.max(np.abs(sol.H[:, :, 0] - H)) < 1e-3
    sig = np.where(H > 0, H, slope * H)                   # the oracle's features reproduce its loss
    r = net.alpha * sig @ net.c.numpy() - 1.5
    np.testing.assert_allclose(0.5 * r**2, L, rtol=1e-12)


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("method", ["euler"])
def test_estimate_bounds_the_true_error_against_the_one_point_oracle(slope, method):
    act = "relu" if slope == 0 else gf.get_activation("leaky_relu", slope=slope)
    X, y = np.array([[0.4, 1.0, -0.7]]), np.array([-1.2])
    net = gf.Network(d=3, width=64, activation=act, seed=3)
    pb = Problem.from_data(net, X, y)
    T = np.linspace(0.0, 8.0, 17)
    L, _ = relu_one_point(pb.H0[:, 0].numpy(), net.c.numpy(), float(pb.G[0, 0]), -1.2, T, alpha=net.alpha,
                          gamma=net.gamma, slope=slope)
    sol = gf.simulate(net, X, y, 8.0, T, method=method, step=0.1, integrals=False, error_estimate=True)
    assert sol.ok and sol.error_estimate.shape == sol.t.shape
    true = _true_rel(sol.loss, L)
    assert true[1:].max() > 0
    assert np.all(sol.error_estimate >= true)
    info = sol.config["solver"]["error_estimate"]
    assert info["steps"] == [0.1, 0.05, 0.025] and info["reliable"]


# ------------------------------------------------------------------------------------------------------------
# Filippov: one neuron, two points, one pair sliding along h = 0 (exact solution)


def _sliding_problem():
    """m = 1, c = 1, G = [[1, ½], [½, 1]], y = (−1, 2), h(0) = (½, ½).

    Both pairs are active until h₀ reaches 0 at t* = 2 ln(3/2)/κ; there ḣ₀ = −γ(G₀₀r₀ + G₀₁r₁) < 0 from above
    and −γG₀₁r₁ > 0 from below: pair 0 slides, with θ = −G₀₁r₁/(G₀₀r₀) ∈ (0, 1).  Then r₀ = −y₀ and
    r₁ decays at the Schur-complement rate κ(G₁₁ − G₀₁²/G₀₀) = ¾κ (Filippov); σ′(0) = 0 would instead leave
    pair 0 out of the field, giving the rate κG₁₁ = κ — but is no solution, since then ḣ₀ = −γG₀₁r₁ ≠ 0.
    """
    phi = math.pi / 3
    X = math.sqrt(2) * np.array([[1.0, 0.0], [math.cos(phi), math.sin(phi)]])
    y = np.array([-1.0, 2.0])
    W0 = np.array([[0.5, (0.5 - 0.5 * math.cos(phi)) / math.sin(phi)]])   # H(0) = β W0 Xᵀ = (½, ½), β = 1/√2
    net = gf.Network(d=2, width=1, activation="relu", embedding="identity", scaling="ours", c=np.array([1.0]),
                     W0=W0)
    pb = Problem.from_data(net, X, y)
    G = pb.G.numpy()
    kappa = net.alpha * net.gamma
    r0 = pb.outputs(pb.H0).numpy() - y
    lam, V = np.linalg.eigh(G)

    def r_phase1(t):
        return V @ (np.exp(-kappa * lam * t) * (V.T @ r0))

    from scipy.optimize import brentq

    def h0(t):
        return (r_phase1(t)[0] + y[0]) / net.alpha

    t_star = brentq(h0, 0.0, 50.0, xtol=1e-15)
    r1_star = r_phase1(t_star)[1]
    schur = G[1, 1] - G[0, 1] ** 2 / G[0, 0]

    def residual(t, rate):
        t = np.asarray(t, float)
        return np.array([r_phase1(s) if s <= t_star else
                         np.array([-y[0], r1_star * math.exp(-kappa * rate * (s - t_star))]) for s in t])

    return net, X, y, pb, t_star, lambda t: residual(t, schur), lambda t: residual(t, G[1, 1])


def _loss(r):
    return 0.5 * (r**2).sum(axis=1)


def test_sliding_problem_has_the_stated_geometry():
    _, _, _, pb, t_star, _, _ = _sliding_problem()
    np.testing.assert_allclose(pb.G.numpy(), [[1.0, 0.5], [0.5, 1.0]], atol=1e-14)
    np.testing.assert_allclose(pb.H0.numpy()[0], [0.5, 0.5], atol=1e-14)
    assert 0 < t_star < 3


def test_gradient_descent_converges_to_the_filippov_sliding_solution_not_the_sigma_prime_zero_one():
    net, X, y, _, _, filippov, frozen = _sliding_problem()
    T = 4.0
    errs, steps = [], np.array([0.02, 0.01, 0.005, 0.0025])
    for step in steps:
        gd = gf.gradient_descent(net, X, y, step=step, steps=round(T / step), save_every=round(T / step),
                                 integrals=False)
        # the residual of the point that keeps training (r₀ = −y₀ + O(step) chatter on the sliding pair)
        errs.append(abs(gd.residual[-1][1] - filippov([T])[0, 1]))
        assert abs(gd.H[-1][0, 0]) < 3 * step                       # the sliding pair chatters at the kink
        assert abs(gd.residual[-1][0] + y[0]) < 3 * step
    # first order, with a coefficient that oscillates with the step (the chatter's phase at t = T): measured
    # |error| = 2.7e-3, 4.6e-4, 6.4e-4, 1.1e-4 for the four steps
    errs = np.array(errs)
    assert np.all(errs < 0.2 * steps) and max(errs[-2:]) < 0.3 * max(errs[:2])
    gap = abs(filippov([T])[0, 1] - frozen([T])[0, 1])
    assert errs[-1] < 0.05 * gap                                     # far from the σ′(0) = 0 rate


def test_estimate_bounds_the_true_error_on_the_sliding_problem():
    net, X, y, _, _, filippov, _ = _sliding_problem()
    T = np.linspace(0.0, 6.0, 13)
    sol = gf.simulate(net, X, y, 6.0, T, method="euler", step=0.04, integrals=False, error_estimate=True)
    true = _true_rel(sol.loss, _loss(filippov(T)))
    assert sol.error_estimate[0] == 0 and true[0] < 1e-15
    assert np.all(sol.error_estimate[1:] >= true[1:])
    assert sol.error_estimate.max() < 20 * true.max()               # and is not vacuous


# ------------------------------------------------------------------------------------------------------------
# random P-3L problems against much finer references


@pytest.mark.parametrize("act", ["relu", "leaky"])
def test_estimate_bounds_the_true_error_on_random_p3l_problems(act, make_data):
    activation = "relu" if act == "relu" else gf.get_activation("leaky_relu", slope=0.1)
    X, y = make_data(n=12, d=20, seed=5)
    net = gf.Network(d=20, width=64, activation=activation, embedding=gf.RandomFeatures(D=24, seed=2), seed=4)
    T = np.linspace(0.0, 10.0, 11)
    sol = gf.simulate(net, X, y, 10.0, T, method="euler", step=0.1, integrals=False, error_estimate=True)
    # reference: Euler at step/128 and step/256 — their difference (an error estimate of the reference) is far
    # below the estimate being tested
    ref = _run(net, X, y, 10.0, T, "euler", 0.1 / 256)
    ref2 = _run(net, X, y, 10.0, T, "euler", 0.1 / 128)
    assert np.max(_true_rel(ref2.loss, ref.loss)) < 0.1 * np.max(sol.error_estimate)
    true = _true_rel(sol.loss, ref.loss)
    assert np.all(sol.error_estimate + _true_rel(ref2.loss, ref.loss) >= true)


@pytest.mark.xfail(strict=True, reason="known limitation: an error plateau over all three steps is invisible to "
                   "step halving (the error is 4.1e-4, 4.6e-4, 4.6e-4 at steps 0.1, 0.05, 0.025, then 4e-6 at 0.0125)")
def test_known_limitation_an_error_plateau_below_the_coarsest_step_is_not_seen():
    X, y = gf.data.wei2019(10, 20, seed=0)
    net = gf.Network(20, width=64, activation=gf.get_activation("leaky_relu", slope=0.1),
                     embedding=gf.RandomFeatures(D=20, seed=0), seed=0)
    T = np.linspace(0.0, 10.0, 11)
    sol = gf.simulate(net, X, y, 10.0, T, method="euler", step=0.1, integrals=False, error_estimate=True)
    ref = _run(net, X, y, 10.0, T, "euler", 0.1 / 256)
    assert np.all(sol.error_estimate >= _true_rel(sol.loss, ref.loss))


def test_smooth_activation_gives_the_classical_order_and_a_bounding_estimate(make_data):
    X, y = make_data(n=8, d=10, seed=1)
    net = gf.Network(d=10, width=32, activation="tanh", seed=0)
    T = np.linspace(0.0, 4.0, 5)
    ref = gf.simulate(net, X, y, 4.0, T, method="DOP853", rtol=1e-12, atol=1e-14, integrals=False)
    for method, order in (("euler", 1), ("midpoint", 2)):
        sol = gf.simulate(net, X, y, 4.0, T, method=method, step=0.1, integrals=False, error_estimate=True)
        info = sol.config["solver"]["error_estimate"]
        assert abs(info["observed_order"] - order) < 0.15
        true = _true_rel(sol.loss, ref.loss)
        assert np.all(sol.error_estimate >= true) and sol.error_estimate.max() < 10 * true.max()


# ------------------------------------------------------------------------------------------------------------
# the accuracy-target form, budgets, files, input checks


def test_rtol_refines_the_step_until_the_estimate_meets_it(make_data):
    X, y = make_data(n=6, d=8, seed=2)
    net = gf.Network(d=8, width=32, activation="relu", seed=1)
    sol = gf.simulate_nonsmooth(net, X, y, 5.0, np.linspace(0, 5, 6), step=0.2, rtol=2e-3, integrals=False)
    info = sol.config["solver"]["error_estimate"]
    assert sol.ok and sol.error_estimate.max() <= 2e-3
    assert len(info["steps"]) > 3 and info["steps_used"] == info["steps"][-3:]
    assert sol.stats["n_f_evals"] > sol.stats["n_f_evals_finest"]


def test_time_budget_stops_with_status_and_the_best_solution(make_data):
    X, y = make_data(n=6, d=8, seed=2)
    net = gf.Network(d=8, width=32, activation="relu", seed=1)
    with pytest.warns(gf.GFlowWarning, match="time_budget"):
        sol = gf.simulate_nonsmooth(net, X, y, 5.0, np.linspace(0, 5, 6), step=0.2, rtol=1e-5,
                                    max_wall_time=1.0, integrals=False)
    assert sol.status == "time_budget" and "max_wall_time" in sol.message
    assert np.all(np.isfinite(sol.error_estimate)) and sol.t[-1] == 5.0


def test_a_time_budget_message_quotes_the_budget_the_user_gave():
    # (an audit: it quoted what was left of it when the solve started, "max_wall_time=0.299998 s" for 0.3)
    X, y = gf.data.random_labels(n=60, d=10, seed=0)
    net = gf.Network(d=10, width=128, activation="relu", seed=0)
    sol = gf.simulate(net, X, y, t1=2000.0, method="sliding", step=0.125, error_estimate=True, max_wall_time=0.3,
                      warn=False)
    assert sol.status == "time_budget"
    assert sol.message.startswith("the wall-time budget max_wall_time = 0.3 s (for all the solves) ran out in the "
                                  "solve with step 0.125 at t = ")
    # the same with saveat for t1 (a review: its message formatted t1 = None, a TypeError in place of the status)
    sol = gf.simulate(net, X, y, saveat=[0.0, 1000.0, 2000.0], method="sliding", step=0.125, error_estimate=True,
                      max_wall_time=0.3, warn=False)
    assert sol.status == "time_budget" and "(of t1 = 2000)" in sol.message


def test_an_rtol_the_halvings_cannot_reach_within_max_steps_stops_at_once(make_data):
    # (a new-user audit: rtol = 1e-9 with euler on a small ReLU net was still halving after 168 s, bound for
    # max_steps = 1e7 about an hour later; the estimate's order says after three solves that it needs ~1e9 steps)
    X, y = make_data(n=6, d=8, seed=2)
    net = gf.Network(d=8, width=32, activation="relu", seed=1)
    t0 = time.perf_counter()
    with pytest.warns(gf.GFlowWarning, match="max_steps"):
        sol = gf.simulate_nonsmooth(net, X, y, 5.0, np.linspace(0, 5, 6), step=0.2, rtol=1e-12, integrals=False)
    assert time.perf_counter() - t0 < 20.0  # (a hang guard, not a timing: the three solves take ~0.1 s)
    assert sol.status == "max_steps" and len(sol.config["solver"]["error_estimate"]["steps"]) == 3
    assert re.search(r"rtol = 1e-12 needs a step of about \S+, \S+ steps, more than max_steps = 10000000; "
                     r"loosen rtol", sol.message)
    assert np.all(np.isfinite(sol.error_estimate)) and sol.t[-1] == 5.0


def test_error_estimate_is_saved_and_loaded(tmp_path, make_data):
    X, y = make_data(n=4, d=6, seed=0)
    net = gf.Network(d=6, width=16, activation="relu", seed=0)
    sol = gf.simulate(net, X, y, 1.0, [0.0, 0.5, 1.0], method="euler", step=0.1, error_estimate=True)
    back = gf.load(sol.save(tmp_path / "r.nc"))
    np.testing.assert_array_equal(back.error_estimate, sol.error_estimate)
    assert back.config["solver"]["error_estimate"]["steps"] == [0.1, 0.05, 0.025]
    again = gf.rerun(tmp_path / "r.nc")
    np.testing.assert_array_equal(again.error_estimate, sol.error_estimate)
    np.testing.assert_array_equal(again.loss, sol.loss)
    assert again.config["solver"]["error_estimate"]["steps"] == [0.1, 0.05, 0.025]
    plain = gf.simulate(net, X, y, 1.0, [0.0, 1.0], method="euler", step=0.1)
    assert plain.error_estimate is None and gf.load(plain.save(tmp_path / "p.nc")).error_estimate is None


def test_rerun_of_a_step_halving_run_keeps_its_max_steps(tmp_path):
    # regression: gf.rerun dropped max_steps (default 1e7), so the rerun halved on to step 0.003 and "success" where
    # the run had stopped at 0.05 with "max_steps": another run
    X, y = gf.data.random_labels(n=8, d=6, seed=0)
    net = gf.Network(d=6, width=16, activation="relu", seed=0)
    sol = gf.simulate_nonsmooth(net, X, y, t1=2.0, method="euler", step=0.2, rtol=3e-3, max_steps=100, warn=False)
    assert sol.status == "max_steps" and sol.config["solver"]["error_estimate"]["steps"] == [0.2, 0.1, 0.05]
    with pytest.warns(gf.GFlowWarning, match=r"\[max_steps\]"):
        again = gf.rerun(sol.save(tmp_path / "r.nc"))
    assert again.status == sol.status and again.message == sol.message
    assert again.config["solver"]["max_steps"] == 100
    assert again.config["solver"]["error_estimate"]["steps"] == [0.2, 0.1, 0.05]
    np.testing.assert_array_equal(again.loss, sol.loss)
    np.testing.assert_array_equal(again.error_estimate, sol.error_estimate)


def test_bad_input_is_rejected(make_data):
    X, y = make_data(n=4, d=6, seed=0)
    net = gf.Network(d=6, width=16, activation="relu", seed=0)
    # the message names every route that takes it (filippov was left out once)
    with pytest.raises(ValueError, match=(r"error_estimate=True needs method='auto', 'filippov' \(ReLU-type σ\), "
                                          r"one of \('dop853', 'exprk4', 'dop853\+exprk4'\) \(smooth σ: a second, "
                                          r"looser solve\), or a fixed-step method in \('euler', 'midpoint', 'rk4', "
                                          r"'sliding'\) with an explicit step")):
        gf.simulate(net, X, y, 1.0, method="dop853", error_estimate=True)   # (the default, "auto", runs filippov)
    with pytest.raises(ValueError, match="error_estimate=True needs"):
        gf.simulate(net, X, y, 1.0, method="rk4", error_estimate=True)
    with pytest.raises(TypeError, match="error_estimate must be True or False"):
        gf.simulate(net, X, y, 1.0, method="rk4", step=0.1, error_estimate="yes")
    with pytest.raises(ValueError, match="method"):
        gf.simulate_nonsmooth(net, X, y, 1.0, method="dopri5")
    with pytest.raises(ValueError, match="use method='sliding'"):
        gf.simulate(net, X, y, 1.0, method="midpoint", step=0.1, error_estimate=True)
    with pytest.raises(ValueError, match="more than max_steps=20"):
        gf.simulate_nonsmooth(net, X, y, 1.0, step=0.1, max_steps=20)
    with pytest.raises(ValueError, match="safety"):
        gf.simulate_nonsmooth(net, X, y, 1.0, safety=0.5)
    with pytest.raises(ValueError, match="shape"):
        richardson_estimate(np.zeros((2, 3)), 1)


def test_richardson_estimate_on_a_synthetic_power_law():
    h = np.array([0.4, 0.2, 0.1])
    t = np.linspace(0.0, 1.0, 6)
    exact = 1.0 + t
    L = exact[None, :] + (h[:, None] ** 1.5) * t[None, :]
    est = richardson_estimate(L, order=2, safety=1.0)
    assert abs(est["observed_order"] - 1.5) < 1e-12 and est["reliable"]
    true = np.abs(L[2] - exact)
    rel = true / L[2]  # the relative error grows with t here: the envelope of neighbours takes the one ahead
    assert est["abs"][0] == 0.0                                            # t = 0: the initial condition
    np.testing.assert_allclose(est["rel"][1:-1], rel[2:], rtol=1e-12)    # exact, one neighbour ahead (envelope)
    np.testing.assert_allclose(est["abs"][-1], true[-1], rtol=1e-12)
    assert np.all(est["abs"] >= true * (1 - 1e-12))


def test_richardson_estimate_follows_a_loss_that_falls_by_orders_of_magnitude_between_saved_times():
    # regression: the envelope over neighbouring times took the absolute differences, so an earlier time's, where
    # the loss is e³ = 20× larger, divided by this time's loss inflated the estimate 20× here (on a ReLU run to
    # t = 2 000 with 11 saved times: 2.3e-2 against a true error of 5e-6)
    h = np.array([0.4, 0.2, 0.1])
    t = np.linspace(0.0, 10.0, 11)
    exact = np.exp(-3.0 * t)
    L = exact[None, :] * (1.0 + 0.01 * h[:, None] ** 1.5)  # a relative error 0.01·h^1.5 at every time
    est = richardson_estimate(L, order=2, safety=1.0)
    true_rel = np.abs(L[2] - exact) / L[2]
    np.testing.assert_allclose(est["rel"][1:], true_rel[1:], rtol=1e-9)
    est = richardson_estimate(L, order=1, safety=1.0, smooth=False)  # (kinked σ: order capped at 1, both halvings)
    assert np.all(est["rel"][1:] >= true_rel[1:]) and np.all(est["rel"][1:] <= 10 * true_rel[1:])
    zero = richardson_estimate(np.array([[1.0, 2e-9], [1.0, 1e-9], [1.0, 0.0]]), order=1)  # a loss of exactly 0
    assert np.all(np.isfinite(zero["abs"])) and zero["abs"][1] > 0 and zero["rel"][1] == np.inf


def test_relu_benchmark_quick_mode_writes_json_and_the_estimates_bound_the_error(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_relu.py"))
    mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "relu.json").read_text())
    prob = data["problem"]
    assert all(lv["status"] == "success" for lv in prob["levels"]) and len(prob["levels"]) == 5
    assert prob["estimates"] and all(row["bounded"] for row in prob["estimates"])
    assert prob["target"]["status"] in ("success", "time_budget") and data["dtype"] == "float64"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_error_estimate_runs_with_the_default_output_times(activation, make_data):
    # the default grid lands a step on each of its ~240 output times, so its solves take more steps than t1/h;
    # they were refused with a max_steps the user never set ("needs 238 steps … more than max_steps=90")
    X, y = make_data(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=16, activation=activation, seed=0)
    sol = gf.simulate(net, X, y, t1=20.0, method="euler", step=0.25, error_estimate=True)
    assert sol.ok, sol.message
    assert len(sol.t) == 81 and np.all(np.isfinite(sol.error_estimate))  # the default times, on multiples of 0.25
    nonsmooth = gf.simulate_nonsmooth(net, X, y, t1=1.0, step=0.1, rtol=1e-2)
    assert nonsmooth.ok, nonsmooth.message


def test_fixed_steps_are_not_set_by_the_default_output_times(make_data):
    # to t1 = 5 the default grid's times are ≈ 0.021 apart, and a fixed-step grid lands on each: every step h ≥ 0.021
    # ran at ≈ 0.021, so euler at step 0.5 was not GD(0.5), and error_estimate's h, h/2, h/4 solves were identical
    # ("error ≤ 0, observed order inf"); the default times now sit on multiples of h (a bad-input fuzz)
    X, y = make_data(n=6, d=4, seed=0)
    net = gf.Network(d=4, width=16, seed=0)
    sol = gf.simulate(net, X, y, t1=5.0, method="euler", step=0.5)
    gd = gf.gradient_descent(net, X, y, step=0.5, steps=10)
    assert sol.stats["n_steps"] == 10 and abs(sol.loss[-1] / gd.loss[-1] - 1) < 1e-12
    relu = gf.Network(d=4, width=16, activation="relu", seed=0)
    est = gf.simulate(relu, X, y, t1=5.0, method="euler", step=0.25, error_estimate=True)
    assert est.ok and 0 < np.max(est.error_estimate) < 1 and "order inf" not in est.message
    with pytest.raises(ValueError, match=r"output times closer than step=0.25 .*would take 500, 500, 500 steps"):
        gf.simulate(relu, X, y, t1=5.0, method="euler", step=0.25, error_estimate=True, saveat=np.linspace(0, 5, 501))


@pytest.mark.parametrize("step, t1, counts", [(10.0, 1.0, "1, 1, 1"), (2.0, 1.0, "1, 1, 2")])
def test_step_halving_refuses_a_step_whose_halvings_take_the_same_steps(make_data, step, t1, counts):
    # regression (a bad-input audit): a step ≥ t1 clipped h, h/2 (and h/4) to the same single step, and the estimate
    # said "error ≤ 0.00e+00 (observed order inf)" — "success", 2.95e-2 off the Filippov loss
    X, y = make_data(n=8, d=3, seed=0)
    relu = gf.Network(d=3, width=16, activation="relu", seed=0)
    with pytest.raises(ValueError, match=rf"step={step:g} exceeds t1={t1:g}: .*would take {counts} steps.*"
                                         rf"use step ≤ {t1:g}"):
        gf.simulate_nonsmooth(relu, X, y, t1=t1, step=step, rtol=1e-6)
    with pytest.raises(ValueError, match=r"would take"):
        gf.simulate(relu, X, y, t1=t1, method="euler", step=step, error_estimate=True)
    # … and output times 0.1 apart make steps 0.25 and 0.125 identical (10 steps each): the first two solves of three
    with pytest.raises(ValueError, match=r"would take 10, 10, 20 steps"):
        gf.simulate_nonsmooth(relu, X, y, t1=1.0, step=0.25, saveat=np.linspace(0, 1, 11))
    sol = gf.simulate_nonsmooth(relu, X, y, t1=1.0, step=1.0)  # 1, 2, 4 steps: accepted
    assert sol.ok and sol.config["solver"]["error_estimate"]["steps"] == [1.0, 0.5, 0.25]


def test_step_halving_refuses_a_checkpoint(make_data):
    # regression: the path went to all three solves, and the second failed on the first one's file ("written by a
    # different run … 'step' (0.25 in the checkpoint vs 0.125 now)")
    X, y = make_data(n=8, d=3, seed=0)
    relu = gf.Network(d=3, width=16, activation="relu", seed=0)
    with pytest.raises(ValueError, match=r"checkpoint is not supported by simulate_nonsmooth"):
        gf.simulate_nonsmooth(relu, X, y, t1=1.0, checkpoint="unused.ckpt")


def test_richardson_estimate_next_to_a_loss_of_exactly_0_stays_finite_and_a_nan_loss_stays_nan():
    # regression: the envelope took a zero-loss neighbour's relative difference (inf), so the estimate at a saved
    # time of positive loss next to it was inf (the absolute envelope gave 2e-3 here); a NaN loss had estimate 0
    L = np.array([[1.0, 1e-2, 1e-3], [1.0, 1.1e-2, 5e-4], [1.0, 1.05e-2, 0.0]])
    for smooth in (True, False):
        est = richardson_estimate(L, order=1, smooth=smooth)
        assert np.all(np.isfinite(est["abs"])) and est["abs"][1] >= 2e-3 * (1 - 1e-12), est
        assert est["rel"][2] == np.inf and est["abs"][2] > 0
    est = richardson_estimate(np.array([[1.0, 0.5, 0.2], [1.0, 0.6, 0.3], [1.0, 0.55, np.nan]]), order=1)
    assert np.isnan(est["abs"][2])


def test_step_halving_keeps_the_finest_solves_stability_warning(make_data):
    # review: only "the loss rose" was carried over from the finest solve; a step past the stability limit that froze
    # a saturated net (all three solves equal: "error ≤ 0") passed without a word
    X, y = make_data(n=8, d=3, seed=0)
    net = gf.Network(d=3, width=8, seed=1, c_hat=1e4)
    with pytest.warns(gf.GFlowWarning, match=r"the finest solve \(step 0.25\): the step 0.25 of method='midpoint' "
                                             r"exceeds its stability limit"):
        sol = gf.simulate_nonsmooth(net, X, y, t1=4.0, method="midpoint", step=1.0)
    assert "exceeds its stability limit" in sol.message and sol.stats["unstable_step"]


def test_step_halving_past_the_stability_limit_where_the_loss_rose_reports_no_estimate():
    # regression (an audit): euler at steps 20, 10, 5, all past the limit 2/λ_max(M₀) = 1.7, whose loss rose: the
    # solves recorded loss_rise but not unstable_step, so the estimate came out finite and meaningless (6.7e10,
    # "observed order 22"); without a rise the same steps reported ∞
    X, y = gf.data.random_labels(n=10, d=8, seed=0)
    net = gf.Network(d=8, width=64, activation="relu", seed=0)
    kw = dict(t1=96.0, saveat=[0, 24, 48, 72, 96], method="euler", warn=False)
    one = gf.simulate(net, X, y, step=5.0, **kw)
    assert one.stats["loss_rise"][2] == 24.0 and one.stats["unstable_step"] is True
    assert "the loss rose" in one.message and "exceeds the stability limit 2/λ_max(M₀) = 1.7" in one.message
    with pytest.warns(gf.GFlowWarning, match=r"the finest solve \(step 5\): the loss rose from 0.398824 at t = 0"):
        sol = gf.simulate(net, X, y, step=20.0, error_estimate=True, **dict(kw, warn=True))
    assert sol.status == "success" and sol.stats["unstable_step"] and sol.stats["loss_rise"][2] == 24.0
    assert sol.error_estimate[0] == 0.0 and np.all(sol.error_estimate[1:] == np.inf)
    assert "no error estimate: the steps 20, 10, 5 include steps past the stability limit" in sol.message
    assert "warning: the loss rose" in sol.message


# ------------------------------------------------------------------------------------------------------------
# rounding: the same in all three solves, so step halving cannot see it (rounding_floor)


def _linear_closed_form(net, X, y, r0, times):
    """L(t) = ½ r₀ᵀ exp(−2ĉ²Gt) r₀ (EQUATIONS.md (E5)) for a linear σ."""
    G = net.gram(X).numpy()
    w, V = np.linalg.eigh(G)
    q = V.T @ r0
    c2 = float(np.mean(net.c.numpy() ** 2))
    return np.array([0.5 * np.sum(q ** 2 * np.exp(-2.0 * c2 * w * t)) for t in times])


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_step_halving_bounds_a_linear_flow_where_its_loss_reaches_float64_rounding(method):
    # a linear flow (n = 4 < d = 10) to L ≈ 5e-27 at t = 200 and 1e-52 at t = 400: the three solves round alike, so
    # their differences fell with the step while the rounding stayed — rk4 said 5.8e-3 at t = 200 where it was 6.1e-2
    # off the closed form, and 0.11 where its loss (1e-31, rounding) was 1e21 times the flow's
    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    net = gf.Network(d=10, width=16, activation="linear", seed=1)
    saveat = np.linspace(0.0, 400.0, 9)
    sol = gf.simulate(net, X, y, 400.0, saveat, method=method, step=0.5, error_estimate=True, warn=False)
    exact = _linear_closed_form(net, X, y, sol.residual[0], saveat)
    true = _true_rel(sol.loss, exact)
    assert np.all(true <= sol.error_estimate), (true, sol.error_estimate)
    assert np.isinf(sol.error_estimate[-1])  # (L = 1e-52: the computed loss is rounding)
    assert sol.error_estimate[2] < 1e-2  # (t = 100, L = 1e-14: still the truncation error's estimate)
    assert sol.config["solver"]["error_estimate"]["rounding_times"] > 0
    assert "rounding in float64" in sol.message


def test_step_halving_bounds_a_float32_run_at_its_rounding():
    # float32 to t = 200 (the flow's L = 5e-22): the loss stalls at its rounding, ≈ 1e-14, where the three solves
    # agreed: the estimate said 1.65 for a relative error of 2.4e7
    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    net = gf.Network(d=10, width=16, activation="tanh", seed=1, dtype="float32")
    ref_net = gf.Network(d=10, width=16, activation="tanh", seed=1)
    saveat = np.linspace(0.0, 200.0, 11)
    sol = gf.simulate(net, X, y, 200.0, saveat, method="euler", step=0.25, error_estimate=True, warn=False)
    ref = gf.simulate(ref_net, X, y, 200.0, saveat, method="dop853", rtol=1e-12, atol=1e-30, warn=False)
    true = _true_rel(sol.loss, ref.loss)
    assert true[-1] > 1e6  # (the case: float32's loss is rounding)
    # (from t > 0: at t = 0 the two differ by the float32 network's rounded data and weights, 1e-8, no solver's error)
    assert np.all(true[1:] <= sol.error_estimate[1:]), (true, sol.error_estimate)


def test_an_rtol_below_float32_rounding_stops_at_once_naming_the_rounding():
    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    net = gf.Network(d=10, width=16, activation="tanh", seed=1, dtype="float32")
    with pytest.warns(gf.GFlowWarning, match="loss.s rounding in float32"):
        sol = gf.simulate_nonsmooth(net, X, y, 200.0, np.linspace(0.0, 200.0, 11), method="euler", step=0.25,
                                    rtol=1e-3)
    assert sol.status == "max_steps" and "use float64" in sol.message
    assert len(sol.config["solver"]["error_estimate"]["steps"]) == 3  # (no halving on towards max_steps)


def test_rounding_floor_is_zero_at_the_start_and_inf_where_the_residual_is_rounding():
    from gflow.solve.nonsmooth import rounding_floor

    X, y = gf.data.random_labels(n=4, d=10, seed=1)
    net = gf.Network(d=10, width=16, activation="linear", seed=1)
    sol = gf.simulate(net, X, y, 1000.0, [0.0, 1.0, 1000.0], method="rk4", step=0.5, warn=False)
    floor = rounding_floor(sol)
    assert floor[0] == 0.0 and 0 < floor[1] < 1e-13 and np.isinf(floor[2])


def _rk4_residuals(net, X, y, step, times):
    """The residuals of the exact rk4 recursion of a linear-σ flow, in extended precision (numpy longdouble), at
    ``times`` (multiples of ``step``): with σ(u) = u, f = αβ Φ v for v = Wᵀc, and v̇ = −ℓαβ‖c‖² Φᵀ r is linear, so
    rk4 on W is rk4 on v — a reference that differs from a float64 rk4 run by that run's rounding alone."""
    from gflow.fields import Problem

    ld = np.longdouble
    Phi = Problem.from_data(net, X, y).Phi.numpy().astype(ld)
    c = net.c.numpy().astype(ld)
    v, yy = net.W0.numpy().astype(ld).T @ c, np.asarray(y, dtype=np.float64).astype(ld)
    ab, h = ld(net.alpha) * ld(net.beta), ld(step)
    k = ld(net.lr) * ab * (c @ c)

    def field(v):
        return -k * (Phi.T @ (ab * (Phi @ v) - yy))

    out, done = [], 0
    for t in times:
        for _ in range(round(t / step) - done):
            k1 = field(v)
            k2 = field(v + h / 2 * k1)
            k3 = field(v + h / 2 * k2)
            v = v + h / 6 * (k1 + 2 * k2 + 2 * k3 + field(v + h * k3))
        done = round(t / step)
        out.append(ab * (Phi @ v) - yy)
    return np.array(out, dtype=np.float64)


def test_rounding_floor_bounds_the_rounding_of_a_wide_ntk_flow_in_float64():
    # under "ntk" f = Σ cᵢhᵢ/√m cancels to O(1) from m terms of ĉ/√m each, and its rounding is relative to √m·ĉ, not
    # ĉ: a linear flow (m = 1024, n = 20 < d = 40) to L = 1e-25 against the exact rk4 recursion of the same steps
    # was up to 360·ε·√n·ĉ off (14.5·ε·√m·√n·ĉ), past the floor's 16·ε·√n·ĉ (it now carries |α|·m = √m)
    from gflow.solve.nonsmooth import rounding_floor

    X, y = gf.data.random_labels(n=20, d=40, seed=0)
    net = gf.Network(d=40, width=1024, activation="linear", scaling="ntk", seed=0)
    saveat = np.linspace(0.0, 400.0, 17)  # (multiples of the step: the recursion lands on them)
    for space in ("feature", "weight"):
        sol = gf.simulate(net, X, y, 400.0, saveat, method="rk4", step=0.25, space=space, integrals=False, warn=False)
        exact = 0.5 * np.sum(_rk4_residuals(net, X, y, 0.25, saveat) ** 2, axis=1)
        true, floor = _true_rel(sol.loss, exact), rounding_floor(sol)
        assert true[-1] > 1.0  # (the case: the run's loss, 1e-25, is rounding; the recursion's is 1e-27)
        assert np.all(true[1:] <= floor[1:]), (space, true, floor)


def test_rounding_floor_bounds_a_float32_ntk_run_against_float64_at_the_same_steps():
    # float32 against float64 at the same rk4 steps (benchmarks/bench_rounding.py): their losses differ by rounding
    # alone; under "ntk" that was 49·ε₃₂·√n·ĉ in the residual, past the floor's 16 (its loss error 4e-2 against a
    # floor of 5e-3 at L = 1e-11)
    from gflow.solve.nonsmooth import rounding_floor

    X, y = gf.data.random_labels(n=5, d=10, seed=28)
    saveat = np.linspace(0.0, 400.0, 41)
    runs = [gf.simulate(gf.Network(d=10, width=16, activation="linear", scaling="ntk", seed=28, dtype=dtype), X, y,
                        400.0, saveat, method="rk4", step=0.25, integrals=False, warn=False)
            for dtype in ("float64", "float32")]
    true, floor = _true_rel(runs[1].loss, runs[0].loss), rounding_floor(runs[1])
    assert np.isinf(floor[-1]) and np.all(true[1:] <= floor[1:]), (true, floor)


def test_rounding_benchmark_quick_mode_writes_json_and_the_floor_bounds_its_rounding(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rounding.py"))
    mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "rounding.json").read_text())
    assert (tmp_path / "rounding.md").exists() and data["mode"] == "quick" and len(data["runs"]) == 3
    assert not data["summary"]["under_reports"]  # (the float32 loss error ≤ the floor wherever it is finite)
    worst = data["summary"]["worst"]["all"]
    assert worst["resolved"]["ratio"] < 16 and worst["near"]["ratio"] < 16
    assert data["transfer"] and data["transfer"][0]["kind"].startswith("linear")
