"""Command line: ``gflow demo``, ``gflow simulate``, ``gflow show``, ``gflow rerun``, ``gflow sweep`` (also
``python -m gflow``).

A thin layer over the Python API: every option maps to a keyword of :class:`gflow.Network`,
:func:`gflow.simulate` or a :mod:`gflow.data` generator.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CLIError(Exception):
    """A user error on the command line: printed without a traceback, exit status 2."""


def _network_keys() -> set[str]:
    from .model.network import Network

    return {f for f in Network.__dataclass_fields__ if not f.startswith("_")}


def _simulate_keys() -> set[str]:
    from .solve.ode import simulate

    return set(inspect.signature(simulate).parameters) - {"net", "X", "y", "X_test", "y_test", "warn"}


_DATA_KEYS = {"generator", "n", "seed", "n_test", "test_seed"}

DEMO = {
    "network": {"d": 20, "width": 1024, "activation": "tanh", "embedding": "identity", "scaling": "ours", "seed": 0},
    "simulate": {"t1": 500.0, "method": "dop853", "rtol": 1e-8, "atol": 1e-10},
    "data": {"generator": "random_labels", "n": 20, "seed": 0, "n_test": 200},
}


def parse_embedding(text: str) -> Any:
    """``identity`` | ``quadratic`` | ``random_features:D`` | ``deep_random_features:D:L``."""
    from .model.embeddings import DeepRandomFeatures, RandomFeatures

    parts = text.split(":")
    usage = "use identity, quadratic, random_features:D or deep_random_features:D:L"
    try:
        if parts[0] in ("identity", "quadratic") and len(parts) == 1:
            return parts[0]
        if parts[0] == "random_features" and len(parts) == 2:
            D = int(parts[1])
            return RandomFeatures(D=D)
        if parts[0] == "deep_random_features" and len(parts) == 3:
            D, depth = int(parts[1]), int(parts[2])
            return DeepRandomFeatures(D=D, depth=depth)
    except ValueError as exc:  # an integer that does not parse, or one the embedding refuses (D = 0): say which
        raise CLIError(f"--embedding {text!r}: {exc}; {usage}") from None
    raise CLIError(f"--embedding {text!r} not understood; {usage}")


def load_config(path: str | Path) -> dict:
    """Read a TOML run file into ``{"network": {...}, "simulate": {...}, "data": {...}}``.

    Keys may be grouped in ``[network]``, ``[simulate]`` and ``[data]`` tables, or written at top level, where
    each is routed to :class:`gflow.Network` or :func:`gflow.simulate` by name (``seed`` at top level is the
    network seed; the data seed lives in ``[data]``).
    """
    path = Path(path)
    if not path.exists():
        raise CLIError(f"config file not found: {path}")
    if path.is_dir():
        raise CLIError(f"config file {path} is a directory, not a TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not UTF-8 text (a TOML file): {exc}") from None
    net_keys, sim_keys = _network_keys(), _simulate_keys()
    cfg: dict[str, dict] = {"network": {}, "simulate": {}, "data": {}}
    top: dict[str, dict] = {"network": {}, "simulate": {}}  # the top-level keys, routed by name
    tables: dict[str, dict] = {}
    for key, value in raw.items():
        if key in ("network", "simulate", "data") and isinstance(value, dict):
            allowed = {"network": net_keys, "simulate": sim_keys, "data": _DATA_KEYS}[key]
            bad = sorted(set(value) - allowed)
            if bad:
                raise CLIError(f"{path}: unknown key(s) {bad} in [{key}]; allowed: {sorted(allowed)}")
            tables[key] = value
        elif key in net_keys:
            top["network"][key] = value
        elif key in sim_keys:
            top["simulate"][key] = value
        else:
            raise CLIError(
                f"{path}: unknown key {key!r}; top-level keys are gf.Network keywords {sorted(net_keys)} or "
                f"gf.simulate keywords {sorted(sim_keys)}, and data goes in a [data] table ({sorted(_DATA_KEYS)})"
            )
    for table, values in tables.items():
        # a key both at top level and in its table was resolved silently (the table's won): refused, as a sweep
        # config refuses a key both fixed and swept
        for key in sorted(set(values) & set(top.get(table, {}))):
            raise CLIError(f"{path}: {key!r} is given both at top level ({top[table][key]!r}) and in [{table}] "
                           f"({values[key]!r}); keep one")
    for table in cfg:
        cfg[table].update(top.get(table, {}))
        cfg[table].update(tables.get(table, {}))
    return cfg


def run_config(cfg: dict, *, progress=print):
    """Build the network and data of a config and integrate; returns the Solution."""
    from . import data as gdata
    from ._validate import check_positive_int
    from .model.network import Network
    from .solve.ode import simulate

    net_kw = dict(cfg["network"])
    dat = {"generator": "random_labels", "n": 20, "seed": 0, **cfg["data"]}
    if "d" not in net_kw:
        raise CLIError("the network needs the input dimension d (--d or d = ... in the config)")
    gen_name = dat["generator"]
    if gen_name not in gdata.GENERATORS:
        raise CLIError(f"unknown data generator {gen_name!r}; expected one of {sorted(gdata.GENERATORS)}")
    gen = gdata.GENERATORS[gen_name]
    net = Network(**net_kw)
    X, y = gen(dat["n"], net.d, seed=dat["seed"])
    test = {}
    n_test = dat.get("n_test")
    if n_test is not None and (isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0):
        raise CLIError(f"n_test (--n-test) must be an integer >= 0 (0: no test data), got {n_test!r}")
    test_seed = dat.get("test_seed")
    if test_seed is not None:
        test_seed = check_positive_int(test_seed, "test_seed ([data] test_seed)", minimum=0)
    if n_test:
        Xt, yt = gen(dat["n_test"], net.d, seed=dat["seed"] + 1 if test_seed is None else test_seed)
        test = {"X_test": Xt, "y_test": yt}
    progress(f"{net}\ndata: {gen_name}(n={dat['n']}, d={net.d}, seed={dat['seed']})"
             + (f", test n={dat['n_test']}" if test else ""))
    return simulate(net, X, y, **{"progress": None, **cfg["simulate"]}, **test, warn=False)


def _out_file(out, name: str = "--out", *, folder: bool = False) -> Path:
    """``--out`` (or the option ``name``) checked as a writable file path (``folder``: output folder) before any work
    is done (a directory is refused)."""
    from .solution import check_output_path

    try:
        return check_output_path(out, name=name, folder=folder)
    except OSError as exc:  # IsADirectoryError: report it like every other command-line error
        raise CLIError(str(exc)) from None


def _figure_file(path, name: str) -> Path:
    """A figure's path checked before any work is done: a writable file path ending in .png or .pdf (as ``gflow
    plot`` takes) — ``gflow demo --figure x.xyz`` ran the whole demo, then failed on the format."""
    p = _out_file(path, name)
    if p.suffix.lower() not in (".png", ".pdf"):
        raise CLIError(f"{name} must end in .png or .pdf, got {p.name!r}")
    return p


def _finish(sol, out: Path) -> int:
    print(sol.summary())
    path = sol.save(out)
    print(f"wrote {path}")
    return 0 if sol.ok else 1


#: the exit status of a command stopped by Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130


def _run_saving_partial(run, out: Path):
    """``run()``'s Solution; where Ctrl-C stops it (:class:`gflow.Interrupted`), its partial trajectory is saved to
    ``out`` and the command ends with :data:`EXIT_INTERRUPTED`."""
    from .solution import Interrupted

    try:
        return run(), None
    except Interrupted as stop:
        sol = stop.solution
        print(sol.summary())
        path = sol.save(out)
        print(f"wrote {path} (the run up to the Ctrl-C, status {sol.status!r})")
        print(f"gflow: interrupted: {sol.message}", file=sys.stderr)
        return sol, EXIT_INTERRUPTED


def cmd_demo(args) -> int:
    from .theory.certify import certify

    print("gflow demo: gradient flow of the shallow tanh net of Experiment 1 (d = 20, n = 20, m = 1024) to t = 500")
    from .plotting import plot_loss_bounds

    out = _out_file(args.out)
    fig_path = _figure_file(args.figure, "--figure") if args.figure else out.with_suffix(".png")
    sol, stopped = _run_saving_partial(lambda: run_config(DEMO), out)
    if stopped is not None:
        return stopped
    rc = _finish(sol, out)
    cert = certify(sol)
    print(cert)
    ax = plot_loss_bounds(sol)
    fig_path.parent.mkdir(parents=True, exist_ok=True)  # (as --out: a missing folder is made)
    ax.figure.savefig(fig_path, dpi=150, bbox_inches="tight")
    print(f"wrote {fig_path} (training loss against the paper's bounds)")
    return rc if cert.ok else 1


_NO_STEP = object()  # --step none


def _step_arg(text: str):
    """--step: a float, or 'none' (drop the config file's step, e.g. to switch it to an adaptive --method)."""
    if text.strip().lower() == "none":
        return _NO_STEP
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def cmd_simulate(args) -> int:
    cfg = load_config(args.config) if args.config else {"network": {}, "simulate": {}, "data": {}}
    flags = {
        "network": {"d": args.d, "width": args.width, "activation": args.activation,
                    "embedding": parse_embedding(args.embedding) if args.embedding else None,
                    "scaling": args.scaling, "c_hat": args.c_hat, "seed": args.seed, "dtype": args.dtype,
                    "device": args.device},
        "simulate": {"t1": args.t1, "method": args.method, "rtol": args.rtol, "atol": args.atol, "step": args.step,
                     "max_steps": args.max_steps, "max_wall_time": args.max_wall_time, "space": args.space},
        "data": {"generator": args.data, "n": args.n, "seed": args.data_seed, "n_test": args.n_test},
    }
    for section, values in flags.items():
        cfg[section].update({k: v for k, v in values.items() if v is not None})
    if cfg["simulate"].get("step") is _NO_STEP:  # --step none: drop a step the config file gives
        del cfg["simulate"]["step"]
    elif args.step is None and "step" in cfg["simulate"] and args.method is not None:
        from .solve import FIXED_STEP_METHODS

        if args.method not in FIXED_STEP_METHODS:
            raise CLIError(f"--method {args.method} chooses its own steps, but {args.config} gives step = "
                           f"{cfg['simulate']['step']!r}; add --step none to drop the file's step")
    if "width" not in cfg["network"]:
        raise CLIError("the network needs a width (--width or width = ... in the config)")
    if "t1" not in cfg["simulate"] and "saveat" not in cfg["simulate"]:
        raise CLIError("give the final time (--t1 or t1 = ... in the config)")
    out = _out_file(args.out)
    sol, stopped = _run_saving_partial(lambda: run_config(cfg), out)
    return stopped if stopped is not None else _finish(sol, out)


def cmd_show(args) -> int:
    from .solution import Solution

    if args.rows < 0:
        raise CLIError(f"--rows must be a non-negative int, got {args.rows}")
    sol = Solution.load(args.file)
    print(repr(sol))
    print(sol.summary(rows=args.rows))
    return 0


def cmd_certify(args) -> int:
    from .theory.certify import certify

    cert = certify(args.file, slack=args.slack)
    print(cert)
    return 0 if cert.ok else 1


def cmd_compare(args) -> int:
    from .compare import compare

    if args.rows < 0:
        raise CLIError(f"--rows must be a non-negative int, got {args.rows}")
    print(compare(args.file, args.reference).summary(rows=args.rows))
    return 0


def cmd_plot(args) -> int:
    from .plotting import plot_summary

    # (the default was <file>.png: after `gflow demo`, `gflow plot gflow-demo.nc` replaced the demo's figure)
    path = _figure_file(args.out, "--out") if args.out else Path(args.file).with_name(Path(args.file).stem
                                                                                       + "-summary.png")
    plot_summary(args.file, path)
    print(f"wrote {path}")
    return 0


def cmd_reproduce(args) -> int:
    from .experiments import reproduce

    if args.out is not None:
        _out_file(args.out, "--out", folder=True)
    results = reproduce(args.experiment, args.preset, args.out, device=args.device, executor=args.executor,
                        workers=args.workers, scheduler=args.scheduler)
    for res in results:
        verdicts = ", ".join(f"{c.verdict}" for c in res.claims)
        done = (f" ({res.counts['computed']} computed, {res.counts['skipped']} already in {args.out})"
                if res.counts else "")
        print(f"{res.name} ({res.preset}): {len(res.runs)} runs{done} in {res.wall_time:.1f} s; claims: {verdicts}")
        for f in res.files:
            if f.suffix in (".md", ".nc"):
                print(f"  wrote {f}")
    return 0


def cmd_rerun(args) -> int:
    from .solve.rerun import rerun

    out = _out_file(args.out)
    sol, stopped = _run_saving_partial(lambda: rerun(args.file), out)
    return stopped if stopped is not None else _finish(sol, out)


def _sweep_executor_options(args) -> dict:
    """``--cluster`` and ``--submitit-param KEY=VALUE`` (values read as TOML literals, else strings)."""
    if args.executor != "submitit":
        if args.cluster is not None or args.submitit_param:
            raise ValueError("--cluster and --submitit-param are for --executor submitit")
        return {}
    opts: dict = {}
    if args.cluster is not None:
        opts["cluster"] = args.cluster
    for item in args.submitit_param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--submitit-param must be KEY=VALUE (e.g. timeout_min=30), got {item!r}")
        try:
            opts[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            opts[key.strip()] = value
    return opts


def cmd_sweep(args) -> int:
    from .sweeps import SweepConfig, run_sweep
    from .sweeps.store import consolidated_path, read_manifest

    cfg = SweepConfig.from_toml(args.config)
    counts: dict = {}
    progress = True if args.progress else (False if args.progress is False else None)
    ds = run_sweep(cfg, store=args.out, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                   progress=progress, retry_failed=args.retry_failed, extend=args.extend, report=counts.update,
                   format=args.format, executor_options=_sweep_executor_options(args))
    print(f"sweep: {counts['total']} runs ({counts['skipped']} already in {args.out}): {counts['success']} succeeded, "
          f"{counts['failed']} failed, {counts['error']} raised an error")
    if counts["lost"]:
        print(f"  {counts['lost']} run(s) lost by their workers stay pending (run the same command again); first: "
              f"{counts['lost_messages'][0]}")
    for status in sorted(set(ds.status.values.tolist()) - {"success"}):
        print(f"  {status}: {int((ds.status == status).sum())} run(s)")
    if not counts["lost"]:
        print(f"wrote {consolidated_path(args.out, read_manifest(args.out).get('format', 'netcdf'))}")
    return 1 if counts["error"] or counts["lost"] else 0


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps the examples' line breaks (an epilog of :func:`_examples`) and appends ``(default: X)`` to an option
    with a real default whose help does not state it already."""

    def _fill_text(self, text, width, indent):
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


def _examples(*lines: str) -> str:
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


def _defaults() -> tuple[dict, dict]:
    """The defaults of gf.Network and gf.simulate, for the help of ``gflow simulate`` (its flags default to
    None so that a TOML file's values are kept)."""
    from .model.network import Network
    from .solve.ode import simulate

    net = {k: f.default for k, f in Network.__dataclass_fields__.items()}
    sim = {k: p.default for k, p in inspect.signature(simulate).parameters.items()}
    return net, sim


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data import GENERATORS
    from .model.activations import ACTIVATIONS
    from .solve.ode import METHODS

    net_default, sim_default = _defaults()
    fmt = {"formatter_class": _HelpFormatter}
    p = argparse.ArgumentParser(prog="gflow", description="Exact gradient-flow simulation of wide neural networks.",
                                epilog="'gflow COMMAND --help' describes each command, with an example.", **fmt)
    p.add_argument("--version", action="version", version=f"gflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the default simulation (Experiment 1, shallow tanh net) and save it",
                       description="Integrate the gradient flow of Experiment 1's shallow tanh net (d = 20, n = 20, "
                       "m = 1024) to t = 500 with dop853; print the loss table and the certificate of the paper's "
                       "bounds; write the run and a figure of the loss against the bounds.",
                       epilog=_examples("gflow demo --out demo.nc        # writes demo.nc and demo.png"), **fmt)
    d.add_argument("--out", default="gflow-demo.nc", help="result file")
    d.add_argument("--figure", default=None, help="bound-vs-loss figure, PNG or PDF (default: the result file with "
                   ".png)")
    d.set_defaults(func=cmd_demo)

    methods = [m for m in METHODS if not m.startswith("torchdiffeq.")]
    s = sub.add_parser("simulate", help="simulate a flow from flags and/or a TOML file",
                       description="Integrate a gradient flow (gf.simulate) of a gf.Network on gf.data data and save "
                       "it. Flags override the TOML file's values; defaults are gf.Network's and gf.simulate's. "
                       "The final time is required (--t1, or t1 = ... in the file).",
                       epilog=_examples(
                           "gflow simulate --d 20 --width 1024 --activation tanh --n 20 --n-test 200 --t1 500 "
                           "--out run.nc",
                           "gflow simulate run.toml --out run.nc          # the TOML file of the README"), **fmt)
    s.add_argument("config", nargs="?", help="TOML file of gf.Network / gf.simulate keywords (top level or in "
                   "[network] / [simulate] tables) and a [data] table")
    s.add_argument("--out", default="gflow-run.nc", help="result file (netCDF)")
    g = s.add_argument_group("network (gf.Network)")
    g.add_argument("--d", type=int, help="input dimension (required, here or in the file)")
    g.add_argument("--width", type=int, help="number of neurons m (required, here or in the file)")
    g.add_argument("--activation", help=f"one of {', '.join(ACTIVATIONS)} (default: {net_default['activation']}; "
                   "a leaky_relu slope other than 0.01: activation = {name = \"leaky_relu\", slope = 0.1} in the "
                   "TOML file)")
    g.add_argument("--embedding", help="identity | quadratic | random_features:D | deep_random_features:D:L "
                   f"(default: {net_default['embedding']})")
    g.add_argument("--scaling", help=f"ours | ntk | mf (default: {net_default['scaling']})")
    g.add_argument("--c-hat", type=float, dest="c_hat", help="magnitude ĉ of the output weights "
                   f"(default: {net_default['c_hat']})")
    g.add_argument("--seed", type=int, help=f"network seed (default: {net_default['seed']})")
    g.add_argument("--dtype", help="float64 | float32 (default: float64)")
    g.add_argument("--device", help=f"cpu | cuda (default: {net_default['device']})")
    g = s.add_argument_group("solver (gf.simulate)")
    g.add_argument("--t1", type=float, help="final flow time (required, here or as t1 in the file)")
    g.add_argument("--method", help=f"auto or one of {', '.join(methods)}, or torchdiffeq.NAME (default: "
                   f"{sim_default['method']}: picked per problem, see 'Choosing a solver' in the README)")
    g.add_argument("--rtol", type=float, help=f"relative tolerance of adaptive methods (default: {sim_default['rtol']:g})")
    g.add_argument("--atol", type=float, help=f"absolute tolerance of adaptive methods (default: {sim_default['atol']:g})")
    g.add_argument("--step", type=_step_arg, help="step of fixed-step methods (euler, midpoint, rk4, sliding, ...): "
                   "required for them, refused for adaptive ones; 'none' drops a step the config file gives")
    g.add_argument("--max-steps", type=int, dest="max_steps", help="limit on step attempts; a run that needs more "
                   f"stops with status max_steps (default: {sim_default['max_steps']})")
    g.add_argument("--max-wall-time", type=float, dest="max_wall_time", help="wall-time budget in seconds "
                   "(default: none)")
    g.add_argument("--space", help=f"auto | feature | weight (default: {sim_default['space']})")
    g = s.add_argument_group("data (gf.data)")
    g.add_argument("--data", help=f"{' | '.join(GENERATORS)} (default: random_labels)")
    g.add_argument("--n", type=int, help="number of training points (default: 20)")
    g.add_argument("--data-seed", type=int, dest="data_seed", help="seed of the training data (default: 0; the "
                   "test data use seed + 1)")
    g.add_argument("--n-test", type=int, dest="n_test", help="number of test points (default: 0, none)")
    s.set_defaults(func=cmd_simulate)

    sh = sub.add_parser("show", help="print the summary of a saved result file",
                        description="Print a saved run's summary: the loss and test-error table, status, "
                        "evaluations and wall time.",
                        epilog=_examples("gflow show run.nc --rows 20",
                                         "gflow show results/exp1/runs/<label>_<hash>.nc   # one run of gflow reproduce"),
                        **fmt)
    sh.add_argument("file", help="a run file written by gflow simulate / demo / rerun, gf.Solution.save, or one "
                    "run of a sweep (STORE/runs/<run_id>.nc) or of gflow reproduce (OUT/<exp>/runs/<label>_<hash>.nc)")
    sh.add_argument("--rows", type=int, default=12,
                    help="rows of the loss table (0: no table, the status and statistics only)")
    sh.set_defaults(func=cmd_show)

    c = sub.add_parser("certify", help="check the paper's pathwise bounds (T1-T11) and Theorem 1 along a saved run",
                       description="Check the paper's pathwise bounds (T1-T11) and Theorem 1 along a saved run; "
                       "exit status 1 if one fails beyond the solver tolerance.",
                       epilog=_examples("gflow certify run.nc", "gflow certify run.nc --slack 1e-6"), **fmt)
    c.add_argument("file", help="a run file (as for gflow show)")
    c.add_argument("--slack", type=float, default=None, help="relative numerical tolerance (default: from the "
                   "solver's tolerances)")
    c.set_defaults(func=cmd_certify)

    cp = sub.add_parser("compare", help="the errors of a saved run against a reference run (GD or a solver vs the "
                        "flow)", description="Print the relative errors of a saved run's loss, residual, test loss and "
                        "test MSE, features and weights against a reference run of the same network and data, at the "
                        "times both saved.",
                        epilog=_examples("gflow compare gd.nc flow.nc",
                                         "gflow compare run.nc reference.nc --rows 20"), **fmt)
    cp.add_argument("file", help="the run to measure (a run file, as for gflow show)")
    cp.add_argument("reference", help="the reference run: the same network and data, e.g. the flow at a tight rtol "
                    "saved at the run's times")
    cp.add_argument("--rows", type=int, default=12, help="rows of the error table (0: no table)")
    cp.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plot", help="draw the summary figure (loss vs bounds, η/μ/λ(M), features, spectrum)",
                        description="Draw the summary figure of a saved run: the loss against the bounds, η/μ/λ(M), "
                        "the features and the spectrum.",
                        epilog=_examples("gflow plot run.nc                 # writes run-summary.png",
                                         "gflow plot run.nc --out run.pdf"), **fmt)
    pl.add_argument("file", help="a run file (as for gflow show)")
    pl.add_argument("--out", default=None, help="PNG or PDF (default: the run file's name with -summary.png)")
    pl.set_defaults(func=cmd_plot)

    rp = sub.add_parser("reproduce", help="reproduce the paper's Experiments 1-3 (data, figures, summary.md)",
                        description="Reproduce the paper's Experiments 1-3: OUT/<exp>/ gets runs/<label>_<hash>.nc (one "
                        "file per run, kept and skipped when the command is run again), runs.nc (every run, one "
                        "netCDF group each), PNG/PDF figures and summary.md (claims and verdicts).",
                        epilog=_examples("gflow reproduce exp1 --preset tiny --out results      # seconds",
                                         "gflow reproduce all --preset quick --out results --executor process"),
                        **fmt)
    rp.add_argument("experiment", choices=["exp1", "exp2", "exp3", "all"], help="which experiment")
    rp.add_argument("--preset", default="quick", choices=["tiny", "quick", "paper"],
                    help="tiny: seconds (tests); quick: minutes on a 2-core CPU; paper: the paper's sizes (GPU)")
    rp.add_argument("--out", default="gflow-reproduce",
                    help="output folder (each experiment in OUT/<exp>/, which must not be a sweep's store)")
    rp.add_argument("--device", default="cpu", help="cpu | cuda")
    rp.add_argument("--executor", default="local", choices=["local", "process", "dask"],
                    help="where the runs execute: local (serial), process (a process pool), dask; finished "
                    "runs are kept in OUT/<exp>/runs/ and skipped when the command is run again")
    rp.add_argument("--workers", type=int, default=None, help="worker processes (default: the number of cores)")
    rp.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (with --executor dask)")
    rp.set_defaults(func=cmd_reproduce)

    sw = sub.add_parser("sweep", help="run a grid of runs (grid x seeds) from a TOML file into a results store",
                        description="Run every point of a grid x seeds (gf.sweep) into a store folder: "
                        "STORE/runs/<run_id>.nc per finished run, manifest.json, and the summary sweep.nc once all "
                        "have finished. Re-running the command skips the finished runs. Open the results with "
                        "gf.open_sweep(STORE).",
                        epilog=_examples("gflow sweep docs/sweep.toml --out results/exp1-sweep",
                                         "gflow sweep docs/sweep.toml --out results/exp1-sweep --executor process "
                                         "--progress"), **fmt)
    sw.add_argument("config", help="TOML: seeds = N, [network], [data] (generator = ...), [solver] (kind = ...), "
                    "[grid] ('section.key' = [values]); see docs/sweep.toml")
    sw.add_argument("--out", required=True, help="the store folder, a folder of its own (re-running skips the runs "
                    "already there)")
    sw.add_argument("--executor", default="local", choices=["local", "process", "dask", "submitit"],
                    help="local: serial; process: a process pool; dask: dask.distributed; submitit: SLURM")
    sw.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: the number of cores, or one per GPU for runs on 'cuda'); "
                    "with submitit, jobs in flight")
    sw.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (with --executor dask)")
    sw.add_argument("--format", default=None, choices=["netcdf", "zarr"],
                    help="run records: netcdf (a file per run; default for a new store) or zarr (a group per run in "
                    "one zarr store, appended concurrently by the workers; pip install zarr)")
    sw.add_argument("--cluster", default=None, choices=["auto", "slurm", "local", "debug"],
                    help="with --executor submitit: slurm (auto: when sbatch exists), local processes, or debug "
                    "(in this process)")
    sw.add_argument("--submitit-param", action="append", default=[], metavar="KEY=VALUE", dest="submitit_param",
                    help="a submitit parameter (repeatable), e.g. timeout_min=30, slurm_partition=gpu")
    sw.add_argument("--retry-failed", action="store_true", dest="retry_failed",
                    help="also repeat runs recorded with a failure status")
    sw.add_argument("--extend", action="store_true",
                    help="add runs (more grid values or seeds, the other settings unchanged) to the sweep already "
                    "in --out; any other change of configuration needs a new --out")
    sw.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="overall progress bar (default: only in a terminal; without one nothing is printed until "
                    "the sweep finishes)")
    sw.set_defaults(func=cmd_sweep)

    r = sub.add_parser("rerun", help="repeat a run from its saved file alone",
                       description="Repeat a run from its saved file alone (network, data, solver settings and "
                       "seeds are in the file) and save the new run.",
                       epilog=_examples("gflow rerun run.nc --out again.nc"), **fmt)
    r.add_argument("file", help="a run file (as for gflow show)")
    r.add_argument("--out", default="gflow-rerun.nc", help="result file of the new run")
    r.set_defaults(func=cmd_rerun)

    from .bench.cli import add_parser as add_bench_parser  # gflow bench {accuracy,speed}

    b = add_bench_parser(sub)
    b.formatter_class = _HelpFormatter
    b.epilog = _examples("gflow bench accuracy --tiny --out /tmp/bench-accuracy      # seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    from ._lock import InUseError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"gflow: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # (`gflow certify run.nc | head -3` ended in a traceback)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (Python would report the broken pipe again when it flushes stdout)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError, InUseError) as exc:
        print(f"gflow: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # (a full disk, a folder made read-only during a run: a message, not a traceback)
        print(f"gflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # (a sweep or a reproduction keeps the runs it finished: the same command goes on)
        print(f"gflow: interrupted (Ctrl-C) during 'gflow {args.command}'", file=sys.stderr)
        if argv is None:  # (the command's own process: not a test's or a script's call with arguments)
            _hold_further_ctrl_c()
        return EXIT_INTERRUPTED


def _hold_further_ctrl_c() -> None:
    """After an interruption is reported, ignore further Ctrl-Cs while the process exits (with EXIT_INTERRUPTED):
    one that came during Python's shutdown, after it had restored SIGINT's default action, killed the process (exit
    status −2, not 130: a sweep's double Ctrl-C, half the runs of its test).  SIG_IGN, which the shutdown keeps, for
    every thread (a mask of the main thread alone left torch's threads to take the signal); in the main thread only."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
