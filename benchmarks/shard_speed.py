"""Speed of curation.shard: patches/s per core end to end, split into decode / tile+flat / encode / write,
against the floor of decoding the images and PNG-encoding the same patches alone.

``python benchmarks/shard_speed.py [--images DIR] [--repeat 4] [--patch 512] [--out shard_speed.json]``

Images: every image file in ``--images`` (e.g. ../shared/data/samples/Urban100_large), else generated
photo-like images (smooth gradients + texture). They are written into one raw shard
(curation.rawshards format); each copy (``--repeat``) gets its own key and a distinct sha256 in
kept.parquet so the duplicate filter does not collapse them. The end-to-end run is in-process
(``--workers 0``), i.e. one core; Dask scaling is not part of this figure.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import pngcodec
from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from common.imagedecode import decode_rgb, probe_size
from curation import shard
from curation.sharding import tiling
from curation.sharding.write import read_marker

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class BenchConfig:
    """Benchmark curation.shard against decode + PNG encode alone."""

    images: str | None = field(default=None, metadata={"help": "folder of images; default: generated images"})
    repeat: int = field(default=4, metadata={"help": "copies of each image (distinct keys and sha256)"})
    generated: int = field(default=6, metadata={"help": "number of generated 1536x1024 images when --images is absent"})
    patch: int = field(default=512, metadata={"help": "patch size"})
    png_level: int = field(default=3, metadata={"help": "PNG level for the end-to-end run"})
    compare_levels: list[int] = field(default_factory=lambda: [1, 3, 6], metadata={
        "help": "PNG levels to compare (encode time and bytes per patch)"})
    out: str = field(default="shard_speed.json", metadata={"help": "JSON results file"})


def _generated(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:1024, 0:1536].astype(np.float32)
        sky = 120 + 80 * yy[..., None] / 1024 + np.zeros((1, 1, 3), np.float32)
        tex = rng.normal(0, 30, (1024, 1536, 1)).astype(np.float32) * (xx[..., None] > 512 + 200 * i % 700)
        img = np.clip(sky + tex + 20 * np.sin(xx / 7 + yy / 11)[..., None] * (yy[..., None] > 400), 0, 255)
        buf = __import__("io").BytesIO()
        Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
        out.append((f"gen{i:03d}", buf.getvalue()))
    return out


def _load_images(cfg: BenchConfig) -> list[tuple[str, bytes]]:
    if cfg.images:
        files = sorted(p for p in Path(cfg.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SystemExit(f"no images in {cfg.images}")
        return [(p.stem.replace(".", "_"), p.read_bytes()) for p in files]
    return _generated(cfg.generated)


def _write_inputs(root: Path, images: list[tuple[str, bytes]], repeat: int) -> tuple[Path, Path]:
    import io
    import tarfile
    raw = root / "raw"
    raw.mkdir()
    rows, kept = [], []
    with tarfile.open(raw / "00000.tar", "w") as tar:
        for r in range(repeat):
            for name, data in images:
                key = f"{name}r{r:02d}"
                w, h = probe_size(data)
                sha = hashlib.sha256(data + bytes([r])).hexdigest()  # distinct per copy: defeat dedupe on purpose
                meta = {"key": key, "url": f"file://{name}", "status": "success", "width": w, "height": h, "sha256": sha}
                for member, payload in ((f"{key}.png", data), (f"{key}.json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(member)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                rows.append({**meta, "error_message": None, "source": "bench"})
                kept.append({"key": key, "raw_shard": "00000", "source": "bench", "url": meta["url"], "sha256": sha,
                             "width": w, "height": h, "niqe": 4.0, "brisque": 20.0, "nima": 5.0, "status": "ok", "kept": True})
    pq.write_table(pa.Table.from_pylist(rows), raw / "00000.parquet")
    (raw / "00000_stats.json").write_text("{}")
    pq.write_table(pa.Table.from_pylist(kept), root / "kept.parquet")
    return root / "kept.parquet", raw


def _floor(images: list[tuple[str, bytes]], repeat: int, boxes_by_key: dict[str, list], levels: list[int]) -> dict:
    """Decode each image and PNG-encode exactly the patches the pipeline kept: the unavoidable work."""
    out = {}
    for level in levels:
        t_dec = t_enc = 0.0
        n = nbytes = 0
        c0 = time.process_time()
        for r in range(repeat):
            for name, data in images:
                t0 = time.perf_counter()
                rgb = decode_rgb(data)
                t1 = time.perf_counter()
                for box in boxes_by_key.get(f"{name}r{r:02d}", []):
                    nbytes += len(pngcodec.encode_png(tiling.crop(rgb, box), level))
                    n += 1
                t_dec += t1 - t0
                t_enc += time.perf_counter() - t1
        cpu = time.process_time() - c0
        out[f"level_{level}"] = {"patches": n, "decode_s": round(t_dec, 3), "encode_s": round(t_enc, 3),
                                 "cpu_s": round(cpu, 3), "patches_per_cpu_s": round(n / cpu, 2) if n else None,
                                 "patches_per_s": round(n / (t_dec + t_enc), 2) if n else None,
                                 "mean_png_bytes": round(nbytes / n) if n else None}
    return out


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    images = _load_images(cfg)
    with tempfile.TemporaryDirectory(prefix="shard_speed_") as tmp:
        root = Path(tmp)
        kept, raw = _write_inputs(root, images, cfg.repeat)
        args = ["--kept", str(kept), "--raw", str(raw), "--out", str(root / "shards"), "--patch", str(cfg.patch),
                "--png-level", str(cfg.png_level), "--shard-size", "100GB", "--workers", "0", "--log-level", "WARNING"]
        t0, c0 = time.perf_counter(), time.process_time()
        manifest = shard.main(args)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        marker = read_marker(root / "shards", 0)
        rows = pq.read_table(root / "shards" / "patches-000000.parquet", columns=["source_key", "box"]).to_pylist()
    boxes: dict[str, list] = {}
    for r in rows:
        boxes.setdefault(r["source_key"], []).append(tuple(r["box"]))
    n = manifest["total_samples"]
    timing = marker["timing"]
    floor = _floor(images, cfg.repeat, boxes, sorted(set(cfg.compare_levels) | {cfg.png_level}))
    floor_rate = floor[f"level_{cfg.png_level}"]["patches_per_s"]
    result = {
        "images": len(images) * cfg.repeat, "source": cfg.images or "generated", "patch": cfg.patch,
        "png_level": cfg.png_level, "patches_kept": n, "tiles_total": manifest["tiles_total"],
        "tiles_dropped_flat": manifest["tiles_dropped_flat"],
        "end_to_end": {"wall_s_including_startup": round(wall, 3), "cpu_s_including_startup": round(cpu, 3),
                       "patches_per_cpu_s": round(n / cpu, 2) if n else None,
                       "task_s": round(sum(timing.values()), 3),
                       "patches_per_s_per_core": round(n / sum(timing.values()), 2) if n else None,
                       "split_s": timing,
                       "split_fraction": {k: round(v / sum(timing.values()), 3) for k, v in timing.items()}},
        "floor_decode_plus_encode": floor,
        "end_to_end_vs_floor_wall": round(floor_rate / (n / sum(timing.values())), 3) if n and floor_rate else None,
        "end_to_end_vs_floor_cpu": (round(floor[f"level_{cfg.png_level}"]["patches_per_cpu_s"] / (n / cpu), 3)
                                    if n else None),
        "mean_patch_bytes": round(manifest["shards"][0]["bytes"] / n) if n else None,
    }
    atomic_write_json(cfg.out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
