"""Sweeps recorded in a zarr store: the same dataset as netCDF, concurrent appends lose nothing, kill + rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import gflow as gf
from gflow.sweeps import ProcessPool, SweepConfig, run_sweep, run_task
from gflow.sweeps.store import completed, open_sweep, read_run
from gflow.sweeps.run import check_format, run_file

zarr = pytest.importorskip("zarr", reason='zarr is not installed (pip install "gflow[zarr]"); CI installs it '
                           "through the test extra")

NETWORK = {"d": 5, "width": 16, "activation": "tanh"}
DATA = {"generator": "random_labels", "n_test": 10}
SOLVER = {"kind": "simulate", "t1": 2.0, "saveat": [0.0, 0.5, 1.0, 1.5, 2.0], "method": "DOP853", "rtol": 1e-8,
          "atol": 1e-10}
GRID = {"data.n": [6, 8], "network.scaling": ["ours", "ntk"]}
GD = {"kind": "gradient_descent", "steps": 20, "save_every": 5}


def _comparable(ds: xr.Dataset) -> xr.Dataset:
    """The dataset less what legitimately differs between two sweeps: wall times, the store's path, the
    manifest's stamp (the manifest names the format) and the working tree's dirty flag in the provenance (a
    file edited between the two sweeps of this module would flip it)."""
    out = ds.drop_vars("wall_time")
    out.attrs = {k: v for k, v in ds.attrs.items() if k not in ("store", "manifest_stamp")}
    if "provenance" in out.attrs:
        prov = json.loads(out.attrs["provenance"])
        if prov.get("git_revision"):
            prov["git_revision"] = prov["git_revision"].removesuffix("+dirty")
        out.attrs["provenance"] = json.dumps(prov, sort_keys=True)
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    nc = gf.sweep(NETWORK, DATA, SOLVER, GRID, 2, store=tmp_path_factory.mktemp("nc"), progress=False)
    zs = tmp_path_factory.mktemp("zarr")
    z = gf.sweep(NETWORK, DATA, SOLVER, GRID, 2, store=zs, progress=False, format="zarr")
    return nc, z, zs


def test_zarr_store_gives_the_same_dataset_as_netcdf(both):
    nc, z, store = both
    assert (store / "runs.zarr").is_dir() and (store / "sweep.zarr").is_dir() and not (store / "runs").exists()
    assert json.loads((store / "manifest.json").read_text())["format"] == "zarr"
    # the returned dataset, the consolidated sweep.zarr and the one assembled from the run groups all agree
    for ds in (z, open_sweep(store), open_sweep(store, consolidated=False)):
        xr.testing.assert_identical(_comparable(ds), _comparable(nc))
    assert set(z.device.values.tolist()) == {"cpu"} and all(z.host.values)
    # runs.zarr is one zarr hierarchy: a group per run, readable by zarr and xarray without gflow
    root = zarr.open_group(str(store / "runs.zarr"), mode="r")
    assert sorted(root.group_keys()) == sorted(z.run_id.values.tolist())
    one = xr.open_zarr(store / "runs.zarr", group=str(z.run_id.values[3]), consolidated=False)
    np.testing.assert_array_equal(one.loss.values, z.loss.values[3, : one.sizes["time"]])
    a, b = gf.run_solution(nc, 3), gf.run_solution(z, 3)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.W_final, b.W_final)  # NaN placeholders in both: weights are not kept
    assert a.status == b.status and a.config == b.config


def test_a_process_pool_appending_concurrently_loses_nothing(tmp_path):
    """Two processes append 12 runs to one zarr store at once, and race to record four of them three times
    over (as repeated runs would): every run is there exactly once, whole."""
    cfg = SweepConfig.from_dict({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD,
                                {"solver.step": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, 2)
    runs = cfg.runs()
    from gflow.sweeps import _payload
    from gflow.sweeps.store import write_manifest, grid_coords

    write_manifest(tmp_path, cfg.to_dict(), runs, grid_coords(list(cfg.grid)), "zarr")
    payloads = [_payload(r, tmp_path, 1, False, "zarr") for r in runs]
    with ProcessPool(2) as ex:
        futs = [ex.submit(run_task, p) for p in payloads + payloads[:4] + payloads[:4]]
        results = [f.result() for f in ex.as_completed(futs)]
    assert len(results) == 20 and {r["status"] for r in results} == {"success"}
    have = completed(tmp_path, fmt="zarr")
    assert sorted(have) == sorted(r.run_id for r in runs) and set(have.values()) == {"success"}
    assert not [p.name for p in (tmp_path / "runs.zarr").iterdir() if p.name.startswith(".")]  # no leftovers
    ds = open_sweep(tmp_path)
    assert (ds.status.values == "success").all() and np.isfinite(ds.loss.values).all()
    # each record is its own run: the same as that run made serially
    ref = gf.sweep({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD,
                   {"solver.step": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, 2, store=tmp_path / "ref", progress=False)
    np.testing.assert_array_equal(ds.loss.values, ref.loss.values)


def test_dask_local_cluster_appends_to_zarr_like_the_serial_sweep(both, tmp_path):
    pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "gflow[dask]")')
    nc, _, _ = both
    ds = gf.sweep(NETWORK, DATA, SOLVER, GRID, 2, store=tmp_path, executor="dask", workers=2, progress=False,
                  format="zarr")
    xr.testing.assert_identical(_comparable(ds), _comparable(nc))


def test_half_written_groups_are_ignored_and_the_rerun_records_each_run_once(tmp_path):
    cfg = SweepConfig.from_dict({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD,
                                {"solver.step": [0.1, 0.2]}, 2)
    counts: dict = {}
    run_sweep(cfg, store=tmp_path, progress=False, format="zarr", report=counts.update)
    runs = completed(tmp_path)
    assert counts["success"] == 4 and len(runs) == 4
    # a killed sweep: one run's group removed (never finished) and a half-written temporary group left behind
    import shutil

    gone = sorted(runs)[0]
    shutil.rmtree(run_file(tmp_path, gone, "zarr"))
    shutil.rmtree(tmp_path / "sweep.zarr")  # as a sweep does when it starts with runs to do
    half = tmp_path / "runs.zarr" / f".{gone}.123.abcd.tmp"
    half.mkdir()
    (half / "zarr.json").write_text("{")
    assert gone not in completed(tmp_path)
    assert open_sweep(tmp_path).status.values.tolist().count("pending") == 1
    ds = run_sweep(cfg, store=tmp_path, progress=False, report=counts.update)  # the store's format is kept
    assert counts["skipped"] == 3 and counts["success"] == 1
    assert sorted(ds.run_id.values.tolist()) == sorted(completed(tmp_path)) and (ds.status == "success").all()
    assert read_run(half) is None


def test_format_errors_are_clear(tmp_path, monkeypatch):
    gf.sweep({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD, store=tmp_path, progress=False)
    with pytest.raises(ValueError, match="format='zarr', but the store .* holds netcdf runs"):
        gf.sweep({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD, store=tmp_path, progress=False,
                 format="zarr")
    with pytest.raises(ValueError, match="format must be one of"):
        gf.sweep({"d": 5, "width": 8}, {"generator": "random_labels", "n": 6}, GD, store=tmp_path / "x",
                 progress=False, format="parquet")
    monkeypatch.setitem(__import__("sys").modules, "zarr", None)
    with pytest.raises(ImportError, match=r"gflow\[zarr\]"):
        check_format("zarr")


def test_cli_format_zarr(tmp_path, capsys):
    from gflow.cli import main

    path = tmp_path / "s.toml"
    path.write_text('seeds = 1\n[network]\nd = 5\nwidth = 8\n[data]\ngenerator = "random_labels"\nn = 6\n'
                    '[solver]\nkind = "gradient_descent"\nsteps = 10\n[grid]\n"solver.step" = [0.1, 0.2]\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--format", "zarr", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 succeeded" in out and "sweep.zarr" in out
    assert open_sweep(tmp_path / "o").sizes["run"] == 2


def test_racing_writers_of_one_group_leave_exactly_one_whole_version(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gflow.sweeps.run import write_zarr_atomic

    def version(k: int) -> xr.Dataset:
        return xr.Dataset({"loss": ("time", np.full(50, float(k)))}, coords={"time": np.arange(50.0)},
                          attrs={"sweep_status": "success", "k": k})

    targets = [tmp_path / "runs.zarr" / f"r{j}" for j in range(3)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda jk: write_zarr_atomic(version(jk[1]), targets[jk[0]]),
                      [(j, k) for k in range(8) for j in range(3)]))
    for path in targets:
        g = zarr.open_group(str(path), mode="r")
        k = g.attrs["k"]
        np.testing.assert_array_equal(g["loss"][...], np.full(50, float(k)))  # one writer's whole version
    assert sorted(p.name for p in (tmp_path / "runs.zarr").iterdir()) == ["r0", "r1", "r2"]
