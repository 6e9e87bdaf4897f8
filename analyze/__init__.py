"""Offline analysis of an SGN lake with xarray and Dask (never imports torch).

Open a lake lazily, select SGN, compute and store per-parameter tail indices,
and aggregate them per layer::

    from sgnlake.analyze import open_lake
    lake = open_lake("lake/")                  # reads metadata only
    lake.runs                                  # one row per run
    lake.compute_alpha(estimator="mohammadi")  # stored under results/<run>/<key>/
    alpha = lake.alpha("lenet-b50")            # lazy (iteration, param) over all tensors
    lake.summary(by="module")                  # long DataFrame for figures

Run on a local or remote Dask cluster with :func:`dask_client`.
"""

from .cluster import dask_client
from .lake import CONFIG_COLUMNS, Lake, SelectionError, open_lake
from .results import ComputeReport, RunResult
from .summary import GROUPINGS, SUMMARY_COLUMNS

__all__ = [
    "CONFIG_COLUMNS",
    "GROUPINGS",
    "SUMMARY_COLUMNS",
    "ComputeReport",
    "Lake",
    "RunResult",
    "SelectionError",
    "dask_client",
    "open_lake",
]
