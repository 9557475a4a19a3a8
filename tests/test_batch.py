"""Batched seeds (gflow.simulate_batch, gflow.gradient_descent_batch): S networks in one computation give what
S individual runs give.

GD and fixed-step methods take the same steps as the individual runs, so they must agree to rounding (the
batched products sum in another order).  Adaptive methods share one step chosen by the max-over-seeds RMS
norm, so they agree within the tolerance; with S = 1 that norm is the individual run's RMS norm and the run is
bit-identical.
"""

from __future__ import annotations

import re

import math
import warnings

import numpy as np
import pytest
import torch

import gflow as gf
from gflow.fields.batched import BatchedField

pytestmark = pytest.mark.filterwarnings("ignore:Solver .* does not support callbacks:UserWarning")

FIELDS = ("loss", "residual", "output", "H", "W_final", "test_output", "test_error", "eta", "mu", "nu",
          "lam_min_M", "lam_max_M", "dL", "feature_movement", "kernel_movement", "weight_movement",
          "int_eta", "int_mu", "int_nu", "int_lam_min_M", "int_sqrt_abs_dL", "int_abs_dL")
EMBEDDINGS = {"identity": "identity", "random_features": gf.RandomFeatures(D=7, activation="tanh")}


def _data(make_data):
    return make_data(n=6, d=4, seed=0, n_test=5)


def _nets(embedding="identity", seeds=(0, 1, 2), **kw):
    return gf.networks(seeds, d=4, width=8, embedding=EMBEDDINGS.get(embedding, embedding), **kw)


def _assert_same_run(batched: gf.Solution, single: gf.Solution, rel_err, tol: float, fields=FIELDS):
    assert batched.status == single.status
    assert batched.message == single.message
    np.testing.assert_array_equal(batched.t, single.t)
    np.testing.assert_array_equal(batched.feature_t, single.feature_t)
    for name in fields:
        a, b = getattr(batched, name), getattr(single, name)
        assert (a is None) == (b is None), name
        if b is not None:
            assert rel_err(a, b) <= tol, f"{name}: relative error {rel_err(a, b):.2e} > {tol:.1e}"


# ---------------------------------------------------------------------------------------------------------
# gradient descent and fixed-step methods: the same steps, equal to rounding


@pytest.mark.parametrize("space", ("feature", "weight"))
@pytest.mark.parametrize("embedding", tuple(EMBEDDINGS))
def test_batched_gradient_descent_equals_three_individual_runs(make_data, rel_err, eps64, space, embedding):
    X, y, Xt, yt = _data(make_data)
    nets = _nets(embedding)
    kw = dict(step=0.3, steps=60, save_every=10, X_test=Xt, y_test=yt, space=space, features_at=[0.0, 6.0, 18.0])
    gds = gf.gradient_descent_batch(nets, X, y, **kw)
    assert len(gds) == 3
    for net, gd in zip(nets, gds):
        single = gf.gradient_descent(net, X, y, **kw)
        _assert_same_run(gd, single, rel_err, 1e4 * eps64)
        assert gd.stats["n_steps"] == single.stats["n_steps"] == 60
        assert gd.config["network"] == single.config["network"]
        assert gd.config["solver"]["batch"]["size"] == 3
    # seeds really differ (a batch that repeated seed 0 would pass the comparison above trivially)
    assert abs(gds[0].loss[-1] - gds[1].loss[-1]) > 1e-6


