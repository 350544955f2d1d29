"""``python -m curation.ingest``: a local image folder (DIV2K, Flickr2K, LSDIR, NTIRE...) -> raw shards.

Writes the same format as img2dataset (see ``curation.rawshards``): ``raw/NNNNN.tar`` with
``KEY.<ext>`` (the file's original bytes; ``ext`` from the sniffed content) + ``KEY.json``,
``raw/NNNNN.parquet`` (one row per file: key, url (``file://`` absolute path), path (relative to
``--folder``), source, status, error_message, width, height, sha256, size_bytes, format) and
``raw/NNNNN_stats.json`` written last. Files are taken in sorted relative-path order and cut into
shards of ``--shard-size``; the folder gets a range of shard ids after everything already in
``raw/`` (``raw/_jobs/allocations.json``), so a rerun maps to the same shards and skips complete
ones, while partial ones are deleted and redone. A file that cannot be read or is not an image
becomes a row with a status (``failed_to_read``, ``failed_to_decode``, ``unsupported``, ``empty``),
never a crash. Only regular files are read: a symlink loop (``symlink_loop``), a FIFO, socket or
device, also behind a symlink (``not_a_regular_file``), and a file over ``--max-image-bytes``
(``too_large``; at most that many bytes + 1 are ever read) get a status row. The walk never follows
symlinked folders, so it cannot cycle. Recorded messages are deterministic (no memory addresses):
two ingests of the same folder write byte-identical parquets.

Stage contract (``common.stagefolder`` via ``allocation.open_raw_job``): ``raw/`` is locked while the
ingest runs (a second ingest / download into it exits 2 naming the holder); the settings this
``--folder`` + ``--source`` was ingested with are recorded in ``raw/_jobs/ingest-<source>-<id>/``; a
rerun with others exits 2 naming them unless ``--overwrite`` (which deletes its raw shards).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dask.distributed import as_completed
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import (
    DEFAULT_MAX_IMAGE_BYTES,
    DecodeError,
    decode_rgb,
    error_text,
    probe_size,
)
from common.outputerrors import exit_on_write_error
from common.stagefolder import StageRefused, refuse_exit
from curation.cluster import DASHBOARD_HELP, DEFAULT_DASHBOARD, dask_client
from curation.downloading.slice_task import TMP_DIR, clear_shard, key_digits
from curation.rawshards import check_shard, shard_paths
from curation.sharding.allocation import allocate, job_key, jobs_dir, open_raw_job

_LOG = logging.getLogger("curation.ingest")
FORMAT_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif",
              "MPO": "jpg"}
SCHEMA = pa.schema([("key", pa.string()), ("url", pa.string()), ("path", pa.string()), ("source", pa.string()),
                    ("status", pa.string()), ("error_message", pa.string()), ("width", pa.int32()),
                    ("height", pa.int32()), ("sha256", pa.string()), ("size_bytes", pa.int64()),
                    ("format", pa.string())])


@dataclass
class IngestConfig:
    """Pack a local folder of images into raw shards (the format curation.download writes)."""

    folder: str = field(metadata={"help": "folder of images (PNG/JPEG/...; nested folders with --recursive)"})
    source: str = field(metadata={"help": "value of the `source` column (e.g. div2k, flickr2k, lsdir)"})
    out: str = field(metadata={"help": "raw shard folder (created); shared with curation.download"})
    shard_size: int = field(default=1000, metadata={"help": "files per raw shard; a rerun keeps the size the "
                            "folder was first ingested with (default: 1000)"})
    recursive: bool = field(default=True, metadata={
        "help": "descend into sub-folders, for LSDIR / NTIRE layouts (default: --recursive)"})
    extensions: list[str] = field(default_factory=list, metadata={"help": "only files with these extensions "
                                  "(e.g. png jpg); default: every non-hidden file (non-images get a status row)"})
    full_decode: bool = field(default=False, metadata={"help": "decode every image completely (catches truncated "
                              "files now instead of at scoring; slower) (default: --no-full-decode)"})
    max_image_bytes: int = field(default=DEFAULT_MAX_IMAGE_BYTES, metadata={
        "help": "files larger than this get the status too_large and are not read further "
                f"(default: {DEFAULT_MAX_IMAGE_BYTES} = 64 MiB)"})
    scheduler: str | None = field(default=None, metadata={
        "help": "Dask scheduler address (tcp://host:8786): one task per shard on that cluster"})
    workers: int = field(default=0, metadata={
        "help": "0: write shards in this process; N > 0: a LocalCluster with N worker processes, one task "
                "per shard (ignored with --scheduler) (default: 0)"})
    dashboard_address: str = field(default=DEFAULT_DASHBOARD, metadata={"help": DASHBOARD_HELP})
    overwrite: bool = field(default=False, metadata={
        "help": "when this --folder/--source was ingested into --out with other settings (--recursive, "
                "--extensions, --full-decode): delete its raw shards and ingest again (default: refuse with "
                "exit code 2, naming each difference)"})


def list_files(folder: Path, recursive: bool, extensions: list[str], exclude: Path | None = None) -> list[str]:
    """Relative POSIX paths of the non-hidden, non-folder entries, sorted (the deterministic ingest order).

    Symlinked folders are not descended into (no cycles). Entries that are not regular files (FIFOs,
    sockets, devices, dangling or looping symlinks) are listed too, so they get a status row.
    ``exclude`` (the raw output folder, when it lies inside ``folder``) is never descended into.
    """
    exts = {e.lower().lstrip(".") for e in extensions}
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip) \
            if recursive else []
        for name in files:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if exts and name.rsplit(".", 1)[-1].lower() not in exts:
                continue
            found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def _examine(data: bytes, full_decode: bool) -> tuple[str, str | None, int | None, int | None, str | None]:
    """(status, error_message, width, height, format) of one file's bytes."""
    if not data:
        return "empty", "zero-byte file", None, None, None
    try:
        width, height = probe_size(data)
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
        if full_decode:
            decode_rgb(data)
    except DecodeError as exc:
        return ("unsupported" if exc.status == "unsupported" else "failed_to_decode"), exc.reason, None, None, None
    return "success", None, width, height, fmt


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


