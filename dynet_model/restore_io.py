"""Files in and out of ``dynet_model.restore``: inputs with a status each, 8/16-bit decode, lossless encode.

Why separate from the command: these rules decide what a user gets back, and each is tested alone.

- Inputs: every path given is reported, including ones that cannot be read. A folder is walked without
  following symlinked folders (no cycles); every non-hidden entry becomes an input. Before any byte is
  read a path must be a regular file (``os.stat``): a missing path, a dangling symlink, a symlink loop,
  a FIFO or a device gets its own status instead of a hang or a traceback.
- Decode: 16-bit PNG / TIFF are read as 16 bits (OpenCV, ``IMREAD_UNCHANGED``) and restored at full
  precision; everything else goes through :func:`common.imagedecode.decode_rgb` (EXIF rotation, CMYK,
  palette ...). Pixels are float32 in [0, 1] either way.
- Encode: PNG by default (lossless; restoring and then JPEG-compressing again would add artefacts back);
  the input's own format only when asked (``--keep-format``). 16-bit inputs are written as 16-bit
  PNG / TIFF; formats without 16 bits (JPEG, WebP, BMP) get 8.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common.imagedecode import DEFAULT_MAX_PIXELS, DecodeError, decode_rgb, probe_size

WRITABLE = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SIXTEEN_BIT = {".png", ".tif", ".tiff"}


@dataclass(frozen=True)
class InputItem:
    """One input: the file, its output name relative to the output folder, and a problem found up front."""

    src: Path
    rel: Path
    problem: str | None = None  # missing | dangling_symlink | symlink_loop | symlinked_folder | None


def _link_problem(path: Path) -> str | None:
    """``missing`` / ``dangling_symlink`` / ``symlink_loop`` when ``path`` cannot be resolved, else None."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink_loop"
        return "dangling_symlink" if path.is_symlink() else "missing"
    return None


def _walk(folder: Path) -> list[InputItem]:
    items = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(root)
        for name in dirs:  # os.walk lists symlinked folders here without descending: report them
            if (base / name).is_symlink():
                items.append(InputItem(base / name, (base / name).relative_to(folder), "symlinked_folder"))
        for name in sorted(files):
            if not name.startswith("."):
                p = base / name
                items.append(InputItem(p, p.relative_to(folder), _link_problem(p)))
    return sorted(items, key=lambda i: str(i.rel))


def collect_inputs(inputs: list[str]) -> list[InputItem]:
    """Every input given (files, and the entries of folders), each with its output name and any problem."""
    items: list[InputItem] = []
    for item in inputs:
        p = Path(item)
        problem = _link_problem(p)
        if problem is None and p.is_dir():
            items += _walk(p)
        else:
            items.append(InputItem(p, Path(p.name), problem))
    return items


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file; raises DecodeError for anything else (FIFO, device, folder)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DecodeError(_link_problem(path) or "read_error", str(exc)) from exc
    if not stat.S_ISREG(mode):
        raise DecodeError("not_a_regular_file", f"{path} is not a regular file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DecodeError("read_error", f"{type(exc).__name__}: {exc}") from exc


def _sixteen_bit(arr: np.ndarray) -> np.ndarray:
    """OpenCV's uint16 array (grey, BGR or BGRA) -> RGB float32 in [0, 1]; alpha composited on white."""
    x = arr.astype(np.float32) / 65535.0
    if x.ndim == 2:
        return np.repeat(x[..., None], 3, axis=2)
    if x.shape[2] == 4:
        alpha = x[..., 3:4]
        x = x[..., :3] * alpha + (1.0 - alpha)
    elif x.shape[2] == 1:
        return np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x[..., 2::-1])


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, int]:
    """(H×W×3 float32 RGB in [0, 1], bit depth 8 or 16); raises DecodeError."""
    w, h = probe_size(data)
    if w * h > max_pixels:
        raise DecodeError("too_large", f"{w}x{h} = {w * h} pixels exceeds --max-pixels {max_pixels}")
    if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:4] in (b"II*\x00", b"MM\x00*"):
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.dtype == np.uint16:
            return _sixteen_bit(arr), 16
    return decode_rgb(data, max_pixels).astype(np.float32) / 255.0, 8


def output_path(out_dir: Path, rel: Path, keep_format: bool) -> Path:
    """PNG beside the input's relative name; the input's own suffix only with ``keep_format``."""
    suffix = rel.suffix.lower()
    if keep_format and suffix in WRITABLE:
        return out_dir / rel
    return out_dir / (rel.with_suffix(".png") if suffix in WRITABLE else rel.with_name(rel.name + ".png"))


def output_depth(path: Path, bit_depth: int) -> int:
    return 16 if bit_depth == 16 and path.suffix.lower() in SIXTEEN_BIT else 8


def quantise(rgb: np.ndarray, depth: int) -> np.ndarray:
    peak, dtype = (65535.0, np.uint16) if depth == 16 else (255.0, np.uint8)
    return np.round(np.clip(rgb, 0.0, 1.0) * peak).astype(dtype)


def encode(rgb: np.ndarray, path: Path, bit_depth: int, jpeg_quality: int = 95) -> bytes:
    """Encoded bytes of float RGB ``rgb`` for ``path``'s format, 16-bit where the input was and the format allows."""
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if suffix in (".jpg", ".jpeg") else []
    pixels = quantise(rgb, output_depth(path, bit_depth))
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(pixels[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f"cannot encode {suffix}")
    return buf.tobytes()


def side_by_side(before: np.ndarray, after: np.ndarray, gap: int = 8) -> np.ndarray:
    """Input | white gap | output, one float RGB image (the before/after view of ``--side-by-side``)."""
    h = before.shape[0]
    spacer = np.ones((h, gap, 3), dtype=np.float32)
    return np.concatenate([before.astype(np.float32), spacer, after.astype(np.float32)], axis=1)
