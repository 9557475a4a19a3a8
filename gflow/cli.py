"""Command line: ``gflow demo``, ``gflow simulate``, ``gflow show``, ``gflow rerun``, ``gflow extend``, ``gflow sweep``
(also ``python -m gflow``).

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


#: the tables of the solver's keys: [solver] (a sweep file's spelling) or [simulate] (read as cfg["simulate"])
_SOLVER_TABLES = ("solver", "simulate")
#: the solvers' keywords that a run file does not set: the data (from [data]) and the warnings (the summary says)
_NOT_SOLVER_KEYS = {"net", "X", "y", "X_test", "y_test", "warn", "_continue"}


def _kinds() -> tuple[str, ...]:
    from .sweeps.config import SOLVER_KINDS

    return SOLVER_KINDS


def _solver_keys(kind: str | None) -> set[str]:
    """The keys of the solver's section for ``kind`` (a sweep's ``solver.kind``): ``kind`` and the keywords of
    gf.simulate or gf.gradient_descent less the data; for None (not chosen yet) those of both."""
    from .sweeps.config import _solver_fn

    kinds = _kinds() if kind is None else (kind,)
    return {"kind"}.union(*(set(inspect.signature(_solver_fn(k)).parameters) - _NOT_SOLVER_KEYS for k in kinds))


def _data_keys(generator: str | None) -> set[str]:
    """The keys of [data] for a generator, as a sweep reads them: ``generator``, ``n_test``, ``test_seed`` and the
    generator's own keywords (``n``, ``seed``, ``teacher_width``, ...); for None (not chosen yet) any generator's."""
    from . import data as gdata
    from .sweeps.config import _data_keys as sweep_data_keys

    gens = tuple(gdata.GENERATORS) if generator is None else (generator,)
    return {"n", "seed"}.union(*(sweep_data_keys(g) for g in gens))


def _check_kind(kind: Any, where: str) -> str:
    if kind not in _kinds():
        raise CLIError(f"{where} = {kind!r}; expected one of {list(_kinds())}")
    return kind


def _check_generator(generator: Any, where: str) -> str:
    from . import data as gdata

    if generator not in gdata.GENERATORS:
        raise CLIError(f"{where}unknown data generator {generator!r}; expected one of {sorted(gdata.GENERATORS)}")
    return generator


def _other_kind(keys, kind: str | None) -> str:
    """Where keys are the other solver's (``steps`` in a flow's file): which, and how to choose it."""
    if kind is None:
        return ""
    other = [k for k in _kinds() if k != kind]
    theirs = sorted(set(keys) & set().union(*(_solver_keys(k) for k in other)))
    return (f" ({', '.join(map(repr, theirs))} {'is' if len(theirs) == 1 else 'are'} for kind = "
            f"{' or '.join(map(repr, other))}, not {kind!r})" if theirs else "")

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
    """Read a TOML run file into ``{"network": {...}, "simulate": {...}, "data": {...}}`` (``"simulate"``: the
    solver's keys, ``kind`` among them where the file gives it).

    Keys may be grouped in ``[network]``, ``[solver]`` (or ``[simulate]``) and ``[data]`` tables, as in a sweep file
    (docs/sweep.toml), or written at top level, where each is routed to :class:`gflow.Network` or the solver by name
    (``seed`` at top level is the network seed; the data seed lives in ``[data]``).  The solver is ``kind =
    "simulate"`` (the flow, the default) or ``"gradient_descent"``, with that function's keywords; ``[data]`` holds
    ``generator``, ``n_test``, ``test_seed`` and the generator's keywords (``quadratic_teacher``'s
    ``teacher_width``).
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
    solver_tables = [t for t in _SOLVER_TABLES if isinstance(raw.get(t), dict)]
    if len(solver_tables) > 1:
        raise CLIError(f"{path}: the solver's keys go in one table, [solver] or [simulate], not both")
    # the solver's kind and the data generator decide which keys exist, as in a sweep file; where the file leaves
    # them out (--kind and --data may give them), the keys of any are accepted here and checked once they are known
    kind = raw.get(solver_tables[0], {}).get("kind") if solver_tables else None
    kind = raw.get("kind") if kind is None else kind
    kind = None if kind is None else _check_kind(kind, f"{path}: kind")
    gen = raw["data"].get("generator") if isinstance(raw.get("data"), dict) else None
    gen = None if gen is None else _check_generator(gen, f"{path}: [data] ")
    net_keys, sim_keys, dat_keys = _network_keys(), _solver_keys(kind), _data_keys(gen)
    cfg: dict[str, dict] = {"network": {}, "simulate": {}, "data": {}}
    top: dict[str, dict] = {"network": {}, "simulate": {}}  # the top-level keys, routed by name
    tables: dict[str, tuple[str, dict]] = {}  # section -> (the table's name in the file, its keys)
    for key, value in raw.items():
        if key in ("network", *_SOLVER_TABLES, "data") and isinstance(value, dict):
            section = "simulate" if key in _SOLVER_TABLES else key
            allowed = {"network": net_keys, "simulate": sim_keys, "data": dat_keys}[section]
            bad = sorted(set(value) - allowed)
            if bad:
                hint = _other_kind(bad, kind) if section == "simulate" else ""
                raise CLIError(f"{path}: unknown key(s) {bad} in [{key}]{hint}; allowed: {sorted(allowed)}")
            tables[section] = (key, value)
        elif key in net_keys:
            top["network"][key] = value
        elif key in sim_keys:
            top["simulate"][key] = value
        else:
            solver = f"gf.{kind}" if kind else "gf.simulate or gf.gradient_descent"
            raise CLIError(
                f"{path}: unknown key {key!r}{_other_kind([key], kind)}; top-level keys are gf.Network keywords "
                f"{sorted(net_keys)} or the solver's (kind = {' | '.join(map(repr, _kinds()))} and {solver} "
                f"keywords {sorted(sim_keys - {'kind'})}; also in a [solver] table), and data goes in a [data] "
                f"table ({sorted(dat_keys)})"
            )
    for section, (table, values) in tables.items():
        # a key both at top level and in its table was resolved silently (the table's won): refused, as a sweep
        # config refuses a key both fixed and swept
        for key in sorted(set(values) & set(top.get(section, {}))):
            raise CLIError(f"{path}: {key!r} is given both at top level ({top[section][key]!r}) and in [{table}] "
                           f"({values[key]!r}); keep one")
    for section in cfg:
        cfg[section].update(top.get(section, {}))
        cfg[section].update(tables.get(section, ("", {}))[1])
    return cfg


