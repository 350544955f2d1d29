"""Helpers for the score / filter tests (no tests here): a raw-shard writer, image makers, TEST-ONLY NIMA weights.

The raw-shard writer follows the contract in ``curation/rawshards.py``: ``NNNNN.tar`` with
``KEY.jpg`` + ``KEY.json``, ``NNNNN.parquet`` with key,url,status,error_message,width,height,sha256,source,
and ``NNNNN_stats.json`` written last.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

TEST_NIMA_NAME = "TEST_ONLY_random_nima_weights.pth"


@dataclass
class Sample:
    key: str
    data: bytes | None  # image bytes written as KEY.<ext>; None → no image member
    status: str = "success"
    error_message: str | None = None
    ext: str = "jpg"
    extra_members: dict[str, bytes] = field(default_factory=dict)  # e.g. {"pdf": b"%PDF"} → KEY.pdf


def natural_image(size: tuple[int, int] = (160, 128), seed: int = 0) -> np.ndarray:
    """A smooth, textured, photo-like RGB uint8 image of (width, height)."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = 0.5 + 0.2 * np.sin(xx / (9 + 3 * c + seed % 5)) * np.cos(yy / (13 + c))
        for _ in range(6):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 40)
            img[..., c] += rng.uniform(-0.25, 0.25) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    img += rng.normal(0, 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kw) -> bytes:
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}) | kw)
    return buf.getvalue()


def write_raw_shard(raw_dir: Path, shard_id: str, samples: list[Sample], source: str = "test") -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tarfile.open(raw_dir / f"{shard_id}.tar", "w") as tar:
        for s in samples:
            sha = hashlib.sha256(s.data).hexdigest() if s.data is not None and s.status == "success" else None
            meta = {"key": s.key, "url": f"http://example.invalid/{s.key}.jpg", "status": s.status}
            members: dict[str, bytes] = {}
            if s.status == "success":
                if s.data is not None:
                    members[f"{s.key}.{s.ext}"] = s.data
                members.update({f"{s.key}.{ext}": b for ext, b in s.extra_members.items()})
                members[f"{s.key}.json"] = json.dumps(meta).encode()
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            rows.append({"key": s.key, "url": meta["url"], "status": s.status, "error_message": s.error_message,
                         "width": None, "height": None, "sha256": sha, "source": source})
    pq.write_table(pa.Table.from_pylist(rows), raw_dir / f"{shard_id}.parquet")
    (raw_dir / f"{shard_id}_stats.json").write_text(json.dumps({"count": len(rows)}))


_NIMA_DONE: dict[str, Path] = {}


def install_test_nima(work_dir: Path) -> Path:
    """Create clearly-labelled TEST-ONLY random NIMA weights and install them into the (temp) pyiqa cache."""
    from curation.weights import install, pyiqa_cache_dir

    cache_key = str(pyiqa_cache_dir())
    if cache_key not in _NIMA_DONE:
        import torch

        from curation.scoring.metrics import build_nima_network

        torch.manual_seed(0)
        path = work_dir / TEST_NIMA_NAME
        torch.save({"params": {k: v.half() if v.is_floating_point() else v
                                for k, v in build_nima_network().state_dict().items()}}, path)  # fp16: half the disk time
        _NIMA_DONE[cache_key] = installed = install(path, "nima")
        path.unlink()
        # ~110 MB in the session's temp TORCH_HOME (which conftest never deletes): remove it at exit
        atexit.register(installed.unlink, missing_ok=True)
        atexit.register(installed.with_name(installed.name + ".provenance.json").unlink, missing_ok=True)
    return _NIMA_DONE[cache_key]
