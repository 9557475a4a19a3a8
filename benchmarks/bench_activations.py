"""The activations' fused kernels against their former code, side by side in one run.

For leaky ReLU, ReLU and GELU the former code (reproduced here as user-defined activations: the ``torch.where`` forms
against 0-d tensors, and GELU's separate σ and σ′) is timed against the built-in's kernels in three places: σ and σ′
alone ((m, n) = (1024, 64)), one feature-space RHS evaluation, and one gradient-descent step at Experiment 3's size
(m = D = 512, n = 200).  Also σ and σ′ of every built-in at (1024, 64) (one thread), for the record.

Run from the repository root: ``python benchmarks/bench_activations.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.bench._common import machine, versions, write_json
from gflow.bench.speed import _rhs_call, seconds_side_by_side
from gflow.fields import Problem, make_field

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def former(name: str) -> gf.Activation:
    """The activation as gflow computed it before its fused kernels (same σ and σ′, as a user-defined one)."""
    act = gf.get_activation(name)
    if name == "leaky_relu":
        slope = dict(act.params)["slope"]

        def sigma(u):
            return torch.where(u > 0, u, slope * u)

        def dsigma(u):
            one = torch.ones((), dtype=u.dtype, device=u.device)
            return torch.where(u > 0, one, torch.where(u < 0, slope * one, 0.0 * one))

        return gf.Activation("former_leaky_relu", sigma, dsigma, 1.0, act.interval, K=act.K, smooth=False)
    if name == "relu":
        return gf.Activation("former_relu", torch.relu, act.dsigma, 1.0, act.interval, K=1.0, smooth=False,
                             sigma_and_dsigma=act.sigma_and_dsigma, sigma_and_dsigma_into=act.sigma_and_dsigma_into)
    if name == "gelu":
        def dsigma(u):
            return 0.5 * (1.0 + torch.erf(u / _SQRT_2)) + u * _INV_SQRT_2PI * torch.exp(-0.5 * u * u)

        return gf.Activation("former_gelu", act.sigma, dsigma, act.lipschitz, act.interval, K=act.K)
    raise ValueError(name)


def _kernel_call(act, u):
    s, ds = torch.empty_like(u), torch.empty_like(u)
    return lambda: act.sigma_then_dsigma_into(u, s, ds, lambda sig: None)


def _problem(act, m: int, D: int, n: int):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, D)), rng.uniform(-0.5, 0.5, n)
    net = gf.Network(d=D, width=m, activation=act, seed=0)
    return Problem.from_data(net, X, y)


def _gd_call(field):
    state = field.initial_state()
    deriv = torch.empty_like(state)
    return lambda: field.gd_step_(state, 0.25, deriv)


def run(quick: bool, repeats: int, min_seconds: float) -> dict:
    m_k, n_k = (256, 32) if quick else (1024, 64)
    m, D, n = (64, 64, 20) if quick else (512, 512, 200)
    u = torch.randn(n_k, m_k, dtype=torch.float64).T * 2.0  # column-major, as H in the "nm" layout
    rows = []
    for name in ("leaky_relu", "relu", "gelu"):
        old, new = former(name), gf.get_activation(name)
        k_old, k_new = seconds_side_by_side([_kernel_call(old, u), _kernel_call(new, u)], repeats, min_seconds)
        f_old, f_new = (make_field(_problem(a, m, D, n), "feature") for a in (old, new))
        r_old, r_new, g_old, g_new = seconds_side_by_side(
            [_rhs_call(f_old), _rhs_call(f_new), _gd_call(f_old), _gd_call(f_new)], repeats, min_seconds)
        outs = []
        for f in (f_old, f_new):  # the same derivative from both, to rounding
            state = f.initial_state()
            out = torch.empty_like(state)
            f.rhs_into(state, out)
            outs.append(out)
        diff = float((outs[0] - outs[1]).abs().max() / outs[0].abs().max())
        row = {"activation": name, "rhs_max_rel_diff": diff, "kernel_shape": [m_k, n_k], "kernel_former_s": k_old,
               "kernel_s": k_new,
               "problem": [m, D, n], "rhs_former_s": r_old, "rhs_s": r_new, "gd_step_former_s": g_old,
               "gd_step_s": g_new}
        rows.append(row)
        print(f"{name}: σ, σ′ {k_old * 1e6:.0f} → {k_new * 1e6:.0f} µs ({k_old / k_new:.1f}×) at ({m_k}, {n_k}); "
              f"feature RHS {r_old * 1e3:.3f} → {r_new * 1e3:.3f} ms ({r_old / r_new:.2f}×), GD step "
              f"{g_old * 1e3:.3f} → {g_new * 1e3:.3f} ms ({g_old / g_new:.2f}×) at {(m, D, n)}", flush=True)
    builtins = {}
    calls = [_kernel_call(gf.get_activation(a), u) for a in gf.ACTIVATIONS]
    for a, t in zip(gf.ACTIVATIONS, seconds_side_by_side(calls, repeats, min_seconds)):
        builtins[a] = t
        print(f"  {a:11s} σ, σ′ at ({m_k}, {n_k}): {t * 1e6:7.1f} µs", flush=True)
    return {"machine": machine(), "versions": versions(), "threads": torch.get_num_threads(), "quick": quick,
            "former_vs_fused": rows, "builtin_kernels_s": builtins}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short rounds (the test suite's tiny mode)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/activations"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = run(args.quick, 3 if args.quick else 7, 0.01 if args.quick else 0.3)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "activations.json", res)


if __name__ == "__main__":
    main()