def run_config(cfg: dict, *, progress=print):
    """Build the network and data of a config and run its solver (``kind``: gf.simulate, the default, or
    gf.gradient_descent); returns the Solution."""
    from ._validate import check_positive_int
    from .sweeps.config import _solver_fn
    from .sweeps.run import build_problem

    net_kw = dict(cfg["network"])
    solver = dict(cfg["simulate"])
    kind = _check_kind(solver.pop("kind", "simulate"), "kind")
    dat = {"generator": "random_labels", "n": 20, "seed": 0, **cfg["data"]}
    if "d" not in net_kw:
        raise CLIError("the network needs the input dimension d (--d or d = ... in the config)")
    gen_name = _check_generator(dat["generator"], "")
    bad = sorted(set(dat) - _data_keys(gen_name))
    if bad:  # (a file's quadratic_teacher keywords, with --data switching to another generator)
        raise CLIError(f"[data] key(s) {bad} are not keywords of the generator {gen_name!r} (--data); it takes "
                       f"{sorted(_data_keys(gen_name))}")
    n_test = dat.get("n_test")
    if n_test is not None and (isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0):
        raise CLIError(f"n_test (--n-test) must be an integer >= 0 (0: no test data), got {n_test!r}")
    test_seed = dat.get("test_seed")
    if test_seed is not None:
        test_seed = check_positive_int(test_seed, "test_seed ([data] test_seed)", minimum=0)
    # (the sweep's builder: the generator's own keywords, the test data from seed + 1 unless test_seed)
    net, X, y, test = build_problem({"network": net_kw, "data": {**dat, "test_seed": test_seed}})
    extra = "".join(f", {k}={v!r}" for k, v in dat.items() if k not in ("generator", "n", "seed", "n_test",
                                                                         "test_seed"))
    progress(f"{net}\ndata: {gen_name}(n={dat['n']}, d={net.d}, seed={dat['seed']}{extra})"
             + (f", test n={dat['n_test']}" if test else ""))
    return _solver_fn(kind)(net, X, y, **{"progress": None, **solver}, **test, warn=False)


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


