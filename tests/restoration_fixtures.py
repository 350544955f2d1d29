"""Tiny datasets in the standard all-in-one layouts, generated on the fly (shared by this area's tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured but smooth uint8 RGB image (so SSIM/PSNR behave like on photos)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([np.sin(xx / rng.uniform(3, 9) + c) * np.cos(yy / rng.uniform(3, 9) - c)
                     for c in range(3)], axis=-1)
    img = 127.5 + 90 * base + rng.normal(0, 6, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def degrade(rng: np.random.Generator, img: np.ndarray, amount: float) -> np.ndarray:
    streaks = (rng.random(img.shape[:2]) < 0.05)[..., None] * 80
    return np.clip(img.astype(np.float32) * (1 - amount) + 255 * amount * 0.7 + streaks, 0, 255).astype(np.uint8)


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def make_test_sets(root: Path, *, n: int = 3, size: tuple[int, int] = (48, 64), seed: int = 0,
                   derain_naming: str = "dynet") -> dict[str, Path]:
    """test/{denoise/bsd68, derain/Rain100L/{input,target}, dehaze/{input,target}} with n images each."""
    rng = np.random.default_rng(seed)
    h, w = size
    bsd, rain, haze = root / "denoise" / "bsd68", root / "derain" / "Rain100L", root / "dehaze"
    for i in range(1, n + 1):
        save(bsd / f"img{i:03d}.png", smooth_image(rng, h, w))
        clean = smooth_image(rng, h, w)
        gt_name = f"norain-{i}.png" if derain_naming == "dynet" else f"{i}.png"
        lq_name = f"rain-{i}.png" if derain_naming == "dynet" else f"{i}.png"
        save(rain / "target" / gt_name, clean)
        save(rain / "input" / lq_name, degrade(rng, clean, 0.2))
        clean = smooth_image(rng, h, w)
        save(haze / "target" / f"{i:04d}.png", clean)
        save(haze / "input" / f"{i:04d}_0.8_0.2.png", degrade(rng, clean, 0.4))
    return {"bsd68": bsd, "rain100l": rain, "sots": haze}


def make_train_sets(root: Path, *, n: int = 3, size: tuple[int, int] = (40, 40), seed: int = 1) -> dict[str, Path]:
    """Train/{Denoise, Derain/{rainy,gt}, Dehaze/{synthetic/part1,original}}."""
    rng = np.random.default_rng(seed)
    h, w = size
    den, rain, haze = root / "Denoise", root / "Derain", root / "Dehaze"
    for i in range(1, n + 1):
        save(den / f"clean{i}.png", smooth_image(rng, h, w))
        clean = smooth_image(rng, h, w)
        save(rain / "gt" / f"norain-{i}.png", clean)
        save(rain / "rainy" / f"rain-{i}.png", degrade(rng, clean, 0.2))
        clean = smooth_image(rng, h, w)
        save(haze / "original" / f"{i:04d}.png", clean)
        save(haze / "synthetic" / "part1" / f"{i:04d}_0.8_0.2.png", degrade(rng, clean, 0.4))
    return {"denoise": den, "derain": rain, "dehaze": haze}


def random_image_file(path: Path, rng: np.random.Generator, size: tuple[int, int] = (20, 24)) -> Path:
    """A uniform-noise RGB image file (format from the suffix), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path
