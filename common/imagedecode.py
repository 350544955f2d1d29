"""Decode image bytes once, robustly, into RGB uint8 — the one decoder every curation stage uses.

Content is sniffed (never the file extension); EXIF orientation is applied; CMYK, palette, greyscale,
RGBA (composited on white) and 16-bit images become RGB uint8. High-bit-depth samples are scaled by
their real value range, not truncated: 16-bit by 0..65535; 32-bit integer by 0..255 when they fit,
else 0..65535; floating point (greyscale TIFF) by 0..1 when they fit, else 0..255. Values outside
those ranges (HDR, negative, NaN) and TIFF sample formats Pillow cannot read (floating-point colour,
64-bit, half floats) get the status ``unsupported`` instead of a silently black or clipped image.
Failures raise :class:`DecodeError` carrying a per-item ``status`` and a readable, deterministic
reason (no memory addresses), so stages record them instead of crashing and reruns write equal rows.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb limit (2 × 89.5 MP)
DEFAULT_MAX_IMAGE_BYTES = 64 * 2**20  # --max-image-bytes: an encoded image file larger than this is refused


class DecodeError(Exception):
    """An image that cannot be used; ``status`` is the recorded per-item status."""

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


_ADDRESS = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def error_text(exc: BaseException) -> str:
    """``Type: message`` with object reprs' memory addresses removed, so equal inputs give equal text."""
    return _ADDRESS.sub(r"<\1>", f"{type(exc).__name__}: {exc}")


def _unidentified(data: bytes) -> DecodeError:
    if data[:4] in _TIFF_MAGIC:
        return DecodeError("unsupported", "a TIFF whose sample format Pillow cannot read (floating-point colour, "
                                          "64-bit or half-float samples); convert it to 8- or 16-bit")
    head = data[:64].lstrip().lower()
    kind = "HTML page" if head.startswith((b"<!doctype html", b"<html")) else "unrecognised bytes"
    return DecodeError("decode_error", f"not an image ({kind})")


def _sample_peak(img: Image.Image, arr: np.ndarray) -> float:
    """The value that maps to 255 for a high-bit-depth greyscale image, from its real value range."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode == "F" and not np.isfinite(arr).all():
        raise DecodeError("unsupported", "floating-point image with NaN or infinite samples")
    low, high = float(arr.min(initial=0)), float(arr.max(initial=0))
    limit = 255.0 if img.mode == "F" else 65535.0
    if low < 0 or high > limit:
        raise DecodeError("unsupported", f"{'floating-point' if img.mode == 'F' else '32-bit integer'} samples "
                                         f"in [{low:g}, {high:g}], outside 0..{limit:g}")
    if img.mode == "F":
        return 1.0 if high <= 1.0 else 255.0
    return 255.0 if high <= 255 else 65535.0


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = _sample_peak(img, arr)
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")  # convert() would copy an RGB image whole


def probe_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, after EXIF rotation; raises DecodeError."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except Exception as exc:  # PIL raises many types for damaged headers
        raise DecodeError("decode_error", error_text(exc)) from exc
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return an ``H×W×3`` uint8 array; raise :class:`DecodeError` (status decode_error / too_large / empty)."""
    if not data:
        raise DecodeError("empty", "zero-byte file")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # PIL refuses > 2x its own limit already at open time
        raise DecodeError("too_large", f"decompression bomb guard: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except Exception as exc:
        raise DecodeError("decode_error", error_text(exc)) from exc
    w, h = img.size
    if w * h > max_pixels:
        raise DecodeError("too_large", f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no full copy when there is nothing to rotate
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_large", str(exc)) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("decode_error", error_text(exc)) from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
