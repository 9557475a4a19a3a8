"""Fast reading and writing of gflow's netCDF-4 files through h5py, in the layout h5netcdf gives them.

``xarray.Dataset.to_netcdf(engine="h5netcdf")`` spent ~120 ms on a small Solution (33 variables) where h5py
writes the same arrays in ~5 ms: h5netcdf looks each HDF5 object up by name again and again while it creates a
variable.  Reading is worse where a file holds many groups (an experiment's ``runs.nc``, one group per run):
h5netcdf names the dimension scale behind each of a variable's dimension references with ``H5Iget_name``, which
searches the file from its root, so that a file of N runs took O(N²) (120 runs: 63 s to load).

Here the netCDF-4 conventions (HDF5 dimension scales, ``_Netcdf4Dimid``, ``_Netcdf4Coordinates``, ``_FillValue``,
hidden dimensions named "This is a netCDF dimension but not a netCDF variable.") are written directly with h5py,
object by object as h5netcdf writes them, and read back by matching references to the group's own scales.  Only
the plain datasets gflow writes take this path: numeric variables without attributes or encodings, index
coordinates only, string and number attributes.  Anything else raises :class:`Unsupported` *before* a file is
touched, and the callers then go through xarray as before; the readers likewise fall back to
``xarray.open_dataset`` for any file they do not recognise.  ``xarray.open_dataset(engine="h5netcdf")`` reads
what these writers write identically to what ``to_netcdf`` wrote (tests/test_netcdf_fast.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."
#: attributes of the netCDF-4/HDF5 machinery, never user attributes (h5netcdf hides the same)
_HIDDEN = frozenset(["REFERENCE_LIST", "CLASS", "DIMENSION_LIST", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
                     "_nc3_strict", "_NCProperties"])
_DTYPES = frozenset(np.dtype(t) for t in ("f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"))


class Unsupported(Exception):
    """The fast path does not handle this dataset or file; use xarray's reader or writer instead."""


# ---------------------------------------------------------------------------------------------------------
# writing


