"""Differential fuzz of the ReLU solvers: ``filippov`` and ``sliding`` against gradient descent at tiny steps.

Random small problems — ReLU or leaky ReLU (slope 0.1), identity embedding (shallow nets, mostly n > d: G
rank-deficient, neurons can pass through w_i = 0) or random ReLU features (D = 4 … 8), scalings ours / mf / ntk,
ĉ ∈ {0.5, 1, 2}, m ≤ 64, n ≤ 16, t1 = 5 or 10 — each solved by

* GD at δ = 1e-4 (the referee: its error is O(δ)) and 2.5e-4 (its own scatter sets the tolerance: 10× the two
  GDs' difference, at least 1e-4 in the loss and 1e-3 in H, relative);
* ``filippov`` at rtol 1e-10, and ``sliding`` at δ = 1/16 and 1/64 (1/256 where a step warns of the stability
  limit), each with a 30 s budget.

A case is flagged when a solver's loss (over 11 times) or final H is off GD by more than the tolerance, fails, or
takes more than 10 s.  GD is not an infallible referee: where a pair grazes the kink GD at 1e-4 and 5e-5 can agree
with each other and both be wrong (a random-feature case needed δ = 1e-5 to side with ``filippov``), and where a
neuron passes w_i = 0 GD's branch can depend on δ — so ``--repro SEED`` writes a stand-alone reproducer that adds
GD at 5e-5 and 1e-5, to be read before a flag is called a defect.  Seeds 100000 + k and 200000 + k reproduce the
cases of the tenth and eleventh sessions' fuzz (CHANGELOG).

    python benchmarks/fuzz_relu.py [--cases 40] [--first 100000] [--out DIR] [--repro SEED]

Output: ``fuzz_relu.jsonl`` (one record per case: problem, GD scatter, each solver's errors, status, wall, stats,
flags) and a printed summary.  The script runs torch on one thread (parallel workers: one process each); latest
results, before and after the eleventh session's change, in ``benchmarks/results/fuzz_relu/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from _fuzz import judge, run_cases, solve_caught  # (benchmarks/ is the script's directory)

import gflow as gf


def case(seed: int):
    """The random problem of ``seed``: (net, X, y, t1, description)."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 7))
    n = int(rng.integers(6, 17))
    if rng.random() < 0.15:
        n = int(rng.integers(2, d + 1))
    m = int(rng.choice([8, 16, 24, 32, 48, 64]))
    t1 = float(rng.choice([5, 10]))
    act = "relu" if rng.random() < 0.5 else {"name": "leaky_relu", "slope": 0.1}
    rf = rng.random() < 0.35
    D = int(rng.integers(4, 9))
    scaling = str(rng.choice(["ours", "mf", "ntk"]))
    c_hat = float(rng.choice([0.5, 1, 2]))
    net_seed = int(rng.integers(0, 1000))
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    emb = gf.RandomFeatures(D, "relu", seed=5) if rf else "identity"
    net = gf.Network(d, width=m, activation=act, embedding=emb, scaling=scaling, c_hat=c_hat, seed=net_seed)
    desc = dict(seed=seed, d=d, n=n, m=m, t1=t1, act=act if isinstance(act, str) else "leaky", D=D if rf else None,
                scaling=scaling, c_hat=c_hat, net_seed=net_seed)
    return net, X, y, t1, desc


