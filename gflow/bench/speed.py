r"""``gflow bench speed``: gflow's speed against its flop model and against the hand-written peer.

Every figure is a ratio of times measured side by side in one run, in one dtype (float64):

1. **RHS throughput**: one right-hand-side evaluation in weight space (≈ 4mDn flops, eq. (10)) and feature
   space (≈ 2mn², eq. (11)) in GFLOP/s and as a fraction of the machine's matmul peak measured in the same run;
   the feature/weight speed-up against the flop ratio 2D/n (target: ≥ 0.8 × 2D/n, i.e. within 1.25× of the
   flop-count ideal).
2. **GD per step**: ``gf.gradient_descent`` (``integrals=False``, one save at the end) against
   :func:`gflow.bench.peer.peer_autograd_gd`; steady-state seconds per step and the one-off setup are separated
   by running k₁ and k₂ steps: per step = difference of the loop's wall time (``sol.stats["wall_time"]``; for
   the peer, of the whole call) over k₂ − k₁, setup = T(k₁) − k₁·per step; the default ``integrals=True``
   cost is reported too (target: speed-up ≥ 0.8 × 2D/n).
3. **Solver overhead** at Experiment-1 sizes: the share of a solve's wall time spent outside the RHS, with the
   time inside the RHS accumulated during the solve itself (:func:`timed_rhs`), per available method, after one
   warm-up solve and as the median of up to ``repeats`` solves (target: ≤ 30 % for the default method);
   1 − n_evals·t_RHS/wall with a steady-state t_RHS is kept for reference.
4. **Scaling**: log–log slopes of the RHS time in m, n and D against the flop model (feature: 1, 2, 0;
   weight: 1, 1, 1).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ._common import (
    check_mode,
    loglog_slope,
    machine,
    matmul_peak,
    print_verdicts,
    verdict,
    versions,
    write_json,
)
from .peer import peer_autograd_gd
from .problems import experiment1_demo

SETTINGS = {
    "tiny": {"peak_size": 128, "repeats": 1, "min_seconds": 0.01,
             "rhs": [(64, 32, 16)], "gd": [(64, 32, 16)], "gd_steps": (1, 3), "overhead_budget_s": 0.5,
             "scaling_base": (32, 16, 8), "scaling_factors": (1, 2)},
    "quick": {"peak_size": 1024, "repeats": 3, "min_seconds": 0.1,
              "rhs": [(1024, 20, 20), (1024, 256, 64), (2048, 2048, 400)], "gd": [(2048, 2048, 400)],
              "gd_steps": (1, 5), "overhead_budget_s": 5.0, "scaling_base": (512, 512, 128), "scaling_factors": (1, 2, 4)},
    "full": {"peak_size": 2048, "repeats": 3, "min_seconds": 0.2,
             "rhs": [(1024, 20, 20), (1024, 256, 64), (2048, 2048, 400), (4096, 4096, 600), (8192, 8192, 600)],
             "gd": [(4096, 4096, 600), (8192, 8192, 600)], "gd_steps": (1, 5), "overhead_budget_s": 15.0,
             "scaling_base": (1024, 1024, 256), "scaling_factors": (0.5, 1, 2, 4)},
}
GD_STEP = 0.5
SEED = 0
OVERHEAD_TARGET = 0.30


def _data(m: int, D: int, n: int):
    """Seeded data x ~ N(0, I_D), y ~ U[−½, ½] and a tanh network of width m (identity embedding, d = D)."""
    from ..model.network import Network

    rng = np.random.default_rng(SEED)
    X, y = rng.standard_normal((n, D)), rng.uniform(-0.5, 0.5, n)
    return Network(d=D, width=m, activation="tanh", seed=SEED), X, y


def _available_bytes() -> float:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return math.inf


def _fits(nbytes: float) -> bool:
    return nbytes < 0.5 * _available_bytes()


def rhs_seconds(field, repeats: int, min_seconds: float) -> float:
    """Seconds per ``field.rhs_into`` from its initial state into a preallocated output (steady state)."""
    return rhs_seconds_side_by_side([field], repeats, min_seconds)[0]


def rhs_seconds_side_by_side(fields, repeats: int, min_seconds: float) -> list[float]:
    """Seconds per ``rhs_into`` of each field, best of ``repeats`` rounds in which the fields alternate (so that
    a change of machine load between them does not bias their ratio); each round runs ≥ ``min_seconds``."""
    return seconds_side_by_side([_rhs_call(f) for f in fields], repeats, min_seconds)


def _rhs_call(field):
    """A call of ``field.rhs_into`` from its initial state into a preallocated output."""
    s = field.initial_state()
    out = torch.empty_like(s)
    return lambda: field.rhs_into(s, out)


def seconds_side_by_side(calls, repeats: int, min_seconds: float) -> list[float]:
    """Seconds per call of each callable, best of ``repeats`` alternating rounds of ≥ ``min_seconds`` each."""
    inner = []
    for call in calls:  # warm-up, and the number of calls per round
        t = time.perf_counter()
        call()
        inner.append(max(1, math.ceil(min_seconds / max(time.perf_counter() - t, 1e-9))))
    best = [math.inf] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            for _ in range(inner[i]):
                call()
            best[i] = min(best[i], (time.perf_counter() - t) / inner[i])
    return best


def bench_rhs(sizes, peak: dict, repeats: int, min_seconds: float) -> list[dict]:
    """One RHS evaluation per space (preallocated output, steady state)."""
    from ..fields import Problem, make_field

    rows = []
    for m, D, n in sizes:
        row = {"m": m, "D": D, "n": n, "flop_ratio": 2.0 * D / n}
        need = 8.0 * (3 * m * D + 8 * m * n + 2 * n * D)
        if not _fits(need):
            row["status"] = f"skipped: needs ~{need / 2**30:.1f} GiB"
            rows.append(row)
            continue
        net, X, y = _data(m, D, n)
        pb = Problem.from_data(net, X, y)
        fields = [make_field(pb, space) for space in ("weight", "feature")]
        calls = [_rhs_call(f) for f in fields]
        # the elementwise work both spaces do alike: σ, r = α σᵀc − y, σ′ and P = c σ′ r (AbstractField._P_into)
        feat = fields[1]
        H0 = feat.split(feat.initial_state())[0]  # (in the field's layout, as its RHS reads H)
        P = torch.empty_like(H0)
        calls.append(lambda: feat._P_into(H0, P))  # (σ, r, σ′, P fused in one pass where it can)
        secs = seconds_side_by_side(calls, repeats if m * D * n < 5e9 else 2, min_seconds)
        for f, sec in zip(fields, secs):
            space = f.space
            row[f"{space}_s"] = sec
            row[f"{space}_gflops"] = f.flops_per_eval() / sec / 1e9
            row[f"{space}_frac_peak"] = row[f"{space}_gflops"] / peak["gflops"]
        row["speedup"] = row["weight_s"] / row["feature_s"]
        row["efficiency"] = row["speedup"] / row["flop_ratio"]  # 1 = the flop-count ideal
        # what the shared elementwise work allows: the feature RHS cannot beat it plus its product at the
        # machine's peak, so the speed-up is at most weight_s / that, whatever the implementation of the rest
        row["common_s"] = secs[2]
        row["speedup_bound"] = row["weight_s"] / (secs[2] + fields[1].flops_per_eval() / (1e9 * peak["gflops"]))
        row["status"] = "ok"
        rows.append(row)
    return rows


def _best(fn, repeats: int):
    """(best wall seconds over ``repeats`` calls, that call's result)."""
    best, res = math.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        r = fn()
        sec = time.perf_counter() - t
        if sec < best:
            best, res = sec, r
    return best, res


def bench_gd(sizes, steps: tuple[int, int], repeats: int) -> list[dict]:
    """``gf.gradient_descent`` vs the autograd peer: steady-state s/step and one-off setup, separated."""
    rows = []
    for m, D, n in sizes:
        need = 8.0 * (6 * m * D + 10 * m * n)
        if not _fits(need):
            rows.append({"m": m, "D": D, "n": n, "status": f"skipped: needs ~{need / 2**30:.1f} GiB"})
            continue
        rows.append(gd_row(m, D, n, steps, repeats))
    return rows


def gd_row(m: int, D: int, n: int, steps: tuple[int, int], repeats: int) -> dict:
    """One size of :func:`bench_gd`; per step = (T(k₂) − T(k₁))/(k₂ − k₁), setup = T(k₁) − k₁·per step."""
    from ..solve.gd import gradient_descent

    k1, k2 = steps
    row = {"m": m, "D": D, "n": n, "step": GD_STEP, "steps": [k1, k2], "flop_ratio": 2.0 * D / n}
    net, X, y = _data(m, D, n)
    Phi, yt = torch.as_tensor(X), torch.as_tensor(y)
    peer_kw = {"alpha": net.alpha, "beta": net.beta, "lr": net.lr, "step": GD_STEP}

    def gflow(k, integrals=False):
        return gradient_descent(net, X, y, step=GD_STEP, steps=k, save_every=k, integrals=integrals, warn=False)

    def peer(k):
        return peer_autograd_gd(net.W0, net.c, Phi, yt, steps=k, **peer_kw)

    variants = {"gflow": gflow, "gflow_integrals": lambda k: gflow(k, True), "peer": peer}
    if m * D <= 4096 * 4096:
        for fn in variants.values():
            fn(k1)  # warm-up (skipped at the largest sizes, where best-of-repeats absorbs one-off costs)
    # the variants alternate within each repeat, so that a change of machine load hits all of them alike;
    # gflow's steps are cheap, so it runs 5x more of them for the difference (k1 and k1 + 5(k2 − k1))
    ks = {"gflow": (k1, k1 + 5 * (k2 - k1)), "gflow_integrals": (k1, k1 + 5 * (k2 - k1)), "peer": (k1, k2)}
    total = {(name, k): math.inf for name in variants for k in ks[name]}
    loop = dict(total)
    last = {}
    for _ in range(repeats):
        for name, fn in variants.items():
            for k in ks[name]:
                sec, r = _best(lambda fn=fn, k=k: fn(k), 1)
                total[(name, k)] = min(total[(name, k)], sec)
                if name != "peer":  # the loop's own wall time excludes the setup and its noise
                    loop[(name, k)] = min(loop[(name, k)], r.stats["wall_time"])
                if k == k1:
                    last[name] = r  # the iterates after k1 steps, compared below
    res, noisy = {}, []
    for name in variants:
        a, b = ks[name]
        src = total if name == "peer" else loop
        per = (src[(name, b)] - src[(name, a)]) / (b - a)
        if per <= 0:  # load noise beat the difference: fall back on whole calls, and say so
            per = (total[(name, b)] - total[(name, a)]) / (b - a)
            noisy.append(name)
        per = max(per, 1e-12)
        res[name] = (per, max(total[(name, a)] - a * per, 0.0))
    row["steps"] = {name: list(k) for name, k in ks.items()}
    row["noisy"] = noisy
    row.update({"gflow_step_s": res["gflow"][0], "gflow_setup_s": res["gflow"][1],
                "gflow_integrals_step_s": res["gflow_integrals"][0],
                "gflow_integrals_setup_s": res["gflow_integrals"][1],
                "peer_step_s": res["peer"][0], "peer_setup_s": res["peer"][1]})
    row["speedup"] = row["peer_step_s"] / row["gflow_step_s"]
    row["speedup_integrals"] = row["peer_step_s"] / row["gflow_integrals_step_s"]
    row["efficiency"] = row["speedup"] / row["flop_ratio"]
    W_gf = torch.as_tensor(last["gflow"].W_final)
    W_peer = last["peer"]
    row["rel_W_diff"] = float((W_gf - W_peer).abs().max() / (W_peer - net.W0).abs().max())
    row["space"] = "feature" if n < 2 * D else "weight"
    row["status"] = "ok"
    return row


@contextmanager
def timed_rhs():
    """Accumulate the seconds spent inside the fields' ``rhs_into`` while the block runs.

    The benchmark wraps the two field classes' ``rhs_into`` for the duration of one solve (restored on exit),
    so that the RHS time and the wall time are measured in the same run, under the same machine load.
    """
    from ..fields.feature_space import FeatureSpaceField
    from ..fields.weight_space import WeightSpaceField

    acc = {"seconds": 0.0, "calls": 0}
    originals = {cls: cls.rhs_into for cls in (FeatureSpaceField, WeightSpaceField)}

    def wrap(orig):
        def rhs_into(self, state, out):
            t = time.perf_counter()
            try:
                return orig(self, state, out)
            finally:
                acc["seconds"] += time.perf_counter() - t
                acc["calls"] += 1
        return rhs_into

    for cls, orig in originals.items():
        cls.rhs_into = wrap(orig)
    try:
        yield acc
    finally:
        for cls, orig in originals.items():
            cls.rhs_into = orig


def overhead_methods() -> list[str]:
    """Every available method of gf.simulate except the fixed-step multistep ones."""
    from ..solve import ode

    skip = {"explicit_adams", "implicit_adams", "fehlberg2"}
    return [m for m in ode.METHODS if m.split(".")[-1] not in skip]


def bench_overhead(mode: str, repeats: int, min_seconds: float, budget_s: float = 15.0) -> dict:
    """Share of wall time outside the RHS for each method on the Experiment-1 demo problem (rtol 1e-8 or h = 0.25).

    Each method first runs one warm-up solve (the first solve in a process pays one-off costs: first-touch
    memory, first kernel calls; the steady RHS time is measured after a warm-up too), then up to ``repeats``
    measured solves while its total stays within ``budget_s``; the row is the solve with the median overhead
    share (``overhead_shares`` lists them all; ``warm`` is False where only the warm-up fitted).  A solve that
    runs out of ``budget_s`` still gives its share (over the steps it took).
    """
    from ..fields import RK_FLOPS_PER_STATE_ENTRY, Problem, make_field
    from ..solve.ode import simulate
    from .accuracy import default_method, is_fixed

    prob = experiment1_demo(mode)
    net, X, y = prob.build()
    f = make_field(Problem.from_data(net, X, y), "auto", RK_FLOPS_PER_STATE_ENTRY)  # the space the solves run in
    t_rhs = rhs_seconds(f, repeats, min_seconds)
    rows = []
    for method in overhead_methods():
        kw = {"step": 0.25} if is_fixed(method) else {"rtol": 1e-8, "atol": 1e-11}
        runs, spent = [], 0.0
        try:
            for _ in range(repeats + 1):
                with timed_rhs() as acc:
                    sol = simulate(net, X, y, t1=prob.t1, saveat=[0.0, prob.t1], method=method, integrals=False,
                                   warn=False, max_wall_time=budget_s, max_steps=10**6, **kw)
                wall = float(sol.stats["wall_time"])
                runs.append((sol, wall, min(acc["seconds"], wall)))
                spent += wall
                if sol.status != "success" or spent + wall > budget_s:
                    break
        except (ValueError, TypeError) as exc:
            rows.append({"method": method, **kw, "status": f"refused: {exc}"})
            continue
        measured = runs[1:] or runs
        shares = [1.0 - inside / wall for _, wall, inside in measured]
        sol, wall, inside = measured[int(np.argsort(shares)[(len(shares) - 1) // 2])]
        nfev = int(sol.stats["n_f_evals"])
        rows.append({"method": method, **kw, "status": sol.status, "n_f_evals": nfev, "n_steps": sol.stats["n_steps"],
                     "wall_s": wall, "rhs_s_in_solve": inside, "rhs_share": inside / wall,
                     "overhead_share": 1.0 - inside / wall, "overhead_shares": shares, "warm": len(runs) > 1,
                     "overhead_share_steady_rhs": max(0.0, 1.0 - nfev * t_rhs / wall),
                     "overhead_per_step_ms": 1e3 * (wall - inside) / max(1, sol.stats["n_steps"])})
    return {"problem": prob.describe(), "space": f.space, "rhs_s": t_rhs, "default_method": default_method(prob),
            "rows": rows}


def bench_scaling(base, factors, repeats: int, min_seconds: float) -> dict:
    """RHS time as m, n, D grow one at a time from ``base``; log–log slopes against the flop model."""
    from ..fields import Problem, make_field

    model = {"feature": {"m": 1, "n": 2, "D": 0}, "weight": {"m": 1, "n": 1, "D": 1}}
    out = {"base": {"m": base[0], "D": base[1], "n": base[2]}, "model": model, "series": {}, "slopes": {}}
    for dim in ("m", "n", "D"):
        series = []
        for fac in factors:
            m, D, n = base
            m, D, n = (int(m * fac), D, n) if dim == "m" else ((m, int(D * fac), n) if dim == "D" else (m, D, int(n * fac)))
            net, X, y = _data(m, D, n)
            pb = Problem.from_data(net, X, y)
            pt = {"m": m, "D": D, "n": n}
            secs = rhs_seconds_side_by_side([make_field(pb, sp) for sp in ("weight", "feature")], repeats,
                                            min_seconds)
            pt["weight_s"], pt["feature_s"] = secs
            series.append(pt)
        out["series"][dim] = series
        for space in ("weight", "feature"):
            out["slopes"].setdefault(space, {})[dim] = loglog_slope([p[dim] for p in series],
                                                                     [p[f"{space}_s"] for p in series])
    return out


def _fmt_s(sec: float) -> str:
    return f"{1e6 * sec:.0f} µs" if sec < 1e-3 else f"{1e3 * sec:.1f} ms"


def targets(result: dict) -> list[dict]:
    out = []
    for r in result["rhs"]:
        if r["status"] != "ok":
            out.append(verdict(f"RHS feature vs weight space at (m, D, n) = ({r['m']}, {r['D']}, {r['n']})", None,
                               r["status"]))
            continue
        out.append(verdict(
            f"RHS feature vs weight space at (m, D, n) = ({r['m']}, {r['D']}, {r['n']}): speed-up >= 0.8 x 2D/n",
            r["efficiency"] >= 0.8,
            f"speed-up {r['speedup']:.2f}x vs flop ratio {r['flop_ratio']:.2f} ({r['efficiency']:.0%} of ideal; "
            f"need 80 %); feature {r['feature_gflops']:.1f} GFLOP/s = {r['feature_frac_peak']:.0%} of peak, weight "
            f"{r['weight_gflops']:.1f} GFLOP/s = {r['weight_frac_peak']:.0%}"
            + (f"; the elementwise work both spaces share (σ, r, σ′, P: {_fmt_s(r['common_s'])}) bounds the "
               f"speed-up at {r['speedup_bound']:.2f}x with the product at peak"
               + (" — the target is out of reach unless those passes get faster (fused)"
                  if r["speedup_bound"] < 0.8 * r["flop_ratio"] else "")
               if "speedup_bound" in r else "")))
    for r in result["gd"]:
        if r["status"] != "ok":
            out.append(verdict(f"GD per step vs autograd peer at ({r['m']}, {r['D']}, {r['n']})", None, r["status"]))
            continue
        out.append(verdict(
            f"GD per step vs autograd peer at (m, D, n) = ({r['m']}, {r['D']}, {r['n']}): speed-up >= 0.8 x 2D/n",
            None if r.get("noisy") else r["efficiency"] >= 0.8,
            f"gflow {1e3 * r['gflow_step_s']:.1f} ms/step (setup {r['gflow_setup_s']:.2f} s; with integrals "
            f"{1e3 * r['gflow_integrals_step_s']:.1f} ms/step) vs peer {1e3 * r['peer_step_s']:.1f} ms/step: "
            f"{r['speedup']:.1f}x vs 2D/n = {r['flop_ratio']:.1f} ({r['efficiency']:.0%} of it; need 80 %)"
            + (f"; too noisy to judge ({', '.join(r['noisy'])}: step difference below the load noise)"
               if r.get("noisy") else "")))
    ov = result["overhead"]
    d = next((r for r in ov["rows"] if r["method"] == ov["default_method"] and "overhead_share" in r), None)
    others = ", ".join(f"{r['method']} {r['overhead_share']:.0%}" for r in ov["rows"] if "overhead_share" in r)
    out.append(verdict(
        f"solver overhead of the default method ({ov['default_method']}) <= 30 % at Experiment-1 sizes",
        None if d is None else d["overhead_share"] <= OVERHEAD_TARGET,
        ("not run" if d is None else f"{d['overhead_share']:.0%} ({d['overhead_per_step_ms']:.2f} ms/step beyond "
         f"the RHS of {1e6 * ov['rhs_s']:.0f} µs)") + f"; all methods: {others}"))
    sl = result["scaling"]["slopes"]
    dev = max((abs(sl[s][k] - result["scaling"]["model"][s][k]) for s in sl for k in sl[s] if sl[s][k] is not None),
              default=math.nan)
    out.append(verdict("cost grows as the flop model (log-log slopes in m, n, D within 0.35 of the model)",
                       None if math.isnan(dev) else dev <= 0.35,
                       "; ".join(f"{s}: " + ", ".join(f"{k} {v:.2f} (model {result['scaling']['model'][s][k]})"
                                                      for k, v in sl[s].items() if v is not None) for s in sl)))
    return out


def figures(result: dict, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    sc = result["scaling"]
    for ax, dim in zip(axes[:3], ("m", "n", "D")):
        pts = sc["series"][dim]
        x = [p[dim] for p in pts]
        for space, mk in (("weight", "o-"), ("feature", "s-")):
            ax.loglog(x, [p[f"{space}_s"] for p in pts], mk, label=f"{space} (slope {sc['slopes'][space][dim]:.2f},"
                      f" model {sc['model'][space][dim]})")
        ax.set_xlabel(dim)
        ax.set_ylabel("seconds per RHS evaluation")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    rows = [r for r in result["rhs"] if r["status"] == "ok"]
    lab = [f"({r['m']},{r['D']},{r['n']})" for r in rows]
    xs = np.arange(len(rows))
    axes[3].bar(xs - 0.2, [r["speedup"] for r in rows], 0.4, label="measured speed-up")
    axes[3].bar(xs + 0.2, [r["flop_ratio"] for r in rows], 0.4, label="flop ratio 2D/n")
    axes[3].set_xticks(xs, lab, rotation=30, fontsize=7)
    axes[3].set_ylabel("feature vs weight space")
    axes[3].legend(fontsize=7)
    fig.suptitle(f"gflow speed ({result['machine']['cpu']}, {result['dtype']}, {result['machine']['torch_threads']} "
                 "thread(s))", fontsize=9)
    fig.tight_layout()
    paths = [out / "speed.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    return paths


def run_speed(mode: str = "full", out: str | Path = "benchmarks/results/speed", *, log=print) -> dict:
    """Run the speed benchmark; writes ``speed.json`` and ``speed.png`` under ``out``.

    Args:
        mode: ``"tiny"`` (test suite), ``"quick"`` or ``"full"`` (sizes up to (8192, 8192, 600)).
        out: output folder.
    """
    check_mode(mode)
    st = SETTINGS[mode]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rep, mins = st["repeats"], st["min_seconds"]
    peak = matmul_peak(torch.float64, st["peak_size"], rep)
    log(f"matmul peak (float64, {st['peak_size']}^3): {peak['gflops']:.1f} GFLOP/s")
    result = {"benchmark": "speed", "mode": mode, "machine": machine(), "versions": versions(), "dtype": "float64",
              "seeds": {"data": SEED, "network": SEED}, "settings": st, "matmul_peak": peak}
    result["rhs"] = bench_rhs(st["rhs"], peak, rep, mins)
    log("RHS done")
    result["gd"] = bench_gd(st["gd"], st["gd_steps"], max(1, rep - 1))
    log("GD done")
    result["overhead"] = bench_overhead(mode, rep, mins, st["overhead_budget_s"])
    result["scaling"] = bench_scaling(st["scaling_base"], st["scaling_factors"], rep, mins)
    # the peak again at the end: the best of the two is the machine's practical peak in this run
    peak_end = matmul_peak(torch.float64, st["peak_size"], rep)
    result["matmul_peak_start_end_gflops"] = [peak["gflops"], peak_end["gflops"]]
    if peak_end["gflops"] > peak["gflops"]:
        result["matmul_peak"] = peak = peak_end
        for r in result["rhs"]:
            for space in ("weight", "feature"):
                if f"{space}_gflops" in r:
                    r[f"{space}_frac_peak"] = r[f"{space}_gflops"] / peak["gflops"]
    result["targets"] = targets(result)
    result["wall_s"] = time.perf_counter() - t0
    write_json(out / "speed.json", result)
    result["figures"] = [str(p) for p in figures(result, out)]
    log(f"\nspeed benchmark ({mode}) in {result['wall_s']:.0f} s")
    log(f"{'m':>6} {'D':>6} {'n':>5}  {'weight ms':>10} {'feature ms':>10} {'speed-up':>8} {'2D/n':>6} {'feat %peak':>10}")
    for r in result["rhs"]:
        if r["status"] == "ok":
            log(f"{r['m']:6d} {r['D']:6d} {r['n']:5d}  {r['weight_s'] * 1e3:10.3f} {r['feature_s'] * 1e3:10.3f} "
                f"{r['speedup']:8.2f} {r['flop_ratio']:6.1f} {100 * r['feature_frac_peak']:9.0f}%")
    for r in result["gd"]:
        if r["status"] == "ok":
            log(f"GD ({r['m']}, {r['D']}, {r['n']}): gflow {r['gflow_step_s'] * 1e3:.2f} ms/step (+{r['gflow_setup_s']:.3f}"
                f" s setup), peer {r['peer_step_s'] * 1e3:.2f} ms/step: {r['speedup']:.2f}x (2D/n = {r['flop_ratio']:.1f})")
    print_verdicts(result["targets"]) if log is print else None
    return result


__all__ = ["SETTINGS", "run_speed"]
