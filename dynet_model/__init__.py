"""Restoration networks: DyNet (weight-shared, run-time depth), the PromptIR baseline, DSRIR.

The Python API (names resolved on first use, so ``import dynet_model`` stays cheap: no torch until
a name is needed, and never torchvision)::

    from dynet_model import load_model, restore_image
    model = load_model("model_final.safetensors")      # ours, or an official .ckpt / .pth
    restored = restore_image(model, rgb, tile=512)      # H x W x 3 uint8 / uint16 / float array
    y = model(x, reuse=(2, 3, 3, 4))                    # DyNet: any depth per call (tensor in [0, 1])

Code that needs torchvision calls :func:`common.torchvision_compat.ensure_torchvision_importable` first.
"""

from __future__ import annotations

import importlib

_API = {
    "DyNet": "networks", "PromptIR": "networks", "DSRIR": "dsrir",
    "ModelConfig": "config", "DSRIRConfig": "config", "build_model": "build",
    "load_model": "loading", "load_any": "loading", "save_model": "checkpoint",
    "restore_image": "inference", "parse_reuse": "variants",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'dynet_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
