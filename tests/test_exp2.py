"""Experiment 2 (gflow.experiments.exp2): the tiny preset end to end, and every claim on synthetic runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gflow.experiments import exp2, load_runs
from gflow.experiments.common import Run
from gflow.solution import Solution

# ---------------------------------------------------------------------------------------------------------
# the tiny preset end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp2")  # (conftest runs the suite on one torch thread)
    res = exp2.run("tiny", out, progress=False)
    return out / "exp2", res


def test_tiny_runs_file(tiny):
    folder, res = tiny
    cfg = exp2.PRESETS["tiny"]
    attrs, runs = load_runs(folder / "runs.nc")
    assert attrs["gflow_experiment"] == "exp2" and attrs["preset"] == "tiny"
    assert attrs["config"]["ns"] == list(cfg.ns) and attrs["config"]["ms"] == list(cfg.ms)
    assert len(runs) == len(res.runs) == cfg.n_runs()
    keys = {(r.labels["student"], r.labels["n"], r.labels["m"], r.labels["seed"], r.labels["solver"]) for r in runs}
    expected = {(s, n, m, seed, solver) for s in ("quadratic", "plain") for n in cfg.ns for m in cfg.ms
                for seed in cfg.seeds for solver in ("gd", "flow")}
    expected |= {(s, max(cfg.ns), min(cfg.ms), cfg.seeds[0], "flow_check") for s in ("quadratic", "plain")}
    assert keys == expected
    for r, r0 in zip(runs, res.runs):
        assert r.labels == r0.labels
        assert r.solution.kind == "gd"
        assert r.solution.D == (cfg.d ** 2 if r.labels["student"] == "quadratic" else cfg.d)
        assert r.solution.X_test.shape == (cfg.n_test, cfg.d)
        assert r.labels["step"] == {"gd": cfg.gd_step, "flow": cfg.flow_step, "flow_check": cfg.check_step}[
            r.labels["solver"]]
        assert r.solution.t[-1] == pytest.approx(r.labels["t1"])
        np.testing.assert_allclose(r.solution.test_error, r0.solution.test_error, rtol=1e-12)
    # GD δ = 1 and the flow start from the same network and data: equal test error at t = 0, compared at equal t
    gd = res.select(student="quadratic", n=cfg.ns[0], m=cfg.ms[0], solver="gd")[0].solution
    fl = res.select(student="quadratic", n=cfg.ns[0], m=cfg.ms[0], solver="flow")[0].solution
    assert gd.test_error[0] == pytest.approx(fl.test_error[0], rel=1e-12)
    np.testing.assert_allclose(gd.t, fl.t)


def test_tiny_figures_and_summary(tiny):
    folder, res = tiny
    for stem in ("exp2_fig2", "exp2_fig6", "exp2_widths"):
        for suffix in (".png", ".pdf"):
            p = folder / f"{stem}{suffix}"
            assert p.exists() and p.stat().st_size > 1000, p
            assert p in res.files
    text = (folder / "summary.md").read_text()
    assert len(res.claims) == 8
    for c in res.claims:
        assert c.claim in text and c.measured in text
    for word in ("Rademacher", "N(0, I_6)", "no label noise", "test mean squared error", "halving",
                 "checked against δ = 0.125", "wall time"):
        assert word in text, word
    assert res.wall_time > 0


def test_tiny_report_from_file(tiny, tmp_path, keeps_matplotlib_backend):
    folder, res = tiny
    again = exp2.report(folder / "runs.nc", tmp_path)
    assert [c.verdict for c in again.claims] == [c.verdict for c in res.claims]
    assert [c.measured for c in again.claims] == [c.measured for c in res.claims]
    assert (tmp_path / "summary.md").exists() and (tmp_path / "exp2_fig2.pdf").exists()


# ---------------------------------------------------------------------------------------------------------
# synthetic runs


def _solution(test_error, *, status="success", lam0=1.0, t1=10.0, loss=None):
    te = np.asarray(test_error, float)
    T = te.size
    loss = np.ones(T) if loss is None else np.asarray(loss, float)
    return Solution(t=np.linspace(0.0, t1, T), loss=loss, residual=np.zeros((T, 1)), output=np.zeros((T, 1)),
                    status=status, message="", stats={}, config={"kind": "gd"}, X=np.zeros((1, 2)), y=np.zeros(1),
                    c=np.ones(2), W_final=np.zeros((2, 2)), feature_t=np.zeros(0), H=np.zeros((0, 2, 1)),
                    test_error=te, lam_max_M=np.full(T, lam0), y_test=np.full(4, 0.3))


def _run(student, n, m, seed, solver, final, *, status="success", lam0=1.0, step=None):
    step = step if step is not None else {"gd": 1.0, "flow": 0.1, "flow_check": 0.05}[solver]
    curve = np.linspace(0.2, final, 6) if status == "success" else np.array([0.2, 1e3, 1e200])
    return Run({"student": student, "n": n, "m": m, "seed": seed, "solver": solver, "step": step, "t1": 10.0},
               _solution(curve, status=status, lam0=lam0, t1=10.0 if status == "success" else 4.0))


NS, MS, SEEDS = (50, 100, 150), (256, 1024), (0, 1, 2, 3)


def _synthetic(quad, plain, *, gd_factor=1.0, width_factor=1.0, noise=1e-3, diverge=(), lam0=1.5):
    """Runs with final test errors quad(n), plain(n) (plus seed noise); GD = factor × flow; small m = factor ×."""
    rng = np.random.default_rng(0)
    runs = []
    for student, fn in (("quadratic", quad), ("plain", plain)):
        for n in NS:
            for m in MS:
                for seed in SEEDS:
                    e = fn(n, seed) * (width_factor if m == MS[0] else 1.0) + noise * rng.standard_normal()
                    runs.append(_run(student, n, m, seed, "flow", e))
                    div = (student, n) in diverge
                    runs.append(_run(student, n, m, seed, "gd", e * gd_factor, status="diverged" if div else "success",
                                     lam0=(3.0 if div else lam0)))
    return runs


def test_compare():
    assert exp2.compare([1.0, 1.1, 0.9], [2.0, 2.1, 2.05]) == "yes"
    assert exp2.compare([2.0, 2.1, 2.05], [1.0, 1.1, 0.9]) == "no"
    assert exp2.compare([1.0, 1.3, 1.0], [1.1, 1.0, 1.3]) == "unclear"
    assert exp2.compare([1.0, 1.0], [math.inf, math.inf]) == "yes"
    assert exp2.compare([math.inf], [1.0]) == "no"
    assert exp2.compare([1.0], [2.0]) == "unclear"  # one seed: no error bar


def test_value_at_diverged_and_missing():
    r = _run("plain", 50, 256, 0, "gd", 0.1, status="diverged")
    assert exp2.value_at(r) == math.inf
    ok = _run("plain", 50, 256, 0, "gd", 0.1)
    assert exp2.value_at(ok) == pytest.approx(0.1)
    assert math.isnan(exp2.value_at(ok, t=3.3))


def test_claim_embedding_helps():
    runs = _synthetic(lambda n, s: 0.06 if n == 50 else 0.05 - 1e-4 * n, lambda n, s: 0.05)
    c = exp2.claim_embedding_helps(runs, "flow")
    assert c.verdict == "confirmed" and "n ≥ 100" in c.measured and "m = 1024" in c.claim
    c = exp2.claim_embedding_helps(_synthetic(lambda n, s: 0.06, lambda n, s: 0.05), "flow")
    assert c.verdict == "not confirmed"
    # better on average but within two standard errors over seeds
    c = exp2.claim_embedding_helps(_synthetic(lambda n, s: 0.05 + (0.008 if s % 2 else -0.01), lambda n, s: 0.05,
                                              noise=0.0), "flow")
    assert c.verdict == "inconclusive"
    # GD δ = 1 of the plain net diverges at the largest n: the quadratic one is better there
    runs = _synthetic(lambda n, s: 0.045, lambda n, s: 0.04, diverge={("plain", 150)})
    c = exp2.claim_embedding_helps(runs, "gd")
    assert c.verdict == "confirmed" and "n ≥ 150" in c.measured and "diverged" in c.measured


def test_claim_decreases_with_n():
    dec = _synthetic(lambda n, s: 0.06 - 1e-4 * n, lambda n, s: 0.05)
    assert exp2.claim_decreases_with_n(dec, "flow").verdict == "confirmed"
    inc = _synthetic(lambda n, s: 0.03 + 1e-4 * n, lambda n, s: 0.05)
    assert exp2.claim_decreases_with_n(inc, "flow").verdict == "not confirmed"
    # a significant increase in the middle of an overall decrease
    bump = _synthetic(lambda n, s: {50: 0.05, 100: 0.06, 150: 0.04}[n], lambda n, s: 0.05)
    c = exp2.claim_decreases_with_n(bump, "flow")
    assert c.verdict == "inconclusive" and "(50, 100)" in c.measured


def test_claim_widths_agree():
    assert exp2.claim_widths_agree(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, width_factor=1.05)).verdict == "confirmed"
    c = exp2.claim_widths_agree(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, width_factor=1.5, noise=0.0))
    assert c.verdict == "not confirmed" and "50.0%" in c.measured
    single = [r for r in _synthetic(lambda n, s: 0.04, lambda n, s: 0.05) if r.labels["m"] == 1024]
    assert exp2.claim_widths_agree(single).verdict == "inconclusive"


def test_claim_gd_matches_flow():
    c = exp2.claim_gd_matches_flow(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, gd_factor=1.02), tol=0.1)
    assert c.verdict == "confirmed" and "max 2.00%" in c.measured and "δ·λ_max(M₀) > 2 in 0/48" in c.measured
    c = exp2.claim_gd_matches_flow(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, gd_factor=1.3), tol=0.1)
    assert c.verdict == "not confirmed" and "max 30.00%" in c.measured
    c = exp2.claim_gd_matches_flow(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, diverge={("plain", 150)}), tol=0.1)
    assert c.verdict == "not confirmed" and "diverged (final loss > L₀) in 8/48" in c.measured and "> 2 in 8/48" in c.measured
    rows = exp2.gd_flow_gaps(_synthetic(lambda n, s: 0.04, lambda n, s: 0.05, lam0=2.5))
    assert len(rows) == 48 and all(r["step_lam0"] == pytest.approx(2.5) for r in rows)


def test_divergence_and_loss_spikes_from_the_data():
    # GD past its stability limit whose loss has grown but not yet overflowed counts as diverged
    grown = Run({"student": "plain", "n": 50, "m": 256, "seed": 0, "solver": "gd", "step": 1.0, "t1": 10.0},
                _solution([0.1, 0.2, 5.0], loss=[1.0, 10.0, 1e80]))
    assert exp2.diverged(grown.solution) and exp2.value_at(grown) == math.inf
    # a transient rise (catapult) that then converges is not divergence, and is reported
    spike = Run({"student": "plain", "n": 50, "m": 256, "seed": 0, "solver": "gd", "step": 1.0, "t1": 10.0},
                _solution([0.1, 3.0, 0.2], loss=[1.0, 40.0, 1e-3], lam0=2.9))
    flow = _run("plain", 50, 256, 0, "flow", 0.1)
    assert not exp2.diverged(spike.solution) and exp2.value_at(spike) == pytest.approx(0.2)
    c = exp2.claim_gd_matches_flow([spike, flow])
    assert c.verdict == "not confirmed" and "40× L₀" in c.measured and "max 100.00%" in c.measured
    c = exp2.claim_gd_matches_flow([grown, flow])
    assert c.verdict == "not confirmed" and "diverged (final loss > L₀) in 1/1" in c.measured


def test_claim_flow_converged():
    base = [_run("quadratic", 150, 256, 0, "flow", 0.0400)]
    good = base + [_run("quadratic", 150, 256, 0, "flow_check", 0.0401)]
    c = exp2.claim_flow_converged(good, tol=0.01)
    assert c.verdict == "confirmed" and "Δ(final) = 0.249%" in c.measured
    assert "checked against δ = 0.05: Δ = 0.25%" in exp2.check_text(good)
    bad = base + [_run("quadratic", 150, 256, 0, "flow_check", 0.0500)]
    assert exp2.claim_flow_converged(bad, tol=0.01).verdict == "not confirmed"
    assert exp2.claim_flow_converged(base).verdict == "inconclusive"


def test_config_validation():
    with pytest.raises(ValueError, match="multiple"):
        exp2.Config(save_dt=0.15)
    with pytest.raises(ValueError, match="flow_horizon"):
        exp2.Config(steps=100, flow_horizon=200.0)
    with pytest.raises(ValueError, match="preset"):
        exp2.run("nope")
    assert set(exp2.PRESETS) == {"tiny", "quick", "paper"}
    paper = exp2.PRESETS["paper"]
    assert paper.ms == (2048, 8192) and len(paper.seeds) == 5 and paper.steps == 50_000 and paper.gd_step == 1.0
    assert paper.d == 30 and paper.n_test == 500 and paper.ns == (50, 100, 150, 200, 250)
