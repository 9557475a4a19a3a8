"""Tiny runs of the notebook and the benchmark, so that neither rots."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_has_its_paired_percent_script():
    # notebooks are kept as jupytext py:percent sources next to their .ipynb (nbmake executes the .ipynb)
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert nb.with_suffix(".py").exists(), nb


def test_core_benchmark_quick_mode_writes_well_formed_json(tmp_path):
    mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_core.py"))
    out = tmp_path / "b.json"
    result = mod["main"](["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert set(data) >= {"machine", "versions", "dtype", "rhs", "gd", "solvers"}
    assert data["rhs"][0]["weight_s"] > 0 and data["rhs"][0]["feature_s"] > 0
    # the hand-written autograd peer and gflow's GD compute the same iterates
    assert data["gd"][0]["max_abs_W_diff"] < 1e-10
    assert all(r["rel_err_loss"] < 1e-3 for r in data["solvers"]["rows"])
    assert result["dtype"] == "float64"


def test_notebooks_and_their_percent_scripts_are_in_sync():
    jupytext = __import__("jupytext")
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        a = [c.source.strip() for c in jupytext.read(nb).cells if c.cell_type == "code"]
        b = [c.source.strip() for c in jupytext.read(nb.with_suffix(".py")).cells if c.cell_type == "code"]
        assert a == b, f"{nb.name} differs from its .py; run: jupytext --sync {nb.with_suffix('.py')}"


def test_accuracy_benchmark_quick_mode_writes_json_and_figures(tmp_path):
    mod = runpy.run_path(str(ROOT / "benchmarks" / "bench_accuracy.py"))
    result = mod["main"](["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "accuracy.json").read_text())
    assert (tmp_path / "work_precision.png").stat().st_size > 10_000 and (tmp_path / "work_precision.pdf").exists()
    prob = data["problems"][0]
    assert prob["reference"]["rel_diff_vs_dopri8"] < 1e-9  # the reference agrees with a second method
    methods = {r["method"] for r in prob["rows"]}
    assert {"gd", "midpoint", "rk4", "dopri5", "DOP853", "LSODA"} <= methods
    assert all(r["status"] == "success" for r in prob["rows"])
    assert 3.0 < prob["orders"]["rk4"] < 5.5 and result["dtype"] == "float64"
