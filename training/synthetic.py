"""Synthetic patch shards in the curation contract format, for tests, the demo and benchmarks.

The images are smooth random colour fields with a few sharp-edged shapes and fine stripes, so a
restoration network has structure to learn. Written with ``webdataset.TarWriter`` exactly like
``curation.shard`` writes real shards: ``KEY.png`` + ``KEY.json`` per sample and a ``manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from common.pngcodec import encode_png
from curation.layout import Manifest, ManifestShard


def synthetic_patch(rng: np.random.Generator, size: int) -> np.ndarray:
    """One ``size``×``size``×3 uint8 image: smooth field + rectangles/discs + stripes."""
    low = rng.random((4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(float(c) for c in rng.random(3))
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16 + 1, size // 4 + 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + r, y0 + r), colour, -1)
        else:
            cv2.circle(img, (x0, y0), r, colour, -1)
    yy = np.arange(size, dtype=np.float32)[:, None]
    img += 0.08 * np.sin(yy * rng.uniform(0.3, 1.2))[..., None]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 patch, encoded as curation.shard encodes its patches."""
    return encode_png(img)


def write_synthetic_shards(out_dir: str | Path, *, shards: int = 2, per_shard: int = 8, size: int = 64,
                           seed: int = 0, prefix: str = "patches") -> Path:
    """Write ``shards`` tar files of ``per_shard`` samples + ``manifest.json``; returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for s in range(shards):
        name = f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(out / name)) as sink:
            for i in range(per_shard):
                key = f"{s:06d}{i:06d}"
                meta = {"key": key, "source_key": f"synthetic-{key}", "source_sha256": "", "url": "",
                        "source": "synthetic", "box": [0, 0, size, size], "flat_fraction": 0.0,
                        "niqe": None, "brisque": None, "nima": None}
                sink.write({"__key__": key, "png": png_bytes(synthetic_patch(rng, size)),
                            "json": json.dumps(meta).encode()})
        entries.append(ManifestShard(name=name, samples=per_shard))
    Manifest(shards=entries, total_samples=shards * per_shard, patch_size=size).write(out)
    return out
