"""DyNet (one shared block per level, applied f times) and the PromptIR baseline (unshared stacks).

Both are the same 4-level U-shaped Restormer backbone (dim, 2dim, 4dim, latent 8dim) with three
prompt-interaction modules; they differ in the blocks per level and where the prompts sit:

* DyNet: each encoder/decoder level holds ONE transformer block applied ``reuse[i]`` times
  (``reuse`` is a forward argument: [2,3,3,4] = DyNet-S, [4,6,6,8] = DyNet-L, same weights).
  Prompts act on the latent and on the level-3 and level-2 skip connections.
* PromptIR: ``reuse`` fixes the number of distinct blocks per level; prompts act on the latent and
  on the decoder's level-3 and level-2 outputs.

Inputs of any size are padded to a multiple of 8 (reflect) and the output is cropped back; the
network predicts a residual added to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Downsample, PromptInteraction, TransformerBlock, Upsample
from .config import ModelConfig

MULTIPLE = 8  # three 2x down-samplings


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class _Backbone(nn.Module):
    """Modules common to DyNet and PromptIR; subclasses build the level stages and the forward."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, c = cfg.dim, cfg
        self.embed = nn.Conv2d(c.in_channels, d, 3, padding=1, bias=False)
        self.down1, self.down2, self.down3 = Downsample(d), Downsample(2 * d), Downsample(4 * d)
        self.up3, self.up2, self.up1 = Upsample(4 * d), Upsample(4 * d), Upsample(2 * d)
        self.fuse3 = nn.Conv2d(6 * d, 4 * d, 1, bias=c.bias)
        self.fuse2 = nn.Conv2d(4 * d, 2 * d, 1, bias=c.bias)
        self.prompt_latent = self._prompt(8 * d, 4 * d, 2)
        self.prompt_level3 = self._prompt(4 * d, 4 * d, 1)
        self.prompt_level2 = self._prompt(2 * d, 2 * d, 0)
        self.refine = nn.ModuleList(self._block(2 * d, c.heads[0]) for _ in range(c.num_refinement_blocks))
        self.head = nn.Conv2d(2 * d, c.out_channels, 3, padding=1, bias=c.bias)

    def _block(self, channels: int, heads: int) -> TransformerBlock:
        c = self.cfg
        return TransformerBlock(channels, heads, c.ffn_expansion_factor, c.bias, c.layernorm_type)

    def _prompt(self, feat: int, out: int, index: int) -> PromptInteraction:
        c = self.cfg
        return PromptInteraction(feat, out, c.prompt_dims[index], c.prompt_len, c.prompt_sizes[index],
                                 c.prompt_heads, c.ffn_expansion_factor, c.bias, c.layernorm_type)

    def forward(self, x: torch.Tensor, reuse: Sequence[int] | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected B x {self.cfg.in_channels} x H x W input, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x)
        feats = self._body(xp, self._check_reuse(reuse))
        for block in self.refine:
            feats = block(feats)
        return (self.head(feats) + xp)[..., :h, :w]

    def _check_reuse(self, reuse: Sequence[int] | None) -> tuple[int, ...]:
        raise NotImplementedError

    def _body(self, x: torch.Tensor, reuse: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError


class DyNet(_Backbone):
    """DyNet: shared per-level blocks, depth chosen at run time by the reuse vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d, h = cfg.dim, cfg.heads
        self.enc1, self.enc2 = self._block(d, h[0]), self._block(2 * d, h[1])
        self.enc3, self.latent = self._block(4 * d, h[2]), self._block(8 * d, h[3])
        self.dec3, self.dec2 = self._block(4 * d, h[2]), self._block(2 * d, h[1])
        self.dec1 = self._block(2 * d, h[0])
        self.reuse = tuple(cfg.reuse)  # default when forward gets none; settable attribute

    def _check_reuse(self, reuse: Sequence[int] | None) -> tuple[int, ...]:
        r = tuple(int(v) for v in (self.reuse if reuse is None else reuse))
        if len(r) != 4 or min(r) < 1:
            raise ValueError(f"reuse vector needs 4 entries >= 1, got {r}")
        return r

    @staticmethod
    def _repeat(block: nn.Module, x: torch.Tensor, times: int) -> torch.Tensor:
        for _ in range(times):
            x = block(x)
        return x

    def _body(self, x: torch.Tensor, reuse: tuple[int, ...]) -> torch.Tensor:
        f1, f2, f3, f4 = reuse
        e1 = self._repeat(self.enc1, self.embed(x), f1)
        e2 = self._repeat(self.enc2, self.down1(e1), f2)
        e3 = self._repeat(self.enc3, self.down2(e2), f3)
        lat = self.prompt_latent(self._repeat(self.latent, self.down3(e3), f4))
        d3 = self.fuse3(torch.cat([self.up3(lat), self.prompt_level3(e3)], dim=1))
        d3 = self._repeat(self.dec3, d3, f3)
        d2 = self.fuse2(torch.cat([self.up2(d3), self.prompt_level2(e2)], dim=1))
        d2 = self._repeat(self.dec2, d2, f2)
        d1 = torch.cat([self.up1(d2), e1], dim=1)
        return self._repeat(self.dec1, d1, f1)


class PromptIR(_Backbone):
    """PromptIR baseline: unshared stacks of ``cfg.reuse`` blocks per level, prompts in the decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d, h, n = cfg.dim, cfg.heads, cfg.reuse
        self.enc1 = self._stack(d, h[0], n[0])
        self.enc2 = self._stack(2 * d, h[1], n[1])
        self.enc3 = self._stack(4 * d, h[2], n[2])
        self.latent = self._stack(8 * d, h[3], n[3])
        self.dec3 = self._stack(4 * d, h[2], n[2])
        self.dec2 = self._stack(2 * d, h[1], n[1])
        self.dec1 = self._stack(2 * d, h[0], n[0])

    def _stack(self, channels: int, heads: int, count: int) -> nn.Sequential:
        return nn.Sequential(*(self._block(channels, heads) for _ in range(count)))

    def _check_reuse(self, reuse: Sequence[int] | None) -> tuple[int, ...]:
        if reuse is not None and tuple(reuse) != tuple(self.cfg.reuse):
            raise ValueError(f"PromptIR has fixed block counts {self.cfg.reuse}; got reuse={tuple(reuse)}")
        return tuple(self.cfg.reuse)

    def _body(self, x: torch.Tensor, reuse: tuple[int, ...]) -> torch.Tensor:
        e1 = self.enc1(self.embed(x))
        e2 = self.enc2(self.down1(e1))
        e3 = self.enc3(self.down2(e2))
        lat = self.prompt_latent(self.latent(self.down3(e3)))
        d3 = self.prompt_level3(self.dec3(self.fuse3(torch.cat([self.up3(lat), e3], dim=1))))
        d2 = self.prompt_level2(self.dec2(self.fuse2(torch.cat([self.up2(d3), e2], dim=1))))
        return self.dec1(torch.cat([self.up1(d2), e1], dim=1))
