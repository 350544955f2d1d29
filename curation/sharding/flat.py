"""Flat-region detector: which parts of a photograph carry no texture worth restoring (sky, bare walls).

Definition (documented in docs/curation-shard.md, the same at every scale of the pipeline):

1. grey = BT.601 luma of the RGB uint8 image, as float32 in grey levels 0..255;
2. the grey image is downscaled ×4 by area averaging (4×4 box mean) — this suppresses sensor noise
   and JPEG ringing so that a noisy or blocky sky still counts as flat;
3. the Sobel gradient magnitude ``sqrt(gx² + gy²)`` (3×3 kernels scaled by 1/8, so a ramp of slope s
   grey levels per pixel has magnitude s) is computed on the downscaled image;
4. the image is cut into square cells of ``cell`` original pixels (``c = cell / 4`` downscaled pixels,
   at least 4); a cell's statistic is the *standard deviation* of the gradient magnitude over its
   ``(c-2)²`` interior pixels, i.e. the pixels whose 3×3 Sobel window lies inside the cell. A cell's
   verdict therefore depends only on its own pixels: no bleeding from a neighbouring textured cell,
   no image-border artefacts, and a tile's flat fraction is the same whether computed on the whole
   image or on the tile alone;
5. a cell is **flat** when that standard deviation is below ``threshold`` (default 1.0 grey level per
   downscaled pixel). This is LSDIR's criterion (variance of the Sobel magnitude per cell): a smooth
   gradient (sky darkening towards the horizon) has a large but constant magnitude and is flat;
   texture, edges and structure make the magnitude vary;
6. a tile's **flat fraction** is the fraction of its cells that are flat (cells are equal-sized, so
   this is the flat area fraction). Tile edges are cell edges because ``patch % cell == 0``.

Known limit: detail finer than the ×4 downscale (e.g. 1-px lines every 8 px, which alias to a
period-2 pattern the Sobel kernel cannot see) counts as flat, as in LSDIR.

Computed once per image (one ×4 resize and one Sobel pass), then cut into cells and tiles.
"""

from __future__ import annotations

import cv2
import numpy as np

DOWNSCALE = 4
DEFAULT_THRESHOLD = 1.0
DEFAULT_CELL = 64


def grey_luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H×W×3 uint8 image as float32."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {rgb.shape}")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def gradient_magnitude(grey_small: np.ndarray) -> np.ndarray:
    """Sobel magnitude of an already-downscaled float32 grey image, in grey levels per pixel.

    OpenCV's 3×3 Sobel is scaled by 1/8 so that a linear ramp of slope s grey levels per pixel has
    magnitude s (the unscaled kernel would give 8·s).
    """
    gx = cv2.Sobel(grey_small, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(grey_small, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT_101)
    return cv2.magnitude(gx, gy)


def cell_flat_map(rgb: np.ndarray, cell: int = DEFAULT_CELL, threshold: float = DEFAULT_THRESHOLD,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(flat bool map, per-cell std of gradient magnitude), both of shape (H // cell, W // cell).

    Only the top-left ``(H // cell) * cell × (W // cell) * cell`` region is analysed; the remainder
    cannot belong to any tile whose size is a multiple of ``cell``.
    """
    if cell % DOWNSCALE or cell < 4 * DOWNSCALE:
        raise ValueError(f"cell size must be a multiple of {DOWNSCALE} and at least {4 * DOWNSCALE}, got {cell}")
    h, w = rgb.shape[:2]
    rows, cols = h // cell, w // cell
    if rows == 0 or cols == 0:
        return np.zeros((rows, cols), bool), np.zeros((rows, cols), np.float32)
    grey = grey_luma(rgb[: rows * cell, : cols * cell])
    small = cv2.resize(grey, (cols * cell // DOWNSCALE, rows * cell // DOWNSCALE), interpolation=cv2.INTER_AREA)
    mag = gradient_magnitude(small)
    c = cell // DOWNSCALE
    blocks = mag.reshape(rows, c, cols, c).transpose(0, 2, 1, 3)[:, :, 1:-1, 1:-1].reshape(rows, cols, -1)
    std = blocks.std(axis=2, dtype=np.float64).astype(np.float32)
    return std < threshold, std


def tile_flat_fractions(flat_cells: np.ndarray, patch: int, cell: int) -> np.ndarray:
    """Flat fraction of every patch×patch tile of the grid, shape (H // patch, W // patch)."""
    if patch % cell:
        raise ValueError(f"patch size {patch} must be a multiple of the flat cell size {cell}")
    k = patch // cell
    rows, cols = flat_cells.shape[0] // k, flat_cells.shape[1] // k
    view = flat_cells[: rows * k, : cols * k].reshape(rows, k, cols, k)
    return view.mean(axis=(1, 3), dtype=np.float64)


def flat_fraction(rgb: np.ndarray, cell: int = DEFAULT_CELL, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Flat fraction of a single tile (its size must be a multiple of ``cell``)."""
    flat, _ = cell_flat_map(rgb, cell=cell, threshold=threshold)
    if flat.size == 0:
        raise ValueError(f"tile {rgb.shape[:2]} is smaller than one {cell}px cell")
    return float(flat.mean())
