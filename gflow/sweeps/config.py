r"""Sweep configuration: the four sections, validation up front, the grid × seeds expansion and run ids.

A sweep is ``network`` (:class:`gflow.Network` keywords), ``data`` (``generator`` = a :mod:`gflow.data`
function and its arguments, plus ``n_test`` / ``test_seed``), ``solver`` (``kind`` = ``"simulate"`` or
``"gradient_descent"`` and that function's keywords), a ``grid`` mapping ``"section.key"`` to a list of values,
and ``seeds`` (network seeds).  A run is one grid point × one seed; its id is a hash of its resolved
configuration less the run limits (:data:`RUN_LIMITS`), so the same run always lands in the same file of a
store, also when it is repeated with a larger ``max_wall_time``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validate import describe, is_int

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECTIONS = ("network", "data", "solver")
SOLVER_KINDS = ("simulate", "gradient_descent")
#: data keys handled by the sweep itself rather than passed to the generator
DATA_KEYS = ("generator", "n_test", "test_seed")
#: solver keywords the sweep sets itself (the data, progress bars, warnings, per-run checkpoint files)
_RESERVED_SOLVER = {"net", "X", "y", "X_test", "y_test", "warn", "progress", "checkpoint", "_continue"}
#: solver keywords that bound a run or its checkpoints but do not change its result: left out of the run id (as
#: the checkpoint fingerprint leaves them out), so that a run stopped by a limit ("time_budget", "max_steps") and
#: repeated with a larger one is the same run, resuming from its checkpoint instead of starting a new run file
RUN_LIMITS = ("max_wall_time", "max_steps", "checkpoint_every", "keep_checkpoint", "threads")  # (threads: the CPU
# threads of a solve, a matter of speed; with it in the id, adding threads = 1 to a sweep started every run again)
#: the run-id scheme, recorded in a store's manifest: 1 (gflow before RUN_LIMITS, no record in the manifest)
#: hashed the limits too; 2 leaves them out
RUN_ID_VERSION = 2


class SweepConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the offending key."""


def _solver_fn(kind: str):
    from ..solve.gd import gradient_descent
    from ..solve.ode import simulate

    return {"simulate": simulate, "gradient_descent": gradient_descent}[kind]


def accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (e.g. ``checkpoint``, added by a later gflow)."""
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _network_keys() -> set[str]:
    from ..model.network import Network

    return {f for f in Network.__dataclass_fields__ if not f.startswith("_")} - {"seed", "c", "W0"}


def _data_keys(generator: str) -> set[str]:
    from .. import data as gdata

    return (set(inspect.signature(gdata.GENERATORS[generator]).parameters) - {"d"}) | set(DATA_KEYS)


def _solver_keys(kind: str) -> set[str]:
    return (set(inspect.signature(_solver_fn(kind)).parameters) - _RESERVED_SOLVER) | {"kind"}


def _plain(value: Any, where: str) -> Any:
    """A JSON-able copy (TOML and Python literals); numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if type(value).__name__ == "dtype" and type(value).__module__ == "torch":  # torch.float32 -> "float32"
        return str(value).replace("torch.", "")
    if hasattr(value, "spec") and callable(value.spec):  # gf.RandomFeatures(...), gf.Activation, ...
        spec = value.spec()
        if isinstance(spec, dict) and spec.get("kind") == "callable":
            raise SweepConfigError(f"{where}: a user callable cannot be part of a sweep (runs must be rebuilt "
                                   "from the configuration alone); use a named embedding or activation")
        return _plain(spec, where)
    raise SweepConfigError(f"{where}: expected a number, string, bool, list or table, got {describe(value)}")


