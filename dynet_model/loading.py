"""One loader for every weight file the project meets: :func:`load_any` (and :func:`load_model`).

Evaluate, fine-tune, restore and the Python API all read weights here, with one vocabulary:
a *checkpoint* is

- our ``.safetensors`` (from :func:`dynet_model.checkpoint.save_model`; the config in its metadata
  rebuilds the network), or a training checkpoint folder ``.../step_NNNNNNN/`` (its
  ``model.safetensors``);
- an official DyNet / PromptIR / DSRIR release ``.ckpt`` / ``.pth`` (PyTorch Lightning
  ``{"state_dict": {"net.<key>": ...}}`` or a bare state dict, fp16 or fp32), read with
  ``torch.load(weights_only=True)`` only. Such a file carries no config: its architecture is
  ``arch`` when given, else detected as the architecture whose paper-size network the mapped keys
  and shapes fit exactly (the architectures' key sets differ, so at most one fits).

Nothing is unpickled; loading is strict (no missing, unexpected or mis-shaped tensor).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import ALL_ARCHS, AnyConfig, default_config

_LOG = logging.getLogger(__name__)
OURS_SUFFIX = ".safetensors"


@dataclass
class LoadedModel:
    """A network rebuilt from a checkpoint, in eval mode, and where it came from."""

    model: nn.Module
    config: AnyConfig
    path: Path
    official: bool = False
    metadata: dict = field(default_factory=dict)  # ours: save_model's user metadata
    skipped: list[str] = field(default_factory=list)  # official: keys of never-called modules

    @property
    def arch(self) -> str:
        return self.config.arch


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A weights file, or a training checkpoint folder -> its ``model.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    return path


def _meta_state(cfg: AnyConfig) -> dict[str, torch.Size]:
    from .build import build_model

    with torch.device("meta"):
        return {k: v.shape for k, v in build_model(cfg).state_dict().items()}


def _fits(state: dict[str, torch.Tensor], cfg: AnyConfig) -> bool:
    ref = _meta_state(cfg)
    return ref.keys() == state.keys() and all(state[k].shape == s for k, s in ref.items())


def map_official(official: dict[str, torch.Tensor], arch: str | None, path: Path
                 ) -> tuple[AnyConfig, dict[str, torch.Tensor], list[str]]:
    """Map an official state dict onto ours: ``(config, state dict in fp32, skipped keys)``."""
    from .checkpoint import map_official_state

    if arch is not None:
        state, skipped = map_official_state(official, arch)
        return default_config(arch), state, skipped
    reasons = []
    for candidate in ALL_ARCHS:  # key sets differ between the architectures: the first exact fit is the one
        try:
            state, skipped = map_official_state(official, candidate)
        except (ValueError, KeyError) as exc:
            reasons.append(f"{candidate}: {str(exc)[:120]}")
            continue
        cfg = default_config(candidate)
        if _fits(state, cfg):
            return cfg, state, skipped
        reasons.append(f"{candidate}: keys or shapes differ from the paper-size network")
    raise ValueError(f"{path}: cannot tell the architecture of this official checkpoint ({'; '.join(reasons)}); "
                     "pass arch / --arch")


def load_any(path: str | os.PathLike, *, arch: str | None = None, device: str | torch.device = "cpu"
             ) -> LoadedModel:
    """Rebuild the network of any checkpoint (ours or official) -> :class:`LoadedModel` (eval mode).

    ``arch`` names the architecture of an official file (detected when omitted); for our files,
    which carry their config, it is only checked.
    """
    from .checkpoint import filled_model, read_metadata, read_official_state

    path = resolve_checkpoint(path)
    if path.suffix == OURS_SUFFIX:
        from safetensors.torch import load_file

        cfg, metadata = read_metadata(path)
        if arch is not None and arch != cfg.arch:
            raise ValueError(f"{path} holds a {cfg.arch} model, not {arch}")
        model = filled_model(cfg, load_file(str(path), device="cpu"))
        return LoadedModel(model.to(device).eval(), cfg, path, metadata=metadata)
    if arch is not None and arch not in ALL_ARCHS:
        raise ValueError(f"arch must be one of {ALL_ARCHS}, got {arch!r}")
    cfg, state, skipped = map_official(read_official_state(path), arch, path)
    if skipped:
        _LOG.info("%s: skipped %d official keys of never-called modules", path, len(skipped))
    model = filled_model(cfg, state)
    return LoadedModel(model.to(device).eval(), cfg, path, official=True, skipped=skipped)


def set_reuse(model: nn.Module, cfg: AnyConfig, variant: str | Sequence[int] | None) -> None:
    """Set DyNet's default reuse vector from ``s`` / ``l`` / ``"2,3,3,4"`` / a tuple (None: keep)."""
    if variant is None:
        return
    if cfg.arch != "dynet":
        raise ValueError(f"a variant / reuse vector applies to DyNet only; this model is {cfg.arch}")
    from .variants import parse_reuse

    model.reuse = tuple(parse_reuse(variant)) if isinstance(variant, str) else tuple(int(r) for r in variant)


def load_model(path: str | os.PathLike, *, arch: str | None = None, variant: str | Sequence[int] | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """The Python API: a ready eval-mode ``nn.Module`` from any checkpoint (see :func:`load_any`).

    ``variant`` sets DyNet's default depth (``"s"``, ``"l"``, ``"2,3,3,4"``); a DyNet model also
    takes ``model(x, reuse=(2, 3, 3, 4))`` per call.
    """
    loaded = load_any(path, arch=arch, device=device)
    set_reuse(loaded.model, loaded.config, variant)
    return loaded.model
