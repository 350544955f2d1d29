"""Tiled inference and the restore command (tiny networks, small images)."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynet_model.build import build_model
from dynet_model.checkpoint import save_model
from dynet_model.config import ModelConfig
from dynet_model.restore import main as restore_main
from dynet_model.tiling import restore_tiled, tile_starts


@pytest.fixture(scope="module")
def tiny_dynet():
    torch.manual_seed(0)
    return build_model(ModelConfig.tiny("dynet")).eval()


def smooth_image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 6 + 2, w // 6 + 2, generator=g), size=(h, w), mode="bilinear")


def column_jumps(img):
    return (img[..., :, 1:] - img[..., :, :-1]).abs().mean(dim=(0, 1, 2))


def test_tile_starts_cover_everything():
    assert tile_starts(40, 64, 8) == [0]
    for length, tile, overlap in [(90, 32, 8), (97, 33, 5), (64, 32, 0), (512, 128, 32)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_tiled_equals_untiled_when_image_fits_in_a_tile(tiny_dynet):
    x = smooth_image(40, 50)
    with torch.no_grad():
        assert torch.equal(restore_tiled(tiny_dynet, x, tile=64, overlap=16), tiny_dynet(x))


@pytest.mark.parametrize("hw", [(40, 70), (33, 45)])
def test_blend_weights_normalise_exactly(hw):
    """With an identity network (zeroed output conv) the blended tiles reproduce the input exactly."""
    model = build_model(ModelConfig.tiny("dynet")).eval()
    torch.nn.init.zeros_(model.head.weight)
    x = torch.rand(1, 3, *hw)
    torch.testing.assert_close(restore_tiled(model, x, tile=24, overlap=6), x, rtol=0, atol=1e-6)


def seam_excess(out, ref, axis):
    """Largest increase of the mean step between neighbouring columns (axis=-1) / rows (-2) over the
    untiled output, away from the 4 outermost lines (where padding differs, not tiling)."""
    if axis == -2:
        out, ref = out.transpose(-1, -2), ref.transpose(-1, -2)
    return (column_jumps(out) - column_jumps(ref))[4:-4].max().item()


def test_no_seams_across_tiles(tiny_dynet):
    x = smooth_image(40, 80)
    with torch.no_grad():
        full = tiny_dynet(x)
        blended = restore_tiled(tiny_dynet, x, tile=32, overlap=8)
        hard = restore_tiled(tiny_dynet, x, tile=32, overlap=0)  # abutting tiles, no blending
    assert (blended - full).abs().mean() < 0.03  # global ops (attention, prompts) see only one tile
    for axis in (-1, -2):
        assert seam_excess(blended, full, axis) < 0.012  # measured ~0.005
    assert seam_excess(hard, full, -1) > 0.012  # the check does detect a hard seam (measured ~0.047)


def _write_inputs(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 255, (37, 45, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "b.jpg"), rng.integers(0, 255, (50, 29, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image")


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_dynet):
    return save_model(tmp_path / "tiny.safetensors", tiny_dynet, ModelConfig.tiny("dynet"))


def test_restore_command_keeps_names_and_skips_corrupt(tmp_path, tiny_checkpoint):
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    report = restore_main([str(tmp_path / "in"), "-o", str(out), "--checkpoint", str(tiny_checkpoint)])
    status = {e["input"].rsplit("/", 1)[-1]: e["status"] for e in report}
    assert status["a.png"] == status["b.jpg"] == "ok"
    assert status["broken.png"] != "ok" and status["notes.txt"] != "ok"
    assert cv2.imread(str(out / "a.png")).shape == (37, 45, 3)
    assert cv2.imread(str(out / "b.png")).shape == (50, 29, 3)  # lossless PNG, not JPEG again
    assert not (out / "b.jpg").exists()
    assert not (out / "broken.png").exists()
    saved = json.loads((out / "restore_report.json").read_text())
    assert saved["restored"] == 2 and saved["skipped"] == 2
    assert all(e["seconds"] > 0 for e in saved["images"] if e["status"] == "ok")


def test_restore_tiled_equals_untiled_small_image_and_variants_differ(tmp_path, tiny_checkpoint):
    _write_inputs(tmp_path / "in")
    src = str(tmp_path / "in" / "a.png")
    common = ["--checkpoint", str(tiny_checkpoint)]
    restore_main([src, "-o", str(tmp_path / "whole"), *common])
    restore_main([src, "-o", str(tmp_path / "tiled"), "--tile", "64", "--tile-overlap", "16", *common])
    restore_main([src, "-o", str(tmp_path / "large"), "--variant", "l", *common])
    whole, tiled = cv2.imread(str(tmp_path / "whole/a.png")), cv2.imread(str(tmp_path / "tiled/a.png"))
    assert np.array_equal(whole, tiled)
    assert not np.array_equal(whole, cv2.imread(str(tmp_path / "large/a.png")))


def test_restore_refuses_without_checkpoint(tmp_path):
    _write_inputs(tmp_path / "in")
    with pytest.raises(SystemExit, match="checkpoint"):
        restore_main([str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "a.png").exists()
