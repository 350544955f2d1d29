"""The --device cuda code path on a machine without a GPU: import-safe, and GPU-resource tasks really run.

No GPU is needed: a CPU LocalCluster whose workers declare the resource ``GPU=1`` stands in for
``dask worker --resources GPU=1``; the tasks carry the same resource request as on a GPU cluster.
"""

from __future__ import annotations

import pyarrow.parquet as pq
from dask.distributed import Client, LocalCluster
from test_score_support import Sample, encode, natural_image, write_raw_shard

from curation.score import build_settings, score_raw
from curation.scoring import gpu
from curation.weights import require


def test_task_resources_only_for_cuda_on_a_scheduler():
    assert gpu.task_resources("cuda", "tcp://h:8786") == {"GPU": 1}
    assert gpu.task_resources("cuda:0", None) is None  # local: LocalCUDACluster / LocalCluster, no resource
    assert gpu.task_resources("cpu", "tcp://h:8786") is None
    assert isinstance(gpu.has_dask_cuda(), bool)  # optional dependency: probing never raises


def test_gpu_resource_tasks_run_on_gpu_workers(tmp_path):
    write_raw_shard(tmp_path / "raw", "00000", [Sample(f"k{i}", encode(natural_image((128, 112), seed=i))) for i in range(2)])
    metrics = ("niqe", "brisque")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      resources={"GPU": 1}) as cluster, Client(cluster) as client:
        summary = score_raw(tmp_path / "raw", tmp_path / "scores", build_settings(metrics, require(metrics)),
                            client, resources=gpu.task_resources("cuda", cluster.scheduler_address))
    assert summary.shards_written == 1 and summary.statuses == {"ok": 2}
    assert pq.read_table(tmp_path / "scores" / "00000.parquet").num_rows == 2
