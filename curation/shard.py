"""Cut kept images into non-overlapping, non-flat patch×patch PNG patches in WebDataset shards.

``python -m curation.shard --kept kept.parquet --raw raw/ --out shards/ [--patch 512] [--max-flat 0.5]
[--flat-threshold 1.0] [--flat-cell 64] [--shard-size 1GB] [--scheduler ADDR | --workers N]``

The plan (which image goes into which output shard) is computed up front and deterministically from
kept.parquet; each output shard is one Dask task writing temp files, renaming them, and writing its
completion marker last; ``manifest.json`` (:class:`curation.layout.Manifest`) is written last of all.
Rerunning after a crash or kill -9 skips complete shards and redoes the others, giving the same set of
patches. The folder is a stage folder (``common.stagefolder``): its settings (tiling flags and the
kept rows' fingerprint) are recorded; a rerun with others exits 2 naming them unless ``--overwrite``;
a second concurrent run exits 2 naming the holder. See docs/curation-shard.md.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from common.atomic import atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DEFAULT_MAX_PIXELS
from common.outputerrors import exit_on_write_error
from common.stagefolder import StageRefused, open_stage_folder, refuse_exit
from curation.cluster import DASHBOARD_HELP, DEFAULT_DASHBOARD
from curation.layout import (
    MANIFEST_NAME,
    Manifest,
    ManifestShard,
    ShardId,
    pending_patches,
)
from curation.sharding import flat
from curation.sharding import plan as shardplan
from curation.sharding.write import TileParams, read_marker, write_shard

_LOG = logging.getLogger("curation.shard")
STAGE = "shard"
PLAN_NAME = "plan.json"
PLAN_TABLE = "plan.parquet"
CONFIG_NAME = "shard_config.yaml"


@dataclass
class ShardConfig:
    """Tile kept images into flat-filtered PNG patches written as WebDataset shards with parquet lineage."""

    kept: str = field(default="kept.parquet", metadata={"help": "kept.parquet written by curation.filter (default kept.parquet)"})
    raw: str = field(default="raw", metadata={"help": "folder of raw shards (NNNNN.tar) the kept rows point into (default raw)"})
    out: str = field(default="shards", metadata={"help": "output folder for patches-NNNNNN.{tar,parquet} and manifest.json (default shards)"})
    patch: int = field(default=512, metadata={"help": "patch side in pixels, non-overlapping grid from the top-left corner (default 512)"})
    flat_threshold: float = field(default=flat.DEFAULT_THRESHOLD, metadata={
        "help": "a cell is flat when the std of its Sobel gradient magnitude (×4-downscaled grey, grey levels/px) is below this (default 1.0)"})
    flat_cell: int = field(default=flat.DEFAULT_CELL, metadata={
        "help": "flat-detector cell side in original pixels (multiple of 4, >= 16, must divide --patch; default 64)"})
    max_flat: float = field(default=0.5, metadata={"help": "drop a patch whose flat area fraction is above this (default 0.5)"})
    shard_size: str = field(default="1GB", metadata={
        "help": "target tar size: 1GB (=10^9), 200MB, 512MiB or bytes; estimated from tile counts up front (default 1GB)"})
    bytes_per_pixel: float = field(default=1.8, metadata={
        "help": "estimated PNG bytes per pixel used to plan shard sizes (flat tiles dropped later make shards smaller; default 1.8)"})
    png_level: int = field(default=3, metadata={"help": "PNG (zlib) compression level 0-9; lossless at every level (default 3)"})
    scheduler: str | None = field(default=None, metadata={"help": "Dask scheduler address; default: a LocalCluster"})
    workers: int = field(default=2, metadata={"help": "LocalCluster worker processes; 0 runs in this process without Dask (default 2)"})
    dashboard_address: str = field(default=DEFAULT_DASHBOARD, metadata={"help": DASHBOARD_HELP})
    log_level: str = field(default="INFO", metadata={"help": "logging level (default INFO)"})
    overwrite: bool = field(default=False, metadata={
        "help": "when --out was written with other settings or another kept.parquet: delete its shards, plan "
                "and manifest and start again (default: refuse with exit code 2, naming each difference)"})


def _validate(cfg: ShardConfig) -> None:
    if cfg.patch <= 0 or cfg.patch % 4:
        raise ValueError(f"--patch must be a positive multiple of 4, got {cfg.patch}")
    if cfg.flat_cell < 16 or cfg.flat_cell % flat.DOWNSCALE or cfg.patch % cfg.flat_cell:
        raise ValueError(f"--flat-cell must be a multiple of {flat.DOWNSCALE}, at least 16, dividing --patch ({cfg.patch}); "
                         f"got {cfg.flat_cell}")
    if not 0.0 <= cfg.max_flat <= 1.0:
        raise ValueError(f"--max-flat is a fraction in [0, 1], got {cfg.max_flat}")
    if not 0 <= cfg.png_level <= 9:
        raise ValueError(f"--png-level must be 0..9, got {cfg.png_level}")


def tile_params(cfg: ShardConfig) -> TileParams:
    return TileParams(patch=cfg.patch, flat_cell=cfg.flat_cell, flat_threshold=cfg.flat_threshold,
                      max_flat=cfg.max_flat, png_level=cfg.png_level)


def build_plan(cfg: ShardConfig) -> shardplan.Plan:
    rows = shardplan.read_kept(cfg.kept)
    params = {**asdict(tile_params(cfg)), "shard_size": shardplan.parse_size(cfg.shard_size),
              "bytes_per_pixel": cfg.bytes_per_pixel}
    return shardplan.make_plan(rows, cfg.patch, shardplan.parse_size(cfg.shard_size), cfg.bytes_per_pixel, params)


def stage_settings(cfg: ShardConfig, plan: shardplan.Plan, max_pixels: int) -> dict:
    """What decides the folder's content: the kept rows and every tiling / sizing flag."""
    return {**asdict(tile_params(cfg)), "shard_size": shardplan.parse_size(cfg.shard_size),
            "bytes_per_pixel": cfg.bytes_per_pixel, "max_pixels": max_pixels,
            "kept_rows": shardplan.content_fingerprint(plan.table), "kept_images": plan.table.num_rows}