def _canonical(value: Any) -> Any:
    """Normalise for hashing: 5 and 5.0 are the same run (TOML and Python write them differently), and a key set
    to None is a key left out."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isfinite(v) and v == int(v) and abs(v) < 2**53:
            return int(v)
        return repr(v)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items()) if v is not None}
    return repr(value)


def run_id_of(resolved: dict, *, version: int = RUN_ID_VERSION) -> str:
    """A stable 16-hex-digit id: the SHA-256 of the canonical JSON of the resolved run configuration without the
    run limits (:data:`RUN_LIMITS`); ``version=1`` gives the id of earlier gflow versions, which hashed the limits
    too (to find the runs of a store written by one, see :func:`gflow.sweeps.store.migrate_run_ids`)."""
    if version not in (1, RUN_ID_VERSION):
        raise ValueError(f"version must be 1 or {RUN_ID_VERSION} (the run-id scheme), got {version!r}")
    if version >= 2 and "solver" in resolved:
        resolved = {**resolved, "solver": {k: v for k, v in resolved["solver"].items() if k not in RUN_LIMITS}}
    text = json.dumps(_canonical(resolved), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its id, its grid point (``{"section.key": value}``), seed and resolved config."""

    run_id: str
    index: int
    point: dict
    seed: int
    config: dict  # {"network": {...with seed}, "data": {...}, "solver": {...with kind}}


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: fixed sections, the grid (ordered keys) and the seeds.

    Build it with :meth:`from_dict` / :meth:`from_toml` (which validate and raise
    :class:`SweepConfigError` naming the key), expand it with :meth:`runs`.
    """

    network: dict
    data: dict
    solver: dict
    grid: dict = field(default_factory=dict)
    seeds: tuple = (0,)

    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: "str | Path") -> "SweepConfig":
        """Read ``seeds``, ``[network]``, ``[data]``, ``[solver]`` and ``[grid]`` from a TOML file."""
        path = Path(path)
        if not path.exists():
            raise SweepConfigError(f"sweep config file not found: {path}")
        if path.is_dir():
            raise SweepConfigError(f"sweep config file {path} is a directory, not a TOML file")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SweepConfigError(f"{path}: invalid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise SweepConfigError(f"{path} is not UTF-8 text (a TOML file): {exc}") from None
        bad = sorted(set(raw) - {"seeds", "grid", *SECTIONS})
        if bad:
            raise SweepConfigError(f"{path}: unknown top-level key(s) {bad}; a sweep file has seeds = N and the "
                                   "tables [network], [data], [solver] and [grid]")
        try:
            return cls.from_dict(raw.get("network", {}), raw.get("data", {}), raw.get("solver", {}),
                                 raw.get("grid"), raw.get("seeds", 1))
        except SweepConfigError as exc:
            raise SweepConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, network: dict, data: dict, solver: dict, grid: dict | None = None,
                  seeds: "int | Sequence[int]" = 1) -> "SweepConfig":
        """Validate the sections, grid and seeds (see :func:`gflow.sweep`)."""
        from .. import data as gdata

        sections = {}
        for name, value in (("network", network), ("data", data), ("solver", solver)):
            if not isinstance(value, dict):
                raise SweepConfigError(f"[{name}] must be a table (dict) of keywords, got {describe(value)}")
            sections[name] = {str(k): _plain(v, f"{name}.{k}") for k, v in value.items()}
        grid = {} if grid is None else grid
        if not isinstance(grid, dict):
            raise SweepConfigError(f"grid must be a table mapping 'section.key' to a list, got {describe(grid)}")
        clean_grid: dict[str, list] = {}
        for key, values in grid.items():
            if not isinstance(key, str) or key.count(".") != 1 or key.split(".")[0] not in SECTIONS:
                raise SweepConfigError(f"grid key {key!r} must be written 'section.key' with section one of "
                                       f"{list(SECTIONS)}, e.g. 'data.n' or 'network.width'")
            if not isinstance(values, (list, tuple, np.ndarray)) or isinstance(values, str):
                raise SweepConfigError(f"grid[{key!r}] must be a list of values, got {describe(values)}")
            if len(values) == 0:
                raise SweepConfigError(f"grid[{key!r}] is an empty list; give at least one value")
            clean_grid[key] = _plain(list(values), f"grid.{key}")
        seeds_t = _check_seeds(seeds)

        # the generator and the solver kind decide which keys exist; they may be gridded themselves
        gens = clean_grid.get("data.generator", [sections["data"].get("generator")])
        for gen in gens:
            if gen is None:
                raise SweepConfigError(f"data.generator is missing; give one of {sorted(gdata.GENERATORS)}")
            if gen not in gdata.GENERATORS:
                raise SweepConfigError(f"data.generator = {gen!r} is not a gflow.data generator; expected one of "
                                       f"{sorted(gdata.GENERATORS)}")
        kinds = clean_grid.get("solver.kind", [sections["solver"].get("kind")])
        for kind in kinds:
            if kind not in SOLVER_KINDS:
                raise SweepConfigError(f"solver.kind = {kind!r}; expected one of {list(SOLVER_KINDS)}")
        allowed = {
            "network": _network_keys(),
            "data": set.intersection(*(_data_keys(g) for g in gens)),
            "solver": set.intersection(*(_solver_keys(k) for k in kinds)),
        }
        hints = {
            "network": "(the network seed comes from seeds = N)",
            "data": "(d is the network's d)",
            "solver": "(the data, progress, warn and checkpoint are set by the sweep)",
        }
        keys = [(s, k) for s in SECTIONS for k in sections[s]] + [tuple(g.split(".")) for g in clean_grid]
        for section, key in keys:
            if key not in allowed[section]:
                raise SweepConfigError(f"unknown key {section}.{key}; allowed in [{section}]: "
                                       f"{sorted(allowed[section])} {hints[section]}")
        for g in clean_grid:
            section, key = g.split(".")
            if section == "solver" and key in RUN_LIMITS:
                raise SweepConfigError(f"{g} is a run limit, which does not change a run's result and is not part "
                                       f"of its id, so it cannot be swept in [grid]; set it in [solver]")
            if key in sections[section]:
                raise SweepConfigError(f"{g} is both fixed in [{section}] and swept in [grid]; keep one")
        for g, values in clean_grid.items():  # every value of the grid, not only the first run's
            for v in values:
                problem = _value_problem(g, v)
                if problem:
                    raise SweepConfigError(f"grid[{g!r}] has the value {v!r}, which cannot run: {problem}")
        for g, values in clean_grid.items():  # (after the value checks: every value resolves)
            problem = _repeats(g, values)
            if problem:
                raise SweepConfigError(problem)
        for section, key in keys[: len(keys) - len(clean_grid)]:  # the fixed values, checked as the grid's are
            problem = _value_problem(f"{section}.{key}", sections[section][key])
            if problem:
                raise SweepConfigError(f"{section}.{key} = {sections[section][key]!r} cannot run: {problem}")
        if "n" not in sections["data"] and "data.n" not in clean_grid:
            raise SweepConfigError("data.n (the number of training points) is missing")
        for req in ("d", "width"):
            if req not in sections["network"] and f"network.{req}" not in clean_grid:
                raise SweepConfigError(f"network.{req} is missing")
        cfg = cls(network=sections["network"], data=sections["data"], solver=sections["solver"], grid=clean_grid,
                  seeds=seeds_t)
        cfg._check_runs()
        return cfg

    # ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"network": self.network, "data": self.data, "solver": self.solver, "grid": self.grid,
                "seeds": list(self.seeds)}

    @property
    def points(self) -> list[dict]:
        """The grid points, in row-major order of the grid keys (the last key varies fastest)."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def resolve(self, point: dict, seed: int) -> dict:
        """The full configuration of one run: the fixed sections updated by the grid point, the seed, and every
        default filled in (so a default written out and one left implicit give the same run id)."""
        cfg = {"network": dict(self.network), "data": dict(self.data), "solver": dict(self.solver)}
        for key, value in point.items():
            section, name = key.split(".")
            cfg[section][name] = value
        cfg["network"]["seed"] = int(seed)
        for section, defaults in _defaults(cfg["data"]["generator"], cfg["solver"]["kind"]).items():
            for key, value in defaults.items():
                cfg[section].setdefault(key, value)
        takes_rtol = "rtol" in inspect.signature(_solver_fn(cfg["solver"]["kind"])).parameters
        if takes_rtol and cfg["solver"].get("rtol") is None:
            # (rtol's default follows the dtype for adaptive methods, gf.simulate's default_rtol: 1e-7 in float64 and
            # for fixed steps as before, so those runs keep their ids; float32 adaptive runs are other runs)
            import torch

            from ..solve.ode import default_rtol

            dtype = getattr(torch, str(cfg["network"].get("dtype", "float64")).replace("torch.", ""))
            cfg["solver"]["rtol"] = default_rtol(dtype, cfg["solver"].get("method"))
        steps = cfg["solver"].get("steps")
        if cfg["solver"]["kind"] == "gradient_descent" and cfg["solver"].get("save_every") is None and \
                is_int(steps) and steps > 0:
            # (GD's default save_every follows steps, as gradient_descent's default_save_every: every 100th from
            # 20 000 steps on, as before, so those runs keep their ids; a shorter run saves more often: another run)
            from ..solve.gd import default_save_every

            cfg["solver"]["save_every"] = default_save_every(int(steps))
        if cfg["data"]["n_test"] and cfg["data"].get("test_seed") is None:
            cfg["data"]["test_seed"] = cfg["data"]["seed"] + 1
        return cfg

    def runs(self) -> list[RunSpec]:
        """Every run: grid points × seeds (seeds vary fastest)."""
        out = []
        for point in self.points:
            for seed in self.seeds:
                cfg = self.resolve(point, seed)
                out.append(RunSpec(run_id_of(cfg), len(out), point, int(seed), cfg))
        first: dict[str, RunSpec] = {}
        for r in out:  # (from_dict refuses such a grid already: see _check_runs)
            if r.run_id in first:
                raise SweepConfigError(_same_run(first[r.run_id].point, r.point))
            first[r.run_id] = r
        return out

    def _check_runs(self) -> None:
        """Put every distinct [network] and [data] section of the grid through the network's and the generator's
        own checks (:func:`_network_problem`, :func:`_data_problem`: no weights drawn, one data point), build the
        first run's network (on the CPU) and data, and put every grid point's solver keywords through the solver's
        own checks (:func:`_solver_problem`), so bad keywords fail now, not in every run."""
        from .run import build_problem

        resolved = [(point, self.resolve(point, self.seeds[0])) for point in self.points]
        ids: dict[str, dict] = {}
        for point, cfg in resolved:  # (a network seed changes every point's id alike: one seed tells)
            run_id = run_id_of(cfg)
            if run_id in ids:
                raise SweepConfigError(_same_run(ids[run_id], point))
            ids[run_id] = point
        seen: set = set()
        for point, cfg in resolved:  # (a bad value after the first point of the grid failed each of its runs)
            for section, problem_of in (("network", _network_problem), ("data", _data_problem)):
                args = cfg["network"] if section == "network" else _data_args(cfg)
                key = json.dumps([section, args], sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                problem = problem_of(args)
                if problem is not None:
                    where = f" at the grid point {point}" if point else ""
                    raise SweepConfigError(f"the [{section}] settings{where} cannot run: {problem}")
        first = resolved[0][1]
        try:
            net = build_problem(first, device="cpu")[0]
        except (TypeError, ValueError) as exc:
            raise SweepConfigError(f"the first run of the sweep cannot be built: {exc}") from None
        for point, cfg in resolved:
            problem = _solver_problem(cfg["solver"], _precision_of(cfg["network"], net))
            if problem is not None:
                where = f" at the grid point {point}" if point else ""
                raise SweepConfigError(f"the [solver] settings{where} cannot run: {problem}")


def _same_run(a: dict, b: dict) -> str:
    """The message for two grid points that resolve to the same runs (the defaults filled in: test_seed = None is
    seed + 1), which ran twice as different grid points."""
    return (f"the grid points {a} and {b} are the same runs once the defaults are filled in (the same run ids); "
            "remove one of the values that make them")


def _network_problem(net: dict) -> str | None:
    """Why a resolved run's [network] cannot be built (None: it passes gf.Network's checks, made without drawing
    its weights; a device of another machine, "cuda" without a GPU here, is left to the run)."""
    from ..model.network import check_network_args

    try:
        check_network_args(net["d"], net["width"], net["activation"], net["embedding"], net["scaling"], net["c_hat"],
                           net["seed"], net["dtype"], net["device"], available=False)  # (resolve() wrote every default)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _data_args(cfg: dict) -> dict:
    """What a resolved run's [data] passes its generator, less ``n`` (which :func:`_value_problem` checks, as
    ``n_test`` and ``test_seed``): ``generator``, ``d`` (the network's) and its keywords."""
    dat = {k: v for k, v in cfg["data"].items() if k not in DATA_KEYS and k != "n"}
    return {"generator": cfg["data"]["generator"], "d": cfg["network"]["d"], "keywords": dat}


def _data_problem(args: dict) -> str | None:
    """Why the data of :func:`_data_args` cannot be generated (None: the generator makes one point of it, checking
    every keyword, at the cost of one point and, for quadratic_teacher, its teacher)."""
    from .. import data as gdata

    try:
        gdata.GENERATORS[args["generator"]](1, args["d"], **args["keywords"])
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _precision_of(network: dict, first):
    """What the solver checks read of a network — its dtype, device and activation — for a grid point's own
    [network] section (a grid over dtype: float32's rtol floor, scipy's float64; over activation: what
    error_estimate takes), without drawing its weights; ``first``'s where the section does not parse (building the
    run then says why)."""
    import types

    import torch

    from ..model.activations import get_activation
    from ..model.network import resolve_dtype

    try:
        return types.SimpleNamespace(dtype=resolve_dtype(network.get("dtype", first.dtype)),
                                     device=torch.device(str(network.get("device", first.device))),
                                     activation=get_activation(network.get("activation", first.activation)))
    except (TypeError, ValueError, RuntimeError):
        return first


def _solver_problem(solver: dict, net) -> str | None:
    """Why a resolved [solver] section cannot run (None: it passes the checks that gf.simulate /
    gf.gradient_descent make before they start — options, a fixed step's presence, the output times; an unknown
    option failed every run of a sweep before): :func:`gflow.solve.ode.check_solver_args` for a named method;
    for ``"auto"`` without a step, the same checks of everything but its options (which depend on its pick) as
    for an adaptive method (a bad rtol or t1 failed every run); :func:`gflow.solve.gd.gd_schedule` for GD."""
    from ..solve.gd import gd_schedule
    from ..solve.ode import check_solver_args, error_estimate_problem

    get = solver.get
    if solver["kind"] == "simulate" and get("error_estimate") is True:  # (every run failed with it, status "error")
        problem = error_estimate_problem(net, get("method", "auto"), get("step"), get("rtol"))
        if problem:
            return problem
    try:
        if solver["kind"] == "simulate" and get("method") in ("filippov", "sliding") and \
                getattr(net, "activation", None) is not None:  # (a smooth σ failed every run: status "error")
            from ..solve.filippov import check_filippov

            check_filippov(net, get("space") or "auto", get("method"))
        if solver["kind"] == "gradient_descent":
            gd_schedule(get("step"), get("steps"), get("save_every"), get("max_wall_time"), get("features_at"),
                        get("weights_at"))
        elif get("method", "auto") != "auto":
            check_solver_args(net, get("method"), get("rtol"), get("atol"), get("step"), get("max_steps"),
                              get("max_wall_time"), get("options"), get("t1"), get("saveat"), get("features_at"),
                              get("weights_at"))
        elif get("step") is None:  # auto: every pick without a step is adaptive
            check_solver_args(net, "dop853", get("rtol"), get("atol"), None, get("max_steps"), get("max_wall_time"),
                              None, get("t1"), get("saveat"), get("features_at"), get("weights_at"))
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _setting(key: str, value: Any) -> str:
    """What a grid value sets, as a text that two spellings of one setting share: the spec the network normalises a
    named choice to (``"OURS"`` and ``"ours"``; ``"identity"`` and ``{"kind": "identity"}``; ``"ReLU"`` and
    ``"relu"``; ``"float"`` and ``"float32"``), else the value as the run id hashes it (5 and 5.0).  Only compared,
    never hashed: the run id of every spelling stays as it was."""
    import dataclasses

    from ..model.activations import get_activation
    from ..model.embeddings import get_embedding
    from ..model.network import resolve_dtype
    from ..model.scaling import get_scaling

    resolvers = {"network.scaling": get_scaling, "network.embedding": get_embedding,
                 "network.activation": get_activation, "network.dtype": resolve_dtype}
    form: Any = value
    if key in resolvers and value is not None:
        try:
            obj = resolvers[key](value)
        except (TypeError, ValueError):
            obj = value
        if callable(getattr(obj, "spec", None)):
            form = obj.spec()
        elif dataclasses.is_dataclass(obj):
            form = dataclasses.asdict(obj)
        elif obj is not value:
            form = str(obj)
    try:
        return json.dumps(_canonical(_plain(form, key)), sort_keys=True)
    except SweepConfigError:
        return repr(form)


def _repeats(key: str, values: list) -> str | None:
    """Why the values of ``grid[key]`` repeat a setting (None if they do not): the same value twice, or two
    spellings of one setting (which ran the same runs as different grid points)."""
    seen: dict[str, Any] = {}
    for v in values:
        form = _setting(key, v)
        if form in seen:
            was = seen[form]
            if json.dumps(was, sort_keys=True) == json.dumps(v, sort_keys=True):
                return f"grid[{key!r}] repeats {v!r}; remove the duplicate value"
            return (f"grid[{key!r}] has both {was!r} and {v!r}, which are the same setting (the same runs twice); "
                    "keep one")
        seen[form] = v
    return None


def _value_problem(key: str, value: Any) -> str | None:
    """Why one grid value cannot run (None if it can, as far as a check without building the run tells): the
    named choices (activation, scaling, embedding, method, space) and the sizes and tolerances, so that a bad
    value fails before the sweep starts rather than in each of its runs."""
    from .._validate import check_flag, check_positive_float, check_positive_int
    from ..model.activations import get_activation
    from ..model.embeddings import get_embedding
    from ..model.network import check_device, resolve_dtype
    from ..model.scaling import get_scaling
    from ..solve.ode import METHODS, check_interval

    name = key.split(".")[1]
    checks = {
        "network.activation": get_activation, "network.scaling": get_scaling, "network.embedding": get_embedding,
        "network.width": lambda v: check_positive_int(v, "width"), "network.d": lambda v: check_positive_int(v, "d"),
        "data.n": lambda v: check_positive_int(v, "n"),
        "data.n_test": lambda v: check_positive_int(v, "n_test", minimum=0),
        "data.seed": lambda v: check_positive_int(v, "seed", minimum=0),
        "data.test_seed": lambda v: None if v is None else check_positive_int(v, "test_seed", minimum=0),
        "network.c_hat": lambda v: check_positive_float(v, "c_hat"),
        "network.dtype": resolve_dtype, "network.device": check_device,  # ("gpu" failed every run)
        "solver.interval": lambda v: None if v is None else check_interval(v, None),  # ([1, 0] and "x" too)
    }
    for fkey in ("t1", "rtol", "atol", "step", "max_wall_time", "checkpoint_every"):
        checks[f"solver.{fkey}"] = lambda v, fkey=fkey: check_positive_float(v, fkey)
    for ikey in ("max_steps", "steps", "save_every", "threads"):  # (threads = 0 failed every run)
        checks[f"solver.{ikey}"] = lambda v, ikey=ikey: check_positive_int(v, ikey)
    for bkey in ("integrals", "keep_checkpoint", "error_estimate"):  # (a run reads bool(value) nowhere: checked)
        checks[f"solver.{bkey}"] = lambda v, bkey=bkey: check_flag(v, bkey)
    choices = {"solver.method": (*METHODS, "auto"), "solver.space": ("auto", "feature", "weight")}
    if key in choices:
        return None if value in choices[key] else f"{name} must be one of {list(choices[key])}"
    check = checks.get(key)
    if check is None:
        return None
    try:
        check(value)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _defaults(generator: str, kind: str) -> dict:
    """The keyword defaults of gf.Network, the data generator and the solver, as JSON-able values."""
    import dataclasses

    from .. import data as gdata
    from ..model.network import Network

    def sig_defaults(fn, skip) -> dict:
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if k not in skip and p.default is not inspect.Parameter.empty}

    net = {f.name: f.default for f in dataclasses.fields(Network)
           if f.name in _network_keys() and f.default is not dataclasses.MISSING}
    net = {k: str(v).replace("torch.", "") if k == "dtype" else v for k, v in net.items()}
    data = {"n_test": 0, **sig_defaults(gdata.GENERATORS[generator], {"n", "d"})}
    solver = sig_defaults(_solver_fn(kind), _RESERVED_SOLVER)
    # None defaults stay out, so that a keyword added later with a None default keeps every run id
    return {section: {k: v for k, v in _plain(values, section).items() if v is not None} for section, values in
            (("network", net), ("data", data), ("solver", solver))}


