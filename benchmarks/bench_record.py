"""The recorder's cost per saved time: the current Recorder (record_many over the dense output's chunks) against
the former one (one record call per saved time, its code reproduced here), side by side in one process.

Each case is one solve, run alternately with the former and the current recorder (best of ``--repeats`` rounds):
the README's quick start (Experiment 1, tanh, m = 1024, n = 20, dop853 to t = 500) with a dense saveat of 5 001
times, with and without 200 test points; gradient descent saving every step, with and without test points; a ReLU
net with rk4.  Reported: the solve's wall time, the time inside the recorder and its share, the recorder's cost per
saved time, the ratios former / current — and whether every recorded array is the same (np.array_equal).

Second table (``shared``): gradient descent with the recorder's work shared with the step and the test block fused,
against the same code with both turned off (the "before" of that change: the recorder's η, μ, ν, M and λ_min(M) not
handed to the next step's running integrals, :meth:`~gflow.fields.ObservedField.offer_integrands`, and σ(H_te) and
|H_te − H_te⁰| in three passes instead of one, :func:`gflow.model.activations.sigma_absdiff_into`), alternately in
one process: Experiment 1's sizes (tanh, m = 1024, n = 80, d = 10: weight space; and n = 20, d = 20: feature space)
saving every step and at the default, with and without 200 test points, and the P-3L ReLU setting of
``bench_relu.py`` (m = D = 128, n = 50).  Reported per case: the wall time per step and per saved step, the time in
the recorder, the ratios before / after, and whether every array and the stats (wall times aside) are the same.

Run from the repository root: ``python benchmarks/bench_record.py [--quick] [--out DIR]`` (one thread by default).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch

import gflow as gf
from gflow.bench._common import machine, versions, write_json
from gflow.model import quantities as Q
from gflow.solve._record import Abort, Recorder, _np, float64_advice, scratch


def _member(self, t: float, times: np.ndarray) -> bool:
    if times.size == 0:
        return False
    k = np.searchsorted(times, t)
    return any(0 <= j < times.size and abs(times[j] - t) <= self._tol for j in (k - 1, k))


def former_record(self, t: float, state: torch.Tensor, *, force_features: bool = False) -> None:
    """Recorder.record as it was before record_many (gflow 191a841), verbatim but for the names it imports."""
    pb, net, rows = self.pb, self.pb.net, self.rows
    H = self.field.train_features(state)
    # every (m, n)-sized temporary is a buffer kept across calls (fresh ones cost page faults), and the sums over
    # neurons are matrix–vector products with a ones vector (a column mean over (m, n) cost 9× that at n = 600)
    s, ds = scratch(self, "s", H.shape, H), scratch(self, "ds", H.shape, H)
    net.activation.both_into(H, s, ds)  # the fused σ/σ′ of the field (float64 tanh: ~5x torch.tanh)
    f = net.alpha * (net.c @ s)
    r = f - pb.y
    loss = float(0.5 * (r @ r))
    # σ′(H) feeds M, μ, ν and L̇ (its finiteness by a sum: Q.all_finite)
    if not math.isfinite(loss) or not Q.all_finite(ds):
        self.nonfinite_state = (float(t), state.detach().clone(), self.field)
        raise Abort("nonfinite", f"the loss or σ′ became non-finite at t = {t:.6g}; the state was lost between "
                    f"t = {rows['t'][-1] if rows['t'] else 0.0:.6g} and t = {t:.6g}; use "
                    f"{float64_advice(net.dtype)}a smaller step or tighter tolerances")
    if self.diverge_factor is not None and rows["loss"] and loss > self.diverge_factor * max(rows["loss"][0], 1e-300):
        raise Abort("diverged", self.diverged_message(loss, t))
    if rows["loss"] and self.loss_rise is None and loss > rows["loss"][-1] and (
            loss > rows["loss"][-1] + self._rounding(rows["loss"][-1], s) if not self.rise_rtol else
            loss > self._lowest_loss() * (1.0 + self.rise_rtol) + self._rounding(self._lowest_loss(), s)):
        self.loss_rise = (rows["t"][-1], rows["loss"][-1], float(t), loss)
    if self.bar is not None:
        self.bar.update(float(t) - (rows["t"][-1] if rows["t"] else 0.0))
        self.bar.set_postfix_str(f"L = {loss:.3e}", refresh=False)
    rows["t"].append(float(t))
    rows["loss"].append(loss)
    rows["residual"].append(_np(r))
    rows["output"].append(_np(f))
    keep_features = force_features or _member(self, t, self._ft)
    Hte = None
    if pb.X_test is not None:
        # the test features in a buffer kept across calls (a fresh (m, n_te) product per saved time cost page
        # faults), and |H_te − H_te⁰| formed over them in place once σ(H_te) is taken (one large array fewer
        # to stream): the test block 885 → 770 µs at (m, n_te) = (1024, 200) (one thread, Intel Xeon)
        Hte_buf = scratch(self, "Hte", (H.shape[0], pb.n_test), H, col=False)
        Hte = self.field.test_features_into(state, Hte_buf)
        ste = scratch(self, "ste", Hte.shape, Hte)
        if net.activation.sigma_into is not None:
            net.activation.sigma_into(Hte, ste)
        else:
            ste.copy_(net.activation.sigma(Hte))
        fte = net.alpha * (net.c @ ste)
        if len(rows["t"]) == 1 and not math.isfinite(float(torch.sum((fte - pb.y_test) ** 2))):
            raise ValueError(f"the test loss at t = 0 is not finite: the test data or the network overflow "
                             f"{fte.dtype} on X_test (largest |y_test| {float(pb.y_test.abs().max()):.3g}); "
                             "check the scale of X_test and y_test")
        rows["test_output"].append(_np(fte))
        if keep_features:  # (before the buffer is overwritten)
            Hte_kept = _np(Hte)
        rows["feature_movement_test"].append(_np(Q.feature_movement(Hte, self._H0_test,
                                                                    Hte if Hte is Hte_buf else ste)))
    # theory quantities (EQUATIONS.md §8-§9)
    ind = scratch(self, "ind", H.shape, H)  # η's indicator buffer, reused
    rows["eta"].append(float(Q.eta(H, self.interval, ind)))
    rows["eta_bar"].append(float(Q.eta(H, self.inner, ind)) if self.inner else math.nan)
    mu, nu = self._forms.mu_nu(ds, ind).tolist()  # (T4; as the running integrals form them)
    rows["mu"].append(mu)
    rows["nu"].append(nu)
    if self._eig:
        M = self._forms.kernel_M(ds, ind)  # κ_M G∘S (E3), exactly symmetric
        lo, hi = Q.extreme_eigenvalues(M, self._M_symmetric)
        if self._M0 is None:
            self._M0 = M
        if self._M0_norm is None:  # (also after a checkpoint restored M₀)
            self._M0_norm = torch.linalg.norm(self._M0)
        rows["lam_min_M"].append(lo)
        rows["lam_max_M"].append(hi)
        rows["dL"].append(float(-(r @ (M @ r))))
        rows["kernel_movement"].append(float(torch.dist(M, self._M0) / self._M0_norm))
    else:
        for k in ("lam_min_M", "lam_max_M", "dL", "kernel_movement"):
            rows[k].append(math.nan)
    dH = scratch(self, "dH", H.shape, H)
    rows["feature_movement"].append(_np(Q.feature_movement(H, self._H0, dH)))  # leaves |H − H0| in dH
    if self.inner:  # T7: max_a (1/m) #{i : |h_i^t(x_a) − h_i^0(x_a)| ≥ ξ}
        xi = (self.interval[1] - self.interval[0]) / 3.0
        torch.ge(dH, xi, out=ind)  # 1.0 / 0.0 in H's dtype, counted by a product (exact integer counts)
        rows["moved_fraction"].append(float(torch.mv(ind.T, self._ones_m).max()) / H.shape[0])
    else:
        rows["moved_fraction"].append(math.nan)
    rows["weight_movement"].append(self.field.weight_movement(state))
    if hasattr(self.field, "integrals"):
        rows["integrals"].append(_np(self.field.integrals(state)))
    if keep_features:
        self.feature_t.append(float(t))
        self.H.append(_np(H))
        if Hte is not None:
            self.H_test.append(Hte_kept)
    if _member(self, t, self._wt):
        self.weight_t.append(float(t))
        self.W.append(_np(self.field.weights(state)))
    self.last_state = state


class _Timed:
    """Recorder.record / record_many patched to the former or the current code and timed."""

    def __init__(self, former: bool):
        self.former, self.seconds, self.calls = former, 0.0, 0

    def __enter__(self):
        self.saved = Recorder.record, Recorder.record_many
        record, many = (former_record, None) if self.former else self.saved
        timer = self

        def timed_record(rec, *a, **kw):
            t = time.perf_counter()
            try:
                return record(rec, *a, **kw)
            finally:
                timer.seconds += time.perf_counter() - t

        def timed_many(rec, ts, states):
            t = time.perf_counter()
            try:
                if many is not None:
                    return many(rec, ts, states)
                for tk, yk in zip(ts, states):  # (the former engine recorded its dense output time by time)
                    record(rec, tk, yk)
            finally:
                timer.seconds += time.perf_counter() - t

        Recorder.record, Recorder.record_many = timed_record, timed_many
        return self

    def __exit__(self, *exc):
        Recorder.record, Recorder.record_many = self.saved


def cases(quick: bool) -> dict:
    m, n_te, t1, T = (32, 20, 10.0, 101) if quick else (1024, 200, 500.0, 5001)
    steps = 50 if quick else 2000
    X, y = gf.data.random_labels(n=20, d=20, seed=0)
    Xt, yt = gf.data.random_labels(n=n_te, d=20, seed=1)
    tanh = gf.Network(d=20, width=m, activation="tanh", seed=0)
    relu = gf.Network(d=20, width=m, activation="relu", seed=0)
    test = {"X_test": Xt, "y_test": yt}
    saveat = np.linspace(0.0, t1, T)
    flow = {"t1": t1, "saveat": saveat, "method": "dop853", "rtol": 1e-8, "atol": 1e-10}
    return {
        "quick start, dense saveat, X_test": lambda: gf.simulate(tanh, X, y, **flow, **test),
        "quick start, dense saveat": lambda: gf.simulate(tanh, X, y, **flow),
        "quick start, dense saveat, feature space": lambda: gf.simulate(tanh, X, y, **flow, space="feature"),
        "GD save_every=1, X_test": lambda: gf.gradient_descent(tanh, X, y, step=1.0, steps=steps, save_every=1, **test),
        "GD save_every=1": lambda: gf.gradient_descent(tanh, X, y, step=1.0, steps=steps, save_every=1),
        "ReLU rk4, X_test": lambda: gf.simulate(relu, X, y, t1=t1 / 10, saveat=saveat / 10, method="rk4",
                                                step=t1 / 10 / (T - 1), **test),
    }


def _arrays(sol) -> dict:
    return {k: v for k, v in vars(sol).items() if isinstance(v, np.ndarray) and v.dtype != object}


def _side_by_side(call, repeats: int, enter):
    """Best of ``repeats`` of ``call()`` for each flag (True: the baseline, False: the current code), alternating:
    ``enter(flag, stack)`` enters the flag's context managers on an ExitStack and returns the recorder timer.
    Returns ({flag: (best wall, its recorder seconds)}, {flag: the last solution})."""
    best = {True: (math.inf, 0.0), False: (math.inf, 0.0)}
    sols = {}
    for _ in range(repeats):
        for flag in (True, False):
            with contextlib.ExitStack() as stack:
                timer = enter(flag, stack)
                t = time.perf_counter()
                sol = call()
                wall = time.perf_counter() - t
            if wall < best[flag][0]:
                best[flag] = (wall, timer.seconds)
            sols[flag] = sol
    return best, sols


def run(quick: bool, repeats: int) -> dict:
    rows = []
    for name, call in cases(quick).items():
        best, sols = _side_by_side(call, repeats, lambda former, stack: stack.enter_context(_Timed(former)))
        a, b = _arrays(sols[True]), _arrays(sols[False])
        equal = a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
        T = len(sols[False].t)
        (w0, r0), (w1, r1) = best[True], best[False]
        row = {"case": name, "saved_times": T, "former_wall_s": w0, "wall_s": w1, "former_record_s": r0,
               "record_s": r1, "former_record_share": r0 / w0, "record_share": r1 / w1,
               "former_ms_per_saved_time": 1e3 * r0 / T, "ms_per_saved_time": 1e3 * r1 / T,
               "record_ratio": r0 / r1, "wall_ratio": w0 / w1, "arrays_equal": bool(equal)}
        rows.append(row)
        print(f"{name}: {T} saved times; recorder {row['former_ms_per_saved_time']:.3f} → "
              f"{row['ms_per_saved_time']:.3f} ms per saved time ({row['record_ratio']:.2f}×; "
              f"{row['former_record_share']:.0%} → {row['record_share']:.0%} of the wall time), solve {w0:.2f} → "
              f"{w1:.2f} s ({row['wall_ratio']:.2f}×); arrays equal: {equal}", flush=True)
    return {"machine": machine(), "versions": versions(), "threads": torch.get_num_threads(), "quick": quick,
            "dtype": "float64", "repeats": repeats, "cases": rows}


class _Unshared:
    """The recorder's sharing with the GD step and the fused test block turned off (the code before them)."""

    def __enter__(self):
        import gflow.solve._record as rec_mod
        from gflow.fields import ObservedField

        self.mod, self.cls = rec_mod, ObservedField
        self.saved = rec_mod.sigma_absdiff_into, ObservedField.offer_integrands
        rec_mod.sigma_absdiff_into = lambda *a: False
        ObservedField.offer_integrands = lambda self, *a: None
        return self

    def __exit__(self, *exc):
        self.mod.sigma_absdiff_into, self.cls.offer_integrands = self.saved