def clear_outputs(out: Path) -> None:
    """``--overwrite``: remove this stage's outputs (called while holding the folder lock)."""
    for pattern in ("patches-*", "dropped-*", ".*.tmp", PLAN_NAME, PLAN_TABLE, MANIFEST_NAME, CONFIG_NAME):
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _check_or_save_plan(out: Path, plan: shardplan.Plan) -> None:
    """The first run saves the plan; later runs must recompute the identical plan (same inputs and flags).

    plan.parquet (the rows each task reads) is written before plan.json, which marks the plan as saved.
    The stage record already refuses other settings; this catches folders written before it existed.
    """
    path = out / PLAN_NAME
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != plan.fingerprint:
            raise StageRefused(f"{out} holds shards planned from a different kept.parquet or different flags "
                               f"(plan fingerprint {old.get('fingerprint', '?')[:12]} != {plan.fingerprint[:12]}); "
                               "use a fresh --out folder or pass --overwrite")
        if (out / PLAN_TABLE).exists():
            return
    shardplan.write_plan_table(plan, out / PLAN_TABLE)
    atomic_write_json(path, plan.summary())


def _clean_temps(out: Path) -> None:
    """Temp files of a killed earlier run (only called while holding the folder lock: none is live)."""
    for tmp in out.glob(".*.tmp"):
        _LOG.info("removing leftover temp file %s from an interrupted run", tmp.name)
        tmp.unlink(missing_ok=True)


