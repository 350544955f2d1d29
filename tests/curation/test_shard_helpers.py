"""Small raw shards + kept.parquet written to the COMMON.md contracts, for the shard/query/report tests.

Images are synthetic with known structure: textured noise (never flat), constant colour (always
flat) or half/half, so the flat detector's verdict on each tile is predictable.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

KEPT_COLUMNS = ("key", "raw_shard", "source", "url", "sha256", "width", "height", "niqe", "brisque", "nima",
                "status", "kept")


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def flat_colour(h: int, w: int, value: int = 128) -> np.ndarray:
    yy = np.linspace(0, 20, h, dtype=np.float32)[:, None, None]  # a gentle ramp: still flat
    return np.clip(value + yy + np.zeros((h, w, 3), np.float32), 0, 255).astype(np.uint8)


def half_flat(h: int, w: int, seed: int) -> np.ndarray:
    img = textured(h, w, seed)
    img[:, w // 2:] = flat_colour(h, w - w // 2)
    return img


def encode(img: np.ndarray, fmt: str = "PNG", exif_orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(img)
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        pil.save(buf, format=fmt, exif=exif.tobytes(), quality=95)
    else:
        pil.save(buf, format=fmt)
    return buf.getvalue()


def write_raw_shard(raw_dir: Path, shard_id: str, samples: list[tuple[str, bytes, int, int]], source: str) -> list[dict]:
    """Write raw/NNNNN.{tar,parquet,_stats.json}; samples are (key, bytes, width, height); returns rows."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tarfile.open(raw_dir / f"{shard_id}.tar", "w") as tar:
        for key, data, w, h in samples:
            sha = hashlib.sha256(data).hexdigest()
            meta = {"key": key, "url": f"http://example.test/{key}.png", "status": "success", "width": w,
                    "height": h, "sha256": sha, "source": source}
            for name, payload in ((f"{key}.jpg", data), (f"{key}.json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            rows.append({**meta, "error_message": None})
    pq.write_table(pa.Table.from_pylist(rows), raw_dir / f"{shard_id}.parquet")
    (raw_dir / f"{shard_id}_stats.json").write_text(json.dumps({"count": len(rows)}))
    return rows


def make_dataset(root: Path, n_images: int = 6, size: tuple[int, int] = (200, 136), seed: int = 0) -> dict:
    """root/raw/ (two shards) + root/kept.parquet + root/decisions.parquet + root/filter_stats.json.

    Includes one exact duplicate, one image smaller than a 64-px patch and one EXIF-rotated JPEG.
    Returns {"kept": path, "raw": path, "keys": [...], "duplicate": (dup_key, original_key)}.
    """
    w, h = size
    makers = [textured, half_flat, lambda hh, ww, s: flat_colour(hh, ww, 60 + s)]
    shard_samples: dict[str, list] = {"00000": [], "00001": []}
    for i in range(n_images):
        img = makers[i % 3](h, w, seed + i)
        shard_samples["00000" if i < n_images // 2 else "00001"].append((f"img{i:04d}", encode(img), w, h))
    original = shard_samples["00000"][0]
    shard_samples["00001"].append(("dup0000", original[1], w, h))
    shard_samples["00001"].append(("tiny0000", encode(textured(40, 300, 7)), 300, 40))
    rot = textured(96, 160, 11)  # stored 160 wide × 96 high, EXIF 6 → displayed 96 × 160
    shard_samples["00001"].append(("exif0000", encode(rot, "JPEG", exif_orientation=6), 160, 96))
    raw = root / "raw"
    rows = []
    for sid, samples in shard_samples.items():
        for r in write_raw_shard(raw, sid, samples, source="synthetic"):
            rows.append({**r, "raw_shard": sid})
    rng = np.random.default_rng(seed)
    decisions = []
    for r in rows:
        scores = {"niqe": float(rng.uniform(2, 6)), "brisque": float(rng.uniform(5, 40)), "nima": float(rng.uniform(4, 6))}
        decisions.append({**{c: r.get(c) for c in KEPT_COLUMNS if c in r}, **scores, "status": "ok", "kept": True,
                          "drop_reason": None, "error": None})
    dropped = {**decisions[1], "key": "gone0000", "sha256": "0" * 64, "kept": False, "drop_reason": "niqe", "niqe": 9.5}
    decisions.append(dropped)
    pq.write_table(pa.Table.from_pylist(decisions), root / "decisions.parquet")
    kept = [{c: d[c] for c in KEPT_COLUMNS} for d in decisions if d["kept"]]
    pq.write_table(pa.Table.from_pylist(kept), root / "kept.parquet")
    (root / "filter_stats.json").write_text(json.dumps(
        {"thresholds": {"niqe": 6.0, "brisque": 40.0, "nima": 4.0}, "counts": {"kept": len(kept), "niqe": 1}}))
    return {"kept": root / "kept.parquet", "raw": raw, "keys": [k["key"] for k in kept],
            "duplicate": ("dup0000", original[0])}


def test_helper_writes_contract_tables(tmp_path):
    info = make_dataset(tmp_path, n_images=3)
    kept = pq.read_table(info["kept"])
    assert tuple(kept.column_names) == KEPT_COLUMNS
    assert kept.num_rows == 3 + 3  # images + duplicate + tiny + exif
    from curation import rawshards
    assert rawshards.list_complete_shards(info["raw"]) == ["00000", "00001"]
    for sid in ("00000", "00001"):
        assert rawshards.check_shard(info["raw"], sid) == (True, "ok")
