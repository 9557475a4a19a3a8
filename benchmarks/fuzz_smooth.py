"""Differential fuzz of the smooth-σ solvers: every adaptive route against a tight reference, on random problems.

Random small problems — σ ∈ {tanh, erf, sigmoid, softplus, gelu, linear}, embeddings identity / quadratic /
random features (tanh or ReLU, D = 4 … 24) / deep random features, scalings ours / mf / ntk, ĉ ∈ {0.5, 1, 2},
m ≤ 128, n ≤ 32, horizons t1 ∈ {20, 200, 2 000, 20 000} (the long ones stiff: where ``auto`` runs the exponential
integrator) — each solved by

* the reference: gflow's ``dop853`` at rtol 1e-12 (feature space), checked against ``exprk4`` at rtol 1e-11 (a
  different method, implicit in the fast modes): where the two differ by more than 1e-7 the case is marked
  ``ambiguous`` and not judged;
* ``auto`` (what users get), ``exprk4``, ``dop853+exprk4``, ``dopri5+exprk4``, ``dop853`` in weight space and
  ``dopri5`` in feature space, at the case's rtol (1e-5, 1e-7 or 1e-9), each with a 60 s budget; and ``auto`` with
  ``error_estimate=True`` (``auto_estimate``), flagged ``estimate`` where its estimate is below the true error at a
  saved time where the error is above 10× the reference's own (``estimate_ratio``: the largest true/estimate).

The error of a run is the largest relative loss error over the saved times where the reference loss is above
1e-6·L₀ (``loss_err``: further down, the error of L is set by atol on H, not by rtol; ``loss_err_deep`` records it
down to 1e-20·L₀, below which it is rounding), and the relative error of H at t1 (max-norm).  A run is flagged when it does not succeed, when its loss error exceeds 1 000·rtol (a global error the tolerance does not
explain), when its loss rises anywhere by more than 1e-9·L₀ (the flow's loss never increases, eq. (12)), or when
it takes more than 20 s.

    python benchmarks/fuzz_smooth.py [--cases 40] [--first 0] [--out DIR]

Output: ``fuzz_smooth.jsonl`` (one record per case: problem, reference check, each run's errors, status, wall,
evaluations, flags) and a printed summary.  torch runs on one thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _fuzz import judge, run_cases, solve_caught  # (benchmarks/ is the script's directory)

import gflow as gf

ACTIVATIONS = ("tanh", "erf", "sigmoid", "softplus", "gelu", "linear")
METHODS = {
    "auto": dict(method="auto"),
    "exprk4": dict(method="exprk4", space="feature"),
    "dop853+exprk4": dict(method="dop853+exprk4"),
    "dopri5+exprk4": dict(method="dopri5+exprk4"),
    "dop853_weight": dict(method="dop853", space="weight"),
    "dopri5_feature": dict(method="dopri5", space="feature"),
    "auto_estimate": dict(method="auto", error_estimate=True),
}
LOSS_FLOOR = 1e-6  # relative to L₀: the times where the loss error is judged
DEEP_FLOOR = 1e-20  # relative to L₀: below it the relative error of L is rounding
FLAG_FACTOR = 1e3  # a loss error beyond 1 000·rtol is flagged
REF_AGREE = 1e-7


def case(seed: int):
    """The random problem of ``seed``: (net, X, y, t1, rtol, description)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 11))
    n = int(rng.integers(3, 33))
    m = int(rng.choice([16, 32, 64, 128]))
    t1 = float(rng.choice([20, 200, 2000, 20000]))
    rtol = float(rng.choice([1e-5, 1e-7, 1e-9]))
    act = str(rng.choice(ACTIVATIONS))
    kind = str(rng.choice(["identity", "identity", "quadratic", "rf", "deep"]))
    D = int(rng.integers(4, 25))
    rf_act = str(rng.choice(["tanh", "relu"]))
    if kind == "rf":
        emb = gf.RandomFeatures(D, rf_act, seed=7)
    elif kind == "deep":
        emb = gf.DeepRandomFeatures(D, 4, rf_act, seed=7)
    else:
        emb = kind
    scaling = str(rng.choice(["ours", "mf", "ntk"]))
    c_hat = float(rng.choice([0.5, 1, 2]))
    net_seed = int(rng.integers(0, 1000))
    X = rng.standard_normal((n, d)) / np.sqrt(d)
    y = rng.standard_normal(n)
    net = gf.Network(d, width=m, activation=act, embedding=emb, scaling=scaling, c_hat=c_hat, seed=net_seed)
    desc = dict(seed=seed, d=d, n=n, m=m, t1=t1, rtol=rtol, act=act, embedding=kind,
                D=D if kind in ("rf", "deep") else None, rf_act=rf_act if kind in ("rf", "deep") else None,
                scaling=scaling, c_hat=c_hat, net_seed=net_seed)
    return net, X, y, t1, rtol, desc


def _solve(net, X, y, t1, saveat, budget, **kw):
    return solve_caught(net, X, y, t1, saveat, max_wall_time=budget, max_steps=10_000_000, integrals=False, **kw)


