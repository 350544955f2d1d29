"""WebDataset loader over shards written here in the curation contract format (really streamed)."""

from __future__ import annotations

import itertools
import json

import fsspec
import numpy as np
import torch
import webdataset as wds

from training.data import (
    BatchStream,
    build_pipeline,
    load_val_set,
    resolve_shards,
    split_for,
)
from training.degrade import DegradeConfig
from training.synthetic import png_bytes, synthetic_patch, write_synthetic_shards

DEG = DegradeConfig(degrade_block=16, mask_block=8)


def _stream(urls, **kw) -> BatchStream:
    workers = kw.pop("num_workers", 0)
    opts = {"crop": 32, "batch_size": 4, "degrade": DEG, "shuffle_buffer": 8}
    opts.update(kw)
    return BatchStream(build_pipeline(urls, **opts), num_workers=workers)


def test_batches_from_manifest_folder(tmp_path):
    shards = resolve_shards(str(write_synthetic_shards(tmp_path, shards=2, per_shard=6, size=48)))
    assert len(shards.urls) == 2 and shards.total_samples == 12
    batch = next(_stream(shards.urls))
    assert set(batch) >= {"lq", "gt", "kind", "key"}
    assert batch["lq"].shape == batch["gt"].shape == (4, 3, 32, 32)
    assert batch["lq"].dtype == torch.float32 and 0 <= batch["lq"].min() and batch["gt"].max() <= 1
    assert (batch["lq"] != batch["gt"]).float().mean() > 0.5  # ~80 % of the input corrupted


def test_brace_pattern_pipe_and_fsspec_urls(tmp_path):
    write_synthetic_shards(tmp_path, shards=2, per_shard=4, size=40)
    brace = resolve_shards(f"{tmp_path}/patches-{{000000..000001}}.tar")
    assert len(brace.urls) == 2 and brace.total_samples is None
    assert next(_stream([f"pipe:cat {u}" for u in brace.urls]))["gt"].shape[0] == 4
    assert next(_stream([f"file://{u}" for u in brace.urls]))["gt"].shape[0] == 4
    memfs = fsspec.filesystem("memory")  # a non-local fsspec filesystem, folder + manifest.json
    for name in ("patches-000000.tar", "patches-000001.tar", "manifest.json"):
        memfs.pipe(f"/pretrain-test/{name}", (tmp_path / name).read_bytes())
    remote = resolve_shards("memory://pretrain-test")
    assert remote.urls[0].startswith("memory://") and remote.total_samples == 8
    assert next(_stream(remote.urls))["lq"].shape == (4, 3, 32, 32)


def test_same_seed_same_stream_and_restart_point_changes_it(tmp_path):
    urls = resolve_shards(str(write_synthetic_shards(tmp_path, shards=2, per_shard=6, size=48))).urls
    a = [b["lq"] for b in itertools.islice(_stream(urls, seed=3), 3)]
    b = [b["lq"] for b in itertools.islice(_stream(urls, seed=3), 3)]
    c = [b["lq"] for b in itertools.islice(_stream(urls, seed=3, stream_start=100), 3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_split_by_rank_and_worker_without_overlap(tmp_path):
    urls = resolve_shards(str(write_synthetic_shards(tmp_path, shards=8, per_shard=4, size=36))).urls
    shares = [set(split_for(urls, r, 2, w, 2)) for r in range(2) for w in range(2)]
    assert all(len(s) == 2 for s in shares) and set().union(*shares) == set(urls)
    keys = []
    for rank in range(2):  # each rank: one pass (not resampled) over its split, 2 DataLoader workers
        for batch in _stream(urls, rank=rank, world_size=2, resampled=False, num_workers=2, batch_size=2):
            keys += batch["key"]
    assert len(keys) == 32 and len(set(keys)) == 32  # every sample exactly once across ranks × workers


def test_corrupt_sample_and_truncated_shard_are_skipped_and_counted(tmp_path):
    good = tmp_path / "good.tar"
    with wds.TarWriter(str(good)) as sink:
        for i in range(6):
            img = synthetic_patch(np.random.default_rng(i), 40)
            sink.write({"__key__": f"k{i}", "png": png_bytes(img), "json": json.dumps({"key": f"k{i}"}).encode()})
        sink.write({"__key__": "broken", "png": b"\x89PNG not really", "json": b"{}"})
    stream = _stream([str(good)], resampled=False, batch_size=2)
    keys = [k for batch in stream for k in batch["key"]]
    assert sorted(keys) == [f"k{i}" for i in range(6)] and stream.skipped == 1
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[:5000])
    stream = _stream([str(truncated), str(good)], resampled=False, batch_size=2)
    keys = [k for batch in stream for k in batch["key"]]
    assert "broken" not in keys and stream.skipped >= 2 and len(keys) >= 6


def test_validation_set_is_deterministic(tmp_path):
    spec = str(write_synthetic_shards(tmp_path, shards=1, per_shard=5, size=48, seed=9))
    a = load_val_set(spec, count=3, crop=32, degrade=DEG, seed=1)
    b = load_val_set(spec, count=3, crop=32, degrade=DEG, seed=1)
    assert a["lq"].shape == (3, 3, 32, 32) and torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
