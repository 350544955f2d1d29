"""Pre-training corruption: area ratios, mask coverage, every kind, determinism under a seed."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import sample_rng
from training.degrade import DegradeConfig, corrupt, degrade_whole, region_masks
from training.synthetic import synthetic_patch


def _crop(seed: int = 0, size: int = 128) -> np.ndarray:
    return synthetic_patch(np.random.default_rng(seed), size)


def test_default_areas_are_fifty_and_thirty_percent_disjoint():
    cfg = DegradeConfig()
    for i in range(20):
        degraded, masked = region_masks(128, 128, sample_rng(1, i), cfg)
        assert degraded.mean() == pytest.approx(0.5, abs=1e-9)
        assert masked.mean() == pytest.approx(0.30, abs=0.01)  # 19 of 64 cells = 29.7 %
        assert not (degraded & masked).any()


def test_corrupted_pixels_stay_inside_their_regions():
    gt = _crop()
    for i in range(12):
        c = corrupt(gt, sample_rng(2, i), DegradeConfig())
        changed = (c.lq != gt).any(axis=-1)
        assert not changed[~(c.degraded | c.masked)].any(), "clean region modified"
        assert (c.lq[c.masked] == 0).all()
        assert changed[c.degraded].mean() > 0.05, c.kind  # the degraded area really differs


def test_ratios_and_blocks_are_flags():
    cfg = DegradeConfig(degrade_ratio=0.25, mask_ratio=0.5, degrade_block=16, mask_block=8)
    degraded, masked = region_masks(64, 64, sample_rng(3), cfg)
    assert degraded.mean() == pytest.approx(0.25) and masked.mean() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        DegradeConfig(degrade_block=24, mask_block=16).validate(128)
    with pytest.raises(ValueError):
        DegradeConfig(degrade_ratio=0.8, mask_ratio=0.3).validate(128)


def test_every_kind_occurs_with_levels_in_range():
    gt, cfg = _crop(1, 64), DegradeConfig()
    seen: dict[str, list[float]] = {}
    for i in range(120):
        _, kind, level = degrade_whole(gt, sample_rng(4, i), cfg)
        seen.setdefault(kind, []).append(level)
    assert set(seen) == {"jpeg", "gaussian", "uniform", "saltpepper"}
    assert all(cfg.jpeg_quality[0] <= q <= cfg.jpeg_quality[1] for q in seen["jpeg"])
    assert all(cfg.gaussian_sigma[0] <= s <= cfg.gaussian_sigma[1] for s in seen["gaussian"])
    assert len(set(seen["jpeg"])) > 3  # random quality, not one fixed level


def test_same_seed_same_corruption_other_seed_differs():
    gt = _crop()
    a = corrupt(gt, sample_rng(7, 0, 1, 0, 5), DegradeConfig())
    b = corrupt(gt, sample_rng(7, 0, 1, 0, 5), DegradeConfig())
    c = corrupt(gt, sample_rng(7, 0, 2, 0, 5), DegradeConfig())
    assert np.array_equal(a.lq, b.lq) and a.kind == b.kind
    assert not np.array_equal(a.lq, c.lq)
