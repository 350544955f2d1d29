"""The fast scoring engine (``curation.score --engine fast``, the default): NIQE, BRISQUE and NIMA per image.

NIQE and BRISQUE are our own re-implementations (:mod:`curation.scoring.niqe`, :mod:`curation.scoring.brisque`)
that equal pyiqa's scores with the same shipped parameter files (``--engine pyiqa`` keeps pyiqa itself as
the reference; the tests compare both). They work on the decoded uint8 image in row strips, so memory per
image is the decoded image plus a fixed working set. NIMA keeps pyiqa's network (built offline, see
:func:`curation.scoring.metrics.load_nima`) and pyiqa's preprocessing geometry (shorter side → 299 with
antialiased bilinear resize, centre crop), computed strip-wise from the uint8 image (the full-resolution
float tensor is never built) and batched across images.

The engine has the interface of :class:`curation.scoring.metrics.MetricSet`: ``score_image(rgb)`` returns
the native scores and the image's NIMA input; ``score_nima(batch)`` scores NIMA inputs together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from curation.scoring.brisque import BrisqueModel, brisque
from curation.scoring.niqe import BLOCK, NiqeModel, niqe
from curation.scoring.nss import luma_u8

_LOG = logging.getLogger(__name__)
NIMA_STRIP_BYTES = 32 << 20
BATCH_IMAGES = 8  # images per batched NIQE/BRISQUE call (one size bucket)
QUEUE_PIXELS = 64_000_000  # decoded pixels held across buckets before the fullest bucket is scored anyway


def nima_geometry(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``resize(img, size)`` output: the shorter side becomes ``size``, the longer one scales (truncated)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def nima_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """pyiqa NIMA's eval preprocessing geometry from a uint8 HxWx3 image → 3 x size x size float in [0, 1].

    Antialiased bilinear resize is separable: the width pass runs on strips of rows converted to float one
    strip at a time, the height pass on the (narrow) result, then the centre crop — the same arithmetic as
    resizing the whole float image, without ever holding it.
    """
    h, w = rgb.shape[:2]
    nh, nw = nima_geometry(h, w, size)
    step = max(1, NIMA_STRIP_BYTES // (w * 3 * 4))
    narrow = torch.empty((1, 3, h, nw), dtype=torch.float32)
    for a in range(0, h, step):
        b = min(h, a + step)
        strip = torch.from_numpy(np.array(rgb[a:b])).permute(2, 0, 1)[None].float().div_(255.0)
        narrow[:, :, a:b] = F.interpolate(strip, size=(b - a, nw), mode="bilinear", align_corners=False,
                                          antialias=True)
    out = F.interpolate(narrow, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = round((nh - size) / 2.0), round((nw - size) / 2.0)
    return out[:, top:top + size, left:left + size].contiguous()


class FastMetricSet:
    """The metrics of one scoring run with the fast engine, built once per worker process."""

    engine = "fast"

    def __init__(self, metrics: Sequence[str], device: str, weight_paths: dict[str, str], batched: bool | None = None):
        from curation.scoring.metrics import load_nima

        self.metrics = tuple(metrics)
        self.device = torch.device(device)
        # on a GPU, NIQE/BRISQUE run as batched torch kernels over images of one size (a bucket)
        self.batched = self.device.type == "cuda" if batched is None else batched
        self.buckets: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
        self.niqe_model = NiqeModel.load(weight_paths["niqe"]) if "niqe" in self.metrics else None
        self.brisque_model = BrisqueModel.load(weight_paths["brisque"]) if "brisque" in self.metrics else None
        self.nima = load_nima(weight_paths["nima"], device=str(self.device)) if "nima" in self.metrics else None
        self.nima_size = int(self.nima.base_model.default_cfg["input_size"][-1]) if self.nima is not None else 0

    def score_native_one(self, rgb: np.ndarray, name: str, y8: np.ndarray | None = None) -> float:
        """One native metric of one decoded image; raises (the caller records ``metric_error``) when undefined."""
        h, w = rgb.shape[:2]
        if name == "niqe":
            if h < BLOCK or w < BLOCK:
                raise ValueError(f"niqe: {w}x{h} image has no {BLOCK}x{BLOCK} block (NIQE needs both sides >= {BLOCK})")
            return niqe(rgb, self.niqe_model, y8)
        if name == "brisque":
            if h < 8 or w < 8:
                raise ValueError(f"brisque: {w}x{h} image is too small for the 7x7 window at half scale")
            return brisque(rgb, self.brisque_model, y8)
        raise KeyError(name)

    def score_native(self, rgb: np.ndarray) -> dict[str, float]:
        """NIQE / BRISQUE of one decoded image (its luma computed once, 1 byte per pixel, for both)."""
        native = [m for m in self.metrics if m != "nima"]
        y8 = luma_u8(rgb) if len(native) > 1 else None
        return {m: self.score_native_one(rgb, m, y8) for m in native}

    def score_image(self, rgb: np.ndarray) -> tuple[dict[str, float], torch.Tensor | None]:
        scores = self.score_native(rgb)
        return scores, (nima_input(rgb, self.nima_size) if self.nima is not None else None)

    # ---- batched mode: queue decoded images by size, score a bucket at a time ---------------------

    def queue(self, key: str, rgb: np.ndarray) -> list[tuple[str, dict | None, torch.Tensor | None, str | None]]:
        """Queue one decoded image; returns the results of any bucket that became due: (key, scores, nima input, error)."""
        bucket = self.buckets.setdefault(rgb.shape[:2], [])
        bucket.append((key, rgb))
        if len(bucket) >= BATCH_IMAGES:
            return self._run_bucket(rgb.shape[:2])
        if sum(len(b) * s[0] * s[1] for s, b in self.buckets.items()) > QUEUE_PIXELS:
            fullest = max(self.buckets, key=lambda s: len(self.buckets[s]) * s[0] * s[1])
            return self._run_bucket(fullest)
        return []

    def drain(self) -> list[tuple[str, dict | None, torch.Tensor | None, str | None]]:
        """Score every queued image (end of a shard)."""
        out = []
        for size in list(self.buckets):
            out += self._run_bucket(size)
        return out

    def _run_bucket(self, size: tuple[int, int]) -> list[tuple[str, dict | None, torch.Tensor | None, str | None]]:
        from curation.scoring.batched import brisque_batch, niqe_batch

        items = self.buckets.pop(size)
        h, w = size
        try:
            if (self.niqe_model is not None and (h < BLOCK or w < BLOCK)) or min(h, w) < 8:
                raise ValueError("too small for a batch")  # per image below: each gets its own clear error
            batch = torch.from_numpy(np.stack([rgb for _, rgb in items])).to(self.device)
            scores = [{} for _ in items]
            for name, fn, model in (("niqe", niqe_batch, self.niqe_model), ("brisque", brisque_batch, self.brisque_model)):
                if model is not None:
                    for d, v in zip(scores, fn(batch, model)):
                        d[name] = v
            del batch
        except Exception as exc:  # e.g. GPU out of memory: score these images one by one instead
            _LOG.debug("batch of %d %dx%d image(s) failed (%s); scoring them one by one", len(items), w, h, exc)
            scores = None
        out = []
        for i, (key, rgb) in enumerate(items):
            try:
                native = scores[i] if scores is not None else self.score_native(rgb)
                out.append((key, native, nima_input(rgb, self.nima_size) if self.nima is not None else None, None))
            except Exception as exc:
                out.append((key, None, None, f"{type(exc).__name__}: {exc}"[:500]))
        return out

    def score_nima(self, batch: Sequence[torch.Tensor]) -> list[float]:
        with torch.inference_mode():
            mos = self.nima(torch.stack(list(batch)).to(self.device))
        return [float(v) for v in mos.reshape(-1).tolist()]
