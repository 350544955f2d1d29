"""Model checkpoints (safetensors + JSON config) and official-checkpoint import.

Loading for callers goes through :func:`dynet_model.loading.load_any` (ours and official alike);
this module holds the file formats: the writer, the metadata reader, the official reader + key maps.

``save_model`` writes ``.safetensors`` whose metadata holds the :class:`ModelConfig` JSON
(``model_config``) and the caller's metadata (``user_metadata``, JSON), so the file alone rebuilds
the network. Loading never unpickles. Official releases (PyTorch Lightning ``.ckpt`` with a
``state_dict`` of ``net.``-prefixed keys, or a bare state dict; fp16 or fp32) are read with
``torch.load(weights_only=True)`` and mapped onto our names by :mod:`dynet_model.keymap`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from common.atomic import atomic_write_bytes

from .build import build_model
from .config import AnyConfig, config_from_json
from .keymap import map_official_state_dict

_LOG = logging.getLogger(__name__)
FORMAT = "dynet-curation/model-v1"


def save_model(path: str | os.PathLike, model: torch.nn.Module, cfg: AnyConfig,
               metadata: dict | None = None) -> Path:
    """Write ``model``'s weights + ``cfg`` (+ JSON-able ``metadata``) to ``path`` atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "model_config": cfg.to_json(),
            "user_metadata": json.dumps(metadata or {}, sort_keys=True, default=str)}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return path


def read_metadata(path: str | os.PathLike) -> tuple[AnyConfig, dict]:
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "model_config" not in meta:
        raise ValueError(f"{path}: no model_config in the safetensors metadata (not written by save_model)")
    return config_from_json(meta["model_config"]), json.loads(meta.get("user_metadata", "{}"))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, AnyConfig, dict]:
    """``(model in eval mode, cfg, metadata)`` of a checkpoint: :func:`dynet_model.loading.load_any` as a tuple.

    Kept for existing callers; the Python API's ``dynet_model.load_model`` returns the module alone.
    """
    from .loading import load_any

    loaded = load_any(path, device=device)
    return loaded.model, loaded.config, loaded.metadata


def filled_model(cfg: AnyConfig, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Build on the meta device (no wasted random init) and adopt ``state``'s tensors (strict)."""
    with torch.device("meta"):
        model = build_model(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    return model


_filled_model = filled_model


def _extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # Lightning checkpoint
    elif isinstance(obj, dict) and isinstance(obj.get("params"), dict):
        obj = obj["params"]  # BasicSR-style
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict or a Lightning checkpoint with a 'state_dict'")
    prefix = "net."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_official_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The official state dict inside a ``.ckpt`` / ``.pth`` (``weights_only=True``; prefixes removed)."""
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    return _extract_state_dict(obj, path)


def map_official_state(official: dict[str, torch.Tensor], arch: str
                       ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official keys -> ours for ``arch``: ``(state dict (fp32), skipped keys)``; raises on a mismatch."""
    if arch == "dsrir":  # DSRIR mirrors the official module tree: identity map, shapes checked
        from .dsrir_keymap import map_official_dsrir
        return map_official_dsrir(official)
    return map_official_state_dict(official, arch)


def load_official_checkpoint(path: str | os.PathLike, arch: str = "dynet"
                             ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Read an official DyNet / PromptIR / DSRIR checkpoint -> ``(state dict for our model (fp32), skipped keys)``.

    The skipped keys are the official modules the official forward never calls; any other
    mismatch (missing key, unknown key, wrong shape) raises ``ValueError``.
    """
    ours, skipped = map_official_state(read_official_state(path), arch)
    if skipped:
        _LOG.info("%s: skipped %d official keys of never-called modules: %s", path, len(skipped), skipped)
    return ours, skipped


def model_from_official(path: str | os.PathLike, cfg: AnyConfig) -> torch.nn.Module:
    """Build ``cfg``'s network and fill it from an official checkpoint (strict)."""
    state, _ = load_official_checkpoint(path, cfg.arch)
    return filled_model(cfg, state).eval()