class _Refused(Exception):
    """A file ingest will not read: ``status`` and a deterministic message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _check_regular(mode: int, size: int, max_bytes: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise _Refused("not_a_regular_file", f"{kind}, not a regular file; only regular files are ingested")
    if size > max_bytes:
        raise _Refused("too_large", f"{size} bytes exceeds --max-image-bytes {max_bytes}")


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; raises :class:`_Refused` or ``OSError``.

    Checked before opening (a FIFO would block ``open``) and again on the open descriptor (the path
    may have changed in between); ``O_NONBLOCK`` keeps even a swapped-in FIFO from hanging us.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Refused("symlink_loop", "symbolic link loop (too many levels of symbolic links)") from None
        raise
    _check_regular(info.st_mode, info.st_size, max_bytes)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        _check_regular(info.st_mode, info.st_size, max_bytes)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since the stat
        raise _Refused("too_large", f"more than --max-image-bytes {max_bytes} bytes")
    return data


def _sample(folder: Path, rel: str, key: str, source: str, full_decode: bool,
            max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> tuple[dict, bytes | None]:
    path = folder / rel
    row = {"key": key, "url": Path(os.path.realpath(path)).as_uri(), "path": rel, "source": source, "status": None,
           "error_message": None, "width": None, "height": None, "sha256": None, "size_bytes": None, "format": None}
    try:
        data = read_regular_file(path, max_bytes)
    except _Refused as exc:
        row.update(status=exc.status, error_message=exc.message)
        return row, None
    except OSError as exc:
        row.update(status="failed_to_read", error_message=error_text(exc))
        return row, None
    status, error, width, height, fmt = _examine(data, full_decode)
    row.update(status=status, error_message=error, width=width, height=height, format=fmt,
               sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    return row, (data if status == "success" else None)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shard(folder: Path, rel_paths: list[str], shard_id: str, raw: Path, source: str, digits: int,
                full_decode: bool, on_file: Callable[[], object] | None = None,
                max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Counter:
    """Write one shard in ``raw/_tmp/NNNNN`` then move it in (tar, parquet, completion marker last)."""
    work = raw / TMP_DIR / shard_id
    shutil.rmtree(work, ignore_errors=True)
    try:
        counts = _write_in(work, folder, rel_paths, shard_id, raw, source, digits, full_decode, on_file, max_bytes)
    finally:  # also on a full disk: no partial tar left in raw/_tmp
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            (raw / TMP_DIR).rmdir()  # only when empty (another shard may be writing)
    return counts


def _write_in(work: Path, folder: Path, rel_paths: list[str], shard_id: str, raw: Path, source: str, digits: int,
              full_decode: bool, on_file: Callable[[], object] | None, max_bytes: int) -> Counter:
    work.mkdir(parents=True)
    tar_path, parquet_path, stats_path = shard_paths(work, shard_id)
    started, rows, counts = time.time(), [], Counter()
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, rel in enumerate(rel_paths):
            key = f"{int(shard_id) * 10 ** digits + i:0{digits + 5}d}"
            row, data = _sample(folder, rel, key, source, full_decode, max_bytes)
            if data is not None:
                mtime = (folder / rel).stat().st_mtime
                _add_member(tar, f"{key}.{FORMAT_EXT.get(row['format'], 'img')}", data, mtime)
                _add_member(tar, f"{key}.json", json.dumps(row, indent=1).encode("utf-8"), mtime)
            rows.append(row)
            counts[row["status"]] += 1
            if on_file is not None:
                on_file()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), parquet_path)
    stats = {"count": len(rows), "successes": counts["success"], "failed": len(rows) - counts["success"],
             "status_dict": dict(counts), "start_time": started, "end_time": time.time(),
             "duration": time.time() - started, "source": source, "folder": str(folder)}
    stats_path.write_text(json.dumps(stats, indent=2))
    ok, reason = check_shard(work, shard_id)
    if not ok:
        raise RuntimeError(f"ingest shard {shard_id} failed its own check: {reason}")
    for src, dst in zip(shard_paths(work, shard_id), shard_paths(raw, shard_id)):
        os.replace(src, dst)
    return counts


def _fingerprint(folder: Path, rel_paths: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in rel_paths:
        try:
            size = (folder / rel).stat().st_size
        except OSError:
            size = -1
        digest.update(f"{rel}\0{size}\n".encode())
    return f"{len(rel_paths)}:{digest.hexdigest()[:16]}"


def ingest_shard(folder: str, rel_paths: list[str], shard_id: str, raw_dir: str, source: str, digits: int,
                 full_decode: bool, on_file: Callable[[], object] | None = None,
                 max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> dict:
    """One shard, idempotently: skip it when complete, else delete what is there and write it. A Dask task."""
    raw = Path(raw_dir)
    ok, reason = check_shard(raw, shard_id, headers_only=True)
    if ok:
        return {"shard": shard_id, "skipped": True, "redone": False, "counts": {}}
    removed = clear_shard(raw, shard_id)
    if removed:
        _LOG.info("shard %s redone (%s; removed %s)", shard_id, reason, removed)
    counts = write_shard(Path(folder), rel_paths, shard_id, raw, source, digits, full_decode, on_file, max_bytes)
    return {"shard": shard_id, "skipped": False, "redone": bool(removed), "counts": dict(counts)}


def _run_shards(cfg: IngestConfig, jobs: list[tuple[str, list[str]]], raw: Path, digits: int) -> list[dict]:
    """Run every shard job, in this process (tqdm per file) or on Dask (tqdm per shard)."""
    args = (str(Path(cfg.folder)), str(raw.resolve()), cfg.source, digits, cfg.full_decode)
    if not cfg.scheduler and cfg.workers <= 0:
        results = []
        with tqdm(total=sum(len(c) for _, c in jobs), desc=f"ingest {cfg.source}", unit="file") as bar:
            for shard_id, chunk in jobs:
                res = ingest_shard(args[0], chunk, shard_id, *args[1:], on_file=lambda: bar.update(1),
                                   max_bytes=cfg.max_image_bytes)
                if res["skipped"]:
                    bar.update(len(chunk))
                results.append(res)
        return results
    with dask_client(cfg.scheduler, cfg.workers, dashboard_address=cfg.dashboard_address) as client:
        futures = [client.submit(ingest_shard, args[0], chunk, shard_id, *args[1:], max_bytes=cfg.max_image_bytes,
                                 pure=False, retries=1,
                                 key=f"ingest-{shard_id}-{uuid.uuid4().hex[:8]}") for shard_id, chunk in jobs]
        with tqdm(total=len(futures), desc=f"ingest {cfg.source}", unit="shard") as bar:
            results = []
            for future in as_completed(futures):
                results.append(future.result())  # a failed shard stops the run; a rerun resumes it
                bar.update(1)
    return results


def stage_settings(cfg: IngestConfig) -> dict:
    """What decides this folder's raw shards (not workers or the scheduler; shard size is fixed at first run)."""
    return {"recursive": cfg.recursive, "extensions": sorted(e.lower().lstrip(".") for e in cfg.extensions),
            "full_decode": cfg.full_decode, "max_image_bytes": cfg.max_image_bytes}


