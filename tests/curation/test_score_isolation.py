"""Failure isolation: one image that kills its worker costs only its own score, never its shard's.

A real 2-worker Dask LocalCluster; the test hook ``CURATION_SCORE_TEST_KILL_ON_KEY`` makes a worker SIGKILL
itself (as the kernel's OOM killer would) whenever it reaches that image, on every attempt.
"""

from __future__ import annotations

import os

import dask
import pyarrow.parquet as pq
import pytest
from dask.distributed import Client, LocalCluster
from test_score_support import Sample, encode, natural_image, write_raw_shard

from curation.score import build_settings, score_raw
from curation.scoring.shard_task import CRASH_HOOK_ENV
from curation.weights import require

CULPRIT = "s0i2"


@pytest.fixture(scope="module")
def killing_client():
    old = os.environ.get(CRASH_HOOK_ENV)
    os.environ[CRASH_HOOK_ENV] = CULPRIT  # inherited by the worker processes spawned below
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                   memory_limit="3GiB")
            with Client(cluster) as c:
                yield c
            cluster.close()
    finally:
        if old is None:
            os.environ.pop(CRASH_HOOK_ENV, None)
        else:
            os.environ[CRASH_HOOK_ENV] = old


@pytest.mark.integration
def test_worker_killing_image_gets_failed_oom_and_the_others_keep_their_scores(killing_client, tmp_path):
    samples = [Sample(f"s0i{i}", encode(natural_image((128, 112), seed=i))) for i in range(5)]
    samples.append(Sample("s0fail", None, status="failed_to_download", error_message="connection refused"))
    write_raw_shard(tmp_path / "raw", "00000", samples)
    metrics = ("niqe", "brisque")
    summary = score_raw(tmp_path / "raw", tmp_path / "scores", build_settings(metrics, require(metrics)),
                        killing_client, retries=0)
    assert summary.shards_written == 1 and not summary.shards_failed
    rows = {r["key"]: r for r in pq.read_table(tmp_path / "scores" / "00000.parquet").to_pylist()}
    assert len(rows) == 6
    assert rows[CULPRIT]["status"] == "failed_oom" and "memory" in rows[CULPRIT]["error"]
    assert rows[CULPRIT]["niqe"] is None
    for key in ("s0i0", "s0i1", "s0i3", "s0i4"):
        assert rows[key]["status"] == "ok" and rows[key]["niqe"] is not None and rows[key]["brisque"] is not None
    assert rows["s0fail"]["status"] == "download_failed"
    assert summary.statuses == {"ok": 4, "failed_oom": 1, "download_failed": 1}
