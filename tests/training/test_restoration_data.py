"""Layouts, validation errors, the official noise rule and augmentations of training.restoration_data."""

from __future__ import annotations

import numpy as np
import pytest

from tests.restoration_fixtures import (
    make_test_sets,
    make_train_sets,
    save,
    smooth_image,
)
from training import restoration_data as rd
from training.evaluation.metrics import center_crop_multiple


def test_pair_layouts_and_sorted_order(tmp_path):
    sets = make_test_sets(tmp_path / "a", n=3)
    pairs = rd.list_derain_pairs(sets["rain100l"])
    assert [p.gt.name for p in pairs] == ["norain-1.png", "norain-2.png", "norain-3.png"]
    assert [p.name for p in pairs] == ["rain-1", "rain-2", "rain-3"]
    same = rd.list_derain_pairs(make_test_sets(tmp_path / "b", n=2, derain_naming="same")["rain100l"])
    assert [(p.lq.name, p.gt.name) for p in same] == [("1.png", "1.png"), ("2.png", "2.png")]
    haze = rd.list_dehaze_pairs(sets["sots"])
    assert (haze[0].lq.name, haze[0].gt.name) == ("0001_0.8_0.2.png", "0001.png")


def test_training_layouts(tmp_path):
    sets = make_train_sets(tmp_path, n=2)
    assert len(rd.list_derain_pairs(sets["derain"])) == 2  # rainy/gt
    haze = rd.list_dehaze_pairs(sets["dehaze"])  # synthetic/partK (recursive) -> original
    assert [p.gt.name for p in haze] == ["0001.png", "0002.png"]


def test_missing_folder_wrong_layout_empty_and_unmatched(tmp_path):
    with pytest.raises(rd.DatasetLayoutError, match="folder not found"):
        rd.list_derain_pairs(tmp_path / "nope")
    (tmp_path / "weird" / "foo").mkdir(parents=True)
    with pytest.raises(rd.DatasetLayoutError, match=r"expected one of the layouts.*found subfolders \['foo'\]"):
        rd.list_derain_pairs(tmp_path / "weird")
    (tmp_path / "empty").mkdir()
    with pytest.raises(rd.DatasetLayoutError, match="no images"):
        rd.list_images(tmp_path / "empty", what="BSD68")
    sets = make_test_sets(tmp_path / "t", n=2)
    save(sets["rain100l"] / "input" / "rain-99.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(rd.DatasetLayoutError, match=r"1 of 3 degraded images.*rain-99.png"):
        rd.list_derain_pairs(sets["rain100l"])
    save(sets["sots"] / "input" / "0077_1_1.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(rd.DatasetLayoutError, match="0077_1_1.png"):
        rd.list_dehaze_pairs(sets["sots"])


def test_noise_matches_reference_with_same_seed(tmp_path):
    """Same values as the official code: np.random.seed(0); clip(x + randn*sigma).astype(uint8)."""
    sets = make_test_sets(tmp_path, n=3, size=(40, 56))
    files = rd.list_images(sets["bsd68"])
    got = list(rd.iter_denoise_set(files, 25, 16, np.random.RandomState(0)))
    np.random.seed(0)
    for (name, noisy, clean), path in zip(got, files):
        ref_clean = center_crop_multiple(rd.read_rgb(path), 16)
        ref = np.clip(ref_clean + np.random.randn(*ref_clean.shape) * 25, 0, 255).astype(np.uint8)
        assert name == path.stem and np.array_equal(clean, ref_clean) and np.array_equal(noisy, ref)
    assert got[0][1].shape == (32, 48, 3)  # centre crop 40x56 -> 32x48


def test_noise_truncates_not_rounds():
    clean = np.full((8, 8, 3), 100, np.uint8)
    noise = np.random.RandomState(5).randn(8, 8, 3)
    noisy = rd.add_gaussian_noise(clean, 15, np.random.RandomState(5))
    assert np.array_equal(noisy, np.floor(np.clip(100 + noise * 15, 0, 255)).astype(np.uint8))
    assert (np.round(100 + noise * 15) != noisy).any()  # rounding would differ somewhere
    hi = rd.add_gaussian_noise(np.full((64, 64, 3), 250, np.uint8), 50, np.random.RandomState(1))
    assert hi.max() == 255  # clipped, never wrapped around
    assert (hi < 200).any()


def test_center_crop_multiple():
    img = np.arange(37 * 50 * 3).reshape(37, 50, 3)
    out = center_crop_multiple(img, 16)
    assert out.shape == (32, 48, 3)
    assert out[0, 0, 0] == img[2, 1, 0]  # crop 5 rows -> top 2; crop 2 cols -> left 1


def test_augment_modes_are_the_eight_dihedral_ops():
    img = smooth_image(np.random.default_rng(0), 6, 6)
    outs = [rd.augment(img, m) for m in range(8)]
    assert np.array_equal(outs[0], img)
    assert len({o.tobytes() for o in outs}) == 8  # all distinct
    assert np.array_equal(outs[2], np.rot90(img)) and np.array_equal(outs[1], img[::-1])
    with pytest.raises(ValueError):
        rd.augment(img, 8)


def test_random_patch_same_window_and_small_images():
    rng = np.random.default_rng(0)
    a = smooth_image(rng, 40, 50)
    p1, p2 = rd.random_patch([a, a.copy()], 16, np.random.default_rng(3))
    assert p1.shape == (16, 16, 3) and np.array_equal(p1, p2)
    small = rd.random_patch([a[:10, :12]], 16, rng)[0]
    assert small.shape == (16, 16, 3)