def test_random_feature_networks_have_one_gram_each_and_identity_networks_share_one(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    for embedding, shared in (("identity", True), ("random_features", False)):
        fields = [gf.make_field(gf.Problem.from_data(net, X, y), "feature") for net in _nets(embedding)]
        assert BatchedField(fields).shared_gram is shared


@pytest.mark.parametrize("integrals", (True, False))
@pytest.mark.parametrize("space, layout", (("feature", "nm"), ("feature", "mn"), ("weight", "nm")))
def test_batched_field_is_the_stack_of_the_individual_fields_for_every_seed_grouping(make_data, eps64, space,
                                                                                    layout, integrals):
    from gflow.solve.ode import observed_field

    X, y = make_data(n=6, d=4, seed=0)
    fields = [observed_field(gf.make_field(gf.Problem.from_data(net, X, y), space, layout=layout), (-1.0, 1.0),
                             integrals) for net in _nets("random_features", seeds=range(5))]
    assert BatchedField(fields).layout == (layout if space == "feature" else None)
    expected = torch.stack([f(0.0, f.initial_state()).reshape(-1) for f in fields])
    for chunk_size, per_seed_mm in ((None, True), (1, True), (2, True), (5, True), (2, False), (5, False)):
        bf = BatchedField(fields, chunk_size=chunk_size)
        bf._per_seed_mm = per_seed_mm  # False: the batched-product path that a GPU takes
        state = bf.initial_state()
        out, dL = bf.rhs(state)
        assert out.shape == bf.state_shape == (5, bf.L)
        scale = expected.abs().amax(dim=1, keepdim=True)
        assert float(((out - expected).abs() / scale).max()) <= 1e3 * eps64
        for s, f in enumerate(fields):
            core = f.core(f.initial_state()) if integrals else f.initial_state()
            base = f.base if integrals else f
            base.keep_parts = True  # L̇ itself, not only the finiteness witness
            parts = base.rhs_into(core, torch.empty_like(core))
            assert float(dL[s]) == pytest.approx(float(parts.dL), rel=1e3 * eps64)
    with pytest.raises(ValueError, match="chunk_size"):
        BatchedField(fields, chunk_size=0)


@pytest.mark.parametrize("space", ("feature", "weight"))
def test_batched_rk4_equals_individual_rk4_runs(make_data, rel_err, eps64, space):
    X, y, Xt, yt = _data(make_data)
    nets = _nets("random_features")
    kw = dict(t1=3.0, saveat=[0.0, 1.0, 3.0], method="rk4", step=0.1, X_test=Xt, y_test=yt, space=space)
    for net, sol in zip(nets, gf.simulate_batch(nets, X, y, **kw)):
        single = gf.simulate(net, X, y, **kw)
        _assert_same_run(sol, single, rel_err, 1e4 * eps64)
        assert sol.stats["n_accepted"] == single.stats["n_accepted"]


def test_gradient_descent_of_one_diverging_seed_marks_it_diverged_and_the_others_finish(make_data, rel_err, eps64):
    # linear σ: M = ĉ²G, so ĉ = 10 puts δλ_max(M) = 100× that of ĉ = 1 far past 2 while ĉ = 1 stays stable
    X, y = gf.data.random_labels(n=10, d=5, seed=0)
    nets = [gf.Network(d=5, width=16, activation="linear", seed=s, c_hat=ch) for s, ch in [(0, 1.0), (1, 10.0),
                                                                                           (2, 1.0)]]
    kw = dict(step=0.1, steps=400, save_every=10, X_test=X[:3], y_test=y[:3])
    with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\].*\[diverged\]"):
        gds = gf.gradient_descent_batch(nets, X, y, **kw)
    assert [g.status for g in gds] == ["success", "diverged", "success"]
    assert gds[1].t[-1] < 40.0 and np.all(np.isfinite(gds[1].loss)) and np.all(np.isfinite(gds[1].W_final))
    for net, gd in zip(nets, gds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gf.GFlowWarning)
            single = gf.gradient_descent(net, X, y, **kw)
        _assert_same_run(gd, single, rel_err, 1e4 * eps64)
        assert gd.stats["n_steps"] == single.stats["n_steps"]


