"""Experiment 3 (feature learning vs lazy training): the tiny preset end to end, and every claim on synthetic runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gflow.experiments import exp3
from gflow.experiments.common import Run, load_runs, save_runs
from gflow.solution import Solution


@pytest.fixture(scope="module")
def one_thread():
    """Other processes share the machine: a single BLAS thread is faster and steadier than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("exp3")
    return out, exp3.run("tiny", out, progress=False)


# ---------------------------------------------------------------------------------------------------------
# end to end


def test_presets():
    assert set(exp3.PRESETS) == {"tiny", "quick", "paper"}
    p = exp3.PRESETS["paper"]
    assert (p.d, p.m, p.ns, len(p.seeds), p.steps, p.gd_step, p.n_test) == (50, 8192, (400, 600, 800), 5, 50_000, 1.0, 500)
    assert p.scalings == ("ours", "ntk", "mf") and p.space == "auto"
    q = exp3.PRESETS["quick"]
    assert q.d == 50 and q.m <= 512 and max(q.ns) <= 200 and q.flow_step < q.gd_step
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.m = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="scalings"):
        exp3.Config(scalings=("ours", "lazy"))
    with pytest.raises(ValueError, match="multiple"):
        exp3.Config(steps=1001, n_saves=100)
    with pytest.raises(ValueError, match="check_n"):
        exp3.Config(check_n=123)
    with pytest.raises(ValueError, match="preset"):
        exp3.run("huge")


def test_tiny_end_to_end(tiny):
    out, res = tiny
    cfg = exp3.PRESETS["tiny"]
    d = out / "exp3"
    assert res.name == "exp3" and res.preset == "tiny" and res.wall_time > 0
    # runs.nc: one group per (scaling, n, seed, solver) plus the halving check
    attrs, runs, sc = exp3.load(d / "runs.nc")  # load_runs plus the scatter group
    assert attrs["gflow_experiment"] == "exp3" and attrs["preset"] == "tiny"
    assert attrs["config"]["m"] == cfg.m and tuple(attrs["config"]["ns"]) == cfg.ns
    n_expected = len(cfg.scalings) * len(cfg.ns) * len(cfg.seeds) * 2 + 1
    assert len(runs) == len(res.runs) == n_expected == attrs["n_runs"]
    keys = {(r.labels["scaling"], r.labels["n"], r.labels["seed"], r.labels["solver"]) for r in runs}
    expected = {(s, n, seed, solver) for s in cfg.scalings for n in cfg.ns for seed in cfg.seeds
                for solver in ("gd", "flow")}
    expected.add(("ours", max(cfg.ns), cfg.seeds[0], "flow_check"))
    assert keys == expected
    for r, r0 in zip(runs, res.runs):
        assert r.labels == r0.labels
        sol = r.solution
        assert sol.ok and sol.m == cfg.m and sol.D == cfg.m and sol.n == r.labels["n"]
        assert sol.config["kind"] == "gd" and sol.config["network"]["scaling"] == r.labels["scaling"]
        assert sol.config["solver"]["step"] == r.labels["step"]
        assert sol.t[-1] == pytest.approx(cfg.horizon)
        assert len(sol.t) == cfg.n_saves + 1
        assert sol.test_error is not None and sol.test_sign_error is not None and len(sol.y_test) == cfg.n_test
        np.testing.assert_allclose(sol.test_error, res.runs[runs.index(r)].solution.test_error)
    steps = {r.labels["solver"]: r.labels["step"] for r in runs}
    assert steps == {"gd": 1.0, "flow": cfg.flow_step, "flow_check": cfg.flow_step / 2}
    # same initialisation and data for GD and flow: identical t = 0 quantities
    for s in cfg.scalings:
        g, f = (exp3._select(runs, scaling=s, n=cfg.ns[0], solver=k)[0].solution for k in ("gd", "flow"))
        assert g.loss[0] == f.loss[0] and g.test_error[0] == f.test_error[0]
    # scatter: x1, x2 at t = 0 and the end, all neurons; equals the kept features
    assert sc["h"].shape == (n_expected, 2, 2, cfg.m)
    sol = runs[0].solution
    np.testing.assert_allclose(sc["h"][0, 0], sol.H[[0, -1], :, 0])
    np.testing.assert_allclose(sc["h"][0, 1], sol.H_test[[0, -1], :, 0])
    np.testing.assert_allclose(sc["t"][0], [0.0, cfg.horizon])
    # NTK is symmetrised: f0 = 0, initial training loss = ½‖y‖² = n/2
    ntk = exp3._select(runs, scaling="ntk", solver="gd")[0].solution
    assert ntk.loss[0] == pytest.approx(ntk.n / 2)
    # figures and summary
    stems = [f"fig4_n{n}" for n in cfg.fig4_ns] + ["fig3_test_error_vs_n", "gd_vs_flow"]
    for stem in stems:
        for suffix in (".png", ".pdf"):
            p = d / f"{stem}{suffix}"
            assert p.exists() and p.stat().st_size > 1000 and p in res.files
    text = (d / "summary.md").read_text()
    assert len(res.claims) == len(exp3.CLAIMS) == 5
    for c in res.claims:
        assert c.claim in text and c.measured in text
        assert c.verdict in ("confirmed", "not confirmed", "inconclusive")
    for word in ("test MSE", "sign error", "halving", "δ_f", "training MSE", "wall time"):
        assert word in text
    for stem in stems:
        assert f"({stem}.png)" in text
    # the claims are functions of the saved runs alone
    assert [c.verdict for c in exp3.claims_of(runs)] == [c.verdict for c in res.claims]



