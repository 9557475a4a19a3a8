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


def test_the_notebooks_show_their_figures_and_run_gflow_s_solvers():
    # (a usability audit: every notebook forced matplotlib.use("Agg"), so Jupyter showed no figure, and two ran
    # scipy's "DOP853", which warned of a loss rise at the quickstart's full size)
    for py in (ROOT / "notebooks").glob("*.py"):
        text = py.read_text(encoding="utf-8")
        assert 'matplotlib.use("Agg")' not in text and 'method="DOP853"' not in text, py.name


def test_a_star_import_of_gflow_does_not_shadow_typing_names():
    import typing

    import gflow

    shadowed = [name for name in gflow.__all__ if hasattr(typing, name)]
    assert not shadowed  # (gf.Callable, the user-function embedding, shadowed typing.Callable)
    assert gflow.Callable is gflow.model.embeddings.Callable
