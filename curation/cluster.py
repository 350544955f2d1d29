"""Dask client for every curation stage: a LocalCluster by default, ``--scheduler tcp://...`` for a cluster.

One place that knows how the stages get their workers, so every command takes the same flags
(``--scheduler ADDR`` or ``--workers N``, ``--dashboard-address``) and prints the dashboard address.
The dashboard has no login, so a LocalCluster's dashboard listens on 127.0.0.1 only unless
``--dashboard-address`` says otherwise (e.g. ``0.0.0.0:8787`` behind a firewall; ``none`` for no dashboard).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dask.distributed import Client

_LOG = logging.getLogger(__name__)
DEFAULT_DASHBOARD = "127.0.0.1:0"  # loopback, any free port
DASHBOARD_HELP = ("where a LocalCluster's Dask dashboard listens, HOST:PORT; it has no login, so the default "
                  "is loopback only, port chosen free; 'none' for no dashboard (default: 127.0.0.1:0)")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, threads_per_worker: int = 1,
                memory_limit: str | float | None = "auto", dashboard: bool = True,
                dashboard_address: str = DEFAULT_DASHBOARD) -> Iterator[Client]:
    """Yield a connected ``Client``; a LocalCluster (process workers) is created and closed here.

    Worker processes use one thread each: Dask sets ``OMP_NUM_THREADS=1`` in workers, and torch code
    run in tasks should also call ``torch.set_num_threads(1)``.
    """
    from dask.distributed import (  # here: shard --workers 0 imports this module without Dask
        Client,
        LocalCluster,
    )

    if scheduler:
        client = Client(scheduler)
        _LOG.info("connected to Dask scheduler %s (dashboard %s)", scheduler, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    address = dashboard_bind(dashboard_address) if dashboard else None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           memory_limit=memory_limit, dashboard_address=address)
    with serve_cluster(cluster, f"LocalCluster with {workers} worker(s)", announce="") as client:
        yield client


def dashboard_bind(dashboard_address: str) -> str | None:
    """The ``dashboard_address`` a cluster is given for ``--dashboard-address`` (None: 'none' or empty)."""
    return None if dashboard_address.strip().lower() in ("", "none") else dashboard_address


@contextlib.contextmanager
def serve_cluster(cluster, description: str, announce: str) -> Iterator:
    """A client on a local ``cluster`` we created: log and print its dashboard; close both at the end."""
    from dask.distributed import Client

    client = Client(cluster)
    _LOG.info("started %s; dashboard %s", description, client.dashboard_link)
    print(f"{announce}Dask dashboard: {client.dashboard_link}", flush=True)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
