"""Tiny modes of ``gflow bench accuracy`` and ``gflow bench speed``: outputs produced and well formed.

Speed is not tested here (no timed unit tests); the benchmarks themselves state met / missed per target.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from gflow.bench import accuracy as acc
from gflow.cli import main

VERDICTS = {"met", "missed", "not measured"}


def _strict_json(path):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token} in {path}")

    return json.loads(path.read_text(), parse_constant=bad)


def _check_common(data, benchmark):
    assert data["benchmark"] == benchmark and data["mode"] == "tiny" and data["dtype"] == "float64"
    assert {"platform", "cpu", "torch_threads", "device"} <= set(data["machine"])
    assert {"torch", "gflow"} <= set(data["versions"])
    assert data["seeds"]
    assert data["targets"] and all(t["verdict"] in VERDICTS and t["detail"] for t in data["targets"])


def test_accuracy_tiny_writes_json_with_every_number_and_the_work_precision_figures(tmp_path, keeps_matplotlib_backend,
                                                                                     monkeypatch):
    # bosh3 runs on torchdiffeq, made "not installed" here: recorded as unavailable, the run goes on
    monkeypatch.setattr(acc, "_backend_installed", lambda backend: backend != "torchdiffeq")
    methods = "gd,midpoint,rk4,dopri5,DOP853,LSODA,bosh3"
    torch.manual_seed(12345)
    rng = torch.random.get_rng_state()
    assert main(["bench", "accuracy", "--tiny", "--out", str(tmp_path), "--methods", methods]) == 0
    assert torch.equal(torch.random.get_rng_state(), rng)  # (it reseeded the caller's global RNG)
    data = _strict_json(tmp_path / "accuracy.json")
    _check_common(data, "accuracy")
    assert data["unavailable"] == ["bosh3"]
    (prob,) = data["problems"]
    assert max(prob["reference"]["rel_diff_loss_at"]) < 1e-9  # the reference agrees with a second method
    assert prob["reference"]["check_method"] != prob["reference"]["method"]
    rows = prob["rows"]
    assert {"auto", "gd", "midpoint", "rk4", "dopri5", "DOP853", "LSODA", "bosh3"} == {r["method"] for r in rows}
    # the default (method="auto") runs at every rtol and records its pick, which follows rtol; the targets score
    # it and never count it as a rival of the methods it runs
    assert prob["auto_picks"] == {"0.001": "dopri5", "1e-06": "dop853"}
    assert all(r["picked"] == prob["auto_picks"][f"{r['param']:g}"] for r in rows if r["method"] == "auto")
    assert prob["to_1e-6"]["best_evals"]["method"] != "auto"
    assert any(t["target"].startswith(f"{prob['problem']['name']}: default auto (dop853/dopri5)") for t in data["targets"])
    assert [r["status"] for r in rows if r["method"] == "bosh3"] == ["unavailable"]
    for r in rows:
        if r["status"] == "success":
            assert r["n_f_evals"] > 0 and r["wall_s"] > 0
            assert len(r["rel_err_loss_at"]) == len(prob["problem"]["times"])
            assert 0 <= r["rel_err_loss"] < 1 and 0 <= r["rel_err_H"] < 10
    # tighter tolerance, smaller error; rk4 and midpoint show their orders
    e = {r["param"]: r["rel_err_loss"] for r in rows if r["method"] == "DOP853"}
    assert e[1e-6] < e[1e-3]
    assert 3.0 < prob["orders"]["rk4"] < 5.5 and 1.5 < prob["orders"]["midpoint"] < 3.0
    assert prob["stability_limit_gd"] == pytest.approx(2.0 / prob["lam_max_M0"])
    assert prob["to_1e-6"]["best_evals"]["method"] is not None
    assert (tmp_path / "work_precision.png").stat().st_size > 10_000 and (tmp_path / "work_precision.pdf").exists()


def test_speed_tiny_writes_json_with_every_section_and_a_figure(tmp_path, keeps_matplotlib_backend):
    assert main(["bench", "speed", "--tiny", "--out", str(tmp_path)]) == 0
    data = _strict_json(tmp_path / "speed.json")
    _check_common(data, "speed")
    assert data["matmul_peak"]["gflops"] > 0
    (rhs,) = data["rhs"]
    assert rhs["status"] == "ok" and rhs["weight_s"] > 0 and rhs["feature_s"] > 0
    assert rhs["flop_ratio"] == pytest.approx(2 * rhs["D"] / rhs["n"])
    # the bound from the shared elementwise work: below the feature RHS's own time (it is part of it) and above
    # the measured speed-up up to timing noise
    assert 0 < rhs["common_s"] and rhs["speedup_bound"] > 0.5 * rhs["speedup"]
    (v,) = [t for t in data["targets"] if t["target"].startswith("RHS feature")]
    assert "bounds the speed-up" in v["detail"]
    (gd,) = data["gd"]
    assert gd["rel_W_diff"] < 1e-10  # the autograd peer and gf.gradient_descent compute the same iterates
    for key in ("gflow_step_s", "gflow_setup_s", "gflow_integrals_step_s", "peer_step_s", "speedup"):
        assert math.isfinite(gd[key]) and gd[key] >= 0
    ov = data["overhead"]
    assert ov["rhs_s"] > 0 and ov["default_method"] in {r["method"] for r in ov["rows"]}
    assert all(0 <= r["overhead_share"] <= 1 for r in ov["rows"] if "overhead_share" in r)
    assert set(data["scaling"]["slopes"]) == {"weight", "feature"}
    assert (tmp_path / "speed.png").stat().st_size > 10_000


def test_cost_to_interpolates_log_log_between_the_runs_around_the_target():
    rows = [{"status": "success", "rel_err_loss": 1e-4, "n_f_evals": 100},
            {"status": "success", "rel_err_loss": 1e-8, "n_f_evals": 1000},
            {"status": "time_budget", "rel_err_loss": 1e-12, "n_f_evals": 10}]
    assert acc.cost_to(rows, 1e-6, "n_f_evals") == pytest.approx(10**2.5)
    assert acc.cost_to(rows, 1e-9, "n_f_evals") is None  # never reached by a successful run
    assert acc.cost_to(rows, 1e-3, "n_f_evals") == 100


def test_method_lists_refuse_unknown_names_keep_uninstalled_ones_and_reject_bad_types(monkeypatch):
    # a typo was recorded as "unavailable" and the benchmark ran without it
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['warp_drive'\]; the known methods are gd, auto, "
                       r".*dop853"):
        acc.resolve_methods(["gd", "rk4", "warp_drive"])
    # known methods whose backend is not installed are unavailable; the others run
    monkeypatch.setattr(acc, "_backend_installed", lambda backend: backend not in ("torchdiffeq", "scipy"))
    run, unavailable = acc.resolve_methods(["gd", "rk4", "torchdiffeq.dopri5", "dopri8", "LSODA", "auto"])
    assert run == ["gd", "rk4", "auto"] and unavailable == ["torchdiffeq.dopri5", "dopri8", "LSODA"]
    assert "DOP853" not in acc.available_methods() and "dop853" in acc.available_methods()
    with pytest.raises(TypeError, match="methods"):
        acc.resolve_methods("rk4")
    default_run, _ = acc.resolve_methods(None)
    assert acc.default_method() in default_run and "gd" in default_run


def test_bench_writes_to_a_new_folder_by_default_and_keeps_existing_results_unless_forced(tmp_path, capsys,
                                                                                          monkeypatch):
    # the default --out was benchmarks/results/<kind>: from a checkout's root it replaced the committed results
    ran = []
    monkeypatch.setattr("gflow.bench.speed.run_speed", lambda mode, out: ran.append((mode, Path(out))))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks" / "results" / "speed").mkdir(parents=True)
    committed = tmp_path / "benchmarks" / "results" / "speed" / "speed.json"
    committed.write_text("{}")
    assert main(["bench", "speed", "--tiny"]) == 0
    (mode, out), = ran
    assert mode == "tiny" and out.parent == Path(".") and re.fullmatch(r"gflow-bench-speed-\d{8}-\d{6}", out.name)
    assert f"results written to {out}/" in capsys.readouterr().out
    monkeypatch.setattr("gflow.bench.cli.strftime", lambda fmt: out.name.removeprefix("gflow-bench-speed-"))
    out.mkdir()  # the next default, in the same second, is a new folder too
    assert main(["bench", "speed", "--tiny"]) == 0 and ran[-1][1].name == f"{out.name}-2"
    # an explicit --out that holds this benchmark's results is refused, and replaced with --force
    assert main(["bench", "speed", "--tiny", "--out", str(committed.parent)]) == 2 and len(ran) == 2
    err = capsys.readouterr().err
    assert "holds results of 'gflow bench speed' already (speed.json); add --force to replace them" in err
    assert main(["bench", "speed", "--tiny", "--out", str(committed.parent), "--force"]) == 0
    assert ran[-1][1] == committed.parent
    # a folder with other files (or another benchmark's results) is written into as before
    assert main(["bench", "accuracy", "--tiny", "--out", str(committed.parent), "--problems", "nope"]) == 2
    assert "unknown problem" in capsys.readouterr().err


def test_bench_cli_refuses_an_unknown_method_naming_the_known_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(acc, "run_accuracy", lambda *a, **k: pytest.fail("ran with a misspelt method"))
    out = tmp_path / "acc"
    assert main(["bench", "accuracy", "--tiny", "--out", str(out), "--methods", "gd,dop835"]) == 2
    err = capsys.readouterr().err
    assert "--methods: unknown method(s) ['dop835']; the known methods are gd, auto, " in err and "dop853" in err
    assert not out.exists()


def test_bench_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["bench", "accuracy", "--tiny", "--out", str(tmp_path), "--problems", "nope"]) == 2
    assert "unknown problem" in capsys.readouterr().err
    assert main(["bench", "speed", "--tiny", "--out", str(tmp_path), "--methods", "rk4"]) == 2
    with pytest.raises(SystemExit):
        main(["bench", "accuracy", "--tiny", "--quick"])


def test_timed_rhs_counts_the_evaluations_of_a_solve_and_restores_the_fields(make_data):
    import gflow as gf
    from gflow.bench.speed import timed_rhs
    from gflow.fields.feature_space import FeatureSpaceField

    original = FeatureSpaceField.rhs_into
    X, y = make_data(n=4, d=3, seed=1)
    with timed_rhs() as acc:
        sol = gf.simulate(gf.Network(d=3, width=8, seed=2), X, y, t1=1.0, method="rk4", step=0.25, space="feature",
                          integrals=False)
    assert acc["calls"] == sol.stats["n_f_evals"] > 0 and acc["seconds"] > 0
    assert FeatureSpaceField.rhs_into is original


def test_accuracy_relu_problem_uses_a_checked_filippov_reference_and_states_the_relu_target():
    from gflow.bench.problems import BenchProblem

    prob = BenchProblem("relu_tiny", "tiny P-3L ReLU", n=5, d=6, width=16, D=16, activation="relu", data="wei2019",
                        t1=2.0, times=(1.0, 2.0), budget_s=30.0)
    settings = {"gd_steps": (0.5, 0.25), "fixed_steps": (0.25,), "rtols": (1e-3, 1e-6), "solve_budget_s": 5.0}
    res = acc.run_problem(prob, ["gd", "euler", "sliding", "filippov", "dop853"], [], settings,
                          log=lambda *a: None)
    assert res["reference"]["method"] == "filippov"
    assert res["reference"]["check_method"].startswith("filippov")
    assert max(res["reference"]["rel_diff_loss_at"]) < 1e-8
    assert {r["method"] for r in res["rows"]} == {"gd", "euler", "sliding", "filippov"}  # smooth ones stall here
    fil = [r for r in res["rows"] if r["method"] == "filippov"]
    assert all(r["status"] == "success" for r in fil) and min(r["rel_err_loss"] for r in fil) < 1e-5
    (sl,) = [r for r in res["rows"] if r["method"] == "sliding"]
    (eu,) = [r for r in res["rows"] if r["method"] == "euler"]
    assert sl["status"] == "success" and sl["rel_err_loss"] < 0.1 * eu["rel_err_loss"]   # same step 0.25
    (t,) = acc.targets([res], "dop853")
    assert "0.25" in t["target"] and t["verdict"] in VERDICTS and "GD(0.25)" in t["detail"]
