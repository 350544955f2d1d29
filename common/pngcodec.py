"""Lossless PNG encode/decode of RGB uint8 arrays (the patch format of the shards)."""

from __future__ import annotations

import cv2
import numpy as np


def encode_png(rgb: np.ndarray, level: int = 3) -> bytes:
    """Lossless PNG bytes of an RGB uint8 array (deterministic for the same input and level)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """RGB uint8 array from PNG bytes (used by tests and the report)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError("not a decodable PNG")
    return arr[..., ::-1].copy()
