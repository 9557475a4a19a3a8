"""Tiny runs of the notebook and the benchmark, so that neither rots."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_runs_at_small_size():
    env = dict(os.environ, GFLOW_SMALL="1", MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, str(ROOT / "notebooks" / "quickstart.py")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "max |r_flow − r_exact|" in r.stdout


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
