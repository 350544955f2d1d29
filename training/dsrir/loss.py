"""DSRIR's training loss (xfwang23/DSRIR losses/loss.py + train.py), own implementation.

``total = uncertainty * L_unc + psnr * L_psnr + contrast * L_con`` with

* ``L_unc`` - mean over the three stages of ``L1(exp(-v) * restored, exp(-v) * gt) +
  variance_penalty * mean(v)``, ``v`` the stage's log-variance map (the per-stage reconstruction
  term, weighted by the predicted uncertainty);
* ``L_psnr`` - ``P(stage 3) + psnr_aux * (P(stage 2) + P(stage 1)) / 2`` with ``P = 10 / ln 10 *
  log(MSE + 1e-8)`` per image, averaged (a negative PSNR in dB);
* ``L_con`` - positive contrastive regulariser on VGG19 ``relu1_1 .. relu5_1`` features: anchor =
  stage-3 output; positives = gt, stage-2, stage-1 with ``positive_weights`` (1, 0.25, 0.125);
  negative = the degraded input; per layer ``sum_k w_k * L1(a, p_k) / (L1(a, n) + 1e-7)``, layers
  weighted by ``layer_weights`` (1/32, 1/16, 1/8, 1/4, 1). The gt and the input are constants;
  gradients flow into the anchor and into the stage-1 / stage-2 positives, as in the official code.

Images go into VGG as they are ([0, 1], no ImageNet normalisation) - again as the official code does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dynet_model.dsrir import DSRIRStages

#: Output positions of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in VGG19 ``features``.
VGG_TAPS = (1, 6, 11, 20, 29)
_PSNR_SCALE = 10.0 / math.log(10.0)


@dataclass(frozen=True)
class DSRIRLossWeights:
    uncertainty: float = 1.0
    variance_penalty: float = 2.0
    psnr: float = 1.0
    psnr_aux: float = 0.5
    contrast: float = 0.2
    positive_weights: tuple[float, float, float] = (1.0, 0.25, 0.125)
    layer_weights: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class DSRIRLossTerms(NamedTuple):
    total: torch.Tensor
    uncertainty: torch.Tensor
    psnr: torch.Tensor
    contrast: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {f"loss_{k}": float(v.detach()) for k, v in self._asdict().items()}


def uncertainty_l1(restored: torch.Tensor, gt: torch.Tensor, log_var: torch.Tensor,
                   variance_penalty: float) -> torch.Tensor:
    scale = torch.exp(-log_var)
    return F.l1_loss(restored * scale, gt * scale) + variance_penalty * log_var.mean()


def psnr_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    mse = (pred - gt).pow(2).mean(dim=(1, 2, 3))
    return _PSNR_SCALE * torch.log(mse + 1e-8).mean()


class VGGTaps(nn.Module):
    """Runs VGG19 ``features[:30]`` and returns the activations at :data:`VGG_TAPS`."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_TAPS:
                taps.append(x)
            if i >= VGG_TAPS[-1]:
                break
        return taps


def positive_contrast(vgg: VGGTaps, anchor: torch.Tensor, positives: Sequence[torch.Tensor],
                      negative: torch.Tensor, *, positive_weights: Sequence[float],
                      layer_weights: Sequence[float]) -> torch.Tensor:
    """``positives[0]`` (gt) and ``negative`` are treated as constants."""
    b = anchor.shape[0]
    with torch.no_grad():
        const = vgg(torch.cat([positives[0], negative]).detach())
    live = vgg(torch.cat([anchor, *positives[1:]]))
    loss = anchor.new_zeros(())
    for lw, c, f in zip(layer_weights, const, live):
        a = f[:b]
        d_pos = positive_weights[0] * F.l1_loss(a, c[:b])
        for k in range(1, len(positives)):
            d_pos = d_pos + positive_weights[k] * F.l1_loss(a, f[k * b:(k + 1) * b])
        loss = loss + lw * d_pos / (F.l1_loss(a, c[b:]) + 1e-7)
    return loss


class DSRIRLoss(nn.Module):
    """Callable ``loss(stages, gt, lq) -> DSRIRLossTerms``; VGG features frozen, not trained."""

    def __init__(self, *, weights: DSRIRLossWeights, vgg_features: nn.Module | None) -> None:
        super().__init__()
        if len(weights.layer_weights) != len(VGG_TAPS) or len(weights.positive_weights) != 3:
            raise ValueError("need 5 layer weights (relu1_1..relu5_1) and 3 positive weights (gt, stage 2, stage 1)")
        if weights.contrast and vgg_features is None:
            raise ValueError("contrast weight > 0 needs VGG19 features (training.vgg_weights.load_vgg19_features)")
        self.weights = weights
        self.vgg = VGGTaps(vgg_features) if vgg_features is not None else None
        if self.vgg is not None:
            self.vgg.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DSRIRLoss:  # VGG stays in eval mode
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()
        return self

    def forward(self, stages: DSRIRStages, gt: torch.Tensor, lq: torch.Tensor) -> DSRIRLossTerms:
        w = self.weights
        s1, s2, s3 = stages.restored
        unc = sum(uncertainty_l1(r, gt, v, w.variance_penalty)
                  for r, v in zip(stages.restored, stages.log_var)) / len(stages.restored)
        psnr = psnr_loss(s3, gt) + w.psnr_aux * (psnr_loss(s2, gt) + psnr_loss(s1, gt)) / 2
        if w.contrast:
            con = positive_contrast(self.vgg, s3, (gt, s2, s1), lq, positive_weights=w.positive_weights,
                                    layer_weights=w.layer_weights)
        else:
            con = s3.new_zeros(())
        total = w.uncertainty * unc + w.psnr * psnr + w.contrast * con
        return DSRIRLossTerms(total, unc, psnr, con)


def build_dsrir_loss(weights: DSRIRLossWeights, *, verify_hash: bool = True) -> DSRIRLoss:
    """Production loss: VGG19 weights from the installed file (never random); ``verify_hash``
    checks it is torchvision's ImageNet file."""
    vgg = None
    if weights.contrast:
        from training.vgg_weights import load_vgg19_features

        vgg = load_vgg19_features(verify_hash=verify_hash)
    return DSRIRLoss(weights=weights, vgg_features=vgg)
