"""Restoration models as evaluate / fine-tune see them: any checkpoint (via dynet_model.loading.load_any) or identity.

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


def identity_restorer() -> Restorer:
    return Restorer(name="identity", model=None, arch="identity")


def load_restorer(*, model: str, checkpoint: str | None, official_checkpoint: str | None = None,
                  arch: str | None = None, variant: str | None = None, device: str = "cpu") -> Restorer:
    """Build the restorer named by evaluate's flags (see ``training.evaluate.EvalConfig``)."""
    if model == "identity":
        if checkpoint or official_checkpoint:
            raise ValueError("--model identity takes no checkpoint")
        return identity_restorer()
    if model != "network":
        raise ValueError(f"--model must be 'network' or 'identity', got {model!r}")
    if checkpoint and official_checkpoint:
        raise ValueError("--official-checkpoint is an old spelling of --checkpoint: give one of them")
    checkpoint = checkpoint or official_checkpoint
    if not checkpoint:
        raise ValueError("give --checkpoint (ours .safetensors / a checkpoints/step_N folder, or an official .ckpt/.pth)")
    from dynet_model.loading import load_any

    loaded = load_any(checkpoint, arch=arch, device="cpu")
    net, cfg = loaded.model, loaded.config
    if loaded.official:
        name = f"official-{cfg.arch}:{Path(checkpoint).stem}"
    else:
        name = loaded.path.parent.name if loaded.path.name == "model.safetensors" else loaded.path.stem
    net = net.to(device).eval()
    arch_name = cfg.arch
    reuse = None
    if arch_name == "dynet":
        from dynet_model.variants import parse_reuse
        reuse = tuple(parse_reuse(variant)) if variant else tuple(cfg.reuse)
        name = f"{name}@{','.join(map(str, reuse))}"
    elif variant:
        raise ValueError(f"--variant applies to DyNet checkpoints only (this one is {arch_name})")
    return Restorer(name=name, model=net, arch=arch_name, reuse=reuse, model_config=cfg.to_dict())
