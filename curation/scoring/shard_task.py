"""Score one raw shard into ``scores/NNNNN.parquet`` (the unit of work of ``curation.score``).

Runs inside a Dask worker. One output row per raw-parquet row (download failures included as
``download_failed`` rows). Each image is decoded once (``imagedecode.decode_rgb``); NIQE / BRISQUE
run at native resolution, NIMA on batches of resized crops. A bad image becomes a row with a status
and a readable ``error``; only a shard-level problem (unreadable raw parquet / tar) fails the task,
and then no output is written, so a rerun redoes that shard. The parquet is written to a temp file
and renamed: its existence is the shard's completion marker.

Score measures, the filter decides: every decodable image gets its geometry (width, height) and, when
the metrics can run on it, its scores, whatever its size or aspect; keep/drop rules live in
``curation.filter``. Statuses: ok, download_failed, missing_image, empty, decode_error, too_large
(the decompression-bomb guard: not decoded), metric_error (decoded, geometry recorded, a metric
failed on it, e.g. an image smaller than NIQE's blocks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from common.atomic import atomic_write_bytes
from common.imagedecode import DecodeError, decode_rgb
from curation.layout import METRIC_COLUMNS, SCORE_METADATA_KEY, SCORE_SCHEMA, ShardId
from curation.rawshards import iter_raw_tar, shard_paths
from curation.scoring.metrics import get_metric_set

_LOG = logging.getLogger(__name__)
CRASH_HOOK_ENV = "CURATION_SCORE_TEST_KILL_ON_KEY"  # tests only: SIGKILL the worker when it reaches this key
METADATA_KEY = SCORE_METADATA_KEY
SCHEMA = SCORE_SCHEMA


@dataclass(frozen=True)
class ScoreSettings:
    """Everything a worker needs to score a shard (picklable; weight paths resolved by the client)."""

    metrics: tuple[str, ...]
    weight_paths: tuple[tuple[str, str], ...]
    device: str = "cpu"
    max_pixels: int = 178_956_970
    nima_batch: int = 16
    engine: str = "fast"  # fast (our NIQE/BRISQUE engine) or pyiqa (the reference)
    run_metadata: str = "{}"  # JSON (metric variants, versions, weight hashes) stored in every parquet


@dataclass
class ShardResult:
    shard: str
    written: bool
    skipped: bool = False
    rows: int = 0
    images: int = 0  # images decoded (attempted) from the tar
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # decode / metrics / nima, for images/s per stage
    worker: str = ""  # the Dask worker that ran the task (images/s per worker)


def output_path(out_dir: str | Path, shard_id: str) -> Path:
    return ShardId.parse(shard_id).score_path(out_dir)


class _ShardScorer:
    """Streams a shard's tar: decode → geometry → native metrics now, NIMA in batches."""

    def __init__(self, settings: ScoreSettings):
        self.settings = settings
        self.metric_set = get_metric_set(settings.metrics, settings.device, dict(settings.weight_paths),
                                         engine=settings.engine)
        self.results: dict[str, dict] = {}
        self.pending: list[tuple[str, torch.Tensor]] = []
        self.stage_seconds = {"decode": 0.0, "metrics": 0.0, "nima": 0.0}

    def add(self, key: str, data: bytes) -> None:
        if os.environ.get(CRASH_HOOK_ENV) == key:  # test hook: die like an out-of-memory kill on this image
            os.kill(os.getpid(), signal.SIGKILL)
        res = {"status": "ok", "error": None, "sha256_bytes": hashlib.sha256(data).hexdigest()}
        self.results[key] = res
        t0 = time.perf_counter()
        try:
            rgb = decode_rgb(data, max_pixels=self.settings.max_pixels)
        except DecodeError as exc:
            # PIL refuses images above 2x its pixel limit already at open time; that is a bomb, not damage
            bomb = exc.reason.startswith("DecompressionBombError")
            res.update(status="too_large" if bomb else exc.status, error=exc.reason)
            return
        res["height"], res["width"] = int(rgb.shape[0]), int(rgb.shape[1])
        t1 = time.perf_counter()
        self.stage_seconds["decode"] += t1 - t0
        if getattr(self.metric_set, "batched", False):  # GPU: NIQE/BRISQUE batched by size bucket
            self._collect(self.metric_set.queue(key, rgb))
            self.stage_seconds["metrics"] += time.perf_counter() - t1
            return
        try:
            scores, nima_in = self.metric_set.score_image(rgb)
            res.update(scores)
            if nima_in is not None:
                self.pending.append((key, nima_in))
        except Exception as exc:  # a metric failing on one image is that image's status
            res.update(status="metric_error", error=f"{type(exc).__name__}: {exc}"[:500])
        self.stage_seconds["metrics"] += time.perf_counter() - t1
        if len(self.pending) >= self.settings.nima_batch:
            self.flush()

    def _collect(self, done: list) -> None:
        """Results of a batched bucket: (key, scores, nima input, error) per image."""
        for key, scores, nima_in, error in done:
            if error is not None:
                self.results[key].update(status="metric_error", error=error)
                continue
            self.results[key].update(scores)
            if nima_in is not None:
                self.pending.append((key, nima_in))
            if len(self.pending) >= self.settings.nima_batch:
                self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        keys = [k for k, _ in self.pending]
        t0 = time.perf_counter()
        try:
            scores = self.metric_set.score_nima([t for _, t in self.pending])
            for k, s in zip(keys, scores):
                self.results[k]["nima"] = s
        except Exception as exc:  # a failed batch marks its images, never the shard
            for k in keys:
                self.results[k].update(status="metric_error", error=f"nima: {type(exc).__name__}: {exc}"[:500])
        self.pending.clear()
        self.stage_seconds["nima"] += time.perf_counter() - t0

    def finalize(self) -> None:
        if getattr(self.metric_set, "batched", False):
            self._collect(self.metric_set.drain())
        self.flush()
        for res in self.results.values():
            if res["status"] != "ok":
                continue
            bad = [m for m in self.settings.metrics if not np.isfinite(res.get(m, float("nan")))]
            if bad:
                res.update(status="metric_error", error="non-finite score from " + ", ".join(bad))


