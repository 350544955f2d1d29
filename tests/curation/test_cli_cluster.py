"""The distributed engine started the way an operator starts it: ``dask scheduler`` + two ``dask worker``
processes from the ``dask`` CLI on 127.0.0.1, then ``curation.score`` and ``curation.shard`` with
``--scheduler tcp://127.0.0.1:PORT``. Their outputs must equal a LocalCluster run's, value for value
and byte for byte (one thread per worker, deterministic code: the engine must not change results)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_score_support import Sample, encode, natural_image, write_raw_shard

from curation import filter as curation_filter
from curation import score, shard

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _dask_cli() -> list[str]:
    exe = Path(sys.executable).parent / "dask"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("dask")
    if found is None:
        pytest.fail("the `dask` command (installed with dask[distributed]) is not on PATH")
    return [found]


class CliCluster:
    """Scheduler and workers as separate OS processes, each in its own session so cleanup reaches its children."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder, self.procs = folder, []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        sched_file = folder / "scheduler.json"
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file)])
        self.address = self._wait_for_address(sched_file)
        for i in range(workers):
            self._start(f"worker{i}", ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                                       "--no-dashboard", "--memory-limit", "2GB",
                                       "--local-directory", str(folder / f"worker{i}")])

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append((subprocess.Popen(_dask_cli() + args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.folder), log))

    def _wait_for_address(self, sched_file: Path, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sched_file.exists():
                try:
                    return json.loads(sched_file.read_text())["address"]
                except (json.JSONDecodeError, KeyError):
                    pass
            if self.procs[0][0].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"dask scheduler did not start: {(self.folder / 'scheduler.log').read_text()[-2000:]}")

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        from dask.distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        for proc, _ in reversed(self.procs):  # workers first, then the scheduler
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc, log in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
            log.close()


@pytest.fixture()
def cli_cluster(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = CliCluster(tmp_path / "cluster")
    try:
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.close()


def _raw(folder: Path) -> None:
    for s in range(3):
        samples = [Sample(f"s{s}i{i}", encode(natural_image((160, 128), seed=10 * s + i))) for i in range(2)]
        samples.append(Sample(f"s{s}fail", None, status="failed_to_download", error_message="connection refused"))
        write_raw_shard(folder, f"{s:05d}", samples)


def _run_stages(raw: Path, out: Path, engine: list[str]) -> None:
    """score → filter → shard, the engine given as --scheduler ADDR or --workers N."""
    assert score.main([str(raw), "--out", str(out / "scores"), "--metrics", "niqe,brisque",
                       *engine]) == 0
    curation_filter.main(["--scores", str(out / "scores"), "--thresholds", "niqe=100,brisque=200", "--min-side", "96",
                          "--out", str(out / "kept.parquet")])
    shard.main(["--kept", str(out / "kept.parquet"), "--raw", str(raw), "--out", str(out / "shards"), "--patch", "64",
                "--flat-cell", "32", "--max-flat", "1.0", "--shard-size", "40KB", "--log-level", "WARNING", *engine])


def _scores(folder: Path) -> pa.Table:
    tables = [pq.read_table(p).replace_schema_metadata(None) for p in sorted(folder.glob("[0-9]*.parquet"))]
    return pa.concat_tables(tables).sort_by("key")


def test_cli_started_cluster_gives_the_local_cluster_results(tmp_path, cli_cluster):
    raw = tmp_path / "raw"
    _raw(raw)
    _run_stages(raw, tmp_path / "local", ["--workers", "2"])
    _run_stages(raw, tmp_path / "cli", ["--scheduler", cli_cluster.address])
    local, cli = _scores(tmp_path / "local" / "scores"), _scores(tmp_path / "cli" / "scores")
    assert local.num_rows == 9 and local.column("status").to_pylist().count("ok") == 6
    assert cli.equals(local)  # every score value, status and error identical
    names = sorted(p.name for p in (tmp_path / "local" / "shards").glob("patches-*"))
    assert len([n for n in names if n.endswith(".tar")]) >= 2  # several shard tasks, spread over the workers
    assert names == sorted(p.name for p in (tmp_path / "cli" / "shards").glob("patches-*"))
    for name in names:
        if name.endswith((".tar", ".parquet")):
            assert (tmp_path / "cli" / "shards" / name).read_bytes() == (tmp_path / "local" / "shards" / name).read_bytes(), name
    manifests = [json.loads((tmp_path / run / "shards" / "manifest.json").read_text()) for run in ("local", "cli")]
    assert manifests[0] == manifests[1] and manifests[0]["total_samples"] > 0
    # the work really ran on the CLI-started workers: their logs show no failure, both took part
    from dask.distributed import Client

    with Client(cli_cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
