"""Decode image bytes once, robustly, into RGB uint8 — the one decoder every curation stage uses.

Content is sniffed (never the file extension); EXIF orientation is applied; CMYK, palette, greyscale,
RGBA (composited on white) and 16-bit images become RGB uint8. Failures raise :class:`DecodeError`
carrying a per-item ``status`` and a readable reason, so stages record them instead of crashing.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb limit (2 × 89.5 MP)


class DecodeError(Exception):
    """An image that cannot be used; ``status`` is the recorded per-item status."""

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def probe_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone, after EXIF rotation; raises DecodeError."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError as exc:
        raise DecodeError("decode_error", f"not a recognised image format ({exc})") from exc
    except Exception as exc:  # PIL raises many types for damaged headers
        raise DecodeError("decode_error", f"{type(exc).__name__}: {exc}") from exc
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
        head = data[:64].lstrip().lower()
        kind = "HTML page" if head.startswith((b"<!doctype html", b"<html")) else "unrecognised bytes"
        raise DecodeError("decode_error", f"not an image ({kind})") from exc
    except Exception as exc:
        raise DecodeError("decode_error", f"{type(exc).__name__}: {exc}") from exc
    w, h = img.size
    if w * h > max_pixels:
        raise DecodeError("too_large", f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_large", str(exc)) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("decode_error", f"{type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