def test_figures_from_the_file_leave_the_matplotlib_backend_alone(tiny, tmp_path, keeps_matplotlib_backend):
    out, _ = tiny
    _, runs, sc = exp3.load(out / "exp3" / "runs.nc")
    files = exp3.make_figures(runs, sc, tmp_path)
    assert files and all(f.exists() for f in files)

def test_slim_runs_keep_the_scatter(one_thread, tmp_path):
    """keep_features=False (paper sizes) drops H, H_test and the weights but keeps the scatter and the metrics."""
    full = exp3.PRESETS["tiny"]
    slim = dataclasses.replace(full, keep_features=False)
    data = exp3._data(full, 20, 0)
    (r1, sc1, t1), (r2, sc2, t2) = (exp3._one(c, "mf", 20, 0, "gd", data, "cpu") for c in (full, slim))
    np.testing.assert_array_equal(sc1, sc2)
    np.testing.assert_array_equal(t1, t2)
    assert sc1.shape == (2, 2, full.m) and t1.tolist() == [0.0, full.horizon]
    s2 = r2.solution
    assert s2.H.shape == (0, full.m, 20) and s2.H_test is None and s2.W_final.strides == (0, 0) and s2.D == full.m
    np.testing.assert_array_equal(s2.test_error, r1.solution.test_error)
    save_runs(tmp_path / "r.nc", [r2], experiment="exp3", preset="tiny", config=slim)
    _, (back,) = load_runs(tmp_path / "r.nc")
    assert back.labels == r2.labels and back.solution.H.shape[0] == 0
    np.testing.assert_array_equal(back.solution.feature_movement, s2.feature_movement)


def test_tiny_features_move_less_under_ntk(tiny):
    _, res = tiny
    mv = {s: np.mean([exp3.final(r, "movement") for r in res.select(scaling=s, solver="flow")])
          for s in ("ours", "ntk", "mf")}
    assert mv["ntk"] < 0.3 * mv["ours"] and mv["ntk"] < 0.3 * mv["mf"]
    assert res.claims[1].verdict == "confirmed"


# ---------------------------------------------------------------------------------------------------------
# claims on synthetic runs


def fake(scaling="ours", n=100, seed=0, solver="gd", *, step=None, loss_end=1e-4, mse=0.5, sign=0.2, move=1.0,
         lam0=1.0, status="success", m=64) -> Run:
    """A synthetic Run with the fields the claims read: loss, test MSE/sign error, feature movement, λ_max(M₀)."""
    step = {"gd": 1.0, "flow": 0.1, "flow_check": 0.05}[solver] if step is None else step
    T = 5
    t = np.linspace(0.0, 10.0, T)
    loss = np.geomspace(n / 2, loss_end, T)
    sol = Solution(
        t=t, loss=loss, residual=np.zeros((T, 2)), output=np.zeros((T, 2)), status=status, message="", stats={},
        config={"kind": "gd"}, X=np.zeros((2, 3)), y=np.array([1.0, -1.0]), c=np.ones(m), W_final=np.zeros((m, m)),
        feature_t=np.zeros(0), H=np.zeros((0, m, 2)),
        test_error=np.linspace(1.0, mse, T), test_sign_error=np.linspace(0.5, sign, T),
        feature_movement=np.outer(np.linspace(0.0, move, T), np.ones(2)), lam_max_M=np.full(T, lam0),
    )
    return Run({"scaling": scaling, "n": n, "seed": seed, "solver": solver, "step": step, "m": m}, sol)


def grid(f, ns=(100, 200), seeds=(0, 1), solvers=("gd", "flow"), check=True):
    """Runs for every scaling, n, seed, solver with keywords f(scaling, n, solver) (plus a converged check)."""
    runs = [fake(s, n, seed, solver, **f(s, n, solver)) for s in ("ours", "ntk", "mf") for n in ns for seed in seeds
            for solver in solvers]
    if check:
        kw = f("ours", max(ns), "flow")
        runs.append(fake("ours", max(ns), seeds[0], "flow_check", **kw))
    return runs


def test_claim_training():
    assert exp3.claim_training(grid(lambda s, n, k: {})).verdict == "confirmed"
    slow = grid(lambda s, n, k: {"loss_end": 10.0 if (s, n) == ("mf", 200) else 1e-4})
    c = exp3.claim_training(slow)
    assert c.verdict == "not confirmed" and "mf/gd" in c.measured
    diverged = grid(lambda s, n, k: {"status": "diverged" if (s, k) == ("ours", "gd") else "success"})
    assert exp3.claim_training(diverged).verdict == "not confirmed"
    assert exp3.claim_training([]).verdict == "inconclusive"


