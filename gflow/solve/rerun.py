"""Repeat a run from its :class:`~gflow.Solution` or saved file alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.network import Network
from ..solution import Solution, as_solution


def _check_same_start(sol: Solution, net: Network, custom: list[str]) -> None:
    """Raise ValueError where the rebuilt network's outputs at t = 0 on the training points are not the run's
    (a custom activation or embedding of the same name but another function: the rerun was another run, silently)."""
    if not len(sol.t) or float(sol.t[0]) != 0.0 or sol.output is None:
        return
    f0 = net.forward(sol.X).detach().cpu().numpy().astype(np.float64)
    saved = np.asarray(sol.output[0], dtype=np.float64)
    tol = (1e-9 if net.dtype == torch.float64 else 1e-4) * max(float(np.abs(saved).max(initial=0.0)),
                                                                 float(np.abs(sol.y).max(initial=0.0)), 1e-300)
    worst = float(np.abs(f0 - saved).max(initial=0.0))
    if not worst <= tol:
        what = (f"the given {' and '.join(custom)} {'is' if len(custom) == 1 else 'are'} not the run's"
                if custom else "the network rebuilt from the file's settings and seed is not the run's (versions "
                f"then {sol.versions.get('torch', '?')}, now {torch.__version__})")
        fix = (f"pass the {' and '.join(custom)} the run used" if custom else
               "build the network from the file's c and W (gf.Network(..., c=sol.c, W0=...)) and call gf.simulate")
        raise ValueError(f"rerun: {what}: its outputs at t = 0 on the training points differ from the saved ones by "
                         f"up to {worst:.3g} (tolerance {tol:.2g}); {fix}")


def rerun(source: "Solution | str | Path", *, device: Any = None, embedding: Any = None,
          activation: Any = None) -> Solution:
    """Rebuild the network and data stored in a solution (or its file) and run the same solver again.

    Args:
        source: a :class:`gflow.Solution` or the path of a saved one.
        device: run on another device (the seed gives the same network everywhere).
        embedding, activation: needed only if the run used a user callable embedding or a custom activation,
            which a file cannot hold.

    Returns:
        the new :class:`gflow.Solution`.  A seed of an adaptive :func:`gflow.simulate_batch` run is repeated alone:
        the batch's steps were shared by its seeds (chosen on their joint error norm), a run alone chooses its own,
        so the two agree to the tolerance, not bit for bit (2.3e-8 in the loss at the default rtol on a small
        problem); its message says so.  A run of :func:`gflow.extend` repeats the run it extended and then each
        continuation with its recorded settings.  A run whose method ``"auto"`` picked repeats the method it picked,
        with the recorded reason in ``config["solver"]["auto"]``, whatever ``"auto"`` would pick now.
    """
    from .gd import gradient_descent
    from .ode import simulate, with_auto_reason

    sol = as_solution(source, "source")
    cfg = sol.config
    if "extended" in cfg:  # (gf.extend's run: the run it extended again, then each continuation)
        from .extend import rerun_extended

        return rerun_extended(sol, device=device, embedding=embedding, activation=activation)
    spec = dict(cfg["network"])
    explicit = spec.get("explicit_params", False)
    net = Network.from_spec(
        spec, c=sol.c if explicit else None, W0=sol.W0 if explicit else None, device=device,
        activation=activation, embedding=embedding,
    )
    _check_same_start(sol, net, custom=[name for name, given in (("activation", activation),
                                                                  ("embedding", embedding)) if given is not None])
    s = dict(cfg["solver"])
    data = dict(X=sol.X, y=sol.y, X_test=sol.X_test, y_test=sol.y_test)
    if cfg["kind"] == "gd":
        return gradient_descent(net, **data, step=s["step"], steps=s["steps"], save_every=s["save_every"],
                                space=s["space"], features_at=s["features_at"], weights_at=s["weights_at"] or None,
                                max_wall_time=s["max_wall_time"], interval=s.get("interval"),
                                integrals=s.get("integrals", True))
    if "steps" in s.get("error_estimate", {}):  # step halving (simulate_nonsmooth): every level (a second solve's
        # estimate, filippov's or an adaptive method's, is the same simulate call below)
        from .nonsmooth import simulate_nonsmooth

        e = s["error_estimate"]
        again = simulate_nonsmooth(
            net, **data, t1=s["t1"], saveat=s["saveat"], method=e["method"], step=e["steps"][0], rtol=e["rtol"],
            safety=e["safety"], max_steps=s["max_steps"], max_wall_time=s["max_wall_time"], space=s["space"],
            features_at=s["features_at"], weights_at=s["weights_at"] or None, interval=s.get("interval"),
            integrals=s.get("integrals", True), options=s.get("options") or None,
        )
        return again if "auto" not in s else with_auto_reason(again, s["auto"])
    # a run whose method "auto" picked repeats that method, not "auto": auto's pick depends on more than the
    # config holds (given checkpoint=, it fell back from dop853+exprk4 to dop853; a batch seed ran the explicit
    # method in place of exprk4), and a rerun through "auto" picked dop853+exprk4: another run (2602 evaluations
    # instead of 6095); the recorded reason stays in the config, which says why the repeated run has that method
    again = simulate(
        net, **data, t1=s["t1"], saveat=s["saveat"], rtol=s["rtol"], atol=s["atol"], method=s["method"],
        error_estimate="error_estimate" in s, step=s["step"], max_steps=s["max_steps"],
        max_wall_time=s["max_wall_time"], space=s["space"], features_at=s["features_at"],
        weights_at=s["weights_at"] or None, options=s["options"] or None, interval=s.get("interval"),
        integrals=s.get("integrals", True),
    )
    if "auto" in s:
        again = with_auto_reason(again, s["auto"])
    if "batch" in s and s.get("step") is None and s.get("method") not in ("filippov",):  # (batch: adaptive methods)
        again = dataclasses.replace(again, message=(
            f"{again.message} [rerun alone of one seed of an adaptive simulate_batch run, whose steps its seeds "
            f"shared: it agrees with the original to the tolerance (rtol = {s['rtol']:g}), not bit for bit]"))
    return again