def _finish(sol, out: Path, checkpoint=None) -> int:
    """Print the summary, save ``sol`` to ``out`` and, once it is saved and the run finished, delete its
    ``checkpoint`` (not before: a result that could not be saved — a full disk — would be lost whole, and the same
    command would run again from t = 0: an audit); the exit status: 0 for a finished run, 1 for a stopped one."""
    print(sol.summary())
    path = sol.save(out)
    print(f"wrote {path}")
    if checkpoint is not None and sol.ok:
        from .solve.checkpoint import delete

        delete(checkpoint)
    return 0 if sol.ok else 1


def _loss_figure(sol, path: Path, note: str = "") -> None:
    """--figure: the training loss against the paper's bounds, PNG or PDF (a missing folder is made, as --out's)."""
    from .plotting import plot_loss_bounds

    fig = plot_loss_bounds(sol)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    print(f"wrote {path} (training loss against the paper's bounds{note})")


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
    out = _out_file(args.out)
    fig_path = _figure_file(args.figure, "--figure") if args.figure else out.with_suffix(".png")
    sol, stopped = _run_saving_partial(lambda: run_config(DEMO), out)
    if stopped is not None:
        return stopped
    rc = _finish(sol, out)
    cert = certify(sol)
    print(cert)
    _loss_figure(sol, fig_path)
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


#: the solver flags of one kind only: the flow's (gf.simulate) and gradient descent's (gf.gradient_descent)
_FLOW_FLAGS = ("t1", "method", "rtol", "atol", "max_steps", "error_estimate")
_GD_FLAGS = ("steps", "save_every")


