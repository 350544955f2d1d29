"""Make ``import torchvision`` work next to a CPU-only torch build.

Why this exists: the only torchvision wheel published for torch 2.13.0 is a CUDA build. Next to the
CPU torch wheel its C++ extension (``torchvision/_C.so``) cannot load, so the operator schemas it
would define (``torchvision::nms`` ...) never exist, and torchvision's ``_meta_registrations`` then
fails at import time with "operator torchvision::nms does not exist". That breaks every importer of
torchvision: timm, pyiqa (NIMA, ...), VGG feature losses.

What it does: *only when the extension really fails to load*, it defines the schemas of the two
operators torchvision registers fake kernels for unconditionally (``nms`` and ``qnms``), so the
import succeeds. Detection ops stay unusable (calling them raises); image decoding in this project
goes through cv2 / PIL, never torchvision.io. Where the extension loads (a matching CUDA machine, a
future CPU wheel), this module does nothing.

Call :func:`ensure_torchvision_importable` before the first ``import torchvision`` / ``import
pyiqa`` / ``import timm``. It is idempotent and cheap.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os

import torch

_LOG = logging.getLogger(__name__)
_DONE = False
_LIBRARY = None  # keep the torch.library.Library alive: dropping it unregisters the schemas

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to patch, the import fails on its own terms
    folder = list(spec.submodule_search_locations)[0]
    candidates = sorted(glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd")))
    if not candidates:
        return False
    try:
        torch.ops.load_library(candidates[0])
    except (OSError, RuntimeError, ImportError) as exc:
        _LOG.debug("torchvision extension does not load (%s); registering stub schemas", exc)
        return False
    return True


def ensure_torchvision_importable() -> bool:
    """Return True when stub schemas were registered, False when nothing was needed."""
    global _DONE, _LIBRARY
    if _DONE:
        return _LIBRARY is not None
    _DONE = True
    if _extension_loads() or hasattr(torch.ops.torchvision, "nms"):
        return False
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _LIBRARY.define(schema)
    return True