def test_a_gd_batch_seed_made_non_finite_by_its_activation_stops_as_its_own_run(rel_err, eps64):
    # regression: each seed's own run said "nonfinite: σ or σ′ of the activation 'sqrt' returned non-finite values
    # at finite features ... the activation, not the step"; the batch said "diverged ... the step δ = 0.05 is far past
    # the stability limit; use a smaller step" (σ = √(u + 4) is NaN below −4, which the features reach at step 2 or 3)
    sq = gf.Activation("sqrt", lambda u: torch.sqrt(u + 4.0), lambda u: 0.5 / torch.sqrt(u + 4.0), lipschitz=10.0,
                       interval=(-1.0, 1.0))
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    nets = gf.networks((0, 1), d=4, width=16, activation=sq)
    kw = dict(step=0.05, steps=1000, save_every=10, warn=False)
    gds = gf.gradient_descent_batch(nets, X, 30 * np.sign(y), **kw)
    assert [g.status for g in gds] == ["nonfinite", "nonfinite"]
    for net, gd in zip(nets, gds):
        single = gf.gradient_descent(net, X, 30 * np.sign(y), **kw)
        assert "the activation, not the step" in gd.message and gd.t[-1] > 0.0  # (its last finite iterate, kept)
        _assert_same_run(gd, single, rel_err, 1e4 * eps64)


def test_a_gd_batch_seed_that_diverges_between_saved_steps_ends_as_its_own_run(rel_err, eps64):
    # regression: non-finite values were seen at saved steps only: the diverging seed ended at t = [0] with
    # save_every=100 ("between steps 0 and 100") where its step 1 was finite; now at its last iterate before the
    # blow-up (as its own run, and as saving every step), frozen there while the others go on
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    nets = [gf.Network(d=4, width=16, activation="linear", seed=s, c_hat=ch) for s, ch in [(0, 1.0), (1, 0.01)]]
    kw = dict(step=10.0, steps=200, warn=False)
    gds = gf.gradient_descent_batch(nets, 10.0 * X, y, save_every=100, **kw)
    assert [g.status for g in gds] == ["diverged", "success"] and gds[1].t.tolist() == [0.0, 1000.0, 2000.0]
    assert gds[0].t.tolist() == [0.0, 10.0] and "step 1 (t = 10)" in gds[0].message
    every = gf.gradient_descent(nets[0], 10.0 * X, y, save_every=1, **kw)
    for net, gd in zip(nets, gds):
        _assert_same_run(gd, gf.gradient_descent(net, 10.0 * X, y, save_every=100, **kw), rel_err, 1e4 * eps64)
    _assert_same_run(gds[0], every, rel_err, 1e4 * eps64)  # W_final and H[-1]: those of step 1


# ---------------------------------------------------------------------------------------------------------
# adaptive methods: one shared step, every seed within tolerance


@pytest.mark.parametrize("method", ("dop853", "dopri5", "torchdiffeq.dopri5", "DOP853"))
def test_batched_adaptive_flow_matches_individual_runs_within_the_tolerance(make_data, rel_err, method):
    X, y, Xt, yt = _data(make_data)
    nets = _nets("random_features")
    rtol, atol = 1e-8, 1e-10
    kw = dict(t1=20.0, saveat=[0.0, 2.0, 20.0], method=method, X_test=Xt, y_test=yt)
    sols = gf.simulate_batch(nets, X, y, rtol=rtol, atol=atol, **kw)
    for net, sol in zip(nets, sols):
        ref = gf.simulate(net, X, y, rtol=1e-12, atol=1e-14, **kw)
        single = gf.simulate(net, X, y, rtol=rtol, atol=atol, **kw)
        err_batch = rel_err(sol.loss, ref.loss)
        err_single = rel_err(single.loss, ref.loss)
        # within the tolerance (a 100x margin for accumulation), and not much worse than the seed's own run
        assert err_batch <= 1e2 * rtol
        assert err_batch <= 10 * err_single + 1e-2 * rtol
        for name in ("H", "W_final", "test_error", "int_abs_dL"):
            assert rel_err(getattr(sol, name), getattr(ref, name)) <= 1e3 * rtol, name
        batch = sol.config["solver"]["batch"]
        assert "every seed" in batch["reason"] or "per-seed" in batch["reason"]
    if method == "DOP853":
        assert sols[0].config["solver"]["batch"]["rtol_used"] == pytest.approx(rtol / math.sqrt(3))
    else:
        assert sum(s.config["solver"]["batch"]["limiting_share"] for s in sols) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ("dop853", "dopri5", "torchdiffeq.dopri5"))
