"""Build a network from its :class:`~dynet_model.config.ModelConfig`."""

from __future__ import annotations

from torch import nn

from .config import DSRIRConfig, ModelConfig
from .networks import DyNet, PromptIR

# Official parameter totals (they include modules the official forward never calls; see docs/model.md)
OFFICIAL_PARAMS = {"dynet": 16_726_031, "promptir": 35_592_263, "dsrir": 3_516_837}
EXPECTED_PARAMS = {"dynet": 16_613_135, "promptir": 35_376_967}


def build_model(cfg: ModelConfig | DSRIRConfig) -> nn.Module:
    if isinstance(cfg, DSRIRConfig):  # the official DSRIR by default (see dynet_model/dsrir.py)
        from .dsrir import DSRIR
        return DSRIR(**cfg.network_kwargs())
    if cfg.arch == "dynet":
        return DyNet(cfg)
    if cfg.arch == "promptir":
        return PromptIR(cfg)
    raise ValueError(f"unknown arch {cfg.arch!r}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