def test_claim_feature_movement():
    lazy = {"ours": 2.0, "ntk": 0.05, "mf": 1.5}
    c = exp3.claim_feature_movement(grid(lambda s, n, k: {"move": lazy[s]}))
    assert c.verdict == "confirmed" and "ntk/ours 0.025" in c.measured
    assert exp3.claim_feature_movement(grid(lambda s, n, k: {"move": 1.0})).verdict == "not confirmed"
    # lazy under the flow only
    mixed = grid(lambda s, n, k: {"move": lazy[s] if k == "flow" else 1.0})
    assert exp3.claim_feature_movement(mixed).verdict == "inconclusive"
    only_two = [r for r in grid(lambda s, n, k: {"move": lazy[s]}) if r.labels["scaling"] != "mf"]
    assert exp3.claim_feature_movement(only_two).verdict == "inconclusive"


def test_claim_lowest_test_error():
    best = {"ours": (0.3, 0.1), "ntk": (0.6, 0.3), "mf": (0.5, 0.2)}
    c = exp3.claim_lowest_test_error(grid(lambda s, n, k: dict(zip(("mse", "sign"), best[s]))))
    assert c.verdict == "confirmed" and "8/8" in c.measured
    worst = {"ours": (0.9, 0.4), "ntk": (0.6, 0.3), "mf": (0.5, 0.2)}
    assert exp3.claim_lowest_test_error(grid(lambda s, n, k: dict(zip(("mse", "sign"), worst[s])))).verdict \
        == "not confirmed"
    # ours lowest in MSE but not in sign error: half of the comparisons
    mixed = {"ours": (0.3, 0.4), "ntk": (0.6, 0.3), "mf": (0.5, 0.2)}
    c = exp3.claim_lowest_test_error(grid(lambda s, n, k: dict(zip(("mse", "sign"), mixed[s]))))
    assert c.verdict == "inconclusive" and "4/8" in c.measured
    # ties (e.g. every sign error 0) count for ours
    tie = grid(lambda s, n, k: {"mse": {"ours": 0.1, "ntk": 0.2, "mf": 0.2}[s], "sign": 0.0})
    assert exp3.claim_lowest_test_error(tie).verdict == "confirmed"
    assert exp3.claim_lowest_test_error([r for r in tie if r.labels["scaling"] == "ours"]).verdict == "inconclusive"


def test_claim_trend_with_n():
    down = grid(lambda s, n, k: {"mse": 100.0 / n}, ns=(100, 150, 200))
    c = exp3.claim_trend_with_n(down)
    assert c.verdict == "confirmed" and "6/6" in c.measured
    up = grid(lambda s, n, k: {"mse": n / 100.0})
    assert exp3.claim_trend_with_n(up).verdict == "not confirmed"
    mixed = grid(lambda s, n, k: {"mse": 100.0 / n if s != "mf" else n / 100.0})
    assert exp3.claim_trend_with_n(mixed).verdict == "inconclusive"
    assert exp3.claim_trend_with_n(grid(lambda s, n, k: {}, ns=(100,))).verdict == "inconclusive"


def test_claim_gd_vs_flow():
    same = grid(lambda s, n, k: {"mse": 0.5, "lam0": n / 100.0})
    c = exp3.claim_gd_vs_flow(same)
    assert c.verdict == "confirmed" and "0/6" in c.measured and "test MSE by 0 %" in c.measured
    # GD twice the flow's test error where δλ_max(M0) > 2 (n = 300): they disagree
    apart = grid(lambda s, n, k: {"mse": 1.0 if (k == "gd" and n == 300) else 0.5, "lam0": n / 100.0},
                 ns=(100, 300))
    c = exp3.claim_gd_vs_flow(apart)
    assert c.verdict == "not confirmed" and "3/6" in c.measured and "+100%" in c.measured
    pairs = exp3.gd_flow_pairs(apart)
    assert {(p["n"], round(p["stability"], 6)) for p in pairs} == {(100, 1.0), (300, 3.0)}
    assert all(p["gap"] == pytest.approx(1.0 if p["n"] == 300 else 0.0) for p in pairs)
    # the flow proxy is not converged: halving δ_f changes the test MSE by 10 %
    unconverged = [r for r in same if r.labels["solver"] != "flow_check"]
    unconverged.append(fake("ours", 200, 0, "flow_check", mse=0.55))
    assert exp3.flow_check(unconverged)["rel"] == pytest.approx(0.05 / 0.55)
    assert exp3.claim_gd_vs_flow(unconverged).verdict == "inconclusive"
    # no halving check at all, or no pairs
    assert exp3.claim_gd_vs_flow([r for r in same if r.labels["solver"] != "flow_check"]).verdict == "inconclusive"
    assert exp3.claim_gd_vs_flow([r for r in same if r.labels["solver"] == "gd"]).verdict == "inconclusive"
    # a diverged GD run is a disagreement
    div = grid(lambda s, n, k: {"mse": 0.5, "status": "diverged" if (s, n, k) == ("ntk", 200, "gd") else "success"})
    assert exp3.claim_gd_vs_flow(div).verdict == "not confirmed"
