"""Benchmarks of gflow: solver accuracy against step size (work–precision) and speed against the peers.

``gflow bench accuracy [--quick|--tiny] --out DIR`` and ``gflow bench speed [--quick|--tiny] --out DIR``, or
from Python :func:`run_accuracy` / :func:`run_speed`.  Each writes a JSON with every number (plus machine,
versions, dtype, seeds), figures, and a plain met / missed verdict for each target of the benchmarks issue.
Timings are ratios measured side by side in one run: absolute times on a shared machine are noise.

Modules: :mod:`.problems` (the fixed problem set), :mod:`.peer` (the hand-written PyTorch autograd loop a
researcher would otherwise write), :mod:`.accuracy`, :mod:`.speed`, :mod:`.cli`.
"""

from .accuracy import run_accuracy
from .speed import run_speed

__all__ = ["run_accuracy", "run_speed"]
