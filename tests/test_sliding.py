"""method="sliding": fixed-step time-stepping of the Filippov flow of ReLU / leaky-ReLU nets (gflow/solve/sliding.py).

Checked against exact solutions (n = 1, EQUATIONS.md §5.4; the one-neuron problem with one sliding pair) for its
second order, against the event-driven ``method="filippov"`` on random P-3L problems (and against GD at the
same step), for the exact W/H relation and the sliding invariant h = 0, for its error estimate by step halving,
and for bad input and budgets.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_filippov import _estimate_case, _p3l, _p3l_reference
from test_nonsmooth import _loss, _one_point, _sliding_problem
from test_nonsmooth import _true_rel as _rel

import gflow as gf
from gflow.fields import Problem
from gflow.model.activations import _cpu_vendor

#: Three regression cases below came from differential fuzzes on an Intel Xeon, where the step sequence met the
#: situation each one fixes.  Which events a step sequence meets on these rank-deficient shallow problems depends on
#: the rounding of the BLAS products (MKL takes other kernels on AMD CPUs): on an AMD EPYC (Zen 5) the same runs
#: do not meet it (the trigger assertions are then only checked on an AVX-512 Intel CPU with MKL, the fuzz's), or
#: meet another, known weakness of "sliding" on rank-deficient G (a neuron passing near w_i = 0;
#: benchmarks/results/fuzz_relu/summary.md)
ROUNDING_OF_THE_FUZZ = (_cpu_vendor() == "GenuineIntel" and torch.backends.mkl.is_available()
                        and torch.backends.cpu.get_cpu_capability().startswith("AVX512"))


def _order(errs):
    errs = np.asarray(errs)
    return np.log2(errs[:-1] / errs[1:])


@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_one_point_exact_solution_at_second_order(slope):
    # neurons reach the kink and stop there (ReLU) or cross it (leaky): both handled without locating the event
    T = np.linspace(0.0, 10.0, 11)
    net, X, y, L, H = _one_point(slope, T)
    errs = []
    for step in (0.1, 0.05, 0.025):
        sol = gf.simulate(net, X, y, 10.0, T, method="sliding", step=step, features_at="all")
        assert sol.ok, sol.message
        errs.append(np.max(_rel(sol.loss, L)))
        assert np.max(np.abs(sol.H[:, :, 0] - H)) < 0.02 * step
    # measured 4.6e-5, 1.3e-5, 3.3e-6 (ReLU) and 2.5e-4, 6.0e-5, 1.5e-5 (leaky); GD at these steps: 1.7e-2 … 4e-2
    assert np.all(_order(errs) > 1.7)
    assert errs[-1] < 3e-5
    gd = gf.gradient_descent(net, X, y, step=0.025, steps=400, save_every=40, integrals=False)
    assert np.max(_rel(gd.loss, L)) > 100 * errs[-1]
    assert sol.stats["n_arrivals"] + sol.stats["n_crossings"] > 0


def test_exact_sliding_solution_second_order_and_the_pair_stays_at_zero():
    net, X, y, _, t_star, filippov, frozen = _sliding_problem()
    T = np.linspace(0.0, 3 * t_star, 13)
    L = _loss(filippov(T))
    errs = []
    for step in (0.1, 0.05, 0.025):
        sol = gf.simulate(net, X, y, T[-1], T, method="sliding", step=step, features_at="all")
        assert sol.ok, sol.message
        errs.append(np.max(_rel(sol.loss, L)))
        after = sol.feature_t > t_star + step
        assert np.all(sol.H[after][:, 0, 0] == 0.0)          # exactly on the kink, no chatter
        assert sol.stats["n_sliding"] == 1 and sol.stats["n_arrivals"] == 1
    assert np.all(_order(errs) > 1.7)                          # measured 5.1e-4, 1.2e-4, 3.0e-5
    assert np.max(_rel(sol.loss, _loss(frozen(T)))) > 1e-2    # the σ′(0) = 0 "solution" is far off


@pytest.mark.parametrize("act", ["relu", "leaky"])
def test_converges_to_the_event_driven_flow_far_ahead_of_gd(act):
    net, X, y, T, ref = _p3l_reference(act)
    assert ref.ok and ref.stats["n_events"] > 100
    errs = []
    for step in (0.1, 0.025):
        sol = gf.simulate(net, X, y, 20.0, T, method="sliding", step=step)
        assert sol.ok
        errs.append(np.max(_rel(sol.loss, ref.loss)))
        gd = gf.gradient_descent(net, X, y, step=step, steps=round(20 / step), save_every=round(5 / step),
                                 integrals=False)
        assert np.max(_rel(gd.loss, ref.loss)) > 5 * errs[-1]   # measured 9× (ReLU, 0.1) … 360× (leaky, 0.025)
    # measured: ReLU 1.6e-4 → 7.1e-6, leaky 9.9e-6 → 1.3e-6
    assert errs[1] < 0.2 * errs[0] and errs[1] < 2e-5
    assert sol.stats["n_crossings"] > 10 and sol.stats["n_arrivals"] > 10


def _dense_events(seed):
    """A P-3L ReLU net with dense activation events (m = D = 48, n = 16; ≈ 100 crossings per unit time), and its
    features at t = 3 from ``filippov`` at rtol 1e-10."""
    X, y = gf.data.wei2019(n=16, d=20, seed=seed)
    net = gf.Network(20, width=48, activation="relu", embedding=gf.RandomFeatures(D=48, seed=seed), seed=seed)
    ref = gf.simulate(net, X, y, 3.0, [0.0, 3.0], method="filippov", rtol=1e-10, features_at=[3.0], integrals=False)
    return net, X, y, ref.features_at(3.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_features_converge_to_filippovs_where_a_neurons_events_crowd_into_one_step(seed):
    # Several changes of mode of one neuron in one step were classified together: a late arrival, judged against an
    # earlier one held on the kink that in fact crossed it, was turned back, arrived again and was pinned at h = 0 for
    # the rest of the step (an O(δ) error per pin); an exit that a crossing in its neuron caused was released at the
    # step's start, and one found at the step's end only at the next step (late by up to a step).  Before: max|ΔH| at
    # t = 3 of 8.0e-2, 8.3e-4, 2.0e-4 (seed 0) and 1.1e-3, 3.3e-3, 4.8e-5 (seed 1) at δ = 1/16, 1/32, 1/64; now
    # 3.8e-4, 1.3e-4, 1.9e-5 and 6.4e-4, 1.7e-4, 4.7e-5
    net, X, y, H_ref = _dense_events(seed)
    errs = []
    for step in (1 / 16, 1 / 32, 1 / 64):
        sol = gf.simulate(net, X, y, 3.0, [0.0, 3.0], method="sliding", step=step, features_at=[3.0],
                          integrals=False)
        assert sol.ok
        errs.append(float(np.abs(sol.features_at(3.0) - H_ref).max()))
    assert errs[0] < 1e-3 and errs[1] < errs[0] and errs[2] < 0.5 * errs[1], errs


def test_output_times_change_the_trajectory_by_no_more_than_the_steps_error():
    # output times cut the steps; a cut step sequence met the crowded changes above where another did not: at
    # δ = 1/32 the features at t = 3 were 8.0e-2 off filippov's with outputs every 1/16 and 8.3e-4 off with none
    # (now 6.7e-5 and 1.3e-4)
    net, X, y, H_ref = _dense_events(0)
    runs = [gf.simulate(net, X, y, 3.0, [0.0, 3.0], method="sliding", step=1 / 32, features_at=fa, integrals=False)
            for fa in ([3.0], list(np.arange(1, 49) / 16))]
    errs = [float(np.abs(sol.features_at(3.0) - H_ref).max()) for sol in runs]
    assert max(errs) < 3e-4, errs
    assert float(np.abs(runs[0].features_at(3.0) - runs[1].features_at(3.0)).max()) < 3e-4


def test_loss_never_increases_weights_reproduce_features_and_sliding_pairs_sit_on_the_kink():
    net, X, y = _p3l(m=40, n=10)
    T = np.linspace(0.0, 15.0, 31)
    sol = gf.simulate(net, X, y, 15.0, T, method="sliding", step=0.05, features_at="all")
    assert sol.ok
    assert np.all(np.diff(sol.loss) <= 1e-12 * sol.loss[0])
    pb = Problem.from_data(net, X, y)
    W = torch.as_tensor(sol.W_final)
    np.testing.assert_allclose((net.beta * (W @ pb.Phi.T)).numpy(), sol.H[-1], atol=1e-10)
    assert sol.stats["n_sliding"] > 0 and int((sol.H[-1] == 0).sum()) >= sol.stats["n_sliding"]
    cfg = sol.config["solver"]
    assert cfg["integrals"] is False and sol.config["space"] == "feature" and cfg["backend"] == "gflow"
    assert cfg["step"] == 0.05 and sol.stats["max_step"] == pytest.approx(0.05)
    assert sol.stats["min_step"] == pytest.approx(0.05 / 64)      # the ramp: the event rate is unknown at t = 0
    fixed = gf.simulate(net, X, y, 15.0, T, method="sliding", step=0.05, options={"event_rate": float("inf")})
    assert fixed.stats["n_accepted"] == 300 and fixed.stats["min_step"] == pytest.approx(0.05)


def test_steps_shrink_with_the_event_rate_and_scale_with_the_step():
    # δ·min(1, ν/ρ): halving δ halves every step (a uniform refinement, what step halving assumes); a smaller ν
    # (mode changes per unit time at which steps start to shrink) takes more steps where events are dense
    net, X, y = _p3l(m=64, n=16)
    runs = {(d, nu): gf.simulate(net, X, y, 10.0, [0.0, 10.0], method="sliding", step=d, options={"event_rate": nu})
            for d in (0.1, 0.05) for nu in (64.0, 4.0)}
    ratio = {nu: runs[0.05, nu].stats["n_accepted"] / runs[0.1, nu].stats["n_accepted"] for nu in (64.0, 4.0)}
    assert 1.8 < ratio[64.0] < 2.2    # measured 1.96
    assert 1.4 < ratio[4.0] < 2.2     # 1.62: ~0.4 changes per step, and fewer spurious ones at the smaller step
    assert runs[0.1, 4.0].stats["n_accepted"] > 1.5 * runs[0.1, 64.0].stats["n_accepted"]
    assert runs[0.1, 4.0].stats["max_step"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="event_rate.*> 0"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, options={"event_rate": 0.0})


def test_float32_follows_float64():
    net, X, y = _p3l()
    T = [0.0, 5.0, 10.0, 20.0]
    a = gf.simulate(net, X, y, 20.0, T, method="sliding", step=0.05)
    b = gf.simulate(net.to(dtype=torch.float32), X, y, 20.0, T, method="sliding", step=0.05)
    assert b.ok and "float32" in str(b.config["network"])
    assert np.max(_rel(b.loss.astype(float), a.loss)) < 1e-5          # measured 2e-7


@pytest.mark.parametrize("act, m, D, n, seed", [("relu", 32, 16, 8, 0), ("relu", 64, 20, 20, 3),
                                                 ("leaky", 48, 48, 12, 2)])
def test_step_halving_estimate_bounds_the_true_error(act, m, D, n, seed):
    net, X, y, T, ref = _estimate_case(act, m, D, n, seed)
    sol = gf.simulate(net, X, y, 10.0, T, method="sliding", step=0.1, error_estimate=True)
    assert sol.ok and sol.error_estimate.shape == sol.t.shape
    true = _rel(sol.loss, ref.loss)
    assert np.all(sol.error_estimate[1:] >= true[1:])
    assert sol.error_estimate.max() < 1e-2                   # and not vacuous
    info = sol.config["solver"]["error_estimate"]
    assert info["method"] == "sliding" and info["steps_used"] == [0.1, 0.05, 0.025]


def test_options_reach_every_solve_of_the_estimate_and_its_rerun(tmp_path):
    net, X, y = _p3l(m=16, n=5)
    sol = gf.simulate(net, X, y, 2.0, [0.0, 1.0, 2.0], method="sliding", step=0.1, error_estimate=True,
                      options={"event_rate": float("inf")})     # (were silently dropped with error_estimate=True)
    assert sol.stats["n_accepted"] == 80 and sol.config["solver"]["options"] == {"event_rate": float("inf")}
    sol.save(tmp_path / "run.nc")
    again = gf.rerun(tmp_path / "run.nc")
    np.testing.assert_array_equal(again.loss, sol.loss)
    np.testing.assert_array_equal(again.error_estimate, sol.error_estimate)


def test_simulate_nonsmooth_refines_sliding_to_a_target():
    net, X, y = _p3l(m=32, n=8)
    sol = gf.simulate_nonsmooth(net, X, y, 10.0, np.linspace(0, 10, 6), method="sliding", step=0.2, rtol=1e-3)
    assert sol.ok and sol.error_estimate.max() <= 1e-3
    assert sol.config["solver"]["method"] == "sliding"


def test_budget_stops_with_status_and_partial_trajectory():
    net, X, y = _p3l(m=64, n=16)
    with pytest.warns(gf.GFlowWarning):
        sol = gf.simulate(net, X, y, 400.0, np.linspace(0, 400, 401), method="sliding", step=0.01,
                          max_wall_time=0.3)
    assert sol.status == "time_budget" and "max_wall_time" in sol.message
    assert 0 < sol.t[-1] < 400 and np.all(np.isfinite(sol.loss))


def test_max_steps_and_an_overflowing_start_are_named():
    net, X, y = _p3l(m=16, n=5)
    with pytest.raises(ValueError, match="max_steps"):
        gf.simulate(net, X, y, 10.0, method="sliding", step=0.01, max_steps=50)
    big = np.asarray(y, dtype=float) * 1e300  # the loss overflows at t = 0: nothing to return (was a numpy
    for run in (lambda: gf.simulate(net, X, big, 1.0, method="sliding", step=0.1),   # "need at least one array
                lambda: gf.simulate(net, X, big, 1.0, method="euler", step=0.1),     # to stack", and a bare
                lambda: gf.gradient_descent(net, X, big, step=0.1, steps=5)):          # Abort from GD)
        with pytest.raises(ValueError, match="loss at t = 0 is not finite.*the targets y overflow.*scale of y"):
            run()


def test_bad_input_is_rejected():
    net, X, y = _p3l(m=8, n=4)
    with pytest.raises(ValueError, match="method 'sliding'.*activation 'tanh'"):
        gf.simulate(gf.Network(6, width=8, activation="tanh", seed=0), X, y, 1.0, method="sliding", step=0.1)
    with pytest.raises(ValueError, match="space='weight'"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, space="weight")
    with pytest.raises(ValueError, match=r"needs step= \(its largest step δ.*step=0.125"):
        gf.simulate(net, X, y, 1.0, method="sliding")
    with pytest.raises(ValueError, match="unknown option"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, options={"max_step": 0.1})
    with pytest.raises(TypeError, match="must be a number"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, options={"event_rate": "high"})
    with pytest.raises(ValueError, match="batched seeds"):
        gf.simulate_batch([net, net], X, y, 1.0, method="sliding", step=0.1)
    with pytest.raises(ValueError, match="needs native engine|checkpoint"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, checkpoint="x.ckpt")


def test_pair_solves_built_from_a_previous_pattern_equal_a_fresh_build():
    """PairSolves(previous=...) copies the inverses of unchanged neurons (resized: the padding is the identity) and
    factors the rest; it must equal a fresh build whatever changed — pairs added and removed, the pad width k
    growing and shrinking, neurons appearing and disappearing, a singular G_SS (pseudo-inverse)."""
    from gflow.solve.filippov import PairSolves

    gen = torch.Generator().manual_seed(3)
    m, n = 40, 12
    Phi = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    G = Phi @ Phi.T / 5 + 1e-3 * torch.eye(n, dtype=torch.float64)
    G[:, -1] = G[-1, :] = 0.0  # a zero row: every G_SS holding the last point is singular
    allowed = torch.ones(m, dtype=torch.bool)
    allowed[7] = False
    S = torch.rand(m, n, generator=gen) < 0.15
    prev = PairSolves(G, S, allowed)
    for trial in range(12):
        S = S.clone()
        flip = torch.rand(m, n, generator=gen) < (0.02 if trial % 3 else 0.2)
        S ^= flip
        if trial == 4:
            S[3] = True  # k grows to n
        if trial == 5:
            S[3] = False
        new = PairSolves(G, S, allowed, previous=prev)
        ref = PairSolves(G, S, allowed)
        assert torch.equal(new.rows, ref.rows) and torch.equal(new.idx, ref.idx) and torch.equal(new.mask, ref.mask)
        tol = 1e-12 * float(ref.Ginv.abs().max())  # the same factorizations, batched differently (pinv: by SVD)
        torch.testing.assert_close(new.Ginv, ref.Ginv, rtol=0, atol=tol)
        rhs = torch.randn(ref.rows.numel(), n, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(new.solve(rhs), ref.solve(rhs), rtol=0, atol=10 * n * tol)
        prev = new


def test_pair_solves_exact_reuse_equals_a_fresh_build_bitwise():
    """``exact=True`` (filippov's set_mode): the inverses equal a fresh build's bitwise — one pair changed (the usual
    event), several neurons, rows appearing and disappearing (the layout shifts: inverses kept only at the same
    offset modulo 64 bytes), the pad width k changing."""
    from gflow.solve.filippov import PairSolves

    gen = torch.Generator().manual_seed(5)
    m, n = 48, 20
    Phi = torch.randn(n, 40, generator=gen, dtype=torch.float64)
    G = Phi @ Phi.T / 40
    S = torch.rand(m, n, generator=gen) < 0.2
    prev = PairSolves(G, S, exact=True)
    for trial in range(60):
        S = S.clone()
        if trial % 4 == 3:
            S ^= torch.rand(m, n, generator=gen) < 0.05
        else:
            S[int(torch.randint(m, (1,), generator=gen)), int(torch.randint(n, (1,), generator=gen))] ^= True
        new = PairSolves(G, S, previous=prev, exact=True)
        ref = PairSolves(G, S)
        assert torch.equal(new.rows, ref.rows) and torch.equal(new.idx, ref.idx) and torch.equal(new.mask, ref.mask)
        assert torch.equal(new.Ginv, ref.Ginv), trial
        assert all(torch.equal(a, b) for a, b in zip(new.pairs, ref.pairs))
        prev = new


def test_the_fast_mask_helpers_equal_the_torch_operations_they_replace():
    """``any_rows`` (``.any(1)`` of a bool mask by its bytes) and ``_fill`` (int8 ``masked_fill_`` by arithmetic),
    which the sliding step takes for speed, give torch's answers: empty shapes, a transposed (strided) mask,
    every fill value, the int8 modes' dtype kept."""
    from gflow.solve.filippov import any_rows
    from gflow.solve.sliding import _fill

    gen = torch.Generator().manual_seed(2)
    for shape, p in [((0, 5), 0.5), ((4, 0), 0.5), ((37, 23), 0.03), ((37, 23), 0.6), ((5, 1), 0.5)]:
        mask = torch.rand(shape, generator=gen) < p
        assert torch.equal(any_rows(mask), mask.any(1)), shape
        assert torch.equal(any_rows(mask.T.contiguous().T), mask.any(1)), shape
    wide = torch.rand(23, 37, generator=gen) < 0.05
    assert torch.equal(any_rows(wide.T), wide.T.any(1))  # (a strided view)
    assert torch.equal(any_rows(torch.ones(3, 4)), torch.ones(3, 4).any(1))  # (not bool: torch's own)
    for value in (-1, 0, 1):
        mode = torch.randint(-1, 2, (37, 23), generator=gen, dtype=torch.int8)
        mask = torch.rand(37, 23, generator=gen) < 0.3
        out = _fill(mode.clone(), mask, value)
        assert out.dtype == torch.int8 and torch.equal(out, mode.masked_fill(mask, value)), value


def test_the_sparse_update_of_af_g_between_passes_equals_the_product():
    from gflow.solve._record import Monitor
    from gflow.solve.sliding import SPARSE_UPDATE, SlidingStepper

    net, X, y = _p3l(m=64, n=20, d=8)
    st = SlidingStepper(Problem.from_data(net, X, y), (0.0, 1.0), Monitor(1.0, 10, None, hint=""))
    gen = torch.Generator().manual_seed(0)
    Af0 = torch.randn(64, 20, generator=gen, dtype=torch.float64)
    prev = (Af0, Af0 @ st.G)
    few = Af0.clone()
    few[[1, 5, 5, 9], [0, 3, 4, 19]] += torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    many = Af0 + 1.0  # beyond SPARSE_UPDATE changes per row: the full product
    for Af in (few, many, Af0):
        torch.testing.assert_close(st.product(Af, prev), Af @ st.G, rtol=1e-13, atol=1e-13)
    assert SPARSE_UPDATE * 64 < 64 * 20


def test_rank_deficient_sliding_blocks_take_the_pseudo_inverse_instead_of_failing(monkeypatch):
    """A shallow net with more points than inputs (n = 15 > d = 5: G has rank 5) puts up to all 15 points of a
    neuron on the kink at δ = 1/2; G_SS is then singular and its Cholesky factor has an exact zero pivot, on which
    ``cholesky_inverse`` raised (found by a differential fuzz against the previous version).  The pseudo-inverse
    takes over, and the flow still converges to the event-driven one.  (Such steps are now retried at half the
    step — below — which avoids the singular blocks here: the retries are switched off to reach them.)"""
    from gflow.solve import sliding

    monkeypatch.setattr(sliding, "MAX_HALVINGS", 0)
    X, y = gf.data.random_labels(n=15, d=5, seed=307)
    net = gf.Network(5, width=68, activation=gf.get_activation("leaky_relu", slope=0.01), seed=307)
    T = np.linspace(0.0, 20.0, 6)
    ref = gf.simulate(net, X, y, 20.0, T, method="filippov", rtol=1e-10, atol=1e-13, integrals=False, warn=False)
    errs, widest = [], []
    for step in (0.5, 0.25, 0.125):
        s = gf.simulate(net, X, y, 20.0, T, method="sliding", step=step, integrals=False, warn=False)
        assert s.status == "success"
        errs.append(float(_rel(s.loss, ref.loss).max()))
        widest.append(s.stats["max_sliding_per_neuron"])
    if ROUNDING_OF_THE_FUZZ:  # (elsewhere the coarse run may not meet the singular blocks: the unit test below)
        assert widest[0] > 5  # the coarse run had more sliding pairs in one neuron than G has rank
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3, errs
    monkeypatch.undo()
    s = gf.simulate(net, X, y, 20.0, T, method="sliding", step=0.5, integrals=False, warn=False)
    assert s.stats["n_rank_retries"] >= 1 and s.stats["max_sliding_per_neuron"] < 5  # below rank G: no pinv


def test_a_singular_sliding_block_takes_the_pseudo_inverse():
    # G_SS exactly singular (two identical inputs, G_aa = 4: the Cholesky factor's second pivot is 4 − 2² = 0 exactly),
    # on which cholesky_inverse raised; the block gets the pseudo-inverse, the other rows their inverse, the padding
    # the identity
    from gflow.solve.filippov import PairSolves

    G = torch.tensor([[4.0, 4.0, 1.0], [4.0, 4.0, 1.0], [1.0, 1.0, 2.0]], dtype=torch.float64)
    S = torch.tensor([[True, True, False], [False, True, True]])
    pat = PairSolves(G, S, torch.ones(2, dtype=torch.bool))
    assert torch.linalg.cholesky_ex(G[:2, :2])[1].item() != 0  # (the factor does fail)
    inv = {tuple(pat.idx[j][pat.mask[j]].tolist()): pat.Ginv[j] for j in range(2)}
    torch.testing.assert_close(inv[(0, 1)], torch.linalg.pinv(G[:2, :2]), rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(inv[(1, 2)], torch.linalg.inv(G[1:, 1:]), rtol=1e-14, atol=1e-15)
    u = pat.solve(torch.tensor([[2.0, 2.0, 5.0], [1.0, 3.0, 7.0]], dtype=torch.float64))
    assert bool(torch.isfinite(u).all())
    torch.testing.assert_close(u[0], torch.tensor([0.25, 0.25], dtype=torch.float64))  # the minimum-norm solution


def test_relu_benchmark_sliding_mode_writes_every_field(tmp_path):
    """bench_relu.py --sliding on a tiny problem: the JSON holds each step's row, the estimate and the target (a key
    of the target had been swallowed by a comment)."""
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_relu.py"))
    # (t1 = 4: its 11 output times lie 0.4 apart, so the estimate's steps 0.5, 0.25, 0.125 take 10, 20, 40 steps; at
    # t1 = 2 the first two took the same 10 steps, which step halving now refuses)
    mod["main"](["--sliding", "--m", "32", "--n", "10", "--t1", "4", "--steps", "0.5,0.25", "--reference", "self",
                 "--estimate-step", "0.5", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "relu_sliding_m32_n10_t4.json").read_text())
    assert [r["step"] for r in data["steps"]] == [0.5, 0.25] and all(r["status"] == "success" for r in data["steps"])
    assert data["estimate"]["steps"] == [0.5, 0.25, 0.125] and data["reference"]["method"] == "sliding"
    assert {"met_accuracy", "within_2x_gd", "status", "est_max"} <= set(data["target"])


def test_relu_benchmark_long_step_mode_writes_both_rows_per_step(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_relu.py"))
    mod["main"](["--long-step", "16", "--m", "24", "--n", "8", "--t1", "20", "--steps", "0.25", "--ref-step", "0.125",
                 "--out", str(tmp_path)])
    data = json.loads((tmp_path / "relu_long_m24_n8_t20.json").read_text())
    assert [(r["step"], r["long_step"]) for r in data["rows"]] == [(0.25, 1.0), (0.25, 16.0)]
    assert all(r["status"] == "success" for r in data["rows"]) and data["reference"]["step"] == 0.125
    assert data["rows"][0]["n_exponential"] == 0 and data["rows"][1]["n_exponential"] > 0


def test_relu_benchmark_long_levels_mode_reports_the_differences_and_the_observed_order(tmp_path):
    import json
    import runpy
    from pathlib import Path

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_relu.py"))
    mod["main"](["--long-levels", "--m", "24", "--n", "8", "--t1", "20", "--steps", "0.25,0.125,0.0625",
                 "--long-step", "16", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "relu_long_levels_m24_n8_t20.json").read_text())
    assert [lv["step"] for lv in data["levels"]] == [0.25, 0.125, 0.0625]
    assert all(lv["status"] == "success" and len(lv["loss"]) == 81 for lv in data["levels"])
    d = [x["at_t1"] for x in data["differences"]]
    L = [lv["loss"][-1] for lv in data["levels"]]
    assert d == [abs(L[0] - L[1]) / L[1], abs(L[1] - L[2]) / L[2]]
    assert data["contraction_at_t1"] == d[1] / d[0] and data["finest_error_estimate_at_t1"] >= 0


def test_a_step_that_would_collapse_a_neuron_onto_the_kink_is_resolved_finer():
    # d = 2 < n = 9: G has rank 2, and landing two pairs of one neuron fixes its whole row at h ≡ 0 (w ⟂ both
    # points), from which it never leaves. A differential fuzz found it at δ = 1/32 only (the step sequence decides):
    # 8 pairs of neuron 1 pinned in one step, loss 1.7e-2 off the Filippov flow while δ = 1/16 and 1/64 were within
    # 3.2e-4 and 1.4e-5. Such a step was then retried at half the step (two rank retries); the collapse came from an
    # arrival that the neuron's other arrivals turn back, which the step now finds before landing it (n_spurious, no
    # retry, same loss error 4.8e-5). Rank retries on a collapse that holds: the _X3 test below.
    rng = np.random.default_rng(693)
    X, y = rng.standard_normal((9, 2)), rng.standard_normal(9)
    net = gf.Network(2, width=16, activation="relu", embedding="identity", scaling="ntk", c_hat=2.0, seed=588)
    ts = np.linspace(0.0, 10.0, 41)
    ref = gf.simulate(net, X, y, 10.0, saveat=ts, method="filippov", rtol=1e-10, atol=1e-12)
    sol = gf.simulate(net, X, y, 10.0, saveat=ts, features_at=ts, method="sliding", step=1 / 32)
    assert sol.ok
    if ROUNDING_OF_THE_FUZZ:  # (an AMD EPYC's step sequence does not meet the collapse: 0 retries, 4.7e-5 off)
        assert sol.stats["n_rank_retries"] + sol.stats["n_spurious"] >= 1
    assert np.abs(sol.H).max(axis=2).min() > 1e-6, "a neuron collapsed onto the kink"
    assert np.abs(sol.loss / ref.loss - 1).max() < 2e-4


def test_a_step_beyond_the_stability_limit_of_the_free_pairs_is_warned_about():
    # λ_max(M₀) = 9.34 here: step 0.25 > 2/λ_max = 0.214 (a differential fuzz: loss 2.7 % off, rising, no warning)
    rng = np.random.default_rng(693)
    X, y = rng.standard_normal((9, 2)), rng.standard_normal(9)
    net = gf.Network(2, width=16, activation="relu", embedding="identity", scaling="ntk", c_hat=2.0, seed=588)
    with pytest.warns(gf.GFlowWarning, match=r"exceeds the stability limit 2/λ_max\(M₀\) = 0\.214"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.25)
    assert gf.simulate(net, X, y, 1.0, method="sliding", step=0.125).ok  # (no warning: it would be an error here)


# a second differential fuzz: two shallow leaky-ReLU problems (d = 2 < n) on which the rank retries of the first
# version livelocked (the exact flow takes a neuron through w_i = 0) or halved the step to 0 (ZeroDivisionError)
_X3 = np.array([[-2.4338766971489387, 1.1986708993900783], [0.07379335958326627, 1.5101194131223459], [-0.00895629811039896, -0.7421554551991772], [0.477929298799656, -0.07658841293719656], [-1.2541866619736308, -0.885066581450772], [1.766779317484588, 0.3543505953235256]])
_Y3 = np.array([0.4163865350301778, -0.27655171832101155, -0.6897195637660919, 0.8916558155709342, -0.10462645267369168, -0.7591081117479301])
_X4 = np.array([[-0.1255920840343272, 0.6691532407894528], [1.2188436051712233, 0.3829295827134724], [-0.8757211434228455, -1.5143186317046384], [1.7533841175163727, -0.11129219318751944], [-0.6885649476343216, 0.14425708806082496], [-0.19141133048264922, 0.8521422642126877], [0.03392818243710029, 0.013749583618419497], [-0.7145797210329641, 0.4695680987474934], [-1.0338667223549824, 0.6658894397639671], [1.5239375129901318, -1.5246860380991518], [-2.466229231351318, 0.6168787551543194]])
_Y4 = np.array([2.547897815483126, -1.0009248488718936, -1.2506957588019882, 0.5889689337804737, -0.8407215900583078, -0.5060254839367364, -0.34811746668377785, 0.5320020862917986, -0.40530236139311865, 0.2778828400801602, -0.17653325889357535])


def test_a_collapse_that_is_the_flows_own_is_accepted_instead_of_retried_forever():
    net = gf.Network(d=2, width=32, activation={"name": "leaky_relu", "slope": 0.1}, scaling="ours", c_hat=0.5, seed=2)
    for step in (1 / 8, 1 / 128):  # filippov: neuron 24's features reach 0 at t ≈ 3.997
        sol = gf.simulate(net, _X3, _Y3, t1=10.0, method="sliding", step=step, max_wall_time=60)
        assert sol.ok and sol.stats["n_rank_retries"] >= 1, sol.message


def _gd_reference(net, X, y, t1, step):
    """Gradient descent at a step far below sliding's (σ′(0) = 0): its error is O(step), and where a neuron passes
    through w_i = 0 it follows the flow that ``filippov`` misses (below) — at small enough steps: on _X4 GD at
    δ = 1e-3, 1e-4, 2.5e-5 gives L(1) = 3.88062, 3.880397, 3.880394 (sliding 3.880392), but at δ = 2.5e-4 it keeps
    the neuron at 0 as filippov does (3.88096, 3.88099)."""
    k = int(round(t1 / step))
    return gf.gradient_descent(net, X, y, step=step, steps=k, save_every=k // 10, integrals=False, features_at=[t1])


def test_rank_retries_never_halve_the_step_to_nothing_and_keep_a_neuron_that_lives():
    net = gf.Network(d=2, width=16, activation={"name": "leaky_relu", "slope": 0.1}, scaling="mf", c_hat=2.0, seed=2)
    ref = _gd_reference(net, _X4, _Y4, 4.0, 1e-4)
    sol = gf.simulate(net, _X4, _Y4, t1=4.0, saveat=ref.t, method="sliding", step=1 / 64, features_at=[4.0])
    assert sol.ok  # (was a ZeroDivisionError)
    assert np.abs(sol.loss - ref.loss).max() < 2e-5 * ref.loss[0]  # (filippov: 1.1e-4, GD at 2.5e-4: 1.0e-4)
    assert np.abs(sol.H[-1] - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max()
    assert np.abs(sol.H[-1][7]).max() > 1.0  # neuron 7 lives


# A neuron can reach w_i = 0 along a line of sliding pairs (rank G − 1 of them) and leave it on another pattern: the
# collapse holds down to the smallest retry step, and what it leaves with is found by its own flow through the
# passage (SlidingStepper.emerge). Two shallow nets (d < n) where the first version kept the neuron at w_i = 0 for
# good (ReLU: 0.38 off in H from t = 0.5 on, and at δ = 1/64 a crawl to steps of 1e-34 on the dead neuron's
# chatter) or, choosing among the Filippov-consistent patterns by straight passage, left on the wrong one (0.2 off).
_X5 = np.array([[0.9409311129269357, 0.7131564204233815], [1.0474862871297028, -0.38924397003268574], [0.7398063595133139, 2.024481935859489], [0.8036655593800595, -0.6198936689169603], [0.6077124939345443, 1.2623802917054945], [0.3689862863896283, -0.5634006961428569], [1.5430805830215768, -1.2497670465629258], [0.5034250466559266, -0.01617557446712804], [-1.1936657251775022, 1.2194496835829487], [0.3478875937013457, -1.166798177099069]])
_Y5 = np.array([0.6017283565618432, -0.43160042891134, -1.9027885021671262, -0.6889051253999523, 0.2635514475016157, 0.6357028862761235, 0.16556490512827252, 0.04516501126799043, 0.46999000714326233, -0.210976101965214])
_X6 = np.array([[0.2054039460646989, 0.49301329141235634, -0.1764060659057582], [-0.20593033025321647, 0.7024629551205442, 0.5199076370338984], [-1.0336758320736887, -0.07918131861584184, 0.03528684866147414], [-1.0544846220491104, 0.25983910067436333, -0.8579564771765439], [0.9720667079170427, 0.1927459126050724, 0.08930648576905029], [-0.591028352856274, -0.11860982387769403, -1.9977462929070549], [-1.1314074705230586, 0.3628397991887543, -2.1285670418221447], [0.8466085214811634, -1.7460964753739088, 0.7567385026642676], [-0.8454970328793241, 0.7789910843424612, 0.1309512075847998]])
_Y6 = np.array([-1.5368349402914887, 1.2491487495584548, 1.4417071555226115, -0.0658049060002071, -0.27391627217232034, -0.15986696597063635, -0.9751523227787462, 1.0985867597569177, -0.5428919317301868])


@pytest.mark.parametrize("case", ["relu", "leaky"])
def test_a_neuron_through_w_zero_leaves_it_as_gradient_descent_does(case):
    if case == "relu":  # neuron 5 reaches 0 at t ≈ 0.496
        net = gf.Network(d=2, width=16, activation="relu", scaling="ours", c_hat=1.0, seed=7)
        X, y, t1, steps = _X5, _Y5, 2.0, (1 / 8, 1 / 64)
    else:  # neuron 29 reaches 0 at t ≈ 3.992
        net = gf.Network(d=3, width=32, activation={"name": "leaky_relu", "slope": 0.1}, scaling="ours", c_hat=1.0,
                         seed=3)
        X, y, t1, steps = _X6, _Y6, 5.0, (1 / 8, 1 / 32)
    ref = _gd_reference(net, X, y, t1, 1e-4)
    for step in steps:
        sol = gf.simulate(net, X, y, t1=t1, saveat=ref.t, method="sliding", step=step, features_at=[t1],
                          max_wall_time=60)
        assert sol.ok, sol.message
        assert np.abs(sol.H[-1] - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max(), step
        assert np.abs(sol.loss - ref.loss).max() < 2e-4 * ref.loss[0], step
        assert sol.stats["n_emerged"] >= 1



def test_a_pin_that_no_filippov_weight_gives_is_resolved_finer():
    # random features with D = 6 < n = 7 (rank G = 5): four pairs of one neuron with nearly dependent features
    # (their G_SS singular) were pinned on the kink together by weights ≈ 10² where ∫r ≈ 10⁻² — no σ′ in [0, 1]
    # gives those — and the neuron's other pairs moved 0.15 in one step: the loss 0.7 % off filippov at
    # δ = 1/64 … 1/256, not falling with δ (a differential fuzz). Such a step is now retried at half the step.
    X = np.array([[-0.7644641157203993, -1.0790604591369424], [-0.5632871985040379, 0.9692722011381628],
                  [-0.23500550689182578, 1.324347019236957], [-1.872529517606024, 1.128523141900478],
                  [1.0348662399295387, -1.4186656898014849], [0.15358188653595775, 1.2157576351945363],
                  [0.08791904230952238, 0.99970142215178]])
    y = np.array([2.3748869133171437, 0.2739322545923299, -0.2803823139429379, -0.7710521598195307,
                  0.6480646015444852, -0.19673006635772372, -0.17874637079406783])
    net = gf.Network(d=2, width=16, activation="relu", embedding=gf.RandomFeatures(6, "relu", seed=5), scaling="mf",
                     c_hat=1.0, seed=1)
    ts = np.linspace(0.0, 0.5, 11)
    ref = gf.simulate(net, X, y, 0.5, saveat=ts, method="filippov", rtol=1e-12)
    for step in (1 / 64, 1 / 256):
        sol = gf.simulate(net, X, y, 0.5, saveat=ts, method="sliding", step=step)
        assert sol.ok and np.abs(sol.loss / ref.loss - 1).max() < 5e-5, step
        assert sol.stats["n_pin_retries"] >= 1


def test_filippov_lets_a_neuron_through_w_zero_as_gradient_descent_does():
    # _X4: neuron 7 moves on a line of sliding pairs through w_7 = 0, all its pairs reaching the kink together;
    # located one by one, in rounding order, they made it bounce back (0.7 off in H at t = 0.2, 2.5 at t = 1)
    net = gf.Network(d=2, width=16, activation={"name": "leaky_relu", "slope": 0.1}, scaling="mf", c_hat=2.0, seed=2)
    ref = _gd_reference(net, _X4, _Y4, 1.0, 2.5e-5)
    sol = gf.simulate(net, _X4, _Y4, t1=1.0, saveat=ref.t, method="filippov", rtol=1e-10, atol=1e-12,
                      features_at=[1.0])
    assert sol.ok and np.abs(sol.H[-1] - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max()
    assert np.abs(sol.loss - ref.loss).max() < 2e-5 * ref.loss[0]
    assert sol.stats["n_emerged"] >= 1


_X7 = np.array([[1.5744082788445868, -0.4327858471825968], [-0.735483292342275, 0.24978537155866684], [1.0314530848694723, 0.16100957671534466], [-0.5855288241233366, -1.341219714076669], [-1.401520214917428, 0.5026828498748657], [0.989713033285805, -0.1642945926252907], [-1.0743648582284346, 0.8730421526217066], [-1.2803939447145731, -0.7130680950592722], [0.6210178535400985, -2.2501411735745918], [0.38636959756630584, -0.5816408364095031], [0.10927969747781388, -0.07570152622082311]])
_Y7 = np.array([0.20211439504395987, 0.6941719367070082, -0.7583697508984092, 1.4209820223119163, 0.726093788947765, 0.843732662303268, 1.1648639811110282, 0.7875882217058694, 0.844078680578592, 0.07559361074288512, -1.4267738509897323])


def test_filippov_resolves_two_pairs_of_one_neuron_arriving_together_one_at_a_time():
    # random features with D = 6 < n = 11: pairs (28, 0) and (28, 5) arrived together at t = 0.5626; both were
    # released at once, crossed back in zero time, and the event loop cycled ("stalled" at rtol 1e-10, while 1e-8
    # succeeded). Releasing the worst violator per neuron and pass settles it, on GD's flow.
    net = gf.Network(d=2, width=32, activation={"name": "leaky_relu", "slope": 0.1},
                     embedding=gf.RandomFeatures(6, "relu", seed=5), scaling="ntk", c_hat=2.0, seed=2)
    sol = gf.simulate(net, _X7, _Y7, t1=10.0, saveat=np.linspace(0.0, 10.0, 21), method="filippov", rtol=1e-10,
                      max_wall_time=60)
    assert sol.ok, sol.message
    ref = _gd_reference(net, _X7, _Y7, 10.0, 1e-4)  # (11 of the 21 times)
    # the pairs' order of release still depends on where the steps fall: 1e-12, 5.9e-5 or 1.6e-4 off at t = 2
    # (filippov at rtol 1e-8 … 1e-11 with the default atol, before and after the residual's error control of the
    # thirteenth session; the bounce this test was written for put it 0.7 off)
    assert np.abs(sol.loss[::2] - ref.loss).max() < 6e-5 * ref.loss[0]



_X8 = np.array([[1.8313504412926702, -1.8342386809938644], [-0.15858307484987563, -1.0057998484592217], [0.07148266094307909, -0.2103219086354484], [0.5797500338484932, 0.6727486683161371], [0.9455035722213874, -0.23342514435330478], [1.2196411169599286, 0.06661845612129295], [1.1089518345246272, 0.097672313273696], [0.5104013691513216, 0.010202758871971014], [-0.3649094590915994, -0.39551945843611513], [-1.5573970577659595, -0.05338122031372219], [0.10193097111060252, -2.0494141116427906], [-0.6723172069762305, 0.160004246929557], [-1.2297107515782952, 0.43035820694208965], [0.3108810175864297, -0.8315035898394465], [0.5805802707821094, 1.3422148081791738], [1.30160446515469, -0.48334158164881236]])
_Y8 = np.array([0.7559180310218244, -1.8444602656255016, -0.7628739284430011, -1.7366229917830163, -1.5820267194627333, -0.5283414391579936, -0.11444534458209558, 0.2869199413918726, 1.8049194503099433, -1.6202345014019413, -0.1551625930361482, -1.8558831652733585, -1.803513027757721, -1.0945015650040173, 0.22066709816292995, -0.31834397470602654])


def test_sliding_steps_never_shrink_below_the_retry_floor():
    # random features D = 5 < n = 16 (a differential fuzz): after pin retries, one chattering pair per tiny step made
    # the measured event rate ≈ 1/h and shrank the steps geometrically — at δ = 1/64 the run hit a 30 s budget
    # before t = 5 (0.7 s without the retries). The event-rate step now stays ≥ δ/2^MAX_HALVINGS.
    from gflow.solve.sliding import MAX_HALVINGS

    net = gf.Network(2, width=24, activation='relu', embedding=gf.RandomFeatures(5, "relu", seed=5), scaling='ours', c_hat=1.0, seed=17)
    step = 1 / 64
    sol = gf.simulate(net, _X8, _Y8, t1=5.0, saveat=[0.0, 5.0], method="sliding", step=step, max_wall_time=20)
    assert sol.ok, sol.message
    assert sol.stats["n_steps"] < 5.0 / step * 8
    assert sol.stats["min_step"] >= step / 2**MAX_HALVINGS * (1 - 1e-9)  # (no output time inside: no landings)


def test_a_collapse_from_far_off_zero_is_not_taken_for_a_passage():
    # the same net at δ = 1/16: a neuron with 4 sliding pairs (rank G = 5) collapsed at the smallest retry step
    # from |h| = 1.4 — the landing's doing, not w_i passing 0; letting it leave put the loss 2.4e-3 off GD
    net = gf.Network(2, width=24, activation="relu", embedding=gf.RandomFeatures(5, "relu", seed=5), scaling="ours",
                     c_hat=1.0, seed=17)
    ref = _gd_reference(net, _X8, _Y8, 5.0, 1e-4)
    sol = gf.simulate(net, _X8, _Y8, t1=5.0, saveat=ref.t, method="sliding", step=1 / 16)
    assert sol.ok and np.abs(sol.loss - ref.loss).max() < 5e-5 * ref.loss[0]


def test_a_pair_released_on_the_kink_and_held_there_by_its_neighbours_does_not_chatter():
    # the same net (fuzz 200012): a pair whose feature lies in the span of its neuron's other sliding pairs was
    # released on θ = 1.62 (from a singular G_SS), stayed at |h| ≈ 1e-21 — the others hold it — and, ending a step a
    # rounding error below the kink, "arrived" again: every step, with the event-rate steps held near the floor
    # (1 985 steps to t = 5 at δ = 1/64, 36 190 at δ = 1/256: 78 s). Within rounding of the kink it has not crossed.
    net = gf.Network(2, width=24, activation="relu", embedding=gf.RandomFeatures(5, "relu", seed=5), scaling="ours",
                     c_hat=1.0, seed=17)
    ts = np.linspace(0.0, 5.0, 11)
    ref = gf.simulate(net, _X8, _Y8, 5.0, saveat=ts, method="filippov", rtol=1e-10, atol=1e-12)
    sol = gf.simulate(net, _X8, _Y8, 5.0, saveat=ts, method="sliding", step=1 / 64)
    assert sol.ok and np.abs(sol.loss / ref.loss - 1).max() < 1e-5
    assert sol.stats["n_steps"] < 800


# Two or more pairs of one neuron reaching the kink in one step (differential fuzz, shallow ReLU nets): landed
# together, a pair that the others' arrival (or crossing) turns back before it arrives slid on consistently and the
# run followed another Filippov solution for good. _X9: three arrivals of neuron 15 at t ≈ 2.36, one spurious, then a
# fourth pair pulled onto its kink — 8.7e-4 off in the loss and 4.8e-2 in H at every δ from 1/16 to 1/256; _X10: a
# crossing of neuron 29 turns back an arrival at t ≈ 1.0 (6.7e-2 off in H at δ = 1/16 and 1/64). ``filippov`` and GD
# at δ = 1e-4 and 5e-5 agree on both to ≤ 5e-6 in the loss.
_X9 = np.array([[-0.8468498699133187, -0.25964436603135066, 1.2076397141887931, -0.5691872806603233, -0.2192211146008241, -0.7793153974113203], [0.3231950384860196, -0.9649770937634133, 0.19477547677985987, -0.475939870247748, -2.4057297306396532, -1.2281576509985768], [-0.7869826367144869, -0.4210148293499361, -0.4027008609308809, 1.307211905672071, 0.11674399535614015, 0.7600421273332303], [0.4854625896089076, 0.28735003234389295, -1.89678272214067, 0.20823411328884459, 0.26829354962810487, -0.5648379516694015], [1.9872314059914513, -0.8657215438703554, -1.3366120569991613, -0.7461589271911218, 0.4159378458560592, -1.6879907675983254], [-0.008206693996928917, 1.1524045675913381, 1.5856383505920781, 0.7115155914699111, 0.2516018009316816, 1.3905162432576335], [1.1107047346937304, -0.21242598529277176, 1.3441497608693231, 1.4305153684149432, -0.051680337199635294, -0.7913883365018961], [-0.060615651523487586, 0.11658272146707116, 1.2760490808111946, -0.40747079758813176, -0.2056498227121542, 0.9588931263934721], [1.4973631549083484, 0.4380883389112362, -1.486997986984945, -0.5842223727138156, -1.0358077971281567, -1.412561024668878], [1.0863935136424807, -0.5063982885315332, 0.7477960808296263, -0.490075604002955, 1.8096408024932045, 1.9754489990058273], [-0.6413706691486929, 0.7159144833071792, 0.4432381523893102, -2.0899650969061416, -1.4168944371419272, 1.0067628079781663], [-0.8313960577408119, -1.7910951160809645, 0.20618088911691396, -0.7033149024222454, -0.8790244382454101, -0.8575478491329251], [1.5116742516035637, 0.49993582369779915, -0.44221597715468375, -0.40369626591647323, 1.2093659362582312, 0.4804392846416191], [-1.2518069783093044, 2.0179719343882185, 1.3960781978760548, -1.4008473939528732, 0.06101169716323499, 1.3184785905741139], [-0.9866794495610526, 1.3217676852012052, 0.9493028057888953, -0.016638201895323133, 0.05837411161847219, -1.475690031345064], [-1.2383541961592097, -1.5261574652323626, -1.0972927990250407, 1.9439060088980995, 0.319242114672862, -0.418348170087142]])
_Y9 = np.array([-0.8152565950993814, 0.2790988754195018, 1.0591470002558352, 1.4084317361680276, -0.4618323860581507, 0.046202022425850114, 0.21697617141349157, -1.1699296813034257, 0.9593207951249999, 0.49228191205833033, 1.2695705029980584, -0.2056344678451239, -0.2359581129162617, -0.6237150214828235, 0.03631295212344299, 0.8692017618840404])
_X10 = np.array([[-1.0581778874813736, 1.1354086477185932, 0.4269345744454584, -0.6575156060162615], [0.5499621632050137, -1.4543553613944686, 0.8103821098535198, 3.064550353142926], [0.08090378648122469, -1.3209032587058547, -0.040209872601696006, -0.040504690942808584], [1.6554814769838129, -0.33586767943239054, 1.0449296701419033, -0.712927920894439], [0.006798669318750273, -0.017847283959779046, 0.6934199762121332, 1.229016651047461], [0.547456381534245, -0.29234080769609344, -1.9609551564868049, -0.5611841239772406], [0.08169920081854933, 0.8747717833830778, 0.6352791857504952, 1.7983409515359492], [-1.6414428620606556, 0.9018537546054882, 0.14895031911991788, 1.4869619450713307], [1.9658262113010891, 1.5188722134634145, 0.8496911069426761, 0.12255921182999477], [0.8859577849417628, 0.9670472955386747, -0.9391620473387308, 0.6517826610283814]])
_Y10 = np.array([-1.842037912012566, 1.0972589566317725, 0.6252056705074148, 0.063499598005581, -2.3447707565995946, 1.198362406141354, -0.576138114255091, 0.10563703330410358, 1.0560983330315654, 0.521222168109489])


@pytest.mark.parametrize("case", ["three_arrivals", "crossing"])
def test_an_arrival_that_the_others_turn_back_is_not_landed(case):
    if case == "three_arrivals":
        net = gf.Network(6, width=32, activation="relu", scaling="ours", c_hat=1.0, seed=832)
        X, y, t1 = _X9, _Y9, 5.0
    else:
        net = gf.Network(4, width=48, activation="relu", scaling="ours", c_hat=0.5, seed=414)
        X, y, t1 = _X10, _Y10, 2.0
    ts = np.linspace(0.0, t1, 11)
    ref = gf.simulate(net, X, y, t1, saveat=ts, method="filippov", rtol=1e-10, atol=1e-12, features_at=[t1])
    for step in (1 / 16, 1 / 64):
        sol = gf.simulate(net, X, y, t1, saveat=ts, method="sliding", step=step, features_at=[t1])
        assert sol.ok, sol.message
        assert np.abs(sol.H[-1] - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max(), step
        assert np.abs(sol.loss - ref.loss).max() < 3e-5 * ref.loss[0], step
        assert sol.stats["n_spurious"] >= 1


def _d2_n13():
    """Fuzz case 200040 (benchmarks/fuzz_relu.py): a shallow ReLU net with d = 2 (rank G = 2), n = 13; x_5 and x_7
    are nearly antiparallel (cos −0.99997), so a neuron reaches both kinks almost at once."""
    net = gf.Network(2, width=64, activation="relu", scaling="mf", c_hat=1.0, seed=662)
    X = np.array([[1.425086557526993, -1.9400631114059117], [-1.024202721529565, -0.5370412443544675], [-2.0359306993861472, 1.508746142114714], [-0.9781144911324984, 0.34387089034509893], [-0.14434555749443184, 0.44589047620586886], [-1.0630521144697835, 0.6210744897282846], [-2.0006794145599494, -0.17779088097130752], [1.9264519161348228, -1.145863871175142], [1.6019847874694118, 0.5016178295181813], [0.4327762008796621, -1.0387456025745812], [2.753597278779168, 0.6765296712802318], [-0.18793938986202094, 1.9193562779284037], [-1.089682854464747, -0.48092928092718545]])
    y = np.array([-0.7755095858851182, 0.5467680246955102, -0.9535532385420873, -0.9948923703969963, 0.75789958522133, 0.3390168565756156, -1.6424310295513502, 1.3978915187755785, 0.9335518410488486, 0.482980603093401, -0.3616365719726679, 0.005135163186103352, -0.8502962293992387])
    return net, X, y


def test_two_arrivals_that_would_put_a_neuron_on_w_i_0_together_are_taken_one_at_a_time():
    # neuron 13 of the d = 2 case meets the kinks of x_5 and x_7 (nearly antiparallel) within 2e-6 of each other,
    # far from w_13 = 0 (|h| ≈ 0.04).  Landing both in one step put its whole row at 0 (two kinks = rank G), and at
    # every retry down to the smallest step; held there for good, the run ended 4e-2 off in H at t = 0.012 (δ = 1/64,
    # AMD EPYC).  The collapse check sends one of them back (:meth:`SlidingStepper.spurious`): left free, with the
    # other landing, it does not reach its kink.
    from gflow.solve._record import Monitor
    from gflow.solve.sliding import SlidingStepper

    net, X, y = _d2_n13()
    t0, dt = 0.00206, 2.5e-5  # (δ = 1/64's smallest step: 1.5e-5)
    ref = gf.simulate(net, X, y, t0 + dt, saveat=[0.0, t0, t0 + dt], method="filippov", rtol=1e-10, atol=1e-12,
                      features_at=[t0, t0 + dt])
    assert ref.ok and ref.stats["n_emerged"] == 0
    H = torch.as_tensor(np.asarray(ref.H[0]))
    st = SlidingStepper(Problem.from_data(net, X, y), (0.0, 1.0), Monitor(1.0, 10, None, hint=""))
    mode = torch.where(H > 0, 1, -1).to(torch.int8)
    H1, _, mode1 = st.step(H, mode, dt)  # landed together: neuron 13 on w = 0
    coll = st.collapsed(mode, mode1)
    assert coll.nonzero().flatten().tolist() == [13] and float(H1[13].abs().max()) < 1e-12
    far = st.far_from_zero(H, st.residual(H), coll, dt, bound=True)  # as run_sliding: |h| 0.044 > 2·dt·bound 0.028
    assert far.nonzero().flatten().tolist() == [13]
    H1, _, mode1 = st.step(H, mode, dt, split_collapses=far)  # what run_sliding does at its smallest step
    assert not bool(st.collapsed(mode, mode1).any()) and st.stats["n_spurious"] >= 1
    assert float(H1[13].abs().max()) > 0.5 * float(H[13].abs().max())
    assert np.abs(H1.numpy() - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max()
    # and a run to just before the first neuron that does pass through w_i = 0 (filippov: t = 0.0142)
    T = 0.012
    ts = np.linspace(0.0, T, 5)
    ref = gf.simulate(net, X, y, T, saveat=ts, method="filippov", rtol=1e-10, atol=1e-12, features_at=[T])
    for step in (1 / 64, 1 / 256):  # measured 2.2e-3 and 3.9e-4 off in H (δ = 1/64 with the collapse: 4.3e-2)
        sol = gf.simulate(net, X, y, T, saveat=ts, method="sliding", step=step, features_at=[T])
        assert sol.ok and sol.stats["n_emerged"] == 0
        assert np.abs(sol.H[-1] - ref.H[-1]).max() < 1e-2 * np.abs(ref.H[-1]).max(), step
        assert np.abs(sol.loss / ref.loss - 1).max() < 3e-4, step


@pytest.mark.parametrize("i", [6, 7])  # (on an AMD EPYC neuron 6 can leave then, 7 cannot)
def test_a_neuron_held_at_w_i_0_keeps_its_pattern_and_its_wish_to_leave_goes_to_leave_zero(i):
    # a neuron held at w_i = 0 (no exit pattern when it got there) has rank-many sliding pairs fixing its row; the
    # θ of its other pairs are not unique there.  Released one at a time, a pair re-arrived on the next step, every
    # step: on fuzz case 200040 (δ = 1/256, t = 10) the steps shrank ~100× and the run took > 30 s instead of 2 s.
    # Now the pattern holds, and the step reports the neuron (held_exits) for run_sliding to ask leave_zero.
    from gflow.solve._record import Monitor
    from gflow.solve.sliding import SlidingStepper

    net, X, y = _d2_n13()
    ref = gf.simulate(net, X, y, 0.01, saveat=[0.0, 0.01], method="filippov", features_at=[0.01])
    H = torch.as_tensor(np.asarray(ref.H[-1])).clone()
    H[i] = 0.0
    mode = torch.where(H > 0, 1, -1).to(torch.int8)
    mode[i] = torch.tensor([-1, 1, 1, 0, 1, 1, 1, 0, 0, 0, -1, 0, 1], dtype=torch.int8)  # (seen in that run)
    out = {}
    for held in (False, True):
        st = SlidingStepper(Problem.from_data(net, X, y), (0.0, 1.0), Monitor(1.0, 10, None, hint=""))
        st.accepted[i] = held
        H1, _, mode1 = st.step(H, mode, 1e-3)
        assert float(H1[i].abs().max()) < 1e-12 * float(H.abs().max())
        out[held] = (mode1[i], st.held_exits)
    assert not torch.equal(out[False][0], mode[i]) and out[False][1] is None   # free to change, it would
    assert torch.equal(out[True][0], mode[i])
    assert out[True][1] is not None and out[True][1].nonzero().flatten().tolist() == [i]
    # what run_sliding then does: ask whether it can leave (not again before r has moved), from its held pattern
    assert st.reask(H1) and not st.reask(H1)
    mode2 = mode1.clone()
    stuck = st.leave_zero(H1, mode2, out[True][1])
    p = mode2[i]
    if bool(stuck[i]):
        assert torch.equal(p, mode[i])
    else:  # a consistent pattern at w_i = 0 with fewer than rank G sliding pairs
        hd, _, th = st._at_zero(i, st.residual(H1), p)
        bad_free, bad_slide = st._violations(p, hd, th)
        assert int((p == 0).sum()) < st.rank_G and not bool(bad_free.any()) and not bool(bad_slide.any())


@pytest.mark.xfail(not ROUNDING_OF_THE_FUZZ, strict=False,
                   reason="not unique: past t = 0.0142 neurons pass through w_i = 0, where the Filippov solution branches "
                          "(GD at δ = 1e-6 and 3e-7 end 0.63 apart in H at t = 1, 8.9e-3 in the loss); which branch a "
                          "step sequence takes depends on rounding and on small changes of the scheme (on an AMD "
                          "EPYC 'sliding' at δ = 1/256 ends 0.24 from filippov in H; on an Intel Xeon 2e-3)")
def test_a_pair_whose_feature_the_other_sliding_pairs_fix_is_not_sent_back():
    # d = 2 (rank G = 2), n = 13: a pair whose φ(x_j) lies in the span of its neuron's other sliding pairs has no
    # free motion (landing them fixes h_j too); testing it as if it had sent ~130 pairs back and put the run 0.64
    # off filippov in H by t = 1 (fuzz case 200040, benchmarks/fuzz_relu.py)
    net, X, y = _d2_n13()
    ts = np.linspace(0.0, 1.0, 11)
    ref = gf.simulate(net, X, y, 1.0, saveat=ts, method="filippov", rtol=1e-10, atol=1e-12, features_at=[1.0])
    sol = gf.simulate(net, X, y, 1.0, saveat=ts, method="sliding", step=1 / 256, features_at=[1.0])
    assert sol.ok and np.abs(sol.H[-1] - ref.H[-1]).max() < 2e-3 * np.abs(ref.H[-1]).max()
    assert np.abs(sol.loss / ref.loss - 1).max() < 1e-5


def test_the_differential_fuzz_runs_a_case_and_writes_a_reproducer(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fuzz_relu

    recs = fuzz_relu.main(["--cases", "1", "--first", "100009", "--out", str(tmp_path)])  # m = 8, n = 11, t1 = 5
    (rec,) = recs
    assert rec["flags"] == [] and rec["d"] == 4 and rec["n"] == 11 and rec["m"] == 8
    for name in ("filippov", "sliding_16", "sliding_64"):
        assert rec[name]["status"] == "success" and rec[name]["loss_err"] < 1e-4, name
    assert (tmp_path / "fuzz_relu.jsonl").read_text().count("\n") == 1
    path = fuzz_relu.main(["--repro", "100009", "--out", str(tmp_path)])
    compile(path.read_text(), str(path), "exec")


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_the_kernel_of_a_pattern_is_its_linear_flow_and_its_updates_equal_a_fresh_build(slope):
    # on a fixed pattern the ReLU flow is linear: r(H + δḢ) = r − δ M r exactly (f is linear in H there), so a small
    # step of the landing map measures M r up to rounding; sliding pairs enter through their Schur complements
    from gflow.solve._record import Monitor
    from gflow.solve.sliding import SlidingStepper

    net, X, y = _p3l(m=40, n=12, d=6, act=gf.get_activation("leaky_relu", slope=slope) if slope else "relu")
    st = SlidingStepper(Problem.from_data(net, X, y), (slope, 1.0), Monitor(1.0, 10, None, hint=""))
    gen = torch.Generator().manual_seed(1)
    H = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    mode = torch.where(H > 0, 1, -1).to(torch.int8)
    S = torch.rand(40, 12, generator=gen) < 0.25   # ≈ 3 sliding pairs per neuron (G_SS nonsingular: D = 40 ≥ n)
    S[0] = False
    mode[S], H[S] = 0, 0.0
    M, lam, V = st.kernel(mode)
    torch.testing.assert_close(V @ torch.diag(lam) @ V.T, M, rtol=0, atol=1e-12)
    assert float(lam.min()) > -1e-12 * float(lam.max())        # PSD: the loss never increases
    r0 = st.residual(H)
    dt = 1e-5
    H1, _, _ = st.land(st.pattern(S), H, st.slopes_of(mode) * (dt * r0)[None, :], S)
    assert not bool((H1[S] != 0).any())
    fd = (st.residual(H1) - r0) / dt
    assert float((fd + M @ r0).norm() / (M @ r0).norm()) < 1e-7    # measured 6e-10 … 8e-9
    # without the Schur complements (sliding pairs taken as inactive) the flow is another one
    free = torch.where(S, torch.tensor(-1, dtype=torch.int8), mode)
    B = st.slopes_of(free) * st.c_col
    M_free = st.alpha * st.gamma * st.G * (B.T @ B)
    assert float((fd + M_free @ r0).norm() / (M @ r0).norm()) > 1e-3
    # an update over the neurons whose modes changed equals a fresh build
    mode2 = mode.clone()
    mode2[3][mode2[3] == 0] = 1
    mode2[7, :4] = 0
    M2, _, _ = st.kernel(mode2)
    st._kernel = None
    M3, _, _ = st.kernel(mode2)
    torch.testing.assert_close(M2, M3, rtol=0, atol=1e-13 * float(M3.abs().max()))


def test_long_steps_follow_the_filippov_flow_over_a_long_horizon_in_far_fewer_steps():
    # past the event-dense start the pattern changes rarely; on a fixed pattern the flow is linear and an
    # exponential step is exact, so steps grow to long_step·δ (changes of more than one pair of a neuron in a long
    # step retry it shorter)
    net, X, y = _p3l()
    T = np.linspace(0.0, 200.0, 5)
    ref = gf.simulate(net, X, y, 200.0, T, method="filippov", rtol=1e-11, atol=1e-14)
    assert ref.ok and ref.stats["n_events"] > 100
    errs, steps = [], []
    for d in (0.1, 0.025):
        sol = gf.simulate(net, X, y, 200.0, T, method="sliding", step=d, options={"long_step": 64})
        assert sol.ok, sol.message
        errs.append(np.max(_rel(sol.loss, ref.loss)))
        steps.append(sol.stats["n_accepted"])
        assert sol.stats["n_exponential"] > 100 and sol.stats["max_step"] > 10 * d
        assert np.all(np.diff(sol.loss) <= 1e-12 * sol.loss[0])
    # measured 9.0e-6, 8.9e-6 in 388 and 615 steps (fixed-length steps of δ = 0.1: 1.2e-5 in 2 006 steps); before
    # the crowded changes of one neuron were taken in time order (test_the_features_converge_to_filippovs_where_...)
    # 5.0e-5 at δ = 0.1.  Long steps do not fall below ≈ 5e-6 here (δ = 0.05, 0.0125: 1.7e-5, 5.5e-6), where steps of
    # δ do (3.0e-6, 1.5e-7)
    assert max(errs) < 2e-5, errs
    classic = gf.simulate(net, X, y, 200.0, T, method="sliding", step=0.1)
    assert steps[0] < 0.2 * classic.stats["n_accepted"]
    assert classic.stats["n_exponential"] == 0
    # regression: long steps up to 4δ holding two changes of one neuron slid an arrival on that should have crossed
    # here: 5.8e-3 off by t = 50 (now 1.6e-5; the reference's T[1] = 50: a filippov run to 50 alone gives the same
    # loss bit for bit)
    sol = gf.simulate(net, X, y, 50.0, [0.0, 50.0], method="sliding", step=0.05, options={"long_step": 64})
    assert T[1] == 50.0 and abs(sol.loss[-1] / ref.loss[1] - 1) < 1e-4


def test_long_steps_back_off_after_a_retry_instead_of_growing_straight_back_into_it():
    # a retried long step of length h halved it, and the steps grew back to h by 1.25× per step — and were retried
    # again: 181 retries for 229 long steps here (m = D = 512 to t = 2 000: 1 746 for 973); long steps now stay
    # below LONG_BACKOFF·h, a bound that relaxes by LONG_RELAX per step (m = D = 512 to t = 2 000: 135 → 106 s)
    X, y = gf.data.wei2019(24, 50, seed=0)
    net = gf.Network(50, width=64, activation="relu", embedding=gf.RandomFeatures(D=64), scaling="ours", seed=0)
    sol = gf.simulate(net, X, y, 200.0, np.linspace(0.0, 200.0, 5), method="sliding", step=0.125, integrals=False,
                      options={"long_step": 64})
    assert sol.ok and sol.stats["n_exponential"] > 200
    assert sol.stats["n_long_retries"] < 0.25 * sol.stats["n_exponential"], sol.stats  # measured 51 for 446
    fixed = gf.simulate(net, X, y, 200.0, np.linspace(0.0, 200.0, 5), method="sliding", step=0.0625,
                        integrals=False)
    assert np.max(_rel(sol.loss, fixed.loss)) < 1e-3


def test_long_steps_are_refused_where_g_is_rank_deficient_and_checked():
    X, y = gf.data.random_labels(n=8, d=3, seed=0)
    net = gf.Network(3, width=16, activation="relu", seed=0)          # shallow, n > d: rank G = 3
    with pytest.raises(ValueError, match="long_step.*full rank"):
        gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, options={"long_step": 8})
    net, X, y = _p3l(m=16, n=6)
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="long_step.*>= 1"):
            gf.simulate(net, X, y, 1.0, method="sliding", step=0.1, options={"long_step": bad})


def test_a_rate_of_mode_changes_that_decays_to_nothing_does_not_overflow(recwarn):
    # the smoothed rate halves on every step without a change; ν/ρ overflowed once it was subnormal (a numpy
    # RuntimeWarning, once a step landing on a saved time had made it a numpy float: 53 warnings here)
    net, X, y = _p3l(m=8, n=4, d=3)
    sol = gf.simulate(net, X, y, 400.0, np.linspace(0.0, 400.0, 5), method="sliding", step=0.25)
    assert sol.ok and sol.stats["n_accepted"] > 1200
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def _steep_relu(m=16, n=8, scale=1e3):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, 4)) * scale, rng.standard_normal(n)
    return gf.Network(d=4, width=m, activation="relu", seed=0), X, y


def test_a_sliding_step_past_the_stability_limit_is_no_silent_success_and_estimates_nothing():
    # (a robustness audit: inputs of norm ~1e3 put 2/λ_max(M₀) at 2e-6; at step 0.25 every neuron died in the first
    # step and the loss froze at 1.89 where the flow reaches 1e-24 by t = 0.01 — "success", and with
    # error_estimate=True the three frozen solves agreed exactly: an estimate of 0)
    from gflow.solve.sliding import stability_limit

    net, X, y = _steep_relu()
    limit = stability_limit(Problem.from_data(net, X, y), (0.0, 1.0))
    assert limit < 1e-5
    sol = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5, 1.0], method="sliding", step=0.25, warn=False)
    assert sol.stats["unstable_step"] and "; warning: method='sliding' with step=0.25 exceeds the stability" in \
        sol.message
    with pytest.warns(gf.GFlowWarning, match="exceeds the stability limit"):
        est = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5, 1.0], method="sliding", step=0.25, error_estimate=True)
    assert np.all(np.isinf(est.error_estimate[1:])) and not est.config["solver"]["error_estimate"]["reliable"]
    assert "no error estimate: the steps 0.25, 0.125, 0.0625 are all past the stability limit" in est.message
    # (the finer two were not run: they estimate nothing either, and the one at 0.125 took 8 196 steps and 4–6 min)
    assert est.config["solver"]["error_estimate"]["steps"] == [0.25] and est.stats["n_steps"] == sol.stats["n_steps"]
    assert sol.stats["stability_limit"] == pytest.approx(limit, rel=1e-12)


def test_auto_keeps_its_sliding_step_below_the_stability_limit():
    # (beyond 20 000 pairs auto ran sliding at 1/8 whatever the limit: 0.0098 on such a net, 0.3–2.6 % off the
    # loss; 0.0024 on this one)
    from gflow.solve.sliding import stability_limit

    net, X, y = _steep_relu(m=256, n=90, scale=10.0)
    limit = stability_limit(Problem.from_data(net, X, y), (0.0, 1.0))
    sol = gf.simulate(net, X, y, t1=0.005, saveat=[0.0, 0.005])  # (≈ 300 sliding steps)
    solver = sol.config["solver"]
    assert solver["method"] == "sliding" and sol.ok and "unstable_step" not in sol.stats
    assert solver["step"] == pytest.approx(0.9 * limit, rel=1e-12) and limit < 0.125
    assert "exceeds the stability limit 2/λ_max(M₀)" in solver["auto"]


def test_a_refused_extra_halving_past_an_unstable_coarse_step_leaves_the_three_solves_standing():
    # (the review: with max_steps for three solves but not a fourth, the extra halving turned the run into a
    # "max_steps" failure, where it was a success without an estimate)
    net, X, y = _steep_relu(scale=3.0)
    with pytest.warns(gf.GFlowWarning, match="the solve \\(step 0.25\\): method='sliding' with step=0.25 exceeds"):
        est = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5, 1.0], method="sliding", step=0.25, error_estimate=True,
                          max_steps=40)  # (the 0.0625 solve takes ≤ 40 steps, the 0.03125 one more)
    info = est.config["solver"]["error_estimate"]
    assert est.status == "success" and info["steps"] == [0.25, 0.125, 0.0625]
    assert np.all(np.isinf(est.error_estimate[1:]))
    assert "no error estimate" in est.message and "halving on to step 0.03125" in est.message


