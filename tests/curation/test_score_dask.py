"""curation.score through a real 2-worker Dask LocalCluster: complete, duplicate-free, resumable, survives a killed worker."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask.distributed import Client, LocalCluster
from test_score_support import Sample, encode, natural_image, write_raw_shard

from curation.score import build_settings, score_raw
from curation.score import main as score_main
from curation.scoring.shard_task import read_score_metadata
from curation.weights import require


def _make_raw(raw_dir, n_shards: int, per_shard: int, size=(128, 112)) -> int:
    for s in range(n_shards):
        samples = [Sample(f"s{s}i{i}", encode(natural_image(size, seed=10 * s + i))) for i in range(per_shard)]
        samples.append(Sample(f"s{s}fail", None, status="failed_to_download", error_message="connection refused"))
        write_raw_shard(raw_dir, f"{s:05d}", samples)
    return n_shards * (per_shard + 1)


def _read_all(out_dir) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(out_dir.glob("[0-9]*.parquet"))])


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit="3GiB")
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_two_workers_score_every_row_once_and_rerun_skips(client, tmp_path, capsys):
    expected_rows = _make_raw(tmp_path / "raw", n_shards=4, per_shard=2)
    # the CLI path, on the module's 2-worker cluster (NIMA with TEST-ONLY weights: test_score_inputs.py)
    argv = [str(tmp_path / "raw"), "--out", str(tmp_path / "scores"), "--metrics", "niqe,brisque",
            "--scheduler", client.scheduler.address]
    assert score_main(argv) == 0
    out = capsys.readouterr().out
    assert "Dask dashboard" in out and "scored 8 image(s) in 4 shard(s)" in out and "download_failed=4" in out
    assert "images/s per stage (one worker core): decode" in out and "worker tcp://" in out
    table = _read_all(tmp_path / "scores")
    keys = table.column("key").to_pylist()
    assert len(keys) == expected_rows == len(set(keys))
    statuses = table.column("status").to_pylist()
    assert statuses.count("ok") == 8 and statuses.count("download_failed") == 4
    assert all(v is not None for v in table.filter(pa.compute.equal(table["status"], "ok"))["niqe"].to_pylist())
    assert set(read_score_metadata(tmp_path / "scores" / "00000.parquet")["metrics"]) == {"niqe", "brisque"}
    summary = json.loads((tmp_path / "scores" / "_summary.json").read_text())
    assert summary["shards_written"] == 4 and summary["statuses"]["ok"] == 8
    # metrics were built once per worker process, not once per task
    builds = client.run(lambda: __import__("curation.scoring.metrics", fromlist=["BUILDS"]).BUILDS)
    assert sum(builds.values()) <= 2 < summary["shards_written"]
    metrics = ("niqe", "brisque")
    again = score_raw(tmp_path / "raw", tmp_path / "scores", build_settings(metrics, require(metrics)), client)
    assert again.shards_skipped == 4 and again.shards_written == 0


def _executing(dask_worker):
    return [str(ts.key) for ts in dask_worker.state.executing]


def test_killed_worker_is_survived_without_duplicates(client, tmp_path):
    expected_rows = _make_raw(tmp_path / "raw", n_shards=4, per_shard=3, size=(256, 256))
    metrics = ("niqe", "brisque")
    # The reference engine (~0.5 s CPU per shard here) keeps each task running long enough for the killer
    # below to catch a worker mid-task; the fast engine finishes these shards in a few tens of ms. What is
    # tested is Dask's retry of a killed worker's shard, which does not depend on the engine.
    settings = build_settings(metrics, require(metrics), engine="pyiqa")
    killed: dict = {}

    def killer():  # SIGKILL a worker while it is executing a shard task (seen from the worker itself)
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            running = {a: keys for a, keys in client.run(_executing).items() if keys}
            if running:
                addr = min(running)
                time.sleep(0.2)
                if client.run(_executing, workers=[addr]).get(addr):
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    os.kill(pid, signal.SIGKILL)
                    killed.update(addr=addr, pid=pid, tasks=running[addr])
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    summary = score_raw(tmp_path / "raw", tmp_path / "scores", settings, client, retries=2)
    thread.join()
    assert killed and killed["tasks"], "no worker was killed mid-task: the test did not exercise the failure"
    # A shard whose output the killed worker had already renamed into place before dying is found
    # complete by the retried task and skipped (idempotent per-shard output): written + skipped == 4.
    assert not summary.shards_failed and summary.shards_written + summary.shards_skipped == 4
    assert summary.shards_written >= 3
    table = _read_all(tmp_path / "scores")
    keys = table.column("key").to_pylist()
    assert len(keys) == expected_rows == len(set(keys))
    assert table.column("status").to_pylist().count("ok") == 12
    assert sorted(p.name for p in (tmp_path / "scores").glob("*.parquet")) == [f"{i:05d}.parquet" for i in range(4)]
    assert not list((tmp_path / "scores").glob(".*"))  # no temp files left behind
