"""Restore one image array with a loaded network: :func:`restore_image` (the Python API's helper).

It hides the tensor plumbing a caller would otherwise repeat: H x W x 3 array in, same shape and
dtype out (uint8, uint16 — 16-bit precision kept — or float in [0, 1]), run on the model's own
device, tiled through :func:`dynet_model.tiling.restore_tiled` when ``tile`` > 0 so memory stays
bounded on large photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .tiling import restore_tiled

_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def restore_image(model: nn.Module, rgb: np.ndarray, *, tile: int = 0, overlap: int = 32,
                  reuse: Sequence[int] | None = None) -> np.ndarray:
    """Restore an ``H x W x 3`` image; returns the same shape and dtype.

    ``tile`` > 0 processes ``tile`` x ``tile`` windows overlapping by ``overlap`` pixels, blended
    without seams; ``reuse`` overrides a DyNet model's depth vector for this call.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB array, got shape {rgb.shape}")
    scale = _INT_SCALE.get(rgb.dtype)
    if scale is None and rgb.dtype.kind != "f":
        raise ValueError(f"expected uint8, uint16 or float pixels, got {rgb.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(rgb).astype(np.float32) / (scale or 1.0))
    x = x.permute(2, 0, 1)[None].to(_model_device(model))
    y = restore_tiled(model, x, tile=tile, overlap=overlap, reuse=reuse)
    if isinstance(y, (tuple, list)):
        y = y[0]
    out = y[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    if scale is None:
        return out.astype(rgb.dtype, copy=False)
    return np.round(out * scale).astype(rgb.dtype)