def run(cfg: IngestConfig) -> dict:
    """Lock ``--out``, check the settings of this folder + source, then ingest (see :func:`ingest`)."""
    folder, raw = Path(cfg.folder), Path(cfg.out)
    if not folder.is_dir():
        raise SystemExit(f"--folder {folder} is not a folder")
    raw.mkdir(parents=True, exist_ok=True)
    identity = {"folder": str(folder.resolve()), "source": cfg.source}
    with open_raw_job(raw, "ingest", identity, stage_settings(cfg), overwrite=cfg.overwrite):
        return ingest(cfg)


def ingest(cfg: IngestConfig) -> dict:
    """Plan the folder's shards, skip complete ones, write the rest; return the summary (also written)."""
    folder, raw = Path(cfg.folder), Path(cfg.out)
    save_config(cfg, jobs_dir(raw) / "ingest_config.yaml")
    rel_paths = list_files(folder, cfg.recursive, cfg.extensions, exclude=raw)
    spec = {"kind": "ingest", "folder": str(folder.resolve()), "source": cfg.source, "recursive": cfg.recursive,
            "extensions": sorted(e.lower().lstrip(".") for e in cfg.extensions)}
    key = job_key(spec)
    alloc = allocate(raw, key, count=-(-len(rel_paths) // cfg.shard_size), unit_size=cfg.shard_size,
                     fingerprint=_fingerprint(folder, rel_paths), description=spec)
    size = alloc.unit_size
    jobs = [(sid, rel_paths[i * size:(i + 1) * size]) for i, sid in enumerate(alloc.shard_ids())]
    started = time.time()
    results = _run_shards(cfg, jobs, raw, key_digits(size))
    seconds = time.time() - started
    counts, shards = Counter(), Counter()
    for res in results:
        counts.update(res["counts"])
        shards["skipped" if res["skipped"] else "written"] += 1
        shards["redone"] += int(res["redone"])
    shards = +shards  # drop zero counts
    summary = {"job": key, "folder": str(folder), "source": cfg.source, "files": len(rel_paths),
               "shards": alloc.shard_ids(), "shard_counts": dict(shards), "new_rows_by_status": dict(counts),
               "seconds": round(seconds, 3),
               "files_per_s": round(sum(counts.values()) / seconds, 3) if seconds else None}
    atomic_write_json(jobs_dir(raw) / f"ingest-{key}.json", summary)
    print(f"ingest {cfg.source}: {len(rel_paths)} files in {alloc.count} shard(s) ({shards['written']} written, "
          f"{shards['skipped']} skipped) in {seconds:.1f} s ({summary['files_per_s']} files/s); "
          f"new rows by status {dict(counts)}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = parse_config(IngestConfig, argv)
    if cfg.shard_size < 1:
        raise SystemExit("--shard-size must be >= 1")
    if cfg.max_image_bytes < 1:
        raise SystemExit("--max-image-bytes must be >= 1")
    try:
        with exit_on_write_error("curation.ingest", cfg.out):
            return run(cfg)
    except StageRefused as exc:
        raise refuse_exit(exc) from None


if __name__ == "__main__":
    main()
