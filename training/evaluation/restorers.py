"""Restoration models as evaluate / fine-tune see them: our checkpoints, official ones, or identity.

``Restorer`` wraps a model (or nothing, for ``identity``) with the reuse vector to run it at, so
evaluation code never needs to know the architecture. The dynet_model package is imported lazily so
``--model identity`` works without it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass
class Restorer:
    name: str
    model: torch.nn.Module | None  # None: identity (returns the degraded input)
    arch: str
    reuse: tuple[int, ...] | None = None  # DyNet depth vector; None for other archs
    model_config: dict[str, Any] | None = None

    @property
    def supports_reuse(self) -> bool:
        return self.model is not None and self.arch == "dynet"

    def with_reuse(self, reuse: Sequence[int]) -> Restorer:
        if not self.supports_reuse:
            raise ValueError(f"{self.name}: a reuse vector applies to DyNet models only (arch={self.arch})")
        reuse = tuple(int(r) for r in reuse)
        return dataclasses.replace(self, reuse=reuse, name=f"{self.name.split('@')[0]}@{','.join(map(str, reuse))}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            return x
        out = self.model(x, reuse=self.reuse) if self.supports_reuse else self.model(x)
        if isinstance(out, (tuple, list)):  # multi-output nets: the first is the restored image
            out = out[0]
        return out


def resolve_model_file(path: str | Path) -> Path:
    """A model file, or a training checkpoint folder (``.../step_NNNNNNN/``) -> its ``model.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {path}")
    return path


def identity_restorer() -> Restorer:
    return Restorer(name="identity", model=None, arch="identity")


def build_official(path: str | Path, arch: str) -> tuple[torch.nn.Module, Any]:
    """Our model with an official checkpoint's weights (through dynet_model's key map)."""
    from dynet_model.build import build_model
    from dynet_model.checkpoint import load_official_checkpoint
    from dynet_model.config import ModelConfig

    cfg = ModelConfig(arch=arch)
    model = build_model(cfg)
    state, skipped = load_official_checkpoint(str(path), arch)
    model.load_state_dict(state, strict=True)
    if skipped:
        log.info("official checkpoint %s: skipped %d unused keys (%s...)", path, len(skipped), list(skipped)[:3])
    return model, cfg


def load_restorer(*, model: str, checkpoint: str | None, official_checkpoint: str | None,
                  arch: str, variant: str | None, device: str) -> Restorer:
    """Build the restorer named by evaluate's flags (see ``training.evaluate.EvalConfig``)."""
    if model == "identity":
        if checkpoint or official_checkpoint:
            raise ValueError("--model identity takes no checkpoint")
        return identity_restorer()
    if model != "network":
        raise ValueError(f"--model must be 'network' or 'identity', got {model!r}")
    if bool(checkpoint) == bool(official_checkpoint):
        raise ValueError("give exactly one of --checkpoint (ours, .safetensors) or --official-checkpoint")
    if checkpoint:
        from dynet_model.checkpoint import load_model
        path = resolve_model_file(checkpoint)
        net, cfg, _meta = load_model(path, device="cpu")
        name = path.parent.name if path.name == "model.safetensors" else path.stem
    else:
        net, cfg = build_official(resolve_model_file(official_checkpoint), arch)
        name = f"official-{arch}:{Path(official_checkpoint).stem}"
    net = net.to(device).eval()
    arch_name = getattr(cfg, "arch", arch)
    reuse = None
    if arch_name == "dynet":
        from dynet_model.variants import parse_reuse
        reuse = tuple(parse_reuse(variant)) if variant else tuple(cfg.reuse)
        name = f"{name}@{','.join(map(str, reuse))}"
    elif variant:
        raise ValueError(f"--variant applies to DyNet checkpoints only (this one is {arch_name})")
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else None
    return Restorer(name=name, model=net, arch=arch_name, reuse=reuse, model_config=cfg_dict)


def load_init_weights(model: torch.nn.Module, path: str | Path, arch: str) -> list[str]:
    """Copy weights from our ``.safetensors`` (or a checkpoint folder) or an official one into ``model``.

    Returns the skipped official keys (empty for ours). Shapes must match exactly.
    """
    path = resolve_model_file(path)
    if path.suffix == ".safetensors":
        from dynet_model.checkpoint import load_model
        src, cfg, _ = load_model(str(path), device="cpu")
        if getattr(cfg, "arch", arch) != arch:
            raise ValueError(f"--init {path} is a {cfg.arch} model but fine-tuning builds {arch}")
        model.load_state_dict(src.state_dict(), strict=True)
        return []
    from dynet_model.checkpoint import load_official_checkpoint
    state, skipped = load_official_checkpoint(str(path), arch)
    model.load_state_dict(state, strict=True)
    return list(skipped)
