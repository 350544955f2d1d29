"""Where ``curation.score --device cuda`` runs: one GPU worker per GPU, and tasks that need one.

- Without ``--scheduler``: dask-cuda's ``LocalCUDACluster`` when it is importable (one worker process per
  visible GPU, each pinned to its own device; dask-cuda is optional, not a dependency), else a LocalCluster
  of ``--workers`` processes that all use the first GPU.
- With ``--scheduler``: tasks ask for the worker resource ``GPU=1``, so they run only on workers started
  with ``dask worker --resources GPU=1`` or ``dask cuda worker --resources GPU=1`` (README: multi-node).

On a GPU worker the fast engine queues decoded images by size and scores each size bucket with the
batched torch kernels (:mod:`curation.scoring.batched`) on the GPU, and NIMA in batches; decoding stays
on the worker's CPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator

from dask.distributed import Client, LocalCluster

from curation.cluster import DEFAULT_DASHBOARD, dashboard_bind, serve_cluster

_LOG = logging.getLogger(__name__)
GPU_RESOURCE = "GPU"


def has_dask_cuda() -> bool:
    return importlib.util.find_spec("dask_cuda") is not None


def task_resources(device: str, scheduler: str | None) -> dict[str, float] | None:
    """Dask resources for a scoring task: ``{"GPU": 1}`` on a ``--scheduler`` cluster with ``--device cuda``."""
    return {GPU_RESOURCE: 1} if device.startswith("cuda") and scheduler else None


@contextlib.contextmanager
def cuda_local_client(workers: int, dashboard_address: str = DEFAULT_DASHBOARD) -> Iterator[Client]:
    """A local cluster for ``--device cuda``: LocalCUDACluster (one worker per GPU) if dask-cuda is installed.

    The dashboard binds where ``--dashboard-address`` says (loopback by default, like every stage).
    """
    address = dashboard_bind(dashboard_address)
    if has_dask_cuda():
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(threads_per_worker=1, dashboard_address=address)
        kind = "LocalCUDACluster (one worker per GPU)"
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=address)
        kind = f"LocalCluster ({workers} worker(s) sharing the first GPU; install dask-cuda for one per GPU)"
    with serve_cluster(cluster, kind, announce=f"{kind}; ") as client:
        yield client