def test_auto_with_an_error_estimate_records_why_it_picked_sliding_and_a_rerun_keeps_it(monkeypatch):
    # (auto's reason was recorded for its single solve only: error_estimate=True, which picks the same, had none —
    # nor the step it took below the stability limit)
    import gflow.solve.ode as ode

    monkeypatch.setattr(ode, "AUTO_FILIPPOV_MAX_PAIRS", 100)  # (sliding beyond 100 pairs: 16·8 here)
    for scale, step in ((1.0, 0.125), (5.0, None)):
        net, X, y = _steep_relu(scale=scale)
        est = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5], error_estimate=True)
        solver = est.config["solver"]
        assert solver["method"] == "sliding" and "m·n = 128 pairs > 100" in solver["auto"] and est.ok
        first = solver["error_estimate"]["steps"][0]
        if step is None:  # (past the limit: 0.9 of it, said so)
            assert first < 0.125 and f"at step {first:.3g} = 0.9·2/λ_max(M₀)" in solver["auto"]
        else:
            assert first == step and "stability" not in solver["auto"]
        again = gf.rerun(est)
        assert again.config["solver"]["auto"] == solver["auto"]
        np.testing.assert_array_equal(again.loss, est.loss)


def test_a_step_halving_whose_coarsest_step_is_past_the_limit_halves_once_more_and_estimates():
    # (only the coarsest solve, 0.25, is past the limit 0.225: the estimate was inf, "no error estimate", where one
    # more halving gives three stable solves)
    from gflow.solve.sliding import stability_limit

    net, X, y = _steep_relu(scale=3.0)
    limit = stability_limit(Problem.from_data(net, X, y), (0.0, 1.0))
    assert 0.125 < limit < 0.25
    est = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5, 1.0], method="sliding", step=0.25, error_estimate=True)
    info = est.config["solver"]["error_estimate"]
    assert info["steps"] == [0.25, 0.125, 0.0625, 0.03125] and info["steps_used"] == [0.125, 0.0625, 0.03125]
    assert est.ok and np.all(np.isfinite(est.error_estimate)) and "unstable_step" not in est.stats
    assert "the step 0.25 past the stability limit dropped from the estimate" in est.message
    fine = gf.simulate(net, X, y, saveat=[0, 0.25, 0.5, 1.0], method="sliding", step=1 / 512, warn=False)
    err = np.abs(est.loss - fine.loss) / fine.loss
    assert np.all(err[1:] <= est.error_estimate[1:]), (err, est.error_estimate)


