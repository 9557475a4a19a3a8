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
def tiny(exp3_tiny):
    """(folder, result) of exp3.run("tiny"): the session's run (conftest), which test_reproduce reads too."""
    return exp3_tiny


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


def _diverge(runs, **labels):
    """``runs`` with those matching ``labels`` turned into diverged runs (status 'diverged', final values NaN)."""
    return [Run(r.labels, dataclasses.replace(r.solution, status="diverged"))
            if all(r.labels.get(k) == v for k, v in labels.items()) else r for r in runs]


def test_claims_count_a_diverged_seed_whatever_its_place():
    """One of two GD seeds diverged: every claim counts it as a failure and says 'k/N diverged' (claim 0 took
    Python's max over the seeds, which skips a NaN unless it comes first; claims 1–4 averaged it away)."""
    base = grid(lambda s, n, k: {})
    one = _diverge(base, scaling="ntk", seed=1, solver="gd")
    for runs in (one, one[::-1]):  # the verdict must not depend on the order of the runs
        c = exp3.claim_training(runs)
        assert c.verdict == "not confirmed" and "ntk: GD 2e-06 (2/4 diverged)" in c.measured
    # claim 1: a solver with a diverged run does not show lazy training
    lazy = {"ours": 2.0, "ntk": 0.05, "mf": 1.5}
    runs = _diverge(grid(lambda s, n, k: {"move": lazy[s]}), scaling="ntk", n=200, seed=1, solver="gd")
    c = exp3.claim_feature_movement(runs)
    assert c.verdict == "inconclusive" and "ntk 0.05 (1/4 diverged)" in c.measured
    # claim 2: ours does not win where one of its runs diverged
    best = {"ours": (0.3, 0.1), "ntk": (0.6, 0.3), "mf": (0.5, 0.2)}
    runs = _diverge(grid(lambda s, n, k: dict(zip(("mse", "sign"), best[s]))), scaling="ours", n=100, seed=0,
                    solver="gd")
    c = exp3.claim_lowest_test_error(runs)
    assert c.verdict == "inconclusive" and "6/8" in c.measured and "GD n=100: MSE 0.3/0.6/0.5 ✗" in c.measured
    assert "(ours 1/2 diverged)" in c.measured
    # … and a rival with a diverged run loses, whatever its finished run's error (the review: ntk's survivor at 0.2
    # beat ours' 0.3)
    rival = {"ours": (0.3, 0.1), "ntk": (0.2, 0.05), "mf": (0.5, 0.2)}
    runs = _diverge(grid(lambda s, n, k: dict(zip(("mse", "sign"), rival[s]))), scaling="ntk", n=100, seed=1,
                    solver="gd")
    c = exp3.claim_lowest_test_error(runs)
    assert "GD n=100: MSE 0.3/0.2/0.5, sign 0.1/0.05/0.2 (ntk 1/2 diverged)" in c.measured, c.measured
    assert "flow n=100: MSE 0.3/0.2/0.5 ✗" in c.measured and "2/8" in c.measured
    # claim 3: a diverged run at the largest n fails its row
    runs = _diverge(grid(lambda s, n, k: {"mse": 100.0 / n}), scaling="mf", n=200, seed=1, solver="gd")
    c = exp3.claim_trend_with_n(runs)
    assert c.verdict == "inconclusive" and "5/6" in c.measured and "(diverged n=200: 1/2)" in c.measured
    # claim 4: a configuration with a diverged GD seed disagrees, although the finished seed matches the flow
    runs = _diverge(grid(lambda s, n, k: {"mse": 0.5}), scaling="ours", n=200, seed=1, solver="gd")
    pair = next(p for p in exp3.gd_flow_pairs(runs) if (p["scaling"], p["n"]) == ("ours", 200))
    assert pair["gap"] == 0.0 and not pair["gd_ok"] and (pair["gd_failed"], pair["n_gd"]) == (1, 2)
    c = exp3.claim_gd_vs_flow(runs)
    assert c.verdict == "not confirmed" and "1/6 configurations" in c.measured
    assert "ours n=200" in c.measured and "(GD 1/2 diverged) ✗" in c.measured


def test_config_refuses_an_odd_m_with_ntk():
    """The symmetrised NTK needs an even m: refused by the Config, not after the 'ours' runs were computed."""
    with pytest.raises(ValueError, match="m must be even.*got m = 7"):
        exp3.Config(m=7)
    assert exp3.Config(m=7, scalings=("ours", "mf")).m == 7


