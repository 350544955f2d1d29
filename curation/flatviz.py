"""Pictures of the flat-region detector: flat cells tinted red, kept tiles framed green, dropped ones red.

``python -m curation.flatviz IMAGE [IMAGE ...] --out flat.png [--patch 512] [--flat-cell 64]
[--flat-threshold 1.0] [--max-flat 0.5] [--width 480]`` — used for docs/curation-shard.md and by
``curation.report`` for random kept images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.cliconfig import parse_config
from common.imagedecode import decode_rgb
from curation.sharding import flat, tiling


def overlay(rgb: np.ndarray, patch: int, cell: int, threshold: float) -> np.ndarray:
    """Copy of ``rgb`` with flat cells blended towards red (only the tiled region is analysed)."""
    flat_cells, _ = flat.cell_flat_map(rgb, cell=cell, threshold=threshold)
    shown = rgb.astype(np.float32).copy()
    mask = np.kron(flat_cells, np.ones((cell, cell), bool))
    region = shown[: mask.shape[0], : mask.shape[1]]
    region[mask] = 0.45 * region[mask] + 0.55 * np.array([255, 0, 0], np.float32)
    return shown.astype(np.uint8)


def draw_flat_panel(ax, rgb: np.ndarray, title: str, patch: int, cell: int, threshold: float, max_flat: float) -> None:
    """Overlay + tile frames (green kept, red dropped) + each tile's flat fraction."""
    ax.imshow(overlay(rgb, patch, cell, threshold))
    for t in tiling.tile_image(rgb, patch, cell=cell, threshold=threshold):
        x0, y0, x1, y1 = t.box
        colour = "red" if t.flat_fraction > max_flat else "lime"
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
        ax.text(x0 + 6, y0 + 6, f"{t.flat_fraction:.2f}", color="white", fontsize=7, va="top",
                bbox={"facecolor": colour, "alpha": 0.6, "pad": 1, "edgecolor": "none"})
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def flat_figure(images: list[tuple[str, np.ndarray]], out: str | Path, patch: int, cell: int = flat.DEFAULT_CELL,
                threshold: float = flat.DEFAULT_THRESHOLD, max_flat: float = 0.5, columns: int = 3,
                width: float = 4.0, dpi: int = 80) -> Path:
    """Save a grid of flat overlays; returns the PNG path."""
    n = max(len(images), 1)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, width * 0.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, rgb) in zip(axes.flat, images):
        draw_flat_panel(ax, rgb, title, patch, cell, threshold, max_flat)
    fig.suptitle(f"flat cells (red tint, {cell}px, std of Sobel magnitude < {threshold}); tiles {patch}px: "
                 f"green kept, red dropped (flat fraction > {max_flat})", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


@dataclass
class FlatVizConfig:
    """Draw the flat-region detector's verdict on image files."""

    images: list[str] = field(metadata={"positional": True, "help": "image files"})
    out: str = field(default="flat.png", metadata={"help": "output PNG"})
    patch: int = field(default=512, metadata={"help": "tile side in pixels"})
    flat_cell: int = field(default=flat.DEFAULT_CELL, metadata={"help": "flat-detector cell side in pixels"})
    flat_threshold: float = field(default=flat.DEFAULT_THRESHOLD, metadata={"help": "flat threshold (see curation.sharding.flat)"})
    max_flat: float = field(default=0.5, metadata={"help": "tiles with a larger flat fraction are drawn as dropped"})
    columns: int = field(default=3, metadata={"help": "panels per row"})
    dpi: int = field(default=80, metadata={"help": "figure resolution"})


def main(argv: list[str] | None = None) -> Path:
    cfg = parse_config(FlatVizConfig, argv)
    images = [(Path(p).name, decode_rgb(Path(p).read_bytes())) for p in cfg.images]
    path = flat_figure(images, cfg.out, cfg.patch, cfg.flat_cell, cfg.flat_threshold, cfg.max_flat, cfg.columns, dpi=cfg.dpi)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