def test_a_batch_of_one_is_bit_identical_to_the_individual_adaptive_run(make_data, method):
    X, y, Xt, yt = _data(make_data)
    net = _nets("random_features", seeds=(4,))[0]
    kw = dict(t1=20.0, saveat=[0.0, 2.0, 20.0], rtol=1e-7, atol=1e-9, X_test=Xt, y_test=yt, space="weight",
              method=method)
    (sol,) = gf.simulate_batch([net], X, y, **kw)
    single = gf.simulate(net, X, y, **kw)
    assert sol.stats["n_accepted"] == single.stats["n_accepted"]
    assert sol.stats["n_rejected"] == single.stats["n_rejected"]
    np.testing.assert_allclose(sol.loss, single.loss, rtol=1e-13, atol=0)


def test_max_seed_rms_norm_is_the_worst_seed_rms_and_reduces_to_rms_for_one_seed():
    from torchdiffeq._impl.misc import _rms_norm

    g = torch.Generator().manual_seed(0)
    e = torch.randn(4, 2, 5, 3, generator=g, dtype=torch.float64)
    e[2] *= 100.0  # one seed with a large error is not diluted by the others
    norm = gf.max_seed_rms_norm(e.shape)
    expected = max(float(_rms_norm(e[s])) for s in range(4))
    assert float(norm(e)) == pytest.approx(expected, rel=1e-14)
    assert float(norm(e)) > 1.9 * float(_rms_norm(e))  # the global RMS would be ≈ 100/√4 = 50, not ≈ 100
    assert norm.limiting.tolist() == [0, 0, 2, 0]
    one = gf.max_seed_rms_norm((1, 7))
    x = torch.randn(1, 7, generator=g, dtype=torch.float64)
    assert float(one(x)) == pytest.approx(float(_rms_norm(x)), rel=1e-15)


