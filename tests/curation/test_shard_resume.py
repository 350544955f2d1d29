"""kill -9 in the middle of ``python -m curation.shard`` (Dask LocalCluster), rerun, compare with a clean run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from test_shard_helpers import encode, half_flat, textured, write_raw_shard

from curation import shard

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--patch", "64", "--flat-cell", "32", "--shard-size", "700KB", "--log-level", "WARNING"]


def _dataset(root: Path, n: int = 16) -> tuple[Path, Path]:
    samples = [(f"im{i:03d}", encode((textured if i % 2 else half_flat)(512, 768, i)), 768, 512) for i in range(n)]
    rows = write_raw_shard(root / "raw", "00000", samples[: n // 2], "synthetic")
    rows += write_raw_shard(root / "raw", "00001", samples[n // 2:], "synthetic")
    sids = ["00000"] * (n // 2) + ["00001"] * (n - n // 2)
    kept = [{"key": r["key"], "raw_shard": sid, "source": r["source"], "url": r["url"], "sha256": r["sha256"],
             "width": r["width"], "height": r["height"], "niqe": 3.0, "brisque": 20.0, "nima": 5.0,
             "status": "ok", "kept": True} for r, sid in zip(rows, sids)]
    pq.write_table(pa.Table.from_pylist(kept), root / "kept.parquet")
    return root / "kept.parquet", root / "raw"


def _patch_set(out: Path) -> dict[str, str]:
    """key -> sha256 of the PNG over every tar in the folder; asserts no key appears twice."""
    found: dict[str, str] = {}
    for tar_path in sorted(out.glob("patches-*.tar")):
        with tarfile.open(tar_path) as tar:  # raises on a partial / truncated tar
            for m in tar:
                if m.name.endswith(".png"):
                    assert m.name not in found, f"duplicate patch {m.name}"
                    found[m.name] = hashlib.sha256(tar.extractfile(m).read()).hexdigest()
    return found


def _cli(kept: Path, raw: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "curation.shard", "--kept", str(kept), "--raw", str(raw), "--out", str(out),
            *ARGS, "--workers", "1"]


def test_kill_9_mid_run_then_rerun_gives_the_clean_run_patch_set(tmp_path):
    kept, raw = _dataset(tmp_path)
    clean = shard.main(["--kept", str(kept), "--raw", str(raw), "--out", str(tmp_path / "clean"), *ARGS, "--workers", "0"])
    assert len(clean["shards"]) >= 8
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli(kept, raw, out), cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and any(out.glob("*.done.json")):
                break
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the scheduler and the Dask worker processes at once
        proc.wait()
    done_at_kill = len(list(out.glob("*.done.json")))
    assert not (out / "manifest.json").exists(), "the run finished before the kill: make the workload larger"
    assert 1 <= done_at_kill < len(clean["shards"])
    rerun = subprocess.run(_cli(kept, raw, out), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not list(out.glob(".*.tmp"))
    assert _patch_set(out) == _patch_set(tmp_path / "clean") and len(_patch_set(out)) == clean["total_samples"]
    for name in [s["name"] for s in clean["shards"]]:  # byte-identical shards, so also no partial tar
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    resumed = __import__("json").loads((out / "manifest.json").read_text())
    assert resumed["shards"] == clean["shards"] and resumed["total_samples"] == clean["total_samples"]