def shared_cases(quick: bool) -> dict:
    m, n_te, steps = (64, 30, 60) if quick else (1024, 200, 2000)
    X80, y80 = gf.data.random_labels(n=80, d=10, seed=0)
    Xt80, yt80 = gf.data.random_labels(n=n_te, d=10, seed=1)
    X20, y20 = gf.data.random_labels(n=20, d=20, seed=0)
    Xt20, yt20 = gf.data.random_labels(n=n_te, d=20, seed=1)
    net80 = gf.Network(d=10, width=m, activation="tanh", seed=0)
    net20 = gf.Network(d=20, width=m, activation="tanh", seed=0)
    import runpy

    relu = runpy.run_path(str(Path(__file__).resolve().parent / "bench_relu.py"))["setting"](
        32 if quick else 128, 20 if quick else 50)
    out = {}
    for every in (1, None):
        tag = "save_every=1" if every == 1 else "default save_every"
        for test in (False, True):
            t80 = {"X_test": Xt80, "y_test": yt80} if test else {}
            t20 = {"X_test": Xt20, "y_test": yt20} if test else {}
            suffix = f"{tag}{', X_test' if test else ''}"
            out[f"Exp 1 n=80 d=10 (weight), {suffix}"] = (steps, lambda e=every, t=t80: gf.gradient_descent(
                net80, X80, y80, step=1.0, steps=steps, save_every=e, warn=False, **t))
            out[f"Exp 1 n=20 d=20 (feature), {suffix}"] = (steps, lambda e=every, t=t20: gf.gradient_descent(
                net20, X20, y20, step=1.0, steps=steps, save_every=e, warn=False, **t))
        out[f"P-3L ReLU m=D=128 n=50, {tag}"] = (steps, lambda e=every: gf.gradient_descent(
            *relu, step=0.25, steps=steps, save_every=e, warn=False))
    return out