def _gd(net, X, y, t1, step):
    k = int(round(t1 / step))
    return gf.gradient_descent(net, X, y, step=step, steps=k, save_every=k // 10, integrals=False, features_at=[t1])


def _solve(net, X, y, t1, saveat, **kw):
    return solve_caught(net, X, y, t1, saveat, max_wall_time=30, **kw)


def run_case(seed: int) -> dict:
    net, X, y, t1, rec = case(seed)
    g, g2 = _gd(net, X, y, t1, 1e-4), _gd(net, X, y, t1, 2.5e-4)
    L0, Hg = g.loss[0], g.H[-1]
    Hs = np.abs(Hg).max() or 1.0  # (features ≡ 0 — e.g. random ReLU features that vanish on every point: absolute)
    rec["scatter_loss"] = float(np.abs(g.loss - g2.loss).max() / L0)
    rec["scatter_H"] = float(np.abs(g2.H[-1] - Hg).max() / Hs)
    tol_L, tol_H = max(10 * rec["scatter_loss"], 1e-4), max(10 * rec["scatter_H"], 1e-3)
    saveat = np.asarray(g.t, dtype=float)
    runs = {"filippov": dict(method="filippov", rtol=1e-10, atol=1e-12)}
    queued, tried = [16, 64], set()
    flags = []
    while queued:
        k = queued.pop(0)
        tried.add(k)
        s, wall, w = _solve(net, X, y, t1, saveat, method="sliding", step=1 / k)
        if any("stability" in x for x in w):  # beyond 2/λ_max(M₀): not a fair test of the scheme
            rec.setdefault("unstable", []).append(k)
            if 256 not in tried and 256 not in queued:
                queued.append(256)
            continue
        runs[f"sliding_{k}"] = (s, wall, w)
    def check(s, e):
        e["loss_err"] = float(np.abs(np.asarray(s.loss) - g.loss).max() / L0)
        e["H_err"] = float(np.abs(np.asarray(s.H)[-1] - Hg).max() / Hs)
        return [f for f, bad in (("loss", not e["loss_err"] <= tol_L), ("H", not e["H_err"] <= tol_H)) if bad]

    for name, r in runs.items():
        s, wall, w = _solve(net, X, y, t1, saveat, **r) if isinstance(r, dict) else r
        e = judge(name, s, wall, w, flags, 10, check)
        if s is not None:
            e["stats"] = {k: int(v) for k, v in s.stats.items()
                          if k in ("n_events", "n_steps", "n_emerged", "n_pin_retries", "n_rank_retries", "n_spurious")}
        rec[name] = e
    rec["flags"] = flags
    return rec


REPRO = '''# reproducer of benchmarks/fuzz_relu.py case {seed}: GD at four steps, filippov, sliding at three
import sys, numpy as np, gflow as gf
sys.path.insert(0, {bench!r})
from fuzz_relu import case
net, X, y, t1, desc = case({seed})
print(desc)
G = {{}}
for st in (1e-4, 5e-5, 2.5e-5, 1e-5):
    k = int(round(t1 / st))
    G[st] = gf.gradient_descent(net, X, y, step=st, steps=k, save_every=k // 10, integrals=False, features_at=[t1])
g = G[1e-4]
def err(loss, H):
    eL = np.abs(np.asarray(loss) - g.loss).max() / g.loss[0]
    return eL, np.abs(np.asarray(H)[-1] - g.H[-1]).max() / np.abs(g.H[-1]).max()
for st, gg in G.items():
    print(f"GD {{st:g}}: loss %.2e  H %.2e (vs GD 1e-4)" % err(gg.loss, gg.H))
runs = [("filippov", dict(method="filippov", rtol=1e-10, atol=1e-12))]
runs += [(f"sliding 1/{{k}}", dict(method="sliding", step=1 / k)) for k in (16, 64, 256)]
for name, kw in runs:
    s = gf.simulate(net, X, y, t1, saveat=g.t, features_at=[t1], max_wall_time=60, **kw)
    e = err(s.loss, s.H) if s.ok else (np.nan, np.nan)
    print(f"{{name:12s}} loss %.2e  H %.2e  {{s.status}}  {{s.stats.get('wall_time', 0):.1f}} s" % e)
'''


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--first", type=int, default=100000, help="the first seed (cases are first, first + 1, ...)")
    p.add_argument("--out", default="benchmarks/results/fuzz_relu")
    p.add_argument("--repro", type=int, default=None, help="write repro_SEED.py into --out and stop")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.repro is not None:
        path = out / f"repro_{args.repro}.py"
        path.write_text(REPRO.format(seed=args.repro, bench=str(Path(__file__).resolve().parent)))
        print(path)
        return path
    return run_cases(run_case, args.first, args.cases, out / "fuzz_relu.jsonl",
                     lambda rec: f"case {rec['seed']}: {', '.join(rec['flags'])}" if rec["flags"] else None)


if __name__ == "__main__":
    torch.set_num_threads(1)  # (two threads per process on a loaded machine: small ops wait, up to 100× slower)
    main()
