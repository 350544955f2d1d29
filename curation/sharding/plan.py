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


def _raw_shard_ids(column: pa.ChunkedArray) -> pa.Array:
    """:func:`raw_shard_id` for a whole column: each distinct value is parsed once (a few thousand at most)."""
    if column.null_count:
        raise ValueError("kept row without raw_shard")
    codes = column.combine_chunks().dictionary_encode()
    names = pa.array([raw_shard_id(v) for v in codes.dictionary.to_pylist()], pa.string())
    return names.take(codes.indices)


@dataclass
class Plan:
    """The planned rows (kept images to tile, with their output ``shard`` index) and what was left out."""

    table: pa.Table  # curation.layout.PLAN_SCHEMA (shard = patch shard name), sorted by shard
    n_shards: int
    duplicates: list[dict] = field(default_factory=list)  # {"key", "duplicate_of", "sha256"}
    too_small: list[str] = field(default_factory=list)  # keys of images smaller than one patch
    fingerprint: str = ""

    def summary(self) -> dict:
        counts = np.zeros(self.n_shards, np.int64)
        for row in pc.value_counts(self.table.column("shard")).to_pylist():  # one row per shard, not per image
            counts[ShardId.parse(row["values"]).index] = row["counts"]
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
            cols[f.name] = _raw_shard_ids(table.column("raw_shard"))
        elif f.name in table.column_names:
            cols[f.name] = table.column(f.name).cast(f.type)
        else:
            cols[f.name] = pa.nulls(table.num_rows, f.type)
    out = pa.table(cols, schema=PLAN_ROW_SCHEMA)
    if pc.count_distinct(out.column("key")).as_py() != out.num_rows:
        raise ValueError(f"{path}: duplicate keys in kept table")
    return out


def _fingerprint(table: pa.Table, params: dict, batch: int = 65536) -> str:
    """sha256 of the params and of one "raw_shard\tkey\tsha256\twidth\theight" line per row (None for nulls)."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        cols = [pc.fill_null(part.column(c).cast(pa.string()), "None").to_pylist()
                for c in ("raw_shard", "key", "sha256", "width", "height")]
        h.update(("\n".join(map("\t".join, zip(*cols))) + "\n").encode())
    return h.hexdigest()


def _dedupe(keys: np.ndarray, shas: pa.ChunkedArray) -> tuple[np.ndarray, list[dict], dict[int, list[str]]]:
    """Row indices to tile (the first row of each sha256, and every row without one), the duplicates,
    and canonical row index -> duplicate keys (in row order)."""
    valid = pc.fill_null(pc.not_equal(shas, ""), False)  # null or "" : no hash, never a duplicate
    present = np.flatnonzero(valid.to_numpy(zero_copy_only=False))
    codes = shas.filter(valid).combine_chunks().dictionary_encode().indices  # hashing, no string sort
    codes = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    _, first = np.unique(codes, return_index=True)  # codes are numbered by first appearance
    canonical = present[first[codes]]
    is_dup = np.zeros(keys.size, bool)
    is_dup[present] = canonical != present
    duplicates, dup_keys = [], {}
    canon_of = np.full(keys.size, -1)
    canon_of[present] = canonical
    for i in np.flatnonzero(is_dup):
        c = int(canon_of[i])
        duplicates.append({"key": keys[i], "duplicate_of": keys[c], "sha256": shas[int(i)].as_py()})
        dup_keys.setdefault(c, []).append(keys[i])
    return np.flatnonzero(~is_dup), duplicates, dup_keys


def _tile_counts(table: pa.Table, patch: int) -> np.ndarray:
    """:func:`curation.sharding.tiling.tile_count` per row; 1 where the size is unknown or zero (decoding decides)."""
    w = pc.fill_null(table.column("width"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    h = pc.fill_null(table.column("height"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    known = (w != 0) & (h != 0)
    return np.where(known, (w // patch) * (h // patch), 1)


def _pack(estimates: list[float], shard_bytes: int) -> list[int]:
    """Greedy fill in row order: a new shard starts when the next image would overflow the current one."""
    shard_of, shard, current = [], 0, 0.0
    for est in estimates:
        if shard_of and current + est > shard_bytes:
            shard, current = shard + 1, 0.0
        shard_of.append(shard)
        current += est
    return shard_of


def make_plan(table: pa.Table, patch: int, shard_bytes: int, bytes_per_pixel: float, params: dict) -> Plan:
    """Sort, deduplicate, drop untileable images, then fill shards greedily by estimated PNG bytes.

    Column-at-a-time (numpy / Arrow); only the greedy fill is a loop, over plain floats: a 10^6-row
    kept table plans in seconds (benchmarks/scale.py).
    """
    table = table.sort_by([("raw_shard", "ascending"), ("key", "ascending")])
    fingerprint = _fingerprint(table, params)
    keys = table.column("key").to_numpy(zero_copy_only=False)
    keep, duplicates, dup_keys = _dedupe(keys, table.column("sha256"))
    n_tiles = _tile_counts(table, patch)[keep]
    too_small = [str(k) for k in keys[keep[n_tiles == 0]]]
    rows = keep[n_tiles > 0]
    shard_of = _pack(((n_tiles[n_tiles > 0] * patch * patch).astype(np.float64) * bytes_per_pixel).tolist(), shard_bytes)
    planned = table.take(pa.array(rows, pa.int64()))
    names = pa.array([ShardId.patches(i).name for i in range(shard_of[-1] + 1 if shard_of else 0)], pa.string())
    planned = planned.append_column("shard", names.take(pa.array(shard_of, pa.int64())))
    canon = np.array(sorted(dup_keys), np.int64)
    canon = canon[np.isin(canon, rows)]  # a too-small canonical image is not planned
    lengths = np.zeros(rows.size, np.int64)
    lengths[np.searchsorted(rows, canon)] = [len(dup_keys[int(c)]) for c in canon]
    values = [k for c in canon for k in dup_keys[int(c)]]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    planned = planned.append_column("duplicate_keys", pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.string())))
    return Plan(table=planned, n_shards=(shard_of[-1] + 1) if shard_of else 0, duplicates=duplicates,
                too_small=too_small, fingerprint=fingerprint)


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
