"""The notebooks stay in sync with their percent scripts (the benchmarks' tiny modes: tests/test_bench.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_has_its_paired_percent_script():
    # notebooks are kept as jupytext py:percent sources next to their .ipynb (nbmake executes the .ipynb)
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert nb.with_suffix(".py").exists(), nb


def test_notebooks_and_their_percent_scripts_are_in_sync():
    jupytext = __import__("jupytext")
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        a = [c.source.strip() for c in jupytext.read(nb).cells if c.cell_type == "code"]
        b = [c.source.strip() for c in jupytext.read(nb.with_suffix(".py")).cells if c.cell_type == "code"]
        assert a == b, f"{nb.name} differs from its .py; run: jupytext --sync {nb.with_suffix('.py')}"
