"""Batched torch kernels of the fast engine for GPUs: NIQE and BRISQUE of a batch of same-size images.

The same definitions as the strip engine (:mod:`curation.scoring.niqe`, :mod:`curation.scoring.brisque`,
shared steps in :mod:`curation.scoring.nss`), written as whole-image tensor operations so that one call
scores a batch (a size bucket) on any device: exact integer-kernel local means for NIQE (float64), pyiqa's
own float32 ``conv2d`` for BRISQUE's maps, neighbour products by ``torch.roll`` (inside each block for
NIQE, around the image for BRISQUE), sign-split sums by masked reductions, fits on pyiqa's shape grid
with ``searchsorted``. Each image's score depends only on that image (no statistic crosses the batch).
On CPU the results equal the strip engine's (tested); they are meant for ``--device cuda``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from curation.scoring import nss
from curation.scoring.brisque import FEATURE_RANGES, SVR_GAMMA, SVR_RHO, BrisqueModel
from curation.scoring.niqe import BLOCK, NiqeModel

_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]]).t()


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, H, W) float32 rounded Y, with pyiqa's own float32 matrix product."""
    x = rgb.float().div_(255.0)
    return (torch.matmul(x, _YIQ.to(x.device))[..., 0] * 255.0).round()


def _window(dtype: torch.dtype, device, integer: bool) -> torch.Tensor:
    w = nss.WINDOW_INT if integer else nss.WINDOW
    return torch.from_numpy(w).to(device=device, dtype=dtype).view(1, 1, 7, 7)


def mscn(y: torch.Tensor, mode: str, integer: bool = False) -> torch.Tensor:
    """(B, H, W) → MSCN map; NIQE: float64, replicate padding; BRISQUE (mode 'zero'): float32 like pyiqa."""
    x = y[:, None]
    if mode == "replicate":
        x = x.double()
        k = _window(torch.float64, x.device, integer)
        pad = F.pad(x, (3, 3, 3, 3), mode="replicate")
        mu, e2 = F.conv2d(pad, k), F.conv2d(pad * pad, k)
        if integer:
            mu, e2 = mu * 2.0 ** -nss.KERNEL_SHIFT, e2 * 2.0 ** -nss.KERNEL_SHIFT
        eps = torch.finfo(torch.float64).eps
    else:
        x = x.float()
        k = torch.from_numpy(nss.WINDOW_F32).to(x.device).view(1, 1, 7, 7)
        mu = F.conv2d(F.pad(x, (3, 3, 3, 3)), k)
        e2 = F.conv2d(F.pad(x ** 2, (3, 3, 3, 3)), k)
        eps = torch.finfo(torch.float32).eps
    sigma = torch.sqrt((e2 - mu ** 2).abs() + eps)
    return ((x - mu) / (sigma + 1))[:, 0].double()


def half(y: torch.Tensor) -> torch.Tensor:
    """MATLAB imresize(., 0.5) of (B, H, W) float32, height then width, taps summed in order (float32)."""
    def one_dim(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        n_out = nss.half_size(n)
        idx = torch.from_numpy(nss._edge_index(np.arange(-4, 2 * n_out + 4), n, "symmetric")).to(t.device)
        p = t.index_select(dim, idx)
        out = None
        for k, w in nss._HALF_TAPS:
            term = p.narrow(dim, k, 2 * n_out - 1).index_select(
                dim, torch.arange(0, 2 * n_out - 1, 2, device=t.device)) * float(w)
            out = term if out is None else out + term
        return out

    return one_dim(one_dim(y.float(), 1), 2)


def _sums(maps: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Sign-split sums of each map over ``dims``: (..., 5) = count<0, count>0, sq<0, sq>0, |.|."""
    neg, pos, sq = maps < 0, maps > 0, maps * maps
    return torch.stack([neg.sum(dims).double(), pos.sum(dims).double(), (sq * neg).sum(dims),
                        (sq * pos).sum(dims), maps.abs().sum(dims)], dim=-1)


def _neighbour_maps(v: torch.Tensor, row_dim: int, col_dim: int) -> torch.Tensor:
    up = torch.roll(v, 1, dims=row_dim)
    return torch.stack([v, v * torch.roll(v, 1, dims=col_dim), v * up, v * torch.roll(up, 1, dims=col_dim),
                        v * torch.roll(up, -1, dims=col_dim)])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def niqe_batch(rgb: torch.Tensor, model: NiqeModel) -> list[float]:
    """NIQE of each image of a (B, H, W, 3) uint8 batch (H, W >= 96)."""
    from curation.scoring.niqe import block_features, niqe_from_features

    b, h, w = rgb.shape[:3]
    nbh, nbw = h // BLOCK, w // BLOCK
    y = luma(rgb)[:, : nbh * BLOCK, : nbw * BLOCK]
    feats = []
    for scale, src in ((1, y.double()), (2, None)):
        if scale == 2:
            unit = (y.double() / 255.0).float()
            src = half(unit).double() * 255.0
        bs = BLOCK // scale
        n = mscn(src, "replicate", integer=scale == 1)
        blocks = n.reshape(b, nbh, bs, nbw, bs)
        sums = _sums(_neighbour_maps(blocks, 2, 4), (3, 5))  # (5 maps, B, nbh, nbw, 5)
        sums = sums.permute(1, 2, 3, 0, 4).reshape(b, nbh * nbw, 5, 5)
        feats.append([block_features(_np(sums[i]), bs * bs) for i in range(b)])
    return [niqe_from_features(np.concatenate([feats[0][i], feats[1][i]], axis=1), model) for i in range(b)]


def brisque_batch(rgb: torch.Tensor, model: BrisqueModel) -> list[float]:
    """BRISQUE of each image of a (B, H, W, 3) uint8 batch."""
    from curation.scoring.brisque import brisque_from_features, scale_features

    y = luma(rgb)
    per_scale = []
    for src in (y, half(y)):
        n = mscn(src, "zero")
        sums = _sums(_neighbour_maps(n, 1, 2), (2, 3))  # (5 maps, B, 5)
        count = n.shape[1] * n.shape[2]
        per_scale.append([scale_features(_np(sums[:, i]), count) for i in range(n.shape[0])])
    return [brisque_from_features(np.concatenate([f1, f2]), model) for f1, f2 in zip(*per_scale)]


__all__ = ["FEATURE_RANGES", "SVR_GAMMA", "SVR_RHO", "brisque_batch", "half", "luma", "mscn", "niqe_batch"]
