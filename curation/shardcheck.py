"""Fast completeness check of a raw shard: the criteria of ``rawshards.check_shard``, headers only.

``check_shard`` reads every image to count them; deciding whether to skip thousands of complete
shards on a rerun must not read terabytes. This walks the tar's member headers (seeking over the
data): a tar cut short by a killed writer still fails, because ``tarfile`` checks that each member's
data ends inside the file ("unexpected end of data"). Same verdicts as ``check_shard`` otherwise:
completion marker present, tar readable, number of keys with an image member == parquet successes.
"""

from __future__ import annotations

import os
import tarfile

import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.rawshards import IMAGE_EXTENSIONS, shard_paths


def count_images_fast(tar_path: str | os.PathLike) -> int:
    """Keys with an image member, from headers only; raises on an unreadable or truncated tar."""
    keys, data_end = set(), 0
    with tarfile.open(tar_path, "r:") as tar:  # raw tars are uncompressed (img2dataset, ingest)
        for member in tar:
            data_end = member.offset_data + member.size
            if member.isfile():
                key, _, ext = os.path.basename(member.name).partition(".")
                if ext.lower() in IMAGE_EXTENSIONS:
                    keys.add(key)
    if data_end > os.path.getsize(tar_path):  # the last member's data was cut off
        raise tarfile.ReadError("unexpected end of data")
    return len(keys)


def shard_complete(raw_dir: str | os.PathLike, shard_id: str) -> tuple[bool, str]:
    """(ok, reason) with ``check_shard``'s criteria, without reading image data."""
    tar_path, parquet_path, stats_path = shard_paths(raw_dir, shard_id)
    for path in (stats_path, tar_path, parquet_path):
        if not path.exists():
            return False, f"missing {path.name}"
    try:
        n_tar = count_images_fast(tar_path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        return False, f"unreadable tar {tar_path.name}: {exc}"
    try:
        status = pq.read_table(parquet_path, columns=["status"]).column("status")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        return False, f"unreadable parquet {parquet_path.name}: {exc}"
    n_ok = int(pc.sum(pc.cast(pc.equal(status, "success"), "int64")).as_py() or 0)
    if n_tar != n_ok:
        return False, f"tar holds {n_tar} images but parquet lists {n_ok} successes"
    return True, "ok"
