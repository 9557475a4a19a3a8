"""Thin wrapper, kept for old commands: ``python benchmarks/bench_core.py [--quick|--tiny] [--out DIR]`` is
``gflow bench speed ...`` (the harness lives in gflow/bench/speed.py, the autograd peer in gflow/bench/peer.py)."""

import sys

from gflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "speed", *sys.argv[1:]]))
