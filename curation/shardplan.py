"""Deterministic up-front plan for ``curation.shard``: which kept image goes into which output shard.

The plan depends only on kept.parquet and the tiling/sizing parameters, never on timing, so a rerun
(after a crash or kill -9) recomputes exactly the same assignment and each output shard is one
idempotent task. Exact duplicates (same sha256) are tiled once: the first key in (raw_shard, key)
order is tiled, the others are recorded as duplicates of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from curation.tiling import tile_count

REQUIRED_COLUMNS = ("key", "raw_shard", "sha256", "width", "height")
CARRIED_COLUMNS = ("key", "raw_shard", "source", "url", "sha256", "width", "height", "niqe", "brisque", "nima")
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
    """Raw shard ids are zero-padded decimal strings; an integer column is padded to 5 digits."""
    if value is None:
        raise ValueError("kept row without raw_shard")
    return f"{value:05d}" if isinstance(value, int) else str(value)


@dataclass
class Plan:
    """Output shards as lists of image rows, plus the duplicates and untileable images left out."""

    shards: list[list[dict]]
    duplicates: list[dict] = field(default_factory=list)  # {"key", "duplicate_of", "sha256"}
    too_small: list[str] = field(default_factory=list)  # keys of images smaller than one patch
    fingerprint: str = ""

    def summary(self) -> dict:
        return {"fingerprint": self.fingerprint,
                "shards": [[row["key"] for row in shard] for shard in self.shards],
                "duplicates": self.duplicates, "too_small": self.too_small}


def read_kept(path: str | Path) -> list[dict]:
    """Rows of kept.parquet (only ``kept == True`` rows when the column exists), contract-checked."""
    table = pq.read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing}; expected the curation.filter kept.parquet contract")
    rows = table.to_pylist()
    if "kept" in table.column_names:
        rows = [r for r in rows if r["kept"]]
    out = []
    for r in rows:
        row = {c: r.get(c) for c in CARRIED_COLUMNS}
        row["raw_shard"] = raw_shard_id(row["raw_shard"])
        out.append(row)
    keys = [r["key"] for r in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: duplicate keys in kept table")
    return out


def _fingerprint(rows: list[dict], params: dict) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for r in rows:
        h.update(f"{r['raw_shard']}\t{r['key']}\t{r['sha256']}\t{r['width']}\t{r['height']}\n".encode())
    return h.hexdigest()


def make_plan(rows: list[dict], patch: int, shard_bytes: int, bytes_per_pixel: float, params: dict) -> Plan:
    """Sort, deduplicate, drop untileable images, then fill shards greedily by estimated PNG bytes."""
    rows = sorted(rows, key=lambda r: (r["raw_shard"], r["key"]))
    first_by_sha: dict[str, dict] = {}
    unique, duplicates, too_small = [], [], []
    for r in rows:
        sha = r["sha256"]
        if sha and sha in first_by_sha:
            duplicates.append({"key": r["key"], "duplicate_of": first_by_sha[sha]["key"], "sha256": sha})
            continue
        if sha:
            first_by_sha[sha] = r
        unique.append(r)
    dup_keys: dict[str, list[str]] = {}
    for d in duplicates:
        dup_keys.setdefault(d["duplicate_of"], []).append(d["key"])
    shards: list[list[dict]] = []
    current, current_bytes = [], 0.0
    for r in unique:
        w, h = r["width"], r["height"]
        n_tiles = tile_count(int(w), int(h), patch) if w and h else 1  # unknown size: decode decides
        if n_tiles == 0:
            too_small.append(r["key"])
            continue
        est = n_tiles * patch * patch * bytes_per_pixel
        if current and current_bytes + est > shard_bytes:
            shards.append(current)
            current, current_bytes = [], 0.0
        current.append({**r, "duplicate_keys": dup_keys.get(r["key"], [])})
        current_bytes += est
    if current:
        shards.append(current)
    return Plan(shards=shards, duplicates=duplicates, too_small=too_small, fingerprint=_fingerprint(rows, params))
