"""Synthetic curation tables at any size for ``benchmarks/scale.py`` (no images scored, no pixels tiled).

Every table has exactly the columns the real stage writes (the schemas are imported from the stage
modules, so a schema change there shows up here): raw shards as ``curation.ingest`` writes them
(``NNNNN.parquet`` + ``NNNNN.tar`` + ``NNNNN_stats.json``), score tables as ``curation.score``
(``curation.scoring.shard_task.SCHEMA`` with its run metadata), and patch / dropped-tile tables,
``done.json`` markers, ``manifest.json`` and ``shard_config.yaml`` as ``curation.shard`` writes
them from its plan. Distributions are plausible for Laion-HR-like input: ≈ 6 % download failures,
≈ 10 % below the 1024-px minimum side, 1 % exact duplicates, NIQE/BRISQUE/NIMA around the
thresholds so that ≈ 50 % are kept. Tars hold a tiny (8×8 PNG) thumbnail per sample so any random
sample the report draws can be decoded; pixel cost is measured by the image benchmark, not here.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml
from PIL import Image

from curation.ingest import SCHEMA as RAW_SCHEMA
from curation.layout import DROPPED_SCHEMA, PATCH_SCHEMA, SCORE_SCHEMA
from curation.layout import SCORE_METADATA_KEY as METADATA_KEY

RAW_SHARD_SIZE = 1000  # curation.ingest --shard-size / curation.download --slice-size default
SOURCES = np.array(["laion-hr", "div2k", "flickr2k", "lsdir"])
SOURCE_P = [0.85, 0.02, 0.05, 0.08]


def _thumb(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _write_tar(path: Path, names: list[str] | np.ndarray, data: bytes) -> None:
    """A ustar tar of ``names`` (< 100 bytes each), each holding ``data``; headers built with numpy.

    Python's tarfile costs ≈ 20 µs per member, too slow for millions of synthetic members.
    """
    names = np.asarray(names, dtype="S100")
    n = names.size
    if len(data) > 512:
        raise ValueError("synthetic members are at most one block")
    tmpl = np.frombuffer(tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT), np.uint8).copy()
    tmpl[:100] = 0
    tmpl[124:136] = np.frombuffer(b"%011o\0" % len(data), np.uint8)  # size
    tmpl[100:108] = np.frombuffer(b"0000644\0", np.uint8)  # mode
    tmpl[148:156] = ord(" ")  # checksum field counts as spaces
    headers = np.tile(tmpl, (n, 1))
    headers[:, :100] = names.view(np.uint8).reshape(n, 100)
    chk = headers.sum(axis=1, dtype=np.int64)
    headers[:, 148:156] = np.frombuffer(b"".join(b"%06o\0 " % c for c in chk), np.uint8).reshape(n, 8)
    block = np.zeros((n, 512), np.uint8)
    block[:, :len(data)] = np.frombuffer(data, np.uint8)
    with open(path, "wb") as fh:
        fh.write(np.concatenate([headers, block], axis=1).tobytes())
        fh.write(b"\0" * 1024)


def _hex(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """``n`` random hex strings of ``nbytes`` bytes (one numpy view, no Python loop)."""
    return np.array([rng.bytes(n * nbytes).hex()]).view(f"U{2 * nbytes}")


def _sizes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    short = np.where(rng.random(n) < 0.10, rng.integers(480, 1024, n), rng.integers(1024, 2048, n))
    aspect = rng.choice([1.0, 1.333, 1.5, 1.778], n, p=[0.2, 0.4, 0.3, 0.1])
    landscape = rng.random(n) < 0.7
    long = (short * aspect).astype(np.int64)
    return np.where(landscape, long, short), np.where(landscape, short, long)


def write_raw_and_scores(root: Path, rows: int, seed: int = 0) -> dict:
    """raw/ (parquet, tar, stats) and scores/ (score parquet with metadata) for ``rows`` candidate images."""
    rng = np.random.default_rng(seed)
    raw_dir, score_dir = root / "raw", root / "scores"
    raw_dir.mkdir(parents=True, exist_ok=True)
    score_dir.mkdir(parents=True, exist_ok=True)
    thumb = _thumb(seed)
    meta = {"pyiqa_version": "synthetic", "metrics": {m: {"variant": "synthetic"} for m in ("niqe", "brisque", "nima")}}
    n_shards = -(-rows // RAW_SHARD_SIZE)
    sha_pool: list[str] = []
    for s in range(n_shards):
        n = min(RAW_SHARD_SIZE, rows - s * RAW_SHARD_SIZE)
        sid = f"{s:05d}"
        keys = np.char.add(sid, np.char.zfill(np.arange(n).astype(str), 4))
        source = rng.choice(SOURCES, n, p=SOURCE_P)
        u = rng.random(n)
        raw_status = np.where(u < 0.05, "failed_to_download", np.where(u < 0.06, "failed_to_decode", "success"))
        width, height = _sizes(rng, n)
        ok_raw = raw_status == "success"
        sha = _hex(rng, n, 32)
        if sha_pool:  # 1 % exact duplicates of images seen in earlier shards
            dup = rng.random(n) < 0.01
            sha[dup] = rng.choice(sha_pool, int(dup.sum()))
        sha_pool = list(sha[:20])
        url = np.where(source == "laion-hr", np.char.add(np.char.add("https://img.example.org/", sha.astype("U12")), ".jpg"),
                       np.char.add(np.char.add("file:///data/", source), np.char.add("/", np.char.add(keys, ".png"))))
        raw = pa.table({
            "key": keys, "url": url, "path": np.where(source == "laion-hr", None, np.char.add(keys, ".png")),
            "source": source, "status": raw_status,
            "error_message": np.where(ok_raw, None, np.where(u < 0.05, "timed out", "cannot identify image file")),
            "width": pa.array(width, pa.int32(), mask=~ok_raw), "height": pa.array(height, pa.int32(), mask=~ok_raw),
            "sha256": np.where(ok_raw, sha, None), "size_bytes": rng.integers(300_000, 4_000_000, n),
            "format": np.where(ok_raw, "JPEG", None)}, schema=RAW_SCHEMA)
        pq.write_table(raw, raw_dir / f"{sid}.parquet")
        _write_tar(raw_dir / f"{sid}.tar", np.char.add(keys[ok_raw], ".png"), thumb)
        (raw_dir / f"{sid}_stats.json").write_text(json.dumps({"count": n, "successes": int(ok_raw.sum())}))
        v = rng.random(n)
        # score measures, the filter decides: small images are scored (status ok) and dropped by min side
        status = np.where(~ok_raw, "download_failed", np.where(v < 0.01, "decode_error",
                                                               np.where(v < 0.011, "too_large", "ok")))
        ok = status == "ok"
        metric = {"niqe": rng.normal(4.8, 1.1, n), "brisque": rng.normal(36, 9, n), "nima": rng.normal(5.0, 0.5, n)}
        cols = {"key": keys, "raw_shard": np.full(n, sid), "source": source, "url": url,
                "sha256": np.where(ok_raw, sha, None), "width": pa.array(width, mask=~ok_raw),
                "height": pa.array(height, mask=~ok_raw), **{m: pa.array(x, mask=~ok) for m, x in metric.items()},
                "status": status, "error": np.where(ok, None, np.char.add(status, ": synthetic"))}
        table = pa.table(cols, schema=SCORE_SCHEMA).replace_schema_metadata(
            {METADATA_KEY: json.dumps({**meta, "raw_shard": sid})})
        pq.write_table(table, score_dir / f"{sid}.parquet")
    return {"raw_shards": n_shards}


def write_patches(root: Path, patch: int = 512, seed: int = 1) -> dict:
    """shards/patches-*.{parquet,tar}, dropped-*.parquet, markers, manifest.json from shards/plan.parquet."""
    shards = root / "shards"
    plan = pq.read_table(shards / "plan.parquet")
    plan_json = json.loads((shards / "plan.json").read_text())
    rng = np.random.default_rng(seed)
    w, h = plan.column("width").to_numpy(), plan.column("height").to_numpy()
    nx, ny = w // patch, h // patch
    counts = nx * ny
    src = np.repeat(np.arange(plan.num_rows), counts)
    local = np.arange(src.size) - np.repeat(np.cumsum(counts) - counts, counts)
    x0 = (local % np.repeat(nx, counts)) * patch
    y0 = (local // np.repeat(nx, counts)) * patch
    flat = np.clip(rng.beta(0.6, 2.2, src.size), 0, 1)
    take = plan.take(pa.array(src))
    xs = pc.binary_join_element_wise("x", pc.cast(pa.array(x0), pa.string()), "")
    ys = pc.binary_join_element_wise("y", pc.cast(pa.array(y0), pa.string()), "")
    keys = pc.binary_join_element_wise(take.column("key"), xs, ys, "_")
    coords = np.stack([x0, y0, x0 + patch, y0 + patch], 1).astype(np.int32).ravel()
    box = pa.ListArray.from_arrays(pa.array(np.arange(0, coords.size + 1, 4, dtype=np.int32)), pa.array(coords))
    shard_idx = pc.cast(pc.utf8_slice_codeunits(take.column("shard"), len("patches-")), pa.int64()).to_numpy()
    full = pa.table({
        "key": keys, "source_key": take.column("key"), "source_sha256": take.column("sha256"),
        "url": take.column("url"), "source": take.column("source"), "raw_shard": take.column("raw_shard"),
        "box": box, "flat_fraction": flat, "niqe": take.column("niqe"),
        "brisque": take.column("brisque"), "nima": take.column("nima"), "source_width": take.column("width"),
        "source_height": take.column("height"), "duplicate_keys": take.column("duplicate_keys"),
        "png_bytes": rng.integers(150_000, 600_000, src.size)})
    dropped_mask = flat > 0.5
    thumb = _thumb(seed)
    n_shards = int(plan.num_rows and shard_idx.max() + 1)
    bounds = np.searchsorted(shard_idx, np.arange(n_shards + 1))  # the plan is sorted by shard
    records = []
    for i in range(n_shards):
        name = f"patches-{i:06d}"
        part = full.slice(bounds[i], bounds[i + 1] - bounds[i])
        part = part.add_column(6, "shard", pa.array(np.full(part.num_rows, name)))
        drop = pa.array(dropped_mask[bounds[i]:bounds[i + 1]])
        kept, gone = part.filter(pc.invert(drop)), part.filter(drop)
        pq.write_table(kept.cast(PATCH_SCHEMA), shards / f"{name}.parquet")
        pq.write_table(gone.select([f.name for f in DROPPED_SCHEMA]).cast(DROPPED_SCHEMA),
                       shards / f"dropped-{i:06d}.parquet")
        _write_tar(shards / f"{name}.tar", np.char.add(kept.column("key").to_numpy(zero_copy_only=False).astype("S"), b".png"),
                   thumb)
        rec = {"name": f"{name}.tar", "samples": kept.num_rows, "bytes": int(pc.sum(kept.column("png_bytes")).as_py() or 0),
               "dropped_flat": gone.num_rows, "errors": [], "images": len(pc.unique(part.column("source_key"))),
               "tiles_total": part.num_rows}
        (shards / f"{name}.done.json").write_text(json.dumps(rec))
        records.append(rec)
    manifest = {"shards": [{"name": r["name"], "samples": r["samples"], "bytes": r["bytes"]} for r in records],
                "total_samples": sum(r["samples"] for r in records), "patch_size": patch,
                "images_tiled": plan.num_rows, "tiles_total": int(src.size), "tiles_dropped_flat": int(dropped_mask.sum()),
                "image_errors": [], **{k: plan_json.get(k, []) for k in ("duplicates", "too_small")},
                "plan_fingerprint": plan_json.get("fingerprint")}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    (shards / "shard_config.yaml").write_text(yaml.safe_dump({"patch": patch, "max_flat": 0.5, "flat_cell": 64,
                                                              "flat_threshold": 1.0}))
    return {"patches": manifest["total_samples"], "dropped_tiles": int(dropped_mask.sum()), "patch_shards": n_shards}