MAX_SEEDS = 10_000_000  # a count beyond it is a typo (10**30 was an OverflowError building range(N))


def _check_seeds(seeds: Any) -> tuple:
    if isinstance(seeds, bool):
        raise SweepConfigError(f"seeds must be a count N (seeds 0..N-1) or a list of seeds, got {describe(seeds)}")
    if isinstance(seeds, (int, np.integer)):
        if not 1 <= seeds <= MAX_SEEDS:
            raise SweepConfigError(f"seeds must be from 1 to {MAX_SEEDS} (seeds = N runs network seeds 0..N-1), "
                                   f"got {seeds}")
        return tuple(range(int(seeds)))
    if isinstance(seeds, (list, tuple, range, np.ndarray)) and len(seeds) > 0:
        out = []
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise SweepConfigError(f"seeds must be non-negative integers, got {describe(s)} in {list(seeds)}")
            out.append(int(s))
        if len(set(out)) != len(out):
            raise SweepConfigError(f"seeds has repeated values: {out}")
        return tuple(out)
    raise SweepConfigError(f"seeds must be a count N (seeds 0..N-1) or a non-empty list of seeds, got "
                           f"{describe(seeds)}")


__all__ = ["SweepConfig", "SweepConfigError", "RunSpec", "run_id_of", "SECTIONS", "SOLVER_KINDS", "RUN_LIMITS",
           "RUN_ID_VERSION"]
