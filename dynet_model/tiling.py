"""Whole-image inference of any size with overlapping tiles blended by linear ramps.

Each tile's output is weighted by a separable ramp that rises from ~0 to 1 across ``overlap``
pixels on every side that borders another tile (sides on the image border keep weight 1), and
the weighted sum is normalised by the summed weights. The weights change gradually, so there are no
hard seams; an image no larger than one tile is processed in a single forward (identical to untiled).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap`` overlap."""
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile), got {overlap} for tile {tile}")
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(n: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    w = torch.ones(n)
    if overlap > 0:
        r = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
        k = min(overlap, n)
        if ramp_start:
            w[:k] = torch.minimum(w[:k], r[:k])
        if ramp_end:
            w[n - k:] = torch.minimum(w[n - k:], r[:k].flip(0))
    return w


def _forward(model: nn.Module, x: torch.Tensor, reuse: Sequence[int] | None) -> torch.Tensor:
    return model(x, reuse=reuse) if reuse is not None else model(x)


@torch.no_grad()
def restore_tiled(model: nn.Module, image: torch.Tensor, tile: int = 0, overlap: int = 32,
                  reuse: Sequence[int] | None = None) -> torch.Tensor:
    """Restore a ``B x C x H x W`` image; ``tile=0`` (or an image within one tile) = a single forward."""
    h, w = image.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return _forward(model, image, reuse)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = torch.zeros_like(image)
    norm = torch.zeros(1, 1, h, w, device=image.device, dtype=image.dtype)
    for y0 in ys:
        th = min(tile, h)
        wy = _ramp(th, overlap, y0 > 0, y0 + th < h)
        for x0 in xs:
            tw = min(tile, w)
            wx = _ramp(tw, overlap, x0 > 0, x0 + tw < w)
            weight = (wy[:, None] * wx[None, :]).to(image.device, image.dtype)
            pred = _forward(model, image[..., y0:y0 + th, x0:x0 + tw], reuse)
            out[..., y0:y0 + th, x0:x0 + tw] += pred * weight
            norm[..., y0:y0 + th, x0:x0 + tw] += weight
    return out / norm
