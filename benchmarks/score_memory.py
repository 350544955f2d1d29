"""Peak memory of scoring one large photo with the fast engine: decode + NIQE + BRISQUE + NIMA preprocessing.

``python benchmarks/score_memory.py --megapixels 100 --out benchmarks/results/score_memory.json``

Writes a JPEG of the requested size (a tiled photo-like pattern with noise), then, in a fresh child
process (so nothing of the generation counts), warms the engine up on a small image (imports, numba
compilation), reads the RSS, decodes and scores the big JPEG, and reports the peak RSS (``VmHWM``, reset after the warm-up)
above that baseline in bytes per pixel. The engine's bound by construction: the decoded image (3 bytes per
pixel, plus PIL's 4 while decoding) and a fixed working set of strips; pyiqa needs ~430 bytes per pixel.
``tests/curation/test_score_memory.py`` runs the same child on a 40 MP image against that bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np
from PIL import Image

from common.atomic import atomic_write_json
from common.cliconfig import parse_config

CHILD = r"""
import json, sys
import numpy as np, psutil, torch

def hwm():
    # this process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak across fork+exec,
    # so a child of a big process (pytest after the pyiqa tests) would report the parent's peak.
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass
torch.set_num_threads(1)
import cv2
cv2.setNumThreads(1)
from common.imagedecode import decode_rgb
from curation.scoring.engine import FastMetricSet, nima_input
from curation.weights import require
path, metrics = sys.argv[1], tuple(sys.argv[2].split(","))
ms = FastMetricSet(metrics, "cpu", require(metrics))
small = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
ms.score_native(small), nima_input(small, 299)  # imports, numba compilation, allocator warm-up
data = open(path, "rb").read()
reset_hwm()
rss0 = psutil.Process().memory_info().rss
peak0 = hwm()
rgb = decode_rgb(data, max_pixels=10**9)
peak_decode = hwm()
scores = ms.score_native(rgb)
nima_input(rgb, 299)
peak = hwm()
print(json.dumps({"rss_before": rss0, "peak_before": peak0, "peak_after_decode": peak_decode, "peak": peak, "pixels": int(rgb.shape[0] * rgb.shape[1]),
                  "height": int(rgb.shape[0]), "width": int(rgb.shape[1]), "scores": scores}))
"""


@dataclass
class MemoryConfig:
    """Peak memory (bytes per pixel) of decoding and scoring one large JPEG with the fast engine."""

    out: str | None = field(default=None, metadata={"help": "JSON result file (else only printed)"})
    megapixels: float = field(default=100.0, metadata={"help": "image size in megapixels (3:2 aspect)"})
    metrics: str = field(default="niqe,brisque", metadata={"help": "native metrics to run (NIMA's preprocessing always runs)"})


def write_large_jpeg(path: Path, megapixels: float, seed: int = 0) -> tuple[int, int]:
    """A photo-like JPEG of about ``megapixels`` MP (3:2), built from a tiled textured tile plus noise."""
    w = round((megapixels * 1e6 * 1.5) ** 0.5)
    h = round(megapixels * 1e6 / w)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    tile = np.stack([127 + 60 * np.sin(xx / (7 + 3 * c)) * np.cos(yy / (11 + c)) for c in range(3)], -1)
    reps = (-(-h // 512), -(-w // 512), 1)
    img = np.tile(tile.astype(np.uint8), reps)[:h, :w]
    img = img + rng.integers(0, 12, (h, 1, 1), dtype=np.uint8)  # row-wise variation, cheap
    Image.fromarray(img).save(path, format="JPEG", quality=90)
    return w, h


def measure(jpeg: Path, metrics: str = "niqe,brisque") -> dict:
    """Run the child on ``jpeg``; return its figures plus bytes per pixel of the peak above the baseline."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(jpeg), metrics], cwd=REPO, capture_output=True,
                          text=True, check=False, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_above_baseline"] = res["peak"] - res["rss_before"]
    res["bytes_per_pixel"] = res["peak_above_baseline"] / res["pixels"]
    res["decode_bytes_per_pixel"] = (res["peak_after_decode"] - res["rss_before"]) / res["pixels"]
    return res


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(MemoryConfig, argv)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "large.jpg"
        write_large_jpeg(jpeg, cfg.megapixels)
        res = measure(jpeg, cfg.metrics)
    res["megapixels"] = res["pixels"] / 1e6
    print(f"{res['width']}x{res['height']} ({res['megapixels']:.1f} MP): peak {res['peak_above_baseline'] / 2**20:.0f} MiB "
          f"above baseline = {res['bytes_per_pixel']:.2f} bytes/pixel (decoding alone "
          f"{res['decode_bytes_per_pixel']:.2f}); scores {res['scores']}")
    if cfg.out:
        atomic_write_json(cfg.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
