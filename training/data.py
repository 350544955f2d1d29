"""Streaming pre-training data: WebDataset patch shards → corrupted ``{"lq", "gt"}`` batches.

Shards are the curation contract (``patches-NNNNNN.tar`` with ``KEY.png`` + ``KEY.json``, and a
``manifest.json`` beside them). ``--shards`` accepts a folder holding ``manifest.json`` (local or any
fsspec URL), a manifest path, brace patterns (``shards/patches-{000000..000099}.tar``), ``pipe:``
commands, http(s) and fsspec URLs (``s3://…``, ``gs://…``, ``memory://…``).

Local shards are checked before training: a path that does not exist, a glob (``shards/*.tar``) that
matches nothing or a folder without ``manifest.json`` raises :class:`ShardsNotFound` naming it. A
resampled stream that draws ``max_empty_shards`` shards in a row without one usable sample (every
shard unreadable) raises :class:`EmptyStreamError` instead of spinning forever.

Determinism: every random choice is drawn from generators seeded by
``(seed, rank, worker, stream_start[, sample index])`` where ``stream_start`` is the training step
the stream was (re)started at — the loop restarts the stream at every checkpoint, which makes
``--resume`` bit-exact (see :mod:`training.loop`).
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import torch
import webdataset as wds
from webdataset.gopen import gopen as wds_gopen
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander

from common.pngcodec import decode_png
from curation.layout import MANIFEST_NAME, Manifest
from training.augment import random_orientation, sample_rng
from training.degrade import DegradeConfig, corrupt

log = logging.getLogger(__name__)
_GOPEN_SCHEMES = ("", "file", "pipe", "http", "https")


class ShardsNotFound(ValueError):
    """``--shards`` names nothing readable: a missing path, an empty glob, a folder without manifest.json."""


class EmptyStreamError(RuntimeError):
    """The shard stream produced no usable sample for too many shards in a row."""


MAX_EMPTY_SHARDS = 200  # shards drawn in a row without one usable sample before the stream gives up


@dataclass
class ShardSet:
    urls: list[str]
    total_samples: int | None  # from manifest.json when there is one
    patch_size: int | None = None  # from manifest.json (the smallest, over several manifests)


class CropTooLarge(ValueError):
    """``--crop`` larger than the patches: the stream would never yield a sample."""


def check_crop(shards: ShardSet, crop: int, flag: str = "--crop") -> None:
    """Refuse at start-up a crop the patches cannot provide (known from the manifest's patch size)."""
    if shards.patch_size is not None and crop > shards.patch_size:
        raise CropTooLarge(f"{flag} {crop} is larger than the {shards.patch_size}-px patches of these shards "
                           f"(manifest patch_size); use {flag} <= {shards.patch_size} or shards cut with a larger --patch")


# ---- shard resolution and opening -------------------------------------------------------------


def _is_dir_like(spec: str) -> bool:
    import fsspec

    if spec.endswith("/"):
        return True
    if spec.startswith("pipe:") or "{" in spec or spec.endswith(".tar"):
        return False
    try:
        fs, path = fsspec.core.url_to_fs(spec)
        return bool(fs.isdir(path))
    except Exception:  # noqa: BLE001 - an unknown scheme / unreachable host is "not a folder"
        return False


def _local_path(url: str) -> str | None:
    """The file path of a local shard URL (plain path or file://), None for pipe:/remote URLs."""
    if url.startswith("pipe:"):
        return None
    parts = urlparse(url)
    return parts.path if parts.scheme == "file" else (url if parts.scheme == "" else None)


def _expand_pattern(spec: str) -> list[str]:
    """Brace patterns, then (local paths only) shell globs, sorted; a glob matching nothing is an error."""
    urls = []
    for url in expand_urls(spec):
        path = _local_path(url)
        if path is not None and glob.has_magic(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise ShardsNotFound(f"--shards {spec}: the pattern {path} matches no file")
            urls += matches
        else:
            urls.append(url)
    return urls


def _check_local(urls: list[str], specs: list[str]) -> None:
    missing = [u for u in urls if (p := _local_path(u)) is not None and not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise ShardsNotFound(f"--shards {' '.join(specs)}: no such shard file: {', '.join(missing[:3])}{more}")


def resolve_shards(specs: str | Iterable[str]) -> ShardSet:
    """Expand ``--shards`` values into a list of shard URLs (+ the manifest's sample count).

    Raises :class:`ShardsNotFound` when a local shard is missing, so a typo stops before training.
    """
    specs = [specs] if isinstance(specs, str) else list(specs)
    urls: list[str] = []
    total: int | None = 0
    patch_sizes: list[int] = []
    for spec in specs:
        if spec.endswith(MANIFEST_NAME) or _is_dir_like(spec):
            manifest_url = spec if spec.endswith(MANIFEST_NAME) else spec.rstrip("/") + "/" + MANIFEST_NAME
            base = manifest_url.rsplit("/", 1)[0] if "/" in manifest_url else "."
            local = _local_path(manifest_url)
            if local is not None and not os.path.isfile(local):
                raise ShardsNotFound(f"--shards {spec}: {local} does not exist (a folder needs the manifest.json "
                                     "that curation.shard writes; or give a shard pattern)")
            manifest = Manifest.read(manifest_url)  # the curation contract (curation.layout)
            urls += manifest.shard_urls(base)
            total = None if total is None else total + manifest.total_samples
            patch_sizes.append(manifest.patch_size)
        else:
            urls += _expand_pattern(spec)
            total = None
    if not urls:
        raise ShardsNotFound(f"no shards found in {specs}")
    _check_local(urls, specs)
    return ShardSet(urls=urls, total_samples=total, patch_size=min(patch_sizes) if patch_sizes else None)


def open_shards(sources: Iterable[dict], handler) -> Iterator[dict]:
    """Open each ``{"url"}``: local paths / pipe: / http(s) through webdataset's gopen, others via fsspec."""
    for source in sources:
        url = source["url"]
        try:
            if urlparse(url).scheme in _GOPEN_SCHEMES or url.startswith("pipe:"):
                stream = wds_gopen(url)
            else:
                import fsspec

                stream = fsspec.open(url, "rb").open()
            yield {**source, "stream": stream}
        except Exception as exn:  # noqa: BLE001 - counted by the handler
            exn.args = exn.args + (url,)
            if not handler(exn):
                break


class CountingHandler:
    """WebDataset error handler: log a warning, count, continue (first 5 and then every power of 2 logged)."""

    def __init__(self, what: str = "sample") -> None:
        self.what = what
        self.count = 0

    def __call__(self, exn: Exception) -> bool:
        self.count += 1
        if self.count <= 5 or (self.count & (self.count - 1)) == 0:
            log.warning("skipped corrupt %s (%d so far): %s", self.what, self.count, repr(exn)[:300])
        return True


# ---- seeded stages ----------------------------------------------------------------------------

def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def split_for(urls: list[str], rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
    """This (rank, worker)'s disjoint share of the shards; shared when there are too few shards."""
    groups = world_size * num_workers
    if len(urls) >= groups:
        return urls[rank * num_workers + worker::groups]
    if len(urls) >= world_size:
        log.warning("%d shards < %d ranks × workers: workers of a rank share shards", len(urls), groups)
        return urls[rank::world_size]
    log.warning("%d shards < %d ranks: every rank reads every shard", len(urls), world_size)
    return list(urls)


@dataclass
class ShardSource(torch.utils.data.IterableDataset):
    """Shard URLs for this rank + worker: drawn with replacement forever, or one ordered pass."""

    urls: list[str]
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    stream_start: int = 0
    resampled: bool = True
    progress: StreamProgress | None = None

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _worker()
        mine = split_for(self.urls, self.rank, self.world_size, worker, num_workers)
        if not self.resampled:
            yield from ({"url": u} for u in mine)
            return
        rng = random.Random(f"{self.seed}-{self.rank}-{worker}-{self.stream_start}-shards")
        while True:
            if self.progress is not None:
                self.progress.drawn()
            yield {"url": rng.choice(mine)}


class StreamProgress:
    """Shards drawn since the last usable sample; past ``limit`` the stream stops with EmptyStreamError.

    Shared by :class:`ShardSource` (counts draws) and :class:`MakePair` (resets on each good sample);
    both run in the same DataLoader worker. ``limit`` includes the shuffle buffer's initial fill.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.since = limit, 0

    def drawn(self) -> None:
        self.since += 1
        if self.since > self.limit:
            raise EmptyStreamError(f"{self.limit} shards drawn in a row without one usable sample: every shard "
                                   "is missing, unreadable or holds no decodable patch (see the warnings above)")

    def produced(self) -> None:
        self.since = 0


@dataclass
class SeededShuffle:
    bufsize: int
    initial: int
    seed: int = 0
    rank: int = 0
    stream_start: int = 0

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        worker, _ = _worker()
        rng = random.Random(f"{self.seed}-{self.rank}-{worker}-{self.stream_start}-shuffle")
        return wds.filters._shuffle(src, self.bufsize, self.initial, rng=rng)


def random_crop_aug(img: np.ndarray, crop: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
    """Random ``crop``² window, then one of the 8 flips/rotations (uniform) when ``augment``."""
    h, w = img.shape[:2]
    if h < crop or w < crop:
        raise ValueError(f"patch {w}x{h} is smaller than the crop {crop}")
    y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
    out = img[y:y + crop, x:x + crop]
    if augment:
        out = random_orientation(out, rng)
    return np.ascontiguousarray(out)


@dataclass
class MakePair:
    """decode → crop → flip/rotate → corrupt, seeded per (seed, rank, worker, stream_start, index)."""

    crop: int
    degrade: DegradeConfig
    handler: CountingHandler
    augment: bool = True
    seed: int = 0
    rank: int = 0
    stream_start: int = 0
    progress: StreamProgress | None = None

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        worker, _ = _worker()
        for index, sample in enumerate(src):
            try:
                if "png" not in sample:
                    raise ValueError(f"sample {sample.get('__key__')} has no .png")
                rng = sample_rng(self.seed, self.rank, worker, self.stream_start, index)
                gt = random_crop_aug(decode_png(sample["png"]), self.crop, rng, self.augment)
                c = corrupt(gt, rng, self.degrade)
                if self.progress is not None:
                    self.progress.produced()
                yield {"gt": gt, "lq": c.lq, "kind": c.kind, "key": sample["__key__"]}
            except Exception as exn:  # noqa: BLE001 - counted by the handler
                exn.args = exn.args + (sample.get("__key__"), sample.get("__url__"))
                if not self.handler(exn):
                    break


@dataclass
class Batcher:
    """Stack into uint8 N×3×H×W tensors; report samples skipped since the previous batch."""

    batch_size: int
    handlers: tuple[CountingHandler, ...]

    def __call__(self, src: Iterator[dict]) -> Iterator[dict]:
        seen, group = 0, []
        for sample in src:
            group.append(sample)
            if len(group) < self.batch_size:
                continue
            skipped = sum(h.count for h in self.handlers)
            yield {"lq": torch.from_numpy(np.stack([s["lq"] for s in group])).permute(0, 3, 1, 2).contiguous(),
                   "gt": torch.from_numpy(np.stack([s["gt"] for s in group])).permute(0, 3, 1, 2).contiguous(),
                   "kind": [s["kind"] for s in group], "key": [s["key"] for s in group],
                   "n_skipped": skipped - seen}
            seen, group = skipped, []


def build_pipeline(urls: list[str], *, crop: int, batch_size: int, degrade: DegradeConfig, seed: int = 0,
                   rank: int = 0, world_size: int = 1, stream_start: int = 0, resampled: bool = True,
                   shuffle_buffer: int = 1000, augment: bool = True,
                   max_empty_shards: int = MAX_EMPTY_SHARDS) -> wds.DataPipeline:
    degrade.validate(crop)
    shard_errors, sample_errors = CountingHandler("shard"), CountingHandler("sample")
    keyed = {"seed": seed, "rank": rank, "stream_start": stream_start}
    initial = min(shuffle_buffer, max(1, shuffle_buffer // 4))
    progress = StreamProgress(max_empty_shards + initial)  # the shuffle fill draws up to `initial` shards first
    return wds.DataPipeline(
        # shard URLs for this rank + worker (disjoint split), resampled forever with a seeded RNG
        ShardSource(urls, world_size=world_size, resampled=resampled, progress=progress, **keyed),
        # open each URL: local path, pipe:, http(s) via gopen; any other scheme via fsspec
        functools.partial(open_shards, handler=shard_errors),
        # tar stream → files; a truncated/corrupt tar is counted and the next shard read
        functools.partial(tar_file_expander, handler=shard_errors),
        # files → samples grouped by key (KEY.png + KEY.json)
        functools.partial(group_by_keys, handler=shard_errors),
        # sample-level shuffle buffer (seeded per rank + worker + stream start)
        SeededShuffle(shuffle_buffer, initial, **keyed),
        # decode PNG → uint8, random crop + flips/rotations, corrupt (50 % degraded + 30 % masked)
        MakePair(crop=crop, degrade=degrade, handler=sample_errors, augment=augment, progress=progress, **keyed),
        # uint8 batches; carries the number of samples skipped since the previous batch
        Batcher(batch_size, (shard_errors, sample_errors)),
    )


class BatchStream:
    """Iterate a DataLoader over the pipeline: float [0,1] batches, skipped-sample count, close()."""

    def __init__(self, pipeline: wds.DataPipeline, *, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int = 4) -> None:
        kwargs = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
        self.loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=num_workers,
                                                  pin_memory=pin_memory, **kwargs)
        self._it = iter(self.loader)
        self.skipped = 0

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict:
        batch = next(self._it)
        n = int(batch.pop("n_skipped", 0))
        if n:
            self.skipped += n
            log.warning("%d corrupt sample(s)/shard(s) skipped (%d in total)", n, self.skipped)
        batch["lq"] = batch["lq"].float().div_(255.0)
        batch["gt"] = batch["gt"].float().div_(255.0)
        return batch

    def close(self) -> None:
        shutdown = getattr(self._it, "_shutdown_workers", None)
        if callable(shutdown):
            shutdown()
        self._it = iter(())


def load_val_set(specs: str | Iterable[str], *, count: int, crop: int, degrade: DegradeConfig,
                 seed: int = 0) -> dict:
    """First ``count`` decodable samples of the held-out shards: centre crops, corrupted deterministically."""
    degrade.validate(crop)
    handler = CountingHandler("validation sample")
    shard_set = resolve_shards(specs)
    check_crop(shard_set, crop)
    samples = group_by_keys(tar_file_expander(open_shards(({"url": u} for u in shard_set.urls),
                                                          handler), handler=handler), handler=handler)
    lq, gt = [], []
    for sample in samples:
        try:
            img = decode_png(sample["png"])
            h, w = img.shape[:2]
            y, x = (h - crop) // 2, (w - crop) // 2
            if y < 0 or x < 0:
                raise ValueError(f"validation patch {w}x{h} smaller than crop {crop}")
            clean = np.ascontiguousarray(img[y:y + crop, x:x + crop])
        except Exception as exn:  # noqa: BLE001
            handler(exn)
            continue
        gt.append(clean)
        lq.append(corrupt(clean, sample_rng(seed, 0x7A1, len(gt)), degrade).lq)
        if len(gt) == count:
            break
    if not gt:
        raise ValueError(f"no usable validation samples in {specs}")
    to_t = lambda arr: torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).float().div(255.0)
    return {"lq": to_t(lq), "gt": to_t(gt)}
