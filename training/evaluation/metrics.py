"""PSNR / SSIM exactly as the official test scripts compute them (scikit-image).

Images are ``H x W x 3`` float32 arrays in [0, 1] (``uint8 / 255``, as torchvision's ``ToTensor``
gives), clipped to [0, 1] before scoring, as ``compute_psnr_ssim`` in PromptIR/DyNet ``val_utils``.
Identical images have PSNR ``inf`` (returned without a divide-by-zero warning) and SSIM 1.0.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

BT601_Y = (65.481, 128.553, 24.966)


def center_crop_multiple(img: np.ndarray, base: int) -> np.ndarray:
    """Centre-crop ``H x W [x C]`` to multiples of ``base`` (the official ``crop_img``)."""
    h, w = img.shape[:2]
    ch, cw = h % base, w % base
    if h - ch == 0 or w - cw == 0:
        raise ValueError(f"image {w}x{h} is smaller than the crop base {base}")
    return img[ch // 2:h - ch + ch // 2, cw // 2:w - cw + cw // 2]


def to_float01(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; float input is clipped to [0, 1] and cast to float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def rgb_to_y_bt601(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB float image in [0, 1], returned in [0, 1] (MATLAB ``rgb2ycbcr`` Y).

    Same arithmetic as DSRIR's ``rgb2ycbcr(img, y_only=True)`` on float32 input.
    """
    y = np.dot(img.astype(np.float32), np.asarray(BT601_Y, dtype=np.float64)) + 16.0
    return (y / 255.0).astype(np.float32)


def psnr(clean: np.ndarray, restored: np.ndarray) -> float:
    """scikit-image PSNR with ``data_range=1``; ``inf`` for identical images."""
    clean, restored = to_float01(clean), to_float01(restored)
    if clean.shape != restored.shape:
        raise ValueError(f"shape mismatch {clean.shape} vs {restored.shape}")
    if np.array_equal(clean, restored):
        return math.inf
    return float(peak_signal_noise_ratio(clean, restored, data_range=1))


def ssim(clean: np.ndarray, restored: np.ndarray) -> float:
    """scikit-image SSIM with ``data_range=1`` over the colour channels (``channel_axis=-1``).

    For a 2-D array this reproduces DSRIR's call on Y images (columns treated as channels).
    """
    clean, restored = to_float01(clean), to_float01(restored)
    if clean.shape != restored.shape:
        raise ValueError(f"shape mismatch {clean.shape} vs {restored.shape}")
    return float(structural_similarity(clean, restored, data_range=1, channel_axis=-1))


def score_pair(clean: np.ndarray, restored: np.ndarray, y_channel: bool = False) -> tuple[float, float]:
    """(PSNR, SSIM) of one image pair; ``y_channel`` scores BT.601 luma as DSRIR does for Rain100L."""
    clean, restored = to_float01(clean), to_float01(restored)
    if y_channel:
        clean, restored = rgb_to_y_bt601(clean), rgb_to_y_bt601(restored)
    return psnr(clean, restored), ssim(clean, restored)


def mean_or_nan(values: list[float]) -> float:
    """Arithmetic mean (``inf`` if any value is ``inf``, as the official AverageMeter); nan if empty."""
    return float(np.mean(values)) if values else math.nan