def test_std_is_the_sample_std():
    """'mean ± std' is the sample std (ddof = 1), as in Exp 2 (Exp 3 used the population std)."""
    runs = [fake(mse=v, seed=k) for k, v in enumerate((0.2, 0.4, 0.9))]
    _, mean, sd = exp3._curves(runs, "test_error")
    assert mean[-1] == pytest.approx(0.5) and sd[-1] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert exp3._curves(runs[:1], "test_error")[2][-1] == 0.0


def test_fig4_scatter_rows_share_one_range(tiny, tmp_path, monkeypatch):
    """Each scatter row of Figure 4 (GD, flow) has one axis range over the three scalings, as the paper's figure:
    with a range per panel the NTK cloud (features barely moving) filled its panel like the others."""
    out, _ = tiny
    _, runs, sc = exp3.load(out / "exp3" / "runs.nc")
    figs = []
    monkeypatch.setattr(exp3, "save_figure", lambda fig, folder, stem: figs.append(fig) or [])
    exp3._fig4(runs, sc, 40, tmp_path)
    axes = np.array(figs[0].axes[:9]).reshape(3, 3)
    lims = exp3.scatter_limits(runs, sc, 40)
    for i, solver in ((1, "gd"), (2, "flow")):
        for ax in axes[i]:
            assert ax.get_xlim() == pytest.approx((-lims[solver], lims[solver]))
            assert ax.get_ylim() == pytest.approx((-lims[solver], lims[solver]))
        ks = [k for k, r in enumerate(runs) if (r.labels["n"], r.labels["solver"]) == (40, solver)]
        assert lims[solver] == pytest.approx(1.08 * max(np.abs(sc["h"][k]).max() for k in ks))
    # a diverged run's features (1e6) leave the range to the finished runs (they shrank the others to a dot)
    k = next(k for k, r in enumerate(runs) if (r.labels["n"], r.labels["solver"], r.labels["scaling"]) ==
             (40, "gd", "ntk"))
    runs[k] = Run(runs[k].labels, dataclasses.replace(runs[k].solution, status="diverged"))
    sc = dict(sc, h=[np.full_like(np.asarray(h, float), 1e6) if i == k else h for i, h in enumerate(sc["h"])])
    assert exp3.scatter_limits(runs, sc, 40)["gd"] < 1e3


def test_ntk_sign_error_at_t0_is_not_decided_by_rounding(tiny):
    """Symmetrised NTK: f⁰ ≡ 0 comes out as ≈ 1e-17 of random sign; an output within rounding of 0 is no
    prediction (an error, as f = 0 is), so the t = 0 sign error is 1, not a coin flip per point (≈ 0.5)."""
    _, res = tiny
    for r in res.select(scaling="ntk"):
        sol = r.solution
        assert np.abs(sol.test_output[0]).max() < 1e-12 and sol.test_sign_error[0] == 1.0
    for r in res.select(scaling="ours"):  # real outputs: the plain count
        sol = r.solution
        assert np.abs(sol.test_output[0]).min() > 1e-10
        assert sol.test_sign_error[0] == np.mean(np.sign(sol.test_output[0]) != sol.y_test)


def test_run_takes_a_config_as_preset(one_thread, tmp_path, monkeypatch):
    """A Config as preset is run and recorded as 'custom' (it was refused), and so is config= that differs from
    the preset's (the summary named the preset for a configuration it did not run)."""
    cfg = exp3.Config(d=10, m=16, ns=(10,), seeds=(0,), scalings=("ours",), n_test=20, steps=10, flow_step=0.5,
                      n_saves=5, keep_features=True)
    monkeypatch.setattr(exp3, "make_figures", lambda *a, **k: [])  # (the figures take seconds)
    res = exp3.run(cfg, tmp_path / "a", progress=False)
    assert res.preset == "custom" and "custom" in (tmp_path / "a" / "exp3" / "summary.md").read_text()
    assert exp3.load(tmp_path / "a" / "exp3" / "runs.nc")[0]["preset"] == "custom"
    assert exp3.run("tiny", tmp_path / "a", progress=False, config=cfg).preset == "custom"  # (runs stored)
    with pytest.raises(ValueError, match="not as both"):
        exp3.run(cfg, tmp_path / "b", config=cfg)
