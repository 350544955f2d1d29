"""``python -m curation.download``: Laion-HR URL parquet(s) -> raw shards, with img2dataset on Dask.

Per URL file: read and pre-filter the rows (declared WIDTH/HEIGHT >= ``--min-side``, pwatermark /
punsafe thresholds where those columns exist) before any request; reserve a range of raw shard ids
for the file (``raw/_jobs/allocations.json``; a rerun gets the same range); cut the kept rows into
slices of ``--slice-size``; submit one Dask task per slice that is not already complete
(``curation.downloading.slice_task.run_slice``: img2dataset with one process, ``resize_mode="no"``,
``skip_reencode=True``, webdataset output, sha256). Writes ``raw/NNNNN.tar/.parquet/_stats.json``
per slice, ``raw/_jobs/download-<job>.json`` (pre-filter counts per file) and
``raw/_jobs/download_summary.json`` (this run's counts per status, images/s).

Every URL is fetched under the download policy (``curation.downloading.fetch``, docs/security.md):
http(s) only, public addresses only unless ``--allow-private-addresses``, at most ``--max-image-bytes``
read, ``--image-deadline`` seconds in all; a refusal is the URL's recorded ``error_message``.

Stage contract (``common.stagefolder`` via ``allocation.open_raw_job``): ``raw/`` is locked while the
download runs (a second download / ingest into it exits 2 naming the holder); the content-deciding
flags of this ``--source`` are recorded in ``raw/_jobs/download-<source>-<id>/_stage.json``; a rerun
with others exits 2 naming them unless ``--overwrite`` (which deletes this source's raw shards).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from dask.distributed import as_completed
from tqdm import tqdm

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DEFAULT_MAX_IMAGE_BYTES
from common.outputerrors import exit_on_write_error
from common.stagefolder import StageRefused, refuse_exit
from curation.cluster import DASHBOARD_HELP, DEFAULT_DASHBOARD, dask_client
from curation.downloading.slice_task import SliceOptions, run_slice, status_counts
from curation.downloading.urls import (
    Prefilter,
    UrlColumns,
    file_fingerprint,
    load_url_file,
    resolve_inputs,
)
from curation.rawshards import check_shard, shard_paths
from curation.sharding.allocation import (
    allocate,
    format_shard_id,
    job_key,
    jobs_dir,
    open_raw_job,
)

_LOG = logging.getLogger("curation.download")


@dataclass
class DownloadConfig:
    """Download Laion-HR-style URL lists into raw shards with img2dataset, one Dask task per slice."""

    urls: str = field(metadata={"help": "URL parquet file, folder of *.parquet, or glob (quote it)"})
    out: str = field(metadata={"help": "raw shard folder (created); shared with curation.ingest"})
    min_side: int = field(default=1024, metadata={
        "help": "drop rows whose declared WIDTH or HEIGHT is below this before any request; img2dataset "
                "also rejects decoded images below it (default: 1024)"})
    source: str = field(default="laion-hr", metadata={
        "help": "value of the `source` column of every row (default: laion-hr)"})
    url_col: str = field(default="URL", metadata={
        "help": "URL column, case-insensitive; falls back to 'url' (default: URL)"})
    caption_col: str = field(default="TEXT", metadata={
        "help": "caption column, case-insensitive; '' for none (default: TEXT)"})
    width_col: str = field(default="WIDTH", metadata={
        "help": "declared width column, case-insensitive (default: WIDTH)"})
    height_col: str = field(default="HEIGHT", metadata={
        "help": "declared height column, case-insensitive (default: HEIGHT)"})
    max_pwatermark: float = field(default=0.8, metadata={
        "help": "drop rows with pwatermark above this, where the column exists; nulls are kept (default: 0.8)"})
    max_punsafe: float = field(default=0.5, metadata={
        "help": "drop rows with punsafe above this, where the column exists; nulls are kept (default: 0.5)"})
    slice_size: int = field(default=1000, metadata={
        "help": "URLs per slice = per Dask task = per raw shard; a rerun keeps the size the URL file was "
                "first planned with (default: 1000)"})
    scheduler: str | None = field(default=None, metadata={
        "help": "Dask scheduler address (tcp://host:8786); default: a LocalCluster with --workers processes"})
    workers: int = field(default=2, metadata={
        "help": "LocalCluster worker processes, ignored with --scheduler (default: 2)"})
    dashboard_address: str = field(default=DEFAULT_DASHBOARD, metadata={"help": DASHBOARD_HELP})
    thread_count: int = field(default=16, metadata={
        "help": "download threads inside one slice (img2dataset thread_count) (default: 16)"})
    timeout: int = field(default=10, metadata={"help": "per-request socket timeout in seconds (default: 10)"})
    image_deadline: float = field(default=60.0, metadata={
        "help": "total seconds one image may take, redirects and a slowly dripping body included; past it "
                "the URL fails with a recorded error (default: 60)"})
    max_image_bytes: int = field(default=DEFAULT_MAX_IMAGE_BYTES, metadata={
        "help": "refuse a response body larger than this many bytes; never more is read (default: 67108864 = 64 MiB)"})
    allow_private_addresses: bool = field(default=False, metadata={
        "help": "also fetch from loopback, private, link-local, multicast and reserved addresses (an intranet or a "
                "test server); by default such URLs, redirects to them and hosts resolving to them are refused "
                "(default: --no-allow-private-addresses)"})
    retries: int = field(default=0, metadata={"help": "img2dataset retries per failed URL (default: 0)"})
    encode_format: str = field(default="jpg", metadata={
        "help": "jpg|png|webp: images already in this format keep their original bytes, others are "
                "re-encoded to it (default: jpg)"})
    encode_quality: int | None = field(default=None, metadata={
        "help": "quality of re-encoded images: jpg/webp 0-100 (default 95); for png the compression "
                "level 0-9 (default 3)"})
    max_pixels: int = field(default=178_956_970, metadata={
        "help": "decoded-area limit against decompression bombs, PIL's (default: 178956970)"})
    slice_timeout: int = field(default=3600, metadata={
        "help": "kill a slice's img2dataset after this many seconds (default: 3600)"})
    task_retries: int = field(default=1, metadata={"help": "Dask retries of a failed slice task (default: 1)"})
    max_in_flight: int = field(default=0, metadata={
        "help": "slices submitted at once; 0 = 2 x workers (default: 0)"})
    overwrite: bool = field(default=False, metadata={
        "help": "when this --source was downloaded into --out with other settings (min side, columns, "
                "pre-filters, encoding, max pixels): delete its raw shards and download again (default: refuse "
                "with exit code 2, naming each difference)"})


@dataclass(frozen=True)
class PlannedSlice:
    shard_id: str
    rows: pa.Table
    slice_size: int  # the job's planned slice size (fixes img2dataset's key digits), >= rows.num_rows


def _plan_file(path: Path, cfg: DownloadConfig, columns: UrlColumns, prefilter: Prefilter) -> list[PlannedSlice]:
    table, stats = load_url_file(path, columns, prefilter, cfg.source)
    spec = {"kind": "download", "file": path.name, "source": cfg.source, "columns": vars(columns),
            "prefilter": vars(prefilter)}
    key = job_key(spec)
    wanted = max(1, cfg.slice_size)
    alloc = allocate(cfg.out, key, count=-(-table.num_rows // wanted), unit_size=wanted,
                     fingerprint=file_fingerprint(path), description=spec)
    if alloc.unit_size != wanted:
        _LOG.warning("%s was planned with --slice-size %d; keeping it (asked %d)", path.name, alloc.unit_size, wanted)
    size = alloc.unit_size
    stats.update(job=key, first_shard=format_shard_id(alloc.first), shards=alloc.count, slice_size=size)
    atomic_write_json(jobs_dir(cfg.out) / f"download-{key}.json", stats)
    _LOG.info("%s: %d rows, %d pre-filtered (%s), %d to download in %d slice(s)", path.name, stats["rows"],
              stats["prefiltered"], {k: stats[k] for k in ("below_min_side", "watermark", "unsafe", "no_url")},
              stats["kept"], alloc.count)
    # take() copies: a zero-copy slice would pickle the whole file's buffers into every task.
    return [PlannedSlice(sid, table.take(pa.array(range(i * size, min((i + 1) * size, table.num_rows)))), size)
            for i, sid in enumerate(alloc.shard_ids())]


def plan(cfg: DownloadConfig, files: list[Path]) -> Iterator[tuple[Path, list[PlannedSlice]]]:
    """Per input file: its slices. Lazy, so only one URL file is in memory at a time."""
    columns = UrlColumns(url=cfg.url_col, caption=cfg.caption_col, width=cfg.width_col, height=cfg.height_col)
    prefilter = Prefilter(min_side=cfg.min_side, max_pwatermark=cfg.max_pwatermark, max_punsafe=cfg.max_punsafe)
    for path in files:
        yield path, _plan_file(path, cfg, columns, prefilter)


class _Tally:
    """Counts for the final summary."""

    def __init__(self) -> None:
        self.status: Counter = Counter()
        self.errors: Counter = Counter()
        self.slices = Counter()
        self.new_images = 0
        self.failures: list[dict] = []

    def add(self, result: dict) -> None:
        self.status.update(result["status"])
        self.errors.update(result["errors"])
        self.slices["skipped" if result["skipped"] else "downloaded"] += 1
        if not result["skipped"]:
            self.new_images += result["status"].get("success", 0)
            if result.get("redo_reason"):
                self.slices["redone"] += 1
                _LOG.info("slice %s redone (%s; removed %s)", result["shard"], result["redo_reason"], result["removed"])


def _options(cfg: DownloadConfig, slice_size: int) -> SliceOptions:
    return SliceOptions(slice_size=slice_size, min_side=cfg.min_side, thread_count=cfg.thread_count,
                        timeout=cfg.timeout, retries=cfg.retries, encode_format=cfg.encode_format,
                        encode_quality=cfg.encode_quality, max_pixels=cfg.max_pixels,
                        slice_timeout=cfg.slice_timeout, max_image_bytes=cfg.max_image_bytes,
                        image_deadline=cfg.image_deadline, allow_private_addresses=cfg.allow_private_addresses)


def _collect(future, tally: _Tally, bar: tqdm) -> None:
    try:
        tally.add(future.result())
    except Exception as exc:  # noqa: BLE001 - a slice that failed after its retries is reported; others go on
        tally.slices["failed"] += 1
        tally.failures.append({"task": str(future.key), "error": f"{type(exc).__name__}: {exc}"[:2000]})
        _LOG.error("slice task %s failed: %s", future.key, exc)
    bar.update(1)


def stage_settings(cfg: DownloadConfig) -> dict:
    """What decides the raw shards of one source (not workers, threads, timeouts or slice size)."""
    return {"min_side": cfg.min_side, "url_col": cfg.url_col, "caption_col": cfg.caption_col,
            "width_col": cfg.width_col, "height_col": cfg.height_col, "max_pwatermark": cfg.max_pwatermark,
            "max_punsafe": cfg.max_punsafe, "encode_format": cfg.encode_format,
            "encode_quality": cfg.encode_quality, "max_pixels": cfg.max_pixels,
            "max_image_bytes": cfg.max_image_bytes, "allow_private_addresses": cfg.allow_private_addresses}


def run(cfg: DownloadConfig) -> dict:
    """Lock ``--out``, check the settings, then download (see :func:`download`)."""
    files = resolve_inputs(cfg.urls)  # before starting any cluster: a bad --urls fails fast
    raw = Path(cfg.out)
    raw.mkdir(parents=True, exist_ok=True)
    with open_raw_job(raw, "download", {"source": cfg.source}, stage_settings(cfg), overwrite=cfg.overwrite):
        return download(cfg, files)


def download(cfg: DownloadConfig, files: list[Path]) -> dict:
    """Plan, skip complete slices, download the rest on Dask; return the summary (also written)."""
    raw = Path(cfg.out)
    save_config(cfg, jobs_dir(raw) / "download_config.yaml")
    tally, started = _Tally(), time.time()
    with dask_client(cfg.scheduler, cfg.workers, dashboard_address=cfg.dashboard_address) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        limit = cfg.max_in_flight or 2 * n_workers
        pending, token = as_completed(), uuid.uuid4().hex[:8]
        bar = tqdm(total=0, desc="download slices", unit="slice")
        for _path, slices in plan(cfg, files):
            bar.total += len(slices)
            bar.refresh()
            for planned in slices:
                if check_shard(raw, planned.shard_id, headers_only=True)[0]:
                    tally.add({"shard": planned.shard_id, "skipped": True,
                               **status_counts(shard_paths(raw, planned.shard_id)[1])})
                    bar.update(1)
                    continue
                while pending.count() >= limit:
                    _collect(next(pending), tally, bar)
                pending.add(client.submit(
                    run_slice, planned.shard_id, planned.rows, str(raw.resolve()), _options(cfg, planned.slice_size),
                    key=f"download-slice-{planned.shard_id}-{token}", retries=cfg.task_retries, pure=False))
        for future in pending:
            _collect(future, tally, bar)
        bar.close()
    return _summarise(cfg, tally, time.time() - started)


def _summarise(cfg: DownloadConfig, tally: _Tally, seconds: float) -> dict:
    summary = {
        "seconds": round(seconds, 3),
        "slices": dict(tally.slices),
        "rows_by_status": dict(tally.status),
        "top_errors": dict(tally.errors.most_common(20)),
        "new_images": tally.new_images,
        "new_images_per_s": round(tally.new_images / seconds, 3) if seconds > 0 else None,
        "failed_slices": tally.failures,
    }
    atomic_write_json(jobs_dir(cfg.out) / "download_summary.json", summary)
    print(f"download: {sum(tally.slices[k] for k in ('downloaded', 'skipped'))} slice(s) complete "
          f"({tally.slices['downloaded']} downloaded, {tally.slices['skipped']} skipped, "
          f"{tally.slices['failed']} failed) in {seconds:.1f} s; {tally.new_images} new images "
          f"({summary['new_images_per_s']} images/s); rows by status {dict(tally.status)}", flush=True)
    return summary


def _resolve_encode_quality(cfg: DownloadConfig) -> DownloadConfig:
    """Per-format default and range: img2dataset passes the value to OpenCV unchanged."""
    low, high, default = (0, 9, 3) if cfg.encode_format == "png" else (0, 100, 95)
    if cfg.encode_quality is None:
        return dataclasses.replace(cfg, encode_quality=default)
    if not low <= cfg.encode_quality <= high:
        raise SystemExit(f"--encode-quality for {cfg.encode_format} must be in {low}..{high} "
                         f"(got {cfg.encode_quality})")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_config(DownloadConfig, argv)
    if cfg.slice_size < 1:
        raise SystemExit("--slice-size must be >= 1")
    if cfg.max_image_bytes < 1 or cfg.image_deadline <= 0:
        raise SystemExit("--max-image-bytes and --image-deadline must be > 0")
    if cfg.encode_format not in ("jpg", "png", "webp"):
        raise SystemExit(f"--encode-format must be jpg, png or webp (got {cfg.encode_format!r})")
    cfg = _resolve_encode_quality(cfg)
    try:
        with exit_on_write_error("curation.download", cfg.out):
            summary = run(cfg)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    if summary["failed_slices"]:
        _LOG.error("%d slice(s) failed; rerun the same command to retry them", len(summary["failed_slices"]))
    return summary


if __name__ == "__main__":
    main()