def _crawl_case():
    # (an input audit: inputs of norm ~10 put 2/λ_max(M₀) at 0.0202; at step 10 the steps near or past it are retried
    # — about one retry per accepted step — and held at 0.01–0.02: t1 = 20 took 2 315 steps, where max_steps' up-front
    # check counts δ's 2, and t1 = 2 000 ran 178–228 s to "diverged" at t = 340)
    X, y = gf.data.random_labels(n=8, d=4, seed=0)
    return gf.Network(d=4, width=16, activation="relu", seed=0), X * 10, y


def test_steps_held_far_below_the_step_by_retries_stall_with_advice_and_the_partial_trajectory():
    net, X, y = _crawl_case()
    with pytest.warns(gf.GFlowWarning) as said:
        sol = gf.simulate(net, X, y, t1=2000.0, method="sliding", step=10.0, max_wall_time=60)  # (old code: 60 s)
    assert "exceeds the stability limit" in str(said[0].message) and "[stalled]" in str(said[-1].message)
    assert sol.status == "stalled", sol.message
    assert sol.stats["n_accepted"] <= 300 and sol.stats["n_steps"] <= 700  # (measured 200 and 402)
    assert 1.0 < sol.t[-1] < 20.0 and np.all(np.isfinite(sol.loss)) and sol.feature_t[-1] == sol.t[-1]
    msg = sol.message
    assert re.search(r"the steps shrank to about 0\.0\d+ \(step=10; [\d.]+ retries per accepted step", msg), msg
    assert re.search(r"would need about \S+e\+05 steps to reach t1 = 2000 \(max_steps=100000\)", msg), msg
    assert "retried shorter" in msg and "step=10 exceeds the stability limit 2/λ_max(M₀) = 0.0202" in msg
    assert "e.g. step=0.018, what method='auto' takes" in msg and "raise max_steps with it" in msg
    assert "method='filippov'" in msg
    with pytest.raises(gf.SolverError, match=r"\[stalled\] the steps shrank"):
        sol.raise_for_status()


