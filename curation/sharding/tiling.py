"""Non-overlapping patch grid of one image, flat fractions per tile, patch keys.

The grid starts at the image's top-left corner: ``floor(W / patch) × floor(H / patch)`` tiles covering
exactly ``[0, floor(W/patch)·patch) × [0, floor(H/patch)·patch)``; the right/bottom remainder (less
than one patch) is discarded, and an image smaller than one patch in either side yields no tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.sharding import flat


@dataclass(frozen=True)
class Tile:
    """One patch of an image: its box in the (EXIF-oriented) image and its flat fraction."""

    row: int
    col: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1/y1 exclusive)
    flat_fraction: float


def tile_boxes(width: int, height: int, patch: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of the grid, row-major."""
    if patch <= 0:
        raise ValueError(f"patch size must be positive, got {patch}")
    return [(c * patch, r * patch, (c + 1) * patch, (r + 1) * patch)
            for r in range(height // patch) for c in range(width // patch)]


def tile_count(width: int, height: int, patch: int) -> int:
    """Number of tiles (symmetric in width/height, so EXIF rotation does not change it)."""
    return (width // patch) * (height // patch)


def tile_image(rgb: np.ndarray, patch: int, cell: int = flat.DEFAULT_CELL,
               threshold: float = flat.DEFAULT_THRESHOLD) -> list[Tile]:
    """Every grid tile of ``rgb`` with its flat fraction (row-major)."""
    h, w = rgb.shape[:2]
    rows, cols = h // patch, w // patch
    if rows == 0 or cols == 0:
        return []
    region = rgb[: rows * patch, : cols * patch]
    flat_cells, _ = flat.cell_flat_map(region, cell=cell, threshold=threshold)
    fractions = flat.tile_flat_fractions(flat_cells, patch, cell)
    return [Tile(row=r, col=c, box=(c * patch, r * patch, (c + 1) * patch, (r + 1) * patch),
                 flat_fraction=float(fractions[r, c]))
            for r in range(rows) for c in range(cols)]


def crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return rgb[y0:y1, x0:x1]


def patch_key(source_key: str, tile: Tile) -> str:
    """Sample key of a patch: ``SOURCEKEY_xX0_yY0``; dots become ``_`` so WebDataset groups .png/.json correctly."""
    return f"{source_key.replace('.', '_')}_x{tile.box[0]}_y{tile.box[1]}"