def cmd_simulate(args) -> int:
    cfg = load_config(args.config) if args.config else {"network": {}, "simulate": {}, "data": {}}
    # errors name an argument as its value arrived: the flag where it was typed or is missing, the key where the
    # file gave it (rtol = 1e-20 in run.toml was reported as "--rtol 1e-20", a flag never typed)
    from_file = {k for k in {*cfg["network"], *cfg["simulate"]} if getattr(args, k, None) is None}
    flag_of = {k: f for k, f in args.flag_of.items() if k not in from_file}
    kind = args.kind or cfg["simulate"].get("kind", "simulate")
    given = [args.flag_of[k] for k in (_GD_FLAGS if kind == "simulate" else _FLOW_FLAGS)
             if getattr(args, k) is not None]
    if given:
        where = "" if args.kind else (f" ({args.config} gives kind = {kind!r})" if "kind" in cfg["simulate"] else
                                      " (the default)")
        raise CLIError(
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not for --kind {kind}{where}: "
            + ("gradient descent (--kind gradient_descent) runs --steps steps of size --step (to t = steps × step) "
               "and saves every --save-every steps" if kind == "gradient_descent" else
               "--steps and --save-every are for gradient descent (--kind gradient_descent); the flow runs to --t1"))
    flags = {
        "network": {"d": args.d, "width": args.width, "activation": args.activation,
                    "embedding": parse_embedding(args.embedding) if args.embedding else None,
                    "scaling": args.scaling, "c_hat": args.c_hat, "seed": args.seed, "dtype": args.dtype,
                    "device": args.device},
        "simulate": {"kind": args.kind, "t1": args.t1, "method": args.method, "rtol": args.rtol, "atol": args.atol,
                     "step": args.step, "steps": args.steps, "save_every": args.save_every, "max_steps": args.max_steps,
                     "max_wall_time": args.max_wall_time, "space": args.space,
                     "error_estimate": args.error_estimate},
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
    bad = sorted(set(cfg["simulate"]) - _solver_keys(kind))
    if bad:  # (a flow's file run with --kind gradient_descent, or the other way round)
        what = "a keyword" if len(bad) == 1 else "keywords"
        raise CLIError(f"{args.config} gives {', '.join(map(repr, bad))}, not {what} of gf.{kind} (--kind {kind})"
                       f"{_other_kind(bad, kind)}; it takes "
                       f"{sorted(_solver_keys(kind) - {'kind'})}")
    if "width" not in cfg["network"]:
        raise CLIError("the network needs a width (--width or width = ... in the config)")
    if kind == "simulate" and "t1" not in cfg["simulate"] and "saveat" not in cfg["simulate"]:
        raise CLIError("give the final time (--t1 or t1 = ... in the config)")
    out = _out_file(args.out)
    # a checkpoint goes once the result is saved, not before (deleted by the solver, a result that could not be
    # saved — a full disk — was lost whole, and the same command ran again from t = 0: an audit)
    ckpt = cfg["simulate"].get("checkpoint") if cfg["simulate"].get("keep_checkpoint", False) is False else None
    if ckpt is not None:
        cfg["simulate"]["keep_checkpoint"] = True

    def run():
        from ._validate import cli_spelling

        with cli_spelling(flag_of):  # (the API's errors about these arguments name their flags: --step 0.01)
            return run_config(cfg)

    sol, stopped = _run_saving_partial(run, out)
    if stopped is not None:
        return stopped
    return _finish(sol, out, checkpoint=ckpt)


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
        for f in res.files:  # runs.nc, the figures (.png and .pdf) and summary.md
            print(f"  wrote {f}")
    return 0


def cmd_rerun(args) -> int:
    from .solve.rerun import rerun

    out = _out_file(args.out)
    sol, stopped = _run_saving_partial(lambda: rerun(args.file), out)
    return stopped if stopped is not None else _finish(sol, out)


def _saveat_arg(text: str):
    """--saveat: a count of output times (an integer: ``200``) or times (``3000,4000,5000``; one: ``2500.0``)."""
    usage = "expected a count of output times (an integer, e.g. 200) or comma-separated times (e.g. 3000,4000,5000)"
    text = text.strip()
    if "," not in text:
        try:
            return int(text)
        except ValueError:
            pass
        try:  # (one time: --saveat 5000.5)
            return [float(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{usage}, got {text!r}") from None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{usage}, got {text!r}") from None


def cmd_extend(args) -> int:
    from ._validate import cli_spelling
    from .solution import Solution
    from .solve.extend import extend

    out = _out_file(args.out)
    fig_path = _figure_file(args.figure, "--figure") if args.figure else None
    src = Solution.load(args.file)  # (once: read, checked and continued from memory)
    # the checkpoint goes once the result is saved, not before (as gflow simulate's: a result that could not be saved
    # is not lost, and the same command resumes it)
    keep = args.checkpoint is not None
    kw = {k: getattr(args, k) for k in ("t1", "steps", "saveat", "save_every", "method", "rtol", "atol", "step",
                                         "max_steps", "max_wall_time", "device", "checkpoint")}
    kw = {k: v for k, v in kw.items() if v is not None}
    if keep:
        kw.update(checkpoint_every=args.checkpoint_every, keep_checkpoint=True)

    def run():
        with cli_spelling(args.flag_of):  # (extend's errors name these arguments as flags: give --steps, not --t1)
            return extend(src, **kw, progress=None, warn=False)

    sol, stopped = _run_saving_partial(run, out)
    if stopped is not None:
        return stopped
    code = _finish(sol, out, checkpoint=args.checkpoint if keep else None)
    if fig_path is not None:
        _loss_figure(sol, fig_path, f", t ∈ [0, {sol.t[-1]:g}]")
    return code


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


def _first_failure(ds, status: str, width: int = 240) -> str:
    """``"; first: RUN_ID (point, seed): the first line of its message"`` for the first run of ``ds`` (a sweep's
    summary) with ``status``, or "" where it has no message: the summary gave counts only, so a run that raised an
    error exited with status 1 and no word of the error (an audit)."""
    import json

    import numpy as np

    i = int(np.flatnonzero(ds.status.values == status)[0])
    lines = str(ds.message.values[i]).strip().splitlines() if "message" in ds.coords else []
    if not lines:
        return ""
    point = [f"{k}={ds[k].values[i]}" for k in json.loads(ds.attrs.get("grid_coords", "{}")) if k in ds.coords]
    if "seed" in ds.coords:
        point.append(f"seed {ds.seed.values[i]}")
    text = lines[0] if len(lines[0]) <= width else lines[0][:width - 3] + "..."
    return f"; first: {ds.run_id.values[i]} ({', '.join(point)}): {text}"


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
        print(f"  {status}: {int((ds.status == status).sum())} run(s){_first_failure(ds, status)}")
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


def _defaults() -> tuple[dict, dict, dict]:
    """The defaults of gf.Network, gf.simulate and gf.gradient_descent, for the help of ``gflow simulate`` (its flags
    default to None so that a TOML file's values are kept)."""
    from .model.network import Network
    from .solve.gd import gradient_descent
    from .solve.ode import simulate

    net = {k: f.default for k, f in Network.__dataclass_fields__.items()}
    sim, gd = ({k: p.default for k, p in inspect.signature(fn).parameters.items()}
               for fn in (simulate, gradient_descent))
    return net, sim, gd


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data import GENERATORS
    from .model.activations import ACTIVATIONS
    from .solve.ode import METHODS

    net_default, sim_default, gd_default = _defaults()
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
    s = sub.add_parser("simulate", help="simulate a flow (or gradient descent) from flags and/or a TOML file",
                       description="Integrate a gradient flow (gf.simulate) of a gf.Network on gf.data data and save "
                       "it, or with --kind gradient_descent run gradient descent (gf.gradient_descent) from the same "
                       "initialisation. Flags override the TOML file's values; defaults are gf.Network's and the "
                       "solver's. The flow's final time is required (--t1, or t1 = ... in the file).",
                       epilog=_examples(
                           "gflow simulate --d 20 --width 1024 --activation tanh --n 20 --n-test 200 --t1 500 "
                           "--out run.nc",
                           "gflow simulate run.toml --out run.nc          # the TOML file of the README",
                           "gflow simulate --d 20 --width 256 --t1 20 --out flow.nc",
                           "gflow simulate --d 20 --width 256 --kind gradient_descent --step 0.25 --steps 80 "
                           "--save-every 20 --out gd.nc",
                           "gflow compare gd.nc flow.nc                   # GD's errors against the flow"), **fmt)
    s.add_argument("config", nargs="?", help="TOML file: gf.Network keywords (top level or in [network]), the "
                   "solver's (kind = \"simulate\" or \"gradient_descent\" and that function's keywords, top level or "
                   "in [solver], as in a sweep file; [simulate] also works) and [data] (generator = ... and its "
                   "keywords, n_test, test_seed)")
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
    g = s.add_argument_group("solver (gf.simulate, or gf.gradient_descent with --kind gradient_descent)")
    g.add_argument("--kind", choices=list(_kinds()), help="simulate: the gradient flow (the default); "
                   "gradient_descent: gradient descent with step --step, from the same initialisation (to compare "
                   "with the flow: gflow compare gd.nc flow.nc)")
    g.add_argument("--t1", type=float, help="final flow time (required, here or as t1 in the file)")
    g.add_argument("--method", help=f"auto or one of {', '.join(methods)}, or torchdiffeq.NAME (default: "
                   f"{sim_default['method']}: picked per problem, see 'Choosing a solver' in the README)")
    g.add_argument("--rtol", type=float, help="relative tolerance of adaptive methods (default: 1e-7 in float64, 1e-5 "
                   "in float32)")
    g.add_argument("--atol", type=float, help=f"absolute tolerance of adaptive methods (default: {sim_default['atol']:g})")
    g.add_argument("--step", type=_step_arg, help="step of fixed-step methods (euler, midpoint, rk4, sliding, ...): "
                   "required for them, refused for adaptive ones; 'none' drops a step the config file gives; "
                   f"gradient descent: its step δ (default: {gd_default['step']})")
    g.add_argument("--steps", type=int, help=f"gradient descent: number of steps, to t = steps × step (default: "
                   f"{gd_default['steps']})")
    g.add_argument("--save-every", type=int, dest="save_every", help="gradient descent: record every this many "
                   "steps; the last is always recorded (default: about 200 saved steps, at most every 100th)")
    g.add_argument("--max-steps", type=int, dest="max_steps", help="limit on step attempts; a run that needs more "
                   f"stops with status max_steps (default: {sim_default['max_steps']})")
    g.add_argument("--max-wall-time", type=float, dest="max_wall_time", help="wall-time budget in seconds "
                   "(default: none)")
    g.add_argument("--space", help=f"auto | feature | weight (default: {sim_default['space']})")
    g.add_argument("--error-estimate", action="store_true", default=None, dest="error_estimate",
                   help="fill the run's error_estimate, the estimated relative loss error at each saved time: a "
                   "second, looser solve (auto, dop853, exprk4, dop853+exprk4, filippov) or steps h, h/2, h/4 (a "
                   "fixed-step --method with --step); gflow show prints its largest value")
    g = s.add_argument_group("data (gf.data)")
    g.add_argument("--data", help=f"{' | '.join(GENERATORS)} (default: random_labels)")
    g.add_argument("--n", type=int, help="number of training points (default: 20)")
    g.add_argument("--data-seed", type=int, dest="data_seed", help="seed of the training data (default: 0; the "
                   "test data use seed + 1)")
    g.add_argument("--n-test", type=int, dest="n_test", help="number of test points (default: 0, none)")
    # flag_of: each option's flag by its keyword, to name it in errors (--step, not step=) and in cmd_simulate
    s.set_defaults(func=cmd_simulate, flag_of={a.dest: a.option_strings[0] for a in s._actions if a.option_strings})

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

    e = sub.add_parser("extend", help="continue a saved run to a longer horizon (a flow to --t1, GD --steps more "
                       "steps), as one run", description="Continue a saved run from its end (gf.extend) and save the "
                       "whole run: the original's rows, then the new ones, with the running integrals, the movements "
                       "(from the original t = 0) and the statistics continuing, so that gflow certify certifies the "
                       "whole run. A flow continues to --t1 with its method and tolerances (the flags override them); "
                       "gradient descent takes --steps more steps of its δ. The run file must hold its weights (the "
                       "default of gflow simulate; a sweep's runs need keep_weights = true). A run that diverged, "
                       "stalled or failed, a filippov or sliding run, and an error-estimate run are refused.",
                       epilog=_examples("gflow extend run.nc --t1 50000 --out longer.nc",
                                        "gflow extend run.nc --t1 50000 --saveat 400 --max-wall-time 3600 "
                                        "--checkpoint run.ckpt --out longer.nc   # resumable",
                                        "gflow extend gd.nc --steps 10000 --save-every 100 --out gd-longer.nc",
                                        "gflow certify longer.nc"), **fmt)
    e.add_argument("file", help="a run file with its weights (as for gflow show)")
    e.add_argument("--out", default="gflow-extended.nc", help="result file of the whole run (it may be the run file "
                   "itself: it is replaced whole, once the continuation has run)")
    g = e.add_argument_group("how far")
    g.add_argument("--t1", type=float, help="flows: the new final time, beyond the run's end")
    g.add_argument("--steps", type=int, help="gradient descent: how many more steps (of the run's δ)")
    g.add_argument("--saveat", type=_saveat_arg, help="flows: the continuation's output times, a count (an integer: "
                   "evenly spaced over (end, t1]) or times in (end, t1] (comma-separated; one time: 2500.0) "
                   "(default: those the run to --t1 would have saved beyond the end)")
    g.add_argument("--save-every", type=int, dest="save_every", help="gradient descent: save the steps that are "
                   "multiples of this, counted from the run's start (default: the run's)")
    g = e.add_argument_group("solver (flows; default: the run's)")
    g.add_argument("--method", help="the continuation's method (gflow's native ones, torchdiffeq's, scipy's; a "
                   "switching or exprk4 run continues with --method dop853)")
    g.add_argument("--rtol", type=float, help="relative tolerance of adaptive methods")
    g.add_argument("--atol", type=float, help="absolute tolerance of adaptive methods")
    g.add_argument("--step", type=float, help="step of fixed-step methods")
    g.add_argument("--max-steps", type=int, dest="max_steps", help="limit on the continuation's step attempts")
    g = e.add_argument_group("limits, checkpoint and output")
    g.add_argument("--max-wall-time", type=float, dest="max_wall_time", help="the continuation's wall-time budget in "
                   "seconds (default: none)")
    g.add_argument("--checkpoint", default=None, help="checkpoint file of the continuation (native methods and "
                   "gradient descent): the same command resumes a continuation that was stopped (a limit, Ctrl-C, a "
                   "killed process); deleted once the result is saved")
    g.add_argument("--checkpoint-every", type=float, default=60.0, dest="checkpoint_every",
                   help="seconds of wall time between checkpoints")
    g.add_argument("--device", help="continue on another device: cpu | cuda (default: the run's)")
    g.add_argument("--figure", default=None, help="also draw the whole run's loss against the bounds, PNG or PDF "
                   "(default: none)")
    e.set_defaults(func=cmd_extend, flag_of={a.dest: a.option_strings[0] for a in e._actions if a.option_strings})

    from .bench.cli import add_parser as add_bench_parser  # gflow bench {accuracy,speed}

    b = add_bench_parser(sub)
    b.formatter_class = _HelpFormatter
    b.epilog = _examples("gflow bench accuracy --tiny      # seconds; into a new ./gflow-bench-accuracy-<date>-<time>/",
                         "gflow bench speed --out benchmarks/results/speed --force   # replace the committed results")
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
