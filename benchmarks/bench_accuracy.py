"""Thin wrapper, kept for old commands: ``python benchmarks/bench_accuracy.py [--quick|--tiny] [--out DIR]`` is
``gflow bench accuracy ...`` (the harness lives in gflow/bench/accuracy.py)."""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "accuracy", *sys.argv[1:]]))
