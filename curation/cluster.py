"""Dask client for every curation stage: a LocalCluster by default, ``--scheduler tcp://...`` for a cluster.

One place that knows how the stages get their workers, so every command takes the same two flags
(``--scheduler ADDR`` or ``--workers N``) and prints the dashboard address.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from dask.distributed import Client, LocalCluster

_LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2, threads_per_worker: int = 1,
                memory_limit: str | float | None = "auto", dashboard: bool = True) -> Iterator[Client]:
    """Yield a connected ``Client``; a LocalCluster (process workers) is created and closed here.

    Worker processes use one thread each: Dask sets ``OMP_NUM_THREADS=1`` in workers, and torch code
    run in tasks should also call ``torch.set_num_threads(1)``.
    """
    if scheduler:
        client = Client(scheduler)
        _LOG.info("connected to Dask scheduler %s (dashboard %s)", scheduler, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           memory_limit=memory_limit, dashboard_address=":0" if dashboard else None)
    client = Client(cluster)
    _LOG.info("started LocalCluster with %d worker(s); dashboard %s", workers, client.dashboard_link)
    print(f"Dask dashboard: {client.dashboard_link}", flush=True)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
