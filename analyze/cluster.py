"""Where Dask runs the analysis: threads (default), a local cluster, or an existing one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dask

from sgnlake.schema.errors import ConfigError, SgnlakeError


class ClusterError(SgnlakeError):
    """The Dask cluster cannot be started or reached."""


@contextlib.contextmanager
def dask_client(
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    processes: bool = True,
    echo: Callable[[str], Any] | None = print,
    timeout: float = 30.0,
    trim_memory: bool = False,
) -> Iterator[Any]:
    """Run the enclosed Dask computations on threads, a local cluster or a remote one.

    Parameters
    ----------
    workers : int, optional
        Start a ``dask.distributed.LocalCluster`` with this many workers.
        ``None`` or ``0``: Dask's default threaded scheduler, no client.
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://host:8786``) to connect to.
        Its workers need sgnlake (``pip install 'sgnlake[analyze]'``) and access
        to the lake location.
    threads_per_worker : int
        Threads per local worker (the estimators are numpy; 1 avoids GIL contention).
    memory_limit : str, float or None
        Memory limit per local worker (``"4GiB"``, ``"auto"``: system memory / workers).
    processes : bool
        Local workers as processes (default) or as threads of this process.
    echo : callable, optional
        Where the dashboard link is printed (``None``: silent).
    timeout : float
        Seconds to wait for a remote scheduler.
    trim_memory : bool
        Start local worker processes with distributed's default
        ``MALLOC_TRIM_THRESHOLD_=65536`` (returns freed memory to the OS sooner).
        Off by default: it made the estimators 4-6x slower. Workers of a remote
        cluster started with ``dask worker`` get it unless it is configured away
        (``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null``).

    Yields
    ------
    distributed.Client or None
        The client (set as Dask's default scheduler inside the block), or None
        for the threaded scheduler.

    Raises
    ------
    ConfigError
        Both ``workers`` and ``scheduler`` given, or ``distributed`` missing.
    ClusterError
        The cluster cannot be started or the scheduler cannot be reached.
    """
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {workers}")
    if threads_per_worker < 1:
        raise ConfigError(f"--threads-per-worker must be >= 1, got {threads_per_worker}")
    if workers and scheduler:
        raise ConfigError(
            "give either --workers (a local cluster) or --scheduler (an existing one), not both"
        )
    if not workers and not scheduler:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "dask.distributed is not installed: pip install 'sgnlake[analyze]' (or drop --workers/--scheduler)"
        ) from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=timeout, set_as_default=True)
        else:
            # distributed starts worker processes with MALLOC_TRIM_THRESHOLD_=65536, which
            # turns off glibc's adaptive mmap threshold: every large numpy temporary is then
            # mmapped afresh and the estimators ran 4-6x slower (measured); leave it unset
            # unless asked for.
            trim = {} if trim_memory else {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
            with dask.config.set(trim):
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker,
                    memory_limit=memory_limit,
                    processes=processes,
                    dashboard_address=":0",
                    silence_logs=40,  # logging.ERROR
                )
            client = Client(cluster, set_as_default=True)
    except Exception as e:  # OSError, TimeoutError, "Nanny failed to start", ...
        if cluster is not None:
            cluster.close()
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ClusterError(
            f"cannot reach {where} ({msg}): check the address and that it is running"
        ) from None
    try:
        if echo is not None:
            n = len(client.scheduler_info().get("workers", {}))
            link = _dashboard(client)
            echo(f"dask: {n} workers at {client.scheduler.address}; dashboard: {link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _serves_dashboard(client: Any) -> bool | None:
    """Whether the client's scheduler serves the Bokeh dashboard (None: cannot tell).

    ``scheduler_info()['services']['dashboard']`` is no answer: a scheduler
    always runs an HTTP server (health, metrics) under that name, also when
    started with ``--no-dashboard`` or without bokeh. The dashboard itself is
    a Bokeh application mounted on that server; look for it on the scheduler
    (directly for a local cluster, else with ``run_on_scheduler``).
    """

    def probe(dask_scheduler: Any = None) -> bool:
        # nested on purpose: pickled by value, so the scheduler needs no sgnlake
        apps = getattr(getattr(dask_scheduler, "http_application", None), "applications", ())
        return any(c.__name__ == "BokehTornado" for a in apps for c in type(a).__mro__)

    local = getattr(getattr(client, "cluster", None), "scheduler", None)
    if local is not None and hasattr(local, "http_application"):
        return probe(local)
    try:
        return bool(client.run_on_scheduler(probe))
    except Exception:  # noqa: BLE001 - e.g. a scheduler that refuses pickled functions
        return None


def _dashboard(client: Any) -> str:
    """The dashboard link, or why there is none."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # pragma: no cover - depends on the cluster
        services = {}
    if "dashboard" not in services:
        return "not running"
    serves = _serves_dashboard(client)
    if serves is False:
        return "not running (scheduler started with --no-dashboard, or bokeh missing there)"
    link = str(client.dashboard_link)
    return link if serves else f"{link} (if the scheduler serves one)"
