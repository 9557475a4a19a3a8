"""How much rounding a fixed-step run's residual accumulates: the calibration of the loss's rounding floor.

:func:`gflow.solve.nonsmooth.rounding_floor` models the error rounding alone makes in the residual r = f − y as
‖δr‖ = κ·ε·S, S = max(‖y‖, ‖f‖, √n·ĉ), κ = ROUNDING_KAPPA.  Step-halving estimates are floored by it (their three
solves round alike, so no difference between them shows it).  This script measures the ratio

    ρ(t) = ‖r₃₂(t) − r₆₄(t)‖ / (ε₃₂ · S(t))

between a float32 and a float64 run of the same network at the same fixed steps (rk4 for smooth σ; euler and
sliding for ReLU), over a grid of scalings (ours / ntk / mf), activations (tanh, erf, linear, relu), embeddings
(identity, random features), widths m = 16 … 1024 and n = 5 … 100, to a horizon where the float32 loss has
stalled at its rounding (or a step budget).  Each saved time is put in a regime by the run's own residual,
q = ‖r₃₂‖ / (ε₃₂·S): *resolved* (q ≥ 1e3), *near rounding* (2κ ≤ q < 1e3: the floor is finite there) and
*rounding* (q < 2κ: the floor is inf, a ≥ ½).  A ratio above κ where the floor is finite is an under-report; the
script also checks the floor directly: the float32 loss's relative error against the float64 run ≤ the floor.

float32-vs-float64 measures float32's accumulation.  Whether it transfers to float64 is checked two ways:
linear σ in float64 against the exact rk4 recursion of its linear flow in extended precision (numpy longdouble),
and float64 runs against float64 runs whose W0 is perturbed by ε₆₄ (relative), ratio ‖r_a − r_b‖/(ε₆₄·S).

Output: ``rounding.json`` (every ratio per saved time, machine, versions) and ``rounding.md`` (the worst ratio
per regime) in ``--out`` (default benchmarks/results/rounding/).

    python benchmarks/bench_rounding.py [--quick] [--out DIR]

Full mode ≈ 6 min on one thread (354 s on the shared 2-core machine); ``--quick`` (three small problems and one
transfer check) a few seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.solve.nonsmooth import ROUNDING_ALL, ROUNDING_KAPPA, rounding_floor, rounding_scale

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)
RESOLVED_Q = 1e3  # q = ‖r‖/(ε·S) at or above this: the residual is resolved
NEAR_Q = ROUNDING_KAPPA / ROUNDING_ALL  # below this the floor is inf (a ≥ ½)
SAVES = 40  # saved intervals per run


def _spec_name(s: dict) -> str:
    emb = "id" if s["emb"] == "identity" else f"rf{s['D']}"
    return f"{s['scaling']}-{s['act']}-{emb}-m{s['m']}-n{s['n']}-d{s['d']}-{s['method']}"


def full_grid() -> list[dict]:
    """Every (scaling, σ) pair at three shapes (tanh and ReLU at two more, wide); ReLU with euler and sliding."""
    shapes = [dict(m=16, n=5, d=10, emb="identity", D=10), dict(m=128, n=20, d=10, emb="rf", D=64),
              dict(m=1024, n=20, d=40, emb="identity", D=40), dict(m=512, n=50, d=10, emb="rf", D=128),
              dict(m=1024, n=100, d=20, emb="identity", D=20)]
    grid = []
    for scaling in ("ours", "ntk", "mf"):
        for act in ("tanh", "erf", "linear", "relu"):
            for k, shape in enumerate(shapes):
                if act in ("erf", "linear") and k >= 3:  # (the last two wide shapes: tanh and ReLU only)
                    continue
                methods = ("euler", "sliding") if act == "relu" else ("rk4",)
                for method in methods:
                    if method == "sliding" and shape["m"] * shape["n"] > 60_000:
                        continue
                    grid.append(dict(scaling=scaling, act=act, method=method, seed=len(grid), **shape))
    return grid


def quick_grid() -> list[dict]:
    return [dict(scaling="ntk", act="tanh", method="rk4", m=64, n=5, d=10, emb="identity", D=10, seed=0),
            dict(scaling="mf", act="relu", method="euler", m=32, n=6, d=4, emb="rf", D=16, seed=1),
            dict(scaling="ours", act="linear", method="rk4", m=16, n=5, d=10, emb="identity", D=10, seed=2)]


def build(s: dict, dtype: str = "float64", W0=None):
    X, y = gf.data.random_labels(n=s["n"], d=s["d"], seed=s["seed"])
    emb = "identity" if s["emb"] == "identity" else gf.RandomFeatures(D=s["D"], seed=s["seed"] + 1000)
    net = gf.Network(d=s["d"], width=s["m"], activation=s["act"], embedding=emb, scaling=s["scaling"],
                     seed=s["seed"], dtype=dtype, W0=W0)
    return net, X, y


def _eigs_M0(net, X, y) -> tuple[float, float]:
    from gflow.fields import Problem
    from gflow.model import quantities as Q

    pb = Problem.from_data(net, X, y)
    _, ds = net.activation.both(pb.H0)
    return Q.extreme_eigenvalues(Q.kernel_M(pb.G, ds, net.c, net.kernel_coef))


def schedule(s: dict, net, X, y, max_steps: int, decay: float = 40.0) -> tuple[float, float]:
    """(step, t1): a power-of-two step well inside the stability limit (rk4: 1/λ_max(M₀), against its 2.79;
    euler / sliding: ½/λ_max against 2), and a horizon of ``decay``/λ_min(M₀) (40: the loss falls by e⁻⁸⁰ ≈ 1e-35
    at the initial rate, past float32's rounding; 80 for float64's), within ``max_steps`` steps."""
    lam_min, lam_max = _eigs_M0(net, X, y)
    target = (1.0 if s["method"] == "rk4" else 0.5) / lam_max
    h = 2.0 ** math.floor(math.log2(min(target, 1.0)))
    horizon = decay / lam_min if lam_min > 0 else math.inf
    steps = max_steps if not horizon / h < max_steps else max(SAVES, math.ceil(horizon / h))
    steps = SAVES * math.ceil(steps / SAVES)
    return h, steps * h


def _scale(sol) -> np.ndarray:
    """S(t) as rounding_floor forms it (gflow.solve.nonsmooth.rounding_scale)."""
    return rounding_scale(sol)


def _scale_before(sol) -> np.ndarray:
    """S(t) = max(‖y‖, ‖f(t)‖, √n·ĉ), the scale before this calibration (no |α|·m factor)."""
    out = np.asarray(sol.output, dtype=np.float64).reshape(len(sol.t), -1)
    c = np.asarray(sol.c, dtype=np.float64)
    terms = math.sqrt(out.shape[1] * float(np.mean(c * c)))
    return np.maximum(max(float(np.linalg.norm(np.asarray(sol.y, dtype=np.float64))), terms),
                      np.linalg.norm(out, axis=1))


def _run(net, X, y, s, h, t1):
    saveat = np.linspace(0.0, t1, SAVES + 1)
    return gf.simulate(net, X, y, t1, saveat, method=s["method"], step=h, integrals=False, warn=False, threads=1,
                       max_steps=10 ** 7)


def _regimes(q: np.ndarray) -> np.ndarray:
    return np.where(q >= RESOLVED_Q, "resolved", np.where(q >= NEAR_Q, "near", "rounding"))


def measure(s: dict, max_steps: int) -> dict:
    """float32 against float64 at the same fixed steps: ρ(t), the regimes, and the floor against the loss error."""
    net64, X, y = build(s)
    h, t1 = schedule(s, net64, X, y, max_steps)
    t0 = time.perf_counter()
    a = _run(net64, X, y, s, h, t1)
    b = _run(build(s, "float32")[0], X, y, s, h, t1)
    wall = time.perf_counter() - t0
    S_before = _scale_before(b)
    ratio_before = np.linalg.norm(np.asarray(b.residual) - np.asarray(a.residual), axis=1) / (EPS32 * S_before)
    q_before = np.linalg.norm(np.asarray(b.residual), axis=1) / (EPS32 * S_before)
    halving = None
    if s["method"] == "euler":  # (ReLU: does the float32 run's step-halving estimate cover its distance to float64?)
        # (the estimate is the finest solve's, at step h/4: against a float64 run at that step)
        e = gf.simulate(build(s, "float32")[0], X, y, t1, np.linspace(0.0, t1, SAVES + 1), method="euler", step=h,
                        integrals=False, warn=False, threads=1, max_steps=10 ** 7, error_estimate=True)
        ref = _run(net64, X, y, {**s, "method": "euler"}, e.config["solver"]["step"], t1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cover = np.abs(e.loss - ref.loss)[1:] / ref.loss[1:] / e.error_estimate[1:]
        halving = float(np.nanmax(cover)) if cover.size else 0.0
    r64 = np.asarray(a.residual, dtype=np.float64)
    r32 = np.asarray(b.residual, dtype=np.float64)
    S = _scale(b)
    ratio = np.linalg.norm(r32 - r64, axis=1) / (EPS32 * S)
    q = np.linalg.norm(r32, axis=1) / (EPS32 * S)
    floor = rounding_floor(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        true = np.abs(b.loss - a.loss) / a.loss
    under = [int(k) for k in range(1, len(a.t)) if np.isfinite(floor[k]) and true[k] > floor[k]]
    # the scale of the sums f = α cᵀσ(H): ‖|α||c|ᵀ|σ(H)|‖ at t = 0, against √n·ĉ (the term rounding_floor uses)
    terms0 = _output_terms(net64, X, y)
    return {"name": _spec_name(s), "spec": s, "step": h, "t1": t1, "status": [a.status, b.status], "wall": wall,
            "t": a.t.tolist(), "loss64": a.loss.tolist(), "loss32": b.loss.tolist(), "S": S.tolist(),
            "ratio": ratio.tolist(), "q": q.tolist(), "regime": _regimes(q).tolist(), "floor": floor.tolist(),
            "true_rel": true.tolist(), "under_reports": under, "true_over_halving_estimate": halving,
            "ratio_before": ratio_before.tolist(), "regime_before": _regimes(q_before).tolist(),
            "output_terms0": terms0, "sqrt_n_chat": float(math.sqrt(s["n"] * float(np.mean(b.c ** 2)))),
            "stalled": bool(q[-1] < NEAR_Q)}


def _output_terms(net, X, y) -> float:
    from gflow.fields import Problem
    from gflow.solve._record import output_terms

    pb = Problem.from_data(net, X, y)
    return output_terms(net, net.activation(pb.H0))


def perturbed(s: dict, max_steps: int, rel: float = EPS64) -> dict:
    """float64 against float64 whose W0 is multiplied by (1 + rel·N(0, 1)): how far an ε₆₄-level difference grows."""
    net, X, y = build(s)
    h, t1 = schedule(s, net, X, y, max_steps, decay=80.0)
    g = np.random.default_rng(s["seed"] + 7)
    W0 = net.W0.numpy() * (1.0 + rel * g.standard_normal(net.W0.shape))
    net_b = build(s, W0=W0)[0]
    a, b = _run(net, X, y, s, h, t1), _run(net_b, X, y, s, h, t1)
    S = _scale(a)
    ratio = np.linalg.norm(np.asarray(b.residual) - np.asarray(a.residual), axis=1) / (EPS64 * S)
    q = np.linalg.norm(np.asarray(a.residual), axis=1) / (EPS64 * S)
    return {"name": _spec_name(s), "kind": "perturbed W0 (float64)", "ratio": ratio.tolist(), "q": q.tolist(),
            "regime": _regimes(q).tolist(), "t": a.t.tolist(), "loss": a.loss.tolist()}


def linear_exact(s: dict, max_steps: int) -> dict:
    """A linear-σ float64 run against the exact rk4 recursion of its flow in extended precision: with σ(u) = u,
    f = αβ Φ v, v = Wᵀc (D,), and v̇ = −ℓαβ‖c‖² Φᵀ r is linear, so rk4 on W maps to rk4 on v exactly."""
    assert s["act"] == "linear" and s["method"] == "rk4"
    net, X, y = build(s)
    h, t1 = schedule(s, net, X, y, max_steps, decay=80.0)
    sol = _run(net, X, y, s, h, t1)
    from gflow.fields import Problem

    pb = Problem.from_data(net, X, y)
    ld = np.longdouble
    Phi = pb.Phi.numpy().astype(ld)
    c = net.c.numpy().astype(ld)
    v = net.W0.numpy().astype(ld).T @ c
    yy = np.asarray(y, dtype=np.float64).astype(ld)
    ab = ld(net.alpha) * ld(net.beta)
    k = ld(net.lr) * ab * (c @ c)

    def field(v):
        return -k * (Phi.T @ (ab * (Phi @ v) - yy))

    hl = ld(h)
    per = round(t1 / h) // SAVES
    res = [ab * (Phi @ v) - yy]
    for _ in range(SAVES):
        for _ in range(per):
            k1 = field(v)
            k2 = field(v + hl / 2 * k1)
            k3 = field(v + hl / 2 * k2)
            k4 = field(v + hl * k3)
            v = v + hl / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        res.append(ab * (Phi @ v) - yy)
    exact = np.array(res, dtype=np.float64)
    S = _scale(sol)
    ratio = np.linalg.norm(np.asarray(sol.residual) - exact, axis=1) / (EPS64 * S)
    q = np.linalg.norm(np.asarray(sol.residual), axis=1) / (EPS64 * S)
    return {"name": _spec_name(s), "kind": "linear σ vs exact rk4 recursion (float64)", "ratio": ratio.tolist(),
            "q": q.tolist(), "regime": _regimes(q).tolist(), "t": sol.t.tolist(), "loss": sol.loss.tolist(),
            "eps_longdouble": float(np.finfo(ld).eps)}


def worst(rows: list[dict], key=lambda r: r["spec"]) -> dict:
    """The worst ratio per regime (t > 0) over ``rows`` and which run it came from."""
    out = {}
    for reg in ("resolved", "near", "rounding"):
        best = (0.0, None, None)
        for r in rows:
            for k in range(1, len(r["t"])):
                if r["regime"][k] == reg and r["ratio"][k] > best[0]:
                    best = (r["ratio"][k], r["name"], r["t"][k])
        out[reg] = {"ratio": best[0], "run": best[1], "t": best[2]}
    return out


def _before(r: dict) -> dict:
    """worst() of one run with the scale before this calibration (√n·ĉ, no |α|·m)."""
    return worst([{**r, "ratio": r["ratio_before"], "regime": r["regime_before"]}])


def summarise(rows: list[dict], transfer: list[dict]) -> tuple[dict, str]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        s = r["spec"]
        for key in (f"scaling={s['scaling']}", f"act={s['act']}", f"method={s['method']}",
                    f"emb={'identity' if s['emb'] == 'identity' else 'random features'}",
                    f"m={'≥ 512' if s['m'] >= 512 else '< 512'}"):
            groups.setdefault(key, []).append(r)
    smooth = [r for r in rows if r["spec"]["act"] != "relu"]
    before = [{**r, "ratio": r["ratio_before"], "regime": r["regime_before"]} for r in rows]
    table = {"all": worst(rows), "smooth σ": worst(smooth), "all, S without \\|α\\|·m (before)": worst(before),
             **{k: worst(v) for k, v in sorted(groups.items())}}
    under = [(r["name"], r["under_reports"]) for r in rows if r["under_reports"]]
    lines = [f"# Rounding of the residual: float32 against float64 at the same fixed steps ({len(rows)} runs)", "",
             "ratio = ‖r₃₂ − r₆₄‖ / (ε₃₂·S), S = max(‖y‖, ‖f‖, √n·ĉ·|α|·m) (rounding_scale); "
             f"κ = ROUNDING_KAPPA = {ROUNDING_KAPPA:g}. "
             f"Regimes by q = ‖r₃₂‖/(ε₃₂·S): resolved q ≥ {RESOLVED_Q:g}; near {NEAR_Q:g} ≤ q < {RESOLVED_Q:g} "
             f"(floor finite); rounding q < {NEAR_Q:g} (floor inf). Worst ratio (t > 0) per regime:", "",
             "| group | runs | resolved | near rounding | rounding (floor inf) |", "|---|---|---|---|---|"]
    for k, w in table.items():
        n = len(smooth) if k == "smooth σ" else len(groups[k]) if k in groups else len(rows)
        cells = [f"{w[reg]['ratio']:.3g}" + (f" ({w[reg]['run']}, t = {w[reg]['t']:.4g})" if k not in groups and
                                              w[reg]["run"] else "") for reg in ("resolved", "near", "rounding")]
        lines.append(f"| {k} | {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Loss error above the floor where the floor is finite (an under-report): "
              f"{sum(len(u) for _, u in under)} saved times" + (f" in {under}" if under else ""), "",
              "Stalled at rounding by the end (q < 2κ): "
              f"{sum(r['stalled'] for r in rows)} of {len(rows)} runs.", "",
              "ReLU with euler, the float32 run's step-halving estimate against its distance to float64 (max over "
              "t > 0 of true / estimate): " + ", ".join(f"{r['true_over_halving_estimate']:.3g}" for r in rows
                                                          if r["true_over_halving_estimate"] is not None), "",
              "## Per run", "", "| run | step | t1 | L₆₄(t1) | L₃₂(t1) | resolved | near | rounding | "
              "near, S without \\|α\\|·m | true / step-halving est. (euler) | wall s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w = worst([r])
        lines.append(f"| {r['name']} | {r['step']:g} | {r['t1']:g} | {r['loss64'][-1]:.3g} | {r['loss32'][-1]:.3g} | "
                     + " | ".join(f"{w[reg]['ratio']:.3g}" for reg in ("resolved", "near", "rounding"))
                     + f" | {_before(r)['near']['ratio']:.3g} | "
                     + ("" if r["true_over_halving_estimate"] is None else f"{r['true_over_halving_estimate']:.3g}")
                     + f" | {r['wall']:.1f} |")
    lines += ["", "## Does it transfer to float64?", "",
              "ratio = ‖r − r_ref‖ / (ε₆₄·S) (the same S) of float64 runs against an extended-precision exact rk4 "
              "recursion (linear σ) or a float64 run from W0·(1 + ε₆₄·N(0,1)):", "",
              "| check | run | resolved | near | rounding | L(t1) |", "|---|---|---|---|---|---|"]
    for r in transfer:
        w = worst([r])
        lines.append(f"| {r['kind']} | {r['name']} | "
                     + " | ".join(f"{w[reg]['ratio']:.3g}" for reg in ("resolved", "near", "rounding"))
                     + f" | {r['loss'][-1]:.3g} |")
    return {"worst": table, "transfer_worst": worst(transfer) if transfer else None,
            "under_reports": under}, "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="three small problems and one transfer check (seconds)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "rounding"))
    p.add_argument("--max-steps", type=int, default=None, help="step budget per run (default 2000; quick 400)")
    p.add_argument("--only", default=None, help="run only the problems whose name contains this")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure_all(args)
    finally:  # (a test runs the quick mode in its own process: torch's setting is left as it was)
        torch.set_num_threads(threads)


def _measure_all(args) -> dict:
    max_steps = args.max_steps or (400 if args.quick else 2000)
    grid = quick_grid() if args.quick else full_grid()
    if args.only:
        grid = [s for s in grid if args.only in _spec_name(s)]
    t_start = time.perf_counter()
    rows = []
    for s in grid:
        r = measure(s, max_steps)
        w = worst([r])
        print(f"{r['name']:45s} h={r['step']:<9g} t1={r['t1']:<9g} L64={r['loss64'][-1]:.2e} "
              f"L32={r['loss32'][-1]:.2e} worst resolved {w['resolved']['ratio']:.3g} near {w['near']['ratio']:.3g}"
              f" rounding {w['rounding']['ratio']:.3g} under {len(r['under_reports'])} ({r['wall']:.1f} s)",
              flush=True)
        rows.append(r)
    transfer = []
    lin = [s for s in grid if s["act"] == "linear" and s["emb"] == "identity"]
    pert = [s for s in grid if s["act"] in ("tanh", "relu") and s["m"] <= 128]
    if args.quick:
        lin, pert = lin[:1], []
    for s in lin:
        transfer.append(linear_exact(s, 2 * max_steps))
    for s in pert:
        transfer.append(perturbed(s, 2 * max_steps))
    for r in transfer:
        w = worst([r])
        print(f"[{r['kind']}] {r['name']:45s} resolved {w['resolved']['ratio']:.3g} near {w['near']['ratio']:.3g} "
              f"rounding {w['rounding']['ratio']:.3g}", flush=True)
    summary, md = summarise(rows, transfer)
    data = {"mode": "quick" if args.quick else "full", "kappa": ROUNDING_KAPPA, "eps32": EPS32, "eps64": EPS64,
            "max_steps": max_steps, "wall": time.perf_counter() - t_start, "summary": summary, "runs": rows,
            "transfer": transfer, "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                              "threads": torch.get_num_threads()},
            "versions": gf.solution.versions()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rounding.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "rounding.md").write_text(md)
    print(md)
    return data


if __name__ == "__main__":
    main()
