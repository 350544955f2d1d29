"""Build a network from its :class:`~dynet_model.config.ModelConfig`."""

from __future__ import annotations

from torch import nn

from .config import ModelConfig
from .networks import DyNet, PromptIR

# Official parameter totals (they include modules the official forward never calls; see docs/model.md)
OFFICIAL_PARAMS = {"dynet": 16_726_031, "promptir": 35_592_263, "dsrir": 3_516_837}
EXPECTED_PARAMS = {"dynet": 16_613_135, "promptir": 35_376_967}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "dynet":
        return DyNet(cfg)
    if cfg.arch == "promptir":
        return PromptIR(cfg)
    if cfg.arch == "dsrir":  # the official DSRIR; its widths are fixed (see dynet_model/dsrir.py)
        from .dsrir import DSRIR
        return DSRIR(in_channels=cfg.in_channels, out_channels=cfg.out_channels, bias=cfg.bias)
    raise ValueError(f"unknown arch {cfg.arch!r}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
