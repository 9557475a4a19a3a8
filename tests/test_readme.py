"""The README's code runs as written: its Python blocks, and its sweep TOML is docs/sweep.toml.

A user's first contact is copying the README's snippets; each block is executed here as the README shows it (the
sweep block on a small store with the grid keys it reads, since docs/sweep.toml itself takes 15 minutes).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import gflow as gf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _block(lang: str, marker: str) -> str:
    """The one ``lang`` block of the README that contains ``marker``."""
    found = [b for b in _blocks(lang) if marker in b]
    assert len(found) == 1, f"{len(found)} {lang} blocks of README.md contain {marker!r}"
    return found[0]


def _run(code: str, ns: dict | None = None) -> dict:
    ns = {"__name__": "__readme__"} if ns is None else ns
    exec(compile(code, "README.md", "exec"), ns)
    plt.close("all")
    return ns


def test_every_python_block_is_one_of_those_run_here():
    # a new block must be added to a test below (or to this list with the reason it is not run)
    markers = ("sol = gf.simulate(net, X, y, t1=500.0", "cert = gf.certify(sol)", 'method="filippov"',
               'gf.open_sweep("results/exp1-sweep")')
    blocks = _blocks("python")
    assert len(blocks) == len(markers), f"README.md has {len(blocks)} python blocks, the tests know {len(markers)}"
    for b in blocks:
        assert sum(m in b for m in markers) == 1, b


def test_quick_start_then_certificate_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = _run(_block("python", "sol = gf.simulate(net, X, y, t1=500.0"))
    sol, again, gd = ns["sol"], ns["again"], ns["gd"]
    assert sol.ok and (tmp_path / "run.nc").is_file()
    np.testing.assert_array_equal(again.loss, sol.loss)  # rerun: the same run from the file alone
    assert sol.test_error.shape == sol.t.shape and np.all(np.diff(sol.loss) <= 0)
    np.testing.assert_allclose(gd.t[-1], 500.0)  # GD's t = kδ with δ = 1
    ns = _run(_block("python", "cert = gf.certify(sol)"), ns)
    assert ns["cert"].ok and not ns["cert"].violations


def test_relu_gd_against_flow_block(capsys):
    ns = _run(_block("python", 'method="filippov"'))
    flow, gd = ns["flow"], ns["gd"]
    assert flow.ok and flow.stats["n_events"] > 0
    np.testing.assert_array_equal(gd.t, flow.t)  # the comparison is at the same times
    out = capsys.readouterr().out
    gap, est = (float(v) for v in out.split()[:2])
    assert 1e-3 < gap < 0.1 and est < 1e-6  # GD(0.25) visibly off the flow; the flow's own error far below that
    assert gap == pytest.approx(np.abs(gd.loss / flow.loss - 1).max(), rel=1e-12)
    assert "GD δ = 0.25 against filippov rtol 1e-09: 5 shared times in [0, 20]" in out
    assert f"the reference's own estimate of its relative loss error: at most {est:.3e}" in out


def test_sweep_toml_block_is_docs_sweep_toml():
    shown = tomllib.loads(_block("toml", "docs/sweep.toml"))
    assert shown == tomllib.loads((ROOT / "docs" / "sweep.toml").read_text(encoding="utf-8"))
    # and it is a valid sweep configuration
    assert gf.sweeps.load_sweep_config(ROOT / "docs" / "sweep.toml")["grid"] == shown["grid"]


def test_sweep_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = gf.sweeps.load_sweep_config(ROOT / "docs" / "sweep.toml")  # the README's sweep, made small
    cfg["network"]["width"] = 16
    cfg["data"]["n_test"] = 8
    cfg["solver"].update(t1=2.0, rtol=1e-6, atol=1e-8)
    cfg["grid"]["data.n"] = [3, 5]
    cfg["seeds"] = [0]
    gf.sweep(**cfg, store=tmp_path / "results" / "exp1-sweep", progress=False)
    ns = _run(_block("python", 'gf.open_sweep("results/exp1-sweep")'))
    assert ns["ds"].sizes["run"] == 6 and set(ns["ds"]["scaling"].values) == {"ours", "ntk", "mf"}
    assert ns["sol"].ok and gf.certify(ns["sol"]).ok


def test_the_guide_has_no_python_block_left_unrun():
    # the details moved to docs/guide.md are prose; a Python block there must be run by a test here as README's are
    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    assert not re.findall(r"^```python\n", guide, flags=re.M), "docs/guide.md has a Python block no test runs"


@pytest.mark.parametrize("command", ["gflow demo", "python -m pytest"])
def test_the_two_commands_lead_the_readme(command):
    first = _blocks("bash")[0]
    assert README.startswith(f"# gflow\n\n```bash\n{first}```\n")  # the title, then this block
    assert command in first and "pip install torch==2.13.0 &&" in first
