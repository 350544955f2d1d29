"""DSRIR: a progressive all-in-one restorer of three sub-networks (xfwang23/DSRIR), own implementation.

Data flow (``forward``), for a degraded image ``img`` (padded to a multiple of 8):

1. ``ebd``: one 3x3 conv 3 -> 32+48+64 channels, split into three feature groups x1, x2, x3.
2. Stage 1: ``SN1`` (a 3-level U-Net of patch-attention blocks, 32/64/96 channels) on x1, then
   ``PRU1`` and ``usau_1`` -> stage-1 image, log-variance map and gated features.
3. Stage 2: ``channel_comp1`` (1x1 conv on concat[stage-1 features, x2] -> 48 ch), ``SN2`` (2-level
   U-Net, 48/64 ch), ``PRU2``, ``usau_2`` -> stage-2 image, log-variance, features.
4. Stage 3: ``channel_comp2`` (concat[stage-2 features, x3] -> 64 ch), ``SN3`` (four patch-attention
   groups at full resolution), ``PRU3``, ``usau_3`` -> the final image and its log-variance.

Every USAU restores by a residual on the degraded input image. 3,516,837 parameters, equal to the
official module tree (so official checkpoints load with an identity key map). Three parameter
tensors of the official design never reach an output: ``usau_3.conv2`` (the last stage passes no
features on) and ``usau_3.att_map`` (its map is computed - it is part of the official FLOP count -
and returned for inspection, but no loss uses it). :data:`UNUSED_IN_LOSS` names them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dynet_model.dsrir_blocks import (
    PAB,
    PAG,
    PRU,
    USAU,
    down_sample,
    pab_stack,
    up_sample,
)

#: The input is padded to a multiple of this (patch-attention grids of 8x8 at full resolution,
#: 4x4 at 1/2 and 2x2 at 1/4 resolution).
PAD_MULTIPLE = 8

#: Parameters whose values can never influence the restored images or the variance maps.
UNUSED_IN_LOSS = ("usau_3.conv2.weight", "usau_3.att_map.0.weight", "usau_3.att_map.0.bias")

OFFICIAL_NUM_PARAMS = 3_516_837


class DSRIRStages(NamedTuple):
    """All stage outputs, stage 1 first; ``restored[-1]`` is the final image."""

    restored: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    log_var: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    attention: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    @property
    def final(self) -> torch.Tensor:
        return self.restored[-1]


def _pab(c: int, grid: tuple[int, int], *, k: int, red: int, bias: bool) -> PAB:
    return PAB(channels=c, kernel_size=k, reduction=red, bias=bias, grid=grid)


class SubNet1(nn.Module):
    """Three-level U-Net; channels c, c+s, c+2s; patch grids 8x8, 4x4, 2x2 by level."""

    def __init__(self, *, blocks: tuple[int, int, int], feats: int, step: int, kernel_size: int,
                 reduction: int, bias: bool) -> None:
        super().__init__()
        kw = dict(kernel_size=kernel_size, reduction=reduction, bias=bias)
        ch = (feats, feats + step, feats + 2 * step)
        grids = ((8, 8), (4, 4), (2, 2))
        self.encoder1 = pab_stack(count=blocks[0], channels=ch[0], grid=grids[0], **kw)
        self.encoder2 = pab_stack(count=blocks[1], channels=ch[1], grid=grids[1], **kw)
        self.encoder3 = pab_stack(count=blocks[2], channels=ch[2], grid=grids[2], **kw)
        self.decoder3 = pab_stack(count=blocks[2], channels=ch[2], grid=grids[2], **kw)
        self.decoder2 = pab_stack(count=blocks[1], channels=ch[1], grid=grids[1], **kw)
        self.decoder1 = pab_stack(count=blocks[0], channels=ch[0], grid=grids[0], **kw)
        self.down1 = down_sample(ch[0], step)
        self.down2 = down_sample(ch[1], step)
        self.up1 = up_sample(ch[0], step)
        self.up2 = up_sample(ch[1], step)
        self.skipatt2 = _pab(ch[1], grids[1], k=kernel_size, red=reduction, bias=bias)
        self.skipatt1 = _pab(ch[0], grids[0], k=kernel_size, red=reduction, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder1(x)
        e2 = self.encoder2(self.down1(e1))
        d3 = self.decoder3(self.encoder3(self.down2(e2)))
        d2 = self.decoder2(self.up2(d3) + self.skipatt2(e2))
        return self.decoder1(self.up1(d2) + self.skipatt1(e1))


class SubNet2(nn.Module):
    """Two-level U-Net; channels c, c+s; patch grids 4x4, 2x2 by level."""

    def __init__(self, *, blocks: tuple[int, int], feats: int, step: int, kernel_size: int,
                 reduction: int, bias: bool) -> None:
        super().__init__()
        kw = dict(kernel_size=kernel_size, reduction=reduction, bias=bias)
        ch = (feats, feats + step)
        grids = ((4, 4), (2, 2))
        self.encoder1 = pab_stack(count=blocks[0], channels=ch[0], grid=grids[0], **kw)
        self.encoder2 = pab_stack(count=blocks[1], channels=ch[1], grid=grids[1], **kw)
        self.decoder2 = pab_stack(count=blocks[1], channels=ch[1], grid=grids[1], **kw)
        self.decoder1 = pab_stack(count=blocks[0], channels=ch[0], grid=grids[0], **kw)
        self.down1 = down_sample(ch[0], step)
        self.up1 = up_sample(ch[0], step)
        self.skipatt1 = _pab(ch[0], grids[0], k=kernel_size, red=reduction, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder1(x)
        d2 = self.decoder2(self.encoder2(self.down1(e1)))
        return self.decoder1(self.up1(d2) + self.skipatt1(e1))


class SubNet3(nn.Module):
    """Four patch-attention groups at full resolution, each with grids 8x8, 4x4, 2x2, 1x1."""

    def __init__(self, *, groups: int, feats: int, kernel_size: int, reduction: int, bias: bool) -> None:
        super().__init__()
        grids = ((8, 8), (4, 4), (2, 2), (1, 1))
        self.num_groups = groups
        for i in range(1, groups + 1):
            self.add_module(f"PAG{i}", PAG(channels=feats, kernel_size=kernel_size, reduction=reduction,
                                           bias=bias, grids=grids))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_groups + 1):
            x = getattr(self, f"PAG{i}")(x)
        return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right to a multiple (reflect where the image is large enough, else replicate)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class DSRIR(nn.Module):
    """Progressive three-stage restorer; ``forward(x)`` -> final image, ``return_stages=True`` -> all."""

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, sn1_feats: int = 32,
                 sn2_feats: int = 48, sn3_feats: int = 64, feats_step1: int = 32, feats_step2: int = 16,
                 kernel_size: int = 3, reduction: int = 8, bias: bool = False,
                 sn1_blocks: tuple[int, int, int] = (2, 2, 2), sn2_blocks: tuple[int, int] = (2, 4),
                 sn3_groups: int = 4) -> None:
        super().__init__()
        self.split = (sn1_feats, sn2_feats, sn3_feats)
        kw = dict(kernel_size=kernel_size, reduction=reduction, bias=bias)
        usau = dict(image_channels=in_channels, out_channels=out_channels, kernel_size=3, bias=bias)
        self.ebd = nn.Conv2d(in_channels, sum(self.split), kernel_size, padding=kernel_size // 2, bias=bias)
        self.SN1 = SubNet1(blocks=tuple(sn1_blocks), feats=sn1_feats, step=feats_step1, **kw)
        self.PRU1 = PRU(channels=sn1_feats, reduction=reduction)
        self.usau_1 = USAU(channels=sn1_feats, **usau)
        self.channel_comp1 = nn.Conv2d(sn1_feats + sn2_feats, sn2_feats, 1, bias=bias)
        self.SN2 = SubNet2(blocks=tuple(sn2_blocks), feats=sn2_feats, step=feats_step2, **kw)
        self.PRU2 = PRU(channels=sn2_feats, reduction=reduction)
        self.usau_2 = USAU(channels=sn2_feats, **usau)
        self.channel_comp2 = nn.Conv2d(sn2_feats + sn3_feats, sn3_feats, 1, bias=bias)
        self.SN3 = SubNet3(groups=sn3_groups, feats=sn3_feats, **kw)
        self.PRU3 = PRU(channels=sn3_feats, reduction=reduction)
        self.usau_3 = USAU(channels=sn3_feats, **usau)

    def _stages(self, img: torch.Tensor) -> DSRIRStages:
        x1, x2, x3 = torch.split(self.ebd(img), list(self.split), dim=1)
        s1 = self.usau_1(self.PRU1(self.SN1(x1)), img)
        feats = self.channel_comp1(torch.cat([s1.features, x2], dim=1))
        s2 = self.usau_2(self.PRU2(self.SN2(feats)), img)
        feats = self.channel_comp2(torch.cat([s2.features, x3], dim=1))
        s3 = self.usau_3(self.PRU3(self.SN3(feats)), img, last=True)
        stages = (s1, s2, s3)
        return DSRIRStages(tuple(s.restored for s in stages), tuple(s.log_var for s in stages),
                           tuple(s.attention for s in stages))

    def forward(self, x: torch.Tensor, return_stages: bool = False) -> torch.Tensor | DSRIRStages:
        """Restore ``x`` (B x 3 x H x W, any H, W; range [0, 1]).

        Returns the stage-3 image (same shape as ``x``) or, with ``return_stages=True``, a
        :class:`DSRIRStages` whose tensors are all cropped back to H x W.
        """
        h, w = x.shape[-2:]
        out = self._stages(pad_to_multiple(x, PAD_MULTIPLE))
        if not return_stages:
            return out.final[..., :h, :w]
        crop = lambda ts: tuple(t[..., :h, :w] for t in ts)
        return DSRIRStages(crop(out.restored), crop(out.log_var), crop(out.attention))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