def errors(s, ref, floor: float = LOSS_FLOOR) -> tuple[float, float, float]:
    """(relative loss error over the times where the reference is above floor·L₀, relative H error at t1,
    the largest rise of the loss relative to L₀)."""
    L, Lr = np.asarray(s.loss, dtype=float), np.asarray(ref.loss, dtype=float)
    L0 = Lr[0]
    keep = Lr > floor * L0
    eL = float(np.max(np.abs(L[keep] - Lr[keep]) / Lr[keep]))
    Hr = np.asarray(ref.H)[-1]
    eH = float(np.abs(np.asarray(s.H)[-1] - Hr).max() / (np.abs(Hr).max() or 1.0))
    rise = float(max(np.max(np.diff(L)), 0.0) / L0)
    return eL, eH, rise


def estimate_ratio(s, ref, ref_err: float) -> float:
    """The largest true/estimate of ``s``'s error_estimate over the saved times where the reference loss is above
    DEEP_FLOOR·L₀ and the true error above 10× the reference's own (its distance to the exprk4 check): ≤ 1 where
    the estimate bounds the error (0 where no time qualifies)."""
    L, Lr = np.asarray(s.loss, dtype=float), np.asarray(ref.loss, dtype=float)
    true = np.abs(L - Lr) / np.where(Lr > 0, Lr, np.inf)
    keep = (Lr > DEEP_FLOOR * Lr[0]) & (true > 10.0 * ref_err)
    est = np.asarray(s.error_estimate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(keep, true / est, 0.0)
    return float(np.nanmax(np.where(np.isnan(r), np.inf, r))) if r.size else 0.0


def run_case(seed: int) -> dict:
    net, X, y, t1, rtol, rec = case(seed)
    saveat = np.unique(np.concatenate([np.linspace(0, t1, 11), np.geomspace(1e-3 * t1, t1, 11)]))
    ref, wall, w = _solve(net, X, y, t1, saveat, 120, method="dop853", rtol=1e-12, atol=1e-14, space="feature")
    rec["ref"] = {"status": getattr(ref, "status", "exception"), "wall": wall, "warnings": [x[:120] for x in w[:2]]}
    flags = []
    if ref is None or not ref.ok:
        rec["flags"] = ["reference:" + rec["ref"]["status"]]
        return rec
    rec["ref"]["n_f_evals"] = int(ref.stats.get("n_f_evals", 0))
    rec["L0"], rec["L_t1"] = float(ref.loss[0]), float(ref.loss[-1])
    chk, wall, w = _solve(net, X, y, t1, saveat, 120, method="exprk4", rtol=1e-11, atol=1e-14, space="feature")
    if chk is None or not chk.ok:
        rec["ref"]["check"] = getattr(chk, "status", "exception")
        rec["ambiguous"] = True
    else:
        eL, eH, _ = errors(chk, ref)
        rec["ref"]["check_loss_err"], rec["ref"]["check_H_err"] = eL, eH
        rec["ambiguous"] = not (eL <= REF_AGREE)
    def check(s, e):
        e["loss_err"], e["H_err"], e["rise"] = errors(s, ref)
        e["loss_err_deep"] = errors(s, ref, DEEP_FLOOR)[0]
        flagged = [f for f, bad in (("loss", not rec["ambiguous"] and not e["loss_err"] <= FLAG_FACTOR * rtol),
                                    ("rise", not e["rise"] <= 1e-9)) if bad]
        if s.error_estimate is not None:  # does the estimate bound the error, where the reference can tell?
            e["estimate_ratio"] = ratio = estimate_ratio(s, ref, rec["ref"].get("check_loss_err", np.inf))
            if not rec["ambiguous"] and not ratio <= 1.0:
                flagged.append("estimate")
        return flagged

    for name, kw in METHODS.items():
        s, wall, w = _solve(net, X, y, t1, saveat, 60, rtol=rtol, atol=rtol * 1e-2, **kw)
        e = judge(name, s, wall, w, flags, 20, check, width=160)
        if s is not None:
            e["n_f_evals"] = int(s.stats.get("n_f_evals", 0))
            if name == "auto":
                e["picked"] = s.config["solver"].get("method")
        rec[name] = e
    rec["flags"] = flags
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--first", type=int, default=0, help="the first seed (cases are first, first + 1, ...)")
    p.add_argument("--out", default="benchmarks/results/fuzz_smooth")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    def line(rec):
        worst = max((rec[k].get("loss_err", 0) for k in METHODS if k in rec), default=0)
        return (f"case {rec['seed']}: t1={rec['t1']:g} rtol={rec['rtol']:g} {rec['act']}/{rec['embedding']}/"
                f"{rec['scaling']} n={rec['n']} m={rec['m']} ref {rec['ref'].get('wall', 0):.1f}s "
                f"worst {worst:.1e} {', '.join(rec['flags'])}")

    return run_cases(run_case, args.first, args.cases, out / "fuzz_smooth.jsonl", line)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
