"""Restore image files or folders with a trained checkpoint.

    python -m dynet_model.restore IN.png FOLDER/ -o OUT --checkpoint model.safetensors [--variant s]
        [--tile 512 --tile-overlap 32] [--device cuda]

* ``--checkpoint`` is required (no silent random weights): a ``.safetensors`` written by
  :func:`dynet_model.checkpoint.save_model` (rebuilds the network from its stored config), or an
  official DyNet/PromptIR/DSRIR release (``.ckpt`` / ``.pth``, read with ``weights_only=True``; its
  architecture is detected, or named with ``--arch``) — all read by :func:`dynet_model.loading.load_any`.
* ``--variant`` picks DyNet's reuse vector (``s``, ``l`` or ``2,3,3,4``); default: the checkpoint's.
* Images of any size; ``--tile`` > 0 processes overlapping tiles blended with linear ramps.
* Output names are the input names (folders keep their relative layout) under ``-o``; a file
  that cannot be decoded is reported and skipped; ``OUT/restore_report.json`` lists every input
  with its status and time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_write_bytes, atomic_write_json
from common.cliconfig import parse_config, save_config
from common.imagedecode import DecodeError, decode_rgb

from .compiled import accelerate_for_inference
from .config import AnyConfig
from .inference import restore_image
from .loading import load_any, set_reuse

_LOG = logging.getLogger("dynet_model.restore")
WRITABLE = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class RestoreConfig:
    """Restore images with a DyNet / PromptIR checkpoint (tiles blended without seams)."""

    inputs: list[str] = field(metadata={"positional": True, "help": "image files and/or folders (recursed)"})
    output: str = field(metadata={"help": "output folder (-o); file names are kept"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "REQUIRED: .safetensors from save_model, or an official .ckpt/.pth release (see --arch)"})
    variant: str | None = field(default=None, metadata={
        "help": "DyNet reuse vector: s, l or e.g. 2,3,3,4 (default: the checkpoint's own)"})
    arch: str | None = field(default=None, metadata={
        "help": "architecture of an official .ckpt/.pth: dynet | promptir | dsrir (default: detected from its keys)"})
    tile: int = field(default=0, metadata={"help": "tile size in pixels; 0 = whole image in one forward"})
    tile_overlap: int = field(default=32, metadata={"help": "overlap between neighbouring tiles (blended)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    jpeg_quality: int = field(default=95, metadata={"help": "quality when the input (and output) is JPEG"})
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


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(source file, output path relative to the output folder) for every input file."""
    pairs = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pairs += [(f, f.relative_to(p)) for f in sorted(p.rglob("*"))
                      if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        else:
            pairs.append((p, Path(p.name)))
    return pairs


def output_path(out_dir: Path, rel: Path) -> Path:
    suffix = rel.suffix.lower()
    return out_dir / (rel if suffix in WRITABLE else rel.with_name(rel.name + ".png"))


def encode(rgb: np.ndarray, path: Path, jpeg_quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"cannot encode {path.suffix}")
    return buf.tobytes()


def restore_array(model: torch.nn.Module, rgb: np.ndarray, tile: int, overlap: int, device: str) -> np.ndarray:
    """uint8 H x W x 3 -> restored uint8 (the model already sits on ``device``)."""
    return restore_image(model, rgb, tile=tile, overlap=overlap)


def restore_one(model, src: Path, dst: Path, cfg: RestoreConfig) -> dict:
    start = time.perf_counter()
    entry = {"input": str(src), "output": str(dst)}
    try:
        rgb = decode_rgb(src.read_bytes())
    except (DecodeError, OSError) as exc:
        return {**entry, "status": getattr(exc, "status", "read_error"), "error": str(exc), "output": None}
    out = restore_array(model, rgb, cfg.tile, cfg.tile_overlap, cfg.device)
    atomic_write_bytes(dst, encode(out, dst, cfg.jpeg_quality))
    seconds = time.perf_counter() - start
    return {**entry, "status": "ok", "height": rgb.shape[0], "width": rgb.shape[1], "seconds": round(seconds, 4)}


def run(cfg: RestoreConfig) -> list[dict]:
    if not cfg.checkpoint:
        raise SystemExit("refusing to restore without --checkpoint: a network with random weights would "
                         "only produce noise. Pass a .safetensors from training or an official .ckpt.")
    model, mcfg = load_for_inference(cfg.checkpoint, cfg.arch, cfg.variant, cfg.device)
    model = accelerate_for_inference(model, device=cfg.device, compile=cfg.compile, channels_last=cfg.channels_last)
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "restore_config.yaml")
    report, seen = [], set()
    for src, rel in tqdm(collect_inputs(cfg.inputs), desc="restore", unit="img"):
        dst = output_path(out_dir, rel)
        if dst in seen:
            entry = {"input": str(src), "output": None, "status": "duplicate_name",
                     "error": f"another input already wrote {dst}"}
        else:
            entry = restore_one(model, src, dst, cfg)
        if entry["status"] == "ok":
            seen.add(dst)
            _LOG.info("%s -> %s (%dx%d) in %.2f s", src, dst, entry["width"], entry["height"], entry["seconds"])
        else:
            _LOG.warning("skipped %s: %s", src, entry["error"])
        report.append(entry)
    ok = sum(e["status"] == "ok" for e in report)
    atomic_write_json(out_dir / "restore_report.json",
                      {"model": mcfg.to_dict(), "reuse": _reuse_of(model),
                       "restored": ok, "skipped": len(report) - ok, "images": report})
    _LOG.info("restored %d image(s), skipped %d; report: %s", ok, len(report) - ok, out_dir / "restore_report.json")
    return report


def main(argv: list[str] | None = None) -> list[dict]:
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--output" if a == "-o" else a for a in argv]  # short alias for --output
    return run(parse_config(RestoreConfig, argv))


if __name__ == "__main__":
    main()
