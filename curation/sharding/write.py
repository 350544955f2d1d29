"""One output shard of ``curation.shard``: decode its kept images, tile, drop flat tiles, write atomically.

Files of shard N (``NNNNNN`` = six digits), in the order they appear on disk:

1. ``.patches-NNNNNN.tar.<token>.tmp`` etc. (unique temp names, fsynced);
2. ``patches-NNNNNN.parquet`` and ``dropped-NNNNNN.parquet`` renamed into place;
3. ``patches-NNNNNN.tar`` renamed into place;
4. ``patches-NNNNNN.done.json`` — the completion marker, written last (atomically).

A shard without its marker is incomplete and is redone from scratch on the next run; the content is
deterministic (fixed tar headers, deterministic PNG encoder), so redoing it gives identical bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common import pngcodec
from common.atomic import atomic_write_json
from common.imagedecode import DEFAULT_MAX_PIXELS, DecodeError, decode_rgb
from curation import rawshards
from curation.layout import DROPPED_SCHEMA, METRIC_COLUMNS, PATCH_SCHEMA, ShardId
from curation.sharding import tiling
from curation.sharding.plan import read_plan_rows

SCORE_COLUMNS = METRIC_COLUMNS


@dataclass(frozen=True)
class TileParams:
    """Everything that decides which patches come out (part of the plan fingerprint)."""

    patch: int
    flat_cell: int
    flat_threshold: float
    max_flat: float
    png_level: int


def shard_name(index: int) -> str:
    return ShardId.patches(index).name


def marker_path(out_dir: Path, index: int) -> Path:
    return ShardId.patches(index).marker_path(out_dir)


def read_marker(out_dir: Path, index: int) -> dict | None:
    """The shard's completion record when the shard is complete (marker and files present), else None."""
    sid = ShardId.patches(index)
    if not sid.is_complete(out_dir):
        return None
    return json.loads(sid.marker_path(out_dir).read_text())


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed headers: identical bytes on rerun
    tar.addfile(info, io.BytesIO(data))


def _sample_meta(row: dict, key: str, tile: tiling.Tile, shard: str, png_bytes: int) -> dict:
    return {"key": key, "source_key": row["key"], "source_sha256": row["sha256"], "url": row.get("url"),
            "source": row.get("source"), "raw_shard": row["raw_shard"], "shard": shard, "box": list(tile.box),
            "flat_fraction": tile.flat_fraction, **{m: row.get(m) for m in SCORE_COLUMNS},
            "source_width": row.get("width"), "source_height": row.get("height"),
            "duplicate_keys": list(row.get("duplicate_keys", [])), "png_bytes": png_bytes}


