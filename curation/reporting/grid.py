"""Image grids for ``curation.report``: source images from raw shards, patches from patch shards."""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from common import pngcodec
from common.imagedecode import DecodeError, decode_rgb
from curation import rawshards
from curation.sharding.plan import raw_shard_id


def load_sources(raw_dir: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    """Decoded RGB images for rows ({"key", "raw_shard"}), reading only their members of each raw tar; failures are left out."""
    wanted: dict[str, set[str]] = {}
    for r in rows:
        wanted.setdefault(raw_shard_id(r["raw_shard"]), set()).add(r["key"])
    found: dict[str, np.ndarray] = {}
    for sid, keys in sorted(wanted.items()):
        tar_path = rawshards.shard_paths(raw_dir, sid)[0]
        if not tar_path.exists():
            continue
        try:
            images = rawshards.read_images(tar_path, keys)
        except (tarfile.TarError, EOFError, OSError):
            continue
        for key, data in images.items():
            try:
                found[key] = decode_rgb(data)
            except DecodeError:
                pass
    return found


def _thumb(rgb: np.ndarray, side: int) -> np.ndarray:
    img = Image.fromarray(rgb)
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)


def thumbnail_grid(images: list[np.ndarray | None], captions: list[str], path: Path, side: int, title: str) -> Path:
    """Save a grid of thumbnails (None → a grey "not decodable" square) with captions."""
    n = max(len(images), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    scale = side / 80
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale * 1.1, rows * scale * 1.35), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        if img is None:
            ax.imshow(np.full((side, side, 3), 128, np.uint8))
            cap = cap + "\n(not decodable / missing)"
        else:
            ax.imshow(_thumb(img, side))
        ax.set_title(cap, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def read_patches(shards_dir: Path, rows: list[dict]) -> dict[str, np.ndarray]:
    """Decoded patches (key -> RGB) for rows carrying key and shard, reading each shard tar once."""
    by_shard: dict[str, set[str]] = {}
    for r in rows:
        by_shard.setdefault(r["shard"], set()).add(f"{r['key']}.png")
    pngs: dict[str, bytes] = {}
    for shard, names in by_shard.items():
        with tarfile.open(shards_dir / f"{shard}.tar") as tar:
            for m in tar:
                if m.name in names:
                    pngs[m.name[:-4]] = tar.extractfile(m).read()
    return {k: pngcodec.decode_png(v) for k, v in pngs.items()}


def patch_grid_from_tars(shards_dir: Path, rows: list[dict], path: Path, side: int, title: str) -> Path:
    """Grid of patches read from their shard tars (rows carry key, shard, flat_fraction)."""
    patches = read_patches(shards_dir, rows)
    images = [patches.get(r["key"]) for r in rows]
    captions = [f"{r['key']}\nflat {r['flat_fraction']:.2f}" for r in rows]
    return thumbnail_grid(images, captions, path, side, title)