def _as_int(value) -> int | None:
    """Raw tables may hold sizes as int, float or NaN (pandas-written); keep finite values as int."""
    try:
        return int(value) if value is not None and np.isfinite(float(value)) else None
    except (TypeError, ValueError):
        return None


def _as_str(value) -> str | None:
    return None if value is None or (isinstance(value, float) and not np.isfinite(value)) else str(value)


def _row(raw: dict, shard_id: str, scored: dict | None, extra_members: dict[str, list[str]]) -> dict:
    key = str(raw.get("key"))
    row = {"key": key, "raw_shard": shard_id, "source": _as_str(raw.get("source")), "url": _as_str(raw.get("url")),
           "sha256": _as_str(raw.get("sha256")), "width": _as_int(raw.get("width")), "height": _as_int(raw.get("height")),
           **{m: None for m in METRIC_COLUMNS}, "status": "ok", "error": None}
    if raw.get("status") != "success":
        # download or ingest failure: the raw status travels in the error text
        row.update(status="download_failed", error=f"{raw.get('status')}: {_as_str(raw.get('error_message')) or 'no detail'}")
        return row
    if scored is None:
        others = extra_members.get(key)
        why = f"non-image member(s) {', '.join(others)}" if others else "nothing"
        row.update(status="missing_image", error=f"raw parquet lists a success but the tar holds {why} for this key")
        return row
    row["sha256"] = row["sha256"] or scored["sha256_bytes"]
    for col in ("width", "height", *METRIC_COLUMNS):
        if scored.get(col) is not None:
            row[col] = scored[col]
    row.update(status=scored["status"], error=scored["error"])
    return row