def _run_pending(cfg: ShardConfig, plan: shardplan.Plan, pending: list[int], max_pixels: int) -> None:
    params, out = tile_params(cfg), str(Path(cfg.out).resolve())
    raw, plan_path = str(Path(cfg.raw).resolve()), str(Path(out) / PLAN_TABLE)
    bar = tqdm(total=len(pending), desc="shards", unit="shard")
    if cfg.workers == 0 and not cfg.scheduler:
        for i in pending:
            write_shard(i, plan_path, raw, out, params, max_pixels)
            bar.update(1)
        bar.close()
        return
    from dask.distributed import as_completed

    from curation.cluster import dask_client

    if cfg.log_level.upper() != "DEBUG":  # Dask's INFO chatter (set when distributed is imported) hides ours
        logging.getLogger("distributed").setLevel(logging.WARNING)
    with dask_client(cfg.scheduler, max(cfg.workers, 1), dashboard_address=cfg.dashboard_address) as client:
        futures = [client.submit(write_shard, i, plan_path, raw, out, params, max_pixels,
                                 key=f"write-shard-{plan.fingerprint[:10]}-{i}", pure=False)
                   for i in pending]
        for fut in as_completed(futures):
            record = fut.result()  # re-raises a task's exception here
            bar.update(1)
            bar.set_postfix(samples=record["samples"])
    bar.close()


def write_manifest(out: Path, plan: shardplan.Plan, patch: int) -> Manifest:
    """Collect every shard's marker into manifest.json (deterministic content; written last of all)."""
    records = []
    for i in range(plan.n_shards):
        rec = read_marker(out, i)
        if rec is None:
            raise RuntimeError(f"shard {ShardId.patches(i)} has no completion marker; cannot write the manifest")
        records.append(rec)
    manifest = Manifest(
        shards=[ManifestShard(name=r["name"], samples=r["samples"], bytes=r["bytes"]) for r in records],
        total_samples=sum(r["samples"] for r in records),
        patch_size=patch,
        images_tiled=sum(r["images"] for r in records),
        tiles_total=sum(r["tiles_total"] for r in records),
        tiles_dropped_flat=sum(r["dropped_flat"] for r in records),
        image_errors=[e for r in records for e in r["errors"]],
        duplicates=plan.duplicates,
        too_small=plan.too_small,
        plan_fingerprint=plan.fingerprint,
    )
    manifest.write(out)
    return manifest


def run(cfg: ShardConfig) -> dict:
    """Plan, write every missing shard, then the manifest; returns the manifest as a dict."""
    _validate(cfg)
    out = Path(cfg.out)
    plan = build_plan(cfg)
    max_pixels = shardplan.kept_max_pixels(cfg.kept) or DEFAULT_MAX_PIXELS
    with open_stage_folder(out, STAGE, stage_settings(cfg, plan, max_pixels), overwrite=cfg.overwrite,
                           clear=clear_outputs):
        _check_or_save_plan(out, plan)
        save_config(cfg, out / CONFIG_NAME)
        _clean_temps(out)
        pending = [sid.index for sid in pending_patches(out, plan.n_shards)]
        _LOG.info("%d image(s) in %d shard(s) (%d already complete); %d duplicate(s), %d smaller than one patch",
                  plan.table.num_rows, plan.n_shards, plan.n_shards - len(pending), len(plan.duplicates),
                  len(plan.too_small))
        if pending:
            _run_pending(cfg, plan, pending, max_pixels)
        manifest = write_manifest(out, plan, cfg.patch)
    _LOG.info("wrote %d patch(es) in %d shard(s); %d tile(s) dropped as flat; %d image error(s)",
              manifest.total_samples, len(manifest.shards), manifest.tiles_dropped_flat, len(manifest.image_errors))
    return manifest.to_dict()


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(ShardConfig, argv)
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        with exit_on_write_error("curation.shard", cfg.out):
            return run(cfg)
    except StageRefused as exc:
        raise refuse_exit(exc) from None
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"curation.shard: {exc}") from exc


if __name__ == "__main__":
    main()
