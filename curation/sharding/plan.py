"""Deterministic up-front plan for ``curation.shard``: which kept image goes into which output shard.

The plan depends only on kept.parquet and the tiling/sizing parameters, never on timing, so a rerun
(after a crash or kill -9) recomputes exactly the same assignment and each output shard is one
idempotent task. Exact duplicates (same sha256) are tiled once: the first key in (raw_shard, key)
order is tiled, the others are recorded as duplicates of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.layout import FILTER_METADATA_KEY, KEPT_REQUIRED, PLAN_ROW_SCHEMA, ShardId
from curation.sharding.tiling import tile_count

REQUIRED_COLUMNS = KEPT_REQUIRED
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes from "1GB" (10^9), "200MB", "512MiB" (2^20·512), "1.5GB" or a plain integer."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(text).upper())
    if not m:
        raise ValueError(f"cannot parse size {text!r}: use e.g. 1GB, 200MB, 512MiB or a number of bytes")
    value = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def raw_shard_id(value) -> str:
    """The raw shard name of a kept row (an integer column is formatted like every raw shard name)."""
    if value is None:
        raise ValueError("kept row without raw_shard")
    return ShardId.parse(value).name


@dataclass
class Plan:
    """The planned rows (kept images to tile, with their output ``shard`` index) and what was left out."""

    table: pa.Table  # curation.layout.PLAN_SCHEMA (shard = patch shard name), sorted by shard
    n_shards: int
    duplicates: list[dict] = field(default_factory=list)  # {"key", "duplicate_of", "sha256"}
    too_small: list[str] = field(default_factory=list)  # keys of images smaller than one patch
    fingerprint: str = ""

    def summary(self) -> dict:
        names = self.table.column("shard").to_pylist()
        counts = np.bincount([ShardId.parse(n).index for n in names], minlength=self.n_shards) if self.n_shards else []
        return {"fingerprint": self.fingerprint, "n_shards": self.n_shards, "images": self.table.num_rows,
                "images_per_shard": [int(c) for c in counts], "duplicates": self.duplicates, "too_small": self.too_small}


def read_kept(path: str | Path) -> pa.Table:
    """kept.parquet as a PLAN_ROW_SCHEMA table (only ``kept == True`` rows when the column exists), contract-checked."""
    table = pq.read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing}; expected the curation.filter kept.parquet contract")
    if "kept" in table.column_names:
        table = table.filter(pc.fill_null(table.column("kept"), False))
    cols = {}
    for f in PLAN_ROW_SCHEMA:
        if f.name == "raw_shard":
            cols[f.name] = pa.array([raw_shard_id(v) for v in table.column("raw_shard").to_pylist()], pa.string())
        elif f.name in table.column_names:
            cols[f.name] = table.column(f.name).cast(f.type)
        else:
            cols[f.name] = pa.nulls(table.num_rows, f.type)
    out = pa.table(cols, schema=PLAN_ROW_SCHEMA)
    if pc.count_distinct(out.column("key")).as_py() != out.num_rows:
        raise ValueError(f"{path}: duplicate keys in kept table")
    return out


def _fingerprint(table: pa.Table, params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    cols = [table.column(c).to_pylist() for c in ("raw_shard", "key", "sha256", "width", "height")]
    for row in zip(*cols):
        h.update(("\t".join(map(str, row)) + "\n").encode())
    return h.hexdigest()


def _dedupe(keys: list[str], shas: list[str | None]) -> tuple[list[int], list[dict], dict[str, list[str]]]:
    """Indices of the rows to tile (first of each sha256), the duplicates, canonical key -> duplicate keys."""
    first: dict[str, str] = {}
    keep, duplicates, dup_keys = [], [], {}
    for i, (key, sha) in enumerate(zip(keys, shas)):
        if sha and sha in first:
            duplicates.append({"key": key, "duplicate_of": first[sha], "sha256": sha})
            dup_keys.setdefault(first[sha], []).append(key)
            continue
        if sha:
            first[sha] = key
        keep.append(i)
    return keep, duplicates, dup_keys


def make_plan(table: pa.Table, patch: int, shard_bytes: int, bytes_per_pixel: float, params: dict) -> Plan:
    """Sort, deduplicate, drop untileable images, then fill shards greedily by estimated PNG bytes."""
    table = table.sort_by([("raw_shard", "ascending"), ("key", "ascending")])
    fingerprint = _fingerprint(table, params)
    keys = table.column("key").to_pylist()
    keep, duplicates, dup_keys = _dedupe(keys, table.column("sha256").to_pylist())
    widths = table.column("width").to_pylist()
    heights = table.column("height").to_pylist()
    rows, shard_of, too_small = [], [], []
    shard, current = 0, 0.0
    for i in keep:
        w, h = widths[i], heights[i]
        n_tiles = tile_count(int(w), int(h), patch) if w and h else 1  # unknown size: decoding decides
        if n_tiles == 0:
            too_small.append(keys[i])
            continue
        est = n_tiles * patch * patch * bytes_per_pixel
        if rows and current + est > shard_bytes:
            shard, current = shard + 1, 0.0
        rows.append(i)
        shard_of.append(shard)
        current += est
    planned = table.take(pa.array(rows, pa.int64()))
    planned = planned.append_column("shard", pa.array([ShardId.patches(i).name for i in shard_of], pa.string()))
    planned = planned.append_column("duplicate_keys", pa.array([dup_keys.get(keys[i], []) for i in rows],
                                                                pa.list_(pa.string())))
    return Plan(table=planned, n_shards=(shard + 1) if rows else 0, duplicates=duplicates, too_small=too_small,
                fingerprint=fingerprint)


def write_plan_table(plan: Plan, path: Path) -> None:
    """plan.parquet (temp + rename), small row groups so each task reads only its own rows."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(plan.table, tmp, row_group_size=2048)
    os.replace(tmp, path)


def read_plan_rows(path: str | Path, index: int) -> list[dict]:
    """Rows planned for output shard ``index`` (row groups whose ``shard`` stats exclude it are skipped)."""
    return pq.read_table(path, filters=[("shard", "=", ShardId.patches(index).name)]).to_pylist()


def kept_max_pixels(path: str | Path) -> int | None:
    """The decompression-bomb limit ``curation.filter`` kept these images under (its metadata), if recorded."""
    meta = pq.read_schema(path).metadata or {}
    try:
        value = json.loads(meta.get(FILTER_METADATA_KEY, b"{}")).get("max_pixels")
    except ValueError:
        return None
    return int(value) if isinstance(value, (int, float)) else None


def content_fingerprint(table: pa.Table) -> str:
    """sha256 of the planned rows' identity (raw shard, key, sha256, size): what decides the patch set."""
    return _fingerprint(table.sort_by([("raw_shard", "ascending"), ("key", "ascending")]), {})
