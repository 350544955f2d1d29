"""Pre-training input corruption (DyNet paper §3.2): 50 % of the crop degraded, a further 30 % masked.

How the areas are chosen (the paper does not say; this is our documented choice):

- The crop is tiled by a grid of ``degrade_block`` × ``degrade_block`` cells; exactly
  ``round(degrade_ratio × cells)`` of them, chosen uniformly at random, form the *degraded* region.
  With the defaults (crop 128, 32-px cells → 16 cells) that is 8 cells = exactly 50 % of the area.
- The crop is also tiled by a finer grid of ``mask_block`` cells (``degrade_block`` must be a
  multiple of it); ``round(mask_ratio × fine cells)`` of the fine cells that lie *outside* the
  degraded region are set to zero (MAE-style). Defaults: 16-px cells → 64 cells, 19 masked =
  29.7 % of the whole crop, so 79.7 % of the input is modified and 20.3 % is left clean.
- The degraded region gets ONE degradation per sample, picked uniformly from ``kinds``:
  ``jpeg`` (quality uniform in ``jpeg_quality``), ``gaussian`` (σ uniform in ``gaussian_sigma``, in
  0–255 units) or ``random`` (uniform noise of amplitude uniform in ``uniform_amplitude``, or
  salt-and-pepper with density uniform in ``saltpepper_density``, 50/50). The degradation is applied
  to the whole crop and pasted into the degraded cells, so JPEG blocks see real image context.
- The result is quantised back to uint8 (a real degraded image); the target is the clean crop.

Everything is drawn from the ``numpy.random.Generator`` passed in, so a sample is a pure function of
its seed (see :func:`training.data.sample_rng`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.augment import gaussian_noise

KINDS = ("jpeg", "gaussian", "random")


@dataclass(frozen=True)
class DegradeConfig:
    degrade_ratio: float = 0.5
    mask_ratio: float = 0.3
    degrade_block: int = 32
    mask_block: int = 16
    kinds: tuple[str, ...] = KINDS
    jpeg_quality: tuple[int, int] = (10, 60)
    gaussian_sigma: tuple[float, float] = (5.0, 50.0)
    uniform_amplitude: tuple[float, float] = (10.0, 60.0)
    saltpepper_density: tuple[float, float] = (0.02, 0.20)

    def validate(self, crop: int) -> None:
        if not 0.0 <= self.degrade_ratio <= 1.0 or not 0.0 <= self.mask_ratio <= 1.0:
            raise ValueError("degrade_ratio and mask_ratio must lie in [0, 1]")
        if self.degrade_ratio + self.mask_ratio > 1.0 + 1e-9:
            raise ValueError("degrade_ratio + mask_ratio must not exceed 1 (the masked area is outside the degraded one)")
        if crop % self.degrade_block or self.degrade_block % self.mask_block:
            raise ValueError(f"crop {crop} must be a multiple of degrade_block {self.degrade_block}, "
                             f"which must be a multiple of mask_block {self.mask_block}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")


@dataclass
class Corrupted:
    lq: np.ndarray  # H×W×3 uint8 model input
    degraded: np.ndarray  # H×W bool
    masked: np.ndarray  # H×W bool
    kind: str  # "jpeg" | "gaussian" | "uniform" | "saltpepper"
    level: float  # quality, σ, amplitude or density


def region_masks(height: int, width: int, rng: np.random.Generator, cfg: DegradeConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, masked) boolean H×W maps on the block grids described in the module docstring."""
    gh, gw = height // cfg.degrade_block, width // cfg.degrade_block
    coarse = np.zeros(gh * gw, dtype=bool)
    coarse[rng.permutation(gh * gw)[: round(cfg.degrade_ratio * gh * gw)]] = True
    f = cfg.degrade_block // cfg.mask_block
    fine_degraded = np.kron(coarse.reshape(gh, gw), np.ones((f, f), dtype=bool)).ravel()
    free = np.flatnonzero(~fine_degraded)
    n_mask = min(len(free), round(cfg.mask_ratio * fine_degraded.size))
    fine_masked = np.zeros(fine_degraded.size, dtype=bool)
    fine_masked[rng.choice(free, size=n_mask, replace=False)] = True
    up = np.ones((cfg.mask_block, cfg.mask_block), dtype=bool)
    degraded = np.kron(fine_degraded.reshape(gh * f, gw * f), up)
    masked = np.kron(fine_masked.reshape(gh * f, gw * f), up)
    return degraded, masked


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


def degrade_whole(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig) -> tuple[np.ndarray, str, float]:
    """Apply one randomly chosen degradation to the whole H×W×3 uint8 image."""
    kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
    x = img.astype(np.float32)
    if kind == "jpeg":
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        return jpeg(img, q), "jpeg", float(q)
    if kind == "gaussian":
        sigma = float(rng.uniform(*cfg.gaussian_sigma))
        out, name, level = x + gaussian_noise(x.shape, sigma, rng, dtype=np.float32), "gaussian", sigma
    elif rng.random() < 0.5:
        amp = float(rng.uniform(*cfg.uniform_amplitude))
        out, name, level = x + rng.uniform(-amp, amp, size=x.shape).astype(np.float32), "uniform", amp
    else:
        density = float(rng.uniform(*cfg.saltpepper_density))
        hit = rng.random(x.shape[:2]) < density
        salt = rng.random(x.shape[:2]) < 0.5
        out, name, level = x.copy(), "saltpepper", density
        out[hit & salt] = 255.0
        out[hit & ~salt] = 0.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), name, level


def corrupt(gt: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig) -> Corrupted:
    """Corrupt a clean H×W×3 uint8 crop; returns the input and where/how it was changed."""
    degraded, masked = region_masks(gt.shape[0], gt.shape[1], rng, cfg)
    whole, kind, level = degrade_whole(gt, rng, cfg)
    lq = gt.copy()
    lq[degraded] = whole[degraded]
    lq[masked] = 0
    return Corrupted(lq=lq, degraded=degraded, masked=masked, kind=kind, level=level)
