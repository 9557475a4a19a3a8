"""The ``gflow bench {accuracy,speed}`` subcommand (registered by :func:`add_parser` in gflow/cli.py)."""

from __future__ import annotations

import argparse

from ..solution import check_output_path


def add_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmarks: solver accuracy (work-precision) and speed against the peers")
    b.add_argument("kind", choices=["accuracy", "speed"], help="which benchmark")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller problems (a few minutes)")
    size.add_argument("--tiny", action="store_true", help="tiny problems (seconds; what the test suite runs)")
    b.add_argument("--out", default=None, help="output folder (default benchmarks/results/<kind>)")
    b.add_argument("--methods", default=None,
                   help="accuracy only: comma-separated methods ('gd' and names of gf.simulate; unknown ones are "
                        "recorded as unavailable); default: all available")
    b.add_argument("--problems", default=None, help="accuracy only: comma-separated problem keys")
    b.add_argument("--threads", type=int, default=1, help="torch threads (default 1; ratios are what count)")
    b.set_defaults(func=cmd_bench)
    return b


def cmd_bench(args) -> int:
    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    mode = "tiny" if args.tiny else ("quick" if args.quick else "full")
    out = args.out or f"benchmarks/results/{args.kind}"
    check_output_path(out, "--out", folder=True)  # before running the benchmark
    if args.kind == "accuracy":
        from .accuracy import run_accuracy

        split = (lambda s: [x.strip() for x in s.split(",") if x.strip()])
        run_accuracy(mode, out, None if args.methods is None else split(args.methods),
                     problems=None if args.problems is None else split(args.problems))
    else:
        if args.methods is not None or args.problems is not None:
            raise ValueError("--methods and --problems apply to 'gflow bench accuracy' only")
        from .speed import run_speed

        run_speed(mode, out)
    print(f"results written to {out}/")
    return 0
