"""Restore image files or folders with a trained checkpoint.

    python -m dynet_model.restore IN.png FOLDER/ -o OUT --checkpoint model.safetensors [--variant s]
        [--tile 512 --tile-overlap 32] [--device cuda]

* ``--checkpoint`` is required (no silent random weights): a ``.safetensors`` written by
  :func:`dynet_model.checkpoint.save_model` (rebuilds the network from its stored config), or an
  official DyNet/PromptIR/DSRIR release (``.ckpt`` / ``.pth``, read with ``weights_only=True``; its
  architecture is detected, or named with ``--arch``) — all read by :func:`dynet_model.loading.load_any`.
* ``--variant`` picks DyNet's reuse vector (``s``, ``l`` or ``2,3,3,4``); default: the checkpoint's.
* Images of any size: ``--tile`` > 0 processes overlapping tiles blended with linear ramps; with
  ``--tile 0`` an image above ``--max-untiled-pixels`` is tiled automatically (512-px tiles).
* Output: lossless PNG by default, the input's format only with ``--keep-format``; 16-bit PNG/TIFF
  inputs are restored and written with 16 bits. ``--side-by-side`` also writes input | output views
  to ``OUT/side_by_side/``. Folders keep their relative layout under ``-o``.
* Each image is isolated: one that cannot be read, decoded, restored or written is recorded and the
  batch goes on. ``OUT/restore_report.json`` is always written and lists every input given (missing
  paths, dangling and looping symlinks included) with its status and time; the exit status is 1 when
  an input given on the command line does not exist.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_write_bytes, atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DEFAULT_MAX_PIXELS, DecodeError

from .compiled import accelerate_for_inference
from .config import AnyConfig
from .inference import restore_image
from .loading import load_any, set_reuse
from .restore_io import (
    InputItem,
    collect_inputs,
    decode_image,
    encode,
    output_depth,
    output_path,
    read_regular,
    side_by_side,
)

_LOG = logging.getLogger("dynet_model.restore")
AUTO_TILE = 512


@dataclass
class RestoreConfig:
    """Restore images with a DyNet / PromptIR checkpoint (tiles blended without seams)."""

    inputs: list[str] = field(metadata={"positional": True, "help": "image files and/or folders (recursed)"})
    output: str = field(metadata={"flag": "--out", "aliases": ["--output", "-o"], "help": "output folder; file names are kept"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "REQUIRED: .safetensors from save_model, or an official .ckpt/.pth release (see --arch)"})
    variant: str | None = field(default=None, metadata={
        "help": "DyNet reuse vector: s, l or e.g. 2,3,3,4 (default: the checkpoint's own)"})
    arch: str | None = field(default=None, metadata={
        "help": "architecture of an official .ckpt/.pth: dynet | promptir | dsrir (default: detected from its keys)"})
    tile: int = field(default=0, metadata={"help": "tile size in pixels; 0 = whole image in one forward up to "
                                                   "--max-untiled-pixels, 512-px tiles above"})
    max_untiled_pixels: int = field(default=2_097_152, metadata={
        "help": "with --tile 0, images with more pixels than this are tiled automatically (bounded memory)"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={
        "help": "images with more pixels are refused (status too_large; decompression-bomb guard)"})
    tile_overlap: int = field(default=32, metadata={"help": "overlap between neighbouring tiles (blended)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when available) | cpu | cuda"})
    keep_format: bool = field(default=False, metadata={
        "help": "write each output in its input's format (JPEG is lossy!) instead of lossless PNG"})
    side_by_side: bool = field(default=False, metadata={
        "help": "also write input | output views to OUT/side_by_side/NAME.png"})
    jpeg_quality: int = field(default=95, metadata={"help": "JPEG quality with --keep-format and a JPEG input"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the network (worth it for many images; the first ones wait for the compile)"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "channels_last weights (--no-channels-last turns off; default: on for cuda, off on cpu)"})


def load_for_inference(checkpoint: str, arch: str | None, variant: str | None, device: str
                       ) -> tuple[torch.nn.Module, AnyConfig]:
    try:
        loaded = load_any(checkpoint, arch=arch, device=device)
        set_reuse(loaded.model, loaded.config, variant)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(str(exc)) from None
    return loaded.model, loaded.config


def _reuse_of(model: torch.nn.Module) -> list[int] | None:
    """DyNet's depth vector for the report (None for networks without one)."""
    reuse = getattr(model, "reuse", None)
    return list(reuse) if reuse is not None else None


