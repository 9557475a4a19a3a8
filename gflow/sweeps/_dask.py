"""Dask pieces that import ``distributed`` (imported only when the Dask executor is used)."""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .executors import pin_worker


class PinDevice(WorkerPlugin):
    """Pins worker ``name`` i (a ``LocalCluster`` names its workers 0, 1, ...) to ``devices[i mod len(devices)]``
    (:func:`gflow.sweeps.executors.pin_worker`); a restarted worker keeps its name, so its device."""

    idempotent = True
    name = "gflow-pin-device"

    def __init__(self, devices: list):
        self.devices = list(devices)

    def setup(self, worker) -> None:
        try:
            i = int(worker.name)
        except (TypeError, ValueError):
            i = sum(map(ord, str(worker.name)))
        pin_worker(self.devices[i % len(self.devices)])


class TanhRoute(WorkerPlugin):
    """Fixes the float64 tanh route of a local worker to the client's
    (:func:`gflow.model.activations.float64_tanh_route`): timed in each worker, load could flip it."""

    idempotent = True
    name = "gflow-tanh-route"

    def __init__(self, route: str):
        self.route = route

    def setup(self, worker) -> None:
        from ..model.activations import set_float64_tanh_route

        set_float64_tanh_route(self.route)


__all__ = ["PinDevice", "TanhRoute"]
