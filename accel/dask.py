"""``accel.dask``, the first home of :mod:`accel.contrib.dask`: the same names."""

from accel.contrib.dask import Result, download_all

__all__ = ["Result", "download_all"]
