"""The raw-shard format shared by every curation stage (the contract between stages).

A raw shard is what img2dataset writes with ``output_format="webdataset"``; ``curation.ingest``
writes the same format for local corpora, so later stages never care where an image came from:

- ``raw/NNNNN.tar``: per sample ``KEY.<ext>`` (the image bytes; img2dataset's ``skip_reencode``
  keeps the original bytes only for images already in its ``encode_format`` and re-encodes the
  others, so use ``--encode-format png`` for lossless downloads; decoders sniff the content and
  never trust the extension), ``KEY.json`` (the sample's
  metadata: url, key, status, width, height, sha256, ...) and optionally ``KEY.txt`` (caption).
- ``raw/NNNNN.parquet``: one row per *attempted* sample, successes and failures alike, with at
  least ``key``, ``url``, ``status`` ("success" or a failure status), ``error_message``, ``width``,
  ``height``, ``sha256``; ingest adds ``source`` and ``path``.
- ``raw/NNNNN_stats.json``: written last; its presence means the shard is complete.

Shard ids and paths are :class:`curation.layout.ShardId` (``str(sid)`` is the zero-padded name
"00000" used in tables and by the functions here). Keys are unique within the whole raw folder.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from curation.layout import RAW_MARKER_SUFFIX, ShardId, list_raw_shards

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
STATS_SUFFIX = RAW_MARKER_SUFFIX


@dataclass
class RawSample:
    """One sample of a raw tar: image bytes (None when the tar holds no image for the key)."""

    key: str
    image: bytes | None
    image_member: str | None
    meta: dict = field(default_factory=dict)
    caption: str | None = None
    other_members: list[str] = field(default_factory=list)  # non-image, non-json members (reported, not used)


def shard_paths(raw_dir: str | os.PathLike, shard_id: str | int | ShardId) -> tuple[Path, Path, Path]:
    """(tar, parquet, stats) paths of one shard (:meth:`curation.layout.ShardId.raw_paths`)."""
    return ShardId.parse(shard_id).raw_paths(raw_dir)


def list_complete_shards(raw_dir: str | os.PathLike) -> list[str]:
    """Names of the shards whose completion marker (``NNNNN_stats.json``), tar and parquet exist, sorted."""
    return [sid.name for sid in list_raw_shards(raw_dir)]


def _split_member(name: str) -> tuple[str, str]:
    base = os.path.basename(name)
    key, _, ext = base.partition(".")
    return key, ext.lower()


def iter_raw_tar(tar_path: str | os.PathLike) -> Iterator[RawSample]:
    """Yield the samples of a raw tar grouped by key, in tar order.

    Raises ``tarfile.ReadError`` (or ``EOFError``) for an unreadable / truncated tar: callers decide
    whether that is a per-shard status or a reason to redo the shard.
    """
    current: RawSample | None = None
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split_member(member.name)
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current = RawSample(key=key, image=None, image_member=None)
            data = tar.extractfile(member).read()
            if ext in IMAGE_EXTENSIONS and current.image is None:
                current.image, current.image_member = data, member.name
            elif ext == "json":
                current.meta = json.loads(data.decode("utf-8"))
            elif ext == "txt":
                current.caption = data.decode("utf-8", errors="replace")
            else:
                current.other_members.append(member.name)
    if current is not None:
        yield current


def read_images(tar_path: str | os.PathLike, keys: set[str]) -> dict[str, bytes]:
    """Image bytes of ``keys`` only: the other members' data is seeked over, never read.

    For a few samples out of 1 GB raw tars (the report's grids) this reads kilobytes instead of the
    whole tar. Raises like :func:`iter_raw_tar` for an unreadable tar.
    """
    found: dict[str, bytes] = {}
    if not keys:
        return found
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            key, ext = _split_member(member.name)
            if member.isfile() and key in keys and key not in found and ext in IMAGE_EXTENSIONS:
                found[key] = tar.extractfile(member).read()
                if len(found) == len(keys):
                    break
    return found


def read_shard_table(raw_dir: str | os.PathLike, shard_id: str):
    """The shard's parquet as a pyarrow Table."""
    return pq.read_table(shard_paths(raw_dir, shard_id)[1])


def count_tar_images(tar_path: str | os.PathLike, headers_only: bool = False) -> int:
    """Number of keys with an image member; raises on an unreadable or truncated tar.

    ``headers_only`` walks the member headers and seeks over the data, so deciding whether to skip
    thousands of complete shards on a rerun does not read terabytes; a tar cut short by a killed
    writer still fails, because each member's data must end inside the file.
    """
    if not headers_only:
        return sum(1 for s in iter_raw_tar(tar_path) if s.image is not None)
    keys, data_end = set(), 0
    with tarfile.open(tar_path, "r:") as tar:  # raw tars are uncompressed (img2dataset, ingest)
        for member in tar:
            data_end = member.offset_data + member.size
            if member.isfile():
                key, ext = _split_member(member.name)
                if ext in IMAGE_EXTENSIONS:
                    keys.add(key)
    if data_end > os.path.getsize(tar_path):  # the last member's data was cut off
        raise tarfile.ReadError("unexpected end of data")
    return len(keys)


def check_shard(raw_dir: str | os.PathLike, shard_id: str, headers_only: bool = False) -> tuple[bool, str]:
    """Is this shard complete and whole? (marker present, tar readable, tar images == parquet successes).

    ``headers_only=True`` gives the same verdict from the tar headers alone (fast skip decisions);
    the default also reads every member, as done once before a new shard is published.
    """
    tar_path, parquet_path, stats_path = shard_paths(raw_dir, shard_id)
    for path in (stats_path, tar_path, parquet_path):
        if not path.exists():
            return False, f"missing {path.name}"
    try:
        n_tar = count_tar_images(tar_path, headers_only=headers_only)
    except (tarfile.TarError, EOFError, OSError) as exc:
        return False, f"unreadable tar {tar_path.name}: {exc}"
    try:
        table = pq.read_table(parquet_path, columns=["status"])
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return False, f"unreadable parquet {parquet_path.name}: {exc}"
    n_ok = sum(1 for s in table.column("status").to_pylist() if s == "success")
    if n_tar != n_ok:
        return False, f"tar holds {n_tar} images but parquet lists {n_ok} successes"
    return True, "ok"
