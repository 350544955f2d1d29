"""Building blocks shared by DyNet and PromptIR (Restormer transformer block + prompt modules).

The arithmetic follows the official code step by step (so official weights give the official
output): LayerNorm over the channels of each pixel with the biased variance and eps 1e-5 inside
the square root; MDTA with L2-normalised q, k over the pixel axis and a C_head x C_head softmax
attention scaled by a learnable per-head temperature; GDFN with a gelu(x1) * x2 gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

LN_EPS = 1e-5


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a B x C x H x W tensor (``WithBias`` or ``BiasFree``).

    Two formulations of the same arithmetic, picked by where the code runs (measured, see
    docs/model.md "Speed"):

    * eager (WithBias): ``F.layer_norm`` on the B x H x W x C view - one fused kernel; the permutes are
      free views, and in channels_last (the CUDA default) the view is already contiguous, so no copy.
      On CPU this is 7x faster than normalising over dim 1 with separate kernels.
    * under torch.compile, and for BiasFree: normalisation over dim 1 directly (one ``var_mean``, one
      scale/shift) - no layout shuffle in the graph; inductor fuses it into a single reduction kernel.
      Statistics in fp32 (as ``F.layer_norm`` under autocast), result in the input's dtype.
    """

    def __init__(self, channels: int, kind: str = "WithBias"):
        super().__init__()
        if kind not in ("WithBias", "BiasFree"):
            raise ValueError(f"unknown LayerNorm type {kind!r}")
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if kind == "WithBias" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None and not torch.compiler.is_compiling():
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, LN_EPS)
            return y.permute(0, 3, 1, 2)
        return self.over_channels(x)

    def over_channels(self, x: torch.Tensor) -> torch.Tensor:
        """The normalisation over dim 1, without permutes (the compiled / BiasFree path)."""
        xf = x.float()
        var, mean = torch.var_mean(xf, dim=1, correction=0, keepdim=True)
        scale = torch.rsqrt(var + LN_EPS)
        weight = self.weight.float().view(1, -1, 1, 1)
        if self.bias is not None:
            y = torch.addcmul(self.bias.float().view(1, -1, 1, 1), (xf - mean) * scale, weight)
        else:  # BiasFree scales by the (centred) std but does not subtract the mean
            y = xf * scale * weight
        return y.to(x.dtype)


class MDTA(nn.Module):
    """Multi-Dconv-head Transposed Attention: attention across channels, linear in pixels."""

    def __init__(self, channels: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels, bias=bias)
        self.proj = nn.Conv2d(channels, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # channel index = part * c + head * c_head + i: one view gives q, k, v per head
        qkv = self.qkv_dw(self.qkv(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        qk = F.normalize(qkv[:, :2], dim=-1)  # q and k L2-normalised over pixels in one call
        q, k, v = qk[:, 0], qk[:, 1], qkv[:, 2]
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network."""

    def __init__(self, channels: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(channels * expansion)
        self.fc_in = nn.Conv2d(channels, 2 * hidden, 1, bias=bias)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.fc_out = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dw(self.fc_in(x)).chunk(2, dim=1)
        return self.fc_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Restormer block: x + MDTA(LN(x)), then x + GDFN(LN(x)).

    ``checkpoint_activations`` (set by :func:`dynet_model.compiled.set_activation_checkpointing`)
    recomputes the block in the backward pass instead of keeping its activations: ~1/3 more compute
    for much less memory, so larger batches/crops fit.
    """

    checkpoint_activations: bool = False

    def __init__(self, channels: int, heads: int, expansion: float, bias: bool, layernorm_type: str):
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels, layernorm_type)
        self.attn = MDTA(channels, heads, bias)
        self.norm2 = ChannelLayerNorm(channels, layernorm_type)
        self.ffn = GDFN(channels, expansion, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class Downsample(nn.Module):
    """3x3 conv C -> C/2, then PixelUnshuffle(2): half resolution, 2C channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(self.conv(x), 2)


class Upsample(nn.Module):
    """3x3 conv C -> 2C, then PixelShuffle(2): double resolution, C/2 channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class PromptGen(nn.Module):
    """Input-conditioned prompt: softmax(Linear(GAP(x))) mixes ``length`` learnable components,
    resized (bilinear) to the feature size and passed through a 3x3 conv."""

    def __init__(self, feat_channels: int, prompt_dim: int, length: int, size: int):
        super().__init__()
        self.components = nn.Parameter(torch.rand(1, length, prompt_dim, size, size))
        self.weight_fc = nn.Linear(feat_channels, length)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.weight_fc(x.mean(dim=(-2, -1))), dim=1)  # B x length
        prompt = (weights[:, :, None, None, None] * self.components[0]).sum(dim=1)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(prompt)


class PromptInteraction(nn.Module):
    """Generate a prompt from x, concatenate it to x, one transformer block, 1x1 conv to ``out``."""

    def __init__(self, feat_channels: int, out_channels: int, prompt_dim: int, length: int, size: int,
                 heads: int, expansion: float, bias: bool, layernorm_type: str):
        super().__init__()
        self.gen = PromptGen(feat_channels, prompt_dim, length, size)
        width = feat_channels + prompt_dim
        self.block = TransformerBlock(width, heads, expansion, bias, layernorm_type)
        self.reduce = nn.Conv2d(width, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.block(torch.cat([x, self.gen(x)], dim=1)))