def _alone(nets, X, y, **kw) -> list:
    """Each network's own gf.simulate run (its warnings silenced: the batch's are what the tests check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gf.GFlowWarning)
        return [gf.simulate(net, X, y, **kw) for net in nets]


def _tanh_nan_beyond_2() -> gf.Activation:
    """tanh that is NaN where |u| > 2 (from after construction on: gf.Activation checks σ′ against σ on [−3, 3])."""
    limit = [math.inf]

    def sigma(u):
        return torch.where(u.abs() > limit[0], torch.full_like(u, float("nan")), torch.tanh(u))

    def dsigma(u):
        return torch.where(u.abs() > limit[0], torch.full_like(u, float("nan")), 1.0 - torch.tanh(u) ** 2)

    act = gf.Activation("tanh_nan_beyond_2", sigma, dsigma, 1.0, (-1.0, 1.0), K=0.4)
    limit[0] = 2.0
    return act


def test_a_non_finite_adaptive_batch_stops_every_seed_with_its_partial_trajectory(make_data):
    # tanh that is NaN beyond |u| > 2: the field turns NaN once a feature of some seed grows there
    act = _tanh_nan_beyond_2()
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    nets = gf.networks((0, 2), d=4, width=6, c_hat=3.0, activation=act)  # max |H(0)| = 1.55, 1.22; |H| > 2 at t ≈ 4
    with pytest.warns(gf.GFlowWarning, match=r"all 2 seeds \[nonfinite\]"):
        sols = gf.simulate_batch(nets, X, y, t1=10.0, saveat=np.linspace(0, 10, 41))
    for sol in sols:
        assert sol.status == "nonfinite" and "non-finite" in sol.message
        assert 5 <= len(sol.t) < 41 and np.all(np.isfinite(sol.loss)) and np.all(np.isfinite(sol.W_final))
        assert sol.loss[-1] < sol.loss[0]
    assert len({s.t[-1] for s in sols}) == 1


# ---------------------------------------------------------------------------------------------------------
# input checks, dtype, files


def test_incompatible_networks_are_rejected_naming_the_index(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    good = _nets()
    cases = [
        (good[:2] + [gf.Network(d=4, width=10, seed=2)], ValueError, r"nets\[2\] has width m 10 but nets\[0\] has 8"),
        ([good[0], gf.Network(d=4, width=8, activation="relu")], ValueError, r"nets\[1\] has activation"),
        ([good[0], gf.Network(d=4, width=8, scaling="mf")], ValueError, r"nets\[1\] has scaling 'mf'"),
        ([good[0], gf.Network(d=4, width=8, embedding="quadratic")], ValueError, r"nets\[1\] has embedding dim"),
        ([good[0], good[1].to(dtype=torch.float32)], ValueError, r"nets\[1\] has dtype"),
        ([good[0], "net"], TypeError, r"nets\[1\] must be a gf.Network, got str"),
        (good[0], TypeError, r"single Network"),
        ([], ValueError, r"nets is empty"),
    ]
    for nets, exc, match in cases:
        with pytest.raises(exc, match=match):
            gf.gradient_descent_batch(nets, X, y, steps=2)
        with pytest.raises(exc, match=match):
            gf.simulate_batch(nets, X, y, t1=1.0)


def test_bad_solver_arguments_are_rejected(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    with pytest.raises(ValueError, match=r"'Radau' is not available for batched seeds"):
        gf.simulate_batch(_nets(), X, y, t1=1.0, method="Radau")
    for method in ("exprk4", "dop853+exprk4", "filippov"):  # one network's linearizations / events
        with pytest.raises(ValueError, match=rf"'{re.escape(method)}' is not available for batched seeds"):
            gf.simulate_batch(_nets(), X, y, t1=1.0, method=method)
    with pytest.raises(ValueError, match=r"needs an explicit step"):
        gf.simulate_batch(_nets(), X, y, t1=1.0, method="rk4")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['norm'\]"):
        gf.simulate_batch(_nets(), X, y, t1=1.0, options={"norm": None})
    with pytest.raises(TypeError, match=r"do not pass seed="):
        gf.networks(range(2), d=4, width=8, seed=3)
    with pytest.raises(TypeError, match=r"seeds must be an iterable"):
        gf.networks(3, d=4, width=8)


def test_method_auto_picks_what_simulate_picks_where_the_batch_can_run_it(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    nets = _nets()
    for rtol, want in ((1e-7, "dop853"), (1e-3, "dopri5")):
        sols = gf.simulate_batch(nets, X, y, t1=1.0, method="auto", rtol=rtol)
        single = gf.simulate(nets[0], X, y, t1=1.0, rtol=rtol)
        assert single.config["solver"]["method"] == want
        for sol in sols:
            assert sol.ok and sol.config["solver"]["method"] == want
            assert sol.config["solver"]["auto"] == single.config["solver"]["auto"]
    # a long, stiff horizon: gf.simulate picks dop853+exprk4, the batch its explicit part (max_steps: stop early)
    assert gf.simulate_batch.__kwdefaults__["method"] == "dop853"
    sols = gf.simulate_batch(nets, X, y, t1=1e4, method="auto", max_steps=5, warn=False)
    assert sols[0].config["solver"]["method"] == "dop853"
    assert "'dop853+exprk4' is not available for batched seeds" in sols[0].config["solver"]["auto"]


def test_method_auto_refuses_a_kinked_activation_and_names_the_way_out(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    for activation in ("relu", "leaky_relu"):
        with pytest.raises(ValueError, match=r"method='auto' is not available for a batch .* kink.*"
                                             r"run the seeds separately with gf\.simulate"):
            gf.simulate_batch(_nets(activation=activation), X, y, t1=1.0, method="auto")
    with pytest.raises(ValueError, match=r"step=0.1 was given with method='auto'"):
        gf.simulate_batch(_nets(), X, y, t1=1.0, method="auto", step=0.1)



def test_a_kinked_activation_s_batch_refuses_adaptive_methods_and_names_ways_that_run():
    # (a usability audit: the default dop853 ran a ReLU batch to a stall whose advice — error_estimate=True,
    # filippov, sliding — the batch refuses, and refusing filippov it advised dop853)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    nets = _nets(activation="relu")
    for method in ("dop853", "dopri5", "DOP853"):
        with pytest.raises(ValueError, match=rf"method '{method}' is adaptive, and the activation 'relu' has a kink"
                                             r".*method='euler' or 'rk4' with a step here.*gradient_descent_batch"):
            gf.simulate_batch(nets, X, y, t1=1.0, method=method)
    with pytest.raises(ValueError, match=r"'filippov' is not available for batched seeds.*'rk4' with a step") as info:
        gf.simulate_batch(nets, X, y, t1=1.0, method="filippov")
    assert "dop853" not in str(info.value)
    for sol in gf.simulate_batch(nets, X, y, t1=1.0, method="rk4", step=0.05):  # the way named first runs
        assert sol.ok


def test_float32_batches_agree_with_float32_individual_runs(make_data, rel_err):
    X, y, Xt, yt = _data(make_data)
    nets = _nets(dtype=torch.float32)
    eps32 = float(torch.finfo(torch.float32).eps)
    kw = dict(step=0.3, steps=40, save_every=10, X_test=Xt, y_test=yt)
    for net, gd in zip(nets, gf.gradient_descent_batch(nets, X, y, **kw)):
        _assert_same_run(gd, gf.gradient_descent(net, X, y, **kw), rel_err, 1e3 * eps32,
                         fields=("loss", "H", "W_final", "test_error"))
    sols = gf.simulate_batch(nets, X, y, t1=5.0, saveat=[0.0, 5.0], rtol=1e-5, atol=1e-6)
    ref = gf.simulate_batch(_nets(), X, y, t1=5.0, saveat=[0.0, 5.0], rtol=1e-10, atol=1e-12)
    for sol, r in zip(sols, ref):
        assert sol.ok and rel_err(sol.loss, r.loss) <= 1e-3


def test_a_batched_solution_saves_loads_and_reruns_as_its_individual_run(make_data, tmp_path, rel_err, eps64):
    X, y = make_data(n=6, d=4, seed=0)
    gd = gf.gradient_descent_batch(_nets("random_features"), X, y, step=0.3, steps=20, save_every=5)[1]
    path = tmp_path / "seed1.nc"
    gd.save(path)
    back = gf.load(path)
    assert back.config["solver"]["batch"] == gd.config["solver"]["batch"]
    assert back.config["network"]["seed"] == 1
    again = gf.rerun(path)
    assert rel_err(again.loss, gd.loss) <= 1e4 * eps64


def test_batch_benchmark_quick_mode_writes_json(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_batch.py"))
    out = tmp_path / "b.json"
    mod["main"](["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert {r["solver"] for r in data["results"]} == {"gd", "dopri5", "dopri5-bare", "DOP853", "rk4"}
    for r in data["results"]:
        assert r["separate_s"] > 0 and r["batched_s"] > 0 and r["status"] == ["success"]
        assert r["loss_rel_diff"] < 1e-5


def test_a_tiny_wall_time_budget_stops_every_seed_with_status_time_budget(make_data):
    X, y = make_data(n=6, d=4, seed=0)
    with pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        gds = gf.gradient_descent_batch(_nets(), X, y, steps=10_000, max_wall_time=1e-9)
    with pytest.warns(gf.GFlowWarning, match=r"\[time_budget\]"):
        sols = gf.simulate_batch(_nets(), X, y, t1=1e4, max_wall_time=1e-9)
    for sol in gds + sols:
        assert sol.status == "time_budget" and "max_wall_time" in sol.message
        assert len(sol.t) >= 1 and sol.t[0] == 0.0 and np.all(np.isfinite(sol.W_final))


def test_rerun_of_an_adaptive_batch_seed_says_it_repeats_the_seed_alone():
    # (a new-user audit: the rerun differed by 2.3e-8 from the batch member, with no word; its steps are its own)
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    sols = gf.simulate_batch(gf.networks([0, 1], d=4, width=16), X, y, t1=5.0)
    again = gf.rerun(sols[1])
    assert "rerun alone of one seed of an adaptive simulate_batch run" in again.message
    np.testing.assert_allclose(again.loss, sols[1].loss, rtol=1e-5)
    alone = gf.simulate(gf.Network(d=4, width=16, seed=1), X, y, t1=5.0)
    assert "simulate_batch" not in gf.rerun(alone).message


def _unstable_middle_seed():
    # linear σ, the middle seed's output weights 3× (λ_max(M) 9×): euler at step 0.5 is unstable for it alone
    X, y = gf.data.random_labels(n=6, d=4, seed=0)
    c0 = np.asarray(gf.Network(d=4, width=16, activation="linear", seed=0).c)
    nets = [gf.Network(d=4, width=16, activation="linear", seed=s, c=c0 * k) for s, k in enumerate([1.0, 3.0, 1.0])]
    return nets, X, y


@pytest.mark.parametrize("method", ("euler", "torchdiffeq.euler"))
def test_a_fixed_step_batch_freezes_a_diverging_seed_and_the_others_finish_as_alone(rel_err, eps64, method):
    # (an audit: one diverging seed stopped the batch at t = 2.5 and every healthy seed was reported "diverged")
    nets, X, y = _unstable_middle_seed()
    kw = dict(t1=40.0, saveat=np.linspace(0.0, 40.0, 41), method=method, step=0.5, X_test=X[:3], y_test=y[:3])
    with pytest.warns(gf.GFlowWarning, match=r"seed indices \[1\] stopped early \[diverged\]"):
        sols = gf.simulate_batch(nets, X, y, **kw)
    assert [s.status for s in sols] == ["success", "diverged", "success"]
    for sol, single in zip(sols, _alone(nets, X, y, **kw)):
        _assert_same_run(sol, single, rel_err, 1e4 * eps64)
        np.testing.assert_array_equal(sol.weight_t, single.weight_t)
        for key in ("n_f_evals", "n_steps", "n_accepted", "last_step"):
            assert sol.stats[key] == single.stats[key], key


def test_the_batch_stop_names_the_stiff_seed_that_held_the_shared_steps():
    # (an audit: the seed with the largest error at the last norm evaluation was named, here seed index 0, but
    # dop853's steps were held by the stability guard for the stiff seed index 1)
    nets, X, y = _unstable_middle_seed()
    with pytest.warns(gf.GFlowWarning, match=r"max_steps"):
        sols = gf.simulate_batch(nets, X, y, t1=50.0, method="dop853", integrals=False, max_steps=20)
    assert sols[0].status == "max_steps"
    assert "limited by seed index 1 (network seed 1): its Jacobian's spectral radius" in sols[0].message


@pytest.mark.parametrize("method", ("dop853", "torchdiffeq.dopri5", "RK45"))
def test_an_adaptive_batch_made_non_finite_by_its_activation_names_the_activation(method):
    # regression: the seed's own run says σ or σ′ is the cause; the batch said "check the data scale, or try a
    # different method (e.g. method='dop853+exprk4' ...)" — advice for a solver fault, and a method it refuses
    act = _tanh_nan_beyond_2()
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    nets = gf.networks((0, 2), d=4, width=6, c_hat=3.0, activation=act)  # |H| > 2 at t ≈ 4
    sols = gf.simulate_batch(nets, X, y, t1=10.0, saveat=np.linspace(0, 10, 41), method=method, warn=False)
    for sol in sols:
        assert sol.status == "nonfinite" and "which stops every seed" in sol.message
        assert "the activation, not the solver or the data scale" in sol.message
        assert "exprk4" not in sol.message and 5 <= len(sol.t) < 41 and np.all(np.isfinite(sol.loss))


@pytest.mark.parametrize("max_steps", [50, 400])
def test_a_stopped_adaptive_batch_sends_the_methods_it_refuses_to_gf_simulate(max_steps):
    # regression: a batch stalled at a long horizon (or stopped by max_steps) was told to "use
    # method='dop853+exprk4'", which simulate_batch refuses; it now says to run it per network with gf.simulate
    X, y = gf.data.random_labels(n=20, d=10, seed=0)
    nets = gf.networks(range(2), d=10, width=32, activation="tanh")
    sols = gf.simulate_batch(nets, X, y, t1=1e5, max_steps=max_steps, warn=False)
    for sol in sols:
        assert sol.status in ("max_steps", "stalled")
        refused = [w for w in ("exprk4", "'filippov'", "'sliding'", "error_estimate") if w in sol.message]
        assert refused and "run " in sol.message and "per network with gf.simulate" in sol.message
        for method in re.findall(r"method='([a-z0-9+]+)'", sol.message):
            if method in ("dop853+exprk4", "filippov", "sliding"):
                with pytest.raises(ValueError, match="not available for batched seeds"):
                    gf.simulate_batch(nets, X, y, t1=1.0, method=method, **({"step": 0.1} if method == "sliding"
                                                                            else {}))


def test_a_gd_batch_reports_each_seeds_own_evaluation_count():
    # (an audit: the batch's 400 evaluations were reported for a seed that diverged after 7 steps)
    nets, X, y = _unstable_middle_seed()
    with pytest.warns(gf.GFlowWarning, match=r"diverged"):
        gds = gf.gradient_descent_batch(nets, X, y, step=0.5, steps=400, save_every=7)
    with pytest.warns(gf.GFlowWarning, match=r"diverged"):
        single = gf.gradient_descent(nets[1], X, y, step=0.5, steps=400, save_every=7)
    assert gds[1].stats["n_f_evals"] == single.stats["n_f_evals"] == 7
    assert gds[0].stats["n_f_evals"] == 400


@pytest.mark.parametrize("method", ("rk4", "torchdiffeq.rk4"))
def test_a_fixed_step_batch_freezes_a_non_finite_seed_as_its_own_run_stops(rel_err, eps64, method):
    act = _tanh_nan_beyond_2()
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    nets = [gf.Network(d=4, width=6, c_hat=ch, activation=act, seed=s) for s, ch in [(0, 3.0), (2, 1.0), (2, 3.0)]]
    kw = dict(t1=10.0, saveat=np.linspace(0, 10, 41), method=method, step=0.05)
    with pytest.warns(gf.GFlowWarning, match=r"seed indices \[0, 2\] stopped early \[nonfinite\]"):
        sols = gf.simulate_batch(nets, X, y, **kw)
    assert [s.status for s in sols] == ["nonfinite", "success", "nonfinite"]
    for sol, single in zip(sols, _alone(nets, X, y, **kw)):
        _assert_same_run(sol, single, rel_err, 1e4 * eps64, fields=("loss", "H", "W_final", "lam_min_M"))
        assert sol.stats["n_f_evals"] == single.stats["n_f_evals"]


@pytest.mark.parametrize("kind", ["euler", "gd"])
def test_the_progress_bar_goes_on_after_seed_0_is_frozen(kind, monkeypatch):
    # (a review: the bar advanced with seed 0's records only, so it stood at t = 2.5 of 40 once seed 0 diverged)
    from gflow.solve import _record

    moves = []
    real = _record.Recorder.attach_progress

    def attach(self, progress, t1, desc):
        real(self, progress, t1, desc)
        if self.bar is not None:
            update = self.bar.update
            self.bar.update = lambda dt: moves.append(dt) or update(dt)

    monkeypatch.setattr(_record.Recorder, "attach_progress", attach)
    nets, X, y = _unstable_middle_seed()
    nets = [nets[1], nets[0], nets[2]]  # (the diverging seed first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gf.GFlowWarning)
        if kind == "euler":
            sols = gf.simulate_batch(nets, X, y, t1=40.0, saveat=np.linspace(0.0, 40.0, 41), method="euler",
                                     step=0.5, progress=True)
        else:
            sols = gf.gradient_descent_batch(nets, X, y, step=0.5, steps=80, save_every=2, progress=True)
    assert [s.status for s in sols] == ["diverged", "success", "success"]
    assert sum(moves) == pytest.approx(40.0)