def test_max_steps_bounds_the_real_steps_of_a_sliding_run_not_the_nominal_ones():
    # (δ = 10 to t1 = 20 is 2 nominal steps; the retried, shrunk ones are what max_steps counts)
    net, X, y = _crawl_case()
    sol = gf.simulate(net, X, y, t1=20.0, method="sliding", step=10.0, max_steps=300, warn=False)
    assert sol.status == "max_steps" and sol.stats["n_steps"] == 300 and 0 < sol.t[-1] < 20.0
    assert "max_steps=300 steps were taken" in sol.message and np.all(np.isfinite(sol.loss))


def test_steps_held_by_dense_events_stall_after_a_longer_look():
    # step = 0.05, 2.5× past the limit: no retries, but the run oscillates and its events stay dense (the old code
    # reached t = 170 of 2 000 in 15 752 steps, 60 s); not retried, so the projection must hold over the last half
    # of at least 1 000 accepted steps
    net, X, y = _crawl_case()
    sol = gf.simulate(net, X, y, t1=2000.0, method="sliding", step=0.05, warn=False, max_wall_time=60)
    assert sol.status == "stalled", sol.message
    assert 1000 <= sol.stats["n_accepted"] <= 1500 and sol.stats["n_steps"] <= 1600  # (measured 1 000 and 1 004)
    assert 1.0 < sol.t[-1] < 100.0 and np.all(np.isfinite(sol.loss))
    msg = sol.message
    assert re.search(r"the steps shrank to about 0\.0\d+ \(step=0\.05; 0(\.0\d*)? retries per accepted step", msg), msg
    assert re.search(r"the event-rate control holds them where events are dense: steps are step·ν/ρ, with ρ the "
                     r"rate of mode changes, here ≈ \S+ per unit time, against ν = options=\{'event_rate': 16\}",
                     msg), msg
    assert "step=0.05 exceeds the stability limit 2/λ_max(M₀) = 0.0202" in msg and "step=0.018" in msg


def test_steps_that_grow_or_dip_for_a_while_are_no_stall():
    # (measured: a projection from the last 100 accepted steps at the 200th stopped both, and one blind to the steps'
    # growth since half the run stopped the first at the 1 000th)
    net, X, y = _p3l(m=32, n=8, seed=0)
    sol = gf.simulate(net, X, y, 50.0, method="sliding", step=0.1, options={"event_rate": 1e-3}, warn=False,
                      max_steps=2000)
    assert sol.ok and sol.stats["n_steps"] > 1000, sol.message  # (1 685)
    net, X, y = _p3l(m=32, n=8, seed=1)
    sol = gf.simulate(net, X, y, 10.0, method="sliding", step=0.1, options={"event_rate": 0.1}, warn=False,
                      max_steps=350)
    assert sol.ok and sol.stats["n_steps"] > 250, sol.message  # (312)