def _attr_value(key: str, value: Any) -> Any:
    """An attribute value as h5netcdf stores it (number scalars as 1-element arrays), or Unsupported."""
    if not isinstance(key, str) or not key or key in _HIDDEN or key.startswith("_"):
        raise Unsupported(f"attribute name {key!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise Unsupported("bool attribute")
    if isinstance(value, (int, float, np.integer, np.floating)):
        arr = np.atleast_1d(np.asarray(value))
    elif isinstance(value, np.ndarray) and value.ndim == 1 and value.size:
        arr = value
    else:
        raise Unsupported(f"attribute {key!r} of type {type(value).__name__}")
    if arr.dtype not in _DTYPES:
        raise Unsupported(f"attribute {key!r} of dtype {arr.dtype}")
    return arr


class _Plan:
    """What one Dataset becomes: its dimensions in order (size, coordinate variable or None), its other variables,
    its attributes; built (and checked) before anything is written."""

    def __init__(self, ds):
        if ds.encoding.get("unlimited_dims"):
            raise Unsupported("unlimited dimensions")
        self.attrs = {k: _attr_value(k, v) for k, v in ds.attrs.items()}
        dims: dict[str, int] = {}
        for name, var in ds.variables.items():
            if not isinstance(name, str) or not name or "/" in name or name.startswith("_"):
                raise Unsupported(f"variable name {name!r}")
            if var.attrs or var.encoding:
                raise Unsupported(f"variable {name!r} has attributes or an encoding")
            if var.ndim == 0:
                raise Unsupported(f"scalar variable {name!r}")
            if var.dtype not in _DTYPES:
                raise Unsupported(f"variable {name!r} of dtype {var.dtype}")
            for d, n in zip(var.dims, var.shape):
                if not isinstance(d, str) or not d or "/" in d or d.startswith("_"):
                    raise Unsupported(f"dimension name {d!r}")
                dims.setdefault(d, int(n))
        coords = set(ds.coords)
        for name, var in ds.variables.items():
            if (name in coords) != (name in dims) or (name in dims and var.dims != (name,)):
                raise Unsupported(f"{name!r} is not an index coordinate (or one named as a dimension)")
        self.dims = [(d, n, ds.variables[d] if d in ds.variables else None) for d, n in dims.items()]
        self.variables = [(k, v) for k, v in ds.variables.items() if k not in dims]


def _chunks(shape: tuple, dtype) -> tuple | None:
    """h5netcdf's chunks for a variable over a size-0 (hence unlimited) dimension; None (contiguous) otherwise."""
    if 0 not in shape:
        return None
    try:
        from h5netcdf.core import _get_default_chunksizes
    except ImportError as exc:  # pragma: no cover - an h5netcdf without it: xarray writes this one
        raise Unsupported("no h5netcdf chunk heuristic") from exc
    return tuple(int(c) for c in _get_default_chunksizes(shape, dtype))


def _create(group, name: str, data: np.ndarray, dims_of_var: tuple, sizes: dict) -> Any:
    """One HDF5 dataset holding a netCDF variable (contiguous; chunked and extendible along size-0 dimensions),
    with the fill value xarray gives floats (NaN) and no other."""
    shape = data.shape
    kwargs: dict = {"track_order": True}
    chunks = _chunks(shape, data.dtype)
    if chunks is not None:
        kwargs["chunks"] = chunks
        kwargs["maxshape"] = tuple(None if sizes[d] == 0 else n for d, n in zip(dims_of_var, shape))
    if data.dtype.kind == "f":
        kwargs["fillvalue"] = data.dtype.type(np.nan)
    if data.size:
        return group.create_dataset(name, data=np.ascontiguousarray(data), **kwargs)
    return group.create_dataset(name, shape=shape, dtype=data.dtype, **kwargs)


def _write(group, plan: _Plan, next_dimid: list) -> None:
    """Write a planned Dataset into the (empty) h5py group ``group``; ``next_dimid[0]``: the file's next
    dimension id (netCDF-4 numbers dimensions across the whole file)."""
    for k, v in plan.attrs.items():
        group.attrs[k] = v
    sizes = {d: n for d, n, _ in plan.dims}
    scales: dict[str, tuple] = {}
    for d, n, coord in plan.dims:
        dimid = np.int32(next_dimid[0])
        next_dimid[0] += 1
        if coord is None:  # a dimension without a coordinate variable: an empty float scale, as netCDF-C makes it
            kwargs: dict = {"track_order": True}
            if n == 0:
                kwargs["maxshape"] = (None,)
            ds = group.create_dataset(d, shape=(n,), dtype=">f4", **kwargs)
            ds.attrs["_Netcdf4Dimid"] = dimid
            ds.make_scale(NOT_A_VARIABLE + f"{n:10}".encode("ascii"))
        else:
            data = np.asarray(coord.values)
            ds = _create(group, d, data, (d,), sizes)
            ds.attrs["_Netcdf4Dimid"] = dimid
            ds.make_scale(d)
            ds.attrs["_Netcdf4Coordinates"] = np.array([dimid], "int32")
            if data.dtype.kind == "f":
                ds.attrs["_FillValue"] = np.array([np.nan], data.dtype)
        scales[d] = (ds, dimid)
    for name, var in plan.variables:
        data = np.asarray(var.values)
        ds = _create(group, name, data, var.dims, sizes)
        for axis, d in enumerate(var.dims):
            ds.dims[axis].attach_scale(scales[d][0])
        ds.attrs["_Netcdf4Coordinates"] = np.array([scales[d][1] for d in var.dims], "int32")
        if sizes[var.dims[0]] != 0:  # (h5netcdf, after netCDF-C: the first dimension's id, unless unlimited)
            ds.attrs["_Netcdf4Dimid"] = scales[var.dims[0]][1]
        if data.dtype.kind == "f":
            ds.attrs["_FillValue"] = np.array([np.nan], data.dtype)


def _new_file(path: Path):
    """A new (truncated) netCDF-4 file as h5netcdf creates one: creation order tracked, ``_NCProperties``."""
    import h5py

    from . import __version__

    f = h5py.File(path, "w", track_order=True)
    props = f"version=2,gflow={__version__},hdf5={h5py.version.hdf5_version},h5py={h5py.__version__}"
    f.attrs["_NCProperties"] = np.array(props, dtype=h5py.string_dtype("ascii", len(props)))
    return f


def write_file(path: str | Path, ds) -> None:
    """Write the xarray Dataset ``ds`` as the netCDF-4 file ``path`` (replaced).  Raises :class:`Unsupported`,
    before ``path`` is touched, for a dataset that only xarray's writer handles."""
    plan = _Plan(ds)
    with _new_file(Path(path)) as f:
        _write(f, plan, [0])


def write_groups(path: str | Path, datasets: dict) -> None:
    """Write a netCDF-4 file ``path`` (replaced) with an empty root and one group per ``{name: Dataset}``, through
    one file handle.  Raises :class:`Unsupported`, before ``path`` is touched, if any dataset needs xarray."""
    plans = {}
    for name, ds in datasets.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise Unsupported(f"group name {name!r}")
        plans[name] = _Plan(ds)
    with _new_file(Path(path)) as f:
        next_dimid = [0]
        for name, plan in plans.items():
            _write(f.create_group(name, track_order=True), plan, next_dimid)


# ---------------------------------------------------------------------------------------------------------
# reading


def _attrs(h5attrs) -> dict:
    """User attributes as ``xarray.open_dataset(engine="h5netcdf")`` gives them (h5netcdf's decoding, then
    xarray's: bytes decoded as UTF-8 except fill values)."""
    import h5py
    from h5netcdf.attrs import Attributes

    out = {}
    for k, v in Attributes(h5attrs, None, h5py).items():
        if k not in ("_FillValue", "missing_value") and isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise Unsupported(f"attribute {k!r} is not UTF-8") from None
        out[k] = v
    return out


def read_group(group):
    """The h5py group ``group`` of a netCDF-4 file as the xarray Dataset that
    ``xarray.open_dataset(file, engine="h5netcdf", group=...).load()`` gives (values, dtypes, dimensions,
    coordinates, attributes; not the encoding); :class:`Unsupported` for a layout this reader does not know
    (user types, dimensions of a parent group, unlabelled dimensions, non-numeric variables)."""
    import h5py
    import xarray as xr

    scales: dict = {}  # h5py object id -> dimension name
    datasets = []
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            continue
        if not isinstance(obj, h5py.Dataset):
            raise Unsupported(f"{name!r} is not a dataset or a group")
        if "_nc4_non_coord_" in name:
            raise Unsupported(f"variable {name!r}")
        scale = h5py.h5ds.is_scale(obj.id)
        if scale:
            if obj.ndim != 1:
                raise Unsupported(f"multi-dimensional coordinate {name!r}")
            scales[obj.id] = name
            if NOT_A_VARIABLE in obj.attrs.get("NAME", b""):
                continue
        datasets.append((name, obj, scale))
    variables = {}
    deref = group.file
    for name, obj, scale in datasets:
        if obj.dtype not in _DTYPES or h5py.check_enum_dtype(obj.dtype) is not None:
            raise Unsupported(f"variable {name!r} of dtype {obj.dtype}")
        if scale:
            dims: tuple = (name,)
        elif obj.ndim == 0:
            if "DIMENSION_LIST" in obj.attrs:
                raise Unsupported(f"scalar {name!r} with dimensions")
            dims = ()
        else:
            refs = obj.attrs.get("DIMENSION_LIST")
            if refs is None or len(refs) != obj.ndim or any(len(r) == 0 for r in refs):
                raise Unsupported(f"variable {name!r} without a dimension scale on every axis")
            try:
                dims = tuple(scales[deref[r[-1]].id] for r in refs)
            except KeyError:
                raise Unsupported(f"variable {name!r} has a dimension outside its group") from None
        variables[name] = xr.Variable(dims, obj[()], _attrs(obj.attrs))
    return xr.decode_cf(xr.Dataset(variables, attrs=_attrs(group.attrs)))


def read_file(path: str | Path, group: str | None = None):
    """The (loaded) Dataset at ``group`` (None: the root) of the netCDF-4 file ``path``, as :func:`read_group`."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f if group is None else f[group]
        if not isinstance(g, h5py.Group):
            raise Unsupported(f"{group!r} is not a group")
        return read_group(g)


__all__ = ["Unsupported", "write_file", "write_groups", "read_group", "read_file"]