def restore_array(model: torch.nn.Module, rgb: np.ndarray, tile: int, overlap: int, device: str) -> np.ndarray:
    """H×W×3 RGB (uint8, or float in [0, 1]) -> the restored float RGB in [0, 1] (the model sits on ``device``)."""
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=False)
    return restore_image(model, x, tile=tile, overlap=overlap)


def tile_for(cfg: RestoreConfig, height: int, width: int) -> int:
    if cfg.tile > 0:
        return cfg.tile
    return AUTO_TILE if height * width > cfg.max_untiled_pixels else 0


def restore_one(model, item: InputItem, dst: Path, cfg: RestoreConfig) -> dict:
    """Restore one file; every failure becomes a status in the returned entry (never an exception)."""
    start = time.perf_counter()
    entry = {"input": str(item.src), "output": None}
    try:
        rgb, depth = decode_image(read_regular(item.src), cfg.max_pixels)
    except DecodeError as exc:
        return {**entry, "status": exc.status, "error": str(exc)}
    tile = tile_for(cfg, rgb.shape[0], rgb.shape[1])
    try:
        out = restore_array(model, rgb, tile, cfg.tile_overlap, cfg.device)
        atomic_write_bytes(dst, encode(out, dst, depth, cfg.jpeg_quality))
        if cfg.side_by_side:
            view = Path(cfg.output) / "side_by_side" / dst.relative_to(cfg.output).with_suffix(".png")
            atomic_write_bytes(view, encode(side_by_side(rgb, out), view, depth))
            entry["side_by_side"] = str(view)
    except Exception as exc:  # noqa: BLE001 — out of memory, unwritable output ...: record it, go on
        return {**entry, "status": "error", "error": f"{type(exc).__name__}: {exc}", "tile": tile}
    seconds = time.perf_counter() - start
    return {**entry, "output": str(dst), "status": "ok", "height": rgb.shape[0], "width": rgb.shape[1],
            "bit_depth": depth, "output_bit_depth": output_depth(dst, depth), "tile": tile,
            "seconds": round(seconds, 4)}


def run(cfg: RestoreConfig) -> list[dict]:
    if not cfg.checkpoint:
        raise SystemExit("refusing to restore without --checkpoint: a network with random weights would "
                         "only produce noise. Pass a .safetensors from training or an official .ckpt.")
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    model, mcfg = load_for_inference(cfg.checkpoint, cfg.arch, cfg.variant, cfg.device)
    model = accelerate_for_inference(model, device=cfg.device, compile=cfg.compile, channels_last=cfg.channels_last)
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "restore_config.yaml")
    report, seen = [], set()
    for item in tqdm(collect_inputs(cfg.inputs), desc="restore", unit="img"):
        dst = output_path(out_dir, item.rel, cfg.keep_format)
        if item.problem is not None:
            entry = {"input": str(item.src), "output": None, "status": item.problem,
                     "error": f"{item.src}: {item.problem.replace('_', ' ')}"}
        elif dst in seen:
            entry = {"input": str(item.src), "output": None, "status": "duplicate_name",
                     "error": f"another input already wrote {dst}"}
        else:
            entry = restore_one(model, item, dst, cfg)
        if entry["status"] == "ok":
            seen.add(dst)
            _LOG.info("%s -> %s (%dx%d) in %.2f s", item.src, dst, entry["width"], entry["height"], entry["seconds"])
        else:
            _LOG.warning("skipped %s: %s", item.src, entry["error"])
        report.append(entry)
    ok = sum(e["status"] == "ok" for e in report)
    atomic_write_json(out_dir / "restore_report.json",
                      {"model": mcfg.to_dict(), "reuse": _reuse_of(model),
                       "restored": ok, "skipped": len(report) - ok, "images": report})
    _LOG.info("restored %d image(s), skipped %d; report: %s", ok, len(report) - ok, out_dir / "restore_report.json")
    missing = [e["input"] for e in report if e["status"] == "missing"]
    if missing:
        raise SystemExit(f"dynet_model.restore: input(s) not found: {', '.join(missing)} "
                         f"(restored {ok}; report: {out_dir / 'restore_report.json'})")
    return report


def main(argv: list[str] | None = None) -> list[dict]:
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(parse_config(RestoreConfig, argv))


if __name__ == "__main__":
    main()
