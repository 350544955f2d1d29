"""The trainer reads the manifest through curation.layout and refuses a crop larger than the patches at start-up."""

from __future__ import annotations

import logging

import pytest

from curation.layout import Manifest
from training.data import CropTooLarge, check_crop, load_val_set, resolve_shards
from training.degrade import DegradeConfig
from training.pretrain import main
from training.synthetic import write_synthetic_shards


def test_manifest_is_read_through_the_contract(tmp_path):
    root = write_synthetic_shards(tmp_path, shards=2, per_shard=3, size=48)
    manifest = Manifest.read(root)
    shards = resolve_shards(str(root))
    assert shards.urls == manifest.shard_urls(str(root)) and shards.total_samples == 6 == manifest.total_samples
    assert shards.patch_size == 48
    assert resolve_shards(f"{root}/patches-{{000000..000001}}.tar").patch_size is None  # no manifest: unknown
    check_crop(shards, 48)
    with pytest.raises(CropTooLarge, match="--crop 64 is larger than the 48-px patches"):
        check_crop(shards, 64)
    with pytest.raises(CropTooLarge):
        load_val_set(str(root), count=2, crop=64, degrade=DegradeConfig(degrade_block=16, mask_block=8))


def test_pretrain_exits_2_at_start_up_when_crop_exceeds_the_patch(tmp_path, caplog):
    root = write_synthetic_shards(tmp_path / "shards", shards=1, per_shard=2, size=48)
    caplog.set_level(logging.ERROR)
    with pytest.raises(SystemExit) as exited:
        main(["--shards", str(root), "--out", str(tmp_path / "run"), "--tiny", "--crop", "64", "--batch-size", "2",
              "--max-steps", "2", "--no-progress", "--no-tensorboard", "--threads", "1"])
    assert exited.value.code == 2
    assert "--crop 64 is larger than the 48-px patches" in caplog.text
    assert not (tmp_path / "run" / "log.jsonl").exists()  # refused before any step
