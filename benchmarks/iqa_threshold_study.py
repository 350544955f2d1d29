"""NIQE / BRISQUE of clean vs synthetically degraded photos: the evidence behind curation.filter's defaults.

``python benchmarks/iqa_threshold_study.py --samples ../shared/data/samples --out benchmarks/results/iqa_threshold_study.json``

Scores clean reference photos (Kodak, Urban100 HR, Rain100L / SOTS clean targets) and the same Kodak
photos after JPEG q10, Gaussian blur sigma 2, x4 bicubic down+up-sampling (a "fake HR" upscale) and
Gaussian noise sigma 15, plus real rainy / hazy inputs. Single thread, shipped official parameters.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image, ImageFilter

from common.atomic import atomic_write_json
from common.cliconfig import parse_config
from curation.scoring.metrics import MetricSet
from curation.weights import require


@dataclass
class StudyConfig:
    """Score clean and degraded sample photos with NIQE and BRISQUE."""

    samples: str = field(default="../shared/data/samples", metadata={"help": "folder with Kodak24_500px, Urban100_large, ..."})
    out: str = field(default="benchmarks/results/iqa_threshold_study.json", metadata={"help": "JSON result file"})
    kodak: int = field(default=12, metadata={"help": "number of Kodak photos to degrade"})


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _degradations(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    noisy = np.asarray(img).astype(float) + np.random.default_rng(0).normal(0, 15, (h, w, 3))
    return {"kodak jpeg q10": _jpeg(img, 10), "kodak blur sigma2": img.filter(ImageFilter.GaussianBlur(2)),
            "kodak x4 bicubic upscale": img.resize((w // 4, h // 4), Image.BICUBIC).resize((w, h), Image.BICUBIC),
            "kodak noise sigma15": Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))}


def _groups(root: Path, kodak: int) -> dict[str, list[Image.Image]]:
    groups: dict[str, list[Image.Image]] = {}
    for f in sorted((root / "Kodak24_500px").glob("*.png"))[:kodak]:
        img = Image.open(f).convert("RGB")
        groups.setdefault("kodak clean", []).append(img)
        for name, deg in _degradations(img).items():
            groups.setdefault(name, []).append(deg)
    for name, pattern in (("urban100 HR", "Urban100_large/*.png"), ("rain100L clean", "Rain100L_10pairs/norain/*"),
                          ("rain100L rainy", "Rain100L_10pairs/rain/*"), ("SOTS clear", "SOTS_outdoor_2pairs/target/*"),
                          ("SOTS hazy", "SOTS_outdoor_2pairs/input/*")):
        groups[name] = [Image.open(f).convert("RGB") for f in sorted(root.glob(pattern))]
    return groups


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(StudyConfig, argv)
    torch.set_num_threads(1)
    ms = MetricSet(("niqe", "brisque"), "cpu", require(("niqe", "brisque")))
    result = {}
    for name, imgs in _groups(Path(cfg.samples), cfg.kodak).items():
        scores = np.array([[v for v in ms.score_native(ms.to_tensor(np.asarray(i))).values()] for i in imgs])
        result[name] = {"n": len(imgs), **{f"{m}_{stat}": round(float(fn(scores[:, j])), 2)
                                           for j, m in enumerate(("niqe", "brisque"))
                                           for stat, fn in (("min", np.min), ("median", np.median), ("max", np.max))}}
        r = result[name]
        print(f"{name:26s} n={r['n']:2d}  NIQE {r['niqe_median']:6.2f} [{r['niqe_min']:.2f}, {r['niqe_max']:.2f}]"
              f"  BRISQUE {r['brisque_median']:6.2f} [{r['brisque_min']:.2f}, {r['brisque_max']:.2f}]")
    atomic_write_json(cfg.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
