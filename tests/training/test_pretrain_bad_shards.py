"""training.pretrain on a mistyped or empty --shards: exit 2 naming the path before training; a stream of
only unreadable shards stops with an error instead of spinning; the skip log stays short (issue 13, item 6)."""

from __future__ import annotations

import logging

import pytest

from training import pretrain
from training.data import (
    BatchStream,
    EmptyStreamError,
    ShardsNotFound,
    build_pipeline,
    resolve_shards,
)
from training.degrade import DegradeConfig
from training.synthetic import write_synthetic_shards

COMMON = ["--tiny", "--crop", "32", "--batch-size", "2", "--degrade-block", "16", "--mask-block", "8",
          "--shuffle-buffer", "8", "--no-progress", "--no-tensorboard", "--threads", "1", "--max-steps", "3",
          "--workers", "0"]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    return write_synthetic_shards(tmp_path_factory.mktemp("goodshards"), shards=2, per_shard=4, size=40)


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        pretrain.main(argv)
    return info.value.code


@pytest.mark.parametrize("spec", ["shardz", "shards/*.tar", "empty_folder", "shards/patches-{000007..000008}.tar"])
def test_a_shards_value_naming_nothing_exits_2_before_training(tmp_path, caplog, spec):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "shards").mkdir()
    bad = str(tmp_path / spec)
    with caplog.at_level(logging.ERROR, logger="training.pretrain"):
        assert _exit_code(["--shards", bad, "--out", str(tmp_path / "run")] + COMMON) == 2
    assert str(tmp_path) in caplog.text
    assert not (tmp_path / "run").exists()  # no run folder, no step-0 checkpoint


def test_globs_expand_and_a_typo_inside_a_list_is_named(shard_dir):
    found = resolve_shards(str(shard_dir / "patches-*.tar")).urls
    assert found == sorted(str(p) for p in shard_dir.glob("patches-*.tar")) and len(found) == 2
    with pytest.raises(ShardsNotFound, match="patches-000009.tar"):
        resolve_shards([str(shard_dir), str(shard_dir / "patches-000009.tar")])
    assert len(resolve_shards(str(shard_dir)).urls) == 2  # the manifest folder still works


def test_a_stream_of_only_unreadable_shards_stops_with_an_error(tmp_path, caplog):
    for name in ("a.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"this is not a tar archive" * 40)
    pipeline = build_pipeline([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")], crop=32, batch_size=2,
                              degrade=DegradeConfig(degrade_block=16, mask_block=8), shuffle_buffer=8,
                              max_empty_shards=50)
    with caplog.at_level(logging.WARNING, logger="training.data"), \
            pytest.raises(EmptyStreamError, match="52 shards drawn in a row"):
        next(BatchStream(pipeline))
    skip_lines = [r for r in caplog.records if "skipped corrupt" in r.getMessage()]
    assert 1 <= len(skip_lines) <= 5 + 6  # first five, then powers of two only (52 failures -> 8, 16, 32)


@pytest.mark.integration
def test_pretrain_on_unreadable_shards_exits_non_zero_without_a_checkpoint(tmp_path, caplog):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "patches-000000.tar").write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.ERROR, logger="training.pretrain"):
        assert _exit_code(["--shards", str(shards / "patches-*.tar"), "--out", str(tmp_path / "run")] + COMMON) == 1
    assert "without one usable sample" in caplog.text
    assert not list((tmp_path / "run").rglob("*.safetensors"))