def _read_tar(tar_path: Path, wanted: set[str], scorer: _ShardScorer) -> tuple[dict[str, list[str]], int, int]:
    extra: dict[str, list[str]] = {}
    images = unlisted = 0
    for sample in iter_raw_tar(tar_path):
        if sample.key not in wanted:
            unlisted += 1
            continue
        if sample.other_members:
            extra[sample.key] = [Path(m).name for m in sample.other_members]
        if sample.image is None or sample.key in scorer.results:
            continue
        images += 1
        scorer.add(sample.key, sample.image)
    return extra, images, unlisted


def score_shard(raw_dir: str, out_dir: str, shard_id: str, settings: ScoreSettings) -> ShardResult:
    """Score one complete raw shard; skip when its output exists. Returns a summary, never raises for images."""
    start = time.time()
    out_path = output_path(out_dir, shard_id)
    if out_path.exists():
        return ShardResult(shard=shard_id, written=False, skipped=True)
    torch.set_num_threads(1)
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # PIL's own open-time bomb check follows --max-pixels
    tar_path, parquet_path, _ = shard_paths(raw_dir, shard_id)
    try:
        raw_rows = pq.read_table(parquet_path).to_pylist()
        scorer = _ShardScorer(settings)
        wanted = {str(r.get("key")) for r in raw_rows if r.get("status") == "success"}
        extra, images, unlisted = _read_tar(tar_path, wanted, scorer)
        scorer.finalize()
    except (tarfile.TarError, EOFError, OSError, ValueError, pa.ArrowException) as exc:
        _LOG.error("shard %s unreadable: %s", shard_id, exc)
        return ShardResult(shard=shard_id, written=False, error=f"{type(exc).__name__}: {exc}",
                           seconds=time.time() - start)
    statuses = _write_rows(out_path, shard_id, raw_rows, scorer.results, extra, settings, unlisted)
    return ShardResult(shard=shard_id, written=True, rows=len(raw_rows), images=images,
                       seconds=time.time() - start, statuses=statuses, worker=_worker_name(),
                       stage_seconds=dict(scorer.stage_seconds))


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def _write_rows(out_path: Path, shard_id: str, raw_rows: list[dict], results: dict[str, dict],
                extra: dict[str, list[str]], settings: ScoreSettings, unlisted: int) -> dict[str, int]:
    """One row per raw-parquet row, written atomically with the run metadata; returns the status counts."""
    rows = [_row(r, shard_id, results.get(str(r.get("key"))), extra) for r in raw_rows]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    meta = json.loads(settings.run_metadata)
    meta.update(raw_shard=shard_id, statuses=statuses, unlisted_tar_keys=unlisted,
                settings={k: v for k, v in asdict(settings).items() if k not in ("run_metadata", "weight_paths")})
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(out_path, sink.getvalue().to_pybytes())
    return statuses


def score_keys(raw_dir: str, shard_id: str, keys: list[str], settings: ScoreSettings) -> dict[str, dict]:
    """Score only ``keys`` of a raw shard and return their per-image results (the isolation path)."""
    torch.set_num_threads(1)
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    tar_path, _, _ = shard_paths(raw_dir, shard_id)
    scorer = _ShardScorer(settings)
    _read_tar(tar_path, set(keys), scorer)
    scorer.finalize()
    return scorer.results


def write_scores(raw_dir: str, out_dir: str, shard_id: str, settings: ScoreSettings,
                 results: dict[str, dict]) -> ShardResult:
    """Write a shard's score file from per-image results gathered by the isolation path."""
    start = time.time()
    raw_rows = pq.read_table(shard_paths(raw_dir, shard_id)[1]).to_pylist()
    statuses = _write_rows(output_path(out_dir, shard_id), shard_id, raw_rows, results, {}, settings, 0)
    return ShardResult(shard=shard_id, written=True, rows=len(raw_rows), images=len(results),
                       seconds=time.time() - start, statuses=statuses)


def read_score_metadata(path: str | Path) -> dict:
    """The run metadata stored in a score parquet (metric variants, versions, settings, statuses)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(METADATA_KEY, b"{}"))