def _same(a, b) -> bool:
    x, y = _arrays(a), _arrays(b)
    stats = [{k: v for k, v in s.stats.items() if "wall" not in k} for s in (a, b)]
    return (x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x)
            and stats[0] == stats[1] and a.status == b.status and a.message == b.message)


def run_shared(quick: bool, repeats: int) -> list:
    rows = []
    for name, (steps, call) in shared_cases(quick).items():
        def enter(before, stack):
            if before:
                stack.enter_context(_Unshared())
            return stack.enter_context(_Timed(False))

        best, sols = _side_by_side(call, repeats, enter)
        T = len(sols[False].t)
        (w0, r0), (w1, r1) = best[True], best[False]
        row = {"case": name, "steps": steps, "saved_times": T, "before_wall_s": w0, "wall_s": w1,
               "before_record_s": r0, "record_s": r1, "before_us_per_step": 1e6 * w0 / steps,
               "us_per_step": 1e6 * w1 / steps, "before_us_per_saved_step": 1e6 * r0 / T,
               "us_per_saved_step": 1e6 * r1 / T, "wall_ratio": w0 / w1, "record_ratio": r0 / r1,
               "identical": _same(sols[True], sols[False])}
        rows.append(row)
        print(f"{name}: {T} saved of {steps} steps; {row['before_us_per_step']:.0f} → {row['us_per_step']:.0f} µs "
              f"per step ({row['wall_ratio']:.2f}×), recorder {row['before_us_per_saved_step']:.0f} → "
              f"{row['us_per_saved_step']:.0f} µs per saved step ({row['record_ratio']:.2f}×); identical: "
              f"{row['identical']}", flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one round (the test suite's tiny mode)")
    ap.add_argument("--repeats", type=int, default=None, help="alternating rounds per case (default 3; quick: 1)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/record"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--part", choices=("all", "former", "shared"), default="all",
                    help="both tables (default), the former recorder's only, or the shared GD table's only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    res = (run(args.quick, repeats) if args.part != "shared" else
           {"machine": machine(), "versions": versions(), "threads": torch.get_num_threads(), "quick": args.quick,
            "dtype": "float64", "repeats": repeats, "cases": []})
    if args.part != "former":
        res["shared"] = run_shared(args.quick, repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "record.json", res)


if __name__ == "__main__":
    main()
