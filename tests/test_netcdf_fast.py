"""The h5py writer and reader of gflow's netCDF-4 files (gflow/_netcdf.py) against xarray's.

An audit: ``Solution.save`` (and a sweep's per-run record) spent ~120 ms in h5netcdf's dimension-scale bookkeeping
for a 33-variable run that h5py writes in ~5 ms, and an experiment's ``runs.nc`` (one group per run) took O(N²)
to write and read (120 runs: 46 s / 63 s).  What the fast writer writes must be what xarray's ``to_netcdf`` wrote:
the same HDF5 objects and netCDF attributes, and ``xarray.open_dataset(engine="h5netcdf")`` must read it back
identically (values, dtypes, attributes and their types, coordinates); the fast reader must give what
``xarray.open_dataset`` gives, for files written either way, and hand everything else to xarray.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr

import gflow as gf
from gflow import _netcdf
from gflow.experiments import Run, load_runs, save_runs
from gflow.solution import Solution

D_IN = 4


def _flow(**kw) -> gf.Solution:
    X, y = gf.data.random_labels(n=8, d=D_IN, seed=0)
    X_test, y_test = gf.data.wei2019(n=5, d=D_IN, seed=1)
    args = dict(t1=5.0, saveat=np.linspace(0.0, 5.0, 11), X_test=X_test, y_test=y_test, features_at="all",
                weights_at=[1.0, 5.0])
    args.update(kw)
    return gf.simulate(gf.Network(d=D_IN, width=6, seed=3), X, y, **args)


def _gd() -> gf.Solution:
    X, y = gf.data.random_labels(n=8, d=D_IN, seed=0)
    return gf.gradient_descent(gf.Network(d=D_IN, width=6, seed=3), X, y, step=0.5, steps=20, save_every=5,
                               features_at=[0.0, 5.0], weights_at=[2.5])


@pytest.fixture(scope="module")
def solutions() -> dict:
    X, y = gf.data.random_labels(n=8, d=D_IN, seed=0)
    bare = gf.simulate(gf.Network(d=D_IN, width=6, seed=3), X, y, t1=1.0)  # no test data, no kept W: weight_time 0
    return {"flow": _flow(), "gd": _gd(), "bare": bare,
            "failed": _flow(t1=1000.0, saveat=None, max_steps=20, warn=False)}


def _datasets(solutions) -> dict:
    out = {}
    for name, sol in solutions.items():
        out[name] = sol.to_xarray()
        out[name + "-noweights"] = sol.to_xarray(include_weights=False)
    record = solutions["flow"].to_xarray(include_weights=False)  # a sweep's record: more attributes of all kinds
    record.attrs.update({"sweep_run_id": "r0007", "sweep_index": np.int64(7), "sweep_wall_time": 1.25,
                         "sweep_point": json.dumps({"data.n": 8}), "unicode": "λ ≥ 0 — ü", "vec": np.arange(3.0)})
    out["record"] = record
    out["error-record"] = xr.Dataset(coords={"time": np.zeros(0)},  # a sweep's record of a run that raised
                                     attrs={"status": "error", "message": "Traceback ...", "sweep_status": "error"})
    out["numeric"] = xr.Dataset(  # every dtype the fast path takes, and a variable over a size-0 dimension
        {"f4": (("a", "b"), np.arange(6, dtype="f4").reshape(2, 3)), "i4": ("b", np.array([1, -2, 3], "i4")),
         "u1": ("a", np.array([0, 255], "u1")), "i8": ("a", np.array([2**40, -1])),
         "empty": (("a", "z"), np.zeros((2, 0))), "none": (("w", "b"), np.zeros((0, 3), "f4")),
         "nan": ("b", np.array([np.nan, 1.0, np.inf]))},
        coords={"a": np.array([10, 20], "i2"), "z": np.zeros(0)}, attrs={"f": np.float32(0.5), "i": 3})
    return out


def _read_xarray(path, group=None) -> xr.Dataset:
    with xr.open_dataset(path, engine="h5netcdf", group=group) as ds:
        return ds.load()


def assert_same_dataset(a: xr.Dataset, b: xr.Dataset) -> None:
    """Identical, and with the same dtypes and the same attribute types (np.int64 is not int)."""
    xr.testing.assert_identical(a, b)
    assert set(a.coords) == set(b.coords) and dict(a.sizes) == dict(b.sizes)
    for k in a.variables:
        assert a[k].dtype == b[k].dtype, k
    for k in a.attrs:
        assert type(a.attrs[k]) is type(b.attrs[k]), (k, type(a.attrs[k]), type(b.attrs[k]))


def _structure(path) -> dict:
    """Every HDF5 object of a file with what netCDF-4 readers see of it: shape, dtype, extent, chunks, fill value,
    and every attribute (the dimension-scale references as the names they point to; the file's _NCProperties,
    which names the writer, left out)."""
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(obj) -> dict:
            d = {}
            for k in obj.attrs:
                if k == "_NCProperties":
                    continue
                v = obj.attrs[k]
                if k == "DIMENSION_LIST":
                    v = [[f[r].name for r in refs] for refs in v]
                elif k == "REFERENCE_LIST":
                    v = sorted((f[r].name, int(i)) for r, i in v)
                elif isinstance(v, np.ndarray):
                    v = (v.dtype.str, v.shape, repr(v.tolist()))
                else:
                    v = (type(v).__name__, repr(v))
                t = obj.attrs.get_id(k).get_type()
                d[k] = (v, type(t).__name__, t.get_size())
            return d

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.shape, obj.dtype.str, obj.maxshape, obj.chunks, repr(obj.fillvalue), attrs(obj))
            else:
                out[name] = ("group", attrs(obj))

        out["/"] = attrs(f)
        f.visititems(visit)
    return out


# ---------------------------------------------------------------------------------------------------------
# writing


def test_gflows_datasets_take_the_fast_path(solutions):
    # (a silent fallback to xarray would keep the tests below green and the saves slow)
    for name, ds in _datasets(solutions).items():
        _netcdf._Plan(ds)  # raises Unsupported for a dataset the fast writer leaves to xarray


def test_the_fast_writer_writes_the_objects_and_attributes_xarrays_writer_writes(solutions, tmp_path):
    for name, ds in _datasets(solutions).items():
        fast, slow = tmp_path / f"{name}-fast.nc", tmp_path / f"{name}-xarray.nc"
        _netcdf.write_file(fast, ds)
        ds.to_netcdf(slow, engine="h5netcdf")
        assert _structure(fast) == _structure(slow), name


def test_xarray_reads_the_fast_writers_file_as_it_reads_its_own(solutions, tmp_path):
    for name, ds in _datasets(solutions).items():
        fast, slow = tmp_path / f"{name}-fast.nc", tmp_path / f"{name}-xarray.nc"
        _netcdf.write_file(fast, ds)
        ds.to_netcdf(slow, engine="h5netcdf")
        back = _read_xarray(fast)
        assert_same_dataset(back, _read_xarray(slow))
        xr.testing.assert_identical(back, ds)


def test_save_and_load_round_trip_every_solution_and_the_file_loads_through_xarray_too(solutions, tmp_path):
    for name, sol in solutions.items():
        path = sol.save(tmp_path / f"{name}.nc")
        loaded, via_xarray = gf.load(path), Solution.from_dataset(_read_xarray(path), path)
        for other in (loaded, via_xarray):
            for field in ("t", "loss", "output", "X", "y", "c", "W_final", "W", "H", "test_output", "weight_t",
                          "feature_t"):
                x, y = getattr(sol, field), getattr(other, field)
                assert (x is None) == (y is None), (name, field)
                if x is not None:
                    np.testing.assert_array_equal(x, y, err_msg=f"{name}.{field}")
                    assert np.asarray(x).dtype == np.asarray(y).dtype, (name, field)
            assert (other.status, other.message, other.stats, other.config) == (sol.status, sol.message,
                                                                                sol.stats, sol.config)


def test_a_dataset_the_fast_writer_does_not_take_is_written_by_xarray_and_nothing_is_touched_first(tmp_path):
    base = xr.Dataset({"x": ("t", np.arange(3.0))}, coords={"t": np.arange(3.0)})
    odd = {
        "string variable": base.assign(s=("t", np.array(["a", "b", "c"]))),
        "variable attributes": base.assign(v=("t", np.ones(3), {"units": "s"})),
        "non-index coordinate": base.assign_coords(lab=("t", np.arange(3.0))),
        "list attribute": base.assign_attrs(values=[1, 2]),
        "bool variable": base.assign(b=("t", np.array([True, False, True]))),
        "scalar variable": base.assign(s=((), 1.0)),
        "encoding": base.assign(x=base.x.copy()).pipe(lambda d: (d.x.encoding.update(dtype="f4"), d)[1]),
    }
    for what, ds in odd.items():
        path = tmp_path / f"{what}.nc"
        with pytest.raises(_netcdf.Unsupported):
            _netcdf.write_file(path, ds)
        assert not path.exists(), what
        gf.solution.to_netcdf(ds, path)  # the writer of Solution.save: xarray's, for these
        with xr.open_dataset(path, engine="h5netcdf") as back:
            xr.testing.assert_identical(back.load(), _read_xarray_written(ds, tmp_path / f"{what}-x.nc"))
    with pytest.raises(_netcdf.Unsupported):  # a bool attribute: xarray refuses it, as it did
        _netcdf.write_file(tmp_path / "flag.nc", base.assign_attrs(flag=True))
    with pytest.raises(Exception, match="boolean"):
        gf.solution.to_netcdf(base.assign_attrs(flag=True), tmp_path / "flag.nc")


def _read_xarray_written(ds, path) -> xr.Dataset:
    ds.to_netcdf(path, engine="h5netcdf")
    return _read_xarray(path)


# ---------------------------------------------------------------------------------------------------------
# reading


def test_the_fast_reader_gives_what_xarray_gives_for_files_written_either_way(solutions, tmp_path):
    for name, ds in _datasets(solutions).items():
        fast, slow = tmp_path / f"{name}-fast.nc", tmp_path / f"{name}-xarray.nc"
        _netcdf.write_file(fast, ds)
        ds.to_netcdf(slow, engine="h5netcdf")  # (every file gflow wrote before this reader)
        for path in (fast, slow):
            assert_same_dataset(_netcdf.read_file(path), _read_xarray(path))


def test_the_fast_reader_leaves_other_layouts_to_xarray(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:  # HDF5 without dimension scales (xarray names them phony_dim_*)
        f["a"] = np.arange(4.0)
    with pytest.raises(_netcdf.Unsupported):
        _netcdf.read_file(path)
    strings = tmp_path / "strings.nc"
    xr.Dataset({"s": ("t", np.array(["a", "b"]))}).to_netcdf(strings, engine="h5netcdf")
    with pytest.raises(_netcdf.Unsupported):
        _netcdf.read_file(strings)


# ---------------------------------------------------------------------------------------------------------
# experiment files (one group per run)


def _runs(solutions) -> list[Run]:
    return [Run({"name": name, "k": k}, sol) for k, (name, sol) in enumerate(solutions.items())]


def _old_save_runs(path, runs, **attrs) -> None:
    """The runs.nc that gflow wrote before the fast writer: one ``to_netcdf(mode="a")`` per run."""
    xr.Dataset().to_netcdf(path, engine="h5netcdf")
    for i, run in enumerate(runs):
        ds = run.solution.to_xarray(include_weights=False)
        ds.attrs["labels"] = json.dumps(run.labels)
        ds.to_netcdf(path, mode="a", group=f"run{i:03d}", engine="h5netcdf")
    with h5py.File(path, "a") as fh:
        for k, v in attrs.items():
            fh.attrs[k] = v


def _assert_same_runs(a: list[Run], b: list[Run]) -> None:
    assert [r.labels for r in a] == [r.labels for r in b]
    for x, y in zip(a, b):
        for field in ("t", "loss", "output", "X", "y", "c", "H", "test_output", "weight_t", "feature_t"):
            u, v = getattr(x.solution, field), getattr(y.solution, field)
            assert (u is None) == (v is None), field
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=field)
        assert (x.solution.status, x.solution.config) == (y.solution.status, y.solution.config)


def test_save_runs_then_load_runs_round_trips_and_each_group_reads_through_xarray(solutions, tmp_path):
    runs = _runs(solutions)
    path = save_runs(tmp_path / "runs.nc", runs, experiment="exp1", preset="tiny", config={"a": 1})
    attrs, back = load_runs(path)
    assert attrs["gflow_experiment"] == "exp1" and attrs["n_runs"] == len(runs) and attrs["config"] == {"a": 1}
    _assert_same_runs(runs, back)
    # what the fast writer wrote reads through the old path (xarray, group by group) identically
    old_way = [Solution.from_dataset(_read_xarray(path, f"run{i:03d}"), path) for i in range(len(runs))]
    _assert_same_runs(runs, [Run(json.loads(s.extra_attrs["labels"]), s) for s in old_way])
    for i in range(len(runs)):
        assert_same_dataset(_netcdf.read_file(path, f"run{i:03d}"), _read_xarray(path, f"run{i:03d}"))
    # netCDF-4 numbers dimensions across the whole file: no id twice
    with h5py.File(path, "r") as f:
        ids = [int(f[g][d].attrs["_Netcdf4Dimid"]) for g in f for d in f[g] if h5py.h5ds.is_scale(f[g][d].id)]
    assert len(ids) == len(set(ids))


def test_an_experiment_file_written_before_loads_as_it_did(solutions, tmp_path):
    runs = _runs(solutions)
    path = tmp_path / "old-runs.nc"
    _old_save_runs(path, runs, gflow_experiment="exp2", preset="tiny", config=json.dumps({}), n_runs=len(runs))
    attrs, back = load_runs(path)
    assert attrs["gflow_experiment"] == "exp2" and attrs["n_runs"] == len(runs)
    _assert_same_runs(runs, back)
    _assert_same_runs(back, [Run(r.labels, gf.load(path, group=f"run{i:03d}")) for i, r in enumerate(runs)])


def test_save_runs_keeps_the_extra_groups_of_also_and_load_runs_reads_a_group_of_another_layout(solutions,
                                                                                                tmp_path):
    runs = _runs(solutions)[:2]

    def scatter(file):
        xr.Dataset({"h": (("run", "p"), np.ones((2, 3)))}).to_netcdf(file, mode="a", group="scatter",
                                                                      engine="h5netcdf")

    path = save_runs(tmp_path / "runs.nc", runs, experiment="exp3", preset="tiny", config={}, also=scatter)
    np.testing.assert_array_equal(_read_xarray(path, "scatter")["h"], np.ones((2, 3)))
    _assert_same_runs(runs, load_runs(path)[1])
    # a run group the fast reader does not take (a string variable added by hand) loads through xarray
    with xr.open_dataset(path, engine="h5netcdf", group="run001") as ds:
        odd = ds.load().assign(note=("time", np.array(["x"] * ds.sizes["time"])))
    odd.to_netcdf(path, mode="a", group="run002", engine="h5netcdf")
    with h5py.File(path, "r") as f:
        with pytest.raises(_netcdf.Unsupported):
            _netcdf.read_group(f["run002"])
    attrs, back = load_runs(path)
    assert len(back) == 3
    _assert_same_runs([runs[0], runs[1], runs[1]], back)
