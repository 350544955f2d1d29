"""Flat-region detector: synthetic flat / textured / half-flat tiles, and real photographs (Urban100)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curation.sharding import flat, tiling


def _noise(h, w, sigma, seed=0):
    return np.random.default_rng(seed).normal(0, sigma, size=(h, w, 1))


def test_constant_and_ramp_and_noisy_flat_are_flat():
    const = np.full((128, 128, 3), 90, np.uint8)
    ramp = np.clip(np.linspace(0, 255, 128)[None, :, None] + np.zeros((128, 128, 3)), 0, 255).astype(np.uint8)
    noisy = np.clip(120 + _noise(128, 128, 3.0) + np.zeros((128, 128, 3)), 0, 255).astype(np.uint8)
    for img in (const, ramp, noisy):  # a steep ramp (2 levels/px) has a large but constant gradient
        assert flat.flat_fraction(img, cell=32) == 1.0


def test_textured_is_not_flat():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    stripes = np.zeros((128, 128, 3), np.uint8)
    stripes[:, ::12] = 255  # 2-px lines every 12 px: structure, not flatness
    stripes[:, 1::12] = 255
    checker = ((np.indices((128, 128)).sum(0) // 16) % 2 * 200).astype(np.uint8)[..., None].repeat(3, 2)
    for img in (noise, stripes, checker):
        assert flat.flat_fraction(img, cell=32) == 0.0


def test_half_flat_tile_is_half_flat_and_threshold_matters():
    rng = np.random.default_rng(2)
    img = np.full((128, 128, 3), 200, np.uint8)
    img[:, :64] = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
    assert flat.flat_fraction(img, cell=32) == pytest.approx(0.5)
    grid = tiling.tile_image(img, patch=64, cell=32)
    assert [t.flat_fraction for t in grid] == [0.0, 1.0, 0.0, 1.0]
    for t in grid:  # a tile's verdict depends only on its own pixels
        assert flat.flat_fraction(tiling.crop(img, t.box), cell=32) == t.flat_fraction
    faint = np.clip(128 + _noise(128, 128, 12.0, seed=3) + np.zeros((128, 128, 3)), 0, 255).astype(np.uint8)
    assert flat.flat_fraction(faint, cell=32, threshold=0.3) == 0.0
    assert flat.flat_fraction(faint, cell=32, threshold=50.0) == 1.0


def test_flat_map_rejects_bad_cells_and_handles_small_images():
    for bad in (30, 8):
        with pytest.raises(ValueError):
            flat.cell_flat_map(np.zeros((64, 64, 3), np.uint8), cell=bad)
    fl, std = flat.cell_flat_map(np.zeros((20, 300, 3), np.uint8), cell=32)
    assert fl.shape == (0, 9) and std.shape == (0, 9)
    with pytest.raises(ValueError):
        flat.tile_flat_fractions(np.zeros((4, 4), bool), patch=100, cell=32)


def _urban(shared_dir, name):
    return np.asarray(Image.open(shared_dir / "data" / "samples" / "Urban100_large" / f"{name}.png").convert("RGB"))


def test_real_photographs_sky_and_walls_flagged_texture_kept(shared_dir):
    """Urban100: sky (img_005 right, img_010 left) and a bare wall (img_009 top-left) are flat; facades are not."""
    sky = {t.box: t.flat_fraction for t in tiling.tile_image(_urban(shared_dir, "img_005"), patch=256)}
    assert sky[(768, 0, 1024, 256)] > 0.9  # clear blue sky beside the tower
    assert sky[(768, 512, 1024, 768)] > 0.9
    assert sky[(0, 0, 256, 256)] == 0.0  # window grid of the tower
    clouds = {t.box: t.flat_fraction for t in tiling.tile_image(_urban(shared_dir, "img_010"), patch=256)}
    assert clouds[(0, 0, 256, 256)] > 0.5  # overcast sky
    assert clouds[(512, 256, 768, 512)] == 0.0  # facade with windows
    wall = {t.box: t.flat_fraction for t in tiling.tile_image(_urban(shared_dir, "img_009"), patch=256)}
    assert wall[(0, 0, 256, 256)] > 0.5  # white wall of the stairwell
    assert wall[(256, 256, 512, 512)] == 0.0  # the stairs and the person
    dense = tiling.tile_image(_urban(shared_dir, "img_006"), patch=256)  # lockers everywhere
    assert len(dense) == 16 and max(t.flat_fraction for t in dense) <= 0.1  # every tile kept at --max-flat 0.5
