"""Building blocks of DSRIR (xfwang23/DSRIR, model/DSRIR.py), written from its description.

Attribute names follow the official module tree so that an official state dict loads with an
identity key map (see :mod:`dynet_model.dsrir_keymap`). Index positions inside ``nn.Sequential``
matter for the same reason (``PA.conv_du.0`` / ``.2``, ``fr.0`` / ``.2``, ``down.1`` ...).

Blocks:

* :class:`PatchAttention` - average-pool the map onto a ``p_h x p_w`` grid of patches, squeeze /
  excite the pooled grid with two 1x1 convs, and scale every pixel of patch (i, j) by the weight of
  cell (i, j). Needs H divisible by p_h and W by p_w (the model pads its input to a multiple of 8).
* :class:`PAB` - patch-attention block: conv3x3 -> ReLU -> conv3x3 -> patch attention, + input.
* :class:`PAG` - a group of PABs followed by a conv3x3, + input.
* :class:`PRU` - pixel-wise refine unit: conv3x3, then a per-pixel sigmoid gate computed from it by
  a small conv3x3 bottleneck; gate * features + input.
* :class:`USAU` - uncertainty-supervised attention unit: fuses the sub-network features with the
  degraded image, emits a restored image (residual on the input), a per-pixel log-variance map (the
  uncertainty loss supervises it) and an attention map that gates the features passed on.
* :class:`Resample` - bilinear x0.5 / x2 followed by a 1x1 conv that changes the channel count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _conv(c_in: int, c_out: int, k: int, *, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias)


class _Scale(nn.Module):
    """Bilinear resize by a fixed factor (no parameters); kept as a module so Sequential indices match."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)


class Resample(nn.Module):
    """``down``: bilinear x0.5 then 1x1 conv c_in -> c_out; ``up``: bilinear x2 then 1x1 conv."""

    def __init__(self, *, c_in: int, c_out: int, factor: float, attr: str) -> None:
        super().__init__()
        self.attr = attr
        setattr(self, attr, nn.Sequential(_Scale(factor), nn.Conv2d(c_in, c_out, 1, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.attr)(x)


def down_sample(channels: int, step: int) -> Resample:
    return Resample(c_in=channels, c_out=channels + step, factor=0.5, attr="down")


def up_sample(channels: int, step: int) -> Resample:
    return Resample(c_in=channels + step, c_out=channels, factor=2.0, attr="up")


class PatchAttention(nn.Module):
    def __init__(self, *, channels: int, reduction: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        hidden = channels // reduction
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        gh, gw = self.grid
        if h % gh or w % gw:
            raise ValueError(f"PatchAttention grid {gh}x{gw} needs H, W divisible by it; got {h}x{w}")
        weights = self.conv_du(F.adaptive_avg_pool2d(x, (gh, gw)))  # B, C, gh, gw
        patches = x.reshape(b, c, gh, h // gh, gw, w // gw)
        return (patches * weights[:, :, :, None, :, None]).reshape(b, c, h, w)


class PAB(nn.Module):
    checkpoint_activations: bool = False  # recompute in backward (dynet_model.compiled.set_activation_checkpointing)

    def __init__(self, *, channels: int, kernel_size: int, reduction: int, bias: bool,
                 grid: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, kernel_size, bias=bias)
        self.conv2 = _conv(channels, channels, kernel_size, bias=bias)
        self.PA = PatchAttention(channels=channels, reduction=reduction, grid=grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.PA(self.conv2(F.relu(self.conv1(x))))


def pab_stack(*, count: int, channels: int, kernel_size: int, reduction: int, bias: bool,
              grid: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(*[PAB(channels=channels, kernel_size=kernel_size, reduction=reduction,
                               bias=bias, grid=grid) for _ in range(count)])


class PAG(nn.Module):
    def __init__(self, *, channels: int, kernel_size: int, reduction: int, bias: bool,
                 grids: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        blocks = [PAB(channels=channels, kernel_size=kernel_size, reduction=reduction, bias=bias, grid=g)
                  for g in grids]
        self.body = nn.Sequential(*blocks, _conv(channels, channels, kernel_size, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PRU(nn.Module):
    def __init__(self, *, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = channels // reduction
        self.conv = _conv(channels, channels, 3, bias=False)
        self.fr = nn.Sequential(_conv(channels, hidden, 3, bias=True), nn.ReLU(inplace=True),
                                _conv(hidden, channels, 3, bias=True), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.conv(x)
        return x + self.fr(feats) * feats


class USAUOutput(NamedTuple):
    features: torch.Tensor | None  # gated features for the next stage (None for the last stage)
    restored: torch.Tensor  # B x 3 x H x W image
    log_var: torch.Tensor  # B x 3 x H x W log-variance map (uncertainty loss)
    attention: torch.Tensor  # B x C x H x W sigmoid attention map derived from the variance features


class USAU(nn.Module):
    def __init__(self, *, image_channels: int, channels: int, out_channels: int, kernel_size: int,
                 bias: bool) -> None:
        super().__init__()
        self.conv_in = _conv(image_channels, channels, kernel_size, bias=bias)
        self.conv_out = _conv(channels, out_channels, kernel_size, bias=bias)
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=bias)
        self.var_est = nn.Sequential(_conv(channels, channels, 3, bias=True), nn.LeakyReLU(0.1, inplace=True))
        self.var_map = nn.Sequential(_conv(channels, out_channels, 3, bias=True), nn.LeakyReLU(0.1, inplace=True))
        self.att_map = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=True), nn.Sigmoid())

    def forward(self, feats: torch.Tensor, image: torch.Tensor, *, last: bool = False) -> USAUOutput:
        fused = self.conv1(feats) + self.conv_in(image)
        restored = image + self.conv_out(fused)
        hidden = self.var_est(fused)
        log_var = self.var_map(hidden)
        attention = self.att_map(hidden)
        # The official last stage computes the attention map but passes no features on, so its
        # conv2 is never applied; we keep both (parameter / FLOP parity) and expose the map.
        out = None if last else feats + attention * self.conv2(feats)
        return USAUOutput(out, restored, log_var, attention)
