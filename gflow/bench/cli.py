"""The ``gflow bench {accuracy,speed}`` subcommand (registered by :func:`add_parser` in gflow/cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from time import strftime

from ..solution import check_output_path

#: what each benchmark writes into its folder; a folder that holds one of them already is kept unless --force
RESULT_FILES = {"accuracy": ("accuracy.json", "work_precision.png", "work_precision.pdf"),
                "speed": ("speed.json", "speed.png")}


def add_parser(sub) -> argparse.ArgumentParser:
    b = sub.add_parser("bench", help="benchmarks: solver accuracy (work-precision) and speed against the peers")
    b.add_argument("kind", choices=["accuracy", "speed"], help="which benchmark")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller problems (a few minutes)")
    size.add_argument("--tiny", action="store_true", help="tiny problems (seconds; what the test suite runs)")
    b.add_argument("--out", default=None, help="output folder (default: a new folder gflow-bench-<kind>-<date>-<time> "
                   "in the current folder); one that holds results of the same benchmark already is refused "
                   "unless --force")
    b.add_argument("--force", action="store_true", help="replace the results already in --out (e.g. the committed "
                   "benchmarks/results/<kind>)")
    b.add_argument("--methods", default=None,
                   help="accuracy only: comma-separated methods ('gd', 'auto' and names of gf.simulate; an unknown "
                        "name is an error, a known one whose backend is not installed is recorded as unavailable); "
                        "default: all available")
    b.add_argument("--problems", default=None, help="accuracy only: comma-separated problem keys")
    b.add_argument("--threads", type=int, default=1, help="torch threads (default 1; ratios are what count)")
    b.set_defaults(func=cmd_bench)
    return b


def default_out(kind: str, where: Path = Path(".")) -> Path:
    """A new folder for a run's results, ``gflow-bench-<kind>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... where it
    exists): the default was ``benchmarks/results/<kind>``, which from a checkout's root replaced the results that
    the README quotes."""
    base = where / f"gflow-bench-{kind}-{strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def cmd_bench(args) -> int:
    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.kind != "accuracy" and (args.methods is not None or args.problems is not None):
        raise ValueError("--methods and --problems apply to 'gflow bench accuracy' only")
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()])
    methods = None if args.methods is None else split(args.methods)
    if methods is not None:
        from .accuracy import resolve_methods

        try:
            resolve_methods(methods)  # (a typo is an error before any folder is made or problem run)
        except ValueError as exc:
            raise ValueError(f"--methods: {exc}") from None
    mode = "tiny" if args.tiny else ("quick" if args.quick else "full")
    out = Path(args.out) if args.out is not None else default_out(args.kind)
    check_output_path(out, "--out", folder=True)  # before running the benchmark
    there = [name for name in RESULT_FILES[args.kind] if (out / name).exists()]
    if there and not args.force:
        raise ValueError(f"--out {out} holds results of 'gflow bench {args.kind}' already ({', '.join(there)}); "
                         "add --force to replace them, or leave out --out for a new folder")
    torch.set_num_threads(args.threads)
    if args.kind == "accuracy":
        from .accuracy import run_accuracy

        run_accuracy(mode, out, methods, problems=None if args.problems is None else split(args.problems))
    else:
        from .speed import run_speed

        run_speed(mode, out)
    print(f"results written to {out}/")
    return 0