class _ShardWriter:
    """Accumulates one shard's samples into a temp tar and its rows; ``stats`` holds the timings."""

    def __init__(self, out_dir: Path, index: int, params: TileParams, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.out_dir, self.index, self.params, self.max_pixels = out_dir, index, params, max_pixels
        self.sid = ShardId.patches(index)
        self.name = self.sid.name
        self.token = uuid.uuid4().hex[:12]
        self.tmp_tar = out_dir / f".{self.name}.tar.{self.token}.tmp"
        self.fh = open(self.tmp_tar, "wb")  # noqa: SIM115 - owned by the writer, closed in commit()/abort()
        self.tar = tarfile.open(fileobj=self.fh, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.rows: list[dict] = []
        self.dropped: list[dict] = []
        self.errors: list[dict] = []
        self.counts = {"images": 0, "tiles_total": 0}
        self.stats = {"decode_s": 0.0, "tile_flat_s": 0.0, "encode_s": 0.0, "write_s": 0.0}

    def add_image(self, row: dict, data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            rgb = decode_rgb(data, max_pixels=self.max_pixels)
        except DecodeError as exc:
            self.errors.append({"key": row["key"], "status": exc.status, "reason": exc.reason})
            return
        t1 = time.perf_counter()
        p = self.params
        tiles = tiling.tile_image(rgb, p.patch, cell=p.flat_cell, threshold=p.flat_threshold)
        t2 = time.perf_counter()
        self.counts["images"] += 1
        self.counts["tiles_total"] += len(tiles)
        self.stats["decode_s"] += t1 - t0
        self.stats["tile_flat_s"] += t2 - t1
        for tile in tiles:
            key = tiling.patch_key(row["key"], tile)
            if tile.flat_fraction > p.max_flat:
                self.dropped.append({"key": key, "source_key": row["key"], "raw_shard": row["raw_shard"],
                                     "shard": self.name, "box": list(tile.box), "flat_fraction": tile.flat_fraction})
                continue
            t3 = time.perf_counter()
            png = pngcodec.encode_png(tiling.crop(rgb, tile.box), p.png_level)
            meta = _sample_meta(row, key, tile, self.name, len(png))
            t4 = time.perf_counter()
            _add_member(self.tar, f"{key}.png", png)
            _add_member(self.tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
            self.rows.append(meta)
            self.stats["encode_s"] += t4 - t3
            self.stats["write_s"] += time.perf_counter() - t4

    def commit(self) -> dict:
        """Finish the tar, rename everything into place, write the marker last; return the record."""
        t0 = time.perf_counter()
        self.tar.close()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        for table, schema, final in ((self.rows, PATCH_SCHEMA, self.sid.table_path(self.out_dir)),
                                     (self.dropped, DROPPED_SCHEMA, self.sid.dropped_path(self.out_dir))):
            tmp = self.out_dir / f".{final.name}.{self.token}.tmp"
            pq.write_table(pa.Table.from_pylist(table, schema=schema), tmp)
            os.replace(tmp, final)
        tar_final = self.sid.tar_path(self.out_dir)
        size = self.tmp_tar.stat().st_size
        os.replace(self.tmp_tar, tar_final)
        self.stats["write_s"] += time.perf_counter() - t0
        record = {"name": f"{self.name}.tar", "samples": len(self.rows), "bytes": size,
                  "dropped_flat": len(self.dropped), "errors": self.errors, **self.counts,
                  "timing": {k: round(v, 4) for k, v in self.stats.items()}}  # the only non-deterministic part
        atomic_write_json(self.sid.marker_path(self.out_dir), record)  # the completion marker, last
        return record

    def abort(self) -> None:
        try:
            self.tar.close()
            self.fh.close()
        except OSError:
            pass  # closing flushes; on a full disk that fails too
        finally:
            for tmp in self.out_dir.glob(f".*.{self.token}.tmp"):  # the tar and any parquet begun in commit()
                tmp.unlink(missing_ok=True)


def write_shard(index: int, plan_path: str, raw_dir: str, out_dir: str, params: TileParams,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Write output shard ``index`` from its rows in plan.parquet; idempotent: a complete shard is not redone.

    ``max_pixels`` is the decompression-bomb guard the filter kept the images under (kept.parquet metadata).
    """
    out = Path(out_dir)
    done = read_marker(out, index)
    if done is not None:
        return done
    items = read_plan_rows(plan_path, index)
    writer = _ShardWriter(out, index, params, max_pixels)
    try:
        by_raw: dict[str, dict[str, dict]] = {}
        for row in items:
            by_raw.setdefault(row["raw_shard"], {})[row["key"]] = row
        for raw_id in sorted(by_raw):
            _add_raw_shard(writer, Path(raw_dir), raw_id, by_raw[raw_id])
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _add_raw_shard(writer: _ShardWriter, raw_dir: Path, raw_id: str, wanted: dict[str, dict]) -> None:
    """Stream one raw tar, tiling the wanted keys in tar order; record keys it cannot provide."""
    tar_path = rawshards.shard_paths(raw_dir, raw_id)[0]
    remaining = dict(wanted)
    try:
        for sample in rawshards.iter_raw_tar(tar_path):
            row = remaining.pop(sample.key, None)
            if row is None:
                continue
            if sample.image is None:
                writer.errors.append({"key": row["key"], "status": "missing_image", "reason": f"{tar_path.name} has no image member"})
            else:
                writer.add_image(row, sample.image)
            if not remaining:
                break
    except (tarfile.TarError, EOFError, OSError) as exc:
        reason = f"raw shard {tar_path} unreadable: {type(exc).__name__}: {exc}"
        writer.errors.extend({"key": k, "status": "raw_shard_unreadable", "reason": reason} for k in remaining)
        return
    writer.errors.extend({"key": k, "status": "missing_in_raw", "reason": f"key not found in {tar_path.name}"}
                         for k in remaining)
