"""One download slice = one Dask task: img2dataset on a few hundred URLs into one raw shard.

The task (``run_slice``) is idempotent: a complete shard (``rawshards.check_shard(..., headers_only=True)``,
from tar headers only) is left alone;
anything else under that shard id (a partial tar from a killed run, a tar whose image count differs
from its parquet's successes, a missing completion marker) is deleted and the slice is redone in a
private folder ``raw/_tmp/NNNNN.<pid>.<random>/``. img2dataset runs in a child interpreter (see
``curation.downloading.img2dataset_child`` for why) and writes shard ``NNNNN`` directly: its
``incremental_mode="extend"`` starts numbering after the highest ``*_*.json`` already in its output
folder, so a placeholder ``{NNNNN-1}_offset.json`` there makes it write exactly shard ``NNNNN``,
with keys ``NNNNN * 10^d + row``, unique in the raw folder. The three files are then moved into
``raw/`` with ``os.replace`` (tar, parquet, and the ``_stats.json`` completion marker last).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.downloading.fetch import FetchPolicy
from curation.rawshards import check_shard, shard_paths

TMP_DIR = "_tmp"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SliceOptions:
    """img2dataset settings shared by every slice of a run."""

    slice_size: int = 1000
    min_side: int = 1024
    thread_count: int = 16
    timeout: int = 10
    retries: int = 0
    encode_format: str = "jpg"
    encode_quality: int = 95
    max_pixels: int = 178_956_970
    slice_timeout: int = 3600
    max_image_bytes: int = 64 * 2**20
    image_deadline: float = 60.0
    allow_private_addresses: bool = False

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(max_bytes=self.max_image_bytes, deadline_s=self.image_deadline,
                           allow_private=self.allow_private_addresses)


def status_counts(parquet_path: Path) -> dict:
    """{"count": n, "status": {status: n}, "errors": {error_message: n}} of one raw parquet."""
    table = pq.read_table(parquet_path, columns=["status", "error_message"])
    statuses = Counter(table.column("status").to_pylist())
    errors = Counter(e for e in table.column("error_message").to_pylist() if e)
    return {"count": table.num_rows, "status": dict(statuses), "errors": dict(errors)}


def clear_shard(raw_dir: Path, shard_id: str) -> list[str]:
    """Delete whatever exists under this shard id, completion marker first; return the names removed."""
    tar, parquet, stats = shard_paths(raw_dir, shard_id)
    removed = []
    for path in (stats, tar, parquet):
        if path.exists():
            path.unlink()
            removed.append(path.name)
    return removed


def _img2dataset_kwargs(input_path: Path, out_dir: Path, columns: list[str], opts: SliceOptions) -> dict:
    extra = [c for c in columns if c not in ("url", "caption")]
    return {
        "url_list": str(input_path), "input_format": "parquet", "url_col": "url",
        "caption_col": "caption" if "caption" in columns else None, "save_additional_columns": extra,
        "output_folder": str(out_dir), "output_format": "webdataset",
        "processes_count": 1, "thread_count": opts.thread_count, "distributor": "multiprocessing",
        "number_sample_per_shard": opts.slice_size, "incremental_mode": "extend",
        "resize_mode": "no", "skip_reencode": True, "encode_format": opts.encode_format,
        "encode_quality": opts.encode_quality, "compute_hash": "sha256", "extract_exif": True,
        "min_image_size": opts.min_side, "max_image_area": float(opts.max_pixels),
        "timeout": opts.timeout, "retries": opts.retries, "max_shard_retry": 1, "enable_wandb": False,
    }


def _run_child(kwargs_path: Path, log_path: Path, timeout_s: int, policy: FetchPolicy) -> None:
    """Run the img2dataset child in its own process group; kill the whole group on timeout."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1",
               CURATION_FETCH_POLICY=json.dumps(policy.to_dict()),
               PYTHONPATH=os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "curation.downloading.img2dataset_child", str(kwargs_path)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TimeoutError(f"img2dataset did not finish within {timeout_s} s (log {log_path})") from None
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"img2dataset exited with status {rc}; log tail:\n{tail}")


def _publish(work_out: Path, raw_dir: Path, shard_id: str) -> None:
    """Check the child's shard, then move it into ``raw/``: tar, parquet, completion marker last."""
    ok, reason = check_shard(work_out, shard_id)
    if not ok:
        log = (work_out.parent / "img2dataset.log")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"img2dataset output for shard {shard_id} is not complete ({reason}); log tail:\n{tail}")
    for src, dst in zip(shard_paths(work_out, shard_id), shard_paths(raw_dir, shard_id)):
        os.replace(src, dst)  # same file system: atomic; the stats marker is the last of the three


def run_slice(shard_id: str, rows: pa.Table, raw_dir: str, opts: SliceOptions) -> dict:
    """Download one slice into raw shard ``shard_id`` unless it is already complete. Runs on a worker."""
    raw = Path(raw_dir)
    ok, reason = check_shard(raw, shard_id, headers_only=True)
    if ok:
        return {"shard": shard_id, "skipped": True, **status_counts(shard_paths(raw, shard_id)[1])}
    started = time.time()
    removed = clear_shard(raw, shard_id)
    for stale in (raw / TMP_DIR).glob(f"{shard_id}.*"):  # left by a killed attempt
        shutil.rmtree(stale, ignore_errors=True)
    # A private folder per attempt: an orphaned img2dataset child of a dead worker cannot touch this one.
    work = raw / TMP_DIR / f"{shard_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        _download_into(work, shard_id, rows, raw, opts)
    finally:  # success or failure (a full disk included): the private scratch folder goes
        shutil.rmtree(work, ignore_errors=True)
    summary = status_counts(shard_paths(raw, shard_id)[1])
    return {"shard": shard_id, "skipped": False, "redo_reason": None if reason.startswith("missing") and not removed
            else reason, "removed": removed, "seconds": time.time() - started, **summary}


def _download_into(work: Path, shard_id: str, rows: pa.Table, raw: Path, opts: SliceOptions) -> None:
    (work / "out").mkdir(parents=True)
    input_path = work / "urls.parquet"
    pq.write_table(rows, input_path)
    if int(shard_id) > 0:  # img2dataset "extend" numbering: next shard = highest *.json id + 1
        (work / "out" / f"{int(shard_id) - 1:05d}_offset.json").write_text(
            json.dumps({"note": "placeholder so that img2dataset numbers this slice's shard " + shard_id}))
    kwargs = _img2dataset_kwargs(input_path, work / "out", rows.column_names, opts)
    kwargs_path = work / "img2dataset_kwargs.json"
    kwargs_path.write_text(json.dumps(kwargs, indent=2))
    _run_child(kwargs_path, work / "img2dataset.log", opts.slice_timeout, opts.fetch_policy())
    _publish(work / "out", raw, shard_id)


def key_digits(slice_size: int) -> int:
    """Digits img2dataset gives the within-shard part of a key (``ceil(log10(slice_size))``)."""
    return math.ceil(math.log10(slice_size)) if slice_size > 1 else 0
